//! Parsing and re-serializing is byte-exact; no input makes the parser or
//! `inspect` panic.

mod common;

use common::file;
use rand::rngs::ChaCha20Rng;
use rand::{Rng, SeedableRng};
use sipseal::inspect::inspect;
use sipseal::sip::Message;

const MESSAGES: &[&str] = &[
    "tests/data/compact-folded.sip",
    "tests/data/binary-body.sip",
    "samples/invite.sip",
    "tests/golden/response-200.sip",
    "tests/golden/message.sip",
];

#[test]
fn unmodified_messages_serialize_to_their_input() {
    for path in MESSAGES {
        let bytes = file(path);
        let m = Message::parse(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(m.to_bytes(), bytes, "{path}");
    }
}

#[test]
fn compact_forms_and_folding_are_understood() {
    let m = Message::parse(&file("tests/data/compact-folded.sip")).unwrap();
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 2, "folded Via with two values");
    assert_eq!(vias[1].branch().unwrap().to_string(), "z9hG4bKua1");
    assert_eq!(
        m.to_header().unwrap().uri.to_string(),
        "sip:bob@b.example.com"
    );
    assert_eq!(m.header("Subject"), Some("folded subject line"));
    assert_eq!(m.header_list("Supported"), ["timer", "100rel"]);
    assert_eq!(m.contacts().unwrap().len(), 2);
    assert_eq!(m.cseq().unwrap().seq, 2);
    assert_eq!(m.max_forwards().unwrap(), Some(69));
    assert_eq!(m.header("x-unknown-header"), Some("keep me"));
    assert!(m.content_type().unwrap().unwrap().is("application/sdp"));
}

#[test]
fn binary_body_is_kept_exactly() {
    let bytes = file("tests/data/binary-body.sip");
    let m = Message::parse(&bytes).unwrap();
    let der = &m.body()[..m.body().len() - 7];
    assert_eq!(der, &file_der("keys/proxy-b/cert.pem")[..]);
    assert!(m.body().ends_with(b"\r\n\r\n\x00\xff\xfe"));
}

fn file_der(pem: &str) -> Vec<u8> {
    use der::DecodePem;
    use der::Encode;
    let text = String::from_utf8(file(pem)).unwrap();
    x509_cert::Certificate::from_pem(text.as_bytes())
        .unwrap()
        .to_der()
        .unwrap()
}

#[test]
fn edits_keep_other_lines_byte_identical() {
    let bytes = file("tests/data/compact-folded.sip");
    let mut m = Message::parse(&bytes).unwrap();
    m.prepend_header("Via", "SIP/2.0/TCP relay.example.com;branch=z9hG4bKnew");
    m.set_header("Max-Forwards", "68");
    let out = m.to_bytes();
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(
        text.contains("\r\nVia: SIP/2.0/TCP relay.example.com;branch=z9hG4bKnew\r\nv: SIP/2.0/TCP")
    );
    assert!(
        text.contains("\r\nmax-forwards: 68\r\n"),
        "name kept as written"
    );
    // Everything but the two edited lines is unchanged, folding included.
    let original = String::from_utf8(bytes).unwrap();
    for line in original.lines().filter(|l| !l.starts_with("max-forwards")) {
        assert!(text.contains(line), "lost {line:?}");
    }
    assert_eq!(Message::parse(&out).unwrap().vias().unwrap().len(), 3);
}

/// Deterministic mutation testing: random byte flips, cuts, splices and
/// inserted delimiters over real messages. The parser and inspect must
/// return (Ok or Err) without panicking, and whatever parses must re-serialize
/// to the exact input.
#[test]
fn mutated_inputs_never_panic() {
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let seeds: Vec<Vec<u8>> = MESSAGES.iter().map(|p| file(p)).collect();
    let specials: &[&[u8]] = &[
        b"\r\n",
        b"\n",
        b":",
        b" ",
        b"\t",
        b",",
        b"<",
        b">",
        b";",
        b"\"",
        b"\xff",
        b"\x00",
        b"\r\n\r\n",
        b"=",
        b"m=",
        b"c=",
    ];
    let mut parsed = 0;
    for i in 0..6000 {
        let mut m = seeds[i % seeds.len()].clone();
        for _ in 0..=(rng.next_u32() % 4) {
            let len = m.len().max(1) as u32;
            let at = (rng.next_u32() % len) as usize;
            match rng.next_u32() % 5 {
                0 if !m.is_empty() => {
                    let last = m.len() - 1;
                    m[at.min(last)] = rng.next_u32() as u8;
                }
                1 => m.truncate(at),
                2 => {
                    let s = specials[(rng.next_u32() as usize) % specials.len()];
                    m.splice(at.min(m.len())..at.min(m.len()), s.iter().copied());
                }
                3 if at < m.len() => {
                    let end = (at + (rng.next_u32() % 16) as usize).min(m.len());
                    m.drain(at..end);
                }
                _ => {
                    let other = &seeds[(rng.next_u32() as usize) % seeds.len()];
                    let cut = (rng.next_u32() as usize) % other.len();
                    m.truncate(at.min(m.len()));
                    m.extend_from_slice(&other[cut..]);
                }
            }
        }
        if let Ok(msg) = Message::parse(&m) {
            parsed += 1;
            // Octets after Content-Length are discarded (RFC 3261 §18.3).
            assert_eq!(msg.to_bytes(), m[..m.len() - msg.discarded()]);
            let report = inspect(&msg);
            let _ = report.to_text();
        }
    }
    // The mutations must exercise both paths.
    assert!(parsed > 100 && parsed < 6000, "parsed {parsed} of 6000");
}
