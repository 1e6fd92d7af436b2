//! Issue 25, what a hostile sender could do to a relay, one test per
//! finding, each written to fail before its fix. The relay step is the
//! same code in `sipseal proxy` and the live relay; the findings that need
//! a socket are in tests/live_hostile.rs.

mod common;

use std::path::Path;

use common::{Succeeds, s, seal_invite, sipseal, write};

/// proxy-a's name in the state directory.
const PROXY_A: &str = "sip:proxy-a.a.example.com";

/// alice's INVITE sealed for bob and disclosed to proxy-a, made into an
/// ACK (request line and CSeq) with `from` as its From header.
fn sealed_ack(from: &str) -> Vec<u8> {
    let invite = seal_invite(
        "25",
        &[
            "--peer",
            "keys/bob/cert.pem",
            "--disclose",
            "keys/proxy-a/cert.pem",
        ],
    );
    let invite = in_head(&invite, "INVITE sip:", "ACK sip:");
    let invite = in_head(&invite, "CSeq: 1 INVITE", "CSeq: 1 ACK");
    in_head(
        &invite,
        "From: Alice <sip:alice@a.example.com>;tag=c448a2ffb1",
        from,
    )
}

/// `msg` with `from` replaced by `to` once in its header section (the
/// body, binary CMS, stays as it is).
fn in_head(msg: &[u8], from: &str, to: &str) -> Vec<u8> {
    let at = msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(msg[..at].to_vec()).unwrap();
    let mut out = head.replacen(from, to, 1).into_bytes();
    out.extend_from_slice(&msg[at..]);
    out
}

/// `proxy` as proxy-a with alice bound to 192.0.2.10, the message from
/// `source`, pinholes kept in `dir`.
fn proxy_a(dir: &Path, input: &Path, source: &str) -> (std::process::Output, serde_json::Value) {
    let bindings = write(
        dir,
        "bindings.yaml",
        b"sip:alice@a.example.com: [\"192.0.2.10\"]\n",
    );
    let report = dir.join("report.json");
    let out = sipseal()
        .args(["proxy", s(input), "--identity", "keys/proxy-a"])
        .args(["--bindings", s(&bindings), "--received-from", source])
        .args(["--pinholes", s(&dir.join("pinholes.nft"))])
        .args(["--state", s(&dir.join("state"))])
        .args(["--report", s(&report), "--report-format", "json"])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (out, json)
}

/// H1: an ACK skipped the imposture check, and the vouching step then
/// said "its source is bound to the From AOR": an ACK with SDP from an
/// unbound port opened pinholes and stored a session for an AOR nobody
/// registered. Now it is checked like any request and dropped (never
/// answered).
#[test]
fn an_ack_from_an_unbound_source_is_dropped_and_opens_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ack = write(
        d,
        "ack.sip",
        &sealed_ack("From: <sip:nobody@evil.example>;tag=e1"),
    );
    let (out, report) = proxy_a(d, &ack, "203.0.113.66:5060");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("dropped, not forwarded"), "{err}");
    assert!(out.stdout.is_empty(), "an ACK is never answered");
    let refused = report["refused"].as_str().unwrap_or_default();
    assert!(
        refused.contains("imposture check") && refused.contains("sip:nobody@evil.example"),
        "{report:#}"
    );
    let nft = std::fs::read_to_string(d.join("pinholes.nft")).unwrap_or_default();
    assert!(!nft.contains("192.0.2.10"), "no pinhole: {nft}");
    let stored = common::stored_sessions(&d.join("state"), PROXY_A);
    assert!(stored.sessions.is_empty(), "{:?}", stored.sessions);
}

/// H1, the other half: an ACK from alice's own bound address that belongs
/// to no dialog the relay saw (no INVITE passed) opens no pinholes and
/// stores no session: its SDP or key counts only inside a dialog.
#[test]
fn an_ack_outside_any_dialog_opens_no_pinholes_and_stores_no_session() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ack = write(
        d,
        "ack.sip",
        &sealed_ack("From: Alice <sip:alice@a.example.com>;tag=c448a2ffb1"),
    );
    let (out, report) = proxy_a(d, &ack, "192.0.2.10:5060");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["opened"], true, "{report:#}");
    let nft = std::fs::read_to_string(d.join("pinholes.nft")).unwrap_or_default();
    assert!(!nft.contains("192.0.2.10"), "no pinhole: {nft}");
    let notes = report["notes"].to_string();
    assert!(notes.contains("an ACK starts nothing"), "{notes}");
    let stored = common::stored_sessions(&d.join("state"), PROXY_A);
    assert!(stored.sessions.is_empty(), "{:?}", stored.sessions);
    // The same envelope as the INVITE it came from does both.
    let invite = in_head(&std::fs::read(&ack).unwrap(), "ACK sip:", "INVITE sip:");
    let invite = in_head(&invite, "CSeq: 1 ACK", "CSeq: 1 INVITE");
    let invite = write(d, "invite.sip", &invite);
    let (out, _) = proxy_a(d, &invite, "192.0.2.10:5060");
    assert_eq!(out.status.code(), Some(0));
    let nft = std::fs::read_to_string(d.join("pinholes.nft")).unwrap();
    assert!(nft.contains("192.0.2.10"), "{nft}");
    assert_eq!(
        common::stored_sessions(&d.join("state"), PROXY_A)
            .sessions
            .len(),
        1
    );
}

/// M2: a certificate anyone can make (`keys generate`, self-signed,
/// naming alice) counted as alice's signature when the relay had no
/// `--signer-trust`: its SDP opened pinholes from a source nobody bound.
/// Without anchors no signature counts; with them alice's real one does.
#[test]
fn a_self_made_certificate_is_no_partys_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mallory = d.join("mallory");
    sipseal()
        .args(["keys", "generate"])
        .args(["--uri", "sip:alice@a.example.com", "--out", s(&mallory)])
        .succeeds();
    let sealed = write(
        d,
        "sealed.sip",
        &seal_invite(
            "25",
            &[
                "--peer",
                "keys/bob/cert.pem",
                "--disclose",
                "keys/proxy-a/cert.pem",
            ],
        ),
    );
    let sign = |identity: &str, name: &str| {
        let out = sipseal()
            .args(["sign", s(&sealed), "--identity", identity])
            .succeeds()
            .stdout;
        write(d, name, &out)
    };
    let forged = sign(s(&mallory), "forged.sip");
    let genuine = sign("keys/alice", "genuine.sip");
    let run = |input: &Path, name: &str, trust: &[&str]| {
        let pinholes = d.join(format!("{name}.nft"));
        let report = d.join(format!("{name}.json"));
        sipseal()
            .args(["proxy", s(input), "--identity", "keys/proxy-a"])
            .args(["--received-from", "203.0.113.66:5060"])
            .args(["--pinholes", s(&pinholes)])
            .args(["--state", s(&d.join(format!("{name}-state")))])
            .args(["--report", s(&report), "--report-format", "json"])
            .args(trust)
            .succeeds();
        let nft = std::fs::read_to_string(&pinholes).unwrap_or_default();
        let notes = std::fs::read_to_string(&report).unwrap();
        (nft, notes)
    };
    let (nft, notes) = run(&forged, "forged", &[]);
    assert!(!nft.contains("192.0.2.10"), "{nft}");
    assert!(notes.contains("no trust anchors"), "{notes}");
    let (nft, _) = run(&genuine, "genuine-no-anchors", &[]);
    assert!(!nft.contains("192.0.2.10"), "{nft}");
    let anchors = ["--signer-trust", "keys/trust.pem"];
    let (nft, notes) = run(&forged, "forged-anchors", &anchors);
    assert!(!nft.contains("192.0.2.10"), "{nft}");
    assert!(notes.contains("not trusted"), "{notes}");
    let (nft, _) = run(&genuine, "genuine-anchors", &anchors);
    assert!(nft.contains("192.0.2.10"), "{nft}");
    // --require-signature means nothing without anchors: refused at start.
    let out = sipseal()
        .args(["proxy", s(&genuine), "--identity", "keys/proxy-a"])
        .arg("--require-signature")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--signer-trust"));
}
