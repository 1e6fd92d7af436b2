//! Flows (RFC 5626 §5.2): a relay that a user agent registers through
//! puts a Path entry of its own on the REGISTER whose user part is a
//! flow token: the transport and address the REGISTER came from, under
//! an HMAC of the relay's secret, so that no one else can make one. A
//! request for that user later comes back to the relay with that entry
//! (as a Route, or in the binding the location service reads), and goes
//! on the same flow: the connection the REGISTER came on while it is
//! open, or the UDP address it came from (through a NAT).

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::net::Transport;
use crate::sip::Message;
use crate::sip::headers::split_list;
use crate::sip::routing::OwnNames;
use crate::sip::uri::HopUri;

/// The bytes of the MAC a token carries.
const MAC_LEN: usize = 10;

fn mac(key: &[u8; 32], payload: &[u8]) -> [u8; MAC_LEN] {
    labelled_mac(key, b"sipseal flow token", payload)
}

/// HMAC-SHA256 under `key` of `label` then `payload`, its first `N`
/// bytes: the MAC of a token a stateless hop hands out and checks when
/// it comes back (this flow token, the edge's phone token).
pub(crate) fn labelled_mac<const N: usize>(
    key: &[u8; 32],
    label: &[u8],
    payload: &[u8],
) -> [u8; N] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    m.update(label);
    m.update(payload);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; N];
    out.copy_from_slice(&full[..N]);
    out
}

/// The byte a token writes for a transport.
pub(crate) fn transport_byte(t: Transport) -> u8 {
    match t {
        Transport::Udp => b'u',
        Transport::Tcp => b't',
        Transport::Tls => b's',
    }
}

/// How many bytes of a TLS peer's identity a token carries
/// ([`crate::keys::identity::Cert::flow_id`]).
pub const PEER_LEN: usize = 8;

/// The flow a token names: where the message came from and, for a TLS
/// peer that presented a certificate, whose it was. The connection is
/// the flow while it is open; once it closes, a newer connection from
/// the same certificate identity carries the flow on (an edge that
/// restarted reconnects from a new port, RFC 5626 §5.3 would answer 430).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowAt {
    /// The transport it came over.
    pub transport: Transport,
    /// The far end's address (a stream's is its connection's).
    pub addr: SocketAddr,
    /// The peer certificate's identity, on TLS.
    pub peer: Option<[u8; PEER_LEN]>,
}

impl FlowAt {
    /// Whether a message from `transport`/`addr`, whose peer proved
    /// identity `peer`, came on this flow (on its connection, or on a
    /// newer one from the same certificate identity).
    pub fn is_from(
        &self,
        transport: Transport,
        addr: SocketAddr,
        peer: Option<[u8; PEER_LEN]>,
    ) -> bool {
        // A token that names a certificate identity is that identity's
        // flow on any of its connections, and no one else's, even on its
        // old address (another client behind the same NAT, a port taken
        // again).
        transport == self.transport
            && match self.peer {
                Some(p) => peer == Some(p),
                None => addr == self.addr,
            }
    }
}

/// The flow token of a message that came over `transport` from `addr`,
/// from a peer whose certificate's identity is `peer` (TLS): URL-safe
/// base64, fit for a SIP URI's user part.
pub fn token(
    key: &[u8; 32],
    transport: Transport,
    addr: SocketAddr,
    peer: Option<[u8; PEER_LEN]>,
) -> String {
    let mut payload = vec![transport_byte(transport)];
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => payload.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => payload.extend_from_slice(&v6.octets()),
    }
    payload.extend_from_slice(&addr.port().to_be_bytes());
    if let Some(p) = peer.filter(|_| transport == Transport::Tls) {
        payload.extend_from_slice(&p);
    }
    let mut bytes = mac(key, &payload).to_vec();
    bytes.extend_from_slice(&payload);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The flow a token names, when this relay made it.
pub fn flow(key: &[u8; 32], token: &str) -> Option<FlowAt> {
    if token.len() > 64 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let (tag, payload) = bytes.split_at_checked(MAC_LEN)?;
    let expected = mac(key, payload);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(tag, &expected[..])) {
        return None;
    }
    let (&t, rest) = payload.split_first()?;
    let transport = match t {
        b'u' => Transport::Udp,
        b't' => Transport::Tcp,
        b's' => Transport::Tls,
        _ => return None,
    };
    let (rest, peer) = match rest.len() {
        6 | 18 => (rest, None),
        14 | 26 if transport == Transport::Tls => {
            let (a, p) = rest.split_at(rest.len() - PEER_LEN);
            (a, Some(<[u8; PEER_LEN]>::try_from(p).ok()?))
        }
        _ => return None,
    };
    let (ip, port) = match rest.len() {
        6 => {
            let o: [u8; 4] = rest.get(..4)?.try_into().ok()?;
            (IpAddr::from(o), rest.get(4..6)?)
        }
        18 => {
            let o: [u8; 16] = rest.get(..16)?.try_into().ok()?;
            (IpAddr::from(o), rest.get(16..18)?)
        }
        _ => return None,
    };
    let port = u16::from_be_bytes([*port.first()?, *port.get(1)?]);
    Some(FlowAt {
        transport,
        addr: SocketAddr::new(ip, port),
        peer,
    })
}

/// The Path entry of a flow: `<sip:TOKEN@HOST:PORT;transport=T;lr;ob>`,
/// naming this relay's listener `at` (RFC 5626 §5.2: `ob` marks an edge
/// proxy that keeps flows).
pub fn path_entry(token: &str, at: SocketAddr, transport: Transport) -> String {
    let host = match at.ip().to_canonical() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let t = transport.token().to_ascii_lowercase();
    format!("<sip:{token}@{host}:{};transport={t};lr;ob>", at.port())
}

/// Whether the Contact of `msg` asks for its flow (RFC 5626 §5: the
/// `ob` URI parameter).
pub fn contact_has_ob(msg: &Message) -> bool {
    msg.header("Contact").is_some_and(|c| {
        let uri = match (c.find('<'), c.find('>')) {
            (Some(a), Some(b)) if a < b => &c[a + 1..b],
            _ => c,
        };
        uri.split(';')
            .skip(1)
            .any(|p| p.trim().eq_ignore_ascii_case("ob"))
    })
}

/// A Record-Route entry of this relay (`<sip:HOST:PORT;...>`) with `token`
/// as its user part: requests that follow it come to the flow it names.
pub fn with_token(entry: &str, token: &str) -> String {
    match entry.find(':') {
        Some(i) => format!("{}{token}@{}", &entry[..=i], &entry[i + 1..]),
        None => entry.to_owned(),
    }
}

/// The flow a URI (a Path or Route entry) names: one of this relay's
/// names, whose user part is a token it made.
pub fn flow_of(uri: &str, names: &OwnNames, key: &[u8; 32]) -> Option<FlowAt> {
    let hop = HopUri::parse(uri)?;
    if !names.names_uri(&hop) {
        return None;
    }
    let v = uri.trim();
    let inner = match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    };
    let rest = inner.split_once(':')?.1;
    let (user, _) = rest.split_once('@')?;
    flow(key, user)
}

/// The flow a Route entry of this relay on top of `msg` names with a flow
/// token (a request for a user who registered through it, or in a dialog
/// this relay record-routed for a user agent on a flow).
pub fn routed_flow(msg: &Message, names: &OwnNames, key: &[u8; 32]) -> Option<FlowAt> {
    // This relay's entries on top (two when it record-routed on two
    // listeners, RFC 5658): the one with a token names the flow.
    let routes = msg.header_values("Route");
    for entry in routes.into_iter().flat_map(split_list) {
        if !HopUri::parse(entry).is_some_and(|h| names.names_uri(&h)) {
            return None;
        }
        if let Some(flow) = flow_of(entry, names, key) {
            return Some(flow);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_flow_only_under_its_key() {
        let key = [7u8; 32];
        for (t, addr) in [
            (Transport::Udp, "192.0.2.7:40000"),
            (Transport::Tls, "[2001:db8::1]:5061"),
            (Transport::Tcp, "[::ffff:127.0.0.1]:5090"),
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let tok = token(&key, t, addr, None);
            let f = flow(&key, &tok).unwrap();
            assert_eq!(f.transport, t);
            assert_eq!(f.addr.ip(), addr.ip().to_canonical());
            assert_eq!(f.addr.port(), addr.port());
            assert_eq!(f.peer, None);
            assert_eq!(flow(&[8u8; 32], &tok), None, "another relay's key");
            let mut forged = tok.clone().into_bytes();
            let last = forged.len() - 1;
            forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
            assert_eq!(flow(&key, std::str::from_utf8(&forged).unwrap()), None);
        }
        assert_eq!(flow(&key, "not base64!"), None);
        assert_eq!(flow(&key, ""), None);
    }

    #[test]
    fn a_record_route_with_a_token_leads_back_to_the_flow() {
        let key = [9u8; 32];
        let addr: SocketAddr = "192.0.2.7:40100".parse().unwrap();
        let token = token(&key, Transport::Tls, addr, None);
        let entry = with_token("<sip:198.51.100.1:5061;transport=tls;lr>", &token);
        assert_eq!(
            entry,
            format!("<sip:{token}@198.51.100.1:5061;transport=tls;lr>")
        );
        let names = OwnNames::new(["198.51.100.1:5061".parse().unwrap()]);
        assert_eq!(
            flow_of(&entry, &names, &key),
            Some(FlowAt {
                transport: Transport::Tls,
                addr,
                peer: None
            })
        );
        let ob = |contact: &str| {
            let text = format!(
                "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\r\nContact: {contact}\r\nContent-Length: 0\r\n\r\n"
            );
            contact_has_ob(&Message::parse(text.as_bytes()).unwrap())
        };
        assert!(ob("<sip:a@192.0.2.7:40100;transport=tls;ob>"));
        assert!(!ob("<sip:a@192.0.2.7:40100;transport=tls>"));
        assert!(!ob("<sip:a@192.0.2.7;obscure>"));
    }

    #[test]
    fn a_path_entry_of_this_relay_leads_back_to_the_flow() {
        let key = [7u8; 32];
        let at: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let names = OwnNames::new([at]);
        let ua: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let entry = path_entry(&token(&key, Transport::Tcp, ua, None), at, Transport::Tcp);
        assert!(
            entry.ends_with("@127.0.0.1:5070;transport=tcp;lr;ob>"),
            "{entry}"
        );
        assert_eq!(
            flow_of(&entry, &names, &key),
            Some(FlowAt {
                transport: Transport::Tcp,
                addr: ua,
                peer: None
            })
        );
        let other = OwnNames::new(["127.0.0.1:5080".parse().unwrap()]);
        assert_eq!(flow_of(&entry, &other, &key), None, "another relay's entry");
    }

    #[test]
    fn a_tls_token_names_its_peers_certificate_and_a_newer_connection_of_it_is_the_flow() {
        let key = [5u8; 32];
        let old: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let new: SocketAddr = "192.0.2.7:40999".parse().unwrap();
        let alice = Some(*b"alice-id");
        for addr in [old, "[2001:db8::1]:5061".parse().unwrap()] {
            let tok = token(&key, Transport::Tls, addr, alice);
            assert!(tok.len() <= 64, "{tok}");
            let f = flow(&key, &tok).unwrap();
            assert_eq!((f.transport, f.addr, f.peer), (Transport::Tls, addr, alice));
        }
        let f = flow(&key, &token(&key, Transport::Tls, old, alice)).unwrap();
        assert!(f.is_from(Transport::Tls, old, alice), "its own connection");
        assert!(
            !f.is_from(Transport::Tls, old, Some(*b"mallory!")),
            "its old address, another certificate"
        );
        assert!(
            !f.is_from(Transport::Tls, old, None),
            "its old address, no certificate"
        );
        assert!(
            f.is_from(Transport::Tls, new, alice),
            "a newer one of alice's"
        );
        assert!(
            !f.is_from(Transport::Tls, new, Some(*b"mallory!")),
            "another's"
        );
        assert!(
            !f.is_from(Transport::Tls, new, None),
            "one with no certificate"
        );
        assert!(!f.is_from(Transport::Tcp, new, alice));
        // Only TLS carries an identity: a TCP peer proved none.
        let tcp = flow(&key, &token(&key, Transport::Tcp, old, alice)).unwrap();
        assert_eq!(tcp.peer, None);
        assert!(!tcp.is_from(Transport::Tcp, new, alice));
        // The identity is under the MAC: changing it forges the token.
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token(&key, Transport::Tls, old, alice))
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(flow(&key, &forged), None);
    }
}
