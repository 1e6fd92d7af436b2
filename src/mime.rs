//! MIME bodies: a SIP body as a tree of parts with their headers.
//!
//! A single-part body takes its MIME headers from the SIP message
//! (Content-Type, Content-ID, ...); multipart bodies are split with
//! mailparse. An [`Entity`] is a body with its headers on its own: what
//! gets sealed, signed, or comes out of an envelope.

use crate::sip::Message;
use crate::sip::headers::{ContentType, HeaderError, parse_content_type};

/// Nesting deeper than this is refused (no legitimate SIP body comes close).
const MAX_DEPTH: usize = 8;

/// A body that is not well-formed MIME.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MimeError {
    #[error(transparent)]
    /// A Content-Type that does not parse.
    Header(#[from] HeaderError),
    #[error("multipart body without a boundary parameter")]
    /// A multipart without its boundary.
    NoBoundary,
    #[error("malformed multipart body: {0}")]
    /// Parts that mailparse cannot split.
    Multipart(String),
    #[error("multipart nesting deeper than {MAX_DEPTH} levels")]
    /// Parts nested too deep.
    TooDeep,
}

/// One MIME part: its headers, its type, and its content or sub-parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Header lines as (name, value), in order.
    pub headers: Vec<(String, String)>,
    /// Content-Type; `None` when the part has none (RFC 2045 default text/plain).
    pub content_type: Option<ContentType>,
    /// The content (after any transfer encoding is undone); empty for multipart.
    pub body: Vec<u8>,
    /// The parts of a multipart.
    pub parts: Vec<Part>,
    /// A sub-part's exact bytes, headers included, as they stand between
    /// its boundary lines (what a `multipart/signed` signature covers,
    /// RFC 1847 §2.1); empty for the top-level body.
    pub raw: Vec<u8>,
}

impl Part {
    /// A header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this part has type `mime`.
    pub fn is(&self, mime: &str) -> bool {
        self.content_type.as_ref().is_some_and(|c| c.is(mime))
    }
}

/// The body of `msg` as a MIME tree; `None` when the message has no body.
pub fn body_of(msg: &Message) -> Result<Option<Part>, MimeError> {
    if msg.body().is_empty() {
        return Ok(None);
    }
    part_from(msg.body_headers(), msg.body(), Vec::new(), 0).map(Some)
}

fn part_from(
    headers: Vec<(String, String)>,
    body: &[u8],
    raw: Vec<u8>,
    depth: usize,
) -> Result<Part, MimeError> {
    if depth > MAX_DEPTH {
        return Err(MimeError::TooDeep);
    }
    let content_type = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
        .map(|(_, v)| parse_content_type(v))
        .transpose()?;
    let multipart = content_type
        .as_ref()
        .is_some_and(|c| c.mime.starts_with("multipart/"));
    if !multipart {
        return Ok(Part {
            headers,
            content_type,
            body: body.to_vec(),
            parts: Vec::new(),
            raw,
        });
    }
    let ct = content_type.as_ref().and_then(|c| c.param("boundary"));
    if ct.is_none_or(str::is_empty) {
        return Err(MimeError::NoBoundary);
    }
    // A nested multipart is parsed from its exact bytes (mailparse gives
    // only the preamble as a multipart's body).
    let wrapped = if raw.is_empty() {
        let mut w = Vec::with_capacity(body.len() + 128);
        for (n, v) in &headers {
            w.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        w.extend_from_slice(b"\r\n");
        w.extend_from_slice(body);
        w
    } else {
        raw.clone()
    };
    let parsed =
        mailparse::parse_mail(&wrapped).map_err(|e| MimeError::Multipart(e.to_string()))?;
    let parts = parsed
        .subparts
        .iter()
        .map(|sub| {
            let hs = sub
                .headers
                .iter()
                .map(|h| (h.get_key(), h.get_value()))
                .collect();
            let raw = sub
                .get_body_raw()
                .map_err(|e| MimeError::Multipart(e.to_string()))?;
            part_from(hs, &raw, sub.raw_bytes.to_vec(), depth + 1)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Part {
        headers,
        content_type,
        body: Vec::new(),
        parts,
        raw,
    })
}

/// A MIME entity on its own: header lines, a blank line, a body (the
/// plaintext that is sealed or signed, RFC 3261 §23.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// Header lines (name, value) in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Entity {
    /// The body of `msg` as an entity: Content-Type first, then the other
    /// body headers in message order (full names). `None` when the
    /// message has no body or no Content-Type.
    pub fn of_message(msg: &Message) -> Option<Entity> {
        if msg.body().is_empty() {
            return None;
        }
        let ct = msg.header("Content-Type")?;
        let mut headers = vec![("Content-Type".to_owned(), ct.to_owned())];
        headers.extend(
            msg.body_headers()
                .into_iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case("Content-Type")),
        );
        Some(Entity {
            headers,
            body: msg.body().to_vec(),
        })
    }

    /// Split `content` when it is a MIME entity: header lines that are all
    /// `Content-*` or `MIME-Version` (including Content-Type), a blank
    /// line, a body. Anything else (e.g. `openssl cms -encrypt` of a raw
    /// file) gives `None`.
    pub fn parse(content: &[u8]) -> Option<Entity> {
        let (headers, offset) = mailparse::parse_headers(content).ok()?;
        let head = content.get(..offset)?;
        if !(head.ends_with(b"\n\n") || head.ends_with(b"\r\n\r\n")) {
            return None;
        }
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|h| (h.get_key(), h.get_value()))
            .collect();
        let mimeish = |n: &str| {
            let n = n.to_ascii_lowercase();
            n.starts_with("content-") || n == "mime-version"
        };
        if headers.is_empty()
            || !headers.iter().all(|(n, _)| mimeish(n))
            || !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
        {
            return None;
        }
        Some(Entity {
            headers,
            body: content.get(offset..)?.to_vec(),
        })
    }

    /// The entity as bytes: header lines, a blank line, the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 64);
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// The Content-Type value.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
            .map(|(_, v)| v.as_str())
    }

    /// The Content-Type, parsed.
    pub fn parsed_type(&self) -> Option<ContentType> {
        self.content_type().and_then(|v| parse_content_type(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_part_takes_sip_headers() {
        let m = Message::parse(
            b"MESSAGE sip:b@h SIP/2.0\r\nc: text/plain\r\nContent-ID: <x@h>\r\nl: 2\r\n\r\nhi",
        )
        .unwrap();
        let p = body_of(&m).unwrap().unwrap();
        assert!(p.is("text/plain"));
        assert_eq!(p.header("content-id"), Some("<x@h>"));
        assert_eq!(p.body, b"hi");
    }

    #[test]
    fn multipart_splits() {
        let body = "--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\r\n--b1\r\nContent-Type: application/isup\r\n\r\n\x01\x02\r\n--b1--\r\n";
        let m = Message::parse(
            format!(
                "INVITE sip:b@h SIP/2.0\r\nContent-Type: multipart/mixed;boundary=b1\r\n\r\n{body}"
            )
            .as_bytes(),
        )
        .unwrap();
        let p = body_of(&m).unwrap().unwrap();
        assert_eq!(p.parts.len(), 2);
        assert!(p.parts[0].is("application/sdp"));
        assert_eq!(p.parts[0].body, b"v=0\r\n");
        assert_eq!(p.parts[1].body, b"\x01\x02");
        // The exact part bytes, without the CRLF that belongs to the boundary.
        assert_eq!(
            p.parts[0].raw,
            b"Content-Type: application/sdp\r\n\r\nv=0\r\n"
        );
    }

    #[test]
    fn entity_detection() {
        let e = Entity::parse(b"Content-Type: application/sdp\r\n\r\nv=0\r\n").unwrap();
        assert_eq!(e.body, b"v=0\r\n");
        assert_eq!(e.content_type(), Some("application/sdp"));
        assert!(Entity::parse(b"v=0\r\no=- 1 1 IN IP4 x\r\n").is_none());
        assert!(Entity::parse(b"Subject: x\r\n\r\nbody").is_none());
        assert!(Entity::parse(b"Content-Type: text/plain\r\n").is_none());
    }

    #[test]
    fn a_message_body_as_an_entity_puts_its_type_first() {
        let m = Message::parse(
            b"MESSAGE sip:b@h SIP/2.0\r\nContent-ID: <x@h>\r\nc: text/plain\r\nl: 2\r\n\r\nhi",
        )
        .unwrap();
        let e = Entity::of_message(&m).unwrap();
        assert_eq!(
            e.to_bytes(),
            b"Content-Type: text/plain\r\nContent-ID: <x@h>\r\n\r\nhi"
        );
    }

    #[test]
    fn multipart_without_boundary_is_an_error() {
        let m = Message::parse(b"INVITE sip:b@h SIP/2.0\r\nContent-Type: multipart/mixed\r\n\r\nx")
            .unwrap();
        assert_eq!(body_of(&m), Err(MimeError::NoBoundary));
    }
}
