//! Why a relay answers instead of forwarding (SPEC §3.5), and the answer:
//! each refusal knows its SIP status, and the response is built from it.

use der::Encode;

use crate::context::Context;
use crate::keys::Cert;
use crate::sip::Message;
use crate::sip::compose::{Body, ComposeError, ResponseParams, build_response};

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
    /// this relay's certificate `cert` (`application/pkix-cert`, RFC 2585)
    /// and a `Warning: 380` from `agent` (its host) naming the content type
    /// it needs to see.
    pub fn response(
        &self,
        request: &Message,
        cert: &Cert,
        agent: &str,
        ctx: &mut Context,
    ) -> Result<Message, ComposeError> {
        let mut params = ResponseParams {
            code: self.sip_status(),
            ..Default::default()
        };
        if *self == Refusal::Undecipherable {
            let der = cert
                .cert
                .to_der()
                .map_err(|e| ComposeError::BadHeader(e.to_string()))?;
            params.headers.push((
                "Warning".into(),
                format!("380 {agent} \"Required to view Content-Type 'application/sdp'\""),
            ));
            params.body = Some(Body {
                content_type: "application/pkix-cert".into(),
                bytes: der,
            });
        }
        build_response(request, &params, ctx)
    }
}
