//! `Route-Security` (docs/SPEC.md §3.4): each hop that sends a request on a link
//! appends an entry naming itself and the link's security level.
//!
//! ```text
//! Route-Security = "Route-Security" HCOLON rs-value *(COMMA rs-value)
//! rs-value = LAQUOT "sip:" hostport RAQUOT SEMI "level=" ("0"/"1"/"2"/"3")
//! ```
//!
//! Levels: 0 none, 1 authenticated peer, 2 + integrity, 3 + confidentiality.
//! The newest (last) entry must name the hop a message was received from;
//! responses carry the request's entries back in order. The address is the
//! hop's Via sent-by (`HOST[:PORT]`), so that entries line up with Vias.

use serde::Serialize;

use super::Message;

/// The header name.
pub const ROUTE_SECURITY: &str = "Route-Security";

/// The highest level.
pub const MAX_LEVEL: u8 = 3;

/// Why a `Route-Security` entry does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteEntryError {
    /// Not `<sip:ADDR>;level=N`.
    #[error("{0:?} is not <sip:ADDR>;level=N")]
    Syntax(String),
    /// A URI of another scheme.
    #[error("{0:?} is not a sip: URI")]
    NotSip(String),
    /// No `level` parameter.
    #[error("{0:?} has no level")]
    NoLevel(String),
    /// A level that is not 0 to 3.
    #[error("{0:?}: level must be 0 to {MAX_LEVEL}")]
    Level(String),
    /// `<sip:>`.
    #[error("{0:?} names no address")]
    NoAddress(String),
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteEntry {
    /// The hop's address (`HOST[:PORT]`, no scheme).
    pub addr: String,
    /// The level of the link it sent on.
    pub level: u8,
}

impl RouteEntry {
    /// Parse `<sip:ADDR>;level=N`.
    pub fn parse(value: &str) -> Result<RouteEntry, RouteEntryError> {
        let v = value.trim();
        let (uri, params) = v
            .strip_prefix('<')
            .and_then(|r| r.split_once('>'))
            .ok_or_else(|| RouteEntryError::Syntax(v.to_owned()))?;
        let addr = uri
            .strip_prefix("sip:")
            .or_else(|| uri.strip_prefix("sips:"))
            .ok_or_else(|| RouteEntryError::NotSip(uri.to_owned()))?;
        let level = params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("level"))
            .ok_or_else(|| RouteEntryError::NoLevel(v.to_owned()))?
            .1
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= MAX_LEVEL)
            .ok_or_else(|| RouteEntryError::Level(v.to_owned()))?;
        if addr.is_empty() {
            return Err(RouteEntryError::NoAddress(v.to_owned()));
        }
        Ok(RouteEntry {
            addr: addr.to_owned(),
            level,
        })
    }

    /// The header value.
    pub fn to_value(&self) -> String {
        format!("<sip:{}>;level={}", self.addr, self.level)
    }

    /// Whether it names `addr` (see [`same_addr`]).
    pub fn names(&self, addr: &str) -> bool {
        same_addr(&self.addr, addr)
    }
}

/// Whether two hop addresses are the same: scheme dropped, host compared
/// without case; ports compared only when both give one.
pub fn same_addr(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let s = s.trim();
        let s = s
            .strip_prefix("sip:")
            .or_else(|| s.strip_prefix("sips:"))
            .unwrap_or(s);
        let (host, port) = match s.rsplit_once(':') {
            Some((h, _)) if !h.ends_with(']') && h.contains(':') => (s, None),
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p)),
            _ => (s, None),
        };
        (host.to_ascii_lowercase(), port.map(str::to_owned))
    };
    let ((ha, pa), (hb, pb)) = (norm(a), norm(b));
    ha == hb && (pa.is_none() || pb.is_none() || pa == pb)
}

/// Entries a message may carry (H5): one or two a hop, and a request
/// makes at most 70 hops (Max-Forwards). A request with more is malformed
/// (400), and no response carries more back.
pub const MAX_ENTRIES: usize = 70;

/// Whether `msg` carries more entries than [`MAX_ENTRIES`].
pub fn too_many(msg: &Message) -> bool {
    msg.header_list(ROUTE_SECURITY).len() > MAX_ENTRIES
}

/// Every entry of a message, oldest first, each parsed or with its problem.
pub fn entries(msg: &Message) -> Vec<Result<RouteEntry, RouteEntryError>> {
    msg.header_list(ROUTE_SECURITY)
        .into_iter()
        .map(RouteEntry::parse)
        .collect()
}

/// Append `entry` after the last `Route-Security` line (else before the
/// body headers and Content-Length).
pub fn append(msg: &mut Message, entry: &RouteEntry) {
    let at = match msg.headers().iter().rposition(|h| h.is(ROUTE_SECURITY)) {
        Some(i) => i + 1,
        None => msg.before_body_headers(),
    };
    msg.insert_header(at, ROUTE_SECURITY, &entry.to_value());
}

/// The sent-by (`HOST[:PORT]`) of a Via value.
pub fn via_sent_by(via: &str) -> Option<&str> {
    let rest = via.split_whitespace().nth(1)?;
    rest.split(';').next().map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_format_and_compare() {
        let e = RouteEntry::parse("<sip:proxy-a.a.example.com:5061>;level=3").unwrap();
        assert_eq!(
            (e.addr.as_str(), e.level),
            ("proxy-a.a.example.com:5061", 3)
        );
        assert_eq!(e.to_value(), "<sip:proxy-a.a.example.com:5061>;level=3");
        assert!(e.names("PROXY-A.a.example.com"));
        assert!(e.names("sip:proxy-a.a.example.com:5061"));
        assert!(!e.names("proxy-a.a.example.com:5060"));
        assert!(!e.names("proxy-b.b.example.com"));
        for bad in [
            "<sip:x>",
            "<sip:x>;level=4",
            "sip:x;level=1",
            "<http://x>;level=1",
            "<sip:>;level=1",
        ] {
            assert!(RouteEntry::parse(bad).is_err(), "{bad}");
        }
        assert!(same_addr("[::1]:5060", "[::1]"));
        assert_eq!(
            via_sent_by("SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1"),
            Some("192.0.2.1:5060")
        );
    }

    #[test]
    fn append_goes_after_the_last_entry() {
        let mut m = Message::parse(
            b"INVITE sip:b@h SIP/2.0\r\nRoute-Security: <sip:a>;level=1\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        append(
            &mut m,
            &RouteEntry {
                addr: "p".into(),
                level: 2,
            },
        );
        let got: Vec<_> = entries(&m).into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got.iter().map(|e| e.addr.as_str()).collect::<Vec<_>>(),
            ["a", "p"]
        );
        assert_eq!(m.headers()[1].value(), "<sip:p>;level=2");
    }
}
