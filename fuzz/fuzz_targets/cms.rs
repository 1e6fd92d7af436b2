//! CMS envelopes, SignedData and the sealed-input detection: untrusted bytes must never
//! panic, whatever they parse as.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipseal::envelope::{Envelope, RecipientKey};
use sipseal::keys::Psk;
use sipseal::mime::Entity;
use sipseal::sealing::{detect, envelope_der};

fuzz_target!(|data: &[u8]| {
    // The direct read of the session shape gives what the general read
    // gives, or leaves the input to it.
    match (Envelope::parse(data), Envelope::parse_general(data)) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("direct {:?}, general {:?}", a.is_ok(), b.is_ok()),
    }
    if let Ok(env) = Envelope::parse(data) {
        let _ = env.describe();
        // A PSK whose id may match: exercises unwrap and content decryption.
        let psk = Psk { id: "k".into(), key: vec![7; 32].into(), uri: None };
        let mut rng = <rand::rngs::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(0);
        let _ = env.open(&[RecipientKey::Psk(&psk)], &mut rng);
    }
    // A KEMRecipientInfo alone (RFC 9629), and described as inspect would.
    if let Ok(k) = sipseal::envelope::kemri::parse(data) {
        let _ = sipseal::envelope::kemri::describe(&k);
    }
    if let Ok(input) = detect(data) {
        let _ = envelope_der(&input);
    }
    if let Some(e) = Entity::parse(data) {
        let _ = sipseal::signing::unwrap_inner(&e);
    }
    // SignedData: parse and verify over the bytes themselves (detached).
    if let Ok(signed) = sipseal::envelope::signed::Signed::parse(data) {
        let _ = signed.verify(Some(data));
    }
});
