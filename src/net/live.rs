//! The live server (SPEC §7): listeners on UDP, TCP and TLS; each message
//! framed, checked against the limits, handed to a [`Service`] (a relay,
//! a registrar), and what it returns sent — back where the message came
//! from, or on to a [`Target`] over a connection that is reused while it
//! is busy and closed when idle. The server makes no protocol decision:
//! it frames, dispatches and sends, and writes what the transport knows
//! (RFC 3261 §18.2.1: `received`, `rport`) on the requests it receives.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc};

use super::frame::{Frame, Framer};
use super::tls::TlsSetup;
use super::{Hop, Hosts, Target, Transport};
use crate::keys::Cert;
use crate::sip::{Message, routing};

/// Who a message came from, as the connection shows it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The transport it arrived on.
    pub transport: Transport,
    /// The far end's address (a stream's is its connection's).
    pub addr: SocketAddr,
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
        let ip = match self.addr.ip() {
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
    /// To a next hop.
    To(Target),
    /// To a next hop whose address is still to be found: [`Hosts`], an
    /// address literal, or DNS (RFC 3263: SRV, then A/AAAA).
    Locate(Hop),
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The message.
    pub msg: Message,
    /// Where.
    pub dest: Dest,
}

/// One line of the server's log, as the service sees the message.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Record {
    /// The request's method, or the response's CSeq method.
    pub method: String,
    /// The status of a response (received or sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The Call-ID.
    pub call_id: String,
    /// What the service decided (`forward`, `answer 403`, `drop: ...`).
    pub decision: String,
}

/// What a service does with one message.
#[derive(Debug, Default)]
pub struct Handled {
    /// What to send.
    pub out: Vec<Outgoing>,
    /// The log line.
    pub record: Record,
}

/// A workflow the server runs on every message.
pub trait Service: Send + Sync + 'static {
    /// A message that parsed, from `peer` (its top Via already carries
    /// `received`/`rport`).
    fn handle(&self, msg: Message, peer: &Peer) -> Handled;

    /// Bytes that do not parse or frame (`why`): the answer to send back
    /// (a 400 when the Via and CSeq can be read), if any.
    fn unparsable(&self, bytes: &[u8], why: &str, peer: &Peer) -> Option<Message>;

    /// Sending `msg` to a next hop failed (`why`): the answer to send back
    /// instead (a stateless proxy answers a request 503), if any.
    fn unsent(&self, msg: &Message, why: &str) -> Option<Message>;
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
    /// Write one JSON line per message to standard error.
    pub log: bool,
    /// Connections accepted at once, at most; past it a new one is closed
    /// at once (each holds a reader, a writer and a buffer of up to
    /// `max_message`).
    pub max_connections: usize,
    /// Names resolved before DNS.
    pub hosts: Hosts,
    /// Ask DNS about names the hosts table does not know (else they
    /// cannot be reached).
    pub dns: bool,
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
            hosts: Hosts::default(),
            dns: true,
        }
    }
}

type Sender = mpsc::Sender<Vec<u8>>;

/// Source addresses the rate limit tracks at most.
const MAX_BUCKETS: usize = 100_000;

/// An open connection: where to write, and what it proved.
#[derive(Clone)]
struct Conn {
    tx: Sender,
    cert: Option<Arc<Cert>>,
    /// Whether its peer's sent-by is registered already (once per
    /// connection, so a peer cannot fill the table with made-up ports).
    aliased: Arc<std::sync::atomic::AtomicBool>,
}

struct Shared {
    service: Arc<dyn Service>,
    config: ServerConfig,
    udp: Vec<Arc<UdpSocket>>,
    /// Open connections by (transport, far-end address), and by the
    /// sent-by a peer's requests name (so a response finds the connection
    /// its request came on, RFC 3261 §18.2.2).
    conns: Mutex<HashMap<(Transport, SocketAddr), Conn>>,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    busy: AtomicUsize,
    idle_now: Notify,
    resolver: Option<hickory_resolver::TokioResolver>,
    slots: Arc<tokio::sync::Semaphore>,
    /// Set once the server stops taking messages.
    stop: tokio::sync::watch::Sender<bool>,
}

/// A bound server.
pub struct Server {
    shared: Arc<Shared>,
    tcp: Vec<(Transport, TcpListener)>,
    bound: Vec<(Transport, SocketAddr)>,
}

impl Server {
    /// Bind every listener.
    pub async fn bind(config: ServerConfig, service: Arc<dyn Service>) -> std::io::Result<Server> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut bound = Vec::new();
        for &(transport, addr) in &config.listen {
            match transport {
                Transport::Udp => {
                    let s = UdpSocket::bind(addr).await?;
                    bound.push((transport, s.local_addr()?));
                    udp.push(Arc::new(s));
                }
                Transport::Tcp | Transport::Tls => {
                    if transport == Transport::Tls && config.tls.is_none() {
                        return Err(std::io::Error::other(
                            "a tls listener needs this server's certificate and key and the trust anchors",
                        ));
                    }
                    let l = TcpListener::bind(addr).await?;
                    bound.push((transport, l.local_addr()?));
                    tcp.push((transport, l));
                }
            }
        }
        // Without a usable resolv.conf, names resolve from the hosts table only.
        let resolver = config
            .dns
            .then(|| {
                hickory_resolver::TokioResolver::builder_tokio()
                    .and_then(|b| b.build())
                    .ok()
            })
            .flatten();
        Ok(Server {
            shared: Arc::new(Shared {
                resolver,
                slots: Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1))),
                stop: tokio::sync::watch::Sender::new(false),
                service,
                config,
                udp,
                conns: Mutex::new(HashMap::new()),
                buckets: Mutex::new(HashMap::new()),
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
        for socket in &self.shared.udp {
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

/// Counts a message as in hand until dropped.
struct Busy<'a>(&'a Shared);

impl<'a> Busy<'a> {
    fn new(shared: &'a Shared) -> Busy<'a> {
        shared.busy.fetch_add(1, Ordering::SeqCst);
        Busy(shared)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle_now.notify_waiters();
        }
    }
}

impl Shared {
    /// The per-source rate limit: a token bucket per IP address.
    fn admit(&self, ip: IpAddr) -> bool {
        let Some(rate) = self.config.rate else {
            return true;
        };
        let rate = f64::from(rate.max(1));
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
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

    fn conn(&self, key: &(Transport, SocketAddr)) -> Option<Conn> {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.get(key).filter(|c| !c.tx.is_closed()).cloned()
    }

    fn remember(&self, key: (Transport, SocketAddr), conn: &Conn, replace: bool) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        match conns.get(&key) {
            Some(c) if !replace && !c.tx.is_closed() => {}
            _ => {
                conns.insert(key, conn.clone());
            }
        }
    }

    fn forget(&self, tx: &Sender) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|_, c| !c.tx.same_channel(tx));
    }

    fn udp_for(&self, to: SocketAddr) -> Option<&Arc<UdpSocket>> {
        self.udp
            .iter()
            .find(|s| s.local_addr().is_ok_and(|l| l.is_ipv4() == to.is_ipv4()))
    }
}

async fn serve_udp(shared: Arc<Shared>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65_535];
    let mut stop = shared.stop.subscribe();
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
            cert: None,
            size: n,
        };
        if n > shared.config.max_message || !shared.admit(from.ip()) {
            log_drop(&shared, &peer, "over the size or rate limit");
            continue;
        }
        // RFC 5626 keep-alives on UDP are a CRLF pair; nothing to answer.
        if buf[..n].iter().all(|b| matches!(b, b'\r' | b'\n')) {
            continue;
        }
        let bytes = buf[..n].to_vec();
        let _ = process(&shared, bytes, &peer, None).await;
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
        let Ok(slot) = Arc::clone(&shared.slots).try_acquire_owned() else {
            drop(stream);
            let peer = Peer {
                transport,
                addr: from,
                cert: None,
                size: 0,
            };
            log_drop(
                &shared,
                &peer,
                "connection refused: --max-connections reached",
            );
            continue;
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
                            start_conn(shared, stream, Transport::Tls, from, cert, Some(slot));
                        }
                        Ok(Err(e)) => log_line(
                            &shared,
                            &serde_json::json!({"transport": "TLS", "from": from.to_string(), "refused": e.to_string()}),
                        ),
                        Err(_) => {}
                    }
                }
                _ => {
                    start_conn(shared, stream, transport, from, None, Some(slot));
                }
            }
        });
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
    transport: Transport,
    from: SocketAddr,
    cert: Option<Arc<Cert>>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Conn
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let conn = Conn {
        tx: tx.clone(),
        cert: cert.clone(),
        aliased: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    shared.remember((transport, from), &conn, slot.is_some());
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let reader = conn.clone();
    tokio::spawn(async move {
        let _slot = slot;
        read_loop(&shared, rd, transport, from, &reader).await;
        shared.forget(&reader.tx);
    });
    conn
}

async fn read_loop<R: AsyncRead>(
    shared: &Arc<Shared>,
    rd: R,
    transport: Transport,
    from: SocketAddr,
    conn: &Conn,
) {
    let mut rd = std::pin::pin!(rd);
    let mut stop = shared.stop.subscribe();
    let tx = &conn.tx;
    let mut framer = Framer::new(shared.config.max_message);
    let mut buf = vec![0u8; 16_384];
    let peer = |size| Peer {
        transport,
        addr: from,
        cert: conn.cert.clone(),
        size,
    };
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(shared.config.idle, rd.read(&mut buf)) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let n = match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_frame() {
                Ok(Frame::Partial) => break,
                Ok(Frame::KeepAlive { pong }) => {
                    if pong {
                        let _ = tx.send(b"\r\n".to_vec()).await;
                    }
                }
                Ok(Frame::Message(bytes)) => {
                    let peer = peer(bytes.len());
                    if !shared.admit(from.ip()) {
                        log_drop(shared, &peer, "over the rate limit");
                        continue;
                    }
                    if !process(shared, bytes, &peer, Some(conn)).await {
                        // Bytes that framed but are not a SIP message: the
                        // stream cannot be trusted to be in step (RFC 3261
                        // §18.3); it closes after the answer.
                        log_drop(shared, &peer, "connection closed: not a SIP message");
                        return;
                    }
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

/// One message: parse, hand to the service, send what it returns, log.
/// Whether it parsed.
async fn process(shared: &Arc<Shared>, bytes: Vec<u8>, peer: &Peer, conn: Option<&Conn>) -> bool {
    let back = conn.map(|c| &c.tx);
    let mut parsed = true;
    let _busy = Busy::new(shared);
    let start = Instant::now();
    let handled = match Message::parse(&bytes) {
        Ok(mut msg) => {
            if msg.is_request() {
                if let Some(conn) = conn
                    && !conn.aliased.load(Ordering::Relaxed)
                    && let Some(alias) = via_alias(&msg, peer.addr)
                {
                    conn.aliased.store(true, Ordering::Relaxed);
                    shared.remember((peer.transport, alias), conn, false);
                }
                routing::mark_received(&mut msg, peer.addr);
            }
            shared.service.handle(msg, peer)
        }
        Err(e) => {
            parsed = false;
            let answer = shared.service.unparsable(&bytes, &e.to_string(), peer);
            Handled {
                record: Record {
                    decision: match &answer {
                        Some(a) => format!("answer {}", a.status().unwrap_or_default()),
                        None => format!("drop: {e}"),
                    },
                    ..Record::default()
                },
                out: answer
                    .into_iter()
                    .map(|msg| Outgoing {
                        msg,
                        dest: Dest::Back,
                    })
                    .collect(),
            }
        }
    };
    let mut errors = Vec::new();
    for out in handled.out {
        let sent = match &out.dest {
            Dest::Back => send_back(shared, &out.msg, peer, back).await,
            Dest::To(target) => send_to(shared, &out.msg, target).await,
            Dest::Locate(hop) => match locate(shared, hop).await {
                Ok(target) => send_to(shared, &out.msg, &target).await,
                Err(e) => Err(e),
            },
        };
        if let Err(why) = sent {
            errors.push(why.clone());
            if let Some(answer) = shared.service.unsent(&out.msg, &why) {
                let _ = send_back(shared, &answer, peer, back).await;
            }
        }
    }
    if shared.config.log {
        let mut line = serde_json::json!({
            "transport": peer.transport.token(),
            "from": peer.addr.to_string(),
            "method": handled.record.method,
            "call_id": handled.record.call_id,
            "decision": handled.record.decision,
            "latency_us": start.elapsed().as_micros() as u64,
        });
        if let Some(status) = handled.record.status {
            line["status"] = status.into();
        }
        if let Some(c) = &peer.cert {
            line["peer_cert"] = c.name().into();
        }
        if !errors.is_empty() {
            line["send_error"] = errors.join("; ").into();
        }
        log_line(shared, &line);
    }
    parsed
}

fn log_drop(shared: &Shared, peer: &Peer, why: &str) {
    log_line(
        shared,
        &serde_json::json!({
            "transport": peer.transport.token(),
            "from": peer.addr.to_string(),
            "size": peer.size,
            "decision": format!("drop: {why}"),
        }),
    );
}

fn log_line(shared: &Shared, line: &serde_json::Value) {
    if shared.config.log {
        eprintln!("{line}");
    }
}

/// How long a DNS answer may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(3);

/// The address of `hop` (RFC 3263 §4.2): an address literal or a hosts
/// entry as they are; else, with a port, the name's A/AAAA records; else
/// its SRV records for the transport (lowest priority, then highest
/// weight), then A/AAAA with the default port. The resolver caches.
async fn locate(shared: &Arc<Shared>, hop: &Hop) -> Result<Target, String> {
    if let Some(t) = hop.known(&shared.config.hosts) {
        return Ok(t);
    }
    let name = hop.name();
    let resolver = shared
        .resolver
        .as_ref()
        .ok_or_else(|| format!("{name}: not in the hosts table, and DNS is off"))?;
    let ask = |what: &str| format!("{what}: no answer from DNS in {} s", DNS_TIMEOUT.as_secs());
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
        .map_err(|e| format!("{host}: {e}"))?;
    // Over UDP, an address of a family this server has a socket for.
    let usable = |ip: &IpAddr| {
        hop.transport != Transport::Udp || shared.udp_for(SocketAddr::new(*ip, port)).is_some()
    };
    let ip = ips
        .iter()
        .find(usable)
        .or_else(|| ips.iter().next())
        .ok_or_else(|| format!("{host} has no address"))?;
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
    back: Option<&Sender>,
) -> Result<(), String> {
    let bytes = msg.to_bytes();
    match back {
        Some(tx) => tx
            .send(bytes)
            .await
            .map_err(|_| "the connection closed".to_owned()),
        None => {
            let socket = shared
                .udp_for(peer.addr)
                .ok_or_else(|| "no UDP socket for that address family".to_owned())?;
            socket
                .send_to(&bytes, peer.addr)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

async fn send_to(shared: &Arc<Shared>, msg: &Message, target: &Target) -> Result<(), String> {
    let bytes = msg.to_bytes();
    match target.transport {
        Transport::Udp => {
            let socket = shared.udp_for(target.addr).ok_or_else(|| {
                format!(
                    "no UDP listener to send to {} from (listen on udp: too)",
                    target.addr
                )
            })?;
            socket
                .send_to(&bytes, target.addr)
                .await
                .map(drop)
                .map_err(|e| format!("{}: {e}", target.addr))
        }
        _ => {
            let conn = match shared.conn(&(target.transport, target.addr)) {
                Some(c) => c,
                None => connect(shared, target).await?,
            };
            conn.tx
                .send(bytes)
                .await
                .map_err(|_| format!("{}: the connection closed", target.addr))
        }
    }
}

/// Open a connection to `target`, and serve what comes back on it.
async fn connect(shared: &Arc<Shared>, target: &Target) -> Result<Conn, String> {
    let fail =
        |e: &dyn std::fmt::Display| format!("{} {}: {e}", target.transport.token(), target.addr);
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target.addr))
        .await
        .map_err(|_| fail(&"connect timed out"))?
        .map_err(|e| fail(&e))?;
    let _ = stream.set_nodelay(true);
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
                Transport::Tls,
                target.addr,
                cert,
                None,
            ))
        }
        _ => Ok(start_conn(
            Arc::clone(shared),
            stream,
            target.transport,
            target.addr,
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
        fn unsent(&self, _: &Message, _: &str) -> Option<Message> {
            None
        }
    }

    #[test]
    fn a_flood_of_sources_cannot_grow_the_rate_table_without_bound() {
        let shared = Shared {
            service: Arc::new(Nothing),
            config: ServerConfig {
                rate: Some(1),
                ..ServerConfig::default()
            },
            udp: Vec::new(),
            conns: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            busy: AtomicUsize::new(0),
            idle_now: Notify::new(),
            resolver: None,
            slots: Arc::new(tokio::sync::Semaphore::new(1)),
            stop: tokio::sync::watch::Sender::new(false),
        };
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        assert!(shared.admit(ip(1)));
        assert!(!shared.admit(ip(1)), "a second message in the same second");
        for i in 2..(3 * MAX_BUCKETS as u32) {
            shared.admit(ip(i));
            assert!(shared.buckets.lock().unwrap().len() <= MAX_BUCKETS);
        }
    }
}
