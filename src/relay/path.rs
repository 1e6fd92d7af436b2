//! Path security at a relay (SPEC §3.4, §3.5): the originator imposture
//! check (403), the connectivity policy (404, the same answer as an
//! unknown target), Route-Security, and signatures required (495).

use super::{Outcome, RelayError, RelayKeys, RelayReport};
use crate::context::Context;
use crate::policy::{Bindings, Policy};
use crate::signing::OuterSignature;
use crate::sip::Message;
use crate::sip::compose::{ResponseParams, build_response};
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

/// A response this relay answers with; `why` goes into the report only
/// (the response itself says no more than its status).
fn refuse(
    msg: &Message,
    code: u16,
    why: String,
    report: &mut RelayReport,
    ctx: &mut Context,
) -> Result<Option<Outcome>, RelayError> {
    report.answered = Some(code);
    report.refused = Some(why);
    let response = build_response(
        msg,
        &ResponseParams {
            code,
            ..Default::default()
        },
        ctx,
    )?;
    Ok(Some(Outcome::Respond(response)))
}

/// The imposture check and the connectivity policy, for requests (an ACK
/// cannot be answered, so it passes).
pub(super) fn admit(
    msg: &Message,
    path: &PathOptions,
    report: &mut RelayReport,
    ctx: &mut Context,
) -> Result<Option<Outcome>, RelayError> {
    if !msg.is_request() || msg.method() == Some("ACK") {
        return Ok(None);
    }
    let from = msg.aor("From").unwrap_or_default();
    if let (Some(bindings), Some(source)) = (&path.bindings, &path.received_from)
        && let Err(why) = bindings.check(from, source)
    {
        return refuse(msg, 403, format!("imposture check: {why}"), report, ctx);
    }
    if let Some(policy) = &path.policy {
        let to = msg.aor("To").unwrap_or_default();
        if !policy.allows(from, to) {
            // Exactly what an unknown target gets, so that a denied
            // caller learns nothing about whether `to` exists.
            return refuse(
                msg,
                404,
                format!("connectivity policy: {from} may not reach {to}"),
                report,
                ctx,
            );
        }
    }
    Ok(None)
}

/// `--require-signature`: 495 when a request carries no signature; 403
/// when its outer signature does not verify or its protected headers were
/// changed (the designations it protects cannot be trusted).
pub(super) fn require_signature(
    msg: &Message,
    outer: Option<&OuterSignature>,
    inner_signed: bool,
    path: &PathOptions,
    report: &mut RelayReport,
    ctx: &mut Context,
) -> Result<Option<Outcome>, RelayError> {
    if !path.require_signature || !msg.is_request() || msg.method() == Some("ACK") {
        return Ok(None);
    }
    match outer {
        None if inner_signed => Ok(None),
        None => refuse(
            msg,
            495,
            "no signature, and --require-signature is set".into(),
            report,
            ctx,
        ),
        Some(outer) => {
            let problem = match outer.verify() {
                Err(e) => Some(e.to_string()),
                Ok(_) => {
                    let headers = crate::verify::headers_check(msg, outer);
                    (!headers.ok).then_some(headers.detail)
                }
            };
            match problem {
                Some(why) => refuse(msg, 403, format!("outer signature: {why}"), report, ctx),
                None => Ok(None),
            }
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

/// This relay's Via sent-by (also its Route-Security address).
pub(super) fn sent_by(keys: &RelayKeys<'_>, via: Option<&str>) -> String {
    via.map_or_else(|| keys.host(), str::to_owned)
}
