//! Registrations in process: the registrar answering an authorized
//! REGISTER with a fresh P-256 CSR (Digest check, CSR signature, a
//! certificate issued by the demo CA with RSA-2048, the registry written
//! atomically with fsync, the 200 OK outer-signed), and answering a
//! REGISTER without credentials (the 401). The request and its challenge
//! are made outside the timing. `bash benches/registrar.sh` gives the
//! per-invocation figure.
// criterion_group! makes a public function without documentation.
#![allow(missing_docs)]

use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sipseal::context::Context;
use sipseal::keys::Identity;
use sipseal::keys::generate::{Ca, KeyType, SigningKey, make_csr, subject_for};
use sipseal::registrar::users::Users;
use sipseal::registrar::{NONCE_LIFETIME, Registrar, digest};
use sipseal::sip::{Body, Message, RequestParams, build_request};
use sipseal::state::FileStore;

const REALM: &str = "a.example.com";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn request(aor: &str, body: Option<Body>) -> RequestParams {
    RequestParams {
        method: "REGISTER".into(),
        from: aor.into(),
        to: aor.into(),
        request_uri: Some(format!("sip:{REALM}")),
        contact: Some("sip:u@192.0.2.10".into()),
        headers: vec![("Expires".into(), "3600".into())],
        body,
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::new(tmp.path());
    let ca = Ca::load(&repo().join("keys/ca/a.example.com")).unwrap();
    let identity = Identity::load_dir(&repo().join("keys/proxy-a")).unwrap();
    // Every timed registration is a user of its own, as a registrar sees
    // them: each AOR's record holds one binding and one certificate.
    const USERS: usize = 3000;
    let mut users = Users::default();
    for i in 0..USERS {
        let aor = format!("sip:u{i}@a.example.com");
        users.set(REALM, &aor, "pw", false).unwrap();
    }
    let registrar = Registrar {
        realm: REALM,
        ca: &ca,
        identity: &identity,
        users: &users,
        store: &store,
        max_expires: 3600,
        algorithms: &sipseal::registrar::digest::DigestAlgorithm::DEFAULT,
        own: &Default::default(),
        nonce_lifetime: NONCE_LIFETIME,
        policy: None,
        trusted: Default::default(),
        psks: &[],
    };
    let mut ctx = Context::new(None, None);
    let key = SigningKey::generate(KeyType::P256, &mut ctx).unwrap();
    let plain = build_request(&request("sip:u0@a.example.com", None), &mut ctx).unwrap();
    c.bench_function("registrar/challenge", |b| {
        b.iter(|| registrar.handle(&plain, None, &mut ctx).unwrap())
    });
    let mut next = 0;
    let mut authorized = |ctx: &mut Context| -> Message {
        let (user, aor) = (format!("u{next}"), format!("sip:u{next}@a.example.com"));
        next = (next + 1) % USERS;
        let csr = der::Encode::to_der(
            &make_csr(
                &key,
                subject_for(&aor).unwrap(),
                std::slice::from_ref(&aor),
                &[],
            )
            .unwrap(),
        )
        .unwrap();
        let mut p = request(
            &aor,
            Some(Body {
                content_type: "application/pkcs10".into(),
                bytes: csr.clone(),
            }),
        );
        // A request with a body is challenged for auth-int, and answered so.
        let first = build_request(&p, ctx).unwrap();
        let challenge = registrar.handle(&first, None, ctx).unwrap().response;
        let www = challenge.header("WWW-Authenticate").unwrap().to_owned();
        let cnonce = hex::encode(ctx.bytes(8));
        let uri = format!("sip:{REALM}");
        let auth = digest::answer(&www, &user, "pw", "REGISTER", &uri, &csr, &cnonce).unwrap();
        p.headers.push(("Authorization".into(), auth));
        build_request(&p, ctx).unwrap()
    };
    let mut setup_ctx = Context::new(None, None);
    c.bench_function("registrar/register-with-csr", |b| {
        b.iter_batched(
            || authorized(&mut setup_ctx),
            |req| {
                let h = registrar.handle(&req, None, &mut ctx).unwrap();
                assert!(h.response.to_bytes().starts_with(b"SIP/2.0 200"));
                h
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
