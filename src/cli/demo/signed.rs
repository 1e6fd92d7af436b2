//! Step 10 of the demo: signatures and path security. alice signs inside
//! the envelope (read-only disclosure) and outside (the designations are
//! protected); the relays check the path; bob verifies everything; a
//! designation added in transit and an impostor are caught.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Relays, indent};
use crate::context::Context;
use crate::envelope::signed::SignatureScheme;
use crate::envelope::{Recipient, RecipientKey};
use crate::keys::Identity;
use crate::policy::Bindings;
use crate::relay::{Outcome, PathOptions, RelayKeys, RelayOptions, relay};
use crate::sealing::{SealSpec, SealedInput, open_input, seal_message};
use crate::signing::{outer_signature, sign_message};
use crate::sip::Message;
use crate::sip::route_security::{RouteEntry, append};
use crate::verify::{VerifyOptions, VerifyReport, verify_inner, verify_outer, verify_route};

use super::super::error::Error;

const ALICE_ADDR: &str = "a.example.com:5060";
const VIA_A: &str = "proxy-a.a.example.com";
const VIA_B: &str = "proxy-b.b.example.com";

fn relay_err(err: crate::relay::RelayError) -> Error {
    Error::Relay {
        name: "the demo's signed INVITE".into(),
        err,
    }
}

/// One relay step with path checks; the outcome and the report text.
fn hop(
    msg: &Message,
    identity: &Identity,
    via: &str,
    path: PathOptions,
    ctx: &mut Context,
) -> Result<(Outcome, String), Error> {
    let keys = RelayKeys {
        identity,
        psks: &[],
        certs: &[],
        sessions: &[],
    };
    let opts = RelayOptions {
        via: Some(via.into()),
        path,
        ..Default::default()
    };
    let step = relay(msg, &keys, &opts, ctx).map_err(relay_err)?;
    Ok((step.outcome, step.report.to_text()))
}

/// bob's `verify --identity keys/bob --min-route-level 2 --received-from proxy-b`.
fn verify_at_bob(msg: &Message, r: &Relays<'_>, ctx: &mut Context) -> VerifyReport {
    let opts = VerifyOptions {
        anchors: &r.anchors,
        at: ctx.now(),
        min_route_level: Some(2),
        received_from: Some(VIA_B),
    };
    let mut signatures = Vec::new();
    if let Ok(Some(outer)) = outer_signature(msg) {
        signatures.push(verify_outer(msg, &outer, &opts));
    }
    let keys = [RecipientKey::Rsa {
        cert: &r.bob.cert,
        key: r.bob,
    }];
    if let Ok(opened) = open_input(SealedInput::Sip(msg.clone()), &keys, ctx.rng())
        && let Some(inner) = &opened.inner
    {
        signatures.push(verify_inner("inner", Some(msg), inner, &opts));
    }
    VerifyReport::new(signatures, verify_route(msg, &opts), Vec::new())
}

fn forwarded(outcome: Outcome, who: &str) -> Result<Message, Error> {
    match outcome {
        Outcome::Forward(m) => Ok(m),
        Outcome::Respond(m) => Err(Error::usage(
            format!(
                "demo: {who} answered {} instead of forwarding",
                m.start_line()
            ),
            "this is a bug in the demo; please report it",
        )),
    }
}

/// Step 10.
pub(super) fn run(
    out: &mut String,
    files: &mut Vec<(&'static str, Vec<u8>)>,
    r: &Relays<'_>,
    invite: &Message,
    ctx: &mut Context,
) -> Result<(), Error> {
    let signer = Arc::new(
        Identity::load_pair(&r.alice.key_path, &r.alice.cert.source).map_err(Error::Keys)?,
    );
    let spec = SealSpec {
        peers: vec![Recipient::Cert(Box::new(r.bob.cert.clone()))],
        disclose: vec![Recipient::Cert(Box::new(r.proxy_a.cert.clone()))],
        signer: Some(signer),
        ..Default::default()
    };
    let mut first = invite.clone();
    append(
        &mut first,
        &RouteEntry {
            addr: ALICE_ADDR.into(),
            level: 3,
        },
    );
    let sealed = seal_message(&first, &spec, ctx).map_err(|err| Error::Seal {
        name: "the demo INVITE".into(),
        err,
    })?;
    let signed = sign_message(
        &sealed.message,
        r.alice,
        SignatureScheme::Pkcs1v15,
        &[],
        ctx,
    )
    .map_err(|err| Error::Signing {
        name: "the demo INVITE".into(),
        err,
    })?;
    files.push(("signed.sip", signed.to_bytes()));
    out.push_str(
        "\n10. signatures and path security. alice signs the SDP inside the envelope (relays may\n    \
         read it, not change it), seals it, and signs the message outside (From, To, Call-ID,\n    \
         CSeq, Date and the Proxy-Inspect-Body are protected); her link to proxy-a is TLS (level 3):\n    \
         $ sipseal build invite ... --header 'Route-Security: <sip:a.example.com:5060>;level=3'\n    \
         $ sipseal seal invite.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem --sign keys/alice\n    \
         $ sipseal sign sealed.sip --identity keys/alice > signed.sip\n\n",
    );

    let bindings = Bindings::from_map(BTreeMap::from([(
        "sip:alice@a.example.com".to_owned(),
        vec![ALICE_ADDR.to_owned()],
    )]));
    out.push_str(
        "    $ sipseal proxy signed.sip --identity keys/proxy-a --received-from a.example.com:5060 \\\n        \
         --link-level 3 --bindings bindings.yaml --require-signature\n",
    );
    let path_a = |from: &str| PathOptions {
        link_level: Some(3),
        received_from: Some(from.into()),
        bindings: Some(bindings.clone()),
        require_signature: true,
        ..Default::default()
    };
    let (outcome, text) = hop(&signed, r.proxy_a, VIA_A, path_a(ALICE_ADDR), ctx)?;
    out.push_str(&indent(&text));
    let at_b = forwarded(outcome, "proxy-a")?;

    out.push_str(
        "\n    $ sipseal proxy to-proxy-b.sip --identity keys/proxy-b --received-from proxy-a.a.example.com --link-level 2\n",
    );
    let path_b = PathOptions {
        link_level: Some(2),
        received_from: Some(VIA_A.into()),
        ..Default::default()
    };
    let (outcome, text) = hop(&at_b, r.proxy_b, VIA_B, path_b, ctx)?;
    out.push_str(&indent(&text));
    let at_bob = forwarded(outcome, "proxy-b")?;
    files.push(("signed-at-bob.sip", at_bob.to_bytes()));

    out.push_str(
        "\n    $ sipseal verify signed-at-bob.sip --trust keys/trust.pem --identity keys/bob \\\n        \
         --min-route-level 2 --received-from proxy-b.b.example.com\n",
    );
    let report = verify_at_bob(&at_bob, r, ctx);
    out.push_str(&indent(&report.to_text()));

    // proxy-b designates itself on the way out: the signed sipfrag says otherwise.
    let mut tampered_at_bob = at_bob.clone();
    let at = tampered_at_bob
        .headers()
        .iter()
        .position(|h| h.is("Proxy-Inspect-Body"))
        .unwrap_or(1);
    tampered_at_bob.insert_header(
        at,
        "Proxy-Inspect-Body",
        "<sip:proxy-b.b.example.com>;access=read",
    );
    out.push_str(
        "\n    if proxy-b had added `Proxy-Inspect-Body: <sip:proxy-b.b.example.com>;access=read`,\n    \
         bob's verify (exit 1) would say:\n",
    );
    let report = verify_at_bob(&tampered_at_bob, r, ctx);
    let failed: String = report
        .to_text()
        .lines()
        .filter(|l| l.contains("FAIL") || l.starts_with("NOT verified"))
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    out.push_str(&indent(&failed));

    // carol's phone claims to be alice: the binding for alice says otherwise.
    let impostor = signed.clone();
    out.push_str(
        "\n    and a request claiming From alice but arriving from 192.0.2.66 (carol's phone):\n    \
         $ sipseal proxy signed.sip --identity keys/proxy-a --received-from 192.0.2.66 --bindings bindings.yaml\n",
    );
    let (outcome, text) = hop(&impostor, r.proxy_a, VIA_A, path_a("192.0.2.66"), ctx)?;
    out.push_str(&indent(&text));
    if let Outcome::Respond(m) = outcome {
        out.push_str(&format!("    -> {} (exit 5)\n", m.start_line()));
    }
    Ok(())
}
