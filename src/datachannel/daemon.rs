//! The terminal daemon (`sipseal terminal`): the flow to the edge relay,
//! the registration kept fresh on it, and the requests that come down it
//! dispatched to the terminal workflow ([`super::terminal`]). One task
//! per call; a call's data channel is a listener of its own that takes
//! one connection with the caller's fingerprint and pumps it into the
//! local service. A call the terminal ends itself (its channel closed
//! by the service or the caller, `--idle`, no ACK, SIGTERM) gets a BYE
//! in its dialog; a re-INVITE of the caller's (the same channel, maybe a
//! key update) is answered in it. SIGTERM (the `shutdown` future) ends
//! every call, then removes the binding.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use super::sdp::ChannelSdp;
use super::terminal::{
    Accepted, Policy, RegisterError, Registration, answer, connect_service, pump,
};
use super::tls::{ChannelCert, accept};
use crate::context::Context;
use crate::keys::{Cert, Identity};
use crate::net::Target;
use crate::net::flow::{Flow, FlowLimits};
use crate::net::tls::TlsSetup;
use crate::session::Limits;
use crate::sip::answer::{Answer, respond};
use crate::sip::{Message, Status};
use crate::state::MemoryStore;
use crate::ua::{DialogRequest, ReplyTo, Ua};

/// The terminal's identity, replaced when a registration installs a new
/// certificate: each call takes the one current when it comes.
#[derive(Default)]
pub struct IdentitySlot(std::sync::RwLock<Option<Arc<Identity>>>);

impl IdentitySlot {
    /// A slot holding `identity` (none yet: the first registration
    /// enrols, [`TerminalConfig::enrol`]).
    pub fn new(identity: Option<Arc<Identity>>) -> IdentitySlot {
        IdentitySlot(std::sync::RwLock::new(identity))
    }

    /// The current identity.
    pub fn get(&self) -> Option<Arc<Identity>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, identity: Arc<Identity>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(identity);
    }
}

/// Certificate enrolment (issue 16's registration with a CSR): where the
/// terminal's key is and its certificate goes.
#[derive(Debug, Clone)]
pub struct Enrol {
    /// The identity's directory: `cert.pem` is installed there.
    pub dir: std::path::PathBuf,
    /// Its private key (unencrypted PEM).
    pub key: std::path::PathBuf,
}

/// How the terminal runs.
pub struct TerminalConfig {
    /// Its identity (the AOR is its certificate's SAN URI).
    pub identity: IdentitySlot,
    /// When set, a REGISTER carries a CSR whenever the identity has no
    /// certificate or its certificate ends within the registration
    /// interval, and the certificate of the 200 is installed and used.
    pub enrol: Option<Enrol>,
    /// The AOR it registers.
    pub aor: String,
    /// The edge relay (or registrar) its flow goes to.
    pub outbound: Target,
    /// Mutual TLS for the flow while the identity has no valid
    /// certificate (with it, the identity's own is presented).
    pub tls: Arc<TlsSetup>,
    /// The Digest password of the AOR.
    pub password: zeroize::Zeroizing<String>,
    /// The registration interval asked for.
    pub expires: u32,
    /// Who may call.
    pub policy: Policy,
    /// The local service each channel is pumped into.
    pub serve: SocketAddr,
    /// The address the answers name (default: the flow's own).
    pub channel_ip: Option<IpAddr>,
    /// A channel with nothing moving this long is closed.
    pub idle: Duration,
    /// How long the caller may take to connect to the channel.
    pub setup_timeout: Duration,
    /// Calls at once, at most (486 past it).
    pub max_calls: usize,
    /// Session key limits.
    pub limits: Limits,
    /// The flow's limits.
    pub flow: FlowLimits,
    /// How long a REGISTER may wait for its answer.
    pub timeout: Duration,
}

/// Why the terminal stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// The flow could not be opened.
    #[error(transparent)]
    Flow(#[from] crate::net::flow::FlowError),
    /// The registration failed.
    #[error(transparent)]
    Register(#[from] RegisterError),
}

/// A call in progress: what ends it, what its ACK wakes, the caller's
/// From tag, which its ACK and BYE must carry (the dialog, not the
/// Call-ID alone: RFC 3261 §12), and the dialog once answered.
#[derive(Clone, Default)]
struct CallHandle {
    stop: Arc<Notify>,
    acked: Arc<Notify>,
    from_tag: Option<String>,
    /// The caller's BYE ended it: no BYE goes back.
    by_peer: Arc<AtomicBool>,
    dialog: Arc<Mutex<Option<Dialog>>>,
}

/// A call's dialog as the terminal answered it (RFC 3261 §12.1.1).
struct Dialog {
    /// The INVITE with the 200's To (the terminal's tag): the terminal's
    /// requests in the dialog are built from it (the caller's Contact as
    /// the remote target, its Record-Route as the route set).
    invite: Message,
    /// The terminal's tag.
    local_tag: Option<String>,
    /// What the policy accepted (the caller, the offer, its signer).
    accepted: Accepted,
    /// The terminal's end of the channel, and the o= of its SDP.
    answer: ChannelSdp,
    session: u64,
    version: u64,
    /// The caller's last CSeq (RFC 3261 §12.2.2: lower is out of order).
    remote_cseq: u32,
    /// A re-INVITE is being answered.
    busy: bool,
}

impl CallHandle {
    /// The handle of the call `invite` starts.
    fn for_caller(invite: &Message) -> CallHandle {
        CallHandle {
            from_tag: invite.from_tag().ok().flatten(),
            ..CallHandle::default()
        }
    }

    /// Whether `request` (an ACK, BYE or re-INVITE) is of this call's
    /// dialog: the caller's From tag, and once answered the terminal's
    /// To tag.
    fn is_of(&self, request: &Message) -> bool {
        if self.from_tag.is_none() || request.from_tag().ok().flatten() != self.from_tag {
            return false;
        }
        match lock(&self.dialog).as_ref() {
            Some(d) => request.to_tag().ok().flatten() == d.local_tag,
            None => true,
        }
    }
}

/// How long the terminal's BYE waits for its final response (Timer F,
/// RFC 3261 §17.1.2.2).
const BYE_WAIT: Duration = Duration::from_secs(32);
/// How long SIGTERM waits for the calls' BYEs before the binding goes.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

type Calls = Arc<Mutex<HashMap<String, CallHandle>>>;

/// RFC 3261 §13.3.1.4: the 2xx goes again at T1, doubling up to T2,
/// until its ACK comes; none after 64 × T1 ends the call.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A terminal registered on its flow.
pub struct Terminal {
    config: Arc<TerminalConfig>,
    flow: Arc<Flow>,
    incoming: mpsc::Receiver<Message>,
    registration: Registration,
    granted: u32,
    store: Arc<MemoryStore>,
    calls: Calls,
    tasks: tokio::task::JoinSet<()>,
    ctx: Context,
}

impl Terminal {
    /// Open the flow and register: the terminal, ready to [`Terminal::run`].
    /// With [`TerminalConfig::enrol`] and no valid certificate yet, the
    /// REGISTER carries a CSR (the flow presenting `tls`'s bootstrap
    /// identity) and the certificate of its 200 becomes the identity.
    pub async fn start(
        config: TerminalConfig,
        mut ctx: Context,
    ) -> Result<Terminal, TerminalError> {
        let (flow, incoming) =
            Flow::connect(&config.outbound, Some(&config.tls), config.flow).await?;
        let contact = contact_for(&config.aor, &flow);
        let mut registration = Registration::new(
            &config.aor,
            &contact,
            config.password.clone(),
            config.expires,
        );
        let granted = register(&mut registration, &flow, &config, config.expires, &mut ctx).await?;
        if config.identity.get().is_none() {
            return Err(RegisterError::Enrol(
                "the terminal has no certificate and enrols none (give it one, or its key's directory)"
                    .into(),
            )
            .into());
        }
        Ok(Terminal {
            config: Arc::new(config),
            flow: Arc::new(flow),
            incoming,
            registration,
            granted,
            store: Arc::new(MemoryStore::new()),
            calls: Arc::default(),
            tasks: tokio::task::JoinSet::new(),
            ctx,
        })
    }

    /// The flow's local address.
    pub fn local(&self) -> SocketAddr {
        self.flow.local()
    }

    /// The interval the registrar granted.
    pub fn granted(&self) -> u32 {
        self.granted
    }

    /// Answer calls until `shutdown`; refresh the registration at half
    /// its interval; reopen the flow (and register again) when it closes.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut refresh = Box::pin(tokio::time::sleep(half(self.granted)));
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = &mut refresh => {
                    let expires = self.config.expires;
                    match register(&mut self.registration, &self.flow, &self.config, expires, &mut self.ctx).await {
                        Ok(g) => {
                            self.granted = g;
                            tracing::info!(event = "registered", aor = %self.config.aor, expires = g);
                        }
                        Err(e) => tracing::info!(event = "register failed", error = %e),
                    }
                    refresh = Box::pin(tokio::time::sleep(half(self.granted)));
                }
                msg = self.incoming.recv() => match msg {
                    Some(msg) => self.dispatch(msg).await,
                    None => {
                        tracing::info!(event = "flow closed", to = %self.config.outbound.addr);
                        if !self.reconnect(&mut shutdown).await {
                            break;
                        }
                        refresh = Box::pin(tokio::time::sleep(half(self.granted)));
                    }
                },
            }
        }
        // Every call ends with a BYE (each call's task sends it), for a
        // short while; then the binding goes: calls no longer come here.
        for call in lock(&self.calls).values() {
            call.stop.notify_one();
        }
        let tasks = &mut self.tasks;
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        let timeout = Duration::from_secs(2).min(self.config.timeout);
        let _ = self
            .registration
            .register(&self.flow, 0, timeout, &mut self.ctx)
            .await;
        tracing::info!(event = "stopped", aor = %self.config.aor);
    }

    /// Reopen the flow and register again, retrying every few seconds;
    /// false when `shutdown` came first.
    async fn reconnect(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        let mut wait = Duration::from_secs(1);
        loop {
            tokio::select! {
                () = shutdown.as_mut() => return false,
                () = tokio::time::sleep(wait) => {}
            }
            let tls = flow_tls(&self.config, self.ctx.now());
            let opened = Flow::connect(&self.config.outbound, Some(&tls), self.config.flow).await;
            if let Ok((flow, incoming)) = opened {
                self.registration.contact = contact_for(&self.config.aor, &flow);
                let expires = self.config.expires;
                match register(
                    &mut self.registration,
                    &flow,
                    &self.config,
                    expires,
                    &mut self.ctx,
                )
                .await
                {
                    Ok(g) => {
                        self.granted = g;
                        self.flow = Arc::new(flow);
                        self.incoming = incoming;
                        tracing::info!(event = "registered", aor = %self.config.aor, expires = g, local = %self.flow.local());
                        return true;
                    }
                    Err(e) => tracing::info!(event = "register failed", error = %e),
                }
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    async fn reply(&mut self, request: &Message, answer: Answer) {
        if let Ok(Some(response)) = respond(request, &answer, &mut self.ctx) {
            let _ = self.flow.send(&response).await;
        }
    }

    async fn dispatch(&mut self, msg: Message) {
        while self.tasks.try_join_next().is_some() {}
        let method = msg.method().unwrap_or_default().to_owned();
        let call_id = msg.call_id().unwrap_or_default().to_owned();
        match method.as_str() {
            "INVITE" => {
                let in_dialog = msg
                    .header("To")
                    .is_some_and(|t| t.to_ascii_lowercase().contains(";tag="));
                if in_dialog {
                    self.reinvite(msg).await;
                    return;
                }
                // The call takes its place in the table before it is
                // examined: an INVITE being examined counts against
                // --max-calls, and a second INVITE of a call in progress
                // (a replay, a merged copy) is not taken again.
                let seat = {
                    let mut calls = lock(&self.calls);
                    if calls.contains_key(&call_id) {
                        None
                    } else if calls.len() >= self.config.max_calls {
                        Some(None)
                    } else {
                        let handle = CallHandle::for_caller(&msg);
                        calls.insert(call_id.clone(), handle.clone());
                        Some(Some(handle))
                    }
                };
                let Some(seat) = seat else {
                    tracing::info!(event = "invite absorbed", call_id = %call_id, why = "a call in progress");
                    return;
                };
                self.reply(&msg, Answer::new(Status::Trying)).await;
                let Some(handle) = seat else {
                    tracing::info!(event = "refused", call_id = %call_id, status = 486u16, why = "at --max-calls");
                    let busy = Answer::new(Status::BusyHere).with_warning(
                        &self.config.policy.agent,
                        "at its limit of calls (--max-calls)",
                    );
                    self.reply(&msg, busy).await;
                    return;
                };
                let config = Arc::clone(&self.config);
                let flow = Arc::clone(&self.flow);
                let store = Arc::clone(&self.store);
                let calls = Arc::clone(&self.calls);
                let ctx = self.ctx.fork();
                self.tasks.spawn(async move {
                    invite(
                        config,
                        flow,
                        store,
                        Arc::clone(&calls),
                        msg,
                        ctx,
                        handle.clone(),
                    )
                    .await;
                    // Its place goes, unless a BYE took it already (and
                    // it is another call's now).
                    let mut calls = lock(&calls);
                    if calls
                        .get(&call_id)
                        .is_some_and(|h| Arc::ptr_eq(&h.stop, &handle.stop))
                    {
                        calls.remove(&call_id);
                    }
                });
            }
            "ACK" => {
                if let Some(call) = lock(&self.calls).get(&call_id).filter(|c| c.is_of(&msg)) {
                    call.acked.notify_one();
                }
                tracing::info!(event = "ack", call_id = %call_id);
            }
            "BYE" => {
                let call = {
                    let mut calls = lock(&self.calls);
                    match calls.get(&call_id) {
                        Some(c) if c.is_of(&msg) => calls.remove(&call_id),
                        _ => None,
                    }
                };
                let status = match call {
                    Some(call) => {
                        call.by_peer.store(true, Ordering::SeqCst);
                        call.stop.notify_one();
                        Status::Ok
                    }
                    None => Status::CallDoesNotExist,
                };
                tracing::info!(event = "bye", call_id = %call_id, status = status.code());
                self.reply(&msg, Answer::new(status)).await;
            }
            "OPTIONS" => self.reply(&msg, Answer::new(Status::Ok)).await,
            // The 200 goes at once: nothing is left to cancel.
            "CANCEL" => {
                self.reply(&msg, Answer::new(Status::CallDoesNotExist))
                    .await
            }
            _ => {
                self.reply(&msg, Answer::new(Status::MethodNotAllowed))
                    .await
            }
        }
    }
}

impl Terminal {
    /// A re-INVITE: matched to its call's dialog (481 otherwise), in
    /// order (500 with Retry-After while the call is not answered yet or
    /// another re-INVITE is being answered, RFC 3261 §14.2; 500 for a
    /// CSeq not above the caller's last, §12.2.2), then examined and
    /// answered by a task of its own.
    async fn reinvite(&mut self, msg: Message) {
        let call_id = msg.call_id().unwrap_or_default().to_owned();
        let agent = self.config.policy.agent.clone();
        let handle = lock(&self.calls)
            .get(&call_id)
            .filter(|c| c.is_of(&msg))
            .cloned();
        let Some(handle) = handle else {
            tracing::info!(event = "reinvite refused", call_id = %call_id, status = 481u16, why = "no call of this dialog");
            let a = Answer::new(Status::CallDoesNotExist)
                .with_warning(&agent, "no call of this dialog here");
            self.reply(&msg, a).await;
            return;
        };
        let cseq = msg.cseq().map(|c| c.seq).unwrap_or_default();
        let refusal = {
            let mut dialog = lock(&handle.dialog);
            match dialog.as_mut() {
                None => Some("the call is not answered yet"),
                Some(d) if d.busy => Some("a re-INVITE of the call is being answered"),
                Some(d) if cseq <= d.remote_cseq => Some("its CSeq is not above the caller's last"),
                Some(d) => {
                    d.busy = true;
                    d.remote_cseq = cseq;
                    None
                }
            }
        };
        if let Some(why) = refusal {
            tracing::info!(event = "reinvite refused", call_id = %call_id, status = 500u16, why = why);
            let a = Answer::new(Status::ServerError)
                .with_header("Retry-After", "1")
                .with_warning(&agent, why);
            self.reply(&msg, a).await;
            return;
        }
        self.reply(&msg, Answer::new(Status::Trying)).await;
        let config = Arc::clone(&self.config);
        let flow = Arc::clone(&self.flow);
        let store = Arc::clone(&self.store);
        let calls = Arc::clone(&self.calls);
        let ctx = self.ctx.fork();
        self.tasks
            .spawn(reinvite(config, flow, store, calls, msg, ctx, handle));
    }
}

/// Register (or refresh) for `expires` seconds over `flow`; with
/// enrolment, carrying a CSR when the certificate is due
/// ([`super::terminal::certificate_due`]) and installing the one the 200
/// returns as the identity (docs/SPEC.md §7.2).
async fn register(
    registration: &mut Registration,
    flow: &Flow,
    config: &TerminalConfig,
    expires: u32,
    ctx: &mut Context,
) -> Result<u32, RegisterError> {
    let current = config.identity.get();
    let margin = Duration::from_secs(u64::from(expires));
    let due = config.enrol.as_ref().filter(|_| {
        super::terminal::certificate_due(current.as_ref().map(|i| &i.cert), ctx.now(), margin)
    });
    let Some(enrol) = due else {
        return registration
            .register(flow, expires, config.timeout, ctx)
            .await;
    };
    let bad = |e: &dyn std::fmt::Display| RegisterError::Enrol(e.to_string());
    let key =
        crate::keys::identity::load_private_key_with(&enrol.key, None).map_err(|e| bad(&e))?;
    let csr = crate::registrar::enrol::csr_body(&key, &config.aor).map_err(|e| bad(&e))?;
    let (granted, ok) = registration
        .register_with(flow, expires, config.timeout, Some(&csr), ctx)
        .await?;
    let identity = super::terminal::install_issued(
        &ok,
        &key,
        &enrol.key,
        &enrol.dir,
        &config.policy.trust,
        ctx,
    )?;
    tracing::info!(event = "certificate installed", aor = %config.aor, subject = %identity.cert.name(), dir = %enrol.dir.display());
    config.identity.set(Arc::new(identity));
    Ok(granted)
}

/// The TLS the flow opens with: the identity's own certificate while it
/// is valid, else `config.tls` (the bootstrap identity).
fn flow_tls(config: &TerminalConfig, now: time::OffsetDateTime) -> Arc<TlsSetup> {
    let own = config
        .identity
        .get()
        .filter(|i| !super::terminal::certificate_due(Some(&i.cert), now, Duration::ZERO))
        .and_then(|i| TlsSetup::new(Some(&i), &config.policy.trust).ok());
    own.map(Arc::new).unwrap_or_else(|| Arc::clone(&config.tls))
}

fn half(granted: u32) -> Duration {
    Duration::from_secs(u64::from(granted.max(2)) / 2)
}

/// The Contact a terminal registers: its AOR's user at the flow's
/// address, `ob` (RFC 5626: reach me on this flow).
fn contact_for(aor: &str, flow: &Flow) -> String {
    super::call::contact_on(aor, flow)
}

/// One INVITE whose place in the call table is `handle`: examine,
/// answer, and run the channel until BYE, idle or shutdown. The caller
/// frees the place when it returns.
async fn invite(
    config: Arc<TerminalConfig>,
    flow: Arc<Flow>,
    store: Arc<MemoryStore>,
    calls: Calls,
    msg: Message,
    mut ctx: Context,
    handle: CallHandle,
) {
    let call_id = msg.call_id().unwrap_or_default().to_owned();
    // A Ua borrows a store that is not Sync: made where it is used,
    // never held across an await.
    let ua = || Ua {
        store: store.as_ref(),
        limits: config.limits,
    };
    let refuse = |answer: Answer, ctx: &mut Context| respond(&msg, &answer, ctx).ok().flatten();
    let Some(identity) = config.identity.get() else {
        if let Some(r) = refuse(Answer::new(Status::ServiceUnavailable), &mut ctx) {
            let _ = flow.send(&r).await;
        }
        return;
    };
    let examined = config.policy.examine(&ua(), &msg, &identity, &mut ctx);
    let accepted = match examined {
        Ok(a) => a,
        Err(refusal) => {
            tracing::info!(event = "refused", call_id = %call_id, status = refusal.answer.status.code(), why = %refusal.why);
            if let Some(r) = refuse(*refusal.answer, &mut ctx) {
                let _ = flow.send(&r).await;
            }
            return;
        }
    };
    let ip = config.channel_ip.unwrap_or_else(|| flow.local().ip());
    let listener = match TcpListener::bind(SocketAddr::new(ip, 0)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::info!(event = "refused", call_id = %call_id, status = 500u16, why = %e);
            if let Some(r) = refuse(Answer::new(Status::ServerError), &mut ctx) {
                let _ = flow.send(&r).await;
            }
            return;
        }
    };
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::new(ip, 0));
    let built = ChannelCert::generate(&config.aor, &mut ctx).map_err(|e| e.to_string());
    let session = u64::from_be_bytes(ctx.bytes(8).try_into().unwrap_or_default()) >> 1;
    let response = built.and_then(|cert| {
        let channel = ChannelSdp::answer(local, cert.fingerprint());
        answer(
            &ua(),
            &msg,
            &config.aor,
            channel.to_text(session),
            &accepted.signer,
            &identity,
            &mut ctx,
        )
        .map(|m| (m, cert, channel))
        .map_err(|e| e.to_string())
    });
    let (ok, cert, channel) = match response {
        Ok(x) => x,
        Err(why) => {
            tracing::info!(event = "refused", call_id = %call_id, status = 500u16, why = %why);
            if let Some(r) = refuse(Answer::new(Status::ServerError), &mut ctx) {
                let _ = flow.send(&r).await;
            }
            return;
        }
    };
    // The dialog, before the 200 goes: its ACK is matched by it.
    let mut dialog_invite = msg.clone();
    if let Some(to) = ok.header("To") {
        dialog_invite.set_header("To", to);
    }
    *lock(&handle.dialog) = Some(Dialog {
        invite: dialog_invite,
        local_tag: ok.to_tag().ok().flatten(),
        accepted: accepted.clone(),
        answer: channel,
        session,
        version: 1,
        remote_cseq: msg.cseq().map(|c| c.seq).unwrap_or_default(),
        busy: false,
    });
    let stop = Arc::clone(&handle.stop);
    let _ = flow.send(&ok).await;
    tokio::spawn(retransmit(
        Arc::clone(&flow),
        ok,
        handle.clone(),
        Arc::clone(&calls),
        call_id.clone(),
    ));
    tracing::info!(event = "answered", call_id = %call_id, caller = %accepted.caller, channel = %local);
    run_channel(&config, &call_id, listener, &cert, &accepted, &stop).await;
    if handle.by_peer.load(Ordering::SeqCst) {
        return;
    }
    // The terminal ends the call: the dialog's BYE (its place goes first,
    // so that a BYE of the caller's crossing it gets 481).
    {
        let mut calls = lock(&calls);
        if calls
            .get(&call_id)
            .is_some_and(|h| Arc::ptr_eq(&h.stop, &handle.stop))
        {
            calls.remove(&call_id);
        }
    }
    send_bye(&config, &flow, &store, &handle, &call_id, &mut ctx).await;
}

/// The channel of an answered call: the caller's connection on
/// `listener` (its certificate the offer's), pumped into the service
/// until either closes, `--idle`, or `stop` (a BYE, no ACK, shutdown).
async fn run_channel(
    config: &TerminalConfig,
    call_id: &str,
    listener: TcpListener,
    cert: &ChannelCert,
    accepted: &Accepted,
    stop: &Notify,
) {
    let stopped = stop.notified();
    tokio::pin!(stopped);
    let channel = tokio::select! {
        r = accept(&listener, cert, accepted.offer.fingerprint, config.setup_timeout) => r,
        () = &mut stopped => {
            tracing::info!(event = "channel closed", call_id = %call_id, why = "the call ended before the channel");
            return;
        }
    };
    drop(listener);
    let (channel, refused) = match channel {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(event = "channel failed", call_id = %call_id, error = %e);
            return;
        }
    };
    for (from, why) in refused {
        tracing::info!(event = "channel refused", call_id = %call_id, from = %from, why = %why);
    }
    let service = match connect_service(config.serve, Duration::from_secs(5)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(event = "service unreachable", call_id = %call_id, serve = %config.serve, error = %e);
            return;
        }
    };
    tracing::info!(event = "channel up", call_id = %call_id);
    let (up, down) = pump(channel, service, config.idle, stopped).await;
    tracing::info!(event = "channel closed", call_id = %call_id, bytes_in = up, bytes_out = down);
}

/// The terminal's BYE in the call's dialog (RFC 3261 §15.1.1): to the
/// caller's Contact, with the INVITE's Record-Route as its Route, on
/// the flow; its final response waited for at most [`BYE_WAIT`].
async fn send_bye(
    config: &TerminalConfig,
    flow: &Flow,
    store: &MemoryStore,
    handle: &CallHandle,
    call_id: &str,
    ctx: &mut Context,
) {
    let Some(dialog) = lock(&handle.dialog).as_ref().map(|d| d.invite.clone()) else {
        return;
    };
    let built = Ua {
        store,
        limits: config.limits,
    }
    .reply(
        &dialog,
        ReplyTo::Request(DialogRequest {
            method: "BYE".into(),
            ..Default::default()
        }),
        Some(&config.aor),
        ctx,
    );
    let bye = match built {
        Ok(b) => b.message,
        Err(e) => {
            tracing::info!(event = "bye sent", call_id = %call_id, error = %e);
            return;
        }
    };
    let answered = match flow.request(&bye, BYE_WAIT).await {
        Ok(mut tr) => tr.final_response().await,
        Err(e) => Err(e),
    };
    match answered {
        Ok(r) => {
            tracing::info!(event = "bye sent", call_id = %call_id, status = r.status().unwrap_or_default())
        }
        Err(e) => tracing::info!(event = "bye sent", call_id = %call_id, error = %e),
    }
}

/// A re-INVITE of the call `handle` (its dialog matched and marked
/// busy): examined ([`Policy::examine_again`]), answered with the same
/// channel again, the 200 sealed under the call's (maybe new) session
/// key and sent until its ACK; or refused, the call going on.
async fn reinvite(
    config: Arc<TerminalConfig>,
    flow: Arc<Flow>,
    store: Arc<MemoryStore>,
    calls: Calls,
    msg: Message,
    mut ctx: Context,
    handle: CallHandle,
) {
    let call_id = msg.call_id().unwrap_or_default().to_owned();
    let ua = || Ua {
        store: store.as_ref(),
        limits: config.limits,
    };
    let Some(identity) = config.identity.get() else {
        return;
    };
    let Some((accepted, channel, session, version)) = lock(&handle.dialog).as_ref().map(|d| {
        (
            d.accepted.clone(),
            d.answer.again(),
            d.session,
            d.version + 1,
        )
    }) else {
        return;
    };
    let done = |update: Option<(u64, Cert, &Message)>| {
        if let Some(d) = lock(&handle.dialog).as_mut() {
            d.busy = false;
            if let Some((version, signer, reinvite)) = update {
                d.version = version;
                d.accepted.signer = signer;
                // A target refresh (RFC 3261 §12.2.2): the Contact the
                // re-INVITE gives.
                if let Some(contact) = reinvite.header("Contact") {
                    d.invite.set_header("Contact", contact);
                }
            }
        }
    };
    let examined = config
        .policy
        .examine_again(&ua(), &msg, &identity, &accepted, &mut ctx);
    let reoffer = match examined {
        Ok(r) => r,
        Err(refusal) => {
            tracing::info!(event = "reinvite refused", call_id = %call_id, status = refusal.answer.status.code(), why = %refusal.why);
            done(None);
            if let Ok(Some(r)) = respond(&msg, &refusal.answer, &mut ctx) {
                let _ = flow.send(&r).await;
            }
            return;
        }
    };
    let sdp = channel.to_text_version(session, version);
    let ok = answer(
        &ua(),
        &msg,
        &config.aor,
        sdp,
        &reoffer.signer,
        &identity,
        &mut ctx,
    );
    let ok = match ok {
        Ok(ok) => ok,
        Err(e) => {
            tracing::info!(event = "reinvite refused", call_id = %call_id, status = 500u16, why = %e);
            done(None);
            if let Ok(Some(r)) = respond(&msg, &Answer::new(Status::ServerError), &mut ctx) {
                let _ = flow.send(&r).await;
            }
            return;
        }
    };
    done(Some((version, reoffer.signer, &msg)));
    let _ = flow.send(&ok).await;
    tracing::info!(event = "reinvited", call_id = %call_id, rekey = reoffer.rekeyed);
    retransmit(flow, ok, handle, calls, call_id).await;
}

/// Send the 2xx again until its ACK (RFC 3261 §13.3.1.4); without one in
/// 64 × T1 the call ends (its channel closed).
async fn retransmit(flow: Arc<Flow>, ok: Message, call: CallHandle, calls: Calls, call_id: String) {
    let deadline = tokio::time::Instant::now() + T1 * 64;
    let mut wait = T1;
    loop {
        tokio::select! {
            () = call.acked.notified() => return,
            () = tokio::time::sleep(wait) => {}
        }
        if !lock(&calls).contains_key(&call_id) {
            // Ended meanwhile (a BYE, the channel closed).
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::info!(event = "no ack", call_id = %call_id);
            lock(&calls).remove(&call_id);
            call.stop.notify_one();
            return;
        }
        if flow.send(&ok).await.is_err() {
            return;
        }
        wait = (wait * 2).min(T2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn repo() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// A terminal (bob, taking calls from alice) on a TCP flow to a peer
    /// the test plays: the flow's other end.
    async fn terminal(max_calls: usize) -> (Terminal, tokio::net::TcpStream) {
        let identity = Arc::new(Identity::load_dir(&repo().join("keys/bob")).unwrap());
        let trust = crate::keys::Cert::load_all(&repo().join("keys/trust.pem")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let outbound = Target {
            transport: crate::net::Transport::Tcp,
            addr: listener.local_addr().unwrap(),
            name: "127.0.0.1".into(),
        };
        let (flow, incoming) = Flow::connect(&outbound, None, FlowLimits::default())
            .await
            .unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        let aor = "sip:bob@b.example.com".to_owned();
        let config = TerminalConfig {
            tls: Arc::new(TlsSetup::new(Some(&identity), &trust).unwrap()),
            identity: IdentitySlot::new(Some(identity)),
            enrol: None,
            aor: aor.clone(),
            outbound,
            password: zeroize::Zeroizing::new(String::new()),
            expires: 600,
            policy: Policy {
                allow: vec!["sip:alice@a.example.com".into()],
                trust,
                min_route_level: None,
                agent: "terminal".into(),
            },
            serve: "127.0.0.1:9".parse().unwrap(),
            channel_ip: None,
            idle: Duration::from_secs(5),
            setup_timeout: Duration::from_secs(5),
            max_calls,
            limits: Limits::default(),
            flow: FlowLimits::default(),
            timeout: Duration::from_secs(5),
        };
        let registration = Registration::new(
            &aor,
            "<sip:bob@127.0.0.1>",
            zeroize::Zeroizing::new(String::new()),
            600,
        );
        let t = Terminal {
            config: Arc::new(config),
            flow: Arc::new(flow),
            incoming,
            registration,
            granted: 600,
            store: Arc::new(MemoryStore::new()),
            calls: Arc::default(),
            tasks: tokio::task::JoinSet::new(),
            ctx: Context::new(None, None),
        };
        (t, peer)
    }

    fn invite(call_id: &str) -> Message {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=application 9 TCP/TLS/HTTP *\r\n";
        Message::parse(
            format!(
                "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK-{call_id}\r\nFrom: <sip:alice@a.example.com>;tag=a1\r\nTo: <sip:bob@b.example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:alice@127.0.0.1>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
            .as_bytes(),
        )
        .unwrap()
    }

    /// The responses read from the flow's other end until `done` holds
    /// of them (each as its status line and Call-ID).
    async fn responses(
        peer: &mut tokio::net::TcpStream,
        done: impl Fn(&[(u16, String)]) -> bool,
    ) -> Vec<(u16, String)> {
        let mut framer = crate::net::frame::Framer::new(65_535);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16_384];
        while !done(&got) {
            let n = tokio::time::timeout(Duration::from_secs(5), peer.read(&mut buf))
                .await
                .expect("responses in time")
                .unwrap();
            assert!(n > 0, "the flow closed");
            framer.push(&buf[..n]);
            while let Ok(crate::net::frame::Frame::Message(bytes)) = framer.next_frame() {
                let m = Message::parse(&bytes).unwrap();
                if let Some(status) = m.status() {
                    got.push((status, m.call_id().unwrap_or_default().to_owned()));
                }
            }
        }
        got
    }

    #[tokio::test]
    async fn an_invite_being_examined_counts_against_max_calls() {
        let (mut t, mut peer) = terminal(1).await;
        // Two INVITEs back to back: the first is still being examined
        // (its task not yet run) when the second comes.
        t.dispatch(invite("c1")).await;
        t.dispatch(invite("c2")).await;
        let finals = |g: &[(u16, String)]| g.iter().filter(|(s, _)| *s >= 200).count() >= 2;
        let got = responses(&mut peer, finals).await;
        let c2 = got.iter().find(|(s, c)| *s >= 200 && c == "c2");
        assert_eq!(c2.map(|(s, _)| *s), Some(486), "{got:?}");
    }

    #[tokio::test]
    async fn an_invite_for_a_call_in_progress_is_not_taken_again() {
        let (mut t, mut peer) = terminal(4).await;
        let live = CallHandle::default();
        lock(&t.calls).insert("c3".into(), live.clone());
        // A replay (or a merged copy) of the call's INVITE, then an
        // OPTIONS: only the OPTIONS is answered, the call is untouched.
        t.dispatch(invite("c3")).await;
        let mut options = invite("o1");
        options = Message::parse(
            String::from_utf8_lossy(&options.to_bytes())
                .replacen("INVITE sip:", "OPTIONS sip:", 1)
                .replacen("CSeq: 1 INVITE", "CSeq: 1 OPTIONS", 1)
                .as_bytes(),
        )
        .unwrap();
        t.dispatch(options).await;
        let got = responses(&mut peer, |g| g.iter().any(|(_, c)| c == "o1")).await;
        assert_eq!(got, vec![(200, "o1".to_owned())]);
        let kept = lock(&t.calls)
            .get("c3")
            .map(|h| Arc::ptr_eq(&h.stop, &live.stop));
        assert_eq!(kept, Some(true), "the call in progress keeps its handle");
    }

    /// A BYE (or ACK) belongs to the dialog its tags name, not to every
    /// request that carries the Call-ID (RFC 3261 §12, §15.1.2): another
    /// From tag gets 481 and the call stays up.
    #[tokio::test]
    async fn a_bye_with_the_call_id_but_not_the_callers_tag_leaves_the_call_up() {
        let (mut t, mut peer) = terminal(4).await;
        let live = CallHandle::for_caller(&invite("c5"));
        lock(&t.calls).insert("c5".into(), live.clone());
        let bye = |tag: &str| {
            let text = String::from_utf8_lossy(&invite("c5").to_bytes())
                .replacen("INVITE sip:", "BYE sip:", 1)
                .replacen("CSeq: 1 INVITE", "CSeq: 2 BYE", 1)
                .replacen(";tag=a1", &format!(";tag={tag}"), 1)
                .replacen("z9hG4bK-c5", &format!("z9hG4bK-c5-{tag}"), 1);
            Message::parse(text.as_bytes()).unwrap()
        };
        t.dispatch(bye("intruder")).await;
        let got = responses(&mut peer, |g| !g.is_empty()).await;
        assert_eq!(got, vec![(481, "c5".to_owned())]);
        assert!(lock(&t.calls).contains_key("c5"), "the call is still up");
        t.dispatch(bye("a1")).await;
        let got = responses(&mut peer, |g| !g.is_empty()).await;
        assert_eq!(got, vec![(200, "c5".to_owned())]);
        assert!(!lock(&t.calls).contains_key("c5"));
    }

    /// A re-INVITE belongs to its call's dialog: the caller's From tag
    /// and the terminal's To tag (RFC 3261 §12.2.2). Another tag gets 481;
    /// one of the dialog before the previous is answered, or with a CSeq
    /// not above the caller's last, 500 with Retry-After; the call stays up.
    #[tokio::test]
    async fn a_re_invite_of_another_dialog_or_out_of_order_is_refused() {
        let (mut t, mut peer) = terminal(4).await;
        let live = CallHandle::for_caller(&invite("c6"));
        lock(&t.calls).insert("c6".into(), live.clone());
        let reinvite = |from_tag: &str, to_tag: &str, cseq: u32| {
            let text = String::from_utf8_lossy(&invite("c6").to_bytes())
                .replacen("CSeq: 1 INVITE", &format!("CSeq: {cseq} INVITE"), 1)
                .replacen(";tag=a1", &format!(";tag={from_tag}"), 1)
                .replacen(
                    "To: <sip:bob@b.example.com>",
                    &format!("To: <sip:bob@b.example.com>;tag={to_tag}"),
                    1,
                )
                .replacen("z9hG4bK-c6", &format!("z9hG4bK-c6-{from_tag}-{cseq}"), 1);
            Message::parse(text.as_bytes()).unwrap()
        };
        // Not answered yet: 500, come again.
        t.dispatch(reinvite("a1", "t1", 2)).await;
        let got = responses(&mut peer, |g| !g.is_empty()).await;
        assert_eq!(got, vec![(500, "c6".to_owned())]);
        *lock(&live.dialog) = Some(Dialog {
            invite: invite("c6"),
            local_tag: Some("t1".into()),
            accepted: Accepted {
                caller: "sip:alice@a.example.com".into(),
                offer: ChannelSdp::offer(
                    "127.0.0.1".parse().unwrap(),
                    super::super::sdp::Fingerprint([1; 32]),
                ),
                signer: crate::keys::Cert::load(&repo().join("keys/alice/cert.pem")).unwrap(),
            },
            answer: ChannelSdp::answer(
                "127.0.0.1:4000".parse().unwrap(),
                super::super::sdp::Fingerprint([2; 32]),
            ),
            session: 1,
            version: 1,
            remote_cseq: 1,
            busy: false,
        });
        // Another From tag, another To tag: not this dialog.
        t.dispatch(reinvite("intruder", "t1", 2)).await;
        t.dispatch(reinvite("a1", "t9", 2)).await;
        let got = responses(&mut peer, |g| g.len() >= 2).await;
        assert_eq!(got, vec![(481, "c6".to_owned()), (481, "c6".to_owned())]);
        // The dialog's own, but its CSeq not above the INVITE's.
        t.dispatch(reinvite("a1", "t1", 1)).await;
        let got = responses(&mut peer, |g| !g.is_empty()).await;
        assert_eq!(got, vec![(500, "c6".to_owned())]);
        assert!(lock(&t.calls).contains_key("c6"), "the call is still up");
        assert!(lock(&live.dialog).as_ref().is_some_and(|d| !d.busy));
    }

    #[tokio::test]
    async fn the_2xx_goes_again_until_its_ack() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target {
            transport: crate::net::Transport::Tcp,
            addr: listener.local_addr().unwrap(),
            name: "127.0.0.1".into(),
        };
        let (flow, _incoming) = Flow::connect(&target, None, FlowLimits::default())
            .await
            .unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        let ok = Message::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let call = CallHandle::default();
        let calls: Calls = Arc::default();
        lock(&calls).insert("c1".into(), call.clone());
        let task = tokio::spawn(retransmit(
            Arc::new(flow),
            ok.clone(),
            call.clone(),
            Arc::clone(&calls),
            "c1".into(),
        ));
        // T1, then 2 × T1 later: two copies.
        let one = ok.to_bytes().len();
        let mut got = vec![0u8; one * 2];
        tokio::time::timeout(Duration::from_secs(5), peer.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        // The ACK stops it.
        call.acked.notify_one();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
        assert!(lock(&calls).contains_key("c1"), "an ACKed call goes on");
    }
}
