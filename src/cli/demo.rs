//! `sipseal demo`: the flow on the bundled samples, printing what each step
//! does and what each party sees.

use std::path::{Path, PathBuf};

use clap::Args;

use super::error::{Error, Exit};
use crate::context::Context;
use crate::envelope::{Cek, Recipient, RecipientKey};
use crate::fsio::write_atomic;
use crate::inspect::{Known, inspect, inspect_with};
use crate::keys::trust::check_issued;
use crate::keys::{Cert, Identity};
use crate::pinhole::{CallState, Seen};
use crate::relay::{
    Outcome, RelayKeys, RelayOptions, RelayReport, Step, relay, undecipherable_cert,
};
use crate::sealing::{SealSpec, SealedInput, open_input, seal_message};
use crate::session::SessionKey;
use crate::sip::{Body, Message, RequestParams, build_request};

mod dialog;
mod signed;

/// The sample offer, built in so the demo runs from any directory.
pub const OFFER_SDP: &[u8] = include_bytes!("../../samples/offer.sdp");
/// The sample answer.
pub const ANSWER_SDP: &[u8] = include_bytes!("../../samples/answer.sdp");

/// `demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Also write each message of the flow into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The demo PKI (default: ./keys when present, else the repository's keys/).
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
}

fn keys_dir(arg: Option<&PathBuf>) -> PathBuf {
    match arg {
        Some(d) => d.clone(),
        None if Path::new("keys/bob/cert.pem").is_file() => PathBuf::from("keys"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("keys"),
    }
}

/// The header section of a sealed message, with the binary body summarised.
fn headers_only(bytes: &[u8]) -> String {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |i| i + 4);
    format!(
        "{}<{} bytes of DER: CMS AuthEnvelopedData>\n",
        String::from_utf8_lossy(&bytes[..end]),
        bytes.len() - end
    )
}

/// What a party sees when it opens (or fails to open) the sealed INVITE.
fn view(
    sealed: &Message,
    who: &str,
    identity: &Identity,
    ctx: &mut Context,
    same_as: &[u8],
) -> String {
    let keys = [RecipientKey::Rsa {
        cert: &identity.cert,
        key: identity,
    }];
    let input = SealedInput::Sip(sealed.clone());
    match open_input(input, &keys, ctx.rng()) {
        Ok(opened) => {
            let mut v = String::new();
            if let Some(msg) = &opened.message {
                let bytes = msg.to_bytes();
                if bytes == same_as {
                    v.push_str(&format!(
                        "{who} opens it (exit 0): alice's INVITE comes back byte for byte.\n"
                    ));
                } else {
                    v.push_str(&format!("{who} opens it (exit 0).\n"));
                }
                let report = inspect(msg);
                if let Some(sdp) = report.body.as_ref().and_then(|b| b.sdp.as_ref()) {
                    v.push_str(&format!(
                        "{who} reads the SDP: connection {}\n",
                        sdp.connection_addresses.join(", ")
                    ));
                    for m in &sdp.media {
                        v.push_str(&format!(
                            "  {} {}:{} {}{}{}\n",
                            m.media,
                            m.address.as_deref().unwrap_or("-"),
                            m.port,
                            m.protocol,
                            if m.rtcp_mux { ", rtcp-mux" } else { "" },
                            if m.crypto_suites.is_empty() {
                                String::new()
                            } else {
                                format!(", SRTP keys ({})", m.crypto_suites.join(" "))
                            }
                        ));
                    }
                }
            }
            v
        }
        Err(e) => format!(
            "{who} cannot open it (exit {}): {e}\n  {who} sees only ciphertext; its private key was never used.\n",
            if e.is_not_recipient() { 3 } else { 1 }
        ),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("    {l}\n")
            }
        })
        .collect()
}

/// Run `demo`.
pub fn run(args: DemoArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let mut out = String::new();
    out.push_str("sipseal demo: selective disclosure of SIP bodies to chosen relays\n\n");

    let params = RequestParams {
        method: "INVITE".into(),
        from: "sip:alice@a.example.com".into(),
        to: "sip:bob@b.example.com".into(),
        via: Some("a.example.com:5060".into()),
        body: Some(Body {
            content_type: "application/sdp".into(),
            bytes: OFFER_SDP.to_vec(),
        }),
        ..Default::default()
    };
    let invite = build_request(&params, ctx)?;
    let bytes = invite.to_bytes();
    out.push_str(
        "1. alice builds an INVITE to bob with the sample offer (audio + video, SRTP keys):\n",
    );
    out.push_str(
        "   $ sipseal build invite --from sip:alice@a.example.com --to sip:bob@b.example.com \\\n",
    );
    out.push_str("       --via a.example.com:5060 --sdp samples/offer.sdp\n\n");
    out.push_str(&indent(&String::from_utf8_lossy(&bytes)));

    let report = inspect(&invite);
    out.push_str(
        "\n2. anyone on the path inspects it, no key needed:\n   $ sipseal inspect invite.sip\n\n",
    );
    out.push_str(&indent(&report.to_text()));

    let dir = keys_dir(args.keys.as_ref());
    let load = |who: &str| Identity::load_dir(&dir.join(who));
    let bob = load("bob")?;
    let proxy_a = load("proxy-a")?;
    let proxy_b = load("proxy-b")?;

    let spec = SealSpec {
        peers: vec![Recipient::Cert(Box::new(bob.cert.clone()))],
        disclose: vec![Recipient::Cert(Box::new(proxy_a.cert.clone()))],
        ..Default::default()
    };
    let sealed = seal_message(&invite, &spec, ctx).map_err(|err| Error::Seal {
        name: "the demo INVITE".into(),
        err,
    })?;
    let sealed_bytes = sealed.message.to_bytes();
    out.push_str(
        "\n3. alice seals the SDP for bob and discloses it to her outbound proxy, proxy-a\n   \
         (AuthEnvelopedData, AES-256-GCM, one RSA-OAEP RecipientInfo each), not to proxy-b:\n   \
         $ sipseal seal invite.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem\n\n",
    );
    out.push_str(&indent(&headers_only(&sealed_bytes)));

    let certs: Vec<Cert> = Cert::load_tree(&dir)?;
    let known = Known {
        certs: certs.iter().collect(),
        ..Default::default()
    };
    let report = inspect_with(&sealed.message, &known, ctx.rng());
    out.push_str(
        "\n4. anyone inspects it without a key; certificates name the recipients:\n   \
         $ sipseal inspect sealed.sip --certs keys\n\n",
    );
    let text = report.to_text();
    let from = text.find("  part:").unwrap_or(0);
    out.push_str(&indent(&text[from..]));

    out.push_str("\n5. what each party sees:\n\n");
    out.push_str("   $ sipseal open sealed.sip --identity keys/proxy-a\n");
    out.push_str(&indent(&view(
        &sealed.message,
        "proxy-a",
        &proxy_a,
        ctx,
        &bytes,
    )));
    out.push_str("\n   $ sipseal open sealed.sip --identity keys/proxy-b\n");
    out.push_str(&indent(&view(
        &sealed.message,
        "proxy-b",
        &proxy_b,
        ctx,
        &bytes,
    )));
    out.push_str("\n   $ sipseal open sealed.sip --identity keys/bob\n");
    out.push_str(&indent(&view(&sealed.message, "bob", &bob, ctx, &bytes)));

    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("invite.sip", bytes.clone()),
        ("sealed.sip", sealed_bytes.clone()),
    ];
    let alice = load("alice")?;
    let relays = Relays {
        alice: &alice,
        proxy_a: &proxy_a,
        proxy_b: &proxy_b,
        bob: &bob,
        anchors: Cert::load_all(&dir.join("trust.pem"))?,
    };
    let leg = relay_path(&mut out, &mut files, &relays, &invite, &sealed.message, ctx)?;
    designation_without_key(&mut out, &mut files, &relays, &invite, &spec, ctx)?;
    dialog::run(&mut out, &mut files, &relays, &spec, &sealed.cek, leg, ctx)?;
    signed::run(&mut out, &mut files, &relays, &invite, ctx)?;

    if let Some(dir) = &args.out {
        for (name, data) in &files {
            let path = dir.join(name);
            std::fs::create_dir_all(dir)
                .and_then(|()| write_atomic(&path, data, false))
                .map_err(|source| Error::Write {
                    name: path.display().to_string(),
                    source,
                })?;
            out.push_str(&format!("\nwrote {}", path.display()));
        }
        out.push('\n');
    }
    super::io::write_output(None, out.as_bytes())?;
    Ok(Exit::Ok)
}

/// The parties of the relay steps.
struct Relays<'a> {
    alice: &'a Identity,
    proxy_a: &'a Identity,
    proxy_b: &'a Identity,
    bob: &'a Identity,
    anchors: Vec<Cert>,
}

/// What one relay step gave.
struct Hopped {
    msg: Message,
    report: RelayReport,
    forwarded: bool,
    cek: Option<Cek>,
}

/// One relay step as `sipseal proxy` runs it (with `--record-route`),
/// the relay knowing the session keys `sessions`.
fn hop_with(
    out: &mut String,
    msg: &Message,
    relay_id: &Identity,
    via: &str,
    sessions: &[SessionKey],
    ctx: &mut Context,
) -> Result<Hopped, Error> {
    let keys = RelayKeys {
        identity: relay_id,
        psks: &[],
        certs: &[],
        sessions,
    };
    let opts = RelayOptions {
        via: Some(via.into()),
        record_route: true,
        ..Default::default()
    };
    let Step {
        outcome,
        report,
        cek,
    } = relay(msg, &keys, &opts, ctx).map_err(|err| Error::Relay {
        name: "the demo message".into(),
        err,
    })?;
    out.push_str(&indent(&report.to_text()));
    let (msg, forwarded) = match outcome {
        Outcome::Forward(m) => (m, true),
        Outcome::Respond(m) => (m, false),
    };
    Ok(Hopped {
        msg,
        report,
        forwarded,
        cek,
    })
}

/// One relay step without session keys; returns the outgoing message.
fn hop(
    out: &mut String,
    msg: &Message,
    relay_id: &Identity,
    via: &str,
    ctx: &mut Context,
) -> Result<(Message, RelayReport, bool), Error> {
    let h = hop_with(out, msg, relay_id, via, &[], ctx)?;
    Ok((h.msg, h.report, h.forwarded))
}

/// alice -> proxy-a (designated: opens, reports, pinholes) -> proxy-b (blind) -> bob.
fn relay_path(
    out: &mut String,
    files: &mut Vec<(&str, Vec<u8>)>,
    r: &Relays<'_>,
    invite: &Message,
    sealed: &Message,
    ctx: &mut Context,
) -> Result<Leg, Error> {
    out.push_str(
        "\n6. the INVITE travels alice -> proxy-a -> proxy-b -> bob. proxy-a is designated:\n   \
         it opens the body, reports the media and SRTP keys, writes firewall pinholes,\n   \
         and forwards the sealed body byte for byte:\n   \
         $ sipseal proxy sealed.sip --identity keys/proxy-a --via proxy-a.a.example.com:5060 \\\n       --report report.txt --state state --pinholes pinholes.nft > to-proxy-b.sip\n\n",
    );
    let Hopped {
        msg: to_b,
        report,
        cek: proxy_a_cek,
        ..
    } = hop_with(
        out,
        sealed,
        r.proxy_a,
        "proxy-a.a.example.com:5060",
        &[],
        ctx,
    )?;
    let same = to_b.body() == sealed.body();
    out.push_str(&format!(
        "    sealed body forwarded byte-identical: {}\n",
        if same { "yes" } else { "NO" }
    ));
    let mut call = CallState::new(invite.call_id().unwrap_or_default());
    let changes = call.step(&Seen::of(&to_b, report.sdp.as_deref()));
    let nft = changes.to_nft();
    out.push_str(
        "\n   pinholes.nft (`nft -f pinholes.nft`; the answer in the 200 OK completes it):\n\n",
    );
    out.push_str(&indent(
        &nft.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    ));
    files.push(("to-proxy-b.sip", to_b.to_bytes()));
    files.push(("pinholes.nft", nft.into_bytes()));

    out.push_str(
        "\n   proxy-b is not designated and not a recipient: it forwards without touching its key:\n   \
         $ sipseal proxy to-proxy-b.sip --identity keys/proxy-b --via proxy-b.b.example.com > to-bob.sip\n\n",
    );
    let (to_bob, report_b, _) = hop(out, &to_b, r.proxy_b, "proxy-b.b.example.com", ctx)?;
    let invite_notes = [
        dialog::relay_note("proxy-a", sealed, &report),
        dialog::relay_note("proxy-b", &to_b, &report_b),
    ];
    out.push_str(&format!(
        "    Via headers now: {}; Max-Forwards: {}\n",
        to_bob.header_list("Via").len(),
        to_bob.header("Max-Forwards").unwrap_or("-")
    ));
    files.push(("to-bob.sip", to_bob.to_bytes()));
    out.push_str("\n   $ sipseal open to-bob.sip --identity keys/bob\n");
    out.push_str(&indent(&view(&to_bob, "bob", r.bob, ctx, &[])));
    Ok(Leg {
        to_bob,
        proxy_a_cek,
        call,
        invite_notes,
    })
}

/// Where the call of step 6 stands when it reaches bob.
struct Leg {
    to_bob: Message,
    proxy_a_cek: Option<Cek>,
    call: CallState,
    /// What proxy-a and proxy-b read of the INVITE, for the ladder.
    invite_notes: [String; 2],
}

/// alice designates proxy-b by URI only; proxy-b answers 496 with its
/// certificate; alice seals again with it added.
fn designation_without_key(
    out: &mut String,
    files: &mut Vec<(&str, Vec<u8>)>,
    r: &Relays<'_>,
    invite: &Message,
    spec: &SealSpec,
    ctx: &mut Context,
) -> Result<(), Error> {
    let seal_err = |err| Error::Seal {
        name: "the demo INVITE".into(),
        err,
    };
    out.push_str(
        "\n7. the same INVITE when bob's domain wants its proxy to see the SDP: alice designates\n   \
         proxy-b by URI, but has no certificate for it (so no RecipientInfo):\n   \
         $ sipseal seal invite.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem \\\n       --designate sip:proxy-b.b.example.com > designated.sip\n",
    );
    let mut first_spec = spec.clone();
    first_spec.designate = vec!["sip:proxy-b.b.example.com".into()];
    let first = seal_message(invite, &first_spec, ctx).map_err(seal_err)?;
    files.push(("designated.sip", first.message.to_bytes()));
    let (at_b, _, _) = hop(
        &mut String::new(),
        &first.message,
        r.proxy_a,
        "proxy-a.a.example.com:5060",
        ctx,
    )?;
    out.push_str(
        "\n   proxy-a forwards it as before; proxy-b is designated but cannot open it:\n   \
         $ sipseal proxy to-proxy-b.sip --identity keys/proxy-b > 496.sip   # exit 5\n\n",
    );
    let (answer, _, forwarded) = hop(out, &at_b, r.proxy_b, "proxy-b.b.example.com", ctx)?;
    if forwarded {
        return Err(Error::usage(
            "the demo expected a 496 from proxy-b",
            "this is a bug; please report it",
        ));
    }
    let answer_bytes = answer.to_bytes();
    let head_end = answer_bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer_bytes.len());
    out.push_str(&indent(&format!(
        "{}\r\n\r\n<{} bytes: proxy-b's certificate, DER>\n",
        String::from_utf8_lossy(&answer_bytes[..head_end]),
        answer.body().len()
    )));
    files.push(("496.sip", answer_bytes));

    let cert = undecipherable_cert(&answer, "496.sip")
        .map_err(|e| Error::usage(format!("496.sip: {e}"), "this is a bug; please report it"))?;
    let anchor = check_issued(&cert, &r.anchors, ctx.now()).map_err(|err| Error::Untrusted {
        name: "496.sip".into(),
        err,
    })?;
    out.push_str(&format!(
        "\n   alice checks the certificate against her trust anchors (issued by {}) and seals again:\n   \
         $ sipseal seal invite.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem \\\n       --add-recipient-from 496.sip --trust keys/trust.pem > resealed.sip\n",
        anchor.subject()
    ));
    let mut second_spec = spec.clone();
    second_spec.disclose.push(Recipient::Cert(Box::new(cert)));
    let second = seal_message(invite, &second_spec, ctx).map_err(seal_err)?;
    files.push(("resealed.sip", second.message.to_bytes()));
    let (at_b, _, _) = hop(
        &mut String::new(),
        &second.message,
        r.proxy_a,
        "proxy-a.a.example.com:5060",
        ctx,
    )?;
    out.push_str(
        "\n   now proxy-b opens and reads the media on its way to bob:\n   \
         $ sipseal proxy to-proxy-b.sip --identity keys/proxy-b > to-bob.sip\n\n",
    );
    let (to_bob, _, _) = hop(out, &at_b, r.proxy_b, "proxy-b.b.example.com", ctx)?;
    out.push_str("\n   $ sipseal open to-bob.sip --identity keys/bob\n");
    out.push_str(&indent(&view(&to_bob, "bob", r.bob, ctx, &[])));
    Ok(())
}
