//! The registrar on arbitrary bytes (SPEC §6): whatever parses as a SIP
//! message goes to Registrar::handle (Digest parsing and checks, bodies,
//! CSRs, certificates, queries) with a memory store, twice: as from an
//! anonymous source, and as over mutual TLS from alice's certificate (the
//! owner's PUBLISH of a certificate or bare key) with a PSK of alice's
//! (sealed registrations), signed queries required and forwarding that
//! finds no registrar (issue 28); the bytes also go to the Authorization
//! parser alone. Never a panic.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sipseal::context::Context;
use sipseal::keys::{Cert, Identity, Psk};
use sipseal::keys::generate::Ca;
use sipseal::registrar::users::Users;
use sipseal::registrar::{Forward, ForwardError, NONCE_LIFETIME, Registrar, Trusted, digest};
use sipseal::sip::Message;
use sipseal::registrar::store::MemoryRegistry;

/// The registrar's CA, identity and users; alice's certificate (the TLS
/// peer), the trust anchors, and a PSK of alice's.
struct Fixture {
    ca: Ca,
    identity: Identity,
    users: Users,
    alice: Cert,
    anchors: Vec<Cert>,
    psks: Vec<Psk>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys");
        let ca = Ca::load(&root.join("ca/a.example.com")).expect("the demo CA");
        let identity = Identity::load_dir(&root.join("proxy-a")).expect("the demo keys");
        let mut users = Users::default();
        users
            .set("a.example.com", "sip:alice@a.example.com", "pw", true)
            .expect("a user");
        let alice = Cert::load(&root.join("alice/cert.pem")).expect("alice's certificate");
        let anchors = Cert::load_tree(&root.join("trust.pem")).expect("the demo anchors");
        let psk = Psk::parse(
            "id: alice-reg\nkey: 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\nuri: sip:alice@a.example.com\n",
            Path::new("fuzz"),
        )
        .expect("a PSK");
        Fixture {
            ca,
            identity,
            users,
            alice,
            anchors,
            psks: vec![psk],
        }
    })
}

/// Forwarding that finds no registrar: nothing leaves the process.
struct Nowhere;

impl Forward for Nowhere {
    fn forward(&self, _: &Message, domain: &str) -> Result<Message, ForwardError> {
        Err(ForwardError::Unlocated {
            domain: domain.to_owned(),
            why: "fuzzing".into(),
        })
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = digest::parse_authorization(text);
    }
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let f = fixture();
    let store = MemoryRegistry::new();
    let mut registrar = Registrar {
        realm: "a.example.com",
        ca: &f.ca,
        identity: &f.identity,
        users: &f.users,
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
    registrar.trusted = Trusted {
        peer: Some(&f.alice),
        anchors: &f.anchors,
        require_signed_queries: true,
        forward: Some(&Nowhere),
    };
    registrar.psks = &f.psks;
    let _ = registrar.handle(&msg, Some("192.0.2.1:5061"), &mut ctx);
});
