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

use crate::fsio::write_atomic;
use crate::state::{StateError, lock};

/// Default number of messages a session key seals before a rekey.
pub const DEFAULT_MAX_USES: u64 = 100;
/// Default time a replaced key still opens messages in flight.
pub const DEFAULT_GRACE: Duration = Duration::seconds(32);

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
}

impl Entry {
    /// A new entry for the keys derived from `cek`.
    pub fn new(
        call_id: &str,
        cek: &[u8],
        role: Role,
        peer: Option<String>,
        now: OffsetDateTime,
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
            max_uses: DEFAULT_MAX_USES,
            expiry: None,
            previous: None,
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The store file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    /// Format version (1).
    pub version: u32,
    pub sessions: Vec<Entry>,
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
}

impl Store {
    /// The store in an identity's state directory.
    pub fn at(dir: &Path) -> Store {
        Store {
            dir: dir.to_owned(),
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
        let first = Entry::new("c1", &[1u8; 32], Role::Ua, None, now);
        assert_eq!(
            store.record(first.clone(), now, DEFAULT_GRACE).unwrap(),
            Recorded::New
        );
        assert_eq!(
            store.record(first.clone(), now, DEFAULT_GRACE).unwrap(),
            Recorded::Same
        );
        let second = Entry::new("c1", &[2u8; 32], Role::Ua, None, now);
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
                Entry::new("c", &[1u8; 32], Role::Ua, None, now),
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
