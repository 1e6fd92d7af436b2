//! `sipseal ca`: the CA apart from the registrar, over mutual TLS
//! (docs/SPEC.md §6, [`sipseal::registrar::ca`]).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use sipseal::context::Context;
use sipseal::keys::generate::Ca;
use sipseal::registrar::ca::{LiveCa, MAX_VALIDITY};

use crate::error::{Error, Exit};

/// `ca`: issue certificates for registrars that ask over mutual TLS.
#[derive(Debug, Args)]
pub struct CaArgs {
    /// Where to listen: tls:HOST:PORT (repeatable; port 0 picks a free
    /// one, printed at start). Only mutual TLS: a registrar proves who it
    /// is with its client certificate.
    #[arg(long, value_name = "tls:HOST:PORT", required = true)]
    pub listen: Vec<String>,
    /// The CA directory it signs with (cert.pem, key.pem; see `keys ca`).
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// Its TLS identity (certificate and key the registrars check).
    #[arg(long, value_name = "DIR|P12")]
    pub identity: PathBuf,
    /// The trust anchors a registrar's client certificate must chain to.
    #[arg(long, value_name = "PEM|DIR", required = true)]
    pub trust: Vec<PathBuf>,
    /// Which registrar may ask for which domain: NAME=DOMAIN (repeatable).
    /// NAME is one of the SIP identities of the registrar's TLS
    /// certificate (the host of a SAN URI without a user part, or a
    /// dNSName: RFC 5922 §7.1); a request for an AOR in any other domain
    /// is refused 403.
    #[arg(long, value_name = "NAME=DOMAIN", required = true, value_parser = parse_allow)]
    pub allow: Vec<(String, String)>,
    /// The longest validity it gives, in seconds (a registrar asks for
    /// the registration's expiry).
    #[arg(long, value_name = "SECONDS", default_value_t = MAX_VALIDITY)]
    pub max_validity: u32,
    /// Stop after this many requests (tests, scripts).
    #[arg(long, value_name = "N")]
    pub max_requests: Option<u64>,
}

fn parse_allow(s: &str) -> Result<(String, String), String> {
    let (name, domain) = s
        .split_once('=')
        .filter(|(n, d)| !n.is_empty() && !d.is_empty())
        .ok_or_else(|| format!("{s:?} is not NAME=DOMAIN"))?;
    Ok((name.to_ascii_lowercase(), domain.to_ascii_lowercase()))
}

/// Serve until SIGTERM or `--max-requests`.
pub fn run(args: CaArgs, ctx: &mut Context) -> Result<Exit, Error> {
    use crate::live::{Counted, bind, describe, listen_addr, runtime};
    use sipseal::net::Transport;
    use sipseal::net::live::ServerConfig;
    crate::live::init_log();
    let listen = args
        .listen
        .iter()
        .map(|l| listen_addr(l))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((t, a)) = listen.iter().find(|(t, _)| *t != Transport::Tls) {
        return Err(Error::usage(
            format!(
                "--listen {}:{a}: the CA answers over mutual TLS only",
                t.token().to_ascii_lowercase()
            ),
            "give --listen tls:HOST:PORT",
        ));
    }
    let ca = Ca::load(&args.ca)?;
    let identity = crate::args::identity_at(&args.identity)?;
    let mut trust = Vec::new();
    for t in &args.trust {
        trust.extend(crate::args::load_anchors(t)?);
    }
    let tls = sipseal::net::tls::TlsSetup::new(Some(&identity), &trust)
        .map_err(|e| Error::usage(e.to_string(), "check --identity and --trust"))?;
    let service = Arc::new(LiveCa {
        ca,
        allow: args.allow,
        max_validity: args.max_validity,
        ctx: std::sync::Mutex::new(ctx.fork()),
    });
    let counted = Arc::new(Counted::new(service as _, args.max_requests));
    runtime()?.block_on(async move {
        let config = ServerConfig {
            listen,
            tls: Some(Arc::new(tls)),
            max_message: crate::relay::max_message(),
            ..ServerConfig::default()
        };
        let server = bind(config, Arc::clone(&counted) as _).await?;
        eprintln!("CA listening on {}", describe(server.local_addrs()));
        crate::live::serve(server, counted.done(), || Ok(()), None).await?;
        Ok(Exit::Ok)
    })
}
