//! The session store through the built binary: the derivation against
//! `openssl kdf`, sender, relay and receiver agreeing on the session key
//! without anything on the wire, 32 parallel writers, and writers killed
//! mid-way losing nothing that was stored.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::sipseal;
use sipseal::session::{Role, Sessions, Store, derive};
use sipseal::sip::Message;
use sipseal::state::StateDir;

fn openssl_hkdf(len: usize, key: &[u8], salt: &[u8], info: &str) -> Vec<u8> {
    let mut cmd = Command::new("openssl");
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
    let dir = StateDir {
        root: state.to_owned(),
    }
    .identity_dir(identity);
    Store::at(&dir).load().unwrap()
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
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
        let file = std::fs::metadata(dir.join("sessions.yaml")).unwrap();
        assert_eq!(file.permissions().mode() & 0o777, 0o600);
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
    // No temporary file is left behind.
    let dir = tmp.path().join("sip_alice@a.example.com");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn writers_killed_mid_way_and_stale_temporaries_lose_no_entry() {
    let tmp = tempfile::tempdir().unwrap();
    // What a crash during an earlier write leaves: a half-written temporary.
    let dir = tmp.path().join("sip_alice@a.example.com");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".sipseal-crashed"),
        "version: 1\nsessions:\n- call_id: x\n  refer",
    )
    .unwrap();
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
}
