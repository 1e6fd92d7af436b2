//! The demo's registration step (docs/SPEC.md §6): alice makes an EC key,
//! registers with a CSR, gets her certificate; bob's side fetches it with
//! a certificate query and seals to it.

use std::path::Path;

use sipseal::context::Context;
use sipseal::envelope::signed::certs_of;
use sipseal::envelope::{Recipient, RecipientKey};
use sipseal::keys::generate::{Ca, KeyType, SigningKey, make_csr, subject_for};
use sipseal::keys::{Cert, Identity, PrivateKey};
use sipseal::registrar::store::MemoryRegistry;
use sipseal::registrar::users::Users;
use sipseal::registrar::{NONCE_LIFETIME, Registrar, digest};
use sipseal::sealing::{SealSpec, SealedInput, open_input, seal_message};
use sipseal::signing::outer_signature;
use sipseal::sip::{Body, Message, RequestParams, build_request};

use super::{Files, PASSWORD, put};
use crate::error::Error;

const AOR: &str = "sip:alice@a.example.com";
const REALM: &str = "a.example.com";
const CONTACT: &str = "sip:alice@192.0.2.10:5060";

/// The registrar's flags in every `sipseal registrar` the step shows.
const REGISTRAR: &str = "--realm a.example.com --ca keys/ca/a.example.com \\\n       \
    --identity keys/proxy-a --users users.yaml --source 192.0.2.10:5060 --state registrar";

fn fail(what: &str, e: impl std::fmt::Display) -> Error {
    Error::usage(
        format!("the registration step: {what}: {e}"),
        "this is a bug in the demo; please report it",
    )
}

fn first_line(m: &Message) -> String {
    String::from_utf8_lossy(&m.to_bytes())
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Run the step; what it says goes to `out`, its messages to `files`.
pub fn run(
    out: &mut String,
    files: &mut Files,
    dir: &Path,
    invite: &Message,
    ctx: &mut Context,
) -> Result<(), Error> {
    // The registrar of a.example.com: its CA, its identity (proxy-a's
    // stands in), alice's credentials, and its store (in memory here).
    let store = MemoryRegistry::new();
    let ca = Ca::load(&dir.join("ca").join(REALM))?;
    let registrar_identity = Identity::load_dir(&dir.join("proxy-a"))?;
    let mut users = Users::default();
    users.set(REALM, AOR, PASSWORD, false)?;
    let registrar = Registrar {
        realm: REALM,
        ca: &ca,
        identity: &registrar_identity,
        users: &users,
        store: &store,
        max_expires: 3600,
        algorithms: &sipseal::registrar::digest::DigestAlgorithm::DEFAULT,
        own: &Default::default(),
        nonce_lifetime: NONCE_LIFETIME,
        policy: None,
        trusted: Default::default(),
        psks: &[],
    };
    out.push_str(
        "\nRegistration (docs/SPEC.md §6): alice makes an EC key and registers it with a CSR; the\n\
         registrar of a.example.com (SIP Digest, SHA-512-256) issues her certificate.\n   \
         The registrar's identity is proxy-a's here, its state in the directory registrar.\n   \
         $ sipseal registrar passwd --users users.yaml --realm a.example.com \\\n       \
         --user sip:alice@a.example.com --password-file pw\n   \
         $ sipseal keys generate --type p256 --uri sip:alice@a.example.com --csr --out alice-new\n   \
         $ sipseal register --uri sip:alice@a.example.com --contact sip:alice@192.0.2.10:5060 \\\n       \
         --identity alice-new -o register.sip\n",
    );
    let SigningKey::P256(secret) = SigningKey::generate(KeyType::P256, ctx)? else {
        return Err(fail("key generation", "not a P-256 key"));
    };
    let key = SigningKey::P256(secret.clone());
    let csr = make_csr(&key, subject_for(AOR)?, &[AOR.to_owned()], &[])?;
    let mut params = RequestParams {
        method: "REGISTER".into(),
        from: AOR.into(),
        to: AOR.into(),
        request_uri: Some(format!("sip:{REALM}")),
        contact: Some(CONTACT.into()),
        headers: vec![("Expires".into(), "3600".into())],
        body: Some(Body {
            content_type: "application/pkcs10".into(),
            bytes: der::Encode::to_der(&csr).map_err(|e| fail("the CSR", e))?,
        }),
        ..Default::default()
    };
    let first = build_request(&params, ctx)?;
    let source = Some("192.0.2.10:5060");
    let challenge = registrar.handle(&first, source, ctx)?.response;
    let www = challenge
        .header("WWW-Authenticate")
        .ok_or_else(|| fail("the 401", "no WWW-Authenticate"))?
        .to_owned();
    out.push_str(&format!(
        "   $ sipseal registrar register.sip {REGISTRAR} -o 401.sip   # exit 5\n      \
         {}  (one WWW-Authenticate per algorithm: SHA-512-256, SHA-256)\n   \
         $ sipseal register --uri sip:alice@a.example.com --contact sip:alice@192.0.2.10:5060 \\\n       \
         --identity alice-new --challenge 401.sip --password-file pw -o register-authorized.sip\n",
        first_line(&challenge)
    ));
    let cnonce = hex::encode(ctx.bytes(8));
    let auth = digest::answer(
        &www,
        "alice",
        PASSWORD,
        "REGISTER",
        &format!("sip:{REALM}"),
        first.body(),
        &cnonce,
    )
    .map_err(|e| fail("the Digest answer", e))?;
    params.call_id = Some(first.call_id().map_err(|e| fail("Call-ID", e))?.to_owned());
    params.cseq = Some(2);
    params.from = first.header("From").unwrap_or(AOR).to_owned();
    params.headers.push(("Authorization".into(), auth));
    let authorized = build_request(&params, ctx)?;
    let ok = registrar.handle(&authorized, source, ctx)?.response;
    // alice checks the registrar's signature and takes her certificate.
    let outer = outer_signature(&ok)
        .map_err(|e| fail("the 200 OK", e))?
        .ok_or_else(|| fail("the 200 OK", "not signed"))?;
    outer
        .verify()
        .map_err(|e| fail("the registrar's signature", e))?;
    let private = PrivateKey::from_p256(secret);
    let certs = certs_of(&outer.payload.body).map_err(|e| fail("the certs-only body", e))?;
    let alice_cert = certs
        .into_iter()
        .find(|c| c.is_key_of(&private))
        .ok_or_else(|| fail("the 200 OK", "no certificate for alice's key"))?;
    let not_after =
        sipseal::keys::trust::time_of(&alice_cert.cert.tbs_certificate().validity().not_after);
    out.push_str(&format!(
        "   $ sipseal registrar register-authorized.sip {REGISTRAR} -o register-200.sip\n      \
         {}: the binding for 3600 s, and her certificate with the CA's (certs-only),\n      \
         signed by the registrar; it is valid until {} (the registration's expiry)\n   \
         $ sipseal register --accept register-200.sip --identity alice-new --trust keys/trust.pem\n",
        first_line(&ok),
        sipseal::context::rfc3339(not_after),
    ));
    // bob's side asks for alice's certificate and seals to it.
    let query = build_request(
        &RequestParams {
            method: "OPTIONS".into(),
            from: "sip:bob@b.example.com".into(),
            to: AOR.into(),
            request_uri: Some(AOR.into()),
            headers: vec![("Accept".into(), "application/pkix-cert".into())],
            ..Default::default()
        },
        ctx,
    )?;
    let answer = registrar.handle(&query, None, ctx)?.response;
    let fetched = outer_signature(&answer)
        .map_err(|e| fail("the query's answer", e))?
        .ok_or_else(|| fail("the query's answer", "not signed"))?;
    fetched
        .verify()
        .map_err(|e| fail("the registrar's signature", e))?;
    let fetched = Cert::from_der(&fetched.payload.body, "the query's answer")?;
    let spec = SealSpec {
        peers: vec![Recipient::Cert(Box::new(fetched.clone()))],
        ..Default::default()
    };
    let sealed = seal_message(invite, &spec, ctx)
        .map_err(|err| Error::Seal {
            name: "the demo's INVITE".into(),
            err,
        })?
        .message;
    let keys = [RecipientKey::Cert {
        cert: &alice_cert,
        key: &private,
    }];
    let opened = open_input(SealedInput::Sip(sealed.clone()), &keys, ctx.rng()).map_err(|err| {
        Error::Seal {
            name: "the INVITE sealed to the fetched certificate".into(),
            err,
        }
    })?;
    let same = opened.message.map(|m| m.to_bytes()) == Some(invite.to_bytes());
    out.push_str(&format!(
        "   bob's side asks the registrar for her certificate and seals to it:\n   \
         $ sipseal certquery --uri sip:alice@a.example.com --from sip:bob@b.example.com -o certquery.sip\n   \
         $ sipseal registrar certquery.sip {REGISTRAR} -o certquery-200.sip\n      \
         {} with her certificate (application/pkix-cert, signed by the registrar)\n   \
         $ sipseal certquery --accept certquery-200.sip --trust keys/trust.pem --out certs\n   \
         $ sipseal seal invite-audio.sip --peer sip:alice@a.example.com --certs certs \\\n       \
         --trust keys/trust.pem > sealed-to-alice.sip\n   \
         $ sipseal open sealed-to-alice.sip --identity alice-new\n     \
         alice opens it with her new key (exit 0){}\n",
        first_line(&answer),
        if same { ": the INVITE comes back byte for byte" } else { "" }
    ));
    put(files, "register.sip", first.to_bytes());
    put(files, "401.sip", challenge.to_bytes());
    put(files, "register-authorized.sip", authorized.to_bytes());
    put(files, "register-200.sip", ok.to_bytes());
    put(files, "certquery.sip", query.to_bytes());
    put(files, "certquery-200.sip", answer.to_bytes());
    put(files, "sealed-to-alice.sip", sealed.to_bytes());
    Ok(())
}
