//! The relay workflow as a live service (SPEC §7, `sipseal relay`): each
//! message from the network goes through [`relay`](super::relay) with
//! what the connection proves put in the path checks, then on to the next
//! hop a stateless proxy picks (RFC 3261 §16.6, §16.11), or back to the
//! Via (RFC 3261 §18.2.2, RFC 3581).
//!
//! What the connection proves:
//! - the link it arrived on: TLS with a verified client certificate is
//!   Route-Security level 3, TCP and UDP level 0; a request's newest
//!   Route-Security entry must name the source address;
//! - the imposture check: a TLS peer whose certificate names a user
//!   (`sip:alice@...`) may send only as that user (403 otherwise); a
//!   peer with a server certificate (a proxy) is trusted for what it
//!   forwards; any other source is checked against the registered
//!   bindings (`--registrations`, `--bindings`) by its address.
//!
//! No amplification: over UDP, an answer more than three times the size
//! of the request that caused it (a 496 with this relay's certificate) is
//! sent without its body; the UA fetches the certificate over TCP or TLS,
//! or by a certificate query.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use super::{Outcome, RelayError, RelayKeys, RelayOptions, RelayReport, RelayState, relay};
use crate::context::Context;
use crate::keys::{Cert, Identity, Psk};
use crate::net::live::{Dest, Handled, Outgoing, Peer, Record, Service};
use crate::net::{Hop, Transport};
use crate::pinhole::Changes;
use crate::policy::Bindings;
use crate::sip::compose::{reason_phrase, stateless_error};
use crate::sip::uri::HopUri;
use crate::sip::{Message, routing};
use crate::state::{PinholeStore, SessionStore};

/// A store a live relay shares between its workers.
pub trait LiveStore: SessionStore + PinholeStore + Send + Sync {}
impl<T: SessionStore + PinholeStore + Send + Sync> LiveStore for T {}

/// What a relay holds: its keys (replaced whole on a reload).
#[derive(Debug)]
pub struct LiveKeys {
    /// Its identity, if it has one.
    pub identity: Option<Identity>,
    /// PSKs it shares with user agents.
    pub psks: Vec<Psk>,
    /// Certificates it may re-seal for.
    pub certs: Vec<Cert>,
}

/// How the live relay routes and runs.
#[derive(Clone)]
pub struct LiveConfig {
    /// The relay step's options (the path options that come from the
    /// connection are set per message).
    pub opts: RelayOptions,
    /// A request with no Route beyond this relay goes here (an outbound
    /// proxy) instead of to its Request-URI.
    pub next: Option<String>,
    /// This relay's own addresses (`HOST[:PORT]`): Route entries naming
    /// them are this relay's. The first is its Via sent-by when `fixed_via`.
    pub own: Vec<String>,
    /// Each listener's address (`HOST:PORT`): a request's Via names the
    /// one of the transport it leaves on, so the response comes back to
    /// the socket that sent it.
    pub listeners: Vec<(Transport, String)>,
    /// Always put `own[0]` in the Via (`--via`).
    pub fixed_via: bool,
    /// Keep pinholes (their changes go to the sink).
    pub pinholes: bool,
}

/// Where what the relay learns goes: the report of each message, and
/// each pinhole change.
pub trait Sink: Send + Sync {
    /// One message's report.
    fn report(&self, report: &RelayReport);
    /// One message's pinhole changes.
    fn pinholes(&self, changes: &Changes);
}

/// A sink that keeps nothing.
pub struct NoSink;

impl Sink for NoSink {
    fn report(&self, _: &RelayReport) {}
    fn pinholes(&self, _: &Changes) {}
}

/// The live relay.
pub struct LiveRelay {
    keys: RwLock<Arc<LiveKeys>>,
    config: RwLock<Arc<LiveConfig>>,
    store: Arc<dyn LiveStore>,
    ctx: Mutex<Context>,
    sink: Arc<dyn Sink>,
}

impl LiveRelay {
    /// A relay with these keys, configuration and store; `ctx` gives every
    /// message a context of its own.
    pub fn new(
        keys: LiveKeys,
        config: LiveConfig,
        store: Arc<dyn LiveStore>,
        ctx: Context,
        sink: Arc<dyn Sink>,
    ) -> LiveRelay {
        LiveRelay {
            keys: RwLock::new(Arc::new(keys)),
            config: RwLock::new(Arc::new(config)),
            store,
            ctx: Mutex::new(ctx),
            sink,
        }
    }

    /// Replace the keys and configuration (SIGHUP): messages in hand
    /// finish with the old ones.
    pub fn reload(&self, keys: LiveKeys, config: LiveConfig) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    /// Replace the configuration only (the registrations a relay reads
    /// change while it runs).
    pub fn reconfigure(&self, config: LiveConfig) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    /// The store (flushed on shutdown by its owner).
    pub fn store(&self) -> &Arc<dyn LiveStore> {
        &self.store
    }

    fn context(&self) -> Context {
        self.ctx.lock().unwrap_or_else(|e| e.into_inner()).fork()
    }

    fn answer(&self, request: &Message, code: u16, why: &str) -> Option<Message> {
        if !request.is_request() || request.method() == Some("ACK") {
            return None;
        }
        let keys = Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()));
        let agent = RelayKeys {
            identity: keys.identity.as_ref(),
            psks: &keys.psks,
            certs: &keys.certs,
        }
        .host();
        let warning = (
            "Warning".to_owned(),
            format!("399 {agent} {}", super::refusal::quoted(why)),
        );
        stateless_error(
            request,
            code,
            reason_phrase(code),
            &[warning],
            &mut self.context(),
        )
        .ok()
    }
}

/// This relay's Via sent-by for `msg`: the listener of the transport a
/// request leaves on; for a response, the sent-by it carries back when it
/// is one of this relay's.
fn sent_by(msg: &Message, config: &LiveConfig, planned: Option<&Hop>) -> String {
    let first = config.own.first().cloned().unwrap_or_default();
    if config.fixed_via {
        return first;
    }
    if msg.is_request() {
        let transport = planned.map_or(Transport::Udp, |t| t.transport);
        return config
            .listeners
            .iter()
            .find(|(t, _)| *t == transport)
            .map(|(_, a)| a.clone())
            .unwrap_or(first);
    }
    msg.top_via()
        .ok()
        .map(|v| v.sent_by())
        .filter(|s| config.own.iter().any(|o| o.eq_ignore_ascii_case(s)))
        .unwrap_or(first)
}

/// `HOST:PORT` (or the host alone) of a hop, for the log.
fn describe(hop: &Hop) -> String {
    match hop.uri.port {
        Some(p) => format!("{}:{p}", hop.uri.host),
        None => hop.uri.host.clone(),
    }
}

/// Where a response goes: its top Via (RFC 3261 §18.2.2, RFC 3581).
fn response_hop(msg: &Message) -> Result<Hop, String> {
    let (token, host, port) =
        routing::response_hop(msg).ok_or("the response has no Via below this relay's")?;
    let transport = Transport::from_token(&token)
        .ok_or_else(|| format!("its Via transport {token} is not served here"))?;
    Ok(Hop {
        transport,
        uri: HopUri {
            secure: false,
            host,
            // A response goes to the sent-by port, else the default (RFC
            // 3263 §5 would ask SRV; a Via without a port is rare).
            port: Some(port.unwrap_or(transport.default_port())),
            transport: Some(token.to_ascii_lowercase()),
        },
    })
}

/// Where a request goes: the next Route, `--next`, or the Request-URI.
fn request_hop(msg: &Message, config: &LiveConfig) -> Result<Hop, String> {
    let uri = routing::next_hop_uri(msg, &config.own, config.next.as_deref())
        .ok_or("no Route, --next or Request-URI to send it to")?;
    let hop = HopUri::parse(&uri).ok_or_else(|| format!("{uri}: not a SIP URI with a host"))?;
    Hop::for_uri(&hop, msg.to_bytes().len())
}

impl Service for LiveRelay {
    fn handle(&self, msg: Message, peer: &Peer) -> Handled {
        let keys = Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()));
        let config = Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()));
        let relay_keys = RelayKeys {
            identity: keys.identity.as_ref(),
            psks: &keys.psks,
            certs: &keys.certs,
        };
        let mut record = Record {
            method: msg
                .method()
                .map(str::to_owned)
                .or_else(|| msg.cseq().ok().map(|c| c.method))
                .unwrap_or_default(),
            status: msg.status(),
            call_id: msg.call_id().unwrap_or_default().to_owned(),
            decision: String::new(),
        };
        let mut opts: RelayOptions = config.opts.clone();
        let source = peer.source();
        opts.path.received_from = Some(source.clone());
        opts.path.arrived_level = Some(if peer.cert.is_some() { 3 } else { 0 });
        if let Some(cert) = &peer.cert {
            // A user's certificate speaks for that user only; a server's
            // (no user part) vouches for what it forwards.
            opts.path.bindings = cert.uri().filter(|u| u.contains('@')).map(|aor| {
                Arc::new(Bindings::from_map(BTreeMap::from([(
                    aor,
                    vec![source.clone()],
                )])))
            });
        }
        // The level of the link this relay sends on: a request's next hop,
        // or, for a response, the link it came back on (where the request
        // went).
        let planned = msg
            .is_request()
            .then(|| request_hop(&msg, &config))
            .and_then(Result::ok);
        let sends_on = match &planned {
            Some(t) => t.transport,
            None => peer.transport,
        };
        opts.path.link_level = Some(if sends_on == Transport::Tls { 3 } else { 0 });
        opts.via = Some(sent_by(&msg, &config, planned.as_ref()));
        let mut ctx = self.context();
        let state = RelayState {
            sessions: &*self.store,
            pinholes: config.pinholes.then_some(&*self.store as &dyn PinholeStore),
        };
        let step = match relay(&msg, &relay_keys, &opts, state, &mut ctx) {
            Ok(step) => step,
            Err(err) => {
                record.decision = format!("drop: {err}");
                let answer = match (&err, err.sip_status()) {
                    (_, Some(code)) => self.answer(&msg, code, &err.to_string()),
                    (RelayError::Store(_), None) => {
                        self.answer(&msg, 500, "the session store failed")
                    }
                    _ => None,
                };
                if let Some(a) = &answer {
                    record.decision = format!("answer {}: {err}", a.status().unwrap_or_default());
                }
                return Handled {
                    out: answer
                        .into_iter()
                        .map(|msg| Outgoing {
                            msg,
                            dest: Dest::Back,
                        })
                        .collect(),
                    record,
                };
            }
        };
        self.sink.report(&step.report);
        if let Some(changes) = &step.pinholes {
            self.sink.pinholes(changes);
        }
        let out = match step.outcome {
            Outcome::Forward(mut out) if out.is_request() => match request_hop(&out, &config) {
                Ok(hop) => {
                    routing::set_via_transport(&mut out, hop.transport.token());
                    record.decision =
                        format!("forward {} {}", hop.transport.token(), describe(&hop));
                    Outgoing {
                        msg: out,
                        dest: Dest::Locate(hop),
                    }
                }
                Err(why) => {
                    record.decision = format!("answer 503: {why}");
                    match self.answer(&msg, 503, &why) {
                        Some(a) => Outgoing {
                            msg: a,
                            dest: Dest::Back,
                        },
                        None => {
                            return Handled {
                                out: vec![],
                                record,
                            };
                        }
                    }
                }
            },
            Outcome::Forward(out) => match response_hop(&out) {
                Ok(hop) => {
                    record.decision =
                        format!("forward {} {}", hop.transport.token(), describe(&hop));
                    Outgoing {
                        msg: out,
                        dest: Dest::Locate(hop),
                    }
                }
                Err(why) => {
                    record.decision = format!("drop: {why}");
                    return Handled {
                        out: vec![],
                        record,
                    };
                }
            },
            Outcome::Respond(mut answer) => {
                let code = answer.status().unwrap_or_default();
                record.decision = match step.report.refused.as_deref() {
                    Some(why) => format!("answer {code}: {why}"),
                    None => format!("answer {code}"),
                };
                if peer.transport == Transport::Udp
                    && answer.to_bytes().len() > 3 * peer.size
                    && !answer.body().is_empty()
                {
                    answer.remove_headers("Content-Type");
                    answer.set_body(Vec::new());
                    record.decision.push_str(
                        " (its body left out: over UDP it would be more than 3 times the request)",
                    );
                }
                Outgoing {
                    msg: answer,
                    dest: Dest::Back,
                }
            }
        };
        Handled {
            out: vec![out],
            record,
        }
    }

    fn unparsable(&self, bytes: &[u8], why: &str, _peer: &Peer) -> Option<Message> {
        let keys = Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()));
        let host = RelayKeys {
            identity: keys.identity.as_ref(),
            psks: &keys.psks,
            certs: &keys.certs,
        }
        .host();
        let _ = host;
        let request = Message::salvage_request(bytes)?;
        self.answer(&request, 400, why)
    }

    /// A request that could not go on is answered 503 (RFC 3261 §16.11
    /// leaves a stateless proxy that answer); the relay's own Via, on top
    /// of what it tried to send, comes off first.
    fn unsent(&self, msg: &Message, _why: &str) -> Option<Message> {
        // Why it failed (an address, a TLS error) is for the log only.
        let answer = self.answer(msg, 503, "the next hop cannot be reached")?;
        routing::forward_response(&answer)
    }
}
