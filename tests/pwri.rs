//! Password recipients (PasswordRecipientInfo, RFC 3211) against the real
//! `openssl cms -pwri_password`, both ways, and the golden envelopes of the
//! recipient kinds sealed in deterministic mode.

mod common;

use std::path::Path;

use common::{Succeeds, golden, seal_invite, sipseal, text};

const ENTITY: &[u8] = b"Content-Type: application/sdp\r\n\r\nv=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/SAVP 0\r\n";

/// The bare password file and the YAML one (with its holder's URI).
const BARE: &str = "tests/data/bob-password.txt";
const YAML: &str = "tests/data/recorder-password.yaml";
const BARE_SECRET: &str = "correct horse battery staple";
const YAML_SECRET: &str = "rec0rder-demo";

fn openssl_decrypt(der: &Path, password: &str) -> std::process::Output {
    common::openssl()
        .args(["cms", "-decrypt", "-binary", "-inform", "DER", "-in"])
        .arg(der)
        .args(["-pwri_password", password])
        .output()
        .unwrap()
}

#[test]
fn openssl_opens_what_sipseal_seals_for_passwords() {
    let tmp = tempfile::tempdir().unwrap();
    for cipher in ["aes256-gcm", "aes128-cbc"] {
        let der = tmp.path().join(format!("{cipher}.der"));
        let out = sipseal()
            .args([
                "seal",
                "samples/invite.sip",
                "--body-only",
                "--cipher",
                cipher,
            ])
            .args([
                "--peer",
                &format!("password:{BARE}"),
                "--disclose",
                &format!("password:{YAML}"),
            ])
            .arg("-o")
            .arg(&der)
            .succeeds();
        assert!(out.stdout.is_empty());
        let inspected = text(&sipseal().arg("inspect").arg(&der).succeeds());
        // RFC 5652 §6.1: EnvelopedData with a pwri is version 3.
        if cipher.ends_with("cbc") {
            assert!(
                inspected.contains("cms: envelopedData v3, aes128-cbc"),
                "{inspected}"
            );
        }
        assert_eq!(
            inspected
                .matches("pwri v0 PBKDF2 (hmacWithSHA256, 100000 iterations, 16-byte salt) + PWRI-KEK aes256-cbc")
                .count(),
            2,
            "{inspected}"
        );
        // Each password opens it in OpenSSL, to the MIME entity.
        for secret in [BARE_SECRET, YAML_SECRET] {
            let out = openssl_decrypt(&der, secret);
            assert!(
                out.status.success(),
                "{cipher}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.stdout
                    .starts_with(b"Content-Type: application/sdp\r\n\r\nv=0\r\n"),
                "{cipher}"
            );
        }
        assert!(!openssl_decrypt(&der, "wrong").status.success());
    }
    // Only the YAML form names a relay in Proxy-Inspect-Body.
    let sealed = seal_invite(
        "0a",
        &[
            "--peer",
            &format!("password:{BARE}"),
            "--disclose",
            &format!("password:{YAML}"),
        ],
    );
    let sealed = String::from_utf8_lossy(&sealed);
    assert_eq!(sealed.matches("Proxy-Inspect-Body:").count(), 1, "{sealed}");
    assert!(
        sealed.contains("Proxy-Inspect-Body: <sip:recorder.a.example.com>;"),
        "{sealed}"
    );
    let out = sipseal()
        .args([
            "seal",
            "samples/invite.sip",
            "--peer",
            "keys/bob/cert.pem",
            "--disclose",
        ])
        .arg(format!("password:{BARE}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("password from tests/data/bob-password.txt"),
        "{}",
        text(&out)
    );
}

#[test]
fn sipseal_opens_what_openssl_seals_for_passwords() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("entity.txt");
    std::fs::write(&plain, ENTITY).unwrap();
    // OpenSSL 3.0 seals a password recipient only with CBC content
    // (PBKDF2 with HMAC-SHA1, 2,048 iterations).
    for cipher in ["-aes-256-cbc", "-aes-128-cbc"] {
        let der = tmp.path().join("o.der");
        let res = common::openssl()
            .args([
                "cms", "-encrypt", "-binary", "-outform", "DER", cipher, "-in",
            ])
            .arg(&plain)
            .arg("-out")
            .arg(&der)
            .args(["-pwri_password", BARE_SECRET])
            .output()
            .unwrap();
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        let inspected = text(&sipseal().arg("inspect").arg(&der).succeeds());
        assert!(
            inspected.contains("pwri v0 PBKDF2 (hmacWithSHA1, 2048 iterations"),
            "{inspected}"
        );
        let out = sipseal()
            .arg("open")
            .arg(&der)
            .args(["--password-file", BARE])
            .succeeds();
        assert_eq!(out.stdout, ENTITY, "{cipher}");
        // The wrong password: `decryption failed`, exit 1, as a wrong key.
        let out = sipseal()
            .arg("open")
            .arg(&der)
            .args(["--password-file", YAML])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out).contains("decryption failed"), "{}", text(&out));
        assert!(out.stdout.is_empty());
        // Not a password recipient at all: exit 3.
        let out = sipseal()
            .args([
                "open",
                "tests/golden/sealed-ec.der",
                "--password-file",
                BARE,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
    }
}

/// Golden envelopes (deterministic mode, reviewed): the sample INVITE's
/// body for bob's EC identity and proxy-a's EC identity (one
/// KeyAgreeRecipientInfo), and for two passwords.
#[test]
fn ec_and_password_envelopes_golden() {
    let ec = seal_invite(
        "0e",
        &[
            "--body-only",
            "--peer",
            "keys/bob-ec/cert.pem",
            "--disclose",
            "keys/proxy-a-ec/cert.pem",
        ],
    );
    golden("sealed-ec.der", &ec);
    let pw = seal_invite(
        "0f",
        &[
            "--body-only",
            "--peer",
            &format!("password:{BARE}"),
            "--disclose",
            &format!("password:{YAML}"),
        ],
    );
    golden("sealed-password.der", &pw);
    // They open, each for its recipients.
    let tmp = tempfile::tempdir().unwrap();
    let sample = common::file("samples/invite.sip");
    let body = &sample[sample.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    for (der, keys) in [
        (&ec, vec!["--identity", "keys/bob-ec"]),
        (&ec, vec!["--identity", "keys/proxy-a-ec"]),
        (&pw, vec!["--password-file", BARE]),
        (&pw, vec!["--password-file", YAML]),
    ] {
        let file = tmp.path().join("in.der");
        std::fs::write(&file, der).unwrap();
        let out = sipseal()
            .arg("open")
            .arg(&file)
            .arg("--body-only")
            .args(&keys)
            .succeeds();
        assert_eq!(out.stdout, body, "{keys:?}");
    }
}
