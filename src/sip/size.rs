//! Message size against UDP (RFC 3261 §18.1.1): a request larger than
//! 1,300 bytes, when the path MTU is unknown, must go over a
//! congestion-controlled transport such as TCP. A sealed body makes that
//! easy to cross: each RSA-2048 recipient costs about 440 bytes with its
//! Proxy-Inspect-Body, each EC P-256 one after the first about 165.

use super::Message;

/// The size RFC 3261 §18.1.1 allows a request on UDP when the path MTU is
/// unknown.
pub const UDP_LIMIT: usize = 1300;

/// Whether the top Via names UDP (as a message about to be sent on it).
pub fn top_via_is_udp(msg: &Message) -> bool {
    msg.top_via()
        .is_ok_and(|v| v.transport.eq_ignore_ascii_case("UDP"))
}

/// A warning for a message over [`UDP_LIMIT`] whose top Via is UDP, naming
/// the fixes.
pub fn udp_size_warning(msg: &Message) -> Option<String> {
    let size = msg.to_bytes().len();
    (size > UDP_LIMIT && top_via_is_udp(msg)).then(|| {
        format!(
            "the message is {size} bytes, over the {UDP_LIMIT} that RFC 3261 §18.1.1 allows on UDP (its top Via is UDP): send it over TCP, or use EC P-256 recipients (about 165 bytes each after the first, where an RSA-2048 one costs about 440)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(transport: &str, body: usize) -> Message {
        let text = format!(
            "MESSAGE sip:bob@b.example.com SIP/2.0\r\nVia: SIP/2.0/{transport} 192.0.2.1;branch=z9hG4bK1\r\nCall-ID: x\r\nContent-Length: {body}\r\n\r\n{}",
            "x".repeat(body)
        );
        Message::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn only_udp_messages_over_the_limit_are_warned_about() {
        // The body that makes the whole message exactly the limit.
        let at = (1000..UDP_LIMIT)
            .find(|&b| message("UDP", b).to_bytes().len() == UDP_LIMIT)
            .unwrap();
        // Exactly at the limit: fine; one byte more: a warning naming the size.
        assert_eq!(udp_size_warning(&message("UDP", at)), None);
        let over = udp_size_warning(&message("udp", at + 1)).unwrap();
        assert!(over.starts_with("the message is 1301 bytes"), "{over}");
        assert!(over.contains("TCP") && over.contains("EC P-256"), "{over}");
        assert_eq!(udp_size_warning(&message("TCP", 2000)), None);
        assert_eq!(udp_size_warning(&message("TLS", 2000)), None);
    }
}

/// How many times its request's size an answer over UDP may be, to a
/// source nothing has verified (no amplification, H4).
pub const UDP_AMPLIFICATION: usize = 3;

/// What [`fit_for_udp`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Small enough as it was.
    AsIs,
    /// Small enough without its body, or with fewer challenges.
    Trimmed,
    /// Too large even then: not to be sent.
    TooLarge,
}

/// Make `answer` at most [`UDP_AMPLIFICATION`] times `request_size`
/// bytes: first without its body (the client asks again over TCP or TLS
/// for it), then without its last challenges (`WWW-Authenticate`,
/// `Proxy-Authenticate`; the first stays).
pub fn fit_for_udp(answer: &mut Message, request_size: usize) -> Fit {
    let limit = UDP_AMPLIFICATION.saturating_mul(request_size);
    if answer.to_bytes().len() <= limit {
        return Fit::AsIs;
    }
    if !answer.body().is_empty() {
        answer.remove_headers("Content-Type");
        answer.set_body(Vec::new());
    }
    for name in ["Proxy-Authenticate", "WWW-Authenticate"] {
        while answer.to_bytes().len() > limit
            && answer.headers().iter().filter(|h| h.is(name)).count() > 1
        {
            let Some(last) = answer.headers().iter().rposition(|h| h.is(name)) else {
                break;
            };
            answer.remove_header_at(last);
        }
    }
    if answer.to_bytes().len() <= limit {
        Fit::Trimmed
    } else {
        Fit::TooLarge
    }
}
