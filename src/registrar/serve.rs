//! The registrar workflow as a live service (`sipseal registrar
//! --listen`): REGISTER, PUBLISH and OPTIONS certificate queries on UDP,
//! TCP and TLS, each answered back where it came from. The source address
//! the transport saw is what a binding records (where the REGISTER came
//! from: the imposture check's reference).

use std::sync::{Mutex, RwLock};

use super::digest::DigestAlgorithm;
use super::store::RegistrarStore;
use super::users::Users;
use super::{Outcome, Registrar};
use crate::context::Context;
use crate::keys::Identity;
use crate::net::live::{Dest, Handled, Outgoing, Peer, Record, SendError, Service};
use crate::policy::Policy;
use crate::sip::routing::OwnNames;
use crate::sip::transaction::Transactions;
use crate::sip::{Answer, Message, Status, respond};

/// What a live registrar owns.
pub struct LiveRegistrar {
    /// The realm.
    pub realm: String,
    /// The CA that issues certificates: its own directory, or a remote
    /// `sipseal ca`.
    pub ca: Box<dyn super::issuer::Issuer>,
    /// The registrar's own identity.
    pub identity: Identity,
    /// The credentials.
    pub users: Users,
    /// Bindings, certificates and nonce counts.
    pub store: Box<dyn RegistrarStore + Send + Sync>,
    /// The longest registration granted (seconds).
    pub max_expires: u32,
    /// The Digest algorithms challenged with, in order.
    pub algorithms: Vec<DigestAlgorithm>,
    /// How long a nonce stays fresh (seconds).
    pub nonce_lifetime: i64,
    /// The connectivity policy for certificate queries.
    pub policy: Option<Policy>,
    /// The PSKs registrations may be sealed under (each naming its AOR).
    pub psks: Vec<crate::keys::Psk>,
    /// Gives each request a context of its own.
    pub ctx: Mutex<Context>,
    /// Its own addresses (set once the listeners are bound) and names.
    pub own: RwLock<OwnNames>,
    /// Recent transactions: a retransmission gets the same answer.
    pub transactions: Transactions,
    /// Signed and forwarded certificate queries (issue 28).
    pub queries: LiveQueries,
}

/// How a live registrar takes certificate queries (issue 28).
#[derive(Debug, Default)]
pub struct LiveQueries {
    /// Trust anchors a signed query's signer chains to, besides the CA.
    pub anchors: Vec<crate::keys::Cert>,
    /// Refuse unsigned queries (495).
    pub require_signed: bool,
    /// Where queries for other domains go; `None`: 404.
    pub forward: Option<super::forward::WireForward>,
}

impl LiveRegistrar {
    fn handle_now(
        &self,
        msg: &Message,
        peer: &Peer,
        ctx: &mut Context,
    ) -> Result<super::Handled, super::RegistrarError> {
        let source = format!("{}:{}", peer.addr.ip(), peer.addr.port());
        let own = self.own.read().unwrap_or_else(|e| e.into_inner());
        Registrar {
            realm: &self.realm,
            ca: self.ca.as_ref(),
            identity: &self.identity,
            users: &self.users,
            store: self.store.as_ref(),
            max_expires: self.max_expires,
            algorithms: &self.algorithms,
            own: &own,
            nonce_lifetime: self.nonce_lifetime,
            policy: self.policy.as_ref(),
            trusted: super::Trusted {
                peer: peer.cert.as_deref(),
                anchors: &self.queries.anchors,
                require_signed_queries: self.queries.require_signed,
                forward: self
                    .queries
                    .forward
                    .as_ref()
                    .map(|f| f as &dyn super::Forward),
            },
            psks: &self.psks,
        }
        .handle(msg, Some(&source), ctx)
    }
}

/// What one line of the log says about an outcome.
pub fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Registered {
            aor,
            expires,
            certificate,
        } => format!(
            "200 registered {aor} for {expires} s{}",
            certificate
                .as_ref()
                .map(|s| format!(", certificate {s}"))
                .unwrap_or_default()
        ),
        Outcome::Found { aor, serial } => format!("200 certificate {serial} of {aor}"),
        Outcome::FoundKey { aor, sha256 } => format!("200 key {sha256} of {aor}"),
        Outcome::Forwarded {
            aor,
            domain,
            status,
        } => format!("{status} forwarded: the registrar of {domain} answered for {aor}"),
        Outcome::Removed { aor } => format!("200 removed {aor}"),
        Outcome::Challenged { stale } => format!("401{}", if *stale { " stale" } else { "" }),
        Outcome::Refused { code, why } => format!("{} {why}", code.code()),
        Outcome::Alive => "200 keep-alive".into(),
    }
}

/// `answer` back to `peer`: over UDP, unless it answers a request whose
/// credentials were checked (a 2xx to REGISTER or PUBLISH), at most
/// three times the request's size (H4: a source nothing verified could
/// be another's; a body left out is asked for again over TCP or TLS),
/// else not at all.
fn back(mut answer: Message, peer: &Peer, record: &mut Record) -> Vec<Outgoing> {
    use crate::sip::size::{Fit, fit_for_udp};
    let verified = answer.status().is_some_and(|s| (200..300).contains(&s))
        && answer
            .cseq()
            .is_ok_and(|c| matches!(c.method.as_str(), "REGISTER" | "PUBLISH"));
    if peer.transport != crate::net::Transport::Udp || verified {
        return vec![Outgoing::new(answer, Dest::Back)];
    }
    match fit_for_udp(&mut answer, peer.size) {
        Fit::AsIs => vec![Outgoing::new(answer, Dest::Back)],
        Fit::Trimmed => {
            record.decision.push_str(
                " (trimmed: over UDP it would be more than 3 times the request; its body is for TCP or TLS)",
            );
            vec![Outgoing::new(answer, Dest::Back)]
        }
        Fit::TooLarge => {
            record
                .decision
                .push_str(" (not sent: over UDP it would be more than 3 times the request)");
            Vec::new()
        }
    }
}

impl Service for LiveRegistrar {
    fn handle(&self, msg: Message, peer: &Peer) -> Handled {
        let mut record = Record {
            method: msg.method().unwrap_or_default().to_owned(),
            status: msg.status(),
            call_id: msg.call_id().unwrap_or_default().to_owned(),
            ..Record::default()
        };
        // Responses and ACKs get no answer.
        if !msg.is_request() || msg.method() == Some("ACK") {
            record.decision = "drop: not a request the registrar answers".into();
            return Handled {
                out: Vec::new(),
                record,
            };
        }
        // A retransmission (RFC 3261 §17.2.2): the same answer again, not
        // a second registration (whose nonce count would look replayed).
        if let Some(again) = self.transactions.answered(&msg) {
            record.decision = "answer again: a retransmission".into();
            let out = match Message::parse(&again) {
                Ok(m) => back(m, peer, &mut record),
                Err(_) => Vec::new(),
            };
            return Handled { out, record };
        }
        let mut ctx = self.ctx.lock().unwrap_or_else(|e| e.into_inner()).fork();
        // Files written and fsync'd, RSA signatures: the runtime's other
        // work goes on meanwhile.
        let handled = crate::blocking::offload(|| self.handle_now(&msg, peer, &mut ctx));
        match handled {
            Ok(handled) => {
                record.decision = describe(&handled.outcome);
                // What changed state (a REGISTER or PUBLISH that passed) is
                // answered again as it was (a second registration's nonce
                // count would look replayed); a challenge, a refusal or a
                // query changed nothing and is made afresh, so a flood of
                // them keeps nothing (L3).
                if handled
                    .response
                    .status()
                    .is_some_and(|s| (200..300).contains(&s))
                    && matches!(msg.method(), Some("REGISTER" | "PUBLISH"))
                {
                    self.transactions.remember(&msg, &handled.response);
                }
                let out = back(handled.response, peer, &mut record);
                Handled { out, record }
            }
            // The client would wait for its timers to run out: a 500 says
            // at once that the server failed (why is for the log).
            Err(e) => {
                let answer = respond(&msg, &Answer::new(Status::ServerError), &mut ctx)
                    .ok()
                    .flatten();
                record.decision = match &answer {
                    Some(_) => format!("answer 500: {e}"),
                    None => format!("drop: {e}"),
                };
                Handled {
                    out: answer
                        .into_iter()
                        .map(|msg| Outgoing::new(msg, Dest::Back))
                        .collect(),
                    record,
                }
            }
        }
    }

    fn unparsable(&self, bytes: &[u8], why: &str, _peer: &Peer) -> Option<Message> {
        let request = Message::salvage_request(bytes)?;
        let mut ctx = self.ctx.lock().unwrap_or_else(|e| e.into_inner()).fork();
        let answer = Answer::new(Status::BadRequest)
            .with_reason(format!("Bad Request ({why})"))
            .salvaged();
        respond(&request, &answer, &mut ctx).ok().flatten()
    }

    fn unsent(&self, _msg: &Message, _why: &SendError) -> Option<Message> {
        None
    }
}
