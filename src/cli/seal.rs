//! `sipseal seal`: replace a message's body with a sealed one, for its
//! recipients (a full envelope) or under the session key (`--session`);
//! and `sipseal rekey`, a full envelope that replaces the session key.

use std::path::PathBuf;

use clap::Args;

use super::error::{Error, Exit};
use super::io::{display_name, read_message, write_output};
use super::keyargs::RecipientArgs;
use super::sign::InnerSignArgs;
use super::state::{StateArgs, aor, receiver_header, sender_header};
use crate::context::Context;
use crate::sealing::{SealError, seal_message, seal_session};
use crate::session::{Role, Use};
use crate::sip::Message;

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
    /// Write here (atomically) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Run `seal`.
pub fn run(args: SealArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let name = display_name(&args.input);
    let msg = read_message(&args.input)?;
    if args.session && args.inner.sign.is_some() {
        return Err(Error::usage(
            "--sign with --session",
            "an inner signature goes with a full envelope: seal with --peer (and --disclose) instead of --session, or sign the session message with `sipseal sign`",
        ));
    }
    let (message, der) = if args.session {
        let me = sender(&msg, &name)?;
        seal_in_session(&msg, &me, &args.recipients, &args.state, &name, ctx)?
    } else {
        let mut spec = args.recipients.spec(ctx.now())?;
        spec.signer = args.inner.signer()?;
        spec.scheme = args.inner.scheme();
        let sealed = seal_message(&msg, &spec, ctx).map_err(|err| Error::Seal { name, err })?;
        args.state.record_sender(&sealed, ctx)?;
        (sealed.message, sealed.der)
    };
    let bytes = if args.body_only {
        der
    } else {
        message.to_bytes()
    };
    write_output(args.output.as_ref(), &bytes)?;
    Ok(Exit::Ok)
}

/// The sender's AOR (From of a request, To of a response): whose store
/// holds the session key.
fn sender(msg: &Message, name: &str) -> Result<String, Error> {
    let header = sender_header(msg);
    aor(msg, header).ok_or_else(|| {
        Error::usage(
            format!("{name}: no {header} header to name the sender"),
            "a session message needs From, To and Call-ID",
        )
    })
}

/// Seal `msg` under the session key `me` stored for its Call-ID (its use
/// counted), or, when the key is due for a rekey, as a full envelope for
/// `recipients` whose new key replaces the session's. Returns the sealed
/// message and its DER body.
pub fn seal_in_session(
    msg: &Message,
    me: &str,
    recipients: &RecipientArgs,
    state: &StateArgs,
    name: &str,
    ctx: &mut Context,
) -> Result<(Message, Vec<u8>), Error> {
    let seal_err = |err: SealError| Error::Seal {
        name: name.to_owned(),
        err,
    };
    let call_id = msg.call_id().map_err(|e| seal_err(e.into()))?;
    let store = state.store(me)?;
    match store.use_key(call_id, ctx.now(), state.max_uses, state.max_age)? {
        Use::Key(key) => {
            let sealed = seal_session(msg, &key, ctx).map_err(seal_err)?;
            Ok((sealed.message, sealed.der))
        }
        Use::Rekey(reason) => {
            if !recipients.any() {
                return Err(Error::usage(
                    format!("{reason}: the session is due for a rekey"),
                    "give --peer CERT (and the --disclose relays) so a full envelope with a new key goes out, or send `sipseal rekey`",
                ));
            }
            eprintln!("rekey: {reason}; sealing a full envelope under a new session key");
            full_envelope(msg, me, recipients, state, name, ctx)
        }
        Use::NoSession => Err(Error::usage(
            format!(
                "{name}: no session key for Call-ID {call_id} in {}",
                store.path().display()
            ),
            "seal the session's first message with `sipseal seal --peer CERT` (or open the one you received) with the same --state",
        )),
    }
}

/// A full envelope for `recipients`, its key recorded as `me`'s session key.
fn full_envelope(
    msg: &Message,
    me: &str,
    recipients: &RecipientArgs,
    state: &StateArgs,
    name: &str,
    ctx: &mut Context,
) -> Result<(Message, Vec<u8>), Error> {
    let spec = recipients.spec(ctx.now())?;
    let sealed = seal_message(msg, &spec, ctx).map_err(|err| Error::Seal {
        name: name.to_owned(),
        err,
    })?;
    let peer = aor(&sealed.message, receiver_header(&sealed.message));
    state.record_session(me, msg, &sealed.cek, Role::Ua, peer.as_deref(), ctx)?;
    Ok((sealed.message, sealed.der))
}

/// `rekey` arguments.
#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// A message of the session with a plaintext body (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    #[command(flatten)]
    pub recipients: RecipientArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Write here (atomically) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Run `rekey`: a full envelope whose fresh CEK gives the session a new
/// key; every party that opens it replaces the old key, which still opens
/// messages in flight for --grace.
pub fn rekey(args: RekeyArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let name = display_name(&args.input);
    let msg = read_message(&args.input)?;
    let me = sender(&msg, &name)?;
    let call_id = msg.call_id().map_err(|e| Error::Seal {
        name: name.clone(),
        err: e.into(),
    })?;
    let store = args.state.store(&me)?;
    if store.load()?.find(call_id).is_none() {
        return Err(Error::usage(
            format!(
                "{name}: no session for Call-ID {call_id} in {}",
                store.path().display()
            ),
            "a rekey replaces a session's key; start the session with `sipseal seal`",
        ));
    }
    let (message, _) = full_envelope(&msg, &me, &args.recipients, &args.state, &name, ctx)?;
    write_output(args.output.as_ref(), &message.to_bytes())?;
    Ok(Exit::Ok)
}
