//! `sipseal send` on the wire against the real SIPp (Debian's sip-tester):
//! an INVITE over UDP and over TCP to SIPp's built-in UAS (every response
//! printed as it arrives, exit 0 on the 200), a REGISTER answered by a
//! SIPp scenario that challenges with MD5 Digest and checks the retry with
//! SIPp's own `verifyauth` (the right password gets 200, a wrong one 403,
//! exit 5), and no one listening (exit 4 after --timeout).

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
    let reg = common::write(d, "register.sip", &register);
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

#[test]
fn with_no_one_listening_send_gives_up_after_its_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = invite(tmp.path());
    // A port nothing listens on: bound here, then closed.
    let free = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = sipseal()
        .args([
            "send",
            s(&inv),
            "--next",
            &format!("udp:127.0.0.1:{free}"),
            "--timeout",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("no final response within 1 s"),
        "{}",
        text(&out)
    );
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
