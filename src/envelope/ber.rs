//! BER in, DER out: what `openssl cms -stream`, mail agents and RFC 4134's
//! examples write (indefinite lengths, constructed OCTET STRINGs, long-form
//! lengths) re-encoded as the DER the `cms` types decode (X.690 §10).
//!
//! ```text
//! -- X.690: BER allows, DER forbids
//! length        indefinite (0x80 ... 00 00), or longer than needed
//! string types  constructed (segments), where DER is primitive
//! ```
//!
//! One generic pass reads the tree (depth and size bounded, linear in the
//! input); strings are joined; one CMS rule knows that
//! `EncryptedContentInfo ::= SEQUENCE { contentType, contentEncryptionAlgorithm,
//! encryptedContent [0] IMPLICIT OCTET STRING }` may arrive constructed.
//! Input that is already DER comes out byte for byte.

/// Nesting deeper than this is refused (CMS needs about a dozen levels).
const MAX_DEPTH: usize = 64;

/// Why BER input could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed BER at byte {offset}: {reason}")]
pub struct BerError {
    /// Where.
    pub offset: usize,
    /// What.
    pub reason: &'static str,
}

/// One element: its identifier octets, and its content or children.
struct Node {
    /// The identifier octets (tag), as read.
    tag: Vec<u8>,
    body: Body,
}

enum Body {
    Primitive(Vec<u8>),
    Constructed(Vec<Node>),
}

impl Node {
    fn constructed(&self) -> bool {
        matches!(self.body, Body::Constructed(_))
    }

    /// The universal tag number of a one-octet tag, else `None`.
    fn universal(&self) -> Option<u8> {
        match self.tag.as_slice() {
            [t] if t & 0xc0 == 0 => Some(t & 0x1f),
            _ => None,
        }
    }

    fn context(&self, n: u8) -> bool {
        matches!(self.tag.as_slice(), [t] if t & 0xc0 == 0x80 && t & 0x1f == n)
    }
}

/// Universal string types: DER encodes them primitive (X.690 §10.2).
fn is_string(t: u8) -> bool {
    matches!(t, 3 | 4 | 12 | 18..=22 | 25..=30)
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn err(&self, reason: &'static str) -> BerError {
        BerError {
            offset: self.at,
            reason,
        }
    }

    fn byte(&mut self) -> Result<u8, BerError> {
        let b = *self
            .input
            .get(self.at)
            .ok_or_else(|| self.err("the input ends inside an element"))?;
        self.at += 1;
        Ok(b)
    }

    fn node(&mut self, depth: usize) -> Result<Node, BerError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting deeper than 64 levels"));
        }
        let first = self.byte()?;
        let mut tag = vec![first];
        if first & 0x1f == 0x1f {
            loop {
                let b = self.byte()?;
                tag.push(b);
                if b & 0x80 == 0 {
                    break;
                }
                if tag.len() > 5 {
                    return Err(self.err("a tag number too large"));
                }
            }
        }
        let constructed = first & 0x20 != 0;
        let len = self.byte()?;
        let length = match len {
            0x80 => None,
            l if l & 0x80 == 0 => Some(usize::from(l)),
            l => {
                let n = usize::from(l & 0x7f);
                if n > 4 {
                    return Err(self.err("a length of more than 4 octets"));
                }
                let mut v = 0usize;
                for _ in 0..n {
                    v = (v << 8) | usize::from(self.byte()?);
                }
                Some(v)
            }
        };
        let body = match (constructed, length) {
            (false, Some(n)) => {
                let end = self
                    .at
                    .checked_add(n)
                    .filter(|&e| e <= self.input.len())
                    .ok_or_else(|| self.err("a length beyond the end of the input"))?;
                let content = self.input[self.at..end].to_vec();
                self.at = end;
                Body::Primitive(content)
            }
            (false, None) => return Err(self.err("an indefinite length on a primitive")),
            (true, Some(n)) => {
                let end = self
                    .at
                    .checked_add(n)
                    .filter(|&e| e <= self.input.len())
                    .ok_or_else(|| self.err("a length beyond the end of the input"))?;
                let mut children = Vec::new();
                while self.at < end {
                    children.push(self.node(depth + 1)?);
                }
                if self.at != end {
                    return Err(self.err("an element runs past its parent's length"));
                }
                Body::Constructed(children)
            }
            (true, None) => {
                let mut children = Vec::new();
                loop {
                    if self.input.get(self.at..self.at + 2) == Some(&[0, 0]) {
                        self.at += 2;
                        break;
                    }
                    if self.at >= self.input.len() {
                        return Err(self.err("an indefinite length without its end-of-contents"));
                    }
                    children.push(self.node(depth + 1)?);
                }
                Body::Constructed(children)
            }
        };
        Ok(Node { tag, body })
    }
}

/// The content of a constructed string: its segments joined (X.690 §8.7.3,
/// §8.6.3 for BIT STRING: every segment but the last has 0 unused bits).
fn join(tag: u8, children: &[Node], at: usize) -> Result<Vec<u8>, BerError> {
    let bad = |reason| BerError { offset: at, reason };
    let mut out = Vec::new();
    let bits = tag == 3;
    let mut unused = 0u8;
    for (i, c) in children.iter().enumerate() {
        let part = match &c.body {
            Body::Primitive(p) => p.clone(),
            Body::Constructed(cc) => join(c.universal().unwrap_or(tag), cc, at)?,
        };
        if c.universal() != Some(tag) {
            return Err(bad("a string segment of another type"));
        }
        if bits {
            let (&u, rest) = part
                .split_first()
                .ok_or_else(|| bad("a BIT STRING segment without its unused-bits octet"))?;
            if u != 0 && i + 1 != children.len() {
                return Err(bad(
                    "unused bits in a BIT STRING segment that is not the last",
                ));
            }
            unused = u;
            out.extend_from_slice(rest);
        } else {
            out.extend_from_slice(&part);
        }
    }
    if bits {
        out.insert(0, unused);
    }
    Ok(out)
}

/// Normalise a node: strings primitive, and an `EncryptedContentInfo`'s
/// `[0] IMPLICIT OCTET STRING` primitive.
fn normalise(node: Node, at: usize) -> Result<Node, BerError> {
    let universal = node.universal();
    match node.body {
        Body::Primitive(_) => Ok(node),
        Body::Constructed(children) => {
            if let Some(t) = universal
                && is_string(t)
            {
                let content = join(t, &children, at)?;
                return Ok(Node {
                    tag: vec![t],
                    body: Body::Primitive(content),
                });
            }
            let mut children = children
                .into_iter()
                .map(|c| normalise(c, at))
                .collect::<Result<Vec<_>, _>>()?;
            // SEQUENCE { OBJECT IDENTIFIER, SEQUENCE (an AlgorithmIdentifier),
            // [0] constructed of OCTET STRINGs }: EncryptedContentInfo.
            if universal == Some(16)
                && let [oid, alg, enc] = children.as_mut_slice()
                && oid.universal() == Some(6)
                && alg.universal() == Some(16)
                && enc.context(0)
                && enc.constructed()
                && let Body::Constructed(segments) = &enc.body
                && segments
                    .iter()
                    .all(|s| s.universal() == Some(4) && !s.constructed())
            {
                let content = join(4, segments, at)?;
                *enc = Node {
                    tag: vec![0x80],
                    body: Body::Primitive(content),
                };
            }
            Ok(Node {
                tag: node.tag,
                body: Body::Constructed(children),
            })
        }
    }
}

fn write(node: &Node, out: &mut Vec<u8>) {
    let mut tag = node.tag.clone();
    let content = match &node.body {
        Body::Primitive(p) => {
            if let Some(t) = tag.first_mut() {
                *t &= !0x20;
            }
            p.clone()
        }
        Body::Constructed(children) => {
            let mut c = Vec::new();
            for child in children {
                write(child, &mut c);
            }
            c
        }
    };
    out.extend_from_slice(&tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(&content);
}

/// Where the element at `at` ends when it is plain DER that [`to_der`]
/// would leave as it is: definite, minimal lengths, no constructed string,
/// no `[0]` of OCTET STRING segments. `None` for anything else (BER to
/// convert, or input the conversion will name as malformed). Reads only,
/// allocates nothing: the warm path pays one walk over the tree (issue 26).
fn plain_der_end(input: &[u8], at: usize, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let first = *input.get(at)?;
    let mut i = at + 1;
    if first & 0x1f == 0x1f {
        loop {
            let b = *input.get(i)?;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            if i - at > 5 {
                return None;
            }
        }
    }
    let single_tag = i == at + 1;
    let len_byte = *input.get(i)?;
    i += 1;
    let len = match len_byte {
        l if l & 0x80 == 0 => usize::from(l),
        0x80 => return None,
        l => {
            let n = usize::from(l & 0x7f);
            let bytes = input.get(i..i.checked_add(n)?)?;
            // DER: the fewest octets, and the long form only from 128.
            if n > 4 || bytes.first() == Some(&0) {
                return None;
            }
            i += n;
            let v = bytes.iter().fold(0usize, |v, &b| (v << 8) | usize::from(b));
            if v < 0x80 {
                return None;
            }
            v
        }
    };
    let end = i.checked_add(len).filter(|&e| e <= input.len())?;
    if first & 0x20 != 0 {
        if single_tag && first & 0xc0 == 0 && is_string(first & 0x1f) {
            return None;
        }
        // A `[0]` of OCTET STRING segments, or of none at all (an empty
        // encrypted content, which the conversion makes primitive).
        if first == 0xa0 && (len == 0 || input.get(i) == Some(&0x04)) {
            return None;
        }
        while i < end {
            i = plain_der_end(input, i, depth + 1)?;
        }
        if i != end {
            return None;
        }
    }
    Some(end)
}

/// `input` (one BER element, optionally followed by white space or NULs)
/// as DER. DER input comes out unchanged, and borrowed.
pub fn to_der(input: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, BerError> {
    if let Some(end) = plain_der_end(input, 0, 0)
        && input[end..]
            .iter()
            .all(|b| b.is_ascii_whitespace() || *b == 0)
    {
        return Ok(std::borrow::Cow::Borrowed(&input[..end]));
    }
    let mut r = Reader { input, at: 0 };
    let node = r.node(0)?;
    if input[r.at..]
        .iter()
        .any(|b| !b.is_ascii_whitespace() && *b != 0)
    {
        return Err(r.err("bytes after the end of the CMS object"));
    }
    let node = normalise(node, 0)?;
    let mut out = Vec::with_capacity(input.len());
    write(&node, &mut out);
    Ok(std::borrow::Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_stays_der() {
        let der = [0x30, 0x06, 0x02, 0x01, 0x05, 0x04, 0x01, 0xaa];
        assert_eq!(to_der(&der).unwrap().into_owned(), der);
        // Borrowed, without the trailing line break: no copy (issue 26).
        let mut with_nl = der.to_vec();
        with_nl.extend_from_slice(b"\r\n");
        assert!(matches!(
            to_der(&with_nl).unwrap(),
            std::borrow::Cow::Borrowed(d) if d == der
        ));
    }

    /// The quick check and the conversion agree: what the check passes as
    /// DER, the conversion leaves byte for byte.
    #[test]
    fn the_plain_der_check_agrees_with_the_conversion() {
        let cases: &[&[u8]] = &[
            &[0x30, 0x06, 0x02, 0x01, 0x05, 0x04, 0x01, 0xaa],
            &[0x04, 0x81, 0x01, 0x07],
            &[0x04, 0x82, 0x00, 0x81],
            &[0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00],
            &[0x24, 0x03, 0x04, 0x01, 0x07],
            &[0xa0, 0x03, 0x04, 0x01, 0x07],
            &[0xa0, 0x03, 0x30, 0x01, 0x07],
            &[0x30, 0x03, 0x02, 0x05, 0x00],
            &[0x30, 0x04, 0x02, 0x01, 0x05],
            &[0x1f, 0x81, 0x01, 0x01, 0x00],
            // An EncryptedContentInfo whose [0] is constructed and empty.
            &[0x30, 0x07, 0x06, 0x01, 0x2a, 0x30, 0x00, 0xa0, 0x00],
        ];
        for &input in cases {
            let mut r = Reader { input, at: 0 };
            let slow = r.node(0).and_then(|n| normalise(n, 0)).map(|n| {
                let mut out = Vec::new();
                write(&n, &mut out);
                out
            });
            // `None` sends it on to the conversion, which decides (a `[0]`
            // of OCTET STRINGs outside an EncryptedContentInfo stays).
            if let Some(end) = plain_der_end(input, 0, 0) {
                assert_eq!(slow.as_deref(), Ok(&input[..end]), "{input:02x?}");
            }
        }
        // What DER forbids never passes as DER.
        for ber in [
            &[0x04, 0x81, 0x01, 0x07][..],
            &[0x04, 0x82, 0x00, 0x81],
            &[0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00],
            &[0x24, 0x03, 0x04, 0x01, 0x07],
            &[0x30, 0x03, 0x02, 0x05, 0x00],
            &[0x30, 0x07, 0x06, 0x01, 0x2a, 0x30, 0x00, 0xa0, 0x00],
        ] {
            assert_eq!(plain_der_end(ber, 0, 0), None, "{ber:02x?}");
        }
    }

    #[test]
    fn indefinite_lengths_and_segments_become_der() {
        // SEQUENCE(indef) { OCTET STRING constructed(indef) { "ab", "c" } }
        let ber = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0x00, 0x00, 0x00,
            0x00,
        ];
        assert_eq!(
            to_der(&ber).unwrap().into_owned(),
            [0x30, 0x05, 0x04, 0x03, b'a', b'b', b'c']
        );
        // A long-form length where the short form fits.
        assert_eq!(
            to_der(&[0x04, 0x81, 0x01, 0x07]).unwrap().into_owned(),
            [0x04, 0x01, 0x07]
        );
    }

    #[test]
    fn an_encrypted_content_info_gets_a_primitive_implicit_string() {
        // SEQUENCE { OID 1.2, SEQUENCE { OID 1.2 }, [0](indef) { 04 01 x, 04 01 y } }
        let ber = [
            0x30, 0x80, 0x06, 0x01, 0x2a, 0x30, 0x03, 0x06, 0x01, 0x2a, 0xa0, 0x80, 0x04, 0x01,
            b'x', 0x04, 0x01, b'y', 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(
            to_der(&ber).unwrap().into_owned(),
            [
                0x30, 0x0c, 0x06, 0x01, 0x2a, 0x30, 0x03, 0x06, 0x01, 0x2a, 0x80, 0x02, b'x', b'y'
            ]
        );
    }

    #[test]
    fn malformed_ber_is_named() {
        for bad in [
            &[0x30, 0x80, 0x02, 0x01][..],
            &[0x04, 0x80, 0x00, 0x00],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x03, 0x02, 0x05, 0x00],
            &[0x24, 0x80, 0x02, 0x01, 0x00, 0x00, 0x00],
        ] {
            let e = to_der(bad).unwrap_err();
            assert!(e.to_string().starts_with("malformed BER at byte"), "{e}");
        }
        let deep: Vec<u8> = std::iter::repeat_n([0x30, 0x80], 100).flatten().collect();
        assert!(to_der(&deep).is_err());
    }
}
