//! `sipseal edge` live (issue 30): a registrar and a relay (sipseal
//! processes; the relay on mutual TLS, serving b.example.com by
//! location), two edges (alice's, bob's) and two phones on plain UDP
//! driven by the test. The phones register through their edges with
//! Digest, alice calls bob (INVITE with SDP, 180/200/ACK, a re-INVITE
//! for hold, BYE); what each phone receives is plain SIP and plain SDP,
//! addressed to its own Contact. A request from the network with a
//! forged or missing phone token is refused (403/404) and nothing
//! reaches the phone; a phone outside `--phones` gets nothing; edge A
//! restarted mid-call (SIGTERM, started again on the same state) still
//! carries the phone's BYE, which is answered, and, before the phone
//! registers again, requests from the network: bob's in the dialog and a
//! new one by location (the relay's flow token names edge A's
//! certificate, whose new connection carries the flow on).
//!
//! The assertions look only at what the phones receive and at the
//! daemons' log lines, so they hold whatever the edge's sealer does to
//! the bodies on the network side.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::live::Daemon;
use common::realm::Realm;
use common::{Succeeds, s};
use sipseal::sip::Message;

/// A phone: a UDP socket that talks to its edge.
struct Phone {
    socket: UdpSocket,
    edge: u16,
    user: &'static str,
    n: u32,
}

impl Phone {
    fn on(ip: &str, edge: u16, user: &'static str) -> Phone {
        let socket = UdpSocket::bind((ip, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Phone {
            socket,
            edge,
            user,
            n: 0,
        }
    }

    fn local(&self) -> std::net::SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.user, self.local())
    }

    fn branch(&mut self) -> String {
        self.n += 1;
        format!("z9hG4bK-{}-{}", self.user, self.n)
    }

    fn send(&self, msg: &[u8]) {
        self.socket.send_to(msg, ("127.0.0.1", self.edge)).unwrap();
    }

    /// `msg` with its top Via naming this phone and a fresh branch.
    fn own_via(&mut self, msg: &[u8]) -> Vec<u8> {
        let mut m = Message::parse(msg).unwrap();
        let branch = self.branch();
        m.set_header(
            "Via",
            &format!("SIP/2.0/UDP {};branch={branch};rport", self.local()),
        );
        m.to_bytes()
    }

    /// The next message (None after `secs`).
    fn recv_within(&self, secs: u64) -> Option<Message> {
        self.socket
            .set_read_timeout(Some(Duration::from_secs(secs)))
            .unwrap();
        let mut buf = vec![0u8; 65_535];
        let (n, _) = self.socket.recv_from(&mut buf).ok()?;
        Message::parse(&buf[..n]).ok()
    }

    fn recv(&self) -> Message {
        self.recv_within(10)
            .unwrap_or_else(|| panic!("{}'s phone received nothing", self.user))
    }

    /// The next final response.
    fn final_response(&self) -> Message {
        loop {
            let m = self.recv();
            if m.status().is_some_and(|s| s >= 200) {
                return m;
            }
        }
    }

    /// Send `msg` as a response to the edge (UDP: to where the request came from).
    fn answer(&self, msg: &[u8]) {
        self.send(msg);
    }
}

fn sdp(user: &str, version: u32, direction: &str) -> String {
    format!(
        "v=0\r\no={user} 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na={direction}\r\n"
    )
}

/// A response to `req` from the phone: its Vias, Record-Route, From, To
/// (with `tag`), Call-ID and CSeq, `contact`, and `body` as SDP.
fn response(
    req: &Message,
    code: u16,
    reason: &str,
    tag: &str,
    contact: &str,
    body: &str,
) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.header_values("Via") {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    for r in req.header_values("Record-Route") {
        out.push_str(&format!("Record-Route: {r}\r\n"));
    }
    let to = req.header("To").unwrap();
    let to = if to.contains(";tag=") {
        to.to_owned()
    } else {
        format!("{to};tag={tag}")
    };
    out.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: {contact}\r\n",
        req.header("From").unwrap(),
        req.header("Call-ID").unwrap(),
        req.header("CSeq").unwrap(),
    ));
    if body.is_empty() {
        out.push_str("Content-Length: 0\r\n\r\n");
    } else {
        out.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    out.into_bytes()
}

/// A request in a dialog: `target` as Request-URI, `routes` as its
/// Route set, the dialog's From/To (with tags), Call-ID, `cseq`.
#[allow(clippy::too_many_arguments)]
fn in_dialog(
    phone: &mut Phone,
    method: &str,
    target: &str,
    routes: &[String],
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    body: &str,
) -> Vec<u8> {
    let branch = phone.branch();
    let mut out = format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch};rport\r\nMax-Forwards: 70\r\n",
        phone.local()
    );
    for r in routes {
        out.push_str(&format!("Route: {r}\r\n"));
    }
    let cseq_method = if method == "ACK" { "ACK" } else { method };
    out.push_str(&format!(
        "From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {cseq_method}\r\nContact: {}\r\n",
        phone.contact()
    ));
    if body.is_empty() {
        out.push_str("Content-Length: 0\r\n\r\n");
    } else {
        out.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    out.into_bytes()
}

/// A body the phone can use as it is: plain SDP, nothing sealed.
fn assert_plain_sdp(m: &Message, what: &str) {
    let ct = m
        .header("Content-Type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        ct.starts_with("application/sdp"),
        "{what}: Content-Type {ct}\n{}",
        String::from_utf8_lossy(&m.to_bytes())
    );
    let body = String::from_utf8_lossy(m.body());
    assert!(
        body.starts_with("v=0") && body.contains("m=audio 40000"),
        "{what}: {body}"
    );
    assert!(
        m.header("Proxy-Inspect-Body").is_none(),
        "{what}: a sealing header reached the phone"
    );
}

fn addr_spec(v: &str) -> String {
    sipseal::sip::headers::addr_spec(v).to_owned()
}

/// The entries of every Record-Route of `m`, in order.
fn record_routes(m: &Message) -> Vec<String> {
    m.header_list("Record-Route")
        .into_iter()
        .map(|e| e.trim().to_owned())
        .collect()
}

struct Bench {
    _realm: Realm,
    registrar: Daemon,
    relay: Daemon,
    edge_a: Daemon,
    edge_b: Daemon,
    dir: PathBuf,
    edge_a_args: Vec<String>,
}

impl Bench {
    fn logs(&self) -> String {
        format!(
            "edge A:\n{}\nedge B:\n{}\nrelay:\n{}\nregistrar:\n{}",
            self.edge_a.log_text(),
            self.edge_b.log_text(),
            self.relay.log_text(),
            self.registrar.log_text()
        )
    }
}

/// A user's identity from the realm's CA, in `dir/NAME`.
fn identity(dir: &Path, user: &str) -> PathBuf {
    let out = dir.join(format!("{user}-id"));
    common::sipseal()
        .current_dir(dir)
        .args([
            "keys",
            "generate",
            "--uri",
            &format!("sip:{user}@b.example.com"),
        ])
        .args(["--ca", "ca", "--out", s(&out)])
        .succeeds();
    out
}

/// What every edge of the bench is pointed at.
struct Net {
    outbound: String,
    hosts: PathBuf,
    registrar_tcp: u16,
}

fn edge_args(
    d: &Path,
    name: &str,
    identity: &Path,
    listen: &str,
    net: &Net,
    extra: &[&str],
) -> Vec<String> {
    let (outbound, hosts, registrar_tcp) = (net.outbound.as_str(), &net.hosts, net.registrar_tcp);
    let mut args: Vec<String> = [
        "edge",
        "--listen",
        listen,
        "--identity",
        s(identity),
        "--outbound",
        outbound,
        "--hosts",
        s(hosts),
        "--trust",
        "keys/trust.pem",
        "--trust",
        s(&d.join("ca/cert.pem")),
        "--disclosure",
        s(&d.join("policy.yaml")),
        "--cert-query",
        &format!("tcp:127.0.0.1:{registrar_tcp}"),
        "--state",
        s(&d.join(format!("{name}-state"))),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn start(d: &Path, name: &str, args: &[String]) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(d, name, &args)
}

/// The registrar, the relay, and both edges.
fn bench(d: &Path) -> Bench {
    bench_with(d, &[])
}

/// [`bench`] with `registrar_extra` flags for the registrar.
fn bench_with(d: &Path, registrar_extra: &[&str]) -> Bench {
    let realm = Realm::new(d, "b.example.com", &["alice", "bob"], false);
    let alice = identity(d, "alice");
    let bob = identity(d, "bob");
    // The disclosure policy: no relay disclosed to, peers without a
    // certificate refused.
    common::write(
        d,
        "policy.yaml",
        b"relays: {}\ndestinations:\n  - to: \"*\"\n    disclose: []\n    access: modify\n    record: false\n    unsealable: refuse\nincoming:\n  unsealed: accept\n  unsigned: accept\n  min_route_level: 0\n",
    );
    let registry = d.join("registry");
    let registrar = realm.registrar(
        s(&registry),
        &["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
        &[&["--max-expires", "86400"], registrar_extra].concat(),
    );
    // Certificates the registrar answers certificate queries with (the
    // sealer looks the peer up): each user PUBLISHes a CSR once, for a
    // day (longer than a registration: the edge adds no CSR then).
    realm.publish(registrar.port("tcp"), "alice", &alice, 86_400);
    realm.publish(registrar.port("tcp"), "bob", &bob, 86_400);
    let relay_hosts = common::write(
        d,
        "relay-hosts",
        format!("127.0.0.1:{} b.example.com\n", registrar.port("udp")).as_bytes(),
    );
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
            "keys/proxy-b-ec",
            "--trust",
            "keys/trust.pem",
            "--trust",
            s(&d.join("ca/cert.pem")),
            "--domain",
            "b.example.com",
            "--registrations",
            s(&registry),
            "--hosts",
            s(&relay_hosts),
            "--record-route",
        ],
    );
    let hosts = common::write(
        d,
        "edge-hosts",
        format!("127.0.0.1:{} proxy-b.b.example.com\n", relay.port("tls")).as_bytes(),
    );
    let net = Net {
        outbound: format!("tls:proxy-b.b.example.com:{}", relay.port("tls")),
        hosts,
        registrar_tcp: registrar.port("tcp"),
    };
    let edge_a_args = edge_args(
        d,
        "edge-a",
        &alice,
        "udp:127.0.0.1:0",
        &net,
        &["--phones", "127.0.0.1/32"],
    );
    let edge_a = start(d, "edge-a", &edge_a_args);
    // Its port again, for a restart on the same address.
    let port = edge_a.port("udp");
    let edge_a_args = edge_args(
        d,
        "edge-a",
        &alice,
        &format!("udp:127.0.0.1:{port}"),
        &net,
        &["--phones", "127.0.0.1/32"],
    );
    let edge_b_args = edge_args(
        d,
        "edge-b",
        &bob,
        "udp:127.0.0.1:0",
        &net,
        &["--listen", "tcp:127.0.0.1:0"],
    );
    let edge_b = start(d, "edge-b", &edge_b_args);
    Bench {
        _realm: realm,
        registrar,
        relay,
        edge_a,
        edge_b,
        dir: d.to_owned(),
        edge_a_args,
    }
}

/// Register the phone's own Contact through its edge with Digest; the
/// 200 as the phone sees it.
fn register(realm_dir: &Path, phone: &mut Phone) -> Message {
    register_with(realm_dir, phone, &[])
}

/// The certificate bob's phone registers as it is (`register --cert`,
/// under Digest auth-int, which the phone computes over its own body):
/// the registrar then answers certificate queries for bob, which a
/// sealer asks before it seals alice's INVITE.
fn bobs_cert(d: &Path) -> String {
    s(&d.join("bob-id/cert.pem")).to_owned()
}

/// [`register`] with `extra` flags for `sipseal register`.
fn register_with(realm_dir: &Path, phone: &mut Phone, extra: &[&str]) -> Message {
    let realm = Realm {
        dir: realm_dir.to_owned(),
        name: "b.example.com".into(),
    };
    let contact = phone.contact();
    let first = realm.register_request(phone.user, &contact, extra);
    let first = phone.own_via(&first);
    phone.send(&first);
    let challenge = phone.final_response();
    assert_eq!(
        challenge.status(),
        Some(401),
        "{}",
        String::from_utf8_lossy(&challenge.to_bytes())
    );
    let authorized = realm.authorized(phone.user, &contact, &challenge, extra);
    let authorized = phone.own_via(&authorized);
    phone.send(&authorized);
    phone.final_response()
}

#[test]
fn phones_register_and_call_through_their_edges_plain_on_both_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut bench = bench(d);
    let mut alice = Phone::on("127.0.0.1", bench.edge_a.port("udp"), "alice");
    let mut bob = Phone::on("127.0.0.1", bench.edge_b.port("udp"), "bob");

    // REGISTER with Digest through each edge: the phone sees its own
    // Contact in the 200, no token, no body.
    let cert = bobs_cert(d);
    for (phone, extra) in [
        (&mut alice, vec![]),
        (&mut bob, vec!["--cert", cert.as_str()]),
    ] {
        let ok = register_with(d, phone, &extra);
        assert_eq!(
            ok.status(),
            Some(200),
            "{}\n{}",
            String::from_utf8_lossy(&ok.to_bytes()),
            bench.logs()
        );
        let contacts = ok.header_list("Contact").join(",");
        assert!(
            contacts.contains(&format!("sip:{}@{}", phone.user, phone.local())),
            "{contacts}"
        );
        assert!(!contacts.contains("sipseal-phone"), "{contacts}");
        assert!(
            ok.body().is_empty(),
            "the 200 reaches the phone without its body"
        );
    }

    // INVITE alice → bob with SDP: bob's phone gets it at its own
    // Contact, plain, with edge B's phone-side Record-Route on top.
    let call_id = "edge-call-1";
    let invite = format!(
        "INVITE sip:bob@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bK-i1;rport\r\nMax-Forwards: 70\r\n\
From: <sip:alice@b.example.com>;tag=a1\r\nTo: <sip:bob@b.example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:alice@{a}>\r\nContent-Type: application/sdp\r\nContent-Length: {n}\r\n\r\n{body}",
        a = alice.local(),
        n = sdp("alice", 1, "sendrecv").len(),
        body = sdp("alice", 1, "sendrecv"),
    );
    alice.send(invite.as_bytes());
    let at_bob = loop {
        let m = bob
            .recv_within(10)
            .unwrap_or_else(|| panic!("no INVITE at bob's phone\n{}", bench.logs()));
        if m.method() == Some("INVITE") {
            break m;
        }
    };
    assert_eq!(
        at_bob.request_uri(),
        Some(format!("sip:bob@{}", bob.local()).as_str())
    );
    assert_plain_sdp(&at_bob, "the INVITE at bob's phone");
    let rr_b = record_routes(&at_bob);
    assert_eq!(
        rr_b.first().map(|e| addr_spec(e)),
        Some(format!("sip:127.0.0.1:{};lr", bench.edge_b.port("udp"))),
        "{rr_b:?}"
    );
    let alice_target = addr_spec(at_bob.header("Contact").unwrap());
    assert!(alice_target.contains("sipseal-phone="), "{alice_target}");
    assert!(
        !alice_target.contains(&alice.local().to_string()),
        "the network never sees the phone's address: {alice_target}"
    );

    // 180, 200 with SDP; alice's phone gets them plain, edge A's
    // Record-Route at the bottom; bob's Contact is not his phone's.
    let bob_contact = bob.contact();
    bob.answer(&response(&at_bob, 180, "Ringing", "b1", &bob_contact, ""));
    bob.answer(&response(
        &at_bob,
        200,
        "OK",
        "b1",
        &bob_contact,
        &sdp("bob", 1, "sendrecv"),
    ));
    let mut ok = alice.recv();
    while ok.status() != Some(200) {
        ok = alice.recv();
    }
    assert_plain_sdp(&ok, "the 200 at alice's phone");
    let rr_a = record_routes(&ok);
    assert_eq!(
        rr_a.last().map(|e| addr_spec(e)),
        Some(format!("sip:127.0.0.1:{};lr", bench.edge_a.port("udp"))),
        "{rr_a:?}"
    );
    let bob_target = addr_spec(ok.header("Contact").unwrap());
    assert!(
        !bob_target.contains(&bob.local().to_string()),
        "{bob_target}"
    );
    let to = ok.header("To").unwrap().to_owned();
    let from = "<sip:alice@b.example.com>;tag=a1";
    let alice_routes: Vec<String> = rr_a.iter().rev().cloned().collect();

    // ACK: down to bob's phone.
    let ack = in_dialog(
        &mut alice,
        "ACK",
        &bob_target,
        &alice_routes,
        from,
        &to,
        call_id,
        1,
        "",
    );
    alice.send(&ack);
    let got = bob.recv();
    assert_eq!(got.method(), Some("ACK"), "{}", bench.logs());
    assert_eq!(
        got.request_uri(),
        Some(format!("sip:bob@{}", bob.local()).as_str())
    );

    // Hold: a re-INVITE with sendonly, answered recvonly, plain both ways.
    let hold = in_dialog(
        &mut alice,
        "INVITE",
        &bob_target,
        &alice_routes,
        from,
        &to,
        call_id,
        2,
        &sdp("alice", 2, "sendonly"),
    );
    alice.send(&hold);
    let reinvite = loop {
        let m = bob.recv();
        if m.method() == Some("INVITE") {
            break m;
        }
    };
    assert_plain_sdp(&reinvite, "the re-INVITE at bob's phone");
    assert!(String::from_utf8_lossy(reinvite.body()).contains("a=sendonly"));
    bob.answer(&response(
        &reinvite,
        200,
        "OK",
        "b1",
        &bob_contact,
        &sdp("bob", 2, "recvonly"),
    ));
    let ok2 = alice.final_response();
    assert_eq!(ok2.status(), Some(200), "{}", bench.logs());
    assert_plain_sdp(&ok2, "the re-INVITE's 200 at alice's phone");
    assert!(String::from_utf8_lossy(ok2.body()).contains("a=recvonly"));
    let ack2 = in_dialog(
        &mut alice,
        "ACK",
        &bob_target,
        &alice_routes,
        from,
        &to,
        call_id,
        2,
        "",
    );
    alice.send(&ack2);
    assert_eq!(bob.recv().method(), Some("ACK"));

    // From bob's side of the dialog, a request for alice with a forged
    // token (403) or none (404): answered by edge A, nothing at alice's phone.
    let bob_routes = rr_b.clone();
    let bob_from = to.clone();
    let bob_to = "<sip:alice@b.example.com>;tag=a1".to_owned();
    let (head, token) = alice_target.split_once("sipseal-phone=").unwrap();
    let mut forged = token.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let forged_uri = format!("{head}sipseal-phone={forged}");
    let no_token = head.trim_end_matches(';').to_owned();
    for (uri, status, cseq) in [(forged_uri.as_str(), 403, 10), (no_token.as_str(), 404, 11)] {
        let info = in_dialog(
            &mut bob,
            "INFO",
            uri,
            &bob_routes,
            &bob_from,
            &bob_to,
            call_id,
            cseq,
            "",
        );
        bob.send(&info);
        let answer = bob.final_response();
        assert_eq!(answer.status(), Some(status), "{uri}\n{}", bench.logs());
    }
    assert!(
        alice.recv_within(1).is_none(),
        "a request with a bad token reached the phone"
    );

    // A phone outside --phones (edge A serves 127.0.0.1/32 only) gets nothing.
    let mut stranger = Phone::on("127.0.0.2", bench.edge_a.port("udp"), "alice");
    let options = in_dialog(
        &mut stranger,
        "OPTIONS",
        "sip:bob@b.example.com",
        &[],
        "<sip:alice@b.example.com>;tag=x",
        "<sip:bob@b.example.com>",
        "stranger-1",
        1,
        "",
    );
    stranger.send(&options);
    assert!(
        stranger.recv_within(2).is_none(),
        "a phone outside --phones was answered"
    );
    assert!(
        bench.edge_a.logged("outside --phones"),
        "{}",
        bench.edge_a.log_text()
    );

    // Edge A restarted mid-call on the same state: the phone's BYE still
    // goes through and is answered.
    bench.edge_a.stop();
    bench.edge_a = start(&bench.dir, "edge-a-again", &bench.edge_a_args);
    // A request from bob's side of the dialog still reaches alice's
    // phone: the relay's flow token names edge A's certificate as well as
    // its old connection, and the restarted edge's new connection (the
    // same certificate) carries it. The phone has not registered again.
    let bob_info = |bob: &mut Phone, cseq: u32| {
        in_dialog(
            bob,
            "INFO",
            &alice_target,
            &bob_routes,
            &bob_from,
            &bob_to,
            call_id,
            cseq,
            "",
        )
    };
    let mut at_alice = None;
    let mut cseq = 12;
    for _ in 0..15 {
        // The new flow may not be up yet the first time (503): again, as a
        // new transaction.
        let info = bob_info(&mut bob, cseq);
        bob.send(&info);
        if let Some(m) = alice.recv_within(1) {
            at_alice = Some(m);
            break;
        }
        cseq += 1;
    }
    let at_alice = at_alice.unwrap_or_else(|| {
        panic!(
            "bob's INFO never reached alice's phone after edge A restarted\n{}",
            bench.logs()
        )
    });
    assert_eq!(at_alice.method(), Some("INFO"), "{}", bench.logs());
    assert_eq!(
        at_alice.request_uri(),
        Some(alice.contact().trim_matches(['<', '>']))
    );
    alice.answer(&response(&at_alice, 200, "OK", "a1", &alice.contact(), ""));
    let answered = loop {
        let m = bob.final_response();
        if m.cseq().is_ok_and(|c| c.seq == cseq) {
            break m;
        }
    };
    assert_eq!(answered.status(), Some(200), "{}", bench.logs());
    let bye = in_dialog(
        &mut alice,
        "BYE",
        &bob_target,
        &alice_routes,
        from,
        &to,
        call_id,
        3,
        "",
    );
    alice.send(&bye);
    let at_bob = bob
        .recv_within(15)
        .unwrap_or_else(|| panic!("no BYE at bob's phone\n{}", bench.logs()));
    assert_eq!(at_bob.method(), Some("BYE"), "{}", bench.logs());
    bob.answer(&response(&at_bob, 200, "OK", "b1", &bob_contact, ""));
    let done = alice.final_response();
    assert_eq!(done.status(), Some(200), "{}", bench.logs());
    assert_eq!(done.cseq().unwrap().method, "BYE");

    // A new request for alice, by location (her binding's Path names
    // edge A's old connection and its certificate), reaches her phone
    // through the restarted edge, still without a new REGISTER.
    let options = in_dialog(
        &mut bob,
        "OPTIONS",
        "sip:alice@b.example.com",
        &[],
        "<sip:bob@b.example.com>;tag=b9",
        "<sip:alice@b.example.com>",
        "after-restart-1",
        1,
        "",
    );
    bob.send(&options);
    let at_alice = alice
        .recv_within(10)
        .unwrap_or_else(|| panic!("no OPTIONS at alice's phone\n{}", bench.logs()));
    assert_eq!(at_alice.method(), Some("OPTIONS"), "{}", bench.logs());
    alice.answer(&response(&at_alice, 200, "OK", "a9", &alice.contact(), ""));
    let answered = bob.final_response();
    assert_eq!(answered.status(), Some(200), "{}", bench.logs());
    assert_eq!(answered.call_id().unwrap(), "after-restart-1");

    // The relay carried every request of the call.
    let relay_log = bench.relay.log_text();
    for method in ["\"INVITE\"", "\"ACK\"", "\"BYE\""] {
        assert!(
            relay_log.contains(method),
            "the relay logged no {method}\n{relay_log}"
        );
    }
}

/// An identity with a key and no certificate: the edge adds a CSR to the
/// phone's REGISTER (the flow presents `--bootstrap`). sipseal's
/// registrar wants a REGISTER body under Digest `auth-int`, which the
/// phone's credentials cannot cover, and challenges the phone's answer
/// again: the edge then stops adding the CSR for that AOR (logged, with
/// a hint) and the phone's next answer registers it, its own Contact in
/// the 200 (docs/SPEC.md §7.2, REGISTER).
#[test]
fn a_phone_still_registers_when_the_registrar_refuses_the_edges_csr_under_its_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let bench = bench(d);
    let me = d.join("bob-new");
    common::sipseal()
        .current_dir(d)
        .args(["keys", "generate", "--uri", "sip:bob@b.example.com"])
        .args(["--type", "p256", "--csr", "--out", s(&me)])
        .succeeds();
    assert!(!me.join("cert.pem").exists());
    let net = Net {
        outbound: format!("tls:proxy-b.b.example.com:{}", bench.relay.port("tls")),
        hosts: d.join("edge-hosts"),
        registrar_tcp: bench.registrar.port("tcp"),
    };
    let aor = format!("{}=sip:bob@b.example.com", s(&me));
    let args = edge_args(
        d,
        "edge-c",
        &me,
        "udp:127.0.0.1:0",
        &net,
        &["--aor", &aor, "--bootstrap", "keys/bob-ec"],
    );
    let edge = start(d, "edge-c", &args);
    let mut phone = Phone::on("127.0.0.1", edge.port("udp"), "bob");
    let realm = Realm {
        dir: d.to_owned(),
        name: "b.example.com".into(),
    };
    let contact = phone.contact();
    let first = realm.register_request("bob", &contact, &[]);
    let first = phone.own_via(&first);
    phone.send(&first);
    let mut answer = phone.final_response();
    let mut challenges = 0;
    while answer.status() == Some(401) && challenges < 3 {
        challenges += 1;
        let authorized = realm.authorized("bob", &contact, &answer, &[]);
        let authorized = phone.own_via(&authorized);
        phone.send(&authorized);
        answer = phone.final_response();
    }
    assert_eq!(
        answer.status(),
        Some(200),
        "{}\nedge:\n{}\nregistrar:\n{}",
        String::from_utf8_lossy(&answer.to_bytes()),
        edge.log_text(),
        bench.registrar.log_text()
    );
    assert_eq!(challenges, 2, "the CSR's REGISTER was challenged once more");
    let contacts = answer.header_list("Contact").join(",");
    assert!(
        contacts.contains(&format!("sip:bob@{}", phone.local())),
        "{contacts}"
    );
    assert!(edge.logged("\"enrol refused\""), "{}", edge.log_text());
    assert!(!me.join("cert.pem").exists());
}

/// Issue 30, REGISTER with a CSR: a user whose identity is a key alone
/// enrols through its phone's REGISTER. The edge adds the CSR sealed under
/// the PSK the registrar holds for the AOR (`--psk`) and offers the phone
/// `qop=auth` alone (its Digest covers its own empty body, never the
/// CSR); the registrar takes the sealed CSR under it (docs/SPEC.md §6),
/// issues the certificate, and the edge installs it from the signed,
/// sealed 200; the phone sees its own Contact and no body. The flow
/// presents `--bootstrap` until then.
#[test]
fn a_user_without_a_certificate_enrols_through_its_phones_register() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    common::sipseal()
        .current_dir(d)
        .args([
            "keys",
            "psk",
            "--id",
            "bob-reg",
            "--uri",
            "sip:bob@b.example.com",
        ])
        .args(["--output", "bob.psk"])
        .succeeds();
    let bench = bench_with(d, &["--psk", s(&d.join("bob.psk"))]);
    let me = d.join("bob-new");
    common::sipseal()
        .current_dir(d)
        .args(["keys", "generate", "--uri", "sip:bob@b.example.com"])
        .args(["--csr", "--out", s(&me)])
        .succeeds();
    assert!(!me.join("cert.pem").exists());
    let net = Net {
        outbound: format!("tls:proxy-b.b.example.com:{}", bench.relay.port("tls")),
        hosts: d.join("edge-hosts"),
        registrar_tcp: bench.registrar.port("tcp"),
    };
    let aor = format!("{}=sip:bob@b.example.com", s(&me));
    let psk = d.join("bob.psk");
    let args = edge_args(
        d,
        "edge-c",
        &me,
        "udp:127.0.0.1:0",
        &net,
        &[
            "--aor",
            &aor,
            "--bootstrap",
            "keys/bob-ec",
            "--psk",
            s(&psk),
        ],
    );
    let edge = start(d, "edge-c", &args);
    let mut phone = Phone::on("127.0.0.1", edge.port("udp"), "bob");
    let realm = Realm {
        dir: d.to_owned(),
        name: "b.example.com".into(),
    };
    let contact = phone.contact();
    let first = realm.register_request("bob", &contact, &[]);
    let first = phone.own_via(&first);
    phone.send(&first);
    let challenge = phone.final_response();
    assert_eq!(challenge.status(), Some(401), "{}", edge.log_text());
    let offered = challenge
        .header("WWW-Authenticate")
        .unwrap_or_default()
        .to_owned();
    assert!(
        offered.contains("qop=\"auth\"") && !offered.contains("auth-int"),
        "{offered}"
    );
    let authorized = realm.authorized("bob", &contact, &challenge, &[]);
    let authorized = phone.own_via(&authorized);
    phone.send(&authorized);
    let answer = phone.final_response();
    assert_eq!(
        answer.status(),
        Some(200),
        "{}\nedge:\n{}\nregistrar:\n{}",
        String::from_utf8_lossy(&answer.to_bytes()),
        edge.log_text(),
        bench.registrar.log_text()
    );
    assert!(answer.body().is_empty(), "the phone gets no body");
    let contacts = answer.header_list("Contact").join(",");
    assert!(
        contacts.contains(&format!("sip:bob@{}", phone.local())),
        "{contacts}"
    );
    assert!(
        edge.logged("\"certificate installed\""),
        "{}",
        edge.log_text()
    );
    assert!(!edge.logged("\"enrol refused\""), "{}", edge.log_text());
    let cert = sipseal::keys::Cert::load(&me.join("cert.pem")).unwrap();
    assert_eq!(cert.uri().as_deref(), Some("sip:bob@b.example.com"));
    assert!(
        bench
            .registrar
            .logged("registered sip:bob@b.example.com for 3600 s, certificate "),
        "{}",
        bench.registrar.log_text()
    );
}

/// One edge serving alice and bob (edge-ab), alice's phone registered
/// through it, and a sender registered as bob straight at the relay
/// (bound to its socket there): the edge, alice's phone, the sender.
fn two_user_edge(d: &Path, bench: &Bench) -> (Daemon, Phone, Phone) {
    let net = Net {
        outbound: format!("tls:proxy-b.b.example.com:{}", bench.relay.port("tls")),
        hosts: d.join("edge-hosts"),
        registrar_tcp: bench.registrar.port("tcp"),
    };
    let mut args = edge_args(
        d,
        "edge-ab",
        &d.join("alice-id"),
        "udp:127.0.0.1:0",
        &net,
        &[],
    );
    args.extend(["--identity".to_owned(), s(&d.join("bob-id")).to_owned()]);
    let edge = start(d, "edge-ab", &args);
    let mut alice = Phone::on("127.0.0.1", edge.port("udp"), "alice");
    let ok = register(d, &mut alice);
    assert_eq!(ok.status(), Some(200), "{}", edge.log_text());
    // The sender: a registered user (bound to its socket at the relay).
    let mut mallory = Phone::on("127.0.0.1", bench.relay.port("udp"), "bob");
    let ok = register(d, &mut mallory);
    assert_eq!(ok.status(), Some(200), "{}", bench.logs());
    (edge, alice, mallory)
}

/// An edge that serves two users opens a request with the identity of
/// the user whose phone its Request-URI's token leads to, never the To's:
/// a body sealed for bob, sent to alice's registered Contact, used to be
/// opened with bob's key (To: bob) and handed to alice's phone in clear.
/// Now it is tried with alice's key, does not open (493 to the sender),
/// and nothing reaches alice's phone. (To: bob itself is refused 403
/// before anything is opened: [`a_token_of_one_user_is_refused_with_another_users_to`];
/// here the To is an AOR the edge does not serve.)
#[test]
fn a_body_for_one_user_is_never_opened_for_another_users_phone() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let bench = bench(d);
    let (edge, alice, mut mallory) = two_user_edge(d, &bench);
    std::fs::write(d.join("offer.sdp"), sdp("bob", 1, "sendrecv")).unwrap();
    let plain = common::sipseal()
        .current_dir(d)
        .args(["build", "invite", "--from", "sip:bob@b.example.com"])
        .args(["--to", "sip:carol@b.example.com", "--sdp", "offer.sdp"])
        .succeeds()
        .stdout;
    std::fs::write(d.join("invite.sip"), &plain).unwrap();
    let sealed = common::sipseal()
        .current_dir(d)
        .args([
            "seal",
            "invite.sip",
            "--peer",
            s(&d.join("bob-id/cert.pem")),
        ])
        .succeeds()
        .stdout;
    let mut m = Message::parse(&sealed).unwrap();
    m.set_start_line(sipseal::sip::StartLine::Request {
        method: "INVITE".into(),
        uri: "sip:alice@b.example.com".into(),
    });
    m.set_header("Contact", &mallory.contact());
    let sent = mallory.own_via(&m.to_bytes());
    mallory.send(&sent);
    let answer = mallory.final_response();
    assert_eq!(
        answer.status(),
        Some(493),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&answer.to_bytes()),
        edge.log_text(),
        bench.logs()
    );
    // The ACK of that 493 (hop by hop, RFC 3261 §17.1.1.3) reaches the
    // edge and ends there: the phone never saw the INVITE.
    let tag = answer
        .to_tag()
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_owned();
    assert!(!tag.is_empty(), "the edge's answer has a To tag");
    m.set_start_line(sipseal::sip::StartLine::Request {
        method: "ACK".into(),
        uri: "sip:alice@b.example.com".into(),
    });
    m.set_header("To", answer.header("To").unwrap());
    let cseq = m.header("CSeq").unwrap().replace("INVITE", "ACK");
    m.set_header("CSeq", &cseq);
    m.set_body(Vec::new());
    m.remove_headers("Content-Type");
    let via = String::from_utf8_lossy(&sent)
        .lines()
        .find(|l| l.starts_with("Via:"))
        .unwrap()
        .trim_start_matches("Via:")
        .trim()
        .to_owned();
    m.set_header("Via", &via);
    mallory.send(&m.to_bytes());
    assert!(
        alice.recv_within(2).is_none(),
        "something reached alice's phone\n{}",
        edge.log_text()
    );
    assert!(
        edge.logged("absorbed: the ACK of the edge's own answer"),
        "{}",
        edge.log_text()
    );
}

/// An edge serving two users hands a request to a phone only for the
/// user its token names: a request To bob sent to alice's Contact used
/// to reach alice's phone, and her phone's answer (its To bob's) went
/// out sealed and signed inside as bob. Now it is refused 403 with a
/// Warning and nothing reaches alice's phone.
#[test]
fn a_token_of_one_user_is_refused_with_another_users_to() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let bench = bench(d);
    let (edge, alice, mut mallory) = two_user_edge(d, &bench);
    let invite = format!(
        "INVITE sip:alice@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bKm1\r\nMax-Forwards: 70\r\nFrom: <sip:bob@b.example.com>;tag=m1\r\nTo: <sip:bob@b.example.com>\r\nCall-ID: cross-user@m\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\nContent-Length: 0\r\n\r\n",
        addr = mallory.local(),
        contact = mallory.contact(),
    );
    let sent = mallory.own_via(invite.as_bytes());
    mallory.send(&sent);
    assert!(
        alice.recv_within(2).is_none(),
        "a request To bob reached alice's phone\n{}",
        edge.log_text()
    );
    let answer = mallory.final_response();
    assert_eq!(
        answer.status(),
        Some(403),
        "{}\n{}",
        String::from_utf8_lossy(&answer.to_bytes()),
        edge.log_text()
    );
    assert!(
        answer
            .header_list("Warning")
            .join(" ")
            .contains("another user"),
        "{}",
        String::from_utf8_lossy(&answer.to_bytes())
    );
}

/// What SIPp's `-trace_err` wrote in `d`.
fn sipp_errors(d: &Path) -> String {
    std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// SIPp as bob's phone (a UAS scenario written here): the INVITE and
/// the re-INVITE reach it with plain SDP (its `ereg ... check_it`
/// fails the call otherwise), it answers 180/200 with SDP, takes the
/// ACKs and answers the BYE; alice's phone, on a socket, sees each
/// answer plain.
#[test]
fn sipp_as_bobs_phone_answers_a_call_through_both_edges() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let bench = bench(d);
    let mut alice = Phone::on("127.0.0.1", bench.edge_a.port("udp"), "alice");
    let ok = register(d, &mut alice);
    assert_eq!(ok.status(), Some(200), "{}", bench.logs());
    // bob's REGISTER (through edge B, with Digest) binds SIPp's port.
    let sipp_port = common::live::port(41_000, 3);
    let mut bob_registrar = Phone::on("127.0.0.1", bench.edge_b.port("udp"), "bob");
    let realm = Realm {
        dir: d.to_owned(),
        name: "b.example.com".into(),
    };
    let contact = format!("<sip:bob@127.0.0.1:{sipp_port}>");
    let cert = bobs_cert(d);
    let with_cert = ["--cert", cert.as_str()];
    let first = bob_registrar.own_via(&realm.register_request("bob", &contact, &with_cert));
    bob_registrar.send(&first);
    let challenge = bob_registrar.final_response();
    let authorized = realm.authorized("bob", &contact, &challenge, &with_cert);
    let authorized = bob_registrar.own_via(&authorized);
    bob_registrar.send(&authorized);
    assert_eq!(
        bob_registrar.final_response().status(),
        Some(200),
        "{}",
        bench.logs()
    );

    let answer = sdp("bob", 1, "sendrecv").replace("\r\n", "\n");
    let scenario = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="bob's phone behind edge B">
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="application/sdp" search_in="hdr" header="Content-Type:" check_it="true" assign_to="1"/>
      <ereg regexp="m=audio 40000" search_in="body" check_it="true" assign_to="2"/>
    </action>
  </recv>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_Record-Route:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:bob@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_Record-Route:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:bob@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

{answer}]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="a=sendonly" search_in="body" check_it="true" assign_to="3"/>
    </action>
  </recv>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_Record-Route:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:bob@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

{answer}]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <Reference variables="1,2,3"/>
</scenario>
"#
    );
    let file = common::write(d, "bob-phone.xml", scenario.as_bytes());
    let mut sipp = common::live::Background(
        std::process::Command::new("sipp")
            .args(["-sf", s(&file), "-p", &sipp_port.to_string()])
            .args(["-i", "127.0.0.1", "-t", "u1", "-m", "1", "-nostdin"])
            .args(["-timeout", "30s", "-timeout_error", "-trace_err"])
            .current_dir(d)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sipp runs (.ci/run installs sip-tester)"),
    );
    std::thread::sleep(Duration::from_millis(300));

    let call_id = "edge-sipp-1";
    let offer = sdp("alice", 1, "sendrecv");
    let invite = format!(
        "INVITE sip:bob@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bK-s1;rport\r\nMax-Forwards: 70\r\n\
From: <sip:alice@b.example.com>;tag=a9\r\nTo: <sip:bob@b.example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:alice@{a}>\r\nContent-Type: application/sdp\r\nContent-Length: {n}\r\n\r\n{offer}",
        a = alice.local(),
        n = offer.len(),
    );
    alice.send(invite.as_bytes());
    // The final answer of transaction `cseq` (retransmissions of an
    // earlier one are passed over).
    let final_of = |alice: &Phone, cseq: u32| loop {
        let m = alice.recv_within(10).unwrap_or_else(|| {
            panic!(
                "no answer {cseq} at alice's phone\nSIPp: {}\n{}",
                sipp_errors(d),
                bench.logs()
            )
        });
        if m.status().is_some_and(|s| s >= 200) && m.cseq().is_ok_and(|c| c.seq == cseq) {
            return m;
        }
    };
    let ok = final_of(&alice, 1);
    assert_eq!(ok.status(), Some(200), "{}", bench.logs());
    assert_plain_sdp(&ok, "SIPp's 200 at alice's phone");
    let routes: Vec<String> = record_routes(&ok).into_iter().rev().collect();
    let target = addr_spec(ok.header("Contact").unwrap());
    let to = ok.header("To").unwrap().to_owned();
    let from = "<sip:alice@b.example.com>;tag=a9";
    let ack = in_dialog(
        &mut alice, "ACK", &target, &routes, from, &to, call_id, 1, "",
    );
    alice.send(&ack);
    let hold = in_dialog(
        &mut alice,
        "INVITE",
        &target,
        &routes,
        from,
        &to,
        call_id,
        2,
        &sdp("alice", 2, "sendonly"),
    );
    alice.send(&hold);
    let ok2 = final_of(&alice, 2);
    assert_eq!(ok2.status(), Some(200), "{}", bench.logs());
    assert_plain_sdp(&ok2, "SIPp's answer to the re-INVITE at alice's phone");
    let ack2 = in_dialog(
        &mut alice, "ACK", &target, &routes, from, &to, call_id, 2, "",
    );
    alice.send(&ack2);
    let bye = in_dialog(
        &mut alice, "BYE", &target, &routes, from, &to, call_id, 3, "",
    );
    alice.send(&bye);
    assert_eq!(final_of(&alice, 3).status(), Some(200), "{}", bench.logs());
    let errors = sipp_errors(d);
    assert_eq!(
        sipp.wait(20),
        Some(0),
        "SIPp failed: {errors}\n{}",
        bench.logs()
    );
}

/// A phone on TCP registers through its edge (the edge answers on that
/// connection; its own Contact in the 200); a request From an AOR the
/// edge has no identity for gets 403 naming the AORs it serves; SIGHUP
/// reloads.
#[test]
fn a_tcp_phone_registers_and_an_aor_without_identity_is_refused() {
    use common::realm::Wire;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let bench = bench(d);
    let realm = Realm {
        dir: d.to_owned(),
        name: "b.example.com".into(),
    };
    let mut wire = Wire::tcp(bench.edge_b.port("tcp"));
    let contact = format!("<sip:bob@{};transport=tcp>", wire.local());
    let first = wire.own_via(&realm.register_request("bob", &contact, &[]));
    wire.send(&first);
    let challenge = wire.final_response().expect("a 401 on the connection");
    assert_eq!(challenge.status(), Some(401), "{}", bench.logs());
    let authorized = wire.own_via(&realm.authorized("bob", &contact, &challenge, &[]));
    wire.send(&authorized);
    let ok = wire.final_response().expect("a 200 on the connection");
    assert_eq!(ok.status(), Some(200), "{}", bench.logs());
    let contacts = ok.header_list("Contact").join(",");
    assert!(
        contacts.contains(&format!("sip:bob@{};transport=tcp", wire.local())),
        "{contacts}"
    );

    // carol is not a user of edge B: 403, and the Warning says whom it serves.
    let mut carol = Phone::on("127.0.0.1", bench.edge_b.port("udp"), "carol");
    let options = in_dialog(
        &mut carol,
        "OPTIONS",
        "sip:alice@b.example.com",
        &[],
        "<sip:carol@b.example.com>;tag=c1",
        "<sip:alice@b.example.com>",
        "carol-1",
        1,
        "",
    );
    carol.send(&options);
    let refused = carol.final_response();
    assert_eq!(refused.status(), Some(403));
    let warning = refused.header("Warning").unwrap_or_default();
    assert!(warning.contains("sip:bob@b.example.com"), "{warning}");
    assert!(
        !bench.relay.log_text().contains("carol-1"),
        "the request went on"
    );

    bench.edge_b.signal("HUP");
    assert!(
        bench.edge_b.logged("\"reloaded\""),
        "{}",
        bench.edge_b.log_text()
    );
}

/// A call the sealer refuses (the peer has no certificate: 488 with a
/// Warning) ends at the edge: the phone's ACK of that 488 is absorbed
/// (RFC 3261 §16.11, the answer's To tag is the edge's own), never sent
/// on to the relay. (baresip's ACK of such a 488 reached the relays.)
#[test]
fn the_ack_of_a_refusal_by_the_edge_stays_at_the_edge() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let bench = bench(d);
    let mut alice = Phone::on("127.0.0.1", bench.edge_a.port("udp"), "alice");
    let ok = register(d, &mut alice);
    assert_eq!(ok.status(), Some(200), "{}", bench.logs());
    let call_id = "refused-call-1";
    let from = "<sip:alice@b.example.com>;tag=r1";
    let body = sdp("alice", 1, "sendrecv");
    let invite = in_dialog(
        &mut alice,
        "INVITE",
        "sip:nobody@b.example.com",
        &[],
        from,
        "<sip:nobody@b.example.com>",
        call_id,
        1,
        &body,
    );
    alice.send(&invite);
    let refused = alice.final_response();
    assert_eq!(refused.status(), Some(488), "{}", bench.logs());
    let warning = refused.header("Warning").unwrap_or_default();
    assert!(
        warning.contains("no certificate for sip:nobody@b.example.com"),
        "{warning}"
    );
    // The ACK: the INVITE's branch and CSeq number, the 488's To.
    let via = Message::parse(&invite)
        .unwrap()
        .header("Via")
        .unwrap()
        .to_owned();
    let to = refused.header("To").unwrap().to_owned();
    let ack = format!(
        "ACK sip:nobody@b.example.com SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    alice.send(ack.as_bytes());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        bench.edge_a.logged("absorbed"),
        "{}",
        bench.edge_a.log_text()
    );
    assert!(
        !bench.relay.log_text().contains(call_id),
        "the refused call reached the relay\n{}",
        bench.logs()
    );
}

/// alice's phone cancels a ringing call: bob's phone gets the CANCEL,
/// answers it 200 and the INVITE 487; alice's phone gets both, and its
/// ACK of the 487 reaches bob's phone.
#[test]
fn a_call_the_caller_cancels_is_cancelled_at_the_callees_phone() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let bench = bench(d);
    let mut alice = Phone::on("127.0.0.1", bench.edge_a.port("udp"), "alice");
    let mut bob = Phone::on("127.0.0.1", bench.edge_b.port("udp"), "bob");
    let cert = bobs_cert(d);
    assert_eq!(
        register(d, &mut alice).status(),
        Some(200),
        "{}",
        bench.logs()
    );
    assert_eq!(
        register_with(d, &mut bob, &["--cert", &cert]).status(),
        Some(200),
        "{}",
        bench.logs()
    );
    let call_id = "edge-cancel-1";
    let offer = sdp("alice", 1, "sendrecv");
    let head = |method: &str| {
        format!(
            "{method} sip:bob@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bK-c1;rport\r\nMax-Forwards: 70\r\n\
From: <sip:alice@b.example.com>;tag=a5\r\nTo: <sip:bob@b.example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n",
            a = alice.local()
        )
    };
    let invite = format!(
        "{}Contact: <sip:alice@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        head("INVITE"),
        alice.local(),
        offer.len()
    );
    alice.send(invite.as_bytes());
    let at_bob = loop {
        let m = bob.recv();
        if m.method() == Some("INVITE") {
            break m;
        }
    };
    bob.answer(&response(&at_bob, 180, "Ringing", "b5", &bob.contact(), ""));
    loop {
        if alice.recv().status() == Some(180) {
            break;
        }
    }
    alice.send(format!("{}Content-Length: 0\r\n\r\n", head("CANCEL")).as_bytes());
    let cancel = loop {
        let m = bob.recv();
        if m.method() == Some("CANCEL") {
            break m;
        }
    };
    bob.answer(&response(&cancel, 200, "OK", "b5", &bob.contact(), ""));
    bob.answer(&response(
        &at_bob,
        487,
        "Request Terminated",
        "b5",
        &bob.contact(),
        "",
    ));
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = alice
            .recv_within(10)
            .unwrap_or_else(|| panic!("alice got {got:?}\n{}", bench.logs()));
        if let (Some(status), Ok(cseq)) = (m.status(), m.cseq())
            && status >= 200
        {
            got.push((status, cseq.method));
        }
    }
    got.sort();
    assert_eq!(
        got,
        vec![(200, "CANCEL".to_owned()), (487, "INVITE".to_owned())],
        "{}",
        bench.logs()
    );
    alice.send(
        format!(
            "{}Content-Length: 0\r\n\r\n",
            head("ACK").replace(
                "To: <sip:bob@b.example.com>",
                "To: <sip:bob@b.example.com>;tag=b5"
            )
        )
        .as_bytes(),
    );
    let ack = loop {
        let m = bob.recv();
        if m.method() == Some("ACK") {
            break m;
        }
    };
    assert_eq!(ack.call_id().unwrap(), call_id);
}
