//! The state directory (SPEC §5): what a relay or user agent keeps between
//! invocations. `--state DIR`, else `SIPSEAL_STATE`, else the XDG state
//! directory (`$XDG_STATE_HOME/sipseal`, `~/.local/state/sipseal`). Each
//! identity gets its own subdirectory, so two relays sharing a machine (or
//! a test directory) never see each other's state.
//!
//! Writers take an advisory lock on the identity directory's `.lock` file
//! and write whole files atomically ([`crate::fsio::write_atomic`]).

use std::fs::File;
use std::path::{Path, PathBuf};

/// Problems with the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no state directory: neither --state, SIPSEAL_STATE nor a home directory")]
    NoDir,
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a sipseal state file: {reason}")]
    Corrupt { path: String, reason: String },
}

impl StateError {
    /// What to do next.
    pub fn hint(&self) -> String {
        match self {
            StateError::NoDir => "give --state DIR or set SIPSEAL_STATE".into(),
            StateError::Io { .. } => {
                "check that the state directory exists and is writable by you".into()
            }
            StateError::Corrupt { .. } => {
                "nothing was changed; move the file aside (or repair it) and run again".into()
            }
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> StateError {
        StateError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The root of the state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    /// `explicit` (from `--state` or `SIPSEAL_STATE`), else the XDG state directory.
    pub fn resolve(explicit: Option<&Path>) -> Result<StateDir, StateError> {
        let root = match explicit {
            Some(p) => p.to_owned(),
            None => dirs::state_dir()
                .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
                .ok_or(StateError::NoDir)?
                .join("sipseal"),
        };
        Ok(StateDir { root })
    }

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
pub fn lock(dir: &Path) -> Result<File, StateError> {
    create_private_dir(dir)?;
    let path = dir.join(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StateError::io(&path, e))?;
    file.lock().map_err(|e| StateError::io(&path, e))?;
    Ok(file)
}

/// `mkdir -p` with mode 0700 for what is created: state can hold keys.
pub fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| StateError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
