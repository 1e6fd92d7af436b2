//! A whole sealed dialog through alice, proxy-a (designated), proxy-b
//! (not designated) and bob, as separate `sipseal` runs sharing one state
//! directory: INVITE (full envelope) → 200 OK under the session key →
//! ACK → MESSAGE → rekey → MESSAGE under the new key → BYE. At every hop
//! the test checks who could read the body, and at the end that the
//! parties' stores agree on the session key.

mod common;

use std::path::{Path, PathBuf};

use common::sipseal;
use sipseal::envelope::Envelope;
use sipseal::sealing::sealed_body;
use sipseal::sip::Message;

struct Dialog {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    state: PathBuf,
    n: usize,
}

struct Ran {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Dialog {
    fn new() -> Dialog {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        Dialog {
            state: dir.join("state"),
            dir,
            _tmp: tmp,
            n: 0,
        }
    }

    /// Run sipseal with the shared --state.
    fn run(&self, args: &[&str]) -> Ran {
        let out = sipseal()
            .args(args)
            .arg("--state")
            .arg(&self.state)
            .output()
            .unwrap();
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run, expect success, keep stdout in a new file.
    fn ok(&mut self, args: &[&str]) -> PathBuf {
        let r = self.run(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        self.n += 1;
        let path = self.dir.join(format!("{:02}.sip", self.n));
        std::fs::write(&path, &r.stdout).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// One relay step; returns the forwarded message and the JSON report.
    fn proxy(&mut self, relay: &str, input: &Path, extra: &[&str]) -> (PathBuf, serde_json::Value) {
        let report = self.path(&format!("report-{relay}-{}.json", self.n));
        let identity = format!("keys/{relay}");
        let mut args = vec![
            "proxy",
            s(input),
            "--identity",
            &identity,
            // A signature counts only from a party chained to an anchor.
            "--signer-trust",
            "keys/trust.pem",
            "--report",
            s(&report),
            "--report-format",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        let json = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        (out, json)
    }

    /// alice's `reply --request-method MESSAGE` with `body`, on the 2xx `ok`.
    fn message(&mut self, ok: &Path, body: &Path, extra: &[&str]) -> PathBuf {
        let mut args = vec![
            "reply",
            s(ok),
            "--request-method",
            "MESSAGE",
            "--body",
            s(body),
            "--content-type",
            "text/plain",
            "--identity",
            "keys/alice",
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    fn store(&self, identity: &str) -> common::Sessions {
        common::stored_sessions(&self.state, identity)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn envelope(path: &Path) -> Envelope {
    let msg = Message::parse(&std::fs::read(path).unwrap()).unwrap();
    Envelope::parse(&sealed_body(&msg).unwrap()).unwrap()
}

/// `open --body-only` as `who`: the plaintext, or the exit code and stderr.
fn open(d: &Dialog, who: &str, input: &Path) -> Result<String, (i32, String)> {
    let identity = format!("keys/{who}");
    let r = d.run(&["open", s(input), "--identity", &identity, "--body-only"]);
    if r.code == 0 {
        Ok(String::from_utf8(r.stdout).unwrap())
    } else {
        Err((r.code, r.stderr))
    }
}

fn assert_session_message(path: &Path, reference: &str) {
    let env = envelope(path);
    assert_eq!(env.recipients.len(), 1, "exactly one RecipientInfo");
    assert_eq!(
        env.session_reference().map(hex::encode).as_deref(),
        Some(reference),
        "kekid = session reference"
    );
}

#[test]
fn a_whole_dialog_through_two_relays() {
    let mut d = Dialog::new();
    let offer = String::from_utf8(common::file("samples/offer.sdp")).unwrap();
    let answer = String::from_utf8(common::file("samples/answer.sdp")).unwrap();
    let pinholes = d.path("pinholes.nft");

    // 1. INVITE: a full envelope for bob, disclosed to proxy-a, signed by
    // alice inside (S1: only an authenticated offer opens pinholes).
    let invite = d.ok(&[&common::SEAL_INVITE[..], &["--sign", "keys/alice"]].concat());
    assert!(envelope(&invite).session_reference().is_none());
    let (inv_a, rep) = d.proxy(
        "proxy-a",
        &invite,
        &["--pinholes", s(&pinholes), "--record-route"],
    );
    assert_eq!(rep["decision"], "designated");
    assert_eq!(rep["opened"], true);
    assert_eq!(rep["sdp"].as_str(), Some(offer.as_str()));
    let nft = std::fs::read_to_string(&pinholes).unwrap();
    assert!(nft.contains("192.0.2.10"), "offer side: {nft}");
    assert!(!nft.contains("198.51.100.20"), "no answer yet: {nft}");
    let (inv_b, rep) = d.proxy("proxy-b", &inv_a, &["--record-route"]);
    assert_eq!(rep["decision"], "not-designated");
    assert_eq!(rep["opened"], false);
    assert_eq!(open(&d, "bob", &inv_b).unwrap(), offer);
    assert_eq!(open(&d, "proxy-b", &inv_b).unwrap_err().0, 3);

    let call_id = Message::parse(&std::fs::read(&invite).unwrap())
        .unwrap()
        .call_id()
        .unwrap()
        .to_owned();
    let reference = d.store("sip:bob@b.example.com").sessions[0]
        .reference
        .clone();

    // 2. 200 OK with the answer, sealed under the session key by bob.
    let ok = d.ok(&[
        "reply",
        s(&inv_b),
        "--response",
        "200",
        "--sdp",
        "samples/answer.sdp",
        "--identity",
        "keys/bob",
    ]);
    assert_session_message(&ok, &reference);
    let (ok_b, rep) = d.proxy("proxy-b", &ok, &[]);
    assert_eq!(rep["opened"], false, "proxy-b never stored the key");
    assert_eq!(open(&d, "proxy-b", &ok_b).unwrap_err().0, 1);
    let (ok_a, rep) = d.proxy("proxy-a", &ok_b, &["--pinholes", s(&pinholes)]);
    assert_eq!(rep["decision"], "session");
    assert_eq!(rep["opened"], true);
    assert_eq!(rep["sdp"].as_str(), Some(answer.as_str()));
    let nft = std::fs::read_to_string(&pinholes).unwrap();
    assert!(
        nft.contains("192.0.2.10") && nft.contains("198.51.100.20"),
        "both sides after the answer: {nft}"
    );
    assert_eq!(open(&d, "alice", &ok_a).unwrap(), answer);
    // The relay did not take the 200's per-message CEK for a session key.
    assert_eq!(
        d.store("sip:proxy-a.a.example.com").sessions[0].reference,
        reference
    );

    // 3. ACK: no body, nothing sealed; an in-dialog request to bob's Contact.
    let ack = d.ok(&[
        "reply",
        s(&ok_a),
        "--request-method",
        "ACK",
        "--identity",
        "keys/alice",
    ]);
    let ack_msg = Message::parse(&std::fs::read(&ack).unwrap()).unwrap();
    assert_eq!(ack_msg.method(), Some("ACK"));
    assert_eq!(ack_msg.cseq().unwrap().seq, 1);
    assert_eq!(
        ack_msg.to_tag().unwrap(),
        Message::parse(&std::fs::read(&ok).unwrap())
            .unwrap()
            .to_tag()
            .unwrap()
    );
    assert!(ack_msg.body().is_empty());
    // Both relays record-routed the INVITE: the ACK goes through them
    // (loose routes, proxy-a first), and each takes its own Route off.
    assert_eq!(
        ack_msg.header_values("Route"),
        vec![
            "<sip:proxy-a.a.example.com;lr>",
            "<sip:proxy-b.b.example.com;lr>"
        ]
    );
    let (ack_a, _) = d.proxy("proxy-a", &ack, &["--pinholes", s(&pinholes)]);
    let ack_a_msg = Message::parse(&std::fs::read(&ack_a).unwrap()).unwrap();
    assert_eq!(
        ack_a_msg.header_values("Route"),
        vec!["<sip:proxy-b.b.example.com;lr>"]
    );
    let (ack_b, _) = d.proxy("proxy-b", &ack_a, &[]);
    let ack_b_msg = Message::parse(&std::fs::read(&ack_b).unwrap()).unwrap();
    assert!(ack_b_msg.header_values("Route").is_empty());
    assert_eq!(ack_b_msg.request_uri(), Some("sip:bob@b.example.com"));

    // 4. MESSAGE under the session key: proxy-a reads it, proxy-b cannot.
    std::fs::write(d.path("hello.txt"), "hello bob\r\n").unwrap();
    let hello = d.path("hello.txt");
    let msg1 = d.message(&ok_a, &hello, &[]);
    assert_session_message(&msg1, &reference);
    assert_eq!(
        Message::parse(&std::fs::read(&msg1).unwrap())
            .unwrap()
            .cseq()
            .unwrap()
            .seq,
        2
    );
    let (m1_a, rep) = d.proxy("proxy-a", &msg1, &[]);
    assert_eq!(rep["opened"], true);
    let (m1_b, rep) = d.proxy("proxy-b", &m1_a, &[]);
    assert_eq!(rep["opened"], false);
    assert_eq!(open(&d, "bob", &m1_b).unwrap(), "hello bob\r\n");

    // 5. rekey: a full envelope; everyone who opens it replaces the key.
    let rekey_src = d.message(
        &ok_a,
        &hello,
        &[
            "--max-uses",
            "1",
            "--peer",
            "keys/bob/cert.pem",
            "--disclose",
            "keys/proxy-a/cert.pem",
        ],
    );
    let rekeyed = envelope(&rekey_src);
    assert_eq!(
        rekeyed.recipients.len(),
        2,
        "a full envelope: bob and proxy-a"
    );
    assert!(rekeyed.session_reference().is_none());
    let (rk_a, rep) = d.proxy("proxy-a", &rekey_src, &[]);
    assert_eq!(rep["decision"], "designated");
    let (rk_b, _) = d.proxy("proxy-b", &rk_a, &[]);
    assert_eq!(open(&d, "bob", &rk_b).unwrap(), "hello bob\r\n");
    let new_reference = d.store("sip:bob@b.example.com").sessions[0]
        .reference
        .clone();
    assert_ne!(new_reference, reference);
    for who in [
        "sip:alice@a.example.com",
        "sip:proxy-a.a.example.com",
        "sip:bob@b.example.com",
    ] {
        let e = &d.store(who).sessions[0];
        assert_eq!(e.reference, new_reference, "{who}");
        assert_eq!(
            e.previous.as_ref().map(|p| p.reference.as_str()),
            Some(reference.as_str()),
            "{who} keeps the old key for the grace time"
        );
    }

    // 6. MESSAGE under the new key.
    let msg2 = d.message(&ok_a, &hello, &[]);
    assert_session_message(&msg2, &new_reference);
    let (m2_a, rep) = d.proxy("proxy-a", &msg2, &[]);
    assert_eq!(rep["opened"], true);
    let (m2_b, _) = d.proxy("proxy-b", &m2_a, &[]);
    assert_eq!(open(&d, "bob", &m2_b).unwrap(), "hello bob\r\n");
    assert_eq!(open(&d, "proxy-b", &m2_b).unwrap_err().0, 1);

    // 7. BYE: the pinholes go.
    let bye = d.ok(&[
        "reply",
        s(&ok_a),
        "--request-method",
        "BYE",
        "--identity",
        "keys/alice",
    ]);
    let bye_msg = Message::parse(&std::fs::read(&bye).unwrap()).unwrap();
    assert_eq!(
        bye_msg.cseq().unwrap().seq,
        5,
        "INVITE 1, MESSAGEs 2 to 4, BYE 5"
    );
    d.proxy("proxy-a", &bye, &["--pinholes", s(&pinholes)]);
    let nft = std::fs::read_to_string(&pinholes).unwrap();
    assert!(nft.contains("delete element"), "{nft}");
    // Only the adds that make each deletion apply whether or not the
    // element is there (they carry no comment): nothing is opened.
    assert_eq!(
        nft.matches("add element").count(),
        nft.matches("delete element").count(),
        "{nft}"
    );
    assert!(!nft.contains("comment \""), "{nft}");

    // bob's and proxy-a's stores hold the same KEK under the same reference.
    let bob = d.store("sip:bob@b.example.com");
    let proxy_a = d.store("sip:proxy-a.a.example.com");
    assert_eq!(bob.sessions.len(), 1);
    assert_eq!(proxy_a.sessions.len(), 1);
    assert_eq!(bob.sessions[0].call_id, call_id);
    assert_eq!(proxy_a.sessions[0].call_id, call_id);
    assert_eq!(bob.sessions[0].reference, proxy_a.sessions[0].reference);
    assert_eq!(bob.sessions[0].kek, proxy_a.sessions[0].kek);
    assert!(
        d.store("sip:proxy-b.b.example.com").sessions.is_empty(),
        "proxy-b learned nothing"
    );
}

/// Item 7: the same dialog through a relay that seals every body again for
/// the next hop under a fresh CEK (`reencrypt`, no `--keep-cek`). alice
/// knows only proxy-a's certificate; proxy-a keeps both sides' session
/// keys and translates each session message to the other side's key, in
/// both directions, with no public-key operation; a rekey renews both
/// sides. Messages without a body pass through `proxy`.
#[test]
fn a_whole_dialog_through_a_resealing_relay() {
    let mut d = Dialog::new();
    let offer = String::from_utf8(common::file("samples/offer.sdp")).unwrap();
    let answer = String::from_utf8(common::file("samples/answer.sdp")).unwrap();
    let reencrypt = |d: &mut Dialog, input: &Path, extra: &[&str]| {
        let report = d.path(&format!("report-reencrypt-{}.json", d.n));
        let mut args = vec![
            "reencrypt",
            s(input),
            "--identity",
            "keys/proxy-a",
            "--report",
            s(&report),
            "--report-format",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = d.ok(&args);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        (out, json)
    };
    let to_bob = ["--peer", "keys/bob/cert.pem"];
    // bob's in-dialog MESSAGE (from the ACK he received) under his key.
    let bob_says = |d: &mut Dialog, ack: &Path| {
        let hi = d.path("hi.txt");
        d.ok(&[
            "reply",
            s(ack),
            "--request-method",
            "MESSAGE",
            "--body",
            s(&hi),
            "--content-type",
            "text/plain",
            "--identity",
            "keys/bob",
        ])
    };
    let reference_of = |d: &Dialog, who: &str| d.store(who).sessions[0].reference.clone();
    let relay = |d: &Dialog| d.store("sip:proxy-a.a.example.com").sessions[0].clone();

    // 1. INVITE sealed for proxy-a alone; proxy-a seals it again for bob
    // under a fresh CEK.
    let invite = d.ok(&[
        "seal",
        "samples/invite.sip",
        "--peer",
        "keys/proxy-a/cert.pem",
    ]);
    let (inv_a, rep) = reencrypt(&mut d, &invite, &to_bob);
    assert_eq!(
        Message::parse(&std::fs::read(&inv_a).unwrap())
            .unwrap()
            .header_values("Record-Route"),
        vec!["<sip:proxy-a.a.example.com;lr>"],
        "the translating relay stays on the dialog's path"
    );
    assert_eq!(rep["decision"], "addressed");
    assert_eq!(rep["cek"], "fresh");
    assert_eq!(open(&d, "bob", &inv_a).unwrap(), offer);
    assert_eq!(
        open(&d, "bob", &invite).unwrap_err().0,
        3,
        "bob cannot read alice's envelope"
    );
    let alice_ref = reference_of(&d, "sip:alice@a.example.com");
    let bob_ref = reference_of(&d, "sip:bob@b.example.com");
    assert_ne!(alice_ref, bob_ref, "a fresh CEK on each side");
    let entry = relay(&d);
    assert_eq!(entry.reference, alice_ref, "proxy-a holds alice's side");
    assert_eq!(
        entry.onward.as_ref().map(|o| o.reference.clone()),
        Some(bob_ref.clone()),
        "and bob's"
    );

    // 2. bob's 200 OK under his key; proxy-a translates it to alice's.
    let ok = d.ok(&[
        "reply",
        s(&inv_a),
        "--response",
        "200",
        "--sdp",
        "samples/answer.sdp",
        "--identity",
        "keys/bob",
    ]);
    assert_session_message(&ok, &bob_ref);
    assert_eq!(
        open(&d, "alice", &ok).unwrap_err().0,
        1,
        "not under alice's key"
    );
    let (ok_a, rep) = reencrypt(&mut d, &ok, &[]);
    assert_eq!(rep["decision"], "session");
    assert_eq!(rep["cek"], "translated");
    assert_eq!(rep["sdp"].as_str(), Some(answer.as_str()));
    assert_session_message(&ok_a, &alice_ref);
    assert_eq!(open(&d, "alice", &ok_a).unwrap(), answer);

    // 3. ACK (no body) through proxy.
    let ack = d.ok(&[
        "reply",
        s(&ok_a),
        "--request-method",
        "ACK",
        "--identity",
        "keys/alice",
    ]);
    let (ack_a, _) = d.proxy("proxy-a", &ack, &[]);
    assert!(std::fs::read(&ack_a).unwrap().ends_with(b"\r\n\r\n"));

    // 4. alice's MESSAGE under her key reaches bob under his.
    std::fs::write(d.path("hello.txt"), "hello bob\r\n").unwrap();
    let hello = d.path("hello.txt");
    let msg1 = d.message(&ok_a, &hello, &[]);
    assert_session_message(&msg1, &alice_ref);
    let (m1_a, rep) = reencrypt(&mut d, &msg1, &[]);
    assert_eq!(rep["cek"], "translated");
    assert_session_message(&m1_a, &bob_ref);
    assert_eq!(open(&d, "bob", &m1_a).unwrap(), "hello bob\r\n");

    // ... and bob's MESSAGE (from the ACK he received) reaches alice.
    std::fs::write(d.path("hi.txt"), "hi alice\r\n").unwrap();
    let from_bob = bob_says(&mut d, &ack_a);
    assert_session_message(&from_bob, &bob_ref);
    let (fb_a, rep) = reencrypt(&mut d, &from_bob, &[]);
    assert_eq!(rep["cek"], "translated");
    assert_session_message(&fb_a, &alice_ref);
    assert_eq!(open(&d, "alice", &fb_a).unwrap(), "hi alice\r\n");

    // 5. alice rekeys (a full envelope for proxy-a); proxy-a seals it again
    // for bob: both sides get new keys and keep the old ones for the grace
    // time.
    let rekey_src = d.message(
        &ok_a,
        &hello,
        &["--max-uses", "1", "--peer", "keys/proxy-a/cert.pem"],
    );
    assert!(envelope(&rekey_src).session_reference().is_none());
    let (rk_a, rep) = reencrypt(&mut d, &rekey_src, &to_bob);
    assert_eq!(rep["cek"], "fresh");
    assert_eq!(open(&d, "bob", &rk_a).unwrap(), "hello bob\r\n");
    let alice_new = reference_of(&d, "sip:alice@a.example.com");
    let bob_new = reference_of(&d, "sip:bob@b.example.com");
    assert!(alice_new != alice_ref && bob_new != bob_ref && alice_new != bob_new);
    let entry = relay(&d);
    assert_eq!(entry.reference, alice_new);
    assert_eq!(
        entry.previous.as_ref().map(|p| p.reference.clone()),
        Some(alice_ref.clone())
    );
    let onward = entry.onward.as_ref().unwrap();
    assert_eq!(onward.reference, bob_new);
    assert_eq!(
        onward.previous.as_ref().map(|p| p.reference.clone()),
        Some(bob_ref.clone())
    );

    // 6. MESSAGE under the new keys, both ways.
    let msg2 = d.message(&ok_a, &hello, &[]);
    assert_session_message(&msg2, &alice_new);
    let (m2_a, _) = reencrypt(&mut d, &msg2, &[]);
    assert_session_message(&m2_a, &bob_new);
    assert_eq!(open(&d, "bob", &m2_a).unwrap(), "hello bob\r\n");
    let from_bob = bob_says(&mut d, &ack_a);
    assert_session_message(&from_bob, &bob_new);
    let (fb_a, _) = reencrypt(&mut d, &from_bob, &[]);
    assert_session_message(&fb_a, &alice_new);
    assert_eq!(open(&d, "alice", &fb_a).unwrap(), "hi alice\r\n");

    // 7. BYE (no body) through proxy.
    let bye = d.ok(&[
        "reply",
        s(&ok_a),
        "--request-method",
        "BYE",
        "--identity",
        "keys/alice",
    ]);
    d.proxy("proxy-a", &bye, &[]);

    // The relay's two sides are the two parties' keys.
    let alice = &d.store("sip:alice@a.example.com").sessions[0];
    let bob = &d.store("sip:bob@b.example.com").sessions[0];
    let entry = relay(&d);
    assert_eq!(entry.kek, alice.kek);
    assert_eq!(entry.onward.as_ref().unwrap().kek, bob.kek);
}
