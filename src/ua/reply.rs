//! The next message of a dialog: a response to a request, or an
//! in-dialog request (RFC 3261 §12.2.1.1) with this party's side of the
//! dialog, its CSeq (remembered in the session store) and the route set.

use super::{Ua, UaError};
use crate::context::Context;
use crate::sip::Message;
use crate::sip::compose::{Body, ResponseParams, build_response};
use crate::sip::dialog::{DialogParams, build_in_dialog};

/// An in-dialog request to build.
#[derive(Debug, Clone, Default)]
pub struct DialogRequest {
    /// ACK, MESSAGE, INVITE (re-INVITE), UPDATE, BYE, INFO, ...
    pub method: String,
    /// The CSeq number (default: for ACK the INVITE's, else the next of
    /// this party's sequence).
    pub cseq: Option<u32>,
    /// The Request-URI when the dialog message has no Contact of the peer.
    pub request_uri: Option<String>,
    /// Contact URI.
    pub contact: Option<String>,
    /// Via sent-by (default: the host of the local URI).
    pub via: Option<String>,
    /// Extra header lines.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<Body>,
}

/// What to build.
#[derive(Debug, Clone)]
pub enum ReplyTo {
    /// A response to the request given.
    Response(ResponseParams),
    /// An in-dialog request on a message of the dialog.
    Request(DialogRequest),
}

/// The message built, and whose session it belongs to.
pub struct Reply {
    /// The new message (its body in the clear: seal it with
    /// [`Ua::seal_in_dialog`]).
    pub message: Message,
    /// This party (an AOR): whose session key seals it.
    pub me: String,
}

impl Ua<'_> {
    /// Build the next message of the dialog `dialog` belongs to. `me` is
    /// this party's AOR (default: the To of the request answered, or the
    /// side that received `dialog`).
    pub fn reply(
        &self,
        dialog: &Message,
        what: ReplyTo,
        me: Option<&str>,
        ctx: &mut Context,
    ) -> Result<Reply, UaError> {
        match what {
            ReplyTo::Response(params) => {
                let message = build_response(dialog, &params, ctx)?;
                let me = me.or(message.aor("To")).unwrap_or_default().to_owned();
                Ok(Reply { message, me })
            }
            ReplyTo::Request(r) => {
                let local_is_from = local_side(dialog, me)?;
                let local = dialog.aor(if local_is_from { "From" } else { "To" });
                let me = me.or(local).unwrap_or_default().to_owned();
                let cseq = self.cseq(dialog, &r, local_is_from, &me)?;
                let params = DialogParams {
                    method: r.method,
                    local_is_from,
                    cseq,
                    request_uri: r.request_uri,
                    contact: r.contact,
                    via: r.via,
                    headers: r.headers,
                    body: r.body,
                };
                let message = build_in_dialog(dialog, &params, ctx)?;
                Ok(Reply { message, me })
            }
        }
    }

    /// The CSeq of the in-dialog request: the one given; for ACK the
    /// INVITE's; else one more than the last this party used (its own
    /// requests, or what the store remembers).
    fn cseq(
        &self,
        dialog: &Message,
        r: &DialogRequest,
        local_is_from: bool,
        me: &str,
    ) -> Result<u32, UaError> {
        let cseq = dialog.cseq().map_err(UaError::Dialog)?;
        if r.method.eq_ignore_ascii_case("ACK") {
            if cseq.method != "INVITE" || dialog.is_request() {
                return Err(UaError::AckWithoutInvite {
                    seq: cseq.seq,
                    method: cseq.method,
                });
            }
            return Ok(r.cseq.unwrap_or(cseq.seq));
        }
        if let Some(n) = r.cseq {
            return Ok(n);
        }
        // The dialog message's CSeq is ours when we are its From side.
        let floor = if local_is_from {
            cseq.seq.saturating_add(1)
        } else {
            1
        };
        let call_id = dialog.call_id().map_err(UaError::Dialog)?;
        Ok(self.store.next_cseq(me, call_id, floor)?)
    }
}

/// Whether this party is the From side of `dialog`: the side whose AOR is
/// `me`, else the side that received it (To of a request, From of a response).
fn local_side(dialog: &Message, me: Option<&str>) -> Result<bool, UaError> {
    let Some(me) = me else {
        return Ok(!dialog.is_request());
    };
    let is = |h: &str| dialog.aor(h).is_some_and(|a| a.eq_ignore_ascii_case(me));
    match (is("From"), is("To")) {
        (true, _) => Ok(true),
        (false, true) => Ok(false),
        (false, false) => Err(UaError::NotInDialog(me.to_owned())),
    }
}
