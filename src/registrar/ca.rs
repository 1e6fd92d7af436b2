//! The CA apart from the registrar (docs/SPEC.md §6; the session-management
//! design's CA joined to the session server by a mutually authenticated
//! channel): `sipseal ca --listen tls:…` ([`LiveCa`]) issues on requests
//! from registrars it trusts, and `registrar --ca tls:HOST:PORT`
//! ([`RemoteCa`]) asks it. Both sides of the wire are here.
//!
//! The registrar authenticates the user and checks the request; then it
//! asks, over mutual TLS, with a PUBLISH:
//!
//! ```text
//! PUBLISH sip:alice@example.com SIP/2.0
//! From: <sip:registrar.example.com>;tag=…     the registrar (its TLS certificate says so)
//! To: <sip:alice@example.com>                  the authenticated AOR
//! Expires: 3600                                seconds from now: the registration's expiry
//! Content-Type: application/pkcs10             the user's CSR (DER), or a key certified
//!                                              before (a refresh) as application/x-sipseal-spki
//! ```
//!
//! The CA trusts the user the registrar authenticated, but only in the
//! domains it lets that registrar ask for (`ca --allow NAME=DOMAIN`: NAME
//! one of the TLS client certificate's SIP identities, RFC 5922 §7.1). It
//! checks a CSR's proof of possession again, certifies the key (subject
//! and SAN URI from the AOR, notAfter = now + Expires, capped by `ca
//! --max-validity`) with the profile of a local CA directory, and answers
//! 200 with the certificate and its own as certs-only. The answer is not
//! signed: the TLS channel says who answered, and the certificate carries
//! the CA's signature. The registrar takes it only when it names the AOR,
//! is for the key asked about, chains to the CA certificate it was given
//! (`registrar --ca-cert`) and ends no later than asked (plus
//! [`CLOCK_SKEW`]).

use std::net::SocketAddr;
use std::time::Duration;

use der::{Decode, Encode};
use time::OffsetDateTime;
use x509_cert::Certificate;

use super::RegistrarError;
use super::certs::{MAX_CSR, SPKI_TYPE, check_key, from_csr};
use super::issuer::{IssueAsk, IssueError, Issuer, Key};
use super::stop::{Stop, refuse};
use crate::context::Context;
use crate::envelope::signed::{certs_of, certs_only};
use crate::keys::generate::Ca;
use crate::keys::{Cert, Identity};
use crate::net::client::{Client, Timers};
use crate::net::live::{Dest, Handled, Outgoing, Peer, Record, SendError, Service};
use crate::net::tls::{TlsSetup, sip_identities};
use crate::net::{Target, Transport};
use crate::sip::aor::Aor;
use crate::sip::compose::{Body, RequestParams, build_request};
use crate::sip::{Answer, Message, Status, respond};

/// The media type of the certs-only answer.
const CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only; name=smime.p7c";

/// How much later than asked a remote CA's certificate may end: the two
/// clocks may differ by this much.
pub const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// How long the registrar waits for the CA (connection and answer).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The longest validity `sipseal ca` gives by default (seconds): a day.
pub const MAX_VALIDITY: u32 = 86_400;

/// A `sipseal ca` the registrar asks over mutual TLS.
pub struct RemoteCa {
    /// Where (`tls:HOST:PORT`), for messages.
    pub at: String,
    /// The address, and the name its TLS certificate must carry.
    pub target: Target,
    /// The registrar's TLS identity and the anchors the CA's TLS
    /// certificate must chain to.
    pub tls: TlsSetup,
    /// The issuing CA's certificate (`registrar --ca-cert`).
    pub ca: Certificate,
    /// The registrar's SIP URI (From of its requests).
    pub from: String,
}

impl RemoteCa {
    fn unreachable(&self, why: impl std::fmt::Display) -> IssueError {
        IssueError::Unreachable {
            at: self.at.clone(),
            why: why.to_string(),
        }
    }

    fn refused(&self, why: impl Into<String>) -> IssueError {
        IssueError::Refused {
            at: self.at.clone(),
            why: why.into(),
        }
    }

    /// The PUBLISH that asks for `ask`.
    fn request(&self, ask: &IssueAsk<'_>, ctx: &mut Context) -> Result<Message, IssueError> {
        let seconds = (ask.until - ctx.now()).whole_seconds().max(1);
        let body = match ask.csr {
            Some(csr) => Body {
                content_type: "application/pkcs10".into(),
                bytes: csr.to_vec(),
            },
            None => Body {
                content_type: SPKI_TYPE.into(),
                bytes: ask.key.to_der().map_err(|e| self.refused(e.to_string()))?,
            },
        };
        let params = RequestParams {
            method: "PUBLISH".into(),
            from: format!("<{}>", self.from),
            to: format!("<{}>", ask.aor.text),
            request_uri: Some(ask.aor.text.clone()),
            transport: crate::sip::compose::Transport::Tls,
            headers: vec![("Expires".into(), seconds.to_string())],
            body: Some(body),
            ..Default::default()
        };
        build_request(&params, ctx).map_err(|e| self.refused(format!("cannot be asked: {e}")))
    }

    /// The certificate in the CA's answer, checked against what was asked.
    fn certificate(&self, answer: &Message, ask: &IssueAsk<'_>) -> Result<Certificate, IssueError> {
        if answer.status() != Some(200) {
            return Err(self.refused(format!("answered {}", answer.status().unwrap_or_default())));
        }
        let certs = certs_of(answer.body())
            .map_err(|e| self.refused(format!("answered without certificates: {e}")))?;
        let mine = certs
            .iter()
            .find(|c| c.cert.tbs_certificate().subject_public_key_info() == ask.key)
            .ok_or_else(|| self.refused("answered with no certificate for the key asked about"))?;
        let anchor = Cert {
            cert: self.ca.clone(),
            source: "--ca-cert".into(),
        };
        crate::keys::trust::check_chain(mine, &[], &[anchor])
            .map_err(|e| self.refused(format!("answered with a certificate that {e}")))?;
        if mine
            .uri()
            .is_none_or(|u| !crate::sip::aor::same_aor(&u, &ask.aor.text))
        {
            return Err(self.refused(format!(
                "answered with a certificate for {}, not {}",
                mine.name(),
                ask.aor
            )));
        }
        let not_after =
            crate::keys::trust::time_of(&mine.cert.tbs_certificate().validity().not_after);
        if not_after > ask.until + CLOCK_SKEW {
            return Err(self.refused(format!(
                "answered with a certificate valid until {not_after}, later than {}",
                ask.until
            )));
        }
        Ok(mine.cert.clone())
    }
}

impl Issuer for RemoteCa {
    fn ca_cert(&self) -> &Certificate {
        &self.ca
    }

    fn issue(&self, ask: &IssueAsk<'_>, ctx: &mut Context) -> Result<Certificate, IssueError> {
        let request = self.request(ask, ctx)?;
        let timers = Timers {
            timeout: TIMEOUT,
            ..Timers::default()
        };
        let mut client = Client::connect_tls(&self.target, TIMEOUT, &self.tls)
            .map_err(|e| self.unreachable(e))?;
        let answer = client
            .send(&request, &timers, &mut |_| {})
            .map_err(|e| self.unreachable(e))?
            .ok_or_else(|| self.unreachable("no final response"))?;
        self.certificate(&answer, ask)
    }
}

/// What `sipseal ca --listen` owns.
pub struct LiveCa {
    /// The CA directory it signs with.
    pub ca: Ca,
    /// Which registrar (a SIP identity of its TLS certificate) may ask
    /// for which domain: `(registrar, domain)`, lower case.
    pub allow: Vec<(String, String)>,
    /// The longest validity given (seconds).
    pub max_validity: u32,
    /// Gives each request a context of its own.
    pub ctx: std::sync::Mutex<Context>,
}

/// A registrar's request, checked: the key to certify and until when.
struct Asked {
    aor: Aor,
    key: Key,
    until: OffsetDateTime,
}

impl LiveCa {
    /// The request checked: over TLS from a registrar allowed for the
    /// AOR's domain, with an Expires and a CSR or key.
    fn asked(&self, msg: &Message, peer: &Peer, now: OffsetDateTime) -> Result<Asked, Stop> {
        if msg.method() != Some("PUBLISH") {
            return Err(Stop::Refuse(Box::new(
                Answer::new(Status::MethodNotAllowed)
                    .with_header("Allow", "PUBLISH")
                    .because("the CA answers PUBLISH from registrars"),
            )));
        }
        let registrar = peer
            .cert
            .as_deref()
            .filter(|_| peer.transport == Transport::Tls)
            .ok_or_else(|| refuse(Status::Forbidden, "not over mutual TLS"))?;
        let aor = msg
            .aor("To")
            .map(Aor::new)
            .ok_or_else(|| refuse(Status::BadRequest, "no AOR in To"))?;
        let domain = aor_domain(&aor.text).ok_or_else(|| {
            refuse(
                Status::BadRequest,
                format!("{aor} is not an AOR sip:user@host (one @, no port, no headers)"),
            )
        })?;
        let names = sip_identities(registrar);
        let allowed = self
            .allow
            .iter()
            .any(|(name, d)| *d == domain && names.contains(name));
        if !allowed {
            return Err(refuse(
                Status::Forbidden,
                format!("{names:?} may not ask for certificates in {domain:?}"),
            ));
        }
        let seconds: u32 = msg
            .header("Expires")
            .and_then(|v| v.trim().parse().ok())
            .filter(|s| *s > 0)
            .ok_or_else(|| refuse(Status::BadRequest, "Expires is not a number of seconds"))?;
        let until = now + time::Duration::seconds(i64::from(seconds.min(self.max_validity)));
        let body = msg.body();
        if body.len() > MAX_CSR {
            return Err(refuse(
                Status::BadRequest,
                format!("the body is over {MAX_CSR} bytes"),
            ));
        }
        let mime = msg
            .content_type()
            .ok()
            .flatten()
            .map(|c| c.mime)
            .unwrap_or_default();
        let key = match mime.as_str() {
            "application/pkcs10" => from_csr(body, &aor)?,
            SPKI_TYPE => {
                let key = Key::from_der(body)
                    .map_err(|e| refuse(Status::BadRequest, format!("not a key: {e}")))?;
                check_key(&key)?;
                key
            }
            _ => {
                return Err(Stop::Refuse(Box::new(
                    Answer::new(Status::UnsupportedMediaType)
                        .with_header("Accept", format!("application/pkcs10, {SPKI_TYPE}"))
                        .because(format!("a {mime:?} body")),
                )));
            }
        };
        Ok(Asked { aor, key, until })
    }

    /// The answer to `msg`, and what it was for the log.
    fn answer(
        &self,
        msg: &Message,
        peer: &Peer,
        ctx: &mut Context,
    ) -> Result<(Message, String), RegistrarError> {
        let answer = match self.asked(msg, peer, ctx.now()) {
            Ok(asked) => {
                let ask = IssueAsk {
                    aor: &asked.aor,
                    key: &asked.key,
                    csr: None,
                    until: asked.until,
                };
                let cert = Issuer::issue(&self.ca, &ask, ctx).map_err(|e| match e {
                    IssueError::Key(e) => RegistrarError::Key(e),
                    // A local CA is neither reached nor refuses.
                    other => {
                        RegistrarError::Key(crate::keys::KeyError::Generate(other.to_string()))
                    }
                })?;
                let chain = [
                    Cert {
                        cert,
                        source: "issued".into(),
                    },
                    Cert {
                        cert: self.ca.cert.clone(),
                        source: "the CA".into(),
                    },
                ];
                let bytes = certs_only(&chain).map_err(crate::signing::SigningError::from)?;
                Answer::new(Status::Ok)
                    .with_body(Body {
                        content_type: CERTS_ONLY.into(),
                        bytes,
                    })
                    .because(format!("issued for {}", asked.aor))
            }
            Err(Stop::Refuse(answer)) => *answer,
            Err(Stop::Failed(e)) => return Err(e),
            Err(Stop::Challenge { .. }) => Answer::new(Status::Forbidden),
        };
        let decision = format!(
            "{} {}",
            answer.status.code(),
            answer.why.as_deref().unwrap_or_default()
        );
        let response = respond(msg, &answer, ctx)?.ok_or(RegistrarError::Ack)?;
        Ok((response, decision))
    }
}

impl Service for LiveCa {
    fn handle(&self, msg: Message, peer: &Peer) -> Handled {
        let mut record = Record {
            method: msg.method().unwrap_or_default().to_owned(),
            status: msg.status(),
            call_id: msg.call_id().unwrap_or_default().to_owned(),
            ..Record::default()
        };
        if !msg.is_request() || msg.method() == Some("ACK") {
            record.decision = "drop: not a request the CA answers".into();
            return Handled {
                out: Vec::new(),
                record,
            };
        }
        let mut ctx = self.ctx.lock().unwrap_or_else(|e| e.into_inner()).fork();
        // An RSA or ECDSA signature: the runtime's other work goes on.
        let answered = crate::blocking::offload(|| self.answer(&msg, peer, &mut ctx));
        let out = match answered {
            Ok((answer, decision)) => {
                record.decision = decision;
                vec![Outgoing::new(answer, Dest::Back)]
            }
            Err(why) => {
                record.decision = format!("answer 500: {why}");
                respond(&msg, &Answer::new(Status::ServerError), &mut ctx)
                    .ok()
                    .flatten()
                    .map(|m| Outgoing::new(m, Dest::Back))
                    .into_iter()
                    .collect()
            }
        };
        Handled { out, record }
    }

    fn unparsable(&self, _bytes: &[u8], _why: &str, _peer: &Peer) -> Option<Message> {
        None
    }

    fn unsent(&self, _msg: &Message, _why: &SendError) -> Option<Message> {
        None
    }
}

/// The domain of `aor`, lower case, when it reads the same however it is
/// read: `sip:` or `sips:`, one `@`, and a host with no port and no URI
/// headers after it. A second `@` or a `?` would let the host a URI
/// parser finds first (the one the CA checks a registrar against) differ
/// from the one an AOR comparison finds (after the last `@`,
/// [`crate::sip::aor::same_aor`]).
fn aor_domain(aor: &str) -> Option<String> {
    let (scheme, rest) = aor.split_once(':')?;
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return None;
    }
    let (user, host) = rest.split_once('@')?;
    let host = host.to_ascii_lowercase();
    let plain = !user.is_empty() && !host.contains(['@', '?', '<', '>', ' ']);
    (plain && crate::sip::headers::uri_host(aor).is_some_and(|h| h.eq_ignore_ascii_case(&host)))
        .then_some(host)
}

/// Why a remote CA cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteCaError {
    /// The certificate given as the CA's is not a CA certificate.
    #[error("{0} is not a CA certificate (needs BasicConstraints CA:true and keyCertSign)")]
    NotCa(String),
    /// The address does not read, or its name does not resolve.
    #[error(transparent)]
    Target(#[from] crate::net::NetError),
    /// Not `tls:`.
    #[error("{0}: the CA is reached over mutual TLS only")]
    NotTls(String),
    /// The registrar's TLS identity or the trust anchors.
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
}

/// A [`RemoteCa`] at `at` (`tls:HOST:PORT`, resolved with `hosts`),
/// reached as `identity` with `trust` anchors for the CA's TLS
/// certificate, issuing under `ca` (a CA certificate).
pub fn remote(
    at: &str,
    hosts: &crate::net::Hosts,
    identity: &Identity,
    trust: &[Cert],
    ca: Cert,
) -> Result<RemoteCa, RemoteCaError> {
    if !crate::keys::trust::is_ca(&ca) {
        return Err(RemoteCaError::NotCa(ca.source.display().to_string()));
    }
    let ca = ca.cert;
    let target = Target::parse(at, hosts)?;
    if target.transport != Transport::Tls {
        return Err(RemoteCaError::NotTls(at.to_owned()));
    }
    let tls = TlsSetup::new(Some(identity), trust)?;
    let from = identity
        .cert
        .uri()
        .unwrap_or_else(|| format!("sip:{}", local_name(target.addr)));
    Ok(RemoteCa {
        at: at.to_owned(),
        target,
        tls,
        ca,
        from,
    })
}

fn local_name(addr: SocketAddr) -> String {
    addr.ip().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;

    fn repo(p: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
    }

    fn cert(p: &str) -> Cert {
        Cert::load(&repo(p)).unwrap()
    }

    /// A remote CA of realm a.example.com (the demo CA), and a 200 from
    /// it carrying `certs`.
    fn remote_and_answer(certs: &[Cert]) -> (RemoteCa, Message) {
        let identity = Identity::load_dir(&repo("keys/proxy-a")).unwrap();
        let trust = Cert::load_tree(&repo("keys/trust.pem")).unwrap();
        let ca = cert("keys/ca/a.example.com/cert.pem");
        let remote = remote(
            "tls:127.0.0.1:5061",
            &Default::default(),
            &identity,
            &trust,
            ca,
        )
        .unwrap();
        let body = certs_only(certs).unwrap();
        let mut bytes = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:registrar.a.example.com>;tag=1\r\nTo: <sip:alice@a.example.com>;tag=2\r\nCall-ID: 1@a\r\nCSeq: 1 PUBLISH\r\nContent-Type: {CERTS_ONLY}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend(body);
        (remote, Message::parse(&bytes).unwrap())
    }

    fn spki(c: &Cert) -> Key {
        c.cert.tbs_certificate().subject_public_key_info().clone()
    }

    /// A CA that lets proxy-b's registrar ask for b.example.com only,
    /// and what it says to a PUBLISH from it for the AOR `to`.
    fn asked_by_b(to: &str) -> Result<Asked, Stop> {
        let registrar = Arc::new(cert("keys/proxy-b/cert.pem"));
        let names = sip_identities(&registrar);
        assert!(!names.is_empty());
        let live = LiveCa {
            ca: Ca::load(&repo("keys/ca/a.example.com")).unwrap(),
            allow: names
                .iter()
                .map(|n| (n.clone(), "b.example.com".to_owned()))
                .collect(),
            max_validity: MAX_VALIDITY,
            ctx: std::sync::Mutex::new(Context::new(Some(b"ca"), None)),
        };
        let key = spki(&cert("keys/bob/cert.pem")).to_der().unwrap();
        let mut bytes = format!(
            "PUBLISH sip:ca SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:registrar.b.example.com>;tag=1\r\nTo: <{to}>\r\nCall-ID: 1@b\r\nCSeq: 1 PUBLISH\r\nExpires: 3600\r\nContent-Type: {SPKI_TYPE}\r\nContent-Length: {}\r\n\r\n",
            key.len()
        )
        .into_bytes();
        bytes.extend(key);
        let msg = Message::parse(&bytes).unwrap();
        let peer = Peer {
            transport: Transport::Tls,
            addr: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:5061".parse().unwrap(),
            cert: Some(registrar),
            size: msg.to_bytes().len(),
        };
        live.asked(&msg, &peer, OffsetDateTime::now_utc())
    }

    /// The domain a registrar is allowed for is the AOR's host as every
    /// later comparison reads it (the part after the last `@`,
    /// [`crate::sip::aor::same_aor`]): an AOR whose URI reads as two
    /// hosts (`?` headers with an `@`, a second `@`, a port) is refused,
    /// so that b.example.com's registrar gets nothing that compares as an
    /// a.example.com name.
    #[test]
    fn a_registrar_gets_no_certificate_for_an_aor_that_reads_as_another_domain() {
        let ok = asked_by_b("sip:bob@b.example.com").map(|a| a.aor.text);
        assert_eq!(ok.ok().as_deref(), Some("sip:bob@b.example.com"));
        assert!(asked_by_b("sip:bob@B.Example.COM").is_ok());
        for to in [
            "sip:bob@b.example.com?x=@a.example.com",
            "sip:bob@a.example.com@b.example.com",
            "sip:bob@b.example.com:5060",
            "sip:bob@a.example.com",
            "sip:bob@b.example.com.",
            "sip:b.example.com",
        ] {
            match asked_by_b(to) {
                Ok(a) => panic!("{to}: asked for {}", a.aor),
                Err(Stop::Refuse(answer)) => {
                    assert!(
                        matches!(answer.status, Status::Forbidden | Status::BadRequest),
                        "{to}: {:?}",
                        answer.status
                    );
                }
                Err(_) => panic!("{to}: not a refusal"),
            }
        }
    }

    #[test]
    fn the_registrar_takes_only_the_certificate_it_asked_for() {
        let alice = cert("keys/alice/cert.pem");
        let bob = cert("keys/bob/cert.pem");
        let (remote, answer) = remote_and_answer(std::slice::from_ref(&alice));
        let far = OffsetDateTime::from_unix_timestamp(2_400_000_000).unwrap();
        let aor = Aor::new("sip:alice@a.example.com");
        let key = spki(&alice);
        let ask = |aor: &'_ Aor, key: &'_ Key, until| -> Result<Certificate, String> {
            let ask = IssueAsk {
                aor,
                key,
                csr: None,
                until,
            };
            remote.certificate(&answer, &ask).map_err(|e| e.to_string())
        };
        assert!(ask(&aor, &key, far).is_ok());
        // Another key than the one asked about.
        let err = ask(&aor, &spki(&bob), far).unwrap_err();
        assert!(
            err.contains("no certificate for the key asked about"),
            "{err}"
        );
        // Another AOR.
        let err = ask(&Aor::new("sip:carol@a.example.com"), &key, far).unwrap_err();
        assert!(err.contains("not sip:carol@a.example.com"), "{err}");
        // Valid longer than asked (2045 against 2030), past the skew.
        let soon = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let err = ask(&aor, &key, soon).unwrap_err();
        assert!(err.contains("later than"), "{err}");
        // bob's certificate comes from the CA of b.example.com, not this one.
        let (remote_b, answer_b) = remote_and_answer(std::slice::from_ref(&bob));
        let ask_b = IssueAsk {
            aor: &Aor::new("sip:bob@b.example.com"),
            key: &spki(&bob),
            csr: None,
            until: far,
        };
        let err = remote_b
            .certificate(&answer_b, &ask_b)
            .unwrap_err()
            .to_string();
        assert!(err.contains("answered with a certificate that"), "{err}");
        // A refusal is told as the status.
        let refused = Message::parse(
            b"SIP/2.0 403 Forbidden\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:r.a.example.com>;tag=1\r\nTo: <sip:alice@a.example.com>;tag=2\r\nCall-ID: 1@a\r\nCSeq: 1 PUBLISH\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let ask_a = IssueAsk {
            aor: &aor,
            key: &key,
            csr: None,
            until: far,
        };
        let err = remote
            .certificate(&refused, &ask_a)
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("answered 403"), "{err}");
    }
}
