//! The demo PKI against the real `openssl`: certificates chain to
//! keys/trust.pem, keys parse, and the profile is what the issue names.

mod common;

use common::Succeeds;

use common::repo;

const PARTIES: &[(&str, &str, &str)] = &[
    ("alice", "sip:alice@a.example.com", "a.example.com"),
    ("bob", "sip:bob@b.example.com", "b.example.com"),
    ("proxy-a", "sip:proxy-a.a.example.com", "a.example.com"),
    ("proxy-b", "sip:proxy-b.b.example.com", "b.example.com"),
    ("carol", "sip:carol@a.example.com", "a.example.com"),
];

fn openssl(args: &[&str], dir: &std::path::Path) -> String {
    let out = common::openssl().args(args).current_dir(dir).succeeds();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_pki(dir: &std::path::Path) {
    for (party, uri, domain) in PARTIES {
        let cert = format!("{party}/cert.pem");
        let verified = openssl(
            &[
                "verify",
                "-CAfile",
                "trust.pem",
                "-purpose",
                "smimeencrypt",
                &cert,
            ],
            dir,
        );
        assert_eq!(verified.trim(), format!("{cert}: OK"));
        openssl(
            &[
                "verify",
                "-CAfile",
                "trust.pem",
                "-purpose",
                "smimesign",
                &cert,
            ],
            dir,
        );
        let text = openssl(&["x509", "-in", &cert, "-noout", "-text"], dir);
        assert!(text.contains(&format!("URI:{uri}")), "{party}: SAN URI");
        assert!(
            text.contains("X509v3 Subject Key Identifier"),
            "{party}: SKI"
        );
        assert!(text.contains("Public-Key: (2048 bit)"), "{party}: RSA-2048");
        assert!(
            text.contains("Not Before: Jan  1 00:00:00 2025 GMT"),
            "{party}"
        );
        assert!(
            text.contains("Not After : Jan  1 00:00:00 2045 GMT"),
            "{party}"
        );
        let issuer = openssl(&["x509", "-in", &cert, "-noout", "-issuer"], dir);
        assert!(
            issuer
                .trim_end()
                .ends_with(&format!("CN = sipseal demo CA {domain}")),
            "{party}: {issuer}"
        );
        // Chains to its own domain's CA alone, not just to either.
        openssl(
            &["verify", "-CAfile", &format!("ca/{domain}/cert.pem"), &cert],
            dir,
        );
        let key = format!("{party}/key.pem");
        let key_text = std::fs::read_to_string(dir.join(&key)).unwrap();
        assert!(
            key_text.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{party}: PKCS#8"
        );
        openssl(&["pkey", "-in", &key, "-noout"], dir);
        // The key belongs to the certificate.
        let from_key = openssl(&["pkey", "-in", &key, "-pubout"], dir);
        let from_cert = openssl(&["x509", "-in", &cert, "-noout", "-pubkey"], dir);
        assert_eq!(from_key, from_cert, "{party}: key matches certificate");
    }
    // The EC P-256 identities: the same parties, keyAgreement. (OpenSSL's
    // `smimeencrypt` purpose asks for keyEncipherment, which an EC key
    // does not do; `openssl cms -encrypt` does not ask, tests/kari.rs.)
    for (party, uri, domain) in PARTIES {
        let cert = format!("{party}-ec/cert.pem");
        let verified = openssl(
            &[
                "verify",
                "-CAfile",
                &format!("ca/{domain}/cert.pem"),
                "-purpose",
                "smimesign",
                &cert,
            ],
            dir,
        );
        assert_eq!(verified.trim(), format!("{cert}: OK"));
        let text = openssl(&["x509", "-in", &cert, "-noout", "-text"], dir);
        assert!(text.contains(&format!("URI:{uri}")), "{party}-ec: SAN URI");
        assert!(
            text.contains("Public-Key: (256 bit)") && text.contains("prime256v1"),
            "{party}-ec"
        );
        assert!(
            text.contains("Digital Signature, Key Agreement"),
            "{party}-ec: key usage"
        );
        assert!(
            text.contains("Not After : Jan  1 00:00:00 2045 GMT"),
            "{party}-ec"
        );
        let key = format!("{party}-ec/key.pem");
        let from_key = openssl(&["pkey", "-in", &key, "-pubout"], dir);
        let from_cert = openssl(&["x509", "-in", &cert, "-noout", "-pubkey"], dir);
        assert_eq!(from_key, from_cert, "{party}-ec: key matches certificate");
    }
    for ca in ["a.example.com", "b.example.com"] {
        let cert = format!("ca/{ca}/cert.pem");
        openssl(&["verify", "-CAfile", "trust.pem", &cert], dir);
        let text = openssl(&["x509", "-in", &cert, "-noout", "-text"], dir);
        assert!(text.contains("CA:TRUE"), "{ca}");
        openssl(&["pkey", "-in", &format!("ca/{ca}/key.pem"), "-noout"], dir);
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("NEVER use these keys"));
}

#[test]
fn committed_demo_pki_is_accepted_by_openssl() {
    check_pki(&repo().join("keys"));
}

#[test]
fn regenerated_demo_pki_is_accepted_by_openssl() {
    let dir = tempfile::tempdir().unwrap();
    common::sipseal()
        .args(["keys", "demo", "--out", dir.path().to_str().unwrap()])
        .assert()
        .success();
    check_pki(dir.path());
    // Fresh keys, not a copy of the committed ones.
    assert_ne!(
        std::fs::read(dir.path().join("alice/key.pem")).unwrap(),
        std::fs::read(repo().join("keys/alice/key.pem")).unwrap()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("alice/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "private keys are not readable by group or others"
        );
    }
}

/// Item 16: `inspect` shows what a SignedData from another implementation
/// holds: each signer's identifier, digest and signature algorithms,
/// signed attributes, and the certificates it carries.
#[test]
fn inspect_shows_an_openssl_signed_data() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, b"Content-Type: text/plain\r\n\r\nhello\r\n").unwrap();
    for (name, extra) in [("issuer-serial", &[][..]), ("ski", &["-keyid"][..])] {
        let der = tmp.path().join(format!("{name}.der"));
        common::openssl()
            .args([
                "cms",
                "-sign",
                "-binary",
                "-nodetach",
                "-outform",
                "DER",
                "-md",
                "sha384",
            ])
            .args([
                "-signer",
                "keys/alice/cert.pem",
                "-inkey",
                "keys/alice/key.pem",
            ])
            .args(extra)
            .arg("-in")
            .arg(&input)
            .arg("-out")
            .arg(&der)
            .succeeds();
        let out = common::sipseal().arg("inspect").arg(&der).succeeds().stdout;
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("signedData: opaque, content id-data"),
            "{text}"
        );
        let sid = if name == "ski" {
            "signer #0: ski:"
        } else {
            "signer #0: issuer=CN=sipseal demo CA a.example.com"
        };
        assert!(text.contains(sid), "{text}");
        assert!(text.contains("(sip:alice@a.example.com)"), "{text}");
        assert!(text.contains("digest id-sha384"), "{text}");
        assert!(text.contains("pkcs-9-at-messageDigest"), "{text}");
        assert!(
            text.contains("smimeCapabilities") || text.contains("1.2.840.113549.1.9.15"),
            "{text}"
        );
        assert!(
            text.contains("certificates: sip:alice@a.example.com"),
            "{text}"
        );
    }
}
