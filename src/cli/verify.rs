//! `sipseal verify`: every signature on a message, and its Route-Security
//! chain, checked into a report; exit 0 only when everything checks.

use std::path::PathBuf;

use clap::Args;
use time::OffsetDateTime;

use super::error::{Error, Exit};
use super::io::{read_input, read_sealed_input, write_output};
use super::keyargs::KeyArgs;
use super::{Format, render};
use crate::context::Context;
use crate::envelope::Envelope;
use crate::keys::Cert;
use crate::mime::Entity;
use crate::sealing::{SealedInput, open_parsed, sealed_body};
use crate::signing::{outer_signature, peel, unwrap_inner, verify_signed};
use crate::sip::Message;
use crate::sip::route_security::MAX_LEVEL;
use crate::verify::{
    Check, SignatureReport, VerifyOptions, VerifyReport, verify_inner, verify_outer, verify_route,
};

/// `verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A signed SIP message; or a CMS SignedData (DER or PEM), opaque or
    /// with --content (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    /// Trust anchors: CA certificates (PEM/DER file or directory).
    #[arg(long, value_name = "PEM|DIR")]
    pub trust: PathBuf,
    /// Check validity at this RFC 3339 time instead of now (or --now).
    #[arg(long, value_name = "RFC3339", value_parser = super::parse_now)]
    pub at: Option<OffsetDateTime>,
    /// Fail when a Route-Security link is below this level (0-3) or unaccounted for.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=MAX_LEVEL as i64))]
    pub min_route_level: Option<u8>,
    /// The hop this message came from (HOST[:PORT]): the newest
    /// Route-Security entry must name it.
    #[arg(long, value_name = "ADDR")]
    pub received_from: Option<String>,
    /// With --identity/--key/--psk, also open the sealed body and verify
    /// the inner signature.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// The signed content of a detached SignedData given as FILE.
    #[arg(long, value_name = "FILE")]
    pub content: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Run `verify`.
pub fn run(args: VerifyArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let anchors = Cert::load_tree(&args.trust)?;
    if anchors.is_empty() {
        return Err(Error::usage(
            format!("no certificates in {}", args.trust.display()),
            "give the CA certificates to trust, e.g. --trust keys/trust.pem",
        ));
    }
    let ring = args.keys.load()?;
    let opts = VerifyOptions {
        anchors: &anchors,
        at: args.at.unwrap_or_else(|| ctx.now()),
        min_route_level: args.min_route_level,
        received_from: args.received_from.as_deref(),
    };
    let input = read_sealed_input(&args.input)?;
    let report = match input {
        SealedInput::Sip(msg) => verify_message(msg, &ring, &opts, ctx),
        SealedInput::Cms(der) | SealedInput::Mime { der, .. } => {
            let content = args.content.as_ref().map(|p| read_input(p)).transpose()?;
            VerifyReport::new(
                vec![verify_cms(&der, content.as_deref(), &opts)],
                None,
                Vec::new(),
            )
        }
    };
    let text = render(args.format, &report, VerifyReport::to_text)?;
    write_output(args.output.as_ref(), text.as_bytes())?;
    Ok(if report.verified {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

/// A bare SignedData: the signature and the signer's certificate.
fn verify_cms(der: &[u8], content: Option<&[u8]>, opts: &VerifyOptions<'_>) -> SignatureReport {
    verify_inner("cms", None, &verify_signed(der, content), opts)
}

fn verify_message(
    msg: Message,
    ring: &super::keyargs::Keyring,
    opts: &VerifyOptions<'_>,
    ctx: &mut Context,
) -> VerifyReport {
    let mut signatures = Vec::new();
    let mut checks = Vec::new();
    let view = match outer_signature(&msg) {
        Ok(Some(outer)) => {
            signatures.push(verify_outer(&msg, &outer, opts));
            peel(&msg).ok().flatten().unwrap_or_else(|| msg.clone())
        }
        Ok(None) => msg.clone(),
        Err(e) => {
            checks.push(Check {
                check: "structure",
                ok: false,
                detail: e.to_string(),
            });
            msg.clone()
        }
    };
    // An opaque signed-data body (signed, not sealed).
    let opaque = view
        .header("Content-Type")
        .map(|ct| Entity {
            headers: vec![("Content-Type".into(), ct.to_owned())],
            body: view.body().to_vec(),
        })
        .and_then(|e| unwrap_inner(&e));
    if let Some(result) = opaque {
        signatures.push(verify_inner("opaque", Some(&msg), &result, opts));
    } else if !ring.is_empty()
        && let Ok(der) = sealed_body(&view)
    {
        match Envelope::parse(&der)
            .map_err(|e| e.to_string())
            .and_then(|env| {
                open_parsed(
                    SealedInput::Cms(der.clone()),
                    &env,
                    &ring.recipient_keys(),
                    ctx.rng(),
                )
                .map_err(|e| e.to_string())
            }) {
            Ok(opened) => match &opened.inner {
                Some(result) => signatures.push(verify_inner("inner", Some(&msg), result, opts)),
                None => checks.push(Check {
                    check: "inner",
                    ok: true,
                    detail: "the sealed content carries no inner signature".into(),
                }),
            },
            Err(e) => checks.push(Check {
                check: "inner",
                ok: false,
                detail: format!("cannot open the sealed body to check an inner signature: {e}"),
            }),
        }
    }
    VerifyReport::new(signatures, verify_route(&msg, opts), checks)
}
