//! S4: hostile input costs linear time and bounded memory; limits hold
//! before anything deeper is parsed. (Timings are in benches/hostile.sh,
//! not here: these tests check the behaviour that keeps the cost linear.)

mod common;

use common::{Succeeds, sipseal, write};

/// samples/invite.sip's header section without its Content-* lines.
fn head() -> String {
    let text = String::from_utf8(common::file("samples/invite.sip")).unwrap();
    let head = text.split("\r\n\r\n").next().unwrap().to_owned();
    head.lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-"))
        .map(|l| format!("{l}\r\n"))
        .collect()
}

fn run(args: &[&str], input: &std::path::Path) -> std::process::Output {
    sipseal().args(args).arg(input).output().unwrap()
}

#[test]
fn a_message_over_max_message_size_is_refused_before_parsing() {
    let tmp = tempfile::tempdir().unwrap();
    let body = "a".repeat(1024 * 1024);
    let msg = format!(
        "{}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        head(),
        body.len()
    );
    let path = write(tmp.path(), "big.sip", msg.as_bytes());
    let out = run(&["inspect"], &path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is larger than 1048576 bytes (--max-message-size)"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // Standard input too, without reading it all.
    let out = sipseal()
        .args(["inspect", "-"])
        .write_stdin(msg.clone())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // Raised, it is read.
    sipseal()
        .args(["inspect", "--max-message-size", "2MiB"])
        .arg(&path)
        .succeeds();
    let out = run(&["inspect", "--max-message-size", "lots"], &path);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_flood_of_header_lines_is_refused_while_framing() {
    let tmp = tempfile::tempdir().unwrap();
    let flood = "X: y\r\n".repeat(200_000);
    let msg = format!("{}{flood}Content-Length: 0\r\n\r\n", head());
    let path = write(tmp.path(), "flood.sip", msg.as_bytes());
    for cmd in [
        &["inspect", "--max-message-size", "4MiB"][..],
        &[
            "proxy",
            "--identity",
            "keys/proxy-a",
            "--max-message-size",
            "4MiB",
        ],
    ] {
        let out = run(cmd, &path);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("more than 1000 header fields"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn deep_multipart_nesting_stops_at_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut inner = "Content-Type: text/plain\r\n\r\nhi".to_owned();
    for i in 0..2000 {
        inner = format!(
            "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n{inner}\r\n--b{i}--"
        );
    }
    let body = format!(
        "--sig\r\n{inner}\r\n--sig\r\nContent-Type: application/pkcs7-signature\r\n\r\nxx\r\n--sig--\r\n"
    );
    let msg = format!(
        "{}Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=sig\r\nContent-Length: {}\r\n\r\n{body}",
        head(),
        body.len()
    );
    let path = write(tmp.path(), "nested.sip", msg.as_bytes());
    let out = run(&["proxy", "--identity", "keys/proxy-a"], &path);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("multipart nesting deeper than 8 levels")
    );
    let text = String::from_utf8(common::ok(&run(&["inspect"], &path))).unwrap();
    assert!(
        text.contains("problem: body: multipart nesting deeper than 8 levels"),
        "{text}"
    );
}

/// Many designations of this relay are all taken off, in one pass.
#[test]
fn many_designations_of_this_relay_all_go() {
    let tmp = tempfile::tempdir().unwrap();
    let sdp = String::from_utf8(common::file("samples/offer.sdp")).unwrap();
    let pib = "Proxy-Inspect-Body: <sip:proxy-a.a.example.com>;access=read\r\n".repeat(900);
    let msg = format!(
        "{}{pib}Proxy-Inspect-Body: <sip:proxy-b.b.example.com>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        head(),
        sdp.len()
    );
    let path = write(tmp.path(), "pib.sip", msg.as_bytes());
    let out = String::from_utf8(common::ok(&run(
        &["proxy", "--identity", "keys/proxy-a"],
        &path,
    )))
    .unwrap();
    assert!(!out.contains("proxy-a.a.example.com>;access"), "{out}");
    assert_eq!(
        out.matches("Proxy-Inspect-Body: <sip:proxy-b.b.example.com>")
            .count(),
        1
    );
}
