//! `proxy --pinholes` through the built binary: a sealed INVITE (offer), the
//! sealed 200 OK (answer) and the BYE pass proxy-a, which keeps the call in
//! its state directory. Golden files for each step, with and without
//! rtcp-mux; the JSON form; and `nft -c -f` on the nftables output.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Succeeds, golden, sipseal, write};
use sipseal::sip::Message;

/// proxy-a relays `input` with its state in `state`, writing pinholes in `format`.
fn proxy(input: &Path, state: &Path, pinholes: &Path, format: &str) -> Vec<u8> {
    sipseal()
        .args(["--seed", "0a", "proxy"])
        .arg(input)
        .args(["--identity", "keys/proxy-a"])
        // A signature counts only from a party chained to an anchor.
        .args(["--signer-trust", "keys/trust.pem"])
        .args(["--psk", "keys/psk/alice-proxy-a.yaml", "--state"])
        .arg(state)
        .args(["--pinhole-format", format, "--pinholes"])
        .arg(pinholes)
        .succeeds()
        .stdout
}

/// The pinhole files of one call through proxy-a: offer, offer+answer, BYE.
struct Call {
    offer: Vec<u8>,
    answer: Vec<u8>,
    bye: Vec<u8>,
}

fn call(offer_sdp: &str, answer_sdp: &str, format: &str) -> Call {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    // Signed by alice inside the envelope: only an authenticated offer
    // opens pinholes (sealing proves nothing about the sender).
    let plain = sipseal()
        .args(["--seed", "01", "build", "invite"])
        .args(["--from", "Alice <sip:alice@a.example.com>"])
        .args(["--to", "Bob <sip:bob@b.example.com>", "--sdp", offer_sdp])
        .succeeds()
        .stdout;
    let plain = write(dir, "plain.sip", &plain);
    let invite = sipseal()
        .args(["--seed", "01", "seal"])
        .arg(&plain)
        .args(["--sign", "keys/alice", "--peer", "keys/bob/cert.pem"])
        .args(["--disclose", "keys/proxy-a/cert.pem"])
        .succeeds()
        .stdout;
    let invite = write(dir, "invite.sip", &invite);
    let p = dir.join("p");
    let forwarded = write(dir, "fwd.sip", &proxy(&invite, &state, &p, format));
    let offer = std::fs::read(&p).unwrap();

    // bob answers, signed, disclosing the answer to proxy-a by its PSK.
    let answer = sipseal()
        .args(["--seed", "02", "build", "response", "200", "--request"])
        .arg(&forwarded)
        .args(["--sdp", answer_sdp])
        .succeeds()
        .stdout;
    let answer = write(dir, "200-plain.sip", &answer);
    let answer = sipseal()
        .args(["--seed", "02", "seal"])
        .arg(&answer)
        .args(["--sign", "keys/bob", "--peer", "keys/alice/cert.pem"])
        .args(["--disclose", "psk:keys/psk/alice-proxy-a.yaml"])
        .succeeds()
        .stdout;
    let answer = write(dir, "200.sip", &answer);
    proxy(&answer, &state, &p, format);
    let answered = std::fs::read(&p).unwrap();

    // The BYE of the dialog: its Call-ID and both tags (S2).
    let ok = Message::parse(&std::fs::read(&answer).unwrap()).unwrap();
    let (call_id, from, to) = (
        ok.call_id().unwrap().to_owned(),
        ok.from_tag().unwrap().unwrap(),
        ok.to_tag().unwrap().unwrap(),
    );
    let bye = sipseal()
        .args(["--seed", "03", "build", "bye"])
        .args([
            "--from",
            &format!("Alice <sip:alice@a.example.com>;tag={from}"),
        ])
        .args(["--to", &format!("Bob <sip:bob@b.example.com>;tag={to}")])
        .args(["--call-id", &call_id, "--cseq", "2"])
        .succeeds()
        .stdout;
    let bye = write(dir, "bye.sip", &bye);
    proxy(&bye, &state, &p, format);
    let bye = std::fs::read(&p).unwrap();
    // The call is over: nothing of it is left in the state directory.
    let left: Vec<_> = std::fs::read_dir(state.join("sip_proxy-a.a.example.com/pinholes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".lock")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    Call {
        offer,
        answer: answered,
        bye,
    }
}

fn elements(script: &[u8], verb: &str) -> Vec<String> {
    String::from_utf8_lossy(script)
        .lines()
        .filter(|l| l.starts_with(verb))
        .map(|l| {
            let start = l.find("{ ").unwrap() + 2;
            let rest = &l[start..];
            rest[..rest.find(" comment").or(rest.find(" }")).unwrap()].to_owned()
        })
        .collect()
}

/// Pinhole elements written `ADDR . PROTO . PORT, ...`.
fn listed(elements: &str) -> Vec<String> {
    elements.split(", ").map(str::to_owned).collect()
}

#[test]
fn offer_answer_and_bye_with_rtcp_mux_on_audio() {
    let c = call("samples/offer.sdp", "samples/answer.sdp", "nft");
    golden("pinholes-offer.nft", &c.offer);
    golden("pinholes-offer-answer.nft", &c.answer);
    golden("pinholes-bye.nft", &c.bye);
    // Audio is multiplexed on both sides: RTP only. Video: RTP and RTCP
    // (a=rtcp:51373 in the offer, port+1 in the answer).
    assert_eq!(
        elements(&c.answer, "add element"),
        listed(
            "192.0.2.10 . udp . 49170, 198.51.100.20 . udp . 3456, 192.0.2.11 . udp . 51372, \
             192.0.2.11 . udp . 51373, 198.51.100.20 . udp . 3458, 198.51.100.20 . udp . 3459"
        )
    );
    // The BYE deletes exactly what was added.
    assert_eq!(
        elements(&c.bye, "delete element"),
        elements(&c.answer, "add element")
    );
    assert!(elements(&c.bye, "add element").is_empty());
}

#[test]
fn offer_answer_and_bye_without_rtcp_mux() {
    let c = call(
        "tests/data/offer-no-mux.sdp",
        "tests/data/answer-no-mux.sdp",
        "nft",
    );
    golden("pinholes-no-mux-offer-answer.nft", &c.answer);
    golden("pinholes-no-mux-bye.nft", &c.bye);
    // The offer asked for rtcp-mux on audio; the answer did not accept it,
    // so RTCP gets port+1 on both sides. a=rtcp sends video's RTCP to
    // another host than its RTP: no pinhole for it (S1), and a note.
    assert_eq!(
        elements(&c.answer, "add element"),
        listed(
            "2001:db8::10 . udp . 40000, 2001:db8::10 . udp . 40001, 198.51.100.30 . udp . 30000, \
             198.51.100.30 . udp . 30001, 2001:db8::10 . udp . 40002, \
             198.51.100.30 . udp . 30002, 198.51.100.30 . udp . 30003"
        )
    );
    assert!(String::from_utf8_lossy(&c.answer).contains("another host than RTP's 2001:db8::10"));
    // Before the answer, audio's RTCP was expected on the multiplexed port.
    assert_eq!(
        elements(&c.offer, "add element"),
        listed("2001:db8::10 . udp . 40000, 2001:db8::10 . udp . 40002")
    );
}

#[test]
fn json_pinholes_name_every_field() {
    let c = call("samples/offer.sdp", "samples/answer.sdp", "json");
    golden("pinholes-offer-answer.json", &c.answer);
    let v: serde_json::Value = serde_json::from_slice(&c.answer).unwrap();
    assert_eq!(v["table"], "inet sipseal");
    assert_eq!(v["state"], "offer-answer");
    assert!(v["call_id"].as_str().unwrap().ends_with("@a.example.com"));
    let add = v["add"].as_array().unwrap();
    assert_eq!(add.len(), 6);
    for p in add {
        for field in [
            "set",
            "address",
            "protocol",
            "port",
            "stream",
            "media",
            "component",
            "side",
        ] {
            assert!(!p[field].is_null(), "{field} missing in {p}");
        }
    }
    assert_eq!(add[1]["side"], "answer");
    assert_eq!(add[3]["component"], "rtcp");
    let bye: serde_json::Value = serde_json::from_slice(&c.bye).unwrap();
    assert_eq!(bye["state"], "ended");
    assert_eq!(bye["delete"], v["add"]);
    assert_eq!(bye["add"], serde_json::json!([]));
}

/// `nft -c -f` (check only: nothing is applied) on each step's script, the
/// way a firewall would load them in turn. `.ci/run` installs nftables.
#[test]
fn nft_accepts_the_scripts() {
    let nft = ["/usr/sbin/nft", "/sbin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nft not found: install nftables (apt-get install -y nftables; .ci/run does)");
    let tmp = tempfile::tempdir().unwrap();
    let check = |name: &str, script: &[u8]| {
        let path = write(tmp.path(), name, script);
        let out = Command::new(nft)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // nft itself must be able to tell good from bad here.
    let bad = b"add element inet sipseal media4 { 192.0.2.1 . udp . 70000 }\n";
    assert!(!check("bad.nft", bad).0, "nft -c accepts a bad script");

    for (offer, answer) in [
        ("samples/offer.sdp", "samples/answer.sdp"),
        (
            "tests/data/offer-no-mux.sdp",
            "tests/data/answer-no-mux.sdp",
        ),
    ] {
        let c = call(offer, answer, "nft");
        let (good, err) = check("offer.nft", &c.offer);
        assert!(good, "offer: {err}");
        let (good, err) = check("answer.nft", &c.answer);
        assert!(good, "offer+answer: {err}");
        // Deletions only make sense after the additions: load them in turn.
        let mut all = c.answer.clone();
        all.extend_from_slice(&c.bye);
        let (good, err) = check("all.nft", &all);
        assert!(good, "offer+answer then BYE: {err}");
    }
}

/// S1 and S2 through the binary. The findings: an unsealed, forged 200 OK
/// answering a sealed offer added pinholes; a BYE with only the Call-ID
/// deleted every pinhole of the call.
#[test]
fn only_authenticated_sdp_opens_and_only_the_dialog_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    let p = dir.join("p.nft");
    let report = dir.join("r.json");
    let step = |input: &Path, from: &str| -> serde_json::Value {
        sipseal()
            .arg("proxy")
            .arg(input)
            .args([
                "--identity",
                "keys/proxy-a",
                "--psk",
                "keys/psk/alice-proxy-a.yaml",
                "--signer-trust",
                "keys/trust.pem",
            ])
            .arg("--state")
            .arg(&state)
            .arg("--pinholes")
            .arg(&p)
            .args(["--pinhole-format", "json", "--received-from", from])
            .args(["--report-format", "json", "--report"])
            .arg(&report)
            .succeeds();
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap()
    };
    let holes =
        || -> serde_json::Value { serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap() };
    let plain = sipseal()
        .args(["--seed", "11", "build", "invite"])
        .args(["--from", "Alice <sip:alice@a.example.com>"])
        .args([
            "--to",
            "Bob <sip:bob@b.example.com>",
            "--sdp",
            "samples/offer.sdp",
        ])
        .succeeds()
        .stdout;
    let plain = write(dir, "plain.sip", &plain);
    // Sealed to proxy-a but not signed: anyone could have made it.
    let unsigned = sipseal()
        .args(["--seed", "11", "seal"])
        .arg(&plain)
        .args([
            "--peer",
            "keys/bob/cert.pem",
            "--disclose",
            "keys/proxy-a/cert.pem",
        ])
        .succeeds()
        .stdout;
    let r = step(&write(dir, "unsigned.sip", &unsigned), "192.0.2.10:5060");
    assert_eq!(r["opened"], true);
    assert!(holes()["add"].as_array().unwrap().is_empty(), "{}", holes());
    assert!(r["notes"].to_string().contains("not authenticated"), "{r}");
    // Signed by alice: the offer opens pinholes.
    let signed = sipseal()
        .args(["--seed", "11", "seal"])
        .arg(&plain)
        .args(["--sign", "keys/alice", "--peer", "keys/bob/cert.pem"])
        .args(["--disclose", "keys/proxy-a/cert.pem"])
        .succeeds()
        .stdout;
    let fwd = sipseal()
        .arg("proxy")
        .arg(write(dir, "signed.sip", &signed))
        .args([
            "--identity",
            "keys/proxy-a",
            "--signer-trust",
            "keys/trust.pem",
        ])
        .arg("--state")
        .arg(&state)
        .arg("--pinholes")
        .arg(&p)
        .args([
            "--pinhole-format",
            "json",
            "--received-from",
            "192.0.2.10:5060",
        ])
        .succeeds()
        .stdout;
    let fwd = write(dir, "fwd.sip", &fwd);
    assert_eq!(holes()["state"], "offer");
    let offer_holes = holes()["add"].as_array().unwrap().len();
    assert!(offer_holes > 0);
    // A forged, unsealed 200 OK answering it: no answer pinholes.
    let forged = sipseal()
        .args(["--seed", "12", "build", "response", "200", "--request"])
        .arg(&fwd)
        .args(["--sdp", "samples/answer.sdp"])
        .succeeds()
        .stdout;
    let r = step(&write(dir, "forged.sip", &forged), "203.0.113.66");
    assert_eq!(holes()["state"], "unchanged", "{}", holes());
    assert!(r["notes"].to_string().contains("not authenticated"), "{r}");
    // bob's signed answer completes them.
    let ok = sipseal()
        .args(["--seed", "12", "seal"])
        .arg(write(dir, "200-plain.sip", &forged))
        .args(["--sign", "keys/bob", "--peer", "keys/alice/cert.pem"])
        .args(["--disclose", "psk:keys/psk/alice-proxy-a.yaml"])
        .succeeds()
        .stdout;
    step(&write(dir, "200.sip", &ok), "198.51.100.20:5060");
    assert_eq!(holes()["state"], "offer-answer");
    let all = holes()["add"].as_array().unwrap().len();
    assert!(all > offer_holes);
    let dialog = Message::parse(&ok).unwrap();
    let bye = |from_tag: &str, to_tag: &str| {
        let out = sipseal()
            .args(["--seed", "13", "build", "bye"])
            .args([
                "--from",
                &format!("Alice <sip:alice@a.example.com>;tag={from_tag}"),
            ])
            .args(["--to", &format!("Bob <sip:bob@b.example.com>;tag={to_tag}")])
            .args(["--call-id", dialog.call_id().unwrap(), "--cseq", "2"])
            .succeeds()
            .stdout;
        write(dir, "bye.sip", &out)
    };
    let (f, t) = (
        dialog.from_tag().unwrap().unwrap(),
        dialog.to_tag().unwrap().unwrap(),
    );
    // Only the Call-ID: kept.
    let r = step(&bye("x1", "x2"), "192.0.2.10:5060");
    assert_eq!(holes()["state"], "unchanged");
    assert!(
        r["notes"].to_string().contains("tags are not the dialog's"),
        "{r}"
    );
    // The dialog's tags from a stranger: kept.
    let r = step(&bye(&f, &t), "203.0.113.66");
    assert_eq!(holes()["state"], "unchanged");
    assert!(
        r["notes"]
            .to_string()
            .contains("not from the dialog's neighbours"),
        "{r}"
    );
    // From the neighbour the offer came from: closed.
    step(&bye(&f, &t), "192.0.2.10:5060");
    assert_eq!(holes()["state"], "ended");
    assert_eq!(holes()["delete"].as_array().unwrap().len(), all);
}
