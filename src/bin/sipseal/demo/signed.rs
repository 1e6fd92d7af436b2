//! Step 10 of the demo: signatures and path security. alice signs inside
//! the envelope (read-only disclosure) and outside (the designations are
//! protected); the relays check the path; bob verifies everything; a
//! designation added in transit and an impostor are caught.

use std::collections::BTreeMap;
use std::sync::Arc;

use sipseal::context::Context;
use sipseal::envelope::signed::SignatureScheme;
use sipseal::envelope::{Recipient, RecipientKey};
use sipseal::keys::Identity;
use sipseal::policy::Bindings;
use sipseal::relay::{Outcome, PathOptions, RelayOptions};
use sipseal::sealing::SealSpec;
use sipseal::signing::sign_message;
use sipseal::sip::Message;
use sipseal::sip::route_security::{RouteEntry, append};
use sipseal::state::MemoryStore;
use sipseal::verify::{VerifyOptions, VerifyReport, verify_message};

use super::{Parties, hop, indent, state, ua};
use crate::error::Error;

const ALICE_ADDR: &str = "a.example.com:5060";
const VIA_A: &str = "proxy-a.a.example.com";
const VIA_B: &str = "proxy-b.b.example.com";

/// bob's `verify --identity keys/bob --min-route-level 2 --received-from proxy-b`.
fn verify_at_bob(msg: &Message, r: &Parties, ctx: &mut Context) -> VerifyReport {
    let opts = VerifyOptions {
        anchors: &r.anchors,
        at: ctx.now(),
        min_route_level: Some(2),
        crls: None,
        received_from: Some(VIA_B),
    };
    let keys = [RecipientKey::Cert {
        cert: &r.bob.cert,
        key: &r.bob,
    }];
    verify_message(msg, &keys, &opts, ctx.rng())
}

/// `sipseal proxy --via VIA` with the path checks of `path`.
fn checked(via: &str, path: PathOptions) -> RelayOptions {
    RelayOptions {
        via: Some(via.into()),
        path,
        ..Default::default()
    }
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
        Outcome::Drop(why) => Err(Error::usage(
            format!("demo: {who} dropped the message: {why}"),
            "this is a bug in the demo; please report it",
        )),
    }
}

/// Step 10.
pub(super) fn run(
    out: &mut String,
    files: &mut Vec<(&'static str, Vec<u8>)>,
    r: &Parties,
    invite: &Message,
    ctx: &mut Context,
) -> Result<(), Error> {
    // A scenario of its own: a new call's keys.
    let store = MemoryStore::new();
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
    let sealed = ua(&store)
        .seal(&first, &spec, ctx)
        .map_err(|err| Error::ua("the demo INVITE", err))?
        .sealed;
    let signed = sign_message(
        &sealed.message,
        &r.alice,
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
         --link-level 3 --bindings bindings.yaml --require-signature --signer-trust keys/trust.pem\n",
    );
    let path_a = |from: &str| PathOptions {
        link_level: Some(3),
        received_from: Some(from.into()),
        bindings: Some(std::sync::Arc::new(bindings.clone())),
        require_signature: true,
        trust: r.anchors.clone().into(),
        ..Default::default()
    };
    let step = hop(
        out,
        &signed,
        &r.proxy_a,
        &checked(VIA_A, path_a(ALICE_ADDR)),
        state(&store, false),
        ctx,
    )?;
    let at_b = forwarded(step.outcome, "proxy-a")?;

    out.push_str(
        "\n    $ sipseal proxy to-proxy-b.sip --identity keys/proxy-b --received-from proxy-a.a.example.com --link-level 2\n",
    );
    let path_b = PathOptions {
        link_level: Some(2),
        received_from: Some(VIA_A.into()),
        ..Default::default()
    };
    let step = hop(
        out,
        &at_b,
        &r.proxy_b,
        &checked(VIA_B, path_b),
        state(&store, false),
        ctx,
    )?;
    let at_bob = forwarded(step.outcome, "proxy-b")?;
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
    let step = hop(
        out,
        &impostor,
        &r.proxy_a,
        &checked(VIA_A, path_a("192.0.2.66")),
        state(&store, false),
        ctx,
    )?;
    if let Outcome::Respond(m) = step.outcome {
        out.push_str(&format!("    -> {} (exit 5)\n", m.start_line()));
    }
    Ok(())
}
