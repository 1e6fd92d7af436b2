//! The registrar with real user agents' habits and the relay's location
//! service (docs/SPEC.md §6, §7): a REGISTER through the relay gets its 200 with
//! the certificate, is bound with the relay's Path (RFC 3327) and flow
//! (RFC 5626); a request for the user goes to it on that flow, with no
//! --next; 480 and 404 for users without a live binding; a retransmitted
//! REGISTER gets the same answer; an OPTIONS ping gets 200; the registry
//! can live in Redis.

mod common;

use common::live::{Daemon, Redis, hosts};
use common::realm::{Realm, Wire};
use common::s;
use sipseal::sip::Message;

/// A request from `wire` to `uri`, its Via naming the wire, its From
/// with the transport as user agents that dial with one write it.
fn request(wire: &Wire, method: &str, uri: &str, call_id: &str) -> Vec<u8> {
    format!(
        "{method} {uri} SIP/2.0\r\n\
Via: SIP/2.0/{} {};branch=z9hG4bK{call_id}\r\n\
Max-Forwards: 70\r\n\
From: <sip:bob@example.com;transport={}>;tag=b1\r\n\
To: <{uri}>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 {method}\r\n\
Contact: <sip:bob@{}>\r\n\
Content-Length: 0\r\n\r\n",
        wire.token(),
        wire.local(),
        wire.token().to_ascii_lowercase(),
        wire.local()
    )
    .into_bytes()
}

/// `user` registers through `wire`: REGISTER, 401, the authorized retry;
/// the 200.
fn register(realm: &Realm, wire: &mut Wire, user: &str, extra: &[&str]) -> Message {
    let contact = format!(
        "sip:{user}@{};transport={}",
        wire.local(),
        wire.token().to_ascii_lowercase()
    );
    let first = wire.own_via(&realm.register_request(user, &contact, extra));
    wire.send(&first);
    let challenge = wire.final_response().expect("a 401");
    assert_eq!(challenge.status(), Some(401), "{challenge:?}");
    let second = wire.own_via(&realm.authorized(user, &contact, &challenge, extra));
    wire.send(&second);
    wire.final_response().expect("a 200")
}

fn relay(realm: &Realm, registrations: &str, registrar_port: u16) -> Daemon {
    let hosts = hosts(&realm.dir, &[("example.com", registrar_port)]);
    Daemon::start(
        &realm.dir,
        "relay",
        &[
            "relay",
            "--listen",
            "udp:127.0.0.1:0",
            "--listen",
            "tcp:127.0.0.1:0",
            "--identity",
            "keys/proxy-b-ec",
            "--domain",
            "example.com",
            "--registrations",
            registrations,
            "--hosts",
            s(&hosts),
            "--record-route",
        ],
    )
}

fn location_on(state: &str, realm: &Realm) {
    let registrar = realm.registrar(state, &["udp:127.0.0.1:0"], &[]);
    let relay = relay(realm, state, registrar.port("udp"));

    // alice registers through the relay over TCP, with a CSR: the 200
    // with her certificate comes back through the relay.
    let mut alice = Wire::tcp(relay.port("tcp"));
    let ok = register(realm, &mut alice, "alice", &["--identity", "alice"]);
    assert_eq!(ok.status(), Some(200), "{}", relay.log_text());
    assert!(
        String::from_utf8_lossy(&ok.to_bytes()).contains("smime-type=certs-only"),
        "the certificate came through"
    );
    assert!(!relay.log_text().contains("drop:"), "{}", relay.log_text());
    assert!(registrar.logged("certificate"), "{}", registrar.log_text());

    // bob, on UDP, registers too (the relay's imposture check holds him
    // to the address he registered from: the flow through the relay; he
    // calls at once, before the relay's next reading of the
    // registrations), then calls alice by her AOR; the relay has no
    // --next: the INVITE reaches alice on the connection she registered on.
    let mut bob = Wire::udp(relay.port("udp"));
    assert_eq!(register(realm, &mut bob, "bob", &[]).status(), Some(200));
    bob.send(&request(&bob, "INVITE", "sip:alice@example.com", "call-1"));
    let invite = alice.recv().unwrap_or_else(|| {
        panic!(
            "alice gets the INVITE on her flow\n{}\n{}",
            relay.log_text(),
            registrar.log_text()
        )
    });
    assert_eq!(invite.method(), Some("INVITE"));
    assert!(
        invite
            .request_uri()
            .unwrap()
            .starts_with("sip:alice@127.0.0.1:"),
        "the Request-URI is her Contact: {}",
        invite.request_uri().unwrap()
    );
    assert_eq!(
        invite.header_list("Via").len(),
        2,
        "the relay's Via and bob's"
    );

    // carol never registered: 404; the same as a user who does not exist.
    bob.send(&request(&bob, "INVITE", "sip:carol@example.com", "call-2"));
    assert_eq!(bob.final_response().unwrap().status(), Some(404));
    // dave registered and left (Expires: 0): 480.
    let mut dave = Wire::udp(relay.port("udp"));
    let ok = register(realm, &mut dave, "dave", &["--expires", "0"]);
    assert_eq!(ok.status(), Some(200));
    bob.send(&request(&bob, "INVITE", "sip:dave@example.com", "call-3"));
    assert_eq!(bob.final_response().unwrap().status(), Some(480));
}

#[test]
fn requests_for_a_served_domain_find_the_user_agent_on_its_flow() {
    let tmp = tempfile::tempdir().unwrap();
    let realm = Realm::new(tmp.path(), "example.com", &["alice", "bob", "dave"], false);
    common::sipseal()
        .current_dir(&realm.dir)
        .args([
            "keys",
            "generate",
            "--type",
            "p256",
            "--uri",
            "sip:alice@example.com",
        ])
        .args(["--csr", "--out", "alice"])
        .output()
        .unwrap();
    location_on(s(&realm.dir.join("registry")), &realm);
}

#[test]
fn relays_and_registrars_share_the_registry_in_redis() {
    let tmp = tempfile::tempdir().unwrap();
    let realm = Realm::new(tmp.path(), "example.com", &["alice", "bob", "dave"], false);
    common::sipseal()
        .current_dir(&realm.dir)
        .args([
            "keys",
            "generate",
            "--type",
            "p256",
            "--uri",
            "sip:alice@example.com",
        ])
        .args(["--csr", "--out", "alice"])
        .output()
        .unwrap();
    let redis = Redis::start();
    location_on(&redis.url(), &realm);
}

#[test]
fn a_retransmitted_register_gets_the_same_answer_and_a_ping_200() {
    let tmp = tempfile::tempdir().unwrap();
    let realm = Realm::new(tmp.path(), "example.com", &["alice"], false);
    let registrar = realm.registrar(s(&realm.dir.join("registry")), &["udp:127.0.0.1:0"], &[]);
    let mut alice = Wire::udp(registrar.port("udp"));
    let contact = format!("sip:alice@{}", alice.local());
    // To the registrar's own address, as SIPp and many phones send it
    // (the Digest uri is that Request-URI too).
    let own = format!("sip:127.0.0.1:{}", registrar.port("udp"));
    let to_own = ["--registrar", own.as_str()];
    let first = alice.own_via(&realm.register_request("alice", &contact, &to_own));
    assert!(first.starts_with(format!("REGISTER {own} ").as_bytes()));
    alice.send(&first);
    let challenge = alice.final_response().unwrap();
    assert_eq!(challenge.status(), Some(401), "{}", registrar.log_text());
    let second = alice.own_via(&realm.authorized("alice", &contact, &challenge, &to_own));
    alice.send(&second);
    let ok = alice.final_response().unwrap();
    assert_eq!(ok.status(), Some(200), "{}", registrar.log_text());
    // The UA did not hear the 200 and sends the request again.
    alice.send(&second);
    let again = alice.final_response().unwrap();
    assert_eq!(
        again.to_bytes(),
        ok.to_bytes(),
        "the same answer, not a 401"
    );
    assert!(registrar.logged("answer again"), "{}", registrar.log_text());
    let registered = registrar
        .log_lines()
        .iter()
        .filter(|l| {
            l["decision"]
                .as_str()
                .is_some_and(|d| d.contains("registered"))
        })
        .count();
    assert_eq!(registered, 1, "{}", registrar.log_text());
    // An OPTIONS keep-alive ping.
    let ping = format!(
        "OPTIONS sip:127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKping\r\nFrom: <sip:alice@example.com>;tag=p\r\nTo: <sip:127.0.0.1:{}>\r\nCall-ID: ping\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        registrar.port("udp"),
        alice.local(),
        registrar.port("udp")
    );
    alice.send(ping.as_bytes());
    assert_eq!(alice.final_response().unwrap().status(), Some(200));
}

#[test]
fn sipp_registers_with_the_registrars_address_as_its_request_uri() {
    let tmp = tempfile::tempdir().unwrap();
    // SIPp computes MD5 only, and answers the first challenge.
    let realm = Realm::new(tmp.path(), "example.com", &["alice"], true);
    let registrar = realm.registrar(
        s(&realm.dir.join("registry")),
        &["udp:127.0.0.1:0"],
        &["--digest-algorithms", "md5,sha-256"],
    );
    let scenario = common::repo().join("samples/sipp/register.xml");
    let local = common::live::port(31_000, 0);
    let mut sipp = common::live::Background(
        std::process::Command::new("sipp")
            .arg(format!("127.0.0.1:{}", registrar.port("udp")))
            .args(["-sf", s(&scenario), "-m", "1", "-s", "alice"])
            .args([
                "-au",
                "alice",
                "-ap",
                "alice-pw",
                "-key",
                "domain",
                "example.com",
            ])
            .args(["-i", "127.0.0.1", "-p", &local.to_string(), "-t", "u1"])
            .args(["-nostdin", "-timeout", "20s", "-timeout_error"])
            .current_dir(&realm.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sipp runs (.ci/run installs sip-tester)"),
    );
    assert_eq!(sipp.wait(30), Some(0), "{}", registrar.log_text());
    assert!(
        registrar.logged("200 registered sip:alice@example.com"),
        "{}",
        registrar.log_text()
    );
}
