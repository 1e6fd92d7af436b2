//! A message as a relay reads it, parsed once (after the cheap admission
//! checks): the outer signature and what it says, the message under it,
//! the sealed body's envelope, the designations, the Route-Security
//! chain. Every step of the pipeline takes what it needs from here; a part
//! that does not parse is kept as its error, for the step that needs it.

use crate::envelope::Envelope;
use crate::envelope::signed::{SignatureError, Signer};
use crate::mime::Entity;
use crate::sealing::{SealError, designated_part, sealed_der};
use crate::signing::{OuterSignature, SigningError, is_signed_entity, outer_signature};
use crate::sip::Message;
use crate::sip::disclosure::{Designation, designations};
use crate::sip::headers::parse_content_type;
use crate::verify::{Check, headers_check};

/// The parts of one incoming message.
pub struct View<'m> {
    /// The message as it arrived.
    pub msg: &'m Message,
    /// The outer signature, when the body is `multipart/signed`.
    pub outer: Result<Option<OuterSignature>, SigningError>,
    /// The outer signature verified (cryptographically; no trust), once.
    pub outer_signers: Option<Result<Vec<Signer>, SignatureError>>,
    /// The signed sipfrag against the message's headers.
    pub outer_headers: Option<Check>,
    /// The message under the outer signature (the signed part as its
    /// body), when there is one.
    pub signed: Option<Message>,
    /// The envelope of the sealed body (under the outer signature, if any).
    pub envelope: Result<Envelope, SealError>,
    /// When the body is a multipart with sealed parts: the Content-ID of
    /// the part `envelope` is (the one a designation of this relay names,
    /// else the first sealed part; `Some("")` when it has none).
    pub part: Option<String>,
    /// Every `Proxy-Inspect-Body` entry that parses.
    pub designations: Vec<Designation>,
    /// Whether the body (under the outer signature) is an opaque
    /// signed-data: signed, not sealed.
    pub opaque_signed: bool,
    /// The signer of an opaque signed-data body, when it verifies.
    pub opaque_signer: Option<crate::keys::Cert>,
    /// An SDP body in the clear, readable by everyone on the path.
    pub plain_sdp: Option<Vec<u8>>,
}

impl<'m> View<'m> {
    /// Take `msg` apart, for no relay in particular.
    pub fn parse(msg: &'m Message) -> View<'m> {
        View::parse_for(msg, &[])
    }

    /// Take `msg` apart for the relay named `uris`: of a multipart body's
    /// sealed parts, the envelope is the part its designation names.
    pub fn parse_for(msg: &'m Message, uris: &[String]) -> View<'m> {
        let outer = outer_signature(msg);
        let (signed, outer_signers, outer_headers) = match &outer {
            Ok(Some(o)) => {
                let mut m = msg.clone();
                m.replace_body(&o.payload.headers, o.payload.body.clone());
                (Some(m), Some(o.verify()), Some(headers_check(msg, o)))
            }
            _ => (None, None, None),
        };
        let body = signed.as_ref().unwrap_or(msg);
        let designations: Vec<Designation> = designations(msg).into_iter().flatten().collect();
        let mut part = None;
        let envelope = match sealed_der(body) {
            Err(SealError::NotSealed(ct)) => match designated_part(body, &designations, uris) {
                Ok(Some(p)) => {
                    part = Some(p.content_id.unwrap_or_default());
                    Envelope::parse(&p.der).map_err(SealError::from)
                }
                Ok(None) => Err(SealError::NotSealed(ct)),
                Err(e) => Err(e),
            },
            der => der.and_then(|der| Ok(Envelope::parse(&der)?)),
        };
        // The body as an entity, to ask whether it is signed; its bytes
        // are copied only when it is (the signature is then verified).
        let entity = |body_bytes: Vec<u8>| {
            body.header("Content-Type").map(|ct| Entity {
                headers: vec![("Content-Type".into(), ct.to_owned())],
                body: body_bytes,
            })
        };
        let opaque_signed = entity(Vec::new()).as_ref().is_some_and(is_signed_entity);
        let opaque_signer = opaque_signed
            .then(|| entity(body.body().to_vec()))
            .flatten()
            .as_ref()
            .and_then(crate::signing::unwrap_inner)
            .and_then(Result::ok)
            .map(|inner| inner.signer.cert);
        View {
            msg,
            designations,
            part,
            plain_sdp: plain_sdp(msg),
            outer,
            outer_signers,
            outer_headers,
            signed,
            envelope,
            opaque_signed,
            opaque_signer,
        }
    }

    /// The designations naming one of `uris` (this relay).
    pub fn naming(&self, uris: &[String]) -> Vec<Designation> {
        self.designations
            .iter()
            .filter(|d| uris.iter().any(|u| u.eq_ignore_ascii_case(&d.uri)))
            .cloned()
            .collect()
    }

    /// Who signed the outer signature, as the report names them; the
    /// reason when it does not verify.
    pub fn outer_signer(&self) -> Option<String> {
        match self.outer_signers.as_ref()? {
            Ok(signers) => signers.first().map(|s| s.cert.name()),
            Err(e) => Some(format!("(does not verify: {e})")),
        }
    }

    /// Why the outer signature cannot be trusted: it does not verify, or
    /// the headers it protects were changed. `None`: it checks (or there
    /// is none).
    pub fn outer_problem(&self) -> Option<String> {
        match (&self.outer_signers, &self.outer_headers) {
            (Some(Err(e)), _) => Some(e.to_string()),
            (_, Some(h)) if !h.ok => Some(h.detail.clone()),
            _ => None,
        }
    }
}

/// The body when it is an SDP in the clear.
fn plain_sdp(msg: &Message) -> Option<Vec<u8>> {
    let ct = parse_content_type(msg.header("Content-Type")?).ok()?;
    (ct.is("application/sdp") && !msg.body().is_empty()).then(|| msg.body().to_vec())
}
