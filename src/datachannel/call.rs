//! The caller's side of a data channel, as a library function: what the
//! gateway's pseudo user agent runs per browser access ([`call`]). It
//! offers a channel in an INVITE sealed for the destination and the
//! relays it discloses to (and signed inside by the caller), sends it on
//! the caller's flow, opens the sealed 200, acknowledges it, and
//! connects the channel, accepting the terminal's certificate by the
//! fingerprint the 200 carried. The [`Call`] holds the TLS stream and
//! what ends the call ([`Call::bye`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::sdp::{ChannelSdp, ChannelSdpError};
use super::tls::{ChannelCert, ChannelError, ClientChannel, connect};
use crate::context::Context;
use crate::envelope::RecipientKey;
use crate::keys::{Cert, Identity, KeyError};
use crate::net::flow::{Flow, FlowError};
use crate::sealing::{SealSpec, SealedInput};
use crate::sip::Message;
use crate::sip::compose::{Body, ComposeError, RequestParams, build_request};
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
}

/// Ends a call: a BYE on the flow, in the dialog of its 200.
#[derive(Clone)]
pub struct Bye {
    flow: Arc<Flow>,
    ok: Message,
    me: String,
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
            contact: Some(me.clone()),
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
    up.map(|(channel, answer, answered_by, bye)| Call {
        channel,
        answer,
        call_id,
        answered_by,
        bye,
    })
}

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
) -> Result<(ClientChannel, ChannelSdp, Option<String>, Bye), CallError> {
    let ua = || Ua { store, limits };
    let me = me.to_owned();
    let mut tr = flow.request(&invite, spec.answer_timeout).await?;
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
    // Acknowledge before anything can fail, so the dialog is confirmed
    // and a BYE can end it.
    let ack = ua().reply(
        &ok,
        ReplyTo::Request(DialogRequest {
            method: "ACK".into(),
            ..Default::default()
        }),
        Some(&me),
        ctx,
    )?;
    flow.send(&flow.with_via(&ack.message)?).await?;
    let bye = Bye {
        flow: Arc::clone(flow),
        ok: ok.clone(),
        me: me.clone(),
    };
    match connected(spec, store, limits, &ok, offer, cert, ctx).await {
        Ok((channel, answer, answered_by)) => Ok((channel, answer, answered_by, bye)),
        Err(e) => {
            // The dialog is up: end it, or the terminal keeps its
            // listener until its setup timeout.
            let _ = bye.send(store, limits, Duration::from_secs(2), ctx).await;
            Err(e)
        }
    }
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
    let (answer, answered_by) = opened_answer(spec, store, limits, ok, offer, ctx)?;
    let channel = connect(answer.addr, cert, answer.fingerprint, spec.connect_timeout).await?;
    Ok((channel, answer, answered_by))
}

/// The 200 opened (the caller's key, or the session key its INVITE
/// started), and its answer checked against the offer; who signed it.
fn opened_answer(
    spec: &CallSpec,
    store: &(dyn SessionStore + Sync),
    limits: crate::session::Limits,
    ok: &Message,
    offer: &ChannelSdp,
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
    answer.check_answer(offer)?;
    let ip = answer.addr.ip();
    if !spec.channel_allow.is_empty() && !spec.channel_allow.iter().any(|n| n.contains(&ip)) {
        return Err(CallError::Sdp(ChannelSdpError::Mismatch(format!(
            "the answer's channel address {ip} is outside the networks the caller may connect to"
        ))));
    }
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
