//! `sipseal gateway` as a process, driven by an HTTPS client (hyper on
//! rustls): login, the portal, the reverse proxy to a local HTTP service
//! reached by the real call (the gateway's pseudo user agent calls
//! `sipseal terminal` through relay A, designated, and relay B, blind, on
//! mutual TLS: tests/common/callpath.rs), logout and idle ends of an
//! access, rate limits, the access log and /metrics. Everything binds
//! 127.0.0.x and stops by itself.
#![cfg(feature = "live")]

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::callpath::{self, CallPath};
use common::live::Daemon;
use common::{Succeeds, sipseal};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Trusts exactly the certificate the gateway is started with.
#[derive(Debug)]
struct Pinned(CertificateDer<'static>, Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "not the gateway's certificate".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

struct Client {
    tls: tokio_rustls::TlsConnector,
    gateway: SocketAddr,
}

struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Client {
    fn new(gateway: SocketAddr) -> Client {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cert =
            CertificateDer::from_pem_file(common::repo().join("keys/proxy-a/cert.pem")).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned(cert, provider)))
            .with_no_client_auth();
        Client {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            gateway,
        }
    }

    /// One request on a connection of its own from `from`.
    async fn send(
        &self,
        from: IpAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        form: &[(&str, &str)],
    ) -> Reply {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let tcp = tokio::time::timeout(Duration::from_secs(5), socket.connect(self.gateway))
            .await
            .unwrap()
            .unwrap();
        let name = ServerName::try_from("gateway.test").unwrap();
        let tls = self.tls.connect(name, tcp).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("{}", self.gateway));
        if !form.is_empty() {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let resp: Response<hyper::body::Incoming> =
            tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
                .await
                .unwrap()
                .unwrap();
        let (parts, body) = resp.into_parts();
        // A body cut off (over --max-body) reads as an error here.
        let body = match tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .unwrap()
        {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(e) => format!("{CUT}{e}"),
        };
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }
}

/// What [`Client::send`] reads as the body of a response cut off.
const CUT: &str = "cut off: ";

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const FRONT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

/// The local HTTP service behind the "call": a page with absolute and
/// root-relative links, a redirect, and what it was asked with.
async fn service() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let seen = format!(
                            "host={} cookie={}",
                            req.headers()
                                .get("host")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or(""),
                            req.headers()
                                .get("cookie")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                        );
                        let resp = match req.uri().path() {
                            "/" => Response::builder()
                                .header("content-type", "text/html; charset=utf-8")
                                .header("set-cookie", "sid=42; Path=/; Domain=127.0.0.1")
                                .body(Full::new(Bytes::from(format!(
                                    "<html><body><h1>Service home</h1><p>{seen}</p>\
<a href=\"/next\">next</a><img src=\"http://{addr}/pic.png\">\
<form action=\"http://{addr}/post\"></form><a href=\"https://elsewhere.example/\">away</a>\
<a href=\"rel\">rel</a></body></html>"
                                )))),
                            "/go" => Response::builder()
                                .status(302)
                                .header("location", format!("http://{addr}/next"))
                                .body(Full::new(Bytes::new())),
                            "/big" => Response::builder()
                                .header("content-type", "application/octet-stream")
                                .body(Full::new(Bytes::from(vec![b'x'; 2 << 20]))),
                            // Larger than every buffer between the
                            // service and a browser that stops reading.
                            "/huge" => Response::builder()
                                .header("content-type", "application/octet-stream")
                                .body(Full::new(Bytes::from(vec![b'x'; 32 << 20]))),
                            "/style.css" => Response::builder()
                                .header("content-type", "text/css")
                                .body(Full::new(Bytes::from(format!(
                                    "body{{background:url(/bg.png)}} @import 'http://{addr}/more.css';"
                                )))),
                            "/wait" => Response::builder()
                                .header("content-type", "text/plain")
                                .header("refresh", "1; url=/next")
                                .body(Full::new(Bytes::from("wait"))),
                            "/bye" => Response::builder()
                                .header("connection", "close")
                                .body(Full::new(Bytes::from("bye"))),
                            "/next" => Response::builder()
                                .header("content-type", "text/plain")
                                .body(Full::new(Bytes::from(format!("next page {seen}")))),
                            _ => Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::new())),
                        };
                        Ok::<_, std::convert::Infallible>(resp.unwrap())
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

fn cookie_of(r: &Reply) -> String {
    let c = r.header("set-cookie");
    c.split(';').next().unwrap().to_owned()
}

#[test]
fn a_browser_logs_in_sees_its_destinations_and_reaches_a_service_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    passwd(&users, dir.path(), "sip:alice@a.example.com", "alice-pw");
    passwd(&users, dir.path(), "sip:bob@a.example.com", "bob-pw");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let service = rt.block_on(service());
    let destinations = dir.path().join("destinations.yaml");
    std::fs::write(
        &destinations,
        format!(
            r#"version: 1
users:
  alice:
    destinations:
      - name: Wiki
        uri: {destination}
        description: The team wiki
        origin: http://{service}
        cert: {cert}
      - name: "<script>alert('x')</script>"
        uri: sip:evil@b.example.com
        description: "\"><img src=x onerror=alert(1)>"
    typed: ["sip:*@b.example.com"]
  bob:
    phone: "+15551234"
    destinations:
      - name: Mailbox
        uri: sip:mail@c.example.com
"#,
            destination = callpath::DESTINATION,
            cert = CallPath::destination_cert(),
        ),
    )
    .unwrap();
    let path = CallPath::start(&dir.path().join("path"), service.port(), &[]);
    path.wait_registered();
    let mut args: Vec<&str> = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--identity",
        "keys/proxy-a",
        "--users",
        users.to_str().unwrap(),
        "--realm",
        "a.example.com",
        "--destinations",
        destinations.to_str().unwrap(),
        "--phone-header",
        "X-Phone-Number",
        "--trusted-front",
        "127.0.0.3/32",
        "--metrics-allow",
        "127.0.0.1/32",
        "--idle",
        "2",
        "--max-body",
        "1MiB",
    ];
    let call_flags = path.gateway_args();
    args.extend(call_flags.iter().map(String::as_str));
    let gw = Daemon::start(dir.path(), "gateway", &args);
    let addr: SocketAddr = gw.addrs[0]
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    let client = Client::new(addr);
    let origin = format!("https://{addr}");
    let same = [("origin", origin.as_str())];
    rt.block_on(async {
        // Not logged in: the login form.
        let home = client.send(LOCAL, "GET", "/", &[], &[]).await;
        assert_eq!(home.status, 200);
        assert!(home.body.contains("name=\"password\""), "{}", home.body);
        assert!(home.body.contains("name=\"viewport\""));
        let typed = client.send(LOCAL, "GET", "/login", &[], &[]).await;
        assert_eq!((typed.status, typed.header("location")), (303, "/"));
        let put = client.send(LOCAL, "PUT", "/", &[], &[]).await;
        assert_eq!((put.status, put.header("allow")), (405, "GET, HEAD"));

        // A wrong password and an unknown user get the same page.
        let wrong = client
            .send(
                LOCAL,
                "POST",
                "/login",
                &same,
                &[("id", "alice"), ("password", "nope")],
            )
            .await;
        let unknown = client
            .send(
                LOCAL,
                "POST",
                "/login",
                &same,
                &[("id", "mallory"), ("password", "alice-pw")],
            )
            .await;
        assert_eq!((wrong.status, unknown.status), (200, 200));
        assert_eq!(wrong.body, unknown.body);
        assert!(wrong.body.contains("Wrong ID or password."));
        assert!(wrong.headers.get("set-cookie").is_none());

        // A login form posted from another site is refused.
        let cross = client
            .send(
                LOCAL,
                "POST",
                "/login",
                &[("origin", "https://evil.example")],
                &[("id", "alice"), ("password", "alice-pw")],
            )
            .await;
        assert_eq!(cross.status, 403);

        // Five failures for one user, from any address: the sixth try is
        // refused before its password is looked at.
        for _ in 0..5 {
            let r = client
                .send(
                    OTHER,
                    "POST",
                    "/login",
                    &same,
                    &[("id", "carol"), ("password", "x")],
                )
                .await;
            assert_eq!(r.status, 200);
        }
        let limited = client
            .send(
                LOCAL,
                "POST",
                "/login",
                &same,
                &[("id", "carol"), ("password", "x")],
            )
            .await;
        assert_eq!(limited.status, 429);
        assert!(limited.body.contains("Too many failed logins"));
        // Ten failures from one address: any user is refused from it, not
        // from elsewhere.
        for i in 0..5 {
            let id = format!("user{i}");
            client
                .send(
                    OTHER,
                    "POST",
                    "/login",
                    &same,
                    &[("id", &id), ("password", "x")],
                )
                .await;
        }
        let from_other = client
            .send(
                OTHER,
                "POST",
                "/login",
                &same,
                &[("id", "bob"), ("password", "bob-pw")],
            )
            .await;
        assert_eq!(from_other.status, 429);
        // Behind the trusted front end, the client is the address it
        // appended to X-Forwarded-For: ten failures of one client do not
        // lock out the next.
        for i in 0..10 {
            let id = format!("front{i}");
            let xff = [
                ("origin", origin.as_str()),
                ("x-forwarded-for", "198.51.100.7, 192.0.2.1"),
            ];
            let r = client
                .send(
                    FRONT,
                    "POST",
                    "/login",
                    &xff,
                    &[("id", &id), ("password", "x")],
                )
                .await;
            assert_eq!(r.status, 200);
        }
        let xff = [
            ("origin", origin.as_str()),
            ("x-forwarded-for", "192.0.2.1"),
        ];
        let locked = client
            .send(
                FRONT,
                "POST",
                "/login",
                &xff,
                &[("id", "front10"), ("password", "x")],
            )
            .await;
        assert_eq!(locked.status, 429);
        let xff = [
            ("origin", origin.as_str()),
            ("x-forwarded-for", "192.0.2.2"),
        ];
        let next = client
            .send(
                FRONT,
                "POST",
                "/login",
                &xff,
                &[("id", "front11"), ("password", "x")],
            )
            .await;
        assert_eq!(next.status, 200);
        // From anyone else X-Forwarded-For is not believed.
        let xff = [
            ("origin", origin.as_str()),
            ("x-forwarded-for", "192.0.2.3"),
        ];
        let spoofed = client
            .send(
                OTHER,
                "POST",
                "/login",
                &xff,
                &[("id", "front12"), ("password", "x")],
            )
            .await;
        assert_eq!(spoofed.status, 429);

        // Alice logs in: a session cookie with every flag.
        let ok = client
            .send(
                LOCAL,
                "POST",
                "/login",
                &same,
                &[("id", "alice"), ("password", "alice-pw")],
            )
            .await;
        assert_eq!(ok.status, 303, "{}", ok.body);
        let set = ok.header("set-cookie").to_owned();
        for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.split("; ").any(|a| a == flag), "{flag} in {set}");
        }
        let alice = cookie_of(&ok);
        let (name, token) = alice.split_once('=').unwrap();
        assert_eq!(name, "__Host-sipseal");
        assert_eq!(token.len(), 64);
        let alice_h = [("cookie", alice.as_str()), ("origin", origin.as_str())];

        // Her portal: exactly her destinations, the hostile one escaped.
        let portal = client.send(LOCAL, "GET", "/", &alice_h, &[]).await;
        assert_eq!(portal.status, 200);
        assert!(portal.body.contains(">Wiki</button>"));
        assert!(
            portal
                .body
                .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;")
        );
        assert!(!portal.body.contains("<script>"));
        assert!(!portal.body.contains("<img src=x"));
        assert!(!portal.body.contains("Mailbox"));
        assert!(portal.body.contains("name=\"uri\""), "alice may type");
        let csrf = csrf_of(&portal.body);

        // Bob, by his telephone number from the trusted front end only.
        let phone = [("x-phone-number", "+15551234")];
        let untrusted = client.send(LOCAL, "GET", "/", &phone, &[]).await;
        assert!(untrusted.body.contains("name=\"password\""));
        assert!(untrusted.headers.get("set-cookie").is_none());
        let front = client.send(FRONT, "GET", "/", &phone, &[]).await;
        assert_eq!(front.status, 303);
        let bob = cookie_of(&front);
        let bob_portal = client
            .send(FRONT, "GET", "/", &[("cookie", &bob)], &[])
            .await;
        assert!(bob_portal.body.contains(">Mailbox</button>"));
        assert!(!bob_portal.body.contains("Wiki"));
        assert!(
            !bob_portal.body.contains("name=\"uri\""),
            "bob may not type"
        );
        // bob has no caller identity for sip:bob@a.example.com (keys/bob
        // names sip:bob@b.example.com): refused, and the page says why.
        let bob_csrf = csrf_of(&bob_portal.body);
        let no_caller = client
            .send(
                FRONT,
                "POST",
                "/open",
                &[("cookie", bob.as_str()), ("origin", origin.as_str())],
                &[("csrf", &bob_csrf), ("dest", "0")],
            )
            .await;
        assert_eq!(no_caller.status, 502, "{}", no_caller.body);
        assert!(
            no_caller.body.contains("not sip:bob@a.example.com"),
            "{}",
            no_caller.body
        );

        // Forms without the CSRF token, or from another origin: refused.
        let no_csrf = client
            .send(LOCAL, "POST", "/open", &alice_h, &[("dest", "0")])
            .await;
        assert_eq!(no_csrf.status, 403);
        let other_origin = client
            .send(
                LOCAL,
                "POST",
                "/open",
                &[
                    ("cookie", alice.as_str()),
                    ("origin", "https://evil.example"),
                ],
                &[("csrf", &csrf), ("dest", "0")],
            )
            .await;
        assert_eq!(other_origin.status, 403);
        // A typed destination outside her globs; one inside them that
        // cannot be called.
        let bobs = client
            .send(
                LOCAL,
                "POST",
                "/open",
                &alice_h,
                &[("csrf", &csrf), ("uri", "sip:mail@c.example.com")],
            )
            .await;
        assert_eq!(bobs.status, 403);
        assert!(bobs.body.contains("not one you may open"));
        let typed = client
            .send(
                LOCAL,
                "POST",
                "/open",
                &alice_h,
                &[("csrf", &csrf), ("uri", "sip:shop@b.example.com")],
            )
            .await;
        assert_eq!(typed.status, 502);
        assert!(typed.body.contains("404"), "{}", typed.body);

        // She opens the wiki: an access of her own.
        let open = client
            .send(
                LOCAL,
                "POST",
                "/open",
                &alice_h,
                &[("csrf", &csrf), ("dest", "0")],
            )
            .await;
        assert_eq!(open.status, 303, "{}", open.body);
        let base = open.header("location").to_owned();
        assert!(base.starts_with("/s/") && base.ends_with('/'), "{base}");
        let page = client
            .send(
                LOCAL,
                "GET",
                &base,
                &[("cookie", &format!("{alice}; theme=dark"))],
                &[],
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("<h1>Service home</h1>"));
        // The service is asked as itself, without the gateway's cookie.
        assert!(
            page.body
                .contains(&format!("host={service} cookie=theme=dark<")),
            "{}",
            page.body
        );
        // Links to the service go through the gateway; others stay.
        assert!(
            page.body.contains(&format!("href=\"{base}next\"")),
            "{}",
            page.body
        );
        assert!(page.body.contains(&format!("src=\"{base}pic.png\"")));
        assert!(page.body.contains(&format!("action=\"{base}post\"")));
        assert!(page.body.contains("href=\"https://elsewhere.example/\""));
        assert!(page.body.contains("href=\"rel\""));
        assert_eq!(page.header("set-cookie"), format!("sid=42; Path={base}"));
        let redirect = client
            .send(
                LOCAL,
                "GET",
                &format!("{base}go"),
                &[("cookie", &alice)],
                &[],
            )
            .await;
        assert_eq!(redirect.status, 302);
        assert_eq!(redirect.header("location"), format!("{base}next"));
        let next = client
            .send(
                LOCAL,
                "GET",
                &format!("{base}next"),
                &[("cookie", &alice)],
                &[],
            )
            .await;
        assert_eq!(next.status, 200);
        assert!(next.body.starts_with("next page"));
        // A body over --max-body is cut off.
        let big = client
            .send(
                LOCAL,
                "GET",
                &format!("{base}big"),
                &[("cookie", &alice)],
                &[],
            )
            .await;
        assert_eq!(big.status, 200);
        assert!(big.body.starts_with(CUT), "{} bytes", big.body.len());
        assert!(gw.logged("a body over 1048576 bytes"));
        // Nobody else's cookie reaches her access.
        let stolen = client
            .send(FRONT, "GET", &base, &[("cookie", &bob)], &[])
            .await;
        assert_eq!(stolen.status, 404);

        // Logout ends the access and the session.
        let logout = client
            .send(LOCAL, "POST", "/logout", &alice_h, &[("csrf", &csrf)])
            .await;
        assert_eq!(logout.status, 303);
        assert!(logout.header("set-cookie").contains("Max-Age=0"));
        let after = client
            .send(LOCAL, "GET", &base, &[("cookie", &alice)], &[])
            .await;
        assert_eq!(after.status, 404);
        assert!(gw.logged("\"reason\":\"logout\""));

        // An access without traffic for --idle ends by itself.
        let again = client
            .send(
                LOCAL,
                "POST",
                "/login",
                &same,
                &[("id", "alice"), ("password", "alice-pw")],
            )
            .await;
        let alice = cookie_of(&again);
        let alice_h = [("cookie", alice.as_str()), ("origin", origin.as_str())];
        let portal = client.send(LOCAL, "GET", "/", &alice_h, &[]).await;
        let csrf = csrf_of(&portal.body);
        let open = client
            .send(
                LOCAL,
                "POST",
                "/open",
                &alice_h,
                &[("csrf", &csrf), ("dest", "0")],
            )
            .await;
        let base = open.header("location").to_owned();
        assert_eq!(
            client
                .send(LOCAL, "GET", &base, &[("cookie", &alice)], &[])
                .await
                .status,
            200
        );
        assert!(gw.logged("\"reason\":\"idle\""));
        assert_eq!(
            client
                .send(LOCAL, "GET", &base, &[("cookie", &alice)], &[])
                .await
                .status,
            404
        );

        // A service that closes the channel ends the access (its call).
        let open = client
            .send(
                LOCAL,
                "POST",
                "/open",
                &alice_h,
                &[("csrf", &csrf), ("dest", "0")],
            )
            .await;
        let base = open.header("location").to_owned();
        let bye = client
            .send(
                LOCAL,
                "GET",
                &format!("{base}bye"),
                &[("cookie", &alice)],
                &[],
            )
            .await;
        assert_eq!((bye.status, bye.body.as_str()), (200, "bye"));
        assert!(gw.logged("\"reason\":\"channel closed\""));
        let gone = client
            .send(LOCAL, "GET", &base, &[("cookie", &alice)], &[])
            .await;
        assert_eq!(gone.status, 404);

        // /metrics: for the admin address only.
        assert_eq!(
            client.send(OTHER, "GET", "/metrics", &[], &[]).await.status,
            404
        );
        let m = client.send(LOCAL, "GET", "/metrics", &[], &[]).await;
        assert_eq!(m.status, 200);
        let metrics: HashMap<&str, u64> = m
            .body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k, v.parse().unwrap()))
            .collect();
        assert_eq!(metrics["sipseal_gateway_calls_set_up_total"], 3);
        assert_eq!(
            metrics["sipseal_gateway_call_failures_total{status=\"404\"}"],
            1
        );
        assert_eq!(
            metrics["sipseal_gateway_call_failures_total{status=\"403\"}"],
            1
        );
        assert_eq!(metrics["sipseal_gateway_logins_total{result=\"ok\"}"], 3);
        assert!(metrics["sipseal_gateway_bytes_relayed_total{direction=\"to_browser\"}"] > 300);
    });

    // The access log: one line per relayed request.
    let lines = gw.log_lines();
    let access: Vec<_> = lines.iter().filter(|l| l["event"] == "access").collect();
    assert_eq!(access.len(), 6, "{}", gw.log_text());
    let first = access[0];
    assert_eq!(first["user"], "alice");
    assert_eq!(first["destination"], callpath::DESTINATION);
    assert_eq!(first["status"], 200);
    assert!(first["bytes_out"].as_u64().unwrap() > 300);
    assert!(!gw.log_text().contains("alice-pw"));
    // The three accesses were three calls, each through relay A (the
    // offer disclosed to it) and relay B (blind), each ended by a BYE.
    path.assert_designated_and_blind(3);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while path
        .terminal
        .log_text()
        .matches("\"event\":\"bye\"")
        .count()
        < 3
    {
        assert!(std::time::Instant::now() < until, "{}", path.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn passwd(users: &std::path::Path, dir: &std::path::Path, aor: &str, pw: &str) {
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, pw).unwrap();
    sipseal()
        .args([
            "registrar",
            "passwd",
            "--realm",
            "a.example.com",
            "--user",
            aor,
        ])
        .arg("--users")
        .arg(users)
        .arg("--password-file")
        .arg(&pwfile)
        .succeeds();
}

/// A table or credential file that cannot be used stops the gateway
/// before it listens (exit 2, with a hint); at SIGHUP it is refused and
/// the old tables stay, and a good one replaces them.
#[test]
fn bad_tables_are_refused_and_sighup_reloads_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    let table = dir.path().join("destinations.yaml");
    let args = |users: &std::path::Path| {
        vec![
            "gateway".to_owned(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--identity".into(),
            "keys/proxy-a".into(),
            "--users".into(),
            users.to_str().unwrap().into(),
            "--realm".into(),
            "a.example.com".into(),
            "--destinations".into(),
            table.to_str().unwrap().into(),
        ]
    };
    std::fs::write(&table, "version: 1\nusers:\n  bob:\n    destinations:\n      - {name: Mailbox, uri: 'sip:mail@c.example.com'}\n").unwrap();
    let missing = sipseal().args(args(&users)).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("no such file") && err.contains("hint: ") && err.contains("registrar passwd"),
        "{err}"
    );

    passwd(&users, dir.path(), "sip:bob@a.example.com", "bob-pw");
    let good = std::fs::read_to_string(&table).unwrap();
    std::fs::write(&table, "version: 1\nusers:\n  bob:\n    destinations:\n      - {name: x, uri: 'javascript:alert(1)'}\n").unwrap();
    let bad = sipseal().args(args(&users)).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("not a sip: or sips: URI") && err.contains("hint: "),
        "{err}"
    );

    // A cert: that does not read is refused at start (not at bob's first
    // access, with its path in his browser), and a user --users does not
    // know is warned about.
    std::fs::write(&table, "version: 1\nusers:\n  bob:\n    destinations:\n      - {name: Mailbox, uri: 'sip:mail@c.example.com', cert: no-such-cert.pem}\n").unwrap();
    let bad = sipseal().args(args(&users)).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("bob: destination \"Mailbox\": cert no-such-cert.pem")
            && err.contains("hint: "),
        "{err}"
    );
    std::fs::write(&table, "version: 1\nusers:\n  bbo:\n    destinations: []\n").unwrap();
    let typo = sipseal()
        .args(args(&users))
        .args([
            "--outbound",
            "udp:127.0.0.1:5060",
            "--trust",
            "keys/trust.pem",
            "--callers",
            "keys",
            "--channel-allow",
            "127.0.0.0/8",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(err.contains("user \"bbo\" is not in --users"), "{err}");

    std::fs::write(&table, &good).unwrap();
    // The call's flags: a flow that is not mutual TLS, a --callers that
    // is not a directory, --outbound without its companions.
    for (extra, says) in [
        (
            &[
                "--outbound",
                "udp:127.0.0.1:5060",
                "--trust",
                "keys/trust.pem",
                "--callers",
                "keys",
                "--channel-allow",
                "127.0.0.0/8",
            ][..],
            "mutual TLS",
        ),
        (
            &[
                "--outbound",
                "tls:127.0.0.1:5061",
                "--trust",
                "keys/trust.pem",
                "--callers",
                "no/such/dir",
                "--channel-allow",
                "127.0.0.0/8",
            ][..],
            "not a directory",
        ),
        (&["--outbound", "tls:127.0.0.1:5061"][..], "--callers"),
        // Certificate queries go over TCP, and only with a call to place.
        (
            &[
                "--outbound",
                "tls:127.0.0.1:5061",
                "--trust",
                "keys/trust.pem",
                "--callers",
                "keys",
                "--channel-allow",
                "127.0.0.0/8",
                "--cert-query",
                "udp:127.0.0.1:5060",
            ][..],
            "go over TCP",
        ),
        (&["--cert-query", "tcp:127.0.0.1:5060"][..], "--outbound"),
        // The call's companions alone would be ignored: refused.
        (&["--callers", "keys"][..], "--outbound"),
        // One address is a network of one; garbage is neither.
        (
            &[
                "--outbound",
                "udp:127.0.0.1:5060",
                "--trust",
                "keys/trust.pem",
                "--callers",
                "keys",
                "--channel-allow",
                "127.0.0.1",
            ][..],
            "mutual TLS",
        ),
        (
            &[
                "--outbound",
                "tls:127.0.0.1:5061",
                "--trust",
                "keys/trust.pem",
                "--callers",
                "keys",
                "--channel-allow",
                "127.0.0.x",
            ][..],
            "neither a network",
        ),
    ] {
        let out = sipseal().args(args(&users)).args(extra).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{says}: {err}");
    }
    let args = args(&users);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = Daemon::start(dir.path(), "gateway", &args);
    let addr: SocketAddr = gw.addrs[0]
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    let client = Client::new(addr);
    let origin = format!("https://{addr}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ok = client
            .send(
                LOCAL,
                "POST",
                "/login",
                &[("origin", &origin)],
                &[("id", "bob"), ("password", "bob-pw")],
            )
            .await;
        assert_eq!(ok.status, 303);
        let bob = cookie_of(&ok);
        let portal = client
            .send(LOCAL, "GET", "/", &[("cookie", &bob)], &[])
            .await;
        assert!(portal.body.contains(">Mailbox</button>"));

        std::fs::write(&table, "version: 1\nusers: [not, a, map]\n").unwrap();
        gw.signal("HUP");
        assert!(gw.logged("reload refused"));
        let portal = client
            .send(LOCAL, "GET", "/", &[("cookie", &bob)], &[])
            .await;
        assert!(
            portal.body.contains(">Mailbox</button>"),
            "the old table stays"
        );

        std::fs::write(&table, good.replace("Mailbox", "Calendar")).unwrap();
        gw.signal("HUP");
        assert!(gw.logged("reloaded --users and --destinations"));
        let portal = client
            .send(LOCAL, "GET", "/", &[("cookie", &bob)], &[])
            .await;
        assert!(
            portal.body.contains(">Calendar</button>"),
            "{}",
            portal.body
        );
        assert!(!portal.body.contains("Mailbox"));
    });
}

/// 100 browsers at once, each logging in, opening the destination (its
/// "call", through relay A, relay B and the terminal) and fetching the page through the gateway:
/// every one gets its own access and the rewritten page. Prints the
/// setup time (the open's answer) at p50 and p99.
#[test]
fn a_hundred_concurrent_sessions_each_get_their_own_access() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    passwd(&users, dir.path(), "sip:alice@a.example.com", "alice-pw");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let service = rt.block_on(service());
    let table = dir.path().join("destinations.yaml");
    std::fs::write(
        &table,
        format!(
            "version: 1\nusers:\n  alice:\n    destinations:\n      - {{name: Wiki, uri: '{}', origin: 'http://{service}', cert: '{}'}}\n",
            callpath::DESTINATION,
            CallPath::destination_cert(),
        ),
    )
    .unwrap();
    let path = CallPath::start(
        &dir.path().join("path"),
        service.port(),
        &["--max-calls", "200"],
    );
    path.wait_registered();
    let mut args: Vec<&str> = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--identity",
        "keys/proxy-a",
        "--users",
        users.to_str().unwrap(),
        "--realm",
        "a.example.com",
        "--destinations",
        table.to_str().unwrap(),
    ];
    let call_flags = path.gateway_args();
    args.extend(call_flags.iter().map(String::as_str));
    let gw = Daemon::start(dir.path(), "gateway", &args);
    let addr: SocketAddr = gw.addrs[0]
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    let client = Arc::new(Client::new(addr));
    let origin = format!("https://{addr}");
    let started = std::time::Instant::now();
    let mut results: Vec<(Duration, String, usize, String)> = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let client = Arc::clone(&client);
            let origin = origin.clone();
            tasks.push(tokio::spawn(async move {
                let same = [("origin", origin.as_str())];
                let ok = client
                    .send(
                        LOCAL,
                        "POST",
                        "/login",
                        &same,
                        &[("id", "alice"), ("password", "alice-pw")],
                    )
                    .await;
                assert_eq!(ok.status, 303);
                let cookie = cookie_of(&ok);
                let h = [("cookie", cookie.as_str()), ("origin", origin.as_str())];
                let portal = client.send(LOCAL, "GET", "/", &h, &[]).await;
                let csrf = csrf_of(&portal.body);
                let t = std::time::Instant::now();
                let open = client
                    .send(
                        LOCAL,
                        "POST",
                        "/open",
                        &h,
                        &[("csrf", &csrf), ("dest", "0")],
                    )
                    .await;
                let setup = t.elapsed();
                assert_eq!(open.status, 303, "{}", open.body);
                let base = open.header("location").to_owned();
                let page = client
                    .send(LOCAL, "GET", &base, &[("cookie", &cookie)], &[])
                    .await;
                assert_eq!(page.status, 200);
                assert!(page.body.contains(&format!("href=\"{base}next\"")));
                (setup, base, page.body.len(), cookie)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let elapsed = started.elapsed();
    let mut bases: Vec<&String> = results.iter().map(|(_, b, _, _)| b).collect();
    bases.sort();
    bases.dedup();
    assert_eq!(bases.len(), 100, "every session its own access");
    results.sort_by_key(|(d, _, _, _)| *d);
    let bytes: usize = results.iter().map(|(_, _, n, _)| n).sum();
    // Relayed throughput: 10 of the accesses fetch 2 MiB each at once,
    // over their calls' data channels.
    let started = std::time::Instant::now();
    let big: usize = rt.block_on(async {
        let mut tasks = Vec::new();
        for (_, base, _, cookie) in &results[..10] {
            let (base, cookie) = (base.clone(), cookie.clone());
            let client = Arc::clone(&client);
            tasks.push(tokio::spawn(async move {
                let big = client
                    .send(
                        LOCAL,
                        "GET",
                        &format!("{base}big"),
                        &[("cookie", &cookie)],
                        &[],
                    )
                    .await;
                assert_eq!((big.status, big.body.len()), (200, 2 << 20));
                big.body.len()
            }));
        }
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap();
        }
        sum
    });
    let took = started.elapsed();
    println!(
        "100 sessions in {elapsed:?}: setup p50 {:?}, p99 {:?}; {bytes} page bytes relayed; \
         {} MiB over 10 channels at once in {took:?}: {:.1} MiB/s",
        results[49].0,
        results[98].0,
        big >> 20,
        big as f64 / (1 << 20) as f64 / took.as_secs_f64()
    );
    // An access line is written once its body has gone out: wait for
    // the last.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let count = |event: &str| {
        gw.log_lines()
            .iter()
            .filter(|l| l["event"] == event && (event != "call" || l["result"] == "ok"))
            .count()
    };
    while count("access") < 110 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count("access"), 110);
    assert_eq!(count("call"), 100);
    path.assert_designated_and_blind(100);
}

/// The gateway's one flow to its relay is opened again when the relay
/// closes it (here relay A's --idle-timeout of 1 s, well under the
/// flow's 25 s keep-alive): the next access calls on a new flow.
#[test]
fn the_gateways_flow_is_opened_again_after_the_relay_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    passwd(&users, dir.path(), "sip:alice@a.example.com", "alice-pw");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let service = rt.block_on(service());
    let table = dir.path().join("destinations.yaml");
    std::fs::write(
        &table,
        format!(
            "version: 1\nusers:\n  alice:\n    destinations:\n      - {{name: Wiki, uri: '{}', origin: 'http://{service}', cert: '{}'}}\n",
            callpath::DESTINATION,
            CallPath::destination_cert(),
        ),
    )
    .unwrap();
    let path = CallPath::start_with(
        &dir.path().join("path"),
        service.port(),
        &["--idle-timeout", "1"],
        &[],
    );
    path.wait_registered();
    let mut args: Vec<&str> = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--identity",
        "keys/proxy-a",
        "--users",
        users.to_str().unwrap(),
        "--realm",
        "a.example.com",
        "--destinations",
        table.to_str().unwrap(),
    ];
    let call_flags = path.gateway_args();
    args.extend(call_flags.iter().map(String::as_str));
    let gw = Daemon::start(dir.path(), "gateway", &args);
    let addr: SocketAddr = gw.addrs[0]
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    let client = Client::new(addr);
    let origin = format!("https://{addr}");
    let flow_closed = |n: usize| {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while gw.log_text().matches("\"flow closed\"").count() < n {
            assert!(
                std::time::Instant::now() < until,
                "{}\n{}",
                gw.log_text(),
                path.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    rt.block_on(async {
        let same = [("origin", origin.as_str())];
        let ok = client
            .send(
                LOCAL,
                "POST",
                "/login",
                &same,
                &[("id", "alice"), ("password", "alice-pw")],
            )
            .await;
        let cookie = cookie_of(&ok);
        let h = [("cookie", cookie.as_str()), ("origin", origin.as_str())];
        for round in 1..=2 {
            let portal = client.send(LOCAL, "GET", "/", &h, &[]).await;
            let csrf = csrf_of(&portal.body);
            let open = client
                .send(
                    LOCAL,
                    "POST",
                    "/open",
                    &h,
                    &[("csrf", &csrf), ("dest", "0")],
                )
                .await;
            assert_eq!(open.status, 303, "round {round}: {}", open.body);
            let base = open.header("location").to_owned();
            let page = client
                .send(LOCAL, "GET", &base, &[("cookie", &cookie)], &[])
                .await;
            assert_eq!(page.status, 200, "round {round}");
            assert!(page.body.contains("<h1>Service home</h1>"));
            // Relay A closes the idle flow; the gateway notices.
            tokio::task::block_in_place(|| flow_closed(round));
        }
    });
    let log = gw.log_text();
    assert_eq!(log.matches("\"flow opened\"").count(), 2, "{log}");
    path.assert_designated_and_blind(2);
}

/// A gateway for alice (Wiki: the call path's terminal serving
/// `service`) on `path`, with `extra` flags; its address.
fn gateway_for_alice(
    dir: &std::path::Path,
    path: &CallPath,
    service: SocketAddr,
    extra: &[&str],
) -> (Daemon, SocketAddr) {
    let users = dir.join("users.yaml");
    passwd(&users, dir, "sip:alice@a.example.com", "alice-pw");
    let table = dir.join("destinations.yaml");
    std::fs::write(
        &table,
        format!(
            "version: 1\nusers:\n  alice:\n    destinations:\n      - {{name: Wiki, uri: '{}', origin: 'http://{service}', cert: '{}'}}\n",
            callpath::DESTINATION,
            CallPath::destination_cert(),
        ),
    )
    .unwrap();
    let mut args: Vec<&str> = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--identity",
        "keys/proxy-a",
        "--users",
        users.to_str().unwrap(),
        "--realm",
        "a.example.com",
        "--destinations",
        table.to_str().unwrap(),
        "--metrics-allow",
        "127.0.0.1/32",
    ];
    args.extend(extra);
    let call_flags = path.gateway_args();
    args.extend(call_flags.iter().map(String::as_str));
    let gw = Daemon::start(dir, "gateway", &args);
    let addr: SocketAddr = gw.addrs[0]
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    (gw, addr)
}

/// Log alice in and open her first destination: her cookie and the
/// access's base path (`/s/ACCESS/`).
async fn open_as_alice(client: &Client) -> (String, String) {
    let origin = format!("https://{}", client.gateway);
    let ok = client
        .send(
            LOCAL,
            "POST",
            "/login",
            &[("origin", origin.as_str())],
            &[("id", "alice"), ("password", "alice-pw")],
        )
        .await;
    let cookie = cookie_of(&ok);
    let base = open_again(client, &cookie).await;
    (cookie, base)
}

/// Open the first destination once more in the session of `cookie`.
async fn open_again(client: &Client, cookie: &str) -> String {
    let origin = format!("https://{}", client.gateway);
    let h = [("cookie", cookie), ("origin", origin.as_str())];
    let portal = client.send(LOCAL, "GET", "/", &h, &[]).await;
    let csrf = csrf_of(&portal.body);
    let open = client
        .send(
            LOCAL,
            "POST",
            "/open",
            &h,
            &[("csrf", &csrf), ("dest", "0")],
        )
        .await;
    assert_eq!(open.status, 303, "{}", open.body);
    open.header("location").to_owned()
}

/// The gateway's /metrics as name → value.
async fn metrics(client: &Client) -> HashMap<String, u64> {
    let m = client.send(LOCAL, "GET", "/metrics", &[], &[]).await;
    m.body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Wait (at most `secs`) until the daemon's log has a JSON line with
/// `event`; that line.
fn wait_event(d: &Daemon, event: &str, secs: u64, more: &dyn Fn() -> String) -> serde_json::Value {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(l) = d.log_lines().into_iter().find(|l| l["event"] == event) {
            return l;
        }
        assert!(
            std::time::Instant::now() < until,
            "no {event:?} in {secs} s\n{}\n{}",
            d.log_text(),
            more()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A browser that asks for a large page and stops reading: the gateway's
/// writes to it make no progress, and after --write-timeout its
/// connection is closed, the relay of that page stops, the channel
/// closes and the access ends with its call (the session may open it
/// again); before, that connection, access and call stayed until --idle.
#[test]
fn a_browser_that_stops_reading_loses_its_connection_and_its_access() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let service = rt.block_on(service());
    let path = CallPath::start(&dir.path().join("path"), service.port(), &[]);
    path.wait_registered();
    let (gw, addr) = gateway_for_alice(
        dir.path(),
        &path,
        service,
        &["--write-timeout", "2", "--max-body", "64MiB"],
    );
    let client = Client::new(addr);
    let stuck = rt.block_on(async {
        let (cookie, base) = open_as_alice(&client).await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        // A small window: the gateway's writes stop after a few KiB.
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        let name = ServerName::try_from("gateway.test").unwrap();
        let mut tls = client.tls.connect(name, tcp).await.unwrap();
        let req = format!("GET {base}huge HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut tls, req.as_bytes())
            .await
            .unwrap();
        // Never read from here on.
        tls
    });
    let ended = wait_event(&gw, "access_end", 20, &|| path.logs());
    assert_eq!(ended["reason"], "channel closed", "{}", gw.log_text());
    let error = wait_event(&gw, "access_error", 5, &|| path.logs());
    assert_eq!(error["error"], "the browser went away");
    rt.block_on(async {
        assert_eq!(metrics(&client).await["sipseal_gateway_accesses"], 0);
        // The connection was closed: what is left in the buffers, then
        // its end (not a wait).
        let mut stuck = stuck;
        let mut sink = Vec::new();
        let end = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read_to_end(&mut stuck, &mut sink),
        )
        .await;
        assert!(end.is_ok(), "the stuck connection is still open");
        assert!(sink.len() < 32 << 20, "the whole page came: {}", sink.len());
        // The session opens again.
        let (_, base) = open_as_alice(&client).await;
        assert!(base.starts_with("/s/"));
    });
    // The terminal ended the call when its channel closed (it sends no
    // BYE of its own): the gateway's BYE finds it gone.
    let bye = wait_event(&gw, "bye", 10, &|| path.logs());
    assert!(
        bye["status"] == 481 || bye["status"] == 200,
        "{}",
        gw.log_text()
    );
}

/// Calls set up on the gateway's flow before relay A closed it: their
/// BYEs go out on the flow open now (the terminal answers 200), not into
/// the closed one; and each call's session key is held while it is up
/// and removed when it ends (`sipseal_gateway_call_keys`). On the way, a
/// `text/css` response and a `Refresh` header come with their URLs under
/// the access (the rewriting of finding 5, end to end). (A third call
/// opens the new flow: relay A's idle timeout also closed its link to
/// relay B, and A forwards a BYE to B's Record-Route address, an IP its
/// TLS cannot check B's certificate against, over an open link only.)
#[test]
fn bye_goes_out_on_the_reopened_flow_and_ended_calls_leave_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let service = rt.block_on(service());
    let path = CallPath::start_with(
        &dir.path().join("path"),
        service.port(),
        &["--idle-timeout", "1"],
        &[],
    );
    path.wait_registered();
    let (gw, addr) = gateway_for_alice(dir.path(), &path, service, &[]);
    let client = Client::new(addr);
    let byes = |n: usize| {
        let until = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let lines: Vec<_> = gw
                .log_lines()
                .into_iter()
                .filter(|l| l["event"] == "bye")
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                std::time::Instant::now() < until,
                "{}\n{}",
                gw.log_text(),
                path.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    rt.block_on(async {
        let (cookie, base) = open_as_alice(&client).await;
        let second = open_again(&client, &cookie).await;
        for b in [&base, &second] {
            let page = client
                .send(LOCAL, "GET", b, &[("cookie", &cookie)], &[])
                .await;
            assert!(page.body.contains("<h1>Service home</h1>"), "{}", page.body);
        }
        assert_eq!(metrics(&client).await["sipseal_gateway_call_keys"], 2);
        // A style sheet's and a Refresh header's URLs come rewritten.
        let prefix = base.trim_end_matches('/');
        let css = client
            .send(
                LOCAL,
                "GET",
                &format!("{base}style.css"),
                &[("cookie", &cookie)],
                &[],
            )
            .await;
        assert_eq!(
            css.body,
            format!("body{{background:url({prefix}/bg.png)}} @import '{prefix}/more.css';")
        );
        let wait = client
            .send(
                LOCAL,
                "GET",
                &format!("{base}wait"),
                &[("cookie", &cookie)],
                &[],
            )
            .await;
        assert_eq!(wait.header("refresh"), format!("1; url={prefix}/next"));
        // Relay A closes the idle flow (each flow the calls went out on)
        // under the running calls.
        let count = |what: &str| gw.log_text().matches(what).count();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while count("\"flow closed\"") < count("\"flow opened\"") {
            assert!(std::time::Instant::now() < until, "{}", gw.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let flows = count("\"flow opened\"");
        let third = open_again(&client, &cookie).await;
        assert!(third.starts_with("/s/"));
        let origin = format!("https://{addr}");
        let h = [("cookie", cookie.as_str()), ("origin", origin.as_str())];
        let portal = client.send(LOCAL, "GET", "/", &h, &[]).await;
        let csrf = csrf_of(&portal.body);
        let out = client
            .send(LOCAL, "POST", "/logout", &h, &[("csrf", &csrf)])
            .await;
        assert_eq!(out.status, 303);
        let ended = tokio::task::block_in_place(|| byes(3));
        for bye in &ended {
            assert_eq!(bye["status"], 200, "{}\n{}", gw.log_text(), path.logs());
        }
        let reopened = ended.iter().filter(|b| b["on"] == "reopened flow").count();
        assert_eq!(reopened, 2, "{}", gw.log_text());
        assert_eq!(metrics(&client).await["sipseal_gateway_call_keys"], 0);
        // Every BYE went out on the one flow opened again.
        assert_eq!(count("\"flow opened\""), flows + 1, "{}", gw.log_text());
    });
}

/// Issue 29 item 2, "a form to type one", for a destination the table
/// has no certificate for: the gateway asks the registrar (a
/// certificate query the user signs, over TCP), checks its signed
/// answer, seals for the certificate the terminal enrolled at
/// registration, and the page appears; the certificate is cached (one
/// query for two accesses). A typed AOR the registrar has no certificate
/// for gets the error page with its 404, is counted as such, and no
/// INVITE leaves the gateway.
#[test]
fn a_typed_destination_is_sealed_for_the_certificate_the_registrar_answers_with() {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    eprintln!("DIR {}", dir.path().display());
    let users = dir.path().join("users.yaml");
    passwd(&users, dir.path(), "sip:alice@a.example.com", "alice-pw");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let service = rt.block_on(service());
    let table = dir.path().join("destinations.yaml");
    std::fs::write(
        &table,
        "version: 1\nusers:\n  alice:\n    destinations: []\n    typed: ['sip:*@b.example.com']\n",
    )
    .unwrap();
    let path = CallPath::start_opts(
        &dir.path().join("path"),
        service.port(),
        &callpath::Options {
            enrol: true,
            ..Default::default()
        },
    );
    path.wait_registered();
    let realm_ca = path.realm_ca.to_str().unwrap().to_owned();
    let mut args: Vec<String> = [
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--identity",
        "keys/proxy-a",
        "--users",
        users.to_str().unwrap(),
        "--realm",
        "a.example.com",
        "--destinations",
        table.to_str().unwrap(),
        "--metrics-allow",
        "127.0.0.1/32",
        // bob's answer is signed with the certificate the registrar
        // issued him.
        "--trust",
        &realm_ca,
        "--cert-query",
        &path.cert_query,
        "--registrar-trust",
        &realm_ca,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(path.gateway_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = Daemon::start(dir.path(), "gateway", &args);
    let addr: SocketAddr = gw.addrs[0]
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    let client = Client::new(addr);
    let origin = format!("https://{addr}");
    rt.block_on(async {
        let same = [("origin", origin.as_str())];
        let ok = client
            .send(
                LOCAL,
                "POST",
                "/login",
                &same,
                &[("id", "alice"), ("password", "alice-pw")],
            )
            .await;
        let cookie = cookie_of(&ok);
        let h = [("cookie", cookie.as_str()), ("origin", origin.as_str())];
        let portal = client.send(LOCAL, "GET", "/", &h, &[]).await;
        let csrf = csrf_of(&portal.body);

        // Nobody the registrar has a certificate for: the error page with
        // the registrar's 404, and no call.
        let unknown = client
            .send(
                LOCAL,
                "POST",
                "/open",
                &h,
                &[("csrf", &csrf), ("uri", "sip:carol@b.example.com")],
            )
            .await;
        assert_eq!(unknown.status, 502, "{}", unknown.body);
        assert!(
            unknown.body.contains("404")
                && unknown.body.contains("no certificate for that destination"),
            "{}",
            unknown.body
        );

        for round in 1..=2 {
            let open = client
                .send(
                    LOCAL,
                    "POST",
                    "/open",
                    &h,
                    &[("csrf", &csrf), ("uri", callpath::DESTINATION)],
                )
                .await;
            assert_eq!(
                open.status,
                303,
                "round {round}: {}\n{}\n{}",
                open.body,
                gw.log_text(),
                path.logs()
            );
            let base = open.header("location").to_owned();
            let page = client
                .send(LOCAL, "GET", &base, &[("cookie", &cookie)], &[])
                .await;
            assert_eq!(page.status, 200, "round {round}");
            assert!(page.body.contains("<h1>Service home</h1>"), "{}", page.body);
        }

        let m = client.send(LOCAL, "GET", "/metrics", &[], &[]).await;
        assert!(
            m.body
                .contains("sipseal_gateway_call_failures_total{status=\"404\"} 1"),
            "{}",
            m.body
        );
        assert!(
            m.body.contains("sipseal_gateway_calls_set_up_total 2"),
            "{}",
            m.body
        );
    });
    // One query answered for bob (the second access used the cache),
    // one for carol refused; carol's access placed no call.
    let log = gw.log_text();
    assert_eq!(log.matches("\"certificate query\"").count(), 1, "{log}");
    path.assert_designated_and_blind(2);
    // The offers were sealed for the certificate the registrar issued
    // at bob's registration, not keys/bob's.
    let enrolled = sipseal::keys::Cert::load(&dir.path().join("path/bob-enrol/cert.pem")).unwrap();
    let anchors = sipseal::keys::Cert::load_all(&path.realm_ca).unwrap();
    sipseal::keys::trust::check_chain(&enrolled, &[], &anchors).unwrap();
}
