//! One request through the registrar, as stages: a REGISTER is
//! [`Asked`] (a domain this registrar serves, the AOR in To), then
//! [`Authenticated`] (SIP Digest), then [`Bound`] (one atomic change of
//! the store: nonce count, bindings, certificate), then answered. A stage
//! that cannot go on says why as a [`Stop`], which [`Registrar::handle`]
//! turns into the response in one place.

use time::{Duration, OffsetDateTime};

use super::certs::{self, Granted};
use super::digest::{self, DigestAlgorithm, DigestError, NonceState};
use super::issuer::Issuer;
use super::sealed::{self, Sealing};
use super::stop::{Stop, refuse};
use super::store::{Binding, RegistrarStore};
use super::users::Users;
use super::{DEFAULT_EXPIRES, Handled, Outcome, RegistrarError};
use crate::context::Context;
use crate::envelope::signed::SignatureScheme;
use crate::keys::Identity;
use crate::signing::sign_message;
use crate::sip::aor::{Aor, aor_key};
use crate::sip::headers::{addr_spec, uri_host};
use crate::sip::syntax::NameAddr;
use crate::sip::uri::HopUri;
use crate::sip::{Answer, Message, Status, respond};

/// A REGISTER or PUBLISH for a domain this registrar serves: the AOR it
/// names (To).
pub(super) struct Asked<'m> {
    req: &'m Message,
    aor: Aor,
}

/// Who a request authenticated as, and the nonce count it used.
pub(super) struct Authenticated<'m> {
    asked: Asked<'m>,
    /// The Digest username.
    username: String,
    nonce: String,
    nc: u32,
    made: i64,
    /// Whether the Digest response covers the body (auth-int, or none).
    covered: bool,
}

/// A REGISTER whose change is stored.
pub(super) struct Bound {
    aor: Aor,
    /// The AOR's bindings now.
    bindings: Vec<Binding>,
    /// The expiry granted.
    granted: u32,
    /// The certificate issued or registered: as stored, and answered.
    cert: Option<Granted>,
    /// What the request's body came sealed under: the 200 is sealed back.
    sealed: Option<Sealing>,
    removing: bool,
    /// When it was bound (what the expiries it answers count from).
    now: OffsetDateTime,
}

/// A registrar for one realm.
pub struct Registrar<'a> {
    /// The realm (the domain it registers, and the Digest realm).
    pub realm: &'a str,
    /// The CA that issues certificates: its own directory, or a remote
    /// `sipseal ca`.
    pub ca: &'a dyn Issuer,
    /// The registrar's own identity: it signs the responses that carry
    /// certificates.
    pub identity: &'a Identity,
    /// The credentials (HA1 values).
    pub users: &'a Users,
    /// Bindings, certificates and nonce counts.
    pub store: &'a dyn RegistrarStore,
    /// The longest registration granted (seconds).
    pub max_expires: u32,
    /// The Digest algorithms challenged with, in order (MD5 only when
    /// listed: old clients such as SIPp and libre-based user agents,
    /// which answer only the first challenge, need it first).
    pub algorithms: &'a [DigestAlgorithm],
    /// The registrar's own addresses and names: a Request-URI naming one
    /// of them is for its realm.
    pub own: &'a crate::sip::routing::OwnNames,
    /// How long a nonce stays fresh (seconds).
    pub nonce_lifetime: i64,
    /// The connectivity policy: a certificate query from an AOR the
    /// allow-list does not let reach the AOR asked about gets the same 404
    /// as an unknown one.
    pub policy: Option<&'a crate::policy::Policy>,
    /// What it trusts beyond Digest, and where queries for other domains
    /// go (issue 28: PUBLISH over mutual TLS, signed and forwarded
    /// certificate queries).
    pub trusted: super::Trusted<'a>,
    /// The pre-shared keys registrations may be sealed under, each
    /// naming the AOR it belongs to as its `uri`
    /// ([`sealed::check_psks`]).
    pub psks: &'a [crate::keys::Psk],
}

/// The methods the registrar serves.
const ALLOW: &str = "REGISTER, OPTIONS, PUBLISH";

/// The Expires a PUBLISH asks for (default [`DEFAULT_EXPIRES`]), at
/// most `max`: a positive number, else a 400.
pub(super) fn publication_expires(req: &Message, max: u32) -> Result<u32, Stop> {
    Ok(
        match req.header("Expires").map(|v| v.trim().parse::<u32>()) {
            None => DEFAULT_EXPIRES,
            Some(Ok(n)) if n > 0 => n,
            Some(_) => {
                return Err(refuse(
                    Status::BadRequest,
                    "Expires is not a positive number",
                ));
            }
        }
        .min(max),
    )
}

/// RFC 5626 §4.1: a Contact's instance ID and reg-id.
fn outbound_params(c: &NameAddr) -> (Option<String>, Option<u32>) {
    let instance = c
        .param("+sip.instance")
        .flatten()
        .map(|v| v.trim_start_matches("\"").trim_end_matches("\"").to_owned());
    let reg_id = c.param("reg-id").flatten().and_then(|v| v.parse().ok());
    (instance, reg_id)
}

impl Registrar<'_> {
    /// Answer one request.
    pub fn handle(
        &self,
        req: &Message,
        source: Option<&str>,
        ctx: &mut Context,
    ) -> Result<Handled, RegistrarError> {
        let done = match req.method() {
            Some("REGISTER") => self.register(req, source, ctx),
            Some("OPTIONS") => self.options(req, ctx),
            Some("PUBLISH") => self.publish(req, ctx),
            Some("ACK") => return Err(RegistrarError::Ack),
            _ => Err(Stop::Refuse(Box::new(
                Answer::new(Status::MethodNotAllowed)
                    .with_header("Allow", ALLOW)
                    .because("the registrar answers REGISTER, OPTIONS and PUBLISH"),
            ))),
        };
        match done {
            Ok(handled) => Ok(handled),
            Err(Stop::Failed(e)) => Err(e),
            Err(Stop::Challenge { stale }) => self.challenge(req, stale, ctx),
            Err(Stop::Refuse(answer)) => Ok(Handled {
                response: respond(req, &answer, ctx)?.ok_or(RegistrarError::Ack)?,
                outcome: Outcome::Refused {
                    code: answer.status,
                    why: answer.why.unwrap_or_default(),
                },
            }),
        }
    }

    /// 401 with one WWW-Authenticate per accepted algorithm, in the
    /// configured order.
    fn challenge(
        &self,
        req: &Message,
        stale: bool,
        ctx: &mut Context,
    ) -> Result<Handled, RegistrarError> {
        let secret = self.secret(ctx)?;
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&ctx.bytes(8));
        let nonce = digest::make_nonce(
            secret.as_slice(),
            self.realm,
            ctx.now().unix_timestamp(),
            salt,
        );
        let mut answer = Answer::new(Status::Unauthorized);
        for alg in self.algorithms {
            answer = answer.with_header(
                "WWW-Authenticate",
                digest::challenge(self.realm, &nonce, *alg, stale, !req.body().is_empty()),
            );
        }
        Ok(Handled {
            response: respond(req, &answer, ctx)?.ok_or(RegistrarError::Ack)?,
            outcome: Outcome::Challenged { stale },
        })
    }

    fn secret(&self, ctx: &mut Context) -> Result<zeroize::Zeroizing<[u8; 32]>, RegistrarError> {
        let mut fresh = || {
            let mut s = [0u8; 32];
            s.copy_from_slice(&ctx.bytes(32));
            s
        };
        Ok(self.store.registrar_secret(self.realm, &mut fresh)?)
    }

    /// Whether the Request-URI is for this registrar: its realm, or one
    /// of its own addresses or names (RFC 3261 §10.3 step 1; what SIPp
    /// and many phones send when given the registrar's address).
    pub(super) fn serves(&self, req: &Message) -> bool {
        let Some(uri) = req.request_uri() else {
            return false;
        };
        uri_host(uri).is_some_and(|h| h.eq_ignore_ascii_case(self.realm))
            || HopUri::parse(uri).is_some_and(|u| self.own.names_uri(&u))
    }

    /// The first stage: a domain this registrar serves, and an AOR of it.
    fn asked<'m>(&self, req: &'m Message) -> Result<Asked<'m>, Stop> {
        if !self.serves(req) {
            return Err(refuse(
                Status::NotFound,
                "a domain this registrar does not serve",
            ));
        }
        let aor = req
            .header("To")
            .map(|to| Aor::new(addr_spec(to)))
            .ok_or_else(|| refuse(Status::BadRequest, "no To header"))?;
        Ok(Asked { req, aor })
    }

    /// Digest authentication (RFC 3261 §22.3, RFC 8760): who it is, or
    /// the challenge or refusal that answers it instead.
    fn authenticate<'m>(
        &self,
        asked: Asked<'m>,
        ctx: &mut Context,
    ) -> Result<Authenticated<'m>, Stop> {
        let now = ctx.now();
        let req = asked.req;
        let method = req.method().unwrap_or_default();
        let secret = self.secret(ctx)?;
        let Some(value) = req.header("Authorization") else {
            return Err(Stop::Challenge { stale: false });
        };
        let creds = match digest::parse_authorization(value) {
            Ok(c) => c,
            Err(DigestError::Malformed(why)) => return Err(refuse(Status::BadRequest, why)),
            Err(DigestError::Unsupported(_)) => return Err(Stop::Challenge { stale: false }),
        };
        if creds.realm != self.realm || !self.algorithms.contains(&creds.algorithm) {
            return Err(Stop::Challenge { stale: false });
        }
        // L1: the credentials are for this request's Request-URI (RFC
        // 2617 §3.2.2.5), and cover its body when it has one (a captured
        // Authorization could otherwise carry another CSR).
        let ruri = req.request_uri().unwrap_or_default().trim();
        if !creds.uri.trim().eq_ignore_ascii_case(ruri) {
            return Err(refuse(
                Status::BadRequest,
                format!(
                    "the Authorization uri {:?} is not the Request-URI",
                    creds.uri
                ),
            ));
        }
        // A body must be covered: by auth-int, or (checked once it is
        // opened) by being sealed under a key of the AOR's own.
        let covered = req.body().is_empty() || creds.qop == digest::Qop::AuthInt;
        if !covered && !sealed::is_sealed(req) {
            return Err(Stop::Challenge { stale: false });
        }
        // What the users file holds for this username, and whether the
        // credentials answer the challenge with it.
        let user = self.users.get(self.realm, &creds.username);
        let (aor, ha1) = (
            user.map(|u| u.aor.as_str()),
            user.and_then(|u| u.ha1(creds.algorithm)),
        );
        let holds = || digest::user_of(aor, ha1, &creds, method, req.body(), secret.as_slice());
        let nonce = digest::check_nonce(
            secret.as_slice(),
            self.realm,
            &creds.nonce,
            now.unix_timestamp(),
            self.nonce_lifetime,
        );
        let made = match nonce {
            NonceState::Fresh(made) => made,
            NonceState::Foreign => return Err(Stop::Challenge { stale: false }),
            // Stale: said so only to the right password.
            _ if holds().is_some() => {
                return Err(Stop::Challenge { stale: true });
            }
            _ => {
                return Err(refuse(Status::Forbidden, "wrong credentials (stale nonce)"));
            }
        };
        let Some(user_aor) = holds() else {
            return Err(refuse(Status::Forbidden, "wrong credentials"));
        };
        // The users file holds sip:user@domain AORs only (`users add`
        // refuses others): compared by key, as RFC 3261 §19.1.4 has it.
        if aor_key(&user_aor) != asked.aor.key {
            let why = format!(
                "{} may register {user_aor}, not {}",
                creds.username, asked.aor
            );
            return Err(refuse(Status::Forbidden, why));
        }
        Ok(Authenticated {
            asked,
            username: creds.username,
            nonce: creds.nonce,
            nc: creds.nc,
            made,
            covered,
        })
    }

    /// When the nonce `a` used expires (then its counts are forgotten).
    fn nonce_expires(&self, a: &Authenticated<'_>, now: OffsetDateTime) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(a.made + self.nonce_lifetime).unwrap_or(now)
    }

    fn register(
        &self,
        req: &Message,
        source: Option<&str>,
        ctx: &mut Context,
    ) -> Result<Handled, Stop> {
        let asked = self.asked(req)?;
        let authenticated = self.authenticate(asked, ctx)?;
        let bound = self.bind(authenticated, source, ctx)?;
        self.registered(req, bound, ctx)
    }

    /// The third stage: the Contacts, Expires and body read, a
    /// certificate issued or checked, and one atomic change stored: the
    /// nonce count, the bindings, the certificate.
    fn bind(
        &self,
        a: Authenticated<'_>,
        source: Option<&str>,
        ctx: &mut Context,
    ) -> Result<Bound, Stop> {
        let req = a.asked.req;
        let aor = &a.asked.aor;
        let now = ctx.now();
        let call_id = req
            .call_id()
            .map_err(crate::sip::ComposeError::from)?
            .to_owned();
        let cseq = req.cseq().map_err(crate::sip::ComposeError::from)?.seq;
        let star = req.header_list("Contact").contains(&"*");
        let contacts = req.contacts().map_err(crate::sip::ComposeError::from)?;
        let header_expires = match req.header("Expires") {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| refuse(Status::BadRequest, "Expires is not a number"))?,
            ),
        };
        let requested = |c: &NameAddr| -> u32 {
            c.param("expires")
                .flatten()
                .and_then(|v| v.parse().ok())
                .or(header_expires)
                .unwrap_or(DEFAULT_EXPIRES)
        };
        // RFC 3261 §10.3 step 6: `*` only with Expires: 0 and alone.
        if star && (header_expires != Some(0) || !contacts.is_empty()) {
            return Err(refuse(
                Status::BadRequest,
                "Contact: * needs Expires: 0 and no other Contact",
            ));
        }
        let removing = star || (!contacts.is_empty() && contacts.iter().all(|c| requested(c) == 0));
        let granted = contacts
            .iter()
            .map(|c| requested(c).min(self.max_expires))
            .max()
            .unwrap_or(0);
        let until = now + Duration::seconds(i64::from(granted));
        // RFC 3327: the proxies between the UA and here, to reach it through.
        let path: Vec<String> = req
            .header_list("Path")
            .into_iter()
            .map(str::to_owned)
            .collect();
        // A replayed sealed REGISTER is challenged before its body costs
        // a key unwrap or PBKDF2's iterations (the count is used for real
        // under the lock below).
        let nonce_expires = self.nonce_expires(&a, now);
        if sealed::is_sealed(req) {
            let mut record = self.store.load_aor(self.realm, aor)?;
            record.expire(now);
            if !record.use_nonce(&a.nonce, a.nc, nonce_expires) {
                return Err(Stop::Challenge { stale: false });
            }
        }
        // The body opened (when sealed) and the certificate it asks for,
        // checked before anything is stored.
        let (plain, sealed) = sealed::open_register(self, req, aor, &a.username, ctx)?;
        // Under qop=auth (a phone behind `sipseal edge`, whose Digest
        // cannot cover the CSR the edge added: issue 30) the body counts
        // as the user's only when it opened under a PSK of this AOR or
        // its password: whoever changed it would have needed that key.
        // Sealed for the registrar's certificate alone, anyone could
        // have made it.
        if !a.covered && !matches!(sealed, Some(Sealing::Psk(_) | Sealing::Password(_))) {
            return Err(Stop::Challenge { stale: false });
        }
        let refresh = !contacts.is_empty();
        let cert = certs::for_binding(self, &plain, aor, removing, refresh, until, ctx)?;
        let mut replay = false;
        let mut bindings: Vec<Binding> = Vec::new();
        self.store.update_aor(self.realm, aor, &mut |r| {
            r.expire(now);
            if !r.use_nonce(&a.nonce, a.nc, nonce_expires) {
                replay = true;
                return;
            }
            if removing {
                // The record is the AOR's own: every entry in it is the AOR's.
                r.bindings
                    .retain(|b| !(star || contacts.iter().any(|c| c.uri == b.contact)));
                if r.bindings.is_empty() {
                    for c in r.certificates.iter_mut() {
                        c.withdrawn.get_or_insert(now);
                    }
                }
            } else {
                for c in &contacts {
                    let expires =
                        now + Duration::seconds(i64::from(requested(c).min(self.max_expires)));
                    let (instance, reg_id) = outbound_params(c);
                    // RFC 5626 §6: one binding per instance and reg-id,
                    // whatever its Contact (the UA's address changed).
                    r.bindings.retain(|b| {
                        !(b.contact == c.uri
                            || (instance.is_some() && b.instance == instance && b.reg_id == reg_id))
                    });
                    r.bindings.push(Binding {
                        aor: aor.text.clone(),
                        contact: c.uri.clone(),
                        expires,
                        source: source.map(str::to_owned),
                        call_id: call_id.clone(),
                        cseq,
                        path: path.clone(),
                        instance,
                        reg_id,
                    });
                }
                if let Some(g) = &cert {
                    r.certificates.push(g.stored.clone());
                }
            }
            bindings = r.bindings.clone();
        })?;
        if replay {
            // The same nonce count twice: a replay (the server transaction
            // layer answers a retransmission before it gets here); either
            // way, authenticate afresh.
            return Err(Stop::Challenge { stale: false });
        }
        Ok(Bound {
            aor: a.asked.aor,
            bindings,
            granted,
            cert,
            sealed,
            removing,
            now,
        })
    }

    /// The last stage: 200 with the AOR's bindings (each Contact with its
    /// expiry, instance and reg-id), the Path when the UA supports it, and
    /// the certificate when one was issued or stored.
    fn registered(&self, req: &Message, bound: Bound, ctx: &mut Context) -> Result<Handled, Stop> {
        let now = bound.now;
        let mut headers: Vec<(String, String)> = bound
            .bindings
            .iter()
            .map(|b| {
                let left = (b.expires - now).whole_seconds().max(0);
                let mut contact = format!("<{}>;expires={left}", b.contact);
                if let Some(i) = &b.instance {
                    contact.push_str(&format!(";+sip.instance=\"{i}\""));
                }
                if let Some(r) = b.reg_id {
                    contact.push_str(&format!(";reg-id={r}"));
                }
                ("Contact".to_owned(), contact)
            })
            .collect();
        headers.push(("Expires".into(), bound.granted.to_string()));
        let supports = |tag: &str| {
            req.header_list("Supported")
                .iter()
                .any(|t| t.trim().eq_ignore_ascii_case(tag))
        };
        if supports("path") {
            for p in req.header_list("Path") {
                headers.push(("Path".into(), p.to_owned()));
            }
        }
        // RFC 5626 §6: outbound processing was applied (an instance and
        // reg-id, registered directly or through an edge proxy that marks
        // its Path with `ob`).
        let outbound = bound.bindings.iter().any(|b| {
            b.reg_id.is_some()
                && b.instance.is_some()
                && b.path.first().is_none_or(|p| p.contains(";ob"))
        });
        if outbound && supports("outbound") && !bound.removing {
            headers.push(("Require".into(), "outbound".into()));
        }
        let response = match (&bound.cert, &bound.sealed) {
            (Some(granted), Some(sealing)) => {
                self.ok_sealed(req, headers, granted, sealing, ctx)?
            }
            (cert, _) => self.ok(req, headers, cert.as_ref(), ctx)?,
        };
        let outcome = if bound.removing {
            Outcome::Removed {
                aor: bound.aor.text,
            }
        } else {
            Outcome::Registered {
                aor: bound.aor.text,
                expires: bound.granted,
                certificate: bound.cert.map(|g| g.stored.serial),
            }
        };
        Ok(Handled { response, outcome })
    }

    /// The 200 with `headers`; with a certificate granted, its certs-only
    /// body, the response outer-signed by the registrar.
    pub(super) fn ok(
        &self,
        req: &Message,
        headers: Vec<(String, String)>,
        granted: Option<&Granted>,
        ctx: &mut Context,
    ) -> Result<Message, RegistrarError> {
        let Some(granted) = granted else {
            let mut answer = Answer::new(Status::Ok);
            answer.headers = headers;
            return respond(req, &answer, ctx)?.ok_or(RegistrarError::Ack);
        };
        let response = self.certs_answer(req, headers, granted, ctx)?;
        self.sign(&response, ctx)
    }

    /// The 200 with `headers` and the certs-only body of `granted`, not
    /// signed yet.
    fn certs_answer(
        &self,
        req: &Message,
        headers: Vec<(String, String)>,
        granted: &Granted,
        ctx: &mut Context,
    ) -> Result<Message, RegistrarError> {
        let mut answer = Answer::new(Status::Ok);
        answer.headers = headers;
        let answer = answer
            .with_header(
                "Content-Disposition",
                "attachment; filename=smime.p7c; handling=required",
            )
            .with_body(granted.body.clone());
        respond(req, &answer, ctx)?.ok_or(RegistrarError::Ack)
    }

    /// `response` outer-signed by the registrar.
    fn sign(&self, response: &Message, ctx: &mut Context) -> Result<Message, RegistrarError> {
        Ok(sign_message(
            response,
            self.identity,
            SignatureScheme::Pkcs1v15,
            &[],
            ctx,
        )?)
    }

    /// The 200 of a REGISTER that came sealed (docs/SPEC.md §6, issue
    /// 28): its certs-only body sealed for the registrant
    /// ([`sealed::seal_answer`]: the certificate's key, and the PSK or
    /// password the request used), then outer-signed.
    fn ok_sealed(
        &self,
        req: &Message,
        headers: Vec<(String, String)>,
        granted: &Granted,
        sealing: &Sealing,
        ctx: &mut Context,
    ) -> Result<Message, Stop> {
        let response = self.certs_answer(req, headers, granted, ctx)?;
        let sealed = sealed::seal_answer(&response, granted, sealing, ctx)?;
        Ok(self.sign(&sealed, ctx)?)
    }

    /// PUBLISH with a CSR (the simplified CA): authenticated as a
    /// REGISTER is, the same checks, a certificate valid for the
    /// publication's Expires (no binding), answered in the 200 OK. Over
    /// mutual TLS from the AOR's owner, no Digest, and a certificate or a
    /// bare key is taken too ([`Registrar::publish_as_owner`]).
    fn publish(&self, req: &Message, ctx: &mut Context) -> Result<Handled, Stop> {
        let asked = self.asked(req)?;
        if self.peer_is(&asked.aor)? {
            let expires = publication_expires(req, self.max_expires)?;
            return self.publish_as_owner(req, asked.aor, expires, ctx);
        }
        let a = self.authenticate(asked, ctx)?;
        // A PUBLISH's body is never sealed: auth-int must cover it.
        if !a.covered {
            return Err(Stop::Challenge { stale: false });
        }
        let aor = a.asked.aor.clone();
        let now = ctx.now();
        let expires = publication_expires(req, self.max_expires)?;
        let until = now + Duration::seconds(i64::from(expires));
        let granted = certs::for_publication(self, req, &aor, until, ctx)?;
        let nonce_expires = self.nonce_expires(&a, now);
        let mut replay = false;
        self.store.update_aor(self.realm, &aor, &mut |r| {
            r.expire(now);
            if !r.use_nonce(&a.nonce, a.nc, nonce_expires) {
                replay = true;
                return;
            }
            r.certificates.push(granted.stored.clone());
        })?;
        if replay {
            return Err(Stop::Challenge { stale: false });
        }
        let headers = vec![
            ("SIP-ETag".to_owned(), granted.stored.serial.clone()),
            ("Expires".to_owned(), expires.to_string()),
        ];
        let response = self.ok(req, headers, Some(&granted), ctx)?;
        Ok(Handled {
            response,
            outcome: Outcome::Registered {
                aor: aor.text,
                expires,
                certificate: Some(granted.stored.serial),
            },
        })
    }

    /// OPTIONS: a certificate query when it asks for a certificate
    /// (`Accept: application/pkix-cert`, or a [`CERT_QUERY`] header);
    /// else a keep-alive ping, answered 200 with what the registrar
    /// serves.
    fn options(&self, req: &Message, ctx: &mut Context) -> Result<Handled, Stop> {
        if super::query::asks(req) {
            return self.query(req, ctx);
        }
        let answer = Answer::new(Status::Ok)
            .with_header("Allow", ALLOW)
            .with_header(
                "Accept",
                format!(
                    "application/pkcs10, application/pkix-cert, application/pkcs7-mime, {}",
                    super::SPKI_TYPE
                ),
            )
            .with_header("Supported", "path, outbound");
        Ok(Handled {
            response: respond(req, &answer, ctx)?.ok_or(RegistrarError::Ack)?,
            outcome: Outcome::Alive,
        })
    }
}
