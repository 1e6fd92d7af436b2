//! Post-quantum recipients: ML-KEM KEMRecipientInfo (RFC 9629, RFC 9936).
//! RFC 9936's published example opens to its stated plaintext; ML-KEM
//! recipients seal and open next to RSA and EC ones at every parameter
//! set; generated ML-KEM identities are CA-issued, in the RFC 9935 seed
//! form, and accepted by `openssl x509` with the CA's signature checked
//! by `openssl dgst`; a damaged KEMRecipientInfo fails like any other key.

mod common;

use std::path::Path;

use common::{Succeeds, golden, s, seal_invite, sipseal, text};
use der::Encode;

const RFC9936: &str = "tests/data/rfc9936";

fn body_of(message: &[u8]) -> &[u8] {
    &message[message.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..]
}

/// The first offset of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("present")
}

#[test]
fn rfc9936_example_opens_to_its_stated_plaintext() {
    let out = sipseal()
        .args(["open", "--identity", RFC9936])
        .arg(format!("{RFC9936}/ML-KEM-512.cms"))
        .succeeds();
    assert_eq!(out.stdout, b"Hello, world!");
    let inspected = text(
        &sipseal()
            .args(["inspect"])
            .arg(format!("{RFC9936}/ML-KEM-512.cms"))
            .succeeds(),
    );
    assert!(
        inspected.contains(
            "kemri v0 rid ski:599788c37aed400ee405d1b2a3366ab17d824a51, ML-KEM-512 (ciphertext 768 bytes), HKDF-SHA256, id-aes256-wrap (kekLength 32)"
        ),
        "{inspected}"
    );
}

#[test]
fn a_damaged_kem_recipient_fails_like_any_other_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cms = common::file(&format!("{RFC9936}/ML-KEM-512.cms"));
    // The KEM ciphertext (ML-KEM rejects implicitly: another shared
    // secret, so the key unwrap fails) and the wrapped key itself.
    let kemct = find(&cms, &[0x04, 0x82, 0x03, 0x00]) + 4 + 100;
    let wrapped = find(&cms, &[0x04, 0x28]) + 2 + 5;
    let mut failures = Vec::new();
    for (name, at) in [("kemct", kemct), ("wrapped", wrapped)] {
        let mut bad = cms.clone();
        bad[at] ^= 0x01;
        let file = common::write(tmp.path(), name, &bad);
        let out = sipseal()
            .args(["open", "--identity", RFC9936])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        assert!(out.stdout.is_empty(), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr).replace(s(&file), "FILE");
        assert!(stderr.contains("decryption failed"), "{name}: {stderr}");
        failures.push(stderr);
    }
    assert_eq!(failures[0], failures[1]);
    // A wrong key of the right kind never gets that far: the rid names
    // another certificate, so the key is not a recipient (exit 3).
    let out = sipseal()
        .args(["open", "--identity", "keys/bob-mlkem"])
        .arg(format!("{RFC9936}/ML-KEM-512.cms"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

/// A CA and ML-KEM identities of every parameter set under `d`.
fn ml_kem_identities(d: &Path) {
    sipseal()
        .current_dir(d)
        .args(["keys", "ca", "--name", "CN=Test SIP CA", "--out", "ca"])
        .succeeds();
    for (kind, uri, out) in [
        ("ml-kem-512", "sip:relay512.example.com", "k512"),
        ("ml-kem-768", "sip:bob@example.com", "k768"),
        ("ml-kem-1024", "sip:relay1024.example.com", "k1024"),
    ] {
        sipseal()
            .current_dir(d)
            .args(["keys", "generate", "--type", kind, "--uri", uri])
            .args(["--ca", "ca", "--out", out])
            .succeeds();
    }
}

#[test]
fn ml_kem_recipients_seal_and_open_next_to_rsa_and_ec() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ml_kem_identities(d);
    let repo = common::repo();
    let sample = common::file("samples/invite.sip");
    for cipher in ["aes256-gcm", "aes128-cbc"] {
        let sealed = d.join(format!("{cipher}.sip"));
        sipseal()
            .current_dir(d)
            .args(["seal", s(&repo.join("samples/invite.sip"))])
            .args(["--cipher", cipher, "--peer", "k768/cert.pem"])
            .args([
                "--disclose",
                "k512/cert.pem",
                "--disclose",
                "k1024/cert.pem",
            ])
            .args(["--disclose", s(&repo.join("keys/proxy-a/cert.pem"))])
            .args(["--disclose", s(&repo.join("keys/proxy-b-ec/cert.pem"))])
            .args(["--disclose", s(&repo.join("keys/proxy-b-mlkem/cert.pem"))])
            .arg("-o")
            .arg(&sealed)
            .succeeds();
        let inspected = text(&sipseal().arg("inspect").arg(&sealed).succeeds());
        let kemri: Vec<&str> = inspected
            .lines()
            .filter(|l| l.contains(": kemri v0 rid ski:"))
            .collect();
        assert_eq!(kemri.len(), 4, "{inspected}");
        for expected in [
            "ML-KEM-512 (ciphertext 768 bytes), HKDF-SHA256, id-aes128-wrap (kekLength 16)",
            "ML-KEM-768 (ciphertext 1088 bytes), HKDF-SHA256, id-aes256-wrap (kekLength 32)",
            "ML-KEM-1024 (ciphertext 1568 bytes), HKDF-SHA256, id-aes256-wrap (kekLength 32)",
        ] {
            assert!(kemri.iter().any(|l| l.contains(expected)), "{inspected}");
        }
        assert_eq!(inspected.matches(": ktri ").count(), 1, "{inspected}");
        assert_eq!(inspected.matches(": kari ").count(), 1, "{inspected}");
        if cipher.ends_with("cbc") {
            // RFC 5652 §6.1: EnvelopedData with an ori is version 3.
            assert!(inspected.contains("envelopedData v3"), "{inspected}");
        }
        // Every recipient opens it to the sample's body.
        for id in [
            d.join("k512"),
            d.join("k768"),
            d.join("k1024"),
            repo.join("keys/proxy-a"),
            repo.join("keys/proxy-b-ec"),
            repo.join("keys/proxy-b-mlkem"),
        ] {
            let out = sipseal()
                .args(["open", "--body-only", "--identity", s(&id)])
                .arg(&sealed)
                .succeeds();
            assert_eq!(out.stdout, body_of(&sample), "{cipher}: {}", id.display());
        }
        // Another ML-KEM identity is not a recipient.
        let out = sipseal()
            .args(["open", "--identity", "keys/alice-mlkem"])
            .arg(&sealed)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    }
}

#[test]
fn a_relay_with_an_ml_kem_identity_reseals_for_the_next_hop() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = common::write(
        tmp.path(),
        "in.sip",
        &seal_invite(
            "41",
            &[
                "--peer",
                "keys/bob-ec/cert.pem",
                "--disclose",
                "keys/proxy-a-mlkem/cert.pem",
                "--access",
                "modify",
            ],
        ),
    );
    // proxy-a opens with its ML-KEM key and seals again for bob's ML-KEM
    // identity alone.
    let out = sipseal()
        .args(["reencrypt", "--identity", "keys/proxy-a-mlkem"])
        .args(["--peer", "keys/bob-mlkem/cert.pem"])
        .arg(&sealed)
        .succeeds();
    let next = common::write(tmp.path(), "next.sip", &out.stdout);
    let inspected = text(&sipseal().arg("inspect").arg(&next).succeeds());
    assert_eq!(inspected.matches(": kemri v0").count(), 1, "{inspected}");
    assert!(!inspected.contains(": kari"), "{inspected}");
    let sample = common::file("samples/invite.sip");
    let opened = sipseal()
        .args(["open", "--body-only", "--identity", "keys/bob-mlkem"])
        .arg(&next)
        .succeeds();
    assert_eq!(opened.stdout, body_of(&sample));
}

/// The deterministic envelope for the demo's ML-KEM-768 identities (bob,
/// and proxy-b disclosed): reviewed golden bytes, and both open it.
#[test]
fn ml_kem_envelope_golden() {
    let der = seal_invite(
        "10",
        &[
            "--body-only",
            "--peer",
            "keys/bob-mlkem/cert.pem",
            "--disclose",
            "keys/proxy-b-mlkem/cert.pem",
        ],
    );
    golden("sealed-mlkem.der", &der);
    let tmp = tempfile::tempdir().unwrap();
    let file = common::write(tmp.path(), "in.der", &der);
    let sample = common::file("samples/invite.sip");
    for id in ["keys/bob-mlkem", "keys/proxy-b-mlkem"] {
        let out = sipseal()
            .args(["open", "--body-only", "--identity", id])
            .arg(&file)
            .succeeds();
        assert_eq!(out.stdout, body_of(&sample), "{id}");
    }
}

#[test]
fn generated_ml_kem_identities_are_ca_issued_and_accepted_by_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ml_kem_identities(d);
    let openssl = |args: &[&str]| {
        let mut cmd = common::openssl();
        cmd.current_dir(d).args(args);
        cmd.succeeds()
    };
    for (dir, level, oid_last) in [("k512", 512, 1u8), ("k768", 768, 2), ("k1024", 1024, 3)] {
        let key_path = d.join(dir).join("key.pem");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{dir}");
        }
        // PKCS#8 in the seed form: privateKey holds [0] and 64 bytes.
        let pem = std::fs::read_to_string(&key_path).unwrap();
        let (_, der) = der::pem::decode_vec(pem.as_bytes()).unwrap();
        assert_eq!(der.len(), 86, "{dir}");
        assert_eq!(
            &der[..22],
            &[
                0x30, 0x54, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
                0x03, 0x04, 0x04, oid_last, 0x04, 0x42, 0x80, 0x40
            ],
            "{dir}"
        );
        // `openssl x509 -text` reads the certificate (OpenSSL 3.0 names
        // the ML-KEM key by its OID: it learned ML-KEM in 3.5).
        let shown = text(&openssl(&[
            "x509",
            "-in",
            &format!("{dir}/cert.pem"),
            "-noout",
            "-text",
        ]));
        assert!(
            shown.contains(&format!("2.16.840.1.101.3.4.4.{oid_last}")),
            "{shown}"
        );
        assert!(shown.contains("Key Encipherment"), "{shown}");
        assert!(!shown.contains("Digital Signature"), "{level}: {shown}");
        assert!(!shown.contains("TLS Web"), "{level}: {shown}");
        assert!(shown.contains("Subject Key Identifier"), "{shown}");
        // The CA's signature, checked by OpenSSL over the TBSCertificate
        // (its `verify` needs to decode the subject's key, which 3.0 cannot).
        // cert.pem: the certificate, then the CA's.
        let chain = x509_cert::Certificate::load_pem_chain(
            &std::fs::read(d.join(dir).join("cert.pem")).unwrap(),
        )
        .unwrap();
        assert_eq!(chain.len(), 2, "{dir}");
        let cert = &chain[0];
        std::fs::write(d.join("tbs.der"), cert.tbs_certificate().to_der().unwrap()).unwrap();
        std::fs::write(d.join("sig.bin"), cert.signature().raw_bytes()).unwrap();
        let ca_pub = openssl(&["x509", "-in", "ca/cert.pem", "-noout", "-pubkey"]).stdout;
        std::fs::write(d.join("ca.pub"), ca_pub).unwrap();
        let dgst = || {
            common::openssl()
                .current_dir(d)
                .args(["dgst", "-sha256", "-verify", "ca.pub"])
                .args(["-signature", "sig.bin", "tbs.der"])
                .output()
                .unwrap()
        };
        let verified = dgst();
        assert!(verified.status.success(), "{}", text(&verified));
        assert_eq!(text(&verified).trim(), "Verified OK");
        // A damaged TBSCertificate does not verify.
        let mut tbs = std::fs::read(d.join("tbs.der")).unwrap();
        let last = tbs.len() - 1;
        tbs[last] ^= 1;
        std::fs::write(d.join("tbs.der"), tbs).unwrap();
        let out = dgst();
        assert!(!out.status.success(), "{level}");
    }
    // A KEM cannot sign: no self-signed certificate, no request, no CA.
    let generate = [
        "keys",
        "generate",
        "--type",
        "ml-kem-768",
        "--uri",
        "sip:x@example.com",
        "--out",
        "x",
    ];
    for args in [
        generate.to_vec(),
        [&generate[..], &["--csr"]].concat(),
        vec![
            "keys",
            "ca",
            "--type",
            "ml-kem-768",
            "--name",
            "CN=x",
            "--out",
            "x",
        ],
    ] {
        let out = sipseal().current_dir(d).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("cannot sign"), "{}", text(&out));
        assert!(!d.join("x").exists(), "{args:?} wrote something");
    }
}

#[test]
fn openssl_peers_open_envelopes_that_also_carry_ml_kem_recipients() {
    // OpenSSL 3.0 has no ML-KEM, but it reads a KEMRecipientInfo as an
    // opaque `ori` and opens with its own RSA or EC key, in
    // AuthEnvelopedData and EnvelopedData alike.
    let tmp = tempfile::tempdir().unwrap();
    let sample = common::file("samples/invite.sip");
    for (cipher, peer) in [("aes256-gcm", "keys/bob"), ("aes128-cbc", "keys/bob-ec")] {
        let der = tmp.path().join(format!("{cipher}.der"));
        sipseal()
            .args([
                "seal",
                "samples/invite.sip",
                "--body-only",
                "--cipher",
                cipher,
            ])
            .args(["--peer", &format!("{peer}/cert.pem")])
            .args(["--disclose", "keys/proxy-a-mlkem/cert.pem"])
            .arg("-o")
            .arg(&der)
            .succeeds();
        let out = common::openssl()
            .args([
                "cms",
                "-decrypt",
                "-binary",
                "-inform",
                "DER",
                "-in",
                s(&der),
            ])
            .args(["-recip", &format!("{peer}/cert.pem")])
            .args(["-inkey", &format!("{peer}/key.pem")])
            .succeeds();
        // What is sealed is the MIME entity: its header, then the SDP.
        assert!(
            out.stdout
                .starts_with(b"Content-Type: application/sdp\r\n\r\n"),
            "{cipher}"
        );
        assert_eq!(body_of(&out.stdout), body_of(&sample), "{cipher}");
    }
}
