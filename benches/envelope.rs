//! Seal with 1, 3 and 8 recipients; open as an RSA recipient and as a PSK
//! recipient. Library calls only: the per-invocation cost of the binary is
//! measured against openssl by benches/vs-openssl.sh.
// criterion_group! makes a public function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sipseal::envelope::{Envelope, Recipient, RecipientKey, SealOptions, seal};
use sipseal::keys::{Identity, Psk};

fn keys() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

fn entity() -> Vec<u8> {
    let mut e = b"Content-Type: application/sdp\r\n\r\n".to_vec();
    e.extend_from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/offer.sdp")).unwrap(),
    );
    e
}

fn psk(n: u8) -> Psk {
    Psk {
        id: format!("bench-{n}"),
        key: zeroize::Zeroizing::new(vec![n; 32]),
        uri: Some(format!("sip:relay{n}.example.com")),
    }
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let content = entity();
    let ids: Vec<Identity> = ["bob", "proxy-a", "proxy-b", "carol", "alice"]
        .iter()
        .map(|n| Identity::load_dir(&keys().join(n)).unwrap())
        .collect();
    let cert = |i: usize| Recipient::Cert(Box::new(ids[i].cert.clone()));
    let groups: [(&str, Vec<Recipient>); 3] = [
        ("seal/1 recipient", vec![cert(0)]),
        (
            "seal/3 recipients",
            vec![cert(0), cert(1), Recipient::Psk(psk(1))],
        ),
        (
            "seal/8 recipients",
            vec![
                cert(0),
                cert(1),
                cert(2),
                cert(3),
                cert(4),
                Recipient::Psk(psk(1)),
                Recipient::Psk(psk(2)),
                Recipient::Psk(psk(3)),
            ],
        ),
    ];
    let opts = SealOptions::default();
    for (name, recipients) in &groups {
        c.bench_function(name, |b| {
            b.iter(|| seal(black_box(&content), recipients, &opts, &mut rng).unwrap())
        });
    }
    let (der, _) = seal(&content, &groups[1].1, &opts, &mut rng).unwrap();
    let bob = &ids[0];
    let rsa = [RecipientKey::Cert {
        cert: &bob.cert,
        key: bob,
    }];
    c.bench_function("open/rsa-oaep recipient", |b| {
        b.iter(|| {
            Envelope::parse(black_box(&der))
                .unwrap()
                .open(&rsa, &mut rng)
                .unwrap()
        })
    });
    let p = psk(1);
    let kek = [RecipientKey::Psk(&p)];
    c.bench_function("open/psk recipient", |b| {
        b.iter(|| {
            Envelope::parse(black_box(&der))
                .unwrap()
                .open(&kek, &mut rng)
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
