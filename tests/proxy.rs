//! `sipseal proxy` through the built binary: forwarding with the sealed body
//! byte-identical, header handling, 483, 496, `--trial`, responses passing
//! back, the disclosure report, and no key use by a relay that is not a
//! recipient.

mod common;

use std::path::{Path, PathBuf};

use common::{Succeeds, ok, seal_invite, sipseal, write};
use predicates::prelude::*;
use sipseal::sip::Message;

/// alice's INVITE sealed for bob and `extra` (deterministic).
fn sealed(dir: &Path, extra: &[&str]) -> PathBuf {
    let args = [&["--peer", "keys/bob/cert.pem"], extra].concat();
    write(dir, "sealed.sip", &seal_invite("5eed", &args))
}

/// proxy-a with the PSK it shares with alice.
const PROXY_A_PSK: [&str; 4] = [
    "--identity",
    "keys/proxy-a",
    "--psk",
    "keys/psk/alice-proxy-a.yaml",
];

fn run(args: &[&str], input: &Path) -> std::process::Output {
    sipseal()
        .arg("proxy")
        .arg(input)
        .args(args)
        .output()
        .unwrap()
}

fn lines(m: &[u8]) -> Vec<String> {
    let head = &m[..m.windows(4).position(|w| w == b"\r\n\r\n").unwrap()];
    String::from_utf8_lossy(head)
        .split("\r\n")
        .map(str::to_owned)
        .collect()
}

#[test]
fn designated_relay_opens_reports_and_forwards_the_body_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sealed(
        tmp.path(),
        &[
            "--disclose",
            "keys/proxy-a/cert.pem",
            "--disclose",
            "keys/carol/cert.pem",
        ],
    );
    let report = tmp.path().join("report.json");
    let out = sipseal()
        .arg("proxy")
        .arg(&input)
        .args([
            "--identity",
            "keys/proxy-a",
            "--via",
            "proxy-a.a.example.com:5060",
        ])
        .args(["--report-format", "json", "--report"])
        .arg(&report)
        .succeeds();
    let original = std::fs::read(&input).unwrap();
    let fwd = out.stdout;
    let (m_in, m_out) = (
        Message::parse(&original).unwrap(),
        Message::parse(&fwd).unwrap(),
    );
    assert_eq!(
        m_in.body(),
        m_out.body(),
        "sealed body forwarded byte-identical"
    );

    let before = lines(&original);
    let after = lines(&fwd);
    // A new top Via with a fresh branch, then the old ones.
    assert!(after[1].starts_with("Via: SIP/2.0/UDP proxy-a.a.example.com:5060;branch=z9hG4bK"));
    assert_eq!(after[2], before[1]);
    assert_eq!(m_out.header("Max-Forwards"), Some("69"));
    // Own designation gone, carol's kept byte-identical; everything else unchanged and in order.
    let pib: Vec<&String> = after
        .iter()
        .filter(|l| l.starts_with("Proxy-Inspect-Body"))
        .collect();
    assert_eq!(pib.len(), 1);
    assert!(pib[0].contains("sip:carol@a.example.com"));
    let strip = |ls: &[String]| -> Vec<String> {
        ls.iter()
            .filter(|l| !l.starts_with("Max-Forwards") && !l.contains("proxy-a.a.example.com"))
            .cloned()
            .collect()
    };
    assert_eq!(
        strip(&before),
        strip(
            &after[..1]
                .iter()
                .chain(&after[2..])
                .cloned()
                .collect::<Vec<_>>()
        )
    );

    // The report: SDP, streams, SRTP keys, access, who designated.
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["decision"], "designated");
    assert_eq!(v["opened"], true);
    assert_eq!(v["access"], "read");
    assert_eq!(v["designated_by"], "sip:alice@a.example.com");
    assert_eq!(v["streams"][0]["address"], "192.0.2.10");
    assert_eq!(v["streams"][0]["port"], 49170);
    assert_eq!(v["streams"][0]["rtcp_mux"], true);
    assert_eq!(v["streams"][1]["rtcp_port"], 51373);
    assert_eq!(v["srtp_keys"].as_array().unwrap().len(), 3);
    assert!(
        v["srtp_keys"][0]["key_params"]
            .as_str()
            .unwrap()
            .starts_with("inline:")
    );
    assert!(v["sdp"].as_str().unwrap().starts_with("v=0"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&report).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the report holds SRTP keys");
    }

    // bob still opens what was forwarded.
    let fwd_path = tmp.path().join("fwd.sip");
    std::fs::write(&fwd_path, &fwd).unwrap();
    sipseal()
        .arg("open")
        .arg(&fwd_path)
        .args(["--identity", "keys/bob", "--body-only"])
        .assert()
        .success()
        .stdout(common::file("samples/offer.sdp"));
}

#[test]
fn a_relay_that_is_not_designated_forwards_blind_without_reading_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sealed(tmp.path(), &["--disclose", "keys/proxy-a/cert.pem"]);
    // proxy-b's certificate with a key file that is not a key at all.
    let id = tmp.path().join("proxy-b");
    std::fs::create_dir(&id).unwrap();
    std::fs::copy(
        common::repo().join("keys/proxy-b/cert.pem"),
        id.join("cert.pem"),
    )
    .unwrap();
    std::fs::write(id.join("key.pem"), "not a key").unwrap();
    let report = tmp.path().join("r.txt");
    let out = sipseal()
        .arg("proxy")
        .arg(&input)
        .arg("--identity")
        .arg(&id)
        .arg("--report")
        .arg(&report)
        .succeeds();
    assert_eq!(
        Message::parse(&out.stdout).unwrap().body(),
        Message::parse(&std::fs::read(&input).unwrap())
            .unwrap()
            .body()
    );
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.contains("sealed, not designated: forwarded without opening"),
        "{text}"
    );
    assert!(!text.contains("srtp key"));
}

#[test]
fn max_forwards_zero_gives_483() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sealed(tmp.path(), &["--disclose", "keys/proxy-a/cert.pem"]);
    let bytes = std::fs::read(&input).unwrap();
    let text = String::from_utf8_lossy(&bytes).replacen("Max-Forwards: 70", "Max-Forwards: 0", 1);
    let mut raw = text.into_bytes();
    // The body is binary: rebuild from the original bytes after the header change.
    let body_at = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head_at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    raw.truncate(head_at);
    raw.extend_from_slice(&bytes[body_at..]);
    let path = tmp.path().join("mf0.sip");
    std::fs::write(&path, raw).unwrap();
    let out = run(&["--identity", "keys/proxy-a"], &path);
    assert_eq!(out.status.code(), Some(5));
    assert!(out.stdout.starts_with(b"SIP/2.0 483 Too Many Hops\r\n"));
}

#[test]
fn designated_without_a_recipientinfo_answers_496_with_its_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sealed(tmp.path(), &["--disclose", "keys/proxy-a/cert.pem"]);
    // Redirect the designation to proxy-b (no RecipientInfo for it).
    let bytes = std::fs::read(&input).unwrap();
    let needle = b"<sip:proxy-a.a.example.com>;cid";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let mut redirected = bytes.clone();
    redirected.splice(
        at..at + needle.len(),
        b"<sip:proxy-b.b.example.com>;cid".iter().copied(),
    );
    let path = tmp.path().join("to-b.sip");
    std::fs::write(&path, &redirected).unwrap();
    let out = run(&["--identity", "keys/proxy-b"], &path);
    assert_eq!(out.status.code(), Some(5));
    let resp = Message::parse(&out.stdout).unwrap();
    assert_eq!(resp.status(), Some(496));
    assert_eq!(
        resp.header("Warning"),
        Some("380 proxy-b.b.example.com \"Required to view Content-Type 'application/sdp'\"")
    );
    assert_eq!(resp.header("Content-Type"), Some("application/pkix-cert"));
    let cert_der = common::openssl()
        .args(["x509", "-in", "keys/proxy-b/cert.pem", "-outform", "DER"])
        .succeeds()
        .stdout;
    assert_eq!(resp.body(), cert_der, "the body is proxy-b's certificate");

    // --require-disclosure: 496 even without a designation.
    let plain_for_bob = sealed(tmp.path(), &[]);
    let out = run(
        &["--identity", "keys/proxy-b", "--require-disclosure"],
        &plain_for_bob,
    );
    assert_eq!(out.status.code(), Some(5));
    assert!(out.stdout.starts_with(b"SIP/2.0 496 "));
}

#[test]
fn trial_opens_when_a_recipientinfo_matches() {
    let tmp = tempfile::tempdir().unwrap();
    // proxy-a has a RecipientInfo (via the PSK) but the designation is removed.
    let input = sealed(
        tmp.path(),
        &["--disclose", "psk:keys/psk/alice-proxy-a.yaml"],
    );
    let bytes = std::fs::read(&input).unwrap();
    let m = Message::parse(&bytes).unwrap();
    let mut undesignated = m.clone();
    undesignated.remove_headers("Proxy-Inspect-Body");
    let path = tmp.path().join("undesignated.sip");
    std::fs::write(&path, undesignated.to_bytes()).unwrap();
    let report = tmp.path().join("r.json");
    for (trial, decision, opened) in [(false, "not-designated", false), (true, "trial", true)] {
        let mut cmd = sipseal();
        cmd.arg("proxy")
            .arg(&path)
            .args(PROXY_A_PSK)
            .args(["--report-format", "json", "--report"])
            .arg(&report);
        if trial {
            cmd.arg("--trial");
        }
        cmd.assert().success();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(v["decision"], decision);
        assert_eq!(v["opened"], opened);
        if opened {
            assert_eq!(v["opened_with"], "PSK alice-proxy-a");
        }
    }
}

#[test]
fn responses_pass_back_with_the_top_via_removed_and_a_sealed_answer_read() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sealed(tmp.path(), &["--disclose", "keys/proxy-a/cert.pem"]);
    // The response must come back to the relay that keyed the branch.
    let state = tmp.path().join("state");
    let state = state.to_str().unwrap();
    let fwd = run(
        &[
            "--identity",
            "keys/proxy-a",
            "--via",
            "proxy-a.a.example.com",
            "--state",
            state,
        ],
        &input,
    );
    assert!(fwd.status.success());
    let fwd_path = tmp.path().join("fwd.sip");
    std::fs::write(&fwd_path, &fwd.stdout).unwrap();
    // bob answers, sealing the answer for alice and proxy-a's PSK.
    let ok = sipseal()
        .args(["--seed", "01", "build", "response", "200", "--request"])
        .arg(&fwd_path)
        .args([
            "--sdp",
            "samples/answer.sdp",
            "--seal",
            "--peer",
            "keys/alice/cert.pem",
        ])
        .args(["--disclose", "psk:keys/psk/alice-proxy-a.yaml"])
        .succeeds();
    let ok_path = tmp.path().join("200.sip");
    std::fs::write(&ok_path, &ok.stdout).unwrap();
    let report = tmp.path().join("r.json");
    let back = sipseal()
        .arg("proxy")
        .arg(&ok_path)
        .args(PROXY_A_PSK)
        .args(["--state", state])
        .args(["--report-format", "json", "--report"])
        .arg(&report)
        .succeeds();
    let before = Message::parse(&ok.stdout).unwrap();
    let after = Message::parse(&back.stdout).unwrap();
    assert_eq!(before.header_list("Via").len(), 2);
    assert_eq!(
        after.header_list("Via"),
        before.header_list("Via")[1..].to_vec()
    );
    assert_eq!(after.body(), before.body());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["kind"], "response");
    assert_eq!(v["status"], 200);
    assert_eq!(v["opened"], true);
    assert!(v["sdp"].as_str().unwrap().contains("o=bob"), "{v}");
}

#[test]
fn proxy_errors_are_clear() {
    sipseal()
        .args(["proxy", "samples/invite.sip", "--identity", "keys"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no certificate file").and(predicate::str::contains("hint:")),
        );
}

#[test]
fn edits_need_access_modify_and_reseal_for_the_same_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    let edit = [
        "--set-connection",
        "203.0.113.7",
        "--set-port",
        "audio=40000",
        "--certs",
        "keys",
    ];
    // Designated read-only: refused, nothing written.
    let read_only = sealed(tmp.path(), &["--disclose", "keys/proxy-a/cert.pem"]);
    let out_file = tmp.path().join("out.sip");
    sipseal()
        .arg("proxy")
        .arg(&read_only)
        .args(["--identity", "keys/proxy-a"])
        .args(edit)
        .arg("-o")
        .arg(&out_file)
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("edit refused").and(predicate::str::contains("access=modify")),
        );
    assert!(!out_file.exists());

    // Designated with access=modify: edited, re-sealed with a fresh CEK, bob reads the edit.
    let dir = tmp.path().join("m");
    std::fs::create_dir(&dir).unwrap();
    let modify = sealed(
        &dir,
        &["--disclose", "keys/proxy-a/cert.pem", "--access", "modify"],
    );
    let out = sipseal()
        .arg("proxy")
        .arg(&modify)
        .args(["--identity", "keys/proxy-a"])
        .args(edit)
        .succeeds();
    let before = Message::parse(&std::fs::read(&modify).unwrap()).unwrap();
    let after = Message::parse(&out.stdout).unwrap();
    assert_ne!(before.body(), after.body(), "re-sealed");
    assert_eq!(after.header("Content-ID"), before.header("Content-ID"));
    let edited_path = tmp.path().join("edited.sip");
    std::fs::write(&edited_path, &out.stdout).unwrap();
    let sdp = sipseal()
        .arg("open")
        .arg(&edited_path)
        .args(["--identity", "keys/bob", "--body-only"])
        .output()
        .unwrap();
    assert!(sdp.status.success());
    let text = String::from_utf8(sdp.stdout).unwrap();
    assert!(text.contains("c=IN IP4 203.0.113.7\r\n"), "{text}");
    assert!(text.contains("m=audio 40000 RTP/SAVP"), "{text}");
    assert!(text.contains("m=video 51372 RTP/SAVP"), "{text}");
    // Same recipients: bob and proxy-a, nobody else.
    sipseal()
        .arg("open")
        .arg(&edited_path)
        .args(["--identity", "keys/proxy-a"])
        .assert()
        .success();
    sipseal()
        .arg("open")
        .arg(&edited_path)
        .args(["--identity", "keys/proxy-b"])
        .assert()
        .code(3);
    // Without the recipients' certificates there is nobody to re-seal for.
    sipseal()
        .arg("proxy")
        .arg(&modify)
        .args([
            "--identity",
            "keys/proxy-a",
            "--set-connection",
            "203.0.113.7",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--certs"));
}

#[test]
fn a_496_gives_alice_the_certificate_to_seal_again_with() {
    let tmp = tempfile::tempdir().unwrap();
    // alice designates proxy-b by URI only: she does not have its certificate.
    let first = sealed(
        tmp.path(),
        &[
            "--disclose",
            "keys/proxy-a/cert.pem",
            "--designate",
            "sip:proxy-b.b.example.com",
        ],
    );
    let msg = Message::parse(&std::fs::read(&first).unwrap()).unwrap();
    assert_eq!(msg.header_list("Proxy-Inspect-Body").len(), 2);
    let out = run(&["--identity", "keys/proxy-b"], &first);
    assert_eq!(out.status.code(), Some(5));
    let answer = tmp.path().join("496.sip");
    std::fs::write(&answer, &out.stdout).unwrap();

    // alice seals the original again with proxy-b added from the 496.
    let again = sipseal()
        .args(["seal", "samples/invite.sip", "--peer", "keys/bob/cert.pem"])
        .args([
            "--disclose",
            "keys/proxy-a/cert.pem",
            "--add-recipient-from",
        ])
        .arg(&answer)
        .args(["--trust", "keys/trust.pem"])
        .succeeds();
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("adding sip:proxy-b.b.example.com"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let second = tmp.path().join("second.sip");
    std::fs::write(&second, &again.stdout).unwrap();
    let resealed = Message::parse(&again.stdout).unwrap();
    let pib = resealed.header_list("Proxy-Inspect-Body");
    assert_eq!(pib.len(), 2, "{pib:?}");
    assert!(pib[1].starts_with("<sip:proxy-b.b.example.com>"), "{pib:?}");
    let report = tmp.path().join("r.json");
    sipseal()
        .arg("proxy")
        .arg(&second)
        .args(["--identity", "keys/proxy-b", "--report-format", "json"])
        .arg("--report")
        .arg(&report)
        .succeeds();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["decision"], "designated");
    assert_eq!(v["opened"], true);

    // The certificate must come from a trust anchor: a.example.com's CA
    // alone does not vouch for proxy-b.
    sipseal()
        .args(["seal", "samples/invite.sip", "--peer", "keys/bob/cert.pem"])
        .arg("--add-recipient-from")
        .arg(&answer)
        .args(["--trust", "keys/ca/a.example.com/cert.pem"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("not among the trust anchors"));
    // ... and it is never taken without anchors.
    sipseal()
        .args(["seal", "samples/invite.sip", "--peer", "keys/bob/cert.pem"])
        .arg("--add-recipient-from")
        .arg(&answer)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--trust"));
    // A request is not a 496.
    sipseal()
        .args(["seal", "samples/invite.sip", "--peer", "keys/bob/cert.pem"])
        .args(["--add-recipient-from", "samples/invite.sip"])
        .args(["--trust", "keys/trust.pem"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a 496"));
}

#[test]
fn a_response_goes_back_only_through_the_relay_that_forwarded_its_request() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let state = state.to_str().unwrap();
    let via = [
        "--identity",
        "keys/proxy-a",
        "--via",
        "proxy-a.a.example.com",
    ];
    let fwd = run(
        &[&via[..], &["--state", state]].concat(),
        Path::new("samples/invite.sip"),
    );
    let fwd_path = tmp.path().join("fwd.sip");
    std::fs::write(&fwd_path, ok(&fwd)).unwrap();
    let respond = |request: &Path| {
        let out = sipseal()
            .args(["build", "response", "486", "--request"])
            .arg(request)
            .succeeds();
        let path = tmp.path().join("resp.sip");
        std::fs::write(&path, &out.stdout).unwrap();
        path
    };
    // Through the relay that forwarded it: its Via comes off.
    let back = run(
        &[&via[..], &["--state", state]].concat(),
        &respond(&fwd_path),
    );
    let back = Message::parse(&ok(&back)).unwrap();
    assert_eq!(back.header_list("Via").len(), 1);
    // The same response at a relay with another key (another state): a
    // branch it did not make.
    let other = run(&via, &respond(&fwd_path));
    assert_eq!(other.status.code(), Some(1));
    assert!(other.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&other.stderr)
            .contains("its top Via branch was not made by this relay for this transaction"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    // A response that never passed here (the caller's own Via on top) is
    // dropped, not forwarded with its Via stack stripped.
    let direct = run(
        &[&via[..], &["--state", state]].concat(),
        &respond(Path::new("samples/invite.sip")),
    );
    assert_eq!(direct.status.code(), Some(1));
    assert!(direct.stdout.is_empty());
    assert!(String::from_utf8_lossy(&direct.stderr).contains("its top Via is 192.0.2.10:5060"));
}

#[test]
fn a_via_further_down_that_does_not_parse_is_not_this_relays_business() {
    let tmp = tempfile::tempdir().unwrap();
    let invite = std::fs::read_to_string("samples/invite.sip").unwrap();
    let bad = invite.replacen(
        "Max-Forwards:",
        "Via: SIP/2.0/UDP [not-an-address;;;,,\r\nMax-Forwards:",
        1,
    );
    assert_ne!(bad, invite);
    let path = tmp.path().join("bad-via.sip");
    std::fs::write(&path, &bad).unwrap();
    let out = run(&["--identity", "keys/proxy-a"], &path);
    let text = String::from_utf8(ok(&out)).unwrap();
    assert!(
        text.contains("Via: SIP/2.0/UDP [not-an-address;;;,,\r\n"),
        "{text}"
    );
}

#[test]
fn report_dash_goes_to_standard_output() {
    let tmp = tempfile::tempdir().unwrap();
    let fwd = tmp.path().join("fwd.sip");
    let out = run(
        &[
            "--identity",
            "keys/proxy-a",
            "--report",
            "-",
            "--report-format",
            "json",
            "-o",
            fwd.to_str().unwrap(),
        ],
        Path::new("samples/invite.sip"),
    );
    let report: serde_json::Value = serde_json::from_slice(&ok(&out)).unwrap();
    assert_eq!(report["kind"], "request");
    assert!(std::fs::read(&fwd).unwrap().starts_with(b"INVITE "));
    assert!(!Path::new("-").exists(), "no file named -");
    // Both on standard output would mix them: refused, exit 2.
    let both = run(
        &["--identity", "keys/proxy-a", "--report", "-"],
        Path::new("samples/invite.sip"),
    );
    assert_eq!(both.status.code(), Some(2));
    assert!(both.stdout.is_empty());
}

/// S3: no padding oracle. EnvelopedData (CBC) has no integrity: a relay
/// opens it only with --allow-cbc, and then a body that does not open
/// goes on exactly as one that does. The finding: bad padding exit 1,
/// a tampered block with good padding exit 0.
#[test]
fn cbc_bodies_give_no_padding_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = seal_invite(
        "cbc5",
        &[
            "--cipher",
            "aes128-cbc",
            "--peer",
            "keys/bob/cert.pem",
            "--disclose",
            "keys/proxy-a/cert.pem",
        ],
    );
    let msg = Message::parse(&sealed).unwrap();
    let body = msg.body().to_vec();
    let n = body.len();
    // The body is the message's last n bytes.
    let variant = |flip: Option<usize>| {
        let mut bytes = sealed.clone();
        if let Some(i) = flip {
            let at = bytes.len() - n + i;
            bytes[at] ^= 0x01;
        }
        write(tmp.path(), "in.sip", &bytes)
    };
    let relay = |input: &Path, extra: &[&str]| {
        let report = tmp.path().join("r.json");
        let out = run(
            &[
                &[
                    "--identity",
                    "keys/proxy-a",
                    "--report-format",
                    "json",
                    "--report",
                ][..],
                &[report.to_str().unwrap()],
                extra,
            ]
            .concat(),
            input,
        );
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap_or_default()).unwrap_or_default();
        (out, r)
    };
    let forwarded_body =
        |out: &std::process::Output| Message::parse(&out.stdout).unwrap().body().to_vec();
    // Without --allow-cbc: forwarded unchanged, not opened, no 496.
    let (out, r) = relay(&variant(None), &["--require-disclosure"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(forwarded_body(&out), body);
    assert_eq!(r["opened"], false);
    assert!(r["notes"].to_string().contains("--allow-cbc"), "{r}");
    // With it: the intact body opens; bad padding (the last byte of the
    // second-to-last block) and a tampered block with good padding (its
    // first byte) are forwarded exactly the same way, exit 0.
    let (out, r) = relay(&variant(None), &["--allow-cbc"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(r["opened"], true);
    for flip in [n - 17, n - 32, n - 1] {
        let (out, _) = relay(&variant(Some(flip)), &["--allow-cbc"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "flip {flip}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut expected = body.clone();
        expected[flip] ^= 0x01;
        assert_eq!(forwarded_body(&out), expected);
    }
}

/// Item 8: a relay that holds PSKs only runs with --psk and no --identity.
#[test]
fn a_psk_only_relay_needs_no_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = seal_invite(
        "b8",
        &[
            "--peer",
            "keys/bob/cert.pem",
            "--disclose",
            "psk:keys/psk/alice-proxy-a.yaml",
        ],
    );
    let input = write(tmp.path(), "in.sip", &sealed);
    let report = tmp.path().join("r.json");
    let out = run(
        &[
            "--psk",
            "keys/psk/alice-proxy-a.yaml",
            "--report-format",
            "json",
            "--report",
            report.to_str().unwrap(),
        ],
        &input,
    );
    let fwd = Message::parse(&ok(&out)).unwrap();
    assert_eq!(fwd.top_via().unwrap().host, "proxy-a.a.example.com");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["opened"], true, "{r}");
    assert!(r["sdp"].as_str().unwrap().contains("m=audio"));
    // Neither: a usage error.
    let out = run(&[], &input);
    assert_eq!(out.status.code(), Some(2));
}

/// A relay with an EC identity edits a body sealed for EC recipients: it
/// opens its RecipientEncryptedKey, and seals again for the same two, in
/// one KeyAgreeRecipientInfo again.
#[test]
fn an_ec_relay_edits_and_reseals_for_ec_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = write(
        tmp.path(),
        "ec.sip",
        &seal_invite(
            "5eed",
            &[
                "--peer",
                "keys/bob-ec/cert.pem",
                "--disclose",
                "keys/proxy-a-ec/cert.pem",
                "--access",
                "modify",
            ],
        ),
    );
    let out = sipseal()
        .arg("proxy")
        .arg(&sealed)
        .args([
            "--identity",
            "keys/proxy-a-ec",
            "--set-connection",
            "203.0.113.7",
            "--certs",
            "keys",
        ])
        .succeeds();
    let edited = write(tmp.path(), "edited.sip", &out.stdout);
    let inspected =
        String::from_utf8(sipseal().arg("inspect").arg(&edited).succeeds().stdout).unwrap();
    assert_eq!(
        inspected.matches(": kari v3 rid ski:").count(),
        1,
        "{inspected}"
    );
    assert_eq!(inspected.matches(": ktri ").count(), 0, "{inspected}");
    for who in ["keys/bob-ec", "keys/proxy-a-ec"] {
        let sdp = sipseal()
            .arg("open")
            .arg(&edited)
            .args(["--identity", who, "--body-only"])
            .succeeds();
        let text = String::from_utf8(sdp.stdout).unwrap();
        assert!(text.contains("c=IN IP4 203.0.113.7\r\n"), "{who}: {text}");
    }
}
