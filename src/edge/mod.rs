//! `sipseal edge` (docs/SPEC.md §7.2, issue 30): an outbound proxy next
//! to an ordinary phone that seals what the phone sends and opens what
//! it is sent, on its user's behalf. [`body`] seals and opens;
//! [`route`] holds the routing rules (the Contact token, the phone
//! leg's Record-Route); `daemon` runs the phone listeners and the one
//! mutual-TLS flow to the network.

pub mod body;
#[cfg(feature = "live")]
pub mod daemon;
pub mod route;
