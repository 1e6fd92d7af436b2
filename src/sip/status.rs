//! SIP status codes: the ones this code base answers with, and the
//! standard reason phrases (RFC 3261 §21). A leaf: it needs nothing else
//! of the SIP layer.

/// A status this code base answers with (RFC 3261 §21, RFC 3329, the
/// E2M drafts for 495 and 496).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// 100 Trying: a request taken in hand (a terminal's INVITE).
    Trying,
    /// 200 OK.
    Ok,
    /// 400 Bad Request: the request cannot be parsed or lacks what it needs.
    BadRequest,
    /// 401 Unauthorized: a Digest challenge.
    Unauthorized,
    /// 403 Forbidden: imposture, wrong credentials, a bad signature.
    Forbidden,
    /// 404 Not Found: an unknown AOR, or a policy denial (the same answer).
    NotFound,
    /// 405 Method Not Allowed.
    MethodNotAllowed,
    /// 415 Unsupported Media Type.
    UnsupportedMediaType,
    /// 420 Bad Extension: Proxy-Require names what is not supported.
    BadExtension,
    /// 423 Interval Too Brief.
    IntervalTooBrief,
    /// 480 Temporarily Unavailable: a served AOR without a live binding.
    TemporarilyUnavailable,
    /// 481 Call/Transaction Does Not Exist: a CANCEL that matches nothing.
    CallDoesNotExist,
    /// 482 Loop Detected (RFC 3261 §16.3 item 4).
    LoopDetected,
    /// 483 Too Many Hops: Max-Forwards is 0.
    TooManyHops,
    /// 486 Busy Here: a terminal at its limit of calls.
    BusyHere,
    /// 488 Not Acceptable Here: an offer a terminal cannot answer (no
    /// data channel it takes).
    NotAcceptableHere,
    /// 493 Undecipherable: a body under a key this party does not have.
    Undecipherable,
    /// 495 Signature Required (E2M).
    SignatureRequired,
    /// 496 Proxy Undecipherable (E2M): the relay must see the body and cannot.
    ProxyUndecipherable,
    /// 500 Server Internal Error: a store failed, the firewall did not confirm.
    ServerError,
    /// 501 Not Implemented: a method this element does not know.
    NotImplemented,
    /// 503 Service Unavailable: the next hop cannot be reached.
    ServiceUnavailable,
    /// 504 Server Time-out: a server this one asked did not answer in
    /// time (a registrar forwarding a certificate query, issue 28).
    ServerTimeout,
    /// 505 Version Not Supported.
    VersionNotSupported,
}

impl Status {
    /// The numeric code.
    pub const fn code(self) -> u16 {
        match self {
            Status::Trying => 100,
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::UnsupportedMediaType => 415,
            Status::BadExtension => 420,
            Status::IntervalTooBrief => 423,
            Status::TemporarilyUnavailable => 480,
            Status::CallDoesNotExist => 481,
            Status::LoopDetected => 482,
            Status::TooManyHops => 483,
            Status::BusyHere => 486,
            Status::NotAcceptableHere => 488,
            Status::Undecipherable => 493,
            Status::SignatureRequired => 495,
            Status::ProxyUndecipherable => 496,
            Status::ServerError => 500,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
            Status::ServerTimeout => 504,
            Status::VersionNotSupported => 505,
        }
    }

    /// The standard reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            Status::IntervalTooBrief => "Interval Too Brief",
            Status::LoopDetected => "Loop Detected",
            other => reason_phrase(other.code()),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.reason())
    }
}

/// The standard reason phrase for a status code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        495 => "Signature Required",
        496 => "Proxy Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        505 => "Version Not Supported",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match code / 100 {
            1 => "Provisional",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}
