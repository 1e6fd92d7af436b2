//! Issue 28, items 2 and 3, live (docs/SPEC.md §6): PUBLISH of a
//! certificate or a bare key over mutual TLS, answered with a certificate
//! `openssl verify` accepts; signed certificate queries, verified,
//! answered with the AOR's location and the registration's expiry, and
//! refused unsigned under `--require-signed-queries`; a query for another
//! domain forwarded to that domain's registrar (a second live registrar
//! found through the hosts table) and its signed answer relayed back; a
//! domain that cannot be located, 404.

mod common;

use std::path::{Path, PathBuf};

use common::live::{Daemon, hosts};
use common::{Succeeds, openssl, s, sipseal, text, write};

const ALICE: &str = "sip:alice@a.example.com";
const BOB: &str = "sip:bob@a.example.com";

/// Run sipseal in `d`; its output, after checking it succeeded.
fn run(d: &Path, args: &[&str]) -> std::process::Output {
    sipseal().current_dir(d).args(args).succeeds()
}

/// A CA, a registrar identity (RSA: it signs its answers) and a user.
fn realm(d: &Path, domain: &str, ca: &str, reg: &str) {
    run(
        d,
        &[
            "keys",
            "ca",
            "--name",
            &format!("CN={domain} CA"),
            "--out",
            ca,
        ],
    );
    run(
        d,
        &[
            "keys",
            "generate",
            "--uri",
            &format!("sip:registrar.{domain}"),
            "--ca",
            ca,
            "--out",
            reg,
        ],
    );
}

/// `user`'s credentials in `users`.
fn passwd(d: &Path, users: &str, domain: &str, user: &str) {
    write(d, "pw", b"secret-pw\n");
    run(
        d,
        &[
            "registrar",
            "passwd",
            "--users",
            users,
            "--realm",
            domain,
            "--user",
            user,
            "--password-file",
            "pw",
        ],
    );
}

/// A live registrar of `domain` on TLS and TCP.
fn registrar(d: &Path, name: &str, domain: &str, ca: &str, reg: &str, extra: &[&str]) -> Daemon {
    let mut args: Vec<String> = [
        "registrar",
        "--listen",
        "tls:127.0.0.1:0",
        "--listen",
        "tcp:127.0.0.1:0",
        "--realm",
        domain,
        "--ca",
        s(&d.join(ca)),
        "--identity",
        s(&d.join(reg)),
        "--users",
        s(&d.join("users.yaml")),
        "--state",
        s(&d.join(format!("{name}-store"))),
        "--trust",
        s(&d.join(format!("{ca}/cert.pem"))),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(d, name, &args)
}

/// `sipseal send` of `request` to `next` with `extra`: exit code and
/// every response, in order.
fn send(request: &Path, next: &str, extra: &[&str]) -> (i32, Vec<Vec<u8>>, String) {
    let out = sipseal()
        .args(["send", s(request), "--next", next, "--timeout", "10"])
        .args(extra)
        .output()
        .unwrap();
    let mut rest: &[u8] = &out.stdout;
    let mut all = Vec::new();
    while !rest.is_empty() {
        let (m, used) = sipseal::sip::Message::parse_prefix(rest).unwrap();
        all.push(m.to_bytes());
        rest = &rest[used..];
    }
    (out.status.code().unwrap_or(-1), all, text(&out))
}

/// `bytes` with the first `was` made `now`.
fn replace_first(bytes: &[u8], was: &[u8], now: &[u8]) -> Vec<u8> {
    let at = bytes.windows(was.len()).position(|w| w == was).unwrap();
    [&bytes[..at], now, &bytes[at + was.len()..]].concat()
}

fn status(response: &[u8]) -> String {
    String::from_utf8_lossy(response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn header<'a>(response: &'a str, name: &str) -> Vec<&'a str> {
    response
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
        .collect()
}

/// `openssl verify` of `cert` against `ca`: whether it passed, and what it said.
fn openssl_verify(ca: &Path, cert: &Path) -> (bool, String) {
    let out = openssl()
        .args(["verify", "-CAfile", s(ca), s(cert)])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The DER SubjectPublicKeyInfo of a key file, as openssl writes it.
fn openssl_spki(key: &Path) -> Vec<u8> {
    let out = openssl()
        .args(["pkey", "-in", s(key), "-pubout", "-outform", "DER"])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// A certificate query built by `certquery` with `extra`, written to `name`.
fn query(d: &Path, name: &str, aor: &str, extra: &[&str]) -> PathBuf {
    let q = run(d, &[&["certquery", "--uri", aor][..], extra].concat()).stdout;
    write(d, name, &q)
}

#[test]
fn publish_over_mutual_tls_takes_an_openssl_certificate_and_a_bare_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    realm(d, "a.example.com", "ca", "reg");
    // alice's client certificate for TLS, and bob (who asks for keys).
    for (who, aor) in [("alice", ALICE), ("bob", BOB)] {
        run(
            d,
            &["keys", "generate", "--uri", aor, "--ca", "ca", "--out", who],
        );
    }
    // Another CA the listener trusts (for its users' TLS and signed
    // queries), which issued a certificate naming alice too.
    run(
        d,
        &["keys", "ca", "--name", "CN=Other CA", "--out", "other"],
    );
    run(
        d,
        &[
            "keys", "generate", "--uri", ALICE, "--ca", "other", "--out", "fake",
        ],
    );
    passwd(d, "users.yaml", "a.example.com", ALICE);
    let reg = registrar(
        d,
        "reg-a",
        "a.example.com",
        "ca",
        "reg",
        &["--trust", s(&d.join("other/cert.pem"))],
    );
    let table = hosts(d, &[("registrar.a.example.com", reg.port("tls"))]);
    let ca = d.join("ca/cert.pem");
    let over_tls = |req: &Path, who: &str| {
        send(
            req,
            "sip:registrar.a.example.com;transport=tls",
            &[
                "--hosts",
                s(&table),
                "--identity",
                s(&d.join(who)),
                "--trust",
                s(&ca),
            ],
        )
    };

    // A self-signed certificate openssl made for a new P-256 key.
    std::fs::create_dir(d.join("new")).unwrap();
    let o = openssl()
        .current_dir(d)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "new/key.pem",
            "-out",
            "self.pem",
            "-days",
            "30",
            "-subj",
            "/CN=alice@a.example.com",
            "-addext",
            "subjectAltName=URI:sip:alice@a.example.com",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let publish = run(
        d,
        &[
            "register",
            "--publish",
            "--uri",
            ALICE,
            "--cert",
            "self.pem",
            "--expires",
            "600",
        ],
    )
    .stdout;
    let publish = write(d, "publish-cert.sip", &publish);
    // Over TCP, without the owner's channel: Digest, then the same 415
    // as before (a certificate proves no possession there).
    let (code, answers, err) = send(
        &publish,
        &format!("tcp:127.0.0.1:{}", reg.port("tcp")),
        &["--password-file", s(&d.join("pw"))],
    );
    assert_eq!(code, 5, "{err}\n{}", reg.log_text());
    assert_eq!(status(&answers[0]), "SIP/2.0 401 Unauthorized", "{err}");
    let last = String::from_utf8_lossy(answers.last().unwrap()).into_owned();
    assert!(last.starts_with("SIP/2.0 415"), "{last}");
    assert!(
        header(&last, "Accept").contains(&"application/pkcs10"),
        "{last}"
    );
    // Over mutual TLS as bob: not alice's channel, so Digest is asked for.
    let (code, answers, err) = over_tls(&publish, "bob");
    assert_eq!(code, 5, "{err}\n{}", reg.log_text());
    assert_eq!(status(&answers[0]), "SIP/2.0 401 Unauthorized");
    // As "alice" from the other CA: not the owner of an AOR here.
    let (code, answers, _) = over_tls(&publish, "fake");
    assert_eq!(code, 5);
    assert_eq!(status(&answers[0]), "SIP/2.0 401 Unauthorized");
    // As alice: no challenge; the certificate issued again by the CA for
    // the same key.
    let (code, answers, err) = over_tls(&publish, "alice");
    assert_eq!(code, 0, "{err}\n{}", reg.log_text());
    assert_eq!(answers.len(), 1);
    let ok = String::from_utf8_lossy(&answers[0]).into_owned();
    assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
    assert_eq!(header(&ok, "Expires"), ["600"]);
    let ok = write(d, "publish-cert-200.sip", &answers[0]);
    run(
        d,
        &[
            "register",
            "--accept",
            s(&ok),
            "--identity",
            "new",
            "--trust",
            s(&ca),
        ],
    );
    let (verified, said) = openssl_verify(&ca, &d.join("new/cert.pem"));
    assert!(verified, "{said}");
    let (verified, _) = openssl_verify(&ca, &d.join("self.pem"));
    assert!(
        !verified,
        "the self-signed one alone does not chain to the CA"
    );

    // A bare RSA key openssl made.
    std::fs::create_dir(d.join("bare")).unwrap();
    let o = openssl()
        .current_dir(d)
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "bare/key.pem",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = openssl()
        .current_dir(d)
        .args(["pkey", "-in", "bare/key.pem", "-pubout", "-out", "bare.pub"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let publish = run(
        d,
        &[
            "register",
            "--publish",
            "--uri",
            ALICE,
            "--public-key",
            "bare.pub",
            "--expires",
            "900",
        ],
    )
    .stdout;
    assert!(String::from_utf8_lossy(&publish).contains("Content-Type: application/x-sipseal-spki"));
    let publish = write(d, "publish-key.sip", &publish);
    let (code, answers, err) = over_tls(&publish, "alice");
    assert_eq!(code, 0, "{err}\n{}", reg.log_text());
    let ok = write(d, "publish-key-200.sip", &answers[0]);
    run(
        d,
        &[
            "register",
            "--accept",
            s(&ok),
            "--identity",
            "bare",
            "--trust",
            s(&ca),
        ],
    );
    let (verified, said) = openssl_verify(&ca, &d.join("bare/cert.pem"));
    assert!(verified, "{said}");

    // The bare key, to bob's signed query; nothing to an anonymous one.
    let tcp = format!("tcp:127.0.0.1:{}", reg.port("tcp"));
    let q = query(d, "key-q.sip", ALICE, &["--key", "--sign", "bob"]);
    let (code, answers, err) = send(&q, &tcp, &[]);
    assert_eq!(code, 0, "{err}\n{}", reg.log_text());
    let answer = write(d, "key-200.sip", &answers[0]);
    let stored = sipseal()
        .args(["certquery", "--accept", s(&answer), "--key"])
        .args(["--trust", s(&ca), "--out", s(&d.join("fetched"))])
        .succeeds();
    assert!(text(&stored).contains("the key of sip:alice@a.example.com"));
    let pem = std::fs::read_to_string(d.join("fetched/alice@a.example.com.pub.pem")).unwrap();
    let (_, der) = der::pem::decode_vec(pem.as_bytes()).unwrap();
    assert_eq!(
        der,
        openssl_spki(&d.join("bare/key.pem")),
        "the key published"
    );
    let q = query(d, "key-anon.sip", ALICE, &["--key"]);
    let (code, answers, _) = send(&q, &tcp, &[]);
    assert_eq!(code, 5);
    assert_eq!(status(&answers[0]), "SIP/2.0 404 Not Found");
    // The certificate itself, to anyone, as before.
    let q = query(d, "cert-anon.sip", ALICE, &[]);
    let (code, _, err) = send(&q, &tcp, &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn signed_queries_are_verified_and_answered_with_location_and_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    realm(d, "a.example.com", "ca", "reg");
    run(
        d,
        &[
            "keys", "generate", "--type", "p256", "--uri", ALICE, "--ca", "ca", "--out", "alice",
        ],
    );
    run(
        d,
        &[
            "keys", "generate", "--uri", BOB, "--ca", "ca", "--out", "bob",
        ],
    );
    // Mallory's identity from a CA the registrar does not trust.
    run(
        d,
        &["keys", "ca", "--name", "CN=Other CA", "--out", "other"],
    );
    run(
        d,
        &[
            "keys", "generate", "--uri", BOB, "--ca", "other", "--out", "mallory",
        ],
    );
    passwd(d, "users.yaml", "a.example.com", ALICE);
    let reg = registrar(
        d,
        "reg-a",
        "a.example.com",
        "ca",
        "reg",
        &["--require-signed-queries"],
    );
    let tcp = format!("tcp:127.0.0.1:{}", reg.port("tcp"));
    let ca = d.join("ca/cert.pem");
    let register = run(
        d,
        &[
            "register",
            "--uri",
            ALICE,
            "--contact",
            "sip:alice@127.0.0.1:5066",
            "--expires",
            "600",
            "--identity",
            "alice",
        ],
    )
    .stdout;
    let register = write(d, "register.sip", &register);
    let (code, _, err) = send(&register, &tcp, &["--password-file", s(&d.join("pw"))]);
    assert_eq!(code, 0, "{err}\n{}", reg.log_text());

    // Signed by bob: verified, answered with alice's Contact and expiry.
    let q = query(d, "signed.sip", ALICE, &["--sign", "bob"]);
    let sent = String::from_utf8_lossy(&std::fs::read(&q).unwrap()).into_owned();
    assert!(sent.contains("From: <sip:bob@a.example.com>"), "{sent}");
    assert!(sent.contains("multipart/signed"), "{sent}");
    let (code, answers, err) = send(&q, &tcp, &[]);
    assert_eq!(code, 0, "{err}\n{}", reg.log_text());
    let ok = String::from_utf8_lossy(&answers[0]).into_owned();
    let contacts = header(&ok, "Contact");
    assert_eq!(contacts.len(), 1, "{ok}");
    assert!(
        contacts[0].starts_with("<sip:alice@127.0.0.1:5066>;expires="),
        "{ok}"
    );
    let left: i64 = contacts[0].rsplit('=').next().unwrap().parse().unwrap();
    assert!((590..=600).contains(&left), "{left}");
    let expires: Vec<i64> = header(&ok, "Expires")
        .iter()
        .map(|e| e.parse().unwrap())
        .collect();
    assert_eq!(expires, [left], "the registration's expiry");
    let answer = write(d, "signed-200.sip", &answers[0]);
    let stored = sipseal()
        .args(["certquery", "--accept", s(&answer), "--trust", s(&ca)])
        .args(["--out", s(&d.join("fetched"))])
        .succeeds();
    let said = text(&stored);
    assert!(
        said.contains("located at <sip:alice@127.0.0.1:5066>;expires="),
        "{said}"
    );
    assert!(said.contains("registration expires in"), "{said}");
    let (verified, said) = openssl_verify(&ca, &d.join("fetched/alice@a.example.com.pem"));
    assert!(verified, "{said}");
    assert!(reg.logged("200 certificate"), "{}", reg.log_text());
    // The location is signed with the rest: one moved on the way is refused,
    // and nothing is stored.
    let moved = replace_first(
        &answers[0],
        b"<sip:alice@127.0.0.1:5066>",
        b"<sip:alice@198.51.100.9:5066>",
    );
    let moved = write(d, "moved-200.sip", &moved);
    let out = sipseal()
        .args(["certquery", "--accept", s(&moved), "--trust", s(&ca)])
        .args(["--out", s(&d.join("moved"))])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("the answer's Contact is not what the registrar signed"),
        "{}",
        text(&out)
    );
    assert!(!d.join("moved").exists());

    // Unsigned: 495 with a Warning that says how to sign.
    let q = query(d, "unsigned.sip", ALICE, &["--from", BOB]);
    let (code, answers, _) = send(&q, &tcp, &[]);
    assert_eq!(code, 5);
    let refused = String::from_utf8_lossy(&answers[0]).into_owned();
    assert!(refused.starts_with("SIP/2.0 495"), "{refused}");
    assert!(
        header(&refused, "Warning")
            .iter()
            .any(|w| w.contains("certquery --sign")),
        "{refused}"
    );
    assert!(header(&refused, "Contact").is_empty());
    let refused = write(d, "unsigned-495.sip", refused.as_bytes());
    let out = sipseal()
        .args(["certquery", "--accept", s(&refused), "--trust", s(&ca)])
        .args(["--out", s(&d.join("none"))])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("certquery --sign"), "{}", text(&out));
    // Signed by a certificate of a CA the registrar does not trust: 403.
    let q = query(d, "mallory.sip", ALICE, &["--sign", "mallory"]);
    let (_, answers, _) = send(&q, &tcp, &[]);
    assert_eq!(status(&answers[0]), "SIP/2.0 403 Forbidden");
    // Signed by bob ten minutes ago: sent again now, a replay; 403.
    let then = (time::OffsetDateTime::now_utc() - time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let old = sipseal()
        .current_dir(d)
        .args(["--now", &then])
        .args(["certquery", "--uri", ALICE, "--sign", "bob"])
        .output()
        .unwrap();
    let old = write(d, "old.sip", &old.stdout);
    let (_, answers, _) = send(&old, &tcp, &[]);
    assert_eq!(status(&answers[0]), "SIP/2.0 403 Forbidden");
    assert!(reg.logged("replayed, or a clock off"), "{}", reg.log_text());
    // Signed by bob, but the question changed after signing: 403.
    let q = query(d, "edited.sip", ALICE, &["--sign", "bob"]);
    let edited = replace_first(
        &std::fs::read(&q).unwrap(),
        b"Accept: application/pkix-cert\r\n",
        b"Accept: application/x-sipseal-spki\r\n",
    );
    let q = write(d, "edited.sip", &edited);
    let (_, answers, _) = send(&q, &tcp, &[]);
    assert_eq!(status(&answers[0]), "SIP/2.0 403 Forbidden");
    assert!(
        reg.logged("whose signature does not verify"),
        "{}",
        reg.log_text()
    );
}

#[test]
fn a_query_for_another_domain_is_forwarded_and_an_unlocatable_one_is_404() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    realm(d, "a.example.com", "ca-a", "reg-a");
    realm(d, "b.example.com", "ca-b", "reg-b");
    run(
        d,
        &[
            "keys", "generate", "--uri", BOB, "--ca", "ca-a", "--out", "bob",
        ],
    );
    let carol = "sip:carol@b.example.com";
    run(
        d,
        &[
            "keys", "generate", "--type", "p256", "--uri", carol, "--csr", "--out", "carol",
        ],
    );
    passwd(d, "users.yaml", "b.example.com", carol);
    // b's registrar trusts a's CA too, to verify a's users' signatures.
    let reg_b = registrar(
        d,
        "reg-b",
        "b.example.com",
        "ca-b",
        "reg-b",
        &["--trust", s(&d.join("ca-a/cert.pem"))],
    );
    let register = run(
        d,
        &[
            "register",
            "--uri",
            carol,
            "--contact",
            "sip:carol@127.0.0.1:5099",
            "--identity",
            "carol",
        ],
    )
    .stdout;
    let register = write(d, "register.sip", &register);
    let (code, _, err) = send(
        &register,
        &format!("tcp:127.0.0.1:{}", reg_b.port("tcp")),
        &["--password-file", s(&d.join("pw"))],
    );
    assert_eq!(code, 0, "{err}\n{}", reg_b.log_text());
    // a's registrar finds b's in its hosts table (DNS off); loop.example
    // names a's registrar itself.
    let table = write(
        d,
        "reg-a-hosts",
        format!("tcp:127.0.0.1:{} b.example.com\n", reg_b.port("tcp")).as_bytes(),
    );
    let reg_a = registrar(
        d,
        "reg-a",
        "a.example.com",
        "ca-a",
        "reg-a",
        &["--hosts", s(&table), "--no-dns"],
    );
    let to_a = format!("tcp:127.0.0.1:{}", reg_a.port("tcp"));

    let q = query(d, "forwarded.sip", carol, &["--sign", "bob"]);
    let (code, answers, err) = send(&q, &to_a, &[]);
    assert!(
        !answers.is_empty(),
        "{err}\n{}\n{}",
        reg_a.log_text(),
        reg_b.log_text()
    );
    let ok = String::from_utf8_lossy(&answers[0]).into_owned();
    assert_eq!(
        code,
        0,
        "{ok}{err}\n{}\n{}",
        reg_a.log_text(),
        reg_b.log_text()
    );
    // b's answer: its location and expiry (bob's signature verified at b),
    // one Via (a's taken off), signed by b's registrar.
    assert!(
        header(&ok, "Contact")
            .iter()
            .any(|c| c.starts_with("<sip:carol@127.0.0.1:5099>;expires=")),
        "{ok}"
    );
    assert_eq!(header(&ok, "Via").len(), 1, "{ok}");
    assert!(reg_a.logged("forwarded: the registrar of b.example.com answered"));
    assert!(reg_b.logged("200 certificate"));
    let answer = write(d, "forwarded-200.sip", &answers[0]);
    std::fs::create_dir(d.join("anchors")).unwrap();
    for ca in ["ca-a", "ca-b"] {
        std::fs::copy(
            d.join(format!("{ca}/cert.pem")),
            d.join(format!("anchors/{ca}.pem")),
        )
        .unwrap();
    }
    // The registrar of b signed it: b's CA is needed to accept it.
    let out = sipseal()
        .args(["certquery", "--accept", s(&answer)])
        .args(["--trust", s(&d.join("ca-a/cert.pem"))])
        .args(["--out", s(&d.join("fetched"))])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    sipseal()
        .args(["certquery", "--accept", s(&answer)])
        .args(["--trust", s(&d.join("anchors"))])
        .args(["--out", s(&d.join("fetched"))])
        .succeeds();
    let (verified, said) = openssl_verify(
        &d.join("ca-b/cert.pem"),
        &d.join("fetched/carol@b.example.com.pem"),
    );
    assert!(verified, "{said}");

    // A domain neither the hosts table nor (off) DNS can locate: 404.
    let q = query(
        d,
        "nowhere.sip",
        "sip:dave@nowhere.example",
        &["--sign", "bob"],
    );
    let (code, answers, _) = send(&q, &to_a, &[]);
    assert_eq!(code, 5);
    assert_eq!(status(&answers[0]), "SIP/2.0 404 Not Found");
    assert!(
        reg_a.logged("no registrar found for nowhere.example"),
        "{}",
        reg_a.log_text()
    );
    // Max-Forwards 0: 483, nothing forwarded.
    let q = query(d, "hops.sip", carol, &[]);
    let zero =
        std::fs::read_to_string(&q)
            .unwrap()
            .replacen("Max-Forwards: 70", "Max-Forwards: 0", 1);
    assert!(zero.contains("Max-Forwards: 0"), "{zero}");
    let q = write(d, "hops.sip", zero.as_bytes());
    let (_, answers, _) = send(&q, &to_a, &[]);
    assert_eq!(status(&answers[0]), "SIP/2.0 483 Too Many Hops");
}

#[test]
fn a_query_back_in_its_own_realm_is_a_loop_and_a_silent_registrar_a_504() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    realm(d, "a.example.com", "ca-a", "reg-a");
    passwd(d, "users.yaml", "a.example.com", ALICE);
    // A next hop that takes the query and never answers.
    let (silent, _rx) = common::live::tcp_sink();
    let table = write(
        d,
        "hosts",
        format!("127.0.0.1:{silent} silent.example\n").as_bytes(),
    );
    let live = registrar(
        d,
        "reg-a",
        "a.example.com",
        "ca-a",
        "reg-a",
        &["--hosts", s(&table), "--no-dns", "--forward-timeout", "1"],
    );
    let to_live = format!("tcp:127.0.0.1:{}", live.port("tcp"));
    let q = query(d, "silent.sip", "sip:x@silent.example", &[]);
    let (code, answers, err) = send(&q, &to_live, &[]);
    assert_eq!(code, 5, "{err}");
    let timed_out = String::from_utf8_lossy(&answers[0]).into_owned();
    assert!(timed_out.starts_with("SIP/2.0 504"), "{timed_out}");
    assert!(
        header(&timed_out, "Warning")
            .iter()
            .any(|w| w.contains("did not answer")),
        "{timed_out}"
    );
    // Another registrar of the same realm (one request, from a file)
    // forwards a query for loop.example to the live one, whose realm's
    // Via is already on it: 482, relayed back.
    let back = write(
        d,
        "hosts-back",
        format!("tcp:127.0.0.1:{} loop.example\n", live.port("tcp")).as_bytes(),
    );
    let q = query(d, "loop.sip", "sip:x@loop.example", &[]);
    let out = sipseal()
        .current_dir(d)
        .args([
            "registrar",
            s(&q),
            "--realm",
            "a.example.com",
            "--ca",
            "ca-a",
        ])
        .args([
            "--identity",
            "reg-a",
            "--users",
            "users.yaml",
            "--state",
            "st",
        ])
        .args(["--hosts", s(&back), "--no-dns"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_eq!(
        status(&out.stdout),
        "SIP/2.0 482 Loop Detected",
        "{}",
        live.log_text()
    );
    assert!(text(&out).contains("forwarded"), "{}", text(&out));
}

/// The signed query, the answer that locates the AOR, and the 495 an
/// unsigned one gets under `--require-signed-queries`, in deterministic
/// mode (reviewed golden files; `UPDATE_GOLDEN=1` regenerates them).
#[test]
fn signed_query_messages_golden() {
    const T0: &str = "2026-03-01T12:00:00Z";
    const AOR: &str = "sip:alice@example.com";
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = |seed: &str, args: &[&str]| -> Vec<u8> {
        let out = sipseal()
            .current_dir(d)
            .args(["--seed", seed, "--now", T0])
            .args(args)
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0) | Some(5)),
            "{args:?}: {}",
            text(&out)
        );
        out.stdout
    };
    run(
        "01",
        &[
            "keys",
            "ca",
            "--name",
            "CN=Example CA",
            "--out",
            "ca",
            "--days",
            "3650",
        ],
    );
    for (seed, uri, out) in [
        ("02", "sip:registrar.example.com", "reg"),
        ("03", "sip:bob@example.com", "bob"),
    ] {
        run(
            seed,
            &["keys", "generate", "--uri", uri, "--ca", "ca", "--out", out],
        );
    }
    run(
        "04",
        &[
            "keys", "generate", "--type", "p256", "--uri", AOR, "--csr", "--out", "alice",
        ],
    );
    std::fs::write(d.join("pw"), "alice-pw\n").unwrap();
    run(
        "05",
        &[
            "registrar",
            "passwd",
            "--users",
            "users.yaml",
            "--realm",
            "example.com",
            "--user",
            AOR,
            "--password-file",
            "pw",
        ],
    );
    let registrar = |seed: &str, input: &str| {
        run(
            seed,
            &[
                "registrar",
                "--realm",
                "example.com",
                "--ca",
                "ca",
                "--identity",
                "reg",
                "--users",
                "users.yaml",
                "--state",
                "state",
                "--require-signed-queries",
                "--no-forward",
                input,
            ],
        )
    };
    let save = |name: &str, bytes: &[u8]| std::fs::write(d.join(name), bytes).unwrap();
    let contact = [
        "--contact",
        "sip:alice@192.0.2.10:5060",
        "--identity",
        "alice",
    ];
    save(
        "r1.sip",
        &run("06", &[&["register", "--uri", AOR][..], &contact].concat()),
    );
    save("401.sip", &registrar("07", "r1.sip"));
    let retry = [
        &["register", "--uri", AOR][..],
        &contact,
        &["--challenge", "401.sip", "--password-file", "pw"],
    ]
    .concat();
    save("r2.sip", &run("08", &retry));
    assert!(registrar("09", "r2.sip").starts_with(b"SIP/2.0 200 OK"));

    let signed = run("0a", &["certquery", "--uri", AOR, "--sign", "bob"]);
    save("q.sip", &signed);
    let located = registrar("0b", "q.sip");
    let unsigned = run(
        "0c",
        &["certquery", "--uri", AOR, "--from", "sip:bob@example.com"],
    );
    save("q-unsigned.sip", &unsigned);
    let refused = registrar("0d", "q-unsigned.sip");
    common::golden("certq-signed-query.sip", &signed);
    common::golden("certq-signed-query-200.sip", &located);
    common::golden("certq-unsigned-495.sip", &refused);
    let located = String::from_utf8_lossy(&located).into_owned();
    assert!(located.starts_with("SIP/2.0 200 OK"), "{located}");
    assert_eq!(
        header(&located, "Contact"),
        ["<sip:alice@192.0.2.10:5060>;expires=3600"]
    );
    assert_eq!(header(&located, "Expires"), ["3600"]);
    assert!(refused.starts_with(b"SIP/2.0 495 Signature Required"));
}

/// Hostile review of issue 28: a certificate the registrar withdrew (its
/// holder removed every binding) no longer makes its holder the AOR's
/// owner over mutual TLS: a PUBLISH with it is asked for Digest, as
/// anyone's, instead of being granted a fresh certificate. The TLS layer
/// checks only the chain and the dates; the registrar knows what it
/// withdrew (what its CRL lists).
#[test]
fn a_withdrawn_certificate_no_longer_makes_its_holder_the_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    realm(d, "a.example.com", "ca", "reg");
    run(
        d,
        &[
            "keys", "generate", "--uri", ALICE, "--ca", "ca", "--out", "alice",
        ],
    );
    passwd(d, "users.yaml", "a.example.com", ALICE);
    let reg = registrar(d, "reg-a", "a.example.com", "ca", "reg", &[]);
    let table = hosts(d, &[("registrar.a.example.com", reg.port("tls"))]);
    let ca = d.join("ca/cert.pem");
    let tcp = format!("tcp:127.0.0.1:{}", reg.port("tcp"));
    let over_tls = |req: &Path, who: &str| {
        send(
            req,
            "sip:registrar.a.example.com;transport=tls",
            &[
                "--hosts",
                s(&table),
                "--identity",
                s(&d.join(who)),
                "--trust",
                s(&ca),
            ],
        )
    };
    // An RSA key (it signs queries) of alice's new device, certified over alice's channel: the
    // registrar stores what it issued.
    std::fs::create_dir(d.join("device")).unwrap();
    let o = openssl()
        .current_dir(d)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "device/key.pem",
            "-out",
            "device-self.pem",
            "-days",
            "30",
            "-subj",
            "/CN=alice@a.example.com",
            "-addext",
            "subjectAltName=URI:sip:alice@a.example.com",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let publish = |name: &str| {
        let p = run(
            d,
            &[
                "register",
                "--publish",
                "--uri",
                ALICE,
                "--cert",
                "device-self.pem",
                "--expires",
                "600",
            ],
        )
        .stdout;
        write(d, name, &p)
    };
    let p = publish("p1.sip");
    let (code, answers, err) = over_tls(&p, "alice");
    assert_eq!(code, 0, "{err}\n{}", reg.log_text());
    let ok = write(d, "p1-200.sip", &answers[0]);
    run(
        d,
        &[
            "register",
            "--accept",
            s(&ok),
            "--identity",
            "device",
            "--trust",
            s(&ca),
        ],
    );
    // The certificate issued makes its holder the owner, as any of the CA's.
    let p = publish("p2.sip");
    let (code, answers, err) = over_tls(&p, "device");
    assert_eq!(code, 0, "{err}\n{}", reg.log_text());
    assert!(status(&answers[0]).starts_with("SIP/2.0 200"), "{err}");
    // alice removes every binding: her certificates are withdrawn.
    let remove = run(d, &["register", "--uri", ALICE, "--remove-all"]).stdout;
    let remove = write(d, "remove.sip", &remove);
    let (code, answers, err) = send(&remove, &tcp, &["--password-file", s(&d.join("pw"))]);
    assert_eq!(code, 0, "{err}\n{}", reg.log_text());
    assert!(
        status(answers.last().unwrap()).starts_with("SIP/2.0 200"),
        "{err}"
    );
    // The withdrawn certificate's holder is anyone now: Digest is asked for.
    let p = publish("p3.sip");
    let (code, answers, err) = over_tls(&p, "device");
    assert_eq!(code, 5, "{err}\n{}", reg.log_text());
    assert_eq!(status(&answers[0]), "SIP/2.0 401 Unauthorized", "{err}");
    // Nor is it registered again as it is by the owner (alice's other
    // certificate, never withdrawn, still makes her the owner): the
    // queries would hand out a certificate the CRL lists.
    let again = run(
        d,
        &[
            "register",
            "--publish",
            "--uri",
            ALICE,
            "--cert",
            "device/cert.pem",
            "--expires",
            "600",
        ],
    )
    .stdout;
    let again = write(d, "again.sip", &again);
    let (code, answers, err) = over_tls(&again, "alice");
    assert_eq!(code, 5, "{err}\n{}", reg.log_text());
    assert_eq!(status(&answers[0]), "SIP/2.0 403 Forbidden", "{err}");
    // Nor does a query it signs say who asks: the 403 of a signature
    // that does not verify (before, a trusted requester's 404).
    let q = query(d, "withdrawn-q.sip", ALICE, &["--sign", "device"]);
    let (code, answers, err) = send(&q, &tcp, &[]);
    assert_eq!(code, 5, "{err}\n{}", reg.log_text());
    assert_eq!(status(&answers[0]), "SIP/2.0 403 Forbidden", "{err}");
}
