//! The registrar's [`Forward`] on the wire: a certificate query for
//! another domain goes to that domain's registrar, located as RFC 3263
//! locates a server (the operator's hosts table first, then the system
//! resolver's A/AAAA records, SRV not asked), over TCP (the answer is
//! signed end to end, and a certificate with its chain is too large for
//! UDP), one client transaction with a bounded wait.

use std::time::Duration;

use super::query::{Forward, ForwardError};
use crate::net::client::{Timers, send};
use crate::net::{Hop, Hosts, Target};
use crate::sip::Message;
use crate::sip::uri::HopUri;

/// Forwarding over TCP to the registrar the hosts table or DNS names.
#[derive(Debug, Clone)]
pub struct WireForward {
    /// Names resolved before DNS (`registrar --hosts`).
    pub hosts: Hosts,
    /// Ask the system resolver about names the table does not know.
    pub dns: bool,
    /// How long to wait for the final answer.
    pub timeout: Duration,
}

impl WireForward {
    /// Where the registrar of `domain` is: `sip:DOMAIN;transport=tcp`
    /// in the hosts table, else (with `dns`) the system resolver's.
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
        Target::for_uri(&uri, &self.hosts, 0).map_err(|e| unlocated(e.to_string()))
    }
}

impl Forward for WireForward {
    fn forward(&self, req: &Message, domain: &str) -> Result<Message, ForwardError> {
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
