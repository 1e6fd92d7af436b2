//! A relay step on arbitrary bytes (SPEC §4): whatever parses as a SIP
//! message goes through admission, the one-time parse into a view, the
//! decision, a trial open (proxy-a-ec, ECDH as the live relay does, and
//! proxy-a's PSK), and forwarding or an answer;
//! never a panic, and no state kept from a message that was not opened.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sipseal::context::Context;
use sipseal::keys::{Identity, Psk};
use sipseal::policy::Bindings;
use sipseal::relay::{Mode, PathOptions, ProxyOptions, RelayKeys, RelayOptions, RelayState, relay};
use sipseal::sip::Message;
use sipseal::state::{MemoryStore, SessionStore};

fn keys() -> &'static (Identity, Vec<Psk>) {
    static KEYS: OnceLock<(Identity, Vec<Psk>)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys");
        let identity = Identity::load_dir(&root.join("proxy-a-ec")).expect("the demo keys");
        let psk = Psk::load(&root.join("psk/alice-proxy-a.yaml")).expect("the demo PSK");
        (identity, vec![psk])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let (identity, psks) = keys();
    let keys = RelayKeys {
        identity: Some(identity),
        psks,
        certs: &[],
    };
    // Bindings and a source, so that admission's imposture check (an ACK
    // too, issue 25 H1) and the vouching run on every message.
    static BINDINGS: OnceLock<std::sync::Arc<Bindings>> = OnceLock::new();
    let bindings = BINDINGS.get_or_init(|| {
        std::sync::Arc::new(Bindings::from_map(std::collections::BTreeMap::from([(
            "sip:alice@a.example.com".to_owned(),
            vec!["192.0.2.10".to_owned()],
        )])))
    });
    let source = if data.len() % 2 == 0 { "192.0.2.10:5060" } else { "192.0.2.66:5060" };
    let opts = RelayOptions {
        mode: Mode::Proxy(ProxyOptions {
            trial: true,
            record_route: true,
            ..Default::default()
        }),
        path: PathOptions {
            received_from: Some(source.to_owned()),
            flow: Some(format!("tcp:{source}")),
            bindings: Some(std::sync::Arc::clone(bindings)),
            link_level: Some(3),
            ..Default::default()
        },
        ..Default::default()
    };
    let store = MemoryStore::new();
    let state = RelayState {
        sessions: &store,
        pinholes: Some(&store),
    };
    let mut ctx = Context::new(Some(b"fuzz"), None);
    if let Ok(step) = relay(&msg, &keys, &opts, state, &mut ctx)
        && !step.report.opened
    {
        assert!(store.all().unwrap().is_empty(), "a session kept from an unopened body");
    }
});
