//! The file store's sessions, layout 2: one small file per session, so a
//! write costs the same with 5 sessions or 50,000.
//!
//! ```text
//! <state>/<identity>/sessions/<call tag>.yaml   one session (version: 2), mode 0600
//! <state>/<identity>/peers/<peer tag>/<call tag> marks which peer added it (the cap)
//! <state>/<identity>/tmp/                        temporary files while writing
//! <state>/<identity>/.swept                      when expired sessions were last removed
//! <state>/<identity>/sessions.yaml               layout 1 (version: 1): migrated on first write
//! ```
//!
//! Every change happens under the identity's lock. Before a change, the
//! writer removes what a killed writer left in `tmp/` (key material), moves
//! a layout-1 file into layout 2, and, at most once a minute, removes the
//! sessions past expiry + grace.

use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use super::StoreError;
use super::file::{FileStore, create_private_dir, lock};
use crate::pinhole::call_tag;
use crate::session::{Entry, Recorded, Sessions};

/// Expired sessions are swept at most this often.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

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

impl FileStore {
    fn sessions_dir(&self, owner: &str) -> PathBuf {
        self.dir().identity_dir(owner).join("sessions")
    }

    /// The file of one session (layout 2).
    pub fn session_path(&self, owner: &str, call_id: &str) -> PathBuf {
        self.sessions_dir(owner)
            .join(format!("{}.yaml", call_tag(call_id)))
    }

    pub(super) fn peer_dir(&self, owner: &str, peer: &str) -> PathBuf {
        self.dir()
            .identity_dir(owner)
            .join("peers")
            .join(call_tag(&peer.to_ascii_lowercase()))
    }

    fn tmp_dir(&self, owner: &str) -> PathBuf {
        self.dir().identity_dir(owner).join("tmp")
    }

    /// One session file, layout 2.
    fn read_file(&self, path: &Path) -> Result<Option<Entry>, StoreError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path, e)),
        };
        let s: Sessions = crate::yaml::from_str(&text).map_err(|e| corrupt(path, e))?;
        if s.version != Sessions::VERSION {
            return Err(corrupt(
                path,
                format!(
                    "session file version {} (this sipseal reads {})",
                    s.version,
                    Sessions::VERSION
                ),
            ));
        }
        let mut entries = s.sessions.into_iter();
        match (entries.next(), entries.next()) {
            (Some(e), None) => Ok(Some(e)),
            _ => Err(corrupt(path, "a session file holds exactly one session")),
        }
    }

    /// The identity a session file names.
    fn identity_of(&self, path: &Path) -> Option<String> {
        let text = std::fs::read_to_string(path).ok()?;
        crate::yaml::from_str::<Sessions>(&text).ok()?.identity
    }

    /// The session of `call_id`, if stored.
    pub(super) fn read_one(&self, owner: &str, call_id: &str) -> Result<Option<Entry>, StoreError> {
        let path = self.session_path(owner, call_id);
        match self.read_file(&path)? {
            Some(e) if e.call_id != call_id => {
                Err(corrupt(&path, format!("it is for Call-ID {:?}", e.call_id)))
            }
            found => Ok(found),
        }
    }

    /// Write one session (mode 0600, the temporary file in `tmp/`).
    pub(super) fn write_one(&self, owner: &str, entry: &Entry) -> Result<(), StoreError> {
        let path = self.session_path(owner, &entry.call_id);
        let file = Sessions {
            version: Sessions::VERSION,
            identity: Some(owner.to_owned()),
            sessions: vec![entry.clone()],
        };
        let text = crate::yaml::to_string(&file).map_err(|e| corrupt(&path, e))?;
        let tmp = self.tmp_dir(owner);
        if !self.is_ready(owner) {
            create_private_dir(&tmp)?;
            create_private_dir(&self.sessions_dir(owner))?;
        }
        crate::fsio::replace_private(&path, text.as_bytes(), &tmp, self.sync)
            .map_err(|e| io(&path, e))
    }

    /// Remove one session and its peer mark.
    pub(super) fn remove_one(&self, owner: &str, entry: &Entry) -> Result<(), StoreError> {
        let path = self.session_path(owner, &entry.call_id);
        remove_if_there(&path)?;
        if let Some(peer) = &entry.peer {
            remove_if_there(&self.peer_dir(owner, peer).join(call_tag(&entry.call_id)))?;
        }
        Ok(())
    }

    /// Every session of `owner`: layout 1 (not migrated yet) and layout 2,
    /// oldest first.
    pub(super) fn read_all(&self, owner: &str) -> Result<Sessions, StoreError> {
        self.read_all_in(&self.dir().identity_dir(owner), Some(owner))
    }

    /// Every session kept in the identity directory `id_dir`.
    pub(super) fn read_all_in(
        &self,
        id_dir: &Path,
        owner: Option<&str>,
    ) -> Result<Sessions, StoreError> {
        let mut out = FileStore::read_sessions(&id_dir.join("sessions.yaml"), owner)?;
        out.version = Sessions::VERSION;
        let dir = id_dir.join("sessions");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&dir, e)),
        };
        for e in entries {
            let e = e.map_err(|err| io(&dir, err))?;
            let name = e.file_name();
            if !name.to_string_lossy().ends_with(".yaml") {
                continue;
            }
            if let Some(entry) = self.read_file(&e.path())? {
                if out.identity.is_none() {
                    out.identity = self.identity_of(&e.path());
                }
                out.sessions.push(entry);
            }
        }
        out.sessions
            .sort_by(|a, b| a.created.cmp(&b.created).then(a.call_id.cmp(&b.call_id)));
        Ok(out)
    }

    /// Before a change, under the lock: remove a killed writer's
    /// temporary files, migrate layout 1, and sweep expired sessions when
    /// due.
    pub(super) fn prepare(
        &self,
        owner: &str,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<(), StoreError> {
        // This process did the rest for this owner lately: only the sweep,
        // when due, is left.
        let last = self
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(owner)
            .copied();
        if let Some(at) = last {
            if at.elapsed() >= SWEEP_EVERY {
                self.sweep_when(owner, now, grace)?;
            }
            return Ok(());
        }
        let tmp = self.tmp_dir(owner);
        if let Ok(leftovers) = std::fs::read_dir(&tmp) {
            for f in leftovers.flatten() {
                remove_if_there(&f.path())?;
            }
        }
        // Where earlier versions wrote their temporaries (a few entries).
        if let Ok(files) = std::fs::read_dir(self.dir().identity_dir(owner)) {
            for f in files.flatten() {
                if f.file_name().to_string_lossy().starts_with(".sipseal-") {
                    remove_if_there(&f.path())?;
                }
            }
        }
        let legacy = self.sessions_path(owner);
        if legacy.exists() {
            let old = FileStore::read_sessions(&legacy, Some(owner))?;
            for e in &old.sessions {
                self.write_one(owner, e)?;
            }
            remove_if_there(&legacy)?;
        }
        let stamp = self.dir().identity_dir(owner).join(".swept");
        let due = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default() >= SWEEP_EVERY)
            .unwrap_or(true);
        create_private_dir(&tmp)?;
        create_private_dir(&self.sessions_dir(owner))?;
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(owner.to_owned(), std::time::Instant::now());
        if due {
            self.sweep_when(owner, now, grace)?;
        }
        Ok(())
    }

    /// Sweep now, or (a live server's store) on a thread of its own, so
    /// that reading every session file delays no message: the next sweep
    /// is then due a minute from now, whatever this one takes.
    fn sweep_when(
        &self,
        owner: &str,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<(), StoreError> {
        if !self.sweep_aside {
            return self.sweep(owner, now, grace);
        }
        if let Some(at) = self
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(owner)
        {
            *at = std::time::Instant::now();
        }
        let (store, owner) = (self.clone(), owner.to_owned());
        std::thread::spawn(move || {
            // A sweep that fails is tried again in a minute.
            let _ = store.sweep_files(&owner, grace);
        });
        Ok(())
    }

    /// Remove `owner`'s expired sessions one file at a time, each under
    /// the lock only while it is read again and removed (a writer may have
    /// renewed it since it was read).
    fn sweep_files(&self, owner: &str, grace: Duration) -> Result<(), StoreError> {
        let dir = self.sessions_dir(owner);
        if let Ok(files) = std::fs::read_dir(&dir) {
            for f in files.flatten() {
                let path = f.path();
                if path.extension().is_none_or(|x| x != "yaml") {
                    continue;
                }
                let expired = || {
                    let now = OffsetDateTime::now_utc();
                    self.read_file(&path)
                        .ok()
                        .flatten()
                        .filter(|e| e.keys_at(now, grace).is_empty())
                };
                if expired().is_none() {
                    continue;
                }
                let _guard = lock(&self.dir().identity_dir(owner))?;
                if let Some(entry) = expired() {
                    self.remove_one(owner, &entry)?;
                }
            }
        }
        let stamp = self.dir().identity_dir(owner).join(".swept");
        std::fs::write(&stamp, b"").map_err(|e| io(&stamp, e))
    }

    /// Whether this process has made `owner`'s directories.
    fn is_ready(&self, owner: &str) -> bool {
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(owner)
    }

    /// Remove `owner`'s expired sessions.
    fn sweep(&self, owner: &str, now: OffsetDateTime, grace: Duration) -> Result<(), StoreError> {
        for e in self.read_all(owner)?.sessions {
            if e.keys_at(now, grace).is_empty() {
                self.remove_one(owner, &e)?;
            }
        }
        let stamp = self.dir().identity_dir(owner).join(".swept");
        std::fs::write(&stamp, b"").map_err(|e| io(&stamp, e))?;
        if let Some(at) = self
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(owner)
        {
            *at = std::time::Instant::now();
        }
        Ok(())
    }

    pub(super) fn mark_peer(&self, owner: &str, entry: &Entry) -> Result<(), StoreError> {
        if let Some(peer) = &entry.peer {
            let dir = self.peer_dir(owner, peer);
            let mark = dir.join(call_tag(&entry.call_id));
            // The peer's directory is made for its first session.
            match std::fs::write(&mark, b"") {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    create_private_dir(&dir)?;
                    std::fs::write(&mark, b"")
                }
                written => written,
            }
            .map_err(|e| io(&mark, e))?;
        }
        Ok(())
    }

    /// Record a key (see [`Sessions::record`]); a new session of a peer
    /// that already has `cap` sessions is not stored.
    pub(super) fn record_one(
        &self,
        owner: &str,
        entry: Entry,
        now: OffsetDateTime,
        grace: Duration,
        cap: Option<usize>,
    ) -> Result<Recorded, StoreError> {
        let _guard = lock(&self.dir().identity_dir(owner))?;
        self.prepare(owner, now, grace)?;
        let existing = self.read_one(owner, &entry.call_id)?;
        if existing.is_none()
            && let (Some(cap), Some(peer)) = (cap, &entry.peer)
        {
            let held = std::fs::read_dir(self.peer_dir(owner, peer))
                .map(|d| d.count())
                .unwrap_or(0);
            if held >= cap {
                return Ok(Recorded::Capped);
            }
        }
        let before = existing.clone();
        let mut one = Sessions {
            version: Sessions::VERSION,
            identity: Some(owner.to_owned()),
            sessions: existing.into_iter().collect(),
        };
        let recorded = one.record(entry, now, grace);
        // The same key again, nothing changed: the file stays as it is (a
        // replacing rename makes ext4 flush the new file's data, about a
        // millisecond of a shell script's `open` of a message it opened
        // before; issue 26).
        if let Some(e) = one.sessions.first()
            && before.as_ref() != Some(e)
        {
            self.write_one(owner, e)?;
            // Only a session recorded under a cap is counted against one:
            // a vouched-for call costs no second file (a new inode per
            // call is most of what the store costs a designated relay).
            if recorded == Recorded::New && cap.is_some() {
                self.mark_peer(owner, e)?;
            }
        }
        Ok(recorded)
    }

    /// Change the session of `call_id` alone, under the lock.
    pub(super) fn change_one<T>(
        &self,
        owner: &str,
        call_id: &str,
        f: impl FnOnce(&mut Sessions) -> T,
    ) -> Result<T, StoreError> {
        let _guard = lock(&self.dir().identity_dir(owner))?;
        let now = OffsetDateTime::now_utc();
        self.prepare(owner, now, crate::session::DEFAULT_GRACE)?;
        let mut one = Sessions {
            version: Sessions::VERSION,
            identity: Some(owner.to_owned()),
            sessions: self.read_one(owner, call_id)?.into_iter().collect(),
        };
        let before = one.sessions.first().cloned();
        let out = f(&mut one);
        match (before, one.sessions.first()) {
            (Some(b), Some(a)) if b == *a => {}
            (_, Some(a)) => self.write_one(owner, a)?,
            (Some(b), None) => self.remove_one(owner, &b)?,
            (None, None) => {}
        }
        Ok(out)
    }

    /// Change every session at once (what a generic `update` asks):
    /// changed files written, removed ones deleted.
    pub(super) fn change_all(
        &self,
        owner: &str,
        f: &mut dyn FnMut(&mut Sessions),
    ) -> Result<(), StoreError> {
        let _guard = lock(&self.dir().identity_dir(owner))?;
        self.prepare(
            owner,
            OffsetDateTime::now_utc(),
            crate::session::DEFAULT_GRACE,
        )?;
        let before = self.read_all(owner)?;
        let mut after = before.clone();
        f(&mut after);
        for old in &before.sessions {
            if !after.sessions.iter().any(|e| e.call_id == old.call_id) {
                self.remove_one(owner, old)?;
            }
        }
        for new in &after.sessions {
            if !before.sessions.contains(new) {
                self.write_one(owner, new)?;
            }
        }
        Ok(())
    }
}

fn remove_if_there(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path, e)),
    }
}
