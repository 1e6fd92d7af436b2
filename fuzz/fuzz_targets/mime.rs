//! MIME bodies: any bytes as a SIP body under a multipart Content-Type, and
//! as a bare entity, split and walked without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipseal::mime::{Entity, body_of};
use sipseal::sip::Message;

fuzz_target!(|data: &[u8]| {
    let mut msg = b"MESSAGE sip:b@h SIP/2.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    msg.extend_from_slice(data);
    if let Ok(m) = Message::parse(&msg) {
        let _ = body_of(&m);
    }
    if let Some(e) = Entity::parse(data) {
        let _ = e.to_bytes();
    }
});
