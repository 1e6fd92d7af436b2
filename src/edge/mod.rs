//! `sipseal edge` (docs/SPEC.md §7.2, issue 30): an outbound proxy next
//! to an ordinary phone that seals every SDP the phone sends for the peer
//! and the relays its disclosure policy names, and opens every sealed
//! body addressed to the user, handing the phone plain SDP and a Warning
//! saying what it found.
//!
//! The pieces: [`policy`] (the disclosure policy file), [`body`] (the
//! sealing and opening, [`Sealer`]), [`route`] (the routing rules: the
//! Contact token, the phone leg's Record-Route) and `daemon` (the phone
//! listeners and the one mutual-TLS flow to the network).

pub mod body;
#[cfg(feature = "live")]
pub mod daemon;
pub mod policy;
pub mod route;

pub use body::{EdgeError, Sealer, SealerConfig, Toward};
pub use policy::{DisclosurePolicy, PolicyError};
