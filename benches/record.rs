//! `sipseal record`'s throughput (issue 27): SRTP packets decrypted per
//! second from a capture. A call of PCMU at 50 packets/s each way, with an
//! SRTCP report every 50 packets, AES_CM_128_HMAC_SHA1_80, protected under
//! known keys by webrtc-srtp's encrypt side; the capture is read from
//! memory (capture::read) and recorded (record::record: match, decrypt,
//! sequence accounting, G.711 to PCM). The files are not written.
//!
//! The ceiling: AES-128-CTR over the 160-byte payload plus HMAC-SHA1 over
//! the packet (`openssl speed -evp aes-128-ctr`, `openssl speed -hmac sha1`,
//! -bytes 176); the note of issue 27 gives both.
// criterion_group! makes a public function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sipseal::record::capture::{self, Datagram};
use sipseal::record::{Calls, record};
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

const PACKETS: usize = 10_000;

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

/// One direction: `PACKETS` 20 ms PCMU packets and an SRTCP SR every 50.
fn direction(k: &[u8], ssrc: u32, src: &str, dst: &str) -> Vec<Datagram> {
    let mut ctx = Context::new(
        &k[..16],
        &k[16..],
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .unwrap();
    let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    let mut out = Vec::new();
    for i in 0..PACKETS {
        let seq = i as u16;
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(i as u32 * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend((0..160).map(|j| ((i + j) % 251) as u8));
        let time = Duration::from_millis(1_700_000_000_000 + i as u64 * 20);
        out.push(Datagram {
            time,
            src,
            dst,
            payload: ctx.encrypt_rtp(&p).unwrap().to_vec(),
        });
        if i % 50 == 49 {
            let mut sr = vec![0x80, 200, 0x00, 0x06];
            sr.extend_from_slice(&ssrc.to_be_bytes());
            sr.extend_from_slice(&[0x22; 20]);
            let (mut s, mut d) = (src, dst);
            s.set_port(src.port() + 1);
            d.set_port(dst.port() + 1);
            out.push(Datagram {
                time,
                src: s,
                dst: d,
                payload: ctx.encrypt_rtcp(&sr).unwrap().to_vec(),
            });
        }
    }
    out
}

fn report(caller: &[u8], callee: &[u8]) -> String {
    let line = |kind: &str, status: Option<u16>, origin: &str, addr: &str, port: u16, k: &[u8]| {
        let sdp = format!(
            "v=0\r\no={origin} IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\nm=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {}\r\n",
            inline(k)
        );
        let mut v = serde_json::json!({
            "kind": kind, "method": "INVITE", "call_id": "bench@a.example.com",
            "relay": ["sip:proxy.example.net"], "decision": "designated", "opened": true,
            "sdp": sdp,
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
    };
    format!(
        "{}\n{}\n",
        line("request", None, "alice 1 1", "192.0.2.10", 40000, caller),
        line(
            "response",
            Some(200),
            "bob 7 1",
            "198.51.100.20",
            50000,
            callee
        )
    )
}

fn bench(c: &mut Criterion) {
    let (a, b) = (key(1), key(2));
    let mut datagrams = direction(&a, 0x1111, "192.0.2.10:40000", "198.51.100.20:50000");
    datagrams.extend(direction(
        &b,
        0x2222,
        "198.51.100.20:50000",
        "192.0.2.10:40000",
    ));
    let bytes = capture::write_pcap(&datagrams);
    let calls = Calls::parse(&report(&a, &b)).unwrap();
    // Every packet decrypts: the figure is of work done, not refused.
    let check = record(&calls, &[], &capture::read(&bytes).unwrap()).unwrap();
    let json = serde_json::to_value(&check.calls[0].directions[0].summary).unwrap();
    assert_eq!(json["packets"], PACKETS as u64, "{json}");
    assert_eq!(json["auth_failures"], 0, "{json}");

    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(datagrams.len() as u64));
    g.bench_function("read+decrypt a capture (packets)", |bch| {
        bch.iter(|| {
            let capture = capture::read(black_box(&bytes)).unwrap();
            black_box(record(&calls, &[], &capture).unwrap())
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
