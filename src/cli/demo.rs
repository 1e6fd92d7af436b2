//! `sipseal demo`: the flow on the bundled samples, printing what each step
//! does and what each party sees.

use std::path::{Path, PathBuf};

use clap::Args;

use super::error::{Error, Exit};
use crate::context::Context;
use crate::envelope::{Recipient, RecipientKey};
use crate::fsio::write_atomic;
use crate::inspect::{Known, inspect, inspect_with};
use crate::keys::{Cert, Identity};
use crate::sealing::{SealSpec, SealedInput, open_input, seal_message};
use crate::sip::{Body, Message, RequestParams, build_request};

/// The sample offer, built in so the demo runs from any directory.
pub const OFFER_SDP: &[u8] = include_bytes!("../../samples/offer.sdp");

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
    match open_input(&input, &keys, ctx.rng()) {
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

    if let Some(dir) = &args.out {
        for (name, data) in [("invite.sip", &bytes), ("sealed.sip", &sealed_bytes)] {
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
