//! The registrar on arbitrary bytes (SPEC §6): whatever parses as a SIP
//! message goes to Registrar::handle (Digest parsing and checks, bodies,
//! CSRs, certificates, queries) with a memory store; the bytes also go to
//! the Authorization parser alone. Never a panic.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sipseal::context::Context;
use sipseal::keys::Identity;
use sipseal::keys::generate::Ca;
use sipseal::registrar::users::Users;
use sipseal::registrar::{NONCE_LIFETIME, Registrar, digest};
use sipseal::sip::Message;
use sipseal::registrar::store::MemoryRegistry;

fn fixture() -> &'static (Ca, Identity, Users) {
    static F: OnceLock<(Ca, Identity, Users)> = OnceLock::new();
    F.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys");
        let ca = Ca::load(&root.join("ca/a.example.com")).expect("the demo CA");
        let identity = Identity::load_dir(&root.join("proxy-a")).expect("the demo keys");
        let mut users = Users::default();
        users
            .set("a.example.com", "sip:alice@a.example.com", "pw", true)
            .expect("a user");
        (ca, identity, users)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = digest::parse_authorization(text);
    }
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let (ca, identity, users) = fixture();
    let store = MemoryRegistry::new();
    let registrar = Registrar {
        realm: "a.example.com",
        ca,
        identity,
        users,
        store: &store,
        max_expires: 3600,
        algorithms: &sipseal::registrar::digest::DigestAlgorithm::ALL,
        own: &Default::default(),
        nonce_lifetime: NONCE_LIFETIME,
        policy: None,
        trusted: Default::default(),
        psks: &[],
    };
    let mut ctx = Context::new(Some(b"fuzz"), None);
    let _ = registrar.handle(&msg, Some("192.0.2.1:5060"), &mut ctx);
});
