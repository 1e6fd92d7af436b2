//! SIP framing, typed headers, MIME splitting, inspect and sealed parts
//! opened in place on arbitrary bytes:
//! no panic, and whatever parses re-serializes to the exact input, less
//! the octets after the body that datagram framing discards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipseal::sip::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        // RFC 3261 §18.3: octets after Content-Length are discarded.
        assert_eq!(m.to_bytes(), &data[..data.len() - m.discarded()]);
        let _ = sipseal::inspect::inspect(&m).to_text();
        let _ = m.contacts();
        let _ = m.request_uri_parsed();
        // Outer signatures and Route-Security: taken apart, never a panic.
        let _ = sipseal::signing::outer_signature(&m);
        let _ = sipseal::signing::peel(&m);
        let _ = sipseal::sip::route_security::entries(&m);
        // The relay's one-time parse of a message.
        let view = sipseal::relay::View::parse(&m);
        let _ = (view.outer_signer(), view.outer_problem());
        // Sealed parts of a multipart body, opened in place with a PSK
        // whose id may match: the rest of the body must come back as it was.
        let psk = sipseal::keys::Psk { id: "k".into(), key: vec![7; 32].into(), uri: None };
        let mut rng = <rand::rngs::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(0);
        let keys = [sipseal::envelope::RecipientKey::Psk(&psk)];
        if let Ok(Some((opened, _))) = sipseal::sealing::open_parts(&m, &keys, &mut rng) {
            assert!(opened.message.is_some());
        }
    }
    if let Ok((m, used)) = Message::parse_prefix(data) {
        assert_eq!(m.to_bytes(), &data[..used]);
    }
    // The stand-in request a refused request is answered from parses.
    let _ = Message::salvage_request(data);
});
