//! KEKRecipientInfo (RFC 5652 §6.2.3): the content key wrapped with AES
//! key wrap (RFC 3394, RFC 3565) under a pre-shared key or a session KEK.
//!
//! ```text
//! KEKRecipientInfo ::= SEQUENCE {
//!   version CMSVersion,  -- always set to 4
//!   kekid KEKIdentifier,
//!   keyEncryptionAlgorithm KeyEncryptionAlgorithmIdentifier,
//!   encryptedKey EncryptedKey }
//! KEKIdentifier ::= SEQUENCE {
//!   keyIdentifier OCTET STRING,
//!   date GeneralizedTime OPTIONAL,
//!   other OtherKeyAttribute OPTIONAL }
//! ```

use aes_kw::{KeyInit, KwAes128, KwAes192, KwAes256};
use cms::content_info::CmsVersion;
use cms::enveloped_data::{KekIdentifier, KekRecipientInfo, RecipientInfo};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5911;
use der::asn1::OctetString;
use x509_cert::spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

use super::EnvelopeError;
use crate::keys::Psk;

/// The AES key-wrap algorithm for a KEK of this length.
fn kek_wrap_oid(kek_len: usize) -> Option<ObjectIdentifier> {
    match kek_len {
        16 => Some(rfc5911::ID_AES_128_WRAP),
        24 => Some(rfc5911::ID_AES_192_WRAP),
        32 => Some(rfc5911::ID_AES_256_WRAP),
        _ => None,
    }
}

/// Wrap `cek` under `kek` (RFC 3394).
pub fn kek_wrap(
    kek: &[u8],
    cek: &[u8],
) -> Result<(AlgorithmIdentifierOwned, Vec<u8>), EnvelopeError> {
    let oid = kek_wrap_oid(kek.len())
        .ok_or_else(|| EnvelopeError::Encode(format!("a {}-byte KEK", kek.len())))?;
    let mut buf = vec![0u8; cek.len() + 8];
    let fail = |e: aes_kw::Error| EnvelopeError::Encode(format!("AES key wrap: {e}"));
    #[cfg(feature = "aws-lc")]
    if let Some(len) = lc::wrap(kek, cek, &mut buf) {
        let len = len.ok_or_else(|| EnvelopeError::Encode("AES key wrap".into()))?;
        buf.truncate(len);
        return Ok((
            AlgorithmIdentifierOwned {
                oid,
                parameters: None,
            },
            buf,
        ));
    }
    let len = match kek.len() {
        16 => KwAes128::new_from_slice(kek)
            .map_err(|_| EnvelopeError::Encode("KEK".into()))?
            .wrap_key(cek, &mut buf)
            .map_err(fail)?
            .len(),
        24 => KwAes192::new_from_slice(kek)
            .map_err(|_| EnvelopeError::Encode("KEK".into()))?
            .wrap_key(cek, &mut buf)
            .map_err(fail)?
            .len(),
        _ => KwAes256::new_from_slice(kek)
            .map_err(|_| EnvelopeError::Encode("KEK".into()))?
            .wrap_key(cek, &mut buf)
            .map_err(fail)?
            .len(),
    };
    buf.truncate(len);
    // RFC 3565 §2.3.2: the key-wrap AlgorithmIdentifier has absent parameters.
    Ok((
        AlgorithmIdentifierOwned {
            oid,
            parameters: None,
        },
        buf,
    ))
}

/// Unwrap; `Ok(None)` when the integrity check fails, `Err` when the
/// algorithm does not fit the key (a configuration problem, not a secret).
pub(super) fn kek_unwrap(
    alg: &AlgorithmIdentifierOwned,
    kek: &[u8],
    wrapped: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, EnvelopeError> {
    if kek_wrap_oid(kek.len()) != Some(alg.oid) {
        return Err(EnvelopeError::Unsupported(format!(
            "key wrap {} with a {}-byte pre-shared key",
            super::oid_name(&alg.oid),
            kek.len()
        )));
    }
    if wrapped.len() < 16 || !wrapped.len().is_multiple_of(8) {
        return Ok(None);
    }
    let mut buf = Zeroizing::new(vec![0u8; wrapped.len() - 8]);
    #[cfg(feature = "aws-lc")]
    if let Some(ok) = lc::unwrap(kek, wrapped, &mut buf) {
        return Ok(ok.map(|len| {
            buf.truncate(len);
            buf
        }));
    }
    let ok = match kek.len() {
        16 => KwAes128::new_from_slice(kek)
            .ok()
            .and_then(|k| k.unwrap_key(wrapped, &mut buf).ok().map(|s| s.len())),
        24 => KwAes192::new_from_slice(kek)
            .ok()
            .and_then(|k| k.unwrap_key(wrapped, &mut buf).ok().map(|s| s.len())),
        _ => KwAes256::new_from_slice(kek)
            .ok()
            .and_then(|k| k.unwrap_key(wrapped, &mut buf).ok().map(|s| s.len())),
    };
    Ok(ok.map(|len| {
        buf.truncate(len);
        buf
    }))
}

/// RFC 3394 through aws-lc-rs for 128- and 256-bit KEKs (its AES
/// assembly); `None` for a KEK it has no algorithm for (192 bits), which
/// the `aes-kw` crate then handles.
#[cfg(feature = "aws-lc")]
mod lc {
    use aws_lc_rs::key_wrap::{AES_128, AES_256, AesKek, KeyWrap};

    fn kek(key: &[u8]) -> Option<Result<AesKek, ()>> {
        let alg = match key.len() {
            16 => &AES_128,
            32 => &AES_256,
            _ => return None,
        };
        Some(AesKek::new(alg, key).map_err(|_| ()))
    }

    /// The wrapped length, or `Some(None)` when wrapping failed.
    pub(super) fn wrap(key: &[u8], cek: &[u8], out: &mut [u8]) -> Option<Option<usize>> {
        let k = kek(key)?;
        Some(k.ok().and_then(|k| k.wrap(cek, out).ok().map(|s| s.len())))
    }

    /// The unwrapped length, or `Some(None)` when the integrity check fails.
    pub(super) fn unwrap(key: &[u8], wrapped: &[u8], out: &mut [u8]) -> Option<Option<usize>> {
        let k = kek(key)?;
        Some(
            k.ok()
                .and_then(|k| k.unwrap(wrapped, out).ok().map(|s| s.len())),
        )
    }
}

/// Build the RecipientInfo for a pre-shared key.
pub fn kekri_for(psk: &Psk, cek: &[u8]) -> Result<RecipientInfo, EnvelopeError> {
    kekri_with_id(&psk.id_bytes(), &psk.key, cek)
}

/// A KEKRecipientInfo with an arbitrary key identifier (PSK id or session reference).
pub fn kekri_with_id(id: &[u8], kek: &[u8], cek: &[u8]) -> Result<RecipientInfo, EnvelopeError> {
    let enc = |e: der::Error| EnvelopeError::Encode(e.to_string());
    let (alg, wrapped) = kek_wrap(kek, cek)?;
    Ok(RecipientInfo::Kekri(KekRecipientInfo {
        version: CmsVersion::V4,
        kek_id: KekIdentifier {
            kek_identifier: OctetString::new(id.to_vec()).map_err(enc)?,
            date: None,
            other: None,
        },
        key_enc_alg: alg,
        encrypted_key: OctetString::new(wrapped).map_err(enc)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// aws-lc-rs and the `aes-kw` crate wrap alike and unwrap each other's.
    #[cfg(feature = "aws-lc")]
    #[test]
    fn aws_lc_key_wrap_agrees_with_the_aes_kw_crate() {
        for (len, cek_len) in [(16, 16), (16, 32), (32, 16), (32, 32), (32, 40)] {
            let kek: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(31)).collect();
            let cek: Vec<u8> = (0..cek_len as u8).collect();
            let mut ours = vec![0u8; cek_len + 8];
            assert_eq!(lc::wrap(&kek, &cek, &mut ours), Some(Some(cek_len + 8)));
            let mut theirs = vec![0u8; cek_len + 8];
            match len {
                16 => KwAes128::new_from_slice(&kek)
                    .unwrap()
                    .wrap_key(&cek, &mut theirs),
                _ => KwAes256::new_from_slice(&kek)
                    .unwrap()
                    .wrap_key(&cek, &mut theirs),
            }
            .unwrap();
            assert_eq!(ours, theirs);
            let mut back = vec![0u8; cek_len];
            assert_eq!(lc::unwrap(&kek, &theirs, &mut back), Some(Some(cek_len)));
            assert_eq!(back, cek);
            theirs[5] ^= 1;
            assert_eq!(lc::unwrap(&kek, &theirs, &mut back), Some(None));
        }
        assert_eq!(lc::wrap(&[0u8; 24], &[0u8; 16], &mut [0u8; 24]), None);
    }

    #[test]
    fn key_wrap_round_trip_and_tamper() {
        for len in [16, 24, 32] {
            let kek = vec![3u8; len];
            let (alg, wrapped) = kek_wrap(&kek, &[5u8; 32]).unwrap();
            assert_eq!(
                &kek_unwrap(&alg, &kek, &wrapped).unwrap().unwrap()[..],
                &[5u8; 32]
            );
            let mut bad = wrapped.clone();
            bad[3] ^= 0x40;
            assert!(kek_unwrap(&alg, &kek, &bad).unwrap().is_none());
        }
    }
}
