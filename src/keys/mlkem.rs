//! ML-KEM keys (FIPS 203) for KEMRecipientInfo recipients (RFC 9629,
//! RFC 9936), in the forms of RFC 9935.
//!
//! ```text
//! id-alg-ml-kem-512  OBJECT IDENTIFIER ::= { 2 16 840 1 101 3 4 4 1 }
//! id-alg-ml-kem-768  OBJECT IDENTIFIER ::= { 2 16 840 1 101 3 4 4 2 }
//! id-alg-ml-kem-1024 OBJECT IDENTIFIER ::= { 2 16 840 1 101 3 4 4 3 }
//!
//! -- the privateKey OCTET STRING of a PKCS#8 OneAsymmetricKey holds
//! ML-KEM-PrivateKey ::= CHOICE {
//!   seed [0] OCTET STRING (SIZE (64)),       -- d || z, what sipseal writes
//!   expandedKey OCTET STRING,                -- dk of FIPS 203
//!   both SEQUENCE {
//!     seed OCTET STRING (SIZE (64)),
//!     expandedKey OCTET STRING } }
//! ```
//!
//! The public key of a certificate is the encapsulation key itself, the
//! whole BIT STRING. KEM keys cannot sign: an ML-KEM identity is issued by
//! a CA (`keys generate --type ml-kem-768 --ca DIR`).
//!
//! Encapsulation (sending) uses the `ml-kem` crate with the caller's RNG,
//! so `--seed` stays reproducible; decapsulation (receiving) goes through
//! aws-lc-rs with the `aws-lc` feature, else the `ml-kem` crate. Both are
//! constant-time and reject implicitly: a wrong ciphertext gives a
//! pseudo-random shared secret, never an error.

#[cfg(feature = "aws-lc")]
use std::sync::OnceLock;

use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Decode, Encode, Sequence};
use rand::CryptoRng;
use zeroize::Zeroizing;

use super::backend::Backend;

/// An ML-KEM parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MlKemLevel {
    /// ML-KEM-512 (NIST category 1).
    MlKem512,
    /// ML-KEM-768 (category 3), what sipseal generates.
    MlKem768,
    /// ML-KEM-1024 (category 5).
    MlKem1024,
}

/// `$body` with `$p` naming the `ml-kem` crate's parameter set for `$level`
/// (each is a type of its own).
macro_rules! with_level {
    ($level:expr, |$p:ident| $body:expr) => {
        match $level {
            MlKemLevel::MlKem512 => {
                type $p = ml_kem::MlKem512;
                $body
            }
            MlKemLevel::MlKem768 => {
                type $p = ml_kem::MlKem768;
                $body
            }
            MlKemLevel::MlKem1024 => {
                type $p = ml_kem::MlKem1024;
                $body
            }
        }
    };
}

impl MlKemLevel {
    /// Every parameter set, smallest first.
    pub const ALL: [MlKemLevel; 3] = [
        MlKemLevel::MlKem512,
        MlKemLevel::MlKem768,
        MlKemLevel::MlKem1024,
    ];

    /// Its algorithm identifier (parameters absent, RFC 9935).
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            MlKemLevel::MlKem512 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.4.1"),
            MlKemLevel::MlKem768 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.4.2"),
            MlKemLevel::MlKem1024 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.4.3"),
        }
    }

    /// The parameter set an algorithm identifier names.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<MlKemLevel> {
        MlKemLevel::ALL.into_iter().find(|l| l.oid() == *oid)
    }

    /// Its name (`ML-KEM-768`).
    pub fn name(self) -> &'static str {
        match self {
            MlKemLevel::MlKem512 => "ML-KEM-512",
            MlKemLevel::MlKem768 => "ML-KEM-768",
            MlKemLevel::MlKem1024 => "ML-KEM-1024",
        }
    }

    /// Length of an encapsulation (public) key.
    pub fn public_len(self) -> usize {
        match self {
            MlKemLevel::MlKem512 => 800,
            MlKemLevel::MlKem768 => 1184,
            MlKemLevel::MlKem1024 => 1568,
        }
    }

    /// Length of a ciphertext.
    pub fn ciphertext_len(self) -> usize {
        match self {
            MlKemLevel::MlKem512 => 768,
            MlKemLevel::MlKem768 => 1088,
            MlKemLevel::MlKem1024 => 1568,
        }
    }

    /// Length of an expanded decapsulation key.
    fn expanded_len(self) -> usize {
        match self {
            MlKemLevel::MlKem512 => 1632,
            MlKemLevel::MlKem768 => 2400,
            MlKemLevel::MlKem1024 => 3168,
        }
    }

    /// The key-encryption key length sipseal writes (RFC 9936:
    /// AES-128 wrap with ML-KEM-512, AES-256 wrap above).
    pub fn kek_len(self) -> usize {
        match self {
            MlKemLevel::MlKem512 => 16,
            _ => 32,
        }
    }

    #[cfg(feature = "aws-lc")]
    fn aws_lc(self) -> &'static aws_lc_rs::kem::Algorithm {
        match self {
            MlKemLevel::MlKem512 => &aws_lc_rs::kem::ML_KEM_512,
            MlKemLevel::MlKem768 => &aws_lc_rs::kem::ML_KEM_768,
            MlKemLevel::MlKem1024 => &aws_lc_rs::kem::ML_KEM_1024,
        }
    }
}

/// An ML-KEM private key: the expanded decapsulation key (what both
/// implementations decapsulate with) and the encapsulation key.
pub struct MlKemKey {
    level: MlKemLevel,
    /// The 64-byte seed, when the key came as one (what is written back).
    seed: Option<Zeroizing<[u8; 64]>>,
    expanded: Zeroizing<Vec<u8>>,
    public: Vec<u8>,
    #[cfg(feature = "aws-lc")]
    aws: OnceLock<Option<aws_lc_rs::kem::DecapsulationKey>>,
}

#[derive(Sequence)]
struct Both {
    seed: OctetString,
    expanded_key: OctetString,
}

/// Why an ML-KEM private key was refused.
fn refused(why: &str) -> String {
    format!("an ML-KEM private key, but {why}")
}

impl MlKemKey {
    /// The key a 64-byte seed (d || z) expands to.
    pub fn from_seed(level: MlKemLevel, seed: &[u8; 64]) -> MlKemKey {
        #[allow(deprecated)]
        let (expanded, public) = with_level!(level, |P| {
            use ml_kem::{ExpandedKeyEncoding, KeyExport};
            let dk = ml_kem::DecapsulationKey::<P>::from_seed((*seed).into());
            (
                Zeroizing::new(dk.to_expanded_bytes().to_vec()),
                dk.encapsulation_key().to_bytes().to_vec(),
            )
        });
        MlKemKey {
            level,
            seed: Some(Zeroizing::new(*seed)),
            expanded,
            public,
            #[cfg(feature = "aws-lc")]
            aws: OnceLock::new(),
        }
    }

    /// A fresh key from `rng` (64 bytes of seed).
    pub fn generate<R: CryptoRng + ?Sized>(level: MlKemLevel, rng: &mut R) -> MlKemKey {
        let mut seed = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(&mut seed[..]);
        MlKemKey::from_seed(level, &seed)
    }

    /// From an expanded decapsulation key, checked as FIPS 203 §7.3 asks
    /// (the hash of the encapsulation key it holds).
    fn from_expanded(level: MlKemLevel, expanded: &[u8]) -> Result<MlKemKey, String> {
        if expanded.len() != level.expanded_len() {
            return Err(refused(&format!(
                "its expanded key has {} bytes where {} has {}",
                expanded.len(),
                level.name(),
                level.expanded_len()
            )));
        }
        #[allow(deprecated)]
        let public = with_level!(level, |P| {
            use ml_kem::{ExpandedKeyEncoding, KeyExport};
            let array = ml_kem::ExpandedDecapsulationKey::<P>::try_from(expanded)
                .map_err(|_| refused("its expanded key has the wrong length"))?;
            let dk = ml_kem::DecapsulationKey::<P>::from_expanded_bytes(&array)
                .map_err(|_| refused("its expanded key fails the FIPS 203 check"))?;
            dk.encapsulation_key().to_bytes().to_vec()
        });
        Ok(MlKemKey {
            level,
            seed: None,
            expanded: Zeroizing::new(expanded.to_vec()),
            public,
            #[cfg(feature = "aws-lc")]
            aws: OnceLock::new(),
        })
    }

    /// From a PKCS#8 OneAsymmetricKey: `None` when it is not an ML-KEM
    /// key at all, `Err` when it is one that cannot be used.
    pub fn from_pkcs8_der(der: &[u8]) -> Option<Result<MlKemKey, String>> {
        use rsa::pkcs8::PrivateKeyInfoRef;
        let info = PrivateKeyInfoRef::from_der(der).ok()?;
        let level = MlKemLevel::from_oid(&info.algorithm.oid)?;
        if info.algorithm.parameters.is_some() {
            return Some(Err(refused("its algorithm identifier has parameters")));
        }
        Some(MlKemKey::from_private_key(
            level,
            info.private_key.as_bytes(),
        ))
    }

    /// From the ML-KEM-PrivateKey CHOICE (RFC 9935).
    fn from_private_key(level: MlKemLevel, bytes: &[u8]) -> Result<MlKemKey, String> {
        let seed_of = |s: &[u8]| -> Result<[u8; 64], String> {
            s.try_into()
                .map_err(|_| refused(&format!("its seed has {} bytes, not 64", s.len())))
        };
        match bytes.first() {
            // seed [0] IMPLICIT OCTET STRING (SIZE (64))
            Some(0x80) => {
                let seed = match bytes {
                    [0x80, 0x40, rest @ ..] => seed_of(rest)?,
                    _ => return Err(refused("its seed is not 64 bytes")),
                };
                Ok(MlKemKey::from_seed(level, &seed))
            }
            Some(0x04) => {
                let expanded = OctetString::from_der(bytes)
                    .map_err(|e| refused(&format!("its expandedKey does not parse ({e})")))?;
                MlKemKey::from_expanded(level, expanded.as_bytes())
            }
            Some(0x30) => {
                let both = Both::from_der(bytes).map_err(|e| {
                    refused(&format!("its seed and expandedKey do not parse ({e})"))
                })?;
                let key = MlKemKey::from_seed(level, &seed_of(both.seed.as_bytes())?);
                // RFC 9935: both forms must be the same key.
                if key.expanded.as_slice() != both.expanded_key.as_bytes() {
                    return Err(refused(
                        "its seed and its expandedKey are different keys (RFC 9935)",
                    ));
                }
                Ok(key)
            }
            _ => Err(refused("its privateKey is none of seed, expandedKey, both")),
        }
    }

    /// The parameter set.
    pub fn level(&self) -> MlKemLevel {
        self.level
    }

    /// The encapsulation key, as a certificate carries it.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// PKCS#8 DER in the seed form (RFC 9935); `None` for a key read
    /// from an expanded key alone, which has no seed.
    pub fn to_pkcs8_der(&self) -> Option<Zeroizing<Vec<u8>>> {
        let seed = self.seed.as_ref()?;
        let mut private = Zeroizing::new(Vec::with_capacity(66));
        private.extend_from_slice(&[0x80, 0x40]);
        private.extend_from_slice(&seed[..]);
        let info = rsa::pkcs8::PrivateKeyInfoRef::new(
            x509_cert::spki::AlgorithmIdentifier {
                oid: self.level.oid(),
                parameters: None,
            },
            der::asn1::OctetStringRef::new(&private).ok()?,
        );
        info.to_der().ok().map(Zeroizing::new)
    }

    /// Which implementation decapsulates.
    pub fn backend(&self) -> Backend {
        #[cfg(feature = "aws-lc")]
        {
            Backend::AwsLc
        }
        #[cfg(not(feature = "aws-lc"))]
        Backend::RustCrypto(
            "the ml-kem crate, since sipseal was built without the aws-lc feature".into(),
        )
    }

    /// Decapsulate: the shared secret and who computed it; `None` for a
    /// ciphertext of the wrong length (public). A wrong ciphertext of the
    /// right length gives a pseudo-random secret (implicit rejection).
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Option<(Zeroizing<Vec<u8>>, Backend)> {
        if ciphertext.len() != self.level.ciphertext_len() {
            return None;
        }
        #[cfg(feature = "aws-lc")]
        {
            let key = self
                .aws
                .get_or_init(|| {
                    aws_lc_rs::kem::DecapsulationKey::new(self.level.aws_lc(), &self.expanded).ok()
                })
                .as_ref()?;
            let ss = key
                .decapsulate(aws_lc_rs::kem::Ciphertext::from(ciphertext))
                .ok()?;
            Some((Zeroizing::new(ss.as_ref().to_vec()), Backend::AwsLc))
        }
        #[cfg(not(feature = "aws-lc"))]
        {
            #[allow(deprecated)]
            let ss = with_level!(self.level, |P| {
                use ml_kem::{Decapsulate, ExpandedKeyEncoding};
                let array =
                    ml_kem::ExpandedDecapsulationKey::<P>::try_from(&self.expanded[..]).ok()?;
                let dk = ml_kem::DecapsulationKey::<P>::from_expanded_bytes(&array).ok()?;
                dk.decapsulate_slice(ciphertext).ok()?.to_vec()
            });
            Some((Zeroizing::new(ss), self.backend()))
        }
    }
}

/// Encapsulate to an encapsulation key with randomness from `rng`: the
/// ciphertext and the shared secret.
pub fn encapsulate<R: CryptoRng + ?Sized>(
    level: MlKemLevel,
    public: &[u8],
    rng: &mut R,
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), String> {
    if public.len() != level.public_len() {
        return Err(format!(
            "its {} public key has {} bytes, not {}",
            level.name(),
            public.len(),
            level.public_len()
        ));
    }
    with_level!(level, |P| {
        use ml_kem::{Encapsulate, TryKeyInit};
        let ek = ml_kem::EncapsulationKey::<P>::new_from_slice(public).map_err(|_| {
            format!(
                "its {} public key is not valid (FIPS 203 §7.2)",
                level.name()
            )
        })?;
        let (ct, ss) = ek.encapsulate_with_rng(rng);
        Ok((ct.to_vec(), Zeroizing::new(ss.to_vec())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9935 Appendix C.1: the seed 00 01 .. 3f in the seed form.
    const RFC9935_512_SEED: &str = "MFQCAQAwCwYJYIZIAWUDBAQBBEKAQAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn seed() -> [u8; 64] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn rfc9935_seed_form_reads_and_writes_back_byte_for_byte() {
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(RFC9935_512_SEED)
            .unwrap();
        let key = MlKemKey::from_pkcs8_der(&der).unwrap().unwrap();
        assert_eq!(key.level(), MlKemLevel::MlKem512);
        assert_eq!(key.public_key().len(), 800);
        assert_eq!(key.to_pkcs8_der().unwrap().as_slice(), der.as_slice());
    }

    #[test]
    fn the_three_forms_are_one_key_and_inconsistent_both_is_refused() {
        let key = MlKemKey::from_seed(MlKemLevel::MlKem768, &seed());
        let expanded = OctetString::new(key.expanded.to_vec())
            .unwrap()
            .to_der()
            .unwrap();
        let from_expanded = MlKemKey::from_private_key(MlKemLevel::MlKem768, &expanded).unwrap();
        assert_eq!(from_expanded.public_key(), key.public_key());
        assert!(from_expanded.to_pkcs8_der().is_none());
        let both = |seed: [u8; 64]| {
            Both {
                seed: OctetString::new(seed.to_vec()).unwrap(),
                expanded_key: OctetString::new(key.expanded.to_vec()).unwrap(),
            }
            .to_der()
            .unwrap()
        };
        let from_both = MlKemKey::from_private_key(MlKemLevel::MlKem768, &both(seed())).unwrap();
        assert_eq!(from_both.public_key(), key.public_key());
        let mut other = seed();
        other[63] ^= 1;
        let err = MlKemKey::from_private_key(MlKemLevel::MlKem768, &both(other))
            .err()
            .unwrap();
        assert!(err.contains("different keys"), "{err}");
        // An expanded key of another parameter set, and a short seed.
        assert!(MlKemKey::from_private_key(MlKemLevel::MlKem512, &expanded).is_err());
        assert!(MlKemKey::from_private_key(MlKemLevel::MlKem512, &[0x80, 0x20, 0, 0]).is_err());
    }

    #[test]
    fn encapsulation_and_decapsulation_agree_at_every_level() {
        let mut rng = <rand::rngs::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(9);
        for level in MlKemLevel::ALL {
            let key = MlKemKey::generate(level, &mut rng);
            let (ct, ss) = encapsulate(level, key.public_key(), &mut rng).unwrap();
            assert_eq!(ct.len(), level.ciphertext_len());
            let (got, backend) = key.decapsulate(&ct).unwrap();
            assert_eq!(got.as_slice(), ss.as_slice(), "{}", level.name());
            assert_eq!(backend, key.backend());
            // Implicit rejection: a changed ciphertext gives another
            // secret, not an error; a wrong length gives nothing.
            let mut bad = ct.clone();
            bad[0] ^= 1;
            let (other, _) = key.decapsulate(&bad).unwrap();
            assert_ne!(other.as_slice(), ss.as_slice());
            assert!(key.decapsulate(&ct[1..]).is_none());
        }
        // A public key of the wrong size is refused before any arithmetic.
        let key = MlKemKey::generate(MlKemLevel::MlKem768, &mut rng);
        assert!(encapsulate(MlKemLevel::MlKem512, key.public_key(), &mut rng).is_err());
    }
}
