//! Stateless proxy routing (RFC 3261 §16): a request goes on with a new
//! top Via and Max-Forwards decremented, the Route entry that brought it
//! here taken off, and a Record-Route when the proxy wants the dialog; a
//! response goes back with the proxy's Via removed.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::headers::{HeaderError, split_list};
use super::message::Message;
use super::syntax::{self, Via};
use super::uri::HopUri;

/// The branch of the Via a stateless proxy puts on a request (RFC 3261
/// §16.11): `z9hG4bK`, an HMAC-SHA256, under this relay's `key`, of what
/// identifies the transaction and survives into its responses (the
/// previous hop's Via, branch and sent-by; Call-ID, From tag and CSeq
/// number, not the method, so that a CANCEL or non-2xx ACK gets the
/// INVITE's branch), then `.` and a second HMAC of what routes the
/// request here (Request-URI, Route, Proxy-Require: §16.6 step 8, so
/// that a loop is told from a spiral, §16.3 item 4). A retransmission
/// gets the same branch; a response proves it answers a request this
/// relay forwarded by carrying the first part back.
pub fn stateless_branch(key: &[u8; 32], previous: &Via, msg: &Message) -> String {
    format!(
        "z9hG4bK{}.{}",
        transaction_part(key, previous, msg),
        routing_part(key, msg)
    )
}

fn mac(key: &[u8; 32], label: &[u8], parts: &[&str], len: usize) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(label);
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    let tag = mac.finalize().into_bytes();
    hex::encode(&tag[..len])
}

/// What identifies the transaction of `msg` whose previous hop's Via is
/// `previous` (read the same from a request and its responses).
fn transaction_part(key: &[u8; 32], previous: &Via, msg: &Message) -> String {
    let from_tag = msg.from_tag().ok().flatten().unwrap_or_default();
    let seq = msg.cseq().map(|c| c.seq.to_string()).unwrap_or_default();
    let call_id = msg.header("Call-ID").unwrap_or_default();
    let sent_by = previous.sent_by();
    let mut parts = vec![
        previous.branch().unwrap_or_default(),
        &sent_by,
        call_id,
        &from_tag,
        &seq,
    ];
    // Where the response goes back (RFC 3581): what the server transport
    // wrote, under the MAC too, so that a next hop cannot point the
    // response elsewhere (the relay's own store, a third party) by
    // rewriting them on the way back.
    let received = previous.param("received").unwrap_or_default();
    let rport = previous.param("rport").unwrap_or_default();
    if !received.is_empty() || !rport.is_empty() {
        parts.extend([received, rport]);
    }
    mac(key, b"", &parts, 12)
}

/// What routes a request (RFC 3261 §16.6 step 8): its Request-URI, Route
/// and Proxy-Require as they arrived.
fn routing_part(key: &[u8; 32], msg: &Message) -> String {
    let route = msg.header_list("Route").join(",");
    let require = msg.header_list("Proxy-Require").join(",");
    let uri = msg.request_uri().unwrap_or_default();
    mac(key, b"route", &[uri, &route, &require], 4)
}

/// The To tag a stateless proxy puts on its own answer to `request`
/// (RFC 3261 §16.11): derived from the request under the proxy's `key`,
/// so that the ACK of that answer, which carries the tag back with the
/// same Call-ID, From tag and CSeq number, is known for its own and
/// absorbed (§8.2.7) without the proxy keeping any state.
pub fn local_tag(key: &[u8; 32], request: &Message) -> String {
    let from_tag = request.from_tag().ok().flatten().unwrap_or_default();
    let seq = request
        .cseq()
        .map(|c| c.seq.to_string())
        .unwrap_or_default();
    let call_id = request.header("Call-ID").unwrap_or_default();
    format!("sl{}", mac(key, b"to-tag", &[call_id, &from_tag, &seq], 8))
}

/// Whether `msg` is the ACK of an answer this proxy made itself.
pub fn acks_own_answer(msg: &Message, key: &[u8; 32]) -> bool {
    msg.method() == Some("ACK")
        && msg
            .to_tag()
            .ok()
            .flatten()
            .is_some_and(|t| t == local_tag(key, msg))
}

/// Whether `msg` has been here before with the same routing (RFC 3261
/// §16.3 item 4): a Via below the top that this proxy wrote (its sent-by
/// names it) whose branch is the one it would write on this request
/// again. A Via of this proxy whose routing part differs is a spiral
/// (the request was retargeted and came back): not a loop.
pub fn looped(msg: &Message, names: &OwnNames, key: &[u8; 32]) -> bool {
    // One Via (the sender's own): it has been nowhere yet.
    let lines = msg.header_values("Via");
    if lines.len() < 2 && lines.first().is_none_or(|l| !l.contains(',')) {
        return false;
    }
    let Ok(vias) = msg.vias() else {
        return false;
    };
    let again = routing_part(key, msg);
    // Only as many Vias as Max-Forwards allows a request to carry.
    vias.windows(2).take(256).any(|pair| {
        let [mine, below] = pair else { return false };
        names.names_sent_by(&mine.sent_by())
            && mine.branch().is_some_and(|b| {
                b.strip_prefix("z9hG4bK")
                    .and_then(|b| b.split_once('.'))
                    .is_some_and(|(txn, route)| {
                        route == again && txn == transaction_part(key, below, msg)
                    })
            })
    })
}

/// `msg` forwarded as a request (RFC 3261 §16.6 steps 3 and 8): a new top
/// `Via` with the transport the request arrived with, `sent_by` and the
/// [`stateless_branch`] under `key`; Max-Forwards decremented, or 69 when
/// absent. Only the topmost Via is read. The caller has turned away a
/// request whose Max-Forwards is 0.
pub fn forward_request(
    msg: &Message,
    sent_by: &str,
    key: &[u8; 32],
) -> Result<Message, HeaderError> {
    let mut out = msg.clone();
    let top = msg.top_via()?;
    let branch = stateless_branch(key, top, msg);
    out.prepend_header(
        "Via",
        &format!("SIP/2.0/{} {sent_by};branch={branch}", top.transport),
    );
    match msg.max_forwards()? {
        Some(n) => out.set_header("Max-Forwards", &n.saturating_sub(1).to_string()),
        None => out.insert_header(1, "Max-Forwards", "69"),
    }
    Ok(out)
}

/// The host of a Via sent-by (`HOST[:PORT]`, IPv6 in brackets).
pub fn sent_by_host(sent_by: &str) -> String {
    match sent_by.strip_prefix('[') {
        Some(rest) => format!("[{}", rest.split_inclusive(']').next().unwrap_or(rest)),
        None => sent_by.split(':').next().unwrap_or(sent_by).to_owned(),
    }
}

/// Everything that names this proxy (RFC 3261 §16.4): the addresses it
/// listens on, and the names it goes by (its Via sent-by, aliases, the
/// names in its certificate). A URI names it when its host is one of
/// them and its port (or the default port) is one it listens on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnNames {
    listeners: Vec<std::net::SocketAddr>,
    names: Vec<(String, Option<u16>)>,
}

impl OwnNames {
    /// The names of a proxy listening on `listeners`.
    pub fn new(listeners: impl IntoIterator<Item = std::net::SocketAddr>) -> OwnNames {
        OwnNames {
            listeners: listeners.into_iter().collect(),
            names: Vec::new(),
        }
    }

    /// Add a name (`HOST`, `HOST:PORT`, `[IPv6]:PORT`, or a SIP URI):
    /// without a port it names this proxy on any port it listens on.
    pub fn add(&mut self, name: &str) {
        let uri = if name.contains(':')
            && !name.starts_with('[')
            && name.parse::<std::net::Ipv6Addr>().is_ok()
        {
            format!("sip:[{name}]")
        } else if name.starts_with("sip:") || name.starts_with("sips:") {
            name.to_owned()
        } else {
            format!("sip:{name}")
        };
        if let Some(u) = HopUri::parse(&uri) {
            let host = unbracket(&u.host).to_ascii_lowercase();
            if !self.names.contains(&(host.clone(), u.port)) {
                self.names.push((host, u.port));
            }
        }
    }

    /// Whether it knows no name at all.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty() && self.names.is_empty()
    }

    /// The addresses it listens on.
    pub fn listeners(&self) -> &[std::net::SocketAddr] {
        &self.listeners
    }

    /// Whether `uri` (a Route entry, a Request-URI) names this proxy.
    pub fn names_uri(&self, uri: &HopUri) -> bool {
        let tls = uri.secure || uri.transport.as_deref() == Some("tls");
        let port = uri.port.unwrap_or(if tls { 5061 } else { 5060 });
        let listens_on = |p: u16| self.listeners.iter().any(|l| l.port() == p);
        let by_name = |host: &str| {
            self.names.iter().any(|(name, named_port)| {
                name == host
                    && match (named_port, uri.port) {
                        (Some(n), Some(u)) => *n == u,
                        (None, Some(u)) => listens_on(u),
                        (_, None) => true,
                    }
            })
        };
        match uri.ip() {
            Some(ip) => {
                let ip = ip.to_canonical();
                self.listeners
                    .iter()
                    .any(|l| l.port() == port && same_ip(l.ip(), ip))
                    || by_name(&ip.to_string())
            }
            None => by_name(&uri.host.to_ascii_lowercase()),
        }
    }

    /// Whether a Via sent-by (`HOST[:PORT]`) is this proxy's.
    pub fn names_sent_by(&self, sent_by: &str) -> bool {
        HopUri::parse(&format!("sip:{sent_by}")).is_some_and(|u| self.names_uri(&u))
    }
}

fn unbracket(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether `ip` is the address a listener bound to `bound` receives on:
/// the same address (IPv4-mapped IPv6 read as IPv4), or a loopback or
/// unspecified address of a listener on every address.
fn same_ip(bound: std::net::IpAddr, ip: std::net::IpAddr) -> bool {
    let (bound, ip) = (bound.to_canonical(), ip.to_canonical());
    bound == ip || (bound.is_unspecified() && (ip.is_loopback() || ip.is_unspecified()))
}

/// A request routed here by loose routes (RFC 3261 §16.4; RFC 5658: a
/// proxy that record-routed twice finds two of its entries): every Route
/// entry at the top that names this proxy is taken off. An entry of this
/// proxy further down stays: the request is to come back (a spiral).
pub fn pop_own_routes(out: &mut Message, names: &OwnNames) {
    while let Some(at) = out.headers().iter().position(|h| h.is("Route")) {
        let Some(header) = out.headers().get(at) else {
            return;
        };
        let value = header.value().to_owned();
        let name = header.full_name().to_owned();
        let entries = split_list(&value);
        let mine = entries
            .first()
            .and_then(|e| HopUri::parse(e))
            .is_some_and(|h| names.names_uri(&h));
        if !mine {
            return;
        }
        out.remove_header_at(at);
        if let Some(rest) = entries.get(1..).filter(|r| !r.is_empty()) {
            out.insert_header(at, &name, &rest.join(", "));
        }
    }
}

/// The Record-Route entry of a listener: `<sip:HOST:PORT;transport=T;lr>`
/// (RFC 3261 §16.6 step 4, RFC 5658), so that the dialog's later requests
/// come back on the same transport and never leave TLS; `<sips:HOST:PORT;lr>`
/// when the request is `sips:` (`secure`).
pub fn record_route_entry(host: &str, port: u16, transport: &str, secure: bool) -> String {
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{host}]"),
        Err(_) => host.to_owned(),
    };
    let t = transport.to_ascii_lowercase();
    if secure {
        format!("<sips:{host}:{port};lr>")
    } else {
        format!("<sip:{host}:{port};transport={t};lr>")
    }
}

/// Record-Route `entries` (bottom first) on a dialog-creating request
/// (INVITE, SUBSCRIBE, REFER without a To tag), topmost (RFC 3261 §16.6
/// step 4). Two entries when the request arrived on one listener and
/// leaves on another (RFC 5658): the inbound one, then the outbound one
/// on top.
pub fn record_route(out: &mut Message, entries: &[String]) -> Result<(), HeaderError> {
    let creating =
        matches!(out.method(), Some("INVITE" | "SUBSCRIBE" | "REFER")) && out.to_tag()?.is_none();
    if !creating {
        return Ok(());
    }
    for entry in entries {
        let at = out
            .headers()
            .iter()
            .position(|h| h.is("Record-Route"))
            .or_else(|| {
                out.headers()
                    .iter()
                    .position(|h| h.is("Max-Forwards"))
                    .map(|i| i + 1)
            })
            .unwrap_or(1);
        out.insert_header(at, "Record-Route", entry);
    }
    Ok(())
}

/// Take off the Record-Route entries `old` this proxy added, and add
/// `new` instead (bottom first): the same request sent on another
/// transport names that transport's listener.
pub fn replace_record_route(
    out: &mut Message,
    old: &[String],
    new: &[String],
) -> Result<(), HeaderError> {
    let before = out.header_list("Record-Route").len();
    for entry in old {
        let at = out
            .headers()
            .iter()
            .position(|h| h.is("Record-Route") && h.value().trim() == entry);
        if let Some(at) = at {
            out.remove_header_at(at);
        }
    }
    if out.header_list("Record-Route").len() < before {
        record_route(out, new)?;
    }
    Ok(())
}

/// Why a response is not this relay's to forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotOurs {
    /// No Via, or a top Via that does not parse.
    #[error("the response has no readable top Via")]
    NoVia,
    /// The top Via names another sent-by.
    #[error("its top Via is {0}, not this relay's")]
    OtherSentBy(String),
    /// The branch is not one this relay made for that transaction.
    #[error("its top Via branch was not made by this relay for this transaction")]
    ForeignBranch,
    /// Only this relay's Via: taking it off leaves nowhere to send it.
    #[error("it carries no Via below this relay's: there is no one to send it to")]
    NothingBelow,
}

/// Whether `msg`, a response, answers a request this relay forwarded
/// (RFC 3261 §16.7 step 3 and §16.11): its top Via is `sent_by` with the
/// [`stateless_branch`] of the Via below it, which must exist. Only
/// those two Vias are read.
pub fn check_response_via(msg: &Message, sent_by: &str, key: &[u8; 32]) -> Result<(), NotOurs> {
    let mut lines = msg.header_values("Via").into_iter();
    let first =
        syntax::via_list(lines.next().ok_or(NotOurs::NoVia)?).map_err(|_| NotOurs::NoVia)?;
    let mut entries = first.into_iter();
    let top = entries.next().ok_or(NotOurs::NoVia)?;
    if !top.sent_by().eq_ignore_ascii_case(sent_by) {
        return Err(NotOurs::OtherSentBy(top.sent_by()));
    }
    let below = match entries.next() {
        Some(v) => v,
        None => lines
            .next()
            .and_then(|l| syntax::via_list(l).ok())
            .and_then(|v| v.into_iter().next())
            .ok_or(NotOurs::NothingBelow)?,
    };
    let expected = transaction_part(key, &below, msg);
    let matches = top
        .branch()
        .and_then(|b| b.strip_prefix("z9hG4bK"))
        .map(|b| b.split_once('.').map_or(b, |(txn, _)| txn))
        .is_some_and(|b| subtle::ConstantTimeEq::ct_eq(b.as_bytes(), expected.as_bytes()).into());
    if matches {
        Ok(())
    } else {
        Err(NotOurs::ForeignBranch)
    }
}

/// `msg` forwarded as a response (RFC 3261 §16.7 step 3): the top Via
/// (this proxy's) removed. `None` when there is no Via to remove.
pub fn forward_response(msg: &Message) -> Option<Message> {
    let at = msg.headers().iter().position(|h| h.is("Via"))?;
    let h = msg.headers().get(at)?;
    let values = split_list(h.value());
    let name = h.name().to_owned();
    let rest: Vec<&str> = values.iter().skip(1).copied().collect();
    let mut out = msg.clone();
    out.remove_header_at(at);
    if !rest.is_empty() {
        out.insert_header(at, &name, &rest.join(", "));
    }
    Some(out)
}

/// Rewrite the topmost Via entry's text with `f` (the other entries of
/// its line, and every other line, kept as they are).
fn rewrite_top_via(msg: &mut Message, f: impl FnOnce(&str) -> String) -> bool {
    let Some(at) = msg.headers().iter().position(|h| h.is("Via")) else {
        return false;
    };
    let Some(h) = msg.headers().get(at) else {
        return false;
    };
    let name = h.full_name().to_owned();
    let values = split_list(h.value());
    let Some(first) = values.first() else {
        return false;
    };
    let mut line = f(first);
    for v in values.iter().skip(1) {
        line.push_str(", ");
        line.push_str(v);
    }
    msg.remove_header_at(at);
    msg.insert_header(at, &name, &line);
    true
}

/// What the server transport writes on a request it received (RFC 3261
/// §18.2.1, RFC 3581 §4): `received` with the source address and `rport`
/// with the source port, whatever the sender wrote there (a value it
/// supplied would steer the responses). The response then goes back to
/// where the request really came from.
pub fn mark_received(msg: &mut Message, source: std::net::SocketAddr) {
    if msg.top_via().is_err() {
        return;
    }
    let ip = source.ip().to_canonical().to_string();
    rewrite_top_via(msg, |v| {
        let mut parts: Vec<String> = v
            .split(';')
            .enumerate()
            .filter(|(i, p)| {
                let name = p.split('=').next().unwrap_or_default().trim();
                *i == 0
                    || !(name.eq_ignore_ascii_case("received")
                        || name.eq_ignore_ascii_case("rport"))
            })
            .map(|(_, p)| p.trim().to_owned())
            .collect();
        parts.push(format!("received={ip}"));
        parts.push(format!("rport={}", source.port()));
        parts.join(";")
    });
}

/// Set the transport and sent-by of the top Via (the same request sent
/// from another listener).
pub fn set_via_sent_by(msg: &mut Message, token: &str, sent_by: &str) {
    rewrite_top_via(msg, |v| match v.split_once(char::is_whitespace) {
        Some((proto, rest)) => {
            let base = proto.rsplit_once('/').map_or(proto, |(b, _)| b);
            let params = rest.trim_start().split_once(';').map(|(_, p)| p);
            match params {
                Some(p) => format!("{base}/{token} {sent_by};{p}"),
                None => format!("{base}/{token} {sent_by}"),
            }
        }
        None => v.to_owned(),
    });
}

/// Set the transport of the top Via (the transport this hop really sends
/// on, RFC 3261 §18.1.1, once it is chosen).
pub fn set_via_transport(msg: &mut Message, token: &str) {
    rewrite_top_via(msg, |v| match v.split_once(char::is_whitespace) {
        Some((proto, rest)) => {
            let base = proto.rsplit_once('/').map_or(proto, |(b, _)| b);
            format!("{base}/{token} {}", rest.trim_start())
        }
        None => v.to_owned(),
    });
}

/// Where a response goes (RFC 3261 §18.2.2, RFC 3581 §4): the transport of
/// its top Via, the `received` address (else the sent-by host) and the
/// `rport` value (else the sent-by port, else none).
pub fn response_hop(msg: &Message) -> Option<(String, String, Option<u16>)> {
    let top = msg.top_via().ok()?;
    let host = top.param("received").unwrap_or(&top.host).to_owned();
    let port = top.param("rport").and_then(|p| p.parse().ok()).or(top.port);
    Some((top.transport.clone(), host, port))
}

/// The URI a request goes on to (RFC 3261 §16.6 steps 6-7, loose
/// routing): the first Route entry that does not name this proxy, else
/// `None` (its Request-URI decides).
pub fn next_route(msg: &Message, names: &OwnNames) -> Option<String> {
    msg.header_values("Route")
        .into_iter()
        .flat_map(split_list)
        .map(str::trim)
        .find(|r| !HopUri::parse(r).is_some_and(|h| names.names_uri(&h)))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@b.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP a.example.com;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
Route: <sip:proxy-a.a.example.com;lr>, <sip:proxy-b.b.example.com;lr>\r\n\
From: <sip:alice@a.example.com>;tag=1\r\n\
To: <sip:bob@b.example.com>\r\n\
Call-ID: c\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_request_goes_on_and_its_response_comes_back() {
        let msg = Message::parse(INVITE).unwrap();
        let mut out = forward_request(&msg, "proxy-a.a.example.com:5060", &KEY).unwrap();
        let top = out.top_via().unwrap();
        assert_eq!(
            (top.transport.as_str(), top.sent_by().as_str()),
            ("TCP", "proxy-a.a.example.com:5060")
        );
        // The same request (a retransmission) gets the same branch.
        let again = forward_request(&msg, "proxy-a.a.example.com:5060", &KEY).unwrap();
        assert_eq!(again.top_via().unwrap().branch(), top.branch());
        assert_eq!(out.header("Max-Forwards"), Some("69"));
        let mut me = OwnNames::new(["127.0.0.1:5060".parse().unwrap()]);
        me.add("proxy-a.a.example.com");
        pop_own_routes(&mut out, &me);
        assert_eq!(out.header("Route"), Some("<sip:proxy-b.b.example.com;lr>"));
        pop_own_routes(&mut out, &OwnNames::new([]));
        assert_eq!(out.header("Route"), Some("<sip:proxy-b.b.example.com;lr>"));
        record_route(
            &mut out,
            &[record_route_entry("127.0.0.1", 5060, "UDP", false)],
        )
        .unwrap();
        assert_eq!(
            record_route_entry("::1", 5061, "TLS", false),
            "<sip:[::1]:5061;transport=tls;lr>"
        );
        assert_eq!(
            record_route_entry("::1", 5061, "TLS", true),
            "<sips:[::1]:5061;lr>"
        );
        assert_eq!(
            out.header("Record-Route"),
            Some("<sip:127.0.0.1:5060;transport=udp;lr>")
        );
        let back = forward_response(&out).unwrap();
        assert_eq!(back.header_list("Via"), msg.header_list("Via"));
    }

    #[test]
    fn only_responses_to_what_this_relay_forwarded_pass() {
        let msg = Message::parse(INVITE).unwrap();
        let sent = forward_request(&msg, "p.example.com", &KEY).unwrap();
        let ok = |m: &Message| check_response_via(m, "p.example.com", &KEY);
        let resp = |m: &Message| {
            let text = String::from_utf8(m.to_bytes()).unwrap();
            let text = text.replacen("INVITE sip:bob@b.example.com SIP/2.0", "SIP/2.0 200 OK", 1);
            Message::parse(text.as_bytes()).unwrap()
        };
        assert_eq!(ok(&resp(&sent)), Ok(()));
        assert!(matches!(
            check_response_via(&resp(&sent), "q.example.com", &KEY),
            Err(NotOurs::OtherSentBy(_))
        ));
        assert_eq!(
            check_response_via(&resp(&sent), "p.example.com", &[8; 32]),
            Err(NotOurs::ForeignBranch)
        );
        // A forged Via with a guessed branch, or one for another call.
        let mut other = sent.clone();
        other.set_header("Call-ID", "another");
        assert_eq!(ok(&resp(&other)), Err(NotOurs::ForeignBranch));
        let mut alone = resp(&sent);
        let top = alone.header_list("Via")[0].to_owned();
        alone.remove_headers("Via");
        alone.push_header("Via", &top);
        assert_eq!(ok(&alone), Err(NotOurs::NothingBelow));
        assert_eq!(
            ok(&resp(&msg)),
            Err(NotOurs::OtherSentBy("a.example.com".into()))
        );
    }

    #[test]
    fn a_proxy_knows_every_name_it_goes_by() {
        let mut me = OwnNames::new([
            "127.0.0.1:5070".parse().unwrap(),
            "127.0.0.1:5071".parse().unwrap(),
            "[::]:5072".parse().unwrap(),
        ]);
        me.add("proxy-a.a.example.com");
        me.add("203.0.113.5:5060");
        let names = |u: &str| me.names_uri(&HopUri::parse(u).unwrap());
        assert!(
            names("<sip:127.0.0.1:5071;transport=tls;lr>"),
            "another listener"
        );
        assert!(names("sip:[::ffff:127.0.0.1]:5070"), "IPv4-mapped");
        assert!(names("sip:[::1]:5072"), "a listener on every address");
        assert!(!names("sip:127.0.0.1:5080"), "another port: another proxy");
        assert!(!names("sip:127.0.0.1"), "5060 is not a port it listens on");
        assert!(names("sip:PROXY-A.a.example.com"));
        assert!(names("sip:proxy-a.a.example.com:5070"));
        assert!(!names("sip:proxy-a.a.example.com:6000"));
        assert!(names("sip:203.0.113.5"), "its --via, default port");
        assert!(!names("sip:proxy-b.b.example.com"));
        assert!(me.names_sent_by("127.0.0.1:5070"));
        assert!(!me.names_sent_by("127.0.0.1:5090"));
    }

    #[test]
    fn every_route_entry_on_top_that_names_the_proxy_comes_off() {
        let me = OwnNames::new([
            "127.0.0.1:5070".parse().unwrap(),
            "127.0.0.1:5071".parse().unwrap(),
        ]);
        let text = String::from_utf8(INVITE.to_vec()).unwrap().replace(
            "Route: <sip:proxy-a.a.example.com;lr>, <sip:proxy-b.b.example.com;lr>",
            "Route: <sip:127.0.0.1:5071;transport=tcp;lr>\r\nRoute: <sip:127.0.0.1:5070;lr>, <sip:k.example.com;lr>, <sip:127.0.0.1:5070;lr>",
        );
        let mut msg = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(
            next_route(&msg, &me).as_deref(),
            Some("<sip:k.example.com;lr>")
        );
        pop_own_routes(&mut msg, &me);
        assert_eq!(
            msg.header_list("Route"),
            ["<sip:k.example.com;lr>", "<sip:127.0.0.1:5070;lr>"],
            "its entry below another stays: the request comes back (a spiral)"
        );
    }

    #[test]
    fn a_request_that_comes_back_unchanged_has_looped_one_retargeted_spirals() {
        let me = OwnNames::new(["127.0.0.1:5070".parse().unwrap()]);
        let msg = Message::parse(INVITE).unwrap();
        assert!(!looped(&msg, &me, &KEY));
        let once = forward_request(&msg, "127.0.0.1:5070", &KEY).unwrap();
        // Back again through another proxy, Route and Request-URI as they were.
        let back = forward_request(&once, "k.example.com", &[9; 32]).unwrap();
        let mut back = back;
        back.set_header("Route", &msg.header_list("Route").join(", "));
        assert!(looped(&back, &me, &KEY));
        let mut retargeted = back.clone();
        retargeted.set_start_line(crate::sip::StartLine::Request {
            method: "INVITE".into(),
            uri: "sip:bob@192.0.2.9".into(),
        });
        assert!(!looped(&retargeted, &me, &KEY), "a spiral");
        assert!(!looped(&back, &me, &[8; 32]), "another proxy's key");
    }

    #[test]
    fn received_and_rport_are_the_real_source_whatever_the_sender_wrote() {
        let text = String::from_utf8(INVITE.to_vec()).unwrap().replace(
            "branch=z9hG4bK1",
            "branch=z9hG4bK1;received=10.0.0.1;rport=1;x",
        );
        let mut msg = Message::parse(text.as_bytes()).unwrap();
        mark_received(&mut msg, "[::ffff:192.0.2.7]:40000".parse().unwrap());
        assert_eq!(
            msg.header("Via"),
            Some("SIP/2.0/TCP a.example.com;branch=z9hG4bK1;x;received=192.0.2.7;rport=40000")
        );
        assert_eq!(
            response_hop(&msg),
            Some(("TCP".into(), "192.0.2.7".into(), Some(40000)))
        );
    }

    #[test]
    fn ipv6_sent_by_hosts_keep_their_brackets() {
        assert_eq!(sent_by_host("[2001:db8::1]:5060"), "[2001:db8::1]");
        assert_eq!(sent_by_host("p.example.com:5060"), "p.example.com");
    }
}
