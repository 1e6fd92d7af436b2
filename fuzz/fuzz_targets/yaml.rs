//! The YAML a user hands over: PSK files, bindings, policies and session
//! stores parse or fail, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipseal::keys::Psk;
use sipseal::session::Sessions;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Psk::parse(text, std::path::Path::new("fuzz.yaml"));
        let _ = sipseal::yaml::from_str::<Sessions>(text);
        let _ = sipseal::yaml::from_str::<std::collections::BTreeMap<String, Vec<String>>>(text);
    }
});
