//! Requests inside a dialog (RFC 3261 §12.2.1.1): this party's side of
//! the dialog, the remote target, the route set.

use super::compose::{
    Body, ComposeError, add_extra_and_body, bare_uri, host_of, name_addr, uri_of,
};
use super::headers::HeaderError;
use super::message::{Message, StartLine};
use crate::context::Context;

/// What an in-dialog request is made of (RFC 3261 §12.2.1.1); the rest
/// comes from a message of the dialog.
#[derive(Debug, Clone, Default)]
pub struct DialogParams {
    /// The method.
    pub method: String,
    /// Whether this party is the From side of the dialog message.
    pub local_is_from: bool,
    /// The local CSeq number (for ACK: the INVITE's).
    pub cseq: u32,
    /// The remote target, when the dialog message does not give it.
    pub request_uri: Option<String>,
    /// The Contact URI.
    pub contact: Option<String>,
    /// Via sent-by, `HOST[:PORT]`; defaults to the local URI's host.
    pub via: Option<String>,
    /// Extra header lines, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<Body>,
}

/// Build a request inside the dialog `dialog` belongs to (RFC 3261
/// §12.2.1.1): From and To are the local and remote sides with their tags
/// (copied byte for byte), the Call-ID is kept, the Request-URI is the
/// remote target (the peer's Contact), and the route set is the
/// Record-Route (reversed at the UAC). A strict-routing first hop (no
/// `;lr`) becomes the Request-URI with the remote target as the last Route.
pub fn build_in_dialog(
    dialog: &Message,
    p: &DialogParams,
    ctx: &mut Context,
) -> Result<Message, ComposeError> {
    ctx.mix("in dialog", &dialog.to_bytes());
    ctx.mix("method", p.method.as_bytes());
    let method = p.method.trim().to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
        return Err(ComposeError::BadMethod(p.method.clone()));
    }
    let from = dialog.header("From").ok_or(HeaderError::Missing("From"))?;
    let to = dialog.header("To").ok_or(HeaderError::Missing("To"))?;
    let (from_tag, to_tag) = (dialog.from_tag()?, dialog.to_tag()?);
    let ((local, local_tag, local_name), (remote, remote_tag, remote_name)) = if p.local_is_from {
        ((from, from_tag, "From"), (to, to_tag, "To"))
    } else {
        ((to, to_tag, "To"), (from, from_tag, "From"))
    };
    if local_tag.is_none() {
        return Err(ComposeError::NoDialog(local_name));
    }
    if remote_tag.is_none() {
        return Err(ComposeError::NoDialog(remote_name));
    }
    let call_id = dialog.call_id()?.to_owned();
    let (_, local_uri) = name_addr("local URI", &strip_params(local))?;
    let (_, remote_uri) = name_addr("remote URI", &strip_params(remote))?;
    // Who sent the dialog message: a request comes from its From side.
    let sent_by_local = dialog.is_request() == p.local_is_from;
    let target = match (&p.request_uri, sent_by_local) {
        (Some(u), _) => {
            uri_of("Request-URI", u)?;
            u.clone()
        }
        (None, false) => match dialog.contacts()?.first() {
            Some(c) => bare_uri(&uri_of("Contact", &c.uri)?),
            None => bare_uri(&remote_uri),
        },
        (None, true) => bare_uri(&remote_uri),
    };
    let mut routes: Vec<String> = dialog
        .header_list("Record-Route")
        .into_iter()
        .map(str::to_owned)
        .collect();
    if p.local_is_from {
        routes.reverse();
    }
    let strict = routes
        .first()
        .is_some_and(|r| !r.to_ascii_lowercase().contains(";lr"));
    let request_uri = if strict {
        let first = routes.remove(0);
        routes.push(format!("<{target}>"));
        super::headers::strip_angle(super::headers::addr_spec(&first)).to_owned()
    } else {
        target
    };
    let transport = dialog
        .vias()?
        .first()
        .map(|v| v.transport.clone())
        .unwrap_or_else(|| "UDP".into());
    let sent_by = p.via.clone().unwrap_or_else(|| host_of(&local_uri));
    let branch = format!("z9hG4bK{}", ctx.token(8));

    let mut m = Message::new(StartLine::Request {
        method: method.clone(),
        uri: request_uri,
    });
    m.push_header(
        "Via",
        &format!("SIP/2.0/{transport} {sent_by};branch={branch}"),
    );
    m.push_header("Max-Forwards", "70");
    for r in &routes {
        m.push_header("Route", r);
    }
    m.push_header("From", local);
    m.push_header("To", remote);
    m.push_header("Call-ID", &call_id);
    m.push_header("CSeq", &format!("{} {method}", p.cseq));
    let contact = match &p.contact {
        Some(c) => Some(name_addr("Contact", c)?.0),
        None if matches!(method.as_str(), "INVITE" | "UPDATE" | "SUBSCRIBE" | "REFER") => {
            Some(format!("<{}>", bare_uri(&local_uri)))
        }
        None => None,
    };
    if let Some(c) = contact {
        m.push_header("Contact", &c);
    }
    add_extra_and_body(&mut m, &p.headers, &p.body)?;
    Ok(m)
}

/// A name-addr without its header parameters (`;tag=...`), for its URI.
fn strip_params(v: &str) -> String {
    match v.rfind('>') {
        Some(i) => v[..=i].to_owned(),
        None => v.split(';').next().unwrap_or(v).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::compose::tests::{ctx, invite};
    use crate::sip::compose::{ResponseParams, build_response};

    fn dialog_200(record_route: &[&str]) -> Message {
        let mut req = invite();
        for rr in record_route {
            req.push_header("Record-Route", rr);
        }
        let ok = ResponseParams {
            code: 200,
            contact: Some("<sip:bob@198.51.100.20:5062>".into()),
            ..Default::default()
        };
        build_response(&req, &ok, &mut ctx()).unwrap()
    }

    #[test]
    fn in_dialog_requests_follow_the_route_set() {
        let ok = dialog_200(&["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]);
        // The UAC (alice, the From side of the 200): the route set reversed,
        // the Request-URI bob's Contact, her own CSeq.
        let p = DialogParams {
            method: "bye".into(),
            local_is_from: true,
            cseq: 2,
            ..Default::default()
        };
        let bye = build_in_dialog(&ok, &p, &mut ctx()).unwrap();
        assert_eq!(bye.request_uri(), Some("sip:bob@198.51.100.20:5062"));
        assert_eq!(
            bye.header_values("Route"),
            vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        assert_eq!(bye.header("From"), ok.header("From"));
        assert_eq!(bye.header("To"), ok.header("To"));
        assert_eq!(bye.header("CSeq"), Some("2 BYE"));
        assert_eq!(bye.header("Contact"), None);
        assert_ne!(
            bye.vias().unwrap()[0].branch().unwrap().to_string(),
            ok.vias().unwrap()[0].branch().unwrap().to_string()
        );
        // The UAS (bob) with the same message: the route set in order,
        // From and To swapped, Request-URI alice's (no Contact of hers here).
        let p = DialogParams {
            method: "INVITE".into(),
            local_is_from: false,
            cseq: 1,
            ..Default::default()
        };
        let reinvite = build_in_dialog(&ok, &p, &mut ctx()).unwrap();
        assert_eq!(reinvite.header("From"), ok.header("To"));
        assert_eq!(reinvite.header("To"), ok.header("From"));
        assert_eq!(reinvite.request_uri(), Some("sip:alice@a.example.com"));
        assert_eq!(
            reinvite.header_values("Route"),
            vec!["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        );
        assert_eq!(reinvite.header("Contact"), Some("<sip:bob@b.example.com>"));
    }

    #[test]
    fn a_strict_router_becomes_the_request_uri() {
        let ok = dialog_200(&["<sip:strict.example.com>"]);
        let p = DialogParams {
            method: "BYE".into(),
            local_is_from: true,
            cseq: 2,
            ..Default::default()
        };
        let bye = build_in_dialog(&ok, &p, &mut ctx()).unwrap();
        assert_eq!(bye.request_uri(), Some("sip:strict.example.com"));
        assert_eq!(
            bye.header_values("Route"),
            vec!["<sip:bob@198.51.100.20:5062>"]
        );
    }

    #[test]
    fn no_dialog_without_both_tags() {
        // The INVITE itself: bob's side has no tag yet.
        let p = DialogParams {
            method: "BYE".into(),
            local_is_from: false,
            cseq: 1,
            ..Default::default()
        };
        assert!(matches!(
            build_in_dialog(&invite(), &p, &mut ctx()),
            Err(ComposeError::NoDialog("To"))
        ));
    }
}
