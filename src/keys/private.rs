//! A private key and the implementation that performs its operations.
//!
//! Receiving-side private-key operations — RSA decryption and PKCS#1 v1.5
//! signing — go through aws-lc-rs when the `aws-lc` feature is on (the
//! default build): constant-time and as fast as OpenSSL. The `rsa` crate
//! performs what aws-lc-rs cannot take (keys outside 2048–8192 bits, OAEP
//! whose MGF1 hash differs from its hash), what must draw from the
//! caller's RNG so that deterministic mode stays reproducible (PSS salts),
//! and everything in a build without the feature. Which one ran is a
//! [`Backend`], decided from public data only (the key size and the
//! algorithm parameters), never from a decryption's outcome.

use std::fmt;
#[cfg(feature = "aws-lc")]
use std::sync::OnceLock;

use rsa::RsaPrivateKey;
use rsa::traits::PublicKeyParts;
#[cfg(feature = "aws-lc")]
use zeroize::Zeroizing;

/// Which implementation performs a private-key operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// aws-lc-rs (constant-time).
    AwsLc,
    /// The pure-Rust `rsa` crate, and why.
    RustCrypto(String),
}

impl Backend {
    /// A note for reports when the operation did not go through aws-lc-rs.
    pub fn note(&self, what: &str) -> Option<String> {
        match self {
            Backend::AwsLc => None,
            Backend::RustCrypto(why) => Some(format!(
                "{what} by the pure-Rust rsa crate (not constant-time, RUSTSEC-2023-0071): {why}"
            )),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::AwsLc => f.write_str("aws-lc-rs"),
            Backend::RustCrypto(why) => write!(f, "rsa crate ({why})"),
        }
    }
}

/// An RSA private key. The aws-lc-rs forms are built from it on first use,
/// each at most once per process.
pub struct PrivateKey {
    rsa: RsaPrivateKey,
    #[cfg(feature = "aws-lc")]
    pkcs8: Zeroizing<Vec<u8>>,
    #[cfg(feature = "aws-lc")]
    decrypting: OnceLock<Option<aws_lc_rs::rsa::PrivateDecryptingKey>>,
    #[cfg(feature = "aws-lc")]
    signing: OnceLock<Option<aws_lc_rs::signature::RsaKeyPair>>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(RSA-{})", self.bits())
    }
}

/// Key sizes aws-lc-rs takes.
#[cfg(feature = "aws-lc")]
const AWS_LC_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

impl PrivateKey {
    /// Wrap a parsed RSA key.
    pub fn new(rsa: RsaPrivateKey) -> PrivateKey {
        #[cfg(feature = "aws-lc")]
        let pkcs8 = {
            use rsa::pkcs8::EncodePrivateKey;
            // Encoding a key just parsed cannot fail; if it did, the key
            // would only lose the aws-lc-rs path (an empty PKCS#8 is refused).
            rsa.to_pkcs8_der()
                .map(|d| Zeroizing::new(d.as_bytes().to_vec()))
                .unwrap_or_default()
        };
        PrivateKey {
            rsa,
            #[cfg(feature = "aws-lc")]
            pkcs8,
            #[cfg(feature = "aws-lc")]
            decrypting: OnceLock::new(),
            #[cfg(feature = "aws-lc")]
            signing: OnceLock::new(),
        }
    }

    /// The `rsa` crate's key: the public half, and the pure-Rust path.
    pub fn rsa(&self) -> &RsaPrivateKey {
        &self.rsa
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.rsa.n().bits() as usize
    }

    /// The modulus size in bytes (= a ciphertext's or signature's length).
    pub fn size(&self) -> usize {
        self.rsa.size()
    }

    /// Whether aws-lc-rs can take this key at all, and if not why.
    pub fn key_backend(&self) -> Backend {
        #[cfg(feature = "aws-lc")]
        {
            if AWS_LC_BITS.contains(&self.bits()) {
                Backend::AwsLc
            } else {
                Backend::RustCrypto(format!(
                    "aws-lc-rs takes RSA keys of 2048 to 8192 bits, this one has {}",
                    self.bits()
                ))
            }
        }
        #[cfg(not(feature = "aws-lc"))]
        Backend::RustCrypto("built without the aws-lc feature".into())
    }

    /// The aws-lc-rs decryption key, when the key size allows it.
    #[cfg(feature = "aws-lc")]
    pub fn aws_decrypting(&self) -> Option<&aws_lc_rs::rsa::PrivateDecryptingKey> {
        if self.key_backend() != Backend::AwsLc {
            return None;
        }
        self.decrypting
            .get_or_init(|| aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(&self.pkcs8).ok())
            .as_ref()
    }

    /// The aws-lc-rs signing key, when the key size allows it.
    #[cfg(feature = "aws-lc")]
    pub fn aws_signing(&self) -> Option<&aws_lc_rs::signature::RsaKeyPair> {
        if self.key_backend() != Backend::AwsLc {
            return None;
        }
        self.signing
            .get_or_init(|| aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&self.pkcs8).ok())
            .as_ref()
    }

    /// An RSASSA-PKCS1-v1_5 signature with SHA-256 over `message`
    /// (deterministic: either implementation gives the same bytes).
    pub fn sign_pkcs1v15_sha256(&self, message: &[u8]) -> Result<(Vec<u8>, Backend), String> {
        #[cfg(feature = "aws-lc")]
        if let Some(pair) = self.aws_signing() {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let mut sig = vec![0u8; pair.public_modulus_len()];
            pair.sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &rng,
                message,
                &mut sig,
            )
            .map_err(|_| "aws-lc-rs refused to sign".to_string())?;
            return Ok((sig, Backend::AwsLc));
        }
        use rsa::signature::SignatureEncoding;
        use rsa::signature::Signer;
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(self.rsa.clone());
        let sig = signer.try_sign(message).map_err(|e| e.to_string())?;
        Ok((sig.to_vec(), self.key_backend()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::demo_identity;

    #[test]
    fn pkcs1v15_signatures_match_between_backends() {
        let id = demo_identity("alice");
        let key = id.private_key().unwrap();
        let (sig, backend) = key.sign_pkcs1v15_sha256(b"v=0\r\n").unwrap();
        // The rsa crate's signature of the same message: PKCS#1 v1.5 is
        // deterministic, so the two implementations must agree byte for byte.
        use rsa::signature::{SignatureEncoding, Signer};
        let reference = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.rsa().clone())
            .try_sign(b"v=0\r\n")
            .unwrap()
            .to_vec();
        assert_eq!(sig, reference);
        #[cfg(feature = "aws-lc")]
        assert_eq!(backend, Backend::AwsLc);
        #[cfg(not(feature = "aws-lc"))]
        assert!(matches!(backend, Backend::RustCrypto(_)));
    }

    #[test]
    fn small_keys_name_why_they_take_the_rsa_path() {
        // RFC 4134's examples use 1024-bit keys; aws-lc-rs refuses them.
        let mut rng = <rand::rngs::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(1);
        let small = PrivateKey::new(RsaPrivateKey::new(&mut rng, 1024).unwrap());
        let Backend::RustCrypto(why) = small.key_backend() else {
            panic!("a 1024-bit key went to aws-lc-rs");
        };
        #[cfg(feature = "aws-lc")]
        {
            assert!(why.contains("this one has 1024"), "{why}");
            assert!(small.aws_decrypting().is_none());
        }
        #[cfg(not(feature = "aws-lc"))]
        assert!(why.contains("without the aws-lc feature"), "{why}");
    }
}
