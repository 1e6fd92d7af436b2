//! sipseal: selective disclosure of SIP bodies to chosen relays with CMS
//! (S/MIME) AuthEnvelopedData. The library holds all format and crypto work;
//! the `sipseal` binary is a thin layer over it (see `cli`).

pub mod context;
pub mod envelope;
pub mod error;
pub mod fsio;
pub mod inspect;
pub mod keys;
pub mod mime;
pub mod pinhole;
pub mod policy;
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
