//! `proxy --pinholes` through the built binary: a sealed INVITE (offer), the
//! sealed 200 OK (answer) and the BYE pass proxy-a, which keeps the call in
//! its state directory. Golden files for each step, with and without
//! rtcp-mux; the JSON form; and `nft -c -f` on the nftables output.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Succeeds, golden, sipseal, write};
use sipseal::sip::Message;

/// proxy-a relays `input` with its state in `state`, writing pinholes in
/// `format`; `extra` are more arguments (`--firewall nft`).
fn proxy(input: &Path, state: &Path, pinholes: &Path, format: &str, extra: &[&str]) -> Vec<u8> {
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
        .args(extra)
        .succeeds()
        .stdout
}

/// The pinhole files of one call through proxy-a: offer, offer+answer, BYE.
struct Call {
    offer: Vec<u8>,
    answer: Vec<u8>,
    bye: Vec<u8>,
}

/// alice's INVITE with `sdp`, signed by her inside the envelope (only an
/// authenticated offer opens pinholes: sealing proves nothing about the
/// sender), sealed for bob and disclosed to proxy-a; written to `dir`.
fn signed_offer(dir: &Path, sdp: &str, call_id: Option<&str>) -> std::path::PathBuf {
    let mut build = sipseal();
    build.args(["--seed", "01", "build", "invite"]);
    if let Some(id) = call_id {
        build.args(["--call-id", id]);
    }
    let plain = build
        .args(["--from", "Alice <sip:alice@a.example.com>"])
        .args(["--to", "Bob <sip:bob@b.example.com>", "--sdp", sdp])
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
    write(dir, "invite.sip", &invite)
}

fn call(offer_sdp: &str, answer_sdp: &str, format: &str) -> Call {
    call_with(offer_sdp, answer_sdp, format, &[], &mut |_| {})
}

/// [`call`] with more proxy arguments, and `between` called after each
/// step has passed proxy-a (`offer`, `answer`, `bye`).
fn call_with(
    offer_sdp: &str,
    answer_sdp: &str,
    format: &str,
    extra: &[&str],
    between: &mut dyn FnMut(&str),
) -> Call {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    let invite = signed_offer(dir, offer_sdp, None);
    let p = dir.join("p");
    let forwarded = write(dir, "fwd.sip", &proxy(&invite, &state, &p, format, extra));
    let offer = std::fs::read(&p).unwrap();
    between("offer");

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
    proxy(&answer, &state, &p, format, extra);
    let answered = std::fs::read(&p).unwrap();
    between("answer");

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
    proxy(&bye, &state, &p, format, extra);
    let bye = std::fs::read(&p).unwrap();
    between("bye");
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

/// The elements of the `verb` lines; an `add` counts when it carries a
/// comment (an element added just before its deletion, so that the
/// deletion applies whether or not it is there, does not).
fn elements(script: &[u8], verb: &str) -> Vec<String> {
    String::from_utf8_lossy(script)
        .lines()
        .filter(|l| l.starts_with(verb) && (verb != "add element" || l.contains(" comment ")))
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
    // (a=rtcp:51373 in the offer, port+1 in the answer). Each side is
    // reached only from the other's address once the answer passed; the
    // offer's elements open to any source go.
    assert_eq!(
        elements(&c.answer, "add element"),
        listed(
            "198.51.100.20 . 192.0.2.10 . udp . 49170, 192.0.2.10 . 198.51.100.20 . udp . 3456, \
             198.51.100.20 . 192.0.2.11 . udp . 51372, 198.51.100.20 . 192.0.2.11 . udp . 51373, \
             192.0.2.11 . 198.51.100.20 . udp . 3458, 192.0.2.11 . 198.51.100.20 . udp . 3459"
        )
    );
    assert_eq!(
        elements(&c.answer, "delete element"),
        elements(&c.offer, "add element")
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

/// Move this test's thread into a network namespace of its own, with the
/// call's media addresses on its loopback; every process it starts
/// (nft, sipseal) lives there too. `false` (and why, on stderr) when
/// that is not allowed here: it needs root, as CI runs.
fn media_network(addresses: &[&str]) -> bool {
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        eprintln!(
            "SKIPPED: a network namespace of its own needs root (CI runs as root): {e}; the kernel's firewall is changed only inside one"
        );
        return false;
    }
    let ip = |args: &[&str]| {
        let ok = Command::new("ip")
            .args(args)
            .status()
            .expect("ip runs (.ci/run installs iproute2)");
        assert!(ok.success(), "ip {args:?}");
    };
    ip(&["link", "set", "lo", "up"]);
    for a in addresses {
        ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
    true
}

/// `script` through `nft -f -`.
fn nft(script: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft runs (.ci/run installs nftables)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The operator's part: media ports are dropped unless a pinhole lets the
/// packet through (the rules the scripts' header suggests).
const MEDIA_POLICY: &str = "\
table inet sipseal {
	set media4 { type ipv4_addr . inet_proto . inet_service; }
	set pair4 { type ipv4_addr . ipv4_addr . inet_proto . inet_service; }
	chain media {
		type filter hook input priority 0; policy accept;
		udp dport 3000-60000 ip saddr . ip daddr . meta l4proto . th dport @pair4 accept
		udp dport 3000-60000 ip daddr . meta l4proto . th dport @media4 accept
		udp dport 3000-60000 drop
	}
}
";

/// Whether a UDP packet from `from` reaches `to`:`port`.
fn passes(from: &str, to: &str, port: u16) -> bool {
    use std::net::UdpSocket;
    let rx = UdpSocket::bind((to, port)).unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let tx = UdpSocket::bind((from, 0)).unwrap();
    tx.send_to(b"rtp", (to, port)).unwrap();
    let mut buf = [0u8; 16];
    rx.recv_from(&mut buf).is_ok()
}

/// Issue 27: `--firewall nft` applies each change to the kernel before the
/// message goes on, and the pinholes work on packets. After the offer,
/// media to the offerer passes from anywhere; after the answer, only
/// from the answerer's address (and media to the answerer only from the
/// offerer's); after the BYE, nothing. A change nft refuses is answered
/// 500 with a Warning and keeps nothing.
#[test]
fn pinholes_applied_by_nft_work_on_packets() {
    // samples/offer.sdp: 192.0.2.10 (audio), 192.0.2.11 (video);
    // samples/answer.sdp: 198.51.100.20; and a stranger.
    let (offerer, answerer, stranger) = ("192.0.2.10", "198.51.100.20", "203.0.113.5");
    if !media_network(&[offerer, "192.0.2.11", answerer, stranger]) {
        return;
    }
    let (ok, err) = nft(MEDIA_POLICY);
    assert!(ok, "{err}");
    // The ruleset drops media before any call: the probes can fail.
    assert!(!passes(answerer, offerer, 49170));
    let mut seen = Vec::new();
    call_with(
        "samples/offer.sdp",
        "samples/answer.sdp",
        "nft",
        &["--firewall", "nft"],
        &mut |step| {
            let probes = (
                passes(answerer, offerer, 49170),
                passes(stranger, offerer, 49170),
                passes(offerer, answerer, 3456),
                passes(stranger, answerer, 3456),
            );
            seen.push((step.to_owned(), probes));
        },
    );
    assert_eq!(
        seen,
        [
            // Offer: the offerer is open to any source; the answerer is unknown.
            ("offer".to_owned(), (true, true, false, false)),
            // Answer: each side only from the other.
            ("answer".to_owned(), (true, false, true, false)),
            ("bye".to_owned(), (false, false, false, false)),
        ]
    );
    let listed = Command::new("nft")
        .args(["list", "table", "inet", "sipseal"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("set pair4") && !listed.contains("elements"),
        "{listed}"
    );

    // A set that is not sipseal's (constant: nothing may be added): nft
    // refuses the change, the INVITE is answered 500, nothing is kept.
    let (ok, err) = nft("delete table inet sipseal\n\
         table inet sipseal {\n\
         \tset media4 { type ipv4_addr . inet_proto . inet_service; flags constant; }\n\
         }\n");
    assert!(ok, "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let invite = signed_offer(tmp.path(), "samples/offer.sdp", None);
    let out = firewall_proxy(sipseal(), &invite, &state).output().unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{answer}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(answer.starts_with("SIP/2.0 500 "), "{answer}");
    assert!(answer.contains("Warning: 399 "), "{answer}");
    assert!(
        answer.contains("did not confirm the pinhole change"),
        "{answer}"
    );
    assert!(
        !answer.contains("INVITE sip:"),
        "nothing forwarded: {answer}"
    );
    let kept = std::fs::read_dir(state.join("sip_proxy-a.a.example.com/pinholes"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(kept, 0, "no call state kept");
}

/// An offer sealed by alice (signed: it opens pinholes) for `call_id`,
/// through proxy-a with `--firewall nft`, its state in `state`, at `now`.
fn offer_applied(dir: &Path, state: &Path, call_id: &str, sdp: &str, now: Option<&str>) {
    let invite = signed_offer(dir, sdp, Some(call_id));
    let mut proxy = sipseal();
    if let Some(now) = now {
        proxy.args(["--now", now]);
    }
    firewall_proxy(proxy, &invite, state).succeeds();
}

/// `cmd` (sipseal and its global flags) as proxy-a relaying `invite` with
/// `--firewall nft`, its state in `state`.
fn firewall_proxy(
    mut cmd: assert_cmd::Command,
    invite: &Path,
    state: &Path,
) -> assert_cmd::Command {
    cmd.arg("proxy")
        .arg(invite)
        .args([
            "--identity",
            "keys/proxy-a",
            "--signer-trust",
            "keys/trust.pem",
        ])
        .arg("--state")
        .arg(state)
        .args(["--firewall", "nft"]);
    cmd
}

/// Issue 27: a live relay with `--firewall nft` starts by ending the calls
/// whose BYE never came within `--pinhole-max-age`, then makes the sets
/// hold exactly the calls it keeps: what ended while it was down goes.
#[test]
fn a_relay_starts_with_the_sets_in_step_with_its_calls() {
    if !media_network(&[]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    // A current call, and an old one (its offer passed in June 2026; given
    // second, at that time, since each proxy step ends the calls that are
    // too old by its own clock).
    offer_applied(
        dir,
        &state,
        "now@a.example.com",
        "tests/data/offer-no-mux.sdp",
        None,
    );
    offer_applied(
        dir,
        &state,
        "old@a.example.com",
        "samples/offer.sdp",
        Some("2026-06-01T00:00:00Z"),
    );
    // A pinhole of a call the store no longer holds.
    let (ok, err) = nft("add element inet sipseal media4 { 192.0.2.99 . udp . 7000 }\n");
    assert!(ok, "{err}");
    let list = || {
        let out = Command::new("nft")
            .args(["list", "table", "inet", "sipseal"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = list();
    for e in [
        "192.0.2.10 . udp . 49170",
        "192.0.2.99 . udp . 7000",
        "2001:db8::10 . udp . 40000",
    ] {
        assert!(before.contains(e), "{e} before the relay starts:\n{before}");
    }
    let mut relay = common::live::Daemon::start(
        dir,
        "relay",
        &[
            "relay",
            "--listen",
            "udp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a",
            "--state",
            common::s(&state),
            "--firewall",
            "nft",
            "--pinhole-max-age",
            "4h",
        ],
    );
    let after = list();
    relay.stop();
    assert!(after.contains("2001:db8::10 . udp . 40000"), "{after}");
    assert!(
        !after.contains("192.0.2.10"),
        "the old call's pinholes go:\n{after}"
    );
    assert!(
        !after.contains("192.0.2.99"),
        "what the store does not hold goes:\n{after}"
    );
    assert!(
        relay.log_text().contains("1 calls ended on age"),
        "{}",
        relay.log_text()
    );
    let left: Vec<String> = std::fs::read_dir(state.join("sip_proxy-a.a.example.com/pinholes"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("now@a.example.com"), "{left:?}");
}

/// Issue 27, live: when nft refuses the change an INVITE's offer makes,
/// the relay answers it 500 with a Warning naming nft's error and
/// forwards nothing.
#[test]
fn a_live_relay_answers_500_when_nft_refuses_the_change() {
    use std::io::{Read as _, Write as _};
    if !media_network(&[]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let call = common::live::sealed_call(d, "fw-1@a.example.com");
    let (sink, forwarded) = common::live::tcp_sink();
    // alice is bound to the loopback: her offer is authenticated (S1).
    let bindings = write(
        d,
        "bindings.yaml",
        b"sip:alice@a.example.com: [\"127.0.0.1\"]\n",
    );
    let next = format!("tcp:127.0.0.1:{sink}");
    let relay = common::live::Daemon::start(
        d,
        "relay",
        &[
            "relay",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a-ec",
            "--next",
            &next,
            "--bindings",
            common::s(&bindings),
            "--firewall",
            "nft",
        ],
    );
    // Once it runs, someone makes the sets not sipseal's.
    let (ok, err) = nft("delete table inet sipseal\n\
         table inet sipseal {\n\
         \tset media4 { type ipv4_addr . inet_proto . inet_service; flags constant; }\n\
         }\n");
    assert!(ok, "{err}");
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", relay.port("tcp"))).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    conn.write_all(&call.invite).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let answer = loop {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", relay.log_text());
        got.extend_from_slice(&buf[..n]);
        if let Ok((msg, _)) = Message::parse_prefix(&got) {
            break msg;
        }
    };
    assert_eq!(answer.status(), Some(500), "{}", relay.log_text());
    let warning = answer.header("Warning").unwrap_or_default().to_owned();
    assert!(
        warning.contains("did not confirm the pinhole change"),
        "{warning}"
    );
    assert!(
        forwarded
            .recv_timeout(std::time::Duration::from_millis(500))
            .is_err(),
        "nothing forwarded"
    );
}
