//! SDP (RFC 8866) reading: connection addresses, media streams, RTCP
//! (RFC 3605, RFC 5761) and SDES crypto attributes (RFC 4568).

use serde::Serialize;

/// A line that is not `<type>=<value>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {reason}")]
pub struct SdpError {
    pub line: usize,
    pub reason: String,
}

/// `c=<nettype> <addrtype> <connection-address>`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    pub net_type: String,
    pub addr_type: String,
    pub address: String,
}

/// `a=crypto:<tag> <crypto-suite> <key-params> [<session-params>]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crypto {
    pub tag: String,
    pub suite: String,
    pub key_params: String,
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rtcp {
    pub port: u16,
    pub address: Option<String>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Media {
    /// `audio`, `video`, ...
    pub kind: String,
    pub port: u16,
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, ...
    pub proto: String,
    pub formats: Vec<String>,
    /// The media-level `c=`, or else the session-level one.
    pub connection: Option<Connection>,
    pub rtcp_mux: bool,
    pub rtcp: Option<Rtcp>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
