//! An outbound flow (RFC 5626): one connection a user agent opens to its
//! edge relay (TCP, or TLS with both ends authenticated), keeps open with
//! CRLF keep-alives (§4.4.1), and uses both ways: its own requests go
//! out as client transactions whose responses are matched by branch,
//! and the requests the relay sends down the flow (an INVITE routed by
//! the location service) come out of a channel for the user agent's
//! workflow. Like the rest of `net/`, it frames, matches and sends; what
//! to answer is the workflow's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::frame::{Frame, Framer};
use super::tls::TlsSetup;
use super::{Target, Transport};
use crate::sip::Message;

/// Why a flow failed.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The connection could not be opened.
    #[error("{transport} {addr}: {why}")]
    Connect {
        /// The transport token.
        transport: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Why.
        why: String,
    },
    /// The connection is closed.
    #[error("the flow is closed")]
    Closed,
    /// No final response in time.
    #[error("no final response within {0} s")]
    Timeout(u64),
    /// The message cannot go as it is.
    #[error("{0}")]
    Unsendable(String),
}

/// How a flow behaves.
#[derive(Debug, Clone, Copy)]
pub struct FlowLimits {
    /// The largest message taken; a bigger one closes the flow.
    pub max_message: usize,
    /// A CRLF keep-alive goes out this often (RFC 5626 §4.4.1).
    pub keepalive: Duration,
    /// How long the connection (and TLS handshake) may take.
    pub connect_timeout: Duration,
    /// Requests that came down the flow and wait for the workflow; past
    /// it a new one is dropped (its sender retransmits or times out).
    pub queue: usize,
}

impl Default for FlowLimits {
    fn default() -> Self {
        FlowLimits {
            max_message: 65_535,
            keepalive: Duration::from_secs(25),
            connect_timeout: Duration::from_secs(10),
            queue: 64,
        }
    }
}

/// The longest a message (or a keep-alive) may take to go out: a peer
/// that stops reading ends the flow rather than hold every sender.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The responses one transaction keeps unread at most; more are dropped
/// (a flood from the peer costs no memory; the final response of an
/// honest peer follows a few provisional ones).
pub const TRANSACTION_QUEUE: usize = 16;

type Writer = Box<dyn AsyncWrite + Send + Unpin>;
type Pending = Arc<Mutex<HashMap<String, mpsc::Sender<Message>>>>;

/// An open flow. Dropping it closes the connection.
pub struct Flow {
    writer: Arc<tokio::sync::Mutex<Writer>>,
    pending: Pending,
    local: SocketAddr,
    peer: SocketAddr,
    transport: Transport,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    closed: Arc<tokio::sync::Notify>,
    /// Set when a send timed out or the connection closed: nothing more
    /// goes out on it (a request would wait its whole timeout for an
    /// answer that cannot come).
    ended: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Flow({} {} -> {})",
            self.transport.token(),
            self.local,
            self.peer
        )
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The responses to one request sent on a flow.
#[derive(Debug)]
pub struct Transaction {
    rx: mpsc::Receiver<Message>,
    timeout: Duration,
    branch: String,
    pending: Pending,
}

impl Drop for Transaction {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.branch);
    }
}

impl Transaction {
    /// The next response (provisional or final), or `None` once the flow closed.
    pub async fn next(&mut self) -> Result<Message, FlowError> {
        match tokio::time::timeout(self.timeout, self.rx.recv()).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(FlowError::Closed),
            Err(_) => Err(FlowError::Timeout(self.timeout.as_secs())),
        }
    }

    /// The final response (provisional ones are passed over).
    pub async fn final_response(&mut self) -> Result<Message, FlowError> {
        loop {
            let m = self.next().await?;
            if m.status().unwrap_or_default() >= 200 {
                return Ok(m);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn branch_of(m: &Message) -> Option<String> {
    m.top_via().ok().and_then(|v| v.branch().map(str::to_owned))
}

impl Flow {
    /// Open a flow to `target` (TCP, or TLS with `tls`: the server must
    /// chain to its anchors and be named `target.name`, and this end
    /// presents its identity). The requests that come down the flow
    /// arrive on the receiver; it ends when the connection closes.
    pub async fn connect(
        target: &Target,
        tls: Option<&TlsSetup>,
        limits: FlowLimits,
    ) -> Result<(Flow, mpsc::Receiver<Message>), FlowError> {
        let fail = |why: &dyn std::fmt::Display| FlowError::Connect {
            transport: target.transport.token(),
            addr: target.addr,
            why: why.to_string(),
        };
        let work = async {
            let tcp = TcpStream::connect(target.addr)
                .await
                .map_err(|e| fail(&e))?;
            let _ = tcp.set_nodelay(true);
            let local = tcp.local_addr().map_err(|e| fail(&e))?;
            match target.transport {
                Transport::Tcp => {
                    let (rd, wr) = tcp.into_split();
                    Ok((local, spawn_halves(rd, wr)))
                }
                Transport::Tls => {
                    let tls =
                        tls.ok_or_else(|| fail(&"TLS needs an identity and trust anchors"))?;
                    let (connector, name) = tls.connector(&target.name).map_err(|e| fail(&e))?;
                    let stream = connector.connect(name, tcp).await.map_err(|e| fail(&e))?;
                    let (rd, wr) = tokio::io::split(stream);
                    Ok((local, spawn_halves(rd, wr)))
                }
                Transport::Udp => Err(fail(&"a flow is a stream: tcp or tls")),
            }
        };
        let (local, (rd, wr)) = tokio::time::timeout(limits.connect_timeout, work)
            .await
            .map_err(|_| fail(&"connect timed out"))??;
        let writer: Arc<tokio::sync::Mutex<Writer>> = Arc::new(tokio::sync::Mutex::new(wr));
        let pending: Pending = Arc::default();
        let closed = Arc::new(tokio::sync::Notify::new());
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        let reader = tokio::spawn(read_loop(
            rd,
            Arc::clone(&pending),
            tx,
            limits.max_message,
            (Arc::clone(&closed), Arc::clone(&ended)),
        ));
        let ka_writer = Arc::clone(&writer);
        let keepalive = tokio::spawn(async move {
            let mut tick = tokio::time::interval(limits.keepalive);
            tick.tick().await;
            loop {
                tick.tick().await;
                let mut w = ka_writer.lock().await;
                if w.write_all(b"\r\n\r\n").await.is_err() || w.flush().await.is_err() {
                    return;
                }
            }
        });
        Ok((
            Flow {
                writer,
                pending,
                local,
                peer: target.addr,
                transport: target.transport,
                tasks: vec![reader, keepalive],
                closed,
                ended,
            },
            rx,
        ))
    }

    /// This end's address (what a Via and a Contact name).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Wait until the connection closes.
    pub async fn closed(&self) {
        self.closed.notified().await
    }

    /// Send a message as it is (a response, an ACK).
    /// A send that cannot go out in [`WRITE_TIMEOUT`] (the peer stopped
    /// reading) ends the flow: half a message may be on the wire.
    pub async fn send(&self, msg: &Message) -> Result<(), FlowError> {
        if self.ended.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(FlowError::Closed);
        }
        let bytes = msg.to_bytes();
        let work = async {
            let mut w = self.writer.lock().await;
            w.write_all(&bytes).await?;
            w.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, work).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(FlowError::Closed),
            Err(_) => {
                self.end();
                Err(FlowError::Closed)
            }
        }
    }

    /// End the flow from this side: the reader and the keep-alive stop,
    /// the receiver of requests ends, whoever waits on [`Flow::closed`]
    /// hears it.
    fn end(&self) {
        self.ended.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
        lock(&self.pending).clear();
        self.closed.notify_waiters();
        self.closed.notify_one();
    }

    /// `msg` with its top Via written for this flow: the transport, this
    /// end's address, `rport`.
    pub fn with_via(&self, msg: &Message) -> Result<Message, FlowError> {
        super::client::with_transport_via(msg, self.transport, self.local)
            .map_err(|e| FlowError::Unsendable(e.to_string()))
    }

    /// Send a request as a client transaction (its top Via written for
    /// this flow): its responses come out of the [`Transaction`], which
    /// gives up after `timeout` without one.
    pub async fn request(
        &self,
        msg: &Message,
        timeout: Duration,
    ) -> Result<Transaction, FlowError> {
        let msg = self.with_via(msg)?;
        let branch = branch_of(&msg)
            .ok_or_else(|| FlowError::Unsendable("the top Via has no branch".into()))?;
        let (tx, rx) = mpsc::channel(TRANSACTION_QUEUE);
        lock(&self.pending).insert(branch.clone(), tx);
        let tr = Transaction {
            rx,
            timeout,
            branch,
            pending: Arc::clone(&self.pending),
        };
        self.send(&msg).await?;
        Ok(tr)
    }
}

fn spawn_halves<R, W>(rd: R, wr: W) -> (Box<dyn AsyncRead + Send + Unpin>, Writer)
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    (Box::new(rd), Box::new(wr))
}

async fn read_loop(
    mut rd: Box<dyn AsyncRead + Send + Unpin>,
    pending: Pending,
    incoming: mpsc::Sender<Message>,
    limit: usize,
    (closed, ended): (Arc<tokio::sync::Notify>, Arc<std::sync::atomic::AtomicBool>),
) {
    let mut framer = Framer::new(limit);
    let mut buf = vec![0u8; 16_384];
    'read: loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(buf.get(..n).unwrap_or_default());
        loop {
            match framer.next_frame() {
                Ok(Frame::Partial) => break,
                // A pong from the relay, or its ping (which a client
                // need not answer: the relay's own pings are rare).
                Ok(Frame::KeepAlive { .. }) => continue,
                Ok(Frame::Message(bytes)) => {
                    let Ok(msg) = Message::parse(&bytes) else {
                        continue;
                    };
                    if msg.is_request() {
                        // A full queue drops the request: its sender
                        // retransmits or times out.
                        let _ = incoming.try_send(msg);
                    } else if let Some(branch) = branch_of(&msg) {
                        let tx = lock(&pending).get(&branch).cloned();
                        if let Some(tx) = tx {
                            // Past TRANSACTION_QUEUE unread, dropped.
                            let _ = tx.try_send(msg);
                        }
                    }
                }
                Err(_) => break 'read,
            }
        }
    }
    // Ended before the transactions go: a request made from now on fails
    // at once, one made before hears its sender dropped.
    ended.store(true, std::sync::atomic::Ordering::Relaxed);
    lock(&pending).clear();
    closed.notify_waiters();
    closed.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The responses a transaction has not read yet are bounded: a relay
    /// that answers one request with a flood does not grow memory.
    #[tokio::test]
    async fn a_flood_of_responses_to_one_request_is_bounded() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target {
            transport: Transport::Tcp,
            addr: listener.local_addr().unwrap(),
            name: "127.0.0.1".into(),
        };
        let (flow, _incoming) = Flow::connect(&target, None, FlowLimits::default())
            .await
            .unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        let options = Message::parse(
            b"OPTIONS sip:t@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKf1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let mut tr = flow
            .request(&options, Duration::from_millis(300))
            .await
            .unwrap();
        // The request as the peer reads it: its top Via's branch.
        let mut framer = crate::net::frame::Framer::new(65_535);
        let mut buf = vec![0u8; 16_384];
        let sent = loop {
            let n = tokio::io::AsyncReadExt::read(&mut peer, &mut buf)
                .await
                .unwrap();
            framer.push(&buf[..n]);
            if let Ok(crate::net::frame::Frame::Message(b)) = framer.next_frame() {
                break Message::parse(&b).unwrap();
            }
        };
        let branch = branch_of(&sent).unwrap();
        let trying = format!(
            "SIP/2.0 100 Trying\r\nVia: SIP/2.0/TCP 127.0.0.1;branch={branch}\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        peer.write_all(trying.repeat(500).as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut kept = 0;
        while tr.next().await.is_ok() {
            kept += 1;
        }
        assert!(
            (1..=TRANSACTION_QUEUE).contains(&kept),
            "{kept} responses kept of 500"
        );
    }

    /// A flow the peer closed fails a request at once: written to the
    /// closed socket it would go out (the kernel takes it) and wait its
    /// whole timeout for an answer that cannot come.
    #[tokio::test]
    async fn a_request_on_a_flow_the_peer_closed_fails_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target {
            transport: Transport::Tcp,
            addr: listener.local_addr().unwrap(),
            name: "127.0.0.1".into(),
        };
        let (flow, mut incoming) = Flow::connect(&target, None, FlowLimits::default())
            .await
            .unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        drop(peer);
        // The read loop sees the close: the receiver of requests ends.
        let ended = tokio::time::timeout(Duration::from_secs(5), incoming.recv()).await;
        assert!(matches!(ended, Ok(None)), "the close was not seen");
        let options = Message::parse(
            b"OPTIONS sip:t@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKc1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(2), async {
            let mut tr = flow.request(&options, Duration::from_secs(30)).await?;
            tr.next().await
        })
        .await;
        assert!(
            matches!(outcome, Ok(Err(FlowError::Closed))),
            "a request on a closed flow: {outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_fails_a_send_in_time_and_ends_the_flow() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target {
            transport: Transport::Tcp,
            addr: listener.local_addr().unwrap(),
            name: "127.0.0.1".into(),
        };
        let (flow, mut incoming) = Flow::connect(&target, None, FlowLimits::default())
            .await
            .unwrap();
        // The peer holds the connection and never reads from it.
        let (_peer, _) = listener.accept().await.unwrap();
        let body = "x".repeat(60_000);
        let msg = Message::parse(
            format!(
                "OPTIONS sip:t@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        let failed = tokio::time::timeout(WRITE_TIMEOUT * 4, async {
            while flow.send(&msg).await.is_ok() {}
        })
        .await;
        assert!(
            failed.is_ok(),
            "a send blocked on a peer that does not read"
        );
        // The flow is over: what waits on its requests hears it ends.
        let ended = tokio::time::timeout(Duration::from_secs(5), incoming.recv()).await;
        assert!(matches!(ended, Ok(None)), "the flow goes on");
    }
}
