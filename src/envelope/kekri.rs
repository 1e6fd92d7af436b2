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
