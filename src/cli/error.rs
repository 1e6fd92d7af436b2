//! User-facing errors: each says what went wrong and what to do next, and
//! maps onto an exit code (SPEC §9).

use std::path::PathBuf;

use crate::envelope::EnvelopeError;
use crate::envelope::signed::SignatureError;
use crate::keys::KeyError;
use crate::keys::trust::TrustError;
use crate::relay::RelayError;
use crate::sealing::SealError;
use crate::signing::SigningError;
use crate::sip::{ComposeError, ParseError};
use crate::state::StateError;

/// Process exit codes (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The message failed verification or decryption, or is malformed.
    Failed = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// Nothing here for me (not a recipient).
    NotForMe = 3,
    /// I/O error.
    Io = 4,
    /// A relay produced a SIP error response (written to stdout).
    SipError = 5,
}

/// The exit codes as the man pages and `--help` print them.
pub const EXIT_CODES: &[(u8, &str)] = &[
    (0, "success"),
    (
        1,
        "the message failed verification or decryption, or is malformed",
    ),
    (2, "usage or configuration error"),
    (3, "nothing here for me (not a recipient)"),
    (4, "I/O error"),
    (
        5,
        "a relay produced a SIP error response (written to stdout)",
    ),
];

/// Every way a command can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Usage { message: String, hint: String },
    #[error("cannot read {name}: {source}")]
    Read {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot write {name}: {source}")]
    Write {
        name: String,
        source: std::io::Error,
    },
    #[error("{name}: {err}")]
    Parse { name: String, err: ParseError },
    #[error("{0}")]
    Compose(#[from] ComposeError),
    #[error("{0}")]
    Keys(#[from] KeyError),
    #[error("{path}: {reason}")]
    Spec { path: PathBuf, reason: String },
    #[error("{name}: {err}")]
    Seal { name: String, err: SealError },
    #[error("{name}: {err}")]
    Relay { name: String, err: RelayError },
    #[error("{name}: {err}")]
    Signing { name: String, err: SigningError },
    #[error("{name}: {reason}")]
    Signature {
        name: String,
        reason: String,
        hint: String,
    },
    #[error("{name}: {err}")]
    Untrusted { name: String, err: TrustError },
    #[error("state: {0}")]
    State(#[from] StateError),
    #[error(
        "{name}: unknown session key {reference}: sealed under a session reference this party has not stored, or whose key has expired"
    )]
    UnknownSessionKey { name: String, reference: String },
}

impl Error {
    /// A usage error with its hint.
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::Usage {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// What to do next.
    pub fn hint(&self) -> String {
        match self {
            Error::Usage { hint, .. } => hint.clone(),
            Error::Read { .. } => {
                "check the path exists and is readable, or pass - for standard input".into()
            }
            Error::Write { .. } => "check the directory exists and is writable".into(),
            Error::Parse { err, .. } => err.hint().into(),
            Error::Compose(e) => e.hint(),
            Error::Keys(e) => e.hint(),
            Error::Spec { .. } => "see `man sipseal-build` for the message spec keys".into(),
            Error::Seal { err, .. } => err.hint(),
            Error::Relay { err, .. } => err.hint(),
            Error::Signing { err, .. } => err.hint(),
            Error::Signature { hint, .. } => hint.clone(),
            Error::State(e) => e.hint(),
            Error::UnknownSessionKey { .. } => {
                "open the session's first message (or the last rekey) with this --state first; `sipseal session list` shows the stored keys. A UAS answers such a request with 493 Undecipherable".into()
            }
            Error::Untrusted { .. } => {
                "seal only to a relay certificate your --trust anchors vouch for; check --trust and the clock (--now)".into()
            }
        }
    }

    /// The process exit code.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Usage { .. } | Error::Spec { .. } => Exit::Usage,
            Error::Read { .. } | Error::Write { .. } => Exit::Io,
            Error::Parse { .. } => Exit::Failed,
            Error::Compose(ComposeError::NotARequest | ComposeError::Request(_)) => Exit::Failed,
            Error::Compose(_) => Exit::Usage,
            Error::Keys(e) if e.is_io() => Exit::Io,
            Error::Keys(_) => Exit::Usage,
            Error::Seal { err, .. } => match err {
                SealError::Envelope(EnvelopeError::NotRecipient) => Exit::NotForMe,
                SealError::Envelope(EnvelopeError::Recipient(_) | EnvelopeError::Key(_))
                | SealError::NoUri(_)
                | SealError::Duplicate(_)
                | SealError::NoBody
                | SealError::NoContentType
                | SealError::AlreadySealed(_)
                | SealError::Signature(SignatureError::Key(_)) => Exit::Usage,
                _ => Exit::Failed,
            },
            Error::Signing { err, .. } => match err {
                SigningError::Signature(SignatureError::Key(_))
                | SigningError::NoBody
                | SigningError::AlreadySigned
                | SigningError::Missing(_) => Exit::Usage,
                _ => Exit::Failed,
            },
            Error::Relay { err, .. } if err.is_config() => Exit::Usage,
            Error::Relay { err, .. } if err.is_not_recipient() => Exit::NotForMe,
            Error::Relay { .. } => Exit::Failed,
            Error::State(StateError::Io { .. }) => Exit::Io,
            Error::Untrusted { .. } | Error::UnknownSessionKey { .. } | Error::Signature { .. } => {
                Exit::Failed
            }
            Error::State(_) => Exit::Usage,
        }
    }
}
