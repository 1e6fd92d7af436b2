//! A relay step on arbitrary bytes (SPEC §4): whatever parses as a SIP
//! message goes through admission, the one-time parse into a view, the
//! decision, a trial open with proxy-a's PSK, and forwarding or an answer;
//! never a panic, and no state kept from a message that was not opened.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sipseal::context::Context;
use sipseal::keys::{Identity, Psk};
use sipseal::relay::{Mode, ProxyOptions, RelayKeys, RelayOptions, RelayState, relay};
use sipseal::sip::Message;
use sipseal::state::{MemoryStore, SessionStore};

fn keys() -> &'static (Identity, Vec<Psk>) {
    static KEYS: OnceLock<(Identity, Vec<Psk>)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys");
        let identity = Identity::load_dir(&root.join("proxy-a")).expect("the demo keys");
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
    let opts = RelayOptions {
        mode: Mode::Proxy(ProxyOptions {
            trial: true,
            record_route: true,
            ..Default::default()
        }),
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
