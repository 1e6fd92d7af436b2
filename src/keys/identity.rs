//! Identities (private key + certificate) and recipient certificates.
//!
//! An identity is a directory holding `cert.pem` (or `cert.der`/`cert.crt`)
//! and `key.pem` (or `key.der`/`key.key`), an explicit key and certificate
//! file pair, or a PKCS#12 bundle (`.p12`/`.pfx`). PEM and DER are detected
//! from the bytes; keys may be PKCS#8 (also passphrase-protected, PBES2),
//! PKCS#1 or SEC1. Extra certificates after the first in the certificate
//! file are the chain.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use der::{Decode, Encode};
use rsa::RsaPublicKey;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{SubjectAltName, SubjectKeyIdentifier};
use zeroize::Zeroizing;

use super::KeyError;
use super::mlkem::{MlKemKey, MlKemLevel};
use super::pem;
use super::private::PrivateKey;

/// A certificate with what sipseal needs from it, read once.
#[derive(Clone, Debug)]
pub struct Cert {
    /// The parsed certificate.
    pub cert: Certificate,
    /// Where it was read from (for messages).
    pub source: PathBuf,
}

impl Cert {
    /// The first SAN URI (`sip:...`), the identity of a party in SIP terms.
    pub fn uri(&self) -> Option<String> {
        let (_, san) = self
            .cert
            .tbs_certificate()
            .get_extension::<SubjectAltName>()
            .ok()??;
        san.0.iter().find_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            _ => None,
        })
    }

    /// Who a TLS peer presenting this certificate is, in 8 bytes: the
    /// first bytes of SHA-256 over its SAN URI (as an AOR compares:
    /// scheme and host in lower case, the user as it is), else over
    /// its subject name. A renewed certificate for the same URI has the
    /// same one, so a relay's flow token for a peer outlives its
    /// connection (`relay::flow`).
    pub fn flow_id(&self) -> [u8; 8] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"sipseal flow peer\0");
        match self.uri() {
            // The AOR's own comparison: scheme and host in any case, the
            // user part exactly (RFC 3261 §19.1.4: sip:Alice@ is not
            // sip:alice@, and must not share alice's flow).
            Some(u) => h.update(crate::sip::aor::aor_key(&u).as_bytes()),
            None => h.update(
                self.cert
                    .tbs_certificate()
                    .subject()
                    .to_der()
                    .unwrap_or_default(),
            ),
        }
        let full = h.finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&full[..8]);
        out
    }

    /// The SubjectKeyIdentifier extension's bytes, when present.
    pub fn ski(&self) -> Option<Vec<u8>> {
        let (_, ski) = self
            .cert
            .tbs_certificate()
            .get_extension::<SubjectKeyIdentifier>()
            .ok()??;
        Some(ski.0.as_bytes().to_vec())
    }

    /// The RSA public key, or why the certificate has none.
    pub fn rsa_public_key(&self) -> Result<RsaPublicKey, KeyError> {
        let spki = self.cert.tbs_certificate().subject_public_key_info();
        let der = spki.to_der().map_err(|e| self.bad(e.to_string()))?;
        use rsa::pkcs8::DecodePublicKey;
        RsaPublicKey::from_public_key_der(&der).map_err(|_| {
            self.bad(format!(
                "its public key ({}) is not RSA",
                crate::oid::name(&spki.algorithm.oid)
            ))
        })
    }

    /// The EC P-256 public key, or why the certificate is not one.
    pub fn p256_public_key(&self) -> Result<p256::PublicKey, KeyError> {
        let spki = self.cert.tbs_certificate().subject_public_key_info();
        let der = spki.to_der().map_err(|e| self.bad(e.to_string()))?;
        use p256::pkcs8::DecodePublicKey;
        p256::PublicKey::from_public_key_der(&der).map_err(|_| {
            self.bad(format!(
                "its public key ({}) is not EC P-256",
                crate::oid::name(&spki.algorithm.oid)
            ))
        })
    }

    /// The ML-KEM parameter set and encapsulation key, or why the
    /// certificate has none (RFC 9935: parameters absent, the key is the
    /// whole BIT STRING).
    pub fn ml_kem_public_key(&self) -> Result<(MlKemLevel, &[u8]), KeyError> {
        let spki = self.cert.tbs_certificate().subject_public_key_info();
        let level = MlKemLevel::from_oid(&spki.algorithm.oid).ok_or_else(|| {
            self.bad(format!(
                "its public key ({}) is not ML-KEM",
                crate::oid::name(&spki.algorithm.oid)
            ))
        })?;
        let key = spki
            .subject_public_key
            .as_bytes()
            .filter(|k| k.len() == level.public_len() && spki.algorithm.parameters.is_none())
            .ok_or_else(|| {
                self.bad(format!(
                    "its {} public key is not {} bytes with absent parameters (RFC 9935)",
                    level.name(),
                    level.public_len()
                ))
            })?;
        Ok((level, key))
    }

    /// What kind of recipient its key makes, or why it makes none: RSA
    /// (key transport), EC P-256 (key agreement) or ML-KEM (KEM).
    pub fn recipient_kind(&self) -> Result<CertKeyKind, KeyError> {
        if self.rsa_public_key().is_ok() {
            return Ok(CertKeyKind::Rsa);
        }
        if self.p256_public_key().is_ok() {
            return Ok(CertKeyKind::P256);
        }
        let spki = self.cert.tbs_certificate().subject_public_key_info();
        if MlKemLevel::from_oid(&spki.algorithm.oid).is_some() {
            return self.ml_kem_public_key().map(|(l, _)| CertKeyKind::MlKem(l));
        }
        Err(self.bad(format!(
            "its public key ({}) is none of RSA, EC P-256 and ML-KEM, the recipients sipseal supports",
            crate::oid::name(&spki.algorithm.oid)
        )))
    }

    /// Whether `key` is the private half of this certificate's key.
    pub fn is_key_of(&self, key: &PrivateKey) -> bool {
        if let Some(kem) = key.ml_kem() {
            return self
                .ml_kem_public_key()
                .is_ok_and(|(level, public)| level == kem.level() && public == kem.public_key());
        }
        if let Some(rsa) = key.rsa_public() {
            return self.rsa_public_key().is_ok_and(|public| public == *rsa);
        }
        match (self.p256_public_key(), key.p256_public_point()) {
            (Ok(public), Some(point)) => {
                use p256::elliptic_curve::sec1::ToSec1Point;
                public.to_sec1_point(false).as_bytes() == point.as_slice()
            }
            _ => false,
        }
    }

    /// How to name it in messages: the SAN URI, else the subject DN.
    pub fn name(&self) -> String {
        self.uri().unwrap_or_else(|| self.subject())
    }

    /// The subject DN as text.
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate().subject().to_string()
    }

    /// Whether it belongs to the bundled demo PKI (whose keys are public anyway).
    pub fn is_demo(&self) -> bool {
        self.cert
            .tbs_certificate()
            .issuer()
            .to_string()
            .contains("O=sipseal demo")
    }

    fn bad(&self, reason: String) -> KeyError {
        KeyError::BadCert {
            path: self.source.clone(),
            reason,
        }
    }

    /// Read every certificate in a PEM or DER file (first = end entity).
    pub fn load_all(path: &Path) -> Result<Vec<Cert>, KeyError> {
        let bytes = read(path)?;
        let bad = |reason: String| KeyError::BadCert {
            path: path.to_owned(),
            reason,
        };
        let certs = if pem::contains_pem(&bytes) {
            pem_certificates(&bytes).map_err(bad)?
        } else {
            vec![
                Certificate::from_der(&bytes)
                    .map_err(|e| bad(format!("not a DER certificate ({e})")))?,
            ]
        };
        if certs.is_empty() {
            return Err(bad("no certificate in the file".into()));
        }
        Ok(certs
            .into_iter()
            .map(|cert| Cert {
                cert,
                source: path.to_owned(),
            })
            .collect())
    }

    /// Read one certificate (the first in the file).
    pub fn load(path: &Path) -> Result<Cert, KeyError> {
        let mut all = Cert::load_all(path)?;
        Ok(all.remove(0))
    }

    /// Every certificate under `path` (a file, or a directory searched
    /// recursively, three levels deep, for `*.pem`, `*.crt`, `*.cer`,
    /// `*.der`); files that hold no certificate (keys) are skipped.
    pub fn load_tree(path: &Path) -> Result<Vec<Cert>, KeyError> {
        if path.is_file() {
            return Cert::load_all(path);
        }
        let mut found = Vec::new();
        walk(path, 0, &mut found)?;
        Ok(found)
    }

    /// Parse a DER certificate received in a message (e.g. a 496 body).
    pub fn from_der(der: &[u8], source: &str) -> Result<Cert, KeyError> {
        let cert = Certificate::from_der(der).map_err(|e| KeyError::BadCert {
            path: source.into(),
            reason: format!("not a DER certificate ({e})"),
        })?;
        Ok(Cert {
            cert,
            source: source.into(),
        })
    }
}

/// A private key with its certificate: who I am when opening or signing.
///
/// The private key file is read only when the key is first needed
/// ([`Identity::private_key`]): a relay that is not a recipient never reads
/// or parses it.
pub struct Identity {
    /// The end-entity certificate.
    pub cert: Cert,
    /// Further certificates from the certificate file.
    pub chain: Vec<Cert>,
    /// Where the key is read from.
    pub key_path: PathBuf,
    /// Problems worth a warning (e.g. a key file readable by others).
    pub warnings: Vec<String>,
    /// CRLs to carry in the SignedData of its signatures (RFC 5652
    /// §10.2.1), so a verifier can check revocation without fetching them.
    pub crls: Vec<super::crl::Crl>,
    /// The passphrase of a protected key file (set by the caller).
    key_password: Option<Zeroizing<String>>,
    /// The private key once loaded (zeroized on drop).
    key: OnceLock<PrivateKey>,
    /// Its certificate's SAN URI, once read (a relay names itself by it
    /// for every message).
    uri: OnceLock<Option<String>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert", &self.cert.source)
            .field("key", &self.key_path)
            .finish()
    }
}

const CERT_NAMES: &[&str] = &["cert.pem", "cert.der", "cert.crt"];
const KEY_NAMES: &[&str] = &["key.pem", "key.der", "key.key"];

impl Identity {
    /// Load an identity directory (`cert.pem` + `key.pem`, or the DER variants).
    pub fn load_dir(dir: &Path) -> Result<Identity, KeyError> {
        let find = |names: &[&str]| names.iter().map(|n| dir.join(n)).find(|p| p.is_file());
        let missing = |what: &str, names: &[&str]| KeyError::BadIdentity {
            path: dir.to_owned(),
            reason: format!("no {what} file (looked for {})", names.join(", ")),
        };
        if !dir.is_dir() {
            return Err(KeyError::BadIdentity {
                path: dir.to_owned(),
                reason: if dir.exists() {
                    "not a directory".into()
                } else {
                    "no such file or directory".into()
                },
            });
        }
        let cert = find(CERT_NAMES).ok_or_else(|| missing("certificate", CERT_NAMES))?;
        let key = find(KEY_NAMES).ok_or_else(|| missing("private key", KEY_NAMES))?;
        Identity::load_pair(&key, &cert)
    }

    /// An explicit key file and certificate file. The certificate is read
    /// now; the key file only when [`Identity::private_key`] needs it.
    pub fn load_pair(key_path: &Path, cert_path: &Path) -> Result<Identity, KeyError> {
        let mut certs = Cert::load_all(cert_path)?;
        let cert = certs.remove(0);
        if !key_path.is_file() {
            return Err(KeyError::BadIdentity {
                path: key_path.to_owned(),
                reason: "no such key file".into(),
            });
        }
        let mut warnings = Vec::new();
        if let Some(mode) = group_or_other_readable(key_path)
            && !cert.is_demo()
        {
            warnings.push(format!(
                "private key {} is readable by group/other (mode {mode:o}); run chmod 600 on it",
                key_path.display()
            ));
        }
        Ok(Identity {
            cert,
            chain: certs,
            key_path: key_path.to_owned(),
            warnings,
            crls: Vec::new(),
            key_password: None,
            key: OnceLock::new(),
            uri: OnceLock::new(),
        })
    }

    /// A PKCS#12 bundle (`openssl pkcs12 -export`, browsers, Java
    /// keystores): the private key, its certificate and the chain, opened
    /// with `password` (the bundle's MAC is checked with it first).
    /// PBES2 (AES, OpenSSL 3's default) and the legacy PKCS#12 PBEs
    /// (3DES, RC2) are read.
    pub fn load_pkcs12(path: &Path, password: &str) -> Result<Identity, KeyError> {
        let bad = |reason: String| KeyError::BadIdentity {
            path: path.to_owned(),
            reason,
        };
        let bytes = read(path)?;
        let store = p12_keystore::KeyStore::from_pkcs12(&bytes, password).map_err(|e| {
            bad(format!(
                "cannot open it as a PKCS#12 bundle with that passphrase ({e}): check the passphrase, or that the file is PKCS#12 (openssl pkcs12 -info -in FILE)"
            ))
        })?;
        let (_, chain) = store
            .private_key_chain()
            .ok_or_else(|| bad("the bundle holds no private key with its certificate".into()))?;
        let key = private_key_from_pkcs8(chain.key()).map_err(&bad)?;
        let source = path.display().to_string();
        let mut certs = chain
            .chain()
            .iter()
            .map(|c| Cert::from_der(c.as_der(), &source))
            .collect::<Result<Vec<_>, _>>()?;
        // The certificate of the key first, then the rest as the chain.
        let leaf = certs
            .iter()
            .position(|c| c.is_key_of(&key))
            .ok_or_else(|| bad("no certificate in the bundle belongs to its private key".into()))?;
        let cert = certs.remove(leaf);
        let mut warnings = Vec::new();
        if let Some(mode) = group_or_other_readable(path) {
            warnings.push(format!(
                "PKCS#12 bundle {} is readable by group/other (mode {mode:o}); run chmod 600 on it",
                path.display()
            ));
        }
        Ok(Identity {
            cert,
            chain: certs,
            key_path: path.to_owned(),
            warnings,
            crls: Vec::new(),
            key_password: None,
            key: OnceLock::from(key),
            uri: OnceLock::new(),
        })
    }

    /// Its certificate's SAN URI ([`Cert::uri`], read once).
    pub fn uri(&self) -> Option<&str> {
        self.uri.get_or_init(|| self.cert.uri()).as_deref()
    }

    /// The passphrase for a protected key file (encrypted PKCS#8).
    pub fn set_key_password(&mut self, password: Zeroizing<String>) {
        self.key_password = Some(password);
    }

    /// The private key, read and checked against the certificate on first use.
    pub fn private_key(&self) -> Result<&PrivateKey, KeyError> {
        if let Some(key) = self.key.get() {
            return Ok(key);
        }
        let key = load_private_key_with(
            &self.key_path,
            self.key_password.as_deref().map(|p| p.as_str()),
        )?;
        if !self.cert.is_key_of(&key) {
            return Err(KeyError::BadIdentity {
                path: self.key_path.clone(),
                reason: format!(
                    "the key does not belong to the certificate {}",
                    self.cert.source.display()
                ),
            });
        }
        Ok(self.key.get_or_init(|| key))
    }
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<Cert>) -> Result<(), KeyError> {
    let read_err = |source| KeyError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if depth < 3 {
                walk(&p, depth + 1, found)?;
            }
            continue;
        }
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if ["pem", "crt", "cer", "der"].contains(&ext)
            && let Ok(certs) = Cert::load_all(&p)
        {
            found.extend(certs);
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Every `CERTIFICATE` block of a PEM bundle, in order.
fn pem_certificates(bytes: &[u8]) -> Result<Vec<Certificate>, String> {
    pem::pem_blocks(bytes, "CERTIFICATE")?
        .iter()
        .enumerate()
        .map(|(i, der)| {
            Certificate::from_der(der)
                .map_err(|e| format!("certificate {} does not parse ({e})", i + 1))
        })
        .collect()
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN "))
}

/// The kind of key a certificate carries, as a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKeyKind {
    /// RSA: KeyTransRecipientInfo.
    Rsa,
    /// EC P-256: KeyAgreeRecipientInfo (RFC 5753).
    P256,
    /// ML-KEM: KEMRecipientInfo (RFC 9629, RFC 9936).
    MlKem(MlKemLevel),
}

/// Read an RSA (PKCS#8 or PKCS#1), EC P-256 (PKCS#8 or SEC1) or ML-KEM
/// (PKCS#8, RFC 9935) private key, PEM or DER; not a protected one.
pub fn load_any_private_key(path: &Path) -> Result<PrivateKey, KeyError> {
    load_private_key_with(path, None)
}

/// The DER of a passphrase-protected PKCS#8 key (`ENCRYPTED PRIVATE KEY`
/// PEM, or an EncryptedPrivateKeyInfo in DER), when `bytes` hold one.
fn encrypted_pkcs8(bytes: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if looks_like_pem(bytes) {
        return first_pem(bytes, "ENCRYPTED PRIVATE KEY")
            .ok()
            .map(Zeroizing::new);
    }
    pkcs8::EncryptedPrivateKeyInfoRef::try_from(bytes)
        .is_ok()
        .then(|| Zeroizing::new(bytes.to_vec()))
}

/// Whether the key file holds a passphrase-protected PKCS#8 key.
pub fn key_is_encrypted(path: &Path) -> bool {
    std::fs::read(path)
        .map(Zeroizing::new)
        .is_ok_and(|b| encrypted_pkcs8(&b).is_some())
}

/// A private key from the DER of an unencrypted PKCS#8 PrivateKeyInfo,
/// by its algorithm: RSA, EC P-256 or ML-KEM.
fn private_key_from_pkcs8(der: &[u8]) -> Result<PrivateKey, String> {
    let info = pkcs8::PrivateKeyInfoRef::try_from(der)
        .map_err(|e| format!("not a PKCS#8 private key ({e})"))?;
    match info.algorithm.oid {
        const_oid::db::rfc5912::RSA_ENCRYPTION => PrivateKey::from_rsa_pkcs8(der),
        const_oid::db::rfc5912::ID_EC_PUBLIC_KEY => {
            <p256::SecretKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(der)
                .map(PrivateKey::from_p256)
                .map_err(|_| "an EC key, but not a P-256 one (the curve sipseal uses)".into())
        }
        oid => match MlKemKey::from_pkcs8_der(der) {
            Some(found) => found.map(PrivateKey::from_ml_kem),
            None => Err(format!(
                "its key is {}: none of RSA, EC P-256 and ML-KEM",
                crate::oid::name(&oid)
            )),
        },
    }
}

/// A PKCS#1 RSAPrivateKey as PKCS#8 (what the key is kept and parsed as).
fn pkcs1_to_pkcs8(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    rsa::pkcs1::RsaPrivateKey::<rsa::pkcs1::UintRef<'_>>::from_der(der)
        .map_err(|e| format!("not a PKCS#1 RSA private key ({e})"))?;
    let info = pkcs8::PrivateKeyInfoRef::new(
        x509_cert::spki::AlgorithmIdentifierRef {
            oid: const_oid::db::rfc5912::RSA_ENCRYPTION,
            parameters: Some(der::AnyRef::NULL),
        },
        der::asn1::OctetStringRef::new(der).map_err(|e| e.to_string())?,
    );
    info.to_der().map(Zeroizing::new).map_err(|e| e.to_string())
}

/// A private key from a file's bytes: PKCS#8 (RSA, EC P-256, ML-KEM),
/// PKCS#1 (RSA) or SEC1 (EC), PEM or DER. Each is parsed once here; an
/// RSA key's private part is parsed by the implementation that uses it.
fn parse_private_key(bytes: &[u8]) -> Result<PrivateKey, String> {
    let sec1 = |der: &[u8]| {
        p256::SecretKey::from_sec1_der(der)
            .map(PrivateKey::from_p256)
            .map_err(|_| "an EC private key, but not a P-256 one".to_string())
    };
    if looks_like_pem(bytes) {
        if let Ok(der) = first_pem(bytes, "PRIVATE KEY") {
            return private_key_from_pkcs8(&Zeroizing::new(der));
        }
        if let Ok(der) = first_pem(bytes, "RSA PRIVATE KEY") {
            return PrivateKey::from_rsa_pkcs8(&pkcs1_to_pkcs8(&Zeroizing::new(der))?);
        }
        if let Ok(der) = first_pem(bytes, "EC PRIVATE KEY") {
            return sec1(&Zeroizing::new(der));
        }
        return Err("no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block in the PEM".into());
    }
    if pkcs8::PrivateKeyInfoRef::try_from(bytes).is_ok() {
        return private_key_from_pkcs8(bytes);
    }
    if let Ok(pkcs8) = pkcs1_to_pkcs8(bytes) {
        return PrivateKey::from_rsa_pkcs8(&pkcs8);
    }
    sec1(bytes).map_err(|_| "not a private key: PKCS#8, PKCS#1 or SEC1, PEM or DER".into())
}

/// Read a private key as [`load_any_private_key`] does, and a
/// passphrase-protected PKCS#8 one (PBES2: PBKDF2 or scrypt with AES-CBC,
/// what `openssl pkcs8 -topk8` and `openssl genpkey -aes256` write) with
/// `password`.
pub fn load_private_key_with(path: &Path, password: Option<&str>) -> Result<PrivateKey, KeyError> {
    let bad = |reason: String| KeyError::BadIdentity {
        path: path.to_owned(),
        reason,
    };
    let bytes = read(path)?;
    if let Some(der) = encrypted_pkcs8(&bytes) {
        let Some(password) = password else {
            return Err(KeyError::NeedKeyPassword {
                path: path.to_owned(),
            });
        };
        let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| bad(format!("an encrypted PKCS#8 key that does not parse ({e})")))?;
        let plain = info.decrypt(password).map_err(|e| {
            bad(format!(
                "the passphrase does not open it ({e}): check the passphrase file"
            ))
        })?;
        return private_key_from_pkcs8(plain.as_bytes()).map_err(bad);
    }
    if bytes.windows(22).any(|w| w == b"Proc-Type: 4,ENCRYPTED") {
        return Err(bad(
            "a key encrypted in OpenSSL's legacy PEM format: convert it to PKCS#8 with openssl pkcs8 -topk8 -in KEY -out KEY.p8.pem (it asks for both passphrases)".into(),
        ));
    }
    parse_private_key(&bytes).map_err(bad)
}

/// The mode of a file that group or others may read (a secret's file
/// should be 0600), else `None`.
#[cfg(unix)]
pub fn group_or_other_readable(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Always `None` where there are no Unix modes.
#[cfg(not(unix))]
pub fn group_or_other_readable(_path: &Path) -> Option<u32> {
    None
}

/// The DER of the first `label` PEM block.
fn first_pem(bytes: &[u8], label: &str) -> Result<Vec<u8>, ()> {
    pem::pem_blocks(bytes, label)
        .ok()
        .and_then(|blocks| blocks.into_iter().next())
        .ok_or(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing identity says it is missing, a file in its place that it
    /// is not a directory.
    #[test]
    fn a_missing_identity_directory_is_told_apart_from_a_file() {
        let reason = |p: &Path| match Identity::load_dir(p) {
            Err(KeyError::BadIdentity { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            reason(&tmp.path().join("gateway")),
            "no such file or directory"
        );
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(reason(&file), "not a directory");
    }

    fn repo(p: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
    }

    /// Two certificates whose URIs differ only in the user part's case
    /// are two users (RFC 3261 §19.1.4): their flow identities differ,
    /// so one cannot carry on the other's flow at a relay. They were
    /// the same (the whole URI in lower case).
    #[test]
    fn the_flow_identity_keeps_the_users_case_and_folds_the_hosts() {
        let id = |uri: &str| {
            let mut ctx = crate::context::Context::new(None, None);
            let (der, _) = crate::keys::generate::self_signed_p256(uri, 1, &mut ctx).unwrap();
            Cert::from_der(&der, uri).unwrap().flow_id()
        };
        let alice = id("sip:alice@b.example.com");
        assert_ne!(alice, id("sip:Alice@b.example.com"), "another user");
        assert_eq!(alice, id("sip:alice@B.Example.COM"), "the same host");
        assert_eq!(alice, id("sip:alice@b.example.com"), "a renewed one");
    }

    #[test]
    fn demo_identity_loads_with_uri_and_ski() {
        let id = Identity::load_dir(&repo("keys/proxy-a")).unwrap();
        assert_eq!(id.cert.uri().as_deref(), Some("sip:proxy-a.a.example.com"));
        assert_eq!(id.cert.ski().map(|s| s.len()), Some(20));
        assert!(id.cert.is_demo());
        assert!(id.warnings.is_empty(), "demo keys are public: no warning");
    }

    #[test]
    fn each_key_kind_matches_its_own_certificate_only() {
        for (own, other) in [
            ("bob", "alice"),
            ("bob-ec", "alice-ec"),
            ("bob-mlkem", "alice-mlkem"),
        ] {
            let id = Identity::load_dir(&repo(&format!("keys/{own}"))).unwrap();
            let key = load_any_private_key(&id.key_path).unwrap();
            assert!(id.cert.is_key_of(&key), "{own}");
            let wrong = load_any_private_key(&repo(&format!("keys/{other}/key.pem"))).unwrap();
            assert!(!id.cert.is_key_of(&wrong), "{own} with {other}'s key");
        }
        // Across kinds too.
        let rsa = Identity::load_dir(&repo("keys/bob")).unwrap();
        let ec = load_any_private_key(&repo("keys/bob-ec/key.pem")).unwrap();
        assert!(!rsa.cert.is_key_of(&ec));
    }

    #[test]
    fn pkcs1_pkcs8_pem_and_der_give_the_same_key() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let pem = std::fs::read(repo("keys/bob/key.pem")).unwrap();
        let pkcs8 = parse_private_key(&pem).unwrap();
        let rsa = pkcs8.rsa().unwrap().clone();
        let pkcs1_der = rsa.to_pkcs1_der().unwrap();
        let pkcs1_pem = rsa.to_pkcs1_pem(der::pem::LineEnding::LF).unwrap();
        for bytes in [pkcs1_der.as_bytes(), pkcs1_pem.as_bytes()] {
            let key = parse_private_key(bytes).unwrap();
            assert_eq!(key.rsa_public(), pkcs8.rsa_public());
            assert_eq!(key.rsa().unwrap(), &rsa);
        }
        let err =
            parse_private_key(b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
                .err()
                .unwrap();
        assert!(err.contains("no PRIVATE KEY"), "{err}");
        assert!(parse_private_key(b"\x30\x03\x02\x01\x00").is_err());
    }

    #[test]
    fn an_encrypted_ml_kem_key_opens_with_its_passphrase() {
        // OpenSSL 3.0 cannot write one: encrypt the demo's seed-form key
        // with the pkcs8 crate (PBES2, PBKDF2-SHA256, AES-256-CBC).
        let pem = std::fs::read_to_string(repo("keys/bob-mlkem/key.pem")).unwrap();
        let (_, der) = der::pem::decode_vec(pem.as_bytes()).unwrap();
        let mut rng = <rand::rngs::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(3);
        let encrypted = pkcs8::PrivateKeyInfoRef::try_from(der.as_slice())
            .unwrap()
            .encrypt_with_rng(&mut rng, "pq passphrase")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.der");
        std::fs::write(&path, encrypted.as_bytes()).unwrap();
        assert!(key_is_encrypted(&path));
        assert!(matches!(
            load_any_private_key(&path),
            Err(KeyError::NeedKeyPassword { .. })
        ));
        let key = load_private_key_with(&path, Some("pq passphrase")).unwrap();
        let id = Identity::load_dir(&repo("keys/bob-mlkem")).unwrap();
        assert!(id.cert.is_key_of(&key));
        let err = load_private_key_with(&path, Some("wrong")).err().unwrap();
        assert!(
            err.to_string().contains("passphrase does not open it"),
            "{err}"
        );
    }

    #[test]
    fn mismatched_pair_and_missing_files_are_refused() {
        // The key is read on first use, and checked against the certificate then.
        let pair =
            Identity::load_pair(&repo("keys/alice/key.pem"), &repo("keys/bob/cert.pem")).unwrap();
        let err = pair.private_key().unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        let good = Identity::load_dir(&repo("keys/bob")).unwrap();
        assert!(good.private_key().is_ok());
        let err =
            Identity::load_pair(&repo("keys/nokey.pem"), &repo("keys/bob/cert.pem")).unwrap_err();
        assert!(err.to_string().contains("no such key file"), "{err}");
        let err = Identity::load_dir(&repo("keys")).unwrap_err();
        assert!(err.to_string().contains("no certificate file"), "{err}");
        let err = Cert::load(&repo("keys/alice/key.pem")).unwrap_err();
        assert!(matches!(err, KeyError::BadCert { .. }), "{err}");
    }
}
