//! `sipseal seal`: replace a message's body with a sealed one.

use std::path::PathBuf;

use clap::Args;

use super::error::{Error, Exit};
use super::io::{display_name, read_message, write_output};
use super::keyargs::RecipientArgs;
use super::state::StateArgs;
use crate::context::Context;
use crate::sealing::seal_message;

/// `seal` arguments.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// The SIP message with a plaintext body (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    #[command(flatten)]
    pub recipients: RecipientArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Write only the DER ContentInfo (for openssl and other tools), not the SIP message.
    #[arg(long)]
    pub body_only: bool,
    /// Write here (atomically) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Run `seal`.
pub fn run(args: SealArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let spec = args.recipients.spec(ctx.now())?;
    let msg = read_message(&args.input)?;
    let sealed = seal_message(&msg, &spec, ctx).map_err(|err| Error::Seal {
        name: display_name(&args.input),
        err,
    })?;
    args.state.record_sender(&sealed, ctx)?;
    let bytes = if args.body_only {
        sealed.der
    } else {
        sealed.message.to_bytes()
    };
    write_output(args.output.as_ref(), &bytes)?;
    Ok(Exit::Ok)
}
