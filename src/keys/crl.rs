//! Certificate revocation lists (RFC 5280 §5): read from files (`verify
//! --crl`, PEM `X509 CRL` blocks or DER) and from a SignedData's `crls`
//! (RFC 5652 §10.2.1), and checked against a certificate path
//! ([`check_revocation`]).
//!
//! `x509-cert`'s `TbsCertList` requires the `version` field, which a v1
//! CRL leaves out (RFC 5280 §5.1.2.1: "if present, MUST be v2"), so CRLs
//! are decoded here with the field optional. The signed bytes are kept as
//! they came, so the issuer's signature is checked over exactly them.

use std::path::Path;

use const_oid::ObjectIdentifier;
use der::asn1::BitString;
use der::{Any, Decode, Encode, Sequence, Tagged};
use time::OffsetDateTime;
use x509_cert::Version;
use x509_cert::ext::Extensions;
use x509_cert::ext::pkix::crl::CrlReason;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::time::Time;

use super::Cert;
use super::KeyError;
use super::trust::{TrustError, issuer_signature_ok, time_of};
use crate::context::rfc3339;

/// `TBSCertList` with the version optional (absent in a v1 CRL).
#[derive(Clone, Debug, Sequence)]
struct TbsCertList {
    #[asn1(optional = "true")]
    version: Option<Version>,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    this_update: Time,
    next_update: Option<Time>,
    revoked_certificates: Option<Vec<RevokedCert>>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    crl_extensions: Option<Extensions>,
}

#[derive(Clone, Debug, Sequence)]
struct RevokedCert {
    serial_number: SerialNumber,
    revocation_date: Time,
    crl_entry_extensions: Option<Extensions>,
}

/// `CertificateList`, the signed part kept as its bytes.
#[derive(Clone, Debug, Sequence)]
struct CertificateList {
    tbs_cert_list: Any,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

/// A parsed CRL.
#[derive(Clone, Debug)]
pub struct Crl {
    /// Where it came from (a file, or "the SignedData").
    pub source: String,
    der: Vec<u8>,
    tbs_der: Vec<u8>,
    tbs: TbsCertList,
    signature_algorithm: ObjectIdentifier,
    signature: Vec<u8>,
}

/// One revoked certificate as a CRL lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// Its serial number, hex.
    pub serial: String,
    /// When it was revoked (RFC 3339).
    pub date: String,
    /// The reasonCode entry extension, when present (`keyCompromise`, ...).
    pub reason: Option<String>,
}

impl Crl {
    /// Parse one DER `CertificateList`.
    pub fn from_der(der: &[u8], source: impl Into<String>) -> Result<Crl, der::Error> {
        let list = CertificateList::from_der(der)?;
        let tbs_der = list.tbs_cert_list.to_der()?;
        let tbs = TbsCertList::from_der(&tbs_der)?;
        Ok(Crl {
            source: source.into(),
            der: der.to_vec(),
            tbs_der,
            tbs,
            signature_algorithm: list.signature_algorithm.oid,
            signature: list.signature.raw_bytes().to_vec(),
        })
    }

    /// Every CRL in a file: PEM (`-----BEGIN X509 CRL-----` blocks, text
    /// between them passed over) or one DER CRL.
    pub fn load(path: &Path) -> Result<Vec<Crl>, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let bad = |reason: String| KeyError::BadCrl {
            path: path.to_owned(),
            reason,
        };
        let source = path.display().to_string();
        if super::pem::contains_pem(&bytes) {
            let blocks = super::pem::pem_blocks(&bytes, "X509 CRL").map_err(bad)?;
            blocks
                .iter()
                .enumerate()
                .map(|(i, der)| {
                    Crl::from_der(der, source.clone())
                        .map_err(|e| bad(format!("CRL {} does not parse ({e})", i + 1)))
                })
                .collect()
        } else {
            Crl::from_der(&bytes, source)
                .map(|c| vec![c])
                .map_err(|e| bad(format!("not a PEM or DER CRL ({e})")))
        }
    }

    /// The DER as read.
    pub fn to_der(&self) -> &[u8] {
        &self.der
    }

    /// 1 or 2.
    pub fn version(&self) -> u8 {
        match self.tbs.version {
            None | Some(Version::V1) => 1,
            Some(_) => 2,
        }
    }

    /// The issuer's name.
    pub fn issuer(&self) -> String {
        self.tbs.issuer.to_string()
    }

    /// thisUpdate.
    pub fn this_update(&self) -> OffsetDateTime {
        time_of(&self.tbs.this_update)
    }

    /// nextUpdate, when present.
    pub fn next_update(&self) -> Option<OffsetDateTime> {
        self.tbs.next_update.as_ref().map(time_of)
    }

    /// The revoked certificates it lists.
    pub fn revoked(&self) -> Vec<Revoked> {
        self.entries().map(revoked_of).collect()
    }

    fn entries(&self) -> impl Iterator<Item = &RevokedCert> {
        self.tbs.revoked_certificates.iter().flatten()
    }

    /// One line for reports: `v2 CRL of ISSUER, this update T, next update
    /// T, N revoked`.
    pub fn describe(&self) -> String {
        let next = self.next_update().map_or_else(
            || "no next update".to_owned(),
            |t| format!("next update {}", rfc3339(t)),
        );
        format!(
            "v{} CRL of {}, this update {}, {next}, {} revoked",
            self.version(),
            self.issuer(),
            rfc3339(self.this_update()),
            self.entries().count()
        )
    }

    /// Why this CRL cannot say anything about certificates `issuer`
    /// issued, at `at`; `None` when it can.
    fn unusable(&self, issuer: &Cert, at: OffsetDateTime) -> Option<String> {
        use x509_cert::ext::pkix::{KeyUsage, KeyUsages};
        let itbs = issuer.cert.tbs_certificate();
        if self.tbs.issuer != *itbs.subject() {
            return Some(format!("it is issued by {}", self.issuer()));
        }
        if let Ok(Some((_, ku))) = itbs.get_extension::<KeyUsage>()
            && !ku.0.contains(KeyUsages::CRLSign)
        {
            return Some(format!(
                "the key usage of {} does not allow signing CRLs (no cRLSign)",
                issuer.name()
            ));
        }
        match issuer_signature_ok(
            issuer,
            self.signature_algorithm,
            &self.tbs_der,
            &self.signature,
        ) {
            Ok(true) => {}
            Ok(false) => {
                return Some(format!(
                    "its signature does not verify with the key of {}",
                    issuer.name()
                ));
            }
            Err(oid) => return Some(format!("it is signed with unsupported algorithm {oid}")),
        }
        // RFC 5280 §5.2, §5.3: a CRL with a critical extension the reader
        // does not process must not be used (delta CRLs, issuing
        // distribution points, indirect CRL entries).
        let critical = self
            .tbs
            .crl_extensions
            .iter()
            .flatten()
            .chain(
                self.entries()
                    .flat_map(|e| e.crl_entry_extensions.iter().flatten()),
            )
            .find(|x| x.critical);
        if let Some(x) = critical {
            return Some(format!(
                "it has a critical extension sipseal does not process ({})",
                crate::oid::name(&x.extn_id)
            ));
        }
        if at < self.this_update() {
            return Some(format!(
                "it is not valid yet (this update {})",
                rfc3339(self.this_update())
            ));
        }
        if let Some(next) = self.next_update()
            && at > next
        {
            return Some(format!("it expired (next update {})", rfc3339(next)));
        }
        None
    }

    fn lists(&self, cert: &Cert) -> Option<Revoked> {
        let serial = cert.cert.tbs_certificate().serial_number();
        self.entries()
            .find(|e| e.serial_number.as_bytes() == serial.as_bytes())
            .map(revoked_of)
    }
}

fn revoked_of(e: &RevokedCert) -> Revoked {
    let reason = e
        .crl_entry_extensions
        .iter()
        .flatten()
        .find(|x| x.extn_id == <CrlReason as const_oid::AssociatedOid>::OID)
        .and_then(|x| CrlReason::from_der(x.extn_value.as_bytes()).ok())
        .map(reason_name);
    Revoked {
        serial: hex::encode(e.serial_number.as_bytes()),
        date: rfc3339(time_of(&e.revocation_date)),
        reason,
    }
}

fn reason_name(r: CrlReason) -> String {
    match r {
        CrlReason::Unspecified => "unspecified",
        CrlReason::KeyCompromise => "keyCompromise",
        CrlReason::CaCompromise => "cACompromise",
        CrlReason::AffiliationChanged => "affiliationChanged",
        CrlReason::Superseded => "superseded",
        CrlReason::CessationOfOperation => "cessationOfOperation",
        CrlReason::CertificateHold => "certificateHold",
        CrlReason::RemoveFromCRL => "removeFromCRL",
        CrlReason::PrivilegeWithdrawn => "privilegeWithdrawn",
        CrlReason::AaCompromise => "aACompromise",
    }
    .to_owned()
}

/// Revocation of a certificate path (leaf first, trust anchor last, as
/// [`super::trust::check_chain`] gives it) at `at`, as `openssl
/// -crl_check_all` does it: every certificate but the anchor is looked up
/// on the CRLs of its issuer (signed by the issuer's key, current at `at`,
/// without critical extensions sipseal does not process) and must not be
/// listed. When `required`, a certificate without such a CRL fails
/// ([`TrustError::NoCrl`]); otherwise the gap is only named. Returns what
/// was checked.
pub fn check_revocation(
    path: &[Cert],
    crls: &[&Crl],
    at: OffsetDateTime,
    required: bool,
) -> Result<String, TrustError> {
    let mut used = Vec::new();
    for pair in path.windows(2) {
        let (cert, issuer) = (&pair[0], &pair[1]);
        let mut why_not = Vec::new();
        // Every usable CRL of the issuer is consulted: a certificate listed
        // on any of them is revoked (revocation is not undone by an older
        // or concurrent CRL that does not list it); the newest is reported.
        let mut usable: Vec<&Crl> = Vec::new();
        for crl in crls {
            match crl.unusable(issuer, at) {
                None => usable.push(crl),
                Some(why) if crl.tbs.issuer == *issuer.cert.tbs_certificate().subject() => {
                    why_not.push(format!("the CRL from {}: {why}", crl.source));
                }
                Some(_) => {}
            }
        }
        if let Some((crl, r)) = usable
            .iter()
            .find_map(|crl| crl.lists(cert).map(|r| (crl, r)))
        {
            return Err(TrustError::Revoked {
                cert: cert.name(),
                serial: r.serial,
                on: format!(
                    "the CRL from {}, revoked {}{}",
                    crl.source,
                    r.date,
                    r.reason.map_or_else(String::new, |r| format!(" ({r})"))
                ),
            });
        }
        let Some(crl) = usable.iter().max_by_key(|c| c.this_update()) else {
            let why = if why_not.is_empty() {
                "none was given or carried".into()
            } else {
                why_not.join("; ")
            };
            if !required {
                used.push(format!(
                    "{} not checked (no current CRL of {}: {why}; --crl makes it required)",
                    cert.name(),
                    issuer.name()
                ));
                continue;
            }
            return Err(TrustError::NoCrl {
                cert: cert.name(),
                issuer: issuer.name(),
                why,
            });
        };
        used.push(format!(
            "{} not revoked ({} from {})",
            cert.name(),
            crl.describe(),
            crl.source
        ));
    }
    Ok(if used.is_empty() {
        "nothing to check: the signer's certificate is a trust anchor".into()
    } else {
        used.join("; ")
    })
}

/// One entry of a SignedData's `crls` (RFC 5652 §10.2.1
/// RevocationInfoChoice).
#[derive(Clone, Debug)]
pub enum RevocationInfo {
    /// A CRL.
    Crl(Box<Crl>),
    /// `[1] OtherRevocationInfoFormat`, e.g. an OCSP response: its format.
    Other(String),
    /// An entry that does not parse (it is not used), and why.
    Unreadable(String),
}

impl RevocationInfo {
    /// Read one RevocationInfoChoice.
    pub fn parse(item: &Any) -> RevocationInfo {
        use der::{Tag, TagNumber};
        let der = match item.to_der() {
            Ok(d) => d,
            Err(e) => return RevocationInfo::Unreadable(e.to_string()),
        };
        match item.tag() {
            Tag::Sequence => match Crl::from_der(&der, "the SignedData") {
                Ok(crl) => RevocationInfo::Crl(Box::new(crl)),
                Err(e) => RevocationInfo::Unreadable(format!("a CRL that does not parse ({e})")),
            },
            Tag::ContextSpecific {
                number: TagNumber(1),
                constructed: true,
            } => {
                // [1] IMPLICIT OtherRevocationInfoFormat ::=
                //     SEQUENCE { otherRevInfoFormat OID, otherRevInfo ANY }
                match der::SliceReader::new(item.value())
                    .and_then(|mut r| ObjectIdentifier::decode(&mut r))
                {
                    Ok(oid) => RevocationInfo::Other(crate::oid::name(&oid)),
                    Err(e) => RevocationInfo::Unreadable(format!(
                        "other revocation information that does not parse ({e})"
                    )),
                }
            }
            other => RevocationInfo::Unreadable(format!("an unknown revocation choice ({other})")),
        }
    }

    /// One line for `inspect`.
    pub fn describe(&self) -> String {
        match self {
            RevocationInfo::Crl(c) => c.describe(),
            RevocationInfo::Other(format) => format!("other revocation information ({format})"),
            RevocationInfo::Unreadable(why) => format!("unreadable: {why}"),
        }
    }
}
