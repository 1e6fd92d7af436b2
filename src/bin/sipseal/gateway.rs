//! `sipseal gateway`: the HTTP gateway (docs/SPEC.md §7.2,
//! [`sipseal::gateway`]): login, the portal, and the reverse proxy to the
//! destinations' services.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use sipseal::gateway::certquery::CertQuery;
use sipseal::gateway::destinations::Destinations;
use sipseal::gateway::proxy::{Dialer, NoCall, SipDialer};
use sipseal::gateway::{Config, Gateway, Tables};
use sipseal::keys::Cert;
use sipseal::net::tls::TlsSetup;
use sipseal::net::{Hosts, Target, Transport};
use sipseal::registrar::users::Users;

use crate::args::{identity_at, load_anchors};
use crate::error::{Error, Exit};

/// `gateway`: the HTTPS gateway a browser reaches services through.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Where to listen for HTTPS: IP:PORT (port 0 picks a free one,
    /// printed at start).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: SocketAddr,
    /// The gateway's TLS identity: certificate (with its chain) and key
    /// the browsers check (DIR with cert.pem and key.pem, or a PKCS#12
    /// bundle).
    #[arg(long, value_name = "DIR|P12")]
    pub identity: PathBuf,
    /// The credential file the users log in with: the registrar's (HA1
    /// values, see `registrar passwd`).
    #[arg(long, value_name = "FILE")]
    pub users: PathBuf,
    /// The realm of --users whose entries log in (the registrar's domain).
    #[arg(long, value_name = "DOMAIN")]
    pub realm: String,
    /// The per-user table: each user's destinations (name, SIP URI,
    /// description, picture), their telephone number and the globs a
    /// typed destination must match (docs/guide/10-gateway.md).
    #[arg(long, value_name = "FILE")]
    pub destinations: PathBuf,
    /// The request header a trusted front end names the user's telephone
    /// number in (e.g. X-Phone-Number); believed only from --trusted-front.
    #[arg(long, value_name = "NAME", requires = "trusted_front")]
    pub phone_header: Option<String>,
    /// A network the trusted front end connects from (repeatable): the
    /// only addresses whose --phone-header logs a user in, and whose
    /// X-Forwarded-For names the client the login limits count.
    #[arg(long, value_name = "CIDR", requires = "phone_header")]
    pub trusted_front: Vec<ipnet::IpNet>,
    /// A network whose clients may read /metrics (repeatable; without
    /// it /metrics answers no one).
    #[arg(long, value_name = "CIDR")]
    pub metrics_allow: Vec<ipnet::IpNet>,
    /// An access (its call) ends after this many seconds without traffic.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub idle: u64,
    /// The largest request or response body relayed (suffixes K, M, KiB,
    /// MiB); a larger one is cut off.
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = crate::args::parse_size)]
    pub max_body: u64,
    /// Browser connections served at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// A browser connection is closed when a write to it makes no
    /// progress for this many seconds (a browser that stopped reading);
    /// the access whose page it was relaying ends with it.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub write_timeout: u64,
    /// The longest a browser's TLS handshake, or a request's header, may
    /// take (seconds).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub header_timeout: u64,
    /// The gateway's relay: the one mutual-TLS flow (tls:HOST:PORT, the
    /// server named by HOST and chaining to --trust; the gateway presents
    /// --identity) every access's call goes out on. Without it every
    /// access is refused 501.
    #[arg(long, value_name = "TARGET", requires_all = ["trust", "callers", "channel_allow"])]
    pub outbound: Option<String>,
    /// Names to resolve before DNS: a hosts file whose addresses may carry
    /// a port (`127.0.0.1:5071 proxy-a.a.example.com`).
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// Trust anchors (repeatable): the relay's TLS certificate and the
    /// terminals' signatures on their answers chain to them.
    #[arg(long, value_name = "PEM|DIR")]
    pub trust: Vec<PathBuf>,
    /// Who each user calls as: DIR/USER/{cert.pem,key.pem}, an RSA
    /// identity whose SAN URI is sip:USER@REALM (the terminals check it
    /// against their --allow). A user without one is refused.
    #[arg(long, value_name = "DIR", requires = "outbound")]
    pub callers: Option<PathBuf>,
    /// A relay every offer is disclosed to (its certificate, repeatable);
    /// other relays on the path see only sealed bodies.
    #[arg(long, value_name = "CERT", requires = "outbound")]
    pub disclose: Vec<PathBuf>,
    /// Where an answer may send the gateway to connect its data channel:
    /// the networks the terminals are in (CIDR, or one address;
    /// repeatable, required with --outbound), so that no answer makes the
    /// gateway connect elsewhere.
    #[arg(long, value_name = "CIDR", requires = "outbound", value_parser = cidr)]
    pub channel_allow: Vec<ipnet::IpNet>,
    /// Where the gateway's registrar takes certificate queries
    /// (tcp:HOST:PORT): a destination without `cert:` (typed, or listed
    /// without one) is sealed for the certificate it answers with, asked
    /// by an OPTIONS the user signs and cached until its notAfter. The
    /// registrar forwards a query for another domain itself. Without it
    /// such a destination is refused 404.
    #[arg(long, value_name = "TARGET", requires = "outbound")]
    pub cert_query: Option<String>,
    /// Trust anchors (repeatable) the registrar's signature on its answer
    /// and the certificate it gives must chain to; default: --trust.
    #[arg(long, value_name = "PEM|DIR", requires = "cert_query")]
    pub registrar_trust: Vec<PathBuf>,
}

/// A network for --channel-allow: CIDR, or one address (its /32 or /128).
fn cidr(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is neither a network (10.1.0.0/16) nor an address"))
}

/// The real dialer from --outbound and its companions, or `NoCall`.
fn dialer(args: &GatewayArgs) -> Result<Arc<dyn Dialer>, Error> {
    let Some(outbound) = &args.outbound else {
        eprintln!("warning: no --outbound: every access is refused 501 (no call can be placed)");
        return Ok(Arc::new(NoCall));
    };
    let hosts = match &args.hosts {
        Some(p) => Hosts::load(p).map_err(|why| {
            Error::usage(
                why.to_string(),
                "lines of ADDRESS[:PORT] NAME..., as /etc/hosts",
            )
        })?,
        None => Hosts::default(),
    };
    let target = Target::parse(outbound, &hosts).map_err(|why| {
        Error::usage(
            why.to_string(),
            "e.g. --outbound tls:proxy-a.a.example.com:5061 (with --hosts for a name DNS does not know)",
        )
    })?;
    if target.transport != Transport::Tls {
        return Err(Error::usage(
            format!("--outbound {outbound}: the gateway's flow is mutual TLS"),
            "give --outbound tls:HOST:PORT",
        ));
    }
    let mut trust = Vec::new();
    for t in &args.trust {
        trust.extend(load_anchors(t)?);
    }
    let identity = identity_at(&args.identity)?;
    let tls = TlsSetup::new(Some(&identity), &trust)
        .map_err(|e| Error::usage(e.to_string(), "check --identity and --trust"))?;
    let callers = args.callers.clone().unwrap_or_default();
    if !callers.is_dir() {
        return Err(Error::usage(
            format!("--callers {}: not a directory", callers.display()),
            "give a directory with one USER/{cert.pem,key.pem} per user (e.g. keys/, whose alice/ names sip:alice@a.example.com)",
        ));
    }
    let mut disclose = Vec::new();
    for c in &args.disclose {
        disclose.push(Cert::load(c).map_err(|e| {
            Error::usage(
                format!("--disclose {}: {e}", c.display()),
                "give the relay's certificate (PEM)",
            )
        })?);
    }
    let base = args
        .destinations
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let cert_query = cert_query(args, &hosts, &trust)?;
    let mut dialer = SipDialer::new(
        target,
        Arc::new(tls),
        callers,
        args.realm.clone(),
        base,
        disclose,
        trust,
        args.channel_allow.clone(),
    );
    dialer.cert_query = cert_query.map(Arc::new);
    Ok(Arc::new(dialer))
}

/// The certificate queries of --cert-query, checked against
/// --registrar-trust (else --trust).
fn cert_query(
    args: &GatewayArgs,
    hosts: &Hosts,
    trust: &[Cert],
) -> Result<Option<CertQuery>, Error> {
    let Some(at) = &args.cert_query else {
        return Ok(None);
    };
    let hint = "give --cert-query tcp:HOST:PORT, where the gateway's registrar listens (with --hosts for a name DNS does not know)";
    let target = Target::parse(at, hosts).map_err(|why| Error::usage(why.to_string(), hint))?;
    if target.transport != Transport::Tcp {
        return Err(Error::usage(
            format!(
                "--cert-query {at}: certificate queries go over TCP (an answer with its chain is too large for UDP)"
            ),
            hint,
        ));
    }
    let mut anchors = Vec::new();
    for t in &args.registrar_trust {
        anchors.extend(load_anchors(t)?);
    }
    if args.registrar_trust.is_empty() {
        anchors = trust.to_vec();
    }
    Ok(Some(CertQuery::new(target, anchors)))
}

/// Read --users and --destinations.
fn load_tables(args: &GatewayArgs) -> Result<Tables, Error> {
    if !args.users.is_file() {
        return Err(Error::usage(
            format!("--users {}: no such file", args.users.display()),
            "give the registrar's credential file; `sipseal registrar passwd --users FILE --realm DOMAIN --user AOR --password-file PW` makes one",
        ));
    }
    let users = Users::load(&args.users)?;
    // HA1s: a dictionary attack's input, as a password file is.
    if let Some(mode) = sipseal::keys::identity::group_or_other_readable(&args.users) {
        eprintln!(
            "warning: --users {} is readable by group/other (mode {mode:o}); run chmod 600 on it",
            args.users.display()
        );
    }
    if users.realms.get(&args.realm).is_none_or(|r| r.is_empty()) {
        eprintln!(
            "warning: --users {} has no user in realm {}: nobody can log in with a password",
            args.users.display(),
            args.realm
        );
    }
    let text = crate::io::read_input(&args.destinations)?;
    let text = String::from_utf8(text).map_err(|_| {
        Error::usage(
            format!(
                "--destinations {}: not UTF-8 text",
                args.destinations.display()
            ),
            "give the YAML table (see docs/guide/10-gateway.md)",
        )
    })?;
    let destinations = Destinations::parse(&text).map_err(|e| {
        Error::usage(
            format!("--destinations {}: {e}", args.destinations.display()),
            "fix the table (version: 1, users: NAME: {destinations: [{name, uri}]}; see docs/guide/10-gateway.md)",
        )
    })?;
    check_table(args, &users, &destinations)?;
    Ok(Tables {
        users,
        destinations,
    })
}

/// What the table's grammar cannot see: every `cert:` reads as a
/// certificate now (not at a user's first access, with the path in the
/// browser's error page), and a user the table names but `--users` does
/// not (a typo: that user would see no destinations) is warned about.
fn check_table(args: &GatewayArgs, users: &Users, table: &Destinations) -> Result<(), Error> {
    let base = args
        .destinations
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let known = users.realms.get(&args.realm);
    for (user, destinations) in table.users() {
        if known.is_some_and(|k| !k.is_empty() && !k.contains_key(user)) {
            eprintln!(
                "warning: --destinations {}: user {user:?} is not in --users {} (realm {}): nobody logs in as them",
                args.destinations.display(),
                args.users.display(),
                args.realm
            );
        }
        for d in destinations {
            if let Some(cert) = &d.cert {
                sipseal::keys::Cert::load(&base.join(cert)).map_err(|e| {
                    Error::usage(
                        format!(
                            "--destinations {}: {user}: destination {:?}: cert {}: {e}",
                            args.destinations.display(),
                            d.name,
                            cert.display()
                        ),
                        "give the destination's certificate (PEM), a relative path being taken from the table's directory, or leave cert: out to ask the registrar (--cert-query)",
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// Serve until SIGTERM or SIGINT; SIGHUP reads --users and
/// --destinations again.
pub fn run(args: GatewayArgs) -> Result<Exit, Error> {
    crate::live::init_log();
    let tables = load_tables(&args)?;
    let phone_header = args
        .phone_header
        .as_deref()
        .map(|h| {
            hyper::header::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                Error::usage(
                    format!("--phone-header {h:?}: not an HTTP header name"),
                    "give a token such as X-Phone-Number",
                )
            })
        })
        .transpose()?;
    let identity = crate::args::identity_at(&args.identity)?;
    let tls = sipseal::net::tls::https_server(&identity).map_err(|e| {
        Error::usage(
            e.to_string(),
            "check --identity (an RSA or P-256 key and its certificate)",
        )
    })?;
    let dialer = dialer(&args)?;
    let config = Config {
        realm: args.realm.clone(),
        phone_header,
        trusted_front: args.trusted_front.clone(),
        metrics_allow: args.metrics_allow.clone(),
        idle: Duration::from_secs(args.idle.max(1)),
        max_body: args.max_body,
        max_connections: args.max_connections,
        write_timeout: Duration::from_secs(args.write_timeout.max(1)),
        header_timeout: Duration::from_secs(args.header_timeout.max(1)),
    };
    let gateway = Arc::new(
        Gateway::new(config, tables, dialer).map_err(|e| Error::Write {
            name: "the random token of the gateway".into(),
            source: std::io::Error::other(e.to_string()),
        })?,
    );
    crate::live::runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| {
                Error::usage(
                    format!("--listen {}: {e}", args.listen),
                    "pick a free port on an address of this host (port 0: the system picks one)",
                )
            })?;
        let bound = listener.local_addr().map_err(|e| Error::Write {
            name: "the listener".into(),
            source: e,
        })?;
        eprintln!("gateway listening on https://{bound}");
        let signal = |kind| {
            tokio::signal::unix::signal(kind).map_err(|e| Error::Write {
                name: "a signal handler".into(),
                source: e,
            })
        };
        let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
        let reloading = Arc::clone(&gateway);
        let stop = async move {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = tokio::signal::ctrl_c() => break,
                    _ = hup.recv() => match load_tables(&args) {
                        Ok(t) => {
                            reloading.reload(t);
                            eprintln!("reloaded --users and --destinations");
                        }
                        Err(e) => eprintln!("reload refused, keeping the old tables: {e}"),
                    },
                }
            }
        };
        sipseal::gateway::serve(gateway, listener, tls, stop).await;
        Ok(Exit::Ok)
    })
}
