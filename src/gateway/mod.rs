//! The HTTP gateway (docs/SPEC.md §7.2, issue 29): a browser logs in
//! (ID and password against the registrar's HA1 store, or a telephone
//! number a trusted front end vouches for), picks a destination from its
//! portal, and reaches the destination's HTTP service through the
//! gateway, which gets a byte stream to it per access from a `Dialer`
//! (the call and its data channel) and rewrites links to its own path.
//!
//! The pieces: [`destinations`] (the per-user table), [`auth`] (password
//! check, failed-login limits, sessions), [`html`] (the pages),
//! [`rewrite`] (the data conversion of URLs and cookies), and with the
//! `live` feature `proxy` (the dialer seam, the streaming HTML rewriter),
//! `certquery` (a destination's certificate asked of the registrar:
//! `registrar::certcache`, which the edge shares, re-exported)
//! and the HTTPS server and reverse proxy on hyper (`server`, whose
//! items are re-exported here).

pub mod auth;
/// A destination's certificate asked of the registrar: the shared
/// [`crate::registrar::certcache`].
#[cfg(feature = "live")]
pub mod certquery {
    pub use crate::registrar::certcache::{CertQuery, MAX_CACHED, MAX_QUERYING, QueryError};
}
pub mod destinations;
pub mod html;
#[cfg(feature = "live")]
pub mod proxy;
pub mod rewrite;
#[cfg(feature = "live")]
mod server;

#[cfg(feature = "live")]
pub use server::*;
