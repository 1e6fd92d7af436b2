//! The edge's disclosure policy (`sipseal edge --disclosure POLICY.yaml`,
//! docs/guide/11-edge.md): which relays get the SDP a phone sends to a
//! destination, with what access, what to do when the peer has no
//! certificate, and what the phone may be handed from the network.
//!
//! ```yaml
//! relays:                          # name → certificate (relative to this file)
//!   proxy-a: certs/proxy-a.pem
//! destinations:                    # first match wins, on the peer's AOR
//!   - to: "sip:*@b.example.com"
//!     disclose: [proxy-a]
//!     access: read                 # read (signed inside) | modify
//!     record: true                 # purpose=record on each designation
//!     unsealable: refuse           # refuse (488) | plain
//!   - to: "*"
//!     disclose: []
//!     unsealable: refuse
//! incoming:
//!   unsealed: accept               # accept (with a Warning) | refuse (488)
//!   unsigned: accept               # accept | refuse (403)
//!   min_route_level: 0
//! ```
//!
//! Unknown keys, a relay no `relays:` entry names, a certificate that does
//! not read (or names no SIP URI to designate the relay by) and a bad
//! pattern are load errors naming the file and the line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::keys::Cert;
use crate::sip::disclosure::Access;

/// A policy file that cannot be used: the file, the line (when one is
/// to blame) and what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PolicyError {
    /// The file.
    pub path: PathBuf,
    /// The line (1-based) to look at, when one is to blame.
    pub line: Option<usize>,
    /// What is wrong with it, and what to do.
    pub reason: String,
}

impl PolicyError {
    /// A policy file that cannot be used is configuration (exit 2).
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

/// What to do when the peer has no certificate (the registrar answers 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unsealable {
    /// Answer the phone 488 with a Warning; nothing is sent.
    Refuse,
    /// Send the SDP as the phone wrote it, and the rest of the call too.
    Plain,
}

/// Accept or refuse (the `incoming:` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admit {
    /// Hand it to the phone (with a Warning saying what it lacked).
    #[default]
    Accept,
    /// Refuse a request that lacks it.
    Refuse,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    relays: std::collections::BTreeMap<String, String>,
    destinations: Vec<DestinationFile>,
    #[serde(default)]
    incoming: Incoming,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationFile {
    to: String,
    #[serde(default)]
    disclose: Vec<String>,
    #[serde(default)]
    access: AccessFile,
    #[serde(default)]
    record: bool,
    unsealable: Unsealable,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AccessFile {
    #[default]
    Read,
    Modify,
}

/// What the edge hands the phone from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incoming {
    /// A request whose SDP is not sealed: accepted with a Warning, or
    /// refused 488.
    #[serde(default)]
    pub unsealed: Admit,
    /// A sealed request whose content is not signed inside by its sender
    /// (or whose signer does not verify): accepted with a Warning, or
    /// refused 403.
    #[serde(default)]
    pub unsigned: Admit,
    /// The weakest Route-Security link a sealed request may have come
    /// over (0: no check); below it, 403.
    #[serde(default)]
    pub min_route_level: u8,
}

/// A relay a destination discloses to.
#[derive(Debug, Clone)]
pub struct Relay {
    /// Its name in the policy.
    pub name: String,
    /// Its certificate (a RecipientInfo, and its SAN URI names it in
    /// `Proxy-Inspect-Body`).
    pub cert: Cert,
}

/// One `destinations:` entry.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The pattern as written.
    pub to: String,
    pattern: glob::Pattern,
    /// The relays that get the SDP.
    pub disclose: Vec<Relay>,
    /// Their access.
    pub access: Access,
    /// `purpose=record` on each designation.
    pub record: bool,
    /// A peer without a certificate.
    pub unsealable: Unsealable,
}

/// The policy, read and checked.
#[derive(Debug, Clone)]
pub struct DisclosurePolicy {
    /// The file it was read from.
    pub path: PathBuf,
    /// The destinations, in order (first match wins).
    pub destinations: Vec<Destination>,
    /// What the phone may be handed.
    pub incoming: Incoming,
}

/// The largest policy file read (a policy is a few dozen lines).
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

/// The first line (1-based) at or after `from` whose text holds `needle`.
fn line_of(text: &str, needle: &str, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
}

/// The line of the `n`-th (0-based) item of the `destinations:` list.
fn destination_line(text: &str, n: usize) -> Option<usize> {
    let start = line_of(text, "destinations:", 1)?;
    text.lines()
        .enumerate()
        .skip(start)
        .filter(|(_, l)| l.trim_start().starts_with("- "))
        .filter(|(_, l)| {
            // Items of this list, not of a nested flow or block list.
            let indent = l.len() - l.trim_start().len();
            indent <= 2
        })
        .nth(n)
        .map(|(i, _)| i + 1)
}

impl DisclosurePolicy {
    /// Read and check the policy at `path`.
    pub fn load(path: &Path) -> Result<DisclosurePolicy, PolicyError> {
        let err = |line: Option<usize>, reason: String| PolicyError {
            path: path.to_owned(),
            line,
            reason,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| err(None, format!("{e} (give --disclosure the policy file)")))?
            .len();
        if size > MAX_POLICY_BYTES {
            return Err(err(
                None,
                format!("{size} bytes: a disclosure policy is at most {MAX_POLICY_BYTES}"),
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(None, format!("{e} (give --disclosure the policy file)")))?;
        DisclosurePolicy::parse(&text, path)
    }

    /// Check the policy `text`, read from `path` (relays' certificate
    /// paths are relative to its directory).
    pub fn parse(text: &str, path: &Path) -> Result<DisclosurePolicy, PolicyError> {
        let err = |line: Option<usize>, reason: String| PolicyError {
            path: path.to_owned(),
            line,
            reason,
        };
        let file: PolicyFile = crate::yaml::from_str(text).map_err(|e| {
            // serde_yaml says "at line L column C": the line goes up front.
            let msg = e.to_string();
            let line = msg
                .split(" at line ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok());
            err(
                line,
                format!(
                    "{msg} (keys: relays, destinations (to, disclose, access, record, unsealable), incoming (unsealed, unsigned, min_route_level))"
                ),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut relays = std::collections::BTreeMap::new();
        for (name, cert_path) in &file.relays {
            let line = line_of(text, &format!("{name}:"), 1);
            let full = base.join(cert_path);
            let cert = Cert::load(&full).map_err(|e| {
                err(
                    line,
                    format!(
                        "relay {name}: its certificate {}: {e} (paths are relative to the policy file)",
                        full.display()
                    ),
                )
            })?;
            if cert.uri().is_none() {
                return Err(err(
                    line,
                    format!(
                        "relay {name}: the certificate {} names no SIP URI (SAN) to designate the relay by",
                        full.display()
                    ),
                ));
            }
            cert.recipient_kind().map_err(|e| {
                err(
                    line,
                    format!("relay {name}: the certificate {}: {e}", full.display()),
                )
            })?;
            relays.insert(name.clone(), cert);
        }
        if file.destinations.is_empty() {
            return Err(err(
                line_of(text, "destinations:", 1),
                "no destinations: a phone could call no one (add `- to: \"*\"` with its `unsealable:`)".into(),
            ));
        }
        let mut destinations = Vec::new();
        for (n, d) in file.destinations.iter().enumerate() {
            let at = destination_line(text, n);
            let pattern = glob::Pattern::new(&d.to.trim().to_ascii_lowercase()).map_err(|e| {
                err(
                    at,
                    format!(
                        "destination {:?}: not a pattern ({e}); `*` matches any run of characters, `?` one",
                        d.to
                    ),
                )
            })?;
            let mut disclose = Vec::new();
            for name in &d.disclose {
                let Some(cert) = relays.get(name) else {
                    let known: Vec<&str> = relays.keys().map(String::as_str).collect();
                    return Err(err(
                        line_of(text, name, at.unwrap_or(1)).or(at),
                        format!(
                            "destination {:?} discloses to relay {name:?}, which `relays:` does not name (it names: {})",
                            d.to,
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                };
                disclose.push(Relay {
                    name: name.clone(),
                    cert: cert.clone(),
                });
            }
            destinations.push(Destination {
                to: d.to.clone(),
                pattern,
                disclose,
                access: match d.access {
                    AccessFile::Read => Access::Read,
                    AccessFile::Modify => Access::Modify,
                },
                record: d.record,
                unsealable: d.unsealable,
            });
        }
        if file.incoming.min_route_level > 3 {
            return Err(err(
                line_of(text, "min_route_level", 1),
                format!(
                    "min_route_level {}: Route-Security levels are 0 to 3",
                    file.incoming.min_route_level
                ),
            ));
        }
        Ok(DisclosurePolicy {
            path: path.to_owned(),
            destinations,
            incoming: file.incoming,
        })
    }

    /// The destination the peer `aor` falls under (first match), if any.
    pub fn destination(&self, aor: &str) -> Option<&Destination> {
        let aor = aor.trim().to_ascii_lowercase();
        self.destinations.iter().find(|d| d.pattern.matches(&aor))
    }

    /// Whether some destination discloses with `access: read` (the
    /// content is then signed inside by the user: an RSA identity).
    pub fn signs_inside(&self) -> bool {
        self.destinations.iter().any(|d| d.access == Access::Read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// `text` as a policy file in the repository's `keys/` (so that
    /// `proxy-a/cert.pem` reads).
    fn parse(text: &str) -> Result<DisclosurePolicy, PolicyError> {
        DisclosurePolicy::parse(text, &repo().join("keys/edge-policy.yaml"))
    }

    const GOOD: &str = "relays:
  proxy-a: proxy-a/cert.pem
destinations:
  - to: \"sip:*@b.example.com\"
    disclose: [proxy-a]
    access: read
    record: true
    unsealable: refuse
  - to: \"*\"
    unsealable: plain
incoming:
  unsealed: refuse
  min_route_level: 3
";

    #[test]
    fn a_policy_reads_and_the_first_matching_destination_wins() {
        let p = parse(GOOD).unwrap();
        let b = p.destination("sip:bob@B.example.com").unwrap();
        assert_eq!(b.disclose.len(), 1);
        assert_eq!(
            b.disclose[0].cert.uri().as_deref(),
            Some("sip:proxy-a.a.example.com")
        );
        assert_eq!(b.access, Access::Read);
        assert!(b.record);
        assert_eq!(b.unsealable, Unsealable::Refuse);
        let other = p.destination("sip:carol@c.example.com").unwrap();
        assert!(other.disclose.is_empty());
        assert_eq!(other.unsealable, Unsealable::Plain);
        assert_eq!(p.incoming.unsealed, Admit::Refuse);
        assert_eq!(p.incoming.unsigned, Admit::Accept);
        assert_eq!(p.incoming.min_route_level, 3);
    }

    #[test]
    fn no_match_is_none() {
        let p = parse("destinations:\n  - to: \"sip:*@b.example.com\"\n    unsealable: plain\n")
            .unwrap();
        assert!(p.destination("sip:carol@c.example.com").is_none());
    }

    #[test]
    fn an_unknown_key_names_the_file_and_line() {
        let e = parse("destinations:\n  - to: \"*\"\n    unsealable: plain\n    dislcose: []\n")
            .unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("edge-policy.yaml:"), "{shown}");
        assert!(shown.contains("dislcose"), "{shown}");
        assert_eq!(e.line, Some(4), "{shown}");
    }

    #[test]
    fn an_unknown_relay_names_its_line_and_the_known_ones() {
        let text = GOOD.replace("disclose: [proxy-a]", "disclose: [proxy-z]");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.reason.contains("\"proxy-z\""), "{e}");
        assert!(e.reason.contains("it names: proxy-a"), "{e}");
    }

    #[test]
    fn a_missing_certificate_names_the_relay_and_the_path() {
        let text = GOOD.replace("proxy-a/cert.pem", "nowhere/cert.pem");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.reason.contains("relay proxy-a"), "{e}");
        assert!(e.reason.contains("nowhere/cert.pem"), "{e}");
    }

    #[test]
    fn a_bad_pattern_value_and_level_are_refused() {
        let e = parse("destinations:\n  - to: \"sip:[\"\n    unsealable: plain\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.reason.contains("not a pattern"), "{e}");
        let e = parse("destinations:\n  - to: \"*\"\n    unsealable: maybe\n").unwrap_err();
        assert!(e.reason.contains("unknown variant"), "{e}");
        let e = parse("destinations:\n  - to: \"*\"\n    unsealable: plain\nincoming:\n  min_route_level: 4\n")
            .unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        let e = parse("destinations: []\n").unwrap_err();
        assert!(e.reason.contains("no destinations"), "{e}");
    }
}
