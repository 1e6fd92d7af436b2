//! Revocation (issue 14 item 13): CRLs made by the real `openssl ca
//! -gencrl` from the demo CA, v1 (no version field, no extensions) and v2
//! (CRL number, reason codes); `verify --crl`, CRLs carried in a SignedData
//! by `sign --crl`, and `openssl cms -verify -crl_check` reading the CRLs
//! sipseal carries.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{ok, sipseal, text, write};
use sipseal::signing::outer_signature;
use sipseal::sip::Message;

/// Inside every CRL's validity (this update 2026-11-01, next 2026-12-01)
/// and after alice's revocation date (2026-11-10).
const NOW: &str = "2026-11-15T00:00:00Z";
/// The same instant for `openssl -attime`.
const NOW_UNIX: &str = "1794700800";
const TRUST: &str = "keys/trust.pem";
const ALICE_SERIAL: &str = "7CAF4CDFD5ADBBA53EEA1027FD20A3A7";
const CAROL_SERIAL: &str = "63187A95079B577DA599285D0BB7D7B3";

fn run(args: &[&str]) -> Output {
    sipseal()
        .args(["--seed", "0c41", "--now", NOW])
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A CRL from `openssl ca -gencrl`, signed with `key` under `cert`
/// (absolute or repository paths), listing `revoked` (serial, reason).
/// `v2` adds a CRL number (and with it version 2); reasons need v2.
struct CrlSpec<'a> {
    name: &'a str,
    cert: &'a str,
    key: &'a str,
    revoked: &'a [(&'a str, Option<&'a str>)],
    v2: bool,
    last: &'a str,
    next: &'a str,
}

const A_CERT: &str = "keys/ca/a.example.com/cert.pem";
const A_KEY: &str = "keys/ca/a.example.com/key.pem";

impl<'a> CrlSpec<'a> {
    fn new(name: &'a str, revoked: &'a [(&'a str, Option<&'a str>)], v2: bool) -> Self {
        CrlSpec {
            name,
            cert: A_CERT,
            key: A_KEY,
            revoked,
            v2,
            last: "20261101000000Z",
            next: "20261201000000Z",
        }
    }

    fn make(&self, dir: &Path) -> PathBuf {
        let ca = dir.join(format!("{}.ca", self.name));
        std::fs::create_dir_all(&ca).unwrap();
        let mut index = String::new();
        for (serial, reason) in self.revoked {
            let when = match reason {
                Some(r) => format!("261110000000Z,{r}"),
                None => "261110000000Z".into(),
            };
            index.push_str(&format!(
                "R\t450101000000Z\t{when}\t{serial}\tunknown\t/CN=x\n"
            ));
        }
        std::fs::write(ca.join("index.txt"), index).unwrap();
        let mut cnf = format!(
            "[ ca ]\ndefault_ca = demo\n[ demo ]\ndatabase = {}\ndefault_md = sha256\n",
            ca.join("index.txt").display()
        );
        if self.v2 {
            std::fs::write(ca.join("crlnumber"), "1000\n").unwrap();
            cnf.push_str(&format!("crlnumber = {}\n", ca.join("crlnumber").display()));
        }
        std::fs::write(ca.join("ca.cnf"), cnf).unwrap();
        let out = dir.join(format!("{}.pem", self.name));
        let made = common::openssl()
            .args(["ca", "-batch", "-config"])
            .arg(ca.join("ca.cnf"))
            .args(["-cert", self.cert, "-keyfile", self.key, "-gencrl"])
            .args(["-crl_lastupdate", self.last, "-crl_nextupdate", self.next])
            .arg("-out")
            .arg(&out)
            .output()
            .unwrap();
        ok(&made);
        out
    }
}

/// samples/invite.sip with alice's outer signature (carrying `crls`).
fn signed_by_alice(dir: &Path, name: &str, crls: &[&Path]) -> PathBuf {
    let mut args = vec!["sign", "samples/invite.sip", "--identity", "keys/alice"];
    for c in crls {
        args.extend(["--crl", s(c)]);
    }
    write(dir, name, &ok(&run(&args)))
}

fn verify(msg: &Path, crls: &[&Path]) -> Output {
    let mut args = vec!["verify", s(msg), "--trust", TRUST];
    for c in crls {
        args.extend(["--crl", s(c)]);
    }
    run(&args)
}

/// The report's `revocation` line (`pass ...` or `FAIL ...`).
fn revocation_line(out: &Output) -> String {
    let t = text(out);
    t.lines()
        .find(|l| l.contains("revocation:"))
        .unwrap_or_else(|| panic!("no revocation line in:\n{t}"))
        .trim()
        .to_owned()
}

fn revoked(out: &Output, why: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    let line = revocation_line(out);
    assert!(line.starts_with("FAIL revocation:"), "{line}");
    for w in why {
        assert!(line.contains(w), "{line:?} does not say {w:?}");
    }
    assert!(text(out).contains("NOT verified: 1 check(s) failed"));
}

#[test]
fn verify_crl_v1_and_v2_revoke_the_signer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let msg = signed_by_alice(d, "signed.sip", &[]);
    let v1 = CrlSpec::new("v1", &[(ALICE_SERIAL, None)], false).make(d);
    let v2 = CrlSpec::new("v2", &[(ALICE_SERIAL, Some("keyCompromise"))], true).make(d);
    let other = CrlSpec::new("carol", &[(CAROL_SERIAL, Some("superseded"))], true).make(d);

    // Without --crl and with no CRL carried, revocation is not checked.
    let plain = verify(&msg, &[]);
    assert!(plain.status.success(), "{}", text(&plain));
    assert!(!text(&plain).contains("revocation"), "{}", text(&plain));

    // A v1 CRL (no version field: x509-cert alone refuses it) revokes.
    revoked(
        &verify(&msg, &[&v1]),
        &[
            "sip:alice@a.example.com is revoked",
            "serial 7caf4cdfd5adbba53eea1027fd20a3a7",
            "revoked 2026-11-10T00:00:00Z",
        ],
    );
    // A v2 CRL, with the reason code.
    revoked(&verify(&msg, &[&v2]), &["(keyCompromise)", s(&v2)]);
    // A current CRL of the same CA that does not list alice: verified, and
    // the report says which CRL it was checked against.
    let out = verify(&msg, &[&other]);
    assert!(out.status.success(), "{}", text(&out));
    let line = revocation_line(&out);
    assert!(
        line.starts_with("pass revocation: sip:alice@a.example.com not revoked (v2 CRL of CN=sipseal demo CA a.example.com"),
        "{line}"
    );
    assert!(
        line.contains(
            "this update 2026-11-01T00:00:00Z, next update 2026-12-01T00:00:00Z, 1 revoked"
        ),
        "{line}"
    );
    // Both: the one listing alice wins whatever the order.
    revoked(&verify(&msg, &[&other, &v2]), &["(keyCompromise)"]);
    revoked(&verify(&msg, &[&v2, &other]), &["(keyCompromise)"]);
}

#[test]
fn a_crl_must_be_current_complete_and_signed_by_the_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let msg = signed_by_alice(d, "signed.sip", &[]);

    // A CRL of the other CA says nothing about alice's certificate.
    let b = CrlSpec {
        cert: "keys/ca/b.example.com/cert.pem",
        key: "keys/ca/b.example.com/key.pem",
        ..CrlSpec::new("b", &[], true)
    }
    .make(d);
    revoked(
        &verify(&msg, &[&b]),
        &[
            "no current CRL of CN=sipseal demo CA a.example.com",
            "to check sip:alice@a.example.com against",
            "none was given or carried",
        ],
    );

    // Expired (next update before NOW), and not yet valid.
    let expired = CrlSpec {
        last: "20261001000000Z",
        next: "20261101000000Z",
        ..CrlSpec::new("expired", &[], true)
    }
    .make(d);
    revoked(
        &verify(&msg, &[&expired]),
        &["it expired (next update 2026-11-01T00:00:00Z)"],
    );
    let early = CrlSpec {
        last: "20261120000000Z",
        next: "20261220000000Z",
        ..CrlSpec::new("early", &[], true)
    }
    .make(d);
    revoked(
        &verify(&msg, &[&early]),
        &["it is not valid yet (this update 2026-11-20T00:00:00Z)"],
    );

    // An impostor CA with CA a's name but its own key: its CRL (listing
    // nobody) cannot vouch for alice.
    let impostor_key = d.join("impostor.key");
    let impostor = d.join("impostor.pem");
    ok(&common::openssl()
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        ])
        .args([
            "-subj",
            "/C=ZZ/O=sipseal demo/CN=sipseal demo CA a.example.com",
        ])
        .arg("-keyout")
        .arg(&impostor_key)
        .arg("-out")
        .arg(&impostor)
        .output()
        .unwrap());
    let forged = CrlSpec {
        cert: s(&impostor),
        key: s(&impostor_key),
        ..CrlSpec::new("forged", &[], true)
    }
    .make(d);
    revoked(
        &verify(&msg, &[&forged]),
        &["its signature does not verify with the key of CN=sipseal demo CA a.example.com"],
    );

    // The genuine CRL with alice's entry cut out by changing one byte of
    // her serial: the signature no longer verifies, so it is not used.
    let genuine = CrlSpec::new("genuine", &[(ALICE_SERIAL, None)], true).make(d);
    let der = ok(&common::openssl()
        .args(["crl", "-outform", "DER", "-in"])
        .arg(&genuine)
        .output()
        .unwrap());
    let serial = hex::decode(ALICE_SERIAL).unwrap();
    let at = der
        .windows(serial.len())
        .position(|w| w == serial)
        .expect("the serial is in the CRL");
    let mut tampered = der.clone();
    tampered[at] ^= 1;
    let tampered = write(d, "tampered.der", &tampered);
    revoked(
        &verify(&msg, &[&tampered]),
        &["its signature does not verify"],
    );
    // The untampered DER form is read too, and revokes.
    let der = write(d, "genuine.der", &der);
    revoked(&verify(&msg, &[&der]), &["is revoked"]);

    // Not a CRL: a usage/configuration error with a hint, exit 2.
    let out = verify(&msg, &[Path::new(TRUST)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("unusable CRL: no -----BEGIN X509 CRL----- block"));
    assert!(text(&out).contains("hint: give an X.509 CRL"));
}

#[test]
fn crls_carried_in_the_signed_data_both_ways_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let v1 = CrlSpec::new("v1", &[(ALICE_SERIAL, None)], false).make(d);
    let v2 = CrlSpec::new("v2", &[(ALICE_SERIAL, Some("keyCompromise"))], true).make(d);
    let clean = CrlSpec::new("clean", &[(CAROL_SERIAL, None)], true).make(d);

    // sign carries v1 and v2 CRLs; inspect lists them, verify uses them
    // without --crl.
    let msg = signed_by_alice(d, "revoked.sip", &[&v1, &v2]);
    let shown = text(&run(&["inspect", s(&msg)]));
    let crl_lines: Vec<&str> = shown.lines().filter(|l| l.contains("crl: ")).collect();
    assert_eq!(crl_lines.len(), 2, "{shown}");
    for v in ["v1", "v2"] {
        assert!(
            crl_lines.iter().any(|l| l.contains(&format!("{v} CRL of CN=sipseal demo CA a.example.com,O=sipseal demo,C=ZZ, this update 2026-11-01T00:00:00Z, next update 2026-12-01T00:00:00Z, 1 revoked"))),
            "{shown}"
        );
    }
    revoked(&verify(&msg, &[]), &["is on the CRL from the SignedData"]);

    // openssl reads the CRLs sipseal carried: -crl_check fails on the
    // revoked signer ...
    let openssl_verify = |msg: &Path, name: &str| {
        let m = Message::parse(&std::fs::read(msg).unwrap()).unwrap();
        let sig = outer_signature(&m).unwrap().unwrap();
        let content = write(d, &format!("{name}.content"), &sig.signed);
        let p7s = write(d, &format!("{name}.p7s"), &sig.signature);
        common::openssl()
            .args(["cms", "-verify", "-inform", "DER", "-binary", "-crl_check"])
            .args(["-attime", NOW_UNIX, "-CAfile", TRUST, "-out", "/dev/null"])
            .arg("-in")
            .arg(&p7s)
            .arg("-content")
            .arg(&content)
            .output()
            .unwrap()
    };
    let out = openssl_verify(&msg, "revoked");
    assert!(!out.status.success());
    assert!(text(&out).contains("certificate revoked"), "{}", text(&out));

    // ... and passes with a carried CRL that does not list alice (without
    // a CRL, -crl_check fails: "unable to get certificate CRL").
    let fine = signed_by_alice(d, "fine.sip", &[&clean]);
    let out = openssl_verify(&fine, "fine");
    assert!(out.status.success(), "{}", text(&out));
    let bare = signed_by_alice(d, "bare.sip", &[]);
    let out = openssl_verify(&bare, "bare");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unable to get certificate CRL"),
        "{}",
        text(&out)
    );

    // sipseal agrees on the same two.
    let out = verify(&fine, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(revocation_line(&out).contains("not revoked (v2 CRL of"));
    assert!(revocation_line(&out).contains("from the SignedData"));
    let out = verify(&bare, &[&clean]);
    assert!(out.status.success(), "{}", text(&out));
}
