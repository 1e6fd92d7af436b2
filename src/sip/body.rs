//! The headers that describe a message's body (RFC 3261 §7.4, RFC 2045),
//! and the one way to replace a body together with them.

use super::message::{Header, Message};

/// Headers of a SIP message that describe its body.
pub const BODY_HEADERS: &[&str] = super::names::KNOWN.split_at(super::names::BODY).0;

/// Whether `h` describes the body.
pub fn is_body_header(h: &Header) -> bool {
    // The body headers are the first known names.
    (1..=super::names::BODY).contains(&usize::from(h.known()))
}

impl Message {
    /// Where the body headers sit: the first body header, else just
    /// before Content-Length, else the end.
    pub fn body_headers_at(&self) -> usize {
        let hs = self.headers();
        hs.iter()
            .position(is_body_header)
            .or_else(|| hs.iter().position(|h| h.is("Content-Length")))
            .unwrap_or(hs.len())
    }

    /// Just above the first body header or Content-Length, whichever
    /// comes first (else the end): where a new non-body header goes.
    pub fn before_body_headers(&self) -> usize {
        let hs = self.headers();
        hs.iter()
            .position(|h| is_body_header(h) || h.is("Content-Length"))
            .unwrap_or(hs.len())
    }

    /// The body headers as (full name, value), in message order.
    pub fn body_headers(&self) -> Vec<(String, String)> {
        self.headers()
            .iter()
            .filter(|h| is_body_header(h))
            .map(|h| (h.full_name().to_owned(), h.value().to_owned()))
            .collect()
    }

    /// Replace the body and every header that describes it: `headers` go
    /// where the body headers were (see [`Message::body_headers_at`]), in
    /// order, `MIME-Version` left out (it describes a MIME entity, not a
    /// SIP body); every other header line stays byte-identical. A
    /// Content-Length is kept (its line untouched when the length did not
    /// change) or left out as it was: sealing and opening give back the
    /// message's own framing.
    pub fn replace_body(&mut self, headers: &[(String, String)], body: Vec<u8>) {
        // Nothing describing the body stands above the first body header,
        // so the position survives their removal.
        let at = self.body_headers_at();
        self.retain_headers(|h| !is_body_header(h));
        let kept = headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("MIME-Version"));
        for (i, (name, value)) in kept.enumerate() {
            self.insert_header(at + i, name, value);
        }
        let length = body.len().to_string();
        let same = self.header("Content-Length").is_none_or(|v| v == length);
        if same {
            self.set_body_only(body);
        } else {
            self.set_body(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_body_header` rules out names not starting `Content-` first.
    #[test]
    fn body_headers_are_content_headers_in_any_spelling() {
        for name in BODY_HEADERS {
            assert!(name.starts_with("Content-"), "{name}");
            let m = Message::parse(
                format!(
                    "OPTIONS sip:b@h SIP/2.0\r\n{}: x\r\n\r\n",
                    name.to_lowercase()
                )
                .as_bytes(),
            )
            .unwrap();
            assert!(is_body_header(&m.headers()[0]), "{name}");
        }
        let m = Message::parse(
            b"OPTIONS sip:b@h SIP/2.0\r\nc: x\r\ne: y\r\nl: 0\r\nContent-: z\r\nSubject: s\r\n\r\n",
        )
        .unwrap();
        let body: Vec<bool> = m.headers().iter().map(is_body_header).collect();
        assert_eq!(body, [true, true, false, false, false]);
    }

    #[test]
    fn replacing_the_body_keeps_the_other_lines_in_place() {
        let mut m = Message::parse(
            b"MESSAGE sip:b@h SIP/2.0\r\nc: text/plain\r\nSubject: s\r\nContent-ID: <x@h>\r\nl: 2\r\n\r\nhi",
        )
        .unwrap();
        m.replace_body(
            &[
                ("Content-Type".into(), "application/sdp".into()),
                ("MIME-Version".into(), "1.0".into()),
            ],
            b"v=0\r\n".to_vec(),
        );
        assert_eq!(
            m.to_bytes(),
            b"MESSAGE sip:b@h SIP/2.0\r\nContent-Type: application/sdp\r\nSubject: s\r\nl: 5\r\n\r\nv=0\r\n"
        );
        assert_eq!(
            m.body_headers(),
            [("Content-Type".to_owned(), "application/sdp".to_owned())]
        );
    }

    /// Item 4: Content-Length keeps its bytes when the length is the same,
    /// and does not appear when there was none.
    #[test]
    fn content_length_keeps_its_line_or_its_absence() {
        let mut m = Message::parse(
            b"MESSAGE sip:b@h SIP/2.0\r\nContent-Length   : 2\r\nc: text/plain\r\n\r\nhi",
        )
        .unwrap();
        m.replace_body(
            &[("Content-Type".into(), "text/plain".into())],
            b"ho".to_vec(),
        );
        assert_eq!(
            m.to_bytes(),
            b"MESSAGE sip:b@h SIP/2.0\r\nContent-Length   : 2\r\nContent-Type: text/plain\r\n\r\nho"
        );
        let mut m = Message::parse(b"MESSAGE sip:b@h SIP/2.0\r\nc: text/plain\r\n\r\nhi").unwrap();
        m.replace_body(
            &[("Content-Type".into(), "text/plain".into())],
            b"hello".to_vec(),
        );
        assert_eq!(m.header("Content-Length"), None);
        assert_eq!(m.body(), b"hello");
    }

    #[test]
    fn new_headers_go_above_the_body_section() {
        let m = Message::parse(b"BYE sip:b@h SIP/2.0\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert_eq!(m.before_body_headers(), 1);
        assert_eq!(m.body_headers_at(), 1);
    }
}
