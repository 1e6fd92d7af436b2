//! `sipseal terminal`: the answering terminal of a service host (issue
//! 29). It registers over mutual TLS through its edge relay, keeps that
//! flow, answers INVITEs from the callers it allows with a sealed data
//! channel, and terminates each channel into a local service
//! (`--serve`). The work is the library's (`sipseal::datachannel`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use sipseal::context::Context;
use sipseal::datachannel::daemon::{Enrol, IdentitySlot, Terminal, TerminalConfig, TerminalError};
use sipseal::datachannel::terminal::{Policy, RegisterError};
use sipseal::keys::Identity;
use sipseal::net::flow::FlowLimits;
use sipseal::net::tls::TlsSetup;
use sipseal::session::Limits;

use crate::args::{identity_at, load_anchors, read_password_file};
use crate::error::{Error, Exit};

/// `terminal` arguments.
#[derive(Debug, Args)]
pub struct TerminalArgs {
    /// The terminal's identity (cert.pem + key.pem, or a PKCS#12 file):
    /// its certificate's SAN URI is the AOR it registers and answers as,
    /// and it opens the INVITEs sealed for it.
    #[arg(long, value_name = "DIR")]
    pub identity: PathBuf,
    /// Trust anchors: the relay's TLS certificate and the callers'
    /// signing certificates must chain to them (repeatable).
    #[arg(long, value_name = "PEM|DIR", required = true)]
    pub trust: Vec<PathBuf>,
    /// The edge relay (or registrar) the flow goes to, over mutual TLS:
    /// tls:HOST:PORT or sip:HOST:PORT;transport=tls. The server must be
    /// named by HOST (RFC 5922) and chain to --trust.
    #[arg(long, value_name = "TARGET")]
    pub outbound: String,
    /// Names to resolve before DNS: a hosts file whose addresses may carry
    /// a port (`127.0.0.1:5071 proxy-b.b.example.com`).
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// The AOR's Digest password (a file holding it alone), for the
    /// registrar's challenge.
    #[arg(long, value_name = "FILE")]
    pub password_file: PathBuf,
    /// The registration interval asked for, in seconds; refreshed at half
    /// of what the registrar grants.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub expires: u32,
    /// A caller (AOR) this terminal answers (repeatable); any other gets
    /// 403. The caller must have signed the INVITE's content with a
    /// certificate for that AOR chaining to --trust.
    #[arg(long, value_name = "AOR", required = true)]
    pub allow: Vec<String>,
    /// Refuse (403) an INVITE that came over a Route-Security link below
    /// this level (0-3; 3: mutual TLS all the way).
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(u8).range(0..=3))]
    pub min_route_level: Option<u8>,
    /// The local service each data channel is connected to: http://HOST:PORT
    /// (bytes are relayed as they are; the scheme names what runs inside).
    #[arg(long, value_name = "URL")]
    pub serve: String,
    /// The address the answer's SDP names for the data channel, where the
    /// terminal listens (default: the address of its flow to the relay).
    #[arg(long, value_name = "IP")]
    pub channel_address: Option<IpAddr>,
    /// Close a data channel when nothing moved either way for this many
    /// seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub idle: u64,
    /// How long a caller may take to connect to its data channel after
    /// the 200, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub setup_timeout: u64,
    /// Calls at once, at most; past it an INVITE gets 486 Busy Here.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_calls: usize,
    /// Send a CRLF keep-alive on the flow this often, in seconds (RFC
    /// 5626 §4.4.1): below the relay's --idle-timeout, and below any NAT's
    /// idle time on the way.
    #[arg(long, value_name = "SECONDS", default_value_t = 25)]
    pub keepalive: u64,
    /// Seconds to wait for the registrar's answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: u64,
    /// Get the identity's certificate from the registrar: a REGISTER
    /// carries a CSR for --identity's key.pem whenever there is no
    /// cert.pem or it ends within the registration interval (--expires),
    /// and the certificate of the signed 200 OK (chaining to --trust,
    /// naming the AOR) is installed as DIR/cert.pem and used from then on.
    #[arg(long)]
    pub enrol: bool,
    /// With --enrol, the identity the flow presents while --identity has
    /// no valid certificate (its first registration): a certificate for
    /// the same AOR chaining to what the relay trusts (cert.pem + key.pem).
    #[arg(long, value_name = "DIR", requires = "enrol")]
    pub bootstrap: Option<PathBuf>,
}

/// `http://HOST:PORT[/]` as the address to connect to (a literal address:
/// the service is local).
fn serve_addr(url: &str) -> Result<SocketAddr, Error> {
    let bad = || {
        Error::usage(
            format!("--serve {url:?} is not http://IP:PORT"),
            "give the local service as an address literal, e.g. --serve http://127.0.0.1:8080",
        )
    };
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let rest = rest.replace("localhost", "127.0.0.1");
    rest.parse().map_err(|_| bad())
}

/// The terminal's identity (none yet when --enrol will get its
/// certificate), what --enrol needs, and the identity the flow presents
/// first (the identity's own, else --bootstrap's).
type Identities = (Option<Arc<Identity>>, Option<Enrol>, Arc<Identity>);

/// [`Identities`] from the arguments.
fn identities(args: &TerminalArgs, ctx: &Context) -> Result<Identities, Error> {
    if !args.enrol {
        let identity = Arc::new(identity_at(&args.identity)?);
        return Ok((Some(Arc::clone(&identity)), None, identity));
    }
    let dir = &args.identity;
    let key = dir.join("key.pem");
    if !dir.is_dir() || !key.is_file() {
        return Err(Error::usage(
            format!("--enrol: {} holds no key.pem", dir.display()),
            "give --identity a directory with the terminal's key.pem (sipseal keys generate), its cert.pem coming from the registrar",
        ));
    }
    if sipseal::keys::identity::key_is_encrypted(&key) {
        return Err(Error::usage(
            format!("--enrol: {} is protected by a passphrase", key.display()),
            "an enrolling terminal reads its key unattended: give it an unencrypted key.pem (mode 0600)",
        ));
    }
    let identity = if dir.join("cert.pem").is_file() {
        Some(Arc::new(identity_at(dir)?))
    } else {
        None
    };
    let valid = identity.as_ref().filter(|i| {
        !sipseal::datachannel::terminal::certificate_due(Some(&i.cert), ctx.now(), Duration::ZERO)
    });
    let flow_identity = match (valid, &args.bootstrap) {
        (Some(i), _) => Arc::clone(i),
        (None, Some(b)) => Arc::new(identity_at(b)?),
        (None, None) => {
            return Err(Error::usage(
                format!(
                    "--enrol: {} has no valid certificate to open the mutual-TLS flow with",
                    dir.display()
                ),
                "give --bootstrap DIR, a certificate for the same AOR that the relay trusts, for the first registration",
            ));
        }
    };
    if let (Some(i), Some(b)) = (&identity, flow_identity.cert.uri())
        && i.cert.uri().is_some_and(|u| !u.eq_ignore_ascii_case(&b))
    {
        return Err(Error::usage(
            format!(
                "--bootstrap names {b}, --identity {}",
                i.cert.uri().unwrap_or_default()
            ),
            "the bootstrap certificate must name the terminal's own AOR",
        ));
    }
    Ok((
        identity,
        Some(Enrol {
            dir: dir.clone(),
            key,
        }),
        flow_identity,
    ))
}

/// Run `terminal` until SIGTERM or SIGINT.
pub fn run(args: TerminalArgs, ctx: &mut Context) -> Result<Exit, Error> {
    crate::live::init_log();
    let mut trust = Vec::new();
    for t in &args.trust {
        trust.extend(load_anchors(t)?);
    }
    let (identity, enrol, flow_identity) = identities(&args, ctx)?;
    let aor = flow_identity.cert.uri().ok_or_else(|| {
        Error::usage(
            format!("{}: the certificate has no SIP URI", args.identity.display()),
            "give --identity a certificate with a SAN URI (sipseal keys generate --uri sip:USER@DOMAIN)",
        )
    })?;
    let hosts = crate::live::load_hosts(args.hosts.as_deref())?;
    let outbound =
        crate::live::tls_outbound(&args.outbound, &hosts, "terminal", "proxy-b.b.example.com")?;
    let serve = serve_addr(&args.serve)?;
    let password = read_password_file(&args.password_file)?;
    for a in &args.allow {
        if !a.to_ascii_lowercase().starts_with("sip:") || !a.contains('@') {
            return Err(Error::usage(
                format!("--allow {a:?} is not an AOR"),
                "give --allow sip:USER@DOMAIN, once per caller",
            ));
        }
    }
    let tls = TlsSetup::new(Some(&flow_identity), &trust)
        .map_err(|e| Error::usage(e.to_string(), "check --identity, --bootstrap and --trust"))?;
    let agent = sipseal::sip::headers::uri_host(&aor).unwrap_or_else(|| "terminal".into());
    let config = TerminalConfig {
        identity: IdentitySlot::new(identity),
        enrol,
        aor: aor.clone(),
        outbound,
        tls: Arc::new(tls),
        password,
        expires: args.expires.max(1),
        policy: Policy {
            allow: args.allow.clone(),
            trust,
            min_route_level: args.min_route_level,
            agent,
        },
        serve,
        channel_ip: args.channel_address,
        idle: Duration::from_secs(args.idle.max(1)),
        setup_timeout: Duration::from_secs(args.setup_timeout.max(1)),
        max_calls: args.max_calls.max(1),
        limits: Limits::default(),
        flow: FlowLimits {
            keepalive: Duration::from_secs(args.keepalive.max(1)),
            ..FlowLimits::default()
        },
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    let runtime = crate::live::runtime()?;
    let ctx = ctx.fork();
    runtime.block_on(async move {
        let terminal = match Terminal::start(config, ctx).await {
            Ok(t) => t,
            Err(TerminalError::Register(RegisterError::Refused { code, reason })) => {
                eprintln!("error: registering {aor} via {}: {code} {reason}", args.outbound);
                eprintln!("hint: {}", register_hint(code, &aor));
                return Ok(Exit::SipError);
            }
            Err(TerminalError::Register(RegisterError::Flow(e)) | TerminalError::Flow(e)) => {
                return Err(Error::Unreachable {
                    message: format!("--outbound {}: {e}", args.outbound),
                    hint: "check that the relay listens there on tls:, that its certificate names the --outbound host and chains to --trust, and that it takes this --identity",
                });
            }
            Err(e) => return Err(Error::usage(e.to_string(), "check --identity and --outbound")),
        };
        eprintln!(
            "sipseal terminal: {aor} registered for {} s, listening on tls:{} (its flow to {}), serving {}",
            terminal.granted(),
            terminal.local(),
            args.outbound,
            args.serve
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::Write {
                name: "a signal handler".into(),
                source: e,
            })?;
        terminal
            .run(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            })
            .await;
        Ok(Exit::Ok)
    })
}

/// What to do about a refused registration, by its status: the
/// credentials for 401/403/407, the way to the registrar for a 5xx or a
/// timeout (a relay that cannot reach it answers 503: its log says why).
fn register_hint(code: u16, aor: &str) -> String {
    match code {
        401 | 403 | 407 => format!(
            "the registrar refused the credentials: check --password-file against `sipseal registrar passwd` for {aor}, and that --identity names {aor}"
        ),
        404 => format!("the registrar does not serve {aor}: check the relay's --domain and the registrar's realm"),
        408 | 500..=599 => "the relay could not reach the registrar of the domain: see the relay's log (a relay serving the domain needs a listener of the registrar's transport, e.g. --listen udp:... for a registrar on UDP, and --hosts naming it)".into(),
        _ => format!("the registrar refused {aor}: see its Warning in the relay's and registrar's logs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_registration_says_where_to_look_by_its_status() {
        let aor = "sip:bob@b.example.com";
        assert!(register_hint(401, aor).contains("--password-file"));
        assert!(register_hint(403, aor).contains("--password-file"));
        assert!(register_hint(503, aor).contains("--listen udp:"));
        assert!(!register_hint(503, aor).contains("--password-file"));
        assert!(register_hint(404, aor).contains("--domain"));
    }

    #[test]
    fn the_service_is_an_http_address_literal() {
        assert_eq!(
            serve_addr("http://127.0.0.1:8080/").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            serve_addr("http://localhost:80").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert!(serve_addr("https://127.0.0.1:8080").is_err());
        assert!(serve_addr("http://service.example.com:80").is_err());
    }
}
