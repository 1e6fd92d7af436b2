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

/// Queries forwarded at once, at most: each holds a thread until its
/// answer or its timeout, so a flood of queries for a silent domain is
/// answered 504 at once past it.
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
    /// in the hosts table, else (with `dns`) the system resolver's, which
    /// a query (anyone may send one) may not steer to a loopback or
    /// local-only address (the relays' hop guard, H2).
    pub fn locate(&self, domain: &str) -> Result<Target, ForwardError> {
        let unlocated = |why: String| ForwardError::Unlocated {
            domain: domain.to_owned(),
            why,
        };
        let uri = HopUri::parse(&format!("sip:{domain};transport=tcp"))
            .ok_or_else(|| unlocated("not a host name".into()))?;
        let hop = Hop::for_uri(&uri, 0).map_err(|e| unlocated(e.to_string()))?;
        if let Some(t) = hop.known(&self.hosts) {
            return Ok(t);
        }
        if !self.dns {
            return Err(unlocated("not in the hosts table, and DNS is off".into()));
        }
        let target = Target::for_uri(&uri, &self.hosts, 0).map_err(|e| unlocated(e.to_string()))?;
        HopGuard::default()
            .check(target.addr, Found::Dns)
            .map_err(|e| unlocated(e.to_string()))?;
        Ok(target)
    }
}

impl Forward for WireForward {
    fn forward(&self, req: &Message, domain: &str) -> Result<Message, ForwardError> {
        let target = self.locate(domain)?;
        if self.busy.fetch_add(1, Ordering::SeqCst) >= MAX_FORWARDING {
            self.busy.fetch_sub(1, Ordering::SeqCst);
            return Err(ForwardError::Unanswered {
                domain: domain.to_owned(),
                at: format!("{} {}", target.transport.token(), target.addr),
                why: format!("{MAX_FORWARDING} queries are being forwarded already"),
            });
        }
        let _slot = Slot(&self.busy);
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
