//! The registrar's store, per realm and address of record: Contact
//! bindings, the certificates it issued or was given, and the Digest nonce
//! counts seen with that AOR's credentials (so that a replayed nonce/nc
//! pair is refused until the nonce expires). Behind a trait, like the
//! session store, so that a shared store can implement it; [`FileStore`]
//! keeps one YAML file per AOR (`STATE/registrar_REALM/aors/*.yaml`), so
//! that a registration costs the same whatever the number of users,
//! changed under the realm's advisory lock and written atomically (temp
//! file, fsync, rename).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::session::text::{option_time, time_text};
use crate::sip::aor::Aor;
use crate::state::{FileStore, SessionStore, StoreError, lock, read_yaml, write_yaml};

/// A Contact bound to an address of record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The address of record (the To URI).
    pub aor: String,
    /// The Contact URI.
    pub contact: String,
    /// When the binding ends.
    #[serde(with = "time_text")]
    pub expires: OffsetDateTime,
    /// Where the REGISTER came from (`IP:port`), when known: what the
    /// imposture check compares a relay's peer address with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The registration's Call-ID (RFC 3261 §10.3 step 7).
    pub call_id: String,
    /// Its CSeq number.
    pub cseq: u32,
    /// The Path it came with (RFC 3327): the proxies to reach it through,
    /// nearest the registrar first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    /// Its `+sip.instance` (RFC 5626), the URN without quotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Its `reg-id` (RFC 5626).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_id: Option<u32>,
}

/// A certificate the registrar issued (or stored for distribution).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCert {
    /// The address of record it certifies.
    pub aor: String,
    /// Its serial number, hex.
    pub serial: String,
    /// SHA-256 of its DER, hex (what a validity query names).
    pub sha256: String,
    /// Its notAfter.
    #[serde(with = "time_text")]
    pub not_after: OffsetDateTime,
    /// Issued here (true) or registered as it came (false).
    pub issued: bool,
    /// Issued for a PUBLISH (the simplified CA): valid for queries
    /// without a registered binding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub published: bool,
    /// When it was withdrawn (the binding removed), if it was.
    #[serde(default, with = "option_time", skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<OffsetDateTime>,
    /// The certificate, PEM.
    pub pem: String,
}

/// A bare public key published by its owner over mutual TLS (issue 28):
/// given to trusted requesters (`certquery --key`) until the publication
/// ends. A record written before keys were kept reads with none; a record
/// with keys read by an older sipseal loses only them (the field is
/// skipped when empty and ignored where unknown), so the layout stays
/// version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// The address of record it belongs to.
    pub aor: String,
    /// SHA-256 of its DER SubjectPublicKeyInfo, hex.
    pub sha256: String,
    /// When the publication ends (then it is forgotten).
    #[serde(with = "time_text")]
    pub expires: OffsetDateTime,
    /// The SubjectPublicKeyInfo, PEM (`PUBLIC KEY`).
    pub pem: String,
}

/// The nonce counts a client used with one nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenNonce {
    /// The nonce.
    pub nonce: String,
    /// When it expires (then it is forgotten: it is stale anyway).
    #[serde(with = "time_text")]
    pub expires: OffsetDateTime,
    /// The nc values used with it.
    pub counts: Vec<u32>,
}

/// Everything stored for one address of record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// The format version (1).
    pub version: u32,
    /// Contact bindings.
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Certificates.
    #[serde(default)]
    pub certificates: Vec<StoredCert>,
    /// Bare public keys published (issue 28).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<StoredKey>,
    /// Nonce counts seen.
    #[serde(default)]
    pub nonces: Vec<SeenNonce>,
    /// A nonce that expires at or before this and is not in `nonces` was
    /// forgotten to keep the record small (L3): it is refused as a replay.
    #[serde(default, with = "option_time", skip_serializing_if = "Option::is_none")]
    pub forgotten: Option<OffsetDateTime>,
}

/// Nonces whose counts one record keeps at most (the oldest go first).
pub const MAX_NONCES: usize = 16;

/// Counts kept per nonce: a window below the highest one seen; a count
/// below the window is refused.
pub const NONCE_WINDOW: usize = 32;

impl Registry {
    /// Forget what has expired at `now`: bindings, nonces, and
    /// certificates past their notAfter (a CRL need not list those, RFC
    /// 5280 §3.3; withdrawn ones still valid stay, for the CRL).
    pub fn expire(&mut self, now: OffsetDateTime) {
        self.bindings.retain(|b| b.expires > now);
        self.nonces.retain(|n| n.expires > now);
        // A nonce that expired is stale anyway.
        self.forgotten = self.forgotten.filter(|f| *f > now);
        self.certificates.retain(|c| c.not_after > now);
        self.keys.retain(|k| k.expires > now);
    }

    /// Take in another record's entries (a realm's records merged).
    pub fn absorb(&mut self, other: Registry) {
        self.bindings.extend(other.bindings);
        self.certificates.extend(other.certificates);
        self.keys.extend(other.keys);
        self.nonces.extend(other.nonces);
        self.forgotten = self.forgotten.max(other.forgotten);
    }

    /// Record the use of `nc` with `nonce`: false when it was used before
    /// (a replay).
    ///
    /// What is kept stays small (L3: a record rewritten whole on each
    /// REGISTER grew with every count): per nonce the [`NONCE_WINDOW`]
    /// highest counts (one below them is refused), and the
    /// [`MAX_NONCES`] nonces that expire last (one that expires no later
    /// than a forgotten one is refused).
    pub fn use_nonce(&mut self, nonce: &str, nc: u32, expires: OffsetDateTime) -> bool {
        match self.nonces.iter_mut().find(|n| n.nonce == nonce) {
            Some(seen) if seen.counts.contains(&nc) => false,
            Some(seen)
                if seen.counts.len() >= NONCE_WINDOW
                    && seen.counts.iter().min().is_some_and(|low| nc < *low) =>
            {
                false
            }
            Some(seen) => {
                seen.counts.push(nc);
                seen.counts.sort_unstable();
                if seen.counts.len() > NONCE_WINDOW {
                    let extra = seen.counts.len() - NONCE_WINDOW;
                    seen.counts.drain(..extra);
                }
                true
            }
            None if self.forgotten.is_some_and(|f| expires <= f) => false,
            None => {
                self.nonces.push(SeenNonce {
                    nonce: nonce.to_owned(),
                    expires,
                    counts: vec![nc],
                });
                if self.nonces.len() > MAX_NONCES {
                    self.nonces.sort_by_key(|n| n.expires);
                    let gone = self.nonces.remove(0);
                    self.forgotten =
                        Some(self.forgotten.map_or(gone.expires, |f| f.max(gone.expires)));
                }
                true
            }
        }
    }

    /// The certificates of `aor` to hand out at `now`: valid, not
    /// withdrawn, of an AOR still registered; oldest first.
    pub fn current_certs<'a>(
        &'a self,
        aor: &'a str,
        now: OffsetDateTime,
    ) -> impl Iterator<Item = &'a StoredCert> + 'a {
        let bound = self
            .bindings
            .iter()
            .any(|b| crate::sip::aor::same_aor(&b.aor, aor) && b.expires > now);
        self.certificates.iter().filter(move |c| {
            (bound || c.published)
                && crate::sip::aor::same_aor(&c.aor, aor)
                && c.withdrawn.is_none()
                && c.not_after > now
        })
    }
}

impl Registry {
    /// The newest bare key `aor` published, current at `now`.
    pub fn current_key(&self, aor: &str, now: OffsetDateTime) -> Option<&StoredKey> {
        self.keys
            .iter()
            .rev()
            .find(|k| crate::sip::aor::same_aor(&k.aor, aor) && k.expires > now)
    }

    /// When `aor`'s registration ends: its last live binding's expiry.
    pub fn registered_until(&self, aor: &str, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.live_bindings(aor, now).map(|b| b.expires).max()
    }

    /// `aor`'s bindings live at `now`.
    pub fn live_bindings<'a>(
        &'a self,
        aor: &'a str,
        now: OffsetDateTime,
    ) -> impl Iterator<Item = &'a Binding> + 'a {
        self.bindings
            .iter()
            .filter(move |b| crate::sip::aor::same_aor(&b.aor, aor) && b.expires > now)
    }
}

/// Where a registrar keeps its registry, per realm and AOR.
/// Implementations make [`RegistrarStore::update_aor`] atomic, so that
/// parallel registrations never lose one another.
pub trait RegistrarStore {
    /// What is stored for `aor` in `realm` (nothing yet: empty).
    fn load_aor(&self, realm: &str, aor: &Aor) -> Result<Registry, StoreError>;

    /// Change what is stored for `aor` at once: read, `f`, write.
    fn update_aor(
        &self,
        realm: &str,
        aor: &Aor,
        f: &mut dyn FnMut(&mut Registry),
    ) -> Result<(), StoreError>;

    /// Everything stored in `realm`, every AOR's in one (the CRL).
    fn load_realm(&self, realm: &str) -> Result<Registry, StoreError>;

    /// The secret the registrar of `realm` keys its nonces with, made once
    /// from `fresh` and kept.
    fn registrar_secret(
        &self,
        realm: &str,
        fresh: &mut dyn FnMut() -> [u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, StoreError>;
}

/// The owner name of a realm's registrar in the state directory.
fn owner(realm: &str) -> String {
    format!("registrar {realm}")
}

/// The file name of an AOR's record: readable, and unique (the hash of
/// the AOR as compared: scheme and host in lower case).
fn aor_file(aor: &Aor) -> String {
    use sha2::Digest;
    let key = &aor.key;
    let readable: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let hash = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..6]);
    format!("{readable}-{hash}.yaml")
}

fn empty() -> Registry {
    Registry {
        version: 1,
        ..Default::default()
    }
}

impl RegistrarStore for FileStore {
    fn load_aor(&self, realm: &str, aor: &Aor) -> Result<Registry, StoreError> {
        let path = self
            .dir()
            .identity_dir(&owner(realm))
            .join("aors")
            .join(aor_file(aor));
        Ok(read_yaml(&path)?.unwrap_or_else(empty))
    }

    fn update_aor(
        &self,
        realm: &str,
        aor: &Aor,
        f: &mut dyn FnMut(&mut Registry),
    ) -> Result<(), StoreError> {
        let dir = self.dir().identity_dir(&owner(realm));
        crate::blocking::offload(|| {
            let _guard = lock(&dir)?;
            crate::state::create_private_dir(&dir.join("aors"))?;
            crate::state::clear_leftovers(&dir.join("aors"))?;
            let path = dir.join("aors").join(aor_file(aor));
            let mut registry = read_yaml(&path)?.unwrap_or_else(empty);
            f(&mut registry);
            write_yaml(&path, &registry)
        })
    }

    fn load_realm(&self, realm: &str) -> Result<Registry, StoreError> {
        let dir = self.dir().identity_dir(&owner(realm)).join("aors");
        let mut all = empty();
        for one in aor_files(&dir)? {
            if let Some(r) = read_yaml::<Registry>(&one)? {
                all.absorb(r);
            }
        }
        Ok(all)
    }

    fn registrar_secret(
        &self,
        realm: &str,
        fresh: &mut dyn FnMut() -> [u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        SessionStore::secret(self, &owner(realm), fresh)
    }
}

/// The Redis key of an AOR's record.
#[cfg(feature = "live")]
fn redis_key(realm: &str, aor: &Aor) -> String {
    format!(
        "sipseal:registrar:{}:aor:{}",
        realm.to_ascii_lowercase(),
        aor.key
    )
}

/// Seconds a record is worth keeping at `now`: until its last binding,
/// nonce or certificate ends (a withdrawn certificate stays for the CRL).
#[cfg(feature = "live")]
fn keep_for(r: &Registry, now: OffsetDateTime) -> u64 {
    let last = r
        .bindings
        .iter()
        .map(|b| b.expires)
        .chain(r.nonces.iter().map(|n| n.expires))
        .chain(r.certificates.iter().map(|c| c.not_after))
        .chain(r.keys.iter().map(|k| k.expires))
        .max()
        .unwrap_or(now);
    (last - now).whole_seconds().max(60) as u64
}

/// The registry in Redis (`registrar --state redis://HOST:PORT`), shared
/// by registrars and the relays that locate its users on several hosts:
/// one JSON record per AOR under `sipseal:registrar:<realm>:aor:<AOR>`,
/// kept until its last binding, nonce or certificate ends, changed in
/// one WATCH/MULTI transaction.
#[cfg(feature = "live")]
impl RegistrarStore for crate::state::RedisStore {
    fn load_aor(&self, realm: &str, aor: &Aor) -> Result<Registry, StoreError> {
        Ok(self.get_json(&redis_key(realm, aor))?.unwrap_or_else(empty))
    }

    fn update_aor(
        &self,
        realm: &str,
        aor: &Aor,
        f: &mut dyn FnMut(&mut Registry),
    ) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        self.update_json(&redis_key(realm, aor), &mut |r: &mut Registry| {
            r.version = 1;
            f(r);
            keep_for(r, now)
        })
    }

    fn load_realm(&self, realm: &str) -> Result<Registry, StoreError> {
        let pattern = format!(
            "sipseal:registrar:{}:aor:*",
            crate::state::RedisStore::escape(&realm.to_ascii_lowercase())
        );
        let mut all = empty();
        for key in self.scan(&pattern)? {
            if let Some(r) = self.get_json::<Registry>(&key)? {
                all.absorb(r);
            }
        }
        Ok(all)
    }

    fn registrar_secret(
        &self,
        realm: &str,
        fresh: &mut dyn FnMut() -> [u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        SessionStore::secret(self, &owner(realm), fresh)
    }
}

/// The AOR files of a realm's `aors` directory (none yet: none), in order.
fn aor_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(StoreError::Io {
                path: dir.display().to_string(),
                source: e,
            });
        }
    };
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Every registrar AOR file under `path` (a state directory, a realm's
/// directory, or one file).
pub fn registry_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let pattern = path.join("**").join("aors").join("*.yaml");
    glob::glob(&pattern.to_string_lossy())
        .map(|paths| paths.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// The certificates a registrar's registry file holds that are not
/// withdrawn (a registrar's state directory serves as a certificate
/// directory for `seal --certs`).
pub fn registry_certs(path: &std::path::Path) -> Result<Vec<crate::keys::Cert>, StoreError> {
    let Some(registry): Option<Registry> = read_yaml(path)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for stored in registry
        .certificates
        .iter()
        .filter(|c| c.withdrawn.is_none())
    {
        let (_, der) =
            der::pem::decode_vec(stored.pem.as_bytes()).map_err(|e| StoreError::Corrupt {
                path: path.display().to_string(),
                reason: format!("a certificate of {} does not read ({e})", stored.aor),
            })?;
        let cert = crate::keys::Cert::from_der(&der, &path.display().to_string()).map_err(|e| {
            StoreError::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        out.push(cert);
    }
    Ok(out)
}

/// The registry in memory (the demo, tests, fuzzing; a live server's
/// cache later): one record per (realm, AOR as compared), behind a lock.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    records: std::sync::Mutex<std::collections::BTreeMap<(String, String), Registry>>,
    secrets: std::sync::Mutex<std::collections::BTreeMap<String, Zeroizing<[u8; 32]>>>,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> MemoryRegistry {
        MemoryRegistry::default()
    }
}

/// A panic while a lock was held leaves whole records behind (each change
/// is made on the record in place, then the lock is released): still good.
fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RegistrarStore for MemoryRegistry {
    fn load_aor(&self, realm: &str, aor: &Aor) -> Result<Registry, StoreError> {
        let key = (realm.to_owned(), aor.key.clone());
        Ok(locked(&self.records)
            .get(&key)
            .cloned()
            .unwrap_or_else(empty))
    }

    fn update_aor(
        &self,
        realm: &str,
        aor: &Aor,
        f: &mut dyn FnMut(&mut Registry),
    ) -> Result<(), StoreError> {
        let key = (realm.to_owned(), aor.key.clone());
        f(locked(&self.records).entry(key).or_insert_with(empty));
        Ok(())
    }

    fn load_realm(&self, realm: &str) -> Result<Registry, StoreError> {
        let mut all = empty();
        for ((r, _), one) in locked(&self.records).iter() {
            if r == realm {
                all.absorb(one.clone());
            }
        }
        Ok(all)
    }

    fn registrar_secret(
        &self,
        realm: &str,
        fresh: &mut dyn FnMut() -> [u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        Ok(locked(&self.secrets)
            .entry(realm.to_owned())
            .or_insert_with(|| Zeroizing::new(fresh()))
            .clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(s).unwrap()
    }

    #[test]
    fn thirty_two_concurrent_registrations_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        std::thread::scope(|s| {
            for i in 0..32 {
                let store = store.clone();
                s.spawn(move || {
                    let aor = format!("sip:u{i}@example.com");
                    store
                        .update_aor("example.com", &Aor::new(&aor), &mut |r| {
                            r.bindings.push(Binding {
                                aor: format!("sip:u{i}@example.com"),
                                contact: format!("sip:u{i}@192.0.2.1"),
                                expires: at(2_000_000_000),
                                source: None,
                                call_id: format!("c{i}"),
                                cseq: 1,
                                path: Vec::new(),
                                instance: None,
                                reg_id: None,
                            })
                        })
                        .unwrap();
                });
            }
        });
        let registry = store.load_realm("example.com").unwrap();
        assert_eq!(registry.bindings.len(), 32);
        let one = store
            .load_aor("example.com", &Aor::new("sip:u7@EXAMPLE.com"))
            .unwrap();
        assert_eq!(one.bindings.len(), 1, "the AOR as compared names one file");
        assert!(
            store
                .load_realm("other.example")
                .unwrap()
                .bindings
                .is_empty()
        );
    }

    #[test]
    fn the_memory_registry_keeps_one_record_per_aor_as_compared() {
        let store = MemoryRegistry::new();
        for aor in [
            "sip:a@Example.com",
            "sip:a@example.COM",
            "sip:b@example.com",
        ] {
            store
                .update_aor("example.com", &Aor::new(aor), &mut |r| {
                    r.bindings.push(Binding {
                        aor: aor.into(),
                        contact: "sip:x@192.0.2.1".into(),
                        expires: at(0),
                        source: None,
                        call_id: "c".into(),
                        cseq: 1,
                        path: Vec::new(),
                        instance: None,
                        reg_id: None,
                    })
                })
                .unwrap();
        }
        let one = store
            .load_aor("example.com", &Aor::new("sip:a@example.com"))
            .unwrap();
        assert_eq!(one.bindings.len(), 2);
        assert_eq!(store.load_realm("example.com").unwrap().bindings.len(), 3);
        assert!(
            store
                .load_realm("other.example")
                .unwrap()
                .bindings
                .is_empty()
        );
    }

    #[test]
    fn nonce_counts_are_used_once_and_forgotten_when_they_expire() {
        let mut r = Registry::default();
        assert!(r.use_nonce("n", 1, at(100)));
        assert!(r.use_nonce("n", 2, at(100)));
        assert!(!r.use_nonce("n", 1, at(100)));
        r.expire(at(100));
        assert!(r.nonces.is_empty());
    }

    /// L3: 8,000 REGISTERs made alice's record 15 KB, rewritten whole
    /// each time. Now the counts and nonces kept are bounded, and what
    /// was dropped is still refused.
    #[test]
    fn nonce_counts_stay_a_window_and_forgotten_nonces_stay_refused() {
        let mut r = Registry::default();
        for nc in 1..=8_000 {
            assert!(r.use_nonce("n", nc, at(1_000)));
        }
        assert_eq!(r.nonces[0].counts.len(), NONCE_WINDOW);
        assert!(!r.use_nonce("n", 8_000, at(1_000)), "a replay");
        assert!(!r.use_nonce("n", 100, at(1_000)), "below the window");
        for i in 0..100 {
            assert!(r.use_nonce(&format!("m{i}"), 1, at(2_000 + i)));
        }
        assert_eq!(r.nonces.len(), MAX_NONCES);
        assert!(!r.use_nonce("m0", 1, at(2_000)), "forgotten, still refused");
        assert!(!r.use_nonce("m0", 2, at(2_000)), "forgotten: any count");
        assert!(r.use_nonce("fresh", 1, at(3_000)));
        let text = crate::yaml::to_string(&r).unwrap();
        assert!(text.len() < 4_000, "{} bytes", text.len());
    }

    /// Issue 28: a version-1 record written before keys were kept reads
    /// with none; a key is kept until its publication ends, then
    /// forgotten, and an empty list is not written.
    #[test]
    fn bare_keys_read_from_old_records_and_expire_with_their_publication() {
        let old = "version: 1\nbindings: []\ncertificates: []\nnonces: []\n";
        let mut r: Registry = crate::yaml::from_str(old).unwrap();
        assert!(r.keys.is_empty());
        r.keys.push(StoredKey {
            aor: "sip:a@example.com".into(),
            sha256: "00".into(),
            expires: at(100),
            pem: "-----BEGIN PUBLIC KEY-----".into(),
        });
        assert!(r.current_key("sip:a@EXAMPLE.com", at(99)).is_some());
        assert!(r.current_key("sip:a@example.com", at(100)).is_none());
        r.expire(at(100));
        assert!(r.keys.is_empty());
        let text = crate::yaml::to_string(&r).unwrap();
        assert!(!text.contains("keys"), "{text}");
    }
}
