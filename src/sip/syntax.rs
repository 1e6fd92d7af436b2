//! The RFC 3261 §25 grammar of the header values a relay must read:
//! `name-addr` / `addr-spec` (From, To, Contact), `via-parm`, Request-URI.
//!
//! ```text
//! name-addr      =  [ display-name ] LAQUOT addr-spec RAQUOT
//! display-name   =  *(token LWS)/ quoted-string
//! LAQUOT         =  SWS "<"      RAQUOT  =  ">" SWS
//! via-parm       =  sent-protocol LWS sent-by *( SEMI via-params )
//! sent-protocol  =  protocol-name SLASH protocol-version SLASH transport
//! SLASH          =  SWS "/" SWS  SEMI  =  SWS ";" SWS  EQUAL  =  SWS "=" SWS
//! ```
//!
//! rsip rejects much of what RFC 4475 calls valid (white space around
//! `/`, `;` and `=`, token display names with `~` or `` ` ``) and accepts
//! some of what it calls invalid, so these values are read here, by hand,
//! in one pass each: linear in the value. Values arrive unfolded (see
//! [`super::Message`]); LWS is any run of spaces and tabs.

use super::names::is_token;

/// A header parameter: `name` or `name=value` (quoted values unquoted).
pub type Param = (String, Option<String>);

/// A `name-addr` or `addr-spec` with its header parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name: a quoted string unquoted, or its tokens joined by one space.
    pub display_name: Option<String>,
    /// The URI, as written.
    pub uri: String,
    /// Header parameters in order (`tag`, `expires`, ...).
    pub params: Vec<Param>,
}

impl NameAddr {
    /// A parameter's value by (case-insensitive) name; `Some(None)` for one without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }
}

/// One Via entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `SIP/2.0`, white space removed.
    pub protocol: String,
    /// `UDP`, `TCP`, `TLS`, `SCTP`, or any other token.
    pub transport: String,
    /// The sent-by host (an IPv6 reference keeps its brackets).
    pub host: String,
    /// The sent-by port.
    pub port: Option<u16>,
    /// Via parameters in order.
    pub params: Vec<Param>,
}

impl Via {
    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch")
    }

    /// A parameter's value by (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }

    /// `HOST[:PORT]` as the Via carries it.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

/// A cursor over a header value.
struct Scan<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn new(s: &'a str) -> Self {
        Scan { s, at: 0 }
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.at..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn done(&self) -> bool {
        self.at >= self.s.len()
    }

    /// Skip SWS (spaces and tabs).
    fn sws(&mut self) -> bool {
        let before = self.at;
        let n = self.rest().len() - self.rest().trim_start_matches([' ', '\t']).len();
        self.at += n;
        self.at > before
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// The longest run of characters satisfying `ok`.
    fn take(&mut self, ok: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let n = rest.find(|c| !ok(c)).unwrap_or(rest.len());
        self.at += n;
        &rest[..n]
    }

    /// `quoted-string` after its opening quote: the unescaped content.
    fn quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err("unterminated quoted string (a `\"` without its closing `\"`)".into())
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '!' | '%' | '*' | '_' | '+' | '`' | '\'' | '~'
        )
}

/// Characters of a parameter value that is a token or a host (IPv6 too).
fn is_value_char(c: char) -> bool {
    is_token_char(c) || c == ':' || c == '[' || c == ']'
}

/// `*( SEMI generic-param )` until the end (or a `,` when `list`).
fn params(sc: &mut Scan<'_>, what: &str) -> Result<Vec<Param>, String> {
    let mut out = Vec::new();
    loop {
        sc.sws();
        if sc.done() {
            return Ok(out);
        }
        if !sc.eat(';') {
            return Err(format!(
                "unexpected {:?} in the {what} parameters",
                sc.rest().chars().take(16).collect::<String>()
            ));
        }
        sc.sws();
        let name = sc.take(is_token_char);
        if name.is_empty() {
            return Err(format!(
                "an empty parameter (`;;` or a trailing `;`) in {what}"
            ));
        }
        sc.sws();
        let value = if sc.eat('=') {
            sc.sws();
            if sc.eat('"') {
                Some(sc.quoted()?)
            } else {
                let v = sc.take(is_value_char);
                if v.is_empty() {
                    return Err(format!("parameter {name} has `=` but no value in {what}"));
                }
                Some(v.to_owned())
            }
        } else {
            None
        };
        out.push((name.to_owned(), value));
    }
}

/// Whether `uri` is an `absoluteURI` or SIP URI as a header may carry it:
/// `scheme ":" ...`, no white space, quotes or angle brackets; a sip/sips
/// URI has a host.
pub fn check_uri(uri: &str) -> Result<(), String> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(format!("{uri:?} is not a URI (no `scheme:`)"));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return Err(format!("{uri:?}: {scheme:?} is not a URI scheme"));
    }
    if rest.is_empty() {
        return Err(format!("{uri:?} is empty after its scheme"));
    }
    if let Some(c) = uri
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(*c))
    {
        return Err(format!("{uri:?} contains {c:?}, which a URI cannot"));
    }
    if is_sip(scheme) {
        let host = hostpart(rest).split([';', '?']).next().unwrap_or("");
        if host.is_empty() || host.starts_with(':') {
            return Err(format!("{uri:?} has no host"));
        }
    }
    Ok(())
}

fn is_sip(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")
}

/// What follows the userinfo of a SIP URI: hostport, parameters, headers.
/// The userinfo may hold `;` `?` `/` `,` (user-unreserved) but never a raw
/// `@`, nor may parameters or headers: the host starts after the last `@`.
fn hostpart(rest: &str) -> &str {
    rest.rsplit('@').next().unwrap_or(rest)
}

/// A Request-URI (RFC 3261 §19.1.1): a URI, and for sip/sips one without
/// `?headers`, which are not allowed there.
pub fn check_request_uri(uri: &str) -> Result<(), String> {
    check_uri(uri)?;
    let headers = uri
        .split_once(':')
        .is_some_and(|(s, rest)| is_sip(s) && hostpart(rest).contains('?'));
    if headers {
        return Err(format!(
            "{uri:?} carries escaped headers (`?...`), which a Request-URI must not"
        ));
    }
    Ok(())
}

/// Parse one `name-addr` or `addr-spec` with its header parameters.
pub fn name_addr(value: &str) -> Result<NameAddr, String> {
    let mut sc = Scan::new(value.trim_matches([' ', '\t']));
    let mut display_name = None;
    let bracketed;
    if sc.eat('"') {
        display_name = Some(sc.quoted()?);
        sc.sws();
        if !sc.eat('<') {
            return Err("a quoted display name must be followed by <URI>".into());
        }
        bracketed = true;
    } else if let Some(lt) = sc.rest().find('<') {
        let words = &sc.rest()[..lt];
        let mut tokens = Vec::new();
        for w in words.split([' ', '\t']).filter(|w| !w.is_empty()) {
            if !is_token(w) {
                return Err(format!(
                    "display name {:?} has characters that must be quoted",
                    words.trim()
                ));
            }
            tokens.push(w);
        }
        if !tokens.is_empty() {
            display_name = Some(tokens.join(" "));
        }
        sc.at += lt + 1;
        bracketed = true;
    } else {
        bracketed = false;
    }
    let uri = if bracketed {
        let Some(gt) = sc.rest().find('>') else {
            return Err("`<` without its `>`".into());
        };
        let uri = &sc.rest()[..gt];
        if uri.starts_with([' ', '\t']) || uri.ends_with([' ', '\t']) {
            return Err(format!(
                "white space inside <{uri}>: the URI must follow `<` directly"
            ));
        }
        sc.at += gt + 1;
        uri
    } else {
        // addr-spec: every `;` starts a header parameter, and a URI with
        // `,` `?` or `;` of its own must be in angle brackets (§20).
        let uri = sc.take(|c| c != ';').trim_end_matches([' ', '\t']);
        if uri.contains([',', '?']) {
            return Err(format!(
                "{uri:?} has `,` or `?`: such a URI must be enclosed in <...>"
            ));
        }
        uri
    };
    check_uri(uri)?;
    let params = params(&mut sc, "header")?;
    Ok(NameAddr {
        display_name,
        uri: uri.to_owned(),
        params,
    })
}

/// Every entry of one Via header value, in order. An empty entry (`,,`)
/// is an error.
pub fn via_list(value: &str) -> Result<Vec<Via>, String> {
    split_raw(value).into_iter().map(via).collect()
}

/// Whether the entries of one Via header value after the first (which
/// [`first_via`] reads) pass the checks of [`via_list`] (which says why
/// when they do not).
pub(crate) fn vias_after_first_hold(value: &str) -> bool {
    split_raw(value)
        .into_iter()
        .skip(1)
        .all(|entry| via(entry).is_ok())
}

/// The first entry of one Via header value (the rest are not read); its
/// error is the text [`Message::top_via`](super::Message::top_via) wraps
/// in a `HeaderError`, as for [`via`].
pub(crate) fn first_via(value: &str) -> Result<Via, String> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => return via(&value[..i]),
            _ => {}
        }
    }
    via(value)
}

/// Split at top-level commas, keeping empty elements.
fn split_raw(value: &str) -> Vec<&str> {
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    let mut out = Vec::new();
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

/// One `via-parm`.
pub fn via(entry: &str) -> Result<Via, String> {
    let mut sc = Scan::new(entry.trim_matches([' ', '\t']));
    if sc.done() {
        return Err("an empty Via entry (`,,` or a trailing `,`)".into());
    }
    let mut parts = Vec::new();
    for i in 0..3 {
        if i > 0 {
            sc.sws();
            if !sc.eat('/') {
                return Err(format!("{entry:?}: expected SIP/2.0/TRANSPORT"));
            }
            sc.sws();
        }
        let t = sc.take(is_token_char);
        if t.is_empty() {
            return Err(format!("{entry:?}: expected SIP/2.0/TRANSPORT"));
        }
        parts.push(t);
    }
    let [name, version, transport] = parts[..] else {
        return Err(format!("{entry:?}: expected SIP/2.0/TRANSPORT"));
    };
    if !sc.sws() {
        return Err(format!("{entry:?}: expected white space before sent-by"));
    }
    let host = if sc.peek() == Some('[') {
        let h = sc.take(|c| c != ']');
        if !sc.eat(']') {
            return Err(format!("{entry:?}: `[` without `]` in sent-by"));
        }
        format!("{h}]")
    } else {
        sc.take(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            .to_owned()
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("{entry:?}: no sent-by host"));
    }
    let port = if sc.eat(':') {
        let p = sc.take(|c| c.is_ascii_digit());
        Some(
            p.parse::<u16>()
                .map_err(|_| format!("{entry:?}: sent-by port {p:?} is not 0 to 65535"))?,
        )
    } else {
        None
    };
    let params = params(&mut sc, "Via")?;
    Ok(Via {
        protocol: format!("{name}/{version}").to_ascii_uppercase(),
        transport: transport.to_ascii_uppercase(),
        host,
        port,
        params,
    })
}

/// An RFC 1123 date as SIP requires it (§20.17): `Sat, 13 Nov 2010 23:29:00 GMT`.
pub fn check_date(value: &str) -> Result<(), String> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let bad =
        || format!("{value:?} is not an RFC 1123 date in GMT (`Sat, 13 Nov 2010 23:29:00 GMT`)");
    let f: Vec<&str> = value.split(' ').collect();
    let [day, dd, mon, yyyy, hms, zone] = f[..] else {
        return Err(bad());
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let time_ok =
        hms.len() == 8 && hms.split(':').all(|p| digits(p, 2)) && hms.split(':').count() == 3;
    let ok = day.strip_suffix(',').is_some_and(|d| DAYS.contains(&d))
        && digits(dd, 2)
        && MONTHS.contains(&mon)
        && digits(yyyy, 4)
        && time_ok
        && zone == "GMT";
    if ok { Ok(()) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addrs_with_lws_and_tokens() {
        let n = name_addr("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(
            (n.uri.as_str(), n.tag()),
            ("sip:vivekg@chair-dnrc.example.com", Some("1918181833n"))
        );
        let n = name_addr(r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8"#)
            .unwrap();
        assert_eq!(n.display_name.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = name_addr("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("caller"));
        let n = name_addr("token1~` token2'+_ <sip:m@example.com>;p''~=\"v\";tag=_t~1'+`*%!-.")
            .unwrap();
        assert_eq!(n.tag(), Some("_t~1'+`*%!-."));
        assert_eq!(n.param("p''~"), Some(Some("v")));
        let n = name_addr("<sip:u@h;lr>;secondparam ; q = 0.33").unwrap();
        assert_eq!(n.uri, "sip:u@h;lr");
        assert_eq!(n.param("secondparam"), Some(None));
        assert_eq!(name_addr("isbn:2983792873").unwrap().uri, "isbn:2983792873");
    }

    #[test]
    fn malformed_name_addrs() {
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "Watson, Thomas <sip:t.watson@example.org>",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "<sip:x@h",
            "sip:a b@h",
            "<sip:>",
        ] {
            assert!(name_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_via_is_read_alone() {
        let line =
            "SIP/2.0/TCP a.example.com;branch=z9hG4bK1;x=\"p,q\" , SIP/2.0/UDP b;branch=z9hG4bK2";
        let first = first_via(line).unwrap();
        assert_eq!(first.sent_by(), "a.example.com");
        assert_eq!(first, via_list(line).unwrap()[0]);
        // What follows the first entry is not read.
        assert_eq!(
            first_via("SIP/2.0/UDP h;branch=z9hG4bK1,,")
                .unwrap()
                .sent_by(),
            "h"
        );
        assert!(first_via(",SIP/2.0/UDP h").is_err());
    }

    #[test]
    fn vias_with_lws() {
        let v = via_list("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].transport.as_str(), v[0].sent_by(), v[0].branch()),
            (
                "TCP",
                "spindle.example.com".to_owned(),
                Some("z9hG4bK9ikj8")
            )
        );
        assert_eq!(v[1].branch(), Some("z9hG4bK30239"));
        let v = via("SIP/2.0/UDP [2001:db8::9:1]:5070;received=2001:db8::9:255;rport").unwrap();
        assert_eq!(v.sent_by(), "[2001:db8::9:1]:5070");
        assert!(via_list("SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
        assert!(via_list("SIP/2.0/UDP h;branch=1,,SIP/2.0/UDP g").is_err());
        assert!(via("SIP/2.0/UDP").is_err());
        assert!(via("SIP/2.0/UDP h:99999").is_err());
    }

    #[test]
    fn request_uris() {
        check_request_uri("sip:user;par=u%40example.net@example.com").unwrap();
        check_request_uri("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com").unwrap();
        check_request_uri("soap.beep://192.0.2.103:3002").unwrap();
        check_request_uri("nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert!(check_request_uri("<sip:user@example.com>").is_err());
        assert!(check_request_uri("sip:user@example.com?Route=%3Csip:example.com%3E").is_err());
        assert!(check_request_uri("sip:").is_err());
    }

    #[test]
    fn dates() {
        check_date("Sat, 15 Oct 2005 04:44:56 GMT").unwrap();
        assert!(check_date("Fri, 01 Jan 2010 16:00:00 EST").is_err());
        assert!(check_date("Fri, 1 Jan 2010 16:00:00 GMT").is_err());
    }
}
