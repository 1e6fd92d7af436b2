//! Malformed input: a clear one-line error naming the line or byte offset,
//! a hint, the documented exit code, nothing on stdout, no panic.

mod common;

use common::sipseal;

/// Run `inspect -` on `input`; returns stderr after checking exit 1 and empty stdout.
fn inspect_fails(input: &[u8]) -> String {
    let out = sipseal()
        .args(["inspect", "-"])
        .write_stdin(input)
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(out.stdout.is_empty(), "stdout must be empty on error");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "one error line and one hint line: {err}");
    assert!(
        lines[0].starts_with("error: standard input: line "),
        "{err}"
    );
    assert!(lines[1].starts_with("hint: "), "{err}");
    err
}

#[test]
fn truncated_header_section() {
    let err = inspect_fails(
        b"INVITE sip:bob@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: a",
    );
    assert!(
        err.contains("line 3") && err.contains("does not end with an empty line"),
        "{err}"
    );
}

#[test]
fn truncated_body_lying_content_length() {
    let err = inspect_fails(b"MESSAGE sip:b@h SIP/2.0\r\nContent-Length: 100\r\n\r\nshort");
    assert!(
        err.contains("Content-Length is 100 but only 5 bytes follow"),
        "{err}"
    );
}

#[test]
fn octets_after_content_length_are_discarded_with_a_warning() {
    // RFC 3261 §18.3: a file is read like a datagram.
    let out = sipseal()
        .args(["inspect", "-"])
        .write_stdin(&b"MESSAGE sip:b@h SIP/2.0\r\nl: 2\r\n\r\nlonger body"[..])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: standard input: 9 bytes after the body (Content-Length: 2) ignored"),
        "{err}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("body: 2 bytes"), "{text}");
}

#[test]
fn missing_start_line() {
    let err = inspect_fails(b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: a\r\n\r\n");
    assert!(err.contains("line 1 (byte 0): missing start line"), "{err}");
}

#[test]
fn header_without_colon() {
    let err =
        inspect_fails(b"OPTIONS sip:b@h SIP/2.0\r\nCall-ID: a\r\nThis is not a header\r\n\r\n");
    assert!(
        err.contains("line 3 (byte 37): header line without a colon"),
        "{err}"
    );
}

#[test]
fn non_utf8_header_bytes() {
    let err = inspect_fails(b"OPTIONS sip:b@h SIP/2.0\r\nSubject: caf\xc3\x28\r\n\r\n");
    assert!(
        err.contains("line 2 (byte 37): bytes that are not UTF-8"),
        "{err}"
    );
}

#[test]
fn empty_and_garbage_input() {
    inspect_fails(b"");
    inspect_fails(b"\x00\x01\x02 binary junk");
    inspect_fails(b"SIP/3.0 200 OK\r\n\r\n");
}

#[test]
fn io_and_usage_errors_have_their_codes() {
    let out = sipseal()
        .args(["inspect", "no/such/file.sip"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read no/such/file.sip"));
    // Usage: nothing to build, bad URI, bad header, bad seed, missing flags.
    sipseal().args(["build"]).assert().code(2);
    let out = sipseal()
        .args([
            "build",
            "invite",
            "--from",
            "alice",
            "--to",
            "sip:bob@b.example.com",
        ])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid From \"alice\"") && err.contains("hint: give a SIP URI"),
        "{err}"
    );
    sipseal()
        .args([
            "build", "options", "--from", "sip:a@h", "--to", "sip:b@h", "--header", "no colon",
        ])
        .assert()
        .code(2);
    sipseal()
        .args([
            "--seed", "xyz", "build", "options", "--from", "sip:a@h", "--to", "sip:b@h",
        ])
        .assert()
        .code(2);
    sipseal()
        .args(["build", "invite", "--from", "sip:a@h"])
        .assert()
        .code(2);
    sipseal()
        .args([
            "build",
            "message",
            "--from",
            "sip:a@h",
            "--to",
            "sip:b@h",
            "--body",
            "samples/message.txt",
        ])
        .assert()
        .code(2);
}

/// `build response 200 --request REQUEST`, which must fail (exit 1).
fn answering(request: &str) -> std::process::Output {
    sipseal()
        .args(["build", "response", "200", "--request", request])
        .assert()
        .code(1)
        .get_output()
        .clone()
}

#[test]
fn response_to_a_response_or_broken_request() {
    let out = answering("tests/golden/response-200.sip");
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be a SIP request"));
    let dir = tempfile::tempdir().unwrap();
    let req = dir.path().join("r.sip");
    std::fs::write(&req, b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
    let out = answering(req.to_str().unwrap());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing Call-ID header"));
}

#[test]
fn failed_build_leaves_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.sip");
    sipseal()
        .args([
            "build",
            "invite",
            "--from",
            "sip:a@h",
            "--to",
            "sip:b@h",
            "--sdp",
            "no/such.sdp",
            "-o",
            out.to_str().unwrap(),
        ])
        .assert()
        .code(4);
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary files left"
    );
}

#[test]
fn bad_spec_files() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, needle) in [
        (
            "unknown.yaml",
            "method: INVITE\nfrom: sip:a@h\nto: sip:b@h\ncolour: red\n",
            "unknown field `colour`",
        ),
        (
            "both.yaml",
            "method: INVITE\nresponse: 200\n",
            "exactly one of",
        ),
        ("noto.yaml", "method: INVITE\nfrom: sip:a@h\n", "needs `to`"),
        ("yaml.yaml", "method: [unclosed\n", "spec"),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = sipseal()
            .args(["build", "--spec", p.to_str().unwrap()])
            .assert()
            .code(2)
            .get_output()
            .clone();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle) || name == "yaml.yaml", "{name}: {err}");
        assert!(out.stdout.is_empty());
    }
}

/// Item 17: `open` on a signed (multipart/signed) message that is not
/// sealed names the outer content type, and its hint does not send the
/// user back to `open`.
#[test]
fn open_names_multipart_signed() {
    let signed = sipseal()
        .args(["sign", "samples/invite.sip", "--identity", "keys/alice"])
        .output()
        .unwrap();
    assert!(signed.status.success());
    let out = sipseal()
        .args(["open", "-", "--identity", "keys/bob"])
        .write_stdin(signed.stdout)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("Content-Type is multipart/signed and the part it signs is application/sdp"),
        "{err}"
    );
    assert!(!err.contains("sipseal open"), "{err}");
}

/// Item 20: `build --to 'sip:bob@...;tag=x1'`: the tag is To's header
/// parameter, not the URI's, and From carries one tag.
#[test]
fn a_bare_to_keeps_its_tag_on_the_header() {
    let out = sipseal()
        .args(["build", "bye", "--from", "sip:alice@a.example.com;tag=a1"])
        .args(["--to", "sip:bob@b.example.com;tag=x1", "--call-id", "c1"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("BYE sip:bob@b.example.com SIP/2.0\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nTo: <sip:bob@b.example.com>;tag=x1\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nFrom: <sip:alice@a.example.com>;tag=a1\r\n"),
        "{text}"
    );
}

/// The README's text for `what`, its line breaks read as spaces.
fn readme_says(what: &str) -> bool {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    readme
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .contains(what)
}

/// Issue 26: relays named and no peer is refused (the far end could not
/// open it), with the README's hint; `--no-peer` says it is meant.
#[test]
fn seal_without_a_peer_is_refused_unless_no_peer_says_so() {
    let out = sipseal()
        .args(["seal", "samples/invite.sip"])
        .args(["--disclose", "keys/proxy-a/cert.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing written");
    let err = String::from_utf8_lossy(&out.stderr);
    let hint = err
        .lines()
        .find_map(|l| l.strip_prefix("hint: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(err.contains("no --peer"), "{err}");
    assert!(
        readme_says(&format!("`hint: {hint}`")),
        "the README's hint differs: {hint}"
    );
    let out = sipseal()
        .args(["seal", "samples/invite.sip", "--no-peer"])
        .args(["--disclose", "keys/proxy-a/cert.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    // proxy-a opens it; bob cannot.
    let sealed = common::write(
        tempfile::tempdir().unwrap().keep().as_path(),
        "sealed.sip",
        &out.stdout,
    );
    sipseal()
        .args(["open", common::s(&sealed), "--identity", "keys/proxy-a"])
        .assert()
        .code(0);
    sipseal()
        .args(["open", common::s(&sealed), "--identity", "keys/bob"])
        .assert()
        .code(3);
    // --no-peer with a peer is a contradiction clap refuses.
    sipseal()
        .args(["seal", "samples/invite.sip", "--no-peer"])
        .args(["--peer", "keys/bob/cert.pem"])
        .assert()
        .code(2);
}

/// Issue 26: a password file others may read gets a warning wherever it
/// is read (`send`, `register --password-file`, `registrar passwd`), as
/// a PSK file and a private key do.
#[test]
fn password_files_readable_by_others_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pw = common::write(d, "alice.pw", b"alice-pw\n");
    let register = sipseal()
        .args(["register", "--uri", "sip:alice@a.example.com"])
        .args(["--contact", "sip:alice@127.0.0.1:5066"])
        .output()
        .unwrap()
        .stdout;
    common::write(d, "register.sip", &register);
    let challenge = sipseal()
        .current_dir(d)
        .args(["build", "response", "401", "--request", "register.sip"])
        .args([
            "--header",
            r#"WWW-Authenticate: Digest realm="a.example.com", nonce="n1", algorithm=MD5, qop="auth""#,
        ])
        .output()
        .unwrap();
    assert_eq!(
        challenge.status.code(),
        Some(0),
        "{}",
        common::text(&challenge)
    );
    common::write(d, "401.sip", &challenge.stdout);
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = sipseal()
            .current_dir(d)
            .args(["registrar", "passwd", "--users", "users.yaml"])
            .args([
                "--realm",
                "a.example.com",
                "--user",
                "sip:alice@a.example.com",
            ])
            .args(["--password-file", "alice.pw"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.contains("warning: password file alice.pw is readable by group/other (mode 644); run chmod 600 on it"),
            warned,
            "{mode:o}: {err}"
        );
        let out = sipseal()
            .current_dir(d)
            .args(["register", "--uri", "sip:alice@a.example.com"])
            .args(["--contact", "sip:alice@127.0.0.1:5066"])
            .args(["--challenge", "401.sip", "--password-file", "alice.pw"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.contains("warning: password file alice.pw is readable by group/other"),
            warned,
            "register, {mode:o}: {err}"
        );
    }
}

/// Issue 26: a listener that cannot be bound is named, with what to do.
#[cfg(feature = "live")]
#[test]
fn a_busy_listener_is_named_with_a_hint() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let out = sipseal()
        .args(["relay", "--listen", "udp:127.0.0.1:0"])
        .args(["--listen", &format!("tcp:127.0.0.1:{port}")])
        .args(["--identity", "keys/proxy-a", "--state"])
        .arg(tmp.path())
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: --listen tcp:127.0.0.1:{port}: Address already in use"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "hint: another process listens on tcp port {port} (`ss -lnp` names it)"
        )),
        "{err}"
    );
    drop(busy);
}
