//! PUBLISH from the AOR's owner over mutual TLS (issue 28): the client
//! certificate the TLS handshake verified names the AOR (and chains to
//! this registrar's CA), so the channel
//! authenticates the request and stands in for proof of possession of a
//! key it carries: a CSR, a certificate or a bare public key each get a
//! certificate, and a bare key is kept for trusted requesters.

use time::Duration;

use super::certs;
use super::stop::Stop;
use super::{Handled, Outcome, Registrar};
use crate::context::Context;
use crate::keys::Cert;
use crate::sip::Message;
use crate::sip::aor::{Aor, same_aor};
use crate::sip::headers::uri_host;

/// Bare keys one AOR's record keeps at most (the newest): a store a
/// client writes to stays bounded.
pub const MAX_KEYS: usize = 4;

impl Registrar<'_> {
    /// Whether the TLS peer is the owner of `aor`: an AOR of this realm,
    /// named by the SAN URI of a client certificate that chains to this
    /// registrar's own CA and that the registrar has not withdrawn (its
    /// holder removed every binding: the CRL lists it; the TLS handshake
    /// checked the chain and the dates only). The listener's other trust
    /// anchors (another domain's CA, trusted for its users' signed
    /// queries) do not make anyone the owner of an AOR here.
    pub(super) fn peer_is(&self, aor: &Aor) -> Result<bool, Stop> {
        let Some(peer) = self.trusted.peer else {
            return Ok(false);
        };
        let ours = uri_host(&aor.text).is_some_and(|h| h.eq_ignore_ascii_case(self.realm));
        let anchor = Cert {
            cert: self.ca.ca_cert().clone(),
            source: "the CA".into(),
        };
        if !(ours
            && peer.uri().is_some_and(|u| same_aor(&u, &aor.text))
            && crate::keys::trust::check_chain(peer, &[], &[anchor]).is_ok())
        {
            return Ok(false);
        }
        Ok(!self.withdrawn(&aor.text, &[peer])?)
    }

    /// Whether one of `certs` (each naming the AOR `uri`) is one this
    /// registrar withdrew: in that AOR's record (of this realm), marked
    /// withdrawn (on the CRL). The TLS handshake and a signature's chain
    /// check only the chain and the dates; a withdrawn certificate
    /// proves no one's identity here. One record read, however many.
    pub(super) fn withdrawn(&self, uri: &str, certs: &[&Cert]) -> Result<bool, Stop> {
        if certs.is_empty() || !uri_host(uri).is_some_and(|h| h.eq_ignore_ascii_case(self.realm)) {
            return Ok(false);
        }
        let record = self.store.load_aor(self.realm, &Aor::new(uri))?;
        for cert in certs {
            let der = der::Encode::to_der(&cert.cert)
                .map_err(|e| Stop::Failed(crate::keys::KeyError::Generate(e.to_string()).into()))?;
            let sha256 = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(&der))
            };
            if record
                .certificates
                .iter()
                .any(|c| c.sha256 == sha256 && c.withdrawn.is_some())
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The owner's PUBLISH: the certificate [`certs::for_owner_publication`]
    /// grants, valid `expires` seconds, stored (and its bare key), and
    /// answered as any PUBLISH: 200 with `SIP-ETag` (the serial),
    /// `Expires`, the certificate and the CA's as certs-only, signed.
    pub(super) fn publish_as_owner(
        &self,
        req: &Message,
        aor: Aor,
        expires: u32,
        ctx: &mut Context,
    ) -> Result<Handled, Stop> {
        let now = ctx.now();
        let until = now + Duration::seconds(i64::from(expires));
        let (granted, key) = certs::for_owner_publication(self, req, &aor, until, ctx)?;
        self.store.update_aor(self.realm, &aor, &mut |r| {
            r.expire(now);
            r.certificates.push(granted.stored.clone());
            if let Some(k) = &key {
                r.keys.retain(|old| old.sha256 != k.sha256);
                r.keys.push(k.clone());
                if r.keys.len() > MAX_KEYS {
                    let extra = r.keys.len() - MAX_KEYS;
                    r.keys.drain(..extra);
                }
            }
        })?;
        let headers = vec![
            ("SIP-ETag".to_owned(), granted.stored.serial.clone()),
            ("Expires".to_owned(), expires.to_string()),
        ];
        let response = self.ok(req, headers, Some(&granted), ctx)?;
        Ok(Handled {
            response,
            outcome: Outcome::Registered {
                aor: aor.text,
                expires,
                certificate: Some(granted.stored.serial),
            },
        })
    }
}
