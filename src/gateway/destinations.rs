//! The gateway's per-user table (`destinations.yaml`): which services each
//! user may reach, how the portal shows them, and which typed
//! destinations the user may ask for.
//!
//! ```yaml
//! version: 1
//! users:
//!   alice:                          # the username of the credential file
//!     phone: "+81312345678"         # optional: login by the front end's header
//!     destinations:
//!       - name: Wiki
//!         uri: sip:wiki@b.example.com
//!         description: The team wiki
//!         picture: https://b.example.com/wiki.png   # optional, https: or /path
//!         origin: http://127.0.0.1:8080             # optional: the service's own base URL
//!     typed: ["sip:*@b.example.com"]                # optional: globs a typed URI must match
//! ```
//!
//! A user absent from the file sees an empty portal and may type nothing.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One destination a user may reach.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// What the portal calls it.
    pub name: String,
    /// The SIP URI the gateway calls.
    pub uri: String,
    /// A line of description.
    #[serde(default)]
    pub description: String,
    /// A picture of the site (an `https:` URL or a path on the gateway).
    #[serde(default)]
    pub picture: Option<String>,
    /// The service's own base URL as its pages write absolute links
    /// (`http://127.0.0.1:8080`): links to it are rewritten to the
    /// gateway's path, and its authority is the Host header sent.
    #[serde(default)]
    pub origin: Option<String>,
    /// The destination's certificate (PEM; a relative path is taken from
    /// the table's directory): the gateway's call seals the offer for it.
    #[serde(default)]
    pub cert: Option<std::path::PathBuf>,
}

/// One user's entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// The telephone number a trusted front end names this user by.
    #[serde(default)]
    pub phone: Option<String>,
    /// The portal's list.
    #[serde(default)]
    pub destinations: Vec<Destination>,
    /// Globs (`sip:*@b.example.com`) a typed destination must match; none:
    /// the user may not type one.
    #[serde(default)]
    pub typed: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    #[serde(default)]
    users: BTreeMap<String, UserEntry>,
}

/// Why the table cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DestinationsError(pub String);

/// The whole table, checked.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    users: BTreeMap<String, (UserEntry, Vec<glob::Pattern>)>,
    phones: BTreeMap<String, String>,
}

/// A SIP URI as the portal takes one: `sip:` or `sips:`, a user part and a
/// host, one `@` and no `?` (no URI headers), so that what follows the
/// `@` is the host a glob's `@host` names; no spaces or control
/// characters, at most 256 bytes.
pub fn is_sip_uri(uri: &str) -> bool {
    let Some(rest) = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
    else {
        return false;
    };
    uri.len() <= 256
        && rest
            .split_once('@')
            .is_some_and(|(u, h)| !u.is_empty() && !h.is_empty() && !h.contains('@'))
        && uri
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\'' | b'?'))
}

fn url_ok(url: &str) -> bool {
    (url.starts_with("https://") || (url.starts_with('/') && !url.starts_with("//")))
        && url.bytes().all(|b| b.is_ascii_graphic())
}

impl Destinations {
    /// Parse and check `destinations.yaml`.
    pub fn parse(text: &str) -> Result<Destinations, DestinationsError> {
        let file: File =
            crate::yaml::from_str(text).map_err(|e| DestinationsError(e.to_string()))?;
        if file.version != 1 {
            return Err(DestinationsError(format!(
                "version {} (sipseal reads 1)",
                file.version
            )));
        }
        let mut out = Destinations::default();
        for (user, entry) in file.users {
            for d in &entry.destinations {
                if !is_sip_uri(&d.uri) {
                    return Err(DestinationsError(format!(
                        "{user}: destination {:?}: {:?} is not a sip: or sips: URI with a user and a host",
                        d.name, d.uri
                    )));
                }
                if let Some(p) = d.picture.as_deref().filter(|p| !url_ok(p)) {
                    return Err(DestinationsError(format!(
                        "{user}: destination {:?}: picture {p:?} is neither an https: URL nor a /path",
                        d.name
                    )));
                }
                if let Some(o) = d
                    .origin
                    .as_deref()
                    .filter(|o| origin_authority(o).is_none())
                {
                    return Err(DestinationsError(format!(
                        "{user}: destination {:?}: origin {o:?} is not http(s)://HOST[:PORT]",
                        d.name
                    )));
                }
            }
            let mut globs = Vec::new();
            for t in &entry.typed {
                globs.push(
                    glob::Pattern::new(&t.to_ascii_lowercase()).map_err(|e| {
                        DestinationsError(format!("{user}: typed pattern {t:?}: {e}"))
                    })?,
                );
            }
            if let Some(phone) = &entry.phone
                && let Some(other) = out.phones.insert(phone.clone(), user.clone())
            {
                return Err(DestinationsError(format!(
                    "phone {phone:?} is given to both {other} and {user}"
                )));
            }
            out.users.insert(user, (entry, globs));
        }
        Ok(out)
    }

    /// Every user the table names, with their portal list.
    pub fn users(&self) -> impl Iterator<Item = (&str, &[Destination])> {
        self.users
            .iter()
            .map(|(u, (e, _))| (u.as_str(), e.destinations.as_slice()))
    }

    /// `user`'s portal list (empty for a user the file does not name).
    pub fn of(&self, user: &str) -> &[Destination] {
        self.users
            .get(user)
            .map(|(e, _)| e.destinations.as_slice())
            .unwrap_or_default()
    }

    /// Whether `user` may type destinations at all.
    pub fn may_type(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|(_, g)| !g.is_empty())
    }

    /// The destination `user` typed, when the file allows it: one of the
    /// user's own (by URI), or a SIP URI one of the user's globs matches.
    pub fn typed(&self, user: &str, uri: &str) -> Option<Destination> {
        let uri = uri.trim();
        let (entry, globs) = self.users.get(user)?;
        if let Some(d) = entry
            .destinations
            .iter()
            .find(|d| d.uri.eq_ignore_ascii_case(uri))
        {
            return Some(d.clone());
        }
        let lower = uri.to_ascii_lowercase();
        (is_sip_uri(uri) && globs.iter().any(|g| g.matches(&lower))).then(|| Destination {
            name: uri.to_owned(),
            uri: uri.to_owned(),
            description: String::new(),
            picture: None,
            origin: None,
            cert: None,
        })
    }

    /// The user a trusted front end's telephone number names.
    pub fn user_of_phone(&self, phone: &str) -> Option<&str> {
        self.phones.get(phone.trim()).map(String::as_str)
    }
}

/// `HOST[:PORT]` of an `http://` or `https://` origin (no path beyond `/`).
pub fn origin_authority(origin: &str) -> Option<&str> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    (!rest.is_empty() && !rest.contains(['/', '?', '#', '@']) && rest.is_ascii()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
version: 1
users:
  alice:
    phone: "+81312345678"
    destinations:
      - name: Wiki
        uri: sip:wiki@b.example.com
        picture: https://b.example.com/w.png
    typed: ["sip:*@b.example.com"]
  bob:
    destinations:
      - name: Mail
        uri: sip:mail@c.example.com
"#;

    #[test]
    fn each_user_sees_their_own_and_types_only_what_their_globs_allow() {
        let d = Destinations::parse(FILE).unwrap();
        assert_eq!(d.of("alice").len(), 1);
        assert_eq!(d.of("bob")[0].name, "Mail");
        assert!(d.of("carol").is_empty());
        assert!(d.typed("alice", "sip:shop@b.example.com").is_some());
        assert!(d.typed("alice", "sip:mail@c.example.com").is_none());
        assert!(d.typed("alice", "sip:x@b.example.com.evil").is_none());
        // The glob's host must be the URI's host: not a second `@` or a
        // URI header that only ends like it.
        assert!(
            d.typed("alice", "sip:x@evil.example?h=@b.example.com")
                .is_none()
        );
        assert!(
            d.typed("alice", "sip:x@evil.example;a=@b.example.com")
                .is_none()
        );
        assert!(
            d.typed("alice", "sip:x@evil.example@b.example.com")
                .is_none()
        );
        assert!(d.typed("bob", "sip:mail@c.example.com").is_some());
        assert!(d.typed("bob", "sip:other@c.example.com").is_none());
        assert!(d.may_type("alice") && !d.may_type("bob"));
        assert_eq!(d.user_of_phone("+81312345678"), Some("alice"));
    }

    #[test]
    fn bad_uris_pictures_and_origins_are_refused_by_name() {
        for bad in [
            "version: 1\nusers: {a: {destinations: [{name: x, uri: 'http://x'}]}}",
            "version: 1\nusers: {a: {destinations: [{name: x, uri: 'sip:a@b', picture: 'javascript:alert(1)'}]}}",
            "version: 1\nusers: {a: {destinations: [{name: x, uri: 'sip:a@b', origin: 'http://h/p'}]}}",
            "version: 2\nusers: {}",
            "version: 1\nusers: {a: {phone: '1'}, b: {phone: '1'}}",
        ] {
            assert!(Destinations::parse(bad).is_err(), "{bad}");
        }
    }
}
