//! Pinhole changes applied to the kernel's firewall (`--firewall nft`,
//! docs/SPEC.md §4 step 7): each change is one `nft -f` transaction, and
//! the relay forwards the message that caused it only once `nft` has
//! confirmed it. A change that is not confirmed is not kept: the relay
//! answers 500 and the call's state stays as it was.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt as _;

use crate::pinhole::{CallState, Changes, sync_script};

/// Why a firewall change was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the firewall did not confirm the pinhole change: {0}")]
pub struct FirewallError(pub String);

/// Where pinhole changes are applied.
pub trait Firewall: Send + Sync {
    /// Apply one call's change; `Ok` once the firewall has confirmed it.
    fn apply(&self, changes: &Changes) -> Result<(), FirewallError>;
    /// Make the sets hold exactly the pinholes of `calls`, at once.
    fn replace(&self, calls: &[CallState]) -> Result<(), FirewallError>;
}

/// Have `firewall` (when there is one) confirm `changes`; a change that
/// alters no set needs no confirmation.
pub fn confirm(firewall: Option<&dyn Firewall>, changes: &Changes) -> Result<(), FirewallError> {
    match firewall {
        Some(fw) if changes.alters => fw.apply(changes),
        _ => Ok(()),
    }
}

/// The kernel's nftables through `nft -f -`: one script, one transaction
/// (the whole batch applies or none of it), confirmed by nft's exit status.
#[derive(Debug, Clone)]
pub struct Nft {
    program: PathBuf,
    timeout: Duration,
}

impl Nft {
    /// `nft` as `program` (a name looked up in `PATH`, or a path).
    pub fn new(program: impl Into<PathBuf>) -> Nft {
        Nft {
            program: program.into(),
            timeout: Duration::from_secs(5),
        }
    }

    /// Run `script` through `nft -f -`; `Ok` when nft exits 0.
    pub fn run(&self, script: &str) -> Result<(), FirewallError> {
        crate::blocking::offload(|| self.run_now(script))
    }

    fn run_now(&self, script: &str) -> Result<(), FirewallError> {
        let program = self.program.display();
        let mut child = Command::new(&self.program)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| FirewallError(format!("cannot run {program}: {e}")))?;
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(script.as_bytes()));
        let status = match child.wait_timeout(self.timeout) {
            Ok(Some(status)) => status,
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(FirewallError(format!(
                    "{program} did not finish within {} s",
                    self.timeout.as_secs()
                )));
            }
            Err(e) => return Err(FirewallError(format!("waiting for {program}: {e}"))),
        };
        if status.success() {
            if let Some(Err(e)) = written {
                return Err(FirewallError(format!("writing to {program}: {e}")));
            }
            return Ok(());
        }
        let mut said = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = err.by_ref().take(4096).read_to_string(&mut said);
        }
        // nft names the line and points at it: the first line says enough.
        let said = said
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        Err(FirewallError(format!(
            "{program} -f failed ({status}): {said}"
        )))
    }
}

impl Firewall for Nft {
    fn apply(&self, changes: &Changes) -> Result<(), FirewallError> {
        self.run(&changes.to_nft())
    }

    fn replace(&self, calls: &[CallState]) -> Result<(), FirewallError> {
        self.run(&sync_script(calls))
    }
}
