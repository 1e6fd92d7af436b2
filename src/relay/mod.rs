//! The relay pipeline (SPEC §4) as pure functions: one message in, a
//! decision and a message out (the forwarded message, or a SIP error
//! response), plus a disclosure report.
//!
//! A relay opens a body only when a `Proxy-Inspect-Body` names it (or with
//! `trial`, when a RecipientInfo is addressed to it). It finds its
//! RecipientInfo by rid/kekid first, so a relay that is not a recipient
//! never reads its private key. The sealed body is forwarded byte-identical.

pub mod path;

use der::Encode;
use serde::Serialize;

use crate::context::Context;
use crate::envelope::recipient::{
    KeyTransportScheme, addressed_to_cert, addressed_to_kek, kekri_for, ktri_for,
};
use crate::envelope::{Cek, ContentCipher, RsaPadding, fresh_cek, seal_infos};
use crate::envelope::{Envelope, EnvelopeError, Recipient, RecipientKey};
use crate::keys::{Cert, Identity, Psk};
use crate::mime::Entity;
use crate::sdp::{Sdp, Stream};
use crate::sdp::{SdpEdit, apply_edits};
use crate::sealing::{SealError, SealSpec, restore, seal_message_with, sealed_body};
use crate::session::SessionKey;
use crate::signing::{
    OuterSignature, SigningError, outer_signature, peel, sign_message, unwrap_inner,
};
use crate::sip::compose::{Body, ComposeError, ResponseParams, build_response};
use crate::sip::disclosure::{Access, Designation, designations, remove_designations};
use crate::sip::headers::{split_list, uri_host};
use crate::sip::{HeaderError, Message};
use cms::enveloped_data::RecipientInfo;
pub use path::PathOptions;

/// Problems that stop a relay without a SIP answer.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error("cannot open the body: {0}")]
    Open(SealError),
    #[error("cannot seal for the next hop: {0}")]
    Seal(SealError),
    #[error("a response without a Via to remove")]
    NoVia,
    #[error("edit refused: {0}")]
    EditRefused(String),
    #[error("cannot edit the SDP: {0}")]
    Edit(String),
    #[error("cannot re-seal after the edit: {0}")]
    Reseal(EnvelopeError),
    #[error("{0}")]
    Signature(String),
    #[error(transparent)]
    Signing(#[from] SigningError),
}

impl RelayError {
    /// What to do next.
    pub fn hint(&self) -> String {
        match self {
            RelayError::Header(e) => e.hint(),
            RelayError::Compose(e) => e.hint(),
            RelayError::Open(e) => e.hint(),
            RelayError::Seal(e) => e.hint(),
            RelayError::NoVia => "a response must carry the Via of the request it answers".into(),
            RelayError::EditRefused(_) => {
                "only a relay designated with access=modify (or sealed to as the next hop) may edit or re-seal; forward it with `sipseal proxy` and no edit options".into()
            }
            RelayError::Edit(_) => "check --set-connection ADDR and --set-port STREAM=PORT against the SDP".into(),
            RelayError::Reseal(_) => {
                "re-sealing needs every recipient's certificate (--certs DIR) or PSK (--psk FILE)".into()
            }
            RelayError::Signature(_) => {
                "the body was changed after it was signed; do not forward it, ask the sender to re-send".into()
            }
            RelayError::Signing(e) => e.hint(),
        }
    }

    /// Whether it is a configuration problem (exit 2) rather than a bad message.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            RelayError::Open(SealError::Envelope(
                EnvelopeError::Key(_) | EnvelopeError::Recipient(_)
            )) | RelayError::Reseal(EnvelopeError::Recipient(_) | EnvelopeError::Key(_))
                | RelayError::Seal(
                    SealError::NoUri(_)
                        | SealError::Duplicate(_)
                        | SealError::Envelope(EnvelopeError::Recipient(_) | EnvelopeError::Key(_))
                )
        )
    }

    /// Whether it means "not addressed to this relay" (exit 3).
    pub fn is_not_recipient(&self) -> bool {
        matches!(self, RelayError::Open(e) if e.is_not_recipient())
    }
}

/// How the relay runs.
#[derive(Debug, Clone, Default)]
pub struct RelayOptions {
    /// This relay's Via sent-by (`HOST[:PORT]`); default: its URI's host.
    pub via: Option<String>,
    /// Open whenever a RecipientInfo is addressed to this relay, designated or not.
    pub trial: bool,
    /// Answer 496 when there is a sealed body this relay cannot open, designated or not.
    pub require_disclosure: bool,
    /// Keep this relay's own `Proxy-Inspect-Body` entry when forwarding.
    pub keep_designation: bool,
    /// SDP edits (media relay); allowed only with `access=modify`.
    pub edits: Vec<SdpEdit>,
    /// Add `Record-Route: <sip:HOST;lr>` to dialog-creating requests, so the
    /// dialog's later requests (and the BYE that closes the pinholes) pass here.
    pub record_route: bool,
    /// Route-Security, imposture check, policy, required signatures.
    pub path: PathOptions,
}

/// This relay's key material.
pub struct RelayKeys<'a> {
    /// Its identity (certificate + lazily read private key).
    pub identity: &'a Identity,
    /// PSKs it shares with user agents.
    pub psks: &'a [Psk],
    /// Certificates of the parties it may re-seal for after an edit.
    pub certs: &'a [Cert],
    /// Session keys it stored (SPEC §3.2) that later messages may be sealed under.
    pub sessions: &'a [SessionKey],
}

impl RelayKeys<'_> {
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
    fn host(&self) -> String {
        self.identity
            .cert
            .uri()
            .and_then(|u| uri_host(&u))
            .unwrap_or_else(|| "sipseal.invalid".into())
    }

    fn recipient_keys(&self) -> Vec<RecipientKey<'_>> {
        let mut keys: Vec<RecipientKey<'_>> = self
            .sessions
            .iter()
            .map(SessionKey::recipient_key)
            .collect();
        keys.extend(self.psks.iter().map(RecipientKey::Psk));
        keys.push(RecipientKey::Rsa {
            cert: &self.identity.cert,
            key: self.identity,
        });
        keys
    }
}

/// Why the relay opened (or did not open) the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// No body, or a body that is not sealed.
    NotSealed,
    /// Sealed, not for this relay: forwarded without touching its key.
    NotDesignated,
    /// A `Proxy-Inspect-Body` names this relay.
    Designated,
    /// `--trial`: a RecipientInfo is addressed to this relay.
    Trial,
    /// `reencrypt` without a designation: the sender sealed to this relay
    /// as its next hop (trust hop by hop).
    Addressed,
    /// A later message of a session whose key this relay stored when it
    /// opened the session's first message (SPEC §3.2).
    Session,
}

/// One media stream as a relay needs it (pinholes, recording).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    pub media: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub port: u16,
    pub protocol: String,
    pub rtcp_mux: bool,
    /// Where RTCP goes: `a=rtcp`, else port+1 (none with rtcp-mux or port 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtcp_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtcp_address: Option<String>,
}

impl From<Stream> for StreamReport {
    fn from(s: Stream) -> StreamReport {
        let rtcp_port = s.rtcp(s.rtcp_mux);
        StreamReport {
            rtcp_address: s.rtcp_address.filter(|_| rtcp_port.is_some()),
            rtcp_port,
            media: s.media,
            address: s.address,
            port: s.port,
            protocol: s.transport,
            rtcp_mux: s.rtcp_mux,
        }
    }
}

/// An SRTP master key offered in `a=crypto` (RFC 4568), for recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SrtpKey {
    /// Index of the media stream.
    pub stream: usize,
    pub media: String,
    pub tag: String,
    pub suite: String,
    /// The key parameters as written (`inline:...`).
    pub key_params: String,
}

/// The disclosure report of one relay step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayReport {
    /// `request` or `response`.
    pub kind: &'static str,
    /// Request method, or the CSeq method of a response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// This relay's URI(s).
    pub relay: Vec<String>,
    pub decision: Decision,
    /// Who designated this relay (the From party of the sealed request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub designated_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    /// Whether the body was opened.
    pub opened: bool,
    /// Which key opened it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opened_with: Option<String>,
    /// The SIP response this relay produced instead of forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered: Option<u16>,
    /// The SDP as text, when opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub srtp_keys: Vec<SrtpKey>,
    /// Whether this relay edited the SDP.
    pub edited: bool,
    /// Whom the body was sealed for again (after an edit, or by `reencrypt`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resealed_for: Vec<String>,
    /// After a re-seal: `fresh` (a new CEK) or `kept` (`--keep-cek`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cek: Option<&'static str>,
    /// Who signed the content inside the envelope (inner signature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Who signed the message (outer signature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outer_signer: Option<String>,
    /// Whether this relay signed its output (relay re-signature).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resigned: bool,
    /// Route-Security: what this relay checked and appended.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route_security: Vec<String>,
    /// Why this relay answered 403, 404 or 495 (for the operator only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Things worth knowing (e.g. an SDP that does not parse).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl RelayReport {
    /// The human-readable form.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let what = match (&self.method, self.status) {
            (Some(m), Some(s)) => format!("{s} response to {m}"),
            (Some(m), None) => format!("{m} request"),
            (None, Some(s)) => format!("{s} response"),
            (None, None) => self.kind.to_owned(),
        };
        let _ = writeln!(out, "relay {}: {what}", self.relay.join(", "));
        if let Some(c) = &self.call_id {
            let _ = writeln!(out, "  call-id: {c}");
        }
        let decision = match self.decision {
            Decision::NotSealed => "body not sealed",
            Decision::NotDesignated => "sealed, not designated: forwarded without opening",
            Decision::Designated => "designated by Proxy-Inspect-Body",
            Decision::Trial => {
                "not designated, opened on trial (a RecipientInfo is addressed to it)"
            }
            Decision::Addressed => "not designated, sealed to this relay as the next hop",
            Decision::Session => "sealed under a session key this relay stored",
        };
        let _ = writeln!(out, "  decision: {decision}");
        if let Some(by) = &self.designated_by {
            let _ = writeln!(out, "  designated by: {by}");
        }
        if let Some(a) = self.access {
            let _ = writeln!(out, "  access: {}", a.as_str());
        }
        if let Some(k) = &self.opened_with {
            let _ = writeln!(out, "  opened with: {k}");
        }
        if self.edited {
            out.push_str("  edited: yes\n");
        }
        if !self.resealed_for.is_empty() {
            let _ = writeln!(
                out,
                "  re-sealed for: {} ({} CEK)",
                self.resealed_for.join(", "),
                self.cek.unwrap_or("fresh")
            );
        }
        if let Some(code) = self.answered {
            let _ = writeln!(out, "  answered: {code} instead of forwarding");
        }
        if let Some(why) = &self.refused {
            let _ = writeln!(out, "  refused: {why}");
        }
        if let Some(s) = &self.outer_signer {
            let _ = writeln!(out, "  outer signature: {s}");
        }
        if let Some(s) = &self.signer {
            let _ = writeln!(
                out,
                "  inner signature: {s} (read-only: an edit would break it)"
            );
        }
        if self.resigned {
            out.push_str("  re-signed: yes (outer signature by this relay)\n");
        }
        for r in &self.route_security {
            let _ = writeln!(out, "  route-security: {r}");
        }
        for (i, s) in self.streams.iter().enumerate() {
            let _ = write!(
                out,
                "  stream {i}: {} {}:{} {}",
                s.media,
                s.address.as_deref().unwrap_or("-"),
                s.port,
                s.protocol
            );
            match (s.rtcp_mux, s.rtcp_port) {
                (true, _) => out.push_str(", rtcp-mux"),
                (false, Some(p)) => {
                    let _ = write!(
                        out,
                        ", rtcp {}:{p}",
                        s.rtcp_address
                            .as_deref()
                            .or(s.address.as_deref())
                            .unwrap_or("-")
                    );
                }
                (false, None) => {}
            }
            out.push('\n');
        }
        for k in &self.srtp_keys {
            let _ = writeln!(
                out,
                "  srtp key: stream {} ({}) tag {} {} {}",
                k.stream, k.media, k.tag, k.suite, k.key_params
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        out
    }
}

/// What the relay does with the message.
pub enum Outcome {
    /// Forward this message.
    Forward(Message),
    /// Answer with this response instead (exit 5).
    Respond(Message),
}

impl RelayReport {
    /// An empty report for `msg` at the relay named `uris`.
    fn new(msg: &Message, uris: &[String]) -> RelayReport {
        RelayReport {
            kind: if msg.is_request() {
                "request"
            } else {
                "response"
            },
            method: msg
                .method()
                .map(str::to_owned)
                .or_else(|| msg.cseq().ok().map(|c| c.method)),
            status: msg.status(),
            call_id: msg.call_id().ok().map(str::to_owned),
            relay: uris.to_vec(),
            decision: Decision::NotSealed,
            designated_by: None,
            access: None,
            opened: false,
            opened_with: None,
            answered: None,
            sdp: None,
            streams: Vec::new(),
            srtp_keys: Vec::new(),
            edited: false,
            resealed_for: Vec::new(),
            cek: None,
            signer: None,
            outer_signer: None,
            resigned: false,
            route_security: Vec::new(),
            refused: None,
            notes: Vec::new(),
        }
    }

    /// Record the designation naming this relay (access, and who made it).
    fn designated(&mut self, msg: &Message, d: &Designation) {
        self.access = Some(d.access);
        self.designated_by = msg.aor("From").map(str::to_owned);
    }
}

/// `483 Too Many Hops` for a request whose Max-Forwards is 0.
fn too_many_hops(
    msg: &Message,
    report: &mut RelayReport,
    ctx: &mut Context,
) -> Result<Option<Outcome>, RelayError> {
    if !msg.is_request() || msg.max_forwards()? != Some(0) {
        return Ok(None);
    }
    let params = ResponseParams {
        code: 483,
        ..Default::default()
    };
    report.answered = Some(483);
    Ok(Some(Outcome::Respond(build_response(msg, &params, ctx)?)))
}

/// Open `env` with this relay's keys and say so in the report.
fn open_envelope(
    env: &Envelope,
    keys: &[RecipientKey<'_>],
    report: &mut RelayReport,
    ctx: &mut Context,
) -> Result<crate::envelope::Opened, RelayError> {
    let opened = env
        .open(keys, ctx.rng())
        .map_err(|e| RelayError::Open(e.into()))?;
    report.opened = true;
    report.opened_with = keys.get(opened.key_index).map(RecipientKey::describe);
    Ok(opened)
}

/// The `Proxy-Inspect-Body` entries naming this relay.
fn my_designations(msg: &Message, uris: &[String]) -> Vec<Designation> {
    designations(msg)
        .into_iter()
        .flatten()
        .filter(|d| uris.iter().any(|u| u.eq_ignore_ascii_case(&d.uri)))
        .collect()
}

/// The result of one relay step.
pub struct Step {
    pub outcome: Outcome,
    pub report: RelayReport,
    /// The CEK of the envelope this relay opened (for the session store).
    pub cek: Option<Cek>,
}

impl Step {
    fn new(outcome: Outcome, report: RelayReport) -> Step {
        Step {
            outcome,
            report,
            cek: None,
        }
    }
}

/// A relay step under way: this relay's URIs, the report so far, the
/// outer signature.
struct Begun {
    uris: Vec<String>,
    report: RelayReport,
    outer: Option<OuterSignature>,
}

/// What every relay step does first: Max-Forwards, the imposture check
/// and the policy, and reading the outer signature. `Err` is the step that
/// answered (483, 403, 404).
fn start(
    msg: &Message,
    keys: &RelayKeys<'_>,
    path: &PathOptions,
    ctx: &mut Context,
) -> Result<Result<Begun, Step>, RelayError> {
    let uris = keys.uris();
    let mut report = RelayReport::new(msg, &uris);
    if let Some(response) = too_many_hops(msg, &mut report, ctx)? {
        return Ok(Err(Step::new(response, report)));
    }
    if let Some(response) = path::admit(msg, path, &mut report, ctx)? {
        return Ok(Err(Step::new(response, report)));
    }
    let outer = outer_signature(msg)?;
    report.outer_signer = outer_signer(outer.as_ref());
    Ok(Ok(Begun {
        uris,
        report,
        outer,
    }))
}

/// Run one relay step on `msg`.
pub fn relay(
    msg: &Message,
    keys: &RelayKeys<'_>,
    opts: &RelayOptions,
    ctx: &mut Context,
) -> Result<Step, RelayError> {
    let Begun {
        uris,
        mut report,
        outer,
    } = match start(msg, keys, &opts.path, ctx)? {
        Ok(begun) => begun,
        Err(answered) => return Ok(answered),
    };
    let mine = my_designations(msg, &uris);
    let envelope = match sealed_body(msg) {
        Ok(der) => Some(Envelope::parse(&der).map_err(|e| RelayError::Open(e.into()))?),
        Err(SealError::NoBody | SealError::NotSealed(_) | SealError::NoContentType) => None,
        Err(e) => return Err(RelayError::Open(e)),
    };
    let recipient_keys = keys.recipient_keys();
    let mut resealed = None;
    let mut cek = None;
    if !opts.edits.is_empty() && envelope.is_none() {
        return Err(RelayError::EditRefused(
            "the body is not sealed for this relay".into(),
        ));
    }
    if let Some(env) = &envelope {
        let found = env.find(&recipient_keys);
        let addressed = found.is_some();
        let by_session = found.is_some_and(|(k, _)| k < keys.sessions.len());
        report.decision = if !mine.is_empty() {
            Decision::Designated
        } else if by_session {
            Decision::Session
        } else if opts.trial && addressed {
            Decision::Trial
        } else {
            Decision::NotDesignated
        };
        if let Some(d) = mine.first() {
            report.designated(msg, d);
        }
        let must_open = report.decision != Decision::NotDesignated
            || (opts.require_disclosure && msg.is_request());
        if must_open && !addressed && msg.is_request() {
            let response = undecipherable(msg, keys, ctx)?;
            report.answered = Some(496);
            return Ok(Step::new(Outcome::Respond(response), report));
        }
        // Responses (an answer SDP) are read whenever this relay can.
        if must_open || (!msg.is_request() && addressed) {
            let opened = open_envelope(env, &recipient_keys, &mut report, ctx)?;
            // A session message's per-message CEK is no session key.
            if opened.key_index >= keys.sessions.len() {
                cek = Some(opened.cek.clone());
            }
            let (entity, plain) = inner_signature(&opened.content, &mut report)?;
            let content = match &entity {
                Some(e) => e.body.clone(),
                None => plain.clone(),
            };
            if opts.edits.is_empty() {
                disclose(&mut report, &content);
            } else {
                if report.access != Some(Access::Modify) || !msg.is_request() {
                    return Err(RelayError::EditRefused(
                        "this relay was not designated with access=modify".into(),
                    ));
                }
                if let Some(signer) = &report.signer {
                    return Err(RelayError::EditRefused(format!(
                        "the content carries an inner signature by {signer}: an edit would break it (the sender made it read-only)"
                    )));
                }
                let edited = edit(entity.as_ref(), &content, &opts.edits)?;
                let (der, names) = reseal(env, &edited.to_bytes(), keys, ctx)?;
                resealed = Some(der);
                report.edited = true;
                report.resealed_for = names;
                report.cek = Some("fresh");
                disclose(&mut report, &edited.body);
            }
        }
    } else if let Some(sdp) = plain_sdp(msg) {
        // An unsealed SDP is readable by everyone on the path anyway.
        disclose(&mut report, &sdp);
        report
            .notes
            .push("the SDP is not sealed: every relay on the path reads it".into());
    }

    if !opts.edits.is_empty() && !report.opened {
        return Err(RelayError::EditRefused(
            "this relay is not designated for the body, so it may not change it".into(),
        ));
    }
    if let Some(response) = path::require_signature(
        msg,
        outer.as_ref(),
        report.signer.is_some() || opaque_signed(msg),
        &opts.path,
        &mut report,
        ctx,
    )? {
        return Ok(Step::new(response, report));
    }
    let sent_by = path::sent_by(keys, opts.via.as_deref());
    let mut forwarded = if msg.is_request() {
        // Under an outer signature the designations are protected: this
        // relay's own entry stays, or the signature would not verify.
        let drop_mine = !opts.keep_designation && (outer.is_none() || resealed.is_some());
        let mut out = forward_request(msg, keys, opts.via.as_deref(), drop_mine, ctx)?;
        if opts.record_route {
            record_route(&mut out, keys, opts.via.as_deref())?;
        }
        out
    } else {
        path::route_response(msg, &sent_by, &opts.path, &mut report);
        forward_response(msg)?
    };
    if let Some(der) = resealed {
        match &outer {
            Some(outer) => {
                let mut base = peel(&forwarded)?.unwrap_or(forwarded);
                base.set_body(der);
                forwarded = resign(&base, outer, keys, ctx)?;
                report.resigned = true;
            }
            None => forwarded.set_body(der),
        }
    }
    if msg.is_request() {
        path::route_request(msg, &mut forwarded, &sent_by, &opts.path, &mut report);
    }
    Ok(Step {
        outcome: Outcome::Forward(forwarded),
        report,
        cek,
    })
}

/// How `reencrypt` runs.
#[derive(Debug, Clone, Default)]
pub struct ReencryptOptions {
    /// This relay's Via sent-by, as in [`RelayOptions::via`].
    pub via: Option<String>,
    /// The next hop's recipients, designations and cipher.
    pub spec: SealSpec,
    /// Seal under the CEK that opened the input (so the session key derived
    /// from it stays the same end to end); the input's cipher then applies.
    pub keep_cek: bool,
    /// SDP edits before sealing again.
    pub edits: Vec<SdpEdit>,
    /// Route-Security, imposture check, policy, required signatures.
    pub path: PathOptions,
}

/// `reencrypt` (SPEC §4 step 6): open the body with this relay's key,
/// apply the edits, seal it again for the next hop (fresh CEK unless
/// `keep_cek`), replace the `Proxy-Inspect-Body` headers with the new
/// designations, and route the message on as `proxy` does.
///
/// A relay may do this when a designation names it with `access=modify`,
/// or when the sender sealed to it without naming it (it is the next hop,
/// trusted hop by hop). A designation with `access=read` only is refused.
pub fn reencrypt(
    msg: &Message,
    keys: &RelayKeys<'_>,
    opts: &ReencryptOptions,
    ctx: &mut Context,
) -> Result<Step, RelayError> {
    let Begun {
        uris,
        mut report,
        outer,
    } = match start(msg, keys, &opts.path, ctx)? {
        Ok(begun) => begun,
        Err(answered) => return Ok(answered),
    };
    if let Some(outer) = &outer {
        // Only a signature that verifies passes its designations on.
        outer
            .verify()
            .map_err(|e| RelayError::Signature(format!("the outer signature: {e}")))?;
    }
    let der = sealed_body(msg).map_err(RelayError::Open)?;
    let env = Envelope::parse(&der).map_err(|e| RelayError::Open(e.into()))?;
    let mine = my_designations(msg, &uris);
    report.decision = if mine.is_empty() {
        Decision::Addressed
    } else {
        Decision::Designated
    };
    if let Some(d) = mine
        .iter()
        .find(|d| d.access == Access::Modify)
        .or(mine.first())
    {
        report.designated(msg, d);
        if d.access != Access::Modify {
            return Err(RelayError::EditRefused(
                "this relay was designated with access=read: it may read and forward the body, not re-seal it".into(),
            ));
        }
    }
    let recipient_keys = keys.recipient_keys();
    if env.find(&recipient_keys).is_none() && msg.is_request() {
        let response = undecipherable(msg, keys, ctx)?;
        report.answered = Some(496);
        return Ok(Step::new(Outcome::Respond(response), report));
    }
    let opened = open_envelope(&env, &recipient_keys, &mut report, ctx)?;
    let mut entity = Entity::parse(&opened.content);
    let (signed_entity, signed_plain) = inner_signature(&opened.content, &mut report)?;
    if let Some(signer) = &report.signer {
        if !opts.edits.is_empty() {
            return Err(RelayError::EditRefused(format!(
                "the content carries an inner signature by {signer}: an edit would break it (the sender made it read-only)"
            )));
        }
        // The signed entity is sealed again as it is; the report shows what it holds.
        disclose(
            &mut report,
            signed_entity
                .as_ref()
                .map_or(signed_plain.as_slice(), |e| &e.body),
        );
    } else {
        if !opts.edits.is_empty() {
            entity = Some(edit(entity.as_ref(), &opened.content, &opts.edits)?);
            report.edited = true;
        }
        disclose(
            &mut report,
            entity
                .as_ref()
                .map_or(opened.content.as_slice(), |e| &e.body),
        );
    }
    if let Some(response) = path::require_signature(
        msg,
        outer.as_ref(),
        report.signer.is_some(),
        &opts.path,
        &mut report,
        ctx,
    )? {
        return Ok(Step::new(response, report));
    }

    let plain = restore(msg.clone(), entity.as_ref(), &opened.content);
    let mut spec = opts.spec.clone();
    let kept = if opts.keep_cek {
        spec.options.cipher = env.params.cipher;
        Some(&opened.cek)
    } else {
        None
    };
    ctx.mix("reencrypt", &msg.to_bytes());
    let sealed = seal_message_with(&plain, &spec, kept, ctx).map_err(RelayError::Seal)?;
    report.resealed_for = spec
        .peers
        .iter()
        .chain(&spec.disclose)
        .map(Recipient::describe)
        .collect();
    report.cek = Some(if opts.keep_cek { "kept" } else { "fresh" });
    let mut next = sealed.message;
    if let Some(outer) = &outer {
        next = resign(&next, outer, keys, ctx)?;
        report.resigned = true;
    }
    let sent_by = path::sent_by(keys, opts.via.as_deref());
    // The designations are already the new ones: nothing of ours to drop.
    let forwarded = if msg.is_request() {
        let mut out = forward_request(&next, keys, opts.via.as_deref(), false, ctx)?;
        path::route_request(msg, &mut out, &sent_by, &opts.path, &mut report);
        out
    } else {
        path::route_response(msg, &sent_by, &opts.path, &mut report);
        forward_response(&next)?
    };
    let by_session = opened.key_index < keys.sessions.len();
    Ok(Step {
        outcome: Outcome::Forward(forwarded),
        report,
        cek: (!by_session).then_some(opened.cek),
    })
}

/// The signer of an outer signature whose certificate names one.
fn outer_signer(outer: Option<&OuterSignature>) -> Option<String> {
    let outer = outer?;
    match outer.verify() {
        Ok(signers) => signers.first().map(|s| s.cert.name()),
        Err(e) => Some(format!("(does not verify: {e})")),
    }
}

/// Whether the (unsealed) body is an opaque signed-data.
fn opaque_signed(msg: &Message) -> bool {
    let view = peel(msg).ok().flatten();
    let m = view.as_ref().unwrap_or(msg);
    m.header("Content-Type").is_some_and(|ct| {
        crate::signing::is_signed_entity(&Entity {
            headers: vec![("Content-Type".into(), ct.to_owned())],
            body: Vec::new(),
        })
    })
}

/// Take an inner signature off opened content: verified, its signer in
/// the report; the content it signed (as an entity when it is one). A
/// signature that does not verify stops the relay.
fn inner_signature(
    content: &[u8],
    report: &mut RelayReport,
) -> Result<(Option<Entity>, Vec<u8>), RelayError> {
    let entity = Entity::parse(content);
    match entity.as_ref().and_then(unwrap_inner) {
        None => Ok((entity, content.to_vec())),
        Some(Err(e)) => Err(RelayError::Signature(format!("the inner signature: {e}"))),
        Some(Ok(inner)) => {
            report.signer = Some(inner.signer.cert.name());
            Ok((Entity::parse(&inner.content), inner.content))
        }
    }
}

/// Sign `msg` as this relay, carrying the UA-signed original's designations.
fn resign(
    msg: &Message,
    outer: &OuterSignature,
    keys: &RelayKeys<'_>,
    ctx: &mut Context,
) -> Result<Message, RelayError> {
    let original = outer.original_designations();
    Ok(sign_message(
        msg,
        keys.identity,
        Default::default(),
        &original,
        ctx,
    )?)
}

/// Apply SDP edits to opened content: the entity's headers are kept; raw
/// content is taken as an SDP.
fn edit(entity: Option<&Entity>, content: &[u8], edits: &[SdpEdit]) -> Result<Entity, RelayError> {
    let body = entity.map_or(content, |e| e.body.as_slice());
    let text =
        std::str::from_utf8(body).map_err(|_| RelayError::Edit("the SDP is not UTF-8".into()))?;
    let edited = apply_edits(text, edits).map_err(|e| RelayError::Edit(e.to_string()))?;
    let headers = match entity {
        Some(e) => e.headers.clone(),
        None => vec![("Content-Type".into(), "application/sdp".into())],
    };
    Ok(Entity {
        headers,
        body: edited.into_bytes(),
    })
}

fn plain_sdp(msg: &Message) -> Option<Vec<u8>> {
    let ct = msg.header("Content-Type")?;
    let parsed = crate::sip::headers::parse_content_type(ct).ok()?;
    (parsed.is("application/sdp") && !msg.body().is_empty()).then(|| msg.body().to_vec())
}

/// Fill the report from the plaintext SDP.
fn disclose(report: &mut RelayReport, sdp: &[u8]) {
    let text = String::from_utf8_lossy(sdp).into_owned();
    match Sdp::parse(&text) {
        Ok(parsed) => {
            for (i, m) in parsed.media.iter().enumerate() {
                report.streams.push(StreamReport::from(Stream::from(m)));
                for c in &m.crypto {
                    report.srtp_keys.push(SrtpKey {
                        stream: i,
                        media: m.kind.clone(),
                        tag: c.tag.clone(),
                        suite: c.suite.clone(),
                        key_params: c.key_params.clone(),
                    });
                }
            }
        }
        Err(e) => report
            .notes
            .push(format!("the content is not a readable SDP: {e}")),
    }
    report.sdp = Some(text);
}

/// `496 Proxy Undecipherable` with this relay's certificate and a `Warning: 380`.
fn undecipherable(
    msg: &Message,
    keys: &RelayKeys<'_>,
    ctx: &mut Context,
) -> Result<Message, RelayError> {
    let host = keys.host();
    let der = keys
        .identity
        .cert
        .cert
        .to_der()
        .map_err(|e| RelayError::Compose(ComposeError::BadHeader(e.to_string())))?;
    let response = build_response(
        msg,
        &ResponseParams {
            code: 496,
            headers: vec![(
                "Warning".into(),
                format!("380 {host} \"Required to view Content-Type 'application/sdp'\""),
            )],
            body: Some(Body {
                content_type: "application/pkix-cert".into(),
                bytes: der,
            }),
            ..Default::default()
        },
        ctx,
    )?;
    Ok(response)
}

/// The certificate a `496 Proxy Undecipherable` carries (SPEC §3.5): the
/// DER body of type `application/pkix-cert` (RFC 2585).
pub fn undecipherable_cert(msg: &Message, source: &str) -> Result<Cert, String> {
    match msg.status() {
        Some(_) => {}
        None => return Err("a request, not a 496 response".into()),
    }
    let ct = msg.header("Content-Type").unwrap_or_default();
    let parsed = crate::sip::headers::parse_content_type(ct).map_err(|e| e.to_string())?;
    if !parsed.is("application/pkix-cert") || msg.body().is_empty() {
        return Err(format!(
            "{} response without an application/pkix-cert body",
            msg.status().unwrap_or_default()
        ));
    }
    let cert = Cert::from_der(msg.body(), source).map_err(|e| e.to_string())?;
    if cert.uri().is_none() {
        return Err("the certificate has no SAN URI to designate the relay by".into());
    }
    Ok(cert)
}

/// A request goes on with a new top Via and Max-Forwards decremented;
/// `drop_mine` removes this relay's `Proxy-Inspect-Body` entries.
fn forward_request(
    msg: &Message,
    keys: &RelayKeys<'_>,
    via: Option<&str>,
    drop_mine: bool,
    ctx: &mut Context,
) -> Result<Message, RelayError> {
    let mut out = msg.clone();
    ctx.mix("relay", &msg.to_bytes());
    let sent_by = match via {
        Some(v) => v.to_owned(),
        None => keys.host(),
    };
    // The transport of the hop we forward on is the one the request arrived with.
    msg.vias()?;
    let transport = msg
        .header_list("Via")
        .first()
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("SIP/2.0/UDP")
        .to_owned();
    out.prepend_header(
        "Via",
        &format!("{transport} {sent_by};branch=z9hG4bK{}", ctx.token(8)),
    );
    match msg.max_forwards()? {
        Some(n) => out.set_header("Max-Forwards", &(n - 1).to_string()),
        // RFC 3261 §16.6 step 3: add one when absent.
        None => out.insert_header(1, "Max-Forwards", "69"),
    }
    if drop_mine {
        let uris = keys.uris();
        remove_designations(&mut out, |d| {
            uris.iter().any(|u| u.eq_ignore_ascii_case(&d.uri))
        });
    }
    pop_my_route(&mut out, keys, &sent_by);
    Ok(out)
}

/// This relay's hosts: its Via sent-by host and its certificate URI's host.
fn my_hosts(keys: &RelayKeys<'_>, sent_by: &str) -> Vec<String> {
    let via_host = match sent_by.strip_prefix('[') {
        Some(rest) => format!("[{}", rest.split_inclusive(']').next().unwrap_or(rest)),
        None => sent_by.split(':').next().unwrap_or(sent_by).to_owned(),
    };
    vec![via_host, keys.host()]
}

/// A request routed here by a loose route (RFC 3261 §16.4): the topmost
/// Route entry names this relay and goes.
fn pop_my_route(out: &mut Message, keys: &RelayKeys<'_>, sent_by: &str) {
    let Some(at) = out.headers().iter().position(|h| h.is("Route")) else {
        return;
    };
    let value = out.headers()[at].value().to_owned();
    let entries = split_list(&value);
    let hosts = my_hosts(keys, sent_by);
    let mine = entries
        .first()
        .and_then(|e| uri_host(e))
        .is_some_and(|h| hosts.iter().any(|m| m.eq_ignore_ascii_case(&h)));
    if !mine {
        return;
    }
    let name = out.headers()[at].full_name().to_owned();
    out.remove_header_at(at);
    if entries.len() > 1 {
        out.insert_header(at, &name, &entries[1..].join(", "));
    }
}

/// Record-Route this relay on a dialog-creating request (INVITE,
/// SUBSCRIBE, REFER without a To tag), topmost, with `lr` (RFC 3261 §16.6 step 4).
fn record_route(
    out: &mut Message,
    keys: &RelayKeys<'_>,
    via: Option<&str>,
) -> Result<(), RelayError> {
    let creating =
        matches!(out.method(), Some("INVITE" | "SUBSCRIBE" | "REFER")) && out.to_tag()?.is_none();
    if !creating {
        return Ok(());
    }
    let host = match via {
        Some(v) => v.to_owned(),
        None => keys.host(),
    };
    let at = out
        .headers()
        .iter()
        .position(|h| h.is("Record-Route"))
        .or_else(|| {
            out.headers()
                .iter()
                .position(|h| h.is("Max-Forwards"))
                .map(|i| i + 1)
        })
        .unwrap_or(1);
    out.insert_header(at, "Record-Route", &format!("<sip:{host};lr>"));
    Ok(())
}

/// A response goes back with the top Via (this relay's) removed.
fn forward_response(msg: &Message) -> Result<Message, RelayError> {
    let mut out = msg.clone();
    let at = out
        .headers()
        .iter()
        .position(|h| h.is("Via"))
        .ok_or(RelayError::NoVia)?;
    let Some(h) = out.headers().get(at) else {
        return Err(RelayError::NoVia);
    };
    let values = split_list(h.value());
    let name = h.name().to_owned();
    let rest: Vec<String> = values.iter().skip(1).map(|v| (*v).to_owned()).collect();
    out.remove_header_at(at);
    if !rest.is_empty() {
        out.insert_header(at, &name, &rest.join(", "));
    }
    Ok(out)
}

/// Seal `content` again for every recipient of `env`, with a fresh CEK and
/// the same content cipher. Each certificate recipient keeps its padding.
/// Returns the DER and the recipients' names.
fn reseal(
    env: &Envelope,
    content: &[u8],
    keys: &RelayKeys<'_>,
    ctx: &mut Context,
) -> Result<(Vec<u8>, Vec<String>), RelayError> {
    let cipher: ContentCipher = env.params.cipher;
    let cek = fresh_cek(cipher, ctx.rng());
    let mut infos = Vec::new();
    let mut names = Vec::new();
    for (i, ri) in env.recipients.iter().enumerate() {
        let missing = || {
            RelayError::Reseal(EnvelopeError::Recipient(format!(
                "no certificate or PSK for RecipientInfo #{i}"
            )))
        };
        let info = match ri {
            RecipientInfo::Ktri(k) => {
                let cert = keys
                    .certs
                    .iter()
                    .chain(std::iter::once(&keys.identity.cert))
                    .find(|c| addressed_to_cert(ri, c))
                    .ok_or_else(missing)?;
                let padding =
                    match KeyTransportScheme::decode(&k.key_enc_alg).map_err(RelayError::Reseal)? {
                        KeyTransportScheme::Pkcs1v15 => RsaPadding::Pkcs1v15,
                        KeyTransportScheme::Oaep { .. } => RsaPadding::Oaep,
                    };
                names.push(cert.name());
                ktri_for(cert, padding, &cek, ctx.rng()).map_err(RelayError::Reseal)?
            }
            RecipientInfo::Kekri(_) => {
                let psk = keys
                    .psks
                    .iter()
                    .find(|p| addressed_to_kek(ri, p.id.as_bytes()))
                    .ok_or_else(missing)?;
                names.push(format!("PSK {}", psk.id));
                kekri_for(psk, &cek).map_err(RelayError::Reseal)?
            }
            _ => return Err(missing()),
        };
        infos.push(info);
    }
    let der = seal_infos(content, &cek, infos, cipher, ctx.rng()).map_err(RelayError::Reseal)?;
    Ok((der, names))
}
