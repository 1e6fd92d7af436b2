//! Sealed parts of a multipart body (issue 14 item 10): an INVITE with an
//! SDP and a location (PIDF-LO, RFC 6442) part; the SDP disclosed to
//! proxy-a by its Content-ID, the location sealed for bob alone; every
//! sealed part opened in place; a part `openssl cms -encrypt` sealed
//! between plain parts opened in place with the others untouched.

mod common;

use std::path::Path;
use std::process::Output;

use common::{ok, s, sipseal, text, write};
use sipseal::sealing::sealed_parts;
use sipseal::sip::Message;

const INVITE: &str = "samples/invite-multipart.sip";
const SDP: &str = "sdp@a.example.com";
const LOCATION: &str = "location@a.example.com";

fn run(state: &Path, args: &[&str]) -> Output {
    sipseal()
        .args(["--seed", "17a0", "--now", "2026-03-02T10:00:00Z"])
        .args(args)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap()
}

fn message(bytes: &[u8]) -> Message {
    Message::parse(bytes).unwrap()
}

/// The exact bytes of the part with Content-ID `cid` in `msg`'s body.
fn part_bytes(msg: &Message, cid: &str) -> Vec<u8> {
    let top = sipseal::mime::body_of(msg).unwrap().unwrap();
    top.parts
        .iter()
        .find(|p| p.header("Content-ID") == Some(&format!("<{cid}>")))
        .unwrap_or_else(|| panic!("no part <{cid}>"))
        .raw
        .clone()
}

#[test]
fn one_part_disclosed_by_content_id_the_others_sealed_for_the_peer_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = d.join("state");
    let original = std::fs::read(INVITE).unwrap();
    // alice's INVITE, the SDP part disclosed to proxy-a with `access`.
    let seal = |access: &str| {
        ok(&run(
            &state,
            &[
                "seal",
                INVITE,
                "--peer",
                "keys/bob/cert.pem",
                "--disclose",
                "keys/proxy-a/cert.pem",
                "--disclose-part",
                SDP,
                "--access",
                access,
            ],
        ))
    };
    let sealed_bytes = seal("read");
    let sealed = write(d, "sealed.sip", &sealed_bytes);
    let msg = message(&sealed_bytes);
    assert_eq!(
        msg.header_values("Proxy-Inspect-Body"),
        vec![format!(
            "<sip:proxy-a.a.example.com>;cid=\"{SDP}\";access=read"
        )]
    );
    assert!(
        msg.header("Content-Type")
            .unwrap()
            .starts_with("multipart/mixed")
    );
    // Every other header line as it was.
    let headers = |m: &Message| -> Vec<String> {
        m.headers()
            .iter()
            .filter(|h| !h.is("Proxy-Inspect-Body") && !h.is("Content-Length"))
            .map(|h| format!("{}: {}", h.name(), h.value()))
            .collect()
    };
    assert_eq!(headers(&msg), headers(&message(&original)));
    let parts = sealed_parts(&msg).unwrap();
    let cids: Vec<_> = parts
        .iter()
        .map(|p| p.content_id.clone().unwrap())
        .collect();
    assert_eq!(cids, [SDP, LOCATION]);

    // openssl: bob opens both parts, proxy-a only the SDP; each is the
    // original part as it stood between its boundaries.
    let decrypt = |der: &[u8], who: &str, name: &str| {
        let input = write(d, name, der);
        common::openssl()
            .args(["cms", "-decrypt", "-inform", "DER", "-binary", "-in"])
            .arg(&input)
            .args(["-inkey", &format!("keys/{who}/key.pem")])
            .args(["-recip", &format!("keys/{who}/cert.pem")])
            .output()
            .unwrap()
    };
    let sdp_part = part_bytes(&message(&original), SDP);
    let location_part = part_bytes(&message(&original), LOCATION);
    assert_eq!(ok(&decrypt(&parts[0].der, "bob", "p0.der")), sdp_part);
    assert_eq!(ok(&decrypt(&parts[1].der, "bob", "p1.der")), location_part);
    assert_eq!(ok(&decrypt(&parts[0].der, "proxy-a", "p0.der")), sdp_part);
    assert!(!decrypt(&parts[1].der, "proxy-a", "p1.der").status.success());

    // bob opens every part in place: the original message, byte for byte.
    let bob = run(&state, &["open", s(&sealed), "--identity", "keys/bob"]);
    assert_eq!(ok(&bob), original);
    assert!(text(&bob).contains(&format!("part <{LOCATION}>: opened in place")));

    // proxy-a opens its part in place; the location stays sealed, as it was.
    let relay = run(&state, &["open", s(&sealed), "--identity", "keys/proxy-a"]);
    let opened = message(&ok(&relay));
    assert!(text(&relay).contains(&format!("part <{LOCATION}>: not for this key, left sealed")));
    assert_eq!(part_bytes(&opened, SDP), sdp_part);
    assert_eq!(part_bytes(&opened, LOCATION), part_bytes(&msg, LOCATION));
    assert!(opened.header_values("Proxy-Inspect-Body").is_empty());

    // carol: nothing here for her.
    let carol = run(&state, &["open", s(&sealed), "--identity", "keys/carol"]);
    assert_eq!(carol.status.code(), Some(3), "{}", text(&carol));

    // Relays: proxy-a reads the SDP of its part and forwards the message
    // unchanged; proxy-b is not designated.
    let report = d.join("report.json");
    let proxy = |relay: &str| {
        let identity = format!("keys/{relay}");
        let out = ok(&run(
            &state,
            &[
                "proxy",
                s(&sealed),
                "--identity",
                &identity,
                "--report",
                s(&report),
                "--report-format",
                "json",
            ],
        ));
        let rep: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        (out, rep)
    };
    let (fwd, rep) = proxy("proxy-a");
    assert_eq!(rep["decision"], "designated");
    let offer = String::from_utf8(common::file("samples/offer.sdp")).unwrap();
    assert_eq!(rep["sdp"].as_str(), Some(offer.as_str()));
    assert_eq!(
        message(&fwd).body(),
        msg.body(),
        "the body goes on byte-identical"
    );
    let (_, rep) = proxy("proxy-b");
    assert_eq!(rep["opened"], false);
    // One session key for alice, bob and proxy-a: the disclosed part's.
    let reference = |who: &str| {
        common::stored_sessions(&state, who).sessions[0]
            .reference
            .clone()
    };
    let alice = reference("sip:alice@a.example.com");
    assert_eq!(reference("sip:bob@b.example.com"), alice);
    assert_eq!(reference("sip:proxy-a.a.example.com"), alice);

    // Sealing a part again in place is not done: reencrypt says so, even
    // for a relay designated access=modify.
    let modify = write(d, "modify.sip", &seal("modify"));
    let out = run(
        &state,
        &[
            "reencrypt",
            s(&modify),
            "--identity",
            "keys/proxy-a",
            "--peer",
            "keys/bob/cert.pem",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&format!("one part (<{SDP}>) of a multipart body")));

    // Usage errors: a Content-ID that is not there, a body that is no multipart.
    let out = run(
        &state,
        &[
            "seal",
            INVITE,
            "--peer",
            "keys/bob/cert.pem",
            "--disclose-part",
            "nosuch@x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains(&format!(
        "no part has Content-ID <nosuch@x> (the parts: {SDP}, {LOCATION})"
    )));
    let out = run(
        &state,
        &[
            "seal",
            "samples/invite.sip",
            "--peer",
            "keys/bob/cert.pem",
            "--disclose-part",
            SDP,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("sealing parts needs a multipart body"));
}

#[test]
fn a_part_openssl_sealed_between_plain_parts_opens_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let entity = b"Content-Type: text/plain\r\n\r\nthe secret part\r\n";
    let plain = write(d, "entity.txt", entity);
    let der = common::openssl()
        .args([
            "cms",
            "-encrypt",
            "-binary",
            "-aes-256-gcm",
            "-outform",
            "DER",
            "-in",
        ])
        .arg(&plain)
        .arg("keys/bob/cert.pem")
        .output()
        .unwrap();
    let der = ok(&der);
    // A preamble, a plain part before and after, an epilogue: all kept.
    let mut body =
        b"preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--b1\r\n".to_vec();
    body.extend_from_slice(
        b"Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\nContent-ID: <secret@a.example.com>\r\n\r\n",
    );
    body.extend_from_slice(&der);
    body.extend_from_slice(
        b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nlast\r\n--b1--\r\nepilogue\r\n",
    );
    let mut msg = format!(
        "MESSAGE sip:bob@b.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKmp1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@a.example.com>;tag=1\r\n\
To: <sip:bob@b.example.com>\r\n\
Call-ID: mp-openssl@a.example.com\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: multipart/mixed; boundary=b1\r\n\
Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    msg.extend_from_slice(&body);
    let input = write(d, "mixed.sip", &msg);
    let out = run(
        &d.join("state"),
        &["open", s(&input), "--identity", "keys/bob", "--body-only"],
    );
    let mut expected = body.clone();
    let at = expected.windows(der.len()).position(|w| w == der).unwrap();
    let header_start = at
        - b"Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\nContent-ID: <secret@a.example.com>\r\n\r\n".len();
    expected.splice(header_start..at + der.len(), entity.iter().copied());
    assert_eq!(ok(&out), expected);
}

/// With `--sign`, each part carries alice's inner signature: bob opens and
/// verifies them in place and gets the original message back; proxy-a
/// reports the signer of the part it reads.
#[test]
fn signed_parts_verify_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = d.join("state");
    let sealed = ok(&run(
        &state,
        &[
            "seal",
            INVITE,
            "--peer",
            "keys/bob/cert.pem",
            "--disclose",
            "keys/proxy-a/cert.pem",
            "--disclose-part",
            SDP,
            "--sign",
            "keys/alice",
        ],
    ));
    let sealed = write(d, "signed.sip", &sealed);
    let bob = run(
        &state,
        &[
            "open",
            s(&sealed),
            "--identity",
            "keys/bob",
            "--trust",
            "keys/trust.pem",
        ],
    );
    assert_eq!(ok(&bob), std::fs::read(INVITE).unwrap());
    assert!(text(&bob).contains("inner signature by sip:alice@a.example.com: verified"));
    let report = d.join("report.json");
    ok(&run(
        &state,
        &[
            "proxy",
            s(&sealed),
            "--identity",
            "keys/proxy-a",
            "--report",
            s(&report),
            "--report-format",
            "json",
        ],
    ));
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(rep["signer"], "sip:alice@a.example.com");
    assert_eq!(rep["opened"], true);
}
