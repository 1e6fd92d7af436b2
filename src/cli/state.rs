//! `--state DIR`, shared by every command that keeps state, and recording
//! session keys (SPEC §3.2) in it.

use std::path::PathBuf;

use clap::Args;

use super::error::Error;
use crate::context::Context;
use crate::envelope::Envelope;
use crate::sealing::SealedMessage;
use crate::session::{
    DEFAULT_GRACE, DEFAULT_MAX_AGE, DEFAULT_MAX_USES, Entry, Policy, Recorded, Role, SessionKey,
    Store,
};
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
    /// Session key policy: messages a sender seals under one session key
    /// before it rekeys [default: 100].
    #[arg(long, value_name = "N", global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_uses: Option<u64>,
    /// Session key policy: age (e.g. 30m, 12h, 3600s) after which a sender
    /// rekeys and receivers refuse the key [default: 24h].
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_duration)]
    pub max_age: Option<time::Duration>,
    /// How long a replaced or expired session key still opens messages in
    /// flight [default: 32s].
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_duration)]
    pub grace: Option<time::Duration>,
}

/// `30s`, `5m`, `12h`, `1h 30m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<time::Duration, String> {
    let std = match s.trim().parse::<u64>() {
        Ok(secs) => std::time::Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("{e}; give e.g. 90s, 30m or 12h"))?,
    };
    time::Duration::try_from(std).map_err(|e| e.to_string())
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
        let store = self.store(identity)?;
        let now = ctx.now();
        let policy = self.policy();
        let entry = Entry::new(call_id, cek, role, peer.map(str::to_owned), now, &policy);
        if store.record(entry, now, policy.grace)? == Recorded::Replaced {
            eprintln!(
                "session key updated for Call-ID {call_id}; the previous key opens messages for {} s more",
                policy.grace.whole_seconds()
            );
        }
        Ok(())
    }

    /// The session policy from the flags, defaults filled in.
    pub fn policy(&self) -> Policy {
        Policy {
            max_uses: self.max_uses.unwrap_or(DEFAULT_MAX_USES),
            max_age: self.max_age.unwrap_or(DEFAULT_MAX_AGE),
            grace: self.grace.unwrap_or(DEFAULT_GRACE),
        }
    }

    /// The session store of the identity named `identity`.
    pub fn store(&self, identity: &str) -> Result<Store, Error> {
        Ok(Store::of(&self.dir()?, identity))
    }

    /// When `env` is a session message (SPEC §3.2), the key one of
    /// `owners` stored for its reference (and the message's Call-ID) that
    /// is still valid now. Identifiers only: no key is used here.
    pub fn session_key(
        &self,
        owners: &[String],
        env: &Envelope,
        msg: Option<&Message>,
        ctx: &Context,
    ) -> Result<Option<SessionKey>, Error> {
        let Some(reference) = env.session_reference() else {
            return Ok(None);
        };
        let call_id = msg.and_then(|m| m.call_id().ok());
        let grace = self.policy().grace;
        for owner in owners {
            if let Some(key) = self
                .store(owner)?
                .lookup(reference, call_id, ctx.now(), grace)?
            {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

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
