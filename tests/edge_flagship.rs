//! Issue 30's flagship walkthrough: two Debian baresip phones (alice,
//! bob; SDES-SRTP, PCMU, alice playing a tone), each behind its own
//! `sipseal edge`, two relays and one registrar, every process on the
//! loopback of a network namespace of its own (baresip binds RTP on
//! 0.0.0.0: root, as CI is; without it the test says SKIPPED).
//!
//! ```text
//! alice --udp--> edge A ==mTLS flow==> proxy-a ==mTLS==> proxy-b
//!                (seals for bob and    (designated:     (blind; serves
//!                 proxy-a, record)      opens, records)  example.com)
//!                                                           ||  mTLS flow
//! bob <--udp-- edge B <=====================================//
//!        registrar for example.com (Digest, bindings with Path,
//!        certificate queries; alice and bob published a CSR)
//! ```
//!
//! Registration through the edges, the call, SRTP both ways (tshark
//! counts it), hold, a restart of edge A mid-call (SIGTERM, started again
//! on the same state), resume (re-INVITEs), the BYE; a call to carol
//! (no certificate) refused by edge A's policy with 488 and a Warning;
//! proxy-a opening every offer and answer (the first by its designation,
//! the rest under the session key) and its `--record` spool giving
//! `sipseal record` alice's tone; proxy-b opening nothing; and a
//! decrypted capture that lists each SIP message per link with its body
//! plain or sealed: sealed on every link between the edges, plain only
//! on the phone links. [`EDGES`] = `false` gives the walkthrough without
//! the edges (the phones on their relays, every body plain). The
//! capture, its TLS key log and the table stay under
//! target/tmp/captures (or `SIPSEAL_FLAGSHIP_OUT`). docs/guide chapter
//! 12 walks through it. The test tells its story as it goes (`say`): the
//! demo, `bash demos/flagship.sh`, runs this test binary with
//! `--nocapture` in a user namespace and shows it; the second test here
//! runs that script as a person without root would.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::baresip::{Account, AnswerMode, Baresip, Config, Transport};
use common::live::{Background, Daemon, tshark};
use common::realm::Realm;
use common::s;
use sipseal::sip::Message;

/// Whether the edges are in the path: the test starts them, and every
/// assertion below expects what they promise (SDP sealed between them,
/// the recorder's keys from proxy-a's `--record` spool). `false` gives
/// the walkthrough as it stood before `sipseal edge` (the phones on
/// their relays, every body plain).
const EDGES: bool = true;

/// How long any one step may take.
const WAIT: Duration = Duration::from_secs(15);

/// Media before the hold, and again after the resume.
const CALL_MEDIA: Duration = Duration::from_secs(3);

/// alice's tone: a sine at this frequency, 8 kHz 16-bit mono (G.711's
/// rate, so that baresip's `aufile` sends it unresampled).
const TONE_HZ: f64 = 1000.0;

/// The one domain: both users, the registrar's realm, the domain
/// proxy-b serves by location.
const DOMAIN: &str = "example.com";

// Fixed ports: the namespace is the test's own.
/// The registrar, UDP and TCP.
const REGISTRAR: u16 = 5060;
/// proxy-a's UDP listener (alice's phone without the edges).
const PROXY_A_UDP: u16 = 5070;
/// proxy-a's TLS listener (edge A's flow).
const PROXY_A_TLS: u16 = 5071;
/// proxy-b's UDP listener (the registrar's side; bob's phone without the edges).
const PROXY_B_UDP: u16 = 5080;
/// proxy-b's TLS listener (proxy-a, and edge B's flow).
const PROXY_B_TLS: u16 = 5081;
/// Edge A's phone side (UDP): alice's outbound.
const EDGE_A: u16 = 5090;
/// Edge B's phone side (UDP): bob's outbound.
const EDGE_B: u16 = 5092;
/// alice's SIP (UDP, TCP; TLS on one more).
const ALICE_SIP: u16 = 25_060;
/// bob's SIP (two above alice's: baresip's TLS takes SIP + 1).
const BOB_SIP: u16 = 25_062;
/// alice's RTP ports.
const ALICE_RTP: (u16, u16) = (26_000, 26_099);
/// bob's RTP ports.
const BOB_RTP: (u16, u16) = (26_100, 26_199);

/// The parties of the walkthrough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Node {
    Alice,
    EdgeA,
    ProxyA,
    ProxyB,
    EdgeB,
    Bob,
    Registrar,
}

/// A link between two parties (the lower one first).
type Link = (Node, Node);

/// The link between `a` and `b`, whichever way a message went.
fn link(a: Node, b: Node) -> Link {
    if a <= b { (a, b) } else { (b, a) }
}

/// The links a message of the call crosses, in order from alice to bob.
fn path_links(edges: bool) -> Vec<Link> {
    if edges {
        vec![
            link(Node::Alice, Node::EdgeA),
            link(Node::EdgeA, Node::ProxyA),
            link(Node::ProxyA, Node::ProxyB),
            link(Node::ProxyB, Node::EdgeB),
            link(Node::EdgeB, Node::Bob),
        ]
    } else {
        vec![
            link(Node::Alice, Node::ProxyA),
            link(Node::ProxyA, Node::ProxyB),
            link(Node::ProxyB, Node::Bob),
        ]
    }
}

/// Whether a link has a phone at one end.
fn phone_link(l: Link) -> bool {
    [l.0, l.1]
        .iter()
        .any(|n| matches!(n, Node::Alice | Node::Bob))
}

/// What a SIP body is, as the wire shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// `application/sdp`: readable by anyone on the link.
    PlainSdp,
    /// CMS (`application/pkcs7-mime`, alone or in a multipart).
    Sealed,
    /// Anything else (`message/sipfrag`, a certificate...).
    Other,
}

/// What the body of an SDP-carrying message on `l` must be: plain on
/// the phone links; between the edges sealed when they are there, plain
/// without them (there is no one to seal it).
fn expected_body(l: Link, edges: bool) -> BodyKind {
    if edges && !phone_link(l) {
        BodyKind::Sealed
    } else {
        BodyKind::PlainSdp
    }
}

/// The kind of `msg`'s body; `None` without one.
fn body_kind(msg: &Message) -> Option<BodyKind> {
    if msg.body().is_empty() {
        return None;
    }
    let ctype = msg
        .header("Content-Type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let sealed = |b: &[u8]| {
        let needle = b"application/pkcs7-mime";
        b.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    Some(if ctype.starts_with("application/sdp") {
        BodyKind::PlainSdp
    } else if ctype.starts_with("application/pkcs7-mime")
        || (ctype.starts_with("multipart/") && sealed(msg.body()))
    {
        BodyKind::Sealed
    } else {
        BodyKind::Other
    })
}

/// Where each phone sends everything (baresip's `outbound`): its edge
/// with [`EDGES`], else its relay.
fn phone_outbound(name: &str) -> String {
    let port = match (name, EDGES) {
        ("alice", true) => EDGE_A,
        ("bob", true) => EDGE_B,
        ("alice", false) => PROXY_A_UDP,
        ("bob", false) => PROXY_B_UDP,
        (other, _) => panic!("no phone {other}"),
    };
    format!("sip:127.0.0.1:{port}")
}

/// The party that listens on `port` (UDP, or TCP/TLS as the server).
fn listener(port: u16) -> Option<Node> {
    Some(match port {
        REGISTRAR => Node::Registrar,
        PROXY_A_UDP | PROXY_A_TLS => Node::ProxyA,
        PROXY_B_UDP | PROXY_B_TLS => Node::ProxyB,
        EDGE_A => Node::EdgeA,
        EDGE_B => Node::EdgeB,
        ALICE_SIP => Node::Alice,
        BOB_SIP => Node::Bob,
        _ => return None,
    })
}

/// The party a TLS client certificate names (by its SAN URI).
fn by_certificate(uri: &str) -> Option<Node> {
    Some(match uri {
        "sip:proxy-a.a.example.com" => Node::ProxyA,
        "sip:proxy-b.b.example.com" => Node::ProxyB,
        // The edges' flows present their user's certificate.
        "sip:alice@example.com" => Node::EdgeA,
        "sip:bob@example.com" => Node::EdgeB,
        _ => return None,
    })
}

/// The address a phone's SDP offers for its media: a documentation
/// address on the namespace's loopback, not 127.0.0.1, as a phone's on
/// a LAN (a relay never opens a pinhole to a loopback address).
fn media_address(name: &str) -> &'static str {
    match name {
        "alice" => "192.0.2.10",
        _ => "198.51.100.20",
    }
}

/// Move this test's thread into a network namespace of its own, its
/// loopback up with the phones' media addresses; every process it
/// starts then lives there too. `false`
/// (and why, on stderr) when that is not allowed here.
fn private_network() -> bool {
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        eprintln!(
            "SKIPPED: a network namespace of its own needs root (CI runs as root): {e}; baresip binds RTP on 0.0.0.0, which this test does not do outside one"
        );
        return false;
    }
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip runs (.ci/run installs iproute2)");
    assert!(up.success(), "ip link set lo up");
    for a in [media_address("alice"), media_address("bob")] {
        let ok = Command::new("ip")
            .args(["addr", "add", &format!("{a}/32"), "dev", "lo"])
            .status()
            .unwrap();
        assert!(ok.success(), "ip addr add {a}/32 dev lo");
    }
    true
}

/// Write `secs` seconds of a `hz` sine at half scale, 8 kHz 16-bit mono.
fn write_tone(path: &Path, hz: f64, secs: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..8000 * secs {
        let t = f64::from(n) / 8000.0;
        let x = 16_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin();
        w.write_sample(x as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// Where the artifacts go: target/tmp/captures.
fn artifacts() -> PathBuf {
    let dir = match std::env::var_os("SIPSEAL_FLAGSHIP_OUT") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("captures"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One line of the walkthrough's story, on standard error: what
/// `demos/flagship.sh` shows (`cargo test` keeps it unless the test
/// fails or runs with `--nocapture`).
fn say(line: impl std::fmt::Display) {
    eprintln!("▶ {line}");
}

/// `text` indented, for the story.
fn indented(text: &str) -> String {
    text.lines()
        .map(|l| format!("      {l}\n"))
        .collect::<String>()
}

/// The relays and the registrar, started.
struct Network {
    registrar: Daemon,
    proxy_a: Daemon,
    proxy_b: Daemon,
    /// proxy-a's `--report` (every message it handled, SDP keys of the
    /// plain ones included).
    report_a: PathBuf,
    /// proxy-a's `--record` spool: the report lines of the calls a
    /// designation lets it record, and no other.
    spool_a: PathBuf,
    /// proxy-b's `--report`.
    report_b: PathBuf,
    /// The registrar's store.
    registry: PathBuf,
}

impl Network {
    /// The registrar for [`DOMAIN`] (MD5 first: libre computes nothing
    /// else), proxy-b serving the domain by location, proxy-a sending
    /// everything on to proxy-b over mutual TLS (`--next`, by name).
    /// Every process logs its TLS secrets to `keylog`.
    fn start(d: &Path, realm: &Realm, keylog: &Path) -> Network {
        let env = [("SSLKEYLOGFILE", keylog)];
        let registry = d.join("registry");
        let registrar = realm.registrar(
            s(&registry),
            &[
                &format!("udp:127.0.0.1:{REGISTRAR}"),
                &format!("tcp:127.0.0.1:{REGISTRAR}"),
            ],
            // Certificates published for a day: longer than a
            // registration, so the edges add no CSR to the phones' REGISTERs.
            &[
                "--digest-algorithms",
                "md5",
                "--trust",
                "keys/trust.pem",
                "--max-expires",
                "86400",
            ],
        );
        // proxy-a by the name in its certificate: its Path and
        // Record-Route entries name it so (--via), and a TLS connection
        // to it checks that name (RFC 5922).
        let b_hosts = common::write(
            d,
            "b-hosts",
            format!(
                "127.0.0.1:{REGISTRAR} {DOMAIN}\n127.0.0.1:{PROXY_A_TLS} proxy-a.a.example.com\n"
            )
            .as_bytes(),
        );
        let report_b = d.join("report-b.jsonl");
        let realm_ca = d.join("ca/cert.pem");
        let proxy_b = Daemon::start_env(
            d,
            "proxy-b",
            &[
                "relay",
                "--listen",
                &format!("udp:127.0.0.1:{PROXY_B_UDP}"),
                "--listen",
                &format!("tls:127.0.0.1:{PROXY_B_TLS}"),
                "--identity",
                "keys/proxy-b-ec",
                "--trust",
                "keys/trust.pem",
                // The edges' flows, with the certificates the registrar issues.
                "--trust",
                s(&realm_ca),
                "--domain",
                DOMAIN,
                "--registrations",
                s(&registry),
                "--hosts",
                s(&b_hosts),
                "--record-route",
                "--hop-allow",
                "127.0.0.0/8",
                "--report",
                s(&report_b),
            ],
            &env,
        );
        let a_hosts = common::write(
            d,
            "a-hosts",
            format!("127.0.0.1:{PROXY_B_TLS} proxy-b.b.example.com\n").as_bytes(),
        );
        let report_a = d.join("report-a.jsonl");
        let spool_a = d.join("spool-a");
        let proxy_a = Daemon::start_env(
            d,
            "proxy-a",
            &[
                "relay",
                "--listen",
                &format!("udp:127.0.0.1:{PROXY_A_UDP}"),
                "--listen",
                &format!("tls:127.0.0.1:{PROXY_A_TLS}"),
                "--identity",
                "keys/proxy-a-ec",
                "--trust",
                "keys/trust.pem",
                "--trust",
                s(&realm_ca),
                "--hosts",
                s(&a_hosts),
                "--next",
                &format!("sip:proxy-b.b.example.com:{PROXY_B_TLS};transport=tls"),
                // Its Via, Record-Route and Path entries by its name (each
                // listener's port), which proxy-b reaches over TLS.
                "--via",
                "proxy-a.a.example.com",
                "--record-route",
                "--hop-allow",
                "127.0.0.0/8",
                "--report",
                s(&report_a),
                "--record",
                s(&spool_a),
                // Pinholes in this namespace's own nftables (root, as
                // the test runs): proxy-a reads the media addresses.
                "--firewall",
                "nft",
            ],
            &env,
        );
        Network {
            registrar,
            proxy_a,
            proxy_b,
            report_a,
            spool_a,
            report_b,
            registry,
        }
    }

    /// Every daemon's log, for a failed assertion.
    fn logs(&self) -> String {
        format!(
            "proxy-a:\n{}\nproxy-b:\n{}\nregistrar:\n{}",
            self.proxy_a.log_text(),
            self.proxy_b.log_text(),
            self.registrar.log_text()
        )
    }

    /// The (method, status) of the call's messages `relay` logged.
    fn seen(relay: &Daemon, call_id: &str) -> Vec<(String, Option<u64>)> {
        relay
            .log_lines()
            .into_iter()
            .filter(|l| l["call_id"] == call_id)
            .map(|l| {
                (
                    l["method"].as_str().unwrap_or_default().to_owned(),
                    l["status"].as_u64(),
                )
            })
            .collect()
    }

    /// Wait (at most [`WAIT`]) until both relays logged `count` of
    /// (`method`, `status`) in the call; what each saw.
    fn wait_both(&self, call_id: &str, method: &str, status: Option<u64>, count: usize) {
        let until = Instant::now() + WAIT;
        loop {
            let n = |r: &Daemon| {
                Network::seen(r, call_id)
                    .iter()
                    .filter(|(m, st)| m == method && *st == status)
                    .count()
            };
            let (a, b) = (n(&self.proxy_a), n(&self.proxy_b));
            if a >= count && b >= count {
                return;
            }
            assert!(
                Instant::now() < until,
                "{method} {status:?}: {a} through proxy-a, {b} through proxy-b, not {count}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Edge A's disclosure policy: calls within the domain sealed for the
/// peer and disclosed to proxy-a for recording, its signature inside
/// (`access: read`); a peer without a certificate refused.
const POLICY_A: &str = "relays:
  proxy-a: PROXY_A_CERT
destinations:
  - to: \"sip:*@example.com\"
    disclose: [proxy-a]
    access: read
    record: true
    unsealable: refuse
incoming:
  unsealed: accept
  unsigned: accept
  min_route_level: 0
";

/// Edge B's: sealed for the peer alone; a peer without a certificate
/// refused.
const POLICY_B: &str = "relays: {}
destinations:
  - to: \"*\"
    disclose: []
    access: modify
    record: false
    unsealable: refuse
incoming:
  unsealed: accept
  unsigned: accept
  min_route_level: 0
";

/// `user`'s identity (an RSA key: it signs inside), its certificate
/// from the registrar: a PUBLISH with a CSR, so that certificate queries
/// find it.
fn identity(d: &Path, realm: &Realm, user: &str) -> PathBuf {
    let dir = d.join(format!("{user}-id"));
    common::sipseal()
        .current_dir(d)
        .args(["keys", "generate", "--uri", &format!("sip:{user}@{DOMAIN}")])
        .args(["--ca", "ca", "--out", s(&dir)])
        .output()
        .map(|o| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr)))
        .unwrap();
    realm.publish(REGISTRAR, user, &dir, 86_400);
    dir
}

/// `sipseal edge` for `user` on its phone-side `port`, its flow to
/// `relay` (a name its hosts file gives as 127.0.0.1:`tls`), sealing by
/// `policy`, its state in `d/NAME-state`.
struct Edge {
    name: &'static str,
    args: Vec<String>,
}

impl Edge {
    #[allow(clippy::too_many_arguments)]
    fn new(
        d: &Path,
        name: &'static str,
        identity: &Path,
        port: u16,
        relay: &str,
        tls: u16,
        policy: &str,
    ) -> Edge {
        let hosts = common::write(
            d,
            &format!("{name}-hosts"),
            format!("127.0.0.1:{tls} {relay}\n").as_bytes(),
        );
        let policy = common::write(d, &format!("{name}-policy.yaml"), policy.as_bytes());
        let args = [
            "edge",
            "--listen",
            &format!("udp:127.0.0.1:{port}"),
            "--identity",
            s(identity),
            "--outbound",
            &format!("tls:{relay}:{tls}"),
            "--hosts",
            s(&hosts),
            "--trust",
            "keys/trust.pem",
            "--trust",
            s(&d.join("ca/cert.pem")),
            "--disclosure",
            s(&policy),
            "--cert-query",
            &format!("tcp:127.0.0.1:{REGISTRAR}"),
            "--state",
            s(&d.join(format!("{name}-state"))),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        Edge { name, args }
    }

    /// Started (again: the same state and address), logging its TLS
    /// secrets to `keylog`.
    fn start(&self, d: &Path, keylog: &Path, run: u32) -> Daemon {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env = [("SSLKEYLOGFILE", keylog)];
        Daemon::start_env(d, &format!("{}-{run}", self.name), &args, &env)
    }
}

/// A baresip phone: SDES-SRTP, PCMU only, registering through
/// [`phone_outbound`], answering at once; `tone` as its audio source.
fn phone(
    d: &Path,
    name: &str,
    sip: u16,
    ctrl: u16,
    rtp: (u16, u16),
    tone: Option<&Path>,
) -> Baresip {
    let mut config = Config::new(name, sip, ctrl);
    config.rtp_ports = Some(rtp);
    config.media_address = Some(media_address(name).to_owned());
    config.extra.push("module\t\t\tsrtp.so".into());
    if let Some(file) = tone {
        config.extra.push("module\t\t\taufile.so".into());
        config.audio_source = Some(format!("aufile,{}", file.display()));
    }
    let account = Account::new(name, DOMAIN, Transport::Udp)
        .auth(name, &format!("{name}-pw"))
        .outbound(&phone_outbound(name))
        .param("mediaenc", "srtp")
        .param("audio_codecs", "PCMU")
        .register_every(600)
        .answer(AnswerMode::Auto);
    Baresip::start(d, &config, &account)
}

/// A SIP message tshark decoded, with the link it crossed.
struct Captured {
    from: Node,
    to: Node,
    msg: Message,
}

impl Captured {
    /// `INVITE`, `200 INVITE`, ...
    fn what(&self) -> String {
        let cseq = self.msg.header("CSeq").unwrap_or_default();
        let method = cseq.split_whitespace().nth(1).unwrap_or("?");
        match self.msg.status() {
            Some(st) => format!("{st} {method}"),
            None => method.to_owned(),
        }
    }
}

/// tshark reading the capture with the key log, the relays' ports
/// decoded as SIP.
struct Decoder {
    pcap: PathBuf,
    keylog: PathBuf,
}

impl Decoder {
    /// `tshark -r` with `args`: its standard output.
    fn run(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("tshark");
        cmd.arg("-r").arg(&self.pcap);
        cmd.arg("-o")
            .arg(format!("tls.keylog_file:{}", self.keylog.display()));
        for p in [PROXY_A_UDP, PROXY_B_UDP, EDGE_A, EDGE_B, ALICE_SIP, BOB_SIP] {
            cmd.args(["-d", &format!("udp.port=={p},sip")]);
        }
        for p in [PROXY_A_TLS, PROXY_B_TLS] {
            cmd.args(["-d", &format!("tls.port=={p},sip")]);
        }
        let out = cmd.args(args).output().expect("tshark runs");
        assert!(
            out.status.success(),
            "tshark {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The party at each TCP client port, by the certificate it
    /// presented (TLS 1.3 sends it encrypted: the key log opens it).
    fn clients(&self) -> BTreeMap<u16, Node> {
        let text = self.run(&[
            "-Y",
            "tls.handshake.certificate",
            "-T",
            "fields",
            "-e",
            "tcp.srcport",
            "-e",
            "tls.handshake.certificate",
        ]);
        let mut clients = BTreeMap::new();
        for line in text.lines() {
            let Some((port, certs)) = line.split_once('\t') else {
                continue;
            };
            let (Ok(port), Some(first)) = (port.parse::<u16>(), certs.split(',').next()) else {
                continue;
            };
            if listener(port).is_some() {
                continue;
            }
            let der = hex::decode(first).unwrap();
            let cert = sipseal::keys::Cert::from_der(&der, "capture").unwrap();
            if let Some(node) = cert.uri().as_deref().and_then(by_certificate) {
                clients.insert(port, node);
            }
        }
        clients
    }

    /// Every SIP message between two known parties, in capture order (a
    /// frame may hold several).
    fn sip(&self) -> Vec<Captured> {
        let clients = self.clients();
        let party = |port: u16| listener(port).or_else(|| clients.get(&port).copied());
        let json: serde_json::Value =
            serde_json::from_str(&self.run(&["-Y", "sip", "-T", "json", "-x"])).unwrap();
        let mut out = Vec::new();
        for packet in json.as_array().unwrap() {
            let layers = &packet["_source"]["layers"];
            // SIP over UDP, or over TCP (TLS decrypted).
            let l4 = if layers["udp"].is_object() {
                "udp"
            } else {
                "tcp"
            };
            let port = |end: &str| -> u16 {
                layers[l4][format!("{l4}.{end}")]
                    .as_str()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0)
            };
            let (src, dst) = (port("srcport"), port("dstport"));
            let (Some(from), Some(to)) = (party(src), party(dst)) else {
                continue;
            };
            // [hex, offset, length, ...], or a list of them.
            let raw = &layers["sip_raw"];
            let raws: Vec<&serde_json::Value> = if raw[0].is_string() {
                vec![raw]
            } else {
                raw.as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default()
            };
            for r in raws {
                let bytes = hex::decode(r[0].as_str().unwrap()).unwrap();
                if let Ok(msg) = Message::parse(&bytes) {
                    out.push(Captured { from, to, msg });
                }
            }
        }
        out
    }
}

/// One SIP message of the call on a link, as the table lists it.
struct Listed {
    /// `Alice→ProxyA 200 INVITE`.
    what: String,
    /// The method (of the request, or of the request answered).
    method: String,
    /// The status of a response.
    status: Option<u16>,
    /// Its body's kind; `None` without one.
    body: Option<BodyKind>,
}

/// The call's SIP messages per link, each with its body's kind: the
/// table the walkthrough's "sealed between the edges, plain on the phone
/// links" is read from.
fn per_link(messages: &[Captured], call_id: &str) -> BTreeMap<Link, Vec<Listed>> {
    let mut table: BTreeMap<Link, Vec<Listed>> = BTreeMap::new();
    for m in messages {
        if m.msg.call_id().ok() != Some(call_id) {
            continue;
        }
        let cseq = m.msg.header("CSeq").unwrap_or_default();
        table.entry(link(m.from, m.to)).or_default().push(Listed {
            what: format!("{:?}→{:?} {}", m.from, m.to, m.what()),
            method: cseq.split_whitespace().nth(1).unwrap_or("?").to_owned(),
            status: m.msg.status(),
            body: body_kind(&m.msg),
        });
    }
    table
}

/// The table as text, a line per message.
fn table_text(table: &BTreeMap<Link, Vec<Listed>>) -> String {
    let mut text = String::new();
    for (l, msgs) in table {
        text.push_str(&format!("{:?} ↔ {:?}\n", l.0, l.1));
        for m in msgs {
            let kind = m.body.map_or("no body".to_owned(), |k| format!("{k:?}"));
            text.push_str(&format!("  {}: {kind}\n", m.what));
        }
    }
    text
}

/// On every link of the call's path, each INVITE (the call, the hold,
/// the resume: `invites` of them at least) and its 200 carry an SDP of
/// the kind [`expected_body`] says for `edges`, as does every other
/// message with a body; the ACKs, the BYE and its 200 crossed it too.
fn assert_bodies_per_link(messages: &[Captured], call_id: &str, edges: bool, invites: usize) {
    let table = per_link(messages, call_id);
    let text = table_text(&table);
    for l in path_links(edges) {
        let msgs = table
            .get(&l)
            .unwrap_or_else(|| panic!("nothing of the call on {l:?}:\n{text}"));
        let count = |method: &str, status: Option<u16>| {
            msgs.iter()
                .filter(|m| m.method == method && m.status == status)
                .count()
        };
        // At least: a retransmission over UDP adds one.
        for (method, status, n) in [
            ("INVITE", None, invites),
            ("INVITE", Some(200), invites),
            ("ACK", None, invites),
            ("BYE", None, 1),
            ("BYE", Some(200), 1),
        ] {
            assert!(
                count(method, status) >= n,
                "{l:?}: {n} {method} {status:?}\n{text}"
            );
        }
        let want = expected_body(l, edges);
        for m in msgs {
            let offer_or_answer =
                m.method == "INVITE" && (m.status.is_none() || m.status == Some(200));
            if offer_or_answer || m.body.is_some() {
                assert_eq!(m.body, Some(want), "{} on {l:?}\n{text}", m.what);
            }
        }
    }
}

/// The SDP a phone sent or received on its link for the call, in order
/// (the phone links are plain at every stage).
fn phone_sdps(messages: &[Captured], call_id: &str, phone: Node) -> Vec<(String, String)> {
    messages
        .iter()
        .filter(|m| m.msg.call_id().ok() == Some(call_id) && (m.from == phone || m.to == phone))
        .filter(|m| body_kind(&m.msg) == Some(BodyKind::PlainSdp))
        .map(|m| {
            (
                format!("{:?}→{:?} {}", m.from, m.to, m.what()),
                String::from_utf8_lossy(m.msg.body()).into_owned(),
            )
        })
        .collect()
}

/// The direction attribute of an SDP's audio (`sendrecv` when none).
fn direction(sdp: &str) -> &'static str {
    for d in ["sendonly", "recvonly", "inactive", "sendrecv"] {
        if sdp.lines().any(|l| l.trim() == format!("a={d}")) {
            return d;
        }
    }
    "sendrecv"
}

/// Where `sipseal record` reads the call's SRTP keys from: proxy-a's
/// `--record` spool when the edges disclose the SDP to it for recording;
/// without them its `--report`, which reads the plain SDP any relay sees (the
/// spool must then hold nothing of the call: no designation marked it).
fn recorder_keys(net: &Network, call_id: &str, edges: bool) -> PathBuf {
    let spool = net.spool_a.join("keys.jsonl");
    let spooled = std::fs::read_to_string(&spool).unwrap_or_default();
    let of_call = spooled.lines().filter(|l| l.contains(call_id)).count();
    if edges {
        assert!(of_call > 0, "the call's keys in {}", spool.display());
        spool
    } else {
        assert_eq!(of_call, 0, "no designation, nothing spooled: {spooled}");
        net.report_a.clone()
    }
}

/// RTP packets in `file` from each phone's port range.
fn rtp_counts(file: &Path) -> (usize, usize) {
    let out = Command::new("tshark")
        // Decoded as RTP by port, not by tshark's heuristic (it missed
        // every packet of a call now and then).
        .args([
            "-r",
            s(file),
            "-d",
            "udp.port==26000-26199,rtp",
            "-Y",
            "rtp",
        ])
        .args(["-T", "fields", "-e", "udp.srcport"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let from = |(lo, hi): (u16, u16)| {
        text.lines()
            .filter_map(|l| l.trim().parse::<u16>().ok())
            .filter(|p| (lo..=hi).contains(p))
            .count()
    };
    (from(ALICE_RTP), from(BOB_RTP))
}

/// Stop tshark (SIGINT: it writes what it has) and wait for it.
fn stop(capture: &mut Background) {
    let _ = Command::new("kill")
        .args(["-INT", &capture.0.id().to_string()])
        .status();
    capture.wait(10);
}

/// Issue 30's walkthrough (see the module's comment): alice calls bob
/// through both edges and both relays, audio flows both ways as SRTP,
/// alice holds the call, her edge restarts, she resumes and hangs up;
/// her call to carol is refused; proxy-a's spool records her tone; the
/// capture lists every SIP message per link.
#[test]
fn the_flagship_walkthrough_two_baresip_phones_across_two_relays() {
    let _one = ONE_WALKTHROUGH.lock().unwrap_or_else(|e| e.into_inner());
    if !common::baresip::available() {
        eprintln!("SKIPPED: baresip is not installed (apt-get install baresip-core; .ci/run does)");
        return;
    }
    if Command::new("tshark").arg("--version").output().is_err() {
        eprintln!("SKIPPED: tshark is not installed (apt-get install tshark; .ci/run does)");
        return;
    }
    if !private_network() {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = artifacts();
    let keylog = out.join("edge-flagship.keys");
    let pcap = out.join("edge-flagship.pcapng");
    for f in [&keylog, &pcap] {
        let _ = std::fs::remove_file(f);
    }
    // Everything on the loopback, from before the first handshake.
    let mut capture = tshark(d, "udp or tcp", &pcap);

    say(format!(
        "the flagship walkthrough (docs/guide/12-flagship.md), in a network namespace of its own; capture {}",
        pcap.display()
    ));
    // carol is a user of the domain with no certificate.
    let realm = Realm::new(d, DOMAIN, &["alice", "bob", "carol"], true);
    let net = Network::start(d, &realm, &keylog);
    say(format!(
        "registrar for {DOMAIN} (udp/tcp {REGISTRAR}); proxy-a (tls {PROXY_A_TLS}: designated, --report, --record, --firewall nft) --mTLS--> proxy-b (tls {PROXY_B_TLS}: blind, serves {DOMAIN} by location)"
    ));
    // The edges: A for alice (its flow to proxy-a, disclosing to proxy-a
    // for recording), B for bob (its flow to proxy-b).
    let mut edges = None;
    if EDGES {
        let policy_a = POLICY_A.replace(
            "PROXY_A_CERT",
            s(&common::repo().join("keys/proxy-a-ec/cert.pem")),
        );
        let a = Edge::new(
            d,
            "edge-a",
            &identity(d, &realm, "alice"),
            EDGE_A,
            "proxy-a.a.example.com",
            PROXY_A_TLS,
            &policy_a,
        );
        let b = Edge::new(
            d,
            "edge-b",
            &identity(d, &realm, "bob"),
            EDGE_B,
            "proxy-b.b.example.com",
            PROXY_B_TLS,
            POLICY_B,
        );
        let (run_a, run_b) = (a.start(d, &keylog, 1), b.start(d, &keylog, 1));
        edges = Some((a, run_a, b, run_b));
        say(format!(
            "edge A for sip:alice@{DOMAIN} (udp {EDGE_A}, flow to proxy-a; policy: disclose to proxy-a, access read, record, refuse peers without a certificate); edge B for sip:bob@{DOMAIN} (udp {EDGE_B}, flow to proxy-b; sealed for the peer alone)"
        ));
    }
    let edge_logs = |edges: &Option<(Edge, Daemon, Edge, Daemon)>| match edges {
        Some((_, a, _, b)) => format!("edge A:\n{}\nedge B:\n{}", a.log_text(), b.log_text()),
        None => String::new(),
    };
    let tone = d.join("tone.wav");
    // Longer than the call: the tone never runs out while it lasts.
    write_tone(&tone, TONE_HZ, 30);
    let mut alice = phone(d, "alice", ALICE_SIP, 25_080, ALICE_RTP, Some(&tone));
    // bob's aubridge sends back what he hears.
    let mut bob = phone(d, "bob", BOB_SIP, 25_082, BOB_RTP, None);
    for b in [&mut alice, &mut bob] {
        let ok = b.expect_event(&["REGISTER_OK", "REGISTER_FAIL"], WAIT);
        assert_eq!(
            ok["type"],
            "REGISTER_OK",
            "{ok}\n{}\n{}",
            net.logs(),
            edge_logs(&edges)
        );
    }
    say(
        "alice's and bob's baresip (SDES-SRTP, PCMU) registered through their edges with Digest: 200",
    );
    // Each binding carries its own relay's flow (a Path with its token):
    // alice's proxy-a's (its TLS side, towards proxy-b), bob's proxy-b's
    // (its UDP side, towards the registrar), the edges' flows or not.
    let binding = |user: &str| -> String {
        glob::glob(&format!("{}/**/aors/*.yaml", net.registry.display()))
            .unwrap()
            .filter_map(Result::ok)
            .map(|p| std::fs::read_to_string(p).unwrap())
            .find(|t| t.contains(&format!("sip:{user}@{DOMAIN}")))
            .unwrap_or_else(|| panic!("no binding for {user}\n{}", net.logs()))
    };
    assert!(
        binding("alice").contains(&format!(
            "@proxy-a.a.example.com:{PROXY_A_TLS};transport=tls;lr;ob>"
        )),
        "{}",
        binding("alice")
    );
    assert!(
        binding("bob").contains(&format!(":{PROXY_B_UDP};transport=udp;lr;ob>")),
        "{}",
        binding("bob")
    );

    // The call: INVITE, 180, 200, ACK across both relays; SRTP both ways.
    alice.dial(&format!("sip:bob@{DOMAIN}"));
    let up = alice.expect_event(&["CALL_ESTABLISHED"], WAIT);
    bob.expect_event(&["CALL_ESTABLISHED"], WAIT);
    alice.expect_event(&["CALL_RTPESTAB"], WAIT);
    bob.expect_event(&["CALL_RTPESTAB"], WAIT);
    let call = up["id"].as_str().unwrap().to_owned();
    net.wait_both(&call, "ACK", None, 1);
    // proxy-a opened the offer and the answer, both signed inside: the
    // call's pinholes are in the kernel (each phone's media address).
    let open = pinholes();
    for addr in [media_address("alice"), media_address("bob")] {
        assert!(open.contains(addr), "no pinhole for {addr}:\n{open}");
    }
    say(format!(
        "alice dialled sip:bob@{DOMAIN}: the call is up, SRTP both ways; proxy-a read the signed offer and answer and opened the pinholes:\n{}",
        indented(
            &open
                .lines()
                .filter(|l| l.contains("elements")
                    || l.contains(media_address("alice"))
                    || l.contains(media_address("bob")))
                .collect::<Vec<_>>()
                .join("\n")
        )
        .trim_end()
    ));
    std::thread::sleep(CALL_MEDIA);

    // Hold and resume: alice's re-INVITEs, answered by bob.
    alice.hold();
    net.wait_both(&call, "INVITE", Some(200), 2);
    net.wait_both(&call, "ACK", None, 2);
    // Edge A restarted mid-call (SIGTERM, started again on the same
    // state and address): the resume and the BYE still go out sealed,
    // under the session key it stored.
    say("alice put bob on hold (re-INVITE sendonly, answered recvonly)");
    if let Some((a, run_a, _, _)) = edges.as_mut() {
        run_a.stop();
        *run_a = a.start(d, &keylog, 2);
        say("edge A stopped (SIGTERM) and started again on the same --state, mid-call");
    }
    alice.resume();
    net.wait_both(&call, "INVITE", Some(200), 3);
    net.wait_both(&call, "ACK", None, 3);
    say(
        "alice resumed: her re-INVITE went out through the restarted edge, sealed under the stored session key",
    );
    std::thread::sleep(Duration::from_secs(1));

    // alice hangs up: the BYE and its 200 cross both relays.
    alice.hangup();
    bob.expect_event(&["CALL_CLOSED"], WAIT);
    alice.expect_event(&["CALL_CLOSED"], WAIT);
    net.wait_both(&call, "BYE", Some(200), 1);
    // The BYE closed them (the table itself stays).
    let closed = pinholes();
    assert!(closed.contains("table inet sipseal"), "{closed}");
    for addr in [media_address("alice"), media_address("bob")] {
        assert!(
            !closed.contains(addr),
            "{addr} still open after the BYE:\n{closed}"
        );
    }
    say("alice hung up: the BYE crossed both relays; proxy-a closed the pinholes");

    // A peer without a certificate: edge A's policy refuses the call
    // (488 with a Warning) and nothing of it leaves for the network.
    let mut refused_call = None;
    if EDGES {
        alice.dial(&format!("sip:carol@{DOMAIN}"));
        let closed = alice.expect_event(&["CALL_CLOSED"], WAIT);
        assert!(
            closed["param"].as_str().unwrap_or_default().contains("488"),
            "{closed}\n{}",
            edge_logs(&edges)
        );
        refused_call = closed["id"].as_str().map(str::to_owned);
        say(format!(
            "alice dialled sip:carol@{DOMAIN}, who has no certificate: edge A refused it ({})",
            closed["param"].as_str().unwrap_or_default()
        ));
    }
    // bob calls alice: proxy-b finds her by location and follows her
    // binding's Path to proxy-a (by name, over TLS), whose flow token
    // names edge A's certificate: edge A's connection since its restart
    // carries the call (her phone has not registered again). bob hangs
    // up: his BYE reaches alice the same way.
    let mut back_call = None;
    if EDGES {
        bob.clear_events();
        alice.clear_events();
        bob.dial(&format!("sip:alice@{DOMAIN}"));
        let up = bob.expect_event(&["CALL_ESTABLISHED"], WAIT);
        alice.expect_event(&["CALL_ESTABLISHED"], WAIT);
        bob.expect_event(&["CALL_RTPESTAB"], WAIT);
        alice.expect_event(&["CALL_RTPESTAB"], WAIT);
        let id = up["id"].as_str().unwrap().to_owned();
        net.wait_both(&id, "ACK", None, 1);
        std::thread::sleep(Duration::from_secs(1));
        bob.hangup();
        alice.expect_event(&["CALL_CLOSED"], WAIT);
        bob.expect_event(&["CALL_CLOSED"], WAIT);
        net.wait_both(&id, "BYE", Some(200), 1);
        say(format!(
            "bob dialled sip:alice@{DOMAIN}: proxy-b found her by location and followed her Path to proxy-a, whose flow token led to edge A's new connection (her phone had not registered again); the call came up, SRTP both ways, and bob's BYE reached her"
        ));
        back_call = Some(id);
    }
    let alice_log = alice.stop();
    bob.stop();
    std::thread::sleep(Duration::from_millis(300));
    stop(&mut capture);

    // SRTP both ways at 50 packets a second: alice's 3 s and more (she
    // keeps sending on hold); bob's more than 2 s (on recvonly he stops,
    // and sent ~150 in our runs).
    let (from_alice, from_bob) = rtp_counts(&pcap);
    say(format!(
        "SRTP packets in the capture: {from_alice} from alice, {from_bob} from bob"
    ));
    assert!(
        from_alice >= 150 && from_bob >= 100,
        "{from_alice} {from_bob}"
    );

    // The capture, decrypted: each SIP message of the call per link.
    let decoder = Decoder {
        pcap: pcap.clone(),
        keylog: keylog.clone(),
    };
    let messages = decoder.sip();
    let table = per_link(&messages, &call);
    let text = table_text(&table);
    std::fs::write(out.join("edge-flagship.txt"), &text).unwrap();
    say(format!(
        "the wire, TLS decrypted with the key log: every SIP message of the call per link, its body plain or sealed\n{}",
        indented(&text).trim_end()
    ));
    assert_bodies_per_link(&messages, &call, EDGES, 3);
    if let Some(back) = &back_call {
        // bob's call to alice: sealed between the edges too, plain on
        // both phone links.
        assert_bodies_per_link(&messages, back, EDGES, 1);
    }
    if let Some(refused) = &refused_call {
        let refused: Vec<&Captured> = messages
            .iter()
            .filter(|m| m.msg.call_id().ok() == Some(refused.as_str()))
            .collect();
        let answer = refused
            .iter()
            .find(|m| m.from == Node::EdgeA && m.to == Node::Alice && m.msg.status() == Some(488))
            .unwrap_or_else(|| panic!("no 488 from edge A to alice:\n{text}"));
        let warning = answer.msg.header("Warning").unwrap_or_default();
        assert!(
            warning.starts_with("399 ") && warning.contains("no certificate for sip:carol@"),
            "{warning}"
        );
        assert!(
            refused.iter().all(|m| phone_link(link(m.from, m.to))),
            "the refused call left edge A: {:?}",
            refused
                .iter()
                .map(|m| format!("{:?}→{:?} {}", m.from, m.to, m.what()))
                .collect::<Vec<_>>()
        );
    }
    // bob's phone sees the hold and the resume in plain SDP: the hold
    // offer sendonly (answered recvonly), the resume sendrecv.
    let mut at_bob = phone_sdps(&messages, &call, Node::Bob);
    // A retransmission over UDP (a 200 before its ACK) is the same message.
    at_bob.dedup();
    let seen: Vec<&str> = at_bob.iter().map(|(_, sdp)| direction(sdp)).collect();
    // Each side's media on its own address, as its SDP says.
    for (what, sdp) in &at_bob {
        let who = if what.starts_with("Bob") {
            "bob"
        } else {
            "alice"
        };
        let c = format!("c=IN IP4 {}", media_address(who));
        assert!(sdp.contains(&c), "{what}: {c}\n{sdp}");
    }
    assert_eq!(
        seen,
        [
            "sendrecv", "sendrecv", "sendonly", "recvonly", "sendrecv", "sendrecv"
        ],
        "{text}"
    );
    if let Some(first) = messages.iter().find(|m| {
        m.msg.call_id().ok() == Some(call.as_str())
            && m.to == Node::Bob
            && m.msg.method() == Some("INVITE")
    }) {
        say(format!(
            "bob's phone got plain SDP, and what edge B found:\n      Warning: {}\n{}",
            first.msg.header("Warning").unwrap_or("(none)"),
            indented(&String::from_utf8_lossy(first.msg.body())).trim_end()
        ));
    }

    // proxy-a's keys and the capture: alice's side as a WAV of her tone.
    let keys = recorder_keys(&net, &call, EDGES);
    let rec = d.join("rec");
    let run = common::sipseal()
        .args(["record", "--report", s(&keys), "--capture", s(&pcap)])
        .args(["--out", s(&rec), "--format", "json"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "record: {}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rec.join("calls.json")).unwrap()).unwrap();
    let (tag, _) = index
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, id)| id.as_str() == Some(call.as_str()))
        .unwrap_or_else(|| panic!("the call in {index}"));
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(rec.join(tag).join("s0-audio-from-caller.json")).unwrap(),
    )
    .unwrap();
    let wav = out.join("edge-flagship-alice.wav");
    let _ = std::fs::copy(rec.join(tag).join("s0-audio-from-caller.wav"), &wav);
    assert_eq!(summary["auth_failures"], 0, "{summary}");
    assert!(summary["packets"].as_u64().unwrap() >= 150, "{summary}");
    let samples: Vec<i16> = hound::WavReader::open(rec.join(tag).join("s0-audio-from-caller.wav"))
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect();
    let found = common::dominant(&samples, 8000.0);
    assert!(
        (found - TONE_HZ).abs() <= 10.0,
        "dominant {found} Hz, not {TONE_HZ}\n{alice_log}"
    );
    say(format!(
        "proxy-a's recording (sipseal record, keys from its --record spool): alice's side, {} SRTP packets, {} authentication failures, a {found:.0} Hz tone (she played {TONE_HZ} Hz): {}",
        summary["packets"],
        summary["auth_failures"],
        wav.display()
    ));
    // proxy-a, designated, opened every offer and answer of the call:
    // the call's, the hold's and the resume's after edge A's restart
    // (sealed under the session key the edge had stored).
    if EDGES {
        let report_a = std::fs::read_to_string(&net.report_a).unwrap_or_default();
        let opened: Vec<serde_json::Value> = report_a
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["call_id"] == call.as_str() && l["method"] == "INVITE")
            .collect();
        let with: Vec<(Option<u64>, bool, &str)> = opened
            .iter()
            .filter(|l| l["status"].is_null() || l["status"] == 200)
            .map(|l| {
                (
                    l["status"].as_u64(),
                    l["opened"] == true,
                    l["opened_with"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        let key = with.get(2).map(|w| w.2).unwrap_or_default();
        assert!(key.starts_with("session key "), "{with:?}");
        let want: Vec<(Option<u64>, bool, &str)> = [None, Some(200)]
            .repeat(3)
            .into_iter()
            .enumerate()
            .map(|(i, st)| {
                let by = if i == 0 {
                    "sip:proxy-a.a.example.com"
                } else {
                    key
                };
                (st, true, by)
            })
            .collect();
        assert_eq!(with, want, "proxy-a's report of the call's INVITEs");
        say(format!(
            "proxy-a opened all {} offers and answers: the first by its designation ({}), the rest under the {}",
            with.len(),
            want[0].2,
            key.split(' ').take(2).collect::<Vec<_>>().join(" ")
        ));
        // The resume went through the restarted edge A.
        let (_, run_a, _, _) = edges.as_ref().unwrap();
        assert!(
            run_a
                .log_lines()
                .iter()
                .any(|l| l["call_id"] == call.as_str() && l["method"] == "INVITE"),
            "edge A's second run forwarded no re-INVITE\n{}",
            run_a.log_text()
        );
    }
    // proxy-b is blind: it relays, opens nothing.
    let opened_b = std::fs::read_to_string(&net.report_b)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&call) && l.contains("\"opened\":true"))
        .count();
    assert_eq!(opened_b, 0, "proxy-b opened nothing");
    say("proxy-b relayed every message of the call and opened none");
    say(format!(
        "walkthrough took {:?}; capture kept: {} (keys {}, table {})",
        started.elapsed(),
        pcap.display(),
        keylog.display(),
        out.join("edge-flagship.txt").display()
    ));
}

/// One walkthrough at a time in this process: the demo's runs one in a
/// process of its own (its own namespaces, so no port is shared), but two
/// calls with media at once on two cores would make the packet counts a
/// matter of luck.
static ONE_WALKTHROUGH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The demo, `bash demos/flagship.sh`, as a person without root runs
/// it: this walkthrough in a user namespace of its own (`unshare
/// --map-root-user`; forced here, CI being root), telling its story on
/// standard output, and leaving the recording of alice's tone.
#[test]
fn the_demo_script_runs_the_walkthrough_in_a_user_namespace_and_tells_it() {
    let _one = ONE_WALKTHROUGH.lock().unwrap_or_else(|e| e.into_inner());
    if !common::baresip::available() || Command::new("tshark").arg("--version").output().is_err() {
        eprintln!("SKIPPED: baresip or tshark is not installed (.ci/run installs both)");
        return;
    }
    let userns = Command::new("unshare")
        .args(["--map-root-user", "--user", "--net", "true"])
        .status();
    if !userns.is_ok_and(|s| s.success()) {
        eprintln!(
            "SKIPPED: this machine makes no user namespace (unshare --map-root-user), which the demo needs without root"
        );
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("bash")
        .arg(common::repo().join("demos/flagship.sh"))
        .env("SIPSEAL_FLAGSHIP_BIN", std::env::current_exe().unwrap())
        .env("SIPSEAL_FLAGSHIP_USERNS", "1")
        .env("SIPSEAL_FLAGSHIP_OUT", out.path())
        .output()
        .unwrap();
    let story = String::from_utf8_lossy(&run.stdout);
    let errors = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{}\n{story}\n{errors}", run.status);
    // Every line is the story's: a step, or a step's detail.
    assert!(
        story
            .lines()
            .all(|l| l.starts_with("▶ ") || l.starts_with("      ")),
        "{story}"
    );
    for step in [
        "registered through their edges",
        "the call is up, SRTP both ways",
        "edge A stopped (SIGTERM) and started again",
        "edge A refused it (488",
        "Warning: 399 ",
        "signed by sip:alice@example.com (verified)",
        "a 1000 Hz tone",
        "proxy-b relayed every message of the call and opened none",
    ] {
        assert!(story.contains(step), "no {step:?} in the story:\n{story}");
    }
    // The recording it names is there, and is alice's tone.
    let wav = out.path().join("edge-flagship-alice.wav");
    let samples: Vec<i16> = hound::WavReader::open(&wav)
        .unwrap_or_else(|e| panic!("{}: {e}\n{story}", wav.display()))
        .samples::<i16>()
        .map(Result::unwrap)
        .collect();
    let found = common::dominant(&samples, 8000.0);
    assert!((found - TONE_HZ).abs() <= 10.0, "{found} Hz");
}

/// The namespace's `table inet sipseal`, as `nft list` shows it.
fn pinholes() -> String {
    let out = Command::new("nft")
        .args(["list", "table", "inet", "sipseal"])
        .output()
        .expect("nft runs (.ci/run installs nftables)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
