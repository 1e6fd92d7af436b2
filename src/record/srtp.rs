//! SRTP and SRTCP decryption for recording: the SDES key parameters of an
//! `a=crypto` line (RFC 4568 §6.1) turned into a decryption context of the
//! `webrtc-srtp` crate (RFC 3711 AES-CM/HMAC-SHA1, RFC 6188 AES-256-CM,
//! RFC 7714 AES-GCM), with the key lifetime counted here: the crate keeps
//! the rollover counter (RFC 3711 §3.3.1) per SSRC, but no lifetime.
//!
//! ```text
//! key-params = key-method ":" key-info
//! key-info   = key-salt ["|" lifetime] ["|" mki]    ; inline:
//! lifetime   = ["2^"] 1*(DIGIT)
//! mki        = mki-value ":" mki-length
//! ```

use base64::Engine as _;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A suite this recorder does not decrypt.
    #[error("crypto suite {0} is not supported")]
    UnknownSuite(String),
    /// Key parameters that do not parse.
    #[error("key parameters {params:?}: {reason}")]
    BadParams {
        /// The parameters as written.
        params: String,
        /// What is wrong.
        reason: String,
    },
    /// An MKI (master key identifier): the SRTP crate has no MKI support.
    #[error("key parameters {0:?} carry an MKI, which is not supported")]
    Mki(String),
}

/// An SDES crypto suite (RFC 4568 §6.2, RFC 6188, RFC 7714 §14.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// `AES_CM_128_HMAC_SHA1_80`.
    AesCm128Sha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`.
    AesCm128Sha1_32,
    /// `AES_256_CM_HMAC_SHA1_80` (RFC 6188).
    AesCm256Sha1_80,
    /// `AES_256_CM_HMAC_SHA1_32` (RFC 6188).
    AesCm256Sha1_32,
    /// `AEAD_AES_128_GCM` (RFC 7714).
    AeadAes128Gcm,
    /// `AEAD_AES_256_GCM` (RFC 7714).
    AeadAes256Gcm,
}

impl Suite {
    /// The suite an `a=crypto` line names.
    pub fn parse(name: &str) -> Result<Suite, KeyError> {
        Ok(match name {
            "AES_CM_128_HMAC_SHA1_80" => Suite::AesCm128Sha1_80,
            "AES_CM_128_HMAC_SHA1_32" => Suite::AesCm128Sha1_32,
            "AES_256_CM_HMAC_SHA1_80" => Suite::AesCm256Sha1_80,
            "AES_256_CM_HMAC_SHA1_32" => Suite::AesCm256Sha1_32,
            "AEAD_AES_128_GCM" => Suite::AeadAes128Gcm,
            "AEAD_AES_256_GCM" => Suite::AeadAes256Gcm,
            other => return Err(KeyError::UnknownSuite(other.to_owned())),
        })
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            Suite::AesCm128Sha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Suite::AesCm128Sha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            Suite::AesCm256Sha1_80 => ProtectionProfile::Aes256CmHmacSha1_80,
            Suite::AesCm256Sha1_32 => ProtectionProfile::Aes256CmHmacSha1_32,
            Suite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            Suite::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
        }
    }

    /// Whether this is an AEAD suite (RFC 7714).
    pub fn is_aead(self) -> bool {
        matches!(self, Suite::AeadAes128Gcm | Suite::AeadAes256Gcm)
    }

    /// Octets after the RTP payload: the authentication tag (the AEAD tag
    /// counts as ciphertext, RFC 7714 §7).
    pub fn rtp_trailer(self) -> usize {
        let p = self.profile();
        p.rtp_auth_tag_len() + p.aead_auth_tag_len()
    }

    /// Octets after the RTCP compound packet: the E flag and SRTCP index,
    /// then the tag (RFC 3711 §3.4, RFC 7714 §9).
    pub fn rtcp_trailer(self) -> usize {
        let p = self.profile();
        4 + p.rtcp_auth_tag_len() + p.aead_auth_tag_len()
    }
}

/// A master key and salt with the lifetime the key parameters give.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    /// The suite.
    pub suite: Suite,
    /// The master key.
    pub key: Vec<u8>,
    /// The master salt.
    pub salt: Vec<u8>,
    /// Packets (of SRTP, and separately of SRTCP) the key may protect:
    /// the `|2^N` lifetime, else the RFC 3711 §9.2 limits.
    pub lifetime: u64,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("suite", &self.suite)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Read `inline:KEY||LIFETIME|MKI:LEN` for `suite`.
    pub fn parse(suite: &str, params: &str) -> Result<MasterKey, KeyError> {
        let suite = Suite::parse(suite)?;
        let bad = |reason: &str| KeyError::BadParams {
            params: params.to_owned(),
            reason: reason.to_owned(),
        };
        if params.contains(';') {
            // Several keys are told apart by their MKI only.
            return Err(KeyError::Mki(params.to_owned()));
        }
        let info = params
            .strip_prefix("inline:")
            .ok_or_else(|| bad("only the inline: key method exists (RFC 4568 §6.1)"))?;
        let mut fields = info.split('|');
        let b64 = fields.next().unwrap_or_default();
        let mut lifetime = None;
        for f in fields {
            if f.contains(':') {
                return Err(KeyError::Mki(params.to_owned()));
            }
            if lifetime.is_some() {
                return Err(bad("more than one lifetime"));
            }
            lifetime = Some(parse_lifetime(f).ok_or_else(|| bad("lifetime is N or 2^N"))?);
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("the key and salt are not base64"))?;
        let profile = suite.profile();
        let (kl, sl) = (profile.key_len(), profile.salt_len());
        // RFC 7714 §12: a 128-bit key + 96-bit salt; SDES carries 30
        // octets for AES-CM (RFC 4568), 28 or 44 for GCM.
        if raw.len() != kl + sl {
            return Err(bad(&format!(
                "{} octets of key and salt, {suite:?} takes {}",
                raw.len(),
                kl + sl
            )));
        }
        let (key, salt) = raw.split_at(kl);
        Ok(MasterKey {
            suite,
            key: key.to_vec(),
            salt: salt.to_vec(),
            // RFC 3711 §9.2: 2^48 SRTP, 2^31 SRTCP packets at most.
            lifetime: lifetime.unwrap_or(1 << 48),
        })
    }
}

fn parse_lifetime(s: &str) -> Option<u64> {
    match s.strip_prefix("2^") {
        Some(exp) => exp
            .parse::<u32>()
            .ok()
            .filter(|e| *e < 64)
            .map(|e| 1u64 << e),
        None => s.parse().ok(),
    }
}

/// What became of one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated and decrypted: the plaintext RTP or RTCP packet.
    Plain(Vec<u8>),
    /// Failed authentication (or too short to carry a tag).
    AuthFailed,
    /// The key's lifetime is used up: not tried.
    Exhausted,
    /// SRTCP sent unencrypted (E flag clear): the crate returns it without
    /// checking its tag, so it is refused rather than trusted.
    Unverified,
    /// Not SRTCP at all: a whole plain RTCP compound packet, no index and
    /// no tag (libre, so baresip, sends an APP `PING` so as a stream
    /// starts). Nothing vouches for it: refused, but no key failed.
    Unprotected,
}

/// One master key's decryption state (both SRTP and SRTCP).
pub struct Decryptor {
    suite: Suite,
    ctx: Context,
    lifetime: u64,
    rtp_used: u64,
    rtcp_used: u64,
}

impl Decryptor {
    /// A fresh context for `key`.
    pub fn new(key: &MasterKey) -> Result<Decryptor, KeyError> {
        let ctx =
            Context::new(&key.key, &key.salt, key.suite.profile(), None, None).map_err(|e| {
                KeyError::BadParams {
                    params: String::new(),
                    reason: e.to_string(),
                }
            })?;
        Ok(Decryptor {
            suite: key.suite,
            ctx,
            lifetime: key.lifetime,
            rtp_used: 0,
            rtcp_used: 0,
        })
    }

    /// Whether the key may protect another SRTP (`rtcp` false) or SRTCP packet.
    pub fn exhausted(&self, rtcp: bool) -> bool {
        let used = if rtcp { self.rtcp_used } else { self.rtp_used };
        used >= self.lifetime
    }

    /// Decrypt one SRTP packet.
    pub fn rtp(&mut self, packet: &[u8]) -> Outcome {
        if self.exhausted(false) {
            return Outcome::Exhausted;
        }
        // The crate indexes past the header without checking the length
        // against the tag in every path: check here first.
        match rtp_header_len(packet) {
            Some(h) if packet.len() >= h + self.suite.rtp_trailer() => {}
            _ => return Outcome::AuthFailed,
        }
        match self.ctx.decrypt_rtp(packet) {
            Ok(plain) => {
                self.rtp_used += 1;
                Outcome::Plain(plain.to_vec())
            }
            Err(_) => Outcome::AuthFailed,
        }
    }

    /// Decrypt one SRTCP packet.
    pub fn rtcp(&mut self, packet: &[u8]) -> Outcome {
        if self.exhausted(true) {
            return Outcome::Exhausted;
        }
        // The E|index word: before the HMAC tag (RFC 3711 §3.4), last
        // after the AEAD tag (RFC 7714 §9.2).
        let e_at = (packet.len() >= 8 + self.suite.rtcp_trailer())
            .then(|| packet.len() - 4 - self.suite.profile().rtcp_auth_tag_len());
        let encrypted = e_at.and_then(|at| packet.get(at)).map(|b| b & 0x80 != 0);
        // Decryption first: SRTCP the key opens is never taken for plain.
        if encrypted == Some(true)
            && let Ok(plain) = self.ctx.decrypt_rtcp(packet)
        {
            self.rtcp_used += 1;
            return Outcome::Plain(plain.to_vec());
        }
        if plain_rtcp(packet) {
            Outcome::Unprotected
        } else if encrypted == Some(false) {
            Outcome::Unverified
        } else {
            Outcome::AuthFailed
        }
    }
}

/// Whether `p` is a plain RTCP compound packet (RFC 3550 §6.1): RTCP
/// headers (version 2, a packet type of 192..=223 as RFC 5761 §4 keeps
/// for RTCP) whose lengths add up to the datagram exactly. SRTCP does
/// not: its E|index word and tag follow the compound packet, and its
/// headers after the first are encrypted; that they walk to the end by
/// chance is unlikely, and [`Decryptor::rtcp`] asks only once its key failed.
pub fn plain_rtcp(p: &[u8]) -> bool {
    let mut at = 0usize;
    while at < p.len() {
        let Some(h) = p.get(at..at + 4) else {
            return false;
        };
        if h[0] >> 6 != 2 || !(192..=223).contains(&h[1]) {
            return false;
        }
        at += 4 * (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1);
    }
    at == p.len() && !p.is_empty()
}

/// The RTP header's length (fixed part, CSRCs, extension), when the packet
/// holds it whole.
pub fn rtp_header_len(p: &[u8]) -> Option<usize> {
    let first = *p.first()?;
    if first >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = p.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (p.len() >= len).then_some(len)
}

#[cfg(test)]
mod tests;
