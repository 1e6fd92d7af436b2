//! Sealed parts of a multipart body (issue 14 item 10): each part of a
//! multipart body sealed on its own, the parts named by
//! [`SealSpec::disclose_parts`] (by Content-ID) for the peer and the
//! disclosed relays, every other part for the peer alone; and a message
//! whose multipart body holds `application/pkcs7-mime` parts opened in
//! place: each part the keys open is replaced by its plaintext entity, the
//! other parts stay byte-identical.
//!
//! The session key (docs/SPEC.md §3.2) of such a message is the one derived from
//! the first disclosed part's CEK (the part every designated relay opens
//! too), else the first part's: the sender and every party that opens it
//! pick the same one.

use std::ops::Range;

use rand::CryptoRng;
use zeroize::Zeroizing;

use super::{
    SealError, SealSpec, SealedMessage, check_distinct, designated, is_pkcs7_mime, sealed_headers,
};
use crate::context::Context;
use crate::envelope::{self, Envelope, EnvelopeError, EnvelopeKind, Recipient, RecipientKey};
use crate::mime::{Entity, Part, body_of};
use crate::signing::{peel, sign_entity, unwrap_inner};
use crate::sip::Message;
use crate::sip::disclosure::{Designation, PROXY_INSPECT_BODY, remove_designations};
use crate::sip::headers::{strip_angle, uri_host};

use super::open::OpenedContent;

/// One sealed part of a multipart body.
#[derive(Debug, Clone)]
pub struct SealedPart {
    /// Its Content-ID, without angle brackets.
    pub content_id: Option<String>,
    /// The envelope (transfer encoding undone).
    pub der: Vec<u8>,
    /// Where the part (its headers and content) stands in the body.
    pub range: Range<usize>,
}

/// A multipart body and where each of its parts stands in it.
type Split = (Part, Vec<Range<usize>>);

/// The multipart body of `msg` (not `multipart/signed`: take an outer
/// signature off first) and its direct sub-parts, each with where it
/// stands in the body; `None` when the body is no such multipart.
fn multipart(msg: &Message) -> Result<Option<Split>, SealError> {
    let Ok(Some(top)) = body_of(msg) else {
        return Ok(None);
    };
    let is_multipart = top
        .content_type
        .as_ref()
        .is_some_and(|c| c.mime.starts_with("multipart/") && !c.is("multipart/signed"));
    if !is_multipart {
        return Ok(None);
    }
    // Each part's exact bytes stand in the body in order: find them there,
    // each after the one before (linear).
    let body = msg.body();
    let mut at = 0;
    let mut ranges = Vec::with_capacity(top.parts.len());
    for part in &top.parts {
        let Some(start) = memchr::memmem::find(&body[at..], &part.raw).map(|i| at + i) else {
            return Err(SealError::TransferEncoding {
                encoding: "multipart".into(),
                reason: "a part is not where the boundaries put it".into(),
            });
        };
        ranges.push(start..start + part.raw.len());
        at = start + part.raw.len();
    }
    Ok(Some((top, ranges)))
}

fn content_id(part: &Part) -> Option<String> {
    part.header("Content-ID").map(|v| strip_angle(v).to_owned())
}

fn is_sealed(part: &Part) -> bool {
    part.content_type.as_ref().is_some_and(|c| {
        is_pkcs7_mime(&c.mime)
            && !c
                .param("smime-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("signed-data"))
    })
}

/// The sealed parts (`application/pkcs7-mime`, not signed-data) among the
/// direct sub-parts of the multipart body of `msg`, in order. Empty when
/// the body is not a multipart, or none of its parts is sealed.
pub fn sealed_parts(msg: &Message) -> Result<Vec<SealedPart>, SealError> {
    let Some((top, ranges)) = multipart(msg)? else {
        return Ok(Vec::new());
    };
    Ok(top
        .parts
        .iter()
        .zip(ranges)
        .filter(|(p, _)| is_sealed(p))
        .map(|(p, range)| SealedPart {
            content_id: content_id(p),
            der: p.body.clone(),
            range,
        })
        .collect())
}

/// The sealed part this message's designations name, for relays named
/// `uris`: the part whose Content-ID a `Proxy-Inspect-Body` naming one of
/// them gives, else the first sealed part. `None`: no sealed part.
pub fn designated_part(
    msg: &Message,
    designations: &[Designation],
    uris: &[String],
) -> Result<Option<SealedPart>, SealError> {
    let parts = sealed_parts(msg)?;
    let named = designations
        .iter()
        .filter(|d| uris.iter().any(|u| u.eq_ignore_ascii_case(&d.uri)))
        .find_map(|d| {
            parts
                .iter()
                .find(|p| p.content_id.is_some() && p.content_id == d.cid)
        })
        .cloned();
    Ok(named.or_else(|| parts.into_iter().next()))
}

/// Seal each part of the multipart body of `msg` on its own (see the
/// module documentation): the body keeps its boundary and its part order,
/// each part becomes an `application/pkcs7-mime` part under its own
/// Content-ID (a new one when it had none), and each designated relay gets
/// one `Proxy-Inspect-Body` per disclosed part.
pub(super) fn seal_parts(
    msg: &Message,
    spec: &SealSpec,
    ctx: &mut Context,
) -> Result<SealedMessage, SealError> {
    let Some((top, _)) = multipart(msg)? else {
        return Err(SealError::NotMultipart(
            msg.header("Content-Type").unwrap_or("none").to_owned(),
        ));
    };
    let boundary = top
        .content_type
        .as_ref()
        .and_then(|c| c.param("boundary"))
        .unwrap_or_default()
        .to_owned();
    let cids: Vec<Option<String>> = top.parts.iter().map(content_id).collect();
    for wanted in &spec.disclose_parts {
        if !cids.iter().flatten().any(|c| c == wanted) {
            return Err(SealError::NoSuchPart {
                cid: wanted.clone(),
                have: cids
                    .iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    check_distinct(spec.peers.iter().chain(&spec.disclose))?;
    let relays = designated(spec)?;
    let everyone: Vec<Recipient> = spec.peers.iter().chain(&spec.disclose).cloned().collect();
    let host = msg
        .header(msg.sender_header())
        .and_then(uri_host)
        .unwrap_or_else(|| "sipseal.invalid".into());
    let kind = if spec.options.cipher.is_aead() {
        EnvelopeKind::AuthEnvelopedData
    } else {
        EnvelopeKind::EnvelopedData
    };
    let mut body = Vec::new();
    let mut session = None;
    let mut disclosed_cids = Vec::new();
    for (i, (part, cid)) in top.parts.iter().zip(&cids).enumerate() {
        if is_sealed(part) {
            return Err(SealError::AlreadySealed(format!(
                "part {} is {}",
                i + 1,
                part.header("Content-Type").unwrap_or_default()
            )));
        }
        let cid = cid
            .clone()
            .unwrap_or_else(|| format!("part{}-{}@{host}", i + 1, ctx.token(4)));
        let disclosed = spec.disclose_parts.contains(&cid);
        // The part as it stands between its boundaries is a MIME entity.
        let mut plain = Zeroizing::new(part.raw.clone());
        if let Some(signer) = &spec.signer {
            plain = Zeroizing::new(sign_entity(&plain, signer, spec.scheme, ctx)?);
        }
        let recipients = if disclosed { &everyone } else { &spec.peers };
        if recipients.is_empty() {
            return Err(EnvelopeError::Recipient(format!(
                "part <{cid}> is sealed for the peer alone, and no --peer is given"
            ))
            .into());
        }
        let (der, cek) = envelope::seal(&plain, recipients, &spec.options, ctx.rng())?;
        if memchr::memmem::find(&der, format!("--{boundary}").as_bytes()).is_some() {
            return Err(SealError::TransferEncoding {
                encoding: "multipart".into(),
                reason: "a sealed part happens to contain the boundary; seal again".into(),
            });
        }
        if disclosed {
            disclosed_cids.push(cid.clone());
        }
        // The session key: the first disclosed part's, else the first part's.
        if session.is_none() || (disclosed && disclosed_cids.len() == 1) {
            session = Some((cek, cid.clone(), der.clone()));
        }
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        for (name, value) in sealed_headers(&[], spec.access, spec.record, &cid, kind) {
            body.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&der);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let Some((cek, content_id, der)) = session else {
        return Err(SealError::NoBody);
    };
    let mut lines: Vec<(String, String)> = disclosed_cids
        .iter()
        .flat_map(|cid| {
            relays.iter().map(move |uri| {
                let d = Designation {
                    uri: uri.clone(),
                    cid: Some(cid.clone()),
                    access: spec.access,
                    record: spec.record,
                };
                (PROXY_INSPECT_BODY.to_owned(), d.to_value())
            })
        })
        .collect();
    lines.extend(msg.body_headers());
    let mut message = msg.clone();
    message.remove_headers(PROXY_INSPECT_BODY);
    message.replace_body(&lines, body);
    Ok(SealedMessage {
        message,
        der,
        cek,
        content_id,
    })
}

/// What opening one sealed part in place did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartOutcome {
    /// The part's Content-ID.
    pub content_id: Option<String>,
    /// Whether the keys opened it (else it is not for them and stays sealed).
    pub opened: bool,
}

/// Open the sealed parts of the multipart body of `msg` in place with
/// `keys`: each part they open is replaced by its plaintext entity (an
/// inner signature verified and taken off), every other byte of the body
/// stays as it was, and the designations of the opened parts go. The
/// result is the part that gives the session key (see the module
/// documentation) with the whole restored message; `None` when the body
/// has no sealed parts. A part that is not for these keys stays sealed;
/// none opening is [`EnvelopeError::NotRecipient`].
pub fn open_parts<R: CryptoRng + ?Sized>(
    msg: &Message,
    keys: &[RecipientKey<'_>],
    rng: &mut R,
) -> Result<Option<(OpenedContent, Vec<PartOutcome>)>, SealError> {
    let base = peel(msg).ok().flatten().unwrap_or_else(|| msg.clone());
    let parts = sealed_parts(&base)?;
    if parts.is_empty() {
        return Ok(None);
    }
    let named: Vec<String> = crate::sip::disclosure::designations(&base)
        .into_iter()
        .flatten()
        .filter_map(|d| d.cid)
        .collect();
    let body = base.body();
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    let mut outcomes = Vec::new();
    let mut chosen: Option<OpenedContent> = None;
    let mut chosen_named = false;
    for part in &parts {
        let env = Envelope::parse(&part.der)?;
        let opened = match env.open(keys, rng) {
            Ok(o) => o,
            Err(EnvelopeError::NotRecipient) => {
                outcomes.push(PartOutcome {
                    content_id: part.content_id.clone(),
                    opened: false,
                });
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut content = opened.content;
        let raw = Entity::parse(&content);
        let inner = raw.as_ref().and_then(unwrap_inner);
        match &inner {
            Some(Err(e)) => return Err(SealError::Signature(e.clone())),
            Some(Ok(signed)) => content = Zeroizing::new(signed.content.clone()),
            None => {}
        }
        out.extend_from_slice(&body[at..part.range.start]);
        out.extend_from_slice(&content);
        at = part.range.end;
        outcomes.push(PartOutcome {
            content_id: part.content_id.clone(),
            opened: true,
        });
        // The session key: the first part a designation names, else the
        // first part opened.
        let named_part = part.content_id.as_ref().is_some_and(|c| named.contains(c));
        if chosen.is_none() || (named_part && !chosen_named) {
            chosen_named = named_part;
            chosen = Some(OpenedContent {
                entity: Entity::parse(&content),
                content,
                message: None,
                cek: opened.cek,
                key_index: opened.key_index,
                recipient_index: opened.recipient_index,
                kind: env.kind,
                cipher: env.params.cipher,
                inner,
                part: part.content_id.clone(),
                backend: opened.backend,
            });
        }
    }
    let Some(mut chosen) = chosen else {
        return Err(EnvelopeError::NotRecipient.into());
    };
    out.extend_from_slice(&body[at..]);
    let mut restored = base;
    let opened_cids: Vec<&String> = outcomes
        .iter()
        .filter(|o| o.opened)
        .filter_map(|o| o.content_id.as_ref())
        .collect();
    remove_designations(&mut restored, |d| {
        d.cid.as_ref().is_some_and(|c| opened_cids.contains(&c))
    });
    let headers = restored.body_headers();
    restored.replace_body(&headers, out.clone());
    chosen.entity = Some(Entity { headers, body: out });
    chosen.message = Some(restored);
    Ok(Some((chosen, outcomes)))
}
