//! MIME bodies: a SIP body as a tree of parts with their headers.
//!
//! A single-part body takes its MIME headers from the SIP message
//! (Content-Type, Content-ID, ...); multipart bodies are split with
//! mailparse. An [`Entity`] is a body with its headers on its own: what
//! gets sealed, signed, or comes out of an envelope.

use crate::sip::Message;
use crate::sip::headers::{ContentType, HeaderError, parse_content_type};

/// The header section of `content` when every line is a plain
/// `Name: value` (printable ASCII, no folding, no encoded word, no white
/// space but single spaces inside the value) ending in an empty line: the
/// (name, value) pairs exactly as mailparse gives them, and the offset of
/// the body. `None` for anything else, which mailparse then reads. An
/// opened SIP body is almost always this (`Content-Type: application/sdp`),
/// and mailparse's general reading was a tenth of a warm open.
fn simple_headers(content: &[u8]) -> Option<(Vec<(String, String)>, usize)> {
    let mut headers = Vec::with_capacity(2);
    let mut pos = 0;
    loop {
        let rest = content.get(pos..)?;
        let nl = memchr::memchr(b'\n', rest)?;
        let line = match rest[..nl].strip_suffix(b"\r") {
            Some(line) => line,
            None => &rest[..nl],
        };
        pos += nl + 1;
        if line.is_empty() {
            return Some((headers, pos));
        }
        let colon = memchr::memchr(b':', line)?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = &value[value.iter().take_while(|&&b| b == b' ').count()..];
        let printable = |b: &u8| (0x21..=0x7e).contains(b);
        let plain_value = value.iter().all(|b| printable(b) || *b == b' ')
            && !value.ends_with(b" ")
            && memchr::memmem::find(value, b"  ").is_none()
            && memchr::memmem::find(value, b"=?").is_none();
        if name.is_empty() || !name.iter().all(printable) || !plain_value {
            return None;
        }
        // Printable ASCII: UTF-8 as it is.
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
        headers.push((text(name)?, text(value)?));
    }
}

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
    // A nested multipart is split from its exact bytes, one level at a
    // time: the depth limit holds before anything deeper is read, and the
    // work is linear (mailparse's own parse recurses through every level,
    // and again for each level, with a quadratic boundary search).
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
    let (_, ix_body) =
        mailparse::parse_headers(&wrapped).map_err(|e| MimeError::Multipart(e.to_string()))?;
    let boundary = ct.unwrap_or_default();
    let subparts = split_multipart(&wrapped, ix_body, boundary);
    if !subparts.is_empty() && depth + 1 > MAX_DEPTH {
        return Err(MimeError::TooDeep);
    }
    let parts = subparts
        .into_iter()
        .map(|sub| sub_part(sub, depth + 1))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Part {
        headers,
        content_type,
        body: Vec::new(),
        parts,
        raw,
    })
}

/// One sub-part from its exact bytes: a multipart is split further, a
/// leaf's transfer encoding is undone (mailparse, which does not recurse
/// into a part it sees as a leaf).
fn sub_part(sub: &[u8], depth: usize) -> Result<Part, MimeError> {
    let bad = |e: mailparse::MailParseError| MimeError::Multipart(e.to_string());
    let (hs, ix_body) = mailparse::parse_headers(sub).map_err(bad)?;
    let headers: Vec<(String, String)> = hs.iter().map(|h| (h.get_key(), h.get_value())).collect();
    let nested = hs
        .iter()
        .filter(|h| h.get_key().eq_ignore_ascii_case("Content-Type"))
        .any(|h| {
            mailparse::parse_content_type(&h.get_value())
                .mimetype
                .starts_with("multipart/")
        });
    let body = match nested {
        true => sub.get(ix_body..).unwrap_or_default().to_vec(),
        false => mailparse::parse_mail(sub)
            .map_err(bad)?
            .get_body_raw()
            .map_err(bad)?,
    };
    part_from(headers, &body, sub.to_vec(), depth)
}

/// The parts of the multipart whose headers end at `ix_body` in `data`,
/// as RFC 2046 §5.1.1 delimits them (and mailparse does): from after each
/// `--boundary` line to the line break before the next; the preamble and
/// epilogue go. Linear in `data`.
fn split_multipart<'a>(data: &'a [u8], ix_body: usize, boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let finder = memchr::memmem::Finder::new(delim);
    // A delimiter at the start of a line, at or after `from`.
    let line_start = |from: usize| -> Option<usize> {
        let mut at = from;
        loop {
            let ix = at + finder.find(data.get(at..)?)?;
            if ix == from || data.get(ix.wrapping_sub(1)) == Some(&b'\n') {
                return Some(ix);
            }
            at = ix + 1;
        }
    };
    let strip_crlf = |start: usize, mut end: usize| {
        if end > start && data.get(end - 1) == Some(&b'\n') {
            end -= 1;
            if end > start && data.get(end - 1) == Some(&b'\r') {
                end -= 1;
            }
        }
        end
    };
    let mut parts = Vec::new();
    if data.len() <= ix_body {
        return parts;
    }
    let Some(first) = line_start(ix_body) else {
        return parts;
    };
    let mut after = first + delim.len();
    while let Some(start) =
        memchr::memchr(b'\n', data.get(after..).unwrap_or_default()).map(|i| after + i + 1)
    {
        let next = line_start(start);
        let end = next.map_or(data.len(), |x| strip_crlf(start, x));
        if let Some(p) = data.get(start..end) {
            parts.push(p);
        }
        after = next.map_or(data.len(), |x| x + delim.len());
        if after + 2 > data.len() || data.get(after..after + 2) == Some(b"--") {
            break;
        }
    }
    parts
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
    /// The body of `msg` as an entity: its body headers in message order,
    /// under their full names (`c:` becomes `Content-Type:`), so that they
    /// come back in that order when the entity is opened. `None` when the
    /// message has no body or no Content-Type.
    pub fn of_message(msg: &Message) -> Option<Entity> {
        if msg.body().is_empty() {
            return None;
        }
        msg.header("Content-Type")?;
        Some(Entity {
            headers: msg.body_headers(),
            body: msg.body().to_vec(),
        })
    }

    /// Split `content` when it is a MIME entity: header lines that are all
    /// `Content-*` or `MIME-Version` (including Content-Type), a blank
    /// line, a body. Anything else (e.g. `openssl cms -encrypt` of a raw
    /// file) gives `None`.
    pub fn parse(content: &[u8]) -> Option<Entity> {
        let (headers, offset) = match simple_headers(content) {
            Some(simple) => simple,
            None => {
                let (headers, offset) = mailparse::parse_headers(content).ok()?;
                let headers = headers
                    .iter()
                    .map(|h| (h.get_key(), h.get_value()))
                    .collect();
                (headers, offset)
            }
        };
        let head = content.get(..offset)?;
        if !(head.ends_with(b"\n\n") || head.ends_with(b"\r\n\r\n")) {
            return None;
        }
        let mimeish = |n: &str| {
            n.get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case("content-"))
                || n.eq_ignore_ascii_case("mime-version")
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
        // Sized exactly: the bytes are often plaintext to be sealed, and a
        // Vec that grew would leave a copy behind in the freed buffer.
        let head: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        let mut out = Vec::with_capacity(head + 2 + self.body.len());
        for (name, value) in &self.headers {
            for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                out.extend_from_slice(part);
            }
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

    /// The plain reading gives what mailparse gives, whenever it reads
    /// at all: on the usual bodies, and on random ones made of the bytes
    /// that matter (folding, encoded words, lone CRs, white space).
    #[test]
    fn plain_headers_read_as_mailparse_reads_them() {
        let mailparse = |c: &[u8]| {
            let (hs, at) = mailparse::parse_headers(c).unwrap();
            let hs: Vec<(String, String)> =
                hs.iter().map(|h| (h.get_key(), h.get_value())).collect();
            (hs, at)
        };
        let usual: &[&[u8]] = &[
            b"Content-Type: application/sdp\r\n\r\nv=0\r\n",
            b"Content-Type: application/sdp\r\nContent-Disposition: session;handling=required\r\n\r\nv=0",
            b"content-type:text/plain\n\nhi",
            b"Content-Type:   text/plain; charset=utf-8\r\nMIME-Version: 1.0\r\n\r\n",
        ];
        for c in usual {
            let plain = simple_headers(c).expect("read plainly");
            assert_eq!(plain, mailparse(c), "{:?}", String::from_utf8_lossy(c));
        }
        for c in [
            &b"Content-Type: text/plain;\r\n charset=utf-8\r\n\r\n"[..],
            b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n",
            b"Content-Type: a\tb\r\n\r\n",
            b"Content-Type: text/plain\r\n",
        ] {
            assert_eq!(simple_headers(c), None, "{:?}", String::from_utf8_lossy(c));
        }
        use rand::{RngExt, SeedableRng};
        let alphabet = b"ab:: \t\r\n\n=?\xc3\xa9";
        let mut rng = rand::rngs::ChaCha20Rng::seed_from_u64(26);
        let mut read = 0;
        for _ in 0..20_000 {
            let len = rng.random_range(0..40);
            let c: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            if let Some(plain) = simple_headers(&c) {
                read += 1;
                assert_eq!(plain, mailparse(&c), "{:?}", String::from_utf8_lossy(&c));
            }
        }
        assert!(read > 100, "only {read} random inputs were read plainly");
    }

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
    fn a_message_body_as_an_entity_keeps_the_order_under_full_names() {
        let m = Message::parse(
            b"MESSAGE sip:b@h SIP/2.0\r\nContent-ID: <x@h>\r\nc: text/plain\r\nl: 2\r\n\r\nhi",
        )
        .unwrap();
        let e = Entity::of_message(&m).unwrap();
        assert_eq!(
            e.to_bytes(),
            b"Content-ID: <x@h>\r\nContent-Type: text/plain\r\n\r\nhi"
        );
    }

    #[test]
    fn multipart_without_boundary_is_an_error() {
        let m = Message::parse(b"INVITE sip:b@h SIP/2.0\r\nContent-Type: multipart/mixed\r\n\r\nx")
            .unwrap();
        assert_eq!(body_of(&m), Err(MimeError::NoBoundary));
    }
}
