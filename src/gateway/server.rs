//! The HTTPS server and the reverse proxy on hyper (the `live` feature).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::sync::mpsc;

use super::rewrite::Rewrite;
use super::{auth, destinations, html, proxy};
use crate::registrar::users::Users;
use auth::{Limiter, Sessions};
use destinations::{Destination, Destinations};
use proxy::{Dialer, Hangup};

/// The error type of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response (and of requests to a service).
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// The session cookie's name (`__Host-`: Secure, Path=/, no Domain).
pub const COOKIE: &str = "__Host-sipseal";
/// Concurrent accesses one session may hold.
pub const MAX_ACCESSES_PER_SESSION: usize = 8;
/// The longest a login or portal form may be.
const MAX_FORM: usize = 8 * 1024;
/// The longest a login or portal form's body may take to come.
const FORM_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a call may take to give a channel.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a service may take to start its response, or between two
/// pieces of a body.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// What the gateway is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The realm of the credential file the users log in with.
    pub realm: String,
    /// The header a trusted front end names the user's telephone number in.
    pub phone_header: Option<HeaderName>,
    /// The front ends whose phone header is believed.
    pub trusted_front: Vec<IpNet>,
    /// The addresses `/metrics` answers.
    pub metrics_allow: Vec<IpNet>,
    /// An access ends after this long without traffic.
    pub idle: Duration,
    /// The largest request or response body relayed.
    pub max_body: u64,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a write to a browser may make no progress before its
    /// connection is closed (a browser that stops reading must not hold
    /// its connection, and the access behind it, for ever).
    pub write_timeout: Duration,
    /// How long a TLS handshake, or a request's header, may take.
    pub header_timeout: Duration,
}

/// [`Config::write_timeout`] unless configured.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// [`Config::header_timeout`] unless configured.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the users log in with and may reach; replaced whole at a reload.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// The credential file (`registrar passwd`).
    pub users: Users,
    /// The per-user table.
    pub destinations: Destinations,
}

/// The counters of `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    logins_limited: AtomicU64,
    calls_set_up: AtomicU64,
    call_failures: Mutex<BTreeMap<u16, u64>>,
    requests_relayed: AtomicU64,
    bytes_to_service: AtomicU64,
    bytes_to_browser: AtomicU64,
}

impl Metrics {
    /// The Prometheus text exposition of the counters, and `accesses`,
    /// `sessions` and the calls' session `keys` held now.
    pub fn render(&self, accesses: usize, sessions: usize, keys: usize) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, lines: Vec<(String, u64)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (labels, v) in lines {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        counter(
            "sipseal_gateway_logins_total",
            "Logins by result.",
            vec![
                ("{result=\"ok\"}".into(), get(&self.logins_ok)),
                ("{result=\"failed\"}".into(), get(&self.logins_failed)),
                ("{result=\"limited\"}".into(), get(&self.logins_limited)),
            ],
        );
        counter(
            "sipseal_gateway_calls_set_up_total",
            "Calls that gave a channel.",
            vec![(String::new(), get(&self.calls_set_up))],
        );
        let failures = self
            .call_failures
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        counter(
            "sipseal_gateway_call_failures_total",
            "Calls that failed, by SIP status.",
            failures
                .into_iter()
                .map(|(s, n)| (format!("{{status=\"{s}\"}}"), n))
                .collect(),
        );
        counter(
            "sipseal_gateway_requests_relayed_total",
            "HTTP requests relayed to services.",
            vec![(String::new(), get(&self.requests_relayed))],
        );
        counter(
            "sipseal_gateway_bytes_relayed_total",
            "Body bytes relayed, by direction.",
            vec![
                (
                    "{direction=\"to_service\"}".into(),
                    get(&self.bytes_to_service),
                ),
                (
                    "{direction=\"to_browser\"}".into(),
                    get(&self.bytes_to_browser),
                ),
            ],
        );
        out.push_str(&format!(
            "# HELP sipseal_gateway_accesses Accesses open.\n# TYPE sipseal_gateway_accesses gauge\nsipseal_gateway_accesses {accesses}\n\
# HELP sipseal_gateway_sessions Sessions open.\n# TYPE sipseal_gateway_sessions gauge\nsipseal_gateway_sessions {sessions}\n\
# HELP sipseal_gateway_call_keys Session keys of calls held (calls up or being set up).\n# TYPE sipseal_gateway_call_keys gauge\nsipseal_gateway_call_keys {keys}\n"
        ));
        out
    }

    /// Count one relayed request and write its access-log line.
    fn log(&self, a: &Access, method: &Method, path: &str, status: u16, up: &AtomicU64, down: u64) {
        let up = up.load(Ordering::Relaxed);
        self.requests_relayed.fetch_add(1, Ordering::Relaxed);
        self.bytes_to_service.fetch_add(up, Ordering::Relaxed);
        self.bytes_to_browser.fetch_add(down, Ordering::Relaxed);
        tracing::info!(
            event = "access",
            user = %a.user,
            destination = %a.destination.uri,
            method = %method,
            path,
            status,
            bytes_in = up,
            bytes_out = down
        );
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Body>;

/// One access: a user's channel to one destination's service.
struct Access {
    session: String,
    user: String,
    destination: Destination,
    rewrite: Rewrite,
    authority: String,
    /// The channel's HTTP connection (taken at the access's end, so that
    /// the channel stays open until the BYE is answered).
    sender: tokio::sync::Mutex<Option<Sender>>,
    last: Mutex<Instant>,
    hangup: Mutex<Option<Hangup>>,
    /// Set when the channel's HTTP connection has ended (the service, or
    /// the call, closed it).
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Access {
    fn touch(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = Instant::now();
        }
    }

    fn idle_since(&self) -> Instant {
        self.last
            .lock()
            .map(|l| *l)
            .unwrap_or_else(|_| Instant::now())
    }

    /// Hang the call up (once).
    fn end(&self, why: &str) {
        let hangup = self.hangup.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = hangup {
            tracing::info!(
                event = "access_end",
                user = %self.user,
                destination = %self.destination.uri,
                reason = why
            );
            // The BYE first, the channel's close after its answer: a
            // terminal that saw the channel close first would end the
            // call and answer the BYE 481. (A request still being
            // relayed holds the connection; it ends with that request.)
            let channel = self.sender.try_lock().ok().and_then(|mut s| s.take());
            tokio::spawn(async move {
                h().await;
                drop(channel);
            });
        }
    }
}

#[derive(Default)]
struct State {
    sessions: Sessions,
    limiter: Limiter,
    accesses: HashMap<String, Arc<Access>>,
    /// Calls being set up, by session token: they count against
    /// [`MAX_ACCESSES_PER_SESSION`] as the accesses they may become.
    dialing: HashMap<String, usize>,
}

/// A session's place for one access while its call is set up: taken
/// under the state's lock with the limit checked, given back when
/// dropped (the access is in the table by then, or the call failed).
struct Slot<'g> {
    gateway: &'g Gateway,
    token: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut st = self.gateway.state();
        if let Some(n) = st.dialing.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.dialing.remove(&self.token);
            }
        }
    }
}

/// The gateway: its configuration, the dialer, sessions and accesses.
pub struct Gateway {
    config: Config,
    tables: std::sync::RwLock<Arc<Tables>>,
    dialer: Arc<dyn Dialer>,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    secret: [u8; 32],
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .finish()
    }
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // same-origin, not no-referrer: under no-referrer Chromium sends
    // `Origin: null` with the gateway's own form POSTs, which the CSRF
    // check (same_origin) must refuse; other sites still get no Referer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn page(status: StatusCode, html: String) -> Response<Body> {
    let mut r = full(status, "text/html; charset=utf-8", html);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; img-src https: 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    r
}

fn see_other(to: &str) -> Response<Body> {
    let mut r = full(StatusCode::SEE_OTHER, "text/plain", Bytes::new());
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn cookie_header(token: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Secure; HttpOnly; SameSite=Strict; Path=/"
    ))
    .ok()
}

/// The gateway's session token in a request's cookies.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (n, v) = c.trim().split_once('=')?;
            (n == COOKIE).then(|| v.to_owned())
        })
}

/// A request's cookies without the gateway's own (what a service gets).
fn service_cookies(headers: &HeaderMap) -> Option<HeaderValue> {
    let kept: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split('=').next() != Some(COOKIE))
        .collect();
    (!kept.is_empty())
        .then(|| HeaderValue::from_str(&kept.join("; ")).ok())
        .flatten()
}

/// Whether a form POST comes from the gateway's own pages: its `Origin`
/// (which browsers send with every POST) names the host it was sent to;
/// without one, a `Sec-Fetch-Site` must not say another site.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        Some(origin) => host.is_some_and(|h| origin.eq_ignore_ascii_case(&format!("https://{h}"))),
        None => headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v == "same-origin" || v == "none"),
    }
}

/// A form body: [`MAX_FORM`] bytes at most, in [`FORM_TIMEOUT`] at most
/// (a body that trickles in must not hold a connection slot).
async fn form(body: Incoming) -> Option<HashMap<String, String>> {
    let bytes = tokio::time::timeout(FORM_TIMEOUT, Limited::new(body, MAX_FORM).collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    Some(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// The headers that belong to one connection (RFC 9110 §7.6.1), never
/// relayed.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(*n);
    }
}

/// A body fed by a task through a channel (a response relayed from a
/// service, rewritten or counted on the way).
struct Channelled(mpsc::Receiver<Result<Bytes, BoxError>>);

impl hyper::body::Body for Channelled {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

impl Gateway {
    /// A gateway over `config` whose accesses `dialer` sets up.
    pub fn new(
        config: Config,
        tables: Tables,
        dialer: Arc<dyn Dialer>,
    ) -> Result<Gateway, rand::rngs::SysError> {
        use rand::TryRng;
        let mut secret = [0u8; 32];
        rand::rngs::SysRng.try_fill_bytes(&mut secret)?;
        Ok(Gateway {
            config,
            tables: std::sync::RwLock::new(Arc::new(tables)),
            dialer,
            state: Mutex::new(State::default()),
            metrics: Arc::new(Metrics::default()),
            secret,
        })
    }

    /// Replace the users and destinations (SIGHUP): sessions and accesses
    /// stay; what a user sees and may open from now on is the new table's.
    pub fn reload(&self, tables: Tables) {
        *self.tables.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tables);
    }

    fn tables(&self) -> Arc<Tables> {
        Arc::clone(&self.tables.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// End what has expired: sessions past their time (and their
    /// accesses), accesses whose channel the service closed, accesses
    /// idle for `--idle`.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut ended = Vec::new();
        {
            let mut st = self.state();
            let gone = st.sessions.expire(now);
            let idle = self.config.idle;
            let why = |a: &Access| {
                if gone.contains(&a.session) {
                    Some("session ended")
                } else if a.closed.load(Ordering::Relaxed) {
                    Some("channel closed")
                } else if now.duration_since(a.idle_since()) >= idle {
                    Some("idle")
                } else {
                    None
                }
            };
            let ids: Vec<(String, &'static str)> = st
                .accesses
                .iter()
                .filter_map(|(id, a)| why(a).map(|w| (id.clone(), w)))
                .collect();
            for (id, why) in ids {
                if let Some(a) = st.accesses.remove(&id) {
                    ended.push((a, why));
                }
            }
        }
        for (a, why) in ended {
            a.end(why);
        }
    }

    /// A place for one more access of `token`'s session, when it holds
    /// (or is setting up) fewer than [`MAX_ACCESSES_PER_SESSION`].
    fn reserve(&self, token: &str) -> Option<Slot<'_>> {
        let mut st = self.state();
        let held = st.accesses.values().filter(|a| a.session == token).count()
            + st.dialing.get(token).copied().unwrap_or(0);
        if held >= MAX_ACCESSES_PER_SESSION {
            return None;
        }
        *st.dialing.entry(token.to_owned()).or_default() += 1;
        Some(Slot {
            gateway: self,
            token: token.to_owned(),
        })
    }

    fn end_accesses_of(&self, session: &str, why: &str) {
        let ended: Vec<Arc<Access>> = {
            let mut st = self.state();
            let ids: Vec<String> = st
                .accesses
                .iter()
                .filter(|(_, a)| a.session == session)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| st.accesses.remove(id)).collect()
        };
        for a in ended {
            a.end(why);
        }
    }

    /// Answer one request from `peer`.
    pub async fn handle(
        self: Arc<Self>,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let path = req.uri().path().to_owned();
        if let Some(rest) = path.strip_prefix("/s/") {
            let (id, _) = rest.split_once('/').unwrap_or((rest, ""));
            let id = id.to_owned();
            return self.relay(&id, req).await;
        }
        match (req.method(), path.as_str()) {
            (&Method::GET | &Method::HEAD, "/") => self.home(peer, &req),
            (&Method::POST, "/login") => self.login(peer, req).await,
            (&Method::POST, "/logout") => self.logout(req).await,
            (&Method::POST, "/open") => self.open(req).await,
            (&Method::GET, "/metrics") => self.metrics_page(peer),
            // A form's address typed, bookmarked or reloaded: the portal.
            (&Method::GET | &Method::HEAD, "/login" | "/logout" | "/open") => see_other("/"),
            (_, "/" | "/login" | "/logout" | "/open") => {
                let mut r = page(
                    StatusCode::METHOD_NOT_ALLOWED,
                    html::notice("Not allowed", "That method is not used here."),
                );
                let allow = if path == "/" {
                    "GET, HEAD"
                } else {
                    "GET, HEAD, POST"
                };
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                r
            }
            _ => page(
                StatusCode::NOT_FOUND,
                html::notice("Not found", "There is nothing here."),
            ),
        }
    }

    /// The browser's address: the peer's, or, from a trusted front end,
    /// the last address of the `X-Forwarded-For` it appended.
    fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let front = self
            .config
            .trusted_front
            .iter()
            .any(|n| n.contains(&peer.ip()));
        let forwarded = || {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()?
                .to_str()
                .ok()?
                .rsplit(',')
                .next()?
                .trim()
                .parse()
                .ok()
        };
        front.then(forwarded).flatten().unwrap_or(peer.ip())
    }

    fn session(&self, headers: &HeaderMap) -> Option<(String, auth::Session)> {
        let token = session_token(headers)?;
        let s = self.state().sessions.touch(&token, Instant::now())?;
        Some((token, s))
    }

    fn portal(
        &self,
        s: &auth::Session,
        status: StatusCode,
        message: Option<&str>,
    ) -> Response<Body> {
        let tables = self.tables();
        let d = &tables.destinations;
        page(
            status,
            html::portal(
                &s.user,
                d.of(&s.user),
                d.may_type(&s.user),
                &s.csrf,
                message,
            ),
        )
    }

    fn home(&self, peer: SocketAddr, req: &Request<Incoming>) -> Response<Body> {
        if let Some((_, s)) = self.session(req.headers()) {
            return self.portal(&s, StatusCode::OK, None);
        }
        // A telephone number from a trusted front end logs the user in.
        if let Some(name) = &self.config.phone_header
            && let Some(phone) = req.headers().get(name).and_then(|v| v.to_str().ok())
        {
            if !self
                .config
                .trusted_front
                .iter()
                .any(|n| n.contains(&peer.ip()))
            {
                tracing::warn!(event = "login", result = "phone_untrusted", from = %peer.ip());
            } else if let Some(user) = self.tables().destinations.user_of_phone(phone) {
                let user = user.to_owned();
                return self.logged_in(&user, "phone", peer);
            } else {
                tracing::info!(event = "login", result = "phone_unknown", from = %peer.ip());
            }
        }
        page(StatusCode::OK, html::login(None))
    }

    fn logged_in(&self, user: &str, how: &str, peer: SocketAddr) -> Response<Body> {
        let opened = self.state().sessions.open(user, Instant::now());
        let token = match opened {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(event = "login", result = "no_session", user, error = %e);
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    html::notice("Unavailable", "The gateway cannot log anyone in now."),
                );
            }
        };
        self.metrics.logins_ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!(event = "login", result = "ok", user, how, from = %peer.ip());
        let mut r = see_other("/");
        if let Some(c) = cookie_header(&token) {
            r.headers_mut().insert(header::SET_COOKIE, c);
        }
        r
    }

    async fn login(&self, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        if !same_origin(&parts.headers) {
            return page(
                StatusCode::FORBIDDEN,
                html::notice("Refused", "That form came from another site."),
            );
        }
        let Some(f) = form(body).await else {
            return page(
                StatusCode::BAD_REQUEST,
                html::login(Some("Give an ID and a password.")),
            );
        };
        let id = f.get("id").map(|s| s.trim()).unwrap_or("");
        let password = f.get("password").map(String::as_str).unwrap_or("");
        if id.is_empty() || id.len() > 128 || password.is_empty() || password.len() > 1024 {
            return page(
                StatusCode::OK,
                html::login(Some("Give an ID and a password.")),
            );
        }
        let ip = self.client_ip(peer, &parts.headers);
        if !self.state().limiter.allows(ip, id, Instant::now()) {
            self.metrics.logins_limited.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(event = "login", result = "limited", user = id, from = %ip);
            return page(
                StatusCode::TOO_MANY_REQUESTS,
                html::login(Some(
                    "Too many failed logins: wait a few minutes and try again.",
                )),
            );
        }
        if auth::check_password(
            &self.tables().users,
            &self.config.realm,
            id,
            password,
            &self.secret,
        ) {
            if let Some(old) = session_token(&parts.headers) {
                self.end_accesses_of(&old, "login");
                self.state().sessions.close(&old);
            }
            return self.logged_in(id, "password", peer);
        }
        self.state().limiter.failed(ip, id, Instant::now());
        self.metrics.logins_failed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(event = "login", result = "failed", user = id, from = %ip);
        page(StatusCode::OK, html::login(Some("Wrong ID or password.")))
    }

    /// The session of a form POST whose origin and CSRF token are right.
    async fn form_session(
        &self,
        req: Request<Incoming>,
    ) -> Result<(String, auth::Session, HashMap<String, String>), Response<Body>> {
        let (parts, body) = req.into_parts();
        let Some((token, s)) = self.session(&parts.headers) else {
            return Err(see_other("/"));
        };
        let f = form(body).await.unwrap_or_default();
        let csrf_ok = f.get("csrf").is_some_and(|c| {
            use subtle::ConstantTimeEq;
            c.len() == s.csrf.len() && bool::from(c.as_bytes().ct_eq(s.csrf.as_bytes()))
        });
        if !same_origin(&parts.headers) || !csrf_ok {
            return Err(page(
                StatusCode::FORBIDDEN,
                html::notice(
                    "Refused",
                    "That form did not come from this portal: reload it.",
                ),
            ));
        }
        Ok((token, s, f))
    }

    async fn logout(&self, req: Request<Incoming>) -> Response<Body> {
        let (token, s) = match self.form_session(req).await {
            Ok((t, s, _)) => (t, s),
            Err(r) => return r,
        };
        self.end_accesses_of(&token, "logout");
        self.state().sessions.close(&token);
        tracing::info!(event = "logout", user = %s.user);
        let mut r = see_other("/");
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE}=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        )) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }

    async fn open(&self, req: Request<Incoming>) -> Response<Body> {
        let (token, s, f) = match self.form_session(req).await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let tables = self.tables();
        let d = &tables.destinations;
        let dest = if let Some(i) = f.get("dest") {
            i.parse::<usize>()
                .ok()
                .and_then(|i| d.of(&s.user).get(i).cloned())
        } else {
            f.get("uri").and_then(|u| d.typed(&s.user, u))
        };
        let Some(dest) = dest else {
            return self.portal(
                &s,
                StatusCode::FORBIDDEN,
                Some("That destination is not one you may open."),
            );
        };
        let Some(_slot) = self.reserve(&token) else {
            return self.portal(
                &s,
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many destinations open: log out, or wait until one idles out."),
            );
        };
        let started = Instant::now();
        let dialed =
            match tokio::time::timeout(DIAL_TIMEOUT, self.dialer.dial(&s.user, &dest)).await {
                Ok(r) => r,
                Err(_) => Err(proxy::DialError::Unreachable(
                    "no channel within 30 s".into(),
                )),
            };
        let dialed = match dialed {
            Ok(d) => d,
            Err(e) => return self.call_failed(&s, &dest, &e),
        };
        let (sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(dialed.channel)).await {
                Ok(x) => x,
                Err(e) => {
                    tokio::spawn((dialed.hangup)());
                    return self.call_failed(
                        &s,
                        &dest,
                        &proxy::DialError::Unreachable(e.to_string()),
                    );
                }
            };
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let closing = Arc::clone(&closed);
        tokio::spawn(async move {
            let _ = conn.await;
            closing.store(true, Ordering::Relaxed);
        });
        let id = match auth::token() {
            Ok(t) => t[..32].to_owned(),
            Err(e) => {
                tokio::spawn((dialed.hangup)());
                return self.call_failed(&s, &dest, &proxy::DialError::Unreachable(e.to_string()));
            }
        };
        let authority = dest
            .origin
            .as_deref()
            .and_then(destinations::origin_authority)
            .map(str::to_owned)
            .unwrap_or_else(|| dest.uri.rsplit('@').next().unwrap_or("service").to_owned());
        let access = Arc::new(Access {
            session: token,
            user: s.user.clone(),
            rewrite: Rewrite {
                prefix: format!("/s/{id}").into(),
                origin: dest
                    .origin
                    .as_deref()
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase().into()),
            },
            authority,
            destination: dest,
            sender: tokio::sync::Mutex::new(Some(sender)),
            last: Mutex::new(Instant::now()),
            hangup: Mutex::new(Some(dialed.hangup)),
            closed,
        });
        self.metrics.calls_set_up.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            event = "call",
            result = "ok",
            user = %s.user,
            destination = %access.destination.uri,
            setup_ms = started.elapsed().as_millis() as u64
        );
        self.state().accesses.insert(id.clone(), access);
        see_other(&format!("/s/{id}/"))
    }

    fn call_failed(
        &self,
        s: &auth::Session,
        dest: &Destination,
        e: &proxy::DialError,
    ) -> Response<Body> {
        if let Ok(mut m) = self.metrics.call_failures.lock() {
            *m.entry(e.status()).or_default() += 1;
        }
        tracing::warn!(event = "call", result = "failed", user = %s.user, destination = %dest.uri, status = e.status(), error = %e);
        self.portal(
            s,
            StatusCode::BAD_GATEWAY,
            Some(&format!("{} cannot be reached now: {e}", dest.name)),
        )
    }

    fn metrics_page(&self, peer: SocketAddr) -> Response<Body> {
        if !self
            .config
            .metrics_allow
            .iter()
            .any(|n| n.contains(&peer.ip()))
        {
            return page(
                StatusCode::NOT_FOUND,
                html::notice("Not found", "There is nothing here."),
            );
        }
        let (accesses, sessions) = {
            let st = self.state();
            (st.accesses.len(), st.sessions.len())
        };
        full(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            self.metrics
                .render(accesses, sessions, self.dialer.keys_held()),
        )
    }

    /// Relay one request of access `id` to its service.
    async fn relay(&self, id: &str, req: Request<Incoming>) -> Response<Body> {
        let not_found = || {
            page(
                StatusCode::NOT_FOUND,
                html::notice(
                    "Not found",
                    "That access has ended: open the destination again.",
                ),
            )
        };
        let Some((token, _)) = self.session(req.headers()) else {
            return not_found();
        };
        let access = self.state().accesses.get(id).cloned();
        let Some(access) = access.filter(|a| a.session == token) else {
            return not_found();
        };
        access.touch();
        // A WebSocket (or any protocol upgrade) is not relayed: the
        // channel carries one HTTP/1.1 exchange at a time. Said plainly,
        // rather than stripped (`Upgrade` is hop-by-hop) into a request
        // the service would answer in its own way.
        if req.headers().contains_key(header::UPGRADE) {
            tracing::info!(event = "access", user = %access.user, destination = %access.destination.uri, status = 501, refused = "upgrade");
            return page(
                StatusCode::NOT_IMPLEMENTED,
                html::notice(
                    "Not implemented",
                    "The gateway does not relay WebSocket or other protocol upgrades.",
                ),
            );
        }
        let (mut parts, body) = req.into_parts();
        let prefix_len = access.rewrite.prefix.len();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let tail = path_and_query.get(prefix_len..).unwrap_or("/");
        let tail = if tail.starts_with('/') {
            tail.to_owned()
        } else {
            format!("/{tail}")
        };
        let Ok(uri) = tail.parse::<hyper::Uri>() else {
            return page(
                StatusCode::BAD_REQUEST,
                html::notice("Bad request", "That path cannot be relayed."),
            );
        };
        let method = parts.method.clone();
        let path_logged = uri.path().to_owned();
        let cookies = service_cookies(&parts.headers);
        let mut headers = std::mem::take(&mut parts.headers);
        strip_hop_by_hop(&mut headers);
        headers.remove(header::COOKIE);
        if let Some(c) = cookies {
            headers.insert(header::COOKIE, c);
        }
        headers.remove(header::ACCEPT_ENCODING);
        headers.remove(header::REFERER);
        headers.remove("sec-fetch-site");
        match &access.rewrite.origin {
            Some(o) if headers.contains_key(header::ORIGIN) => {
                if let Ok(v) = HeaderValue::from_str(o) {
                    headers.insert(header::ORIGIN, v);
                }
            }
            _ => {
                headers.remove(header::ORIGIN);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&access.authority) {
            headers.insert(header::HOST, v);
        }
        let to_service = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&to_service);
        let max_body = usize::try_from(self.config.max_body).unwrap_or(usize::MAX);
        let body = Limited::new(body, max_body)
            .map_frame(move |f| {
                if let Some(d) = f.data_ref() {
                    counted.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                f
            })
            .boxed();
        let mut upstream = Request::new(body);
        *upstream.method_mut() = method.clone();
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers;
        let sent = {
            let mut held = access.sender.lock().await;
            let Some(sender) = held.as_mut() else {
                return not_found();
            };
            let ready = tokio::time::timeout(UPSTREAM_TIMEOUT, sender.ready()).await;
            match ready {
                Ok(Ok(())) => {
                    tokio::time::timeout(UPSTREAM_TIMEOUT, sender.send_request(upstream)).await
                }
                Ok(Err(e)) => Ok(Err(e)),
                Err(elapsed) => Err(elapsed),
            }
        };
        let response = match sent {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.metrics
                    .log(&access, &method, &path_logged, 502, &to_service, 0);
                if e.is_closed() || e.is_canceled() {
                    self.drop_access(id, "channel closed");
                }
                return page(
                    StatusCode::BAD_GATEWAY,
                    html::notice(
                        "Bad gateway",
                        "The service did not answer: open the destination again.",
                    ),
                );
            }
            Err(_) => {
                self.metrics
                    .log(&access, &method, &path_logged, 504, &to_service, 0);
                return page(
                    StatusCode::GATEWAY_TIMEOUT,
                    html::notice("Gateway timeout", "The service did not answer in time."),
                );
            }
        };
        self.respond(access, method, path_logged, to_service, response)
    }

    fn drop_access(&self, id: &str, why: &str) {
        let a = self.state().accesses.remove(id);
        if let Some(a) = a {
            a.end(why);
        }
    }

    fn respond(
        &self,
        access: Arc<Access>,
        method: Method,
        path: String,
        to_service: Arc<AtomicU64>,
        response: Response<Incoming>,
    ) -> Response<Body> {
        let (mut parts, mut body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let rw = access.rewrite.clone();
        if let Some(loc) = parts
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            && let Some(new) = rw.url(loc)
            && let Ok(v) = HeaderValue::from_str(&new)
        {
            parts.headers.insert(header::LOCATION, v);
        }
        if let Some(refresh) = parts.headers.get("refresh").and_then(|v| v.to_str().ok())
            && let Some(new) = rw.refresh(refresh)
            && let Ok(v) = HeaderValue::from_str(&new)
        {
            parts.headers.insert("refresh", v);
        }
        let cookies: Vec<HeaderValue> = parts
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| HeaderValue::from_str(&rw.set_cookie(v)).ok())
            .collect();
        parts.headers.remove(header::SET_COOKIE);
        for c in cookies {
            parts.headers.append(header::SET_COOKIE, c);
        }
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_start().to_ascii_lowercase())
            .unwrap_or_default();
        let html = content_type.starts_with("text/html")
            || content_type.starts_with("application/xhtml+xml");
        // A style sheet is rewritten whole at its end (its `url(` may be
        // split across pieces); --max-body bounds what is held.
        let css = content_type.starts_with("text/css");
        if html || css {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        let status = parts.status.as_u16();
        let max_body = self.config.max_body;
        let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(4);
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move {
            let out = Arc::new(Mutex::new(Vec::<u8>::new()));
            let sink = Arc::clone(&out);
            let mut rewriter = html.then(|| {
                proxy::html_rewriter(&rw, move |c: &[u8]| {
                    if let Ok(mut o) = sink.lock() {
                        o.extend_from_slice(c);
                    }
                })
            });
            let mut sheet: Option<Vec<u8>> = css.then(Vec::new);
            let mut read: u64 = 0;
            let mut sent: u64 = 0;
            let take = |out: &Arc<Mutex<Vec<u8>>>| {
                out.lock()
                    .map(|mut o| Bytes::from(std::mem::take(&mut *o)))
                    .unwrap_or_default()
            };
            let failure: Option<String> = loop {
                let frame = match tokio::time::timeout(UPSTREAM_TIMEOUT, body.frame()).await {
                    Err(_) => break Some("the service stalled".into()),
                    Ok(None) => break None,
                    Ok(Some(Err(e))) => break Some(e.to_string()),
                    Ok(Some(Ok(f))) => f,
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                read += data.len() as u64;
                if read > max_body {
                    break Some(format!("a body over {max_body} bytes"));
                }
                access.touch();
                if let Some(sheet) = sheet.as_mut() {
                    sheet.extend_from_slice(&data);
                    continue;
                }
                let chunk = match rewriter.as_mut() {
                    Some(w) => {
                        if let Err(e) = w.write(&data) {
                            break Some(e.to_string());
                        }
                        take(&out)
                    }
                    None => data,
                };
                if chunk.is_empty() {
                    continue;
                }
                sent += chunk.len() as u64;
                if tx.send(Ok(chunk)).await.is_err() {
                    break Some("the browser went away".into());
                }
            };
            if failure.is_none()
                && let Some(w) = rewriter.take()
            {
                match w.end() {
                    Ok(()) => {
                        let rest = take(&out);
                        sent += rest.len() as u64;
                        let _ = tx.send(Ok(rest)).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string().into())).await;
                    }
                }
            }
            if failure.is_none()
                && let Some(sheet) = sheet.take()
            {
                // CSS is UTF-8 in practice; a sheet that is not is relayed
                // as it came.
                let out = match String::from_utf8(sheet) {
                    Ok(text) => Bytes::from(rw.css(&text).unwrap_or(text)),
                    Err(e) => Bytes::from(e.into_bytes()),
                };
                sent += out.len() as u64;
                let _ = tx.send(Ok(out)).await;
            }
            if let Some(why) = &failure {
                let _ = tx.send(Err(why.clone().into())).await;
                tracing::warn!(event = "access_error", user = %access.user, destination = %access.destination.uri, error = %why);
            }
            metrics.log(&access, &method, &path, status, &to_service, sent);
        });
        Response::from_parts(parts, Channelled(rx).boxed())
    }
}

/// Serve HTTPS on `listener` with `tls` until `stop` completes.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    stop: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(
        gateway.config.max_connections.max(1),
    ));
    let sweeper = {
        let g = Arc::clone(&gateway);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                g.sweep();
            }
        })
    };
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(event = "accept", error = %e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let g = Arc::clone(&gateway);
        let (write_timeout, header_timeout) =
            (gateway.config.write_timeout, gateway.config.header_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            // Every write to the browser (the handshake's, each response's)
            // fails after `write_timeout` without progress: the connection
            // ends, the response's relay stops (its body is dropped), and
            // the access it fed ends with its channel.
            let mut tcp = tokio_io_timeout::TimeoutStream::new(tcp);
            tcp.set_write_timeout(Some(write_timeout));
            let tcp = Box::pin(tcp);
            let Ok(Ok(tls)) = tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let g = Arc::clone(&g);
                async move { Ok::<_, Infallible>(g.handle(peer, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
    sweeper.abort();
    let ended: Vec<Arc<Access>> = gateway.state().accesses.drain().map(|(_, a)| a).collect();
    for a in ended {
        a.end("stop");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A dialer that takes its time, as a real call does.
    struct Slow;

    impl Dialer for Slow {
        fn dial<'a>(&'a self, _user: &'a str, _d: &'a Destination) -> proxy::Dialing<'a> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let (mine, _theirs) = tokio::io::duplex(64);
                Ok(proxy::Dialed {
                    channel: Box::new(mine),
                    hangup: Box::new(|| Box::pin(async {})),
                })
            })
        }
    }

    fn gateway() -> Arc<Gateway> {
        let config = Config {
            realm: "example.com".into(),
            phone_header: None,
            trusted_front: Vec::new(),
            metrics_allow: Vec::new(),
            idle: Duration::from_secs(60),
            max_body: 1 << 20,
            max_connections: 64,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        };
        let destinations = Destinations::parse(
            "version: 1\nusers:\n  alice:\n    destinations:\n      - name: Wiki\n        uri: sip:wiki@b.example.com\n",
        )
        .unwrap();
        let tables = Tables {
            users: Users::default(),
            destinations,
        };
        Arc::new(Gateway::new(config, tables, Arc::new(Slow)).unwrap())
    }

    /// Serve `g` over plain HTTP/1.1 on 127.0.0.1 (the TLS layer is not
    /// what is under test).
    async fn serve_plain(g: Arc<Gateway>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, peer)) = listener.accept().await {
                let g = Arc::clone(&g);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let g = Arc::clone(&g);
                        async move { Ok::<_, Infallible>(g.handle(peer, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        addr
    }

    async fn post(addr: SocketAddr, path: &str, cookie: &str, form: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: gw.example\r\nOrigin: https://gw.example\r\nCookie: {COOKIE}={cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_websocket_upgrade_is_refused_501() {
        let g = gateway();
        let now = Instant::now();
        let token = g.state().sessions.open("alice", now).unwrap();
        let csrf = g.state().sessions.touch(&token, now).unwrap().csrf;
        let addr = serve_plain(Arc::clone(&g)).await;
        let opened = post(addr, "/open", &token, &format!("csrf={csrf}&dest=0")).await;
        assert!(opened.starts_with("HTTP/1.1 303"), "{opened}");
        let at = opened.find("/s/").unwrap();
        let base = opened[at..].split_whitespace().next().unwrap().to_owned();
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET {base}chat HTTP/1.1\r\nHost: gw.example\r\nCookie: {COOKIE}={token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut out = vec![0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut out))
            .await
            .expect("an answer, not a request relayed to a service that never answers")
            .unwrap();
        let head = String::from_utf8_lossy(&out[..n]);
        assert!(head.starts_with("HTTP/1.1 501"), "{head}");
    }

    #[tokio::test]
    async fn a_form_body_that_never_comes_does_not_hold_the_connection() {
        let addr = serve_plain(gateway()).await;
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The header promises a form; its bytes never come.
        tcp.write_all(
            b"POST /login HTTP/1.1\r\nHost: gw.example\r\nOrigin: https://gw.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nid=al",
        )
        .await
        .unwrap();
        let mut out = vec![0u8; 64];
        let answered = tokio::time::timeout(FORM_TIMEOUT * 2, tcp.read(&mut out)).await;
        let n = answered
            .expect("no answer while the body is withheld")
            .unwrap();
        let head = String::from_utf8_lossy(&out[..n]);
        assert!(head.starts_with("HTTP/1.1 4"), "{head}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_opens_do_not_pass_the_per_session_limit() {
        let g = gateway();
        let now = Instant::now();
        let token = g.state().sessions.open("alice", now).unwrap();
        let csrf = g.state().sessions.touch(&token, now).unwrap().csrf;
        let addr = serve_plain(Arc::clone(&g)).await;
        let form = format!("csrf={csrf}&dest=0");
        let tries = MAX_ACCESSES_PER_SESSION * 3;
        let mut tasks = Vec::new();
        for _ in 0..tries {
            let (token, form) = (token.clone(), form.clone());
            tasks.push(tokio::spawn(async move {
                post(addr, "/open", &token, &form).await
            }));
        }
        let mut opened = 0;
        for t in tasks {
            if t.await.unwrap().starts_with("HTTP/1.1 303") {
                opened += 1;
            }
        }
        let held = g
            .state()
            .accesses
            .values()
            .filter(|a| a.session == token)
            .count();
        assert!(
            held <= MAX_ACCESSES_PER_SESSION && opened <= MAX_ACCESSES_PER_SESSION,
            "{opened} of {tries} opened at once, {held} held"
        );
        assert!(opened > 0, "none opened at all");
    }
}
