//! Live servers for the network tests: `sipseal relay` and `sipseal
//! registrar --listen` processes (stopped by SIGTERM when dropped, their
//! log kept), and SIPp. Everything binds to 127.0.0.1 and stops by itself.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port for this test binary's run and this `slot` (SIPp needs fixed ones).
pub fn port(base: u16, slot: u16) -> u16 {
    base + (std::process::id() % 2_000) as u16 * 8 + slot
}

/// tshark capturing the loopback with the capture `filter` into `file`,
/// returned once it says it is capturing (its log in `dir/tshark.log`).
pub fn tshark(dir: &Path, filter: &str, file: &Path) -> Background {
    let log = dir.join("tshark.log");
    let child = Command::new("tshark")
        .args(["-i", "lo", "-f", filter, "-q", "-w"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .expect("tshark runs (.ci/run installs tshark)");
    let until = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Capturing on")
    {
        assert!(Instant::now() < until, "tshark did not start capturing");
        std::thread::sleep(Duration::from_millis(50));
    }
    Background(child)
}

/// A `sipseal` server process; SIGTERM on drop.
pub struct Daemon {
    child: Option<Child>,
    /// Its standard error (the log).
    pub log: PathBuf,
    /// What it listens on, as it printed (`tcp:127.0.0.1:40000`, ...).
    pub addrs: Vec<String>,
}

impl Daemon {
    /// Start `sipseal ARGS` in `dir`, its log in `dir/NAME.log`, and wait
    /// for its "listening on" line.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Daemon {
        Daemon::start_env(dir, name, args, &[])
    }

    /// [`Daemon::start`] with these environment variables set for it
    /// (`SSLKEYLOGFILE`).
    pub fn start_env(dir: &Path, name: &str, args: &[&str], env: &[(&str, &Path)]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sipseal"));
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon::start_command(dir, name, cmd)
    }

    /// [`Daemon::start`] with the open-file limit (soft and hard) at `files`.
    pub fn start_with_files(dir: &Path, name: &str, files: u32, args: &[&str]) -> Daemon {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_sipseal"))
            .args(args);
        Daemon::start_command(dir, name, cmd)
    }

    fn start_command(dir: &Path, name: &str, mut cmd: Command) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let child = cmd
            .current_dir(super::repo())
            .env("SIPSEAL_STATE", dir.join(format!("{name}-state")))
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child: Some(child),
            log,
            addrs: Vec::new(),
        };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let text = d.log_text();
            if let Some(line) = text.lines().find(|l| l.contains(" listening on ")) {
                let rest = line.split(" listening on ").nth(1).unwrap();
                let rest = rest.split(" (").next().unwrap();
                d.addrs = rest.split_whitespace().map(str::to_owned).collect();
                return d;
            }
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{name} exited ({status}) before listening:\n{text}");
            }
            assert!(Instant::now() < until, "{name} did not listen:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port of its `transport` listener.
    pub fn port(&self, transport: &str) -> u16 {
        let a = self
            .addrs
            .iter()
            .find(|a| a.starts_with(&format!("{transport}:")))
            .unwrap_or_else(|| panic!("no {transport} listener in {:?}", self.addrs));
        a.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (at most 10 s) until its log says `text`; whether it did. A
    /// server logs a message after sending what it caused.
    pub fn logged(&self, text: &str) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while !self.log_text().contains(text) {
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Its JSON log lines.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Send it a signal (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{name}"), &child.id().to_string()])
                .status();
        }
    }

    /// Send it SIGTERM and wait (at most 10 s); its log.
    pub fn stop(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.log_text()
    }

    /// Kill it without warning (SIGKILL).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A background process killed on drop (SIPp, tshark).
pub struct Background(pub Child);

impl Background {
    /// Wait for it to end by itself (at most `secs`); its exit code.
    pub fn wait(&mut self, secs: u64) -> Option<i32> {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > until {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A hosts file for `--hosts` in `dir`.
pub fn hosts(dir: &Path, lines: &[(&str, u16)]) -> PathBuf {
    let text: String = lines
        .iter()
        .map(|(name, port)| format!("127.0.0.1:{port} {name}\n"))
        .collect();
    super::write(dir, "hosts", text.as_bytes())
}

/// A next hop on TCP that takes every message sent to it and hands it
/// over, answering nothing.
pub fn tcp_sink() -> (u16, std::sync::mpsc::Receiver<sipseal::sip::Message>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = vec![0u8; 65_536];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Ok((msg, used)) = sipseal::sip::Message::parse_prefix(&pending) {
                        pending.drain(..used);
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, rx)
}

/// `redis-server` on 127.0.0.1 (no persistence), stopped on drop.
pub struct Redis {
    /// Kept for its drop, which stops the server.
    _child: Background,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// Start one on a free port, once it answers.
    pub fn start() -> Redis {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        Redis::start_on(port)
    }

    /// Start one on `port` (a restart), once it answers.
    pub fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (.ci/run installs redis-server)");
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            _child: Background(child),
            port,
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// The headers and body of a message.
pub fn split(bytes: &[u8]) -> (String, Vec<u8>) {
    let at = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (
        String::from_utf8(bytes[..at].to_vec()).unwrap(),
        bytes[at + 4..].to_vec(),
    )
}

/// The value of header `name` in `head`.
pub fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

/// One call's sealed messages.
pub struct SealedCall {
    /// alice's INVITE sealed for bob (P-256) and proxy-a (P-256, designated).
    pub invite: Vec<u8>,
    /// bob's 200 OK, sealed under the session key (`sipseal reply`).
    pub answer: Vec<u8>,
}

/// A call `call_id` sealed as alice and answered as bob (state in `d`).
pub fn sealed_call(d: &Path, call_id: &str) -> SealedCall {
    sealed_call_with(d, call_id, &[])
}

/// [`sealed_call`] with more `seal` arguments (`--record`).
pub fn sealed_call_with(d: &Path, call_id: &str, seal_args: &[&str]) -> SealedCall {
    use super::{Succeeds, s, sipseal, write};
    let invite = sipseal()
        .args(["build", "invite", "--from", "sip:alice@a.example.com"])
        .args(["--to", "sip:bob@b.example.com", "--call-id", call_id])
        .args(["--sdp", "samples/offer-audio.sdp"])
        .succeeds()
        .stdout;
    let inv = write(d, "invite.sip", &invite);
    let alice = d.join("alice-state");
    let bob = d.join("bob-state");
    let sealed = sipseal()
        .args(["seal", s(&inv), "--peer", "keys/bob-ec/cert.pem"])
        .args([
            "--disclose",
            "keys/proxy-a-ec/cert.pem",
            "--state",
            s(&alice),
        ])
        .args(seal_args)
        .succeeds()
        .stdout;
    let sealed_path = write(d, "sealed.sip", &sealed);
    sipseal()
        .args(["open", s(&sealed_path), "--identity", "keys/bob-ec"])
        .args(["--state", s(&bob)])
        .succeeds();
    let answer = sipseal()
        .args(["reply", "--request", s(&sealed_path), "--response", "200"])
        .args(["--sdp", "samples/answer.sdp", "--identity", "keys/bob-ec"])
        .args(["--state", s(&bob)])
        .succeeds()
        .stdout;
    SealedCall {
        invite: sealed,
        answer,
    }
}

/// `answer` with the Via lines of `forwarded` (the request as the relay
/// sent it on), so that it comes back through that relay.
pub fn answering(answer: &[u8], forwarded: &sipseal::sip::Message) -> Vec<u8> {
    let mut msg = sipseal::sip::Message::parse(answer).unwrap();
    msg.remove_headers("Via");
    let vias: Vec<String> = forwarded
        .header_values("Via")
        .into_iter()
        .map(str::to_owned)
        .collect();
    for v in vias.iter().rev() {
        msg.insert_header(0, "Via", v);
    }
    msg.to_bytes()
}
