//! The relay's cold path, in process: open a sealed INVITE addressed to
//! this relay (parse the SIP message, find its RecipientInfo, one
//! private-key operation, AES-GCM, restore the message), with the relay's
//! key already loaded as a running relay has it, and no session key yet.
//! `bash benches/cold-vs-openssl.sh` compares it with `openssl speed`.
// criterion_group! makes a public function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sipseal::context::Context;
use sipseal::envelope::{Recipient, RecipientKey, SealOptions};
use sipseal::keys::Identity;
use sipseal::sealing::{SealSpec, SealedInput, open_input, seal_message};
use sipseal::sip::Message;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut ctx = Context::new(Some(b"bench"), None);
    let invite =
        Message::parse(&std::fs::read(repo().join("samples/invite.sip")).unwrap()).unwrap();
    for (name, peer, relay) in [
        ("cold/rsa-2048", "bob", "proxy-a"),
        ("cold/p256", "bob-ec", "proxy-a-ec"),
    ] {
        let load = |who: &str| Identity::load_dir(&repo().join("keys").join(who)).unwrap();
        let (peer, relay) = (load(peer), load(relay));
        let spec = SealSpec {
            peers: vec![Recipient::Cert(Box::new(peer.cert.clone()))],
            disclose: vec![Recipient::Cert(Box::new(relay.cert.clone()))],
            options: SealOptions::default(),
            ..Default::default()
        };
        let sealed = seal_message(&invite, &spec, &mut ctx).unwrap().message;
        let keys = [RecipientKey::Cert {
            cert: &relay.cert,
            key: &relay,
        }];
        // The key is read once, as a relay that runs reads it.
        open_input(SealedInput::Sip(sealed.clone()), &keys, &mut rng).unwrap();
        let bytes = sealed.to_bytes();
        c.bench_function(name, |b| {
            b.iter(|| {
                let msg = Message::parse(black_box(&bytes)).unwrap();
                open_input(SealedInput::Sip(msg), &keys, &mut rng).unwrap()
            })
        });
    }
}

/// The parts of the P-256 cold path that no SIP or CMS code can shorten:
/// the static ECDH alone (aws-lc-rs's scalar multiplication), with the
/// ephemeral point uncompressed and compressed (RFC 5753 allows both;
/// sipseal writes compressed points to fit a datagram, and the p256 crate
/// decompresses them first).
fn p256_parts(c: &mut Criterion) {
    use p256::elliptic_curve::Generate;
    use p256::elliptic_curve::sec1::ToSec1Point;
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let relay = Identity::load_dir(&repo().join("keys/proxy-a-ec")).unwrap();
    let key = relay.private_key().unwrap();
    let ephemeral = p256::SecretKey::generate_from_rng(&mut rng).public_key();
    for (name, compress) in [
        ("cold/p256-ecdh-uncompressed", false),
        ("cold/p256-ecdh-compressed", true),
    ] {
        let point = ephemeral.to_sec1_point(compress).as_bytes().to_vec();
        key.agree(&point).unwrap();
        c.bench_function(name, |b| b.iter(|| key.agree(black_box(&point)).unwrap()));
    }
}

criterion_group!(benches, bench, p256_parts);
criterion_main!(benches);
