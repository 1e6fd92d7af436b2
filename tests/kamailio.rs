//! Kamailio 5.6 in the call path with `sipseal relay` (docs/SPEC.md §7): SIPp
//! calls (INVITE, 100/180, 200, ACK, BYE, 200) through a TCP-only relay
//! and a record-routing Kamailio in both orders, and through a relay that
//! finds its own TLS listener in a preloaded Route. Every dialog
//! completes, and the relay logs each message of each call once: no
//! loop, no lost ACK or BYE (the relay's Record-Route carries its
//! transport).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::live::{Background, Daemon, port};
use common::s;

const CALLS: usize = 10;

/// Kamailio in the foreground, its log in `dir/NAME.log`; SIGTERM on drop
/// (its main process stops its children).
struct Kamailio {
    child: Child,
    log: std::path::PathBuf,
}

impl Kamailio {
    fn start(dir: &Path, name: &str, listen: u16, next: &str) -> Kamailio {
        let template =
            std::fs::read_to_string(common::repo().join("tests/data/kamailio/proxy-rr.cfg"))
                .unwrap();
        let cfg = template
            .replace("@LISTEN@", &format!("127.0.0.1:{listen}"))
            .replace("@NEXT@", next)
            .replace("@ROUTE@", "")
            .replace("@MPATH@", "/usr/lib/x86_64-linux-gnu/kamailio/modules/");
        let cfg_path = common::write(dir, &format!("{name}.cfg"), cfg.as_bytes());
        let run = dir.join(format!("{name}.run"));
        std::fs::create_dir_all(&run).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new("kamailio")
            .args(["-f", s(&cfg_path), "-DD", "-E", "-Y", s(&run)])
            .args(["-P", s(&run.join("pid"))])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kamailio runs (.ci/run installs kamailio)");
        let k = Kamailio { child, log };
        // Listening once a TCP connection is taken.
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
            assert!(
                Instant::now() < until,
                "kamailio did not listen:\n{}",
                std::fs::read_to_string(&k.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        k
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sipp(d: &Path, args: &[&str]) -> Background {
    let child = Command::new("sipp")
        .args(args)
        .args(["-i", "127.0.0.1", "-m", &CALLS.to_string(), "-nostdin"])
        .args(["-timeout", "60s", "-timeout_error"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp runs (.ci/run installs sip-tester)");
    Background(child)
}

/// SIPp's UAS at `uas`, then its UAC to `first` over `transport`; both
/// exit codes.
fn calls(
    d: &Path,
    uas: u16,
    uac: u16,
    first: u16,
    transport: &str,
    header: &str,
) -> (Option<i32>, Option<i32>) {
    let data = common::repo().join("tests/data/kamailio");
    let mut server = sipp(
        d,
        &[
            "-sf",
            s(&data.join("uas.xml")),
            "-t",
            "t1",
            "-p",
            &uas.to_string(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let target = format!("sip:bob@127.0.0.1:{uas};transport=tcp");
    let mut client = sipp(
        d,
        &[
            &format!("127.0.0.1:{first}"),
            "-sf",
            s(&data.join("uac.xml")),
            "-t",
            transport,
            "-p",
            &uac.to_string(),
            "-r",
            "10",
            "-key",
            "target",
            &target,
            "-key",
            "hdr",
            header,
        ],
    );
    (client.wait(60), server.wait(20))
}

/// Each call's messages as the relay logged them (method/status), and
/// the decisions.
fn per_call(relay: &Daemon) -> BTreeMap<String, Vec<String>> {
    let mut calls: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in relay.log_lines() {
        let Some(call) = l["call_id"].as_str() else {
            continue;
        };
        let what = match l["status"].as_u64() {
            Some(code) => format!("{}/{code}", l["method"].as_str().unwrap_or_default()),
            None => format!("{}/req", l["method"].as_str().unwrap_or_default()),
        };
        assert!(
            l["decision"]
                .as_str()
                .is_some_and(|d| d.starts_with("forward TCP"))
                && l.get("send_error").is_none(),
            "{l}"
        );
        calls.entry(call.to_owned()).or_default().push(what);
    }
    calls
}

/// Every call completed, and the relay logged each of its messages once.
fn each_message_once(relay: &Daemon, exits: (Option<i32>, Option<i32>)) {
    assert_eq!(exits, (Some(0), Some(0)), "{}", relay.log_text());
    let calls = per_call(relay);
    assert_eq!(calls.len(), CALLS, "{}", relay.log_text());
    for (call, mut seen) in calls {
        // A stateful Kamailio downstream sends a 100: it passes once at most.
        seen.retain(|m| m != "INVITE/100");
        seen.sort();
        assert_eq!(
            seen,
            [
                "ACK/req",
                "BYE/200",
                "BYE/req",
                "INVITE/180",
                "INVITE/200",
                "INVITE/req"
            ],
            "{call}"
        );
    }
}

#[test]
fn relay_then_kamailio_over_tcp_every_dialog_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (uac, uas, kam) = (port(32_000, 0), port(32_000, 1), port(32_000, 2));
    let _kamailio = Kamailio::start(
        d,
        "kamailio",
        kam,
        &format!("sip:127.0.0.1:{uas};transport=tcp"),
    );
    let next = format!("tcp:127.0.0.1:{kam}");
    let relay = Daemon::start(
        d,
        "relay",
        &[
            "relay",
            // Its next hops (user agents, SIPp, Kamailio) are on the loopback.
            "--hop-allow",
            "127.0.0.0/8",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-b",
            "--no-dns",
            "--record-route",
            "--next",
            &next,
        ],
    );
    let exits = calls(d, uas, uac, relay.port("tcp"), "t1", "X-Scenario: A");
    // ACK and BYE came back through the TCP-only relay: Kamailio followed
    // its Record-Route, transport and all.
    each_message_once(&relay, exits);
}

#[test]
fn kamailio_then_relay_over_tcp_every_dialog_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (uac, uas, kam) = (port(32_000, 3), port(32_000, 4), port(32_000, 5));
    let next = format!("tcp:127.0.0.1:{uas}");
    let relay = Daemon::start(
        d,
        "relay",
        &[
            "relay",
            // Its next hops (user agents, SIPp, Kamailio) are on the loopback.
            "--hop-allow",
            "127.0.0.0/8",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-b",
            "--no-dns",
            "--record-route",
            "--next",
            &next,
        ],
    );
    let _kamailio = Kamailio::start(
        d,
        "kamailio",
        kam,
        &format!("sip:127.0.0.1:{};transport=tcp", relay.port("tcp")),
    );
    let exits = calls(d, uas, uac, kam, "t1", "X-Scenario: B");
    each_message_once(&relay, exits);
}

#[test]
fn a_route_naming_the_relays_tls_listener_is_its_own_and_kamailio_gets_the_request_once() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (uac, uas, kam) = (port(32_000, 6), port(32_000, 7), port(32_000, 8));
    let _kamailio = Kamailio::start(
        d,
        "kamailio",
        kam,
        &format!("sip:127.0.0.1:{uas};transport=tcp"),
    );
    let relay = Daemon::start(
        d,
        "relay",
        &[
            "relay",
            // Its next hops (user agents, SIPp, Kamailio) are on the loopback.
            "--hop-allow",
            "127.0.0.0/8",
            "--listen",
            "tcp:127.0.0.1:0",
            "--listen",
            "tls:127.0.0.1:0",
            "--identity",
            "keys/proxy-b",
            "--trust",
            "keys/ca/b.example.com/cert.pem",
            "--no-dns",
            "--record-route",
        ],
    );
    // The UAC preloads the relay's TLS listener, then Kamailio: the relay
    // takes its own entry off (whatever the transport) and goes to Kamailio.
    let header = format!(
        "Route: <sip:127.0.0.1:{};transport=tls;lr>, <sip:127.0.0.1:{kam};transport=tcp;lr>",
        relay.port("tls")
    );
    let exits = calls(d, uas, uac, relay.port("tcp"), "t1", &header);
    each_message_once(&relay, exits);
}
