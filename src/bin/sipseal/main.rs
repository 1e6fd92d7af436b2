//! The `sipseal` binary: a thin adapter over the library. Each command
//! parses its flags, loads the files they name, calls one library
//! workflow and writes what it returns; errors become words, a hint and an
//! exit code here ([`error`]).

mod args;
mod build;
mod cli;
mod demo;
mod error;
mod inspect;
mod io;
mod keys;
#[cfg(feature = "live")]
mod live;
mod man;
mod open;
mod proxy;
mod reencrypt;
mod registrar;
#[cfg(feature = "live")]
mod relay;
mod reply;
mod seal;
mod send;
mod session;
mod sign;
mod verify;

use clap::Parser;
use sipseal::context::Context;

use cli::{Cli, Command};
use error::{Error, Exit};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(exit) => std::process::ExitCode::from(exit as u8),
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("hint: {}", e.hint());
            std::process::ExitCode::from(e.exit() as u8)
        }
    }
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
        Command::Registrar(args) => registrar::run(*args, &mut ctx),
        Command::Register(args) => registrar::register(*args, &mut ctx),
        Command::Certquery(args) => registrar::certquery(*args, &mut ctx),
        Command::Send(args) => send::run(args, &mut ctx),
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
