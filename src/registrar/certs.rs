//! What the registrar does with certificates: open a body sealed for it,
//! issue from a CSR, check a certificate registered as it is, issue the
//! newest again on a refresh, and answer with one (certs-only, signed).

use der::Encode;
use time::OffsetDateTime;

use super::stop::{Stop, refuse};
use super::store::StoredCert;
use super::{Registrar, RegistrarError};
use crate::context::Context;
use crate::envelope::signed::{SignatureScheme, certs_only};
use crate::keys::Cert;
use crate::keys::generate::{read_csr, validity_until};
use crate::signing::{SigningError, sign_message};
use crate::sip::aor::same_aor;
use crate::sip::compose::{Body, ResponseParams, build_response};
use crate::sip::{Message, Status};

/// The request with its body opened when it came sealed for the
/// registrar (SPEC §6: a CSR sealed to the registrar's certificate),
/// else as it is; a sealed body that does not open is a 400 (why, for
/// the operator only: the client learns nothing of it).
pub(super) fn unseal(r: &Registrar<'_>, req: &Message, ctx: &mut Context) -> Result<Message, Stop> {
    let sealed = req
        .content_type()
        .ok()
        .flatten()
        .is_some_and(|c| c.mime == "application/pkcs7-mime");
    if !sealed {
        return Ok(req.clone());
    }
    let keys = [crate::envelope::RecipientKey::Cert {
        cert: &r.identity.cert,
        key: r.identity,
    }];
    match crate::sealing::open_input(
        crate::sealing::SealedInput::Sip(req.clone()),
        &keys,
        ctx.rng(),
    ) {
        Ok(opened) => opened
            .message
            .ok_or_else(|| refuse(Status::BadRequest, "the sealed body is not a SIP body")),
        Err(e) => Err(refuse(
            Status::BadRequest,
            format!("the sealed body does not open for the registrar: {e}"),
        )),
    }
}

/// The 200 carrying `cert` and the CA's certificate as certs-only,
/// outer-signed by the registrar.
pub(super) fn with_certificate(
    r: &Registrar<'_>,
    req: &Message,
    mut headers: Vec<(String, String)>,
    cert: &Cert,
    ctx: &mut Context,
) -> Result<Message, RegistrarError> {
    let chain = [
        cert.clone(),
        Cert {
            cert: r.ca.cert.clone(),
            source: "the CA".into(),
        },
    ];
    headers.push((
        "Content-Disposition".into(),
        "attachment; filename=smime.p7c; handling=required".into(),
    ));
    let response = build_response(
        req,
        &ResponseParams {
            code: Status::Ok.code(),
            headers,
            body: Some(Body {
                content_type: "application/pkcs7-mime; smime-type=certs-only; name=smime.p7c"
                    .into(),
                bytes: certs_only(&chain).map_err(SigningError::from)?,
            }),
            ..Default::default()
        },
        ctx,
    )?;
    Ok(sign_message(
        &response,
        r.identity,
        SignatureScheme::Pkcs1v15,
        &[],
        ctx,
    )?)
}

/// The AOR's newest certificate issued here (valid, not withdrawn),
/// issued again until `until`; `None` when there is none.
pub(super) fn reissue(
    r: &Registrar<'_>,
    aor: &str,
    until: OffsetDateTime,
    ctx: &mut Context,
) -> Result<Option<Cert>, RegistrarError> {
    let now = ctx.now();
    let record = r.store.load_aor(r.realm, aor)?;
    let Some(previous) = record
        .certificates
        .iter()
        .rev()
        .find(|c| c.issued && c.withdrawn.is_none() && c.not_after > now)
    else {
        return Ok(None);
    };
    let (_, der) = der::pem::decode_vec(previous.pem.as_bytes())
        .map_err(|e| crate::keys::KeyError::Generate(e.to_string()))?;
    let old = Cert::from_der(&der, "the registry")?;
    let tbs = old.cert.tbs_certificate();
    let validity = validity_until(now, until)?;
    let cert = r.ca.issue_with(
        ctx,
        tbs.subject().clone(),
        vec![aor.to_owned()],
        Vec::new(),
        tbs.subject_public_key_info().clone(),
        validity,
    )?;
    Ok(Some(Cert {
        cert,
        source: "issued".into(),
    }))
}

/// Issue from a PKCS#10 request: its signature verifies with its key
/// (proof of possession), it names `aor` (SAN URI, else CN), its key is
/// RSA of 2048 bits or more or EC P-256; valid until `until`.
pub(super) fn issue_from_csr(
    r: &Registrar<'_>,
    bytes: &[u8],
    aor: &str,
    until: OffsetDateTime,
    ctx: &mut Context,
) -> Result<Cert, Stop> {
    let req = read_csr(bytes, std::path::Path::new("the REGISTER body"))
        .map_err(|e| refuse(Status::BadRequest, e.to_string()))?;
    let cn_names_aor = req.subject.to_string().split(',').any(|rdn| {
        rdn.trim()
            .strip_prefix("CN=")
            .is_some_and(|cn| same_aor(&format!("sip:{cn}"), aor))
    });
    let names_aor = if req.uris.is_empty() {
        cn_names_aor
    } else {
        req.uris.iter().any(|u| same_aor(u, aor))
    };
    if !names_aor {
        return Err(refuse(
            Status::Forbidden,
            format!("the request names {:?}, not {aor}", req.uris),
        ));
    }
    let key_ok = match req.spki.algorithm.oid {
        const_oid::db::rfc5912::ID_EC_PUBLIC_KEY => {
            use p256::pkcs8::DecodePublicKey;
            req.spki
                .to_der()
                .ok()
                .is_some_and(|d| p256::PublicKey::from_public_key_der(&d).is_ok())
        }
        const_oid::db::rfc5912::RSA_ENCRYPTION => {
            use rsa::pkcs8::DecodePublicKey;
            use rsa::traits::PublicKeyParts;
            req.spki
                .to_der()
                .ok()
                .and_then(|d| rsa::RsaPublicKey::from_public_key_der(&d).ok())
                .is_some_and(|k| k.n().bits() >= 2048)
        }
        _ => false,
    };
    if !key_ok {
        return Err(refuse(
            Status::BadRequest,
            "the request's key is not RSA of 2048 bits or more, nor EC P-256",
        ));
    }
    let validity =
        validity_until(ctx.now(), until).map_err(|e| Stop::Failed(RegistrarError::Key(e)))?;
    r.ca.issue_with(
        ctx,
        req.subject,
        vec![aor.to_owned()],
        Vec::new(),
        req.spki,
        validity,
    )
    .map(|cert| Cert {
        cert,
        source: "issued".into(),
    })
    .map_err(|e| Stop::Failed(RegistrarError::Key(e)))
}

/// Check a certificate registered as it is: it chains to the CA, is
/// valid now, and names `aor`.
pub(super) fn check_given_cert(
    r: &Registrar<'_>,
    der: &[u8],
    aor: &str,
    now: OffsetDateTime,
) -> Result<Cert, Stop> {
    let cert = Cert::from_der(der, "the REGISTER body")
        .map_err(|e| refuse(Status::BadRequest, e.to_string()))?;
    let anchor = Cert {
        cert: r.ca.cert.clone(),
        source: "the CA".into(),
    };
    crate::keys::trust::check_chain(&cert, &[], &[anchor])
        .map_err(|e| refuse(Status::Forbidden, e.to_string()))?;
    crate::keys::trust::check_validity(&cert, now)
        .map_err(|e| refuse(Status::Forbidden, e.to_string()))?;
    if !cert.uri().is_some_and(|u| same_aor(&u, aor)) {
        return Err(refuse(
            Status::Forbidden,
            format!("the certificate names {}, not {aor}", cert.name()),
        ));
    }
    Ok(cert)
}

/// What the store keeps of a certificate issued here (`issued`) or
/// registered as it came, for `aor`.
pub(super) fn stored_cert(
    cert: &Cert,
    aor: &str,
    issued: bool,
) -> Result<StoredCert, RegistrarError> {
    use der::EncodePem;
    use sha2::Digest;
    let der = cert
        .cert
        .to_der()
        .map_err(|e| crate::keys::KeyError::Generate(e.to_string()))?;
    let pem = cert
        .cert
        .to_pem(der::pem::LineEnding::LF)
        .map_err(|e| crate::keys::KeyError::Generate(e.to_string()))?;
    let not_after = crate::keys::trust::time_of(&cert.cert.tbs_certificate().validity().not_after);
    Ok(StoredCert {
        aor: aor.to_owned(),
        serial: hex::encode(cert.cert.tbs_certificate().serial_number().as_bytes()),
        sha256: hex::encode(sha2::Sha256::digest(&der)),
        not_after,
        issued,
        published: false,
        withdrawn: None,
        pem,
    })
}
