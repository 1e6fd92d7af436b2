//! The recording server's workflow (issue 27 item 2): a relay's disclosure
//! report (`--report`, JSON lines) gives each call's SDP, media addresses
//! and SDES keys; a capture gives the packets. Each packet is matched to a
//! call and a sender by address, decrypted with the sender's key, and
//! returned per call and direction as a pcap, a WAV when the codec is
//! G.711 or L16, and a summary. Nothing here reads or writes a file: the
//! caller hands in the report text and the capture's bytes.
//!
//! The same workflow takes a live input ([`Recorder`]): report lines and
//! datagrams in any order as they come, packets of no known call kept a
//! short while ([`WAIT_FOR_KEYS`]) for their call's keys to arrive.
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

/// One report line (1-based `number`): its Call-ID and fields, or `None`
/// for a line of no call's media (blank, no Call-ID, no stream).
fn parse_line(number: usize, raw: &str) -> Result<Option<(String, Line)>, RecordError> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let line: Line = serde_json::from_str(raw).map_err(|e| RecordError::Report {
        line: number,
        reason: e.to_string(),
    })?;
    let Some(id) = line.call_id.clone() else {
        return Ok(None);
    };
    if line.streams.is_empty() {
        return Ok(None);
    }
    Ok(Some((id, line)))
}

impl Calls {
    /// Read a relay's JSON-lines report. Lines without a Call-ID or SDP are
    /// skipped; a line that is not JSON is an error.
    pub fn parse(text: &str) -> Result<Calls, RecordError> {
        let mut calls: Vec<(String, Vec<Line>)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let Some((id, line)) = parse_line(i + 1, raw)? else {
                continue;
            };
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
    /// Packets (SRTP and SRTCP) authenticated past the direction's cap
    /// ([`MAX_KEPT_PACKETS`], [`MAX_KEPT_BYTES`]): counted here, not written
    /// nor counted above.
    pub not_kept: u64,
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
    /// Live input: packets of this call that came before its report line
    /// did, kept ([`WAIT_FOR_KEYS`]) and taken once it came.
    pub before_keys: u64,
}

/// The whole recording.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Per call.
    pub calls: Vec<CallRecording>,
    /// UDP datagrams of no call in the report.
    pub unmatched: u64,
    /// Live input: datagrams of no known call that the wait for keys had
    /// no room for ([`WAIT_PER_DESTINATION`], [`WAIT_PACKETS`],
    /// [`WAIT_BYTES`]); counted in `unmatched` as well.
    pub wait_overflow: u64,
    /// Frames that were not UDP over IP.
    pub skipped: u64,
}

/// Decrypted packets kept per direction (sender and stream): about 2 h of
/// 20 ms packets. Past it (or [`MAX_KEPT_BYTES`]) a packet is still
/// authenticated and counted (`not_kept`), so a flood cannot take the
/// recorder's memory.
pub const MAX_KEPT_PACKETS: usize = 360_000;

/// Decrypted octets (RTP and RTCP packets) kept per direction.
pub const MAX_KEPT_BYTES: usize = 64 << 20;

/// Live input: how long a datagram of no known call is kept for keys that
/// may still come (the relay spools a call's SDP as it forwards it, the
/// recorder reads the spool every 200 ms).
pub const WAIT_FOR_KEYS: std::time::Duration = std::time::Duration::from_secs(2);

/// Live input: datagrams kept per destination address while waiting for
/// keys; past it the oldest go.
pub const WAIT_PER_DESTINATION: usize = 1_000;

/// Live input: datagrams kept in all while waiting for keys; past it (or
/// [`WAIT_BYTES`]) newcomers are not kept.
pub const WAIT_PACKETS: usize = 20_000;

/// Live input: octets kept in all while waiting for keys.
pub const WAIT_BYTES: usize = 32 << 20;

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
    let mut rec = Recorder::new(wanted);
    for (call_id, lines) in &calls.calls {
        for line in lines {
            rec.add(call_id, line.clone())?;
        }
    }
    for d in &capture.datagrams {
        if !rec.offer(d) {
            rec.unmatched += 1;
        }
    }
    rec.skipped = capture.skipped;
    Ok(rec.finish())
}

/// The recording workflow on a live input: report lines and datagrams as
/// they come, in any order. A datagram no call claims waits (at most
/// [`WAIT_FOR_KEYS`], within [`WAIT_PER_DESTINATION`], [`WAIT_PACKETS`] and
/// [`WAIT_BYTES`]) for a report line that makes it a call's; then it is
/// decrypted in arrival order before anything newer of its call.
pub struct Recorder {
    wanted: Vec<String>,
    /// Per call (report order): its lines and its state.
    calls: Vec<(Vec<Line>, CallState)>,
    /// Media address to the calls that name it.
    index: HashMap<SocketAddr, Vec<usize>>,
    waiting: Waiting,
    lines: usize,
    unmatched: u64,
    wait_overflow: u64,
    skipped: u64,
}

impl Recorder {
    /// A recorder of `wanted` calls (every call when empty), with no
    /// report lines yet.
    pub fn new(wanted: &[String]) -> Recorder {
        Recorder {
            wanted: wanted.to_vec(),
            calls: Vec::new(),
            index: HashMap::new(),
            waiting: Waiting::default(),
            lines: 0,
            unmatched: 0,
            wait_overflow: 0,
            skipped: 0,
        }
    }

    /// Take the report's next line (lines are numbered as they come). A
    /// line that is not JSON, or whose call's keys cannot be used, is an
    /// error and changes nothing; the datagrams waiting that the line
    /// makes its call's are decrypted now.
    pub fn report_line(&mut self, raw: &str) -> Result<(), RecordError> {
        self.lines += 1;
        let Some((id, line)) = parse_line(self.lines, raw)? else {
            return Ok(());
        };
        let Some(c) = self.add(&id, line)? else {
            return Ok(());
        };
        let call = &mut self.calls[c].1;
        self.waiting.retain(|d| {
            let taken = call.packet(d);
            call.before_keys += u64::from(taken);
            !taken
        });
        Ok(())
    }

    /// The calls the report has named so far (of those wanted).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Add a line of call `id`; the call's index, `None` when not wanted.
    fn add(&mut self, id: &str, line: Line) -> Result<Option<usize>, RecordError> {
        if !self.wanted.is_empty() && !self.wanted.iter().any(|w| w == id) {
            return Ok(None);
        }
        let c = match self.calls.iter().position(|(_, s)| s.call_id == id) {
            Some(c) => {
                let (lines, old) = &mut self.calls[c];
                lines.push(line);
                match CallState::build(id, lines, Some(&mut *old)) {
                    Ok(state) => *old = state,
                    Err(e) => {
                        lines.pop();
                        return Err(e);
                    }
                }
                c
            }
            None => {
                let lines = vec![line];
                let state = CallState::build(id, &lines, None)?;
                self.calls.push((lines, state));
                self.calls.len() - 1
            }
        };
        for a in self.calls[c].1.by_addr.keys() {
            let v = self.index.entry(*a).or_default();
            if !v.contains(&c) {
                v.push(c);
            }
        }
        Ok(Some(c))
    }

    /// Offer a datagram to the calls whose media addresses it names;
    /// whether one took it.
    fn offer(&mut self, d: &Datagram) -> bool {
        let mut taken = false;
        let mut cs: Vec<usize> = Vec::new();
        for a in [d.dst, d.src] {
            for &c in self.index.get(&a).into_iter().flatten() {
                if !cs.contains(&c) {
                    cs.push(c);
                }
            }
        }
        for c in cs {
            if let Some((_, call)) = self.calls.get_mut(c) {
                taken |= call.packet(d);
            }
        }
        taken
    }

    /// Take one datagram of the live input: a call's, or kept waiting for
    /// its keys.
    pub fn datagram(&mut self, d: Datagram) {
        if self.offer(&d) {
            return;
        }
        let (expired, overflow) = self.waiting.push(d);
        self.unmatched += expired + overflow;
        self.wait_overflow += overflow;
    }

    /// Count a frame that was not UDP over IP.
    pub fn skipped_frame(&mut self) {
        self.skipped += 1;
    }

    /// Give up on datagrams that have waited past [`WAIT_FOR_KEYS`] at
    /// `now` (the clock of the datagrams' `time`).
    pub fn expire(&mut self, now: std::time::Duration) {
        let Some(limit) = now.checked_sub(WAIT_FOR_KEYS) else {
            return;
        };
        let mut expired = 0;
        self.waiting.retain(|d| {
            let keep = d.time >= limit;
            expired += u64::from(!keep);
            keep
        });
        self.unmatched += expired;
    }

    /// The recording: per call and direction, and the counts.
    pub fn finish(self) -> Recording {
        Recording {
            calls: self.calls.into_iter().map(|(_, s)| s.finish()).collect(),
            unmatched: self.unmatched + self.waiting.packets as u64,
            wait_overflow: self.wait_overflow,
            skipped: self.skipped,
        }
    }
}

/// Datagrams of no known call, per destination, oldest first.
#[derive(Default)]
struct Waiting {
    by_dst: HashMap<SocketAddr, std::collections::VecDeque<Datagram>>,
    packets: usize,
    bytes: usize,
}

impl Waiting {
    /// Keep `d`; how many datagrams went for age and for room.
    fn push(&mut self, d: Datagram) -> (u64, u64) {
        let (mut expired, mut overflow) = (0, 0);
        let q = self.by_dst.entry(d.dst).or_default();
        let limit = d.time.checked_sub(WAIT_FOR_KEYS);
        while let Some(old) = q.front() {
            let aged = limit.is_some_and(|l| old.time < l);
            if !aged && q.len() < WAIT_PER_DESTINATION {
                break;
            }
            if let Some(old) = q.pop_front() {
                self.packets -= 1;
                self.bytes -= old.payload.len();
                if aged {
                    expired += 1;
                } else {
                    overflow += 1;
                }
            }
        }
        if self.packets >= WAIT_PACKETS || self.bytes + d.payload.len() > WAIT_BYTES {
            if q.is_empty() {
                self.by_dst.remove(&d.dst);
            }
            return (expired, overflow + 1);
        }
        self.packets += 1;
        self.bytes += d.payload.len();
        q.push_back(d);
        (expired, overflow)
    }

    /// Keep the datagrams `keep` says to, in order.
    fn retain(&mut self, mut keep: impl FnMut(&Datagram) -> bool) {
        self.by_dst.retain(|_, q| {
            q.retain(|d| keep(d));
            !q.is_empty()
        });
        self.packets = self.by_dst.values().map(|q| q.len()).sum();
        self.bytes = self
            .by_dst
            .values()
            .flatten()
            .map(|d| d.payload.len())
            .sum();
    }
}

/// A party's media end of one stream.
#[derive(Debug, Clone)]
struct Endpoint {
    party: usize,
    stream: usize,
    rtp: Option<SocketAddr>,
    rtcp: Option<SocketAddr>,
}

/// A key of a call as it is about to be placed: its context new, or
/// `None` to take the one it had.
struct Planned {
    party: usize,
    stream: usize,
    answered: bool,
    id: (usize, usize),
    suite: String,
    dec: Option<Decryptor>,
}

struct Key {
    /// (line of the call, key of the line): a key read again keeps its
    /// context (rollover counters, replay list).
    id: (usize, usize),
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
    /// The octets of `plain`.
    kept: usize,
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
    before_keys: u64,
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
    /// The state of a call with `lines`; with `old` (the state of the
    /// same call before its last line came), its counts, kept packets and
    /// decryption contexts carry over. On an error `old` is unchanged.
    fn build(
        call_id: &str,
        lines: &[Line],
        old: Option<&mut CallState>,
    ) -> Result<CallState, RecordError> {
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
            before_keys: 0,
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
        // SDP answered with first. Every key is checked before `old` is
        // taken from.
        let known: HashSet<(usize, usize)> = old
            .as_ref()
            .map(|o| o.keys.values().flatten().map(|k| k.id).collect())
            .unwrap_or_default();
        let mut planned: Vec<Planned> = Vec::new();
        for (n, d) in described.iter().enumerate().rev() {
            for (j, k) in d.line.srtp_keys.iter().enumerate() {
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
                let dec = if known.contains(&(n, j)) {
                    None
                } else {
                    Some(Decryptor::new(&master).map_err(err)?)
                };
                planned.push(Planned {
                    party: d.party,
                    stream: k.stream,
                    answered,
                    id: (n, j),
                    suite: k.suite.clone(),
                    dec,
                });
            }
        }
        let mut contexts: HashMap<(usize, usize), Decryptor> = HashMap::new();
        if let Some(old) = old {
            for k in std::mem::take(&mut old.keys).into_values().flatten() {
                contexts.insert(k.id, k.dec);
            }
            state.dirs = std::mem::take(&mut old.dirs);
            state.without_key = old.without_key;
            state.before_keys = old.before_keys;
        }
        for p in planned {
            let Some(dec) = p.dec.or_else(|| contexts.remove(&p.id)) else {
                continue;
            };
            let slot = state.keys.entry((p.party, p.stream)).or_default();
            let key = Key {
                id: p.id,
                suite: p.suite,
                dec,
            };
            if p.answered {
                slot.insert(0, key);
            } else {
                slot.push(key);
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
        if dir.plain.len() >= MAX_KEPT_PACKETS || dir.kept + plain.len() > MAX_KEPT_BYTES {
            dir.summary.not_kept += 1;
            return;
        }
        dir.kept += plain.len();
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
            before_keys: self.before_keys,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const KEY: &str = "inline:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e";

    fn line(kind: &str, origin: &str, addr: &str, port: u16) -> String {
        serde_json::json!({
            "kind": kind, "call_id": "c1",
            "sdp": format!("v=0\r\no={origin} IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\nm=audio {port} RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY}\r\n"),
            "streams": [{"media": "audio", "address": addr, "port": port, "rtcp_mux": true}],
            "srtp_keys": [{"stream": 0, "tag": "1", "suite": "AES_CM_128_HMAC_SHA1_80", "key_params": KEY}],
        })
        .to_string()
    }

    /// `n` SRTP packets of PCMU from 192.0.2.1:4000 to 192.0.2.2:5000 under [`KEY`].
    fn packets(n: u16, start: Duration) -> Vec<Datagram> {
        let key: Vec<u8> = (1..=30).collect();
        let mut ctx = webrtc_srtp::context::Context::new(
            &key[..16],
            &key[16..],
            webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80,
            None,
            None,
        )
        .unwrap();
        (0..n)
            .map(|i| {
                let mut p = vec![0x80, 0];
                p.extend_from_slice(&i.to_be_bytes());
                p.extend_from_slice(&(u32::from(i) * 160).to_be_bytes());
                p.extend_from_slice(&7u32.to_be_bytes());
                p.extend_from_slice(&[0xff; 160]);
                Datagram {
                    time: start + Duration::from_millis(u64::from(i) * 20),
                    src: "192.0.2.1:4000".parse().unwrap(),
                    dst: "192.0.2.2:5000".parse().unwrap(),
                    payload: ctx.encrypt_rtp(&p).unwrap().to_vec(),
                }
            })
            .collect()
    }

    const T0: Duration = Duration::from_secs(1_700_000_000);

    #[test]
    fn packets_before_the_keys_wait_and_are_decrypted_when_they_come() {
        let mut rec = Recorder::new(&[]);
        let ps = packets(20, T0);
        for p in &ps[..10] {
            rec.datagram(p.clone());
        }
        // The offer: the caller's key and address; its packets were waiting.
        rec.report_line(&line("request", "alice 1 1", "192.0.2.1", 4000))
            .unwrap();
        for p in &ps[10..] {
            rec.datagram(p.clone());
        }
        let r = rec.finish();
        let call = &r.calls[0];
        assert_eq!(call.before_keys, 10);
        let s = &call.directions[0].summary;
        assert_eq!((s.packets, s.lost, s.auth_failures), (20, 0, 0));
        assert_eq!((r.unmatched, r.wait_overflow), (0, 0));
    }

    #[test]
    fn a_later_line_keeps_what_the_call_has_and_a_bad_one_changes_nothing() {
        let mut rec = Recorder::new(&[]);
        rec.report_line(&line("request", "alice 1 1", "192.0.2.1", 4000))
            .unwrap();
        let ps = packets(20, T0);
        for p in &ps[..10] {
            rec.datagram(p.clone());
        }
        // The answer: the call is built again, its packets and contexts kept.
        rec.report_line(&line("response", "bob 2 1", "192.0.2.2", 5000))
            .unwrap();
        let bad = line("response", "bob 2 2", "192.0.2.2", 5000).replace(KEY, "inline:AAAA");
        assert!(matches!(
            rec.report_line(&bad),
            Err(RecordError::Key { .. })
        ));
        assert!(matches!(
            rec.report_line("{not json"),
            Err(RecordError::Report { line: 4, .. })
        ));
        for p in &ps[10..] {
            rec.datagram(p.clone());
        }
        let r = rec.finish();
        let s = &r.calls[0].directions[0].summary;
        assert_eq!((s.packets, s.duplicates, s.auth_failures), (20, 0, 0));
        assert_eq!(s.sender, "caller");
    }

    #[test]
    fn waiting_is_bounded_by_age_and_per_destination() {
        let mut rec = Recorder::new(&[]);
        let d = |i: u64, port: u16| Datagram {
            time: T0 + Duration::from_millis(i),
            src: "192.0.2.9:1".parse().unwrap(),
            dst: SocketAddr::new([192, 0, 2, 8].into(), port),
            payload: vec![0; 10],
        };
        for i in 0..(WAIT_PER_DESTINATION as u64 + 5) {
            rec.datagram(d(i, 9));
        }
        assert_eq!(rec.waiting.packets, WAIT_PER_DESTINATION);
        assert_eq!((rec.unmatched, rec.wait_overflow), (5, 5));
        // 3 s later: all of them too old.
        rec.datagram(d(3_000 + WAIT_PER_DESTINATION as u64, 10));
        rec.expire(T0 + Duration::from_millis(3_000 + WAIT_PER_DESTINATION as u64));
        assert_eq!(rec.waiting.packets, 1);
        let r = rec.finish();
        assert_eq!(r.unmatched, WAIT_PER_DESTINATION as u64 + 5 + 1);
        assert_eq!(r.wait_overflow, 5);
    }

    #[test]
    fn a_direction_keeps_at_most_its_cap() {
        let mut rec = Recorder::new(&[]);
        rec.report_line(&line("request", "alice 1 1", "192.0.2.1", 4000))
            .unwrap();
        let ps = packets(3, T0);
        if let Some((_, call)) = rec.calls.get_mut(0) {
            // As if MAX_KEPT_BYTES were all but used up.
            call.packet(&ps[0]);
            if let Some(dir) = call.dirs.values_mut().next() {
                dir.kept = MAX_KEPT_BYTES - 1;
            }
        }
        for p in &ps[1..] {
            rec.datagram(p.clone());
        }
        let r = rec.finish();
        let s = &r.calls[0].directions[0].summary;
        assert_eq!((s.packets, s.not_kept, s.auth_failures), (1, 2, 0));
    }
}
