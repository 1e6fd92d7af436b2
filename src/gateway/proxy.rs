//! The reverse proxy's pieces: the seam a byte stream to a destination's
//! service comes from ([`Dialer`]), and the data conversion (links and
//! `Location` rewritten to the gateway's path for the access).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use super::destinations::Destination;
use super::rewrite::Rewrite;
use crate::context::Context;
use crate::datachannel::call::{CallError, CallSpec, Dialogs, call};
use crate::envelope::Recipient;
use crate::keys::{Cert, Identity};
use crate::net::flow::{Flow, FlowError};
use crate::sealing::SealSpec;
use crate::session::Limits;
use crate::state::{MemoryStore, SessionStore};

/// A byte stream to a destination's HTTP service.
pub trait Channel: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Channel for T {}

/// Ends the call behind a channel (the real one sends BYE): called once,
/// when the access ends (logout, `--idle`, the session's end); what it
/// gives is run to its end before the channel is closed.
pub type Hangup = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What a dial gives: the stream and how to end it.
pub struct Dialed {
    /// The byte stream to the service.
    pub channel: Box<dyn Channel>,
    /// Called once when the access ends.
    pub hangup: Hangup,
}

/// Why no channel was set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// The call was refused with a SIP final response.
    #[error("the call was refused: {status} {reason}")]
    Refused {
        /// The SIP status code.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// Nothing could be reached (no route, no answer, a channel that did
    /// not come up).
    #[error("{0}")]
    Unreachable(String),
}

impl From<crate::registrar::certcache::QueryError> for DialError {
    fn from(e: crate::registrar::certcache::QueryError) -> DialError {
        match e {
            crate::registrar::certcache::QueryError::Refused { status, reason } => {
                DialError::Refused { status, reason }
            }
            crate::registrar::certcache::QueryError::Unreachable(why) => {
                DialError::Unreachable(why)
            }
        }
    }
}

impl DialError {
    /// The SIP status the metrics count it under (408 for an unreachable
    /// destination, as a transaction timeout is).
    pub fn status(&self) -> u16 {
        match self {
            DialError::Refused { status, .. } => *status,
            DialError::Unreachable(_) => 408,
        }
    }
}

/// A dial in progress.
pub type Dialing<'a> = Pin<Box<dyn Future<Output = Result<Dialed, DialError>> + Send + 'a>>;

/// The seam the call plugs into: for one access, `user` calls
/// `destination` and gets a byte stream to its HTTP service.
pub trait Dialer: Send + Sync {
    /// Set up the channel for one access.
    fn dial<'a>(&'a self, user: &'a str, destination: &'a Destination) -> Dialing<'a>;

    /// The session keys of calls it holds now (`/metrics`): one per call
    /// up or being set up, none once a call has ended.
    fn keys_held(&self) -> usize {
        0
    }
}

/// The dialer of a gateway without `--outbound`: every access is refused 501.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCall;

impl Dialer for NoCall {
    fn dial<'a>(&'a self, _user: &'a str, _destination: &'a Destination) -> Dialing<'a> {
        Box::pin(async {
            Err(DialError::Refused {
                status: 501,
                reason: "Not Implemented (the gateway has no --outbound to call through)".into(),
            })
        })
    }
}

/// The real dialer (docs/SPEC.md §7.2, "the gateway's call"): per
/// access, a pseudo user agent calls the destination as the logged-in
/// user (their RSA identity in `callers/USER/`, whose SAN URI must be
/// the user's AOR `sip:USER@REALM`), over one mutual-TLS outbound flow
/// from the gateway to its relay (shared by all accesses, reopened when
/// it drops), with the offer sealed for the destination (its `cert:` in
/// the table, else what `cert_query` gets from the registrar) and the
/// relays in `disclose`. The channel's address must be
/// inside `channel_allow`. The hang-up sends the BYE.
pub struct SipDialer {
    /// The flow to the gateway's relay.
    pub outbound: Arc<Outbound>,
    /// DIR/USER/{cert.pem,key.pem}: who each user calls as.
    pub callers: PathBuf,
    /// The realm the users log in to: a caller's certificate must name
    /// `sip:USER@REALM`.
    pub realm: String,
    /// Where a destination's relative `cert:` path is taken from (the
    /// table's directory).
    pub certs_base: PathBuf,
    /// The relays every offer is disclosed to.
    pub disclose: Vec<Cert>,
    /// Trust anchors of the terminals' signatures.
    pub trust: Vec<Cert>,
    /// Where an answer may send the gateway to connect.
    pub channel_allow: Vec<ipnet::IpNet>,
    /// How long the answer may take.
    pub answer_timeout: Duration,
    /// How long the channel's connection and handshake may take.
    pub connect_timeout: Duration,
    /// Session keys of the calls (the callers' AORs as owners): each
    /// removed when its call ends or fails, so it holds the calls up.
    pub store: Arc<MemoryStore>,
    /// Where a destination without `cert:` gets its certificate
    /// (`--cert-query`); `None`: such a destination is refused 404.
    pub cert_query: Option<Arc<super::certquery::CertQuery>>,
    /// Callers' identities as loaded (off the async threads), by user.
    callers_loaded: std::sync::Mutex<HashMap<String, (Instant, Arc<Identity>)>>,
}

/// How long a caller's identity, once loaded, is used before it is read
/// from `--callers` again (a certificate replaced there is used from then).
pub const CALLER_CACHE: Duration = Duration::from_secs(60);

impl std::fmt::Debug for SipDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SipDialer(via {})", self.outbound.target.addr)
    }
}

/// The one mutual-TLS flow from the gateway to its relay, shared by
/// every access: opened at the first use and again after it closed. One
/// connect at a time, run as a task of its own: whoever needs the flow
/// meanwhile waits for that connect's result (single flight), and no lock
/// is held across it, so a relay that is slow to answer costs each
/// waiting access one connect timeout at most, not one per access ahead.
pub struct Outbound {
    /// Where the flow goes (`tls:HOST:PORT`).
    pub target: crate::net::Target,
    /// The gateway's TLS client side (its identity, the trust anchors).
    pub tls: Arc<crate::net::tls::TlsSetup>,
    /// How the flow behaves.
    pub limits: crate::net::flow::FlowLimits,
    /// The calls up on the flow (what a terminal's BYE is matched to).
    pub dialogs: Dialogs,
    state: std::sync::Mutex<FlowState>,
}

/// A connect's outcome, as everyone waiting for it sees it.
type Connecting = tokio::sync::watch::Receiver<Option<Result<Arc<Flow>, DialError>>>;

enum FlowState {
    None,
    Connecting(Connecting),
    Open(Arc<Flow>, Arc<AtomicBool>),
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Outbound({})", self.target.addr)
    }
}

impl Outbound {
    /// The flow to `target`, not opened yet.
    pub fn new(
        target: crate::net::Target,
        tls: Arc<crate::net::tls::TlsSetup>,
        limits: crate::net::flow::FlowLimits,
    ) -> Outbound {
        Outbound {
            target,
            tls,
            limits,
            dialogs: Dialogs::default(),
            state: std::sync::Mutex::new(FlowState::None),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FlowState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The flow, opened (again) when there is none or it closed.
    pub async fn flow(self: &Arc<Self>) -> Result<Arc<Flow>, DialError> {
        let mut waiting = {
            let mut st = self.state();
            match &*st {
                FlowState::Open(f, closed) if !closed.load(Ordering::Relaxed) => {
                    return Ok(Arc::clone(f));
                }
                // A connect in progress (its task still there to answer).
                FlowState::Connecting(rx) if rx.has_changed().is_ok() => rx.clone(),
                _ => {
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    *st = FlowState::Connecting(rx.clone());
                    let me = Arc::clone(self);
                    tokio::spawn(async move {
                        let opened = me.connect().await;
                        *me.state() = match &opened {
                            Ok((f, closed)) => FlowState::Open(Arc::clone(f), Arc::clone(closed)),
                            Err(_) => FlowState::None,
                        };
                        let _ = tx.send(Some(opened.map(|(f, _)| f)));
                    });
                    rx
                }
            }
        };
        match waiting.wait_for(Option::is_some).await {
            Ok(got) => got.clone().unwrap_or_else(|| {
                Err(DialError::Unreachable(
                    "the gateway's relay: no flow".into(),
                ))
            }),
            Err(_) => Err(DialError::Unreachable(
                "the gateway's relay: the connect was abandoned".into(),
            )),
        }
    }

    /// Open the flow and answer what the relay sends down it.
    async fn connect(&self) -> Result<(Arc<Flow>, Arc<AtomicBool>), DialError> {
        let (flow, incoming) = Flow::connect(&self.target, Some(&self.tls), self.limits)
            .await
            .map_err(|e| DialError::Unreachable(format!("the gateway's relay: {e}")))?;
        let flow = Arc::new(flow);
        tracing::info!(event = "flow opened", to = %self.target.addr, local = %flow.local());
        // Requests the relay sends down the flow: a terminal's BYE in a
        // call (its channel idled out, its service closed) is answered
        // 200 and ends that call (the access notices its channel closed),
        // one of no call 481; OPTIONS 200; anything else 405 (the
        // caller's side, `datachannel::call::Dialogs`). The task ends
        // with the flow.
        let answering = Arc::downgrade(&flow);
        let closed = Arc::new(AtomicBool::new(false));
        let closing = Arc::clone(&closed);
        let dialogs = self.dialogs.clone();
        tokio::spawn(async move {
            dialogs.serve(answering, incoming).await;
            closing.store(true, Ordering::Relaxed);
            tracing::info!(event = "flow closed");
        });
        Ok((flow, closed))
    }

    /// Whether `flow` is the flow open now (not closed, not replaced).
    pub fn is_open(&self, flow: &Arc<Flow>) -> bool {
        matches!(&*self.state(), FlowState::Open(f, closed)
            if Arc::ptr_eq(f, flow) && !closed.load(Ordering::Relaxed))
    }

    /// Stop handing out `flow` (it closed).
    pub fn forget(&self, flow: &Arc<Flow>) {
        let mut st = self.state();
        if matches!(&*st, FlowState::Open(f, _) if Arc::ptr_eq(f, flow)) {
            *st = FlowState::None;
        }
    }
}

/// What a user of the gateway may be called in a path: a letter or digit
/// first, then letters, digits, `.`, `_`, `-`.
fn is_plain_name(user: &str) -> bool {
    let mut chars = user.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && user.len() <= 64
}

impl SipDialer {
    /// A dialer; the flow opens at the first access.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        outbound: crate::net::Target,
        tls: Arc<crate::net::tls::TlsSetup>,
        callers: PathBuf,
        realm: String,
        certs_base: PathBuf,
        disclose: Vec<Cert>,
        trust: Vec<Cert>,
        channel_allow: Vec<ipnet::IpNet>,
    ) -> SipDialer {
        SipDialer {
            outbound: Arc::new(Outbound::new(
                outbound,
                tls,
                crate::net::flow::FlowLimits::default(),
            )),
            callers,
            realm,
            certs_base,
            disclose,
            trust,
            channel_allow,
            answer_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            store: Arc::new(MemoryStore::new()),
            cert_query: None,
            callers_loaded: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Who `user` calls as: their identity, its certificate naming their
    /// AOR; read from `--callers` off the async threads, then kept for
    /// [`CALLER_CACHE`].
    async fn caller(&self, user: &str) -> Result<Arc<Identity>, DialError> {
        let refuse = |why: String| DialError::Refused {
            status: 403,
            reason: format!("Forbidden ({why})"),
        };
        if !is_plain_name(user) {
            return Err(refuse(format!("{user:?} cannot be a caller's name")));
        }
        let cached = self
            .callers_loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .filter(|(at, _)| at.elapsed() < CALLER_CACHE)
            .map(|(_, id)| Arc::clone(id));
        if let Some(id) = cached {
            return Ok(id);
        }
        let dir = self.callers.join(user);
        let callers = self.callers.clone();
        let aor = format!("sip:{user}@{}", self.realm).to_ascii_lowercase();
        let who = user.to_owned();
        let loaded = tokio::task::spawn_blocking(move || {
            let identity = Identity::load_dir(&dir).map_err(|e| {
                format!("no caller identity for {who} in {}: {e}", callers.display())
            })?;
            match identity.cert.uri() {
                Some(u) if u.to_ascii_lowercase() == aor => Ok(Arc::new(identity)),
                other => Err(format!(
                    "the caller certificate in {} names {}, not {aor}",
                    dir.display(),
                    other.as_deref().unwrap_or("no SIP URI")
                )),
            }
        })
        .await
        .map_err(|e| refuse(format!("loading the caller identity: {e}")))?
        .map_err(refuse)?;
        let mut cache = self
            .callers_loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Only users with an identity get here, and each has one entry.
        cache.retain(|_, (at, _)| at.elapsed() < CALLER_CACHE);
        cache.insert(user.to_owned(), (Instant::now(), Arc::clone(&loaded)));
        Ok(loaded)
    }

    /// The destination's certificate (its `cert:`, relative to the
    /// table), read off the async threads.
    /// Else the one the registrar vouches for (`cert_query`, asked as
    /// `asker`).
    async fn peer_cert(
        &self,
        destination: &Destination,
        asker: &Arc<Identity>,
    ) -> Result<Cert, DialError> {
        let Some(path) = destination.cert.as_deref() else {
            if let Some(q) = &self.cert_query {
                return Ok(q.cert_for(&destination.uri, Arc::clone(asker)).await?);
            }
            return Err(DialError::Refused {
                status: 404,
                reason: format!(
                    "Not Found (no cert: for {} in the destinations table)",
                    destination.uri
                ),
            });
        };
        let path = self.certs_base.join(path);
        tokio::task::spawn_blocking(move || {
            Cert::load(&path).map_err(|e| {
                // The path stays in the log: the browser is told no more
                // than that it cannot be read.
                tracing::warn!(event = "destination cert", path = %path.display(), error = %e);
                DialError::Refused {
                    status: 500,
                    reason: "Server Internal Error (the destination's certificate cannot be read: see the gateway's log)".into(),
                }
            })
        })
        .await
        .map_err(|e| DialError::Unreachable(e.to_string()))?
    }

    async fn dial_as(&self, user: &str, destination: &Destination) -> Result<Dialed, DialError> {
        let identity = self.caller(user).await?;
        let peer = self.peer_cert(destination, &identity).await?;
        let mut flow = self.outbound.flow().await?;
        let mut spec = CallSpec {
            identity,
            to: destination.uri.clone(),
            seal: SealSpec {
                peers: vec![Recipient::Cert(Box::new(peer))],
                disclose: self
                    .disclose
                    .iter()
                    .map(|c| Recipient::Cert(Box::new(c.clone())))
                    .collect(),
                ..Default::default()
            },
            trust: self.trust.clone(),
            // A relay the offer is disclosed to holds the session key the
            // answer is sealed under: then only the destination's
            // signature keeps it from rewriting the channel's address and
            // fingerprint (docs/SPEC.md §7.2). Without one, only the two
            // ends hold the key.
            require_signed_answer: !self.disclose.is_empty(),
            channel_ip: flow.local().ip(),
            channel_allow: self.channel_allow.clone(),
            answer_timeout: self.answer_timeout,
            connect_timeout: self.connect_timeout,
            dialogs: self.outbound.dialogs.clone(),
        };
        let mut ctx = Context::new(None, None);
        let limits = Limits::default();
        let mut attempt = call(&flow, &spec, &*self.store, limits, &mut ctx).await;
        // The flow closed under the INVITE (the relay's idle timeout, a
        // restart): once more on a new one.
        if matches!(attempt, Err(CallError::Flow(FlowError::Closed))) {
            self.outbound.forget(&flow);
            flow = self.outbound.flow().await?;
            spec.channel_ip = flow.local().ip();
            attempt = call(&flow, &spec, &*self.store, limits, &mut ctx).await;
        }
        let up = attempt.map_err(|e| match e {
            CallError::Refused {
                code,
                reason,
                warning,
            } => DialError::Refused {
                status: code,
                reason: match warning {
                    Some(w) => format!("{reason} ({w})"),
                    None => reason,
                },
            },
            // An answer that came but cannot be used: the gateway's own
            // 502, not a timeout (408 is for nothing answering).
            e @ (CallError::Unsealed
            | CallError::UnsignedAnswer
            | CallError::Sdp(_)
            | CallError::Ua(_)) => DialError::Refused {
                status: 502,
                reason: format!("Bad Gateway ({e})"),
            },
            // What the gateway could not do itself (its caller's key,
            // the request): 500.
            e @ (CallError::NoAor | CallError::Key(_) | CallError::Compose(_)) => {
                DialError::Refused {
                    status: 500,
                    reason: format!("Server Internal Error ({e})"),
                }
            }
            other => DialError::Unreachable(other.to_string()),
        })?;
        tracing::info!(event = "called", user = %user, to = %destination.uri, call_id = %up.call_id, channel = %up.answer.addr);
        let store = Arc::clone(&self.store);
        let outbound = Arc::clone(&self.outbound);
        let bye = up.bye;
        let call_id = up.call_id;
        Ok(Dialed {
            channel: Box::new(up.channel),
            hangup: Box::new(move || {
                Box::pin(async move {
                    let (me, _) = bye.call();
                    let me = me.to_owned();
                    let mut ctx = Context::new(None, None);
                    let wait = Duration::from_secs(5);
                    // The flow the call was set up on may have closed
                    // (the relay's idle timeout, a restart): the dialog's
                    // route set, not that connection, says where the BYE
                    // goes, so it goes out on the flow open now (opened
                    // again if need be). A write to a flow whose peer has
                    // just gone may still be taken: then it fails as
                    // closed, and goes out on the new flow too.
                    let mut on = "call's flow";
                    let mut code = Err(CallError::Flow(FlowError::Closed));
                    if outbound.is_open(bye.flow()) {
                        code = bye.clone().send(&*store, limits, wait, &mut ctx).await;
                    }
                    if matches!(code, Err(CallError::Flow(FlowError::Closed))) {
                        on = "reopened flow";
                        code = match outbound.flow().await {
                            Ok(flow) => bye.on(flow).send(&*store, limits, wait, &mut ctx).await,
                            Err(e) => Err(CallError::Flow(FlowError::Connect {
                                transport: "tls",
                                addr: outbound.target.addr,
                                why: e.to_string(),
                            })),
                        };
                    }
                    // The call is over whatever the answer: so is its key.
                    let _ = store.forget(&me, &call_id);
                    match code {
                        Ok(code) => {
                            tracing::info!(event = "bye", call_id = %call_id, status = code, on)
                        }
                        Err(e) => tracing::info!(event = "bye", call_id = %call_id, error = %e, on),
                    }
                })
            }),
        })
    }
}

impl Dialer for SipDialer {
    fn dial<'a>(&'a self, user: &'a str, destination: &'a Destination) -> Dialing<'a> {
        Box::pin(self.dial_as(user, destination))
    }

    fn keys_held(&self) -> usize {
        self.store
            .all()
            .map(|all| all.iter().map(|(_, s)| s.sessions.len()).sum())
            .unwrap_or(0)
    }
}

/// The elements and attributes whose URLs are rewritten.
pub const URL_ATTRIBUTES: &[(&str, &str)] = &[
    ("a[href]", "href"),
    ("area[href]", "href"),
    ("link[href]", "href"),
    ("img[src]", "src"),
    ("script[src]", "src"),
    ("iframe[src]", "src"),
    ("source[src]", "src"),
    ("video[src]", "src"),
    ("audio[src]", "src"),
    ("form[action]", "action"),
    ("button[formaction]", "formaction"),
];

/// The most the HTML rewriter buffers at once.
pub const MAX_REWRITE_MEMORY: usize = 1 << 20;

/// A streaming rewriter of HTML for `rw`: each chunk in, the rewritten
/// bytes out to `sink`.
pub fn html_rewriter<'h, F: FnMut(&[u8]) + Send + 'h>(
    rw: &Rewrite,
    sink: F,
) -> lol_html::send::HtmlRewriter<'h, F> {
    use lol_html::{element, send::Settings, text};
    let mut handlers = Vec::new();
    for (selector, attr) in URL_ATTRIBUTES {
        let rw = rw.clone();
        handlers.push(element!(*selector, move |el| {
            if let Some(new) = el.get_attribute(attr).and_then(|v| rw.url(&v)) {
                el.set_attribute(attr, &new)?;
            }
            Ok(())
        }));
    }
    // Inline CSS, image candidates and a meta refresh carry URLs too.
    let css = rw.clone();
    handlers.push(element!("[style]", move |el| {
        if let Some(new) = el.get_attribute("style").and_then(|v| css.css(&v)) {
            el.set_attribute("style", &new)?;
        }
        Ok(())
    }));
    for selector in ["img[srcset]", "source[srcset]"] {
        let rw = rw.clone();
        handlers.push(element!(selector, move |el| {
            if let Some(new) = el.get_attribute("srcset").and_then(|v| rw.srcset(&v)) {
                el.set_attribute("srcset", &new)?;
            }
            Ok(())
        }));
    }
    let refresh = rw.clone();
    handlers.push(element!("meta[http-equiv][content]", move |el| {
        let is_refresh = el
            .get_attribute("http-equiv")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("refresh"));
        if is_refresh
            && let Some(new) = el
                .get_attribute("content")
                .and_then(|v| refresh.refresh(&v))
        {
            el.set_attribute("content", &new)?;
        }
        Ok(())
    }));
    // A <style> element's text comes in chunks: gathered (up to the
    // rewriter's memory bound), rewritten whole at its last chunk.
    let style = rw.clone();
    let mut text = String::new();
    handlers.push(text!("style", move |chunk| {
        text.push_str(chunk.as_str());
        if text.len() > MAX_REWRITE_MEMORY {
            return Err("a <style> element larger than the rewriter's memory".into());
        }
        if chunk.last_in_text_node() {
            let whole = std::mem::take(&mut text);
            let new = style.css(&whole).unwrap_or(whole);
            // Raw text: written as it is, not escaped.
            chunk.replace(&new, lol_html::html_content::ContentType::Html);
        } else {
            chunk.remove();
        }
        Ok(())
    }));
    lol_html::send::HtmlRewriter::new(
        Settings {
            element_content_handlers: handlers,
            // What the parser may buffer of one construct (a tag split
            // across chunks): a page whose tag is larger is cut off.
            memory_settings: lol_html::MemorySettings {
                max_allowed_memory_usage: MAX_REWRITE_MEMORY,
                ..lol_html::MemorySettings::default()
            },
            ..Settings::new_send()
        },
        sink,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw() -> Rewrite {
        Rewrite {
            prefix: "/s/abc".into(),
            origin: Some("http://127.0.0.1:8080".into()),
        }
    }

    #[test]
    fn html_links_are_rewritten_as_they_stream() {
        let mut out = Vec::new();
        {
            let mut w = html_rewriter(&rw(), |c: &[u8]| out.extend_from_slice(c));
            for chunk in [
                &b"<a href=\"/x\">x</a><img sr"[..],
                b"c=\"http://127.0.0.1:8080/i.png\"><form action=\"/f\"></form>",
                b"<a href=\"https://other/\">o</a>",
            ] {
                w.write(chunk).unwrap();
            }
            w.end().unwrap();
        }
        let html = String::from_utf8(out).unwrap();
        assert!(html.contains("href=\"/s/abc/x\""), "{html}");
        assert!(html.contains("src=\"/s/abc/i.png\""), "{html}");
        assert!(html.contains("action=\"/s/abc/f\""), "{html}");
        assert!(html.contains("href=\"https://other/\""), "{html}");
    }

    /// Runs `chunks` through the rewriter of [`rw`].
    fn rewritten(chunks: &[&str]) -> String {
        let mut out = Vec::new();
        {
            let mut w = html_rewriter(&rw(), |c: &[u8]| out.extend_from_slice(c));
            for c in chunks {
                w.write(c.as_bytes()).unwrap();
            }
            w.end().unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn css_srcset_and_refresh_in_html_are_rewritten() {
        let html = rewritten(&[
            "<meta http-equiv=\"Refresh\" content=\"0;url=/next\">",
            "<div style=\"background:url('/bg.png')\"></div>",
            "<img srcset=\"/a.png 1x, http://127.0.0.1:8080/b.png 2x\">",
            "<picture><source srcset=\"/c.webp\"></picture>",
            "<style>p{background:url(/p",
            ".png)} q{background:url(\"//127.0.0.1:8080/q.png\")}</style>",
            "<meta name=\"description\" content=\"0;url=/not-a-refresh\">",
        ]);
        assert!(html.contains("content=\"0;url=/s/abc/next\""), "{html}");
        assert!(
            html.contains("style=\"background:url('/s/abc/bg.png')\""),
            "{html}"
        );
        assert!(
            html.contains("srcset=\"/s/abc/a.png 1x, /s/abc/b.png 2x\""),
            "{html}"
        );
        assert!(html.contains("srcset=\"/s/abc/c.webp\""), "{html}");
        assert!(
            html.contains(
                "<style>p{background:url(/s/abc/p.png)} q{background:url(\"/s/abc/q.png\")}</style>"
            ),
            "{html}"
        );
        assert!(html.contains("content=\"0;url=/not-a-refresh\""), "{html}");
    }

    /// Accesses waiting for the flow while the relay takes the TCP
    /// connection and never answers the TLS handshake: one connect for
    /// all of them (single flight), each given up after one connect
    /// timeout; before, each waited in turn behind the lock held across
    /// the previous one's connect (N accesses: N timeouts).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_for_a_stalled_flow_share_one_connect() {
        use std::sync::atomic::AtomicUsize;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counting = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                counting.fetch_add(1, Ordering::Relaxed);
                held.push(tcp);
            }
        });
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let identity = Identity::load_dir(&repo.join("keys/proxy-a")).unwrap();
        let trust = Cert::load_all(&repo.join("keys/trust.pem")).unwrap();
        let tls = crate::net::tls::TlsSetup::new(Some(&identity), &trust).unwrap();
        let outbound = Arc::new(Outbound::new(
            crate::net::Target {
                transport: crate::net::Transport::Tls,
                addr,
                name: "proxy-a.a.example.com".into(),
            },
            Arc::new(tls),
            crate::net::flow::FlowLimits {
                connect_timeout: Duration::from_secs(1),
                ..Default::default()
            },
        ));
        let started = Instant::now();
        let waiting: Vec<_> = (0..5)
            .map(|_| {
                let o = Arc::clone(&outbound);
                tokio::spawn(async move { o.flow().await })
            })
            .collect();
        for w in waiting {
            assert!(w.await.unwrap().is_err());
        }
        let took = started.elapsed();
        assert!(took < Duration::from_millis(2500), "{took:?} for 5 waiting");
        assert_eq!(accepted.load(Ordering::Relaxed), 1);
        // The next access tries again (a failed connect is not kept).
        assert!(outbound.flow().await.is_err());
        assert_eq!(accepted.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_tag_larger_than_the_rewriters_memory_is_an_error_not_a_buffer() {
        let mut w = html_rewriter(&rw(), |_: &[u8]| {});
        let mut failed = false;
        let chunk = vec![b'a'; 64 * 1024];
        w.write(b"<a href=\"").unwrap();
        for _ in 0..(2 * MAX_REWRITE_MEMORY / chunk.len()) {
            if w.write(&chunk).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
    }
}
