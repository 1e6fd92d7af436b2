//! The edge's routing rules (docs/SPEC.md §7.2): the Contact token and
//! the phone leg's Record-Route.
//!
//! Every Contact the phone sends out is replaced by one on the edge's
//! flow, `<sip:USER@FLOW-ADDR;transport=tls;ob;sipseal-phone=TOKEN>`,
//! whose TOKEN carries the phone's own Contact URI and the transport it
//! used, encrypted and authenticated under the edge's secret. A request
//! from the network is delivered only to a Request-URI whose token
//! verifies: a sender on the network cannot steer the edge to an
//! address the phone did not give, nor read the phone's address in it.

use std::net::{IpAddr, SocketAddr};

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine as _;

use crate::net::Transport;
use crate::sip::Message;
use crate::sip::headers::split_list;
use crate::sip::uri::HopUri;

/// The URI parameter that carries the token.
pub const PARAM: &str = "sipseal-phone";

/// The bytes of the synthetic nonce a token starts with.
const NONCE_LEN: usize = 12;
/// The bytes of the AES-GCM tag it ends with.
const TAG_LEN: usize = 16;

/// The longest phone Contact URI a token carries; a longer one is not
/// rewritten (the request is refused).
pub const MAX_URI: usize = 512;

/// The longest AOR a token names (it is counted in one byte).
pub const MAX_AOR: usize = 255;

/// Why a Request-URI does not lead to a phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token at all (404).
    #[error("no phone token in the Request-URI")]
    Missing,
    /// A token this edge did not make (403).
    #[error("the phone token does not verify")]
    Forged,
}

/// Where a token leads: the phone's own Contact URI and its transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// The user whose phone it is (the AOR the token was made for): a
    /// request it leads to is opened with this user's identity alone.
    pub aor: String,
    /// The phone side transport (UDP or TCP).
    pub transport: Transport,
    /// The phone's Contact URI, as it gave it.
    pub uri: String,
}

impl Phone {
    /// The address to send to: the URI's host, an address literal, and
    /// its port (5060 when it gives none). `None` for a host name.
    pub fn addr(&self) -> Option<SocketAddr> {
        let hop = HopUri::parse(&self.uri)?;
        let ip = hop.ip()?;
        Some(SocketAddr::new(ip, hop.port.unwrap_or(5060)))
    }
}

/// The synthetic nonce of a payload (RFC 5297's SIV idea over AES-GCM):
/// the same Contact always gives the same token (a registration refresh
/// names the same binding), two different ones never share a nonce.
fn siv(key: &[u8; 32], payload: &[u8]) -> [u8; NONCE_LEN] {
    crate::relay::flow::labelled_mac(key, b"sipseal edge contact", payload)
}

/// The AES-256-GCM key of the tokens, derived from the edge secret under
/// a label of its own (the nonce's MAC key is the secret itself).
fn cipher(key: &[u8; 32]) -> Option<Aes256Gcm> {
    let k: [u8; 32] = crate::relay::flow::labelled_mac(key, b"sipseal edge contact key", &[]);
    Aes256Gcm::new_from_slice(&k).ok()
}

/// The token of `aor`'s phone Contact `uri` reached over `transport`
/// (URL-safe base64 without padding: fit for a URI parameter). The
/// payload (transport, AOR, Contact URI) is encrypted: the network that
/// carries the token never reads the phone's address in it. `None` for
/// a URI longer than [`MAX_URI`] or an AOR longer than [`MAX_AOR`].
pub fn token(key: &[u8; 32], aor: &str, transport: Transport, uri: &str) -> Option<String> {
    if uri.len() > MAX_URI || aor.len() > MAX_AOR {
        return None;
    }
    let mut payload = vec![
        crate::relay::flow::transport_byte(transport),
        aor.len() as u8,
    ];
    payload.extend_from_slice(aor.as_bytes());
    payload.extend_from_slice(uri.as_bytes());
    let nonce = siv(key, &payload);
    let tag = cipher(key)?
        .encrypt_inout_detached(
            &Nonce::<U12>::try_from(&nonce[..]).ok()?,
            b"",
            payload.as_mut_slice().into(),
        )
        .ok()?;
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(&payload);
    bytes.extend_from_slice(&tag);
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The phone a token names, when this edge made it.
pub fn phone(key: &[u8; 32], token: &str) -> Result<Phone, TokenError> {
    // Limits before parsing: base64 of the nonce, the tag, two bytes,
    // MAX_AOR and MAX_URI.
    if token.len() > (NONCE_LEN + TAG_LEN + 2 + MAX_AOR + MAX_URI) * 4 / 3 + 4 {
        return Err(TokenError::Forged);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| TokenError::Forged)?;
    let (nonce, rest) = bytes
        .split_at_checked(NONCE_LEN)
        .ok_or(TokenError::Forged)?;
    let (sealed, tag) = rest
        .split_at_checked(rest.len().checked_sub(TAG_LEN).ok_or(TokenError::Forged)?)
        .ok_or(TokenError::Forged)?;
    let mut payload = sealed.to_vec();
    cipher(key)
        .ok_or(TokenError::Forged)?
        .decrypt_inout_detached(
            &Nonce::<U12>::try_from(nonce).map_err(|_| TokenError::Forged)?,
            b"",
            payload.as_mut_slice().into(),
            &Tag::<U16>::try_from(tag).map_err(|_| TokenError::Forged)?,
        )
        .map_err(|_| TokenError::Forged)?;
    // The nonce is the payload's own: only tokens this edge made.
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        nonce,
        &siv(key, &payload)[..],
    )) {
        return Err(TokenError::Forged);
    }
    let (&t, rest) = payload.split_first().ok_or(TokenError::Forged)?;
    let transport = match t {
        b'u' => Transport::Udp,
        b't' => Transport::Tcp,
        b's' => Transport::Tls,
        _ => return Err(TokenError::Forged),
    };
    let (&len, rest) = rest.split_first().ok_or(TokenError::Forged)?;
    let (aor, uri) = rest
        .split_at_checked(usize::from(len))
        .ok_or(TokenError::Forged)?;
    let aor = String::from_utf8(aor.to_vec()).map_err(|_| TokenError::Forged)?;
    let uri = String::from_utf8(uri.to_vec()).map_err(|_| TokenError::Forged)?;
    Ok(Phone {
        aor,
        transport,
        uri,
    })
}

/// The URI inside a name-addr (`<...>`), or the value itself.
fn inner(value: &str) -> &str {
    let v = value.trim();
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    }
}

/// The token parameter of a URI (before any `?headers`).
pub fn token_in(uri: &str) -> Option<&str> {
    let uri = inner(uri);
    let uri = uri.split('?').next().unwrap_or(uri);
    uri.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(PARAM).then_some(v.trim())
    })
}

/// The phone a Request-URI leads to.
pub fn phone_of_uri(key: &[u8; 32], uri: &str) -> Result<Phone, TokenError> {
    phone(key, token_in(uri).ok_or(TokenError::Missing)?)
}

/// `host` as a URI host (IPv6 in brackets).
fn uri_host(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The user part of a SIP URI (empty when it has none).
pub fn user_of(uri: &str) -> &str {
    let uri = inner(uri);
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    match rest.split_once('@') {
        Some((user, _)) => user.split(';').next().unwrap_or(user),
        None => "",
    }
}

/// The Contact that replaces the phone's: the user at the flow's own
/// address, `ob` (RFC 5626 §5), the token (the form of
/// [`crate::datachannel::call::contact_on`] plus the token).
pub fn edge_contact(
    user: &str,
    flow_local: SocketAddr,
    transport: Transport,
    token: &str,
) -> String {
    let user = if user.is_empty() { "phone" } else { user };
    format!(
        "sip:{user}@{}:{};transport={};ob;{PARAM}={token}",
        uri_host(flow_local.ip()),
        flow_local.port(),
        transport.token().to_ascii_lowercase()
    )
}

/// Rewrite every Contact URI of `msg` with `f` (given the URI, it gives
/// the new one, or `None` to keep it); the header's parameters (expires,
/// +sip.instance, reg-id) and display names stay. `*` stays. False when
/// `f` refused one (a URI too long to carry).
pub fn rewrite_contacts(msg: &mut Message, mut f: impl FnMut(&str) -> Option<String>) {
    msg.rewrite_headers(|h| {
        if !h.is("Contact") {
            return Some(h);
        }
        let mut out = Vec::new();
        for v in split_list(h.value()) {
            let v = v.trim();
            if v == "*" {
                out.push(v.to_owned());
                continue;
            }
            match (v.find('<'), v.find('>')) {
                (Some(a), Some(b)) if a < b => {
                    let uri = &v[a + 1..b];
                    match f(uri) {
                        Some(new) => out.push(format!("{}<{new}>{}", &v[..a], &v[b + 1..])),
                        None => out.push(v.to_owned()),
                    }
                }
                _ => {
                    // A bare URI: its parameters are the header's (RFC 3261 §20).
                    let (uri, params) = match v.find(';') {
                        Some(i) => (&v[..i], &v[i..]),
                        None => (v, ""),
                    };
                    match f(uri) {
                        Some(new) => out.push(format!("<{new}>{params}")),
                        None => out.push(v.to_owned()),
                    }
                }
            }
        }
        Some(h.with_value(&out.join(", ")))
    });
}

/// The edge's Record-Route entry on the phone leg: `<sip:LISTEN;lr>`,
/// with `;transport=tcp` when the phone uses TCP.
pub fn record_route_entry(listen: SocketAddr, transport: Transport) -> String {
    let host = uri_host(listen.ip());
    match transport {
        Transport::Udp => format!("<sip:{host}:{};lr>", listen.port()),
        t => format!(
            "<sip:{host}:{};transport={};lr>",
            listen.port(),
            t.token().to_ascii_lowercase()
        ),
    }
}

/// Take every Record-Route entry naming one of `own` off `msg` (the
/// network never sees the phone-side address).
pub fn remove_own_record_routes(msg: &mut Message, own: &crate::sip::routing::OwnNames) {
    msg.rewrite_headers(|h| {
        if !h.is("Record-Route") {
            return Some(h);
        }
        let kept: Vec<&str> = split_list(h.value())
            .into_iter()
            .filter(|e| !HopUri::parse(e).is_some_and(|u| own.names_uri(&u)))
            .collect();
        if kept.is_empty() {
            None
        } else {
            Some(h.with_value(&kept.join(", ")))
        }
    });
}

/// Whether a request starts a dialog that the edge record-routes.
pub fn creates_dialog(msg: &Message) -> bool {
    matches!(
        msg.method(),
        Some("INVITE" | "SUBSCRIBE" | "REFER" | "NOTIFY")
    ) && msg.to_tag().ok().flatten().is_none()
}

/// Take every Via value but the top one off `msg` (the values, in order).
pub fn take_vias_below_top(msg: &mut Message) -> Vec<String> {
    let values: Vec<String> = msg
        .header_values("Via")
        .into_iter()
        .flat_map(split_list)
        .map(|v| v.trim().to_owned())
        .collect();
    let Some((top, below)) = values.split_first() else {
        return Vec::new();
    };
    let at = msg.headers().iter().position(|h| h.is("Via")).unwrap_or(0);
    msg.remove_headers("Via");
    msg.insert_header(at, "Via", top);
    below.to_vec()
}

/// Put `vias` back under the top Via of `msg` (or on top when it has none).
pub fn put_vias(msg: &mut Message, vias: &[String]) {
    if vias.is_empty() {
        return;
    }
    let mut values: Vec<String> = msg
        .header_values("Via")
        .into_iter()
        .flat_map(split_list)
        .map(|v| v.trim().to_owned())
        .collect();
    let at = msg.headers().iter().position(|h| h.is("Via")).unwrap_or(0);
    values.extend(vias.iter().cloned());
    msg.remove_headers("Via");
    msg.insert_header(at, "Via", &values.join(", "));
}

/// The Contact of a phone's response: its user's AOR with the token
/// (`sip:bob@b.example.com;sipseal-phone=TOKEN`): the far end's requests
/// in the dialog are located by the AOR and come down the flow.
pub fn aor_contact(aor: &str, token: &str) -> String {
    format!(
        "{};{PARAM}={token}",
        crate::sip::headers::without_uri_params(aor)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_token_gives_back_the_phones_contact_and_only_this_edges_does() {
        let t = token(
            &KEY,
            "sip:alice@a.example.com",
            Transport::Tcp,
            "sip:alice@127.0.0.1:5070;transport=tcp",
        )
        .unwrap();
        let p = phone(&KEY, &t).unwrap();
        assert_eq!(p.aor, "sip:alice@a.example.com");
        assert_eq!(p.transport, Transport::Tcp);
        assert_eq!(p.uri, "sip:alice@127.0.0.1:5070;transport=tcp");
        assert_eq!(p.addr(), Some("127.0.0.1:5070".parse().unwrap()));
        assert_eq!(phone(&[8; 32], &t), Err(TokenError::Forged));
        // One bit of the payload changed: the MAC no longer fits.
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&t)
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(phone(&KEY, &forged), Err(TokenError::Forged));
        assert_eq!(phone(&KEY, "!!"), Err(TokenError::Forged));
        assert_eq!(phone(&KEY, &"A".repeat(5000)), Err(TokenError::Forged));
        assert!(
            token(
                &KEY,
                "sip:bob@b.example.com",
                Transport::Udp,
                &"x".repeat(MAX_URI + 1)
            )
            .is_none()
        );
    }

    /// The token goes to the network in every Contact the phone sends:
    /// it named the phone's Contact URI (its LAN address) in base64 for
    /// anyone on the path to read.
    #[test]
    fn a_token_does_not_show_the_phones_contact() {
        let uri = "sip:alice@192.168.1.20:5070;transport=tcp";
        let t = token(&KEY, "sip:alice@a.example.com", Transport::Tcp, uri).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&t)
            .unwrap();
        for shown in [&b"192.168.1.20"[..], b"5070", b"alice@192"] {
            assert!(
                !bytes.windows(shown.len()).any(|w| w == shown),
                "the token shows {}",
                String::from_utf8_lossy(shown)
            );
        }
        // The same Contact gives the same token (a REGISTER refresh names
        // the same binding); another Contact, another token.
        assert_eq!(
            token(&KEY, "sip:alice@a.example.com", Transport::Tcp, uri),
            Some(t.clone())
        );
        assert_ne!(
            token(
                &KEY,
                "sip:alice@a.example.com",
                Transport::Tcp,
                "sip:alice@192.168.1.21:5070;transport=tcp"
            ),
            Some(t.clone())
        );
        assert_eq!(phone(&KEY, &t).unwrap().uri, uri);
        // Any part too short to carry a nonce and a tag is forged.
        for short in ["", "AAAA", &"A".repeat(36)] {
            assert_eq!(phone(&KEY, short), Err(TokenError::Forged));
        }
    }

    #[test]
    fn a_request_uri_without_a_token_is_missing_and_with_one_leads_to_the_phone() {
        let t = token(
            &KEY,
            "sip:bob@b.example.com",
            Transport::Udp,
            "sip:bob@127.0.0.1:5080",
        )
        .unwrap();
        let uri = edge_contact(
            "bob",
            "127.0.0.1:40000".parse().unwrap(),
            Transport::Tls,
            &t,
        );
        assert!(uri.starts_with("sip:bob@127.0.0.1:40000;transport=tls;ob;sipseal-phone="));
        assert_eq!(
            phone_of_uri(&KEY, &uri).unwrap().uri,
            "sip:bob@127.0.0.1:5080"
        );
        assert_eq!(
            phone_of_uri(&KEY, "sip:bob@127.0.0.1:40000;transport=tls;ob"),
            Err(TokenError::Missing)
        );
        assert_eq!(user_of(&uri), "bob");
    }

    #[test]
    fn contacts_are_rewritten_keeping_their_header_parameters() {
        let mut m = Message::parse(
            b"REGISTER sip:b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nContact: \"A\" <sip:a@127.0.0.1:5070>;expires=60, sip:a@127.0.0.1:5071;q=0.5\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        rewrite_contacts(&mut m, |u| Some(format!("sip:x@e;was={}", user_of(u))));
        assert_eq!(
            m.header("Contact").unwrap(),
            "\"A\" <sip:x@e;was=a>;expires=60, <sip:x@e;was=a>;q=0.5"
        );
    }

    #[test]
    fn own_record_route_entries_go_and_the_phones_vias_come_off_and_back() {
        let own = crate::sip::routing::OwnNames::new(["127.0.0.1:5060".parse().unwrap()]);
        let mut m = Message::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nRecord-Route: <sip:127.0.0.1:5060;lr>, <sip:proxy.example.com;lr>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        remove_own_record_routes(&mut m, &own);
        assert_eq!(
            m.header_list("Record-Route"),
            vec!["<sip:proxy.example.com;lr>"]
        );
        let below = take_vias_below_top(&mut m);
        assert_eq!(below, vec!["SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1"]);
        assert_eq!(m.vias().unwrap().len(), 1);
        m.remove_headers("Via");
        put_vias(&mut m, &below);
        assert_eq!(m.vias().unwrap().len(), 1);
        assert_eq!(
            record_route_entry("127.0.0.1:5060".parse().unwrap(), Transport::Tcp),
            "<sip:127.0.0.1:5060;transport=tcp;lr>"
        );
    }
}
