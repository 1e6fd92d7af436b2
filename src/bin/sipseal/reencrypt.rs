//! `sipseal reencrypt`: open with this relay's key, edit, and seal again
//! for the next hop (docs/SPEC.md §4 step 6; trust hop by hop).

use clap::Args;

use sipseal::context::Context;
use sipseal::relay::{Mode, ReencryptOptions, RelayKeys};

use crate::args::RecipientArgs;
use crate::error::{Error, Exit};
use crate::proxy::{Inbound, Loaded, RelayArgs};

/// `reencrypt` arguments.
#[derive(Debug, Args)]
pub struct ReencryptArgs {
    #[command(flatten)]
    pub relay: RelayArgs,
    /// The next hop's recipients (--peer, --disclose) and how to seal for them.
    #[command(flatten)]
    pub recipients: RecipientArgs,
    /// Seal under the same CEK that opened the input instead of a fresh one,
    /// so the session key derived from it is the same for every hop. The
    /// input's content cipher is kept. Without it, the relay keeps both
    /// sides' session keys and translates later session messages of the
    /// call (run `reencrypt` on each; no --peer needed for them).
    #[arg(long)]
    pub keep_cek: bool,
}

/// Run `reencrypt`.
pub fn run(args: ReencryptArgs, ctx: &mut Context) -> Result<Exit, Error> {
    if args.keep_cek && args.recipients.cipher.is_some() {
        return Err(Error::usage(
            "--keep-cek and --cipher together",
            "a kept CEK belongs to the input's cipher; drop --cipher, or drop --keep-cek to seal under a fresh key",
        ));
    }
    // A session message this relay translates needs no recipients; any
    // other body does (the library says so when it gets there).
    let spec = args.recipients.spec_or_none(ctx.now())?;
    let Loaded {
        identity,
        psks,
        msg,
    } = match args.relay.load("reencrypt", ctx)? {
        Inbound::Relay(loaded) => *loaded,
        Inbound::Answered(exit) => return Ok(exit),
    };
    let keys = RelayKeys {
        identity: identity.as_ref(),
        psks: &psks,
        certs: &[],
    };
    let opts = args.relay.options(
        Mode::Reencrypt(ReencryptOptions {
            spec,
            keep_cek: args.keep_cek,
        }),
        ctx.now(),
    )?;
    args.relay.step("reencrypt", &keys, &msg, &opts, ctx)
}
