//! How a registrar stage ends other than with success: the outcome both
//! the REGISTER stages and the certificate steps return.

use super::RegistrarError;
use crate::sip::{Answer, Status};

/// Why a request is answered other than with success.
#[derive(Debug)]
pub(super) enum Stop {
    /// A Digest challenge (401); `stale`: the credentials were right and
    /// the nonce old.
    Challenge {
        /// Whether the challenge says stale=true.
        stale: bool,
    },
    /// A refusal: its answer (the why in it is for the operator only).
    Refuse(Box<Answer>),
    /// The registrar itself failed.
    Failed(RegistrarError),
}

impl<E: Into<RegistrarError>> From<E> for Stop {
    fn from(e: E) -> Stop {
        Stop::Failed(e.into())
    }
}

/// A refusal with `status`, and why (for the operator only).
pub(super) fn refuse(status: Status, why: impl Into<String>) -> Stop {
    Stop::Refuse(Box::new(Answer::new(status).because(why)))
}
