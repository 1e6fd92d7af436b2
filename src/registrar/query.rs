//! Certificate queries (docs/SPEC.md §6, issue 28): an OPTIONS for an
//! AOR, signed by the requester when it says who it is, answered with the
//! AOR's certificate (or, to a trusted requester, its bare key), its
//! location and the registration's expiry; or, for a domain this
//! registrar does not serve, forwarded to that domain's registrar and its
//! answer relayed back.
//!
//! Who is asking: a query whose outer signature verifies (chain to the
//! registrar's trust anchors and its CA, the signer's SAN URI the From
//! AOR, the signed sipfrag and query headers as sent, its signed Date
//! within the nonce lifetime of now: no replay later) is from its From
//! AOR; so is an unsigned one over mutual TLS whose client certificate
//! names the From AOR. Such a requester is *trusted*: it is given the
//! location (Contact) and a bare key, the connectivity policy allowing.
//! Anyone else gets the certificate and the expiry only, as before.

use time::OffsetDateTime;

use super::certs::SPKI_TYPE;
use super::stop::{Stop, refuse};
use super::store::Registry;
use super::{CERT_QUERY, Handled, Outcome, Registrar, RegistrarError};
use crate::context::Context;
use crate::envelope::signed::SignatureScheme;
use crate::keys::Cert;
use crate::signing::{outer_signature, sign_message_covering};
use crate::sip::aor::{Aor, same_aor};
use crate::sip::compose::Body;
use crate::sip::headers::{addr_spec, uri_host};
use crate::sip::{Answer, Message, Status, respond};

/// What the registrar trusts and reaches beyond Digest (issue 28): the
/// TLS peer's certificate, the anchors a signed query chains to, whether
/// an unsigned query is refused, and where a query for another domain
/// goes.
#[derive(Clone, Copy, Default)]
pub struct Trusted<'a> {
    /// The certificate the TLS client proved it holds (verified against
    /// the listener's trust anchors), when the request came over TLS.
    pub peer: Option<&'a Cert>,
    /// Trust anchors a signed query's signer must chain to, besides the
    /// registrar's CA.
    pub anchors: &'a [Cert],
    /// Refuse an unsigned certificate query (495).
    pub require_signed_queries: bool,
    /// Where a query for a domain this registrar does not serve goes;
    /// `None`: it is a 404.
    pub forward: Option<&'a dyn Forward>,
}

/// Sends a request to another domain's registrar and returns its final
/// response (RFC 3263 location: a hosts table, else DNS).
pub trait Forward: Sync {
    /// `req` (its top Via this registrar's) to the registrar of `domain`.
    fn forward(&self, req: &Message, domain: &str) -> Result<Message, ForwardError>;
}

/// Why a query could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No registrar could be found for the domain: the destination cannot
    /// be determined (404).
    #[error("no registrar found for {domain}: {why}")]
    Unlocated {
        /// The domain.
        domain: String,
        /// Why.
        why: String,
    },
    /// The domain's registrar was found but gave no final answer in time
    /// (504).
    #[error("the registrar of {domain} ({at}) did not answer: {why}")]
    Unanswered {
        /// The domain.
        domain: String,
        /// Where it was looked for.
        at: String,
        /// Why.
        why: String,
    },
}

/// The Max-Forwards a forwarded query gets at most (RFC 3261 §8.1.1.6).
const MAX_FORWARDS: u32 = 70;

/// The headers of a query's answer its signature covers besides the
/// usual ones (in its sipfrag): where the AOR is, and until when.
pub const ANSWER_COVERS: [&str; 2] = ["Contact", "Expires"];

/// The agent a Warning names.
const AGENT: &str = "registrar";

/// Whether an OPTIONS asks for a certificate or a key (`Accept:
/// application/pkix-cert` or [`SPKI_TYPE`], or a [`CERT_QUERY`] header):
/// a query; else it is a keep-alive.
pub(super) fn asks(req: &Message) -> bool {
    req.header(CERT_QUERY).is_some() || accepts(req, "application/pkix-cert") || wants_key(req)
}

/// Whether it asks for the bare key.
fn wants_key(req: &Message) -> bool {
    accepts(req, SPKI_TYPE)
}

fn accepts(req: &Message, mime: &str) -> bool {
    req.header_list("Accept").iter().any(|a| {
        a.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(mime))
    })
}

/// The query headers a signed query's body carries, so that the
/// signature covers what is asked.
pub const SIGNED_QUERY_HEADERS: [&str; 2] = ["Accept", CERT_QUERY];

/// The media type of a signed query's body: its [`SIGNED_QUERY_HEADERS`]
/// as header lines (a `message/sipfrag` would be taken for the outer
/// signature's own sipfrag).
pub const SIGNED_QUERY_TYPE: &str = "application/x-sipseal-certquery";

/// What was found for a query.
enum Found {
    Cert(super::store::StoredCert),
    Key(String, String),
}

impl Registrar<'_> {
    /// A certificate query: who asks ([`Registrar::requester`]), the
    /// policy, then forwarded when the AOR is another domain's; else 200
    /// with the AOR's current certificate (valid now, not withdrawn, its
    /// binding registered or published), or with a [`CERT_QUERY`] header
    /// 200 when the certificate of that SHA-256 fingerprint is still such
    /// a one, or to a trusted requester asking for [`SPKI_TYPE`] the
    /// newest key it published (else its certificate's); signed by the
    /// registrar, with `Expires` (seconds the registration, or without a
    /// binding the publication, has left) and, to a trusted requester,
    /// each live binding as `Contact: <URI>;expires=N`. Every other case
    /// is the same 404: nothing tells an unknown AOR from a withdrawn or
    /// expired one, or from one the policy hides.
    pub(super) fn query(&self, req: &Message, ctx: &mut Context) -> Result<Handled, Stop> {
        let now = ctx.now();
        let trusted = self.requester(req, now)?;
        let aor = Aor::new(req.header("To").map(addr_spec).unwrap_or_default());
        let from = req.aor("From").unwrap_or_default();
        let allowed = self.policy.is_none_or(|p| p.allows(from, &aor.text));
        let domain = uri_host(&aor.text).unwrap_or_default().to_ascii_lowercase();
        if allowed && !domain.is_empty() && !domain.eq_ignore_ascii_case(self.realm) {
            return self.forward_query(req, &aor, &domain);
        }
        let served = allowed && self.serves(req) && domain.eq_ignore_ascii_case(self.realm);
        let registry = self.store.load_aor(self.realm, &aor)?;
        let found = if served {
            find(&registry, req, &aor, trusted.is_some(), now)?
        } else {
            None
        };
        let Some(found) = found else {
            return Err(refuse(
                Status::NotFound,
                if allowed {
                    format!("no current certificate for {aor}")
                } else {
                    format!("the policy does not let {from} reach {aor}")
                },
            ));
        };
        let mut answer = Answer::new(Status::Ok);
        if trusted.is_some() {
            for b in registry.live_bindings(&aor.text, now) {
                let left = (b.expires - now).whole_seconds().max(0);
                answer = answer.with_header("Contact", format!("<{}>;expires={left}", b.contact));
            }
        }
        let ends = registry.registered_until(&aor.text, now).or(match &found {
            Found::Cert(c) => Some(c.not_after),
            Found::Key(..) => registry.current_key(&aor.text, now).map(|k| k.expires),
        });
        if let Some(ends) = ends {
            let left = (ends - now).whole_seconds().max(0);
            answer = answer.with_header("Expires", left.to_string());
        }
        let (body, outcome) = match found {
            Found::Cert(stored) => {
                let (_, der) = der::pem::decode_vec(stored.pem.as_bytes())
                    .map_err(|e| crate::keys::KeyError::Generate(e.to_string()))?;
                (
                    (
                        "cert.der",
                        Body {
                            content_type: "application/pkix-cert".into(),
                            bytes: der,
                        },
                    ),
                    Outcome::Found {
                        aor: aor.text.clone(),
                        serial: stored.serial,
                    },
                )
            }
            Found::Key(sha256, pem) => {
                let (_, der) = der::pem::decode_vec(pem.as_bytes())
                    .map_err(|e| crate::keys::KeyError::Generate(e.to_string()))?;
                (
                    (
                        "key.der",
                        Body {
                            content_type: SPKI_TYPE.into(),
                            bytes: der,
                        },
                    ),
                    Outcome::FoundKey {
                        aor: aor.text.clone(),
                        sha256,
                    },
                )
            }
        };
        let (file, body) = body;
        let answer = answer
            .with_header(
                "Content-Disposition",
                format!("attachment; filename={file}; handling=required"),
            )
            .with_body(body);
        let response = respond(req, &answer, ctx)?.ok_or(RegistrarError::Ack)?;
        // The location and expiry are the registrar's word too: signed.
        let response = sign_message_covering(
            &response,
            self.identity,
            SignatureScheme::Pkcs1v15,
            &[],
            &ANSWER_COVERS,
            ctx,
        )?;
        Ok(Handled { response, outcome })
    }

    /// Who asks, when it proved it (`Some(From AOR)`): a query whose outer
    /// signature verifies as its From party's, or one over mutual TLS
    /// whose client certificate names the From AOR. A signature that does
    /// not verify is a 403; an unsigned query under
    /// `require_signed_queries` a 495 whose Warning says how to sign.
    fn requester(&self, req: &Message, now: OffsetDateTime) -> Result<Option<String>, Stop> {
        let from = req.aor("From").unwrap_or_default().to_owned();
        let outer = outer_signature(req).map_err(|e| {
            refuse(
                Status::BadRequest,
                format!("the query's signature does not read: {e}"),
            )
        })?;
        let Some(outer) = outer else {
            if self.trusted.require_signed_queries {
                return Err(Stop::Refuse(Box::new(
                    Answer::new(Status::SignatureRequired)
                        .with_warning(
                            AGENT,
                            "this registrar answers signed certificate queries only: sign it (sipseal certquery --sign DIR)",
                        )
                        .because("an unsigned certificate query (--require-signed-queries)"),
                )));
            }
            let by_channel = match self.trusted.peer {
                Some(peer) => {
                    peer.uri().is_some_and(|u| same_aor(&u, &from))
                        && !self.withdrawn(&from, &[peer])?
                }
                None => false,
            };
            return Ok(by_channel.then_some(from));
        };
        let mut anchors = self.trusted.anchors.to_vec();
        anchors.push(Cert {
            cert: self.ca.ca_cert().clone(),
            source: "the CA".into(),
        });
        let opts = crate::verify::VerifyOptions {
            anchors: &anchors,
            at: now,
            min_route_level: None,
            received_from: None,
            crls: None,
        };
        let report = crate::verify::verify_outer(req, &outer, &opts);
        let mut problems: Vec<String> = report
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.check, c.detail))
            .collect();
        if report.role != Some("ua") && problems.is_empty() {
            problems.push(format!("the signer is not the From AOR {from}"));
        }
        // Not one this registrar withdrew (its CRL lists it): the chain
        // check does not know.
        let signers = crate::envelope::signed::certs_of(&outer.signature).unwrap_or_default();
        let naming: Vec<&Cert> = signers
            .iter()
            .filter(|c| c.uri().is_some_and(|u| same_aor(&u, &from)))
            .collect();
        if self.withdrawn(&from, &naming)? {
            problems.push("the signer's certificate was withdrawn".into());
        }
        // Fresh: a query overheard and sent again by another would get the
        // location too. Its signed Date (headers checked above) within
        // the nonce lifetime of now.
        let date = outer
            .sipfrag_header("Date")
            .and_then(crate::signing::parse_sip_date);
        match date {
            Some(d) if (now - d).whole_seconds().abs() <= self.nonce_lifetime => {}
            Some(d) => problems.push(format!(
                "its signed Date is {} s from now, over {} (replayed, or a clock off)",
                (now - d).whole_seconds(),
                self.nonce_lifetime
            )),
            None => problems.push("no signed Date it can read".into()),
        }
        // The question itself is signed: the body repeats it.
        let signed = signed_headers(&outer.payload.body);
        for name in SIGNED_QUERY_HEADERS {
            let sent = req.header(name).map(str::trim);
            let held = signed
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim());
            if sent != held {
                problems.push(format!("{name} is {sent:?}, signed {held:?}"));
            }
        }
        if problems.is_empty() {
            Ok(Some(from))
        } else {
            Err(Stop::Refuse(Box::new(
                Answer::new(Status::Forbidden)
                    .with_warning(AGENT, "the query's signature does not verify")
                    .because(format!(
                        "a certificate query whose signature does not verify: {}",
                        problems.join("; ")
                    )),
            )))
        }
    }

    /// A query for `domain`, which this registrar does not serve: sent on
    /// to that domain's registrar with this registrar's Via on top and
    /// Max-Forwards one less (483 at 0; 482 when its own Via is in it
    /// already: a loop), and its answer relayed back, this Via taken off
    /// (the requester checks the foreign registrar's signature). 404 when
    /// no registrar is found for the domain (or there is no forwarding);
    /// 504 when the one found does not answer in time.
    fn forward_query(&self, req: &Message, aor: &Aor, domain: &str) -> Result<Handled, Stop> {
        let Some(forward) = self.trusted.forward else {
            return Err(refuse(
                Status::NotFound,
                format!("{aor}: a domain this registrar does not serve (no forwarding)"),
            ));
        };
        let hops = match req.header("Max-Forwards") {
            None => MAX_FORWARDS,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map_err(|_| refuse(Status::BadRequest, "Max-Forwards is not a number"))?,
        };
        if hops == 0 {
            return Err(refuse(
                Status::TooManyHops,
                format!("Max-Forwards 0 on a query for {aor}"),
            ));
        }
        let branch = self.loop_branch(req);
        let looped = req
            .vias()
            .map(|vs| vs.iter().any(|v| v.branch() == Some(branch.as_str())))
            .unwrap_or(false);
        if looped {
            return Err(refuse(
                Status::LoopDetected,
                format!("the query for {aor} came back to this registrar"),
            ));
        }
        let mut out = req.clone();
        out.set_header("Max-Forwards", &(hops - 1).min(MAX_FORWARDS).to_string());
        // This Via on top, the others after it on one line: the client
        // transaction writes the top entry's transport and address, and
        // keeps only the first Via line.
        let mut vias = vec![format!("SIP/2.0/TCP {};branch={branch}", self.realm)];
        vias.extend(
            req.header_list("Via")
                .into_iter()
                .map(|v| v.trim().to_owned()),
        );
        let at = out.headers().iter().position(|h| h.is("Via")).unwrap_or(0);
        out.remove_headers("Via");
        out.insert_header(at, "Via", &vias.join(", "));
        let at = req.request_uri().unwrap_or_default().to_owned();
        if at != aor.text {
            // A query sent to this registrar's own address: the AOR is
            // what the next registrar serves.
            out.set_start_line(crate::sip::message::StartLine::Request {
                method: "OPTIONS".into(),
                uri: aor.text.clone(),
            });
        }
        match forward.forward(&out, domain) {
            Ok(answer) => {
                let ours = answer
                    .top_via()
                    .ok()
                    .and_then(|v| v.branch().map(str::to_owned))
                    .is_some_and(|b| b == branch);
                let back = crate::sip::routing::forward_response(&answer).filter(|_| ours);
                let Some(back) = back else {
                    return Err(refuse(
                        Status::ServerTimeout,
                        format!("the registrar of {domain} answered another request"),
                    ));
                };
                let status = back.status().unwrap_or_default();
                Ok(Handled {
                    response: back,
                    outcome: Outcome::Forwarded {
                        aor: aor.text.clone(),
                        domain: domain.to_owned(),
                        status,
                    },
                })
            }
            Err(e @ ForwardError::Unlocated { .. }) => Err(refuse(Status::NotFound, e.to_string())),
            Err(e @ ForwardError::Unanswered { .. }) => Err(Stop::Refuse(Box::new(
                Answer::new(Status::ServerTimeout)
                    .with_warning(
                        AGENT,
                        &format!("the registrar of {domain} did not answer; try again later"),
                    )
                    .because(e.to_string()),
            ))),
        }
    }

    /// The branch this registrar's Via gets on a forwarded query: made
    /// from its realm and the query's identity (Call-ID, CSeq, From tag),
    /// so that the same query coming back is recognised (RFC 3261 §16.3
    /// item 4, §16.6 item 8).
    fn loop_branch(&self, req: &Message) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for part in [
            self.realm.to_ascii_lowercase().as_str(),
            req.header("Call-ID").unwrap_or_default().trim(),
            req.header("CSeq").unwrap_or_default().trim(),
            req.header("From").unwrap_or_default().trim(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        format!("z9hG4bK-rq-{}", hex::encode(&h.finalize()[..10]))
    }
}

/// What a query finds for `aor` in `registry`: a certificate (the
/// current one, or the one a [`CERT_QUERY`] names), or, for a `trusted`
/// requester asking for one, a key.
fn find(
    registry: &Registry,
    req: &Message,
    aor: &Aor,
    trusted: bool,
    now: OffsetDateTime,
) -> Result<Option<Found>, Stop> {
    let wanted = req
        .header(CERT_QUERY)
        .map(|v| v.trim().to_ascii_lowercase());
    let mut current = registry.current_certs(&aor.text, now);
    let cert = match wanted {
        None => current.last(),
        Some(q) => {
            let hex = q
                .strip_prefix("sha-256")
                .map(|h| h.trim().replace(':', ""))
                .unwrap_or_default();
            current.find(|s| s.sha256 == hex)
        }
    };
    let Some(cert) = cert else {
        return Ok(None);
    };
    if !wants_key(req) {
        return Ok(Some(Found::Cert(cert.clone())));
    }
    if !trusted {
        return Ok(None);
    }
    if let Some(key) = registry.current_key(&aor.text, now) {
        return Ok(Some(Found::Key(key.sha256.clone(), key.pem.clone())));
    }
    // No bare key published: the current certificate's.
    let (_, der) = der::pem::decode_vec(cert.pem.as_bytes())
        .map_err(|e| crate::keys::KeyError::Generate(e.to_string()))?;
    let c = Cert::from_der(&der, "the registry")?;
    let spki = c.cert.tbs_certificate().subject_public_key_info();
    let failed =
        |e: der::Error| Stop::Failed(crate::keys::KeyError::Generate(e.to_string()).into());
    let spki_der = der::Encode::to_der(spki).map_err(failed)?;
    let pem = der::EncodePem::to_pem(spki, der::pem::LineEnding::LF).map_err(failed)?;
    use sha2::Digest;
    Ok(Some(Found::Key(
        hex::encode(sha2::Sha256::digest(&spki_der)),
        pem,
    )))
}

/// The header lines of a signed query's body.
fn signed_headers(body: &[u8]) -> Vec<(String, String)> {
    match mailparse::parse_headers(body) {
        Ok((hs, _)) => hs.iter().map(|h| (h.get_key(), h.get_value())).collect(),
        Err(_) => Vec::new(),
    }
}
