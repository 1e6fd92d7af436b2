//! Step 10 of the demo: signatures and path security. alice signs inside
//! the envelope (read-only disclosure) and outside (the designations are
//! protected); the relays check the path; bob verifies everything; a
//! designation added in transit and an impostor are caught.

use std::sync::Arc;

use sipseal::context::Context;
use sipseal::envelope::signed::SignatureScheme;
use sipseal::envelope::{Recipient, RecipientKey};
use sipseal::keys::Identity;
use sipseal::relay::{Outcome, PathOptions, RelayOptions};
use sipseal::sealing::SealSpec;
use sipseal::signing::sign_message;
use sipseal::sip::Message;
use sipseal::sip::route_security::{EntryForm, RouteEntry, put_on_top};
use sipseal::state::MemoryStore;
use sipseal::verify::{VerifyOptions, VerifyReport, verify_message};

use super::{Files, Parties, alice_bindings, alice_invite, hop, indent, put, state, ua};
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
    files: &mut Files,
    r: &Parties,
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
    let mut first = alice_invite(super::OFFER_SDP, ctx)?;
    put_on_top(&mut first, &RouteEntry::new(ALICE_ADDR, 3), EntryForm::Bare);
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
    put(files, "invite-rs.sip", first.to_bytes());
    put(files, "sealed-signed.sip", sealed.message.to_bytes());
    put(files, "signed.sip", signed.to_bytes());
    out.push_str(
        "\n10. signatures and path security, on a new call (its keys in state-signed). alice's link\n    \
         to proxy-a is TLS (level 3), and her INVITE says so in its first Route-Security entry.\n    \
         She signs the SDP inside the envelope (relays may read it, not change it), seals it,\n    \
         and signs the message outside (From, To, Call-ID, CSeq, Date and the\n    \
         Proxy-Inspect-Body are protected):\n    \
         $ sipseal build invite --from sip:alice@a.example.com --to sip:bob@b.example.com \\\n        \
         --via a.example.com:5060 --sdp samples/offer.sdp \\\n        \
         --header 'Route-Security: a.example.com:5060;level=3' > invite-rs.sip\n    \
         $ sipseal seal invite-rs.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem \\\n        \
         --sign keys/alice --state state-signed > sealed-signed.sip\n    \
         $ sipseal sign sealed-signed.sip --identity keys/alice > signed.sip\n\n",
    );

    let bindings = alice_bindings();
    out.push_str(
        "    proxy-a checks where it came from (--received-from, --bindings), that alice signed it\n    \
         (--require-signature), and that the top Route-Security entry names that hop; it\n    \
         puts its own on top for its TLS link to proxy-b (--link-level 3):\n    \
         $ sipseal proxy signed.sip --identity keys/proxy-a --via proxy-a.a.example.com \\\n        \
         --received-from a.example.com:5060 --link-level 3 --bindings bindings.yaml \\\n        \
         --require-signature --signer-trust keys/trust.pem --state state-signed > signed-to-proxy-b.sip\n",
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
    put(files, "signed-to-proxy-b.sip", at_b.to_bytes());

    out.push_str(
        "\n    proxy-b's link to bob is only integrity-protected (level 2):\n    \
         $ sipseal proxy signed-to-proxy-b.sip --identity keys/proxy-b --via proxy-b.b.example.com \\\n        \
         --received-from proxy-a.a.example.com --link-level 2 --state state-signed > signed-at-bob.sip\n",
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
    put(files, "signed-at-bob.sip", at_bob.to_bytes());

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
    put(files, "signed-tampered.sip", tampered_at_bob.to_bytes());
    out.push_str(
        "\n    if proxy-b had added `Proxy-Inspect-Body: <sip:proxy-b.b.example.com>;access=read`\n    \
         (signed-tampered.sip is signed-at-bob.sip with that header), bob's verify would say:\n    \
         $ sipseal verify signed-tampered.sip --trust keys/trust.pem --identity keys/bob \\\n        \
         --min-route-level 2 --received-from proxy-b.b.example.com   # exit 1\n",
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
    out.push_str(
        "\n    and the same signed INVITE arriving from 192.0.2.66 (carol's phone), not from an\n    \
         address alice's AOR is bound to:\n    \
         $ sipseal proxy signed.sip --identity keys/proxy-a --via proxy-a.a.example.com \\\n        \
         --received-from 192.0.2.66 --link-level 3 --bindings bindings.yaml \\\n        \
         --require-signature --signer-trust keys/trust.pem --state state-signed > 403.sip   # exit 5\n",
    );
    let step = hop(
        &mut String::new(),
        &signed,
        &r.proxy_a,
        &checked(VIA_A, path_a("192.0.2.66")),
        state(&store, false),
        ctx,
    )?;
    let refused = step.report.refused.clone().unwrap_or_default();
    let Outcome::Respond(answer) = step.outcome else {
        return Err(Error::usage(
            "demo: proxy-a forwarded the impostor's INVITE",
            "this is a bug in the demo; please report it",
        ));
    };
    out.push_str(&format!(
        "    proxy-a answers {} and forwards nothing. The imposture check comes\n    \
         before anything else: it compares the From AOR's bindings with where the request\n    \
         came from,\n      {refused}\n    \
         so proxy-a never looked at the body: the sealed SDP stays unopened, and alice's\n    \
         valid signature does not help a sender at the wrong address.\n",
        answer.start_line()
    ));
    put(files, "403.sip", answer.to_bytes());
    Ok(())
}
