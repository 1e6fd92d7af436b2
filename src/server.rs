//! A blocking UDP server loop (the first transport of live operation):
//! each datagram that parses as a SIP request goes to a handler, and the
//! response it returns is sent back to the datagram's source (RFC 3581:
//! the source address and port, whatever the Via says). A datagram that
//! does not parse is dropped (there is no Via to answer to with
//! certainty); one over the size limit is dropped before it is parsed.

use std::net::{SocketAddr, UdpSocket};

use crate::sip::Message;

/// Serve on `socket` until `max` requests were handled (`None`: forever);
/// `handle` gets each request and where it came from, and returns the
/// response to send back, if any. Datagrams over `limit` bytes are
/// dropped unread.
pub fn serve_udp(
    socket: &UdpSocket,
    limit: usize,
    max: Option<u64>,
    handle: &mut dyn FnMut(&Message, SocketAddr) -> Option<Message>,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 65_536];
    let mut handled = 0u64;
    while max.is_none_or(|m| handled < m) {
        let (n, from) = socket.recv_from(&mut buf)?;
        if n > limit {
            continue;
        }
        let Ok(msg) = Message::parse(&buf[..n]) else {
            continue;
        };
        if msg.method().is_none() {
            continue;
        }
        handled += 1;
        if let Some(response) = handle(&msg, from) {
            socket.send_to(&response.to_bytes(), from)?;
        }
    }
    Ok(handled)
}
