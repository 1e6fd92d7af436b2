//! Opening: what `open`, `inspect` and `verify` read (a SIP message, a
//! MIME entity, bare CMS), the sealed body inside it, and the message
//! restored with its plaintext body.

use std::borrow::Cow;

use base64::Engine;
use rand::CryptoRng;
use zeroize::Zeroizing;

use super::{SealError, is_pkcs7_mime};
use crate::envelope::signed::SignatureError;
use crate::envelope::{Cek, Envelope, EnvelopeKind, RecipientKey};
use crate::mime::Entity;
use crate::signing::{InnerSignature, peel, unwrap_inner};
use crate::sip::disclosure::remove_designations;
use crate::sip::headers::{content_type_mime, parse_content_type, strip_angle};
use crate::sip::{Message, ParseError};

/// What `open` and `inspect` accept.
pub enum SealedInput {
    /// A SIP message (sealed body, or anything else for `inspect`).
    Sip(Message),
    /// A MIME entity (`openssl cms -encrypt` without `-outform`, or a saved part).
    Mime {
        /// Its header lines.
        headers: Vec<(String, String)>,
        /// The decoded body: DER CMS.
        der: Vec<u8>,
    },
    /// A bare ContentInfo (DER, or PEM decoded).
    Cms(Vec<u8>),
}

/// Tell the input kinds apart: DER (starts with a SEQUENCE), PEM, a MIME
/// entity (a header line first, no `SIP/2.0`), else a SIP message.
pub fn detect(bytes: &[u8]) -> Result<SealedInput, DetectError> {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let trimmed = &bytes[start..];
    // DER: a SEQUENCE whose length octets fit (a text line starting with
    // "0" is not CMS).
    // DER or BER (indefinite length: `openssl cms -stream`): a SEQUENCE
    // whose length octets fit (a text line starting with "0" is not CMS).
    // BER is read as its DER when it is parsed.
    let der_like = match bytes {
        [0x30, len, ..] if len & 0x80 == 0 => usize::from(*len) + 2 == bytes.len(),
        [0x30, len, ..] => (0x80..=0x84).contains(len),
        _ => false,
    };
    if der_like {
        return Ok(SealedInput::Cms(bytes.to_vec()));
    }
    if trimmed.starts_with(b"-----BEGIN ") {
        let bad = |m: String| DetectError::Other(SealError::Unrecognised(m));
        let line = trimmed.split(|&b| b == b'\n').next().unwrap_or_default();
        let label = String::from_utf8_lossy(line)
            .trim()
            .trim_start_matches("-----BEGIN ")
            .trim_end_matches("-----")
            .to_owned();
        if !matches!(label.as_str(), "CMS" | "PKCS7") {
            return Err(bad(format!("PEM label {label:?} (expected CMS or PKCS7)")));
        }
        // Base64 at any line width (RFC 7468 says 64; tools differ).
        let mut blocks = crate::keys::pem::pem_blocks(trimmed, &label)
            .map_err(|e| bad(format!("bad PEM: {e}")))?;
        return Ok(SealedInput::Cms(blocks.swap_remove(0)));
    }
    let first_line = trimmed.split(|&b| b == b'\n').next().unwrap_or_default();
    let looks_sip = first_line.windows(7).any(|w| w == b"SIP/2.0");
    if !looks_sip && looks_like_header(first_line) {
        let (headers, der) = mime_input(trimmed).map_err(DetectError::Other)?;
        return Ok(SealedInput::Mime { headers, der });
    }
    Message::parse(bytes)
        .map(SealedInput::Sip)
        .map_err(DetectError::Sip)
}

/// Why [`detect`] failed.
#[derive(Debug)]
pub enum DetectError {
    /// It looked like SIP but did not parse.
    Sip(ParseError),
    /// Anything else.
    Other(SealError),
}

fn looks_like_header(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(i) if i > 0 => line[..i]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-'),
        _ => false,
    }
}

/// MIME header lines as (name, value).
pub type HeaderPairs = Vec<(String, String)>;

fn mime_input(bytes: &[u8]) -> Result<(HeaderPairs, Vec<u8>), SealError> {
    let parsed =
        mailparse::parse_mail(bytes).map_err(|e| SealError::Unrecognised(e.to_string()))?;
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| (h.get_key(), h.get_value()))
        .collect();
    let ct = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let parsed_ct = parse_content_type(&ct)?;
    if !is_pkcs7_mime(&parsed_ct.mime) {
        return Err(SealError::NotSealed(ct));
    }
    let der = parsed
        .get_body_raw()
        .map_err(|e| SealError::TransferEncoding {
            encoding: "MIME".into(),
            reason: e.to_string(),
        })?;
    Ok((headers, der))
}

/// The DER of a SIP message's sealed body (transfer encoding undone),
/// under an outer signature the part it signed.
/// Borrowed from the message when its body is the DER itself (the usual
/// case: a copy was a tenth of a warm open).
pub fn sealed_body(msg: &Message) -> Result<Cow<'_, [u8]>, SealError> {
    match peel(msg)? {
        // The errors name what the message carries: multipart/signed.
        Some(inner) => match sealed_body(&inner) {
            Ok(der) => Ok(Cow::Owned(der.into_owned())),
            Err(SealError::NotSealed(signed_type)) => Err(SealError::SignedNotSealed(signed_type)),
            Err(e) => Err(e),
        },
        None => sealed_der(msg),
    }
}

/// The DER of the body of `msg` itself, which must be
/// `application/pkcs7-mime` (transfer encoding undone).
pub fn sealed_der(msg: &Message) -> Result<Cow<'_, [u8]>, SealError> {
    if msg.body().is_empty() {
        return Err(SealError::NoBody);
    }
    let ct = msg.header("Content-Type").ok_or(SealError::NoContentType)?;
    let mime = content_type_mime(ct)?;
    if !is_pkcs7_mime(mime) {
        return Err(SealError::NotSealed(mime.to_ascii_lowercase()));
    }
    let encoding = msg.header("Content-Transfer-Encoding").map(str::trim);
    let is = |e: &str| encoding.is_some_and(|v| v.eq_ignore_ascii_case(e));
    match encoding {
        None => Ok(Cow::Borrowed(msg.body())),
        Some(_) if is("binary") || is("8bit") || is("7bit") => Ok(Cow::Borrowed(msg.body())),
        Some(_) if is("base64") => {
            let compact: Vec<u8> = msg
                .body()
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(Cow::Owned)
                .map_err(|e| SealError::TransferEncoding {
                    encoding: "base64".into(),
                    reason: e.to_string(),
                })
        }
        Some(other) => Err(SealError::TransferEncoding {
            encoding: other.to_ascii_lowercase(),
            reason: "not supported".into(),
        }),
    }
}

/// The result of opening.
pub struct OpenedContent {
    /// The plaintext content (the MIME entity, or raw content).
    pub content: Zeroizing<Vec<u8>>,
    /// The content as a MIME entity, when it is one.
    pub entity: Option<Entity>,
    /// The restored SIP message, when the input was one.
    pub message: Option<Message>,
    /// The CEK (for the session store).
    pub cek: Cek,
    /// Which key (index into the keys given) opened it.
    pub key_index: usize,
    /// Which RecipientInfo.
    pub recipient_index: usize,
    /// The envelope kind.
    pub kind: EnvelopeKind,
    /// Its content cipher.
    pub cipher: crate::envelope::ContentCipher,
    /// The inner signature, when the content was signed before sealing:
    /// verified (cryptographically; trust is the caller's) and taken off,
    /// so `content`, `entity` and `message` are what was signed.
    pub inner: Option<Result<InnerSignature, SignatureError>>,
    /// When a multipart body's sealed parts were opened in place: the
    /// Content-ID of this part, the one whose CEK gives the session key
    /// (`message` is the whole restored message).
    pub part: Option<String>,
    /// Which implementation performed the private-key operation, if any.
    pub backend: Option<crate::keys::Backend>,
}

/// The DER envelope inside any accepted input.
pub fn envelope_der(input: &SealedInput) -> Result<Cow<'_, [u8]>, SealError> {
    match input {
        SealedInput::Sip(msg) => sealed_body(msg),
        SealedInput::Mime { der, .. } | SealedInput::Cms(der) => Ok(Cow::Borrowed(der)),
    }
}

/// Open whatever [`detect`] found with the first matching key.
pub fn open_input<R: CryptoRng + ?Sized>(
    input: SealedInput,
    keys: &[RecipientKey<'_>],
    rng: &mut R,
) -> Result<OpenedContent, SealError> {
    let env = Envelope::parse(&envelope_der(&input)?)?;
    open_parsed(input, &env, keys, rng)
}

/// [`open_input`] on an envelope already parsed from `input`; a SIP
/// message moves into the restored one.
pub fn open_parsed<R: CryptoRng + ?Sized>(
    input: SealedInput,
    env: &Envelope,
    keys: &[RecipientKey<'_>],
    rng: &mut R,
) -> Result<OpenedContent, SealError> {
    let opened = env.open(keys, rng)?;
    let mut content = opened.content;
    let mut entity = Entity::parse(&content);
    let inner = entity.as_ref().and_then(unwrap_inner);
    if let Some(Ok(signed)) = &inner {
        content = Zeroizing::new(signed.content.clone());
        entity = Entity::parse(&content);
    }
    let message = match input {
        SealedInput::Sip(msg) => Some(restore(msg, entity.as_ref(), &content)),
        _ => None,
    };
    Ok(OpenedContent {
        inner,
        content,
        entity,
        message,
        cek: opened.cek,
        key_index: opened.key_index,
        recipient_index: opened.recipient_index,
        kind: env.kind,
        cipher: env.params.cipher,
        part: None,
        backend: opened.backend,
    })
}

/// The message with the plaintext body and its MIME headers back in place
/// of the sealed one; `Proxy-Inspect-Body` entries for the opened part go.
pub fn restore(mut out: Message, entity: Option<&Entity>, content: &[u8]) -> Message {
    // An outer signature cannot survive the new body: it goes.
    if let Ok(Some(inner)) = peel(&out) {
        out = inner;
    }
    let cid = out.header("Content-ID").map(|v| strip_angle(v).to_owned());
    // The entries for the opened part go (all of them when it has no Content-ID).
    remove_designations(&mut out, |d| match (&cid, &d.cid) {
        (Some(cid), Some(c)) => c == cid,
        _ => true,
    });
    match entity {
        Some(e) => out.replace_body(&e.headers, e.body.clone()),
        None => out.replace_body(
            &[("Content-Type".into(), "application/octet-stream".into())],
            content.to_vec(),
        ),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_kinds() {
        assert!(matches!(
            detect(&[0x30, 0x82, 0x01, 0x00]),
            Ok(SealedInput::Cms(_))
        ));
        assert!(matches!(
            detect(&[0x30, 0x01, 0x05]),
            Ok(SealedInput::Cms(_))
        ));
        assert!(matches!(detect(b"0 not DER"), Err(DetectError::Sip(_))));
        // BER (indefinite length) is CMS too: read as its DER when parsed.
        let ber = detect(&[0x30, 0x80, 0x06, 0x00, 0x00, 0x00]);
        assert!(matches!(ber, Ok(SealedInput::Cms(_))));
        assert!(matches!(
            detect(b"Content-Type: application/pkcs7-mime\r\n\r\n"),
            Ok(SealedInput::Mime { .. })
        ));
        assert!(matches!(
            detect(b"Content-Type: text/plain\r\n\r\nx"),
            Err(DetectError::Other(_))
        ));
        assert!(matches!(
            detect(b"-----BEGIN CERTIFICATE-----\n"),
            Err(DetectError::Other(_))
        ));
        assert!(matches!(
            detect(b"OPTIONS sip:b@h SIP/2.0\r\nContent-Length: 0\r\n\r\n"),
            Ok(SealedInput::Sip(_))
        ));
    }
}
