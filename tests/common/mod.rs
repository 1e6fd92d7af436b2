//! Helpers shared by the integration tests (each test binary uses a subset).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The built `sipseal` binary, run from the repository root, with its own
/// empty state directory under the target directory (never the user's; a
/// test that shares state between steps passes --state).
pub fn sipseal() -> assert_cmd::Command {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let state = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("state")
        .join(format!("{}-{n}", std::process::id()));
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_sipseal"));
    cmd.current_dir(repo())
        .env_remove("SIPSEAL_SEED")
        .env("SIPSEAL_STATE", state);
    cmd
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compare `actual` with the golden file `tests/golden/<name>`; with
/// `UPDATE_GOLDEN=1` rewrite it instead (then review the diff like code).
pub fn golden(name: &str, actual: &[u8]) {
    let path = repo().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs from the output (run with UPDATE_GOLDEN=1 to accept):\n--- expected\n{}\n--- actual\n{}",
            path.display(),
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(actual)
        );
    }
}

/// A file under the repository root.
pub fn file(rel: &str) -> Vec<u8> {
    std::fs::read(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Whether `path` exists relative to the repository root.
pub fn exists(rel: &str) -> bool {
    Path::new(&repo().join(rel)).exists()
}

/// One identity's session store as its file holds it (SPEC §5): the
/// tests read the YAML itself, so what they assert is the file format.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sessions {
    pub version: u32,
    pub identity: Option<String>,
    pub sessions: Vec<Session>,
}

/// One session entry, as written.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Session {
    pub call_id: String,
    pub reference: String,
    pub kek: String,
    pub role: sipseal::session::Role,
    pub peer: Option<String>,
    pub created: String,
    pub uses: u64,
    pub max_uses: u64,
    pub expiry: Option<String>,
    pub previous: Option<Previous>,
    pub local_cseq: Option<u32>,
}

/// A replaced key, as written.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Previous {
    pub reference: String,
    pub kek: String,
    pub until: String,
}

/// The session store of `identity` under the state directory `state`
/// (empty when it has none).
pub fn stored_sessions(state: &Path, identity: &str) -> Sessions {
    let dir = sipseal::state::StateDir {
        root: state.to_owned(),
    }
    .identity_dir(identity);
    match std::fs::read_to_string(dir.join("sessions.yaml")) {
        Ok(text) => serde_yaml::from_str(&text).unwrap(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Sessions {
            version: 1,
            identity: Some(identity.to_owned()),
            sessions: Vec::new(),
        },
        Err(e) => panic!("{}: {e}", dir.display()),
    }
}
