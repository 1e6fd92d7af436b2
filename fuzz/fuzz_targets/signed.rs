//! SignedData: parse, describe and verify arbitrary bytes (as the content
//! and as a detached signature over a fixed content), with BER read as DER.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipseal::envelope::ber;
use sipseal::envelope::signed::Signed;

fuzz_target!(|data: &[u8]| {
    let _ = ber::to_der(data);
    if let Ok(s) = Signed::parse(data) {
        let _ = s.signers();
        let _ = s.verify(None);
        let _ = s.verify(Some(b"content"));
    }
});
