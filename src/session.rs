//! Session keys (docs/SPEC.md §3.2, §5): every party that opens a full envelope
//! derives the session reference and session KEK from its CEK, and keeps
//! them per Call-ID so later messages need no public-key operation.
//!
//! - reference = HKDF-SHA256(ikm = CEK, salt = empty, info = "sipseal cek reference")[..16]
//! - KEK       = HKDF-SHA256(ikm = CEK, salt = reference, info = "sipseal session kek"), 32 bytes
//!
//! This module holds the values and what happens to them ([`Sessions`]);
//! where they are kept is [`crate::state`]'s business. In memory, keys are
//! bytes that are zeroized when dropped and never printed, and times are
//! times; hex and RFC 3339 text exist only at the YAML edge.

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::envelope::RecipientKey;

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

/// Session key limits given for one run: a sender's use counts against
/// these, else against what was recorded with the key; a new key gets
/// these, else the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Messages a sender seals under one key before it rekeys.
    pub max_uses: Option<u64>,
    /// Age after which a sender rekeys and receivers refuse the key.
    pub max_age: Option<Duration>,
    /// How long a replaced or expired key still opens messages in flight.
    pub grace: Option<Duration>,
}

impl Limits {
    /// The policy for new keys: these limits, defaults filled in.
    pub fn policy(&self) -> Policy {
        Policy {
            max_uses: self.max_uses.unwrap_or(DEFAULT_MAX_USES),
            max_age: self.max_age.unwrap_or(DEFAULT_MAX_AGE),
            grace: self.grace.unwrap_or(DEFAULT_GRACE),
        }
    }
}

/// Secret key bytes: zeroized when dropped, never printed; hex in the store file.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBytes(Zeroizing<Vec<u8>>);

impl KeyBytes {
    /// Wrap key bytes.
    pub fn new(bytes: &[u8]) -> KeyBytes {
        KeyBytes(Zeroizing::new(bytes.to_vec()))
    }

    /// The key as lower-case hex (for `openssl -secretkey`).
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&*self.0))
    }
}

impl std::ops::Deref for KeyBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for KeyBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for KeyBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<KeyBytes, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        hex::decode(text.as_bytes())
            .map(|b| KeyBytes(Zeroizing::new(b)))
            .map_err(serde::de::Error::custom)
    }
}

/// The YAML text forms of the store's values.
pub(crate) mod text {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    /// A session reference as hex.
    pub mod hex_bytes {
        use super::*;

        pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&hex::encode(v))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }

    /// A time as RFC 3339 in whole seconds.
    pub mod time_text {
        use super::*;

        pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&crate::context::rfc3339(*t))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
            OffsetDateTime::parse(&String::deserialize(d)?, &Rfc3339)
                .map_err(serde::de::Error::custom)
        }
    }

    /// An optional time as RFC 3339 in whole seconds.
    pub mod option_time {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::time_text::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|t| OffsetDateTime::parse(&t, &Rfc3339).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// A session key ready to seal or open with: the reference (kekid on
/// the wire) and the KEK.
#[derive(Debug, Clone)]
pub struct SessionKey {
    /// The Call-ID of the session.
    pub call_id: String,
    /// The 16-byte session reference.
    pub reference: Vec<u8>,
    /// The 32-byte KEK.
    pub kek: KeyBytes,
    /// Whether this is the replaced key, still inside its grace time.
    pub previous: bool,
    /// At a re-sealing relay that translates this call (issue 14 item 7):
    /// the current key of the other side, to seal what this key opened
    /// under for the hop it goes to.
    pub counterpart: Option<Box<SessionKey>>,
}

impl SessionKey {
    /// The key derived from `cek` (docs/SPEC.md §3.2).
    pub fn derive(call_id: &str, cek: &[u8]) -> SessionKey {
        let keys = derive(cek);
        SessionKey {
            call_id: call_id.to_owned(),
            reference: keys.reference.to_vec(),
            kek: KeyBytes::new(&*keys.kek),
            previous: false,
            counterpart: None,
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
}

/// Why a sender's session key must be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RekeyReason {
    /// It sealed as many messages as it may.
    Uses {
        /// Messages sealed under it.
        uses: u64,
        /// The limit in force.
        limit: u64,
    },
    /// It is older than the age limit in force.
    Age {
        /// When it was made.
        created: OffsetDateTime,
    },
}

/// What a sender may do with its session key now.
#[derive(Debug)]
pub enum Use {
    /// Seal under this key (its use counted).
    Key(SessionKey),
    /// The key is used up or too old: send a full envelope (a rekey).
    Rekey(RekeyReason),
    /// No session for this Call-ID.
    NoSession,
}

/// Times are kept to the second, as the store file writes them.
fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// The values derived from a CEK.
pub struct SessionKeys {
    /// The session reference (kekid of later messages).
    pub reference: [u8; 16],
    /// The session key-encryption key.
    pub kek: Zeroizing<[u8; 32]>,
}

/// Derive the session reference and KEK from a CEK (docs/SPEC.md §3.2).
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

impl Role {
    /// As the store file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ua => "ua",
            Role::Relay => "relay",
        }
    }
}

/// A key that was replaced and still opens messages until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// Its session reference.
    #[serde(with = "text::hex_bytes")]
    pub reference: Vec<u8>,
    /// Its KEK.
    pub kek: KeyBytes,
    /// The end of its grace time.
    #[serde(with = "text::time_text")]
    pub until: OffsetDateTime,
}

/// The other side of a call at a re-sealing relay (`reencrypt` with a
/// fresh CEK): the key derived from the CEK it sealed the full envelope
/// under for the next hop, which that hop derives too. The relay opens
/// session messages under either side's key and seals them again under
/// the other's (issue 14 item 7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Onward {
    /// Its session reference.
    #[serde(with = "text::hex_bytes")]
    pub reference: Vec<u8>,
    /// Its KEK.
    pub kek: KeyBytes,
    /// The key it replaced, while that one is in its grace time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
}

impl Onward {
    /// The onward keys derived from the CEK the relay sealed under.
    pub fn new(cek: &[u8]) -> Onward {
        let keys = derive(cek);
        Onward {
            reference: keys.reference.to_vec(),
            kek: KeyBytes::new(&*keys.kek),
            previous: None,
        }
    }

    fn retire(self, until: OffsetDateTime) -> Previous {
        Previous {
            reference: self.reference,
            kek: self.kek,
            until,
        }
    }
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The session's Call-ID.
    pub call_id: String,
    /// The 16-byte session reference.
    #[serde(with = "text::hex_bytes")]
    pub reference: Vec<u8>,
    /// The 32-byte session KEK.
    pub kek: KeyBytes,
    /// User agent or relay.
    pub role: Role,
    /// The other party (its AOR), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// When the key was made.
    #[serde(with = "text::time_text")]
    pub created: OffsetDateTime,
    /// Messages sealed under it (by a sender).
    pub uses: u64,
    /// Messages it may seal before a rekey.
    pub max_uses: u64,
    /// When it expires; none: no age limit.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "text::option_time"
    )]
    pub expiry: Option<OffsetDateTime>,
    /// The key it replaced, while that one is in its grace time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// The CSeq number of the last in-dialog request this party built
    /// (the local sequence of RFC 3261 §12.2.1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_cseq: Option<u32>,
    /// At a re-sealing relay: the next hop's key for this call (see
    /// [`Onward`]); the entry's own key is the one of the hop the full
    /// envelope came from (its `peer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onward: Option<Onward>,
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
        let now = whole_seconds(now);
        Entry {
            call_id: call_id.to_owned(),
            reference: keys.reference.to_vec(),
            kek: KeyBytes::new(&*keys.kek),
            role,
            peer,
            created: now,
            uses: 0,
            max_uses: policy.max_uses,
            expiry: Some(now + policy.max_age),
            previous: None,
            local_cseq: None,
            onward: None,
        }
    }

    /// This entry with the onward key of a relay that sealed the full
    /// envelope again under `cek` for the next hop.
    pub fn with_onward(self, cek: &[u8]) -> Entry {
        Entry {
            onward: Some(Onward::new(cek)),
            ..self
        }
    }

    fn session_key(&self, reference: &[u8], kek: &KeyBytes, previous: bool) -> SessionKey {
        SessionKey {
            call_id: self.call_id.clone(),
            reference: reference.to_vec(),
            kek: kek.clone(),
            previous,
            counterpart: None,
        }
    }

    /// The current key.
    pub fn key(&self) -> SessionKey {
        self.session_key(&self.reference, &self.kek, false)
    }

    /// The keys that open messages at `now`: the current one until its
    /// expiry plus `grace`, the previous one until its `until`; at a
    /// translating relay the onward side's the same way, each key with
    /// the other side's current key as its counterpart.
    pub fn keys_at(&self, now: OffsetDateTime, grace: Duration) -> Vec<SessionKey> {
        let mut out = Vec::new();
        let live = self.expiry.is_none_or(|e| now < e + grace);
        let sides = std::iter::once((&self.reference, &self.kek, &self.previous)).chain(
            self.onward
                .as_ref()
                .map(|o| (&o.reference, &o.kek, &o.previous)),
        );
        let current: Vec<SessionKey> = sides
            .clone()
            .map(|(r, k, _)| self.session_key(r, k, false))
            .collect();
        for (side, (reference, kek, previous)) in sides.enumerate() {
            // The other side's current key, when there are two sides.
            let counterpart = current.get(1 - side);
            let with = |mut key: SessionKey| {
                key.counterpart = counterpart.cloned().map(Box::new);
                key
            };
            if live {
                out.push(with(self.session_key(reference, kek, false)));
            }
            if let Some(p) = previous
                && now < p.until
            {
                out.push(with(self.session_key(&p.reference, &p.kek, true)));
            }
        }
        out
    }

    /// Swap the two sides of a translating relay's entry (the next full
    /// envelope came from the other side).
    fn swap_sides(&mut self) {
        if let Some(o) = &mut self.onward {
            std::mem::swap(&mut self.reference, &mut o.reference);
            std::mem::swap(&mut self.kek, &mut o.kek);
            std::mem::swap(&mut self.previous, &mut o.previous);
        }
    }

    /// The key (reference, KEK) that `reference` (hex, any case) names:
    /// this entry's current or previous key, or its onward side's.
    pub fn key_named(&self, reference: &str) -> Option<(&[u8], &KeyBytes)> {
        let wanted = hex::decode(reference).ok()?;
        fn previous(p: &Option<Previous>) -> Option<(&[u8], &KeyBytes)> {
            p.as_ref().map(|p| (&p.reference[..], &p.kek))
        }
        let onward = self.onward.as_ref();
        [
            Some((&self.reference[..], &self.kek)),
            previous(&self.previous),
            onward.map(|o| (&o.reference[..], &o.kek)),
            onward.and_then(|o| previous(&o.previous)),
        ]
        .into_iter()
        .flatten()
        .find(|(r, _)| *r == wanted.as_slice())
    }

    /// Whether `reference` (hex, any case) names one of this entry's keys
    /// ([`Entry::key_named`]).
    pub fn has_reference(&self, reference: &str) -> bool {
        self.key_named(reference).is_some()
    }
}

/// One identity's sessions: what a store keeps, and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    /// Format version: 2 for a session file, 1 for a layout-1 store.
    pub version: u32,
    /// Whose store it is (certificate SAN URI or AOR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The sessions, oldest first.
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
    /// Not stored: its peer already holds as many sessions as an
    /// unauthenticated sender may (the store's cap).
    Capped,
}

/// A session key a workflow recorded: whose, for which call, and what
/// recording it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Whose store.
    pub owner: String,
    /// The session's Call-ID.
    pub call_id: String,
    /// New, the same again, or a key update.
    pub recorded: Recorded,
}

impl Sessions {
    /// The store format this version writes: layout 2, one file per
    /// session (layout 1, one file per identity, is read and migrated).
    pub const VERSION: u32 = 2;

    /// Layout 1: every session of an identity in one file.
    pub const VERSION_1: u32 = 1;

    /// No sessions yet, for `identity`.
    pub fn empty(identity: Option<&str>) -> Sessions {
        Sessions {
            version: Sessions::VERSION,
            identity: identity.map(str::to_owned),
            sessions: Vec::new(),
        }
    }

    /// The entry for a Call-ID, or for a session reference (hex, current
    /// or previous key).
    pub fn find(&self, what: &str) -> Option<&Entry> {
        self.sessions
            .iter()
            .find(|e| e.call_id == what)
            .or_else(|| self.sessions.iter().find(|e| e.has_reference(what)))
    }

    fn entry_mut(&mut self, call_id: &str) -> Option<&mut Entry> {
        self.sessions.iter_mut().find(|e| e.call_id == call_id)
    }

    /// Record the key of a full envelope for `entry.call_id`: a new session,
    /// the same key again, or a key update (the old key kept for `grace`).
    ///
    /// At a translating relay each side is replaced on its own: the same
    /// envelope sealed onward again (a retransmission) replaces only the
    /// onward key; a full envelope from the other side of the call (its
    /// `peer` is the other party) swaps the sides first, so each key keeps
    /// its own previous one.
    pub fn record(&mut self, entry: Entry, now: OffsetDateTime, grace: Duration) -> Recorded {
        let until = whole_seconds(now + grace);
        let onward = |old: Option<Onward>, new: Option<Onward>| {
            new.map(|new| match old {
                Some(old) if old.reference == new.reference => old,
                old => Onward {
                    previous: old.map(|o| o.retire(until)),
                    ..new
                },
            })
        };
        match self.entry_mut(&entry.call_id) {
            Some(e) if e.reference == entry.reference => {
                if entry.onward.is_some() {
                    e.onward = onward(e.onward.take(), entry.onward);
                }
                Recorded::Same
            }
            Some(e) => {
                let other_side = e.onward.is_some()
                    && entry.onward.is_some()
                    && matches!((&e.peer, &entry.peer), (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b));
                if other_side {
                    e.swap_sides();
                }
                let previous = Previous {
                    reference: std::mem::take(&mut e.reference),
                    kek: e.kek.clone(),
                    until,
                };
                let onward = onward(e.onward.take(), entry.onward.clone());
                *e = Entry {
                    previous: Some(previous),
                    local_cseq: e.local_cseq,
                    onward,
                    ..entry
                };
                Recorded::Replaced
            }
            None => {
                self.sessions.push(entry);
                Recorded::New
            }
        }
    }

    /// The key that opens a message under `reference` for `call_id` (any
    /// session when none) at `now`: a current key until its expiry +
    /// `grace`, a previous key until its `until`.
    pub fn lookup(
        &self,
        reference: &[u8],
        call_id: Option<&str>,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Option<SessionKey> {
        self.sessions
            .iter()
            .filter(|e| call_id.is_none_or(|c| c == e.call_id))
            .flat_map(|e| e.keys_at(now, grace))
            .find(|k| k.reference == reference)
    }

    /// A sender's use of its session key for `call_id`: the key with its
    /// use counted, or a rekey when it has sealed `max_uses` messages or
    /// is `max_age` old (limits given now override what was recorded).
    pub fn use_key(
        &mut self,
        call_id: &str,
        now: OffsetDateTime,
        max_uses: Option<u64>,
        max_age: Option<Duration>,
    ) -> Use {
        let Some(e) = self.entry_mut(call_id) else {
            return Use::NoSession;
        };
        let limit = max_uses.unwrap_or(e.max_uses);
        if e.uses >= limit {
            return Use::Rekey(RekeyReason::Uses {
                uses: e.uses,
                limit,
            });
        }
        let expiry = match max_age {
            Some(age) => Some(e.created + age),
            None => e.expiry,
        };
        if expiry.is_some_and(|x| now >= x) {
            return Use::Rekey(RekeyReason::Age { created: e.created });
        }
        e.uses += 1;
        Use::Key(e.key())
    }

    /// The next local CSeq for an in-dialog request of `call_id`, at least
    /// `floor`, remembered in the entry.
    pub fn next_cseq(&mut self, call_id: &str, floor: u32) -> u32 {
        let e = self.entry_mut(call_id);
        let next = e
            .as_ref()
            .and_then(|e| e.local_cseq)
            .map_or(floor, |c| c.saturating_add(1).max(floor));
        if let Some(e) = e {
            e.local_cseq = Some(next);
        }
        next
    }

    /// Remove the session of a Call-ID or reference; whether it was there.
    pub fn forget(&mut self, what: &str) -> bool {
        let before = self.sessions.len();
        self.sessions
            .retain(|e| e.call_id != what && !e.has_reference(what));
        self.sessions.len() != before
    }
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
        let mut s = Sessions::empty(None);
        let now = datetime!(2026-01-01 0:00 UTC);
        let first = Entry::new("c1", &[1u8; 32], Role::Ua, None, now, &Policy::default());
        assert_eq!(s.record(first.clone(), now, DEFAULT_GRACE), Recorded::New);
        assert_eq!(s.record(first.clone(), now, DEFAULT_GRACE), Recorded::Same);
        let second = Entry::new("c1", &[2u8; 32], Role::Ua, None, now, &Policy::default());
        assert_eq!(
            s.record(second.clone(), now, DEFAULT_GRACE),
            Recorded::Replaced
        );
        assert_eq!(s.sessions.len(), 1);
        assert_eq!(s.sessions[0].reference, second.reference);
        let prev = s.sessions[0].previous.as_ref().unwrap();
        assert_eq!(prev.reference, first.reference);
        assert_eq!(prev.until, datetime!(2026-01-01 0:00:32 UTC));
        // Both keys open until the grace time ends; then only the new one.
        let at = |t| s.lookup(&first.reference, Some("c1"), t, DEFAULT_GRACE);
        assert!(at(datetime!(2026-01-01 0:00:31 UTC)).is_some_and(|k| k.previous));
        assert!(at(datetime!(2026-01-01 0:00:32 UTC)).is_none());
    }

    /// Item 7: a translating relay's entry opens under either side's key
    /// and names the other side's current key; each side is renewed on its
    /// own, keeping its previous key for the grace time, whichever side the
    /// next full envelope comes from.
    #[test]
    fn a_translating_relay_keeps_both_sides_and_renews_each() {
        let now = datetime!(2026-01-01 0:00 UTC);
        let p = Policy::default();
        let relay = |cek: u8, onward: u8, from: &str| {
            Entry::new("c", &[cek; 32], Role::Relay, Some(from.into()), now, &p)
                .with_onward(&[onward; 32])
        };
        let r = |cek: u8| derive(&[cek; 32]).reference.to_vec();
        let other = |s: &Sessions, reference: &[u8]| {
            s.lookup(reference, Some("c"), now, DEFAULT_GRACE)
                .and_then(|k| k.counterpart)
                .map(|k| k.reference)
        };
        let mut s = Sessions::empty(None);
        // alice's INVITE (CEK 1), sealed on for bob under CEK 2.
        assert_eq!(
            s.record(relay(1, 2, "sip:alice@a"), now, DEFAULT_GRACE),
            Recorded::New
        );
        assert_eq!(other(&s, &r(1)), Some(r(2)));
        assert_eq!(other(&s, &r(2)), Some(r(1)));
        // The INVITE again (a retransmission) sealed on under CEK 3: bob may
        // hold either onward key.
        assert_eq!(
            s.record(relay(1, 3, "sip:alice@a"), now, DEFAULT_GRACE),
            Recorded::Same
        );
        assert_eq!(other(&s, &r(1)), Some(r(3)));
        assert_eq!(
            other(&s, &r(2)),
            Some(r(1)),
            "the replaced onward key still opens"
        );
        // bob's re-INVITE (CEK 4) sealed on for alice under CEK 5: the sides
        // swap, so alice's side now holds 5 (previous 1) and bob's 4
        // (previous 3).
        assert_eq!(
            s.record(relay(4, 5, "sip:bob@b"), now, DEFAULT_GRACE),
            Recorded::Replaced
        );
        let e = &s.sessions[0];
        assert_eq!(e.reference, r(4));
        assert_eq!(e.previous.as_ref().map(|p| p.reference.clone()), Some(r(3)));
        let o = e.onward.as_ref().unwrap();
        assert_eq!(o.reference, r(5));
        assert_eq!(o.previous.as_ref().map(|p| p.reference.clone()), Some(r(1)));
        assert_eq!(
            other(&s, &r(1)),
            Some(r(4)),
            "alice's old key goes to bob's new one"
        );
        assert_eq!(
            other(&s, &r(3)),
            Some(r(5)),
            "bob's old key goes to alice's new one"
        );
        assert!(e.has_reference(&hex::encode(r(5))));
        // A user agent's entry has one side: no counterpart.
        let mut ua = Sessions::empty(None);
        ua.record(
            Entry::new("c", &[1; 32], Role::Ua, None, now, &p),
            now,
            DEFAULT_GRACE,
        );
        assert_eq!(other(&ua, &r(1)), None);
    }

    #[test]
    fn a_sender_rekeys_after_its_limits() {
        let now = datetime!(2026-01-01 0:00 UTC);
        let policy = Policy {
            max_uses: 2,
            ..Policy::default()
        };
        let mut s = Sessions::empty(None);
        s.record(
            Entry::new("c", &[1u8; 32], Role::Ua, None, now, &policy),
            now,
            DEFAULT_GRACE,
        );
        assert!(matches!(s.use_key("c", now, None, None), Use::Key(_)));
        assert!(matches!(s.use_key("c", now, None, None), Use::Key(_)));
        assert!(matches!(
            s.use_key("c", now, None, None),
            Use::Rekey(RekeyReason::Uses { uses: 2, limit: 2 })
        ));
        let later = now + Duration::hours(2);
        assert!(matches!(
            s.use_key("c", later, Some(10), Some(Duration::hours(1))),
            Use::Rekey(RekeyReason::Age { created }) if created == now
        ));
        assert!(matches!(s.use_key("x", now, None, None), Use::NoSession));
    }

    #[test]
    fn the_yaml_text_is_hex_and_rfc3339() {
        let now = datetime!(2026-01-01 0:00 UTC);
        let mut s = Sessions::empty(Some("sip:a@h"));
        s.record(
            Entry::new("c", &[1u8; 32], Role::Relay, None, now, &Policy::default()),
            now,
            DEFAULT_GRACE,
        );
        let text = crate::yaml::to_string(&s).unwrap();
        let e = &s.sessions[0];
        assert!(text.contains(&format!("reference: {}", hex::encode(&e.reference))));
        assert!(text.contains(&format!("kek: {}", &*e.kek.to_hex())));
        assert!(text.contains("created: 2026-01-01T00:00:00Z"));
        assert!(text.contains("expiry: 2026-01-02T00:00:00Z"));
        assert!(!format!("{e:?}").contains(&*e.kek.to_hex()));
        let back: Sessions = crate::yaml::from_str(&text).unwrap();
        assert_eq!(back, s);
    }
}
