//! The session store through the built binary: the derivation against
//! `openssl kdf`, sender, relay and receiver agreeing on the session key
//! without anything on the wire, 32 parallel writers, and writers killed
//! mid-way losing nothing that was stored.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Sessions, Succeeds, sipseal};
use sipseal::session::{Role, derive};
use sipseal::sip::Message;

fn openssl_hkdf(len: usize, key: &[u8], salt: &[u8], info: &str) -> Vec<u8> {
    let mut cmd = common::openssl();
    cmd.args([
        "kdf",
        "-keylen",
        &len.to_string(),
        "-kdfopt",
        "digest:SHA256",
    ])
    .args(["-kdfopt", &format!("hexkey:{}", hex::encode(key))])
    .args(["-kdfopt", &format!("info:{info}")]);
    if !salt.is_empty() {
        cmd.args(["-kdfopt", &format!("hexsalt:{}", hex::encode(salt))]);
    }
    let out = cmd.arg("HKDF").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    hex::decode(text.trim().replace(':', "")).unwrap()
}

#[test]
fn the_derivation_matches_openssl_hkdf() {
    for cek in [vec![0u8; 32], (0u8..32).collect(), (100u8..116).collect()] {
        let keys = derive(&cek);
        let reference = openssl_hkdf(16, &cek, b"", "sipseal cek reference");
        assert_eq!(keys.reference.to_vec(), reference);
        let kek = openssl_hkdf(32, &cek, &reference, "sipseal session kek");
        assert_eq!(keys.kek.to_vec(), kek);
    }
}

fn store(state: &Path, identity: &str) -> Sessions {
    common::stored_sessions(state, identity)
}

#[test]
fn sender_relay_and_receiver_store_the_same_key() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let run = |args: &[&str], input: &Path| {
        let out = sipseal()
            .args(args)
            .arg(input)
            .arg("--state")
            .arg(&state)
            .succeeds();
        out.stdout
    };
    let sealed = run(
        &[
            "seal",
            "--peer",
            "keys/bob/cert.pem",
            "--disclose",
            "keys/proxy-a/cert.pem",
        ],
        Path::new("samples/invite.sip"),
    );
    let sealed_path = tmp.path().join("sealed.sip");
    std::fs::write(&sealed_path, &sealed).unwrap();
    let fwd = run(&["proxy", "--identity", "keys/proxy-a"], &sealed_path);
    let fwd_path = tmp.path().join("fwd.sip");
    std::fs::write(&fwd_path, &fwd).unwrap();
    // proxy-b is not a recipient: it stores nothing.
    run(&["proxy", "--identity", "keys/proxy-b"], &fwd_path);
    run(&["open", "--identity", "keys/bob"], &fwd_path);

    let call_id = Message::parse(&sealed)
        .unwrap()
        .call_id()
        .unwrap()
        .to_owned();
    let alice = store(&state, "sip:alice@a.example.com");
    let proxy_a = store(&state, "sip:proxy-a.a.example.com");
    let bob = store(&state, "sip:bob@b.example.com");
    assert!(
        store(&state, "sip:proxy-b.b.example.com")
            .sessions
            .is_empty()
    );
    for (who, s, role, peer) in [
        ("alice", &alice, Role::Ua, "sip:bob@b.example.com"),
        ("proxy-a", &proxy_a, Role::Relay, "sip:alice@a.example.com"),
        ("bob", &bob, Role::Ua, "sip:alice@a.example.com"),
    ] {
        assert_eq!(s.sessions.len(), 1, "{who}");
        let e = &s.sessions[0];
        assert_eq!(e.call_id, call_id, "{who}");
        assert_eq!(e.role, role, "{who}");
        assert_eq!(e.peer.as_deref(), Some(peer), "{who}");
        assert_eq!(e.reference.len(), 32, "{who}");
        assert_eq!(e.kek.len(), 64, "{who}");
        assert_eq!(e.uses, 0);
    }
    assert_eq!(alice.sessions[0].reference, bob.sessions[0].reference);
    assert_eq!(alice.sessions[0].kek, bob.sessions[0].kek);
    assert_eq!(proxy_a.sessions[0].reference, bob.sessions[0].reference);
    assert_eq!(proxy_a.sessions[0].kek, bob.sessions[0].kek);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = state.join("sip_bob@b.example.com");
        for f in std::fs::read_dir(dir.join("sessions")).unwrap() {
            let file = std::fs::metadata(f.unwrap().path()).unwrap();
            assert_eq!(file.permissions().mode() & 0o777, 0o600);
        }
        let d = std::fs::metadata(&dir).unwrap();
        assert_eq!(d.permissions().mode() & 0o777, 0o700);
    }
}

/// `sipseal build invite --seal` for a new call, as a child process.
fn seal_new_call(state: &Path, seed: usize) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_sipseal"))
        .current_dir(common::repo())
        .args(["--seed", &format!("{seed:04x}"), "build", "invite"])
        .args([
            "--from",
            "sip:alice@a.example.com",
            "--to",
            "sip:bob@b.example.com",
        ])
        .args([
            "--sdp",
            "samples/offer.sdp",
            "--seal",
            "--peer",
            "keys/bob/cert.pem",
        ])
        .arg("--state")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn thirty_two_writers_at_once_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..32).map(|i| seal_new_call(tmp.path(), i)).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let s = store(tmp.path(), "sip:alice@a.example.com");
    assert_eq!(s.sessions.len(), 32);
    let mut ids: Vec<_> = s.sessions.iter().map(|e| e.call_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 32, "32 different calls");
    // No temporary file is left behind; one file per session.
    let dir = tmp.path().join("sip_alice@a.example.com");
    let names = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    assert!(names(&dir.join("tmp")).is_empty());
    assert!(!names(&dir).iter().any(|n| n.starts_with(".sipseal-")));
    assert_eq!(names(&dir.join("sessions")).len(), 32);
}

#[test]
fn writers_killed_mid_way_and_stale_temporaries_lose_no_entry() {
    let tmp = tempfile::tempdir().unwrap();
    // What a crash during an earlier write leaves: a half-written
    // temporary (key material), where this and earlier versions put them.
    let dir = tmp.path().join("sip_alice@a.example.com");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    for stale in [
        dir.join(".sipseal-crashed"),
        dir.join("tmp/.sipseal-crashed"),
    ] {
        std::fs::write(&stale, "version: 2\nsessions:\n- call_id: x\n  refer").unwrap();
    }
    for i in 0..4 {
        assert!(
            seal_new_call(tmp.path(), 1000 + i)
                .wait()
                .unwrap()
                .success()
        );
    }
    // Writers killed at different points of their run.
    let mut finished = 4;
    for i in 0..24u64 {
        let mut c = seal_new_call(tmp.path(), 2000 + i as usize);
        std::thread::sleep(std::time::Duration::from_micros(500 * i));
        let _ = c.kill();
        if c.wait().unwrap().success() {
            finished += 1;
        }
    }
    assert!(
        finished < 28,
        "no writer was killed: the test proves nothing"
    );
    // The store parses, and holds every call that a writer completed (a
    // killed writer either stored its call whole or not at all).
    let s = store(tmp.path(), "sip:alice@a.example.com");
    assert!(
        s.sessions.len() >= finished,
        "{} < {finished}",
        s.sessions.len()
    );
    assert!(s.sessions.len() <= 28);
    for e in &s.sessions {
        assert_eq!(e.kek.len(), 64);
    }
    // S6: the next writer removed the stale temporaries (they hold keys).
    assert!(seal_new_call(tmp.path(), 3000).wait().unwrap().success());
    assert!(!dir.join(".sipseal-crashed").exists());
    let left: Vec<_> = std::fs::read_dir(dir.join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A call set up at `T0`: alice sealed the INVITE for bob, bob opened it.
struct Call {
    tmp: tempfile::TempDir,
    state: std::path::PathBuf,
    call_id: String,
}

const T0: &str = "2026-03-01T10:00:00Z";

fn run_in(state: &Path, args: &[&str]) -> std::process::Output {
    sipseal()
        .args(args)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap()
}

fn ok_in(state: &Path, args: &[&str]) -> Vec<u8> {
    let out = run_in(state, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Call {
    fn new() -> Call {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let invite = ok_in(
            &state,
            &[
                "--now",
                T0,
                "seal",
                "samples/invite.sip",
                "--peer",
                "keys/bob/cert.pem",
            ],
        );
        let call_id = Message::parse(&invite)
            .unwrap()
            .call_id()
            .unwrap()
            .to_owned();
        let path = tmp.path().join("invite.sip");
        std::fs::write(&path, &invite).unwrap();
        ok_in(
            &state,
            &[
                "--now",
                T0,
                "open",
                path.to_str().unwrap(),
                "--identity",
                "keys/bob",
            ],
        );
        // A plaintext MESSAGE of the same call, from alice, to seal later.
        let text = String::from_utf8(std::fs::read("samples/invite.sip").unwrap()).unwrap();
        let msg = Message::parse(text.as_bytes()).unwrap();
        let mut m = msg.clone();
        m.set_start_line(sipseal::sip::StartLine::Request {
            method: "MESSAGE".into(),
            uri: "sip:bob@b.example.com".into(),
        });
        m.set_header("CSeq", "2 MESSAGE");
        m.remove_headers("Contact");
        m.set_header("Content-Type", "text/plain");
        m.set_body(b"hello\r\n".to_vec());
        std::fs::write(tmp.path().join("message.sip"), m.to_bytes()).unwrap();
        Call {
            tmp,
            state,
            call_id,
        }
    }

    fn file(&self, name: &str) -> String {
        self.tmp.path().join(name).to_str().unwrap().to_owned()
    }

    /// `seal --session` of the MESSAGE at `now`, written to `out`.
    fn seal_session(&self, now: &str, extra: &[&str], out: &str) -> std::process::Output {
        let mut args = vec!["--now", now, "seal", "--session"];
        let msg = self.file("message.sip");
        let out = self.file(out);
        args.extend([msg.as_str(), "-o", out.as_str()]);
        args.extend_from_slice(extra);
        run_in(&self.state, &args)
    }

    fn open_as_bob(&self, now: &str, file: &str) -> std::process::Output {
        let f = self.file(file);
        run_in(
            &self.state,
            &[
                "--now",
                now,
                "open",
                &f,
                "--identity",
                "keys/bob",
                "--body-only",
            ],
        )
    }

    fn alice(&self) -> common::Session {
        store(&self.state, "sip:alice@a.example.com").sessions[0].clone()
    }
}

fn kekids(path: &str) -> Vec<String> {
    let msg = Message::parse(&std::fs::read(path).unwrap()).unwrap();
    let env =
        sipseal::envelope::Envelope::parse(&sipseal::sealing::sealed_body(&msg).unwrap()).unwrap();
    env.recipients
        .iter()
        .map(|ri| match ri {
            cms::enveloped_data::RecipientInfo::Kekri(k) => {
                hex::encode(k.kek_id.kek_identifier.as_bytes())
            }
            _ => "ktri".into(),
        })
        .collect()
}

#[test]
fn the_key_is_renewed_after_max_uses_and_the_old_one_honoured_for_the_grace_time() {
    let call = Call::new();
    let first = call.alice();
    // Two messages under the key, then the third is due for a rekey.
    for i in 0..2 {
        let out = call.seal_session(T0, &["--max-uses", "2"], &format!("m{i}.sip"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            kekids(&call.file(&format!("m{i}.sip"))),
            vec![first.reference.clone()]
        );
    }
    assert_eq!(call.alice().uses, 2);
    // Without recipients it cannot send the full envelope a rekey needs.
    let out = call.seal_session(T0, &["--max-uses", "2"], "m2.sip");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has sealed 2 messages") && err.contains("--peer"),
        "{err}"
    );
    assert!(!std::path::Path::new(&call.file("m2.sip")).exists());
    // With them it rekeys, and says so.
    let out = call.seal_session(
        T0,
        &["--max-uses", "2", "--peer", "keys/bob/cert.pem"],
        "m2.sip",
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rekey:"), "{err}");
    assert_eq!(kekids(&call.file("m2.sip")), vec!["ktri".to_owned()]);
    let second = call.alice();
    assert_ne!(second.reference, first.reference);
    assert_eq!(second.uses, 0);
    assert_eq!(second.previous.as_ref().unwrap().reference, first.reference);

    // bob opens the rekey at T0: the old key stays for 32 s.
    assert!(call.open_as_bob(T0, "m2.sip").status.success());
    // The next message goes under the new key.
    assert!(call.seal_session(T0, &[], "m3.sip").status.success());
    assert_eq!(kekids(&call.file("m3.sip")), vec![second.reference.clone()]);
    assert!(
        call.open_as_bob("2026-03-01T10:05:00Z", "m3.sip")
            .status
            .success()
    );

    // m1, sealed under the old key and still in flight, opens within the
    // grace time and not after it.
    let within = call.open_as_bob("2026-03-01T10:00:31Z", "m1.sip");
    assert!(
        within.status.success(),
        "{}",
        String::from_utf8_lossy(&within.stderr)
    );
    assert_eq!(within.stdout, b"hello\r\n");
    let after = call.open_as_bob("2026-03-01T10:00:33Z", "m1.sip");
    assert_eq!(after.status.code(), Some(1));
    let err = String::from_utf8_lossy(&after.stderr);
    assert!(
        err.contains("unknown session key") && err.contains("493"),
        "{err}"
    );
    assert!(after.stdout.is_empty());
    // --grace at open time does not stretch a replaced key: its `until`
    // was fixed when bob stored the new key.
    let wide = run_in(
        &call.state,
        &[
            "--now",
            "2026-03-01T10:00:33Z",
            "open",
            &call.file("m1.sip"),
            "--identity",
            "keys/bob",
            "--grace",
            "60s",
        ],
    );
    assert_eq!(wide.status.code(), Some(1));
}

#[test]
fn the_key_is_renewed_after_max_age_and_refused_once_expired() {
    let call = Call::new();
    // Within the age: the session key.
    let out = call.seal_session("2026-03-01T10:29:00Z", &["--max-age", "30m"], "young.sip");
    assert!(out.status.success());
    assert_eq!(kekids(&call.file("young.sip")).len(), 1);
    let out = call.seal_session(
        "2026-03-01T10:30:00Z",
        &["--max-age", "30m", "--peer", "keys/bob/cert.pem"],
        "old.sip",
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-age"));
    assert_eq!(kekids(&call.file("old.sip")), vec!["ktri".to_owned()]);
    // bob's key for the first envelope expires 24 h after he stored it
    // (plus the grace time): "young" no longer opens the next day.
    assert!(
        call.open_as_bob("2026-03-01T10:29:00Z", "young.sip")
            .status
            .success()
    );
    let out = call.open_as_bob("2026-03-02T10:01:00Z", "young.sip");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn openssl_opens_a_session_message_with_the_exported_key() {
    let call = Call::new();
    assert!(
        call.seal_session(T0, &["--body-only"], "m.der")
            .status
            .success()
    );
    let exported = ok_in(
        &call.state,
        &[
            "session",
            "export",
            &call.call_id,
            "--as",
            "sip:bob@b.example.com",
        ],
    );
    let exported = String::from_utf8(exported).unwrap();
    let words: Vec<&str> = exported.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{exported}");
    assert_eq!(words[0], "-secretkey");
    assert_eq!(words[2], "-secretkeyid");
    assert_eq!(words[3], call.alice().reference);
    let decrypt = |key: &[&str]| {
        common::openssl()
            .args([
                "cms",
                "-decrypt",
                "-inform",
                "DER",
                "-in",
                &call.file("m.der"),
            ])
            .args(key)
            .output()
            .unwrap()
    };
    let out = decrypt(&words);
    common::ok(&out);
    assert_eq!(out.stdout, b"Content-Type: text/plain\r\n\r\nhello\r\n");
    // A wrong key fails in openssl too: the test can tell.
    let mut wrong = words.clone();
    let bad = "00".repeat(32);
    wrong[1] = &bad;
    let out = decrypt(&wrong);
    assert!(!out.status.success());
}

#[test]
fn session_list_show_and_forget() {
    let call = Call::new();
    let list = String::from_utf8(ok_in(&call.state, &["session", "list"])).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let alice = call.alice();
    for (line, who) in lines
        .iter()
        .zip(["sip:alice@a.example.com", "sip:bob@b.example.com"])
    {
        let cols: Vec<&str> = line.split(' ').collect();
        assert_eq!(
            cols,
            vec![
                call.call_id.as_str(),
                alice.reference.as_str(),
                "ua",
                "0",
                "2026-03-02T10:00:00Z",
                who
            ]
        );
    }
    // Ambiguous without --as; the KEK never shows in show.
    let out = run_in(&call.state, &["session", "show", &call.call_id]);
    assert_eq!(out.status.code(), Some(2));
    let show = ok_in(
        &call.state,
        &[
            "session",
            "show",
            &alice.reference,
            "--as",
            "sip:bob@b.example.com",
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&show).unwrap();
    assert_eq!(v["call_id"], call.call_id.as_str());
    assert_eq!(v["peer"], "sip:alice@a.example.com");
    assert!(!String::from_utf8_lossy(&show).contains(&alice.kek));
    let forget_bob = [
        "session",
        "forget",
        &call.call_id,
        "--as",
        "sip:bob@b.example.com",
    ];
    ok_in(&call.state, &forget_bob);
    assert!(
        store(&call.state, "sip:bob@b.example.com")
            .sessions
            .is_empty()
    );
    assert_eq!(
        store(&call.state, "sip:alice@a.example.com").sessions.len(),
        1
    );
    let out = run_in(&call.state, &forget_bob);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn thirty_two_senders_at_once_count_every_use() {
    let call = Call::new();
    let children: Vec<_> = (0..32)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_sipseal"))
                .current_dir(common::repo())
                .args(["--now", T0, "seal", "--session", &call.file("message.sip")])
                .args(["-o", &call.file(&format!("p{i}.sip"))])
                .arg("--state")
                .arg(&call.state)
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(call.alice().uses, 32);
}

/// S6: anyone can seal to a relay's certificate. A sender no one vouched
/// for fills at most 32 places of the relay's store; the report says when
/// a key was not stored. And a world-readable PSK file gets a warning.
#[test]
fn an_unvouched_sender_cannot_fill_a_relays_store() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let report = tmp.path().join("r.txt");
    let mut last = String::new();
    for i in 0..33 {
        let invite = sipseal()
            .args(["--seed", &format!("{:04x}", 0x5600 + i), "build", "invite"])
            .args([
                "--from",
                "sip:mallory@m.example.com",
                "--to",
                "sip:bob@b.example.com",
            ])
            .args([
                "--sdp",
                "samples/offer.sdp",
                "--seal",
                "--peer",
                "keys/bob/cert.pem",
            ])
            .args(["--disclose", "keys/proxy-a/cert.pem", "--state"])
            .arg(tmp.path().join("mallory"))
            .output()
            .unwrap();
        let path = common::write(tmp.path(), "invite.sip", &common::ok(&invite));
        let out = run_in(
            &state,
            &[
                "proxy",
                path.to_str().unwrap(),
                "--identity",
                "keys/proxy-a",
                "--report",
                report.to_str().unwrap(),
            ],
        );
        common::ok(&out);
        last = std::fs::read_to_string(&report).unwrap();
    }
    assert!(
        last.contains(
            "session key not stored: sip:mallory@m.example.com already holds 32 sessions"
        ),
        "{last}"
    );
    assert_eq!(
        common::stored_sessions(&state, "sip:proxy-a.a.example.com")
            .sessions
            .len(),
        32
    );
    // A PSK file readable by others: a warning (the demo PSK is exempt).
    let psk = tmp.path().join("psk.yaml");
    std::fs::write(&psk, "id: mine\nkey: 000102030405060708090a0b0c0d0e0f\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = sipseal()
            .args(["seal", "samples/invite.sip", "--disclose"])
            .arg(format!("psk:{}", psk.display()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is readable by group/other (mode 644)"),
            "{err}"
        );
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = sipseal()
            .args(["seal", "samples/invite.sip", "--disclose"])
            .arg(format!("psk:{}", psk.display()))
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out.stderr).contains("readable by group"));
    }
}
