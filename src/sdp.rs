//! SDP (RFC 8866) reading: connection addresses, media streams, RTCP
//! (RFC 3605, RFC 5761) and SDES crypto attributes (RFC 4568).

use serde::{Deserialize, Serialize};

/// A line that is not `<type>=<value>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {reason}")]
pub struct SdpError {
    /// The 1-based line (0: the edit, not a line).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// `c=<nettype> <addrtype> <connection-address>`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// `IN`.
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// The address (with `/TTL` for multicast).
    pub address: String,
}

/// `a=crypto:<tag> <crypto-suite> <key-params> [<session-params>]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crypto {
    /// The tag that names it in the answer.
    pub tag: String,
    /// The crypto suite.
    pub suite: String,
    /// The key parameters (`inline:...`).
    pub key_params: String,
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rtcp {
    /// The RTCP port.
    pub port: u16,
    /// The RTCP address, when given.
    pub address: Option<String>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Media {
    /// `audio`, `video`, ...
    pub kind: String,
    /// The port (0: rejected or disabled).
    pub port: u16,
    /// The number of ports, when given (`port/count`).
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, ...
    pub proto: String,
    /// The payload formats.
    pub formats: Vec<String>,
    /// The media-level `c=`, or else the session-level one.
    pub connection: Option<Connection>,
    /// Whether `a=rtcp-mux` is present.
    pub rtcp_mux: bool,
    /// `a=rtcp`, when present.
    pub rtcp: Option<Rtcp>,
    /// The SRTP keys offered (`a=crypto`).
    pub crypto: Vec<Crypto>,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive` (default sendrecv).
    pub direction: String,
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sdp {
    /// `o=` value.
    pub origin: Option<String>,
    /// `s=` value.
    pub session_name: Option<String>,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// The media sections, in order.
    pub media: Vec<Media>,
}

fn connection(value: &str, line: usize) -> Result<Connection, SdpError> {
    match value.split_whitespace().collect::<Vec<_>>().as_slice() {
        [net, addr_type, address] => Ok(Connection {
            net_type: (*net).to_owned(),
            addr_type: (*addr_type).to_owned(),
            address: (*address).to_owned(),
        }),
        _ => Err(SdpError {
            line,
            reason: format!("c= needs `IN IP4 ADDRESS`, got {value:?}"),
        }),
    }
}

fn media(value: &str, line: usize) -> Result<Media, SdpError> {
    let bad = |reason: String| SdpError { line, reason };
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [kind, port, proto, formats @ ..] = fields.as_slice() else {
        return Err(bad(format!(
            "m= needs `MEDIA PORT PROTO FMT...`, got {value:?}"
        )));
    };
    let (port, count) = match port.split_once('/') {
        Some((p, c)) => (p, Some(c)),
        None => (*port, None),
    };
    let port = port
        .parse()
        .map_err(|_| bad(format!("invalid port {port:?}")))?;
    let port_count = count
        .map(|c| {
            c.parse()
                .map_err(|_| bad(format!("invalid port count {c:?}")))
        })
        .transpose()?;
    Ok(Media {
        kind: (*kind).to_owned(),
        port,
        port_count,
        proto: (*proto).to_owned(),
        formats: formats.iter().map(|f| (*f).to_owned()).collect(),
        connection: None,
        rtcp_mux: false,
        rtcp: None,
        crypto: Vec::new(),
        direction: "sendrecv".into(),
    })
}

impl Sdp {
    /// Parse SDP text (CRLF or LF line ends).
    pub fn parse(text: &str) -> Result<Sdp, SdpError> {
        let mut sdp = Sdp {
            origin: None,
            session_name: None,
            connection: None,
            media: Vec::new(),
        };
        let mut session_direction = "sendrecv".to_owned();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let raw = raw.trim_end_matches('\r');
            if raw.is_empty() {
                continue;
            }
            let (kind, value) = match raw.split_once('=') {
                Some((k, v)) if k.len() == 1 && k.bytes().all(|b| b.is_ascii_lowercase()) => (k, v),
                _ => {
                    return Err(SdpError {
                        line,
                        reason: format!("expected `x=value`, got {raw:?}"),
                    });
                }
            };
            if line == 1 && (kind, value) != ("v", "0") {
                return Err(SdpError {
                    line,
                    reason: "an SDP starts with v=0".into(),
                });
            }
            let current = sdp.media.last_mut();
            match (kind, current) {
                ("o", None) => sdp.origin = Some(value.to_owned()),
                ("s", None) => sdp.session_name = Some(value.to_owned()),
                ("c", None) => sdp.connection = Some(connection(value, line)?),
                ("c", Some(m)) => m.connection = Some(connection(value, line)?),
                ("m", _) => {
                    let mut m = media(value, line)?;
                    m.direction = session_direction.clone();
                    sdp.media.push(m);
                }
                ("a", current) => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    match (name, current) {
                        ("sendrecv" | "sendonly" | "recvonly" | "inactive", None) => {
                            session_direction = name.to_owned()
                        }
                        ("sendrecv" | "sendonly" | "recvonly" | "inactive", Some(m)) => {
                            m.direction = name.to_owned()
                        }
                        ("rtcp-mux", Some(m)) => m.rtcp_mux = true,
                        ("rtcp", Some(m)) => {
                            let mut parts = arg.split_whitespace();
                            let port =
                                parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| {
                                    SdpError {
                                        line,
                                        reason: format!("a=rtcp needs a port, got {arg:?}"),
                                    }
                                })?;
                            let address = parts.nth(2).map(str::to_owned);
                            m.rtcp = Some(Rtcp { port, address });
                        }
                        ("crypto", Some(m)) => {
                            match arg.split_whitespace().collect::<Vec<_>>().as_slice() {
                                [tag, suite, key_params, ..] => m.crypto.push(Crypto {
                                    tag: (*tag).to_owned(),
                                    suite: (*suite).to_owned(),
                                    key_params: (*key_params).to_owned(),
                                }),
                                _ => {
                                    return Err(SdpError {
                                        line,
                                        reason: format!(
                                            "a=crypto needs `TAG SUITE KEY-PARAMS`, got {arg:?}"
                                        ),
                                    });
                                }
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if sdp.media.is_empty() && sdp.origin.is_none() {
            return Err(SdpError {
                line: 1,
                reason: "no o= and no m= line: not a session description".into(),
            });
        }
        for m in &mut sdp.media {
            if m.connection.is_none() {
                m.connection = sdp.connection.clone();
            }
        }
        Ok(sdp)
    }
}

/// One media stream as relays, pinholes and `inspect` read it: the
/// summary of an `m=` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// `audio`, `video`, ...
    pub media: String,
    /// The `c=` address (media level, else session level).
    pub address: Option<String>,
    /// The `m=` port (0: rejected or disabled).
    pub port: u16,
    /// The `m=` transport (`RTP/AVP`, `UDP/TLS/RTP/SAVP`, `TCP/MSRP`, ...).
    pub transport: String,
    /// Whether `a=rtcp-mux` asks for RTP and RTCP on one port.
    pub rtcp_mux: bool,
    /// `a=rtcp` port, when given.
    pub rtcp_port: Option<u16>,
    /// `a=rtcp` address, when given.
    pub rtcp_address: Option<String>,
}

impl Stream {
    /// Where RTCP goes: nowhere when it is multiplexed (`mux`) or the
    /// stream is rejected (port 0); else `a=rtcp` (RFC 3605), else RTP's
    /// port + 1 (RFC 3550 §11), which port 65535 does not have.
    pub fn rtcp(&self, mux: bool) -> Option<u16> {
        if mux || self.port == 0 {
            return None;
        }
        self.rtcp_port.or_else(|| self.port.checked_add(1))
    }
}

impl From<&Media> for Stream {
    fn from(m: &Media) -> Stream {
        Stream {
            media: m.kind.clone(),
            address: m.connection.as_ref().map(|c| c.address.clone()),
            port: m.port,
            transport: m.proto.clone(),
            rtcp_mux: m.rtcp_mux,
            rtcp_port: m.rtcp.as_ref().map(|r| r.port),
            rtcp_address: m.rtcp.as_ref().and_then(|r| r.address.clone()),
        }
    }
}

impl Sdp {
    /// The media streams, in `m=` order.
    pub fn streams(&self) -> Vec<Stream> {
        self.media.iter().map(Stream::from).collect()
    }
}

/// An edit a media relay makes to an SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpEdit {
    /// Rewrite the address of every `c=` line (session and media level).
    Connection(String),
    /// Set the port of one media stream: by index, or the first of a kind.
    Port {
        /// Which stream.
        stream: StreamRef,
        /// The new port.
        port: u16,
    },
}

/// Which media stream an edit means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRef {
    /// 0-based position of the `m=` line.
    Index(usize),
    /// The first `m=` line of this media type (`audio`, `video`, ...).
    Kind(String),
}

/// A port edit (`STREAM=PORT`) that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortEditError {
    /// No `=`.
    #[error("{0:?}: expected STREAM=PORT, e.g. audio=40000 or 0=40000")]
    Syntax(String),
    /// The port is not 0 to 65535.
    #[error("{0:?} is not a port number")]
    Port(String),
    /// Nothing before the `=`.
    #[error("{0:?}: no stream named")]
    NoStream(String),
}

impl SdpEdit {
    /// Parse a port edit `STREAM=PORT` (STREAM: index or media type).
    pub fn port_arg(arg: &str) -> Result<SdpEdit, PortEditError> {
        let (stream, port) = arg
            .split_once('=')
            .ok_or_else(|| PortEditError::Syntax(arg.to_owned()))?;
        let port = port
            .trim()
            .parse()
            .map_err(|_| PortEditError::Port(port.to_owned()))?;
        let stream = match stream.trim().parse() {
            Ok(i) => StreamRef::Index(i),
            Err(_) if !stream.trim().is_empty() => StreamRef::Kind(stream.trim().to_owned()),
            Err(_) => return Err(PortEditError::NoStream(arg.to_owned())),
        };
        Ok(SdpEdit::Port { stream, port })
    }
}

/// Apply edits to SDP text, keeping every other line (and the line ends)
/// as it was. The result is checked by parsing it again.
pub fn apply_edits(text: &str, edits: &[SdpEdit]) -> Result<String, SdpError> {
    let parsed = Sdp::parse(text)?;
    let mut port_for: Vec<Option<u16>> = vec![None; parsed.media.len()];
    let mut address = None;
    for e in edits {
        match e {
            SdpEdit::Connection(a) => {
                if a.is_empty() || a.contains(char::is_whitespace) {
                    return Err(SdpError {
                        line: 0,
                        reason: format!("{a:?} is not an address"),
                    });
                }
                address = Some(a.clone());
            }
            SdpEdit::Port { stream, port } => {
                let index = match stream {
                    StreamRef::Index(i) => Some(*i).filter(|i| *i < parsed.media.len()),
                    StreamRef::Kind(k) => parsed.media.iter().position(|m| m.kind == *k),
                };
                let index = index.ok_or_else(|| SdpError {
                    line: 0,
                    reason: format!(
                        "no media stream {stream:?} (the SDP has {} m= lines)",
                        parsed.media.len()
                    ),
                })?;
                if let Some(slot) = port_for.get_mut(index) {
                    *slot = Some(*port);
                }
            }
        }
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut m_index = 0;
    for raw in text.split_inclusive('\n') {
        let body = raw.trim_end_matches(['\r', '\n']);
        let end = &raw[body.len()..];
        if let (Some(value), Some(addr)) = (body.strip_prefix("c="), &address) {
            let mut fields: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
            if let Some(slot) = fields.get_mut(2) {
                let ttl = slot
                    .split_once('/')
                    .map(|(_, t)| format!("/{t}"))
                    .unwrap_or_default();
                *slot = format!("{addr}{ttl}");
            }
            if let Some(kind) = fields.get_mut(1) {
                *kind = if addr.contains(':') {
                    "IP6".into()
                } else {
                    "IP4".into()
                };
            }
            out.push_str(&format!("c={}{end}", fields.join(" ")));
        } else if let Some(value) = body.strip_prefix("m=") {
            let new_port = port_for.get(m_index).copied().flatten();
            m_index += 1;
            match new_port {
                Some(p) => {
                    let mut fields: Vec<String> = value.split(' ').map(str::to_owned).collect();
                    if let Some(slot) = fields.get_mut(1) {
                        let count = slot
                            .split_once('/')
                            .map(|(_, c)| format!("/{c}"))
                            .unwrap_or_default();
                        *slot = format!("{p}{count}");
                    }
                    out.push_str(&format!("m={}{end}", fields.join(" ")));
                }
                None => out.push_str(raw),
            }
        } else {
            out.push_str(raw);
        }
    }
    Sdp::parse(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_change_only_what_they_name() {
        let text = include_str!("../samples/offer.sdp");
        let out = apply_edits(
            text,
            &[
                SdpEdit::Connection("203.0.113.5".into()),
                SdpEdit::port_arg("video=60000").unwrap(),
                SdpEdit::port_arg("0=50000").unwrap(),
            ],
        )
        .unwrap();
        let sdp = Sdp::parse(&out).unwrap();
        assert_eq!(sdp.connection.as_ref().unwrap().address, "203.0.113.5");
        assert_eq!(
            sdp.media[1].connection.as_ref().unwrap().address,
            "203.0.113.5"
        );
        assert_eq!((sdp.media[0].port, sdp.media[1].port), (50000, 60000));
        assert_eq!(out.lines().count(), text.lines().count());
        assert_eq!(out.matches("\r\n").count(), text.matches("\r\n").count());
        let unchanged: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("c=") && !l.starts_with("m="))
            .collect();
        let after: Vec<&str> = out
            .lines()
            .filter(|l| !l.starts_with("c=") && !l.starts_with("m="))
            .collect();
        assert_eq!(unchanged, after);
        assert!(apply_edits(text, &[SdpEdit::port_arg("fax=1").unwrap()]).is_err());
        assert!(apply_edits(text, &[SdpEdit::port_arg("7=1").unwrap()]).is_err());
        assert!(SdpEdit::port_arg("audio").is_err());
        assert!(
            apply_edits(text, &[SdpEdit::Connection("2001:db8::1".into())])
                .unwrap()
                .contains("c=IN IP6 2001:db8::1")
        );
    }

    #[test]
    fn reads_streams_connections_and_crypto() {
        let sdp = Sdp::parse(include_str!("../samples/offer.sdp")).unwrap();
        assert_eq!(sdp.connection.as_ref().unwrap().address, "192.0.2.10");
        assert_eq!(sdp.media.len(), 2);
        let (audio, video) = (&sdp.media[0], &sdp.media[1]);
        assert_eq!(
            (audio.kind.as_str(), audio.port, audio.proto.as_str()),
            ("audio", 49170, "RTP/SAVP")
        );
        assert!(audio.rtcp_mux);
        assert_eq!(audio.crypto.len(), 2);
        assert_eq!(audio.crypto[0].suite, "AES_CM_128_HMAC_SHA1_80");
        assert_eq!(video.connection.as_ref().unwrap().address, "192.0.2.11");
        assert!(!video.rtcp_mux);
        assert_eq!(
            video.rtcp,
            Some(Rtcp {
                port: 51373,
                address: None
            })
        );
    }

    #[test]
    fn rejects_non_sdp() {
        assert_eq!(Sdp::parse("hello").unwrap_err().line, 1);
        assert_eq!(
            Sdp::parse("v=0\r\nm=audio x RTP/AVP 0\r\n")
                .unwrap_err()
                .line,
            2
        );
    }
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RtpMap {
    /// The payload type.
    pub payload_type: u8,
    /// The encoding name (`PCMU`, `opus`, `telephone-event`, ...).
    pub encoding: String,
    /// The RTP clock rate.
    pub clock_rate: u32,
    /// Channels (audio; 1 when not given).
    pub channels: u16,
}

/// The `a=rtpmap` lines of each `m=` section, in `m=` order; lines that do
/// not parse are left out (a recorder falls back to RFC 3551's table).
pub fn rtpmaps(text: &str) -> Vec<Vec<RtpMap>> {
    let mut out: Vec<Vec<RtpMap>> = Vec::new();
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("m=") {
            out.push(Vec::new());
        } else if let (Some(value), Some(maps)) = (line.strip_prefix("a=rtpmap:"), out.last_mut()) {
            let mut fields = value.split_whitespace();
            let (Some(pt), Some(enc)) = (fields.next(), fields.next()) else {
                continue;
            };
            let mut parts = enc.split('/');
            let name = parts.next().unwrap_or_default();
            let (Ok(payload_type), Some(Ok(clock_rate))) =
                (pt.parse(), parts.next().map(str::parse))
            else {
                continue;
            };
            let channels = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
            maps.push(RtpMap {
                payload_type,
                encoding: name.to_owned(),
                clock_rate,
                channels,
            });
        }
    }
    out
}
