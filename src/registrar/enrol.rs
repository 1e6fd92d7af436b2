//! The registrant's side of registration with a certificate request
//! (issue 16, docs/SPEC.md §6): the CSR a REGISTER carries for a key
//! ([`csr_body`]), and the certificate the registrar's 200 OK returns,
//! checked ([`issued`]: the registrar's outer signature chaining to the
//! trust anchors, the certs-only body opened when it came sealed, the
//! certificate for this key naming the AOR and chaining to the anchors)
//! and installed as `cert.pem` ([`install`]). `sipseal register
//! --accept` and `sipseal terminal` both use it.

use std::path::{Path, PathBuf};

use crate::envelope::RecipientKey;
use crate::envelope::signed::certs_of;
use crate::keys::generate::{SigningKey, make_csr, subject_for};
use crate::keys::trust::check_chain;
use crate::keys::{Cert, KeyError, PrivateKey};
use crate::signing::outer_signature;
use crate::sip::Message;
use crate::sip::compose::Body;

/// Why the registrar's answer gives no certificate to install.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// The key cannot make a request.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The 200 is not signed by a registrar the anchors trust.
    #[error("{0}")]
    Unsigned(String),
    /// The sealed body did not open.
    #[error("the 200 OK's body: {0}")]
    Sealed(#[from] crate::sealing::SealError),
    /// The certificate is missing or not the one asked for.
    #[error("{0}")]
    Certificate(String),
}

/// The PKCS#10 body of a REGISTER asking a certificate of `aor` for
/// `key` (the subject and SAN URI the registrar takes from the AOR).
pub fn csr_body(key: &PrivateKey, aor: &str) -> Result<Body, KeyError> {
    let signing = SigningKey::from_key(key, Path::new("key.pem"))?;
    let csr = make_csr(&signing, subject_for(aor)?, &[aor.to_owned()], &[])?;
    Ok(Body {
        content_type: "application/pkcs10".into(),
        bytes: der::Encode::to_der(&csr).map_err(|e| KeyError::Generate(e.to_string()))?,
    })
}

/// The SubjectKeyIdentifier the registrar's CA gives `key`'s
/// certificate (and names it by when it seals the 200 for it).
pub fn ski_of_key(key: &PrivateKey) -> Vec<u8> {
    SigningKey::from_key(key, Path::new("key.pem"))
        .and_then(|k| k.spki())
        .ok()
        .and_then(|s| crate::envelope::recipient::ski_of(&s).ok())
        .unwrap_or_default()
}

/// The registrar's outer signature of `response`, verified, its signer
/// chaining to `anchors`.
pub fn signed_by_registrar(
    response: &Message,
    anchors: &[Cert],
) -> Result<crate::signing::OuterSignature, EnrolError> {
    let unsigned = |why: String| EnrolError::Unsigned(why);
    let outer = outer_signature(response)
        .map_err(|e| unsigned(e.to_string()))?
        .ok_or_else(|| unsigned("the 200 OK is not signed by the registrar".into()))?;
    let signers = outer.verify().map_err(|e| unsigned(e.to_string()))?;
    let signer = signers
        .first()
        .ok_or_else(|| unsigned("the signature has no signer".into()))?;
    check_chain(&signer.cert, &[], anchors)
        .map_err(|e| unsigned(format!("the registrar's certificate: {e}")))?;
    Ok(outer)
}

/// A certificate the registrar issued, and the rest of its chain.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate of the registrant's key.
    pub cert: Cert,
    /// The other certificates of the certs-only body (the CA's).
    pub chain: Vec<Cert>,
    /// Whether the body came sealed.
    pub sealed: bool,
}

/// The certificate a registrar's signed 200 OK (`payload`: its signed
/// part, [`signed_by_registrar`]) carries for `key`: its certs-only body
/// opened with `keys` when sealed, the certificate of `key` naming the
/// 200's To AOR and chaining to `anchors` through the others.
pub fn issued<R: rand::CryptoRng + ?Sized>(
    response: &Message,
    payload: &crate::mime::Part,
    key: &PrivateKey,
    keys: &[RecipientKey<'_>],
    anchors: &[Cert],
    rng: &mut R,
) -> Result<Issued, EnrolError> {
    let bad = |why: String| EnrolError::Certificate(why);
    let (body, sealed) = super::sealed::answer_body(payload, keys, rng)?;
    let certs = certs_of(&body).map_err(|e| bad(e.to_string()))?;
    let mine = certs
        .iter()
        .find(|c| c.is_key_of(key))
        .ok_or_else(|| bad("no certificate in the 200 OK is for this identity's key".into()))?;
    let aor = response.aor("To").unwrap_or_default();
    if mine.uri().as_deref() != Some(aor) {
        return Err(bad(format!(
            "the certificate names {}, not {aor}",
            mine.name()
        )));
    }
    let chain: Vec<Cert> = certs
        .iter()
        .filter(|c| !c.is_key_of(key))
        .cloned()
        .collect();
    check_chain(mine, &chain, anchors).map_err(|e| bad(format!("the certificate: {e}")))?;
    Ok(Issued {
        cert: mine.clone(),
        chain,
        sealed,
    })
}

/// Write `issued` (the certificate, then its chain, PEM) as `dir/cert.pem`,
/// by a temporary file and a rename: a reader sees the old file or the
/// new one. Its path.
pub fn install(dir: &Path, issued: &Issued) -> Result<PathBuf, KeyError> {
    let mut pem = String::new();
    for c in std::iter::once(&issued.cert).chain(issued.chain.iter()) {
        pem.push_str(
            &der::EncodePem::to_pem(&c.cert, der::pem::LineEnding::LF)
                .map_err(|e| KeyError::Generate(e.to_string()))?,
        );
    }
    let path = dir.join("cert.pem");
    crate::fsio::write_atomic(&path, pem.as_bytes(), false).map_err(|source| KeyError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
