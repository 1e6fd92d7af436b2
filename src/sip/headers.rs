//! Typed access to header values. rsip parses the values; the framing and
//! the bytes stay in [`Message`].

use rsip::headers::untyped::ToTypedHeader;
use rsip::headers::{self as rh, UntypedHeader};

use super::message::Message;
use super::syntax::{self, NameAddr, Via};

/// A header that is missing or whose value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("missing {0} header")]
    /// A required header is absent.
    Missing(&'static str),
    #[error("malformed {name} header {value:?}: {reason}")]
    /// A header value that does not parse.
    Malformed {
        /// The header.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl HeaderError {
    /// A header that is missing or malformed makes the message fail.
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Failed
    }

    /// A server answers a request with such a header 400 Bad Request.
    pub fn sip_status(&self) -> super::status::Status {
        super::status::Status::BadRequest
    }

    fn malformed(name: &'static str, value: &str, reason: impl ToString) -> Self {
        HeaderError::Malformed {
            name,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// `CSeq`: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number.
    pub seq: u32,
    /// The method.
    pub method: String,
}

/// A MIME type with its parameters (`Content-Type`), values unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// `type/subtype`, lower case.
    pub mime: String,
    /// Parameters in order; names lower case, values unquoted.
    pub params: Vec<(String, String)>,
}

impl ContentType {
    /// A parameter's value by (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the type is `mime` (case-insensitive).
    pub fn is(&self, mime: &str) -> bool {
        self.mime.eq_ignore_ascii_case(mime)
    }
}

/// `Content-Disposition`: disposition type and parameters, values unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDisposition {
    /// `render`, `session`, `attachment`, ... lower case.
    pub kind: String,
    /// Parameters in order; names lower case, values unquoted.
    pub params: Vec<(String, String)>,
}

impl ContentDisposition {
    /// A parameter's value by (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    match v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_owned(),
    }
}

/// Split a header value at top-level commas (not inside quotes or `<...>`),
/// as RFC 3261 §7.3.1 allows for list-valued headers.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

impl Message {
    /// The value of the first header of this name (compact forms match).
    #[inline]
    pub fn header(&self, name: &str) -> Option<&str> {
        let k = super::names::known(name);
        self.headers()
            .iter()
            .find(|h| h.is_named(name, k))
            .map(|h| h.value())
    }

    /// The values of every header line of this name, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let k = super::names::known(name);
        self.headers()
            .iter()
            .filter(|h| h.is_named(name, k))
            .map(|h| h.value())
            .collect()
    }

    /// Every comma-separated element of every header line of this name.
    pub fn header_list(&self, name: &str) -> Vec<&str> {
        self.header_values(name)
            .into_iter()
            .flat_map(split_list)
            .collect()
    }

    fn required(&self, name: &'static str) -> Result<&str, HeaderError> {
        self.header(name).ok_or(HeaderError::Missing(name))
    }

    /// The Request-URI, for requests.
    pub fn request_uri(&self) -> Option<&str> {
        match self.start_line() {
            super::StartLine::Request { uri, .. } => Some(uri),
            super::StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI parsed, for requests.
    pub fn request_uri_parsed(&self) -> Option<Result<rsip::Uri, HeaderError>> {
        self.request_uri().map(|u| {
            rsip::Uri::try_from(u).map_err(|e| HeaderError::malformed("Request-URI", u, e))
        })
    }

    /// Every Via entry, topmost first.
    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        let mut out = Vec::new();
        for v in self.header_values("Via") {
            out.extend(syntax::via_list(v).map_err(|e| HeaderError::malformed("Via", v, e))?);
        }
        Ok(out)
    }

    /// The topmost Via entry (the others are not read).
    pub fn top_via(&self) -> Result<&Via, HeaderError> {
        self.top_via_with(|| {
            let v = self.required("Via")?;
            syntax::first_via(v).map_err(|e| HeaderError::malformed("Via", v, e))
        })
    }

    fn name_addr_header(&self, name: &'static str) -> Result<NameAddr, HeaderError> {
        let v = self.required(name)?;
        syntax::name_addr(v).map_err(|e| HeaderError::malformed(name, v, e))
    }

    /// The From header.
    pub fn from_header(&self) -> Result<NameAddr, HeaderError> {
        self.name_addr_header("From")
    }

    /// The To header.
    pub fn to_header(&self) -> Result<NameAddr, HeaderError> {
        self.name_addr_header("To")
    }

    /// The From tag, if any.
    pub fn from_tag(&self) -> Result<Option<String>, HeaderError> {
        Ok(self.from_header()?.tag().map(str::to_owned))
    }

    /// The To tag, if any.
    pub fn to_tag(&self) -> Result<Option<String>, HeaderError> {
        Ok(self.to_header()?.tag().map(str::to_owned))
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&str, HeaderError> {
        let v = self.required("Call-ID")?;
        if v.is_empty() || v.contains(char::is_whitespace) {
            return Err(HeaderError::malformed("Call-ID", v, "must be one word"));
        }
        Ok(v)
    }

    /// The CSeq.
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        let v = self.required("CSeq")?;
        // Not rsip's typed CSeq: it knows only the registered methods, and
        // any token is a valid method (RFC 3261 §20.16).
        let (seq, method) = v
            .split_once(char::is_whitespace)
            .ok_or_else(|| HeaderError::malformed("CSeq", v, "expected `NUMBER METHOD`"))?;
        let seq: u32 = seq.parse().map_err(|_| {
            HeaderError::malformed("CSeq", v, "sequence number must be 0 to 2^32-1")
        })?;
        let method = method.trim();
        if !super::names::is_token(method) {
            return Err(HeaderError::malformed("CSeq", v, "method is not a token"));
        }
        Ok(CSeq {
            seq,
            method: method.to_owned(),
        })
    }

    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Result<Option<u32>, HeaderError> {
        self.header("Max-Forwards")
            .map(|v| {
                v.parse::<u8>()
                    .map(u32::from)
                    .map_err(|_| HeaderError::malformed("Max-Forwards", v, "expected 0 to 255"))
            })
            .transpose()
    }

    /// Every Contact entry (`*` in a REGISTER is not a URI and is skipped).
    pub fn contacts(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.header_list("Contact")
            .into_iter()
            .filter(|v| *v != "*")
            .map(|v| syntax::name_addr(v).map_err(|e| HeaderError::malformed("Contact", v, e)))
            .collect()
    }

    /// The address of record of a header such as From or To: its URI
    /// without display name and parameters (`sip:alice@a.example.com`).
    pub fn aor(&self, header: &str) -> Option<&str> {
        self.header(header)
            .map(|v| without_uri_params(addr_spec(v).trim()))
    }

    /// The sender's header: From for a request, To for a response.
    pub fn sender_header(&self) -> &'static str {
        if self.is_request() { "From" } else { "To" }
    }

    /// The receiver's header: To for a request, From for a response.
    pub fn receiver_header(&self) -> &'static str {
        if self.is_request() { "To" } else { "From" }
    }

    /// Content-Type, if present.
    pub fn content_type(&self) -> Result<Option<ContentType>, HeaderError> {
        self.header("Content-Type")
            .map(parse_content_type)
            .transpose()
    }

    /// Content-ID without its angle brackets, if present.
    pub fn content_id(&self) -> Option<&str> {
        self.header("Content-ID").map(strip_angle)
    }

    /// Content-Disposition, if present.
    pub fn content_disposition(&self) -> Result<Option<ContentDisposition>, HeaderError> {
        self.header("Content-Disposition")
            .map(parse_content_disposition)
            .transpose()
    }
}

/// The host of the first `sip:`/`sips:` URI in a name-addr value.
pub fn uri_host(value: &str) -> Option<String> {
    let start = value
        .find("sip:")
        .map(|i| i + 4)
        .or_else(|| value.find("sips:").map(|i| i + 5))?;
    let rest = &value[start..];
    let end = rest.find(['>', ';', '?', ' ']).unwrap_or(rest.len());
    let hostport = rest[..end].rsplit('@').next()?;
    let host = if hostport.starts_with('[') {
        hostport.split_inclusive(']').next()?
    } else {
        hostport.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// The URI of a name-addr or addr-spec value: `sip:x@y` from
/// `Name <sip:x@y>;tag=...`, or from `sip:x@y;tag=...`.
pub fn addr_spec(v: &str) -> &str {
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v).trim(),
    }
}

/// A URI without its parameters and headers (`sip:bob@b.example.com`
/// from `sip:bob@b.example.com;transport=tcp`): those after the host, not
/// a user part's own (`sip:+1;npdi@host`).
pub fn without_uri_params(uri: &str) -> &str {
    let host_at = uri.rfind('@').map_or(0, |i| i + 1);
    match uri[host_at..].find([';', '?']) {
        Some(i) => &uri[..host_at + i],
        None => uri,
    }
}

/// `<id@host>` → `id@host`.
pub fn strip_angle(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(v)
}

/// Parse a Content-Type value (also used for MIME part headers).
///
/// `type/subtype` up to the first `;`, then `; name=value` parameters (a
/// value quoted, or up to the next `;`), each perhaps followed by a `,`:
/// the grammar rsip's media-type reader accepts, read here in one pass
/// without copying (every message a relay checks has one; a test holds
/// this and rsip's reader together).
pub fn parse_content_type(v: &str) -> Result<ContentType, HeaderError> {
    let mut params = Vec::new();
    let mime = read_content_type(v, |name, value| {
        params.push((name.trim().to_ascii_lowercase(), unquote(value)));
    })?;
    Ok(ContentType {
        mime: mime.to_ascii_lowercase(),
        params,
    })
}

/// The `type/subtype` of a Content-Type value as written (trimmed, case
/// kept), its parameters checked as [`parse_content_type`] checks them
/// but not kept: for a caller that asks only the type.
pub fn content_type_mime(v: &str) -> Result<&str, HeaderError> {
    read_content_type(v, |_, _| {})
}

/// The one reader of a Content-Type value: the trimmed `type/subtype`,
/// and each parameter's name and (still quoted) value to `param`.
fn read_content_type<'a>(
    v: &'a str,
    mut param: impl FnMut(&'a str, &'a str),
) -> Result<&'a str, HeaderError> {
    let find = |s: &str, b: u8| memchr::memchr(b, s.as_bytes());
    let (mime, mut rest) = v.split_at(find(v, b';').unwrap_or(v.len()));
    // `[ \t]* ; [ \t]* name = value ,?`; what does not fit ends the list.
    while let Some(after) = rest.trim_start_matches([' ', '\t']).strip_prefix(';') {
        let after = after.trim_start_matches([' ', '\t']);
        let Some(eq) = find(after, b'=') else {
            break;
        };
        let (name, after) = (&after[..eq], &after[eq + 1..]);
        let quoted = after
            .strip_prefix('"')
            .and_then(|q| find(q, b'"').map(|end| (&q[..end], &q[end + 1..])));
        let (value, after) =
            quoted.unwrap_or_else(|| after.split_at(find(after, b';').unwrap_or(after.len())));
        param(name, value);
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    if !rest.is_empty() {
        return Err(HeaderError::malformed(
            "Content-Type",
            v,
            format!("cannot read the parameters at {rest:?}"),
        ));
    }
    let mime = mime.trim();
    match mime.split_once('/') {
        Some((t, s)) if !t.is_empty() && !s.is_empty() && !s.contains('/') => Ok(mime),
        _ => Err(HeaderError::malformed(
            "Content-Type",
            v,
            "expected type/subtype",
        )),
    }
}

/// Parse a Content-Disposition value.
pub fn parse_content_disposition(v: &str) -> Result<ContentDisposition, HeaderError> {
    use rsip::headers::typed::content_disposition::DisplayType;
    let typed = rh::ContentDisposition::new(v)
        .typed()
        .map_err(|e| HeaderError::malformed("Content-Disposition", v, e))?;
    let kind = match typed.display_type {
        DisplayType::Render => "render".to_owned(),
        DisplayType::Session => "session".to_owned(),
        DisplayType::Icon => "icon".to_owned(),
        DisplayType::Alert => "alert".to_owned(),
        DisplayType::Other(o) => o.trim().to_ascii_lowercase(),
    };
    if kind.is_empty() {
        return Err(HeaderError::malformed(
            "Content-Disposition",
            v,
            "missing disposition type",
        ));
    }
    let params = typed
        .display_params
        .into_iter()
        .map(|p| (p.0.trim().to_ascii_lowercase(), unquote(&p.1)))
        .collect();
    Ok(ContentDisposition { kind, params })
}

#[cfg(test)]
mod tests {
    /// The Content-Type reader gives what rsip's media-type reader (which
    /// it replaced) gave, then lower-cased and unquoted, on values
    /// ordinary and odd; errors where that failed.
    #[test]
    fn content_type_reads_as_rsip_did() {
        use rsip::headers::typed::MediaType;
        use rsip::headers::untyped::ToTypedHeader;
        fn rsip_read(v: &str) -> Result<super::ContentType, ()> {
            let typed = rsip::headers::ContentType::new(v).typed().map_err(|_| ())?;
            let (mime, params) = match typed.0 {
                MediaType::Sdp(p) => ("application/sdp".to_owned(), p),
                MediaType::Other(m, p) => (m.trim().to_ascii_lowercase(), p),
            };
            match mime.split_once('/') {
                Some((t, s)) if !t.is_empty() && !s.is_empty() && !s.contains('/') => {}
                _ => return Err(()),
            }
            let params = params
                .into_iter()
                .map(|p| (p.0.trim().to_ascii_lowercase(), super::unquote(&p.1)))
                .collect();
            Ok(super::ContentType { mime, params })
        }
        let values = [
            "application/sdp",
            "Application/SDP",
            " application/sdp ",
            "application/pkcs7-mime; smime-type=authEnveloped-data; name=smime.p7m",
            "application/pkcs7-mime;smime-type=\"authEnveloped-data\";name=\"smime.p7m\"",
            "multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"b;1=2\"",
            "multipart/mixed;boundary=unique-boundary-1",
            "text/plain; charset=utf-8, ",
            "text/plain; a=1,; b=2",
            "text/plain ;\tA = \" x \" ; b=",
            "text/plain; a=\"open",
            "text/plain; a=\"x\"y",
            "text/plain; a=\"x\\\"y\"",
            "text/plain; a; b=c",
            "text/plain;",
            "text/plain; ",
            "text/plain;=x",
            "text/plain; a==b",
            "text/plain; a=b;",
            "text/plain x",
            "text",
            "text/",
            "/plain",
            "a/b/c",
            "",
            ";a=b",
            "text/plain;a=b,c=d",
            "text/plain; a=é",
        ];
        let mut refused = 0;
        for v in values {
            let read = super::parse_content_type(v).ok();
            assert_eq!(read, rsip_read(v).ok(), "{v:?}");
            refused += usize::from(read.is_none());
        }
        // Both readers refuse some and accept most.
        assert!(
            (5..values.len() / 2).contains(&refused),
            "{refused} refused"
        );
    }

    #[test]
    fn an_aor_drops_the_uri_parameters_after_its_host() {
        use super::without_uri_params as w;
        assert_eq!(
            w("sip:bob@example.com;transport=tcp"),
            "sip:bob@example.com"
        );
        assert_eq!(
            w("sip:+1;npdi@example.com;user=phone"),
            "sip:+1;npdi@example.com"
        );
        assert_eq!(w("sip:example.com;lr"), "sip:example.com");
        assert_eq!(w("sip:[::1]:5060?x=y"), "sip:[::1]:5060");
        let m = crate::sip::Message::parse(
            b"BYE sip:a@h SIP/2.0\r\nFrom: \"Bob\" <sip:bob@example.com;transport=tcp>;tag=1\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(m.aor("From"), Some("sip:bob@example.com"));
    }

    use super::*;

    #[test]
    fn uri_hosts() {
        assert_eq!(
            uri_host("Alice <sip:alice@a.example.com>;tag=1").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            uri_host("sip:a.example.com:5060;lr").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            uri_host("<sips:u@[2001:db8::1]:5061>").as_deref(),
            Some("[2001:db8::1]")
        );
        assert_eq!(uri_host("tel:+1"), None);
    }

    const MSG: &[u8] = b"INVITE sip:bob@b.example.com SIP/2.0\r\n\
v: SIP/2.0/TCP p.example.com;branch=z9hG4bKp1, SIP/2.0/UDP a.example.com:5060;branch=z9hG4bKa1\r\n\
Max-Forwards: 69\r\n\
f: \"Alice, A.\" <sip:alice@a.example.com>;tag=1928301774\r\n\
t: <sip:bob@b.example.com>\r\n\
i: a84b4c76e66710@a.example.com\r\n\
CSeq: 314159 INVITE\r\n\
m: <sip:alice@192.0.2.1:5060>\r\n\
c: application/pkcs7-mime; smime-type=authEnveloped-data; name=\"smime.p7m\"\r\n\
Content-Disposition: attachment; filename=smime.p7m; handling=required\r\n\
Content-ID: <sdp-1@a.example.com>\r\n\
l: 0\r\n\r\n";

    #[test]
    fn typed_values() {
        let m = Message::parse(MSG).unwrap();
        let vias = m.vias().unwrap();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[0].branch(), Some("z9hG4bKp1"));
        assert_eq!(
            m.from_header().unwrap().display_name.as_deref(),
            Some("Alice, A.")
        );
        assert_eq!(m.from_tag().unwrap().as_deref(), Some("1928301774"));
        assert_eq!(m.to_tag().unwrap(), None);
        assert_eq!(m.to_header().unwrap().uri, "sip:bob@b.example.com");
        assert_eq!(m.call_id().unwrap(), "a84b4c76e66710@a.example.com");
        assert_eq!(
            m.cseq().unwrap(),
            CSeq {
                seq: 314159,
                method: "INVITE".into()
            }
        );
        assert_eq!(m.max_forwards().unwrap(), Some(69));
        assert_eq!(m.contacts().unwrap()[0].uri, "sip:alice@192.0.2.1:5060");
        let ct = m.content_type().unwrap().unwrap();
        assert!(ct.is("application/pkcs7-mime"));
        assert_eq!(ct.param("smime-type"), Some("authEnveloped-data"));
        assert_eq!(ct.param("name"), Some("smime.p7m"));
        assert_eq!(m.content_id(), Some("sdp-1@a.example.com"));
        let cd = m.content_disposition().unwrap().unwrap();
        assert_eq!(
            (cd.kind.as_str(), cd.param("handling")),
            ("attachment", Some("required"))
        );
        assert_eq!(m.request_uri(), Some("sip:bob@b.example.com"));
    }

    #[test]
    fn list_splitting_respects_quotes_and_brackets() {
        assert_eq!(
            split_list("\"a, b\" <sip:x,y@h>;p=1, <sip:z@h>"),
            vec!["\"a, b\" <sip:x,y@h>;p=1", "<sip:z@h>"]
        );
    }

    #[test]
    fn bad_values_are_errors() {
        let m = Message::parse(b"BYE sip:x SIP/2.0\r\nCSeq: abc BYE\r\nMax-Forwards: 300\r\n\r\n")
            .unwrap();
        assert!(matches!(
            m.cseq(),
            Err(HeaderError::Malformed { name: "CSeq", .. })
        ));
        assert!(m.max_forwards().is_err());
        assert_eq!(m.call_id(), Err(HeaderError::Missing("Call-ID")));
    }
}
