//! SIP framing, typed headers, MIME splitting and inspect on arbitrary bytes:
//! no panic, and whatever parses re-serializes to the exact input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipseal::sip::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        assert_eq!(m.to_bytes(), data);
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
    }
    if let Ok((m, used)) = Message::parse_prefix(data) {
        assert_eq!(m.to_bytes(), &data[..used]);
    }
});
