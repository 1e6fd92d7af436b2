//! Session keys (SPEC §3.2, §5): every party that opens a full envelope
//! derives the session reference and session KEK from its CEK, and keeps
//! them per Call-ID so later messages need no public-key operation.
//!
//! - reference = HKDF-SHA256(ikm = CEK, salt = empty, info = "sipseal cek reference")[..16]
//! - KEK       = HKDF-SHA256(ikm = CEK, salt = reference, info = "sipseal session kek"), 32 bytes
//!
//! The store is one YAML file per identity (`<state>/<identity>/sessions.yaml`,
//! mode 0600), rewritten atomically under the identity directory's lock, so
//! parallel invocations never lose an entry.

use std::path::{Path, PathBuf};

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::context::rfc3339;
use crate::envelope::RecipientKey;
use crate::fsio::write_atomic;
use crate::state::{StateError, lock};

/// Default number of messages a session key seals before a rekey.
pub const DEFAULT_MAX_USES: u64 = 100;
/// Default time a replaced key still opens messages in flight.
pub const DEFAULT_GRACE: Duration = Duration::seconds(32);
/// Default lifetime of a session key: a sender rekeys after it, receivers
/// refuse the key once it (and the grace time) has passed.
pub const DEFAULT_MAX_AGE: Duration = Duration::hours(24);

/// When keys are replaced and how long old ones are honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Messages a sender seals under one key before it rekeys.
    pub max_uses: u64,
    /// Age after which a sender rekeys and receivers refuse the key.
    pub max_age: Duration,
    /// How long a replaced key (and an expired one) still opens messages.
    pub grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_uses: DEFAULT_MAX_USES,
            max_age: DEFAULT_MAX_AGE,
            grace: DEFAULT_GRACE,
        }
    }
}

/// A session key ready to seal or open with: the reference (kekid on
/// the wire) and the KEK.
#[derive(Clone)]
pub struct SessionKey {
    /// The Call-ID of the session.
    pub call_id: String,
    /// The 16-byte session reference.
    pub reference: Vec<u8>,
    /// The 32-byte KEK.
    pub kek: Zeroizing<Vec<u8>>,
    /// Whether this is the replaced key, still inside its grace time.
    pub previous: bool,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey")
            .field("call_id", &self.call_id)
            .field("reference", &hex::encode(&self.reference))
            .field("kek", &"<redacted>")
            .field("previous", &self.previous)
            .finish()
    }
}

impl SessionKey {
    /// The key derived from `cek` (SPEC §3.2).
    pub fn derive(call_id: &str, cek: &[u8]) -> SessionKey {
        let keys = derive(cek);
        SessionKey {
            call_id: call_id.to_owned(),
            reference: keys.reference.to_vec(),
            kek: Zeroizing::new(keys.kek.to_vec()),
            previous: false,
        }
    }

    /// The key to open a session message with.
    pub fn recipient_key(&self) -> RecipientKey<'_> {
        RecipientKey::Session {
            reference: &self.reference,
            kek: &self.kek,
            previous: self.previous,
        }
    }

    fn from_hex(call_id: &str, reference: &str, kek: &str, previous: bool) -> Option<SessionKey> {
        Some(SessionKey {
            call_id: call_id.to_owned(),
            reference: hex::decode(reference).ok()?,
            kek: Zeroizing::new(hex::decode(kek).ok()?),
            previous,
        })
    }
}

/// What a sender may do with its session key now.
#[derive(Debug)]
pub enum Use {
    /// Seal under this key (its use counted).
    Key(SessionKey),
    /// The key is used up or too old: send a full envelope (a rekey).
    Rekey(String),
    /// No session for this Call-ID.
    NoSession,
}

/// The values derived from a CEK.
pub struct SessionKeys {
    /// The session reference (kekid of later messages).
    pub reference: [u8; 16],
    /// The session key-encryption key.
    pub kek: Zeroizing<[u8; 32]>,
}

/// Derive the session reference and KEK from a CEK (SPEC §3.2).
pub fn derive(cek: &[u8]) -> SessionKeys {
    let mut reference = [0u8; 16];
    // Lengths this small never fail: HKDF-SHA256 gives up to 8160 bytes.
    let _ = Hkdf::<Sha256>::new(Some(&[]), cek).expand(b"sipseal cek reference", &mut reference);
    let mut kek = Zeroizing::new([0u8; 32]);
    let _ = Hkdf::<Sha256>::new(Some(&reference), cek).expand(b"sipseal session kek", &mut *kek);
    SessionKeys { reference, kek }
}

/// Which side of the session this store belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A user agent (sender or receiver).
    Ua,
    /// A relay that opened the body.
    Relay,
}

/// A key that was replaced and still opens messages until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    pub reference: String,
    pub kek: String,
    pub until: String,
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub call_id: String,
    /// Hex of the 16-byte session reference.
    pub reference: String,
    /// Hex of the 32-byte session KEK.
    pub kek: String,
    pub role: Role,
    /// The other party (its AOR), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// RFC 3339.
    pub created: String,
    pub uses: u64,
    pub max_uses: u64,
    /// RFC 3339; none: no age limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// The CSeq number of the last in-dialog request this party built
    /// with `reply` (the local sequence of RFC 3261 §12.2.1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_cseq: Option<u32>,
}

impl Entry {
    /// A new entry for the keys derived from `cek`.
    pub fn new(
        call_id: &str,
        cek: &[u8],
        role: Role,
        peer: Option<String>,
        now: OffsetDateTime,
        policy: &Policy,
    ) -> Entry {
        let keys = derive(cek);
        Entry {
            call_id: call_id.to_owned(),
            reference: hex::encode(keys.reference),
            kek: hex::encode(*keys.kek),
            role,
            peer,
            created: rfc3339(now),
            uses: 0,
            max_uses: policy.max_uses,
            expiry: Some(rfc3339(now + policy.max_age)),
            previous: None,
            local_cseq: None,
        }
    }

    /// The current key.
    pub fn key(&self) -> Option<SessionKey> {
        SessionKey::from_hex(&self.call_id, &self.reference, &self.kek, false)
    }

    /// The keys that open messages at `now`: the current one until its
    /// expiry plus `grace`, the previous one until its `until`.
    pub fn keys_at(&self, now: OffsetDateTime, grace: Duration) -> Vec<SessionKey> {
        let mut out = Vec::new();
        if self
            .expiry
            .as_deref()
            .and_then(parse_time)
            .is_none_or(|e| now < e + grace)
        {
            out.extend(self.key());
        }
        if let Some(p) = &self.previous
            && parse_time(&p.until).is_some_and(|u| now < u)
        {
            out.extend(SessionKey::from_hex(
                &self.call_id,
                &p.reference,
                &p.kek,
                true,
            ));
        }
        out
    }

    /// Whether `reference` (hex) names this entry's current or previous key.
    pub fn has_reference(&self, reference: &str) -> bool {
        self.reference.eq_ignore_ascii_case(reference)
            || self
                .previous
                .as_ref()
                .is_some_and(|p| p.reference.eq_ignore_ascii_case(reference))
    }
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// The store file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    /// Format version (1).
    pub version: u32,
    /// Whose store it is (certificate SAN URI or AOR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    pub sessions: Vec<Entry>,
}

impl Sessions {
    /// The entry for a Call-ID, or for a session reference (hex, current
    /// or previous key).
    pub fn find(&self, what: &str) -> Option<&Entry> {
        self.sessions
            .iter()
            .find(|e| e.call_id == what)
            .or_else(|| self.sessions.iter().find(|e| e.has_reference(what)))
    }
}

/// What recording a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A session not seen before.
    New,
    /// The same key again (e.g. the message opened twice).
    Same,
    /// A new key for a known session (key update); the old one is kept for the grace time.
    Replaced,
}

/// One identity's session store.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    identity: Option<String>,
}

impl Store {
    /// The store in an identity's state directory.
    pub fn at(dir: &Path) -> Store {
        Store {
            dir: dir.to_owned(),
            identity: None,
        }
    }

    /// The store of the identity `name` under the state directory.
    pub fn of(state: &crate::state::StateDir, name: &str) -> Store {
        Store {
            dir: state.identity_dir(name),
            identity: Some(name.to_owned()),
        }
    }

    /// The YAML file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("sessions.yaml")
    }

    /// Read the store (empty when there is none yet).
    pub fn load(&self) -> Result<Sessions, StateError> {
        let path = self.path();
        match std::fs::read_to_string(&path) {
            Ok(text) => parse(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Sessions {
                version: 1,
                identity: self.identity.clone(),
                sessions: Vec::new(),
            }),
            Err(e) => Err(StateError::io(&path, e)),
        }
    }

    /// Change the store under its lock: read, `f`, write atomically. A
    /// store that does not parse is left alone and named in the error.
    pub fn update<T>(&self, f: impl FnOnce(&mut Sessions) -> T) -> Result<T, StateError> {
        let _guard = lock(&self.dir)?;
        let mut sessions = self.load()?;
        let out = f(&mut sessions);
        if sessions.identity.is_none() {
            sessions.identity.clone_from(&self.identity);
        }
        let path = self.path();
        let text = crate::yaml::to_string(&sessions).map_err(|e| StateError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, text.as_bytes(), true).map_err(|e| StateError::io(&path, e))?;
        Ok(out)
    }

    /// Record the key of a full envelope for `entry.call_id`: a new session,
    /// the same key again, or a key update (the old key kept for `grace`).
    pub fn record(
        &self,
        entry: Entry,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<Recorded, StateError> {
        self.update(
            |s| match s.sessions.iter_mut().find(|e| e.call_id == entry.call_id) {
                Some(e) if e.reference == entry.reference => Recorded::Same,
                Some(e) => {
                    let previous = Previous {
                        reference: std::mem::take(&mut e.reference),
                        kek: std::mem::take(&mut e.kek),
                        until: rfc3339(now + grace),
                    };
                    *e = Entry {
                        previous: Some(previous),
                        local_cseq: e.local_cseq,
                        ..entry
                    };
                    Recorded::Replaced
                }
                None => {
                    s.sessions.push(entry);
                    Recorded::New
                }
            },
        )
    }
}

impl Store {
    /// The keys of this store that open a message under `reference` for
    /// `call_id` at `now` (current key until expiry + grace, previous key
    /// until its `until`). Read without the lock: writes are atomic renames.
    pub fn lookup(
        &self,
        reference: &[u8],
        call_id: Option<&str>,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<Option<SessionKey>, StateError> {
        let sessions = self.load()?;
        Ok(sessions
            .sessions
            .iter()
            .filter(|e| call_id.is_none_or(|c| c == e.call_id))
            .flat_map(|e| e.keys_at(now, grace))
            .find(|k| k.reference == reference))
    }

    /// A sender's use of its session key for `call_id`: the key with its
    /// use counted, or a rekey when it has sealed `max_uses` messages or
    /// is `max_age` old (flags given now override what was recorded).
    pub fn use_key(
        &self,
        call_id: &str,
        now: OffsetDateTime,
        max_uses: Option<u64>,
        max_age: Option<Duration>,
    ) -> Result<Use, StateError> {
        self.update(|s| {
            let Some(e) = s.sessions.iter_mut().find(|e| e.call_id == call_id) else {
                return Use::NoSession;
            };
            let limit = max_uses.unwrap_or(e.max_uses);
            if e.uses >= limit {
                return Use::Rekey(format!(
                    "the session key has sealed {} messages (--max-uses {limit})",
                    e.uses
                ));
            }
            let expiry = match (max_age, parse_time(&e.created)) {
                (Some(age), Some(created)) => Some(created + age),
                _ => e.expiry.as_deref().and_then(parse_time),
            };
            if expiry.is_some_and(|x| now >= x) {
                return Use::Rekey(format!(
                    "the session key dates from {} (--max-age)",
                    e.created
                ));
            }
            match e.key() {
                Some(k) => {
                    e.uses += 1;
                    Use::Key(k)
                }
                None => Use::Rekey("the stored session key does not decode".into()),
            }
        })
    }

    /// The next local CSeq for an in-dialog request of `call_id`, at least
    /// `floor`, remembered in the entry.
    pub fn next_cseq(&self, call_id: &str, floor: u32) -> Result<u32, StateError> {
        self.update(|s| {
            let e = s.sessions.iter_mut().find(|e| e.call_id == call_id);
            let next = e
                .as_ref()
                .and_then(|e| e.local_cseq)
                .map_or(floor, |c| c.saturating_add(1).max(floor));
            if let Some(e) = e {
                e.local_cseq = Some(next);
            }
            next
        })
    }

    /// Remove the session of a Call-ID or reference; whether it was there.
    pub fn forget(&self, what: &str) -> Result<bool, StateError> {
        self.update(|s| {
            let before = s.sessions.len();
            s.sessions
                .retain(|e| e.call_id != what && !e.has_reference(what));
            s.sessions.len() != before
        })
    }
}

fn parse(path: &Path, text: &str) -> Result<Sessions, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.display().to_string(),
        reason,
    };
    let s: Sessions = crate::yaml::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    if s.version != 1 {
        return Err(corrupt(format!(
            "store version {} (this sipseal reads 1)",
            s.version
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn reference_and_kek_depend_on_the_cek_and_differ() {
        let a = derive(&[1u8; 32]);
        let b = derive(&[2u8; 32]);
        assert_ne!(a.reference, b.reference);
        assert_ne!(*a.kek, *b.kek);
        assert_ne!(&a.kek[..16], &a.reference[..]);
        // Deterministic.
        assert_eq!(derive(&[1u8; 32]).reference, a.reference);
    }

    #[test]
    fn record_new_same_and_replaced_with_grace() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::at(tmp.path());
        let now = datetime!(2026-01-01 0:00 UTC);
        let first = Entry::new("c1", &[1u8; 32], Role::Ua, None, now, &Policy::default());
        assert_eq!(
            store.record(first.clone(), now, DEFAULT_GRACE).unwrap(),
            Recorded::New
        );
        assert_eq!(
            store.record(first.clone(), now, DEFAULT_GRACE).unwrap(),
            Recorded::Same
        );
        let second = Entry::new("c1", &[2u8; 32], Role::Ua, None, now, &Policy::default());
        assert_eq!(
            store.record(second.clone(), now, DEFAULT_GRACE).unwrap(),
            Recorded::Replaced
        );
        let s = store.load().unwrap();
        assert_eq!(s.sessions.len(), 1);
        assert_eq!(s.sessions[0].reference, second.reference);
        let prev = s.sessions[0].previous.as_ref().unwrap();
        assert_eq!(prev.reference, first.reference);
        assert_eq!(prev.until, "2026-01-01T00:00:32Z");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_store_is_named_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::at(tmp.path());
        std::fs::write(store.path(), "sessions: [unclosed").unwrap();
        let now = datetime!(2026-01-01 0:00 UTC);
        let err = store
            .record(
                Entry::new("c", &[1u8; 32], Role::Ua, None, now, &Policy::default()),
                now,
                DEFAULT_GRACE,
            )
            .unwrap_err();
        assert!(err.to_string().contains("sessions.yaml"), "{err}");
        assert_eq!(
            std::fs::read_to_string(store.path()).unwrap(),
            "sessions: [unclosed"
        );
        std::fs::write(store.path(), "version: 7\nsessions: []\n").unwrap();
        assert!(store.load().unwrap_err().to_string().contains("version 7"));
    }
}
