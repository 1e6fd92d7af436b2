//! The decryption path against RFC 3711 Appendix B and RFC 7714 §16–17.
//!
//! webrtc-srtp takes master keys only, and the RFC 7714 vectors (and
//! RFC 3711 B.2) are stated on session keys. So the vectors check a small
//! reference *sender* written here from the RFCs with RustCrypto's `aes`,
//! `ctr`, `hmac`, `sha1` and `aes-gcm` (B.3 its key derivation, B.2 its
//! AES-CM keystream, RFC 7714 its GCM packets, byte for byte); packets that
//! sender protects under a master key must then authenticate and decrypt
//! through [`Decryptor`], and fail with one bit flipped.

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{AesGcm, Nonce, Tag};
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    ::hex::decode(s).unwrap()
}

fn ctr_xor(key: &[u8], iv: &[u8], buf: &mut [u8]) {
    if key.len() == 32 {
        ctr::Ctr128BE::<aes::Aes256>::new_from_slices(key, iv)
            .unwrap()
            .apply_keystream(buf);
    } else {
        ctr::Ctr128BE::<aes::Aes128>::new_from_slices(key, iv)
            .unwrap()
            .apply_keystream(buf);
    }
}

/// RFC 3711 §4.3.1 with kdr 0: AES-CM keystream from x = salt XOR label.
fn kdf(master: &[u8], salt: &[u8], label: u8, len: usize) -> Vec<u8> {
    let mut iv = [0u8; 16];
    iv[..salt.len()].copy_from_slice(salt);
    iv[7] ^= label;
    let mut out = vec![0u8; len];
    ctr_xor(master, &iv, &mut out);
    out
}

/// Session keys: (rtp enc, rtp auth, rtp salt, rtcp enc, rtcp auth, rtcp salt).
struct Session {
    keys: [Vec<u8>; 6],
}

fn session(master: &[u8], salt: &[u8]) -> Session {
    let kl = master.len();
    let sl = salt.len();
    let lens = [kl, 20, sl, kl, 20, sl];
    Session {
        keys: std::array::from_fn(|l| kdf(master, salt, l as u8, lens[l])),
    }
}

fn gcm_seal(key: &[u8], iv: &[u8], aad: &[u8], buf: &mut Vec<u8>) {
    let nonce = Nonce::<U12>::try_from(iv).unwrap();
    let tag = if key.len() == 32 {
        AesGcm::<aes::Aes256, U12, U16>::new_from_slice(key)
            .unwrap()
            .encrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into())
            .unwrap()
    } else {
        AesGcm::<aes::Aes128, U12, U16>::new_from_slice(key)
            .unwrap()
            .encrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into())
            .unwrap()
    };
    buf.extend_from_slice(&tag);
}

fn gcm_open(key: &[u8], iv: &[u8], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let (ct, tag) = sealed.split_at(sealed.len() - 16);
    let nonce = Nonce::<U12>::try_from(iv).unwrap();
    let tag = Tag::<U16>::try_from(tag).unwrap();
    let mut buf = ct.to_vec();
    let ok = if key.len() == 32 {
        AesGcm::<aes::Aes256, U12, U16>::new_from_slice(key)
            .unwrap()
            .decrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into(), &tag)
    } else {
        AesGcm::<aes::Aes128, U12, U16>::new_from_slice(key)
            .unwrap()
            .decrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into(), &tag)
    };
    ok.ok().map(|()| buf)
}

/// RFC 7714 §8.1: 00 00 | SSRC | ROC | SEQ, XOR the salt.
fn gcm_rtp_iv(salt: &[u8], rtp: &[u8], roc: u32) -> Vec<u8> {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&rtp[8..12]);
    iv[6..10].copy_from_slice(&roc.to_be_bytes());
    iv[10..12].copy_from_slice(&rtp[2..4]);
    iv.iter().zip(salt).map(|(a, b)| a ^ b).collect()
}

/// RFC 7714 §9.1: 00 00 | SSRC | 00 00 | 0 | index, XOR the salt.
fn gcm_rtcp_iv(salt: &[u8], rtcp: &[u8], index: u32) -> Vec<u8> {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&rtcp[4..8]);
    iv[8..12].copy_from_slice(&(index & 0x7fff_ffff).to_be_bytes());
    iv.iter().zip(salt).map(|(a, b)| a ^ b).collect()
}

/// Reference SRTP sender, RFC 7714 §7: the header is the AAD.
fn gcm_protect_rtp(key: &[u8], salt: &[u8], rtp: &[u8], roc: u32) -> Vec<u8> {
    let iv = gcm_rtp_iv(salt, rtp, roc);
    let mut body = rtp[12..].to_vec();
    gcm_seal(key, &iv, &rtp[..12], &mut body);
    [&rtp[..12], &body[..]].concat()
}

/// Reference SRTCP sender, RFC 7714 §9.2 (E set): AAD is the first eight
/// octets and the E|index word.
fn gcm_protect_rtcp(key: &[u8], salt: &[u8], rtcp: &[u8], index: u32) -> Vec<u8> {
    let iv = gcm_rtcp_iv(salt, rtcp, index);
    let word = (index | 0x8000_0000).to_be_bytes();
    let aad = [&rtcp[..8], &word[..]].concat();
    let mut body = rtcp[8..].to_vec();
    gcm_seal(key, &iv, &aad, &mut body);
    [&rtcp[..8], &body[..], &word[..]].concat()
}

/// Reference AES-CM SRTP sender (RFC 3711 §4.1.1, §4.2): tag over the
/// packet and the ROC.
fn cm_protect_rtp(s: &Session, rtp: &[u8], roc: u32, tag_len: usize) -> Vec<u8> {
    let [enc, auth, salt, ..] = &s.keys;
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (i, b) in rtp[8..12].iter().enumerate() {
        iv[4 + i] ^= b;
    }
    let index = (u64::from(roc) << 16) | u64::from(u16::from_be_bytes([rtp[2], rtp[3]]));
    for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
        iv[8 + i] ^= b;
    }
    let mut out = rtp.to_vec();
    ctr_xor(enc, &iv, &mut out[12..]);
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(auth).unwrap();
    mac.update(&out);
    mac.update(&roc.to_be_bytes());
    let tag = mac.finalize().into_bytes();
    out.extend_from_slice(&tag[..tag_len]);
    out
}

/// Reference AES-CM SRTCP sender (RFC 3711 §3.4, E set, 80-bit tag).
fn cm_protect_rtcp(s: &Session, rtcp: &[u8], index: u32) -> Vec<u8> {
    let [.., enc, auth, salt] = &s.keys;
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (i, b) in rtcp[4..8].iter().enumerate() {
        iv[4 + i] ^= b;
    }
    for (i, b) in index.to_be_bytes().iter().enumerate() {
        iv[10 + i] ^= b;
    }
    let mut out = rtcp.to_vec();
    ctr_xor(enc, &iv, &mut out[8..]);
    out.extend_from_slice(&(index | 0x8000_0000).to_be_bytes());
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(auth).unwrap();
    mac.update(&out);
    let tag = mac.finalize().into_bytes();
    out.extend_from_slice(&tag[..10]);
    out
}

const B3_MASTER_KEY: &str = "E1F97A0D3E018BE0D64FA32C06DE4139";
const B3_MASTER_SALT: &str = "0EC675AD498AFEEBB6960B3AABE6";

/// RFC 3711 B.3: the reference sender's key derivation gives the RFC's
/// session keys.
#[test]
fn rfc3711_b3_key_derivation() {
    let s = session(&hex(B3_MASTER_KEY), &hex(B3_MASTER_SALT));
    assert_eq!(s.keys[0], hex("C61E7A93744F39EE10734AFE3FF7A087"));
    assert_eq!(s.keys[2], hex("30CBBC08863D8C85D49DB34A9AE1"));
    assert_eq!(s.keys[1], hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
}

/// RFC 3711 B.2: the AES-CM keystream for session key 2B7E...4F3C and
/// salt F0F1...FCFD, SSRC and index 0 (the IV is the shifted salt).
#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let key = hex("2B7E151628AED2A6ABF7158809CF4F3C");
    let iv = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000");
    let mut ks = vec![0u8; 65282 * 16];
    ctr_xor(&key, &iv, &mut ks);
    assert_eq!(
        ks[..48],
        hex("E03EAD0935C95E80E166B16DD92B4EB4
             D23513162B02D0F72A43A2FE4A5F97AB
             41E95B3BB0A2E8DD477901E4FCA894C0")[..]
    );
    assert_eq!(
        ks[ks.len() - 48..],
        hex("EC8CDF7398607CB0F2D21675EA9EA1E4
             362B7C3C6773516318A077D7FC5073AE
             6A2CC3787889374FBEB4C81B17BA6C44")[..]
    );
}

fn rtp_packet(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn sender_report(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0x00, 0x06];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x11; 20]);
    p
}

fn inline(key: &[u8], salt: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "inline:{}",
        base64::engine::general_purpose::STANDARD.encode([key, salt].concat())
    )
}

/// The B.3 master key through the recorder's path: packets the reference
/// sender protects (AES_CM_128_HMAC_SHA1_80 and _32, SRTP and SRTCP)
/// decrypt to the plaintext; one bit flipped anywhere fails.
#[test]
fn rfc3711_b3_master_key_decrypts_through_the_path_and_a_flipped_bit_fails() {
    let (mk, ms) = (hex(B3_MASTER_KEY), hex(B3_MASTER_SALT));
    let s = session(&mk, &ms);
    for (suite, tag_len) in [
        ("AES_CM_128_HMAC_SHA1_80", 10),
        ("AES_CM_128_HMAC_SHA1_32", 4),
    ] {
        let key = MasterKey::parse(suite, &inline(&mk, &ms)).unwrap();
        let mut d = Decryptor::new(&key).unwrap();
        for seq in [65530u16, 65535, 0, 3] {
            let roc = u32::from(seq < 100);
            let plain = rtp_packet(seq, 0xcafe_f00d, b"sipseal records this call");
            let srtp = cm_protect_rtp(&s, &plain, roc, tag_len);
            for bit in [0, 8 * 13, 8 * srtp.len() - 1] {
                let mut bad = srtp.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(d.rtp(&bad), Outcome::AuthFailed, "{suite} bit {bit}");
            }
            assert_eq!(d.rtp(&srtp), Outcome::Plain(plain), "{suite} seq {seq}");
        }
        let rtcp = sender_report(0xcafe_f00d);
        let srtcp = cm_protect_rtcp(&s, &rtcp, 7);
        let mut bad = srtcp.clone();
        bad[9] ^= 0x40;
        assert_eq!(d.rtcp(&bad), Outcome::AuthFailed);
        assert_eq!(d.rtcp(&srtcp), Outcome::Plain(rtcp.clone()));
        // E clear: the crate would return it unchecked; refused here.
        let mut clear = srtcp.clone();
        let e = clear.len() - 14;
        clear[e] &= 0x7f;
        assert_eq!(d.rtcp(&clear), Outcome::Unverified);
    }
}

const GCM_KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
const GCM_KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const GCM_SALT: &str = "517569642070726f2071756f";
/// RFC 7714 §16: header 8040f17b 8041f8d3 5501a0b2, "Gallia est omnis
/// divisa in partes tres".
const RFC7714_RTP: &str = "8040f17b8041f8d35501a0b247616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573";
/// §16.1.1 (AEAD_AES_128_GCM) and §16.2.1 (AEAD_AES_256_GCM).
const RFC7714_SRTP_128: &str = "8040f17b8041f8d35501a0b2f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce";
const RFC7714_SRTP_256: &str = "8040f17b8041f8d35501a0b232b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b7aa3db36dfffd6b0f9bb7878d7a76c13";
/// §17: the RTCP packet (SSRC "Mars") the subsections protect, at index 0x5d4.
const RFC7714_RTCP: &str = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
/// §17.1 (128) and §17.2 (256), encrypted; §17.3 authenticated only (E clear).
const RFC7714_SRTCP_128: &str = "81c8000d4d61727363e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4";
const RFC7714_SRTCP_256: &str = "81c8000d4d617273d50ae4d1f5ce5d304ba297e47d470c282c3ece5dbffe0a50a2eaa5c1110555be8415f658c61de0476f1b6fad1d1eb30c4446839f57ff6f6cb26ac3be800005d4";
const RFC7714_SRTCP_128_AUTH_ONLY: &str = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef841dd9683dd78ec92ae58790125f62b3000005d4";

/// RFC 7714 §16 and §17: the reference sender protects the RFC's packets
/// into the RFC's bytes, and opens them again.
#[test]
fn rfc7714_vectors_through_the_reference_sender() {
    let salt = hex(GCM_SALT);
    let rtp = hex(RFC7714_RTP);
    assert_eq!(gcm_rtp_iv(&salt, &rtp, 0), hex("51753c6580c2726f20718414"));
    let rtcp = hex(RFC7714_RTCP);
    for (key, srtp, srtcp) in [
        (GCM_KEY_128, RFC7714_SRTP_128, RFC7714_SRTCP_128),
        (GCM_KEY_256, RFC7714_SRTP_256, RFC7714_SRTCP_256),
    ] {
        let key = hex(key);
        assert_eq!(gcm_protect_rtp(&key, &salt, &rtp, 0), hex(srtp));
        let sealed = hex(srtp);
        let iv = gcm_rtp_iv(&salt, &rtp, 0);
        assert_eq!(
            gcm_open(&key, &iv, &sealed[..12], &sealed[12..]).unwrap(),
            rtp[12..]
        );
        assert_eq!(gcm_protect_rtcp(&key, &salt, &rtcp, 0x5d4), hex(srtcp));
    }
    // §17.3: E clear, nothing encrypted; the packet and the word are the AAD.
    let key = hex(GCM_KEY_128);
    let iv = gcm_rtcp_iv(&salt, &rtcp, 0x5d4);
    let aad = [&rtcp[..], &0x5d4u32.to_be_bytes()[..]].concat();
    let mut tag = Vec::new();
    gcm_seal(&key, &iv, &aad, &mut tag);
    let want = hex(RFC7714_SRTCP_128_AUTH_ONLY);
    assert_eq!(tag, want[rtcp.len()..rtcp.len() + 16]);
}

/// RFC 7714 through the recorder's path: with the RFC's key and salt as a
/// *master* key (the crate derives session keys, RFC 7714 §11), the
/// RFC's packets protected by the reference sender under the derived
/// keys decrypt to the RFC's plaintext; one bit flipped fails. The
/// crate's SRTCP ignores the E flag, so §17.3's authenticated-only packet
/// is refused (counted as a failure, never written).
#[test]
fn rfc7714_packets_decrypt_through_the_path_and_a_flipped_bit_fails() {
    let salt = hex(GCM_SALT);
    let rtp = hex(RFC7714_RTP);
    let rtcp = hex(RFC7714_RTCP);
    for (suite, key) in [
        ("AEAD_AES_128_GCM", GCM_KEY_128),
        ("AEAD_AES_256_GCM", GCM_KEY_256),
    ] {
        let mk = hex(key);
        let s = session(&mk, &salt);
        let mut d = Decryptor::new(&MasterKey::parse(suite, &inline(&mk, &salt)).unwrap()).unwrap();
        let srtp = gcm_protect_rtp(&s.keys[0], &s.keys[2], &rtp, 0);
        let mut bad = srtp.clone();
        bad[20] ^= 1;
        assert_eq!(d.rtp(&bad), Outcome::AuthFailed, "{suite}");
        assert_eq!(d.rtp(&srtp), Outcome::Plain(rtp.clone()), "{suite}");
        let srtcp = gcm_protect_rtcp(&s.keys[3], &s.keys[5], &rtcp, 0x5d4);
        let mut bad = srtcp.clone();
        bad[3] ^= 1;
        assert_eq!(d.rtcp(&bad), Outcome::AuthFailed, "{suite}");
        assert_eq!(d.rtcp(&srtcp), Outcome::Plain(rtcp.clone()), "{suite}");
    }
    let mut d = Decryptor::new(
        &MasterKey::parse("AEAD_AES_128_GCM", &inline(&hex(GCM_KEY_128), &salt)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        d.rtcp(&hex(RFC7714_SRTCP_128_AUTH_ONLY)),
        Outcome::Unverified
    );
}

#[test]
fn key_params_lifetime_mki_and_suites() {
    let k = MasterKey::parse(
        "AES_CM_128_HMAC_SHA1_80",
        "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^4",
    )
    .unwrap();
    assert_eq!(k.lifetime, 16);
    assert_eq!(
        MasterKey::parse(
            "AES_CM_128_HMAC_SHA1_80",
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"
        ),
        Err(KeyError::Mki(
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4".into()
        ))
    );
    assert!(matches!(
        MasterKey::parse(
            "F8_128_HMAC_SHA1_80",
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
        ),
        Err(KeyError::UnknownSuite(_))
    ));
    assert!(matches!(
        MasterKey::parse(
            "AEAD_AES_128_GCM",
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
        ),
        Err(KeyError::BadParams { .. })
    ));
    // The lifetime: after 16 packets the key is not used.
    let s = session(&k.key, &k.salt);
    let mut d = Decryptor::new(&k).unwrap();
    for seq in 0..20u16 {
        let p = cm_protect_rtp(&s, &rtp_packet(seq, 1, &[0xff; 160]), 0, 10);
        let got = d.rtp(&p);
        assert_eq!(matches!(got, Outcome::Plain(_)), seq < 16, "{seq}");
        if seq >= 16 {
            assert_eq!(got, Outcome::Exhausted);
        }
    }
    // Truncated and hostile packets are failures, not panics.
    for p in [&[][..], &[0x80], &[0x80; 12], &[0x8f; 40], &[0x90; 20]] {
        assert_eq!(d.rtp(p), Outcome::Exhausted);
        let mut fresh = Decryptor::new(&k).unwrap();
        assert_eq!(fresh.rtp(p), Outcome::AuthFailed);
        assert_eq!(fresh.rtcp(p), Outcome::AuthFailed);
    }
}

/// baresip's (libre's) APP `PING`, sent in the clear as a stream starts,
/// and a plain RR+SDES: unprotected RTCP, not failed SRTCP, whatever the
/// key; SRTCP itself is never taken for plain.
#[test]
fn plain_rtcp_is_unprotected_not_an_authentication_failure() {
    let ping = hex("80cc0003c12ce5a750494e47504f4e47");
    let rr_sdes = hex("80c900010000111181ca000300001111010461626364 0000");
    let (mk, ms) = (hex(B3_MASTER_KEY), hex(B3_MASTER_SALT));
    let key = MasterKey::parse("AES_CM_128_HMAC_SHA1_80", &inline(&mk, &ms)).unwrap();
    let mut d = Decryptor::new(&key).unwrap();
    for p in [&ping, &rr_sdes] {
        assert!(plain_rtcp(p));
        assert_eq!(d.rtcp(p), Outcome::Unprotected);
    }
    let srtcp = cm_protect_rtcp(&session(&mk, &ms), &sender_report(7), 1);
    assert!(!plain_rtcp(&srtcp));
    let mut bad = srtcp.clone();
    bad[9] ^= 1;
    assert_eq!(d.rtcp(&bad), Outcome::AuthFailed);
    assert!(matches!(d.rtcp(&srtcp), Outcome::Plain(_)));
    // Short, truncated or not RTCP at all.
    for p in [
        &[][..],
        &ping[..15],
        &[0x80, 0xcc, 0, 0],
        &[0x80, 0x00, 0, 0],
    ] {
        assert_eq!(plain_rtcp(p), p.len() == 4 && p[1] == 0xcc, "{p:?}");
    }
}
