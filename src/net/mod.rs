//! Live transports (docs/SPEC.md §7): where a message goes (a [`Target`], found
//! from a URI as RFC 3263 has it), a blocking client transaction
//! ([`client`], what `sipseal send` runs), stream framing ([`frame`]),
//! and, with the `live` feature, the tokio server that frames, dispatches
//! to a workflow and sends ([`live`]) over UDP, TCP and TLS ([`tls`]),
//! and on Linux the packet socket a recorder reads copied media from
//! (`packet`).
//! No protocol decision is made here: what to answer and where a request
//! goes on are the workflows'.

pub mod client;
#[cfg(feature = "live")]
pub mod flow;
pub mod frame;
#[cfg(feature = "live")]
pub mod live;
#[cfg(all(feature = "live", target_os = "linux"))]
pub mod packet;
pub mod stun;
#[cfg(feature = "live")]
pub mod tls;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use crate::sip::uri::HopUri;

/// Why a next hop cannot be named or found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// A next hop written in none of the forms taken.
    #[error(
        "{0:?}: {1}; give udp:HOST:PORT, tcp:HOST:PORT, tls:HOST:PORT or sip:HOST:PORT;transport=tcp"
    )]
    BadTarget(String, &'static str),
    /// `sips:` with `transport=udp`.
    #[error("sips: with transport=udp")]
    SipsOverUdp,
    /// A transport this server does not speak.
    #[error("transport={0} is not supported")]
    Transport(String),
    /// A name the system resolver could not find.
    #[error("{0}: {1}")]
    Resolve(String, String),
    /// A name with no address.
    #[error("{0} has no address")]
    NoAddress(String),
    /// A name that only DNS could find, with DNS off.
    #[error("{0}: not in the hosts table, and DNS is off")]
    DnsOff(String),
    /// DNS did not answer in time.
    #[error("{0}: no answer from DNS in {1} s")]
    DnsTimeout(String, u64),
    /// DNS answered with an error.
    #[error("{0}: {1}")]
    Dns(String, String),
    /// A hosts file that cannot be read or is malformed.
    #[error("{0}")]
    Hosts(String),
    /// A next hop a message named that this server does not send to.
    #[error("{addr}: {why}")]
    NotAllowed {
        /// Where it would have gone.
        addr: SocketAddr,
        /// Why not.
        why: &'static str,
    },
}

/// Where a server sends what a message asks for (a Route entry, a
/// Request-URI): never to itself or its own store; to loopback,
/// unspecified, link-local, multicast and broadcast addresses only inside
/// `allow`; and, when `allow` is not empty, to an address literal only
/// inside it (a name from DNS may be any other address). Next hops of the
/// operator's own (`--next`, the hosts table, registered flows and
/// contacts) are not checked against `allow`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HopGuard {
    /// Networks a message may name (`--hop-allow CIDR`).
    pub allow: Vec<ipnet::IpNet>,
    /// Never: the server's own listeners and store. An unspecified
    /// address stands for every address of this host (its loopback ones).
    pub never: Vec<SocketAddr>,
}

/// How a next hop's address was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Written in the message as an address literal.
    Literal,
    /// From the operator's hosts table.
    Hosts,
    /// From DNS.
    Dns,
}

impl HopGuard {
    /// Whether `addr` is this server's own listener or store: nothing,
    /// a located contact or a response included, is sent there.
    pub fn is_own(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.never.iter().any(|n| {
            n.port() == addr.port()
                && (n.ip().to_canonical() == ip
                    || (n.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified())))
        })
    }

    /// Whether a hop named by a message may go to `addr`.
    pub fn check(&self, addr: SocketAddr, found: Found) -> Result<(), NetError> {
        let ip = addr.ip().to_canonical();
        let denied = |why| Err(NetError::NotAllowed { addr, why });
        if self.is_own(addr) {
            return denied("this server's own listener or store");
        }
        if found == Found::Hosts || self.allow.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        if internal(ip) {
            return denied("a loopback or local-only address (--hop-allow lets one through)");
        }
        if found == Found::Literal && !self.allow.is_empty() {
            return denied("outside --hop-allow");
        }
        Ok(())
    }
}

/// Loopback, unspecified, link-local, multicast or broadcast.
fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            a.is_loopback() || a.is_unspecified() || a.is_unicast_link_local() || a.is_multicast()
        }
    }
}

/// How a message travels to the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// UDP: retransmitted on the RFC 3261 timers; 1,300 B at most.
    Udp,
    /// TCP: framed by Content-Length, reliable.
    Tcp,
    /// TLS over TCP, both ends authenticated by certificates.
    Tls,
}

impl Transport {
    /// The Via token (`UDP`, `TCP`, `TLS`).
    pub fn token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The Via token read back (any case); `None` for SCTP, WS and others.
    pub fn from_token(token: &str) -> Option<Transport> {
        match token.to_ascii_uppercase().as_str() {
            "UDP" => Some(Transport::Udp),
            "TCP" => Some(Transport::Tcp),
            "TLS" => Some(Transport::Tls),
            _ => None,
        }
    }

    /// Whether it is a stream (framed by Content-Length, congestion-controlled).
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }

    /// The default port (RFC 3261 §19.1.2): 5061 for TLS, else 5060.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

/// The next hop: a transport, an address, and the name its TLS
/// certificate must carry (the URI's host, RFC 5922 §7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The transport.
    pub transport: Transport,
    /// The address.
    pub addr: SocketAddr,
    /// The SIP domain the next hop must prove it is (TLS): the host of the
    /// URI it was found from.
    pub name: String,
}

impl Target {
    /// `udp:HOST:PORT`, `tcp:HOST:PORT`, `tls:HOST:PORT`, or a SIP URI
    /// (`sip:127.0.0.1:5070;transport=tcp`, `sips:proxy.example.com`),
    /// resolved with [`Hosts`] first, then the system resolver.
    pub fn parse(s: &str, hosts: &Hosts) -> Result<Target, NetError> {
        let bad = |why: &'static str| NetError::BadTarget(s.to_owned(), why);
        let short = [
            ("udp:", Transport::Udp),
            ("tcp:", Transport::Tcp),
            ("tls:", Transport::Tls),
        ];
        let uri = match short
            .iter()
            .find_map(|(p, t)| s.strip_prefix(p).map(|r| (r, *t)))
        {
            Some((rest, transport)) => {
                let mut uri =
                    HopUri::parse(&format!("sip:{rest}")).ok_or_else(|| bad("not HOST:PORT"))?;
                uri.transport = Some(transport.token().to_ascii_lowercase());
                uri
            }
            None => HopUri::parse(s).ok_or_else(|| bad("unknown form"))?,
        };
        Target::for_uri(&uri, hosts, 0)
    }

    /// Where a request for `uri` goes ([`Hop::for_uri`]), resolved here
    /// and now: [`Hosts`], an address literal, or the system resolver's
    /// A/AAAA records (a blocking lookup, for a client).
    pub fn for_uri(uri: &HopUri, hosts: &Hosts, size: usize) -> Result<Target, NetError> {
        let hop = Hop::for_uri(uri, size)?;
        if let Some(t) = hop.known(hosts) {
            return Ok(t);
        }
        let port = uri.port.unwrap_or(hop.transport.default_port());
        let addr = (hop.name().as_str(), port)
            .to_socket_addrs()
            .map_err(|e| NetError::Resolve(uri.host.clone(), e.to_string()))?
            .next()
            .ok_or_else(|| NetError::NoAddress(uri.host.clone()))?;
        Ok(Target {
            transport: hop.transport,
            addr,
            name: hop.name(),
        })
    }
}

/// A next hop before its address is known: the URI and the transport
/// chosen for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The transport.
    pub transport: Transport,
    /// The URI it was found from.
    pub uri: HopUri,
    /// Named by the message (a Route entry, a Request-URI), not by the
    /// operator: its address must pass the server's [`HopGuard`].
    pub guarded: bool,
}

impl Hop {
    /// The transport for a request to `uri` (RFC 3263 §4.1, without
    /// NAPTR): the `transport` parameter, TLS for `sips:`, else UDP — TCP
    /// instead when the request is over 1,300 B (RFC 3261 §18.1.1,
    /// `size`).
    pub fn for_uri(uri: &HopUri, size: usize) -> Result<Hop, NetError> {
        let transport = match uri.transport.as_deref() {
            Some("udp") if uri.secure => return Err(NetError::SipsOverUdp),
            Some("udp") | None if !uri.secure => {
                if size > crate::sip::size::UDP_LIMIT {
                    Transport::Tcp
                } else {
                    Transport::Udp
                }
            }
            None | Some("tls") => Transport::Tls,
            Some("tcp") if uri.secure => Transport::Tls,
            Some("tcp") => Transport::Tcp,
            Some(other) => return Err(NetError::Transport(other.to_owned())),
        };
        Ok(Hop {
            transport,
            uri: uri.clone(),
            guarded: false,
        })
    }

    /// The transport the hosts table offers, as SRV records would (RFC
    /// 3263 §4.1): a `sip:` URI without `transport` whose name has no line
    /// for UDP (nor for any transport) but one for TCP or TLS goes over
    /// that; anything else is as [`Hop::for_uri`] chose.
    pub fn by_hosts(self, hosts: &Hosts) -> Hop {
        if self.uri.transport.is_some() || self.uri.secure || self.uri.ip().is_some() {
            return self;
        }
        let name = self.name();
        let has = |t: Option<Transport>| hosts.lines(&name).any(|(l, ..)| *l == t);
        if has(None) || has(Some(self.transport)) {
            return self;
        }
        match [Transport::Tcp, Transport::Tls]
            .into_iter()
            .find(|t| has(Some(*t)))
        {
            Some(transport) => Hop { transport, ..self },
            None => self,
        }
    }

    /// This hop, named by a message: checked by the server's [`HopGuard`].
    pub fn guarded(self) -> Hop {
        Hop {
            guarded: true,
            ..self
        }
    }

    /// The target without DNS, when the guard lets a message name it:
    /// `None` when DNS must say.
    pub fn known_checked(
        &self,
        hosts: &Hosts,
        guard: &HopGuard,
    ) -> Option<Result<Target, NetError>> {
        let target = self.known(hosts)?;
        if !self.guarded {
            return Some(if guard.is_own(target.addr) {
                Err(NetError::NotAllowed {
                    addr: target.addr,
                    why: "this server's own listener or store",
                })
            } else {
                Ok(target)
            });
        }
        let found = match self.uri.ip() {
            Some(_) => Found::Literal,
            None => Found::Hosts,
        };
        Some(guard.check(target.addr, found).map(|()| target))
    }

    /// The host, lower case, without IPv6 brackets: the name a TLS peer
    /// must prove (RFC 5922), and what DNS is asked about.
    pub fn name(&self) -> String {
        self.uri
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    }

    /// The target without DNS: an address literal, or a [`Hosts`] entry
    /// (its port when the URI gives none). `None`: DNS must say.
    pub fn known(&self, hosts: &Hosts) -> Option<Target> {
        let name = self.name();
        let (ip, port) = match (self.uri.ip(), hosts.get_for(&name, self.transport)) {
            (Some(ip), _) => (ip, self.uri.port),
            (None, Some((ip, port))) => (ip, self.uri.port.or(port)),
            (None, None) => return None,
        };
        Some(Target {
            transport: self.transport,
            addr: SocketAddr::new(ip, port.unwrap_or(self.transport.default_port())),
            name,
        })
    }

    /// The SRV service name for this hop (RFC 3263 §4.2): `_sips._tcp`
    /// for TLS, `_sip._tcp`, `_sip._udp`.
    pub fn srv_name(&self) -> String {
        let service = match self.transport {
            Transport::Tls => "_sips._tcp",
            Transport::Tcp => "_sip._tcp",
            Transport::Udp => "_sip._udp",
        };
        format!("{service}.{}.", self.name().trim_end_matches('.'))
    }
}

/// A static host table, checked before DNS (tests, and names a site keeps
/// out of DNS): `/etc/hosts` lines whose address may carry a port, as an
/// SRV record would give (`127.0.0.1:5081 proxy-b.b.example.com`), and a
/// transport (`tls:127.0.0.1:5061 example.com`): a name's servers on one
/// transport, as `_sips._tcp` SRV records give them.
#[derive(Debug, Clone, Default)]
pub struct Hosts(BTreeMap<String, Vec<HostLine>>);

/// One line for a name: its transport (any when none), address and port.
type HostLine = (Option<Transport>, IpAddr, Option<u16>);

impl Hosts {
    /// Read a hosts file (`[TRANSPORT:]ADDRESS[:PORT] NAME...`,
    /// `[IPv6]:PORT`, `#` comments).
    pub fn load(path: &Path) -> Result<Hosts, NetError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NetError::Hosts(format!("{}: {e}", path.display())))?;
        Hosts::parse(&text).map_err(|e| NetError::Hosts(format!("{}: {e}", path.display())))
    }

    /// Read the text of a hosts file.
    pub fn parse(text: &str) -> Result<Hosts, NetError> {
        let mut map: BTreeMap<String, Vec<HostLine>> = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            let (transport, addr) = match first.split_once(':') {
                Some((t, rest)) if Transport::from_token(t).is_some() => {
                    (Transport::from_token(t), rest)
                }
                _ => (None, first),
            };
            let (ip, port) = match addr.parse::<SocketAddr>() {
                Ok(sa) => (sa.ip(), Some(sa.port())),
                Err(_) => (
                    addr.trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<IpAddr>()
                        .map_err(|_| {
                            NetError::Hosts(format!(
                                "line {}: {addr:?} is not [TRANSPORT:]ADDRESS[:PORT]",
                                n + 1
                            ))
                        })?,
                    None,
                ),
            };
            let mut named = false;
            for name in words {
                map.entry(name.to_ascii_lowercase())
                    .or_default()
                    .push((transport, ip, port));
                named = true;
            }
            if !named {
                return Err(NetError::Hosts(format!(
                    "line {}: an address without a name",
                    n + 1
                )));
            }
        }
        Ok(Hosts(map))
    }

    /// The address (and port, if the table gives one) of `name`, for any
    /// transport.
    pub fn get(&self, name: &str) -> Option<(IpAddr, Option<u16>)> {
        self.0
            .get(&name.to_ascii_lowercase())?
            .iter()
            .find(|(t, ..)| t.is_none())
            .map(|(_, ip, port)| (*ip, *port))
    }

    /// Every line for `name`.
    fn lines(&self, name: &str) -> impl Iterator<Item = &HostLine> {
        self.0.get(&name.to_ascii_lowercase()).into_iter().flatten()
    }

    /// The address (and port) of `name` for `transport`: its line for
    /// that transport, else its line for any.
    pub fn get_for(&self, name: &str, transport: Transport) -> Option<(IpAddr, Option<u16>)> {
        let lines = self.0.get(&name.to_ascii_lowercase())?;
        lines
            .iter()
            .find(|(t, ..)| *t == Some(transport))
            .or_else(|| lines.iter().find(|(t, ..)| t.is_none()))
            .map(|(_, ip, port)| (*ip, *port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_the_short_and_the_uri_forms() {
        let none = Hosts::default();
        let t = Target::parse("udp:127.0.0.1:5070", &none).unwrap();
        assert_eq!((t.transport, t.addr.port()), (Transport::Udp, 5070));
        let t = Target::parse("sip:127.0.0.1:5071;transport=TCP", &none).unwrap();
        assert_eq!((t.transport, t.addr.port()), (Transport::Tcp, 5071));
        let t = Target::parse("sip:127.0.0.1", &none).unwrap();
        assert_eq!((t.transport, t.addr.port()), (Transport::Udp, 5060));
        let t = Target::parse("sips:[::1]", &none).unwrap();
        assert_eq!((t.transport, t.addr.port()), (Transport::Tls, 5061));
        assert!(Target::parse("sip:127.0.0.1;transport=sctp", &none).is_err());
        assert!(Target::parse("http://x", &none).is_err());
    }

    #[test]
    fn the_hosts_table_comes_before_dns_and_a_big_request_takes_tcp() {
        let hosts = Hosts::parse(
            "# test hosts\n127.0.0.1:5081 proxy-b.b.example.com\n::1 six.example.com alias.example.com\n",
        )
        .unwrap();
        let t = Target::parse("sip:proxy-b.b.example.com;transport=tls", &hosts).unwrap();
        assert_eq!(t.addr, "127.0.0.1:5081".parse().unwrap());
        assert_eq!(t.name, "proxy-b.b.example.com");
        let t = Target::parse("sip:PROXY-B.b.example.com:6000", &hosts).unwrap();
        assert_eq!(t.addr.port(), 6000);
        let t = Target::parse("sip:alias.example.com", &hosts).unwrap();
        assert_eq!(t.addr, "[::1]:5060".parse().unwrap());
        let uri = HopUri::parse("sip:alias.example.com").unwrap();
        assert_eq!(
            Target::for_uri(&uri, &hosts, 1301).unwrap().transport,
            Transport::Tcp
        );
        assert_eq!(
            Target::for_uri(&uri, &hosts, 1300).unwrap().transport,
            Transport::Udp
        );
        assert!(Hosts::parse("nonsense name").is_err());
        assert!(Hosts::parse("127.0.0.1").is_err());
        // One name, a port per transport.
        let hosts =
            Hosts::parse("127.0.0.1:5060 example.com\ntls:127.0.0.1:5061 example.com\n").unwrap();
        let t = Target::parse("sip:example.com;transport=tls", &hosts).unwrap();
        assert_eq!(t.addr.port(), 5061);
        let t = Target::parse("sip:example.com;transport=tcp", &hosts).unwrap();
        assert_eq!(t.addr.port(), 5060);
    }

    #[test]
    fn a_name_the_hosts_table_gives_for_tcp_alone_is_reached_over_tcp() {
        let hosts = Hosts::parse(
            "tcp:127.0.0.1:5070 b.example.com\n127.0.0.1:5080 any.example.com\n\
             udp:127.0.0.1:5090 both.example.com\ntcp:127.0.0.1:5091 both.example.com\n",
        )
        .unwrap();
        let hop = |u: &str| {
            Hop::for_uri(&HopUri::parse(u).unwrap(), 0)
                .unwrap()
                .by_hosts(&hosts)
        };
        let b = hop("sip:b.example.com");
        assert_eq!(b.transport, Transport::Tcp);
        let t = b.known(&hosts).unwrap();
        assert_eq!((t.transport, t.addr.port()), (Transport::Tcp, 5070));
        // A line for any transport, or one for UDP, keeps UDP.
        assert_eq!(hop("sip:any.example.com").transport, Transport::Udp);
        assert_eq!(hop("sip:both.example.com").transport, Transport::Udp);
        // What the URI says is kept.
        assert_eq!(
            hop("sip:b.example.com;transport=udp").transport,
            Transport::Udp
        );
    }
}
