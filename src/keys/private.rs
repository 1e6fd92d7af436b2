//! A private key and the implementation that performs its operations.
//!
//! Receiving-side private-key operations — RSA decryption, PKCS#1 v1.5
//! signing and static-ephemeral ECDH on P-256 — go through aws-lc-rs when the `aws-lc` feature is on (the
//! default build): constant-time and as fast as OpenSSL. The `rsa` crate
//! performs what aws-lc-rs cannot take (keys outside 2048–8192 bits, OAEP
//! whose MGF1 hash differs from its hash), what must draw from the
//! caller's RNG so that deterministic mode stays reproducible (PSS salts),
//! and everything in a build without the feature. Which one ran is a
//! [`Backend`], decided from public data only (the key size and the
//! algorithm parameters), never from a decryption's outcome.

use std::fmt;
use std::sync::OnceLock;

use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use zeroize::Zeroizing;

pub use super::backend::Backend;
pub(crate) use super::backend::RSA_CRATE;
use super::mlkem::MlKemKey;

/// A private key: RSA, EC P-256 or ML-KEM. The aws-lc-rs forms are built
/// from it on first use, each at most once per process.
pub struct PrivateKey {
    kind: Kind,
}

enum Kind {
    Rsa(Box<RsaKey>),
    P256(EcKey),
    MlKem(Box<MlKemKey>),
}

struct RsaKey {
    /// The public half, read from the key's own fields (no arithmetic).
    public: RsaPublicKey,
    /// The `rsa` crate's key: parsed (and validated, with its CRT values)
    /// only when something needs it, which with aws-lc-rs is rare.
    rsa: OnceLock<Option<RsaPrivateKey>>,
    /// The key as PKCS#8 DER: what aws-lc-rs and the `rsa` crate parse.
    pkcs8: Zeroizing<Vec<u8>>,
    #[cfg(feature = "aws-lc")]
    decrypting: OnceLock<Option<aws_lc_rs::rsa::PrivateDecryptingKey>>,
    #[cfg(feature = "aws-lc")]
    signing: OnceLock<Option<aws_lc_rs::signature::RsaKeyPair>>,
}

struct EcKey {
    secret: p256::SecretKey,
    #[cfg(feature = "aws-lc")]
    agreement: OnceLock<Option<aws_lc_rs::agreement::PrivateKey>>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Rsa(_) => write!(f, "PrivateKey(RSA-{})", self.bits()),
            Kind::P256(_) => f.write_str("PrivateKey(P-256)"),
            Kind::MlKem(k) => write!(f, "PrivateKey({})", k.level().name()),
        }
    }
}

/// Key sizes aws-lc-rs takes.
#[cfg(feature = "aws-lc")]
const AWS_LC_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

impl PrivateKey {
    /// Wrap a parsed RSA key (generated, or read by the `rsa` crate).
    pub fn from_rsa(rsa: RsaPrivateKey) -> PrivateKey {
        use rsa::pkcs8::EncodePrivateKey;
        // Encoding a valid key cannot fail; an empty encoding would only
        // lose the aws-lc-rs path, which then refuses the key.
        let pkcs8 = rsa
            .to_pkcs8_der()
            .map(|d| Zeroizing::new(d.as_bytes().to_vec()))
            .unwrap_or_default();
        PrivateKey::rsa_key(rsa.to_public_key(), pkcs8, OnceLock::from(Some(rsa)))
    }

    /// An RSA key from its PKCS#8 DER, read once: the public half comes
    /// from the RSAPrivateKey fields as they are, and the private-key
    /// implementation parses the same bytes when first used.
    pub fn from_rsa_pkcs8(der: &[u8]) -> Result<PrivateKey, String> {
        use der::Decode;
        let info = rsa::pkcs8::PrivateKeyInfoRef::from_der(der)
            .map_err(|e| format!("not a PKCS#8 key ({e})"))?;
        if info.algorithm.oid != const_oid::db::rfc5912::RSA_ENCRYPTION {
            return Err("not an RSA key".into());
        }
        let fields = rsa::pkcs1::RsaPrivateKey::from_der(info.private_key.as_bytes())
            .map_err(|e| format!("not a PKCS#1 RSAPrivateKey ({e})"))?;
        let uint = |u: rsa::pkcs1::UintRef<'_>| rsa::BoxedUint::from_be_slice_vartime(u.as_bytes());
        let public = RsaPublicKey::new(uint(fields.modulus), uint(fields.public_exponent))
            .map_err(|e| format!("its public key is not valid ({e})"))?;
        Ok(PrivateKey::rsa_key(
            public,
            Zeroizing::new(der.to_vec()),
            OnceLock::new(),
        ))
    }

    fn rsa_key(
        public: RsaPublicKey,
        pkcs8: Zeroizing<Vec<u8>>,
        rsa: OnceLock<Option<RsaPrivateKey>>,
    ) -> PrivateKey {
        PrivateKey {
            kind: Kind::Rsa(Box::new(RsaKey {
                public,
                rsa,
                pkcs8,
                #[cfg(feature = "aws-lc")]
                decrypting: OnceLock::new(),
                #[cfg(feature = "aws-lc")]
                signing: OnceLock::new(),
            })),
        }
    }

    /// The key as PKCS#8 DER (what a TLS stack takes); `None` for ML-KEM,
    /// which cannot sign a handshake.
    pub fn pkcs8_der(&self) -> Option<Zeroizing<Vec<u8>>> {
        use p256::pkcs8::EncodePrivateKey;
        match &self.kind {
            Kind::Rsa(k) => Some(k.pkcs8.clone()),
            Kind::P256(k) => k
                .secret
                .to_pkcs8_der()
                .ok()
                .map(|d| Zeroizing::new(d.as_bytes().to_vec())),
            Kind::MlKem(_) => None,
        }
    }

    /// Wrap a parsed EC P-256 key.
    pub fn from_p256(secret: p256::SecretKey) -> PrivateKey {
        PrivateKey {
            kind: Kind::P256(EcKey {
                secret,
                #[cfg(feature = "aws-lc")]
                agreement: OnceLock::new(),
            }),
        }
    }

    /// Wrap an ML-KEM key.
    pub fn from_ml_kem(key: MlKemKey) -> PrivateKey {
        PrivateKey {
            kind: Kind::MlKem(Box::new(key)),
        }
    }

    /// The `rsa` crate's key, for an RSA key: the pure-Rust path (parsed
    /// on first use; `None` also when the crate refuses the key).
    pub fn rsa(&self) -> Option<&RsaPrivateKey> {
        match &self.kind {
            Kind::Rsa(k) => k
                .rsa
                .get_or_init(|| {
                    use rsa::pkcs8::DecodePrivateKey;
                    RsaPrivateKey::from_pkcs8_der(&k.pkcs8).ok()
                })
                .as_ref(),
            _ => None,
        }
    }

    /// Whether the `rsa` crate has parsed this RSA key (tests).
    #[cfg(test)]
    fn rsa_parsed(&self) -> bool {
        matches!(&self.kind, Kind::Rsa(k) if k.rsa.get().is_some())
    }

    /// The public key, for an RSA key.
    pub fn rsa_public(&self) -> Option<&RsaPublicKey> {
        match &self.kind {
            Kind::Rsa(k) => Some(&k.public),
            _ => None,
        }
    }

    /// The EC P-256 key, for an EC key.
    pub fn p256(&self) -> Option<&p256::SecretKey> {
        match &self.kind {
            Kind::P256(k) => Some(&k.secret),
            _ => None,
        }
    }

    /// The ML-KEM key, for a KEM key.
    pub fn ml_kem(&self) -> Option<&MlKemKey> {
        match &self.kind {
            Kind::MlKem(k) => Some(k),
            _ => None,
        }
    }

    /// The key size in bits (the RSA modulus, or 256; 0 for ML-KEM,
    /// which has parameter sets instead).
    pub fn bits(&self) -> usize {
        match &self.kind {
            Kind::Rsa(k) => k.public.n().bits() as usize,
            Kind::P256(_) => 256,
            Kind::MlKem(_) => 0,
        }
    }

    /// Whether aws-lc-rs can take this key at all, and if not why.
    pub fn key_backend(&self) -> Backend {
        if let Kind::MlKem(k) = &self.kind {
            return k.backend();
        }
        #[cfg(feature = "aws-lc")]
        {
            if matches!(self.kind, Kind::P256(_)) || AWS_LC_BITS.contains(&self.bits()) {
                Backend::AwsLc
            } else {
                Backend::RustCrypto(format!(
                    "{RSA_CRATE}, since aws-lc-rs takes RSA keys of 2048 to 8192 bits, this one has {}",
                    self.bits()
                ))
            }
        }
        #[cfg(not(feature = "aws-lc"))]
        Backend::RustCrypto(format!(
            "{}, since sipseal was built without the aws-lc feature",
            match self.kind {
                Kind::Rsa(_) => RSA_CRATE,
                _ => "the p256 crate",
            }
        ))
    }

    /// The aws-lc-rs decryption key of an RSA key the size allows.
    #[cfg(feature = "aws-lc")]
    pub fn aws_decrypting(&self) -> Option<&aws_lc_rs::rsa::PrivateDecryptingKey> {
        let Kind::Rsa(k) = &self.kind else {
            return None;
        };
        if self.key_backend() != Backend::AwsLc {
            return None;
        }
        k.decrypting
            .get_or_init(|| aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(&k.pkcs8).ok())
            .as_ref()
    }

    /// The aws-lc-rs signing key of an RSA key the size allows.
    #[cfg(feature = "aws-lc")]
    fn aws_signing(&self) -> Option<&aws_lc_rs::signature::RsaKeyPair> {
        let Kind::Rsa(k) = &self.kind else {
            return None;
        };
        if self.key_backend() != Backend::AwsLc {
            return None;
        }
        k.signing
            .get_or_init(|| aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&k.pkcs8).ok())
            .as_ref()
    }

    /// An RSASSA-PKCS1-v1_5 signature with SHA-256 over `message`
    /// (deterministic: either implementation gives the same bytes).
    pub fn sign_pkcs1v15_sha256(&self, message: &[u8]) -> Result<(Vec<u8>, Backend), String> {
        // A millisecond or more of arithmetic: a live server's other
        // messages go on meanwhile.
        crate::blocking::offload(|| self.sign_now(message))
    }

    fn sign_now(&self, message: &[u8]) -> Result<(Vec<u8>, Backend), String> {
        if self.rsa_public().is_none() {
            return Err(match self.kind {
                Kind::MlKem(_) => {
                    "an ML-KEM key cannot sign (a KEM only decapsulates); sign with an RSA identity"
                }
                _ => "an EC P-256 key cannot make an RSA signature; sign with an RSA identity",
            }
            .into());
        }
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
        let rsa = self.rsa().ok_or("the rsa crate cannot read this RSA key")?;
        use rsa::signature::SignatureEncoding;
        use rsa::signature::Signer;
        // Blinded with the OS RNG, not the caller's: the signature is the
        // same bytes either way, and deterministic mode stays so.
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa.clone());
        let sig = signer.try_sign(message).map_err(|e| e.to_string())?;
        Ok((sig.to_vec(), self.key_backend()))
    }

    /// The public point of an EC P-256 key, uncompressed (SEC1): computed
    /// by aws-lc-rs (which computes it anyway for the key it builds), else
    /// by the p256 crate.
    pub fn p256_public_point(&self) -> Option<Vec<u8>> {
        let Kind::P256(k) = &self.kind else {
            return None;
        };
        #[cfg(feature = "aws-lc")]
        if let Some(key) = aws_agreement(k) {
            return key.compute_public_key().ok().map(|p| p.as_ref().to_vec());
        }
        use p256::elliptic_curve::sec1::ToSec1Point;
        Some(
            k.secret
                .public_key()
                .to_sec1_point(false)
                .as_bytes()
                .to_vec(),
        )
    }

    /// Static-ephemeral ECDH (RFC 5753): the shared secret Z, the
    /// x-coordinate of this key times `peer` (a SEC1 point, compressed or
    /// not). `None` for an RSA key or a point not on the curve.
    pub fn agree(&self, peer: &[u8]) -> Option<(Zeroizing<Vec<u8>>, Backend)> {
        let Kind::P256(k) = &self.kind else {
            return None;
        };
        #[cfg(feature = "aws-lc")]
        {
            use aws_lc_rs::agreement;
            let key = aws_agreement(k)?;
            // aws-lc decompresses a point with generic bignum code, slower
            // than the p256 crate's field arithmetic: the peer's (public)
            // point is decompressed here, then handed over uncompressed.
            let uncompressed;
            let peer = if peer.len() == 33 {
                use p256::elliptic_curve::sec1::ToSec1Point;
                uncompressed = p256::PublicKey::from_sec1_bytes(peer)
                    .ok()?
                    .to_sec1_point(false);
                uncompressed.as_bytes()
            } else {
                peer
            };
            let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, peer);
            agreement::agree(key, peer, (), |z| Ok(Zeroizing::new(z.to_vec())))
                .ok()
                .map(|z| (z, Backend::AwsLc))
        }
        #[cfg(not(feature = "aws-lc"))]
        {
            let peer = p256::PublicKey::from_sec1_bytes(peer).ok()?;
            let z = p256::ecdh::diffie_hellman(k.secret.to_nonzero_scalar(), peer.as_affine());
            Some((
                Zeroizing::new(z.raw_secret_bytes().to_vec()),
                self.key_backend(),
            ))
        }
    }
}

/// The aws-lc-rs form of an EC key, built once.
#[cfg(feature = "aws-lc")]
fn aws_agreement(k: &EcKey) -> Option<&aws_lc_rs::agreement::PrivateKey> {
    use aws_lc_rs::agreement;
    k.agreement
        .get_or_init(|| {
            let scalar = Zeroizing::new(k.secret.to_bytes().to_vec());
            agreement::PrivateKey::from_private_key(&agreement::ECDH_P256, &scalar).ok()
        })
        .as_ref()
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
        let reference = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.rsa().unwrap().clone())
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
    fn the_rsa_crate_parses_a_key_only_when_it_is_the_implementation() {
        let id = demo_identity("carol");
        let key = id.private_key().unwrap();
        assert!(
            !key.rsa_parsed(),
            "reading the key parses only its public half"
        );
        key.sign_pkcs1v15_sha256(b"v=0\r\n").unwrap();
        // With aws-lc-rs the signature needed no second parse.
        #[cfg(feature = "aws-lc")]
        assert!(!key.rsa_parsed());
        #[cfg(not(feature = "aws-lc"))]
        assert!(key.rsa_parsed());
        assert_eq!(
            key.rsa().unwrap().to_public_key(),
            *key.rsa_public().unwrap()
        );
        assert!(key.rsa_parsed());
    }

    #[test]
    fn static_ecdh_agrees_with_the_ephemeral_side() {
        use p256::elliptic_curve::Generate;
        use p256::elliptic_curve::sec1::ToSec1Point;
        let mut rng = <rand::rngs::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(2);
        let recipient = p256::SecretKey::generate_from_rng(&mut rng);
        let ephemeral = p256::SecretKey::generate_from_rng(&mut rng);
        // What the sender computes, with the recipient's public key.
        let expected = p256::ecdh::diffie_hellman(
            ephemeral.to_nonzero_scalar(),
            recipient.public_key().as_affine(),
        );
        let key = PrivateKey::from_p256(recipient);
        for compress in [true, false] {
            let point = ephemeral.public_key().to_sec1_point(compress);
            let (z, backend) = key.agree(point.as_bytes()).unwrap();
            assert_eq!(z.as_slice(), expected.raw_secret_bytes().as_slice());
            assert_eq!(backend, key.key_backend());
        }
        // Not a point on the curve, and an RSA key: no agreement.
        let mut bad = ephemeral
            .public_key()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec();
        bad[64] ^= 1;
        assert!(key.agree(&bad).is_none());
        assert!(key.agree(b"").is_none());
        let rsa = demo_identity("bob");
        let rsa = rsa.private_key().unwrap();
        assert!(
            rsa.agree(ephemeral.public_key().to_sec1_point(true).as_bytes())
                .is_none()
        );
    }

    #[test]
    fn small_keys_name_why_they_take_the_rsa_path() {
        // RFC 4134's examples use 1024-bit keys; aws-lc-rs refuses them.
        let mut rng = <rand::rngs::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(1);
        let small = PrivateKey::from_rsa(RsaPrivateKey::new(&mut rng, 1024).unwrap());
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
