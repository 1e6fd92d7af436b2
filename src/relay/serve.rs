//! The relay workflow as a live service (docs/SPEC.md §7, `sipseal relay`): each
//! message from the network goes through [`relay`] with
//! what the connection proves put in the path checks, then on to the next
//! hop a stateless proxy picks (RFC 3261 §16.4–16.6, §16.11, [`route`]),
//! or back to the Via (RFC 3261 §18.2.2, RFC 3581). A request addressed
//! to the relay itself is answered here (OPTIONS: 200).
//!
//! What the connection proves:
//! - the link it arrived on: TLS with a verified client certificate is
//!   Route-Security level 3, TCP and UDP level 0; a request's top
//!   Route-Security entry must name the source address (else the relay
//!   puts the source on top: with level 3 over mutual TLS, else without
//!   a level); a response whose entry at the relay's position is not its
//!   own is dropped and logged;
//! - the imposture check: a TLS peer whose certificate names a user
//!   (`sip:alice@...`) may send only as that user (403 otherwise); a
//!   peer with a server certificate (a proxy) is trusted for what it
//!   forwards; any other source is checked against the registered
//!   bindings (`--registrations`, `--bindings`) by its address.
//!
//! Record-Route carries the transport of the listener (`sips:` on TLS);
//! a request that arrives on one listener and leaves on another gets two
//! (RFC 5658), so the dialog's later requests come back on the same
//! transports and never leave TLS.
//!
//! No amplification: over UDP, an answer more than three times the size
//! of the request that caused it (a 496 with this relay's certificate) is
//! sent without its body; the UA fetches the certificate over TCP or TLS,
//! or by a certificate query.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use super::flow;
use super::route::{self, Onward, RouteError, Routing};
use super::{Outcome, RelayError, RelayKeys, RelayOptions, RelayReport, RelayState, relay};
use crate::context::Context;
use crate::firewall::Firewall;
use crate::keys::{Cert, Identity, Psk};
use crate::net::live::{Dest, Handled, Outgoing, Peer, Record, SendError, Service};
use crate::net::{Hop, Transport};
use crate::pinhole::Changes;
use crate::policy::Bindings;
use crate::registrar::store::RegistrarStore;
use crate::sip::route_security;
use crate::sip::routing::{self, OwnNames, record_route_entry};
use crate::sip::uri::HopUri;
use crate::sip::{Answer, IntoAnswer, Message, Status, respond};
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
    /// connection are set per message); `opts.names` holds every name
    /// it goes by: its listeners, `--via`, `--alias`, its certificate's.
    pub opts: RelayOptions,
    /// A request with no Route beyond this relay goes here (an outbound
    /// proxy) instead of to its Request-URI.
    pub next: Option<String>,
    /// Each listener's address: a request's Via names the one of the
    /// transport it leaves on, so the response comes back to the socket
    /// that sent it.
    pub listeners: Vec<(Transport, SocketAddr)>,
    /// Always put this in the Via and Record-Route (`--via`: relays behind
    /// one address).
    pub via: Option<String>,
    /// Keep pinholes (their changes go to the sink).
    pub pinholes: bool,
    /// Apply each pinhole change here, confirmed before the message goes
    /// on (`--firewall nft`).
    pub firewall: Option<Arc<dyn Firewall>>,
    /// A call whose BYE never came is ended this long after its last offer
    /// or answer (`--pinhole-max-age`).
    pub pinhole_max_age: time::Duration,
    /// The domains it serves (`--domain`).
    pub domains: Vec<String>,
    /// Names resolved before DNS (`--hosts`): the operator's.
    pub hosts: crate::net::Hosts,
    /// Where a next hop a message names may be (`--hop-allow`; never its
    /// listeners or its store).
    pub hop_guard: crate::net::HopGuard,
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
    /// The registrar's store, where the location service finds bindings.
    registry: Option<Arc<dyn RegistrarStore + Send + Sync>>,
    /// Whether `ctx` is seeded or has a fixed clock (every message's context
    /// is then drawn from it).
    deterministic: bool,
}

/// Where the location service found an AOR's user agent.
struct Located {
    /// The Contact: the new Request-URI.
    contact: String,
    /// Path entries of other proxies, to route through (RFC 3327).
    route: Vec<String>,
    /// The flow the REGISTER came on through this relay (RFC 5626).
    flow: Option<flow::FlowAt>,
}

/// What the relay allows when it answers for itself (it relays any
/// method; as a server it answers OPTIONS).
const ALLOW: &str = "OPTIONS";
/// The bodies it reads.
const ACCEPT: &str = "application/sdp, application/pkcs7-mime, multipart/signed, multipart/mixed";

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
            deterministic: ctx.is_deterministic(),
            ctx: Mutex::new(ctx),
            sink,
            registry: None,
        }
    }

    /// Locate the users of the served domains in this registrar store
    /// (a state directory, or Redis).
    pub fn with_registry(mut self, registry: Arc<dyn RegistrarStore + Send + Sync>) -> LiveRelay {
        self.registry = Some(registry);
        self
    }

    /// The key its flow tokens are made with (its branch secret).
    fn flow_key(&self, keys: &RelayKeys<'_>) -> Option<[u8; 32]> {
        let secret = self
            .store
            .secret(&keys.name(), &mut || {
                let mut b = [0u8; 32];
                b.copy_from_slice(&self.context().bytes(32));
                b
            })
            .ok()?;
        Some(*secret)
    }

    /// Where the REGISTER of a binding came from, when it came through
    /// this relay: the source its Path entry's flow token names (`IP:PORT`
    /// on UDP, the IP on a stream), for the imposture check.
    pub fn flow_source(&self, path_entry: &str) -> Option<String> {
        let keys = self.keys();
        let key = self.flow_key(&relay_keys(&keys))?;
        let flow::FlowAt {
            transport, addr, ..
        } = flow::flow_of(path_entry, &self.config().opts.names, &key)?;
        let peer = Peer {
            transport,
            addr,
            local: addr,
            cert: None,
            size: 0,
        };
        Some(peer.source())
    }

    /// The binding of a request's From AOR read from the registrar's store
    /// now, when the registrations the relay last read do not have it (a
    /// user agent that calls right after it registered): the bindings to
    /// check this request against.
    fn just_registered(
        &self,
        msg: &Message,
        opts: &RelayOptions,
        config: &LiveConfig,
        key: Option<&[u8; 32]>,
    ) -> Option<Bindings> {
        let bindings = opts.path.bindings.as_ref()?;
        let registry = self.registry.as_ref()?;
        let source = opts.path.received_from.as_deref()?;
        if !msg.is_request() || msg.method() == Some("REGISTER") {
            return None;
        }
        let aor = msg.aor("From")?;
        if bindings.check(aor, source).is_ok() {
            return None;
        }
        let realm = crate::sip::headers::uri_host(aor)?;
        let realm = config
            .domains
            .iter()
            .find(|d| d.eq_ignore_ascii_case(&realm))?;
        let names = &config.opts.names;
        let flow = |entry: &str| -> Option<String> {
            let flow::FlowAt {
                transport, addr, ..
            } = flow::flow_of(entry, names, key?)?;
            Some(
                Peer {
                    transport,
                    addr,
                    local: addr,
                    cert: None,
                    size: 0,
                }
                .source(),
            )
        };
        let now = time::OffsetDateTime::now_utc();
        let sources = crate::blocking::offload(|| {
            crate::registrar::aor_sources(registry.as_ref(), realm, aor, now, &flow)
        })
        .ok()?;
        (!sources.is_empty())
            .then(|| Bindings::from_map(BTreeMap::from([(aor.to_ascii_lowercase(), sources)])))
    }

    /// The location service (RFC 3261 §16.5, docs/SPEC.md §7): the newest live
    /// binding of `aor` in `domain`; 480 when it has none, 404 when it
    /// never registered (what a policy denial also answers).
    fn locate(
        &self,
        aor: &str,
        domain: &str,
        key: Option<&[u8; 32]>,
        names: &OwnNames,
    ) -> Result<Located, Box<Answer>> {
        let Some(registry) = &self.registry else {
            return Err(Box::new(Answer::new(Status::NotFound).because(
                "no registrations to locate users in (give --registrations)",
            )));
        };
        let record =
            crate::blocking::offload(|| registry.load_aor(domain, &crate::sip::aor::Aor::new(aor)))
                .map_err(|e| {
                    Box::new(
                        Answer::new(Status::ServerError).because(format!("the registrations: {e}")),
                    )
                })?;
        let now = time::OffsetDateTime::now_utc();
        let known = !(record.bindings.is_empty()
            && record.certificates.is_empty()
            && record.nonces.is_empty());
        let Some(b) = record
            .bindings
            .iter()
            // The record is the AOR's own.
            .filter(|b| b.expires > now)
            .max_by_key(|b| (b.expires, b.cseq))
        else {
            return Err(Box::new(if known {
                Answer::new(Status::TemporarilyUnavailable)
                    .because(format!("{aor} has no live binding"))
            } else {
                Answer::new(Status::NotFound)
            }));
        };
        let flow = match (b.path.first(), key) {
            (Some(first), Some(key)) => flow::flow_of(first, names, key),
            _ => None,
        };
        let route = match flow {
            // The entry is this relay's own: the flow is the way on.
            Some(_) => b.path.iter().skip(1).cloned().collect(),
            None => b.path.clone(),
        };
        Ok(Located {
            contact: b.contact.clone(),
            route,
            flow,
        })
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

    /// The configuration in use.
    pub fn config(&self) -> Arc<LiveConfig> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// End the calls whose BYE never came within `--pinhole-max-age` of
    /// their last offer or answer, each ending confirmed by the firewall;
    /// with `replace` (at start) the firewall's sets are then made to
    /// hold exactly the calls that remain, so that what ended while the
    /// relay was down goes too. Returns what was ended.
    pub fn sweep_pinholes(&self, replace: bool) -> Result<Vec<Changes>, RelayError> {
        let config = self.config();
        if !config.pinholes {
            return Ok(Vec::new());
        }
        let owner = relay_keys(&self.keys()).name();
        let now = self.context().now().unix_timestamp();
        let cutoff = now.saturating_sub(config.pinhole_max_age.whole_seconds());
        let firewall = config.firewall.as_deref();
        let ended = crate::blocking::offload(|| {
            crate::state::expire_calls(&*self.store, &owner, cutoff, now, &mut |c| {
                crate::firewall::confirm(firewall, c)
            })
        })?;
        for changes in &ended {
            self.sink.pinholes(changes);
        }
        if replace && let Some(fw) = firewall {
            let calls = self.store.calls(&owner)?;
            fw.replace(&calls)?;
        }
        Ok(ended)
    }

    /// The store (flushed on shutdown by its owner).
    pub fn store(&self) -> &Arc<dyn LiveStore> {
        &self.store
    }

    /// A context for one message: drawn from the relay's in deterministic
    /// mode (in order, under its lock), else a fresh one (no lock shared by
    /// the runtime's threads).
    fn context(&self) -> Context {
        if !self.deterministic {
            return Context::new(None, None);
        }
        self.ctx.lock().unwrap_or_else(|e| e.into_inner()).fork()
    }

    fn keys(&self) -> Arc<LiveKeys> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The response to `request` that carries `answer`, with a Warning
    /// from this relay naming why when the answer says why.
    fn respond(&self, request: &Message, answer: Answer) -> Option<Message> {
        let keys = self.keys();
        let agent = relay_keys(&keys).host();
        let mut answer = match answer.why.clone() {
            Some(why) => answer.with_warning(&agent, &why),
            None => answer,
        };
        // Its own answers carry a To tag it knows again in their ACK.
        if let Some(key) = self.flow_key(&relay_keys(&keys)) {
            answer.to_tag = Some(routing::local_tag(&key, request));
        }
        respond(request, &answer, &mut self.context())
            .ok()
            .flatten()
    }

    /// A request addressed to the relay itself: OPTIONS (a keep-alive
    /// ping) gets 200 with what it allows and accepts; an ACK is absorbed;
    /// a CANCEL matches nothing here (481); anything else is a method the
    /// relay does not serve (405).
    fn for_myself(&self, msg: &Message, mut record: Record) -> Handled {
        let answer = match msg.method() {
            Some("OPTIONS") => Answer::new(Status::Ok)
                .with_header("Allow", ALLOW)
                .with_header("Accept", ACCEPT)
                .with_header("Supported", "path, outbound"),
            Some("ACK") => {
                record.decision = "drop: an ACK for this relay itself".into();
                return Handled {
                    out: Vec::new(),
                    record,
                };
            }
            Some("CANCEL") => Answer::new(Status::CallDoesNotExist),
            _ => Answer::new(Status::MethodNotAllowed).with_header("Allow", ALLOW),
        };
        let out: Vec<Outgoing> = respond(msg, &answer, &mut self.context())
            .ok()
            .flatten()
            .map(|m| Outgoing::new(m, Dest::Back))
            .into_iter()
            .collect();
        record.decision = format!("answer {} (for this relay itself)", answer.status.code());
        Handled { out, record }
    }

    /// The Record-Route entry of the listener of `transport` at `addr`:
    /// its host the `--via` name, else the listener's address (what a
    /// peer reaches, and reuses the connection to, without DNS); `sips:`
    /// only for a `sips:` request (RFC 3261 §16.6 step 4: a `sip:` request
    /// gets a `sip:` entry even over TLS, `;transport=tls` keeping the
    /// dialog on TLS).
    fn rr_entry(
        config: &LiveConfig,
        keys: &RelayKeys<'_>,
        transport: Transport,
        addr: SocketAddr,
        secure: bool,
    ) -> String {
        let token = transport.token();
        if let Some(via) = &config.via
            && let Some(u) = HopUri::parse(&format!("sip:{via}"))
        {
            return record_route_entry(
                u.host.trim_start_matches('[').trim_end_matches(']'),
                u.port.unwrap_or(addr.port()),
                token,
                secure,
            );
        }
        let ip = addr.ip().to_canonical();
        let host = if ip.is_unspecified() {
            keys.host()
        } else {
            ip.to_string()
        };
        record_route_entry(&host, addr.port(), token, secure)
    }
}

fn relay_keys(keys: &LiveKeys) -> RelayKeys<'_> {
    RelayKeys {
        identity: keys.identity.as_ref(),
        psks: &keys.psks,
        certs: &keys.certs,
    }
}

/// The listener of `transport`.
fn listener(config: &LiveConfig, transport: Transport) -> Option<SocketAddr> {
    config
        .listeners
        .iter()
        .find(|(t, _)| *t == transport)
        .map(|(_, a)| *a)
}

/// This relay's Via sent-by for `msg`: `--via`, else the listener of the
/// transport a request leaves on; for a response, the sent-by it carries
/// back when it is one of this relay's.
fn sent_by(msg: &Message, config: &LiveConfig, planned: Option<&Hop>) -> String {
    let first = config
        .listeners
        .first()
        .map(|(_, a)| a.to_string())
        .unwrap_or_default();
    if let Some(via) = &config.via {
        return via.clone();
    }
    if msg.is_request() {
        let transport = planned.map_or(Transport::Udp, |t| t.transport);
        return listener(config, transport).map_or(first, |a| a.to_string());
    }
    msg.top_via()
        .ok()
        .map(|v| v.sent_by())
        .filter(|s| config.opts.names.names_sent_by(s))
        .unwrap_or(first)
}

/// The identity of the certificate a TLS peer presented, for the flow
/// tokens made for it ([`flow::FlowAt`]).
fn flow_peer(peer: &Peer) -> Option<[u8; flow::PEER_LEN]> {
    peer.cert
        .as_ref()
        .filter(|_| peer.transport == Transport::Tls)
        .map(|c| c.flow_id())
}

/// The hop of a flow: its transport, to its address.
fn flow_hop(transport: Transport, addr: SocketAddr) -> Hop {
    let host = match addr.ip().to_canonical() {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    };
    Hop {
        transport,
        uri: HopUri {
            // The flow's transport says TLS; the request need not be sips:.
            secure: false,
            host,
            port: Some(addr.port()),
            transport: Some(transport.token().to_ascii_lowercase()),
        },
        guarded: false,
    }
}

/// `msg` sent to a located user agent: its Request-URI the Contact, the
/// other proxies' Path entries its first Route entries.
fn retarget(msg: &mut Message, found: &Located) {
    let method = msg.method().unwrap_or_default().to_owned();
    msg.set_start_line(crate::sip::StartLine::Request {
        method,
        uri: found.contact.clone(),
    });
    let at = msg
        .headers()
        .iter()
        .position(|h| h.is("Route"))
        .or_else(|| {
            msg.headers()
                .iter()
                .position(|h| h.is("Max-Forwards"))
                .map(|i| i + 1)
        })
        .unwrap_or(1);
    for entry in found.route.iter().rev() {
        msg.insert_header(at, "Route", entry);
    }
}

/// `HOST:PORT` (or the host alone) of a hop, for the log.
fn describe(hop: &Hop) -> String {
    match hop.uri.port {
        Some(p) => format!("{}:{p}", hop.uri.host),
        None => hop.uri.host.clone(),
    }
}

/// Why a response cannot go back.
#[derive(Debug, thiserror::Error)]
enum BackError {
    #[error("the response has no Via below this relay's")]
    NoVia,
    #[error("its Via transport {0} is not served here")]
    Transport(String),
}

/// Where a response goes: its top Via (RFC 3261 §18.2.2, RFC 3581).
fn response_hop(msg: &Message) -> Result<Hop, BackError> {
    let (token, host, port) = routing::response_hop(msg).ok_or(BackError::NoVia)?;
    let transport = Transport::from_token(&token).ok_or(BackError::Transport(token.clone()))?;
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
        // The Via below this relay's carries the source it saw (received=).
        guarded: false,
    })
}

impl Service for LiveRelay {
    fn handle(&self, mut msg: Message, peer: &Peer) -> Handled {
        let keys = self.keys();
        let config = self.config();
        let relay_keys = relay_keys(&keys);
        let mut record = Record {
            method: msg
                .method()
                .map(str::to_owned)
                .or_else(|| msg.cseq().ok().map(|c| c.method))
                .unwrap_or_default(),
            status: msg.status(),
            call_id: msg.call_id().unwrap_or_default().to_owned(),
            ..Record::default()
        };
        let size = peer.size;
        // Where a request goes on, decided first: one for the relay
        // itself is answered here.
        let how = Routing {
            names: &config.opts.names,
            next: config.next.as_deref(),
            domains: &config.domains,
        };
        let planned: Option<Result<Onward, RouteError>> =
            msg.is_request().then(|| route::onward(&msg, &how, size));
        let key = msg
            .is_request()
            .then(|| self.flow_key(&relay_keys))
            .flatten();
        // A request for a user who registered through this relay comes
        // back with the relay's Path entry as its Route: the flow it names.
        // A request that came on that very flow goes outward: its own
        // Record-Route entry (below) names the flow it is on.
        let mut flow = key
            .as_ref()
            .and_then(|k| flow::routed_flow(&msg, &config.opts.names, k))
            .filter(|f| !(f.transport == peer.transport && f.addr == peer.addr));
        // The ACK of an answer this relay made ends here, before anything
        // would route it (RFC 3261 §8.2.7).
        if let Some(k) = &key
            && routing::acks_own_answer(&msg, k)
        {
            record.decision = "drop: the ACK of this relay's own answer".into();
            return Handled {
                out: Vec::new(),
                record,
            };
        }
        let hop = match &planned {
            Some(Ok(Onward::Myself)) => return self.for_myself(&msg, record),
            Some(Ok(Onward::Hop(hop))) => Some(hop.clone()),
            Some(Ok(Onward::Location { aor, domain })) => {
                match self.locate(aor, domain, key.as_ref(), &config.opts.names) {
                    Ok(found) => {
                        // RFC 3261 §16.5-16.6: the Contact is the new
                        // Request-URI; other proxies' Path entries route it.
                        retarget(&mut msg, &found);
                        flow = found.flow;
                        let first = found.route.first().unwrap_or(&found.contact);
                        HopUri::parse(first).and_then(|u| Hop::for_uri(&u, size).ok())
                    }
                    Err(answer) => {
                        record.decision = format!("answer {} (location)", answer.describe());
                        let out = self
                            .respond(&msg, *answer)
                            .map(|m| Outgoing::new(m, Dest::Back))
                            .into_iter()
                            .collect();
                        return Handled { out, record };
                    }
                }
            }
            _ => None,
        };
        // A name the hosts table gives for TCP alone goes over TCP.
        let mut hop = hop.map(|h| h.by_hosts(&config.hosts));
        // On a flow, the transport is the flow's.
        let fallback = hop.clone();
        if let Some(f) = flow {
            hop = Some(flow_hop(f.transport, f.addr));
        }
        // H2: a next hop the message names, whose address is known
        // without DNS, is checked before anything else is done for it
        // (one found by DNS, when it is resolved).
        if let Some(Some(Err(why))) = hop
            .as_ref()
            .map(|h| h.known_checked(&config.hosts, &config.hop_guard))
        {
            return self.not_allowed(&msg, &why, record);
        }
        let mut opts: RelayOptions = config.opts.clone();
        let source = peer.source();
        opts.path.received_from = Some(source.clone());
        // M3: on a stream, the connection (its source port too) is the
        // neighbour a BYE must come back on.
        opts.path.flow = Some(match peer.transport {
            Transport::Udp => source.clone(),
            t => format!("{}:{}", t.token(), peer.addr),
        });
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
        if peer.cert.is_none()
            && let Some(fresh) = self.just_registered(&msg, &opts, &config, key.as_ref())
        {
            opts.path.bindings = Some(Arc::new(fresh));
        }
        // The level of the link this relay sends on: a request's next hop,
        // or, for a response, the link it came back on (where the request
        // went).
        let sends_on = hop.as_ref().map_or(peer.transport, |h| h.transport);
        opts.path.link_level = Some(if sends_on == Transport::Tls { 3 } else { 0 });
        opts.via = Some(sent_by(&msg, &config, hop.as_ref()));
        if let Some(hop) = &hop {
            // RFC 3261 §16.6 step 4: a sips: entry only when the request
            // is sips: (its Request-URI, or the Route it follows), not
            // because a link is TLS.
            let sips = |u: &str| HopUri::parse(u).is_some_and(|h| h.secure);
            let secure = msg.request_uri().is_some_and(sips)
                || routing::next_route(&msg, &config.opts.names).is_some_and(|r| sips(&r));
            let inbound = Self::rr_entry(&config, &relay_keys, peer.transport, peer.local, secure);
            let outbound = listener(&config, hop.transport)
                .map(|a| Self::rr_entry(&config, &relay_keys, hop.transport, a, secure));
            // RFC 5626 §5.3: an edge proxy record-routes a dialog of a user
            // agent that reaches it over a flow (`ob` in its Contact) with a
            // flow token, so that the far end's requests in the dialog come
            // back down that flow, not where --next or the Contact leads.
            let token = key
                .as_ref()
                .filter(|_| msg.header_list("Via").len() == 1 && flow::contact_has_ob(&msg))
                .map(|k| flow::token(k, peer.transport, peer.addr, flow_peer(peer)));
            let tokened = |entry: &str| match &token {
                Some(t) => flow::with_token(entry, t),
                None => entry.to_owned(),
            };
            opts.record_route_as = match outbound {
                Some(out) if out != inbound => vec![tokened(&inbound), out],
                _ => vec![tokened(&inbound)],
            };
        }
        let mut ctx = self.context();
        let state = RelayState {
            sessions: &*self.store,
            pinholes: config.pinholes.then_some(&*self.store as &dyn PinholeStore),
            firewall: config.firewall.as_deref(),
        };
        let step = match relay(&msg, &relay_keys, &opts, state, &mut ctx) {
            Ok(step) => step,
            Err(err) => {
                record.decision = format!("drop: {err}");
                let answer = err.answer().and_then(|a| {
                    // Why a body did not open stays in the log.
                    let a = match err {
                        RelayError::Open(_) => Answer { why: None, ..a },
                        _ => a,
                    };
                    self.respond(&msg, a)
                });
                if let Some(a) = &answer {
                    record.decision = format!("answer {}: {err}", a.status().unwrap_or_default());
                }
                return Handled {
                    out: answer
                        .into_iter()
                        .map(|msg| Outgoing::new(msg, Dest::Back))
                        .collect(),
                    record,
                };
            }
        };
        self.sink.report(&step.report);
        let checked = &step.report.route_security;
        record.route_security = (!checked.is_empty()).then(|| checked.join("; "));
        if let Some(changes) = &step.pinholes {
            self.sink.pinholes(changes);
        }
        let out = match step.outcome {
            Outcome::Forward(mut out) if out.is_request() => match (planned, hop) {
                (_, Some(hop)) => {
                    routing::set_via_transport(&mut out, hop.transport.token());
                    if out.method() == Some("REGISTER")
                        && msg.header_list("Via").len() == 1
                        && let Some(key) = &key
                    {
                        // An edge proxy (RFC 5626 §5.2, RFC 3327): the user
                        // agent's flow, for the requests that come back to it.
                        let token = flow::token(key, peer.transport, peer.addr, flow_peer(peer));
                        let facing = listener(&config, hop.transport).unwrap_or(peer.local);
                        let own =
                            Self::rr_entry(&config, &relay_keys, hop.transport, facing, false);
                        let entry = flow::path_entry(&token, &own);
                        let at = out
                            .headers()
                            .iter()
                            .position(|h| h.is("Path") || h.is("Max-Forwards"))
                            .map_or(1, |i| i + usize::from(out.headers()[i].is("Max-Forwards")));
                        out.insert_header(at, "Path", &entry);
                    }
                    record.decision =
                        format!("forward {} {}", hop.transport.token(), describe(&hop));
                    match flow {
                        Some(f) => {
                            // The flow, else (it is gone) the Contact.
                            let otherwise = fallback.map(|h| {
                                let mut again = out.clone();
                                routing::set_via_transport(&mut again, h.transport.token());
                                Box::new(Outgoing::new(again, Dest::Locate(h)))
                            });
                            Outgoing {
                                msg: out,
                                dest: Dest::Flow(f.transport, f.addr, f.peer),
                                otherwise,
                            }
                        }
                        None => {
                            let otherwise =
                                self.over_udp(&out, &hop, &opts, &config, &relay_keys, peer, size);
                            Outgoing {
                                msg: out,
                                dest: Dest::Locate(hop),
                                otherwise: otherwise.map(Box::new),
                            }
                        }
                    }
                }
                (planned, None) => {
                    let why = match planned {
                        Some(Err(e)) => e.to_string(),
                        _ => "no next hop".to_owned(),
                    };
                    let answer = Answer::new(Status::ServiceUnavailable).because(why);
                    record.decision = format!("answer {}", answer.describe());
                    match self.respond(&msg, answer) {
                        Some(a) => Outgoing::new(a, Dest::Back),
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
                // Never to its own store or listeners (the Via's received
                // and rport are under the branch's MAC too).
                Ok(hop)
                    if hop
                        .known(&config.hosts)
                        .is_some_and(|t| config.hop_guard.is_own(t.addr)) =>
                {
                    record.decision =
                        "drop: the response's Via names this relay's own listener or store".into();
                    return Handled {
                        out: vec![],
                        record,
                    };
                }
                Ok(hop) => {
                    record.decision =
                        format!("forward {} {}", hop.transport.token(), describe(&hop));
                    Outgoing::new(out, Dest::Locate(hop))
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
                if peer.transport == Transport::Udp {
                    use crate::sip::size::{Fit, fit_for_udp};
                    match fit_for_udp(&mut answer, peer.size) {
                        Fit::AsIs => {}
                        Fit::Trimmed => record.decision.push_str(
                            " (its body left out: over UDP it would be more than 3 times the request)",
                        ),
                        Fit::TooLarge => {
                            record.decision.push_str(
                                " (not sent: over UDP it would be more than 3 times the request)",
                            );
                            return Handled {
                                out: vec![],
                                record,
                            };
                        }
                    }
                }
                Outgoing::new(answer, Dest::Back)
            }
            Outcome::Drop(why) => {
                record.decision = format!("drop: {why}");
                return Handled {
                    out: vec![],
                    record,
                };
            }
        };
        Handled {
            out: vec![out],
            record,
        }
    }

    fn unparsable(&self, bytes: &[u8], why: &str, _peer: &Peer) -> Option<Message> {
        let host = relay_keys(&self.keys()).host();
        let request = Message::salvage_request(bytes)?;
        let answer = Answer::new(Status::BadRequest)
            .salvaged()
            .with_warning(&host, why);
        respond(&request, &answer, &mut self.context())
            .ok()
            .flatten()
    }

    /// A request that could not go on is answered 503 (RFC 3261 §16.11
    /// leaves a stateless proxy that answer); the relay's own Via, on top
    /// of what it tried to send, comes off first.
    fn unsent(&self, msg: &Message, why: &SendError) -> Option<Message> {
        if let SendError::Locate(e @ crate::net::NetError::NotAllowed { .. }) = why {
            let answer = self.refuse_hop(e);
            return routing::forward_response(&self.respond(msg, answer)?);
        }
        // Why it failed (an address, a TLS error) is for the log only.
        let answer =
            Answer::new(Status::ServiceUnavailable).because("the next hop cannot be reached");
        let answer = self.respond(msg, answer)?;
        routing::forward_response(&answer)
    }
}

impl LiveRelay {
    /// 403 for a next hop this relay does not send to (H2), with a Warning
    /// that says so (not where it resolved to).
    fn refuse_hop(&self, why: &crate::net::NetError) -> Answer {
        let host = relay_keys(&self.keys()).host();
        Answer::new(Status::Forbidden)
            .because(format!("next hop not allowed: {why}"))
            .with_warning(
                &host,
                "the next hop this request names is not one this relay sends to",
            )
    }

    /// The request answered 403: its next hop is not allowed.
    fn not_allowed(
        &self,
        msg: &Message,
        why: &crate::net::NetError,
        mut record: Record,
    ) -> Handled {
        let answer = self.refuse_hop(why);
        record.decision = format!("answer {}", answer.describe());
        let out = self
            .respond(msg, answer)
            .map(|m| Outgoing::new(m, Dest::Back))
            .into_iter()
            .collect();
        Handled { out, record }
    }

    /// A request sent over TCP only because it is over 1,300 bytes (RFC
    /// 3261 §18.1.1) goes over UDP when no connection can be opened: the
    /// same request with its Via and Record-Route naming the UDP listener.
    #[allow(clippy::too_many_arguments)]
    fn over_udp(
        &self,
        out: &Message,
        hop: &Hop,
        opts: &RelayOptions,
        config: &LiveConfig,
        keys: &RelayKeys<'_>,
        peer: &Peer,
        size: usize,
    ) -> Option<Outgoing> {
        let natural = Hop {
            // What the message named stays checked on the way over UDP.
            guarded: hop.guarded,
            // A name the hosts table gives for TCP alone has no UDP to fall back on.
            ..Hop::for_uri(&hop.uri, 0).ok()?.by_hosts(&config.hosts)
        };
        if natural.transport != Transport::Udp || hop.transport != Transport::Tcp || size == 0 {
            return None;
        }
        let udp = listener(config, Transport::Udp)?;
        let mut msg = out.clone();
        let via = config.via.clone().unwrap_or_else(|| udp.to_string());
        routing::set_via_sent_by(&mut msg, Transport::Udp.token(), &via);
        let inbound = Self::rr_entry(config, keys, peer.transport, peer.local, false);
        let udp_entry = Self::rr_entry(config, keys, Transport::Udp, udp, false);
        let entries = if udp_entry == inbound {
            vec![inbound]
        } else {
            vec![inbound, udp_entry]
        };
        if routing::replace_record_route(&mut msg, &opts.record_route_as, &entries).is_err() {
            return None;
        }
        // Its Route-Security entry named the link it meant to send on (its
        // TCP sent-by): it names the UDP link now, as its Via does, which
        // is what the response's entry is checked against on the way back.
        if opts.path.link_level.is_some() && opts.via.as_deref() != Some(via.as_str()) {
            route_security::replace_top(
                &mut msg,
                &route_security::RouteEntry::new(via, 0),
                opts.path.route_security_form,
            );
        }
        Some(Outgoing::new(msg, Dest::Locate(natural)))
    }
}
