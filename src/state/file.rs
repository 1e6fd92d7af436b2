//! The file store: one directory per identity under a state directory,
//! so two relays sharing a machine (or a test directory) never see each
//! other's state.
//!
//! ```text
//! <state>/<identity>/sessions/<tag>.yaml    one session's keys (mode 0600; see session_files)
//! <state>/<identity>/pinholes/<tag>.yaml    one call's pinhole state
//! <state>/<identity>/secret                 32 random bytes (mode 0600)
//! ```
//!
//! Writers take an advisory lock on the directory's `.lock` file and write
//! whole files atomically ([`crate::fsio::write_atomic`]), so parallel
//! invocations from a shell script never lose or corrupt an entry.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::{Apply, PinholeStore, SessionStore, StepError, StoreError};
use crate::blocking::offload;
use crate::fsio::write_atomic;
use crate::pinhole::{CallState, Changes, call_tag};
use crate::session::{Entry, Recorded, SessionKey, Sessions, Use};
use time::{Duration, OffsetDateTime};

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The root of a state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// The directory.
    pub root: PathBuf,
}

impl StateDir {
    /// The directory of one identity, named after it (its certificate's
    /// SAN URI, else its subject), with anything but `[A-Za-z0-9.@+-]`
    /// turned into `_`: `sip_proxy-a.a.example.com`.
    pub fn identity_dir(&self, name: &str) -> PathBuf {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '+' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // Never `.` or `..`.
        let safe = if safe.trim_matches('.').is_empty() {
            format!("_{safe}")
        } else {
            safe
        };
        self.root.join(safe)
    }
}

/// Create `dir` (mode 0700) if needed and take an exclusive advisory lock
/// on its `.lock` file; the lock is released when the returned file drops.
pub fn lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(".lock");
    let open = || {
        let mut options = File::options();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(&path)
    };
    // The directory is made the first time (not checked on every write).
    let file = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(dir)?;
            open()
        }
        opened => opened,
    }
    .map_err(|e| io(&path, e))?;
    file.lock().map_err(|e| io(&path, e))?;
    Ok(file)
}

/// Once per process and directory, under that directory's [`lock`]
/// (every writer there holds it while its temporary file exists): remove
/// the temporary files a writer killed mid-write left (L2).
pub fn clear_leftovers(dir: &Path) -> Result<(), StoreError> {
    static CLEARED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<PathBuf>>> =
        std::sync::OnceLock::new();
    let cleared = CLEARED.get_or_init(Default::default);
    if cleared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains(dir)
    {
        return Ok(());
    }
    if let Ok(files) = std::fs::read_dir(dir) {
        for f in files.flatten() {
            if f.file_name().to_string_lossy().starts_with(".sipseal-") {
                match std::fs::remove_file(f.path()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&f.path(), e)),
                }
            }
        }
    }
    cleared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(dir.to_owned());
    Ok(())
}

/// `mkdir -p` with mode 0700 for what is created: state can hold keys.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| io(dir, e))
}

/// Read a YAML state file; `None` when there is none yet.
pub(crate) fn read_yaml<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => crate::yaml::from_str(&text)
            .map(Some)
            .map_err(|e| corrupt(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path, e)),
    }
}

/// Write a YAML state file atomically, mode 0600.
pub(crate) fn write_yaml<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let text = crate::yaml::to_string(value).map_err(|e| corrupt(path, e))?;
    write_atomic(path, text.as_bytes(), true).map_err(|e| io(path, e))
}

/// Sessions and pinholes as YAML files under a state directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: StateDir,
    /// fsync each session or pinhole file before it replaces the old one
    /// (the branch secret always is).
    pub(super) sync: bool,
    /// Sweep expired sessions on a thread of their own (a live server's
    /// store), not inline in the write that finds the sweep due.
    pub(super) sweep_aside: bool,
    /// Whether the state directory is in memory (tmpfs), found out once.
    in_memory: std::sync::OnceLock<bool>,
    /// Owners whose directories this process made (or found) and cleared
    /// of a killed writer's temporary files, and when it last swept their
    /// expired sessions: done once per process, not per write.
    pub(super) ready:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
}

impl FileStore {
    /// The store under `root`. Session keys and pinhole state are written
    /// atomically without fsync (docs/SPEC.md §5: a key lost to a power cut costs
    /// a rekey): whole or absent for every other process, and surviving
    /// the writer being killed, but not the machine losing power. The
    /// branch secret is fsync'd.
    pub fn new(root: &Path) -> FileStore {
        FileStore {
            dir: StateDir {
                root: root.to_owned(),
            },
            sync: false,
            sweep_aside: false,
            in_memory: std::sync::OnceLock::new(),
            ready: Default::default(),
        }
    }

    /// Run a write: where it may wait on a disk (an fsync: `sync`), off a
    /// live server's runtime threads ([`offload`]); on tmpfs, or without
    /// fsync, here and now (a few system calls, cheaper than a thread
    /// handoff).
    /// Where the file system is asked only when there is an fsync to
    /// place: a session key written without one (the default) never reads
    /// `/proc/self/mountinfo` (issue 26: a tenth of a shell's `open`).
    fn writing<T>(&self, sync: bool, f: impl FnOnce() -> T) -> T {
        let in_memory = || {
            *self
                .in_memory
                .get_or_init(|| crate::fsio::on_tmpfs(&self.dir.root))
        };
        if sync && !in_memory() {
            offload(f)
        } else {
            f()
        }
    }

    /// The store under `root`, fsyncing every session and pinhole file
    /// too (`relay --fsync`): a key survives the machine losing power, at
    /// the cost of a disk flush per new call.
    pub fn synced(root: &Path) -> FileStore {
        FileStore {
            sync: true,
            ..FileStore::new(root)
        }
    }

    /// This store, sweeping expired sessions on a thread of its own (a
    /// live server: a sweep reads every session file, and no message
    /// should wait for it).
    pub fn sweeping_aside(self) -> FileStore {
        FileStore {
            sweep_aside: true,
            ..self
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &StateDir {
        &self.dir
    }

    /// The layout-1 session file of `owner` (migrated on the first write).
    pub fn sessions_path(&self, owner: &str) -> PathBuf {
        self.dir.identity_dir(owner).join("sessions.yaml")
    }

    /// The file that keeps one call's pinhole state for `owner`.
    pub fn call_path(&self, owner: &str, call_id: &str) -> PathBuf {
        self.pinhole_dir(owner)
            .join(format!("{}.yaml", call_tag(call_id)))
    }

    fn pinhole_dir(&self, owner: &str) -> PathBuf {
        self.dir.identity_dir(owner).join("pinholes")
    }

    /// A layout-1 store (`sessions.yaml`, version 1); empty when there is none.
    pub(super) fn read_sessions(path: &Path, owner: Option<&str>) -> Result<Sessions, StoreError> {
        let Some(s) = read_yaml::<Sessions>(path)? else {
            return Ok(Sessions::empty(owner));
        };
        if s.version != Sessions::VERSION_1 {
            return Err(corrupt(
                path,
                format!(
                    "store version {} (a layout-1 sessions.yaml is version {})",
                    s.version,
                    Sessions::VERSION_1
                ),
            ));
        }
        Ok(s)
    }
}

impl SessionStore for FileStore {
    fn load(&self, owner: &str) -> Result<Sessions, StoreError> {
        self.read_all(owner)
    }

    fn secret(
        &self,
        owner: &str,
        fresh: &mut dyn FnMut() -> [u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        let path = self.dir.identity_dir(owner).join("secret");
        let read = |path: &Path| match std::fs::read(path) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
                .map(|b| Some(Zeroizing::new(b)))
                .map_err(|_| corrupt(path, "expected 32 bytes")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path, e)),
        };
        if let Some(s) = read(&path)? {
            return Ok(s);
        }
        self.writing(true, || {
            let _guard = lock(&self.dir.identity_dir(owner))?;
            if let Some(s) = read(&path)? {
                return Ok(s);
            }
            let s = Zeroizing::new(fresh());
            write_atomic(&path, s.as_slice(), true).map_err(|e| io(&path, e))?;
            Ok(s)
        })
    }

    fn update(&self, owner: &str, f: &mut dyn FnMut(&mut Sessions)) -> Result<(), StoreError> {
        self.writing(self.sync, || self.change_all(owner, f))
    }

    /// One file read (once layout 1 is gone).
    fn entry(&self, owner: &str, call_id: &str) -> Result<Option<Entry>, StoreError> {
        if self.sessions_path(owner).exists() {
            let all = self.read_all(owner)?;
            return Ok(all.sessions.into_iter().find(|e| e.call_id == call_id));
        }
        self.read_one(owner, call_id)
    }

    /// One file written, whatever the number of sessions.
    fn record(
        &self,
        owner: &str,
        entry: Entry,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<Recorded, StoreError> {
        self.writing(self.sync, || {
            self.record_one(owner, entry, now, grace, None)
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
        self.writing(self.sync, || self.record_one(owner, entry, now, grace, cap))
    }

    /// One file read when the Call-ID is known (and layout 1 is gone).
    fn lookup(
        &self,
        owner: &str,
        reference: &[u8],
        call_id: Option<&str>,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<Option<SessionKey>, StoreError> {
        let sessions = match call_id {
            Some(c) if !self.sessions_path(owner).exists() => Sessions {
                version: Sessions::VERSION,
                identity: Some(owner.to_owned()),
                sessions: self.read_one(owner, c)?.into_iter().collect(),
            },
            _ => self.read_all(owner)?,
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
        self.writing(self.sync, || {
            self.change_one(owner, call_id, |s| {
                s.use_key(call_id, now, max_uses, max_age)
            })
        })
    }

    fn next_cseq(&self, owner: &str, call_id: &str, floor: u32) -> Result<u32, StoreError> {
        self.writing(self.sync, || {
            self.change_one(owner, call_id, |s| s.next_cseq(call_id, floor))
        })
    }

    /// By Call-ID: one file; by reference: a search.
    fn forget(&self, owner: &str, what: &str) -> Result<bool, StoreError> {
        if self.session_path(owner, what).exists() {
            return self.change_one(owner, what, |s| s.forget(what));
        }
        let mut found = false;
        self.change_all(owner, &mut |s| found = s.forget(what))?;
        Ok(found)
    }

    /// Every identity directory holding sessions (either layout), in name
    /// order; each named by the identity its files record, else the directory.
    fn all(&self) -> Result<Vec<(String, Sessions)>, StoreError> {
        let entries = match std::fs::read_dir(&self.dir().root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir().root, e)),
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("sessions.yaml").is_file() || p.join("sessions").is_dir())
            .collect();
        dirs.sort();
        let mut out = Vec::new();
        for dir in dirs {
            let dir_name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let s = self.read_all_in(&dir, None)?;
            if s.sessions.is_empty() {
                continue;
            }
            let name = s.identity.clone().unwrap_or(dir_name);
            out.push((name, s));
        }
        Ok(out)
    }
}

impl PinholeStore for FileStore {
    fn change(
        &self,
        owner: &str,
        call_id: &str,
        f: &mut dyn FnMut(&mut CallState) -> Changes,
        apply: Apply<'_>,
    ) -> Result<Changes, StepError> {
        self.writing(self.sync, || self.change_now(owner, call_id, f, apply))
    }

    fn calls(&self, owner: &str) -> Result<Vec<CallState>, StoreError> {
        let dir = self.pinhole_dir(owner);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir, e)),
        };
        let mut calls = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| io(&dir, e))?.path();
            if path.extension().is_some_and(|x| x == "yaml")
                && let Some(call) = read_yaml::<CallState>(&path)?
            {
                calls.push(call);
            }
        }
        calls.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        Ok(calls)
    }
}

impl FileStore {
    fn change_now(
        &self,
        owner: &str,
        call_id: &str,
        f: &mut dyn FnMut(&mut CallState) -> Changes,
        apply: Apply<'_>,
    ) -> Result<Changes, StepError> {
        let _guard = lock(&self.pinhole_dir(owner))?;
        clear_leftovers(&self.pinhole_dir(owner))?;
        let path = self.call_path(owner, call_id);
        let mut state = match read_yaml::<CallState>(&path)? {
            Some(s) if s.call_id != call_id => {
                return Err(corrupt(&path, format!("it is for Call-ID {:?}", s.call_id)).into());
            }
            Some(s) => s,
            None => CallState::new(call_id),
        };
        let changes = f(&mut state);
        apply(&changes)?;
        if state.is_over() {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path, e).into()),
            }
        } else {
            let text = crate::yaml::to_string(&state).map_err(|e| corrupt(&path, e))?;
            crate::fsio::write_atomic_synced(&path, text.as_bytes(), true, None, self.sync)
                .map_err(|e| io(&path, e))?;
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::pinhole::Seen;
    use crate::session::{DEFAULT_GRACE, Entry, Policy, Recorded, Role};

    #[test]
    fn identity_directories_are_safe_names() {
        let s = StateDir {
            root: PathBuf::from("/s"),
        };
        assert_eq!(
            s.identity_dir("sip:proxy-a.a.example.com"),
            PathBuf::from("/s/sip_proxy-a.a.example.com")
        );
        assert_eq!(s.identity_dir("CN=x/../y"), PathBuf::from("/s/CN_x_.._y"));
        assert_eq!(s.identity_dir(".."), PathBuf::from("/s/_.."));
    }

    /// L2: temporary files a writer killed with -9 left in `pinholes/`
    /// were never removed; and the `.lock` files were 0644.
    #[test]
    fn a_killed_writers_leftovers_go_at_the_next_step_and_locks_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        let owner = "sip:proxy-a.a.example.com";
        let dir = store.pinhole_dir(owner);
        create_private_dir(&dir).unwrap();
        let leftover = dir.join(".sipseal-killed");
        std::fs::write(&leftover, b"half a call").unwrap();
        let seen = Seen::of(
            &crate::sip::Message::parse(
                b"OPTIONS sip:b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@a>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            )
            .unwrap(),
            None,
        );
        store.step(owner, "c", &seen).unwrap();
        assert!(!leftover.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(".lock"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn lock_creates_a_private_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let guard = lock(&dir).unwrap();
        assert!(dir.join(".lock").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        // A second lock on the same file waits; try_lock says so.
        let other = File::options().write(true).open(dir.join(".lock")).unwrap();
        assert!(other.try_lock().is_err());
        drop(guard);
        assert!(other.try_lock().is_ok());
    }

    #[test]
    fn sessions_are_recorded_in_a_private_file() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        let now = datetime!(2026-01-01 0:00 UTC);
        let entry = Entry::new("c1", &[1u8; 32], Role::Ua, None, now, &Policy::default());
        assert_eq!(
            store
                .record("sip:a@h", entry.clone(), now, DEFAULT_GRACE)
                .unwrap(),
            Recorded::New
        );
        let back = store.load("sip:a@h").unwrap();
        assert_eq!(back.sessions, [entry]);
        assert_eq!(back.identity.as_deref(), Some("sip:a@h"));
        assert_eq!(store.all().unwrap()[0].0, "sip:a@h");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = store.session_path("sip:a@h", "c1");
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// Issue 26: the same key again leaves the file as it is (no replacing
    /// rename, which ext4 follows with a flush); a new key rewrites it.
    #[test]
    fn the_same_key_again_is_not_written_again() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        let now = datetime!(2026-01-01 0:00 UTC);
        let entry = Entry::new("c1", &[1u8; 32], Role::Ua, None, now, &Policy::default());
        store
            .record("sip:a@h", entry.clone(), now, DEFAULT_GRACE)
            .unwrap();
        let path = store.session_path("sip:a@h", "c1");
        let inode = std::fs::metadata(&path).unwrap().ino();
        let again = store.record("sip:a@h", entry, now, DEFAULT_GRACE).unwrap();
        assert_eq!(again, Recorded::Same);
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            inode,
            "not replaced"
        );
        let new = Entry::new("c1", &[2u8; 32], Role::Ua, None, now, &Policy::default());
        let replaced = store.record("sip:a@h", new, now, DEFAULT_GRACE).unwrap();
        assert_eq!(replaced, Recorded::Replaced);
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode, "replaced");
    }

    /// A live server's store sweeps on a thread of its own: the write that
    /// finds the sweep due goes on, the expired sessions go in time, and
    /// what is live stays.
    #[test]
    fn a_live_store_sweeps_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path()).sweeping_aside();
        let now = OffsetDateTime::now_utc();
        let policy = Policy::default();
        let peer = Some("sip:alice@a.example.com".to_owned());
        let live = Entry::new("live", &[2u8; 32], Role::Relay, peer.clone(), now, &policy);
        let mut expired = Entry::new("gone", &[3u8; 32], Role::Relay, peer, now, &policy);
        expired.expiry = Some(now - time::Duration::days(2));
        create_private_dir(&store.dir().identity_dir("r").join("tmp")).unwrap();
        for e in [&live, &expired] {
            store.write_one("r", e).unwrap();
            store.mark_peer("r", e).unwrap();
        }
        // No sweep has been done: the first write finds one due.
        let new = Entry::new("new", &[4u8; 32], Role::Relay, None, now, &policy);
        store.record("r", new, now, DEFAULT_GRACE).unwrap();
        let gone = store.session_path("r", "gone");
        for _ in 0..500 {
            if !gone.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!gone.exists(), "the expired session was never swept");
        assert!(store.session_path("r", "live").exists());
        assert!(store.session_path("r", "new").exists());
        let peers = store.peer_dir("r", "sip:alice@a.example.com");
        let marks: Vec<_> = std::fs::read_dir(peers)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(marks, [call_tag("live")], "the expired one's mark went too");
    }

    /// A vouched-for session (recorded without a cap) leaves no mark and
    /// does not count against the cap of the same sender unvouched: the
    /// cap bounds what no one vouched for, and a designated relay's
    /// vouched calls cost one file each, not two.
    #[test]
    fn only_sessions_stored_under_a_cap_count_against_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        let now = OffsetDateTime::now_utc();
        let policy = Policy::default();
        let peer = Some("sip:alice@a.example.com".to_owned());
        let entry = |i: u8| {
            Entry::new(
                &format!("c{i}"),
                &[i; 32],
                Role::Relay,
                peer.clone(),
                now,
                &policy,
            )
        };
        for i in 1..=3 {
            let r = store.record_capped("r", entry(i), now, DEFAULT_GRACE, None);
            assert_eq!(r.unwrap(), Recorded::New);
        }
        let marks = store.peer_dir("r", "sip:alice@a.example.com");
        assert!(!marks.exists(), "a vouched-for session left a mark");
        let capped: Vec<_> = (4..=6)
            .map(|i| {
                store
                    .record_capped("r", entry(i), now, DEFAULT_GRACE, Some(2))
                    .unwrap()
            })
            .collect();
        assert_eq!(capped, [Recorded::New, Recorded::New, Recorded::Capped]);
        assert_eq!(std::fs::read_dir(&marks).unwrap().count(), 2);
        assert_eq!(store.load("r").unwrap().sessions.len(), 5);
    }

    /// S6: a layout-1 store is migrated on the first write (each session
    /// its own `version: 2` file), expired sessions are swept, and an
    /// unvouched sender is capped.
    #[test]
    fn layout_1_migrates_expired_sessions_go_and_senders_are_capped() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        let now = datetime!(2026-01-01 0:00 UTC);
        let policy = Policy::default();
        let old = Entry::new("old", &[2u8; 32], Role::Relay, None, now, &policy);
        let mut expired = Entry::new("gone", &[3u8; 32], Role::Relay, None, now, &policy);
        expired.expiry = Some(now - time::Duration::days(2));
        let v1 = Sessions {
            version: 1,
            identity: Some("r".into()),
            sessions: vec![old.clone(), expired],
        };
        let legacy = store.sessions_path("r");
        create_private_dir(legacy.parent().unwrap()).unwrap();
        std::fs::write(&legacy, crate::yaml::to_string(&v1).unwrap()).unwrap();
        // Read as it is...
        assert_eq!(store.load("r").unwrap().sessions.len(), 2);
        // ... and migrated (and swept) by the first write.
        let new = Entry::new("new", &[4u8; 32], Role::Relay, None, now, &policy);
        store.record("r", new, now, DEFAULT_GRACE).unwrap();
        assert!(!legacy.exists());
        let calls: Vec<String> = store
            .load("r")
            .unwrap()
            .sessions
            .into_iter()
            .map(|e| e.call_id)
            .collect();
        let mut sorted = calls.clone();
        sorted.sort();
        assert_eq!(sorted, ["new", "old"], "the expired one was swept");
        assert!(calls.contains(&"old".to_owned()) && calls.contains(&"new".to_owned()));
        assert!(!calls.contains(&"gone".to_owned()), "{calls:?}");
        let text = std::fs::read_to_string(store.session_path("r", "old")).unwrap();
        assert!(text.starts_with("version: 2\n"), "{text}");
        // A sender no one vouched for: at most `cap` sessions.
        let peer = Some("sip:mallory@m.example.com".to_owned());
        for i in 0..3 {
            let e = Entry::new(
                &format!("m{i}"),
                &[5 + i as u8; 32],
                Role::Relay,
                peer.clone(),
                now,
                &policy,
            );
            let r = store
                .record_capped("r", e, now, DEFAULT_GRACE, Some(2))
                .unwrap();
            assert_eq!(
                r,
                if i < 2 {
                    Recorded::New
                } else {
                    Recorded::Capped
                },
                "{i}"
            );
        }
        // A known session of that sender may still be updated.
        let again = Entry::new("m0", &[9u8; 32], Role::Relay, peer, now, &policy);
        assert_eq!(
            store
                .record_capped("r", again, now, DEFAULT_GRACE, Some(2))
                .unwrap(),
            Recorded::Replaced
        );
        // Forgetting one frees a place.
        assert!(store.forget("r", "m1").unwrap());
        assert!(!store.session_path("r", "m1").exists());
    }

    #[test]
    fn a_corrupt_store_is_named_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        let path = store.session_path("me", "c9");
        create_private_dir(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "sessions: [unclosed").unwrap();
        let now = datetime!(2026-01-01 0:00 UTC);
        let entry = Entry::new("c", &[1u8; 32], Role::Ua, None, now, &Policy::default());
        let err = store.record("me", entry, now, DEFAULT_GRACE).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "sessions: [unclosed"
        );
        std::fs::write(&path, "version: 7\nsessions: []\n").unwrap();
        assert!(
            store
                .load("me")
                .unwrap_err()
                .to_string()
                .contains("version 7")
        );
    }

    #[test]
    fn pinhole_state_survives_a_round_trip_and_a_corrupt_file_is_named() {
        use crate::sdp::Stream;
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        let seen = |method: &str, cseq, streams| Seen {
            is_request: true,
            method: method.into(),
            cseq,
            status: None,
            streams,
            tags: (Some("a".into()), None),
            source: None,
            party_signed: false,
            limits: Default::default(),
            now: Some(1_000),
        };
        let offer = seen(
            "INVITE",
            1,
            Some(vec![Stream {
                media: "audio".into(),
                address: Some("192.0.2.1".into()),
                port: 4000,
                transport: "RTP/AVP".into(),
                rtcp_mux: true,
                rtcp_port: None,
                rtcp_address: None,
            }]),
        );
        store.step("r", "call-1", &offer).unwrap();
        assert!(store.call_path("r", "call-1").exists());
        // The answer gives the dialog its To tag: kept in the file.
        let mut answer = offer.clone();
        answer.is_request = false;
        answer.status = Some(200);
        answer.tags.1 = Some("b".into());
        store.step("r", "call-1", &answer).unwrap();
        let mut bye = seen("BYE", 2, None);
        bye.tags.1 = Some("b".into());
        let c = store.step("r", "call-1", &bye).unwrap();
        assert_eq!(c.delete.len(), 1);
        assert!(!store.call_path("r", "call-1").exists());

        std::fs::write(store.call_path("r", "call-2"), "[not a state").unwrap();
        let err = store.step("r", "call-2", &offer).unwrap_err();
        assert!(
            matches!(err, StepError::Store(StoreError::Corrupt { .. })),
            "{err}"
        );
        assert!(err.to_string().contains(&call_tag("call-2")), "{err}");
        // Left as it was.
        assert_eq!(
            std::fs::read_to_string(store.call_path("r", "call-2")).unwrap(),
            "[not a state"
        );
    }

    /// A change the firewall does not confirm is not kept: the call's
    /// file is as it was, and the next attempt sees the same change.
    #[test]
    fn a_change_the_firewall_refuses_is_not_kept() {
        use crate::firewall::FirewallError;
        use crate::sdp::Stream;
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        let mut offer = Seen::of(
            &crate::sip::Message::parse(
                b"INVITE sip:b@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nFrom: <sip:a@a.example.com>;tag=a\r\nTo: <sip:b@b.example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            )
            .unwrap(),
            None,
        );
        offer.streams = Some(vec![Stream {
            media: "audio".into(),
            address: Some("192.0.2.1".into()),
            port: 4000,
            transport: "RTP/AVP".into(),
            rtcp_mux: true,
            rtcp_port: None,
            rtcp_address: None,
        }]);
        offer.now = Some(1_000);
        let mut asked = Vec::new();
        let err = store
            .step_applied("r", "c", &offer, &mut |c| {
                asked.push(c.add.len());
                Err(FirewallError("nft said no".into()))
            })
            .unwrap_err();
        assert!(matches!(err, StepError::Firewall(_)), "{err}");
        assert_eq!(asked, [1]);
        assert!(!store.call_path("r", "c").exists());
        assert!(store.calls("r").unwrap().is_empty());
        // Confirmed this time: kept, with when it passed.
        let c = store
            .step_applied("r", "c", &offer, &mut |_| Ok(()))
            .unwrap();
        assert!(c.alters);
        let calls = store.calls("r").unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].since, Some(1_000));
        // The same offer again adds nothing the firewall lacks.
        let again = store.step("r", "c", &offer).unwrap();
        assert!(!again.alters);
        assert_eq!(again.add.len(), 1);

        // Too old: ended, its pinhole deleted once the firewall confirms.
        let refused = crate::state::expire_calls(&store, "r", 2_000, 3_000, &mut |_| {
            Err(FirewallError("no".into()))
        });
        assert!(refused.is_err());
        assert_eq!(store.calls("r").unwrap().len(), 1);
        let kept = crate::state::expire_calls(&store, "r", 1_000, 3_000, &mut |_| Ok(())).unwrap();
        assert!(kept.is_empty(), "not older than the cutoff");
        let ended = crate::state::expire_calls(&store, "r", 2_000, 3_000, &mut |_| Ok(())).unwrap();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].state, "ended");
        assert_eq!(ended[0].delete.len(), 1);
        assert!(store.calls("r").unwrap().is_empty());
    }
}
