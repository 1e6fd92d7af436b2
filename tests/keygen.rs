//! `sipseal keys generate|ca|sign-csr|psk` against the real `openssl`:
//! everything generated verifies and parses there, requests made by
//! `openssl req` are issued, altered ones are refused, and the generated
//! identities seal, open, sign and verify in sipseal.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Succeeds, sipseal, text};

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = common::openssl().args(args).current_dir(dir).succeeds();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keys(dir: &Path, args: &[&str]) -> std::process::Output {
    sipseal()
        .current_dir(dir)
        .args(["--seed", "0a0b", "--now", NOW, "keys"])
        .args(args)
        .succeeds()
}

/// The clock of every generation: certificates start here.
const NOW: &str = "2026-01-01T00:00:00Z";
/// An hour later, when the checks run (`openssl verify -attime`, `--now`).
const LATER: &str = "2026-01-01T01:00:00Z";
const LATER_EPOCH: &str = "1767229200";

/// `openssl verify -attime LATER -CAfile CA CERT`, which must say OK.
fn verify(dir: &Path, ca: &str, cert: &str, extra: &[&str]) {
    let mut args = vec!["verify", "-attime", LATER_EPOCH, "-CAfile", ca];
    args.extend(extra);
    args.push(cert);
    assert_eq!(openssl(&args, dir).trim(), format!("{cert}: OK"));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The extensions of a generated end-entity certificate, as openssl reads them.
fn check_end_entity(dir: &Path, cert: &str, uri: &str, ec: bool, bits: &str) {
    let text = openssl(&["x509", "-in", cert, "-noout", "-text"], dir);
    assert!(
        text.contains(&format!("URI:{uri}")),
        "{cert}: SAN URI\n{text}"
    );
    assert!(text.contains("CA:FALSE"), "{cert}");
    let usage = if ec {
        "Digital Signature, Key Agreement"
    } else {
        "Digital Signature, Key Encipherment"
    };
    assert!(text.contains(usage), "{cert}: key usage\n{text}");
    assert!(
        text.contains(
            "E-mail Protection, TLS Web Client Authentication, TLS Web Server Authentication"
        ),
        "{cert}: extended key usage"
    );
    assert!(
        text.contains(&format!("Public-Key: ({bits} bit)")),
        "{cert}: key size"
    );
    assert!(
        text.contains("X509v3 Subject Key Identifier"),
        "{cert}: SKI"
    );
    assert!(
        text.contains("Not Before: Jan  1 00:00:00 2026 GMT"),
        "{cert}: --now"
    );
}

#[test]
fn generated_material_is_accepted_by_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (ca, ca_type) in [("ca-rsa", "rsa2048"), ("ca-ec", "p256")] {
        keys(
            d,
            &[
                "ca",
                "--name",
                "CN=Test SIP CA,O=Test",
                "--type",
                ca_type,
                "--out",
                ca,
                "--path-len",
                "1",
            ],
        );
        assert_eq!(mode(&d.join(ca).join("key.pem")), 0o600);
        let text = openssl(
            &["x509", "-in", &format!("{ca}/cert.pem"), "-noout", "-text"],
            d,
        );
        assert!(text.contains("CA:TRUE, pathlen:1"), "{text}");
        assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
        openssl(
            &["pkey", "-in", &format!("{ca}/key.pem"), "-noout", "-check"],
            d,
        );
    }
    // (key type, bits openssl shows, EC)
    for (kind, bits, ec) in [
        ("rsa2048", "2048", false),
        ("rsa3072", "3072", false),
        ("p256", "256", true),
    ] {
        let uri = format!("sip:{kind}@example.com");
        // Self-signed.
        let own = format!("{kind}-self");
        keys(
            d,
            &[
                "generate", "--uri", &uri, "--type", kind, "--out", &own, "--days", "30",
            ],
        );
        let cert = format!("{own}/cert.pem");
        verify(d, &cert, &cert, &[]);
        check_end_entity(d, &cert, &uri, ec, bits);
        assert!(
            openssl(&["x509", "-in", &cert, "-noout", "-enddate"], d)
                .contains("Jan 31 00:00:00 2026")
        );
        assert_eq!(mode(&d.join(&own).join("key.pem")), 0o600);
        assert!(
            openssl(
                &["pkey", "-in", &format!("{own}/key.pem"), "-noout", "-text"],
                d
            )
            .contains("Private-Key")
        );
        // From each CA.
        for ca in ["ca-rsa", "ca-ec"] {
            let out = format!("{kind}-{ca}");
            keys(
                d,
                &[
                    "generate", "--uri", &uri, "--type", kind, "--ca", ca, "--out", &out,
                ],
            );
            let cert = format!("{out}/cert.pem");
            verify(
                d,
                &format!("{ca}/cert.pem"),
                &cert,
                &["-purpose", "smimesign"],
            );
            check_end_entity(d, &cert, &uri, ec, bits);
        }
        // A request, then issued from it.
        let req = format!("{kind}-csr");
        keys(
            d,
            &[
                "generate", "--uri", &uri, "--type", kind, "--csr", "--out", &req,
            ],
        );
        assert!(!d.join(&req).join("cert.pem").exists());
        let checked = common::openssl()
            .args(["req", "-verify", "-noout", "-in", &format!("{req}/csr.pem")])
            .current_dir(d)
            .succeeds();
        assert!(text(&checked).contains("verify OK"));
        keys(
            d,
            &[
                "sign-csr",
                "--ca",
                "ca-rsa",
                &format!("{req}/csr.pem"),
                "-o",
                &format!("{req}/cert.pem"),
            ],
        );
        let cert = format!("{req}/cert.pem");
        verify(d, "ca-rsa/cert.pem", &cert, &[]);
        check_end_entity(d, &cert, &uri, ec, bits);
    }
    // A relay's URI has no user part: its host becomes a dNSName too.
    keys(
        d,
        &[
            "generate",
            "--uri",
            "sip:relay.example.com",
            "--type",
            "p256",
            "--dns",
            "relay2.example.com",
            "--out",
            "relay",
        ],
    );
    let san = openssl(
        &[
            "x509",
            "-in",
            "relay/cert.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
        d,
    );
    assert!(
        san.contains("URI:sip:relay.example.com, DNS:relay.example.com, DNS:relay2.example.com"),
        "{san}"
    );
}

#[test]
fn sign_csr_takes_openssl_requests_and_refuses_altered_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    keys(d, &["ca", "--name", "CN=Test SIP CA", "--out", "ca"]);
    for (name, newkey) in [
        ("erin", &["-newkey", "rsa:2048"][..]),
        (
            "frank",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
    ] {
        let mut args = vec!["req", "-new", "-nodes", "-keyout", "k.pem", "-subj"];
        let subj = format!("/CN={name}");
        let san = format!("subjectAltName=URI:sip:{name}@example.com");
        args.extend([subj.as_str(), "-addext", san.as_str(), "-out"]);
        let csr = format!("{name}.csr");
        args.push(&csr);
        args.extend(newkey);
        openssl(&args, d);
        let out = keys(d, &["sign-csr", "--ca", "ca", &csr]);
        let crt = d.join(format!("{name}.crt"));
        std::fs::write(&crt, &out.stdout).unwrap();
        verify(d, "ca/cert.pem", &format!("{name}.crt"), &[]);
        check_end_entity(
            d,
            &format!("{name}.crt"),
            &format!("sip:{name}@example.com"),
            name == "frank",
            if name == "frank" { "256" } else { "2048" },
        );
        // The CA's certificate follows, for the chain.
        assert_eq!(text(&out).matches("BEGIN CERTIFICATE").count(), 2);
    }
    // One byte of the subject changed: the self-signature no longer verifies.
    let der = openssl(
        &[
            "req", "-in", "erin.csr", "-outform", "DER", "-out", "erin.der",
        ],
        d,
    );
    assert!(der.is_empty());
    let mut bytes = std::fs::read(d.join("erin.der")).unwrap();
    let at = bytes.windows(4).position(|w| w == b"erin").unwrap();
    bytes[at + 3] = b'x';
    std::fs::write(d.join("altered.der"), &bytes).unwrap();
    let out = sipseal()
        .current_dir(d)
        .args([
            "keys",
            "sign-csr",
            "--ca",
            "ca",
            "altered.der",
            "-o",
            "altered.crt",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("its signature does not verify with the key it carries"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.join("altered.crt").exists());
    // No URI asked for and none given: refused, naming --uri.
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "k.pem",
            "-subj",
            "/CN=nouri",
            "-out",
            "nouri.csr",
        ],
        d,
    );
    let out = sipseal()
        .current_dir(d)
        .args(["keys", "sign-csr", "--ca", "ca", "nouri.csr"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --uri"));
    keys(
        d,
        &[
            "sign-csr",
            "--ca",
            "ca",
            "nouri.csr",
            "--uri",
            "sip:nouri@example.com",
        ],
    );
}

#[test]
fn generated_identities_seal_open_sign_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sample = common::repo().join("samples/invite.sip");
    let sample = sample.to_str().unwrap();
    keys(
        d,
        &["ca", "--name", "CN=EC CA", "--type", "p256", "--out", "ca"],
    );
    // samples/invite.sip is from alice: her identity signs it.
    keys(
        d,
        &[
            "generate",
            "--uri",
            "sip:alice@a.example.com",
            "--ca",
            "ca",
            "--out",
            "alice",
        ],
    );
    keys(
        d,
        &["generate", "--uri", "sip:bob@b.example.com", "--out", "bob"],
    );
    keys(
        d,
        &[
            "psk",
            "--uri",
            "sip:relay.example.com",
            "--id",
            "relay-1",
            "-o",
            "relay.yaml",
        ],
    );
    assert_eq!(mode(&d.join("relay.yaml")), 0o600);
    let state = d.join("state");
    let sealed = sipseal()
        .current_dir(d)
        .env("SIPSEAL_STATE", &state)
        .args([
            "seal",
            sample,
            "--peer",
            "bob/cert.pem",
            "--disclose",
            "psk:relay.yaml",
        ])
        .succeeds();
    std::fs::write(d.join("sealed.sip"), &sealed.stdout).unwrap();
    let original = std::fs::read(sample).unwrap();
    for key in [&["--identity", "bob"][..], &["--psk", "relay.yaml"][..]] {
        let opened = sipseal()
            .current_dir(d)
            .env("SIPSEAL_STATE", &state)
            .args(["--now", LATER, "open", "sealed.sip"])
            .args(key)
            .succeeds();
        assert_eq!(opened.stdout, original, "{key:?}");
    }
    // Signed by a certificate an EC CA issued: the chain check verifies ECDSA.
    let signed = sipseal()
        .current_dir(d)
        .args(["--now", LATER, "sign", sample, "--identity", "alice"])
        .succeeds();
    std::fs::write(d.join("signed.sip"), &signed.stdout).unwrap();
    let verified = sipseal()
        .current_dir(d)
        .args([
            "--now",
            LATER,
            "verify",
            "signed.sip",
            "--trust",
            "ca/cert.pem",
        ])
        .succeeds();
    let report = text(&verified);
    assert!(
        report.contains("pass chain: sip:alice@a.example.com <- issued by CN=EC CA (trust anchor)"),
        "{report}"
    );
}

#[test]
fn generation_is_deterministic_and_refuses_what_it_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for out in ["a", "b"] {
        keys(
            d,
            &[
                "generate",
                "--uri",
                "sip:x@example.com",
                "--type",
                "p256",
                "--out",
                out,
            ],
        );
    }
    for f in ["key.pem", "cert.pem"] {
        assert_eq!(
            std::fs::read(d.join("a").join(f)).unwrap(),
            std::fs::read(d.join("b").join(f)).unwrap(),
            "{f}"
        );
    }
    let before = std::fs::read(d.join("a/key.pem")).unwrap();
    // (arguments, what the error names)
    let cases: &[(&[&str], &str)] = &[
        (
            &["generate", "--uri", "sip:x@example.com", "--out", "a"],
            "a/key.pem exists: give another --out, or --force",
        ),
        (
            &["generate", "--uri", "x@example.com", "--out", "c"],
            "is not a SIP URI",
        ),
        (
            &["ca", "--name", "no equals sign", "--out", "c"],
            "is not a distinguished name",
        ),
        (
            &[
                "psk",
                "--uri",
                "sip:r.example.com",
                "--bits",
                "100",
                "-o",
                "p.yaml",
            ],
            "AES key wrap takes 128, 192 or 256",
        ),
        (
            &[
                "generate",
                "--uri",
                "sip:x@example.com",
                "--ca",
                "a",
                "--out",
                "c",
            ],
            "is not a CA certificate",
        ),
    ];
    for (args, says) in cases {
        let out = sipseal()
            .current_dir(d)
            .arg("keys")
            .args(*args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    assert_eq!(std::fs::read(d.join("a/key.pem")).unwrap(), before);
    assert!(!d.join("c").exists() && !d.join("p.yaml").exists());
    keys(
        d,
        &[
            "generate",
            "--uri",
            "sip:x@example.com",
            "--out",
            "a",
            "--force",
        ],
    );
    assert_ne!(
        std::fs::read(d.join("a/key.pem")).unwrap(),
        before,
        "--force replaces the key"
    );
}
