//! The CA apart from the registrar (docs/SPEC.md §6, issue 28): `sipseal
//! ca` over mutual TLS issues what a local CA directory issues, for the
//! registrars and domains it allows; a registrar that cannot reach it
//! answers 503, one it refuses gets a 500.

mod common;

use std::path::{Path, PathBuf};

use common::live::{Daemon, hosts};
use common::{Succeeds, s, sipseal, text};

const AOR: &str = "sip:alice@example.com";
const T0: &str = "2026-03-01T12:00:00Z";

/// A CA, the registrar's and the CA server's TLS identities (valid now,
/// for rustls), alice's credentials and key, in a temporary directory.
fn realm() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_owned();
    let run = |args: &[&str]| {
        sipseal().current_dir(&d).args(args).succeeds();
    };
    run(&[
        "keys",
        "ca",
        "--name",
        "CN=Example CA",
        "--out",
        "ca",
        "--now",
        "2026-01-01T00:00:00Z",
    ]);
    for (uri, out) in [
        ("sip:registrar.example.com", "reg"),
        ("sip:ca.example.com", "ca-tls"),
    ] {
        run(&["keys", "generate", "--uri", uri, "--ca", "ca", "--out", out]);
    }
    std::fs::write(d.join("pw"), "alice-pw\n").unwrap();
    run(&[
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
    ]);
    run(&[
        "keys", "generate", "--type", "p256", "--uri", AOR, "--csr", "--out", "alice",
    ]);
    (tmp, d)
}

/// `sipseal ca` for `allow` (NAME=DOMAIN), at T0.
fn ca_server(d: &Path, name: &str, allow: &str) -> Daemon {
    Daemon::start(
        d,
        name,
        &[
            "ca",
            "--listen",
            "tls:127.0.0.1:0",
            "--ca",
            s(&d.join("ca")),
            "--identity",
            s(&d.join("ca-tls")),
            "--trust",
            s(&d.join("ca/cert.pem")),
            "--allow",
            allow,
            "--now",
            T0,
        ],
    )
}

/// REGISTER with alice's CSR (or, not `csr`, a refresh without a body)
/// → 401 → the authorized retry, through the registrar with `ca` (its
/// --ca and what goes with it) and the state `STATE-state`: the exit
/// code, the final response and stderr.
fn register(d: &Path, name: &str, state: &str, ca: &[&str], csr: bool) -> (i32, Vec<u8>, String) {
    let identity: &[&str] = if csr { &["--identity", "alice"] } else { &[] };
    let registrar = |input: &str| {
        let out = sipseal()
            .current_dir(d)
            .args(["registrar", "--realm", "example.com", "--identity", "reg"])
            .args(["--users", "users.yaml", "--now", T0, "--state"])
            .arg(format!("{state}-state"))
            .args(ca)
            .arg(input)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let first = sipseal()
        .current_dir(d)
        .args([
            "register",
            "--uri",
            AOR,
            "--contact",
            "sip:alice@192.0.2.10",
        ])
        .args(identity)
        .succeeds()
        .stdout;
    common::write(d, &format!("{name}-1.sip"), &first);
    let (code, challenge, err) = registrar(&format!("{name}-1.sip"));
    assert!(challenge.starts_with(b"SIP/2.0 401"), "{code} {err}");
    common::write(d, &format!("{name}-401.sip"), &challenge);
    let second = sipseal()
        .current_dir(d)
        .args([
            "register",
            "--uri",
            AOR,
            "--contact",
            "sip:alice@192.0.2.10",
        ])
        .args(identity)
        .args(["--password-file", "pw", "--challenge"])
        .arg(format!("{name}-401.sip"))
        .succeeds()
        .stdout;
    common::write(d, &format!("{name}-2.sip"), &second);
    registrar(&format!("{name}-2.sip"))
}

/// alice's certificate from a 200 (installed by `register --accept`), as
/// `openssl x509 -text` prints it, without the two fields that differ
/// from one issue to the next: the serial number and the signature value.
fn profile(d: &Path, name: &str, ok: &[u8]) -> String {
    common::write(d, &format!("{name}-200.sip"), ok);
    let out = format!("alice-{name}");
    copy_dir(&d.join("alice"), &d.join(&out));
    sipseal()
        .current_dir(d)
        .args(["register", "--accept"])
        .arg(format!("{name}-200.sip"))
        .args(["--identity", &out, "--trust", "ca/cert.pem"])
        .succeeds();
    let verify = common::openssl()
        .current_dir(d)
        .args(["verify", "-attime", "1772366500", "-CAfile", "ca/cert.pem"])
        .arg(format!("{out}/cert.pem"))
        .succeeds();
    assert!(text(&verify).contains(": OK"), "{}", text(&verify));
    let printed = text(
        &common::openssl()
            .current_dir(d)
            .args(["x509", "-noout", "-text", "-in"])
            .arg(format!("{out}/cert.pem"))
            .succeeds(),
    );
    let mut kept = Vec::new();
    let mut lines = printed.lines().peekable();
    while let Some(line) = lines.next() {
        let field = line.trim();
        if field.starts_with("Serial Number") {
            // The value is on this line or the next.
            if field.ends_with(':') {
                lines.next();
            }
            continue;
        }
        if field.starts_with("Signature Value") {
            while lines.peek().is_some_and(|l| l.starts_with("        ")) {
                lines.next();
            }
            continue;
        }
        kept.push(line.to_owned());
    }
    kept.join("\n")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_remote_ca_issues_what_the_local_ca_issues() {
    let (_tmp, d) = realm();
    let ca = ca_server(&d, "ca", "registrar.example.com=example.com");
    let hosts = hosts(&d, &[("ca.example.com", ca.port("tls"))]);
    let at = format!("tls:ca.example.com:{}", ca.port("tls"));
    let remote = [
        "--ca",
        &at,
        "--ca-cert",
        "ca/cert.pem",
        "--trust",
        "ca/cert.pem",
        "--hosts",
        s(&hosts),
    ];
    let (code, ok, err) = register(&d, "remote", "remote", &remote, true);
    assert_eq!(code, 0, "{err}\n{}", ca.log_text());
    assert!(ok.starts_with(b"SIP/2.0 200"), "{err}");
    assert!(
        ca.logged("200 issued for sip:alice@example.com"),
        "{}",
        ca.log_text()
    );
    let (code, local_ok, err) = register(&d, "local", "local", &["--ca", "ca"], true);
    assert_eq!(code, 0, "{err}");
    let from_remote = profile(&d, "remote", &ok);
    let from_local = profile(&d, "local", &local_ok);
    assert!(
        from_remote.contains("Not After : Mar  1 13:00:00 2026 GMT"),
        "{from_remote}"
    );
    assert!(from_remote.contains(&format!("URI:{AOR}")), "{from_remote}");
    assert_eq!(from_remote, from_local);
    // A refresh without a body: the key certified before goes to the CA
    // (no CSR this time) and comes back certified again.
    let (code, again, err) = register(&d, "refresh", "remote", &remote, false);
    assert_eq!(code, 0, "{err}\n{}", ca.log_text());
    assert!(err.contains("issued"), "{err}");
    let asked = std::fs::read_to_string(d.join("refresh-2.sip")).unwrap();
    assert!(asked.contains("Content-Length: 0"), "{asked}");
    let refreshed = profile(&d, "refresh", &again);
    assert!(refreshed.contains(&format!("URI:{AOR}")), "{refreshed}");
    assert_eq!(
        ca.log_text()
            .matches("200 issued for sip:alice@example.com")
            .count(),
        2,
        "{}",
        ca.log_text()
    );
}

#[test]
fn a_registrar_the_ca_does_not_allow_gets_500_and_an_unreachable_ca_503() {
    let (_tmp, d) = realm();
    // This CA lets the registrar ask for example.org only.
    let ca = ca_server(&d, "ca", "registrar.example.com=example.org");
    let hosts = hosts(&d, &[("ca.example.com", ca.port("tls"))]);
    let at = format!("tls:ca.example.com:{}", ca.port("tls"));
    let args = |at: &str| -> Vec<String> {
        [
            "--ca",
            at,
            "--ca-cert",
            "ca/cert.pem",
            "--trust",
            "ca/cert.pem",
            "--hosts",
            s(&hosts),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let refused = args(&at);
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let (code, resp, err) = register(&d, "refused", "refused", &refused, true);
    let resp = String::from_utf8_lossy(&resp);
    assert_eq!(code, 5, "{err}");
    assert!(resp.starts_with("SIP/2.0 500"), "{resp}");
    assert!(err.contains("answered 403"), "{err}");
    assert!(
        ca.logged("may not ask for certificates in \\\"example.com\\\""),
        "{}",
        ca.log_text()
    );
    // Nothing listens there: 503, to be retried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let gone = args(&format!("tls:ca.example.com:{port}"));
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    let (code, resp, err) = register(&d, "gone", "gone", &gone, true);
    let resp = String::from_utf8_lossy(&resp);
    assert_eq!(code, 5, "{err}");
    assert!(resp.starts_with("SIP/2.0 503"), "{resp}");
    assert!(resp.contains("Retry-After: 30"), "{resp}");
    assert!(err.contains("did not answer"), "{err}");
}

#[test]
fn the_ca_listens_on_mutual_tls_only_and_a_remote_ca_needs_its_certificate() {
    let (_tmp, d) = realm();
    let out = sipseal()
        .current_dir(&d)
        .args(["ca", "--listen", "tcp:127.0.0.1:0", "--ca", "ca"])
        .args(["--identity", "ca-tls", "--trust", "ca/cert.pem"])
        .args(["--allow", "registrar.example.com=example.com"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("mutual TLS only"), "{}", text(&out));
    let out = sipseal()
        .current_dir(&d)
        .args(["registrar", "--realm", "example.com", "--identity", "reg"])
        .args(["--users", "users.yaml", "--ca", "tls:127.0.0.1:5061"])
        .arg("-")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--ca-cert"), "{}", text(&out));
}
