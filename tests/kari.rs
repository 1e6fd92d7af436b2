//! EC P-256 recipients (KeyAgreeRecipientInfo, RFC 5753) against the real
//! `openssl cms`, both ways: every KDF scheme OpenSSL writes opens here,
//! and what sipseal seals (one KeyAgreeRecipientInfo for every P-256
//! recipient, a compressed ephemeral point) opens in OpenSSL for each of
//! them; failures look like every other key's.

mod common;

use std::path::Path;

use common::{Succeeds, sipseal, text};

const ENTITY: &[u8] = b"Content-Type: application/sdp\r\n\r\nv=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/SAVP 0\r\n";

fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
    common::openssl().args(args).current_dir(dir).succeeds()
}

/// EC identities: two from `sipseal keys generate` (with SKI), one from
/// `openssl req` without a SubjectKeyIdentifier (named by issuer and serial).
fn identities(d: &Path) {
    for (name, uri) in [
        ("ec1", "sip:ec1@example.com"),
        ("ec2", "sip:relay.example.com"),
    ] {
        sipseal()
            .current_dir(d)
            .args([
                "keys", "generate", "--type", "p256", "--uri", uri, "--out", name,
            ])
            .succeeds();
    }
    std::fs::create_dir_all(d.join("ec3")).unwrap();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ec3/key.pem",
            "-out",
            "ec3/cert.pem",
            "-subj",
            "/CN=ec3",
            "-days",
            "2",
            "-addext",
            "subjectKeyIdentifier=none",
            "-addext",
            "authorityKeyIdentifier=none",
            "-addext",
            "subjectAltName=URI:sip:ec3@example.com",
        ],
    );
    let text3 = text(&openssl(
        d,
        &["x509", "-in", "ec3/cert.pem", "-noout", "-text"],
    ));
    assert!(!text3.contains("Subject Key Identifier"), "{text3}");
    std::fs::write(d.join("entity.txt"), ENTITY).unwrap();
    // A SIP message whose body, sealed, is ENTITY.
    std::fs::write(d.join("invite.sip"), common::invite_carrying(ENTITY)).unwrap();
}

#[test]
fn openssl_opens_what_sipseal_seals_for_p256_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    identities(d);
    let bob = common::repo().join("keys/bob");
    let bob_cert = bob.join("cert.pem");
    for cipher in ["aes256-gcm", "aes128-gcm"] {
        let sealed = sipseal()
            .current_dir(d)
            .env("SIPSEAL_STATE", d.join("state"))
            .args([
                "seal",
                "invite.sip",
                "--body-only",
                "--cipher",
                cipher,
                "--peer",
                "ec1/cert.pem",
            ])
            .args([
                "--disclose",
                "ec2/cert.pem",
                "--disclose",
                "ec3/cert.pem",
                "--disclose",
            ])
            .arg(&bob_cert)
            .args(["-o", "sealed.der"])
            .succeeds();
        assert!(sealed.stdout.is_empty());
        // One KeyAgreeRecipientInfo names all three EC recipients, two by
        // SKI and the one without SKI by issuer and serial number.
        let inspected = text(
            &sipseal()
                .current_dir(d)
                .args(["inspect", "sealed.der"])
                .succeeds(),
        );
        let kari: Vec<&str> = inspected
            .lines()
            .filter(|l| l.contains(": kari v3"))
            .collect();
        assert_eq!(kari.len(), 1, "{inspected}");
        assert_eq!(kari[0].matches("ski:").count(), 2, "{}", kari[0]);
        assert!(kari[0].contains("issuer=CN=ec3"), "{}", kari[0]);
        let wrap = if cipher == "aes256-gcm" {
            "aes256-wrap"
        } else {
            "aes128-wrap"
        };
        assert!(
            kari[0].contains(&format!("X9.63 KDF sha256) + {wrap}")),
            "{}",
            kari[0]
        );
        assert_eq!(inspected.matches(": ktri ").count(), 1);
        for (cert, key) in [
            ("ec1/cert.pem".to_string(), "ec1/key.pem".to_string()),
            ("ec2/cert.pem".into(), "ec2/key.pem".into()),
            ("ec3/cert.pem".into(), "ec3/key.pem".into()),
            (
                bob_cert.display().to_string(),
                bob.join("key.pem").display().to_string(),
            ),
        ] {
            let out = openssl(
                d,
                &[
                    "cms",
                    "-decrypt",
                    "-binary",
                    "-inform",
                    "DER",
                    "-in",
                    "sealed.der",
                    "-recip",
                    &cert,
                    "-inkey",
                    &key,
                ],
            );
            assert_eq!(out.stdout, ENTITY, "{cipher}: openssl as {cert}");
        }
    }
}

#[test]
fn sipseal_opens_what_openssl_seals_for_p256_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    identities(d);
    // (key options, KDF sipseal must name) - OpenSSL's default is SHA-1.
    let cases: &[(&[&str], &str)] = &[
        (&[], "standard DH, X9.63 KDF sha1"),
        (
            &["-keyopt", "ecdh_kdf_md:sha224"],
            "standard DH, X9.63 KDF sha224",
        ),
        (
            &["-keyopt", "ecdh_kdf_md:sha256"],
            "standard DH, X9.63 KDF sha256",
        ),
        (
            &["-keyopt", "ecdh_kdf_md:sha384"],
            "standard DH, X9.63 KDF sha384",
        ),
        (
            &["-keyopt", "ecdh_kdf_md:sha512"],
            "standard DH, X9.63 KDF sha512",
        ),
        (
            &["-keyopt", "ecdh_cofactor_mode:1"],
            "cofactor DH, X9.63 KDF sha1",
        ),
    ];
    for cipher in ["-aes-256-gcm", "-aes-128-cbc"] {
        for (i, (opts, kdf)) in cases.iter().enumerate() {
            // Two EC recipients and an RSA one; -keyid names them by SKI
            // (then the second EC one is ec2: ec3 has none).
            let second = if i % 2 == 1 { "ec2" } else { "ec3" };
            let mut args = vec![
                "cms",
                "-encrypt",
                "-binary",
                "-outform",
                "DER",
                cipher,
                "-in",
                "entity.txt",
                "-out",
                "o.der",
            ];
            if i % 2 == 1 {
                args.push("-keyid");
            }
            args.extend(["-recip", "ec1/cert.pem"]);
            args.extend(*opts);
            let second_cert = format!("{second}/cert.pem");
            args.extend(["-recip", &second_cert]);
            args.extend(*opts);
            let bob = common::repo().join("keys/bob/cert.pem");
            let bob = bob.to_str().unwrap();
            args.extend(["-recip", bob]);
            openssl(d, &args);
            let inspected = text(
                &sipseal()
                    .current_dir(d)
                    .args(["inspect", "o.der"])
                    .succeeds(),
            );
            assert!(inspected.contains(kdf), "{cipher} {opts:?}: {inspected}");
            for id in ["ec1", second] {
                let out = sipseal()
                    .current_dir(d)
                    .env("SIPSEAL_STATE", d.join("state"))
                    .args(["open", "o.der", "--identity", id])
                    .succeeds();
                assert_eq!(out.stdout, ENTITY, "{cipher} {opts:?} as {id}");
                let stderr = text(&out);
                assert!(
                    !stderr.contains("note: the private-key operation"),
                    "{stderr}"
                );
            }
            // The other one is not among the recipients: exit 3, nothing written.
            let outsider = if second == "ec2" { "ec3" } else { "ec2" };
            let out = sipseal()
                .current_dir(d)
                .args(["open", "o.der", "--identity", outsider])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(3), "{cipher} {opts:?}");
            assert!(out.stdout.is_empty());
        }
    }
}

/// A KeyAgreeRecipientInfo whose wrapped key or ephemeral point was
/// altered fails exactly as an RSA recipient's altered key does: the same
/// exit code and message, nothing written.
#[test]
fn an_altered_key_agreement_fails_like_any_other_recipient() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    identities(d);
    let bob = common::repo().join("keys/bob");
    let seal = |recip: &Path, out: &str| {
        sipseal()
            .current_dir(d)
            .env("SIPSEAL_STATE", d.join("state"))
            .args(["seal", "invite.sip", "--body-only", "--peer"])
            .arg(recip)
            .args(["-o", out])
            .succeeds();
    };
    seal(&d.join("ec1/cert.pem"), "ec.der");
    seal(&bob.join("cert.pem"), "rsa.der");
    let ec = std::fs::read(d.join("ec.der")).unwrap();
    let rsa = std::fs::read(d.join("rsa.der")).unwrap();
    // The wrapped key is the 40 bytes after `04 28` in the KARI; the
    // compressed point the 33 bytes after `03 22 00`.
    let wrapped = ec.windows(2).position(|w| w == [0x04, 0x28]).unwrap() + 2;
    let point = ec.windows(3).position(|w| w == [0x03, 0x22, 0x00]).unwrap() + 3;
    let ktri_key = rsa
        .windows(4)
        .position(|w| w == [0x04, 0x82, 0x01, 0x00])
        .unwrap()
        + 4;
    let mut cases = Vec::new();
    for (name, bytes, at, id) in [
        ("wrapped", &ec, wrapped + 5, d.join("ec1")),
        ("point-x", &ec, point + 9, d.join("ec1")),
        ("point-x-last-byte", &ec, point + 32, d.join("ec1")),
        ("rsa", &rsa, ktri_key + 100, bob.clone()),
    ] {
        let mut altered = bytes.clone();
        altered[at] ^= 0x01;
        let file = d.join(format!("{name}.der"));
        std::fs::write(&file, &altered).unwrap();
        let out = sipseal()
            .current_dir(d)
            .args(["open"])
            .arg(&file)
            .arg("--identity")
            .arg(&id)
            .args(["-o", "plain.txt"])
            .output()
            .unwrap();
        assert!(!d.join("plain.txt").exists(), "{name}");
        cases.push((
            name,
            out.status.code(),
            text(&out).replace(&file.display().to_string(), "F"),
        ));
    }
    for (name, code, message) in &cases[1..] {
        assert_eq!(
            (code, message),
            (&cases[0].1, &cases[0].2),
            "{name} differs from {}",
            cases[0].0
        );
    }
    assert_eq!(cases[0].1, Some(1), "{}", cases[0].2);
    assert!(cases[0].2.contains("decryption failed"), "{}", cases[0].2);
}
