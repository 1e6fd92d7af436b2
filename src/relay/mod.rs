//! The relay workflow (SPEC §4): one message in; the message to send (the
//! forwarded message, or a SIP error response), the disclosure report, the
//! session key recorded and the pinhole changes out, as values. `proxy`
//! and `reencrypt` on the command line and the live relay run exactly this.
//!
//! A relay opens a body only when a `Proxy-Inspect-Body` names it (or on
//! trial, when a RecipientInfo is addressed to it). It finds its
//! RecipientInfo by rid/kekid first, so a relay that is not a recipient
//! never reads its private key. The sealed body is forwarded byte-identical.

mod path;
mod pipeline;
mod refusal;
mod report;
mod view;

use time::OffsetDateTime;

pub use path::PathOptions;
pub use refusal::Refusal;
pub use report::{Decision, RelayReport, SrtpKey, StreamReport};
pub use view::View;

use crate::context::Context;
use crate::envelope::{EnvelopeError, RecipientKey};
use crate::error::ErrorClass;
use crate::keys::{Cert, Identity, Psk};
use crate::pinhole::{Changes, Seen};
use crate::sdp::{SdpEdit, SdpError};
use crate::sealing::{SealError, SealSpec};
use crate::session::{Entry, Policy, Role, SessionKey, Stored};
use crate::signing::SigningError;
use crate::sip::compose::ComposeError;
use crate::sip::headers::uri_host;
use crate::sip::{HeaderError, Message};
use crate::state::{PinholeStore, SessionStore, StoreError};

/// Problems that stop a relay without a SIP answer.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A header the relay needs does not parse.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The answer could not be built.
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The body could not be opened.
    #[error("cannot open the body: {0}")]
    Open(SealError),
    /// The body could not be sealed for the next hop.
    #[error("cannot seal for the next hop: {0}")]
    Seal(SealError),
    /// A response with no Via to take off.
    #[error("a response without a Via to remove")]
    NoVia,
    /// This relay may not edit or re-seal the body.
    #[error("edit refused: {0}")]
    EditRefused(String),
    /// The edits do not apply to the SDP.
    #[error("cannot edit the SDP: {0}")]
    Edit(SdpError),
    /// The content to edit is not text.
    #[error("cannot edit the SDP: the SDP is not UTF-8")]
    NotUtf8,
    /// The body could not be sealed again after an edit.
    #[error("cannot re-seal after the edit: {0}")]
    Reseal(EnvelopeError),
    /// A signature that does not verify.
    #[error("{0}")]
    Signature(String),
    /// A signature that cannot be read or made.
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// Pinholes are kept per call: the message needs a Call-ID.
    #[error("{0}")]
    NoCallId(HeaderError),
    /// The session or pinhole store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RelayError {
    /// What kind of failure it is: keys or recipients this relay lacks
    /// are configuration, a body not addressed to it is "not for me",
    /// anything about the message failed.
    pub fn class(&self) -> ErrorClass {
        match self {
            RelayError::Open(SealError::Envelope(e)) | RelayError::Reseal(e) => e.class(),
            RelayError::Seal(
                SealError::NoUri(_)
                | SealError::Duplicate(_)
                | SealError::Envelope(EnvelopeError::Recipient(_) | EnvelopeError::Key(_)),
            )
            | RelayError::NoCallId(_) => ErrorClass::Config,
            RelayError::Store(e) => e.class(),
            _ => ErrorClass::Failed,
        }
    }

    /// The status a server answers the request with, when the relay could
    /// answer at all: a header it cannot read makes a 400.
    pub fn sip_status(&self) -> Option<u16> {
        match self {
            RelayError::Header(e) => Some(e.sip_status()),
            _ => None,
        }
    }
}

/// How `proxy` runs.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Open whenever a RecipientInfo is addressed to this relay, designated or not.
    pub trial: bool,
    /// Answer 496 when there is a sealed body this relay cannot open, designated or not.
    pub require_disclosure: bool,
    /// Keep this relay's own `Proxy-Inspect-Body` entry when forwarding.
    pub keep_designation: bool,
    /// Add `Record-Route: <sip:HOST;lr>` to dialog-creating requests, so the
    /// dialog's later requests (and the BYE that closes the pinholes) pass here.
    pub record_route: bool,
}

/// How `reencrypt` runs.
#[derive(Debug, Clone, Default)]
pub struct ReencryptOptions {
    /// The next hop's recipients, designations and cipher.
    pub spec: SealSpec,
    /// Seal under the CEK that opened the input (so the session key derived
    /// from it stays the same end to end); the input's cipher then applies.
    pub keep_cek: bool,
}

/// Which relay step.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Open if designated, report, forward the sealed body as it is (an
    /// edit re-seals for the same recipients).
    Proxy(ProxyOptions),
    /// Open, optionally edit, and seal again for the next hop.
    Reencrypt(ReencryptOptions),
}

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// This relay's Via sent-by (`HOST[:PORT]`); default: its URI's host.
    pub via: Option<String>,
    /// SDP edits (media relay); `proxy` allows them only with `access=modify`.
    pub edits: Vec<SdpEdit>,
    /// Route-Security, imposture check, policy, required signatures.
    pub path: PathOptions,
    /// `proxy` or `reencrypt`.
    pub mode: Mode,
    /// Session key lifetimes for what this relay records.
    pub sessions: Policy,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            via: None,
            edits: Vec::new(),
            path: PathOptions::default(),
            mode: Mode::Proxy(ProxyOptions::default()),
            sessions: Policy::default(),
        }
    }
}

/// This relay's key material.
#[derive(Debug, Clone, Copy)]
pub struct RelayKeys<'a> {
    /// Its identity (certificate + lazily read private key).
    pub identity: &'a Identity,
    /// PSKs it shares with user agents.
    pub psks: &'a [Psk],
    /// Certificates of the parties it may re-seal for after an edit.
    pub certs: &'a [Cert],
}

impl RelayKeys<'_> {
    /// Its name: the store it keeps its sessions and pinholes under.
    pub fn name(&self) -> String {
        self.identity.cert.name()
    }

    /// Every URI that names this relay: the certificate's, and each PSK's.
    pub fn uris(&self) -> Vec<String> {
        let mut out: Vec<String> = self.identity.cert.uri().into_iter().collect();
        for p in self.psks {
            if let Some(u) = &p.uri
                && !out.contains(u)
            {
                out.push(u.clone());
            }
        }
        out
    }

    /// The host of its certificate's SAN URI (Via sent-by, Warning agent).
    pub fn host(&self) -> String {
        self.identity
            .cert
            .uri()
            .and_then(|u| uri_host(&u))
            .unwrap_or_else(|| "sipseal.invalid".into())
    }

    /// Its Via sent-by (also its Route-Security address): `via`, else its host.
    pub fn sent_by(&self, via: Option<&str>) -> String {
        via.map_or_else(|| self.host(), str::to_owned)
    }

    /// The keys it opens with: PSKs first (no private-key operation), then its identity.
    fn recipient_keys(&self) -> Vec<RecipientKey<'_>> {
        let mut keys: Vec<RecipientKey<'_>> = self.psks.iter().map(RecipientKey::Psk).collect();
        keys.push(RecipientKey::Rsa {
            cert: &self.identity.cert,
            key: self.identity,
        });
        keys
    }
}

/// What the relay does with the message.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Forward this message.
    Forward(Message),
    /// Answer with this response instead.
    Respond(Message),
}

impl Outcome {
    /// The message to send, either way.
    pub fn message(&self) -> &Message {
        match self {
            Outcome::Forward(m) | Outcome::Respond(m) => m,
        }
    }
}

/// The result of one relay step.
#[derive(Debug)]
pub struct Step {
    /// What to send.
    pub outcome: Outcome,
    /// What the relay saw and did.
    pub report: RelayReport,
    /// The session key it recorded (it opened a full envelope).
    pub session: Option<Stored>,
    /// The pinhole changes, when pinholes are kept.
    pub pinholes: Option<Changes>,
}

/// Where a relay keeps what it learns.
#[derive(Clone, Copy)]
pub struct RelayState<'a> {
    /// Session keys: looked up for session messages, recorded from full envelopes.
    pub sessions: &'a dyn SessionStore,
    /// Each call's pinholes, when the relay keeps them.
    pub pinholes: Option<&'a dyn PinholeStore>,
}

/// One relay step on `msg`: the session key it may be sealed under is
/// looked up, the pipeline runs, the key of a full envelope this relay
/// opened is recorded, and the pinholes follow what is sent on.
pub fn relay(
    msg: &Message,
    keys: &RelayKeys<'_>,
    opts: &RelayOptions,
    state: RelayState<'_>,
    ctx: &mut Context,
) -> Result<Step, RelayError> {
    let view = View::parse(msg);
    let owner = keys.name();
    let now = ctx.now();
    let sessions = session_keys(&view, &owner, &opts.sessions, state.sessions, now)?;
    let pass = pipeline::run(view, keys, &sessions, opts, ctx)?;
    let session = match (&pass.cek, msg.call_id()) {
        (Some(cek), Ok(call_id)) => {
            let peer = msg.aor("From").map(str::to_owned);
            let entry = Entry::new(call_id, cek, Role::Relay, peer, now, &opts.sessions);
            let recorded = state
                .sessions
                .record(&owner, entry, now, opts.sessions.grace)?;
            Some(Stored {
                owner: owner.clone(),
                call_id: call_id.to_owned(),
                recorded,
            })
        }
        _ => None,
    };
    let pinholes = match state.pinholes {
        Some(store) => {
            // What passes on is what the pinholes follow: the forwarded
            // message, or the error response this relay answered with.
            let (out, sdp) = match &pass.outcome {
                Outcome::Forward(m) => (m, pass.report.sdp.as_deref()),
                Outcome::Respond(m) => (m, None),
            };
            let call_id = out.call_id().map_err(RelayError::NoCallId)?;
            Some(store.step(&owner, call_id, &Seen::of(out, sdp))?)
        }
        None => None,
    };
    Ok(Step {
        outcome: pass.outcome,
        report: pass.report,
        session,
        pinholes,
    })
}

/// The stored key a session message is sealed under, if this relay has it.
fn session_keys(
    view: &View<'_>,
    owner: &str,
    policy: &Policy,
    store: &dyn SessionStore,
    now: OffsetDateTime,
) -> Result<Vec<SessionKey>, StoreError> {
    let Some(reference) = view
        .envelope
        .as_ref()
        .ok()
        .and_then(|e| e.session_reference())
    else {
        return Ok(Vec::new());
    };
    let call_id = view.msg.call_id().ok();
    Ok(store
        .lookup(owner, reference, call_id, now, policy.grace)?
        .into_iter()
        .collect())
}
