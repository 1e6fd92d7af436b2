//! inspect, demo, completions and keys through the real binary.

mod common;

use common::{Succeeds, golden, sipseal};

#[test]
fn inspect_reports_in_three_formats() {
    let text = sipseal()
        .args(["inspect", "samples/invite.sip"])
        .succeeds()
        .stdout;
    golden("inspect-invite.txt", &text);
    let json = sipseal()
        .args(["inspect", "--format", "json", "samples/invite.sip"])
        .succeeds()
        .stdout;
    golden("inspect-invite.json", &json);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["method"], "INVITE");
    let media = &v["body"]["sdp"]["media"];
    assert_eq!(media[0]["media"], "audio");
    assert_eq!(media[0]["port"], 49170);
    assert_eq!(media[0]["rtcp_mux"], true);
    assert_eq!(media[1]["address"], "192.0.2.11");
    assert_eq!(
        v["body"]["sdp"]["connection_addresses"],
        serde_json::json!(["192.0.2.10", "192.0.2.11"])
    );
    let yaml = sipseal()
        .args(["inspect", "--format", "yaml", "-"])
        .write_stdin(common::file("samples/invite.sip"))
        .succeeds()
        .stdout;
    let y: serde_json::Value = serde_yaml::from_slice(&yaml).unwrap();
    assert_eq!(y, v, "YAML and JSON carry the same report");
}

#[test]
fn inspect_compact_and_multipart() {
    let text = sipseal()
        .args(["inspect", "tests/data/compact-folded.sip"])
        .succeeds()
        .stdout;
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("  s: folded subject line\n"), "{text}");
    assert!(text.contains("sdp: connection none"), "{text}");
    let body = "--xyz\r\nContent-Type: application/sdp\r\n\r\nv=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n\r\n--xyz\r\nContent-Type: application/isup\r\nContent-Disposition: signal; handling=optional\r\n\r\n\x01\x00\x05\r\n--xyz--\r\n";
    let msg = format!(
        "INVITE sip:b@h SIP/2.0\r\nContent-Type: multipart/mixed; boundary=xyz\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // The message lacks Via, From, To, Call-ID and CSeq: malformed, so
    // inspect exits 1 and names it, but still shows the structure.
    let out = sipseal()
        .args(["inspect", "--format", "json", "-"])
        .write_stdin(msg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("malformed: missing Via header"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parts = v["body"]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["sdp"]["media"][0]["port"], 4000);
    assert_eq!(parts[1]["content_type"], "application/isup");
    assert_eq!(parts[1]["length"], 3);
}

#[test]
fn demo_builds_seals_and_shows_who_can_open() {
    let dir = tempfile::tempdir().unwrap();
    let out = sipseal()
        .args(["demo", "--out", dir.path().to_str().unwrap()])
        .succeeds()
        .stdout;
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("INVITE sip:bob@b.example.com SIP/2.0"),
        "{text}"
    );
    assert!(text.contains("audio port 49170 RTP/SAVP"), "{text}");
    let written = std::fs::read(dir.path().join("invite.sip")).unwrap();
    let m = sipseal::sip::Message::parse(&written).unwrap();
    assert_eq!(m.body(), common::file("samples/offer.sdp"));
    // The sealed step: who can open, who cannot.
    assert!(text.contains("proxy-a opens it (exit 0)"), "{text}");
    assert!(
        text.contains("bob opens it (exit 0): alice's INVITE comes back byte for byte"),
        "{text}"
    );
    assert!(
        text.contains("proxy-b cannot open it (exit 3): not a recipient"),
        "{text}"
    );
    assert!(
        text.contains("sip:proxy-a.a.example.com access=read: RecipientInfo #"),
        "{text}"
    );
    // The EC-sealed audio-only INVITE fits one UDP datagram, and opens.
    let ec = std::fs::read(dir.path().join("sealed-audio-ec.sip")).unwrap();
    assert!(ec.len() <= 1300, "{} bytes", ec.len());
    assert!(
        text.contains(&format!("with their EC P-256 keys (one KeyAgreeRecipientInfo, one\nephemeral key) is {} bytes: within the 1300", ec.len())),
        "{text}"
    );
    assert!(
        text.contains("bob-ec opens it (exit 0): the INVITE comes back byte for byte"),
        "{text}"
    );
    // The RSA-2048 command is the one the warning follows, and what it
    // wrote is the message warned about.
    let rsa = std::fs::read(dir.path().join("sealed-audio-rsa.sip")).unwrap();
    assert!(rsa.len() > 1300, "{} bytes", rsa.len());
    assert!(
        text.contains(&format!(
            "With their RSA-2048 keys it is {} bytes, and seal warns:\n   $ sipseal seal invite-audio.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem \\\n       > sealed-audio-rsa.sip\n     warning: the message is {} bytes",
            rsa.len(),
            rsa.len()
        )),
        "{text}"
    );
    let opened = sipseal()
        .arg("open")
        .arg(dir.path().join("sealed-audio-ec.sip"))
        .args(["--identity", "keys/proxy-a-ec"])
        .succeeds();
    assert_eq!(
        opened.stdout,
        std::fs::read(dir.path().join("invite-audio.sip")).unwrap()
    );
    // And the sealed message it wrote behaves the same through the CLI.
    let sealed = dir.path().join("sealed.sip");
    for (who, code) in [("bob", 0), ("proxy-a", 0), ("proxy-b", 3)] {
        let out = sipseal()
            .arg("open")
            .arg(&sealed)
            .args(["--identity", &format!("keys/{who}")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{who}");
        if code == 0 {
            assert_eq!(out.stdout, written, "{who} gets the INVITE back");
        }
    }

    // The relay path: proxy-a opened and forwarded byte-identical, proxy-b
    // forwarded blind, bob reads what arrived.
    assert!(
        text.contains("sealed body forwarded byte-identical: yes"),
        "{text}"
    );
    assert!(
        text.contains("decision: sealed, not designated: forwarded without opening"),
        "{text}"
    );
    let open = |file: &str, who: &str| {
        sipseal()
            .arg("open")
            .arg(dir.path().join(file))
            .args(["--identity", &format!("keys/{who}"), "--body-only"])
            .output()
            .unwrap()
    };
    let at_bob = open("invite-at-bob.sip", "bob");
    assert_eq!(at_bob.status.code(), Some(0));
    assert_eq!(at_bob.stdout, common::file("samples/offer.sdp"));
    let to_bob =
        sipseal::sip::Message::parse(&std::fs::read(dir.path().join("invite-at-bob.sip")).unwrap())
            .unwrap();
    assert_eq!(to_bob.header_list("Via").len(), 3);
    let pinholes =
        String::from_utf8(std::fs::read(dir.path().join("pinholes.nft")).unwrap()).unwrap();
    assert!(
        pinholes.contains("add element inet sipseal media4 { 192.0.2.10 . udp . 49170 "),
        "{pinholes}"
    );
    // The 496 loop: proxy-b could not open the designated INVITE, can open
    // the re-sealed one, and the 496 it wrote works with seal.
    assert!(
        text.contains("answered: 496 instead of forwarding"),
        "{text}"
    );
    assert_eq!(open("designated.sip", "proxy-b").status.code(), Some(3));
    assert_eq!(open("resealed.sip", "proxy-b").status.code(), Some(0));
    // Route-Security in words: why the link from alice counts as level 0.
    assert!(
        text.contains(
            "alice's INVITE carries no entry at all, so nothing vouches for the link it arrived on"
        ),
        "{text}"
    );
    let forwarded = std::fs::read(dir.path().join("invite-to-proxy-b.sip")).unwrap();
    assert!(
        String::from_utf8_lossy(&forwarded).contains("\r\nRoute-Security: 192.0.2.10:5060\r\n"),
        "the entry the demo explains is in the message"
    );
    sipseal()
        .args(["seal", "samples/invite.sip", "--peer", "keys/bob/cert.pem"])
        .arg("--add-recipient-from")
        .arg(dir.path().join("496.sip"))
        .args(["--trust", "keys/trust.pem"])
        .assert()
        .success();

    // The dialog under the session key: alice, proxy-a and bob print the
    // same reference; the 200 OK is a session message under it.
    let refs: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" session reference ") && !l.contains("->"))
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert_eq!(refs.len(), 3, "{text}");
    assert!(
        refs.iter().all(|r| *r == refs[0] && r.len() == 32),
        "{refs:?}"
    );
    let envelope = |file: &str| {
        let m =
            sipseal::sip::Message::parse(&std::fs::read(dir.path().join(file)).unwrap()).unwrap();
        sipseal::envelope::Envelope::parse(&sipseal::sealing::sealed_body(&m).unwrap()).unwrap()
    };
    let ok = envelope("200.sip");
    assert_eq!(
        ok.session_reference().map(hex::encode).as_deref(),
        Some(refs[0])
    );
    let rekey = envelope("rekey.sip");
    assert_eq!(rekey.recipients.len(), 2);
    assert!(rekey.session_reference().is_none());
    let message2 = envelope("message-2.sip");
    assert_eq!(envelope("message-1.sip").recipients.len(), 1);
    let new_ref = hex::encode(message2.session_reference().unwrap());
    assert_ne!(new_ref, refs[0]);
    assert!(text.contains(&format!("-> {new_ref}")), "{text}");
    let bye = std::fs::read_to_string(dir.path().join("pinholes-bye.nft")).unwrap();
    assert_eq!(bye.matches("delete element").count(), 6, "{bye}");
    // Each deletion is preceded by an add of the same element (so that the
    // batch applies whether or not it is there), and nothing else is added.
    assert_eq!(bye.matches("add element").count(), 6, "{bye}");
    assert!(!bye.contains("comment \""), "{bye}");
    assert!(
        bye.contains("delete element inet sipseal pair4 { "),
        "{bye}"
    );
    // The ladder: four columns, one arrow per hop of each of the 11
    // messages (INVITE, 200, ACK, 3 x MESSAGE + 200, BYE + 200).
    let ladder =
        &text[text.find("9. the call flow").unwrap()..text.find("10. signatures").unwrap()];
    assert!(ladder.contains("alice            proxy-a           proxy-b             bob"));
    let arrows: Vec<&str> = ladder
        .lines()
        .filter(|l| l.contains("->|") || l.contains("|<-") || l.contains(">|"))
        .collect();
    assert_eq!(arrows.len(), 33, "{ladder}");
    let row = |label: &str, note: &str| {
        arrows
            .iter()
            .any(|l| l.contains(label) && l.ends_with(note))
    };
    assert!(
        row("200 OK", "proxy-a reads the SDP (session key)"),
        "{ladder}"
    );
    assert!(
        row("200 OK", "alice reads the SDP (session key)"),
        "{ladder}"
    );
    assert!(
        row("MESSAGE rekey", "bob reads the body (his RecipientInfo)"),
        "{ladder}"
    );
    // A MESSAGE's body is text, not SDP, at the relay as at bob.
    assert!(
        row(
            "MESSAGE rekey",
            "proxy-a reads the body (its RecipientInfo)"
        ),
        "{ladder}"
    );
    assert!(
        row("MESSAGE", "proxy-a reads the body (session key)"),
        "{ladder}"
    );
    assert!(
        !arrows
            .iter()
            .any(|l| l.contains("MESSAGE") && l.contains("SDP")),
        "{ladder}"
    );
    assert_eq!(
        arrows
            .iter()
            .filter(|l| l.ends_with("proxy-b: ciphertext only"))
            .count(),
        5,
        "INVITE, 200 OK and three MESSAGEs: {ladder}"
    );
    assert!(!ladder.contains("proxy-b reads"), "{ladder}");

    // Step 10: signed inside and out, the path checked, bob verifies all
    // of it; a designation added on the way and an impostor are caught.
    let step10 = &text[text.find("10. signatures").unwrap()..];
    let bob = &step10
        [step10.find("$ sipseal verify").unwrap()..step10.find("if proxy-b had added").unwrap()];
    assert_eq!(bob.matches("  pass ").count(), 14, "{bob}");
    assert!(!bob.contains("FAIL"), "{bob}");
    assert!(bob.contains("a.example.com:5060 level 3 -> proxy-a.a.example.com level 3 -> proxy-b.b.example.com level 2"), "{bob}");
    assert!(
        step10.contains("inner signature: sip:alice@a.example.com (read-only"),
        "{step10}"
    );
    assert!(step10.contains("FAIL headers: Proxy-Inspect-Body <sip:proxy-b.b.example.com>;access=read was not signed"), "{step10}");
    // The impostor: refused by the imposture check before the body was
    // looked at, said in words (not "body not sealed").
    assert!(
        step10.contains("proxy-a answers SIP/2.0 403 Forbidden and forwards nothing"),
        "{step10}"
    );
    assert!(step10.contains("never looked at the body"), "{step10}");
    assert!(!step10.contains("body not sealed"), "{step10}");
    let refused =
        sipseal::sip::Message::parse(&std::fs::read(dir.path().join("403.sip")).unwrap()).unwrap();
    assert_eq!(refused.start_line().to_string(), "SIP/2.0 403 Forbidden");
    // What the demo wrote verifies with the real command.
    sipseal()
        .arg("verify")
        .arg(dir.path().join("signed-at-bob.sip"))
        .args([
            "--trust",
            "keys/trust.pem",
            "--identity",
            "keys/bob",
            "--min-route-level",
            "2",
        ])
        .assert()
        .success();
}

#[test]
fn completions_for_each_shell() {
    for (shell, needle) in [
        ("bash", "_sipseal()"),
        ("zsh", "#compdef sipseal"),
        ("fish", "complete -c sipseal"),
    ] {
        let out = sipseal().args(["completions", shell]).succeeds().stdout;
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(needle), "{shell}");
        assert!(text.contains("inspect"), "{shell}: subcommands completed");
    }
    sipseal().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn keys_demo_with_a_seed_is_reproducible() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [&a, &b] {
        sipseal()
            .args([
                "--seed",
                "d3e0",
                "keys",
                "demo",
                "--out",
                d.path().to_str().unwrap(),
            ])
            .assert()
            .success();
    }
    for f in [
        "alice/key.pem",
        "ca/b.example.com/cert.pem",
        "psk/alice-proxy-a.yaml",
    ] {
        assert_eq!(
            std::fs::read(a.path().join(f)).unwrap(),
            std::fs::read(b.path().join(f)).unwrap(),
            "{f}"
        );
    }
    assert_ne!(
        std::fs::read(a.path().join("alice/key.pem")).unwrap(),
        std::fs::read(a.path().join("bob/key.pem")).unwrap()
    );
    let psk = sipseal::keys::Psk::load(&a.path().join("psk/alice-proxy-a.yaml")).unwrap();
    assert_eq!((psk.id.as_str(), psk.key.len()), ("alice-proxy-a", 32));
}

#[test]
fn ci_runs_exactly_the_readme_test_command() {
    let readme = String::from_utf8(common::file("README.md")).unwrap();
    let ci = String::from_utf8(common::file(".ci/run")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .collect();
    assert_eq!(
        blocks[0], "cargo run --release -- demo",
        "the README's first command runs the demo"
    );
    let test_command = blocks[1];
    assert!(
        test_command.contains("cargo test"),
        "the README's second command runs the tests"
    );
    let last = ci.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert_eq!(
        last, test_command,
        ".ci/run ends with the README's test command"
    );
}

/// Issue 26: the README named two of the packages .ci/run installs. Every
/// package .ci/run may install is named in the README's paragraph on it.
#[test]
fn the_readme_names_every_package_ci_installs() {
    let readme = String::from_utf8(common::file("README.md")).unwrap();
    let ci = String::from_utf8(common::file(".ci/run")).unwrap();
    let paragraph = readme
        .split("\n\n")
        .find(|p| p.contains("`bash .ci/run` installs"))
        .expect("the README says what .ci/run installs");
    let packages: Vec<&str> = ci
        .lines()
        .filter_map(|l| l.split("need+=(").nth(1))
        .filter_map(|rest| rest.split(')').next())
        .collect();
    assert!(packages.len() >= 8, "{packages:?}");
    for package in packages {
        assert!(
            paragraph.contains(&format!("`{package}`")),
            "the README does not name {package}: {paragraph}"
        );
    }
}

/// The commands `demo` shows (`$ ...`, continuation lines joined), each
/// with the exit code its `# exit N` comment names (else 0).
fn demo_commands(text: &str) -> Vec<(String, i32)> {
    let mut cmds = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(start) = line.trim_start().strip_prefix("$ ") else {
            continue;
        };
        let mut cmd = start.trim_end().to_owned();
        while let Some(head) = cmd.strip_suffix('\\') {
            let next = lines.next().unwrap_or_default().trim();
            cmd = format!("{}{next}", head);
        }
        let (cmd, code) = match cmd.split_once("# exit ") {
            Some((c, n)) => (c.trim().to_owned(), n.trim().parse().unwrap()),
            None => (cmd, 0),
        };
        // A comment that is not an exit code ends the command too.
        let cmd = match cmd.split_once("  # ") {
            Some((c, _)) => c.trim().to_owned(),
            None => cmd,
        };
        cmds.push((cmd, code));
    }
    cmds
}

#[test]
fn demo_replays_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let text = String::from_utf8(
        sipseal()
            .args(["demo", "--out", dir.path().to_str().unwrap()])
            .succeeds()
            .stdout,
    )
    .unwrap();
    let cmds = demo_commands(&text);
    assert!(cmds.len() > 60, "{cmds:?}");
    // Every file a command reads was written by the demo, or made by a
    // command shown before it.
    let mut made = std::collections::BTreeSet::new();
    for (cmd, _) in &cmds {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        // `registrar passwd` makes its --users file.
        let users = if cmd.contains("registrar passwd") {
            "--users"
        } else {
            ">"
        };
        let outputs = [">", "-o", "--out", "--report", "--pinholes", users];
        for (i, w) in words.iter().enumerate() {
            let w = w.trim_matches('\'');
            if i > 0 && outputs.contains(&words[i - 1]) {
                made.insert(w.to_owned());
                continue;
            }
            let file = w.starts_with("keys/")
                || w.starts_with("samples/")
                || w == "pw"
                || [".sip", ".txt", ".yaml", ".pem", ".sdp"]
                    .iter()
                    .any(|ext| w.ends_with(ext));
            if file && !w.contains('=') && !w.contains(':') {
                assert!(
                    made.contains(w) || dir.path().join(w).exists(),
                    "`{cmd}` reads {w}, which demo --out did not write"
                );
            }
        }
    }
    // Each message on each hop has a file of its own: no command writes a
    // name the demo (or an earlier command) already used for another message.
    let mut seen = std::collections::BTreeSet::new();
    for (cmd, _) in &cmds {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        for pair in words.windows(2) {
            if [">", "-o"].contains(&pair[0]) {
                assert!(seen.insert(pair[1].to_owned()), "{} written twice", pair[1]);
            }
        }
    }
    // And they replay, in order, in that directory, with the exit codes shown.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_sipseal"))
        .parent()
        .unwrap()
        .to_owned();
    let mut script = format!(
        "cd '{}' || exit 99\nexport PATH='{}':\"$PATH\"\n",
        dir.path().display(),
        bin.display()
    );
    for (cmd, code) in &cmds {
        if cmd == "cd DIR" {
            continue;
        }
        script.push_str(&format!(
            "{cmd} 2>>replay.log\nrc=$?\n[ $rc -eq {code} ] || {{ echo \"exit $rc, not {code}: {}\"; tail -5 replay.log; exit 1; }}\n",
            cmd.replace('"', "\\\"").replace('$', "\\$")
        ));
    }
    let run = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env_remove("SIPSEAL_SEED")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
