//! STUN keep-alives on a SIP UDP port (RFC 5626 §4.4.1): a user agent
//! behind a NAT sends a STUN Binding request to its outbound proxy's SIP
//! port and learns from the answer whether its mapping changed. Only that
//! exchange is served: a Binding request without attributes that need a
//! key (RFC 5389 §6, §7.3.1) gets a Binding success response carrying
//! XOR-MAPPED-ADDRESS (§15.2), no larger than the request plus 20 bytes.
//!
//! Written here rather than taken from a STUN crate: the crates that do
//! all of STUN bring a dozen dependencies (PRECIS, HMAC-SHA1, MD5, ...)
//! onto a network-facing path for a 20-byte header check and one
//! attribute.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0|     STUN Message Type     |         Message Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Magic Cookie                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Transaction ID (96 bits)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::{IpAddr, SocketAddr};

/// The magic cookie of RFC 5389 §6.
const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// Binding request (method 0x001, class request).
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
/// Binding success response (method 0x001, class success).
const BINDING_SUCCESS: [u8; 2] = [0x01, 0x01];
/// XOR-MAPPED-ADDRESS.
const XOR_MAPPED_ADDRESS: [u8; 2] = [0x00, 0x20];

/// Whether a datagram is STUN at all (RFC 5389 §6: the two top bits zero
/// and the magic cookie), not SIP: no SIP message starts with a byte
/// under 0x40.
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] & 0xC0 == 0 && datagram[4..8] == MAGIC
}

/// The Binding success response to `datagram` from `from`, when it is a
/// Binding request that can be answered: its length is whole and
/// 4-aligned, and it carries no comprehension-required attribute (types
/// under 0x8000: USERNAME, MESSAGE-INTEGRITY, ... which a keep-alive
/// does not use). `None` for anything else (it is dropped).
pub fn binding_response(datagram: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    if !is_stun(datagram) || datagram[0..2] != BINDING_REQUEST {
        return None;
    }
    let declared = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if declared % 4 != 0 || datagram.len() != 20 + declared {
        return None;
    }
    // Attributes: type, length, value padded to 4 bytes.
    let mut at = 20;
    while at < datagram.len() {
        let head = datagram.get(at..at + 4)?;
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if kind < 0x8000 {
            return None;
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    if at != datagram.len() {
        return None;
    }
    let transaction = &datagram[8..20];
    let mut value = vec![0u8];
    let port = from.port() ^ 0x2112;
    match from.ip().to_canonical() {
        IpAddr::V4(v4) => {
            value.push(0x01);
            value.extend_from_slice(&port.to_be_bytes());
            value.extend(v4.octets().iter().zip(MAGIC).map(|(a, m)| a ^ m));
        }
        IpAddr::V6(v6) => {
            value.push(0x02);
            value.extend_from_slice(&port.to_be_bytes());
            let key = MAGIC.iter().chain(transaction);
            value.extend(v6.octets().iter().zip(key).map(|(a, m)| a ^ m));
        }
    }
    let mut out = Vec::with_capacity(20 + 4 + value.len());
    out.extend_from_slice(&BINDING_SUCCESS);
    out.extend_from_slice(&u16::try_from(4 + value.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(transaction);
    out.extend_from_slice(&XOR_MAPPED_ADDRESS);
    out.extend_from_slice(&u16::try_from(value.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&value);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.1's sample request carries USERNAME and
    /// MESSAGE-INTEGRITY (comprehension-required): not a keep-alive.
    /// A bare request from 192.0.2.1:32853 is answered with RFC 5769
    /// §2.2's XOR-MAPPED-ADDRESS bytes for that address.
    #[test]
    fn a_keepalive_is_answered_with_the_mapped_address() {
        let mut req = vec![0x00, 0x01, 0x00, 0x00];
        req.extend_from_slice(&MAGIC);
        let txn = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        req.extend_from_slice(&txn);
        let from: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        let resp = binding_response(&req, from).unwrap();
        assert_eq!(&resp[0..4], &[0x01, 0x01, 0x00, 0x0c]);
        assert_eq!(&resp[8..20], &txn);
        assert_eq!(
            &resp[20..],
            &[
                0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43
            ]
        );
        // IPv6, RFC 5769 §2.3: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
        let from6: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap();
        let resp = binding_response(&req, from6).unwrap();
        assert_eq!(
            &resp[24..],
            &[
                0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25,
                0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9
            ]
        );
    }

    #[test]
    fn only_whole_bare_binding_requests_are_answered() {
        let mut req = vec![0x00, 0x01, 0x00, 0x08];
        req.extend_from_slice(&MAGIC);
        req.extend_from_slice(&[1; 12]);
        let from: SocketAddr = "127.0.0.1:5090".parse().unwrap();
        // SOFTWARE (0x8022, comprehension-optional) is fine.
        let mut with_software = req.clone();
        with_software.extend_from_slice(&[0x80, 0x22, 0x00, 0x03, b'a', b'b', b'c', 0]);
        assert!(binding_response(&with_software, from).is_some());
        // USERNAME (0x0006) needs a key: not a keep-alive.
        let mut with_user = req.clone();
        with_user.extend_from_slice(&[0x00, 0x06, 0x00, 0x03, b'a', b'b', b'c', 0]);
        assert!(binding_response(&with_user, from).is_none());
        // Cut short, or an attribute running past the end.
        assert!(binding_response(&req, from).is_none());
        let mut overrun = req.clone();
        overrun.extend_from_slice(&[0x80, 0x22, 0x00, 0x40, 0, 0, 0, 0]);
        assert!(binding_response(&overrun, from).is_none());
        // SIP is never STUN.
        assert!(!is_stun(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n\r\n"));
        let mut indication = req.clone();
        indication[1] = 0x11;
        assert!(binding_response(&indication, from).is_none());
    }
}
