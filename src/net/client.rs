//! A client transaction on the wire (RFC 3261 §17.1, §18.1): send one
//! request over UDP or TCP to a next hop, retransmit over UDP on the RFC
//! timers, hand every response to the caller as it arrives, ACK a non-2xx
//! final response to an INVITE, and return the final response. What
//! `sipseal send` runs; no async runtime, one transaction at a time.
//!
//! The transport layer's part of the top Via is written here, as RFC 3261
//! §18.1.1 has it: the transport, this socket's address as sent-by, and
//! `rport` (RFC 3581) so that the response comes back to this socket.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::{Target, Transport};
use crate::sip::Message;

/// RFC 3261 timer values.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// T1, the round-trip estimate (500 ms).
    pub t1: Duration,
    /// T2, the longest retransmit interval of a non-INVITE (4 s).
    pub t2: Duration,
    /// How long to wait for a final response (Timer B/F, 64 × T1).
    pub timeout: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            timeout: Duration::from_secs(32),
        }
    }
}

/// What can go wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No final response in time (Timer B/F).
    #[error("no final response within {0} s")]
    Timeout(u64),
    /// Nothing listens there: a TCP connection refused or unroutable, or
    /// a UDP request answered twice by ICMP port unreachable (RFC 3261
    /// §18.4: a transport error).
    #[error("could not reach {0}")]
    Unreachable(String),
    /// The TLS handshake failed (the peer's certificate, or ours, refused).
    #[error("TLS: {0}")]
    Tls(String),
    /// The message cannot be sent as it is.
    #[error("{0}")]
    Unsendable(String),
}

impl SendError {
    /// What kind of failure it is.
    pub fn class(&self) -> crate::error::ErrorClass {
        match self {
            SendError::Unsendable(_) => crate::error::ErrorClass::Config,
            _ => crate::error::ErrorClass::Io,
        }
    }
}

/// `msg` with its top Via written by the transport: `transport`, sent-by
/// `local`, and `rport`.
pub(crate) fn with_transport_via(
    msg: &Message,
    transport: Transport,
    local: SocketAddr,
) -> Result<Message, SendError> {
    let unsendable = |e: String| SendError::Unsendable(e);
    let value = msg
        .header("Via")
        .ok_or_else(|| unsendable("no Via header".into()))?
        .to_owned();
    let (first, rest) = match value.split_once(',') {
        Some((a, b)) => (a.to_owned(), Some(b.to_owned())),
        None => (value.clone(), None),
    };
    let params: Vec<&str> = first.split(';').skip(1).map(str::trim).collect();
    if !params.iter().any(|p| p.starts_with("branch=")) {
        return Err(unsendable("the top Via has no branch".into()));
    }
    let mut new = format!("SIP/2.0/{} {local}", transport.token());
    for p in params.iter().filter(|p| !p.eq_ignore_ascii_case("rport")) {
        new.push(';');
        new.push_str(p);
    }
    new.push_str(";rport");
    if let Some(rest) = rest {
        new.push(',');
        new.push_str(&rest);
    }
    let mut out = msg.clone();
    out.set_header("Via", &new);
    Ok(out)
}

/// Whether `response` belongs to the transaction of `request` (RFC 3261
/// §17.1.3: the top Via's branch and the CSeq method).
fn matches(request: &Message, response: &Message) -> bool {
    let branch = |m: &Message| m.top_via().ok().and_then(|v| v.branch().map(str::to_owned));
    let method = |m: &Message| m.cseq().ok().map(|c| c.method);
    response.status().is_some()
        && branch(request).is_some()
        && branch(request) == branch(response)
        && method(request) == method(response)
}

/// The ACK for a non-2xx final response to an INVITE (RFC 3261 §17.1.1.3).
fn ack_for(invite: &Message, response: &Message) -> Option<Message> {
    let mut ack = invite.clone();
    ack.set_start_line(crate::sip::message::StartLine::Request {
        method: "ACK".into(),
        uri: invite.request_uri()?.to_owned(),
    });
    ack.set_header("To", response.header("To")?);
    let seq = invite.cseq().ok()?.seq;
    ack.set_header("CSeq", &format!("{seq} ACK"));
    for h in [
        "Authorization",
        "Proxy-Authorization",
        "Content-Type",
        "Content-Disposition",
    ] {
        ack.remove_headers(h);
    }
    ack.set_body(Vec::new());
    Some(ack)
}

/// A stream a client transaction runs on.
trait Stream: Read + Write {
    fn read_timeout(&self, wait: Duration) -> std::io::Result<()>;
    fn local(&self) -> std::io::Result<SocketAddr>;
}

impl Stream for TcpStream {
    fn read_timeout(&self, wait: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(wait))
    }
    fn local(&self) -> std::io::Result<SocketAddr> {
        self.local_addr()
    }
}

#[cfg(feature = "live")]
type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

#[cfg(feature = "live")]
impl Stream for TlsStream {
    fn read_timeout(&self, wait: Duration) -> std::io::Result<()> {
        self.sock.set_read_timeout(Some(wait))
    }
    fn local(&self) -> std::io::Result<SocketAddr> {
        self.sock.local_addr()
    }
}

/// Whether `e` says nothing can be reached there: refused (nothing
/// listens; on UDP an ICMP port unreachable), no route, or no host.
fn is_unreachable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable
    )
}

/// An I/O error of the UDP transport: "nothing there" as
/// [`SendError::Unreachable`], as TCP's is.
fn udp_error(socket: &UdpSocket, e: std::io::Error) -> SendError {
    if is_unreachable(&e) {
        let to = socket
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        SendError::Unreachable(format!("udp:{to} ({e})"))
    } else {
        e.into()
    }
}

/// A TCP connection to `target`: nothing listening or no route is
/// [`SendError::Unreachable`]; no answer to the SYN in `timeout` (a
/// firewall that drops) is a [`SendError::Timeout`], as on UDP.
fn connect_tcp(target: &Target, scheme: &str, timeout: Duration) -> Result<TcpStream, SendError> {
    TcpStream::connect_timeout(&target.addr, timeout).map_err(|e| {
        if is_unreachable(&e) {
            SendError::Unreachable(format!("{scheme}:{} ({e})", target.addr))
        } else if e.kind() == std::io::ErrorKind::TimedOut {
            SendError::Timeout(timeout.as_secs())
        } else {
            e.into()
        }
    })
}

/// A connection to the next hop, kept across transactions (an
/// authorized retry leaves from the same address and port, as a UA's
/// would: a server may answer where the first request came from).
pub enum Client {
    /// A UDP socket connected to the next hop.
    Udp(UdpSocket),
    /// A TCP connection, and what has arrived of a message not yet whole.
    Tcp(TcpStream, Vec<u8>),
    /// A TLS connection whose server proved it is the target's name.
    #[cfg(feature = "live")]
    Tls(Box<TlsStream>, Vec<u8>),
}

impl Client {
    /// Open the socket or connection to `target` (a TCP connect waits at
    /// most `timeout`). TLS needs [`Client::connect_tls`].
    pub fn connect(target: &Target, timeout: Duration) -> Result<Client, SendError> {
        Ok(match target.transport {
            Transport::Udp => {
                let to = target.addr;
                let local_bind = if to.ip().is_loopback() {
                    unspecified(to)
                } else if to.is_ipv4() {
                    SocketAddr::from(([0, 0, 0, 0], 0))
                } else {
                    SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
                };
                let socket = UdpSocket::bind(local_bind)?;
                socket.connect(to).map_err(|e| udp_error(&socket, e))?;
                Client::Udp(socket)
            }
            Transport::Tcp => Client::Tcp(connect_tcp(target, "tcp", timeout)?, Vec::new()),
            Transport::Tls => {
                return Err(SendError::Unsendable(
                    "TLS needs this client's certificate and the trust anchors".into(),
                ));
            }
        })
    }

    /// Open a TLS connection to `target`: the server must chain to the
    /// trust anchors of `tls` and be named `target.name` (RFC 5922); this
    /// client presents the identity of `tls`, if it has one.
    #[cfg(feature = "live")]
    pub fn connect_tls(
        target: &Target,
        timeout: Duration,
        tls: &super::tls::TlsSetup,
    ) -> Result<Client, SendError> {
        let tcp = connect_tcp(target, "tls", timeout)?;
        let name = super::tls::server_name(&target.name)
            .map_err(|e| SendError::Unsendable(e.to_string()))?;
        let conn = rustls::ClientConnection::new(tls.client_config(), name)
            .map_err(|e| SendError::Unsendable(e.to_string()))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        stream.sock.set_read_timeout(Some(timeout))?;
        // Finish the handshake now, so a refused certificate is told
        // apart from a next hop that does not answer.
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| SendError::Tls(e.to_string()))?;
        }
        Ok(Client::Tls(Box::new(stream), Vec::new()))
    }

    /// Send `msg` as a client transaction; `on_response` sees every
    /// response that belongs to it, as it arrives; the final one is
    /// returned. A response (not a request) is sent once and `None`
    /// returned.
    pub fn send(
        &mut self,
        msg: &Message,
        timers: &Timers,
        on_response: &mut dyn FnMut(&Message),
    ) -> Result<Option<Message>, SendError> {
        match self {
            Client::Udp(socket) => send_udp(socket, msg, timers, on_response),
            Client::Tcp(stream, pending) => {
                send_stream(stream, Transport::Tcp, pending, msg, timers, on_response)
            }
            #[cfg(feature = "live")]
            Client::Tls(stream, pending) => send_stream(
                stream.as_mut(),
                Transport::Tls,
                pending,
                msg,
                timers,
                on_response,
            ),
        }
    }
}

/// One request to `target` on a fresh connection ([`Client::send`]).
pub fn send(
    msg: &Message,
    target: &Target,
    timers: &Timers,
    on_response: &mut dyn FnMut(&Message),
) -> Result<Option<Message>, SendError> {
    Client::connect(target, timers.timeout)?.send(msg, timers, on_response)
}

fn unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    }
}

fn send_udp(
    socket: &UdpSocket,
    msg: &Message,
    timers: &Timers,
    on_response: &mut dyn FnMut(&Message),
) -> Result<Option<Message>, SendError> {
    let local = socket.local_addr()?;
    let request = with_transport_via(msg, Transport::Udp, local)?;
    let bytes = request.to_bytes();
    socket.send(&bytes).map_err(|e| udp_error(socket, e))?;
    if request.method().is_none() {
        return Ok(None);
    }
    let invite = request.method() == Some("INVITE");
    let start = Instant::now();
    let deadline = start + timers.timeout;
    let mut interval = timers.t1;
    let mut next = start + interval;
    let mut retransmit = true;
    let mut buf = vec![0u8; 65_535];
    let mut refused = 0u32;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(SendError::Timeout(timers.timeout.as_secs()));
        }
        if retransmit && now >= next {
            // A refusal the receive has not seen yet may surface here.
            match socket.send(&bytes) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
                Err(e) => return Err(udp_error(socket, e)),
                Ok(_) => {}
            }
            interval = if invite {
                interval * 2
            } else {
                (interval * 2).min(timers.t2)
            };
            next = now + interval;
        }
        let wait = if retransmit {
            next.min(deadline)
        } else {
            deadline
        } - Instant::now();
        socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            // An ICMP port unreachable surfaces as a refused receive. The
            // first is forgiven (a next hop coming up gets one T1); the
            // second, to the retransmission, is a transport error (RFC
            // 3261 §18.4), told as TCP's refused connection is.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused += 1;
                if refused >= 2 {
                    let to = socket
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    return Err(SendError::Unreachable(format!(
                        "udp:{to} (port unreachable)"
                    )));
                }
                continue;
            }
            Err(e) => return Err(udp_error(socket, e)),
        };
        let Ok(response) = Message::parse(&buf[..n]) else {
            continue;
        };
        if !matches(&request, &response) {
            continue;
        }
        on_response(&response);
        let code = response.status().unwrap_or_default();
        if code < 200 {
            // A provisional response: an INVITE stops retransmitting, a
            // non-INVITE goes on at T2 (RFC 3261 §17.1.2.2).
            if invite {
                retransmit = false;
            } else {
                interval = timers.t2;
            }
            continue;
        }
        if invite
            && code >= 300
            && let Some(ack) = ack_for(&request, &response)
        {
            socket.send(&ack.to_bytes())?;
        }
        return Ok(Some(response));
    }
}

fn send_stream<S: Stream>(
    stream: &mut S,
    transport: Transport,
    pending: &mut Vec<u8>,
    msg: &Message,
    timers: &Timers,
    on_response: &mut dyn FnMut(&Message),
) -> Result<Option<Message>, SendError> {
    let local = stream.local()?;
    let request = with_transport_via(msg, transport, local)?;
    stream.write_all(&request.to_bytes())?;
    if request.method().is_none() {
        return Ok(None);
    }
    let invite = request.method() == Some("INVITE");
    let deadline = Instant::now() + timers.timeout;
    let mut buf = vec![0u8; 16_384];
    loop {
        // Every complete message in what has arrived, in order.
        while let Ok((response, used)) = Message::parse_prefix(pending) {
            pending.drain(..used);
            if !matches(&request, &response) {
                continue;
            }
            on_response(&response);
            let code = response.status().unwrap_or_default();
            if code >= 200 {
                if invite
                    && code >= 300
                    && let Some(ack) = ack_for(&request, &response)
                {
                    stream.write_all(&ack.to_bytes())?;
                }
                return Ok(Some(response));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(SendError::Timeout(timers.timeout.as_secs()));
        }
        stream.read_timeout((deadline - now).max(Duration::from_millis(1)))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                return Err(SendError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the next hop closed the connection before a final response",
                )));
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if pending.len() + n > 1 << 20 {
            return Err(SendError::Unsendable(
                "more than 1 MiB without a complete response".into(),
            ));
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transport_writes_the_top_via() {
        let msg = Message::parse(
            b"OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;rport\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let out = with_transport_via(&msg, Transport::Tcp, local).unwrap();
        assert_eq!(
            out.header("Via"),
            Some("SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bK1;rport")
        );
    }
}
