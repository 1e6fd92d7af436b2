//! Signatures and path security through the built binary (docs/SPEC.md §3.3-3.5):
//! `seal --sign`, `sign`, `verify`, openssl interop both ways, the negative
//! cases, relay re-signature, Route-Security, the imposture check, the
//! connectivity policy and `--require-signature`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{SEAL_INVITE, golden, ok, repo, sipseal, text, write};
use sipseal::signing::outer_signature;
use sipseal::sip::Message;

const NOW: &str = "2026-03-02T10:00:00Z";
const TRUST: &str = "keys/trust.pem";

/// Run sipseal in deterministic mode.
fn run(args: &[&str]) -> Output {
    sipseal()
        .args(["--seed", "5165", "--now", NOW])
        .args(args)
        .output()
        .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// proxy-a as a media relay: `--set-connection 198.51.100.7`, re-sealing
/// for the certificates in keys/.
fn media_relay(input: &Path) -> Output {
    run(&[
        "proxy",
        path(input),
        "--identity",
        "keys/proxy-a",
        "--certs",
        "keys",
        "--set-connection",
        "198.51.100.7",
    ])
}

/// alice's INVITE sealed for bob and proxy-a (`access`), with an inner
/// signature when `inner`.
fn sealed(dir: &Path, access: &str, inner: bool) -> PathBuf {
    let mut args = SEAL_INVITE.to_vec();
    args.extend(["--access", access]);
    if inner {
        args.extend(["--sign", "keys/alice"]);
    }
    write(dir, "sealed.sip", &ok(&run(&args)))
}

/// `input` with alice's outer signature.
fn signed(dir: &Path, input: &Path, name: &str) -> PathBuf {
    let out = ok(&run(&["sign", path(input), "--identity", "keys/alice"]));
    write(dir, name, &out)
}

fn verify(input: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["verify", path(input), "--trust", TRUST];
    args.extend(extra);
    run(&args)
}

/// `verify` must fail (exit 1) and its report name `check` as failed with `why`.
fn fails(out: &Output, check: &str, why: &str) {
    let t = text(out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line = t
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("FAIL {check}:")))
        .unwrap_or_else(|| panic!("no failed {check} check in:\n{t}"));
    assert!(line.contains(why), "{line:?} does not say {why:?}");
    assert!(t.contains("NOT verified"), "{t}");
}

fn edit(file: &Path, from: &str, to: &str) -> Vec<u8> {
    let bytes = std::fs::read(file).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from:?} not found"));
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(to.as_bytes());
    out.extend_from_slice(&bytes[at + from.len()..]);
    out
}

fn openssl(args: &[&str]) -> Output {
    common::openssl().args(args).output().unwrap()
}

#[test]
fn signed_messages_golden_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let inner = sealed(d, "read", true);
    golden("sealed-signed-invite.sip", &std::fs::read(&inner).unwrap());
    let outer = signed(d, &inner, "signed.sip");
    let bytes = std::fs::read(&outer).unwrap();
    golden("signed-invite.sip", &bytes);
    let t = String::from_utf8_lossy(&bytes);
    assert!(t.contains("Date: Mon, 02 Mar 2026 10:00:00 GMT\r\n"), "{t}");
    assert!(t.contains(
        "Content-Type: multipart/signed;protocol=\"application/pkcs7-signature\";micalg=sha-256;boundary="
    ));
    assert!(t.contains("Content-Type: message/sipfrag\r\n"));
    assert!(t.contains("Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"));

    // Outer and (with bob's key) inner: every check passes.
    let out = verify(&outer, &["--identity", "keys/bob"]);
    let report = String::from_utf8(ok(&out)).unwrap();
    golden("verify-signed-invite.txt", report.as_bytes());
    assert!(report.starts_with("outer signature by sip:alice@a.example.com (ua)\n"));
    assert!(report.contains("inner signature by sip:alice@a.example.com (ua)\n"));
    assert_eq!(report.matches("  pass ").count(), 11, "{report}");
    assert!(report.ends_with("verified\n"));

    // JSON: each check by name.
    let json: serde_json::Value =
        serde_json::from_slice(&ok(&verify(&outer, &["--format", "json"]))).unwrap();
    assert_eq!(json["verified"], true);
    let checks: Vec<&str> = json["signatures"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "signature",
            "chain",
            "validity",
            "key usage",
            "signer",
            "headers"
        ]
    );

    // bob opens the signed message: the SDP, the signature named.
    let opened = run(&[
        "open",
        path(&outer),
        "--identity",
        "keys/bob",
        "--trust",
        TRUST,
    ]);
    let plain = ok(&opened);
    assert!(String::from_utf8_lossy(&plain).contains("Content-Type: application/sdp\r\n"));
    assert!(
        String::from_utf8_lossy(&plain).ends_with(&*String::from_utf8_lossy(&common::file(
            "samples/offer.sdp"
        )))
    );
    assert!(text(&opened).contains("inner signature by sip:alice@a.example.com: verified"));

    // inspect names the signature parts without verifying them.
    let shown = String::from_utf8(ok(&run(&["inspect", path(&outer)]))).unwrap();
    assert!(shown.contains("part: message/sipfrag"), "{shown}");
    assert!(
        shown.contains("signedData: detached, content id-data"),
        "{shown}"
    );
    assert!(
        shown.contains("certificates: sip:alice@a.example.com"),
        "{shown}"
    );

    // An unsealed body is signed as it is.
    let plain_signed = signed(d, &repo().join("samples/invite.sip"), "plain-signed.sip");
    golden(
        "signed-plain-invite.sip",
        &std::fs::read(&plain_signed).unwrap(),
    );
    let report = String::from_utf8(ok(&verify(&plain_signed, &[]))).unwrap();
    assert!(
        report.contains("pass headers: From, To, Call-ID, CSeq, Date and 0 Proxy-Inspect-Body")
    );
}

#[test]
fn openssl_verifies_sipseal_outer_and_inner_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let inner = sealed(d, "read", true);
    let outer = signed(d, &inner, "signed.sip");
    let msg = Message::parse(&std::fs::read(&outer).unwrap()).unwrap();
    let sig = outer_signature(&msg).unwrap().unwrap();
    let content = write(d, "content.bin", &sig.signed);
    let p7s = write(d, "sig.der", &sig.signature);
    let check = |content: &Path| {
        openssl(&[
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            path(&p7s),
            "-content",
            path(content),
            "-binary",
            "-CAfile",
            TRUST,
            "-out",
            "/dev/null",
        ])
    };
    let out = check(&content);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Verification successful"));
    // The same command fails on one changed byte: the test can tell.
    let mut changed = sig.signed.clone();
    changed[40] ^= 1;
    assert!(!check(&write(d, "changed.bin", &changed)).status.success());

    // Inner: openssl decrypts with bob's key and verifies the opaque
    // SignedData it finds; the content is the SDP entity.
    let der = ok(&run(&[
        "seal",
        "samples/invite.sip",
        "--peer",
        "keys/bob/cert.pem",
        "--sign",
        "keys/alice",
        "--body-only",
    ]));
    let env = write(d, "env.der", &der);
    let decrypted = openssl(&[
        "cms",
        "-decrypt",
        "-inform",
        "DER",
        "-in",
        path(&env),
        "-inkey",
        "keys/bob/key.pem",
        "-recip",
        "keys/bob/cert.pem",
        "-binary",
    ]);
    assert!(decrypted.status.success(), "{}", text(&decrypted));
    let entity = decrypted.stdout;
    let head = b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\nContent-Transfer-Encoding: binary\r\n\r\n";
    assert!(entity.starts_with(head));
    let p7m = write(d, "inner.der", &entity[head.len()..]);
    let verified = openssl(&[
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        path(&p7m),
        "-binary",
        "-CAfile",
        TRUST,
    ]);
    assert!(verified.status.success(), "{}", text(&verified));
    let mut expected = b"Content-Type: application/sdp\r\n\r\n".to_vec();
    expected.extend(common::file("samples/offer.sdp"));
    assert_eq!(verified.stdout, expected);
}

/// A SIP message around an openssl-made signature.
fn with_body(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "MESSAGE sip:bob@b.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK77\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@a.example.com>;tag=a1\r\n\
To: <sip:bob@b.example.com>\r\n\
Call-ID: openssl-interop\r\n\
CSeq: 1 MESSAGE\r\n\
Date: Mon, 02 Mar 2026 10:00:00 GMT\r\n\
Content-Type: {content_type}\r\n\
Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

/// `verify` passes on `msg`, whose `kind` signature is alice's; the report.
fn verified_by(msg: &Path, kind: &str, label: &str) -> String {
    let report = String::from_utf8(ok(&verify(msg, &[]))).unwrap();
    let expected = format!("{kind} signature by sip:alice@a.example.com (ua)");
    assert!(report.contains(&expected), "{label}: {report}");
    report
}

#[test]
fn sipseal_verifies_openssl_signatures_detached_and_opaque() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The multipart/mixed entity a UA signs: sipfrag of the outer headers + body.
    let mixed = b"Content-Type: multipart/mixed;boundary=in1\r\n\r\n--in1\r\n\
Content-Type: message/sipfrag\r\n\r\n\
From: <sip:alice@a.example.com>;tag=a1\r\nTo: <sip:bob@b.example.com>\r\n\
Call-ID: openssl-interop\r\nCSeq: 1 MESSAGE\r\nDate: Mon, 02 Mar 2026 10:00:00 GMT\r\n\
\r\n--in1\r\nContent-Type: text/plain\r\n\r\nhello from openssl\r\n--in1--";
    let mixed_file = write(d, "mixed.bin", mixed);
    let entity = write(
        d,
        "entity.bin",
        b"Content-Type: text/plain\r\n\r\nhello from openssl\r\n",
    );
    for extra in [
        &[][..],
        &["-noattr"][..],
        &["-keyopt", "rsa_padding_mode:pss"][..],
    ] {
        let label = extra.join(" ");
        let sign = |input: &Path, out: &Path, opaque: bool| {
            let mut args = vec![
                "cms",
                "-sign",
                "-binary",
                "-in",
                path(input),
                "-signer",
                "keys/alice/cert.pem",
                "-inkey",
                "keys/alice/key.pem",
                "-outform",
                "DER",
                "-out",
                path(out),
            ];
            if opaque {
                args.push("-nodetach");
            }
            args.extend(extra);
            let o = openssl(&args);
            assert!(o.status.success(), "{label}: {}", text(&o));
            std::fs::read(out).unwrap()
        };
        // Detached, in multipart/signed.
        let p7s = sign(&mixed_file, &d.join("d.der"), false);
        let mut body = b"--out1\r\n".to_vec();
        body.extend_from_slice(mixed);
        body.extend_from_slice(
            b"\r\n--out1\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n\
Content-Transfer-Encoding: binary\r\n\r\n",
        );
        body.extend_from_slice(&p7s);
        body.extend_from_slice(b"\r\n--out1--\r\n");
        let msg = write(
            d,
            "detached.sip",
            &with_body(
                "multipart/signed;protocol=\"application/pkcs7-signature\";micalg=sha-256;boundary=out1",
                &body,
            ),
        );
        let report = verified_by(&msg, "outer", &label);
        assert!(report.contains("pass headers"), "{label}: {report}");
        // The bare DER with --content, and without it (detached: fails).
        ok(&verify(&d.join("d.der"), &["--content", path(&mixed_file)]));
        fails(&verify(&d.join("d.der"), &[]), "signature", "detached");

        // Opaque, as a signed-data body.
        let p7m = sign(&entity, &d.join("o.der"), true);
        let msg = write(
            d,
            "opaque.sip",
            &with_body(
                "application/pkcs7-mime; smime-type=signed-data; name=smime.p7m",
                &p7m,
            ),
        );
        let report = verified_by(&msg, "opaque", &label);
        let scheme = if label.contains("pss") {
            "rsa-pss"
        } else {
            "rsa-pkcs1v15"
        };
        assert!(report.contains(scheme), "{label}: {report}");
        ok(&verify(&d.join("o.der"), &[]));
    }
}

#[test]
fn negative_cases_fail_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sealed = sealed(d, "read", false);
    let good = signed(d, &sealed, "signed.sip");
    ok(&verify(&good, &[]));

    // Wrong trust anchor: b.example.com's CA does not vouch for alice.
    fails(
        &run(&[
            "verify",
            path(&good),
            "--trust",
            "keys/ca/b.example.com/cert.pem",
        ]),
        "chain",
        "wrong trust anchor",
    );
    // Expired: after the certificate's notAfter (2045).
    fails(
        &verify(&good, &["--at", "2046-01-01T00:00:00Z"]),
        "validity",
        "is not valid at",
    );
    // From not matching the signer: carol signs alice's message.
    let carol = ok(&run(&["sign", path(&sealed), "--identity", "keys/carol"]));
    fails(
        &verify(&write(d, "carol.sip", &carol), &[]),
        "signer",
        "neither the From AOR sip:alice@a.example.com",
    );
    // A Proxy-Inspect-Body added, removed, changed after signing.
    let pib = "Proxy-Inspect-Body: <sip:proxy-a.a.example.com>;cid=\"";
    let added = edit(
        &good,
        pib,
        &format!("Proxy-Inspect-Body: <sip:proxy-b.b.example.com>;access=read\r\n{pib}"),
    );
    fails(
        &verify(&write(d, "added.sip", &added), &[]),
        "headers",
        "<sip:proxy-b.b.example.com>;access=read was not signed",
    );
    let text_good = String::from_utf8_lossy(&std::fs::read(&good).unwrap()).into_owned();
    let line = text_good
        .lines()
        .find(|l| l.starts_with("Proxy-Inspect-Body:"))
        .unwrap()
        .to_owned();
    let removed = edit(&good, &format!("{line}\r\n"), "");
    fails(
        &verify(&write(d, "removed.sip", &removed), &[]),
        "headers",
        "was signed but is missing",
    );
    let changed = edit(&good, "access=read\r\n", "access=modify\r\n");
    fails(
        &verify(&write(d, "changed.sip", &changed), &[]),
        "headers",
        "access=modify was not signed",
    );
    // The body changed after signing (a byte of the sealed DER).
    let msg = Message::parse(&std::fs::read(&good).unwrap()).unwrap();
    let der = outer_signature(&msg).unwrap().unwrap().payload.body;
    let mut bytes = std::fs::read(&good).unwrap();
    let at = bytes.windows(64).position(|w| w == &der[100..164]).unwrap();
    bytes[at + 10] ^= 0x40;
    fails(
        &verify(&write(d, "body.sip", &bytes), &[]),
        "signature",
        "the content was changed after signing",
    );
    // No signature at all.
    fails(&verify(&sealed, &[]), "signed", "no signature");
}

#[test]
fn relay_resignature_is_accepted_only_for_modify_relays() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // access=modify: proxy-a re-seals for bob and re-signs.
    let modify = sealed(d, "modify", false);
    let signed_modify = signed(d, &modify, "signed-modify.sip");
    let out = run(&[
        "reencrypt",
        path(&signed_modify),
        "--identity",
        "keys/proxy-a",
        "--peer",
        "keys/bob/cert.pem",
        "--report",
        path(&d.join("r.txt")),
    ]);
    let next = write(d, "next.sip", &ok(&out));
    let report = std::fs::read_to_string(d.join("r.txt")).unwrap();
    assert!(
        report.contains("outer signature: sip:alice@a.example.com"),
        "{report}"
    );
    assert!(report.contains("re-signed: yes"), "{report}");
    let t = String::from_utf8_lossy(&std::fs::read(&next).unwrap()).into_owned();
    assert!(
        t.contains("Original-Proxy-Inspect-Body: <sip:proxy-a.a.example.com>;cid=\""),
        "{t}"
    );
    let v = String::from_utf8(ok(&verify(&next, &["--identity", "keys/bob"]))).unwrap();
    assert!(
        v.contains("outer signature by sip:proxy-a.a.example.com (relay)"),
        "{v}"
    );
    assert!(v.contains("designated with access=modify"), "{v}");
    ok(&run(&["open", path(&next), "--identity", "keys/bob"]));

    // proxy --set-connection (modify, no inner signature): re-sealed and re-signed.
    let out = media_relay(&signed_modify);
    let edited = write(d, "edited.sip", &ok(&out));
    let v = String::from_utf8(ok(&verify(&edited, &[]))).unwrap();
    assert!(v.contains("(relay)"), "{v}");
    let opened = ok(&run(&["open", path(&edited), "--identity", "keys/bob"]));
    assert!(String::from_utf8_lossy(&opened).contains("c=IN IP4 198.51.100.7"));

    // access=read: reencrypt refuses; a relay signing anyway is caught.
    let read = sealed(d, "read", false);
    let signed_read = signed(d, &read, "signed-read.sip");
    let out = run(&[
        "reencrypt",
        path(&signed_read),
        "--identity",
        "keys/proxy-a",
        "--peer",
        "keys/bob/cert.pem",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("access=read"));
    let rogue = ok(&run(&["sign", path(&read), "--identity", "keys/proxy-a"]));
    fails(
        &verify(&write(d, "rogue.sip", &rogue), &[]),
        "signer",
        "designated it access=read only",
    );

    // A plain proxy keeps its own (signed) designation, so bob can verify.
    let fwd = ok(&run(&[
        "proxy",
        path(&signed_read),
        "--identity",
        "keys/proxy-a",
    ]));
    assert!(String::from_utf8_lossy(&fwd).contains("Proxy-Inspect-Body: <sip:proxy-a"));
    ok(&verify(&write(d, "fwd.sip", &fwd), &[]));
}

#[test]
fn inner_signature_makes_the_disclosure_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let inner = sealed(d, "modify", true);
    let report = d.join("r.json");
    let out = run(&[
        "proxy",
        path(&inner),
        "--identity",
        "keys/proxy-a",
        "--report",
        path(&report),
        "--report-format",
        "json",
    ]);
    ok(&out);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["signer"], "sip:alice@a.example.com");
    assert!(r["sdp"].as_str().unwrap().starts_with("v=0"));
    // Even with access=modify, an edit would break the signature: refused.
    let out = media_relay(&inner);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("inner signature by sip:alice@a.example.com"),
        "{}",
        text(&out)
    );
    assert!(out.stdout.is_empty());
    // reencrypt without edits passes the signed content on untouched.
    let next = ok(&run(&[
        "reencrypt",
        path(&inner),
        "--identity",
        "keys/proxy-a",
        "--peer",
        "keys/bob/cert.pem",
    ]));
    let next = write(d, "next.sip", &next);
    let v = String::from_utf8(ok(&verify(&next, &["--identity", "keys/bob"]))).unwrap();
    assert!(
        v.contains("inner signature by sip:alice@a.example.com (ua)"),
        "{v}"
    );
    // carol's inner signature on alice's message: the signer check fails.
    let carol = ok(&run(&[
        "seal",
        "samples/invite.sip",
        "--peer",
        "keys/bob/cert.pem",
        "--sign",
        "keys/carol",
    ]));
    let carol = write(d, "carol.sip", &carol);
    fails(
        &verify(&carol, &["--identity", "keys/bob"]),
        "signer",
        "neither the From AOR",
    );
    let out = run(&[
        "open",
        path(&carol),
        "--identity",
        "keys/bob",
        "--trust",
        TRUST,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("signer: the signer sip:carol"),
        "{}",
        text(&out)
    );
    assert!(out.stdout.is_empty());
}

/// One proxy step; returns the output.
fn proxy(input: &Path, identity: &str, extra: &[&str]) -> Output {
    let mut args = vec!["proxy", path(input), "--identity", identity];
    args.extend(extra);
    run(&args)
}

#[test]
fn route_security_chain_levels_and_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // alice writes her entry in the design's bare form.
    let invite = edit(
        &repo().join("samples/invite.sip"),
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRoute-Security: 192.0.2.10:5060;level=3\r\n",
    );
    let invite = write(d, "invite.sip", &invite);
    let alice = signed(d, &invite, "alice.sip");
    // Each relay's responses come back to its own state (its branch key).
    let state = d.join("state");
    let hop = |input: &Path, id: &str, from: &str, extra: &[&str], name: &str| {
        let report = d.join(format!("{name}.txt"));
        let mut args = vec![
            "--received-from",
            from,
            "--report",
            path(&report),
            "--state",
            path(&state),
        ];
        args.extend(extra);
        let out = proxy(input, id, &args);
        (
            write(d, name, &ok(&out)),
            std::fs::read_to_string(report).unwrap(),
        )
    };
    let rs = |file: &Path| -> Vec<String> {
        let m = Message::parse(&std::fs::read(file).unwrap()).unwrap();
        m.header_values("Route-Security")
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let top_via = |file: &Path| -> String {
        let m = Message::parse(&std::fs::read(file).unwrap()).unwrap();
        m.header_values("Via")[0].to_owned()
    };
    let (a, ra) = hop(
        &alice,
        "keys/proxy-a",
        "192.0.2.10:5060",
        &["--link-level", "3"],
        "a.sip",
    );
    assert!(
        ra.contains("route-security: the link from 192.0.2.10:5060 is level 3"),
        "{ra}"
    );
    assert!(
        ra.contains("put proxy-a.a.example.com;level=3 on top"),
        "{ra}"
    );
    // New entries go on top, in the bare form; the Via keeps where.
    assert_eq!(
        rs(&a),
        ["proxy-a.a.example.com;level=3", "192.0.2.10:5060;level=3"]
    );
    assert!(top_via(&a).ends_with(";rs-pos=1"), "{}", top_via(&a));
    // proxy-b writes the form sipseal wrote before issue 28.
    let (b, _) = hop(
        &a,
        "keys/proxy-b",
        "proxy-a.a.example.com",
        &["--link-level", "2", "--route-security-form", "name-addr"],
        "b.sip",
    );
    assert_eq!(
        rs(&b),
        [
            "<sip:proxy-b.b.example.com>;level=2",
            "proxy-a.a.example.com;level=3",
            "192.0.2.10:5060;level=3"
        ]
    );
    assert!(top_via(&b).ends_with(";rs-pos=2"), "{}", top_via(&b));
    // What bob receives, in deterministic mode: reviewed like code.
    golden("route-security-at-bob.sip", &std::fs::read(&b).unwrap());
    let from_b = ["--received-from", "proxy-b.b.example.com"];
    let v = String::from_utf8(ok(&verify(
        &b,
        &[&["--min-route-level", "2"][..], &from_b].concat(),
    )))
    .unwrap();
    assert!(v.contains(
        "route-security: 192.0.2.10:5060 level 3 -> proxy-a.a.example.com level 3 -> proxy-b.b.example.com level 2"
    ), "{v}");
    assert!(
        v.contains("pass accounted: 3 link(s), one entry per Via"),
        "{v}"
    );
    golden("verify-route-security.txt", v.as_bytes());
    // Too low: the weakest link is named.
    fails(
        &verify(&b, &["--min-route-level", "3"]),
        "level",
        "the weakest link, proxy-b.b.example.com level 2, is below the minimum level 3",
    );
    // The top entry is not the hop it came from.
    fails(
        &verify(&b, &["--received-from", "proxy-a.a.example.com"]),
        "received from",
        "unaccounted",
    );
    // A gap: proxy-b forwards without Route-Security.
    let gap = write(d, "gap.sip", &ok(&proxy(&a, "keys/proxy-b", &[])));
    fails(
        &verify(&gap, &["--min-route-level", "1"]),
        "accounted",
        "link 3 (sent by proxy-b.b.example.com) has no entry",
    );
    // A relay after that plain hop finds proxy-a's entry on top, not
    // proxy-b's: it puts proxy-b without a level, then its own; every link
    // is accounted for again, the unchecked one named as the weakest.
    let (c, rc) = hop(
        &gap,
        "keys/carol",
        "proxy-b.b.example.com",
        &["--link-level", "3", "--via", "proxy-c.c.example.com"],
        "c.sip",
    );
    assert!(rc.contains("the top entry names proxy-a.a.example.com, not proxy-b.b.example.com: added proxy-b.b.example.com without a level"), "{rc}");
    assert_eq!(
        rs(&c),
        [
            "proxy-c.c.example.com;level=3",
            "proxy-b.b.example.com",
            "proxy-a.a.example.com;level=3",
            "192.0.2.10:5060;level=3"
        ]
    );
    assert!(top_via(&c).ends_with(";rs-pos=3"), "{}", top_via(&c));
    let v = text(&verify(&c, &["--min-route-level", "1"]));
    assert!(
        v.contains("pass accounted: 4 link(s), one entry per Via"),
        "{v}"
    );
    fails(
        &verify(&c, &["--min-route-level", "1"]),
        "level",
        "the weakest link, proxy-b.b.example.com (no level: unchecked), is below the minimum level 1",
    );
    // alice sent no entry: proxy-a puts one without a level for her link
    // (unchecked), then its own on top.
    let bare = signed(d, &repo().join("samples/invite.sip"), "bare.sip");
    let (a0, r0) = hop(
        &bare,
        "keys/proxy-a",
        "192.0.2.10:5060",
        &["--link-level", "3"],
        "a0.sip",
    );
    assert!(r0.contains("the top entry is missing, not 192.0.2.10:5060: added 192.0.2.10:5060 without a level (an unchecked link, counted as level 0)"), "{r0}");
    assert_eq!(
        rs(&a0),
        ["proxy-a.a.example.com;level=3", "192.0.2.10:5060"]
    );
    assert!(top_via(&a0).ends_with(";rs-pos=1"), "{}", top_via(&a0));
    fails(
        &verify(&a0, &["--min-route-level", "1"]),
        "level",
        "the weakest link, 192.0.2.10:5060 (no level: unchecked), is below the minimum level 1",
    );
    // The entry verify reads back says null for the missing level.
    let json = run(&["verify", path(&a0), "--trust", TRUST, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        json["route_security"]["entries"],
        serde_json::json!([
            {"addr": "proxy-a.a.example.com", "level": 3},
            {"addr": "192.0.2.10:5060", "level": null}
        ])
    );
    // proxy-a with --min-route-level 2 answers 403 naming the weak link,
    // and forwards nothing.
    let report = d.join("weak.txt");
    let out = proxy(
        &bare,
        "keys/proxy-a",
        &[
            "--received-from",
            "192.0.2.10:5060",
            "--link-level",
            "3",
            "--min-route-level",
            "2",
            "--report",
            path(&report),
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let answer = Message::parse(&out.stdout).unwrap();
    assert_eq!(answer.status(), Some(403), "{}", answer.start_line());
    assert_eq!(
        answer.header("Warning"),
        Some(
            "399 proxy-a.a.example.com \"Route-Security: the weakest link, 192.0.2.10:5060 (no level: unchecked), is below the minimum level 2\""
        )
    );
    let r = std::fs::read_to_string(report).unwrap();
    assert!(
        r.contains("refused: Route-Security: the weakest link"),
        "{r}"
    );
    // A level-2 link passes the same minimum.
    ok(&proxy(
        &b,
        "keys/proxy-b",
        &[
            "--received-from",
            "proxy-b.b.example.com",
            "--min-route-level",
            "2",
        ],
    ));

    // The response carries the entries back in the same order; each hop
    // finds its own at the position it wrote it: proxy-b the top one,
    // proxy-a the second, alice the third.
    let response = ok(&run(&["build", "response", "--request", path(&b), "180"]));
    let response = write(d, "180.sip", &response);
    assert_eq!(rs(&response), rs(&b));
    let back = |input: &Path, id: &str, level: &str, name: &str| {
        let report = d.join(format!("{name}.txt"));
        let out = proxy(
            input,
            id,
            &[
                "--link-level",
                level,
                "--report",
                path(&report),
                "--state",
                path(&state),
            ],
        );
        (out, std::fs::read_to_string(report).unwrap_or_default())
    };
    let (out, r) = back(&response, "keys/proxy-b", "2", "resp-b");
    let at_a = write(d, "180-at-a.sip", &ok(&out));
    assert!(
        r.contains("this relay's entry came back unchanged (proxy-b.b.example.com level 2, position 1 from the top)"),
        "{r}"
    );
    let (out, r) = back(&at_a, "keys/proxy-a", "3", "resp-a");
    let at_alice = write(d, "180-at-alice.sip", &ok(&out));
    assert!(
        r.contains("this relay's entry came back unchanged (proxy-a.a.example.com level 3, position 2 from the top)"),
        "{r}"
    );
    assert_eq!(rs(&at_alice), rs(&b));
    golden(
        "route-security-180-at-alice.sip",
        &std::fs::read(&at_alice).unwrap(),
    );
    let v = text(&verify(&at_alice, &["--min-route-level", "2"]));
    assert!(
        v.contains("pass own entry: the entry at this party's position (3 from the top) names 192.0.2.10:5060"),
        "{v}"
    );
    // A response whose entry at a relay's position is not its own is
    // dropped there: another address, or the level changed on the way.
    for (from, to, why) in [
        (
            "<sip:proxy-b.b.example.com>;level=2",
            "proxy-x.b.example.com;level=2",
            "the entry at this relay's position (1 from the top) is proxy-x.b.example.com level 2, not this relay's (proxy-b.b.example.com level 2)",
        ),
        (
            "<sip:proxy-b.b.example.com>;level=2",
            "proxy-b.b.example.com;level=3",
            "this relay's entry came back as proxy-b.b.example.com level 3, not proxy-b.b.example.com level 2",
        ),
    ] {
        let forged = write(d, "forged.sip", &edit(&response, from, to));
        let (out, r) = back(&forged, "keys/proxy-b", "2", "forged");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(out.stdout.is_empty());
        assert!(text(&out).contains(why), "{}", text(&out));
        assert!(r.contains(why), "{r}");
    }
    // alice, on a response whose bottom entry is not hers.
    let forged = write(
        d,
        "forged-at-alice.sip",
        &edit(
            &at_alice,
            "192.0.2.10:5060;level=3",
            "192.0.2.99:5060;level=3",
        ),
    );
    fails(
        &verify(&forged, &[]),
        "own entry",
        "is 192.0.2.99:5060, not 192.0.2.10:5060",
    );
}

#[test]
fn imposture_policy_and_required_signature_answer_without_forwarding() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bindings = write(
        d,
        "bindings.yaml",
        b"sip:alice@a.example.com: [\"192.0.2.10\"]\n",
    );
    let invite = repo().join("samples/invite.sip");
    let status = |out: &Output| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    // The imposture check: alice's AOR from another address.
    let report = d.join("r.txt");
    let from = |source: &str, extra: &[&str]| {
        let args = [
            &["--bindings", path(&bindings), "--received-from", source],
            extra,
        ]
        .concat();
        proxy(&invite, "keys/proxy-a", &args)
    };
    let out = from("192.0.2.66", &["--report", path(&report)]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_eq!(status(&out), "SIP/2.0 403 Forbidden");
    let r = std::fs::read_to_string(&report).unwrap();
    assert!(r.contains("refused: imposture check: sip:alice@a.example.com is bound to 192.0.2.10, but the request came from 192.0.2.66"), "{r}");
    ok(&from("192.0.2.10:5060", &[]));

    // The connectivity policy: alice may reach b.example.com only; a
    // denied target gets a plain 404, nothing that tells it from an unknown one.
    let policy = write(
        d,
        "policy.yaml",
        b"allow:\n  - from: \"sip:*@a.example.com\"\n    to: \"sip:*@b.example.com\"\n",
    );
    ok(&proxy(
        &invite,
        "keys/proxy-a",
        &["--policy", path(&policy)],
    ));
    let to_carol = edit(
        &invite,
        "To: Bob <sip:bob@b.example.com>",
        "To: <sip:carol@a.example.com>",
    );
    let to_carol = write(d, "carol.sip", &to_carol);
    let out = proxy(&to_carol, "keys/proxy-a", &["--policy", path(&policy)]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_eq!(status(&out), "SIP/2.0 404 Not Found");
    let resp = Message::parse(&out.stdout).unwrap();
    assert!(resp.header("Warning").is_none());
    assert!(resp.body().is_empty());

    // --require-signature: 495 without one, forwarded with one, 403 when
    // the signed designations were changed.
    let sealed = sealed(d, "read", false);
    let out = proxy(
        &sealed,
        "keys/proxy-a",
        &["--require-signature", "--signer-trust", TRUST],
    );
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(status(&out), "SIP/2.0 495 Signature Required");
    let good = signed(d, &sealed, "signed.sip");
    ok(&proxy(
        &good,
        "keys/proxy-a",
        &["--require-signature", "--signer-trust", TRUST],
    ));
    let inner = sealed_inner(d);
    ok(&proxy(
        &inner,
        "keys/proxy-a",
        &["--require-signature", "--signer-trust", TRUST],
    ));
    let changed = write(
        d,
        "changed.sip",
        &edit(&good, "access=read\r\n", "access=modify\r\n"),
    );
    let out = proxy(
        &changed,
        "keys/proxy-a",
        &["--require-signature", "--signer-trust", TRUST],
    );
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(status(&out), "SIP/2.0 403 Forbidden");

    // Item 9: a valid signature, but carol's on a request from alice: 403.
    // The finding: any signature that verified was enough.
    let by_carol = ok(&run(&["sign", path(&sealed), "--identity", "keys/carol"]));
    let by_carol = write(d, "by-carol.sip", &by_carol);
    let report = d.join("carol.txt");
    let out = proxy(
        &by_carol,
        "keys/proxy-a",
        &[
            "--require-signature",
            "--signer-trust",
            TRUST,
            "--report",
            path(&report),
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_eq!(status(&out), "SIP/2.0 403 Forbidden");
    let r = std::fs::read_to_string(&report).unwrap();
    assert!(
        r.contains("not signed by the From party: signed by sip:carol@a.example.com, not by sip:alice@a.example.com"),
        "{r}"
    );
    // With trust anchors, alice's own signature must chain to one.
    ok(&proxy(
        &good,
        "keys/proxy-a",
        &[
            "--require-signature",
            "--signer-trust",
            "keys/ca/a.example.com",
        ],
    ));
    let out = proxy(
        &good,
        "keys/proxy-a",
        &[
            "--require-signature",
            "--signer-trust",
            "keys/ca/b.example.com",
        ],
    );
    assert_eq!(status(&out), "SIP/2.0 403 Forbidden");
}

fn sealed_inner(d: &Path) -> PathBuf {
    let out = ok(&run(&[&SEAL_INVITE[..], &["--sign", "keys/alice"]].concat()));
    write(d, "inner.sip", &out)
}

/// Items 14 and 15: an anchor without basicConstraints (a v1 CA, as
/// `openssl -CAfile` takes it) is an anchor; one that says it is no CA is
/// named in a warning; a PEM bundle with text between its blocks is read;
/// the key usage line says what the signer's certificate has.
#[test]
fn anchors_as_rfc5280_takes_them_and_key_usage_as_it_is() {
    use common::Succeeds;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |name: &str| d.join(name).to_str().unwrap().to_owned();
    let ossl = |args: &[&str]| {
        common::openssl().args(args).succeeds();
    };
    // A v1 CA (no extensions at all) and a signer it issues.
    ossl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("ca.key"),
        "-subj",
        "/CN=v1 CA",
        "-out",
        &p("ca.csr"),
    ]);
    ossl(&[
        "x509",
        "-req",
        "-in",
        &p("ca.csr"),
        "-signkey",
        &p("ca.key"),
        "-days",
        "30",
        "-out",
        &p("ca.pem"),
    ]);
    std::fs::create_dir(d.join("signer")).unwrap();
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=URI:sip:alice@a.example.com\nkeyUsage=critical,keyEncipherment\n",
    )
    .unwrap();
    ossl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("signer/key.pem"),
        "-subj",
        "/CN=alice",
        "-out",
        &p("s.csr"),
    ]);
    ossl(&[
        "x509",
        "-req",
        "-in",
        &p("s.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("signer/cert.pem"),
    ]);
    let signed = ok(&run(&[
        "sign",
        "samples/invite.sip",
        "--identity",
        &p("signer"),
    ]));
    let signed = write(d, "signed.sip", &signed);
    let out = run(&["verify", path(&signed), "--trust", &p("ca.pem")]);
    let report = text(&out);
    assert!(report.contains("pass chain"), "{report}");
    // Only keyEncipherment: the line says so, and fails.
    assert!(
        report.contains("FAIL key usage") && report.contains("(it has: keyEncipherment)"),
        "{report}"
    );
    // alice's demo certificate: what it really has.
    let good = ok(&run(&[
        "sign",
        "samples/invite.sip",
        "--identity",
        "keys/alice",
    ]));
    let good = write(d, "good.sip", &good);
    let out = run(&["verify", path(&good), "--trust", TRUST]);
    assert!(
        text(&out).contains(
            "pass key usage: digitalSignature, keyEncipherment; extended: emailProtection"
        ),
        "{}",
        text(&out)
    );
    // A bundle as `openssl pkcs7 -print_certs` writes it, text between
    // blocks, with a certificate that says it is no CA: named, skipped.
    let demo = std::fs::read_to_string(common::repo().join(TRUST)).unwrap();
    let leaf = std::fs::read_to_string(common::repo().join("keys/bob/cert.pem")).unwrap();
    let bundle =
        format!("subject=CN = bob\nissuer=CN = demo\n\n{leaf}\nsubject=demo anchors\n\n{demo}\n");
    let bundle = write(d, "bundle.pem", bundle.as_bytes());
    let out = run(&["verify", path(&good), "--trust", path(&bundle)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("skipped: its basicConstraints say it is not a CA"),
        "{}",
        text(&out)
    );
}
