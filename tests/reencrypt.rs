//! `sipseal reencrypt` through the built binary: trust hop by hop (alice
//! seals for proxy-a alone, proxy-a seals again for bob), fresh or kept CEK,
//! designations replaced, edits, refusals, 496, and responses going back.

mod common;

use std::path::{Path, PathBuf};

use common::{BOB_AND_PROXY_A, Succeeds, ok, sipseal, write};
use predicates::prelude::*;
use sipseal::envelope::recipient::addressed_to_cert;
use sipseal::envelope::{Envelope, RecipientKey};
use sipseal::keys::{Cert, Identity};
use sipseal::sealing::sealed_body;
use sipseal::sip::Message;

/// alice's INVITE sealed with `args` (deterministic).
fn seal(dir: &Path, args: &[&str]) -> PathBuf {
    let out = sipseal()
        .args(["--seed", "0a11ce", "seal", "samples/invite.sip"])
        .args(args)
        .succeeds();
    write(dir, "alice.sip", &out.stdout)
}

fn reencrypt(input: &Path, args: &[&str]) -> std::process::Output {
    sipseal()
        .arg("reencrypt")
        .arg(input)
        .args(["--identity", "keys/proxy-a"])
        .args(args)
        .output()
        .unwrap()
}

fn envelope(msg: &[u8]) -> Envelope {
    Envelope::parse(&sealed_body(&Message::parse(msg).unwrap()).unwrap()).unwrap()
}

/// The CEK `who` opens `msg` with (through the library, to compare keys).
fn cek(msg: &[u8], who: &str) -> Vec<u8> {
    let id = Identity::load_dir(Path::new(&format!("keys/{who}"))).unwrap();
    let keys = [RecipientKey::Cert {
        cert: &id.cert,
        key: &id,
    }];
    envelope(msg)
        .open(&keys, sipseal::context::Context::new(None, None).rng())
        .unwrap()
        .cek
        .to_vec()
}

fn open_sdp(msg: &Path, who: &str) -> std::process::Output {
    sipseal()
        .arg("open")
        .arg(msg)
        .args(["--identity", &format!("keys/{who}"), "--body-only"])
        .output()
        .unwrap()
}

#[test]
fn hop_by_hop_alice_seals_for_proxy_a_alone_and_proxy_a_seals_again_for_bob() {
    let tmp = tempfile::tempdir().unwrap();
    let from_alice = seal(tmp.path(), &["--peer", "keys/proxy-a/cert.pem"]);
    let alice_bytes = std::fs::read(&from_alice).unwrap();
    // bob cannot read what alice sent: it is for proxy-a only.
    assert_eq!(open_sdp(&from_alice, "bob").status.code(), Some(3));

    let report = tmp.path().join("report.json");
    let out = sipseal()
        .arg("reencrypt")
        .arg(&from_alice)
        .args(["--identity", "keys/proxy-a", "--peer", "keys/bob/cert.pem"])
        .args(["--via", "proxy-a.a.example.com:5060"])
        .args(["--report-format", "json", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let to_bob = write(tmp.path(), "to-bob.sip", &ok(&out));

    // bob opens and gets alice's SDP.
    let sdp = open_sdp(&to_bob, "bob");
    assert_eq!(
        ok(&sdp),
        std::fs::read("samples/offer.sdp").unwrap().as_slice()
    );
    // proxy-a's RecipientInfo is gone: one RecipientInfo, bob's.
    let env = envelope(&out.stdout);
    let proxy_a = Cert::load(Path::new("keys/proxy-a/cert.pem")).unwrap();
    let bob = Cert::load(Path::new("keys/bob/cert.pem")).unwrap();
    assert_eq!(env.recipients.len(), 1);
    assert!(addressed_to_cert(&env.recipients[0], &bob));
    assert!(!addressed_to_cert(&env.recipients[0], &proxy_a));
    assert_eq!(open_sdp(&to_bob, "proxy-a").status.code(), Some(3));
    // A fresh CEK.
    assert_ne!(cek(&alice_bytes, "proxy-a"), cek(&out.stdout, "bob"));

    // Routing as in proxy: a new top Via, Max-Forwards one less.
    let before = Message::parse(&alice_bytes).unwrap();
    let after = Message::parse(&out.stdout).unwrap();
    let vias = after.header_list("Via");
    assert!(
        vias[0].starts_with("SIP/2.0/UDP proxy-a.a.example.com:5060;branch=z9hG4bK"),
        "{vias:?}"
    );
    assert_eq!(vias[1..], before.header_list("Via")[..]);
    assert_eq!(after.header("Max-Forwards"), Some("69"));
    assert_eq!(after.header("Proxy-Inspect-Body"), None);
    // Everything but the routing and body headers is byte-identical.
    for name in ["From", "To", "Call-ID", "CSeq", "Contact", "Subject"] {
        assert_eq!(after.header(name), before.header(name), "{name}");
    }

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["decision"], "addressed");
    assert_eq!(v["opened"], true);
    assert_eq!(v["cek"], "fresh");
    assert_eq!(
        v["resealed_for"],
        serde_json::json!(["sip:bob@b.example.com"])
    );
    assert_eq!(v["streams"].as_array().unwrap().len(), 2);
}

#[test]
fn keep_cek_seals_under_the_same_key_with_a_fresh_nonce() {
    let tmp = tempfile::tempdir().unwrap();
    let from_alice = seal(tmp.path(), &["--peer", "keys/proxy-a/cert.pem"]);
    let alice_bytes = std::fs::read(&from_alice).unwrap();
    let out = reencrypt(&from_alice, &["--peer", "keys/bob/cert.pem", "--keep-cek"]);
    let to_bob = ok(&out).to_vec();
    assert_eq!(cek(&alice_bytes, "proxy-a"), cek(&to_bob, "bob"));
    let (a, b) = (envelope(&alice_bytes), envelope(&to_bob));
    assert_eq!(a.params.cipher, b.params.cipher);
    assert_eq!(a.params.iv.len(), 12);
    assert_ne!(
        a.params.iv, b.params.iv,
        "a kept GCM key needs a fresh nonce"
    );

    // The kept key decides the cipher: --cipher with it is a usage error.
    let conflict = reencrypt(
        &from_alice,
        &[
            "--peer",
            "keys/bob/cert.pem",
            "--keep-cek",
            "--cipher",
            "aes128-gcm",
        ],
    );
    assert_eq!(conflict.status.code(), Some(2));
    assert!(conflict.stdout.is_empty());
    assert!(String::from_utf8_lossy(&conflict.stderr).contains("--keep-cek"));
}

/// A full envelope needs someone to seal for: without --peer/--disclose,
/// exit 2, nothing written, and the hint names the options (a session
/// message the relay translates needs none: tests/dialog.rs).
#[test]
fn a_full_envelope_without_recipients_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let from_alice = seal(tmp.path(), &["--peer", "keys/proxy-a/cert.pem"]);
    let out = reencrypt(&from_alice, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no recipients to seal for"), "{err}");
    assert!(err.contains("--peer CERT"), "{err}");
}

#[test]
fn designations_are_replaced_and_a_modify_relay_may_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let from_alice = seal(
        tmp.path(),
        &[&BOB_AND_PROXY_A[..], &["--access", "modify"]].concat(),
    );
    let out = reencrypt(
        &from_alice,
        &[
            "--peer",
            "keys/bob/cert.pem",
            "--disclose",
            "keys/proxy-b/cert.pem",
            "--set-connection",
            "198.51.100.20",
            "--set-port",
            "video=50000",
        ],
    );
    let to_bob = write(tmp.path(), "to-bob.sip", &ok(&out));
    let msg = Message::parse(&out.stdout).unwrap();
    let pib = msg.header_list("Proxy-Inspect-Body");
    assert_eq!(pib.len(), 1, "{pib:?}");
    assert!(
        pib[0].starts_with("<sip:proxy-b.b.example.com>;"),
        "{pib:?}"
    );
    assert!(pib[0].contains("access=read"), "{pib:?}");
    let cid = msg.header("Content-ID").unwrap();
    assert!(
        pib[0].contains(&format!("cid=\"{}\"", &cid[1..cid.len() - 1])),
        "{pib:?} {cid}"
    );

    for who in ["bob", "proxy-b"] {
        let sdp = String::from_utf8(ok(&open_sdp(&to_bob, who)).to_vec()).unwrap();
        assert!(sdp.contains("c=IN IP4 198.51.100.20\r\n"), "{sdp}");
        assert!(!sdp.contains("192.0.2.10\r\nt="), "{sdp}");
        assert!(sdp.contains("m=video 50000 RTP/SAVP"), "{sdp}");
        assert!(sdp.contains("m=audio 49170 RTP/SAVP"), "{sdp}");
    }
    assert_eq!(open_sdp(&to_bob, "proxy-a").status.code(), Some(3));
}

#[test]
fn a_read_only_designation_may_not_reencrypt() {
    let tmp = tempfile::tempdir().unwrap();
    let from_alice = seal(tmp.path(), &BOB_AND_PROXY_A);
    let out_file = tmp.path().join("out.sip");
    sipseal()
        .arg("reencrypt")
        .arg(&from_alice)
        .args(["--identity", "keys/proxy-a", "--peer", "keys/bob/cert.pem"])
        .arg("-o")
        .arg(&out_file)
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("access=read").and(predicate::str::contains("hint:")));
    assert!(!out_file.exists());
}

#[test]
fn a_request_proxy_a_cannot_open_is_answered_496() {
    let tmp = tempfile::tempdir().unwrap();
    let for_bob = seal(tmp.path(), &["--peer", "keys/bob/cert.pem"]);
    let out = reencrypt(&for_bob, &["--peer", "keys/carol/cert.pem"]);
    assert_eq!(out.status.code(), Some(5));
    let resp = Message::parse(&out.stdout).unwrap();
    assert_eq!(resp.status(), Some(496));
    assert_eq!(resp.header("Content-Type"), Some("application/pkix-cert"));
    let cert = Cert::from_der(resp.body(), "496").unwrap();
    assert_eq!(cert.uri().as_deref(), Some("sip:proxy-a.a.example.com"));

    // An unsealed body: nothing to re-encrypt.
    sipseal()
        .args([
            "reencrypt",
            "samples/invite.sip",
            "--identity",
            "keys/proxy-a",
        ])
        .args(["--peer", "keys/bob/cert.pem"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("not sealed"));
}

#[test]
fn a_response_goes_back_resealed_for_the_caller() {
    let tmp = tempfile::tempdir().unwrap();
    // The INVITE as it reached bob through proxy-a (two Vias).
    let from_alice = seal(tmp.path(), &["--peer", "keys/proxy-a/cert.pem"]);
    // The response comes back to the relay (its state) that keyed the branch.
    let state = tmp.path().join("state");
    let state = state.to_str().unwrap();
    let out = reencrypt(
        &from_alice,
        &["--peer", "keys/bob/cert.pem", "--state", state],
    );
    let at_bob = write(tmp.path(), "at-bob.sip", &ok(&out));
    // bob answers, sealing for proxy-a (hop by hop back).
    let answer = sipseal()
        .args(["--seed", "0b0b", "build", "response", "200", "--request"])
        .arg(&at_bob)
        .args(["--sdp", "samples/answer.sdp", "--seal", "--peer"])
        .arg("keys/proxy-a/cert.pem")
        .output()
        .unwrap();
    let answer_path = write(tmp.path(), "200.sip", &ok(&answer));
    let back = reencrypt(
        &answer_path,
        &["--peer", "keys/alice/cert.pem", "--state", state],
    );
    let at_alice = write(tmp.path(), "200-alice.sip", &ok(&back));
    let before = Message::parse(&answer.stdout).unwrap();
    let after = Message::parse(&back.stdout).unwrap();
    assert_eq!(
        after.header_list("Via"),
        before.header_list("Via")[1..].to_vec()
    );
    assert_eq!(after.status(), Some(200));
    let sdp = ok(&open_sdp(&at_alice, "alice")).to_vec();
    assert_eq!(sdp, std::fs::read("samples/answer.sdp").unwrap());
}
