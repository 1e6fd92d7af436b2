//! Live operation (docs/SPEC.md §7) with the real tools: a SIPp call through two
//! `sipseal relay` processes over TCP (one designated, one blind),
//! captured on the loopback and dissected by tshark; mutual TLS with
//! `sipseal send` and `openssl s_client`; the no-amplification rule over
//! UDP; malformed input answered 400 on its connection.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::live::{Background, Daemon, header, hosts, port, sealed_call, split, tshark};
use common::{Succeeds, s, sipseal, text, write};

const CTYPE: &str = "application/pkcs7-mime; smime-type=authEnveloped-data; name=smime.p7m";

/// What SIPp sends: the sealed INVITE's headers and body sizes.
struct Call {
    pib: String,
    cid: String,
    invite_body: usize,
}

/// alice's INVITE sealed for bob and proxy-a (designated), bob's sealed
/// 200 OK from `sipseal reply`: their bodies in `body.der` and
/// `reply.der`, for SIPp.
fn prepare_call(d: &Path, call_id: &str) -> Call {
    let call = sealed_call(d, call_id);
    let (head, body) = split(&call.invite);
    write(d, "body.der", &body);
    let (answer_head, answer_body) = split(&call.answer);
    assert_eq!(header(&answer_head, "Content-Type"), CTYPE);
    write(d, "reply.der", &answer_body);
    Call {
        pib: header(&head, "Proxy-Inspect-Body").to_owned(),
        cid: header(&head, "Content-ID").to_owned(),
        invite_body: body.len(),
    }
}

fn sipp(d: &Path, args: &[&str]) -> Background {
    let child = Command::new("sipp")
        .args(args)
        .args(["-i", "127.0.0.1", "-t", "t1", "-m", "1", "-nostdin"])
        .args(["-timeout", "20s", "-timeout_error"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp runs (.ci/run installs sip-tester)");
    Background(child)
}

/// tshark capturing the loopback on `ports` into `file`, once it runs.
fn capture(d: &Path, file: &Path, ports: &[u16]) -> Background {
    let filter = ports
        .iter()
        .map(|p| format!("tcp port {p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    tshark(d, &filter, file)
}

#[test]
fn a_sipp_call_crosses_a_designated_and_a_blind_relay_and_tshark_reads_every_message() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let call = prepare_call(d, "live-call-1@a.example.com");
    let (uac_port, uas_port) = (port(30_000, 0), port(30_000, 1));
    let bindings = write(
        d,
        "bindings.yaml",
        b"sip:alice@a.example.com: [\"127.0.0.1\"]\n",
    );
    let (report, pinholes) = (d.join("report.jsonl"), d.join("pinholes.nft"));
    // proxy-b: blind (no RecipientInfo for it), forwards by Request-URI.
    let mut b = Daemon::start(
        d,
        "proxy-b",
        &[
            "relay",
            // Its next hops (user agents, SIPp, Kamailio) are on the loopback.
            "--hop-allow",
            "127.0.0.0/8",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-b-ec",
        ],
    );
    let b_port = b.port("tcp");
    // proxy-a: designated; opens, keeps pinholes, Record-Routes, and sends
    // everything on to proxy-b.
    let next = format!("tcp:127.0.0.1:{b_port}");
    let mut a = Daemon::start(
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
            "--record-route",
            "--bindings",
            s(&bindings),
            "--report",
            s(&report),
            "--pinholes",
            s(&pinholes),
        ],
    );
    let a_port = a.port("tcp");
    let pcap = d.join("call.pcapng");
    let mut tshark = capture(d, &pcap, &[uac_port, uas_port, a_port, b_port]);
    let scenarios = common::repo().join("samples/sipp");
    let mut uas = sipp(
        d,
        &[
            "-sf",
            s(&scenarios.join("uas-sealed.xml")),
            "-p",
            &uas_port.to_string(),
            "-key",
            "ctype",
            CTYPE,
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let target = format!("sip:bob@127.0.0.1:{uas_port};transport=tcp");
    let mut uac = sipp(
        d,
        &[
            &format!("127.0.0.1:{a_port}"),
            "-sf",
            s(&scenarios.join("uac-sealed.xml")),
            "-p",
            &uac_port.to_string(),
            "-cid_str",
            "live-call-1@a.example.com",
            "-key",
            "target",
            &target,
            "-key",
            "pib",
            &call.pib,
            "-key",
            "cid",
            &call.cid,
            "-key",
            "ctype",
            CTYPE,
        ],
    );
    let uac_exit = uac.wait(30);
    let uas_exit = uas.wait(10);
    let log_a = a.stop();
    b.stop();
    assert_eq!(
        (uac_exit, uas_exit),
        (Some(0), Some(0)),
        "SIPp failed calls\nproxy-a:\n{log_a}\nproxy-b:\n{}",
        b.log_text()
    );

    // Every message passed both relays, each hop's log says so.
    for (name, relay) in [("proxy-a", &a), ("proxy-b", &b)] {
        let lines = relay.log_lines();
        // As a set: each connection logs from its own task.
        let mut seen: Vec<(String, Option<u64>)> = lines
            .iter()
            .map(|l| {
                (
                    l["method"].as_str().unwrap_or_default().to_owned(),
                    l["status"].as_u64(),
                )
            })
            .collect();
        let expected: Vec<(String, Option<u64>)> = [
            ("INVITE", None),
            ("INVITE", Some(180)),
            ("INVITE", Some(200)),
            ("ACK", None),
            ("BYE", None),
            ("BYE", Some(200)),
        ]
        .iter()
        .map(|(m, c)| (m.to_string(), *c))
        .collect();
        seen.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(seen, expected, "{name}: {}", relay.log_text());
        assert!(
            lines
                .iter()
                .all(|l| l["decision"].as_str().unwrap().starts_with("forward TCP")),
            "{name}: {}",
            relay.log_text()
        );
    }
    assert!(log_a.contains("relay: stopped"), "{log_a}");

    // proxy-a opened the offer (designated) and the answer (session key),
    // and its pinholes followed the call: offer, answer, BYE.
    let reports: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 6);
    assert_eq!(reports[0]["decision"], "designated");
    assert_eq!(reports[0]["opened"], true);
    assert_eq!(reports[2]["status"], 200);
    assert_eq!(reports[2]["decision"], "session");
    assert_eq!(reports[2]["opened"], true);
    let nft = std::fs::read_to_string(&pinholes).unwrap();
    let states: Vec<&str> = nft.lines().filter(|l| l.starts_with("# state:")).collect();
    assert_eq!(
        states,
        [
            "# state: offer seen, answer pending",
            "# state: offer and answer",
            "# state: call ended: pinholes removed"
        ],
        "{nft}"
    );
    assert!(nft.contains("add element inet sipseal media4 { 192.0.2.10 . udp . 49170"));
    // Once answered, each side only from the other's address.
    assert!(
        nft.contains(
            "delete element inet sipseal pair4 { 192.0.2.10 . 198.51.100.20 . udp . 3456 }"
        )
    );
    // The pinhole script is valid nftables (where nft can check it).
    if Path::new("/usr/sbin/nft").exists() {
        let check = Command::new("/usr/sbin/nft")
            .args(["-c", "-f", s(&pinholes)])
            .output()
            .unwrap();
        assert!(check.status.success(), "{}", text(&check));
    }
    // The report file may hold SRTP keys: 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&report).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // tshark dissects every message of the call on every hop, and the
    // sealed INVITE's Content-Length is its body's.
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-INT", &tshark.0.id().to_string()])
        .status();
    tshark.wait(10);
    let mut dissect = Command::new("tshark");
    dissect.args(["-r", s(&pcap)]);
    for p in [uac_port, uas_port, a_port, b_port] {
        dissect.args(["-d", &format!("tcp.port=={p},sip")]);
    }
    let out = dissect
        .args(["-Y", "sip", "-T", "fields", "-E", "occurrence=a"])
        .args([
            "-e",
            "sip.CSeq",
            "-e",
            "sip.Status-Code",
            "-e",
            "sip.Content-Length",
        ])
        .succeeds();
    let fields = String::from_utf8(out.stdout).unwrap();
    // A frame may carry several messages: each field lists them all.
    let mut cseqs = Vec::new();
    let mut lengths = Vec::new();
    for line in fields.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        cseqs.extend(cols[0].split(',').map(str::to_owned));
        lengths.extend(cols.get(2).unwrap_or(&"").split(',').map(str::to_owned));
    }
    let count = |c: &str| cseqs.iter().filter(|x| x.as_str() == c).count();
    // Three hops each way: UAC-A, A-B, B-UAS.
    assert_eq!(count("1 INVITE"), 9, "INVITE, 180, 200 on 3 hops: {fields}");
    assert_eq!(count("1 ACK"), 3, "{fields}");
    assert_eq!(count("2 BYE"), 6, "{fields}");
    assert_eq!(
        lengths
            .iter()
            .filter(|l| **l == call.invite_body.to_string())
            .count(),
        3,
        "the sealed INVITE on each hop: {fields}"
    );
    let malformed = Command::new("tshark")
        .args([
            "-r",
            s(&pcap),
            "-Y",
            "_ws.malformed || _ws.expert.severity >= error",
        ])
        .succeeds();
    assert!(
        malformed.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&malformed.stdout)
    );
    // What the relays sent on (to proxy-b's port, to the UAS's): every Via
    // but the relay's own on top carries received= and rport= (RFC 3261
    // §18.2.1, RFC 3581), and every Record-Route its transport.
    let mut sent = Command::new("tshark");
    sent.args(["-r", s(&pcap)]);
    for p in [uac_port, uas_port, a_port, b_port] {
        sent.args(["-d", &format!("tcp.port=={p},sip")]);
    }
    let filter = format!("sip.Method && (tcp.dstport == {b_port} || tcp.dstport == {uas_port})");
    let out = sent
        .args(["-Y", &filter, "-T", "fields", "-E", "occurrence=a"])
        .args(["-E", "aggregator=|", "-e", "sip.Method", "-e", "sip.Via"])
        .args(["-e", "sip.Record-Route"])
        .succeeds();
    let fields = String::from_utf8(out.stdout).unwrap();
    let (mut requests, mut unmarked, mut vias, mut rrs) = (0, 0, 0, Vec::new());
    for line in fields.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        requests += cols[0].split('|').count();
        for via in cols[1].split('|') {
            vias += 1;
            if !(via.contains("received=127.0.0.1") && via.contains("rport=")) {
                unmarked += 1;
            }
        }
        rrs.extend(
            cols.get(2)
                .unwrap_or(&"")
                .split('|')
                .filter(|r| !r.is_empty()),
        );
    }
    assert_eq!(
        requests, 6,
        "INVITE, ACK and BYE to proxy-b and to the UAS: {fields}"
    );
    assert_eq!(
        unmarked, requests,
        "only each relay's own Via: {vias} Vias\n{fields}"
    );
    assert!(!rrs.is_empty(), "{fields}");
    assert!(rrs.iter().all(|r| r.contains(";transport=tcp")), "{rrs:?}");
    let _ = hosts;
}

/// A next hop on UDP that answers up to `n` requests 200 OK (to their Via
/// sent-by, as RFC 3261 §18.2.2 says) and hands back what it received.
fn responder(n: usize) -> (u16, std::thread::JoinHandle<Vec<sipseal::sip::Message>>) {
    responder_at("127.0.0.1:0", n)
}

/// [`responder`] on `addr`.
fn responder_at(
    addr: &str,
    n: usize,
) -> (u16, std::thread::JoinHandle<Vec<sipseal::sip::Message>>) {
    responder_editing(addr, n, |_| {})
}

/// [`responder_at`], each 200 OK changed by `edit` before it goes.
fn responder_editing(
    addr: &str,
    n: usize,
    edit: fn(&mut sipseal::sip::Message),
) -> (u16, std::thread::JoinHandle<Vec<sipseal::sip::Message>>) {
    use sipseal::sip::Message;
    use sipseal::sip::compose::{ResponseParams, build_response};
    let socket = std::net::UdpSocket::bind(addr).unwrap();
    let port = socket.local_addr().unwrap().port();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let handle = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_535];
        let mut ctx = sipseal::context::Context::new(None, None);
        while got.len() < n {
            let Ok((len, _)) = socket.recv_from(&mut buf) else {
                break;
            };
            let msg = Message::parse(&buf[..len]).unwrap();
            let via = msg.top_via().unwrap();
            let params = ResponseParams {
                code: 200,
                ..Default::default()
            };
            let mut ok = build_response(&msg, &params, &mut ctx).unwrap();
            edit(&mut ok);
            socket.send_to(&ok.to_bytes(), via.sent_by()).unwrap();
            got.push(msg);
        }
        got
    });
    (port, handle)
}

fn options(d: &Path, name: &str, from: &str) -> std::path::PathBuf {
    let msg = sipseal()
        .args(["build", "options", "--from", from])
        .args(["--to", "sip:bob@b.example.com"])
        .succeeds()
        .stdout;
    write(d, name, &msg)
}

#[test]
fn mutual_tls_authenticates_both_ends_and_sets_level_3() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (next_port, answered) = responder(1);
    let next = format!("udp:127.0.0.1:{next_port}");
    let relay = Daemon::start(
        d,
        "relay",
        &[
            "relay",
            "--listen",
            "tls:127.0.0.1:0",
            "--listen",
            "udp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a-ec",
            "--trust",
            "keys/trust.pem",
            "--next",
            &next,
        ],
    );
    let tls_port = relay.port("tls");
    let udp_port = relay.port("udp");
    let hosts = hosts(
        d,
        &[
            ("proxy-a.a.example.com", tls_port),
            ("proxy-b.b.example.com", tls_port),
        ],
    );
    let to_proxy_a = "sip:proxy-a.a.example.com;transport=tls";
    let send = |msg: &Path, next: &str, identity: Option<&str>| {
        let mut cmd = sipseal();
        cmd.args(["send", s(msg), "--next", next, "--hosts", s(&hosts)])
            .args(["--trust", "keys/trust.pem", "--timeout", "10"]);
        if let Some(id) = identity {
            cmd.args(["--identity", id]);
        }
        cmd.output().unwrap()
    };

    // alice, with her certificate: through, and the relay vouches for
    // the link (level 3) in the Route-Security entry it puts for her.
    let alice = options(d, "alice.sip", "sip:alice@a.example.com");
    let out = send(&alice, to_proxy_a, Some("keys/alice"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        relay.log_text()
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("SIP/2.0 200 OK"));
    let forwarded = answered.join().unwrap();
    let entries = forwarded[0].header_list("Route-Security");
    assert_eq!(
        entries,
        [
            format!("127.0.0.1:{udp_port};level=0"),
            "127.0.0.1;level=3".to_owned(),
        ],
        "the UDP link on, on top of the TLS link from alice"
    );
    let via = forwarded[0].top_via().unwrap();
    assert_eq!(via.transport, "UDP");
    assert_eq!(via.sent_by(), format!("127.0.0.1:{udp_port}"));
    assert!(relay.logged("peer_cert"), "{}", relay.log_text());
    // The request's line (the 200's may come first: another task).
    let log = relay.log_lines();
    let request = log.iter().find(|l| l["status"].is_null()).unwrap();
    assert_eq!(request["peer_cert"], "sip:alice@a.example.com");

    // alice's certificate, bob's From: the imposture check answers 403.
    let bob = options(d, "bob.sip", "sip:bob@a.example.com");
    let out = send(&bob, to_proxy_a, Some("keys/alice"));
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("SIP/2.0 403"));

    // No client certificate: refused (TLS 1.3 says so after the
    // client's Finished, so send sees the connection end).
    let out = send(&alice, to_proxy_a, None);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty());

    // The relay is proxy-a: a client that routes to proxy-b refuses it
    // (RFC 5922: the certificate must name the domain routed to).
    let out = send(
        &alice,
        "sip:proxy-b.b.example.com;transport=tls",
        Some("keys/alice"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("proxy-b.b.example.com"),
        "{}",
        text(&out)
    );

    // openssl s_client: no certificate, then one no trust anchor issued.
    let selfsigned_key = d.join("mallory.key");
    let selfsigned = d.join("mallory.pem");
    common::openssl()
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=mallory"])
        .args(["-addext", "subjectAltName=URI:sip:alice@a.example.com"])
        .args(["-keyout", s(&selfsigned_key), "-out", s(&selfsigned)])
        .succeeds();
    let options_bytes = std::fs::read(&alice).unwrap();
    for (case, extra) in [
        ("no certificate", vec![]),
        (
            "an untrusted certificate",
            vec!["-cert", s(&selfsigned), "-key", s(&selfsigned_key)],
        ),
    ] {
        let mut child = common::openssl()
            .args(["s_client", "-connect", &format!("127.0.0.1:{tls_port}")])
            .args(["-servername", "proxy-a.a.example.com", "-quiet"])
            .args(&extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&options_bytes);
        std::thread::sleep(Duration::from_millis(500));
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("SIP/2.0"),
            "{case}: {}",
            text(&out)
        );
        assert!(text(&out).contains("alert"), "{case}: {}", text(&out));
    }
    let refused = || {
        relay
            .log_lines()
            .iter()
            .filter(|l| l.get("refused").is_some())
            .count()
    };
    let until = Instant::now() + Duration::from_secs(10);
    while refused() < 3 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = refused();
    assert!(refused >= 3, "{}", relay.log_text());
}

#[test]
fn udp_answers_stay_small_and_tcp_garbage_gets_400_on_its_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let relay = Daemon::start(
        d,
        "relay",
        &[
            "relay",
            "--listen",
            "udp:127.0.0.1:0",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-b",
        ],
    );
    // A small sealed request that designates the relay without a
    // RecipientInfo for it (a hostile datagram from a spoofed source
    // would look like this): 496, which carries the relay's certificate.
    let small = write(d, "small.txt", b"x");
    let plain = sipseal()
        .args(["build", "message", "--from", "sip:a@a.example.com"])
        .args(["--to", "sip:b@b.example.com", "--body", s(&small)])
        .args(["--content-type", "text/plain"])
        .succeeds()
        .stdout;
    let plain = write(d, "message.sip", &plain);
    let sealed = sipseal()
        .args([
            "seal",
            s(&plain),
            "--disclose",
            "psk:keys/psk/alice-proxy-a.yaml",
            "--no-peer",
        ])
        .args(["--designate", "sip:proxy-b.b.example.com"])
        .succeeds()
        .stdout;
    let (_, cms) = split(&sealed);
    let mut request = format!(
        "MESSAGE sip:b SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK1\r\nf: <sip:a@a>;tag=1\r\nt: <sip:b@b>\r\ni: x\r\nCSeq: 1 MESSAGE\r\nProxy-Inspect-Body: <sip:proxy-b.b.example.com>\r\nc: application/pkcs7-mime\r\nl: {}\r\n\r\n",
        cms.len()
    )
    .into_bytes();
    request.extend_from_slice(&cms);
    let size = request.len();

    use std::io::{Read, Write};
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    udp.send_to(&request, ("127.0.0.1", relay.port("udp")))
        .unwrap();
    let mut buf = vec![0u8; 65_535];
    let n = udp.recv(&mut buf).expect("an answer over UDP");
    let over_udp = buf[..n].to_vec();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", relay.port("tcp"))).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(&request).unwrap();
    let mut over_tcp = vec![0u8; 65_535];
    let n = conn.read(&mut over_tcp).unwrap();
    over_tcp.truncate(n);
    drop(conn);
    let shown = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(over_udp.starts_with(b"SIP/2.0 496"), "{}", shown(&over_udp));
    assert!(over_tcp.starts_with(b"SIP/2.0 496"), "{}", shown(&over_tcp));
    // Over TCP the 496 carries the certificate, more than 3 times the
    // request; over UDP that would amplify, so it goes without.
    assert!(over_tcp.len() > 3 * size, "{} vs {size}", over_tcp.len());
    assert!(shown(&over_tcp).contains("application/pkix-cert"));
    assert!(over_udp.len() <= 3 * size, "{} vs {size}", over_udp.len());
    assert!(!shown(&over_udp).contains("application/pkix-cert"));
    assert!(shown(&over_udp).contains("Content-Length: 0"));
    assert!(shown(&over_udp).contains("Warning: 380"));

    // Bytes that are not SIP on a TCP connection: 400 when a Via and
    // CSeq can be read, then the connection closes; the relay lives on.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", relay.port("tcp"))).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(
        b"INVITE sip:bob@b.example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKx\r\nCSeq: 1 INVITE\r\nContent-Length: 99999999\r\n\r\n",
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"SIP/2.0 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", relay.port("tcp"))).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(&request).unwrap();
    let mut again = vec![0u8; 65_535];
    let n = conn.read(&mut again).unwrap();
    assert!(
        again[..n].starts_with(b"SIP/2.0 496"),
        "{}",
        shown(&again[..n])
    );
}

#[test]
fn a_config_file_starts_the_relay_and_sighup_reloads_its_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (next_port, answered) = responder(1);
    let policy = write(
        d,
        "policy.yaml",
        b"allow:\n  - from: \"sip:*@a.example.com\"\n    to: \"sip:*@b.example.com\"\n",
    );
    let config = write(
        d,
        "relay.yaml",
        format!(
            "listen: [udp:127.0.0.1:0]\nidentity: keys/proxy-a-ec\nnext: udp:127.0.0.1:{next_port}\npolicy: {}\nrate-limit: 1000\n",
            s(&policy)
        )
        .as_bytes(),
    );
    let relay = Daemon::start(d, "relay", &["relay", "--config", s(&config)]);
    let to_relay = format!("udp:127.0.0.1:{}", relay.port("udp"));
    let alice = options(d, "alice.sip", "sip:alice@a.example.com");
    let send = || {
        sipseal()
            .args(["send", s(&alice), "--next", &to_relay, "--timeout", "5"])
            .output()
            .unwrap()
    };
    let out = send();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        relay.log_text()
    );
    assert_eq!(answered.join().unwrap().len(), 1);

    // The policy now lets no one from a.example.com through: after SIGHUP
    // alice gets the 404 a denied caller gets.
    std::fs::write(
        &policy,
        b"allow:\n  - from: \"sip:*@c.example.com\"\n    to: \"sip:*@b.example.com\"\n",
    )
    .unwrap();
    relay.signal("HUP");
    let until = Instant::now() + Duration::from_secs(10);
    while !relay.log_text().contains("reloaded") {
        assert!(Instant::now() < until, "{}", relay.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = send();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("SIP/2.0 404"));
    // A policy that does not read is refused, and the last good one stays.
    std::fs::write(&policy, b"allow: [nonsense\n").unwrap();
    relay.signal("HUP");
    let until = Instant::now() + Duration::from_secs(10);
    while !relay.log_text().contains("reload refused") {
        assert!(Instant::now() < until, "{}", relay.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(send().status.code(), Some(5));
}

#[test]
fn a_source_over_its_rate_is_dropped_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let next = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    next.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let relay = Daemon::start(
        d,
        "relay",
        &[
            "relay",
            "--listen",
            "udp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a-ec",
            "--next",
            &format!("udp:127.0.0.1:{}", next.local_addr().unwrap().port()),
            "--rate-limit",
            "5",
        ],
    );
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let alice = std::fs::read(options(d, "alice.sip", "sip:alice@a.example.com")).unwrap();
    let alice = String::from_utf8(alice).unwrap();
    for i in 0..40 {
        // Each one its own transaction (a new branch), sent at once.
        let msg = alice.replacen(";branch=z9hG4bK", &format!(";branch=z9hG4bK{i}x"), 1);
        client
            .send_to(msg.as_bytes(), ("127.0.0.1", relay.port("udp")))
            .unwrap();
    }
    let mut buf = vec![0u8; 65_535];
    let mut forwarded = 0;
    while next.recv(&mut buf).is_ok() {
        forwarded += 1;
    }
    // A burst of 5, and what refills while the 40 arrive.
    assert!((5..=10).contains(&forwarded), "{forwarded} forwarded");
    let dropped = relay
        .log_lines()
        .iter()
        .filter(|l| {
            l["decision"]
                .as_str()
                .is_some_and(|d| d.contains("rate limit"))
        })
        .count();
    assert_eq!(dropped + forwarded, 40, "{}", relay.log_text());
}

#[test]
fn ipv6_listeners_relay_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (next_port, answered) = responder_at("[::1]:0", 2);
    let relay = Daemon::start(
        d,
        "relay",
        &[
            "relay",
            "--listen",
            "udp:[::1]:0",
            "--listen",
            "tcp:[::1]:0",
            "--identity",
            "keys/proxy-a-ec",
            "--next",
            &format!("udp:[::1]:{next_port}"),
        ],
    );
    let alice = options(d, "alice.sip", "sip:alice@a.example.com");
    for transport in ["udp", "tcp"] {
        let next = format!("{transport}:[::1]:{}", relay.port(transport));
        let out = sipseal()
            .args(["send", s(&alice), "--next", &next, "--timeout", "5"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{next}: {}\n{}",
            text(&out),
            relay.log_text()
        );
    }
    let forwarded = answered.join().unwrap();
    let via = forwarded[0].top_via().unwrap();
    assert_eq!(via.sent_by(), format!("[::1]:{}", relay.port("udp")));
}

#[test]
fn an_idle_connection_is_closed_and_a_ping_gets_its_pong() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let relay = Daemon::start(
        tmp.path(),
        "relay",
        &[
            "relay",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a-ec",
            "--idle-timeout",
            "1",
        ],
    );
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", relay.port("tcp"))).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // RFC 5626: a double-CRLF ping gets a CRLF pong.
    conn.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    conn.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");
    // Then nothing for a second: the relay closes it.
    let started = Instant::now();
    let mut rest = Vec::new();
    let n = conn.read_to_end(&mut rest).unwrap();
    assert_eq!(n, 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[test]
fn names_resolve_through_the_resolver_unless_dns_is_off() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (next_port, answered) = responder(1);
    // `localhost` comes from the system's hosts file, as the resolver reads it.
    let next = format!("sip:localhost:{next_port};transport=udp");
    let alice = options(d, "alice.sip", "sip:alice@a.example.com");
    let with_dns = Daemon::start(
        d,
        "relay",
        &[
            "relay",
            "--listen",
            "udp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a-ec",
            "--next",
            &next,
        ],
    );
    let out = sipseal()
        .args([
            "send",
            s(&alice),
            "--next",
            &format!("udp:127.0.0.1:{}", with_dns.port("udp")),
        ])
        .args(["--timeout", "5"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        with_dns.log_text()
    );
    assert_eq!(answered.join().unwrap().len(), 1);
    // Without DNS, a name the hosts table lacks cannot be reached: 503.
    let without = Daemon::start(
        d,
        "relay-no-dns",
        &[
            "relay",
            "--listen",
            "udp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a-ec",
            "--next",
            &next,
            "--no-dns",
        ],
    );
    let out = sipseal()
        .args([
            "send",
            s(&alice),
            "--next",
            &format!("udp:127.0.0.1:{}", without.port("udp")),
        ])
        .args(["--timeout", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("SIP/2.0 503"));
    assert!(without.logged("DNS is off"), "{}", without.log_text());
}

#[test]
fn the_registrar_serves_tls_and_tcp() {
    // REGISTER with a CSR over mutually authenticated TLS (Digest, then
    // the certificate), then a certificate query over TCP.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = |args: &[&str]| sipseal().current_dir(d).args(args).succeeds();
    run(&["keys", "ca", "--name", "CN=Example CA", "--out", "ca"]);
    // The registrar signs its 200s with RSA; alice's key is P-256.
    run(&[
        "keys",
        "generate",
        "--uri",
        "sip:registrar.example.com",
        "--ca",
        "ca",
        "--out",
        "reg",
    ]);
    run(&[
        "keys",
        "generate",
        "--type",
        "p256",
        "--uri",
        "sip:alice@example.com",
        "--ca",
        "ca",
        "--out",
        "alice",
    ]);
    write(d, "pw", b"alice-pw\n");
    run(&[
        "registrar",
        "passwd",
        "--users",
        "users.yaml",
        "--realm",
        "example.com",
        "--user",
        "sip:alice@example.com",
        "--password-file",
        "pw",
    ]);
    let register = run(&[
        "register",
        "--uri",
        "sip:alice@example.com",
        "--contact",
        "sip:alice@127.0.0.1:5066",
        "--identity",
        "alice",
    ])
    .stdout;
    let reg = write(d, "register.sip", &register);
    let ca = d.join("ca/cert.pem");
    let registrar = Daemon::start(
        d,
        "registrar",
        &[
            "registrar",
            "--listen",
            "tls:127.0.0.1:0",
            "--listen",
            "tcp:127.0.0.1:0",
            "--trust",
            s(&ca),
            "--realm",
            "example.com",
            "--ca",
            s(&d.join("ca")),
            "--identity",
            s(&d.join("reg")),
            "--users",
            s(&d.join("users.yaml")),
            "--state",
            s(&d.join("registrar-state")),
        ],
    );
    let hosts = hosts(d, &[("registrar.example.com", registrar.port("tls"))]);
    let out = sipseal()
        .args([
            "send",
            s(&reg),
            "--next",
            "sip:registrar.example.com;transport=tls",
        ])
        .args(["--hosts", s(&hosts), "--identity", s(&d.join("alice"))])
        .args([
            "--trust",
            s(&ca),
            "--password-file",
            s(&d.join("pw")),
            "--timeout",
            "10",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        registrar.log_text()
    );
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(shown.starts_with("SIP/2.0 401"), "{shown}");
    assert!(shown.contains("SIP/2.0 200 OK"), "{shown}");
    assert!(shown.contains("smime-type=certs-only"), "{shown}");
    assert!(registrar.logged("certificate"), "{}", registrar.log_text());
    let log = registrar.log_lines();
    assert_eq!(log[0]["transport"], "TLS");
    assert_eq!(log[0]["peer_cert"], "sip:alice@example.com");

    let query = run(&["certquery", "--uri", "sip:alice@example.com"]).stdout;
    let query = write(d, "query.sip", &query);
    let out = sipseal()
        .args([
            "send",
            s(&query),
            "--next",
            &format!("tcp:127.0.0.1:{}", registrar.port("tcp")),
        ])
        .args(["--timeout", "10"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        registrar.log_text()
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("SIP/2.0 200 OK"));
}

/// A `--hosts` line with a transport (`tcp:ADDRESS:PORT NAME`) is that
/// name's server on TCP alone: a small request for it goes over TCP, not
/// over UDP to DNS.
#[test]
fn a_hosts_line_for_tcp_alone_sends_a_small_request_over_tcp() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (sink, forwarded) = common::live::tcp_sink();
    let hosts = write(
        d,
        "hosts",
        format!("tcp:127.0.0.1:{sink} b.example.com\n").as_bytes(),
    );
    let relay = Daemon::start(
        d,
        "relay",
        &[
            "relay",
            "--listen",
            "tcp:127.0.0.1:0",
            "--listen",
            "udp:127.0.0.1:0",
            "--identity",
            "keys/proxy-b-ec",
            "--hosts",
            s(&hosts),
            "--no-dns",
            "--next",
            "sip:b.example.com",
        ],
    );
    let msg = std::fs::read(options(d, "options", "sip:alice@a.example.com")).unwrap();
    assert!(msg.len() < 1_300);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(&msg, ("127.0.0.1", relay.port("udp"))).unwrap();
    let got = forwarded
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("nothing over TCP: {}", relay.log_text()));
    assert_eq!(got.top_via().unwrap().transport, "TCP");
    assert!(
        relay.logged(r#""decision":"forward TCP"#),
        "{}",
        relay.log_text()
    );
}

#[test]
fn a_request_over_1300_bytes_goes_on_over_tcp_even_toward_udp() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // RSA recipients: well over 1,300 bytes.
    let invite = common::seal_invite(
        "b160",
        &[
            "--peer",
            "keys/bob/cert.pem",
            "--disclose",
            "keys/proxy-a/cert.pem",
        ],
    );
    assert!(invite.len() > 1_300);
    // The next hop listens on TCP; --next names UDP (RFC 3261 §18.1.1).
    let (sink, forwarded) = common::live::tcp_sink();
    let relay = Daemon::start(
        d,
        "relay",
        &[
            "relay",
            "--listen",
            "tcp:127.0.0.1:0",
            "--listen",
            "udp:127.0.0.1:0",
            "--identity",
            "keys/proxy-b-ec",
            "--next",
            &format!("udp:127.0.0.1:{sink}"),
        ],
    );
    std::net::TcpStream::connect(("127.0.0.1", relay.port("tcp")))
        .unwrap()
        .write_all(&invite)
        .unwrap();
    let msg = forwarded.recv_timeout(Duration::from_secs(10)).unwrap();
    let via = msg.top_via().unwrap();
    // Its Via names the transport it leaves on, and that listener.
    assert_eq!(via.transport, "TCP");
    assert_eq!(via.sent_by(), format!("127.0.0.1:{}", relay.port("tcp")));
    assert!(
        relay.logged(r#""decision":"forward TCP"#),
        "{}",
        relay.log_text()
    );
}

#[test]
fn two_relays_talk_over_mutual_tls_and_the_link_is_level_3() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (next_port, answered) = responder(1);
    let b = Daemon::start(
        d,
        "proxy-b",
        &[
            "relay",
            "--listen",
            "tls:127.0.0.1:0",
            "--listen",
            "udp:127.0.0.1:0",
            "--identity",
            "keys/proxy-b",
            "--trust",
            "keys/trust.pem",
            "--next",
            &format!("udp:127.0.0.1:{next_port}"),
        ],
    );
    let hosts = hosts(d, &[("proxy-b.b.example.com", b.port("tls"))]);
    let a = Daemon::start(
        d,
        "proxy-a",
        &[
            "relay",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a",
            "--trust",
            "keys/trust.pem",
            "--hosts",
            s(&hosts),
            "--next",
            "sip:proxy-b.b.example.com;transport=tls",
        ],
    );
    let alice = options(d, "alice.sip", "sip:alice@a.example.com");
    let out = sipseal()
        .args([
            "send",
            s(&alice),
            "--next",
            &format!("tcp:127.0.0.1:{}", a.port("tcp")),
        ])
        .args(["--timeout", "10"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nproxy-a:\n{}\nproxy-b:\n{}",
        text(&out),
        a.log_text(),
        b.log_text()
    );
    // proxy-b saw proxy-a's certificate; the 200 went back on that link.
    assert!(b.logged(r#""status":200"#), "{}", b.log_text());
    let b_log = b.log_lines();
    let request = b_log.iter().find(|l| l["status"].is_null()).unwrap();
    assert_eq!(request["transport"], "TLS");
    assert_eq!(request["peer_cert"], "sip:proxy-a.a.example.com");
    let forwarded = answered.join().unwrap();
    let entries = forwarded[0].header_list("Route-Security");
    let a_port = a.port("tcp");
    assert_eq!(
        entries,
        [
            // proxy-b's link on (UDP), on top.
            format!("127.0.0.1:{};level=0", b.port("udp")),
            // proxy-a's link to proxy-b: TLS, both ends authenticated.
            format!("127.0.0.1:{a_port};level=3"),
            // alice's link to proxy-a: plain TCP, and she wrote no
            // entry: an unchecked link, without a level.
            "127.0.0.1".to_owned(),
        ]
    );
}

#[test]
fn a_retransmission_and_a_cancel_leave_with_the_invites_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let next = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    next.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let relay = Daemon::start(
        d,
        "relay",
        &[
            "relay",
            "--listen",
            "udp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a-ec",
            "--next",
            &format!("udp:127.0.0.1:{}", next.local_addr().unwrap().port()),
        ],
    );
    let invite = sipseal()
        .args(["build", "invite", "--from", "sip:alice@a.example.com"])
        .args(["--to", "sip:bob@b.example.com"])
        .succeeds()
        .stdout;
    let invite = sipseal::sip::Message::parse(&invite).unwrap();
    // RFC 3261 §9.1: the CANCEL has the INVITE's Request-URI, Call-ID,
    // From, To, CSeq number and top Via, and no body.
    let mut cancel = invite.clone();
    cancel.set_start_line(sipseal::sip::message::StartLine::Request {
        method: "CANCEL".into(),
        uri: invite.request_uri().unwrap().to_owned(),
    });
    cancel.set_header("CSeq", "1 CANCEL");
    cancel.remove_headers("Contact");
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut branches = Vec::new();
    let mut buf = vec![0u8; 65_535];
    for msg in [&invite, &invite, &cancel] {
        client
            .send_to(&msg.to_bytes(), ("127.0.0.1", relay.port("udp")))
            .unwrap();
        let n = next.recv(&mut buf).expect("forwarded");
        let out = sipseal::sip::Message::parse(&buf[..n]).unwrap();
        branches.push((
            out.cseq().unwrap().method,
            out.top_via().unwrap().branch().unwrap().to_owned(),
        ));
    }
    assert_eq!(branches[0], branches[1], "a retransmission");
    assert_eq!(branches[2].0, "CANCEL");
    assert_eq!(
        branches[2].1, branches[0].1,
        "the CANCEL matches the INVITE downstream"
    );
    assert_ne!(branches[0].1, invite.top_via().unwrap().branch().unwrap());
}

#[test]
fn connections_past_the_limit_are_closed_at_once() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let relay = Daemon::start(
        tmp.path(),
        "relay",
        &[
            "relay",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a-ec",
            "--max-connections",
            "2",
        ],
    );
    let open = || {
        let c = std::net::TcpStream::connect(("127.0.0.1", relay.port("tcp"))).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    };
    let ping = |c: &mut std::net::TcpStream| {
        c.write_all(b"\r\n\r\n").unwrap();
        let mut pong = [0u8; 2];
        c.read_exact(&mut pong).is_ok()
    };
    let (mut one, mut two) = (open(), open());
    assert!(ping(&mut one) && ping(&mut two));
    let mut three = open();
    let mut buf = [0u8; 16];
    assert_eq!(three.read(&mut buf).unwrap_or(0), 0, "the third is closed");
    assert!(relay.logged("--max-connections reached"));
    // When one goes, there is room again.
    drop(one);
    std::thread::sleep(Duration::from_millis(300));
    let mut four = open();
    assert!(ping(&mut four));
    assert!(ping(&mut two));
}

/// Route-Security (docs/SPEC.md §3.4) on each message of a call through
/// two live relays, as `sipseal relay` logs it.
fn route_checks(relay: &Daemon, status: Option<u16>, call_id: &str) -> String {
    relay
        .log_lines()
        .into_iter()
        .find(|l| l["call_id"] == call_id && l["status"].as_u64().map(|s| s as u16) == status)
        .map(|l| format!("{} | {}", l["decision"], l["route_security"]))
        .unwrap_or_else(|| {
            panic!(
                "no log line for {call_id} {status:?}:\n{}",
                relay.log_text()
            )
        })
}

/// The far end that tampers: proxy-b's entry (the top one) in its 200 OK
/// names another address for the call `tamper`.
fn tamper_with_the_top_entry(msg: &mut sipseal::sip::Message) {
    if msg.call_id().is_ok_and(|c| c == "tamper") {
        let top = msg.header_values("Route-Security")[0].to_owned();
        let at = msg
            .headers()
            .iter()
            .position(|h| h.is("Route-Security"))
            .unwrap();
        msg.remove_header_at(at);
        let forged = top.replace("127.0.0.1", "192.0.2.66");
        msg.insert_header(at, "Route-Security", &forged);
    }
}

#[test]
fn a_three_hop_call_checks_each_route_security_entry_on_the_request_and_the_response() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // caller -TCP-> proxy-a -mutual TLS-> proxy-b -UDP-> callee.
    let (callee, answered) = responder_editing("127.0.0.1:0", 2, tamper_with_the_top_entry);
    let b = Daemon::start(
        d,
        "proxy-b",
        &[
            "relay",
            "--listen",
            "tls:127.0.0.1:0",
            "--listen",
            "udp:127.0.0.1:0",
            "--identity",
            "keys/proxy-b",
            "--trust",
            "keys/trust.pem",
            "--next",
            &format!("udp:127.0.0.1:{callee}"),
        ],
    );
    let hosts = hosts(d, &[("proxy-b.b.example.com", b.port("tls"))]);
    let a = Daemon::start(
        d,
        "proxy-a",
        &[
            "relay",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-a",
            "--trust",
            "keys/trust.pem",
            "--hosts",
            s(&hosts),
            "--next",
            "sip:proxy-b.b.example.com;transport=tls",
        ],
    );
    let (a_port, b_udp) = (a.port("tcp"), b.port("udp"));
    let call = |call_id: &str| {
        let msg = sipseal()
            .args(["build", "options", "--from", "sip:alice@a.example.com"])
            .args(["--to", "sip:bob@b.example.com", "--call-id", call_id])
            .succeeds()
            .stdout;
        let msg = write(d, &format!("{call_id}.sip"), &msg);
        sipseal()
            .args([
                "send",
                s(&msg),
                "--next",
                &format!("tcp:127.0.0.1:{a_port}"),
            ])
            .args(["--timeout", "4"])
            .output()
            .unwrap()
    };

    // The caller writes no entry: proxy-a puts one without a level for
    // the link it came on (unchecked), then its own (TLS, level 3) on
    // top; proxy-b checks that one names proxy-a and puts its own (UDP,
    // level 0) on top.
    let out = call("honest");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nproxy-a:\n{}\nproxy-b:\n{}",
        text(&out),
        a.log_text(),
        b.log_text()
    );
    let series = [
        format!("127.0.0.1:{b_udp};level=0"),
        format!("127.0.0.1:{a_port};level=3"),
        "127.0.0.1".to_owned(),
    ];
    let ok = sipseal::sip::Message::parse(&out.stdout).unwrap();
    assert_eq!(ok.status(), Some(200));
    // The 200 the caller receives carries the series back, in order.
    assert_eq!(ok.header_list("Route-Security"), series);
    let request = route_checks(&a, None, "honest");
    assert!(
        request
            .contains("the top entry is missing, not 127.0.0.1: added 127.0.0.1 without a level"),
        "{request}"
    );
    assert!(
        request.contains(&format!("put 127.0.0.1:{a_port};level=3 on top")),
        "{request}"
    );
    let request = route_checks(&b, None, "honest");
    assert!(
        request.contains("the link from 127.0.0.1 is level 3"),
        "{request}"
    );
    assert!(
        request.contains(&format!("put 127.0.0.1:{b_udp};level=0 on top")),
        "{request}"
    );
    // On the way back each relay finds its own: proxy-b the top entry,
    // proxy-a the second.
    let response = route_checks(&b, Some(200), "honest");
    assert!(response.starts_with("\"forward TLS"), "{response}");
    assert!(response.contains(&format!("this relay's entry came back unchanged (127.0.0.1:{b_udp} level 0, position 1 from the top)")), "{response}");
    let response = route_checks(&a, Some(200), "honest");
    assert!(response.contains(&format!("this relay's entry came back unchanged (127.0.0.1:{a_port} level 3, position 2 from the top)")), "{response}");
    // The caller checks the third: its own, as proxy-a wrote it.
    let at_caller = write(d, "200.sip", &out.stdout);
    let v = sipseal()
        .args(["verify", s(&at_caller), "--trust", "keys/trust.pem"])
        .output()
        .unwrap();
    assert!(
        text(&v).contains(
            "pass own entry: the entry at this party's position (3 from the top) names 127.0.0.1:"
        ),
        "{}",
        text(&v)
    );

    // The callee changes proxy-b's entry on its 200: proxy-b drops it,
    // and the caller never gets an answer.
    let out = call("tamper");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let dropped = route_checks(&b, Some(200), "tamper");
    assert!(
        dropped.contains(&format!("drop: Route-Security: the entry at this relay's position (1 from the top) is 192.0.2.66:{b_udp} level 0, not this relay's (127.0.0.1:{b_udp} level 0)")),
        "{dropped}"
    );
    assert!(
        !a.log_lines()
            .iter()
            .any(|l| l["call_id"] == "tamper" && !l["status"].is_null()),
        "proxy-a never saw the forged 200:\n{}",
        a.log_text()
    );
    let got = answered.join().unwrap();
    assert_eq!(got.len(), 2);
    for request in &got {
        assert_eq!(request.header_list("Route-Security"), series);
        let vias = request.vias().unwrap();
        assert_eq!(
            vias[0].param("rs-pos"),
            Some("2"),
            "proxy-b's entry is third from the bottom"
        );
        assert_eq!(vias[1].param("rs-pos"), Some("1"), "proxy-a's second");
    }
}

#[test]
fn min_route_level_2_refuses_a_request_that_crossed_a_level_0_link() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (callee, answered) = responder(1);
    let b = Daemon::start(
        d,
        "proxy-b",
        &[
            "relay",
            "--listen",
            "tls:127.0.0.1:0",
            "--listen",
            "udp:127.0.0.1:0",
            "--identity",
            "keys/proxy-b",
            "--trust",
            "keys/trust.pem",
            "--min-route-level",
            "2",
            "--next",
            &format!("udp:127.0.0.1:{callee}"),
        ],
    );
    let a = Daemon::start(
        d,
        "proxy-a",
        &[
            "relay",
            "--listen",
            "tcp:127.0.0.1:0",
            "--listen",
            "tls:127.0.0.1:0",
            "--identity",
            "keys/proxy-a",
            "--trust",
            "keys/trust.pem",
            "--hosts",
            s(&hosts(d, &[("proxy-b.b.example.com", b.port("tls"))])),
            "--next",
            "sip:proxy-b.b.example.com;transport=tls",
        ],
    );
    let hosts = hosts(
        d,
        &[
            ("proxy-a.a.example.com", a.port("tls")),
            ("proxy-b.b.example.com", b.port("tls")),
        ],
    );
    let call = |call_id: &str, next: &str, identity: Option<&str>| {
        let mut build = sipseal();
        build
            .args(["build", "options", "--from", "sip:alice@a.example.com"])
            .args(["--to", "sip:bob@b.example.com", "--call-id", call_id]);
        if call_id == "says-0" {
            // A caller that says how it sends: plain TCP, level 0.
            build.args(["--header", "Route-Security: 127.0.0.1;level=0"]);
        }
        let msg = build.succeeds().stdout;
        let msg = write(d, &format!("{call_id}.sip"), &msg);
        let mut cmd = sipseal();
        cmd.args(["send", s(&msg), "--next", next, "--hosts", s(&hosts)])
            .args(["--trust", "keys/trust.pem", "--timeout", "10"]);
        if let Some(id) = identity {
            cmd.args(["--identity", id]);
        }
        cmd.output().unwrap()
    };
    // Over plain TCP to proxy-a: that link is level 0 (unchecked), two
    // hops before proxy-b. proxy-b answers 403 naming it; the answer goes
    // back through proxy-a (which finds its own entry in it) to the caller.
    let out = call("weak", &format!("tcp:127.0.0.1:{}", a.port("tcp")), None);
    let answer = sipseal::sip::Message::parse(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}\n{}", text(&out), a.log_text(), b.log_text()));
    assert_eq!(answer.status(), Some(403), "{}", answer.start_line());
    assert_eq!(
        answer.header("Warning"),
        Some(
            "399 proxy-b.b.example.com \"Route-Security: the weakest link, 127.0.0.1 (no level: unchecked), is below the minimum level 2\""
        )
    );
    let refused = route_checks(&b, None, "weak");
    assert!(
        refused.starts_with("\"answer 403: Route-Security: the weakest link"),
        "{refused}"
    );
    let back = route_checks(&a, Some(403), "weak");
    assert!(
        back.contains("this relay's entry came back unchanged"),
        "{back}"
    );
    // The caller says its link is level 0: proxy-a takes that entry as it
    // is, and proxy-b names it.
    let out = call("says-0", &format!("tcp:127.0.0.1:{}", a.port("tcp")), None);
    let answer = sipseal::sip::Message::parse(&out.stdout).unwrap();
    assert_eq!(answer.status(), Some(403), "{}", answer.start_line());
    assert_eq!(
        answer.header("Warning"),
        Some(
            "399 proxy-b.b.example.com \"Route-Security: the weakest link, 127.0.0.1 level 0, is below the minimum level 2\""
        )
    );
    assert!(
        route_checks(&a, None, "says-0").contains("the link from 127.0.0.1 is level 0"),
        "{}",
        a.log_text()
    );
    // With her certificate over mutual TLS every link so far is level 3:
    // through, and only that call reached the callee.
    let out = call(
        "strong",
        "sip:proxy-a.a.example.com;transport=tls",
        Some("keys/alice"),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nproxy-a:\n{}\nproxy-b:\n{}",
        text(&out),
        a.log_text(),
        b.log_text()
    );
    let got = answered.join().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].call_id().unwrap(), "strong");
    assert_eq!(
        got[0].header_list("Route-Security"),
        [
            format!("127.0.0.1:{};level=0", b.port("udp")),
            format!("127.0.0.1:{};level=3", a.port("tls")),
            "127.0.0.1;level=3".to_owned(),
        ]
    );
}

/// Issue 28 item 4 over a live transport: registrations sealed under a
/// PSK and under the password, sent over TCP to `registrar --listen`
/// (Digest first), each answered with a 200 sealed back and signed, that
/// `register --accept` opens and installs.
#[test]
fn the_live_registrar_answers_a_sealed_registration_sealed() {
    use common::realm::{Realm, Wire};
    let tmp = tempfile::tempdir().unwrap();
    let realm = Realm::new(tmp.path(), "example.com", &["alice"], false);
    let d = &realm.dir;
    let run = |args: &[&str]| sipseal().current_dir(d).args(args).succeeds();
    run(&[
        "keys",
        "psk",
        "--id",
        "alice-reg",
        "--uri",
        "sip:alice@example.com",
        "--output",
        "alice.psk",
    ]);
    let registrar = realm.registrar(
        s(&d.join("registry")),
        &["tcp:127.0.0.1:0"],
        &["--psk", s(&d.join("alice.psk"))],
    );
    for (name, seal_for) in [("psk", "psk:alice.psk"), ("password", "password:alice.pw")] {
        let identity = format!("alice-{name}");
        run(&[
            "keys",
            "generate",
            "--type",
            "p256",
            "--uri",
            "sip:alice@example.com",
            "--csr",
            "--out",
            &identity,
        ]);
        let extra = ["--identity", identity.as_str(), "--seal-for", seal_for];
        let mut wire = Wire::tcp(registrar.port("tcp"));
        let contact = format!("sip:alice@{}", wire.local());
        wire.send(&wire.own_via(&realm.register_request("alice", &contact, &extra)));
        let challenge = wire.final_response().unwrap();
        assert_eq!(challenge.status(), Some(401), "{name}");
        wire.send(&wire.own_via(&realm.authorized("alice", &contact, &challenge, &extra)));
        let ok = wire.final_response().unwrap();
        assert_eq!(ok.status(), Some(200), "{name}: {}", registrar.log_text());
        let bytes = ok.to_bytes();
        let shown = String::from_utf8_lossy(&bytes);
        assert!(
            shown.contains("smime-type=authEnveloped-data"),
            "{name}: {shown}"
        );
        assert!(!shown.contains("smime-type=certs-only"), "{name}: {shown}");
        let file = write(d, &format!("{name}-200.sip"), &bytes);
        let out = sipseal()
            .current_dir(d)
            .args(["register", "--accept", s(&file), "--identity", &identity])
            .args(["--trust", "ca/cert.pem", "--seal-for", seal_for])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        assert!(d.join(&identity).join("cert.pem").is_file(), "{name}");
    }
}
