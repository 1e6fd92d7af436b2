//! The shared store (docs/SPEC.md §5, §7): session keys, branch secrets and
//! pinhole state in Redis, so that several relay processes behind one
//! address serve the same calls. `--state redis://HOST:PORT`.
//!
//! ```text
//! sipseal:<owner>:secret                 32 bytes, set once (SET NX)
//! sipseal:<owner>:session:<Call-ID>      one session (JSON), TTL = its expiry + grace
//! sipseal:<owner>:pinhole:<Call-ID>      one call's pinhole state (JSON), TTL 24 h
//! sipseal:<owner>:peer:<AOR>             Call-IDs of a sender's sessions (the cap), TTL ≥ 24 h
//! sipseal:owners                         every owner with sessions
//! ```
//!
//! A change to one session or call is a WATCH/MULTI/EXEC transaction, so
//! two relays recording the same call never lose a write. Whole-owner
//! changes (`session forget` by reference, listing) read the owner's keys
//! with SCAN and write each one back: they are administrative, not atomic
//! across sessions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration as StdDuration;

use redis::{Commands, Connection, RedisResult};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use super::{Apply, PinholeStore, SessionStore, StepError, StoreError};
use crate::pinhole::{CallState, Changes};
use crate::session::{DEFAULT_GRACE, Entry, Recorded, SessionKey, Sessions, Use};

/// How long a call's pinhole state is kept after its last change.
const PINHOLE_TTL: u64 = 24 * 3600;

/// How long a sender's set of Call-IDs (for the session cap) is kept
/// after its last session was added, at least.
const PEER_TTL: u64 = 24 * 3600;

/// Connections kept open to the server.
const POOL: usize = 8;

/// A Redis server holding the state of several relays.
pub struct RedisStore {
    url: String,
    client: redis::Client,
    pool: Vec<Mutex<Option<Connection>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .finish()
    }
}

fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn session_key(owner: &str, call_id: &str) -> String {
    format!("sipseal:{owner}:session:{call_id}")
}

fn peer_key(owner: &str, peer: &str) -> String {
    format!("sipseal:{owner}:peer:{}", peer.to_ascii_lowercase())
}

/// Seconds a session is worth keeping: until its expiry and grace, or
/// its previous key's end, whichever is later; `None`: no age limit.
fn ttl(e: &Entry, now: OffsetDateTime, grace: Duration) -> Option<u64> {
    let mut until = e.expiry.map(|x| x + grace)?;
    if let Some(p) = &e.previous {
        until = until.max(p.until);
    }
    Some((until - now).whole_seconds().max(1) as u64)
}

impl RedisStore {
    /// Connect to `url` (`redis://HOST:PORT[/DB]`), checking the server answers.
    pub fn open(url: &str) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(|e| err(url, e))?;
        let store = RedisStore {
            url: url.to_owned(),
            client,
            pool: (0..POOL).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        };
        store.with("PING", |c| redis::cmd("PING").query::<String>(c))?;
        Ok(store)
    }

    /// Run `f` on a pooled connection (opened when needed; dropped after
    /// an error, so the next use reconnects).
    fn with<T>(
        &self,
        what: &str,
        f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        // A round trip to the server: a live relay's other messages go on
        // meanwhile.
        crate::blocking::offload(|| self.with_now(what, f))
    }

    fn with_now<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        let mut guard = self.pool[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A connection kept from before the server restarted fails on its
        // first use: then once more on a new one (H6).
        let mut fresh = guard.is_none();
        loop {
            if guard.is_none() {
                let c = self
                    .client
                    .get_connection_with_timeout(StdDuration::from_secs(2))
                    .map_err(|e| err(&self.url, e))?;
                *guard = Some(c);
            }
            let Some(conn) = guard.as_mut() else {
                return Err(err(&self.url, "no connection"));
            };
            match f(conn) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    *guard = None;
                    let stale = e.is_io_error() || e.is_connection_dropped();
                    if fresh || !stale {
                        return Err(err(&format!("{} ({what})", self.url), e));
                    }
                    fresh = true;
                }
            }
        }
    }

    /// The value at `key`, as JSON (none, or one that does not read: `None`).
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let bytes: Option<Vec<u8>> = self.with("GET", |c| c.get(key))?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Change the JSON value at `key` at once (WATCH/MULTI/EXEC, retried
    /// when another writer came first): `f` changes it (it is `T::default`
    /// when absent) and says how many seconds to keep it.
    pub fn update_json<T>(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut T) -> u64,
    ) -> Result<(), StoreError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Default,
    {
        self.with("update", |c| {
            redis::transaction(c, &[key], |c, pipe| {
                let old: Option<Vec<u8>> = c.get(key)?;
                let mut value: T = old
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                let ttl = f(&mut value).max(1);
                let json = serde_json::to_vec(&value).unwrap_or_default();
                pipe.set_ex(key, json, ttl).ignore();
                pipe.query::<()>(c)?;
                Ok(Some(()))
            })
        })
    }

    /// Every key matching `pattern` (SCAN; glob characters of a literal
    /// part escaped with [`RedisStore::escape`]).
    pub fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        self.keys(pattern)
    }

    /// `s` with Redis glob characters escaped.
    pub fn escape(s: &str) -> String {
        escape_glob(s)
    }

    fn keys(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        self.with("SCAN", |c| {
            let iter: redis::Iter<'_, String> = c.scan_match(pattern)?;
            iter.collect()
        })
    }

    /// Change one session at once: `f` sees it (or nothing) and returns
    /// the entry to keep (or none) and a result; `capped`: it is recorded
    /// under a cap, so its sender's set counts it.
    fn change<T>(
        &self,
        owner: &str,
        call_id: &str,
        (now, grace, capped): (OffsetDateTime, Duration, bool),
        f: &mut dyn FnMut(Option<Entry>) -> (Option<Entry>, T),
    ) -> Result<T, StoreError> {
        let key = session_key(owner, call_id);
        self.with("session", |c| {
            redis::transaction(c, &[&key], |c, pipe| {
                let old: Option<Vec<u8>> = c.get(&key)?;
                let old = old.and_then(|b| serde_json::from_slice::<Entry>(&b).ok());
                let (new, out) = f(old);
                match new {
                    Some(e) => {
                        let json = serde_json::to_vec(&e).unwrap_or_default();
                        match ttl(&e, now, grace) {
                            Some(t) => pipe.set_ex(&key, json, t).ignore(),
                            None => pipe.set(&key, json).ignore(),
                        };
                        pipe.sadd("sipseal:owners", owner).ignore();
                        if let (true, Some(peer)) = (capped, &e.peer) {
                            // L3: every key ends; the set lives as long as
                            // the session added last, a day at least.
                            let set = peer_key(owner, peer);
                            let keep = ttl(&e, now, grace).unwrap_or(0).max(PEER_TTL);
                            pipe.sadd(&set, call_id).ignore();
                            pipe.expire(&set, keep as i64).ignore();
                        }
                    }
                    None => {
                        pipe.del(&key).ignore();
                    }
                }
                pipe.query::<()>(c)?;
                Ok(Some(out))
            })
        })
    }

    /// How many live sessions `peer` holds at `owner` that were stored
    /// under a cap (vouched-for sessions are not counted).
    fn held_by(&self, owner: &str, peer: &str) -> Result<usize, StoreError> {
        let set = peer_key(owner, peer);
        self.with("cap", |c| {
            let calls: Vec<String> = c.smembers(&set)?;
            let mut live = 0;
            for call in calls {
                if c.exists(session_key(owner, &call))? {
                    live += 1;
                } else {
                    c.srem::<_, _, ()>(&set, &call)?;
                }
            }
            Ok(live)
        })
    }
}

/// `f` on a call's one session (or none) as [`Sessions`] has it; the
/// session to keep, and what `f` says.
fn on_one<T>(
    owner: &str,
    old: Option<Entry>,
    f: impl FnOnce(&mut Sessions) -> T,
) -> (Option<Entry>, T) {
    let mut s = Sessions::empty(Some(owner));
    s.sessions.extend(old);
    let out = f(&mut s);
    (s.sessions.pop(), out)
}

fn err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: what.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl SessionStore for RedisStore {
    fn load(&self, owner: &str) -> Result<Sessions, StoreError> {
        let pattern = format!("sipseal:{}:session:*", escape_glob(owner));
        let mut sessions = Sessions::empty(Some(owner));
        for key in self.keys(&pattern)? {
            let bytes: Option<Vec<u8>> = self.with("GET", |c| c.get(&key))?;
            if let Some(e) = bytes.and_then(|b| serde_json::from_slice::<Entry>(&b).ok()) {
                sessions.sessions.push(e);
            }
        }
        sessions.sessions.sort_by_key(|e| e.created);
        Ok(sessions)
    }

    fn entry(&self, owner: &str, call_id: &str) -> Result<Option<Entry>, StoreError> {
        let bytes: Option<Vec<u8>> = self.with("GET", |c| c.get(session_key(owner, call_id)))?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    fn update(&self, owner: &str, f: &mut dyn FnMut(&mut Sessions)) -> Result<(), StoreError> {
        let before = self.load(owner)?;
        let mut after = before.clone();
        f(&mut after);
        for gone in before
            .sessions
            .iter()
            .filter(|b| !after.sessions.iter().any(|a| a.call_id == b.call_id))
        {
            self.change(
                owner,
                &gone.call_id,
                (OffsetDateTime::now_utc(), DEFAULT_GRACE, false),
                &mut |_| (None, ()),
            )?;
        }
        for e in after
            .sessions
            .into_iter()
            .filter(|a| !before.sessions.contains(a))
        {
            let call_id = e.call_id.clone();
            let mut e = Some(e);
            self.change(
                owner,
                &call_id,
                (OffsetDateTime::now_utc(), DEFAULT_GRACE, false),
                &mut |_| (e.take(), ()),
            )?;
        }
        Ok(())
    }

    fn all(&self) -> Result<Vec<(String, Sessions)>, StoreError> {
        let mut owners: Vec<String> = self.with("SMEMBERS", |c| c.smembers("sipseal:owners"))?;
        owners.sort();
        let mut out = Vec::new();
        for owner in owners {
            let s = self.load(&owner)?;
            if !s.sessions.is_empty() {
                out.push((owner, s));
            }
        }
        Ok(out)
    }

    fn secret(
        &self,
        owner: &str,
        fresh: &mut dyn FnMut() -> [u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        let key = format!("sipseal:{owner}:secret");
        let read = |bytes: Option<Vec<u8>>| -> Result<Option<Zeroizing<[u8; 32]>>, StoreError> {
            match bytes {
                None => Ok(None),
                Some(b) => <[u8; 32]>::try_from(b.as_slice())
                    .map(|a| Some(Zeroizing::new(a)))
                    .map_err(|_| StoreError::Corrupt {
                        path: key.clone(),
                        reason: "expected 32 bytes".into(),
                    }),
            }
        };
        if let Some(s) = read(self.with("GET", |c| c.get(&key))?)? {
            return Ok(s);
        }
        let candidate = Zeroizing::new(fresh());
        // Whoever sets it first wins; everyone reads the winner's.
        self.with("SET NX", |c| {
            c.set_nx::<_, _, bool>(&key, candidate.as_slice())
        })?;
        read(self.with("GET", |c| c.get(&key))?)?.ok_or_else(|| StoreError::Corrupt {
            path: key.clone(),
            reason: "the secret vanished".into(),
        })
    }

    fn record_capped(
        &self,
        owner: &str,
        entry: Entry,
        now: OffsetDateTime,
        grace: Duration,
        cap: Option<usize>,
    ) -> Result<Recorded, StoreError> {
        if let (Some(cap), Some(peer)) = (cap, &entry.peer) {
            let known = self.entry(owner, &entry.call_id)?.is_some();
            if !known && self.held_by(owner, peer)? >= cap {
                return Ok(Recorded::Capped);
            }
        }
        let call_id = entry.call_id.clone();
        self.change(owner, &call_id, (now, grace, cap.is_some()), &mut |old| {
            on_one(owner, old, |s| s.record(entry.clone(), now, grace))
        })
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
        let sessions = match call_id {
            Some(c) => Sessions {
                version: Sessions::VERSION,
                identity: None,
                sessions: self.entry(owner, c)?.into_iter().collect(),
            },
            None => self.load(owner)?,
        };
        Ok(sessions.lookup(reference, call_id, now, grace))
    }

    fn use_key(
        &self,
        owner: &str,
        call_id: &str,
        now: OffsetDateTime,
        max_uses: Option<u64>,
        max_age: Option<Duration>,
    ) -> Result<Use, StoreError> {
        self.change(owner, call_id, (now, DEFAULT_GRACE, false), &mut |old| {
            on_one(owner, old, |s| s.use_key(call_id, now, max_uses, max_age))
        })
    }

    fn next_cseq(&self, owner: &str, call_id: &str, floor: u32) -> Result<u32, StoreError> {
        let now = OffsetDateTime::now_utc();
        self.change(owner, call_id, (now, DEFAULT_GRACE, false), &mut |old| {
            on_one(owner, old, |s| s.next_cseq(call_id, floor))
        })
    }

    fn forget(&self, owner: &str, what: &str) -> Result<bool, StoreError> {
        if self.entry(owner, what)?.is_some() {
            let now = OffsetDateTime::now_utc();
            self.change(owner, what, (now, DEFAULT_GRACE, false), &mut |_| {
                (None, ())
            })?;
            return Ok(true);
        }
        let mut found = false;
        self.update(owner, &mut |s| found = s.forget(what))?;
        Ok(found)
    }
}

impl PinholeStore for RedisStore {
    /// In a WATCH/MULTI transaction: when another relay changed the call
    /// meanwhile, `f` and `apply` run again on what it wrote (an nft
    /// change is idempotent).
    fn change(
        &self,
        owner: &str,
        call_id: &str,
        f: &mut dyn FnMut(&mut CallState) -> Changes,
        apply: Apply<'_>,
    ) -> Result<Changes, StepError> {
        let key = format!("sipseal:{owner}:pinhole:{call_id}");
        let mut refused = None;
        let changes = self.with("pinholes", |c| {
            redis::transaction(c, &[&key], |c, pipe| {
                let old: Option<Vec<u8>> = c.get(&key)?;
                let mut state = old
                    .and_then(|b| serde_json::from_slice::<CallState>(&b).ok())
                    .filter(|s| s.call_id == call_id)
                    .unwrap_or_else(|| CallState::new(call_id));
                let changes = f(&mut state);
                if let Err(e) = apply(&changes) {
                    // Nothing is written: UNWATCH and give up.
                    refused = Some(e);
                    redis::cmd("UNWATCH").query::<()>(c)?;
                    return Ok(Some(changes));
                }
                if state.is_over() {
                    pipe.del(&key).ignore();
                } else {
                    let json = serde_json::to_vec(&state).unwrap_or_default();
                    pipe.set_ex(&key, json, PINHOLE_TTL).ignore();
                }
                pipe.query::<()>(c)?;
                Ok(Some(changes))
            })
        })?;
        match refused {
            Some(e) => Err(e.into()),
            None => Ok(changes),
        }
    }

    fn calls(&self, owner: &str) -> Result<Vec<CallState>, StoreError> {
        let keys = self.scan(&format!("sipseal:{owner}:pinhole:*"))?;
        let mut calls = Vec::new();
        for key in keys {
            let value: Option<Vec<u8>> = self.with("pinholes", |c| c.get(&key))?;
            if let Some(call) = value.and_then(|b| serde_json::from_slice::<CallState>(&b).ok()) {
                calls.push(call);
            }
        }
        calls.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        Ok(calls)
    }
}
