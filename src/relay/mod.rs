//! The relay workflow (docs/SPEC.md §4): one message in; the message to send (the
//! forwarded message, or a SIP error response), the disclosure report, the
//! session key recorded and the pinhole changes out, as values. `proxy`
//! and `reencrypt` on the command line and the live relay run exactly this.
//!
//! A relay opens a body only when a `Proxy-Inspect-Body` names it (or on
//! trial, when a RecipientInfo is addressed to it). It finds its
//! RecipientInfo by rid/kekid first, so a relay that is not a recipient
//! never reads its private key. The sealed body is forwarded byte-identical.

pub mod flow;
mod options;
mod path;
mod pipeline;
mod refusal;
mod report;
pub mod route;
#[cfg(feature = "live")]
pub mod serve;
mod view;

use time::OffsetDateTime;

pub use options::{
    Mode, Outcome, ProxyOptions, ReencryptOptions, RelayError, RelayKeys, RelayOptions,
};
pub use path::PathOptions;
pub use refusal::{Refusal, answer_unparsable};
pub use report::{Decision, RelayReport, SrtpKey, StreamReport};
pub use view::View;

use crate::context::Context;
use crate::firewall::Firewall;
use crate::pinhole::{Changes, Seen};
use crate::session::{Entry, Policy, Recorded, Role, SessionKey, Stored};
use crate::sip::{Message, conformance, respond, routing};
use crate::state::{PinholeStore, SessionStore, StoreError};
use pipeline::Pass;

/// Sessions a sender that neither passed the imposture check nor signed
/// may hold in a relay's store (per From AOR).
pub const MAX_UNVOUCHED_SESSIONS: usize = 32;

/// The result of one relay step.
#[derive(Debug)]
pub struct Step {
    /// What to send.
    pub outcome: Outcome,
    /// What the relay saw and did.
    pub report: RelayReport,
    /// The session key it recorded (it opened a full envelope).
    pub session: Option<Stored>,
    /// The pinhole changes, when pinholes are kept.
    pub pinholes: Option<Changes>,
}

/// Where a relay keeps what it learns.
#[derive(Clone, Copy)]
pub struct RelayState<'a> {
    /// Session keys: looked up for session messages, recorded from full envelopes.
    pub sessions: &'a dyn SessionStore,
    /// Each call's pinholes, when the relay keeps them.
    pub pinholes: Option<&'a dyn PinholeStore>,
    /// Where pinhole changes are applied and confirmed before the message
    /// goes on (`--firewall nft`), when they are.
    pub firewall: Option<&'a dyn Firewall>,
}

/// One relay step on `msg`. The cheap checks come first (483, the
/// imposture check, the policy), before anything deeper is parsed; then
/// the message is parsed once, the session key it may be sealed under is
/// looked up, the pipeline runs, the key of a full envelope this relay
/// opened is recorded, and the pinholes follow what is sent on.
pub fn relay(
    msg: &Message,
    keys: &RelayKeys<'_>,
    opts: &RelayOptions,
    state: RelayState<'_>,
    ctx: &mut Context,
) -> Result<Step, RelayError> {
    // In deterministic mode every message gets values of its own.
    ctx.mix_with("relay", || msg.to_bytes());
    let mut report = RelayReport::new(msg, &keys.uris());
    let owner = keys.name();
    let branch_key = state.sessions.secret(&owner, &mut || {
        let mut b = [0u8; 32];
        b.copy_from_slice(&ctx.bytes(32));
        b
    })?;
    if routing::acks_own_answer(msg, &branch_key) {
        // The ACK of this relay's own error answer (RFC 3261 §8.2.7): it
        // ends there.
        return Ok(Step {
            outcome: Outcome::Drop("the ACK of this relay's own answer".into()),
            report,
            session: None,
            pinholes: None,
        });
    }
    let mut refusal = well_formed(msg)?;
    if refusal.is_none() && msg.is_request() && routing::looped(msg, &keys.names(opts), &branch_key)
    {
        refusal = Some(Refusal::Loop);
    }
    if !msg.is_request() {
        // RFC 3261 §16.7 / §16.11: only a response to what this relay
        // forwarded goes on, never one with a Via stack merely stripped.
        let sent_by = keys.sent_by(opts.via.as_deref());
        routing::check_response_via(msg, &sent_by, &branch_key).map_err(RelayError::NotOurs)?;
    }
    let pass = match refusal {
        Some(refusal) => Pass::Refuse(refusal),
        None => match path::admission(msg, &opts.path)? {
            Some(refusal) => Pass::Refuse(refusal),
            None => {
                // Route-Security needs the headers alone: a request below
                // the minimum level, or a response whose entry is not this
                // relay's, goes no further before the body is looked at.
                let sent_by = keys.sent_by(opts.via.as_deref());
                let mut route = path::route_security(msg, &sent_by, &opts.path);
                report.route_security.append(&mut route.notes);
                if let Some(refusal) = route.refuse.take() {
                    Pass::Refuse(refusal)
                } else if let Some(why) = route.drop.take() {
                    Pass::Drop(why)
                } else {
                    let view = View::parse_for(msg, &keys.uris());
                    let sessions =
                        session_keys(&view, &owner, &opts.sessions, state.sessions, ctx.now())?;
                    let before = pipeline::Before {
                        sessions: &sessions,
                        branch_key: &branch_key,
                        route: &route,
                    };
                    pipeline::run(view, &mut report, keys, before, opts, ctx)?
                }
            }
        },
    };
    let (outcome, cek, trust) = match pass {
        Pass::Forward {
            message,
            cek,
            onward,
            trust,
        } => (
            Outcome::Forward(message),
            cek.map(|c| (c, onward)),
            Some(trust),
        ),
        Pass::Drop(why) => {
            report.refused = Some(why.clone());
            (Outcome::Drop(why), None, None)
        }
        Pass::Refuse(refusal) => {
            report.refused = refusal.why();
            let answer = refusal
                .answer(keys.identity.map(|i| &i.cert), &keys.host())?
                .with_to_tag(routing::local_tag(&branch_key, msg));
            let outcome = match respond(msg, &answer, ctx)? {
                Some(response) => {
                    report.answered = Some(answer.status.code());
                    Outcome::Respond(response)
                }
                // An ACK is never answered (RFC 3261 §17.2.1): it goes no further.
                None => Outcome::Drop(format!("{} ({refusal})", answer.status)),
            };
            (outcome, None, None)
        }
    };
    if cek.is_some() && msg.method() == Some("ACK") {
        // H1: an ACK belongs to the INVITE's transaction; the dialog's key
        // came with the INVITE or its 2xx.
        report.notes.push(
            "an ACK starts nothing: the key of its envelope is not stored as a session".into(),
        );
    }
    // The pinholes first: a change the firewall does not confirm stops
    // the message before anything of it (the session key too) is kept.
    let pinholes = match (state.pinholes, &outcome) {
        // What passes on is what the pinholes follow. A request this relay
        // refused never reaches the far end: it changes no call's pinholes.
        (Some(store), Outcome::Forward(out)) => {
            let call_id = out.call_id().map_err(RelayError::NoCallId)?;
            // S1: only an authenticated SDP opens pinholes.
            let trusted = trust.as_ref().is_some_and(|t| t.sdp.is_ok());
            if report.sdp.is_some() {
                report.notes.push(match trust.as_ref().map(|t| &t.sdp) {
                    Some(Ok(how)) => format!("pinholes from the SDP: {how}"),
                    Some(Err(why)) => format!(
                        "no pinholes from this SDP: it is not authenticated ({why}; no bound source or session key either)"
                    ),
                    None => "no pinholes from this SDP".to_owned(),
                });
            }
            let mut seen = Seen::of(out, report.sdp.as_deref().filter(|_| trusted));
            seen.source = opts
                .path
                .flow
                .clone()
                .or_else(|| opts.path.received_from.clone());
            seen.party_signed = trust.as_ref().is_some_and(|t| t.party_signed);
            seen.limits = opts.pinholes.clone();
            seen.now = Some(ctx.now().unix_timestamp());
            // The firewall confirms what changes before it is kept, and
            // before the message goes on; when it does not, the message
            // is answered 500 (a response is dropped: its sender sends it
            // again) and nothing of this step is kept.
            let changes = store.step_applied(&keys.name(), call_id, &seen, &mut |c| {
                crate::firewall::confirm(state.firewall, c)
            })?;
            report.notes.extend(changes.notes.iter().cloned());
            Some(changes)
        }
        (Some(_), Outcome::Respond(_) | Outcome::Drop(_)) => {
            Some(Changes::none(msg.call_id().unwrap_or_default()))
        }
        (None, _) => None,
    };
    let session = match (&cek, msg.call_id()) {
        (Some(_), _) if msg.method() == Some("ACK") => None,
        (Some((cek, onward)), Ok(call_id)) => {
            let now = ctx.now();
            let owner = keys.name();
            // The party whose full envelope this is: the From party of a
            // request, the To party of a response.
            let sender = if msg.is_request() { "From" } else { "To" };
            let peer = msg.aor(sender).map(str::to_owned);
            let mut entry =
                Entry::new(call_id, cek, Role::Relay, peer.clone(), now, &opts.sessions);
            if let Some(onward) = onward {
                entry = entry.with_onward(onward);
            }
            // S6: anyone can seal to this relay's certificate; a sender no
            // one vouched for may fill only so much of its store.
            let vouched = trust
                .as_ref()
                .is_some_and(|t| t.sdp.is_ok() || t.party_signed);
            let cap = (!vouched).then_some(MAX_UNVOUCHED_SESSIONS);
            let recorded =
                state
                    .sessions
                    .record_capped(&owner, entry, now, opts.sessions.grace, cap)?;
            if recorded == Recorded::Capped {
                report.notes.push(format!(
                    "session key not stored: {} already holds {MAX_UNVOUCHED_SESSIONS} sessions at this relay, the most a sender no one vouched for may hold",
                    peer.as_deref().unwrap_or("this sender")
                ));
            }
            Some(Stored {
                owner,
                call_id: call_id.to_owned(),
                recorded,
            })
        }
        _ => None,
    };
    Ok(Step {
        outcome,
        report,
        session,
        pinholes,
    })
}

/// RFC 3261 / RFC 4475: a malformed request is answered (400, 501, 505),
/// a malformed response dropped; a request whose Proxy-Require names an
/// extension is answered 420 (this relay supports none).
fn well_formed(msg: &Message) -> Result<Option<Refusal>, RelayError> {
    let found = conformance::check(msg);
    if let Some(m) = found.first() {
        return match msg.is_request() {
            true => Ok(Some(Refusal::Malformed(m.clone()))),
            false => Err(RelayError::MalformedResponse(m.clone())),
        };
    }
    let required = conformance::proxy_require(msg);
    Ok((msg.is_request() && !required.is_empty()).then_some(Refusal::BadExtension(required)))
}

/// The stored key a session message is sealed under, if this relay has it.
fn session_keys(
    view: &View<'_>,
    owner: &str,
    policy: &Policy,
    store: &dyn SessionStore,
    now: OffsetDateTime,
) -> Result<Vec<SessionKey>, StoreError> {
    let Some(reference) = view
        .envelope
        .as_ref()
        .ok()
        .and_then(|e| e.session_reference())
    else {
        return Ok(Vec::new());
    };
    let call_id = view.msg.call_id().ok();
    Ok(store
        .lookup(owner, reference, call_id, now, policy.grace)?
        .into_iter()
        .collect())
}
