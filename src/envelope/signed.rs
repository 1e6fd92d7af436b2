//! SignedData (RFC 5652 §5): made with SHA-256 and RSA (PKCS#1 v1.5, or
//! PSS), read and verified from any sender that uses SHA-2 and RSA.
//!
//! ```text
//! SignedData ::= SEQUENCE {
//!   version CMSVersion,
//!   digestAlgorithms DigestAlgorithmIdentifiers,
//!   encapContentInfo EncapsulatedContentInfo,   -- eContent absent: detached
//!   certificates [0] IMPLICIT CertificateSet OPTIONAL,
//!   crls [1] IMPLICIT RevocationInfoChoices OPTIONAL,
//!   signerInfos SignerInfos }
//!
//! SignerInfo ::= SEQUENCE {
//!   version CMSVersion,
//!   sid SignerIdentifier,
//!   digestAlgorithm DigestAlgorithmIdentifier,
//!   signedAttrs [0] IMPLICIT SignedAttributes OPTIONAL,
//!   signatureAlgorithm SignatureAlgorithmIdentifier,
//!   signature SignatureValue,
//!   unsignedAttrs [1] IMPLICIT UnsignedAttributes OPTIONAL }
//! ```
//!
//! sipseal writes the signed attributes content-type, message-digest and
//! signing-time, and always includes the signer's certificate (RFC 3261
//! §23.2). With signed attributes the signature covers their DER as a SET
//! OF (RFC 5652 §5.4); without them (`openssl cms -sign -noattr`) it covers
//! the content itself.
//!
//! Verification here is the signature only: that the content matches and
//! the included certificate's key made the signature. Whether that
//! certificate is trusted is [`crate::keys::trust`]'s question.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::ObjectIdentifier;
use const_oid::db::{rfc5911, rfc5912};
use der::asn1::{Null, OctetString, SetOfVec, UtcTime};
use der::{Any, Decode, Encode};
use rand::CryptoRng;
use rsa::RsaPublicKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use serde::Serialize;
use sha2::{Digest, Sha256, Sha384, Sha512};
use time::OffsetDateTime;
use x509_cert::attr::Attribute;
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::error::ErrorClass;
use crate::keys::crl::{Crl, RevocationInfo};
use crate::keys::{Cert, Identity};

/// Problems making or reading a SignedData.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignatureError {
    /// Not well-formed CMS SignedData.
    #[error("malformed SignedData: {0}")]
    Malformed(String),
    /// Well-formed, but an algorithm sipseal does not verify.
    #[error("unsupported SignedData: {0}")]
    Unsupported(String),
    /// The signer's certificate is not in the SignedData.
    #[error("the signer's certificate is not included in the SignedData")]
    NoSignerCert,
    /// A detached signature without its content.
    #[error("the signature is detached and no content was given")]
    NoContent,
    /// The signature does not verify; the reason says which check failed.
    #[error("the signature does not verify: {0}")]
    Invalid(String),
    /// My own key cannot sign.
    #[error("cannot sign: {0}")]
    Key(String),
}

impl SignatureError {
    /// What kind of failure it is: my key that cannot sign is
    /// configuration; anything about a signature received failed.
    pub fn class(&self) -> ErrorClass {
        match self {
            SignatureError::Key(_) => ErrorClass::Config,
            _ => ErrorClass::Failed,
        }
    }
}

/// The RSA signature scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5.
    #[default]
    Pkcs1v15,
    /// RSASSA-PSS with MGF1 and a salt as long as the digest.
    Pss,
}

impl SignatureScheme {
    /// How to name it in reports.
    pub fn name(self) -> &'static str {
        match self {
            SignatureScheme::Pkcs1v15 => "rsa-pkcs1v15",
            SignatureScheme::Pss => "rsa-pss",
        }
    }
}

/// Sign `content` with `identity`: a DER ContentInfo holding SignedData
/// (SHA-256; signed attributes content-type id-data, message-digest and
/// signing-time = `now`; the identity's certificate and chain included).
/// `detached` leaves the content out (for `multipart/signed`).
pub fn sign<R: CryptoRng + ?Sized>(
    content: &[u8],
    identity: &Identity,
    scheme: SignatureScheme,
    detached: bool,
    now: OffsetDateTime,
    rng: &mut R,
) -> Result<Vec<u8>, SignatureError> {
    let enc = |what: &str, e: der::Error| SignatureError::Key(format!("encoding {what}: {e}"));
    let key = identity
        .private_key()
        .map_err(|e| SignatureError::Key(e.to_string()))?;
    let digest = Sha256::digest(content);
    let unix = u64::try_from(now.unix_timestamp())
        .map_err(|_| SignatureError::Key(format!("signing time {now} is before 1970")))?;
    let time = UtcTime::from_unix_duration(std::time::Duration::from_secs(unix))
        .map_err(|e| enc("signing-time (UTCTime ends in 2049)", e))?;
    let attr = |oid: ObjectIdentifier, value: Any| -> Result<Attribute, SignatureError> {
        Ok(Attribute {
            oid,
            values: SetOfVec::try_from(vec![value]).map_err(|e| enc("attribute", e))?,
        })
    };
    let digest_octets = OctetString::new(digest.to_vec()).map_err(|e| enc("digest", e))?;
    let attrs = SetOfVec::try_from(vec![
        attr(rfc5911::ID_CONTENT_TYPE, any_of(&rfc5911::ID_DATA)?)?,
        attr(rfc5911::ID_SIGNING_TIME, any_of(&time)?)?,
        attr(rfc5911::ID_MESSAGE_DIGEST, any_of(&digest_octets)?)?,
    ])
    .map_err(|e| enc("signed attributes", e))?;
    // RFC 5652 §5.4: the signature covers the attributes' DER with the
    // SET OF tag, not the [0] IMPLICIT one they travel under.
    let signed_bytes = attrs.to_der().map_err(|e| enc("signed attributes", e))?;
    let (signature, signature_algorithm) = match scheme {
        SignatureScheme::Pkcs1v15 => {
            // Deterministic: aws-lc-rs where it takes the key, the same
            // bytes from the rsa crate otherwise.
            let (sig, _) = key
                .sign_pkcs1v15_sha256(&signed_bytes)
                .map_err(SignatureError::Key)?;
            let alg = AlgorithmIdentifierOwned {
                oid: rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
                parameters: Some(Any::from(Null)),
            };
            (sig.to_vec(), alg)
        }
        SignatureScheme::Pss => {
            // PSS draws its salt from `rng`: the rsa crate keeps
            // deterministic mode reproducible (aws-lc-rs has its own RNG).
            let rsa = key.rsa().ok_or_else(|| {
                SignatureError::Key(
                    "an EC P-256 key cannot make an RSA-PSS signature; sign with an RSA identity"
                        .into(),
                )
            })?;
            let signer = rsa::pss::SigningKey::<Sha256>::new(rsa.clone());
            let sig = signer
                .try_sign_with_rng(rng, &signed_bytes)
                .map_err(|e| SignatureError::Key(e.to_string()))?;
            let alg = rsa::pss::get_default_pss_signature_algo_id::<Sha256>()
                .map_err(|e| SignatureError::Key(e.to_string()))?;
            (sig.to_vec(), alg)
        }
    };
    let tbs = identity.cert.cert.tbs_certificate();
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer().clone(),
            serial_number: tbs.serial_number().clone(),
        }),
        digest_alg: sha256_id(),
        signed_attrs: Some(attrs),
        signature_algorithm,
        signature: OctetString::new(signature).map_err(|e| enc("signature", e))?,
        unsigned_attrs: None,
    };
    let certs: Vec<CertificateChoices> = std::iter::once(&identity.cert)
        .chain(&identity.chain)
        .map(|c| CertificateChoices::Certificate(c.cert.clone()))
        .collect();
    let econtent = if detached {
        None
    } else {
        let octets = OctetString::new(content.to_vec()).map_err(|e| enc("content", e))?;
        Some(Any::encode_from(&octets).map_err(|e| enc("content", e))?)
    };
    // The CRLs the identity carries (RFC 5652 §10.2.1), as they were read:
    // a v1 CRL has no place in `cms`'s types. SET OF: in DER order.
    let mut ders: Vec<&[u8]> = identity.crls.iter().map(|c| c.to_der()).collect();
    ders.sort_unstable();
    let crls = ders
        .into_iter()
        .map(|der| Any::from_der(der).map_err(|e| enc("a CRL", e)))
        .collect::<Result<Vec<Any>, _>>()?;
    let sd = RawSignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![sha256_id()])
            .map_err(|e| enc("digest algorithms", e))?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: rfc5911::ID_DATA,
            econtent,
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(certs).map_err(|e| enc("certificates", e))?,
        )),
        crls: (!crls.is_empty()).then_some(crls),
        signer_infos: SignerInfos(
            SetOfVec::try_from(vec![signer_info]).map_err(|e| enc("signer infos", e))?,
        ),
    };
    ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&sd).map_err(|e| enc("SignedData", e))?,
    }
    .to_der()
    .map_err(|e| enc("ContentInfo", e))
}

fn any_of<T: der::EncodeValue + der::Tagged>(v: &T) -> Result<Any, SignatureError> {
    Any::encode_from(v)
        .map_err(|e| SignatureError::Key(format!("encoding an attribute value: {e}")))
}

fn sha256_id() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: rfc5912::ID_SHA_256,
        parameters: None,
    }
}

/// Revocation entries read from one SignedData at most.
pub const MAX_REVOCATION: usize = 32;

/// A certs-only message (RFC 8551 §3.6, `application/pkcs7-mime;
/// smime-type=certs-only`): a SignedData with no content and no signer,
/// carrying `certs` (a certificate and its chain).
pub fn certs_only(certs: &[Cert]) -> Result<Vec<u8>, SignatureError> {
    let enc = |what: &str, e: der::Error| SignatureError::Key(format!("encoding {what}: {e}"));
    let choices: Vec<CertificateChoices> = certs
        .iter()
        .map(|c| CertificateChoices::Certificate(c.cert.clone()))
        .collect();
    let sd = RawSignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: rfc5911::ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(choices).map_err(|e| enc("certificates", e))?,
        )),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&sd).map_err(|e| enc("SignedData", e))?,
    }
    .to_der()
    .map_err(|e| enc("ContentInfo", e))
}

/// The certificates of a certs-only message (or of any SignedData). DER
/// sorts a SET OF: find the end entity by what it names, not by position.
pub fn certs_of(der: &[u8]) -> Result<Vec<Cert>, SignatureError> {
    let raw = raw_signed_data(der)?;
    Ok(raw
        .certificates
        .iter()
        .flat_map(|s| s.0.iter())
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(c) => Some(Cert {
                cert: c.clone(),
                source: "the certs-only body".into(),
            }),
            _ => None,
        })
        .collect())
}

/// The SignedData of a ContentInfo (BER read as its DER).
fn raw_signed_data(der: &[u8]) -> Result<RawSignedData, SignatureError> {
    let bad = |what: &str, e: der::Error| SignatureError::Malformed(format!("{what}: {e}"));
    let der = super::ber::to_der(der).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    let ci = ContentInfo::from_der(&der).map_err(|e| bad("ContentInfo", e))?;
    if ci.content_type != rfc5911::ID_SIGNED_DATA {
        return Err(SignatureError::Malformed(format!(
            "the ContentInfo holds {}, not SignedData",
            super::oid_name(&ci.content_type)
        )));
    }
    ci.content.decode_as().map_err(|e| bad("SignedData", e))
}

/// `SignedData` as `cms` has it, but with `crls` kept as the elements they
/// are: `cms` decodes them with `x509-cert`'s `TbsCertList`, which refuses
/// a v1 CRL (no version field), and so would refuse the whole SignedData.
/// [`RevocationInfo::parse`] reads each one.
#[derive(Clone, Debug, der::Sequence)]
struct RawSignedData {
    version: CmsVersion,
    digest_algorithms: SetOfVec<AlgorithmIdentifierOwned>,
    encap_content_info: EncapsulatedContentInfo,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    certificates: Option<CertificateSet>,
    #[asn1(
        context_specific = "1",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    crls: Option<Vec<Any>>,
    signer_infos: SignerInfos,
}

/// A parsed SignedData, ready to verify.
#[derive(Debug, Clone)]
pub struct Signed {
    signed: SignedData,
    /// The encapsulated content (`None`: detached).
    pub content: Option<Vec<u8>>,
    /// The encapsulated content's type.
    pub content_type: ObjectIdentifier,
    /// The certificates it carries.
    pub certs: Vec<Cert>,
    /// Its `crls` (RFC 5652 §10.2.1), in order.
    pub revocation: Vec<RevocationInfo>,
}

/// What one SignerInfo says, read without verifying anything (`inspect`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignerSummary {
    /// `issuer=DN serial=HEX` or `ski:HEX`.
    pub sid: String,
    /// The certificate it names, when the SignedData carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The digest algorithm.
    pub digest: String,
    /// The signature algorithm.
    pub signature: String,
    /// The signed attributes, by name (with the signing time's value).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signed_attributes: Vec<String>,
    /// The unsigned attributes, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsigned_attributes: Vec<String>,
}

/// One signer whose signature verified.
#[derive(Debug, Clone)]
pub struct Signer {
    /// Its certificate (from the SignedData).
    pub cert: Cert,
    /// The signing-time attribute, when present.
    pub signing_time: Option<OffsetDateTime>,
    /// The scheme it used.
    pub scheme: SignatureScheme,
    /// Whether it had signed attributes.
    pub signed_attrs: bool,
}

impl Signed {
    /// Parse a DER ContentInfo holding SignedData.
    pub fn parse(der: &[u8]) -> Result<Signed, SignatureError> {
        let bad = |what: &str, e: der::Error| SignatureError::Malformed(format!("{what}: {e}"));
        let raw = raw_signed_data(der)?;
        // Each CRL may cost a signature check: a SignedData from the
        // network gets its first MAX_REVOCATION entries read, no more.
        let entries = raw.crls.as_deref().unwrap_or_default();
        let mut revocation: Vec<RevocationInfo> = entries
            .iter()
            .take(MAX_REVOCATION)
            .map(RevocationInfo::parse)
            .collect();
        if entries.len() > MAX_REVOCATION {
            revocation.push(RevocationInfo::Unreadable(format!(
                "{} more revocation entries, not read (at most {MAX_REVOCATION} are)",
                entries.len() - MAX_REVOCATION
            )));
        }
        let signed = SignedData {
            version: raw.version,
            digest_algorithms: raw.digest_algorithms,
            encap_content_info: raw.encap_content_info,
            certificates: raw.certificates,
            crls: None,
            signer_infos: raw.signer_infos,
        };
        let content = match &signed.encap_content_info.econtent {
            None => None,
            Some(any) => Some(
                any.decode_as::<OctetString>()
                    .map_err(|e| bad("eContent", e))?
                    .as_bytes()
                    .to_vec(),
            ),
        };
        let mut certs = Vec::new();
        for choice in signed.certificates.iter().flat_map(|s| s.0.iter()) {
            if let CertificateChoices::Certificate(c) = choice {
                certs.push(Cert {
                    cert: c.clone(),
                    source: "the SignedData".into(),
                });
            }
        }
        if signed.signer_infos.0.is_empty() {
            return Err(SignatureError::Malformed("no SignerInfo".into()));
        }
        Ok(Signed {
            content_type: signed.encap_content_info.econtent_type,
            signed,
            content,
            certs,
            revocation,
        })
    }

    /// Whether the content is left out (a detached signature).
    pub fn is_detached(&self) -> bool {
        self.content.is_none()
    }

    /// Each SignerInfo as it stands: who it names and with what.
    pub fn signers(&self) -> Vec<SignerSummary> {
        let attr_name = |a: &x509_cert::attr::Attribute| {
            let name = super::oid_name(&a.oid);
            if a.oid == rfc5911::ID_SIGNING_TIME
                && let Ok(v) = single_value(a)
                && let Ok(t) = v.decode_as::<x509_cert::time::Time>()
                && let Ok(t) =
                    OffsetDateTime::from_unix_timestamp(t.to_unix_duration().as_secs() as i64)
            {
                return format!("{name} {}", crate::context::rfc3339(t));
            }
            name
        };
        self.signed
            .signer_infos
            .0
            .iter()
            .map(|si| SignerSummary {
                sid: match &si.sid {
                    SignerIdentifier::SubjectKeyIdentifier(ski) => super::describe_ski(ski),
                    SignerIdentifier::IssuerAndSerialNumber(ias) => {
                        super::describe_issuer_serial(ias)
                    }
                },
                certificate: self
                    .certs
                    .iter()
                    .find(|c| sid_matches(&si.sid, c))
                    .map(Cert::name),
                digest: super::oid_name(&si.digest_alg.oid),
                signature: super::oid_name(&si.signature_algorithm.oid),
                signed_attributes: si
                    .signed_attrs
                    .iter()
                    .flat_map(|a| a.iter())
                    .map(attr_name)
                    .collect(),
                unsigned_attributes: si
                    .unsigned_attrs
                    .iter()
                    .flat_map(|a| a.iter())
                    .map(attr_name)
                    .collect(),
            })
            .collect()
    }

    /// The encapsulated content's type, by name.
    pub fn content_type_name(&self) -> String {
        super::oid_name(&self.content_type)
    }

    /// The CRLs it carries that parse.
    pub fn crls(&self) -> Vec<&Crl> {
        self.revocation
            .iter()
            .filter_map(|r| match r {
                RevocationInfo::Crl(c) => Some(&**c),
                _ => None,
            })
            .collect()
    }

    /// Verify every SignerInfo over the encapsulated content, or over
    /// `detached` when the signature is detached; the signers on success.
    pub fn verify(&self, detached: Option<&[u8]>) -> Result<Vec<Signer>, SignatureError> {
        let content = match (&self.content, detached) {
            (Some(c), _) => c.as_slice(),
            (None, Some(d)) => d,
            (None, None) => return Err(SignatureError::NoContent),
        };
        self.signed
            .signer_infos
            .0
            .iter()
            .map(|si| self.verify_one(si, content))
            .collect()
    }

    fn verify_one(&self, si: &SignerInfo, content: &[u8]) -> Result<Signer, SignatureError> {
        let cert = self
            .certs
            .iter()
            .find(|c| sid_matches(&si.sid, c))
            .ok_or(SignatureError::NoSignerCert)?;
        let digest = DigestAlg::from_oid(&si.digest_alg.oid)?;
        let content_digest = digest.digest(content);
        let mut signing_time = None;
        let signed_bytes = match &si.signed_attrs {
            None => content.to_vec(),
            Some(attrs) => {
                let mut digest_ok = false;
                let mut type_ok = false;
                for a in attrs.iter() {
                    let value = single_value(a)?;
                    match a.oid {
                        rfc5911::ID_MESSAGE_DIGEST => {
                            let got = value.decode_as::<OctetString>().map_err(|e| {
                                SignatureError::Malformed(format!("message-digest: {e}"))
                            })?;
                            if got.as_bytes() != content_digest.as_slice() {
                                return Err(SignatureError::Invalid(
                                    "the content's digest differs from the signed message-digest: the content was changed after signing".into(),
                                ));
                            }
                            digest_ok = true;
                        }
                        rfc5911::ID_CONTENT_TYPE => {
                            let got = value.decode_as::<ObjectIdentifier>().map_err(|e| {
                                SignatureError::Malformed(format!("content-type: {e}"))
                            })?;
                            if got != self.content_type {
                                return Err(SignatureError::Invalid(format!(
                                    "the signed content-type {got} differs from the eContentType {}",
                                    self.content_type
                                )));
                            }
                            type_ok = true;
                        }
                        rfc5911::ID_SIGNING_TIME => {
                            let t = value.decode_as::<x509_cert::time::Time>().map_err(|e| {
                                SignatureError::Malformed(format!("signing-time: {e}"))
                            })?;
                            signing_time = OffsetDateTime::from_unix_timestamp(
                                t.to_unix_duration().as_secs() as i64,
                            )
                            .ok();
                        }
                        _ => {}
                    }
                }
                // RFC 5652 §5.3: both are required when attributes are present.
                if !(digest_ok && type_ok) {
                    return Err(SignatureError::Malformed(
                        "signed attributes without content-type and message-digest".into(),
                    ));
                }
                attrs
                    .to_der()
                    .map_err(|e| SignatureError::Malformed(format!("signed attributes: {e}")))?
            }
        };
        let key = cert
            .rsa_public_key()
            .map_err(|_| SignatureError::Unsupported("the signer's key is not RSA".into()))?;
        let scheme = verify_rsa(&key, si, digest, &signed_bytes)?;
        Ok(Signer {
            cert: cert.clone(),
            signing_time,
            scheme,
            signed_attrs: si.signed_attrs.is_some(),
        })
    }
}

fn single_value(a: &Attribute) -> Result<&Any, SignatureError> {
    match a.values.as_slice() {
        [v] => Ok(v),
        _ => Err(SignatureError::Malformed(format!(
            "attribute {} must have exactly one value",
            a.oid
        ))),
    }
}

fn sid_matches(sid: &SignerIdentifier, cert: &Cert) -> bool {
    match sid {
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            cert.ski().is_some_and(|mine| mine == ski.0.as_bytes())
        }
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            let tbs = cert.cert.tbs_certificate();
            ias.serial_number == *tbs.serial_number() && ias.issuer == *tbs.issuer()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DigestAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlg {
    fn from_oid(oid: &ObjectIdentifier) -> Result<DigestAlg, SignatureError> {
        match *oid {
            rfc5912::ID_SHA_256 => Ok(DigestAlg::Sha256),
            rfc5912::ID_SHA_384 => Ok(DigestAlg::Sha384),
            rfc5912::ID_SHA_512 => Ok(DigestAlg::Sha512),
            other => Err(SignatureError::Unsupported(format!(
                "digest algorithm {}",
                super::oid_name(&other)
            ))),
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            DigestAlg::Sha256 => Sha256::digest(data).to_vec(),
            DigestAlg::Sha384 => Sha384::digest(data).to_vec(),
            DigestAlg::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// Check the RSA signature over `data` with the algorithm the SignerInfo
/// names (rsaEncryption as OpenSSL writes it, shaNNNWithRSAEncryption, or
/// RSASSA-PSS whose hash must be the digest algorithm's).
fn verify_rsa(
    key: &RsaPublicKey,
    si: &SignerInfo,
    digest: DigestAlg,
    data: &[u8],
) -> Result<SignatureScheme, SignatureError> {
    let invalid = || {
        SignatureError::Invalid("the RSA signature does not match the signer's public key".into())
    };
    let sig = si.signature.as_bytes();
    let oid = si.signature_algorithm.oid;
    let named = match oid {
        rfc5912::RSA_ENCRYPTION => Some(digest),
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION => Some(DigestAlg::Sha256),
        SHA384_WITH_RSA => Some(DigestAlg::Sha384),
        SHA512_WITH_RSA => Some(DigestAlg::Sha512),
        rfc5912::ID_RSASSA_PSS => None,
        other => {
            return Err(SignatureError::Unsupported(format!(
                "signature algorithm {}",
                super::oid_name(&other)
            )));
        }
    };
    if let Some(alg) = named {
        if alg != digest {
            return Err(SignatureError::Unsupported(
                "the signature algorithm's hash differs from the digest algorithm".into(),
            ));
        }
        let sig = rsa::pkcs1v15::Signature::try_from(sig).map_err(|_| invalid())?;
        let ok = match alg {
            DigestAlg::Sha256 => {
                rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone()).verify(data, &sig)
            }
            DigestAlg::Sha384 => {
                rsa::pkcs1v15::VerifyingKey::<Sha384>::new(key.clone()).verify(data, &sig)
            }
            DigestAlg::Sha512 => {
                rsa::pkcs1v15::VerifyingKey::<Sha512>::new(key.clone()).verify(data, &sig)
            }
        };
        return ok
            .map(|()| SignatureScheme::Pkcs1v15)
            .map_err(|_| invalid());
    }
    let params: rsa::pkcs1::RsaPssParamsOwned = si
        .signature_algorithm
        .parameters
        .as_ref()
        .ok_or_else(|| SignatureError::Malformed("RSASSA-PSS without parameters".into()))?
        .decode_as()
        .map_err(|e| SignatureError::Malformed(format!("RSASSA-PSS parameters: {e}")))?;
    let hash = DigestAlg::from_oid(&params.hash.oid)?;
    let mgf_hash = params
        .mask_gen
        .parameters
        .as_ref()
        .map(|p| p.oid)
        .ok_or_else(|| SignatureError::Malformed("RSASSA-PSS MGF without a hash".into()))?;
    if hash != digest
        || params.mask_gen.oid != rfc5912::ID_MGF_1
        || DigestAlg::from_oid(&mgf_hash)? != digest
    {
        return Err(SignatureError::Unsupported(
            "RSASSA-PSS must use MGF1 with the digest algorithm's hash".into(),
        ));
    }
    let sig = rsa::pss::Signature::try_from(sig).map_err(|_| invalid())?;
    let salt = usize::from(params.salt_len);
    let ok = match digest {
        DigestAlg::Sha256 => rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(key.clone(), salt)
            .verify(data, &sig),
        DigestAlg::Sha384 => rsa::pss::VerifyingKey::<Sha384>::new_with_salt_len(key.clone(), salt)
            .verify(data, &sig),
        DigestAlg::Sha512 => rsa::pss::VerifyingKey::<Sha512>::new_with_salt_len(key.clone(), salt)
            .verify(data, &sig),
    };
    ok.map(|()| SignatureScheme::Pss).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {

    use rand::SeedableRng;
    use rand::rngs::ChaCha20Rng;
    use time::macros::datetime;

    use super::*;

    fn alice() -> Identity {
        crate::keys::demo_identity("alice")
    }

    #[test]
    fn sign_and_verify_both_schemes_opaque_and_detached() {
        let id = alice();
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        let now = datetime!(2026-03-02 10:00 UTC);
        for scheme in [SignatureScheme::Pkcs1v15, SignatureScheme::Pss] {
            let opaque = sign(b"v=0\r\n", &id, scheme, false, now, &mut rng).unwrap();
            let s = Signed::parse(&opaque).unwrap();
            assert_eq!(s.content.as_deref(), Some(&b"v=0\r\n"[..]));
            let signers = s.verify(None).unwrap();
            assert_eq!(signers.len(), 1);
            assert_eq!(
                signers[0].cert.uri().as_deref(),
                Some("sip:alice@a.example.com")
            );
            assert_eq!(signers[0].signing_time, Some(now));
            assert_eq!(signers[0].scheme, scheme);

            let detached = sign(b"v=0\r\n", &id, scheme, true, now, &mut rng).unwrap();
            let s = Signed::parse(&detached).unwrap();
            assert!(s.is_detached());
            assert!(matches!(s.verify(None), Err(SignatureError::NoContent)));
            s.verify(Some(b"v=0\r\n")).unwrap();
            assert!(matches!(
                s.verify(Some(b"v=1\r\n")),
                Err(SignatureError::Invalid(m)) if m.contains("digest")
            ));
        }
    }

    /// RFC 5652 §10.2.1: `crls` may hold other revocation formats (an OCSP
    /// response) and, from other implementations, entries sipseal cannot
    /// read; the SignedData still parses and verifies, and each entry is
    /// named for what it is.
    #[test]
    fn revocation_choices_other_and_unreadable_do_not_spoil_the_signed_data() {
        let id = alice();
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let now = datetime!(2026-03-02 10:00 UTC);
        let der = sign(b"hi", &id, SignatureScheme::Pkcs1v15, false, now, &mut rng).unwrap();
        let ci = ContentInfo::from_der(&der).unwrap();
        let mut raw: RawSignedData = ci.content.decode_as().unwrap();
        let any = |bytes: &[u8]| Any::from_der(bytes).unwrap();
        raw.crls = Some(vec![
            // [1] { id-ri-ocsp-response, OCTET STRING "x" }
            any(&[
                0xa1, 0x0d, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x10, 0x02, 0x04, 0x01,
                b'x',
            ]),
            // A SEQUENCE that is no CRL.
            any(&[0x30, 0x03, 0x02, 0x01, 0x05]),
            // A choice RFC 5652 does not define.
            any(&[0xa5, 0x00]),
        ]);
        let der = ContentInfo {
            content_type: ci.content_type,
            content: Any::encode_from(&raw).unwrap(),
        }
        .to_der()
        .unwrap();
        let s = Signed::parse(&der).unwrap();
        let lines: Vec<String> = s.revocation.iter().map(|r| r.describe()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            "other revocation information (1.3.6.1.5.5.7.16.2)"
        );
        assert!(
            lines[1].starts_with("unreadable: a CRL that does not parse"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("unreadable: an unknown revocation choice"),
            "{}",
            lines[2]
        );
        assert!(s.crls().is_empty());
        assert_eq!(s.verify(None).unwrap().len(), 1);

        // More entries than are read: the rest are named, not parsed.
        let other = any(&[
            0xa1, 0x0c, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x10, 0x02, 0x05, 0x00,
        ]);
        raw.crls = Some(vec![other; MAX_REVOCATION + 8]);
        let der = ContentInfo {
            content_type: ci.content_type,
            content: Any::encode_from(&raw).unwrap(),
        }
        .to_der()
        .unwrap();
        let s = Signed::parse(&der).unwrap();
        assert_eq!(s.revocation.len(), MAX_REVOCATION + 1);
        assert_eq!(
            s.revocation[MAX_REVOCATION].describe(),
            format!(
                "unreadable: 8 more revocation entries, not read (at most {MAX_REVOCATION} are)"
            )
        );
    }

    #[test]
    fn a_changed_signature_or_attribute_fails() {
        let id = alice();
        let mut rng = ChaCha20Rng::from_seed([8; 32]);
        let now = datetime!(2026-03-02 10:00 UTC);
        let der = sign(
            b"hello",
            &id,
            SignatureScheme::Pkcs1v15,
            false,
            now,
            &mut rng,
        )
        .unwrap();
        // Flip the last byte: the signature value is the SignerInfo's tail.
        let mut bad = der.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            Signed::parse(&bad).unwrap().verify(None),
            Err(SignatureError::Invalid(m)) if m.contains("RSA signature")
        ));
        // Move the signing time by a year (UTCTime "26" -> "27").
        let at = der.windows(6).position(|w| w == b"260302").unwrap();
        let mut bad = der.clone();
        bad[at + 1] = b'7';
        assert!(matches!(
            Signed::parse(&bad).unwrap().verify(None),
            Err(SignatureError::Invalid(_))
        ));
        assert!(matches!(
            Signed::parse(b"\x30\x03\x02\x01\x00"),
            Err(SignatureError::Malformed(_))
        ));
    }
}
