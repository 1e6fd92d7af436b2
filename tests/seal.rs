//! `seal`, `open`, `build --seal` and `inspect` of sealed messages, through
//! the built binary: golden files in deterministic mode, round trips,
//! recipients and non-recipients, tampering, errors.

mod common;

use common::{BOB_AND_PROXY_A, Succeeds, file, golden, sipseal};
use predicates::prelude::*;

const SEED: &str = "5eed";
const PSK: &str = "psk:keys/psk/alice-proxy-a.yaml";

fn seal(args: &[&str]) -> Vec<u8> {
    let out = sipseal()
        .args(["--seed", SEED, "seal", "samples/invite.sip"])
        .args(args)
        .succeeds();
    out.stdout
}

/// The default sealed INVITE written to a temporary file (tests do not
/// read each other's golden files: `UPDATE_GOLDEN=1` rewrites them in parallel).
fn sealed_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("sealed.sip");
    std::fs::write(&path, default_sealed()).unwrap();
    path
}

fn default_sealed() -> Vec<u8> {
    seal(&[
        "--peer",
        "keys/bob/cert.pem",
        "--disclose",
        "keys/proxy-a/cert.pem",
        "--disclose",
        PSK,
    ])
}

#[test]
fn sealed_invite_golden_and_every_recipient_gets_the_original_back() {
    let sealed = default_sealed();
    golden("sealed-invite.sip", &sealed);
    let text = String::from_utf8_lossy(&sealed);
    // docs/SPEC.md §3.1 headers, once each, and the designation names the part.
    for h in [
        "Proxy-Inspect-Body: <sip:proxy-a.a.example.com>;cid=\"sdp-",
        "Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data; name=smime.p7m\r\n",
        "Content-Disposition: attachment; filename=smime.p7m; handling=required\r\n",
        "Content-ID: <sdp-",
        "Content-Transfer-Encoding: binary\r\n",
    ] {
        assert_eq!(text.matches(h).count(), 1, "{h}");
    }
    let body_at = sealed.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(text.contains(&format!("Content-Length: {}\r\n", sealed.len() - body_at)));
    let original = file("samples/invite.sip");
    for key in [
        &["--identity", "keys/bob"][..],
        &["--identity", "keys/proxy-a"],
        &["--psk", "keys/psk/alice-proxy-a.yaml"],
        &["--key", "keys/bob/key.pem", "--cert", "keys/bob/cert.pem"],
    ] {
        sipseal()
            .args(["open", "tests/golden/sealed-invite.sip"])
            .args(key)
            .assert()
            .success()
            .stdout(original.clone());
    }
    sipseal()
        .args([
            "open",
            "--body-only",
            "--identity",
            "keys/bob",
            "tests/golden/sealed-invite.sip",
        ])
        .assert()
        .success()
        .stdout(file("samples/offer.sdp"));
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = default_sealed();
    assert_eq!(a, default_sealed());
    let other = sipseal()
        .args([
            "--seed",
            "5eee",
            "seal",
            "samples/invite.sip",
            "--peer",
            "keys/bob/cert.pem",
        ])
        .output()
        .unwrap();
    assert!(other.status.success());
    assert_ne!(a, other.stdout);
}

#[test]
fn legacy_cbc_pkcs1v15_golden_opens_with_a_warning() {
    let sealed = seal(&[
        "--peer",
        "keys/bob/cert.pem",
        "--cipher",
        "aes128-cbc",
        "--rsa-padding",
        "pkcs1v15",
    ]);
    golden("sealed-invite-cbc.sip", &sealed);
    assert!(String::from_utf8_lossy(&sealed).contains("smime-type=enveloped-data;"));
    sipseal()
        .args([
            "open",
            "tests/golden/sealed-invite-cbc.sip",
            "--identity",
            "keys/bob",
        ])
        .assert()
        .success()
        .stdout(file("samples/invite.sip"))
        .stderr(predicate::str::contains("no integrity protection"));
}

#[test]
fn build_seal_in_one_step_equals_build_then_seal() {
    let one = sipseal()
        .args([
            "--seed",
            SEED,
            "build",
            "--spec",
            "samples/invite.yaml",
            "--seal",
        ])
        .args(BOB_AND_PROXY_A)
        .output()
        .unwrap();
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    golden("built-sealed-invite.sip", &one.stdout);
    sipseal()
        .args([
            "open",
            "--identity",
            "keys/proxy-a",
            "tests/golden/built-sealed-invite.sip",
        ])
        .assert()
        .success()
        .stdout(file("samples/invite.sip"));
    sipseal()
        .args([
            "build",
            "--spec",
            "samples/invite.yaml",
            "--peer",
            "keys/bob/cert.pem",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("without --seal"));
}

#[test]
fn a_non_recipient_gets_exit_3_and_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    sipseal()
        .arg("open")
        .arg(sealed_file(&tmp))
        .args(["--identity", "keys/proxy-b"])
        .assert()
        .code(3)
        .stdout("")
        .stderr(predicate::str::contains("not a recipient"));
    // The private key file is not even read: a garbage key still gives exit 3.
    let garbage = tmp.path().join("garbage-key.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    sipseal()
        .arg("open")
        .arg(sealed_file(&tmp))
        .arg("--key")
        .arg(&garbage)
        .args(["--cert", "keys/proxy-b/cert.pem"])
        .assert()
        .code(3)
        .stdout("");
    // The same garbage key where the certificate IS a recipient: a clear
    // configuration error, exit 2.
    sipseal()
        .arg("open")
        .arg(sealed_file(&tmp))
        .arg("--key")
        .arg(&garbage)
        .args(["--cert", "keys/bob/cert.pem"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("cannot use the private key"));
}

#[test]
fn tampering_fails_with_exit_1_and_no_plaintext() {
    let sealed = default_sealed();
    let body_at = sealed.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let tmp = tempfile::tempdir().unwrap();
    // The tag is the last 16 bytes; the encrypted content ends just before
    // the tag's OCTET STRING header; the middle of the body is a wrapped key.
    for (what, at) in [
        ("tag", sealed.len() - 1),
        ("encrypted content", sealed.len() - 20),
        ("a wrapped key", body_at + (sealed.len() - body_at) / 3),
    ] {
        let mut bad = sealed.clone();
        bad[at] ^= 0x01;
        let path = tmp.path().join("bad.sip");
        std::fs::write(&path, &bad).unwrap();
        let out_file = tmp.path().join("out.sip");
        for key in [
            &["--identity", "keys/bob"][..],
            &["--psk", "keys/psk/alice-proxy-a.yaml"],
        ] {
            let assert = sipseal()
                .arg("open")
                .arg(&path)
                .args(key)
                .arg("-o")
                .arg(&out_file)
                .assert()
                .stdout("");
            let out = assert.get_output();
            // A flipped wrapped key only concerns its own recipient.
            if out.status.code() == Some(0) {
                assert_eq!(what, "a wrapped key", "{key:?}");
                std::fs::remove_file(&out_file).unwrap();
                continue;
            }
            assert_eq!(out.status.code(), Some(1), "{what} {key:?}");
            assert!(String::from_utf8_lossy(&out.stderr).contains("decryption failed"));
            assert!(!out_file.exists(), "nothing written on failure");
        }
    }
}

#[test]
fn inspect_names_recipients_checks_designations_and_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = sealed_file(&tmp);
    let out = sipseal()
        .arg("inspect")
        .arg(&sealed)
        .args(["--certs", "keys"])
        .args([
            "--identity",
            "keys/proxy-b",
            "--psk",
            "keys/psk/alice-proxy-a.yaml",
        ])
        .succeeds();
    golden("inspect-sealed.txt", &out.stdout);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cms: authEnvelopedData v0, aes256-gcm, nonce 12 bytes, tag 16 bytes"));
    assert!(text.contains("= sip:bob@b.example.com"));
    assert!(text.contains("kekid alice-proxy-a, id-aes256-wrap = PSK alice-proxy-a"));
    assert!(text.contains("key PSK alice-proxy-a: RecipientInfo #"));
    assert!(text.contains("key sip:proxy-b.b.example.com: not a recipient"));
    // The one warning is the size: two RSA recipients and a PSK make the
    // sample INVITE too big for UDP (RFC 3261 §18.1.1).
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].starts_with("warning: the message is 2210 bytes, over the 1300"),
        "{text}"
    );
    assert!(
        text.contains("size: 2210 bytes (over UDP's 1300: send it over TCP"),
        "{text}"
    );

    // Without any key or certificate, the structure is still there.
    let json = sipseal()
        .args(["inspect", "--format", "json"])
        .arg(&sealed)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let cms = &v["body"]["cms"];
    assert_eq!(cms["content_type"], "authEnvelopedData");
    assert_eq!(cms["recipients"].as_array().unwrap().len(), 3);
    assert_eq!(v["disclosure"][0]["uri"], "sip:proxy-a.a.example.com");
    assert_eq!(v["disclosure"][0]["access"], "read");

    // A designation redirected to a relay without a RecipientInfo is flagged.
    let mut bytes = default_sealed();
    let needle = b"<sip:proxy-a.a.example.com>;cid";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes.splice(at..at + 12, b"<sip:proxy-b".iter().copied());
    let path = tmp.path().join("redirected.sip");
    std::fs::write(&path, &bytes).unwrap();
    sipseal()
        .arg("inspect")
        .arg(&path)
        .args(["--certs", "keys", "--psk", "keys/psk/alice-proxy-a.yaml"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(
                "warning: designated relay sip:proxy-b.a.example.com has no RecipientInfo",
            )
            .and(
                predicate::str::contains("recipient #")
                    .and(predicate::str::contains("is neither designated")),
            ),
        );
}

#[test]
fn inspect_accepts_a_bare_cms_object() {
    let der = sipseal()
        .args([
            "--seed",
            SEED,
            "seal",
            "samples/invite.sip",
            "--peer",
            "keys/bob/cert.pem",
            "--body-only",
        ])
        .output()
        .unwrap();
    assert!(der.status.success());
    assert_eq!(der.stdout[0], 0x30, "DER ContentInfo");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("body.der");
    std::fs::write(&path, &der.stdout).unwrap();
    sipseal()
        .arg("inspect")
        .arg(&path)
        .assert()
        .success()
        .stdout(
            predicate::str::starts_with("cms: ")
                .and(predicate::str::contains("recipient #0: ktri v2 rid ski:")),
        );
}

#[test]
fn errors_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = sealed_file(&tmp);
    // No body to seal.
    sipseal()
        .args([
            "seal",
            "tests/golden/bye.sip",
            "--peer",
            "keys/bob/cert.pem",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no body to seal").and(predicate::str::contains("hint:")));
    // Sealing twice.
    sipseal()
        .arg("seal")
        .arg(&sealed)
        .args(["--peer", "keys/bob/cert.pem"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already sealed"));
    // No recipients / no keys.
    sipseal()
        .args(["seal", "samples/invite.sip"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no recipients"));
    sipseal()
        .arg("open")
        .arg(&sealed)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no key to open with"));
    // A private key as a certificate; the same recipient twice.
    sipseal()
        .args(["seal", "samples/invite.sip", "--peer", "keys/bob/key.pem"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unusable certificate"));
    sipseal()
        .args(["seal", "samples/invite.sip", "--peer", "keys/bob/cert.pem"])
        .args(["--disclose", "keys/bob/cert.pem"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("given twice"));
    // Opening something that is not sealed.
    sipseal()
        .args(["open", "samples/invite.sip", "--identity", "keys/bob"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("not sealed"));
    // A key that does not belong to the certificate.
    sipseal()
        .arg("open")
        .arg(&sealed)
        .args(["--key", "keys/carol/key.pem", "--cert", "keys/bob/cert.pem"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not belong"));
}

/// S5: `open -o` writes plaintext (SRTP keys included) 0600, respects a
/// stricter umask, never widens an existing file's mode, and refuses a
/// link to a directory. The finding: 0644 under umask 077, and an
/// existing 0600 file reset to 0644.
#[cfg(unix)]
#[test]
fn decrypted_output_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let sealed = common::write(
        tmp.path(),
        "sealed.sip",
        &common::seal_invite("5e", &["--peer", "keys/bob/cert.pem"]),
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let open_to = |out: &std::path::Path, umask: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {umask} && exec \"$0\" open \"$1\" --identity keys/bob -o \"$2\""
            ))
            .arg(env!("CARGO_BIN_EXE_sipseal"))
            .arg(&sealed)
            .arg(out)
            .current_dir(common::repo())
            .env("SIPSEAL_STATE", tmp.path().join("state"))
            .output()
            .unwrap()
    };
    let plain = tmp.path().join("plain.sip");
    common::ok(&open_to(&plain, "022"));
    assert_eq!(mode(&plain), 0o600);
    let strict = tmp.path().join("strict.sip");
    common::ok(&open_to(&strict, "077"));
    assert_eq!(mode(&strict), 0o600);
    // An existing 0400 file is replaced but not widened.
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o400)).unwrap();
    common::ok(&open_to(&plain, "022"));
    assert_eq!(mode(&plain), 0o400);
    // A link to a directory is an error, and nothing is written there.
    let dir = tmp.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    let out = open_to(&link, "022");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

/// S7: `seal` checks its recipients' certificates as it checks
/// --add-recipient-from: valid now, a key usage that allows sealing to it,
/// and with --trust a chain to an anchor; without --trust, a warning.
#[test]
fn recipient_certificates_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let seal = |extra: &[&str]| {
        common::sipseal()
            .args(["seal", "samples/invite.sip"])
            .args(extra)
            .output()
            .unwrap()
    };
    let err = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let out = seal(&["--peer", "keys/bob/cert.pem"]);
    assert!(out.status.success());
    assert!(
        err(&out).contains("not checked against trust anchors"),
        "{}",
        err(&out)
    );
    let out = seal(&["--peer", "keys/bob/cert.pem", "--trust", "keys/trust.pem"]);
    assert!(out.status.success());
    assert!(!err(&out).contains("trust anchors"), "{}", err(&out));
    // bob's certificate is not issued by a.example.com's CA.
    let out = seal(&[
        "--peer",
        "keys/bob/cert.pem",
        "--trust",
        "keys/ca/a.example.com/cert.pem",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("not among the trust anchors"),
        "{}",
        err(&out)
    );
    assert!(out.stdout.is_empty());
    // Expired (the demo certificates end in 2045).
    let out = seal(&[
        "--peer",
        "keys/bob/cert.pem",
        "--now",
        "2050-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("is not valid at"), "{}", err(&out));
    // A signing-only certificate.
    let (key, cert) = (tmp.path().join("k.pem"), tmp.path().join("c.pem"));
    common::openssl()
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args([
            "-subj",
            "/CN=sign-only",
            "-addext",
            "keyUsage=critical,digitalSignature",
        ])
        .args(["-addext", "subjectAltName=URI:sip:signer@a.example.com"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .succeeds();
    let out = seal(&["--peer", cert.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("key usage does not allow sealing to it"),
        "{}",
        err(&out)
    );
}

/// RFC 3261 §18.1.1: `seal` warns when the sealed message is over 1,300
/// bytes and its top Via is UDP, naming TCP and EC recipients; the
/// audio-only sample sealed with P-256 for the peer and one relay fits.
#[test]
fn a_sealed_message_too_big_for_udp_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let invite = |via: &str| {
        let out = sipseal()
            .args([
                "--seed",
                "5eed",
                "build",
                "invite",
                "--from",
                "Alice <sip:alice@a.example.com>",
            ])
            .args([
                "--to",
                "Bob <sip:bob@b.example.com>",
                "--contact",
                "sip:alice@192.0.2.10:5060",
            ])
            .args([
                "--via",
                "192.0.2.10:5060",
                "--transport",
                via,
                "--sdp",
                "samples/offer-audio.sdp",
            ])
            .succeeds();
        let path = tmp.path().join(format!("invite-{via}.sip"));
        std::fs::write(&path, out.stdout).unwrap();
        path
    };
    let state = tmp.path().join("state");
    let seal = |input: &std::path::Path, recipients: &[&str]| {
        let out = sipseal()
            .env("SIPSEAL_STATE", &state)
            .args(["--seed", "5eed", "seal"])
            .arg(input)
            .args(recipients)
            .args(["--trust", "keys/trust.pem"])
            .succeeds();
        // Every warning but deterministic mode's own.
        let err = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("deterministic mode"))
            .collect::<Vec<_>>()
            .join("\n");
        (out.stdout.len(), err)
    };
    let udp = invite("udp");
    let ec = [
        "--peer",
        "keys/bob-ec/cert.pem",
        "--disclose",
        "keys/proxy-a-ec/cert.pem",
    ];
    let (size, err) = seal(&udp, &ec);
    assert!(size <= 1300, "{size} bytes");
    assert!(!err.contains("warning"), "{err}");
    let rsa = [
        "--peer",
        "keys/bob/cert.pem",
        "--disclose",
        "keys/proxy-a/cert.pem",
    ];
    let (size, err) = seal(&udp, &rsa);
    assert!(size > 1300, "{size} bytes");
    assert!(
        err.contains(&format!("warning: the message is {size} bytes, over the 1300 that RFC 3261 §18.1.1 allows on UDP")),
        "{err}"
    );
    assert!(
        err.contains("send it over TCP, or use EC P-256 recipients"),
        "{err}"
    );
    // Over TCP the same size is fine.
    let (size_tcp, err) = seal(&invite("tcp"), &rsa);
    assert!(size_tcp > 1300);
    assert!(!err.contains("warning"), "{err}");
}
