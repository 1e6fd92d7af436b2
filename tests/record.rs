//! `sipseal record` end to end: SRTP of two PCMU tones (one each way, with
//! SRTCP) protected by webrtc-srtp's encrypt side under known keys, a
//! capture of them, a relay report naming the keys; the binary's WAVs
//! must hold the tones, its summaries the counts.
#![cfg(feature = "record")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

const CALLER: &str = "192.0.2.10:40000";
const CALLEE: &str = "198.51.100.20:50000";
const CALL_ID: &str = "rec-1@a.example.com";

fn key(seed: u8) -> Vec<u8> {
    (0..30)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i))
        .collect()
}

fn inline(k: &[u8]) -> String {
    format!(
        "inline:{}",
        base64::engine::general_purpose::STANDARD.encode(k)
    )
}

/// G.711 µ-law encoding (the inverse of the recorder's table), for the test's tone.
fn ulaw(sample: i16) -> u8 {
    let sign = if sample < 0 { 0x80 } else { 0 };
    let mag = (i32::from(sample).abs().min(32635) + 0x84) as u32;
    let exponent = (31 - mag.leading_zeros()).saturating_sub(7).min(7);
    let mantissa = (mag >> (exponent + 3)) & 0x0f;
    !(sign | ((exponent as u8) << 4) | mantissa as u8)
}

fn tone(freq: f64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|k| {
            let s = (2.0 * std::f64::consts::PI * freq * k as f64 / 8000.0).sin() * 12000.0;
            ulaw(s as i16)
        })
        .collect()
}

struct Udp {
    time: Duration,
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

/// `count` 20 ms PCMU packets of a tone and an SRTCP report every 50,
/// protected with `k`; `order` picks and orders the sequence numbers sent.
fn stream(k: &[u8], ssrc: u32, freq: f64, src: &str, dst: &str, order: &[u16]) -> Vec<Udp> {
    let mut ctx = Context::new(
        &k[..16],
        &k[16..],
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .unwrap();
    let samples = tone(freq, 160 * (usize::from(*order.iter().max().unwrap()) + 1));
    let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    let mut out = Vec::new();
    for (i, &seq) in order.iter().enumerate() {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&(seq.wrapping_add(65000)).to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        let at = usize::from(seq) * 160;
        p.extend_from_slice(&samples[at..at + 160]);
        let time = Duration::from_millis(1_700_000_000_000 + i as u64 * 20);
        out.push(Udp {
            time,
            src,
            dst,
            payload: ctx.encrypt_rtp(&p).unwrap().to_vec(),
        });
        if i % 50 == 49 {
            let mut sr = vec![0x80, 200, 0x00, 0x06];
            sr.extend_from_slice(&ssrc.to_be_bytes());
            sr.extend_from_slice(&[0x22; 20]);
            let mut rtcp_dst = dst;
            rtcp_dst.set_port(dst.port() + 1);
            let mut rtcp_src = src;
            rtcp_src.set_port(src.port() + 1);
            out.push(Udp {
                time,
                src: rtcp_src,
                dst: rtcp_dst,
                payload: ctx.encrypt_rtcp(&sr).unwrap().to_vec(),
            });
        }
    }
    out
}

fn frame(d: &Udp) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(t)) = (d.src, d.dst) else {
        panic!("v4 only")
    };
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(s.ip().octets(), t.ip().octets(), 64)
        .udp(s.port(), t.port())
        .write(&mut f, &d.payload)
        .unwrap();
    f
}

fn pcap(packets: &[Udp]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = pcap_file::pcap::PcapWriter::new(&mut out).unwrap();
    for d in packets {
        let f = frame(d);
        w.write_packet(&pcap_file::pcap::PcapPacket::new(
            d.time,
            f.len() as u32,
            &f,
        ))
        .unwrap();
    }
    let _ = w.into_writer();
    out
}

/// pcapng as dumpcap writes it for `-i any`: Linux cooked (SLL, 113), µs stamps.
fn pcapng_sll(packets: &[Udp]) -> Vec<u8> {
    let mut out = Vec::new();
    let block = |out: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let len = (12 + body.len().div_ceil(4) * 4) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.resize(out.len() + (4 - body.len() % 4) % 4, 0);
        out.extend_from_slice(&len.to_le_bytes());
    };
    let mut shb = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0A0D_0D0A, &shb);
    let mut idb = 113u16.to_le_bytes().to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    block(&mut out, 1, &idb);
    for d in packets {
        let eth = frame(d);
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&eth[14..]);
        let us = d.time.as_micros() as u64;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((us >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(us as u32).to_le_bytes());
        epb.extend_from_slice(&(sll.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(sll.len() as u32).to_le_bytes());
        epb.extend_from_slice(&sll);
        epb.resize(epb.len().div_ceil(4) * 4, 0);
        block(&mut out, 6, &epb);
    }
    out
}

fn sdp(origin: &str, addr: &str, port: u16, k: &[u8]) -> String {
    format!(
        "v=0\r\no={origin} IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\nm=audio {port} RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {}\r\n",
        inline(k)
    )
}

fn report_line(kind: &str, status: Option<u16>, origin: &str, at: &str, k: &[u8]) -> String {
    let at: SocketAddr = at.parse().unwrap();
    let (addr, port) = (at.ip().to_string(), at.port());
    let mut v = serde_json::json!({
        "kind": kind, "method": "INVITE", "call_id": CALL_ID,
        "relay": ["sip:proxy.example.net"], "decision": "designated", "opened": true,
        "sdp": sdp(origin, &addr, port, k),
        "streams": [{"media": "audio", "address": addr, "port": port,
                     "protocol": "RTP/SAVP", "rtcp_mux": false, "rtcp_port": port + 1}],
        "srtp_keys": [{"stream": 0, "media": "audio", "tag": "1",
                       "suite": "AES_CM_128_HMAC_SHA1_80", "key_params": inline(k)}],
        "edited": false
    });
    if let Some(s) = status {
        v["status"] = s.into();
    }
    v.to_string()
}

fn report(caller_key: &[u8], callee_key: &[u8]) -> String {
    format!(
        "{}\n{}\n",
        report_line("request", None, "alice 1 1", CALLER, caller_key),
        report_line("response", Some(200), "bob 7 1", CALLEE, callee_key)
    )
}

fn summary(dir: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap()
}

fn call_dir(out: &Path) -> std::path::PathBuf {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("calls.json")).unwrap()).unwrap();
    let (tag, id) = index.as_object().unwrap().iter().next().unwrap();
    assert_eq!(id, CALL_ID);
    out.join(tag)
}

fn run(dir: &Path, report: &str, capture: &[u8], name: &str) -> assert_cmd::assert::Assert {
    std::fs::write(dir.join("report.jsonl"), report).unwrap();
    std::fs::write(dir.join(name), capture).unwrap();
    common::sipseal()
        .arg("record")
        .arg("--report")
        .arg(dir.join("report.jsonl"))
        .arg("--capture")
        .arg(dir.join(name))
        .arg("--out")
        .arg(dir.join("out"))
        .assert()
}

fn both_ways(order: &[u16]) -> Vec<Udp> {
    let mut p = stream(&key(1), 0x1111, 1000.0, CALLER, CALLEE, order);
    p.extend(stream(&key(2), 0x2222, 400.0, CALLEE, CALLER, order));
    p
}

#[test]
fn a_call_is_recorded_both_ways_with_its_tones() {
    let dir = tempfile::tempdir().unwrap();
    let order: Vec<u16> = (0..100).collect();
    let out = run(
        dir.path(),
        &report(&key(1), &key(2)),
        &pcap(&both_ways(&order)),
        "c.pcap",
    )
    .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        stdout.contains("s0-audio-from-caller: 100 packets"),
        "{stdout}"
    );
    let call = call_dir(&dir.path().join("out"));
    for (name, freq) in [
        ("s0-audio-from-caller", 1000.0),
        ("s0-audio-from-callee", 400.0),
    ] {
        let s = summary(&call, name);
        assert_eq!(s["packets"], 100, "{s}");
        assert_eq!(s["bytes"], 16000);
        assert_eq!(
            (s["lost"].as_u64(), s["auth_failures"].as_u64()),
            (Some(0), Some(0))
        );
        assert_eq!(s["srtcp_packets"], 2);
        assert_eq!(s["payload_types"]["0 PCMU"], 100);
        let wav = call.join(format!("{name}.wav"));
        let mut r = hound::WavReader::open(&wav).unwrap();
        assert_eq!(r.spec().sample_rate, 8000);
        let samples: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(samples.len(), 16000);
        let f = common::dominant(&samples, 8000.0);
        assert!((f - freq).abs() <= 10.0, "{name}: {f} Hz");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&wav).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // The pcap: Ethernet/IPv4/UDP around the decrypted RTP (no tag).
        let bytes = std::fs::read(call.join(format!("{name}.pcap"))).unwrap();
        let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
        let first = r.next_packet().unwrap().unwrap();
        let sliced = etherparse::SlicedPacket::from_ethernet(&first.data).unwrap();
        let Some(etherparse::TransportSlice::Udp(u)) = sliced.transport else {
            panic!("no UDP")
        };
        assert_eq!(u.payload().len(), 12 + 160);
        assert_eq!(usize::from(u.length()), 8 + 12 + 160);
    }
}

#[test]
fn a_wrong_key_gives_authentication_failures_and_no_media() {
    let dir = tempfile::tempdir().unwrap();
    let order: Vec<u16> = (0..100).collect();
    run(
        dir.path(),
        &report(&key(3), &key(4)),
        &pcap(&both_ways(&order)),
        "c.pcap",
    )
    .code(1)
    .stderr(predicates::str::contains("failed SRTP authentication"));
    let call = call_dir(&dir.path().join("out"));
    let s = summary(&call, "s0-audio-from-caller");
    assert_eq!(
        (s["packets"].as_u64(), s["auth_failures"].as_u64()),
        (Some(0), Some(100))
    );
    assert_eq!(s["srtcp_auth_failures"], 2);
    let files: Vec<String> = std::fs::read_dir(&call)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().all(|f| f.ends_with(".json")), "{files:?}");
}

/// Plain RTCP from each party's RTCP port: libre's APP `PING` that baresip
/// sends as a stream starts (before SRTP protects its RTCP), and a
/// receiver report with SDES, whose octet where an SRTCP E flag would be
/// is clear.
fn plain_rtcp(ssrc: u32, src: &str, dst: &str) -> Vec<Udp> {
    let (mut src, mut dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    src.set_port(src.port() + 1);
    dst.set_port(dst.port() + 1);
    let mut ping = vec![0x80, 204, 0x00, 0x03];
    ping.extend_from_slice(&ssrc.to_be_bytes());
    ping.extend_from_slice(b"PINGPONG");
    let mut rr_sdes = vec![0x80, 201, 0x00, 0x01];
    rr_sdes.extend_from_slice(&ssrc.to_be_bytes());
    rr_sdes.extend_from_slice(&[0x81, 202, 0x00, 0x03]);
    rr_sdes.extend_from_slice(&ssrc.to_be_bytes());
    rr_sdes.extend_from_slice(&[1, 4, b'a', b'b', b'c', b'd', 0, 0]);
    [ping, rr_sdes]
        .into_iter()
        .map(|payload| Udp {
            time: Duration::from_millis(1_699_999_999_000),
            src,
            dst,
            payload,
        })
        .collect()
}

/// RTCP sent in the clear is no SRTCP that failed: it is counted apart
/// (`rtcp_unprotected`), never written, with the right keys and the wrong.
#[test]
fn plain_rtcp_is_counted_apart_from_authentication_failures() {
    let order: Vec<u16> = (0..100).collect();
    let mut packets = plain_rtcp(0x1111, CALLER, CALLEE);
    packets.extend(plain_rtcp(0x2222, CALLEE, CALLER));
    packets.extend(both_ways(&order));
    let capture = pcap(&packets);
    for (keys, right) in [((key(1), key(2)), true), ((key(3), key(4)), false)] {
        let dir = tempfile::tempdir().unwrap();
        let run = run(dir.path(), &report(&keys.0, &keys.1), &capture, "c.pcap");
        if right {
            run.success();
        } else {
            run.code(1);
        }
        let call = call_dir(&dir.path().join("out"));
        for name in ["s0-audio-from-caller", "s0-audio-from-callee"] {
            let s = summary(&call, name);
            let (ok, failed) = if right { (2, 0) } else { (0, 2) };
            assert_eq!(s["rtcp_unprotected"], 2, "{s}");
            assert_eq!(s["srtcp_packets"], ok, "{s}");
            assert_eq!(s["srtcp_auth_failures"], failed, "{s}");
            assert_eq!(s["srtcp_unverified"], 0, "{s}");
            assert_eq!(s["auth_failures"], if right { 0 } else { 100 }, "{s}");
        }
    }
}

#[test]
fn loss_reordering_and_duplicates_are_counted_from_pcapng() {
    let dir = tempfile::tempdir().unwrap();
    // 10 and 11 lost, 21 before 20, 30 twice; the sequence wraps (65000 + n).
    let mut order: Vec<u16> = (0..600).filter(|s| *s != 10 && *s != 11).collect();
    let at = order.iter().position(|s| *s == 20).unwrap();
    order.swap(at, at + 1);
    let at = order.iter().position(|s| *s == 30).unwrap();
    order.insert(at, 30);
    let out = run(
        dir.path(),
        &report(&key(1), &key(2)),
        &pcapng_sll(&both_ways(&order)),
        "c.pcapng",
    )
    .success();
    let _ = out;
    let call = call_dir(&dir.path().join("out"));
    let s = summary(&call, "s0-audio-from-caller");
    assert_eq!(s["packets"], 599, "{s}");
    assert_eq!(s["lost"], 2);
    assert_eq!(s["out_of_order"], 1);
    assert_eq!(s["duplicates"], 1);
    assert_eq!(s["auth_failures"], 0);
    // The lost 40 ms are silence in the WAV: 600 packets' worth of samples.
    assert_eq!(s["wav"]["samples"], 600 * 160);
}

#[test]
fn a_bad_report_line_and_an_unknown_call_are_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let cap = pcap(&both_ways(&[0, 1]));
    run(dir.path(), "{not json\n", &cap, "c.pcap")
        .code(1)
        .stderr(predicates::str::contains("report line 1"))
        .stderr(predicates::str::contains("hint:"));
    assert!(!dir.path().join("out").exists(), "nothing written");
    std::fs::write(dir.path().join("r.jsonl"), report(&key(1), &key(2))).unwrap();
    common::sipseal()
        .args(["record", "--call", "nope"])
        .arg("--report")
        .arg(dir.path().join("r.jsonl"))
        .arg("--capture")
        .arg(dir.path().join("c.pcap"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no call \"nope\""));
    run(
        dir.path(),
        &report(&key(1), &key(2)),
        b"not a capture",
        "bad.pcap",
    )
    .code(1)
    .stderr(predicates::str::contains("not a pcap or pcapng"));
}

/// Live input: `record --interface lo` in a network namespace of the
/// test's own, the tones sent over UDP between two loopback addresses.
#[cfg(all(feature = "live", target_os = "linux"))]
mod live {
    use super::*;

    const LIVE_CALLER: &str = "127.0.0.2:40000";
    const LIVE_CALLEE: &str = "127.0.0.3:50000";

    /// This thread (and the processes it starts) in a network namespace of
    /// its own with loopback up; false, after a SKIPPED line, where that is
    /// not allowed.
    fn private_network() -> bool {
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
            eprintln!(
                "SKIPPED: a network namespace of its own needs root (CI runs as root): {e}; record --interface reads every frame of the interface, which this test does not do outside one"
            );
            return false;
        }
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip runs (.ci/run installs iproute2)");
        assert!(up.success(), "ip link set lo up");
        true
    }

    fn live_report_lines(caller_key: &[u8], callee_key: &[u8]) -> (String, String) {
        (
            report_line("request", None, "alice 1 1", LIVE_CALLER, caller_key),
            report_line("response", Some(200), "bob 7 1", LIVE_CALLEE, callee_key),
        )
    }

    /// `sipseal record --interface lo ... ARGS`, returned once it says it is
    /// reading (its standard error in `dir/record.log`, its output in
    /// `dir/record.out`).
    fn start_live(dir: &Path, args: &[&str]) -> std::process::Child {
        use std::process::Command;
        let log = dir.join("record.log");
        let child = Command::new(env!("CARGO_BIN_EXE_sipseal"))
            .args(["record", "--interface", "lo", "--report"])
            .arg(dir.join("report.jsonl"))
            .arg("--out")
            .arg(dir.join("out"))
            .args(args)
            .stdout(std::fs::File::create(dir.join("record.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("record: reading lo")
        {
            assert!(
                std::time::Instant::now() < until,
                "record did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Sends datagrams from the sockets bound to their source addresses.
    struct Sender(std::collections::HashMap<SocketAddr, std::net::UdpSocket>);

    impl Sender {
        fn new() -> Sender {
            let mut socks = std::collections::HashMap::new();
            for a in [LIVE_CALLER, LIVE_CALLEE] {
                let mut a: SocketAddr = a.parse().unwrap();
                for _ in 0..2 {
                    socks.insert(a, std::net::UdpSocket::bind(a).unwrap());
                    a.set_port(a.port() + 1);
                }
            }
            Sender(socks)
        }

        fn send(&self, packets: &[Udp]) {
            for p in packets {
                self.0[&p.src].send_to(&p.payload, p.dst).unwrap();
            }
        }
    }

    /// Both ways, the caller's 1 kHz and the callee's 400 Hz, sequence numbers `order`.
    fn live_both_ways(order: &[u16]) -> (Vec<Udp>, Vec<Udp>) {
        (
            stream(&key(1), 0x1111, 1000.0, LIVE_CALLER, LIVE_CALLEE, order),
            stream(&key(2), 0x2222, 400.0, LIVE_CALLEE, LIVE_CALLER, order),
        )
    }

    fn finished(dir: &Path, mut child: std::process::Child) -> String {
        let status = child.wait().unwrap();
        let log = std::fs::read_to_string(dir.join("record.log")).unwrap();
        let out = std::fs::read_to_string(dir.join("record.out")).unwrap();
        assert!(status.success(), "{status}: {log}\n{out}");
        out
    }

    /// Each direction: every packet sent decrypted, none failed, the tone in the WAV.
    fn check_live_call(out: &Path, packets: u64) {
        let call = call_dir(out);
        for (name, freq) in [
            ("s0-audio-from-caller", 1000.0),
            ("s0-audio-from-callee", 400.0),
        ] {
            let s = summary(&call, name);
            assert_eq!(s["packets"], packets, "{name}: {s}");
            assert_eq!(s["auth_failures"], 0, "{s}");
            assert_eq!(s["srtcp_auth_failures"], 0, "{s}");
            assert_eq!(s["srtcp_packets"], packets / 50, "{s}");
            assert_eq!(
                (s["lost"].as_u64(), s["not_kept"].as_u64()),
                (Some(0), Some(0))
            );
            let mut r = hound::WavReader::open(call.join(format!("{name}.wav"))).unwrap();
            let samples: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
            assert_eq!(samples.len() as u64, packets * 160);
            let f = common::dominant(&samples, 8000.0);
            assert!((f - freq).abs() <= 10.0, "{name}: {f} Hz");
        }
    }

    #[test]
    fn a_call_on_loopback_is_recorded_for_its_duration() {
        if !private_network() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (a, b) = live_report_lines(&key(1), &key(2));
        std::fs::write(d.join("report.jsonl"), format!("{a}\n{b}\n")).unwrap();
        let child = start_live(d, &["--duration", "4s", "--format", "json"]);
        let sender = Sender::new();
        let (caller, callee) = live_both_ways(&(0..100).collect::<Vec<_>>());
        sender.send(&caller);
        sender.send(&callee);
        let out = finished(d, child);
        check_live_call(&d.join("out"), 100);
        let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
        let call = &printed["calls"][0];
        assert_eq!(call["call_id"], CALL_ID);
        assert_eq!(call["before_keys"], 0, "{out}");
        // Loopback: each packet read once (not again as it goes out).
        let sent: u64 = call["directions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["packets"].as_u64().unwrap() + d["srtcp_packets"].as_u64().unwrap())
            .sum();
        assert_eq!(sent, (caller.len() + callee.len()) as u64, "{out}");
    }

    #[test]
    fn a_call_whose_keys_come_late_is_recorded_from_its_first_packet() {
        use std::io::Write as _;
        if !private_network() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // The relay's spool, empty at the start (as `relay --record` opens it).
        let mut spool = std::fs::File::create(d.join("report.jsonl")).unwrap();
        let child = start_live(d, &[]);
        let sender = Sender::new();
        let order: Vec<u16> = (0..100).collect();
        let (caller, callee) = live_both_ways(&order);
        // The first second of the call, before the relay has spooled its keys.
        let half = |p: &[Udp]| p.iter().position(|u| u.src.port() % 2 == 1).unwrap() + 1;
        let (hc, he) = (half(&caller), half(&callee));
        sender.send(&caller[..hc]);
        sender.send(&callee[..he]);
        // The offer and answer, the second line written in two goes: half a
        // line is not read until its newline comes.
        let (a, b) = live_report_lines(&key(1), &key(2));
        let cut = b.len() / 2;
        write!(spool, "{a}\n{}", &b[..cut]).unwrap();
        spool.flush().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        writeln!(spool, "{}", &b[cut..]).unwrap();
        spool.flush().unwrap();
        sender.send(&caller[hc..]);
        sender.send(&callee[he..]);
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let out = finished(d, child);
        check_live_call(&d.join("out"), 100);
        // At least the first 50 packets and an SRTCP report each way waited.
        let before: u64 = out
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_suffix(" packets came before the call's keys: kept until they came")
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(before >= (hc + he) as u64, "{before} < {}: {out}", hc + he);
        let log = std::fs::read_to_string(d.join("record.log")).unwrap();
        assert!(log.contains("SIGTERM: stopping"), "{log}");
        assert!(!log.contains("warning"), "{log}");
    }

    #[test]
    fn an_unknown_interface_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.jsonl"), "").unwrap();
        common::sipseal()
            .args(["record", "--interface", "no-such-if0", "--duration", "1s"])
            .arg("--report")
            .arg(dir.path().join("r.jsonl"))
            .arg("--out")
            .arg(dir.path().join("out"))
            .assert()
            .code(2)
            .stderr(predicates::str::contains(
                "no network interface \"no-such-if0\"",
            ))
            .stderr(predicates::str::contains("hint: give an interface"));
        common::sipseal()
            .args(["record", "--interface", "lo", "--capture", "c.pcap"])
            .arg("--report")
            .arg(dir.path().join("r.jsonl"))
            .arg("--out")
            .arg(dir.path().join("out"))
            .assert()
            .code(2)
            .stderr(predicates::str::contains("cannot be used with"));
        assert!(!dir.path().join("out").exists(), "nothing written");
    }

    #[test]
    fn without_cap_net_raw_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.jsonl"), "").unwrap();
        // As root, the capability taken away (setpriv, util-linux); as
        // anyone else, it is not there to begin with.
        let drop = ["--bounding-set=-net_raw", "--inh-caps=-net_raw"];
        let setpriv = std::process::Command::new("setpriv")
            .args(drop)
            .arg("true")
            .status()
            .is_ok_and(|s| s.success());
        let mut cmd = if setpriv {
            let mut c = assert_cmd::Command::new("setpriv");
            c.args(drop).arg(env!("CARGO_BIN_EXE_sipseal"));
            c
        } else {
            assert_cmd::Command::new(env!("CARGO_BIN_EXE_sipseal"))
        };
        cmd.args(["record", "--interface", "lo", "--duration", "1s"])
            .arg("--report")
            .arg(dir.path().join("r.jsonl"))
            .arg("--out")
            .arg(dir.path().join("out"))
            .assert()
            .code(4)
            .stderr(predicates::str::contains(
                "a packet socket on lo needs root or CAP_NET_RAW",
            ))
            .stderr(predicates::str::contains("setcap cap_net_raw+ep"));
    }
}
