//! `sipseal demo`: the flow on the bundled samples, printing what each step
//! does and what each party sees.

use std::path::PathBuf;

use clap::Args;

use super::error::{Error, Exit};
use crate::context::Context;
use crate::fsio::write_atomic;
use crate::inspect::inspect;
use crate::sip::{Body, RequestParams, build_request};

/// The sample offer, built in so the demo runs from any directory.
pub const OFFER_SDP: &[u8] = include_bytes!("../../samples/offer.sdp");

/// `demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Also write each message of the flow into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
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

    let streams = report
        .body
        .as_ref()
        .and_then(|b| b.sdp.as_ref())
        .map_or(0, |s| s.media.len());
    out.push_str(&format!(
        "\n3. what each party sees: the SDP is in clear text, so proxy-a, proxy-b and bob all read\n   \
         the {streams} media streams and their SRTP keys. Sealing it (S/MIME) limits that to bob and\n   \
         the relays alice chooses.\n"
    ));

    if let Some(dir) = &args.out {
        let path = dir.join("invite.sip");
        std::fs::create_dir_all(dir)
            .and_then(|()| write_atomic(&path, &bytes, false))
            .map_err(|source| Error::Write {
                name: path.display().to_string(),
                source,
            })?;
        out.push_str(&format!("\nwrote {}\n", path.display()));
    }
    super::io::write_output(None, out.as_bytes())?;
    Ok(Exit::Ok)
}
