//! The live relay as a proxy (RFC 3261 §16, docs/SPEC.md §7): it knows every name
//! it goes by and answers what is addressed to it, detects loops, writes
//! `received`/`rport`, record-routes with the transport, passes bodies it
//! is not designated for untouched and answers a designated body that
//! does not open, answers STUN keep-alives, and a next hop that never
//! answers holds up only the calls that go there.

mod common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::live::{Daemon, tcp_sink};
use sipseal::sip::Message;

/// A user agent on UDP: sends from its socket, reads what comes back.
struct Ua {
    socket: UdpSocket,
}

impl Ua {
    fn new() -> Ua {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Ua { socket }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().unwrap().port()
    }

    fn send(&self, to: u16, msg: &[u8]) {
        self.socket.send_to(msg, ("127.0.0.1", to)).unwrap();
    }

    fn recv(&self) -> Message {
        let mut buf = vec![0u8; 65_535];
        let (n, _) = self.socket.recv_from(&mut buf).expect("an answer");
        Message::parse(&buf[..n]).unwrap()
    }

    fn recv_bytes(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 65_535];
        let (n, _) = self.socket.recv_from(&mut buf).expect("an answer");
        buf[..n].to_vec()
    }
}

/// A request from the UA at `port` (its Via), with `extra` header lines.
fn request(method: &str, uri: &str, port: u16, call_id: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} {uri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id};rport;received=198.51.100.66\r\n\
Max-Forwards: 70\r\n{extra}\
From: <sip:alice@a.example.com>;tag=a1\r\n\
To: <sip:bob@b.example.com>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 {method}\r\n\
Contact: <sip:alice@127.0.0.1:{port}>\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn relay(d: &std::path::Path, name: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "relay",
        // Its next hops (user agents, SIPp, Kamailio) are on the loopback.
        "--hop-allow",
        "127.0.0.0/8",
        "--listen",
        "udp:127.0.0.1:0",
        "--listen",
        "tcp:127.0.0.1:0",
        "--identity",
        "keys/proxy-b-ec",
    ];
    args.extend_from_slice(extra);
    Daemon::start(d, name, &args)
}

/// Its JSON log lines about `call_id`.
fn lines_of(daemon: &Daemon, call_id: &str) -> Vec<serde_json::Value> {
    daemon
        .log_lines()
        .into_iter()
        .filter(|l| l["call_id"] == call_id)
        .collect()
}

#[test]
fn a_ping_to_the_relay_is_answered_once_by_the_relay_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(tmp.path(), "relay", &[]);
    let (udp, tcp) = (relay.port("udp"), relay.port("tcp"));
    let ua = Ua::new();
    // A keep-alive ping to the relay's address; then one whose Route names
    // its TCP listener (another of its names): both are for the relay.
    ua.send(
        udp,
        &request(
            "OPTIONS",
            &format!("sip:127.0.0.1:{udp}"),
            ua.port(),
            "ping-1",
            "",
        ),
    );
    let answer = ua.recv();
    assert_eq!(answer.status(), Some(200));
    assert!(answer.header("Allow").is_some() && answer.header("Accept").is_some());
    let route = format!("Route: <sip:127.0.0.1:{tcp};transport=tcp;lr>\r\n");
    ua.send(
        udp,
        &request(
            "OPTIONS",
            &format!("sip:[::ffff:127.0.0.1]:{udp}"),
            ua.port(),
            "ping-2",
            &route,
        ),
    );
    assert_eq!(ua.recv().status(), Some(200));
    // A method the relay does not serve for itself, and an ACK (absorbed).
    ua.send(
        udp,
        &request(
            "MESSAGE",
            &format!("sip:127.0.0.1:{udp}"),
            ua.port(),
            "ping-3",
            "",
        ),
    );
    assert_eq!(ua.recv().status(), Some(405));
    ua.send(
        udp,
        &request(
            "ACK",
            &format!("sip:127.0.0.1:{udp}"),
            ua.port(),
            "ping-4",
            "",
        ),
    );
    assert!(relay.logged(r#""call_id":"ping-4""#));
    for (call, lines) in [("ping-1", 1), ("ping-2", 1), ("ping-3", 1), ("ping-4", 1)] {
        // A message is logged once what it caused was sent.
        assert!(relay.logged(&format!(r#""call_id":"{call}""#)));
        assert_eq!(
            lines_of(&relay, call).len(),
            lines,
            "{call}: one log line\n{}",
            relay.log_text()
        );
    }
    // Nothing came back for the ACK.
    ua.socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        ua.socket.recv_from(&mut buf).is_err(),
        "no answer to an ACK"
    );
}

#[test]
fn a_request_that_comes_back_unchanged_is_a_loop_482() {
    let tmp = tempfile::tempdir().unwrap();
    // Two relays, each the other's next hop: the request comes back to
    // the first with its own Via and the same routing. (A relay whose
    // next hop is itself is refused at once: 403, issue 25.)
    let free = || {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let (a_port, b_port) = (free(), free());
    let start = |name: &str, port: u16, next: u16| {
        Daemon::start(
            tmp.path(),
            name,
            &[
                "relay",
                "--listen",
                &format!("udp:127.0.0.1:{port}"),
                "--identity",
                "keys/proxy-b-ec",
                "--next",
                &format!("udp:127.0.0.1:{next}"),
            ],
        )
    };
    let a = start("a", a_port, b_port);
    let b = start("b", b_port, a_port);
    let ua = Ua::new();
    ua.send(
        a_port,
        &request("OPTIONS", "sip:bob@b.example.com", ua.port(), "loop-1", ""),
    );
    let answer = ua.recv();
    assert_eq!(
        answer.status(),
        Some(482),
        "{}\n{}",
        a.log_text(),
        b.log_text()
    );
    // Forwarded once each way, answered 482 the second time, the 482
    // back: not 70 times. (A message is logged once it is sent: the
    // 482's line may follow the 482.)
    assert!(a.logged(r#""status":482"#), "{}", a.log_text());
    assert!(lines_of(&a, "loop-1").len() <= 3, "{}", a.log_text());
    assert!(lines_of(&b, "loop-1").len() <= 2, "{}", b.log_text());
    // A relay whose next hop is itself sends nothing: 403 at once.
    let port = free();
    let own = start("own", port, port);
    ua.send(
        port,
        &request("OPTIONS", "sip:bob@b.example.com", ua.port(), "loop-2", ""),
    );
    assert_eq!(ua.recv().status(), Some(403), "{}", own.log_text());
    assert!(own.logged("own listener or store"), "{}", own.log_text());
    assert_eq!(lines_of(&own, "loop-2").len(), 1, "{}", own.log_text());
}

#[test]
fn vias_get_the_real_source_and_record_route_names_each_transport() {
    let tmp = tempfile::tempdir().unwrap();
    let (sink, forwarded) = tcp_sink();
    let next = format!("tcp:127.0.0.1:{sink}");
    let relay = relay(tmp.path(), "relay", &["--next", &next, "--record-route"]);
    let ua = Ua::new();
    ua.send(
        relay.port("udp"),
        &request("INVITE", "sip:bob@b.example.com", ua.port(), "rr-1", ""),
    );
    let out = forwarded.recv_timeout(Duration::from_secs(10)).unwrap();
    let vias = out.header_list("Via");
    assert_eq!(
        vias[1],
        format!(
            "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKrr-1;received=127.0.0.1;rport={}",
            ua.port(),
            ua.port()
        ),
        "the UA's received= and rport overwritten with what the socket saw"
    );
    assert!(vias[0].starts_with(&format!("SIP/2.0/TCP 127.0.0.1:{};", relay.port("tcp"))));
    // In on UDP, out on TCP: two entries (RFC 5658), the outbound on top.
    assert_eq!(
        out.header_list("Record-Route"),
        [
            format!("<sip:127.0.0.1:{};transport=tcp;lr>", relay.port("tcp")),
            format!("<sip:127.0.0.1:{};transport=udp;lr>", relay.port("udp")),
        ]
    );
}

#[test]
fn a_body_not_for_the_relay_passes_untouched_and_one_for_it_that_does_not_open_is_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (sink, forwarded) = tcp_sink();
    let next = format!("tcp:127.0.0.1:{sink}");
    let relay = Daemon::start(
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
        ],
    );
    // A certs-only body (a registrar's 200 carries one): not an envelope.
    let certs = std::fs::read("keys/proxy-a-ec/cert.pem").unwrap();
    let mut msg = String::from_utf8(request(
        "MESSAGE",
        "sip:bob@b.example.com",
        5099,
        "certs-1",
        "",
    ))
    .unwrap()
    .replace(
        "Content-Length: 0\r\n",
        &format!(
            "Content-Type: application/pkcs7-mime; smime-type=certs-only\r\nContent-Length: {}\r\n",
            certs.len()
        ),
    )
    .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
    .into_bytes();
    msg.extend_from_slice(&certs);
    let mut conn = TcpStream::connect(("127.0.0.1", relay.port("tcp"))).unwrap();
    conn.write_all(&msg).unwrap();
    let out = forwarded.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(out.body(), &certs[..], "forwarded byte for byte");

    // A sealed INVITE that designates this relay, its envelope damaged.
    let call = common::live::sealed_call(d, "broken-1@a.example.com");
    let (head, mut body) = common::live::split(&call.invite);
    let at = body.len() - 40;
    body[at] ^= 0xff;
    let mut broken = head.into_bytes();
    broken.extend_from_slice(b"\r\n\r\n");
    broken.extend_from_slice(&body);
    conn.write_all(&broken).unwrap();
    let mut framer = sipseal::net::frame::Framer::new(65_535);
    let mut buf = vec![0u8; 65_535];
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let answer = loop {
        let n = std::io::Read::read(&mut conn, &mut buf).unwrap();
        assert!(n > 0, "{}", relay.log_text());
        framer.push(&buf[..n]);
        if let Ok(sipseal::net::frame::Frame::Message(m)) = framer.next_frame() {
            break Message::parse(&m).unwrap();
        }
    };
    // Answered, never dropped; the same answer as no RecipientInfo at all.
    assert_eq!(answer.status(), Some(496), "{}", relay.log_text());
}

#[test]
fn a_stun_keepalive_gets_its_mapped_address() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(tmp.path(), "relay", &[]);
    let ua = Ua::new();
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    req.extend_from_slice(b"sipsealstun1");
    ua.send(relay.port("udp"), &req);
    let answer = ua.recv_bytes();
    assert_eq!(&answer[0..2], &[0x01, 0x01], "a Binding success response");
    assert_eq!(&answer[8..20], b"sipsealstun1");
    let port = u16::from_be_bytes([answer[26], answer[27]]) ^ 0x2112;
    assert_eq!(port, ua.port());
    assert!(!relay.log_text().contains("not UTF-8"));
}

/// A TCP next hop that never answers: a listener whose accept queue is
/// full, so that a new connection's SYN goes unanswered. The fillers are
/// kept with it.
fn black_hole() -> (u16, Vec<TcpStream>, std::net::TcpListener) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    while let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        fillers.push(c);
        assert!(fillers.len() < 10_000, "the accept queue never filled");
    }
    (addr.port(), fillers, listener)
}

#[test]
fn a_next_hop_that_never_answers_holds_up_only_its_own_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let (hole, _fillers, _listener) = black_hole();
    let (sink, forwarded) = tcp_sink();
    let relay = relay(tmp.path(), "relay", &[]);
    let udp = relay.port("udp");
    let ua = Ua::new();
    // 100 requests routed to the black hole, each its own call.
    let to_hole = format!("Route: <sip:127.0.0.1:{hole};transport=tcp;lr>\r\n");
    for i in 0..100 {
        ua.send(
            udp,
            &request(
                "OPTIONS",
                "sip:bob@b.example.com",
                ua.port(),
                &format!("hole-{i}"),
                &to_hole,
            ),
        );
    }
    // Then a normal request to a next hop that answers.
    let to_sink = format!("Route: <sip:127.0.0.1:{sink};transport=tcp;lr>\r\n");
    let sent = Instant::now();
    ua.send(
        udp,
        &request(
            "OPTIONS",
            "sip:bob@b.example.com",
            ua.port(),
            "normal-1",
            &to_sink,
        ),
    );
    let out = forwarded.recv_timeout(Duration::from_secs(10)).unwrap();
    let took = sent.elapsed();
    assert_eq!(out.call_id().unwrap(), "normal-1");
    // It went on while the black hole's requests were still waiting for
    // their connection (none of them has been answered yet).
    let answered = relay
        .log_lines()
        .iter()
        .filter(|l| {
            l["call_id"]
                .as_str()
                .is_some_and(|c| c.starts_with("hole-"))
        })
        .count();
    assert_eq!(answered, 0, "after {took:?}\n{}", relay.log_text());
    eprintln!("the normal request went on after {took:?}");
    // In time they are answered 503 (one connect attempt, the rest at once).
    let answer = ua.recv();
    assert_eq!(answer.status(), Some(503));
}

#[test]
fn the_ack_of_the_relays_own_answer_ends_at_the_relay() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(tmp.path(), "relay", &[]);
    let ua = Ua::new();
    // A next hop that refuses the connection: the relay answers 503.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let route = format!("Route: <sip:127.0.0.1:{closed};transport=tcp;lr>\r\n");
    ua.send(
        relay.port("udp"),
        &request(
            "INVITE",
            "sip:bob@b.example.com",
            ua.port(),
            "own-1",
            &route,
        ),
    );
    let answer = ua.recv();
    assert_eq!(answer.status(), Some(503), "{}", relay.log_text());
    let to = answer.header("To").unwrap().to_owned();
    // Its ACK (RFC 3261 §17.1.1.3): the To of the answer, the INVITE's branch.
    let ack = String::from_utf8(request(
        "ACK",
        "sip:bob@b.example.com",
        ua.port(),
        "own-1",
        &route,
    ))
    .unwrap()
    .replace("To: <sip:bob@b.example.com>", &format!("To: {to}"));
    ua.send(relay.port("udp"), ack.as_bytes());
    assert!(
        relay.logged("the ACK of this relay's own answer"),
        "{}",
        relay.log_text()
    );
    let ack_line = lines_of(&relay, "own-1")
        .into_iter()
        .find(|l| l["method"] == "ACK")
        .unwrap();
    assert!(
        ack_line.get("send_error").is_none(),
        "not sent anywhere: {ack_line}"
    );
}
