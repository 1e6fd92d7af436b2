//! Path security at a relay (docs/SPEC.md §3.4, §3.5): the originator imposture
//! check (403), the connectivity policy (404, the same answer as an
//! unknown target), Route-Security, and signatures required (495).

use std::sync::Arc;

use time::OffsetDateTime;

use super::refusal::Refusal;
use crate::keys::Cert;
use crate::keys::trust::{check_chain, check_validity};
use crate::policy::{Bindings, Policy};
use crate::sip::route_security::{RouteEntry, RouteEntryError};
use crate::sip::{HeaderError, Message};

/// How a relay checks the path (shared by `proxy` and `reencrypt`).
#[derive(Debug, Clone, Default)]
pub struct PathOptions {
    /// The security level (0-3) of the link this relay sends on: appends
    /// `Route-Security: <sip:SENT-BY>;level=N` to requests, and checks its
    /// own entry on responses.
    pub link_level: Option<u8>,
    /// Where the message came from (`HOST[:PORT]`): the newest
    /// Route-Security entry must name it, and the imposture check compares
    /// it with the From AOR's binding.
    pub received_from: Option<String>,
    /// The flow the message arrived on, where a stream's source port
    /// counts (`tcp:IP:PORT`, `tls:IP:PORT`; on UDP the same as
    /// `received_from`): the dialog neighbour a BYE must come from (M3).
    pub flow: Option<String>,
    /// The level of the link the message arrived on, when the connection
    /// shows it (a live relay: TLS with a verified client certificate is
    /// 3, TCP and UDP 0). A request whose newest entry does not name the
    /// source gets `<sip:SOURCE>;level=N` with this level (else 0); one
    /// whose entry claims more than this gets a correcting entry.
    pub arrived_level: Option<u8>,
    /// Registered bindings for the imposture check (403 on mismatch).
    pub bindings: Option<Arc<Bindings>>,
    /// Connectivity allow-list (404 when denied).
    pub policy: Option<Arc<Policy>>,
    /// Answer 495 to a request that carries no signature, and 403 to one
    /// not signed by its From party.
    pub require_signature: bool,
    /// Trust anchors a signer's certificate must chain to before its
    /// signature counts as its party's (`--signer-trust`); none: no
    /// signature counts.
    pub trust: Arc<[Cert]>,
}

/// Why no signature counts as a party's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSigned {
    /// The message names no AOR to compare a signer with.
    #[error("no AOR to compare the signer with")]
    NoAor,
    /// Nobody signed.
    #[error("no signature of {0}")]
    Unsigned(String),
    /// Others signed.
    #[error("signed by {by}, not by {aor}")]
    Others {
        /// Who signed.
        by: String,
        /// The party.
        aor: String,
    },
    /// The party signed, but its certificate is not trusted.
    #[error("the signer {aor} is not trusted: {why}")]
    Untrusted {
        /// The party.
        aor: String,
        /// Why.
        why: String,
    },
}

/// Whether one of `signers` (signatures that verified) is `aor`'s: its
/// SAN URI is the AOR, it chains to a trust anchor and is valid `now`
/// (no anchors: no signature counts).
pub(super) fn party_signer(
    signers: &[Cert],
    aor: Option<&str>,
    path: &PathOptions,
    now: OffsetDateTime,
) -> Result<(), NotSigned> {
    let aor = aor.ok_or(NotSigned::NoAor)?;
    let named: Vec<&Cert> = signers
        .iter()
        .filter(|c| c.uri().is_some_and(|u| u.eq_ignore_ascii_case(aor)))
        .collect();
    if named.is_empty() {
        let who: Vec<String> = signers.iter().map(Cert::name).collect();
        return Err(if who.is_empty() {
            NotSigned::Unsigned(aor.to_owned())
        } else {
            NotSigned::Others {
                by: who.join(", "),
                aor: aor.to_owned(),
            }
        });
    }
    if path.trust.is_empty() {
        // M2: anyone can make a certificate naming any AOR; without
        // anchors a signature speaks for nobody.
        return Err(NotSigned::Untrusted {
            aor: aor.to_owned(),
            why: "no trust anchors to check it against (give --signer-trust)".into(),
        });
    }
    let mut why = String::new();
    for cert in named {
        match check_chain(cert, &[], &path.trust).and_then(|_| check_validity(cert, now)) {
            Ok(()) => return Ok(()),
            Err(e) => why = e.to_string(),
        }
    }
    Err(NotSigned::Untrusted {
        aor: aor.to_owned(),
        why,
    })
}

/// What a relay checks before it parses anything deeper (docs/SPEC.md §4 step
/// 2): Max-Forwards (483), then the imposture check (403) and the
/// connectivity policy (404).
pub(super) fn admission(msg: &Message, path: &PathOptions) -> Result<Option<Refusal>, HeaderError> {
    if msg.is_request() && msg.max_forwards()? == Some(0) {
        return Ok(Some(Refusal::TooManyHops));
    }
    Ok(admit(msg, path))
}

/// The imposture check and the connectivity policy, for requests: an ACK
/// too (H1: refused, it is dropped unanswered); not a REGISTER, which is
/// how a binding comes to be (the registrar authenticates it).
fn admit(msg: &Message, path: &PathOptions) -> Option<Refusal> {
    if !checks_source(msg) {
        return None;
    }
    let from = msg.aor("From").unwrap_or_default();
    if let (Some(bindings), Some(source)) = (&path.bindings, &path.received_from)
        && let Err(why) = bindings.check(from, source)
    {
        return Some(Refusal::Imposture(why.to_string()));
    }
    if let Some(policy) = &path.policy {
        let to = msg.aor("To").unwrap_or_default();
        if !policy.allows(from, to) {
            return Some(Refusal::Denied {
                from: from.to_owned(),
                to: to.to_owned(),
            });
        }
    }
    None
}

/// Whether the imposture check applies to `msg`: every request but a
/// REGISTER.
pub(super) fn checks_source(msg: &Message) -> bool {
    msg.is_request() && msg.method() != Some("REGISTER")
}

/// `require_signature`: 495 when a request carries no signature
/// (`signed` says whether an opaque or inner one was found); 403 when its
/// outer signature has a `problem`: it does not verify, or the protected
/// headers were changed (the designations it protects cannot be trusted).
pub(super) fn require_signature(
    msg: &Message,
    outer: bool,
    problem: Option<String>,
    signed: bool,
    path: &PathOptions,
) -> Option<Refusal> {
    if !path.require_signature || !msg.is_request() || msg.method() == Some("ACK") {
        return None;
    }
    match (outer, problem) {
        (false, _) if signed => None,
        (false, _) => Some(Refusal::SignatureRequired),
        (true, problem) => problem.map(Refusal::BadSignature),
    }
}

/// Route-Security for the message going out (docs/SPEC.md §3.4), decided before
/// anything is built: the report's notes, and the entries to append.
///
/// On a request: the newest entry must name where it came from (else that
/// link counts as level 0, and an entry says so), then this relay appends
/// its own for the link it sends on. A response carries the request's
/// entries back: this relay checks its own is there, unchanged.
pub(super) fn route_security(
    is_request: bool,
    incoming: &[Result<RouteEntry, RouteEntryError>],
    sent_by: &str,
    path: &PathOptions,
) -> (Vec<String>, Vec<RouteEntry>) {
    let mut notes = Vec::new();
    let mut append = Vec::new();
    if !is_request {
        if let Some(level) = path.link_level {
            notes.push(came_back(incoming, sent_by, level));
        }
        return (notes, append);
    }
    if let Some(from) = &path.received_from {
        match incoming.last() {
            Some(Ok(e)) if e.names(from) && path.arrived_level.is_some_and(|l| e.level > l) => {
                let seen = path.arrived_level.unwrap_or_default();
                notes.push(format!(
                    "the newest entry claims level {} for the link from {from}, but the connection is level {seen}",
                    e.level
                ));
                append.push(RouteEntry {
                    addr: from.clone(),
                    level: seen,
                });
            }
            Some(Ok(e)) if e.names(from) => {
                notes.push(format!("the link from {from} is level {}", e.level));
            }
            other => {
                let named = match other {
                    Some(Ok(e)) => format!("names {}", e.addr),
                    Some(Err(why)) => format!("does not parse ({why})"),
                    None => "is missing".into(),
                };
                let level = path.arrived_level.unwrap_or(0);
                notes.push(match path.arrived_level {
                    Some(l) => format!(
                        "the newest entry {named}, not {from}: the connection from {from} is level {l}"
                    ),
                    None => format!(
                        "the newest entry {named}, not {from}: the link from {from} counts as level 0"
                    ),
                });
                append.push(RouteEntry {
                    addr: from.clone(),
                    level,
                });
            }
        }
    }
    if let Some(level) = path.link_level {
        append.push(RouteEntry {
            addr: sent_by.to_owned(),
            level,
        });
        notes.push(format!("appended <sip:{sent_by}>;level={level}"));
    }
    (notes, append)
}

/// Whether this relay's own entry came back on a response, unchanged.
fn came_back(entries: &[Result<RouteEntry, RouteEntryError>], sent_by: &str, level: u8) -> String {
    let mine: Vec<&RouteEntry> = entries
        .iter()
        .flatten()
        .filter(|e| e.names(sent_by))
        .collect();
    match mine.as_slice() {
        [] => format!(
            "the response does not carry this relay's entry <sip:{sent_by}>;level={level} back"
        ),
        [e] if e.level == level => {
            format!("this relay's entry came back unchanged (level {level})")
        }
        [e] => format!(
            "this relay's entry came back with level {}, not {level}: changed on the way",
            e.level
        ),
        _ => format!("this relay's entry appears {} times", mine.len()),
    }
}
