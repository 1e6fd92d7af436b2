//! The caller's side of a data channel, as a library function: what the
//! gateway's pseudo user agent runs per browser access ([`call`]). It
//! offers a channel in an INVITE sealed for the destination and the
//! relays it discloses to (and signed inside by the caller), sends it on
//! the caller's flow, opens the sealed 200, acknowledges it, and
//! connects the channel, accepting the terminal's certificate by the
//! fingerprint the 200 carried. The [`Call`] holds the TLS stream and
//! what ends the call ([`Call::bye`]); [`Call::reinvite`] sends a
//! re-INVITE in it (a key update with `rekey`), and [`Dialogs`] answers
//! what the terminal sends in the call (its BYE), for whoever reads the
//! flow's requests, and tells the call it ended ([`Ended`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::sdp::{ChannelSdp, ChannelSdpError};
use super::tls::{ChannelCert, ChannelError, ClientChannel, connect};
use crate::context::Context;
use crate::envelope::RecipientKey;
use crate::keys::{Cert, Identity, KeyError};
use crate::net::flow::{Flow, FlowError};
use crate::sealing::{SealSpec, SealedInput};
use crate::sip::answer::{Answer, respond};
use crate::sip::compose::{Body, ComposeError, RequestParams, build_request};
use crate::sip::{Message, Status};
use crate::state::SessionStore;
use crate::ua::{DialogRequest, InnerCheck, ReplyTo, Ua, UaError};

/// What to call, as whom.
pub struct CallSpec {
    /// The caller's identity: it signs the INVITE's content and opens the 200.
    pub identity: Arc<Identity>,
    /// The destination's URI (Request-URI and To).
    pub to: String,
    /// Who the INVITE is sealed for: the destination's certificate as the
    /// peer, the relays to disclose to; its signer is set to `identity`.
    pub seal: SealSpec,
    /// Trust anchors the 200's inner signature, when it has one, must
    /// chain to (the terminal's identity).
    pub trust: Vec<Cert>,
    /// The address the offer names (informational: the caller connects).
    pub channel_ip: IpAddr,
    /// Where the answer may send the caller to connect: the channel's
    /// address must be inside one of these (empty: anywhere). A server
    /// that calls on others' behalf (the gateway) confines it to where
    /// its terminals are, so that no answer makes it connect elsewhere.
    pub channel_allow: Vec<ipnet::IpNet>,
    /// Whether the 200 must be signed inside by the destination (its
    /// certificate's SAN URI the 200's To AOR, chaining to `trust`). A
    /// relay the INVITE disclosed to holds the session key the answer is
    /// sealed under: only the destination's signature keeps it from
    /// rewriting the channel's address and fingerprint. The terminal signs
    /// when its identity is RSA (inner signatures are RSA only).
    pub require_signed_answer: bool,
    /// How long the answer may take.
    pub answer_timeout: Duration,
    /// How long the channel's connection and handshake may take.
    pub connect_timeout: Duration,
    /// The calls on the flow, which the terminal's requests in them (its
    /// BYE) are matched against: the one the reader of the flow's
    /// requests answers with ([`Dialogs::serve`]).
    pub dialogs: Dialogs,
}

/// The Contact of a user agent on a flow: its AOR's user at the flow's
/// own address, `ob` (RFC 5626 §5: requests in its dialogs come back
/// down this flow, which is where it can be reached).
pub fn contact_on(aor: &str, flow: &Flow) -> String {
    let user = crate::registrar::users::username_of(aor).unwrap_or("ua");
    let local: SocketAddr = flow.local();
    let host = match local.ip() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let t = flow.transport().token().to_ascii_lowercase();
    format!("<sip:{user}@{host}:{};transport={t};ob>", local.port())
}

/// A call's dialog as the caller knows it: its tags, and what tells the
/// call it ended.
struct Known {
    local_tag: String,
    remote_tag: String,
    ended: watch::Sender<bool>,
}

/// The calls a caller has up on a flow, by Call-ID: the requests the
/// terminal sends in them are answered here (RFC 3261 §12.2.2: a BYE of
/// the dialog, by its Call-ID and both tags, gets 200 and ends the call;
/// one that matches no dialog gets 481).
#[derive(Clone, Default)]
pub struct Dialogs(Arc<Mutex<HashMap<String, Known>>>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Dialogs {
    fn insert(&self, call_id: &str, local_tag: String, remote_tag: String) -> Ended {
        let (tx, rx) = watch::channel(false);
        lock(&self.0).insert(
            call_id.to_owned(),
            Known {
                local_tag,
                remote_tag,
                ended: tx,
            },
        );
        Ended(rx)
    }

    fn remove(&self, call_id: &str) {
        lock(&self.0).remove(call_id);
    }

    /// How many calls are up.
    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    /// Whether no call is up.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The response to a request that came down the flow (none to an
    /// ACK): a BYE of a known dialog ends the call (200), another 481;
    /// OPTIONS 200; a re-INVITE from the terminal 488 (the caller keeps
    /// the channel it has); anything else 405.
    pub fn answer(&self, request: &Message, ctx: &mut Context) -> Option<Message> {
        let status = match request.method() {
            Some("ACK") | None => return None,
            Some("BYE") => {
                let call_id = request.call_id().unwrap_or_default();
                let from = request.from_tag().ok().flatten();
                let to = request.to_tag().ok().flatten();
                let mut calls = lock(&self.0);
                let ours = calls.get(call_id).is_some_and(|k| {
                    from.as_deref() == Some(k.remote_tag.as_str())
                        && to.as_deref() == Some(k.local_tag.as_str())
                });
                match ours.then(|| calls.remove(call_id)).flatten() {
                    Some(known) => {
                        let _ = known.ended.send(true);
                        tracing::info!(event = "bye received", call_id = %call_id);
                        Status::Ok
                    }
                    None => Status::CallDoesNotExist,
                }
            }
            Some("OPTIONS") => Status::Ok,
            Some("INVITE") => Status::NotAcceptableHere,
            Some(_) => Status::MethodNotAllowed,
        };
        respond(request, &Answer::new(status), ctx).ok().flatten()
    }

    /// Answer the requests that come down `flow` (its receiver
    /// `incoming`) until it closes.
    pub async fn serve(self, flow: Weak<Flow>, mut incoming: mpsc::Receiver<Message>) {
        let mut ctx = Context::new(None, None);
        while let Some(req) = incoming.recv().await {
            let Some(flow) = flow.upgrade() else { break };
            if let Some(resp) = self.answer(&req, &mut ctx) {
                let _ = flow.send(&resp).await;
            }
        }
    }
}

/// Tells a call that the terminal ended it (its BYE came).
#[derive(Clone)]
pub struct Ended(watch::Receiver<bool>);

impl Ended {
    /// Wait until the terminal ended the call (never, if it does not).
    pub async fn wait(&mut self) {
        if self.0.wait_for(|ended| *ended).await.is_err() {
            // The call was ended from this side: nothing more comes.
            std::future::pending::<()>().await;
        }
    }

    /// Whether the terminal ended the call.
    pub fn is_ended(&self) -> bool {
        *self.0.borrow()
    }
}

/// Why a call did not come up.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The caller's identity has no AOR (SAN URI).
    #[error("the caller's certificate has no SIP URI to call from")]
    NoAor,
    /// Its key cannot be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The INVITE could not be built.
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// Sealing or opening failed.
    #[error(transparent)]
    Ua(#[from] UaError),
    /// The flow failed.
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// The destination (or a relay) answered with an error.
    #[error("the call was answered {code} {reason}{}", .warning.as_ref().map(|w| format!(" (Warning: {w})")).unwrap_or_default())]
    Refused {
        /// The status.
        code: u16,
        /// The reason phrase.
        reason: String,
        /// The Warning, when there is one.
        warning: Option<String>,
    },
    /// The 200 came without a sealed body.
    #[error("the 200 is not sealed: refusing an answer that anyone on the path could have written")]
    Unsealed,
    /// The 200's content is not signed by the destination, and the call
    /// asked for that.
    #[error(
        "the 200's content is not signed by the destination: a relay holding the session key could have written its channel address and fingerprint (give the terminal an RSA identity, which signs its answers)"
    )]
    UnsignedAnswer,
    /// The answer's SDP does not fit.
    #[error(transparent)]
    Sdp(#[from] ChannelSdpError),
    /// The call has ended.
    #[error("the call has ended (the terminal sent a BYE)")]
    Ended,
    /// The channel did not come up.
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

impl CallError {
    /// The SIP status when the far end refused.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A call that is up.
pub struct Call {
    /// The data channel.
    pub channel: ClientChannel,
    /// The terminal's answer.
    pub answer: ChannelSdp,
    /// Its Call-ID.
    pub call_id: String,
    /// Who signed the 200's content, when it was signed.
    pub answered_by: Option<String>,
    /// What ends it.
    pub bye: Bye,
    /// What tells that the terminal ended it.
    pub ended: Ended,
    offer: ChannelSdp,
    session: u64,
    version: u64,
}

/// Ends a call: a BYE on the flow, in the dialog of its 200.
#[derive(Clone)]
pub struct Bye {
    flow: Arc<Flow>,
    ok: Message,
    me: String,
    dialogs: Dialogs,
}

impl Bye {
    /// The same BYE, to go out on `flow` (the caller's flow was opened
    /// again after the one the call was set up on closed: the dialog's
    /// route set, not the connection, says where the BYE goes).
    pub fn on(self, flow: Arc<Flow>) -> Bye {
        Bye { flow, ..self }
    }

    /// The flow it goes out on.
    pub fn flow(&self) -> &Arc<Flow> {
        &self.flow
    }

    /// The caller's AOR (the owner of the call's session key) and the
    /// Call-ID.
    pub fn call(&self) -> (&str, &str) {
        (&self.me, self.ok.call_id().unwrap_or_default())
    }

    /// Send the BYE and wait for its final response (its status).
    pub async fn send(
        self,
        store: &(dyn SessionStore + Sync),
        limits: crate::session::Limits,
        wait: Duration,
        ctx: &mut Context,
    ) -> Result<u16, CallError> {
        let call_id = self.ok.call_id().unwrap_or_default().to_owned();
        self.dialogs.remove(&call_id);
        let bye = Ua { store, limits }.reply(
            &self.ok,
            ReplyTo::Request(DialogRequest {
                method: "BYE".into(),
                ..Default::default()
            }),
            Some(&self.me),
            ctx,
        )?;
        let mut tr = self.flow.request(&bye.message, wait).await?;
        Ok(tr.final_response().await?.status().unwrap_or_default())
    }
}

/// Call `spec.to` over `flow` as `spec.identity` (module documentation).
/// The session key is kept in `store` (the caller's AOR as owner).
pub async fn call(
    flow: &Arc<Flow>,
    spec: &CallSpec,
    store: &(dyn SessionStore + Sync),
    limits: crate::session::Limits,
    ctx: &mut Context,
) -> Result<Call, CallError> {
    let me = spec.identity.cert.uri().ok_or(CallError::NoAor)?;
    // A Ua borrows the store as a `dyn SessionStore`, which is not Sync:
    // made where it is used and never held across an await, so that the
    // future is Send (the gateway spawns one per access).
    let ua = || Ua { store, limits };
    let cert = ChannelCert::generate(&me, ctx)?;
    let offer = ChannelSdp::offer(spec.channel_ip, cert.fingerprint());
    let session = u64::from_be_bytes(ctx.bytes(8).try_into().unwrap_or_default()) >> 1;
    let invite = build_request(
        &RequestParams {
            method: "INVITE".into(),
            from: me.clone(),
            to: spec.to.clone(),
            contact: Some(contact_on(&me, flow)),
            body: Some(Body {
                content_type: "application/sdp".into(),
                bytes: offer.to_text(session).into_bytes(),
            }),
            ..Default::default()
        },
        ctx,
    )?;
    let mut seal = spec.seal.clone();
    seal.signer = Some(Arc::clone(&spec.identity));
    let sealed = crate::blocking::offload(|| ua().seal(&invite, &seal, ctx))?;
    let invite = sealed.sealed.message;
    let call_id = invite.call_id().unwrap_or_default().to_owned();
    let up = placed(flow, spec, store, limits, ctx, invite, &me, &offer, &cert).await;
    if up.is_err() {
        // No dialog outlives this: neither does its key (a caller that
        // keeps its store, as the gateway does, would grow by one key
        // per failed call).
        let _ = store.forget(&me, &call_id);
    }
    up.map(|(channel, answer, answered_by, bye, ended)| Call {
        channel,
        answer,
        call_id,
        answered_by,
        bye,
        ended,
        offer,
        session,
        version: 1,
    })
}

/// What [`placed`] gives: the channel, the answer, who signed it, the
/// BYE that ends the call and what tells that the terminal ended it.
type Placed = (ClientChannel, ChannelSdp, Option<String>, Bye, Ended);

/// The sealed INVITE sent, answered, acknowledged and its channel
/// connected.
#[allow(clippy::too_many_arguments)]
async fn placed(
    flow: &Arc<Flow>,
    spec: &CallSpec,
    store: &(dyn SessionStore + Sync),
    limits: crate::session::Limits,
    ctx: &mut Context,
    invite: Message,
    me: &str,
    offer: &ChannelSdp,
    cert: &ChannelCert,
) -> Result<Placed, CallError> {
    let ua = || Ua { store, limits };
    let me = me.to_owned();
    let call_id = invite.call_id().unwrap_or_default().to_owned();
    let ok = answered(flow, &invite, spec.answer_timeout).await?;
    // Acknowledge before anything can fail, so the dialog is confirmed
    // and a BYE can end it.
    let ack = ack_for(flow, &ua(), &ok, &me, ctx)?;
    flow.send(&ack).await?;
    let ended = spec.dialogs.insert(
        &call_id,
        ok.from_tag().ok().flatten().unwrap_or_default(),
        ok.to_tag().ok().flatten().unwrap_or_default(),
    );
    let bye = Bye {
        flow: Arc::clone(flow),
        ok: ok.clone(),
        me: me.clone(),
        dialogs: spec.dialogs.clone(),
    };
    match connected(spec, store, limits, &ok, offer, cert, ctx).await {
        Ok((channel, answer, answered_by)) => Ok((channel, answer, answered_by, bye, ended)),
        Err(e) => {
            // The dialog is up: end it, or the terminal keeps its
            // listener until its setup timeout.
            let _ = bye.send(store, limits, Duration::from_secs(2), ctx).await;
            Err(e)
        }
    }
}

/// The final response to `request` sent on `flow`: a 2xx, or the
/// refusal as [`CallError::Refused`].
async fn answered(flow: &Flow, request: &Message, wait: Duration) -> Result<Message, CallError> {
    let mut tr = flow.request(request, wait).await?;
    let ok = tr.final_response().await?;
    drop(tr);
    let code = ok.status().unwrap_or_default();
    if !(200..=299).contains(&code) {
        let reason = match ok.start_line() {
            crate::sip::StartLine::Response { reason, .. } => reason.clone(),
            _ => String::new(),
        };
        return Err(CallError::Refused {
            code,
            reason,
            warning: ok.header("Warning").map(str::to_owned),
        });
    }
    Ok(ok)
}

/// The ACK of the 2xx `ok`, in its dialog, for `flow` (built before the
/// await that sends it: a `Ua` is not held across one).
fn ack_for(
    flow: &Flow,
    ua: &Ua<'_>,
    ok: &Message,
    me: &str,
    ctx: &mut Context,
) -> Result<Message, CallError> {
    let ack = ua.reply(
        ok,
        ReplyTo::Request(DialogRequest {
            method: "ACK".into(),
            ..Default::default()
        }),
        Some(me),
        ctx,
    )?;
    Ok(flow.with_via(&ack.message)?)
}

/// The 200 opened, its answer checked, and the channel connected.
async fn connected(
    spec: &CallSpec,
    store: &(dyn SessionStore + Sync),
    limits: crate::session::Limits,
    ok: &Message,
    offer: &ChannelSdp,
    cert: &ChannelCert,
    ctx: &mut Context,
) -> Result<(ClientChannel, ChannelSdp, Option<String>), CallError> {
    let (answer, answered_by) = opened_answer(spec, store, limits, ok, ctx)?;
    answer.check_answer(offer)?;
    let ip = answer.addr.ip();
    if !spec.channel_allow.is_empty() && !spec.channel_allow.iter().any(|n| n.contains(&ip)) {
        return Err(CallError::Sdp(ChannelSdpError::Mismatch(format!(
            "the answer's channel address {ip} is outside the networks the caller may connect to"
        ))));
    }
    let channel = connect(answer.addr, cert, answer.fingerprint, spec.connect_timeout).await?;
    Ok((channel, answer, answered_by))
}

/// The 200 opened (the caller's key, or the session key its INVITE
/// started): its answer, and who signed it (required by
/// `require_signed_answer`).
fn opened_answer(
    spec: &CallSpec,
    store: &(dyn SessionStore + Sync),
    limits: crate::session::Limits,
    ok: &Message,
    ctx: &mut Context,
) -> Result<(ChannelSdp, Option<String>), CallError> {
    let key = spec.identity.private_key()?;
    let keys = [RecipientKey::Cert {
        cert: &spec.identity.cert,
        key,
    }];
    let opened = crate::blocking::offload(|| {
        Ua { store, limits }.open(SealedInput::Sip(ok.clone()), &keys, Some(&spec.trust), ctx)
    });
    let opened = match opened {
        Ok(o) => o,
        Err(UaError::Seal(e)) if e.is_unsealed() => return Err(CallError::Unsealed),
        Err(e) => return Err(e.into()),
    };
    let body = opened
        .content
        .message
        .as_ref()
        .map(|m| m.body().to_vec())
        .unwrap_or_default();
    let answer = ChannelSdp::parse(&body)?;
    let answered_by = match opened.inner {
        Some(InnerCheck::Verified { signer } | InnerCheck::Verifies { signer }) => Some(signer),
        None => None,
    };
    // Verified: the chain to `trust` and the signer's SAN URI = the 200's
    // To AOR, the destination (Ua::open refuses anything less).
    if spec.require_signed_answer && answered_by.is_none() {
        return Err(CallError::UnsignedAnswer);
    }
    Ok((answer, answered_by))
}

impl Call {
    /// A re-INVITE in the call (RFC 3261 §14.1): the same channel offered
    /// again (`a=connection:existing`, the o= version one higher), signed
    /// inside by the caller and sealed under the call's session key, or,
    /// with `rekey` (or when that key is used up), as a full envelope for
    /// `spec.seal`'s parties: a key update (docs/SPEC.md §3.2) whose new
    /// key the 200 is sealed under. The 200 is opened, its answer must be
    /// the channel that is up (and signed by the destination when
    /// `spec.require_signed_answer`), and acknowledged; the channel goes
    /// on. An error response is [`CallError::Refused`] (the call goes on:
    /// RFC 3261 §14.1, but for 481 and 408, after which a BYE is due).
    pub async fn reinvite(
        &mut self,
        spec: &CallSpec,
        store: &(dyn SessionStore + Sync),
        limits: crate::session::Limits,
        rekey: bool,
        ctx: &mut Context,
    ) -> Result<(), CallError> {
        if self.ended.is_ended() {
            return Err(CallError::Ended);
        }
        let ua = || Ua { store, limits };
        let me = self.bye.me.clone();
        let flow = Arc::clone(&self.bye.flow);
        let version = self.version + 1;
        let offer = self.offer.again();
        let request = ua().reply(
            &self.bye.ok,
            ReplyTo::Request(DialogRequest {
                method: "INVITE".into(),
                contact: Some(contact_on(&me, &flow)),
                body: Some(Body {
                    content_type: "application/sdp".into(),
                    bytes: offer.to_text_version(self.session, version).into_bytes(),
                }),
                ..Default::default()
            }),
            Some(&me),
            ctx,
        )?;
        let mut seal = spec.seal.clone();
        seal.signer = Some(Arc::clone(&spec.identity));
        let sealed = crate::blocking::offload(|| {
            let ua = ua();
            if !rekey {
                match ua.seal_in_dialog_signed(&request.message, &me, Some(&spec.identity), ctx)? {
                    crate::ua::InDialog::Sealed(m) => return Ok::<_, UaError>(*m),
                    crate::ua::InDialog::RekeyDue(_) => {}
                }
            }
            Ok(ua.rekey(&request.message, &me, &seal, ctx)?.sealed)
        })?;
        let ok = answered(&flow, &sealed.message, spec.answer_timeout).await?;
        let ack = ack_for(&flow, &ua(), &ok, &me, ctx)?;
        flow.send(&ack).await?;
        let (answer, answered_by) = opened_answer(spec, store, limits, &ok, ctx)?;
        answer.check_answer(&offer)?;
        if !answer.same_channel(&self.answer) {
            return Err(CallError::Sdp(ChannelSdpError::Mismatch(format!(
                "the re-INVITE's answer names another channel ({} {}), not the one up ({} {})",
                answer.addr,
                answer.fingerprint.to_sdp(),
                self.answer.addr,
                self.answer.fingerprint.to_sdp()
            ))));
        }
        self.version = version;
        self.answered_by = answered_by.or(self.answered_by.take());
        Ok(())
    }
}
