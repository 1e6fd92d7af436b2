//! The registrar's CRL (`sipseal registrar crl`): every certificate it
//! issued and then withdrew (its binding removed), revoked from the time
//! it was withdrawn, signed by the issuing CA. A v2 CRL (RFC 5280 §5) with
//! the CA's AuthorityKeyIdentifier and a CRLNumber (the issue time in Unix
//! seconds: it only grows); `openssl crl` and `sipseal verify --crl` read it.

use der::asn1::{BitString, Uint};
use der::pem::LineEnding;
use der::referenced::OwnedToRef;
use der::{Decode, Encode, EncodePem};
use time::OffsetDateTime;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::ToExtension;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlNumber, SubjectKeyIdentifier};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use super::store::Registry;
use crate::keys::KeyError;
use crate::keys::generate::Ca;

fn err(e: impl std::fmt::Display) -> KeyError {
    KeyError::Generate(e.to_string())
}

fn time(t: OffsetDateTime) -> Result<Time, KeyError> {
    let secs = u64::try_from(t.unix_timestamp()).map_err(|_| err("a time before 1970"))?;
    der::DateTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map(Time::from)
        .map_err(err)
}

/// The CRL of `registry`'s withdrawn certificates issued by `ca`, made at
/// `now`, next due at `next_update`; PEM.
pub fn crl(
    registry: &Registry,
    ca: &Ca,
    now: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<String, KeyError> {
    let mut revoked: Vec<RevokedCert> = Vec::new();
    for c in registry.certificates.iter().filter(|c| c.issued) {
        let Some(when) = c.withdrawn else {
            continue;
        };
        let serial = hex::decode(&c.serial).map_err(err)?;
        revoked.push(RevokedCert {
            serial_number: SerialNumber::new(&serial).map_err(err)?,
            revocation_date: time(when)?,
            crl_entry_extensions: None,
        });
    }
    let issuer = ca.cert.tbs_certificate().subject().clone();
    let ca_ski = SubjectKeyIdentifier::try_from(
        ca.cert
            .tbs_certificate()
            .subject_public_key_info()
            .owned_to_ref(),
    )
    .map_err(err)?;
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(ca_ski.0),
        ..Default::default()
    };
    let number = CrlNumber(Uint::new(&now.unix_timestamp().max(0).to_be_bytes()).map_err(err)?);
    let extensions = vec![
        aki.to_extension(&issuer, &[]).map_err(err)?,
        number.to_extension(&issuer, &[]).map_err(err)?,
    ];
    // The signature algorithm is known before signing: sign a probe.
    let (alg, _) = ca.key.sign_raw(b"")?;
    let tbs: TbsCertList = TbsCertList {
        version: x509_cert::Version::V2,
        signature: alg.clone(),
        issuer,
        this_update: time(now)?,
        next_update: Some(time(next_update)?),
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: Some(extensions),
    };
    let tbs_der = tbs.to_der().map_err(err)?;
    let (_, signature) = ca.key.sign_raw(&tbs_der)?;
    let list: CertificateList = CertificateList {
        tbs_cert_list: TbsCertList::from_der(&tbs_der).map_err(err)?,
        signature_algorithm: alg,
        signature: BitString::from_bytes(&signature).map_err(err)?,
    };
    list.to_pem(LineEnding::LF).map_err(err)
}
