//! `sipseal edge`: selective disclosure for an ordinary phone (issue 30).
//! The phone uses the edge as its outbound proxy over plain UDP or TCP
//! on its own host or LAN; the edge keeps one mutual-TLS flow to the
//! user's relay, seals what the phone sends and opens what it is sent.
//! The work is the library's (`sipseal::edge`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use sipseal::context::Context;
use sipseal::edge::body::{Sealer, SealerConfig};
use sipseal::edge::daemon::{Edge, EdgeConfig, User};
use sipseal::net::flow::FlowLimits;
use sipseal::net::{Target, Transport};
use sipseal::state::SessionStore;

use crate::args::{StateArgs, identity_at, load_anchors, load_psk};
use crate::error::{Error, Exit};
use sipseal::sip::aor::aor_key;

/// `edge` arguments.
#[derive(Debug, Args)]
#[command(
    long_about = "An outbound proxy for ordinary phones (issue 30): the phone talks plain SIP \
to the edge (--listen, udp: or tcp:, sources inside --phones only), the edge keeps one \
mutual-TLS flow to --outbound (RFC 5626 keep-alives, reconnect with backoff), seals every SDP \
the phone sends and opens every sealed body sent to it, on its user's behalf.\n\n\
Routing: the edge is a proxy, not a B2BUA (Call-ID, tags and CSeq are the phone's). It adds \
its Via and takes it off the responses; it replaces every Contact the phone sends by \
<sip:USER@FLOW-ADDR;transport=tls;ob;sipseal-phone=TOKEN>, TOKEN the phone's own Contact and \
transport under an HMAC of the edge secret; a request from the network reaches the phone only \
through a token that verifies (none: 404, forged: 403). It record-routes on the phone leg only, \
so the phone's in-dialog requests come back to it and the network never sees the phone's \
address. A REGISTER goes on with the phone's Digest untouched; when the identity of its To AOR \
has no certificate (or one ending within the interval) the edge adds a CSR and installs the \
certificate of the registrar's signed 200; the phone gets its own Contacts back.\n\n\
The edge signs and seals on the user's behalf: the phone link is as trusted as the phone \
(keep --phones to the phone's host or LAN). State (--state): the edge secret (0600) and the \
session keys; a restarted edge carries calls in progress on."
)]
pub struct EdgeArgs {
    /// A phone-side listener: udp:HOST:PORT or tcp:HOST:PORT (repeatable).
    #[arg(long, value_name = "TRANSPORT:HOST:PORT", required = true)]
    pub listen: Vec<String>,
    /// A user's identity directory (key.pem, and cert.pem once it has
    /// one): its certificate's SAN URI is the AOR (repeatable, one per
    /// user). The first one's certificate is presented on the flow.
    #[arg(long, value_name = "DIR", required = true)]
    pub identity: Vec<PathBuf>,
    /// The AOR of an --identity that has a key but no certificate yet,
    /// as DIR=AOR (its first REGISTER enrols it).
    #[arg(long, value_name = "DIR=AOR")]
    pub aor: Vec<String>,
    /// The outbound relay, over mutual TLS: tls:HOST:PORT. The server
    /// must be named by HOST and chain to --trust.
    #[arg(long, value_name = "TARGET")]
    pub outbound: String,
    /// Names to resolve before DNS (`127.0.0.1:5061 proxy-a.a.example.com`).
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// Trust anchors (repeatable): the relay's certificate, peers'
    /// signatures, the registrar's signature and certificates.
    #[arg(long, value_name = "PEM|DIR", required = true)]
    pub trust: Vec<PathBuf>,
    /// The disclosure policy (YAML): which relays get the SDP per
    /// destination, what to do with peers without a certificate.
    #[arg(long, value_name = "POLICY.yaml")]
    pub disclosure: PathBuf,
    /// A PSK file the registrar holds for a user's AOR (its `uri`;
    /// `sipseal keys psk`, repeatable): the CSR the edge adds to that
    /// user's REGISTER is sealed under it, which is how the registrar
    /// takes a CSR the phone's Digest (over its own, empty, body) does
    /// not cover. Without one a user without a certificate cannot enrol
    /// through its phone's REGISTER.
    #[arg(long, value_name = "FILE")]
    pub psk: Vec<PathBuf>,
    /// Where peers' certificates are asked for (tcp:HOST:PORT), as `gateway`.
    #[arg(long, value_name = "TARGET")]
    pub cert_query: Option<String>,
    /// Trust anchors of the registrar's signature (default: --trust).
    #[arg(long, value_name = "PEM|DIR")]
    pub registrar_trust: Vec<PathBuf>,
    /// The phones served: source networks (CIDR, comma-separated or
    /// repeated). Default: loopback only (127.0.0.0/8, ::1). Others are
    /// dropped and logged.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    pub phones: Vec<ipnet::IpNet>,
    /// A CRLF keep-alive on the flow this often, in seconds (RFC 5626).
    #[arg(long, value_name = "SECONDS", default_value_t = 25)]
    pub keepalive: u64,
    /// The identity the flow presents while the first --identity has no
    /// valid certificate: a certificate for the same AOR the relay trusts.
    #[arg(long, value_name = "DIR")]
    pub bootstrap: Option<PathBuf>,
    /// The largest message taken from a phone, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 65_535)]
    pub max_message: usize,
    /// Phone-side TCP connections at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,
    /// Seconds a non-INVITE request waits for its final response.
    #[arg(long, value_name = "SECONDS", default_value_t = 32)]
    pub timeout: u64,
    /// State.
    #[command(flatten)]
    pub state: StateArgs,
}

fn users(args: &EdgeArgs) -> Result<Vec<User>, Error> {
    let psks = args
        .psk
        .iter()
        .map(|p| load_psk(p))
        .collect::<Result<Vec<_>, Error>>()?;
    let mut out = Vec::new();
    for dir in &args.identity {
        let key = dir.join("key.pem");
        let given = args.aor.iter().find_map(|a| {
            let (d, aor) = a.split_once('=')?;
            (std::path::Path::new(d) == dir.as_path()).then(|| aor.to_owned())
        });
        let (identity, aor) = if dir.join("cert.pem").is_file() || dir.extension().is_some() {
            let identity = identity_at(dir)?;
            let aor = identity.cert.uri().ok_or_else(|| {
                Error::usage(
                    format!("{}: the certificate has no SIP URI", dir.display()),
                    "give --identity a certificate with a SAN URI (sipseal keys generate --uri sip:USER@DOMAIN)",
                )
            })?;
            (Some(identity), aor)
        } else {
            let aor = given.clone().ok_or_else(|| {
                Error::usage(
                    format!("--identity {}: no cert.pem, so no AOR", dir.display()),
                    format!(
                        "name its AOR with --aor {}=sip:USER@DOMAIN (its first REGISTER enrols it)",
                        dir.display()
                    ),
                )
            })?;
            (None, aor)
        };
        let enrol_key = if key.is_file() && !sipseal::keys::identity::key_is_encrypted(&key) {
            Some(key)
        } else {
            None
        };
        if identity.is_none() && enrol_key.is_none() {
            return Err(Error::usage(
                format!(
                    "--identity {}: no certificate and no unencrypted key.pem",
                    dir.display()
                ),
                "give the user's key.pem (mode 0600), its certificate comes from the registrar",
            ));
        }
        let psk = psks.iter().find(|p| {
            p.uri
                .as_deref()
                .is_some_and(|u| aor_key(u) == aor_key(&aor))
        });
        if identity.is_none() && psk.is_none() {
            eprintln!(
                "warning: {aor} has no certificate and no --psk: the registrar takes the CSR the edge adds to its phone's REGISTER only sealed under a PSK of that AOR (sipseal keys psk --uri {aor}, given to the registrar's --psk and here)"
            );
        }
        out.push(User::new(&aor, dir.clone(), enrol_key, identity).with_psk(psk.cloned()));
    }
    Ok(out)
}

/// Run `edge` until SIGTERM or SIGINT; SIGHUP reloads the policy and
/// the identities.
pub fn run(args: EdgeArgs, ctx: &mut Context) -> Result<Exit, Error> {
    crate::live::init_log();
    let mut trust = Vec::new();
    for t in &args.trust {
        trust.extend(load_anchors(t)?);
    }
    let mut registrar_trust = Vec::new();
    for t in &args.registrar_trust {
        registrar_trust.extend(load_anchors(t)?);
    }
    if registrar_trust.is_empty() {
        registrar_trust = trust.clone();
    }
    let users = users(&args)?;
    let hosts = crate::live::load_hosts(args.hosts.as_deref())?;
    let outbound =
        crate::live::tls_outbound(&args.outbound, &hosts, "edge", "proxy-a.a.example.com")?;
    let cert_query = match &args.cert_query {
        Some(c) => Some(Target::parse(c, &hosts).map_err(|why| {
            Error::usage(
                why.to_string(),
                "e.g. --cert-query tcp:registrar.example.com:5060",
            )
        })?),
        None => None,
    };
    let mut listen: Vec<(Transport, SocketAddr)> = Vec::new();
    for l in &args.listen {
        let (t, a) = crate::live::listen_addr(l)?;
        if t == Transport::Tls {
            return Err(Error::usage(
                format!("--listen {l}: the phone side is plain"),
                "give --listen udp:HOST:PORT or tcp:HOST:PORT",
            ));
        }
        listen.push((t, a));
    }
    let bootstrap = match &args.bootstrap {
        Some(b) => Some(Arc::new(identity_at(b)?)),
        None => None,
    };
    let has_flow_identity = users.first().and_then(User::identity).is_some_and(|i| {
        !sipseal::datachannel::terminal::certificate_due(Some(&i.cert), ctx.now(), Duration::ZERO)
    });
    if !has_flow_identity && bootstrap.is_none() {
        return Err(Error::usage(
            "the first --identity has no valid certificate to open the mutual-TLS flow with",
            "give --bootstrap DIR, a certificate for the same AOR that the relay trusts, for the first registration",
        ));
    }
    let phones = if args.phones.is_empty() {
        vec![
            ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::LOCALHOST, 8).into(),
            ipnet::Ipv6Net::new_assert(std::net::Ipv6Addr::LOCALHOST, 128).into(),
        ]
    } else {
        args.phones.clone()
    };
    let store = Arc::new(args.state.store()?);
    let secret = store
        .secret("sipseal-edge", &mut || {
            let mut b = [0u8; 32];
            b.copy_from_slice(&ctx.bytes(32));
            b
        })
        .map_err(Error::State)?;
    let agent = users
        .first()
        .and_then(|u| sipseal::sip::headers::uri_host(&u.aor))
        .map(|h| format!("edge.{h}"))
        .unwrap_or_else(|| "edge".into());
    let sealer = Sealer::new(SealerConfig {
        policy: args.disclosure.clone(),
        cert_query,
        registrar_trust: registrar_trust.clone(),
        trust: trust.clone(),
        store,
        limits: args.state.limits(),
        agent: agent.clone(),
    })
    .map_err(|e| {
        Error::usage(
            e.to_string(),
            "check --disclosure (docs/SPEC.md §7.2, the policy file)",
        )
    })?;
    let config = EdgeConfig {
        listen,
        users,
        outbound,
        trust,
        registrar_trust,
        bootstrap,
        phones,
        flow: FlowLimits {
            keepalive: Duration::from_secs(args.keepalive.max(1)),
            ..FlowLimits::default()
        },
        secret: *secret,
        agent,
        max_message: args.max_message.clamp(1_024, 1 << 20),
        max_connections: args.max_connections.max(1),
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    let runtime = crate::live::runtime()?;
    let ctx = ctx.fork();
    runtime.block_on(async move {
        let edge = Edge::bind(config, Arc::new(sealer), ctx)
            .await
            .map_err(|e| Error::usage(e.to_string(), "check --listen"))?;
        eprintln!(
            "sipseal edge: listening on {} (phones), its flow to {}",
            crate::live::describe(edge.local_addrs()),
            args.outbound
        );
        let signal = |kind| {
            tokio::signal::unix::signal(kind).map_err(|e| Error::Write {
                name: "a signal handler".into(),
                source: e,
            })
        };
        let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
        let reloader = edge.reloader();
        let reloads = tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match reloader.reload() {
                    Ok(()) => tracing::info!(event = "reloaded"),
                    Err(e) => tracing::info!(event = "reload failed", error = %e),
                }
            }
        });
        edge.run(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await;
        reloads.abort();
        Ok(Exit::Ok)
    })
}
