//! The registrar (docs/SPEC.md §6): REGISTER authenticated by SIP Digest, a
//! certificate issued from the CSR it carries (notAfter = the granted
//! registration expiry) or a certificate registered as it is, bindings and
//! certificates kept per realm ([`store`]), and the 200 OK carrying the
//! certificate and chain as certs-only, outer-signed by the registrar;
//! a REGISTER body may come sealed for the registrar, under a PSK of the
//! AOR or under the user's password, and its 200 then goes back sealed
//! for the registrant ([`sealed`]).
//!
//! One request in, one response out: `sipseal registrar` runs this on a
//! file, and a live server runs the same [`Registrar::handle`].
//!
//! What no response tells: whether a user exists. An unknown username is
//! checked against a made-up HA1 and refused with the same 403 as a wrong
//! password.

pub mod ask;
#[cfg(feature = "live")]
pub mod ca;
#[cfg(feature = "live")]
pub mod certcache;
pub mod crl;
pub mod digest;
pub mod enrol;
pub mod forward;
pub mod issuer;
#[cfg(feature = "live")]
pub mod serve;
pub mod store;
pub mod users;

use time::OffsetDateTime;

use crate::error::ErrorClass;
use crate::keys::Cert;
use crate::signing::SigningError;
use crate::sip::compose::ComposeError;
use crate::sip::{Message, Status};
use crate::state::StoreError;
use store::RegistrarStore;

/// The header of a certificate query asking whether the certificate of
/// this fingerprint is still valid: `sha-256 HEX` (colons allowed).
pub const CERT_QUERY: &str = "Certificate-Query";

/// How long a nonce stays fresh, by default (seconds).
pub const NONCE_LIFETIME: i64 = 300;
/// The registration interval granted when the request names none.
pub const DEFAULT_EXPIRES: u32 = 3600;

/// What went wrong that is not an answer to the request.
#[derive(Debug, thiserror::Error)]
pub enum RegistrarError {
    /// The store cannot be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A response cannot be built (the request lacks what it copies).
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The response cannot be signed.
    #[error(transparent)]
    Sign(#[from] SigningError),
    /// The CA cannot issue.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// An ACK, which is never answered.
    #[error("an ACK is never answered (the registrar answers REGISTER, OPTIONS and PUBLISH)")]
    Ack,
}

impl RegistrarError {
    /// What kind of failure it is.
    pub fn class(&self) -> ErrorClass {
        match self {
            RegistrarError::Store(e) => e.class(),
            RegistrarError::Compose(e) => e.class(),
            RegistrarError::Sign(e) => e.class(),
            RegistrarError::Key(e) => e.class(),
            RegistrarError::Ack => ErrorClass::Failed,
        }
    }
}

/// What the registrar did with a request (the response says it to the
/// client; this says it to the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 401: a challenge (`stale`: the credentials were right, the nonce old).
    Challenged {
        /// Whether the challenge says stale=true.
        stale: bool,
    },
    /// A refusal with this status, and why (for the operator only).
    Refused {
        /// The status.
        code: Status,
        /// Why.
        why: String,
    },
    /// 200: the AOR is bound until then; a certificate was issued or stored.
    Registered {
        /// The address of record.
        aor: String,
        /// Granted seconds.
        expires: u32,
        /// The certificate's serial number (hex), when one was issued or stored.
        certificate: Option<String>,
    },
    /// 200: a certificate query answered with this certificate.
    Found {
        /// The address of record.
        aor: String,
        /// The certificate's serial number (hex).
        serial: String,
    },
    /// 200: a trusted requester's key query answered with this key.
    FoundKey {
        /// The address of record.
        aor: String,
        /// SHA-256 of the key's DER SubjectPublicKeyInfo, hex.
        sha256: String,
    },
    /// A certificate query for another domain, forwarded to its
    /// registrar, whose answer (this status) went back.
    Forwarded {
        /// The address of record asked about.
        aor: String,
        /// The domain whose registrar answered.
        domain: String,
        /// Its answer's status code.
        status: u16,
    },
    /// 200: the bindings were removed (and the certificates withdrawn).
    Removed {
        /// The address of record.
        aor: String,
    },
    /// 200: an OPTIONS keep-alive.
    Alive,
}

/// A response and what it means.
#[derive(Debug, Clone)]
pub struct Handled {
    /// The response to send back.
    pub response: Message,
    /// What was done.
    pub outcome: Outcome,
}

/// Every certificate under `path` an AOR can be looked up among: PEM and
/// DER files ([`Cert::load_tree`], e.g. what `certquery --accept` stores)
/// and a registrar's state (its AOR records: their certificates not
/// withdrawn).
pub fn load_directory(path: &std::path::Path) -> Result<Vec<Cert>, RegistrarError> {
    let mut certs = Cert::load_tree(path)?;
    let registries = if path.is_dir() {
        store::registry_files(path)
    } else {
        Vec::new()
    };
    for registry in registries {
        certs.extend(store::registry_certs(&registry)?);
    }
    Ok(certs)
}

/// Where a REGISTER's flow came from, as a relay that made the flow token
/// of a Path entry reads it (`None`: not that relay's entry).
pub type FlowSource<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The imposture-check bindings a registrar's state holds at `now`: AOR →
/// the source addresses its REGISTERs came from: the flow of a relay's
/// Path entry (`flow` reads it), else `registrar --source` or the address
/// the live registrar saw, else its Contacts' host and port. `path` is a
/// state directory (every realm's AOR records under it) or one AOR record.
pub fn registered_sources(
    path: &std::path::Path,
    now: OffsetDateTime,
    flow: FlowSource<'_>,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, RegistrarError> {
    let mut all = store::Registry::default();
    for file in store::registry_files(path) {
        if let Some(registry) = crate::state::read_yaml::<store::Registry>(&file)? {
            all.absorb(registry);
        }
    }
    Ok(sources_of(&all, now, flow))
}

/// [`registered_sources`] of the realms `realms` in a registrar store
/// (a directory, or Redis).
pub fn registered_sources_in(
    registry: &dyn RegistrarStore,
    realms: &[String],
    now: OffsetDateTime,
    flow: FlowSource<'_>,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, RegistrarError> {
    let mut all = store::Registry::default();
    for realm in realms {
        all.absorb(registry.load_realm(realm)?);
    }
    Ok(sources_of(&all, now, flow))
}

/// The sources one AOR registered from (as [`registered_sources`]), read
/// from the store now: a relay asks when a request names an AOR its
/// last reading of the registrations did not have yet.
pub fn aor_sources(
    registry: &dyn RegistrarStore,
    realm: &str,
    aor: &str,
    now: OffsetDateTime,
    flow: FlowSource<'_>,
) -> Result<Vec<String>, RegistrarError> {
    let record = registry.load_aor(realm, &crate::sip::aor::Aor::new(aor))?;
    Ok(sources_of(&record, now, flow)
        .into_values()
        .flatten()
        .collect())
}

fn sources_of(
    registry: &store::Registry,
    now: OffsetDateTime,
    flow: FlowSource<'_>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut map: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for b in registry.bindings.iter().filter(|b| b.expires > now) {
        let source = b
            .path
            .first()
            .and_then(|p| flow(p))
            .or_else(|| b.source.clone())
            .or_else(|| {
                let rest = b.contact.split_once(':')?.1;
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                Some(host.split([';', '?', '>']).next()?.to_owned())
            });
        if let Some(source) = source {
            let entry = map.entry(b.aor.to_ascii_lowercase()).or_default();
            if !entry.contains(&source) {
                entry.push(source);
            }
        }
    }
    map
}

/// The certificate of `aor` among `certs`: naming it as its SAN URI,
/// valid at `now`, and chaining to `anchors`; of several, the one valid
/// longest.
pub fn lookup<'a>(
    certs: &'a [Cert],
    aor: &str,
    now: OffsetDateTime,
    anchors: &[Cert],
) -> Option<&'a Cert> {
    certs
        .iter()
        .filter(|c| c.uri().is_some_and(|u| same_aor(&u, aor)))
        .filter(|c| crate::keys::trust::check_validity(c, now).is_ok())
        .filter(|c| crate::keys::trust::check_chain(c, &[], anchors).is_ok())
        .max_by_key(|c| crate::keys::trust::time_of(&c.cert.tbs_certificate().validity().not_after))
}

mod certs;
mod publish;
mod query;
mod register;
pub mod sealed;
mod stop;

pub use crate::sip::aor::same_aor;
pub use certs::SPKI_TYPE;
pub use publish::MAX_KEYS;
pub use query::{
    ANSWER_COVERS, Forward, ForwardError, SIGNED_QUERY_HEADERS, SIGNED_QUERY_TYPE, Trusted,
};
pub use register::Registrar;
