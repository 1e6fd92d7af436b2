//! Where a request goes on (RFC 3261 §16.4–16.6), decided before the
//! relay step runs: the first Route entry that does not name this relay
//! (loose routing); else, a Request-URI naming this relay is a request
//! to the relay itself; an AOR of a domain it serves goes to that AOR's
//! bindings (the location service); anything else to the configured next
//! hop, or to its Request-URI.

use crate::net::{Hop, NetError};
use crate::sip::Message;
use crate::sip::routing::{self, OwnNames};
use crate::sip::uri::HopUri;

/// Where a request goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Onward {
    /// To this next hop.
    Hop(Hop),
    /// Nowhere: it is addressed to this relay.
    Myself,
    /// To the bindings of this address of record, in a domain this relay serves.
    Location {
        /// The AOR (`sip:user@domain`).
        aor: String,
        /// The domain.
        domain: String,
    },
}

/// Why a request has nowhere to go.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The Route entry, `--next` or Request-URI is not a SIP URI with a host.
    #[error("{0}: not a SIP URI with a host")]
    NotSip(String),
    /// No Route, no `--next` and no Request-URI.
    #[error("no Route, --next or Request-URI to send it to")]
    Nowhere,
    /// A transport this relay does not speak.
    #[error(transparent)]
    Net(#[from] NetError),
}

/// How this relay routes.
#[derive(Debug, Clone, Copy)]
pub struct Routing<'a> {
    /// Every name it goes by.
    pub names: &'a OwnNames,
    /// Where a request with nothing else to follow goes (`--next`).
    pub next: Option<&'a str>,
    /// The domains it serves (`--domain`): their AORs are located.
    pub domains: &'a [String],
}

/// The user part and host of a SIP URI (`None` without a user part).
fn user_at(uri: &str) -> Option<(String, String)> {
    let hop = HopUri::parse(uri)?;
    let v = uri.trim();
    let v = v.strip_prefix('<').unwrap_or(v);
    let rest = v.split_once(':')?.1;
    let userinfo = rest.split(['@']).next()?;
    if !rest.contains('@') {
        return None;
    }
    let user = userinfo.split(':').next()?.to_owned();
    Some((user, hop.host.to_ascii_lowercase()))
}

/// Where `msg`, a request of `size` bytes, goes on.
pub fn onward(msg: &Message, how: &Routing<'_>, size: usize) -> Result<Onward, RouteError> {
    let hop = |uri: &str| -> Result<Onward, RouteError> {
        let parsed = HopUri::parse(uri).ok_or_else(|| RouteError::NotSip(uri.to_owned()))?;
        Ok(Onward::Hop(Hop::for_uri(&parsed, size)?))
    };
    // H2: what the message names is checked against the server's guard
    // where its address is known; `--next` is the operator's.
    let named = |uri: &str| -> Result<Onward, RouteError> {
        match hop(uri)? {
            Onward::Hop(h) => Ok(Onward::Hop(h.guarded())),
            other => Ok(other),
        }
    };
    if let Some(route) = routing::next_route(msg, how.names) {
        return named(&route);
    }
    let ruri = msg.request_uri().ok_or(RouteError::Nowhere)?;
    let parsed = HopUri::parse(ruri).ok_or_else(|| RouteError::NotSip(ruri.to_owned()))?;
    let user = user_at(ruri);
    if how.names.names_uri(&parsed) {
        // `sip:bob@<this relay>` is bob of the domain it serves; a
        // Request-URI without a user is the relay itself.
        return match (user, how.domains.first(), how.next) {
            (Some((user, _)), Some(domain), _) => Ok(Onward::Location {
                aor: format!("sip:{user}@{domain}"),
                domain: domain.clone(),
            }),
            (Some(_), None, Some(next)) => hop(next),
            _ => Ok(Onward::Myself),
        };
    }
    if let Some((user, host)) = user
        && let Some(domain) = how.domains.iter().find(|d| d.eq_ignore_ascii_case(&host))
    {
        return Ok(Onward::Location {
            aor: format!("sip:{user}@{domain}"),
            domain: domain.clone(),
        });
    }
    match how.next {
        Some(next) => hop(next),
        None => named(ruri),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Transport;

    fn request(uri: &str, route: Option<&str>) -> Message {
        let route = route.map(|r| format!("Route: {r}\r\n")).unwrap_or_default();
        let text = format!(
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKa\r\n{route}From: <sip:alice@a.example.com>;tag=1\r\nTo: <{uri}>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_request_for_the_relay_a_served_aor_or_elsewhere() {
        let mut names = OwnNames::new([
            "127.0.0.1:5070".parse().unwrap(),
            "127.0.0.1:5071".parse().unwrap(),
        ]);
        names.add("proxy-a.a.example.com");
        let domains = ["a.example.com".to_owned()];
        let how = Routing {
            names: &names,
            next: None,
            domains: &domains,
        };
        let go = |uri: &str, route: Option<&str>| onward(&request(uri, route), &how, 500);
        assert_eq!(go("sip:127.0.0.1:5070", None), Ok(Onward::Myself));
        assert_eq!(
            go(
                "sip:127.0.0.1:5070",
                Some("<sip:127.0.0.1:5071;transport=tls;lr>")
            ),
            Ok(Onward::Myself),
            "its own Route entry, on another listener, comes off"
        );
        assert_eq!(
            go("sip:bob@a.example.com", None),
            Ok(Onward::Location {
                aor: "sip:bob@a.example.com".into(),
                domain: "a.example.com".into()
            })
        );
        assert_eq!(
            go("sip:bob@127.0.0.1:5070", None),
            Ok(Onward::Location {
                aor: "sip:bob@a.example.com".into(),
                domain: "a.example.com".into()
            }),
            "bob at the relay's address is bob of the domain it serves"
        );
        let Ok(Onward::Hop(h)) = go("sip:carol@b.example.com", None) else {
            panic!("another domain goes by its name");
        };
        assert_eq!(
            (h.transport, h.uri.host.as_str()),
            (Transport::Udp, "b.example.com")
        );
        let Ok(Onward::Hop(h)) = go("sip:bob@a.example.com", Some("<sip:k.example.com;lr>")) else {
            panic!("a Route wins");
        };
        assert_eq!(h.uri.host, "k.example.com");
        assert!(go("tel:+1", None).is_err());
    }
}
