//! The `sipseal` binary: parse arguments, run, map errors to exit codes.

use clap::Parser;
use sipseal::cli::{Cli, run};

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
