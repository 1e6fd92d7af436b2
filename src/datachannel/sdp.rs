//! The data channel's session description (RFC 4145 connection-oriented
//! media, RFC 8122 fingerprints): one `m=application PORT TCP/TLS http`
//! stream, `a=setup`, `a=connection:new` and the SHA-256 fingerprint of
//! the certificate the end will present in the TLS handshake.
//!
//! ```text
//! v=0
//! o=- 4711 1 IN IP4 127.0.0.1
//! s=-
//! c=IN IP4 127.0.0.1
//! t=0 0
//! m=application 40123 TCP/TLS http
//! a=setup:passive
//! a=connection:new
//! a=fingerprint:sha-256 3A:...:9F
//! ```
//!
//! The caller offers `a=setup:active` (it connects; its port is 9, the
//! discard port, as RFC 4145 §4 has an active end write); the terminal
//! answers `a=setup:passive` with the address and port it listens on.
//! Parsing is strict: the text is bounded, every line must be one of the
//! above, and a missing, malformed or doubled fingerprint is an error.
//!
//! A re-INVITE in the call describes the same channel again with
//! `a=connection:existing` (RFC 4145 §5: keep the connection that is up)
//! and the o= version one higher (RFC 3264 §8).

use std::net::{IpAddr, SocketAddr};

use sha2::{Digest, Sha256};

/// The SDP `proto` of the channel: TLS over TCP (RFC 8122 §4, RFC 4572).
pub const PROTO: &str = "TCP/TLS";
/// The `fmt` of the channel: what runs inside it (HTTP/1.1, as the
/// gateway relays it).
pub const FORMAT: &str = "http";
/// The largest description read, in bytes.
pub const MAX_LEN: usize = 2048;
/// The most lines read.
const MAX_LINES: usize = 24;

/// Which end opens the connection (RFC 4145 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// This end connects.
    Active,
    /// This end listens.
    Passive,
    /// Either (an offer only).
    ActPass,
}

impl Setup {
    fn token(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
        }
    }
}

/// A SHA-256 certificate fingerprint (RFC 8122 §5).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Upper-case hex pairs joined by colons, as the attribute carries it.
    pub fn to_sdp(&self) -> String {
        let hex = hex::encode_upper(self.0);
        let mut out = String::with_capacity(95);
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            if i > 0 {
                out.push(':');
            }
            out.push_str(std::str::from_utf8(pair).unwrap_or_default());
        }
        out
    }

    /// Read `XX:XX:...` (32 pairs, either case).
    pub fn parse(text: &str) -> Option<Fingerprint> {
        if text.len() != 95 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in text.split(':').enumerate() {
            let slot = out.get_mut(i)?;
            if pair.len() != 2 {
                return None;
            }
            *slot = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Fingerprint(out))
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_sdp())
    }
}

/// A data channel's description: where the end is, which end it is, and
/// the certificate it presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSdp {
    /// The address and port (port 9 for an active end).
    pub addr: SocketAddr,
    /// Which end opens the connection.
    pub setup: Setup,
    /// The fingerprint of the end's TLS certificate.
    pub fingerprint: Fingerprint,
    /// `a=connection:existing` (a re-offer of the channel that is up)
    /// rather than `new`.
    pub existing: bool,
}

/// Why a description is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelSdpError {
    /// Over [`MAX_LEN`] bytes or too many lines.
    #[error("the data channel's SDP is over {MAX_LEN} bytes or {MAX_LINES} lines")]
    TooBig,
    /// A line that breaks the grammar.
    #[error("the data channel's SDP, line {line}: {reason}")]
    Line {
        /// 1-based.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Something required is not there.
    #[error("the data channel's SDP has no {0}")]
    Missing(&'static str),
    /// The offer and answer do not fit together.
    #[error("the data channel's SDP: {0}")]
    Mismatch(String),
}

impl ChannelSdp {
    /// The offer of a caller that connects: port 9, `setup:active`.
    pub fn offer(addr: IpAddr, fingerprint: Fingerprint) -> ChannelSdp {
        ChannelSdp {
            addr: SocketAddr::new(addr, 9),
            setup: Setup::Active,
            fingerprint,
            existing: false,
        }
    }

    /// The answer of an end that listens at `addr`: `setup:passive`.
    pub fn answer(addr: SocketAddr, fingerprint: Fingerprint) -> ChannelSdp {
        ChannelSdp {
            addr,
            setup: Setup::Passive,
            fingerprint,
            existing: false,
        }
    }

    /// This description again, for a re-offer (or its answer) in the
    /// call: the same channel, `a=connection:existing`.
    pub fn again(&self) -> ChannelSdp {
        ChannelSdp {
            existing: true,
            ..self.clone()
        }
    }

    /// Whether `other` describes the same channel as this (a re-offer
    /// that keeps it): the same address, end and certificate.
    pub fn same_channel(&self, other: &ChannelSdp) -> bool {
        self.addr == other.addr
            && self.setup == other.setup
            && self.fingerprint == other.fingerprint
    }

    /// The SDP text (CRLF line ends); `session` is the o= session id.
    pub fn to_text(&self, session: u64) -> String {
        self.to_text_version(session, 1)
    }

    /// [`ChannelSdp::to_text`] with the o= version `version` (one more
    /// at each new description in the session, RFC 3264 §8).
    pub fn to_text_version(&self, session: u64, version: u64) -> String {
        // As it is (no IPv4-mapped address turned into IPv4): the text
        // reads back as the same address.
        let (kind, ip) = match self.addr.ip() {
            IpAddr::V4(v4) => ("IP4", v4.to_string()),
            IpAddr::V6(v6) => ("IP6", v6.to_string()),
        };
        format!(
            "v=0\r\no=- {session} {version} IN {kind} {ip}\r\ns=-\r\nc=IN {kind} {ip}\r\nt=0 0\r\n\
m=application {} {PROTO} {FORMAT}\r\na=setup:{}\r\na=connection:{}\r\n\
a=fingerprint:sha-256 {}\r\n",
            self.addr.port(),
            self.setup.token(),
            if self.existing { "existing" } else { "new" },
            self.fingerprint.to_sdp()
        )
    }

    /// Read a description strictly (module documentation).
    pub fn parse(bytes: &[u8]) -> Result<ChannelSdp, ChannelSdpError> {
        if bytes.len() > MAX_LEN {
            return Err(ChannelSdpError::TooBig);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ChannelSdpError::Line {
            line: 0,
            reason: "not UTF-8".into(),
        })?;
        let mut conn = None;
        let mut port = None;
        let mut setup = None;
        let mut fingerprint = None;
        let mut conn_kind = None;
        let mut seen_m = false;
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            if line > MAX_LINES {
                return Err(ChannelSdpError::TooBig);
            }
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.is_empty() {
                continue;
            }
            let bad = |reason: String| ChannelSdpError::Line { line, reason };
            let (kind, value) = raw
                .split_once('=')
                .filter(|(k, _)| k.len() == 1)
                .ok_or_else(|| bad(format!("expected `x=value`, got {raw:?}")))?;
            if line == 1 && (kind, value) != ("v", "0") {
                return Err(bad("a session description starts with v=0".into()));
            }
            match kind {
                "v" | "o" | "s" | "t" | "b" | "i" => {}
                "c" => conn = Some(connection(value).map_err(bad)?),
                "m" => {
                    if seen_m {
                        return Err(bad("one m= line only: the data channel".into()));
                    }
                    seen_m = true;
                    port = Some(media(value).map_err(bad)?);
                }
                "a" => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    match name {
                        "setup" => {
                            let s = match arg {
                                "active" => Setup::Active,
                                "passive" => Setup::Passive,
                                "actpass" => Setup::ActPass,
                                other => return Err(bad(format!("a=setup:{other:?}"))),
                            };
                            if setup.replace(s).is_some() {
                                return Err(bad("a=setup twice".into()));
                            }
                        }
                        "connection" => {
                            // `existing` only re-offers the channel that
                            // is up (the caller of `parse` checks that);
                            // a TLS channel keyed by an exchange is never
                            // one that exists elsewhere.
                            let existing = match arg {
                                "new" => false,
                                "existing" => true,
                                other => {
                                    return Err(bad(format!(
                                        "a=connection:{other:?}: only `new` or `existing` is taken"
                                    )));
                                }
                            };
                            if conn_kind.replace(existing).is_some() {
                                return Err(bad("a=connection twice".into()));
                            }
                        }
                        "fingerprint" => {
                            let (hash, value) = arg.split_once(' ').ok_or_else(|| {
                                bad("a=fingerprint needs `HASH XX:XX:...`".into())
                            })?;
                            // RFC 8122 §5: other hash functions may come
                            // too; sha-256 is the one checked.
                            if !hash.eq_ignore_ascii_case("sha-256") {
                                continue;
                            }
                            let fp = Fingerprint::parse(value.trim()).ok_or_else(|| {
                                bad("a=fingerprint:sha-256 is not 32 hex pairs".into())
                            })?;
                            if fingerprint.replace(fp).is_some() {
                                return Err(bad("two a=fingerprint:sha-256".into()));
                            }
                        }
                        _ => {}
                    }
                }
                other => return Err(bad(format!("unexpected {other}= line"))),
            }
        }
        let ip = conn.ok_or(ChannelSdpError::Missing("c= line"))?;
        let port = port.ok_or(ChannelSdpError::Missing("m=application line"))?;
        let existing = conn_kind.ok_or(ChannelSdpError::Missing("a=connection"))?;
        Ok(ChannelSdp {
            existing,
            addr: SocketAddr::new(ip, port),
            setup: setup.ok_or(ChannelSdpError::Missing("a=setup"))?,
            fingerprint: fingerprint.ok_or(ChannelSdpError::Missing("a=fingerprint:sha-256"))?,
        })
    }

    /// Check an answer to `offer`: an active offer wants a passive answer
    /// on a real port.
    pub fn check_answer(&self, offer: &ChannelSdp) -> Result<(), ChannelSdpError> {
        let ok = match offer.setup {
            Setup::Active => self.setup == Setup::Passive,
            Setup::Passive => self.setup == Setup::Active,
            Setup::ActPass => self.setup != Setup::ActPass,
        };
        if !ok {
            return Err(ChannelSdpError::Mismatch(format!(
                "the offer is setup:{}, the answer setup:{}",
                offer.setup.token(),
                self.setup.token()
            )));
        }
        if self.existing != offer.existing {
            return Err(ChannelSdpError::Mismatch(format!(
                "the offer is a=connection:{}, the answer a=connection:{}",
                if offer.existing { "existing" } else { "new" },
                if self.existing { "existing" } else { "new" }
            )));
        }
        if self.setup == Setup::Passive && (self.addr.port() == 0 || self.addr.port() == 9) {
            return Err(ChannelSdpError::Mismatch(format!(
                "a passive answer names no port to connect to ({})",
                self.addr.port()
            )));
        }
        if self.addr.ip().is_unspecified() || self.addr.ip().is_multicast() {
            return Err(ChannelSdpError::Mismatch(format!(
                "a passive answer names no address to connect to ({})",
                self.addr.ip()
            )));
        }
        Ok(())
    }
}

/// `IN IP4 ADDR` / `IN IP6 ADDR`: an address literal (never a name: no
/// lookup for what a peer wrote).
fn connection(value: &str) -> Result<IpAddr, String> {
    let parts: Vec<&str> = value.split(' ').collect();
    let [net, kind, addr] = parts.as_slice() else {
        return Err(format!("c= needs `IN IP4|IP6 ADDRESS`, got {value:?}"));
    };
    if *net != "IN" {
        return Err(format!("c= network type {net:?}"));
    }
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("c= address {addr:?} is not an IP address literal"))?;
    match (*kind, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        _ => Err(format!("c= address type {kind} does not fit {addr}")),
    }
}

/// `application PORT TCP/TLS http`: the port.
fn media(value: &str) -> Result<u16, String> {
    let parts: Vec<&str> = value.split(' ').collect();
    let [kind, port, proto, fmt] = parts.as_slice() else {
        return Err(format!(
            "m= must be `application PORT {PROTO} {FORMAT}`, got {value:?}"
        ));
    };
    if *kind != "application" || *proto != PROTO || *fmt != FORMAT {
        return Err(format!(
            "m= must be `application PORT {PROTO} {FORMAT}`, got {value:?}"
        ));
    }
    port.parse()
        .map_err(|_| format!("m= port {port:?} is not a port number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(b: u8) -> Fingerprint {
        Fingerprint([b; 32])
    }

    #[test]
    fn an_offer_and_an_answer_round_trip() {
        let offer = ChannelSdp::offer("192.0.2.1".parse().unwrap(), fp(0xab));
        let text = offer.to_text(7);
        assert!(text.contains("m=application 9 TCP/TLS http\r\n"), "{text}");
        assert!(text.contains("a=setup:active\r\n"));
        assert!(text.contains("a=connection:new\r\n"));
        assert!(text.contains(&format!("a=fingerprint:sha-256 {}\r\n", fp(0xab).to_sdp())));
        assert_eq!(ChannelSdp::parse(text.as_bytes()).unwrap(), offer);

        let answer = ChannelSdp::answer("[2001:db8::1]:40123".parse().unwrap(), fp(1));
        let text = answer.to_text(8);
        assert!(text.contains("c=IN IP6 2001:db8::1\r\n"), "{text}");
        let parsed = ChannelSdp::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed, answer);
        parsed.check_answer(&offer).unwrap();
        assert!(offer.check_answer(&offer).is_err(), "active to active");
        let mapped = ChannelSdp::answer("[::ffff:192.0.2.7]:4000".parse().unwrap(), fp(1));
        assert_eq!(
            ChannelSdp::parse(mapped.to_text(1).as_bytes()).unwrap(),
            mapped
        );
    }

    #[test]
    fn the_fingerprint_is_hex_pairs_of_the_sha_256() {
        let f = Fingerprint::of_der(b"abc");
        assert_eq!(
            f.to_sdp(),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
        assert_eq!(Fingerprint::parse(&f.to_sdp().to_lowercase()), Some(f));
        assert_eq!(Fingerprint::parse("BA:78"), None);
        assert_eq!(Fingerprint::parse(&f.to_sdp().replace(':', "-")), None);
    }

    #[test]
    fn a_missing_or_malformed_fingerprint_is_refused() {
        let good = ChannelSdp::answer("127.0.0.1:4000".parse().unwrap(), fp(2)).to_text(1);
        let no_fp: String = good
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            ChannelSdp::parse(no_fp.as_bytes()),
            Err(ChannelSdpError::Missing("a=fingerprint:sha-256"))
        );
        let short = good.replace(&fp(2).to_sdp(), "02:02:02");
        assert!(matches!(
            ChannelSdp::parse(short.as_bytes()),
            Err(ChannelSdpError::Line { line: 9, .. })
        ));
        let twice = format!("{good}a=fingerprint:sha-256 {}\r\n", fp(3).to_sdp());
        assert!(ChannelSdp::parse(twice.as_bytes()).is_err());
        // Another hash function alone is no sha-256 fingerprint.
        let sha1 = good.replace("sha-256", "sha-1");
        assert_eq!(
            ChannelSdp::parse(sha1.as_bytes()),
            Err(ChannelSdpError::Missing("a=fingerprint:sha-256"))
        );
    }

    #[test]
    fn anything_but_the_channel_is_refused() {
        let good = ChannelSdp::answer("127.0.0.1:4000".parse().unwrap(), fp(2)).to_text(1);
        for (from, to) in [
            ("TCP/TLS http", "RTP/AVP 0"),
            ("m=application", "m=audio"),
            ("c=IN IP4 127.0.0.1", "c=IN IP4 host.example.com"),
            ("c=IN IP4 127.0.0.1", "c=IN IP6 127.0.0.1"),
            ("a=setup:passive", "a=setup:holdconn"),
            ("a=connection:new", "a=connection:holdconn"),
            ("a=connection:new", "a=connection:new\r\na=connection:new"),
            ("v=0", "v=1"),
        ] {
            let bad = good.replace(from, to);
            assert!(ChannelSdp::parse(bad.as_bytes()).is_err(), "{to}");
        }
        let two = format!("{good}m=application 5 TCP/TLS http\r\n");
        assert!(ChannelSdp::parse(two.as_bytes()).is_err());
        let long = format!("{good}{}", "a=x\r\n".repeat(500));
        assert_eq!(
            ChannelSdp::parse(long.as_bytes()),
            Err(ChannelSdpError::TooBig)
        );
        let lines = format!("{good}{}", "a=x\r\n".repeat(20));
        assert_eq!(
            ChannelSdp::parse(lines.as_bytes()),
            Err(ChannelSdpError::TooBig)
        );
    }

    #[test]
    fn a_re_offer_describes_the_same_channel_as_existing() {
        let offer = ChannelSdp::offer("127.0.0.1".parse().unwrap(), fp(1));
        let again = offer.again();
        let text = again.to_text_version(7, 2);
        assert!(text.contains("o=- 7 2 IN IP4"), "{text}");
        assert!(text.contains("a=connection:existing\r\n"), "{text}");
        let parsed = ChannelSdp::parse(text.as_bytes()).unwrap();
        assert!(parsed.existing);
        assert!(parsed.same_channel(&offer));
        let other = ChannelSdp::offer("127.0.0.1".parse().unwrap(), fp(2)).again();
        assert!(!other.same_channel(&offer));
    }

    #[test]
    fn a_passive_answer_must_name_a_port_and_address() {
        let offer = ChannelSdp::offer("127.0.0.1".parse().unwrap(), fp(1));
        let port9 = ChannelSdp::answer("127.0.0.1:9".parse().unwrap(), fp(2));
        assert!(port9.check_answer(&offer).is_err());
        let any = ChannelSdp::answer("0.0.0.0:4000".parse().unwrap(), fp(2));
        assert!(any.check_answer(&offer).is_err());
    }
}
