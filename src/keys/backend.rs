//! Which implementation performs a private-key operation: aws-lc-rs
//! (constant-time) or a pure-Rust crate, and why.

use std::fmt;

/// Which implementation performs a private-key operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// aws-lc-rs (constant-time).
    AwsLc,
    /// A pure-Rust crate: which one, and why (`the rsa crate
    /// (RUSTSEC-2023-0071), since ...`).
    RustCrypto(String),
}

/// The `rsa` crate, as a [`Backend::RustCrypto`] reason begins.
pub(crate) const RSA_CRATE: &str = "the rsa crate (RUSTSEC-2023-0071)";

impl Backend {
    /// A note for reports when the operation did not go through aws-lc-rs.
    pub fn note(&self, what: &str) -> Option<String> {
        match self {
            Backend::AwsLc => None,
            Backend::RustCrypto(why) => {
                Some(format!("{what} ran in pure Rust, not constant-time: {why}"))
            }
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::AwsLc => f.write_str("aws-lc-rs"),
            Backend::RustCrypto(why) => write!(f, "rsa crate ({why})"),
        }
    }
}
