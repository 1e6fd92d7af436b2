//! The reverse proxy's pieces: the seam a byte stream to a destination's
//! service comes from ([`Dialer`]), and the data conversion (links and
//! `Location` rewritten to the gateway's path for the access).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

use crate::state::MemoryStore;

/// A byte stream to a destination's HTTP service.
pub trait Channel: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Channel for T {}

/// Ends the call behind a channel (the real one sends BYE). Called once,
/// when the access ends: logout, `--idle`, the session's end.
pub type Hangup = Box<dyn FnOnce() + Send>;

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
    /// Where the flow goes (`tls:HOST:PORT`).
    pub outbound: crate::net::Target,
    /// The gateway's TLS client side (its identity, the trust anchors).
    pub tls: Arc<crate::net::tls::TlsSetup>,
    /// How the flow behaves.
    pub flow_limits: crate::net::flow::FlowLimits,
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
    /// Session keys of the calls (the callers' AORs as owners).
    pub store: Arc<MemoryStore>,
    /// The calls up on the flow (what a terminal's BYE is matched to).
    pub dialogs: Dialogs,
    /// Where a destination without `cert:` gets its certificate
    /// (`--cert-query`); `None`: such a destination is refused 404.
    pub cert_query: Option<Arc<super::certquery::CertQuery>>,
    flow: tokio::sync::Mutex<Option<(Arc<Flow>, Arc<AtomicBool>)>>,
}

impl std::fmt::Debug for SipDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SipDialer(via {})", self.outbound.addr)
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
            outbound,
            tls,
            flow_limits: crate::net::flow::FlowLimits::default(),
            callers,
            realm,
            certs_base,
            disclose,
            trust,
            channel_allow,
            answer_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            store: Arc::new(MemoryStore::new()),
            dialogs: Dialogs::default(),
            cert_query: None,
            flow: tokio::sync::Mutex::new(None),
        }
    }

    /// The shared flow, opened (again) when there is none or it closed.
    pub async fn flow(&self) -> Result<Arc<Flow>, DialError> {
        let mut held = self.flow.lock().await;
        if let Some((f, _)) = held
            .as_ref()
            .filter(|(_, closed)| !closed.load(Ordering::Relaxed))
        {
            return Ok(Arc::clone(f));
        }
        let (flow, incoming) = Flow::connect(&self.outbound, Some(&self.tls), self.flow_limits)
            .await
            .map_err(|e| DialError::Unreachable(format!("the gateway's relay: {e}")))?;
        let flow = Arc::new(flow);
        tracing::info!(event = "flow opened", to = %self.outbound.addr, local = %flow.local());
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
        *held = Some((Arc::clone(&flow), closed));
        Ok(flow)
    }

    /// Stop handing out `flow` (it closed).
    async fn forget(&self, flow: &Arc<Flow>) {
        let mut held = self.flow.lock().await;
        if held.as_ref().is_some_and(|(f, _)| Arc::ptr_eq(f, flow)) {
            *held = None;
        }
    }

    /// Who `user` calls as: their identity, its certificate naming their AOR.
    fn caller(&self, user: &str) -> Result<Arc<Identity>, DialError> {
        let refuse = |why: String| DialError::Refused {
            status: 403,
            reason: format!("Forbidden ({why})"),
        };
        if !is_plain_name(user) {
            return Err(refuse(format!("{user:?} cannot be a caller's name")));
        }
        let dir = self.callers.join(user);
        let identity = Identity::load_dir(&dir).map_err(|e| {
            refuse(format!(
                "no caller identity for {user} in {}: {e}",
                self.callers.display()
            ))
        })?;
        let aor = format!("sip:{user}@{}", self.realm).to_ascii_lowercase();
        match identity.cert.uri() {
            Some(u) if u.to_ascii_lowercase() == aor => Ok(Arc::new(identity)),
            other => Err(refuse(format!(
                "the caller certificate in {} names {}, not {aor}",
                dir.display(),
                other.as_deref().unwrap_or("no SIP URI")
            ))),
        }
    }

    /// The destination's certificate: its `cert:` (relative to the
    /// table), else the one the registrar vouches for (`cert_query`,
    /// asked as `asker`).
    async fn peer_cert(
        &self,
        destination: &Destination,
        asker: &Arc<Identity>,
    ) -> Result<Cert, DialError> {
        let Some(path) = destination.cert.as_deref() else {
            if let Some(q) = &self.cert_query {
                return q.cert_for(&destination.uri, Arc::clone(asker)).await;
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
        Cert::load(&path).map_err(|e| DialError::Unreachable(format!("{}: {e}", path.display())))
    }

    async fn dial_as(&self, user: &str, destination: &Destination) -> Result<Dialed, DialError> {
        let identity = self.caller(user)?;
        let peer = self.peer_cert(destination, &identity).await?;
        let mut flow = self.flow().await?;
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
            dialogs: self.dialogs.clone(),
        };
        let mut ctx = Context::new(None, None);
        let limits = Limits::default();
        let mut attempt = call(&flow, &spec, &*self.store, limits, &mut ctx).await;
        // The flow closed under the INVITE (the relay's idle timeout, a
        // restart): once more on a new one.
        if matches!(attempt, Err(CallError::Flow(FlowError::Closed))) {
            self.forget(&flow).await;
            flow = self.flow().await?;
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
            other => DialError::Unreachable(other.to_string()),
        })?;
        tracing::info!(event = "called", user = %user, to = %destination.uri, call_id = %up.call_id, channel = %up.answer.addr);
        let store = Arc::clone(&self.store);
        let bye = up.bye;
        let call_id = up.call_id;
        let handle = tokio::runtime::Handle::current();
        Ok(Dialed {
            channel: Box::new(up.channel),
            hangup: Box::new(move || {
                handle.spawn(async move {
                    let mut ctx = Context::new(None, None);
                    let code = bye
                        .send(&*store, limits, Duration::from_secs(5), &mut ctx)
                        .await;
                    match code {
                        Ok(code) => {
                            tracing::info!(event = "bye", call_id = %call_id, status = code)
                        }
                        Err(e) => tracing::info!(event = "bye", call_id = %call_id, error = %e),
                    }
                });
            }),
        })
    }
}

impl Dialer for SipDialer {
    fn dial<'a>(&'a self, user: &'a str, destination: &'a Destination) -> Dialing<'a> {
        Box::pin(self.dial_as(user, destination))
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
    use lol_html::{element, send::Settings};
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
