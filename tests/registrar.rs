//! The registrar and the user agent's REGISTER (docs/SPEC.md §6): Digest
//! (challenge, authorized retry, stale and replayed nonces, wrong
//! passwords, MD5 only when allowed), a certificate issued from a CSR
//! (sipseal's and `openssl req`'s, RSA and EC) whose notAfter is the
//! registration expiry, the signed 200 OK whose certs-only body `openssl
//! pkcs7` reads, installing the certificate, and removal.

mod common;

use std::path::{Path, PathBuf};

use common::{Succeeds, s, sipseal, text};

const AOR: &str = "sip:alice@example.com";
const CONTACT: &str = "sip:alice@192.0.2.10:5060";
const T0: &str = "2026-03-01T12:00:00Z";

/// A realm under a temporary directory: a CA, the registrar's identity,
/// alice's credentials, and alice's P-256 key.
struct Realm {
    _tmp: tempfile::TempDir,
    d: PathBuf,
}

impl Realm {
    fn new() -> Realm {
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
        run(&[
            "keys",
            "generate",
            "--uri",
            "sip:registrar.example.com",
            "--ca",
            "ca",
            "--out",
            "reg",
            "--now",
            "2026-01-01T00:00:00Z",
        ]);
        std::fs::write(d.join("pw"), "alice-pw\n").unwrap();
        std::fs::write(d.join("wrong"), "alice-PW\n").unwrap();
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
        Realm { _tmp: tmp, d }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.d.join(name)
    }

    /// `sipseal register` for alice with `extra`; the request written to `out`.
    fn register(&self, out: &str, extra: &[&str]) {
        let mut cmd = sipseal();
        cmd.current_dir(&self.d).args(["register", "--uri", AOR]);
        if !extra.contains(&"--remove-all") && !extra.contains(&"--publish") {
            cmd.args(["--contact", CONTACT]);
        }
        let msg = cmd.args(extra).succeeds().stdout;
        std::fs::write(self.path(out), msg).unwrap();
    }

    /// The registrar on `input` at `now`: exit code, response, stderr.
    fn registrar(&self, input: &str, now: &str, extra: &[&str]) -> (i32, Vec<u8>, String) {
        let out = sipseal()
            .current_dir(&self.d)
            .args([
                "registrar",
                "--realm",
                "example.com",
                "--ca",
                "ca",
                "--identity",
                "reg",
            ])
            .args([
                "--users",
                "users.yaml",
                "--state",
                "state",
                "--now",
                now,
                input,
            ])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// REGISTER → 401 → authorized REGISTER (with `password`), all at `now`.
    fn authorized(&self, name: &str, now: &str, password: &str, extra: &[&str]) -> PathBuf {
        self.register(&format!("{name}-1.sip"), extra);
        let (code, resp, _) = self.registrar(&format!("{name}-1.sip"), now, &[]);
        assert_eq!(code, 5);
        std::fs::write(self.path(&format!("{name}-401.sip")), &resp).unwrap();
        let challenge = format!("{name}-401.sip");
        let mut args = vec![
            "--challenge",
            challenge.as_str(),
            "--password-file",
            password,
        ];
        args.extend(extra);
        self.register(&format!("{name}-2.sip"), &args);
        self.path(&format!("{name}-2.sip"))
    }
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
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
        .collect()
}

/// The certs-only part of a signed 200 OK.
fn certs_only_part(response: &[u8]) -> Vec<u8> {
    let marker = b"Content-Type: application/pkcs7-mime; smime-type=certs-only";
    let at = response
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap();
    let start = at
        + response[at..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap()
        + 4;
    let end = start
        + response[start..]
            .windows(4)
            .position(|w| w == b"\r\n--")
            .unwrap();
    response[start..end].to_vec()
}

#[test]
fn the_whole_loop_issues_installs_and_the_certificate_is_sound() {
    let r = Realm::new();
    // First REGISTER: 401, one challenge per algorithm, strongest first, no MD5.
    r.register("first.sip", &["--identity", "alice"]);
    let (code, resp, _) = r.registrar("first.sip", T0, &[]);
    assert_eq!(code, 5);
    let resp_text = String::from_utf8_lossy(&resp).into_owned();
    assert_eq!(status(&resp), "SIP/2.0 401 Unauthorized");
    let challenges = header(&resp_text, "WWW-Authenticate");
    assert_eq!(challenges.len(), 2, "{resp_text}");
    assert!(challenges[0].contains("algorithm=SHA-512-256"));
    assert!(challenges[1].contains("algorithm=SHA-256"));
    // The REGISTER carries a CSR: the body is to be covered (auth-int).
    assert!(
        challenges
            .iter()
            .all(|c| c.contains("qop=\"auth-int,auth\"") && c.contains("realm=\"example.com\""))
    );
    // The authorized retry: 200 with the binding and the certificate.
    let second = r.authorized("loop", T0, "pw", &["--identity", "alice"]);
    let (code, ok, err) = r.registrar(s(&second), T0, &[]);
    assert_eq!(code, 0, "{err}");
    let ok_text = String::from_utf8_lossy(&ok).into_owned();
    assert_eq!(status(&ok), "SIP/2.0 200 OK");
    assert_eq!(
        header(&ok_text, "Contact"),
        [format!("<{CONTACT}>;expires=3600")]
    );
    assert!(
        ok_text.contains("Content-Type: multipart/signed"),
        "{ok_text}"
    );
    std::fs::write(r.path("200.sip"), &ok).unwrap();
    // openssl reads the certs-only body: alice's certificate and the CA's.
    std::fs::write(r.path("certs.der"), certs_only_part(&ok)).unwrap();
    let printed = text(
        &common::openssl()
            .current_dir(&r.d)
            .args([
                "pkcs7",
                "-inform",
                "DER",
                "-in",
                "certs.der",
                "-print_certs",
                "-noout",
            ])
            .succeeds(),
    );
    assert!(
        printed.contains("subject=CN = alice@example.com"),
        "{printed}"
    );
    assert!(printed.contains("subject=CN = Example CA"), "{printed}");
    // Installed after the registrar's signature and the chain are checked.
    sipseal()
        .current_dir(&r.d)
        .args([
            "register",
            "--accept",
            "200.sip",
            "--identity",
            "alice",
            "--trust",
            "ca/cert.pem",
        ])
        .succeeds();
    let verify = common::openssl()
        .current_dir(&r.d)
        .args([
            "verify",
            "-attime",
            "1772366500",
            "-CAfile",
            "ca/cert.pem",
            "alice/cert.pem",
        ])
        .succeeds();
    assert!(text(&verify).contains("alice/cert.pem: OK"));
    // notAfter = the registration's expiry, to the second: T0 + 3600.
    let dates = text(
        &common::openssl()
            .current_dir(&r.d)
            .args([
                "x509",
                "-in",
                "alice/cert.pem",
                "-noout",
                "-dates",
                "-ext",
                "subjectAltName",
            ])
            .succeeds(),
    );
    assert!(
        dates.contains("notBefore=Mar  1 12:00:00 2026 GMT"),
        "{dates}"
    );
    assert!(
        dates.contains("notAfter=Mar  1 13:00:00 2026 GMT"),
        "{dates}"
    );
    assert!(dates.contains(&format!("URI:{AOR}")), "{dates}");
    // The installed identity seals and opens.
    let sealed = sipseal()
        .args([
            "seal",
            "samples/invite.sip",
            "--body-only",
            "--now",
            "2026-03-01T12:30:00Z",
        ])
        .arg("--peer")
        .arg(r.path("alice/cert.pem"))
        .succeeds()
        .stdout;
    let file = common::write(&r.d, "sealed.der", &sealed);
    sipseal()
        .args(["open", "--body-only", "--identity"])
        .arg(r.path("alice"))
        .arg(&file)
        .succeeds();
    // The same authorized request again: a replayed nonce count, challenged.
    let (code, resp, err) = r.registrar(s(&second), T0, &[]);
    assert_eq!(
        (code, status(&resp).as_str()),
        (5, "SIP/2.0 401 Unauthorized"),
        "{err}"
    );
}

#[test]
fn refusals_say_little_and_stale_nonces_are_told_apart() {
    let r = Realm::new();
    // A wrong password: 403.
    let wrong = r.authorized("wrong", T0, "wrong", &[]);
    let (code, resp, _) = r.registrar(s(&wrong), T0, &[]);
    assert_eq!((code, status(&resp).as_str()), (5, "SIP/2.0 403 Forbidden"));
    // An unknown user: the same 403, nothing more.
    let unknown = std::fs::read_to_string(r.path("wrong-2.sip"))
        .unwrap()
        .replace("username=\"alice\"", "username=\"mallory\"");
    std::fs::write(r.path("unknown.sip"), unknown).unwrap();
    let (code, resp2, _) = r.registrar("unknown.sip", T0, &[]);
    assert_eq!(code, 5);
    let strip = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .filter(|l| !l.starts_with("To:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(status(&resp2), "SIP/2.0 403 Forbidden");
    assert_eq!(strip(&resp).len(), strip(&resp2).len());
    // The right password after the nonce's lifetime: 401 stale=true; the
    // wrong one: 403.
    let late = "2026-03-01T12:06:00Z";
    let right = r.authorized("right", T0, "pw", &[]);
    let (code, resp, _) = r.registrar(s(&right), late, &[]);
    assert_eq!(code, 5);
    let t = String::from_utf8_lossy(&resp).into_owned();
    assert!(
        header(&t, "WWW-Authenticate")
            .iter()
            .all(|c| c.ends_with("stale=true")),
        "{t}"
    );
    let (_, resp, _) = r.registrar(s(&wrong), late, &[]);
    assert_eq!(status(&resp), "SIP/2.0 403 Forbidden");
}

#[test]
fn md5_is_refused_unless_allowed() {
    let r = Realm::new();
    // An MD5 answer to a challenge the registrar never offered.
    r.register("m1.sip", &[]);
    let (_, resp, _) = r.registrar("m1.sip", T0, &["--allow-md5"]);
    let t = String::from_utf8_lossy(&resp).into_owned();
    let challenges = header(&t, "WWW-Authenticate");
    assert_eq!(challenges.len(), 3);
    assert!(challenges[2].contains("algorithm=MD5"));
    // Keep only the MD5 challenge, as an old client would pick it.
    let md5_only = t
        .lines()
        .filter(|l| !l.starts_with("WWW-Authenticate") || l.contains("MD5"))
        .collect::<Vec<_>>()
        .join("\r\n");
    std::fs::write(r.path("m401.sip"), md5_only + "\r\n").unwrap();
    // The credential file has no MD5 HA1 yet: even allowed, it fails.
    r.register(
        "m2.sip",
        &["--challenge", "m401.sip", "--password-file", "pw"],
    );
    assert!(
        std::fs::read_to_string(r.path("m2.sip"))
            .unwrap()
            .contains("algorithm=MD5")
    );
    let (_, resp, _) = r.registrar("m2.sip", T0, &["--allow-md5"]);
    assert_eq!(status(&resp), "SIP/2.0 403 Forbidden");
    // With MD5's HA1 kept: accepted when allowed, challenged afresh when not.
    sipseal()
        .current_dir(&r.d)
        .args([
            "registrar",
            "passwd",
            "--users",
            "users.yaml",
            "--realm",
            "example.com",
        ])
        .args(["--user", AOR, "--password-file", "pw", "--allow-md5"])
        .succeeds();
    let (code, resp, _) = r.registrar("m2.sip", T0, &[]);
    assert_eq!(
        (code, status(&resp).as_str()),
        (5, "SIP/2.0 401 Unauthorized")
    );
    let (code, resp, err) = r.registrar("m2.sip", T0, &["--allow-md5"]);
    assert_eq!(
        (code, status(&resp).as_str()),
        (0, "SIP/2.0 200 OK"),
        "{err}"
    );
}

#[test]
fn an_independent_digest_computation_is_accepted() {
    // Python's hashlib computes the SHA-256 response from the 401's nonce.
    let r = Realm::new();
    r.register("p1.sip", &[]);
    let (_, resp, _) = r.registrar("p1.sip", T0, &[]);
    let t = String::from_utf8_lossy(&resp).into_owned();
    let nonce = t
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let script = format!(
        "import hashlib\n\
         h=lambda s: hashlib.sha256(s.encode()).hexdigest()\n\
         ha1=h('alice:example.com:alice-pw'); ha2=h('REGISTER:sip:example.com')\n\
         print(h(ha1+':{nonce}:00000001:0123abcd:auth:'+ha2))\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .succeeds();
    let response = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let auth = format!(
        "Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"sip:example.com\", response=\"{response}\", algorithm=SHA-256, cnonce=\"0123abcd\", qop=auth, nc=00000001\r\n"
    );
    let request = std::fs::read_to_string(r.path("p1.sip")).unwrap();
    let with_auth = request.replacen("Contact:", &format!("{auth}Contact:"), 1);
    std::fs::write(r.path("p2.sip"), with_auth).unwrap();
    let (code, resp, err) = r.registrar("p2.sip", T0, &[]);
    assert_eq!(
        (code, status(&resp).as_str()),
        (0, "SIP/2.0 200 OK"),
        "{err}"
    );
}

/// A CSR made by `openssl req` for `subject_alt` with a `kind` key.
fn openssl_csr(d: &Path, name: &str, newkey: &[&str], san: &str) {
    common::openssl()
        .current_dir(d)
        .args(["req", "-new", "-nodes"])
        .args(newkey)
        .args([
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ])
        .args([
            "-subj",
            "/CN=alice",
            "-addext",
            &format!("subjectAltName={san}"),
        ])
        .succeeds();
}

#[test]
fn csrs_are_checked_for_the_aor_the_signature_and_the_key() {
    let r = Realm::new();
    openssl_csr(&r.d, "rsa", &["-newkey", "rsa:2048"], &format!("URI:{AOR}"));
    openssl_csr(
        &r.d,
        "ec",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &format!("URI:{AOR}"),
    );
    openssl_csr(
        &r.d,
        "other",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "URI:sip:bob@example.com",
    );
    openssl_csr(
        &r.d,
        "small",
        &["-newkey", "rsa:1024"],
        &format!("URI:{AOR}"),
    );
    // A request whose signature no longer verifies: one byte of the
    // public key changed.
    let pem = std::fs::read_to_string(r.path("ec.csr")).unwrap();
    let (_, mut der) = der::pem::decode_vec(pem.as_bytes()).unwrap();
    let at = der.len() / 2;
    der[at] ^= 0x01;
    std::fs::write(r.path("bad.csr"), der).unwrap();
    for (name, expected) in [
        ("rsa", "SIP/2.0 200 OK"),
        ("ec", "SIP/2.0 200 OK"),
        ("other", "SIP/2.0 403 Forbidden"),
        ("small", "SIP/2.0 400 Bad Request"),
        ("bad", "SIP/2.0 400 Bad Request"),
    ] {
        let csr = format!("{name}.csr");
        let req = r.authorized(name, T0, "pw", &["--csr", &csr]);
        let (_, resp, err) = r.registrar(s(&req), T0, &[]);
        assert_eq!(status(&resp), expected, "{name}: {err}");
    }
}

#[test]
fn removal_withdraws_and_the_registry_keeps_the_rest() {
    let r = Realm::new();
    let req = r.authorized("reg", T0, "pw", &["--identity", "alice"]);
    let (code, _, _) = r.registrar(s(&req), T0, &[]);
    assert_eq!(code, 0);
    // Contact: * with Expires: 0, authorized: 200, no Contact left.
    r.authorized("rm", T0, "pw", &["--remove-all"]);
    let (code, resp, err) = r.registrar("rm-2.sip", T0, &[]);
    assert_eq!(
        (code, status(&resp).as_str()),
        (0, "SIP/2.0 200 OK"),
        "{err}"
    );
    assert!(err.contains("withdrawn"), "{err}");
    let t = String::from_utf8_lossy(&resp).into_owned();
    assert!(header(&t, "Contact").is_empty(), "{t}");
    // The store: alice's record (one file per AOR), no binding, the
    // certificate marked withdrawn.
    let records: Vec<_> = std::fs::read_dir(r.path("state/registrar_example.com/aors"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let name = records[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("sip_alice@example.com-"), "{name}");
    let registry = std::fs::read_to_string(&records[0]).unwrap();
    assert!(registry.contains("bindings: []"), "{registry}");
    assert!(
        registry.contains("withdrawn: 2026-03-01T12:00:00Z"),
        "{registry}"
    );
}

impl Realm {
    /// `certquery` for `aor` (and `extra`), answered by the registrar at `now`.
    fn query(&self, name: &str, aor: &str, now: &str, extra: &[&str]) -> (i32, Vec<u8>) {
        let q = sipseal()
            .current_dir(&self.d)
            .args(["certquery", "--uri", aor, "--from", "sip:bob@example.org"])
            .args(extra)
            .succeeds()
            .stdout;
        std::fs::write(self.path(&format!("{name}.sip")), q).unwrap();
        let (code, resp, _) = self.registrar(&format!("{name}.sip"), now, &[]);
        std::fs::write(self.path(&format!("{name}-answer.sip")), &resp).unwrap();
        (code, resp)
    }
}

#[test]
fn certquery_finds_current_certificates_only_and_404_says_nothing_more() {
    let r = Realm::new();
    let req = r.authorized("reg", T0, "pw", &["--identity", "alice"]);
    let (code, ok, _) = r.registrar(s(&req), T0, &[]);
    assert_eq!(code, 0);
    std::fs::write(r.path("200.sip"), &ok).unwrap();
    sipseal()
        .current_dir(&r.d)
        .args([
            "register",
            "--accept",
            "200.sip",
            "--identity",
            "alice",
            "--trust",
            "ca/cert.pem",
        ])
        .succeeds();
    // Another party asks: 200, signed, with alice's certificate; stored.
    let during = "2026-03-01T12:30:00Z";
    let (code, resp) = r.query("q1", AOR, during, &[]);
    assert_eq!((code, status(&resp).as_str()), (0, "SIP/2.0 200 OK"));
    sipseal()
        .current_dir(&r.d)
        .args([
            "certquery",
            "--accept",
            "q1-answer.sip",
            "--trust",
            "ca/cert.pem",
            "--out",
            "certs",
        ])
        .args(["--now", during])
        .succeeds();
    let stored = std::fs::read(r.path("certs/alice@example.com.pem")).unwrap();
    assert_eq!(
        stored,
        std::fs::read(r.path("alice/cert.pem")).unwrap()[..stored.len()]
    );
    // Sealing to alice by her AOR: found in what certquery stored, and in
    // the registrar's state directory; alice opens both.
    for certs in ["certs", "state"] {
        let sealed = sipseal()
            .current_dir(&r.d)
            .args([
                "seal",
                s(&common::repo().join("samples/invite.sip")),
                "--body-only",
            ])
            .args([
                "--peer",
                AOR,
                "--certs",
                certs,
                "--trust",
                "ca/cert.pem",
                "--now",
                during,
            ])
            .succeeds()
            .stdout;
        let file = common::write(&r.d, "to-alice.der", &sealed);
        sipseal()
            .args([
                "open",
                "--body-only",
                "--identity",
                s(&r.path("alice")),
                s(&file),
            ])
            .succeeds();
    }
    // Is alice's certificate still valid? Yes, by its fingerprint.
    let (code, _) = r.query("q2", AOR, during, &["--cert", "alice/cert.pem"]);
    assert_eq!(code, 0);
    // Unknown AOR, expired registration, and (after removal) a withdrawn
    // certificate: the same 404.
    let (code, unknown) = r.query("q3", "sip:nobody@example.com", during, &[]);
    assert_eq!(
        (code, status(&unknown).as_str()),
        (5, "SIP/2.0 404 Not Found")
    );
    let (code, expired) = r.query("q4", AOR, "2026-03-01T13:00:01Z", &[]);
    assert_eq!(
        (code, status(&expired).as_str()),
        (5, "SIP/2.0 404 Not Found")
    );
    r.authorized("rm", during, "pw", &["--remove-all"]);
    assert_eq!(r.registrar("rm-2.sip", during, &[]).0, 0);
    let (code, withdrawn) = r.query("q5", AOR, during, &[]);
    assert_eq!(code, 5);
    let (code, _) = r.query("q6", AOR, during, &["--cert", "alice/cert.pem"]);
    assert_eq!(code, 5);
    // Withdrawn: the registrar's state no longer gives alice's certificate
    // to seal to; an unknown AOR neither. Exit 2, naming the AOR.
    for aor in [AOR, "sip:nobody@example.com"] {
        let out = sipseal()
            .current_dir(&r.d)
            .args(["seal", s(&common::repo().join("samples/invite.sip"))])
            .args([
                "--peer",
                aor,
                "--certs",
                "state",
                "--trust",
                "ca/cert.pem",
                "--now",
                during,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("no certificate for {aor}")),
            "{}",
            text(&out)
        );
    }
    // The 404s differ only in what echoes the request.
    let shape = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .map(|l| l.split(':').next().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&unknown), shape(&withdrawn));
    assert_eq!(shape(&unknown), shape(&expired));
    // certquery --accept on a 404: exit 5, nothing stored.
    let out = sipseal()
        .current_dir(&r.d)
        .args([
            "certquery",
            "--accept",
            "q5-answer.sip",
            "--trust",
            "ca/cert.pem",
            "--out",
            "certs2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(!r.path("certs2").exists());
}

#[test]
fn the_crl_revokes_withdrawn_certificates_for_openssl_and_sipseal() {
    let r = Realm::new();
    // alice registers an RSA key (so that she can sign), from openssl req.
    openssl_csr(&r.d, "rsa", &["-newkey", "rsa:2048"], &format!("URI:{AOR}"));
    std::fs::create_dir_all(r.path("alice-rsa")).unwrap();
    std::fs::copy(r.path("rsa.key"), r.path("alice-rsa/key.pem")).unwrap();
    let req = r.authorized("reg", T0, "pw", &["--csr", "rsa.csr"]);
    let (code, ok, _) = r.registrar(s(&req), T0, &[]);
    assert_eq!(code, 0);
    std::fs::write(r.path("200.sip"), ok).unwrap();
    sipseal()
        .current_dir(&r.d)
        .args([
            "register",
            "--accept",
            "200.sip",
            "--identity",
            "alice-rsa",
            "--trust",
            "ca/cert.pem",
        ])
        .succeeds();
    // A message alice signs while registered.
    let during = "2026-03-01T12:30:00Z";
    let msg = sipseal()
        .current_dir(&r.d)
        .args([
            "build",
            "message",
            "--from",
            AOR,
            "--to",
            "sip:bob@example.com",
        ])
        .args([
            "--body",
            s(&common::repo().join("samples/message.txt")),
            "--content-type",
            "text/plain",
        ])
        .succeeds()
        .stdout;
    std::fs::write(r.path("msg.sip"), msg).unwrap();
    let signed = sipseal()
        .current_dir(&r.d)
        .args([
            "sign",
            "msg.sip",
            "--identity",
            "alice-rsa",
            "--now",
            during,
        ])
        .succeeds()
        .stdout;
    std::fs::write(r.path("signed.sip"), signed).unwrap();
    // Before removal the CRL lists nothing; after, alice's certificate.
    let crl = |out: &str, now: &str| {
        sipseal()
            .current_dir(&r.d)
            .args([
                "registrar",
                "crl",
                "--realm",
                "example.com",
                "--ca",
                "ca",
                "--state",
                "state",
            ])
            .args(["--now", now, "-o", out])
            .succeeds();
    };
    crl("empty.crl", during);
    r.authorized("rm", during, "pw", &["--remove-all"]);
    assert_eq!(r.registrar("rm-2.sip", during, &[]).0, 0);
    crl("withdrawn.crl", "2026-03-01T12:31:00Z");
    let serial = text(
        &common::openssl()
            .current_dir(&r.d)
            .args(["x509", "-in", "alice-rsa/cert.pem", "-noout", "-serial"])
            .succeeds(),
    );
    let serial = serial.trim().trim_start_matches("serial=").to_owned();
    let shown = text(
        &common::openssl()
            .current_dir(&r.d)
            .args([
                "crl",
                "-in",
                "withdrawn.crl",
                "-noout",
                "-text",
                "-CAfile",
                "ca/cert.pem",
            ])
            .succeeds(),
    );
    assert!(shown.contains("verify OK"), "{shown}");
    assert!(
        shown.contains(&format!("Serial Number: {serial}")),
        "{shown}"
    );
    assert!(shown.contains("X509v3 CRL Number"), "{shown}");
    let empty = text(
        &common::openssl()
            .current_dir(&r.d)
            .args([
                "crl",
                "-in",
                "empty.crl",
                "-noout",
                "-text",
                "-CAfile",
                "ca/cert.pem",
            ])
            .succeeds(),
    );
    assert!(empty.contains("No Revoked Certificates"), "{empty}");
    // openssl verify -crl_check, and sipseal verify --crl.
    let out = common::openssl()
        .current_dir(&r.d)
        .args([
            "verify",
            "-crl_check",
            "-CRLfile",
            "withdrawn.crl",
            "-CAfile",
            "ca/cert.pem",
        ])
        .args(["-attime", "1772368300", "alice-rsa/cert.pem"])
        .output()
        .unwrap();
    assert!(text(&out).contains("certificate revoked"), "{}", text(&out));
    let out = sipseal()
        .current_dir(&r.d)
        .args([
            "verify",
            "signed.sip",
            "--trust",
            "ca/cert.pem",
            "--crl",
            "withdrawn.crl",
        ])
        .args(["--now", "2026-03-01T12:32:00Z"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("FAIL revocation: {AOR} is revoked")),
        "{}",
        text(&out)
    );
    let out = sipseal()
        .current_dir(&r.d)
        .args([
            "verify",
            "signed.sip",
            "--trust",
            "ca/cert.pem",
            "--crl",
            "empty.crl",
        ])
        .args(["--now", "2026-03-01T12:32:00Z"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn registrations_feed_the_relays_imposture_check() {
    let r = Realm::new();
    let req = r.authorized("reg", T0, "pw", &[]);
    let (code, _, _) = r.registrar(s(&req), T0, &["--source", "192.0.2.10:5060"]);
    assert_eq!(code, 0);
    let msg = sipseal()
        .current_dir(&r.d)
        .args([
            "build",
            "message",
            "--from",
            AOR,
            "--to",
            "sip:bob@example.com",
        ])
        .args([
            "--body",
            s(&common::repo().join("samples/message.txt")),
            "--content-type",
            "text/plain",
        ])
        .succeeds()
        .stdout;
    std::fs::write(r.path("msg.sip"), msg).unwrap();
    let proxy = |from: &str, now: &str| {
        sipseal()
            .current_dir(&r.d)
            .args([
                "proxy",
                "msg.sip",
                "--identity",
                "reg",
                "--via",
                "proxy.example.com",
            ])
            .args([
                "--received-from",
                from,
                "--registrations",
                "state",
                "--now",
                now,
            ])
            .output()
            .unwrap()
    };
    let during = "2026-03-01T12:30:00Z";
    // From where alice registered: forwarded.
    let out = proxy("192.0.2.10:5060", during);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("MESSAGE "));
    // From elsewhere: 403 (exit 5).
    let out = proxy("198.51.100.7:5060", during);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("SIP/2.0 403"),
        "{}",
        text(&out)
    );
    // After the registration expired: not bound any more, 403 too.
    let out = proxy("192.0.2.10:5060", "2026-03-01T13:00:01Z");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
}

#[test]
fn publish_issues_without_a_binding_and_certquery_finds_it() {
    let r = Realm::new();
    let req = r.authorized(
        "pub",
        T0,
        "pw",
        &["--publish", "--identity", "alice", "--expires", "600"],
    );
    let first = std::fs::read(r.path("pub-1.sip")).unwrap();
    assert!(first.starts_with(format!("PUBLISH {AOR} SIP/2.0").as_bytes()));
    let (code, ok, err) = r.registrar(s(&req), T0, &[]);
    assert_eq!((code, status(&ok).as_str()), (0, "SIP/2.0 200 OK"), "{err}");
    let t = String::from_utf8_lossy(&ok).into_owned();
    assert_eq!(header(&t, "Expires"), ["600"]);
    assert_eq!(header(&t, "SIP-ETag").len(), 1);
    assert!(header(&t, "Contact").is_empty());
    std::fs::write(r.path("200.sip"), &ok).unwrap();
    sipseal()
        .current_dir(&r.d)
        .args([
            "register",
            "--accept",
            "200.sip",
            "--identity",
            "alice",
            "--trust",
            "ca/cert.pem",
        ])
        .succeeds();
    let dates = text(
        &common::openssl()
            .current_dir(&r.d)
            .args(["x509", "-in", "alice/cert.pem", "-noout", "-enddate"])
            .succeeds(),
    );
    assert!(
        dates.contains("notAfter=Mar  1 12:10:00 2026 GMT"),
        "{dates}"
    );
    // No binding, but the published certificate is current.
    let (code, _) = r.query("q", AOR, "2026-03-01T12:05:00Z", &[]);
    assert_eq!(code, 0);
    let (code, _) = r.query("q-late", AOR, "2026-03-01T12:10:01Z", &[]);
    assert_eq!(code, 5);
    // A PUBLISH without a CSR: 415, naming what it takes.
    let bare = r.authorized("bare", T0, "pw", &["--publish"]);
    let (_, resp, _) = r.registrar(s(&bare), T0, &[]);
    let t = String::from_utf8_lossy(&resp).into_owned();
    assert!(t.starts_with("SIP/2.0 415"), "{t}");
    assert_eq!(header(&t, "Accept"), ["application/pkcs10"]);
}

#[test]
fn a_register_with_a_body_of_another_type_gets_415_naming_what_it_takes() {
    let r = Realm::new();
    let req = r.authorized("typed", T0, "pw", &[]);
    // alice's own credentials, over a text/plain body (auth-int, as a
    // REGISTER with a body must be).
    let body = "hello\r\n";
    let challenge = std::fs::read_to_string(r.path("typed-401.sip")).unwrap();
    let www =
        header(&challenge, "WWW-Authenticate")[0].replace("qop=\"auth\"", "qop=\"auth-int,auth\"");
    let auth = sipseal::registrar::digest::answer(
        &www,
        "alice",
        "alice-pw",
        "REGISTER",
        "sip:example.com",
        body.as_bytes(),
        "0a1b",
    )
    .unwrap();
    let text = std::fs::read_to_string(&req).unwrap();
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    let authorization = format!("Authorization: {auth}");
    let head: Vec<&str> = head
        .split("\r\n")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("content-type:") && !l.starts_with("content-length:")
        })
        .map(|l| {
            if l.starts_with("Authorization:") {
                authorization.as_str()
            } else {
                l
            }
        })
        .collect();
    let typed = format!(
        "{}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        head.join("\r\n"),
        body.len()
    );
    std::fs::write(r.path("typed-text.sip"), typed).unwrap();
    let (code, resp, err) = r.registrar("typed-text.sip", T0, &[]);
    let t = String::from_utf8_lossy(&resp).into_owned();
    assert!(t.starts_with("SIP/2.0 415"), "{t}");
    assert_eq!(
        header(&t, "Accept"),
        ["application/pkcs10, application/pkix-cert"]
    );
    assert!(err.contains("a text/plain body"), "{err}");
    assert_ne!(code, 0);
}

#[test]
fn a_csr_sealed_for_the_registrar_is_opened_and_one_for_another_is_refused() {
    let r = Realm::new();
    // Sealed to the registrar's certificate: issued.
    let req = r.authorized(
        "sealed",
        T0,
        "pw",
        &["--identity", "alice", "--seal-for", "reg/cert.pem"],
    );
    let sealed = std::fs::read(&req).unwrap();
    let marker = b"Content-Type: application/pkcs7-mime";
    assert!(sealed.windows(marker.len()).any(|w| w == marker));
    let (code, ok, err) = r.registrar(s(&req), T0, &[]);
    assert_eq!((code, status(&ok).as_str()), (0, "SIP/2.0 200 OK"), "{err}");
    assert!(err.contains("issued"), "{err}");
    // Sealed to someone else: 400, nothing issued.
    let bob = common::repo().join("keys/bob/cert.pem");
    let req = r.authorized(
        "other",
        T0,
        "pw",
        &["--identity", "alice", "--seal-for", s(&bob)],
    );
    let (code, resp, err) = r.registrar(s(&req), T0, &[]);
    assert_eq!(
        (code, status(&resp).as_str()),
        (5, "SIP/2.0 400 Bad Request"),
        "{err}"
    );
    assert!(err.contains("does not open for the registrar"), "{err}");
}

/// Golden messages in deterministic mode (reviewed): the REGISTER with
/// alice's CSR, the 401, the authorized REGISTER, the signed 200 with her
/// certificate, a certificate query, and its 200 and 404.
#[test]
fn registrar_messages_golden() {
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
    run(
        "02",
        &[
            "keys",
            "generate",
            "--uri",
            "sip:registrar.example.com",
            "--ca",
            "ca",
            "--out",
            "reg",
        ],
    );
    run(
        "03",
        &[
            "keys", "generate", "--type", "p256", "--uri", AOR, "--csr", "--out", "alice",
        ],
    );
    std::fs::write(d.join("pw"), "alice-pw\n").unwrap();
    run(
        "04",
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
                input,
            ],
        )
    };
    let save = |name: &str, bytes: &[u8]| std::fs::write(d.join(name), bytes).unwrap();
    let register = run(
        "05",
        &[
            "register",
            "--uri",
            AOR,
            "--contact",
            CONTACT,
            "--identity",
            "alice",
        ],
    );
    save("r1.sip", &register);
    let challenge = registrar("06", "r1.sip");
    save("401.sip", &challenge);
    let authorized = run(
        "07",
        &[
            "register",
            "--uri",
            AOR,
            "--contact",
            CONTACT,
            "--identity",
            "alice",
            "--challenge",
            "401.sip",
            "--password-file",
            "pw",
        ],
    );
    save("r2.sip", &authorized);
    let ok = registrar("08", "r2.sip");
    let query = run(
        "09",
        &["certquery", "--uri", AOR, "--from", "sip:bob@example.org"],
    );
    save("q.sip", &query);
    let found = registrar("0a", "q.sip");
    let unknown = run(
        "0b",
        &[
            "certquery",
            "--uri",
            "sip:nobody@example.com",
            "--from",
            "sip:bob@example.org",
        ],
    );
    save("q404.sip", &unknown);
    let not_found = registrar("0c", "q404.sip");
    // Issue 28 item 4: the REGISTER sealed under alice's PSK, and the
    // 200 sealed back (for her new key and under the PSK), then signed.
    run(
        "0d",
        &[
            "keys",
            "psk",
            "--id",
            "alice-reg",
            "--uri",
            AOR,
            "--output",
            "alice.psk",
        ],
    );
    let sealed_args = [
        "register",
        "--uri",
        AOR,
        "--contact",
        CONTACT,
        "--identity",
        "alice",
        "--seal-for",
        "psk:alice.psk",
    ];
    save("s1.sip", &run("0e", &sealed_args));
    save("s401.sip", &registrar("0f", "s1.sip"));
    let mut authorized_args = sealed_args.to_vec();
    authorized_args.extend(["--challenge", "s401.sip", "--password-file", "pw"]);
    let sealed = run("10", &authorized_args);
    save("s2.sip", &sealed);
    let sealed_ok = run(
        "11",
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
            "--psk",
            "alice.psk",
            "s2.sip",
        ],
    );
    common::golden("registrar-register-sealed-psk.sip", &sealed);
    common::golden("registrar-200-sealed-psk.sip", &sealed_ok);
    assert!(sealed_ok.starts_with(b"SIP/2.0 200 OK"));
    common::golden("registrar-register.sip", &register);
    common::golden("registrar-401.sip", &challenge);
    common::golden("registrar-register-authorized.sip", &authorized);
    common::golden("registrar-200.sip", &ok);
    common::golden("registrar-options.sip", &query);
    common::golden("registrar-options-200.sip", &found);
    common::golden("registrar-options-404.sip", &not_found);
    assert!(ok.starts_with(b"SIP/2.0 200 OK"));
    assert!(found.starts_with(b"SIP/2.0 200 OK"));
    assert!(not_found.starts_with(b"SIP/2.0 404 Not Found"));
}

#[test]
fn a_refresh_reissues_and_a_given_certificate_is_stored_as_it_is() {
    let r = Realm::new();
    let req = r.authorized("reg", T0, "pw", &["--identity", "alice"]);
    let (code, ok, _) = r.registrar(s(&req), T0, &[]);
    assert_eq!(code, 0);
    std::fs::write(r.path("200.sip"), &ok).unwrap();
    sipseal()
        .current_dir(&r.d)
        .args([
            "register",
            "--accept",
            "200.sip",
            "--identity",
            "alice",
            "--trust",
            "ca/cert.pem",
        ])
        .succeeds();
    std::fs::copy(r.path("alice/cert.pem"), r.path("first.pem")).unwrap();
    // Half an hour later, a refresh without a body: the binding extended
    // and the certificate issued again, same key, until the new expiry.
    let later = "2026-03-01T12:30:00Z";
    let req = r.authorized("refresh", later, "pw", &[]);
    let (code, ok, err) = r.registrar(s(&req), later, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("issued"), "{err}");
    std::fs::write(r.path("refresh-200.sip"), &ok).unwrap();
    sipseal()
        .current_dir(&r.d)
        .args([
            "register",
            "--accept",
            "refresh-200.sip",
            "--identity",
            "alice",
            "--trust",
            "ca/cert.pem",
        ])
        .succeeds();
    let show = |file: &str| {
        text(
            &common::openssl()
                .current_dir(&r.d)
                .args([
                    "x509", "-in", file, "-noout", "-enddate", "-pubkey", "-serial",
                ])
                .succeeds(),
        )
    };
    let (first, second) = (show("first.pem"), show("alice/cert.pem"));
    assert!(
        first.contains("notAfter=Mar  1 13:00:00 2026 GMT"),
        "{first}"
    );
    assert!(
        second.contains("notAfter=Mar  1 13:30:00 2026 GMT"),
        "{second}"
    );
    let key = |t: &str| {
        t.split("-----BEGIN PUBLIC KEY-----")
            .nth(1)
            .and_then(|k| k.split("-----END PUBLIC KEY-----").next())
            .unwrap()
            .to_owned()
    };
    assert_eq!(key(&first), key(&second), "the same key");
    assert_ne!(first, second, "a new certificate");
    // bob registers a certificate he already has (issued by this CA): it
    // is stored as it is, and queries return it.
    let bob = "sip:bob@example.com";
    std::fs::write(r.path("bob-pw"), "bob-pw\n").unwrap();
    sipseal()
        .current_dir(&r.d)
        .args([
            "registrar",
            "passwd",
            "--users",
            "users.yaml",
            "--realm",
            "example.com",
        ])
        .args(["--user", bob, "--password-file", "bob-pw"])
        .succeeds();
    sipseal()
        .current_dir(&r.d)
        .args([
            "keys", "generate", "--type", "p256", "--uri", bob, "--ca", "ca", "--out", "bob",
        ])
        .args(["--now", "2026-02-01T00:00:00Z"])
        .succeeds();
    let register_bob = |name: &str, cert: &str| {
        let first = sipseal()
            .current_dir(&r.d)
            .args([
                "register",
                "--uri",
                bob,
                "--contact",
                "sip:bob@192.0.2.20",
                "--cert",
                cert,
            ])
            .succeeds()
            .stdout;
        std::fs::write(r.path(&format!("{name}-1.sip")), first).unwrap();
        let (_, c, _) = r.registrar(&format!("{name}-1.sip"), T0, &[]);
        std::fs::write(r.path(&format!("{name}-401.sip")), c).unwrap();
        let second = sipseal()
            .current_dir(&r.d)
            .args([
                "register",
                "--uri",
                bob,
                "--contact",
                "sip:bob@192.0.2.20",
                "--cert",
                cert,
            ])
            .args([
                "--challenge",
                &format!("{name}-401.sip"),
                "--password-file",
                "bob-pw",
            ])
            .succeeds()
            .stdout;
        std::fs::write(r.path(&format!("{name}-2.sip")), second).unwrap();
        r.registrar(&format!("{name}-2.sip"), T0, &[])
    };
    let (code, resp, err) = register_bob("bobcert", "bob/cert.pem");
    assert_eq!(
        (code, status(&resp).as_str()),
        (0, "SIP/2.0 200 OK"),
        "{err}"
    );
    let (code, _) = r.query("qb", bob, T0, &[]);
    assert_eq!(code, 0);
    sipseal()
        .current_dir(&r.d)
        .args([
            "certquery",
            "--accept",
            "qb-answer.sip",
            "--trust",
            "ca/cert.pem",
            "--out",
            "fetched",
        ])
        .args(["--now", T0])
        .succeeds();
    // What the registrar hands out is bob's certificate itself: the same
    // bytes, its notAfter unchanged.
    let fetched = std::fs::read_to_string(r.path("fetched/bob@example.com.pem")).unwrap();
    let own = std::fs::read_to_string(r.path("bob/cert.pem")).unwrap();
    assert!(own.starts_with(&fetched), "{fetched}");
    // A certificate from another CA (the demo's) for bob's AOR: 403.
    let (_, resp, err) = register_bob("democert", s(&common::repo().join("keys/bob/cert.pem")));
    assert_eq!(status(&resp), "SIP/2.0 403 Forbidden", "{err}");
}

#[test]
fn the_connectivity_policy_makes_a_query_404() {
    let r = Realm::new();
    let req = r.authorized("reg", T0, "pw", &["--identity", "alice"]);
    assert_eq!(r.registrar(s(&req), T0, &[]).0, 0);
    std::fs::write(
        r.path("policy.yaml"),
        "allow:\n  - from: \"sip:*@example.org\"\n    to: \"sip:*@example.com\"\n",
    )
    .unwrap();
    let ask = |from: &str, name: &str| {
        let q = sipseal()
            .current_dir(&r.d)
            .args(["certquery", "--uri", AOR, "--from", from])
            .succeeds()
            .stdout;
        std::fs::write(r.path(name), q).unwrap();
        r.registrar(name, T0, &["--policy", "policy.yaml"])
    };
    assert_eq!(ask("sip:bob@example.org", "allowed.sip").0, 0);
    let (code, resp, _) = ask("sip:mallory@evil.example", "denied.sip");
    assert_eq!((code, status(&resp).as_str()), (5, "SIP/2.0 404 Not Found"));
}

#[test]
fn a_non_ascii_authorization_is_a_400_not_a_crash() {
    // The fuzzing finding, end to end: the registrar answers, and lives.
    let r = Realm::new();
    let req = r.authorized("na", T0, "pw", &[]);
    let text = std::fs::read_to_string(&req).unwrap();
    let bad = text.replacen("username=", "usernameХ=", 1);
    std::fs::write(r.path("na-bad.sip"), bad).unwrap();
    let (code, resp, err) = r.registrar("na-bad.sip", T0, &[]);
    assert_eq!(
        (code, status(&resp).as_str()),
        (5, "SIP/2.0 400 Bad Request"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Headers of a REGISTER (a file in the realm) rewritten: Digest with
/// qop=auth covers the method and URI, not these.
fn edit(r: &Realm, name: &str, from: &str, to: &str) {
    let path = r.path(name);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn digest_algorithms_set_the_challenges_and_their_order() {
    let r = Realm::new();
    r.register("first.sip", &[]);
    let challenges = |extra: &[&str]| -> Vec<String> {
        let (code, resp, err) = r.registrar("first.sip", T0, extra);
        assert_eq!(code, 5, "{err}");
        let text = String::from_utf8_lossy(&resp).into_owned();
        header(&text, "WWW-Authenticate")
            .iter()
            .map(|c| {
                c.split("algorithm=")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(challenges(&[]), ["SHA-512-256", "SHA-256"]);
    // libre (baresip) and SIPp answer only the first challenge: MD5 first.
    assert_eq!(
        challenges(&["--digest-algorithms", "md5,sha-256"]),
        ["MD5", "SHA-256"]
    );
    assert_eq!(
        challenges(&["--allow-md5"]),
        ["SHA-512-256", "SHA-256", "MD5"]
    );
    let (code, _, err) = r.registrar("first.sip", T0, &["--digest-algorithms", "sha-1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sha-512-256, sha-256 or md5"), "{err}");
}

#[test]
fn a_register_to_the_registrars_own_address_is_for_its_realm() {
    let r = Realm::new();
    r.register("first.sip", &[]);
    edit(
        &r,
        "first.sip",
        "REGISTER sip:example.com ",
        "REGISTER sip:127.0.0.1:5060 ",
    );
    let (code, resp, _) = r.registrar("first.sip", T0, &[]);
    assert_eq!(code, 5);
    assert_eq!(status(&resp), "SIP/2.0 404 Not Found", "not its address");
    let (code, resp, _) = r.registrar("first.sip", T0, &["--alias", "127.0.0.1:5060"]);
    assert_eq!(code, 5);
    assert_eq!(status(&resp), "SIP/2.0 401 Unauthorized", "its own address");
}

#[test]
fn an_options_without_a_certificate_asked_for_is_a_keepalive() {
    let r = Realm::new();
    let ping = sipseal()
        .args(["build", "options", "--from", "sip:ping@example.com"])
        .args([
            "--to",
            "sip:example.com",
            "--request-uri",
            "sip:example.com",
        ])
        .succeeds()
        .stdout;
    std::fs::write(r.path("ping.sip"), ping).unwrap();
    let (code, resp, err) = r.registrar("ping.sip", T0, &[]);
    assert_eq!(code, 0, "{err}");
    let text = String::from_utf8_lossy(&resp).into_owned();
    assert_eq!(status(&resp), "SIP/2.0 200 OK");
    assert_eq!(header(&text, "Allow"), ["REGISTER, OPTIONS, PUBLISH"]);
}

#[test]
fn an_outbound_instance_and_the_path_are_kept_and_echoed() {
    let r = Realm::new();
    let second = r.authorized("ob", T0, "pw", &[]);
    let name = second.file_name().unwrap().to_str().unwrap().to_owned();
    edit(
        &r,
        &name,
        &format!("Contact: <{CONTACT}>"),
        &format!(
            "Path: <sip:flow1@127.0.0.1:5070;transport=tcp;lr;ob>\r\nSupported: path, outbound\r\nContact: <{CONTACT}>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\";reg-id=1"
        ),
    );
    let (code, ok, err) = r.registrar(&name, T0, &[]);
    assert_eq!(code, 0, "{err}");
    let text = String::from_utf8_lossy(&ok).into_owned();
    assert_eq!(
        header(&text, "Contact"),
        [format!(
            "<{CONTACT}>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\";reg-id=1"
        )]
    );
    assert_eq!(
        header(&text, "Path"),
        ["<sip:flow1@127.0.0.1:5070;transport=tcp;lr;ob>"]
    );
    assert_eq!(header(&text, "Require"), ["outbound"]);
    // The binding keeps them, for the relays' location service.
    let files = glob::glob(&format!("{}/state/**/aors/*.yaml", r.d.display()))
        .unwrap()
        .filter_map(Result::ok)
        .collect::<Vec<_>>();
    let stored = std::fs::read_to_string(&files[0]).unwrap();
    assert!(stored.contains("flow1@127.0.0.1:5070"), "{stored}");
    assert!(stored.contains("reg_id: 1"), "{stored}");
}

/// L1 (issue 25): the Authorization `uri` was never compared with the
/// Request-URI, `nc=0` passed, and with `qop=auth` the body was not
/// covered, so a captured Authorization could carry another CSR. Now:
/// 400 for another uri or nc=0, a REGISTER with a body is challenged for
/// auth-int, a substituted CSR fails the digest, and the subject of the
/// certificate is the AOR's whatever the CSR says.
#[test]
fn digest_covers_the_request_uri_the_count_and_the_body() {
    let r = Realm::new();
    let ok = r.authorized("ok", T0, "pw", &["--csr", "alice/csr.pem"]);
    let text = std::fs::read_to_string(r.path("ok-401.sip")).unwrap();
    assert!(text.contains("qop=\"auth-int,auth\""), "{text}");
    let sent = std::fs::read(&ok).unwrap();
    let auth = String::from_utf8_lossy(&sent)
        .lines()
        .find(|l| l.starts_with("Authorization:"))
        .unwrap()
        .to_owned();
    assert!(auth.contains("qop=auth-int"), "{auth}");
    let edited = |name: &str, from: &str, to: &str| {
        let bytes = std::fs::read(&ok).unwrap();
        let at = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(bytes[..at].to_vec()).unwrap();
        assert!(head.contains(from), "{from}");
        let mut out = head.replacen(from, to, 1).into_bytes();
        out.extend_from_slice(&bytes[at..]);
        std::fs::write(r.path(name), out).unwrap();
        name.to_owned()
    };
    let evil = edited(
        "evil.sip",
        "uri=\"sip:example.com\"",
        "uri=\"sip:evil.example.org\"",
    );
    let (code, resp, _) = r.registrar(&evil, T0, &[]);
    assert_eq!(
        (code, status(&resp).as_str()),
        (5, "SIP/2.0 400 Bad Request")
    );
    let zero = edited("zero.sip", "nc=00000001", "nc=00000000");
    let (_, resp, _) = r.registrar(&zero, T0, &[]);
    assert_eq!(status(&resp), "SIP/2.0 400 Bad Request");
    // Another CSR under the same Authorization: the digest fails.
    sipseal()
        .current_dir(&r.d)
        .args(["keys", "generate", "--type", "p256", "--uri", AOR])
        .args(["--csr", "--out", "mallory"])
        .succeeds();
    let other = std::fs::read(r.path("mallory/csr.pem")).unwrap();
    let swapped = {
        let bytes = std::fs::read(&ok).unwrap();
        let at = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let der = pem_or_der(&other);
        let head = String::from_utf8(bytes[..at].to_vec()).unwrap();
        let head: String = head
            .lines()
            .map(|l| {
                if l.starts_with("Content-Length:") {
                    format!("Content-Length: {}", der.len())
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&der);
        out
    };
    std::fs::write(r.path("swapped.sip"), swapped).unwrap();
    let (_, resp, _) = r.registrar("swapped.sip", T0, &[]);
    assert_eq!(status(&resp), "SIP/2.0 403 Forbidden");
    // The genuine one registers.
    let (code, resp, _) = r.registrar(s(&ok), T0, &[]);
    assert_eq!((code, status(&resp).as_str()), (0, "SIP/2.0 200 OK"));
}

/// The DER of a PEM file (or the bytes as they are).
fn pem_or_der(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    match der::pem::decode_vec(text.trim().as_bytes()) {
        Ok((_, der)) => der,
        Err(_) => bytes.to_vec(),
    }
}

/// A PSK file for `aor` named `id` in the realm's directory, written by
/// `keys psk`; returns its key as hex.
fn psk_for(r: &Realm, file: &str, id: &str, aor: &str) -> String {
    sipseal()
        .current_dir(&r.d)
        .args(["keys", "psk", "--id", id, "--uri", aor, "--output", file])
        .succeeds();
    let text = std::fs::read_to_string(r.path(file)).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap()
        .trim()
        .to_owned()
}

/// The body of a SIP message as it travels.
fn body_of(msg: &[u8]) -> Vec<u8> {
    let at = msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    msg[at + 4..].to_vec()
}

/// `openssl cms -decrypt` of the DER envelope `der` with `args`.
fn openssl_open(r: &Realm, der: &[u8], args: &[&str]) -> std::process::Output {
    let path = r.path("envelope.der");
    std::fs::write(&path, der).unwrap();
    common::openssl()
        .current_dir(&r.d)
        .args(["cms", "-decrypt", "-binary", "-inform", "DER", "-in"])
        .arg(&path)
        .args(args)
        .output()
        .unwrap()
}

/// The envelope a registrar's signed 200 OK carries (the signed payload).
fn sealed_payload(ok: &[u8]) -> sipseal::mime::Part {
    let msg = sipseal::sip::Message::parse(ok).unwrap();
    sipseal::signing::outer_signature(&msg)
        .unwrap()
        .expect("the 200 is signed")
        .payload
}

/// The HA1 an independent computation gives (openssl's SHA-512/256 of
/// `alice:example.com:alice-pw`): the password a sealed registration
/// of alice is sealed under.
fn openssl_ha1() -> String {
    let mut child = common::openssl()
        .args(["dgst", "-sha512-256", "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"alice:example.com:alice-pw")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let ha1 = String::from_utf8(out.stdout).unwrap();
    let ha1 = ha1.split_whitespace().next().unwrap().to_owned();
    assert_eq!(ha1.len(), 64);
    ha1
}

/// Issue 30 (the edge adds a CSR to a phone's REGISTER; the phone's
/// Digest covers only its own, empty, body, so it answers `qop=auth`): a
/// CSR sealed under a PSK of the AOR, or under its password, is
/// authenticated by that key as auth-int would have covered it, and is
/// taken under `qop=auth`; a CSR in clear, or sealed only for the
/// registrar's certificate (which anyone can seal for), still is not:
/// challenged again for auth-int.
#[test]
fn a_csr_sealed_under_the_aors_own_key_needs_no_auth_int() {
    let r = Realm::new();
    psk_for(&r, "alice.psk", "alice-reg", AOR);
    for (name, seal_for, taken) in [
        ("psk", Some("psk:alice.psk"), true),
        ("password", Some("password:pw"), true),
        ("registrar", Some("reg/cert.pem"), false),
        ("clear", None, false),
    ] {
        let mut extra = vec!["--identity", "alice"];
        if let Some(to) = seal_for {
            extra.extend(["--seal-for", to]);
        }
        r.register(&format!("{name}-1.sip"), &extra);
        let (code, resp, _) = r.registrar(&format!("{name}-1.sip"), T0, &["--psk", "alice.psk"]);
        assert_eq!(code, 5, "{name}");
        let challenge = String::from_utf8(resp).unwrap();
        assert!(
            challenge.contains("qop=\"auth-int,auth\""),
            "{name}: {challenge}"
        );
        // What the phone behind an edge is offered, and answers.
        let offered = challenge.replace("qop=\"auth-int,auth\"", "qop=\"auth\"");
        std::fs::write(r.path(&format!("{name}-401.sip")), offered).unwrap();
        let mut args = vec![
            "--challenge".to_owned(),
            format!("{name}-401.sip"),
            "--password-file".to_owned(),
            "pw".to_owned(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        r.register(&format!("{name}-2.sip"), &args);
        let sent = std::fs::read(r.path(&format!("{name}-2.sip"))).unwrap();
        let auth = String::from_utf8_lossy(&sent)
            .lines()
            .find(|l| l.starts_with("Authorization:"))
            .unwrap()
            .to_owned();
        assert!(
            auth.contains("qop=auth") && !auth.contains("auth-int"),
            "{name}: {auth}"
        );
        let (code, ok, err) = r.registrar(&format!("{name}-2.sip"), T0, &["--psk", "alice.psk"]);
        if taken {
            assert_eq!(
                (code, status(&ok).as_str()),
                (0, "SIP/2.0 200 OK"),
                "{name}: {err}"
            );
        } else {
            assert_eq!(
                (code, status(&ok).as_str()),
                (5, "SIP/2.0 401 Unauthorized"),
                "{name}: {err}"
            );
            let again = String::from_utf8_lossy(&ok).into_owned();
            assert!(again.contains("qop=\"auth-int,auth\""), "{name}: {again}");
        }
    }
}

/// Issue 28 item 4: a registration sealed under a PSK (KEKRecipientInfo)
/// and one under the password (PasswordRecipientInfo over the HA1), each
/// opened by OpenSSL too; the 200 sealed back for the new certificate's
/// key and under the same PSK or password, signed, opened by `register
/// --accept`, which installs the certificate.
#[test]
fn a_registration_sealed_with_a_psk_or_a_password_is_answered_sealed_and_accepted() {
    let r = Realm::new();
    let key = psk_for(&r, "alice.psk", "alice-reg", AOR);
    let ha1 = openssl_ha1();
    let kekid = "616c6963652d726567"; // "alice-reg"
    for (name, seal_for, openssl_args, recipient) in [
        (
            "psk",
            "psk:alice.psk",
            vec!["-secretkey", key.as_str(), "-secretkeyid", kekid],
            "kekri v4 kekid alice-reg",
        ),
        (
            "password",
            "password:pw",
            vec!["-pwri_password", ha1.as_str()],
            "pwri v0 PBKDF2",
        ),
    ] {
        let extra = ["--identity", "alice", "--seal-for", seal_for];
        let req = r.authorized(name, T0, "pw", &extra);
        let sent = std::fs::read(&req).unwrap();
        let head = String::from_utf8_lossy(&sent[..sent.len() - body_of(&sent).len()]).into_owned();
        assert!(
            head.contains("Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data"),
            "{name}: {head}"
        );
        // OpenSSL opens the REGISTER's body with the PSK, or the HA1.
        let out = openssl_open(&r, &body_of(&sent), &openssl_args);
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert!(
            out.stdout
                .starts_with(b"Content-Type: application/pkcs10\r\n\r\n"),
            "{name}"
        );
        let (code, ok, err) = r.registrar(s(&req), T0, &["--psk", "alice.psk"]);
        assert_eq!(
            (code, status(&ok).as_str()),
            (0, "SIP/2.0 200 OK"),
            "{name}: {err}"
        );
        // Replayed (and the PSK gone): challenged afresh, before the
        // body is opened at all.
        assert!(err.contains("issued"), "{err}");
        let (code, again, replayed) = r.registrar(s(&req), T0, &[]);
        assert_eq!(
            (code, status(&again).as_str()),
            (5, "SIP/2.0 401 Unauthorized"),
            "{name}: {replayed}"
        );
        assert!(!replayed.contains("does not open"), "{replayed}");
        std::fs::write(r.path(&format!("{name}-200.sip")), &ok).unwrap();
        // Sealed, then signed: no certificate in clear.
        let shown = String::from_utf8_lossy(&ok).into_owned();
        assert!(!shown.contains("smime-type=certs-only"), "{name}: {shown}");
        let payload = sealed_payload(&ok);
        assert_eq!(
            payload.header("Content-Type"),
            Some("application/pkcs7-mime; smime-type=authEnveloped-data; name=smime.p7m")
        );
        let inspected = text(
            &sipseal()
                .current_dir(&r.d)
                .args(["inspect", &format!("{name}-200.sip")])
                .succeeds(),
        );
        assert!(inspected.contains("kari v3 rid ski:"), "{inspected}");
        assert!(inspected.contains(recipient), "{name}: {inspected}");
        // The same PSK or password opens the 200 in OpenSSL, to the
        // certs-only entity; and so does the new certificate's key.
        for args in [openssl_args.clone(), vec!["-inkey", "alice/key.pem"]] {
            let out = openssl_open(&r, &payload.body, &args);
            assert!(out.status.success(), "{name} {args:?}: {}", text(&out));
            let entity = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                entity.contains("\r\nContent-Type: application/pkcs7-mime; smime-type=certs-only"),
                "{name}: {entity}"
            );
        }
        let _ = std::fs::remove_file(r.path("alice/cert.pem"));
        let out = sipseal()
            .current_dir(&r.d)
            .args(["register", "--accept", &format!("{name}-200.sip")])
            .args(["--identity", "alice", "--trust", "ca/cert.pem"])
            .args(["--seal-for", seal_for])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        let installed = sipseal::keys::Cert::load(&r.path("alice/cert.pem")).unwrap();
        assert_eq!(installed.uri().as_deref(), Some(AOR));
    }
    // The PSK alone opens the 200 (an identity whose key is not the
    // certificate's): what the registrant holds either way.
    sipseal()
        .current_dir(&r.d)
        .args([
            "keys", "generate", "--type", "p256", "--uri", AOR, "--csr", "--out", "other",
        ])
        .succeeds();
    let out = sipseal()
        .current_dir(&r.d)
        .args(["register", "--accept", "psk-200.sip", "--identity", "other"])
        .args(["--trust", "ca/cert.pem", "--seal-for", "psk:alice.psk"])
        .output()
        .unwrap();
    // Opened, then refused: the certificate is not for that key.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no certificate in the 200 OK is for this identity's key"),
        "{}",
        text(&out)
    );
    let out = sipseal()
        .current_dir(&r.d)
        .args(["register", "--accept", "psk-200.sip", "--identity", "other"])
        .args(["--trust", "ca/cert.pem"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "neither key opens it");
    assert!(
        !text(&out).contains("no certificate in the 200 OK"),
        "{}",
        text(&out)
    );
}

/// A REGISTER sealed for the registrar's certificate gets its 200
/// sealed for the certificate it issues (and nothing else); an unsealed
/// REGISTER keeps the signed, unsealed 200; `--accept` told the REGISTER
/// was sealed refuses an unsealed 200.
#[test]
fn the_200_is_sealed_exactly_when_the_register_was() {
    let r = Realm::new();
    let req = r.authorized(
        "cert",
        T0,
        "pw",
        &["--identity", "alice", "--seal-for", "reg/cert.pem"],
    );
    let (code, ok, err) = r.registrar(s(&req), T0, &[]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(r.path("cert-200.sip"), &ok).unwrap();
    let inspected = text(
        &sipseal()
            .current_dir(&r.d)
            .args(["inspect", "cert-200.sip"])
            .succeeds(),
    );
    assert_eq!(inspected.matches("recipient #").count(), 1, "{inspected}");
    assert!(inspected.contains("kari v3 rid ski:"), "{inspected}");
    let accept = |file: &str, extra: &[&str]| {
        let _ = std::fs::remove_file(r.path("alice/cert.pem"));
        sipseal()
            .current_dir(&r.d)
            .args(["register", "--accept", file, "--identity", "alice"])
            .args(["--trust", "ca/cert.pem"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = accept("cert-200.sip", &["--seal-for", "reg/cert.pem"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Unsealed REGISTER: the 200 carries the certificate in clear, signed.
    let req = r.authorized("plain", T0, "pw", &["--identity", "alice"]);
    let (code, ok, _) = r.registrar(s(&req), T0, &[]);
    assert_eq!(code, 0);
    assert!(String::from_utf8_lossy(&ok).contains("smime-type=certs-only"));
    std::fs::write(r.path("plain-200.sip"), &ok).unwrap();
    assert_eq!(accept("plain-200.sip", &[]).status.code(), Some(0));
    psk_for(&r, "alice.psk", "alice-reg", AOR);
    let out = accept("plain-200.sip", &["--seal-for", "psk:alice.psk"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("the 200 OK is not sealed, though the REGISTER was"),
        "{}",
        text(&out)
    );
}

/// Item 4's refusals: a wrong PSK, a wrong password and a certificate
/// not the registrar's all get the one uniform 400 (the reason for the
/// operator only); a PSK that belongs to another AOR gets the 403 of a
/// wrong Digest password; nothing is issued for any of them. A
/// registrar PSK that names no AOR is refused at start.
#[test]
fn wrong_keys_are_refused_uniformly_and_another_users_psk_like_a_wrong_password() {
    let r = Realm::new();
    psk_for(&r, "alice.psk", "alice-reg", AOR);
    psk_for(&r, "bob.psk", "bob-reg", "sip:bob@example.com");
    // Alice's id, another key: what a guessed or stale PSK looks like.
    let forged = std::fs::read_to_string(r.path("alice.psk")).unwrap();
    let other_key = psk_for(&r, "scratch.psk", "scratch", AOR);
    let forged: String = forged
        .lines()
        .map(|l| {
            if l.starts_with("key: ") {
                format!("key: {other_key}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(r.path("forged.psk"), forged).unwrap();
    // A directory of PSK files: only its *.yaml files are read.
    std::fs::create_dir_all(r.path("psks")).unwrap();
    std::fs::write(r.path("psks/README"), "not a PSK file\n").unwrap();
    for f in ["alice.psk", "bob.psk"] {
        std::fs::copy(r.path(f), r.path(&format!("psks/{f}.yaml"))).unwrap();
    }
    let bob = common::repo().join("keys/bob/cert.pem");
    let mut answers = Vec::new();
    for (name, seal_for, why) in [
        (
            "wrongpsk",
            "psk:forged.psk".to_owned(),
            "does not open for the registrar",
        ),
        (
            "wrongpw",
            "password:wrong".to_owned(),
            "does not open for the registrar",
        ),
        (
            "notmine",
            s(&bob).to_owned(),
            "does not open for the registrar",
        ),
    ] {
        let req = r.authorized(
            name,
            T0,
            "pw",
            &["--identity", "alice", "--seal-for", &seal_for],
        );
        let (code, resp, err) = r.registrar(s(&req), T0, &["--psk", "psks"]);
        assert_eq!(
            (code, status(&resp).as_str()),
            (5, "SIP/2.0 400 Bad Request"),
            "{name}: {err}"
        );
        assert!(err.contains(why), "{name}: {err}");
        answers.push(resp);
    }
    // One answer: the same header names and no body, whatever failed.
    let names = |resp: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(resp)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_owned()))
            .collect()
    };
    assert!(
        answers.iter().all(|a| names(a) == names(&answers[0])),
        "{answers:?}"
    );
    assert!(answers.iter().all(|a| body_of(a).is_empty()));
    // Bob's PSK, alice authenticated: 403, as her wrong password is.
    let req = r.authorized(
        "bobs",
        T0,
        "pw",
        &["--identity", "alice", "--seal-for", "psk:bob.psk"],
    );
    let (code, theirs, err) = r.registrar(s(&req), T0, &["--psk", "psks"]);
    assert_eq!(
        (code, status(&theirs).as_str()),
        (5, "SIP/2.0 403 Forbidden"),
        "{err}"
    );
    assert!(
        err.contains("bob-reg, which is not sip:alice@example.com's"),
        "{err}"
    );
    let req = r.authorized("badpw", T0, "wrong", &["--identity", "alice"]);
    let (_, wrong_password, _) = r.registrar(s(&req), T0, &["--psk", "psks"]);
    assert_eq!(status(&theirs), status(&wrong_password));
    assert_eq!(names(&theirs), names(&wrong_password));
    // Nothing was issued for any of them.
    let registry = r.path("state");
    let issued = walk(&registry)
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .any(|t| t.contains("BEGIN CERTIFICATE"));
    assert!(!issued, "a refused registration stored a certificate");
    // A registrar PSK must name the AOR it belongs to.
    std::fs::write(r.path("anon.psk"), format!("id: anon\nkey: {other_key}\n")).unwrap();
    let (code, _, err) = r.registrar("wrongpsk-2.sip", T0, &["--psk", "anon.psk"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("names no `uri`"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    // Nor may two share an id: which would open is not for order to say.
    let (code, _, err) = r.registrar(
        "wrongpsk-2.sip",
        T0,
        &["--psk", "psks", "--psk", "alice.psk"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("two PSKs with the id alice-reg"), "{err}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A sealed body that is no envelope (cut short, or garbage), with
/// Digest right over it (auth-int computed by Python's hashlib): the
/// uniform 400, no panic, nothing issued.
#[test]
fn a_broken_sealed_body_with_good_credentials_is_the_uniform_400() {
    let r = Realm::new();
    psk_for(&r, "alice.psk", "alice-reg", AOR);
    let extra = ["--identity", "alice", "--seal-for", "psk:alice.psk"];
    r.register("b1.sip", &extra);
    let (_, challenge, _) = r.registrar("b1.sip", T0, &[]);
    let t = String::from_utf8_lossy(&challenge).into_owned();
    let nonce = t
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let request = std::fs::read(r.path("b1.sip")).unwrap();
    let sealed = body_of(&request);
    let head = String::from_utf8_lossy(&request[..request.len() - sealed.len()]).into_owned();
    for (n, body) in [
        sealed[..sealed.len() / 2].to_vec(),
        b"\x30\x82\xff\xff not a ContentInfo".to_vec(),
        vec![0u8; 3],
    ]
    .into_iter()
    .enumerate()
    {
        let body_file = r.path("body.bin");
        std::fs::write(&body_file, &body).unwrap();
        let nc = format!("{:08x}", n + 1);
        let script = format!(
            "import hashlib\n\
             h=lambda b: hashlib.sha256(b).hexdigest()\n\
             ha1=h(b'alice:example.com:alice-pw')\n\
             ha2=h(('REGISTER:sip:example.com:'+h(open('{}','rb').read())).encode())\n\
             print(h((ha1+':{nonce}:{nc}:0123abcd:auth-int:'+ha2).encode()))\n",
            body_file.display()
        );
        let out = std::process::Command::new("python3")
            .args(["-c", &script])
            .succeeds();
        let response = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let auth = format!(
            "Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"sip:example.com\", response=\"{response}\", algorithm=SHA-256, cnonce=\"0123abcd\", qop=auth-int, nc={nc}\r\n"
        );
        let head = head
            .replacen("Contact:", &format!("{auth}Contact:"), 1)
            .replace(
                &format!("Content-Length: {}\r\n", sealed.len()),
                &format!("Content-Length: {}\r\n", body.len()),
            );
        let mut msg = head.into_bytes();
        msg.extend_from_slice(&body);
        let name = format!("broken{n}.sip");
        std::fs::write(r.path(&name), msg).unwrap();
        let (code, resp, err) = r.registrar(&name, T0, &["--psk", "alice.psk"]);
        assert_eq!(
            (code, status(&resp).as_str()),
            (5, "SIP/2.0 400 Bad Request"),
            "{n}: {err}"
        );
        assert!(
            err.contains("does not open for the registrar"),
            "{n}: {err}"
        );
    }
    let issued = walk(&r.path("state"))
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .any(|t| t.contains("BEGIN CERTIFICATE"));
    assert!(!issued);
}

/// Items 4 and 5 together: a registration sealed under a PSK through a
/// registrar whose CA is a `sipseal ca` over mutual TLS; the 200 sealed
/// back for the certificate the remote CA issued, opened by `register
/// --accept`.
#[test]
fn a_sealed_registration_through_a_remote_ca_is_answered_sealed() {
    use common::live::{Daemon, hosts};
    let r = Realm::new();
    // TLS identities valid now (rustls checks the clock), not at T0.
    for (uri, out) in [
        ("sip:ca.example.com", "ca-tls"),
        ("sip:registrar.example.com", "reg-tls"),
    ] {
        sipseal()
            .current_dir(&r.d)
            .args(["keys", "generate", "--uri", uri, "--ca", "ca", "--out", out])
            .succeeds();
    }
    psk_for(&r, "alice.psk", "alice-reg", AOR);
    let ca = Daemon::start(
        &r.d,
        "ca",
        &[
            "ca",
            "--listen",
            "tls:127.0.0.1:0",
            "--ca",
            s(&r.path("ca")),
            "--identity",
            s(&r.path("ca-tls")),
            "--trust",
            s(&r.path("ca/cert.pem")),
            "--allow",
            "registrar.example.com=example.com",
            "--now",
            T0,
        ],
    );
    let hosts = hosts(&r.d, &[("ca.example.com", ca.port("tls"))]);
    let at = format!("tls:ca.example.com:{}", ca.port("tls"));
    let req = r.authorized(
        "remote",
        T0,
        "pw",
        &["--identity", "alice", "--seal-for", "psk:alice.psk"],
    );
    // The registrar with the remote CA instead of its CA directory.
    let out = sipseal()
        .current_dir(&r.d)
        .args([
            "registrar",
            "--realm",
            "example.com",
            "--identity",
            "reg-tls",
        ])
        .args(["--users", "users.yaml", "--state", "state", "--now", T0])
        .args([
            "--ca",
            &at,
            "--ca-cert",
            "ca/cert.pem",
            "--trust",
            "ca/cert.pem",
        ])
        .args(["--hosts", s(&hosts), "--psk", "alice.psk"])
        .arg(&req)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        ca.log_text()
    );
    assert!(
        ca.logged("200 issued for sip:alice@example.com"),
        "{}",
        ca.log_text()
    );
    let ok = out.stdout;
    assert!(String::from_utf8_lossy(&ok).contains("smime-type=authEnveloped-data"));
    std::fs::write(r.path("remote-200.sip"), &ok).unwrap();
    let out = sipseal()
        .current_dir(&r.d)
        .args([
            "register",
            "--accept",
            "remote-200.sip",
            "--identity",
            "alice",
        ])
        .args(["--trust", "ca/cert.pem", "--seal-for", "psk:alice.psk"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(r.path("alice/cert.pem").is_file());
}
