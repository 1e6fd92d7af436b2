//! The recording server's workflow (issue 27 item 2): a relay's disclosure
//! report (`--report`, JSON lines) gives each call's SDP, media addresses
//! and SDES keys; a capture gives the packets. Each packet is matched to a
//! call and a sender by address, decrypted with the sender's key, and
//! returned per call and direction as a pcap, a WAV when the codec is
//! G.711 or L16, and a summary. Nothing here reads or writes a file: the
//! caller hands in the report text and the capture's bytes.
//!
//! Whose key: in SDES (RFC 4568 §6.1) the key in a party's SDP is the key
//! that party encrypts what it *sends* with. A packet addressed to the
//! media address of one party was sent by another, and a packet from a
//! party's media address was sent by it. A party is told apart by its SDP
//! `o=` line (less the version), so a re-INVITE's new key joins the keys
//! of the party that sent it; the newest key is tried first, and the one
//! that last worked stays in front.

pub mod audio;
pub mod capture;
pub mod srtp;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::error::ErrorClass;
use crate::sdp::{Sdp, rtpmaps};
use capture::Datagram;
use srtp::{Decryptor, KeyError, MasterKey, Outcome, rtp_header_len};

/// Why recording could not start.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A report line that is not a relay's JSON report.
    #[error("report line {line}: {reason}")]
    Report {
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A key of a call that cannot be used.
    #[error("call {call_id}, stream {stream}: {err}")]
    Key {
        /// The call.
        call_id: String,
        /// The stream index.
        stream: usize,
        /// Why.
        err: KeyError,
    },
    /// `--call` names a call the report does not have.
    #[error("the report has no call {0:?}")]
    NoSuchCall(String),
    /// The capture cannot be read.
    #[error("capture: {0}")]
    Capture(#[from] capture::CaptureError),
}

impl RecordError {
    /// The exit class.
    pub fn class(&self) -> ErrorClass {
        match self {
            RecordError::NoSuchCall(_) => ErrorClass::Config,
            _ => ErrorClass::Failed,
        }
    }
}

/// The fields of a relay report line the recorder reads
/// ([`crate::relay::report::RelayReport`] as JSON).
#[derive(Debug, Clone, Deserialize)]
struct Line {
    kind: String,
    call_id: Option<String>,
    sdp: Option<String>,
    #[serde(default)]
    streams: Vec<StreamLine>,
    #[serde(default)]
    srtp_keys: Vec<KeyLine>,
}

#[derive(Debug, Clone, Deserialize)]
struct StreamLine {
    media: String,
    address: Option<String>,
    port: u16,
    #[serde(default)]
    rtcp_mux: bool,
    rtcp_port: Option<u16>,
    rtcp_address: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct KeyLine {
    stream: usize,
    tag: String,
    suite: String,
    key_params: String,
}

/// One SDP of a call, as the report gave it.
#[derive(Debug, Clone)]
struct Described {
    party: usize,
    line: Line,
    rtpmaps: Vec<Vec<crate::sdp::RtpMap>>,
}

/// The calls of a report: per Call-ID, its SDPs in report order.
#[derive(Debug, Default)]
pub struct Calls {
    calls: Vec<(String, Vec<Line>)>,
}

impl Calls {
    /// Read a relay's JSON-lines report. Lines without a Call-ID or SDP are
    /// skipped; a line that is not JSON is an error.
    pub fn parse(text: &str) -> Result<Calls, RecordError> {
        let mut calls: Vec<(String, Vec<Line>)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(raw).map_err(|e| RecordError::Report {
                line: i + 1,
                reason: e.to_string(),
            })?;
            let Some(id) = line.call_id.clone() else {
                continue;
            };
            if line.streams.is_empty() {
                continue;
            }
            match calls.iter_mut().find(|(c, _)| *c == id) {
                Some((_, lines)) => lines.push(line),
                None => calls.push((id, vec![line])),
            }
        }
        Ok(Calls { calls })
    }

    /// The Call-IDs, in report order.
    pub fn ids(&self) -> Vec<&str> {
        self.calls.iter().map(|(c, _)| c.as_str()).collect()
    }
}

/// A call's directory name: a hash of the Call-ID (which may hold any
/// character), as the pinhole store names calls.
pub fn call_tag(call_id: &str) -> String {
    crate::pinhole::call_tag(call_id)
}

/// Counts of one direction (one sender, one media stream).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The Call-ID.
    pub call_id: String,
    /// The direction's name (its files' stem).
    pub direction: String,
    /// The media stream's index in the SDP.
    pub stream: usize,
    /// `audio`, `video`, ...
    pub media: String,
    /// Who sent: `caller`, `callee` (by where its SDP first appeared).
    pub sender: String,
    /// The crypto suite of the key that decrypted (the last one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// SRTP packets authenticated and decrypted.
    pub packets: u64,
    /// Their RTP payload octets.
    pub bytes: u64,
    /// Packets missing from the sequence (per SSRC, RFC 3550 A.3).
    pub lost: u64,
    /// Packets that came after a later sequence number.
    pub out_of_order: u64,
    /// Packets whose sequence number had already come.
    pub duplicates: u64,
    /// SRTP packets that failed authentication: counted, never written.
    pub auth_failures: u64,
    /// SRTCP packets authenticated and decrypted.
    pub srtcp_packets: u64,
    /// SRTCP packets that failed authentication.
    pub srtcp_auth_failures: u64,
    /// SRTCP packets sent unencrypted (E flag clear): refused, since
    /// their tag is not checked by the SRTP crate.
    pub srtcp_unverified: u64,
    /// RTCP packets sent in the clear (no SRTCP index or tag, e.g. the APP
    /// `PING` baresip sends as a stream starts): not written, and no
    /// authentication failure either.
    pub rtcp_unprotected: u64,
    /// Packets after the key's lifetime (`|2^N`) was used up: not decrypted.
    pub key_exhausted: u64,
    /// The SSRCs seen.
    pub ssrcs: Vec<u32>,
    /// Packets per payload type (`0 PCMU`, `96 opus`, ...).
    pub payload_types: BTreeMap<String, u64>,
    /// The WAV's sample rate and channels, and samples per channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wav: Option<WavInfo>,
    /// Things worth knowing (e.g. why there is no WAV).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What the WAV holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WavInfo {
    /// The codec decoded.
    pub codec: String,
    /// Samples per second.
    pub rate: u32,
    /// Channels.
    pub channels: u16,
    /// Samples per channel (silence for lost packets included).
    pub samples: u64,
}

/// One direction's output.
#[derive(Debug, Clone)]
pub struct Direction {
    /// The counts.
    pub summary: Summary,
    /// The decrypted RTP and RTCP as a pcap; `None` when nothing decrypted.
    pub pcap: Option<Vec<u8>>,
    /// The audio; `None` for other codecs or when nothing decrypted.
    pub wav: Option<Vec<u8>>,
}

/// One call's output.
#[derive(Debug, Clone)]
pub struct CallRecording {
    /// The Call-ID.
    pub call_id: String,
    /// Its directory name ([`call_tag`]).
    pub tag: String,
    /// Per sender and stream, in order.
    pub directions: Vec<Direction>,
    /// Packets of the capture addressed to or from this call's media that
    /// no key of the call was tried on (a party without `a=crypto`).
    pub without_key: u64,
}

/// The whole recording.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Per call.
    pub calls: Vec<CallRecording>,
    /// UDP datagrams of no call in the report.
    pub unmatched: u64,
    /// Frames that were not UDP over IP.
    pub skipped: u64,
}

/// Record `wanted` calls (all when empty) of `calls` from `capture`.
pub fn record(
    calls: &Calls,
    wanted: &[String],
    capture: &capture::Capture,
) -> Result<Recording, RecordError> {
    for w in wanted {
        if !calls.calls.iter().any(|(c, _)| c == w) {
            return Err(RecordError::NoSuchCall(w.clone()));
        }
    }
    let mut matched = vec![false; capture.datagrams.len()];
    let mut out = Vec::new();
    for (call_id, lines) in &calls.calls {
        if !wanted.is_empty() && !wanted.contains(call_id) {
            continue;
        }
        let mut call = CallState::new(call_id, lines)?;
        for (d, m) in capture.datagrams.iter().zip(matched.iter_mut()) {
            *m |= call.packet(d);
        }
        out.push(call.finish());
    }
    let unmatched = matched.iter().filter(|m| !**m).count() as u64;
    Ok(Recording {
        calls: out,
        unmatched,
        skipped: capture.skipped,
    })
}

/// A party's media end of one stream.
#[derive(Debug, Clone)]
struct Endpoint {
    party: usize,
    stream: usize,
    rtp: Option<SocketAddr>,
    rtcp: Option<SocketAddr>,
}

struct Key {
    suite: String,
    dec: Decryptor,
}

#[derive(Default)]
struct Seq {
    base: u64,
    max: u64,
    seen: HashSet<u64>,
}

struct Packet {
    ssrc_order: usize,
    ext_seq: u64,
    timestamp: u32,
    pt: u8,
    payload: Vec<u8>,
}

#[derive(Default)]
struct DirState {
    summary: Summary,
    plain: Vec<Datagram>,
    rtp: Vec<Packet>,
    seqs: HashMap<u32, Seq>,
}

struct CallState {
    call_id: String,
    labels: Vec<String>,
    endpoints: Vec<Endpoint>,
    by_addr: HashMap<SocketAddr, Vec<usize>>,
    /// Keys per (sender party, stream): newest first, the last that worked in front.
    keys: HashMap<(usize, usize), Vec<Key>>,
    media: HashMap<usize, String>,
    described: Vec<Described>,
    dirs: BTreeMap<(usize, usize), DirState>,
    without_key: u64,
}

fn socket(addr: Option<&str>, port: Option<u16>) -> Option<SocketAddr> {
    let ip: IpAddr = addr?.split('/').next()?.parse().ok()?;
    Some(SocketAddr::new(ip, port.filter(|p| *p != 0)?))
}

/// `o=` less the session version: the same for every SDP of one party.
fn origin(sdp: Option<&str>) -> Option<String> {
    let o = Sdp::parse(sdp?).ok()?.origin?;
    let f: Vec<&str> = o.split_whitespace().collect();
    match f.as_slice() {
        [user, id, _version, rest @ ..] => Some(format!("{user} {id} {}", rest.join(" "))),
        _ => None,
    }
}

impl CallState {
    fn new(call_id: &str, lines: &[Line]) -> Result<CallState, RecordError> {
        let mut origins: Vec<Option<String>> = Vec::new();
        let mut labels: Vec<String> = Vec::new();
        let mut described = Vec::new();
        for line in lines {
            let o = origin(line.sdp.as_deref());
            // Without an o= line, a request's SDP is the caller's, a
            // response's the callee's.
            let key = o.clone().or_else(|| Some(format!("({})", line.kind)));
            let party = match origins.iter().position(|x| *x == key) {
                Some(p) => p,
                None => {
                    let wanted = if line.kind == "request" {
                        "caller"
                    } else {
                        "callee"
                    };
                    let label = if labels.iter().any(|l| l == wanted) {
                        format!("party{}", labels.len())
                    } else {
                        wanted.to_owned()
                    };
                    origins.push(key);
                    labels.push(label);
                    origins.len() - 1
                }
            };
            described.push(Described {
                party,
                rtpmaps: line.sdp.as_deref().map(rtpmaps).unwrap_or_default(),
                line: line.clone(),
            });
        }
        let mut state = CallState {
            call_id: call_id.to_owned(),
            labels,
            endpoints: Vec::new(),
            by_addr: HashMap::new(),
            keys: HashMap::new(),
            media: HashMap::new(),
            described: Vec::new(),
            dirs: BTreeMap::new(),
            without_key: 0,
        };
        for d in &described {
            for (i, s) in d.line.streams.iter().enumerate() {
                state.media.entry(i).or_insert_with(|| s.media.clone());
                let rtp = socket(s.address.as_deref(), Some(s.port));
                let rtcp = if s.rtcp_mux {
                    rtp
                } else {
                    socket(
                        s.rtcp_address.as_deref().or(s.address.as_deref()),
                        s.rtcp_port,
                    )
                };
                let e = state.endpoints.len();
                state.endpoints.push(Endpoint {
                    party: d.party,
                    stream: i,
                    rtp,
                    rtcp,
                });
                for a in [rtp, rtcp].into_iter().flatten() {
                    let v = state.by_addr.entry(a).or_default();
                    if !v.contains(&e) {
                        v.push(e);
                    }
                }
            }
        }
        // Keys, newest SDP first; within one SDP the tags another party's
        // SDP answered with first.
        for (n, d) in described.iter().enumerate().rev() {
            for k in &d.line.srtp_keys {
                let answered = described.iter().enumerate().any(|(m, o)| {
                    m != n
                        && o.party != d.party
                        && o.line
                            .srtp_keys
                            .iter()
                            .any(|x| x.stream == k.stream && x.tag == k.tag)
                });
                let err = |err| RecordError::Key {
                    call_id: call_id.to_owned(),
                    stream: k.stream,
                    err,
                };
                let master = match MasterKey::parse(&k.suite, &k.key_params) {
                    Ok(m) => m,
                    // An offer's alternative nobody chose may be anything.
                    Err(e) if !answered && d.line.srtp_keys.len() > 1 => {
                        let _ = e;
                        continue;
                    }
                    Err(e) => return Err(err(e)),
                };
                let dec = Decryptor::new(&master).map_err(err)?;
                let slot = state.keys.entry((d.party, k.stream)).or_default();
                let key = Key {
                    suite: k.suite.clone(),
                    dec,
                };
                if answered {
                    slot.insert(0, key);
                } else {
                    slot.push(key);
                }
            }
        }
        state.described = described;
        Ok(state)
    }

    /// Take one datagram; whether it belongs to this call.
    fn packet(&mut self, d: &Datagram) -> bool {
        // (sender party, stream, rtcp?)
        let mut tries: Vec<(usize, usize, bool)> = Vec::new();
        let rtcp_pt = d.payload.get(1).is_some_and(|b| (192..=223).contains(b));
        let parties = self.labels.len();
        if let Some(es) = self.by_addr.get(&d.dst) {
            for &e in es {
                let ep = &self.endpoints[e];
                let rtcp = ep.rtcp == Some(d.dst) && (ep.rtp != Some(d.dst) || rtcp_pt);
                for p in (0..parties).filter(|p| *p != ep.party) {
                    tries.push((p, ep.stream, rtcp));
                }
            }
        }
        if let Some(es) = self.by_addr.get(&d.src) {
            for &e in es {
                let ep = &self.endpoints[e];
                let rtcp = ep.rtcp == Some(d.src) && (ep.rtp != Some(d.src) || rtcp_pt);
                tries.push((ep.party, ep.stream, rtcp));
            }
        }
        if tries.is_empty() {
            return false;
        }
        let mut seen = HashSet::new();
        tries.retain(|t| seen.insert(*t));
        let mut first_fail: Option<((usize, usize), bool, Outcome)> = None;
        let mut tried_any = false;
        for (party, stream, rtcp) in tries {
            let Some(keys) = self.keys.get_mut(&(party, stream)) else {
                continue;
            };
            for i in 0..keys.len() {
                tried_any = true;
                let outcome = if rtcp {
                    keys[i].dec.rtcp(&d.payload)
                } else {
                    keys[i].dec.rtp(&d.payload)
                };
                match outcome {
                    Outcome::Plain(plain) => {
                        // The key that worked is tried first next time.
                        keys[..=i].rotate_right(1);
                        let suite = keys[0].suite.clone();
                        self.accept(party, stream, rtcp, d, plain, suite);
                        return true;
                    }
                    other => {
                        let worse = matches!(
                            (&first_fail, &other),
                            (None, _) | (Some((_, _, Outcome::Exhausted)), Outcome::AuthFailed)
                        );
                        if worse {
                            first_fail = Some(((party, stream), rtcp, other));
                        }
                    }
                }
            }
        }
        if !tried_any {
            self.without_key += 1;
            return true;
        }
        if let Some((dir, rtcp, outcome)) = first_fail {
            let s = &mut self.dir(dir).summary;
            match (outcome, rtcp) {
                (Outcome::Exhausted, _) => s.key_exhausted += 1,
                (Outcome::Unverified, _) => s.srtcp_unverified += 1,
                (Outcome::Unprotected, _) => s.rtcp_unprotected += 1,
                (_, true) => s.srtcp_auth_failures += 1,
                (_, false) => s.auth_failures += 1,
            }
        }
        true
    }

    fn dir(&mut self, (party, stream): (usize, usize)) -> &mut DirState {
        let media = self.media.get(&stream).cloned().unwrap_or_default();
        let sender = self.labels.get(party).cloned().unwrap_or_default();
        let call_id = self.call_id.clone();
        self.dirs
            .entry((party, stream))
            .or_insert_with(|| DirState {
                summary: Summary {
                    call_id,
                    direction: format!("s{stream}-{media}-from-{sender}"),
                    stream,
                    media,
                    sender,
                    ..Summary::default()
                },
                ..DirState::default()
            })
    }

    fn accept(
        &mut self,
        party: usize,
        stream: usize,
        rtcp: bool,
        d: &Datagram,
        plain: Vec<u8>,
        suite: String,
    ) {
        let dir = self.dir((party, stream));
        dir.summary.suite = Some(suite);
        if rtcp {
            dir.summary.srtcp_packets += 1;
        } else if let Some(h) = rtp_header_len(&plain) {
            let pt = plain[1] & 0x7f;
            let seq = u16::from_be_bytes([plain[2], plain[3]]);
            let timestamp = u32::from_be_bytes([plain[4], plain[5], plain[6], plain[7]]);
            let ssrc = u32::from_be_bytes([plain[8], plain[9], plain[10], plain[11]]);
            let mut end = plain.len();
            if plain[0] & 0x20 != 0 {
                // Padding: the last octet counts it (RFC 3550 §5.1).
                let pad = usize::from(plain[end - 1]);
                end = end.saturating_sub(pad).max(h);
            }
            let payload = plain[h..end].to_vec();
            let s = &mut dir.summary;
            s.packets += 1;
            s.bytes += payload.len() as u64;
            if !s.ssrcs.contains(&ssrc) {
                s.ssrcs.push(ssrc);
            }
            let ssrc_order = s.ssrcs.iter().position(|x| *x == ssrc).unwrap_or(0);
            let q = dir.seqs.entry(ssrc).or_default();
            let ext = if q.seen.is_empty() {
                q.base = u64::from(seq) + (1 << 32);
                q.max = q.base;
                q.base
            } else {
                // The extension nearest the highest so far (RFC 3550 A.1).
                let cand = (q.max & !0xffff) | u64::from(seq);
                [cand.wrapping_sub(1 << 16), cand, cand + (1 << 16)]
                    .into_iter()
                    .min_by_key(|c| c.abs_diff(q.max))
                    .unwrap_or(cand)
            };
            if !q.seen.insert(ext) {
                s.duplicates += 1;
            } else if ext < q.max {
                s.out_of_order += 1;
            }
            if ext > q.max {
                q.max = ext;
            }
            if ext < q.base {
                q.base = ext;
            }
            dir.rtp.push(Packet {
                ssrc_order,
                ext_seq: ext,
                timestamp,
                pt,
                payload,
            });
        }
        dir.plain.push(Datagram {
            time: d.time,
            src: d.src,
            dst: d.dst,
            payload: plain,
        });
    }

    fn rtpmap(&self, party: usize, stream: usize, pt: u8) -> Option<(&str, u32, u16)> {
        // The sender's own SDP first, then the others'.
        let mut ds: Vec<&Described> = self.described.iter().collect();
        ds.sort_by_key(|d| d.party != party);
        ds.iter().find_map(|d| {
            d.rtpmaps
                .get(stream)?
                .iter()
                .find(|m| m.payload_type == pt)
                .map(|m| (m.encoding.as_str(), m.clock_rate, m.channels))
        })
    }

    fn finish(mut self) -> CallRecording {
        let dirs = std::mem::take(&mut self.dirs);
        let mut directions = Vec::new();
        for ((party, stream), mut dir) in dirs {
            for q in dir.seqs.values() {
                let expected = q.max - q.base + 1;
                dir.summary.lost += expected.saturating_sub(q.seen.len() as u64);
            }
            let mut counts: BTreeMap<u8, u64> = BTreeMap::new();
            for p in &dir.rtp {
                *counts.entry(p.pt).or_default() += 1;
            }
            for (pt, n) in &counts {
                let f = audio::Format::of(*pt, self.rtpmap(party, stream, *pt));
                dir.summary
                    .payload_types
                    .insert(format!("{pt} {}", f.name), *n);
            }
            // The WAV: the most frequent payload type the recorder decodes.
            let best = counts
                .iter()
                .filter_map(|(pt, n)| {
                    let f = audio::Format::of(*pt, self.rtpmap(party, stream, *pt));
                    f.codec.map(|c| (*n, *pt, c, f))
                })
                .max_by_key(|(n, pt, ..)| (*n, u8::MAX - pt));
            let wav = match best {
                Some((_, pt, codec, f)) => {
                    let (samples, info) = samples(&mut dir.rtp, pt, codec, &f);
                    let wav = audio::wav(&samples, f.rate, f.channels).ok();
                    dir.summary.wav = Some(info);
                    wav.filter(|_| !samples.is_empty())
                }
                None => {
                    if !counts.is_empty() {
                        dir.summary.notes.push(format!(
                            "no WAV: {} is not decoded (PCMU, PCMA and L16 are); the decrypted RTP is in the pcap",
                            dir.summary.payload_types.keys().cloned().collect::<Vec<_>>().join(", ")
                        ));
                    }
                    None
                }
            };
            let pcap = (!dir.plain.is_empty()).then(|| capture::write_pcap(&dir.plain));
            directions.push(Direction {
                summary: dir.summary,
                pcap,
                wav,
            });
        }
        CallRecording {
            tag: call_tag(&self.call_id),
            call_id: self.call_id,
            directions,
            without_key: self.without_key,
        }
    }
}

/// The samples of payload type `pt`, in sequence order, with silence where
/// the RTP timestamps show packets missing (at most 5 s a gap).
fn samples(
    packets: &mut [Packet],
    pt: u8,
    codec: audio::Codec,
    f: &audio::Format,
) -> (Vec<i16>, WavInfo) {
    packets.sort_by_key(|p| (p.ssrc_order, p.ext_seq));
    let channels = usize::from(f.channels);
    let max_gap = u64::from(f.rate) * 5;
    let mut out: Vec<i16> = Vec::new();
    let mut last: Option<(usize, u64, u32, u64)> = None; // ssrc, seq, ts, samples
    for p in packets.iter().filter(|p| p.pt == pt) {
        if let Some((o, s, _, _)) = last
            && o == p.ssrc_order
            && s == p.ext_seq
        {
            continue;
        }
        let decoded = audio::decode(codec, &p.payload);
        if let Some((o, _, ts, n)) = last
            && o == p.ssrc_order
        {
            let gap = u64::from(p.timestamp.wrapping_sub(ts)).saturating_sub(n);
            if gap > 0 && gap <= max_gap {
                out.resize(out.len() + gap as usize * channels, 0);
            }
        }
        let n = (decoded.len() / channels.max(1)) as u64;
        out.extend_from_slice(&decoded);
        last = Some((p.ssrc_order, p.ext_seq, p.timestamp, n));
    }
    let info = WavInfo {
        codec: f.name.clone(),
        rate: f.rate,
        channels: f.channels,
        samples: (out.len() / channels.max(1)) as u64,
    };
    (out, info)
}
