//! Content-encryption algorithms: AES-GCM for AuthEnvelopedData (RFC 5084)
//! and AES-CBC for EnvelopedData (RFC 3565); DES-EDE3-CBC (RFC 3370 §5.1,
//! what older S/MIME agents and RFC 4134 use) is read, never written.
//!
//! ```text
//! -- RFC 5084 §3.2
//! GCMParameters ::= SEQUENCE {
//!   aes-nonce        OCTET STRING, -- recommended size is 12 octets
//!   aes-ICVlen       AES-GCM-ICVlen DEFAULT 12 }
//! AES-GCM-ICVlen ::= INTEGER (12 | 13 | 14 | 15 | 16)
//!
//! -- RFC 3565 §4.1
//! AES-IV ::= OCTET STRING (SIZE(16))
//! ```

use aes::{Aes128, Aes192, Aes256};
use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::{AeadCore, AeadInOut, KeyInit};
use aes_gcm::{AesGcm, Nonce, Tag};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5911;
use der::asn1::OctetString;
use der::{Any, Decode, Encode, Sequence};
use rand::CryptoRng;
use serde::Serialize;
use x509_cert::spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

use super::EnvelopeError;

/// The content ciphers sipseal writes and reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum ContentCipher {
    /// AES-256-GCM in AuthEnvelopedData (the default).
    #[default]
    #[cfg_attr(feature = "cli", value(name = "aes256-gcm"))]
    Aes256Gcm,
    /// AES-128-GCM in AuthEnvelopedData.
    #[cfg_attr(feature = "cli", value(name = "aes128-gcm"))]
    Aes128Gcm,
    /// AES-256-CBC in EnvelopedData (legacy peers; not authenticated).
    #[cfg_attr(feature = "cli", value(name = "aes256-cbc"))]
    Aes256Cbc,
    /// AES-192-CBC in EnvelopedData (read only).
    #[cfg_attr(feature = "cli", value(skip))]
    Aes192Cbc,
    /// AES-128-CBC in EnvelopedData (legacy peers; not authenticated).
    #[cfg_attr(feature = "cli", value(name = "aes128-cbc"))]
    Aes128Cbc,
    /// DES-EDE3-CBC in EnvelopedData (legacy; read only, never written).
    #[cfg_attr(feature = "cli", value(skip))]
    DesEde3Cbc,
}

/// des-ede3-cbc (RFC 3370 §5.1).
const DES_EDE3_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.3.7");

/// GCM nonce length sipseal writes (RFC 5084 recommendation).
pub const GCM_NONCE_LEN: usize = 12;
/// GCM tag length sipseal writes.
pub const GCM_TAG_LEN: u8 = 16;
const CBC_IV_LEN: usize = 16;

#[derive(Sequence)]
struct GcmParameters {
    nonce: OctetString,
    #[asn1(default = "default_icv_len")]
    icv_len: u8,
}

fn default_icv_len() -> u8 {
    12
}

/// The decoded parameters of a content-encryption AlgorithmIdentifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentParams {
    /// Which cipher.
    pub cipher: ContentCipher,
    /// GCM nonce or CBC IV.
    pub iv: Vec<u8>,
    /// GCM tag length (0 for CBC).
    pub tag_len: u8,
}

impl ContentCipher {
    /// Whether this is an AEAD (AuthEnvelopedData) cipher.
    pub fn is_aead(self) -> bool {
        matches!(self, ContentCipher::Aes128Gcm | ContentCipher::Aes256Gcm)
    }

    /// Whether only reading is allowed (a legacy cipher).
    pub fn is_legacy(self) -> bool {
        self == ContentCipher::DesEde3Cbc
    }

    /// The CBC IV length (GCM: the nonce's).
    fn iv_len(self) -> usize {
        match self {
            ContentCipher::DesEde3Cbc => 8,
            c if c.is_aead() => GCM_NONCE_LEN,
            _ => CBC_IV_LEN,
        }
    }

    /// The content-encryption key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            ContentCipher::Aes128Gcm | ContentCipher::Aes128Cbc => 16,
            ContentCipher::Aes192Cbc | ContentCipher::DesEde3Cbc => 24,
            ContentCipher::Aes256Gcm | ContentCipher::Aes256Cbc => 32,
        }
    }

    /// The algorithm OID.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            ContentCipher::Aes128Gcm => rfc5911::ID_AES_128_GCM,
            ContentCipher::Aes256Gcm => rfc5911::ID_AES_256_GCM,
            ContentCipher::Aes128Cbc => rfc5911::ID_AES_128_CBC,
            ContentCipher::Aes192Cbc => rfc5911::ID_AES_192_CBC,
            ContentCipher::Aes256Cbc => rfc5911::ID_AES_256_CBC,
            ContentCipher::DesEde3Cbc => DES_EDE3_CBC,
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ContentCipher::Aes128Gcm => "aes128-gcm",
            ContentCipher::Aes256Gcm => "aes256-gcm",
            ContentCipher::Aes128Cbc => "aes128-cbc",
            ContentCipher::Aes192Cbc => "aes192-cbc",
            ContentCipher::Aes256Cbc => "aes256-cbc",
            ContentCipher::DesEde3Cbc => "des-ede3-cbc",
        }
    }

    fn from_oid(oid: &ObjectIdentifier) -> Option<ContentCipher> {
        [
            ContentCipher::Aes128Gcm,
            ContentCipher::Aes256Gcm,
            ContentCipher::Aes128Cbc,
            ContentCipher::Aes192Cbc,
            ContentCipher::Aes256Cbc,
            ContentCipher::DesEde3Cbc,
        ]
        .into_iter()
        .find(|c| c.oid() == *oid)
    }
}

impl ContentParams {
    /// Decode a content-encryption AlgorithmIdentifier.
    pub fn decode(alg: &AlgorithmIdentifierOwned) -> Result<ContentParams, EnvelopeError> {
        let params_der = alg
            .parameters
            .as_ref()
            .map(|p| p.to_der())
            .transpose()
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        Self::decode_parts(&alg.oid, params_der.as_deref())
    }

    /// [`ContentParams::decode`] from the algorithm's OID and the DER of
    /// its parameters (`None` when absent).
    pub fn decode_parts(
        oid: &ObjectIdentifier,
        params_der: Option<&[u8]>,
    ) -> Result<ContentParams, EnvelopeError> {
        let cipher = ContentCipher::from_oid(oid).ok_or_else(|| {
            EnvelopeError::Unsupported(format!(
                "unsupported algorithm: content-encryption algorithm {} (sipseal reads AES-GCM, AES-CBC and, legacy, DES-EDE3-CBC)",
                super::oid_name(oid)
            ))
        })?;
        let params_der = params_der.ok_or_else(|| {
            EnvelopeError::Malformed(format!("{} without parameters", cipher.name()))
        })?;
        if cipher.is_aead() {
            let p = GcmParameters::from_der(params_der)
                .map_err(|e| EnvelopeError::Malformed(format!("GCMParameters: {e}")))?;
            let iv = p.nonce.as_bytes().to_vec();
            if iv.len() != GCM_NONCE_LEN {
                return Err(EnvelopeError::Unsupported(format!(
                    "a {}-byte GCM nonce (sipseal reads the 12-byte nonce RFC 5084 recommends)",
                    iv.len()
                )));
            }
            if p.icv_len != 12 && p.icv_len != 16 {
                return Err(EnvelopeError::Unsupported(format!(
                    "a {}-byte GCM tag (sipseal reads 12 and 16)",
                    p.icv_len
                )));
            }
            Ok(ContentParams {
                cipher,
                iv,
                tag_len: p.icv_len,
            })
        } else {
            let iv = OctetString::from_der(params_der)
                .map_err(|e| EnvelopeError::Malformed(format!("{} IV: {e}", cipher.name())))?;
            if iv.as_bytes().len() != cipher.iv_len() {
                return Err(EnvelopeError::Malformed(format!(
                    "{} IV of {} bytes (must be {})",
                    cipher.name(),
                    iv.as_bytes().len(),
                    cipher.iv_len()
                )));
            }
            Ok(ContentParams {
                cipher,
                iv: iv.as_bytes().to_vec(),
                tag_len: 0,
            })
        }
    }

    /// Fresh parameters (nonce or IV) for `cipher`.
    pub fn fresh<R: CryptoRng + ?Sized>(cipher: ContentCipher, rng: &mut R) -> ContentParams {
        let mut iv = vec![0; cipher.iv_len()];
        rng.fill_bytes(&mut iv);
        ContentParams {
            cipher,
            iv,
            tag_len: if cipher.is_aead() { GCM_TAG_LEN } else { 0 },
        }
    }

    /// The AlgorithmIdentifier to write.
    pub fn algorithm(&self) -> Result<AlgorithmIdentifierOwned, EnvelopeError> {
        let enc = |e: der::Error| EnvelopeError::Encode(e.to_string());
        let iv = OctetString::new(self.iv.clone()).map_err(enc)?;
        let parameters = if self.cipher.is_aead() {
            Any::encode_from(&GcmParameters {
                nonce: iv,
                icv_len: self.tag_len,
            })
        } else {
            Any::encode_from(&iv)
        }
        .map_err(enc)?;
        Ok(AlgorithmIdentifierOwned {
            oid: self.cipher.oid(),
            parameters: Some(parameters),
        })
    }

    /// Encrypt; returns the ciphertext and (for GCM) the tag.
    pub fn encrypt(
        &self,
        key: &[u8],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), EnvelopeError> {
        let bad_key = || EnvelopeError::Encode("content key of the wrong length".into());
        match self.cipher {
            #[cfg(feature = "aws-lc")]
            ContentCipher::Aes128Gcm | ContentCipher::Aes256Gcm => {
                lc::gcm_encrypt(self.cipher, key, &self.iv, aad, plaintext)
            }
            #[cfg(not(feature = "aws-lc"))]
            ContentCipher::Aes128Gcm => gcm_encrypt::<Aes128>(key, &self.iv, aad, plaintext),
            #[cfg(not(feature = "aws-lc"))]
            ContentCipher::Aes256Gcm => gcm_encrypt::<Aes256>(key, &self.iv, aad, plaintext),
            ContentCipher::Aes128Cbc => cbc_encrypt::<Aes128>(key, &self.iv, plaintext),
            ContentCipher::Aes192Cbc => cbc_encrypt::<Aes192>(key, &self.iv, plaintext),
            ContentCipher::Aes256Cbc => cbc_encrypt::<Aes256>(key, &self.iv, plaintext),
            ContentCipher::DesEde3Cbc => {
                return Err(EnvelopeError::Unsupported(
                    "sealing with DES-EDE3-CBC: it is read, never written".into(),
                ));
            }
        }
        .ok_or_else(bad_key)
    }

    /// Decrypt; for GCM the tag is checked before anything is returned.
    /// Every failure is the same [`EnvelopeError::Decrypt`].
    pub fn decrypt(
        &self,
        key: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let out = match (self.cipher, self.tag_len) {
            #[cfg(feature = "aws-lc")]
            (ContentCipher::Aes128Gcm | ContentCipher::Aes256Gcm, 16) => {
                lc::gcm_decrypt(self.cipher, key, &self.iv, aad, ciphertext, tag)
            }
            #[cfg(not(feature = "aws-lc"))]
            (ContentCipher::Aes128Gcm, 16) => {
                gcm_decrypt::<Aes128, U16>(key, &self.iv, aad, ciphertext, tag)
            }
            (ContentCipher::Aes128Gcm, _) => {
                gcm_decrypt::<Aes128, U12>(key, &self.iv, aad, ciphertext, tag)
            }
            #[cfg(not(feature = "aws-lc"))]
            (ContentCipher::Aes256Gcm, 16) => {
                gcm_decrypt::<Aes256, U16>(key, &self.iv, aad, ciphertext, tag)
            }
            (ContentCipher::Aes256Gcm, _) => {
                gcm_decrypt::<Aes256, U12>(key, &self.iv, aad, ciphertext, tag)
            }
            (ContentCipher::Aes128Cbc, _) => cbc_decrypt::<Aes128>(key, &self.iv, ciphertext),
            (ContentCipher::Aes192Cbc, _) => cbc_decrypt::<Aes192>(key, &self.iv, ciphertext),
            (ContentCipher::Aes256Cbc, _) => cbc_decrypt::<Aes256>(key, &self.iv, ciphertext),
            (ContentCipher::DesEde3Cbc, _) => {
                cbc_decrypt::<des::TdesEde3>(key, &self.iv, ciphertext)
            }
        };
        out.map(Zeroizing::new).ok_or(EnvelopeError::Decrypt)
    }
}

/// AES-GCM with a 16-byte tag through aws-lc-rs (its assembly: no copy of
/// the ciphertext, a third of a warm open's GCM time here); 12-byte tags,
/// which sipseal reads but never writes, stay with the `aes-gcm` crate.
#[cfg(feature = "aws-lc")]
mod lc {
    use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    use zeroize::Zeroize;

    use super::ContentCipher;

    fn key(cipher: ContentCipher, key: &[u8]) -> Option<LessSafeKey> {
        let alg = match cipher {
            ContentCipher::Aes128Gcm => &AES_128_GCM,
            ContentCipher::Aes256Gcm => &AES_256_GCM,
            _ => return None,
        };
        UnboundKey::new(alg, key).ok().map(LessSafeKey::new)
    }

    pub(super) fn gcm_encrypt(
        cipher: ContentCipher,
        k: &[u8],
        nonce: &[u8],
        aad: &[u8],
        pt: &[u8],
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        let key = key(cipher, k)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = pt.to_vec();
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut buf)
            .ok()?;
        Some((buf, tag.as_ref().to_vec()))
    }

    pub(super) fn gcm_decrypt(
        cipher: ContentCipher,
        k: &[u8],
        nonce: &[u8],
        aad: &[u8],
        ct: &[u8],
        tag: &[u8],
    ) -> Option<Vec<u8>> {
        let key = key(cipher, k)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut out = vec![0u8; ct.len()];
        match key.open_separate_gather(nonce, Aad::from(aad), ct, tag, &mut out) {
            Ok(()) => Some(out),
            Err(_) => {
                // Wipe whatever the cipher left in the buffer before dropping it.
                out.zeroize();
                None
            }
        }
    }
}

#[cfg_attr(all(feature = "aws-lc", not(test)), expect(dead_code))]
fn gcm_encrypt<C>(key: &[u8], nonce: &[u8], aad: &[u8], pt: &[u8]) -> Option<(Vec<u8>, Vec<u8>)>
where
    AesGcm<C, U12, U16>: KeyInit + AeadInOut + AeadCore<NonceSize = U12, TagSize = U16>,
{
    let aead = AesGcm::<C, U12, U16>::new_from_slice(key).ok()?;
    let nonce = Nonce::<U12>::try_from(nonce).ok()?;
    let mut buf = pt.to_vec();
    let tag = aead
        .encrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into())
        .ok()?;
    Some((buf, tag.to_vec()))
}

fn gcm_decrypt<C, T>(key: &[u8], nonce: &[u8], aad: &[u8], ct: &[u8], tag: &[u8]) -> Option<Vec<u8>>
where
    T: aes_gcm::TagSize,
    AesGcm<C, U12, T>: KeyInit + AeadInOut + AeadCore<NonceSize = U12, TagSize = T>,
{
    let aead = AesGcm::<C, U12, T>::new_from_slice(key).ok()?;
    let nonce = Nonce::<U12>::try_from(nonce).ok()?;
    let tag = Tag::<T>::try_from(tag).ok()?;
    let mut buf = ct.to_vec();
    match aead.decrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into(), &tag) {
        Ok(()) => Some(buf),
        Err(_) => {
            // Wipe whatever the cipher left in the buffer before dropping it.
            drop(Zeroizing::new(buf));
            None
        }
    }
}

fn cbc_encrypt<C>(key: &[u8], iv: &[u8], pt: &[u8]) -> Option<(Vec<u8>, Vec<u8>)>
where
    cbc::Encryptor<C>: KeyIvInit + BlockModeEncrypt,
    C: cbc::cipher::BlockCipherEncrypt,
{
    let enc = cbc::Encryptor::<C>::new_from_slices(key, iv).ok()?;
    Some((enc.encrypt_padded_vec::<Pkcs7>(pt), Vec::new()))
}

fn cbc_decrypt<C>(key: &[u8], iv: &[u8], ct: &[u8]) -> Option<Vec<u8>>
where
    cbc::Decryptor<C>: KeyIvInit + BlockModeDecrypt,
    C: cbc::cipher::BlockCipherDecrypt,
{
    let dec = cbc::Decryptor::<C>::new_from_slices(key, iv).ok()?;
    dec.decrypt_padded_vec::<Pkcs7>(ct).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_cipher_round_trips_and_rejects_a_flipped_bit() {
        let mut rng = rand::rngs::ChaCha20Rng::seed_from_u64(1);
        for cipher in [
            ContentCipher::Aes128Gcm,
            ContentCipher::Aes256Gcm,
            ContentCipher::Aes128Cbc,
            ContentCipher::Aes192Cbc,
            ContentCipher::Aes256Cbc,
        ] {
            let p = ContentParams::fresh(cipher, &mut rng);
            let decoded = ContentParams::decode(&p.algorithm().unwrap()).unwrap();
            assert_eq!(decoded, p);
            let key = vec![9u8; cipher.key_len()];
            let (ct, tag) = p.encrypt(&key, b"", b"v=0\r\n").unwrap();
            assert_eq!(&p.decrypt(&key, b"", &ct, &tag).unwrap()[..], b"v=0\r\n");
            if cipher.is_aead() {
                let mut bad = ct.clone();
                bad[0] ^= 1;
                assert!(p.decrypt(&key, b"", &bad, &tag).is_err());
                assert!(
                    p.decrypt(&key, b"x", &ct, &tag).is_err(),
                    "AAD is authenticated"
                );
            }
            let wrong = vec![8u8; cipher.key_len()];
            let r = p.decrypt(&wrong, b"", &ct, &tag);
            if cipher.is_aead() {
                assert!(r.is_err());
            }
        }
    }

    /// aws-lc-rs and the `aes-gcm` crate agree byte for byte, and each
    /// opens what the other sealed (every length across the block size).
    #[cfg(feature = "aws-lc")]
    #[test]
    fn aws_lc_gcm_agrees_with_the_aes_gcm_crate() {
        let nonce = [0x5au8; 12];
        for cipher in [ContentCipher::Aes128Gcm, ContentCipher::Aes256Gcm] {
            let key: Vec<u8> = (0..cipher.key_len() as u8).collect();
            for len in 0..70usize {
                let pt: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let aad = vec![len as u8; len % 5];
                let ours = lc::gcm_encrypt(cipher, &key, &nonce, &aad, &pt).unwrap();
                let theirs = match cipher {
                    ContentCipher::Aes128Gcm => gcm_encrypt::<Aes128>(&key, &nonce, &aad, &pt),
                    _ => gcm_encrypt::<Aes256>(&key, &nonce, &aad, &pt),
                }
                .unwrap();
                assert_eq!(ours, theirs, "{cipher:?}, {len} bytes");
                let (ct, tag) = ours;
                let opened = match cipher {
                    ContentCipher::Aes128Gcm => {
                        gcm_decrypt::<Aes128, U16>(&key, &nonce, &aad, &ct, &tag)
                    }
                    _ => gcm_decrypt::<Aes256, U16>(&key, &nonce, &aad, &ct, &tag),
                };
                assert_eq!(opened.as_deref(), Some(&pt[..]));
                assert_eq!(
                    lc::gcm_decrypt(cipher, &key, &nonce, &aad, &ct, &tag).as_deref(),
                    Some(&pt[..])
                );
                let mut bad = tag.clone();
                bad[15] ^= 1;
                assert!(lc::gcm_decrypt(cipher, &key, &nonce, &aad, &ct, &bad).is_none());
                // A tag of another length is refused, never read in part.
                assert!(lc::gcm_decrypt(cipher, &key, &nonce, &aad, &ct, &tag[..12]).is_none());
            }
        }
    }

    #[test]
    fn gcm_icv_len_default_is_12_and_16_is_written() {
        let mut rng = rand::rngs::ChaCha20Rng::seed_from_u64(2);
        let p = ContentParams::fresh(ContentCipher::Aes256Gcm, &mut rng);
        let der = p.algorithm().unwrap().parameters.unwrap().to_der().unwrap();
        // SEQUENCE { OCTET STRING (12), INTEGER 16 }
        assert_eq!(der.len(), 2 + 14 + 3);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 16]);
        let short = GcmParameters {
            nonce: OctetString::new(vec![0; 12]).unwrap(),
            icv_len: 12,
        };
        let alg = AlgorithmIdentifierOwned {
            oid: rfc5911::ID_AES_128_GCM,
            parameters: Some(Any::encode_from(&short).unwrap()),
        };
        assert_eq!(ContentParams::decode(&alg).unwrap().tag_len, 12);
    }
}
