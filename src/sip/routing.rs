//! Stateless proxy routing (RFC 3261 §16): a request goes on with a new
//! top Via and Max-Forwards decremented, the Route entry that brought it
//! here taken off, and a Record-Route when the proxy wants the dialog; a
//! response goes back with the proxy's Via removed.

use super::headers::{HeaderError, split_list, uri_host};
use super::message::Message;

/// `msg` forwarded as a request (RFC 3261 §16.6 steps 3 and 8): a new top
/// `Via` with the transport the request arrived with, `sent_by` and the
/// branch `z9hG4bK<token>`; Max-Forwards decremented, or 69 when absent.
/// The caller has turned away a request whose Max-Forwards is 0.
pub fn forward_request(msg: &Message, sent_by: &str, token: &str) -> Result<Message, HeaderError> {
    let mut out = msg.clone();
    msg.vias()?;
    let transport = msg
        .header_list("Via")
        .first()
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("SIP/2.0/UDP")
        .to_owned();
    out.prepend_header(
        "Via",
        &format!("{transport} {sent_by};branch=z9hG4bK{token}"),
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
/// Route entry goes when its host is one of `hosts` (this proxy's).
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
        .and_then(|e| uri_host(e))
        .is_some_and(|h| hosts.iter().any(|m| m.eq_ignore_ascii_case(&h)));
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

    #[test]
    fn a_request_goes_on_and_its_response_comes_back() {
        let msg = Message::parse(INVITE).unwrap();
        let mut out = forward_request(&msg, "proxy-a.a.example.com:5060", "t1").unwrap();
        assert_eq!(
            out.header_list("Via")[0],
            "SIP/2.0/TCP proxy-a.a.example.com:5060;branch=z9hG4bKt1"
        );
        assert_eq!(out.header("Max-Forwards"), Some("69"));
        pop_route(&mut out, &[sent_by_host("proxy-a.a.example.com:5060")]);
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
    fn ipv6_sent_by_hosts_keep_their_brackets() {
        assert_eq!(sent_by_host("[2001:db8::1]:5060"), "[2001:db8::1]");
        assert_eq!(sent_by_host("p.example.com:5060"), "p.example.com");
    }
}
