//! What the registrar does with certificates: open a body sealed for it,
//! issue from a CSR, check a certificate registered as it is, issue the
//! newest again on a refresh, and the certs-only body that answers with
//! one. [`for_binding`] and [`for_publication`] do all of it for a
//! request, in one call.

use der::Encode;
use time::OffsetDateTime;

use super::issuer::{IssueAsk, IssueError, Key};
use super::stop::{Stop, refuse};
use super::store::{StoredCert, StoredKey};
use super::{Registrar, RegistrarError};
use crate::context::Context;
use crate::envelope::signed::certs_only;
use crate::keys::Cert;
use crate::keys::generate::read_csr;
use crate::signing::SigningError;
use crate::sip::aor::{Aor, aor_key};
use crate::sip::compose::Body;
use crate::sip::{Answer, Message, Status};

/// What the body of a REGISTER or PUBLISH asks for.
enum BodyAsks {
    /// Nothing: a refresh (or a removal).
    Nothing,
    /// A certificate for the key of this request (PKCS#10).
    Csr(Vec<u8>),
    /// Storing this certificate (DER) as it is.
    Cert(Vec<u8>),
}

/// What the body asks for; a body of another type is a 415 that says
/// what the registrar takes.
fn body_asks(req: &Message) -> Result<BodyAsks, Stop> {
    if req.body().is_empty() {
        return Ok(BodyAsks::Nothing);
    }
    let unsupported = |why: String| {
        Stop::Refuse(Box::new(
            Answer::new(Status::UnsupportedMediaType)
                .with_header("Accept", "application/pkcs10, application/pkix-cert")
                .because(why),
        ))
    };
    let ct = req
        .content_type()
        .map_err(|e| unsupported(e.to_string()))?
        .ok_or_else(|| unsupported("a body without a Content-Type".into()))?;
    match ct.mime.as_str() {
        "application/pkcs10" => Ok(BodyAsks::Csr(req.body().to_vec())),
        "application/pkix-cert" => Ok(BodyAsks::Cert(req.body().to_vec())),
        other => Err(unsupported(format!(
            "a {other} body (the registrar takes application/pkcs10 or application/pkix-cert)"
        ))),
    }
}

/// What a request gets: a certificate checked as it was given, or one to
/// issue until a time.
enum Wanted {
    Given(Box<Cert>),
    /// A certificate for this key (the subject is the AOR's: L1), from
    /// the certificate request it came in, if any, valid until then.
    Issue(Key, Option<Vec<u8>>, OffsetDateTime),
}

/// A certificate issued or checked for a request: as stored, and the
/// certs-only body (it and the CA's) its 200 carries.
pub(super) struct Granted {
    pub stored: StoredCert,
    pub body: Body,
}

/// The certificate a REGISTER asks for as `aor` (an authenticated AOR):
/// `plain` is the request with its body opened when it came sealed
/// ([`super::sealed::open_register`]); issued from its CSR, checked as
/// given, or, on a `refresh` (no body, Contacts), the newest issued
/// again, bound `until`; `None` when it asks for none or is `removing`
/// its bindings. Everything is checked before anything is stored.
pub(super) fn for_binding(
    r: &Registrar<'_>,
    plain: &Message,
    aor: &Aor,
    removing: bool,
    refresh: bool,
    until: OffsetDateTime,
    ctx: &mut Context,
) -> Result<Option<Granted>, Stop> {
    let wanted = match body_asks(plain)? {
        _ if removing => return Ok(None),
        BodyAsks::Nothing if !refresh => return Ok(None),
        BodyAsks::Nothing => match newest(r, aor, ctx.now())? {
            Some(again) => Wanted::Issue(again, None, until),
            None => return Ok(None),
        },
        BodyAsks::Csr(bytes) => Wanted::Issue(from_csr(&bytes, aor)?, Some(bytes), until),
        BodyAsks::Cert(bytes) => {
            Wanted::Given(Box::new(check_given_cert(r, &bytes, aor, ctx.now())?))
        }
    };
    grant(r, wanted, aor, ctx).map(Some)
}

/// The certificate a PUBLISH of a CSR asks for as `aor`, valid `until`
/// (its body opened when sealed for the registrar); anything but a CSR is
/// a 415: a certificate or a bare key proves no possession of its key,
/// unless the channel does ([`for_owner_publication`]).
pub(super) fn for_publication(
    r: &Registrar<'_>,
    req: &Message,
    aor: &Aor,
    until: OffsetDateTime,
    ctx: &mut Context,
) -> Result<Granted, Stop> {
    let plain = unseal(r, req, ctx)?;
    let Ok(BodyAsks::Csr(bytes)) = body_asks(&plain) else {
        return Err(Stop::Refuse(Box::new(
            Answer::new(Status::UnsupportedMediaType)
                .with_header("Accept", "application/pkcs10")
                .because("a PUBLISH carries a certificate request (application/pkcs10: the key with its proof of possession); a certificate or a bare key only over mutual TLS with the AOR's own client certificate"),
        )));
    };
    let key = from_csr(&bytes, aor)?;
    let mut granted = grant(r, Wanted::Issue(key, Some(bytes), until), aor, ctx)?;
    granted.stored.published = true;
    Ok(granted)
}

/// The media type of a bare public key in a PUBLISH and in the answer to
/// `certquery --key`: a DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7; a
/// PEM `PUBLIC KEY` is read too). No registered type names one
/// (`application/pkcs8` is a private key's), hence a private one.
pub const SPKI_TYPE: &str = "application/x-sipseal-spki";

/// What a PUBLISH from the AOR's owner (over mutual TLS, its client
/// certificate naming the AOR: the channel stands in for proof of
/// possession, issue 28) gets, valid `until`: a CSR as any PUBLISH; a
/// certificate (`application/pkix-cert`) naming the AOR and valid now,
/// registered as it is when it chains to the registrar's CA, else
/// issued again by the CA for the same key; a bare key ([`SPKI_TYPE`])
/// certified, and kept as it came (the second value) for `certquery
/// --key`.
pub(super) fn for_owner_publication(
    r: &Registrar<'_>,
    req: &Message,
    aor: &Aor,
    until: OffsetDateTime,
    ctx: &mut Context,
) -> Result<(Granted, Option<StoredKey>), Stop> {
    let plain = unseal(r, req, ctx)?;
    let accept = format!("application/pkcs10, application/pkix-cert, {SPKI_TYPE}");
    let unsupported = |why: String| {
        Stop::Refuse(Box::new(
            Answer::new(Status::UnsupportedMediaType)
                .with_header("Accept", accept.clone())
                .because(why),
        ))
    };
    let mime = match plain.content_type() {
        _ if plain.body().is_empty() => {
            return Err(unsupported("a PUBLISH without a body".into()));
        }
        Ok(Some(ct)) => ct.mime,
        Ok(None) => return Err(unsupported("a body without a Content-Type".into())),
        Err(e) => return Err(unsupported(e.to_string())),
    };
    let bytes = plain.body();
    if bytes.len() > MAX_CSR {
        return Err(refuse(
            Status::BadRequest,
            format!("the PUBLISH body is over {MAX_CSR} bytes"),
        ));
    }
    let (wanted, key) = match mime.as_str() {
        "application/pkcs10" => (
            Wanted::Issue(from_csr(bytes, aor)?, Some(bytes.to_vec()), until),
            None,
        ),
        "application/pkix-cert" => {
            let der = pem_or_der(bytes, "CERTIFICATE");
            let cert = Cert::from_der(&der, "the PUBLISH body")
                .map_err(|e| refuse(Status::BadRequest, e.to_string()))?;
            if !cert_names(&cert, aor) {
                return Err(refuse(
                    Status::Forbidden,
                    format!("the certificate names {}, not {aor}", cert.name()),
                ));
            }
            crate::keys::trust::check_validity(&cert, ctx.now())
                .map_err(|e| refuse(Status::Forbidden, e.to_string()))?;
            let anchor = Cert {
                cert: r.ca.ca_cert().clone(),
                source: "the CA".into(),
            };
            if crate::keys::trust::check_chain(&cert, &[], &[anchor]).is_ok() {
                // Not one this registrar withdrew: a query would hand out
                // a certificate its CRL lists.
                if r.withdrawn(&aor.text, &[&cert])? {
                    return Err(Stop::Refuse(Box::new(
                        Answer::new(Status::Forbidden)
                            .with_warning(
                                "registrar",
                                "this certificate was withdrawn: publish a CSR or the bare key to have a new one issued",
                            )
                            .because(format!("a withdrawn certificate of {aor} published again")),
                    )));
                }
                (Wanted::Given(Box::new(cert)), None)
            } else {
                let spki = cert
                    .cert
                    .tbs_certificate()
                    .subject_public_key_info()
                    .clone();
                check_key(&spki)?;
                (Wanted::Issue(spki, None, until), None)
            }
        }
        SPKI_TYPE => {
            let der = pem_or_der(bytes, "PUBLIC KEY");
            let spki = <Key as der::Decode>::from_der(&der).map_err(|e| {
                refuse(
                    Status::BadRequest,
                    format!("the body is not a SubjectPublicKeyInfo ({e})"),
                )
            })?;
            check_key(&spki)?;
            let stored = stored_key(&spki, aor, until)?;
            (Wanted::Issue(spki, None, until), Some(stored))
        }
        other => {
            return Err(unsupported(format!(
                "a {other} body (a PUBLISH takes a CSR, a certificate or a bare key)"
            )));
        }
    };
    let mut granted = grant(r, wanted, aor, ctx)?;
    granted.stored.published = true;
    Ok((granted, key))
}

/// The DER of a PEM block with `label`, or the bytes as they are.
fn pem_or_der(bytes: &[u8], label: &str) -> Vec<u8> {
    match std::str::from_utf8(bytes)
        .ok()
        .map(|t| der::pem::decode_vec(t.trim().as_bytes()))
    {
        Some(Ok((l, der))) if l == label => der,
        _ => bytes.to_vec(),
    }
}

/// Whether `cert` names `aor`: its SAN URI, else (no SAN URI) its CN, as
/// a CSR's names are read.
fn cert_names(cert: &Cert, aor: &Aor) -> bool {
    match cert.uri() {
        Some(u) => aor_key(&u) == aor.key,
        None => cn_names(&cert.subject(), aor),
    }
}

/// Whether a subject's CN is `aor` (with or without `sip:`).
fn cn_names(subject: &str, aor: &Aor) -> bool {
    subject.split(',').any(|rdn| {
        rdn.trim()
            .strip_prefix("CN=")
            .is_some_and(|cn| aor_key(cn) == aor.key || aor_key(&format!("sip:{cn}")) == aor.key)
    })
}

/// What the store keeps of a bare key `aor` published until `until`.
fn stored_key(spki: &Key, aor: &Aor, until: OffsetDateTime) -> Result<StoredKey, Stop> {
    use der::EncodePem;
    use sha2::Digest;
    let failed =
        |e: der::Error| Stop::Failed(crate::keys::KeyError::Generate(e.to_string()).into());
    let der = spki.to_der().map_err(failed)?;
    let pem = spki.to_pem(der::pem::LineEnding::LF).map_err(failed)?;
    Ok(StoredKey {
        aor: aor.text.clone(),
        sha256: hex::encode(sha2::Sha256::digest(&der)),
        expires: until,
        pem,
    })
}

/// The certificate `wanted`, issued or as given: as stored, and the
/// certs-only body that answers with it.
fn grant(r: &Registrar<'_>, wanted: Wanted, aor: &Aor, ctx: &mut Context) -> Result<Granted, Stop> {
    let (cert, issued) = match wanted {
        Wanted::Given(cert) => (*cert, false),
        Wanted::Issue(key, csr, until) => (issue(r, &key, csr.as_deref(), aor, until, ctx)?, true),
    };
    let stored = stored_cert(&cert, aor, issued)?;
    let chain = [
        cert,
        Cert {
            cert: r.ca.ca_cert().clone(),
            source: "the CA".into(),
        },
    ];
    let body = Body {
        content_type: "application/pkcs7-mime; smime-type=certs-only; name=smime.p7c".into(),
        bytes: certs_only(&chain).map_err(|e| Stop::Failed(SigningError::from(e).into()))?,
    };
    Ok(Granted { stored, body })
}

/// The request with its body opened when it came sealed for the
/// registrar (docs/SPEC.md §6: a CSR sealed to the registrar's certificate),
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

/// The key of the AOR's newest certificate issued here (valid, not
/// withdrawn): what a refresh certifies again; `None` when there is none.
fn newest(r: &Registrar<'_>, aor: &Aor, now: OffsetDateTime) -> Result<Option<Key>, Stop> {
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
        .map_err(|e| RegistrarError::from(crate::keys::KeyError::Generate(e.to_string())))?;
    let old = Cert::from_der(&der, "the registry").map_err(RegistrarError::from)?;
    Ok(Some(
        old.cert.tbs_certificate().subject_public_key_info().clone(),
    ))
}

/// The key of a PKCS#10 request, checked: its signature verifies with
/// its key (proof of possession), it names `aor` (SAN URI, else CN), its
/// key is RSA of 2048 bits or more or EC P-256.
pub(super) fn from_csr(bytes: &[u8], aor: &Aor) -> Result<Key, Stop> {
    // H4: a request is a key and a name or two; thousands of attributes
    // only make every answer that carries the certificate larger.
    if bytes.len() > MAX_CSR {
        return Err(refuse(
            Status::BadRequest,
            format!("the certificate request is over {MAX_CSR} bytes"),
        ));
    }
    let req = read_csr(bytes, std::path::Path::new("the REGISTER body"))
        .map_err(|e| refuse(Status::BadRequest, e.to_string()))?;
    let cn_names_aor = req.subject.to_string().split(',').any(|rdn| {
        rdn.trim()
            .strip_prefix("CN=")
            .is_some_and(|cn| aor_key(&format!("sip:{cn}")) == aor.key)
    });
    let names_aor = if req.uris.is_empty() {
        cn_names_aor
    } else {
        req.uris.iter().any(|u| aor_key(u) == aor.key)
    };
    if !names_aor {
        return Err(refuse(
            Status::Forbidden,
            format!("the request names {:?}, not {aor}", req.uris),
        ));
    }
    check_key(&req.spki)?;
    // L1: the subject is the registrar's to say (CN= the AOR, set at
    // issue), not copied from the request (an O= or a server's name
    // would come out signed).
    Ok(req.spki)
}

/// A key the CA certifies: RSA of 2048 to [`MAX_RSA_BITS`] bits, or EC
/// P-256 (a 400 otherwise).
pub(super) fn check_key(spki: &Key) -> Result<(), Stop> {
    let key_ok = match spki.algorithm.oid {
        const_oid::db::rfc5912::ID_EC_PUBLIC_KEY => {
            use p256::pkcs8::DecodePublicKey;
            spki.to_der()
                .ok()
                .is_some_and(|d| p256::PublicKey::from_public_key_der(&d).is_ok())
        }
        const_oid::db::rfc5912::RSA_ENCRYPTION => {
            use rsa::pkcs8::DecodePublicKey;
            use rsa::traits::PublicKeyParts;
            spki.to_der()
                .ok()
                .and_then(|d| rsa::RsaPublicKey::from_public_key_der(&d).ok())
                .is_some_and(|k| (2048..=MAX_RSA_BITS).contains(&k.n().bits()))
        }
        _ => false,
    };
    if !key_ok {
        return Err(refuse(
            Status::BadRequest,
            "the key is not RSA of 2048 to 4096 bits, nor EC P-256",
        ));
    }
    Ok(())
}

/// The largest certificate request taken, in bytes (DER or PEM).
pub const MAX_CSR: usize = 8 * 1024;

/// The largest RSA key certified, in bits: a larger one costs every
/// peer that verifies or seals to it, and buys nothing.
pub const MAX_RSA_BITS: u32 = 4096;

/// A certificate for `key` naming `aor` (subject and subjectAltName),
/// from the registrar's CA (its own, or a remote `sipseal ca`), valid
/// until `until`. A remote CA that cannot be reached is a 503 the client
/// may retry after a while; one that refuses, a 500 (a configuration
/// the operator must mend); why, for the operator only.
fn issue(
    r: &Registrar<'_>,
    key: &Key,
    csr: Option<&[u8]>,
    aor: &Aor,
    until: OffsetDateTime,
    ctx: &mut Context,
) -> Result<Cert, Stop> {
    let ask = IssueAsk {
        aor,
        key,
        csr,
        until,
    };
    match r.ca.issue(&ask, ctx) {
        Ok(cert) => Ok(Cert {
            cert,
            source: "issued".into(),
        }),
        Err(IssueError::Key(e)) => Err(Stop::Failed(RegistrarError::Key(e))),
        Err(e @ IssueError::Unreachable { .. }) => Err(Stop::Refuse(Box::new(
            Answer::new(Status::ServiceUnavailable)
                .with_header("Retry-After", "30")
                .because(e.to_string()),
        ))),
        Err(e @ IssueError::Refused { .. }) => Err(refuse(Status::ServerError, e.to_string())),
    }
}

/// Check a certificate registered as it is: it chains to the CA, is
/// valid now, and names `aor`.
fn check_given_cert(
    r: &Registrar<'_>,
    der: &[u8],
    aor: &Aor,
    now: OffsetDateTime,
) -> Result<Cert, Stop> {
    let cert = Cert::from_der(der, "the REGISTER body")
        .map_err(|e| refuse(Status::BadRequest, e.to_string()))?;
    let anchor = Cert {
        cert: r.ca.ca_cert().clone(),
        source: "the CA".into(),
    };
    crate::keys::trust::check_chain(&cert, &[], &[anchor])
        .map_err(|e| refuse(Status::Forbidden, e.to_string()))?;
    crate::keys::trust::check_validity(&cert, now)
        .map_err(|e| refuse(Status::Forbidden, e.to_string()))?;
    if cert.uri().is_none_or(|u| aor_key(&u) != aor.key) {
        return Err(refuse(
            Status::Forbidden,
            format!("the certificate names {}, not {aor}", cert.name()),
        ));
    }
    Ok(cert)
}

/// What the store keeps of a certificate issued here (`issued`) or
/// registered as it came, for `aor`.
fn stored_cert(cert: &Cert, aor: &Aor, issued: bool) -> Result<StoredCert, RegistrarError> {
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
        aor: aor.text.clone(),
        serial: hex::encode(cert.cert.tbs_certificate().serial_number().as_bytes()),
        sha256: hex::encode(sha2::Sha256::digest(&der)),
        not_after,
        issued,
        published: false,
        withdrawn: None,
        pem,
    })
}
