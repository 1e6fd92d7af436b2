//! The user agent's workflows (docs/SPEC.md §3.2): seal a message for its
//! recipients, seal in a dialog under the session key (or learn that a
//! rekey is due), rekey, build the next message of a dialog ([`Ua::reply`]),
//! and open. Each takes parsed inputs, a [`Context`] and a session store,
//! and returns values; what the session store learns is in the result.

mod reply;

use time::OffsetDateTime;

pub use reply::{DialogRequest, Reply, ReplyTo};

use crate::context::Context;
use crate::envelope::signed::SignatureError;
use crate::envelope::{Cek, Envelope, RecipientKey};
use crate::error::ErrorClass;
use crate::keys::trust::TrustError;
use crate::keys::{Cert, Identity, KeyError};
use crate::sealing::{
    OpenedContent, PartOutcome, SealError, SealSpec, SealedInput, SealedMessage, envelope_der,
    open_parsed, open_parts, seal_message, seal_session_signed,
};
use crate::session::{Entry, Limits, RekeyReason, Role, SessionKey, Stored, Use};
use crate::signing::InnerSignature;
use crate::sip::Message;
use crate::sip::compose::ComposeError;
use crate::sip::headers::{HeaderError, parse_content_type};
use crate::state::{SessionStore, StoreError};
use crate::verify::{VerifyOptions, verify_inner};

/// Why a user agent workflow stopped.
#[derive(Debug, thiserror::Error)]
pub enum UaError {
    /// Sealing or opening failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sealed under a session reference this party has not stored, or
    /// whose key expired (a UAS answers 493 Undecipherable).
    #[error(
        "unknown session key {}: sealed under a session reference this party has not stored, or whose key has expired",
        hex::encode(.0)
    )]
    UnknownSessionKey(Vec<u8>),
    /// No session for this Call-ID in the sender's store.
    #[error("no session key for Call-ID {0}")]
    NoSession(String),
    /// The message of the dialog lacks what a new request needs.
    #[error(transparent)]
    Dialog(HeaderError),
    /// This party is neither side of the dialog.
    #[error("neither From nor To is {0}")]
    NotInDialog(String),
    /// An ACK answers a 2xx to an INVITE.
    #[error("an ACK answers a response to INVITE, not {seq} {method}")]
    AckWithoutInvite {
        /// The CSeq number of the message given.
        seq: u32,
        /// Its CSeq method.
        method: String,
    },
    /// The new message could not be composed.
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The inner signature does not verify.
    #[error("the inner signature: {0}")]
    InnerSignature(SignatureError),
    /// The inner signature verifies but its signer is not trusted.
    #[error("the inner signature by {signer} does not check: {}", .failed.join("; "))]
    InnerUntrusted {
        /// Who signed.
        signer: String,
        /// The checks that failed, as `check: why`.
        failed: Vec<String>,
    },
}

impl UaError {
    /// What kind of failure it is.
    pub fn class(&self) -> ErrorClass {
        match self {
            UaError::Seal(e) => e.class(),
            UaError::Store(e) => e.class(),
            UaError::Compose(e) => e.class(),
            UaError::NoSession(_)
            | UaError::Dialog(_)
            | UaError::NotInDialog(_)
            | UaError::AckWithoutInvite { .. } => ErrorClass::Config,
            UaError::UnknownSessionKey(_)
            | UaError::InnerSignature(_)
            | UaError::InnerUntrusted { .. } => ErrorClass::Failed,
        }
    }

    /// The status a UAS answers with: 493 Undecipherable for a session
    /// key it does not have.
    pub fn sip_status(&self) -> Option<crate::sip::Status> {
        match self {
            UaError::UnknownSessionKey(_) => Some(crate::sip::Status::Undecipherable),
            _ => None,
        }
    }
}

/// A user agent: where it keeps session keys, and their limits.
#[derive(Clone, Copy)]
pub struct Ua<'a> {
    /// The session store.
    pub store: &'a dyn SessionStore,
    /// Key limits given for this run.
    pub limits: Limits,
}

/// A message sealed as a full envelope, and the session key it started.
pub struct Sealed {
    /// The sealed message.
    pub sealed: SealedMessage,
    /// The session key recorded for the sender, when the message names one.
    pub stored: Option<Stored>,
}

/// What sealing in a dialog gives.
pub enum InDialog {
    /// Sealed under the session key (its use counted).
    Sealed(Box<SealedMessage>),
    /// The key is used up or too old: a full envelope must go out ([`Ua::rekey`]).
    RekeyDue(RekeyReason),
}

/// The inner signature of an opened body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InnerCheck {
    /// The signature verifies; its certificate was not checked.
    Verifies {
        /// Who signed.
        signer: String,
    },
    /// The signature verifies and the signer passed every certificate check.
    Verified {
        /// Who signed.
        signer: String,
    },
}

/// What opening gave.
pub struct Opened {
    /// The plaintext and the restored message.
    pub content: OpenedContent,
    /// Whether a stored session key opened it.
    pub by_session: bool,
    /// The inner signature, checked.
    pub inner: Option<InnerCheck>,
    /// The session key recorded from a full envelope.
    pub stored: Option<Stored>,
    /// A multipart body's sealed parts, opened in place or left sealed
    /// (not for these keys); empty for a body sealed whole.
    pub parts: Vec<PartOutcome>,
}

impl Ua<'_> {
    /// Seal the body of `msg` for `spec` (a full envelope) and record the
    /// session key for the sender (the From AOR of a request, the To AOR
    /// of a response), the other party as its peer.
    pub fn seal(
        &self,
        msg: &Message,
        spec: &SealSpec,
        ctx: &mut Context,
    ) -> Result<Sealed, UaError> {
        let sealed = seal_message(msg, spec, ctx)?;
        let out = &sealed.message;
        let stored = match out.aor(out.sender_header()) {
            Some(me) => {
                let peer = out.aor(out.receiver_header());
                self.record(me, out, &sealed.cek, Role::Ua, peer, ctx.now())?
            }
            None => None,
        };
        Ok(Sealed { sealed, stored })
    }

    /// Seal `msg` under the session key `me` stored for its Call-ID (its
    /// use counted), or say that a rekey is due.
    pub fn seal_in_dialog(
        &self,
        msg: &Message,
        me: &str,
        ctx: &mut Context,
    ) -> Result<InDialog, UaError> {
        self.seal_in_dialog_signed(msg, me, None, ctx)
    }

    /// [`Ua::seal_in_dialog`] with the content signed inside by `signer`
    /// first, so that the relays holding the session key read it but
    /// cannot change it unseen.
    pub fn seal_in_dialog_signed(
        &self,
        msg: &Message,
        me: &str,
        signer: Option<&Identity>,
        ctx: &mut Context,
    ) -> Result<InDialog, UaError> {
        let call_id = msg.call_id().map_err(SealError::from)?;
        let used = self.store.use_key(
            me,
            call_id,
            ctx.now(),
            self.limits.max_uses,
            self.limits.max_age,
        )?;
        match used {
            Use::Key(key) => Ok(InDialog::Sealed(Box::new(seal_session_signed(
                msg, &key, signer, ctx,
            )?))),
            Use::Rekey(reason) => Ok(InDialog::RekeyDue(reason)),
            Use::NoSession => Err(UaError::NoSession(call_id.to_owned())),
        }
    }

    /// The session `me` keeps for the Call-ID of `msg` (a rekey needs one).
    pub fn session(&self, msg: &Message, me: &str) -> Result<Entry, UaError> {
        let call_id = msg.call_id().map_err(SealError::from)?;
        self.store
            .entry(me, call_id)?
            .ok_or_else(|| UaError::NoSession(call_id.to_owned()))
    }

    /// A key update: `msg` sealed as a full envelope for `spec`, its fresh
    /// CEK recorded as the new session key of `me`; the old key still
    /// opens messages in flight for the grace time.
    pub fn rekey(
        &self,
        msg: &Message,
        me: &str,
        spec: &SealSpec,
        ctx: &mut Context,
    ) -> Result<Sealed, UaError> {
        let sealed = seal_message(msg, spec, ctx)?;
        let out = &sealed.message;
        let peer = out.aor(out.receiver_header());
        let stored = self.record(me, msg, &sealed.cek, Role::Ua, peer, ctx.now())?;
        Ok(Sealed { sealed, stored })
    }

    /// Open a sealed body with `keys`, or with the session key one of
    /// their owners stored for its reference (docs/SPEC.md §3.2). An inner
    /// signature must verify; with `trust`, its signer must also pass the
    /// certificate checks. The session key of a full envelope in a SIP
    /// message is recorded for the key's owner, the sender as peer.
    pub fn open(
        &self,
        input: SealedInput,
        keys: &[RecipientKey<'_>],
        trust: Option<&[Cert]>,
        ctx: &mut Context,
    ) -> Result<Opened, UaError> {
        if let SealedInput::Sip(msg) = &input
            && let Some((content, parts)) = open_parts(msg, keys, ctx.rng())?
        {
            return self.opened_parts(content, parts, keys, trust, ctx);
        }
        let env = Envelope::parse(&envelope_der(&input)?).map_err(SealError::from)?;
        let msg = match &input {
            SealedInput::Sip(msg) => Some(msg),
            _ => None,
        };
        let session = match env.find(keys) {
            Some(_) => None,
            None => self.session_key(keys, &env, msg, ctx.now())?,
        };
        let mut all: Vec<RecipientKey<'_>> =
            session.iter().map(SessionKey::recipient_key).collect();
        all.extend(keys.iter().cloned());
        let content = open_parsed(input, &env, &all, ctx.rng())?;
        let inner = inner_of(&content, trust, ctx.now())?;
        // The restored message has the sealed one's From, To and Call-ID.
        let stored = match (&content.message, all.get(content.key_index), &session) {
            (Some(msg), Some(key), None) => {
                let sender = msg.aor(msg.sender_header());
                self.record(&key.owner(), msg, &content.cek, Role::Ua, sender, ctx.now())?
            }
            _ => None,
        };
        Ok(Opened {
            by_session: session.is_some(),
            content,
            inner,
            stored,
            parts: Vec::new(),
        })
    }

    /// A multipart body's parts opened in place (issue 14 item 10): the
    /// inner signature of the part that gives the session key checked, and
    /// that key recorded.
    fn opened_parts(
        &self,
        content: OpenedContent,
        parts: Vec<PartOutcome>,
        keys: &[RecipientKey<'_>],
        trust: Option<&[Cert]>,
        ctx: &mut Context,
    ) -> Result<Opened, UaError> {
        let inner = inner_of(&content, trust, ctx.now())?;
        let stored = match (&content.message, keys.get(content.key_index)) {
            (Some(msg), Some(key)) => {
                let sender = msg.aor(msg.sender_header());
                self.record(&key.owner(), msg, &content.cek, Role::Ua, sender, ctx.now())?
            }
            _ => None,
        };
        Ok(Opened {
            by_session: false,
            content,
            inner,
            stored,
            parts,
        })
    }

    /// When `env` is a session message, the key one of the owners of
    /// `keys` stored for its reference (and the message's Call-ID) that is
    /// valid now. Identifiers only: no key is used here.
    fn session_key(
        &self,
        keys: &[RecipientKey<'_>],
        env: &Envelope,
        msg: Option<&Message>,
        now: OffsetDateTime,
    ) -> Result<Option<SessionKey>, UaError> {
        let Some(reference) = env.session_reference() else {
            return Ok(None);
        };
        let call_id = msg.and_then(|m| m.call_id().ok());
        let grace = self.limits.policy().grace;
        for key in keys {
            if let Some(found) = self
                .store
                .lookup(&key.owner(), reference, call_id, now, grace)?
            {
                return Ok(Some(found));
            }
        }
        Err(UaError::UnknownSessionKey(reference.to_vec()))
    }

    /// Store the session key derived from `cek` (a full envelope of `msg`)
    /// for `owner`. A message without a Call-ID has no session to record.
    fn record(
        &self,
        owner: &str,
        msg: &Message,
        cek: &Cek,
        role: Role,
        peer: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Option<Stored>, UaError> {
        let Ok(call_id) = msg.call_id() else {
            return Ok(None);
        };
        let policy = self.limits.policy();
        let entry = Entry::new(call_id, cek, role, peer.map(str::to_owned), now, &policy);
        let recorded = self.store.record(owner, entry, now, policy.grace)?;
        Ok(Some(Stored {
            owner: owner.to_owned(),
            call_id: call_id.to_owned(),
            recorded,
        }))
    }
}

/// The inner signature of what was opened, checked (see [`check_inner`]).
fn inner_of(
    content: &OpenedContent,
    trust: Option<&[Cert]>,
    at: OffsetDateTime,
) -> Result<Option<InnerCheck>, UaError> {
    content
        .inner
        .as_ref()
        .map(|inner| check_inner(inner, content.message.as_ref(), trust, at))
        .transpose()
}

/// The inner signature: a broken one fails; with `trust`, the signer's
/// chain, validity, key usage and SAN URI (the From AOR) must check too.
fn check_inner(
    inner: &Result<InnerSignature, SignatureError>,
    msg: Option<&Message>,
    trust: Option<&[Cert]>,
    at: OffsetDateTime,
) -> Result<InnerCheck, UaError> {
    let signed = match inner {
        Ok(s) => s,
        Err(e) => return Err(UaError::InnerSignature(e.clone())),
    };
    let signer = signed.signer.cert.name();
    let Some(anchors) = trust else {
        return Ok(InnerCheck::Verifies { signer });
    };
    let opts = VerifyOptions {
        anchors,
        at,
        min_route_level: None,
        crls: None,
        received_from: None,
    };
    let report = verify_inner("inner", msg, inner, &opts);
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.check, c.detail))
        .collect();
    if failed.is_empty() {
        Ok(InnerCheck::Verified { signer })
    } else {
        Err(UaError::InnerUntrusted { signer, failed })
    }
}

/// Why a response does not carry a relay's certificate.
#[derive(Debug, thiserror::Error)]
pub enum RelayCertError {
    /// A request was given.
    #[error("a request, not a 496 response")]
    NotAResponse,
    /// The Content-Type does not parse.
    #[error(transparent)]
    ContentType(HeaderError),
    /// No `application/pkix-cert` body.
    #[error("{0} response without an application/pkix-cert body")]
    NoCert(u16),
    /// The body is no certificate.
    #[error(transparent)]
    BadCert(KeyError),
    /// The certificate names no relay.
    #[error("the certificate has no SAN URI to designate the relay by")]
    NoUri,
    /// The certificate is not issued by a trust anchor, or not valid now.
    #[error(transparent)]
    Untrusted(TrustError),
}

impl RelayCertError {
    /// A certificate that is not trusted failed; anything else is the
    /// wrong file given.
    pub fn class(&self) -> ErrorClass {
        match self {
            RelayCertError::Untrusted(_) => ErrorClass::Failed,
            _ => ErrorClass::Config,
        }
    }
}

/// The certificate a `496 Proxy Undecipherable` carries (docs/SPEC.md §3.5): the
/// DER body of type `application/pkix-cert` (RFC 2585), with a SAN URI to
/// designate the relay by.
pub fn relay_cert(msg: &Message, source: &str) -> Result<Cert, RelayCertError> {
    let status = msg.status().ok_or(RelayCertError::NotAResponse)?;
    let ct = msg.header("Content-Type").unwrap_or_default();
    let parsed = parse_content_type(ct).map_err(RelayCertError::ContentType)?;
    if !parsed.is("application/pkix-cert") || msg.body().is_empty() {
        return Err(RelayCertError::NoCert(status));
    }
    let cert = Cert::from_der(msg.body(), source).map_err(RelayCertError::BadCert)?;
    if cert.uri().is_none() {
        return Err(RelayCertError::NoUri);
    }
    Ok(cert)
}

/// The relay certificate of a 496 that one of `anchors` issued and that
/// is valid at `now`, with the anchor that issued it: what a user agent
/// adds as a recipient when it seals again.
pub fn trusted_relay_cert<'a>(
    msg: &Message,
    source: &str,
    anchors: &'a [Cert],
    now: OffsetDateTime,
) -> Result<(Cert, &'a Cert), RelayCertError> {
    let cert = relay_cert(msg, source)?;
    let anchor =
        crate::keys::trust::check_issued(&cert, anchors, now).map_err(RelayCertError::Untrusted)?;
    Ok((cert, anchor))
}
