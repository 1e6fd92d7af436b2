//! Who signs the certificates a registrar grants (docs/SPEC.md §6): its
//! own CA directory ([`Ca`], the default), or a `sipseal ca` it reaches
//! over mutual TLS (`registrar --ca tls:HOST:PORT`, [`super::ca`]). The
//! registrar authenticates the user (Digest, or the TLS peer of a
//! PUBLISH) and checks what the user sent (the CSR's proof of
//! possession, the AOR it names, the key type) whatever the issuer; the
//! issuer makes the certificate: subject and SAN URI from the AOR,
//! notAfter the registration's expiry, the same profile either way.

use time::OffsetDateTime;
use x509_cert::Certificate;

use crate::context::Context;
use crate::keys::KeyError;
use crate::keys::generate::{Ca, validity_until};
use crate::sip::aor::Aor;

/// The key a certificate is issued for.
pub type Key = x509_cert::spki::SubjectPublicKeyInfoOwned;

/// What the registrar asks an issuer for: a certificate naming `aor`
/// for `key`, valid until `until`.
pub struct IssueAsk<'a> {
    /// The authenticated address of record.
    pub aor: &'a Aor,
    /// The key, checked by the registrar.
    pub key: &'a Key,
    /// The certificate request the key came in (PKCS#10 DER or PEM), when
    /// it came in one: a remote CA checks its proof of possession again.
    /// `None` for a key certified before (a refresh).
    pub csr: Option<&'a [u8]>,
    /// The end of the validity (the registration's expiry).
    pub until: OffsetDateTime,
}

/// Why an issuer made no certificate.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The local CA cannot sign.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The remote CA cannot be reached or did not answer in time.
    #[error("the CA at {at} did not answer: {why}")]
    Unreachable {
        /// Where it was asked.
        at: String,
        /// Why.
        why: String,
    },
    /// The remote CA answered with a refusal, or with a certificate that
    /// is not the one asked for.
    #[error("the CA at {at} {why}")]
    Refused {
        /// Where it was asked.
        at: String,
        /// What it answered.
        why: String,
    },
}

/// A CA the registrar's certificates come from.
pub trait Issuer: Send + Sync {
    /// The CA's certificate: what a 200's chain ends with and what a
    /// certificate registered as it is must chain to.
    fn ca_cert(&self) -> &Certificate;

    /// A certificate for `ask`.
    fn issue(&self, ask: &IssueAsk<'_>, ctx: &mut Context) -> Result<Certificate, IssueError>;
}

impl Issuer for Ca {
    fn ca_cert(&self) -> &Certificate {
        &self.cert
    }

    fn issue(&self, ask: &IssueAsk<'_>, ctx: &mut Context) -> Result<Certificate, IssueError> {
        let validity = validity_until(ctx.now(), ask.until)?;
        Ok(self.issue_for_party(ctx, &ask.aor.text, ask.key.clone(), validity)?)
    }
}
