//! The edge daemon (`sipseal edge`, docs/SPEC.md §7.2): plain UDP/TCP
//! listeners for the phones, one mutual-TLS flow (RFC 5626) to the
//! outbound relay, and the routing between them. The edge is a proxy
//! for its users, not a B2BUA: Call-ID, tags and CSeq are the phone's;
//! it adds its Via (a stateless branch under the edge secret) and takes
//! it off the responses, replaces the phone's Contacts by tokens on its
//! flow ([`super::route`]), record-routes on the phone leg only, and
//! hands every message to the [`Sealer`]: phone → network
//! `outgoing`, network → phone `incoming`.
//!
//! Nothing persists here but the edge secret (the tokens and branches
//! are keyed with it) and, in the sealer, the session store: after a
//! restart the phone's in-dialog requests still find their way.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};

use super::body::{Sealer, Toward};
use super::route::{self, TokenError};
use crate::context::Context;
use crate::keys::{Cert, Identity};
use crate::net::flow::{Flow, FlowLimits};
use crate::net::frame::{Frame, Framer};
use crate::net::tls::TlsSetup;
use crate::net::{Target, Transport};
use crate::sip::answer::{Answer, respond};
use crate::sip::routing::{self, OwnNames};
use crate::sip::{Message, StartLine, Status};

/// One user the edge serves: the AOR, the identity directory and its
/// current identity (replaced when a registration installs a
/// certificate).
pub struct User {
    /// The AOR (the certificate's SAN URI, or given for a key alone).
    pub aor: String,
    /// The identity's directory (`cert.pem` is installed there).
    pub dir: PathBuf,
    /// The private key, when the edge may enrol for it (unencrypted PEM).
    pub key: Option<PathBuf>,
    identity: RwLock<Option<Arc<Identity>>>,
    /// The registrar challenged a REGISTER that carried the phone's
    /// credentials and the edge's CSR: it wants the CSR covered by Digest
    /// (`auth-int`), which the phone's credentials cannot do. No CSR is
    /// added again until SIGHUP, so that the phone still registers.
    csr_refused: std::sync::atomic::AtomicBool,
    /// A PSK the registrar holds for this AOR: the CSR the edge adds is
    /// sealed under it, which covers it as the phone's Digest cannot
    /// (docs/SPEC.md §6).
    psk: Option<crate::keys::Psk>,
}

impl User {
    /// A user with `identity` (none yet: the first REGISTER enrols).
    pub fn new(aor: &str, dir: PathBuf, key: Option<PathBuf>, identity: Option<Identity>) -> User {
        User {
            aor: aor.to_owned(),
            dir,
            key,
            identity: RwLock::new(identity.map(Arc::new)),
            csr_refused: std::sync::atomic::AtomicBool::new(false),
            psk: None,
        }
    }

    /// `self` with the PSK its CSRs are sealed under.
    pub fn with_psk(mut self, psk: Option<crate::keys::Psk>) -> User {
        self.psk = psk;
        self
    }

    /// The current identity.
    pub fn identity(&self) -> Option<Arc<Identity>> {
        self.identity
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, identity: Identity) {
        *self
            .identity
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(identity));
    }
}

/// How the edge runs.
pub struct EdgeConfig {
    /// The phone-side listeners (UDP, TCP).
    pub listen: Vec<(Transport, SocketAddr)>,
    /// The users, the first one's certificate presented on the flow.
    pub users: Vec<User>,
    /// The outbound relay (TLS).
    pub outbound: Target,
    /// The anchors the relay's certificate (and the registrar's
    /// signature and issued certificates) must chain to.
    pub trust: Vec<Cert>,
    /// The anchors of the registrar's signature on a 200 to a REGISTER
    /// and of the certificates it issues.
    pub registrar_trust: Vec<Cert>,
    /// Presented on the flow while the first user has no valid certificate.
    pub bootstrap: Option<Arc<Identity>>,
    /// The sources served on the phone side.
    pub phones: Vec<ipnet::IpNet>,
    /// The flow's limits (keep-alive, connect timeout, queue).
    pub flow: FlowLimits,
    /// The edge secret: tokens and Via branches.
    pub secret: [u8; 32],
    /// The Warning agent.
    pub agent: String,
    /// The largest message taken on the phone side.
    pub max_message: usize,
    /// Phone-side TCP connections at once.
    pub max_connections: usize,
    /// How long a non-INVITE request waits for its final response.
    pub timeout: Duration,
}

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A listener could not be bound.
    #[error("cannot listen on {transport}:{addr}: {source}")]
    Bind {
        /// The transport token.
        transport: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS cannot be set up for the flow.
    #[error("the flow's TLS: {0}")]
    Tls(String),
    /// A listener's transport is not served on the phone side.
    #[error("--listen {0}: the phone side is udp: or tcp:")]
    Transport(&'static str),
}

/// How long an INVITE transaction may wait for its next response, and
/// how long a 2xx's retransmissions are passed on (64 × T1).
const INVITE_WAIT: Duration = Duration::from_secs(180);
const RETRANSMIT_WINDOW: Duration = Duration::from_secs(32);
/// How long a phone request waits for the flow to (re)open.
const FLOW_WAIT: Duration = Duration::from_secs(5);
/// A phone TCP connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(300);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where a message to a phone goes.
#[derive(Debug, Clone, Copy)]
struct PhoneDest {
    transport: Transport,
    addr: SocketAddr,
}

struct Shared {
    config: EdgeConfig,
    sealer: Arc<Sealer>,
    names: OwnNames,
    bound: Vec<(Transport, SocketAddr)>,
    udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
    tcp: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    flow: Mutex<Option<Arc<Flow>>>,
    lanes: Mutex<HashMap<String, mpsc::Sender<Job>>>,
    connections: Arc<Semaphore>,
    ctx: Mutex<Context>,
}

/// The edge, bound and ready to [`Edge::run`].
pub struct Edge {
    shared: Arc<Shared>,
    tcp_listeners: Vec<(SocketAddr, TcpListener)>,
}

impl Edge {
    /// Bind the phone-side listeners.
    pub async fn bind(
        config: EdgeConfig,
        sealer: Arc<Sealer>,
        ctx: Context,
    ) -> Result<Edge, DaemonError> {
        let mut bound = Vec::new();
        let mut udp = Vec::new();
        let mut tcp_listeners = Vec::new();
        for &(transport, addr) in &config.listen {
            let fail = |source| DaemonError::Bind {
                transport: transport.token(),
                addr,
                source,
            };
            match transport {
                Transport::Udp => {
                    let s = UdpSocket::bind(addr).await.map_err(fail)?;
                    let local = s.local_addr().map_err(fail)?;
                    bound.push((transport, local));
                    udp.push((local, Arc::new(s)));
                }
                Transport::Tcp => {
                    let l = TcpListener::bind(addr).await.map_err(fail)?;
                    let local = l.local_addr().map_err(fail)?;
                    bound.push((transport, local));
                    tcp_listeners.push((local, l));
                }
                Transport::Tls => return Err(DaemonError::Transport("tls")),
            }
        }
        let names = OwnNames::new(bound.iter().map(|(_, a)| *a));
        let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
        Ok(Edge {
            shared: Arc::new(Shared {
                config,
                sealer,
                names,
                bound,
                udp,
                tcp: Mutex::default(),
                flow: Mutex::default(),
                lanes: Mutex::default(),
                connections,
                ctx: Mutex::new(ctx),
            }),
            tcp_listeners,
        })
    }

    /// What the phone side listens on.
    pub fn local_addrs(&self) -> &[(Transport, SocketAddr)] {
        &self.shared.bound
    }

    /// A handle that reloads the policy and the identities (SIGHUP).
    pub fn reloader(&self) -> Reloader {
        Reloader(Arc::clone(&self.shared))
    }

    /// Serve until `shutdown`: the listeners, and the flow kept open
    /// (reopened with backoff when it closes).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tasks = tokio::task::JoinSet::new();
        for (local, sock) in &self.shared.udp {
            tasks.spawn(udp_loop(Arc::clone(&self.shared), Arc::clone(sock), *local));
        }
        for (local, listener) in self.tcp_listeners {
            tasks.spawn(tcp_accept(Arc::clone(&self.shared), listener, local));
        }
        tasks.spawn(keep_flow(Arc::clone(&self.shared)));
        shutdown.await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        *lock(&self.shared.flow) = None;
        tracing::info!(event = "stopped");
    }
}

/// Reloads what SIGHUP reloads.
#[derive(Clone)]
pub struct Reloader(Arc<Shared>);

impl Reloader {
    /// The sealer's policy again, and each user's certificate from its
    /// directory (one that does not load keeps the old; said in the log).
    pub fn reload(&self) -> Result<(), super::body::EdgeError> {
        for user in &self.0.config.users {
            user.csr_refused
                .store(false, std::sync::atomic::Ordering::Relaxed);
            let cert = user.dir.join("cert.pem");
            let key = user.key.clone().unwrap_or_else(|| user.dir.join("key.pem"));
            if cert.is_file() {
                match Identity::load_pair(&key, &cert) {
                    Ok(i) => user.set(i),
                    Err(e) => tracing::info!(event = "reload", aor = %user.aor, error = %e),
                }
            }
        }
        self.0.sealer.reload()
    }
}

impl Shared {
    fn allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.config.phones.iter().any(|n| n.contains(&ip))
    }

    fn user(&self, aor: &str) -> Option<&User> {
        let key = crate::sip::aor::aor_key(aor);
        self.config
            .users
            .iter()
            .find(|u| crate::sip::aor::aor_key(&u.aor) == key)
    }

    fn served(&self) -> String {
        self.config
            .users
            .iter()
            .map(|u| u.aor.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn listener(&self, transport: Transport) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|(t, _)| *t == transport)
            .or_else(|| self.bound.first())
            .map(|(_, a)| *a)
    }

    fn answer(&self, request: &Message, answer: Answer) -> Option<Message> {
        let mut ctx = lock(&self.ctx).fork();
        respond(request, &answer, &mut ctx).ok().flatten()
    }

    fn refusal(&self, request: &Message, status: Status, why: &str) -> Option<Message> {
        let mut answer = Answer::new(status).with_warning(&self.config.agent, why);
        if request.to_tag().ok().flatten().is_none() {
            answer = answer.with_to_tag(routing::local_tag(&self.config.secret, request));
        }
        self.answer(request, answer)
    }

    /// The edge's own final answer to a phone request `request` (a
    /// refusal of the sealer's) with the To tag of a stateless proxy's
    /// answer (RFC 3261 §16.11), so that the phone's ACK of it is known
    /// for the edge's own and absorbed; a request already in a dialog
    /// keeps the dialog's tag.
    fn own_tag(&self, request: &Message, mut answer: Message) -> Message {
        if request.to_tag().ok().flatten().is_none()
            && let Some(to) = request.header("To")
        {
            let tag = routing::local_tag(&self.config.secret, request);
            answer.set_header("To", &format!("{to};tag={tag}"));
        }
        answer
    }

    /// The flow, waiting a little for it to (re)open.
    async fn flow(&self) -> Option<Arc<Flow>> {
        let until = Instant::now() + FLOW_WAIT;
        loop {
            if let Some(f) = lock(&self.flow).clone() {
                return Some(f);
            }
            if Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The identity the flow presents: the first user's while valid,
    /// else the bootstrap one.
    fn flow_tls(&self) -> Result<TlsSetup, DaemonError> {
        let now = time::OffsetDateTime::now_utc();
        let own = self
            .config
            .users
            .first()
            .and_then(User::identity)
            .filter(|i| {
                !crate::datachannel::terminal::certificate_due(Some(&i.cert), now, Duration::ZERO)
            });
        let identity = own
            .or_else(|| self.config.bootstrap.clone())
            .ok_or_else(|| DaemonError::Tls("no valid certificate and no --bootstrap".into()))?;
        TlsSetup::new(Some(&identity), &self.config.trust)
            .map_err(|e| DaemonError::Tls(e.to_string()))
    }

    async fn to_phone(self: &Arc<Self>, dest: PhoneDest, msg: &Message) -> std::io::Result<()> {
        use std::io::{Error, ErrorKind};
        let bytes = msg.to_bytes();
        match dest.transport {
            Transport::Udp => {
                let sock = self
                    .udp
                    .iter()
                    .find(|(l, _)| l.is_ipv4() == dest.addr.is_ipv4())
                    .or_else(|| self.udp.first())
                    .map(|(_, s)| Arc::clone(s))
                    .ok_or_else(|| Error::new(ErrorKind::NotConnected, "no udp: listener"))?;
                sock.send_to(&bytes, dest.addr).await.map(drop)
            }
            Transport::Tcp => {
                let existing = lock(&self.tcp).get(&dest.addr).cloned();
                let tx = match existing {
                    Some(tx) => tx,
                    None => {
                        let stream = tokio::time::timeout(
                            self.config.flow.connect_timeout,
                            TcpStream::connect(dest.addr),
                        )
                        .await
                        .map_err(|_| Error::new(ErrorKind::TimedOut, "connect timed out"))??;
                        let local = stream.local_addr()?;
                        attach(Arc::clone(self), stream, dest.addr, local, None)
                    }
                };
                tx.send(bytes)
                    .await
                    .map_err(|_| Error::new(ErrorKind::BrokenPipe, "the connection closed"))
            }
            Transport::Tls => Err(Error::new(
                ErrorKind::Unsupported,
                "no TLS on the phone side",
            )),
        }
    }

    /// Hand `job` to its call's lane: messages of one call are handled
    /// in the order they arrived, one after the other; calls side by
    /// side. A lane ends after [`LANE_IDLE`] without a message.
    fn dispatch(self: &Arc<Self>, job: Job) {
        let call_id = job.msg().call_id().unwrap_or_default().to_owned();
        let mut job = job;
        for _ in 0..2 {
            let tx = {
                let mut lanes = lock(&self.lanes);
                if let Some(tx) = lanes.get(&call_id).filter(|t| !t.is_closed()) {
                    tx.clone()
                } else {
                    if lanes.len() >= MAX_LANES {
                        lanes.retain(|_, t| !t.is_closed());
                        if lanes.len() >= MAX_LANES {
                            tracing::info!(event = "dropped", call_id = %call_id, why = "too many calls in hand");
                            return;
                        }
                    }
                    let (tx, rx) = mpsc::channel(LANE_QUEUE);
                    lanes.insert(call_id.clone(), tx.clone());
                    tokio::spawn(lane(Arc::clone(self), rx));
                    tx
                }
            };
            match tx.try_send(job) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(event = "dropped", call_id = %call_id, why = "its call's queue is full");
                    return;
                }
                // The lane ended meanwhile: a new one.
                Err(mpsc::error::TrySendError::Closed(j)) => {
                    lock(&self.lanes).remove(&call_id);
                    job = j;
                }
            }
        }
    }
}

/// A message in a call's lane.
enum Job {
    /// From a phone.
    Phone(Message, PhoneDest),
    /// Down the flow.
    Network(Message, Arc<Flow>),
}

impl Job {
    fn msg(&self) -> &Message {
        match self {
            Job::Phone(m, _) | Job::Network(m, _) => m,
        }
    }
}

/// Messages of one call at once, at most, waiting in its lane.
const LANE_QUEUE: usize = 32;
/// Calls with messages in hand at once, at most.
const MAX_LANES: usize = 4096;
/// A lane with nothing to do this long ends.
const LANE_IDLE: Duration = Duration::from_secs(30);

async fn lane(shared: Arc<Shared>, mut rx: mpsc::Receiver<Job>) {
    while let Ok(Some(job)) = tokio::time::timeout(LANE_IDLE, rx.recv()).await {
        match job {
            Job::Phone(msg, from) => phone_message(&shared, msg, from).await,
            Job::Network(msg, flow) => network_request(&shared, &flow, msg).await,
        }
    }
}

fn log(dir: &str, msg: &Message, decision: &str) {
    let method = match msg.method() {
        Some(m) => m.to_owned(),
        None => msg.cseq().map(|c| c.method).unwrap_or_default(),
    };
    tracing::info!(
        event = "message",
        dir,
        method = %method,
        status = msg.status(),
        call_id = %msg.call_id().unwrap_or_default(),
        decision,
    );
}

async fn keep_flow(shared: Arc<Shared>) {
    let mut wait = Duration::from_secs(1);
    loop {
        let opened = match shared.flow_tls() {
            Ok(tls) => Flow::connect(&shared.config.outbound, Some(&tls), shared.config.flow)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match opened {
            Ok((flow, mut incoming)) => {
                wait = Duration::from_secs(1);
                let flow = Arc::new(flow);
                tracing::info!(event = "flow open", local = %flow.local(), to = %shared.config.outbound.addr);
                *lock(&shared.flow) = Some(Arc::clone(&flow));
                while let Some(req) = incoming.recv().await {
                    shared.dispatch(Job::Network(req, Arc::clone(&flow)));
                }
                let mut current = lock(&shared.flow);
                if current.as_ref().is_some_and(|f| Arc::ptr_eq(f, &flow)) {
                    *current = None;
                }
                drop(current);
                tracing::info!(event = "flow closed", to = %shared.config.outbound.addr);
            }
            Err(e) => {
                tracing::info!(event = "flow failed", to = %shared.config.outbound.addr, error = %e)
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

async fn udp_loop(shared: Arc<Shared>, sock: Arc<UdpSocket>, local: SocketAddr) {
    let limit = shared.config.max_message;
    let mut buf = vec![0u8; limit + 1];
    loop {
        let Ok((n, src)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        if !shared.allowed(src.ip()) {
            tracing::info!(event = "dropped", from = %src, why = "outside --phones");
            continue;
        }
        // Limits before parsing: an oversized datagram is not read.
        if n > limit {
            tracing::info!(event = "dropped", from = %src, why = "over --max-message-size");
            continue;
        }
        let bytes = buf.get(..n).unwrap_or_default();
        if bytes.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            continue;
        }
        let Ok(msg) = Message::parse(bytes) else {
            tracing::info!(event = "dropped", from = %src, why = "does not parse");
            continue;
        };
        let _ = local;
        shared.dispatch(Job::Phone(
            msg,
            PhoneDest {
                transport: Transport::Udp,
                addr: src,
            },
        ));
    }
}

async fn tcp_accept(shared: Arc<Shared>, listener: TcpListener, local: SocketAddr) {
    loop {
        let Ok((stream, src)) = listener.accept().await else {
            continue;
        };
        if !shared.allowed(src.ip()) {
            tracing::info!(event = "dropped", from = %src, why = "outside --phones");
            continue;
        }
        let Ok(permit) = Arc::clone(&shared.connections).try_acquire_owned() else {
            tracing::info!(event = "dropped", from = %src, why = "at --max-connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        attach(Arc::clone(&shared), stream, src, local, Some(permit));
    }
}

/// Read and write a phone's TCP connection: its messages go to
/// [`phone_message`]; what is sent to it goes through the returned sender.
fn attach(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    _local: SocketAddr,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> mpsc::Sender<Vec<u8>> {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    lock(&shared.tcp).insert(peer, tx.clone());
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            let sent = tokio::time::timeout(crate::net::flow::WRITE_TIMEOUT, async {
                wr.write_all(&bytes).await?;
                wr.flush().await
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                return;
            }
        }
    });
    let mine = tx.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut framer = Framer::new(shared.config.max_message);
        let mut buf = vec![0u8; 16_384];
        'read: loop {
            let n = match tokio::time::timeout(IDLE, rd.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            };
            framer.push(buf.get(..n).unwrap_or_default());
            loop {
                match framer.next_frame() {
                    Ok(Frame::Partial) => break,
                    Ok(Frame::KeepAlive { pong }) => {
                        if pong {
                            let _ = mine.try_send(b"\r\n".to_vec());
                        }
                    }
                    Ok(Frame::Message(bytes)) => {
                        let Ok(msg) = Message::parse(&bytes) else {
                            continue;
                        };
                        shared.dispatch(Job::Phone(
                            msg,
                            PhoneDest {
                                transport: Transport::Tcp,
                                addr: peer,
                            },
                        ));
                    }
                    Err(_) => break 'read,
                }
            }
        }
        writer.abort();
        let mut tcp = lock(&shared.tcp);
        if tcp.get(&peer).is_some_and(|t| t.same_channel(&mine)) {
            tcp.remove(&peer);
        }
    });
    tx
}

async fn phone_message(shared: &Arc<Shared>, mut msg: Message, from: PhoneDest) {
    if msg.is_request() {
        routing::mark_received(&mut msg, from.addr);
        phone_request(shared, msg, from).await;
    } else {
        phone_response(shared, msg).await;
    }
}

/// A request from the phone: checked, its Contact replaced, sealed, and
/// sent on over the flow with the edge's Via; its responses come back
/// to the phone.
async fn phone_request(shared: &Arc<Shared>, mut msg: Message, from: PhoneDest) {
    let method = msg.method().unwrap_or_default().to_owned();
    // The ACK of the edge's own refusal ends here (RFC 3261 §16.11).
    if routing::acks_own_answer(&msg, &shared.config.secret) {
        log("phone", &msg, "absorbed: the ACK of the edge's own answer");
        return;
    }
    // Refusals answer the request as the phone sent it.
    let original = msg.clone();
    let refuse = |status: Status, why: &str| shared.refusal(&original, status, why);
    let aor = if method == "REGISTER" {
        msg.aor("To")
    } else {
        msg.aor("From")
    }
    .unwrap_or_default()
    .to_owned();
    let Some(user) = shared.user(&aor) else {
        let why = format!("this edge serves {} only, not {aor}", shared.served());
        if let Some(r) = refuse(Status::Forbidden, &why) {
            let _ = shared.to_phone(from, &r).await;
        }
        log("phone", &msg, "answer 403: not a user of this edge");
        return;
    };
    if msg.max_forwards().ok().flatten() == Some(0) {
        if let Some(r) = refuse(Status::TooManyHops, "Max-Forwards reached 0") {
            let _ = shared.to_phone(from, &r).await;
        }
        return;
    }
    if method == "INVITE" {
        // RFC 3261 §16.2: a proxy's 100 stops the phone's retransmissions.
        if let Some(r) = shared.answer(&original, Answer::new(Status::Trying)) {
            let _ = shared.to_phone(from, &r).await;
        }
    }
    let Some(flow) = shared.flow().await else {
        if let Some(r) = refuse(
            Status::ServiceUnavailable,
            "the flow to the outbound relay is down",
        ) {
            let _ = shared.to_phone(from, &r).await;
        }
        log("phone", &msg, "answer 503: no flow");
        return;
    };
    routing::pop_own_routes(&mut msg, &shared.names);
    route::remove_own_record_routes(&mut msg, &shared.names);
    // The phone's Contacts become tokens on the flow.
    let key = shared.config.secret;
    let mut too_long = false;
    route::rewrite_contacts(&mut msg, |uri| {
        let t = route::token(&key, &user.aor, from.transport, uri);
        too_long |= t.is_none();
        t.map(|t| route::edge_contact(route::user_of(uri), flow.local(), flow.transport(), &t))
    });
    if too_long {
        if let Some(r) = refuse(Status::BadRequest, "a Contact URI over 512 bytes") {
            let _ = shared.to_phone(from, &r).await;
        }
        return;
    }
    let mut enrolling = None;
    let authorized =
        msg.header("Authorization").is_some() || msg.header("Proxy-Authorization").is_some();
    if method == "REGISTER" {
        enrolling = add_csr(user, &mut msg).await;
    } else {
        let Some(identity) = user.identity() else {
            let why = format!("{aor} has no certificate yet: register first");
            if let Some(r) = refuse(Status::Forbidden, &why) {
                let _ = shared.to_phone(from, &r).await;
            }
            return;
        };
        msg = match shared.sealer.outgoing(msg, identity).await {
            Toward::Send(m) => m,
            Toward::Answer(r) => {
                let r = shared.own_tag(&original, r);
                let _ = shared.to_phone(from, &r).await;
                log("phone", &r, "answered by the sealer");
                return;
            }
        };
    }
    let mut out = match routing::forward_request(&msg, "edge.invalid", &key) {
        Ok(m) => m,
        Err(e) => {
            if let Some(r) = refuse(Status::BadRequest, &e.to_string()) {
                let _ = shared.to_phone(from, &r).await;
            }
            return;
        }
    };
    // The phone's Vias stay here (the transaction below puts them back
    // on the responses): the relay sees a user agent on a flow (one Via,
    // `ob`) and record-routes with a flow token, so the far end's
    // requests in the dialog come back down this flow (RFC 5626 §5.3).
    let phone_vias = route::take_vias_below_top(&mut out);
    // An ACK has no response; a CANCEL's 200 comes back on the INVITE's
    // transaction (the same branch), which passes it to the phone.
    if method == "ACK" || method == "CANCEL" {
        let sent = match flow.with_via(&out) {
            Ok(m) => flow.send(&m).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        log(
            "phone",
            &msg,
            if sent.is_ok() {
                "forward"
            } else {
                "drop: the flow failed"
            },
        );
        return;
    }
    let wait = if method == "INVITE" {
        INVITE_WAIT
    } else {
        shared.config.timeout
    };
    let tr = match flow.request(&out, wait).await {
        Ok(tr) => tr,
        Err(e) => {
            if let Some(r) = refuse(Status::ServiceUnavailable, &e.to_string()) {
                let _ = shared.to_phone(from, &r).await;
            }
            log("phone", &msg, "answer 503: the flow failed");
            return;
        }
    };
    log("phone", &msg, "forward");
    let shared = Arc::clone(shared);
    let creates = route::creates_dialog(&msg);
    tokio::spawn(async move {
        let call = Call {
            from,
            method,
            aor,
            creates,
            phone_vias,
            enrolling,
            authorized,
        };
        responses(shared, tr, call).await;
    });
}

/// A phone's request on its way: what its responses need.
struct Call {
    from: PhoneDest,
    method: String,
    aor: String,
    creates: bool,
    phone_vias: Vec<String>,
    enrolling: Option<Enrolling>,
    /// The phone's request carried credentials.
    authorized: bool,
}

/// The key of a REGISTER that asked for a certificate.
struct Enrolling {
    key: crate::keys::PrivateKey,
    key_path: PathBuf,
}

/// A CSR added to the phone's REGISTER when the user's identity has no
/// certificate, or one that ends within the registration interval.
async fn add_csr(user: &User, msg: &mut Message) -> Option<Enrolling> {
    let key_path = user.key.clone()?;
    if user.csr_refused.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let expires = msg
        .header("Expires")
        .and_then(|e| e.trim().parse::<u64>().ok())
        .unwrap_or(3600);
    if expires == 0 {
        return None;
    }
    let now = time::OffsetDateTime::now_utc();
    let cert = user.identity().map(|i| i.cert.clone());
    if !crate::datachannel::terminal::certificate_due(
        cert.as_ref(),
        now,
        Duration::from_secs(expires),
    ) {
        return None;
    }
    let aor = user.aor.clone();
    let path = key_path.clone();
    let psk = user.psk.clone();
    let mut with_csr = msg.clone();
    let made = tokio::task::spawn_blocking(move || {
        let key = crate::keys::identity::load_any_private_key(&path)?;
        let body = crate::registrar::enrol::csr_body(&key, &aor)?;
        with_csr.set_header("Content-Type", &body.content_type);
        with_csr.set_body(body.bytes);
        // Sealed under the AOR's PSK (KEKRecipientInfo): the registrar
        // takes it under the phone's qop=auth (docs/SPEC.md §6).
        if let Some(psk) = psk {
            let spec = crate::sealing::SealSpec {
                peers: vec![crate::envelope::Recipient::Psk(psk)],
                ..Default::default()
            };
            let mut ctx = Context::new(None, None);
            with_csr = crate::sealing::seal_message(&with_csr, &spec, &mut ctx)?.message;
        }
        Ok::<_, crate::registrar::enrol::EnrolError>((key, with_csr))
    })
    .await;
    match made {
        Ok(Ok((key, with_csr))) => {
            *msg = with_csr;
            Some(Enrolling { key, key_path })
        }
        Ok(Err(e)) => {
            tracing::info!(event = "enrol failed", aor = %user.aor, error = %e);
            None
        }
        Err(_) => None,
    }
}

/// The responses to a phone's request, back to the phone: the edge's
/// Via off; a REGISTER's 2xx with its certificate installed, its body
/// removed and the phone's own Contacts back; the phone-leg
/// Record-Route at the bottom of a dialog-creating request's answers;
/// each opened by the sealer.
async fn responses(shared: Arc<Shared>, mut tr: crate::net::flow::Transaction, call: Call) {
    let Call {
        from,
        method,
        aor,
        creates,
        phone_vias,
        enrolling,
        authorized,
    } = call;
    let (method, aor) = (method.as_str(), aor.as_str());
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, tr.next()).await {
                Ok(r) => r,
                Err(_) => return,
            },
            None => tr.next().await,
        };
        let Ok(r) = next else { return };
        let status = r.status().unwrap_or_default();
        // A CANCEL's 200 on this INVITE's transaction: passed on, no more.
        let of_this = r
            .cseq()
            .is_ok_and(|c| c.method.eq_ignore_ascii_case(method));
        let Some(mut r) = routing::forward_response(&r) else {
            continue;
        };
        route::put_vias(&mut r, &phone_vias);
        let Some(user) = shared.user(aor) else { return };
        if method == "REGISTER" && matches!(status, 401 | 407) && enrolling.is_some() {
            // The phone's Digest covers its own body, not the CSR the
            // edge added: offered auth-int, it would answer over the
            // wrong body. The sealed CSR is covered by its PSK instead.
            for name in ["WWW-Authenticate", "Proxy-Authenticate"] {
                let values: Vec<String> = r
                    .header_values(name)
                    .into_iter()
                    .map(without_auth_int)
                    .collect();
                if !values.is_empty() {
                    r.remove_headers(name);
                    for v in &values {
                        r.push_header(name, v);
                    }
                }
            }
        }
        if method == "REGISTER" && matches!(status, 401 | 407) && authorized && enrolling.is_some()
        {
            user.csr_refused
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                event = "enrol refused",
                aor = %user.aor,
                why = "the registrar challenged the phone's credentials with the edge's CSR (it wants the CSR under Digest auth-int, which the phone cannot compute); the phone registers without one",
                hint = "give the identity a certificate (cert.pem) and send SIGHUP",
            );
        }
        if method == "REGISTER" && (200..300).contains(&status) {
            if let Some(e) = &enrolling {
                install(&shared, user, &r, e);
            }
            r.remove_headers("Content-Type");
            r.remove_headers("Content-Disposition");
            r.set_body(Vec::new());
            let key = shared.config.secret;
            route::rewrite_contacts(&mut r, |uri| {
                route::phone_of_uri(&key, uri).ok().map(|p| p.uri)
            });
        }
        if creates
            && of_this
            && (101..300).contains(&status)
            && let Some(listen) = shared.listener(from.transport)
        {
            let entry = route::record_route_entry(listen, from.transport);
            let at = r
                .headers()
                .iter()
                .rposition(|h| h.is("Record-Route"))
                .map(|i| i + 1)
                .unwrap_or_else(|| r.before_body_headers());
            r.insert_header(at, "Record-Route", &entry);
        }
        if let Some(identity) = user.identity()
            && let Toward::Send(m) = shared.sealer.incoming(r.clone(), identity).await
        {
            r = m;
        }
        let sent = shared.to_phone(from, &r).await;
        log(
            "network",
            &r,
            if sent.is_ok() {
                "to phone"
            } else {
                "drop: the phone is gone"
            },
        );
        if of_this && status >= 200 {
            if method == "INVITE" && status < 300 {
                // The 2xx's retransmissions follow it (RFC 3261 §13.3.1.4).
                deadline.get_or_insert(tokio::time::Instant::now() + RETRANSMIT_WINDOW);
            } else {
                return;
            }
        }
    }
}

fn install(shared: &Shared, user: &User, ok: &Message, e: &Enrolling) {
    let mut ctx = lock(&shared.ctx).fork();
    let installed = crate::datachannel::terminal::install_issued(
        ok,
        &e.key,
        &e.key_path,
        &user.dir,
        &shared.config.registrar_trust,
        &mut ctx,
    );
    match installed {
        Ok(identity) => {
            user.set(identity);
            tracing::info!(event = "certificate installed", aor = %user.aor);
        }
        Err(err) => tracing::info!(event = "enrol failed", aor = %user.aor, error = %err),
    }
}

/// A response from the phone to a request the network sent it: the
/// edge's Via off, its Contact replaced, the phone-leg Record-Route
/// off, sealed, and sent on the flow.
async fn phone_response(shared: &Arc<Shared>, msg: Message) {
    let key = shared.config.secret;
    let ours = shared
        .bound
        .iter()
        .any(|(_, a)| routing::check_response_via(&msg, &a.to_string(), &key).is_ok());
    if !ours {
        log("phone", &msg, "drop: not a response to this edge");
        return;
    }
    let Some(mut r) = routing::forward_response(&msg) else {
        return;
    };
    let aor = r.aor("To").unwrap_or_default().to_owned();
    let Some(user) = shared.user(&aor) else {
        log("phone", &msg, "drop: not a user of this edge");
        return;
    };
    let Some(flow) = shared.flow().await else {
        log("phone", &msg, "drop: no flow");
        return;
    };
    let transport = match r.top_via() {
        Ok(_) => Transport::Udp,
        Err(_) => return,
    };
    let transport = shared
        .bound
        .iter()
        .find(|(_, a)| msg.top_via().is_ok_and(|v| v.sent_by() == a.to_string()))
        .map_or(transport, |(t, _)| *t);
    // The far end's requests in this dialog reach the relay with no flow
    // token toward this edge (it located the phone's request by AOR):
    // the Contact is the AOR with the token, which the relay's location
    // service sends down this flow again.
    let user_aor = user.aor.clone();
    route::rewrite_contacts(&mut r, |uri| {
        route::token(&key, &user_aor, transport, uri).map(|t| route::aor_contact(&user_aor, &t))
    });
    route::remove_own_record_routes(&mut r, &shared.names);
    if let Some(identity) = user.identity() {
        match shared.sealer.outgoing(r.clone(), identity).await {
            Toward::Send(m) => r = m,
            Toward::Answer(_) => {
                log("phone", &msg, "drop: the sealer refused a response");
                return;
            }
        }
    }
    let sent = flow.send(&r).await;
    log(
        "phone",
        &r,
        if sent.is_ok() {
            "forward"
        } else {
            "drop: the flow failed"
        },
    );
}

/// A request from the network (down the flow): delivered only to a
/// Request-URI whose token verifies (404 without one, 403 with a forged
/// one), opened by the sealer, record-routed on the phone leg.
async fn network_request(shared: &Arc<Shared>, flow: &Flow, msg: Message) {
    let method = msg.method().unwrap_or_default().to_owned();
    let key = shared.config.secret;
    // The ACK of the edge's own refusal ends here (RFC 3261 §16.11): the
    // phone never saw the request.
    if routing::acks_own_answer(&msg, &key) {
        log(
            "network",
            &msg,
            "absorbed: the ACK of the edge's own answer",
        );
        return;
    }
    let answer = |status: Status, why: &str| shared.refusal(&msg, status, why);
    let phone = match route::phone_of_uri(&key, msg.request_uri().unwrap_or_default()) {
        Ok(p) => p,
        Err(e) => {
            let status = match e {
                TokenError::Missing => Status::NotFound,
                TokenError::Forged => Status::Forbidden,
            };
            if let Some(r) = answer(status, &e.to_string()) {
                let _ = flow.send(&r).await;
            }
            log("network", &msg, &format!("answer {}: {e}", status.code()));
            return;
        }
    };
    let Some(addr) = phone.addr().filter(|a| shared.allowed(a.ip())) else {
        if let Some(r) = answer(
            Status::NotFound,
            "the phone's Contact is not an address the edge serves",
        ) {
            let _ = flow.send(&r).await;
        }
        log("network", &msg, "answer 404: the phone's address");
        return;
    };
    // The user whose phone the token leads to, whatever the To says: a
    // body sealed for another user of this edge is never opened for
    // this phone.
    let user = shared.user(&phone.aor);
    // A request To another user of this edge, on this user's token: the
    // phone's answer would go out in the To's name (its identity signs
    // and seals the answer), so it never reaches the phone.
    if let Some(other) = msg.aor("To").and_then(|to| shared.user(to))
        && user.is_none_or(|u| !std::ptr::eq(u, other))
    {
        let why = format!(
            "the Request-URI's phone token is for {}, not {}: refused (a token for another user)",
            phone.aor, other.aor
        );
        if let Some(r) = answer(Status::Forbidden, &why) {
            let _ = flow.send(&r).await;
        }
        log("network", &msg, "answer 403: a token for another user");
        return;
    }
    let Some(identity) = user.and_then(User::identity) else {
        if let Some(r) = answer(Status::NotFound, "no such user at this edge") {
            let _ = flow.send(&r).await;
        }
        log("network", &msg, "answer 404: no user");
        return;
    };
    if msg.max_forwards().ok().flatten() == Some(0) {
        if let Some(r) = answer(Status::TooManyHops, "Max-Forwards reached 0") {
            let _ = flow.send(&r).await;
        }
        return;
    }
    let mut m = match shared.sealer.incoming(msg.clone(), identity).await {
        Toward::Send(m) => m,
        Toward::Answer(r) => {
            let r = shared.own_tag(&msg, r);
            let _ = flow.send(&r).await;
            log("network", &r, "answered by the sealer");
            return;
        }
    };
    m.set_start_line(StartLine::Request {
        method: method.clone(),
        uri: phone.uri.clone(),
    });
    let Some(listen) = shared.listener(phone.transport) else {
        return;
    };
    if route::creates_dialog(&m) {
        // On top of the Record-Route the phone gets (above the first
        // entry, or before the body headers when there is none).
        let entry = route::record_route_entry(listen, phone.transport);
        match m.headers().iter().position(|h| h.is("Record-Route")) {
            Some(at) => m.insert_header(at, "Record-Route", &entry),
            None => {
                let at = m.before_body_headers();
                m.insert_header(at, "Record-Route", &entry);
            }
        }
    }
    let mut out = match routing::forward_request(&m, &listen.to_string(), &key) {
        Ok(o) => o,
        Err(_) => return,
    };
    routing::set_via_transport(&mut out, phone.transport.token());
    let dest = PhoneDest {
        transport: phone.transport,
        addr,
    };
    let sent = shared.to_phone(dest, &out).await;
    log(
        "network",
        &msg,
        if sent.is_ok() {
            "to phone"
        } else {
            "drop: the phone is gone"
        },
    );
    if sent.is_err()
        && method != "ACK"
        && let Some(r) = answer(
            Status::TemporarilyUnavailable,
            "the phone cannot be reached",
        )
    {
        let _ = flow.send(&r).await;
    }
}

/// A Digest challenge with `auth-int` taken out of its `qop` list (when
/// that leaves nothing, `qop="auth"`): what a phone whose REGISTER body
/// the edge changed can answer.
fn without_auth_int(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    let Some(at) = lower.find("qop=\"") else {
        return value.to_owned();
    };
    let start = at + "qop=\"".len();
    let Some(len) = value[start..].find('"') else {
        return value.to_owned();
    };
    let kept: Vec<&str> = value[start..start + len]
        .split(',')
        .map(str::trim)
        .filter(|q| !q.eq_ignore_ascii_case("auth-int"))
        .collect();
    let list = if kept.is_empty() {
        "auth".to_owned()
    } else {
        kept.join(",")
    };
    format!("{}{list}{}", &value[..start], &value[start + len..])
}

#[cfg(test)]
mod challenge_tests {
    use super::without_auth_int;

    #[test]
    fn auth_int_is_taken_out_of_the_qop_list() {
        let c = r#"Digest realm="example.com", nonce="n1", algorithm=MD5, qop="auth-int,auth""#;
        assert_eq!(
            without_auth_int(c),
            r#"Digest realm="example.com", nonce="n1", algorithm=MD5, qop="auth""#
        );
        let only = r#"Digest realm="x", nonce="n", qop="auth-int""#;
        assert_eq!(
            without_auth_int(only),
            r#"Digest realm="x", nonce="n", qop="auth""#
        );
        let none = r#"Digest realm="x", nonce="n""#;
        assert_eq!(without_auth_int(none), none);
    }
}
