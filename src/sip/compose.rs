//! Composing requests and responses (RFC 3261 §8.1.1 and §8.2.6).

use super::headers::{HeaderError, split_list};
use super::message::{Message, StartLine};
pub use super::status::reason_phrase;
use crate::context::Context;

/// Why a message could not be composed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("invalid {what} {value:?}: {reason}")]
    /// A URI (or name-addr) that does not parse.
    BadUri {
        /// Which value.
        what: &'static str,
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    #[error("invalid method {0:?}: a method is an upper-case token such as INVITE")]
    /// A method that is not a token.
    BadMethod(String),
    #[error("invalid status code {0}: must be 100 to 699")]
    /// A status code outside 100-699.
    BadStatus(u16),
    #[error("invalid header {0:?}: expected `Name: value`")]
    /// An extra header that is not `Name: value`.
    BadHeader(String),
    #[error("the request to answer must be a SIP request, not a response")]
    /// A response was given where the request it answers belongs.
    NotARequest,
    #[error("the request is unusable: {0}")]
    /// The request to answer lacks what a response copies.
    Request(#[from] HeaderError),
    #[error("no dialog yet: the {0} header has no tag")]
    /// No dialog yet: a side has no tag.
    NoDialog(&'static str),
}

impl ComposeError {
    /// An unusable request to answer makes the input fail; bad parameters
    /// are a usage problem.
    pub fn class(&self) -> crate::error::ErrorClass {
        match self {
            ComposeError::NotARequest | ComposeError::Request(_) => {
                crate::error::ErrorClass::Failed
            }
            _ => crate::error::ErrorClass::Config,
        }
    }
}

/// Transport named in the Via header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    // The values are self-explanatory: no per-value help on the command line.
    /// UDP (RFC 3261 §18).
    #[default]
    #[cfg_attr(feature = "cli", value(help = None::<&str>))]
    Udp,
    /// TCP.
    #[cfg_attr(feature = "cli", value(help = None::<&str>))]
    Tcp,
    /// TLS over TCP.
    #[cfg_attr(feature = "cli", value(help = None::<&str>))]
    Tls,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// A body and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// Its Content-Type.
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// What a new request is made of; unset values are generated.
#[derive(Debug, Clone, Default)]
pub struct RequestParams {
    /// The method (INVITE, MESSAGE, ...).
    pub method: String,
    /// From: a URI, or `Name <URI>;params`.
    pub from: String,
    /// To: a URI, or `Name <URI>;params`.
    pub to: String,
    /// The Request-URI (default: the To URI; for REGISTER its domain).
    pub request_uri: Option<String>,
    /// The Call-ID (default: generated).
    pub call_id: Option<String>,
    /// The CSeq number (default: 1).
    pub cseq: Option<u32>,
    /// The Contact URI.
    pub contact: Option<String>,
    /// Via sent-by, `HOST[:PORT]`; defaults to the From host.
    pub via: Option<String>,
    /// The transport named in the Via.
    pub transport: Transport,
    /// Extra header lines, in order, placed before Content-Type.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<Body>,
}

/// What a new response is made of; unset values are generated.
#[derive(Debug, Clone, Default)]
pub struct ResponseParams {
    /// The status code.
    pub code: u16,
    /// The reason phrase (default: the standard one).
    pub reason: Option<String>,
    /// The Contact URI.
    pub contact: Option<String>,
    /// The To tag (default: generated).
    pub to_tag: Option<String>,
    /// Extra header lines, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<Body>,
}

/// A URI given to compose a message: its text and the parts composing
/// reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Uri {
    /// The URI as given (parameters and `?headers` included).
    pub text: String,
    /// `sip`, `sips` or `tel`.
    pub scheme: String,
    /// The host, an IPv6 reference in brackets (`[::1]`).
    pub host: String,
    /// The host and port as given (`[::1]:5090`).
    pub hostport: String,
}

/// URI parameters of RFC 3261 §19.1.1 and its extensions (RFC 5626 `ob`,
/// RFC 5627 `gr`, RFC 3486 `comp`): in the bare form of `--to` and
/// friends these stay on the URI; every other `;` parameter is a header
/// parameter (`tag`, `expires`, `q`, feature tags), as RFC 3261 §20.10
/// reads an addr-spec.
const URI_PARAMS: &[&str] = &[
    "transport",
    "user",
    "method",
    "ttl",
    "maddr",
    "lr",
    "ob",
    "gr",
    "comp",
    "sigcomp-id",
];

/// `sip:a@b` or `Name <sip:a@b>;tag=x` → a name-addr with angle brackets,
/// its URI checked. In the bare form (`sip:a@b;transport=tcp;tag=x`) the
/// URI parameters (`transport`, `lr`, ... [`URI_PARAMS`]) stay on the URI
/// and the others become header parameters, so the value is written the
/// way RFC 3261 §20.10 reads it: `<sip:a@b;transport=tcp>;tag=x`.
pub(super) fn name_addr(what: &'static str, value: &str) -> Result<(String, Uri), ComposeError> {
    let value = value.trim();
    let bad = |reason: String| ComposeError::BadUri {
        what,
        value: value.to_owned(),
        reason,
    };
    let (text, uri) = match (value.find('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            (value.to_owned(), value[open + 1..close].to_owned())
        }
        (None, None) => {
            // Parameters start after the host: a user part may hold `;`.
            let host_at = value.rfind('@').map_or(0, |i| i + 1);
            match value[host_at..].find(';') {
                Some(i) => {
                    let (uri, params) = value.split_at(host_at + i);
                    let (mut on_uri, mut on_header) = (uri.trim_end().to_owned(), String::new());
                    for param in params.split(';').filter(|p| !p.trim().is_empty()) {
                        let name = param.split('=').next().unwrap_or("").trim();
                        let to = if URI_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name)) {
                            &mut on_uri
                        } else {
                            &mut on_header
                        };
                        to.push(';');
                        to.push_str(param.trim());
                    }
                    (format!("<{on_uri}>{on_header}"), on_uri)
                }
                None => (format!("<{value}>"), value.to_owned()),
            }
        }
        _ => return Err(bad("unbalanced angle brackets".into())),
    };
    let parsed = uri_of(what, &uri)?;
    if split_list(&text).len() != 1 {
        return Err(bad("only one address is allowed".into()));
    }
    Ok((text, parsed))
}

/// Check a `sip:`, `sips:` or `tel:` URI. rsip checks it, but knows no
/// IPv6 reference (`sip:bob@[::1]:5090` reads as a bad port to it): such
/// a host is checked by the standard library's address parser, and the
/// rest by rsip with a stand-in host.
pub(super) fn uri_of(what: &'static str, uri: &str) -> Result<Uri, ComposeError> {
    let bad = |reason: String| ComposeError::BadUri {
        what,
        value: uri.to_owned(),
        reason,
    };
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("sip:") || lower.starts_with("sips:") || lower.starts_with("tel:")) {
        return Err(bad("expected a sip:, sips: or tel: URI".into()));
    }
    if uri.contains(char::is_whitespace) {
        return Err(bad("a URI has no white space".into()));
    }
    let (scheme, rest) = uri.split_once(':').unwrap_or_default();
    let host_at = if scheme.eq_ignore_ascii_case("tel") {
        0
    } else {
        rest.rfind('@').map_or(0, |i| i + 1)
    };
    let hostport_end = rest[host_at..]
        .find([';', '?'])
        .map_or(rest.len(), |i| host_at + i);
    let hostport = &rest[host_at..hostport_end];
    let (host, checked) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (addr, port) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 reference needs its closing `]`".into()))?;
            addr.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad(format!("{addr:?} is not an IPv6 address")))?;
            let port_ok = port.is_empty()
                || port
                    .strip_prefix(':')
                    .is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(bad(format!(
                    "{port:?} after the IPv6 reference: expected :PORT"
                )));
            }
            let stand_in = format!(
                "{scheme}:{}ipv6.invalid{port}{}",
                &rest[..host_at],
                &rest[hostport_end..]
            );
            (format!("[{addr}]"), stand_in)
        }
        None => (
            hostport.split(':').next().unwrap_or_default().to_owned(),
            uri.to_owned(),
        ),
    };
    rsip::Uri::try_from(checked.as_str()).map_err(|e| bad(e.to_string()))?;
    Ok(Uri {
        text: uri.to_owned(),
        scheme: scheme.to_ascii_lowercase(),
        host,
        hostport: hostport.to_owned(),
    })
}

pub(super) fn host_of(uri: &Uri) -> String {
    uri.host.clone()
}

/// The URI without its `?headers` (not allowed in a Request-URI or a
/// Contact made from it).
pub(super) fn bare_uri(uri: &Uri) -> String {
    let host_at = uri.text.rfind('@').map_or(0, |i| i + 1);
    match uri.text[host_at..].find('?') {
        Some(i) => uri.text[..host_at + i].to_owned(),
        None => uri.text.clone(),
    }
}

pub(super) fn add_extra_and_body(
    m: &mut Message,
    headers: &[(String, String)],
    body: &Option<Body>,
) -> Result<(), ComposeError> {
    for (name, value) in headers {
        let name = name.trim();
        if !super::names::is_token(name) || value.contains(['\r', '\n']) {
            return Err(ComposeError::BadHeader(format!("{name}: {value}")));
        }
        m.push_header(name, value.trim());
    }
    match body {
        Some(b) => {
            m.push_header("Content-Type", &b.content_type);
            m.set_body(b.bytes.clone());
        }
        None => m.set_body(Vec::new()),
    }
    Ok(())
}

/// Split `Name: value` (as given to `--header`).
pub fn parse_header_arg(arg: &str) -> Result<(String, String), ComposeError> {
    arg.split_once(':')
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| ComposeError::BadHeader(arg.to_owned()))
}

/// The request parameters as bytes, for [`Context::mix`]: in deterministic
/// mode two different requests built with one seed get different tags,
/// branches and Call-IDs.
fn fingerprint(p: &RequestParams) -> Vec<u8> {
    let mut out = Vec::new();
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let fields = [
        p.method.clone(),
        p.from.clone(),
        p.to.clone(),
        opt(&p.request_uri),
        opt(&p.call_id),
        p.cseq.map(|c| c.to_string()).unwrap_or_default(),
        opt(&p.contact),
        opt(&p.via),
        p.transport.as_str().to_owned(),
    ];
    for f in fields
        .iter()
        .chain(p.headers.iter().flat_map(|(n, v)| [n, v]))
    {
        out.extend_from_slice(&(f.len() as u64).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    if let Some(b) = &p.body {
        out.extend_from_slice(b.content_type.as_bytes());
        out.push(0);
        out.extend_from_slice(&b.bytes);
    }
    out
}

/// Build a request. Generated: From tag, Via branch, Call-ID, CSeq 1,
/// Contact (INVITE, REGISTER, UPDATE, SUBSCRIBE, REFER) from the From URI.
pub fn build_request(p: &RequestParams, ctx: &mut Context) -> Result<Message, ComposeError> {
    ctx.mix("request", &fingerprint(p));
    let method = p.method.trim().to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
        return Err(ComposeError::BadMethod(p.method.clone()));
    }
    let (mut from, from_uri) = name_addr("From", &p.from)?;
    let (to, to_uri) = name_addr("To", &p.to)?;
    let request_uri = match &p.request_uri {
        Some(u) => {
            uri_of("Request-URI", u)?;
            u.clone()
        }
        // A REGISTER goes to the registrar of the AOR's domain (RFC 3261 §10.2).
        None if method == "REGISTER" => format!("{}:{}", to_uri.scheme, to_uri.hostport),
        None => bare_uri(&to_uri),
    };
    let has_tag = |s: &str| {
        s.rsplit_once('>')
            .is_some_and(|(_, params)| params.to_ascii_lowercase().contains(";tag="))
    };
    if !has_tag(&from) {
        from = format!("{from};tag={}", ctx.token(5));
    }
    let sent_by = p.via.clone().unwrap_or_else(|| host_of(&from_uri));
    if sent_by.is_empty() || sent_by.contains(char::is_whitespace) || sent_by.contains(';') {
        return Err(ComposeError::BadUri {
            what: "Via sent-by",
            value: sent_by,
            reason: "expected HOST[:PORT]".into(),
        });
    }
    let branch = format!("z9hG4bK{}", ctx.token(8));
    let call_id = match &p.call_id {
        Some(c) => c.clone(),
        None => format!("{}@{}", ctx.token(10), host_of(&from_uri)),
    };
    let cseq_method = method.clone();
    let contact = match &p.contact {
        Some(c) => Some(name_addr("Contact", c)?.0),
        None if matches!(
            method.as_str(),
            "INVITE" | "REGISTER" | "UPDATE" | "SUBSCRIBE" | "REFER"
        ) =>
        {
            Some(format!("<{}>", bare_uri(&from_uri)))
        }
        None => None,
    };

    let mut m = Message::new(StartLine::Request {
        method,
        uri: request_uri,
    });
    m.push_header(
        "Via",
        &format!("SIP/2.0/{} {sent_by};branch={branch}", p.transport.as_str()),
    );
    m.push_header("Max-Forwards", "70");
    m.push_header("From", &from);
    m.push_header("To", &to);
    m.push_header("Call-ID", &call_id);
    m.push_header("CSeq", &format!("{} {cseq_method}", p.cseq.unwrap_or(1)));
    if let Some(c) = contact {
        m.push_header("Contact", &c);
    }
    add_extra_and_body(&mut m, &p.headers, &p.body)?;
    Ok(m)
}

/// Build a response to `request` (RFC 3261 §8.2.6): Via (all, in order),
/// From, Call-ID and CSeq copied byte for byte, To copied with a tag added
/// (except for 100), Record-Route copied for dialog-creating responses
/// (§12.1.1), and a Contact on 1xx/2xx responses to INVITE.
pub fn build_response(
    request: &Message,
    p: &ResponseParams,
    ctx: &mut Context,
) -> Result<Message, ComposeError> {
    if !(100..=699).contains(&p.code) {
        return Err(ComposeError::BadStatus(p.code));
    }
    let Some(method) = request.method().map(str::to_owned) else {
        return Err(ComposeError::NotARequest);
    };
    // Every response to one request shares its To tag (one dialog), so only
    // the request feeds deterministic mode here.
    ctx.mix("response to", &request.to_bytes());
    // Fail early, with the header named, on requests that lack what a response copies.
    request.vias()?;
    request.from_header()?;
    request.call_id()?;
    request.cseq()?;
    let to_value = request.header("To").ok_or(HeaderError::Missing("To"))?;
    let to_has_tag = request.to_tag()?.is_some();

    let reason = p
        .reason
        .clone()
        .unwrap_or_else(|| reason_phrase(p.code).to_owned());
    let mut m = Message::new(StartLine::Response {
        code: p.code,
        reason,
    });
    let copy = |m: &mut Message, name: &str| {
        for h in request.headers().iter().filter(|h| h.is(name)) {
            m.push_raw(h.clone());
        }
    };
    copy(&mut m, "Via");
    let dialog_creating =
        (101..300).contains(&p.code) && matches!(method.as_str(), "INVITE" | "SUBSCRIBE" | "REFER");
    if dialog_creating {
        copy(&mut m, "Record-Route");
    }
    // docs/SPEC.md §3.4: responses carry the request's entries back, in order
    // (none of a request with too many: no amplification, H5).
    if !super::route_security::too_many(request) {
        copy(&mut m, super::route_security::ROUTE_SECURITY);
    }
    copy(&mut m, "From");
    if to_has_tag || p.code == 100 {
        copy(&mut m, "To");
    } else {
        let tag = p.to_tag.clone().unwrap_or_else(|| ctx.token(5));
        m.push_header("To", &format!("{to_value};tag={tag}"));
    }
    copy(&mut m, "Call-ID");
    copy(&mut m, "CSeq");
    let contact = match &p.contact {
        Some(c) => Some(name_addr("Contact", c)?.0),
        None if dialog_creating => request.request_uri().map(|u| format!("<{u}>")),
        None => None,
    };
    if let Some(c) = contact {
        m.push_header("Contact", &c);
    }
    add_extra_and_body(&mut m, &p.headers, &p.body)?;
    Ok(m)
}

/// A stateless error response to a request that may itself be malformed
/// (RFC 3261 §16.7 / §8.2.6, as a proxy answers a 400): the Via lines,
/// From, To, Call-ID and CSeq copied byte for byte as far as they are
/// present, a To tag (`to_tag`, else a random one) added when the To line
/// has none, then `headers`.
/// Only a Via and a CSeq are needed: without them there is nowhere to
/// send the answer, or no transaction to match it to.
pub fn stateless_error(
    request: &Message,
    code: u16,
    reason: &str,
    headers: &[(String, String)],
    to_tag: Option<&str>,
    ctx: &mut Context,
) -> Result<Message, ComposeError> {
    if !(300..=699).contains(&code) {
        return Err(ComposeError::BadStatus(code));
    }
    if !request.is_request() {
        return Err(ComposeError::NotARequest);
    }
    request.header("Via").ok_or(HeaderError::Missing("Via"))?;
    request.header("CSeq").ok_or(HeaderError::Missing("CSeq"))?;
    ctx.mix("response to", &request.to_bytes());
    let mut m = Message::new(StartLine::Response {
        code,
        reason: reason.replace(|c: char| c.is_control(), " "),
    });
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for h in request.headers().iter().filter(|h| h.is(name)) {
            let tagless = name == "To"
                && super::syntax::name_addr(h.value()).is_ok_and(|n| n.tag().is_none());
            if tagless {
                let tag = to_tag.map_or_else(|| ctx.token(5), str::to_owned);
                m.push_header(h.name(), &format!("{};tag={tag}", h.value()));
            } else {
                m.push_raw(h.clone());
            }
        }
    }
    add_extra_and_body(&mut m, headers, &None)?;
    Ok(m)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::sip) fn ctx() -> Context {
        Context::new(Some(b"test"), None)
    }

    pub(in crate::sip) fn invite() -> Message {
        let p = RequestParams {
            method: "invite".into(),
            from: "sip:alice@a.example.com".into(),
            to: "Bob <sip:bob@b.example.com>".into(),
            body: Some(Body {
                content_type: "application/sdp".into(),
                bytes: b"v=0\r\n".to_vec(),
            }),
            ..Default::default()
        };
        build_request(&p, &mut ctx()).unwrap()
    }

    /// Item 20: a bare `sip:bob@b;tag=x1` is To with a tag, not a URI
    /// parameter; From gets exactly one tag.
    #[test]
    fn a_bare_address_keeps_its_tag_as_a_header_parameter() {
        let p = RequestParams {
            method: "BYE".into(),
            from: "sip:alice@a.example.com;tag=a1".into(),
            to: "sip:bob@b.example.com;tag=x1".into(),
            ..Default::default()
        };
        let m = build_request(&p, &mut ctx()).unwrap();
        assert_eq!(m.header("To"), Some("<sip:bob@b.example.com>;tag=x1"));
        assert_eq!(m.header("From"), Some("<sip:alice@a.example.com>;tag=a1"));
        assert_eq!(m.to_tag().unwrap().as_deref(), Some("x1"));
        assert_eq!(m.request_uri(), Some("sip:bob@b.example.com"));
    }

    /// Issue 26: `;transport=` and `;lr` given bare stay on the URI (the
    /// Request-URI keeps them), a tag beside them goes on the header.
    #[test]
    fn a_bare_address_keeps_its_uri_parameters_on_the_uri() {
        let p = RequestParams {
            method: "INVITE".into(),
            from: "sip:alice@a.example.com".into(),
            to: "sip:bob@127.0.0.1:5090;transport=tcp;lr;tag=x1".into(),
            ..Default::default()
        };
        let m = build_request(&p, &mut ctx()).unwrap();
        assert_eq!(
            m.header("To"),
            Some("<sip:bob@127.0.0.1:5090;transport=tcp;lr>;tag=x1")
        );
        assert_eq!(
            m.request_uri(),
            Some("sip:bob@127.0.0.1:5090;transport=tcp;lr")
        );
        // A user part's own `;` is not a parameter.
        let p = RequestParams {
            to: "sip:+12125551212;npdi@b.example.com;user=phone".into(),
            ..p
        };
        let m = build_request(&p, &mut ctx()).unwrap();
        assert_eq!(
            m.header("To"),
            Some("<sip:+12125551212;npdi@b.example.com;user=phone>")
        );
    }

    /// Issue 26: an IPv6 reference in a URI (RFC 3261 §19.1.1, RFC 5118).
    #[test]
    fn ipv6_references_compose() {
        let p = RequestParams {
            method: "INVITE".into(),
            from: "sip:alice@[2001:db8::10]".into(),
            to: "sip:bob@[::1]:5090".into(),
            ..Default::default()
        };
        let m = build_request(&p, &mut ctx()).unwrap();
        assert_eq!(m.request_uri(), Some("sip:bob@[::1]:5090"));
        assert_eq!(m.header("To"), Some("<sip:bob@[::1]:5090>"));
        assert_eq!(
            m.top_via().unwrap().sent_by(),
            "[2001:db8::10]",
            "the From host in brackets"
        );
        assert!(m.call_id().unwrap().ends_with("@[2001:db8::10]"));
        let p = RequestParams {
            method: "REGISTER".into(),
            to: "sip:bob@[::1]:5090".into(),
            ..p
        };
        let m = build_request(&p, &mut ctx()).unwrap();
        assert_eq!(m.request_uri(), Some("sip:[::1]:5090"));
        for bad in [
            "sip:bob@[::1",
            "sip:bob@[::g]:5090",
            "sip:bob@[::1]:port",
            "sip:bob@[::1]x",
            "sip:bob@[::1].example.com",
            "sip:bob@[::1]:",
        ] {
            let p = RequestParams {
                method: "INVITE".into(),
                from: "sip:alice@a.example.com".into(),
                to: bad.into(),
                ..Default::default()
            };
            assert!(build_request(&p, &mut ctx()).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_has_the_mandatory_headers() {
        let m = invite();
        assert_eq!(m.request_uri(), Some("sip:bob@b.example.com"));
        assert!(
            m.vias().unwrap()[0]
                .branch()
                .unwrap()
                .to_string()
                .starts_with("z9hG4bK")
        );
        assert!(m.from_tag().unwrap().is_some());
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(m.cseq().unwrap().method, "INVITE");
        assert_eq!(m.header("Content-Length"), Some("5"));
        assert_eq!(m.contacts().unwrap().len(), 1);
        assert_eq!(Message::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn register_targets_the_domain() {
        let p = RequestParams {
            method: "REGISTER".into(),
            from: "sip:alice@a.example.com".into(),
            to: "sip:alice@a.example.com".into(),
            ..Default::default()
        };
        assert_eq!(
            build_request(&p, &mut ctx()).unwrap().request_uri(),
            Some("sip:a.example.com")
        );
    }

    #[test]
    fn response_copies_and_tags() {
        let req = invite();
        let p = ResponseParams {
            code: 200,
            ..Default::default()
        };
        let resp = build_response(&req, &p, &mut ctx()).unwrap();
        assert_eq!(resp.status(), Some(200));
        for name in ["Via", "From", "Call-ID", "CSeq"] {
            assert_eq!(resp.header(name), req.header(name), "{name}");
        }
        assert!(resp.to_tag().unwrap().is_some());
        assert_eq!(resp.header("Contact"), Some("<sip:bob@b.example.com>"));
        let trying = build_response(
            &req,
            &ResponseParams {
                code: 100,
                ..Default::default()
            },
            &mut ctx(),
        )
        .unwrap();
        assert_eq!(trying.to_tag().unwrap(), None);
        assert!(matches!(
            build_response(&resp, &p, &mut ctx()),
            Err(ComposeError::NotARequest)
        ));
    }

    #[test]
    fn bad_inputs_are_refused() {
        let mut p = RequestParams {
            method: "INVITE".into(),
            from: "alice".into(),
            to: "sip:b@h".into(),
            ..Default::default()
        };
        assert!(matches!(
            build_request(&p, &mut ctx()),
            Err(ComposeError::BadUri { what: "From", .. })
        ));
        p.from = "sip:a@h".into();
        p.headers = vec![("Bad Name".into(), "x".into())];
        assert!(matches!(
            build_request(&p, &mut ctx()),
            Err(ComposeError::BadHeader(_))
        ));
    }
}
