//! The asking side of a certificate query (docs/SPEC.md §6, issue 28):
//! the OPTIONS for an AOR ([`request`]), and the registrar's answer
//! checked ([`accept`]): outer-signed by a registrar chaining to the trust
//! anchors, its `Contact` and `Expires` as signed, and the certificate
//! (chaining to the anchors, valid now, its SAN URI the AOR asked about)
//! or the bare key it carries. `sipseal registrar certquery` and the
//! gateway's dialer (a typed destination) both use it.

use time::OffsetDateTime;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use super::enrol::signed_by_registrar;
use super::{ANSWER_COVERS, CERT_QUERY, SIGNED_QUERY_TYPE, SPKI_TYPE};
use crate::context::Context;
use crate::envelope::signed::SignatureScheme;
use crate::keys::trust::{check_chain, check_validity};
use crate::keys::{Cert, Identity, KeyError};
use crate::signing::{SigningError, sign_message};
use crate::sip::Message;
use crate::sip::aor::same_aor;
use crate::sip::compose::{Body, ComposeError, RequestParams, build_request};

/// What a query asks.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The address of record asked about (To and Request-URI).
    pub aor: String,
    /// Who asks (From); `None`: the signer's AOR, else anonymous.
    pub from: Option<String>,
    /// Ask whether the certificate of this SHA-256 fingerprint is still
    /// current (`Certificate-Query: sha-256 HEX`).
    pub fingerprint: Option<[u8; 32]>,
    /// Ask for the bare key (a trusted requester only).
    pub key: bool,
}

/// Why no query could be built, or an answer gives nothing to use.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The signer's certificate names no SIP URI and no From was given.
    #[error("the signing identity's certificate names no SIP URI")]
    NoFrom,
    /// The request cannot be built.
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The request cannot be signed.
    #[error(transparent)]
    Sign(#[from] SigningError),
    /// 404: the registrar has no current certificate for the AOR (or
    /// will not say: unknown, expired, withdrawn and denied look alike).
    #[error("404: the registrar has no current certificate for {0}")]
    NotFound(String),
    /// Another final refusal (495 unsigned, 403, 504 another domain's
    /// registrar silent, ...), with its Warning.
    #[error("{code}: the registrar refused the query{}", warning.as_ref().map(|w| format!(" ({w})")).unwrap_or_default())]
    Refused {
        /// The status.
        code: u16,
        /// Its Warning header, when there is one.
        warning: Option<String>,
    },
    /// Not a final answer to a query (a request, a 1xx, a 3xx).
    #[error("a {0:?} response, not 200 or 404")]
    NotAnAnswer(Option<u16>),
    /// A 200 without a body (over UDP the registrar leaves out a large one).
    #[error("a 200 without its body (the certificate)")]
    NoBody,
    /// Not signed by a registrar the anchors trust.
    #[error("{0}")]
    Unsigned(String),
    /// A covered header differs from what the registrar signed.
    #[error("the answer's {0} is not what the registrar signed")]
    NotAsSigned(&'static str),
    /// The certificate (or key) is not one to use for the AOR.
    #[error("{0}")]
    Certificate(String),
    /// The certificate does not read.
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl AskError {
    /// The SIP status an answer that gives nothing stands for: the
    /// registrar's own for its refusals, 502 (Bad Gateway) for an answer
    /// that does not check out, 500 for a request that could not be made.
    pub fn status(&self) -> u16 {
        match self {
            AskError::NotFound(_) => 404,
            AskError::Refused { code, .. } => *code,
            AskError::NoFrom | AskError::Compose(_) | AskError::Sign(_) => 500,
            _ => 502,
        }
    }
}

/// The OPTIONS asking `q`, signed by `signer` when given (the outer
/// signature over a body repeating `Accept` and `Certificate-Query`,
/// so that the registrar sees who asks and what).
pub fn request(
    q: &Query,
    signer: Option<&Identity>,
    ctx: &mut Context,
) -> Result<Message, AskError> {
    let accept = if q.key {
        SPKI_TYPE
    } else {
        "application/pkix-cert"
    };
    let mut headers = vec![("Accept".to_owned(), accept.to_owned())];
    if let Some(fp) = &q.fingerprint {
        headers.push((
            CERT_QUERY.to_owned(),
            format!("sha-256 {}", hex::encode(fp)),
        ));
    }
    let from = match (&q.from, signer) {
        (Some(from), _) => from.clone(),
        (None, Some(id)) => id.uri().map(str::to_owned).ok_or(AskError::NoFrom)?,
        (None, None) => "\"Anonymous\" <sip:anonymous@anonymous.invalid>".into(),
    };
    // Signed: the body repeats the question, so the signature covers it.
    let body = signer.map(|_| {
        let mut frag = String::new();
        for (name, value) in &headers {
            frag.push_str(&format!("{name}: {value}\r\n"));
        }
        Body {
            content_type: SIGNED_QUERY_TYPE.into(),
            bytes: frag.into_bytes(),
        }
    });
    let params = RequestParams {
        method: "OPTIONS".into(),
        from,
        to: q.aor.clone(),
        request_uri: Some(q.aor.clone()),
        headers,
        body,
        ..Default::default()
    };
    let msg = build_request(&params, ctx)?;
    Ok(match signer {
        Some(id) => sign_message(&msg, id, SignatureScheme::Pkcs1v15, &[], ctx)?,
        None => msg,
    })
}

/// What a 200 carries.
#[derive(Debug, Clone)]
pub enum Found {
    /// The AOR's current certificate.
    Cert(Box<Cert>),
    /// Its bare key (to a trusted requester that asked for it).
    Key(Box<SubjectPublicKeyInfoOwned>),
}

/// A registrar's answer, checked.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The certificate or key.
    pub found: Found,
    /// The AOR's bindings (`Contact`), as the registrar signed them.
    pub contacts: Vec<String>,
    /// The seconds its registration (or publication) has left, as signed.
    pub expires: Option<u32>,
}

/// The registrar's answer `response` to a query for `aor`, checked:
/// 404 and other refusals as such; a 200 outer-signed by a registrar
/// chaining to `anchors`, its `Contact` and `Expires` the signed ones,
/// carrying a bare key, or a certificate that chains to `anchors`, is
/// valid at `now` and names `aor` (its SAN URI, the same AOR).
pub fn accept(
    response: &Message,
    aor: &str,
    anchors: &[Cert],
    now: OffsetDateTime,
) -> Result<Answer, AskError> {
    match response.status() {
        Some(200) => {}
        Some(404) => return Err(AskError::NotFound(aor.to_owned())),
        Some(code @ 400..=699) => {
            return Err(AskError::Refused {
                code,
                warning: response.header("Warning").map(|w| w.trim().to_owned()),
            });
        }
        other => return Err(AskError::NotAnAnswer(other)),
    }
    if response.body().is_empty() {
        return Err(AskError::NoBody);
    }
    let outer =
        signed_by_registrar(response, anchors).map_err(|e| AskError::Unsigned(e.to_string()))?;
    // Where the AOR is and until when: the registrar signs them too (in
    // its sipfrag); taken only as signed.
    for name in ANSWER_COVERS {
        let sent: Vec<String> = response
            .header_list(name)
            .iter()
            .map(|v| v.trim().to_owned())
            .collect();
        if sent != outer.sipfrag_list(name) {
            return Err(AskError::NotAsSigned(name));
        }
    }
    let contacts = response
        .header_list("Contact")
        .iter()
        .map(|c| c.trim().to_owned())
        .collect();
    let expires = response
        .header("Expires")
        .and_then(|e| e.trim().parse().ok());
    let found = if outer.payload.is(SPKI_TYPE) {
        let spki = <SubjectPublicKeyInfoOwned as der::Decode>::from_der(&outer.payload.body)
            .map_err(|e| AskError::Certificate(format!("the key does not read: {e}")))?;
        Found::Key(Box::new(spki))
    } else {
        let cert = Cert::from_der(&outer.payload.body, "the registrar's answer")?;
        let bad = |e: String| AskError::Certificate(format!("the certificate: {e}"));
        check_chain(&cert, &[], anchors).map_err(|e| bad(e.to_string()))?;
        check_validity(&cert, now).map_err(|e| bad(e.to_string()))?;
        if !cert.uri().is_some_and(|u| same_aor(&u, aor)) {
            return Err(AskError::Certificate(format!(
                "the certificate names {}, not {aor}",
                cert.name()
            )));
        }
        Found::Cert(Box::new(cert))
    };
    Ok(Answer {
        found,
        contacts,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::signing::sign_message_covering;
    use crate::sip::{Answer as SipAnswer, Status, respond};

    const BOB: &str = "sip:bob@b.example.com";

    fn keys(p: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("keys").join(p)
    }

    fn anchors() -> Vec<Cert> {
        Cert::load_all(&keys("trust.pem")).unwrap()
    }

    /// A 200 to a query for `aor` carrying `cert`'s certificate, signed
    /// (as the registrar signs it) by `signer` when given.
    fn answer(aor: &str, cert: &str, signer: Option<&str>, contact: Option<&str>) -> Message {
        let mut ctx = Context::new(None, None);
        let q = Query {
            aor: aor.into(),
            ..Query::default()
        };
        let req = request(&q, None, &mut ctx).unwrap();
        let der =
            der::Encode::to_der(&Cert::load(&keys(cert).join("cert.pem")).unwrap().cert).unwrap();
        let mut a = SipAnswer::new(Status::Ok).with_body(Body {
            content_type: "application/pkix-cert".into(),
            bytes: der,
        });
        if let Some(c) = contact {
            a = a.with_header("Contact", c);
        }
        let resp = respond(&req, &a, &mut ctx).unwrap().unwrap();
        match signer {
            Some(s) => {
                let id = Identity::load_dir(&keys(s)).unwrap();
                sign_message_covering(
                    &resp,
                    &id,
                    SignatureScheme::Pkcs1v15,
                    &[],
                    &ANSWER_COVERS,
                    &mut ctx,
                )
                .unwrap()
            }
            None => resp,
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn a_signed_answer_naming_the_aor_gives_its_certificate() {
        let r = answer(
            BOB,
            "bob",
            Some("proxy-a"),
            Some("<sip:bob@192.0.2.1>;expires=60"),
        );
        let a = accept(&r, BOB, &anchors(), now()).unwrap();
        assert!(matches!(&a.found, Found::Cert(c) if c.uri().as_deref() == Some(BOB)));
        assert_eq!(a.contacts, ["<sip:bob@192.0.2.1>;expires=60"]);
    }

    #[test]
    fn an_unsigned_answer_is_refused() {
        let r = answer(BOB, "bob", None, None);
        let e = accept(&r, BOB, &anchors(), now()).unwrap_err();
        assert!(matches!(e, AskError::Unsigned(_)), "{e}");
        assert_eq!(e.status(), 502);
    }

    #[test]
    fn a_signer_outside_the_anchors_is_refused() {
        let r = answer(BOB, "bob", Some("proxy-a"), None);
        let other = Cert::load_all(&keys("alice/cert.pem")).unwrap();
        let e = accept(&r, BOB, &other, now()).unwrap_err();
        assert!(matches!(e, AskError::Unsigned(_)), "{e}");
    }

    #[test]
    fn a_certificate_of_another_aor_is_refused() {
        let r = answer(BOB, "alice", Some("proxy-a"), None);
        let e = accept(&r, BOB, &anchors(), now()).unwrap_err();
        assert!(
            matches!(&e, AskError::Certificate(w) if w.contains("not sip:bob@b.example.com")),
            "{e}"
        );
    }

    #[test]
    fn a_contact_added_after_the_signature_is_refused() {
        let r = answer(BOB, "bob", Some("proxy-a"), None);
        let mut bytes = r.to_bytes();
        let at = bytes
            .windows(14)
            .position(|w| w == b"\r\nContent-Type")
            .unwrap();
        bytes.splice(
            at..at,
            b"\r\nContact: <sip:mallory@192.0.2.66>".iter().copied(),
        );
        let r = Message::parse(&bytes).unwrap();
        let e = accept(&r, BOB, &anchors(), now()).unwrap_err();
        assert!(matches!(e, AskError::NotAsSigned("Contact")), "{e}");
    }

    #[test]
    fn refusals_keep_their_status_and_warning() {
        let mut ctx = Context::new(None, None);
        let q = Query {
            aor: BOB.into(),
            ..Query::default()
        };
        let req = request(&q, None, &mut ctx).unwrap();
        let nf = respond(&req, &SipAnswer::new(Status::NotFound), &mut ctx)
            .unwrap()
            .unwrap();
        let e = accept(&nf, BOB, &anchors(), now()).unwrap_err();
        assert!(matches!(e, AskError::NotFound(_)), "{e}");
        assert_eq!(e.status(), 404);
        let sr = respond(
            &req,
            &SipAnswer::new(Status::SignatureRequired).with_warning("registrar", "sign it"),
            &mut ctx,
        )
        .unwrap()
        .unwrap();
        let e = accept(&sr, BOB, &anchors(), now()).unwrap_err();
        assert_eq!(e.status(), 495);
        assert!(e.to_string().contains("sign it"), "{e}");
    }

    #[test]
    fn a_signed_query_repeats_its_question_in_the_signed_body() {
        let mut ctx = Context::new(None, None);
        let alice = Identity::load_dir(&keys("alice")).unwrap();
        let q = Query {
            aor: BOB.into(),
            ..Query::default()
        };
        let req = request(&q, Some(&alice), &mut ctx).unwrap();
        assert_eq!(req.aor("From"), Some("sip:alice@a.example.com"));
        assert_eq!(
            req.header("Accept").map(str::trim),
            Some("application/pkix-cert")
        );
        let outer = crate::signing::outer_signature(&req).unwrap().unwrap();
        assert!(outer.payload.is(SIGNED_QUERY_TYPE));
        outer.verify().unwrap();
    }
}
