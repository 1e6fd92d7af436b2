//! Stateless proxy routing (RFC 3261 §16): a request goes on with a new
//! top Via and Max-Forwards decremented, the Route entry that brought it
//! here taken off, and a Record-Route when the proxy wants the dialog; a
//! response goes back with the proxy's Via removed.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::headers::{HeaderError, split_list};
use super::message::Message;
use super::syntax::{self, Via};

/// The branch of the Via a stateless proxy puts on a request (RFC 3261
/// §16.11): `z9hG4bK` and an HMAC-SHA256, under this relay's `key`, of
/// what identifies the transaction and survives into its responses: the
/// previous hop's Via (branch and sent-by), Call-ID, From tag and CSeq
/// number (not the method, so a CANCEL or non-2xx ACK gets the INVITE's
/// branch). A retransmission gets the same branch; a response proves it
/// answers a request this relay forwarded by carrying it back.
pub fn stateless_branch(key: &[u8; 32], previous: &Via, msg: &Message) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    let from_tag = msg.from_tag().ok().flatten().unwrap_or_default();
    let seq = msg.cseq().map(|c| c.seq.to_string()).unwrap_or_default();
    let call_id = msg.header("Call-ID").unwrap_or_default();
    for part in [
        previous.branch().unwrap_or_default(),
        &previous.sent_by(),
        call_id,
        &from_tag,
        &seq,
    ] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    let tag = mac.finalize().into_bytes();
    format!("z9hG4bK{}", hex::encode(&tag[..12]))
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
    let branch = stateless_branch(key, &top, msg);
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

/// A request routed here by a loose route (RFC 3261 §16.4): the topmost
/// Route entry goes when it names one of `hosts` (this proxy's addresses,
/// `HOST[:PORT]`; ports compared when both give one).
pub fn pop_route(out: &mut Message, hosts: &[String]) {
    let Some(at) = out.headers().iter().position(|h| h.is("Route")) else {
        return;
    };
    let Some(header) = out.headers().get(at) else {
        return;
    };
    let value = header.value().to_owned();
    let name = header.full_name().to_owned();
    let entries = split_list(&value);
    let mine = entries
        .first()
        .and_then(|e| crate::sip::uri::HopUri::parse(e))
        .is_some_and(|h| {
            let addr = match h.port {
                Some(p) => format!("{}:{p}", h.host),
                None => h.host.clone(),
            };
            hosts
                .iter()
                .any(|m| crate::sip::route_security::same_addr(m, &addr))
        });
    if !mine {
        return;
    }
    out.remove_header_at(at);
    if let Some(rest) = entries.get(1..).filter(|r| !r.is_empty()) {
        out.insert_header(at, &name, &rest.join(", "));
    }
}

/// Record-Route `<sip:HOST;lr>` on a dialog-creating request (INVITE,
/// SUBSCRIBE, REFER without a To tag), topmost (RFC 3261 §16.6 step 4).
pub fn record_route(out: &mut Message, host: &str) -> Result<(), HeaderError> {
    let creating =
        matches!(out.method(), Some("INVITE" | "SUBSCRIBE" | "REFER")) && out.to_tag()?.is_none();
    if !creating {
        return Ok(());
    }
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
    out.insert_header(at, "Record-Route", &format!("<sip:{host};lr>"));
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
    let expected = stateless_branch(key, &below, msg);
    let matches = top
        .branch()
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
/// §18.2.1, RFC 3581 §4): `received` with the source address when the
/// top Via's sent-by host differs from it, and an `rport` without a
/// value filled in with the source port. The response then goes back to
/// where the request really came from.
pub fn mark_received(msg: &mut Message, source: std::net::SocketAddr) {
    let Ok(top) = msg.top_via() else { return };
    let ip = source.ip().to_string();
    let host = top.host.trim_start_matches('[').trim_end_matches(']');
    let add_received = !host.eq_ignore_ascii_case(&ip) && top.param("received").is_none();
    let fill_rport = top
        .params
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("rport") && v.is_none());
    if !add_received && !fill_rport {
        return;
    }
    rewrite_top_via(msg, |v| {
        let mut parts: Vec<String> = v.split(';').map(|p| p.trim().to_owned()).collect();
        if fill_rport {
            for p in parts.iter_mut().skip(1) {
                if p.eq_ignore_ascii_case("rport") {
                    *p = format!("rport={}", source.port());
                }
            }
        }
        if add_received {
            parts.push(format!("received={ip}"));
        }
        parts.join(";")
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

/// The URI a request goes on to (RFC 3261 §16.6 step 6-7, loose routing):
/// the first Route entry that does not name this proxy (`own`, its
/// sent-by addresses), else `next` (a configured outbound proxy), else the
/// Request-URI.
pub fn next_hop_uri(msg: &Message, own: &[String], next: Option<&str>) -> Option<String> {
    let mut routes = msg
        .header_values("Route")
        .into_iter()
        .flat_map(split_list)
        .map(str::trim);
    let first_not_mine = routes.find(|r| {
        let hop = crate::sip::uri::HopUri::parse(r);
        !hop.is_some_and(|h| {
            let addr = match h.port {
                Some(p) => format!("{}:{p}", h.host),
                None => h.host.clone(),
            };
            own.iter()
                .any(|o| crate::sip::route_security::same_addr(o, &addr))
        })
    });
    first_not_mine
        .map(str::to_owned)
        .or_else(|| next.map(str::to_owned))
        .or_else(|| msg.request_uri().map(str::to_owned))
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
        pop_route(&mut out, &["proxy-a.a.example.com:5060".into()]);
        assert_eq!(out.header("Route"), Some("<sip:proxy-b.b.example.com;lr>"));
        pop_route(&mut out, &["elsewhere.example.com".into()]);
        assert_eq!(out.header("Route"), Some("<sip:proxy-b.b.example.com;lr>"));
        record_route(&mut out, "proxy-a.a.example.com").unwrap();
        assert_eq!(
            out.header("Record-Route"),
            Some("<sip:proxy-a.a.example.com;lr>")
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
    fn ipv6_sent_by_hosts_keep_their_brackets() {
        assert_eq!(sent_by_host("[2001:db8::1]:5060"), "[2001:db8::1]");
        assert_eq!(sent_by_host("p.example.com:5060"), "p.example.com");
    }
}
