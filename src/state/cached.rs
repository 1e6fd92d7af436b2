//! A cache in front of a durable store, for a long-running relay: what it
//! looks up on the warm path (a session key for each message of a call,
//! the branch secret, a call's pinhole state) is answered from memory;
//! what it learns is written through to the store before the message
//! that taught it goes on, so a relay killed at any moment finds every
//! session key it forwarded a message under. Only what changes is
//! written: a message that leaves a call's pinholes as they were, or a
//! session key already known, writes nothing.
//!
//! Several relays may share the store behind one address (Redis): a
//! session recorded by another one is not in this cache, so a miss (or a
//! key that does not match) reads through to the store.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use super::{Apply, PinholeStore, SessionStore, StepError, StoreError};
use crate::pinhole::{CallState, Changes, Seen};
use crate::session::{Entry, Recorded, SessionKey, Sessions, Use};

type Key = (String, String);

/// Sessions held in memory at most; past it, the oldest half is dropped
/// (read through again when needed), so that a flood of new calls cannot
/// grow the relay without bound.
pub const MAX_CACHED: usize = 200_000;

/// Sessions (per owner and Call-ID) and secrets in memory, `S` behind.
#[derive(Debug)]
pub struct CachedStore<S> {
    inner: S,
    entries: Mutex<HashMap<Key, Entry>>,
    limit: usize,
    secrets: Mutex<HashMap<String, Zeroizing<[u8; 32]>>>,
    /// Calls whose pinhole state the last step left unchanged, with that
    /// step's changes: the same message seen again needs no write.
    quiet: Mutex<HashMap<Key, Changes>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S> CachedStore<S> {
    /// A cache in front of `inner`.
    pub fn new(inner: S) -> CachedStore<S> {
        CachedStore {
            inner,
            entries: Mutex::new(HashMap::new()),
            limit: MAX_CACHED,
            secrets: Mutex::new(HashMap::new()),
            quiet: Mutex::new(HashMap::new()),
        }
    }

    /// A cache that holds at most `limit` sessions.
    pub fn with_limit(inner: S, limit: usize) -> CachedStore<S> {
        CachedStore {
            limit: limit.max(2),
            ..CachedStore::new(inner)
        }
    }

    /// Keep `entry` in memory, making room first when the cache is full.
    fn keep(&self, key: Key, entry: Entry) {
        let mut entries = locked(&self.entries);
        if entries.len() >= self.limit && !entries.contains_key(&key) {
            let mut created: Vec<OffsetDateTime> = entries.values().map(|e| e.created).collect();
            created.sort_unstable();
            let cut = created[created.len() / 2];
            entries.retain(|_, e| e.created > cut);
        }
        entries.insert(key, entry);
    }

    /// The store behind.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many sessions are held in memory.
    pub fn cached(&self) -> usize {
        locked(&self.entries).len()
    }

    fn forget_call(&self, owner: &str, call_id: &str) {
        locked(&self.entries).remove(&(owner.to_owned(), call_id.to_owned()));
    }

    fn forget_owner(&self, owner: &str) {
        locked(&self.entries).retain(|(o, _), _| o != owner);
    }
}

impl<S: SessionStore> SessionStore for CachedStore<S> {
    fn load(&self, owner: &str) -> Result<Sessions, StoreError> {
        self.inner.load(owner)
    }

    fn read(&self, owner: &str, f: &mut dyn FnMut(&Sessions)) -> Result<(), StoreError> {
        self.inner.read(owner, f)
    }

    fn entry(&self, owner: &str, call_id: &str) -> Result<Option<Entry>, StoreError> {
        let key = (owner.to_owned(), call_id.to_owned());
        if let Some(e) = locked(&self.entries).get(&key) {
            return Ok(Some(e.clone()));
        }
        let found = self.inner.entry(owner, call_id)?;
        if let Some(e) = &found {
            self.keep(key, e.clone());
        }
        Ok(found)
    }

    fn update(&self, owner: &str, f: &mut dyn FnMut(&mut Sessions)) -> Result<(), StoreError> {
        let r = self.inner.update(owner, f);
        self.forget_owner(owner);
        r
    }

    fn all(&self) -> Result<Vec<(String, Sessions)>, StoreError> {
        self.inner.all()
    }

    fn secret(
        &self,
        owner: &str,
        fresh: &mut dyn FnMut() -> [u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        if let Some(s) = locked(&self.secrets).get(owner) {
            return Ok(s.clone());
        }
        let s = self.inner.secret(owner, fresh)?;
        locked(&self.secrets).insert(owner.to_owned(), s.clone());
        Ok(s)
    }

    /// Written through; a key this cache already holds for the call is
    /// not written again (a retransmitted INVITE).
    fn record_capped(
        &self,
        owner: &str,
        entry: Entry,
        now: OffsetDateTime,
        grace: Duration,
        cap: Option<usize>,
    ) -> Result<Recorded, StoreError> {
        let key = (owner.to_owned(), entry.call_id.clone());
        let known = locked(&self.entries)
            .get(&key)
            .is_some_and(|e| e.reference == entry.reference && entry.onward.is_none());
        if known {
            return Ok(Recorded::Same);
        }
        let kept = entry.clone();
        let r = self.inner.record_capped(owner, entry, now, grace, cap);
        match r {
            // A new session is stored as it came: keep it here too.
            Ok(Recorded::New) => self.keep(key, kept),
            // The store merged it with what it held: read that back when needed.
            _ => {
                locked(&self.entries).remove(&key);
            }
        }
        r
    }

    fn record(
        &self,
        owner: &str,
        entry: Entry,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<Recorded, StoreError> {
        self.record_capped(owner, entry, now, grace, None)
    }

    fn lookup(
        &self,
        owner: &str,
        reference: &[u8],
        call_id: Option<&str>,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<Option<SessionKey>, StoreError> {
        let Some(call_id) = call_id else {
            return self.inner.lookup(owner, reference, None, now, grace);
        };
        let key = (owner.to_owned(), call_id.to_owned());
        let hit = |e: &Entry| {
            Sessions {
                version: Sessions::VERSION,
                identity: None,
                sessions: vec![e.clone()],
            }
            .lookup(reference, Some(call_id), now, grace)
        };
        if let Some(k) = locked(&self.entries).get(&key).and_then(hit) {
            return Ok(Some(k));
        }
        // Not here, or another key (a rekey at another relay): the store.
        let Some(e) = self.inner.entry(owner, call_id)? else {
            return Ok(None);
        };
        let found = hit(&e);
        self.keep(key, e);
        Ok(found)
    }

    fn use_key(
        &self,
        owner: &str,
        call_id: &str,
        now: OffsetDateTime,
        max_uses: Option<u64>,
        max_age: Option<Duration>,
    ) -> Result<Use, StoreError> {
        let r = self.inner.use_key(owner, call_id, now, max_uses, max_age);
        self.forget_call(owner, call_id);
        r
    }

    fn next_cseq(&self, owner: &str, call_id: &str, floor: u32) -> Result<u32, StoreError> {
        let r = self.inner.next_cseq(owner, call_id, floor);
        self.forget_call(owner, call_id);
        r
    }

    fn forget(&self, owner: &str, what: &str) -> Result<bool, StoreError> {
        let r = self.inner.forget(owner, what);
        self.forget_owner(owner);
        r
    }
}

impl<S: PinholeStore> PinholeStore for CachedStore<S> {
    /// A message that changes nothing a previous one did not (the ACK,
    /// a retransmission, an in-dialog request without SDP) is answered
    /// from memory; anything else goes to the store.
    fn step_applied(
        &self,
        owner: &str,
        call_id: &str,
        seen: &Seen,
        apply: Apply<'_>,
    ) -> Result<Changes, StepError> {
        let key = (owner.to_owned(), call_id.to_owned());
        // What can change a call's pinholes: an SDP, a BYE, a failure
        // answering an offer.
        let quiet = seen.streams.is_none()
            && !(seen.is_request && seen.method.eq_ignore_ascii_case("BYE"))
            && seen.status.is_none_or(|s| s < 300);
        if quiet && let Some(c) = locked(&self.quiet).get(&key) {
            return Ok(c.clone());
        }
        let changes = self.inner.step_applied(owner, call_id, seen, apply)?;
        let mut q = locked(&self.quiet);
        if quiet && changes.state == "unchanged" {
            if q.len() >= self.limit {
                q.clear();
            }
            q.insert(key, changes.clone());
        } else {
            q.remove(&key);
        }
        Ok(changes)
    }

    fn change(
        &self,
        owner: &str,
        call_id: &str,
        f: &mut dyn FnMut(&mut CallState) -> Changes,
        apply: Apply<'_>,
    ) -> Result<Changes, StepError> {
        locked(&self.quiet).remove(&(owner.to_owned(), call_id.to_owned()));
        self.inner.change(owner, call_id, f, apply)
    }

    fn calls(&self, owner: &str) -> Result<Vec<CallState>, StoreError> {
        self.inner.calls(owner)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::session::{DEFAULT_GRACE, Policy, Role};
    use crate::state::MemoryStore;

    #[test]
    fn the_warm_path_is_served_from_memory_and_a_miss_reads_through() {
        let now = datetime!(2026-01-01 0:00 UTC);
        let cache = CachedStore::new(MemoryStore::new());
        let first = Entry::new("c", &[7u8; 32], Role::Relay, None, now, &Policy::default());
        let r = cache
            .record("me", first.clone(), now, DEFAULT_GRACE)
            .unwrap();
        assert_eq!(r, Recorded::New);
        // Written through: the store behind has it.
        assert!(cache.inner().entry("me", "c").unwrap().is_some());
        let found = cache.lookup("me", &first.reference, Some("c"), now, DEFAULT_GRACE);
        assert!(found.unwrap().is_some());
        assert_eq!(cache.cached(), 1);

        // Another relay sharing the store rekeys the call: the new key is
        // not in this cache, so the lookup reads through.
        let second = Entry::new("c", &[8u8; 32], Role::Relay, None, now, &Policy::default());
        cache
            .inner()
            .record("me", second.clone(), now, DEFAULT_GRACE)
            .unwrap();
        let found = cache.lookup("me", &second.reference, Some("c"), now, DEFAULT_GRACE);
        assert_eq!(found.unwrap().unwrap().reference, second.reference);

        // From memory now: even with the store behind emptied, it answers.
        assert!(cache.inner().forget("me", "c").unwrap());
        let found = cache.lookup("me", &second.reference, Some("c"), now, DEFAULT_GRACE);
        assert!(found.unwrap().is_some());
        // A retransmitted full envelope with the key it holds writes nothing.
        let again = cache.record("me", second, now, DEFAULT_GRACE).unwrap();
        assert_eq!(again, Recorded::Same);
        assert!(cache.inner().entry("me", "c").unwrap().is_none());
    }

    #[test]
    fn a_flood_of_calls_cannot_grow_the_cache_past_its_limit() {
        let start = datetime!(2026-01-01 0:00 UTC);
        let cache = CachedStore::with_limit(MemoryStore::new(), 100);
        for i in 0..1_000 {
            let now = start + Duration::seconds(i);
            let e = Entry::new(
                &format!("call-{i}"),
                &[i as u8; 32],
                Role::Relay,
                None,
                now,
                &Policy::default(),
            );
            cache.record("me", e, now, DEFAULT_GRACE).unwrap();
            assert!(cache.cached() <= 100, "{} held", cache.cached());
        }
        // The newest are still served from memory; an old one reads through.
        let now = start + Duration::seconds(1_000);
        let old = cache.inner().entry("me", "call-3").unwrap().unwrap();
        cache.inner().forget("me", "call-999").unwrap();
        let k = cache
            .lookup(
                "me",
                &Entry::new(
                    "call-999",
                    &[999u32 as u8; 32],
                    Role::Relay,
                    None,
                    now,
                    &Policy::default(),
                )
                .reference,
                Some("call-999"),
                now,
                DEFAULT_GRACE,
            )
            .unwrap();
        assert!(k.is_some(), "served from memory");
        let k = cache
            .lookup("me", &old.reference, Some("call-3"), now, DEFAULT_GRACE)
            .unwrap();
        assert!(k.is_some(), "read through");
    }
}
