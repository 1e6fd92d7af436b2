//! Sealing and opening the body of a SIP message (docs/SPEC.md §3.1): the plaintext
//! MIME entity goes into a CMS envelope, the envelope becomes an
//! `application/pkcs7-mime` body, and each designated relay gets a
//! `Proxy-Inspect-Body` header. Opening does the reverse.
//!
//! A sealed message keeps every non-body header line byte-identical; the
//! body headers (Content-Type, Content-Disposition, ...) move into the
//! encrypted entity and come back, at the same place, when it is opened.

use cms::enveloped_data::RecipientInfo;
use rand::CryptoRng;
use zeroize::Zeroizing;

use crate::context::Context;
use crate::envelope::recipient::{KeyTransportScheme, addressed_to_cert, addressed_to_kek};
use crate::envelope::signed::{SignatureError, SignatureScheme};
use crate::envelope::{
    self, Cek, ContentCipher, Envelope, EnvelopeError, EnvelopeKind, Recipient, RsaPadding,
    SealOptions,
};
use crate::error::ErrorClass;
use crate::keys::{Cert, Identity, Psk};
use crate::mime::Entity;
use crate::session::SessionKey;
use crate::signing::{SigningError, sign_entity};
use crate::sip::disclosure::{Access, Designation, PROXY_INSPECT_BODY};
use crate::sip::headers::{parse_content_type, uri_host};
use crate::sip::{HeaderError, Message};

mod open;
mod parts;

pub use open::{
    DetectError, HeaderPairs, OpenedContent, SealedInput, detect, envelope_der, open_input,
    open_parsed, restore, sealed_body, sealed_der,
};
pub use parts::{PartOutcome, SealedPart, designated_part, open_parts, sealed_parts};

/// Problems sealing or opening a message.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the message has no body to seal")]
    /// There is no body.
    NoBody,
    #[error("the message has a body but no Content-Type")]
    /// A body without a Content-Type.
    NoContentType,
    #[error("the body is already sealed ({0})")]
    /// The body is sealed already.
    AlreadySealed(String),
    #[error("the body is not sealed: Content-Type is {0}, not application/pkcs7-mime")]
    /// The body is not sealed.
    NotSealed(String),
    #[error(
        "the body is signed, not sealed: Content-Type is multipart/signed and the part it signs is {0}, not application/pkcs7-mime"
    )]
    /// An outer signature over a body that is not sealed.
    SignedNotSealed(String),
    #[error("{0} has no SIP URI to name it in Proxy-Inspect-Body")]
    /// A relay without a URI to designate it by.
    NoUri(String),
    #[error("{0} is given twice")]
    /// A recipient named twice.
    Duplicate(String),
    #[error(transparent)]
    /// A header that does not parse.
    Header(#[from] HeaderError),
    #[error("the input is neither a SIP message, a MIME entity, nor CMS (DER or PEM): {0}")]
    /// An input of no kind sipseal reads.
    Unrecognised(String),
    #[error("cannot decode the {encoding} body: {reason}")]
    /// A body in a transfer encoding that cannot be undone.
    TransferEncoding {
        /// The encoding.
        encoding: String,
        /// What went wrong.
        reason: String,
    },
    #[error(transparent)]
    /// The envelope cannot be made or opened.
    Envelope(#[from] EnvelopeError),
    #[error("the inner signature: {0}")]
    /// The inner signature cannot be made or does not verify.
    Signature(#[from] SignatureError),
    #[error(transparent)]
    /// The outer signature cannot be read.
    Signing(#[from] SigningError),
    #[error("sealing parts needs a multipart body; Content-Type is {0}")]
    /// Parts to disclose, but the body is not a multipart.
    NotMultipart(String),
    #[error("no part has Content-ID <{cid}> (the parts: {have})")]
    /// A part to disclose that is not there.
    NoSuchPart {
        /// The Content-ID asked for.
        cid: String,
        /// The Content-IDs there are.
        have: String,
    },
}

impl SealError {
    /// Whether the message simply has no sealed body (none, or in the clear).
    pub fn is_unsealed(&self) -> bool {
        matches!(
            self,
            SealError::NoBody
                | SealError::NotSealed(_)
                | SealError::SignedNotSealed(_)
                | SealError::NoContentType
        )
    }

    /// Whether this means "nothing here for me" (exit 3).
    pub fn is_not_recipient(&self) -> bool {
        matches!(self, SealError::Envelope(EnvelopeError::NotRecipient))
    }

    /// What kind of failure it is: a message or recipients that cannot be
    /// sealed, or a key that cannot be used, is configuration; a body that
    /// does not open or verify failed.
    pub fn class(&self) -> ErrorClass {
        match self {
            SealError::Envelope(e) => e.class(),
            SealError::Signature(e) => e.class(),
            SealError::NoUri(_)
            | SealError::Duplicate(_)
            | SealError::NoBody
            | SealError::NoContentType
            | SealError::AlreadySealed(_)
            | SealError::NotMultipart(_)
            | SealError::NoSuchPart { .. } => ErrorClass::Config,
            _ => ErrorClass::Failed,
        }
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
    /// Whether each designated relay may hand the call's media keys to a
    /// recorder (`purpose=record`).
    pub record: bool,
    /// Cipher and padding.
    pub options: SealOptions,
    /// Sign the plaintext inside the envelope (sign-then-encrypt) with this identity.
    pub signer: Option<std::sync::Arc<Identity>>,
    /// The inner signature's RSA scheme.
    pub scheme: SignatureScheme,
    /// Seal each part of a multipart body on its own: these parts (by
    /// Content-ID) for the peers and the disclosed relays, every other
    /// part for the peers alone. Empty: the body is sealed whole.
    pub disclose_parts: Vec<String>,
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

impl SealedMessage {
    /// `msg` with `der` as its body: its `Proxy-Inspect-Body` entries and
    /// body headers replaced by `lines`, at the same place; every other
    /// header line byte-identical.
    fn wrap(
        msg: &Message,
        lines: &[(String, String)],
        der: Vec<u8>,
        cek: Cek,
        content_id: String,
    ) -> SealedMessage {
        let mut message = msg.clone();
        message.remove_headers(PROXY_INSPECT_BODY);
        message.replace_body(lines, der.clone());
        SealedMessage {
            message,
            der,
            cek,
            content_id,
        }
    }
}

/// What gets sealed: the message's body headers in full form
/// (`Content-Type: ...`), a blank line, the body (RFC 3261 §23.4), signed
/// inside when `spec` says so; and the Content-ID the sealed part will
/// carry: `<subtype>-<token>@<sender's host>` (the From of a request, the
/// To of a response). A body that is sealed already is refused, and so
/// are recipients named twice or relays without a URI.
fn plaintext(
    msg: &Message,
    spec: Option<&SealSpec>,
    ctx: &mut Context,
) -> Result<(Zeroizing<Vec<u8>>, String), SealError> {
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
    let label = match parsed.mime.split_once('/') {
        Some((_, sub)) if sub.len() <= 12 && sub.bytes().all(|b| b.is_ascii_alphanumeric()) => sub,
        _ => "body",
    };
    let mut plain = Zeroizing::new(entity.to_bytes());
    if let Some(spec) = spec {
        if let Some(signer) = &spec.signer {
            plain = Zeroizing::new(sign_entity(&plain, signer, spec.scheme, ctx)?);
        }
        check_distinct(spec.peers.iter().chain(&spec.disclose))?;
        designated(spec)?;
    }
    let host = msg
        .header(msg.sender_header())
        .and_then(uri_host)
        .unwrap_or_else(|| "sipseal.invalid".into());
    let token = ctx.token(4);
    let mut content_id = String::with_capacity(label.len() + token.len() + host.len() + 2);
    for part in [label, "-", &token, "@", &host] {
        content_id.push_str(part);
    }
    Ok((plain, content_id))
}

fn is_pkcs7_mime(mime: &str) -> bool {
    ["application/pkcs7-mime", "application/x-pkcs7-mime"]
        .iter()
        .any(|m| mime.eq_ignore_ascii_case(m))
}

/// Seal the body of `msg` for `spec` (docs/SPEC.md §3.1) under a fresh CEK.
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
    if !spec.disclose_parts.is_empty() && cek.is_none() {
        return parts::seal_parts(msg, spec, ctx);
    }
    let (entity, content_id) = plaintext(msg, Some(spec), ctx)?;
    let mut all: Vec<Recipient> = spec.peers.clone();
    all.extend(spec.disclose.iter().cloned());
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
    let lines = sealed_headers(
        &designated(spec)?,
        spec.access,
        spec.record,
        &content_id,
        kind,
    );
    Ok(SealedMessage::wrap(msg, &lines, der, cek, content_id))
}

/// The relays a `Proxy-Inspect-Body` names: each disclosed relay once (a
/// relay reachable by certificate and PSK is still one relay), then the
/// ones designated without a key.
fn designated(spec: &SealSpec) -> Result<Vec<String>, SealError> {
    let mut designated = Vec::new();
    for r in &spec.disclose {
        let uri = r.uri().ok_or_else(|| SealError::NoUri(r.describe()))?;
        if !designated.contains(&uri) {
            designated.push(uri);
        }
    }
    for uri in &spec.designate {
        if !designated.iter().any(|d| d.eq_ignore_ascii_case(uri)) {
            designated.push(uri.clone());
        }
    }
    Ok(designated)
}

/// Seal the body of `msg` under a session key (docs/SPEC.md §3.2):
/// AuthEnvelopedData (AES-256-GCM) with exactly one KEKRecipientInfo,
/// kekid = the session reference, wrapping a fresh per-message CEK. No
/// public-key operation, and no `Proxy-Inspect-Body`: the relays that
/// stored the session key find it by the reference.
pub fn seal_session(
    msg: &Message,
    key: &SessionKey,
    ctx: &mut Context,
) -> Result<SealedMessage, SealError> {
    seal_session_signed(msg, key, None, ctx)
}

/// [`seal_session`] with the content signed inside first by `signer`
/// (PKCS#1 v1.5): whoever holds the session key can read it but not
/// change it unseen (docs/SPEC.md §3.3, read-only disclosure).
pub fn seal_session_signed(
    msg: &Message,
    key: &SessionKey,
    signer: Option<&Identity>,
    ctx: &mut Context,
) -> Result<SealedMessage, SealError> {
    let (mut entity, content_id) = plaintext(msg, None, ctx)?;
    if let Some(signer) = signer {
        entity = Zeroizing::new(sign_entity(
            &entity,
            signer,
            SignatureScheme::Pkcs1v15,
            ctx,
        )?);
    }
    let cipher = ContentCipher::Aes256Gcm;
    let cek = envelope::fresh_cek(cipher, ctx.rng());
    let der = envelope::seal_for_kek(&entity, &cek, &key.reference, &key.kek, cipher, ctx.rng())?;
    let lines = sealed_headers(
        &[],
        Access::Read,
        false,
        &content_id,
        EnvelopeKind::AuthEnvelopedData,
    );
    Ok(SealedMessage::wrap(msg, &lines, der, cek, content_id))
}

/// The header lines of a sealed body: one `Proxy-Inspect-Body` per
/// designated relay, then the pkcs7-mime body headers. They replace the
/// plaintext body headers at the same place; every other header line
/// stays byte-identical.
fn sealed_headers(
    designated: &[String],
    access: Access,
    record: bool,
    content_id: &str,
    kind: EnvelopeKind,
) -> Vec<(String, String)> {
    let mut lines: Vec<(String, String)> = designated
        .iter()
        .map(|uri| {
            let d = Designation {
                uri: uri.clone(),
                cid: Some(content_id.to_owned()),
                access,
                record,
            };
            (PROXY_INSPECT_BODY.to_owned(), d.to_value())
        })
        .collect();
    lines.extend([
        (
            "Content-Type".to_owned(),
            [
                "application/pkcs7-mime; smime-type=",
                kind.smime_type(),
                "; name=smime.p7m",
            ]
            .concat(),
        ),
        (
            "Content-Disposition".to_owned(),
            "attachment; filename=smime.p7m; handling=required".to_owned(),
        ),
        ("Content-ID".to_owned(), ["<", content_id, ">"].concat()),
        ("Content-Transfer-Encoding".to_owned(), "binary".to_owned()),
    ]);
    lines
}

/// Seal `content` again for every recipient of `env` (a relay's edit),
/// under a fresh CEK and the same content cipher. The recipients are
/// found among `certs` and `psks` by their identifiers; each certificate
/// keeps the padding it had. Returns the DER and the recipients' names.
pub fn reseal<R: CryptoRng + ?Sized>(
    env: &Envelope,
    content: &[u8],
    certs: &[&Cert],
    psks: &[Psk],
    rng: &mut R,
) -> Result<(Vec<u8>, Vec<String>), EnvelopeError> {
    let mut recipients = Vec::new();
    for (i, ri) in env.recipients.iter().enumerate() {
        let missing =
            || EnvelopeError::Recipient(format!("no certificate or PSK for RecipientInfo #{i}"));
        recipients.push(match ri {
            RecipientInfo::Ktri(k) => {
                let cert = certs
                    .iter()
                    .find(|c| addressed_to_cert(ri, c))
                    .ok_or_else(missing)?;
                let padding = match KeyTransportScheme::decode(&k.key_enc_alg)? {
                    KeyTransportScheme::Pkcs1v15 => RsaPadding::Pkcs1v15,
                    KeyTransportScheme::Oaep { .. } => RsaPadding::Oaep,
                };
                (Recipient::Cert(Box::new((*cert).clone())), padding)
            }
            RecipientInfo::Kekri(_) => {
                let psk = psks
                    .iter()
                    .find(|p| addressed_to_kek(ri, &p.id_bytes()))
                    .ok_or_else(missing)?;
                (Recipient::Psk(psk.clone()), RsaPadding::Oaep)
            }
            // Every P-256 recipient of a KeyAgreeRecipientInfo (sealed
            // again, they share one again).
            RecipientInfo::Kari(k) => {
                for rek in &k.recipient_enc_keys {
                    let cert = certs
                        .iter()
                        .find(|c| envelope::kari::rid_names(&rek.rid, c))
                        .ok_or_else(missing)?;
                    recipients.push((Recipient::Cert(Box::new((*cert).clone())), RsaPadding::Oaep));
                }
                continue;
            }
            _ => return Err(missing()),
        });
    }
    let cipher = env.params.cipher;
    let cek = envelope::fresh_cek(cipher, rng);
    let padded: Vec<(&Recipient, RsaPadding)> = recipients.iter().map(|(r, p)| (r, *p)).collect();
    let der = envelope::seal_for(content, &cek, &padded, cipher, rng)?;
    Ok((der, recipients.iter().map(|(r, _)| r.describe()).collect()))
}

fn check_distinct<'a>(all: impl Iterator<Item = &'a Recipient>) -> Result<(), SealError> {
    let all: Vec<&Recipient> = all.collect();
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
