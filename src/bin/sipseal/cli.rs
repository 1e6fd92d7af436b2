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
    /// Show what a SIP message is made of: start line, headers, body parts, SDP media, CMS envelope.
    Inspect(inspect::InspectArgs),
    /// The registrar (docs/SPEC.md §6): answer one REGISTER (Digest, certificate from a CSR, bindings), or manage credentials.
    Registrar(Box<registrar::RegistrarArgs>),
    /// A user agent's REGISTER: with a CSR or certificate, its authorized retry after a 401, or install the certificate of the 200 OK.
    Register(Box<registrar::RegisterArgs>),
    /// Ask the registrar for an AOR's certificate (OPTIONS), or whether one is still valid; check and store its answer.
    Certquery(Box<registrar::CertqueryArgs>),
    /// Send one request to a next hop (UDP, TCP or TLS) as a client transaction; print each response as it arrives.
    Send(send::SendArgs),
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
            Command::Registrar(_) => "registrar",
            Command::Register(_) => "register",
            Command::Certquery(_) => "certquery",
            Command::Send(_) => "send",
            Command::Keys(_) => "keys",
            Command::Demo(_) => "demo",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
        }
    }
}
