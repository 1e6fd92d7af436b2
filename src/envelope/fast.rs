//! The envelope of an in-dialog message read directly: AuthEnvelopedData
//! with one KEKRecipientInfo and nothing optional, the shape every message
//! sealed under a session key has (docs/SPEC.md §3.2). A designated relay
//! opens every in-dialog message, so this shape skips the generic pass
//! (BER check, the `cms` tree, the SET OF order check) and reads each
//! element where it must be.
//!
//! ```text
//! ContentInfo ::= SEQUENCE { id-ct-authEnvelopedData, [0] EXPLICIT
//!   AuthEnvelopedData ::= SEQUENCE {
//!     version 0,
//!     SET { [2] IMPLICIT KEKRecipientInfo ::= SEQUENCE {
//!       version 4, SEQUENCE { keyIdentifier OCTET STRING },
//!       SEQUENCE { key-wrap OID }, encryptedKey OCTET STRING } },
//!     SEQUENCE { id-data, SEQUENCE { OID, parameters }, [0] IMPLICIT OCTET STRING },
//!     mac OCTET STRING } }
//! ```
//!
//! Anything else (another shape, a length that is not DER, an element
//! this does not expect) gives `None`, and [`super::Envelope::parse`]
//! reads the input the general way: what this accepts is a subset of what
//! that accepts, read to the same [`super::Envelope`] (a test holds the
//! two together, byte mutations included).

use cms::content_info::CmsVersion;
use cms::enveloped_data::{KekIdentifier, KekRecipientInfo, RecipientInfo};
use const_oid::db::rfc5911;
use der::asn1::OctetString;
use x509_cert::spki::AlgorithmIdentifierOwned;

use super::{ContentCipher, ContentParams, Envelope, EnvelopeKind};

/// The first element of `input`: its tag, its value, and what follows it.
/// A one-octet tag and a DER length (X.690 §10.1: definite, in the fewest
/// octets); anything else is `None`. Read here rather than by
/// `der::Header` (which reads the same, a test holds them together) for
/// speed: a dozen elements a message.
fn split(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = match first {
        0..=0x7f => usize::from(first),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            if rest.len() < n || rest[0] == 0 {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |l, &b| l << 8 | usize::from(b));
            rest = &rest[n..];
            // The short form where it fits.
            if len < 0x80 {
                return None;
            }
            len
        }
        _ => return None,
    };
    let value = rest.get(..len)?;
    Some((tag, value, &rest[len..]))
}

/// The value of the first element of `input` when its tag is `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match split(input)? {
        (t, value, rest) if t == tag => Some((value, rest)),
        _ => None,
    }
}

/// The identifier octets this shape has (X.690 §8.1.2).
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
/// `[0]` and `[2]`, constructed; `[0]` primitive.
const CONTEXT_0: u8 = 0xa0;
const CONTEXT_2: u8 = 0xa2;
const CONTEXT_0_PRIMITIVE: u8 = 0x80;

/// GCMParameters (RFC 5084 §3.2) as sipseal writes them: a 12-byte nonce
/// and a 16-byte tag, or the tag left at its DEFAULT of 12.
fn gcm_parameters(params: &[u8]) -> Option<(&[u8], u8)> {
    match params {
        [SEQUENCE, 0x11, OCTET_STRING, 0x0c, rest @ ..] if rest.len() == 15 => {
            (rest[12..] == [INTEGER, 0x01, 0x10]).then(|| (&rest[..12], 16))
        }
        [SEQUENCE, 0x0e, OCTET_STRING, 0x0c, nonce @ ..] if nonce.len() == 12 => Some((nonce, 12)),
        _ => None,
    }
}

/// The session shape, or `None` for anything else.
pub(super) fn session_envelope(input: &[u8]) -> Option<Envelope> {
    let (ci, rest) = expect(input, SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (content_type, ci) = expect(ci, OID)?;
    if content_type != rfc5911::ID_CT_AUTH_ENVELOPED_DATA.as_bytes() {
        return None;
    }
    let (explicit, rest) = expect(ci, CONTEXT_0)?;
    let (aed, after) = expect(explicit, SEQUENCE)?;
    if !rest.is_empty() || !after.is_empty() {
        return None;
    }
    // version 0, and no originatorInfo ([0]) before the SET.
    let (version, aed) = expect(aed, INTEGER)?;
    let (set, aed) = expect(aed, SET)?;
    if version != [0] {
        return None;
    }
    let (kekri, rest) = expect(set, CONTEXT_2)?;
    if !rest.is_empty() {
        return None;
    }
    let (kek_version, kekri) = expect(kekri, INTEGER)?;
    let (kek_id, kekri) = expect(kekri, SEQUENCE)?;
    let (id, no_date) = expect(kek_id, OCTET_STRING)?;
    let (wrap_alg, kekri) = expect(kekri, SEQUENCE)?;
    let (wrap_oid, no_params) = expect(wrap_alg, OID)?;
    let (wrapped, rest) = expect(kekri, OCTET_STRING)?;
    if kek_version != [4] || !no_date.is_empty() || !no_params.is_empty() || !rest.is_empty() {
        return None;
    }
    let (eci, aed) = expect(aed, SEQUENCE)?;
    let (inner_type, eci) = expect(eci, OID)?;
    let (alg, eci) = expect(eci, SEQUENCE)?;
    let (alg_oid, params) = expect(alg, OID)?;
    let (encrypted, rest) = expect(eci, CONTEXT_0_PRIMITIVE)?;
    if inner_type != rfc5911::ID_DATA.as_bytes() || !rest.is_empty() {
        return None;
    }
    // No authAttrs ([1]) before the mac, no unauthAttrs ([2]) after it.
    let (mac, rest) = expect(aed, OCTET_STRING)?;
    if !rest.is_empty() {
        return None;
    }
    // The key-wrap and content algorithms by their encodings: the
    // constants, never an OID read.
    let wrap_oid = [
        rfc5911::ID_AES_128_WRAP,
        rfc5911::ID_AES_192_WRAP,
        rfc5911::ID_AES_256_WRAP,
    ]
    .into_iter()
    .find(|o| o.as_bytes() == wrap_oid)?;
    let cipher = [ContentCipher::Aes128Gcm, ContentCipher::Aes256Gcm]
        .into_iter()
        .find(|c| c.oid().as_bytes() == alg_oid)?;
    let content = match gcm_parameters(params) {
        Some((nonce, tag_len)) => ContentParams {
            cipher,
            iv: nonce.to_vec(),
            tag_len,
        },
        // Any other encoding: as the general way reads it.
        None => ContentParams::decode_parts(&cipher.oid(), Some(params)).ok()?,
    };
    if mac.len() != usize::from(content.tag_len) {
        return None;
    }
    let kekri = KekRecipientInfo {
        version: CmsVersion::V4,
        kek_id: KekIdentifier {
            kek_identifier: OctetString::new(id).ok()?,
            date: None,
            other: None,
        },
        key_enc_alg: AlgorithmIdentifierOwned {
            oid: wrap_oid,
            parameters: None,
        },
        encrypted_key: OctetString::new(wrapped).ok()?,
    };
    Some(Envelope {
        kind: EnvelopeKind::AuthEnvelopedData,
        version: 0,
        recipients: vec![RecipientInfo::Kekri(kekri)],
        inner_type: rfc5911::ID_DATA,
        params: content,
        originator_info: false,
        auth_attrs: 0,
        unauth_attrs: 0,
        encrypted: encrypted.to_vec(),
        mac: mac.to_vec(),
        aad: Vec::new(),
    })
}

/// The octets of a DER header for a value of `len` bytes: the tag and
/// the length in the fewest octets.
fn header_len(len: usize) -> usize {
    let octets = (usize::BITS - len.leading_zeros()).div_ceil(8) as usize;
    if len < 0x80 { 2 } else { 2 + octets }
}

/// A whole element of `len` value bytes.
fn element_len(len: usize) -> usize {
    header_len(len) + len
}

fn put_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn put(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    put_header(out, tag, value.len());
    out.extend_from_slice(value);
}

/// The session shape written directly: what [`super::seal_infos`] writes
/// for one KEKRecipientInfo under AES-GCM, byte for byte (a test holds
/// them equal), without building the `cms` tree to encode it.
pub(super) struct SessionShape<'a> {
    pub kek_id: &'a [u8],
    pub wrap_oid: &'a [u8],
    pub wrapped: &'a [u8],
    pub cipher_oid: &'a [u8],
    pub params: &'a ContentParams,
    pub ciphertext: &'a [u8],
    pub tag: &'a [u8],
}

impl SessionShape<'_> {
    pub(super) fn to_der(&self) -> Vec<u8> {
        let kek_id = element_len(element_len(self.kek_id.len()));
        let wrap_alg = element_len(element_len(self.wrap_oid.len()));
        // version 4, kekid, keyEncryptionAlgorithm, encryptedKey.
        let kekri = 3 + kek_id + wrap_alg + element_len(self.wrapped.len());
        let set = element_len(kekri);
        // GCMParameters: the tag length only when not the DEFAULT 12.
        let icv = if self.params.tag_len == 12 { 0 } else { 3 };
        let gcm = element_len(self.params.iv.len()) + icv;
        let alg = element_len(self.cipher_oid.len()) + element_len(gcm);
        let eci = element_len(rfc5911::ID_DATA.as_bytes().len())
            + element_len(alg)
            + element_len(self.ciphertext.len());
        let aed = 3 + element_len(set) + element_len(eci) + element_len(self.tag.len());
        let ci = element_len(rfc5911::ID_CT_AUTH_ENVELOPED_DATA.as_bytes().len())
            + element_len(element_len(aed));
        let mut out = Vec::with_capacity(element_len(ci));
        put_header(&mut out, SEQUENCE, ci);
        put(&mut out, OID, rfc5911::ID_CT_AUTH_ENVELOPED_DATA.as_bytes());
        put_header(&mut out, CONTEXT_0, element_len(aed));
        put_header(&mut out, SEQUENCE, aed);
        put(&mut out, INTEGER, &[0]);
        put_header(&mut out, SET, set);
        put_header(&mut out, CONTEXT_2, kekri);
        put(&mut out, INTEGER, &[4]);
        put_header(&mut out, SEQUENCE, element_len(self.kek_id.len()));
        put(&mut out, OCTET_STRING, self.kek_id);
        put_header(&mut out, SEQUENCE, element_len(self.wrap_oid.len()));
        put(&mut out, OID, self.wrap_oid);
        put(&mut out, OCTET_STRING, self.wrapped);
        put_header(&mut out, SEQUENCE, eci);
        put(&mut out, OID, rfc5911::ID_DATA.as_bytes());
        put_header(&mut out, SEQUENCE, alg);
        put(&mut out, OID, self.cipher_oid);
        put_header(&mut out, SEQUENCE, gcm);
        put(&mut out, OCTET_STRING, &self.params.iv);
        if icv != 0 {
            put(&mut out, INTEGER, &[self.params.tag_len]);
        }
        put(&mut out, CONTEXT_0_PRIMITIVE, self.ciphertext);
        put(&mut out, OCTET_STRING, self.tag);
        out
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::ChaCha20Rng;

    use super::super::kekri::kekri_with_id;
    use super::super::{ContentCipher, Envelope, seal_infos};
    use super::session_envelope;

    fn sealed(cipher: ContentCipher, id: &[u8], content: &[u8]) -> Vec<u8> {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let cek = vec![5u8; cipher.key_len()];
        let info = kekri_with_id(id, &[7u8; 32], &cek).unwrap();
        seal_infos(content, &cek, vec![info], cipher, &mut rng).unwrap()
    }

    /// What the direct read gives, the general one gives too: on session
    /// envelopes, and on every one-byte change and cut of them (where the
    /// direct read declines, the general one decides alone).
    #[test]
    fn the_direct_read_agrees_with_the_general_one() {
        let inputs = [
            sealed(
                ContentCipher::Aes256Gcm,
                &[1u8; 16],
                b"Content-Type: text/plain\r\n\r\nhi",
            ),
            sealed(ContentCipher::Aes128Gcm, b"alice-proxy-a", b""),
        ];
        let mut direct = 0;
        for input in &inputs {
            let env = session_envelope(input).expect("a session envelope is read directly");
            let general = Envelope::parse_general(input).unwrap();
            assert_eq!(format!("{env:?}"), format!("{general:?}"));
            let mut cases: Vec<Vec<u8>> = (0..input.len()).map(|n| input[..n].to_vec()).collect();
            for i in 0..input.len() {
                for b in [
                    input[i] ^ 0x01,
                    input[i] ^ 0x80,
                    0x00,
                    0xff,
                    input[i].wrapping_add(1),
                ] {
                    let mut m = input.clone();
                    m[i] = b;
                    cases.push(m);
                }
                let mut longer = input.clone();
                longer.insert(i, 0);
                cases.push(longer);
            }
            for m in &cases {
                if let Some(fast) = session_envelope(m) {
                    direct += 1;
                    let general = Envelope::parse_general(m).unwrap_or_else(|e| {
                        panic!("read directly, refused generally ({e}): {m:02x?}")
                    });
                    assert_eq!(format!("{fast:?}"), format!("{general:?}"), "{m:02x?}");
                }
            }
        }
        // Changes inside the values (key id, nonce, ciphertext, tag) keep
        // the shape: the comparison above ran on them.
        assert!(
            direct > 500,
            "only {direct} changed inputs were read directly"
        );
    }

    /// The length reader agrees with `der`'s on the tags of the shape and
    /// every length of up to two octets, and on longer lengths around each
    /// boundary.
    #[test]
    fn split_reads_lengths_as_der_does() {
        use der::{Decode, Encode, Header, Reader, SliceReader};
        fn der_split(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
            let mut r = SliceReader::new(input).ok()?;
            let h = Header::decode(&mut r).ok()?;
            let start = usize::try_from(r.position()).ok()?;
            let end = start + usize::try_from(h.length()).ok()?;
            let tag = *h.tag().to_der().ok()?.first()?;
            Some((tag, input.get(start..end)?, input.get(end..)?))
        }
        let body = vec![0xabu8; 70_000];
        let mut cases: Vec<Vec<u8>> = Vec::new();
        let tags = [
            super::SEQUENCE,
            super::SET,
            super::INTEGER,
            super::OCTET_STRING,
            super::OID,
            super::CONTEXT_0,
            super::CONTEXT_2,
            super::CONTEXT_0_PRIMITIVE,
        ];
        for tag in tags {
            for len in 0..=255u8 {
                cases.push([&[tag, len][..], &body[..300]].concat());
            }
        }
        for first in 0x80..=0x85u8 {
            for a in [0u8, 1, 0x7f, 0x80, 0xff] {
                for b in [0u8, 1, 0x7f, 0x80, 0xff] {
                    cases.push([&[super::OCTET_STRING, first, a, b, 0][..], &body].concat());
                }
            }
        }
        for c in &cases {
            let ours = super::split(c);
            let theirs = der_split(c);
            // An indefinite length is declined here (the general way
            // reads it); all else agrees.
            if ours.is_some() || c[1] != 0x80 {
                assert_eq!(ours, theirs, "{:02x?}", &c[..5]);
            }
        }
    }

    /// The direct writer writes what the general one does, for each GCM
    /// cipher, key-wrap size and a content long enough for long lengths.
    #[test]
    fn the_direct_writer_writes_what_seal_infos_does() {
        use super::super::seal_for_kek;
        for cipher in [ContentCipher::Aes128Gcm, ContentCipher::Aes256Gcm] {
            for kek_len in [16, 24, 32] {
                for content_len in [0, 1, 100, 300, 70_000] {
                    let content = vec![0x5a; content_len];
                    let kek = vec![7u8; kek_len];
                    let cek = vec![5u8; cipher.key_len()];
                    let id = [9u8; 16];
                    let general = {
                        let mut rng = ChaCha20Rng::seed_from_u64(3);
                        let info = kekri_with_id(&id, &kek, &cek).unwrap();
                        seal_infos(&content, &cek, vec![info], cipher, &mut rng).unwrap()
                    };
                    let mut rng = ChaCha20Rng::seed_from_u64(3);
                    let direct = seal_for_kek(&content, &cek, &id, &kek, cipher, &mut rng).unwrap();
                    assert_eq!(
                        direct, general,
                        "{cipher:?}, {kek_len}-byte KEK, {content_len} bytes"
                    );
                    assert!(session_envelope(&direct).is_some());
                }
            }
        }
    }

    /// Other shapes go the general way.
    #[test]
    fn other_shapes_are_not_read_directly() {
        let input = sealed(ContentCipher::Aes256Gcm, &[1u8; 16], b"x");
        // The same envelope with indefinite lengths (BER).
        let header = match input[1] {
            n if n & 0x80 == 0 => 2,
            n => 2 + usize::from(n & 0x7f),
        };
        let mut ber = vec![0x30, 0x80];
        ber.extend_from_slice(&input[header..]);
        ber.extend_from_slice(&[0, 0]);
        assert!(session_envelope(&ber).is_none());
        assert_eq!(
            format!("{:?}", Envelope::parse(&ber).unwrap()),
            format!("{:?}", Envelope::parse(&input).unwrap())
        );
        // CBC content (EnvelopedData).
        let cbc = sealed(ContentCipher::Aes256Cbc, &[1u8; 16], b"x");
        assert!(session_envelope(&cbc).is_none());
        assert!(Envelope::parse(&cbc).is_ok());
        // Trailing bytes.
        let mut trailing = input.clone();
        trailing.push(0);
        assert!(session_envelope(&trailing).is_none());
    }
}
