//! `sipseal send` on the wire against the real SIPp (Debian's sip-tester):
//! an INVITE over UDP and over TCP to SIPp's built-in UAS (every response
//! printed as it arrives, exit 0 on the 200), a REGISTER answered by a
//! SIPp scenario that challenges with MD5 Digest and checks the retry with
//! SIPp's own `verifyauth` (the right password gets 200, a wrong one 403,
//! exit 5), and no one listening (exit 4, every transport alike). Each
//! failure prints the hint of the README's "When `send` fails" table.

mod common;

use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Succeeds, s, sipseal, text};

/// A port for this test binary's run and this `slot`.
fn port(slot: u16) -> u16 {
    20_000 + (std::process::id() % 8_000) as u16 * 4 + slot
}

/// SIPp on 127.0.0.1:`port` with `args`, once it listens; killed on drop.
struct Sipp(Child);

impl Sipp {
    fn start(port: u16, tcp: bool, args: &[&str]) -> Sipp {
        let mut cmd = Command::new("sipp");
        cmd.args(args)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                "1",
                "-nostdin",
            ])
            .args(["-timeout", "20s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if tcp {
            cmd.args(["-t", "t1"]);
        }
        let child = cmd
            .spawn()
            .expect("sipp runs (.ci/run installs sip-tester)");
        let sipp = Sipp(child);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            let up = if tcp {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            } else {
                UdpSocket::bind(("127.0.0.1", port)).is_err()
            };
            if up {
                return sipp;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sipp did not listen on {port}");
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn invite(d: &Path) -> std::path::PathBuf {
    let msg = sipseal()
        .args([
            "build",
            "invite",
            "--from",
            "sip:alice@a.example.com",
            "--to",
            "sip:bob@127.0.0.1",
        ])
        .args(["--sdp", "samples/offer-audio.sdp"])
        .succeeds()
        .stdout;
    common::write(d, "invite.sip", &msg)
}

fn statuses(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| l.starts_with("SIP/2.0 "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_invite_reaches_sipp_over_udp_and_tcp() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = invite(tmp.path());
    for (slot, tcp) in [(0, false), (1, true)] {
        let p = port(slot);
        let _sipp = Sipp::start(p, tcp, &["-sn", "uas"]);
        let next = format!("{}:127.0.0.1:{p}", if tcp { "tcp" } else { "udp" });
        let out = sipseal()
            .args(["send", s(&inv), "--next", &next, "--timeout", "10"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{next}: {}", text(&out));
        assert_eq!(
            statuses(&out.stdout),
            ["SIP/2.0 180 Ringing", "SIP/2.0 200 OK"],
            "{next}"
        );
        // The transport wrote the top Via: this socket, and rport.
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        let proto = if tcp { "TCP" } else { "UDP" };
        assert!(
            shown.contains(&format!("Via: SIP/2.0/{proto} 127.0.0.1:")),
            "{shown}"
        );
        assert!(shown.contains(";rport"), "{shown}");
    }
}

#[test]
fn a_digest_challenge_is_answered_as_sipp_checks_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let reg = register_message(d);
    common::write(d, "pw", b"alice-pw\n");
    common::write(d, "wrong", b"alice-PW\n");
    let scenario = common::repo().join("tests/data/sipp/uas-register-digest.xml");
    for (slot, password, code, last) in [
        (2, "pw", 0, "SIP/2.0 200 OK"),
        (3, "wrong", 5, "SIP/2.0 403 Forbidden"),
    ] {
        let p = port(slot);
        let _sipp = Sipp::start(p, false, &["-sf", s(&scenario)]);
        let out = sipseal()
            .args([
                "send",
                s(&reg),
                "--next",
                &format!("udp:127.0.0.1:{p}"),
                "--timeout",
                "10",
            ])
            .arg("--password-file")
            .arg(d.join(password))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{password}: {}", text(&out));
        assert_eq!(
            statuses(&out.stdout),
            ["SIP/2.0 401 Unauthorized", last],
            "{password}"
        );
    }
}

/// The exit code and hint the README's "When `send` fails" table gives
/// for the row `what` (the binary must print exactly that hint).
fn readme_row(what: &str) -> (i32, String) {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with(&format!("| {what} |")))
        .unwrap_or_else(|| panic!("README's \"When `send` fails\" has no row {what:?}"));
    let cols: Vec<&str> = row.split(" | ").collect();
    assert_eq!(cols.len(), 3, "{row}");
    let hint = cols[2].trim_end_matches(" |").trim_end_matches('|').trim();
    (cols[1].trim().parse().unwrap(), hint.to_owned())
}

/// `out` exited as the README's row `what` says, with its hint.
fn fails_as_the_readme_says(out: &std::process::Output, what: &str) {
    let (code, hint) = readme_row(what);
    assert_eq!(out.status.code(), Some(code), "{what}: {}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l == format!("hint: {hint}")),
        "{what}: no `hint: {hint}` in\n{stderr}"
    );
}

fn register_message(d: &Path) -> std::path::PathBuf {
    let register = sipseal()
        .args([
            "register",
            "--uri",
            "sip:alice@example.com",
            "--contact",
            "sip:alice@127.0.0.1:5066",
        ])
        .succeeds()
        .stdout;
    common::write(d, "register.sip", &register)
}

/// Issue 26: each SIP refusal `send` gets says what to do next, as the
/// README's table has it; SIPp plays the registrar or the callee.
#[test]
fn send_says_what_to_do_after_a_challenge_a_refusal_or_no_callee() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let reg = register_message(d);
    let inv = invite(d);
    let pw = common::write(d, "pw", b"alice-pw\n");
    let wrong = common::write(d, "wrong", b"alice-PW\n");
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let data = common::repo().join("tests/data/sipp");
    let digest = data.join("uas-register-digest.xml");
    let twice = data.join("uas-register-challenge-twice.xml");
    let answer = data.join("uas-answer.xml");
    let text_480 = std::fs::read_to_string(&answer).unwrap();
    let answer_404 = common::write(
        d,
        "uas-answer-404.xml",
        text_480
            .replace("480 Temporarily Unavailable", "404 Not Found")
            .as_bytes(),
    );
    let cases: [(u16, &Path, &Path, Option<&Path>, &str); 5] = [
        (5, &digest, &reg, None, "401 or 407, no `--password-file`"),
        (6, &digest, &reg, Some(&wrong), "403"),
        (
            7,
            &twice,
            &reg,
            Some(&pw),
            "401 or 407 again after the authorized retry",
        ),
        (8, &answer_404, &inv, None, "404 or 480"),
        (9, &answer, &inv, None, "404 or 480"),
    ];
    for (slot, scenario, request, password, what) in cases {
        let p = port(slot);
        let _sipp = Sipp::start(p, false, &["-sf", s(scenario)]);
        let mut cmd = sipseal();
        cmd.args(["send", s(request), "--next", &format!("udp:127.0.0.1:{p}")])
            .args(["--timeout", "10"]);
        if let Some(pw) = password {
            cmd.arg("--password-file").arg(pw);
        }
        let out = cmd.output().unwrap();
        fails_as_the_readme_says(&out, what);
        assert!(
            text(&out).contains("final response "),
            "{what}: {}",
            text(&out)
        );
    }
}

/// Issue 26: nothing listening reads the same on UDP (ICMP port
/// unreachable, twice: RFC 3261 §18.4), TCP and TLS (connection refused):
/// exit 4 and one hint, without waiting out --timeout; a next hop that
/// takes the request and never answers is a timeout, also exit 4.
#[test]
fn nothing_listening_reads_the_same_on_every_transport() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = invite(tmp.path());
    // Ports nothing listens on: bound here, then closed.
    let free_udp = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let free_tcp = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for next in [
        format!("udp:127.0.0.1:{free_udp}"),
        format!("tcp:127.0.0.1:{free_tcp}"),
        format!("tls:127.0.0.1:{free_tcp}"),
    ] {
        let started = Instant::now();
        let out = sipseal()
            .args(["send", s(&inv), "--next", &next, "--timeout", "60"])
            .args(["--trust", "keys/trust.pem", "--identity", "keys/alice"])
            .output()
            .unwrap();
        fails_as_the_readme_says(&out, "nothing listens at `--next`");
        assert!(
            text(&out).contains(&format!("could not reach {}", &next[..3])),
            "{next}: {}",
            text(&out)
        );
        // Not a timing test: with --timeout 60 it would wait a minute.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{next}: waited out the timeout"
        );
    }
    // A callee that rings and never answers: the next hop was reached.
    let p = port(10);
    let ring = common::repo().join("tests/data/sipp/uas-ring.xml");
    let _sipp = Sipp::start(p, false, &["-sf", s(&ring)]);
    let out = sipseal()
        .args(["send", s(&inv), "--next", &format!("udp:127.0.0.1:{p}")])
        .args(["--timeout", "2"])
        .output()
        .unwrap();
    fails_as_the_readme_says(
        &out,
        "a provisional response, then no final one within `--timeout`",
    );
    assert_eq!(statuses(&out.stdout), ["SIP/2.0 180 Ringing"]);
    // A socket that takes the request and says nothing.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = silent.local_addr().unwrap();
    let out = sipseal()
        .args([
            "send",
            s(&inv),
            "--next",
            &format!("udp:{at}"),
            "--timeout",
            "1",
        ])
        .output()
        .unwrap();
    fails_as_the_readme_says(&out, "no final response within `--timeout`");
    assert!(
        text(&out).contains("no final response within 1 s"),
        "{}",
        text(&out)
    );
    drop(silent);
}

#[test]
fn the_registrar_listens_on_udp_and_send_registers_with_it() {
    // The registrar workflow on the wire: a REGISTER with a CSR, its 401,
    // the authorized retry, the 200 with the certificate, which installs.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = |args: &[&str]| {
        sipseal().current_dir(d).args(args).succeeds();
    };
    run(&["keys", "ca", "--name", "CN=Example CA", "--out", "ca"]);
    run(&[
        "keys",
        "generate",
        "--uri",
        "sip:registrar.example.com",
        "--ca",
        "ca",
        "--out",
        "reg",
    ]);
    common::write(d, "pw", b"alice-pw\n");
    run(&[
        "registrar",
        "passwd",
        "--users",
        "users.yaml",
        "--realm",
        "example.com",
        "--user",
        "sip:alice@example.com",
        "--password-file",
        "pw",
    ]);
    run(&[
        "keys",
        "generate",
        "--type",
        "p256",
        "--uri",
        "sip:alice@example.com",
        "--csr",
        "--out",
        "alice",
    ]);
    let register = sipseal()
        .current_dir(d)
        .args([
            "register",
            "--uri",
            "sip:alice@example.com",
            "--contact",
            "sip:alice@127.0.0.1:5066",
        ])
        .args(["--identity", "alice"])
        .succeeds()
        .stdout;
    let reg = common::write(d, "register.sip", &register);
    let p = port(4);
    let mut server = Command::new(env!("CARGO_BIN_EXE_sipseal"))
        .current_dir(d)
        .env("SIPSEAL_STATE", d.join("state"))
        .args([
            "registrar",
            "--listen",
            &format!("udp:127.0.0.1:{p}"),
            "--max-requests",
            "2",
        ])
        .args([
            "--realm",
            "example.com",
            "--ca",
            "ca",
            "--identity",
            "reg",
            "--users",
            "users.yaml",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while UdpSocket::bind(("127.0.0.1", p)).is_ok() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = sipseal()
        .current_dir(d)
        .args([
            "send",
            s(&reg),
            "--next",
            &format!("udp:127.0.0.1:{p}"),
            "--timeout",
            "10",
        ])
        .args(["--password-file", "pw"])
        .output()
        .unwrap();
    let log = {
        // It stops by itself after two requests; if it did not get them,
        // it is stopped here, and the assertions below say why.
        let until = Instant::now() + Duration::from_secs(10);
        while server.try_wait().unwrap().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = server.kill();
        let status = server.wait().unwrap();
        let mut log = String::new();
        use std::io::Read;
        server
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        assert!(status.success(), "{log}");
        log
    };
    assert_eq!(out.status.code(), Some(0), "{}\n{log}", text(&out));
    assert_eq!(
        statuses(&out.stdout),
        ["SIP/2.0 401 Unauthorized", "SIP/2.0 200 OK"]
    );
    assert!(
        log.contains(r#""method":"REGISTER""#) && log.contains("certificate"),
        "{log}"
    );
    // The 200 as the registrar sent it installs alice's certificate.
    let at = out
        .stdout
        .windows(14)
        .position(|w| w == b"SIP/2.0 200 OK")
        .unwrap();
    common::write(d, "200.sip", &out.stdout[at..]);
    run(&[
        "register",
        "--accept",
        "200.sip",
        "--identity",
        "alice",
        "--trust",
        "ca/cert.pem",
    ]);
    assert!(d.join("alice/cert.pem").exists());
}
