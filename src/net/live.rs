//! The live server (docs/SPEC.md §7): listeners on UDP, TCP and TLS; each message
//! framed, checked against the limits, handed to a [`Service`] (a relay,
//! a registrar), and what it returns sent — back where the message came
//! from, or on to a [`Target`] over a connection that is reused while it
//! is busy and closed when idle. The server makes no protocol decision:
//! it frames, dispatches and sends, writes what the transport knows (RFC
//! 3261 §18.2.1: `received`, `rport`) on the requests it receives, and
//! answers the transport's keep-alives (CRLF, STUN).
//!
//! Nothing one message needs may hold up another. Every message runs in a
//! task of its own; messages of one call (one Call-ID) run in order, one
//! after the other, in a lane; calls run side by side. A next hop that is
//! slow to connect, or never answers, delays the messages of the calls
//! that go there. A service that blocks (a store, a private-key
//! operation) says so around the work ([`crate::blocking`]), and the
//! runtime moves the other messages to another thread meanwhile. UDP
//! listeners read with one task per runtime thread on the same socket.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, Semaphore, mpsc};

use super::frame::{Frame, Framer};
use super::tls::TlsSetup;
use super::{Hop, Hosts, NetError, Target, Transport};
use crate::keys::Cert;
use crate::sip::{Message, ParseError, routing};

/// Who a message came from, as the connection shows it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The transport it arrived on.
    pub transport: Transport,
    /// The far end's address (a stream's is its connection's).
    pub addr: SocketAddr,
    /// The local address it arrived at: the UDP listener's, or the
    /// connection's own end.
    pub local: SocketAddr,
    /// The certificate a TLS peer proved it holds, verified against the
    /// trust anchors (a TLS client must present one).
    pub cert: Option<Arc<Cert>>,
    /// The size of what arrived, in bytes.
    pub size: usize,
}

impl Peer {
    /// The source as a hop address: `IP:PORT` on UDP (a SIP endpoint sends
    /// from the port it listens on), the IP alone on a stream (whose
    /// source port is the connection's, not the peer's).
    pub fn source(&self) -> String {
        let ip = match self.addr.ip().to_canonical() {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        match self.transport {
            Transport::Udp => format!("{ip}:{}", self.addr.port()),
            _ => ip,
        }
    }
}

/// Where something the service returns goes.
#[derive(Debug, Clone)]
pub enum Dest {
    /// Back to the peer: on its connection, or to its source address.
    Back,
    /// To a next hop (a connection opened when there is none).
    To(Target),
    /// To a next hop whose address is still to be found: [`Hosts`], an
    /// address literal, or DNS (RFC 3263: SRV, then A/AAAA).
    Locate(Hop),
    /// On the flow a peer opened (RFC 5626): its open connection, or over
    /// UDP to its address; never a new connection. With the identity of
    /// the certificate a TLS peer presented
    /// ([`Cert::flow_id`]): once that connection is closed, the newest
    /// open one in from a peer with that identity (an edge restarted),
    /// never the one the message to send arrived on.
    Flow(Transport, SocketAddr, Option<[u8; 8]>),
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Back => f.write_str("the peer"),
            Dest::To(t) => write!(f, "{} {}", t.transport.token(), t.addr),
            Dest::Locate(h) => match h.uri.port {
                Some(p) => write!(f, "{} {}:{p}", h.transport.token(), h.uri.host),
                None => write!(f, "{} {}", h.transport.token(), h.uri.host),
            },
            Dest::Flow(t, a, _) => write!(f, "the {} flow from {a}", t.token()),
        }
    }
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The message.
    pub msg: Message,
    /// Where.
    pub dest: Dest,
    /// What to send instead when this cannot be sent (the same request
    /// over UDP when no stream can be opened; a Contact when a flow is
    /// gone).
    pub otherwise: Option<Box<Outgoing>>,
}

impl Outgoing {
    /// `msg` to `dest`, with nothing to fall back on.
    pub fn new(msg: Message, dest: Dest) -> Outgoing {
        Outgoing {
            msg,
            dest,
            otherwise: None,
        }
    }
}

/// One line of the server's log, as the service sees the message.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The request's method, or the response's CSeq method.
    pub method: String,
    /// The status of a response (received or sent).
    pub status: Option<u16>,
    /// The Call-ID.
    pub call_id: String,
    /// What the service decided (`forward`, `answer 403`, `drop: ...`).
    pub decision: String,
    /// What a relay checked and wrote of Route-Security (docs/SPEC.md §3.4).
    pub route_security: Option<String>,
}

/// What a service does with one message.
#[derive(Debug, Default)]
pub struct Handled {
    /// What to send.
    pub out: Vec<Outgoing>,
    /// The log line.
    pub record: Record,
}

/// A workflow the server runs on every message. It may block (a store, a
/// key operation) as long as it says so ([`crate::blocking::offload`]).
pub trait Service: Send + Sync + 'static {
    /// A message that parsed, from `peer` (its top Via already carries
    /// `received`/`rport`).
    fn handle(&self, msg: Message, peer: &Peer) -> Handled;

    /// Bytes that do not parse or frame (`why`): the answer to send back
    /// (a 400 when the Via and CSeq can be read), if any.
    fn unparsable(&self, bytes: &[u8], why: &str, peer: &Peer) -> Option<Message>;

    /// Sending `msg` to a next hop failed (`why`): the answer to send back
    /// instead (a stateless proxy answers a request 503), if any.
    fn unsent(&self, msg: &Message, why: &SendError) -> Option<Message>;
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No UDP listener of the address family to send from.
    #[error("no UDP listener to send to {0} from (listen on udp: too)")]
    NoUdpSocket(SocketAddr),
    /// The datagram did not go.
    #[error("{addr}: {source}")]
    Udp {
        /// Where to.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The connection could not be opened.
    #[error("{transport} {addr}: {why}")]
    Connect {
        /// The transport token.
        transport: &'static str,
        /// Where to.
        addr: SocketAddr,
        /// Why.
        why: String,
    },
    /// The connection closed before the message went.
    #[error("{0}: the connection closed")]
    Closed(SocketAddr),
    /// The flow a peer opened is gone.
    #[error("the flow to {0} is closed")]
    NoFlow(SocketAddr),
    /// The address of the next hop was not found.
    #[error(transparent)]
    Locate(#[from] NetError),
}

/// How the server runs.
#[derive(Clone)]
pub struct ServerConfig {
    /// What to listen on (port 0: any free port, see [`Server::local_addrs`]).
    pub listen: Vec<(Transport, SocketAddr)>,
    /// TLS, needed for a `tls` listener or target.
    pub tls: Option<Arc<TlsSetup>>,
    /// The largest message taken, in bytes; a datagram over it is dropped
    /// unread, a stream that carries one is closed.
    pub max_message: usize,
    /// A connection with nothing to read for this long is closed.
    pub idle: Duration,
    /// Messages per second a source address may send (a burst of the
    /// same size); beyond it they are dropped unread. `None`: no limit.
    pub rate: Option<u32>,
    /// Write one JSON line per message (through `tracing`).
    pub log: bool,
    /// Connections accepted at once, at most; past it a new one is closed
    /// at once (each holds a reader, a writer and a buffer of up to
    /// `max_message`).
    pub max_connections: usize,
    /// Messages in hand at once, at most: past it a datagram is dropped
    /// unread, and a stream is read no further until one is done.
    pub max_in_flight: usize,
    /// Connections one source address may hold open at once (M4); past
    /// it a new one is closed at once. 0: a quarter of `max_connections`,
    /// 16 at least (at most all).
    pub max_per_ip: usize,
    /// How long a message may take to arrive whole on a stream from its
    /// first byte (M4: a peer that trickles a byte now and then would
    /// hold its connection for ever, the idle timer restarting on each).
    pub message_time: Duration,
    /// Names resolved before DNS.
    pub hosts: Hosts,
    /// Ask DNS about names the hosts table does not know (else they
    /// cannot be reached).
    pub dns: bool,
    /// How long a connection may take to open.
    pub connect_timeout: Duration,
    /// Where a next hop a message names may be (H2); the listeners are
    /// added to its `never` at bind.
    pub hop_guard: crate::net::HopGuard,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: Vec::new(),
            tls: None,
            max_message: 65_535,
            idle: Duration::from_secs(120),
            rate: None,
            log: true,
            max_connections: 10_000,
            max_in_flight: 10_000,
            max_per_ip: 0,
            message_time: Duration::from_secs(10),
            hosts: Hosts::default(),
            dns: true,
            connect_timeout: Duration::from_secs(5),
            hop_guard: Default::default(),
        }
    }
}

type Sender = mpsc::Sender<Vec<u8>>;

/// Bytes a connection's writer gathers from its queue into one write.
const WRITE_BATCH: usize = 64 * 1024;
/// Source addresses the rate limit tracks at most.
const MAX_BUCKETS: usize = 100_000;
/// Messages one call may have waiting in its lane; past it, more are
/// dropped (a call has a handful in flight, a flood of one Call-ID would
/// otherwise queue without end).
const MAX_LANE: usize = 256;
/// How long a next hop that could not be reached is not tried again:
/// requests waiting for it fail at once instead of each waiting out the
/// connect timeout.
const UNREACHABLE_FOR: Duration = Duration::from_secs(2);

/// An open connection: where to write, and what it proved.
#[derive(Clone)]
struct Conn {
    tx: Sender,
    cert: Option<Arc<Cert>>,
    /// Its certificate's [`Cert::flow_id`] (TLS).
    peer: Option<[u8; 8]>,
    /// Whether the peer opened it.
    inbound: bool,
    /// When it opened.
    since: Instant,
    local: SocketAddr,
    /// Whether its peer's sent-by is registered already (once per
    /// connection, so a peer cannot fill the table with made-up ports).
    aliased: Arc<std::sync::atomic::AtomicBool>,
}

/// A message waiting for its turn.
struct Job {
    bytes: Vec<u8>,
    /// The message, or why it does not parse.
    msg: Result<Message, ParseError>,
    peer: Peer,
    back: Option<Conn>,
    arrived: Instant,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

type ConnKey = (Transport, SocketAddr);

struct Shared {
    service: Arc<dyn Service>,
    config: ServerConfig,
    /// The UDP sockets, each with its local address (asked once: a
    /// send looks for its family, and `getsockname` per datagram was a
    /// system call a message).
    udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
    /// Open connections by (transport, far-end address), and by the
    /// sent-by a peer's requests name (so a response finds the connection
    /// its request came on, RFC 3261 §18.2.2).
    conns: Mutex<HashMap<ConnKey, Conn>>,
    /// One dialler per next hop at a time; the others wait for its connection.
    dialling: Mutex<HashMap<ConnKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Next hops that could not be reached lately, and why.
    unreachable: Mutex<HashMap<ConnKey, (Instant, String)>>,
    /// Calls with a message in hand, and what waits behind it.
    lanes: Mutex<HashMap<String, VecDeque<Job>>>,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    /// Inbound connections open per source address.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    busy: AtomicUsize,
    idle_now: Notify,
    resolver: Option<hickory_resolver::TokioResolver>,
    slots: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    /// Set once the server stops taking messages.
    stop: tokio::sync::watch::Sender<bool>,
    /// The call workers, one per core: every message read (datagram or
    /// stream) goes to the worker its call hashes to.
    workers: Vec<mpsc::UnboundedSender<Handoff>>,
    /// Keyed at random: a sender cannot steer its calls onto one worker.
    spread: std::collections::hash_map::RandomState,
}

/// A bound server.
pub struct Server {
    shared: Arc<Shared>,
    /// What the call workers read from, started by [`Server::run`].
    workers: Vec<mpsc::UnboundedReceiver<Handoff>>,
    tcp: Vec<(Transport, TcpListener)>,
    bound: Vec<(Transport, SocketAddr)>,
}

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("{transport}:{addr}: {source}")]
pub struct BindError {
    /// Its transport (`udp`, `tcp`, `tls`).
    pub transport: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

impl Server {
    /// Bind every listener.
    pub async fn bind(
        mut config: ServerConfig,
        service: Arc<dyn Service>,
    ) -> Result<Server, BindError> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut bound = Vec::new();
        for &(transport, addr) in &config.listen {
            let fail = |source| BindError {
                transport: transport.token().to_ascii_lowercase(),
                addr,
                source,
            };
            match transport {
                Transport::Udp => {
                    let group = udp_group(addr).map_err(fail)?;
                    let first = group.first().map(|s| s.local_addr());
                    bound.push((transport, first.unwrap_or(Ok(addr)).map_err(fail)?));
                    for socket in group {
                        udp.push((socket.local_addr().map_err(fail)?, Arc::new(socket)));
                    }
                }
                Transport::Tcp | Transport::Tls => {
                    if transport == Transport::Tls && config.tls.is_none() {
                        return Err(fail(std::io::Error::other(
                            "a tls listener needs this server's certificate and key and the trust anchors",
                        )));
                    }
                    let l = TcpListener::bind(addr).await.map_err(fail)?;
                    bound.push((transport, l.local_addr().map_err(fail)?));
                    tcp.push((transport, l));
                }
            }
        }
        if config.max_per_ip == 0 {
            let all = config.max_connections.max(1);
            config.max_per_ip = (all / 4).max(all.min(16));
        }
        // Never a next hop a message names (H2, H5).
        config.hop_guard.never.extend(bound.iter().map(|(_, a)| *a));
        // Without a usable resolv.conf, names resolve from the hosts table only.
        let resolver = config
            .dns
            .then(|| {
                hickory_resolver::TokioResolver::builder_tokio()
                    .and_then(|b| b.build())
                    .ok()
            })
            .flatten();
        let (senders, workers) = (0..cores()).map(|_| mpsc::unbounded_channel()).unzip();
        Ok(Server {
            workers,
            shared: Arc::new(Shared {
                workers: senders,
                spread: std::collections::hash_map::RandomState::new(),
                resolver,
                slots: Arc::new(Semaphore::new(config.max_connections.max(1))),
                in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
                stop: tokio::sync::watch::Sender::new(false),
                service,
                config,
                udp,
                conns: Mutex::new(HashMap::new()),
                dialling: Mutex::new(HashMap::new()),
                unreachable: Mutex::new(HashMap::new()),
                lanes: Mutex::new(HashMap::new()),
                buckets: Mutex::new(HashMap::new()),
                per_ip: Mutex::new(HashMap::new()),
                busy: AtomicUsize::new(0),
                idle_now: Notify::new(),
            }),
            tcp,
            bound,
        })
    }

    /// What the listeners are bound to.
    pub fn local_addrs(&self) -> &[(Transport, SocketAddr)] {
        &self.bound
    }

    /// Serve until `shutdown` completes; then stop taking messages (each
    /// listener and connection stops reading; what it is handling goes
    /// out) and wait (at most `drain`) for those being handled.
    pub async fn run(self, shutdown: impl Future<Output = ()>, drain: Duration) {
        let mut tasks = Vec::new();
        // One reader per socket of a UDP listener's group (each source's
        // datagrams in their order) and per connection; each hands a
        // message to the worker of its call, one per core: a call's
        // messages are handled in the order they came, different calls on
        // every core (a stream that carries many calls too).
        for rx in self.workers {
            tasks.push(tokio::spawn(call_worker(Arc::clone(&self.shared), rx)));
        }
        for (_, socket) in &self.shared.udp {
            tasks.push(tokio::spawn(serve_udp(
                Arc::clone(&self.shared),
                Arc::clone(socket),
            )));
        }
        for (transport, listener) in self.tcp {
            tasks.push(tokio::spawn(accept(
                Arc::clone(&self.shared),
                transport,
                listener,
            )));
        }
        shutdown.await;
        self.shared.stop.send_replace(true);
        let until = Instant::now() + drain;
        for t in tasks {
            let _ = tokio::time::timeout(until.saturating_duration_since(Instant::now()), t).await;
        }
        while self.shared.busy.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            let _ = tokio::time::timeout(
                until.saturating_duration_since(Instant::now()),
                self.shared.idle_now.notified(),
            )
            .await;
        }
    }
}

/// The sockets of a UDP listener on `addr`: one per core, sharing the port
/// (SO_REUSEPORT: the kernel gives all the datagrams of one source to the
/// same socket, so each source's messages are read in their order, and
/// different sources on different cores). The port is first bound alone,
/// so that one another process holds is refused, and port 0 picks one.
fn udp_group(addr: SocketAddr) -> std::io::Result<Vec<UdpSocket>> {
    let alone = std::net::UdpSocket::bind(addr)?;
    let addr = alone.local_addr()?;
    drop(alone);
    let n = cores();
    let mut group = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        // Room for a burst while a reader is busy with a message.
        let _ = socket.set_recv_buffer_size(4 << 20);
        socket.bind(&addr.into())?;
        group.push(UdpSocket::from_std(socket.into())?);
    }
    Ok(group)
}

/// How many UDP readers and call workers: one per core (at most 8).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8))
}

/// A message read, on its way to its call's worker: its bytes, the
/// message (or why it does not parse), where from, the connection it came
/// on; its `slot` (of `--max-in-flight`) bounds how many wait.
type Handoff = (
    Vec<u8>,
    Result<Message, ParseError>,
    Peer,
    Option<Conn>,
    tokio::sync::OwnedSemaphorePermit,
);

/// Handles the messages of the calls given to it, in their order. Once the
/// server stops, it takes no more and ends when those given are handled.
async fn call_worker(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Handoff>) {
    let mut stop = shared.stop.subscribe();
    loop {
        let next = tokio::select! {
            biased;
            next = rx.recv() => Some(next),
            _ = stop.wait_for(|s| *s) => None,
        };
        let next = match next {
            Some(next) => next,
            None => {
                rx.close();
                rx.recv().await
            }
        };
        let Some((bytes, msg, peer, back, slot)) = next else {
            return;
        };
        dispatch(&shared, bytes, msg, peer, back, slot);
    }
}

/// Counts a message as in hand until dropped.
struct Busy(Arc<Shared>);

impl Busy {
    fn new(shared: &Arc<Shared>) -> Busy {
        shared.busy.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(shared))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle_now.notify_waiters();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The per-source rate limit: a token bucket per IP address.
    fn admit(&self, ip: IpAddr) -> bool {
        let Some(rate) = self.config.rate else {
            return true;
        };
        let rate = f64::from(rate.max(1));
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= MAX_BUCKETS {
            // Forget sources whose buckets are full again; if a flood of
            // (spoofed) sources leaves none full, forget them all: the
            // table stays bounded, and the limit starts afresh.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < rate
            });
            if buckets.len() >= MAX_BUCKETS / 2 {
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(ip).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn conn(&self, key: &ConnKey) -> Option<Conn> {
        lock(&self.conns)
            .get(key)
            .filter(|c| !c.tx.is_closed())
            .cloned()
    }

    /// The connection of a flow: the one it came in on while it is open,
    /// else the newest open connection in from a TLS peer whose
    /// certificate has the identity `peer` other than `arrived` (the
    /// connection the message to send came on: a restarted edge's own
    /// requests in its old dialogs go on outward, never back to it). A
    /// linear search, made only for a flow token this relay made whose
    /// connection has closed.
    fn flow_conn(
        &self,
        transport: Transport,
        addr: SocketAddr,
        peer: Option<[u8; 8]>,
        arrived: Option<&Conn>,
    ) -> Option<Conn> {
        let peer = peer.filter(|_| transport == Transport::Tls);
        // The connection at the flow's address is the flow only when it
        // is that identity's: after the flow's connection closed, another
        // client may hold that address (a NAT's port given again).
        if let Some(c) = self
            .conn(&(transport, addr))
            .filter(|c| peer.is_none() || c.peer == peer)
        {
            return Some(c);
        }
        let peer = peer?;
        lock(&self.conns)
            .iter()
            .filter(|((t, _), c)| {
                *t == Transport::Tls
                    && c.inbound
                    && c.peer == Some(peer)
                    && !c.tx.is_closed()
                    && !arrived.is_some_and(|a| a.tx.same_channel(&c.tx))
            })
            .max_by_key(|(_, c)| c.since)
            .map(|(_, c)| c.clone())
    }

    fn remember(&self, key: ConnKey, conn: &Conn, replace: bool) {
        let mut conns = lock(&self.conns);
        match conns.get(&key) {
            Some(c) if !replace && !c.tx.is_closed() => {}
            _ => {
                conns.insert(key, conn.clone());
            }
        }
    }

    fn forget(&self, tx: &Sender) {
        lock(&self.conns).retain(|_, c| !c.tx.same_channel(tx));
    }

    /// Give a message read to the worker of its call (by its Call-ID, else
    /// by its source).
    fn hand_off(
        &self,
        bytes: Vec<u8>,
        msg: Result<Message, ParseError>,
        peer: Peer,
        back: Option<Conn>,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        use std::hash::BuildHasher;
        let key = match msg.as_ref().ok().and_then(|m| m.call_id().ok()) {
            Some(call) => self.spread.hash_one(call),
            None => self.spread.hash_one(peer.addr),
        };
        let worker = &self.workers[(key % self.workers.len() as u64) as usize];
        let _ = worker.send((bytes, msg, peer, back, slot));
    }

    fn udp_for(&self, to: SocketAddr) -> Option<&Arc<UdpSocket>> {
        self.udp
            .iter()
            .find(|(local, _)| local.is_ipv4() == to.is_ipv4())
            .map(|(_, socket)| socket)
    }
}

async fn serve_udp(shared: Arc<Shared>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65_535];
    let mut stop = shared.stop.subscribe();
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((n, from)) = received else {
            continue;
        };
        let peer = Peer {
            transport: Transport::Udp,
            addr: from,
            local,
            cert: None,
            size: n,
        };
        let bytes = &buf[..n];
        if n > shared.config.max_message || !shared.admit(from.ip()) {
            log_drop(&shared, &peer, "over the size or rate limit");
            continue;
        }
        // RFC 5626 keep-alives on UDP: a CRLF pair (nothing to answer), or
        // a STUN Binding request (answered with the address it came from).
        if bytes.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            continue;
        }
        if super::stun::is_stun(bytes) {
            if let Some(answer) = super::stun::binding_response(bytes, from) {
                let _ = socket.send_to(&answer, from).await;
            }
            continue;
        }
        let Ok(slot) = Arc::clone(&shared.in_flight).try_acquire_owned() else {
            log_drop(
                &shared,
                &peer,
                "over --max-in-flight: too many messages in hand",
            );
            continue;
        };
        shared.hand_off(bytes.to_vec(), Message::parse(bytes), peer, None, slot);
    }
}

async fn accept(shared: Arc<Shared>, transport: Transport, listener: TcpListener) {
    let mut stop = shared.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((stream, from)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let local = stream
            .local_addr()
            .or_else(|_| listener.local_addr())
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let refused = |why: &str| {
            let peer = Peer {
                transport,
                addr: from,
                local,
                cert: None,
                size: 0,
            };
            log_drop(&shared, &peer, why);
        };
        let Ok(permit) = Arc::clone(&shared.slots).try_acquire_owned() else {
            drop(stream);
            refused("connection refused: --max-connections reached");
            continue;
        };
        let Some(per_ip) = PerIp::take(&shared, from.ip()) else {
            drop(stream);
            refused("connection refused: --max-connections-per-ip reached for its address");
            continue;
        };
        let slot = Slot {
            _permit: permit,
            _per_ip: per_ip,
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            match transport {
                Transport::Tls => {
                    let Some(tls) = shared.config.tls.clone() else {
                        return;
                    };
                    let handshake = tokio::time::timeout(
                        Duration::from_secs(10),
                        tls.acceptor().accept(stream),
                    )
                    .await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            let cert = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| Cert::from_der(c, "the TLS peer").ok())
                                .map(Arc::new);
                            start_conn(
                                shared,
                                stream,
                                (Transport::Tls, from),
                                local,
                                cert,
                                Some(slot),
                            );
                        }
                        Ok(Err(e)) => {
                            if shared.config.log {
                                tracing::info!(transport = "TLS", from = %from, refused = %e);
                            }
                        }
                        Err(_) => {}
                    }
                }
                _ => {
                    start_conn(shared, stream, (transport, from), local, None, Some(slot));
                }
            }
        });
    }
}

/// What an inbound connection holds while it is open: its place under
/// `--max-connections` and under its address's `--max-connections-per-ip`.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _per_ip: PerIp,
}

/// One of a source address's connections, given back when dropped.
struct PerIp {
    shared: std::sync::Weak<Shared>,
    ip: IpAddr,
}

impl PerIp {
    /// A place for one more connection from `ip`, if it has one left.
    fn take(shared: &Arc<Shared>, ip: IpAddr) -> Option<PerIp> {
        let ip = ip.to_canonical();
        let mut open = lock(&shared.per_ip);
        let n = open.entry(ip).or_insert(0);
        if *n >= shared.config.max_per_ip.max(1) {
            return None;
        }
        *n += 1;
        Some(PerIp {
            shared: Arc::downgrade(shared),
            ip,
        })
    }
}

impl Drop for PerIp {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let mut open = lock(&shared.per_ip);
            if let Some(n) = open.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&self.ip);
                }
            }
        }
    }
}

/// Start serving a connection: a writer task sends what is queued for
/// it, a reader task reads messages until it closes, is idle or breaks
/// the framing. It is registered under its far-end address (an inbound
/// one, holding its `slot`, replaces an older entry; an outbound one is
/// what was asked for).
fn start_conn<S>(
    shared: Arc<Shared>,
    stream: S,
    key: ConnKey,
    local: SocketAddr,
    cert: Option<Arc<Cert>>,
    slot: Option<Slot>,
) -> Conn
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let conn = Conn {
        tx: tx.clone(),
        peer: cert.as_ref().map(|c| c.flow_id()),
        inbound: slot.is_some(),
        since: Instant::now(),
        cert: cert.clone(),
        local,
        aliased: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    shared.remember(key, &conn, slot.is_some());
    tokio::spawn(async move {
        // What queued while the last write went out goes in one write
        // (one system call, fewer segments; one TLS record).
        while let Some(mut batch) = rx.recv().await {
            while batch.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if wr.write_all(&batch).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let reader = conn.clone();
    tokio::spawn(async move {
        let _slot = slot;
        read_loop(&shared, rd, key, &reader).await;
        shared.forget(&reader.tx);
    });
    conn
}

async fn read_loop<R: AsyncRead>(shared: &Arc<Shared>, rd: R, key: ConnKey, conn: &Conn) {
    let (transport, from) = key;
    let mut rd = std::pin::pin!(rd);
    let mut stop = shared.stop.subscribe();
    let tx = &conn.tx;
    let mut framer = Framer::new(shared.config.max_message);
    let mut buf = vec![0u8; 16_384];
    let peer = |size| Peer {
        transport,
        addr: from,
        local: conn.local,
        cert: conn.cert.clone(),
        size,
    };
    // When the first byte of the message still incomplete came.
    let mut started: Option<Instant> = None;
    loop {
        let wait = match started {
            Some(t) => (t + shared.config.message_time)
                .saturating_duration_since(Instant::now())
                .min(shared.config.idle),
            None => shared.config.idle,
        };
        let read = tokio::select! {
            r = tokio::time::timeout(wait, rd.read(&mut buf)) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let n = match read {
            Err(_) if started.is_some_and(|t| t.elapsed() >= shared.config.message_time) => {
                let why = format!(
                    "connection closed: a message took over {} s to arrive",
                    shared.config.message_time.as_secs_f32()
                );
                log_drop(shared, &peer(framer.pending().len()), &why);
                return;
            }
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        let mut framed = false;
        loop {
            match framer.next_frame() {
                Ok(Frame::Partial) => {
                    // The deadline runs from the first byte of the message
                    // that is not whole yet.
                    started = match (framer.pending().is_empty(), started) {
                        (true, _) => None,
                        (false, Some(t)) if !framed => Some(t),
                        (false, _) => Some(Instant::now()),
                    };
                    break;
                }
                Ok(Frame::KeepAlive { pong }) => {
                    framed = true;
                    if pong {
                        let _ = tx.send(b"\r\n".to_vec()).await;
                    }
                }
                Ok(Frame::Message(bytes)) => {
                    framed = true;
                    let peer = peer(bytes.len());
                    if !shared.admit(from.ip()) {
                        log_drop(shared, &peer, "over the rate limit");
                        continue;
                    }
                    let msg = match Message::parse(&bytes) {
                        Ok(msg) => msg,
                        Err(e) => {
                            // Bytes that framed but are not a SIP message:
                            // the stream cannot be trusted to be in step
                            // (RFC 3261 §18.3); it closes after the answer.
                            let why = e.to_string();
                            if let Some(answer) = shared.service.unparsable(&bytes, &why, &peer) {
                                let _ = tx.send(answer.to_bytes()).await;
                            }
                            log_drop(shared, &peer, "connection closed: not a SIP message");
                            return;
                        }
                    };
                    // A stream waits for room (back-pressure on its peer)
                    // rather than losing what it carries.
                    let Ok(slot) = Arc::clone(&shared.in_flight).acquire_owned().await else {
                        return;
                    };
                    shared.hand_off(bytes, Ok(msg), peer, Some(conn.clone()), slot);
                }
                Err(e) => {
                    let pending = framer.pending();
                    let peer = peer(pending.len());
                    if let Some(answer) = shared.service.unparsable(pending, &e.to_string(), &peer)
                    {
                        let _ = tx.send(answer.to_bytes()).await;
                    }
                    log_drop(shared, &peer, &format!("connection closed: {e}"));
                    return;
                }
            }
        }
    }
}

/// Hand a message to its lane: its call's, where it runs after the
/// messages of that call before it. A call with nothing in hand runs at
/// once, here on its call worker, as far as it goes without waiting
/// (its service's work, a datagram, a message queued on an open
/// connection); what must wait (a connection to open, a name to look
/// up) goes on in a task of its own, the call's lane held until it is
/// done, while the worker goes on.
fn dispatch(
    shared: &Arc<Shared>,
    bytes: Vec<u8>,
    msg: Result<Message, ParseError>,
    peer: Peer,
    back: Option<Conn>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let lane = msg
        .as_ref()
        .ok()
        .and_then(|m| m.call_id().ok())
        .map(str::to_owned);
    let job = Job {
        bytes,
        msg,
        peer,
        back,
        arrived: Instant::now(),
        _slot: slot,
    };
    let Some(lane) = lane else {
        // Nothing to order it by: it goes on its own.
        if let Some(rest) = process_now(shared, job) {
            let shared = Arc::clone(shared);
            let busy = Busy::new(&shared);
            tokio::spawn(async move {
                finish(&shared, rest).await;
                drop(busy);
            });
        }
        return;
    };
    {
        let mut lanes = lock(&shared.lanes);
        if let Some(waiting) = lanes.get_mut(&lane) {
            if waiting.len() >= MAX_LANE {
                drop(lanes);
                log_drop(shared, &job.peer, "its call has too many messages waiting");
            } else {
                waiting.push_back(job);
            }
            return;
        }
        lanes.insert(lane.clone(), VecDeque::new());
    }
    let busy = Busy::new(shared);
    let rest = process_now(shared, job);
    let next = match rest {
        Some(_) => None,
        None => next_in_lane(shared, &lane),
    };
    if rest.is_none() && next.is_none() {
        return;
    }
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let mut next = next;
        if let Some(rest) = rest {
            finish(&shared, rest).await;
            next = next_in_lane(&shared, &lane);
        }
        while let Some(job) = next {
            if let Some(rest) = process_now(&shared, job) {
                finish(&shared, rest).await;
            }
            next = next_in_lane(&shared, &lane);
        }
        drop(busy);
    });
}

/// The next message waiting in `lane`, else the lane is closed.
fn next_in_lane(shared: &Shared, lane: &str) -> Option<Job> {
    let mut lanes = lock(&shared.lanes);
    match lanes.get_mut(lane).and_then(VecDeque::pop_front) {
        Some(next) => Some(next),
        None => {
            lanes.remove(lane);
            None
        }
    }
}

/// The sent-by of a request's top Via when it is the peer's own address
/// with another port (the port it listens on): responses to its requests
/// name it, and go back on its connection.
fn via_alias(msg: &Message, from: SocketAddr) -> Option<SocketAddr> {
    let via = msg.top_via().ok()?;
    let port = via.port.unwrap_or(5060);
    let ip: IpAddr = via
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    (ip == from.ip() && port != from.port()).then(|| SocketAddr::new(ip, port))
}

/// What is left to do for a message once its service handled it: what
/// could not go at once, and its log line.
struct Rest {
    out: Vec<Outgoing>,
    record: Record,
    peer: Peer,
    back: Option<Conn>,
    arrived: Instant,
    errors: Vec<String>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// One message, as far as it goes without waiting: hand it to the
/// service, send what can go at once; the rest (`None`: nothing left, the
/// log line written).
fn process_now(shared: &Arc<Shared>, job: Job) -> Option<Rest> {
    let Job {
        bytes,
        msg,
        peer,
        back,
        arrived,
        _slot,
    } = job;
    let handled = match msg {
        Ok(mut msg) => {
            if msg.is_request() {
                if let Some(conn) = &back
                    && !conn.aliased.load(Ordering::Relaxed)
                    && let Some(alias) = via_alias(&msg, peer.addr)
                {
                    conn.aliased.store(true, Ordering::Relaxed);
                    shared.remember((peer.transport, alias), conn, false);
                }
                routing::mark_received(&mut msg, peer.addr);
            }
            shared.service.handle(msg, &peer)
        }
        Err(why) => {
            let why = why.to_string();
            let answer = shared.service.unparsable(&bytes, &why, &peer);
            Handled {
                record: Record {
                    decision: match &answer {
                        Some(a) => format!("answer {}", a.status().unwrap_or_default()),
                        None => format!("drop: {why}"),
                    },
                    ..Record::default()
                },
                out: answer
                    .into_iter()
                    .map(|msg| Outgoing::new(msg, Dest::Back))
                    .collect(),
            }
        }
    };
    let mut later = Vec::new();
    for out in handled.out {
        if !try_deliver(shared, &out, &peer, back.as_ref()) {
            later.push(out);
        }
    }
    let rest = Rest {
        out: later,
        record: handled.record,
        peer,
        back,
        arrived,
        errors: Vec::new(),
        _slot,
    };
    if rest.out.is_empty() {
        log_handled(shared, &rest);
        return None;
    }
    Some(rest)
}

/// Send what could not go at once (a connection to open, a name to look
/// up, a failure to answer), then log.
async fn finish(shared: &Arc<Shared>, mut rest: Rest) {
    let outs = std::mem::take(&mut rest.out);
    for out in outs {
        deliver(
            shared,
            out,
            &rest.peer,
            rest.back.as_ref(),
            &mut rest.errors,
        )
        .await;
    }
    log_handled(shared, &rest);
}

fn log_handled(shared: &Shared, rest: &Rest) {
    if !shared.config.log {
        return;
    }
    let latency_us = rest.arrived.elapsed().as_micros() as u64;
    let r = &rest.record;
    let send_error = (!rest.errors.is_empty()).then(|| rest.errors.join("; "));
    let peer_cert = rest.peer.cert.as_ref().map(|c| c.name());
    tracing::info!(
        transport = rest.peer.transport.token(),
        from = %rest.peer.addr,
        method = %r.method,
        call_id = %r.call_id,
        decision = %r.decision,
        route_security = r.route_security.as_deref(),
        latency_us,
        status = r.status,
        peer_cert,
        send_error,
    );
}

/// Send `out` if it can go without waiting: a datagram, or a message
/// queued on an open connection, to an address known without DNS.
/// Whether it went (anything else, a failure too, is for [`deliver`]).
fn try_deliver(shared: &Shared, out: &Outgoing, peer: &Peer, back: Option<&Conn>) -> bool {
    let udp = |to: SocketAddr| {
        shared
            .udp_for(to)
            .is_some_and(|s| s.try_send_to(&out.msg.to_bytes(), to).is_ok())
    };
    let queued =
        |conn: Option<Conn>| conn.is_some_and(|c| c.tx.try_send(out.msg.to_bytes()).is_ok());
    let to = |target: &Target| match target.transport {
        Transport::Udp => udp(target.addr),
        _ => queued(shared.conn(&(target.transport, target.addr))),
    };
    match &out.dest {
        Dest::Back => match back {
            Some(conn) => queued(Some(conn.clone())),
            None => udp(peer.addr),
        },
        Dest::To(target) => to(target),
        Dest::Locate(hop) => hop
            .known_checked(&shared.config.hosts, &shared.config.hop_guard)
            .is_some_and(|t| t.is_ok_and(|t| to(&t))),
        Dest::Flow(transport, addr, peer) => match transport {
            Transport::Udp => udp(*addr),
            _ => queued(shared.flow_conn(*transport, *addr, *peer, back)),
        },
    }
}

/// Send `out`; when it cannot go, what it says to send instead, else the
/// service's answer back to the peer.
async fn deliver(
    shared: &Arc<Shared>,
    out: Outgoing,
    peer: &Peer,
    back: Option<&Conn>,
    errors: &mut Vec<String>,
) {
    let mut next = Some(out);
    let mut fell_back = false;
    while let Some(out) = next.take() {
        let sent = match &out.dest {
            Dest::Back => send_back(shared, &out.msg, peer, back).await,
            Dest::To(target) => send_to(shared, &out.msg, target).await,
            Dest::Flow(transport, addr, to) => {
                send_on_flow(shared, &out.msg, *transport, *addr, *to, back).await
            }
            Dest::Locate(hop) => match locate(shared, hop).await {
                Ok(target) => send_to(shared, &out.msg, &target).await,
                Err(e) => Err(e.into()),
            },
        };
        let Err(why) = sent else {
            if fell_back {
                errors.push(format!("sent instead to {}", out.dest));
            }
            return;
        };
        errors.push(why.to_string());
        match out.otherwise {
            Some(instead) => {
                fell_back = true;
                next = Some(*instead);
            }
            None => {
                if let Some(answer) = shared.service.unsent(&out.msg, &why) {
                    let _ = send_back(shared, &answer, peer, back).await;
                }
            }
        }
    }
}

fn log_drop(shared: &Shared, peer: &Peer, why: &str) {
    if shared.config.log {
        tracing::info!(
            transport = peer.transport.token(),
            from = %peer.addr,
            size = peer.size,
            decision = format!("drop: {why}"),
        );
    }
}

/// How long a DNS answer may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(3);

/// The address of `hop` (RFC 3263 §4.2): an address literal or a hosts
/// entry as they are; else, with a port, the name's A/AAAA records; else
/// its SRV records for the transport (lowest priority, then highest
/// weight), then A/AAAA with the default port. The resolver caches.
async fn locate(shared: &Arc<Shared>, hop: &Hop) -> Result<Target, NetError> {
    let guard = &shared.config.hop_guard;
    if let Some(t) = hop.known_checked(&shared.config.hosts, guard) {
        return t;
    }
    let name = hop.name();
    let resolver = shared
        .resolver
        .as_ref()
        .ok_or_else(|| NetError::DnsOff(name.clone()))?;
    let ask = |what: &str| NetError::DnsTimeout(what.to_owned(), DNS_TIMEOUT.as_secs());
    let (host, port) = match hop.uri.port {
        Some(port) => (format!("{name}."), port),
        None => {
            let srv = hop.srv_name();
            let found = tokio::time::timeout(DNS_TIMEOUT, resolver.srv_lookup(srv.as_str()))
                .await
                .map_err(|_| ask(&srv))?
                .ok();
            let best = found.as_ref().and_then(|l| {
                l.answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        hickory_resolver::proto::rr::RData::SRV(s) => Some(s),
                        _ => None,
                    })
                    .min_by_key(|s| (s.priority, std::cmp::Reverse(s.weight)))
                    .map(|s| (s.target.to_string(), s.port))
            });
            best.unwrap_or((format!("{name}."), hop.transport.default_port()))
        }
    };
    let ips = tokio::time::timeout(DNS_TIMEOUT, resolver.lookup_ip(host.as_str()))
        .await
        .map_err(|_| ask(&host))?
        .map_err(|e| NetError::Dns(host.clone(), e.to_string()))?;
    // Over UDP, an address of a family this server has a socket for.
    let usable = |ip: &IpAddr| {
        hop.transport != Transport::Udp || shared.udp_for(SocketAddr::new(*ip, port)).is_some()
    };
    let ip = ips
        .iter()
        .find(usable)
        .or_else(|| ips.iter().next())
        .ok_or_else(|| NetError::NoAddress(host.clone()))?;
    if hop.guarded {
        guard.check(SocketAddr::new(ip, port), crate::net::Found::Dns)?;
    }
    Ok(Target {
        transport: hop.transport,
        addr: SocketAddr::new(ip, port),
        name,
    })
}

async fn send_back(
    shared: &Arc<Shared>,
    msg: &Message,
    peer: &Peer,
    back: Option<&Conn>,
) -> Result<(), SendError> {
    let bytes = msg.to_bytes();
    match back {
        Some(conn) => conn
            .tx
            .send(bytes)
            .await
            .map_err(|_| SendError::Closed(peer.addr)),
        None => send_datagram(shared, &bytes, peer.addr).await,
    }
}

async fn send_datagram(shared: &Shared, bytes: &[u8], to: SocketAddr) -> Result<(), SendError> {
    let socket = shared.udp_for(to).ok_or(SendError::NoUdpSocket(to))?;
    socket
        .send_to(bytes, to)
        .await
        .map(drop)
        .map_err(|source| SendError::Udp { addr: to, source })
}

async fn send_on_flow(
    shared: &Arc<Shared>,
    msg: &Message,
    transport: Transport,
    addr: SocketAddr,
    peer: Option<[u8; 8]>,
    arrived: Option<&Conn>,
) -> Result<(), SendError> {
    let bytes = msg.to_bytes();
    if transport == Transport::Udp {
        return send_datagram(shared, &bytes, addr).await;
    }
    let conn = shared
        .flow_conn(transport, addr, peer, arrived)
        .ok_or(SendError::NoFlow(addr))?;
    conn.tx
        .send(bytes)
        .await
        .map_err(|_| SendError::NoFlow(addr))
}

async fn send_to(shared: &Arc<Shared>, msg: &Message, target: &Target) -> Result<(), SendError> {
    let bytes = msg.to_bytes();
    match target.transport {
        Transport::Udp => send_datagram(shared, &bytes, target.addr).await,
        _ => {
            let conn = match shared.conn(&(target.transport, target.addr)) {
                Some(c) => c,
                None => dial(shared, target).await?,
            };
            conn.tx
                .send(bytes)
                .await
                .map_err(|_| SendError::Closed(target.addr))
        }
    }
}

/// The connection to `target`: one dialler at a time per next hop (the
/// others wait for its connection); a next hop that could not be reached
/// lately is not tried again at once.
async fn dial(shared: &Arc<Shared>, target: &Target) -> Result<Conn, SendError> {
    let key = (target.transport, target.addr);
    let recent = |shared: &Shared| {
        let mut unreachable = lock(&shared.unreachable);
        unreachable.retain(|_, (at, _)| at.elapsed() < UNREACHABLE_FOR);
        unreachable.get(&key).map(|(_, why)| why.clone())
    };
    let failed = |why: String| SendError::Connect {
        transport: target.transport.token(),
        addr: target.addr,
        why,
    };
    if let Some(why) = recent(shared) {
        return Err(failed(why));
    }
    let gate = Arc::clone(lock(&shared.dialling).entry(key).or_default());
    let result = {
        let _turn = gate.lock().await;
        match (shared.conn(&key), recent(shared)) {
            (Some(c), _) => Ok(c),
            (None, Some(why)) => Err(failed(why)),
            (None, None) => {
                let dialled = connect(shared, target).await;
                if let Err(SendError::Connect { why, .. }) = &dialled {
                    lock(&shared.unreachable).insert(key, (Instant::now(), why.clone()));
                }
                dialled
            }
        }
    };
    {
        let mut dialling = lock(&shared.dialling);
        if Arc::strong_count(&gate) <= 2 {
            dialling.remove(&key);
        }
    }
    result
}

/// Open a connection to `target`, and serve what comes back on it.
async fn connect(shared: &Arc<Shared>, target: &Target) -> Result<Conn, SendError> {
    let fail = |why: &dyn std::fmt::Display| SendError::Connect {
        transport: target.transport.token(),
        addr: target.addr,
        why: why.to_string(),
    };
    let stream = tokio::time::timeout(
        shared.config.connect_timeout,
        TcpStream::connect(target.addr),
    )
    .await
    .map_err(|_| fail(&"connect timed out"))?
    .map_err(|e| fail(&e))?;
    let _ = stream.set_nodelay(true);
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let key = (target.transport, target.addr);
    match target.transport {
        Transport::Tls => {
            let tls = shared
                .config
                .tls
                .clone()
                .ok_or_else(|| fail(&"TLS is not configured (give --identity and --trust)"))?;
            let (connector, name) = tls.connector(&target.name).map_err(|e| fail(&e))?;
            let stream =
                tokio::time::timeout(Duration::from_secs(10), connector.connect(name, stream))
                    .await
                    .map_err(|_| fail(&"TLS handshake timed out"))?
                    .map_err(|e| fail(&e))?;
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| Cert::from_der(c, &target.name).ok())
                .map(Arc::new);
            Ok(start_conn(
                Arc::clone(shared),
                stream,
                key,
                local,
                cert,
                None,
            ))
        }
        _ => Ok(start_conn(
            Arc::clone(shared),
            stream,
            key,
            local,
            None,
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    impl Service for Nothing {
        fn handle(&self, _: Message, _: &Peer) -> Handled {
            Handled::default()
        }
        fn unparsable(&self, _: &[u8], _: &str, _: &Peer) -> Option<Message> {
            None
        }
        fn unsent(&self, _: &Message, _: &SendError) -> Option<Message> {
            None
        }
    }

    fn shared(config: ServerConfig) -> Shared {
        Shared {
            service: Arc::new(Nothing),
            config,
            udp: Vec::new(),
            conns: Mutex::new(HashMap::new()),
            dialling: Mutex::new(HashMap::new()),
            unreachable: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            per_ip: Mutex::new(HashMap::new()),
            busy: AtomicUsize::new(0),
            idle_now: Notify::new(),
            resolver: None,
            slots: Arc::new(Semaphore::new(1)),
            in_flight: Arc::new(Semaphore::new(1)),
            stop: tokio::sync::watch::Sender::new(false),
            workers: Vec::new(),
            spread: std::collections::hash_map::RandomState::new(),
        }
    }

    #[test]
    fn a_closed_flow_goes_on_in_the_newest_connection_of_its_certificate_never_back() {
        let shared = shared(ServerConfig::default());
        let local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        let mut keep = Vec::new();
        let mut conn = |port: u16, peer: Option<[u8; 8]>, inbound: bool, open: bool| {
            let (tx, rx) = mpsc::channel::<Vec<u8>>(1);
            if open {
                keep.push(rx);
            }
            let c = Conn {
                tx,
                cert: None,
                peer,
                inbound,
                since: Instant::now(),
                local,
                aliased: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            };
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            shared.remember((Transport::Tls, addr), &c, true);
            std::thread::sleep(Duration::from_millis(2));
            (addr, c)
        };
        let (alice, mallory) = (Some(*b"alice-id"), Some(*b"mallory!"));
        let (old, _) = conn(40_000, alice, true, false);
        conn(40_001, alice, false, true);
        conn(40_002, mallory, true, true);
        conn(40_003, None, true, true);
        let same = |a: Option<Conn>, b: &Conn| a.is_some_and(|a| a.tx.same_channel(&b.tx));
        // alice's flow is closed and she has no other inbound connection:
        // not mallory's, not one without a certificate, not one this
        // relay opened.
        assert!(shared.flow_conn(Transport::Tls, old, alice, None).is_none());
        assert!(shared.flow_conn(Transport::Tls, old, None, None).is_none());
        // She reconnects (an edge restarted): that connection, the newest.
        let (_, again) = conn(40_010, alice, true, true);
        assert!(same(
            shared.flow_conn(Transport::Tls, old, alice, None),
            &again
        ));
        let (_, newest) = conn(40_011, alice, true, true);
        assert!(same(
            shared.flow_conn(Transport::Tls, old, alice, None),
            &newest
        ));
        // Never back on the connection the message came on.
        assert!(same(
            shared.flow_conn(Transport::Tls, old, alice, Some(&newest)),
            &again
        ));
        // A flow whose connection is open is that connection.
        let (open, its) = conn(40_020, alice, true, true);
        assert!(same(
            shared.flow_conn(Transport::Tls, open, alice, None),
            &its
        ));
        // TCP carries no identity.
        assert!(shared.flow_conn(Transport::Tcp, old, alice, None).is_none());
    }

    #[test]
    fn a_flood_of_sources_cannot_grow_the_rate_table_without_bound() {
        let shared = shared(ServerConfig {
            rate: Some(1),
            ..ServerConfig::default()
        });
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        assert!(shared.admit(ip(1)));
        assert!(!shared.admit(ip(1)), "a second message in the same second");
        for i in 2..(3 * MAX_BUCKETS as u32) {
            shared.admit(ip(i));
            assert!(shared.buckets.lock().unwrap().len() <= MAX_BUCKETS);
        }
    }
}
