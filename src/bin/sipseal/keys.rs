//! `sipseal keys`: key material.

use std::path::PathBuf;

use clap::Subcommand;

use sipseal::context::Context;
use sipseal::keys::generate_demo;

use crate::error::{Error, Exit};

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a demo PKI (two domain CAs, alice, bob, proxy-a, proxy-b,
    /// carol, trust.pem, a PSK) with fresh RSA-2048 keys. Demo use only.
    Demo {
        /// Directory to write (created if missing; existing files are replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Run `keys`.
pub fn run(cmd: KeysCommand, ctx: &mut Context) -> Result<Exit, Error> {
    match cmd {
        KeysCommand::Demo { out } => {
            let files = generate_demo(&out, ctx)?;
            eprintln!(
                "wrote {} files under {} (demo keys: never use them for anything real)",
                files.len(),
                out.display()
            );
            Ok(Exit::Ok)
        }
    }
}
