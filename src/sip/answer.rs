//! One place for SIP answers (docs/SPEC.md §3.5): every status a relay or the
//! registrar answers with is a [`Status`], every refusal, registrar
//! outcome and error with a SIP meaning converts into an [`Answer`], and
//! [`respond`] is the one function that turns an answer into the
//! response to a request. Nothing else writes a status code.

use crate::context::Context;

use super::compose::{Body, ComposeError, ResponseParams, build_response, stateless_error};
use super::message::Message;
pub use super::status::Status;

/// How much of the request a response copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Copy {
    /// A response as RFC 3261 §8.2.6 builds it (Via, From, To with a
    /// tag, Call-ID, CSeq, Route-Security; Record-Route and Contact for
    /// a dialog).
    #[default]
    Full,
    /// What can be read of a request that may be malformed (RFC 4475):
    /// Via, From, To, Call-ID and CSeq as far as they are present.
    Salvaged,
}

/// An answer to a request: a status and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status.
    pub status: Status,
    /// A reason phrase other than the standard one (it names the defect
    /// of a malformed request, never input bytes).
    pub reason: Option<String>,
    /// Extra header lines (Warning, Allow, WWW-Authenticate, ...).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<Body>,
    /// Why, for the operator's log only: the response says no more.
    pub why: Option<String>,
    /// How much of the request the response copies.
    pub copy: Copy,
    /// The To tag when the request has none (else a random one): a
    /// stateless proxy derives it from the request, so that it knows the
    /// ACK of its own answer ([`crate::sip::routing::local_tag`]).
    pub to_tag: Option<String>,
}

impl Answer {
    /// An answer with this status and nothing else.
    pub fn new(status: Status) -> Answer {
        Answer {
            status,
            reason: None,
            headers: Vec::new(),
            body: None,
            why: None,
            copy: Copy::Full,
            to_tag: None,
        }
    }

    /// Tag the To header (of a request without a To tag) with `tag`.
    pub fn with_to_tag(mut self, tag: impl Into<String>) -> Answer {
        self.to_tag = Some(tag.into());
        self
    }

    /// Say why, for the log.
    pub fn because(mut self, why: impl Into<String>) -> Answer {
        self.why = Some(why.into());
        self
    }

    /// Add a header line.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Answer {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Add `Warning: 399 AGENT "TEXT"` (RFC 3261 §20.43), the text
    /// quoted and cleaned of what a hostile request could put in it.
    pub fn with_warning(self, agent: &str, text: &str) -> Answer {
        let value = format!("399 {agent} {}", quoted(text));
        self.with_header("Warning", value)
    }

    /// Carry this body.
    pub fn with_body(mut self, body: Body) -> Answer {
        self.body = Some(body);
        self
    }

    /// Use this reason phrase.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Answer {
        self.reason = Some(reason.into());
        self
    }

    /// Copy only what can be read (the request may be malformed).
    pub fn salvaged(mut self) -> Answer {
        self.copy = Copy::Salvaged;
        self
    }

    /// What the log says: `403` or `403: why`.
    pub fn describe(&self) -> String {
        match &self.why {
            Some(why) => format!("{}: {why}", self.status.code()),
            None => self.status.code().to_string(),
        }
    }
}

/// Errors and outcomes that a server answers with a SIP response.
pub trait IntoAnswer {
    /// The answer, when there is one (an error without a SIP meaning has none).
    fn answer(&self) -> Option<Answer>;
}

/// The response to `request` that carries `answer`; `None` for what is
/// never answered (an ACK, or a response).
pub fn respond(
    request: &Message,
    answer: &Answer,
    ctx: &mut Context,
) -> Result<Option<Message>, ComposeError> {
    if !request.is_request() || request.method() == Some("ACK") {
        return Ok(None);
    }
    let reason = answer
        .reason
        .clone()
        .unwrap_or_else(|| answer.status.reason().to_owned());
    let response = match answer.copy {
        Copy::Salvaged => {
            let mut m = stateless_error(
                request,
                answer.status.code(),
                &reason,
                &answer.headers,
                answer.to_tag.as_deref(),
                ctx,
            )?;
            if let Some(body) = &answer.body {
                m.set_header("Content-Type", &body.content_type);
                m.set_body(body.bytes.clone());
            }
            m
        }
        Copy::Full => build_response(
            request,
            &ResponseParams {
                code: answer.status.code(),
                reason: Some(reason),
                headers: answer.headers.clone(),
                body: answer.body.clone(),
                to_tag: answer.to_tag.clone(),
                ..Default::default()
            },
            ctx,
        )?,
    };
    Ok(Some(response))
}

/// `text` as a quoted-string for a Warning (RFC 3261 §20.43): quotes and
/// backslashes escaped, control characters (from a hostile request)
/// replaced, at most 200 characters.
pub fn quoted(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKa\r\n\
From: <sip:alice@a.example.com>;tag=1\r\n\
To: <sip:127.0.0.1:5070>\r\n\
Call-ID: c\r\n\
CSeq: 7 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

    fn ctx() -> Context {
        Context::new(Some(b"answer"), None)
    }

    #[test]
    fn an_answer_becomes_the_response_to_its_request() {
        let req = Message::parse(OPTIONS).unwrap();
        let answer = Answer::new(Status::LoopDetected)
            .with_warning("proxy-a.a.example.com", "a \"loop\"\r\n")
            .because("its Via names this relay");
        let resp = respond(&req, &answer, &mut ctx()).unwrap().unwrap();
        assert_eq!(resp.status(), Some(482));
        let text = String::from_utf8(resp.to_bytes()).unwrap();
        assert!(text.starts_with("SIP/2.0 482 Loop Detected\r\n"), "{text}");
        assert!(
            text.contains("Warning: 399 proxy-a.a.example.com \"a \\\"loop\\\"??\""),
            "{text}"
        );
        assert!(text.contains("CSeq: 7 OPTIONS"), "{text}");
        assert!(!text.contains("its Via names"), "the why stays in the log");
        assert_eq!(answer.describe(), "482: its Via names this relay");
    }

    #[test]
    fn an_ack_and_a_response_are_never_answered() {
        let ack = String::from_utf8(OPTIONS.to_vec())
            .unwrap()
            .replace("OPTIONS", "ACK");
        let ack = Message::parse(ack.as_bytes()).unwrap();
        let answer = Answer::new(Status::Forbidden);
        assert_eq!(respond(&ack, &answer, &mut ctx()).unwrap(), None);
        let req = Message::parse(OPTIONS).unwrap();
        let resp = respond(&req, &Answer::new(Status::Ok), &mut ctx())
            .unwrap()
            .unwrap();
        assert_eq!(respond(&resp, &answer, &mut ctx()).unwrap(), None);
    }

    #[test]
    fn every_status_has_its_own_code_and_reason() {
        let all = [
            Status::Trying,
            Status::Ok,
            Status::BadRequest,
            Status::Unauthorized,
            Status::Forbidden,
            Status::NotFound,
            Status::MethodNotAllowed,
            Status::UnsupportedMediaType,
            Status::BadExtension,
            Status::IntervalTooBrief,
            Status::TemporarilyUnavailable,
            Status::CallDoesNotExist,
            Status::LoopDetected,
            Status::TooManyHops,
            Status::BusyHere,
            Status::NotAcceptableHere,
            Status::Undecipherable,
            Status::SignatureRequired,
            Status::ProxyUndecipherable,
            Status::ServerError,
            Status::NotImplemented,
            Status::ServiceUnavailable,
            Status::ServerTimeout,
            Status::VersionNotSupported,
        ];
        let mut codes: Vec<u16> = all.iter().map(|s| s.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "in order, no code twice");
        for s in all {
            assert!(!s.reason().is_empty());
            assert!(
                !matches!(s.reason(), "Client Error" | "Server Error" | "Success"),
                "{s}: a real reason phrase"
            );
        }
    }
}
