//! The `sipseal` command line: clap definitions and one thin adapter per
//! command over the library.

pub mod build;
pub mod demo;
pub mod error;
pub mod inspect;
pub mod io;
pub mod keyargs;
pub mod keys;
pub mod man;
pub mod open;
pub mod proxy;
pub mod reencrypt;
pub mod reply;
pub mod seal;
pub mod session;
pub mod sign;
pub mod state;
pub mod verify;

use clap::{Parser, Subcommand, ValueEnum};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::context::Context;
pub use error::{EXIT_CODES, Error, Exit};

const AFTER_HELP: &str = "\
Exit status: 0 success; 1 the message failed verification or decryption, or \
is malformed; 2 usage or configuration error; 3 not a recipient; 4 I/O error; \
5 a relay produced a SIP error response.";

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
    #[arg(long, global = true, value_name = "RFC3339", value_parser = parse_now)]
    pub now: Option<OffsetDateTime>,
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

fn parse_now(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time ({e}); give e.g. 2026-01-01T00:00:00Z"))
}

/// Report formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// For programs.
    Json,
    /// For people and programs.
    Yaml,
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
    /// Show what a SIP message is made of: start line, headers, body parts, SDP media, CMS envelope.
    Inspect(inspect::InspectArgs),
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
}

/// Run a parsed command line; returns the exit code for success paths
/// that are not plain success (none yet) or the error to report.
pub fn run(cli: Cli) -> Result<Exit, Error> {
    let mut ctx = Context::new(
        cli.global.seed.as_ref().map(|s| s.0.as_slice()),
        cli.global.now,
    );
    if ctx.is_deterministic() {
        eprintln!(
            "warning: deterministic mode (--seed/--now): random values are predictable; never use this for real traffic"
        );
    }
    ctx.mix("command", command_name(&cli.command).as_bytes());
    match cli.command {
        Command::Build(args) => build::run(*args, &mut ctx),
        Command::Seal(args) => seal::run(args, &mut ctx),
        Command::Open(args) => open::run(args, &mut ctx),
        Command::Reply(args) => reply::run(*args, &mut ctx),
        Command::Rekey(args) => seal::rekey(args, &mut ctx),
        Command::Session(cmd) => session::run(cmd, &mut ctx),
        Command::Sign(args) => sign::run(args, &mut ctx),
        Command::Verify(args) => verify::run(*args, &mut ctx),
        Command::Proxy(args) => proxy::run(*args, &mut ctx),
        Command::Reencrypt(args) => reencrypt::run(*args, &mut ctx),
        Command::Inspect(args) => inspect::run(args, &mut ctx),
        Command::Keys(cmd) => keys::run(cmd, &mut ctx),
        Command::Demo(args) => demo::run(args, &mut ctx),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "sipseal", &mut buf);
            io::write_output(None, &buf)?;
            Ok(Exit::Ok)
        }
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
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
        Command::Inspect(_) => "inspect",
        Command::Keys(_) => "keys",
        Command::Demo(_) => "demo",
        Command::Completions { .. } => "completions",
    }
}

/// Render a serializable report in the chosen format.
pub fn render<T: serde::Serialize>(
    format: Format,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> Result<String, Error> {
    let internal = |e: String| {
        Error::usage(
            format!("cannot render the report: {e}"),
            "this is a bug; please report it",
        )
    };
    match format {
        Format::Text => Ok(text(value)),
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| internal(e.to_string())),
        Format::Yaml => crate::yaml::to_string(value).map_err(|e| internal(e.to_string())),
    }
}
