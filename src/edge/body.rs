//! The edge's bodies (docs/SPEC.md §7.2, docs/guide/11-edge.md): every
//! SDP a phone sends is sealed for the peer and the relays the policy
//! names ([`Sealer::outgoing`]), every sealed body addressed to the user
//! is opened and handed to the phone as plain SDP with a `Warning` saying
//! what was found ([`Sealer::incoming`]). The peer's certificate comes
//! from the registrar by certificate query ([`CertQuery`], cached per AOR
//! and asked about again after [`RECHECK`], so a withdrawn one is
//! dropped); later messages of a dialog go under its session key, kept in
//! the session store, so an edge restarted keeps its calls.
//!
//! What is decided is a value ([`Toward`]): the message to send on, or
//! the answer to give its sender instead. Key operations run off the
//! async threads ([`crate::blocking::offload`]).

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use time::OffsetDateTime;

use super::policy::{Admit, Destination, DisclosurePolicy, PolicyError, Unsealable};
use crate::context::Context;
use crate::envelope::signed::SignatureScheme;
use crate::envelope::{Recipient, RecipientKey, SealOptions};
use crate::error::ErrorClass;
use crate::keys::identity::CertKeyKind;
use crate::keys::{Cert, Identity};
use crate::registrar::certcache::{CertCache, CertQuery, QueryError};
use crate::sealing::{SealSpec, SealedInput};
use crate::session::Limits;
use crate::sip::answer::{Answer, quoted};
use crate::sip::disclosure::PROXY_INSPECT_BODY;
use crate::sip::headers::parse_content_type;
use crate::sip::route_security;
use crate::sip::{Message, Status, respond};
use crate::state::SessionStore;
use crate::ua::{InDialog, InnerCheck, Opened, Ua, UaError};
use crate::verify::VerifyOptions;

/// How often a cached peer certificate is asked about again before use:
/// a certificate the registrar withdrew (the peer unregistered) is then
/// dropped within this time.
pub const RECHECK: Duration = Duration::from_secs(60);

/// Calls remembered as going plain (a peer without a certificate, policy
/// `plain`), at most; the oldest is forgotten first (it is then looked
/// up again, and goes plain again).
pub const MAX_PLAIN_CALLS: usize = 4096;

/// How the sealer is set up (from the command line).
pub struct SealerConfig {
    /// `--disclosure POLICY.yaml`.
    pub policy: PathBuf,
    /// `--cert-query tcp:HOST:PORT`: where peers' certificates are asked.
    pub cert_query: Option<crate::net::Target>,
    /// `--registrar-trust`: anchors of the registrar's signature and of
    /// the certificates it gives.
    pub registrar_trust: Vec<Cert>,
    /// `--trust`: anchors for peers' inner signatures.
    pub trust: Vec<Cert>,
    /// The session store (session keys).
    pub store: Arc<dyn SessionStore + Send + Sync>,
    /// Key limits (uses, age, grace).
    pub limits: Limits,
    /// The agent the Warnings name (the edge's host name).
    pub agent: String,
}

/// What to do with a message after the sealer saw it.
#[derive(Debug)]
pub enum Toward {
    /// Send it on (its body sealed or opened, a Warning added).
    Send(Message),
    /// Do not send it: answer its sender with this response instead
    /// (only for requests).
    Answer(Message),
}

/// Why a sealer cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The disclosure policy cannot be used.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// `--cert-query` is not a TCP target.
    #[error(
        "--cert-query {0}: certificate queries go over TCP (an answer with its chain is too large for UDP)"
    )]
    CertQueryTransport(String),
    /// An identity cannot do what the policy asks of it.
    #[error("{aor}: {why}")]
    Identity {
        /// The identity's AOR.
        aor: String,
        /// What it cannot do, and what to do.
        why: String,
    },
}

impl EdgeError {
    /// Each is configuration (exit 2).
    pub fn class(&self) -> ErrorClass {
        match self {
            EdgeError::Policy(e) => e.class(),
            EdgeError::CertQueryTransport(_) | EdgeError::Identity { .. } => ErrorClass::Config,
        }
    }
}

/// Seals what a phone sends, opens what it is sent.
pub struct Sealer {
    path: PathBuf,
    policy: RwLock<Arc<DisclosurePolicy>>,
    query: Option<CertQuery>,
    /// Certificates of peers whose inner signature verified (chaining to
    /// `trust`, naming the sender): what a key update in their dialog is
    /// sealed for when the registrar has none for them.
    signers: CertCache,
    trust: Vec<Cert>,
    store: Arc<dyn SessionStore + Send + Sync>,
    limits: Limits,
    agent: String,
    plain: Mutex<PlainCalls>,
}

/// Calls that go plain, by (user, Call-ID), oldest first.
#[derive(Default)]
struct PlainCalls {
    set: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

impl PlainCalls {
    fn insert(&mut self, key: (String, String)) {
        if self.set.contains(&key) {
            return;
        }
        if self.order.len() >= MAX_PLAIN_CALLS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(key.clone());
        self.order.push_back(key);
    }
}

/// The AOR of an identity (its certificate's SAN URI), else its subject.
fn aor_of(user: &Identity) -> String {
    user.uri()
        .map(str::to_owned)
        .unwrap_or_else(|| user.cert.name())
}

/// Whether the identity can sign inside (RSA today).
fn signs(user: &Identity) -> bool {
    matches!(user.cert.recipient_kind(), Ok(CertKeyKind::Rsa))
}

/// The body's media type, lower case, when it has a body.
fn body_type(msg: &Message) -> Option<String> {
    if msg.body().is_empty() {
        return None;
    }
    let ct = msg.header("Content-Type")?;
    parse_content_type(ct)
        .ok()
        .map(|c| c.mime.to_ascii_lowercase())
}

/// The peer of a message: the To AOR of a request, the From AOR of a
/// response.
fn peer_of(msg: &Message) -> String {
    msg.aor(msg.receiver_header())
        .unwrap_or_default()
        .to_owned()
}

impl Sealer {
    /// A sealer: the policy read and checked.
    pub fn new(config: SealerConfig) -> Result<Sealer, EdgeError> {
        let policy = DisclosurePolicy::load(&config.policy)?;
        let query = match config.cert_query {
            Some(target) => {
                if target.transport != crate::net::Transport::Tcp {
                    return Err(EdgeError::CertQueryTransport(target.addr.to_string()));
                }
                Some(CertQuery::new(target, config.registrar_trust).with_recheck(RECHECK))
            }
            None => None,
        };
        Ok(Sealer {
            path: config.policy,
            policy: RwLock::new(Arc::new(policy)),
            query,
            signers: CertCache::new(),
            trust: config.trust,
            store: config.store,
            limits: config.limits,
            agent: config.agent,
            plain: Mutex::new(PlainCalls::default()),
        })
    }

    /// Read the policy again (SIGHUP); a policy that does not load is
    /// refused and the one in use kept.
    pub fn reload(&self) -> Result<(), EdgeError> {
        let policy = DisclosurePolicy::load(&self.path)?;
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        Ok(())
    }

    /// The policy in use.
    pub fn policy(&self) -> Arc<DisclosurePolicy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether `user` can do what the policy asks of it: a destination
    /// with `access: read` has the content signed inside, which an EC
    /// (or ML-KEM) identity cannot do today. The daemon checks each
    /// identity at start.
    pub fn check_identity(&self, user: &Identity) -> Result<(), EdgeError> {
        if self.policy().signs_inside() && !signs(user) {
            return Err(EdgeError::Identity {
                aor: aor_of(user),
                why: "the disclosure policy has `access: read`, which signs the SDP inside, and only an RSA identity can sign inside: give an RSA identity, or `access: modify`".into(),
            });
        }
        Ok(())
    }

    fn ua(&self) -> Ua<'_> {
        Ua {
            store: &*self.store,
            limits: self.limits,
        }
    }

    /// `Warning: 399 AGENT "text"`'s value.
    fn warning(&self, text: &str) -> String {
        format!("399 {} {}", self.agent, quoted(text))
    }

    /// The answer `status` + Warning to the request `msg`.
    fn refuse(&self, msg: &Message, status: Status, text: &str) -> Toward {
        let answer = Answer::new(status).with_warning(&self.agent, text);
        let mut ctx = Context::new(None, None);
        match respond(msg, &answer, &mut ctx) {
            Ok(Some(r)) => {
                tracing::info!(event = "edge refused", status = status.code(), why = %text);
                Toward::Answer(r)
            }
            // An ACK or a response cannot be answered: it goes on without
            // its body (nothing in the clear), the Warning saying why.
            _ => {
                tracing::warn!(event = "edge removed a body", why = %text);
                let mut out = msg.clone();
                out.remove_headers(PROXY_INSPECT_BODY);
                out.replace_body(&[], Vec::new());
                out.push_header("Warning", &self.warning(text));
                Toward::Send(out)
            }
        }
    }

    fn is_plain(&self, me: &str, call_id: &str) -> bool {
        let plain = self.plain.lock().unwrap_or_else(|p| p.into_inner());
        plain.set.contains(&(me.to_owned(), call_id.to_owned()))
    }

    fn go_plain(&self, me: &str, call_id: &str) {
        let mut plain = self.plain.lock().unwrap_or_else(|p| p.into_inner());
        plain.insert((me.to_owned(), call_id.to_owned()));
    }

    /// Phone → network. `user`: the identity the message is sent for.
    pub async fn outgoing(&self, msg: Message, user: Arc<Identity>) -> Toward {
        if body_type(&msg).as_deref() != Some("application/sdp") {
            return Toward::Send(msg);
        }
        let Ok(call_id) = msg.call_id().map(str::to_owned) else {
            return Toward::Send(msg);
        };
        let me = aor_of(&user);
        let peer = peer_of(&msg);
        let policy = self.policy();
        let dest = policy.destination(&peer).cloned();
        let has_session = crate::blocking::offload(|| {
            // One session read, not all of the user's (a store of one
            // file per call reads only that one).
            self.store
                .entry(&me, &call_id)
                .map(|e| e.is_some())
                .unwrap_or(false)
        });
        // Requests are signed inside under `access: read`; answers by an
        // RSA identity always (a relay that holds the session key could
        // otherwise rewrite the answer unseen, as for the terminal).
        let sign = match (&dest, msg.is_request()) {
            (_, false) => signs(&user),
            (Some(d), true) => d.access == crate::sip::disclosure::Access::Read,
            (None, true) => false,
        };
        if sign && !signs(&user) {
            return self.refuse(
                &msg,
                Status::ServerError,
                &format!(
                    "{me} cannot sign inside (an RSA identity can), which access: read needs: not sent"
                ),
            );
        }
        if has_session {
            let signer = sign.then_some(&*user);
            let sealed = crate::blocking::offload(|| {
                let mut ctx = Context::new(None, None);
                self.ua().seal_in_dialog_signed(&msg, &me, signer, &mut ctx)
            });
            match sealed {
                Ok(InDialog::Sealed(m)) => return self.sent(m.message, &me, "session key"),
                Ok(InDialog::RekeyDue(reason)) => {
                    tracing::info!(event = "rekey due", user = %me, call = %call_id, reason = ?reason);
                }
                Err(e) => {
                    return self.refuse(
                        &msg,
                        Status::ServerError,
                        &format!("the session key could not seal it: {e}"),
                    );
                }
            }
        } else if self.is_plain(&me, &call_id) {
            // A call that goes plain: the peer had no certificate and the
            // policy said `plain`, or its offer came plain and the policy
            // let it in.
            return Toward::Send(msg);
        }
        // A full envelope: a new offer (or an answer that is an offer, to
        // an INVITE without SDP), or a key update in the dialog.
        let Some(dest) = dest else {
            return self.refuse(
                &msg,
                Status::NotAcceptableHere,
                &format!(
                    "no destination of the disclosure policy matches {peer}: not sent (policy)"
                ),
            );
        };
        let cert = match self.peer_cert(&peer, &user, has_session).await {
            Ok(Some(cert)) => cert,
            Ok(None) => return self.unsealable(msg, &me, &call_id, &peer, &dest),
            Err(e) => {
                return self.refuse(
                    &msg,
                    Status::ServiceUnavailable,
                    &format!("the certificate of {peer} could not be had: {e}"),
                );
            }
        };
        let spec = SealSpec {
            peers: vec![Recipient::Cert(Box::new(cert))],
            disclose: dest
                .disclose
                .iter()
                .map(|r| Recipient::Cert(Box::new(r.cert.clone())))
                .collect(),
            designate: Vec::new(),
            access: dest.access,
            record: dest.record,
            options: SealOptions::default(),
            signer: sign.then(|| Arc::clone(&user)),
            scheme: SignatureScheme::Pkcs1v15,
            disclose_parts: Vec::new(),
        };
        let sealed = crate::blocking::offload(|| {
            let mut ctx = Context::new(None, None);
            // Recorded under the user's AOR (not the From as written).
            self.ua().rekey(&msg, &me, &spec, &mut ctx)
        });
        match sealed {
            Ok(s) => self.sent(s.sealed.message, &me, "full envelope"),
            Err(e) => self.refuse(
                &msg,
                Status::ServerError,
                &format!("the SDP could not be sealed: {e}"),
            ),
        }
    }

    fn sent(&self, msg: Message, me: &str, how: &str) -> Toward {
        tracing::info!(event = "sealed", user = %me, how = how);
        Toward::Send(msg)
    }

    /// The peer has no certificate: the destination's `unsealable`.
    fn unsealable(
        &self,
        msg: Message,
        me: &str,
        call_id: &str,
        peer: &str,
        dest: &Destination,
    ) -> Toward {
        match dest.unsealable {
            Unsealable::Refuse => self.refuse(
                &msg,
                Status::NotAcceptableHere,
                &format!("no certificate for {peer}: not sent (policy)"),
            ),
            Unsealable::Plain => {
                tracing::info!(event = "plain", user = %me, peer = %peer, call = %call_id);
                self.go_plain(me, call_id);
                Toward::Send(msg)
            }
        }
    }

    /// The certificate to seal for `peer`: the registrar's (by a query
    /// `user` signs); in a dialog, when the registrar has none, the one
    /// the peer signed with. `None`: there is none (404, or no
    /// `--cert-query` and no signer seen).
    async fn peer_cert(
        &self,
        peer: &str,
        user: &Arc<Identity>,
        in_dialog: bool,
    ) -> Result<Option<Cert>, QueryError> {
        let signer = || {
            in_dialog
                .then(|| self.signers.cached(peer, OffsetDateTime::now_utc()))
                .flatten()
        };
        let Some(query) = &self.query else {
            return Ok(signer());
        };
        match query.cert_for(peer, Arc::clone(user)).await {
            Ok(cert) => Ok(Some(cert)),
            Err(e) if e.is_not_found() => Ok(signer()),
            Err(e) => match signer() {
                Some(cert) => Ok(Some(cert)),
                None => Err(e),
            },
        }
    }

    /// Network → phone.
    pub async fn incoming(&self, msg: Message, user: Arc<Identity>) -> Toward {
        let Some(kind) = body_type(&msg) else {
            return Toward::Send(msg);
        };
        let me = aor_of(&user);
        let sealed = kind == "application/pkcs7-mime" || kind.starts_with("multipart/");
        if !sealed && kind != "application/sdp" {
            return Toward::Send(msg);
        }
        // The path first: a request over a link below the minimum costs
        // no private-key operation.
        let policy = self.policy();
        let min = policy.incoming.min_route_level;
        if msg.is_request()
            && min > 0
            && let Some(why) = self.route_refusal(&msg, min)
        {
            return self.refuse(&msg, Status::Forbidden, &why);
        }
        if !sealed {
            return self.unsealed(msg, &me);
        }
        let key = match user.private_key() {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(event = "edge key", user = %me, error = %e);
                return self.unopened(
                    msg,
                    Status::ServerError,
                    "sipseal: the edge cannot use the user's key",
                );
            }
        };
        // Under `unsigned: refuse`, the call's session before this
        // message: a key update in it must come from the call's peer, and
        // one refused leaves the call's key as it was.
        let before = match msg.call_id() {
            Ok(call_id) if msg.is_request() && policy.incoming.unsigned == Admit::Refuse => {
                crate::blocking::offload(|| self.store.entry(&me, call_id).ok().flatten())
            }
            _ => None,
        };
        let opened = crate::blocking::offload(|| self.open(&msg, &user, key, Some(&self.trust)));
        let (opened, signed) = match opened {
            Ok(o) => {
                let signed = match &o.inner {
                    Some(InnerCheck::Verified { signer }) => Signed::Verified(signer.clone()),
                    Some(InnerCheck::Verifies { signer }) => {
                        Signed::Unverified(signer.clone(), String::new())
                    }
                    None => Signed::No,
                };
                (o, signed)
            }
            // Multipart without a sealed part: plain.
            Err(UaError::Seal(e)) if e.is_unsealed() => return self.unsealed(msg, &me),
            Err(UaError::InnerSignature(e)) => {
                return self.unopened(
                    msg,
                    Status::Forbidden,
                    &format!("sipseal: sealed; the signature does not verify ({e})"),
                );
            }
            Err(UaError::InnerUntrusted { signer, failed }) => {
                if msg.is_request() && policy.incoming.unsigned == Admit::Refuse {
                    return self.refuse(
                        &msg,
                        Status::Forbidden,
                        &format!(
                            "sipseal: signed by {signer}, not verified ({}): refused (policy)",
                            failed.join("; ")
                        ),
                    );
                }
                // Taken as unverified: opened again without the checks.
                match crate::blocking::offload(|| self.open(&msg, &user, key, None)) {
                    Ok(o) => (o, Signed::Unverified(signer, failed.join("; "))),
                    Err(e) => return self.undecipherable(msg, &e),
                }
            }
            Err(e) => return self.undecipherable(msg, &e),
        };
        let Some(mut out) = opened.content.message.clone() else {
            return self.undecipherable(msg, &UaError::NoSession(String::new()));
        };
        if msg.is_request() && policy.incoming.unsigned == Admit::Refuse {
            // A key update in a sealed call (a full envelope where a
            // session was): only the call's peer may replace its key.
            let peer = before
                .as_ref()
                .filter(|_| !opened.by_session)
                .and_then(|b| b.peer.as_deref());
            let refused = match &signed {
                Signed::No => Some("sipseal: sealed; not signed: refused (policy)".to_owned()),
                Signed::Unverified(s, why) => Some(format!(
                    "sipseal: sealed; signed by {s}, not verified ({why}): refused (policy)"
                )),
                Signed::Verified(s)
                    if peer.is_some_and(|p| {
                        crate::sip::aor::aor_key(p) != crate::sip::aor::aor_key(s)
                    }) =>
                {
                    Some(format!(
                        "sipseal: sealed; a key update signed by {s}, not the call's peer: refused (policy)"
                    ))
                }
                Signed::Verified(_) => None,
            };
            if let Some(text) = refused {
                if let Some(stored) = &opened.stored {
                    match &before {
                        // The call goes on under the key it had.
                        Some(b) => self.restore(&stored.owner, b),
                        // No dialog comes of it: neither does its key.
                        None => {
                            let _ = self.store.forget(&stored.owner, &stored.call_id);
                        }
                    }
                }
                return self.refuse(&msg, Status::Forbidden, &text);
            }
        }
        // The signer's certificate, verified, is what a key update in
        // this dialog can be sealed for.
        if let Signed::Verified(signer) = &signed
            && let Some(Ok(inner)) = &opened.content.inner
        {
            self.signers
                .remember(signer, inner.signer.cert.clone(), OffsetDateTime::now_utc());
        }
        out.remove_headers(PROXY_INSPECT_BODY);
        let signature = match &signed {
            Signed::Verified(s) => format!("signed by {s} (verified)"),
            Signed::Unverified(s, why) if why.is_empty() => format!("signed by {s} (not verified)"),
            Signed::Unverified(s, why) => format!("signed by {s} (not verified: {why})"),
            Signed::No => "not signed".to_owned(),
        };
        let text = format!("sipseal: sealed; {signature}; {}", route_text(&msg));
        out.push_header("Warning", &self.warning(&text));
        tracing::info!(event = "opened", user = %me, by_session = opened.by_session, signature = %signature);
        Toward::Send(out)
    }

    /// Put `before` back as its call's session of `owner` (a refused key
    /// update replaced it when the body was opened).
    fn restore(&self, owner: &str, before: &crate::session::Entry) {
        let restored = crate::blocking::offload(|| {
            self.store.update(owner, &mut |s| match s
                .sessions
                .iter_mut()
                .find(|e| e.call_id == before.call_id)
            {
                Some(e) => *e = before.clone(),
                None => s.sessions.push(before.clone()),
            })
        });
        if let Err(e) = restored {
            tracing::warn!(event = "session not restored", user = %owner, call = %before.call_id, error = %e);
        }
    }

    /// Open `msg` with `user`'s key or a session key the user stored.
    fn open(
        &self,
        msg: &Message,
        user: &Identity,
        key: &crate::keys::PrivateKey,
        trust: Option<&[Cert]>,
    ) -> Result<Opened, UaError> {
        let keys = [RecipientKey::Cert {
            cert: &user.cert,
            key,
        }];
        let mut ctx = Context::new(None, None);
        self.ua()
            .open(SealedInput::Sip(msg.clone()), &keys, trust, &mut ctx)
    }

    /// Whether `me` holds a session key for the call: its SDP went
    /// sealed one way or the other (a store that cannot be read counts
    /// as sealed: a plain SDP is not let in on a doubt).
    fn sealed_call(&self, me: &str, call_id: &str) -> bool {
        crate::blocking::offload(|| !matches!(self.store.entry(me, call_id), Ok(None)))
    }

    /// A plain SDP from the network: a request refused or taken per
    /// `incoming.unsealed`, a response taken; with a Warning.
    fn unsealed(&self, mut msg: Message, me: &str) -> Toward {
        // A call whose SDP went sealed is not taken back to plain by the
        // network, whatever `unsealed:` says (that is for calls that come
        // in plain): a plain answer reaches the phone without its SDP, a
        // plain request in the call is refused 488.
        if let Ok(call_id) = msg.call_id()
            && self.sealed_call(me, call_id)
        {
            return self.unopened(
                msg,
                Status::NotAcceptableHere,
                "sipseal: not sealed in a sealed call: refused",
            );
        }
        let policy = self.policy();
        if msg.is_request() && policy.incoming.unsealed == Admit::Refuse {
            return self.refuse(
                &msg,
                Status::NotAcceptableHere,
                "sipseal: not sealed: refused (policy)",
            );
        }
        // Taken: the phone's answer, and the rest of the call, go plain.
        if msg.is_request()
            && let Ok(call_id) = msg.call_id()
        {
            self.go_plain(me, call_id);
        }
        let text = format!("sipseal: not sealed; {}", route_text(&msg));
        msg.push_header("Warning", &self.warning(&text));
        Toward::Send(msg)
    }

    /// A body that does not open: a request refused 493, a response
    /// delivered without it. Why a key transport failed is not told.
    fn undecipherable(&self, msg: Message, e: &UaError) -> Toward {
        tracing::info!(event = "undecipherable", error = %e);
        self.unopened(
            msg,
            Status::Undecipherable,
            "sipseal: sealed; the body could not be opened",
        )
    }

    /// `msg` refused with `status` (a request), or (a response) handed on
    /// with its body removed and `text` saying so.
    fn unopened(&self, mut msg: Message, status: Status, text: &str) -> Toward {
        if msg.is_request() {
            return self.refuse(&msg, status, text);
        }
        msg.remove_headers(PROXY_INSPECT_BODY);
        msg.replace_body(&[], Vec::new());
        msg.push_header("Warning", &self.warning(&format!("{text}; removed")));
        Toward::Send(msg)
    }

    /// Why a request's path is below `min` (its weakest Route-Security
    /// link), if it is.
    fn route_refusal(&self, msg: &Message, min: u8) -> Option<String> {
        let opts = VerifyOptions {
            anchors: &self.trust,
            at: OffsetDateTime::now_utc(),
            min_route_level: Some(min),
            received_from: None,
            crls: None,
        };
        let report = crate::verify::verify_route(msg, &opts)?;
        report.checks.iter().find(|c| !c.ok).map(|c| {
            format!(
                "sipseal: route security {}: {}: refused (policy)",
                c.check, c.detail
            )
        })
    }
}

/// What the inner signature gave.
enum Signed {
    /// Verified: chains to `--trust`, names the sender.
    Verified(String),
    /// Signed, the signature good, the signer not verified (and why).
    Unverified(String, String),
    /// Not signed.
    No,
}

/// The route security of `msg` for the Warning: the weakest link's
/// level (a level-less entry counts as 0), or that there is none.
fn route_text(msg: &Message) -> String {
    let entries = route_security::entries(msg);
    if entries.is_empty() {
        return "no route security".to_owned();
    }
    if entries.iter().any(Result::is_err) {
        return "route security: an entry does not read".to_owned();
    }
    let weakest = entries
        .iter()
        .filter_map(|e| e.as_ref().ok())
        .map(|e| e.counts_as())
        .min()
        .unwrap_or(0);
    format!("route security level {weakest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon shares one sealer between tasks and spawns its work.
    #[test]
    fn the_sealer_and_its_futures_can_cross_threads() {
        fn shared<T: Send + Sync>() {}
        fn spawned<T: Send>(_: &T) {}
        shared::<Sealer>();
        let _ = |s: &Sealer, m: Message, u: Arc<Identity>| {
            spawned(&s.outgoing(m.clone(), Arc::clone(&u)));
            spawned(&s.incoming(m, u));
        };
    }

    #[test]
    fn plain_calls_are_bounded_oldest_first() {
        let mut p = PlainCalls::default();
        for i in 0..MAX_PLAIN_CALLS + 1 {
            p.insert(("u".into(), i.to_string()));
        }
        assert_eq!(p.set.len(), MAX_PLAIN_CALLS);
        assert!(!p.set.contains(&("u".into(), "0".into())));
        assert!(p.set.contains(&("u".into(), MAX_PLAIN_CALLS.to_string())));
    }

    #[test]
    fn the_route_text_names_the_weakest_link() {
        let m = Message::parse(
            b"INVITE sip:b@h SIP/2.0\r\nRoute-Security: a.example.com;level=3\r\nRoute-Security: b.example.com;level=2\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(route_text(&m), "route security level 2");
        let m = Message::parse(b"INVITE sip:b@h SIP/2.0\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(route_text(&m), "no route security");
    }
}
