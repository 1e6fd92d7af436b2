//! The terminal daemon (`sipseal terminal`): the flow to the edge relay,
//! the registration kept fresh on it, and the requests that come down it
//! dispatched to the terminal workflow ([`super::terminal`]). One task
//! per call; a call's data channel is a listener of its own that takes
//! one connection with the caller's fingerprint and pumps it into the
//! local service. SIGTERM (the `shutdown` future) removes the binding
//! and closes every channel.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use super::sdp::ChannelSdp;
use super::terminal::{Policy, RegisterError, Registration, answer, connect_service, pump};
use super::tls::{ChannelCert, accept};
use crate::context::Context;
use crate::keys::Identity;
use crate::net::Target;
use crate::net::flow::{Flow, FlowLimits};
use crate::net::tls::TlsSetup;
use crate::session::Limits;
use crate::sip::answer::{Answer, respond};
use crate::sip::{Message, Status};
use crate::state::MemoryStore;
use crate::ua::Ua;

/// How the terminal runs.
pub struct TerminalConfig {
    /// Its identity (the AOR is its certificate's SAN URI).
    pub identity: Arc<Identity>,
    /// The AOR it registers.
    pub aor: String,
    /// The edge relay (or registrar) its flow goes to.
    pub outbound: Target,
    /// Mutual TLS for the flow.
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

/// A call in progress: what ends it, what its ACK wakes, and the
/// caller's From tag, which its ACK and BYE must carry (the dialog, not
/// the Call-ID alone: RFC 3261 §12).
#[derive(Clone, Default)]
struct CallHandle {
    stop: Arc<Notify>,
    acked: Arc<Notify>,
    from_tag: Option<String>,
}

impl CallHandle {
    /// The handle of the call `invite` starts.
    fn for_caller(invite: &Message) -> CallHandle {
        CallHandle {
            from_tag: invite.from_tag().ok().flatten(),
            ..CallHandle::default()
        }
    }

    /// Whether `request` (an ACK or BYE) is of this call's dialog.
    fn is_of(&self, request: &Message) -> bool {
        self.from_tag.is_some() && request.from_tag().ok().flatten() == self.from_tag
    }
}

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
    ctx: Context,
}

impl Terminal {
    /// Open the flow and register: the terminal, ready to [`Terminal::run`].
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
        let granted = registration
            .register(&flow, config.expires, config.timeout, &mut ctx)
            .await?;
        Ok(Terminal {
            config: Arc::new(config),
            flow: Arc::new(flow),
            incoming,
            registration,
            granted,
            store: Arc::new(MemoryStore::new()),
            calls: Arc::default(),
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
                    match self.registration.register(&self.flow, expires, self.config.timeout, &mut self.ctx).await {
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
        for call in lock(&self.calls).values() {
            call.stop.notify_one();
        }
        // Remove the binding: calls no longer come here.
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
            let opened = Flow::connect(
                &self.config.outbound,
                Some(&self.config.tls),
                self.config.flow,
            )
            .await;
            if let Ok((flow, incoming)) = opened {
                self.registration.contact = contact_for(&self.config.aor, &flow);
                let expires = self.config.expires;
                match self
                    .registration
                    .register(&flow, expires, self.config.timeout, &mut self.ctx)
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
        let method = msg.method().unwrap_or_default().to_owned();
        let call_id = msg.call_id().unwrap_or_default().to_owned();
        match method.as_str() {
            "INVITE" => {
                let in_dialog = msg
                    .header("To")
                    .is_some_and(|t| t.to_ascii_lowercase().contains(";tag="));
                if in_dialog {
                    // Not built: a re-INVITE (a new channel in the call).
                    let a = Answer::new(Status::NotAcceptableHere).with_warning(
                        &self.config.policy.agent,
                        "a re-INVITE is not taken: call again",
                    );
                    self.reply(&msg, a).await;
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
                tokio::spawn(async move {
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

fn half(granted: u32) -> Duration {
    Duration::from_secs(u64::from(granted.max(2)) / 2)
}

/// The Contact a terminal registers: its AOR's user at the flow's
/// address, `ob` (RFC 5626: reach me on this flow).
fn contact_for(aor: &str, flow: &Flow) -> String {
    let user = crate::registrar::users::username_of(aor).unwrap_or("terminal");
    let local = flow.local();
    let host = match local.ip() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let t = flow.transport().token().to_ascii_lowercase();
    format!("<sip:{user}@{host}:{};transport={t};ob>", local.port())
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
    let examined = config
        .policy
        .examine(&ua(), &msg, &config.identity, &mut ctx);
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
    let response = built.and_then(|cert| {
        let channel = ChannelSdp::answer(local, cert.fingerprint());
        answer(
            &ua(),
            &msg,
            &config.aor,
            &channel,
            &accepted.signer,
            &config.identity,
            &mut ctx,
        )
        .map(|m| (m, cert))
        .map_err(|e| e.to_string())
    });
    let (ok, cert) = match response {
        Ok(x) => x,
        Err(why) => {
            tracing::info!(event = "refused", call_id = %call_id, status = 500u16, why = %why);
            if let Some(r) = refuse(Answer::new(Status::ServerError), &mut ctx) {
                let _ = flow.send(&r).await;
            }
            return;
        }
    };
    let stop = Arc::clone(&handle.stop);
    let _ = flow.send(&ok).await;
    tokio::spawn(retransmit(
        Arc::clone(&flow),
        ok,
        handle,
        Arc::clone(&calls),
        call_id.clone(),
    ));
    tracing::info!(event = "answered", call_id = %call_id, caller = %accepted.caller, channel = %local);
    let stopped = stop.notified();
    tokio::pin!(stopped);
    let channel = tokio::select! {
        r = accept(&listener, &cert, accepted.offer.fingerprint, config.setup_timeout) => r,
        () = &mut stopped => {
            tracing::info!(event = "channel closed", call_id = %call_id, why = "bye before the channel");
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
            identity,
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
