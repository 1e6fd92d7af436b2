//! Signatures on SIP messages (docs/SPEC.md §3.3).
//!
//! **Outer** signature: the body becomes
//!
//! ```text
//! Content-Type: multipart/signed; protocol="application/pkcs7-signature";
//!               micalg=sha-256; boundary=OUTER
//!
//! --OUTER
//! Content-Type: multipart/mixed; boundary=INNER      <- signed (RFC 1847)
//!
//! --INNER
//! Content-Type: message/sipfrag                      <- protected headers
//!
//! From: ... / To: ... / Call-ID: ... / CSeq: ... / Date: ...
//! Proxy-Inspect-Body: ...                            (each entry)
//! Original-Proxy-Inspect-Body: ...                   (relay re-signature)
//! --INNER
//! Content-Type: application/pkcs7-mime; ...          <- the body as it was
//!
//! <DER>
//! --INNER--
//! --OUTER
//! Content-Type: application/pkcs7-signature; name=smime.p7s
//!
//! <detached SignedData over the multipart/mixed entity>
//! --OUTER--
//! ```
//!
//! A relay that re-seals (`reencrypt`, `proxy --edit`) signs its output
//! with its own identity and copies the designations of the UA-signed
//! original into `Original-Proxy-Inspect-Body` lines of its sipfrag, so a
//! receiver can check that the relay was allowed to modify.
//!
//! **Inner** signature (sign-then-encrypt): the plaintext MIME entity is
//! wrapped in an opaque SignedData (`smime-type=signed-data`) before it is
//! sealed; see [`sign_entity`] and [`unwrap_inner`].

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::context::Context;
use crate::envelope::signed::{self, SignatureError, SignatureScheme, Signed, Signer};
use crate::error::ErrorClass;
use crate::keys::Identity;
use crate::mime::{Entity, MimeError, Part, body_of};
use crate::sip::disclosure::PROXY_INSPECT_BODY;
use crate::sip::headers::parse_content_type;
use crate::sip::{HeaderError, Message};

/// The headers an outer signature protects, besides every `Proxy-Inspect-Body`.
pub const PROTECTED: [&str; 5] = ["From", "To", "Call-ID", "CSeq", "Date"];

/// In a relay's sipfrag: a designation made by the UA-signed original.
pub const ORIGINAL_DESIGNATION: &str = "Original-Proxy-Inspect-Body";

/// Problems signing a message or reading its signature.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("the message has no body to sign")]
    /// There is no body to sign.
    NoBody,
    #[error("the message is already signed (multipart/signed)")]
    /// The body is signed already.
    AlreadySigned,
    #[error("the message has no {0} header to protect")]
    /// A header the signature protects is missing.
    Missing(&'static str),
    #[error(transparent)]
    /// A header that does not parse.
    Header(#[from] HeaderError),
    #[error("the body is not well-formed MIME: {0}")]
    /// The body is not well-formed MIME.
    Mime(#[from] MimeError),
    #[error("malformed multipart/signed body: {0}")]
    /// A multipart/signed that is not a signed entity and a signature.
    Malformed(String),
    #[error(transparent)]
    /// The SignedData cannot be made or read.
    Signature(#[from] SignatureError),
}

impl SigningError {
    /// What kind of failure it is: a message that cannot be signed, or a
    /// key that cannot sign, is configuration; a signature that does not
    /// read failed.
    pub fn class(&self) -> ErrorClass {
        match self {
            SigningError::Signature(e) => e.class(),
            SigningError::NoBody | SigningError::AlreadySigned | SigningError::Missing(_) => {
                ErrorClass::Config
            }
            _ => ErrorClass::Failed,
        }
    }
}

/// The outer signature of a message, taken apart.
#[derive(Debug, Clone)]
pub struct OuterSignature {
    /// The signed entity's exact bytes (the first part of multipart/signed).
    pub signed: Vec<u8>,
    /// The detached SignedData (DER).
    pub signature: Vec<u8>,
    /// The protected headers from the `message/sipfrag`, in order; `None`
    /// when the signed entity has no sipfrag (only the body is signed).
    pub sipfrag: Option<Vec<(String, String)>>,
    /// The body that was signed (the part beside the sipfrag).
    pub payload: Part,
}

impl OuterSignature {
    /// Values of a sipfrag header (comma-separated lists split), in order.
    pub fn sipfrag_list(&self, name: &str) -> Vec<String> {
        self.sipfrag
            .iter()
            .flatten()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| crate::sip::headers::split_list(v))
            .map(|v| v.trim().to_owned())
            .collect()
    }

    /// A sipfrag header's value.
    pub fn sipfrag_header(&self, name: &str) -> Option<&str> {
        self.sipfrag
            .iter()
            .flatten()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The designations made by the UA-signed original: the
    /// `Original-Proxy-Inspect-Body` lines of a relay re-signature, else
    /// this signature's own `Proxy-Inspect-Body` lines.
    pub fn original_designations(&self) -> Vec<String> {
        let carried = self.sipfrag_list(ORIGINAL_DESIGNATION);
        if carried.is_empty() {
            self.sipfrag_list(PROXY_INSPECT_BODY)
        } else {
            carried
        }
    }

    /// Parse and verify the signature (cryptography only, no trust).
    pub fn verify(&self) -> Result<Vec<Signer>, SignatureError> {
        Signed::parse(&self.signature)?.verify(Some(&self.signed))
    }
}

fn is_signed(msg: &Message) -> bool {
    // Every open and relay step asks this: skip the full parse unless the
    // type can be multipart/... at all.
    msg.header("Content-Type")
        .filter(|v| {
            v.trim_start()
                .as_bytes()
                .first()
                .is_some_and(|b| b.eq_ignore_ascii_case(&b'm'))
        })
        .and_then(|v| parse_content_type(v).ok())
        .is_some_and(|c| c.is("multipart/signed"))
}

/// The outer signature, when the body is `multipart/signed`.
pub fn outer_signature(msg: &Message) -> Result<Option<OuterSignature>, SigningError> {
    if !is_signed(msg) {
        return Ok(None);
    }
    let body = body_of(msg)?.ok_or(SigningError::NoBody)?;
    let [signed, sig] = body.parts.as_slice() else {
        return Err(SigningError::Malformed(format!(
            "{} parts (expected the signed entity and the signature)",
            body.parts.len()
        )));
    };
    if !(sig.is("application/pkcs7-signature") || sig.is("application/x-pkcs7-signature")) {
        return Err(SigningError::Malformed(
            "the second part is not application/pkcs7-signature".into(),
        ));
    }
    let (sipfrag, payload) = if signed.is("multipart/mixed") {
        let frag = signed.parts.iter().find(|p| p.is("message/sipfrag"));
        let payload = signed
            .parts
            .iter()
            .find(|p| !p.is("message/sipfrag"))
            .ok_or_else(|| {
                SigningError::Malformed("the signed multipart has no body part".into())
            })?;
        (frag.map(|f| sipfrag_headers(&f.body)), payload.clone())
    } else {
        (None, signed.clone())
    };
    Ok(Some(OuterSignature {
        signed: signed.raw.clone(),
        signature: sig.body.clone(),
        sipfrag,
        payload,
    }))
}

/// The header lines of a sipfrag (RFC 3420; folded lines joined).
fn sipfrag_headers(body: &[u8]) -> Vec<(String, String)> {
    match mailparse::parse_headers(body) {
        Ok((hs, _)) => hs.iter().map(|h| (h.get_key(), h.get_value())).collect(),
        Err(_) => Vec::new(),
    }
}

/// The message as it was before the outer signature: the signed body part
/// and its headers back in place of the multipart/signed. `None` when the
/// message has no outer signature.
pub fn peel(msg: &Message) -> Result<Option<Message>, SigningError> {
    let Some(outer) = outer_signature(msg)? else {
        return Ok(None);
    };
    let mut out = msg.clone();
    out.replace_body(&outer.payload.headers, outer.payload.body);
    Ok(Some(out))
}

/// The Date header value for `now` (RFC 3261 §20.17: RFC 1123, GMT).
pub fn sip_date(now: OffsetDateTime) -> String {
    let s = now
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc2822)
        .unwrap_or_default();
    // RFC 2822 writes "+0000"; SIP wants "GMT".
    match s.strip_suffix("+0000") {
        Some(head) => format!("{head}GMT"),
        None => s,
    }
}

/// A Date header value read back ([`sip_date`]'s form: RFC 1123 with
/// `GMT`, or a numeric zone); `None` when it is not one.
pub fn parse_sip_date(value: &str) -> Option<OffsetDateTime> {
    let v = value.trim();
    let v = match v.strip_suffix("GMT").or_else(|| v.strip_suffix("UT")) {
        Some(head) => format!("{head}+0000"),
        None => v.to_owned(),
    };
    OffsetDateTime::parse(&v, &Rfc2822).ok()
}

/// Sign `msg` with `identity` (docs/SPEC.md §3.3): the outer signature over a
/// sipfrag of the protected headers and the body. A Date header is added
/// when absent. `original` are the designations of the UA-signed original
/// (a relay re-signature); empty for a UA.
pub fn sign_message(
    msg: &Message,
    identity: &Identity,
    scheme: SignatureScheme,
    original: &[String],
    ctx: &mut Context,
) -> Result<Message, SigningError> {
    sign_message_covering(msg, identity, scheme, original, &[], ctx)
}

/// [`sign_message`], the sipfrag also holding each line of the headers
/// named in `also` that the message has (a registrar's answer to a
/// certificate query protects its `Contact` and `Expires` so, issue 28);
/// a verifier reads them with [`OuterSignature::sipfrag_list`].
pub fn sign_message_covering(
    msg: &Message,
    identity: &Identity,
    scheme: SignatureScheme,
    original: &[String],
    also: &[&str],
    ctx: &mut Context,
) -> Result<Message, SigningError> {
    if msg.body().is_empty() {
        return Err(SigningError::NoBody);
    }
    if is_signed(msg) {
        return Err(SigningError::AlreadySigned);
    }
    let mut msg = msg.clone();
    if msg.header("Date").is_none() {
        let date = sip_date(ctx.now());
        let at = msg.before_body_headers();
        msg.insert_header(at, "Date", &date);
    }
    let mut frag = Vec::new();
    for name in PROTECTED {
        let v = msg.header(name).ok_or(SigningError::Missing(name))?;
        frag.extend_from_slice(format!("{name}: {v}\r\n").as_bytes());
    }
    for v in msg.header_list(PROXY_INSPECT_BODY) {
        frag.extend_from_slice(format!("{PROXY_INSPECT_BODY}: {}\r\n", v.trim()).as_bytes());
    }
    for v in original {
        frag.extend_from_slice(format!("{ORIGINAL_DESIGNATION}: {v}\r\n").as_bytes());
    }
    for name in also {
        for v in msg.header_values(name) {
            frag.extend_from_slice(format!("{name}: {}\r\n", v.trim()).as_bytes());
        }
    }
    // The body part: the body headers (Content-Type first) and the body.
    let payload = Entity::of_message(&msg)
        .ok_or(SigningError::Missing("Content-Type"))?
        .to_bytes();

    let inner_b = boundary(ctx, &[&frag, &payload]);
    let mut mixed = Vec::with_capacity(payload.len() + frag.len() + 256);
    mixed.extend_from_slice(
        format!("Content-Type: multipart/mixed;boundary={inner_b}\r\n\r\n").as_bytes(),
    );
    mixed.extend_from_slice(
        format!("--{inner_b}\r\nContent-Type: message/sipfrag\r\n\r\n").as_bytes(),
    );
    mixed.extend_from_slice(&frag);
    mixed.extend_from_slice(format!("\r\n--{inner_b}\r\n").as_bytes());
    mixed.extend_from_slice(&payload);
    mixed.extend_from_slice(format!("\r\n--{inner_b}--").as_bytes());

    let sig = signed::sign(&mixed, identity, scheme, true, ctx.now(), ctx.rng())?;
    let outer_b = boundary(ctx, &[&mixed, &sig]);
    let mut body = Vec::with_capacity(mixed.len() + sig.len() + 256);
    body.extend_from_slice(format!("--{outer_b}\r\n").as_bytes());
    body.extend_from_slice(&mixed);
    body.extend_from_slice(format!("\r\n--{outer_b}\r\n").as_bytes());
    body.extend_from_slice(
        b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n\
Content-Disposition: attachment; filename=smime.p7s; handling=required\r\n\
Content-Transfer-Encoding: binary\r\n\r\n",
    );
    body.extend_from_slice(&sig);
    body.extend_from_slice(format!("\r\n--{outer_b}--\r\n").as_bytes());
    let headers = [(
        "Content-Type".to_owned(),
        format!(
            "multipart/signed;protocol=\"application/pkcs7-signature\";micalg=sha-256;boundary={outer_b}"
        ),
    )];
    msg.replace_body(&headers, body);
    Ok(msg)
}

/// A boundary that occurs in none of `parts` (binary DER could hold any
/// byte string; a clash with 12 random bytes is unheard of, but cheap to rule out).
fn boundary(ctx: &mut Context, parts: &[&[u8]]) -> String {
    loop {
        let b = format!("sipseal-{}", ctx.token(12));
        if !parts
            .iter()
            .any(|p| p.windows(b.len()).any(|w| w == b.as_bytes()))
        {
            return b;
        }
    }
}

/// The entity that gets sealed with an inner signature: an opaque
/// SignedData (`smime-type=signed-data`) over the plaintext MIME entity.
pub fn sign_entity(
    entity: &[u8],
    identity: &Identity,
    scheme: SignatureScheme,
    ctx: &mut Context,
) -> Result<Vec<u8>, SignatureError> {
    let der = signed::sign(entity, identity, scheme, false, ctx.now(), ctx.rng())?;
    let mut out = Vec::with_capacity(der.len() + 128);
    out.extend_from_slice(
        b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n\
Content-Transfer-Encoding: binary\r\n\r\n",
    );
    out.extend_from_slice(&der);
    Ok(out)
}

/// An inner signature, verified (cryptographically) and taken off.
#[derive(Debug, Clone)]
pub struct InnerSignature {
    /// Who signed.
    pub signer: Signer,
    /// Certificates the SignedData carried (for the chain check).
    pub certs: Vec<crate::keys::Cert>,
    /// CRLs the SignedData carried (for the revocation check).
    pub crls: Vec<crate::keys::crl::Crl>,
    /// The signed content: the plaintext MIME entity.
    pub content: Vec<u8>,
}

/// Whether a decrypted entity is an opaque SignedData.
pub fn is_signed_entity(entity: &Entity) -> bool {
    entity
        .content_type()
        .and_then(|v| parse_content_type(v).ok())
        .is_some_and(|c| {
            (c.is("application/pkcs7-mime") || c.is("application/x-pkcs7-mime"))
                && c.param("smime-type")
                    .is_some_and(|t| t.eq_ignore_ascii_case("signed-data"))
        })
}

/// When `entity` is an inner signature: verify it and give the signed
/// content; `None` when it is not signed.
pub fn unwrap_inner(entity: &Entity) -> Option<Result<InnerSignature, SignatureError>> {
    if !is_signed_entity(entity) {
        return None;
    }
    Some(verify_signed(&entity.body, None))
}

/// Parse and verify a SignedData (opaque, or detached over `detached`):
/// its signer, the certificates it carries and the content.
pub fn verify_signed(
    der: &[u8],
    detached: Option<&[u8]>,
) -> Result<InnerSignature, SignatureError> {
    let signed = Signed::parse(der)?;
    let mut signers = signed.verify(detached)?;
    let signer = signers
        .pop()
        .ok_or_else(|| SignatureError::Malformed("no SignerInfo".into()))?;
    let crls = signed.crls().into_iter().cloned().collect();
    let content = match (signed.content, detached) {
        (Some(c), _) => c,
        (None, Some(d)) => d.to_vec(),
        (None, None) => return Err(SignatureError::NoContent),
    };
    Ok(InnerSignature {
        signer,
        certs: signed.certs,
        crls,
        content,
    })
}

#[cfg(test)]
mod tests {

    use time::macros::datetime;

    use super::*;

    use crate::keys::demo_identity as identity;

    const MSG: &[u8] = b"MESSAGE sip:bob@b.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n\
From: <sip:alice@a.example.com>;tag=1\r\n\
To: <sip:bob@b.example.com>\r\n\
Call-ID: c1\r\n\
CSeq: 1 MESSAGE\r\n\
Proxy-Inspect-Body: <sip:proxy-a.a.example.com>;cid=\"x@a\";access=read\r\n\
Content-Type: text/plain\r\n\
Content-ID: <x@a>\r\n\
Content-Length: 5\r\n\r\nhello";

    #[test]
    fn a_sip_date_reads_back() {
        let t = datetime!(2026-03-02 10:00:07 UTC);
        assert_eq!(parse_sip_date(&sip_date(t)), Some(t));
        assert_eq!(parse_sip_date("Mon, 02 Mar 2026 11:00:07 +0100"), Some(t));
        assert_eq!(parse_sip_date("yesterday"), None);
        assert_eq!(parse_sip_date(""), None);
    }

    #[test]
    fn sign_then_take_apart() {
        let msg = Message::parse(MSG).unwrap();
        let mut ctx = Context::new(Some(b"t"), Some(datetime!(2026-03-02 10:00 UTC)));
        let signed = sign_message(
            &msg,
            &identity("alice"),
            SignatureScheme::Pkcs1v15,
            &[],
            &mut ctx,
        )
        .unwrap();
        assert_eq!(signed.header("Date"), Some("Mon, 02 Mar 2026 10:00:00 GMT"));
        let outer = outer_signature(&signed).unwrap().unwrap();
        let signers = outer.verify().unwrap();
        assert_eq!(
            signers[0].cert.uri().as_deref(),
            Some("sip:alice@a.example.com")
        );
        assert_eq!(outer.sipfrag_header("Call-ID"), Some("c1"));
        assert_eq!(
            outer.sipfrag_list(PROXY_INSPECT_BODY),
            ["<sip:proxy-a.a.example.com>;cid=\"x@a\";access=read"]
        );
        assert_eq!(outer.payload.body, b"hello");
        // Peeled, it is the original message plus the Date.
        let peeled = peel(&signed).unwrap().unwrap();
        assert_eq!(peeled.body(), b"hello");
        assert_eq!(peeled.header("Content-ID"), Some("<x@a>"));
        assert_eq!(peeled.header("Content-Type"), Some("text/plain"));
        assert!(matches!(
            sign_message(
                &signed,
                &identity("alice"),
                SignatureScheme::Pkcs1v15,
                &[],
                &mut ctx
            ),
            Err(SigningError::AlreadySigned)
        ));
        // One byte of the body changed: the detached signature fails.
        let mut bytes = signed.to_bytes();
        let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
        bytes[at] = b'j';
        let tampered = Message::parse(&bytes).unwrap();
        let outer = outer_signature(&tampered).unwrap().unwrap();
        assert!(matches!(outer.verify(), Err(SignatureError::Invalid(_))));
    }

    #[test]
    fn inner_signature_round_trip() {
        let mut ctx = Context::new(Some(b"t"), Some(datetime!(2026-03-02 10:00 UTC)));
        let plain = b"Content-Type: application/sdp\r\n\r\nv=0\r\n";
        let wrapped = sign_entity(plain, &identity("bob"), SignatureScheme::Pss, &mut ctx).unwrap();
        let entity = Entity::parse(&wrapped).unwrap();
        let inner = unwrap_inner(&entity).unwrap().unwrap();
        assert_eq!(inner.content, plain);
        assert_eq!(
            inner.signer.cert.uri().as_deref(),
            Some("sip:bob@b.example.com")
        );
        assert!(unwrap_inner(&Entity::parse(plain).unwrap()).is_none());
    }
}
