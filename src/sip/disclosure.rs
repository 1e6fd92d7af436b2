//! `Proxy-Inspect-Body`: which relay may open which body part.
//!
//! ```text
//! Proxy-Inspect-Body = "Proxy-Inspect-Body" HCOLON pib-value
//! pib-value  = LAQUOT absoluteURI RAQUOT *( SEMI pib-param )
//! pib-param  = "cid" EQUAL DQUOTE content-id DQUOTE      ; E2M drafts
//!            / "access" EQUAL ( "read" / "modify" )      ; sipseal
//!            / "purpose" EQUAL ( token / quoted-string ) ; sipseal
//!            / generic-param
//! ```
//!
//! A missing `access` means `read`: the relay may look but not change.
//! `purpose=record` (a token, or a quoted list of tokens such as
//! `"firewall record"`) also lets the relay hand the call's SRTP keys to a
//! recorder (`relay --record DIR`); other purposes are read and ignored.

use serde::Serialize;

use super::headers::{split_list, strip_angle};
use super::{Header, Message};

/// The header name.
pub const PROXY_INSPECT_BODY: &str = "Proxy-Inspect-Body";

/// What a designated relay may do with the content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read only (enforced by an inner signature when there is one).
    #[default]
    Read,
    /// May edit and re-seal.
    Modify,
}

impl Access {
    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Modify => "modify",
        }
    }
}

/// Why a `Proxy-Inspect-Body` entry does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesignationError {
    /// No `<URI>` first.
    #[error("{0:?} does not start with <URI>")]
    NoUri(String),
    /// `<` without `>`.
    #[error("{0:?} has no closing >")]
    Unclosed(String),
    /// A URI of another scheme.
    #[error("{0:?} is not a sip: or sips: URI")]
    NotSip(String),
    /// An `access` value other than read or modify.
    #[error("access={0} (expected read or modify)")]
    Access(String),
}

/// One `Proxy-Inspect-Body` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Designation {
    /// The relay's URI (without angle brackets).
    pub uri: String,
    /// The Content-ID (without angle brackets) of the part it may open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// `access`, `read` when absent.
    pub access: Access,
    /// `purpose=record`: the relay may hand the call's media keys to a
    /// recorder.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub record: bool,
}

impl Designation {
    /// The header value: `<URI>;cid="CID";access=read`.
    pub fn to_value(&self) -> String {
        let mut v = format!("<{}>", self.uri);
        if let Some(cid) = &self.cid {
            v.push_str(&format!(";cid=\"{cid}\""));
        }
        v.push_str(";access=");
        v.push_str(self.access.as_str());
        if self.record {
            v.push_str(";purpose=record");
        }
        v
    }

    /// Parse a header value; `Err` says what is wrong with it.
    pub fn parse(value: &str) -> Result<Designation, DesignationError> {
        let value = value.trim();
        let rest = value
            .strip_prefix('<')
            .ok_or_else(|| DesignationError::NoUri(value.to_owned()))?;
        let (uri, params) = rest
            .split_once('>')
            .ok_or_else(|| DesignationError::Unclosed(value.to_owned()))?;
        let uri = uri.trim();
        if !(uri.starts_with("sip:") || uri.starts_with("sips:")) {
            return Err(DesignationError::NotSip(uri.to_owned()));
        }
        let mut d = Designation {
            uri: uri.to_owned(),
            cid: None,
            access: Access::Read,
            record: false,
        };
        for param in split_params(params) {
            let (name, val) = param.split_once('=').unwrap_or((param, ""));
            let val = val.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "cid" => {
                    let unquoted = val
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(val);
                    d.cid = Some(strip_angle(unquoted).to_owned());
                }
                "access" => {
                    d.access = match val.to_ascii_lowercase().as_str() {
                        "read" => Access::Read,
                        "modify" => Access::Modify,
                        other => return Err(DesignationError::Access(other.to_owned())),
                    }
                }
                "purpose" => {
                    let unquoted = val
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(val);
                    d.record |= unquoted
                        .split([' ', ','])
                        .any(|p| p.eq_ignore_ascii_case("record"));
                }
                _ => {}
            }
        }
        Ok(d)
    }
}

/// `;a=1;b="x;y"` → `["a=1", "b=\"x;y\""]`, honouring quotes.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                let p = s[start..i].trim();
                if !p.is_empty() {
                    out.push(p);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    let p = s[start..].trim();
    if !p.is_empty() {
        out.push(p);
    }
    out
}

/// Every `Proxy-Inspect-Body` entry of a message (comma-separated values
/// in one line count separately), each parsed or with its problem.
pub fn designations(msg: &Message) -> Vec<Result<Designation, DesignationError>> {
    msg.header_list(PROXY_INSPECT_BODY)
        .into_iter()
        .map(Designation::parse)
        .collect()
}

/// Remove the `Proxy-Inspect-Body` entries for which `drop` holds; a line
/// that keeps all its entries stays byte-identical, a line that keeps some
/// is rewritten in place, and entries that do not parse are kept.
pub fn remove_designations(msg: &mut Message, drop: impl Fn(&Designation) -> bool) {
    if !msg.headers().iter().any(|h| h.is(PROXY_INSPECT_BODY)) {
        return;
    }
    let goes = |v: &str| Designation::parse(v).is_ok_and(|d| drop(&d));
    msg.rewrite_headers(|h| {
        if !h.is(PROXY_INSPECT_BODY) {
            return Some(h);
        }
        let values = split_list(h.value());
        let keep: Vec<&str> = values.iter().copied().filter(|v| !goes(v)).collect();
        match keep.len() {
            n if n == values.len() => Some(h),
            0 => None,
            _ => Some(Header::new(h.name(), &keep.join(", "))),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let v = "<sip:proxy-a.a.example.com>;cid=\"sdp-4f2c@a.example.com\";access=modify";
        let d = Designation::parse(v).unwrap();
        assert_eq!(d.uri, "sip:proxy-a.a.example.com");
        assert_eq!(d.cid.as_deref(), Some("sdp-4f2c@a.example.com"));
        assert_eq!(d.access, Access::Modify);
        assert_eq!(d.to_value(), v);
        let d = Designation::parse("<sips:p.example.com> ; cid=\"<x;y@z>\" ; foo").unwrap();
        assert_eq!((d.cid.as_deref(), d.access), (Some("x;y@z"), Access::Read));
        // purpose=record, as a token or in a quoted list; other purposes
        // are read and ignored; written back as it was read.
        let r = Designation::parse("<sip:p.example.com>;access=read;purpose=record").unwrap();
        assert!(r.record);
        assert_eq!(
            r.to_value(),
            "<sip:p.example.com>;access=read;purpose=record"
        );
        assert!(
            Designation::parse("<sip:p>;purpose=\"firewall record\"")
                .unwrap()
                .record
        );
        assert!(
            !Designation::parse("<sip:p>;purpose=firewall")
                .unwrap()
                .record
        );
        assert!(
            !Designation::parse("<sip:p>;purpose=recorder")
                .unwrap()
                .record
        );
        assert!(!d.record);
        for bad in ["sip:p", "<http://p>", "<sip:p", "<sip:p>;access=all"] {
            assert!(Designation::parse(bad).is_err(), "{bad}");
        }
    }
}
