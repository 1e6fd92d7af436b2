//! Signatures (docs/SPEC.md §3.3) in-process: the outer signature of a sealed
//! INVITE (RSA-2048 PKCS#1 v1.5 and PSS), and verifying it (parse the
//! multipart/signed, the SignedData, the RSA signature, the sipfrag
//! against the headers; the chain to the demo CA).
// criterion_group! makes a public function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sipseal::context::Context;
use sipseal::envelope::Recipient;
use sipseal::envelope::signed::SignatureScheme;
use sipseal::keys::{Cert, Identity};
use sipseal::sealing::{SealSpec, seal_message};
use sipseal::signing::{outer_signature, sign_message};
use sipseal::sip::Message;
use sipseal::verify::{VerifyOptions, verify_outer};

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let invite = Message::parse(&std::fs::read(root.join("samples/invite.sip")).unwrap()).unwrap();
    let alice = Identity::load_dir(&root.join("keys/alice")).unwrap();
    let bob = Cert::load(&root.join("keys/bob/cert.pem")).unwrap();
    let anchors = Cert::load_all(&root.join("keys/trust.pem")).unwrap();
    let mut ctx = Context::new(Some(b"bench"), None);
    let spec = SealSpec {
        peers: vec![Recipient::Cert(Box::new(bob))],
        ..Default::default()
    };
    let sealed = seal_message(&invite, &spec, &mut ctx).unwrap().message;
    let signed = sign_message(&sealed, &alice, SignatureScheme::Pkcs1v15, &[], &mut ctx).unwrap();
    let wire = signed.to_bytes();
    let opts = VerifyOptions {
        anchors: &anchors,
        at: ctx.now(),
        min_route_level: None,
        received_from: None,
        crls: None,
    };

    let mut g = c.benchmark_group("signature");
    g.throughput(Throughput::Elements(1));
    for (name, scheme) in [
        ("sign/pkcs1v15", SignatureScheme::Pkcs1v15),
        ("sign/pss", SignatureScheme::Pss),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| sign_message(black_box(&sealed), &alice, scheme, &[], &mut ctx).unwrap())
        });
    }
    g.bench_function("verify/outer", |b| {
        b.iter(|| {
            let msg = Message::parse(black_box(&wire)).unwrap();
            let outer = outer_signature(&msg).unwrap().unwrap();
            let report = verify_outer(&msg, &outer, &opts);
            assert!(report.ok());
            report
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
