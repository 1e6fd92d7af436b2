//! The data channel of issue 29: a TLS connection between a caller (the
//! gateway's pseudo user agent, or any user agent) and an answering
//! terminal, negotiated by sealed SIP. Its SDP ([`sdp`]) carries each
//! end's certificate fingerprint (RFC 4145, RFC 8122); the TLS ([`tls`])
//! accepts the peer's certificate by that fingerprint alone. [`call`] is
//! the caller's side as a library function, [`terminal`] the answering
//! side's workflow.

#[cfg(feature = "live")]
pub mod call;
#[cfg(feature = "live")]
pub mod daemon;
pub mod sdp;
#[cfg(feature = "live")]
pub mod terminal;
#[cfg(feature = "live")]
pub mod tls;
