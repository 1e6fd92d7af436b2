//! Real user agents (docs/SPEC.md §7): two baresip 1.0 instances register with
//! `sipseal registrar --listen` through `sipseal relay`, and call each
//! other through the relay, which finds the callee with its location
//! service (`--domain`, no `--next`): INVITE, 180, 200, ACK, RTP both ways
//! (counted by tshark), BYE from either side, and a CANCEL; over UDP,
//! over TCP, and over mutually authenticated TLS (client certificates).
//!
//! baresip binds its RTP sockets on 0.0.0.0, so each test runs in a
//! network namespace of its own (its loopback only): that needs root, as
//! CI is. Without it the test says why and does nothing.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::baresip::{Account, AnswerMode, Baresip, Config, Transport};
use common::live::{Background, Daemon, tshark};
use common::realm::Realm;
use common::s;

const WAIT: Duration = Duration::from_secs(15);

/// Move this test's thread into a network namespace of its own, its
/// loopback up; every process it starts then lives there too. `false`
/// (and why, on stderr) when that is not allowed here.
fn private_network() -> bool {
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        eprintln!(
            "SKIPPED: a network namespace of its own needs root (CI runs as root): {e}; baresip binds RTP on 0.0.0.0, which this test does not do outside one"
        );
        return false;
    }
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip runs (.ci/run installs iproute2)");
    assert!(up.success(), "ip link set lo up");
    true
}

/// tshark on the namespace's loopback, capturing the RTP port ranges.
fn capture_rtp(d: &Path) -> (Background, std::path::PathBuf) {
    let file = d.join("rtp.pcapng");
    (tshark(d, "udp portrange 26000-26199", &file), file)
}

/// RTP packets in `file` from each of the two port ranges.
fn rtp_counts(mut tshark: Background, file: &Path) -> (usize, usize) {
    let _ = Command::new("kill")
        .args(["-INT", &tshark.0.id().to_string()])
        .status();
    tshark.wait(10);
    let out = Command::new("tshark")
        // Decoded as RTP by port (the capture holds the media ports
        // only), not by tshark's heuristic: it missed every packet of a
        // call now and then (0 and 0 of 113 captured).
        .args([
            "-r",
            s(file),
            "-d",
            "udp.port==26000-26199,rtp",
            "-Y",
            "rtp",
        ])
        .args(["-T", "fields", "-e", "udp.srcport"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let all = Command::new("tshark")
        .args(["-r", s(file), "-T", "fields", "-e", "udp.srcport"])
        .output()
        .unwrap();
    eprintln!(
        "capture: {} UDP packets; tshark -r: {} {}; log: {}",
        String::from_utf8_lossy(&all.stdout).lines().count(),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(file.with_file_name("tshark.log")).unwrap_or_default()
    );
    let from = |lo: u16, hi: u16| {
        text.lines()
            .filter_map(|l| l.trim().parse::<u16>().ok())
            .filter(|p| (lo..=hi).contains(p))
            .count()
    };
    (from(26_000, 26_099), from(26_100, 26_199))
}

/// The relay's log lines of one call, as (method, status) pairs in order.
fn call_lines(relay: &Daemon, call_id: &str) -> Vec<serde_json::Value> {
    relay
        .log_lines()
        .into_iter()
        .filter(|l| l["call_id"] == call_id)
        .collect()
}

/// The call's messages through the relay once each of `wanted` (method,
/// status) is among them, or as they are after [`WAIT`]: a phone reports
/// a call closed when it sends or gets the BYE, before the 200 has
/// crossed the relay and been logged.
fn forwarded_with(
    relay: &Daemon,
    call_id: &str,
    wanted: &[(&str, Option<u64>)],
) -> Vec<(String, Option<u64>)> {
    let until = Instant::now() + WAIT;
    loop {
        let seen = all_forwarded(relay, call_id);
        let all = wanted
            .iter()
            .all(|(m, st)| seen.iter().any(|(sm, sst)| sm == m && sst == st));
        if all || Instant::now() > until {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every message of the call went on through the relay: none answered
/// or dropped by it.
fn all_forwarded(relay: &Daemon, call_id: &str) -> Vec<(String, Option<u64>)> {
    let lines = call_lines(relay, call_id);
    for l in &lines {
        assert!(
            l["decision"]
                .as_str()
                .is_some_and(|d| d.starts_with("forward")),
            "{l}\n{}",
            relay.log_text()
        );
    }
    lines
        .iter()
        .map(|l| {
            (
                l["method"].as_str().unwrap_or_default().to_owned(),
                l["status"].as_u64(),
            )
        })
        .collect()
}

/// `sipseal relay` on 127.0.0.1:5070 (UDP, TCP) and 5071 (TLS, client
/// certificates of the realm's CA in `d/ca`), which finds the callee in
/// the registrar's `registry` and stays on the path (Record-Route);
/// `extra` arguments after these.
fn start_relay(d: &Path, registry: &Path, extra: &[&str]) -> Daemon {
    let hosts = common::write(d, "hosts", b"127.0.0.1:5060 example.com\n");
    let ca = d.join("ca/cert.pem");
    let mut args = vec![
        "relay",
        // Its next hops (user agents, SIPp, Kamailio) are on the loopback.
        "--hop-allow",
        "127.0.0.0/8",
        "--listen",
        "udp:127.0.0.1:5070",
        "--listen",
        "tcp:127.0.0.1:5070",
        "--listen",
        "tls:127.0.0.1:5071",
        "--trust",
        s(&ca),
        "--identity",
        "keys/proxy-a-ec",
        "--domain",
        "example.com",
        "--registrations",
        s(registry),
        "--hosts",
        s(&hosts),
        "--record-route",
    ];
    args.extend_from_slice(extra);
    Daemon::start(d, "relay", &args)
}

/// How the phones reach the relay.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Udp,
    Tcp,
    /// Mutually authenticated TLS: each phone presents a certificate of
    /// the realm's CA; the relay reaches the registrar over UDP.
    Tls,
}

fn calls_through_the_relay(link: Link) {
    if !private_network() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // libre answers MD5 only and gives up at any challenge it cannot compute.
    let realm = Realm::new(d, "example.com", &["alice", "bob"], true);
    if link == Link::Tls {
        for user in ["alice", "bob"] {
            common::sipseal()
                .current_dir(d)
                .args([
                    "keys",
                    "generate",
                    "--uri",
                    &format!("sip:{user}@example.com"),
                ])
                .args(["--ca", "ca", "--out", &format!("{user}-tls")])
                .output()
                .unwrap();
            // baresip takes the certificate and its key in one PEM file.
            let mut bundle = std::fs::read(d.join(format!("{user}-tls/cert.pem"))).unwrap();
            bundle.extend(std::fs::read(d.join(format!("{user}-tls/key.pem"))).unwrap());
            common::write(d, &format!("{user}-tls.pem"), &bundle);
        }
    }
    let (transport, outbound) = match link {
        Link::Udp => (Transport::Udp, "sip:127.0.0.1:5070".to_owned()),
        Link::Tcp => (
            Transport::Tcp,
            "sip:127.0.0.1:5070;transport=tcp".to_owned(),
        ),
        Link::Tls => (
            Transport::Udp,
            "sip:127.0.0.1:5071;transport=tls".to_owned(),
        ),
    };
    let registry = d.join("registry");
    let registrar = realm.registrar(
        s(&registry),
        &["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"],
        &["--digest-algorithms", "md5"],
    );
    let ca = d.join("ca/cert.pem");
    let relay = start_relay(d, &registry, &[]);
    let (tshark, pcap) = capture_rtp(d);
    let ua = |name: &str, sip: u16, ctrl: u16, rtp: (u16, u16)| {
        let mut config = Config::new(name, sip, ctrl);
        config.rtp_ports = Some(rtp);
        if link == Link::Tls {
            config.certificate = Some(d.join(format!("{name}-tls.pem")));
            config.cafile = Some(ca.clone());
        }
        let account = Account::new(name, "example.com", transport)
            .auth(name, &format!("{name}-pw"))
            .outbound(&outbound)
            .register_every(600)
            .answer(AnswerMode::Auto);
        Baresip::start(d, &config, &account)
    };
    let mut alice = ua("alice", 25_060, 25_080, (26_000, 26_099));
    let mut bob = ua("bob", 25_062, 25_082, (26_100, 26_199));
    for b in [&mut alice, &mut bob] {
        let ok = b.expect_event(&["REGISTER_OK", "REGISTER_FAIL"], WAIT);
        assert_eq!(
            ok["type"],
            "REGISTER_OK",
            "{ok}\n{}\n{}",
            relay.log_text(),
            registrar.log_text()
        );
    }
    if link == Link::Tls {
        // The relay knows each phone by its client certificate.
        for user in ["alice", "bob"] {
            assert!(
                relay.logged(&format!(r#""peer_cert":"sip:{user}@example.com""#)),
                "{}",
                relay.log_text()
            );
        }
    }
    // Both bindings carry the relay's flow (Path with its token).
    let stored: String = glob::glob(&format!("{}/**/aors/*.yaml", registry.display()))
        .unwrap()
        .filter_map(Result::ok)
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(stored.matches(";lr;ob>").count(), 2, "{stored}");

    // alice calls bob by his AOR; bob answers; RTP flows; alice hangs up.
    alice.dial("sip:bob@example.com");
    let up = alice.expect_event(&["CALL_ESTABLISHED"], WAIT);
    bob.expect_event(&["CALL_ESTABLISHED"], WAIT);
    alice.expect_event(&["CALL_RTPESTAB"], WAIT);
    bob.expect_event(&["CALL_RTPESTAB"], WAIT);
    // The call lasts a second of audio: 50 packets each way at 20 ms.
    std::thread::sleep(Duration::from_secs(1));
    alice.hangup();
    bob.expect_event(&["CALL_CLOSED"], WAIT);
    alice.expect_event(&["CALL_CLOSED"], WAIT);
    let call = up["id"].as_str().unwrap().to_owned();
    let wanted = [
        ("INVITE", None),
        ("INVITE", Some(180)),
        ("INVITE", Some(200)),
        ("ACK", None),
        ("BYE", None),
        ("BYE", Some(200)),
    ];
    let seen = forwarded_with(&relay, &call, &wanted);
    for wanted in wanted {
        let wanted = (wanted.0.to_owned(), wanted.1);
        assert!(seen.contains(&wanted), "{wanted:?} in {seen:?}");
    }

    // bob calls alice; the callee (alice) hangs up: her BYE goes the other
    // way through the relay.
    alice.clear_events();
    bob.clear_events();
    bob.dial("sip:alice@example.com");
    let up = bob.expect_event(&["CALL_ESTABLISHED"], WAIT);
    alice.expect_event(&["CALL_ESTABLISHED"], WAIT);
    alice.hangup();
    bob.expect_event(&["CALL_CLOSED"], WAIT);
    let call = up["id"].as_str().unwrap().to_owned();
    let seen = forwarded_with(&relay, &call, &[("BYE", None), ("BYE", Some(200))]);
    assert!(
        seen.contains(&("BYE".to_owned(), None)) && seen.contains(&("BYE".to_owned(), Some(200))),
        "{seen:?}\n{}",
        relay.log_text()
    );

    // A CANCEL: bob rings, alice gives up before he answers.
    alice.clear_events();
    bob.clear_events();
    bob.set_answer_mode(AnswerMode::Manual);
    alice.dial("sip:bob@example.com");
    let ringing = bob.expect_event(&["CALL_INCOMING"], WAIT);
    alice.expect_event(&["CALL_RINGING"], WAIT);
    alice.hangup();
    bob.expect_event(&["CALL_CLOSED"], WAIT);
    alice.expect_event(&["CALL_CLOSED"], WAIT);
    let call = ringing["id"].as_str().unwrap().to_owned();
    let wanted = [
        ("CANCEL", None),
        ("CANCEL", Some(200)),
        ("INVITE", Some(487)),
    ];
    let seen = forwarded_with(&relay, &call, &wanted);
    for wanted in wanted {
        let wanted = (wanted.0.to_owned(), wanted.1);
        assert!(seen.contains(&wanted), "{wanted:?} in {seen:?}");
    }

    // RTP went both ways, through no one but the two phones.
    drop(alice);
    drop(bob);
    let (from_alice, from_bob) = rtp_counts(tshark, &pcap);
    eprintln!("RTP packets: {from_alice} from alice, {from_bob} from bob");
    assert!(
        from_alice >= 40 && from_bob >= 40,
        "{from_alice} {from_bob}"
    );
}

#[test]
fn baresip_registers_and_calls_through_the_relay_over_udp() {
    calls_through_the_relay(Link::Udp);
}

#[test]
fn baresip_registers_and_calls_through_the_relay_over_tcp() {
    calls_through_the_relay(Link::Tcp);
}

#[test]
fn baresip_registers_and_calls_through_the_relay_over_mutual_tls() {
    calls_through_the_relay(Link::Tls);
}

/// The caller's tone: a sine at this frequency, 8 kHz 16-bit mono (G.711's
/// rate, so that baresip's `aufile` sends it unresampled).
const TONE_HZ: f64 = 1000.0;

/// How long the recorded call lasts once media flows both ways: 150 RTP
/// packets each way at baresip's 20 ms.
const CALL_MEDIA: Duration = Duration::from_secs(3);

/// Write `secs` seconds of a `hz` sine at half scale, 8 kHz 16-bit mono.
fn write_tone(path: &Path, hz: f64, secs: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..8000 * secs {
        let t = f64::from(n) / 8000.0;
        let x = 16_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin();
        w.write_sample(x as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// `key_params` (`inline:KEYSALT[|LIFETIME][|MKI:LEN]`) with the first
/// octet of its master key flipped: the same suite, another key.
fn wrong_key(key_params: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let info = key_params.strip_prefix("inline:").expect("an inline: key");
    let (material, rest) = info.split_at(info.find('|').unwrap_or(info.len()));
    let mut raw = b64.decode(material).expect("base64 key material");
    raw[0] ^= 0x01;
    format!("inline:{}{rest}", b64.encode(raw))
}

/// `sipseal record --report REPORT --capture CAPTURE --out OUT --format json`.
fn record(report: &Path, capture: &Path, out: &Path) -> std::process::Output {
    let started = Instant::now();
    let run = common::sipseal()
        .args(["record", "--report", s(report), "--capture", s(capture)])
        .args(["--out", s(out), "--format", "json"])
        .output()
        .unwrap();
    eprintln!(
        "record --out {} ({:?}): {}\nstdout: {}\nstderr: {}",
        out.display(),
        started.elapsed(),
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    run
}

/// The directory `record` wrote `call_id` into (by `OUT/calls.json`).
fn recorded_call(out: &Path, call_id: &str) -> std::path::PathBuf {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("calls.json")).unwrap()).unwrap();
    let index = index.as_object().unwrap();
    assert_eq!(index.len(), 1, "one call recorded: {index:?}");
    let (tag, id) = index.iter().next().unwrap();
    assert_eq!(id, call_id);
    out.join(tag)
}

/// The JSON summary of one direction (`s0-audio-from-caller`, ...).
fn direction(call: &Path, name: &str) -> serde_json::Value {
    let path = call.join(format!("{name}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// Issue 27, "a real call recorded": alice (baresip, `mediaenc=srtp`: SDES
/// keys in `a=crypto`, PCMU only) plays a 1 kHz tone from a WAV file to
/// bob through `sipseal relay --report`; tshark captures the SRTP. `sipseal
/// record` with that report and capture gives back alice's side as a WAV
/// whose strongest frequency is the tone's, every packet authenticated.
/// With her key altered in the report, every one of her packets fails
/// authentication and nothing of hers is written; with every key altered,
/// nothing at all and exit 1.
#[test]
fn a_baresip_call_through_the_relay_is_recorded_from_its_report() {
    if !common::baresip::available() {
        eprintln!("SKIPPED: baresip is not installed (apt-get install baresip-core)");
        return;
    }
    if !private_network() {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let realm = Realm::new(d, "example.com", &["alice", "bob"], true);
    let registry = d.join("registry");
    let _registrar = realm.registrar(
        s(&registry),
        &["udp:127.0.0.1:5060"],
        &["--digest-algorithms", "md5"],
    );
    let report = d.join("report.jsonl");
    let relay = start_relay(d, &registry, &["--report", s(&report)]);
    let tone = d.join("tone.wav");
    // Longer than the call: the tone never runs out while it lasts.
    write_tone(&tone, TONE_HZ, 20);
    let (tshark, pcap) = capture_rtp(d);
    let ua = |name: &str, sip: u16, ctrl: u16, rtp: (u16, u16), source: Option<&Path>| {
        let mut config = Config::new(name, sip, ctrl);
        config.rtp_ports = Some(rtp);
        config.extra.push("module\t\t\tsrtp.so".into());
        if let Some(file) = source {
            config.extra.push("module\t\t\taufile.so".into());
            config.audio_source = Some(format!("aufile,{}", file.display()));
        }
        let account = Account::new(name, "example.com", Transport::Udp)
            .auth(name, &format!("{name}-pw"))
            .outbound("sip:127.0.0.1:5070")
            .param("mediaenc", "srtp")
            .param("audio_codecs", "PCMU")
            .register_every(600)
            .answer(AnswerMode::Auto);
        Baresip::start(d, &config, &account)
    };
    let mut alice = ua("alice", 25_060, 25_080, (26_000, 26_099), Some(&tone));
    // bob's aubridge sends back what he hears.
    let mut bob = ua("bob", 25_062, 25_082, (26_100, 26_199), None);
    for b in [&mut alice, &mut bob] {
        let ok = b.expect_event(&["REGISTER_OK", "REGISTER_FAIL"], WAIT);
        assert_eq!(ok["type"], "REGISTER_OK", "{ok}\n{}", relay.log_text());
    }

    alice.dial("sip:bob@example.com");
    let up = alice.expect_event(&["CALL_ESTABLISHED"], WAIT);
    bob.expect_event(&["CALL_ESTABLISHED"], WAIT);
    alice.expect_event(&["CALL_RTPESTAB"], WAIT);
    bob.expect_event(&["CALL_RTPESTAB"], WAIT);
    std::thread::sleep(CALL_MEDIA);
    alice.hangup();
    bob.expect_event(&["CALL_CLOSED"], WAIT);
    alice.expect_event(&["CALL_CLOSED"], WAIT);
    let call = up["id"].as_str().unwrap().to_owned();
    // The INVITE and its 200 (both SDPs, so both keys) are in the report
    // once the relay has logged them.
    let wanted = [("INVITE", None), ("INVITE", Some(200)), ("BYE", Some(200))];
    let seen = forwarded_with(&relay, &call, &wanted);
    for wanted in wanted {
        let wanted = (wanted.0.to_owned(), wanted.1);
        assert!(seen.contains(&wanted), "{wanted:?} in {seen:?}");
    }
    let alice_log = alice.stop();
    bob.stop();
    let (from_alice, from_bob) = rtp_counts(tshark, &pcap);
    eprintln!("captured: {from_alice} RTP packets from alice, {from_bob} from bob");

    // The report: the offer's and the answer's SDES keys, in the clear SDP.
    let text = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l["call_id"] == call.as_str() && l["srtp_keys"].is_array())
        .collect();
    let keys = |kind: &str| -> Vec<serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["kind"] == kind)
            .flat_map(|l| l["srtp_keys"].as_array().unwrap().clone())
            .collect()
    };
    let (offered, answered) = (keys("request"), keys("response"));
    eprintln!("offered keys: {offered:?}\nanswered keys: {answered:?}");
    assert!(!offered.is_empty() && !answered.is_empty(), "{text}");
    // The caller's key in use: the offered one under the answer's tag.
    let chosen = offered
        .iter()
        .find(|k| k["tag"] == answered[0]["tag"] && k["suite"] == answered[0]["suite"])
        .unwrap_or_else(|| panic!("the answer's tag among the offered: {text}"));
    let chosen = chosen["key_params"].as_str().unwrap().to_owned();

    // Recorded with the right keys.
    let out = d.join("rec");
    let run = record(&report, &pcap, &out);
    assert!(run.status.success(), "record: {}", run.status);
    let rec = recorded_call(&out, &call);
    let caller = direction(&rec, "s0-audio-from-caller");
    let callee = direction(&rec, "s0-audio-from-callee");
    let packets = caller["packets"].as_u64().unwrap();
    // 3 s at 50 packets/s: more than 2 s of it, and every RTP packet
    // tshark saw from alice authenticated and decrypted (bob's too).
    assert!(packets > 100, "{caller}");
    assert_eq!(packets, from_alice as u64, "{caller}");
    assert_eq!(callee["packets"], from_bob as u64, "{callee}");
    for s in [&caller, &callee] {
        assert_eq!(s["auth_failures"], 0, "{s}");
        assert_eq!(s["srtcp_auth_failures"], 0, "{s}");
        assert_eq!(s["srtcp_unverified"], 0, "{s}");
        assert_eq!(s["key_exhausted"], 0, "{s}");
        // libre's APP PING as the stream starts, before SRTP covers
        // RTCP, and (now and then: a race in libre as the call ends) its
        // RTCP BYE after the SRTP context is gone (CI's run of 9bbe67a
        // counted 2; a flagship capture showed them: a 16-byte APP PING
        // and a BYE+SDES tshark could parse, the rest SRTCP). Any other
        // RTCP packet sent plain would make it more.
        assert!(s["rtcp_unprotected"].as_u64().unwrap() <= 2, "{s}");
    }
    // PCMU only, as the account asked.
    assert_eq!(
        caller["payload_types"],
        serde_json::json!({ "0 PCMU": packets }),
        "{caller}"
    );
    let wav = rec.join("s0-audio-from-caller.wav");
    let mut reader = hound::WavReader::open(&wav).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.sample_rate, spec.channels), (8000, 1), "{spec:?}");
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(
        samples.len() as u64,
        caller["wav"]["samples"].as_u64().unwrap()
    );
    // 160 samples a packet (20 ms of 8 kHz), and no gap filled with silence.
    assert!(
        samples.len() as u64 >= packets * 160,
        "{} samples",
        samples.len()
    );
    // The tone was made at exactly TONE_HZ on the codec's own 8 kHz clock,
    // sent without resampling, and the Goertzel scan covers ≥ 2 s (a bin
    // ~0.5 Hz wide) in 10 Hz steps: the peak is the step at the tone. One
    // step either side allows for a source clocked otherwise.
    let found = common::dominant(&samples, 8000.0);
    // bob's aubridge sends back what he hears: logged, not asserted.
    let echo: Vec<i16> = hound::WavReader::open(rec.join("s0-audio-from-callee.wav"))
        .map(|mut r| r.samples::<i16>().map_while(Result::ok).collect())
        .unwrap_or_default();
    eprintln!(
        "caller's WAV: {} samples, dominant {found} Hz; {packets} packets; callee {} packets, WAV dominant {} Hz",
        samples.len(),
        callee["packets"],
        common::dominant(&echo, 8000.0)
    );
    assert!(
        (found - TONE_HZ).abs() <= 10.0,
        "dominant {found} Hz, not {TONE_HZ}\n{alice_log}"
    );

    // alice's key altered: every packet of hers fails authentication and
    // nothing of hers is written; bob's side is recorded as before.
    let wrong = wrong_key(&chosen);
    let bad_report = d.join("report-alice-wrong.jsonl");
    std::fs::write(&bad_report, text.replace(&chosen, &wrong)).unwrap();
    let out = d.join("rec-alice-wrong");
    let run = record(&bad_report, &pcap, &out);
    assert!(
        run.status.success(),
        "bob's side still decrypts: {}",
        run.status
    );
    let rec = recorded_call(&out, &call);
    let bad = direction(&rec, "s0-audio-from-caller");
    assert_eq!(bad["packets"], 0, "{bad}");
    assert_eq!(bad["auth_failures"], packets, "{bad}");
    assert_eq!(bad["srtcp_packets"], 0, "{bad}");
    assert_eq!(bad["srtcp_auth_failures"], caller["srtcp_packets"], "{bad}");
    assert!(bad.get("wav").is_none(), "{bad}");
    for ext in ["wav", "pcap"] {
        let f = rec.join(format!("s0-audio-from-caller.{ext}"));
        assert!(!f.exists(), "{} written", f.display());
    }
    assert_eq!(
        direction(&rec, "s0-audio-from-callee")["packets"],
        callee["packets"]
    );

    // Every key of the call altered: only authentication failures, no
    // audio, exit 1 (docs/guide/02-relays.md, "Recording a call").
    let mut all_wrong = text.clone();
    for k in offered.iter().chain(&answered) {
        let k = k["key_params"].as_str().unwrap();
        all_wrong = all_wrong.replace(k, &wrong_key(k));
    }
    let bad_report = d.join("report-all-wrong.jsonl");
    std::fs::write(&bad_report, all_wrong).unwrap();
    let out = d.join("rec-all-wrong");
    let run = record(&bad_report, &pcap, &out);
    assert_eq!(run.status.code(), Some(1), "{}", run.status);
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("failed SRTP authentication"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let rec = recorded_call(&out, &call);
    for (name, good) in [
        ("s0-audio-from-caller", &caller),
        ("s0-audio-from-callee", &callee),
    ] {
        let bad = direction(&rec, name);
        assert_eq!(bad["packets"], 0, "{bad}");
        assert_eq!(bad["auth_failures"], good["packets"], "{bad}");
        assert_eq!(bad["srtcp_auth_failures"], good["srtcp_packets"], "{bad}");
    }
    let written: Vec<String> = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".json"))
        .collect();
    assert!(written.is_empty(), "no audio or RTP written: {written:?}");
    eprintln!("recorded call test took {:?}", started.elapsed());
}
