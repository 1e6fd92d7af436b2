//! Sealing and opening the body of a SIP message (SPEC §3.1): the plaintext
//! MIME entity goes into a CMS envelope, the envelope becomes an
//! `application/pkcs7-mime` body, and each designated relay gets a
//! `Proxy-Inspect-Body` header. Opening does the reverse.
//!
//! A sealed message keeps every non-body header line byte-identical; the
//! body headers (Content-Type, Content-Disposition, ...) move into the
//! encrypted entity and come back, at the same place, when it is opened.

use base64::Engine;
use rand::CryptoRng;
use zeroize::Zeroizing;

use crate::context::Context;
use crate::envelope::recipient::kekri_with_id;
use crate::envelope::signed::{SignatureError, SignatureScheme};
use crate::envelope::{
    self, Cek, ContentCipher, Envelope, EnvelopeError, EnvelopeKind, Recipient, RecipientKey,
    SealOptions,
};
use crate::keys::Identity;
use crate::mime::Entity;
use crate::session::SessionKey;
use crate::signing::{InnerSignature, SigningError, peel, sign_entity, unwrap_inner};
use crate::sip::disclosure::{Access, Designation, PROXY_INSPECT_BODY, remove_designations};
use crate::sip::headers::{parse_content_type, strip_angle, uri_host};
use crate::sip::{HeaderError, Message, ParseError};

/// Problems sealing or opening a message.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the message has no body to seal")]
    NoBody,
    #[error("the message has a body but no Content-Type")]
    NoContentType,
    #[error("the body is already sealed ({0})")]
    AlreadySealed(String),
    #[error("the body is not sealed: Content-Type is {0}, not application/pkcs7-mime")]
    NotSealed(String),
    #[error("{0} has no SIP URI to name it in Proxy-Inspect-Body")]
    NoUri(String),
    #[error("{0} is given twice")]
    Duplicate(String),
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("the input is neither a SIP message, a MIME entity, nor CMS (DER or PEM): {0}")]
    Unrecognised(String),
    #[error("cannot decode the {encoding} body: {reason}")]
    TransferEncoding { encoding: String, reason: String },
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("the inner signature: {0}")]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Signing(#[from] SigningError),
}

impl SealError {
    /// What to do next.
    pub fn hint(&self) -> String {
        match self {
            SealError::NoBody | SealError::NoContentType => {
                "build the message with a body, e.g. `sipseal build invite --sdp offer.sdp`".into()
            }
            SealError::AlreadySealed(_) => {
                "open it first (`sipseal open`), or seal the original message".into()
            }
            SealError::NotSealed(_) => "nothing to open; `sipseal inspect` shows the body".into(),
            SealError::NoUri(_) => {
                "a relay needs a certificate with a SAN URI, or a PSK file with `uri: sip:...`".into()
            }
            SealError::Duplicate(_) => "name each recipient once".into(),
            SealError::Header(e) => e.hint(),
            SealError::Unrecognised(_) => {
                "give a SIP message, a MIME entity (Content-Type: application/pkcs7-mime), or DER/PEM CMS".into()
            }
            SealError::TransferEncoding { .. } => {
                "SIP bodies are binary; check the Content-Transfer-Encoding header".into()
            }
            SealError::Envelope(e) => e.hint(),
            SealError::Signature(e) => e.hint(),
            SealError::Signing(e) => e.hint(),
        }
    }

    /// Whether this means "nothing here for me" (exit 3).
    pub fn is_not_recipient(&self) -> bool {
        matches!(self, SealError::Envelope(EnvelopeError::NotRecipient))
    }
}

/// Who to seal for and how.
#[derive(Debug, Clone, Default)]
pub struct SealSpec {
    /// The far-end peer(s): recipients without a designation.
    pub peers: Vec<Recipient>,
    /// Relays to disclose to: each gets a RecipientInfo and a `Proxy-Inspect-Body`.
    pub disclose: Vec<Recipient>,
    /// Relays named in a `Proxy-Inspect-Body` without a RecipientInfo
    /// (their certificate is not known: they will answer 496).
    pub designate: Vec<String>,
    /// The access each designated relay gets.
    pub access: Access,
    /// Cipher and padding.
    pub options: SealOptions,
    /// Sign the plaintext inside the envelope (sign-then-encrypt) with this identity.
    pub signer: Option<std::sync::Arc<Identity>>,
    /// The inner signature's RSA scheme.
    pub scheme: SignatureScheme,
}

/// The result of sealing a message.
pub struct SealedMessage {
    /// The message with the sealed body.
    pub message: Message,
    /// The DER ContentInfo (the new body).
    pub der: Vec<u8>,
    /// The content-encryption key.
    pub cek: Cek,
    /// The new body's Content-ID (without angle brackets).
    pub content_id: String,
}

/// The MIME entity that gets encrypted: the message's body headers in
/// full form (`Content-Type: ...`), a blank line, the body (RFC 3261 §23.4).
pub fn mime_entity(msg: &Message) -> Result<Vec<u8>, SealError> {
    if msg.body().is_empty() {
        return Err(SealError::NoBody);
    }
    let entity = Entity::of_message(msg).ok_or(SealError::NoContentType)?;
    let ct = entity.content_type().unwrap_or_default();
    let parsed = parse_content_type(ct)?;
    // An inner signature (signed-data) is sealed as it is (reencrypt).
    let signed = parsed
        .param("smime-type")
        .is_some_and(|t| t.eq_ignore_ascii_case("signed-data"));
    if is_pkcs7_mime(&parsed.mime) && !signed {
        return Err(SealError::AlreadySealed(ct.to_owned()));
    }
    Ok(entity.to_bytes())
}

fn is_pkcs7_mime(mime: &str) -> bool {
    mime == "application/pkcs7-mime" || mime == "application/x-pkcs7-mime"
}

/// Seal the body of `msg` for `spec` (SPEC §3.1) under a fresh CEK.
pub fn seal_message(
    msg: &Message,
    spec: &SealSpec,
    ctx: &mut Context,
) -> Result<SealedMessage, SealError> {
    seal_message_with(msg, spec, None, ctx)
}

/// Seal the body of `msg` for `spec`, under `cek` when given (`reencrypt
/// --keep-cek`: its length must suit `spec.options.cipher`), else a fresh one.
pub fn seal_message_with(
    msg: &Message,
    spec: &SealSpec,
    cek: Option<&Cek>,
    ctx: &mut Context,
) -> Result<SealedMessage, SealError> {
    let mut entity = Zeroizing::new(mime_entity(msg)?);
    if let Some(signer) = &spec.signer {
        entity = Zeroizing::new(sign_entity(&entity, signer, spec.scheme, ctx)?);
    }
    let mut all: Vec<Recipient> = spec.peers.clone();
    all.extend(spec.disclose.iter().cloned());
    check_distinct(&all)?;
    let mut designated = Vec::new();
    for r in &spec.disclose {
        let uri = r.uri().ok_or_else(|| SealError::NoUri(r.describe()))?;
        // A relay reachable by certificate and PSK is still one relay.
        if !designated.contains(&uri) {
            designated.push(uri);
        }
    }
    for uri in &spec.designate {
        if !designated.iter().any(|d| d.eq_ignore_ascii_case(uri)) {
            designated.push(uri.clone());
        }
    }
    let content_id = content_id(msg, ctx)?;
    let (der, cek) = match cek {
        Some(cek) => (
            envelope::seal_with_cek(&entity, cek, &all, &spec.options, ctx.rng())?,
            cek.clone(),
        ),
        None => envelope::seal(&entity, &all, &spec.options, ctx.rng())?,
    };
    let kind = if spec.options.cipher.is_aead() {
        EnvelopeKind::AuthEnvelopedData
    } else {
        EnvelopeKind::EnvelopedData
    };
    let message = wrap(msg, &der, &designated, spec.access, &content_id, kind);
    Ok(SealedMessage {
        message,
        der,
        cek,
        content_id,
    })
}

/// Seal the body of `msg` under a session key (SPEC §3.2):
/// AuthEnvelopedData (AES-256-GCM) with exactly one KEKRecipientInfo,
/// kekid = the session reference, wrapping a fresh per-message CEK. No
/// public-key operation, and no `Proxy-Inspect-Body`: the relays that
/// stored the session key find it by the reference.
pub fn seal_session(
    msg: &Message,
    key: &SessionKey,
    ctx: &mut Context,
) -> Result<SealedMessage, SealError> {
    let entity = Zeroizing::new(mime_entity(msg)?);
    let content_id = content_id(msg, ctx)?;
    let cipher = ContentCipher::Aes256Gcm;
    let cek = envelope::fresh_cek(cipher, ctx.rng());
    let info = kekri_with_id(&key.reference, &key.kek, &cek)?;
    let der = envelope::seal_infos(&entity, &cek, vec![info], cipher, ctx.rng())?;
    let message = wrap(
        msg,
        &der,
        &[],
        Access::Read,
        &content_id,
        EnvelopeKind::AuthEnvelopedData,
    );
    Ok(SealedMessage {
        message,
        der,
        cek,
        content_id,
    })
}

/// A fresh Content-ID for the sealed part: `sdp-<token>@<sender's host>`
/// (the From of a request, the To of a response).
fn content_id(msg: &Message, ctx: &mut Context) -> Result<String, SealError> {
    let ct = parse_content_type(msg.header("Content-Type").unwrap_or_default())?;
    let label = match ct.mime.split_once('/') {
        Some((_, sub)) if sub.len() <= 12 && sub.bytes().all(|b| b.is_ascii_alphanumeric()) => sub,
        _ => "body",
    };
    let host = msg
        .header(if msg.is_request() { "From" } else { "To" })
        .and_then(uri_host)
        .unwrap_or_else(|| "sipseal.invalid".into());
    Ok(format!("{label}-{}@{host}", ctx.token(4)))
}

/// `msg` with `der` as its body: the plaintext body headers replaced by
/// the pkcs7-mime ones (at the same place) and one `Proxy-Inspect-Body`
/// per designated relay; every other header line byte-identical.
fn wrap(
    msg: &Message,
    der: &[u8],
    designated: &[String],
    access: Access,
    content_id: &str,
    kind: EnvelopeKind,
) -> Message {
    let mut out = msg.clone();
    out.remove_headers(PROXY_INSPECT_BODY);
    let mut lines: Vec<(String, String)> = designated
        .iter()
        .map(|uri| {
            let d = Designation {
                uri: uri.clone(),
                cid: Some(content_id.to_owned()),
                access,
            };
            (PROXY_INSPECT_BODY.to_owned(), d.to_value())
        })
        .collect();
    lines.extend([
        (
            "Content-Type".to_owned(),
            format!(
                "application/pkcs7-mime; smime-type={}; name=smime.p7m",
                kind.smime_type()
            ),
        ),
        (
            "Content-Disposition".to_owned(),
            "attachment; filename=smime.p7m; handling=required".to_owned(),
        ),
        ("Content-ID".to_owned(), format!("<{content_id}>")),
        ("Content-Transfer-Encoding".to_owned(), "binary".to_owned()),
    ]);
    out.replace_body(&lines, der.to_vec());
    out
}

fn check_distinct(all: &[Recipient]) -> Result<(), SealError> {
    for (i, a) in all.iter().enumerate() {
        for b in &all[..i] {
            let same = match (a, b) {
                (Recipient::Cert(x), Recipient::Cert(y)) => x.cert == y.cert,
                (Recipient::Psk(x), Recipient::Psk(y)) => x.id == y.id,
                _ => false,
            };
            if same {
                return Err(SealError::Duplicate(a.describe()));
            }
        }
    }
    Ok(())
}

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
    let der_like = match bytes {
        [0x30, len, ..] if len & 0x80 == 0 => usize::from(*len) + 2 == bytes.len(),
        [0x30, len, ..] => (0x81..=0x84).contains(len),
        _ => false,
    };
    if der_like {
        return Ok(SealedInput::Cms(bytes.to_vec()));
    }
    if bytes.starts_with(&[0x30, 0x80]) {
        return Err(DetectError::Other(SealError::Unrecognised(
            "indefinite-length BER (openssl -stream output); sipseal reads DER: re-encode it with `openssl cms -cmsout -inform DER -in FILE -outform DER`".into(),
        )));
    }
    if trimmed.starts_with(b"-----BEGIN ") {
        let (label, der) = der::pem::decode_vec(trimmed)
            .map_err(|e| DetectError::Other(SealError::Unrecognised(format!("bad PEM: {e}"))))?;
        return match label {
            "CMS" | "PKCS7" => Ok(SealedInput::Cms(der)),
            other => Err(DetectError::Other(SealError::Unrecognised(format!(
                "PEM label {other:?} (expected CMS or PKCS7)"
            )))),
        };
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

/// The DER of a SIP message's sealed body (transfer encoding undone).
pub fn sealed_body(msg: &Message) -> Result<Vec<u8>, SealError> {
    // Under an outer signature, the sealed part is inside.
    if let Some(inner) = peel(msg)? {
        return sealed_body(&inner);
    }
    if msg.body().is_empty() {
        return Err(SealError::NoBody);
    }
    let ct = msg.header("Content-Type").ok_or(SealError::NoContentType)?;
    let parsed = parse_content_type(ct)?;
    if !is_pkcs7_mime(&parsed.mime) {
        return Err(SealError::NotSealed(parsed.mime));
    }
    match msg
        .header("Content-Transfer-Encoding")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("binary" | "8bit" | "7bit") => Ok(msg.body().to_vec()),
        Some("base64") => {
            let compact: Vec<u8> = msg
                .body()
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| SealError::TransferEncoding {
                    encoding: "base64".into(),
                    reason: e.to_string(),
                })
        }
        Some(other) => Err(SealError::TransferEncoding {
            encoding: other.into(),
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
    /// The inner signature, when the content was signed before sealing:
    /// verified (cryptographically; trust is the caller's) and taken off,
    /// so `content`, `entity` and `message` are what was signed.
    pub inner: Option<Result<InnerSignature, SignatureError>>,
}

/// The DER envelope inside any accepted input.
pub fn envelope_der(input: &SealedInput) -> Result<Vec<u8>, SealError> {
    match input {
        SealedInput::Sip(msg) => sealed_body(msg),
        SealedInput::Mime { der, .. } | SealedInput::Cms(der) => Ok(der.clone()),
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
        let ber = detect(&[0x30, 0x80, 0x06, 0x00, 0x00, 0x00]);
        assert!(
            matches!(ber, Err(DetectError::Other(SealError::Unrecognised(m))) if m.contains("-outform DER"))
        );
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
