//! What the live servers (`relay`, `registrar --listen`) share on the
//! command line: --listen addresses, the runtime, signals, and stopping
//! after a number of requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sipseal::net::Transport;
use sipseal::net::live::{Handled, Peer, SendError, Server, ServerConfig, Service};
use sipseal::sip::Message;
use tokio::sync::Notify;

use crate::error::Error;

/// The `--hosts` file (lines of `ADDRESS[:PORT] NAME...`), or none.
pub fn load_hosts(path: Option<&std::path::Path>) -> Result<sipseal::net::Hosts, Error> {
    match path {
        Some(p) => sipseal::net::Hosts::load(p).map_err(|why| {
            Error::usage(
                why.to_string(),
                "lines of ADDRESS[:PORT] NAME..., as /etc/hosts",
            )
        }),
        None => Ok(sipseal::net::Hosts::default()),
    }
}

/// `--outbound tls:HOST:PORT` of a daemon (`who`) whose flow is mutual
/// TLS, `example` its relay's name in the hint.
pub fn tls_outbound(
    outbound: &str,
    hosts: &sipseal::net::Hosts,
    who: &str,
    example: &str,
) -> Result<sipseal::net::Target, Error> {
    let target = sipseal::net::Target::parse(outbound, hosts).map_err(|why| {
        Error::usage(
            why.to_string(),
            format!(
                "e.g. --outbound tls:{example}:5061 (with --hosts for a name DNS does not know)"
            ),
        )
    })?;
    if target.transport != Transport::Tls {
        return Err(Error::usage(
            format!("--outbound {outbound}: the {who}'s flow is mutual TLS"),
            "give --outbound tls:HOST:PORT",
        ));
    }
    Ok(target)
}

/// `TRANSPORT:HOST:PORT` of --listen.
pub fn listen_addr(s: &str) -> Result<(Transport, SocketAddr), Error> {
    let bad = || {
        Error::usage(
            format!("--listen {s:?}: not TRANSPORT:HOST:PORT"),
            "e.g. --listen udp:127.0.0.1:5070 --listen tcp:127.0.0.1:5070 --listen tls:[::1]:5071",
        )
    };
    let (t, addr) = s.split_once(':').ok_or_else(bad)?;
    let transport = Transport::from_token(t).ok_or_else(bad)?;
    let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
    Ok((transport, addr))
}

/// The live servers' log: one JSON object per line on standard error,
/// the event's fields at the top level (`transport`, `from`, `method`,
/// `call_id`, `decision`, `latency_us`, ...), with a timestamp and level.
/// With `SSLKEYLOGFILE` set, one warning line first: every TLS secret of
/// the daemon goes to that file.
pub fn init_log() {
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
    if let Some(file) = sipseal::net::tls::key_log_file() {
        // rustls's KeyLogFile says nothing when it cannot open the file:
        // open it here first (as it does: appending, created 0600).
        use std::os::unix::fs::OpenOptionsExt;
        let opened = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&file);
        match opened {
            Ok(_) => eprintln!(
                "warning: SSLKEYLOGFILE is set: the TLS secrets of every connection go to {} \
                 (a debugging aid: whoever reads that file decrypts the traffic; never in production)",
                file.display()
            ),
            Err(e) => eprintln!(
                "warning: SSLKEYLOGFILE={} cannot be written ({e}): no TLS secrets are logged \
                 (hint: name a file in a writable directory, or unset it)",
                file.display()
            ),
        }
    }
}

/// The runtime a live server runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Write {
            name: "the async runtime".into(),
            source: e,
        })
}

/// The bound addresses as `udp:127.0.0.1:5070 tcp:...`.
pub fn describe(bound: &[(Transport, SocketAddr)]) -> String {
    bound
        .iter()
        .map(|(t, a)| format!("{}:{a}", t.token().to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A service that says when it has handled `max` requests.
pub struct Counted {
    inner: Arc<dyn Service>,
    max: Option<u64>,
    seen: AtomicU64,
    done: Arc<Notify>,
}

impl Counted {
    /// Count the requests `inner` handles.
    pub fn new(inner: Arc<dyn Service>, max: Option<u64>) -> Counted {
        Counted {
            inner,
            max,
            seen: AtomicU64::new(0),
            done: Arc::new(Notify::new()),
        }
    }

    /// Completes once `max` requests were handled (never without a max).
    pub fn done(&self) -> Arc<Notify> {
        Arc::clone(&self.done)
    }
}

impl Service for Counted {
    fn handle(&self, msg: Message, peer: &Peer) -> Handled {
        let request = msg.is_request();
        let handled = self.inner.handle(msg, peer);
        if request {
            let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
            if self.max.is_some_and(|m| n >= m) {
                self.done.notify_one();
            }
        }
        handled
    }

    fn unparsable(&self, bytes: &[u8], why: &str, peer: &Peer) -> Option<Message> {
        self.inner.unparsable(bytes, why, peer)
    }

    fn unsent(&self, msg: &Message, why: &SendError) -> Option<Message> {
        self.inner.unsent(msg, why)
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, Error> {
    tokio::signal::unix::signal(kind).map_err(|e| Error::Write {
        name: "a signal handler".into(),
        source: e,
    })
}

/// How often `refresh` runs (what changes under a live server: the
/// registrations a relay's imposture check reads).
pub const REFRESH: Duration = Duration::from_secs(1);

/// Serve until SIGTERM, SIGINT or `done`; each SIGHUP calls `reload`,
/// and `refresh` runs every [`REFRESH`]. In-flight messages get 5 s to
/// finish.
pub async fn serve(
    server: Server,
    done: Arc<Notify>,
    mut reload: impl FnMut() -> Result<(), Error>,
    mut refresh: Option<Box<dyn FnMut() + '_>>,
) -> Result<(), Error> {
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut tick = tokio::time::interval(REFRESH);
    tick.tick().await;
    let stop = async move {
        loop {
            tokio::select! {
                _ = tick.tick() => if let Some(f) = refresh.as_mut() { f() },
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = done.notified() => break,
                _ = hup.recv() => match reload() {
                    Ok(()) => eprintln!("reloaded keys and policy"),
                    Err(e) => eprintln!("reload refused, keeping the old keys and policy: {e}"),
                },
            }
        }
    };
    server.run(stop, Duration::from_secs(5)).await;
    Ok(())
}

/// Bind `config` for `service`.
pub async fn bind(mut config: ServerConfig, service: Arc<dyn Service>) -> Result<Server, Error> {
    config.max_connections = open_files_for(config.max_connections);
    if config.max_per_ip > config.max_connections {
        config.max_per_ip = config.max_connections;
    }
    Server::bind(config, service).await.map_err(|e| {
        let hint = listen_hint(&e);
        Error::usage(
            format!("--listen {}:{}: {}", e.transport, e.addr, e.source),
            hint,
        )
    })
}

/// What to do about a listener that could not be bound.
fn listen_hint(e: &sipseal::net::live::BindError) -> String {
    use std::io::ErrorKind as K;
    match e.source.kind() {
        K::AddrInUse => format!(
            "another process listens on {} port {} (`ss -lnp` names it): stop it, or pick a free port (port 0: the system picks one)",
            e.transport,
            e.addr.port()
        ),
        K::PermissionDenied => format!(
            "ports below 1024 need root or CAP_NET_BIND_SERVICE: pick a port above 1023 (e.g. --listen {}:{})",
            e.transport,
            std::net::SocketAddr::new(e.addr.ip(), 5060)
        ),
        K::AddrNotAvailable => format!(
            "{} is not an address of this host: listen on one `ip addr` lists, or 0.0.0.0",
            e.addr.ip()
        ),
        _ => "check the --listen address, and its --identity and --trust for tls".into(),
    }
}

/// Files kept for what is not an inbound connection: listeners, the
/// store, logs, a few more.
const FILES_KEPT: u64 = 256;

/// Raise the open-file limit to its hard limit (M4: the usual soft limit
/// of 1,024 is below the default `--max-connections`), and the inbound
/// connections that fit under it: three quarters of what is left after
/// [`FILES_KEPT`] (a quarter of the limit at most), the rest for the
/// connections this server opens. A
/// lower `max` stays; a higher one is lowered, with a warning.
fn open_files_for(max: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return max;
    };
    // RLIM_INFINITY is not a number of files the kernel takes.
    let wanted = hard.min(1 << 20);
    let soft = if wanted > soft && setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).is_ok() {
        wanted
    } else {
        soft
    };
    let kept = FILES_KEPT.min(soft / 4);
    let room = usize::try_from(soft.saturating_sub(kept) / 4 * 3)
        .unwrap_or(usize::MAX)
        .max(1);
    if max > room {
        eprintln!(
            "warning: --max-connections {max} lowered to {room}: this process may open {soft} files (ulimit -n; the hard limit is {hard}), and the rest is for the connections it opens and its files"
        );
        return room;
    }
    max
}
