//! `--state DIR`, shared by every command that keeps state, and recording
//! session keys (SPEC §3.2) in it.

use std::path::PathBuf;

use clap::Args;

use super::error::Error;
use crate::context::Context;
use crate::sealing::SealedMessage;
use crate::session::{DEFAULT_GRACE, Entry, Recorded, Role, Store};
use crate::sip::Message;
use crate::sip::headers::addr_spec;
use crate::state::StateDir;

/// Where state is kept.
#[derive(Debug, Args, Default)]
pub struct StateArgs {
    /// State directory: session keys and pinhole state, one subdirectory
    /// per identity (default: $SIPSEAL_STATE, else $XDG_STATE_HOME/sipseal).
    #[arg(long, value_name = "DIR", env = "SIPSEAL_STATE", global = true)]
    pub state: Option<PathBuf>,
}

impl StateArgs {
    /// The state directory.
    pub fn dir(&self) -> Result<StateDir, Error> {
        Ok(StateDir::resolve(self.state.as_deref())?)
    }

    /// Store the session key derived from `cek` (a full envelope of
    /// `msg`) for the identity named `identity`. A message without a
    /// Call-ID (bare CMS) has no session to record.
    pub fn record_session(
        &self,
        identity: &str,
        msg: &Message,
        cek: &[u8],
        role: Role,
        peer: Option<&str>,
        ctx: &Context,
    ) -> Result<(), Error> {
        let Ok(call_id) = msg.call_id() else {
            return Ok(());
        };
        let store = Store::at(&self.dir()?.identity_dir(identity));
        let now = ctx.now();
        let entry = Entry::new(call_id, cek, role, peer.map(str::to_owned), now);
        if store.record(entry, now, DEFAULT_GRACE)? == Recorded::Replaced {
            eprintln!(
                "session key updated for Call-ID {call_id}; the previous key opens messages for {} s more",
                DEFAULT_GRACE.whole_seconds()
            );
        }
        Ok(())
    }
}

impl StateArgs {
    /// The sender's side of a sealed message: its session key goes into
    /// the store of the sender (the identity whose SAN URI is the From AOR
    /// of a request, the To AOR of a response), the other party as peer.
    pub fn record_sender(&self, sealed: &SealedMessage, ctx: &Context) -> Result<(), Error> {
        let msg = &sealed.message;
        let Some(me) = aor(msg, sender_header(msg)) else {
            return Ok(());
        };
        let peer = aor(msg, receiver_header(msg));
        self.record_session(&me, msg, &sealed.cek, Role::Ua, peer.as_deref(), ctx)
    }
}

/// The header naming who sent `msg`: From for a request, To for a response.
pub fn sender_header(msg: &Message) -> &'static str {
    if msg.is_request() { "From" } else { "To" }
}

/// The header naming who receives `msg`.
pub fn receiver_header(msg: &Message) -> &'static str {
    if msg.is_request() { "To" } else { "From" }
}

/// The AOR (addr-spec) of a header, e.g. the From of a message.
pub fn aor(msg: &Message, header: &str) -> Option<String> {
    msg.header(header).map(|v| addr_spec(v).to_owned())
}
