//! Key material: identities and certificates ([`identity`]), pre-shared
//! key files and the demo PKI.
//!
//! PSK file (YAML; the format everywhere a PSK is read or written):
//!
//! ```yaml
//! id: alice-proxy-a        # UTF-8 bytes = KEKRecipientInfo kekid.keyIdentifier
//! key: 0123...cdef         # 128-, 192- or 256-bit AES key in hex
//! uri: sip:proxy-a.a.example.com   # who holds it (for Proxy-Inspect-Body)
//! ```

pub mod crl;
pub mod identity;
pub(crate) mod pem;
pub mod private;
pub mod trust;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use const_oid::db::rfc5280;
use der::asn1::Ia5String;
use der::pem::LineEnding;
use der::{DateTime, EncodePem};
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::EncodePrivateKey;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfo, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, ext::pkix::name::GeneralNames};
use zeroize::Zeroizing;

use crate::context::Context;
use crate::error::ErrorClass;
use crate::fsio::write_atomic;
pub use identity::{Cert, Identity};
pub use private::{Backend, PrivateKey};

/// Problems with key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key or certificate file that cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Generated key material that cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A PSK file that does not read as one.
    #[error("{path} is not a PSK file: {reason}")]
    BadPsk {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate that cannot be used.
    #[error("{path}: unusable certificate: {reason}")]
    BadCert {
        /// Where it came from.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A CRL file that cannot be used.
    #[error("{path}: unusable CRL: {reason}")]
    BadCrl {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An identity (key + certificate) that cannot be used.
    #[error("{path}: unusable identity: {reason}")]
    BadIdentity {
        /// The identity directory or key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Generating key material failed.
    #[error("key generation failed: {0}")]
    Generate(String),
}

impl KeyError {
    /// What kind of failure it is: reading or writing a key file, or key
    /// material that cannot be used (configuration).
    pub fn class(&self) -> ErrorClass {
        match self {
            KeyError::Read { .. } | KeyError::Write { .. } => ErrorClass::Io,
            _ => ErrorClass::Config,
        }
    }
}

/// A pre-shared key: KEKIdentifier, AES key-encryption key, and its holder.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk {
    /// The KEKIdentifier as text: its UTF-8 bytes go on the wire, or, as
    /// `hex:0a1b...` (what `inspect` prints for one that is not printable),
    /// the bytes that hex gives (see [`Psk::id_bytes`]).
    pub id: String,
    /// 16, 24 or 32 bytes (wiped when dropped).
    pub key: Zeroizing<Vec<u8>>,
    /// The SIP URI of the party holding the key, if known.
    pub uri: Option<String>,
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Psk")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("uri", &self.uri)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PskFile {
    id: String,
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
}

impl Psk {
    /// Parse a PSK file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Psk, KeyError> {
        let bad = |reason: String| KeyError::BadPsk {
            path: path.to_owned(),
            reason,
        };
        let file: PskFile = crate::yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if file.id.is_empty() {
            return Err(bad("empty id".into()));
        }
        if let Some(h) = file.id.strip_prefix("hex:") {
            match hex::decode(h) {
                Ok(b) if !b.is_empty() => {}
                _ => {
                    return Err(bad(format!(
                        "id {:?}: after `hex:` give the identifier's bytes as hex digits",
                        file.id
                    )));
                }
            }
        }
        let key = Zeroizing::new(
            hex::decode(file.key.trim()).map_err(|e| bad(format!("key is not hex: {e}")))?,
        );
        if ![16, 24, 32].contains(&key.len()) {
            return Err(bad(format!(
                "key is {} bytes; AES key wrap needs 16, 24 or 32",
                key.len()
            )));
        }
        if let Some(uri) = &file.uri
            && !(uri.starts_with("sip:") || uri.starts_with("sips:"))
        {
            return Err(bad(format!("uri {uri:?} is not a sip: or sips: URI")));
        }
        Ok(Psk {
            id: file.id,
            key,
            uri: file.uri,
        })
    }

    /// The KEKIdentifier's bytes on the wire: the decoded hex of a
    /// `hex:` id (checked when the file was read), else the id's UTF-8.
    pub fn id_bytes(&self) -> Vec<u8> {
        self.id
            .strip_prefix("hex:")
            .and_then(|h| hex::decode(h).ok())
            .unwrap_or_else(|| self.id.as_bytes().to_vec())
    }

    /// The bundled demo PSK (`keys/psk/alice-proxy-a.yaml`): published,
    /// so its file mode is no secret's.
    pub fn is_demo(&self) -> bool {
        self.id == "alice-proxy-a" && self.uri.as_deref() == Some("sip:proxy-a.a.example.com")
    }

    /// A warning when the PSK file at `path` is readable by group or
    /// other, as for a private key (not for the bundled demo PSK).
    pub fn file_warning(&self, path: &Path) -> Option<String> {
        let mode = identity::group_or_other_readable(path)?;
        (!self.is_demo()).then(|| {
            format!(
                "PSK file {} is readable by group/other (mode {mode:o}); run chmod 600 on it",
                path.display()
            )
        })
    }

    /// Read a PSK file.
    pub fn load(path: &Path) -> Result<Psk, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Psk::parse(&text, path)
    }

    /// The PSK file text.
    pub fn to_yaml(&self) -> String {
        let file = PskFile {
            id: self.id.clone(),
            key: hex::encode(&self.key),
            uri: self.uri.clone(),
        };
        // Serializing three strings cannot fail.
        crate::yaml::to_string(&file).unwrap_or_default()
    }
}

/// What a generated certificate is for.
enum Role {
    Ca,
    /// An end entity with this SAN URI.
    Party(String),
}

/// The certificate profile of the demo PKI (RFC 5280 + RFC 8550 S/MIME use).
struct DemoProfile {
    issuer: Name,
    subject: Name,
    role: Role,
}

impl BuilderProfile for DemoProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut ext = Vec::new();
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(SubjectKeyIdentifier::try_from(issuer_spk)?.0),
            ..Default::default()
        };
        let subject = tbs.subject();
        match &self.role {
            Role::Ca => {
                ext.push(
                    BasicConstraints {
                        ca: true,
                        path_len_constraint: Some(0),
                    }
                    .to_extension(subject, &ext)?,
                );
                ext.push(
                    KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign)
                        .to_extension(subject, &ext)?,
                );
            }
            Role::Party(uri) => {
                ext.push(
                    BasicConstraints {
                        ca: false,
                        path_len_constraint: None,
                    }
                    .to_extension(subject, &ext)?,
                );
                // RSA key transport (S/MIME encryption) and signatures.
                ext.push(
                    KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment)
                        .to_extension(subject, &ext)?,
                );
                // S/MIME, plus TLS both ways for the mutually authenticated signalling channel.
                ext.push(
                    ExtendedKeyUsage(vec![
                        rfc5280::ID_KP_EMAIL_PROTECTION,
                        rfc5280::ID_KP_CLIENT_AUTH,
                        rfc5280::ID_KP_SERVER_AUTH,
                    ])
                    .to_extension(subject, &ext)?,
                );
                let uri = Ia5String::new(uri.as_bytes())?;
                let san: GeneralNames = vec![GeneralName::UniformResourceIdentifier(uri)];
                ext.push(SubjectAltName(san).to_extension(subject, &ext)?);
            }
        }
        ext.push(ski.to_extension(subject, &ext)?);
        ext.push(aki.to_extension(subject, &ext)?);
        Ok(ext)
    }
}

/// A key pair with its certificate, PEM-encoded.
pub struct Issued {
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    key: RsaPrivateKey,
    cert: Certificate,
}

fn gen_err(e: impl std::fmt::Display) -> KeyError {
    KeyError::Generate(e.to_string())
}

fn demo_validity() -> Result<Validity, KeyError> {
    let at = |y| {
        DateTime::new(y, 1, 1, 0, 0, 0)
            .map(Time::from)
            .map_err(gen_err)
    };
    Ok(Validity::new(at(2025)?, at(2045)?))
}

fn issue(
    ctx: &mut Context,
    subject: &str,
    role: Role,
    issuer: Option<&Issued>,
) -> Result<Issued, KeyError> {
    let key = RsaPrivateKey::new(ctx.rng(), 2048).map_err(gen_err)?;
    let spki = SubjectPublicKeyInfo::from_key(&key.to_public_key()).map_err(gen_err)?;
    let subject = Name::from_str(subject).map_err(gen_err)?;
    let (issuer_name, signer_key) = match issuer {
        Some(ca) => (ca.cert.tbs_certificate().subject().clone(), ca.key.clone()),
        None => (subject.clone(), key.clone()),
    };
    let mut serial = ctx.bytes(16);
    serial[0] = (serial[0] & 0x7f) | 0x40; // positive, full length (RFC 5280 §4.1.2.2)
    let serial = SerialNumber::new(&serial).map_err(gen_err)?;
    let profile = DemoProfile {
        issuer: issuer_name,
        subject,
        role,
    };
    let builder =
        CertificateBuilder::new(profile, serial, demo_validity()?, spki).map_err(gen_err)?;
    let signer = SigningKey::<Sha256>::new(signer_key);
    let cert = builder
        .build::<_, rsa::pkcs1v15::Signature>(&signer)
        .map_err(gen_err)?;
    let key_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(gen_err)?
        .to_string();
    let cert_pem = cert.to_pem(LineEnding::LF).map_err(gen_err)?;
    Ok(Issued {
        key_pem,
        cert_pem,
        key,
        cert,
    })
}

/// The parties of the demo PKI: directory, common name, SAN URI, domain.
pub const DEMO_PARTIES: &[(&str, &str, &str, &str)] = &[
    ("alice", "alice", "sip:alice@a.example.com", "a.example.com"),
    ("bob", "bob", "sip:bob@b.example.com", "b.example.com"),
    (
        "proxy-a",
        "proxy-a.a.example.com",
        "sip:proxy-a.a.example.com",
        "a.example.com",
    ),
    (
        "proxy-b",
        "proxy-b.b.example.com",
        "sip:proxy-b.b.example.com",
        "b.example.com",
    ),
    ("carol", "carol", "sip:carol@a.example.com", "a.example.com"),
];

/// The demo domains, each with its own CA.
pub const DEMO_DOMAINS: &[&str] = &["a.example.com", "b.example.com"];

const DEMO_README: &str = "\
# Demo PKI: for demonstrations and tests only

NEVER use these keys for anything real: the private keys are published.

- `ca/a.example.com/`, `ca/b.example.com/`: one CA per domain (cert.pem, key.pem)
- `alice/`, `bob/`, `proxy-a/`, `proxy-b/`, `carol/`: identities (RSA-2048,
  PKCS#8 key.pem; cert.pem with a SAN URI and SubjectKeyIdentifier, issued by
  the CA of the party's domain, valid 2025-01-01 to 2045-01-01)
- `trust.pem`: both CA certificates (trust anchors)
- `psk/alice-proxy-a.yaml`: a pre-shared key of alice and proxy-a

Regenerate an equivalent set with fresh keys: `sipseal keys demo --out DIR`.
";

/// Generate the demo PKI into `out` (see [`DEMO_PARTIES`]); returns the
/// files written. Everything is generated in memory first, then each file
/// is written atomically; private keys get mode 0600.
pub fn generate_demo(out: &Path, ctx: &mut Context) -> Result<Vec<PathBuf>, KeyError> {
    let mut files: Vec<(PathBuf, String, bool)> = Vec::new();
    let mut cas = Vec::new();
    let mut trust = String::new();
    for domain in DEMO_DOMAINS {
        let ca = issue(
            ctx,
            &format!("CN=sipseal demo CA {domain},O=sipseal demo,C=ZZ"),
            Role::Ca,
            None,
        )?;
        let dir = out.join("ca").join(domain);
        files.push((dir.join("cert.pem"), ca.cert_pem.clone(), false));
        files.push((dir.join("key.pem"), ca.key_pem.clone(), true));
        trust.push_str(&ca.cert_pem);
        cas.push((*domain, ca));
    }
    for (dir, cn, uri, domain) in DEMO_PARTIES {
        let ca = cas.iter().find(|(d, _)| d == domain).map(|(_, ca)| ca);
        let party = issue(
            ctx,
            &format!("CN={cn},O=sipseal demo {domain},C=ZZ"),
            Role::Party((*uri).to_owned()),
            ca,
        )?;
        files.push((out.join(dir).join("cert.pem"), party.cert_pem, false));
        files.push((out.join(dir).join("key.pem"), party.key_pem, true));
    }
    files.push((out.join("trust.pem"), trust, false));
    let psk = Psk {
        id: "alice-proxy-a".into(),
        key: Zeroizing::new(ctx.bytes(32)),
        uri: Some("sip:proxy-a.a.example.com".into()),
    };
    files.push((
        out.join("psk").join("alice-proxy-a.yaml"),
        psk.to_yaml(),
        true,
    ));
    files.push((out.join("README.md"), DEMO_README.into(), false));

    for (path, text, private) in &files {
        let write_err = |source| KeyError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        write_atomic(path, text.as_bytes(), *private).map_err(write_err)?;
    }
    Ok(files.into_iter().map(|(p, _, _)| p).collect())
}

/// The demo identity `name` of the repository's `keys/` (unit tests).
#[cfg(test)]
pub(crate) fn demo_identity(name: &str) -> Identity {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("keys")
        .join(name);
    Identity::load_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_file_round_trip_and_errors() {
        let p = Path::new("x.yaml");
        let psk = Psk {
            id: "k1".into(),
            key: Zeroizing::new(vec![7; 32]),
            uri: Some("sip:proxy-a.a.example.com".into()),
        };
        assert_eq!(Psk::parse(&psk.to_yaml(), p).unwrap(), psk);
        for bad in [
            "id: k\nkey: zz\n",
            "id: k\nkey: 0011\n",
            "key: 00\n",
            "id: k\nkey: 00112233445566778899aabbccddeeff\nuri: http://x\n",
        ] {
            assert!(
                matches!(Psk::parse(bad, p), Err(KeyError::BadPsk { .. })),
                "{bad}"
            );
        }
        assert!(!format!("{psk:?}").contains("0707"));
    }
}
