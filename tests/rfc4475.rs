//! RFC 4475 (SIP torture test messages): every message of §3.1.1,
//! §3.1.2, §3.2, §3.3 and §3.4 through `inspect`, `proxy` and `seal`,
//! each with the outcome the RFC names for it. The messages are in
//! `tests/data/rfc4475/`, byte for byte as the RFC gives them (see the
//! README there).

mod common;

use common::sipseal;

/// What the RFC says an element does with a message.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// Well formed: accepted, no `problem:` line.
    Valid,
    /// Accepted; RFC 4475 lets an element accept it, with a word.
    Remark,
    /// A malformed request: a relay answers it with this status.
    Reject(u16),
    /// A malformed response: dropped.
    Drop,
    /// Well formed, but a relay answers it with this status.
    Answer(u16),
}
use Want::*;

const TABLE: &[(&str, &str, Want)] = &[
    ("3.1.1.1", "wsinv", Valid),
    ("3.1.1.2", "intmeth", Valid),
    ("3.1.1.3", "esc01", Valid),
    ("3.1.1.4", "escnull", Valid),
    ("3.1.1.5", "esc02", Valid),
    ("3.1.1.6", "lwsdisp", Valid),
    ("3.1.1.7", "longreq", Valid),
    ("3.1.1.8", "dblreq", Valid),
    ("3.1.1.9", "semiuri", Valid),
    ("3.1.1.10", "transports", Valid),
    ("3.1.1.11", "mpart01", Valid),
    ("3.1.1.12", "unreason", Valid),
    ("3.1.1.13", "noreason", Valid),
    ("3.1.2.1", "badinv01", Reject(400)),
    ("3.1.2.2", "clerr", Reject(400)),
    ("3.1.2.3", "ncl", Reject(400)),
    ("3.1.2.4", "scalar02", Reject(400)),
    ("3.1.2.5", "scalarlg", Drop),
    ("3.1.2.6", "quotbal", Reject(400)),
    ("3.1.2.7", "ltgtruri", Reject(400)),
    ("3.1.2.8", "lwsruri", Reject(400)),
    ("3.1.2.9", "lwsstart", Reject(400)),
    ("3.1.2.10", "trws", Reject(400)),
    ("3.1.2.11", "escruri", Reject(400)),
    ("3.1.2.12", "baddate", Reject(400)),
    ("3.1.2.13", "regbadct", Reject(400)),
    ("3.1.2.14", "badaspec", Reject(400)),
    ("3.1.2.15", "baddn", Reject(400)),
    ("3.1.2.16", "badvers", Reject(505)),
    ("3.1.2.17", "mismatch01", Reject(400)),
    ("3.1.2.18", "mismatch02", Reject(501)),
    ("3.1.2.19", "bigcode", Drop),
    ("3.2.1", "badbranch", Remark),
    ("3.3.1", "insuf", Reject(400)),
    ("3.3.2", "unkscm", Valid),
    ("3.3.3", "novelsc", Valid),
    ("3.3.4", "unksm2", Valid),
    ("3.3.5", "bext01", Answer(420)),
    ("3.3.6", "invut", Valid),
    ("3.3.7", "regaut01", Valid),
    ("3.3.8", "multi01", Reject(400)),
    ("3.3.9", "mcl01", Reject(400)),
    ("3.3.10", "bcast", Valid),
    ("3.3.11", "zeromf", Answer(483)),
    ("3.3.12", "cparam01", Valid),
    ("3.3.13", "cparam02", Valid),
    ("3.3.14", "regescrt", Valid),
    ("3.3.15", "sdp01", Valid),
    ("3.4.1", "inv2543", Remark),
];

fn path(name: &str) -> String {
    format!("tests/data/rfc4475/{name}.dat")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_table_covers_every_message_once() {
    let mut names: Vec<&str> = TABLE.iter().map(|(_, n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 49, "RFC 4475 has 49 messages");
    let files = std::fs::read_dir("tests/data/rfc4475")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "dat")
        })
        .count();
    assert_eq!(files, 49);
}

#[test]
fn inspect_gives_each_message_its_outcome() {
    for &(section, name, want) in TABLE {
        let out = sipseal().args(["inspect", &path(name)]).output().unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let problems = stdout.lines().filter(|l| l.starts_with("problem:")).count();
        let ctx = format!("§{section} {name}: {stdout}{stderr}");
        match want {
            Valid | Answer(_) => {
                assert_eq!(out.status.code(), Some(0), "{ctx}");
                assert_eq!(problems, 0, "no false problem line: {ctx}");
            }
            Remark => {
                assert_eq!(out.status.code(), Some(0), "{ctx}");
                assert!(problems > 0, "{ctx}");
            }
            Reject(_) | Drop => {
                assert_eq!(out.status.code(), Some(1), "{ctx}");
                assert!(stderr.starts_with("error: "), "{ctx}");
                assert!(stderr.contains("\nhint: "), "{ctx}");
            }
        }
        assert!(!stderr.contains("panicked"), "{ctx}");
    }
}

#[test]
fn proxy_forwards_answers_or_drops_each_message() {
    for &(section, name, want) in TABLE {
        let out = sipseal()
            .args(["proxy", "--identity", "keys/proxy-a", &path(name)])
            .output()
            .unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let ctx = format!("§{section} {name}: {stdout}{stderr}");
        let input = std::fs::read(path(name)).unwrap();
        let request = !input.starts_with(b"SIP/");
        match want {
            Valid | Remark if request => {
                assert_eq!(out.status.code(), Some(0), "{ctx}");
                let first = text(&input).lines().next().unwrap().to_owned();
                assert!(stdout.starts_with(&format!("{first}\r\n")), "{ctx}");
                assert!(
                    stdout.contains("Via: SIP/2.0/") && stdout.contains("proxy-a.a.example.com"),
                    "{ctx}"
                );
            }
            // A response goes back only through the relay that forwarded
            // its request (RFC 3261 §16.11): these never passed here.
            Valid | Remark => {
                assert_eq!(out.status.code(), Some(1), "{ctx}");
                assert!(stdout.is_empty(), "{ctx}");
                assert!(stderr.contains("response dropped: its top Via is"), "{ctx}");
            }
            Reject(code) | Answer(code) => {
                assert_eq!(out.status.code(), Some(5), "{ctx}");
                assert!(stdout.starts_with(&format!("SIP/2.0 {code} ")), "{ctx}");
                // Addressed back to the sender: its Via and CSeq copied.
                let top_via = text(&input)
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("via"))
                    .unwrap()
                    .to_owned();
                assert!(stdout.contains(&top_via), "{ctx}");
                if matches!(want, Reject(_)) {
                    assert!(stdout.contains("\r\nWarning: 399 "), "{ctx}");
                }
            }
            Drop => {
                assert_eq!(out.status.code(), Some(1), "{ctx}");
                assert!(stdout.is_empty(), "{ctx}");
            }
        }
    }
}

#[test]
fn the_extra_octets_of_a_datagram_are_not_forwarded() {
    let out = sipseal()
        .args(["proxy", "--identity", "keys/proxy-a", &path("dblreq")])
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains("INVITE sip:joe@example.com"), "{stdout}");
    assert!(stdout.ends_with("Content-Length: 0\r\n\r\n"), "{stdout}");
    assert!(stderr.contains("446 bytes after the body"), "{stderr}");
}

#[test]
fn seal_takes_the_well_formed_and_refuses_the_malformed() {
    for &(section, name, want) in TABLE {
        let out = sipseal()
            .args(["seal", "--peer", "keys/bob/cert.pem", &path(name)])
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        let ctx = format!("§{section} {name}: {stderr}");
        let has_body = !stderr.contains("no body to seal");
        match want {
            Valid | Remark | Answer(_) if has_body => {
                assert_eq!(out.status.code(), Some(0), "{ctx}");
            }
            Valid | Remark | Answer(_) => assert_eq!(out.status.code(), Some(2), "{ctx}"),
            Reject(_) | Drop => assert_eq!(out.status.code(), Some(1), "{ctx}"),
        }
    }
}

/// Item 4: `seal` then `open` gives back the same bytes, except the one
/// documented normalisation of the body headers that travel inside the
/// envelope: full names and one space after the colon, in their order,
/// where the first of them stood. Content-Length keeps its line (or its
/// absence).
#[test]
fn seal_then_open_gives_back_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let crafted: [(&str, &[u8]); 3] = [
        (
            "unusual-order",
            b"MESSAGE sip:b@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nContent-Length   :   5\r\nMax-Forwards: 70\r\nContent-Transfer-Encoding:binary\r\nFrom: <sip:a@a.example.com>;tag=1\r\nc:   text/plain\r\nTo: <sip:b@b.example.com>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\n\r\nhello",
        ),
        (
            "no-content-length",
            b"MESSAGE sip:b@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:a@a.example.com>;tag=1\r\nTo: <sip:b@b.example.com>\r\nCall-ID: c2\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n\r\nno length here",
        ),
        (
            "compact-length",
            b"MESSAGE sip:b@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nl:2\r\nMax-Forwards: 70\r\nFrom: <sip:a@a.example.com>;tag=1\r\nTo: <sip:b@b.example.com>\r\nCall-ID: c3\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n\r\nhi",
        ),
    ];
    let mut inputs: Vec<(String, Vec<u8>)> = ["wsinv", "esc01", "longreq", "mpart01", "unreason"]
        .iter()
        .map(|n| (n.to_string(), std::fs::read(path(n)).unwrap()))
        .collect();
    inputs.extend(crafted.iter().map(|(n, b)| (n.to_string(), b.to_vec())));
    for (name, input) in inputs {
        let original = common::write(tmp.path(), "in.sip", &input);
        let sealed = common::ok(
            &sipseal()
                .args(["seal", "--peer", "keys/bob/cert.pem"])
                .arg(&original)
                .output()
                .unwrap(),
        );
        let sealed = common::write(tmp.path(), "sealed.sip", &sealed);
        let opened = common::ok(
            &sipseal()
                .args(["open", "--identity", "keys/bob"])
                .arg(&sealed)
                .output()
                .unwrap(),
        );
        assert_eq!(
            text(&opened),
            text(&normalised(&input)),
            "{name}: only the body headers may change"
        );
    }
}

/// `msg` with its body headers written as a MIME entity writes them: full
/// names, one space after the colon, together where the first stood.
fn normalised(msg: &[u8]) -> Vec<u8> {
    let m = sipseal::sip::Message::parse(msg).unwrap();
    let body = m.body_headers();
    let mut out = Vec::new();
    let head_end = msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
    let mut lines = msg[..head_end].split_inclusive(|&b| b == b'\n').peekable();
    out.extend_from_slice(lines.next().unwrap());
    let mut placed = false;
    while let Some(line) = lines.next() {
        let mut raw = line.to_vec();
        while lines
            .peek()
            .is_some_and(|l| l.starts_with(b" ") || l.starts_with(b"\t"))
        {
            raw.extend_from_slice(lines.next().unwrap());
        }
        let name = String::from_utf8_lossy(&raw)
            .split(':')
            .next()
            .unwrap()
            .trim()
            .to_owned();
        let full = sipseal::sip::names::full_name(&name);
        let is_body = sipseal::sip::body::BODY_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(full));
        if !is_body {
            out.extend_from_slice(&raw);
        } else if !placed {
            placed = true;
            for (n, v) in &body {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
        }
    }
    out.extend_from_slice(&msg[head_end..]);
    out
}
