//! Keys as users have them: passphrase-protected PKCS#8 (`openssl pkcs8
//! -topk8`, PBES2 with PBKDF2 or scrypt) and PKCS#12 bundles (`openssl
//! pkcs12 -export`, PBES2 and the legacy 3DES/RC2 PBEs), RSA and EC, made
//! by the real `openssl`; the passphrase from --key-password-file (or its
//! environment variable) or asked on a terminal (a pty from `script`),
//! and refused with a hint when there is neither.

mod common;

use std::path::Path;

use common::{Succeeds, s, sipseal, text};

const PASSPHRASE: &str = "open sesame";

/// A directory with the passphrase file, protected copies of bob's RSA
/// and EC keys, bundles, and a message sealed for each key.
fn material(d: &Path) {
    let repo = common::repo();
    let k = |rel: &str| repo.join("keys").join(rel).display().to_string();
    std::fs::write(d.join("pw.txt"), format!("{PASSPHRASE}\n")).unwrap();
    std::fs::write(d.join("wrong.txt"), "open says me\n").unwrap();
    let openssl = |args: &[&str]| {
        common::openssl().current_dir(d).args(args).succeeds();
    };
    for (dir, key, cert, extra) in [
        (
            "rsa-pbkdf2",
            "bob/key.pem",
            "bob/cert.pem",
            vec!["-v2", "aes-256-cbc"],
        ),
        ("rsa-scrypt", "bob/key.pem", "bob/cert.pem", vec!["-scrypt"]),
        ("ec-pbkdf2", "bob-ec/key.pem", "bob-ec/cert.pem", vec![]),
    ] {
        std::fs::create_dir_all(d.join(dir)).unwrap();
        std::fs::copy(k(cert), d.join(dir).join("cert.pem")).unwrap();
        let (key, out) = (k(key), format!("{dir}/key.pem"));
        let mut args = vec!["pkcs8", "-topk8", "-in", &key, "-out", &out];
        args.extend(["-passout", "file:pw.txt"]);
        args.extend(extra);
        openssl(&args);
        let pem = std::fs::read_to_string(d.join(&out)).unwrap();
        assert!(
            pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{pem}"
        );
    }
    for (bundle, key, cert, extra) in [
        ("rsa.p12", "bob/key.pem", "bob/cert.pem", vec![]),
        (
            "rsa-3des.p12",
            "bob/key.pem",
            "bob/cert.pem",
            vec![
                "-keypbe",
                "PBE-SHA1-3DES",
                "-certpbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
            ],
        ),
        ("ec.pfx", "bob-ec/key.pem", "bob-ec/cert.pem", vec![]),
        ("alice.p12", "alice/key.pem", "alice/cert.pem", vec![]),
    ] {
        let (key, cert, ca) = (k(key), k(cert), k("ca/b.example.com/cert.pem"));
        let mut args = vec!["pkcs12", "-export", "-inkey", &key, "-in", &cert];
        args.extend(["-certfile", &ca, "-passout", "file:pw.txt", "-out", bundle]);
        args.extend(extra);
        openssl(&args);
    }
    for (name, peer) in [
        ("to-rsa.sip", "keys/bob/cert.pem"),
        ("to-ec.sip", "keys/bob-ec/cert.pem"),
    ] {
        sipseal()
            .args(["seal", "samples/invite.sip", "--peer", peer, "-o"])
            .arg(d.join(name))
            .succeeds();
    }
}

fn body() -> Vec<u8> {
    let sample = common::file("samples/invite.sip");
    sample[sample.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..].to_vec()
}

#[test]
fn protected_keys_and_bundles_open_with_the_passphrase_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    material(d);
    for (identity, sealed) in [
        ("rsa-pbkdf2", "to-rsa.sip"),
        ("rsa-scrypt", "to-rsa.sip"),
        ("ec-pbkdf2", "to-ec.sip"),
        ("rsa.p12", "to-rsa.sip"),
        ("rsa-3des.p12", "to-rsa.sip"),
        ("ec.pfx", "to-ec.sip"),
    ] {
        let out = sipseal()
            .current_dir(d)
            .args(["open", "--body-only", "--identity", identity, sealed])
            .args(["--key-password-file", "pw.txt"])
            .succeeds();
        assert_eq!(out.stdout, body(), "{identity}");
    }
    // The environment variable names the file as well; --key and --cert
    // take a protected key too.
    let out = sipseal()
        .current_dir(d)
        .env("SIPSEAL_KEY_PASSWORD_FILE", d.join("pw.txt"))
        .args(["open", "--body-only", "--key", "rsa-scrypt/key.pem"])
        .args(["--cert", "rsa-scrypt/cert.pem", "to-rsa.sip"])
        .succeeds();
    assert_eq!(out.stdout, body());
}

#[test]
fn a_bundle_signs_and_the_signature_verifies() {
    // alice's INVITE, signed with alice's key and certificate from a bundle.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    material(d);
    let repo = common::repo();
    let signed = sipseal()
        .current_dir(d)
        .args(["sign", "--identity", "alice.p12"])
        .args(["--key-password-file", "pw.txt"])
        .arg(repo.join("samples/invite.sip"))
        .succeeds();
    let file = common::write(d, "signed.sip", &signed.stdout);
    sipseal()
        .args(["verify", "--trust", "keys/trust.pem", s(&file)])
        .succeeds();
}

#[test]
fn without_the_right_passphrase_the_error_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    material(d);
    for identity in ["rsa-pbkdf2", "rsa.p12"] {
        // No passphrase and no terminal (stdin is not one here).
        let out = sipseal()
            .current_dir(d)
            .args(["open", "--identity", identity, "to-rsa.sip"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{identity}: {}", text(&out));
        let said = text(&out);
        assert!(said.contains("passphrase-protected"), "{said}");
        assert!(said.contains("--key-password-file"), "{said}");
        assert!(out.stdout.is_empty());
        // The wrong passphrase.
        let out = sipseal()
            .current_dir(d)
            .args(["open", "--identity", identity, "to-rsa.sip"])
            .args(["--key-password-file", "wrong.txt"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{identity}: {}", text(&out));
        assert!(text(&out).contains("passphrase"), "{}", text(&out));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn on_a_terminal_the_passphrase_is_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    material(d);
    // `script` (util-linux) runs sipseal on a pseudo-terminal and types
    // the passphrase into it.
    let command = format!(
        "{} open --body-only --identity rsa-pbkdf2 to-rsa.sip",
        env!("CARGO_BIN_EXE_sipseal")
    );
    let mut child = std::process::Command::new("script")
        .current_dir(d)
        .env("SIPSEAL_STATE", d.join("state"))
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSPHRASE}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        shown.contains("passphrase for rsa-pbkdf2/key.pem: "),
        "{shown}"
    );
    assert!(
        shown.contains(
            &String::from_utf8_lossy(&body())
                .replace('\r', "")
                .to_string()
        ),
        "{shown}"
    );
}

#[test]
fn a_protected_key_makes_the_registration_request() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    material(d);
    let register = |extra: &[&str]| {
        sipseal()
            .current_dir(d)
            .args([
                "register",
                "--uri",
                "sip:bob@b.example.com",
                "--identity",
                "rsa-pbkdf2",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = register(&["--key-password-file", "pw.txt"]);
    assert!(out.status.success(), "{}", text(&out));
    let msg = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(msg.contains("Content-Type: application/pkcs10"), "{msg}");
    let out = register(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--key-password-file"), "{}", text(&out));
}
