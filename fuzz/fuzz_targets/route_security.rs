//! Route-Security entries and Proxy-Inspect-Body designations, one value
//! and a whole message's worth.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipseal::sip::Message;
use sipseal::sip::disclosure::{Designation, designations};
use sipseal::sip::route_security::{EntryForm, RouteEntry, entries, own_position};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // Both forms: what parses is written back and reads the same.
        if let Ok(e) = RouteEntry::parse(text) {
            for form in [EntryForm::Bare, EntryForm::NameAddr] {
                assert_eq!(RouteEntry::parse(&e.to_value(form)).as_ref(), Ok(&e));
            }
        }
        let _ = Designation::parse(text);
        let _ = sipseal::sip::syntax::name_addr(text);
        let _ = sipseal::sip::syntax::via_list(text);
    }
    let mut msg = b"INVITE sip:b@h SIP/2.0\r\nRoute-Security: ".to_vec();
    msg.extend_from_slice(data);
    msg.extend_from_slice(b"\r\nProxy-Inspect-Body: ");
    msg.extend_from_slice(data);
    msg.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    if let Ok(m) = Message::parse(&msg) {
        let _ = entries(&m);
        let _ = own_position(&m);
        let _ = designations(&m);
    }
});
