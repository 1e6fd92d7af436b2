//! Sealed registration both ways (docs/SPEC.md §6, issue 28): a REGISTER
//! body sealed for the registrar's certificate, under a pre-shared key
//! that belongs to the AOR (KEKRecipientInfo), or under the user's
//! password (PasswordRecipientInfo, RFC 3211); and the 200 OK that
//! answers it sealed back for the registrant, then outer-signed.
//!
//! The registrar keeps no password, only HA1 values (`users.rs`), so the
//! password a registration is sealed under is the user's **HA1 of
//! SHA-512-256** (RFC 8760) for the realm, as its 64 lowercase hex digits:
//! the client computes it from its password, username and realm
//! ([`registration_password`]); the registrar reads it from the users
//! file. An eavesdropper holds none of it. Whoever holds the users file
//! can open these bodies, as they can already register as the user.
//! Guessing the password offline from a captured body costs what
//! guessing it from the Digest response beside it costs (more: PBKDF2's
//! iterations come on top of the hash).

use super::Registrar;
use super::certs::Granted;
use super::digest::DigestAlgorithm;
use super::stop::{Stop, refuse};
use super::users::username_of;
use crate::context::Context;
use crate::envelope::{Envelope, Recipient, RecipientKey};
use crate::keys::{Cert, KeyError, Password, Psk};
use crate::sealing::{SealedInput, open_parsed, sealed_body};
use crate::sip::aor::{Aor, aor_key};
use crate::sip::{Message, Status};

/// The Digest algorithm whose HA1 is the password of a sealed
/// registration: the strongest RFC 8760 one, which `registrar passwd`
/// always keeps.
pub const PASSWORD_ALGORITHM: DigestAlgorithm = DigestAlgorithm::Sha512_256;

/// What a REGISTER's body came sealed under: what the 200 OK that
/// answers it is sealed under too (besides the registrant's certificate).
#[derive(Debug, Clone)]
pub(super) enum Sealing {
    /// The registrar's certificate: the 200 goes to the certificate it
    /// carries alone.
    Registrar,
    /// A PSK of the authenticated AOR.
    Psk(Psk),
    /// The user's password (its HA1, see the module documentation).
    Password(Password),
}

/// The password a registration of `aor` in `realm` is sealed under:
/// the HA1 of [`PASSWORD_ALGORITHM`] of its user part, `realm` and
/// `password`, as hex (what the registrar's users file holds).
pub fn registration_password(aor: &str, realm: &str, password: &str) -> Result<Password, KeyError> {
    let username = username_of(aor).ok_or_else(|| {
        KeyError::Input(format!(
            "{aor:?} has no user part: give an AOR sip:user@domain"
        ))
    })?;
    Ok(Password {
        secret: zeroize::Zeroizing::new(PASSWORD_ALGORITHM.ha1(username, realm, password)),
        uri: Some(aor.to_owned()),
        source: format!("the {} HA1 of {aor}", PASSWORD_ALGORITHM.token()).into(),
    })
}

/// The realm a registrant of `aor` seals under: the AOR's domain (the
/// registrar's `--realm` is the domain it registers).
pub fn realm_of(aor: &str) -> Option<&str> {
    let host = aor.split_once('@')?.1;
    let host = host.split([';', '>', '?']).next()?;
    (!host.is_empty()).then_some(host)
}

/// Why a registrar's PSKs cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PskSetError {
    /// A PSK that names no AOR.
    #[error("PSK {0} names no `uri`: a registrar's PSK names the AOR it belongs to")]
    NoAor(String),
    /// A PSK whose `uri` is not an AOR.
    #[error("PSK {id}: its uri {uri} is not an AOR (sip:user@domain)")]
    NotAor {
        /// The PSK's id.
        id: String,
        /// Its uri.
        uri: String,
    },
    /// Two PSKs with one key identifier.
    #[error("two PSKs with the id {0}")]
    SameId(String),
}

/// Check the PSKs a registrar opens registrations with: each names the
/// AOR it belongs to as its `uri`, and no two share a key identifier.
pub fn check_psks(psks: &[Psk]) -> Result<(), PskSetError> {
    for (i, p) in psks.iter().enumerate() {
        let Some(uri) = &p.uri else {
            return Err(PskSetError::NoAor(p.id.to_string()));
        };
        if username_of(uri).is_none() {
            return Err(PskSetError::NotAor {
                id: p.id.to_string(),
                uri: uri.clone(),
            });
        }
        if psks.iter().take(i).any(|q| q.id_bytes() == p.id_bytes()) {
            return Err(PskSetError::SameId(p.id.to_string()));
        }
    }
    Ok(())
}

/// Whether the request's body came sealed (`application/pkcs7-mime`).
pub(super) fn is_sealed(req: &Message) -> bool {
    req.content_type()
        .ok()
        .flatten()
        .is_some_and(|c| c.mime == "application/pkcs7-mime")
}

/// The request with its body opened, and what it was sealed under
/// (`None`: it came unsealed), for `aor`, authenticated as `username`.
///
/// It opens with the registrar's certificate, the PSKs that belong to
/// `aor`, and the user's HA1 as password. A body none of them opens is
/// the one uniform 400 (why, for the operator only): the answer is the
/// same whatever failed, and for a given envelope the work is the same
/// whether the key is right or wrong (a wrong key unwraps to a decoy and
/// fails the content check, docs/SPEC.md §3.1); a KEKRecipientInfo naming
/// only a PSK of another AOR is the 403 of wrong credentials.
pub(super) fn open_register(
    r: &Registrar<'_>,
    req: &Message,
    aor: &Aor,
    username: &str,
    ctx: &mut Context,
) -> Result<(Message, Option<Sealing>), Stop> {
    if !is_sealed(req) {
        return Ok((req.clone(), None));
    }
    let undecipherable = |why: String| {
        refuse(
            Status::BadRequest,
            format!("the sealed body does not open for the registrar: {why}"),
        )
    };
    let env = sealed_body(req)
        .map_err(|e| e.to_string())
        .and_then(|der| Envelope::parse(&der).map_err(|e| e.to_string()))
        .map_err(undecipherable)?;
    let mine: Vec<&Psk> = r
        .psks
        .iter()
        .filter(|p| p.uri.as_deref().is_some_and(|u| aor_key(u) == aor.key))
        .collect();
    let password = r
        .users
        .get(r.realm, username)
        .and_then(|u| u.ha1(PASSWORD_ALGORITHM))
        .map(|ha1| Password {
            secret: zeroize::Zeroizing::new(ha1.to_ascii_lowercase()),
            uri: Some(aor.text.clone()),
            source: "the users file".into(),
        });
    let mut keys = vec![RecipientKey::Cert {
        cert: &r.identity.cert,
        key: r.identity,
    }];
    keys.extend(mine.iter().map(|p| RecipientKey::Psk(p)));
    keys.extend(password.iter().map(RecipientKey::Password));
    if env.find(&keys).is_none() {
        let theirs = r.psks.iter().find(|p| {
            !mine.iter().any(|m| m.id == p.id)
                && env
                    .recipients
                    .iter()
                    .any(|ri| crate::envelope::recipient::addressed_to_kek(ri, &p.id_bytes()))
        });
        if let Some(p) = theirs {
            return Err(refuse(
                Status::Forbidden,
                format!(
                    "wrong credentials: the body is sealed under PSK {}, which is not {aor}'s",
                    p.id
                ),
            ));
        }
    }
    let opened = open_parsed(SealedInput::Sip(req.clone()), &env, &keys, ctx.rng())
        .map_err(|e| undecipherable(e.to_string()))?;
    let sealing = match keys.get(opened.key_index) {
        Some(RecipientKey::Psk(p)) => Sealing::Psk((*p).clone()),
        Some(RecipientKey::Password(p)) => Sealing::Password((*p).clone()),
        _ => Sealing::Registrar,
    };
    let message = opened
        .message
        .ok_or_else(|| refuse(Status::BadRequest, "the sealed body is not a SIP body"))?;
    Ok((message, Some(sealing)))
}

/// `response` (a 200 OK carrying `granted`) sealed for the registrant:
/// for the certificate it carries, and under the PSK or password the
/// request used. Not signed yet: the registrar's outer signature goes
/// over the sealed body.
pub(super) fn seal_answer(
    response: &Message,
    granted: &Granted,
    sealing: &Sealing,
    ctx: &mut Context,
) -> Result<Message, Stop> {
    let failed = |e: String| Stop::Failed(KeyError::Generate(e).into());
    let (_, der) =
        der::pem::decode_vec(granted.stored.pem.as_bytes()).map_err(|e| failed(e.to_string()))?;
    let cert =
        Cert::from_der(&der, "the certificate granted").map_err(|e| failed(e.to_string()))?;
    let mut peers = vec![Recipient::Cert(Box::new(cert))];
    match sealing {
        Sealing::Registrar => {}
        Sealing::Psk(p) => peers.push(Recipient::Psk(p.clone())),
        Sealing::Password(p) => peers.push(Recipient::Password(p.clone())),
    }
    // The certs-only entity is itself application/pkcs7-mime, which
    // `seal_message` takes for a body sealed already: sealed here as
    // `seal_message` would (RFC 8551 §3.3: the whole MIME entity).
    let entity = crate::mime::Entity::of_message(response)
        .ok_or_else(|| failed("a 200 OK without its body".into()))?;
    let (der, _) = crate::envelope::seal(
        &entity.to_bytes(),
        &peers,
        &crate::envelope::SealOptions::default(),
        ctx.rng(),
    )
    .map_err(|e| failed(format!("sealing the 200 OK: {e}")))?;
    let lines = [
        (
            "Content-Type".to_owned(),
            format!(
                "application/pkcs7-mime; smime-type={}; name=smime.p7m",
                crate::envelope::EnvelopeKind::AuthEnvelopedData.smime_type()
            ),
        ),
        (
            "Content-Disposition".to_owned(),
            "attachment; filename=smime.p7m; handling=required".to_owned(),
        ),
    ];
    let mut sealed = response.clone();
    sealed.replace_body(&lines, der);
    Ok(sealed)
}

/// The certs-only body of a registrar's 200 OK, from its signed payload:
/// opened with `keys` when it came sealed (`true`), as it is otherwise.
pub fn answer_body<R: rand::CryptoRng + ?Sized>(
    payload: &crate::mime::Part,
    keys: &[RecipientKey<'_>],
    rng: &mut R,
) -> Result<(Vec<u8>, bool), crate::sealing::SealError> {
    let sealed = payload.content_type.as_ref().is_some_and(|c| {
        c.is("application/pkcs7-mime")
            && c.param("smime-type").is_some_and(|t| {
                t.eq_ignore_ascii_case("authEnveloped-data")
                    || t.eq_ignore_ascii_case("enveloped-data")
            })
    });
    if !sealed {
        return Ok((payload.body.clone(), false));
    }
    let input = SealedInput::Mime {
        headers: payload.headers.clone(),
        der: payload.body.clone(),
    };
    let opened = crate::sealing::open_input(input, keys, rng)?;
    let body = match opened.entity {
        Some(entity) => entity.body,
        None => opened.content.to_vec(),
    };
    Ok((body, true))
}
