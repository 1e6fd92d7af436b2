//! Issue 29's "SIP path in a capture": tshark on the loopback while a
//! user reaches the service behind `sipseal terminal` through `sipseal
//! gateway` (tests/common/callpath.rs: relay A designated, relay B
//! blind, every SIP link mutual TLS), every process logging its TLS
//! secrets to one `SSLKEYLOGFILE`. From the capture, decrypted with that
//! file: the INVITE crosses gateway → A → B → terminal, sealed on every
//! hop, for bob and relay A only; the data channel's handshake runs on
//! the addresses the sealed SDP named, with the certificates whose
//! fingerprints it carried; a client with another certificate is
//! refused on the wire. The capture, the key log and tshark's text stay
//! under target/tmp/captures. Without tshark the test says SKIPPED.
//! And a key log that cannot be written is told at a daemon's start.
#![cfg(feature = "live")]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::callpath::{self, CallPath, Options};
use common::cms::{recipient_skis, ski};
use common::live::{Background, Daemon, tshark};
use common::{Succeeds, s, sipseal, write};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sipseal::context::Context;
use sipseal::datachannel::sdp::{ChannelSdp, Fingerprint};
use sipseal::datachannel::tls::{ChannelCert, connect};
use sipseal::sip::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The address the terminal's data channels listen on: an address of
/// their own on the loopback, so that the capture filter can name them
/// before their ports are known.
const CHANNEL_IP: &str = "127.0.0.5";

/// What the service behind the terminal answers.
const PAGE: &str = "<html><body><h1>Captured service</h1></body></html>";

/// A port free now on 127.0.0.1 (for a relay, so that the capture
/// filter can name it before the relay starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The HTTP service behind the terminal: [`PAGE`] for any request.
async fn service() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("content-type", "text/html")
                                .body(Full::new(Bytes::from(PAGE)))
                                .unwrap(),
                        )
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// One HTTPS request to the gateway (its certificate checked as a SIP
/// server's, keys/proxy-a, by the library's TLS client): status, the
/// headers wanted, body.
async fn https(
    gateway: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, String) {
    let trust = sipseal::keys::Cert::load_all(&common::repo().join("keys/trust.pem")).unwrap();
    let setup = sipseal::net::tls::TlsSetup::new(None, &trust).unwrap();
    let (connector, name) = setup.connector("proxy-a.a.example.com").unwrap();
    let tcp = tokio::net::TcpStream::connect(gateway).await.unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", gateway.to_string());
    if !form.is_empty() {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        sender.send_request(req.body(Full::new(Bytes::from(body))).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn header(h: &hyper::HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// alice logs in at the gateway, opens her one destination (bob's
/// service) and fetches its page; then logs out (the BYE). The Call-ID
/// of that access, from the gateway's log.
fn access_through_the_gateway(rt: &tokio::runtime::Runtime, gw: &Daemon) -> String {
    let addr: SocketAddr = gw.addrs[0]
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    let origin = format!("https://{addr}");
    rt.block_on(async {
        let same = [("origin", origin.as_str())];
        let (status, h, body) = https(
            addr,
            "POST",
            "/login",
            &same,
            &[("id", "alice"), ("password", "alice-pw")],
        )
        .await;
        assert_eq!(status, 303, "{body}");
        let cookie = header(&h, "set-cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let with = [("cookie", cookie.as_str()), ("origin", origin.as_str())];
        let (_, _, portal) = https(addr, "GET", "/", &with, &[]).await;
        let at = portal.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
        let csrf = portal[at..].split('"').next().unwrap().to_owned();
        let (status, h, body) = https(
            addr,
            "POST",
            "/open",
            &with,
            &[("csrf", &csrf), ("dest", "0")],
        )
        .await;
        assert_eq!(status, 303, "{body}");
        let base = header(&h, "location");
        let (status, _, page) = https(addr, "GET", &base, &with, &[]).await;
        assert_eq!((status, page.as_str()), (200, PAGE));
        let (status, _, _) = https(addr, "POST", "/logout", &with, &[("csrf", &csrf)]).await;
        assert_eq!(status, 303);
    });
    let called = gw
        .log_lines()
        .into_iter()
        .find(|l| l["event"] == "called")
        .unwrap_or_else(|| panic!("no call in the gateway's log:\n{}", gw.log_text()));
    called["call_id"].as_str().unwrap().to_owned()
}

/// A call placed by hand (`sipseal build`, `seal`, `send`) as alice with
/// the offer of `mine`, through relay A, never acknowledged and never
/// connected by the gateway: its channel listener waits, and the test
/// knocks on it. The answer's channel (address, fingerprint).
fn call_by_hand(d: &Path, path: &CallPath, mine: &ChannelCert) -> ChannelSdp {
    let call_id = "wrong-fingerprint@a.example.com";
    let offer = ChannelSdp::offer("127.0.0.1".parse().unwrap(), mine.fingerprint());
    let sdp = write(d, "offer.sdp", offer.to_text(1).as_bytes());
    let invite = sipseal()
        .args(["build", "invite", "--from", "sip:alice@a.example.com"])
        .args(["--to", callpath::DESTINATION, "--call-id", call_id])
        .args(["--sdp", s(&sdp)])
        .succeeds()
        .stdout;
    let invite = write(d, "by-hand.sip", &invite);
    let state = d.join("alice-state");
    let sealed = sipseal()
        .args(["seal", s(&invite), "--peer", "keys/bob/cert.pem"])
        .args([
            "--disclose",
            "keys/proxy-a-ec/cert.pem",
            "--sign",
            "keys/alice",
        ])
        .args(["--state", s(&state)])
        .succeeds()
        .stdout;
    let sealed = write(d, "by-hand-sealed.sip", &sealed);
    let next = path.outbound.clone();
    let out = sipseal()
        .args([
            "send",
            s(&sealed),
            "--next",
            &next,
            "--hosts",
            s(&path.hosts),
        ])
        .args(["--identity", "keys/proxy-a", "--trust", "keys/trust.pem"])
        .args(["--timeout", "15"])
        .succeeds()
        .stdout;
    let mut rest = &out[..];
    let mut ok = None;
    while let Ok((msg, used)) = Message::parse_prefix(rest) {
        rest = &rest[used..];
        if msg.status() == Some(200) {
            ok = Some(msg);
        }
    }
    let ok = ok.unwrap_or_else(|| {
        panic!(
            "no 200 for the call by hand:\n{}\n{}",
            String::from_utf8_lossy(&out),
            path.logs()
        )
    });
    let ok = write(d, "by-hand-200.sip", &ok.to_bytes());
    let answer = sipseal()
        .args(["open", s(&ok), "--identity", "keys/alice", "--body-only"])
        .args(["--state", s(&state)])
        .succeeds()
        .stdout;
    ChannelSdp::parse(&answer).unwrap()
}

/// Connect to the channel at `addr` presenting `cert`, expecting the
/// terminal's certificate `peer`, and ask for a page: the reply, or why
/// there was none.
async fn knock(addr: SocketAddr, cert: &ChannelCert, peer: Fingerprint) -> Result<String, String> {
    let mut tls = connect(addr, cert, peer, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    // TLS 1.3: the client finishes before the server has checked its
    // certificate; a refusal shows when reading.
    tls.write_all(b"GET / HTTP/1.1\r\nHost: service\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut got))
        .await
        .map_err(|_| "no reply in time".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// Where the artifacts go: target/tmp/captures.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("captures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_gateways_call_in_a_decrypted_capture_sealed_on_every_hop_and_the_channel_pinned() {
    if Command::new("tshark").arg("--version").output().is_err() {
        println!("SKIPPED: tshark is not installed (apt-get install tshark; .ci/run does)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = artifacts();
    let keylog = out.join("gateway-call.keys");
    let pcap = out.join("gateway-call.pcapng");
    for f in [&keylog, &pcap] {
        let _ = std::fs::remove_file(f);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let service = rt.block_on(service());

    // The capture starts before any daemon: every handshake is in it.
    let (a_port, b_port) = (free_port(), free_port());
    let filter = format!("tcp port {a_port} or tcp port {b_port} or host {CHANNEL_IP}");
    let mut capture = tshark(d, &filter, &pcap);

    let env = [("SSLKEYLOGFILE", keylog.as_path())];
    let path = CallPath::start_opts(
        &d.join("path"),
        service.port(),
        &Options {
            terminal_extra: &["--channel-address", CHANNEL_IP],
            relay_a_port: a_port,
            relay_b_port: b_port,
            env: &env,
            ..Options::default()
        },
    );
    path.wait_registered();
    for log in [
        path.terminal.log_text(),
        path.relay_a.log_text(),
        path.relay_b.log_text(),
    ] {
        assert!(
            log.contains("warning: SSLKEYLOGFILE is set") && log.contains(s(&keylog)),
            "each daemon warns that its secrets are logged:\n{log}"
        );
    }

    let users = d.join("users.yaml");
    let pw = write(d, "pw", b"alice-pw");
    sipseal()
        .args(["registrar", "passwd", "--realm", "a.example.com"])
        .args(["--user", "sip:alice@a.example.com", "--users", s(&users)])
        .args(["--password-file", s(&pw)])
        .succeeds();
    let destinations = write(
        d,
        "destinations.yaml",
        format!(
            "version: 1\nusers:\n  alice:\n    destinations:\n      - name: Service\n        uri: {}\n        cert: {}\n",
            callpath::DESTINATION,
            CallPath::destination_cert()
        )
        .as_bytes(),
    );
    let mut args: Vec<String> = [
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--identity",
        "keys/proxy-a",
        "--users",
        s(&users),
        "--realm",
        "a.example.com",
        "--destinations",
        s(&destinations),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(path.gateway_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = Daemon::start_env(d, "gateway", &args, &env);
    assert!(gw.log_text().contains("warning: SSLKEYLOGFILE is set"));

    let call_id = access_through_the_gateway(&rt, &gw);
    assert!(path.terminal.logged("\"event\":\"bye\""), "{}", path.logs());

    // A second call, answered but never connected by its caller: a
    // client with a certificate the SDP did not name is refused, the
    // one it named gets through.
    let mut ctx = Context::new(None, None);
    let offered = ChannelCert::generate("sip:alice@a.example.com", &mut ctx).unwrap();
    let mallory = ChannelCert::generate("sip:alice@a.example.com", &mut ctx).unwrap();
    let answer = call_by_hand(d, &path, &offered);
    assert_eq!(answer.addr.ip().to_string(), CHANNEL_IP);
    let refused = rt.block_on(knock(answer.addr, &mallory, answer.fingerprint));
    assert!(refused.is_err(), "a wrong certificate got in: {refused:?}");
    let page = rt
        .block_on(knock(answer.addr, &offered, answer.fingerprint))
        .unwrap();
    assert!(page.contains(PAGE), "{page}");
    // The terminal tells the refusal once its caller is in.
    assert!(
        path.terminal.logged("\"event\":\"channel refused\""),
        "{}",
        path.logs()
    );

    std::thread::sleep(Duration::from_millis(500));
    stop(&mut capture);
    let tshark = Decoder {
        pcap: pcap.clone(),
        keylog: keylog.clone(),
        sip_ports: [a_port, b_port],
    };
    std::fs::write(out.join("gateway-call.txt"), tshark.run(&[])).unwrap();
    // The key log is a secret: created 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&keylog).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let flow = terminal_flow_port(&path.terminal);

    // The INVITE of the gateway's call: three hops, in order, one each.
    let messages = tshark.sip();
    let hops: Vec<&Captured> = messages
        .iter()
        .filter(|m| {
            m.msg.method() == Some("INVITE") && m.msg.call_id().ok() == Some(call_id.as_str())
        })
        .collect();
    let route: Vec<(u16, u16)> = hops.iter().map(|h| (h.src.port(), h.dst.port())).collect();
    assert_eq!(hops.len(), 3, "one INVITE per hop: {route:?}");
    assert_eq!(route[0].1, a_port, "gateway → relay A: {route:?}");
    assert!(
        route[1].1 == b_port && route[1].0 != flow,
        "relay A → relay B: {route:?}"
    );
    assert_eq!(
        route[2],
        (b_port, flow),
        "relay B → the terminal's flow: {route:?}"
    );
    // Sealed on every hop, the same sealed body (relay B is blind and
    // relay A only reads), never the SDP in clear.
    for h in &hops {
        let ctype = h.msg.header("Content-Type").unwrap_or_default();
        assert!(ctype.starts_with("application/pkcs7-mime"), "{ctype}");
        assert_eq!(h.msg.body(), hops[0].msg.body());
    }
    for m in &messages {
        let bytes = m.msg.to_bytes();
        for clear in [&b"m=application"[..], b"a=fingerprint"] {
            assert!(
                !bytes.windows(clear.len()).any(|w| w == clear),
                "an SDP in clear on the wire:\n{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    // Its recipients: bob and relay A, not relay B (openssl reads the
    // CMS; subject key identifiers against the certificates').
    let body = out.join("gateway-invite-body.der");
    std::fs::write(&body, hops[0].msg.body()).unwrap();
    let recipients = recipient_skis(&body);
    let bob = ski(&common::repo().join("keys/bob/cert.pem"));
    let relay_a = ski(&common::repo().join("keys/proxy-a-ec/cert.pem"));
    let relay_b = ski(&common::repo().join("keys/proxy-b-ec/cert.pem"));
    let mut want = vec![bob, relay_a];
    want.sort();
    assert_eq!(recipients, want, "bob and relay A exactly");
    assert!(!recipients.contains(&relay_b));

    // The SDP, opened from the capture with bob's key: the offer from
    // the INVITE, the answer from the terminal's 200 (under the session
    // key the INVITE carried).
    let ok = messages
        .iter()
        .find(|m| {
            m.msg.status() == Some(200)
                && m.msg.call_id().ok() == Some(call_id.as_str())
                && m.src.port() == flow
        })
        .expect("the terminal's 200 in the capture");
    let bob_state = d.join("bob-reads");
    let offer = open_sdp(d, "offer", &hops[2].msg, &bob_state);
    let answer_sdp = open_sdp(d, "answer", &ok.msg, &bob_state);
    assert_eq!(offer.addr.port(), 9, "the caller is active");
    assert_eq!(answer_sdp.addr.ip().to_string(), CHANNEL_IP);

    // The channel's handshake: between the addresses the SDP named,
    // each side's certificate hashing to the fingerprint it carried.
    let certs = tshark.certificates();
    let server: Vec<_> = certs.iter().filter(|c| c.src == answer_sdp.addr).collect();
    assert_eq!(
        server.len(),
        1,
        "one handshake on {}: {certs:?}",
        answer_sdp.addr
    );
    let (server, caller) = (server[0], server[0].dst);
    assert_eq!(server.sha256, hex::encode(answer_sdp.fingerprint.0));
    assert_eq!(
        caller.ip(),
        offer.addr.ip(),
        "the caller's address is the offer's"
    );
    let client = certs
        .iter()
        .find(|c| c.src == caller && c.dst == answer_sdp.addr)
        .expect("the caller's certificate");
    assert_eq!(client.sha256, hex::encode(offer.fingerprint.0));
    // And the page went through that channel (decrypted HTTP).
    let http = tshark.run(&[
        "-Y",
        &format!(
            "tcp.srcport == {} && http.response.code == 200",
            answer_sdp.addr.port()
        ),
    ]);
    assert!(!http.trim().is_empty(), "no HTTP 200 on the channel");

    // The second call's channel: mallory's certificate (not the SDP's)
    // got a fatal alert and nothing else; the offered one got the page.
    let knocks: Vec<_> = certs.iter().filter(|c| c.dst == answer.addr).collect();
    let wrong = knocks
        .iter()
        .find(|c| c.sha256 == hex::encode(mallory.fingerprint().0))
        .expect("mallory's handshake in the capture");
    let right = knocks
        .iter()
        .find(|c| c.sha256 == hex::encode(offered.fingerprint().0))
        .expect("the offered certificate's handshake in the capture");
    let alerts = tshark.run(&[
        "-Y",
        &format!(
            "ip.src == {CHANNEL_IP} && tcp.srcport == {} && tls.alert_message.level == 2",
            answer.addr.port()
        ),
        "-T",
        "fields",
        "-e",
        "tcp.dstport",
        "-e",
        "tls.alert_message.level",
        "-e",
        "tls.alert_message.desc",
    ]);
    // Fatal (2) access_denied (49), to mallory only (the other
    // connection ends with a close_notify, a warning).
    assert_eq!(
        alerts.trim(),
        format!("{}\t2\t49", wrong.src.port()),
        "{alerts}"
    );
    let answered =
        |port: u16| tshark.run(&["-Y", &format!("tcp.dstport == {port} && http.response")]);
    assert!(
        answered(wrong.src.port()).trim().is_empty(),
        "mallory got an answer"
    );
    assert!(
        !answered(right.src.port()).trim().is_empty(),
        "the offered certificate got none"
    );
    eprintln!(
        "capture kept: {} (keys {}, tshark's text {})",
        pcap.display(),
        keylog.display(),
        out.join("gateway-call.txt").display()
    );
}

/// The port of the terminal's flow to relay B, from its log.
fn terminal_flow_port(terminal: &Daemon) -> u16 {
    let log = terminal.log_text();
    let at = log.find("listening on tls:").expect("the terminal's flow") + 17;
    let addr: SocketAddr = log[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    addr.port()
}

/// A SIP message tshark decrypted, with its TCP ends.
struct Captured {
    src: SocketAddr,
    dst: SocketAddr,
    msg: Message,
}

/// A certificate a TLS end sent, as tshark decrypted it.
#[derive(Debug)]
struct SentCert {
    src: SocketAddr,
    dst: SocketAddr,
    /// SHA-256 of its DER, lower-case hex.
    sha256: String,
}

/// tshark reading the capture with the key log; relay A's and B's TLS
/// ports carry SIP.
struct Decoder {
    pcap: PathBuf,
    keylog: PathBuf,
    sip_ports: [u16; 2],
}

impl Decoder {
    /// `tshark -r` with `args`: its standard output.
    fn run(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("tshark");
        cmd.arg("-r").arg(&self.pcap);
        cmd.arg("-o")
            .arg(format!("tls.keylog_file:{}", self.keylog.display()));
        for p in self.sip_ports {
            cmd.args(["-d", &format!("tls.port=={p},sip")]);
        }
        let out = cmd.args(args).succeeds();
        String::from_utf8(out.stdout).unwrap()
    }

    /// Every SIP message, in capture order (a frame may hold several).
    fn sip(&self) -> Vec<Captured> {
        let json: serde_json::Value =
            serde_json::from_str(&self.run(&["-Y", "sip", "-T", "json", "-x"])).unwrap();
        let mut out = Vec::new();
        for packet in json.as_array().unwrap() {
            let layers = &packet["_source"]["layers"];
            let end = |ip: &str, port: &str| -> SocketAddr {
                format!(
                    "{}:{}",
                    layers["ip"][ip].as_str().unwrap(),
                    layers["tcp"][port].as_str().unwrap()
                )
                .parse()
                .unwrap()
            };
            let (src, dst) = (end("ip.src", "tcp.srcport"), end("ip.dst", "tcp.dstport"));
            // [hex, offset, length, ...], or a list of them.
            let raw = &layers["sip_raw"];
            let raws: Vec<&serde_json::Value> = if raw[0].is_string() {
                vec![raw]
            } else {
                raw.as_array().unwrap().iter().collect()
            };
            for r in raws {
                let bytes = hex::decode(r[0].as_str().unwrap()).unwrap();
                let msg = Message::parse(&bytes).unwrap();
                out.push(Captured { src, dst, msg });
            }
        }
        out
    }

    /// The certificates sent in every handshake (the first of a chain).
    fn certificates(&self) -> Vec<SentCert> {
        use sha2::Digest;
        let text = self.run(&[
            "-Y",
            "tls.handshake.certificate",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "tcp.dstport",
            "-e",
            "tls.handshake.certificate",
        ]);
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                let der = hex::decode(f[4].split(',').next().unwrap()).unwrap();
                SentCert {
                    src: format!("{}:{}", f[0], f[1]).parse().unwrap(),
                    dst: format!("{}:{}", f[2], f[3]).parse().unwrap(),
                    sha256: hex::encode(sha2::Sha256::digest(&der)),
                }
            })
            .collect()
    }
}

/// The SDP of a captured sealed message, opened with bob's key (its
/// inner signature checked against keys/trust.pem); the session key the
/// INVITE carried kept in `state` for the 200.
fn open_sdp(d: &Path, name: &str, msg: &Message, state: &Path) -> ChannelSdp {
    let file = write(d, &format!("{name}.sip"), &msg.to_bytes());
    let sdp = sipseal()
        .args(["open", s(&file), "--identity", "keys/bob", "--body-only"])
        .args(["--trust", "keys/trust.pem", "--state", s(state)])
        .succeeds()
        .stdout;
    ChannelSdp::parse(&sdp).unwrap()
}

/// A key log that cannot be written is told at start (rustls would
/// silently log nothing), and the daemon serves all the same.
#[test]
fn a_key_log_that_cannot_be_written_is_told_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let nowhere = d.join("missing").join("keys");
    let relay = Daemon::start_env(
        d,
        "relay",
        &[
            "relay",
            "--listen",
            "tls:127.0.0.1:0",
            "--identity",
            "keys/proxy-a-ec",
            "--trust",
            "keys/trust.pem",
        ],
        &[("SSLKEYLOGFILE", &nowhere)],
    );
    let log = relay.log_text();
    assert!(
        log.contains(&format!(
            "SSLKEYLOGFILE={} cannot be written",
            nowhere.display()
        )) && log.contains("no TLS secrets are logged"),
        "{log}"
    );
    assert!(!nowhere.exists());
}

/// Stop tshark (SIGINT: it writes what it has) and wait for it.
fn stop(capture: &mut Background) {
    let _ = Command::new("kill")
        .args(["-INT", &capture.0.id().to_string()])
        .status();
    capture.wait(10);
}
