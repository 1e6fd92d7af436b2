//! `inspect`: what a message is made of, with no key needed.

use std::fmt::Write as _;

use serde::Serialize;

use crate::mime::{self, Part};
use crate::sdp::Sdp;
use crate::sip::{Message, StartLine};

/// One header line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderLine {
    /// As written (compact forms stay compact).
    pub name: String,
    /// Unfolded value.
    pub value: String,
}

/// One media stream of an SDP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MediaSummary {
    pub media: String,
    pub port: u16,
    pub protocol: String,
    /// The effective connection address (media-level, else session-level).
    pub address: Option<String>,
    pub rtcp_mux: bool,
    /// SRTP crypto suites offered (`a=crypto`); keys are not shown here.
    pub crypto_suites: Vec<String>,
}

/// What an SDP body says about the media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SdpSummary {
    /// Every distinct connection address, in order of appearance.
    pub connection_addresses: Vec<String>,
    pub media: Vec<MediaSummary>,
}

impl From<&Sdp> for SdpSummary {
    fn from(sdp: &Sdp) -> Self {
        let mut connection_addresses: Vec<String> = Vec::new();
        let all = sdp
            .connection
            .iter()
            .chain(sdp.media.iter().filter_map(|m| m.connection.as_ref()));
        for c in all {
            if !connection_addresses.contains(&c.address) {
                connection_addresses.push(c.address.clone());
            }
        }
        let media = sdp
            .media
            .iter()
            .map(|m| MediaSummary {
                media: m.kind.clone(),
                port: m.port,
                protocol: m.proto.clone(),
                address: m.connection.as_ref().map(|c| c.address.clone()),
                rtcp_mux: m.rtcp_mux,
                crypto_suites: m.crypto.iter().map(|c| c.suite.clone()).collect(),
            })
            .collect();
        SdpSummary {
            connection_addresses,
            media,
        }
    }
}

/// One body part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartReport {
    pub content_type: Option<String>,
    pub headers: Vec<HeaderLine>,
    /// Content bytes (0 for a multipart; see `parts`).
    pub length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp: Option<SdpSummary>,
    /// Why an `application/sdp` part could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp_error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartReport>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `request` or `response`.
    pub kind: &'static str,
    pub start_line: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub headers: Vec<HeaderLine>,
    /// Content-Length as carried (the body's byte count).
    pub body_length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<PartReport>,
    /// Headers that are present but do not parse, and body problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

fn part_report(p: &Part) -> PartReport {
    let (sdp, sdp_error) = if p.is("application/sdp") {
        match std::str::from_utf8(&p.body)
            .map_err(|e| e.to_string())
            .and_then(|t| Sdp::parse(t).map_err(|e| e.to_string()))
        {
            Ok(sdp) => (Some(SdpSummary::from(&sdp)), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    PartReport {
        content_type: p.content_type.as_ref().map(|c| c.mime.clone()),
        headers: p
            .headers
            .iter()
            .map(|(n, v)| HeaderLine {
                name: n.clone(),
                value: v.clone(),
            })
            .collect(),
        length: p.body.len(),
        sdp,
        sdp_error,
        parts: p.parts.iter().map(part_report).collect(),
    }
}

/// Inspect a parsed message. Never fails: what does not parse is listed
/// under `problems`.
pub fn inspect(msg: &Message) -> Report {
    let mut problems = Vec::new();
    let checks: [(&str, Option<String>); 6] = [
        ("Via", msg.vias().err().map(|e| e.to_string())),
        ("From", msg.from_header().err().map(|e| e.to_string())),
        ("To", msg.to_header().err().map(|e| e.to_string())),
        ("Call-ID", msg.call_id().err().map(|e| e.to_string())),
        ("CSeq", msg.cseq().err().map(|e| e.to_string())),
        (
            "Max-Forwards",
            msg.max_forwards().err().map(|e| e.to_string()),
        ),
    ];
    problems.extend(checks.into_iter().filter_map(|(_, e)| e));
    let body = match mime::body_of(msg) {
        Ok(b) => b.as_ref().map(part_report),
        Err(e) => {
            problems.push(format!("body: {e}"));
            None
        }
    };
    let (kind, method, request_uri, status) = match msg.start_line() {
        StartLine::Request { method, uri } => {
            ("request", Some(method.clone()), Some(uri.clone()), None)
        }
        StartLine::Response { code, .. } => ("response", None, None, Some(*code)),
    };
    Report {
        kind,
        start_line: msg.start_line().to_string(),
        method,
        request_uri,
        status,
        headers: msg
            .headers()
            .iter()
            .map(|h| HeaderLine {
                name: h.name().to_owned(),
                value: h.value().to_owned(),
            })
            .collect(),
        body_length: msg.body().len(),
        body,
        problems,
    }
}

fn part_text(out: &mut String, p: &PartReport, indent: usize) {
    let pad = " ".repeat(indent);
    let ct = p.content_type.as_deref().unwrap_or("(no Content-Type)");
    if p.parts.is_empty() {
        let _ = writeln!(out, "{pad}part: {ct}, {} bytes", p.length);
    } else {
        let _ = writeln!(out, "{pad}part: {ct}, {} parts", p.parts.len());
    }
    for h in &p.headers {
        let _ = writeln!(out, "{pad}  {}: {}", h.name, h.value);
    }
    if let Some(sdp) = &p.sdp {
        let addrs = match sdp.connection_addresses.as_slice() {
            [] => "none".to_owned(),
            all => all.join(", "),
        };
        let _ = writeln!(out, "{pad}  sdp: connection {addrs}");
        for m in &sdp.media {
            let _ = write!(out, "{pad}    {} port {} {}", m.media, m.port, m.protocol);
            if let Some(a) = &m.address {
                let _ = write!(out, " at {a}");
            }
            if m.rtcp_mux {
                out.push_str(", rtcp-mux");
            }
            if !m.crypto_suites.is_empty() {
                let _ = write!(out, ", crypto {}", m.crypto_suites.join(" "));
            }
            out.push('\n');
        }
    }
    if let Some(e) = &p.sdp_error {
        let _ = writeln!(out, "{pad}  sdp: unreadable ({e})");
    }
    for sub in &p.parts {
        part_text(out, sub, indent + 2);
    }
}

impl Report {
    /// The human-readable form.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}: {}", self.kind, self.start_line);
        let _ = writeln!(out, "headers:");
        for h in &self.headers {
            let _ = writeln!(out, "  {}: {}", h.name, h.value);
        }
        match &self.body {
            Some(b) => {
                let _ = writeln!(out, "body: {} bytes", self.body_length);
                part_text(&mut out, b, 2);
            }
            None => out.push_str("body: none\n"),
        }
        for p in &self.problems {
            let _ = writeln!(out, "problem: {p}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_sdp_streams_and_problems() {
        let sdp = include_bytes!("../samples/offer.sdp");
        let mut raw = b"INVITE sip:bob@b.example.com SIP/2.0\r\nCSeq: x INVITE\r\nContent-Type: application/sdp\r\n\r\n".to_vec();
        raw.extend_from_slice(sdp);
        let r = inspect(&Message::parse(&raw).unwrap());
        assert_eq!(r.method.as_deref(), Some("INVITE"));
        let s = r.body.as_ref().unwrap().sdp.as_ref().unwrap();
        assert_eq!(s.connection_addresses, ["192.0.2.10", "192.0.2.11"]);
        assert_eq!(s.media[1].crypto_suites, ["AES_CM_128_HMAC_SHA1_80"]);
        assert!(r.problems.iter().any(|p| p.contains("CSeq")));
        assert!(r.problems.iter().any(|p| p.contains("missing Call-ID")));
        assert!(
            r.to_text()
                .contains("audio port 49170 RTP/SAVP at 192.0.2.10, rtcp-mux")
        );
    }
}
