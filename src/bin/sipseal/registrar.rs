//! `sipseal registrar` (one request in, its response out) and `sipseal
//! register` (the user agent's REGISTER, its authorized retry, and
//! installing the certificate a 200 OK carries).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use sipseal::context::Context;
use sipseal::keys::generate::{Ca, SigningKey, make_csr, subject_for};
use sipseal::keys::{Cert, KeyError};
use sipseal::registrar::digest::{self, DigestAlgorithm};
use sipseal::registrar::issuer::Issuer;
use sipseal::registrar::users::{Users, username_of};
use sipseal::registrar::{NONCE_LIFETIME, Outcome, Registrar, enrol, sealed};
use sipseal::sip::Message;
use sipseal::sip::compose::{Body, RequestParams, build_request};
use sipseal::sip::routing::OwnNames;

use crate::args::{StateArgs, identity_at, load_psk, private_key_at, read_password_file};
use crate::error::{Error, Exit};
use crate::io::{OutputArgs, read_message};

/// `registrar`: answer one REGISTER, or manage credentials.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RegistrarArgs {
    #[command(subcommand)]
    pub action: Option<RegistrarCommand>,
    #[command(flatten)]
    pub step: StepArgs,
}

/// One request through the registrar.
#[derive(Debug, Args)]
pub struct StepArgs {
    /// The request (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    /// The realm: the domain registered, and the Digest realm.
    #[arg(long, value_name = "DOMAIN", required = true)]
    pub realm: Option<String>,
    /// The issuing CA: a CA directory (cert.pem, key.pem; see `keys ca`),
    /// or a `sipseal ca` reached over mutual TLS as tls:HOST:PORT (with
    /// --ca-cert and --trust; the registrar presents --identity). The
    /// registrar checks the request either way; the CA signs.
    #[arg(long, value_name = "DIR|tls:HOST:PORT", required = true)]
    pub ca: Option<PathBuf>,
    /// With --ca tls:…: the remote CA's own certificate, which what it
    /// issues must chain to (and which the 200s carry as the chain).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// The registrar's identity, which signs responses carrying certificates.
    #[arg(long, value_name = "DIR|P12", required = true)]
    pub identity: Option<PathBuf>,
    /// The credential file (HA1 values; see `registrar passwd`).
    #[arg(long, value_name = "FILE", required = true)]
    pub users: Option<PathBuf>,
    /// The longest registration granted, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub max_expires: u32,
    /// The Digest algorithms to challenge with, in order (a 401 carries
    /// one WWW-Authenticate per algorithm): sha-512-256, sha-256, md5.
    /// SIPp answers only the first challenge and computes only MD5: list
    /// md5 first. libre-based user agents (baresip 1.0) give up at any
    /// challenge they cannot compute: give them md5 alone. Either way the
    /// users need an MD5 HA1 (`registrar passwd --allow-md5`).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        value_parser = parse_algorithm,
        default_value = "sha-512-256,sha-256"
    )]
    pub digest_algorithms: Vec<DigestAlgorithm>,
    /// Also accept MD5 Digest (old clients such as SIPp): the same as
    /// appending md5 to --digest-algorithms.
    #[arg(long)]
    pub allow_md5: bool,
    /// Another name or address this registrar goes by (HOST or
    /// HOST:PORT; repeatable): a Request-URI naming it, as one naming a
    /// listener, is a request for --realm.
    #[arg(long, value_name = "NAME")]
    pub alias: Vec<String>,
    /// How long a nonce stays fresh, in seconds; also how far from now
    /// the signed Date of a signed certificate query may be.
    #[arg(long, value_name = "SECONDS", default_value_t = NONCE_LIFETIME)]
    pub nonce_lifetime: i64,
    /// Where the request came from (IP:port), kept with the binding for
    /// the relays' imposture check.
    #[arg(long, value_name = "IP:PORT")]
    pub source: Option<String>,
    /// Connectivity policy (the YAML allow-list `proxy --policy` takes): a
    /// certificate query from an AOR it does not let reach the AOR asked
    /// about is answered with the same 404 as an unknown AOR.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Serve live instead of answering one file: udp:HOST:PORT,
    /// tcp:HOST:PORT or tls:HOST:PORT (repeatable; port 0 picks a free
    /// one, printed at start). Each response goes back where its request
    /// came from (UDP: the source address and port, RFC 3581). Runs until
    /// SIGTERM, or --max-requests. A tls listener needs --trust.
    #[arg(long, value_name = "TRANSPORT:HOST:PORT")]
    pub listen: Vec<String>,
    /// With --listen: stop after this many requests (tests, scripts).
    #[arg(long, value_name = "N", requires = "listen")]
    pub max_requests: Option<u64>,
    /// Trust anchors (repeatable): with a tls listener, what a client's
    /// certificate must chain to (clientAuth; a client without one is
    /// refused); what the signer of a signed certificate query
    /// (`certquery --sign`) must chain to, besides --ca; and what a
    /// remote CA's TLS certificate must chain to (--ca tls:…).
    #[arg(long, value_name = "PEM|DIR")]
    pub trust: Vec<PathBuf>,
    /// Answer only signed certificate queries: an unsigned one gets 495
    /// Signature Required, with a Warning saying to sign it (`certquery
    /// --sign DIR`). A signed query is checked either way: a signature
    /// that does not verify (chain to --trust or --ca, signer = the From
    /// AOR, the signed headers as sent) is a 403.
    #[arg(long)]
    pub require_signed_queries: bool,
    /// Names to resolve before DNS: a hosts file (`127.0.0.1:5070
    /// b.example.com`, or `tcp:127.0.0.1:5070 b.example.com`), for the
    /// registrars of other domains a certificate query is forwarded to,
    /// and for a remote CA's host (--ca tls:HOST:PORT); other names from
    /// the system resolver (A/AAAA).
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// Find other domains' registrars in --hosts only: no DNS lookups. A
    /// query for a domain it does not list gets 404.
    #[arg(long)]
    pub no_dns: bool,
    /// Do not forward certificate queries for other domains: answer them
    /// 404, as an unknown AOR.
    #[arg(long, conflicts_with = "no_dns")]
    pub no_forward: bool,
    /// Seconds to wait for another domain's registrar to answer a
    /// forwarded query; then 504 Server Time-out.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub forward_timeout: u64,
    /// A pre-shared key a REGISTER body may be sealed under (`register
    /// --seal-for psk:FILE`): a PSK file, or a directory of them (every
    /// *.yaml in it); repeatable. Each names the AOR it belongs to as its
    /// `uri`, and opens only that AOR's registrations: one sealed under
    /// another AOR's PSK is refused 403, as a wrong password is. The 200
    /// goes back sealed under the same PSK.
    #[arg(long, value_name = "FILE|DIR")]
    pub psk: Vec<PathBuf>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn parse_algorithm(s: &str) -> Result<DigestAlgorithm, String> {
    DigestAlgorithm::from_token(s.trim())
        .ok_or_else(|| format!("{s:?}: give sha-512-256, sha-256 or md5"))
}

impl StepArgs {
    /// --digest-algorithms, with md5 appended for --allow-md5.
    fn algorithms(&self) -> Vec<DigestAlgorithm> {
        let mut out: Vec<DigestAlgorithm> = Vec::new();
        for a in &self.digest_algorithms {
            if !out.contains(a) {
                out.push(*a);
            }
        }
        if self.allow_md5 && !out.contains(&DigestAlgorithm::Md5) {
            out.push(DigestAlgorithm::Md5);
        }
        out
    }

    /// Forwarding of queries for other domains: --hosts, DNS unless
    /// --no-dns, none with --no-forward.
    fn forward(&self) -> Result<Option<sipseal::registrar::forward::WireForward>, Error> {
        if self.no_forward {
            return Ok(None);
        }
        Ok(Some(sipseal::registrar::forward::WireForward::new(
            self.hosts()?,
            !self.no_dns,
            std::time::Duration::from_secs(self.forward_timeout),
        )))
    }

    /// --hosts read (none: an empty table).
    fn hosts(&self) -> Result<sipseal::net::Hosts, Error> {
        match &self.hosts {
            Some(path) => sipseal::net::Hosts::load(path).map_err(|e| {
                Error::usage(
                    e.to_string(),
                    "lines of [TRANSPORT:]ADDRESS[:PORT] NAME..., as /etc/hosts",
                )
            }),
            None => Ok(sipseal::net::Hosts::default()),
        }
    }

    /// --trust, every file or directory read.
    fn anchors(&self) -> Result<Vec<Cert>, Error> {
        let mut trust = Vec::new();
        for t in &self.trust {
            trust.extend(crate::args::load_anchors(t)?);
        }
        Ok(trust)
    }

    /// Its own names: the listeners, and --alias.
    fn own_names(&self, listeners: &[std::net::SocketAddr]) -> OwnNames {
        let mut own = OwnNames::new(listeners.iter().copied());
        for a in &self.alias {
            own.add(a);
        }
        own
    }

    /// The PSKs of --psk: each file, and every *.yaml in each directory
    /// (in name order), checked ([`sealed::check_psks`]).
    fn psks(&self) -> Result<Vec<sipseal::keys::Psk>, Error> {
        let mut psks = Vec::new();
        for path in &self.psk {
            if path.is_dir() {
                let entries = std::fs::read_dir(path).map_err(|source| KeyError::Read {
                    path: path.clone(),
                    source,
                })?;
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "yaml") && p.is_file())
                    .collect();
                files.sort();
                for f in files {
                    psks.push(load_psk(&f)?);
                }
            } else {
                psks.push(load_psk(path)?);
            }
        }
        sealed::check_psks(&psks).map_err(|why| {
            Error::usage(
                format!("--psk: {why}"),
                "give each registrar PSK file `uri: sip:user@domain` (the AOR it belongs to) and an id of its own",
            )
        })?;
        Ok(psks)
    }
}

/// `registrar` subcommands.
#[derive(Debug, Subcommand)]
pub enum RegistrarCommand {
    /// Add or change a user's credentials: the HA1 values of SHA-512-256
    /// and SHA-256 (and MD5 with --allow-md5), never the password.
    Passwd {
        /// The credential file (created if missing; mode 0600).
        #[arg(long, value_name = "FILE")]
        users: PathBuf,
        /// The realm.
        #[arg(long, value_name = "DOMAIN")]
        realm: String,
        /// The address of record (sip:user@domain); its user part is the
        /// Digest username.
        #[arg(long, value_name = "AOR")]
        user: String,
        /// A file holding the password alone.
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
        /// Also keep the MD5 HA1 (for registrars run with --allow-md5).
        #[arg(long)]
        allow_md5: bool,
    },
    /// Write the CRL of the certificates the registrar withdrew (their
    /// bindings removed), signed by the CA: `openssl crl` and `sipseal
    /// verify --crl` read it.
    Crl {
        /// The realm.
        #[arg(long, value_name = "DOMAIN")]
        realm: String,
        /// The issuing CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Hours until the next CRL is due (nextUpdate).
        #[arg(long, value_name = "HOURS", default_value_t = 24)]
        next_update: u32,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Run `registrar`.
pub fn run(args: RegistrarArgs, ctx: &mut Context) -> Result<Exit, Error> {
    if let Some(RegistrarCommand::Passwd {
        users,
        realm,
        user,
        password_file,
        allow_md5,
    }) = args.action
    {
        let password = read_password_file(&password_file)?;
        let mut file = Users::load(&users)?;
        let name = file.set(&realm, &user, &password, allow_md5)?;
        file.save(&users)?;
        eprintln!(
            "{}: {user} (Digest username {name}) in realm {realm}",
            users.display()
        );
        return Ok(Exit::Ok);
    }
    if let Some(RegistrarCommand::Crl {
        realm,
        ca,
        next_update,
        output,
    }) = args.action
    {
        let ca = Ca::load(&ca)?;
        let registry = args.step.state.registry()?.load_realm(&realm)?;
        let now = ctx.now();
        let next = now + time::Duration::hours(i64::from(next_update));
        let pem = sipseal::registrar::crl::crl(&registry, &ca, now, next)?;
        output.write(pem.as_bytes())?;
        let withdrawn = registry
            .certificates
            .iter()
            .filter(|c| c.issued && c.withdrawn.is_some())
            .count();
        eprintln!("CRL of {realm}: {withdrawn} withdrawn certificate(s)");
        return Ok(Exit::Ok);
    }
    let mut s = args.step;
    let (Some(realm), Some(ca), Some(identity), Some(users)) = (
        s.realm.take(),
        s.ca.take(),
        s.identity.take(),
        s.users.take(),
    ) else {
        return Err(Error::usage(
            "registrar needs --realm, --ca, --identity and --users",
            "see `sipseal registrar --help`",
        ));
    };
    let identity = identity_at(&identity)?;
    if identity.cert.recipient_kind().ok() != Some(sipseal::keys::identity::CertKeyKind::Rsa) {
        // Found now, not at the first 200 it would have to sign.
        return Err(Error::usage(
            format!(
                "--identity {}: the registrar signs its answers with RSA, and this key is not RSA",
                identity.cert.source.display()
            ),
            "give the registrar an RSA identity (`sipseal keys generate` makes one by default)",
        ));
    }
    let users = Users::load(&users)?;
    let policy = s
        .policy
        .as_deref()
        .map(sipseal::policy::Policy::load)
        .transpose()
        .map_err(|e| {
            Error::usage(
                e.to_string(),
                "see `man sipseal-proxy` for the --policy YAML format",
            )
        })?;
    let store = s.state.registry()?;
    let ca = issuer(&s, &ca, &identity)?;
    let psks = s.psks()?;
    if !s.listen.is_empty() {
        return serve(s, realm, ca, identity, users, policy, psks, store, ctx);
    }
    let anchors = s.anchors()?;
    let forward = s.forward()?;
    let registrar = Registrar {
        realm: &realm,
        ca: ca.as_ref(),
        identity: &identity,
        users: &users,
        store: store.as_ref(),
        max_expires: s.max_expires,
        algorithms: &s.algorithms(),
        own: &s.own_names(&[]),
        nonce_lifetime: s.nonce_lifetime,
        policy: policy.as_ref(),
        trusted: sipseal::registrar::Trusted {
            peer: None,
            anchors: &anchors,
            require_signed_queries: s.require_signed_queries,
            forward: forward
                .as_ref()
                .map(|f| f as &dyn sipseal::registrar::Forward),
        },
        psks: &psks,
    };
    let request = read_message(&s.input)?;
    let handled = registrar.handle(&request, s.source.as_deref(), ctx)?;
    s.output.write(&handled.response.to_bytes())?;
    Ok(match handled.outcome {
        Outcome::Registered {
            aor,
            expires,
            certificate,
        } => {
            match certificate {
                Some(serial) => {
                    eprintln!("registered {aor} for {expires} s; certificate {serial} issued")
                }
                None => eprintln!("registered {aor} for {expires} s"),
            }
            Exit::Ok
        }
        Outcome::Found { aor, serial } => {
            eprintln!("certificate {serial} of {aor}");
            Exit::Ok
        }
        Outcome::FoundKey { aor, sha256 } => {
            eprintln!("key {sha256} of {aor}");
            Exit::Ok
        }
        Outcome::Forwarded {
            aor,
            domain,
            status,
        } => {
            eprintln!("{status}: forwarded; the registrar of {domain} answered for {aor}");
            if (200..300).contains(&status) {
                Exit::Ok
            } else {
                Exit::SipError
            }
        }
        Outcome::Removed { aor } => {
            eprintln!("removed the bindings of {aor}; its certificates are withdrawn");
            Exit::Ok
        }
        Outcome::Challenged { stale } => {
            eprintln!(
                "401: challenged{}",
                if stale { " (stale nonce)" } else { "" }
            );
            Exit::SipError
        }
        Outcome::Refused { code, why } => {
            eprintln!("{}: {why}", code.code());
            Exit::SipError
        }
        Outcome::Alive => {
            eprintln!("200: an OPTIONS keep-alive");
            Exit::Ok
        }
    })
}

/// The registrar's CA: the directory `--ca` names, or the `sipseal ca`
/// at `--ca tls:HOST:PORT`.
fn issuer(
    s: &StepArgs,
    ca: &Path,
    identity: &sipseal::keys::Identity,
) -> Result<Box<dyn Issuer>, Error> {
    let Some(at) = ca.to_str().filter(|c| c.starts_with("tls:")) else {
        if s.ca_cert.is_some() {
            return Err(Error::usage(
                "--ca-cert is for a remote CA (--ca tls:HOST:PORT)",
                "a CA directory has its certificate in cert.pem: leave --ca-cert out",
            ));
        }
        return Ok(Box::new(Ca::load(ca)?));
    };
    remote_issuer(s, at, identity)
}

#[cfg(feature = "live")]
fn remote_issuer(
    s: &StepArgs,
    at: &str,
    identity: &sipseal::keys::Identity,
) -> Result<Box<dyn Issuer>, Error> {
    let Some(ca_cert) = &s.ca_cert else {
        return Err(Error::usage(
            format!("--ca {at} needs the remote CA's certificate"),
            "give --ca-cert FILE (the CA's cert.pem)",
        ));
    };
    if s.trust.is_empty() {
        return Err(Error::usage(
            format!("--ca {at}: the CA's TLS certificate is checked against trust anchors"),
            "give --trust FILE",
        ));
    }
    let ca = Cert::load(ca_cert)?;
    sipseal::registrar::ca::remote(at, &s.hosts()?, identity, &s.anchors()?, ca)
        .map(|r| Box::new(r) as Box<dyn Issuer>)
        .map_err(|e| {
            Error::usage(
                e.to_string(),
                "--ca tls:HOST:PORT, with --identity and --trust",
            )
        })
}

#[cfg(not(feature = "live"))]
fn remote_issuer(
    _: &StepArgs,
    at: &str,
    _: &sipseal::keys::Identity,
) -> Result<Box<dyn Issuer>, Error> {
    Err(Error::usage(
        format!("--ca {at}: this sipseal was built without live operation"),
        "build with the default features (`live`), or give a CA directory",
    ))
}

/// `registrar --listen`: the same workflow on the wire.
#[cfg(feature = "live")]
#[allow(clippy::too_many_arguments)]
fn serve(
    s: StepArgs,
    realm: String,
    ca: Box<dyn Issuer>,
    identity: sipseal::keys::Identity,
    users: Users,
    policy: Option<sipseal::policy::Policy>,
    psks: Vec<sipseal::keys::Psk>,
    store: Box<dyn sipseal::registrar::store::RegistrarStore + Send + Sync>,
    ctx: &mut Context,
) -> Result<Exit, Error> {
    use crate::live::{Counted, bind, describe, listen_addr, runtime};
    use sipseal::net::live::ServerConfig;
    crate::live::init_log();
    use sipseal::registrar::serve::LiveRegistrar;
    use std::sync::Arc;

    let listen = s
        .listen
        .iter()
        .map(|l| listen_addr(l))
        .collect::<Result<Vec<_>, _>>()?;
    let trust = s.anchors()?;
    let tls = if listen
        .iter()
        .any(|(t, _)| *t == sipseal::net::Transport::Tls)
    {
        if s.trust.is_empty() {
            return Err(Error::usage(
                "a tls listener checks client certificates against trust anchors",
                "give --trust FILE",
            ));
        }
        let setup = sipseal::net::tls::TlsSetup::new(Some(&identity), &trust)
            .map_err(|e| Error::usage(e.to_string(), "check --identity and --trust"))?;
        Some(Arc::new(setup))
    } else {
        None
    };
    let service = Arc::new(LiveRegistrar {
        realm: realm.clone(),
        ca,
        identity,
        users,
        store,
        max_expires: s.max_expires,
        algorithms: s.algorithms(),
        nonce_lifetime: s.nonce_lifetime,
        policy,
        psks,
        ctx: std::sync::Mutex::new(ctx.fork()),
        own: std::sync::RwLock::new(s.own_names(&[])),
        transactions: Default::default(),
        queries: sipseal::registrar::serve::LiveQueries {
            anchors: trust,
            require_signed: s.require_signed_queries,
            forward: s.forward()?,
        },
    });
    let counted = Arc::new(Counted::new(Arc::clone(&service) as _, s.max_requests));
    runtime()?.block_on(async move {
        let config = ServerConfig {
            listen,
            tls,
            max_message: crate::relay::max_message(),
            ..ServerConfig::default()
        };
        let server = bind(config, Arc::clone(&counted) as _).await?;
        let bound: Vec<std::net::SocketAddr> =
            server.local_addrs().iter().map(|(_, a)| *a).collect();
        *service.own.write().unwrap_or_else(|e| e.into_inner()) = s.own_names(&bound);
        eprintln!(
            "registrar of {realm} listening on {}",
            describe(server.local_addrs())
        );
        crate::live::serve(server, counted.done(), || Ok(()), None).await?;
        Ok(Exit::Ok)
    })
}

#[cfg(not(feature = "live"))]
#[allow(clippy::too_many_arguments)]
fn serve(
    _: StepArgs,
    _: String,
    _: Box<dyn Issuer>,
    _: sipseal::keys::Identity,
    _: Users,
    _: Option<sipseal::policy::Policy>,
    _: Vec<sipseal::keys::Psk>,
    _: Box<dyn sipseal::registrar::store::RegistrarStore + Send + Sync>,
    _: &mut Context,
) -> Result<Exit, Error> {
    Err(Error::usage(
        "this sipseal was built without live operation",
        "build with the default features (`live`)",
    ))
}

/// `register`: build a REGISTER, its authorized retry, or install the
/// certificate a 200 OK carries.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The address of record (From and To).
    #[arg(long, value_name = "AOR", required_unless_present = "accept")]
    pub uri: Option<String>,
    /// The Contact to bind.
    #[arg(long, value_name = "URI")]
    pub contact: Option<String>,
    /// The registration interval asked for, in seconds (0 removes).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub expires: u32,
    /// Remove every binding (Contact: *, Expires: 0).
    #[arg(long, conflicts_with_all = ["contact", "csr", "cert"])]
    pub remove_all: bool,
    /// A PUBLISH (the simplified CA) instead of a REGISTER: a certificate
    /// for the CSR, valid for --expires, no binding. Sent over mutual TLS
    /// with the AOR's own client certificate (`send --identity`), it may
    /// carry --cert or --public-key instead, and needs no Digest.
    #[arg(long, conflicts_with_all = ["contact", "remove_all"])]
    pub publish: bool,
    /// With --publish: a bare public key to publish (PEM `PUBLIC KEY`, as
    /// `openssl pkey -pubout` writes, or DER), sent as
    /// application/x-sipseal-spki; the registrar certifies it and keeps
    /// it for trusted requesters (`certquery --key`).
    #[arg(long, value_name = "FILE", requires = "publish", conflicts_with_all = ["csr", "cert"])]
    pub public_key: Option<PathBuf>,
    /// A certificate request to send (PEM or DER): the registrar issues.
    #[arg(long, value_name = "FILE", conflicts_with = "cert")]
    pub csr: Option<PathBuf>,
    /// An existing certificate to register as it is.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The identity: with --uri, a request for its key is made and sent;
    /// with --accept, where the certificate is installed.
    #[arg(long, value_name = "DIR")]
    pub identity: Option<PathBuf>,
    /// Seal the body (the CSR or certificate) as AuthEnvelopedData: for
    /// the registrar, whose certificate CERT is; under a PSK the
    /// registrar holds for this AOR (psk:FILE, a PSK file); or under the
    /// user's password (password:FILE, the file holding it alone, as
    /// --password-file): sealed under its SHA-512-256 Digest HA1 for the
    /// AOR's domain as realm, which the registrar holds. The 200 comes
    /// back sealed for the new certificate's key and under the same PSK
    /// or password: give the same --seal-for to --accept.
    #[arg(long, value_name = "CERT|psk:FILE|password:FILE", value_parser = parse_seal_for)]
    pub seal_for: Option<SealFor>,
    /// The Request-URI (default: the AOR's domain).
    #[arg(long, value_name = "URI")]
    pub registrar: Option<String>,
    /// The 401 the last REGISTER got: build the authorized retry (same
    /// Call-ID and From tag, CSeq + 1).
    #[arg(long, value_name = "FILE", requires = "password_file")]
    pub challenge: Option<PathBuf>,
    /// The password (a file holding it alone).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The 200 OK the registrar answered: check its signature, open it
    /// when sealed (with the identity's key, or the --seal-for PSK or
    /// password), check the certificate, and install it as the
    /// identity's cert.pem.
    #[arg(long, value_name = "FILE", requires_all = ["identity", "trust"])]
    pub accept: Option<PathBuf>,
    /// Trust anchors for the registrar's signature and the certificate.
    #[arg(long, value_name = "PEM|DIR")]
    pub trust: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What `register --seal-for` seals the body for.
#[derive(Debug, Clone)]
pub enum SealFor {
    /// The registrar's certificate.
    Cert(PathBuf),
    /// A PSK file.
    Psk(PathBuf),
    /// A file holding the user's password.
    Password(PathBuf),
}

fn parse_seal_for(s: &str) -> Result<SealFor, String> {
    let empty = |what: &str| format!("name the file after {what}: ({what}:FILE)");
    if let Some(f) = s.strip_prefix("psk:") {
        return (!f.is_empty())
            .then(|| SealFor::Psk(f.into()))
            .ok_or_else(|| empty("psk"));
    }
    if let Some(f) = s.strip_prefix("password:") {
        return (!f.is_empty())
            .then(|| SealFor::Password(f.into()))
            .ok_or_else(|| empty("password"));
    }
    Ok(SealFor::Cert(s.into()))
}

impl SealFor {
    /// The recipient a REGISTER for `aor` is sealed for, or the key its
    /// sealed 200 opens with (a certificate: none here).
    fn recipient(&self, aor: &str) -> Result<sipseal::envelope::Recipient, Error> {
        use sipseal::envelope::Recipient;
        Ok(match self {
            SealFor::Cert(c) => Recipient::Cert(Box::new(Cert::load(c)?)),
            SealFor::Psk(f) => Recipient::Psk(load_psk(f)?),
            SealFor::Password(f) => Recipient::Password(registration_password(aor, f)?),
        })
    }
}

/// The password a registration of `aor` is sealed under, from the file
/// holding the user's password: its HA1 ([`sealed::registration_password`]).
fn registration_password(aor: &str, file: &Path) -> Result<sipseal::keys::Password, Error> {
    let password = read_password_file(file)?;
    let realm = sealed::realm_of(aor).ok_or_else(|| {
        Error::usage(
            format!("{aor:?} has no domain to take the realm from"),
            "give --uri sip:user@domain",
        )
    })?;
    Ok(sealed::registration_password(aor, realm, &password)?)
}

/// Run `register`.
pub fn register(args: RegisterArgs, ctx: &mut Context) -> Result<Exit, Error> {
    if let Some(accept) = &args.accept {
        return accept_certificate(&args, accept, ctx);
    }
    let aor = args.uri.clone().unwrap_or_default();
    let domain = aor
        .split_once('@')
        .map(|(_, d)| d.split([';', '>']).next().unwrap_or(d).to_owned())
        .ok_or_else(|| {
            Error::usage(
                format!("{aor:?} is not an AOR"),
                "give --uri sip:user@domain",
            )
        })?;
    let method = if args.publish { "PUBLISH" } else { "REGISTER" };
    // RFC 3903: a PUBLISH goes to the AOR it publishes for.
    let request_uri = args.registrar.clone().unwrap_or_else(|| {
        if args.publish {
            aor.clone()
        } else {
            format!("sip:{domain}")
        }
    });
    let body = if let Some(key) = &args.public_key {
        let bytes = crate::io::read_input(key)?;
        let der = pem_or_der(&bytes, "PUBLIC KEY");
        <x509_cert::spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&der).map_err(
            |e| {
                Error::usage(
                    format!("{}: not a public key ({e})", key.display()),
                    "give a PEM PUBLIC KEY (openssl pkey -in KEY -pubout) or its DER",
                )
            },
        )?;
        Some(Body {
            content_type: sipseal::registrar::SPKI_TYPE.into(),
            bytes: der,
        })
    } else if let Some(csr) = &args.csr {
        let bytes = crate::io::read_input(csr)?;
        Some(Body {
            content_type: "application/pkcs10".into(),
            bytes: pem_or_der(&bytes, "CERTIFICATE REQUEST"),
        })
    } else if let Some(cert) = &args.cert {
        let cert = Cert::load(cert)?;
        Some(Body {
            content_type: "application/pkix-cert".into(),
            bytes: der::Encode::to_der(&cert.cert)
                .map_err(|e| KeyError::Generate(e.to_string()))?,
        })
    } else if let (Some(identity), false) = (&args.identity, args.remove_all) {
        let path = identity.join("key.pem");
        let key = SigningKey::from_key(&private_key_at(&path)?, &path)?;
        let csr = make_csr(&key, subject_for(&aor)?, std::slice::from_ref(&aor), &[])?;
        Some(Body {
            content_type: "application/pkcs10".into(),
            bytes: der::Encode::to_der(&csr).map_err(|e| KeyError::Generate(e.to_string()))?,
        })
    } else {
        None
    };
    let mut params = RequestParams {
        method: method.into(),
        from: aor.clone(),
        to: aor.clone(),
        request_uri: Some(request_uri.clone()),
        contact: if args.remove_all {
            None
        } else {
            args.contact.clone()
        },
        headers: vec![(
            "Expires".into(),
            if args.remove_all {
                "0".into()
            } else {
                args.expires.to_string()
            },
        )],
        body,
        ..Default::default()
    };
    if args.publish {
        params.headers.push(("Event".into(), "certificate".into()));
    }
    let mut authorize = None;
    if let (Some(challenge), Some(password)) = (&args.challenge, &args.password_file) {
        let c = read_message(challenge)?;
        if c.status() != Some(401) {
            return Err(Error::usage(
                format!("{} is not a 401 response", challenge.display()),
                "give the 401 Unauthorized the last REGISTER got",
            ));
        }
        let www = c.header("WWW-Authenticate").ok_or_else(|| {
            Error::usage(
                "the 401 has no WWW-Authenticate",
                "give the registrar's 401 response as it came",
            )
        })?;
        params.call_id = Some(
            c.call_id()
                .map_err(sipseal::sip::compose::ComposeError::from)?
                .to_owned(),
        );
        params.cseq = Some(
            c.cseq()
                .map_err(sipseal::sip::compose::ComposeError::from)?
                .seq
                + 1,
        );
        params.from = c.header("From").unwrap_or(&aor).to_owned();
        let username = username_of(&aor).ok_or_else(|| {
            Error::usage(
                format!("{aor:?} has no user part"),
                "give --uri sip:user@domain",
            )
        })?;
        let password = read_password_file(password)?;
        let cnonce = hex::encode(ctx.bytes(8));
        // Its place now, its value once the body is final (sealed or
        // not): with auth-int the digest covers the body.
        params
            .headers
            .push(("Authorization".into(), "Digest".into()));
        authorize = Some((www.to_owned(), username.to_owned(), password, cnonce));
    }
    let mut msg = build_request(&params, ctx)?;
    if let Some(to) = &args.seal_for {
        let spec = sipseal::sealing::SealSpec {
            peers: vec![to.recipient(&aor)?],
            ..Default::default()
        };
        msg = sipseal::sealing::seal_message(&msg, &spec, ctx)
            .map_err(|err| Error::Seal {
                name: "the REGISTER".into(),
                err,
            })?
            .message;
    }
    if args.remove_all {
        // RFC 3261 §10.2.2: Contact: * alone, with Expires: 0.
        msg.remove_headers("Contact");
        let at = msg.before_body_headers();
        msg.insert_header(at, "Contact", "*");
    }
    if let Some((www, username, password, cnonce)) = authorize {
        let auth = digest::answer(
            &www,
            &username,
            &password,
            method,
            &request_uri,
            msg.body(),
            &cnonce,
        )
        .map_err(|e| {
            Error::usage(
                e.to_string(),
                "give the registrar's 401 response as it came",
            )
        })?;
        msg.set_header("Authorization", &auth);
    }
    args.output.write(&msg.to_bytes())?;
    Ok(Exit::Ok)
}

/// The DER of a PEM block with `label`, or the bytes as they are.
fn pem_or_der(bytes: &[u8], label: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    match der::pem::decode_vec(text.trim().as_bytes()) {
        Ok((l, der)) if l.ends_with(label) => der,
        _ => bytes.to_vec(),
    }
}

fn accept_certificate(
    args: &RegisterArgs,
    accept: &Path,
    ctx: &mut Context,
) -> Result<Exit, Error> {
    let refuse = |why: String| {
        Error::usage(
            why,
            "give the registrar's 200 OK to this REGISTER, and --trust with the registrar's CA",
        )
    };
    let (Some(dir), Some(trust)) = (&args.identity, &args.trust) else {
        return Err(refuse("--accept needs --identity and --trust".into()));
    };
    let response = read_message(accept)?;
    if response.status() != Some(200) {
        return Err(refuse(format!("{} is not a 200 OK", accept.display())));
    }
    let anchors = Cert::load_tree(trust)?;
    let outer =
        enrol::signed_by_registrar(&response, &anchors).map_err(|e| refuse(e.to_string()))?;
    let key = private_key_at(&dir.join("key.pem"))?;
    let issued = issued_for(args, &outer.payload, &key, &response, &anchors, ctx)?;
    let path = enrol::install(dir, &issued)?;
    eprintln!("installed {} ({})", path.display(), issued.cert.name());
    Ok(Exit::Ok)
}

/// The certificate of the registrar's 200 OK (`payload`, its signature
/// checked): its certs-only body opened when it came sealed, with `key`
/// (known by the SubjectKeyIdentifier of its public key, as the
/// registrar's CA names the certificate it issues), the identity's
/// cert.pem when there is one, and the --seal-for PSK or password. A
/// REGISTER sealed (--seal-for) gets a sealed 200: an unsealed one is
/// refused.
fn issued_for(
    args: &RegisterArgs,
    payload: &sipseal::mime::Part,
    key: &sipseal::keys::PrivateKey,
    response: &Message,
    anchors: &[Cert],
    ctx: &mut Context,
) -> Result<enrol::Issued, Error> {
    use sipseal::envelope::{Recipient, RecipientKey};
    let refuse = |why: String| {
        Error::usage(
            why,
            "give the registrar's 200 OK to this REGISTER, and --trust with the registrar's CA",
        )
    };
    let aor = response.aor("To").unwrap_or_default().to_owned();
    let ski = enrol::ski_of_key(key);
    let own_cert = args
        .identity
        .as_ref()
        .map(|d| d.join("cert.pem"))
        .filter(|p| p.is_file())
        .map(|p| Cert::load(&p))
        .transpose()?;
    let extra = match &args.seal_for {
        Some(s @ (SealFor::Psk(_) | SealFor::Password(_))) => Some(s.recipient(&aor)?),
        _ => None,
    };
    let mut keys = Vec::new();
    if !ski.is_empty() {
        keys.push(RecipientKey::Own { ski: &ski, key });
    }
    if let Some(cert) = &own_cert {
        keys.push(RecipientKey::Cert { cert, key });
    }
    match &extra {
        Some(Recipient::Psk(p)) => keys.push(RecipientKey::Psk(p)),
        Some(Recipient::Password(p)) => keys.push(RecipientKey::Password(p)),
        _ => {}
    }
    let issued =
        enrol::issued(response, payload, key, &keys, anchors, ctx.rng()).map_err(|e| match e {
            enrol::EnrolError::Sealed(err) => Error::Seal {
                name: "the 200 OK".into(),
                err,
            },
            enrol::EnrolError::Key(k) => k.into(),
            other => refuse(other.to_string()),
        })?;
    if args.seal_for.is_some() && !issued.sealed {
        return Err(Error::usage(
            "the 200 OK is not sealed, though the REGISTER was (--seal-for)",
            "the registrar seals its 200 to a sealed REGISTER: give the 200 that answered this REGISTER",
        ));
    }
    Ok(issued)
}

/// The file `certquery --accept` stores `aor`'s certificate in, without
/// `.pem` (L4): one name per AOR, never another's. A `sip:` AOR is its
/// user@host with every byte outside `A-Z a-z 0-9 . @ + -` written `%XX`
/// (`alice@a.example.com`); another scheme goes first with `~`
/// (`sips~alice@a.example.com`); a name over 150 characters is cut there
/// and ends in `~` and 16 hex digits of the AOR's SHA-256.
pub fn cert_file_name(aor: &str) -> String {
    use sha2::Digest;
    let (scheme, rest) = aor.split_once(':').unwrap_or(("", aor));
    let mut name = match scheme.to_ascii_lowercase().as_str() {
        "sip" => String::new(),
        other => format!("{}~", encode_name(other)),
    };
    name.push_str(&encode_name(rest));
    if name.len() > 150 {
        let mut cut = 150;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        let digest = sha2::Sha256::digest(aor.as_bytes());
        name.push('~');
        name.push_str(&hex::encode(&digest[..8]));
    }
    name
}

fn encode_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'+' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `certquery`: ask the registrar for an AOR's certificate, or whether a
/// certificate is still valid; then check and store its answer.
#[derive(Debug, Args)]
pub struct CertqueryArgs {
    /// The address of record asked about.
    #[arg(long, value_name = "AOR", required_unless_present = "accept")]
    pub uri: Option<String>,
    /// Who asks (From); default an anonymous URI (RFC 3261 §8.1.1.3).
    #[arg(long, value_name = "AOR")]
    pub from: Option<String>,
    /// Ask whether this certificate (a file) is still valid, by its
    /// SHA-256 fingerprint.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Sign the query with this identity (cert.pem + key.pem): the outer
    /// signature `sipseal sign` writes, over From, To, Call-ID, CSeq,
    /// Date and a body (application/x-sipseal-certquery) repeating the
    /// query's Accept and Certificate-Query. From is the identity's AOR unless --from says
    /// otherwise (the registrar wants the signer to be the From AOR). A
    /// signed query is answered with the AOR's location too (Contact,
    /// when the registrar's policy lets the signer reach the AOR).
    #[arg(long, value_name = "DIR")]
    pub sign: Option<PathBuf>,
    /// Ask for the AOR's bare public key (application/x-sipseal-spki, a
    /// DER SubjectPublicKeyInfo) instead of its certificate: the
    /// registrar gives it only to a requester it trusts (a signed query,
    /// or mutual TLS as the From AOR) whom its policy lets reach the AOR.
    /// With --accept: store the key (`NAME.pub.pem`) instead.
    #[arg(long, conflicts_with = "cert")]
    pub key: bool,
    /// The registrar's answer: a 200's signature and certificate (or key)
    /// checked and stored in --out; a 404 or another refusal (495, 403,
    /// 504, with its Warning) said, exit 5.
    #[arg(long, value_name = "FILE", requires_all = ["trust", "out"])]
    pub accept: Option<PathBuf>,
    /// Trust anchors for the registrar's signature and the certificate.
    #[arg(long, value_name = "PEM|DIR")]
    pub trust: Option<PathBuf>,
    /// Where --accept stores the certificate (`alice@a.example.com.pem`:
    /// the AOR without `sip:`, bytes other than letters, digits and
    /// `.@+-` as `%XX`, another scheme first with `~`), a directory
    /// `seal --certs` takes.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Run `certquery`.
pub fn certquery(args: CertqueryArgs, ctx: &mut Context) -> Result<Exit, Error> {
    use sipseal::registrar::ask::{self, AskError, Query};
    if let Some(accept) = &args.accept {
        return accept_query(&args, accept, ctx);
    }
    let fingerprint = match &args.cert {
        Some(cert) => {
            use sha2::Digest;
            let cert = Cert::load(cert)?;
            let der =
                der::Encode::to_der(&cert.cert).map_err(|e| KeyError::Generate(e.to_string()))?;
            Some(sha2::Sha256::digest(&der).into())
        }
        None => None,
    };
    let identity = args
        .sign
        .as_deref()
        .map(crate::args::load_identity)
        .transpose()?;
    let query = Query {
        aor: args.uri.clone().unwrap_or_default(),
        from: args.from.clone(),
        fingerprint,
        key: args.key,
    };
    let msg = ask::request(&query, identity.as_ref(), ctx).map_err(|e| match e {
        AskError::NoFrom => Error::usage(
            "the --sign identity's certificate names no SIP URI",
            "give --from AOR, or an identity whose certificate has a SAN URI",
        ),
        AskError::Compose(e) => e.into(),
        AskError::Sign(err) => Error::Signing {
            name: "the query".into(),
            err,
        },
        other => Error::usage(other.to_string(), "check --uri and --from"),
    })?;
    args.output.write(&msg.to_bytes())?;
    Ok(Exit::Ok)
}

fn accept_query(args: &CertqueryArgs, accept: &Path, ctx: &mut Context) -> Result<Exit, Error> {
    use sipseal::registrar::ask::{self, AskError, Found};
    let refuse = |why: String| {
        Error::usage(
            why,
            "give the registrar's answer to a certquery OPTIONS, and --trust with its CA",
        )
    };
    let (Some(trust), Some(out)) = (&args.trust, &args.out) else {
        return Err(refuse("--accept needs --trust and --out".into()));
    };
    let response = read_message(accept)?;
    let aor = response.aor("To").unwrap_or_default().to_owned();
    // Refusals are said before the anchors are read (a 404 needs none).
    if response.status() != Some(200) {
        return match ask::accept(&response, &aor, &[], ctx.now()) {
            Err(e @ (AskError::NotFound(_) | AskError::Refused { .. })) => {
                eprintln!("{e}");
                Ok(Exit::SipError)
            }
            Err(e) => Err(refuse(e.to_string())),
            Ok(_) => Err(refuse("an answer that is not a 200".into())),
        };
    }
    let anchors = Cert::load_tree(trust)?;
    let answer = match ask::accept(&response, &aor, &anchors, ctx.now()) {
        Ok(answer) => answer,
        // H4: over UDP the registrar sends nothing larger than three
        // times the query to a source it has not verified.
        Err(AskError::NoBody) => {
            return Err(Error::usage(
                format!(
                    "{}: a 200 without its body (the certificate)",
                    accept.display()
                ),
                "over UDP the registrar leaves out a body over 3 times the query: send it over TCP or TLS (sipseal send --next tcp:HOST:PORT)",
            ));
        }
        Err(AskError::Key(e)) => return Err(e.into()),
        Err(e) => return Err(refuse(e.to_string())),
    };
    std::fs::create_dir_all(out).map_err(|source| KeyError::Write {
        path: out.clone(),
        source,
    })?;
    let name = cert_file_name(&aor);
    let (path, pem, what) = match &answer.found {
        Found::Key(spki) => {
            let pem = der::EncodePem::to_pem(spki.as_ref(), der::pem::LineEnding::LF)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            (
                out.join(format!("{name}.pub.pem")),
                pem,
                format!("the key of {aor}"),
            )
        }
        Found::Cert(_) if args.key => {
            return Err(refuse(
                "the answer carries a certificate, not the key asked for".into(),
            ));
        }
        Found::Cert(cert) => {
            let pem = der::EncodePem::to_pem(&cert.cert, der::pem::LineEnding::LF)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            (out.join(format!("{name}.pem")), pem, cert.name())
        }
    };
    sipseal::fsio::write_atomic(&path, pem.as_bytes(), false).map_err(|source| {
        KeyError::Write {
            path: path.clone(),
            source,
        }
    })?;
    eprintln!("stored {} ({what})", path.display());
    // Where the AOR is and until when (checked against the signed
    // sipfrag before anything was stored).
    for contact in &answer.contacts {
        eprintln!("located at {contact}");
    }
    if let Some(expires) = response.header("Expires") {
        eprintln!("registration expires in {} s", expires.trim());
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::cert_file_name;

    /// L4: `sip:a/b`, `sip:a_b` and the `sips:` form overwrote each
    /// other, and a 300-character user part could not be stored.
    #[test]
    fn certquery_file_names_are_one_per_aor_and_short() {
        let aors = [
            "sip:a/b@x.example",
            "sip:a_b@x.example",
            "sip:a%2Fb@x.example",
            "sips:a_b@x.example",
            "sip:sips:a_b@x.example",
            "sip:alice@a.example.com",
        ];
        let names: Vec<String> = aors.iter().map(|a| cert_file_name(a)).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names[5], "alice@a.example.com", "the readable form stays");
        assert!(
            names
                .iter()
                .all(|n| !n.contains('/') && !n.starts_with('.'))
        );
        let long = format!("sip:{}@x.example", "u".repeat(300));
        let other = format!("sip:{}v@x.example", "u".repeat(300));
        let (a, b) = (cert_file_name(&long), cert_file_name(&other));
        assert!(a.len() <= 170 && a != b, "{a} {b}");
    }
}
