//! Audio out of decrypted RTP: G.711 µ-law and A-law (ITU-T G.711) and
//! L16 (RFC 3551 §4.5.11) as 16-bit linear PCM, written as WAV (hound).

/// A payload format the recorder can turn into samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 µ-law (`PCMU`, static payload type 0).
    Pcmu,
    /// G.711 A-law (`PCMA`, static payload type 8).
    Pcma,
    /// 16-bit linear, network byte order (`L16`).
    L16,
}

/// How a payload type is to be read: its codec, clock rate and channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// The encoding name (`PCMU`, `opus`, ...).
    pub name: String,
    /// The codec, when the recorder decodes it.
    pub codec: Option<Codec>,
    /// Samples per second.
    pub rate: u32,
    /// Channels.
    pub channels: u16,
}

impl Format {
    /// The format of payload type `pt`: from `a=rtpmap` (`rtpmap`: the
    /// encoding name, clock rate and channels given there), else the
    /// static assignments of RFC 3551 §6.
    pub fn of(pt: u8, rtpmap: Option<(&str, u32, u16)>) -> Format {
        let (name, rate, channels) = match (rtpmap, pt) {
            (Some((n, r, c)), _) => (n.to_owned(), r, c),
            (None, 0) => ("PCMU".to_owned(), 8000, 1),
            (None, 8) => ("PCMA".to_owned(), 8000, 1),
            (None, 10) => ("L16".to_owned(), 44100, 2),
            (None, 11) => ("L16".to_owned(), 44100, 1),
            (None, 9) => ("G722".to_owned(), 8000, 1),
            (None, 13) => ("CN".to_owned(), 8000, 1),
            (None, 18) => ("G729".to_owned(), 8000, 1),
            (None, pt) => (format!("payload type {pt}"), 8000, 1),
        };
        let codec = match name.to_ascii_uppercase().as_str() {
            "PCMU" => Some(Codec::Pcmu),
            "PCMA" => Some(Codec::Pcma),
            "L16" => Some(Codec::L16),
            _ => None,
        };
        Format {
            name,
            codec,
            rate: rate.max(1),
            channels: channels.max(1),
        }
    }
}

/// µ-law to linear (ITU-T G.711, as in its reference `ulaw2linear`):
/// 14-bit magnitude scaled to 16 bits.
pub fn ulaw(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i16::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 { -magnitude } else { magnitude }
}

/// A-law to linear (ITU-T G.711, as in its reference `alaw2linear`).
pub fn alaw(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i16::from(a & 0x0f);
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        e => ((mantissa << 4) + 0x108) << (e - 1),
    };
    if a & 0x80 != 0 { magnitude } else { -magnitude }
}

/// The samples of one payload (interleaved when there are channels).
pub fn decode(codec: Codec, payload: &[u8]) -> Vec<i16> {
    match codec {
        Codec::Pcmu => payload.iter().map(|b| ulaw(*b)).collect(),
        Codec::Pcma => payload.iter().map(|b| alaw(*b)).collect(),
        Codec::L16 => payload
            .chunks_exact(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect(),
    }
}

/// A 16-bit PCM WAV file of `samples`.
pub fn wav(samples: &[i16], rate: u32, channels: u16) -> Result<Vec<u8>, hound::Error> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec)?;
    for s in samples {
        w.write_sample(*s)?;
    }
    w.finalize()?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// G.711's own table ends: silence, full scale, and the sign.
    #[test]
    fn g711_decodes_the_reference_values() {
        assert_eq!(ulaw(0xff), 0);
        assert_eq!(ulaw(0x7f), 0);
        assert_eq!(ulaw(0x80), 32124);
        assert_eq!(ulaw(0x00), -32124);
        assert_eq!(alaw(0xd5), 8);
        assert_eq!(alaw(0x55), -8);
        assert_eq!(alaw(0xaa), 32256);
        assert_eq!(alaw(0x2a), -32256);
        assert_eq!(
            decode(Codec::L16, &[0x12, 0x34, 0xff, 0xfe, 9]),
            [0x1234, -2]
        );
    }
}
