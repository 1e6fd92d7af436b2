//! `Route-Security` (docs/SPEC.md §3.4, issue 28): each hop that sends a
//! request on a link puts an entry naming itself, with the link's security
//! level, **on top** of the others.
//!
//! ```text
//! Route-Security = "Route-Security" HCOLON rs-value *(COMMA rs-value)
//! rs-value  = (hostport / LAQUOT ("sip:" / "sips:") hostport RAQUOT)
//!             *(SEMI rs-param)
//! rs-param  = "level=" ("0"/"1"/"2"/"3") / generic-param
//! ```
//!
//! The bare form (`ADDR;level=N`) is the design's and what sipseal writes;
//! the name-addr form (`<sip:ADDR>;level=N`, what sipseal wrote before
//! issue 28) is read too and written on request ([`EntryForm::NameAddr`]).
//! Levels: 0 none, 1 authenticated peer, 2 + integrity, 3 +
//! confidentiality; an entry **without** a level marks a link nobody
//! vouched for (a hop found the previous hop's entry missing or wrong).
//! The address is the hop's Via sent-by (`HOST[:PORT]`).
//!
//! Entries line up with Vias counted from the bottom (the caller's first).
//! Responses carry the request's entries back in the same order; a relay
//! finds its own at the position it wrote it, which it keeps in its own Via
//! ([`POSITION_PARAM`]) because a hop may add two entries (a level-less one
//! for the link it arrived on, then its own).

use serde::Serialize;

use super::Message;

/// The header name.
pub const ROUTE_SECURITY: &str = "Route-Security";

/// The highest level.
pub const MAX_LEVEL: u8 = 3;

/// The Via parameter in which a relay keeps the position of its own entry
/// (counted from the bottom, 0 = the caller's), so that it finds it on
/// the response whatever the hops after it added.
pub const POSITION_PARAM: &str = "rs-pos";

/// Why a `Route-Security` entry does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteEntryError {
    /// Neither `ADDR[;level=N]` nor `<sip:ADDR>[;level=N]`.
    #[error("{0:?} is not ADDR[;level=N] or <sip:ADDR>[;level=N]")]
    Syntax(String),
    /// A URI of another scheme.
    #[error("{0:?} is not a sip: URI")]
    NotSip(String),
    /// A level that is not 0 to 3.
    #[error("{0:?}: level must be 0 to {MAX_LEVEL}")]
    Level(String),
    /// No address (`<sip:>`, `;level=1`).
    #[error("{0:?} names no address")]
    NoAddress(String),
    /// An address that is not `HOST[:PORT]`.
    #[error("{0:?}: the address is not HOST[:PORT] (an IPv6 address in brackets)")]
    Address(String),
}

/// The form entries are written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EntryForm {
    /// `ADDR;level=N` (the design's form; the default).
    #[default]
    Bare,
    /// `<sip:ADDR>;level=N` (what sipseal wrote before issue 28).
    NameAddr,
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteEntry {
    /// The hop's address (`HOST[:PORT]`, no scheme).
    pub addr: String,
    /// The level of the link it sent on; `None`: an unchecked link (an
    /// entry a later hop added for a hop that wrote none).
    pub level: Option<u8>,
}

impl RouteEntry {
    /// An entry with a level.
    pub fn new(addr: impl Into<String>, level: u8) -> RouteEntry {
        RouteEntry {
            addr: addr.into(),
            level: Some(level),
        }
    }

    /// A level-less entry: the link from `addr` is unchecked.
    pub fn unchecked(addr: impl Into<String>) -> RouteEntry {
        RouteEntry {
            addr: addr.into(),
            level: None,
        }
    }

    /// Parse `ADDR[;level=N]` or `<sip:ADDR>[;level=N]`; other parameters
    /// are ignored.
    pub fn parse(value: &str) -> Result<RouteEntry, RouteEntryError> {
        let v = value.trim();
        let (addr, params) = match v.strip_prefix('<') {
            Some(rest) => {
                let (uri, params) = rest
                    .split_once('>')
                    .ok_or_else(|| RouteEntryError::Syntax(v.to_owned()))?;
                let addr = uri
                    .strip_prefix("sip:")
                    .or_else(|| uri.strip_prefix("sips:"))
                    .ok_or_else(|| RouteEntryError::NotSip(uri.to_owned()))?;
                let params = match params.trim_start() {
                    "" => "",
                    p => p
                        .strip_prefix(';')
                        .ok_or_else(|| RouteEntryError::Syntax(v.to_owned()))?,
                };
                (addr, params)
            }
            None => v.split_once(';').unwrap_or((v, "")),
        };
        let addr = addr.trim();
        if addr.is_empty() {
            return Err(RouteEntryError::NoAddress(v.to_owned()));
        }
        if !hostport(addr) {
            return Err(RouteEntryError::Address(v.to_owned()));
        }
        let mut level = None;
        for p in params.split(';') {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            if name.trim().eq_ignore_ascii_case("level") {
                level = Some(
                    value
                        .trim()
                        .parse::<u8>()
                        .ok()
                        .filter(|l| *l <= MAX_LEVEL)
                        .ok_or_else(|| RouteEntryError::Level(v.to_owned()))?,
                );
            }
        }
        Ok(RouteEntry {
            addr: addr.to_owned(),
            level,
        })
    }

    /// The header value in `form`.
    pub fn to_value(&self, form: EntryForm) -> String {
        let addr = match form {
            EntryForm::Bare => self.addr.clone(),
            EntryForm::NameAddr => format!("<sip:{}>", self.addr),
        };
        match self.level {
            Some(l) => format!("{addr};level={l}"),
            None => addr,
        }
    }

    /// The level a link counts as: a level-less entry counts as 0.
    pub fn counts_as(&self) -> u8 {
        self.level.unwrap_or(0)
    }

    /// `ADDR level N`, or `ADDR (no level: unchecked)`, for reports.
    pub fn describe(&self) -> String {
        match self.level {
            Some(l) => format!("{} level {l}", self.addr),
            None => format!("{} (no level: unchecked)", self.addr),
        }
    }

    /// Whether it names `addr` (see [`same_addr`]).
    pub fn names(&self, addr: &str) -> bool {
        same_addr(&self.addr, addr)
    }
}

/// Whether `s` is `HOST[:PORT]`: a host name or IPv4 address, or an IPv6
/// reference in brackets; the port a number up to 65535.
fn hostport(s: &str) -> bool {
    let name = |h: &str| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    // `None`: no port; `Some(p)`: what follows the colon.
    let (host_ok, port) = match s.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, "")) => (v6.parse::<std::net::Ipv6Addr>().is_ok(), None),
            Some((v6, tail)) => match tail.strip_prefix(':') {
                Some(p) => (v6.parse::<std::net::Ipv6Addr>().is_ok(), Some(p)),
                None => return false,
            },
            None => return false,
        },
        None => match s.split_once(':') {
            Some((h, p)) => (name(h), Some(p)),
            None => (name(s), None),
        },
    };
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|_| !p.starts_with('+')))
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

/// Every entry of a message, **top (newest) first**, each parsed or with
/// its problem.
pub fn entries(msg: &Message) -> Vec<Result<RouteEntry, RouteEntryError>> {
    msg.header_list(ROUTE_SECURITY)
        .into_iter()
        .map(RouteEntry::parse)
        .collect()
}

/// Put `entry` on top: before the first `Route-Security` line (else
/// before the body headers and Content-Length).
pub fn put_on_top(msg: &mut Message, entry: &RouteEntry, form: EntryForm) {
    let at = match msg.headers().iter().position(|h| h.is(ROUTE_SECURITY)) {
        Some(i) => i,
        None => msg.before_body_headers(),
    };
    msg.insert_header(at, ROUTE_SECURITY, &entry.to_value(form));
}

/// Replace the top entry (a hop's own, just put on) with `entry`: the hop
/// sends on another link than it first chose (a transport fallback).
/// Nothing changes when `msg` carries no entry.
pub fn replace_top(msg: &mut Message, entry: &RouteEntry, form: EntryForm) {
    if let Some(at) = msg.headers().iter().position(|h| h.is(ROUTE_SECURITY)) {
        msg.remove_header_at(at);
        msg.insert_header(at, ROUTE_SECURITY, &entry.to_value(form));
    }
}

/// Add `;rs-pos=POS` to the top Via line of `msg` (the relay's own, just
/// written): where its entry sits, counted from the bottom.
pub fn mark_via(msg: &mut Message, pos: usize) {
    if let Some(at) = msg.headers().iter().position(|h| h.is("Via")) {
        let Some(value) = msg.headers().get(at).map(|h| h.value().to_owned()) else {
            return;
        };
        msg.remove_header_at(at);
        msg.insert_header(at, "Via", &format!("{value};{POSITION_PARAM}={pos}"));
    }
}

/// Where the entry of the hop whose Via is on top of `response` sits,
/// counted from the bottom: its [`POSITION_PARAM`], else its Via's
/// position (the number of Vias below it: one entry per hop). `None` when
/// the Vias cannot be read.
pub fn own_position(response: &Message) -> Option<usize> {
    let vias = response.vias().ok()?;
    let top = vias.first()?;
    match top.param(POSITION_PARAM) {
        Some(p) => p.parse().ok(),
        None => Some(vias.len() - 1),
    }
}

/// The entry at `pos` counted from the bottom of `entries` (top first).
pub fn from_bottom<T>(entries: &[T], pos: usize) -> Option<&T> {
    entries
        .len()
        .checked_sub(pos + 1)
        .and_then(|i| entries.get(i))
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
    fn both_forms_parse_and_the_bare_one_is_written() {
        for (value, addr, level) in [
            (
                "proxy-a.a.example.com:5061;level=3",
                "proxy-a.a.example.com:5061",
                Some(3),
            ),
            (
                "<sip:proxy-a.a.example.com:5061>;level=3",
                "proxy-a.a.example.com:5061",
                Some(3),
            ),
            ("<sips:192.0.2.1>;level=2", "192.0.2.1", Some(2)),
            ("192.0.2.1", "192.0.2.1", None),
            ("<sip:192.0.2.1:5060>", "192.0.2.1:5060", None),
            (
                " [2001:db8::1]:5060 ; level=0 ",
                "[2001:db8::1]:5060",
                Some(0),
            ),
            ("[::1];foo=bar;LEVEL=1", "[::1]", Some(1)),
        ] {
            let e = RouteEntry::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!((e.addr.as_str(), e.level), (addr, level), "{value}");
        }
        let e = RouteEntry::new("proxy-a.a.example.com:5061", 3);
        assert_eq!(
            e.to_value(EntryForm::Bare),
            "proxy-a.a.example.com:5061;level=3"
        );
        assert_eq!(
            e.to_value(EntryForm::NameAddr),
            "<sip:proxy-a.a.example.com:5061>;level=3"
        );
        let u = RouteEntry::unchecked("192.0.2.10:5060");
        assert_eq!(u.to_value(EntryForm::Bare), "192.0.2.10:5060");
        assert_eq!(u.to_value(EntryForm::NameAddr), "<sip:192.0.2.10:5060>");
        assert_eq!(u.counts_as(), 0);
        // What is written reads back the same, in either form.
        for form in [EntryForm::Bare, EntryForm::NameAddr] {
            for entry in [&e, &u] {
                assert_eq!(&RouteEntry::parse(&entry.to_value(form)).unwrap(), entry);
            }
        }
        assert!(e.names("PROXY-A.a.example.com"));
        assert!(e.names("sip:proxy-a.a.example.com:5061"));
        assert!(!e.names("proxy-a.a.example.com:5060"));
        assert!(!e.names("proxy-b.b.example.com"));
        assert!(same_addr("[::1]:5060", "[::1]"));
        assert_eq!(
            via_sent_by("SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1"),
            Some("192.0.2.1:5060")
        );
    }

    #[test]
    fn bad_entries_say_why() {
        use RouteEntryError as E;
        for (bad, why) in [
            ("<sip:x>;level=4", E::Level("<sip:x>;level=4".into())),
            ("x;level=", E::Level("x;level=".into())),
            ("x;level=-1", E::Level("x;level=-1".into())),
            ("<http://x>;level=1", E::NotSip("http://x".into())),
            ("<sip:>;level=1", E::NoAddress("<sip:>;level=1".into())),
            (";level=1", E::NoAddress(";level=1".into())),
            ("", E::NoAddress(String::new())),
            ("<sip:x;level=1", E::Syntax("<sip:x;level=1".into())),
            ("<sip:x>level=1", E::Syntax("<sip:x>level=1".into())),
            ("sip:x;level=1", E::Address("sip:x;level=1".into())),
            ("x:99999", E::Address("x:99999".into())),
            ("[::1", E::Address("[::1".into())),
            ("[nope]:5060", E::Address("[nope]:5060".into())),
            ("a b;level=1", E::Address("a b;level=1".into())),
        ] {
            assert_eq!(RouteEntry::parse(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn new_entries_go_on_top_and_the_via_keeps_the_position() {
        let mut m = Message::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP p:5060;branch=z9hG4bKx\r\nVia: SIP/2.0/UDP a\r\nRoute-Security: <sip:a>;level=1\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        // Without the parameter: one entry per Via.
        assert_eq!(own_position(&m), Some(1));
        put_on_top(&mut m, &RouteEntry::unchecked("q"), EntryForm::Bare);
        put_on_top(&mut m, &RouteEntry::new("p", 2), EntryForm::Bare);
        let got: Vec<_> = entries(&m).into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got.iter().map(|e| e.addr.as_str()).collect::<Vec<_>>(),
            ["p", "q", "a"]
        );
        assert_eq!(from_bottom(&got, 2).map(|e| e.addr.as_str()), Some("p"));
        assert_eq!(from_bottom(&got, 3), None);
        assert_eq!(m.header_values(ROUTE_SECURITY)[0], "p;level=2");
        mark_via(&mut m, 2);
        assert_eq!(own_position(&m), Some(2));
        assert!(
            m.header_values("Via")[0].ends_with(";branch=z9hG4bKx;rs-pos=2"),
            "{:?}",
            m.header_values("Via")
        );
    }
}
