//! CMS envelopes: AuthEnvelopedData (RFC 5083) and EnvelopedData (RFC 5652
//! §6), sealed for several recipients and opened by one of them.
//!
//! ```text
//! ContentInfo ::= SEQUENCE {
//!   contentType ContentType,
//!   content [0] EXPLICIT ANY DEFINED BY contentType }
//!
//! AuthEnvelopedData ::= SEQUENCE {          -- RFC 5083 §2.1
//!   version CMSVersion,                     -- always 0
//!   originatorInfo [0] IMPLICIT OriginatorInfo OPTIONAL,
//!   recipientInfos RecipientInfos,
//!   authEncryptedContentInfo EncryptedContentInfo,
//!   authAttrs [1] IMPLICIT AuthAttributes OPTIONAL,
//!   mac MessageAuthenticationCode,          -- the GCM tag
//!   unauthAttrs [2] IMPLICIT UnauthAttributes OPTIONAL }
//!
//! EnvelopedData ::= SEQUENCE {              -- RFC 5652 §6.1
//!   version CMSVersion,
//!   originatorInfo [0] IMPLICIT OriginatorInfo OPTIONAL,
//!   recipientInfos RecipientInfos,
//!   encryptedContentInfo EncryptedContentInfo,
//!   unprotectedAttrs [1] IMPLICIT UnprotectedAttributes OPTIONAL }
//! ```
//!
//! sipseal writes no attributes: OpenSSL 3.0 cannot parse AuthEnvelopedData
//! that carries any (docs/SPEC.md §3.1). When reading, authAttrs are fed to GCM as
//! additional authenticated data (RFC 5083 §2.2).

pub mod ber;
pub mod content;
mod fast;
pub mod kari;
pub mod kekri;
pub mod kemri;
pub mod pwri;
pub mod recipient;
pub mod signed;

use cms::authenveloped_data::AuthEnvelopedData;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EncryptedContentInfo, EnvelopedData, RecipientIdentifier, RecipientInfo,
};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5911;
use der::asn1::OctetString;
use der::{Any, Decode, Encode};
use rand::CryptoRng;
use serde::Serialize;
use zeroize::Zeroizing;

pub use content::{ContentCipher, ContentParams};
pub use recipient::{KeyTransportScheme, PrivateKeyOps, RecipientKey, RsaPadding};

use crate::error::ErrorClass;
use crate::keys::identity::CertKeyKind;
use crate::keys::{Cert, KeyError, Password, Psk};

/// What can go wrong sealing or opening.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// No RecipientInfo is addressed to any of the keys given.
    #[error("not a recipient: no RecipientInfo matches the given identities or PSKs")]
    NotRecipient,
    /// Deliberately one variant for every key-transport, key-unwrap,
    /// padding and tag failure, so that nothing tells them apart.
    #[error("decryption failed: the content could not be decrypted and authenticated")]
    Decrypt,
    /// Not well-formed CMS.
    #[error("malformed CMS: {0}")]
    Malformed(String),
    /// Well-formed, but not something sipseal reads.
    #[error("unsupported CMS: {0}")]
    Unsupported(String),
    /// A recipient that cannot be sealed for.
    #[error("{0}")]
    Recipient(String),
    /// My own private key cannot be used (unreadable, or not the certificate's).
    #[error("cannot use the private key: {0}")]
    Key(String),
    /// Encoding failed (a bug, or absurd sizes).
    #[error("cannot encode the envelope: {0}")]
    Encode(String),
}

impl EnvelopeError {
    /// What kind of failure it is.
    pub fn class(&self) -> ErrorClass {
        match self {
            EnvelopeError::NotRecipient => ErrorClass::NotForMe,
            EnvelopeError::Recipient(_) | EnvelopeError::Key(_) => ErrorClass::Config,
            _ => ErrorClass::Failed,
        }
    }
}

/// Someone to seal for.
#[derive(Debug, Clone)]
pub enum Recipient {
    /// A certificate: RSA (KeyTransRecipientInfo) or EC P-256
    /// (KeyAgreeRecipientInfo, shared by all P-256 recipients).
    Cert(Box<Cert>),
    /// A pre-shared key (KEKRecipientInfo).
    Psk(Psk),
    /// A password (PasswordRecipientInfo, RFC 3211).
    Password(Password),
}

impl Recipient {
    /// The SIP URI naming this recipient, if known.
    pub fn uri(&self) -> Option<String> {
        match self {
            Recipient::Cert(c) => c.uri(),
            Recipient::Psk(p) => p.uri.clone(),
            Recipient::Password(p) => p.uri.clone(),
        }
    }

    /// For messages: URI, else subject or PSK id.
    pub fn describe(&self) -> String {
        match self {
            Recipient::Cert(c) => c.name(),
            Recipient::Psk(p) => format!("PSK {}", p.id),
            Recipient::Password(p) => p.describe(),
        }
    }
}

/// How to seal.
#[derive(Debug, Clone, Copy)]
pub struct SealOptions {
    /// Content cipher (GCM → AuthEnvelopedData, CBC → EnvelopedData).
    pub cipher: ContentCipher,
    /// RSA padding for certificate recipients.
    pub padding: RsaPadding,
}

impl Default for SealOptions {
    fn default() -> Self {
        SealOptions {
            cipher: ContentCipher::Aes256Gcm,
            padding: RsaPadding::Oaep,
        }
    }
}

/// A content-encryption key.
pub type Cek = Zeroizing<Vec<u8>>;

/// A fresh random CEK for `cipher`.
pub fn fresh_cek<R: CryptoRng + ?Sized>(cipher: ContentCipher, rng: &mut R) -> Cek {
    let mut cek = Zeroizing::new(vec![0u8; cipher.key_len()]);
    rng.fill_bytes(&mut cek);
    cek
}

/// Seal `content` for `recipients` under a fresh CEK; returns the DER
/// ContentInfo and the CEK (for session keys).
pub fn seal<R: CryptoRng + ?Sized>(
    content: &[u8],
    recipients: &[Recipient],
    opts: &SealOptions,
    rng: &mut R,
) -> Result<(Vec<u8>, Cek), EnvelopeError> {
    let cek = fresh_cek(opts.cipher, rng);
    let der = seal_with_cek(content, &cek, recipients, opts, rng)?;
    Ok((der, cek))
}

/// Seal with a given CEK (`reencrypt --keep-cek`).
pub fn seal_with_cek<R: CryptoRng + ?Sized>(
    content: &[u8],
    cek: &[u8],
    recipients: &[Recipient],
    opts: &SealOptions,
    rng: &mut R,
) -> Result<Vec<u8>, EnvelopeError> {
    if recipients.is_empty() {
        return Err(EnvelopeError::Recipient("no recipients to seal for".into()));
    }
    let padded: Vec<(&Recipient, RsaPadding)> =
        recipients.iter().map(|r| (r, opts.padding)).collect();
    seal_for(content, cek, &padded, opts.cipher, rng)
}

/// Seal with a given CEK for recipients that each bring their RSA padding
/// (a relay sealing again keeps every recipient's).
pub fn seal_for<R: CryptoRng + ?Sized>(
    content: &[u8],
    cek: &[u8],
    recipients: &[(&Recipient, RsaPadding)],
    cipher: ContentCipher,
    rng: &mut R,
) -> Result<Vec<u8>, EnvelopeError> {
    // What kind each certificate is, learnt once (an RSA key is built to
    // learn it, which precomputes its modulus; a script sealing per
    // message pays that per recipient).
    let kinds: Vec<Option<Result<CertKeyKind, KeyError>>> = recipients
        .iter()
        .map(|(r, _)| match r {
            Recipient::Cert(c) => Some(c.recipient_kind()),
            _ => None,
        })
        .collect();
    // EC P-256 recipients share one KeyAgreeRecipientInfo (and one
    // ephemeral key), placed where the first of them is named.
    let ec: Vec<&Cert> = recipients
        .iter()
        .zip(&kinds)
        .filter_map(|((r, _), kind)| match (r, kind) {
            (Recipient::Cert(c), Some(Ok(CertKeyKind::P256))) => Some(&**c),
            _ => None,
        })
        .collect();
    let mut infos = Vec::with_capacity(recipients.len());
    let mut kari_done = false;
    for ((r, padding), kind) in recipients.iter().zip(kinds) {
        match r {
            Recipient::Cert(c) => match kind
                .unwrap_or_else(|| c.recipient_kind())
                .map_err(|e| EnvelopeError::Recipient(e.to_string()))?
            {
                CertKeyKind::Rsa => infos.push(recipient::ktri_for(c, *padding, cek, rng)?),
                CertKeyKind::P256 if !kari_done => {
                    kari_done = true;
                    infos.push(kari::kari_for(&ec, cek, rng)?);
                }
                CertKeyKind::P256 => {}
                CertKeyKind::MlKem(_) => infos.push(kemri::kemri_for(c, cek, rng)?),
            },
            Recipient::Psk(p) => infos.push(kekri::kekri_for(p, cek)?),
            Recipient::Password(p) => infos.push(pwri::pwri_for(p, cek, rng)?),
        }
    }
    seal_infos(content, cek, infos, cipher, rng)
}

/// Seal `content` under `cek` for one KEKRecipientInfo: a session key's
/// reference and KEK (docs/SPEC.md §3.2), or a pre-shared key alone. The
/// bytes [`seal_infos`] writes with [`kekri::kekri_with_id`], written
/// directly under AES-GCM (every in-dialog message is sealed so).
pub fn seal_for_kek<R: CryptoRng + ?Sized>(
    content: &[u8],
    cek: &[u8],
    kek_id: &[u8],
    kek: &[u8],
    cipher: ContentCipher,
    rng: &mut R,
) -> Result<Vec<u8>, EnvelopeError> {
    if !cipher.is_aead() || cek.len() != cipher.key_len() {
        let info = kekri::kekri_with_id(kek_id, kek, cek)?;
        return seal_infos(content, cek, vec![info], cipher, rng);
    }
    let (wrap, wrapped) = kekri::kek_wrap(kek, cek)?;
    let params = ContentParams::fresh(cipher, rng);
    let (ciphertext, tag) = params.encrypt(cek, b"", content)?;
    let cipher_oid = cipher.oid();
    Ok(fast::SessionShape {
        kek_id,
        wrap_oid: wrap.oid.as_bytes(),
        wrapped: &wrapped,
        cipher_oid: cipher_oid.as_bytes(),
        params: &params,
        ciphertext: &ciphertext,
        tag: &tag,
    }
    .to_der())
}

/// Seal with ready-made RecipientInfos (session keys build their own KEKRI).
pub fn seal_infos<R: CryptoRng + ?Sized>(
    content: &[u8],
    cek: &[u8],
    infos: Vec<RecipientInfo>,
    cipher: ContentCipher,
    rng: &mut R,
) -> Result<Vec<u8>, EnvelopeError> {
    let enc = |e: der::Error| EnvelopeError::Encode(e.to_string());
    if cek.len() != cipher.key_len() {
        return Err(EnvelopeError::Encode(format!(
            "a {}-byte content key for {}",
            cek.len(),
            cipher.name()
        )));
    }
    let params = ContentParams::fresh(cipher, rng);
    let (ciphertext, tag) = params.encrypt(cek, b"", content)?;
    let all_v0 = infos
        .iter()
        .all(|ri| matches!(ri, RecipientInfo::Ktri(k) if k.version == CmsVersion::V0));
    let pwri_or_ori = infos
        .iter()
        .any(|ri| matches!(ri, RecipientInfo::Pwri(_) | RecipientInfo::Ori(_)));
    let recip_infos = infos.try_into().map_err(enc)?;
    let eci = EncryptedContentInfo {
        content_type: rfc5911::ID_DATA,
        content_enc_alg: params.algorithm()?,
        encrypted_content: Some(OctetString::new(ciphertext).map_err(enc)?),
    };
    let info = if cipher.is_aead() {
        let aed = AuthEnvelopedData {
            version: CmsVersion::V0,
            originator_info: None,
            recip_infos,
            auth_encrypted_content_info: eci,
            auth_attrs: None,
            mac: OctetString::new(tag).map_err(enc)?,
            unauth_attrs: None,
        };
        ContentInfo {
            content_type: rfc5911::ID_CT_AUTH_ENVELOPED_DATA,
            content: Any::encode_from(&aed).map_err(enc)?,
        }
    } else {
        // RFC 5652 §6.1: version 3 with a pwri or ori, else 0 only when
        // every RecipientInfo is a v0 KTRI, else 2.
        let ed = EnvelopedData {
            version: if pwri_or_ori {
                CmsVersion::V3
            } else if all_v0 {
                CmsVersion::V0
            } else {
                CmsVersion::V2
            },
            originator_info: None,
            recip_infos,
            encrypted_content: eci,
            unprotected_attrs: None,
        };
        ContentInfo {
            content_type: rfc5911::ID_ENVELOPED_DATA,
            content: Any::encode_from(&ed).map_err(enc)?,
        }
    };
    info.to_der().map_err(enc)
}

/// Which envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EnvelopeKind {
    /// RFC 5083 AuthEnvelopedData.
    AuthEnvelopedData,
    /// RFC 5652 EnvelopedData.
    EnvelopedData,
}

impl EnvelopeKind {
    /// The S/MIME `smime-type` parameter value (RFC 8551 §3.2.2).
    pub fn smime_type(self) -> &'static str {
        match self {
            EnvelopeKind::AuthEnvelopedData => "authEnveloped-data",
            EnvelopeKind::EnvelopedData => "enveloped-data",
        }
    }
}

/// A parsed envelope, ready to describe or open.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// AuthEnvelopedData or EnvelopedData.
    pub kind: EnvelopeKind,
    /// The CMSVersion number.
    pub version: u8,
    /// The RecipientInfos, in the order they were encoded.
    pub recipients: Vec<RecipientInfo>,
    /// The encrypted content's type (id-data for a MIME entity).
    pub inner_type: ObjectIdentifier,
    /// Cipher and its parameters.
    pub params: ContentParams,
    /// Whether originatorInfo is present.
    pub originator_info: bool,
    /// Number of authenticated (AuthEnvelopedData) attributes.
    pub auth_attrs: usize,
    /// Number of unauthenticated / unprotected attributes.
    pub unauth_attrs: usize,
    encrypted: Vec<u8>,
    mac: Vec<u8>,
    aad: Vec<u8>,
}

/// What opening gave.
pub struct Opened {
    /// The decrypted content.
    pub content: Zeroizing<Vec<u8>>,
    /// The CEK (for the session store).
    pub cek: Cek,
    /// Index of the key (in the slice given to [`Envelope::open`]) that opened it.
    pub key_index: usize,
    /// Index of the RecipientInfo used.
    pub recipient_index: usize,
    /// Which implementation performed the private-key operation, when
    /// there was one.
    pub backend: Option<crate::keys::Backend>,
}

impl Envelope {
    /// Parse a DER ContentInfo holding AuthEnvelopedData or EnvelopedData.
    pub fn parse(der: &[u8]) -> Result<Envelope, EnvelopeError> {
        match fast::session_envelope(der) {
            Some(env) => Ok(env),
            None => Self::parse_general(der),
        }
    }

    /// [`Envelope::parse`] for any shape: BER read as its DER, then the
    /// `cms` types, without the direct read of the session shape (which
    /// gives what this gives: tests and the `cms` fuzz target compare them).
    pub fn parse_general(der: &[u8]) -> Result<Envelope, EnvelopeError> {
        let bad = |what: &str, e: der::Error| EnvelopeError::Malformed(format!("{what}: {e}"));
        // BER (indefinite lengths, string segments) is read as its DER.
        let der = ber::to_der(der).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        let ci = ContentInfo::from_der(&der).map_err(|e| bad("ContentInfo", e))?;
        let (kind, version, recipients, eci, mac, aad, originator, auth_n, unauth_n) = match ci
            .content_type
        {
            rfc5911::ID_CT_AUTH_ENVELOPED_DATA => {
                let a: AuthEnvelopedData = ci
                    .content
                    .decode_as()
                    .map_err(|e| bad("AuthEnvelopedData", e))?;
                // RFC 5083 §2.2: the AAD is the DER of authAttrs with an
                // EXPLICIT SET OF tag, i.e. the SET OF encoding itself.
                let aad = match &a.auth_attrs {
                    Some(attrs) => attrs.to_der().map_err(|e| bad("authAttrs", e))?,
                    None => Vec::new(),
                };
                (
                    EnvelopeKind::AuthEnvelopedData,
                    a.version,
                    a.recip_infos.0.into_vec(),
                    a.auth_encrypted_content_info,
                    a.mac.as_bytes().to_vec(),
                    aad,
                    a.originator_info.is_some(),
                    a.auth_attrs.map_or(0, |s| s.len()),
                    a.unauth_attrs.map_or(0, |s| s.len()),
                )
            }
            rfc5911::ID_ENVELOPED_DATA => {
                let e: EnvelopedData = ci
                    .content
                    .decode_as()
                    .map_err(|e| bad("EnvelopedData", e))?;
                (
                    EnvelopeKind::EnvelopedData,
                    e.version,
                    e.recip_infos.0.into_vec(),
                    e.encrypted_content,
                    Vec::new(),
                    Vec::new(),
                    e.originator_info.is_some(),
                    0,
                    e.unprotected_attrs.map_or(0, |s| s.len()),
                )
            }
            other => {
                return Err(EnvelopeError::Unsupported(format!(
                    "content type {} is not an envelope (expected authEnvelopedData or envelopedData)",
                    oid_name(&other)
                )));
            }
        };
        let params = ContentParams::decode(&eci.content_enc_alg)?;
        match kind {
            EnvelopeKind::AuthEnvelopedData if !params.cipher.is_aead() => {
                return Err(EnvelopeError::Malformed(format!(
                    "AuthEnvelopedData with {}, which is not an authenticated cipher",
                    params.cipher.name()
                )));
            }
            EnvelopeKind::EnvelopedData if params.cipher.is_aead() => {
                return Err(EnvelopeError::Unsupported(format!(
                    "{} in EnvelopedData (use AuthEnvelopedData, RFC 5084 §1)",
                    params.cipher.name()
                )));
            }
            _ => {}
        }
        if kind == EnvelopeKind::AuthEnvelopedData && mac.len() != usize::from(params.tag_len) {
            return Err(EnvelopeError::Malformed(format!(
                "a {}-byte mac where GCMParameters say {}",
                mac.len(),
                params.tag_len
            )));
        }
        let encrypted = eci
            .encrypted_content
            .ok_or_else(|| {
                EnvelopeError::Unsupported(
                    "detached encrypted content (none in the envelope)".into(),
                )
            })?
            .as_bytes()
            .to_vec();
        if recipients.is_empty() {
            return Err(EnvelopeError::Malformed("no RecipientInfo".into()));
        }
        Ok(Envelope {
            kind,
            version: version as u8,
            recipients,
            inner_type: eci.content_type,
            params,
            originator_info: originator,
            auth_attrs: auth_n,
            unauth_attrs: unauth_n,
            encrypted,
            mac,
            aad,
        })
    }

    /// The first key (in the order given) that a RecipientInfo is
    /// addressed to, and that RecipientInfo. Identifiers only: no key is used.
    pub fn find(&self, keys: &[RecipientKey<'_>]) -> Option<(usize, usize)> {
        keys.iter().enumerate().find_map(|(k, key)| {
            self.recipients
                .iter()
                .position(|ri| key.matches(ri))
                .map(|r| (k, r))
        })
    }

    /// Open with the first matching key. The private key (or PSK) is
    /// used only after a RecipientInfo was found for it; plaintext is
    /// returned only after the GCM tag verified.
    pub fn open<R: CryptoRng + ?Sized>(
        &self,
        keys: &[RecipientKey<'_>],
        rng: &mut R,
    ) -> Result<Opened, EnvelopeError> {
        let (key_index, recipient_index) = self.find(keys).ok_or(EnvelopeError::NotRecipient)?;
        let (Some(key), Some(ri)) = (keys.get(key_index), self.recipients.get(recipient_index))
        else {
            return Err(EnvelopeError::NotRecipient);
        };
        let (cek, recipient_index) = match key {
            RecipientKey::Password(p) => self.password_cek(p, recipient_index, rng)?,
            _ => (
                key.unwrap_cek(ri, self.params.cipher.key_len(), rng)?,
                recipient_index,
            ),
        };
        let content = self.open_with_cek(&cek)?;
        Ok(Opened {
            content,
            cek,
            key_index,
            recipient_index,
            backend: key.backend(ri),
        })
    }

    /// A password has no identifier: try the PasswordRecipientInfos in
    /// turn, at most [`pwri::MAX_TRIES`] of them, and keep the first whose
    /// check value holds; if none does, a random key (the content check
    /// then fails like any other wrong key).
    fn password_cek<R: CryptoRng + ?Sized>(
        &self,
        password: &Password,
        first: usize,
        rng: &mut R,
    ) -> Result<(Zeroizing<Vec<u8>>, usize), EnvelopeError> {
        let mut decoy = Zeroizing::new(vec![0u8; self.params.cipher.key_len()]);
        rng.fill_bytes(&mut decoy);
        let pwris = self
            .recipients
            .iter()
            .enumerate()
            .filter_map(|(i, ri)| match ri {
                RecipientInfo::Pwri(p) => Some((i, p)),
                _ => None,
            })
            .take(pwri::MAX_TRIES);
        for (i, p) in pwris {
            if let Some(cek) = pwri::unwrap(p, password)? {
                return Ok((recipient::fit_cek(Some(cek), decoy), i));
            }
        }
        Ok((decoy, first))
    }

    /// The session reference when this is a session message (docs/SPEC.md §3.2):
    /// exactly one RecipientInfo, a KEKRecipientInfo with a 16-byte kekid.
    pub fn session_reference(&self) -> Option<&[u8]> {
        match self.recipients.as_slice() {
            [RecipientInfo::Kekri(k)] if k.kek_id.kek_identifier.as_bytes().len() == 16 => {
                Some(k.kek_id.kek_identifier.as_bytes())
            }
            _ => None,
        }
    }

    /// Decrypt the content with a known CEK.
    pub fn open_with_cek(&self, cek: &[u8]) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        self.params
            .decrypt(cek, &self.aad, &self.encrypted, &self.mac)
    }

    /// The length of the encrypted content.
    pub fn encrypted_len(&self) -> usize {
        self.encrypted.len()
    }

    /// A description for `inspect`; no key needed.
    pub fn describe(&self) -> EnvelopeInfo {
        EnvelopeInfo {
            content_type: self.kind,
            version: self.version,
            cipher: self.params.cipher.name(),
            iv_length: self.params.iv.len(),
            tag_length: (self.kind == EnvelopeKind::AuthEnvelopedData)
                .then_some(self.params.tag_len),
            encrypted_length: self.encrypted.len(),
            encrypted_content_type: oid_name(&self.inner_type),
            originator_info: self.originator_info,
            auth_attributes: self.auth_attrs,
            unauth_attributes: self.unauth_attrs,
            recipients: self
                .recipients
                .iter()
                .enumerate()
                .map(|(i, ri)| describe_recipient(i, ri))
                .collect(),
        }
    }
}

/// An envelope described for people and programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvelopeInfo {
    /// AuthEnvelopedData or EnvelopedData.
    pub content_type: EnvelopeKind,
    /// The CMSVersion number.
    pub version: u8,
    /// The content cipher (`aes256-gcm`, ...).
    pub cipher: &'static str,
    /// Length of the GCM nonce or CBC IV.
    pub iv_length: usize,
    /// Length of the GCM tag (AuthEnvelopedData only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_length: Option<u8>,
    /// Length of the encrypted content.
    pub encrypted_length: usize,
    /// The type of what is encrypted (id-data for a MIME entity).
    pub encrypted_content_type: String,
    /// Whether originatorInfo is present.
    pub originator_info: bool,
    /// Number of authenticated attributes.
    pub auth_attributes: usize,
    /// Number of unauthenticated or unprotected attributes.
    pub unauth_attributes: usize,
    /// Each RecipientInfo, in order.
    pub recipients: Vec<RecipientSummary>,
}

/// One RecipientInfo, described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientSummary {
    /// Position in the envelope.
    pub index: usize,
    /// ktri, kari, kekri, pwri, kemri or (another) ori.
    pub kind: &'static str,
    /// Its CMSVersion number.
    pub version: u8,
    /// KTRI: `ski:HEX` or `issuer=DN serial=HEX`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// KEKRI: the key identifier (text when printable, else `hex:...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kekid: Option<String>,
    /// Key-encryption algorithm and its parameters.
    pub algorithm: String,
    /// Filled in by callers that know identities: who this is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
}

fn describe_recipient(index: usize, ri: &RecipientInfo) -> RecipientSummary {
    let alg_name = |alg: &x509_cert::spki::AlgorithmIdentifierOwned| oid_name(&alg.oid);
    let mut s = RecipientSummary {
        index,
        kind: "",
        version: 0,
        rid: None,
        kekid: None,
        algorithm: String::new(),
        matches: None,
    };
    match ri {
        RecipientInfo::Ktri(k) => {
            s.kind = "ktri";
            s.version = k.version as u8;
            s.rid = Some(describe_ktri_rid(&k.rid));
            s.algorithm = KeyTransportScheme::decode(&k.key_enc_alg).map_or_else(
                |e| format!("{} ({e})", alg_name(&k.key_enc_alg)),
                |x| x.describe(),
            );
        }
        RecipientInfo::Kekri(k) => {
            s.kind = "kekri";
            s.version = k.version as u8;
            s.kekid = Some(printable_id(k.kek_id.kek_identifier.as_bytes()));
            s.algorithm = alg_name(&k.key_enc_alg);
        }
        RecipientInfo::Kari(k) => {
            s.kind = "kari";
            s.version = k.version as u8;
            let rids: Vec<String> = k
                .recipient_enc_keys
                .iter()
                .map(|r| kari::describe_rid(&r.rid))
                .collect();
            s.rid = Some(rids.join(", "));
            s.algorithm = kari::KeyAgreeScheme::decode(&k.key_enc_alg).map_or_else(
                |e| format!("{} ({e})", alg_name(&k.key_enc_alg)),
                |x| x.describe(),
            );
        }
        RecipientInfo::Pwri(k) => {
            s.kind = "pwri";
            s.version = k.version as u8;
            s.algorithm = pwri::describe(k);
        }
        RecipientInfo::Ori(o) => match kemri::parse_ori(ri) {
            Some(k) => {
                s.kind = "kemri";
                s.version = k.version as u8;
                s.rid = Some(describe_ktri_rid(&k.rid));
                s.algorithm = kemri::describe(&k);
            }
            None => {
                s.kind = "ori";
                s.algorithm = oid_name(&o.ori_type);
            }
        },
    }
    s
}

/// Whether a KTRI's or KEMRecipientInfo's rid names `cert`.
pub(crate) fn rid_matches(rid: &RecipientIdentifier, cert: &Cert) -> bool {
    match rid {
        RecipientIdentifier::SubjectKeyIdentifier(ski) => {
            cert.ski().is_some_and(|mine| mine == ski.0.as_bytes())
        }
        RecipientIdentifier::IssuerAndSerialNumber(ias) => {
            let tbs = cert.cert.tbs_certificate();
            ias.serial_number == *tbs.serial_number() && ias.issuer == *tbs.issuer()
        }
    }
}

/// A RecipientIdentifier as `inspect` shows it.
fn describe_ktri_rid(rid: &RecipientIdentifier) -> String {
    match rid {
        RecipientIdentifier::SubjectKeyIdentifier(ski) => describe_ski(ski),
        RecipientIdentifier::IssuerAndSerialNumber(ias) => describe_issuer_serial(ias),
    }
}

/// A SubjectKeyIdentifier as `inspect` shows it: `ski:HEX`.
pub(crate) fn describe_ski(ski: &x509_cert::ext::pkix::SubjectKeyIdentifier) -> String {
    format!("ski:{}", hex::encode(ski.0.as_bytes()))
}

/// An IssuerAndSerialNumber as `inspect` shows it.
pub(crate) fn describe_issuer_serial(ias: &cms::cert::IssuerAndSerialNumber) -> String {
    format!(
        "issuer={} serial={}",
        ias.issuer,
        hex::encode(ias.serial_number.as_bytes())
    )
}

/// A key identifier as text when it is printable ASCII, else `hex:...`.
pub fn printable_id(id: &[u8]) -> String {
    if !id.is_empty() && id.iter().all(|b| b.is_ascii_graphic()) {
        String::from_utf8_lossy(id).into_owned()
    } else {
        format!("hex:{}", hex::encode(id))
    }
}

pub use crate::oid::name as oid_name;

fn ser_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

#[cfg(test)]
mod tests;
