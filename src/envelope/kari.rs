//! Key agreement with EC P-256: KeyAgreeRecipientInfo (RFC 5652 §6.2.2)
//! with ephemeral-static ECDH as RFC 5753 profiles it.
//!
//! ```text
//! KeyAgreeRecipientInfo ::= SEQUENCE {
//!   version CMSVersion,  -- always set to 3
//!   originator [0] EXPLICIT OriginatorIdentifierOrKey,  -- originatorKey: the ephemeral key
//!   ukm [1] EXPLICIT UserKeyingMaterial OPTIONAL,
//!   keyEncryptionAlgorithm KeyEncryptionAlgorithmIdentifier,
//!     -- dhSinglePass-stdDH-sha256kdf-scheme, parameters: the key wrap
//!   recipientEncryptedKeys RecipientEncryptedKeys }
//!
//! ECC-CMS-SharedInfo ::= SEQUENCE {         -- RFC 5753 §7.2, the KDF's SharedInfo
//!   keyInfo         AlgorithmIdentifier,    -- the key wrap, parameters absent
//!   entityUInfo [0] EXPLICIT OCTET STRING OPTIONAL,  -- the ukm
//!   suppPubInfo [2] EXPLICIT OCTET STRING } -- the KEK length in bits, 32-bit big-endian
//! ```
//!
//! KEK = ANSI X9.63 KDF(Z, SharedInfo) with the scheme's hash; the CEK is
//! wrapped with AES key wrap (RFC 3394) under it.
//!
//! Written: one KeyAgreeRecipientInfo for every P-256 recipient, sharing
//! one ephemeral key (RFC 5753 §3.1.1 allows several RecipientEncryptedKeys),
//! its point compressed (RFC 5480 §2.2 allows it, OpenSSL reads it),
//! parameters absent (the recipient's curve), no ukm, SHA-256 KDF, and
//! AES key wrap of the content key's size; each recipient named by its
//! SubjectKeyIdentifier when its certificate has one. Read: the SHA-1,
//! SHA-224, SHA-256, SHA-384 and SHA-512 KDF schemes, standard or cofactor
//! DH (the same on P-256, whose cofactor is 1), with or without ukm.

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::CmsVersion;
use cms::enveloped_data::{
    KeyAgreeRecipientIdentifier, KeyAgreeRecipientInfo, OriginatorIdentifierOrKey,
    OriginatorPublicKey, RecipientEncryptedKey, RecipientInfo, RecipientKeyIdentifier,
};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5911;
use der::asn1::{BitString, OctetString};
use der::{Any, Decode, Encode, Sequence};
use rand::CryptoRng;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

use super::EnvelopeError;
use crate::keys::Cert;

/// The KDF hash of a `dhSinglePass-*` scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfHash {
    /// SHA-1 (read only).
    Sha1,
    /// SHA-224 (read only).
    Sha224,
    /// SHA-256 (written).
    Sha256,
    /// SHA-384 (read only).
    Sha384,
    /// SHA-512 (read only).
    Sha512,
}

impl KdfHash {
    /// The usual name.
    pub fn name(self) -> &'static str {
        match self {
            KdfHash::Sha1 => "sha1",
            KdfHash::Sha224 => "sha224",
            KdfHash::Sha256 => "sha256",
            KdfHash::Sha384 => "sha384",
            KdfHash::Sha512 => "sha512",
        }
    }
}

const fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

/// dhSinglePass-stdDH-*kdf-scheme and dhSinglePass-cofactorDH-*kdf-scheme
/// (RFC 5753 §7.1.4; SEC 1 for the SHA-2 ones).
const SCHEMES: &[(ObjectIdentifier, KdfHash, bool)] = &[
    (oid("1.3.133.16.840.63.0.2"), KdfHash::Sha1, false),
    (oid("1.3.132.1.11.0"), KdfHash::Sha224, false),
    (oid("1.3.132.1.11.1"), KdfHash::Sha256, false),
    (oid("1.3.132.1.11.2"), KdfHash::Sha384, false),
    (oid("1.3.132.1.11.3"), KdfHash::Sha512, false),
    (oid("1.3.133.16.840.63.0.3"), KdfHash::Sha1, true),
    (oid("1.3.132.1.14.0"), KdfHash::Sha224, true),
    (oid("1.3.132.1.14.1"), KdfHash::Sha256, true),
    (oid("1.3.132.1.14.2"), KdfHash::Sha384, true),
    (oid("1.3.132.1.14.3"), KdfHash::Sha512, true),
];

/// id-aes128-wrap, id-aes192-wrap, id-aes256-wrap (RFC 3565).
const WRAPS: &[(ObjectIdentifier, usize)] = &[
    (rfc5911::ID_AES_128_WRAP, 16),
    (rfc5911::ID_AES_192_WRAP, 24),
    (rfc5911::ID_AES_256_WRAP, 32),
];

/// id-ecPublicKey and prime256v1 (RFC 5480).
const EC_PUBLIC_KEY: ObjectIdentifier = oid("1.2.840.10045.2.1");
const PRIME256V1: ObjectIdentifier = oid("1.2.840.10045.3.1.7");

/// A KeyAgreeRecipientInfo's keyEncryptionAlgorithm, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAgreeScheme {
    /// The KDF hash.
    pub kdf: KdfHash,
    /// Cofactor DH (the same as standard DH on P-256).
    pub cofactor: bool,
    /// The KEK (AES key wrap) size in bytes.
    pub kek_len: usize,
}

fn malformed(what: &str) -> EnvelopeError {
    EnvelopeError::Malformed(format!("KeyAgreeRecipientInfo: {what}"))
}

impl KeyAgreeScheme {
    /// What sipseal writes for a content key of `cek_len` bytes.
    pub fn for_cek(cek_len: usize) -> KeyAgreeScheme {
        KeyAgreeScheme {
            kdf: KdfHash::Sha256,
            cofactor: false,
            kek_len: if cek_len <= 16 { 16 } else { 32 },
        }
    }

    /// Read a keyEncryptionAlgorithm.
    pub fn decode(alg: &AlgorithmIdentifierOwned) -> Result<KeyAgreeScheme, EnvelopeError> {
        let Some(&(_, kdf, cofactor)) = SCHEMES.iter().find(|(o, _, _)| *o == alg.oid) else {
            return Err(EnvelopeError::Unsupported(format!(
                "key agreement algorithm {}",
                crate::oid::name(&alg.oid)
            )));
        };
        let wrap = alg
            .parameters
            .as_ref()
            .ok_or_else(|| malformed("no key wrap algorithm in the parameters"))?
            .decode_as::<AlgorithmIdentifierOwned>()
            .map_err(|e| malformed(&format!("key wrap algorithm: {e}")))?;
        let Some(&(_, kek_len)) = WRAPS.iter().find(|(o, _)| *o == wrap.oid) else {
            return Err(EnvelopeError::Unsupported(format!(
                "key wrap {} under key agreement",
                crate::oid::name(&wrap.oid)
            )));
        };
        Ok(KeyAgreeScheme {
            kdf,
            cofactor,
            kek_len,
        })
    }

    fn wrap_oid(&self) -> Result<ObjectIdentifier, EnvelopeError> {
        WRAPS
            .iter()
            .find(|(_, len)| *len == self.kek_len)
            .map(|(o, _)| *o)
            .ok_or_else(|| EnvelopeError::Encode(format!("no AES wrap of {} bytes", self.kek_len)))
    }

    /// The keyEncryptionAlgorithm to write.
    pub fn algorithm(&self) -> Result<AlgorithmIdentifierOwned, EnvelopeError> {
        let enc = |e: der::Error| EnvelopeError::Encode(e.to_string());
        let Some(&(scheme, _, _)) = SCHEMES
            .iter()
            .find(|(_, k, c)| *k == self.kdf && *c == self.cofactor)
        else {
            return Err(EnvelopeError::Encode("no such KDF scheme".into()));
        };
        let wrap = AlgorithmIdentifierOwned {
            oid: self.wrap_oid()?,
            parameters: None,
        };
        Ok(AlgorithmIdentifierOwned {
            oid: scheme,
            parameters: Some(Any::encode_from(&wrap).map_err(enc)?),
        })
    }

    /// For `inspect`.
    pub fn describe(&self) -> String {
        format!(
            "ECDH P-256 ({}DH, X9.63 KDF {}) + aes{}-wrap",
            if self.cofactor {
                "cofactor"
            } else {
                "standard "
            }
            .trim_end(),
            self.kdf.name(),
            self.kek_len * 8
        )
        .replace("standardDH", "standard DH")
        .replace("cofactorDH", "cofactor DH")
    }

    /// The KEK from the shared secret `z` (RFC 5753 §7.2).
    pub fn kek(&self, z: &[u8], ukm: Option<&[u8]>) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let info = SharedInfo {
            key_info: AlgorithmIdentifierOwned {
                oid: self.wrap_oid()?,
                parameters: None,
            },
            entity_u_info: ukm
                .map(OctetString::new)
                .transpose()
                .map_err(|e| malformed(&format!("ukm: {e}")))?,
            supp_pub_info: OctetString::new(((self.kek_len * 8) as u32).to_be_bytes())
                .map_err(|e| EnvelopeError::Encode(e.to_string()))?,
        }
        .to_der()
        .map_err(|e| EnvelopeError::Encode(e.to_string()))?;
        let mut kek = Zeroizing::new(vec![0u8; self.kek_len]);
        let derived = match self.kdf {
            KdfHash::Sha1 => ansi_x963_kdf::derive_key_into::<sha1::Sha1>(z, &info, &mut kek),
            KdfHash::Sha224 => ansi_x963_kdf::derive_key_into::<sha2::Sha224>(z, &info, &mut kek),
            KdfHash::Sha256 => ansi_x963_kdf::derive_key_into::<sha2::Sha256>(z, &info, &mut kek),
            KdfHash::Sha384 => ansi_x963_kdf::derive_key_into::<sha2::Sha384>(z, &info, &mut kek),
            KdfHash::Sha512 => ansi_x963_kdf::derive_key_into::<sha2::Sha512>(z, &info, &mut kek),
        };
        derived.map_err(|e| EnvelopeError::Encode(format!("X9.63 KDF: {e}")))?;
        Ok(kek)
    }
}

/// ECC-CMS-SharedInfo (RFC 5753 §7.2).
#[derive(Sequence)]
struct SharedInfo {
    key_info: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    entity_u_info: Option<OctetString>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    supp_pub_info: OctetString,
}

/// The rid of a certificate: its SubjectKeyIdentifier when it has one
/// (shorter), else issuer and serial number.
fn rid_for(cert: &Cert) -> Result<KeyAgreeRecipientIdentifier, EnvelopeError> {
    let enc = |e: der::Error| EnvelopeError::Encode(e.to_string());
    Ok(match cert.ski() {
        Some(ski) => KeyAgreeRecipientIdentifier::RKeyId(RecipientKeyIdentifier {
            subject_key_identifier: SubjectKeyIdentifier(OctetString::new(ski).map_err(enc)?),
            date: None,
            other: None,
        }),
        None => {
            let tbs = cert.cert.tbs_certificate();
            KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: tbs.issuer().clone(),
                serial_number: tbs.serial_number().clone(),
            })
        }
    })
}

/// Whether `rid` names `cert`.
pub fn rid_names(rid: &KeyAgreeRecipientIdentifier, cert: &Cert) -> bool {
    match rid {
        KeyAgreeRecipientIdentifier::RKeyId(r) => cert
            .ski()
            .is_some_and(|mine| mine == r.subject_key_identifier.0.as_bytes()),
        KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(ias) => {
            let tbs = cert.cert.tbs_certificate();
            ias.serial_number == *tbs.serial_number() && ias.issuer == *tbs.issuer()
        }
    }
}

/// Whether `rid` is the SubjectKeyIdentifier `ski`.
pub fn rid_has_ski(rid: &KeyAgreeRecipientIdentifier, ski: &[u8]) -> bool {
    matches!(rid, KeyAgreeRecipientIdentifier::RKeyId(r) if r.subject_key_identifier.0.as_bytes() == ski)
}

/// A rid as `inspect` shows it.
pub fn describe_rid(rid: &KeyAgreeRecipientIdentifier) -> String {
    match rid {
        KeyAgreeRecipientIdentifier::RKeyId(r) => super::describe_ski(&r.subject_key_identifier),
        KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(ias) => {
            super::describe_issuer_serial(ias)
        }
    }
}

/// The ephemeral public key a KeyAgreeRecipientInfo carries (a SEC1
/// point), when its originator is one on P-256 (or on the recipient's
/// curve: parameters absent).
pub fn originator_point(k: &KeyAgreeRecipientInfo) -> Result<&[u8], EnvelopeError> {
    let OriginatorIdentifierOrKey::OriginatorKey(key) = &k.originator else {
        return Err(EnvelopeError::Unsupported(
            "a KeyAgreeRecipientInfo whose originator is a certificate (static-static ECDH)".into(),
        ));
    };
    if key.algorithm.oid != EC_PUBLIC_KEY {
        return Err(EnvelopeError::Unsupported(format!(
            "originator key {}",
            crate::oid::name(&key.algorithm.oid)
        )));
    }
    if let Some(params) = &key.algorithm.parameters
        && params.decode_as::<ObjectIdentifier>().ok() != Some(PRIME256V1)
        && !params.is_null()
    {
        return Err(EnvelopeError::Unsupported(
            "an originator key on another curve than P-256".into(),
        ));
    }
    key.public_key
        .as_bytes()
        .ok_or_else(|| malformed("originator key is not a whole number of bytes"))
}

/// One KeyAgreeRecipientInfo for `certs` (P-256 certificates) with one
/// ephemeral key from `rng`.
pub fn kari_for<R: CryptoRng + ?Sized>(
    certs: &[&Cert],
    cek: &[u8],
    rng: &mut R,
) -> Result<RecipientInfo, EnvelopeError> {
    use p256::elliptic_curve::Generate;
    use p256::elliptic_curve::sec1::ToSec1Point;
    let enc = |e: der::Error| EnvelopeError::Encode(e.to_string());
    let scheme = KeyAgreeScheme::for_cek(cek.len());
    let ephemeral = p256::SecretKey::generate_from_rng(rng);
    let mut keys = Vec::with_capacity(certs.len());
    for cert in certs {
        let public = cert
            .p256_public_key()
            .map_err(|e| EnvelopeError::Recipient(e.to_string()))?;
        let z = p256::ecdh::diffie_hellman(ephemeral.to_nonzero_scalar(), public.as_affine());
        let kek = scheme.kek(z.raw_secret_bytes(), None)?;
        let (_, wrapped) = super::kekri::kek_wrap(&kek, cek)?;
        keys.push(RecipientEncryptedKey {
            rid: rid_for(cert)?,
            enc_key: OctetString::new(wrapped).map_err(enc)?,
        });
    }
    let point = ephemeral.public_key().to_sec1_point(true);
    Ok(RecipientInfo::Kari(KeyAgreeRecipientInfo {
        version: CmsVersion::V3,
        originator: OriginatorIdentifierOrKey::OriginatorKey(OriginatorPublicKey {
            algorithm: AlgorithmIdentifierOwned {
                oid: EC_PUBLIC_KEY,
                parameters: None,
            },
            public_key: BitString::from_bytes(point.as_bytes()).map_err(enc)?,
        }),
        ukm: None,
        key_enc_alg: scheme.algorithm()?,
        recipient_enc_keys: keys,
    }))
}

/// Unwrap the CEK a KeyAgreeRecipientInfo holds for `cert`, given the
/// shared secret `z` of the recipient's key and the originator's point:
/// `None` on any failure (the caller substitutes a random key).
pub fn unwrap_for(
    k: &KeyAgreeRecipientInfo,
    cert: &Cert,
    z: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, EnvelopeError> {
    unwrap_where(k, &|rid| rid_names(rid, cert), z)
}

/// [`unwrap_for`] for the RecipientEncryptedKey whose rid `names` picks
/// (a key known by its SubjectKeyIdentifier alone: [`rid_has_ski`]).
pub fn unwrap_where(
    k: &KeyAgreeRecipientInfo,
    names: &dyn Fn(&KeyAgreeRecipientIdentifier) -> bool,
    z: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, EnvelopeError> {
    let scheme = KeyAgreeScheme::decode(&k.key_enc_alg)?;
    let Some(rek) = k.recipient_enc_keys.iter().find(|r| names(&r.rid)) else {
        return Ok(None);
    };
    let ukm = k.ukm.as_ref().map(|u| u.as_bytes());
    let kek = scheme.kek(z, ukm)?;
    let wrap_alg = AlgorithmIdentifierOwned {
        oid: scheme.wrap_oid()?,
        parameters: None,
    };
    super::kekri::kek_unwrap(&wrap_alg, &kek, rek.enc_key.as_bytes())
}

/// Parse a KeyAgreeRecipientInfo alone (fuzzing and tests).
pub fn parse(der: &[u8]) -> Result<KeyAgreeRecipientInfo, der::Error> {
    KeyAgreeRecipientInfo::from_der(der)
}
