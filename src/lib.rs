//! sipseal: selective disclosure of SIP bodies to chosen relays with CMS
//! (S/MIME) AuthEnvelopedData. The library holds all format, crypto and
//! workflow code, and builds without the command line; the `sipseal`
//! binary (`src/bin/sipseal/`, the `cli` feature) is a thin adapter over it.
//!
//! The workflows — [`ua`] (a user agent), [`relay`] (one relay step) and
//! [`verify`] — take parsed inputs, a [`context::Context`] and a store
//! ([`state`]), and return values: they never print, never exit, and read
//! no file they were not handed.

pub mod blocking;
pub mod context;
pub mod datachannel;
#[cfg(feature = "live")]
pub mod edge;
pub mod envelope;
pub mod error;
pub mod firewall;
pub mod fsio;
pub mod gateway;
pub mod inspect;
pub mod keys;
pub mod mime;
pub mod net;
pub mod oid;
pub mod pinhole;
pub mod policy;
#[cfg(feature = "record")]
pub mod record;
pub mod registrar;
pub mod relay;
pub mod sdp;
pub mod sealing;
pub mod session;
pub mod signing;
pub mod sip;
pub mod state;
pub mod ua;
pub mod verify;
pub mod yaml;
