//! KEMRecipientInfo (RFC 9629) with ML-KEM (RFC 9936): the content key
//! wrapped under a key-encryption key derived from a KEM shared secret.
//!
//! ```text
//! -- in RecipientInfo's ori [4] alternative:
//! OtherRecipientInfo ::= SEQUENCE {
//!   oriType OBJECT IDENTIFIER,      -- id-ori-kem 1.2.840.113549.1.9.16.13.3
//!   oriValue ANY DEFINED BY oriType }
//!
//! KEMRecipientInfo ::= SEQUENCE {
//!   version CMSVersion,  -- always set to 0
//!   rid RecipientIdentifier,
//!   kem KEMAlgorithmIdentifier,
//!   kemct OCTET STRING,
//!   kdf KeyDerivationAlgorithmIdentifier,
//!   kekLength INTEGER (1..65535),
//!   ukm [0] EXPLICIT UserKeyingMaterial OPTIONAL,
//!   wrap KeyEncryptionAlgorithmIdentifier,
//!   encryptedKey EncryptedKey }
//!
//! CMSORIforKEMOtherInfo ::= SEQUENCE {   -- the KDF's info
//!   wrap KeyEncryptionAlgorithmIdentifier,
//!   kekLength INTEGER (1..65535),
//!   ukm [0] EXPLICIT UserKeyingMaterial OPTIONAL }
//! ```
//!
//! Written: ML-KEM-768 (or the certificate's parameter set), HKDF-SHA256
//! with an empty salt, AES-256 key wrap (AES-128 with ML-KEM-512), a SKI
//! rid, no ukm. Read: ML-KEM-512/768/1024, HKDF with SHA-256/384/512,
//! AES-128/192/256 wrap whose key size is kekLength. As with the other
//! RecipientInfos, the rid is matched before the private key is touched,
//! and every failure after it yields a random content key.

use cms::content_info::CmsVersion;
use cms::enveloped_data::{OtherRecipientInfo, RecipientIdentifier, RecipientInfo};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5911;
use der::asn1::OctetString;
use der::{Any, Decode, Encode, Sequence};
use rand::CryptoRng;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

use super::EnvelopeError;
use crate::keys::Cert;
use crate::keys::mlkem::{self, MlKemLevel};

/// id-ori-kem (RFC 9629 §3).
pub const ID_ORI_KEM: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.13.3");
/// id-alg-hkdf-with-sha256 (RFC 8619).
const HKDF_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.3.28");
/// id-alg-hkdf-with-sha384 (RFC 8619).
const HKDF_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.3.29");
/// id-alg-hkdf-with-sha512 (RFC 8619).
const HKDF_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.3.30");

/// The KEMRecipientInfo structure.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct KemRecipientInfo {
    /// Always 0.
    pub version: CmsVersion,
    /// The recipient's certificate.
    pub rid: RecipientIdentifier,
    /// The KEM (ML-KEM parameter set, parameters absent).
    pub kem: AlgorithmIdentifierOwned,
    /// The KEM ciphertext.
    pub kemct: OctetString,
    /// The KDF from shared secret to key-encryption key.
    pub kdf: AlgorithmIdentifierOwned,
    /// Length of the key-encryption key.
    pub kek_length: u16,
    /// Optional user keying material for the KDF.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub ukm: Option<OctetString>,
    /// The key wrap.
    pub wrap: AlgorithmIdentifierOwned,
    /// The wrapped content key.
    pub encrypted_key: OctetString,
}

#[derive(Sequence)]
struct OtherInfo {
    wrap: AlgorithmIdentifierOwned,
    kek_length: u16,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    ukm: Option<OctetString>,
}

/// The KDF's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hkdf {
    Sha256,
    Sha384,
    Sha512,
}

impl Hkdf {
    fn decode(alg: &AlgorithmIdentifierOwned) -> Result<Hkdf, EnvelopeError> {
        let hash = match alg.oid {
            HKDF_SHA256 => Hkdf::Sha256,
            HKDF_SHA384 => Hkdf::Sha384,
            HKDF_SHA512 => Hkdf::Sha512,
            other => {
                return Err(EnvelopeError::Unsupported(format!(
                    "KEMRecipientInfo key derivation {}",
                    super::oid_name(&other)
                )));
            }
        };
        // RFC 8619 §3: parameters absent.
        if alg.parameters.is_some() {
            return Err(EnvelopeError::Malformed(
                "KEMRecipientInfo: HKDF with parameters (they must be absent)".into(),
            ));
        }
        Ok(hash)
    }

    fn name(self) -> &'static str {
        match self {
            Hkdf::Sha256 => "HKDF-SHA256",
            Hkdf::Sha384 => "HKDF-SHA384",
            Hkdf::Sha512 => "HKDF-SHA512",
        }
    }

    /// HKDF with an empty salt (RFC 9936).
    fn derive(self, ikm: &[u8], info: &[u8], len: usize) -> Option<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(vec![0u8; len]);
        let ok = match self {
            Hkdf::Sha256 => hkdf::Hkdf::<sha2::Sha256>::new(None, ikm)
                .expand(info, &mut out)
                .is_ok(),
            Hkdf::Sha384 => hkdf::Hkdf::<sha2::Sha384>::new(None, ikm)
                .expand(info, &mut out)
                .is_ok(),
            Hkdf::Sha512 => hkdf::Hkdf::<sha2::Sha512>::new(None, ikm)
                .expand(info, &mut out)
                .is_ok(),
        };
        ok.then_some(out)
    }
}

/// The key size of an AES key wrap, or `None` for another algorithm.
fn wrap_key_len(alg: &AlgorithmIdentifierOwned) -> Option<usize> {
    match alg.oid {
        rfc5911::ID_AES_128_WRAP => Some(16),
        rfc5911::ID_AES_192_WRAP => Some(24),
        rfc5911::ID_AES_256_WRAP => Some(32),
        _ => None,
    }
}

/// The KEMRecipientInfo an `ori` holds, if it is one.
pub fn parse_ori(ri: &RecipientInfo) -> Option<KemRecipientInfo> {
    match ri {
        RecipientInfo::Ori(o) if o.ori_type == ID_ORI_KEM => o.ori_value.decode_as().ok(),
        _ => None,
    }
}

/// Parse a KEMRecipientInfo alone (fuzzing and tests).
pub fn parse(der: &[u8]) -> Result<KemRecipientInfo, der::Error> {
    KemRecipientInfo::from_der(der)
}

/// What a KEMRecipientInfo uses, checked: the parameter set, the KDF and
/// the key-encryption key length. Public data only.
struct Scheme {
    level: MlKemLevel,
    kdf: Hkdf,
    kek_len: usize,
}

impl Scheme {
    fn decode(k: &KemRecipientInfo) -> Result<Scheme, EnvelopeError> {
        let level = MlKemLevel::from_oid(&k.kem.oid).ok_or_else(|| {
            EnvelopeError::Unsupported(format!("KEM {}", super::oid_name(&k.kem.oid)))
        })?;
        let kdf = Hkdf::decode(&k.kdf)?;
        let kek_len = wrap_key_len(&k.wrap).ok_or_else(|| {
            EnvelopeError::Unsupported(format!(
                "KEMRecipientInfo key wrap {}",
                super::oid_name(&k.wrap.oid)
            ))
        })?;
        // RFC 9936: kekLength must fit the key wrap.
        if usize::from(k.kek_length) != kek_len {
            return Err(EnvelopeError::Malformed(format!(
                "KEMRecipientInfo: kekLength {} for {}, whose key has {kek_len} bytes",
                k.kek_length,
                super::oid_name(&k.wrap.oid)
            )));
        }
        Ok(Scheme {
            level,
            kdf,
            kek_len,
        })
    }
}

/// How `inspect` names what a KEMRecipientInfo uses.
pub fn describe(k: &KemRecipientInfo) -> String {
    let kem = MlKemLevel::from_oid(&k.kem.oid)
        .map_or_else(|| super::oid_name(&k.kem.oid), |l| l.name().to_owned());
    let kdf =
        Hkdf::decode(&k.kdf).map_or_else(|_| super::oid_name(&k.kdf.oid), |h| h.name().into());
    format!(
        "{kem} (ciphertext {} bytes), {kdf}, {} (kekLength {})",
        k.kemct.as_bytes().len(),
        super::oid_name(&k.wrap.oid),
        k.kek_length
    )
}

/// The rid of a certificate: SKI when it has one, else issuer and serial.
fn rid_for(cert: &Cert) -> Result<RecipientIdentifier, EnvelopeError> {
    let enc = |e: der::Error| EnvelopeError::Encode(e.to_string());
    Ok(match cert.ski() {
        Some(ski) => RecipientIdentifier::SubjectKeyIdentifier(SubjectKeyIdentifier(
            OctetString::new(ski).map_err(enc)?,
        )),
        None => {
            let tbs = cert.cert.tbs_certificate();
            RecipientIdentifier::IssuerAndSerialNumber(cms::cert::IssuerAndSerialNumber {
                issuer: tbs.issuer().clone(),
                serial_number: tbs.serial_number().clone(),
            })
        }
    })
}

/// The key-encryption key for a shared secret (RFC 9629 §5).
fn kek(
    scheme: &Scheme,
    wrap: &AlgorithmIdentifierOwned,
    ukm: Option<&OctetString>,
    ss: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let enc = |e: der::Error| EnvelopeError::Encode(e.to_string());
    let info = OtherInfo {
        wrap: wrap.clone(),
        kek_length: scheme.kek_len as u16,
        ukm: ukm.cloned(),
    }
    .to_der()
    .map_err(enc)?;
    scheme
        .kdf
        .derive(ss, &info, scheme.kek_len)
        .ok_or_else(|| EnvelopeError::Encode("HKDF output length".into()))
}

/// A KEMRecipientInfo for an ML-KEM certificate, encapsulating with `rng`.
pub fn kemri_for<R: CryptoRng + ?Sized>(
    cert: &Cert,
    cek: &[u8],
    rng: &mut R,
) -> Result<RecipientInfo, EnvelopeError> {
    let enc = |e: der::Error| EnvelopeError::Encode(e.to_string());
    let recipient = |e: String| EnvelopeError::Recipient(format!("{}: {e}", cert.name()));
    let (level, public) = cert
        .ml_kem_public_key()
        .map_err(|e| EnvelopeError::Recipient(e.to_string()))?;
    let (kemct, ss) = mlkem::encapsulate(level, public, rng).map_err(recipient)?;
    let scheme = Scheme {
        level,
        kdf: Hkdf::Sha256,
        kek_len: level.kek_len(),
    };
    let kek = kek(
        &scheme,
        &AlgorithmIdentifierOwned {
            oid: wrap_oid(scheme.kek_len),
            parameters: None,
        },
        None,
        &ss,
    )?;
    let (wrap, wrapped) = super::kekri::kek_wrap(&kek, cek)?;
    let info = KemRecipientInfo {
        version: CmsVersion::V0,
        rid: rid_for(cert)?,
        kem: AlgorithmIdentifierOwned {
            oid: scheme.level.oid(),
            parameters: None,
        },
        kemct: OctetString::new(kemct).map_err(enc)?,
        kdf: AlgorithmIdentifierOwned {
            oid: HKDF_SHA256,
            parameters: None,
        },
        kek_length: scheme.kek_len as u16,
        ukm: None,
        wrap,
        encrypted_key: OctetString::new(wrapped).map_err(enc)?,
    };
    Ok(RecipientInfo::Ori(OtherRecipientInfo {
        ori_type: ID_ORI_KEM,
        ori_value: Any::encode_from(&info).map_err(enc)?,
    }))
}

fn wrap_oid(kek_len: usize) -> ObjectIdentifier {
    match kek_len {
        16 => rfc5911::ID_AES_128_WRAP,
        24 => rfc5911::ID_AES_192_WRAP,
        _ => rfc5911::ID_AES_256_WRAP,
    }
}

/// Whether `ri` is a KEMRecipientInfo whose rid names `cert`.
pub fn addressed_to(ri: &RecipientInfo, cert: &Cert) -> bool {
    parse_ori(ri).is_some_and(|k| super::rid_matches(&k.rid, cert))
}

/// The checked parameters and the ciphertext of a KEMRecipientInfo, for
/// the one private-key operation; errors depend on public data only.
pub fn ciphertext(ri: &RecipientInfo) -> Result<(KemRecipientInfo, MlKemLevel), EnvelopeError> {
    let k = parse_ori(ri).ok_or_else(|| {
        EnvelopeError::Malformed("an OtherRecipientInfo that is not a KEMRecipientInfo".into())
    })?;
    let scheme = Scheme::decode(&k)?;
    Ok((k, scheme.level))
}

/// Unwrap the content key with the shared secret the key decapsulated:
/// `None` on a failed unwrap (the caller substitutes a random key).
pub fn unwrap_with(
    k: &KemRecipientInfo,
    ss: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, EnvelopeError> {
    let scheme = Scheme::decode(k)?;
    let kek = kek(&scheme, &k.wrap, k.ukm.as_ref(), ss)?;
    super::kekri::kek_unwrap(&k.wrap, &kek, k.encrypted_key.as_bytes())
}
