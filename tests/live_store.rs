//! The live relay's stores: two relay processes sharing one Redis (a
//! session recorded at one opens a message at the other), and a relay
//! killed with SIGKILL under load, restarted on the same state directory:
//! the store reads whole, and the calls in progress find their keys.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::live::{Daemon, Redis, answering, sealed_call, tcp_sink};
use common::{Succeeds, s, sipseal};

/// Each report line of a relay (JSON).
fn reports(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The relay's report line for a 200 it took, once it is there.
fn report_of_200(path: &Path) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = reports(path).into_iter().find(|r| r["status"] == 200) {
            return r;
        }
        assert!(Instant::now() < until, "no report of the 200 in {path:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connect(port: u16) -> std::net::TcpStream {
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()
}

#[test]
fn two_relays_behind_one_address_share_session_keys_in_redis() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let call = sealed_call(d, "shared-1@a.example.com");
    let redis = Redis::start();
    let (sink, forwarded) = tcp_sink();
    let next = format!("tcp:127.0.0.1:{sink}");
    let start = |name: &str| {
        let report = d.join(format!("{name}.jsonl"));
        let relay = Daemon::start(
            d,
            name,
            &[
                "relay",
                "--listen",
                "tcp:127.0.0.1:0",
                "--identity",
                "keys/proxy-a-ec",
                "--state",
                &redis.url(),
                // Both are the one address the path names.
                "--via",
                "proxy-a.a.example.com:5060",
                "--next",
                &next,
                "--report",
                s(&report),
            ],
        );
        (relay, report)
    };
    let (one, report_one) = start("relay-1");
    let (two, report_two) = start("relay-2");

    // The INVITE reaches relay-1, which opens it (designated) and keeps
    // its session key in Redis.
    connect(one.port("tcp")).write_all(&call.invite).unwrap();
    let invite = forwarded.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(reports(&report_one)[0]["opened"], true);
    // The 200, sealed under that session key, comes back through relay-2:
    // the key is found there, and so is the branch relay-1 made.
    connect(two.port("tcp"))
        .write_all(&answering(&call.answer, &invite))
        .unwrap();
    let answer = report_of_200(&report_two);
    assert_eq!(
        answer["decision"],
        "session",
        "{answer}\n{}",
        two.log_text()
    );
    assert_eq!(answer["opened"], true, "{answer}");
    assert!(
        answer["sdp"].as_str().unwrap().contains("198.51.100.20"),
        "{answer}"
    );
    assert!(two.logged(r#""status":200"#), "{}", two.log_text());
    assert!(!two.log_text().contains("drop:"), "{}", two.log_text());
}

#[test]
fn a_relay_killed_under_load_restarts_on_a_whole_store_and_finds_its_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let call = sealed_call(d, "crash-0@a.example.com");
    let state = d.join("relay-state");
    let (sink, forwarded) = tcp_sink();
    let next = format!("tcp:127.0.0.1:{sink}");
    // alice sends from here (the imposture check vouches for her, so her
    // sessions are not capped at the 32 of a sender no one vouched for).
    let bindings = common::write(
        d,
        "bindings.yaml",
        b"sip:alice@a.example.com: [127.0.0.1]\n",
    );
    let args = |report: &Path| -> Vec<String> {
        [
            "relay",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a-ec",
            "--state",
            s(&state),
            "--next",
            &next,
            "--bindings",
            s(&bindings),
            // The same Via before and after the restart (as the same port
            // would give): the responses to what it sent are its own.
            "--via",
            "proxy-a.a.example.com:5060",
            "--quiet",
            "--report",
            s(report),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let first_report = d.join("first.jsonl");
    let a = args(&first_report);
    let mut relay = Daemon::start(
        d,
        "relay",
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // The same sealed INVITE under new Call-IDs, as fast as the relay
    // takes them (each one a session key it records), until it dies.
    let (head, body) = common::live::split(&call.invite);
    let port = relay.port("tcp");
    let loader = std::thread::spawn(move || {
        let mut conn = connect(port);
        let mut sent = 0;
        for i in 0..5_000 {
            let mut msg = head
                .replace("crash-0@a.example.com", &format!("crash-{i}@a.example.com"))
                .into_bytes();
            msg.extend_from_slice(b"\r\n\r\n");
            msg.extend_from_slice(&body);
            if conn.write_all(&msg).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let mut passed = Vec::new();
    while passed.len() < 100 {
        match forwarded.recv_timeout(Duration::from_secs(20)) {
            Ok(m) => passed.push(m),
            Err(_) => panic!(
                "{} forwarded, then nothing\n{}",
                passed.len(),
                relay.log_text()
            ),
        }
    }
    relay.kill9();
    let sent = loader.join().unwrap();
    while let Ok(m) = forwarded.recv_timeout(Duration::from_millis(200)) {
        passed.push(m);
    }
    assert!(
        passed.len() >= 100 && passed.len() < 5_000,
        "{} of {sent}",
        passed.len()
    );

    // The store reads whole, and every call forwarded before the kill has
    // its key (written through before the INVITE went on).
    let listed = sipseal()
        .args(["session", "list", "--state", s(&state), "--format", "json"])
        .succeeds()
        .stdout;
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    let text = listed.to_string();
    for m in &passed {
        let call_id = m.call_id().unwrap();
        assert!(text.contains(call_id), "{call_id} forwarded but not stored");
    }

    // Restarted, the relay opens the first call's 200 with its session key.
    let second_report = d.join("second.jsonl");
    let a = args(&second_report);
    let relay = Daemon::start(
        d,
        "relay-again",
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // Calls are relayed side by side: the first call's INVITE need not be
    // the first forwarded.
    let first = passed
        .iter()
        .find(|m| m.call_id().ok() == Some("crash-0@a.example.com"))
        .expect("the first call was forwarded");
    connect(relay.port("tcp"))
        .write_all(&answering(&call.answer, first))
        .unwrap();
    let answer = report_of_200(&second_report);
    assert_eq!(answer["decision"], "session", "{answer}");
    assert_eq!(answer["opened"], true, "{answer}");
}

/// The Redis store counts against a sender's cap only what was stored
/// under one, as the file store does: three vouched-for sessions of
/// alice, then two more unvouched, and the third unvouched is capped.
#[test]
fn redis_counts_only_capped_sessions_against_a_cap() {
    use sipseal::session::{Entry, Policy, Recorded, Role};
    use sipseal::state::{RedisStore, SessionStore};
    let redis = Redis::start();
    let store = RedisStore::open(&format!("redis://127.0.0.1:{}", redis.port)).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let grace = time::Duration::minutes(5);
    let peer = Some("sip:alice@a.example.com".to_owned());
    let entry = |i: u8| {
        let call = format!("c{i}");
        Entry::new(
            &call,
            &[i; 32],
            Role::Relay,
            peer.clone(),
            now,
            &Policy::default(),
        )
    };
    for i in 1..=3 {
        let r = store
            .record_capped("r", entry(i), now, grace, None)
            .unwrap();
        assert_eq!(r, Recorded::New);
    }
    let capped: Vec<_> = (4..=6)
        .map(|i| {
            store
                .record_capped("r", entry(i), now, grace, Some(2))
                .unwrap()
        })
        .collect();
    assert_eq!(capped, [Recorded::New, Recorded::New, Recorded::Capped]);
    assert_eq!(store.load("r").unwrap().sessions.len(), 5);
}

/// Issue 27 item 3: `relay --record DIR` hands a recorder the report lines
/// (SDP, SRTP keys) of the calls a designation let it record
/// (`seal --record`: `purpose=record`), the offer and the answer under
/// the session key alike, and never a line of any other call.
#[test]
fn a_relay_spools_only_the_calls_it_may_record() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let recorded = common::live::sealed_call_with(d, "rec-1@a.example.com", &["--record"]);
    let other = sealed_call(d, "rec-2@a.example.com");
    let (sink, forwarded) = tcp_sink();
    let next = format!("tcp:127.0.0.1:{sink}");
    let (report, spool) = (d.join("report.jsonl"), d.join("rec"));
    let relay = Daemon::start(
        d,
        "relay",
        &[
            "relay",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a-ec",
            "--next",
            &next,
            "--report",
            s(&report),
            "--record",
            s(&spool),
        ],
    );
    let port = relay.port("tcp");
    for call in [&recorded, &other] {
        connect(port).write_all(&call.invite).unwrap();
        let invite = forwarded.recv_timeout(Duration::from_secs(10)).unwrap();
        // The 200 goes back the way the INVITE came (its Via), not to the sink.
        connect(port)
            .write_all(&answering(&call.answer, &invite))
            .unwrap();
    }
    // Both calls were opened (the report has all four messages)...
    let until = Instant::now() + Duration::from_secs(10);
    while reports(&report).len() < 4 {
        assert!(Instant::now() < until, "{}", relay.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let all = reports(&report);
    assert!(all.iter().all(|r| r["opened"] == true), "{all:?}");
    assert_eq!(all[0]["record"], true, "{}", all[0]);
    assert!(all[2].get("record").is_none(), "{}", all[2]);
    // ...but only the call sealed with --record is in the spool: its offer
    // (designated) and its answer (under the session key).
    let lines = reports(&spool.join("keys.jsonl"));
    let seen: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["call_id"].as_str().unwrap(),
                l["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("rec-1@a.example.com", "designated"),
            ("rec-1@a.example.com", "session")
        ]
    );
    assert!(lines[1]["sdp"].as_str().unwrap().contains("198.51.100.20"));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spool), 0o700);
    assert_eq!(mode(&spool.join("keys.jsonl")), 0o600);
}
