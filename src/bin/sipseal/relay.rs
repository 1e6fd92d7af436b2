//! `sipseal relay`: the relay workflow as a long-running stateless proxy
//! (docs/SPEC.md §7) on UDP, TCP and TLS listeners.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;

use sipseal::context::Context;
use sipseal::keys::Cert;
use sipseal::net::live::ServerConfig;
use sipseal::net::tls::TlsSetup;
use sipseal::net::{HopGuard, Hosts, Transport};
use sipseal::pinhole::{Changes, PinholeFormat};
use sipseal::relay::serve::{LiveConfig, LiveKeys, LiveRelay, LiveStore, NoSink, Sink};
use sipseal::relay::{Mode, ProxyOptions, RelayReport};
use sipseal::sip::routing::OwnNames;
use sipseal::state::{CachedStore, FileStore, RedisStore};

use crate::args::load_anchors;
use crate::error::{Error, Exit};
use crate::live::{Counted, bind, describe, listen_addr, runtime, serve};
use crate::proxy::RelayCommon;

/// `relay` arguments.
#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct RelayLiveArgs {
    /// Read flags from this YAML file first: a mapping of long flag names
    /// to values (`listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060]`,
    /// `identity: keys/proxy-a`, `record-route: true`). Flags on the
    /// command line win; lists add up.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen here: udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT
    /// (repeatable; IPv6 as [::1]:5060; port 0 picks a free one, printed
    /// at start). A tls listener needs --identity and --trust.
    #[arg(long, value_name = "TRANSPORT:HOST:PORT", required = true)]
    pub listen: Vec<String>,
    /// Send requests here when they carry no Route beyond this relay
    /// (an outbound proxy), instead of to their Request-URI: a SIP URI
    /// (sip:proxy-b.b.example.com:5081;transport=tls) or
    /// udp:|tcp:|tls:HOST:PORT.
    #[arg(long, value_name = "URI")]
    pub next: Option<String>,
    /// Names to resolve before DNS (read at start): a hosts file whose
    /// addresses may carry a port, as an SRV record would give
    /// (`127.0.0.1:5081 proxy-b.b.example.com`). Other names: SRV records
    /// for the transport, then A/AAAA (RFC 3263, without NAPTR).
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// Resolve names from --hosts (and address literals) only: no DNS
    /// lookups for the hosts that Route headers and Request-URIs name.
    #[arg(long)]
    pub no_dns: bool,
    /// Networks a request may be sent to when the message names the
    /// address (a Route entry or Request-URI with an address literal,
    /// e.g. 198.51.100.0/24; repeatable). Without it every address but
    /// loopback, unspecified, link-local, multicast and broadcast ones;
    /// with it, address literals only inside these networks (names from
    /// DNS: any address but those, unless inside). --next, --hosts names,
    /// and registered contacts and flows are the operator's and always
    /// go; this relay's own listeners and its store never. A request for
    /// any other next hop is answered 403.
    #[arg(long, value_name = "CIDR")]
    pub hop_allow: Vec<ipnet::IpNet>,
    /// Another name this relay goes by (HOST or HOST:PORT; repeatable):
    /// a Route entry or Request-URI naming it is this relay's, as are
    /// its listeners, --via and the names in its certificate.
    #[arg(long, value_name = "NAME")]
    pub alias: Vec<String>,
    /// Serve this domain's users (repeatable): a request for
    /// sip:USER@DOMAIN goes to USER's binding in the registrar's store
    /// (--registrations), on the connection the REGISTER came on while
    /// it is open (RFC 5626; over TLS, else on the newest connection
    /// from the same certificate identity), else to the registered
    /// Contact; 480 when
    /// USER has no live binding, 404 when USER never registered. Other
    /// domains are found in --hosts, then DNS.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Vec<String>,
    /// Trust anchors for TLS peers (PEM file or directory): a TLS client
    /// must present a certificate chaining to one (clientAuth), and a TLS
    /// next hop must chain to one and be named by the host it is routed
    /// to (RFC 5922).
    #[arg(long, value_name = "PEM|DIR")]
    pub trust: Vec<PathBuf>,
    #[command(flatten)]
    pub common: RelayCommon,
    /// Also open when not designated, if a RecipientInfo is addressed to this relay.
    #[arg(long)]
    pub trial: bool,
    /// Answer 496 to a request whose sealed body this relay cannot open, designated or not.
    #[arg(long)]
    pub require_disclosure: bool,
    /// Keep this relay's own Proxy-Inspect-Body entry when forwarding.
    #[arg(long)]
    pub keep_designation: bool,
    /// Record-Route this relay on dialog-creating requests, so the
    /// dialog's later requests (and the BYE that closes pinholes) pass it.
    #[arg(long)]
    pub record_route: bool,
    /// Append each message's disclosure report here, one JSON object per
    /// line (mode 0600: it may hold SRTP keys).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Hand the media keys of the calls a designation lets this relay
    /// record (`purpose=record`, `seal --record`) to a recorder: their
    /// report lines (SDP and SRTP keys), and no other call's, are appended
    /// to DIR/keys.jsonl (directory 0700, file 0600), which `sipseal record
    /// --report DIR/keys.jsonl` reads.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Append each call's pinhole changes here (mode 0600), in
    /// --pinhole-format: each change an nftables script for `nft -f`, or a
    /// JSON line.
    #[arg(long, value_name = "FILE")]
    pub pinholes: Option<PathBuf>,
    /// Start --report and --pinholes afresh once one holds this many bytes
    /// (suffixes K, M, KiB, MiB): the full one becomes FILE.1 (the one
    /// before it is gone), so that neither grows without end.
    #[arg(long, value_name = "BYTES", default_value = "64MiB", value_parser = crate::args::parse_size)]
    pub rotate_at: u64,
    /// Messages per second one source address may send (as a burst of
    /// the same size); beyond it, messages are dropped unread. Off when
    /// not given.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Connections accepted at once, at most; past it a new one is closed
    /// at once. Lowered, with a warning, to what the open-file limit
    /// leaves room for (the relay raises its soft limit to the hard one).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Connections one source address may hold at once; past it a new one
    /// from there is closed at once. Default: a quarter of
    /// --max-connections, 16 at least.
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Seconds a message may take to arrive whole on a connection, from
    /// its first byte (3,600 at most); past it the connection is closed
    /// (a peer that trickles bytes holds no connection for ever).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub message_timeout: u64,
    /// Messages in hand at once, at most: past it a datagram is dropped
    /// unread and a connection is read no further until one is done.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Close a connection with nothing to read for this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub idle_timeout: u64,
    /// Also fsync each session key the relay learns before the message
    /// that carried it goes on, so that it survives the machine losing
    /// power (docs/SPEC.md §5 leaves this out: the calls that needed the key end
    /// with the machine). Costs a disk flush per new call; nothing on
    /// tmpfs.
    #[arg(long)]
    pub fsync: bool,
    /// The default (kept for scripts written when fsync was).
    #[arg(long, hide = true, conflicts_with = "fsync")]
    pub no_fsync: bool,
    /// Stop after this many requests (tests, scripts).
    #[arg(long, value_name = "N")]
    pub max_requests: Option<u64>,
    /// No log line per message on standard error.
    #[arg(long)]
    pub quiet: bool,
}

/// Appends reports and pinhole changes to files.
struct FileSink {
    report: Option<Mutex<Appended>>,
    pinholes: Option<(Mutex<Appended>, PinholeFormat)>,
    record: Option<Recorder>,
}

/// `--record DIR`: the report lines of the calls this relay may record.
struct Recorder {
    spool: Mutex<Appended>,
    calls: Mutex<Recordable>,
}

/// The calls a designation let this relay record, the oldest forgotten
/// first past [`Recordable::MAX`] (a call also goes at its BYE).
#[derive(Default)]
struct Recordable {
    calls: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl Recordable {
    const MAX: usize = 65_536;

    fn add(&mut self, call_id: &str) {
        if self.calls.insert(call_id.to_owned()) {
            self.order.push_back(call_id.to_owned());
            while self.order.len() > Self::MAX {
                if let Some(old) = self.order.pop_front() {
                    self.calls.remove(&old);
                }
            }
        }
    }

    fn remove(&mut self, call_id: &str) {
        if self.calls.remove(call_id) {
            self.order.retain(|c| c != call_id);
        }
    }
}

impl Recorder {
    /// Spool `report` when its call may be recorded: a designation naming
    /// this relay with `purpose=record` marks the call; each SDP this
    /// relay then reads in it (the offer, the answer under the session
    /// key, a re-INVITE) goes to the spool; a BYE ends it. Nothing of a
    /// call no designation marked is ever spooled.
    fn report(&self, report: &RelayReport) {
        use sipseal::relay::Decision;
        let Some(call_id) = report.call_id.as_deref() else {
            return;
        };
        if report.answered.is_some() || report.refused.is_some() {
            return;
        }
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if report.record && report.opened && report.decision == Decision::Designated {
            calls.add(call_id);
        }
        if !calls.calls.contains(call_id) {
            return;
        }
        if report.opened
            && report.sdp.is_some()
            && let Ok(mut line) = serde_json::to_string(report)
        {
            line.push('\n');
            self.spool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write(line.as_bytes());
        }
        if report.kind == "request" && report.method.as_deref() == Some("BYE") {
            calls.remove(call_id);
        }
    }
}

/// A file appended to, started afresh at a size (L3: a flood of messages
/// filled a report file to 48 MB, and more without end).
struct Appended {
    path: PathBuf,
    file: File,
    size: u64,
    rotate_at: u64,
}

fn open_append(path: &PathBuf) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

fn append(path: &PathBuf, rotate_at: u64) -> Result<Mutex<Appended>, Error> {
    let fail = |e| Error::Write {
        name: path.display().to_string(),
        source: e,
    };
    let file = open_append(path).map_err(fail)?;
    let size = file.metadata().map_err(fail)?.len();
    Ok(Mutex::new(Appended {
        path: path.clone(),
        file,
        size,
        rotate_at,
    }))
}

impl Appended {
    /// Append `bytes`; first, when they would take the file past its
    /// size, it becomes `FILE.1` and a new one starts.
    fn write(&mut self, bytes: &[u8]) {
        if self.size > 0 && self.size + bytes.len() as u64 > self.rotate_at {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            if std::fs::rename(&self.path, &old).is_ok()
                && let Ok(f) = open_append(&self.path)
            {
                self.file = f;
                self.size = 0;
            }
        }
        if self.file.write_all(bytes).is_ok() {
            self.size += bytes.len() as u64;
        }
    }
}

impl Sink for FileSink {
    fn report(&self, report: &RelayReport) {
        if let Some(r) = &self.record {
            r.report(report);
        }
        if let (Some(f), Ok(mut line)) = (&self.report, serde_json::to_string(report)) {
            line.push('\n');
            f.lock()
                .unwrap_or_else(|e| e.into_inner())
                .write(line.as_bytes());
        }
    }

    fn pinholes(&self, changes: &Changes) {
        if let Some((f, format)) = &self.pinholes
            && changes.state != "unchanged"
        {
            f.lock()
                .unwrap_or_else(|e| e.into_inner())
                .write(changes.render(*format).as_bytes());
        }
    }
}

impl RelayLiveArgs {
    fn keys(&self) -> Result<LiveKeys, Error> {
        let (identity, psks) = self.common.keys()?;
        Ok(LiveKeys {
            identity,
            psks,
            certs: Vec::new(),
        })
    }

    fn hosts(&self) -> Result<Hosts, Error> {
        match &self.hosts {
            Some(p) => Hosts::load(p).map_err(|why| {
                Error::usage(
                    why.to_string(),
                    "lines of ADDRESS[:PORT] NAME..., as /etc/hosts",
                )
            }),
            None => Ok(Hosts::default()),
        }
    }

    fn trust(&self) -> Result<Vec<Cert>, Error> {
        let mut out = Vec::new();
        for t in &self.trust {
            out.extend(load_anchors(t)?);
        }
        Ok(out)
    }

    fn config(
        &self,
        keys: &LiveKeys,
        listeners: &[(Transport, SocketAddr)],
        ctx: &Context,
    ) -> Result<LiveConfig, Error> {
        let mode = Mode::Proxy(ProxyOptions {
            trial: self.trial,
            require_disclosure: self.require_disclosure,
            keep_designation: self.keep_designation,
            record_route: self.record_route,
        });
        let mut opts = self.common.options(mode, ctx.now())?;
        let first = listeners.first().map(|(_, a)| a.to_string());
        opts.via = self.common.via.clone().or(first);
        let mut names = OwnNames::new(listeners.iter().map(|(_, a)| *a));
        let cert_names = keys
            .identity
            .as_ref()
            .map(|i| sipseal::net::tls::sip_identities(&i.cert))
            .unwrap_or_default();
        for name in self.common.via.iter().chain(&self.alias).chain(&cert_names) {
            names.add(name);
        }
        opts.names = names;
        Ok(LiveConfig {
            opts,
            next: self.next.as_deref().map(next_uri).transpose()?,
            listeners: listeners.to_vec(),
            via: self.common.via.clone(),
            pinholes: self.pinholes.is_some() || self.common.firewall.is_some(),
            firewall: self
                .common
                .firewall()
                .map(|f| Arc::new(f) as Arc<dyn sipseal::firewall::Firewall>),
            pinhole_max_age: self.common.pinhole_max_age,
            domains: self.domain.iter().map(|d| d.to_ascii_lowercase()).collect(),
            hosts: self.hosts()?,
            hop_guard: self.hop_guard(listeners),
        })
    }

    /// Where a next hop a message names may be: `--hop-allow`, never the
    /// `listeners` nor the Redis servers of `--state` and `--registrations`.
    fn hop_guard(&self, listeners: &[(Transport, SocketAddr)]) -> HopGuard {
        let redis = [
            self.common.state.redis_url(),
            self.common
                .registrations
                .as_deref()
                .and_then(|p| p.to_str())
                .filter(|p| p.starts_with("redis://")),
        ];
        let mut never: Vec<SocketAddr> = listeners.iter().map(|(_, a)| *a).collect();
        never.extend(redis.into_iter().flatten().flat_map(redis_addrs));
        HopGuard {
            allow: self.hop_allow.clone(),
            never,
        }
    }
}

/// The largest message a live server takes: `--max-message-size` when
/// given, else 65,535 bytes (a datagram's most; a stream's message needs
/// no more, and each connection may buffer that much).
pub fn max_message() -> usize {
    match crate::io::max_message_size() {
        crate::io::DEFAULT_MAX_MESSAGE_SIZE => 65_535,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

/// The addresses of the server a `redis://[USER@]HOST[:PORT][/DB]` URL names.
fn redis_addrs(url: &str) -> Vec<SocketAddr> {
    use std::net::ToSocketAddrs;
    let rest = url.trim_start_matches("redis://");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let with_port = match authority.rsplit_once(':') {
        Some((_, p)) if p.parse::<u16>().is_ok() && !authority.ends_with(']') => {
            authority.to_owned()
        }
        _ => format!("{authority}:6379"),
    };
    with_port
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default()
}

/// `--next` as a URI: `udp:|tcp:|tls:HOST:PORT` is `sip:HOST:PORT;transport=...`.
fn next_uri(next: &str) -> Result<String, Error> {
    for t in ["udp", "tcp", "tls"] {
        if let Some(rest) = next.strip_prefix(&format!("{t}:")) {
            return Ok(format!("sip:{rest};transport={t}"));
        }
    }
    if sipseal::sip::uri::HopUri::parse(next).is_none() {
        return Err(Error::usage(
            format!("--next {next:?}: not a SIP URI"),
            "e.g. --next sip:proxy-b.b.example.com:5081;transport=tls or --next tcp:127.0.0.1:5080",
        ));
    }
    Ok(next.to_owned())
}

/// Run `relay` until SIGTERM or SIGINT; SIGHUP reloads keys and policy.
pub fn run(args: RelayLiveArgs, ctx: &mut Context) -> Result<Exit, Error> {
    crate::live::init_log();
    let listen = args
        .listen
        .iter()
        .map(|l| listen_addr(l))
        .collect::<Result<Vec<_>, _>>()?;
    let keys = args.keys()?;
    let trust = args.trust()?;
    let wants_tls = listen.iter().any(|(t, _)| *t == Transport::Tls)
        || args.next.as_deref().is_some_and(|n| {
            n.starts_with("tls:") || n.contains("transport=tls") || n.starts_with("sips:")
        });
    let tls = if wants_tls || !trust.is_empty() {
        if trust.is_empty() {
            return Err(Error::usage(
                "TLS needs the trust anchors peers chain to",
                "give --trust FILE",
            ));
        }
        let setup = TlsSetup::new(keys.identity.as_ref(), &trust)
            .map_err(|e| Error::usage(e.to_string(), "check --identity and --trust"))?;
        Some(Arc::new(setup))
    } else {
        None
    };
    let store: Arc<dyn LiveStore> = match args.common.state.redis_url() {
        Some(url) => Arc::new(CachedStore::new(RedisStore::open(url).map_err(|e| {
            Error::usage(
                e.to_string(),
                "check that redis-server runs there (--state redis://HOST:PORT)",
            )
        })?)),
        None => {
            let files = match (&args.common.state.state, dirs::runtime_dir()) {
                // A relay's keys live as long as its calls: by default in
                // the runtime directory (tmpfs), which outlives the relay
                // but not a reboot, as the calls do not.
                (None, Some(run)) => FileStore::new(&run.join("sipseal")),
                _ => args.common.state.store()?,
            };
            let files = match args.fsync {
                false => files,
                true => FileStore::synced(&files.dir().root),
            };
            Arc::new(CachedStore::new(files.sweeping_aside()))
        }
    };
    let sink: Arc<dyn Sink> =
        if args.report.is_some() || args.pinholes.is_some() || args.record.is_some() {
            Arc::new(FileSink {
                record: args
                    .record
                    .as_ref()
                    .map(|dir| -> Result<Recorder, Error> {
                        sipseal::state::create_private_dir(dir).map_err(Error::State)?;
                        Ok(Recorder {
                            spool: append(&dir.join("keys.jsonl"), args.rotate_at)?,
                            calls: Mutex::default(),
                        })
                    })
                    .transpose()?,
                report: args
                    .report
                    .as_ref()
                    .map(|p| append(p, args.rotate_at))
                    .transpose()?,
                pinholes: args
                    .pinholes
                    .as_ref()
                    .map(|p| append(p, args.rotate_at).map(|f| (f, args.common.pinhole_format)))
                    .transpose()?,
            })
        } else {
            Arc::new(NoSink)
        };
    runtime()?.block_on(async move {
        let server_config = ServerConfig {
            listen: listen.clone(),
            tls,
            max_message: max_message(),
            max_connections: args.max_connections,
            max_in_flight: args.max_in_flight,
            // 0: from --max-connections as the open-file limit leaves it.
            max_per_ip: args.max_connections_per_ip.unwrap_or(0),
            message_time: Duration::from_secs(args.message_timeout.clamp(1, 3600)),
            idle: Duration::from_secs(args.idle_timeout.max(1)),
            rate: args.rate_limit,
            log: !args.quiet,
            hosts: args.hosts()?,
            dns: !args.no_dns,
            // The listeners are added once bound.
            hop_guard: args.hop_guard(&[]),
            ..ServerConfig::default()
        };
        // Bind first (port 0 gives a port), then set the relay's own addresses.
        let mut relay = LiveRelay::new(
            LiveKeys {
                identity: None,
                psks: Vec::new(),
                certs: Vec::new(),
            },
            args.config(&keys, &[], ctx)?,
            Arc::clone(&store),
            ctx.fork(),
            Arc::clone(&sink),
        );
        if let Some(registry) = args.common.registry()? {
            relay = relay.with_registry(registry);
        } else if !args.domain.is_empty() {
            return Err(Error::usage(
                "--domain: the location service reads the registrar's bindings",
                "give --registrations DIR (the registrar's --state) or redis://HOST:PORT",
            ));
        }
        let relay: Arc<LiveRelay> = Arc::new(relay);
        let counted = Arc::new(Counted::new(Arc::clone(&relay) as _, args.max_requests));
        let server = bind(server_config, Arc::clone(&counted) as _).await?;
        let bound: Vec<(Transport, SocketAddr)> = server.local_addrs().to_vec();
        let name = keys
            .identity
            .as_ref()
            .map(|i| i.cert.name())
            .unwrap_or_else(|| "relay".into());
        let config = args.config(&keys, &bound, ctx)?;
        let via = config.opts.via.clone().unwrap_or_default();
        let firewall = config.firewall.is_some();
        relay.reload(keys, config);
        if firewall {
            // What ended while the relay was down goes before anything passes.
            let ended = relay.sweep_pinholes(true).map_err(|e| {
                Error::usage(
                    format!("--firewall: {e}"),
                    "check that nft runs here as root and that table inet sipseal is sipseal's",
                )
            })?;
            eprintln!(
                "relay: firewall sets in step with the store ({} calls ended on age)",
                ended.len()
            );
            let sweeper = Arc::clone(&relay);
            let every = (args.common.pinhole_max_age / 4_i32)
                .clamp(time::Duration::SECOND, time::Duration::MINUTE)
                .unsigned_abs();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = sweeper.sweep_pinholes(false) {
                        eprintln!("relay: pinhole sweep: {e}");
                    }
                }
            });
        }
        eprintln!("relay {name} listening on {} (Via {via})", describe(&bound),);
        let fixed_now = ctx.is_deterministic().then(|| ctx.now());
        let reload = || -> Result<(), Error> {
            let fixed = Context::new(None, fixed_now);
            let keys = args.keys()?;
            let config = args.config(&keys, &bound, &fixed)?;
            relay.reload(keys, config);
            Ok(())
        };
        // The registrar's bindings change while the relay runs.
        let refresh = args.common.registrations.is_some().then(|| {
            Box::new(|| {
                let fixed = Context::new(None, fixed_now);
                // Reading the registrar's files may take a while: the
                // runtime's other work goes on meanwhile.
                // What came through this relay is bound to the flow it came on.
                let flow = |entry: &str| relay.flow_source(entry);
                let realms = &args.domain;
                match sipseal::blocking::offload(|| {
                    args.common.bindings_with(fixed.now(), &flow, realms)
                }) {
                    Ok(bindings) => {
                        let mut config = (*relay.config()).clone();
                        config.opts.path.bindings = bindings.map(Arc::new);
                        relay.reconfigure(config);
                    }
                    Err(e) => eprintln!("relay: cannot re-read the registrations: {e}"),
                }
            }) as Box<dyn FnMut()>
        });
        serve(server, counted.done(), reload, refresh).await?;
        eprintln!("relay: stopped");
        Ok(Exit::Ok)
    })
}
