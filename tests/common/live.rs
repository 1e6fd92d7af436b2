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
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_sipseal"))
            .args(args)
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

    /// Its JSON log lines.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
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
