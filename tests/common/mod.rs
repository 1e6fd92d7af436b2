//! Helpers shared by the integration tests (each test binary uses a subset).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

pub mod baresip;
pub mod callpath;
pub mod cms;
pub mod live;
pub mod realm;

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

/// Running a command that must succeed.
pub trait Succeeds {
    /// Run it; fail the test with its exit code and output unless it
    /// succeeds; its output.
    fn succeeds(&mut self) -> Output;
}

impl Succeeds for assert_cmd::Command {
    fn succeeds(&mut self) -> Output {
        let out = self.output().unwrap();
        ok(&out);
        out
    }
}

impl Succeeds for std::process::Command {
    fn succeeds(&mut self) -> Output {
        let out = self.output().expect("the command runs");
        ok(&out);
        out
    }
}

/// The stdout of `out`, after checking it is a success (else the test
/// fails with its exit code, stdout and stderr).
pub fn ok(out: &Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.clone()
}

/// What a command wrote, stdout then stderr, as text (for assertions and
/// failure messages).
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The real `openssl` (`.ci/run` installs it), run in the repository root.
pub fn openssl() -> std::process::Command {
    let mut cmd = std::process::Command::new("openssl");
    cmd.current_dir(repo());
    cmd
}

/// Write `bytes` to `dir/name`; the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The recipients of alice's INVITE: bob, and proxy-a disclosed to.
pub const BOB_AND_PROXY_A: [&str; 4] = [
    "--peer",
    "keys/bob/cert.pem",
    "--disclose",
    "keys/proxy-a/cert.pem",
];

/// `sipseal seal` of alice's INVITE for bob, disclosed to proxy-a.
pub const SEAL_INVITE: [&str; 6] = [
    "seal",
    "samples/invite.sip",
    "--peer",
    "keys/bob/cert.pem",
    "--disclose",
    "keys/proxy-a/cert.pem",
];

/// alice's INVITE (`samples/invite.sip`) sealed with `--seed SEED` and
/// `args` (the recipients, ...).
pub fn seal_invite(seed: &str, args: &[&str]) -> Vec<u8> {
    sipseal()
        .args(["--seed", seed, "seal", "samples/invite.sip"])
        .args(args)
        .succeeds()
        .stdout
}

/// A path as the `&str` an argument list wants.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
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

/// One identity's session store as its file holds it (docs/SPEC.md §5): the
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
    pub onward: Option<Onward>,
}

/// A re-sealing relay's key for the next hop, as written.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Onward {
    pub reference: String,
    pub kek: String,
    pub previous: Option<Previous>,
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
    // Layout 2: one file per session, each `version: 2` with one entry.
    let mut sessions = Vec::new();
    if let Ok(files) = std::fs::read_dir(dir.join("sessions")) {
        for f in files {
            let path = f.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let one: Sessions = serde_yaml::from_str(&text).unwrap();
            assert_eq!(one.version, 2, "{}", path.display());
            assert_eq!(one.sessions.len(), 1, "{}", path.display());
            sessions.extend(one.sessions);
        }
    }
    sessions.sort_by(|a, b| a.created.cmp(&b.created).then(a.call_id.cmp(&b.call_id)));
    Sessions {
        version: 2,
        identity: Some(identity.to_owned()),
        sessions,
    }
}

/// An INVITE from alice to bob whose body is `entity`'s (a MIME entity:
/// headers, blank line, body), so that sealing it puts `entity` in the
/// envelope.
pub fn invite_carrying(entity: &[u8]) -> Vec<u8> {
    let body = &entity[entity.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let mut m = format!(
        "INVITE sip:bob@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@a.example.com>;tag=1\r\nTo: <sip:bob@b.example.com>\r\nCall-ID: c1@a.example.com\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

/// The strongest frequency of `samples` (at `rate` per second) in 10 Hz
/// steps from 100 to 3,490 Hz, by Goertzel: the tone a recording holds.
pub fn dominant(samples: &[i16], rate: f64) -> f64 {
    let power = |f: f64| {
        let w = 2.0 * std::f64::consts::PI * f / rate;
        let (mut s1, mut s2) = (0.0, 0.0);
        for x in samples {
            let s0 = f64::from(*x) + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2
    };
    (10..350)
        .map(|i| f64::from(i) * 10.0)
        .max_by(|a, b| power(*a).total_cmp(&power(*b)))
        .unwrap()
}
