//! Issue 26: the guide's live walkthrough (docs/guide/05-live.md) works as
//! a person types it. Its `sh` blocks go, command by command, into an
//! interactive bash on a pseudo-terminal (`script` from util-linux), each
//! after the shell's prompt came back: job control on, SIPp and the servers
//! in the background, everything on 127.0.0.1. Every command must exit 0
//! (or the `# exit N` it names), nothing may be stopped by the terminal,
//! and when the shell exits nothing it started may still run. The
//! walkthrough's ports (5060, 5070, 5080, 5090) become free ones of this
//! run. Whatever happens, the test stops every process it started.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The ports the chapter names, in the order of the ones this run uses.
const PORTS: [u16; 4] = [5060, 5070, 5080, 5090];

/// The prompt the test's shell shows: the last command's exit status.
const PROMPT: &str = "[rc=";

/// The commands of the chapter's `sh` blocks, as typed: each with its
/// continuation lines; comments and blank lines left out.
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh || (pending.is_empty() && (line.trim().is_empty() || line.starts_with('#'))) {
            continue;
        }
        pending.push_str(line);
        if line.ends_with('\\') {
            pending.push('\n');
        } else {
            out.push(std::mem::take(&mut pending));
        }
    }
    out
}

/// `text` with each of the chapter's ports (a number on its own, not part
/// of a longer one) replaced by this run's.
fn with_ports(text: &str, ports: &[u16; 4]) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        let n = digits.parse::<u16>().ok();
        match PORTS.iter().position(|p| Some(*p) == n) {
            Some(i) if digits.len() == 4 => out.push_str(&ports[i].to_string()),
            _ => out.push_str(digits),
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// Four ports free on 127.0.0.1 for both UDP and TCP, away from the
/// ranges the other live tests take (they derive theirs from the process
/// id below 52,000).
fn free_ports() -> [u16; 4] {
    let free = |p: u16| {
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
    };
    for attempt in 0..200u32 {
        let slot = (std::process::id() + attempt * 7) % 1_000;
        let base = 52_008 + slot as u16 * 8;
        let ports = [base, base + 1, base + 2, base + 3];
        if ports.iter().all(|p| free(*p)) {
            return ports;
        }
    }
    panic!("no four free ports on 127.0.0.1 between 52008 and 60000");
}

/// The processes whose working directory is `dir`: what the walkthrough
/// started there (the shell, the servers, SIPp).
fn running_in(dir: &Path) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == dir) {
            let cmdline = std::fs::read(entry.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            found.push((pid, cmdline.trim().to_owned()));
        }
    }
    found
}

fn signal(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// The terminal session: `script` and everything started under it in the
/// scratch directory, stopped on drop (a failed assertion included).
struct Session {
    script: Child,
    dir: PathBuf,
    screen: Arc<Mutex<String>>,
}

impl Session {
    fn start(dir: &Path, rcfile: &Path) -> Session {
        let bin = Path::new(env!("CARGO_BIN_EXE_sipseal")).parent().unwrap();
        let shell = format!("bash --noprofile --rcfile {} -i", rcfile.display());
        let mut script = Command::new("script")
            .args(["-q", "-f", "-e", "-c", &shell, "/dev/null"])
            .current_dir(dir)
            .env(
                "PATH",
                format!(
                    "{}:{}:/usr/sbin:/sbin",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("TERM", "dumb")
            .env("SIPSEAL_STATE", dir.join("state"))
            .env_remove("SIPSEAL_SEED")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux runs (.ci/run installs bsdutils)");
        let screen = Arc::new(Mutex::new(String::new()));
        for mut from in [
            Box::new(script.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(script.stderr.take().unwrap()),
        ] {
            let screen = Arc::clone(&screen);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                    screen.lock().unwrap().push_str(&text);
                }
            });
        }
        Session {
            script,
            dir: std::fs::canonicalize(dir).unwrap(),
            screen,
        }
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    fn prompts(&self) -> usize {
        self.screen().matches(PROMPT).count()
    }

    /// The end of what the terminal showed, for a failure's message.
    fn tail(&self) -> String {
        let screen = self.screen();
        let lines: Vec<&str> = screen.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Wait for prompt number `n`; the exit status it shows.
    fn prompt(&self, n: usize, secs: u64, what: &str) -> i32 {
        let until = Instant::now() + Duration::from_secs(secs);
        while self.prompts() < n {
            assert!(
                Instant::now() < until,
                "no prompt {secs} s after {what:?} (a background job the terminal stopped, \
                 \"Stopped (tty output)\", never listens); the terminal showed:\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let screen = self.screen();
        let after = screen.split(PROMPT).nth(n).unwrap_or_default();
        after
            .split(']')
            .next()
            .and_then(|rc| rc.parse().ok())
            .unwrap_or(-1)
    }

    fn type_line(&mut self, text: &str) {
        let stdin = self.script.stdin.as_mut().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.script.kill();
        let _ = self.script.wait();
        let pids =
            |s: &Session| -> Vec<u32> { running_in(&s.dir).into_iter().map(|p| p.0).collect() };
        signal("TERM", &pids(self));
        let until = Instant::now() + Duration::from_secs(5);
        while !pids(self).is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal("KILL", &pids(self));
    }
}

fn have(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} not found: the live walkthrough needs it (install {package}; .ci/run does)"
    );
}

#[test]
fn the_live_walkthrough_works_typed_into_an_interactive_shell() {
    have("script", "bsdutils");
    have("sipp", "sip-tester");
    have("ss", "iproute2");
    let chapter = std::fs::read_to_string(common::repo().join("docs/guide/05-live.md")).unwrap();
    let ports = free_ports();
    let typed: Vec<String> = commands(&chapter)
        .iter()
        .map(|c| with_ports(c, &ports))
        .collect();
    assert!(typed.len() > 10, "{typed:?}");
    assert!(
        typed.iter().any(|c| c.contains("kill ")),
        "the walkthrough stops what it started"
    );

    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for name in ["keys", "samples"] {
        std::os::unix::fs::symlink(common::repo().join(name), d.join(name)).unwrap();
    }
    // The test's own shell set-up, not the walkthrough's: a prompt that
    // shows the last exit status, and no history file.
    let rcfile = d.join(".test-bashrc");
    std::fs::write(&rcfile, "PS1='[rc=$?] $ '\nPS2='> '\nunset HISTFILE\n").unwrap();
    let mut session = Session::start(d, &rcfile);
    session.prompt(1, 20, "starting bash");
    for (i, command) in typed.iter().enumerate() {
        session.type_line(command);
        let rc = session.prompt(i + 2, 60, command);
        let expected = command
            .rsplit_once("# exit ")
            .and_then(|(_, n)| n.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        assert_eq!(
            rc,
            expected,
            "{command:?} exited {rc}, not {expected}; the terminal showed:\n{}",
            session.tail()
        );
    }
    let screen = session.screen();
    assert!(
        !screen.contains("Stopped"),
        "a job was stopped by the terminal:\n{screen}"
    );
    assert!(
        screen.contains("SIP/2.0 200 OK"),
        "the call was answered:\n{screen}"
    );
    session.type_line("exit");
    let until = Instant::now() + Duration::from_secs(10);
    while session.script.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < until,
            "the shell did not exit (jobs left?):\n{}",
            session.tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = running_in(&session.dir);
    assert!(
        left.is_empty(),
        "the walkthrough left these running: {left:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.join("alice.pw"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "alice.pw is {mode:o}: others may read it");
}

#[test]
fn ports_are_replaced_only_where_they_stand_alone() {
    let ports = [40000, 40001, 40002, 40003];
    assert_eq!(
        with_ports(
            "udp:127.0.0.1:5060 up 5090 sip:alice@127.0.0.1:5066 15060",
            &ports
        ),
        "udp:127.0.0.1:40000 up 40003 sip:alice@127.0.0.1:5066 15060"
    );
}
