//! `sipseal seal`: replace a message's body with a sealed one, for its
//! recipients (a full envelope) or under the session key (`--session`);
//! and `sipseal rekey`, a full envelope that replaces the session key.

use std::path::PathBuf;

use clap::Args;
use sipseal::context::Context;
use sipseal::session::RekeyReason;
use sipseal::sip::Message;
use sipseal::state::FileStore;
use sipseal::ua::{InDialog, UaError};

use crate::args::{InnerSignArgs, SealingArgs, say_stored};
use crate::error::{Error, Exit};
use crate::io::{OutputArgs, read_well_formed};

/// `seal` arguments.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// The SIP message with a plaintext body (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    #[command(flatten)]
    pub sealing: SealingArgs,
    #[command(flatten)]
    pub inner: InnerSignArgs,
    /// Seal under the session key stored for the message's Call-ID (one
    /// KEKRecipientInfo, no public-key operation). When the key is due
    /// for a rekey (--max-uses, --max-age) a full envelope goes to --peer
    /// and --disclose instead, and stderr says so.
    #[arg(long)]
    pub session: bool,
    /// Write only the DER ContentInfo (for openssl and other tools), not the SIP message.
    #[arg(long)]
    pub body_only: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Run `seal`.
pub fn run(args: SealArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let (name, msg) = read_well_formed(&args.input)?;
    if args.session && args.inner.sign.is_some() {
        return Err(Error::usage(
            "--sign with --session",
            "an inner signature goes with a full envelope: seal with --peer (and --disclose) instead of --session, or sign the session message with `sipseal sign`",
        ));
    }
    let (message, der) = if args.session {
        let me = sender(&msg, &name)?;
        seal_in_dialog(&msg, &me, &args.sealing, &name, ctx)?
    } else {
        let mut spec = args.sealing.recipients.spec(ctx.now())?;
        spec.signer = args.inner.signer()?;
        spec.scheme = args.inner.scheme();
        let sealed = args
            .sealing
            .state
            .user_agent()?
            .seal(&msg, &spec, &name, ctx)?;
        (sealed.message, sealed.der)
    };
    let bytes = if args.body_only {
        der
    } else {
        if let Some(w) = sipseal::sip::size::udp_size_warning(&message) {
            eprintln!("warning: {w}");
        }
        message.to_bytes()
    };
    args.output.write(&bytes)?;
    Ok(Exit::Ok)
}

/// The sender's AOR (From of a request, To of a response): whose store
/// holds the session key.
fn sender(msg: &Message, name: &str) -> Result<String, Error> {
    let header = msg.sender_header();
    msg.aor(header).map(str::to_owned).ok_or_else(|| {
        Error::usage(
            format!("{name}: no {header} header to name the sender"),
            "a session message needs From, To and Call-ID",
        )
    })
}

/// Seal `msg` under the session key `me` stored for its Call-ID, or, when
/// the key is due for a rekey, as a full envelope for `recipients` whose
/// new key replaces the session's. Returns the sealed message and its DER body.
pub fn seal_in_dialog(
    msg: &Message,
    me: &str,
    session: &SealingArgs,
    name: &str,
    ctx: &mut Context,
) -> Result<(Message, Vec<u8>), Error> {
    let recipients = &session.recipients;
    let agent = session.state.user_agent()?;
    let ua = agent.ua();
    let sealed = match ua.seal_in_dialog(msg, me, ctx) {
        Ok(InDialog::Sealed(sealed)) => *sealed,
        Ok(InDialog::RekeyDue(reason)) => {
            let reason = rekey_reason(&reason);
            if !recipients.any() {
                return Err(Error::usage(
                    format!("{reason}: the session is due for a rekey"),
                    "give --peer CERT (and the --disclose relays) so a full envelope with a new key goes out, or send `sipseal rekey`",
                ));
            }
            eprintln!("rekey: {reason}; sealing a full envelope under a new session key");
            let spec = recipients.spec(ctx.now())?;
            let rekeyed = ua
                .rekey(msg, me, &spec, ctx)
                .map_err(|err| Error::ua(name, err))?;
            say_stored(rekeyed.stored.as_ref(), &ua.limits);
            rekeyed.sealed
        }
        Err(UaError::NoSession(call_id)) => {
            return Err(Error::usage(
                format!(
                    "{name}: no session key for Call-ID {call_id} in {}",
                    agent.store().sessions_path(me).display()
                ),
                "seal the session's first message with `sipseal seal --peer CERT` (or open the one you received) with the same --state",
            ));
        }
        Err(err) => return Err(Error::ua(name, err)),
    };
    Ok((sealed.message, sealed.der))
}

/// Why a rekey is due, naming the flags that set the limits.
fn rekey_reason(reason: &RekeyReason) -> String {
    match reason {
        RekeyReason::Uses { uses, limit } => {
            format!("the session key has sealed {uses} messages (--max-uses {limit})")
        }
        RekeyReason::Age { created } => format!(
            "the session key dates from {} (--max-age)",
            sipseal::context::rfc3339(*created)
        ),
    }
}

/// `rekey` arguments.
#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// A message of the session with a plaintext body (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    #[command(flatten)]
    pub sealing: SealingArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Run `rekey`: a full envelope whose fresh CEK gives the session a new
/// key; every party that opens it replaces the old key, which still opens
/// messages in flight for --grace.
pub fn rekey(args: RekeyArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let (name, msg) = read_well_formed(&args.input)?;
    let me = sender(&msg, &name)?;
    let agent = args.sealing.state.user_agent()?;
    let ua = agent.ua();
    match ua.session(&msg, &me) {
        Ok(_) => {}
        Err(UaError::NoSession(call_id)) => {
            return Err(no_session(agent.store(), &me, &call_id, &name));
        }
        Err(err) => return Err(Error::ua(&name, err)),
    }
    let spec = args.sealing.recipients.spec(ctx.now())?;
    let rekeyed = ua
        .rekey(&msg, &me, &spec, ctx)
        .map_err(|err| Error::ua(&name, err))?;
    say_stored(rekeyed.stored.as_ref(), &ua.limits);
    if let Some(w) = sipseal::sip::size::udp_size_warning(&rekeyed.sealed.message) {
        eprintln!("warning: {w}");
    }
    args.output.write(&rekeyed.sealed.message.to_bytes())?;
    Ok(Exit::Ok)
}

fn no_session(store: &FileStore, me: &str, call_id: &str, name: &str) -> Error {
    Error::usage(
        format!(
            "{name}: no session for Call-ID {call_id} in {}",
            store.sessions_path(me).display()
        ),
        "a rekey replaces a session's key; start the session with `sipseal seal`",
    )
}
