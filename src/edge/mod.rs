//! `sipseal edge` (docs/SPEC.md §7.2, issue 30): an outbound proxy next
//! to an ordinary phone that seals every SDP the phone sends for the peer
//! and the relays its disclosure policy names, and opens every sealed
//! body addressed to the user, handing the phone plain SDP and a Warning
//! saying what it found.
//!
//! The pieces: [`policy`] (the disclosure policy file) and [`body`] (the
//! sealing and opening, [`Sealer`]).

pub mod body;
pub mod policy;

pub use body::{EdgeError, Sealer, SealerConfig, Toward};
pub use policy::{DisclosurePolicy, PolicyError};
