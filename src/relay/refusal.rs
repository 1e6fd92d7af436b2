//! Why a relay answers instead of forwarding (SPEC §3.5), and the answer:
//! each refusal knows its SIP status, and the response is built from it.

use der::Encode;

use crate::context::Context;
use crate::keys::Cert;
use crate::sip::compose::{
    Body, ComposeError, ResponseParams, build_response, reason_phrase, stateless_error,
};
use crate::sip::conformance::Malformed;
use crate::sip::{Message, ParseError};

/// A reason to answer a request instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Max-Forwards is 0.
    #[error("Max-Forwards is 0")]
    TooManyHops,
    /// The From AOR is not bound to where the request came from.
    #[error("imposture check: {0}")]
    Imposture(String),
    /// The connectivity policy does not let `from` reach `to`.
    #[error("connectivity policy: {from} may not reach {to}")]
    Denied {
        /// The From AOR.
        from: String,
        /// The To AOR.
        to: String,
    },
    /// A signature is required and there is none.
    #[error("no signature, and this relay requires one")]
    SignatureRequired,
    /// The outer signature does not verify, or the headers it protects changed.
    #[error("outer signature: {0}")]
    BadSignature(String),
    /// This relay must see the body and no RecipientInfo is addressed to it.
    #[error("no RecipientInfo for this relay")]
    Undecipherable,
    /// The request is malformed (RFC 3261 / RFC 4475).
    #[error("malformed request: {0}")]
    Malformed(Malformed),
    /// `Proxy-Require` names extensions this relay does not support.
    #[error("Proxy-Require: unsupported {}", .0.join(", "))]
    BadExtension(Vec<String>),
}

impl Refusal {
    /// The SIP status of the answer.
    pub fn sip_status(&self) -> u16 {
        match self {
            Refusal::TooManyHops => 483,
            Refusal::Imposture(_) | Refusal::BadSignature(_) => 403,
            // Exactly what an unknown target gets, so that a denied caller
            // learns nothing about whether the target exists.
            Refusal::Denied { .. } => 404,
            Refusal::SignatureRequired => 495,
            Refusal::Undecipherable => 496,
            Refusal::Malformed(m) => m.sip_status(),
            Refusal::BadExtension(_) => 420,
        }
    }

    /// Why, for the operator's report only: the response says no more
    /// than its status. `None` where the status says it all.
    pub fn why(&self) -> Option<String> {
        match self {
            Refusal::TooManyHops | Refusal::Undecipherable => None,
            other => Some(other.to_string()),
        }
    }

    /// The response to `request`: the status alone; a 496 also carries
    /// this relay's certificate `cert` (`application/pkix-cert`, RFC 2585),
    /// when it has one (a PSK-only relay does not), and a `Warning: 380`
    /// from `agent` (its host) naming the content type it needs to see.
    pub fn response(
        &self,
        request: &Message,
        cert: Option<&Cert>,
        agent: &str,
        ctx: &mut Context,
    ) -> Result<Message, ComposeError> {
        match self {
            // Answered statelessly from what can be read: the request may
            // lack a From, To or Call-ID (RFC 4475 §3.3.1).
            Refusal::Malformed(m) => {
                let standard = reason_phrase(m.status);
                let reason = if m.reason == standard {
                    standard.to_owned()
                } else {
                    format!("{standard} ({})", m.reason)
                };
                let warning = (
                    "Warning".to_owned(),
                    format!("399 {agent} {}", quoted(&m.detail)),
                );
                return stateless_error(request, m.status, &reason, &[warning], ctx);
            }
            Refusal::BadExtension(tags) => {
                let unsupported = ("Unsupported".to_owned(), tags.join(", "));
                return stateless_error(request, 420, reason_phrase(420), &[unsupported], ctx);
            }
            _ => {}
        }
        let mut params = ResponseParams {
            code: self.sip_status(),
            ..Default::default()
        };
        if *self == Refusal::Undecipherable {
            params.headers.push((
                "Warning".into(),
                format!("380 {agent} \"Required to view Content-Type 'application/sdp'\""),
            ));
            if let Some(cert) = cert {
                let der = cert
                    .cert
                    .to_der()
                    .map_err(|e| ComposeError::BadHeader(e.to_string()))?;
                params.body = Some(Body {
                    content_type: "application/pkix-cert".into(),
                    bytes: der,
                });
            }
        }
        build_response(request, &params, ctx)
    }
}

/// The answer to a request that does not even frame ([`Message::parse`]
/// refused it): 400 (505 for another SIP version) from its salvaged
/// headers, when a Via and a CSeq can be read to address it. `None` for a
/// response (dropped) or a request that cannot be answered.
pub fn answer_unparsable(
    input: &[u8],
    err: &ParseError,
    agent: &str,
    ctx: &mut Context,
) -> Option<Message> {
    let request = Message::salvage_request(input)?;
    let malformed = Malformed {
        status: err.sip_status(),
        reason: err.reason(),
        detail: err.kind.to_string(),
    };
    Refusal::Malformed(malformed)
        .response(&request, None, agent, ctx)
        .ok()
}

/// `text` as a quoted-string for a Warning (RFC 3261 §20.43): quotes and
/// backslashes escaped, control characters (from a hostile request)
/// replaced, at most 200 characters.
pub(super) fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars().take(200) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
