//! Sealing interop with the real `openssl cms`, both directions:
//! (a) every combination sipseal makes is opened by `openssl cms -decrypt`
//! by each recipient to exactly the plaintext MIME entity; (b) envelopes
//! made here by `openssl cms -encrypt` are opened by `sipseal open` by each
//! recipient.

mod common;

use std::path::{Path, PathBuf};

use common::{BOB_AND_PROXY_A, Succeeds, sipseal};

const ENTITY: &[u8] = b"Content-Type: application/sdp\r\n\r\nv=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcyAoZ|2^20|1:4\r\n";

/// A recipient: a demo identity, or a PSK written into the test's directory.
#[derive(Clone)]
enum Who {
    Id(&'static str),
    Psk {
        file: PathBuf,
        id: String,
        key: String,
    },
}

impl Who {
    fn seal_args(&self, as_peer: bool) -> Vec<String> {
        match self {
            Who::Id(name) => {
                let cert = format!("keys/{name}/cert.pem");
                if as_peer {
                    vec!["--peer".into(), cert]
                } else {
                    vec!["--disclose".into(), cert]
                }
            }
            Who::Psk { file, .. } => vec!["--disclose".into(), format!("psk:{}", file.display())],
        }
    }

    fn openssl_decrypt_args(&self) -> Vec<String> {
        match self {
            Who::Id(name) => vec![
                "-recip".into(),
                format!("keys/{name}/cert.pem"),
                "-inkey".into(),
                format!("keys/{name}/key.pem"),
            ],
            Who::Psk { id, key, .. } => vec![
                "-secretkey".into(),
                key.clone(),
                "-secretkeyid".into(),
                hex(id.as_bytes()),
            ],
        }
    }

    fn openssl_encrypt_args(&self) -> Vec<String> {
        self.openssl_decrypt_args()
            .into_iter()
            .filter(|a| !a.ends_with("key.pem") && a != "-inkey")
            .collect()
    }

    fn sipseal_open_args(&self) -> Vec<String> {
        match self {
            Who::Id(name) => vec!["--identity".into(), format!("keys/{name}")],
            Who::Psk { file, .. } => vec!["--psk".into(), file.display().to_string()],
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn psk(dir: &Path, n: u8, len: usize) -> Who {
    let id = format!("test-psk-{n}");
    let key = hex(&(0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(n))
        .collect::<Vec<_>>());
    let file = dir.join(format!("{id}.yaml"));
    std::fs::write(
        &file,
        format!("id: {id}\nkey: {key}\nuri: sip:relay{n}.a.example.com\n"),
    )
    .unwrap();
    Who::Psk { file, id, key }
}

fn openssl(args: &[String]) -> std::process::Output {
    common::openssl().args(args).output().unwrap()
}

/// A SIP message carrying ENTITY's body, for `sipseal seal`.
fn message(dir: &Path) -> PathBuf {
    let m = common::invite_carrying(ENTITY);
    let path = dir.join("invite.sip");
    std::fs::write(&path, m).unwrap();
    path
}

#[test]
fn openssl_opens_every_combination_sipseal_makes() {
    let tmp = tempfile::tempdir().unwrap();
    let msg = message(tmp.path());
    let one = vec![Who::Id("bob")];
    let three = vec![Who::Id("bob"), Who::Id("proxy-a"), psk(tmp.path(), 1, 32)];
    let eight = vec![
        Who::Id("bob"),
        Who::Id("proxy-a"),
        Who::Id("proxy-b"),
        Who::Id("carol"),
        Who::Id("alice"),
        psk(tmp.path(), 2, 16),
        psk(tmp.path(), 3, 24),
        psk(tmp.path(), 4, 32),
    ];
    let mut checked = 0;
    for cipher in ["aes256-gcm", "aes128-gcm", "aes256-cbc", "aes128-cbc"] {
        for padding in ["oaep", "pkcs1v15"] {
            for group in [&one, &three, &eight] {
                let out = tmp.path().join("sealed.der");
                let mut cmd = sipseal();
                cmd.arg("seal")
                    .arg(&msg)
                    .args([
                        "--cipher",
                        cipher,
                        "--rsa-padding",
                        padding,
                        "--body-only",
                        "-o",
                    ])
                    .arg(&out);
                for (i, who) in group.iter().enumerate() {
                    cmd.args(who.seal_args(i == 0));
                }
                cmd.assert().success();
                for who in group.iter() {
                    let mut args: Vec<String> =
                        ["cms", "-decrypt", "-binary", "-inform", "DER", "-in"]
                            .map(String::from)
                            .to_vec();
                    args.push(out.display().to_string());
                    args.extend(who.openssl_decrypt_args());
                    let res = openssl(&args);
                    assert!(
                        res.status.success(),
                        "{cipher} {padding} {} recipients: openssl failed for {:?}: {}",
                        group.len(),
                        who.openssl_decrypt_args(),
                        String::from_utf8_lossy(&res.stderr)
                    );
                    assert_eq!(res.stdout, ENTITY, "{cipher} {padding} {}", group.len());
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 4 * 2 * (1 + 3 + 8));
}

#[test]
fn sipseal_opens_what_openssl_makes() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("entity.txt");
    std::fs::write(&plain, ENTITY).unwrap();
    let psk16 = psk(tmp.path(), 5, 16);
    let psk32 = psk(tmp.path(), 6, 32);
    let Who::Psk { file: outsider, .. } = psk(tmp.path(), 9, 32) else {
        unreachable!()
    };
    let rsa_oaep = ["-keyopt", "rsa_padding_mode:oaep"];
    let rsa_oaep256 = [
        "-keyopt",
        "rsa_padding_mode:oaep",
        "-keyopt",
        "rsa_oaep_md:sha256",
    ];
    // (name, cipher, recipients, extra key options after the first -recip)
    let cases: Vec<(&str, &str, Vec<Who>, &[&str])> = vec![
        ("ktri-v15-gcm256", "-aes-256-gcm", vec![Who::Id("bob")], &[]),
        (
            "ktri-oaep-sha1-gcm128",
            "-aes-128-gcm",
            vec![Who::Id("bob")],
            &rsa_oaep,
        ),
        (
            "ktri-oaep-sha256-gcm256",
            "-aes-256-gcm",
            vec![Who::Id("bob")],
            &rsa_oaep256,
        ),
        ("ktri-v15-cbc256", "-aes-256-cbc", vec![Who::Id("bob")], &[]),
        (
            "ktri-oaep-cbc128",
            "-aes-128-cbc",
            vec![Who::Id("proxy-a")],
            &rsa_oaep,
        ),
        (
            "ktri-v15-cbc192",
            "-aes-192-cbc",
            vec![Who::Id("carol")],
            &[],
        ),
        (
            "kekri-aes128-wrap",
            "-aes-256-gcm",
            vec![psk16.clone()],
            &[],
        ),
        (
            "kekri-aes256-wrap",
            "-aes-128-gcm",
            vec![psk32.clone()],
            &[],
        ),
        (
            "several-gcm",
            "-aes-256-gcm",
            vec![
                Who::Id("bob"),
                Who::Id("proxy-a"),
                Who::Id("proxy-b"),
                psk32.clone(),
            ],
            &rsa_oaep256,
        ),
        (
            "several-cbc",
            "-aes-256-cbc",
            vec![Who::Id("alice"), Who::Id("carol"), psk16.clone()],
            &[],
        ),
    ];
    for (name, cipher, who, keyopts) in cases {
        let der = tmp.path().join(format!("{name}.der"));
        let mut args: Vec<String> = [
            "cms", "-encrypt", "-binary", "-outform", "DER", cipher, "-in",
        ]
        .map(String::from)
        .to_vec();
        args.push(plain.display().to_string());
        args.push("-out".into());
        args.push(der.display().to_string());
        for w in &who {
            args.extend(w.openssl_encrypt_args());
            // -keyopt applies to the -recip just before it.
            if matches!(w, Who::Id(_)) {
                args.extend(keyopts.iter().map(|s| s.to_string()));
            }
        }
        let res = openssl(&args);
        assert!(
            res.status.success(),
            "{name}: openssl cms -encrypt failed: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        for w in &who {
            let out = sipseal()
                .arg("open")
                .arg(&der)
                .args(w.sipseal_open_args())
                .succeeds();
            assert_eq!(out.stdout, ENTITY, "{name}");
            // --body-only gives the SDP itself.
            sipseal()
                .arg("open")
                .arg(&der)
                .arg("--body-only")
                .args(w.sipseal_open_args())
                .assert()
                .success()
                .stdout(&ENTITY[ENTITY.windows(4).position(|x| x == b"\r\n\r\n").unwrap() + 4..]);
        }
        // Someone not among the recipients: exit 3, nothing on stdout.
        if !who.iter().any(|w| matches!(w, Who::Id("proxy-b"))) {
            sipseal()
                .arg("open")
                .arg(&der)
                .args(["--identity", "keys/proxy-b", "--psk"])
                .arg(&outsider)
                .assert()
                .code(3)
                .stdout("");
        }
    }
}

#[test]
fn sipseal_opens_openssl_smime_and_pem_output_and_raw_content() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("entity.txt");
    std::fs::write(&plain, ENTITY).unwrap();
    // Default S/MIME output: a MIME entity with a base64 body.
    let smime = tmp.path().join("smime.txt");
    let pem = tmp.path().join("cms.pem");
    for (out, form) in [(&smime, "SMIME"), (&pem, "PEM")] {
        let res = openssl(&[
            "cms".into(),
            "-encrypt".into(),
            "-binary".into(),
            "-aes-256-gcm".into(),
            "-outform".into(),
            form.into(),
            "-in".into(),
            plain.display().to_string(),
            "-out".into(),
            out.display().to_string(),
            "keys/bob/cert.pem".into(),
        ]);
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        sipseal()
            .arg("open")
            .arg(out)
            .args(["--identity", "keys/bob"])
            .assert()
            .success()
            .stdout(ENTITY);
    }
    // A raw file (not a MIME entity) comes back as it is.
    let raw = tmp.path().join("raw.bin");
    std::fs::write(&raw, b"\x00\x01 raw bytes").unwrap();
    let der = tmp.path().join("raw.der");
    let res = openssl(&[
        "cms".into(),
        "-encrypt".into(),
        "-binary".into(),
        "-aes-128-gcm".into(),
        "-outform".into(),
        "DER".into(),
        "-in".into(),
        raw.display().to_string(),
        "-out".into(),
        der.display().to_string(),
        "keys/bob/cert.pem".into(),
    ]);
    assert!(res.status.success());
    sipseal()
        .arg("open")
        .arg(&der)
        .args(["--identity", "keys/bob", "--body-only"])
        .assert()
        .success()
        .stdout(&b"\x00\x01 raw bytes"[..]);
}

#[test]
fn a_sealed_sip_body_opens_with_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let msg = message(tmp.path());
    let sealed = sipseal()
        .arg("seal")
        .arg(&msg)
        .args(BOB_AND_PROXY_A)
        .output()
        .unwrap();
    assert!(sealed.status.success());
    // Cut the body off the SIP message: what a SIP engineer does by hand.
    let text = &sealed.stdout;
    let body_at = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let der = tmp.path().join("body.der");
    std::fs::write(&der, &text[body_at..]).unwrap();
    for who in ["bob", "proxy-a"] {
        let res = openssl(&[
            "cms".into(),
            "-decrypt".into(),
            "-binary".into(),
            "-inform".into(),
            "DER".into(),
            "-in".into(),
            der.display().to_string(),
            "-recip".into(),
            format!("keys/{who}/cert.pem"),
            "-inkey".into(),
            format!("keys/{who}/key.pem"),
        ]);
        assert!(
            res.status.success(),
            "{who}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        assert_eq!(res.stdout, ENTITY);
    }
}

#[test]
fn a_certificate_without_ski_is_named_by_issuer_and_serial() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key.pem");
    let cert = tmp.path().join("cert.pem");
    let res = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=noski",
            "-addext",
            "subjectAltName=URI:sip:noski@example.com",
            "-addext",
            "subjectKeyIdentifier=none",
            "-addext",
            "authorityKeyIdentifier=none",
            "-keyout",
            &key.display().to_string(),
            "-out",
            &cert.display().to_string(),
        ]
        .map(String::from),
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let msg = message(tmp.path());
    for cipher in ["aes256-gcm", "aes128-cbc"] {
        let der = tmp.path().join(format!("{cipher}.der"));
        sipseal()
            .arg("seal")
            .arg(&msg)
            .arg("--peer")
            .arg(&cert)
            .args(["--cipher", cipher, "--body-only", "-o"])
            .arg(&der)
            .assert()
            .success();
        let described = sipseal().arg("inspect").arg(&der).output().unwrap();
        let text = String::from_utf8_lossy(&described.stdout);
        assert!(
            text.contains("ktri v0 rid issuer=CN=noski serial="),
            "{text}"
        );
        if cipher.ends_with("cbc") {
            // RFC 5652 §6.1: only v0 KTRIs, so EnvelopedData version 0.
            assert!(text.contains("cms: envelopedData v0,"), "{text}");
        }
        let res = openssl(
            &[
                "cms",
                "-decrypt",
                "-binary",
                "-inform",
                "DER",
                "-in",
                &der.display().to_string(),
                "-recip",
                &cert.display().to_string(),
                "-inkey",
                &key.display().to_string(),
            ]
            .map(String::from),
        );
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        assert_eq!(res.stdout, ENTITY);
        sipseal()
            .arg("open")
            .arg(&der)
            .arg("--key")
            .arg(&key)
            .arg("--cert")
            .arg(&cert)
            .assert()
            .success()
            .stdout(ENTITY);
    }
}

/// Item 12: a KEKRecipientInfo made by another tool with a binary key
/// identifier: `inspect` prints it `hex:...`, and a PSK file whose `id`
/// is that text opens the envelope.
#[test]
fn a_binary_kek_identifier_from_openssl_opens_with_a_hex_id() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain.txt");
    std::fs::write(&plain, b"Content-Type: text/plain\r\n\r\nhello\r\n").unwrap();
    let der = tmp.path().join("kek.der");
    let key = "000102030405060708090a0b0c0d0e0f";
    common::openssl()
        .args([
            "cms",
            "-encrypt",
            "-binary",
            "-aes-128-cbc",
            "-outform",
            "DER",
        ])
        .args(["-secretkey", key, "-secretkeyid", "de00ad01ff"])
        .arg("-in")
        .arg(&plain)
        .arg("-out")
        .arg(&der)
        .succeeds();
    let report = sipseal()
        .args(["inspect", "--format", "json"])
        .arg(&der)
        .succeeds()
        .stdout;
    let v: serde_json::Value = serde_json::from_slice(&report).unwrap();
    let kekid = v["body"]["cms"]["recipients"][0]["kekid"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    assert_eq!(kekid, "hex:de00ad01ff");
    let psk = tmp.path().join("psk.yaml");
    std::fs::write(&psk, format!("id: \"{kekid}\"\nkey: {key}\n")).unwrap();
    let out = sipseal()
        .arg("open")
        .arg(&der)
        .arg("--psk")
        .arg(&psk)
        .output()
        .unwrap();
    assert_eq!(
        common::ok(&out),
        b"Content-Type: text/plain\r\n\r\nhello\r\n"
    );
    // A bad hex id is refused when the file is read.
    std::fs::write(&psk, format!("id: \"hex:zz\"\nkey: {key}\n")).unwrap();
    let out = sipseal()
        .arg("open")
        .arg(&der)
        .arg("--psk")
        .arg(&psk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Item 18: RFC 4134's example 5.1 (RSA key transport, DES-EDE3-CBC
/// content) opens to the RFC's ExContent, with a legacy warning; 5.2 (RC2)
/// fails with a clear "unsupported algorithm"; OpenSSL's -des3 opens too;
/// `seal` never writes DES-EDE3-CBC.
#[test]
fn legacy_des_ede3_reads_and_rc2_is_refused() {
    let bob = [
        "--key",
        "tests/data/rfc4134/BobRSA/key.pem",
        "--cert",
        "tests/data/rfc4134/BobRSA/cert.pem",
    ];
    let out = sipseal()
        .args(["open", "tests/data/rfc4134/5.1.bin"])
        .args(bob)
        .output()
        .unwrap();
    assert_eq!(common::ok(&out), b"This is some sample content.");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("des-ede3-cbc is a legacy cipher"), "{err}");
    let out = sipseal()
        .args(["open", "tests/data/rfc4134/5.2.bin"])
        .args(bob)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unsupported algorithm") && err.contains("rc2-cbc"),
        "{err}"
    );
    // OpenSSL's own DES-EDE3-CBC envelope, to bob.
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("p.txt");
    std::fs::write(&plain, b"Content-Type: text/plain\r\n\r\nlegacy\r\n").unwrap();
    let der = tmp.path().join("e.der");
    common::openssl()
        .args([
            "cms", "-encrypt", "-binary", "-des3", "-outform", "DER", "-in",
        ])
        .arg(&plain)
        .arg("-out")
        .arg(&der)
        .arg("keys/bob/cert.pem")
        .succeeds();
    let out = sipseal()
        .arg("open")
        .arg(&der)
        .args(["--identity", "keys/bob"])
        .output()
        .unwrap();
    assert_eq!(
        common::ok(&out),
        b"Content-Type: text/plain\r\n\r\nlegacy\r\n"
    );
    let out = sipseal()
        .args(["seal", "samples/invite.sip", "--peer", "keys/bob/cert.pem"])
        .args(["--cipher", "des-ede3-cbc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Item 11: BER input (indefinite lengths, constructed OCTET STRINGs:
/// `openssl cms -stream`) is read as its DER, in DER and PEM form alike;
/// malformed BER is a clear error.
#[test]
fn ber_from_openssl_stream_opens_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("p.txt");
    // Large enough for several stream segments.
    let body = "a=x-line ".repeat(2000);
    let entity = format!("Content-Type: text/plain\r\n\r\n{body}\r\n");
    std::fs::write(&plain, &entity).unwrap();
    for (form, ext) in [("DER", "der"), ("PEM", "pem")] {
        let out = tmp.path().join(format!("e.{ext}"));
        common::openssl()
            .args([
                "cms",
                "-encrypt",
                "-binary",
                "-stream",
                "-aes-256-cbc",
                "-outform",
                form,
                "-in",
            ])
            .arg(&plain)
            .arg("-out")
            .arg(&out)
            .arg("keys/bob/cert.pem")
            .succeeds();
        let bytes = std::fs::read(&out).unwrap();
        if form == "DER" {
            assert_eq!(&bytes[..2], &[0x30, 0x80], "indefinite length from -stream");
        }
        let opened = sipseal()
            .arg("open")
            .arg(&out)
            .args(["--identity", "keys/bob"])
            .output()
            .unwrap();
        assert_eq!(common::ok(&opened), entity.as_bytes(), "{form}");
    }
    // A streamed SignedData verifies.
    let signed = tmp.path().join("s.der");
    common::openssl()
        .args([
            "cms",
            "-sign",
            "-binary",
            "-stream",
            "-nodetach",
            "-outform",
            "DER",
            "-in",
        ])
        .arg(&plain)
        .args([
            "-signer",
            "keys/alice/cert.pem",
            "-inkey",
            "keys/alice/key.pem",
            "-out",
        ])
        .arg(&signed)
        .succeeds();
    assert_eq!(&std::fs::read(&signed).unwrap()[..2], &[0x30, 0x80]);
    let out = sipseal()
        .arg("verify")
        .arg(&signed)
        .args(["--trust", "keys/trust.pem"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pass signature"), "{text}");
    // Cut short: a clear error, not a panic or a DER complaint.
    let ber = std::fs::read(tmp.path().join("e.der")).unwrap();
    let cut = common::write(tmp.path(), "cut.der", &ber[..ber.len() / 2]);
    let out = sipseal()
        .arg("open")
        .arg(&cut)
        .args(["--identity", "keys/bob"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("malformed BER at byte"), "{err}");
}

/// Key transport goes through aws-lc-rs (the default build) where it can;
/// what it cannot take — OAEP whose MGF1 hash differs from its hash, as
/// Java writes it, and an RSA key under 2048 bits — still opens, through
/// the rsa crate, and says so. The note depends only on the parameters.
#[test]
fn key_transport_names_the_implementation_that_did_not_use_aws_lc() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("entity.txt");
    std::fs::write(&plain, ENTITY).unwrap();
    // A 1024-bit identity, as in RFC 4134's examples.
    let (small_key, small_cert) = (tmp.path().join("k.pem"), tmp.path().join("c.pem"));
    let made = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-subj",
            "/CN=small",
            "-days",
            "1",
            "-keyout",
        ]
        .map(String::from)
        .into_iter()
        .chain([
            small_key.display().to_string(),
            "-out".into(),
            small_cert.display().to_string(),
        ])
        .collect::<Vec<_>>(),
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let bob = (
        "keys/bob/cert.pem".to_string(),
        "keys/bob/key.pem".to_string(),
    );
    let small = (
        small_cert.display().to_string(),
        small_key.display().to_string(),
    );
    // (name, recipient (cert, key), key options, expected note or None)
    type Case<'a> = (&'a str, (String, String), &'a [&'a str], Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("v15", bob.clone(), &[], None),
        (
            "oaep-sha1",
            bob.clone(),
            &["-keyopt", "rsa_padding_mode:oaep"],
            None,
        ),
        (
            "oaep-sha256",
            bob.clone(),
            &[
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
            ],
            None,
        ),
        (
            "oaep-sha256-mgf1-sha1",
            bob.clone(),
            &[
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-keyopt",
                "rsa_mgf1_md:sha1",
            ],
            Some("MGF1 hash equal to the hash, here sha256 with MGF1 sha1"),
        ),
        (
            "oaep-sha224",
            bob.clone(),
            &[
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha224",
            ],
            Some("no OAEP with SHA-224"),
        ),
        (
            "small-key",
            small.clone(),
            &[],
            Some("2048 to 8192 bits, this one has 1024"),
        ),
    ];
    for (name, (cert, key), keyopts, expected) in cases {
        let der = tmp.path().join(format!("{name}.der"));
        let mut args: Vec<String> = [
            "cms",
            "-encrypt",
            "-binary",
            "-outform",
            "DER",
            "-aes-256-gcm",
        ]
        .map(String::from)
        .to_vec();
        args.extend(["-in".into(), plain.display().to_string()]);
        args.extend([
            "-out".into(),
            der.display().to_string(),
            "-recip".into(),
            cert.clone(),
        ]);
        args.extend(keyopts.iter().map(|s| s.to_string()));
        let res = openssl(&args);
        assert!(
            res.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        let out = sipseal()
            .arg("open")
            .arg(&der)
            .args(["--key", &key, "--cert", &cert])
            .succeeds();
        assert_eq!(out.stdout, ENTITY, "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let note = stderr
            .lines()
            .find(|l| l.starts_with("note: the private-key operation ran in pure Rust"));
        if cfg!(feature = "aws-lc") {
            match expected {
                None => assert_eq!(note, None, "{name}: {stderr}"),
                Some(why) => assert!(
                    note.is_some_and(|n| n.contains("the rsa crate (RUSTSEC-2023-0071), since")
                        && n.contains(why)),
                    "{name}: {stderr}"
                ),
            }
        } else {
            assert!(
                note.is_some_and(|n| n.contains("without the aws-lc feature")),
                "{name}: {stderr}"
            );
        }
    }
}
