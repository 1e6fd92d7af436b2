//! Firewall pinholes for a call's media (docs/SPEC.md §4 step 7), from the offer
//! SDP and, once it passes, the answer SDP.
//!
//! One pinhole is a set element of table `inet sipseal`. Until the answer
//! passes, the offerer's side is open to any source: `ADDRESS . PROTOCOL .
//! PORT` (the destination a media packet may reach) in set `media4` or
//! `media6`. Once the answer passes, each side is narrowed to the other:
//! `SOURCE . ADDRESS . PROTOCOL . PORT` in set `pair4` or `pair6`, the
//! source being the other side's connection address. Each media stream
//! with a non-zero port gets one for
//! RTP and, unless RTCP is multiplexed, one for RTCP (`a=rtcp`, else
//! port+1), on each side whose SDP is known. RTCP counts as multiplexed
//! when the offer asks for it (`a=rtcp-mux`) and the answer, once there,
//! accepts it (RFC 5761 §5.1.1). A stream the answer rejects (port 0) gets
//! none.
//!
//! Every step writes the call's whole pinhole set (`add` is idempotent in
//! nft) plus deletions for what is no longer wanted; a BYE deletes all. The
//! state between invocations is one small YAML file per call.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sdp::{Sdp, Stream};
use crate::sip::Message;

/// The nftables table the sets live in.
pub const TABLE: &str = "inet sipseal";

/// Which SDP a pinhole comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// The offer's SDP.
    Offer,
    /// The answer's SDP.
    Answer,
}

/// RTP or RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// The media itself.
    Rtp,
    /// Its control channel (RFC 3550).
    Rtcp,
}

/// One set element: media may reach `address` on `protocol`/`port`, from
/// `source` when it is named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinhole {
    /// `media4` or `media6` (any source), `pair4` or `pair6` (a named source).
    pub set: String,
    /// The only address media may come from (once the answer passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// Where media may go.
    pub address: IpAddr,
    /// `udp` or `tcp`.
    pub protocol: String,
    /// The destination port.
    pub port: u16,
    /// Index of the `m=` line.
    pub stream: usize,
    /// `audio`, `video`, ...
    pub media: String,
    /// RTP or RTCP.
    pub component: Component,
    /// The SDP it comes from.
    pub side: Side,
}

impl Pinhole {
    fn key(&self) -> (Option<IpAddr>, IpAddr, &str, u16) {
        (self.source, self.address, &self.protocol, self.port)
    }

    /// The set element, as `nft` writes it.
    pub fn element(&self) -> String {
        match self.source {
            Some(from) => format!(
                "{from} . {} . {} . {}",
                self.address, self.protocol, self.port
            ),
            None => format!("{} . {} . {}", self.address, self.protocol, self.port),
        }
    }
}

/// One offer/answer exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// CSeq number of the message that carried the offer.
    pub cseq: u32,
    /// Whether the offer came in a request (else a response: late offer).
    pub offer_in_request: bool,
    /// The offer's streams.
    pub offer: Vec<Stream>,
    /// The answer's streams, once it came.
    pub answer: Option<Vec<Stream>>,
}

/// What is kept per call between invocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallState {
    /// The call.
    pub call_id: String,
    /// The latest exchange.
    pub current: Option<Exchange>,
    /// The last completed exchange, while a newer offer waits for its answer
    /// (its media still flows during a re-INVITE).
    pub previous: Option<Exchange>,
    /// The pinholes the last step wrote.
    pub installed: Vec<Pinhole>,
    /// The dialog's From tag (of the first offer's request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_tag: Option<String>,
    /// The dialog's To tag (of the first response that carried one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_tag: Option<String>,
    /// Where the dialog's authenticated offers and answers came from: the
    /// only sources a BYE may close the pinholes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neighbours: Vec<String>,
    /// When the last offer or answer passed (Unix seconds): a call whose
    /// BYE never came is ended `--pinhole-max-age` after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
}

/// The message a step sees.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Whether the message is a request.
    pub is_request: bool,
    /// The request method, or the CSeq method of a response.
    pub method: String,
    /// Its CSeq number.
    pub cseq: u32,
    /// The status code of a response.
    pub status: Option<u16>,
    /// The SDP's streams, when the message carried one that could be read
    /// and that was authenticated (the relay decides: a bound source, the
    /// offer's session key, or a signature of the sender's party).
    pub streams: Option<Vec<Stream>>,
    /// The From and To tags.
    pub tags: (Option<String>, Option<String>),
    /// Where the message came from (`--received-from`, or the packet
    /// source live), when known.
    pub source: Option<String>,
    /// Whether a dialog party signed it (a signature that verifies, of
    /// the From or To party).
    pub party_signed: bool,
    /// What may become a pinhole.
    pub limits: PinholeLimits,
    /// When it passed (Unix seconds), when known.
    pub now: Option<i64>,
}

/// What may become a pinhole: never an unspecified, loopback, multicast,
/// broadcast or link-local address, nor port 0; when `allow` is not empty,
/// only an address inside it; at most `max_streams` streams per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinholeLimits {
    /// The operator's allow-list (`--pinhole-allow CIDR`); empty: any
    /// address that is not refused outright.
    pub allow: Vec<ipnet::IpNet>,
    /// Streams per call at most (`--pinhole-max-streams`).
    pub max_streams: usize,
}

impl Default for PinholeLimits {
    fn default() -> Self {
        PinholeLimits {
            allow: Vec::new(),
            max_streams: 16,
        }
    }
}

impl PinholeLimits {
    /// Why `address` never becomes a pinhole, if it does not.
    pub fn refuse(&self, address: IpAddr) -> Option<&'static str> {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        let why = match address {
            IpAddr::V4(a) if a.is_unspecified() => Some("unspecified"),
            IpAddr::V4(a) if a.is_loopback() => Some("loopback"),
            IpAddr::V4(a) if a.is_multicast() => Some("multicast"),
            IpAddr::V4(a) if a.is_broadcast() => Some("broadcast"),
            IpAddr::V4(a) if a.is_link_local() => Some("link-local"),
            IpAddr::V6(a) if a.is_unspecified() => Some("unspecified"),
            IpAddr::V6(a) if a.is_loopback() => Some("loopback"),
            IpAddr::V6(a) if a.is_multicast() => Some("multicast"),
            IpAddr::V6(a) if a.is_unicast_link_local() => Some("link-local"),
            _ => None,
        };
        why.or_else(|| {
            (!self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&address)))
                .then_some("outside --pinhole-allow")
        })
    }
}

impl Seen {
    /// `msg` with the SDP a relay read from it (`None`: none, or sealed
    /// and not opened).
    pub fn of(msg: &Message, sdp: Option<&str>) -> Seen {
        let cseq = msg.cseq().ok();
        Seen {
            is_request: msg.is_request(),
            method: msg
                .method()
                .map(str::to_owned)
                .or_else(|| cseq.as_ref().map(|c| c.method.clone()))
                .unwrap_or_default(),
            cseq: cseq.map_or(0, |c| c.seq),
            status: msg.status(),
            streams: sdp.and_then(|t| Sdp::parse(t).ok()).map(|s| s.streams()),
            tags: (msg.from_tag().ok().flatten(), msg.to_tag().ok().flatten()),
            source: None,
            party_signed: false,
            limits: PinholeLimits::default(),
            now: None,
        }
    }
}

/// What one step changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// The call.
    pub call_id: String,
    /// Short tag of the Call-ID used in element comments and state file names.
    pub call_tag: String,
    /// `offer`, `offer-answer`, `ended`, or `unchanged`.
    pub state: &'static str,
    /// The nftables table the sets are in.
    pub table: &'static str,
    /// Elements to delete.
    pub delete: Vec<Pinhole>,
    /// Elements to add.
    pub add: Vec<Pinhole>,
    /// Streams that got no pinhole, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Whether a firewall's sets change: an element deleted, or one added
    /// that was not there (`add` repeats the call's whole set).
    #[serde(skip)]
    pub alters: bool,
}

/// The first 16 hex digits of SHA-256(Call-ID).
pub fn call_tag(call_id: &str) -> String {
    hex::encode(&Sha256::digest(call_id.as_bytes())[..8])
}

impl CallState {
    /// A call nothing is known of yet.
    pub fn new(call_id: &str) -> CallState {
        CallState {
            call_id: call_id.to_owned(),
            current: None,
            previous: None,
            installed: Vec::new(),
            from_tag: None,
            to_tag: None,
            neighbours: Vec::new(),
            since: None,
        }
    }

    /// Whether the last offer or answer passed before `cutoff` (Unix
    /// seconds). A call that never said when (state written before
    /// sipseal kept the time) counts from the first time it is asked.
    pub fn older_than(&mut self, cutoff: i64, now: i64) -> bool {
        *self.since.get_or_insert(now) < cutoff
    }

    /// End the call whatever it was (its BYE never came): every pinhole
    /// goes.
    pub fn end(&mut self, why: &str) -> Changes {
        let delete = std::mem::take(&mut self.installed);
        self.current = None;
        self.previous = None;
        Changes {
            call_id: self.call_id.clone(),
            call_tag: call_tag(&self.call_id),
            state: "ended",
            table: TABLE,
            alters: !delete.is_empty(),
            delete,
            add: Vec::new(),
            notes: vec![why.to_owned()],
        }
    }

    /// Whether nothing is left to remember: no exchange, no pinhole.
    pub fn is_over(&self) -> bool {
        self.current.is_none() && self.installed.is_empty()
    }

    /// Apply one message; returns what changes. `self.installed` becomes
    /// the new pinhole set.
    pub fn step(&mut self, seen: &Seen) -> Changes {
        let method = seen.method.to_ascii_uppercase();
        let mut changed = true;
        let mut notes = Vec::new();
        // H1, M3: an ACK only completes an exchange of a dialog that
        // exists (a late offer's answer); it starts none, and its source
        // is no neighbour.
        let ack = seen.is_request && method == "ACK";
        if seen.streams.is_some() && !ack {
            self.learn(seen);
            if seen.now.is_some() {
                self.since = seen.now;
            }
        }
        if ack && seen.streams.is_some() && !self.awaits_ack(seen) {
            notes.push(
                "an ACK starts nothing: its SDP answers no late offer of a dialog this relay saw, no pinholes from it"
                    .into(),
            );
            changed = false;
        } else if seen.is_request && method == "BYE" {
            match self.may_close(seen) {
                Ok(note) => {
                    notes.extend(note);
                    self.current = None;
                    self.previous = None;
                }
                Err(why) => {
                    notes.push(format!("BYE not honoured, pinholes kept: {why}"));
                    changed = false;
                }
            }
        } else if let Some(streams) = &seen.streams {
            let answers = match &self.current {
                // Late offer (in a 2xx): the answer comes in the ACK or PRACK.
                Some(x) if seen.is_request => {
                    !x.offer_in_request
                        && x.answer.is_none()
                        && matches!(method.as_str(), "ACK" | "PRACK")
                }
                // Any response to the offer's request carries its answer
                // (a 183 and then the 200 repeat it).
                Some(x) => x.offer_in_request && x.cseq == seen.cseq,
                None => false,
            };
            match &mut self.current {
                Some(x) if answers => x.answer = Some(streams.clone()),
                _ => {
                    let done = self.current.take().filter(|x| x.answer.is_some());
                    if done.is_some() {
                        self.previous = done;
                    }
                    self.current = Some(Exchange {
                        cseq: seen.cseq,
                        offer_in_request: seen.is_request,
                        offer: streams.clone(),
                        answer: None,
                    });
                }
            }
        } else if let Some(x) = &self.current
            && !seen.is_request
            && seen.status.is_some_and(|s| s >= 300)
            && x.offer_in_request
            && x.answer.is_none()
            && x.cseq == seen.cseq
            && seen.tags.0 == self.from_tag
        {
            // The offer was rejected: back to what was agreed before (nothing
            // for a failed initial INVITE).
            self.current = self.previous.take();
        } else {
            changed = false;
        }

        let mut wanted = Vec::new();
        if let Some(x) = &self.current {
            wanted.extend(pinholes(x, &seen.limits, &mut notes));
            if x.answer.is_none()
                && let Some(p) = &self.previous
            {
                wanted.extend(pinholes(p, &seen.limits, &mut notes));
            }
        }
        let mut seen_keys = BTreeSet::new();
        wanted.retain(|p| seen_keys.insert((p.source, p.address, p.protocol.clone(), p.port)));

        let delete: Vec<Pinhole> = self
            .installed
            .iter()
            .filter(|old| !wanted.iter().any(|w| w.key() == old.key()))
            .cloned()
            .collect();
        let state = match &self.current {
            _ if !changed => "unchanged",
            None => "ended",
            Some(x) if x.answer.is_some() => "offer-answer",
            Some(_) => "offer",
        };
        let alters = !delete.is_empty()
            || wanted
                .iter()
                .any(|w| !self.installed.iter().any(|old| old.key() == w.key()));
        self.installed = wanted.clone();
        Changes {
            call_id: self.call_id.clone(),
            call_tag: call_tag(&self.call_id),
            state,
            table: TABLE,
            delete,
            add: wanted,
            notes,
            alters,
        }
    }
}

impl CallState {
    /// An authenticated offer or answer: the dialog's tags and where it
    /// came from.
    fn learn(&mut self, seen: &Seen) {
        let (from, to) = &seen.tags;
        match (&self.from_tag, &self.to_tag) {
            (None, _) if seen.is_request => self.from_tag = from.clone(),
            // A late offer, in the 2xx: both tags at once.
            (None, None) => {
                self.from_tag = from.clone();
                self.to_tag = to.clone();
            }
            (Some(f), None) if !seen.is_request && Some(f) == from.as_ref() => {
                self.to_tag = to.clone();
            }
            _ => {}
        }
        if let Some(src) = &seen.source
            && !self.neighbours.contains(src)
        {
            self.neighbours.push(src.clone());
        }
    }

    /// Whether an ACK carries the answer to this dialog's late offer: the
    /// offer came in a 2xx and is unanswered, and the ACK's tags are the
    /// dialog's.
    fn awaits_ack(&self, seen: &Seen) -> bool {
        let late = self
            .current
            .as_ref()
            .is_some_and(|x| !x.offer_in_request && x.answer.is_none());
        let (Some(f), Some(t)) = (&self.from_tag, &self.to_tag) else {
            return false;
        };
        // Either side may have sent the offer (a re-INVITE of the callee).
        let (a, b) = (seen.tags.0.as_ref(), seen.tags.1.as_ref());
        late && ((a == Some(f) && b == Some(t)) || (a == Some(t) && b == Some(f)))
    }

    /// Whether a BYE may close the call's pinholes (S2): it matches the
    /// dialog (both tags) and comes from one of its neighbours or carries
    /// a dialog party's signature. `Ok` with a note when the source could
    /// not be checked.
    fn may_close(&self, seen: &Seen) -> Result<Option<String>, String> {
        let (Some(f), Some(t)) = (&self.from_tag, &self.to_tag) else {
            return Err("no dialog is established for this call yet".into());
        };
        let (a, b) = (seen.tags.0.as_ref(), seen.tags.1.as_ref());
        let matches = (a == Some(f) && b == Some(t)) || (a == Some(t) && b == Some(f));
        if !matches {
            return Err("its From and To tags are not the dialog's".into());
        }
        if seen.party_signed {
            return Ok(None);
        }
        match &seen.source {
            None => Ok(Some(
                "the BYE's source was not checked (no --received-from): the dialog's tags alone closed the pinholes".into(),
            )),
            Some(src) if self.neighbours.contains(src) => Ok(None),
            Some(src) => Err(format!(
                "it came from {src}, not from the dialog's neighbours ({}), and no dialog party signed it",
                if self.neighbours.is_empty() {
                    "none recorded".to_owned()
                } else {
                    self.neighbours.join(", ")
                }
            )),
        }
    }
}

/// The pinholes of one exchange, within `limits`.
fn pinholes(x: &Exchange, limits: &PinholeLimits, notes: &mut Vec<String>) -> Vec<Pinhole> {
    let mut out = Vec::new();
    if x.offer.len() > limits.max_streams {
        notes.push(format!(
            "{} streams: only the first {} get pinholes (--pinhole-max-streams)",
            x.offer.len(),
            limits.max_streams
        ));
    }
    for (i, offer) in x.offer.iter().enumerate().take(limits.max_streams) {
        let answer = x.answer.as_ref().and_then(|a| a.get(i));
        if offer.port == 0 || answer.is_some_and(|a| a.port == 0) {
            continue;
        }
        let mux = offer.rtcp_mux && answer.is_none_or(|a| a.rtcp_mux);
        // Once answered, each side is reached only from the other's address.
        let from_answerer = answer.map(|a| usable_address(a.address.as_deref()));
        let from_offerer = answer.map(|_| usable_address(offer.address.as_deref()));
        holes(
            i,
            offer,
            Side::Offer,
            mux,
            from_answerer,
            limits,
            &mut out,
            notes,
        );
        if let Some(a) = answer {
            holes(
                i,
                a,
                Side::Answer,
                mux,
                from_offerer,
                limits,
                &mut out,
                notes,
            );
        }
    }
    out
}

/// The pinholes of one side of stream `index`. `source`: `None` before the
/// answer (any source); after it, the other side's address, if usable.
#[allow(clippy::too_many_arguments)]
fn holes(
    index: usize,
    s: &Stream,
    side: Side,
    mux: bool,
    source: Option<Option<IpAddr>>,
    limits: &PinholeLimits,
    out: &mut Vec<Pinhole>,
    notes: &mut Vec<String>,
) {
    let side_name = match side {
        Side::Offer => "offer",
        Side::Answer => "answer",
    };
    let Some(address) = usable_address(s.address.as_deref()) else {
        notes.push(format!(
            "stream {index} ({}) of the {side_name}: no usable IP address ({}), no pinhole",
            s.media,
            s.address.as_deref().unwrap_or("no c= line")
        ));
        return;
    };
    if let Some(why) = limits.refuse(address) {
        notes.push(format!(
            "stream {index} ({}) of the {side_name}: {address} is {why}, no pinhole",
            s.media
        ));
        return;
    }
    let protocol = if s.transport.to_ascii_uppercase().starts_with("TCP") {
        "tcp"
    } else {
        "udp"
    };
    let source = match source {
        None => None,
        Some(Some(from)) if from.is_ipv4() == address.is_ipv4() => Some(from),
        Some(other) => {
            notes.push(format!(
                "stream {index} ({}) of the {side_name}: {}, so {address} stays open to any source",
                s.media,
                match other {
                    Some(from) => format!("the other side's {from} is of another address family"),
                    None => "the other side gave no usable address to narrow it to".to_owned(),
                }
            ));
            None
        }
    };
    let hole = |address: IpAddr, port: u16, component| Pinhole {
        set: match (source.is_some(), address.is_ipv4()) {
            (false, true) => "media4",
            (false, false) => "media6",
            (true, true) => "pair4",
            (true, false) => "pair6",
        }
        .to_owned(),
        source,
        address,
        protocol: protocol.to_owned(),
        port,
        stream: index,
        media: s.media.clone(),
        component,
        side,
    };
    out.push(hole(address, s.port, Component::Rtp));
    // RTCP goes where RTP goes: an `a=rtcp` naming another host would let
    // an SDP open a pinhole anywhere.
    let rtcp_address = s.rtcp_address.as_deref().map(|a| usable_address(Some(a)));
    if let Some(other) = rtcp_address
        && other != Some(address)
        && !mux
    {
        notes.push(format!(
            "stream {index} ({}) of the {side_name}: RTCP to {}, another host than RTP's {address}: no RTCP pinhole",
            s.media,
            s.rtcp_address.as_deref().unwrap_or_default()
        ));
        return;
    }
    match s.rtcp(mux) {
        Some(port) => out.push(hole(address, port, Component::Rtcp)),
        // The port is not 0 here: RTCP is muxed, or RTP has the last port.
        None if !mux => notes.push(format!(
            "stream {index} ({}) of the {side_name}: RTP on port 65535 leaves no port for RTCP",
            s.media
        )),
        None => {}
    }
}

/// An IP address media can be sent to: not a name, not 0.0.0.0 / :: (hold).
/// A multicast `c=` address carries `/TTL`; that suffix goes.
fn usable_address(a: Option<&str>) -> Option<IpAddr> {
    let a = a?;
    let a = a.split('/').next().unwrap_or(a);
    a.parse::<IpAddr>().ok().filter(|ip| !ip.is_unspecified())
}

/// Formats of `--pinholes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum PinholeFormat {
    /// An nftables script for `nft -f`.
    #[default]
    Nft,
    /// JSON for other firewalls and scripts.
    Json,
}

impl Changes {
    /// No change to the call `call_id`: a request the relay answered
    /// itself never reached the far end.
    pub fn none(call_id: &str) -> Changes {
        Changes {
            call_id: call_id.to_owned(),
            call_tag: call_tag(call_id),
            state: "unchanged",
            table: TABLE,
            delete: Vec::new(),
            add: Vec::new(),
            notes: Vec::new(),
            alters: false,
        }
    }

    /// An `nft -f` script: the table and its two sets (declaring them is a
    /// no-op when they exist), then the deletions, then the additions.
    pub fn to_nft(&self) -> String {
        let mut out = String::from("#!/usr/sbin/nft -f\n");
        let _ = writeln!(out, "# sipseal media pinholes");
        let _ = writeln!(
            out,
            "# Call-ID: {}",
            self.call_id.replace(['\r', '\n'], " ")
        );
        let _ = writeln!(out, "# call tag: {}", self.call_tag);
        let what = match self.state {
            "offer" => "offer seen, answer pending",
            "offer-answer" => "offer and answer",
            "ended" => "call ended: pinholes removed",
            _ => "no change",
        };
        let _ = writeln!(out, "# state: {what}");
        for n in &self.notes {
            let _ = writeln!(out, "# note: {n}");
        }
        out.push_str(SETS);
        for p in &self.delete {
            // Added first, in the same transaction, so that the batch
            // applies whether or not the element is still there.
            let _ = writeln!(out, "add element {TABLE} {} {{ {} }}", p.set, p.element());
            let _ = writeln!(
                out,
                "delete element {TABLE} {} {{ {} }}",
                p.set,
                p.element()
            );
        }
        add_elements(&mut out, &self.call_tag, &self.add);
        out
    }

    /// The same as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// In the chosen format.
    pub fn render(&self, format: PinholeFormat) -> String {
        match format {
            PinholeFormat::Nft => self.to_nft(),
            PinholeFormat::Json => self.to_json(),
        }
    }
}

/// The rules that use the sets, and the sets (declaring them is a no-op
/// when they exist). The rules go in a chain of table `inet sipseal`
/// itself: a set is seen only by its own table's rules.
const SETS: &str = "\
# Use the sets from a chain of this table, e.g.
#   ip saddr . ip daddr . meta l4proto . th dport @pair4 accept
#   ip6 saddr . ip6 daddr . meta l4proto . th dport @pair6 accept
#   ip daddr . meta l4proto . th dport @media4 accept
#   ip6 daddr . meta l4proto . th dport @media6 accept
table inet sipseal {
\tset media4 {
\t\ttype ipv4_addr . inet_proto . inet_service
\t}
\tset media6 {
\t\ttype ipv6_addr . inet_proto . inet_service
\t}
\tset pair4 {
\t\ttype ipv4_addr . ipv4_addr . inet_proto . inet_service
\t}
\tset pair6 {
\t\ttype ipv6_addr . ipv6_addr . inet_proto . inet_service
\t}
}
";

/// An `nft -f` script that makes the sets hold exactly the pinholes of
/// `calls`, in one transaction: each set flushed, then every call's
/// elements added (a relay's start: what ended while it was down goes).
pub fn sync_script(calls: &[CallState]) -> String {
    let mut out = String::from(
        "#!/usr/sbin/nft -f
# sipseal media pinholes: every call's
",
    );
    out.push_str(SETS);
    for set in ["media4", "media6", "pair4", "pair6"] {
        let _ = writeln!(out, "flush set {TABLE} {set}");
    }
    for c in calls {
        add_elements(&mut out, &call_tag(&c.call_id), &c.installed);
    }
    out
}

/// `add element` lines for `pinholes`, each with a comment naming the call.
fn add_elements(out: &mut String, call_tag: &str, pinholes: &[Pinhole]) {
    for p in pinholes {
        let component = match p.component {
            Component::Rtp => "rtp",
            Component::Rtcp => "rtcp",
        };
        let side = match p.side {
            Side::Offer => "offer",
            Side::Answer => "answer",
        };
        let _ = writeln!(
            out,
            "add element {TABLE} {} {{ {} comment \"sipseal {call_tag} s{} {} {component} {side}\" }}",
            p.set,
            p.element(),
            p.stream,
            sanitize_comment(&p.media),
        );
    }
}

fn sanitize_comment(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(addr: &str, port: u16, mux: bool) -> Stream {
        Stream {
            media: "audio".into(),
            address: Some(addr.into()),
            port,
            transport: "RTP/AVP".into(),
            rtcp_mux: mux,
            rtcp_port: None,
            rtcp_address: None,
        }
    }

    /// A message of the dialog with tags a (caller) and b (callee); the
    /// initial INVITE has no To tag yet.
    fn seen(is_request: bool, method: &str, cseq: u32, status: Option<u16>) -> Seen {
        let to = (!(is_request && method == "INVITE" && cseq == 1)).then(|| "b".to_owned());
        Seen {
            is_request,
            method: method.into(),
            cseq,
            status,
            streams: None,
            tags: (Some("a".into()), to),
            source: None,
            party_signed: false,
            limits: PinholeLimits::default(),
            now: None,
        }
    }

    fn with(mut s: Seen, streams: Vec<Stream>) -> Seen {
        s.streams = Some(streams);
        s
    }

    fn elements(ps: &[Pinhole]) -> Vec<String> {
        ps.iter().map(Pinhole::element).collect()
    }

    #[test]
    fn mux_needs_both_sides() {
        let mut st = CallState::new("c");
        let c = st.step(&with(
            seen(true, "INVITE", 1, None),
            vec![stream("192.0.2.1", 4000, true)],
        ));
        assert_eq!(c.state, "offer");
        assert_eq!(elements(&c.add), ["192.0.2.1 . udp . 4000"]);
        // The answer does not accept rtcp-mux: RTCP on port+1 on both sides.
        let c = st.step(&with(
            seen(false, "INVITE", 1, Some(200)),
            vec![stream("2001:db8::2", 5000, false)],
        ));
        assert_eq!(c.state, "offer-answer");
        assert_eq!(
            elements(&c.add),
            [
                "192.0.2.1 . udp . 4000",
                "192.0.2.1 . udp . 4001",
                "2001:db8::2 . udp . 5000",
                "2001:db8::2 . udp . 5001"
            ]
        );
        assert_eq!(c.add[2].set, "media6");
        assert!(c.delete.is_empty());
        let c = st.step(&seen(true, "BYE", 2, None));
        assert_eq!(c.state, "ended");
        assert!(c.add.is_empty());
        assert_eq!(c.delete.len(), 4);
        assert!(st.installed.is_empty());
    }

    /// Before the answer the offerer is open to any source; once it
    /// passes, each side is reached only from the other's address, and
    /// the open element goes.
    #[test]
    fn the_answer_narrows_each_side_to_the_other() {
        let mut st = CallState::new("c");
        let c = st.step(&with(
            seen(true, "INVITE", 1, None),
            vec![stream("192.0.2.1", 4000, true)],
        ));
        assert_eq!(elements(&c.add), ["192.0.2.1 . udp . 4000"]);
        assert_eq!(c.add[0].set, "media4");
        assert!(c.alters);
        let c = st.step(&with(
            seen(false, "INVITE", 1, Some(200)),
            vec![stream("198.51.100.2", 5000, true)],
        ));
        assert_eq!(
            elements(&c.add),
            [
                "198.51.100.2 . 192.0.2.1 . udp . 4000",
                "192.0.2.1 . 198.51.100.2 . udp . 5000"
            ]
        );
        assert!(c.add.iter().all(|p| p.set == "pair4"));
        assert_eq!(elements(&c.delete), ["192.0.2.1 . udp . 4000"]);
        assert!(c.alters);
        // The 200 again (a retransmission): nothing new for a firewall.
        let c = st.step(&with(
            seen(false, "INVITE", 1, Some(200)),
            vec![stream("198.51.100.2", 5000, true)],
        ));
        assert!(!c.alters && c.delete.is_empty());
        let script = c.to_nft();
        assert!(script.contains(
            "add element inet sipseal pair4 { 198.51.100.2 . 192.0.2.1 . udp . 4000 comment"
        ));
        // The answer holds (0.0.0.0): the offerer's side stays open to any
        // source, and a note says why.
        let mut st = CallState::new("d");
        st.step(&with(
            seen(true, "INVITE", 1, None),
            vec![stream("192.0.2.1", 4000, true)],
        ));
        let c = st.step(&with(
            seen(false, "INVITE", 1, Some(200)),
            vec![stream("0.0.0.0", 5000, true)],
        ));
        assert_eq!(elements(&c.add), ["192.0.2.1 . udp . 4000"]);
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("stays open to any source")),
            "{:?}",
            c.notes
        );
    }

    /// A deletion is preceded by an add of the same element in the same
    /// script: the batch applies whether or not the element is there.
    #[test]
    fn every_deletion_applies_whether_or_not_the_element_is_there() {
        let mut st = CallState::new("c");
        st.step(&with(
            seen(true, "INVITE", 1, None),
            vec![stream("192.0.2.1", 4000, true)],
        ));
        let c = st.end("gone");
        let script = c.to_nft();
        let lines: Vec<&str> = script.lines().filter(|l| l.contains("element")).collect();
        assert_eq!(
            lines,
            [
                "add element inet sipseal media4 { 192.0.2.1 . udp . 4000 }",
                "delete element inet sipseal media4 { 192.0.2.1 . udp . 4000 }"
            ]
        );
        let sync = sync_script(&[st]);
        assert!(sync.contains("flush set inet sipseal pair6\n"));
        assert!(!sync.contains("add element"), "{sync}");
    }

    #[test]
    fn rejected_streams_and_unusable_addresses_get_none() {
        let mut st = CallState::new("c");
        let mut video = stream("192.0.2.1", 6000, false);
        video.media = "video".into();
        video.rtcp_port = Some(6100);
        video.rtcp_address = Some("192.0.2.1".into());
        st.step(&with(
            seen(true, "INVITE", 1, None),
            vec![stream("192.0.2.1", 4000, false), video],
        ));
        assert_eq!(
            elements(&st.installed),
            [
                "192.0.2.1 . udp . 4000",
                "192.0.2.1 . udp . 4001",
                "192.0.2.1 . udp . 6000",
                "192.0.2.1 . udp . 6100"
            ]
        );
        // The answer rejects video (port 0) and holds audio (0.0.0.0).
        let mut rejected = stream("198.51.100.1", 0, false);
        rejected.media = "video".into();
        let c = st.step(&with(
            seen(false, "INVITE", 1, Some(200)),
            vec![stream("0.0.0.0", 7000, false), rejected],
        ));
        assert_eq!(
            elements(&c.add),
            ["192.0.2.1 . udp . 4000", "192.0.2.1 . udp . 4001"]
        );
        assert_eq!(
            elements(&c.delete),
            ["192.0.2.1 . udp . 6000", "192.0.2.1 . udp . 6100"]
        );
        assert!(
            c.notes.iter().any(|n| n.contains("(0.0.0.0), no pinhole")),
            "{:?}",
            c.notes
        );
    }

    /// S1: an SDP cannot open pinholes to loopback, private service
    /// ports of this host, broadcast, multicast, link-local, or send RTCP
    /// to another host than RTP; an allow-list and a stream cap apply.
    #[test]
    fn only_sane_targets_become_pinholes() {
        let mut st = CallState::new("c");
        let mut rtcp_elsewhere = stream("192.0.2.1", 6000, false);
        rtcp_elsewhere.rtcp_address = Some("203.0.113.9".into());
        rtcp_elsewhere.rtcp_port = Some(22);
        let targets = [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.251",
            "169.254.1.1",
            "::1",
            "ff02::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ];
        let mut streams: Vec<Stream> = targets.iter().map(|a| stream(a, 4000, true)).collect();
        streams.push(rtcp_elsewhere);
        let c = st.step(&with(seen(true, "INVITE", 1, None), streams));
        assert_eq!(
            elements(&c.add),
            ["192.0.2.1 . udp . 6000"],
            "{:?}",
            c.notes
        );
        for why in [
            "loopback",
            "broadcast",
            "multicast",
            "link-local",
            "another host",
        ] {
            assert!(
                c.notes.iter().any(|n| n.contains(why)),
                "{why}: {:?}",
                c.notes
            );
        }
        // The operator's allow-list, and the per-call cap.
        let limits = PinholeLimits {
            allow: vec!["198.51.100.0/24".parse().unwrap()],
            max_streams: 2,
        };
        let mut s = with(
            seen(true, "INVITE", 1, None),
            vec![
                stream("198.51.100.7", 4000, true),
                stream("192.0.2.1", 5000, true),
                stream("198.51.100.8", 6000, true),
            ],
        );
        s.limits = limits;
        let c = CallState::new("d").step(&s);
        assert_eq!(elements(&c.add), ["198.51.100.7 . udp . 4000"]);
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("outside --pinhole-allow"))
        );
        assert!(c.notes.iter().any(|n| n.contains("only the first 2")));
    }

    /// S2: a BYE closes the pinholes only when it matches the dialog and
    /// comes from a neighbour of the dialog or is signed by a party.
    #[test]
    fn a_forged_bye_keeps_the_pinholes() {
        let mut st = CallState::new("c");
        let from = |mut s: Seen, src: &str| {
            s.source = Some(src.into());
            s
        };
        st.step(&from(
            with(
                seen(true, "INVITE", 1, None),
                vec![stream("192.0.2.1", 4000, true)],
            ),
            "192.0.2.10:5060",
        ));
        st.step(&from(
            with(
                seen(false, "INVITE", 1, Some(200)),
                vec![stream("192.0.2.2", 5000, true)],
            ),
            "bob.example.com",
        ));
        assert_eq!(st.installed.len(), 2);
        // Only the Call-ID: other tags.
        let mut bye = seen(true, "BYE", 2, None);
        bye.tags = (Some("x".into()), Some("y".into()));
        let c = st.step(&bye);
        assert_eq!(
            (c.state, st.installed.len()),
            ("unchanged", 2),
            "{:?}",
            c.notes
        );
        assert!(c.notes[0].contains("tags are not the dialog's"));
        // The right tags from a stranger.
        let c = st.step(&from(seen(true, "BYE", 2, None), "203.0.113.66"));
        assert_eq!(st.installed.len(), 2);
        assert!(
            c.notes[0].contains("not from the dialog's neighbours"),
            "{:?}",
            c.notes
        );
        // ... unless a dialog party signed it.
        let mut signed = from(seen(true, "BYE", 2, None), "203.0.113.66");
        signed.party_signed = true;
        let mut st2 = st.clone();
        assert_eq!(st2.step(&signed).state, "ended");
        // From a neighbour, the callee's side sending it (tags reversed).
        let mut bye = from(seen(true, "BYE", 7, None), "bob.example.com");
        bye.tags = (Some("b".into()), Some("a".into()));
        let c = st.step(&bye);
        assert_eq!(c.state, "ended");
        assert_eq!(c.delete.len(), 2);
    }

    #[test]
    fn a_rejected_reinvite_falls_back_and_a_failed_invite_ends() {
        let mut st = CallState::new("c");
        st.step(&with(
            seen(true, "INVITE", 1, None),
            vec![stream("192.0.2.1", 4000, true)],
        ));
        st.step(&with(
            seen(false, "INVITE", 1, Some(200)),
            vec![stream("192.0.2.2", 5000, true)],
        ));
        // re-INVITE moving to a new port: both sets while it is pending.
        let c = st.step(&with(
            seen(true, "INVITE", 2, None),
            vec![stream("192.0.2.1", 4100, true)],
        ));
        assert_eq!(
            elements(&c.add),
            [
                "192.0.2.1 . udp . 4100",
                "192.0.2.2 . 192.0.2.1 . udp . 4000",
                "192.0.2.1 . 192.0.2.2 . udp . 5000"
            ]
        );
        let c = st.step(&seen(false, "INVITE", 2, Some(488)));
        assert_eq!(elements(&c.delete), ["192.0.2.1 . udp . 4100"]);
        assert_eq!(c.state, "offer-answer");

        let mut failed = CallState::new("d");
        failed.step(&with(
            seen(true, "INVITE", 1, None),
            vec![stream("192.0.2.1", 4000, true)],
        ));
        let c = failed.step(&seen(false, "INVITE", 1, Some(486)));
        assert_eq!(c.state, "ended");
        assert_eq!(elements(&c.delete), ["192.0.2.1 . udp . 4000"]);
    }

    #[test]
    fn late_offer_is_answered_in_the_ack_and_tcp_media_uses_tcp() {
        let mut st = CallState::new("c");
        let mut msrp = stream("192.0.2.1", 2855, false);
        msrp.transport = "TCP/MSRP".into();
        st.step(&with(
            seen(false, "INVITE", 1, Some(200)),
            vec![msrp.clone()],
        ));
        let c = st.step(&with(seen(true, "ACK", 1, None), vec![msrp]));
        assert_eq!(c.state, "offer-answer");
        assert!(c.add.iter().all(|p| p.protocol == "tcp"));
    }

    /// The review of issue 25: a late offer in the 2xx to the callee's
    /// re-INVITE is answered in the ACK the callee sends (the tags the
    /// other way round).
    #[test]
    fn the_callees_late_offer_is_answered_in_its_ack() {
        let mut st = CallState::new("c");
        st.step(&with(
            seen(true, "INVITE", 1, None),
            vec![stream("192.0.2.1", 4000, false)],
        ));
        st.step(&with(
            seen(false, "INVITE", 1, Some(200)),
            vec![stream("192.0.2.2", 5000, false)],
        ));
        let flip = |mut s: Seen| {
            s.tags = (s.tags.1.take(), s.tags.0.take());
            s
        };
        // The callee's re-INVITE without SDP; the caller's 200 offers.
        st.step(&with(
            flip(seen(false, "INVITE", 2, Some(200))),
            vec![stream("192.0.2.1", 4002, false)],
        ));
        let c = st.step(&with(
            flip(seen(true, "ACK", 2, None)),
            vec![stream("192.0.2.2", 5002, false)],
        ));
        assert_eq!(c.state, "offer-answer", "{:?}", c.notes);
        assert!(elements(&st.installed).iter().any(|e| e.contains("5002")));
    }

    /// H1, M3: an ACK with SDP starts no exchange, answers only its own
    /// dialog's late offer, and its source becomes no neighbour.
    #[test]
    fn an_ack_starts_nothing_and_is_no_neighbour() {
        let mut st = CallState::new("c");
        let mut ack = with(
            seen(true, "ACK", 1, None),
            vec![stream("203.0.113.66", 40000, false)],
        );
        ack.source = Some("203.0.113.66:5060".into());
        let c = st.step(&ack);
        assert!(c.add.is_empty(), "{:?}", c.add);
        assert_eq!(c.state, "unchanged");
        assert!(
            c.notes[0].contains("an ACK starts nothing"),
            "{:?}",
            c.notes
        );
        assert!(st.neighbours.is_empty());
        // A late offer of another dialog (other tags) is not its to answer.
        let mut offer = with(
            seen(false, "INVITE", 1, Some(200)),
            vec![stream("192.0.2.1", 4000, false)],
        );
        offer.tags = (Some("x".into()), Some("y".into()));
        st.step(&offer);
        let c = st.step(&ack);
        assert_eq!(c.state, "unchanged");
        assert!(
            !elements(&st.installed)
                .iter()
                .any(|e| e.contains("203.0.113.66"))
        );
        assert!(!st.neighbours.contains(&"203.0.113.66:5060".to_owned()));
    }

    #[test]
    fn nothing_to_see_is_unchanged() {
        let mut st = CallState::new("c");
        let c = st.step(&seen(true, "OPTIONS", 1, None));
        assert_eq!(c.state, "unchanged");
        assert!(c.add.is_empty() && c.delete.is_empty());
    }
}
