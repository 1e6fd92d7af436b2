//! The relay pipeline (SPEC §4), one for `proxy` and `reencrypt`: the
//! message's [`View`] goes through admission (483, 403, 404), the decision
//! and trial (496), opening, edits, the required signature (495, 403), a
//! new body when there is one, routing, the relay's re-signature and
//! Route-Security; out come the message to send and the report.

use super::path;
use super::refusal::Refusal;
use super::report::{Decision, RelayReport};
use super::view::View;
use super::{Mode, Outcome, RelayError, RelayKeys, RelayOptions};
use crate::context::Context;
use crate::envelope::{Cek, Envelope, Opened, Recipient, RecipientKey};
use crate::mime::Entity;
use crate::sdp::{SdpEdit, apply_edits};
use crate::sealing::{reseal, restore, seal_message_with};
use crate::session::SessionKey;
use crate::signing::{OuterSignature, sign_message, unwrap_inner};
use crate::sip::Message;
use crate::sip::disclosure::{Access, Designation, remove_designations};
use crate::sip::routing::{self, sent_by_host};

/// What one pass gives: the message to send, the report, and the CEK of
/// the full envelope this relay opened (for its session store).
pub(super) struct Pass {
    pub outcome: Outcome,
    pub report: RelayReport,
    pub cek: Option<Cek>,
}

/// The body this relay opened, and what it holds.
struct Content {
    opened: Opened,
    /// Whether it opened with a stored session key.
    by_session: bool,
    /// The content as it came out of the envelope, as an entity when it is one.
    raw: Option<Entity>,
    /// The entity that was signed (the raw one when there is no inner signature).
    entity: Option<Entity>,
    /// What was signed, as bytes.
    plain: Vec<u8>,
}

impl Content {
    /// The body inside: the entity's, or the plain content.
    fn body(&self) -> &[u8] {
        self.entity.as_ref().map_or(&self.plain, |e| &e.body)
    }
}

/// Run the pipeline on `view`. `sessions` are the stored session keys the
/// message may be sealed under.
pub(super) fn run(
    view: View<'_>,
    keys: &RelayKeys<'_>,
    sessions: &[SessionKey],
    opts: &RelayOptions,
    ctx: &mut Context,
) -> Result<Pass, RelayError> {
    let msg = view.msg;
    let uris = keys.uris();
    let mut report = RelayReport::new(msg, &uris);
    let too_many = msg.is_request() && msg.max_forwards()? == Some(0);
    let refusal = match too_many {
        true => Some(Refusal::TooManyHops),
        false => path::admit(msg, &opts.path),
    };
    if let Some(refusal) = refusal {
        return refuse(msg, refusal, keys, report, ctx);
    }
    let outer = view.outer?;
    report.outer_signer = outer_signer(outer.as_ref());
    let mine = designations_naming(&view.designations, &uris);
    let mut recipient_keys: Vec<RecipientKey<'_>> =
        sessions.iter().map(SessionKey::recipient_key).collect();
    recipient_keys.extend(keys.recipient_keys());

    let decided = match &opts.mode {
        Mode::Proxy(p) => {
            let env = match view.envelope {
                Ok(env) => Some(env),
                Err(e) if e.is_unsealed() => None,
                Err(e) => return Err(RelayError::Open(e)),
            };
            if !opts.edits.is_empty() && env.is_none() {
                return Err(RelayError::EditRefused(
                    "the body is not sealed for this relay".into(),
                ));
            }
            decide_proxy(
                msg,
                env,
                &mine,
                &recipient_keys,
                sessions.len(),
                p,
                &mut report,
            )
        }
        Mode::Reencrypt(_) => {
            if let Some(outer) = &outer {
                // Only a signature that verifies passes its designations on.
                outer
                    .verify()
                    .map_err(|e| RelayError::Signature(format!("the outer signature: {e}")))?;
            }
            let env = view.envelope.map_err(RelayError::Open)?;
            decide_reencrypt(msg, env, &mine, &recipient_keys, &mut report)?
        }
    };
    let (env, open) = match decided {
        Decided::Forward => (None, false),
        Decided::Refuse(refusal) => return refuse(msg, refusal, keys, report, ctx),
        Decided::Open(env) => (Some(env), true),
        Decided::Keep(env) => (Some(env), false),
    };
    if env.is_none()
        && let Some(sdp) = &view.plain_sdp
    {
        // An unsealed SDP is readable by everyone on the path anyway.
        report.disclose(sdp);
        report
            .notes
            .push("the SDP is not sealed: every relay on the path reads it".into());
    }
    let content = match (&env, open) {
        (Some(env), true) => Some(open_body(
            env,
            &recipient_keys,
            sessions.len(),
            &mut report,
            ctx,
        )?),
        _ => None,
    };
    let edited = match &content {
        Some(c) => edit_content(msg, c, &opts.edits, &opts.mode, &mut report)?,
        None if !opts.edits.is_empty() => {
            return Err(RelayError::EditRefused(
                "this relay is not designated for the body, so it may not change it".into(),
            ));
        }
        None => None,
    };
    let signed = report.signer.is_some() || view.opaque_signed;
    if let Some(refusal) = path::require_signature(msg, outer.as_ref(), signed, &opts.path) {
        return refuse(msg, refusal, keys, report, ctx);
    }

    // The message to route: as it came, or with its new body.
    let (base, resealed) = match (&opts.mode, &env, &content, edited) {
        (Mode::Reencrypt(r), Some(env), Some(c), edited) => {
            let raw = edited.as_ref().or(c.raw.as_ref());
            let plain = restore(msg.clone(), raw, &c.opened.content);
            let mut spec = r.spec.clone();
            let kept = r.keep_cek.then(|| {
                spec.options.cipher = env.params.cipher;
                &c.opened.cek
            });
            ctx.mix("reencrypt", &msg.to_bytes());
            let sealed = seal_message_with(&plain, &spec, kept, ctx).map_err(RelayError::Seal)?;
            report.resealed_for = spec
                .peers
                .iter()
                .chain(&spec.disclose)
                .map(Recipient::describe)
                .collect();
            report.cek = Some(if r.keep_cek { "kept" } else { "fresh" });
            (sealed.message, true)
        }
        (_, Some(env), _, Some(edited)) => {
            let mut certs: Vec<_> = keys.certs.iter().collect();
            certs.push(&keys.identity.cert);
            let (der, names) = reseal(env, &edited.to_bytes(), &certs, keys.psks, ctx.rng())
                .map_err(RelayError::Reseal)?;
            report.resealed_for = names;
            report.cek = Some("fresh");
            // Under an outer signature the signed part is what changes.
            let mut base = view.signed.clone().unwrap_or_else(|| msg.clone());
            base.set_body(der);
            (base, true)
        }
        _ => (msg.clone(), false),
    };

    let sent_by = keys.sent_by(opts.via.as_deref());
    let mut out = if msg.is_request() {
        ctx.mix("relay", &msg.to_bytes());
        let token = ctx.token(8);
        let mut out = routing::forward_request(&base, &sent_by, &token)?;
        let (drop_mine, record_route) = match &opts.mode {
            // Under an outer signature the designations are protected:
            // this relay's own entry stays, or the signature would not verify.
            Mode::Proxy(p) => (
                !p.keep_designation && (outer.is_none() || resealed),
                p.record_route,
            ),
            // The designations are already the new ones.
            Mode::Reencrypt(_) => (false, false),
        };
        if drop_mine {
            remove_designations(&mut out, |d| {
                uris.iter().any(|u| u.eq_ignore_ascii_case(&d.uri))
            });
        }
        routing::pop_route(&mut out, &[sent_by_host(&sent_by), keys.host()]);
        if record_route {
            routing::record_route(&mut out, &sent_by)?;
        }
        out
    } else {
        path::route_response(msg, &sent_by, &opts.path, &mut report);
        routing::forward_response(&base).ok_or(RelayError::NoVia)?
    };
    if let (Some(outer), true) = (&outer, resealed) {
        out = resign(&out, outer, keys, ctx)?;
        report.resigned = true;
    }
    if msg.is_request() {
        path::route_request(msg, &mut out, &sent_by, &opts.path, &mut report);
    }
    let cek = content.filter(|c| !c.by_session).map(|c| c.opened.cek);
    Ok(Pass {
        outcome: Outcome::Forward(out),
        report,
        cek,
    })
}

/// What the decision step says.
enum Decided {
    /// Nothing sealed here: route it.
    Forward,
    /// Answer instead.
    Refuse(Refusal),
    /// Open this envelope.
    Open(Envelope),
    /// Leave this envelope alone and route the message.
    Keep(Envelope),
}

/// `proxy` (SPEC §4 step 3): open when a designation names this relay,
/// when the body is under a session key it stored, or on trial; 496 when it
/// must open and cannot; a response (the answer SDP) is read whenever it can be.
fn decide_proxy(
    msg: &Message,
    env: Option<Envelope>,
    mine: &[Designation],
    keys: &[RecipientKey<'_>],
    sessions: usize,
    opts: &super::ProxyOptions,
    report: &mut RelayReport,
) -> Decided {
    let Some(env) = env else {
        return Decided::Forward;
    };
    let found = env.find(keys);
    let addressed = found.is_some();
    let by_session = found.is_some_and(|(k, _)| k < sessions);
    report.decision = if !mine.is_empty() {
        Decision::Designated
    } else if by_session {
        Decision::Session
    } else if opts.trial && addressed {
        Decision::Trial
    } else {
        Decision::NotDesignated
    };
    if let Some(d) = mine.first() {
        report.designated(msg, d);
    }
    let must_open =
        report.decision != Decision::NotDesignated || (opts.require_disclosure && msg.is_request());
    if must_open && !addressed && msg.is_request() {
        return Decided::Refuse(Refusal::Undecipherable);
    }
    if must_open || (!msg.is_request() && addressed) {
        Decided::Open(env)
    } else {
        Decided::Keep(env)
    }
}

/// `reencrypt` (SPEC §4 step 6): a designation with `access=modify`, or a
/// sender that sealed to this relay as its next hop without naming it
/// (trust hop by hop); `access=read` is refused.
fn decide_reencrypt(
    msg: &Message,
    env: Envelope,
    mine: &[Designation],
    keys: &[RecipientKey<'_>],
    report: &mut RelayReport,
) -> Result<Decided, RelayError> {
    report.decision = if mine.is_empty() {
        Decision::Addressed
    } else {
        Decision::Designated
    };
    if let Some(d) = mine
        .iter()
        .find(|d| d.access == Access::Modify)
        .or(mine.first())
    {
        report.designated(msg, d);
        if d.access != Access::Modify {
            return Err(RelayError::EditRefused(
                "this relay was designated with access=read: it may read and forward the body, not re-seal it".into(),
            ));
        }
    }
    if env.find(keys).is_none() && msg.is_request() {
        return Ok(Decided::Refuse(Refusal::Undecipherable));
    }
    Ok(Decided::Open(env))
}

/// Open `env` with this relay's keys (no 496 here: `reencrypt` of a
/// response it cannot open is an error), take an inner signature off, and
/// say so in the report.
fn open_body(
    env: &Envelope,
    keys: &[RecipientKey<'_>],
    sessions: usize,
    report: &mut RelayReport,
    ctx: &mut Context,
) -> Result<Content, RelayError> {
    let opened = env
        .open(keys, ctx.rng())
        .map_err(|e| RelayError::Open(e.into()))?;
    report.opened = true;
    report.opened_with = keys.get(opened.key_index).map(RecipientKey::describe);
    let raw = Entity::parse(&opened.content);
    let (entity, plain) = match raw.as_ref().and_then(unwrap_inner) {
        None => (raw.clone(), opened.content.to_vec()),
        Some(Err(e)) => return Err(RelayError::Signature(format!("the inner signature: {e}"))),
        Some(Ok(inner)) => {
            report.signer = Some(inner.signer.cert.name());
            (Entity::parse(&inner.content), inner.content)
        }
    };
    Ok(Content {
        by_session: opened.key_index < sessions,
        opened,
        raw,
        entity,
        plain,
    })
}

/// The report learns what the content says; with edits (a media relay),
/// the edited entity, when this relay may change it.
fn edit_content(
    msg: &Message,
    c: &Content,
    edits: &[SdpEdit],
    mode: &Mode,
    report: &mut RelayReport,
) -> Result<Option<Entity>, RelayError> {
    if edits.is_empty() {
        report.disclose(c.body());
        return Ok(None);
    }
    if matches!(mode, Mode::Proxy(_))
        && (report.access != Some(Access::Modify) || !msg.is_request())
    {
        return Err(RelayError::EditRefused(
            "this relay was not designated with access=modify".into(),
        ));
    }
    if let Some(signer) = &report.signer {
        return Err(RelayError::EditRefused(format!(
            "the content carries an inner signature by {signer}: an edit would break it (the sender made it read-only)"
        )));
    }
    let text = std::str::from_utf8(c.body()).map_err(|_| RelayError::NotUtf8)?;
    let edited = apply_edits(text, edits).map_err(RelayError::Edit)?;
    let headers = match &c.entity {
        Some(e) => e.headers.clone(),
        None => vec![("Content-Type".into(), "application/sdp".into())],
    };
    report.edited = true;
    report.disclose(edited.as_bytes());
    Ok(Some(Entity {
        headers,
        body: edited.into_bytes(),
    }))
}

/// The designations naming one of `uris` (this relay).
fn designations_naming(all: &[Designation], uris: &[String]) -> Vec<Designation> {
    all.iter()
        .filter(|d| uris.iter().any(|u| u.eq_ignore_ascii_case(&d.uri)))
        .cloned()
        .collect()
}

/// Answer with `refusal` instead of forwarding.
fn refuse(
    msg: &Message,
    refusal: Refusal,
    keys: &RelayKeys<'_>,
    mut report: RelayReport,
    ctx: &mut Context,
) -> Result<Pass, RelayError> {
    report.answered = Some(refusal.sip_status());
    report.refused = refusal.why();
    let response = refusal.response(msg, keys, ctx)?;
    Ok(Pass {
        outcome: Outcome::Respond(response),
        report,
        cek: None,
    })
}

/// The signer of an outer signature whose certificate names one.
fn outer_signer(outer: Option<&OuterSignature>) -> Option<String> {
    let outer = outer?;
    match outer.verify() {
        Ok(signers) => signers.first().map(|s| s.cert.name()),
        Err(e) => Some(format!("(does not verify: {e})")),
    }
}

/// Sign `msg` as this relay, carrying the UA-signed original's designations.
fn resign(
    msg: &Message,
    outer: &OuterSignature,
    keys: &RelayKeys<'_>,
    ctx: &mut Context,
) -> Result<Message, RelayError> {
    let original = outer.original_designations();
    Ok(sign_message(
        msg,
        keys.identity,
        Default::default(),
        &original,
        ctx,
    )?)
}
