//! `sipseal proxy`: one relay step (docs/SPEC.md §4): decide, open if designated,
//! report, forward, or answer with a SIP error response. Also the flags
//! `proxy` and `reencrypt` share.

use std::path::{Path, PathBuf};

use clap::Args;

use sipseal::context::Context;
use sipseal::firewall::{Firewall, Nft};
use sipseal::keys::{Cert, Identity, Psk};
use sipseal::pinhole::{PinholeFormat, PinholeLimits};
use sipseal::policy::{Bindings, Policy, PolicyError};
use sipseal::relay::{
    Mode, Outcome, PathOptions, ProxyOptions, RelayError, RelayKeys, RelayOptions, RelayReport,
    RelayState, answer_unparsable, relay,
};
use sipseal::sdp::SdpEdit;
use sipseal::sip::Message;
use sipseal::sip::route_security::EntryForm;
use sipseal::state::PinholeStore;

use crate::args::{StateArgs, load_identity, say_stored};
use crate::args::{load_anchors, load_psk};
use crate::error::{Error, Exit};
use crate::io::Format;
use crate::io::{display_name, read_input, render, warn_discarded, write_file, write_output};

/// What every relay command on files takes: the message, the relay's
/// keys and behaviour ([`RelayCommon`]), the report and the output.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The SIP request or response arriving at this relay (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    #[command(flatten)]
    pub common: RelayCommon,
    /// Write the disclosure report here (mode 0600: it may hold SRTP keys);
    /// `-` writes it to standard output (then give the message -o FILE).
    #[arg(long, value_name = "FILE|-")]
    pub report: Option<PathBuf>,
    /// Format of --report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub report_format: Format,
    /// Write the forwarded message (or the error response) here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write firewall pinholes for the call's media here: from the offer,
    /// then offer and answer; a BYE writes the deletions. Needs the state
    /// directory to remember the offer.
    #[arg(long, value_name = "FILE")]
    pub pinholes: Option<PathBuf>,
    /// The security level (0 none, 1 authenticated peer, 2 + integrity,
    /// 3 + confidentiality) of the link this relay sends on: requests get
    /// `Route-Security: SENT-BY;level=N` on top of their entries; a
    /// response whose entry at this relay's position is not that one is
    /// dropped (exit 1; a response cannot be answered).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=3))]
    pub link_level: Option<u8>,
    /// Where the message came from (HOST[:PORT]): the top Route-Security
    /// entry must name it (else the relay puts `ADDR` without a level on
    /// top: an unchecked link, counted as level 0, and the report says
    /// so); --bindings checks the From AOR against it.
    #[arg(long, value_name = "ADDR")]
    pub received_from: Option<String>,
}

/// What `proxy`, `reencrypt` and the live `relay` share: this relay's
/// keys, its Via, SDP edits, the path checks and the session store.
#[derive(Debug, Args)]
pub struct RelayCommon {
    /// This relay's identity directory (cert.pem + key.pem). The key is
    /// read only when a RecipientInfo is addressed to it. A relay that
    /// holds PSKs only may leave it out (then its name is its first PSK's
    /// `uri`, and a 496 carries no certificate).
    #[arg(long, value_name = "DIR", required_unless_present = "psk")]
    pub identity: Option<PathBuf>,
    /// A PSK this relay shares with a user agent (YAML: id, key, uri); repeatable.
    #[arg(long, value_name = "FILE")]
    pub psk: Vec<PathBuf>,
    /// This relay's Via sent-by and Record-Route host, and (`relay`) its Path entries' (default:
    /// `proxy`, the host of its certificate's SAN URI; `relay`, the address of the listener a
    /// message leaves on). Over TLS give the name its certificate carries: a peer that opens a
    /// connection to a Record-Route or Path IP later checks the certificate against that IP.
    #[arg(long, value_name = "HOST:PORT")]
    pub via: Option<String>,
    /// Edit the SDP (media relay): rewrite every c= address. Only with
    /// access=modify; the body is then sealed again with a fresh CEK.
    #[arg(long, value_name = "ADDR")]
    pub set_connection: Option<String>,
    /// Edit the SDP: set the port of a media stream, by index or type
    /// (e.g. audio=40000 or 1=40002); repeatable. Only with access=modify.
    #[arg(long, value_name = "STREAM=PORT", value_parser = SdpEdit::port_arg)]
    pub set_port: Vec<SdpEdit>,
    /// Format of --pinholes: an nftables script (set elements of table
    /// `inet sipseal`, for `nft -f`) or JSON.
    #[arg(long, value_enum, default_value_t = PinholeFormat::Nft)]
    pub pinhole_format: PinholeFormat,
    /// Originator imposture check: YAML of AOR -> source addresses; a
    /// request whose From AOR is not bound to --received-from is answered
    /// 403 Forbidden (exit 5).
    #[arg(long, value_name = "FILE")]
    pub bindings: Option<PathBuf>,
    /// Originator imposture check from a registrar's state directory: the
    /// bindings registered now (`sipseal registrar`), each AOR bound to
    /// where its REGISTER came from (else its Contact). With --bindings,
    /// both count.
    #[arg(long, value_name = "DIR")]
    pub registrations: Option<PathBuf>,
    /// Connectivity policy: YAML allow-list of {from, to} AOR patterns; a
    /// denied request is answered 404 Not Found, exactly as an unknown
    /// target (exit 5).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Answer a request whose weakest Route-Security link is below this
    /// level (0-3; an entry without a level counts as 0) with 403 and a
    /// `Warning: 399` naming that link, instead of forwarding it (exit 5).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=3))]
    pub min_route_level: Option<u8>,
    /// The form of the Route-Security entries this relay writes: `bare`
    /// (`ADDR;level=N`, the design's) or `name-addr` (`<sip:ADDR>;level=N`,
    /// what sipseal wrote before). Both forms are read either way.
    #[arg(long, value_enum, value_name = "FORM", default_value_t = RouteSecurityForm::Bare)]
    pub route_security_form: RouteSecurityForm,
    /// Answer 495 Signature Required to a request without a signature, and
    /// 403 to one whose outer signature does not verify or whose signer
    /// is not its From party, chained to a --signer-trust anchor (exit 5).
    #[arg(long, requires = "signer_trust")]
    pub require_signature: bool,
    /// Open EnvelopedData (CBC, no integrity). Without it a CBC body is
    /// forwarded unchanged, as by a relay that is not designated; with it,
    /// one that does not open is forwarded unchanged too, so that nothing
    /// this relay sends depends on the padding (no padding oracle).
    #[arg(long)]
    pub allow_cbc: bool,
    /// Trust anchors for signers (PEM/DER file or directory): a signature counts as its
    /// From or To party's only when the signer chains to one and names the
    /// party (for --require-signature, pinholes, the session cap and BYE);
    /// without it no signature counts (anyone can make a certificate
    /// naming any AOR).
    #[arg(long, value_name = "PEM|DIR")]
    pub signer_trust: Vec<PathBuf>,
    /// Pinholes only to addresses inside this network (e.g. 198.51.100.0/24);
    /// repeatable. Loopback, multicast, broadcast, link-local and
    /// unspecified addresses and port 0 never get one.
    #[arg(long, value_name = "CIDR")]
    pub pinhole_allow: Vec<ipnet::IpNet>,
    /// Media streams per call that get pinholes, at most.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub pinhole_max_streams: usize,
    /// Apply each pinhole change to the firewall and forward the message
    /// only once it is confirmed: `nft` runs one `nft -f` transaction per
    /// change. A change that fails is answered 500 with a Warning (a
    /// response is dropped) and nothing of it is kept. Needs root
    /// (CAP_NET_ADMIN) and a chain that uses the sets (see the guide).
    #[arg(long, value_enum, value_name = "KIND")]
    pub firewall: Option<FirewallKind>,
    /// The nft program --firewall nft runs.
    #[arg(long, value_name = "PATH", default_value = "nft")]
    pub nft: PathBuf,
    /// With --firewall: end a call whose BYE never came this long after
    /// its last offer or answer, and remove its pinholes.
    #[arg(long, value_name = "DURATION", default_value = "4h", value_parser = crate::args::parse_duration)]
    pub pinhole_max_age: time::Duration,
    #[command(flatten)]
    pub state: StateArgs,
}

/// The form of the Route-Security entries a relay writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouteSecurityForm {
    /// `ADDR;level=N`.
    Bare,
    /// `<sip:ADDR>;level=N`.
    NameAddr,
}

impl From<RouteSecurityForm> for EntryForm {
    fn from(f: RouteSecurityForm) -> EntryForm {
        match f {
            RouteSecurityForm::Bare => EntryForm::Bare,
            RouteSecurityForm::NameAddr => EntryForm::NameAddr,
        }
    }
}

/// Where pinhole changes are applied (`--firewall`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FirewallKind {
    /// The kernel's nftables, through `nft -f`.
    Nft,
}

impl RelayCommon {
    /// The firewall of `--firewall`, when one is given.
    pub fn firewall(&self) -> Option<Nft> {
        self.firewall.map(|FirewallKind::Nft| Nft::new(&self.nft))
    }
}

/// What [`RelayArgs::load`] reads.
pub struct Loaded {
    pub identity: Option<Identity>,
    pub psks: Vec<Psk>,
    pub msg: Message,
}

/// A message to relay, or one already answered because it did not parse.
pub enum Inbound {
    /// Relay it.
    Relay(Box<Loaded>),
    /// A request that does not frame was answered (400/505): exit with this.
    Answered(Exit),
}

impl RelayArgs {
    /// Read the identity (not its private key), the PSKs and the message.
    /// A request that does not parse is answered here when it can be
    /// addressed (RFC 4475); a response that does not parse is dropped.
    pub fn load(&self, command: &str, ctx: &mut Context) -> Result<Inbound, Error> {
        let to_stdout = |p: &Option<PathBuf>| p.as_deref().is_none_or(|p| p == Path::new("-"));
        if self.report.as_deref() == Some(Path::new("-")) && to_stdout(&self.output) {
            return Err(Error::usage(
                "--report - and the message both on standard output",
                "give the forwarded message a file with -o FILE, or the report one with --report FILE",
            ));
        }
        let (identity, psks) = self.common.keys()?;
        let bytes = read_input(&self.input)?;
        let msg = match Message::parse(&bytes) {
            Ok(msg) => msg,
            Err(err) => {
                let keys = RelayKeys {
                    identity: identity.as_ref(),
                    psks: &psks,
                    certs: &[],
                };
                let answer = answer_unparsable(&bytes, &err, &keys.host(), ctx);
                let name = display_name(&self.input);
                return match answer {
                    Some(response) => {
                        write_output(self.output.as_ref(), &response.to_bytes())?;
                        eprintln!(
                            "{command}: {name}: {err}\n{command}: answered {} instead of forwarding",
                            response.start_line()
                        );
                        Ok(Inbound::Answered(Exit::SipError))
                    }
                    None => Err(Error::Parse { name, err }),
                };
            }
        };
        warn_discarded(&display_name(&self.input), &msg);
        Ok(Inbound::Relay(Box::new(Loaded {
            identity,
            psks,
            msg,
        })))
    }

    /// The path checks: [`RelayCommon::path`] with `--link-level` and
    /// `--received-from`.
    pub fn path(&self, now: time::OffsetDateTime) -> Result<PathOptions, Error> {
        let c = &self.common;
        if (c.bindings.is_some() || c.registrations.is_some()) && self.received_from.is_none() {
            return Err(Error::usage(
                "--bindings and --registrations check where the message came from",
                "give --received-from HOST[:PORT]",
            ));
        }
        Ok(PathOptions {
            link_level: self.link_level,
            received_from: self.received_from.clone(),
            ..c.path(now)?
        })
    }

    /// How the relay runs in `mode`.
    pub fn options(&self, mode: Mode, now: time::OffsetDateTime) -> Result<RelayOptions, Error> {
        Ok(RelayOptions {
            path: self.path(now)?,
            ..self.common.options(mode, now)?
        })
    }

    /// Run the relay workflow on the loaded message and write what it
    /// gives: the pinholes and the report (if asked), then the message;
    /// exit 5 for a response this relay produced.
    pub fn step(
        &self,
        command: &str,
        keys: &RelayKeys<'_>,
        msg: &Message,
        opts: &RelayOptions,
        ctx: &mut Context,
    ) -> Result<Exit, Error> {
        let store = self.common.state.store()?;
        let firewall = self.common.firewall();
        let state = RelayState {
            sessions: &store,
            pinholes: (self.pinholes.is_some() || firewall.is_some())
                .then_some(&store as &dyn PinholeStore),
            firewall: firewall.as_ref().map(|f| f as &dyn Firewall),
        };
        if let Some(fw) = &firewall {
            self.expire(&store, fw, &keys.name(), ctx)?;
        }
        let step = match relay(msg, keys, opts, state, ctx) {
            // Not confirmed: answered 500 (a response is dropped), nothing kept.
            Err(RelayError::Firewall(e)) => {
                use sipseal::sip::IntoAnswer as _;
                let answer = RelayError::Firewall(e.clone())
                    .answer()
                    .expect("a firewall failure has an answer")
                    .with_warning(&keys.host(), &e.to_string());
                eprintln!("{command}: {e}");
                let response =
                    sipseal::sip::respond(msg, &answer, ctx).map_err(|e| Error::Relay {
                        name: display_name(&self.input),
                        err: RelayError::Compose(e),
                    })?;
                return match response {
                    Some(m) => {
                        write_output(self.output.as_ref(), &m.to_bytes())?;
                        Ok(Exit::SipError)
                    }
                    None => Ok(Exit::Failed),
                };
            }
            other => other,
        };
        let step = step.map_err(|err| match err {
            RelayError::NoCallId(e) => Error::usage(
                format!("--pinholes: {e}"),
                "pinholes are kept per call: the message needs a Call-ID",
            ),
            RelayError::Store(e) => Error::State(e),
            err => Error::Relay {
                name: display_name(&self.input),
                err,
            },
        })?;
        say_stored(step.session.as_ref(), &self.common.state.limits());
        if let (Some(path), Some(changes)) = (&self.pinholes, &step.pinholes) {
            write_file(
                path,
                changes.render(self.common.pinhole_format).as_bytes(),
                false,
            )?;
        }
        if let Some(path) = &self.report {
            let text = render(self.report_format, &step.report, RelayReport::to_text)?;
            if path == Path::new("-") {
                write_output(None, text.as_bytes())?;
            } else {
                write_file(path, text.as_bytes(), true)?;
            }
        }
        if let Some(m) = step.outcome.message() {
            write_output(self.output.as_ref(), &m.to_bytes())?;
        }
        if let Outcome::Forward(m) = &step.outcome
            && let Some(w) = sipseal::sip::size::udp_size_warning(m)
        {
            eprintln!("warning: {w}");
        }
        match step.outcome {
            Outcome::Forward(_) => Ok(Exit::Ok),
            Outcome::Respond(m) => {
                eprintln!(
                    "{command}: answered {} instead of forwarding",
                    m.start_line()
                );
                Ok(Exit::SipError)
            }
            // An ACK is never answered: nothing to write, and it went no further.
            Outcome::Drop(why) => {
                eprintln!("{command}: dropped, not forwarded: {why}");
                Ok(Exit::Failed)
            }
        }
    }
}

impl RelayArgs {
    /// End the calls whose BYE never came within --pinhole-max-age,
    /// each ending confirmed by `fw`, and write their deletions.
    fn expire(
        &self,
        store: &dyn PinholeStore,
        fw: &dyn Firewall,
        owner: &str,
        ctx: &Context,
    ) -> Result<(), Error> {
        let now = ctx.now().unix_timestamp();
        let cutoff = now.saturating_sub(self.common.pinhole_max_age.whole_seconds());
        let ended = sipseal::state::expire_calls(store, owner, cutoff, now, &mut |c| {
            sipseal::firewall::confirm(Some(fw), c)
        })
        .map_err(|e| match e {
            sipseal::state::StepError::Store(e) => Error::State(e),
            sipseal::state::StepError::Firewall(e) => Error::usage(
                e.to_string(),
                "check that nft runs here as root and that table inet sipseal is sipseal's",
            ),
        })?;
        for c in &ended {
            eprintln!(
                "pinholes: call {} ended: no BYE within --pinhole-max-age",
                c.call_tag
            );
        }
        Ok(())
    }
}

impl RelayCommon {
    /// Read the identity (not its private key) and the PSKs.
    pub fn keys(&self) -> Result<(Option<Identity>, Vec<Psk>), Error> {
        let identity = self.identity.as_deref().map(load_identity).transpose()?;
        let psks = self
            .psk
            .iter()
            .map(|p| load_psk(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((identity, psks))
    }

    /// The bindings of --bindings and --registrations, merged.
    pub fn bindings_now(&self, now: time::OffsetDateTime) -> Result<Option<Bindings>, Error> {
        self.bindings_with(now, &|_| None, &[])
    }

    /// The registrations (`--registrations`: a registrar's state directory,
    /// or Redis for the `realms` a relay serves) as bindings, a relay's own
    /// flows read by `flow`; merged with --bindings.
    pub fn bindings_with(
        &self,
        now: time::OffsetDateTime,
        flow: sipseal::registrar::FlowSource<'_>,
        realms: &[String],
    ) -> Result<Option<Bindings>, Error> {
        let mut map = std::collections::BTreeMap::new();
        if let Some(file) = &self.bindings {
            let loaded = Bindings::load(file).map_err(|e| {
                Error::usage(
                    e.to_string(),
                    "see `man sipseal-proxy` for the --bindings and --policy YAML formats",
                )
            })?;
            map.extend(loaded.into_map());
        }
        if let Some(dir) = &self.registrations {
            let found = match self.registry()? {
                Some(registry) if dir.to_string_lossy().starts_with("redis://") => {
                    sipseal::registrar::registered_sources_in(registry.as_ref(), realms, now, flow)?
                }
                _ => sipseal::registrar::registered_sources(dir, now, flow)?,
            };
            for (aor, sources) in found {
                let entry: &mut Vec<String> = map.entry(aor).or_default();
                entry.extend(sources);
            }
        }
        Ok((self.bindings.is_some() || self.registrations.is_some())
            .then(|| Bindings::from_map(map)))
    }

    /// The registrar's store `--registrations` names: its state
    /// directory, or (with the live features) Redis.
    pub fn registry(
        &self,
    ) -> Result<
        Option<std::sync::Arc<dyn sipseal::registrar::store::RegistrarStore + Send + Sync>>,
        Error,
    > {
        let Some(at) = &self.registrations else {
            return Ok(None);
        };
        let state = crate::args::StateArgs {
            state: Some(at.clone()),
            ..Default::default()
        };
        Ok(Some(std::sync::Arc::from(state.registry()?)))
    }

    /// The path checks this relay is configured with (`--bindings`,
    /// `--registrations`, `--policy`, `--require-signature`,
    /// `--signer-trust`); where a message came from is the caller's.
    pub fn path(&self, now: time::OffsetDateTime) -> Result<PathOptions, Error> {
        let config = |e: PolicyError| {
            Error::usage(
                e.to_string(),
                "see `man sipseal-proxy` for the --bindings and --policy YAML formats",
            )
        };
        Ok(PathOptions {
            link_level: None,
            min_route_level: self.min_route_level,
            route_security_form: self.route_security_form.into(),
            arrived_level: None,
            received_from: None,
            flow: None,
            bindings: self.bindings_now(now)?.map(std::sync::Arc::new),
            policy: self
                .policy
                .as_deref()
                .map(Policy::load)
                .transpose()
                .map_err(config)?
                .map(std::sync::Arc::new),
            require_signature: self.require_signature,
            trust: self
                .signer_trust
                .iter()
                .map(|t| load_anchors(t))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect(),
        })
    }

    /// How the relay runs in `mode`.
    pub fn options(&self, mode: Mode, now: time::OffsetDateTime) -> Result<RelayOptions, Error> {
        let mut edits: Vec<SdpEdit> = self
            .set_connection
            .iter()
            .cloned()
            .map(SdpEdit::Connection)
            .collect();
        edits.extend(self.set_port.iter().cloned());
        Ok(RelayOptions {
            via: self.via.clone(),
            edits,
            path: self.path(now)?,
            mode,
            sessions: self.state.limits().policy(),
            allow_cbc: self.allow_cbc,
            pinholes: PinholeLimits {
                allow: self.pinhole_allow.clone(),
                max_streams: self.pinhole_max_streams,
            },
            ..RelayOptions::default()
        })
    }
}

/// `proxy` arguments.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub relay: RelayArgs,
    /// Also open when not designated, if a RecipientInfo is addressed to this relay.
    #[arg(long)]
    pub trial: bool,
    /// Answer 496 to a request whose sealed body this relay cannot open, designated or not.
    #[arg(long)]
    pub require_disclosure: bool,
    /// Keep this relay's own Proxy-Inspect-Body entry when forwarding.
    #[arg(long)]
    pub keep_designation: bool,
    /// Record-Route this relay on INVITEs (and other dialog-creating
    /// requests), so the dialog's later requests pass it too: a relay
    /// that opens pinholes wants to see the BYE.
    #[arg(long)]
    pub record_route: bool,
    /// Certificates of the recipients to re-seal for after an edit: a file,
    /// or a directory searched for *.pem, *.crt, *.cer, *.der; repeatable.
    #[arg(long, value_name = "FILE|DIR")]
    pub certs: Vec<PathBuf>,
}

/// Run `proxy`.
pub fn run(args: ProxyArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let Loaded {
        identity,
        psks,
        msg,
    } = match args.relay.load("proxy", ctx)? {
        Inbound::Relay(loaded) => *loaded,
        Inbound::Answered(exit) => return Ok(exit),
    };
    let mut certs = Vec::new();
    for c in &args.certs {
        certs.extend(Cert::load_tree(c)?);
    }
    let keys = RelayKeys {
        identity: identity.as_ref(),
        psks: &psks,
        certs: &certs,
    };
    let opts = args.relay.options(
        Mode::Proxy(ProxyOptions {
            trial: args.trial,
            require_disclosure: args.require_disclosure,
            keep_designation: args.keep_designation,
            record_route: args.record_route,
        }),
        ctx.now(),
    )?;
    args.relay.step("proxy", &keys, &msg, &opts, ctx)
}
