//! The `sipseal` binary: a thin adapter over the library. Each command
//! parses its flags, loads the files they name, calls one library
//! workflow and writes what it returns; errors become words, a hint and an
//! exit code here ([`error`]).

mod args;
mod build;
#[cfg(feature = "live")]
mod ca;
mod cli;
mod demo;
#[cfg(feature = "live")]
mod edge;
mod error;
#[cfg(feature = "live")]
mod gateway;
mod inspect;
mod io;
mod keys;
#[cfg(feature = "live")]
mod live;
mod man;
mod open;
mod proxy;
#[cfg(feature = "record")]
mod record;
#[cfg(all(feature = "record", feature = "live", target_os = "linux"))]
mod record_live;
mod reencrypt;
mod registrar;
#[cfg(feature = "live")]
mod relay;
mod reply;
mod seal;
mod send;
mod session;
mod sign;
#[cfg(feature = "live")]
mod terminal;
mod verify;

use sipseal::context::Context;

use cli::{Cli, Command};
use error::{Error, Exit};

/// mimalloc: a live server allocates per message from every runtime
/// thread (glibc's malloc: a designated relay carried 933 calls/s at
/// 1,288 us of CPU a call where mimalloc carries 3,118 at 469 us,
/// benches/live-vs-kamailio.sh, issue 26).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = match with_config(std::env::args().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("hint: {}", e.hint());
            return std::process::ExitCode::from(e.exit() as u8);
        }
    };
    // `--version` alone needs no command tree at all.
    if let [_, flag] = args.as_slice()
        && (flag == "--version" || flag == "-V")
    {
        println!("sipseal {}", env!("CARGO_PKG_VERSION"));
        return std::process::ExitCode::SUCCESS;
    }
    let cli = cli::parse(args);
    match run(cli) {
        Ok(exit) => std::process::ExitCode::from(exit as u8),
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("hint: {}", e.hint());
            std::process::ExitCode::from(e.exit() as u8)
        }
    }
}

/// `relay --config FILE`: the file's flags go right after `relay`, so
/// that flags given on the command line come later and win (lists add up).
fn with_config(mut args: Vec<String>) -> Result<Vec<String>, Error> {
    let Some(at) = args.iter().position(|a| a == "relay") else {
        return Ok(args);
    };
    let file = args[at..].iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=").map(str::to_owned).or_else(|| {
            (a == "--config")
                .then(|| args.get(at + i + 1).cloned())
                .flatten()
        })
    });
    let Some(file) = file else {
        return Ok(args);
    };
    let path = std::path::PathBuf::from(&file);
    let text = io::read_input(&path)?;
    let text = String::from_utf8(text).map_err(|_| {
        Error::usage(
            format!("--config {file}: not UTF-8 text"),
            "give a YAML file",
        )
    })?;
    let flags = sipseal::yaml::flag_args(&text).map_err(|e| {
        Error::usage(
            format!("--config {file}: {e}"),
            "a mapping of long flag names to values, e.g. `listen: [tcp:127.0.0.1:5060]` (see `man sipseal-relay`)",
        )
    })?;
    args.splice(at + 1..at + 1, flags);
    Ok(args)
}

/// Run a parsed command line; the exit code, or the error to report.
fn run(cli: Cli) -> Result<Exit, Error> {
    let mut ctx = Context::new(
        cli.global.seed.as_ref().map(|s| s.0.as_slice()),
        cli.global.now,
    );
    if ctx.is_deterministic() {
        eprintln!(
            "warning: deterministic mode (--seed/--now): random values are predictable; never use this for real traffic"
        );
    }
    ctx.mix("command", cli.command.name().as_bytes());
    io::set_max_message_size(cli.global.max_message_size);
    args::set_key_password_file(cli.global.key_password_file.clone());
    match cli.command {
        Command::Build(args) => build::run(*args, &mut ctx),
        Command::Seal(args) => seal::run(args, &mut ctx),
        Command::Open(args) => open::run(args, &mut ctx),
        Command::Reply(args) => reply::run(*args, &mut ctx),
        Command::Rekey(args) => seal::rekey(args, &mut ctx),
        Command::Session(cmd) => session::run(cmd),
        Command::Sign(args) => sign::run(args, &mut ctx),
        Command::Verify(args) => verify::run(*args, &mut ctx),
        Command::Proxy(args) => proxy::run(*args, &mut ctx),
        Command::Reencrypt(args) => reencrypt::run(*args, &mut ctx),
        #[cfg(feature = "live")]
        Command::Relay(args) => relay::run(*args, &mut ctx),
        Command::Inspect(args) => inspect::run(args, &mut ctx),
        #[cfg(feature = "record")]
        Command::Record(args) => record::run(*args),
        Command::Registrar(args) => registrar::run(*args, &mut ctx),
        #[cfg(feature = "live")]
        Command::Ca(args) => ca::run(*args, &mut ctx),
        #[cfg(feature = "live")]
        Command::Gateway(args) => gateway::run(*args),
        Command::Register(args) => registrar::register(*args, &mut ctx),
        Command::Certquery(args) => registrar::certquery(*args, &mut ctx),
        Command::Send(args) => send::run(args, &mut ctx),
        #[cfg(feature = "live")]
        Command::Terminal(args) => terminal::run(*args, &mut ctx),
        #[cfg(feature = "live")]
        Command::Edge(args) => edge::run(*args, &mut ctx),
        Command::Keys(cmd) => keys::run(cmd, &mut ctx),
        Command::Demo(args) => demo::run(args, &mut ctx),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "sipseal", &mut buf);
            io::write_output(None, &buf)?;
            Ok(Exit::Ok)
        }
        Command::Man { out } => man::write(&out),
    }
}
