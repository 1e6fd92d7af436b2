//! Issue 25 against the live relay, as a hostile sender on 127.0.0.1 would
//! try it: one test per finding that needs a socket, each written to fail
//! before its fix (the relay step's findings are in tests/hardening.rs).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use common::live::{Daemon, Redis, sealed_call, tcp_sink};

/// A UDP socket on the loopback that waits `secs` for what comes.
fn udp(secs: u64) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    s
}

fn recv(s: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65_535];
    let n = s.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn shown(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A request from `from` (its Via and Contact), with `extra` header lines
/// and a text body.
fn request(method: &str, uri: &str, call_id: &str, via: &str, extra: &str, body: &str) -> Vec<u8> {
    let ctype = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: text/plain\r\n".to_owned()
    };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:mallory@evil.example>;tag=m1\r\nTo: <sip:bob@b.example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n{extra}{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn relay(d: &Path, name: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "relay",
        "--listen",
        "udp:127.0.0.1:0",
        "--listen",
        "tcp:127.0.0.1:0",
        "--identity",
        "keys/proxy-a-ec",
        // Nothing here asks DNS: a name is an answer at once.
        "--no-dns",
    ];
    args.extend_from_slice(extra);
    Daemon::start(d, name, &args)
}

/// The next hop's 200 to an OPTIONS of `call_id` (request()'s From and
/// To), with these Via values.
fn ok_on<V: AsRef<str>>(vias: &[V], call_id: &str) -> String {
    let vias: String = vias
        .iter()
        .map(|v| format!("Via: {}\r\n", v.as_ref()))
        .collect();
    format!(
        "SIP/2.0 200 OK\r\n{vias}From: <sip:mallory@evil.example>;tag=m1\r\nTo: <sip:bob@b.example.com>;tag=b1\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The log lines of `relay` about `call_id`.
fn lines_of(relay: &Daemon, call_id: &str) -> Vec<serde_json::Value> {
    relay
        .log_lines()
        .into_iter()
        .filter(|l| l["call_id"] == call_id)
        .collect()
}

/// What a Redis server holds at `key` (`$-1` when nothing), asked inline.
fn redis_get(port: u16, key: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(format!("GET {key}\r\n").as_bytes()).unwrap();
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).unwrap();
    shown(&buf[..n])
}

/// H2: the first Route entry (or the Request-URI) chose where the relay
/// connected, loopback and its own Redis included: a request routed to
/// the Redis port with `SET pwned-by-sip yes` in its body wrote that key.
/// Now a next hop a message names is loopback only with `--hop-allow`,
/// and never the relay's own store or listeners: 403, nothing sent.
#[test]
fn a_request_routed_at_loopback_or_the_relays_own_store_gets_403_and_goes_nowhere() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let redis = Redis::start();
    let (sink, got) = tcp_sink();
    let closed = relay(d, "closed", &["--state", &redis.url()]);
    let open = relay(
        d,
        "open",
        &["--state", &redis.url(), "--hop-allow", "127.0.0.0/8"],
    );
    let client = udp(5);
    let ask = |relay: &Daemon, call_id: &str, uri: &str, route: &str, body: &str| {
        let extra = match route {
            "" => String::new(),
            r => format!("Route: <{r}>\r\n"),
        };
        let via = client.local_addr().unwrap().to_string();
        let msg = request("MESSAGE", uri, call_id, &via, &extra, body);
        client
            .send_to(&msg, ("127.0.0.1", relay.port("udp")))
            .unwrap();
        recv(&client)
    };
    let to_redis = format!("sip:127.0.0.1:{};transport=tcp;lr", redis.port);
    let to_sink = format!("sip:127.0.0.1:{sink};transport=tcp;lr");
    let sink_uri = format!("sip:bob@127.0.0.1:{sink};transport=tcp");
    let attack = "SET pwned-by-sip yes\r\n";
    for (relay, call_id) in [(&closed, "h2-redis-closed"), (&open, "h2-redis-open")] {
        let answer =
            ask(relay, call_id, "sip:bob@b.example.com", &to_redis, attack).expect("an answer");
        assert!(answer.starts_with(b"SIP/2.0 403"), "{}", shown(&answer));
        assert!(
            shown(&answer).contains("Warning: 399"),
            "{}",
            shown(&answer)
        );
    }
    assert_eq!(redis_get(redis.port, "pwned-by-sip"), "$-1\r\n");
    // Its own listener, under another spelling.
    let own = format!(
        "sip:[::ffff:127.0.0.1]:{};transport=tcp;lr",
        open.port("tcp")
    );
    let answer = ask(&open, "h2-own", "sip:bob@b.example.com", &own, "").expect("an answer");
    assert!(!answer.starts_with(b"SIP/2.0 483"), "{}", shown(&answer));
    assert!(lines_of(&open, "h2-own").len() <= 2, "no loop");
    // Loopback named by a Route or the Request-URI: 403 without
    // --hop-allow, and nothing arrives.
    let answer = ask(&closed, "h2-route", "sip:bob@b.example.com", &to_sink, "").unwrap();
    assert!(answer.starts_with(b"SIP/2.0 403"), "{}", shown(&answer));
    let answer = ask(&closed, "h2-ruri", &sink_uri, "", "").unwrap();
    assert!(answer.starts_with(b"SIP/2.0 403"), "{}", shown(&answer));
    assert!(got.recv_timeout(Duration::from_millis(500)).is_err());
    // With --hop-allow the same request goes on.
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(ask(&open, "h2-allowed", &sink_uri, "", "").is_none());
    let arrived = got.recv_timeout(Duration::from_secs(5)).expect("forwarded");
    assert_eq!(arrived.call_id().unwrap(), "h2-allowed");
}

/// H5: a request for the relay under another spelling looped until
/// Max-Forwards ran out, and the 483 carried 256 Route-Security entries
/// back (47 times the request); an ACK got a 483. Now the relay knows
/// itself, a message with more than 70 entries is refused without them,
/// and an ACK is never answered.
#[test]
fn no_loop_no_answer_to_an_ack_and_route_security_is_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let relay = relay(d, "relay", &["--hop-allow", "127.0.0.0/8"]);
    let port = relay.port("udp");
    let client = udp(3);
    let via = client.local_addr().unwrap().to_string();
    let send = |msg: &[u8]| {
        client.send_to(msg, ("127.0.0.1", port)).unwrap();
    };
    for (call_id, uri, route) in [
        ("h5-ruri", format!("sip:127.0.0.1:{port}"), String::new()),
        (
            "h5-mapped",
            format!("sip:carol@[::ffff:127.0.0.1]:{port}"),
            format!("Route: <sip:[::ffff:127.0.0.1]:{port};lr>\r\n"),
        ),
        (
            "h5-tcp-spelling",
            format!("sip:127.0.0.1:{port};transport=tcp"),
            String::new(),
        ),
    ] {
        send(&request("OPTIONS", &uri, call_id, &via, &route, ""));
        let answer = recv(&client).expect("an answer");
        assert!(!answer.starts_with(b"SIP/2.0 483"), "{}", shown(&answer));
        std::thread::sleep(Duration::from_millis(200));
        let lines = lines_of(&relay, call_id);
        assert!(lines.len() <= 2, "{call_id} looped: {} lines", lines.len());
    }
    // An ACK with Max-Forwards 0, and one for the relay itself: no answer.
    let ack = request("ACK", "sip:bob@b.example.com", "h5-ack", &via, "", "");
    let ack = shown(&ack).replace("Max-Forwards: 70", "Max-Forwards: 0");
    send(ack.as_bytes());
    client
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    assert_eq!(recv(&client).map(|b| shown(&b)), None);
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    // 256 Route-Security entries: 400, none of them carried back.
    let many = "Route-Security: <sip:192.0.2.1>;level=0\r\n".repeat(256);
    let msg = request(
        "OPTIONS",
        "sip:bob@b.example.com",
        "h5-many",
        &via,
        &many,
        "",
    );
    send(&msg);
    let answer = recv(&client).expect("an answer");
    assert!(answer.starts_with(b"SIP/2.0 400"), "{}", shown(&answer));
    assert!(
        !shown(&answer).contains("\r\nRoute-Security:"),
        "{}",
        shown(&answer)
    );
    assert!(answer.len() <= 3 * msg.len());
}

/// A TCP listener whose accept queue is full: a connection to it hangs
/// until the connect timeout (what a next hop under a SYN flood is).
fn black_hole() -> (socket2::Socket, Vec<socket2::Socket>, u16) {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    l.bind(&addr.into()).unwrap();
    l.listen(0).unwrap();
    let port = l.local_addr().unwrap().as_socket().unwrap().port();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        if s.connect_timeout(&to.into(), Duration::from_millis(300))
            .is_err()
        {
            break;
        }
        fillers.push(s);
    }
    (l, fillers, port)
}

/// H3: the UDP listener handled each datagram inline, so one request for
/// a next hop that does not answer (5 s connect timeout) held every
/// datagram behind it: a normal request was answered after 5.00 s. Now
/// with 100 of them pending, a normal one is answered at once.
#[test]
fn a_hundred_requests_to_a_black_hole_do_not_hold_up_the_next_datagram() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (_hole, _fillers, hole) = black_hole();
    let relay = relay(d, "relay", &["--hop-allow", "127.0.0.0/8"]);
    let port = relay.port("udp");
    let attacker = udp(1);
    let via = attacker.local_addr().unwrap().to_string();
    let uri = format!("sip:bob@127.0.0.1:{hole};transport=tcp");
    for i in 0..100 {
        let msg = request("MESSAGE", &uri, &format!("h3-hole-{i}"), &via, "", "");
        attacker.send_to(&msg, ("127.0.0.1", port)).unwrap();
    }
    let client = udp(10);
    let via = client.local_addr().unwrap().to_string();
    let ping = request(
        "OPTIONS",
        &format!("sip:127.0.0.1:{port}"),
        "h3-ping",
        &via,
        "",
        "",
    );
    let sent = Instant::now();
    client.send_to(&ping, ("127.0.0.1", port)).unwrap();
    let answer = recv(&client).expect("an answer");
    let waited = sent.elapsed();
    assert!(answer.starts_with(b"SIP/2.0 200"), "{}", shown(&answer));
    // Not a speed test: the point is that it did not wait for the black
    // hole's 5 s connect timeout.
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
}

/// M1: a sender's own `received=` and `rport=PORT` in its Via were kept,
/// so the response to its request went where it said: a reflection at a
/// third party. Now the relay writes what it saw, and the response comes
/// back to the real source.
#[test]
fn a_forwarded_response_goes_to_the_real_source_not_where_the_via_says() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let next = udp(5);
    let next_port = next.local_addr().unwrap().port();
    let relay = relay(
        d,
        "relay",
        &["--next", &format!("udp:127.0.0.1:{next_port}")],
    );
    let client = udp(5);
    let victim = udp(1);
    let victim_port = victim.local_addr().unwrap().port();
    let via = format!("127.0.0.1:9;received=192.0.2.66;rport={victim_port}");
    let msg = request("OPTIONS", "sip:bob@b.example.com", "m1", &via, "", "");
    client
        .send_to(&msg, ("127.0.0.1", relay.port("udp")))
        .unwrap();
    let forwarded = recv(&next).expect("forwarded");
    let forwarded = sipseal::sip::Message::parse(&forwarded).unwrap();
    let vias = forwarded.header_values("Via");
    let theirs = vias[1];
    let real = client.local_addr().unwrap().port();
    assert!(
        theirs.contains(&format!("rport={real}")) && theirs.contains("received=127.0.0.1"),
        "{theirs}"
    );
    assert!(
        !theirs.contains(&format!("rport={victim_port}")),
        "{theirs}"
    );
    next.send_to(
        ok_on(&vias, "m1").as_bytes(),
        ("127.0.0.1", relay.port("udp")),
    )
    .unwrap();
    let back = recv(&client).expect("the 200 comes back to its sender");
    assert!(back.starts_with(b"SIP/2.0 200"), "{}", shown(&back));
    assert_eq!(recv(&victim).map(|b| shown(&b)), None);
}

/// H6: after Redis restarted, every designated INVITE still got `500 …
/// unexpected end of file` until the relay itself was restarted. Now: 503
/// with Retry-After while the store is down, and calls go on within 2 s
/// of its return.
#[test]
fn calls_fail_with_503_while_redis_is_down_and_go_on_within_2_s_of_its_return() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let call = sealed_call(d, "h6-0");
    let with_id = |id: &str| {
        let at = call
            .invite
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap();
        let head = shown(&call.invite[..at]).replace("h6-0", id);
        [head.as_bytes(), &call.invite[at..]].concat()
    };
    let redis = Redis::start();
    let redis_port = redis.port;
    let (sink, got) = tcp_sink();
    let relay = relay(
        d,
        "relay",
        &[
            "--state",
            &redis.url(),
            "--next",
            &format!("tcp:127.0.0.1:{sink}"),
        ],
    );
    let mut conn = TcpStream::connect(("127.0.0.1", relay.port("tcp"))).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut invite_as = |id: &str| -> Result<(), String> {
        conn.write_all(&with_id(id)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(m) = got.try_recv() {
                assert_eq!(m.call_id().unwrap(), id);
                return Ok(());
            }
            let mut buf = vec![0u8; 65_535];
            if let Ok(n) = conn.read(&mut buf)
                && n > 0
            {
                return Err(shown(&buf[..n]));
            }
            assert!(
                Instant::now() < deadline,
                "{id}: neither forwarded nor answered"
            );
        }
    };
    invite_as("h6-1").expect("forwarded while Redis runs");
    drop(redis);
    let answer = invite_as("h6-2").expect_err("answered while Redis is down");
    assert!(answer.starts_with("SIP/2.0 503"), "{answer}");
    assert!(answer.contains("Retry-After: "), "{answer}");
    let _redis = Redis::start_on(redis_port);
    let back = Instant::now();
    let mut n = 3;
    loop {
        let id = format!("h6-{n}");
        match invite_as(&id) {
            Ok(()) => break,
            Err(answer) => {
                assert!(answer.starts_with("SIP/2.0 503"), "{answer}");
                assert!(
                    back.elapsed() < Duration::from_secs(2),
                    "still failing {:?} after Redis came back: {answer}",
                    back.elapsed()
                );
            }
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // And every call after it.
    for i in 0..10 {
        invite_as(&format!("h6-after-{i}")).expect("forwarded");
    }
    // L3: every key the relay wrote ends (the branch secret and the list
    // of owners, one each, aside).
    let keys = redis_cmd(redis_port, "KEYS sipseal:*");
    let keys: Vec<&str> = keys.lines().filter(|l| l.starts_with("sipseal:")).collect();
    assert!(keys.iter().any(|k| k.contains(":peer:")), "{keys:?}");
    for key in keys {
        if key.ends_with(":secret") || key == "sipseal:owners" {
            continue;
        }
        let ttl = redis_cmd(redis_port, &format!("TTL {key}"));
        let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
}

/// A Redis command, inline; the reply as it came.
fn redis_cmd(port: u16, cmd: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    c.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    shown(&out)
}

/// H4: over UDP the registrar answered a 150 B certificate query with
/// 4,350 B (29 times), 55,874 B after a CSR with 700 OU attributes (383
/// times), and a small REGISTER's 401 was 3.2 times it. Now nothing it
/// sends over UDP is over 3 times the request (the body is for TCP or
/// TLS), an absurd CSR is refused, and the subject comes from the AOR.
#[test]
fn the_registrar_sends_nothing_over_udp_above_three_times_the_request() {
    use common::realm::{Realm, Wire};
    let tmp = tempfile::tempdir().unwrap();
    let realm = Realm::new(tmp.path(), "example.com", &["alice"], false);
    let d = &realm.dir;
    let registrar = realm.registrar(
        common::s(&d.join("registry")),
        &["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
        &[],
    );
    let csr = |name: &str, subject: &str| {
        let path = d.join(format!("{name}.csr"));
        common::openssl()
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-keyout"])
            .arg(d.join(format!("{name}.key")))
            .args(["-subj", subject, "-addext"])
            .arg("subjectAltName=URI:sip:alice@example.com")
            .arg("-out")
            .arg(&path)
            .output()
            .unwrap();
        assert!(path.exists(), "openssl made {name}.csr");
        path
    };
    let register = |extra: &[&str]| {
        let mut wire = Wire::tcp(registrar.port("tcp"));
        let contact = format!("sip:alice@{}", wire.local());
        wire.send(&wire.own_via(&realm.register_request("alice", &contact, extra)));
        let challenge = wire.final_response().unwrap();
        assert_eq!(challenge.status(), Some(401));
        wire.send(&wire.own_via(&realm.authorized("alice", &contact, &challenge, extra)));
        wire.final_response().unwrap()
    };
    let huge = csr(
        "huge",
        &format!("{}/CN=alice@example.com", "/OU=x".repeat(1000)),
    );
    let refused = register(&["--csr", common::s(&huge)]);
    assert_eq!(refused.status(), Some(400), "{}", registrar.log_text());
    let evil = csr("evil", "/O=Evil Corp/CN=proxy-b.b.example.com");
    let ok = register(&["--csr", common::s(&evil)]);
    assert_eq!(ok.status(), Some(200), "{}", registrar.log_text());
    let text = shown(&ok.to_bytes());
    assert!(!text.contains("Evil Corp"), "the subject is the AOR's");

    let query = |via: &str| {
        format!(
            "OPTIONS sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bKq{}\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: q\r\nCSeq: 1 OPTIONS\r\nAccept: application/pkix-cert\r\nContent-Length: 0\r\n\r\n",
            via.len()
        )
        .into_bytes()
    };
    let client = udp(5);
    let via = client.local_addr().unwrap().to_string();
    let asked = query(&via);
    client
        .send_to(&asked, ("127.0.0.1", registrar.port("udp")))
        .unwrap();
    let answer = recv(&client).expect("an answer over UDP");
    assert!(answer.starts_with(b"SIP/2.0 200"), "{}", shown(&answer));
    assert!(
        answer.len() <= 3 * asked.len(),
        "{} B for {} B",
        answer.len(),
        asked.len()
    );
    // Over TCP the same query gets the certificate.
    let mut tcp = Wire::tcp(registrar.port("tcp"));
    let asked = query(&tcp.local().to_string());
    tcp.send(&asked);
    let full = tcp.final_response().unwrap();
    assert!(full.to_bytes().len() > 3 * asked.len());
    assert!(shown(&full.to_bytes()).contains("application/pkix-cert"));

    // A REGISTER as small as it gets: its 401 stays within 3 times too,
    // with a challenge in it.
    let small = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bKs\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: s\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@{via}>\r\nContent-Length: 0\r\n\r\n"
    );
    client
        .send_to(small.as_bytes(), ("127.0.0.1", registrar.port("udp")))
        .unwrap();
    let answer = recv(&client).expect("a 401");
    assert!(answer.starts_with(b"SIP/2.0 401"), "{}", shown(&answer));
    assert!(shown(&answer).contains("WWW-Authenticate: Digest"));
    assert!(
        answer.len() <= 3 * small.len(),
        "{} B for {} B",
        answer.len(),
        small.len()
    );
}

/// A TCP connection to the relay from `local` (any address of 127/8).
fn connect_from(local: &str, port: u16) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let from: SocketAddr = format!("{local}:0").parse().unwrap();
    s.bind(&from.into())?;
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// Whether the relay closed `s` (a read returns end of file or an error
/// within its timeout, not a timeout).
fn closed(s: &socket2::Socket) -> bool {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    match s.recv(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// M4: the idle timer restarted on every read, so 20 connections
/// trickling a byte every 3 s held a relay with --max-connections 20
/// full; nothing limited one address. Now a message must be whole within
/// --message-timeout of its first byte, and one address holds at most
/// --max-connections-per-ip: a new client from elsewhere gets in.
#[test]
fn tricklers_are_cut_off_and_one_address_cannot_take_every_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let relay = relay(
        d,
        "relay",
        &[
            "--max-connections",
            "8",
            "--max-connections-per-ip",
            "4",
            "--message-timeout",
            "1",
        ],
    );
    let port = relay.port("tcp");
    let mut tricklers: Vec<socket2::Socket> = (0..4)
        .map(|_| connect_from("127.0.0.1", port).unwrap())
        .collect();
    // A fifth from the same address is closed at once.
    let fifth = connect_from("127.0.0.1", port).unwrap();
    assert!(closed(&fifth), "the fifth connection from one address");
    // From another address, a client gets in and is served.
    let other = connect_from("127.0.0.2", port).unwrap();
    let ping = request(
        "OPTIONS",
        &format!("sip:127.0.0.1:{port}"),
        "m4-ping",
        "127.0.0.2:9",
        "",
        "",
    );
    socket2::Socket::send(&other, &ping).unwrap();
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let n = other.recv(&mut buf).expect("an answer from the relay");
    assert!(n > 0);
    // The tricklers: a byte every 300 ms; cut off after about 1 s.
    let started = Instant::now();
    let mut cut = 0;
    while started.elapsed() < Duration::from_secs(6) && cut < tricklers.len() {
        for t in &mut tricklers {
            if socket2::Socket::send(t, b"O").is_err() {
                continue;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        cut = tricklers
            .iter()
            .filter(|t| {
                t.set_nonblocking(true).unwrap();
                let c = closed(t);
                t.set_nonblocking(false).unwrap();
                c
            })
            .count();
    }
    assert_eq!(cut, tricklers.len(), "every trickler cut off");
    assert!(relay.logged("a message took over 1 s to arrive"));
}

/// M4: with the usual 1,024 files (256 here) a relay that kept its
/// default 10,000 connections ran out of descriptors: idle TCP
/// connections made every UDP request fail with `Too many open files`.
/// Now the relay lowers --max-connections to what fits, says so, and
/// UDP goes on whatever connections are open.
#[test]
fn connections_never_take_the_files_the_relay_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let next = udp(5);
    let next_port = next.local_addr().unwrap().port();
    let relay = common::live::Daemon::start_with_files(
        d,
        "relay",
        256,
        &[
            "relay",
            "--listen",
            "udp:127.0.0.1:0",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a-ec",
            "--no-dns",
            "--next",
            &format!("udp:127.0.0.1:{next_port}"),
        ],
    );
    assert!(
        relay
            .log_text()
            .contains("--max-connections 10000 lowered to"),
        "{}",
        relay.log_text()
    );
    let port = relay.port("tcp");
    let held: Vec<_> = (0..300)
        .filter_map(|i| connect_from(&format!("127.0.0.{}", 2 + i % 100), port).ok())
        .collect();
    assert!(held.len() >= 250, "{} connections", held.len());
    let client = udp(5);
    let via = client.local_addr().unwrap().to_string();
    for i in 0..3 {
        let id = format!("m4-files-{i}");
        let msg = request("MESSAGE", "sip:bob@b.example.com", &id, &via, "", "hi");
        client
            .send_to(&msg, ("127.0.0.1", relay.port("udp")))
            .unwrap();
        let got = recv(&next).unwrap_or_else(|| panic!("{id} forwarded\n{}", relay.log_text()));
        assert!(shown(&got).contains(&id));
    }
}

/// L3: unauthenticated messages filled the report file to 48 MB and the
/// pinhole file to 25 MB, without end. Now each starts afresh at
/// --rotate-at, the full one kept as FILE.1.
#[test]
fn the_report_file_starts_afresh_at_its_size() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let next = udp(5);
    let next_port = next.local_addr().unwrap().port();
    let report = d.join("report.jsonl");
    let relay = relay(
        d,
        "relay",
        &[
            "--next",
            &format!("udp:127.0.0.1:{next_port}"),
            "--report",
            common::s(&report),
            "--rotate-at",
            "4KiB",
        ],
    );
    let client = udp(5);
    let via = client.local_addr().unwrap().to_string();
    for i in 0..60 {
        let msg = request(
            "MESSAGE",
            "sip:bob@b.example.com",
            &format!("l3-{i}"),
            &via,
            "",
            "hi",
        );
        client
            .send_to(&msg, ("127.0.0.1", relay.port("udp")))
            .unwrap();
        recv(&next).expect("forwarded");
    }
    assert!(relay.logged("l3-59"));
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let old = d.join("report.jsonl.1");
    assert!(size(&report) <= 4096, "{} bytes", size(&report));
    assert!(size(&old) > 0 && size(&old) <= 4096, "{} bytes", size(&old));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&report).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// The review of this change: a next hop rewrote the `received`
/// and `rport` the relay had put on the Via below its own, and the relay
/// sent the response there (its own Redis, a third party): they are under
/// the branch's MAC now, and such a response is dropped.
#[test]
fn a_next_hop_cannot_point_a_response_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let next = udp(5);
    let next_port = next.local_addr().unwrap().port();
    let relay = relay(
        d,
        "relay",
        &["--next", &format!("udp:127.0.0.1:{next_port}")],
    );
    let client = udp(5);
    let victim = udp(1);
    let victim_port = victim.local_addr().unwrap().port();
    let real = client.local_addr().unwrap().port();
    let via = client.local_addr().unwrap().to_string();
    let msg = request("OPTIONS", "sip:bob@b.example.com", "steer", &via, "", "");
    client
        .send_to(&msg, ("127.0.0.1", relay.port("udp")))
        .unwrap();
    let forwarded = sipseal::sip::Message::parse(&recv(&next).expect("forwarded")).unwrap();
    let vias: Vec<String> = forwarded
        .header_values("Via")
        .iter()
        .map(|v| v.to_string())
        .collect();
    let mut steered = vias.clone();
    steered[1] = steered[1].replace(&format!("rport={real}"), &format!("rport={victim_port}"));
    assert_ne!(steered[1], vias[1]);
    next.send_to(
        ok_on(&steered, "steer").as_bytes(),
        ("127.0.0.1", relay.port("udp")),
    )
    .unwrap();
    assert_eq!(
        recv(&victim).map(|b| shown(&b)),
        None,
        "nothing to the victim"
    );
    next.send_to(
        ok_on(&vias, "steer").as_bytes(),
        ("127.0.0.1", relay.port("udp")),
    )
    .unwrap();
    let back = recv(&client).expect("the honest 200 comes back");
    assert!(back.starts_with(b"SIP/2.0 200"));
}
