//! Key material of your own: identities, CAs, certificate requests and
//! PSKs (`sipseal keys generate|ca|sign-csr|psk`), and the certificate
//! profile the demo PKI shares.
//!
//! Profile (RFC 5280, RFC 8550 for S/MIME): an end-entity certificate
//! carries BasicConstraints CA:false, KeyUsage digitalSignature plus
//! keyEncipherment (RSA) or keyAgreement (EC), ExtendedKeyUsage
//! emailProtection, clientAuth and serverAuth (the same identity serves
//! S/MIME and mutual TLS), a SubjectAltName with the SIP URI (and a dNSName
//! for a relay or server: a URI without a user part names a host), and
//! subject and authority key identifiers. A CA carries BasicConstraints
//! CA:true with a path length, and KeyUsage keyCertSign and cRLSign.
//! Signatures are SHA-256 with RSA (PKCS#1 v1.5) or ECDSA P-256: both
//! deterministic, so `--seed` reproduces every byte.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use const_oid::db::rfc5280;
use der::asn1::Ia5String;
use der::pem::LineEnding;
use der::{Decode, Encode, EncodePem};
use p256::pkcs8::EncodePublicKey as _;
use rsa::RsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use sha2::Sha256;
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder, RequestBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::request::{CertReq, ExtensionReq};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};
use zeroize::Zeroizing;

use super::mlkem::{MlKemKey, MlKemLevel};
use super::{KeyError, Psk, identity, trust};
use crate::context::Context;
use crate::fsio::write_atomic;

/// The key types `keys generate` and `keys ca` make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum KeyType {
    /// RSA with a 2048-bit modulus (key transport: KeyTransRecipientInfo).
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// EC P-256 (key agreement: KeyAgreeRecipientInfo, RFC 5753).
    P256,
    /// ML-KEM-512 (KEMRecipientInfo, RFC 9629/9936; CA-issued only).
    #[cfg_attr(feature = "cli", value(name = "ml-kem-512"))]
    MlKem512,
    /// ML-KEM-768 (KEMRecipientInfo; CA-issued only: a KEM cannot sign).
    #[cfg_attr(feature = "cli", value(name = "ml-kem-768"))]
    MlKem768,
    /// ML-KEM-1024 (KEMRecipientInfo; CA-issued only).
    #[cfg_attr(feature = "cli", value(name = "ml-kem-1024"))]
    MlKem1024,
}

impl KeyType {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::P256 => "p256",
            KeyType::MlKem512 => "ml-kem-512",
            KeyType::MlKem768 => "ml-kem-768",
            KeyType::MlKem1024 => "ml-kem-1024",
        }
    }

    /// The ML-KEM parameter set, for a KEM key type.
    pub fn ml_kem(self) -> Option<MlKemLevel> {
        match self {
            KeyType::MlKem512 => Some(MlKemLevel::MlKem512),
            KeyType::MlKem768 => Some(MlKemLevel::MlKem768),
            KeyType::MlKem1024 => Some(MlKemLevel::MlKem1024),
            _ => None,
        }
    }
}

fn gen_err(e: impl std::fmt::Display) -> KeyError {
    KeyError::Generate(e.to_string())
}

/// A private key that can sign certificates and requests.
pub enum SigningKey {
    /// RSA (signs with PKCS#1 v1.5 and SHA-256).
    Rsa(Box<RsaPrivateKey>),
    /// EC P-256 (signs with ECDSA and SHA-256).
    P256(p256::SecretKey),
}

impl SigningKey {
    /// A fresh key from the context's RNG (reproducible with `--seed`).
    pub fn generate(kind: KeyType, ctx: &mut Context) -> Result<SigningKey, KeyError> {
        Ok(match kind {
            KeyType::Rsa2048 => SigningKey::Rsa(Box::new(
                RsaPrivateKey::new(ctx.rng(), 2048).map_err(gen_err)?,
            )),
            KeyType::Rsa3072 => SigningKey::Rsa(Box::new(
                RsaPrivateKey::new(ctx.rng(), 3072).map_err(gen_err)?,
            )),
            KeyType::P256 => SigningKey::P256(
                <p256::SecretKey as p256::elliptic_curve::Generate>::generate_from_rng(ctx.rng()),
            ),
            KeyType::MlKem512 | KeyType::MlKem768 | KeyType::MlKem1024 => {
                return Err(KeyError::Input(format!(
                    "an {} key cannot sign, so it cannot be a CA or sign its own certificate or request; give --type rsa2048, rsa3072 or p256",
                    kind.name()
                )));
            }
        })
    }

    /// Read a PKCS#8 (RSA or P-256), PKCS#1 (RSA) or SEC1 (EC) key file.
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        // The one reader of private keys (identity.rs), then the form
        // that signs.
        SigningKey::from_key(&identity::load_any_private_key(path)?, path)
    }

    /// The signing form of a key already read (`path` names it in errors).
    pub fn from_key(key: &super::PrivateKey, path: &Path) -> Result<SigningKey, KeyError> {
        match (key.rsa(), key.p256()) {
            (Some(rsa), _) => Ok(SigningKey::Rsa(Box::new(rsa.clone()))),
            (_, Some(ec)) => Ok(SigningKey::P256(ec.clone())),
            _ => Err(KeyError::BadIdentity {
                path: path.to_owned(),
                reason: "not an RSA or P-256 private key".into(),
            }),
        }
    }

    /// The public key as a SubjectPublicKeyInfo.
    pub fn spki(&self) -> Result<SubjectPublicKeyInfoOwned, KeyError> {
        let der = match self {
            SigningKey::Rsa(k) => {
                use rsa::pkcs8::EncodePublicKey;
                k.to_public_key().to_public_key_der().map_err(gen_err)?
            }
            SigningKey::P256(k) => k.public_key().to_public_key_der().map_err(gen_err)?,
        };
        SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(gen_err)
    }

    /// The private key as PKCS#8 PEM.
    pub fn pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        Ok(match self {
            SigningKey::Rsa(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(gen_err)?,
            SigningKey::P256(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(gen_err)?,
        })
    }

    /// Sign what `builder` builds (a certificate or a request) with this
    /// key. RSA signs through the private-key backend (aws-lc-rs: constant
    /// time); PKCS#1 v1.5 is deterministic, so the bytes are those the rsa
    /// crate would make.
    fn sign<B: Builder>(&self, mut builder: B) -> Result<B::Output, KeyError> {
        match self {
            SigningKey::Rsa(k) => {
                let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new((**k).clone());
                let blob = builder.finalize(&signer).map_err(gen_err)?;
                let (sig, _) = super::PrivateKey::from_rsa((**k).clone())
                    .sign_pkcs1v15_sha256(&blob)
                    .map_err(gen_err)?;
                let sig = der::asn1::BitString::from_bytes(&sig).map_err(gen_err)?;
                builder.assemble(sig, &signer)
            }
            SigningKey::P256(k) => {
                let signer = p256::ecdsa::SigningKey::from(k);
                builder.build::<_, p256::ecdsa::DerSignature>(&signer)
            }
        }
        .map_err(gen_err)
    }

    /// Sign `tbs` (the DER of a to-be-signed structure, e.g. a CRL's): the
    /// signature algorithm and the signature (SHA-256 with RSA PKCS#1
    /// v1.5, or ECDSA P-256, DER).
    pub fn sign_raw(
        &self,
        tbs: &[u8],
    ) -> Result<(x509_cert::spki::AlgorithmIdentifierOwned, Vec<u8>), KeyError> {
        use rsa::signature::Signer;
        Ok(match self {
            SigningKey::Rsa(k) => {
                let (sig, _) = super::PrivateKey::from_rsa((**k).clone())
                    .sign_pkcs1v15_sha256(tbs)
                    .map_err(gen_err)?;
                (
                    x509_cert::spki::AlgorithmIdentifierOwned {
                        oid: const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
                        parameters: Some(der::Any::from(der::asn1::Null)),
                    },
                    sig,
                )
            }
            SigningKey::P256(k) => {
                let signer = p256::ecdsa::SigningKey::from(k);
                let sig: p256::ecdsa::Signature = signer.try_sign(tbs).map_err(gen_err)?;
                (
                    x509_cert::spki::AlgorithmIdentifierOwned {
                        oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
                        parameters: None,
                    },
                    sig.to_der().as_bytes().to_vec(),
                )
            }
        })
    }

    fn is_ec(&self) -> bool {
        matches!(self, SigningKey::P256(_))
    }
}

/// What a certificate is for.
pub(crate) enum Role {
    /// A CA that may issue this many levels of intermediates below it.
    Ca { path_len: u8 },
    /// An end entity.
    Party {
        /// SAN URIs (the first is the party's SIP identity).
        uris: Vec<String>,
        /// SAN dNSNames (relays and servers, for TLS).
        dns: Vec<String>,
        /// What the key does, which sets the key usages.
        key: PartyKey,
    },
}

/// What an end entity's key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartyKey {
    /// RSA: key transport and signatures.
    Transport,
    /// EC: key agreement and signatures.
    Agreement,
    /// ML-KEM: key encapsulation only (RFC 9936: keyEncipherment alone).
    Kem,
}

impl PartyKey {
    fn of(spki: &SubjectPublicKeyInfoOwned) -> PartyKey {
        if spki.algorithm.oid == EC_PUBLIC_KEY {
            PartyKey::Agreement
        } else if MlKemLevel::from_oid(&spki.algorithm.oid).is_some() {
            PartyKey::Kem
        } else {
            PartyKey::Transport
        }
    }
}

/// The certificate profile (module documentation).
pub(crate) struct Profile {
    pub(crate) issuer: Name,
    pub(crate) subject: Name,
    pub(crate) role: Role,
}

impl BuilderProfile for Profile {
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
            Role::Ca { path_len } => {
                ext.push(
                    BasicConstraints {
                        ca: true,
                        path_len_constraint: Some(*path_len),
                    }
                    .to_extension(subject, &ext)?,
                );
                ext.push(
                    KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign)
                        .to_extension(subject, &ext)?,
                );
            }
            Role::Party { uris, dns, key } => {
                ext.push(
                    BasicConstraints {
                        ca: false,
                        path_len_constraint: None,
                    }
                    .to_extension(subject, &ext)?,
                );
                // Key transport (RSA) or agreement (EC) for S/MIME
                // encryption, and signatures; a KEM only encapsulates.
                let usage = match key {
                    PartyKey::Agreement => KeyUsages::DigitalSignature | KeyUsages::KeyAgreement,
                    PartyKey::Transport => KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment,
                    PartyKey::Kem => KeyUsages::KeyEncipherment.into(),
                };
                ext.push(KeyUsage(usage).to_extension(subject, &ext)?);
                // S/MIME, plus TLS both ways for the mutually authenticated
                // signalling channel (which a KEM key cannot authenticate).
                let eku = match key {
                    PartyKey::Kem => vec![rfc5280::ID_KP_EMAIL_PROTECTION],
                    _ => vec![
                        rfc5280::ID_KP_EMAIL_PROTECTION,
                        rfc5280::ID_KP_CLIENT_AUTH,
                        rfc5280::ID_KP_SERVER_AUTH,
                    ],
                };
                ext.push(ExtendedKeyUsage(eku).to_extension(subject, &ext)?);
                ext.push(SubjectAltName(san(uris, dns)?).to_extension(subject, &ext)?);
            }
        }
        ext.push(ski.to_extension(subject, &ext)?);
        ext.push(aki.to_extension(subject, &ext)?);
        Ok(ext)
    }
}

fn san(uris: &[String], dns: &[String]) -> Result<Vec<GeneralName>, der::Error> {
    let mut names = Vec::new();
    for u in uris {
        names.push(GeneralName::UniformResourceIdentifier(Ia5String::new(
            u.as_bytes(),
        )?));
    }
    for d in dns {
        names.push(GeneralName::DnsName(Ia5String::new(d.as_bytes())?));
    }
    Ok(names)
}

/// Sign a certificate for `spki` with `signer` (whose certificate is
/// `issuer`, or none for a self-signed one).
pub(crate) fn certify(
    ctx: &mut Context,
    profile: Profile,
    validity: Validity,
    spki: SubjectPublicKeyInfoOwned,
    signer: &SigningKey,
) -> Result<Certificate, KeyError> {
    let mut serial = ctx.bytes(16);
    serial[0] = (serial[0] & 0x7f) | 0x40; // positive, full length (RFC 5280 §4.1.2.2)
    let serial = SerialNumber::new(&serial).map_err(gen_err)?;
    let builder = CertificateBuilder::new(profile, serial, validity, spki).map_err(gen_err)?;
    signer.sign(builder)
}

/// `days` from `now` (whole seconds).
pub fn validity_from(now: OffsetDateTime, days: u32) -> Result<Validity, KeyError> {
    validity_until(now, now + time::Duration::days(i64::from(days)))
}

/// From `start` to `end` (whole seconds): a registration's certificate
/// ends when the registration does.
pub fn validity_until(start: OffsetDateTime, end: OffsetDateTime) -> Result<Validity, KeyError> {
    let start = start.replace_nanosecond(0).map_err(gen_err)?;
    let end = end.replace_nanosecond(0).map_err(gen_err)?;
    let at = |t: OffsetDateTime| -> Result<Time, KeyError> {
        let secs = u64::try_from(t.unix_timestamp())
            .map_err(|_| KeyError::Generate(format!("{t} is before 1970")))?;
        der::DateTime::from_unix_duration(std::time::Duration::from_secs(secs))
            .map(Time::from)
            .map_err(gen_err)
    };
    Ok(Validity::new(at(start)?, at(end)?))
}

/// The host of a SIP URI without a user part (`sip:proxy.example.com;lr`
/// → `proxy.example.com`), which names a relay or server.
pub fn server_host(uri: &str) -> Option<String> {
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))?;
    if rest.contains('@') {
        return None;
    }
    let host = rest.split([';', '?']).next()?;
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    (!host.is_empty() && !host.starts_with('[') && host.parse::<std::net::IpAddr>().is_err())
        .then(|| host.to_ascii_lowercase())
}

fn check_uri(uri: &str) -> Result<(), KeyError> {
    if (uri.starts_with("sip:") || uri.starts_with("sips:")) && uri.len() > 4 && uri.is_ascii() {
        Ok(())
    } else {
        Err(KeyError::Input(format!(
            "{uri:?} is not a SIP URI: give sip:user@domain (a party) or sip:host (a relay or server)"
        )))
    }
}

/// The subject DN of an end entity: its URI without the scheme.
fn party_subject(uri: &str) -> Result<Name, KeyError> {
    let cn = uri
        .split_once(':')
        .map_or(uri, |(_, r)| r)
        .split(';')
        .next()
        .unwrap_or_default();
    // Characters special in an RFC 4514 string are escaped.
    let mut escaped = String::new();
    for c in cn.chars() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    Name::from_str(&format!("CN={escaped}")).map_err(gen_err)
}

/// A distinguished name from RFC 4514 text.
fn parse_dn(dn: &str) -> Result<Name, KeyError> {
    Name::from_str(dn).map_err(|e| {
        KeyError::Input(format!(
            "{dn:?} is not a distinguished name ({e}): give e.g. \"CN=Example SIP CA,O=Example\""
        ))
    })
}

/// A CA directory: `cert.pem` and `key.pem`.
pub struct Ca {
    /// Its certificate.
    pub cert: Certificate,
    /// Its certificate in PEM, as read.
    pub cert_pem: String,
    /// Its private key.
    pub key: SigningKey,
}

impl Ca {
    /// Load a CA directory and check that it can issue: a CA certificate
    /// (BasicConstraints CA:true, keyCertSign) whose key is `key.pem`.
    pub fn load(dir: &Path) -> Result<Ca, KeyError> {
        let bad = |reason: String| KeyError::BadIdentity {
            path: dir.to_owned(),
            reason,
        };
        let cert_path = dir.join("cert.pem");
        let cert = super::Cert::load(&cert_path)?;
        let key = SigningKey::load(&dir.join("key.pem"))?;
        if key.spki()? != *cert.cert.tbs_certificate().subject_public_key_info() {
            return Err(bad("key.pem does not belong to cert.pem".into()));
        }
        if !trust::is_ca(&cert) {
            return Err(bad(format!(
                "{} is not a CA certificate (needs BasicConstraints CA:true and keyCertSign); make one with `sipseal keys ca`",
                cert_path.display()
            )));
        }
        let cert_pem = cert.cert.to_pem(LineEnding::LF).map_err(gen_err)?;
        Ok(Ca {
            cert: cert.cert,
            cert_pem,
            key,
        })
    }

    /// Issue an end-entity certificate for `spki`, valid `days` from now.
    pub fn issue(
        &self,
        ctx: &mut Context,
        subject: Name,
        uris: Vec<String>,
        dns: Vec<String>,
        spki: SubjectPublicKeyInfoOwned,
        days: u32,
    ) -> Result<Certificate, KeyError> {
        let validity = validity_from(ctx.now(), days)?;
        self.issue_with(ctx, subject, uris, dns, spki, validity)
    }

    /// Issue an end-entity certificate for `spki` with this validity.
    pub fn issue_with(
        &self,
        ctx: &mut Context,
        subject: Name,
        uris: Vec<String>,
        dns: Vec<String>,
        spki: SubjectPublicKeyInfoOwned,
        validity: Validity,
    ) -> Result<Certificate, KeyError> {
        let profile = Profile {
            issuer: self.cert.tbs_certificate().subject().clone(),
            subject,
            role: Role::Party {
                uris,
                dns,
                key: PartyKey::of(&spki),
            },
        };
        certify(ctx, profile, validity, spki, &self.key)
    }
}

impl Ca {
    /// Issue a party's certificate for `spki`, named for `uri` alone
    /// (subject `CN=` the URI's user part and host, the URI as its
    /// subjectAltName): what a registrar grants an AOR, the name its own
    /// to say, whatever a request asked for.
    pub fn issue_for_party(
        &self,
        ctx: &mut Context,
        uri: &str,
        spki: SubjectPublicKeyInfoOwned,
        validity: Validity,
    ) -> Result<Certificate, KeyError> {
        let subject = party_subject(uri)?;
        self.issue_with(
            ctx,
            subject,
            vec![uri.to_owned()],
            Vec::new(),
            spki,
            validity,
        )
    }
}

const EC_PUBLIC_KEY: const_oid::ObjectIdentifier = const_oid::db::rfc5912::ID_EC_PUBLIC_KEY;

/// What `keys generate` makes besides the key.
pub enum Issue<'a> {
    /// A self-signed certificate.
    SelfSigned,
    /// A certificate request (PKCS#10) for a CA to sign.
    Csr,
    /// A certificate from this CA.
    By(&'a Ca),
}

/// What to generate for an identity.
pub struct IdentityRequest {
    /// The SIP URI (SAN URI).
    pub uri: String,
    /// Further dNSNames (the URI's host is added for a relay or server).
    pub dns: Vec<String>,
    /// The key type.
    pub kind: KeyType,
    /// Validity in days.
    pub days: u32,
    /// The subject DN (RFC 4514 text); default `CN=` and the URI without
    /// its scheme.
    pub subject: Option<String>,
}

/// Generate an identity into `out`: `key.pem` (PKCS#8, mode 0600) and
/// `cert.pem` (with the issuing CA's certificate after it) or `csr.pem`.
/// An existing `key.pem` is kept unless `replace`. Returns the files
/// written; nothing is written when anything fails.
pub fn generate_identity(
    req: &IdentityRequest,
    issue: Issue<'_>,
    out: &Path,
    replace: bool,
    ctx: &mut Context,
) -> Result<Vec<PathBuf>, KeyError> {
    check_uri(&req.uri)?;
    let key_path = out.join("key.pem");
    if key_path.exists() && !replace {
        return Err(KeyError::Input(format!(
            "{} exists: give another --out, or --force to replace it",
            key_path.display()
        )));
    }
    let mut dns = req.dns.clone();
    if let Some(host) = server_host(&req.uri)
        && !dns.contains(&host)
    {
        dns.insert(0, host);
    }
    let subject = match &req.subject {
        Some(dn) => parse_dn(dn)?,
        None => party_subject(&req.uri)?,
    };
    let uris = vec![req.uri.clone()];
    if let Some(level) = req.kind.ml_kem() {
        // A KEM cannot sign: no self-signature, no PKCS#10 request.
        let Issue::By(ca) = issue else {
            return Err(KeyError::Input(format!(
                "an {} key cannot sign, so it can neither sign its own certificate nor a request: issue it from a CA with --ca DIR (see `sipseal keys ca`)",
                req.kind.name()
            )));
        };
        let key = MlKemKey::generate(level, ctx.rng());
        let cert = ca.issue(ctx, subject, uris, dns, ml_kem_spki(&key)?, req.days)?;
        let mut pem = cert.to_pem(LineEnding::LF).map_err(gen_err)?;
        pem.push_str(&ca.cert_pem);
        let files = vec![
            (key_path, ml_kem_pem(&key)?.as_bytes().to_vec(), true),
            (out.join("cert.pem"), pem.into_bytes(), false),
        ];
        return write_all(&files);
    }
    let key = SigningKey::generate(req.kind, ctx)?;
    let spki = key.spki()?;
    let (name, text) = match issue {
        Issue::Csr => {
            let csr = make_csr(&key, subject, &uris, &dns)?;
            ("csr.pem", csr.to_pem(LineEnding::LF).map_err(gen_err)?)
        }
        Issue::SelfSigned => {
            let profile = Profile {
                issuer: subject.clone(),
                subject,
                role: Role::Party {
                    uris,
                    dns,
                    key: if key.is_ec() {
                        PartyKey::Agreement
                    } else {
                        PartyKey::Transport
                    },
                },
            };
            let validity = validity_from(ctx.now(), req.days)?;
            let cert = certify(ctx, profile, validity, spki, &key)?;
            ("cert.pem", cert.to_pem(LineEnding::LF).map_err(gen_err)?)
        }
        Issue::By(ca) => {
            let cert = ca.issue(ctx, subject, uris, dns, spki, req.days)?;
            let mut pem = cert.to_pem(LineEnding::LF).map_err(gen_err)?;
            pem.push_str(&ca.cert_pem);
            ("cert.pem", pem)
        }
    };
    let files = vec![
        (key_path, key.pkcs8_pem()?.as_bytes().to_vec(), true),
        (out.join(name), text.into_bytes(), false),
    ];
    write_all(&files)
}

/// A fresh P-256 key and a certificate for it, self-signed, naming `uri`
/// and valid for `days` from now: what one end of a data channel presents
/// (RFC 8122 §5: its fingerprint travels in the signaling, which is
/// integrity-protected, so no CA is needed). The certificate's DER and
/// the key's PKCS#8 DER.
pub fn self_signed_p256(
    uri: &str,
    days: u32,
    ctx: &mut Context,
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), KeyError> {
    let key = SigningKey::generate(KeyType::P256, ctx)?;
    let subject = party_subject(uri)?;
    let profile = Profile {
        issuer: subject.clone(),
        subject,
        role: Role::Party {
            uris: vec![uri.to_owned()],
            dns: Vec::new(),
            key: PartyKey::Agreement,
        },
    };
    let validity = validity_from(ctx.now(), days)?;
    let cert = certify(ctx, profile, validity, key.spki()?, &key)?;
    let der = cert.to_der().map_err(gen_err)?;
    let SigningKey::P256(secret) = &key else {
        return Err(gen_err("a P-256 key was asked for"));
    };
    let pkcs8 = secret.to_pkcs8_der().map_err(gen_err)?;
    Ok((der, Zeroizing::new(pkcs8.as_bytes().to_vec())))
}

/// The SubjectPublicKeyInfo of an ML-KEM key (RFC 9935: parameters
/// absent, the encapsulation key as the BIT STRING).
pub(crate) fn ml_kem_spki(key: &MlKemKey) -> Result<SubjectPublicKeyInfoOwned, KeyError> {
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: x509_cert::spki::AlgorithmIdentifierOwned {
            oid: key.level().oid(),
            parameters: None,
        },
        subject_public_key: der::asn1::BitString::from_bytes(key.public_key()).map_err(gen_err)?,
    })
}

/// An ML-KEM private key as PKCS#8 PEM, in the seed form.
pub(crate) fn ml_kem_pem(key: &MlKemKey) -> Result<Zeroizing<String>, KeyError> {
    let der = key
        .to_pkcs8_der()
        .ok_or_else(|| gen_err("an ML-KEM key without its seed"))?;
    der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &der)
        .map(Zeroizing::new)
        .map_err(gen_err)
}

/// A PKCS#10 request for `key`'s public key, signed with it, asking for
/// `subject` and a subjectAltName of `uris` and `dns`.
pub fn make_csr(
    key: &SigningKey,
    subject: Name,
    uris: &[String],
    dns: &[String],
) -> Result<CertReq, KeyError> {
    let mut builder = RequestBuilder::new(subject).map_err(gen_err)?;
    builder
        .add_extension(&SubjectAltName(san(uris, dns).map_err(gen_err)?))
        .map_err(gen_err)?;
    key.sign(builder)
}

/// The subject DN `keys generate` gives a party: CN= and the URI without
/// its scheme.
pub fn subject_for(uri: &str) -> Result<Name, KeyError> {
    party_subject(uri)
}

/// Make a CA into `out`: `key.pem` (0600) and a self-signed `cert.pem`.
pub fn generate_ca(
    name: &str,
    kind: KeyType,
    days: u32,
    path_len: u8,
    out: &Path,
    replace: bool,
    ctx: &mut Context,
) -> Result<Vec<PathBuf>, KeyError> {
    let subject = parse_dn(name)?;
    let key_path = out.join("key.pem");
    if key_path.exists() && !replace {
        return Err(KeyError::Input(format!(
            "{} exists: give another --out, or --force to replace it",
            key_path.display()
        )));
    }
    let key = SigningKey::generate(kind, ctx)?;
    let profile = Profile {
        issuer: subject.clone(),
        subject,
        role: Role::Ca { path_len },
    };
    let validity = validity_from(ctx.now(), days)?;
    let cert = certify(ctx, profile, validity, key.spki()?, &key)?;
    let files = vec![
        (key_path, key.pkcs8_pem()?.as_bytes().to_vec(), true),
        (
            out.join("cert.pem"),
            cert.to_pem(LineEnding::LF).map_err(gen_err)?.into_bytes(),
            false,
        ),
    ];
    write_all(&files)
}

/// A certificate request, read and checked: its signature verifies with
/// the key it carries (proof of possession), and it names a SIP URI.
pub struct CheckedRequest {
    /// The subject DN asked for.
    pub subject: Name,
    /// The public key.
    pub spki: SubjectPublicKeyInfoOwned,
    /// SAN URIs asked for.
    pub uris: Vec<String>,
    /// SAN dNSNames asked for.
    pub dns: Vec<String>,
}

/// Read a PKCS#10 request (PEM or DER, as `openssl req` writes it) and
/// check its self-signature.
pub fn read_csr(bytes: &[u8], source: &Path) -> Result<CheckedRequest, KeyError> {
    let bad = |reason: String| KeyError::BadCsr {
        path: source.to_owned(),
        reason,
    };
    let csr = if super::pem::contains_pem(bytes) {
        // `NEW CERTIFICATE REQUEST` is what older tools write.
        let blocks = super::pem::pem_blocks(bytes, "CERTIFICATE REQUEST")
            .ok()
            .filter(|b| !b.is_empty())
            .or_else(|| super::pem::pem_blocks(bytes, "NEW CERTIFICATE REQUEST").ok())
            .unwrap_or_default();
        let der = blocks
            .first()
            .ok_or_else(|| bad("no readable CERTIFICATE REQUEST block in the PEM".into()))?;
        CertReq::from_der(der).map_err(|e| bad(format!("not a certificate request ({e})")))?
    } else {
        CertReq::from_der(bytes).map_err(|e| bad(format!("not a DER certificate request ({e})")))?
    };
    let info = csr.info.to_der().map_err(|e| bad(e.to_string()))?;
    let sig = csr
        .signature
        .as_bytes()
        .ok_or_else(|| bad("its signature is not a whole number of bytes".into()))?;
    match trust::spki_signature_ok(&csr.info.public_key, csr.algorithm.oid, &info, sig) {
        Ok(true) => {}
        Ok(false) => {
            return Err(bad(
                "its signature does not verify with the key it carries (altered, or not made with that key)".into(),
            ));
        }
        Err(alg) => {
            return Err(bad(format!(
                "signed with {alg}, which sipseal does not verify"
            )));
        }
    }
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    for attr in csr.info.attributes.iter() {
        if attr.oid != const_oid::db::rfc5912::ID_EXTENSION_REQ {
            continue;
        }
        for value in attr.values.iter() {
            let req: ExtensionReq = value
                .decode_as()
                .map_err(|e| bad(format!("unreadable extension request ({e})")))?;
            for ext in req
                .0
                .iter()
                .filter(|e| e.extn_id == rfc5280::ID_CE_SUBJECT_ALT_NAME)
            {
                let names = SubjectAltName::from_der(ext.extn_value.as_bytes())
                    .map_err(|e| bad(format!("unreadable subjectAltName ({e})")))?;
                for n in names.0 {
                    match n {
                        GeneralName::UniformResourceIdentifier(u) => uris.push(u.to_string()),
                        GeneralName::DnsName(d) => dns.push(d.to_string()),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(CheckedRequest {
        subject: csr.info.subject,
        spki: csr.info.public_key,
        uris,
        dns,
    })
}

/// Issue a certificate from a checked request: the SAN URIs and dNSNames
/// it asks for, or `uri` in their place; the key usages follow its key
/// type. Returns the certificate in PEM followed by the CA's.
pub fn sign_csr(
    ca: &Ca,
    req: CheckedRequest,
    uri: Option<&str>,
    days: u32,
    ctx: &mut Context,
) -> Result<String, KeyError> {
    let uris = match uri {
        Some(u) => {
            check_uri(u)?;
            vec![u.to_owned()]
        }
        None => req.uris,
    };
    if uris.is_empty() {
        return Err(KeyError::Input(
            "the request names no URI in a subjectAltName: give --uri sip:user@domain".into(),
        ));
    }
    for u in &uris {
        check_uri(u)?;
    }
    let mut dns = req.dns;
    if let Some(host) = uris.first().and_then(|u| server_host(u))
        && !dns.contains(&host)
    {
        dns.insert(0, host);
    }
    let alg = req.spki.algorithm.oid;
    if alg != EC_PUBLIC_KEY && alg != const_oid::db::rfc5912::RSA_ENCRYPTION {
        return Err(KeyError::Input(format!(
            "the request's key is {}: sipseal issues for RSA and EC P-256 keys",
            crate::oid::name(&alg)
        )));
    }
    let cert = ca.issue(ctx, req.subject, uris, dns, req.spki, days)?;
    let mut pem = cert.to_pem(LineEnding::LF).map_err(gen_err)?;
    pem.push_str(&ca.cert_pem);
    Ok(pem)
}

/// A fresh PSK: `bits` of key from the context's RNG, `id` as given or
/// `psk-` and 8 random bytes in hex (it travels in clear as the kekid).
pub fn generate_psk(
    uri: &str,
    id: Option<&str>,
    bits: u16,
    ctx: &mut Context,
) -> Result<Psk, KeyError> {
    check_uri(uri)?;
    if ![128, 192, 256].contains(&bits) {
        return Err(KeyError::Input(format!(
            "--bits {bits}: AES key wrap takes 128, 192 or 256"
        )));
    }
    let id = match id {
        Some(id) => id.to_owned(),
        None => format!("psk-{}", hex::encode(ctx.bytes(8))),
    };
    let psk = Psk {
        id,
        key: Zeroizing::new(ctx.bytes(usize::from(bits / 8))),
        uri: Some(uri.to_owned()),
    };
    // Through the parser, so an id it would refuse is refused now.
    Psk::parse(&psk.to_yaml(), Path::new("(generated)"))
}

/// Write every file atomically (private ones 0600), creating directories.
pub(crate) fn write_all(files: &[(PathBuf, Vec<u8>, bool)]) -> Result<Vec<PathBuf>, KeyError> {
    for (path, bytes, private) in files {
        let write_err = |source| KeyError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        write_atomic(path, bytes, *private).map_err(write_err)?;
    }
    Ok(files.iter().map(|(p, _, _)| p.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_hosts_are_uris_without_a_user() {
        assert_eq!(
            server_host("sip:proxy-a.a.example.com").as_deref(),
            Some("proxy-a.a.example.com")
        );
        assert_eq!(
            server_host("sips:Relay.Example.com:5061;lr").as_deref(),
            Some("relay.example.com")
        );
        assert_eq!(server_host("sip:alice@a.example.com"), None);
        assert_eq!(server_host("sip:192.0.2.1"), None);
        assert_eq!(server_host("sip:[2001:db8::1]"), None);
        assert_eq!(server_host("tel:+15551234"), None);
    }
}
