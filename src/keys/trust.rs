//! Whether a certificate received over the network (the body of a 496) may
//! be sealed to: issued by one of the trust anchors (`--trust PEM|DIR`),
//! valid now, with an RSA PKCS#1 v1.5 signature (SHA-256/384/512) that the
//! anchor's key verifies. [`check_chain`] follows intermediates (from a
//! SignedData's certificates) up to an anchor; [`check_signing_usage`] is
//! the key-usage check for signatures.

use const_oid::ObjectIdentifier;
use der::Encode;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use sha2::{Sha256, Sha384, Sha512};
use time::OffsetDateTime;
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use super::Cert;

const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// Why a certificate is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// Not valid at the time asked about.
    #[error("{cert} is not valid at {now} (valid {not_before} to {not_after})")]
    Expired {
        /// The certificate.
        cert: String,
        /// The time asked about.
        now: String,
        /// Its notBefore.
        not_before: String,
        /// Its notAfter.
        not_after: String,
    },
    /// Issued by a CA that is not a trust anchor.
    #[error("{cert} was issued by {issuer}, which is not among the trust anchors")]
    UnknownIssuer {
        /// The certificate.
        cert: String,
        /// Its issuer.
        issuer: String,
    },
    /// The issuer's signature on it does not verify.
    #[error("{cert}: the signature of {issuer} does not verify")]
    BadSignature {
        /// The certificate.
        cert: String,
        /// Its issuer.
        issuer: String,
    },
    /// Signed with an algorithm sipseal does not verify.
    #[error("{cert}: unsupported signature algorithm {oid}")]
    Unsupported {
        /// The certificate.
        cert: String,
        /// The algorithm.
        oid: String,
    },
    /// Listed on its issuer's CRL.
    #[error("{cert} is revoked: serial {serial} is on {on}")]
    Revoked {
        /// The certificate.
        cert: String,
        /// Its serial number, hex.
        serial: String,
        /// `the CRL from SOURCE, revoked DATE (reasonCode)`.
        on: String,
    },
    /// No usable CRL of its issuer to check it against.
    #[error("no current CRL of {issuer} to check {cert} against: {why}")]
    NoCrl {
        /// The certificate.
        cert: String,
        /// Its issuer.
        issuer: String,
        /// Why each CRL of that issuer could not be used.
        why: String,
    },
    /// Its KeyUsage does not allow signatures.
    #[error("{0}: key usage does not allow signatures (no digitalSignature or nonRepudiation)")]
    KeyUsage(String),
    /// Its KeyUsage does not allow key transport or agreement.
    #[error("{0}: key usage does not allow sealing to it (no keyEncipherment or keyAgreement)")]
    EncryptionUsage(String),
    /// Its ExtendedKeyUsage does not allow S/MIME.
    #[error("{0}: extended key usage does not include emailProtection (S/MIME)")]
    ExtendedKeyUsage(String),
}

impl TrustError {
    /// A certificate that is not trusted fails the check.
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Failed
    }
}

/// Check that `cert` was issued by one of `anchors` (a CA certificate) and
/// is valid at `now`; returns the anchor.
pub fn check_issued<'a>(
    cert: &Cert,
    anchors: &'a [Cert],
    now: OffsetDateTime,
) -> Result<&'a Cert, TrustError> {
    check_validity(cert, now)?;
    check_signed_by(cert, anchors)
}

/// An X.509 time as a timestamp (X.509 times lie within 1950-9999, which
/// `time` represents).
pub fn time_of(t: &x509_cert::time::Time) -> OffsetDateTime {
    let secs = i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Whether `cert` is valid at `now`.
pub fn check_validity(cert: &Cert, now: OffsetDateTime) -> Result<(), TrustError> {
    let validity = cert.cert.tbs_certificate().validity();
    let (not_before, not_after) = (time_of(&validity.not_before), time_of(&validity.not_after));
    if now < not_before || now > not_after {
        return Err(TrustError::Expired {
            cert: cert.name(),
            now: crate::context::rfc3339(now),
            not_before: crate::context::rfc3339(not_before),
            not_after: crate::context::rfc3339(not_after),
        });
    }
    Ok(())
}

/// Why `anchor` cannot act as a trust anchor, if it cannot. RFC 5280
/// §6.1 takes an anchor as a name and a key: one without basicConstraints
/// is an anchor (as `openssl -CAfile` takes it); one whose extensions say
/// it may not issue certificates (basicConstraints cA false, or a key
/// usage without keyCertSign) is not.
pub fn anchor_problem(anchor: &Cert) -> Option<String> {
    use x509_cert::ext::pkix::{KeyUsage, KeyUsages};
    let tbs = anchor.cert.tbs_certificate();
    if let Ok(Some((_, bc))) = tbs.get_extension::<BasicConstraints>()
        && !bc.ca
    {
        return Some("its basicConstraints say it is not a CA".into());
    }
    if let Ok(Some((_, ku))) = tbs.get_extension::<KeyUsage>()
        && !ku.0.contains(KeyUsages::KeyCertSign)
    {
        return Some("its key usage does not allow signing certificates (no keyCertSign)".into());
    }
    None
}

/// The anchors that can act as such, and a warning naming each one that
/// cannot and why: no anchor is dropped silently.
pub fn usable_anchors(certs: Vec<Cert>) -> (Vec<Cert>, Vec<String>) {
    let mut warnings = Vec::new();
    let usable = certs
        .into_iter()
        .filter(|c| match anchor_problem(c) {
            Some(why) => {
                warnings.push(format!(
                    "trust anchor {} ({}) skipped: {why}",
                    c.name(),
                    c.source.display()
                ));
                false
            }
            None => true,
        })
        .collect();
    (usable, warnings)
}

/// Whether `ca` is a CA certificate (basicConstraints cA): what an
/// intermediate of a chain must be.
pub(crate) fn is_ca(ca: &Cert) -> bool {
    ca.cert
        .tbs_certificate()
        .get_extension::<BasicConstraints>()
        .ok()
        .flatten()
        .is_some_and(|(_, bc)| bc.ca)
}

/// The certificate among `issuers` whose key signed `cert` (validity not
/// checked). Trust anchors may issue as they are ([`anchor_problem`]);
/// an intermediate must be a CA.
fn check_signed_by<'a>(cert: &Cert, issuers: &'a [Cert]) -> Result<&'a Cert, TrustError> {
    signed_by(cert, issuers, |a| anchor_problem(a).is_none())
}

fn signed_by<'a>(
    cert: &Cert,
    issuers: &'a [Cert],
    may_issue: impl Fn(&Cert) -> bool,
) -> Result<&'a Cert, TrustError> {
    let tbs = cert.cert.tbs_certificate();
    let issuer = tbs.issuer();
    let unknown = || TrustError::UnknownIssuer {
        cert: cert.name(),
        issuer: issuer.to_string(),
    };
    let candidates: Vec<&Cert> = issuers
        .iter()
        .filter(|a| a.cert.tbs_certificate().subject() == issuer && may_issue(a))
        .collect();
    if candidates.is_empty() {
        return Err(unknown());
    }
    let tbs_der = tbs.to_der().map_err(|_| unknown())?;
    let sig = cert.cert.signature().raw_bytes();
    let oid = cert.cert.signature_algorithm().oid;
    for anchor in candidates {
        match issuer_signature_ok(anchor, oid, &tbs_der, sig) {
            Ok(true) => return Ok(anchor),
            Ok(false) => {}
            Err(oid) => {
                return Err(TrustError::Unsupported {
                    cert: cert.name(),
                    oid,
                });
            }
        }
    }
    Err(TrustError::BadSignature {
        cert: cert.name(),
        issuer: issuer.to_string(),
    })
}

/// Whether `issuer`'s key made `sig` (algorithm `oid`) over `tbs`: a
/// certificate's or a CRL's signature. `Err` names an algorithm sipseal
/// does not verify.
pub(crate) fn issuer_signature_ok(
    issuer: &Cert,
    oid: ObjectIdentifier,
    tbs: &[u8],
    sig: &[u8],
) -> Result<bool, String> {
    let spki = issuer.cert.tbs_certificate().subject_public_key_info();
    spki_signature_ok(spki, oid, tbs, sig)
}

/// Whether the key `spki` made `sig` (algorithm `oid`) over `tbs`: RSA
/// PKCS#1 v1.5 with SHA-256/384/512, or ECDSA P-256 with SHA-256. `Err`
/// names an algorithm sipseal does not verify.
pub(crate) fn spki_signature_ok(
    spki: &SubjectPublicKeyInfoOwned,
    oid: ObjectIdentifier,
    tbs: &[u8],
    sig: &[u8],
) -> Result<bool, String> {
    let Ok(der) = spki.to_der() else {
        return Ok(false);
    };
    if oid == ECDSA_WITH_SHA256 {
        use p256::ecdsa::signature::Verifier as _;
        use p256::pkcs8::DecodePublicKey as _;
        let (Ok(key), Ok(sig)) = (
            p256::ecdsa::VerifyingKey::from_public_key_der(&der),
            p256::ecdsa::DerSignature::try_from(sig),
        ) else {
            return Ok(false);
        };
        return Ok(key.verify(tbs, &sig).is_ok());
    }
    if ![SHA256_WITH_RSA, SHA384_WITH_RSA, SHA512_WITH_RSA].contains(&oid) {
        return Err(crate::oid::name(&oid));
    }
    use rsa::pkcs8::DecodePublicKey as _;
    let (Ok(key), Ok(sig)) = (
        rsa::RsaPublicKey::from_public_key_der(&der),
        Signature::try_from(sig),
    ) else {
        return Ok(false);
    };
    let ok = match oid {
        SHA256_WITH_RSA => VerifyingKey::<Sha256>::new(key).verify(tbs, &sig),
        SHA384_WITH_RSA => VerifyingKey::<Sha384>::new(key).verify(tbs, &sig),
        _ => VerifyingKey::<Sha512>::new(key).verify(tbs, &sig),
    };
    Ok(ok.is_ok())
}

const ECDSA_WITH_SHA256: ObjectIdentifier = const_oid::db::rfc5912::ECDSA_WITH_SHA_256;

/// Intermediate certificates followed at most (a SIP PKI has one or two).
const MAX_CHAIN: usize = 6;

/// The certificates from `leaf` to one of `anchors`, through zero or more
/// of `intermediates` (CA certificates, each issued by the next), checking
/// each signature; validity is [`check_validity`]'s, per certificate.
pub fn check_chain(
    leaf: &Cert,
    intermediates: &[Cert],
    anchors: &[Cert],
) -> Result<Vec<Cert>, TrustError> {
    let mut path = vec![leaf.clone()];
    for _ in 0..MAX_CHAIN {
        let current = path.last().cloned().unwrap_or_else(|| leaf.clone());
        match check_signed_by(&current, anchors) {
            Ok(anchor) => {
                path.push(anchor.clone());
                return Ok(path);
            }
            Err(TrustError::UnknownIssuer { .. }) => {}
            Err(e) => return Err(e),
        }
        let ca = intermediates
            .iter()
            .filter(|c| !path.iter().any(|p| p.cert == c.cert))
            .find_map(|c| signed_by(&current, std::slice::from_ref(c), is_ca).ok());
        match ca {
            Some(ca) => path.push(ca.clone()),
            None => return check_signed_by(&current, anchors).map(|_| path),
        }
    }
    Err(TrustError::UnknownIssuer {
        cert: leaf.name(),
        issuer: format!("a chain longer than {MAX_CHAIN} certificates"),
    })
}

/// Whether `cert` may make signatures: a KeyUsage, when present, must
/// allow digitalSignature or nonRepudiation, and an ExtendedKeyUsage, when
/// present, must include emailProtection (S/MIME) or anyExtendedKeyUsage.
pub fn check_signing_usage(cert: &Cert) -> Result<(), TrustError> {
    use const_oid::db::rfc5280;
    use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, KeyUsages};
    let tbs = cert.cert.tbs_certificate();
    if let Ok(Some((_, ku))) = tbs.get_extension::<KeyUsage>()
        && !(ku.0.contains(KeyUsages::DigitalSignature) || ku.0.contains(KeyUsages::NonRepudiation))
    {
        return Err(TrustError::KeyUsage(cert.name()));
    }
    if let Ok(Some((_, eku))) = tbs.get_extension::<ExtendedKeyUsage>()
        && !eku
            .0
            .iter()
            .any(|o| *o == rfc5280::ID_KP_EMAIL_PROTECTION || *o == rfc5280::ANY_EXTENDED_KEY_USAGE)
    {
        return Err(TrustError::ExtendedKeyUsage(cert.name()));
    }
    Ok(())
}

/// What `cert`'s KeyUsage and ExtendedKeyUsage say, as `verify` reports
/// it: `digitalSignature, keyEncipherment; extended: emailProtection`.
pub fn describe_usage(cert: &Cert) -> String {
    use const_oid::db::rfc5280;
    use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, KeyUsages};
    let tbs = cert.cert.tbs_certificate();
    let ku = match tbs.get_extension::<KeyUsage>() {
        Ok(Some((_, ku))) => {
            let names = [
                (KeyUsages::DigitalSignature, "digitalSignature"),
                (KeyUsages::NonRepudiation, "nonRepudiation"),
                (KeyUsages::KeyEncipherment, "keyEncipherment"),
                (KeyUsages::DataEncipherment, "dataEncipherment"),
                (KeyUsages::KeyAgreement, "keyAgreement"),
                (KeyUsages::KeyCertSign, "keyCertSign"),
                (KeyUsages::CRLSign, "cRLSign"),
                (KeyUsages::EncipherOnly, "encipherOnly"),
                (KeyUsages::DecipherOnly, "decipherOnly"),
            ];
            let set: Vec<&str> = names
                .iter()
                .filter(|(u, _)| ku.0.contains(*u))
                .map(|(_, n)| *n)
                .collect();
            if set.is_empty() {
                "no key usage bits".to_owned()
            } else {
                set.join(", ")
            }
        }
        _ => "no KeyUsage extension (any use)".to_owned(),
    };
    let eku = match tbs.get_extension::<ExtendedKeyUsage>() {
        Ok(Some((_, eku))) => {
            let names: Vec<String> = eku
                .0
                .iter()
                .map(|o| match *o {
                    rfc5280::ID_KP_EMAIL_PROTECTION => "emailProtection".to_owned(),
                    rfc5280::ID_KP_CLIENT_AUTH => "clientAuth".to_owned(),
                    rfc5280::ID_KP_SERVER_AUTH => "serverAuth".to_owned(),
                    rfc5280::ID_KP_CODE_SIGNING => "codeSigning".to_owned(),
                    rfc5280::ANY_EXTENDED_KEY_USAGE => "anyExtendedKeyUsage".to_owned(),
                    other => other.to_string(),
                })
                .collect();
            format!("; extended: {}", names.join(", "))
        }
        _ => String::new(),
    };
    format!("{ku}{eku}")
}

/// Whether a content key may be sealed to `cert`: a KeyUsage, when
/// present, must allow keyEncipherment (key transport) or keyAgreement,
/// and an ExtendedKeyUsage, when present, emailProtection or any.
pub fn check_encryption_usage(cert: &Cert) -> Result<(), TrustError> {
    use const_oid::db::rfc5280;
    use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, KeyUsages};
    let tbs = cert.cert.tbs_certificate();
    if let Ok(Some((_, ku))) = tbs.get_extension::<KeyUsage>()
        && !(ku.0.contains(KeyUsages::KeyEncipherment) || ku.0.contains(KeyUsages::KeyAgreement))
    {
        return Err(TrustError::EncryptionUsage(cert.name()));
    }
    if let Ok(Some((_, eku))) = tbs.get_extension::<ExtendedKeyUsage>()
        && !eku
            .0
            .iter()
            .any(|o| *o == rfc5280::ID_KP_EMAIL_PROTECTION || *o == rfc5280::ANY_EXTENDED_KEY_USAGE)
    {
        return Err(TrustError::ExtendedKeyUsage(cert.name()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use time::macros::datetime;

    use super::*;

    fn load(p: &str) -> Cert {
        Cert::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap()
    }

    fn anchors() -> Vec<Cert> {
        Cert::load_all(&Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/trust.pem")).unwrap()
    }

    #[test]
    fn demo_certificates_chain_to_their_domain_ca() {
        let now = datetime!(2026-06-01 0:00 UTC);
        let anchors = anchors();
        let ca = check_issued(&load("keys/proxy-b/cert.pem"), &anchors, now).unwrap();
        assert!(ca.subject().contains("b.example.com"), "{}", ca.subject());
        let ca = check_issued(&load("keys/alice/cert.pem"), &anchors, now).unwrap();
        assert!(ca.subject().contains("a.example.com"), "{}", ca.subject());
    }

    #[test]
    fn wrong_anchor_expiry_and_tampering_are_refused() {
        let now = datetime!(2026-06-01 0:00 UTC);
        let proxy_b = load("keys/proxy-b/cert.pem");
        // Only a.example.com's CA: b's certificates are unknown.
        let only_a: Vec<Cert> = anchors()
            .into_iter()
            .filter(|a| a.subject().contains("a.example.com"))
            .collect();
        assert_eq!(only_a.len(), 1);
        assert!(matches!(
            check_issued(&proxy_b, &only_a, now),
            Err(TrustError::UnknownIssuer { .. })
        ));
        // A leaf is not an anchor even when named as one.
        assert!(matches!(
            check_issued(&proxy_b, std::slice::from_ref(&proxy_b), now),
            Err(TrustError::UnknownIssuer { .. })
        ));
        assert!(matches!(
            check_issued(&proxy_b, &anchors(), datetime!(2050-01-01 0:00 UTC)),
            Err(TrustError::Expired { .. })
        ));
        // The signed SAN URI changed by one letter (still valid DER).
        let mut der = proxy_b.cert.to_der().unwrap();
        let at = der.windows(11).position(|w| w == b"sip:proxy-b").unwrap();
        der[at + 4] = b'q';
        let tampered = Cert::from_der(&der, "tampered").unwrap();
        assert_eq!(tampered.uri().as_deref(), Some("sip:qroxy-b.b.example.com"));
        assert!(matches!(
            check_issued(&tampered, &anchors(), now),
            Err(TrustError::BadSignature { .. })
        ));
    }

    #[test]
    fn chains_and_signing_usage() {
        let now = datetime!(2026-06-01 0:00 UTC);
        let alice = load("keys/alice/cert.pem");
        let path = check_chain(&alice, &[], &anchors()).unwrap();
        assert_eq!(path.len(), 2);
        assert_eq!(path[0].name(), "sip:alice@a.example.com");
        assert!(path[1].subject().contains("a.example.com"));
        for c in &path {
            check_validity(c, now).unwrap();
        }
        // A CA given as an intermediate but not trusted: still no anchor.
        let ca_a = load("keys/ca/a.example.com/cert.pem");
        let only_b: Vec<Cert> = anchors()
            .into_iter()
            .filter(|a| a.subject().contains("b.example.com"))
            .collect();
        assert!(matches!(
            check_chain(&alice, std::slice::from_ref(&ca_a), &only_b),
            Err(TrustError::UnknownIssuer { .. })
        ));
        check_signing_usage(&alice).unwrap();
        // The CA certificate: keyCertSign/cRLSign only.
        let err = check_signing_usage(&ca_a).unwrap_err();
        assert!(err.to_string().contains("key usage"), "{err}");
    }
}
