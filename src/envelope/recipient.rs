//! RecipientInfos: key transport with RSA (KTRI) and key wrap with a
//! pre-shared key (KEKRI). RFC 5652 §6.2.
//!
//! ```text
//! KeyTransRecipientInfo ::= SEQUENCE {
//!   version CMSVersion,  -- always set to 0 or 2
//!   rid RecipientIdentifier,
//!   keyEncryptionAlgorithm KeyEncryptionAlgorithmIdentifier,
//!   encryptedKey EncryptedKey }
//! RecipientIdentifier ::= CHOICE {
//!   issuerAndSerialNumber IssuerAndSerialNumber,
//!   subjectKeyIdentifier [0] SubjectKeyIdentifier }
//!
//! KEKRecipientInfo ::= SEQUENCE {
//!   version CMSVersion,  -- always set to 4
//!   kekid KEKIdentifier,
//!   keyEncryptionAlgorithm KeyEncryptionAlgorithmIdentifier,
//!   encryptedKey EncryptedKey }
//!
//! -- RFC 8017 A.2.1 (RSAES-OAEP), with RFC 4055 defaults
//! RSAES-OAEP-params ::= SEQUENCE {
//!   hashAlgorithm      [0] HashAlgorithm     DEFAULT sha1,
//!   maskGenAlgorithm   [1] MaskGenAlgorithm  DEFAULT mgf1SHA1,
//!   pSourceAlgorithm   [2] PSourceAlgorithm  DEFAULT pSpecifiedEmpty }
//! ```
//!
//! Key wrap with a pre-shared key (KEKRI) is in [`super::kekri`].
//!
//! Choosing a RecipientInfo ([`RecipientKey::matches`]) looks only at
//! identifiers, never at a private key; the private key is used once, for
//! the chosen RecipientInfo.

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::CmsVersion;
use cms::enveloped_data::{KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912;
use der::asn1::{Null, OctetString};
use der::{Any, Decode, Encode, Sequence};
use rand::CryptoRng;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use serde::Serialize;
use subtle::{ConditionallySelectable, ConstantTimeEq};
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

use super::EnvelopeError;
use super::kekri::kek_unwrap;
use crate::keys::mlkem::MlKemLevel;
use crate::keys::private::RSA_CRATE;
use crate::keys::{Backend, Cert, Identity, KeyError, Password, PrivateKey, Psk};

/// RSA key-transport padding for new KeyTransRecipientInfos.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum RsaPadding {
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 4055, RFC 8017).
    #[default]
    Oaep,
    /// RSAES-PKCS1-v1_5, for legacy peers.
    Pkcs1v15,
}

/// A hash named in RSAES-OAEP-params.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OaepHash {
    /// SHA-1 (the RFC 8017 default).
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl OaepHash {
    fn from_oid(oid: &ObjectIdentifier) -> Option<OaepHash> {
        Some(match *oid {
            rfc5912::ID_SHA_1 => OaepHash::Sha1,
            rfc5912::ID_SHA_224 => OaepHash::Sha224,
            rfc5912::ID_SHA_256 => OaepHash::Sha256,
            rfc5912::ID_SHA_384 => OaepHash::Sha384,
            rfc5912::ID_SHA_512 => OaepHash::Sha512,
            _ => return None,
        })
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            OaepHash::Sha1 => rfc5912::ID_SHA_1,
            OaepHash::Sha224 => rfc5912::ID_SHA_224,
            OaepHash::Sha256 => rfc5912::ID_SHA_256,
            OaepHash::Sha384 => rfc5912::ID_SHA_384,
            OaepHash::Sha512 => rfc5912::ID_SHA_512,
        }
    }

    /// The usual name.
    pub fn name(self) -> &'static str {
        match self {
            OaepHash::Sha1 => "sha1",
            OaepHash::Sha224 => "sha224",
            OaepHash::Sha256 => "sha256",
            OaepHash::Sha384 => "sha384",
            OaepHash::Sha512 => "sha512",
        }
    }
}

/// How a KTRI's content key was encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
pub enum KeyTransportScheme {
    /// RSAES-PKCS1-v1_5 (`rsaEncryption`).
    Pkcs1v15,
    /// RSAES-OAEP with these parameters.
    Oaep {
        /// The hash of the OAEP encoding.
        hash: OaepHash,
        /// The hash of MGF1.
        mgf1_hash: OaepHash,
        #[serde(
            skip_serializing_if = "Vec::is_empty",
            serialize_with = "super::ser_hex"
        )]
        /// The OAEP label (`pSourceAlgorithm`), empty by default.
        label: Vec<u8>,
    },
}

#[derive(Sequence)]
struct OaepParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    hash: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    mask_gen: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    p_source: Option<AlgorithmIdentifierOwned>,
}

fn malformed(what: &str) -> EnvelopeError {
    EnvelopeError::Malformed(format!("RSAES-OAEP-params: {what}"))
}

impl KeyTransportScheme {
    /// The scheme for `padding` as sipseal writes it.
    pub fn for_padding(padding: RsaPadding) -> KeyTransportScheme {
        match padding {
            RsaPadding::Pkcs1v15 => KeyTransportScheme::Pkcs1v15,
            RsaPadding::Oaep => KeyTransportScheme::Oaep {
                hash: OaepHash::Sha256,
                mgf1_hash: OaepHash::Sha256,
                label: Vec::new(),
            },
        }
    }

    /// Decode a keyEncryptionAlgorithm of a KTRI.
    pub fn decode(alg: &AlgorithmIdentifierOwned) -> Result<KeyTransportScheme, EnvelopeError> {
        match alg.oid {
            rfc5912::RSA_ENCRYPTION => Ok(KeyTransportScheme::Pkcs1v15),
            rfc5912::ID_RSAES_OAEP => {
                let params = match &alg.parameters {
                    // Absent parameters: all defaults (SHA-1).
                    None => OaepParams {
                        hash: None,
                        mask_gen: None,
                        p_source: None,
                    },
                    Some(any) => {
                        let der = any.to_der().map_err(|e| malformed(&e.to_string()))?;
                        OaepParams::from_der(&der).map_err(|e| malformed(&e.to_string()))?
                    }
                };
                let hash = match &params.hash {
                    None => OaepHash::Sha1,
                    Some(h) => OaepHash::from_oid(&h.oid).ok_or_else(|| {
                        EnvelopeError::Unsupported(format!("OAEP hash {}", super::oid_name(&h.oid)))
                    })?,
                };
                let mgf1_hash = match &params.mask_gen {
                    None => OaepHash::Sha1,
                    Some(m) if m.oid == rfc5912::ID_MGF_1 => {
                        let inner = m
                            .parameters
                            .as_ref()
                            .ok_or_else(|| malformed("MGF1 without a hash"))?
                            .decode_as::<AlgorithmIdentifierOwned>()
                            .map_err(|e| malformed(&e.to_string()))?;
                        OaepHash::from_oid(&inner.oid).ok_or_else(|| {
                            EnvelopeError::Unsupported(format!(
                                "MGF1 hash {}",
                                super::oid_name(&inner.oid)
                            ))
                        })?
                    }
                    Some(m) => {
                        return Err(EnvelopeError::Unsupported(format!(
                            "mask generation function {}",
                            super::oid_name(&m.oid)
                        )));
                    }
                };
                let label = match &params.p_source {
                    None => Vec::new(),
                    Some(p) if p.oid == rfc5912::ID_P_SPECIFIED => match &p.parameters {
                        None => Vec::new(),
                        Some(l) => l
                            .decode_as::<OctetString>()
                            .map_err(|e| malformed(&e.to_string()))?
                            .as_bytes()
                            .to_vec(),
                    },
                    Some(p) => {
                        return Err(EnvelopeError::Unsupported(format!(
                            "OAEP label source {}",
                            super::oid_name(&p.oid)
                        )));
                    }
                };
                Ok(KeyTransportScheme::Oaep {
                    hash,
                    mgf1_hash,
                    label,
                })
            }
            other => Err(EnvelopeError::Unsupported(format!(
                "key transport algorithm {}",
                super::oid_name(&other)
            ))),
        }
    }

    /// The keyEncryptionAlgorithm to write. Hash identifiers have absent
    /// parameters (RFC 5754 §2); defaults are omitted (DER).
    pub fn algorithm(&self) -> Result<AlgorithmIdentifierOwned, EnvelopeError> {
        let enc = |e: der::Error| EnvelopeError::Encode(e.to_string());
        match self {
            KeyTransportScheme::Pkcs1v15 => Ok(AlgorithmIdentifierOwned {
                oid: rfc5912::RSA_ENCRYPTION,
                parameters: Some(Any::encode_from(&Null).map_err(enc)?),
            }),
            KeyTransportScheme::Oaep {
                hash,
                mgf1_hash,
                label,
            } => {
                let hash_alg = |h: OaepHash| AlgorithmIdentifierOwned {
                    oid: h.oid(),
                    parameters: None,
                };
                let params = OaepParams {
                    hash: (*hash != OaepHash::Sha1).then(|| hash_alg(*hash)),
                    mask_gen: if *mgf1_hash == OaepHash::Sha1 {
                        None
                    } else {
                        Some(AlgorithmIdentifierOwned {
                            oid: rfc5912::ID_MGF_1,
                            parameters: Some(Any::encode_from(&hash_alg(*mgf1_hash)).map_err(enc)?),
                        })
                    },
                    p_source: if label.is_empty() {
                        None
                    } else {
                        Some(AlgorithmIdentifierOwned {
                            oid: rfc5912::ID_P_SPECIFIED,
                            parameters: Some(
                                Any::encode_from(&OctetString::new(label.clone()).map_err(enc)?)
                                    .map_err(enc)?,
                            ),
                        })
                    },
                };
                Ok(AlgorithmIdentifierOwned {
                    oid: rfc5912::ID_RSAES_OAEP,
                    parameters: Some(Any::encode_from(&params).map_err(enc)?),
                })
            }
        }
    }

    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            KeyTransportScheme::Pkcs1v15 => "rsaEncryption (PKCS#1 v1.5)".into(),
            KeyTransportScheme::Oaep {
                hash,
                mgf1_hash,
                label,
            } => {
                let mut s = format!(
                    "RSAES-OAEP (hash {}, MGF1-{}",
                    hash.name(),
                    mgf1_hash.name()
                );
                if !label.is_empty() {
                    s.push_str(&format!(", label {}", hex::encode(label)));
                }
                s.push(')');
                s
            }
        }
    }
}

/// `$body` with `$pad` bound to the RSA padding `$scheme` names:
/// PKCS#1 v1.5, or `Oaep::<H, M>` for the hashes named at run time (every
/// (hash, MGF1 hash) pair is a type of its own).
macro_rules! with_padding {
    ($scheme:expr, |$pad:ident| $body:expr) => {{
        use sha1::Sha1;
        use sha2::{Sha224, Sha256, Sha384, Sha512};
        match $scheme {
            KeyTransportScheme::Pkcs1v15 => {
                let $pad = Pkcs1v15Encrypt;
                $body
            }
            KeyTransportScheme::Oaep {
                hash,
                mgf1_hash,
                label,
            } => {
                let label = label.clone().into_boxed_slice();
                with_padding!(@hash hash, mgf1_hash, label, |$pad| $body;
                    Sha1, Sha224, Sha256, Sha384, Sha512)
            }
        }
    }};
    (@hash $hash:expr, $mgf:expr, $label:expr, |$pad:ident| $body:expr; $($h:ident),*) => {
        match $hash {
            $(OaepHash::$h => with_padding!(@mgf $h, $mgf, $label, |$pad| $body;
                Sha1, Sha224, Sha256, Sha384, Sha512),)*
        }
    };
    (@mgf $h:ident, $mgf:expr, $label:expr, |$pad:ident| $body:expr; $($m:ident),*) => {
        match $mgf {
            $(OaepHash::$m => {
                let $pad = Oaep::<$h, $m>::new_with_mgf_hash_and_label($label);
                $body
            })*
        }
    };
}

/// Encrypt a content key to an RSA public key.
fn rsa_encrypt<R: CryptoRng + ?Sized>(
    key: &RsaPublicKey,
    scheme: &KeyTransportScheme,
    cek: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, EnvelopeError> {
    let fail = |e: rsa::Error| EnvelopeError::Encode(format!("RSA key transport: {e}"));
    with_padding!(scheme, |pad| key.encrypt(rng, pad, cek).map_err(fail))
}

/// An ECDH shared secret Z, and who computed it.
pub type SharedSecret = (Zeroizing<Vec<u8>>, Backend);

/// The private half of key transport and key agreement: the only place a
/// private key is used when opening. A trait so that tests can count its
/// uses.
pub trait PrivateKeyOps {
    /// Decrypt an encrypted content key: `Ok(None)` on any decryption
    /// failure (the caller does not learn why); `Err` only when the key
    /// itself cannot be had (an unreadable or mismatched key file), which
    /// depends on no secret.
    fn decrypt_key(
        &self,
        scheme: &KeyTransportScheme,
        encrypted: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError>;

    /// Which implementation [`PrivateKeyOps::decrypt_key`] uses for
    /// `scheme`: decided from the key size and the parameters, never from
    /// the ciphertext.
    fn backend(&self, _scheme: &KeyTransportScheme) -> Backend {
        Backend::RustCrypto(format!("{RSA_CRATE}, for a bare rsa crate key"))
    }

    /// Static-ephemeral ECDH with the originator's point: the shared
    /// secret Z and who computed it; `Ok(None)` for a key that cannot
    /// agree or a point not on the curve; `Err` as for decrypt_key.
    fn agree(&self, _point: &[u8]) -> Result<Option<SharedSecret>, KeyError> {
        Ok(None)
    }

    /// Which implementation [`PrivateKeyOps::agree`] uses.
    fn agree_backend(&self) -> Backend {
        Backend::RustCrypto("none, for a key that cannot agree".into())
    }

    /// ML-KEM decapsulation of a KEMRecipientInfo's ciphertext: the
    /// shared secret and who computed it; `Ok(None)` for a key that is
    /// not of parameter set `level` or a ciphertext of the wrong length
    /// (a wrong ciphertext of the right length gives a pseudo-random
    /// secret); `Err` as for decrypt_key.
    fn decapsulate(
        &self,
        _level: MlKemLevel,
        _ciphertext: &[u8],
    ) -> Result<Option<SharedSecret>, KeyError> {
        Ok(None)
    }

    /// Which implementation [`PrivateKeyOps::decapsulate`] uses.
    fn kem_backend(&self) -> Backend {
        Backend::RustCrypto("none, for a key that cannot decapsulate".into())
    }
}

impl PrivateKeyOps for Identity {
    fn decapsulate(
        &self,
        level: MlKemLevel,
        ciphertext: &[u8],
    ) -> Result<Option<SharedSecret>, KeyError> {
        PrivateKeyOps::decapsulate(self.private_key()?, level, ciphertext)
    }

    fn kem_backend(&self) -> Backend {
        match self.private_key() {
            Ok(key) => key.key_backend(),
            Err(_) => Backend::RustCrypto("none, since the key could not be read".into()),
        }
    }

    fn agree(&self, point: &[u8]) -> Result<Option<SharedSecret>, KeyError> {
        Ok(self.private_key()?.agree(point))
    }

    fn agree_backend(&self) -> Backend {
        match self.private_key() {
            Ok(key) => key.agree_backend(),
            Err(_) => Backend::RustCrypto("none, since the key could not be read".into()),
        }
    }

    fn decrypt_key(
        &self,
        scheme: &KeyTransportScheme,
        encrypted: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
        self.private_key()?.decrypt_key(scheme, encrypted)
    }

    fn backend(&self, scheme: &KeyTransportScheme) -> Backend {
        match self.private_key() {
            Ok(key) => key.backend(scheme),
            Err(_) => Backend::RustCrypto("none, since the key could not be read".into()),
        }
    }
}

impl PrivateKeyOps for PrivateKey {
    fn decrypt_key(
        &self,
        scheme: &KeyTransportScheme,
        encrypted: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
        // An EC key transports nothing (a KTRI naming its certificate is
        // forged or a mistake): the same uniform failure.
        let Some(public) = self.rsa_public() else {
            return Ok(None);
        };
        // The length is public: refused before any private-key arithmetic.
        if encrypted.len() != public.size() {
            return Ok(None);
        }
        // An RSA private-key operation takes a millisecond or more: a live
        // server's other messages go on meanwhile.
        crate::blocking::offload(|| {
            #[cfg(feature = "aws-lc")]
            if let (Ok(oaep), Some(key)) = (aws_lc_padding(scheme), self.aws_decrypting())
                && self.key_backend() == Backend::AwsLc
            {
                return Ok(aws_lc_decrypt(key, oaep, scheme, encrypted));
            }
            match self.rsa() {
                Some(rsa) => rsa.decrypt_key(scheme, encrypted),
                // The key file itself (not the message) is at fault.
                None => Err(KeyError::Input(
                    "the RSA private key does not parse (its values are inconsistent); check the key file"
                        .into(),
                )),
            }
        })
    }

    fn agree(&self, point: &[u8]) -> Result<Option<SharedSecret>, KeyError> {
        Ok(PrivateKey::agree(self, point))
    }

    fn agree_backend(&self) -> Backend {
        self.key_backend()
    }

    fn decapsulate(
        &self,
        level: MlKemLevel,
        ciphertext: &[u8],
    ) -> Result<Option<SharedSecret>, KeyError> {
        Ok(self
            .ml_kem()
            .filter(|k| k.level() == level)
            .and_then(|k| k.decapsulate(ciphertext)))
    }

    fn kem_backend(&self) -> Backend {
        self.key_backend()
    }

    fn backend(&self, scheme: &KeyTransportScheme) -> Backend {
        match self.key_backend() {
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc => match aws_lc_padding(scheme) {
                Ok(_) => Backend::AwsLc,
                Err(why) => Backend::RustCrypto(why),
            },
            other => {
                let _ = scheme;
                other
            }
        }
    }
}

/// The aws-lc-rs OAEP algorithm for `scheme` (`None` for PKCS#1 v1.5), or
/// why aws-lc-rs cannot decrypt it.
#[cfg(feature = "aws-lc")]
fn aws_lc_padding(
    scheme: &KeyTransportScheme,
) -> Result<Option<&'static aws_lc_rs::rsa::OaepAlgorithm>, String> {
    use aws_lc_rs::rsa::{
        OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512,
    };
    match scheme {
        KeyTransportScheme::Pkcs1v15 => Ok(None),
        KeyTransportScheme::Oaep {
            hash, mgf1_hash, ..
        } if hash != mgf1_hash => Err(format!(
            "{RSA_CRATE}, since aws-lc-rs takes OAEP only with the MGF1 hash equal to the hash, here {} with MGF1 {}",
            hash.name(),
            mgf1_hash.name()
        )),
        KeyTransportScheme::Oaep { hash, .. } => match hash {
            OaepHash::Sha1 => Ok(Some(&OAEP_SHA1_MGF1SHA1)),
            OaepHash::Sha256 => Ok(Some(&OAEP_SHA256_MGF1SHA256)),
            OaepHash::Sha384 => Ok(Some(&OAEP_SHA384_MGF1SHA384)),
            OaepHash::Sha512 => Ok(Some(&OAEP_SHA512_MGF1SHA512)),
            OaepHash::Sha224 => Err(format!(
                "{RSA_CRATE}, since aws-lc-rs has no OAEP with SHA-224"
            )),
        },
    }
}

/// Decrypt with aws-lc-rs: `None` on any failure, whatever its cause.
#[cfg(feature = "aws-lc")]
fn aws_lc_decrypt(
    key: &aws_lc_rs::rsa::PrivateDecryptingKey,
    oaep: Option<&'static aws_lc_rs::rsa::OaepAlgorithm>,
    scheme: &KeyTransportScheme,
    encrypted: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    use aws_lc_rs::rsa::{OaepPrivateDecryptingKey, Pkcs1PrivateDecryptingKey};
    let mut out = Zeroizing::new(vec![0u8; key.key_size_bytes()]);
    let len = match (oaep, scheme) {
        (Some(alg), KeyTransportScheme::Oaep { label, .. }) => {
            let key = OaepPrivateDecryptingKey::new(key.clone()).ok()?;
            let label = (!label.is_empty()).then_some(label.as_slice());
            key.decrypt(alg, encrypted, &mut out, label).ok()?.len()
        }
        _ => {
            let key = Pkcs1PrivateDecryptingKey::new(key.clone()).ok()?;
            key.decrypt(encrypted, &mut out).ok()?.len()
        }
    };
    out.truncate(len);
    Some(out)
}

impl PrivateKeyOps for RsaPrivateKey {
    fn decrypt_key(
        &self,
        scheme: &KeyTransportScheme,
        encrypted: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
        // A ciphertext of the wrong length is refused by `rsa` before any
        // private-key arithmetic; that depends only on public data.
        if encrypted.len() != self.size() {
            return Ok(None);
        }
        // PKCS#1 v1.5 rejects implicitly: invalid padding yields a synthetic key.
        let out = with_padding!(scheme, |pad| self.decrypt(pad, encrypted));
        Ok(out.ok().map(Zeroizing::new))
    }
}

/// A key I can open with: an identity (RSA, EC P-256 or ML-KEM), a PSK,
/// a password or a session key.
#[derive(Clone, Copy)]
pub enum RecipientKey<'a> {
    /// A certificate and the private key that belongs to it.
    Cert {
        /// The certificate the RecipientInfo names.
        cert: &'a Cert,
        /// Its private key (used only once a RecipientInfo names the certificate).
        key: &'a dyn PrivateKeyOps,
    },
    /// A private key whose certificate is not at hand yet, known by its
    /// SubjectKeyIdentifier alone (RFC 5280 §4.2.1.2 method 1, as
    /// sipseal's CA writes it: [`ski_of`]): a registrant opening the 200
    /// OK that brings its new certificate (docs/SPEC.md §6). Only RSA key
    /// transport and P-256 key agreement naming that identifier.
    Own {
        /// The SubjectKeyIdentifier of the key's certificate.
        ski: &'a [u8],
        /// The private key.
        key: &'a dyn PrivateKeyOps,
    },
    /// A pre-shared key-encryption key.
    Psk(&'a Psk),
    /// A password: it has no identifier, so it goes with any
    /// PasswordRecipientInfo (see [`super::Envelope::open`]).
    Password(&'a Password),
    /// A session key (docs/SPEC.md §3.2): kekid = the session reference.
    Session {
        /// The session reference (the kekid).
        reference: &'a [u8],
        /// The session KEK.
        kek: &'a [u8],
        /// Whether it is a replaced key still inside its grace time.
        previous: bool,
    },
}

impl RecipientKey<'_> {
    /// Whether `ri` is addressed to this key, by identifiers only.
    pub fn matches(&self, ri: &RecipientInfo) -> bool {
        match self {
            RecipientKey::Cert { cert, .. } => addressed_to_cert(ri, cert),
            RecipientKey::Own { ski, .. } => addressed_to_ski(ri, ski),
            RecipientKey::Psk(psk) => addressed_to_kek(ri, &psk.id_bytes()),
            RecipientKey::Password(_) => matches!(ri, RecipientInfo::Pwri(_)),
            RecipientKey::Session { reference, .. } => addressed_to_kek(ri, reference),
        }
    }

    /// Who this key is, for messages.
    pub fn describe(&self) -> String {
        match self {
            RecipientKey::Cert { cert, .. } => cert.name(),
            RecipientKey::Own { ski, .. } => format!("the key of ski:{}", hex::encode(ski)),
            RecipientKey::Psk(psk) => format!("PSK {}", psk.id),
            RecipientKey::Password(p) => p.describe(),
            RecipientKey::Session {
                reference,
                previous,
                ..
            } => format!(
                "session key {}{}",
                hex::encode(reference),
                if *previous { " (previous)" } else { "" }
            ),
        }
    }

    /// Whose key it is, for naming its state: the certificate's name, or
    /// the PSK's `uri` (else its id).
    pub fn owner(&self) -> String {
        match self {
            RecipientKey::Psk(Psk { uri: Some(uri), .. }) => uri.clone(),
            RecipientKey::Password(Password { uri: Some(uri), .. }) => uri.clone(),
            other => other.describe(),
        }
    }

    /// Which implementation opens `ri` with this key, when a private key
    /// is involved (`None` for key wrap with a PSK or session key).
    pub fn backend(&self, ri: &RecipientInfo) -> Option<Backend> {
        match (self, ri) {
            (
                RecipientKey::Cert { key, .. } | RecipientKey::Own { key, .. },
                RecipientInfo::Ktri(k),
            ) => {
                let scheme = KeyTransportScheme::decode(&k.key_enc_alg).ok()?;
                Some(key.backend(&scheme))
            }
            (
                RecipientKey::Cert { key, .. } | RecipientKey::Own { key, .. },
                RecipientInfo::Kari(_),
            ) => Some(key.agree_backend()),
            (RecipientKey::Cert { key, .. }, RecipientInfo::Ori(_)) => Some(key.kem_backend()),
            _ => None,
        }
    }

    /// Recover the content key from a matching RecipientInfo.
    ///
    /// Every failure — wrong padding, wrong length, failed key unwrap —
    /// gives a random key of the expected length instead, so the failure
    /// surfaces later, and identically, as the content check (RFC 3218 §2.3.2).
    pub fn unwrap_cek<R: CryptoRng + ?Sized>(
        &self,
        ri: &RecipientInfo,
        cek_len: usize,
        rng: &mut R,
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let mut decoy = Zeroizing::new(vec![0u8; cek_len]);
        rng.fill_bytes(&mut decoy);
        let recovered = match (self, ri) {
            (
                RecipientKey::Cert { key, .. } | RecipientKey::Own { key, .. },
                RecipientInfo::Ktri(k),
            ) => {
                let scheme = KeyTransportScheme::decode(&k.key_enc_alg)?;
                key.decrypt_key(&scheme, k.enc_key.as_bytes())
                    .map_err(|e| EnvelopeError::Key(e.to_string()))?
            }
            (RecipientKey::Own { key, ski }, RecipientInfo::Kari(k)) => {
                super::kari::KeyAgreeScheme::decode(&k.key_enc_alg)?;
                let point = super::kari::originator_point(k)?;
                match key
                    .agree(point)
                    .map_err(|e| EnvelopeError::Key(e.to_string()))?
                {
                    Some((z, _)) => {
                        super::kari::unwrap_where(k, &|rid| super::kari::rid_has_ski(rid, ski), &z)?
                    }
                    None => None,
                }
            }
            (RecipientKey::Cert { key, cert }, RecipientInfo::Kari(k)) => {
                // Parameters first (public), then the one private-key
                // operation; an unusable point fails like a wrong key.
                super::kari::KeyAgreeScheme::decode(&k.key_enc_alg)?;
                let point = super::kari::originator_point(k)?;
                match key
                    .agree(point)
                    .map_err(|e| EnvelopeError::Key(e.to_string()))?
                {
                    Some((z, _)) => super::kari::unwrap_for(k, cert, &z)?,
                    None => None,
                }
            }
            (RecipientKey::Cert { key, .. }, RecipientInfo::Ori(_)) => {
                // Parameters first (public), then the one private-key
                // operation, which rejects implicitly.
                let (k, level) = super::kemri::ciphertext(ri)?;
                match key
                    .decapsulate(level, k.kemct.as_bytes())
                    .map_err(|e| EnvelopeError::Key(e.to_string()))?
                {
                    Some((ss, _)) => super::kemri::unwrap_with(&k, &ss)?,
                    None => None,
                }
            }
            (RecipientKey::Psk(psk), RecipientInfo::Kekri(k)) => {
                kek_unwrap(&k.key_enc_alg, &psk.key, k.encrypted_key.as_bytes())?
            }
            (RecipientKey::Session { kek, .. }, RecipientInfo::Kekri(k)) => {
                kek_unwrap(&k.key_enc_alg, kek, k.encrypted_key.as_bytes())?
            }
            (RecipientKey::Password(p), RecipientInfo::Pwri(k)) => super::pwri::unwrap(k, p)?,
            _ => None,
        };
        Ok(fit_cek(recovered, decoy))
    }
}

/// The recovered key when it has the decoy's length, else the decoy
/// (a random key of the right length), chosen without a branch on it.
pub(super) fn fit_cek(
    recovered: Option<Zeroizing<Vec<u8>>>,
    decoy: Zeroizing<Vec<u8>>,
) -> Zeroizing<Vec<u8>> {
    let Some(recovered) = recovered else {
        return decoy;
    };
    let good = (recovered.len() as u64).ct_eq(&(decoy.len() as u64));
    let mut out = decoy;
    for (i, byte) in out.iter_mut().enumerate() {
        let candidate = recovered.get(i).copied().unwrap_or(0);
        byte.conditional_assign(&candidate, good);
    }
    out
}

impl RecipientKey<'_> {}

/// Whether `ri` is a KTRI, a KARI with a RecipientEncryptedKey, or a
/// KEMRecipientInfo addressed to `cert` (identifiers only).
pub fn addressed_to_cert(ri: &RecipientInfo, cert: &Cert) -> bool {
    match ri {
        RecipientInfo::Ktri(k) => super::rid_matches(&k.rid, cert),
        RecipientInfo::Kari(k) => k
            .recipient_enc_keys
            .iter()
            .any(|r| super::kari::rid_names(&r.rid, cert)),
        RecipientInfo::Ori(_) => super::kemri::addressed_to(ri, cert),
        _ => false,
    }
}

/// Whether `ri` is a KTRI or a KARI with a RecipientEncryptedKey naming
/// the SubjectKeyIdentifier `ski`.
pub fn addressed_to_ski(ri: &RecipientInfo, ski: &[u8]) -> bool {
    match ri {
        RecipientInfo::Ktri(k) => {
            matches!(&k.rid, RecipientIdentifier::SubjectKeyIdentifier(s) if s.0.as_bytes() == ski)
        }
        RecipientInfo::Kari(k) => k
            .recipient_enc_keys
            .iter()
            .any(|r| super::kari::rid_has_ski(&r.rid, ski)),
        _ => false,
    }
}

/// The SubjectKeyIdentifier sipseal's CA writes for a public key (RFC
/// 5280 §4.2.1.2 method 1: the SHA-1 of the subjectPublicKey bits).
pub fn ski_of(spki: &x509_cert::spki::SubjectPublicKeyInfoOwned) -> Result<Vec<u8>, EnvelopeError> {
    let der = spki
        .to_der()
        .map_err(|e| EnvelopeError::Encode(e.to_string()))?;
    let spki_ref = x509_cert::spki::SubjectPublicKeyInfoRef::from_der(&der)
        .map_err(|e| EnvelopeError::Encode(e.to_string()))?;
    let ski = SubjectKeyIdentifier::try_from(spki_ref)
        .map_err(|e| EnvelopeError::Encode(e.to_string()))?;
    Ok(ski.0.as_bytes().to_vec())
}

/// Whether `ri` is a KEKRI with key identifier `id`.
pub fn addressed_to_kek(ri: &RecipientInfo, id: &[u8]) -> bool {
    matches!(ri, RecipientInfo::Kekri(k) if k.kek_id.kek_identifier.as_bytes() == id)
}

/// Build the RecipientInfo for a certificate.
pub fn ktri_for<R: CryptoRng + ?Sized>(
    cert: &Cert,
    padding: RsaPadding,
    cek: &[u8],
    rng: &mut R,
) -> Result<RecipientInfo, EnvelopeError> {
    let public = cert
        .rsa_public_key()
        .map_err(|e| EnvelopeError::Recipient(e.to_string()))?;
    let scheme = KeyTransportScheme::for_padding(padding);
    let encrypted = rsa_encrypt(&public, &scheme, cek, rng)?;
    let enc = |e: der::Error| EnvelopeError::Encode(e.to_string());
    let (version, rid) = match cert.ski() {
        Some(ski) => (
            CmsVersion::V2,
            RecipientIdentifier::SubjectKeyIdentifier(SubjectKeyIdentifier(
                OctetString::new(ski).map_err(enc)?,
            )),
        ),
        None => {
            let tbs = cert.cert.tbs_certificate();
            (
                CmsVersion::V0,
                RecipientIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                    issuer: tbs.issuer().clone(),
                    serial_number: tbs.serial_number().clone(),
                }),
            )
        }
    };
    Ok(RecipientInfo::Ktri(KeyTransRecipientInfo {
        version,
        rid,
        key_enc_alg: scheme.algorithm()?,
        enc_key: OctetString::new(encrypted).map_err(enc)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oaep_params_round_trip_every_hash_pair() {
        for hash in [OaepHash::Sha1, OaepHash::Sha256, OaepHash::Sha512] {
            for mgf1_hash in [OaepHash::Sha1, OaepHash::Sha256, OaepHash::Sha384] {
                for label in [vec![], b"L".to_vec()] {
                    let s = KeyTransportScheme::Oaep {
                        hash,
                        mgf1_hash,
                        label,
                    };
                    assert_eq!(
                        KeyTransportScheme::decode(&s.algorithm().unwrap()).unwrap(),
                        s
                    );
                }
            }
        }
        // Absent parameters mean SHA-1 everywhere.
        let bare = AlgorithmIdentifierOwned {
            oid: rfc5912::ID_RSAES_OAEP,
            parameters: None,
        };
        assert_eq!(
            KeyTransportScheme::decode(&bare).unwrap(),
            KeyTransportScheme::Oaep {
                hash: OaepHash::Sha1,
                mgf1_hash: OaepHash::Sha1,
                label: vec![]
            }
        );
    }

    #[test]
    fn default_oaep_params_are_written_out() {
        let alg = KeyTransportScheme::for_padding(RsaPadding::Oaep)
            .algorithm()
            .unwrap();
        let der = alg.parameters.unwrap().to_der().unwrap();
        // [0] sha256 and [1] mgf1(sha256) present; [2] (empty label) is the default.
        assert_eq!(der[0], 0x30);
        assert!(der.windows(2).any(|w| w == [0xa0, 0x0d]));
        assert!(der.windows(2).any(|w| w == [0xa1, 0x1a]));
        assert!(!der.contains(&0xa2));
    }
}
