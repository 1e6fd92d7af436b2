//! Is a framed message well formed as RFC 3261 and RFC 4475 read it?
//!
//! [`check`] runs after [`Message::parse`]: the start line's URI, the
//! headers every request and response carries (§8.1.1), headers that may
//! appear once only, the scalars (CSeq ≤ 2³²−1 and matching the method,
//! Max-Forwards ≤ 255), the From/To/Contact values, the topmost Via (only
//! that one: a relay has no business with the rest of the stack) and the
//! Date. What RFC 4475 lets an element accept or repair is a remark, not
//! an error. Each error knows the status a server answers it with.
//! Linear in the message.

use super::headers::split_list;
use super::message::Message;
use super::names;
use super::status::Status;
use super::syntax;

/// Why a message is malformed, and the answer a server gives a request so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Malformed {
    /// 400, 501 or 505.
    pub status: Status,
    /// A short reason phrase naming the defect (no input bytes in it).
    pub reason: &'static str,
    /// The defect, with the value that has it.
    pub detail: String,
}

impl Malformed {
    fn bad(reason: &'static str, detail: impl Into<String>) -> Self {
        Malformed {
            status: Status::BadRequest,
            reason,
            detail: detail.into(),
        }
    }

    /// A malformed message failed (exit class).
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Failed
    }

    /// The status a server answers a request with this defect.
    pub fn sip_status(&self) -> Status {
        self.status
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conformance {
    /// Defects that make the message malformed, in the order found.
    pub errors: Vec<Malformed>,
    /// What is accepted but worth saying (RFC 2543 leftovers and the like).
    pub remarks: Vec<String>,
}

impl Conformance {
    /// The first defect, if the message is malformed.
    pub fn first(&self) -> Option<&Malformed> {
        self.errors.first()
    }
}

/// Methods of RFC 3261 and its extensions: a request-line method outside
/// this list with a CSeq that does not match is answered 501, not 400
/// (RFC 4475 §3.1.2.18).
const KNOWN_METHODS: &[&str] = &[
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// Headers that a message carries once at most (RFC 3261 §20, "single").
const SINGLE: &[&str] = &[
    "To",
    "From",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Type",
    "Date",
];

/// Headers every request and response carries (§8.1.1); a request
/// without Max-Forwards is repaired by a proxy (§16.6 step 3).
const REQUIRED: &[&str] = &["Via", "From", "To", "Call-ID", "CSeq"];

/// Check `msg`.
pub fn check(msg: &Message) -> Conformance {
    let mut c = Conformance::default();
    let mut err = |e: Malformed| c.errors.push(e);

    if let Some(uri) = msg.request_uri()
        && let Err(e) = syntax::check_request_uri(uri)
    {
        err(Malformed::bad(
            "Bad Request-URI",
            format!("Request-URI: {e}"),
        ));
    }
    // One pass over the headers: counts of the ones that matter.
    let mut counts = [0usize; SINGLE.len()];
    let mut required = [false; REQUIRED.len()];
    for h in msg.headers() {
        let full = h.full_name();
        if let Some(i) = SINGLE.iter().position(|n| n.eq_ignore_ascii_case(full)) {
            counts[i] += 1;
        }
        if let Some(i) = REQUIRED.iter().position(|n| n.eq_ignore_ascii_case(full)) {
            required[i] = true;
        }
    }
    for (name, present) in REQUIRED.iter().zip(required) {
        if !present {
            err(Malformed::bad(
                "Missing Required Header",
                format!("missing {name} header"),
            ));
        }
    }
    for (name, n) in SINGLE.iter().zip(counts) {
        if n > 1 {
            err(Malformed::bad(
                "Header Given More Than Once",
                format!("{name} appears {n} times; it takes one value"),
            ));
        }
    }

    match msg.cseq() {
        Ok(cseq) => {
            if let Some(method) = msg.method()
                && cseq.method != method
            {
                let status = if KNOWN_METHODS.contains(&method) {
                    Status::BadRequest
                } else {
                    Status::NotImplemented
                };
                err(Malformed {
                    status,
                    reason: if status == Status::NotImplemented {
                        "Not Implemented"
                    } else {
                        "CSeq Method Mismatch"
                    },
                    detail: format!(
                        "the CSeq method {} does not match the request method {method}",
                        cseq.method
                    ),
                });
            }
        }
        Err(super::HeaderError::Missing(_)) => {}
        Err(e) => err(Malformed::bad("Bad CSeq", e.to_string())),
    }
    if let Some(v) = msg.header("Max-Forwards") {
        if !(v.bytes().all(|b| b.is_ascii_digit()) && v.parse::<u64>().is_ok_and(|n| n <= 255)) {
            err(Malformed::bad(
                "Bad Max-Forwards",
                format!("Max-Forwards {v:?} is not 0 to 255"),
            ));
        }
    } else if msg.is_request() {
        c.remarks
            .push("no Max-Forwards (RFC 2543 style): a relay adds one".into());
    }
    if super::route_security::too_many(msg) {
        err(Malformed::bad(
            "Too Many Route-Security Entries",
            format!(
                "more than {} Route-Security entries",
                super::route_security::MAX_ENTRIES
            ),
        ));
    }
    if let Some(v) = msg.header("Call-ID")
        && (v.is_empty() || v.contains(char::is_whitespace))
    {
        err(Malformed::bad(
            "Bad Call-ID",
            format!("Call-ID {v:?} must be one word"),
        ));
    }
    for name in ["From", "To"] {
        if let Some(v) = msg.header(name)
            && let Err(e) = syntax::name_addr(v)
        {
            err(Malformed::bad(
                if name == "From" { "Bad From" } else { "Bad To" },
                format!("{name}: {e}"),
            ));
        }
    }
    for v in msg.header_list("Contact") {
        if v != "*"
            && let Err(e) = syntax::name_addr(v)
        {
            err(Malformed::bad("Bad Contact", format!("Contact: {e}")));
        }
    }
    // The topmost Via only: a relay has no business with the rest.
    if let Some(top) = msg.headers().iter().find(|h| h.is("Via")) {
        // Its first entry is the message's top Via, parsed once and kept
        // for whoever asks next (the relay, several times); the others
        // of the line are checked here. On an error, the list says which.
        let first = msg
            .top_via()
            .ok()
            .filter(|_| syntax::vias_after_first_hold(top.value()));
        let checked = match first {
            Some(v) => Ok(Some(v)),
            None => syntax::via_list(top.value()).map(|_| None),
        };
        match checked {
            Ok(first) => {
                if let Some(v) = first {
                    if v.protocol != "SIP/2.0" {
                        err(Malformed {
                            status: Status::VersionNotSupported,
                            reason: "Version Not Supported",
                            detail: format!("the top Via speaks {}, not SIP/2.0", v.protocol),
                        });
                    }
                    // No branch is RFC 2543 and valid (RFC 4475 §3.1.1.7);
                    // the bare cookie is accepted with a word (§3.2.1).
                    if v.branch()
                        .is_some_and(|b| b.eq_ignore_ascii_case("z9hG4bK"))
                    {
                        c.remarks
                            .push("the top Via branch is the bare magic cookie z9hG4bK".into());
                    }
                }
            }
            Err(e) => err(Malformed::bad("Bad Via", format!("Via: {e}"))),
        }
    }
    if let Some(v) = msg.header("Date")
        && let Err(e) = syntax::check_date(v)
    {
        err(Malformed::bad("Bad Date", format!("Date: {e}")));
    }
    if let Some(v) = msg.header("Content-Type")
        && let Err(e) = super::headers::parse_content_type(v)
    {
        err(Malformed::bad("Bad Content-Type", e.to_string()));
    }
    c
}

/// The option tags of `Proxy-Require` (RFC 3261 §20.29): a proxy that
/// supports none of them answers 420 listing them (§16.3 step 4).
pub fn proxy_require(msg: &Message) -> Vec<String> {
    msg.header_values("Proxy-Require")
        .into_iter()
        .flat_map(split_list)
        .filter(|t| names::is_token(t))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(input: &[u8]) -> Option<(u16, String)> {
        let m = Message::parse(input).unwrap();
        check(&m)
            .first()
            .map(|e| (e.status.code(), e.detail.clone()))
    }

    const OK: &str = "OPTIONS sip:u@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: sip:u@example.com\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n";

    #[test]
    fn a_plain_request_passes() {
        let m = Message::parse(OK.as_bytes()).unwrap();
        assert_eq!(check(&m), Conformance::default());
    }

    #[test]
    fn defects_and_their_status() {
        let with = |from: &str, to: &str| OK.replacen(from, to, 1).into_bytes();
        assert_eq!(first(&with("1 OPTIONS", "1 INVITE")).unwrap().0, 400);
        assert_eq!(first(&with("OPTIONS sip", "NEWMETHOD sip")).unwrap().0, 501);
        assert!(
            first(&with("Max-Forwards: 70", "Max-Forwards: 300"))
                .unwrap()
                .1
                .contains("0 to 255")
        );
        assert!(
            first(&with("Call-ID: c1\r\n", ""))
                .unwrap()
                .1
                .contains("missing Call-ID")
        );
        assert!(
            first(&with("Call-ID: c1\r\n", "Call-ID: c1\r\ni: c2\r\n"))
                .unwrap()
                .1
                .contains("2 times")
        );
        assert!(
            first(&with("CSeq: 1 ", "CSeq: 36893488147419103232 "))
                .unwrap()
                .1
                .contains("2^32")
        );
        assert_eq!(
            first(&with("SIP/2.0/UDP h", "SIP/7.0/UDP h")).unwrap().0,
            505
        );
        assert!(first(&with("sip:u@example.com SIP", "<sip:u@example.com> SIP")).is_some());
        // Every entry of the top Via line is checked: the first (the
        // message's top Via, kept) and the ones after it.
        let bad_via = |line: &str| first(&with("SIP/2.0/UDP h;branch=z9hG4bK1", line));
        for line in [
            "SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/UDP",
            "SIP/2.0/UDP h;branch=z9hG4bK1,,SIP/2.0/UDP g",
            "SIP/2.0 h;branch=z9hG4bK1, SIP/2.0/UDP g",
        ] {
            let (code, detail) = bad_via(line).expect(line);
            assert_eq!(code, 400, "{line}");
            assert!(detail.starts_with("Via: "), "{line}: {detail}");
        }
        assert_eq!(
            bad_via("SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/TCP g:5061"),
            None
        );
    }

    #[test]
    fn remarks_are_not_errors() {
        let m = Message::parse(
            OK.replace("Max-Forwards: 70\r\n", "")
                .replace(";branch=z9hG4bK1", ";branch=z9hG4bK")
                .as_bytes(),
        )
        .unwrap();
        let c = check(&m);
        assert!(c.errors.is_empty());
        assert_eq!(c.remarks.len(), 2);
    }
}
