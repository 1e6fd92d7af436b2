//! Why a relay answers instead of forwarding (docs/SPEC.md §3.5), and the answer:
//! each refusal knows its SIP status, and the response is built from it.

use der::Encode;

use crate::context::Context;
use crate::keys::Cert;
use crate::sip::answer::{Answer, Status, respond};
use crate::sip::compose::{Body, ComposeError};
use crate::sip::conformance::Malformed;
use crate::sip::{Message, ParseError};

/// A reason to answer a request instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Max-Forwards is 0.
    #[error("Max-Forwards is 0")]
    TooManyHops,
    /// The request came back to this relay with the same routing (RFC 3261
    /// §16.3 item 4).
    #[error("the request has been here before with the same Request-URI and Route: a loop")]
    Loop,
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
    /// The body this relay is designated for is not an envelope it can parse.
    #[error("the sealed body does not parse: {0}")]
    BadBody(String),
    /// The request crossed a link below `--min-route-level` (docs/SPEC.md
    /// §3.4): `link` describes the weakest entry.
    #[error("Route-Security: the weakest link, {link}, is below the minimum level {min}")]
    WeakRoute {
        /// The weakest entry (`ADDR level N`, `ADDR (no level: unchecked)`).
        link: String,
        /// The minimum.
        min: u8,
    },
    /// `Proxy-Require` names extensions this relay does not support.
    #[error("Proxy-Require: unsupported {}", .0.join(", "))]
    BadExtension(Vec<String>),
}

impl Refusal {
    /// The SIP status of the answer.
    pub fn sip_status(&self) -> Status {
        match self {
            Refusal::TooManyHops => Status::TooManyHops,
            Refusal::Loop => Status::LoopDetected,
            Refusal::Imposture(_) | Refusal::BadSignature(_) | Refusal::WeakRoute { .. } => {
                Status::Forbidden
            }
            // Exactly what an unknown target gets, so that a denied caller
            // learns nothing about whether the target exists.
            Refusal::Denied { .. } => Status::NotFound,
            Refusal::SignatureRequired => Status::SignatureRequired,
            Refusal::Undecipherable => Status::ProxyUndecipherable,
            Refusal::Malformed(m) => m.sip_status(),
            Refusal::BadBody(_) => Status::BadRequest,
            Refusal::BadExtension(_) => Status::BadExtension,
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

    /// The answer: the status alone; a 496 also carries this relay's
    /// certificate `cert` (`application/pkix-cert`, RFC 2585), when it
    /// has one (a PSK-only relay does not), and a `Warning: 380` from
    /// `agent` (its host) naming the content type it needs to see.
    pub fn answer(&self, cert: Option<&Cert>, agent: &str) -> Result<Answer, ComposeError> {
        let mut answer = Answer::new(self.sip_status());
        answer.why = self.why();
        match self {
            // Answered statelessly from what can be read: the request may
            // lack a From, To or Call-ID (RFC 4475 §3.3.1).
            Refusal::Malformed(m) => {
                let standard = m.status.reason();
                if m.reason != standard {
                    answer = answer.with_reason(format!("{standard} ({})", m.reason));
                }
                answer = answer.with_warning(agent, &m.detail).salvaged();
            }
            Refusal::BadBody(_) => {
                answer = answer.with_reason("Bad Request (the sealed body does not parse)");
            }
            // The sender learns which link was too weak: it is its own
            // path, and it may choose another.
            Refusal::WeakRoute { .. } => {
                answer = answer
                    .with_reason("Forbidden (Route-Security below the minimum level)")
                    .with_warning(agent, &self.to_string());
            }
            Refusal::BadExtension(tags) => {
                answer = answer
                    .with_header("Unsupported", tags.join(", "))
                    .salvaged();
            }
            Refusal::Undecipherable => {
                answer = answer.with_header(
                    "Warning",
                    format!("380 {agent} \"Required to view Content-Type 'application/sdp'\""),
                );
                if let Some(cert) = cert {
                    let der = cert
                        .cert
                        .to_der()
                        .map_err(|e| ComposeError::BadHeader(e.to_string()))?;
                    answer = answer.with_body(Body {
                        content_type: "application/pkix-cert".into(),
                        bytes: der,
                    });
                }
            }
            _ => {}
        }
        Ok(answer)
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
    let answer = Refusal::Malformed(malformed).answer(None, agent).ok()?;
    respond(&request, &answer, ctx).ok().flatten()
}
