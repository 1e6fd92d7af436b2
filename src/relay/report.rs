//! The disclosure report of one relay step: what the relay decided, what
//! it read (SDP, media, SRTP keys, signer), what it changed and answered;
//! as a value for `--report` (text, JSON, YAML) and the demo.

use serde::Serialize;

use crate::sdp::{Sdp, Stream};
use crate::sip::Message;
use crate::sip::disclosure::{Access, Designation};

/// Why the relay opened (or did not open) the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// No body, or a body that is not sealed.
    NotSealed,
    /// Sealed, not for this relay: forwarded without touching its key.
    NotDesignated,
    /// A `Proxy-Inspect-Body` names this relay.
    Designated,
    /// `--trial`: a RecipientInfo is addressed to this relay.
    Trial,
    /// `reencrypt` without a designation: the sender sealed to this relay
    /// as its next hop (trust hop by hop).
    Addressed,
    /// A later message of a session whose key this relay stored when it
    /// opened the session's first message (docs/SPEC.md §3.2).
    Session,
}

/// One media stream as a relay needs it (pinholes, recording).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    /// `audio`, `video`, ...
    pub media: String,
    /// The connection address (media level, else session level).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The RTP port.
    pub port: u16,
    /// The `m=` transport.
    pub protocol: String,
    /// Whether RTCP shares the RTP port (`a=rtcp-mux`).
    pub rtcp_mux: bool,
    /// Where RTCP goes: `a=rtcp`, else port+1 (none with rtcp-mux or port 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtcp_port: Option<u16>,
    /// Where RTCP goes, when `a=rtcp` names another address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtcp_address: Option<String>,
}

impl From<Stream> for StreamReport {
    fn from(s: Stream) -> StreamReport {
        let rtcp_port = s.rtcp(s.rtcp_mux);
        StreamReport {
            rtcp_address: s.rtcp_address.filter(|_| rtcp_port.is_some()),
            rtcp_port,
            media: s.media,
            address: s.address,
            port: s.port,
            protocol: s.transport,
            rtcp_mux: s.rtcp_mux,
        }
    }
}

/// An SRTP master key offered in `a=crypto` (RFC 4568), for recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SrtpKey {
    /// Index of the media stream.
    pub stream: usize,
    /// `audio`, `video`, ...
    pub media: String,
    /// The `a=crypto` tag.
    pub tag: String,
    /// The crypto suite (`AES_CM_128_HMAC_SHA1_80`, ...).
    pub suite: String,
    /// The key parameters as written (`inline:...`).
    pub key_params: String,
}

/// The disclosure report of one relay step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayReport {
    /// `request` or `response`.
    pub kind: &'static str,
    /// Request method, or the CSeq method of a response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The status code of a response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The Call-ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// This relay's URI(s).
    pub relay: Vec<String>,
    /// Why the relay opened the body, or did not.
    pub decision: Decision,
    /// Who designated this relay (the From party of the sealed request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub designated_by: Option<String>,
    /// What the designation allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    /// Whether the designation lets this relay hand the call's media keys
    /// to a recorder (`purpose=record`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub record: bool,
    /// Whether the body was opened.
    pub opened: bool,
    /// Which key opened it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opened_with: Option<String>,
    /// The SIP response this relay produced instead of forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered: Option<u16>,
    /// The SDP as text, when opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
    /// The media streams of the SDP read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamReport>,
    /// The SRTP keys of the SDP read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub srtp_keys: Vec<SrtpKey>,
    /// Whether this relay edited the SDP.
    pub edited: bool,
    /// Whom the body was sealed for again (after an edit, or by `reencrypt`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resealed_for: Vec<String>,
    /// After a re-seal: `fresh` (a new CEK), `kept` (`--keep-cek`), or
    /// `translated` (a session message sealed under the other side's key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cek: Option<&'static str>,
    /// Who signed the content inside the envelope (inner signature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Who signed the message (outer signature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outer_signer: Option<String>,
    /// Whether this relay signed its output (relay re-signature).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resigned: bool,
    /// Route-Security: what this relay checked and put on top.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route_security: Vec<String>,
    /// Why this relay answered 403, 404 or 495 (for the operator only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Things worth knowing (e.g. an SDP that does not parse).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl RelayReport {
    /// The human-readable form.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let what = match (&self.method, self.status) {
            (Some(m), Some(s)) => format!("{s} response to {m}"),
            (Some(m), None) => format!("{m} request"),
            (None, Some(s)) => format!("{s} response"),
            (None, None) => self.kind.to_owned(),
        };
        let _ = writeln!(out, "relay {}: {what}", self.relay.join(", "));
        if let Some(c) = &self.call_id {
            let _ = writeln!(out, "  call-id: {c}");
        }
        let decision = match self.decision {
            Decision::NotSealed => "body not sealed",
            Decision::NotDesignated => "sealed, not designated: forwarded without opening",
            Decision::Designated => "designated by Proxy-Inspect-Body",
            Decision::Trial => {
                "not designated, opened on trial (a RecipientInfo is addressed to it)"
            }
            Decision::Addressed => "not designated, sealed to this relay as the next hop",
            Decision::Session => "sealed under a session key this relay stored",
        };
        let _ = writeln!(out, "  decision: {decision}");
        if let Some(by) = &self.designated_by {
            let _ = writeln!(out, "  designated by: {by}");
        }
        if let Some(a) = self.access {
            let _ = writeln!(out, "  access: {}", a.as_str());
        }
        if self.record {
            out.push_str("  may record: yes (purpose=record)\n");
        }
        if let Some(k) = &self.opened_with {
            let _ = writeln!(out, "  opened with: {k}");
        }
        if self.edited {
            out.push_str("  edited: yes\n");
        }
        if !self.resealed_for.is_empty() {
            let _ = writeln!(
                out,
                "  re-sealed for: {} ({} CEK)",
                self.resealed_for.join(", "),
                self.cek.unwrap_or("fresh")
            );
        }
        if let Some(code) = self.answered {
            let _ = writeln!(out, "  answered: {code} instead of forwarding");
        }
        if let Some(why) = &self.refused {
            let _ = writeln!(out, "  refused: {why}");
        }
        if let Some(s) = &self.outer_signer {
            let _ = writeln!(out, "  outer signature: {s}");
        }
        if let Some(s) = &self.signer {
            let _ = writeln!(
                out,
                "  inner signature: {s} (read-only: an edit would break it)"
            );
        }
        if self.resigned {
            out.push_str("  re-signed: yes (outer signature by this relay)\n");
        }
        for r in &self.route_security {
            let _ = writeln!(out, "  route-security: {r}");
        }
        for (i, s) in self.streams.iter().enumerate() {
            let _ = write!(
                out,
                "  stream {i}: {} {}:{} {}",
                s.media,
                s.address.as_deref().unwrap_or("-"),
                s.port,
                s.protocol
            );
            match (s.rtcp_mux, s.rtcp_port) {
                (true, _) => out.push_str(", rtcp-mux"),
                (false, Some(p)) => {
                    let _ = write!(
                        out,
                        ", rtcp {}:{p}",
                        s.rtcp_address
                            .as_deref()
                            .or(s.address.as_deref())
                            .unwrap_or("-")
                    );
                }
                (false, None) => {}
            }
            out.push('\n');
        }
        for k in &self.srtp_keys {
            let _ = writeln!(
                out,
                "  srtp key: stream {} ({}) tag {} {} {}",
                k.stream, k.media, k.tag, k.suite, k.key_params
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        out
    }
}

impl RelayReport {
    /// An empty report for `msg` at the relay named `uris`.
    pub(super) fn new(msg: &Message, uris: &[String]) -> RelayReport {
        RelayReport {
            kind: if msg.is_request() {
                "request"
            } else {
                "response"
            },
            method: msg
                .method()
                .map(str::to_owned)
                .or_else(|| msg.cseq().ok().map(|c| c.method)),
            status: msg.status(),
            call_id: msg.call_id().ok().map(str::to_owned),
            relay: uris.to_vec(),
            decision: Decision::NotSealed,
            designated_by: None,
            access: None,
            record: false,
            opened: false,
            opened_with: None,
            answered: None,
            sdp: None,
            streams: Vec::new(),
            srtp_keys: Vec::new(),
            edited: false,
            resealed_for: Vec::new(),
            cek: None,
            signer: None,
            outer_signer: None,
            resigned: false,
            route_security: Vec::new(),
            refused: None,
            notes: Vec::new(),
        }
    }

    /// Record the designation naming this relay (access, and who made it).
    pub(super) fn designated(&mut self, msg: &Message, d: &Designation) {
        self.access = Some(d.access);
        self.record = d.record;
        self.designated_by = msg.aor("From").map(str::to_owned);
    }

    /// Fill in what the plaintext SDP says: the text, each stream, the
    /// SRTP keys (for recording); a note when it is no SDP.
    pub(super) fn disclose(&mut self, sdp: &[u8]) {
        let text = String::from_utf8_lossy(sdp).into_owned();
        match Sdp::parse(&text) {
            Ok(parsed) => {
                for (i, m) in parsed.media.iter().enumerate() {
                    self.streams.push(StreamReport::from(Stream::from(m)));
                    for c in &m.crypto {
                        self.srtp_keys.push(SrtpKey {
                            stream: i,
                            media: m.kind.clone(),
                            tag: c.tag.clone(),
                            suite: c.suite.clone(),
                            key_params: c.key_params.clone(),
                        });
                    }
                }
            }
            Err(e) => self
                .notes
                .push(format!("the content is not a readable SDP: {e}")),
        }
        self.sdp = Some(text);
    }
}
