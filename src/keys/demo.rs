//! The demo PKI (`sipseal keys demo`): two domain CAs and five parties,
//! each with an RSA-2048, an EC P-256 and an ML-KEM-768 identity, a trust
//! bundle and a PSK. Published keys: for demonstrations and tests only.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use der::pem::LineEnding;
use der::{DateTime, EncodePem};
use x509_cert::Certificate;
use x509_cert::name::Name;
use x509_cert::time::{Time, Validity};
use zeroize::Zeroizing;

use super::generate::{
    KeyType, PartyKey, Profile, Role, SigningKey, certify, ml_kem_pem, ml_kem_spki, server_host,
    write_all,
};
use super::mlkem::{MlKemKey, MlKemLevel};
use super::{KeyError, Psk};
use crate::context::Context;

/// A key pair with its certificate, PEM-encoded.
struct Issued {
    key_pem: Zeroizing<String>,
    cert_pem: String,
    key: SigningKey,
    cert: Certificate,
}

fn demo_validity() -> Result<Validity, KeyError> {
    let at = |y| {
        DateTime::new(y, 1, 1, 0, 0, 0)
            .map(Time::from)
            .map_err(|e| KeyError::Generate(e.to_string()))
    };
    Ok(Validity::new(at(2025)?, at(2045)?))
}

/// A demo certificate with a fresh key, issued by `issuer` (or
/// self-signed), in the profile of [`super::generate`].
fn issue(
    ctx: &mut Context,
    kind: KeyType,
    subject: &str,
    role: Role,
    issuer: Option<&Issued>,
) -> Result<Issued, KeyError> {
    let gen_err = |e: der::Error| KeyError::Generate(e.to_string());
    let key = SigningKey::generate(kind, ctx)?;
    let subject = Name::from_str(subject).map_err(gen_err)?;
    let (issuer_name, signer_key) = match issuer {
        Some(ca) => (ca.cert.tbs_certificate().subject().clone(), &ca.key),
        None => (subject.clone(), &key),
    };
    let profile = Profile {
        issuer: issuer_name,
        subject,
        role,
    };
    let cert = certify(ctx, profile, demo_validity()?, key.spki()?, signer_key)?;
    Ok(Issued {
        key_pem: key.pkcs8_pem()?,
        cert_pem: cert.to_pem(LineEnding::LF).map_err(gen_err)?,
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
- `alice-ec/`, `bob-ec/`, `proxy-a-ec/`, `proxy-b-ec/`, `carol-ec/`: the same
  parties with EC P-256 keys (keyAgreement; cert.pem followed by the CA's
  certificate; a relay's host also as a dNSName)
- `alice-mlkem/`, `bob-mlkem/`, `proxy-a-mlkem/`, `proxy-b-mlkem/`,
  `carol-mlkem/`: ML-KEM-768 identities (keyEncipherment only, PKCS#8 key.pem
  in the RFC 9935 seed form) for post-quantum KEMRecipientInfo recipients
- `trust.pem`: both CA certificates (trust anchors)
- `psk/alice-proxy-a.yaml`: a pre-shared key of alice and proxy-a

Regenerate an equivalent set with fresh keys: `sipseal keys demo --out DIR`.
";

/// Generate the demo PKI into `out` (see [`DEMO_PARTIES`]); returns the
/// files written. Everything is generated in memory first, then each file
/// is written atomically; private keys get mode 0600.
pub fn generate_demo(out: &Path, ctx: &mut Context) -> Result<Vec<PathBuf>, KeyError> {
    let mut files: Vec<(PathBuf, Vec<u8>, bool)> = Vec::new();
    let mut cas = Vec::new();
    let mut trust = String::new();
    for domain in DEMO_DOMAINS {
        let ca = issue(
            ctx,
            KeyType::Rsa2048,
            &format!("CN=sipseal demo CA {domain},O=sipseal demo,C=ZZ"),
            Role::Ca { path_len: 0 },
            None,
        )?;
        let dir = out.join("ca").join(domain);
        files.push((
            dir.join("cert.pem"),
            ca.cert_pem.clone().into_bytes(),
            false,
        ));
        files.push((dir.join("key.pem"), ca.key_pem.as_bytes().to_vec(), true));
        trust.push_str(&ca.cert_pem);
        cas.push((*domain, ca));
    }
    for (dir, cn, uri, domain) in DEMO_PARTIES {
        let ca = cas.iter().find(|(d, _)| d == domain).map(|(_, ca)| ca);
        let party = issue(
            ctx,
            KeyType::Rsa2048,
            &format!("CN={cn},O=sipseal demo {domain},C=ZZ"),
            Role::Party {
                uris: vec![(*uri).to_owned()],
                dns: Vec::new(),
                key: PartyKey::Transport,
            },
            ca,
        )?;
        files.push((
            out.join(dir).join("cert.pem"),
            party.cert_pem.into_bytes(),
            false,
        ));
        files.push((
            out.join(dir).join("key.pem"),
            party.key_pem.as_bytes().to_vec(),
            true,
        ));
    }
    files.push((out.join("trust.pem"), trust.into_bytes(), false));
    let psk = Psk {
        id: "alice-proxy-a".into(),
        key: Zeroizing::new(ctx.bytes(32)),
        uri: Some("sip:proxy-a.a.example.com".into()),
    };
    files.push((
        out.join("psk").join("alice-proxy-a.yaml"),
        psk.to_yaml().into_bytes(),
        true,
    ));
    // The EC P-256 identities come last, so that the RSA ones and the PSK
    // stay what the same seed gave before they existed. Like `keys
    // generate --ca`: cert.pem carries the CA's certificate after its own,
    // and a relay's host is a dNSName too.
    for (dir, cn, uri, domain) in DEMO_PARTIES {
        let Some(ca) = cas.iter().find(|(d, _)| d == domain).map(|(_, ca)| ca) else {
            continue;
        };
        let party = issue(
            ctx,
            KeyType::P256,
            &format!("CN={cn},O=sipseal demo {domain},C=ZZ"),
            Role::Party {
                uris: vec![(*uri).to_owned()],
                dns: server_host(uri).into_iter().collect(),
                key: PartyKey::Agreement,
            },
            Some(ca),
        )?;
        let ec = out.join(format!("{dir}-ec"));
        let chain = format!("{}{}", party.cert_pem, ca.cert_pem);
        files.push((ec.join("cert.pem"), chain.into_bytes(), false));
        files.push((ec.join("key.pem"), party.key_pem.as_bytes().to_vec(), true));
    }
    // ML-KEM-768 identities after those, for the same reason: a KEM
    // cannot sign, so only the CA's signature is on them.
    for (dir, cn, uri, domain) in DEMO_PARTIES {
        let Some(ca) = cas.iter().find(|(d, _)| d == domain).map(|(_, ca)| ca) else {
            continue;
        };
        let gen_err = |e: der::Error| KeyError::Generate(e.to_string());
        let key = MlKemKey::generate(MlKemLevel::MlKem768, ctx.rng());
        let profile = Profile {
            issuer: ca.cert.tbs_certificate().subject().clone(),
            subject: Name::from_str(&format!("CN={cn},O=sipseal demo {domain},C=ZZ"))
                .map_err(gen_err)?,
            role: Role::Party {
                uris: vec![(*uri).to_owned()],
                dns: server_host(uri).into_iter().collect(),
                key: PartyKey::Kem,
            },
        };
        let cert = certify(ctx, profile, demo_validity()?, ml_kem_spki(&key)?, &ca.key)?;
        let dir = out.join(format!("{dir}-mlkem"));
        let chain = format!(
            "{}{}",
            cert.to_pem(LineEnding::LF).map_err(gen_err)?,
            ca.cert_pem
        );
        files.push((dir.join("cert.pem"), chain.into_bytes(), false));
        files.push((
            dir.join("key.pem"),
            ml_kem_pem(&key)?.as_bytes().to_vec(),
            true,
        ));
    }
    files.push((
        out.join("README.md"),
        DEMO_README.as_bytes().to_vec(),
        false,
    ));
    write_all(&files)
}
