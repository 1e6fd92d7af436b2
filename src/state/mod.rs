//! Where a user agent or relay keeps what it learns between messages
//! (docs/SPEC.md §5): session keys and each call's pinholes, per identity. The
//! workflows see only the traits; [`FileStore`] keeps YAML files under a
//! state directory (the command line), [`MemoryStore`] keeps everything in
//! memory (the demo, tests, and later a cache in front of a shared store).

mod cached;
mod file;
mod memory;
#[cfg(feature = "live")]
mod redis;
mod session_files;

use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

pub use cached::CachedStore;
pub use file::{FileStore, StateDir, clear_leftovers, create_private_dir, lock};
pub(crate) use file::{read_yaml, write_yaml};
pub use memory::MemoryStore;
#[cfg(feature = "live")]
pub use redis::RedisStore;

use crate::error::ErrorClass;
use crate::firewall::FirewallError;
use crate::pinhole::{CallState, Changes, Seen};
use crate::session::{Entry, Recorded, SessionKey, Sessions, Use};

/// A store that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// What is stored does not read as a store.
    #[error("{path} is not a sipseal state file: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    /// What kind of failure it is.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Io { .. } => ErrorClass::Io,
            StoreError::Corrupt { .. } => ErrorClass::Config,
        }
    }
}

/// Session keys per identity (the owner: a certificate's SAN URI or an
/// AOR). Implementations make [`SessionStore::update`] atomic, so
/// parallel senders never lose a use or an entry.
pub trait SessionStore {
    /// The sessions of `owner` (none yet: empty).
    fn load(&self, owner: &str) -> Result<Sessions, StoreError>;

    /// Show the sessions of `owner` to `f` (by default a [`SessionStore::load`];
    /// a store that holds them in memory shows them in place).
    fn read(&self, owner: &str, f: &mut dyn FnMut(&Sessions)) -> Result<(), StoreError> {
        f(&self.load(owner)?);
        Ok(())
    }

    /// The session of `owner` for `call_id`, if one is stored (a store
    /// that keeps one record per call reads only that one).
    fn entry(&self, owner: &str, call_id: &str) -> Result<Option<Entry>, StoreError> {
        let mut out = None;
        self.read(owner, &mut |s| {
            out = s.sessions.iter().find(|e| e.call_id == call_id).cloned();
        })?;
        Ok(out)
    }

    /// Change the sessions of `owner` at once: read, `f`, write.
    fn update(&self, owner: &str, f: &mut dyn FnMut(&mut Sessions)) -> Result<(), StoreError>;

    /// Every owner with stored sessions, and those sessions.
    fn all(&self) -> Result<Vec<(String, Sessions)>, StoreError>;

    /// The secret `owner` keys its stateless work with (a relay's Via
    /// branches, RFC 3261 §16.11): made once from `fresh` and kept with
    /// the state, so every process sharing the store recognises it.
    fn secret(
        &self,
        owner: &str,
        fresh: &mut dyn FnMut() -> [u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, StoreError>;

    /// [`SessionStore::record`] for a sender that may add at most `cap`
    /// sessions (its peer AOR's), when `cap` is given: one that already
    /// holds that many gets [`Recorded::Capped`] and nothing is stored.
    /// What counts against the cap is what was stored under one (a relay
    /// caps only senders no one vouched for: a vouched-for session costs
    /// the file and Redis stores no mark); this default, for stores that
    /// keep no marks (memory), counts every session of the sender.
    fn record_capped(
        &self,
        owner: &str,
        entry: Entry,
        now: OffsetDateTime,
        grace: Duration,
        cap: Option<usize>,
    ) -> Result<Recorded, StoreError> {
        let mut capped = false;
        let peer = entry.peer.clone();
        let call_id = entry.call_id.clone();
        if let (Some(cap), Some(peer)) = (cap, &peer) {
            self.read(owner, &mut |s| {
                let known = s.sessions.iter().any(|e| e.call_id == call_id);
                let held = s
                    .sessions
                    .iter()
                    .filter(|e| {
                        e.peer
                            .as_deref()
                            .is_some_and(|p| p.eq_ignore_ascii_case(peer))
                    })
                    .count();
                capped = !known && held >= cap;
            })?;
        }
        if capped {
            return Ok(Recorded::Capped);
        }
        self.record(owner, entry, now, grace)
    }

    /// Record the key of a full envelope (see [`Sessions::record`]).
    fn record(
        &self,
        owner: &str,
        entry: Entry,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<Recorded, StoreError> {
        change(self, owner, move |s| s.record(entry, now, grace))
    }

    /// The key of `owner` that opens a message under `reference` (see
    /// [`Sessions::lookup`]). Reads only.
    fn lookup(
        &self,
        owner: &str,
        reference: &[u8],
        call_id: Option<&str>,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<Option<SessionKey>, StoreError> {
        let mut key = None;
        self.read(owner, &mut |s| {
            key = s.lookup(reference, call_id, now, grace)
        })?;
        Ok(key)
    }

    /// A sender's use of its key (see [`Sessions::use_key`]).
    fn use_key(
        &self,
        owner: &str,
        call_id: &str,
        now: OffsetDateTime,
        max_uses: Option<u64>,
        max_age: Option<Duration>,
    ) -> Result<Use, StoreError> {
        change(self, owner, |s| s.use_key(call_id, now, max_uses, max_age))
    }

    /// The next local CSeq of a dialog (see [`Sessions::next_cseq`]).
    fn next_cseq(&self, owner: &str, call_id: &str, floor: u32) -> Result<u32, StoreError> {
        change(self, owner, |s| s.next_cseq(call_id, floor))
    }

    /// Forget a session by Call-ID or reference; whether it was there.
    fn forget(&self, owner: &str, what: &str) -> Result<bool, StoreError> {
        change(self, owner, |s| s.forget(what))
    }
}

/// [`SessionStore::update`] with a result.
fn change<S: SessionStore + ?Sized, T>(
    store: &S,
    owner: &str,
    f: impl FnOnce(&mut Sessions) -> T,
) -> Result<T, StoreError> {
    let mut f = Some(f);
    let mut out = None;
    store.update(owner, &mut |s| {
        if let Some(f) = f.take() {
            out = Some(f(s));
        }
    })?;
    // `update` calls its closure exactly once.
    out.ok_or_else(|| StoreError::Corrupt {
        path: owner.to_owned(),
        reason: "the store did not apply the change".into(),
    })
}

/// Why a call's pinhole change was not kept.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The firewall did not confirm the change: the state is as it was.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
}

/// What confirms a pinhole change before it is kept (a firewall), or
/// nothing.
pub type Apply<'a> = &'a mut dyn FnMut(&Changes) -> Result<(), FirewallError>;

/// Each call's pinhole state, per identity (the relay).
pub trait PinholeStore {
    /// Change the state of `call_id` with `f`, at once (no other change
    /// to that call comes between reading and writing it). What changes
    /// goes to `apply` before the new state is kept: when `apply` fails,
    /// nothing is kept and its error comes back. A call that is over
    /// leaves nothing behind.
    fn change(
        &self,
        owner: &str,
        call_id: &str,
        f: &mut dyn FnMut(&mut CallState) -> Changes,
        apply: Apply<'_>,
    ) -> Result<Changes, StepError>;

    /// The state of every call `owner` keeps.
    fn calls(&self, owner: &str) -> Result<Vec<CallState>, StoreError>;

    /// Apply what one message shows to the state of `call_id` and say what
    /// changes (see [`crate::pinhole::CallState::step`]), confirmed by
    /// `apply` before it is kept.
    fn step_applied(
        &self,
        owner: &str,
        call_id: &str,
        seen: &Seen,
        apply: Apply<'_>,
    ) -> Result<Changes, StepError> {
        self.change(owner, call_id, &mut |s| s.step(seen), apply)
    }

    /// [`PinholeStore::step_applied`] with nothing to confirm.
    fn step(&self, owner: &str, call_id: &str, seen: &Seen) -> Result<Changes, StepError> {
        self.step_applied(owner, call_id, seen, &mut |_| Ok(()))
    }
}

/// End the calls of `owner` whose last offer or answer passed before
/// `cutoff` (Unix seconds; `now` is when this runs): their BYE never came.
/// Each ending is confirmed by `apply` before it is kept. Returns what
/// was ended.
pub fn expire_calls(
    store: &dyn PinholeStore,
    owner: &str,
    cutoff: i64,
    now: i64,
    apply: Apply<'_>,
) -> Result<Vec<Changes>, StepError> {
    let mut ended = Vec::new();
    for call in store.calls(owner)? {
        // A call that never said when counts from now (and keeps that).
        if call.since.is_some_and(|t| t >= cutoff) {
            continue;
        }
        let changes = store.change(
            owner,
            &call.call_id,
            &mut |s| match s.older_than(cutoff, now) {
                true => {
                    s.end("ended: no BYE came within --pinhole-max-age of its last offer or answer")
                }
                false => Changes::none(&s.call_id),
            },
            apply,
        )?;
        if changes.state == "ended" {
            ended.push(changes);
        }
    }
    Ok(ended)
}
