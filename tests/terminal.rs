//! `sipseal terminal` and the data channel end to end (issue 29): a
//! registrar and a relay (sipseal processes, the relay on mutual TLS,
//! serving b.example.com by location), `sipseal terminal` registered as
//! bob through the relay and serving a small HTTP service the test runs;
//! callers use the library's caller side (`datachannel::call`) over
//! their own TLS flow to the relay. alice (allowed) fetches a page over
//! the data channel and ends the call with a BYE, which closes the
//! channel; carol (not allowed) gets 403. The channel's refusal of a
//! wrong fingerprint is tested in `datachannel::tls`.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::live::Daemon;
use common::realm::Realm;
use common::{Succeeds, repo, s};
use sipseal::context::Context;
use sipseal::datachannel::call::{CallError, CallSpec, Dialogs, call};
use sipseal::envelope::Recipient;
use sipseal::keys::{Cert, Identity};
use sipseal::net::flow::{Flow, FlowLimits};
use sipseal::net::tls::TlsSetup;
use sipseal::net::{Hosts, Target};
use sipseal::sealing::SealSpec;
use sipseal::session::Limits;
use sipseal::state::MemoryStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAGE: &str = "<h1>terminal 2 says hello</h1>";

/// An HTTP service on 127.0.0.1 that answers every request on a
/// connection with PAGE (keep-alive: the connection stays open).
fn http_service() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        got.drain(..end + 4);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{PAGE}",
                            PAGE.len()
                        );
                        if conn.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// An HTTP service on 127.0.0.1 that answers one request per connection
/// with PAGE, then closes it (`Connection: close`).
fn http_service_once() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{PAGE}",
                            PAGE.len()
                        );
                        let _ = conn.write_all(answer.as_bytes());
                        return;
                    }
                }
            });
        }
    });
    port
}

fn identity(name: &str) -> Arc<Identity> {
    Arc::new(Identity::load_dir(&repo().join("keys").join(name)).unwrap())
}

fn cert(name: &str) -> Cert {
    Cert::load(&repo().join("keys").join(name).join("cert.pem")).unwrap()
}

fn trust() -> Vec<Cert> {
    Cert::load_all(&repo().join("keys/trust.pem")).unwrap()
}

/// A flow from `who` to the relay, over mutual TLS.
async fn flow_of(who: &str, relay: &str, hosts: &Path) -> Arc<Flow> {
    let hosts = Hosts::load(hosts).unwrap();
    let target = Target::parse(relay, &hosts).unwrap();
    let tls = TlsSetup::new(Some(&identity(who)), &trust()).unwrap();
    let (flow, _incoming) = Flow::connect(&target, Some(&tls), FlowLimits::default())
        .await
        .unwrap();
    Arc::new(flow)
}

/// [`flow_of`] whose requests (the terminal's BYE) are answered by the
/// caller's `dialogs`.
async fn flow_answering(who: &str, relay: &str, hosts: &Path, dialogs: &Dialogs) -> Arc<Flow> {
    let hosts = Hosts::load(hosts).unwrap();
    let target = Target::parse(relay, &hosts).unwrap();
    let tls = TlsSetup::new(Some(&identity(who)), &trust()).unwrap();
    let (flow, incoming) = Flow::connect(&target, Some(&tls), FlowLimits::default())
        .await
        .unwrap();
    let flow = Arc::new(flow);
    tokio::spawn(dialogs.clone().serve(Arc::downgrade(&flow), incoming));
    flow
}

fn spec(who: &str) -> CallSpec {
    spec_to(who, "bob-ec", false)
}

/// A call by `who` to bob, whose terminal runs with the identity
/// `keys/BOB`; `signed`: the answer must be signed by bob.
fn spec_to(who: &str, bob: &str, signed: bool) -> CallSpec {
    CallSpec {
        identity: identity(who),
        to: "sip:bob@b.example.com".into(),
        require_signed_answer: signed,
        seal: SealSpec {
            peers: vec![Recipient::Cert(Box::new(cert(bob)))],
            disclose: vec![Recipient::Cert(Box::new(cert("proxy-b-ec")))],
            ..Default::default()
        },
        trust: trust(),
        channel_ip: "127.0.0.1".parse().unwrap(),
        channel_allow: vec!["127.0.0.0/8".parse().unwrap()],
        answer_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        dialogs: Dialogs::default(),
    }
}

/// Wait (at most 10 s) for `text` in the daemon's log.
fn wait_logged(d: &Daemon, text: &str) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < until {
        if d.log_text().contains(text) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A registrar, a relay on TLS serving b.example.com (with `relay_extra`
/// flags), and `sipseal terminal` as bob (with `extra` flags) serving
/// `service`; the relay's address as `--outbound` names it, and the hosts
/// file that resolves it.
struct Setup {
    registrar: Daemon,
    relay: Daemon,
    terminal: Daemon,
    outbound: String,
    ua_hosts: std::path::PathBuf,
}

impl Setup {
    fn start(d: &Path, service: u16, relay_extra: &[&str], extra: &[&str]) -> Setup {
        Setup::start_as(d, service, relay_extra, extra, "keys/bob-ec")
    }

    /// [`Setup::start`] with the terminal's identity `bob` (a directory).
    fn start_as(d: &Path, service: u16, relay_extra: &[&str], extra: &[&str], bob: &str) -> Setup {
        let realm = Realm::new(d, "b.example.com", &["bob"], false);
        let registry = d.join("registry");
        let registrar = realm.registrar(s(&registry), &["udp:127.0.0.1:0"], &[]);
        let relay_hosts = common::write(
            d,
            "relay-hosts",
            format!("127.0.0.1:{} b.example.com\n", registrar.port("udp")).as_bytes(),
        );
        let mut args = vec![
            "relay",
            "--listen",
            "tls:127.0.0.1:0",
            "--listen",
            "udp:127.0.0.1:0",
            "--identity",
            "keys/proxy-b-ec",
            "--trust",
            "keys/trust.pem",
            "--domain",
            "b.example.com",
            "--registrations",
            s(&registry),
            "--hosts",
            s(&relay_hosts),
            "--record-route",
        ];
        args.extend_from_slice(relay_extra);
        let relay = Daemon::start(d, "relay", &args);
        let ua_hosts = common::write(
            d,
            "ua-hosts",
            format!("127.0.0.1:{} proxy-b.b.example.com\n", relay.port("tls")).as_bytes(),
        );
        let outbound = format!("tls:proxy-b.b.example.com:{}", relay.port("tls"));
        let pw = d.join("bob.pw");
        std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let serve = format!("http://127.0.0.1:{service}");
        let mut args = vec![
            "terminal",
            "--identity",
            bob,
            "--trust",
            "keys/trust.pem",
            "--outbound",
            &outbound,
            "--hosts",
            s(&ua_hosts),
            "--password-file",
            s(&pw),
            "--allow",
            "sip:alice@a.example.com",
            "--serve",
            &serve,
        ];
        args.extend_from_slice(extra);
        let terminal = Daemon::start(d, "terminal", &args);
        Setup {
            registrar,
            relay,
            terminal,
            outbound,
            ua_hosts,
        }
    }

    fn logs(&self) -> String {
        format!(
            "terminal:\n{}\nrelay:\n{}\nregistrar:\n{}",
            self.terminal.log_text(),
            self.relay.log_text(),
            self.registrar.log_text()
        )
    }
}

/// One GET over a call's channel: the page's text.
async fn fetch(channel: &mut sipseal::datachannel::tls::ClientChannel) -> String {
    channel
        .write_all(b"GET / HTTP/1.1\r\nHost: terminal\r\n\r\n")
        .await
        .unwrap();
    let mut page = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&page).contains(PAGE) {
        let n = tokio::time::timeout(Duration::from_secs(10), channel.read(&mut buf))
            .await
            .expect("the page in time")
            .unwrap();
        assert!(n > 0, "the channel closed before the page");
        page.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&page).into_owned()
}

/// An RSA terminal signs its answer inside, so a caller can require the
/// destination's signature (a relay the INVITE disclosed to holds the
/// session key the answer is sealed under, but cannot rewrite the
/// channel's address and fingerprint unseen); an EC terminal's answer is
/// unsigned, and such a caller refuses it before any channel.
#[test]
fn a_caller_that_requires_it_takes_only_an_answer_the_destination_signed() {
    let rsa = tempfile::tempdir().unwrap();
    let setup = Setup::start_as(rsa.path(), http_service(), &[], &[], "keys/bob");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = MemoryStore::new();
        let mut ctx = Context::new(None, None);
        let flow = flow_of("alice", &setup.outbound, &setup.ua_hosts).await;
        let mut up = call(
            &flow,
            &spec_to("alice", "bob", true),
            &store,
            Limits::default(),
            &mut ctx,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", setup.logs()));
        let by = up.answered_by.clone().unwrap_or_default();
        assert!(by.contains("bob"), "answered by {by:?}");
        assert!(fetch(&mut up.channel).await.starts_with("HTTP/1.1 200 OK"));
        let code = up
            .bye
            .send(&store, Limits::default(), Duration::from_secs(10), &mut ctx)
            .await
            .unwrap();
        assert_eq!(code, 200);
    });
    drop(setup);
    let ec = tempfile::tempdir().unwrap();
    let setup = Setup::start(ec.path(), http_service(), &[], &[]);
    rt.block_on(async {
        let store = MemoryStore::new();
        let mut ctx = Context::new(None, None);
        let flow = flow_of("alice", &setup.outbound, &setup.ua_hosts).await;
        let refused = call(
            &flow,
            &spec_to("alice", "bob-ec", true),
            &store,
            Limits::default(),
            &mut ctx,
        )
        .await;
        assert!(
            matches!(refused, Err(CallError::UnsignedAnswer)),
            "{:?}\n{}",
            refused.err(),
            setup.logs()
        );
        assert!(!setup.terminal.log_text().contains("channel up"));
    });
}

#[test]
fn the_flow_outlives_the_relays_idle_timeout_on_keep_alives() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let setup = Setup::start(
        d,
        http_service(),
        &["--idle-timeout", "2"],
        &["--keepalive", "1"],
    );
    // Past the relay's idle timeout twice over: the flow is still there.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !setup.terminal.log_text().contains("flow closed"),
        "{}",
        setup.logs()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = MemoryStore::new();
        let mut ctx = Context::new(None, None);
        let flow = flow_of("alice", &setup.outbound, &setup.ua_hosts).await;
        let mut up = call(&flow, &spec("alice"), &store, Limits::default(), &mut ctx)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", setup.logs()));
        assert!(fetch(&mut up.channel).await.starts_with("HTTP/1.1 200 OK"));
        let code = up
            .bye
            .send(&store, Limits::default(), Duration::from_secs(10), &mut ctx)
            .await
            .unwrap();
        assert_eq!(code, 200);
    });
}

#[test]
fn the_terminal_reopens_its_flow_and_registers_again_when_the_relay_closes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Keep-alives slower than the relay's idle timeout: the relay closes
    // the flow after 4 s idle (2 s closed it on a loaded machine before
    // the new flow's handshake and Digest round trip were through: the
    // test then saw a flow that could never register).
    let setup = Setup::start(
        d,
        http_service(),
        &["--idle-timeout", "4"],
        &["--keepalive", "60"],
    );
    assert!(
        wait_logged(&setup.terminal, "\"flow closed\""),
        "{}",
        setup.logs()
    );
    // Registered again after the close: a second "registered" line.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while setup.terminal.log_text().matches("\"registered\"").count() < 2 {
        assert!(
            std::time::Instant::now() < until,
            "not registered again\n{}",
            setup.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = MemoryStore::new();
        let mut ctx = Context::new(None, None);
        let flow = flow_of("alice", &setup.outbound, &setup.ua_hosts).await;
        let mut up = call(&flow, &spec("alice"), &store, Limits::default(), &mut ctx)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", setup.logs()));
        assert!(fetch(&mut up.channel).await.contains(PAGE));
    });
}

#[test]
fn a_caller_reaches_the_service_behind_the_terminal_over_a_sealed_data_channel() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let report = d.join("report.jsonl");
    let setup = Setup::start(
        d,
        http_service(),
        &["--report", s(&report)],
        &["--idle", "20", "--min-route-level", "3"],
    );
    let Setup {
        registrar,
        relay,
        mut terminal,
        outbound,
        ua_hosts,
    } = setup;
    let logs = || {
        format!(
            "terminal:\n{}\nrelay:\n{}\nregistrar:\n{}",
            terminal.log_text(),
            relay.log_text(),
            registrar.log_text()
        )
    };

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = MemoryStore::new();
        let mut ctx = Context::new(None, None);

        // alice is allowed: the page comes over the data channel.
        let flow = flow_of("alice", &outbound, &ua_hosts).await;
        let alice = spec("alice");
        let calling = call(&flow, &alice, &store, Limits::default(), &mut ctx);
        // The gateway spawns a call per access: its future must be Send.
        fn is_send<T: Send>(_: &T) {}
        is_send(&calling);
        let mut up = match calling.await {
            Ok(c) => c,
            Err(e) => panic!("alice's call: {e}\n{}", logs()),
        };
        // The relay the INVITE disclosed to opened it, and the 200 under
        // the session key: the answer's SDP is sealed for it too.
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&report)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|l: &serde_json::Value| l["call_id"] == up.call_id.as_str())
            .collect();
        let opened = |status: Option<u64>| {
            lines
                .iter()
                .any(|l| l["opened"] == true && l["status"].as_u64() == status)
        };
        assert!(opened(None) && opened(Some(200)), "{lines:?}\n{}", logs());
        assert_eq!(up.answer.addr.ip().to_string(), "127.0.0.1");
        assert!(fetch(&mut up.channel).await.starts_with("HTTP/1.1 200 OK"));

        // The BYE ends the call: 200, and the terminal closes the channel.
        let code = up
            .bye
            .send(&store, Limits::default(), Duration::from_secs(10), &mut ctx)
            .await
            .unwrap();
        assert_eq!(code, 200, "{}", logs());
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), up.channel.read(&mut buf))
            .await
            .expect("the channel closes after the BYE");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

        // An answer that sends the caller where it may not connect is
        // refused after the ACK, and the call ended with a BYE.
        let mut confined = spec("alice");
        confined.channel_allow = vec!["192.0.2.0/24".parse().unwrap()];
        match call(&flow, &confined, &store, Limits::default(), &mut ctx).await {
            Err(CallError::Sdp(e)) => assert!(e.to_string().contains("outside"), "{e}"),
            Err(e) => panic!("confined: {e}\n{}", logs()),
            Ok(_) => panic!("the caller connected outside --channel-allow"),
        }

        // carol is not in the allow-list: 403, with the terminal's Warning.
        let flow = flow_of("carol", &outbound, &ua_hosts).await;
        let refused = call(&flow, &spec("carol"), &store, Limits::default(), &mut ctx).await;
        match refused {
            Err(e @ CallError::Refused { code: 403, .. }) => {
                assert!(e.to_string().contains("may not call"), "{e}")
            }
            Err(e) => panic!("carol: {e}\n{}", logs()),
            Ok(_) => panic!("carol got through\n{}", logs()),
        }
    });
    assert!(wait_logged(&terminal, "\"channel closed\""), "{}", logs());
    // Both calls ended with a BYE the terminal answered 200.
    let byes = terminal.log_text().matches("\"event\":\"bye\"").count();
    assert_eq!(byes, 2, "{}", logs());
    assert!(
        !terminal.log_text().contains("\"status\":481"),
        "{}",
        logs()
    );
    assert!(terminal.log_text().contains("\"answered\""), "{}", logs());

    // SIGTERM: the terminal removes its binding and stops; a call for bob
    // finds nobody (480).
    let log = terminal.stop();
    assert!(log.contains("\"event\":\"stopped\""), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let after = rt.block_on(async {
        let store = MemoryStore::new();
        let mut ctx = Context::new(None, None);
        let flow = flow_of("alice", &outbound, &ua_hosts).await;
        call(&flow, &spec("alice"), &store, Limits::default(), &mut ctx)
            .await
            .err()
            .and_then(|e| e.status())
    });
    assert_eq!(after, Some(480), "{}", relay.log_text());
}

/// issue 29 item 1: a re-INVITE in the call, first a key update (a full
/// envelope for bob and the disclosed relay, whose new key seals the
/// 200), then one under that new session key; the channel goes on. Then
/// the service closes its connection: the terminal ends the call with a
/// BYE to the caller's Contact on the flow (the relay's Record-Route as
/// its Route), which the caller's side answers 200 and reports.
#[test]
fn a_re_invite_rekeys_the_call_and_the_terminal_says_bye_when_the_service_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let report = d.join("report.jsonl");
    let setup = Setup::start(
        d,
        http_service_once(),
        // The caller's Contact is its flow's address, on the loopback here.
        &["--report", s(&report), "--hop-allow", "127.0.0.0/8"],
        &["--idle", "20"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = MemoryStore::new();
        let mut ctx = Context::new(None, None);
        let alice = spec("alice");
        let flow = flow_answering("alice", &setup.outbound, &setup.ua_hosts, &alice.dialogs).await;
        let mut up = call(&flow, &alice, &store, Limits::default(), &mut ctx)
            .await
            .unwrap_or_else(|e| panic!("alice's call: {e}\n{}", setup.logs()));
        let call_id = up.call_id.clone();
        let reference = |store: &MemoryStore| {
            use sipseal::state::SessionStore;
            store
                .load("sip:alice@a.example.com")
                .unwrap()
                .find(&call_id)
                .map(|e| e.reference.clone())
                .unwrap()
        };
        let first = reference(&store);
        up.reinvite(&alice, &store, Limits::default(), true, &mut ctx)
            .await
            .unwrap_or_else(|e| panic!("the rekey: {e}\n{}", setup.logs()));
        let second = reference(&store);
        assert_ne!(first, second, "a key update gives a new session key");
        up.reinvite(&alice, &store, Limits::default(), false, &mut ctx)
            .await
            .unwrap_or_else(|e| panic!("the re-INVITE: {e}\n{}", setup.logs()));
        assert_eq!(reference(&store), second, "sealed under the new key");
        // The channel went on through both.
        assert!(fetch(&mut up.channel).await.starts_with("HTTP/1.1 200 OK"));
        // The service closed after its answer: so does the channel; the
        // caller closes its side, and the terminal ends the call.
        let mut rest = [0u8; 256];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), up.channel.read(&mut rest)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => {}
                Err(_) => panic!("the channel stays open\n{}", setup.logs()),
            }
        }
        let _ = up.channel.shutdown().await;
        tokio::time::timeout(Duration::from_secs(10), up.ended.wait())
            .await
            .unwrap_or_else(|_| panic!("no BYE from the terminal\n{}", setup.logs()));
        assert!(alice.dialogs.is_empty());
    });
    let log = setup.terminal.log_text();
    let reinvited: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"reinvited\""))
        .collect();
    assert_eq!(reinvited.len(), 2, "{}", setup.logs());
    assert!(reinvited[0].contains("\"rekey\":true"), "{}", reinvited[0]);
    assert!(reinvited[1].contains("\"rekey\":false"), "{}", reinvited[1]);
    assert!(
        wait_logged(&setup.terminal, "\"event\":\"bye sent\""),
        "{}",
        setup.logs()
    );
    let log = setup.terminal.log_text();
    let sent = log.lines().find(|l| l.contains("\"bye sent\"")).unwrap();
    assert!(sent.contains("\"status\":200"), "{sent}\n{}", setup.logs());
    // The key update crossed the relay the offer disclosed to, which
    // opened it as a full envelope (it holds the new key too).
    let invites = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"method\":\"INVITE\"") && !l.contains("\"status\":"))
        .count();
    assert_eq!(invites, 3, "{}", setup.logs());
}

/// A REGISTER with an RSA key's CSR is over 1,300 bytes: the relay tries
/// TCP to the registrar's port (RFC 3261 §18.1.1), finds it refused (the
/// registrar listens on UDP alone) and sends it over UDP after all. Its
/// Via and its Route-Security entry then name its UDP listener, so the
/// registrar's 200 (with the certificate) is taken back, not dropped as
/// carrying another hop's entry.
#[test]
fn an_enrolling_register_too_large_for_udp_reaches_a_registrar_on_udp_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let me = d.join("bob-rsa");
    std::fs::create_dir_all(&me).unwrap();
    let key = me.join("key.pem");
    std::fs::copy(repo().join("keys/bob/key.pem"), &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let realm_ca = d.join("ca/cert.pem");
    let setup = Setup::start_as(
        d,
        http_service(),
        &["--trust", s(&realm_ca)],
        &[
            "--enrol",
            "--bootstrap",
            "keys/bob",
            "--trust",
            s(&realm_ca),
        ],
        s(&me),
    );
    assert!(
        wait_logged(&setup.terminal, " registered for "),
        "{}",
        setup.logs()
    );
    assert!(
        setup
            .terminal
            .log_text()
            .contains("\"certificate installed\""),
        "{}",
        setup.logs()
    );
    let installed = Cert::load(&me.join("cert.pem")).unwrap();
    assert_eq!(installed.uri().as_deref(), Some("sip:bob@b.example.com"));
    // It did go the long way: TCP refused, then UDP.
    assert!(
        setup.relay.log_text().contains("sent instead to"),
        "{}",
        setup.logs()
    );
    assert!(
        !setup.relay.log_text().contains("drop: Route-Security"),
        "{}",
        setup.logs()
    );
}

/// issue 29 item 1, "CSR or certificate": a terminal whose identity is
/// a key alone (`--enrol`) opens its flow with a bootstrap certificate
/// for its AOR (keys/bob-ec), registers with a CSR and Digest, installs
/// the certificate the registrar's signed 200 returns (its key's, naming
/// the AOR, chaining to the registrar's CA) and answers calls sealed for
/// that certificate.
#[test]
fn a_terminal_without_a_certificate_enrols_at_registration_and_answers_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let me = d.join("bob-new");
    common::sipseal()
        .current_dir(d)
        .args(["keys", "generate", "--uri", "sip:bob@b.example.com"])
        .args(["--type", "p256", "--csr", "--out", s(&me)])
        .succeeds();
    assert!(!me.join("cert.pem").exists());
    let realm_ca = d.join("ca/cert.pem");
    let setup = Setup::start_as(
        d,
        http_service(),
        // The relay takes the registrar's CA too: the terminal presents
        // its new certificate when it opens its flow again.
        &["--trust", s(&realm_ca)],
        &[
            "--enrol",
            "--bootstrap",
            "keys/bob-ec",
            "--trust",
            s(&realm_ca),
        ],
        s(&me),
    );
    assert!(
        wait_logged(&setup.terminal, " registered for "),
        "{}",
        setup.logs()
    );
    assert!(
        setup
            .terminal
            .log_text()
            .contains("\"certificate installed\""),
        "{}",
        setup.logs()
    );
    let installed = Cert::load(&me.join("cert.pem")).unwrap();
    assert_eq!(installed.uri().as_deref(), Some("sip:bob@b.example.com"));
    let key = sipseal::keys::identity::load_any_private_key(&me.join("key.pem")).unwrap();
    assert!(
        installed.is_key_of(&key),
        "the certificate is for the terminal's key"
    );
    let anchors = Cert::load_all(&realm_ca).unwrap();
    sipseal::keys::trust::check_chain(&installed, &[], &anchors).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = MemoryStore::new();
        let mut ctx = Context::new(None, None);
        let flow = flow_of("alice", &setup.outbound, &setup.ua_hosts).await;
        let mut alice = spec("alice");
        alice.seal.peers = vec![Recipient::Cert(Box::new(installed.clone()))];
        alice.trust.extend(anchors.clone());
        let mut up = call(&flow, &alice, &store, Limits::default(), &mut ctx)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "a call sealed for the new certificate: {e}\n{}",
                    setup.logs()
                )
            });
        assert!(fetch(&mut up.channel).await.starts_with("HTTP/1.1 200 OK"));
        let code = up
            .bye
            .send(&store, Limits::default(), Duration::from_secs(10), &mut ctx)
            .await
            .unwrap();
        assert_eq!(code, 200);
    });
}

/// Through two relays, the caller's with `--next` (as the gateway's): the
/// terminal's BYE (its `--idle` ended the call) follows the Record-Route
/// back, and the caller's edge relay sends it down the caller's flow by
/// the flow token in its Record-Route entry (RFC 5626 §5.3), not to its
/// next hop.
#[test]
fn through_two_relays_the_terminals_bye_comes_down_the_callers_flow() {
    let tmp = tempfile::tempdir().unwrap();
    let path = common::callpath::CallPath::start(tmp.path(), http_service(), &["--idle", "1"]);
    path.wait_registered();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = MemoryStore::new();
        let mut ctx = Context::new(None, None);
        let mut alice = spec_to("alice", "bob", true);
        alice.seal.disclose = vec![Recipient::Cert(Box::new(cert("proxy-a-ec")))];
        let flow = flow_answering("alice", &path.outbound, &path.hosts, &alice.dialogs).await;
        let mut up = call(&flow, &alice, &store, Limits::default(), &mut ctx)
            .await
            .unwrap_or_else(|e| panic!("alice's call: {e}\n{}", path.logs()));
        assert!(fetch(&mut up.channel).await.starts_with("HTTP/1.1 200 OK"));
        tokio::time::timeout(Duration::from_secs(15), up.ended.wait())
            .await
            .unwrap_or_else(|_| panic!("no BYE from the terminal\n{}", path.logs()));
    });
    assert!(
        wait_logged(&path.terminal, "\"bye sent\""),
        "{}",
        path.logs()
    );
    let log = path.terminal.log_text();
    let sent = log.lines().find(|l| l.contains("\"bye sent\"")).unwrap();
    assert!(sent.contains("\"status\":200"), "{sent}\n{}", path.logs());
}

#[test]
fn flags_that_cannot_work_are_refused_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = common::write(tmp.path(), "pw", b"secret\n");
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let base = |outbound: &str, allow: &str, serve: &str| {
        common::sipseal()
            .current_dir(repo())
            .args([
                "terminal",
                "--identity",
                "keys/bob-ec",
                "--trust",
                "keys/trust.pem",
            ])
            .args(["--outbound", outbound, "--password-file", s(&pw)])
            .args(["--allow", allow, "--serve", serve])
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap()
    };
    for (outbound, allow, serve, says) in [
        (
            "udp:127.0.0.1:5060",
            "sip:alice@a.example.com",
            "http://127.0.0.1:8080",
            "mutual TLS",
        ),
        (
            "tls:127.0.0.1:5061",
            "alice",
            "http://127.0.0.1:8080",
            "not an AOR",
        ),
        (
            "tls:127.0.0.1:5061",
            "sip:alice@a.example.com",
            "https://127.0.0.1:8080",
            "http://IP:PORT",
        ),
    ] {
        let out = base(outbound, allow, serve);
        let err = common::text(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says) && err.contains("hint:"), "{err}");
    }
    // --enrol with a key and no certificate, and nothing to open the
    // mutual-TLS flow with: exit 2, naming --bootstrap.
    let key_only = tmp.path().join("key-only");
    common::sipseal()
        .args(["keys", "generate", "--uri", "sip:bob@b.example.com"])
        .args(["--type", "p256", "--csr", "--out", s(&key_only)])
        .succeeds();
    let out = common::sipseal()
        .current_dir(repo())
        .args(["terminal", "--enrol", "--identity", s(&key_only)])
        .args([
            "--trust",
            "keys/trust.pem",
            "--outbound",
            "tls:127.0.0.1:5061",
        ])
        .args([
            "--password-file",
            s(&pw),
            "--allow",
            "sip:alice@a.example.com",
        ])
        .args(["--serve", "http://127.0.0.1:8080"])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    let err = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--bootstrap") && err.contains("hint:"),
        "{err}"
    );
    // Nothing listens at --outbound: exit 4, with a hint.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = base(
        &format!("tls:127.0.0.1:{port}"),
        "sip:alice@a.example.com",
        "http://127.0.0.1:8080",
    );
    let err = common::text(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("hint:"), "{err}");
}
