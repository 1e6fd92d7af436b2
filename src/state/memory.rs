//! The memory store: sessions and pinholes in this process only.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use zeroize::Zeroizing;

use super::{Apply, PinholeStore, SessionStore, StepError, StoreError};
use crate::pinhole::{CallState, Changes};
use crate::session::Sessions;

/// Everything in memory, behind one lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<BTreeMap<String, Sessions>>,
    calls: Mutex<BTreeMap<(String, String), CallState>>,
    secrets: Mutex<BTreeMap<String, Zeroizing<[u8; 32]>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

/// A panic while the lock was held leaves whole values behind (every
/// change is one assignment), so the data is still good.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SessionStore for MemoryStore {
    fn load(&self, owner: &str) -> Result<Sessions, StoreError> {
        Ok(locked(&self.sessions)
            .get(owner)
            .cloned()
            .unwrap_or_else(|| Sessions::empty(Some(owner))))
    }

    fn update(&self, owner: &str, f: &mut dyn FnMut(&mut Sessions)) -> Result<(), StoreError> {
        let mut all = locked(&self.sessions);
        let mut sessions = all
            .get(owner)
            .cloned()
            .unwrap_or_else(|| Sessions::empty(Some(owner)));
        f(&mut sessions);
        all.insert(owner.to_owned(), sessions);
        Ok(())
    }

    fn secret(
        &self,
        owner: &str,
        fresh: &mut dyn FnMut() -> [u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        Ok(locked(&self.secrets)
            .entry(owner.to_owned())
            .or_insert_with(|| Zeroizing::new(fresh()))
            .clone())
    }

    /// In place: no copy of the owner's sessions per message.
    fn read(&self, owner: &str, f: &mut dyn FnMut(&Sessions)) -> Result<(), StoreError> {
        match locked(&self.sessions).get(owner) {
            Some(sessions) => f(sessions),
            None => f(&Sessions::empty(Some(owner))),
        }
        Ok(())
    }

    fn all(&self) -> Result<Vec<(String, Sessions)>, StoreError> {
        Ok(locked(&self.sessions)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl PinholeStore for MemoryStore {
    fn change(
        &self,
        owner: &str,
        call_id: &str,
        f: &mut dyn FnMut(&mut CallState) -> Changes,
        apply: Apply<'_>,
    ) -> Result<Changes, StepError> {
        let mut calls = locked(&self.calls);
        let key = (owner.to_owned(), call_id.to_owned());
        let mut state = calls
            .get(&key)
            .cloned()
            .unwrap_or_else(|| CallState::new(call_id));
        let changes = f(&mut state);
        apply(&changes)?;
        if state.is_over() {
            calls.remove(&key);
        } else {
            calls.insert(key, state);
        }
        Ok(changes)
    }

    fn calls(&self, owner: &str) -> Result<Vec<CallState>, StoreError> {
        Ok(locked(&self.calls)
            .iter()
            .filter(|((o, _), _)| o == owner)
            .map(|(_, c)| c.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::session::{DEFAULT_GRACE, Entry, Policy, Role, Use};

    #[test]
    fn the_same_workflow_calls_work_in_memory() {
        let store = MemoryStore::new();
        let now = datetime!(2026-01-01 0:00 UTC);
        let entry = Entry::new("c", &[7u8; 32], Role::Ua, None, now, &Policy::default());
        store
            .record("me", entry.clone(), now, DEFAULT_GRACE)
            .unwrap();
        let key = store
            .lookup("me", &entry.reference, Some("c"), now, DEFAULT_GRACE)
            .unwrap()
            .unwrap();
        assert_eq!(key.reference, entry.reference);
        assert!(
            store
                .lookup("other", &entry.reference, Some("c"), now, DEFAULT_GRACE)
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            store.use_key("me", "c", now, None, None).unwrap(),
            Use::Key(_)
        ));
        assert_eq!(store.load("me").unwrap().sessions[0].uses, 1);
        assert_eq!(store.next_cseq("me", "c", 1).unwrap(), 1);
        assert_eq!(store.next_cseq("me", "c", 1).unwrap(), 2);
        assert!(store.forget("me", "c").unwrap());
        assert!(store.load("other").unwrap().sessions.is_empty());
    }
}
