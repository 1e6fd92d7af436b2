//! Firewall pinholes for a call's media (SPEC §4 step 7), from the offer
//! SDP and, once it passes, the answer SDP.
//!
//! One pinhole is a set element `ADDRESS . PROTOCOL . PORT` (the
//! destination a media packet may reach) in set `media4` or `media6` of
//! table `inet sipseal`. Each media stream with a non-zero port gets one for
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

/// One set element: media may reach `address` on `protocol`/`port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinhole {
    /// `media4` or `media6`.
    pub set: String,
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
    fn key(&self) -> (IpAddr, &str, u16) {
        (self.address, &self.protocol, self.port)
    }

    fn element(&self) -> String {
        format!("{} . {} . {}", self.address, self.protocol, self.port)
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
    /// The SDP's streams, when the message carried one that could be read.
    pub streams: Option<Vec<Stream>>,
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
        if seen.is_request && method == "BYE" {
            self.current = None;
            self.previous = None;
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
        {
            // The offer was rejected: back to what was agreed before (nothing
            // for a failed initial INVITE).
            self.current = self.previous.take();
        } else {
            changed = false;
        }

        let mut notes = Vec::new();
        let mut wanted = Vec::new();
        if let Some(x) = &self.current {
            wanted.extend(pinholes(x, &mut notes));
            if x.answer.is_none()
                && let Some(p) = &self.previous
            {
                wanted.extend(pinholes(p, &mut notes));
            }
        }
        let mut seen_keys = BTreeSet::new();
        wanted.retain(|p| seen_keys.insert((p.address, p.protocol.clone(), p.port)));

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
        self.installed = wanted.clone();
        Changes {
            call_id: self.call_id.clone(),
            call_tag: call_tag(&self.call_id),
            state,
            table: TABLE,
            delete,
            add: wanted,
            notes,
        }
    }
}

/// The pinholes of one exchange.
fn pinholes(x: &Exchange, notes: &mut Vec<String>) -> Vec<Pinhole> {
    let mut out = Vec::new();
    for (i, offer) in x.offer.iter().enumerate() {
        let answer = x.answer.as_ref().and_then(|a| a.get(i));
        if offer.port == 0 || answer.is_some_and(|a| a.port == 0) {
            continue;
        }
        let mux = offer.rtcp_mux && answer.is_none_or(|a| a.rtcp_mux);
        holes(i, offer, Side::Offer, mux, &mut out, notes);
        if let Some(a) = answer {
            holes(i, a, Side::Answer, mux, &mut out, notes);
        }
    }
    out
}

fn holes(
    index: usize,
    s: &Stream,
    side: Side,
    mux: bool,
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
    let protocol = if s.transport.to_ascii_uppercase().starts_with("TCP") {
        "tcp"
    } else {
        "udp"
    };
    let hole = |address: IpAddr, port: u16, component| Pinhole {
        set: if address.is_ipv4() {
            "media4"
        } else {
            "media6"
        }
        .to_owned(),
        address,
        protocol: protocol.to_owned(),
        port,
        stream: index,
        media: s.media.clone(),
        component,
        side,
    };
    out.push(hole(address, s.port, Component::Rtp));
    let rtcp_address = match s.rtcp_address.as_deref() {
        Some(a) => usable_address(Some(a)).unwrap_or(address),
        None => address,
    };
    match s.rtcp(mux) {
        Some(port) => out.push(hole(rtcp_address, port, Component::Rtcp)),
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
        out.push_str(
            "# Use the sets from your own chain, e.g.\n\
             #   ip daddr . meta l4proto . th dport @media4 accept\n\
             #   ip6 daddr . meta l4proto . th dport @media6 accept\n",
        );
        out.push_str(
            "table inet sipseal {\n\
             \tset media4 {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t}\n\
             \tset media6 {\n\t\ttype ipv6_addr . inet_proto . inet_service\n\t}\n\
             }\n",
        );
        for p in &self.delete {
            let _ = writeln!(
                out,
                "delete element {TABLE} {} {{ {} }}",
                p.set,
                p.element()
            );
        }
        for p in &self.add {
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
                "add element {TABLE} {} {{ {} comment \"sipseal {} s{} {} {component} {side}\" }}",
                p.set,
                p.element(),
                self.call_tag,
                p.stream,
                sanitize_comment(&p.media),
            );
        }
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

    fn seen(is_request: bool, method: &str, cseq: u32, status: Option<u16>) -> Seen {
        Seen {
            is_request,
            method: method.into(),
            cseq,
            status,
            streams: None,
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

    #[test]
    fn rejected_streams_and_unusable_addresses_get_none() {
        let mut st = CallState::new("c");
        let mut video = stream("192.0.2.1", 6000, false);
        video.media = "video".into();
        video.rtcp_port = Some(6100);
        video.rtcp_address = Some("192.0.2.9".into());
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
                "192.0.2.9 . udp . 6100"
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
            ["192.0.2.1 . udp . 6000", "192.0.2.9 . udp . 6100"]
        );
        assert!(c.notes[0].contains("0.0.0.0"), "{:?}", c.notes);
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
                "192.0.2.1 . udp . 4000",
                "192.0.2.2 . udp . 5000"
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

    #[test]
    fn nothing_to_see_is_unchanged() {
        let mut st = CallState::new("c");
        let c = st.step(&seen(true, "OPTIONS", 1, None));
        assert_eq!(c.state, "unchanged");
        assert!(c.add.is_empty() && c.delete.is_empty());
    }
}
