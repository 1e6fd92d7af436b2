//! What every error of the library shares: its class (how a program, or
//! the command line's exit code, should treat it). Errors that a relay
//! answers also know their SIP status (`sip_status()`).

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The message failed verification or decryption, or is malformed.
    Failed,
    /// The configuration is wrong: keys, recipients, options, state.
    Config,
    /// Nothing here for me: no RecipientInfo is addressed to my keys.
    NotForMe,
    /// Reading or writing failed.
    Io,
}
