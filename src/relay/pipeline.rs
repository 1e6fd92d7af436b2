//! The relay pipeline (docs/SPEC.md §4), one for `proxy` and `reencrypt`, on a
//! message that passed admission and was parsed once into a [`View`]:
//! decide (designation, session key, trial; 496), open (inner signature),
//! read or edit, require a signature (495, 403), and emit: the new body
//! when there is one, routing, the relay's re-signature, Route-Security.
//! A refusal on the way is a value; the caller answers it.

use super::options::{Mode, ProxyOptions, RelayError, RelayKeys, RelayOptions};
use super::path;
use super::refusal::Refusal;
use super::report::{Decision, RelayReport};
use super::view::View;
use crate::context::Context;
use crate::envelope::{Cek, Envelope, EnvelopeKind, Opened, Recipient, RecipientKey};
use crate::mime::Entity;
use crate::sdp::{SdpEdit, apply_edits};
use crate::sealing::{reseal, restore, seal_message_with, seal_session};
use crate::session::SessionKey;
use crate::signing::{OuterSignature, sign_message, unwrap_inner};
use crate::sip::Message;
use crate::sip::disclosure::{Access, Designation, remove_designations};
use crate::sip::route_security::{self, EntryForm};
use crate::sip::routing::{self, OwnNames};

/// What passing the pipeline gives: the message to forward and the CEK of
/// the full envelope this relay opened (for its session store), or the
/// refusal to answer with.
pub(super) enum Pass {
    /// Forward this message.
    Forward {
        /// The message to send on.
        message: Message,
        /// The CEK of a full envelope this relay opened.
        cek: Option<Cek>,
        /// The fresh CEK it sealed that envelope again under for the next
        /// hop (`reencrypt`): the other side of the call's keys.
        onward: Option<Box<Cek>>,
        /// Whether its SDP may feed pinholes, and who signed it.
        trust: Box<Trust>,
    },
    /// Answer instead.
    Refuse(Refusal),
    /// Drop it, for this reason (a response cannot be answered).
    Drop(String),
}

/// How a message's SDP is authenticated (S1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Vouch {
    /// Its source is bound to the From AOR (the imposture check passed).
    BoundSource,
    /// Its From party signed it.
    FromSigned,
    /// It is sealed under the session key of the offer.
    SessionKey,
    /// Its To party signed it.
    ToSigned,
}

impl std::fmt::Display for Vouch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Vouch::BoundSource => "its source is bound to the From AOR (imposture check)",
            Vouch::FromSigned => "signed by its From party",
            Vouch::SessionKey => "sealed under the session key of the offer",
            Vouch::ToSigned => "signed by its To party",
        })
    }
}

/// What vouches for a message (S1, S2): whether its SDP is authenticated
/// (`Ok`: how; `Err`: why not) and whether a dialog party signed it.
pub(super) struct Trust {
    /// Why the SDP may, or may not, open pinholes.
    pub sdp: Result<Vouch, path::NotSigned>,
    /// A signature of the From or To party verified.
    pub party_signed: bool,
}

/// The body this relay opened, and what it holds.
struct Content {
    opened: Opened,
    /// Whether it opened with a stored session key.
    by_session: bool,
    /// That session key.
    session: Option<SessionKey>,
    /// The content as it came out of the envelope, as an entity when it is one.
    raw: Option<Entity>,
    /// The entity that was signed (the raw one when there is no inner signature).
    entity: Option<Entity>,
    /// What was signed, as bytes.
    plain: Vec<u8>,
    /// The inner signature's signer, when it verified.
    signer: Option<crate::keys::Cert>,
}

impl Content {
    /// The body inside: the entity's, or the plain content.
    fn body(&self) -> &[u8] {
        self.entity.as_ref().map_or(&self.plain, |e| &e.body)
    }
}

/// What the decision step says.
enum Plan {
    /// Nothing sealed here: route it.
    Forward,
    /// Answer instead.
    Refuse(Refusal),
    /// Open this envelope.
    Open(Envelope),
    /// Leave this envelope alone and route the message.
    Keep(Envelope),
}

/// What the relay step found before the pipeline runs.
pub(super) struct Before<'a> {
    /// The stored session keys the message may be sealed under.
    pub sessions: &'a [SessionKey],
    /// What this relay's Via branches are keyed with.
    pub branch_key: &'a [u8; 32],
    /// Route-Security: the entries to put on top.
    pub route: &'a path::RouteStep,
}

/// Run the pipeline on `view`, filling in `report`.
pub(super) fn run(
    view: View<'_>,
    report: &mut RelayReport,
    keys: &RelayKeys<'_>,
    before: Before<'_>,
    opts: &RelayOptions,
    ctx: &mut Context,
) -> Result<Pass, RelayError> {
    let Before {
        sessions,
        branch_key,
        route,
    } = before;
    report.outer_signer = view.outer_signer();
    let problem = view.outer_problem();
    let uris = keys.uris();
    let mine = view.naming(&uris);
    let msg = view.msg;
    let outer = view.outer?;
    let mut recipient_keys: Vec<RecipientKey<'_>> =
        sessions.iter().map(SessionKey::recipient_key).collect();
    recipient_keys.extend(keys.recipient_keys());
    let found = Found {
        keys: &recipient_keys,
        sessions,
    };
    let cbc = |e: &Envelope| e.kind == EnvelopeKind::EnvelopedData;
    let plan = match &opts.mode {
        Mode::Proxy(p) => {
            let env = match view.envelope {
                Ok(env) => Some(env),
                Err(e) if e.is_unsealed() => None,
                // A body a relay must read and cannot even parse is answered;
                // any other (a certs-only or signed body, a type this relay
                // does not know) is not its business: it goes on untouched.
                Err(e) if !mine.is_empty() && msg.is_request() => {
                    return Ok(Pass::Refuse(Refusal::BadBody(e.to_string())));
                }
                Err(e) => {
                    report.notes.push(format!(
                        "the body is not an envelope this relay reads ({e}): forwarded untouched"
                    ));
                    None
                }
            };
            if !opts.edits.is_empty() && env.is_none() {
                return Err(RelayError::EditRefused(
                    "the body is not sealed for this relay".into(),
                ));
            }
            match env {
                // Neither opened nor answered 496: as if not designated.
                Some(env) if cbc(&env) && !opts.allow_cbc => Plan::Keep(env),
                env => decide_proxy(msg, env, &mine, &found, p, report),
            }
        }
        Mode::Reencrypt(_) => {
            // Only a signature that verifies passes its designations on.
            if let Some(Err(e)) = &view.outer_signers {
                return Err(RelayError::Signature(format!("the outer signature: {e}")));
            }
            let env = view.envelope.map_err(RelayError::Open)?;
            if cbc(&env) && !opts.allow_cbc {
                Plan::Keep(env)
            } else {
                decide_reencrypt(msg, env, &mine, &found, report)?
            }
        }
    };
    let (env, content) = match plan {
        Plan::Refuse(refusal) => return Ok(Pass::Refuse(refusal)),
        Plan::Forward => (None, None),
        Plan::Keep(env) => {
            if cbc(&env) && !opts.allow_cbc {
                report.notes.push(
                    "EnvelopedData (CBC, no integrity): not opened without --allow-cbc, forwarded unchanged".into(),
                );
            }
            (Some(env), None)
        }
        Plan::Open(env) => match open(&env, &found, report, ctx) {
            Ok(content) => (Some(env), Some(content)),
            // A CBC body that does not open goes on unchanged: what is
            // sent must not tell a bad padding from a good one.
            Err(RelayError::Open(_)) if cbc(&env) => {
                report
                    .notes
                    .push("EnvelopedData (CBC) did not open: forwarded unchanged".into());
                (Some(env), None)
            }
            // A request this relay must read and cannot open gets the answer
            // of one with no RecipientInfo for it: the sender learns nothing
            // of why the decryption failed. A response goes on as it is.
            Err(RelayError::Open(e)) if matches!(opts.mode, Mode::Proxy(_)) => {
                if msg.is_request() {
                    report.notes.push(format!("the body did not open: {e}"));
                    return Ok(Pass::Refuse(Refusal::Undecipherable));
                }
                report
                    .notes
                    .push(format!("the body did not open ({e}): forwarded unchanged"));
                (Some(env), None)
            }
            Err(e) => return Err(e),
        },
    };
    // A sealed part of a multipart body is read where it stands: sealing
    // it again in place (an edit, reencrypt) is not done.
    if let (Some(cid), Some(_)) = (&view.part, &content)
        && (!opts.edits.is_empty() || matches!(opts.mode, Mode::Reencrypt(_)))
    {
        return Err(RelayError::EditRefused(format!(
            "the sealed body is one part (<{cid}>) of a multipart body: this relay reads it and forwards the message unchanged (proxy without edits), it does not seal a part again"
        )));
    }
    let edited = match &content {
        Some(c) => read(msg, c, &opts.edits, &opts.mode, report)?,
        None if !opts.edits.is_empty() => {
            return Err(RelayError::EditRefused(
                "this relay is not designated for the body, so it may not change it".into(),
            ));
        }
        None => None,
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
    let signed_somehow = report.signer.is_some() || view.opaque_signed;
    if let Some(refusal) =
        path::require_signature(msg, outer.is_some(), problem, signed_somehow, &opts.path)
    {
        return Ok(Pass::Refuse(refusal));
    }
    let mut signers: Vec<crate::keys::Cert> = content
        .as_ref()
        .and_then(|c| c.signer.clone())
        .into_iter()
        .collect();
    if let Some(Ok(outer)) = &view.outer_signers {
        signers.extend(outer.iter().map(|s| s.cert.clone()));
    }
    signers.extend(view.opaque_signer.clone());
    let trust = vouch(msg, &signers, report, opts, ctx.now());
    if let Err(why) = &trust.from
        && opts.path.require_signature
        && msg.is_request()
        && msg.method() != Some("ACK")
    {
        // Item 9: a signature, but not the From party's.
        return Ok(Pass::Refuse(Refusal::BadSignature(format!(
            "not signed by the From party: {why}"
        ))));
    }
    let trust = Box::new(trust.into_trust());

    let sent_by = keys.sent_by(opts.via.as_deref());

    // The message to route: as it came, or with its new body.
    let (sealed_again, onward) = match (&env, &content) {
        (Some(env), Some(c)) => new_body(msg, env, c, edited.as_ref(), keys, opts, report, ctx)?,
        _ => (None, None),
    };
    let resealed = sealed_again.is_some();
    let base = match (sealed_again, &opts.mode) {
        // An edit under an outer signature changes the part it signed.
        (Some(der_msg), Mode::Proxy(_)) => {
            let mut base = view.signed.unwrap_or_else(|| msg.clone());
            base.set_body(der_msg.body().to_vec());
            base
        }
        (Some(sealed), Mode::Reencrypt(_)) => sealed,
        (None, _) => msg.clone(),
    };
    let names = keys.names(opts);
    let emit = Emit {
        names: &names,
        record_route_as: &opts.record_route_as,
        outer: outer.as_ref(),
        resealed,
        route,
        form: opts.path.route_security_form,
        uris: &uris,
        sent_by: &sent_by,
        branch_key,
        mode: &opts.mode,
    };
    let out = emit.build(msg, base, keys, ctx)?;
    report.resigned = outer.is_some() && resealed;
    let cek = content.filter(|c| !c.by_session).map(|c| c.opened.cek);
    Ok(Pass::Forward {
        message: out,
        cek,
        onward,
        trust,
    })
}

/// How the message goes on.
struct Emit<'a> {
    /// The outer signature it came with.
    outer: Option<&'a OuterSignature>,
    /// Whether its body was sealed again.
    resealed: bool,
    /// The Route-Security entries to put on top, and where this relay's sits.
    route: &'a path::RouteStep,
    /// The form they are written in.
    form: EntryForm,
    /// This relay's URIs (its designations).
    uris: &'a [String],
    /// This relay's Via sent-by.
    sent_by: &'a str,
    /// What its Via branches are keyed with (RFC 3261 §16.11).
    branch_key: &'a [u8; 32],
    /// `proxy` or `reencrypt`.
    mode: &'a Mode,
    /// Every name this relay goes by (its Route entries come off).
    names: &'a OwnNames,
    /// Its Record-Route entries, bottom first (empty: its sent-by).
    record_route_as: &'a [String],
}

impl Emit<'_> {
    /// The message that goes on (docs/SPEC.md §4 step 5), from `base` (`msg`, or
    /// `msg` with its new body): a request with this relay's Via,
    /// Max-Forwards decremented, its own designation dropped where it may
    /// be, its loose route popped and a Record-Route when asked; a response
    /// without this relay's Via. A body sealed again under an outer
    /// signature is signed by this relay; Route-Security entries go on top
    /// last (they are not signed), this relay's Via keeping where its own sits.
    fn build(
        &self,
        msg: &Message,
        base: Message,
        keys: &RelayKeys<'_>,
        ctx: &mut Context,
    ) -> Result<Message, RelayError> {
        let mut out = if msg.is_request() {
            let mut out = routing::forward_request(&base, self.sent_by, self.branch_key)?;
            if let Some(at) = self.route.own_at {
                route_security::mark_via(&mut out, at);
            }
            let (drop_mine, record_route) = match self.mode {
                // Under an outer signature the designations are protected:
                // this relay's own entry stays, or the signature would not verify.
                Mode::Proxy(p) => (
                    !p.keep_designation && (self.outer.is_none() || self.resealed),
                    p.record_route,
                ),
                // The designations are already the new ones. A relay that
                // seals under a fresh CEK translates the call's later
                // session messages: it stays on the dialog's path.
                Mode::Reencrypt(r) => (false, !r.keep_cek),
            };
            if drop_mine {
                remove_designations(&mut out, |d| {
                    self.uris.iter().any(|u| u.eq_ignore_ascii_case(&d.uri))
                });
            }
            routing::pop_own_routes(&mut out, self.names);
            if record_route {
                let default = [format!("<sip:{};lr>", self.sent_by)];
                let entries = match self.record_route_as {
                    [] => &default[..],
                    given => given,
                };
                routing::record_route(&mut out, entries)?;
            }
            out
        } else {
            routing::forward_response(&base).ok_or(RelayError::NoVia)?
        };
        if let (Some(outer), true) = (self.outer, self.resealed) {
            // Carrying the UA-signed original's designations.
            let original = outer.original_designations();
            let identity = keys.identity.ok_or(RelayError::NoIdentity)?;
            out = sign_message(&out, identity, Default::default(), &original, ctx)?;
        }
        for entry in &self.route.put {
            route_security::put_on_top(&mut out, entry, self.form);
        }
        Ok(out)
    }
}

/// Who signed `msg` as its From and To party, and whether its SDP is
/// authenticated: an offer by a source bound to its From AOR (the
/// imposture check passed) or its From party's signature; an answer by
/// the session key derived from the offer or its To party's signature.
/// Sealing proves nothing: anyone can seal to a relay's certificate.
fn vouch(
    msg: &Message,
    signers: &[crate::keys::Cert],
    report: &RelayReport,
    opts: &RelayOptions,
    now: time::OffsetDateTime,
) -> Vouched {
    let from = path::party_signer(signers, msg.aor("From"), &opts.path, now);
    let to = path::party_signer(signers, msg.aor("To"), &opts.path, now);
    let sdp = if msg.is_request() {
        if opts.path.bindings.is_some()
            && opts.path.received_from.is_some()
            && path::checks_source(msg)
        {
            Ok(Vouch::BoundSource)
        } else {
            from.clone().map(|_| Vouch::FromSigned)
        }
    } else if report.decision == Decision::Session {
        Ok(Vouch::SessionKey)
    } else {
        to.clone().map(|_| Vouch::ToSigned)
    };
    Vouched { from, to, sdp }
}

/// What [`vouch`] found.
struct Vouched {
    from: Result<(), path::NotSigned>,
    to: Result<(), path::NotSigned>,
    sdp: Result<Vouch, path::NotSigned>,
}

impl Vouched {
    fn into_trust(self) -> Trust {
        Trust {
            party_signed: self.from.is_ok() || self.to.is_ok(),
            sdp: self.sdp,
        }
    }
}

/// The keys this relay opens with, the stored session keys first.
struct Found<'k, 'a> {
    keys: &'k [RecipientKey<'a>],
    /// The session keys, the first of `keys`.
    sessions: &'k [SessionKey],
}

/// `proxy` (docs/SPEC.md §4 step 3): open when a designation names this relay,
/// when the body is under a session key it stored, or on trial; 496 when it
/// must open and cannot; a response (the answer SDP) is read whenever it can be.
fn decide_proxy(
    msg: &Message,
    env: Option<Envelope>,
    mine: &[Designation],
    found: &Found<'_, '_>,
    opts: &ProxyOptions,
    report: &mut RelayReport,
) -> Plan {
    let Some(env) = env else {
        return Plan::Forward;
    };
    let key = env.find(found.keys);
    let addressed = key.is_some();
    let by_session = key.is_some_and(|(k, _)| k < found.sessions.len());
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
        return Plan::Refuse(Refusal::Undecipherable);
    }
    if must_open || (!msg.is_request() && addressed) {
        Plan::Open(env)
    } else {
        Plan::Keep(env)
    }
}

/// `reencrypt` (docs/SPEC.md §4 step 6): a designation with `access=modify`, or a
/// sender that sealed to this relay as its next hop without naming it
/// (trust hop by hop); `access=read` is refused.
fn decide_reencrypt(
    msg: &Message,
    env: Envelope,
    mine: &[Designation],
    found: &Found<'_, '_>,
    report: &mut RelayReport,
) -> Result<Plan, RelayError> {
    let key = env.find(found.keys);
    report.decision = if !mine.is_empty() {
        Decision::Designated
    } else if key.is_some_and(|(k, _)| k < found.sessions.len()) {
        Decision::Session
    } else {
        Decision::Addressed
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
    if key.is_none() && msg.is_request() {
        return Ok(Plan::Refuse(Refusal::Undecipherable));
    }
    Ok(Plan::Open(env))
}

/// Open `env` with this relay's keys, take an inner signature off, and
/// say so in the report.
fn open(
    env: &Envelope,
    found: &Found<'_, '_>,
    report: &mut RelayReport,
    ctx: &mut Context,
) -> Result<Content, RelayError> {
    let opened = env
        .open(found.keys, ctx.rng())
        .map_err(|e| RelayError::Open(e.into()))?;
    report.opened = true;
    report.opened_with = found.keys.get(opened.key_index).map(RecipientKey::describe);
    if let Some(note) = opened
        .backend
        .as_ref()
        .and_then(|b| b.note("the private-key operation"))
    {
        report.notes.push(note);
    }
    let raw = Entity::parse(&opened.content);
    let (entity, plain, signer) = match raw.as_ref().and_then(unwrap_inner) {
        None => (raw.clone(), opened.content.to_vec(), None),
        Some(Err(e)) => return Err(RelayError::Signature(format!("the inner signature: {e}"))),
        Some(Ok(inner)) => {
            report.signer = Some(inner.signer.cert.name());
            (
                Entity::parse(&inner.content),
                inner.content,
                Some(inner.signer.cert),
            )
        }
    };
    let session = found.sessions.get(opened.key_index).cloned();
    Ok(Content {
        by_session: session.is_some(),
        session,
        opened,
        raw,
        entity,
        plain,
        signer,
    })
}

/// The report learns what the content says; with edits (a media relay),
/// the edited entity, when this relay may change it.
fn read(
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

/// The body sealed again, when there is a new one: `reencrypt` seals the
/// (edited) content for the next hop; a `proxy` edit re-seals it for the
/// same recipients. The message carries the new body; with it, the fresh
/// CEK of a full envelope `reencrypt` sealed for the next hop.
///
/// A session message under a key this relay translates (it sealed the
/// call's full envelope again under a fresh CEK) is sealed under the
/// other side's session key: no public-key operation, and each side keeps
/// the key it derived (issue 14 item 7).
#[allow(clippy::too_many_arguments)]
fn new_body(
    msg: &Message,
    env: &Envelope,
    c: &Content,
    edited: Option<&Entity>,
    keys: &RelayKeys<'_>,
    opts: &RelayOptions,
    report: &mut RelayReport,
    ctx: &mut Context,
) -> Result<(Option<Message>, Option<Box<Cek>>), RelayError> {
    let counterpart = c.session.as_ref().and_then(|k| k.counterpart.as_deref());
    if let (Mode::Reencrypt(_), Some(other)) = (&opts.mode, counterpart) {
        let raw = edited.or(c.raw.as_ref());
        let plain = restore(msg.clone(), raw, &c.opened.content);
        let sealed = seal_session(&plain, other, ctx).map_err(RelayError::Seal)?;
        report.resealed_for = vec![format!(
            "session key {} (the other side of this call)",
            hex::encode(&other.reference)
        )];
        report.cek = Some("translated");
        return Ok((Some(sealed.message), None));
    }
    match (&opts.mode, edited) {
        (Mode::Reencrypt(r), edited) => {
            let raw = edited.or(c.raw.as_ref());
            let plain = restore(msg.clone(), raw, &c.opened.content);
            let mut spec = r.spec.clone();
            let kept = r.keep_cek.then(|| {
                spec.options.cipher = env.params.cipher;
                &c.opened.cek
            });
            let sealed = seal_message_with(&plain, &spec, kept, ctx).map_err(RelayError::Seal)?;
            report.resealed_for = spec
                .peers
                .iter()
                .chain(&spec.disclose)
                .map(Recipient::describe)
                .collect();
            report.cek = Some(if r.keep_cek { "kept" } else { "fresh" });
            // A session message sealed as a full envelope starts no new
            // pair of keys: only a full envelope this relay opened does.
            let onward = (!r.keep_cek && !c.by_session).then(|| Box::new(sealed.cek));
            Ok((Some(sealed.message), onward))
        }
        (Mode::Proxy(_), Some(edited)) => {
            let mut certs: Vec<_> = keys.certs.iter().collect();
            certs.extend(keys.identity.map(|i| &i.cert));
            let (der, names) = reseal(env, &edited.to_bytes(), &certs, keys.psks, ctx.rng())
                .map_err(RelayError::Reseal)?;
            report.resealed_for = names;
            report.cek = Some("fresh");
            let mut out = msg.clone();
            out.set_body(der);
            Ok((Some(out), None))
        }
        (Mode::Proxy(_), None) => {
            if counterpart.is_some() {
                report.notes.push(
                    "sealed under a session key this relay translates (it sealed the call's full envelope again under a fresh CEK): forwarded as it is, the other side cannot open it; `reencrypt` carries it across".into(),
                );
            }
            Ok((None, None))
        }
    }
}
