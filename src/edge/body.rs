// placeholder: replaced by the edge-body branch
//! The edge's bodies (docs/SPEC.md §7.2): sealing what the phone sends,
//! opening what it is sent. This file is a pass-through placeholder with
//! the interface of the shared design; the edge-body branch replaces it
//! with the real sealer.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::ErrorClass;
use crate::keys::{Cert, Identity};
use crate::sip::Message;

/// How the sealer is set up (from the command line).
pub struct SealerConfig {
    /// `--disclosure POLICY.yaml`.
    pub policy: PathBuf,
    /// `--cert-query tcp:HOST:PORT`.
    pub cert_query: Option<crate::net::Target>,
    /// `--registrar-trust`.
    pub registrar_trust: Vec<Cert>,
    /// `--trust`: anchors for peers' signatures.
    pub trust: Vec<Cert>,
    /// The session store.
    pub store: Arc<dyn crate::state::SessionStore + Send + Sync>,
    /// Session key limits.
    pub limits: crate::session::Limits,
    /// The Warning agent (the edge's host name).
    pub agent: String,
}

/// What to do with a message after the sealer saw it.
#[derive(Debug)]
pub enum Toward {
    /// Send it on (its body sealed or opened, a Warning added).
    Send(Message),
    /// Do not send it: answer its sender with this response instead
    /// (only for requests).
    Answer(Message),
}

/// Why the sealer cannot run.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The policy file cannot be read.
    #[error("{path}: {source}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl EdgeError {
    /// The exit class.
    pub fn class(&self) -> ErrorClass {
        match self {
            EdgeError::Policy { .. } => ErrorClass::Config,
        }
    }
}

/// Seals and opens bodies for the edge's users.
pub struct Sealer {
    config: SealerConfig,
}

impl Sealer {
    /// Set up from `config`; the policy file must read.
    pub fn new(config: SealerConfig) -> Result<Sealer, EdgeError> {
        read_policy(&config.policy)?;
        Ok(Sealer { config })
    }

    /// SIGHUP: the policy again.
    pub fn reload(&self) -> Result<(), EdgeError> {
        read_policy(&self.config.policy)
    }

    /// Phone → network. `user`: the identity the message is sent for.
    pub async fn outgoing(&self, msg: Message, user: Arc<Identity>) -> Toward {
        let _ = user;
        Toward::Send(msg)
    }

    /// Network → phone.
    pub async fn incoming(&self, msg: Message, user: Arc<Identity>) -> Toward {
        let _ = user;
        Toward::Send(msg)
    }
}

fn read_policy(path: &std::path::Path) -> Result<(), EdgeError> {
    std::fs::read(path)
        .map(drop)
        .map_err(|source| EdgeError::Policy {
            path: path.to_owned(),
            source,
        })
}
