//! The gateway's certificate queries (docs/SPEC.md §7.2): a destination
//! without a `cert:` (typed, or listed without one) is sealed for the
//! certificate its domain's registrar vouches for. The dialer asks the
//! gateway's own registrar (`--cert-query tcp:HOST:PORT`; it forwards a
//! query for another domain itself, §6) by an OPTIONS signed by the
//! calling user, checks the signed answer ([`crate::registrar::ask`]) and
//! keeps the certificate per AOR until its notAfter, [`MAX_CACHED`] at
//! most.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::proxy::DialError;
use crate::context::Context;
use crate::keys::{Cert, Identity};
use crate::net::Target;
use crate::net::client::{Timers, send};
use crate::registrar::ask::{self, AskError, Found, Query};

/// Certificates kept at most; past it the one ending soonest goes.
pub const MAX_CACHED: usize = 1024;

/// Queries on the wire at once, at most: each holds a blocking thread
/// until its answer or its timeout; more wait (within the timeout) for
/// a place.
pub const MAX_QUERYING: usize = 32;

/// Asks the registrar for destinations' certificates, and remembers them.
#[derive(Debug)]
pub struct CertQuery {
    /// Where the registrar takes queries (TCP).
    pub target: Target,
    /// Trust anchors of the registrar's signature and of the certificates.
    pub anchors: Vec<Cert>,
    /// How long the answer may take.
    pub timeout: Duration,
    cache: Mutex<HashMap<String, Cert>>,
    querying: tokio::sync::Semaphore,
}

/// The cache's key for an AOR: its scheme and host in lower case (the
/// user part is case-sensitive, RFC 3261 §19.1.4).
fn key_of(aor: &str) -> String {
    match aor.split_once(':').and_then(|(s, r)| {
        r.rsplit_once('@')
            .map(|(u, h)| format!("{}:{u}@{}", s.to_ascii_lowercase(), h.to_ascii_lowercase()))
    }) {
        Some(k) => k,
        None => aor.to_owned(),
    }
}

fn not_after(cert: &Cert) -> OffsetDateTime {
    crate::keys::trust::time_of(&cert.cert.tbs_certificate().validity().not_after)
}

impl CertQuery {
    /// Queries to `target`, answers checked against `anchors`.
    pub fn new(target: Target, anchors: Vec<Cert>) -> CertQuery {
        CertQuery {
            target,
            anchors,
            timeout: Duration::from_secs(10),
            cache: Mutex::new(HashMap::new()),
            querying: tokio::sync::Semaphore::new(MAX_QUERYING),
        }
    }

    /// The cached certificate of `aor`, while it is valid.
    pub fn cached(&self, aor: &str, now: OffsetDateTime) -> Option<Cert> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&key_of(aor))
            .filter(|c| not_after(c) > now)
            .cloned()
    }

    /// Keep `cert` for `aor` until its notAfter: expired entries go
    /// first, and past [`MAX_CACHED`] the one ending soonest.
    pub fn remember(&self, aor: &str, cert: Cert, now: OffsetDateTime) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let key = key_of(aor);
        if !cache.contains_key(&key) && cache.len() >= MAX_CACHED {
            cache.retain(|_, c| not_after(c) > now);
            if cache.len() >= MAX_CACHED
                && let Some(soonest) = cache
                    .iter()
                    .min_by_key(|(_, c)| not_after(c))
                    .map(|(k, _)| k.clone())
            {
                cache.remove(&soonest);
            }
        }
        cache.insert(key, cert);
    }

    /// The certificate of `aor`: cached, else asked of the registrar by
    /// a query `asker` signs (the registrar's policy sees the user), its
    /// answer checked. 404 and the registrar's other refusals come back
    /// as that status; an answer that does not check out as 502; no
    /// answer as unreachable (408).
    pub async fn cert_for(&self, aor: &str, asker: Arc<Identity>) -> Result<Cert, DialError> {
        if let Some(cert) = self.cached(aor, OffsetDateTime::now_utc()) {
            return Ok(cert);
        }
        let query = Query {
            aor: aor.to_owned(),
            ..Query::default()
        };
        let target = self.target.clone();
        let timers = Timers {
            timeout: self.timeout,
            ..Timers::default()
        };
        let at = format!("the certificate query to {}", target.addr);
        let _place = tokio::time::timeout(self.timeout, self.querying.acquire())
            .await
            .map_err(|_| {
                DialError::Unreachable(format!(
                    "{at}: {MAX_QUERYING} queries are waiting for answers already"
                ))
            })?
            .map_err(|e| DialError::Unreachable(format!("{at}: {e}")))?;
        // The client transaction blocks (connect, write, read until the
        // final answer): off the runtime.
        let answer = tokio::task::spawn_blocking(move || {
            let mut ctx = Context::new(None, None);
            let req = ask::request(&query, Some(&asker), &mut ctx)?;
            Ok::<_, AskError>(send(&req, &target, &timers, &mut |_| {}))
        })
        .await
        .map_err(|e| DialError::Unreachable(format!("{at}: {e}")))?
        .map_err(|e| refused(aor, &e))?;
        let response = match answer {
            Ok(Some(r)) => r,
            Ok(None) => return Err(DialError::Unreachable(format!("{at}: no final answer"))),
            Err(e) => return Err(DialError::Unreachable(format!("{at}: {e}"))),
        };
        let now = OffsetDateTime::now_utc();
        let checked =
            ask::accept(&response, aor, &self.anchors, now).map_err(|e| refused(aor, &e))?;
        let Found::Cert(cert) = checked.found else {
            return Err(refused(
                aor,
                &AskError::Certificate("a key, not the certificate asked for".into()),
            ));
        };
        tracing::info!(event = "certificate query", aor = %aor, subject = %cert.name());
        self.remember(aor, (*cert).clone(), now);
        Ok(*cert)
    }
}

/// The portal's words for a query that gave no certificate.
fn refused(aor: &str, e: &AskError) -> DialError {
    let status = e.status();
    let reason = match e {
        AskError::NotFound(_) => {
            format!(
                "Not Found (no certificate for that destination: the registrar has none current for {aor})"
            )
        }
        AskError::Refused { .. } => {
            format!("the registrar refused the certificate query for {aor}: {e}")
        }
        AskError::NoFrom | AskError::Compose(_) | AskError::Sign(_) => {
            format!(
                "Server Internal Error (the certificate query for {aor} could not be made: {e})"
            )
        }
        _ => format!("Bad Gateway (the registrar's answer about {aor}: {e})"),
    };
    DialError::Refused { status, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dir: &str) -> Cert {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        Cert::load(&repo.join("keys").join(dir).join("cert.pem")).unwrap()
    }

    fn query() -> CertQuery {
        let target = Target::parse("tcp:127.0.0.1:9", &crate::net::Hosts::default()).unwrap();
        CertQuery::new(target, Vec::new())
    }

    #[test]
    fn a_cached_certificate_serves_until_its_not_after_by_aor() {
        let q = query();
        let bob = cert("bob");
        let now = OffsetDateTime::now_utc();
        q.remember("sip:bob@B.example.com", bob.clone(), now);
        assert!(q.cached("sip:bob@b.example.com", now).is_some());
        assert!(q.cached("SIP:bob@b.EXAMPLE.com", now).is_some());
        assert!(q.cached("sip:Bob@b.example.com", now).is_none());
        assert!(q.cached("sip:bob@b.example.com", not_after(&bob)).is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_drops_expired_entries_first() {
        let q = query();
        let now = OffsetDateTime::now_utc();
        let bob = cert("bob");
        for i in 0..MAX_CACHED {
            q.remember(&format!("sip:u{i}@x.example"), bob.clone(), now);
        }
        q.remember("sip:new@x.example", bob.clone(), now);
        assert_eq!(q.cache.lock().unwrap().len(), MAX_CACHED);
        assert!(q.cached("sip:new@x.example", now).is_some());
        // Once they have ended, a new entry sweeps them all out.
        let later = not_after(&bob) + time::Duration::seconds(1);
        q.remember("sip:u0@y.example", bob.clone(), later);
        q.remember("sip:u1@y.example", bob, later);
        assert_eq!(q.cache.lock().unwrap().len(), 2);
    }
}
