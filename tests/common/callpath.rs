//! The whole call path behind `sipseal gateway` (issue 29), as sipseal
//! processes on 127.0.0.1: a registrar for b.example.com; relay B
//! (`keys/proxy-b-ec`, mutual TLS, serving b.example.com by location:
//! blind, nothing is disclosed to it); relay A (`keys/proxy-a-ec`, mutual
//! TLS, the gateway's relay, forwarding to B: the designated relay the
//! offers are disclosed to); `sipseal terminal` registered as
//! sip:bob@b.example.com through B, allowing alice and serving the
//! test's HTTP service. Both relays take loopback next hops
//! (`--hop-allow 127.0.0.0/8`): the dialog's ACK and BYE follow the
//! Record-Route entries, which name 127.0.0.1 here. [`CallPath::gateway_args`] are the flags that put
//! the gateway's call on it.

use std::path::{Path, PathBuf};

use super::live::Daemon;
use super::realm::Realm;
use super::{repo, s, write};

/// The destination the terminal answers as.
pub const DESTINATION: &str = "sip:bob@b.example.com";

/// How to start it: [`CallPath::start_opts`].
#[derive(Default)]
pub struct Options<'a> {
    /// More flags for relay A.
    pub relay_a_extra: &'a [&'a str],
    /// More flags for the terminal.
    pub terminal_extra: &'a [&'a str],
    /// Relay A's TLS port (0: any).
    pub relay_a_port: u16,
    /// Relay B's TLS port (0: any).
    pub relay_b_port: u16,
    /// Environment variables for every daemon (`SSLKEYLOGFILE`).
    pub env: &'a [(&'a str, &'a Path)],
    /// The terminal enrols (`--enrol`, bootstrap keys/bob): its identity
    /// is keys/bob's key alone, its certificate the registrar's, which
    /// the registrar then answers certificate queries for bob with.
    pub enrol: bool,
}

/// A port free on 127.0.0.1 for both TCP and UDP.
fn free_port_pair() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The running path.
pub struct CallPath {
    pub registrar: Daemon,
    pub relay_b: Daemon,
    pub relay_a: Daemon,
    pub terminal: Daemon,
    /// tls:proxy-a.a.example.com:PORT
    pub outbound: String,
    /// Resolves proxy-a.a.example.com for the gateway.
    pub hosts: PathBuf,
    /// Relay A's --report (one JSON line per message it handled).
    pub report_a: PathBuf,
    /// Relay B's --report.
    pub report_b: PathBuf,
    /// tcp:127.0.0.1:PORT, where the registrar takes certificate queries.
    pub cert_query: String,
    /// The registrar's CA (its signature and the certificates it issues
    /// chain to it).
    pub realm_ca: PathBuf,
}

impl CallPath {
    /// Start it under `d` (a directory of its own), the terminal serving
    /// `http://127.0.0.1:{service}` with `terminal_extra` flags.
    pub fn start(d: &Path, service: u16, terminal_extra: &[&str]) -> CallPath {
        CallPath::start_with(d, service, &[], terminal_extra)
    }

    /// [`CallPath::start`] with `relay_a_extra` flags for relay A.
    pub fn start_with(
        d: &Path,
        service: u16,
        relay_a_extra: &[&str],
        terminal_extra: &[&str],
    ) -> CallPath {
        CallPath::start_opts(
            d,
            service,
            &Options {
                relay_a_extra,
                terminal_extra,
                ..Options::default()
            },
        )
    }

    /// [`CallPath::start`] with every option.
    pub fn start_opts(d: &Path, service: u16, opts: &Options) -> CallPath {
        let Options {
            relay_a_extra,
            terminal_extra,
            relay_a_port,
            relay_b_port,
            env,
            enrol,
        } = *opts;
        let start = |name: &str, args: &[&str]| Daemon::start_env(d, name, args, env);
        std::fs::create_dir_all(d).unwrap();
        let realm = Realm::new(d, "b.example.com", &["bob"], false);
        let registry = d.join("registry");
        let realm_ca = d.join("ca/cert.pem");
        // TCP for certificate queries (an answer with its chain is too
        // large for UDP); the users' CA for the queries they sign.
        // One port for both, as a SIP server has: relay B sends a
        // REGISTER too large for UDP (a CSR, RFC 3261 §18.1.1) over TCP
        // to the port its hosts entry names.
        let port = free_port_pair();
        let (udp, tcp) = (
            format!("udp:127.0.0.1:{port}"),
            format!("tcp:127.0.0.1:{port}"),
        );
        let registrar =
            realm.registrar(s(&registry), &[&udp, &tcp], &["--trust", "keys/trust.pem"]);
        let b_hosts = write(
            d,
            "b-hosts",
            format!("127.0.0.1:{} b.example.com\n", registrar.port("udp")).as_bytes(),
        );
        let report_b = d.join("report-b.jsonl");
        let listen_b = format!("tls:127.0.0.1:{relay_b_port}");
        let relay_b = start(
            "relay-b",
            &[
                "relay",
                "--listen",
                &listen_b,
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
                s(&b_hosts),
                "--record-route",
                "--hop-allow",
                "127.0.0.0/8",
                "--report",
                s(&report_b),
                // The terminal's flow with the certificate it enrolled.
                "--trust",
                s(&realm_ca),
            ],
        );
        let to_b = format!("proxy-b.b.example.com:{}", relay_b.port("tls"));
        let a_hosts = write(
            d,
            "a-hosts",
            format!("127.0.0.1:{} proxy-b.b.example.com\n", relay_b.port("tls")).as_bytes(),
        );
        let report_a = d.join("report-a.jsonl");
        let next = format!("sip:{to_b};transport=tls");
        let listen_a = format!("tls:127.0.0.1:{relay_a_port}");
        let mut args = vec![
            "relay",
            "--listen",
            &listen_a,
            "--identity",
            "keys/proxy-a-ec",
            "--trust",
            "keys/trust.pem",
            "--hosts",
            s(&a_hosts),
            "--next",
            &next,
            "--record-route",
            "--hop-allow",
            "127.0.0.0/8",
            "--report",
            s(&report_a),
        ];
        args.extend_from_slice(relay_a_extra);
        let relay_a = start("relay-a", &args);
        let ua_hosts = write(
            d,
            "ua-hosts",
            format!("127.0.0.1:{} proxy-b.b.example.com\n", relay_b.port("tls")).as_bytes(),
        );
        let pw = d.join("bob.pw");
        std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let serve = format!("http://127.0.0.1:{service}");
        let terminal_outbound = format!("tls:{to_b}");
        // RSA: it signs its answers, which the gateway requires when it
        // discloses the offer to a relay (docs/SPEC.md §7.2).
        let enrolled = d.join("bob-enrol");
        let identity = if enrol {
            std::fs::create_dir_all(&enrolled).unwrap();
            let key = enrolled.join("key.pem");
            std::fs::copy(repo().join("keys/bob/key.pem"), &key).unwrap();
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            s(&enrolled)
        } else {
            "keys/bob"
        };
        let mut args = vec![
            "terminal",
            "--identity",
            identity,
            "--trust",
            "keys/trust.pem",
            "--outbound",
            &terminal_outbound,
            "--hosts",
            s(&ua_hosts),
            "--password-file",
            s(&pw),
            "--allow",
            "sip:alice@a.example.com",
            "--serve",
            &serve,
        ];
        if enrol {
            args.extend_from_slice(&[
                "--enrol",
                "--bootstrap",
                "keys/bob",
                "--trust",
                s(&realm_ca),
            ]);
        }
        args.extend_from_slice(terminal_extra);
        let terminal = start("terminal", &args);
        let hosts = write(
            d,
            "gateway-hosts",
            format!("127.0.0.1:{} proxy-a.a.example.com\n", relay_a.port("tls")).as_bytes(),
        );
        let outbound = format!("tls:proxy-a.a.example.com:{}", relay_a.port("tls"));
        let cert_query = format!("tcp:127.0.0.1:{}", registrar.port("tcp"));
        CallPath {
            registrar,
            relay_b,
            relay_a,
            terminal,
            outbound,
            hosts,
            report_a,
            report_b,
            cert_query,
            realm_ca,
        }
    }

    /// The gateway's flags for this path: its relay A over mutual TLS,
    /// the users calling as `keys/USER`, offers disclosed to relay A, the
    /// channel confined to the loopback.
    pub fn gateway_args(&self) -> Vec<String> {
        [
            "--outbound",
            &self.outbound,
            "--hosts",
            s(&self.hosts),
            "--trust",
            "keys/trust.pem",
            "--callers",
            "keys",
            "--disclose",
            "keys/proxy-a-ec/cert.pem",
            "--channel-allow",
            "127.0.0.0/8",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    }

    /// The terminal's certificate, as a destination's `cert:`.
    pub fn destination_cert() -> String {
        repo().join("keys/bob/cert.pem").display().to_string()
    }

    /// Every daemon's log, for a failed assertion.
    pub fn logs(&self) -> String {
        format!(
            "terminal:\n{}\nrelay A:\n{}\nrelay B:\n{}\nregistrar:\n{}",
            self.terminal.log_text(),
            self.relay_a.log_text(),
            self.relay_b.log_text(),
            self.registrar.log_text()
        )
    }

    /// Wait (at most 10 s) until the terminal has registered.
    pub fn wait_registered(&self) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.terminal.log_text().contains(" registered for ") {
            assert!(std::time::Instant::now() < until, "{}", self.logs());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The INVITEs a relay's --report shows: (call_id, opened).
    pub fn invites(report: &Path) -> Vec<(String, bool)> {
        std::fs::read_to_string(report)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["method"] == "INVITE" && l["status"].is_null())
            .map(|l| {
                (
                    l["call_id"].as_str().unwrap_or_default().to_owned(),
                    l["opened"] == true,
                )
            })
            .collect()
    }

    /// Every call crossed relay A, which opened it (designated), and
    /// relay B, which did not (blind): `calls` INVITEs each.
    pub fn assert_designated_and_blind(&self, calls: usize) {
        let a = CallPath::invites(&self.report_a);
        let b = CallPath::invites(&self.report_b);
        assert_eq!(a.len(), calls, "relay A: {a:?}\n{}", self.logs());
        assert_eq!(b.len(), calls, "relay B: {b:?}\n{}", self.logs());
        assert!(a.iter().all(|(_, opened)| *opened), "relay A: {a:?}");
        assert!(b.iter().all(|(_, opened)| !opened), "relay B: {b:?}");
        let mut ids_a: Vec<_> = a.into_iter().map(|(c, _)| c).collect();
        let mut ids_b: Vec<_> = b.into_iter().map(|(c, _)| c).collect();
        ids_a.sort();
        ids_b.sort();
        assert_eq!(ids_a, ids_b, "the same calls crossed both relays");
    }
}
