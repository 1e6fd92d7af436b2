//! `build` in deterministic mode against reviewed golden files, plus the
//! RFC 3261 properties the golden files must have.

mod common;

use common::{Succeeds, file, golden, sipseal};
use sipseal::sip::Message;

fn build(args: &[&str]) -> Vec<u8> {
    let out = sipseal().args(args).assert().success().get_output().clone();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("deterministic mode"),
        "deterministic mode must warn on stderr"
    );
    out.stdout
}

const INVITE: &[&str] = &[
    "--seed",
    "01",
    "build",
    "invite",
    "--from",
    "sip:alice@a.example.com",
    "--to",
    "sip:bob@b.example.com",
    "--via",
    "192.0.2.10:5060",
    "--sdp",
    "samples/offer.sdp",
];

#[test]
fn invite_golden_and_well_formed() {
    let out = build(INVITE);
    golden("invite.sip", &out);
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.request_uri(), Some("sip:bob@b.example.com"));
    assert_eq!(m.body(), file("samples/offer.sdp"));
    assert_eq!(
        m.header("Content-Length"),
        Some(m.body().len().to_string().as_str())
    );
    let branch = m.vias().unwrap()[0].branch().unwrap().to_string();
    assert!(
        branch.starts_with("z9hG4bK"),
        "RFC 3261 magic cookie: {branch}"
    );
    assert_eq!(m.max_forwards().unwrap(), Some(70));
    assert!(m.from_tag().unwrap().is_some());
    // Same inputs and seed: identical bytes; another seed: other values.
    assert_eq!(build(INVITE), out);
    let mut other = INVITE.to_vec();
    other[1] = "02";
    assert_ne!(build(&other), out);
}

#[test]
fn requests_of_each_method() {
    let common = [
        "--from",
        "sip:alice@a.example.com",
        "--to",
        "sip:bob@b.example.com",
    ];
    for (method, extra) in [
        (
            "message",
            vec![
                "--body",
                "samples/message.txt",
                "--content-type",
                "text/plain",
                "--header",
                "Subject: hi",
            ],
        ),
        ("register", vec!["--contact", "sip:alice@192.0.2.10"]),
        ("options", vec![]),
        (
            "update",
            vec![
                "--call-id",
                "c1@a.example.com",
                "--cseq",
                "3",
                "--sdp",
                "samples/offer.sdp",
            ],
        ),
        (
            "bye",
            vec![
                "--call-id",
                "c1@a.example.com",
                "--cseq",
                "4",
                "--transport",
                "tcp",
            ],
        ),
        (
            "ack",
            vec![
                "--call-id",
                "c1@a.example.com",
                "--cseq",
                "1",
                "--request-uri",
                "sip:bob@198.51.100.20",
            ],
        ),
    ] {
        let mut args = vec!["--seed", "01", "build", method];
        args.extend(common);
        args.extend(extra);
        let out = build(&args);
        golden(&format!("{method}.sip"), &out);
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.method(), Some(method.to_ascii_uppercase().as_str()));
        assert_eq!(m.cseq().unwrap().method, method.to_ascii_uppercase());
    }
}

#[test]
fn responses_copy_from_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let req = dir.path().join("invite.sip");
    std::fs::write(&req, build(INVITE)).unwrap();
    let req_msg = Message::parse(&std::fs::read(&req).unwrap()).unwrap();
    for (code, extra) in [
        ("200", vec!["--sdp", "samples/answer.sdp"]),
        ("180", vec![]),
        ("100", vec![]),
        ("486", vec![]),
    ] {
        let mut args = vec![
            "--seed",
            "01",
            "build",
            "response",
            code,
            "--request",
            req.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = build(&args);
        golden(&format!("response-{code}.sip"), &out);
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.status().map(|c| c.to_string()).as_deref(), Some(code));
        for name in ["Via", "From", "Call-ID", "CSeq"] {
            assert_eq!(
                m.header_values(name),
                req_msg.header_values(name),
                "{code} {name}"
            );
        }
        let to_tag = m.to_tag().unwrap();
        assert_eq!(to_tag.is_some(), code != "100", "{code}: To tag");
        assert_ne!(
            to_tag,
            req_msg.from_tag().unwrap(),
            "To tag must not repeat the From tag"
        );
    }
}

#[test]
fn spec_files_build_the_same_as_flags() {
    let invite = build(&["--seed", "5eed", "build", "--spec", "samples/invite.yaml"]);
    golden("spec-invite.sip", &invite);
    assert_eq!(
        invite,
        file("samples/invite.sip"),
        "samples/invite.sip is built from samples/invite.yaml"
    );
    let flags = build(&[
        "--seed",
        "5eed",
        "build",
        "invite",
        "--from",
        "Alice <sip:alice@a.example.com>",
        "--to",
        "Bob <sip:bob@b.example.com>",
        "--contact",
        "sip:alice@192.0.2.10:5060",
        "--via",
        "192.0.2.10:5060",
        "--sdp",
        "samples/offer.sdp",
        "--header",
        "Subject: sipseal sample call",
    ]);
    assert_eq!(flags, invite);
    let resp = build(&[
        "--seed",
        "5eed",
        "build",
        "--spec",
        "samples/response-200.yaml",
    ]);
    golden("spec-response-200.sip", &resp);
    assert_eq!(
        Message::parse(&resp).unwrap().body(),
        file("samples/answer.sdp")
    );
    golden(
        "spec-message.sip",
        &build(&["--seed", "5eed", "build", "--spec", "samples/message.yaml"]),
    );
}

#[test]
fn output_file_is_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.sip");
    let mut args = INVITE.to_vec();
    args.extend(["-o", out.to_str().unwrap()]);
    let stdout = sipseal().args(&args).succeeds().stdout;
    assert!(stdout.is_empty());
    assert_eq!(std::fs::read(&out).unwrap(), build(INVITE));
}
