//! What a relay step is given (its keys, how it runs) and what can stop it.

use crate::envelope::{EnvelopeError, RecipientKey};
use crate::error::ErrorClass;
use crate::keys::{Cert, Identity, Psk};
use crate::sdp::{SdpEdit, SdpError};
use crate::sealing::{SealError, SealSpec};
use crate::session::Policy;
use crate::signing::SigningError;
use crate::sip::compose::ComposeError;
use crate::sip::headers::uri_host;
use crate::sip::routing::OwnNames;
use crate::sip::{Answer, HeaderError, IntoAnswer, Message, Status};
use crate::state::StoreError;

use super::path::PathOptions;

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
    /// Signing needs an identity (a PSK-only relay has none).
    #[error("re-signing the edited message needs this relay's certificate and key (--identity)")]
    NoIdentity,
    /// A response with no Via to take off.
    #[error("a response without a Via to remove")]
    NoVia,
    /// A response that does not answer a request this relay forwarded: dropped.
    #[error("response dropped: {0}")]
    NotOurs(crate::sip::routing::NotOurs),
    /// A malformed response: dropped, never forwarded (RFC 4475 §3.1.2.5).
    #[error("malformed response, dropped: {0}")]
    MalformedResponse(crate::sip::conformance::Malformed),
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
    /// The firewall did not confirm a pinhole change: nothing was kept,
    /// nothing is forwarded.
    #[error(transparent)]
    Firewall(#[from] crate::firewall::FirewallError),
}

impl From<crate::state::StepError> for RelayError {
    fn from(e: crate::state::StepError) -> RelayError {
        match e {
            crate::state::StepError::Store(e) => RelayError::Store(e),
            crate::state::StepError::Firewall(e) => RelayError::Firewall(e),
        }
    }
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
}

impl IntoAnswer for RelayError {
    /// A header the relay cannot read makes a 400; a store that cannot be
    /// reached a 503 with Retry-After, one that holds garbage a 500; a designated body that does not open a 400 naming no reason
    /// (the sender learns nothing of why a decryption failed); a response
    /// or a relay fault has no answer.
    fn answer(&self) -> Option<Answer> {
        let answer = match self {
            RelayError::Header(e) => Answer::new(e.sip_status()),
            // H6: a store that cannot be reached now (Redis restarting, a
            // full disk) is a reason to come back, not a fault.
            RelayError::Store(StoreError::Io { .. }) => Answer::new(Status::ServiceUnavailable)
                .with_header("Retry-After", "2")
                .because("the session store cannot be reached"),
            RelayError::Store(_) => {
                Answer::new(Status::ServerError).because("the session store failed")
            }
            // The message waits for the firewall: the sender's retransmission
            // (or a later attempt) tries the change again.
            RelayError::Firewall(_) => Answer::new(Status::ServerError),
            RelayError::Open(_) | RelayError::Signature(_) => Answer::new(Status::BadRequest)
                .with_reason("Bad Request (the body does not open or verify at this relay)"),
            RelayError::EditRefused(_) | RelayError::Edit(_) | RelayError::NotUtf8 => {
                Answer::new(Status::Forbidden)
            }
            _ => return None,
        };
        Some(answer.because(self.to_string()))
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
    /// Open EnvelopedData (CBC, no integrity) at all. Without it such a
    /// body is forwarded unchanged, as by a relay not designated; with it,
    /// one that fails to open is forwarded unchanged too: what the relay
    /// sends never depends on the padding (no padding oracle).
    pub allow_cbc: bool,
    /// What may become a pinhole.
    pub pinholes: crate::pinhole::PinholeLimits,
    /// Every name this relay goes by: Route entries on top naming it come
    /// off, a Via of its own with the same routing is a loop (482). Empty:
    /// its Via sent-by and the host of its URI.
    pub names: OwnNames,
    /// The Record-Route entries it adds when it record-routes, bottom
    /// first (RFC 5658: the inbound listener's, then the outbound one's).
    /// Empty: `<sip:SENT-BY;lr>`.
    pub record_route_as: Vec<String>,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            via: None,
            edits: Vec::new(),
            path: PathOptions::default(),
            mode: Mode::Proxy(ProxyOptions::default()),
            sessions: Policy::default(),
            allow_cbc: false,
            pinholes: Default::default(),
            names: OwnNames::default(),
            record_route_as: Vec::new(),
        }
    }
}

/// This relay's key material.
#[derive(Debug, Clone, Copy)]
pub struct RelayKeys<'a> {
    /// Its identity (certificate + lazily read private key); a relay that
    /// holds PSKs only has none.
    pub identity: Option<&'a Identity>,
    /// PSKs it shares with user agents.
    pub psks: &'a [Psk],
    /// Certificates of the parties it may re-seal for after an edit.
    pub certs: &'a [Cert],
}

impl RelayKeys<'_> {
    /// Its name: the store it keeps its sessions and pinholes under (its
    /// certificate's, else its first PSK's URI).
    pub fn name(&self) -> String {
        match self.identity {
            Some(id) => id.uri().map_or_else(|| id.cert.subject(), str::to_owned),
            None => self
                .uris()
                .into_iter()
                .next()
                .unwrap_or_else(|| "psk-relay".into()),
        }
    }

    /// Every URI that names this relay: the certificate's, and each PSK's.
    pub fn uris(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .identity
            .and_then(|i| i.uri())
            .map(str::to_owned)
            .into_iter()
            .collect();
        for p in self.psks {
            if let Some(u) = &p.uri
                && !out.contains(u)
            {
                out.push(u.clone());
            }
        }
        out
    }

    /// The host of its certificate's SAN URI, else of its first PSK's
    /// (Via sent-by, Warning agent).
    pub fn host(&self) -> String {
        self.uris()
            .first()
            .and_then(|u| uri_host(u))
            .unwrap_or_else(|| "sipseal.invalid".into())
    }

    /// Its Via sent-by (also its Route-Security address): `via`, else its host.
    pub fn sent_by(&self, via: Option<&str>) -> String {
        via.map_or_else(|| self.host(), str::to_owned)
    }

    /// The names it goes by: `opts.names`, else its Via sent-by and host.
    pub fn names(&self, opts: &RelayOptions) -> OwnNames {
        if !opts.names.is_empty() {
            return opts.names.clone();
        }
        let mut names = OwnNames::default();
        names.add(&self.sent_by(opts.via.as_deref()));
        names.add(&self.host());
        names
    }

    /// The keys it opens with: PSKs first (no private-key operation), then its identity.
    pub(super) fn recipient_keys(&self) -> Vec<RecipientKey<'_>> {
        let mut keys: Vec<RecipientKey<'_>> = self.psks.iter().map(RecipientKey::Psk).collect();
        if let Some(id) = self.identity {
            keys.push(RecipientKey::Cert {
                cert: &id.cert,
                key: id,
            });
        }
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
    /// Neither: a request that is refused and never answered (an ACK), and why.
    Drop(String),
}

impl Outcome {
    /// The message to send, if any.
    pub fn message(&self) -> Option<&Message> {
        match self {
            Outcome::Forward(m) | Outcome::Respond(m) => Some(m),
            Outcome::Drop(_) => None,
        }
    }
}
