//! Password recipients: PasswordRecipientInfo (RFC 5652 §6.2.4) with
//! PBKDF2 (RFC 8018) and the PWRI-KEK key wrap (RFC 3211).
//!
//! ```text
//! PasswordRecipientInfo ::= SEQUENCE {
//!   version CMSVersion,   -- always set to 0
//!   keyDerivationAlgorithm [0] KeyDerivationAlgorithmIdentifier OPTIONAL,
//!                         -- id-PBKDF2 with PBKDF2-params
//!   keyEncryptionAlgorithm KeyEncryptionAlgorithmIdentifier,
//!                         -- id-alg-PWRI-KEK, parameters: the KEK cipher (AES-CBC and its IV)
//!   encryptedKey EncryptedKey }
//!
//! PBKDF2-params ::= SEQUENCE {
//!   salt CHOICE { specified OCTET STRING, otherSource AlgorithmIdentifier },
//!   iterationCount INTEGER (1..MAX),
//!   keyLength INTEGER (1..MAX) OPTIONAL,
//!   prf AlgorithmIdentifier DEFAULT algid-hmacWithSHA1 }
//! ```
//!
//! Written: PBKDF2 with HMAC-SHA256, a 16-byte salt, [`ITERATIONS`]
//! iterations, and an AES-256-CBC KEK. Read: HMAC-SHA1 (what OpenSSL 3.0
//! writes, with 2,048 iterations), -SHA224, -SHA256, -SHA384 and -SHA512,
//! AES-128/192/256-CBC KEKs, and at most [`MAX_ITERATIONS`] iterations, so
//! that a hostile envelope cannot make a relay burn its CPU.

use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use cms::content_info::CmsVersion;
use cms::enveloped_data::{PasswordRecipientInfo, RecipientInfo};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5911;
use der::asn1::{Null, OctetString};
use der::{Any, Sequence};
use rand::CryptoRng;
use subtle::ConstantTimeEq;
use x509_cert::spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

use super::EnvelopeError;
use crate::keys::Password;

/// PBKDF2 iterations sipseal writes. A password recipient pays them once
/// per message it opens (about 40 ms with HMAC-SHA256 here); a session
/// key then takes over.
pub const ITERATIONS: u32 = 100_000;

/// The most PBKDF2 iterations sipseal runs for an envelope (about 0.4 s):
/// more is refused before any is run.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Password RecipientInfos tried per envelope, at most.
pub const MAX_TRIES: usize = 3;

const fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

const ID_PBKDF2: ObjectIdentifier = oid("1.2.840.113549.1.5.12");
const ID_ALG_PWRI_KEK: ObjectIdentifier = oid("1.2.840.113549.1.9.16.3.9");
const HMAC_WITH_SHA1: ObjectIdentifier = oid("1.2.840.113549.2.7");
const HMAC_WITH_SHA224: ObjectIdentifier = oid("1.2.840.113549.2.8");
const HMAC_WITH_SHA256: ObjectIdentifier = oid("1.2.840.113549.2.9");
const HMAC_WITH_SHA384: ObjectIdentifier = oid("1.2.840.113549.2.10");
const HMAC_WITH_SHA512: ObjectIdentifier = oid("1.2.840.113549.2.11");

/// PBKDF2-params (RFC 8018 A.2), with the salt as given ("specified").
#[derive(Clone, Debug, Sequence)]
struct Pbkdf2Params {
    salt: OctetString,
    iteration_count: u32,
    #[asn1(optional = "true")]
    key_length: Option<u32>,
    #[asn1(optional = "true")]
    prf: Option<AlgorithmIdentifierOwned>,
}

fn malformed(what: &str) -> EnvelopeError {
    EnvelopeError::Malformed(format!("PasswordRecipientInfo: {what}"))
}

/// The PRF of PBKDF2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prf {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Prf {
    fn from_oid(o: ObjectIdentifier) -> Option<Prf> {
        Some(match o {
            HMAC_WITH_SHA1 => Prf::Sha1,
            HMAC_WITH_SHA224 => Prf::Sha224,
            HMAC_WITH_SHA256 => Prf::Sha256,
            HMAC_WITH_SHA384 => Prf::Sha384,
            HMAC_WITH_SHA512 => Prf::Sha512,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Prf::Sha1 => "hmacWithSHA1",
            Prf::Sha224 => "hmacWithSHA224",
            Prf::Sha256 => "hmacWithSHA256",
            Prf::Sha384 => "hmacWithSHA384",
            Prf::Sha512 => "hmacWithSHA512",
        }
    }

    fn derive(self, password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8]) {
        use pbkdf2::pbkdf2_hmac;
        match self {
            Prf::Sha1 => pbkdf2_hmac::<sha1::Sha1>(password, salt, rounds, out),
            Prf::Sha224 => pbkdf2_hmac::<sha2::Sha224>(password, salt, rounds, out),
            Prf::Sha256 => pbkdf2_hmac::<sha2::Sha256>(password, salt, rounds, out),
            Prf::Sha384 => pbkdf2_hmac::<sha2::Sha384>(password, salt, rounds, out),
            Prf::Sha512 => pbkdf2_hmac::<sha2::Sha512>(password, salt, rounds, out),
        }
    }
}

/// What a PasswordRecipientInfo asks for, read and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordScheme {
    prf: Prf,
    salt: Vec<u8>,
    iterations: u32,
    /// The KEK cipher: AES-CBC with a key of this many bytes.
    kek_len: usize,
    iv: Vec<u8>,
}

const AES_CBC: &[(ObjectIdentifier, usize)] = &[
    (rfc5911::ID_AES_128_CBC, 16),
    (rfc5911::ID_AES_192_CBC, 24),
    (rfc5911::ID_AES_256_CBC, 32),
];

impl PasswordScheme {
    /// Read the algorithms of a PasswordRecipientInfo; refuses more than
    /// [`MAX_ITERATIONS`] before anything is computed.
    pub fn decode(p: &PasswordRecipientInfo) -> Result<PasswordScheme, EnvelopeError> {
        let kdf = p.key_derivation_alg.as_ref().ok_or_else(|| {
            malformed("no keyDerivationAlgorithm (a KEK given out of band is not supported)")
        })?;
        if kdf.oid != ID_PBKDF2 {
            return Err(EnvelopeError::Unsupported(format!(
                "password key derivation {}",
                crate::oid::name(&kdf.oid)
            )));
        }
        let params: Pbkdf2Params = kdf
            .parameters
            .as_ref()
            .ok_or_else(|| malformed("PBKDF2 without parameters"))?
            .decode_as()
            .map_err(|e| malformed(&format!("PBKDF2-params: {e}")))?;
        let prf = match &params.prf {
            None => Prf::Sha1,
            Some(alg) => Prf::from_oid(alg.oid).ok_or_else(|| {
                EnvelopeError::Unsupported(format!("PBKDF2 PRF {}", crate::oid::name(&alg.oid)))
            })?,
        };
        if params.iteration_count == 0 {
            return Err(malformed("PBKDF2 with 0 iterations"));
        }
        if params.iteration_count > MAX_ITERATIONS {
            return Err(EnvelopeError::Unsupported(format!(
                "PBKDF2 with {} iterations, more than the {MAX_ITERATIONS} sipseal runs",
                params.iteration_count
            )));
        }
        if p.key_enc_alg.oid != ID_ALG_PWRI_KEK {
            return Err(EnvelopeError::Unsupported(format!(
                "password key encryption {}",
                crate::oid::name(&p.key_enc_alg.oid)
            )));
        }
        let kek_alg: AlgorithmIdentifierOwned = p
            .key_enc_alg
            .parameters
            .as_ref()
            .ok_or_else(|| malformed("PWRI-KEK without its cipher"))?
            .decode_as()
            .map_err(|e| malformed(&format!("PWRI-KEK cipher: {e}")))?;
        let Some(&(_, kek_len)) = AES_CBC.iter().find(|(o, _)| *o == kek_alg.oid) else {
            return Err(EnvelopeError::Unsupported(format!(
                "PWRI-KEK cipher {}",
                crate::oid::name(&kek_alg.oid)
            )));
        };
        let iv: OctetString = kek_alg
            .parameters
            .as_ref()
            .ok_or_else(|| malformed("PWRI-KEK cipher without an IV"))?
            .decode_as()
            .map_err(|e| malformed(&format!("PWRI-KEK IV: {e}")))?;
        if iv.as_bytes().len() != 16 {
            return Err(malformed("PWRI-KEK IV is not 16 bytes"));
        }
        if params.key_length.is_some_and(|l| l as usize != kek_len) {
            return Err(malformed("PBKDF2 keyLength does not fit the KEK cipher"));
        }
        Ok(PasswordScheme {
            prf,
            salt: params.salt.as_bytes().to_vec(),
            iterations: params.iteration_count,
            kek_len,
            iv: iv.as_bytes().to_vec(),
        })
    }

    /// For `inspect`.
    pub fn describe(&self) -> String {
        format!(
            "PBKDF2 ({}, {} iterations, {}-byte salt) + PWRI-KEK aes{}-cbc",
            self.prf.name(),
            self.iterations,
            self.salt.len(),
            self.kek_len * 8
        )
    }

    fn kek(&self, password: &Password) -> Zeroizing<Vec<u8>> {
        let mut kek = Zeroizing::new(vec![0u8; self.kek_len]);
        self.prf.derive(
            password.secret.as_bytes(),
            &self.salt,
            self.iterations,
            &mut kek,
        );
        kek
    }
}

fn cbc_encrypt(kek: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    macro_rules! enc {
        ($c:ty) => {
            cbc::Encryptor::<$c>::new_from_slices(kek, iv)
                .ok()
                .map(|e| e.encrypt_padded_vec::<NoPadding>(data))
        };
    }
    match kek.len() {
        16 => enc!(aes::Aes128),
        24 => enc!(aes::Aes192),
        32 => enc!(aes::Aes256),
        _ => None,
    }
}

fn cbc_decrypt(kek: &[u8], iv: &[u8], data: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    macro_rules! dec {
        ($c:ty) => {
            cbc::Decryptor::<$c>::new_from_slices(kek, iv)
                .ok()
                .and_then(|d| d.decrypt_padded_vec::<NoPadding>(data).ok())
                .map(Zeroizing::new)
        };
    }
    match kek.len() {
        16 => dec!(aes::Aes128),
        24 => dec!(aes::Aes192),
        32 => dec!(aes::Aes256),
        _ => None,
    }
}

const BLOCK: usize = 16;

/// RFC 3211 §2.3.1: length, check value and key, padded with random
/// bytes to at least two blocks, encrypted twice in CBC mode (the second
/// time with the last ciphertext block of the first as IV).
fn kek_wrap<R: CryptoRng + ?Sized>(
    kek: &[u8],
    iv: &[u8],
    cek: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, EnvelopeError> {
    if cek.len() < 3 || cek.len() > 255 {
        return Err(EnvelopeError::Encode(format!(
            "a {}-byte content key",
            cek.len()
        )));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(2 * BLOCK + cek.len()));
    buf.push(cek.len() as u8);
    buf.extend(cek[..3].iter().map(|b| !b));
    buf.extend_from_slice(cek);
    let padded = (buf.len().div_ceil(BLOCK) * BLOCK).max(2 * BLOCK);
    let mut pad = vec![0u8; padded - buf.len()];
    rng.fill_bytes(&mut pad);
    buf.extend_from_slice(&pad);
    let fail = || EnvelopeError::Encode("PWRI-KEK encryption".into());
    let first = cbc_encrypt(kek, iv, &buf).ok_or_else(fail)?;
    let last = &first[first.len() - BLOCK..];
    cbc_encrypt(kek, last, &first).ok_or_else(fail)
}

/// RFC 3211 §2.3.2: undo both layers and check the length and check
/// value; `None` when they do not hold (a wrong password, mostly).
fn kek_unwrap(kek: &[u8], iv: &[u8], wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let n = wrapped.len();
    if n < 2 * BLOCK || !n.is_multiple_of(BLOCK) {
        return None;
    }
    // The last block of the first pass, with the block before it as IV.
    let last = cbc_decrypt(
        kek,
        &wrapped[n - 2 * BLOCK..n - BLOCK],
        &wrapped[n - BLOCK..],
    )?;
    // The others, with that block as IV: the first pass's output.
    let mut first = cbc_decrypt(kek, &last, &wrapped[..n - BLOCK])?;
    first.extend_from_slice(&last);
    let buf = cbc_decrypt(kek, iv, &first)?;
    let len = usize::from(buf[0]);
    let check = [buf[1] ^ buf[4], buf[2] ^ buf[5], buf[3] ^ buf[6]];
    let good = check.ct_eq(&[0xff; 3]);
    if len < 3 || 4 + len > n || !bool::from(good) {
        return None;
    }
    Some(Zeroizing::new(buf[4..4 + len].to_vec()))
}

/// The PasswordRecipientInfo for `password`.
pub fn pwri_for<R: CryptoRng + ?Sized>(
    password: &Password,
    cek: &[u8],
    rng: &mut R,
) -> Result<RecipientInfo, EnvelopeError> {
    let enc = |e: der::Error| EnvelopeError::Encode(e.to_string());
    let mut salt = vec![0u8; 16];
    rng.fill_bytes(&mut salt);
    let mut iv = vec![0u8; 16];
    rng.fill_bytes(&mut iv);
    let scheme = PasswordScheme {
        prf: Prf::Sha256,
        salt: salt.clone(),
        iterations: ITERATIONS,
        kek_len: 32,
        iv: iv.clone(),
    };
    let kek = scheme.kek(password);
    let wrapped = kek_wrap(&kek, &iv, cek, rng)?;
    let params = Pbkdf2Params {
        salt: OctetString::new(salt).map_err(enc)?,
        iteration_count: ITERATIONS,
        key_length: None,
        prf: Some(AlgorithmIdentifierOwned {
            oid: HMAC_WITH_SHA256,
            parameters: Some(Any::from(Null)),
        }),
    };
    let kek_cipher = AlgorithmIdentifierOwned {
        oid: rfc5911::ID_AES_256_CBC,
        parameters: Some(Any::encode_from(&OctetString::new(iv).map_err(enc)?).map_err(enc)?),
    };
    Ok(RecipientInfo::Pwri(PasswordRecipientInfo {
        version: CmsVersion::V0,
        key_derivation_alg: Some(AlgorithmIdentifierOwned {
            oid: ID_PBKDF2,
            parameters: Some(Any::encode_from(&params).map_err(enc)?),
        }),
        key_enc_alg: AlgorithmIdentifierOwned {
            oid: ID_ALG_PWRI_KEK,
            parameters: Some(Any::encode_from(&kek_cipher).map_err(enc)?),
        },
        enc_key: OctetString::new(wrapped).map_err(enc)?,
    }))
}

/// The content key of a PasswordRecipientInfo for `password`: `Ok(None)`
/// when the password does not open it; `Err` for parameters sipseal does
/// not run (public, and checked before any PBKDF2 iteration).
pub fn unwrap(
    p: &PasswordRecipientInfo,
    password: &Password,
) -> Result<Option<Zeroizing<Vec<u8>>>, EnvelopeError> {
    let scheme = PasswordScheme::decode(p)?;
    let kek = scheme.kek(password);
    Ok(kek_unwrap(&kek, &scheme.iv, p.enc_key.as_bytes()))
}

/// For `inspect`: the algorithms, or why they cannot be read.
pub fn describe(p: &PasswordRecipientInfo) -> String {
    PasswordScheme::decode(p).map_or_else(|e| e.to_string(), |s| s.describe())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn password(s: &str) -> Password {
        Password::parse(s, std::path::Path::new("pw")).unwrap()
    }

    #[test]
    fn wrap_round_trip_and_wrong_password() {
        let mut rng = rand::rngs::ChaCha20Rng::seed_from_u64(3);
        for cek_len in [16, 24, 32] {
            let cek: Vec<u8> = (0..cek_len as u8).collect();
            let RecipientInfo::Pwri(p) = pwri_for(&password("right"), &cek, &mut rng).unwrap()
            else {
                unreachable!()
            };
            assert_eq!(
                unwrap(&p, &password("right")).unwrap().unwrap().as_slice(),
                cek
            );
            assert_eq!(unwrap(&p, &password("wrong")).unwrap(), None);
            // Any altered ciphertext byte fails the check (or gives another key).
            let mut altered = p.clone();
            let mut bytes = altered.enc_key.as_bytes().to_vec();
            bytes[0] ^= 1;
            altered.enc_key = OctetString::new(bytes).unwrap();
            assert_ne!(
                unwrap(&altered, &password("right"))
                    .unwrap()
                    .map(|k| k.to_vec()),
                Some(cek.clone())
            );
        }
    }

    #[test]
    fn too_many_iterations_are_refused_before_running() {
        let mut rng = rand::rngs::ChaCha20Rng::seed_from_u64(4);
        let RecipientInfo::Pwri(mut p) = pwri_for(&password("pw"), &[1; 32], &mut rng).unwrap()
        else {
            unreachable!()
        };
        let kdf = p.key_derivation_alg.as_mut().unwrap();
        let mut params: Pbkdf2Params = kdf.parameters.as_ref().unwrap().decode_as().unwrap();
        params.iteration_count = MAX_ITERATIONS + 1;
        kdf.parameters = Some(Any::encode_from(&params).unwrap());
        let err = unwrap(&p, &password("pw")).unwrap_err();
        assert!(matches!(err, EnvelopeError::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("1000001 iterations"), "{err}");
    }
}
