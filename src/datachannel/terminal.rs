//! The answering terminal (`sipseal terminal`, issue 29): a user agent
//! for a service host. It registers over its flow to the edge relay
//! ([`Registration`]), and answers the INVITEs that come down that flow:
//! each is opened with the terminal's identity ([`Ua::open`]), checked
//! ([`Policy::examine`]: a sealed body, an inner signature by the
//! caller, the caller in the allow-list, the Route-Security level), and
//! answered with a data channel ([`answer`]): a 200 whose SDP, sealed
//! under the session key the INVITE started (so for the caller and the
//! relays it disclosed to), names a listener of the terminal's and the
//! fingerprint of the certificate it will present. The channel is
//! terminated into a local service by a byte pump ([`pump`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::sdp::{ChannelSdp, ChannelSdpError, Setup};
use crate::context::Context;
use crate::envelope::RecipientKey;
use crate::keys::identity::CertKeyKind;
use crate::keys::{Cert, Identity};
use crate::net::flow::{Flow, FlowError};
use crate::registrar::digest;
use crate::registrar::users::username_of;
use crate::sealing::SealedInput;
use crate::sip::answer::Answer;
use crate::sip::compose::{Body, RequestParams, ResponseParams, build_request};
use crate::sip::{Message, Status};
use crate::ua::{InDialog, InnerCheck, ReplyTo, Ua, UaError};
use crate::verify::VerifyOptions;

/// What the terminal accepts a call from.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The callers (AORs) it answers; anyone else gets 403.
    pub allow: Vec<String>,
    /// Trust anchors the caller's inner signature must chain to.
    pub trust: Vec<Cert>,
    /// The weakest Route-Security link an INVITE may have come over.
    pub min_route_level: Option<u8>,
    /// The name this terminal signs its Warnings with.
    pub agent: String,
}

/// A call the policy takes: who calls, and the channel they offer.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The caller's AOR, as its inner signature proved.
    pub caller: String,
    /// The caller's data channel offer.
    pub offer: ChannelSdp,
    /// The certificate the caller signed with (to seal for at a rekey).
    pub signer: Cert,
}

/// A re-INVITE the policy takes.
#[derive(Debug, Clone)]
pub struct Reoffer {
    /// The certificate the caller signed it with.
    pub signer: Cert,
    /// Whether it was a key update (a full envelope, whose new key the
    /// answer is sealed under).
    pub rekeyed: bool,
}

/// Why an INVITE is refused: the answer to send, and why for the log.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The response.
    pub answer: Box<Answer>,
    /// For the log.
    pub why: String,
}

impl Refusal {
    fn new(status: Status, agent: &str, why: impl Into<String>) -> Refusal {
        let why = why.into();
        Refusal {
            answer: Box::new(Answer::new(status).with_warning(agent, &why)),
            why,
        }
    }
}

impl Policy {
    /// The Route-Security check (`--min-route-level`), first of all.
    fn path(&self, msg: &Message, ctx: &Context) -> Result<(), Refusal> {
        let Some(min) = self.min_route_level else {
            return Ok(());
        };
        let opts = VerifyOptions {
            anchors: &self.trust,
            at: ctx.now(),
            min_route_level: Some(min),
            received_from: None,
            crls: None,
        };
        if let Some(report) = crate::verify::verify_route(msg, &opts)
            && let Some(failed) = report.checks.iter().find(|c| !c.ok)
        {
            return Err(Refusal::new(
                Status::Forbidden,
                &self.agent,
                format!("Route-Security {}: {}", failed.check, failed.detail),
            ));
        }
        Ok(())
    }

    /// Open `msg` with the terminal's key, or the session key of its
    /// call (a re-INVITE), and check that its content is signed by its
    /// From AOR (chaining to `trust`): the signer's certificate, the
    /// SDP it carries, and whether a full envelope (not the session key)
    /// opened it.
    fn open_signed(
        &self,
        ua: &Ua<'_>,
        msg: &Message,
        identity: &Identity,
        ctx: &mut Context,
    ) -> Result<(Cert, Vec<u8>, bool), Refusal> {
        let refuse = |s: Status, why: String| Refusal::new(s, &self.agent, why);
        let key = identity
            .private_key()
            .map_err(|e| refuse(Status::ServerError, format!("the terminal's key: {e}")))?;
        let keys = [RecipientKey::Cert {
            cert: &identity.cert,
            key,
        }];
        let opened = crate::blocking::offload(|| {
            ua.open(SealedInput::Sip(msg.clone()), &keys, Some(&self.trust), ctx)
        });
        let opened = match opened {
            Ok(o) => o,
            Err(UaError::Seal(e)) if e.is_unsealed() => {
                return Err(refuse(
                    Status::NotAcceptableHere,
                    format!("the terminal takes sealed INVITEs only ({e})"),
                ));
            }
            Err(e @ (UaError::InnerSignature(_) | UaError::InnerUntrusted { .. })) => {
                return Err(refuse(Status::Forbidden, e.to_string()));
            }
            Err(e) => return Err(refuse(Status::Undecipherable, e.to_string())),
        };
        let signer = match &opened.inner {
            // Verified: the chain, validity and the SAN URI = From AOR.
            Some(InnerCheck::Verified { .. }) => opened
                .content
                .inner
                .as_ref()
                .and_then(|i| i.as_ref().ok())
                .map(|s| s.signer.cert.clone()),
            _ => None,
        };
        let Some(signer) = signer else {
            return Err(refuse(
                Status::Forbidden,
                "the INVITE's content is not signed by its caller: an allow-list cannot trust an unsigned From".into(),
            ));
        };
        let body = opened
            .content
            .message
            .as_ref()
            .map(|m| m.body().to_vec())
            .unwrap_or_default();
        Ok((signer, body, !opened.by_session))
    }

    /// Open and check an INVITE (module documentation): the offer, or
    /// the answer that refuses it. The session key is recorded in the
    /// store as opening records it.
    pub fn examine(
        &self,
        ua: &Ua<'_>,
        invite: &Message,
        identity: &Identity,
        ctx: &mut Context,
    ) -> Result<Accepted, Refusal> {
        let refuse = |s: Status, why: String| Refusal::new(s, &self.agent, why);
        self.path(invite, ctx)?;
        // The From in the clear first: a caller who may not call costs
        // no private-key operation. The signature checked below proves it.
        let from = invite.aor("From").unwrap_or_default().to_owned();
        if !self.allow.iter().any(|a| a.eq_ignore_ascii_case(&from)) {
            return Err(refuse(
                Status::Forbidden,
                format!("{from} may not call this terminal"),
            ));
        }
        let (signer, body, _) = self.open_signed(ua, invite, identity, ctx)?;
        let offer = ChannelSdp::parse(&body).map_err(|e| sdp_refusal(&self.agent, &e))?;
        if offer.setup == Setup::Passive {
            return Err(refuse(
                Status::NotAcceptableHere,
                "the offer is setup:passive: this terminal listens, it does not connect".into(),
            ));
        }
        if offer.existing {
            return Err(refuse(
                Status::NotAcceptableHere,
                "a new call offers a=connection:new: there is no channel to keep".into(),
            ));
        }
        Ok(Accepted {
            caller: from,
            offer,
            signer,
        })
    }

    /// Open and check a re-INVITE of the call `call` accepted (its
    /// dialog already matched by the caller): the same checks as the
    /// first INVITE but the allow-list (the dialog stands for it), opened
    /// under the call's session key or, for a key update, with the
    /// terminal's key (the new key then recorded); its content signed by
    /// the caller (a relay that holds the session key cannot send one);
    /// an offer of the same channel, `a=connection:existing` (488
    /// otherwise: a new channel is a new call).
    pub fn examine_again(
        &self,
        ua: &Ua<'_>,
        reinvite: &Message,
        identity: &Identity,
        call: &Accepted,
        ctx: &mut Context,
    ) -> Result<Reoffer, Refusal> {
        let refuse = |s: Status, why: String| Refusal::new(s, &self.agent, why);
        self.path(reinvite, ctx)?;
        let from = reinvite.aor("From").unwrap_or_default();
        if !from.eq_ignore_ascii_case(&call.caller) {
            return Err(refuse(
                Status::Forbidden,
                format!(
                    "the re-INVITE is from {from}, the call from {}",
                    call.caller
                ),
            ));
        }
        let (signer, body, rekeyed) = self.open_signed(ua, reinvite, identity, ctx)?;
        let offer = ChannelSdp::parse(&body).map_err(|e| sdp_refusal(&self.agent, &e))?;
        if !offer.existing || !offer.same_channel(&call.offer) {
            return Err(refuse(
                Status::NotAcceptableHere,
                "a re-INVITE keeps the data channel (the same address, setup and fingerprint, a=connection:existing): call again for another".into(),
            ));
        }
        Ok(Reoffer { signer, rekeyed })
    }
}

fn sdp_refusal(agent: &str, e: &ChannelSdpError) -> Refusal {
    Refusal::new(Status::NotAcceptableHere, agent, e.to_string())
}

/// The 200 that answers `invite` with `sdp` (the text of the terminal's
/// passive end of the channel): its SDP sealed under the session key the INVITE started, for
/// `me`; a rekey when the key is used up, sealed for the caller's
/// signing certificate. Its Contact is `me`, the terminal's AOR: the
/// relay's location service finds the flow for the ACK and BYE by it.
/// The answer is signed inside by `identity` when its key can sign
/// (RSA): a relay the INVITE disclosed to holds the session key and can
/// read the answer, but cannot change its address or fingerprint unseen.
pub fn answer(
    ua: &Ua<'_>,
    invite: &Message,
    me: &str,
    sdp: String,
    caller: &Cert,
    identity: &Arc<Identity>,
    ctx: &mut Context,
) -> Result<Message, UaError> {
    let signer = matches!(identity.cert.recipient_kind(), Ok(CertKeyKind::Rsa)).then_some(identity);
    let params = ResponseParams {
        code: Status::Ok.code(),
        contact: Some(me.to_owned()),
        body: Some(Body {
            content_type: "application/sdp".into(),
            bytes: sdp.into_bytes(),
        }),
        ..Default::default()
    };
    let reply = ua.reply(invite, ReplyTo::Response(params), Some(me), ctx)?;
    crate::blocking::offload(|| {
        match ua.seal_in_dialog_signed(&reply.message, me, signer.map(|s| &**s), ctx)? {
            InDialog::Sealed(sealed) => Ok(sealed.message),
            InDialog::RekeyDue(_) => {
                let spec = crate::sealing::SealSpec {
                    peers: vec![crate::envelope::Recipient::Cert(Box::new(caller.clone()))],
                    signer: signer.map(Arc::clone),
                    ..Default::default()
                };
                Ok(ua.rekey(&reply.message, me, &spec, ctx)?.sealed.message)
            }
        }
    })
}

/// Copy bytes both ways between the data channel and the service until
/// either side closes, nothing moves for `idle`, or `stop` fires. The
/// bytes each way.
pub async fn pump<A, B>(
    mut channel: A,
    mut service: B,
    idle: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut up = 0u64;
    let mut down = 0u64;
    let mut a = vec![0u8; 16_384];
    let mut b = vec![0u8; 16_384];
    let mut a_open = true;
    let mut b_open = true;
    tokio::pin!(stop);
    while a_open || b_open {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                r = channel.read(&mut a), if a_open => match r {
                    Ok(0) | Err(_) => { a_open = false; let _ = service.shutdown().await; Ok(()) }
                    Ok(n) => { up += n as u64; service.write_all(a.get(..n).unwrap_or_default()).await }
                },
                r = service.read(&mut b), if b_open => match r {
                    Ok(0) | Err(_) => { b_open = false; let _ = channel.shutdown().await; Ok(()) }
                    Ok(n) => { down += n as u64; channel.write_all(b.get(..n).unwrap_or_default()).await }
                },
                () = &mut stop => Err(std::io::Error::other("stopped")),
            }
        })
        .await;
        match step {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    let _ = channel.shutdown().await;
    (up, down)
}

/// Open the connection to the local service.
pub async fn connect_service(addr: SocketAddr, wait: Duration) -> std::io::Result<TcpStream> {
    tokio::time::timeout(wait, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// A registration kept over a flow (RFC 3261 §10.2): one Call-ID, the
/// CSeq counted up, Digest answered with the password.
pub struct Registration {
    /// The AOR.
    pub aor: String,
    /// The Contact bound.
    pub contact: String,
    /// The Digest password.
    pub password: Zeroizing<String>,
    /// The interval asked for.
    pub expires: u32,
    call_id: Option<String>,
    cseq: u32,
}

/// Why registering failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The flow failed.
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// The REGISTER could not be built.
    #[error("the REGISTER: {0}")]
    Build(String),
    /// The certificate the registrar returned cannot be taken.
    #[error("the certificate of the 200 OK: {0}")]
    Enrol(String),
    /// The registrar said no.
    #[error("the registrar answered {code} {reason}")]
    Refused {
        /// The status.
        code: u16,
        /// Its reason phrase and any Warning.
        reason: String,
    },
}

impl Registration {
    /// A registration of `aor` at `contact` for `expires` seconds.
    pub fn new(aor: &str, contact: &str, password: Zeroizing<String>, expires: u32) -> Self {
        Registration {
            aor: aor.to_owned(),
            contact: contact.to_owned(),
            password,
            expires,
            call_id: None,
            cseq: 0,
        }
    }

    fn request(
        &mut self,
        expires: u32,
        auth: Option<&Message>,
        body: Option<&Body>,
        ctx: &mut Context,
    ) -> Result<Message, RegisterError> {
        self.cseq += 1;
        let mut params = RequestParams {
            method: "REGISTER".into(),
            from: self.aor.clone(),
            to: self.aor.clone(),
            call_id: self.call_id.clone(),
            cseq: Some(self.cseq),
            contact: Some(self.contact.clone()),
            headers: vec![("Expires".into(), expires.to_string())],
            body: body.cloned(),
            ..Default::default()
        };
        params
            .headers
            .push(("Supported".into(), "path, outbound".into()));
        let mut msg =
            build_request(&params, ctx).map_err(|e| RegisterError::Build(e.to_string()))?;
        self.call_id = msg.call_id().ok().map(str::to_owned);
        if let Some(challenge) = auth {
            let www = challenge
                .header("WWW-Authenticate")
                .ok_or_else(|| RegisterError::Build("the 401 has no WWW-Authenticate".into()))?;
            let user = username_of(&self.aor)
                .ok_or_else(|| RegisterError::Build(format!("{} has no user part", self.aor)))?;
            let uri = msg.request_uri().unwrap_or_default().to_owned();
            let cnonce = hex::encode(ctx.bytes(8));
            // With qop=auth-int the digest covers the body (the CSR).
            let value = digest::answer(
                www,
                user,
                &self.password,
                "REGISTER",
                &uri,
                msg.body(),
                &cnonce,
            )
            .map_err(|e| RegisterError::Build(e.to_string()))?;
            let at = msg.before_body_headers();
            msg.insert_header(at, "Authorization", &value);
        }
        Ok(msg)
    }

    /// Register (or refresh, or with `expires` 0 remove) over `flow`,
    /// answering one challenge: the interval the registrar granted.
    pub async fn register(
        &mut self,
        flow: &Flow,
        expires: u32,
        wait: Duration,
        ctx: &mut Context,
    ) -> Result<u32, RegisterError> {
        Ok(self.register_with(flow, expires, wait, None, ctx).await?.0)
    }

    /// [`Registration::register`] with `body` in the REGISTER (a CSR:
    /// docs/SPEC.md §6): the interval granted and the 200 OK.
    pub async fn register_with(
        &mut self,
        flow: &Flow,
        expires: u32,
        wait: Duration,
        body: Option<&Body>,
        ctx: &mut Context,
    ) -> Result<(u32, Message), RegisterError> {
        let first = self.request(expires, None, body, ctx)?;
        let mut response = flow.request(&first, wait).await?.final_response().await?;
        if response.status() == Some(Status::Unauthorized.code()) {
            let retry = self.request(expires, Some(&response), body, ctx)?;
            response = flow.request(&retry, wait).await?.final_response().await?;
        }
        match response.status() {
            Some(200..=299) => Ok((
                granted(&response, &self.contact).unwrap_or(expires),
                response,
            )),
            code => Err(RegisterError::Refused {
                code: code.unwrap_or_default(),
                reason: match response.header("Warning") {
                    Some(w) => format!("(Warning: {w})"),
                    None => String::new(),
                },
            }),
        }
    }
}

/// The interval a 200 to a REGISTER grants the binding of `contact`: the
/// `expires` of that Contact (RFC 3261 §10.2.4: the 200 lists every
/// binding of the AOR, another device's among them), else the smallest
/// of them when none is ours as written, else its Expires header.
fn granted(ok: &Message, contact: &str) -> Option<u32> {
    let ours = crate::sip::headers::addr_spec(contact);
    let contacts: Vec<(bool, u32)> = ok
        .header_list("Contact")
        .iter()
        .filter_map(|c| {
            let lower = c.to_ascii_lowercase();
            let at = lower.find(";expires=")?;
            let rest = lower.get(at + 9..)?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let mine = crate::sip::headers::addr_spec(c).eq_ignore_ascii_case(ours);
            Some((mine, digits.parse::<u32>().ok()?))
        })
        .collect();
    let mine = contacts.iter().find(|(mine, _)| *mine).map(|(_, e)| *e);
    mine.or_else(|| contacts.iter().map(|(_, e)| *e).min())
        .or_else(|| ok.header("Expires").and_then(|e| e.trim().parse().ok()))
}

/// Whether a registration should ask for a certificate: the identity has
/// none, or its certificate ends before `now + margin` (the registration
/// interval asked for: the registrar's certificate lasts as long as the
/// binding, so a refresh at half the interval renews it too).
pub fn certificate_due(cert: Option<&Cert>, now: time::OffsetDateTime, margin: Duration) -> bool {
    let Some(cert) = cert else { return true };
    let not_after = crate::keys::trust::time_of(&cert.cert.tbs_certificate().validity().not_after);
    not_after < now + margin
}

/// The certificate the registrar's 200 OK (`ok`) returns for `key`, the
/// AOR's: the registrar's signature chaining to `trust`, the certificate
/// for this key naming the AOR and chaining to `trust`
/// ([`crate::registrar::enrol::issued`]), written to `dir/cert.pem`
/// (temporary file and rename) and loaded with the key as the identity.
pub fn install_issued(
    ok: &Message,
    key: &crate::keys::PrivateKey,
    key_path: &std::path::Path,
    dir: &std::path::Path,
    trust: &[Cert],
    ctx: &mut Context,
) -> Result<Identity, RegisterError> {
    use crate::registrar::enrol;
    let bad = |e: String| RegisterError::Enrol(e);
    let outer = enrol::signed_by_registrar(ok, trust).map_err(|e| bad(e.to_string()))?;
    let ski = enrol::ski_of_key(key);
    let keys = [RecipientKey::Own { ski: &ski, key }];
    let issued = enrol::issued(ok, &outer.payload, key, &keys, trust, ctx.rng())
        .map_err(|e| bad(e.to_string()))?;
    let cert_path = enrol::install(dir, &issued).map_err(|e| bad(e.to_string()))?;
    Identity::load_pair(key_path, &cert_path).map_err(|e| bad(e.to_string()))
}

/// The address a terminal names in its answer when none is given: the
/// flow's own (the interface that reaches the relay).
pub fn channel_ip(flow: &Flow) -> IpAddr {
    flow.local().ip()
}

/// A shared handle the daemon keeps per call to end its channel.
pub type Stop = Arc<tokio::sync::Notify>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_granted_interval_comes_from_the_contact_or_expires() {
        let ok = Message::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\r\nCSeq: 2 REGISTER\r\nContact: <sip:a@h>;expires=120, <sip:a@g>;expires=60\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(granted(&ok, "<sip:a@x>"), Some(60));
        // Ours among them: its own interval, not another binding's.
        assert_eq!(granted(&ok, "<sip:a@h>"), Some(120));
        let ok = Message::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\r\nCSeq: 2 REGISTER\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(granted(&ok, "<sip:a@h>"), Some(300));
    }

    fn invite(from: &str) -> Message {
        let text = format!(
            "INVITE sip:bob@127.0.0.1:5099;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK2\r\n\
Via: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bK1\r\n\
From: <{from}>;tag=1\r\nTo: <sip:bob@b.example.com>\r\nCall-ID: c1\r\n\
CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
        );
        Message::parse(text.as_bytes()).unwrap()
    }

    /// The registrar's certificate ends with the binding: one that ends
    /// within the interval asked for is due again (so every refresh, at
    /// half the interval, renews it); none at all is due.
    #[test]
    fn a_certificate_is_due_when_it_ends_within_the_margin() {
        let cert = Cert::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/bob-ec/cert.pem"),
        )
        .unwrap();
        let not_after =
            crate::keys::trust::time_of(&cert.cert.tbs_certificate().validity().not_after);
        let margin = Duration::from_secs(600);
        assert!(certificate_due(None, not_after, margin));
        let well_before = not_after - time::Duration::seconds(601);
        assert!(!certificate_due(Some(&cert), well_before, margin));
        let within = not_after - time::Duration::seconds(599);
        assert!(certificate_due(Some(&cert), within, margin));
        assert!(certificate_due(
            Some(&cert),
            not_after + time::Duration::seconds(1),
            Duration::ZERO
        ));
    }

    fn examine(policy: &Policy, msg: &Message) -> Result<Accepted, Refusal> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/bob-ec");
        let identity = Identity::load_dir(&dir).unwrap();
        let store = crate::state::MemoryStore::new();
        let ua = Ua {
            store: &store,
            limits: crate::session::Limits::default(),
        };
        policy.examine(&ua, msg, &identity, &mut Context::new(None, None))
    }

    #[test]
    fn an_invite_is_refused_before_anything_is_opened_when_the_path_or_caller_is_wrong() {
        let mut policy = Policy {
            allow: vec!["sip:alice@a.example.com".into()],
            trust: Vec::new(),
            min_route_level: Some(3),
            agent: "b.example.com".into(),
        };
        // No Route-Security entries for two links: below level 3.
        let r = examine(&policy, &invite("sip:alice@a.example.com")).unwrap_err();
        assert_eq!(r.answer.status, Status::Forbidden);
        assert!(r.why.starts_with("Route-Security"), "{}", r.why);
        policy.min_route_level = None;
        // A caller not allowed: 403 on the From alone.
        let r = examine(&policy, &invite("sip:mallory@a.example.com")).unwrap_err();
        assert_eq!(r.answer.status, Status::Forbidden);
        assert!(r.why.contains("may not call"), "{}", r.why);
        // An allowed caller in the clear: 488, a sealed body is required.
        let r = examine(&policy, &invite("sip:alice@a.example.com")).unwrap_err();
        assert_eq!(r.answer.status, Status::NotAcceptableHere);
        assert!(r.why.contains("sealed"), "{}", r.why);
    }

    /// A re-INVITE keeps the channel: signed by the caller and sealed
    /// (here a key update, a full envelope for the terminal), it is taken
    /// when it offers the same channel as `a=connection:existing`; another
    /// fingerprint, or `new`, is 488; an unsigned one 403.
    #[test]
    fn a_re_invite_is_taken_only_for_the_same_channel_signed_by_the_caller() {
        use super::super::sdp::Fingerprint;
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let alice = Arc::new(Identity::load_dir(&repo.join("keys/alice")).unwrap());
        let bob = Identity::load_dir(&repo.join("keys/bob-ec")).unwrap();
        let policy = Policy {
            allow: vec!["sip:alice@a.example.com".into()],
            trust: Cert::load_all(&repo.join("keys/trust.pem")).unwrap(),
            min_route_level: None,
            agent: "b.example.com".into(),
        };
        let offer = ChannelSdp::offer("127.0.0.1".parse().unwrap(), Fingerprint([7; 32]));
        let call = Accepted {
            caller: "sip:alice@a.example.com".into(),
            offer: offer.clone(),
            signer: alice.cert.clone(),
        };
        let store = crate::state::MemoryStore::new();
        let ua = Ua {
            store: &store,
            limits: crate::session::Limits::default(),
        };
        let mut ctx = Context::new(None, None);
        let reinvite = |sdp: &ChannelSdp, signed: bool, ctx: &mut Context| {
            let text = sdp.to_text_version(5, 2);
            let plain = format!(
                "INVITE sip:bob@b.example.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK9\r\n\
From: <sip:alice@a.example.com>;tag=1\r\nTo: <sip:bob@b.example.com>;tag=2\r\nCall-ID: c9\r\n\
CSeq: 2 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
            let spec = crate::sealing::SealSpec {
                peers: vec![crate::envelope::Recipient::Cert(Box::new(bob.cert.clone()))],
                signer: signed.then(|| Arc::clone(&alice)),
                ..Default::default()
            };
            let msg = Message::parse(plain.as_bytes()).unwrap();
            ua.seal(&msg, &spec, ctx).unwrap().sealed.message
        };
        let taken = policy
            .examine_again(
                &ua,
                &reinvite(&offer.again(), true, &mut ctx),
                &bob,
                &call,
                &mut ctx,
            )
            .unwrap();
        assert!(taken.rekeyed, "a full envelope is a key update");
        assert!(taken.signer.uri().unwrap().contains("alice"));
        let other = ChannelSdp::offer("127.0.0.1".parse().unwrap(), Fingerprint([8; 32])).again();
        for sdp in [other, offer.clone()] {
            let r = policy
                .examine_again(&ua, &reinvite(&sdp, true, &mut ctx), &bob, &call, &mut ctx)
                .unwrap_err();
            assert_eq!(r.answer.status, Status::NotAcceptableHere, "{}", r.why);
        }
        let r = policy
            .examine_again(
                &ua,
                &reinvite(&offer.again(), false, &mut ctx),
                &bob,
                &call,
                &mut ctx,
            )
            .unwrap_err();
        assert_eq!(r.answer.status, Status::Forbidden, "{}", r.why);
    }

    #[tokio::test]
    async fn the_pump_copies_both_ways_and_stops_when_idle() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut ch_far, ch_near) = tokio::io::duplex(1024);
        let (svc_near, mut svc_far) = tokio::io::duplex(1024);
        let task = tokio::spawn(pump(
            ch_near,
            svc_near,
            Duration::from_millis(300),
            std::future::pending(),
        ));
        ch_far.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 18];
        svc_far.read_exact(&mut buf).await.unwrap();
        svc_far
            .write_all(b"HTTP/1.0 200 OK\r\n\r\nhi")
            .await
            .unwrap();
        let mut back = [0u8; 21];
        ch_far.read_exact(&mut back).await.unwrap();
        assert_eq!(&back[19..], b"hi");
        // Nothing moves: the idle timeout ends it, the channel is closed.
        let (up, down) = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((up, down), (18, 21));
        let mut rest = Vec::new();
        ch_far.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
