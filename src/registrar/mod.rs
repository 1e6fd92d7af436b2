//! The registrar (SPEC §6): REGISTER authenticated by SIP Digest, a
//! certificate issued from the CSR it carries (notAfter = the granted
//! registration expiry) or a certificate registered as it is, bindings and
//! certificates kept per realm ([`store`]), and the 200 OK carrying the
//! certificate and chain as certs-only, outer-signed by the registrar.
//!
//! One request in, one response out: `sipseal registrar` runs this on a
//! file, and a live server runs the same [`Registrar::handle`].
//!
//! What no response tells: whether a user exists. An unknown username is
//! checked against a made-up HA1 and refused with the same 403 as a wrong
//! password.

pub mod crl;
pub mod digest;
#[cfg(feature = "live")]
pub mod serve;
pub mod store;
pub mod users;

use der::Encode;
use time::{Duration, OffsetDateTime};

use crate::context::Context;
use crate::envelope::signed::{SignatureScheme, certs_only};
use crate::error::ErrorClass;
use crate::keys::generate::{Ca, read_csr, validity_until};
use crate::keys::{Cert, Identity};
use crate::signing::{SigningError, sign_message};
use crate::sip::compose::{Body, ComposeError, ResponseParams, build_response};
use crate::sip::{Message, Status};
use crate::state::StoreError;
use digest::{DigestAlgorithm, DigestError, NonceState};
use store::{Binding, RegistrarStore, StoredCert};
use users::Users;

/// The header of a certificate query asking whether the certificate of
/// this fingerprint is still valid: `sha-256 HEX` (colons allowed).
pub const CERT_QUERY: &str = "Certificate-Query";

/// How long a nonce stays fresh, by default (seconds).
pub const NONCE_LIFETIME: i64 = 300;
/// The registration interval granted when the request names none.
pub const DEFAULT_EXPIRES: u32 = 3600;

/// What went wrong that is not an answer to the request.
#[derive(Debug, thiserror::Error)]
pub enum RegistrarError {
    /// The store cannot be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A response cannot be built (the request lacks what it copies).
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The response cannot be signed.
    #[error(transparent)]
    Sign(#[from] SigningError),
    /// The CA cannot issue.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
}

impl RegistrarError {
    /// What kind of failure it is.
    pub fn class(&self) -> ErrorClass {
        match self {
            RegistrarError::Store(e) => e.class(),
            RegistrarError::Compose(e) => e.class(),
            RegistrarError::Sign(e) => e.class(),
            RegistrarError::Key(e) => e.class(),
        }
    }
}

/// What the registrar did with a request (the response says it to the
/// client; this says it to the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 401: a challenge (`stale`: the credentials were right, the nonce old).
    Challenged {
        /// Whether the challenge says stale=true.
        stale: bool,
    },
    /// A refusal with this status, and why (for the operator only).
    Refused {
        /// The status.
        code: Status,
        /// Why.
        why: String,
    },
    /// 200: the AOR is bound until then; a certificate was issued or stored.
    Registered {
        /// The address of record.
        aor: String,
        /// Granted seconds.
        expires: u32,
        /// The certificate's serial number (hex), when one was issued or stored.
        certificate: Option<String>,
    },
    /// 200: a certificate query answered with this certificate.
    Found {
        /// The address of record.
        aor: String,
        /// The certificate's serial number (hex).
        serial: String,
    },
    /// 200: the bindings were removed (and the certificates withdrawn).
    Removed {
        /// The address of record.
        aor: String,
    },
}

/// A response and what it means.
#[derive(Debug, Clone)]
pub struct Handled {
    /// The response to send back.
    pub response: Message,
    /// What was done.
    pub outcome: Outcome,
}

/// A registrar for one realm.
pub struct Registrar<'a> {
    /// The realm (the domain it registers, and the Digest realm).
    pub realm: &'a str,
    /// The CA that issues certificates.
    pub ca: &'a Ca,
    /// The registrar's own identity: it signs the responses that carry
    /// certificates.
    pub identity: &'a Identity,
    /// The credentials (HA1 values).
    pub users: &'a Users,
    /// Bindings, certificates and nonce counts.
    pub store: &'a dyn RegistrarStore,
    /// The longest registration granted (seconds).
    pub max_expires: u32,
    /// Whether MD5 Digest is accepted (old clients such as SIPp).
    pub allow_md5: bool,
    /// How long a nonce stays fresh (seconds).
    pub nonce_lifetime: i64,
    /// The connectivity policy: a certificate query from an AOR the
    /// allow-list does not let reach the AOR asked about gets the same 404
    /// as an unknown one.
    pub policy: Option<&'a crate::policy::Policy>,
}

/// Every certificate under `path` an AOR can be looked up among: PEM and
/// DER files ([`Cert::load_tree`], e.g. what `certquery --accept` stores)
/// and a registrar's state (its AOR records: their certificates not
/// withdrawn).
pub fn load_directory(path: &std::path::Path) -> Result<Vec<Cert>, RegistrarError> {
    let mut certs = Cert::load_tree(path)?;
    let registries = if path.is_dir() {
        store::registry_files(path)
    } else {
        Vec::new()
    };
    for registry in registries {
        certs.extend(store::registry_certs(&registry)?);
    }
    Ok(certs)
}

/// The imposture-check bindings a registrar's state holds at `now`: AOR →
/// the source addresses its REGISTERs came from (`registrar --source`),
/// else its Contacts' host and port. `path` is a state directory (every
/// realm's AOR records under it) or one AOR record.
pub fn registered_sources(
    path: &std::path::Path,
    now: OffsetDateTime,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, RegistrarError> {
    let files = store::registry_files(path);
    let mut map: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for file in files {
        let Some(registry): Option<store::Registry> = crate::state::read_yaml(&file)? else {
            continue;
        };
        for b in registry.bindings.iter().filter(|b| b.expires > now) {
            let source = b.source.clone().or_else(|| {
                let rest = b.contact.split_once(':')?.1;
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                Some(host.split([';', '?', '>']).next()?.to_owned())
            });
            if let Some(source) = source {
                let entry = map.entry(b.aor.to_ascii_lowercase()).or_default();
                if !entry.contains(&source) {
                    entry.push(source);
                }
            }
        }
    }
    Ok(map)
}

/// The certificate of `aor` among `certs`: naming it as its SAN URI,
/// valid at `now`, and chaining to `anchors`; of several, the one valid
/// longest.
pub fn lookup<'a>(
    certs: &'a [Cert],
    aor: &str,
    now: OffsetDateTime,
    anchors: &[Cert],
) -> Option<&'a Cert> {
    certs
        .iter()
        .filter(|c| c.uri().is_some_and(|u| same_aor(&u, aor)))
        .filter(|c| crate::keys::trust::check_validity(c, now).is_ok())
        .filter(|c| crate::keys::trust::check_chain(c, &[], anchors).is_ok())
        .max_by_key(|c| crate::keys::trust::time_of(&c.cert.tbs_certificate().validity().not_after))
}

/// The URI of a name-addr or addr-spec value, without its parameters.
fn bare_uri(value: &str) -> String {
    let v = value.trim();
    let inner = match (v.find('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v),
    };
    inner.trim().to_owned()
}

/// The host of a SIP URI, lower case.
fn host_of(uri: &str) -> Option<String> {
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = rest.split([';', '?', ':']).next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// An AOR as it is compared: scheme and host in lower case.
pub(crate) fn aor_key(aor: &str) -> String {
    match aor.split_once(':').and_then(|(scheme, rest)| {
        rest.rsplit_once('@').map(|(user, host)| {
            format!(
                "{}:{user}@{}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase()
            )
        })
    }) {
        Some(k) => k,
        None => aor.to_ascii_lowercase(),
    }
}

/// Two AORs are the same when their URIs are, with the scheme and host
/// compared case-insensitively (RFC 3261 §19.1.4).
pub(crate) fn same_aor(a: &str, b: &str) -> bool {
    let split = |u: &str| -> Option<(String, String, String)> {
        let (scheme, rest) = u.split_once(':')?;
        let (user, host) = rest.rsplit_once('@')?;
        Some((
            scheme.to_ascii_lowercase(),
            user.to_owned(),
            host.to_ascii_lowercase(),
        ))
    };
    match (split(a), split(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Who a request authenticated as, and the nonce count it used.
struct Authenticated {
    aor: String,
    nonce: String,
    nc: u32,
    made: i64,
}

/// What the body of a REGISTER asks for.
enum Asked {
    /// Nothing: a refresh (or a removal).
    Nothing,
    /// A certificate for the key of this request (PKCS#10).
    Csr(Vec<u8>),
    /// Storing this certificate (DER) as it is.
    Cert(Vec<u8>),
}

fn asked(req: &Message) -> Result<Asked, String> {
    if req.body().is_empty() {
        return Ok(Asked::Nothing);
    }
    let ct = req
        .content_type()
        .map_err(|e| e.to_string())?
        .ok_or("a body without a Content-Type")?;
    match ct.mime.as_str() {
        "application/pkcs10" => Ok(Asked::Csr(req.body().to_vec())),
        "application/pkix-cert" => Ok(Asked::Cert(req.body().to_vec())),
        other => Err(format!(
            "a {other} body (the registrar takes application/pkcs10 or application/pkix-cert)"
        )),
    }
}

impl Registrar<'_> {
    /// Answer one request.
    pub fn handle(
        &self,
        req: &Message,
        source: Option<&str>,
        ctx: &mut Context,
    ) -> Result<Handled, RegistrarError> {
        match req.method() {
            Some("REGISTER") => self.register(req, source, ctx),
            Some("OPTIONS") => self.query(req, ctx),
            Some("PUBLISH") => self.publish(req, ctx),
            _ => self.refuse(
                req,
                Status::MethodNotAllowed,
                vec![("Allow".into(), "REGISTER, OPTIONS, PUBLISH".into())],
                "the registrar answers REGISTER, OPTIONS and PUBLISH",
                ctx,
            ),
        }
    }

    fn refuse(
        &self,
        req: &Message,
        code: Status,
        headers: Vec<(String, String)>,
        why: &str,
        ctx: &mut Context,
    ) -> Result<Handled, RegistrarError> {
        let response = build_response(
            req,
            &ResponseParams {
                code: code.code(),
                headers,
                ..Default::default()
            },
            ctx,
        )?;
        Ok(Handled {
            response,
            outcome: Outcome::Refused {
                code,
                why: why.to_owned(),
            },
        })
    }

    /// 401 with one WWW-Authenticate per accepted algorithm, strongest first.
    fn challenge(
        &self,
        req: &Message,
        secret: &[u8],
        stale: bool,
        ctx: &mut Context,
    ) -> Result<Handled, RegistrarError> {
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&ctx.bytes(8));
        let nonce = digest::make_nonce(secret, self.realm, ctx.now().unix_timestamp(), salt);
        let headers = self
            .algorithms()
            .map(|alg| {
                (
                    "WWW-Authenticate".to_owned(),
                    digest::challenge(self.realm, &nonce, alg, stale),
                )
            })
            .collect();
        let response = build_response(
            req,
            &ResponseParams {
                code: Status::Unauthorized.code(),
                headers,
                ..Default::default()
            },
            ctx,
        )?;
        Ok(Handled {
            response,
            outcome: Outcome::Challenged { stale },
        })
    }

    fn algorithms(&self) -> impl Iterator<Item = DigestAlgorithm> + '_ {
        DigestAlgorithm::ALL
            .into_iter()
            .filter(|a| *a != DigestAlgorithm::Md5 || self.allow_md5)
    }

    fn register(
        &self,
        req: &Message,
        source: Option<&str>,
        ctx: &mut Context,
    ) -> Result<Handled, RegistrarError> {
        match self.authenticate(req, ctx)? {
            Ok(a) => self.bind(req, &a.aor, source, (&a.nonce, a.nc, a.made), ctx),
            Err(answered) => Ok(answered),
        }
    }

    /// PUBLISH with a CSR (the simplified CA): authenticated as a
    /// REGISTER is, the same checks, a certificate valid for the
    /// publication's Expires (no binding), answered in the 200 OK.
    fn publish(&self, req: &Message, ctx: &mut Context) -> Result<Handled, RegistrarError> {
        let a = match self.authenticate(req, ctx)? {
            Ok(a) => a,
            Err(answered) => return Ok(answered),
        };
        let now = ctx.now();
        let expires = match req.header("Expires").map(|v| v.trim().parse::<u32>()) {
            None => DEFAULT_EXPIRES,
            Some(Ok(n)) if n > 0 => n,
            Some(_) => {
                return self.refuse(
                    req,
                    Status::BadRequest,
                    vec![],
                    "Expires is not a positive number",
                    ctx,
                );
            }
        }
        .min(self.max_expires);
        let until = now + Duration::seconds(i64::from(expires));
        let plain = match self.unseal(req, ctx)? {
            Ok(m) => m,
            Err(answered) => return Ok(answered),
        };
        let cert = match asked(&plain) {
            Ok(Asked::Csr(bytes)) => match self.issue_from_csr(&bytes, &a.aor, until, ctx) {
                Ok(cert) => cert,
                Err((code, why)) => return self.refuse(req, code, vec![], &why, ctx),
            },
            _ => {
                return self.refuse(
                    req,
                    Status::UnsupportedMediaType,
                    vec![("Accept".into(), "application/pkcs10".into())],
                    "a PUBLISH carries a certificate request (application/pkcs10: the key with its proof of possession)",
                    ctx,
                );
            }
        };
        let mut stored = stored_cert(&cert, &a.aor, true)?;
        stored.published = true;
        let nonce_expires =
            OffsetDateTime::from_unix_timestamp(a.made + self.nonce_lifetime).unwrap_or(now);
        let mut replay = false;
        self.store.update_aor(self.realm, &a.aor, &mut |r| {
            r.expire(now);
            if !r.use_nonce(&a.nonce, a.nc, nonce_expires) {
                replay = true;
                return;
            }
            r.certificates.push(stored.clone());
        })?;
        if replay {
            let secret = self.store.registrar_secret(self.realm, &mut || [0u8; 32])?;
            return self.challenge(req, secret.as_slice(), false, ctx);
        }
        let headers = vec![
            ("SIP-ETag".to_owned(), stored.serial.clone()),
            ("Expires".to_owned(), expires.to_string()),
        ];
        let response = self.with_certificate(req, headers, &cert, ctx)?;
        Ok(Handled {
            response,
            outcome: Outcome::Registered {
                aor: a.aor,
                expires,
                certificate: Some(stored.serial),
            },
        })
    }

    /// The request with its body opened when it came sealed for the
    /// registrar (SPEC §6: a CSR sealed to the registrar's certificate),
    /// else as it is; a sealed body that does not open is a 400.
    fn unseal(
        &self,
        req: &Message,
        ctx: &mut Context,
    ) -> Result<Result<Message, Handled>, RegistrarError> {
        let sealed = req
            .content_type()
            .ok()
            .flatten()
            .is_some_and(|c| c.mime == "application/pkcs7-mime");
        if !sealed {
            return Ok(Ok(req.clone()));
        }
        let keys = [crate::envelope::RecipientKey::Cert {
            cert: &self.identity.cert,
            key: self.identity,
        }];
        match crate::sealing::open_input(
            crate::sealing::SealedInput::Sip(req.clone()),
            &keys,
            ctx.rng(),
        ) {
            Ok(opened) => match opened.message {
                Some(m) => Ok(Ok(m)),
                None => self
                    .refuse(
                        req,
                        Status::BadRequest,
                        vec![],
                        "the sealed body is not a SIP body",
                        ctx,
                    )
                    .map(Err),
            },
            Err(e) => self
                .refuse(
                    req,
                    Status::BadRequest,
                    vec![],
                    &format!("the sealed body does not open for the registrar: {e}"),
                    ctx,
                )
                .map(Err),
        }
    }

    /// The response carrying `cert` and the CA's certificate as certs-only,
    /// outer-signed by the registrar.
    fn with_certificate(
        &self,
        req: &Message,
        mut headers: Vec<(String, String)>,
        cert: &Cert,
        ctx: &mut Context,
    ) -> Result<Message, RegistrarError> {
        let chain = [
            cert.clone(),
            Cert {
                cert: self.ca.cert.clone(),
                source: "the CA".into(),
            },
        ];
        headers.push((
            "Content-Disposition".into(),
            "attachment; filename=smime.p7c; handling=required".into(),
        ));
        let response = build_response(
            req,
            &ResponseParams {
                code: Status::Ok.code(),
                headers,
                body: Some(Body {
                    content_type: "application/pkcs7-mime; smime-type=certs-only; name=smime.p7c"
                        .into(),
                    bytes: certs_only(&chain).map_err(SigningError::from)?,
                }),
                ..Default::default()
            },
            ctx,
        )?;
        Ok(sign_message(
            &response,
            self.identity,
            SignatureScheme::Pkcs1v15,
            &[],
            ctx,
        )?)
    }

    /// Digest authentication of a REGISTER or PUBLISH: who it is, or the
    /// response that answers it instead (a challenge or a refusal).
    fn authenticate(
        &self,
        req: &Message,
        ctx: &mut Context,
    ) -> Result<Result<Authenticated, Handled>, RegistrarError> {
        let now = ctx.now();
        let method = req.method().unwrap_or_default().to_owned();
        // RFC 3261 §10.3 step 1: a domain this registrar serves.
        let domain = req.request_uri().and_then(host_of);
        if domain.as_deref() != Some(&self.realm.to_ascii_lowercase()) {
            return self
                .refuse(
                    req,
                    Status::NotFound,
                    vec![],
                    "a domain this registrar does not serve",
                    ctx,
                )
                .map(Err);
        }
        let Some(aor) = req.header("To").map(bare_uri) else {
            return self
                .refuse(req, Status::BadRequest, vec![], "no To header", ctx)
                .map(Err);
        };
        let mut fresh = || {
            let mut s = [0u8; 32];
            s.copy_from_slice(&ctx.bytes(32));
            s
        };
        let secret = self.store.registrar_secret(self.realm, &mut fresh)?;
        // Digest (RFC 3261 §22.3, RFC 8760).
        let Some(value) = req.header("Authorization") else {
            return self.challenge(req, secret.as_slice(), false, ctx).map(Err);
        };
        let creds = match digest::parse_authorization(value) {
            Ok(c) => c,
            Err(DigestError::Malformed(why)) => {
                return self
                    .refuse(req, Status::BadRequest, vec![], &why, ctx)
                    .map(Err);
            }
            Err(DigestError::Unsupported(_)) => {
                return self.challenge(req, secret.as_slice(), false, ctx).map(Err);
            }
        };
        if creds.realm != self.realm || !self.algorithms().any(|a| a == creds.algorithm) {
            return self.challenge(req, secret.as_slice(), false, ctx).map(Err);
        }
        let nonce = digest::check_nonce(
            secret.as_slice(),
            self.realm,
            &creds.nonce,
            now.unix_timestamp(),
            self.nonce_lifetime,
        );
        let NonceState::Fresh(made) = nonce else {
            if nonce == NonceState::Foreign {
                return self.challenge(req, secret.as_slice(), false, ctx).map(Err);
            }
            // Stale: say so only to the right password.
            return if self
                .credentials_hold(&creds, &method, secret.as_slice())
                .is_some()
            {
                self.challenge(req, secret.as_slice(), true, ctx)
            } else {
                self.refuse(
                    req,
                    Status::Forbidden,
                    vec![],
                    "wrong credentials (stale nonce)",
                    ctx,
                )
            }
            .map(Err);
        };
        let Some(user_aor) = self.credentials_hold(&creds, &method, secret.as_slice()) else {
            return self
                .refuse(req, Status::Forbidden, vec![], "wrong credentials", ctx)
                .map(Err);
        };
        if !same_aor(&user_aor, &aor) {
            let why = format!("{} may register {user_aor}, not {aor}", creds.username);
            return self
                .refuse(req, Status::Forbidden, vec![], &why, ctx)
                .map(Err);
        }
        Ok(Ok(Authenticated {
            aor,
            nonce: creds.nonce,
            nc: creds.nc,
            made,
        }))
    }

    /// The AOR of the user `creds` authenticate, when they do. An unknown
    /// user is checked against a made-up HA1, so that the work and the
    /// answer are those of a wrong password.
    fn credentials_hold(
        &self,
        creds: &digest::Credentials,
        method: &str,
        secret: &[u8],
    ) -> Option<String> {
        let user = self.users.get(self.realm, &creds.username);
        let decoy = creds
            .algorithm
            .hash(&format!("{}:{}", hex::encode(secret), creds.username));
        let ha1 = user
            .and_then(|u| u.ha1(creds.algorithm))
            .unwrap_or(decoy.as_str());
        let matches = digest::response_matches(creds, method, ha1);
        match user {
            Some(u) if matches && u.ha1(creds.algorithm).is_some() => Some(u.aor.clone()),
            _ => None,
        }
    }

    fn bind(
        &self,
        req: &Message,
        aor: &str,
        source: Option<&str>,
        (nonce, nc, made): (&str, u32, i64),
        ctx: &mut Context,
    ) -> Result<Handled, RegistrarError> {
        let now = ctx.now();
        let call_id = req.call_id().map_err(ComposeError::from)?.to_owned();
        let cseq = req.cseq().map_err(ComposeError::from)?.seq;
        let star = req.header_list("Contact").contains(&"*");
        let contacts = req.contacts().map_err(ComposeError::from)?;
        let header_expires = match req.header("Expires") {
            None => None,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    return self.refuse(
                        req,
                        Status::BadRequest,
                        vec![],
                        "Expires is not a number",
                        ctx,
                    );
                }
            },
        };
        let requested = |c: &crate::sip::syntax::NameAddr| -> u32 {
            c.param("expires")
                .flatten()
                .and_then(|v| v.parse().ok())
                .or(header_expires)
                .unwrap_or(DEFAULT_EXPIRES)
        };
        // RFC 3261 §10.3 step 6: `*` only with Expires: 0 and alone.
        if star && (header_expires != Some(0) || !contacts.is_empty()) {
            return self.refuse(
                req,
                Status::BadRequest,
                vec![],
                "Contact: * needs Expires: 0 and no other Contact",
                ctx,
            );
        }
        let removing = star || (!contacts.is_empty() && contacts.iter().all(|c| requested(c) == 0));
        let granted = contacts
            .iter()
            .map(|c| requested(c).min(self.max_expires))
            .max()
            .unwrap_or(0);
        let until = now + Duration::seconds(i64::from(granted));
        // What the body asks for, checked before anything is stored.
        let plain = match self.unseal(req, ctx)? {
            Ok(m) => m,
            Err(answered) => return Ok(answered),
        };
        let body = match asked(&plain) {
            Ok(b) => b,
            Err(why) => {
                return self.refuse(
                    req,
                    Status::UnsupportedMediaType,
                    vec![(
                        "Accept".into(),
                        "application/pkcs10, application/pkix-cert".into(),
                    )],
                    &why,
                    ctx,
                );
            }
        };
        let mut new_cert: Option<(Cert, bool)> = None;
        if !removing {
            match body {
                // A refresh: the binding is extended, and the AOR's newest
                // certificate issued here is issued again for the same key
                // and subject until the new expiry.
                Asked::Nothing if !contacts.is_empty() => {
                    if let Some(cert) = self.reissue(aor, until, ctx)? {
                        new_cert = Some((cert, true));
                    }
                }
                Asked::Nothing => {}
                Asked::Csr(bytes) => match self.issue_from_csr(&bytes, aor, until, ctx) {
                    Ok(cert) => new_cert = Some((cert, true)),
                    Err((code, why)) => return self.refuse(req, code, vec![], &why, ctx),
                },
                Asked::Cert(bytes) => match self.check_given_cert(&bytes, aor, now) {
                    Ok(cert) => new_cert = Some((cert, false)),
                    Err((code, why)) => return self.refuse(req, code, vec![], &why, ctx),
                },
            }
        }
        // One atomic change: the nonce count, the bindings, the certificate.
        let nonce_expires =
            OffsetDateTime::from_unix_timestamp(made + self.nonce_lifetime).unwrap_or(now);
        let mut replay = false;
        let mut bindings: Vec<Binding> = Vec::new();
        let stored = new_cert
            .as_ref()
            .map(|(c, issued)| stored_cert(c, aor, *issued))
            .transpose()?;
        self.store.update_aor(self.realm, aor, &mut |r| {
            r.expire(now);
            if !r.use_nonce(nonce, nc, nonce_expires) {
                replay = true;
                return;
            }
            if removing {
                r.bindings.retain(|b| {
                    !(same_aor(&b.aor, aor)
                        && (star || contacts.iter().any(|c| c.uri == b.contact)))
                });
                if !r.bindings.iter().any(|b| same_aor(&b.aor, aor)) {
                    for c in r.certificates.iter_mut().filter(|c| same_aor(&c.aor, aor)) {
                        c.withdrawn.get_or_insert(now);
                    }
                }
            } else {
                for c in &contacts {
                    let expires =
                        now + Duration::seconds(i64::from(requested(c).min(self.max_expires)));
                    r.bindings
                        .retain(|b| !(same_aor(&b.aor, aor) && b.contact == c.uri));
                    r.bindings.push(Binding {
                        aor: aor.to_owned(),
                        contact: c.uri.clone(),
                        expires,
                        source: source.map(str::to_owned),
                        call_id: call_id.clone(),
                        cseq,
                    });
                }
                if let Some(s) = &stored {
                    r.certificates.push(s.clone());
                }
            }
            bindings = r
                .bindings
                .iter()
                .filter(|b| same_aor(&b.aor, aor))
                .cloned()
                .collect();
        })?;
        if replay {
            // The same nonce count twice: a replay (or a retransmission
            // outside a transaction); either way, authenticate afresh.
            let secret = self.store.registrar_secret(self.realm, &mut || [0u8; 32])?;
            return self.challenge(req, secret.as_slice(), false, ctx);
        }
        let mut headers: Vec<(String, String)> = bindings
            .iter()
            .map(|b| {
                let left = (b.expires - now).whole_seconds().max(0);
                (
                    "Contact".to_owned(),
                    format!("<{}>;expires={left}", b.contact),
                )
            })
            .collect();
        headers.push(("Expires".into(), granted.to_string()));
        let response = match &new_cert {
            Some((cert, _)) => self.with_certificate(req, headers, cert, ctx)?,
            None => build_response(
                req,
                &ResponseParams {
                    code: Status::Ok.code(),
                    headers,
                    ..Default::default()
                },
                ctx,
            )?,
        };
        let outcome = if removing {
            Outcome::Removed {
                aor: aor.to_owned(),
            }
        } else {
            Outcome::Registered {
                aor: aor.to_owned(),
                expires: granted,
                certificate: stored.map(|s| s.serial),
            }
        };
        Ok(Handled { response, outcome })
    }

    /// A certificate query (OPTIONS for an AOR): 200 with the AOR's
    /// current certificate (valid now, not withdrawn, its binding
    /// registered), signed; or, with a [`CERT_QUERY`] header, 200 when the
    /// certificate of that SHA-256 fingerprint is still such a one. Every
    /// other case is the same 404: nothing tells an unknown AOR from a
    /// withdrawn or expired one.
    fn query(&self, req: &Message, ctx: &mut Context) -> Result<Handled, RegistrarError> {
        let now = ctx.now();
        let domain = req.request_uri().and_then(host_of);
        let aor = req.header("To").map(bare_uri).unwrap_or_default();
        let registry = self.store.load_aor(self.realm, &aor)?;
        let wanted = req
            .header(CERT_QUERY)
            .map(|v| v.trim().to_ascii_lowercase());
        let from = req.aor("From").unwrap_or_default();
        let allowed = self.policy.is_none_or(|p| p.allows(from, &aor));
        let served = allowed && domain.as_deref() == Some(&self.realm.to_ascii_lowercase());
        let found = match wanted {
            _ if !served => None,
            None => registry.current_certs(&aor, now).last(),
            Some(q) => {
                let hex = q
                    .strip_prefix("sha-256")
                    .map(|h| h.trim().replace(':', ""))
                    .unwrap_or_default();
                registry.current_certs(&aor, now).find(|s| s.sha256 == hex)
            }
        };
        let Some(stored) = found else {
            let response = build_response(
                req,
                &ResponseParams {
                    code: 404,
                    ..Default::default()
                },
                ctx,
            )?;
            return Ok(Handled {
                response,
                outcome: Outcome::Refused {
                    code: Status::NotFound,
                    why: format!("no current certificate for {aor}"),
                },
            });
        };
        let (_, der) = der::pem::decode_vec(stored.pem.as_bytes())
            .map_err(|e| crate::keys::KeyError::Generate(e.to_string()))?;
        let response = build_response(
            req,
            &ResponseParams {
                code: Status::Ok.code(),
                headers: vec![(
                    "Content-Disposition".into(),
                    "attachment; filename=cert.der; handling=required".into(),
                )],
                body: Some(Body {
                    content_type: "application/pkix-cert".into(),
                    bytes: der,
                }),
                ..Default::default()
            },
            ctx,
        )?;
        let response = sign_message(
            &response,
            self.identity,
            SignatureScheme::Pkcs1v15,
            &[],
            ctx,
        )?;
        Ok(Handled {
            response,
            outcome: Outcome::Found {
                aor: aor.clone(),
                serial: stored.serial.clone(),
            },
        })
    }

    /// The AOR's newest certificate issued here (valid, not withdrawn),
    /// issued again until `until`; `None` when there is none.
    fn reissue(
        &self,
        aor: &str,
        until: OffsetDateTime,
        ctx: &mut Context,
    ) -> Result<Option<Cert>, RegistrarError> {
        let now = ctx.now();
        let record = self.store.load_aor(self.realm, aor)?;
        let Some(previous) = record
            .certificates
            .iter()
            .rev()
            .find(|c| c.issued && c.withdrawn.is_none() && c.not_after > now)
        else {
            return Ok(None);
        };
        let (_, der) = der::pem::decode_vec(previous.pem.as_bytes())
            .map_err(|e| crate::keys::KeyError::Generate(e.to_string()))?;
        let old = Cert::from_der(&der, "the registry")?;
        let tbs = old.cert.tbs_certificate();
        let validity = validity_until(now, until)?;
        let cert = self.ca.issue_with(
            ctx,
            tbs.subject().clone(),
            vec![aor.to_owned()],
            Vec::new(),
            tbs.subject_public_key_info().clone(),
            validity,
        )?;
        Ok(Some(Cert {
            cert,
            source: "issued".into(),
        }))
    }

    /// Issue from a PKCS#10 request: its signature verifies with its key
    /// (proof of possession), it names `aor` (SAN URI, else CN), its key is
    /// RSA of 2048 bits or more or EC P-256; valid until `until`.
    fn issue_from_csr(
        &self,
        bytes: &[u8],
        aor: &str,
        until: OffsetDateTime,
        ctx: &mut Context,
    ) -> Result<Cert, (Status, String)> {
        let req = read_csr(bytes, std::path::Path::new("the REGISTER body"))
            .map_err(|e| (Status::BadRequest, e.to_string()))?;
        let cn_names_aor = req.subject.to_string().split(',').any(|rdn| {
            rdn.trim()
                .strip_prefix("CN=")
                .is_some_and(|cn| same_aor(&format!("sip:{cn}"), aor))
        });
        let names_aor = if req.uris.is_empty() {
            cn_names_aor
        } else {
            req.uris.iter().any(|u| same_aor(u, aor))
        };
        if !names_aor {
            return Err((
                Status::Forbidden,
                format!("the request names {:?}, not {aor}", req.uris),
            ));
        }
        let key_ok = match req.spki.algorithm.oid {
            const_oid::db::rfc5912::ID_EC_PUBLIC_KEY => {
                use p256::pkcs8::DecodePublicKey;
                req.spki
                    .to_der()
                    .ok()
                    .is_some_and(|d| p256::PublicKey::from_public_key_der(&d).is_ok())
            }
            const_oid::db::rfc5912::RSA_ENCRYPTION => {
                use rsa::pkcs8::DecodePublicKey;
                use rsa::traits::PublicKeyParts;
                req.spki
                    .to_der()
                    .ok()
                    .and_then(|d| rsa::RsaPublicKey::from_public_key_der(&d).ok())
                    .is_some_and(|k| k.n().bits() >= 2048)
            }
            _ => false,
        };
        if !key_ok {
            return Err((
                Status::BadRequest,
                "the request's key is not RSA of 2048 bits or more, nor EC P-256".into(),
            ));
        }
        let validity =
            validity_until(ctx.now(), until).map_err(|e| (Status::ServerError, e.to_string()))?;
        self.ca
            .issue_with(
                ctx,
                req.subject,
                vec![aor.to_owned()],
                Vec::new(),
                req.spki,
                validity,
            )
            .map(|cert| Cert {
                cert,
                source: "issued".into(),
            })
            .map_err(|e| (Status::ServerError, e.to_string()))
    }

    /// Check a certificate registered as it is: it chains to the CA, is
    /// valid now, and names `aor`.
    fn check_given_cert(
        &self,
        der: &[u8],
        aor: &str,
        now: OffsetDateTime,
    ) -> Result<Cert, (Status, String)> {
        let cert = Cert::from_der(der, "the REGISTER body")
            .map_err(|e| (Status::BadRequest, e.to_string()))?;
        let anchor = Cert {
            cert: self.ca.cert.clone(),
            source: "the CA".into(),
        };
        crate::keys::trust::check_chain(&cert, &[], &[anchor])
            .map_err(|e| (Status::Forbidden, e.to_string()))?;
        crate::keys::trust::check_validity(&cert, now)
            .map_err(|e| (Status::Forbidden, e.to_string()))?;
        if !cert.uri().is_some_and(|u| same_aor(&u, aor)) {
            return Err((
                Status::Forbidden,
                format!("the certificate names {}, not {aor}", cert.name()),
            ));
        }
        Ok(cert)
    }
}

fn stored_cert(cert: &Cert, aor: &str, issued: bool) -> Result<StoredCert, RegistrarError> {
    use der::EncodePem;
    use sha2::Digest;
    let der = cert
        .cert
        .to_der()
        .map_err(|e| crate::keys::KeyError::Generate(e.to_string()))?;
    let pem = cert
        .cert
        .to_pem(der::pem::LineEnding::LF)
        .map_err(|e| crate::keys::KeyError::Generate(e.to_string()))?;
    let not_after = crate::keys::trust::time_of(&cert.cert.tbs_certificate().validity().not_after);
    Ok(StoredCert {
        aor: aor.to_owned(),
        serial: hex::encode(cert.cert.tbs_certificate().serial_number().as_bytes()),
        sha256: hex::encode(sha2::Sha256::digest(&der)),
        not_after,
        issued,
        published: false,
        withdrawn: None,
        pem,
    })
}
