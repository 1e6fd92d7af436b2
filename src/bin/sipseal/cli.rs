//! The command line: the clap types every command shares. Each command's
//! own flags are in its module.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::{
    build, demo, inspect, keys, open, proxy, reencrypt, registrar, reply, seal, send, session,
    sign, verify,
};

const AFTER_HELP: &str = "\
Exit status: 0 success; 1 the message failed verification or decryption, or \
is malformed; 2 usage or configuration error; 3 not a recipient; 4 I/O error; \
5 a relay or the registrar answered with a SIP error or challenge.";

/// Selective disclosure of SIP bodies (S/MIME) to chosen relays.
#[derive(Debug, Parser)]
#[command(name = "sipseal", version, about, after_help = AFTER_HELP)]
#[command(
    long_about = "sipseal seals the SDP of SIP messages as CMS (S/MIME) so that only the far-end \
peer and the relays the sender chooses can read it, and gives relays the tools to open, forward \
and re-encrypt such messages. Every command reads a file or - (standard input) and writes standard \
output or -o FILE."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Deterministic mode: draw every random value (tags, branches,
    /// Call-IDs, keys, nonces) from a CSPRNG seeded with these hex bytes.
    /// For golden files and tests only.
    #[arg(long, global = true, env = "SIPSEAL_SEED", value_name = "HEX", value_parser = parse_seed)]
    pub seed: Option<Seed>,
    /// Fix the clock (Date headers, validity checks) at this RFC 3339 time,
    /// e.g. 2026-01-01T00:00:00Z.
    #[arg(long, global = true, value_name = "RFC3339", value_parser = crate::args::parse_now)]
    pub now: Option<OffsetDateTime>,
    /// The largest message (or CMS object) read, in bytes (suffixes K, M,
    /// KiB, MiB): a larger input is refused before it is parsed.
    #[arg(
        long,
        global = true,
        value_name = "BYTES",
        default_value = "1MiB",
        value_parser = crate::args::parse_size
    )]
    pub max_message_size: u64,
    /// The passphrase of protected private keys (encrypted PKCS#8 key.pem,
    /// PKCS#12 bundles): a file holding it alone (one trailing line break
    /// is not part of it; keep it mode 0600). Without it, a protected key
    /// is asked for on the terminal, or refused when there is none.
    #[arg(
        long,
        global = true,
        env = "SIPSEAL_KEY_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub key_password_file: Option<std::path::PathBuf>,
}

/// The bytes of `--seed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed(pub Vec<u8>);

fn parse_seed(s: &str) -> Result<Seed, String> {
    let bytes =
        hex::decode(s.trim()).map_err(|e| format!("not hex ({e}); give e.g. --seed 00c0ffee"))?;
    if bytes.is_empty() {
        return Err("empty seed; give at least one byte, e.g. --seed 01".into());
    }
    Ok(Seed(bytes))
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compose a SIP request or response, from flags or a YAML message spec.
    Build(Box<build::BuildArgs>),
    /// Seal a message's body for its peer and the relays chosen to see it.
    Seal(seal::SealArgs),
    /// Decrypt a sealed body addressed to me (or sealed under a stored session key).
    Open(open::OpenArgs),
    /// The next message of a session (a response, or an in-dialog request), sealed under the session key.
    Reply(Box<reply::ReplyArgs>),
    /// Send a full envelope that gives the session a new key (key update).
    Rekey(seal::RekeyArgs),
    /// List, show, forget or export stored session keys.
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// Sign a message: multipart/signed over its protected headers and body (outer signature).
    Sign(sign::SignArgs),
    /// Verify every signature (chain, validity, key usage, signer, protected headers) and the Route-Security chain.
    Verify(Box<verify::VerifyArgs>),
    /// One relay step: open the body if designated, report, forward (or answer 483/496).
    Proxy(Box<proxy::ProxyArgs>),
    /// Open with this relay's key, optionally edit, and seal again for the next hop.
    Reencrypt(Box<reencrypt::ReencryptArgs>),
    /// The relay as a live stateless proxy on UDP, TCP and mutually authenticated TLS: every message through the relay step, then on to the next hop.
    #[cfg(feature = "live")]
    Relay(Box<crate::relay::RelayLiveArgs>),
    /// The recording server: decrypt the SRTP of a capture, or live of an interface, with the keys of a relay's disclosure report; per call and direction a pcap, a WAV and a summary.
    #[cfg(feature = "record")]
    Record(Box<crate::record::RecordArgs>),
    /// Show what a SIP message is made of: start line, headers, body parts, SDP media, CMS envelope.
    Inspect(inspect::InspectArgs),
    /// The registrar (docs/SPEC.md §6): answer one REGISTER (Digest, certificate from a CSR, bindings), or manage credentials.
    Registrar(Box<registrar::RegistrarArgs>),
    /// The CA apart from the registrar (docs/SPEC.md §6): issue the certificates registrars ask for over mutual TLS.
    #[cfg(feature = "live")]
    Ca(Box<crate::ca::CaArgs>),
    /// The HTTP gateway: browsers log in, pick a destination from their portal, and reach its service through it.
    #[cfg(feature = "live")]
    Gateway(Box<crate::gateway::GatewayArgs>),
    /// A user agent's REGISTER: with a CSR or certificate, its authorized retry after a 401, or install the certificate of the 200 OK.
    Register(Box<registrar::RegisterArgs>),
    /// Ask the registrar for an AOR's certificate (OPTIONS), or whether one is still valid; check and store its answer.
    Certquery(Box<registrar::CertqueryArgs>),
    /// Send one request to a next hop (UDP, TCP or TLS) as a client transaction; print each response as it arrives.
    Send(send::SendArgs),
    /// The answering terminal of a service host: register over mutual TLS, answer allowed callers with a sealed TLS data channel (fingerprints in the SDP), and relay it into a local service.
    #[cfg(feature = "live")]
    Terminal(Box<crate::terminal::TerminalArgs>),
    /// An outbound proxy for ordinary phones: plain SIP from the phone, one mutual-TLS flow to the relay; seals what the phone sends and opens what it is sent, on its user's behalf.
    #[cfg(feature = "live")]
    Edge(Box<crate::edge::EdgeArgs>),
    /// Generate key material.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Run the demonstration on the bundled demo keys and samples.
    Demo(demo::DemoArgs),
    /// Print shell completions.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (sipseal.1, sipseal-COMMAND.1, ...) into a directory.
    #[command(hide = true)]
    Man {
        /// The directory (created if missing; its *.1 pages are replaced).
        #[arg(long, value_name = "DIR", default_value = "man")]
        out: PathBuf,
    },
}

impl Command {
    /// The command's name, mixed into the seed in deterministic mode.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Build(_) => "build",
            Command::Seal(_) => "seal",
            Command::Open(_) => "open",
            Command::Reply(_) => "reply",
            Command::Rekey(_) => "rekey",
            Command::Session(_) => "session",
            Command::Sign(_) => "sign",
            Command::Verify(_) => "verify",
            Command::Proxy(_) => "proxy",
            Command::Reencrypt(_) => "reencrypt",
            #[cfg(feature = "live")]
            Command::Relay(_) => "relay",
            Command::Inspect(_) => "inspect",
            #[cfg(feature = "record")]
            Command::Record(_) => "record",
            Command::Registrar(_) => "registrar",
            #[cfg(feature = "live")]
            Command::Ca(_) => "ca",
            #[cfg(feature = "live")]
            Command::Gateway(_) => "gateway",
            Command::Register(_) => "register",
            Command::Certquery(_) => "certquery",
            Command::Send(_) => "send",
            #[cfg(feature = "live")]
            Command::Terminal(_) => "terminal",
            #[cfg(feature = "live")]
            Command::Edge(_) => "edge",
            Command::Keys(_) => "keys",
            Command::Demo(_) => "demo",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
        }
    }
}

/// Parse the command line. A shell script pays for clap's command tree on
/// every call (issue 26: the whole tree is some 40 commands and 600
/// flags, built on the heap before a word is read): a command that
/// scripts run per message is parsed with its own tree alone; anything
/// else, and every help or error, with the whole tree, which prints what
/// it always has.
pub fn parse(args: Vec<String>) -> Cli {
    parse_one(&args).unwrap_or_else(|| Cli::parse_from(args))
}

/// The command named by `args` parsed with a tree of the global options
/// and that command only; `None` when it is not one of these, or when the
/// short tree would print something (help, an error).
fn parse_one(args: &[String]) -> Option<Cli> {
    use clap::{Args, FromArgMatches};
    let name = command_name(args)?;
    let sub = match name {
        "build" => build::BuildArgs::augment_args(clap::Command::new("build")),
        "seal" => seal::SealArgs::augment_args(clap::Command::new("seal")),
        "open" => open::OpenArgs::augment_args(clap::Command::new("open")),
        "reply" => reply::ReplyArgs::augment_args(clap::Command::new("reply")),
        "rekey" => seal::RekeyArgs::augment_args(clap::Command::new("rekey")),
        "sign" => sign::SignArgs::augment_args(clap::Command::new("sign")),
        "verify" => verify::VerifyArgs::augment_args(clap::Command::new("verify")),
        "proxy" => proxy::ProxyArgs::augment_args(clap::Command::new("proxy")),
        "reencrypt" => reencrypt::ReencryptArgs::augment_args(clap::Command::new("reencrypt")),
        "inspect" => inspect::InspectArgs::augment_args(clap::Command::new("inspect")),
        "register" => registrar::RegisterArgs::augment_args(clap::Command::new("register")),
        "certquery" => registrar::CertqueryArgs::augment_args(clap::Command::new("certquery")),
        "send" => send::SendArgs::augment_args(clap::Command::new("send")),
        _ => return None,
    };
    let tree = GlobalArgs::augment_args(clap::Command::new("sipseal")).subcommand(sub);
    let matches = tree.try_get_matches_from(args).ok()?;
    Cli::from_arg_matches(&matches).ok()
}

/// The first word that is not an option or a global option's value.
fn command_name(args: &[String]) -> Option<&str> {
    const GLOBAL_VALUES: [&str; 4] = [
        "--seed",
        "--now",
        "--max-message-size",
        "--key-password-file",
    ];
    let mut words = args.iter().skip(1);
    while let Some(w) = words.next() {
        if GLOBAL_VALUES.contains(&w.as_str()) {
            words.next()?;
        } else if w.starts_with("--") && w.contains('=') {
            continue;
        } else if w.starts_with('-') {
            return None;
        } else {
            return Some(w);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    /// The short tree parses exactly as the whole tree does.
    #[test]
    fn a_command_parsed_alone_reads_as_with_the_whole_tree() {
        let mut parsed = 0;
        for line in [
            "sipseal seal samples/invite.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem --disclose psk:keys/psk/alice-proxy-a.yaml",
            "sipseal --seed 01 --now 2026-01-01T00:00:00Z seal - --disclose a --no-peer -o out.sip",
            "sipseal seal m.sip --session --state st",
            "sipseal open sealed.sip --identity keys/bob",
            "sipseal --max-message-size=64KiB open - --identity keys/bob --psk keys/psk/alice-proxy-a.yaml",
            "sipseal build invite --from sip:alice@a.example.com --to sip:bob@[::1]:5090 --sdp samples/offer.sdp",
            "sipseal build response 200 --request invite.sip",
            "sipseal reply --response 200 --request invite.sip --identity keys/bob",
            "sipseal sign m.sip --identity keys/alice",
            "sipseal verify m.sip --trust keys/trust.pem",
            "sipseal proxy m.sip --identity keys/proxy-a --report r.jsonl",
            "sipseal reencrypt m.sip --identity keys/proxy-a --peer keys/bob/cert.pem",
            "sipseal inspect m.sip --format json",
            "sipseal register --uri sip:alice@a.example.com --contact sip:alice@127.0.0.1:5066",
            "sipseal certquery --uri sip:bob@b.example.com",
            "sipseal send r.sip --next udp:127.0.0.1:5060 --password-file pw",
            "sipseal rekey m.sip --peer keys/bob/cert.pem",
        ] {
            let args = words(line);
            let whole = Cli::try_parse_from(&args).map(|c| format!("{c:?}"));
            let alone = parse_one(&args).map(|c| format!("{c:?}"));
            match whole {
                Ok(whole) => {
                    assert_eq!(alone.as_deref(), Some(whole.as_str()), "{line}");
                    parsed += 1;
                }
                Err(e) => panic!("{line}: {e}"),
            }
        }
        assert_eq!(parsed, 17);
        // What the short tree leaves to the whole one.
        for line in [
            "sipseal --help",
            "sipseal seal --help",
            "sipseal seal --bogus",
            "sipseal keys demo --out pki",
            "sipseal -q seal m.sip",
            "sipseal",
        ] {
            assert!(parse_one(&words(line)).is_none(), "{line}");
        }
    }
}
