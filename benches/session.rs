//! The warm path of a session (docs/SPEC.md §3.2): messages sealed under a stored
//! session key, opened in-process with the key already in memory. Target
//! (issue 5): warm open >= 100,000 messages/s on one core. The per-
//! invocation cost against `openssl cms -decrypt -secretkey` is measured by
//! benches/session-vs-openssl.sh.
// criterion_group! makes a public function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;

/// The allocator the sipseal binary runs with (src/bin/sipseal/main.rs):
/// the figures are what a relay or a script gets.
#[cfg(feature = "cli")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sipseal::context::Context;
use sipseal::envelope::{Envelope, RecipientKey};
use sipseal::keys::Identity;
use sipseal::sealing::{SealedInput, detect, open_input, seal_session};
use sipseal::session::{DEFAULT_GRACE, Entry, Policy, Role, SessionKey};
use sipseal::sip::Message;
use sipseal::state::{MemoryStore, SessionStore};
use sipseal::ua::Ua;

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let invite = Message::parse(&std::fs::read(root.join("samples/invite.sip")).unwrap()).unwrap();
    let key = SessionKey::derive(invite.call_id().unwrap(), &[7u8; 32]);
    let mut ctx = Context::new(Some(b"bench"), None);
    let sealed = seal_session(&invite, &key, &mut ctx).unwrap();
    let wire = sealed.message.to_bytes();
    let keys = [key.recipient_key()];

    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    g.bench_function("warm open/envelope", |b| {
        b.iter(|| {
            Envelope::parse(black_box(&sealed.der))
                .unwrap()
                .open(&keys, ctx.rng())
                .unwrap()
        })
    });
    g.bench_function("warm open/SIP message", |b| {
        b.iter(|| {
            let input = match detect(black_box(&wire)) {
                Ok(i @ SealedInput::Sip(_)) => i,
                _ => unreachable!("a SIP message"),
            };
            open_input(input, &keys, ctx.rng())
                .unwrap()
                .message
                .unwrap()
        })
    });
    // The user agent's workflow: the key found in a (memory) session store
    // by the message's reference, as the live server will.
    let store = MemoryStore::new();
    let owner = "sip:bob@b.example.com";
    let now = ctx.now();
    let entry = Entry::new(
        invite.call_id().unwrap(),
        &[7u8; 32],
        Role::Ua,
        None,
        now,
        &Policy::default(),
    );
    store.record(owner, entry, now, DEFAULT_GRACE).unwrap();
    let bob = Identity::load_dir(&root.join("keys/bob")).unwrap();
    let bob_keys = [RecipientKey::Cert {
        cert: &bob.cert,
        key: &bob,
    }];
    let ua = Ua {
        store: &store,
        limits: Default::default(),
    };
    g.bench_function("warm open/workflow (memory store)", |b| {
        b.iter(|| {
            let input = SealedInput::Sip(Message::parse(black_box(&wire)).unwrap());
            ua.open(input, &bob_keys, None, &mut ctx).unwrap()
        })
    });
    g.bench_function("seal/SIP message", |b| {
        b.iter(|| seal_session(black_box(&invite), &key, &mut ctx).unwrap())
    });
    g.finish();

    // The warm open of a SIP message in its steps, to see where it goes.
    let msg = Message::parse(&wire).unwrap();
    let der = sipseal::sealing::sealed_body(&msg).unwrap();
    let env = Envelope::parse(&der).unwrap();
    let opened = env.open(&keys, ctx.rng()).unwrap();
    let entity = sipseal::mime::Entity::parse(&opened.content);
    let mut g = c.benchmark_group("warm step");
    g.bench_function("parse SIP", |b| {
        b.iter(|| Message::parse(black_box(&wire)).unwrap())
    });
    g.bench_function("sealed body", |b| {
        b.iter(|| sipseal::sealing::sealed_body(black_box(&msg)).unwrap())
    });
    g.bench_function("parse envelope", |b| {
        b.iter(|| Envelope::parse(black_box(&der)).unwrap())
    });
    g.bench_function("unwrap and decrypt", |b| {
        b.iter(|| black_box(&env).open(&keys, ctx.rng()).unwrap())
    });
    g.bench_function("parse entity", |b| {
        b.iter(|| sipseal::mime::Entity::parse(black_box(&opened.content)))
    });
    g.bench_function("restore", |b| {
        b.iter(|| {
            sipseal::sealing::restore(black_box(&msg).clone(), entity.as_ref(), &opened.content)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
