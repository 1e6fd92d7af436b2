//! The registrar's [`Forward`] on the wire: a certificate query for
//! another domain goes to that domain's registrar, located as RFC 3263
//! locates a server (the operator's hosts table first, then the system
//! resolver's A/AAAA records, SRV not asked), over TCP (the answer is
//! signed end to end, and a certificate with its chain is too large for
//! UDP), one client transaction with a bounded wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::query::{Forward, ForwardError};
use crate::net::client::{Timers, send};
use crate::net::{Found, Hop, HopGuard, Hosts, Target};
use crate::sip::Message;
use crate::sip::uri::HopUri;

/// Queries forwarded at once, at most: each holds a thread from its DNS
/// lookup to its answer or its timeout, so a flood of queries for a
/// silent domain (or one whose name servers are slow) is answered 504 at
/// once past it.
pub const MAX_FORWARDING: usize = 32;

/// Forwarding over TCP to the registrar the hosts table or DNS names.
#[derive(Debug, Clone)]
pub struct WireForward {
    /// Names resolved before DNS (`registrar --hosts`).
    pub hosts: Hosts,
    /// Ask the system resolver about names the table does not know.
    pub dns: bool,
    /// How long to wait for the final answer.
    pub timeout: Duration,
    /// Queries being forwarded now.
    pub busy: Arc<AtomicUsize>,
}

impl WireForward {
    /// Forwarding with `hosts`, DNS when `dns`, waiting `timeout`.
    pub fn new(hosts: Hosts, dns: bool, timeout: Duration) -> WireForward {
        WireForward {
            hosts,
            dns,
            timeout,
            busy: Arc::default(),
        }
    }
}

/// One query's place among the [`MAX_FORWARDING`], given back on drop.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WireForward {
    /// Where the registrar of `domain` is: `sip:DOMAIN;transport=tcp`
    /// in the hosts table, else an address literal or (with `dns`) the
    /// system resolver's answer, which a query (anyone may send one) may
    /// not steer to an address that is not [`forwardable`]: loopback,
    /// local-only or private (H2, and the hostile review of issue 28).
    pub fn locate(&self, domain: &str) -> Result<Target, ForwardError> {
        let unlocated = |why: String| ForwardError::Unlocated {
            domain: domain.to_owned(),
            why,
        };
        let uri = HopUri::parse(&format!("sip:{domain};transport=tcp"))
            .ok_or_else(|| unlocated("not a host name".into()))?;
        let hop = Hop::for_uri(&uri, 0).map_err(|e| unlocated(e.to_string()))?;
        let internal = |t: &Target| {
            unlocated(format!(
                "{} is not a globally reachable address (only the hosts table may name one)",
                t.addr.ip()
            ))
        };
        if let Some(t) = hop.known(&self.hosts) {
            // An address literal is the query's word, a hosts entry the
            // operator's.
            if uri.ip().is_some() && !forwardable(t.addr.ip()) {
                return Err(internal(&t));
            }
            return Ok(t);
        }
        if !self.dns {
            return Err(unlocated("not in the hosts table, and DNS is off".into()));
        }
        let target = Target::for_uri(&uri, &self.hosts, 0).map_err(|e| unlocated(e.to_string()))?;
        if !forwardable(target.addr.ip()) {
            return Err(internal(&target));
        }
        Ok(target)
    }
}

/// Whether a query (anyone may send one) may have the registrar connect
/// to `ip`: a globally reachable unicast address. Not loopback,
/// unspecified, link-local, multicast or broadcast (the relays'
/// [`HopGuard`]), nor an RFC 1918 or shared (RFC 6598) IPv4 address or an
/// IPv6 unique local one (RFC 4193): the registrar's own networks, which
/// only the operator's hosts table may point a domain to. An IPv6
/// address that carries an IPv4 one (mapped, compatible, NAT64, 6to4) is
/// judged as the IPv4 one.
pub fn forwardable(ip: std::net::IpAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr};
    let ip = ip.to_canonical();
    // An IPv4 address inside an IPv6 one reaches that IPv4 address
    // (IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16):
    // judged as it.
    if let IpAddr::V6(a) = ip {
        let o = a.octets();
        let v4 = |at: usize| Ipv4Addr::new(o[at], o[at + 1], o[at + 2], o[at + 3]);
        let s = a.segments();
        let embedded = match s {
            [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(v4(12)),
            [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(v4(12)),
            [0x2002, ..] => Some(v4(2)),
            _ => None,
        };
        if let Some(v4) = embedded {
            return forwardable(IpAddr::V4(v4));
        }
    }
    let guard = HopGuard::default();
    if guard
        .check(std::net::SocketAddr::new(ip, 5060), Found::Dns)
        .is_err()
    {
        return false;
    }
    match ip {
        IpAddr::V4(a) => {
            let [b0, b1, ..] = a.octets();
            !(a.is_private() || (b0 == 100 && (64..128).contains(&b1)))
        }
        IpAddr::V6(a) => !a.is_unique_local(),
    }
}

impl Forward for WireForward {
    fn forward(&self, req: &Message, domain: &str) -> Result<Message, ForwardError> {
        // The slot first: locating may ask DNS, which holds a thread as
        // long as the name's servers make it.
        if self.busy.fetch_add(1, Ordering::SeqCst) >= MAX_FORWARDING {
            self.busy.fetch_sub(1, Ordering::SeqCst);
            return Err(ForwardError::Unanswered {
                domain: domain.to_owned(),
                at: "(not looked up)".into(),
                why: format!("{MAX_FORWARDING} queries are being forwarded already"),
            });
        }
        let _slot = Slot(&self.busy);
        let target = self.locate(domain)?;
        let timers = Timers {
            timeout: self.timeout,
            ..Timers::default()
        };
        let unanswered = |why: String| ForwardError::Unanswered {
            domain: domain.to_owned(),
            at: format!("{} {}", target.transport.token(), target.addr),
            why,
        };
        // The caller runs off the runtime already (`blocking::offload`).
        match send(req, &target, &timers, &mut |_| {}) {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => Err(unanswered("no final response".into())),
            Err(e) => Err(unanswered(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(hosts: &str, dns: bool) -> WireForward {
        WireForward::new(
            Hosts::parse(hosts).unwrap(),
            dns,
            Duration::from_millis(300),
        )
    }

    #[test]
    fn the_hosts_table_locates_and_nothing_else_does_with_dns_off() {
        let f = forward("tcp:127.0.0.1:5090 b.example.com\n", false);
        let t = f.locate("B.example.com").unwrap();
        assert_eq!(t.addr.to_string(), "127.0.0.1:5090");
        assert_eq!(t.transport, crate::net::Transport::Tcp);
        let e = f.locate("c.example.com").unwrap_err();
        assert!(
            matches!(&e, ForwardError::Unlocated { why, .. } if why.contains("DNS is off")),
            "{e}"
        );
    }

    /// H2: a name anyone may ask about cannot make the registrar connect
    /// to its own host's loopback through DNS (the hosts table may).
    #[test]
    fn a_name_resolving_to_loopback_is_not_forwarded_to() {
        let e = forward("", true).locate("localhost").unwrap_err();
        assert!(matches!(e, ForwardError::Unlocated { .. }), "{e}");
        assert!(
            forward("127.0.0.1:5090 localhost\n", true)
                .locate("localhost")
                .is_ok()
        );
    }

    /// A query names its AOR's host; anyone may send one. An address
    /// literal there, or a name DNS resolves to an address inside the
    /// registrar's networks, would make the registrar connect where only
    /// its operator may send it (SSRF): refused as unlocated (404), with
    /// DNS on and off. The hosts table still may name any address.
    #[test]
    fn a_query_cannot_steer_forwarding_to_an_internal_or_literal_address() {
        for host in [
            "127.0.0.1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:10.1.2.3]",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "[fe80::1]",
            "[fd00::1]",
            "0.0.0.0",
            "[::]",
            "224.0.0.1",
        ] {
            for dns in [false, true] {
                let e = forward("", dns).locate(host).unwrap_err();
                assert!(
                    matches!(&e, ForwardError::Unlocated { .. }),
                    "{host} (dns {dns}): {e}"
                );
            }
        }
        // A public address literal is another domain's registrar as any.
        assert_eq!(
            forward("", false)
                .locate("192.0.2.7")
                .unwrap()
                .addr
                .to_string(),
            "192.0.2.7:5060"
        );
        // The operator's hosts table may name an internal registrar.
        assert_eq!(
            forward("tcp:10.1.2.3:5090 b.example.com\n", true)
                .locate("b.example.com")
                .unwrap()
                .addr
                .to_string(),
            "10.1.2.3:5090"
        );
    }

    #[test]
    fn only_globally_reachable_unicast_addresses_are_forwarded_to() {
        for (ip, ok) in [
            ("203.0.113.5", true),
            ("2001:db8::5", true),
            ("8.8.8.8", true),
            ("10.0.0.1", false),
            ("172.31.255.255", false),
            ("172.32.0.1", true),
            ("192.168.0.1", false),
            ("100.127.255.255", false),
            ("100.128.0.1", true),
            ("169.254.1.1", false),
            ("127.8.8.8", false),
            ("255.255.255.255", false),
            ("::ffff:192.168.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("fc00::1", false),
            ("fe80::1", false),
            ("::1", false),
            ("ff02::1", false),
            // IPv4 inside IPv6: IPv4-compatible, NAT64 (RFC 6052), 6to4.
            ("::10.0.0.1", false),
            ("64:ff9b::127.0.0.1", false),
            ("64:ff9b::192.168.1.1", false),
            ("64:ff9b::8.8.8.8", true),
            ("2002:7f00:1::1", false),
            ("2002:a00:1::1", false),
            ("2002:808:808::1", true),
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(forwardable(ip), ok, "{ip}");
        }
    }

    /// Locating is part of the cost the limit bounds: a DNS lookup (the
    /// system resolver's, blocking, as slow as the name's servers make
    /// it) holds a thread as the connection does, so past the limit a
    /// query is refused before any name is looked up.
    #[test]
    fn past_the_limit_no_name_is_even_looked_up() {
        let f = forward("", true);
        f.busy.store(MAX_FORWARDING, Ordering::SeqCst);
        let req = Message::parse(
            b"OPTIONS sip:x@slow.invalid SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let e = f.forward(&req, "slow.invalid").unwrap_err();
        assert!(
            matches!(&e, ForwardError::Unanswered { why, .. } if why.contains("being forwarded already")),
            "{e}"
        );
        assert_eq!(f.busy.load(Ordering::SeqCst), MAX_FORWARDING);
        // Below the limit the name is looked up (and, unknown, is a 404),
        // and the slot comes back.
        f.busy.store(0, Ordering::SeqCst);
        let e = f.forward(&req, "slow.invalid").unwrap_err();
        assert!(matches!(e, ForwardError::Unlocated { .. }), "{e}");
        assert_eq!(f.busy.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn past_the_limit_a_query_is_refused_at_once_and_slots_come_back() {
        let f = forward("tcp:127.0.0.1:9 b.example.com\n", false);
        f.busy.store(MAX_FORWARDING, Ordering::SeqCst);
        let req = Message::parse(
            b"OPTIONS sip:x@b.example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let e = f.forward(&req, "b.example.com").unwrap_err();
        assert!(e.to_string().contains("being forwarded already"), "{e}");
        assert_eq!(f.busy.load(Ordering::SeqCst), MAX_FORWARDING);
        f.busy.store(0, Ordering::SeqCst);
        // Nothing listens on port 9: unanswered, and the slot is given back.
        let e = f.forward(&req, "b.example.com").unwrap_err();
        assert!(matches!(e, ForwardError::Unanswered { .. }), "{e}");
        assert_eq!(f.busy.load(Ordering::SeqCst), 0);
    }
}
