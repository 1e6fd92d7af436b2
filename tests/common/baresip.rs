//! The real baresip user agent (Debian's `baresip` 1.0.0, libre 1.1.0),
//! driven headless from the tests through its `ctrl_tcp` module.
//!
//! Each [`Baresip`] runs `baresip -f DIR/NAME -v -s` with a generated config
//! (no sound card: the `aubridge` module loops what it plays back into what
//! it sends, so RTP flows both ways once a call is up), SIP on
//! `127.0.0.1:sip_port` over UDP and TCP (and TLS on `sip_port + 1`: two
//! instances need SIP ports two apart), and the control socket on
//! `127.0.0.1:ctrl_port`. Its stdout and stderr, with the SIP trace, go to
//! `DIR/NAME.log`. It is stopped (`quit`, then SIGKILL) when dropped.
//!
//! The control protocol is netstring-framed JSON (`LEN:{...},`): a command
//! `{"command":"dial","params":"sip:bob@...","token":"3"}` gets a response
//! `{"response":true,"ok":true,"data":"...","token":"3"}`, and events come
//! unasked: `{"event":true,"class":"call","type":"CALL_ESTABLISHED",
//! "accountaor":"sip:alice@a.example.com","direction":"outgoing",
//! "peeruri":"sip:bob@...","id":"<Call-ID>","param":"..."}`.
//!
//! Events seen (baresip 1.0.0):
//! - `class` `register`: `REGISTERING`, `REGISTER_OK` (param `200 OK`),
//!   `REGISTER_FAIL` (param e.g. `401 Unauthorized`), `UNREGISTERING`.
//! - `class` `call`: `CALL_INCOMING` (only with `answermode=manual`),
//!   `CALL_RINGING` (caller, on 180), `CALL_PROGRESS` (caller, on 183),
//!   `CALL_ESTABLISHED`, `CALL_CLOSED` (param: `Connection reset by user`
//!   on the side that hung up or cancelled, `Connection reset by peer` on
//!   the other, or the final response: `486 Rejected`, `404 Not Found`,
//!   `Connection refused`), `CALL_RTCP`.
//! - `class` `other`: `CALL_RTPESTAB` (param `audio`: the first RTP packet
//!   arrived), `CALL_LOCAL_SDP` / `CALL_REMOTE_SDP` (param `offer` or
//!   `answer`; the caller's first `CALL_LOCAL_SDP` has no `id`).
//! - `class` `application`: `SHUTDOWN`, `EXIT`.
//!
//! `CALL_RTPESTAB` may come before `CALL_ESTABLISHED`, and `CALL_RTCP`
//! before `CALL_RINGING`: wait for each event, never for an order.
//!
//! baresip's Contact user is `USER-0x<hex>` (`bob-0x55f8a7cd65e0`), so
//! in-dialog requests (ACK, BYE) carry that Request-URI.
//!
//! Not 127.0.0.1 only: baresip 1.0 binds its RTP sockets to 0.0.0.0
//! (hard-coded, whatever `net_interface` or `-n` say; ports from
//! `rtp_ports`), and libre's DNS client binds 0.0.0.0 and `[::]` on an
//! ephemeral port. To keep everything on a private loopback, run the
//! test binary as root in its own network namespace:
//! `unshare -n sh -c 'ip link set lo up && cargo test --test NAME'`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a command may take to be answered.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long baresip may take to open its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `quit` may take before the process is killed: with a call still
/// trying over UDP it waits for the INVITE transaction (32 s).
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the `baresip` binary can be started (for tests that skip
/// without it).
pub fn available() -> bool {
    Command::new("baresip")
        .arg("-h")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The SIP transport of an account: its AOR's `;transport=` parameter,
/// which baresip 1.0 uses for its REGISTER and appends to every URI it
/// dials (it has no `sip_trans_def` setting). It appends it even to a URI
/// with a transport already (`;transport=udp;transport=tcp`: the first
/// wins), so dial URIs without one from a TCP or TLS account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// No parameter: UDP.
    Udp,
    /// `;transport=tcp`.
    Tcp,
    /// `;transport=tls` (the peer's TLS port; baresip's own is
    /// `sip_port + 1`).
    Tls,
}

impl Transport {
    /// The URI parameter, with its `;` (empty for UDP).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        }
    }
}

/// How an account answers incoming calls (`answermode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMode {
    /// Rings (180) and emits `CALL_INCOMING`; the `accept` command answers,
    /// `hangup` rejects (486). A caller's `hangup` meanwhile is a CANCEL.
    Manual,
    /// Answers at once with 183 Session Progress and SDP (early media: the
    /// caller gets `CALL_PROGRESS` and RTP); no 200 followed in our runs.
    Early,
    /// Answers at once (180, then 200); no `CALL_INCOMING` event.
    Auto,
}

impl AnswerMode {
    /// Its name in an account line and in the `answermode` command.
    pub fn name(self) -> &'static str {
        match self {
            AnswerMode::Manual => "manual",
            AnswerMode::Early => "early",
            AnswerMode::Auto => "auto",
        }
    }
}

/// One baresip account (a line of its `accounts` file, given to `uanew`):
/// `<sip:USER@DOMAIN;transport=tcp>;auth_user=..;auth_pass=..;
/// outbound="sip:127.0.0.1:5070;transport=tcp";regint=600;answermode=auto`.
#[derive(Debug, Clone)]
pub struct Account {
    /// `sip:USER@DOMAIN`, as events name it in `accountaor`.
    aor: String,
    /// Its transport parameter, inside the `<...>` only.
    transport: Transport,
    /// The other parameters, in order, each `name=value`.
    params: Vec<String>,
    /// Seconds between REGISTERs; 0 registers nowhere.
    regint: u32,
    /// How it answers.
    answermode: AnswerMode,
}

impl Account {
    /// `sip:USER@DOMAIN` over `transport`, which does not register
    /// (`regint=0`) and answers automatically: a direct-call peer, dialled
    /// at `sip:USER@127.0.0.1:SIP_PORT`.
    pub fn new(user: &str, domain: &str, transport: Transport) -> Account {
        Account {
            aor: format!("sip:{user}@{domain}"),
            transport,
            params: Vec::new(),
            regint: 0,
            answermode: AnswerMode::Auto,
        }
    }

    /// REGISTER every `secs` seconds (baresip's `regint`), to the domain or
    /// to the outbound proxy.
    pub fn register_every(mut self, secs: u32) -> Account {
        self.regint = secs;
        self
    }

    /// Digest credentials (`auth_user`, `auth_pass`). baresip computes MD5
    /// only, and gives up at the first challenge it cannot compute: the MD5
    /// challenge must come first.
    pub fn auth(self, user: &str, password: &str) -> Account {
        self.param("auth_user", user).param("auth_pass", password)
    }

    /// Send every request through `proxy`, e.g. `sip:127.0.0.1:5070` or
    /// `sip:127.0.0.1:5070;transport=tcp` (baresip adds the `;lr` itself:
    /// leave it out).
    pub fn outbound(self, proxy: &str) -> Account {
        let quoted = format!("\"{proxy}\"");
        self.param("outbound", &quoted)
    }

    /// How it answers incoming calls.
    pub fn answer(mut self, mode: AnswerMode) -> Account {
        self.answermode = mode;
        self
    }

    /// Any other parameter, e.g. `("mediaenc", "srtp")` (which also needs
    /// `module srtp.so` in [`Config::extra`]) or `("ptime", "20")`.
    pub fn param(mut self, name: &str, value: &str) -> Account {
        self.params.push(format!("{name}={value}"));
        self
    }

    /// `sip:USER@DOMAIN`, as in the events' `accountaor`.
    pub fn aor(&self) -> &str {
        &self.aor
    }

    /// The account line.
    pub fn line(&self) -> String {
        let mut line = format!("<{}{}>", self.aor, self.transport.uri_param());
        for p in &self.params {
            line.push(';');
            line.push_str(p);
        }
        line.push_str(&format!(
            ";regint={};answermode={}",
            self.regint,
            self.answermode.name()
        ));
        line
    }
}

/// Where and how one baresip instance runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Its name: the config directory `DIR/NAME`, the log `DIR/NAME.log`,
    /// and its aubridge device.
    pub name: String,
    /// SIP over UDP and TCP on `127.0.0.1:sip_port`; TLS on `sip_port + 1`,
    /// which must be free too.
    pub sip_port: u16,
    /// The `ctrl_tcp` socket, on 127.0.0.1.
    pub ctrl_port: u16,
    /// The RTP/RTCP ports (inclusive; baresip picks a pair at random,
    /// bound on 0.0.0.0); baresip's default range when `None`. A range per
    /// instance lets tshark count each one's packets.
    pub rtp_ports: Option<(u16, u16)>,
    /// `sip_certificate`: one PEM file with the certificate and its key,
    /// for the TLS listener and as the TLS client certificate (baresip
    /// 1.0 presents it when a server asks).
    pub certificate: Option<PathBuf>,
    /// `sip_cafile`. baresip 1.0 loads it but does not verify a server's
    /// certificate (it has no `sip_verify_server`).
    pub cafile: Option<PathBuf>,
    /// `audio_source` instead of the instance's aubridge device, e.g.
    /// `aufile,/path/tone.wav` (with `module aufile.so` in
    /// [`extra`](Self::extra)); a file at the codec's rate and channels
    /// (8 kHz mono for G.711) is sent without resampling.
    pub audio_source: Option<String>,
    /// More config lines (`module srtp.so`, `rtp_timeout 10`, ...).
    pub extra: Vec<String>,
    /// `net_interface`: the address its SDP offers for media (RTP is
    /// bound on 0.0.0.0 all the same); 127.0.0.1 when `None`.
    pub media_address: Option<String>,
}

impl Config {
    /// Instance `name` with SIP on `sip_port` (and TLS on `sip_port + 1`)
    /// and its control socket on `ctrl_port`.
    pub fn new(name: &str, sip_port: u16, ctrl_port: u16) -> Config {
        Config {
            name: name.to_owned(),
            sip_port,
            ctrl_port,
            rtp_ports: None,
            certificate: None,
            cafile: None,
            audio_source: None,
            extra: Vec::new(),
            media_address: None,
        }
    }

    /// The `config` file.
    pub fn text(&self) -> String {
        let name = &self.name;
        let mut text = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t127.0.0.1:{sip}\n\
             call_local_timeout\t120\n\
             call_max_calls\t\t4\n\
             audio_player\t\taubridge,{name}\n\
             audio_source\t\t{source}\n\
             audio_alert\t\taubridge,{name}-alert\n\
             audio_level\t\tno\n\
             rtp_stats\t\tyes\n\
             ringback_disabled\tyes\n\
             statmode_default\toff\n\
             net_interface\t\t{media}\n\
             dns_server\t\t127.0.0.1:53\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\n\
             module\t\t\taubridge.so\n\
             module_tmp\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             module_app\t\tctrl_tcp.so\n\
             ctrl_tcp_listen\t\t127.0.0.1:{ctrl}\n",
            sip = self.sip_port,
            ctrl = self.ctrl_port,
            media = self.media_address.as_deref().unwrap_or("127.0.0.1"),
            source = self
                .audio_source
                .clone()
                .unwrap_or_else(|| format!("aubridge,{name}")),
        );
        if let Some((lo, hi)) = self.rtp_ports {
            text.push_str(&format!("rtp_ports\t\t{lo}-{hi}\n"));
        }
        if let Some(cert) = &self.certificate {
            text.push_str(&format!("sip_certificate\t\t{}\n", cert.display()));
        }
        if let Some(ca) = &self.cafile {
            text.push_str(&format!("sip_cafile\t\t{}\n", ca.display()));
        }
        for line in &self.extra {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// One SIP message of baresip's `-s` trace (sent or received).
#[derive(Debug, Clone)]
pub struct Traced {
    /// `UDP`, `TCP` or `TLS`.
    pub transport: String,
    /// Where it came from, `127.0.0.1:PORT`.
    pub src: String,
    /// Where it went, `127.0.0.1:PORT`.
    pub dst: String,
    /// The message as sent (CRLF line ends, body included).
    pub text: String,
}

impl Traced {
    /// Its request or status line.
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("").trim_end()
    }

    /// Whether it is a `method` request.
    pub fn is_request(&self, method: &str) -> bool {
        self.first_line().starts_with(&format!("{method} "))
    }

    /// The value of its first `name` header (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .skip(1)
            .take_while(|l| !l.trim_end().is_empty())
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                if n.trim().eq_ignore_ascii_case(name) {
                    Some(v.trim())
                } else {
                    None
                }
            })
    }
}

/// A running baresip, with its control connection.
pub struct Baresip {
    /// The process (none once stopped).
    child: Option<Child>,
    /// The `ctrl_tcp` connection.
    ctrl: TcpStream,
    /// Bytes read from it and not yet a whole netstring.
    pending: Vec<u8>,
    /// Events read and not yet taken by a wait.
    events: VecDeque<Value>,
    /// Whether baresip closed the control connection.
    closed: bool,
    /// The last command token used.
    token: u64,
    /// Its name.
    pub name: String,
    /// Its SIP port (UDP and TCP; TLS is one more).
    pub sip_port: u16,
    /// Its stdout and stderr: baresip's log with the SIP trace.
    pub log: PathBuf,
    /// Its config directory.
    pub config_dir: PathBuf,
}

impl Baresip {
    /// Start baresip in `dir` as `config` says, connect to its control
    /// socket, and add `account` with `uanew` (not from the accounts file,
    /// so that no registration event can happen before we listen). With
    /// `account.register_every(..)` the test then waits for `REGISTER_OK`.
    pub fn start(dir: &Path, config: &Config, account: &Account) -> Baresip {
        let name = &config.name;
        let config_dir = dir.join(name);
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(config_dir.join("config"), config.text()).unwrap();
        // An empty accounts file: baresip says "No SIP accounts found" and
        // waits for `uanew`.
        std::fs::write(config_dir.join("accounts"), "").unwrap();
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut child = Command::new("baresip")
            .arg("-f")
            .arg(&config_dir)
            .args(["-v", "-s"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("baresip runs (apt-get install baresip-core)");
        let until = Instant::now() + START_TIMEOUT;
        let ctrl = loop {
            if let Ok(ctrl) = TcpStream::connect(("127.0.0.1", config.ctrl_port)) {
                break ctrl;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(status) = child.try_wait().unwrap() {
                panic!("baresip {name} exited ({status}) before listening:\n{text}");
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("baresip {name} did not open its control port:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut b = Baresip {
            child: Some(child),
            ctrl,
            pending: Vec::new(),
            events: VecDeque::new(),
            closed: false,
            token: 0,
            name: name.clone(),
            sip_port: config.sip_port,
            log,
            config_dir,
        };
        b.add_account(account);
        b
    }

    /// Add a user agent for `account` (`uanew`); registration, if any,
    /// starts at once (its `REGISTERING` event may come before the
    /// response). Panics unless baresip accepts it (`ok`; a duplicate AOR
    /// is accepted). `dial`, `hangup`, `accept` and `answermode` act on
    /// the *current* user agent, the first one added, until a `uafind AOR`
    /// command selects another.
    pub fn add_account(&mut self, account: &Account) -> Value {
        let r = self.command("uanew", &account.line());
        assert!(
            r["ok"] == true,
            "{}: uanew {} did not make a user agent: {r}",
            self.name,
            account.line()
        );
        r
    }

    /// Send `cmd params` (a long command name: `dial`, `hangup`,
    /// `accept`, `hold`, `resume`, `reginfo`, `listcalls`, `callstat`, `answermode`,
    /// `uanew`, `uadel`, `quit`, `help`) and return its response
    /// (`{"response":true,"ok":..,"data":"..","token":".."}`; `ok` is false
    /// only for an unknown command: a failed dial is `ok` and then a
    /// `CALL_CLOSED` event). Events read meanwhile stay buffered. Panics
    /// without a response within 10 s.
    pub fn command(&mut self, cmd: &str, params: &str) -> Value {
        let token = self.send(cmd, params);
        let until = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let Some(msg) = self.next_message(until) else {
                panic!(
                    "{}: no response to {cmd} {params}:\n{}",
                    self.name,
                    self.log_text()
                );
            };
            if msg["response"] == true {
                if msg["token"].as_str() == Some(token.as_str()) {
                    return msg;
                }
            } else if msg["event"] == true {
                self.events.push_back(msg);
            }
        }
    }

    /// [`command`](Self::command), which must answer `ok`; its `data`.
    pub fn command_ok(&mut self, cmd: &str, params: &str) -> String {
        let r = self.command(cmd, params);
        assert!(r["ok"] == true, "{}: {cmd} {params}: {r}", self.name);
        r["data"].as_str().unwrap_or("").to_owned()
    }

    /// Call `uri` (e.g. `sip:bob@127.0.0.1:5062` directly, or
    /// `sip:bob@a.example.com` through the outbound proxy). The outcome
    /// comes as events: `CALL_RINGING`, `CALL_ESTABLISHED` or
    /// `CALL_CLOSED`. Give a user: baresip answers 404 unless the user
    /// part is its account's (the domain does not matter), and turns
    /// `sip:127.0.0.1:5062` into `sip:127.0.0.1:5062@<its domain>`.
    pub fn dial(&mut self, uri: &str) {
        self.command_ok("dial", uri);
    }

    /// Hang up the current call: BYE once established, CANCEL while an
    /// outgoing call rings, 486 to an incoming one.
    pub fn hangup(&mut self) {
        self.command_ok("hangup", "");
    }

    /// Put the current call on hold (`hold`): a re-INVITE whose SDP
    /// makes its audio `a=sendonly` (baresip 1.0 keeps sending; the peer
    /// answers `recvonly`). The outcome shows on the wire, not as an event.
    pub fn hold(&mut self) {
        self.command_ok("hold", "");
    }

    /// Take the current call off hold (`resume`): a re-INVITE back to
    /// `a=sendrecv`.
    pub fn resume(&mut self) {
        self.command_ok("resume", "");
    }

    /// Answer the incoming call (answer mode `manual`). baresip answers
    /// `ok` even when there is none.
    pub fn accept(&mut self) {
        self.command_ok("accept", "");
    }

    /// Change how the current user agent answers.
    pub fn set_answer_mode(&mut self, mode: AnswerMode) {
        self.command_ok("answermode", mode.name());
    }

    /// The registration table (`reginfo`), ANSI colours and all: `OK` or
    /// `ERR` or `zzz` (not registered) per user agent.
    pub fn reginfo(&mut self) -> String {
        self.command_ok("reginfo", "")
    }

    /// The first event, buffered or arriving within `timeout`, whose
    /// `type` is one of `types`; it is taken out of the buffer, the others
    /// stay (see [`clear_events`](Self::clear_events)). `None` on timeout.
    pub fn wait_event(&mut self, types: &[&str], timeout: Duration) -> Option<Value> {
        self.wait_event_where(timeout, |e| {
            e["type"].as_str().is_some_and(|t| types.contains(&t))
        })
    }

    /// The first event, buffered or arriving within `timeout`, for which
    /// `wanted` holds (e.g. a type and a call `id`); the others stay
    /// buffered. `None` on timeout.
    pub fn wait_event_where<F>(&mut self, timeout: Duration, wanted: F) -> Option<Value>
    where
        F: Fn(&Value) -> bool,
    {
        if let Some(at) = self.events.iter().position(&wanted) {
            return self.events.remove(at);
        }
        let until = Instant::now() + timeout;
        while let Some(msg) = self.next_message(until) {
            if msg["event"] != true {
                continue;
            }
            if wanted(&msg) {
                return Some(msg);
            }
            self.events.push_back(msg);
        }
        None
    }

    /// [`wait_event`](Self::wait_event), failing the test on timeout with
    /// the events seen and the log.
    pub fn expect_event(&mut self, types: &[&str], timeout: Duration) -> Value {
        match self.wait_event(types, timeout) {
            Some(e) => e,
            None => {
                let seen: Vec<String> = self.events.iter().map(Value::to_string).collect();
                panic!(
                    "{}: no {types:?} within {timeout:?}; buffered events:\n{}\nlog:\n{}",
                    self.name,
                    seen.join("\n"),
                    self.log_text()
                )
            }
        }
    }

    /// The events buffered so far and those arriving in the next 50 ms,
    /// oldest first; the buffer is then empty.
    pub fn take_events(&mut self) -> Vec<Value> {
        let until = Instant::now() + Duration::from_millis(50);
        while let Some(msg) = self.next_message(until) {
            if msg["event"] == true {
                self.events.push_back(msg);
            }
        }
        self.events.drain(..).collect()
    }

    /// Forget the buffered events (e.g. before the next call, so that an
    /// old `CALL_CLOSED` cannot match).
    pub fn clear_events(&mut self) {
        self.take_events();
    }

    /// What it logged so far (stdout and stderr, with the SIP trace).
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Wait (at most `timeout`) until its log says `text`; whether it did.
    pub fn logged(&self, text: &str, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while !self.log_text().contains(text) {
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Every SIP message it sent or received so far, in order, from its
    /// `-s` trace (`ESC[36;1m#`, `UDP SRC -> DST`, the message, `ESC[;m`).
    pub fn sip_trace(&self) -> Vec<Traced> {
        let text = self.log_text();
        text.split("\x1b[36;1m#\n")
            .skip(1)
            .filter_map(|part| {
                let (addrs, rest) = part.split_once('\n')?;
                let (message, _) = rest.split_once("\x1b[;m")?;
                let mut words = addrs.split_whitespace();
                let transport = words.next()?.to_owned();
                let src = words.next()?.to_owned();
                let _arrow = words.next()?;
                let dst = words.next()?.to_owned();
                Some(Traced {
                    transport,
                    src,
                    dst,
                    text: message.to_owned(),
                })
            })
            .collect()
    }

    /// The RTP packet counts `(sent, received)` of each audio stream that
    /// ended so far, oldest first, as `rtp_stats yes` logs them when a
    /// call ends (after its `CALL_CLOSED`: see
    /// [`wait_rtp_stats`](Self::wait_rtp_stats)).
    pub fn rtp_stats(&self) -> Vec<(u64, u64)> {
        let text = self.log_text();
        let mut stats = Vec::new();
        let mut in_table = false;
        for line in text.lines() {
            if line.starts_with("audio") && line.contains("Transmit:") {
                in_table = true;
            } else if in_table && line.starts_with("packets:") {
                in_table = false;
                let n: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|w| w.parse().ok())
                    .collect();
                if let [sent, received] = n.as_slice() {
                    stats.push((*sent, *received));
                }
            }
        }
        stats
    }

    /// [`rtp_stats`](Self::rtp_stats) once it has at least `streams`
    /// entries (at most `timeout`; fewer on timeout).
    pub fn wait_rtp_stats(&self, streams: usize, timeout: Duration) -> Vec<(u64, u64)> {
        let until = Instant::now() + timeout;
        loop {
            let stats = self.rtp_stats();
            if stats.len() >= streams || Instant::now() > until {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stop it: `quit` (which unregisters its accounts first), then
    /// SIGKILL if it has not exited after 5 s; its log.
    pub fn stop(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            if !self.closed {
                let _ = self.try_send("quit", "");
            }
            let until = Instant::now() + QUIT_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.log_text()
    }

    /// Send a command without waiting; its token.
    fn send(&mut self, cmd: &str, params: &str) -> String {
        match self.try_send(cmd, params) {
            Ok(token) => token,
            Err(e) => panic!(
                "{}: sending {cmd}: {e}\nlog:\n{}",
                self.name,
                self.log_text()
            ),
        }
    }

    /// Send a command as a netstring; its token.
    fn try_send(&mut self, cmd: &str, params: &str) -> std::io::Result<String> {
        self.token += 1;
        let token = self.token.to_string();
        let json = serde_json::json!({"command": cmd, "params": params, "token": token.as_str()})
            .to_string();
        let frame = format!("{}:{json},", json.len());
        self.ctrl.write_all(frame.as_bytes())?;
        Ok(token)
    }

    /// The next message (response or event) from the control connection,
    /// waiting until `until`; `None` on timeout or once baresip closed it.
    fn next_message(&mut self, until: Instant) -> Option<Value> {
        loop {
            if let Some(msg) = self.take_frame() {
                return Some(msg);
            }
            let now = Instant::now();
            if self.closed || now >= until {
                return None;
            }
            let wait = (until - now).max(Duration::from_millis(1));
            self.ctrl.set_read_timeout(Some(wait)).unwrap();
            let mut chunk = [0u8; 16_384];
            match self.ctrl.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// One whole netstring (`LEN:JSON,`) from the bytes read, as JSON.
    fn take_frame(&mut self) -> Option<Value> {
        let colon = self.pending.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&self.pending[..colon])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{}: not a netstring: {:?}",
                    self.name,
                    String::from_utf8_lossy(&self.pending)
                )
            });
        let end = colon + 1 + len;
        if self.pending.len() <= end {
            return None;
        }
        assert_eq!(
            self.pending[end],
            b',',
            "{}: netstring without its comma: {:?}",
            self.name,
            String::from_utf8_lossy(&self.pending)
        );
        let msg = serde_json::from_slice(&self.pending[colon + 1..end]).unwrap_or_else(|e| {
            panic!(
                "{}: not JSON ({e}): {:?}",
                self.name,
                String::from_utf8_lossy(&self.pending[colon + 1..end])
            )
        });
        self.pending.drain(..=end);
        Some(msg)
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.stop();
    }
}
