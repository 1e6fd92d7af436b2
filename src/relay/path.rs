//! Path security at a relay (SPEC §3.4, §3.5): the originator imposture
//! check (403), the connectivity policy (404, the same answer as an
//! unknown target), Route-Security, and signatures required (495).

use super::RelayReport;
use super::refusal::Refusal;
use crate::policy::{Bindings, Policy};
use crate::signing::OuterSignature;
use crate::sip::Message;
use crate::sip::route_security::{self, RouteEntry};

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
    /// Registered bindings for the imposture check (403 on mismatch).
    pub bindings: Option<Bindings>,
    /// Connectivity allow-list (404 when denied).
    pub policy: Option<Policy>,
    /// Answer 495 to a request that carries no signature.
    pub require_signature: bool,
}

/// The imposture check and the connectivity policy, for requests (an ACK
/// cannot be answered, so it passes).
pub(super) fn admit(msg: &Message, path: &PathOptions) -> Option<Refusal> {
    if !msg.is_request() || msg.method() == Some("ACK") {
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

/// `require_signature`: 495 when a request carries no signature
/// (`signed` says whether an opaque or inner one was found); 403 when its
/// outer signature does not verify or its protected headers were changed
/// (the designations it protects cannot be trusted).
pub(super) fn require_signature(
    msg: &Message,
    outer: Option<&OuterSignature>,
    signed: bool,
    path: &PathOptions,
) -> Option<Refusal> {
    if !path.require_signature || !msg.is_request() || msg.method() == Some("ACK") {
        return None;
    }
    match outer {
        None if signed => None,
        None => Some(Refusal::SignatureRequired),
        Some(outer) => {
            let problem = match outer.verify() {
                Err(e) => Some(e.to_string()),
                Ok(_) => {
                    let headers = crate::verify::headers_check(msg, outer);
                    (!headers.ok).then_some(headers.detail)
                }
            };
            problem.map(Refusal::BadSignature)
        }
    }
}

/// Route-Security on a request going out: check that the newest entry of
/// the incoming request names where it came from (else record that link
/// as level 0 and say so), then append this relay's entry.
pub(super) fn route_request(
    incoming: &Message,
    out: &mut Message,
    sent_by: &str,
    path: &PathOptions,
    report: &mut RelayReport,
) {
    if let Some(from) = &path.received_from {
        let newest = route_security::entries(incoming).into_iter().last();
        match newest {
            Some(Ok(e)) if e.names(from) => report
                .route_security
                .push(format!("the link from {from} is level {}", e.level)),
            other => {
                let named = match other {
                    Some(Ok(e)) => format!("names {}", e.addr),
                    Some(Err(why)) => format!("does not parse ({why})"),
                    None => "is missing".into(),
                };
                report.route_security.push(format!(
                    "the newest entry {named}, not {from}: the link from {from} counts as level 0"
                ));
                route_security::append(
                    out,
                    &RouteEntry {
                        addr: from.clone(),
                        level: 0,
                    },
                );
            }
        }
    }
    if let Some(level) = path.link_level {
        route_security::append(
            out,
            &RouteEntry {
                addr: sent_by.to_owned(),
                level,
            },
        );
        report
            .route_security
            .push(format!("appended <sip:{sent_by}>;level={level}"));
    }
}

/// Route-Security on a response: it carries the request's entries back;
/// this relay checks its own is there, unchanged.
pub(super) fn route_response(
    msg: &Message,
    sent_by: &str,
    path: &PathOptions,
    report: &mut RelayReport,
) {
    let Some(level) = path.link_level else {
        return;
    };
    let mine: Vec<RouteEntry> = route_security::entries(msg)
        .into_iter()
        .flatten()
        .filter(|e| e.names(sent_by))
        .collect();
    let note = match mine.as_slice() {
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
    };
    report.route_security.push(note);
}
