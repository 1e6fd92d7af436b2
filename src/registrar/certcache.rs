//! Peers' certificates asked of the registrar (docs/SPEC.md §6, §7.2),
//! shared by the gateway (a destination without a `cert:`) and the edge
//! (the peer a phone calls): an OPTIONS for the AOR, signed by the user
//! who asks ([`crate::registrar::ask`]), to the asker's own registrar
//! (`--cert-query tcp:HOST:PORT`; it forwards a query for another domain
//! itself, §6); the signed answer checked, and the certificate kept per
//! AOR until its notAfter, [`MAX_CACHED`] at most.
//!
//! Withdrawn certificates: the registrar withdraws a certificate when its
//! binding goes (and lists it on its CRL), and then answers 404 for the
//! AOR. With [`CertQuery::with_recheck`] a cached certificate older than
//! that is asked about again before it is used: a 404 drops it, another
//! certificate replaces it; a registrar that does not answer leaves the
//! cached one in use until its notAfter. Without it (the gateway), a
//! certificate is kept until its notAfter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::ask::{self, AskError, Found, Query};
use crate::context::Context;
use crate::keys::{Cert, Identity};
use crate::net::Target;
use crate::net::client::{Timers, send};

/// Certificates kept at most; past it the one ending soonest goes.
pub const MAX_CACHED: usize = 1024;

/// Queries on the wire at once, at most: each holds a blocking thread
/// until its answer or its timeout; more wait (within the timeout) for
/// a place.
pub const MAX_QUERYING: usize = 32;

/// Why a query gave no certificate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// The registrar answered with a refusal (404: no current
    /// certificate), or its answer does not check out (502), or the query
    /// could not be made (500); the reason in words.
    #[error("{status} {reason}")]
    Refused {
        /// The SIP status it stands for.
        status: u16,
        /// Why, in words.
        reason: String,
    },
    /// No answer (connect, timeout, too many queries waiting).
    #[error("{0}")]
    Unreachable(String),
}

impl QueryError {
    /// The SIP status: the refusal's, 408 for no answer (a transaction
    /// timeout).
    pub fn status(&self) -> u16 {
        match self {
            QueryError::Refused { status, .. } => *status,
            QueryError::Unreachable(_) => 408,
        }
    }

    /// Whether the registrar said it has no current certificate (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == 404
    }
}

/// A cached certificate and when the registrar last vouched for it.
#[derive(Debug, Clone)]
struct Cached {
    cert: Cert,
    checked: OffsetDateTime,
}

/// Certificates kept per AOR (scheme and host folded) until their
/// notAfter, [`MAX_CACHED`] at most: expired ones go first, then the one
/// ending soonest.
#[derive(Debug, Default)]
pub struct CertCache {
    map: Mutex<HashMap<String, Cached>>,
}

impl CertCache {
    /// An empty cache.
    pub fn new() -> CertCache {
        CertCache::default()
    }

    /// The cached certificate of `aor`, while it is valid.
    pub fn cached(&self, aor: &str, now: OffsetDateTime) -> Option<Cert> {
        self.entry(aor, now).map(|c| c.cert)
    }

    fn entry(&self, aor: &str, now: OffsetDateTime) -> Option<Cached> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key_of(aor))
            .filter(|c| not_after(&c.cert) > now)
            .cloned()
    }

    /// Keep `cert` for `aor` (vouched for at `now`) until its notAfter.
    pub fn remember(&self, aor: &str, cert: Cert, now: OffsetDateTime) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = key_of(aor);
        if !map.contains_key(&key) && map.len() >= MAX_CACHED {
            map.retain(|_, c| not_after(&c.cert) > now);
            if map.len() >= MAX_CACHED
                && let Some(soonest) = map
                    .iter()
                    .min_by_key(|(_, c)| not_after(&c.cert))
                    .map(|(k, _)| k.clone())
            {
                map.remove(&soonest);
            }
        }
        map.insert(key, Cached { cert, checked: now });
    }

    /// Drop the certificate of `aor`; whether there was one.
    pub fn forget(&self, aor: &str) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&key_of(aor)).is_some()
    }

    /// How many certificates it holds.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Asks the registrar for peers' certificates, and remembers them.
#[derive(Debug)]
pub struct CertQuery {
    /// Where the registrar takes queries (TCP).
    pub target: Target,
    /// Trust anchors of the registrar's signature and of the certificates.
    pub anchors: Vec<Cert>,
    /// How long the answer may take.
    pub timeout: Duration,
    /// Ask again about a cached certificate older than this before using
    /// it (a withdrawn one is dropped); `None`: until its notAfter.
    pub recheck: Option<Duration>,
    /// The certificates it was given.
    pub cache: CertCache,
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
            recheck: None,
            cache: CertCache::new(),
            querying: tokio::sync::Semaphore::new(MAX_QUERYING),
        }
    }

    /// Ask about a cached certificate again once it is `every` old.
    pub fn with_recheck(mut self, every: Duration) -> CertQuery {
        self.recheck = Some(every);
        self
    }

    /// The cached certificate of `aor`, while it is valid (whether or
    /// not it is due for a recheck).
    pub fn cached(&self, aor: &str, now: OffsetDateTime) -> Option<Cert> {
        self.cache.cached(aor, now)
    }

    /// Whether a cached entry checked at `checked` is still fresh at `now`.
    fn fresh(&self, checked: OffsetDateTime, now: OffsetDateTime) -> bool {
        self.recheck.is_none_or(|every| {
            now - checked < time::Duration::try_from(every).unwrap_or(time::Duration::MAX)
        })
    }

    /// Drop the cached certificate of `aor` (the registrar no longer
    /// vouches for it); whether there was one.
    pub fn forget(&self, aor: &str) -> bool {
        self.cache.forget(aor)
    }

    /// Keep `cert` for `aor` until its notAfter: expired entries go
    /// first, and past [`MAX_CACHED`] the one ending soonest.
    pub fn remember(&self, aor: &str, cert: Cert, now: OffsetDateTime) {
        self.cache.remember(aor, cert, now);
    }

    /// The certificate of `aor`: cached (and fresh), else asked of the
    /// registrar by a query `asker` signs (the registrar's policy sees
    /// the user), its answer checked. 404 and the registrar's other
    /// refusals come back as that status (a 404 drops a cached one: it
    /// was withdrawn or ended); an answer that does not check out as 502;
    /// no answer as unreachable (408), unless a cached one due for its
    /// recheck is still valid: it serves until its notAfter.
    pub async fn cert_for(&self, aor: &str, asker: Arc<Identity>) -> Result<Cert, QueryError> {
        let now = OffsetDateTime::now_utc();
        let held = self.cache.entry(aor, now);
        if let Some(c) = &held
            && self.fresh(c.checked, now)
        {
            return Ok(c.cert.clone());
        }
        match self.ask(aor, asker).await {
            Ok(cert) => {
                if held.as_ref().is_some_and(|c| c.cert.cert != cert.cert) {
                    tracing::info!(event = "certificate replaced", aor = %aor, subject = %cert.name());
                }
                self.remember(aor, cert.clone(), OffsetDateTime::now_utc());
                Ok(cert)
            }
            Err(e @ QueryError::Refused { .. }) => {
                if e.is_not_found() && self.forget(aor) {
                    tracing::info!(event = "certificate withdrawn", aor = %aor);
                }
                Err(e)
            }
            Err(e) => match held {
                Some(c) => {
                    tracing::warn!(event = "certificate recheck", aor = %aor, error = %e);
                    Ok(c.cert)
                }
                None => Err(e),
            },
        }
    }

    /// One query on the wire for `aor`, its answer checked.
    async fn ask(&self, aor: &str, asker: Arc<Identity>) -> Result<Cert, QueryError> {
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
                QueryError::Unreachable(format!(
                    "{at}: {MAX_QUERYING} queries are waiting for answers already"
                ))
            })?
            .map_err(|e| QueryError::Unreachable(format!("{at}: {e}")))?;
        // The client transaction blocks (connect, write, read until the
        // final answer): off the runtime.
        let answer = tokio::task::spawn_blocking(move || {
            let mut ctx = Context::new(None, None);
            let req = ask::request(&query, Some(&asker), &mut ctx)?;
            Ok::<_, AskError>(send(&req, &target, &timers, &mut |_| {}))
        })
        .await
        .map_err(|e| QueryError::Unreachable(format!("{at}: {e}")))?
        .map_err(|e| refused(aor, &e))?;
        let response = match answer {
            Ok(Some(r)) => r,
            Ok(None) => return Err(QueryError::Unreachable(format!("{at}: no final answer"))),
            Err(e) => return Err(QueryError::Unreachable(format!("{at}: {e}"))),
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
        Ok(*cert)
    }
}

/// The words for a query that gave no certificate (the gateway's portal
/// shows them).
fn refused(aor: &str, e: &AskError) -> QueryError {
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
    QueryError::Refused { status, reason }
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
        assert_eq!(q.cache.len(), MAX_CACHED);
        assert!(q.cached("sip:new@x.example", now).is_some());
        // Once they have ended, a new entry sweeps them all out.
        let later = not_after(&bob) + time::Duration::seconds(1);
        q.remember("sip:u0@y.example", bob.clone(), later);
        q.remember("sip:u1@y.example", bob, later);
        assert_eq!(q.cache.len(), 2);
    }

    #[test]
    fn with_a_recheck_a_cached_certificate_goes_stale_and_can_be_dropped() {
        let q = query().with_recheck(Duration::from_secs(60));
        let bob = cert("bob");
        let now = OffsetDateTime::now_utc();
        q.remember("sip:bob@b.example.com", bob, now);
        let held = q.cache.entry("sip:bob@b.example.com", now).unwrap();
        assert!(q.fresh(held.checked, now + time::Duration::seconds(59)));
        assert!(!q.fresh(held.checked, now + time::Duration::seconds(60)));
        // Stale is not gone: it still serves if the registrar is silent.
        assert!(
            q.cached("sip:bob@b.example.com", now + time::Duration::seconds(61))
                .is_some()
        );
        assert!(q.forget("sip:bob@B.example.com"));
        assert!(q.cached("sip:bob@b.example.com", now).is_none());
        assert!(!q.forget("sip:bob@b.example.com"));
        // Without a recheck (the gateway) nothing goes stale.
        let g = query();
        assert!(g.fresh(now, now + time::Duration::days(365)));
    }
}
