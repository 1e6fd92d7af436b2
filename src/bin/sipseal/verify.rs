//! `sipseal verify`: every signature on a message, and its Route-Security
//! chain, checked into a report; exit 0 only when everything checks.

use std::path::PathBuf;

use clap::Args;
use time::OffsetDateTime;

use sipseal::context::Context;
use sipseal::keys::crl::Crl;
use sipseal::sealing::SealedInput;
use sipseal::sip::route_security::MAX_LEVEL;
use sipseal::verify::{VerifyOptions, VerifyReport, verify_cms, verify_message};

use crate::args::KeyArgs;
use crate::args::load_anchors;
use crate::args::parse_now;
use crate::error::{Error, Exit};
use crate::io::Format;
use crate::io::{read_input, read_sealed_input, render, write_output};

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
    #[arg(long, value_name = "RFC3339", value_parser = parse_now)]
    pub at: Option<OffsetDateTime>,
    /// Fail (exit 1) when a Route-Security link is below this level (0-3;
    /// an entry without a level counts as 0), naming the weakest link, or
    /// when a request's links are unaccounted for.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=MAX_LEVEL as i64))]
    pub min_route_level: Option<u8>,
    /// Check revocation against this CRL (PEM or DER; repeatable): every
    /// certificate of each signer's path but the trust anchor must be
    /// absent from a current CRL of its issuer, as `openssl -crl_check_all`.
    /// CRLs a SignedData carries are used too, with or without --crl.
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// The hop this message came from (HOST[:PORT]): the top
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
    let anchors = load_anchors(&args.trust)?;
    if anchors.is_empty() {
        return Err(Error::usage(
            format!("no certificates in {}", args.trust.display()),
            "give the CA certificates to trust, e.g. --trust keys/trust.pem",
        ));
    }
    let crls = args
        .crl
        .iter()
        .map(|p| Crl::load(p))
        .collect::<Result<Vec<_>, _>>()?
        .concat();
    let ring = args.keys.load()?;
    let opts = VerifyOptions {
        anchors: &anchors,
        at: args.at.unwrap_or_else(|| ctx.now()),
        min_route_level: args.min_route_level,
        received_from: args.received_from.as_deref(),
        crls: (!args.crl.is_empty()).then_some(&crls),
    };
    let input = read_sealed_input(&args.input)?;
    let report = match input {
        SealedInput::Sip(msg) => verify_message(&msg, &ring.recipient_keys(), &opts, ctx.rng()),
        SealedInput::Cms(der) | SealedInput::Mime { der, .. } => {
            let content = args.content.as_ref().map(|p| read_input(p)).transpose()?;
            verify_cms(&der, content.as_deref(), &opts)
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
