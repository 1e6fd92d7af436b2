//! The registrar workflow as a live service (`sipseal registrar
//! --listen`): REGISTER, PUBLISH and OPTIONS certificate queries on UDP,
//! TCP and TLS, each answered back where it came from. The source address
//! the transport saw is what a binding records (where the REGISTER came
//! from: the imposture check's reference).

use std::sync::Mutex;

use super::store::RegistrarStore;
use super::users::Users;
use super::{Outcome, Registrar};
use crate::context::Context;
use crate::keys::Identity;
use crate::keys::generate::Ca;
use crate::net::live::{Dest, Handled, Outgoing, Peer, Record, SendError, Service};
use crate::policy::Policy;
use crate::sip::Message;

/// What a live registrar owns.
pub struct LiveRegistrar {
    /// The realm.
    pub realm: String,
    /// The CA that issues certificates.
    pub ca: Ca,
    /// The registrar's own identity.
    pub identity: Identity,
    /// The credentials.
    pub users: Users,
    /// Bindings, certificates and nonce counts.
    pub store: Box<dyn RegistrarStore + Send + Sync>,
    /// The longest registration granted (seconds).
    pub max_expires: u32,
    /// Whether MD5 Digest is accepted.
    pub allow_md5: bool,
    /// How long a nonce stays fresh (seconds).
    pub nonce_lifetime: i64,
    /// The connectivity policy for certificate queries.
    pub policy: Option<Policy>,
    /// Gives each request a context of its own.
    pub ctx: Mutex<Context>,
}

impl LiveRegistrar {
    fn registrar(&self) -> Registrar<'_> {
        Registrar {
            realm: &self.realm,
            ca: &self.ca,
            identity: &self.identity,
            users: &self.users,
            store: self.store.as_ref(),
            max_expires: self.max_expires,
            allow_md5: self.allow_md5,
            nonce_lifetime: self.nonce_lifetime,
            policy: self.policy.as_ref(),
        }
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
        Outcome::Removed { aor } => format!("200 removed {aor}"),
        Outcome::Challenged { stale } => format!("401{}", if *stale { " stale" } else { "" }),
        Outcome::Refused { code, why } => format!("{code} {why}"),
    }
}

impl Service for LiveRegistrar {
    fn handle(&self, msg: Message, peer: &Peer) -> Handled {
        let mut record = Record {
            method: msg.method().unwrap_or_default().to_owned(),
            status: msg.status(),
            call_id: msg.call_id().unwrap_or_default().to_owned(),
            decision: String::new(),
        };
        // Responses and ACKs get no answer.
        if !msg.is_request() || msg.method() == Some("ACK") {
            record.decision = "drop: not a request the registrar answers".into();
            return Handled {
                out: Vec::new(),
                record,
            };
        }
        let mut ctx = self.ctx.lock().unwrap_or_else(|e| e.into_inner()).fork();
        let source = format!("{}:{}", peer.addr.ip(), peer.addr.port());
        match self.registrar().handle(&msg, Some(&source), &mut ctx) {
            Ok(handled) => {
                record.decision = describe(&handled.outcome);
                Handled {
                    out: vec![Outgoing::new(handled.response, Dest::Back)],
                    record,
                }
            }
            // The client would wait for its timers to run out: a 500 says
            // at once that the server failed (why is for the log).
            Err(e) => {
                let answer = crate::sip::compose::stateless_error(
                    &msg,
                    500,
                    crate::sip::compose::reason_phrase(500),
                    &[],
                    &mut ctx,
                )
                .ok();
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
        let reason = format!("Bad Request ({why})");
        crate::sip::compose::stateless_error(&request, 400, &reason, &[], &mut ctx).ok()
    }

    fn unsent(&self, _msg: &Message, _why: &SendError) -> Option<Message> {
        None
    }
}
