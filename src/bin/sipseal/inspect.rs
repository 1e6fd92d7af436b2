//! `sipseal inspect`: the message's structure, no key needed.

use std::path::PathBuf;

use clap::Args;

use sipseal::context::Context;
use sipseal::inspect::{Known, Report, inspect_cms, inspect_with};
use sipseal::keys::Cert;
use sipseal::sealing::SealedInput;

use crate::args::KeyArgs;
use crate::error::{Error, Exit};
use crate::io::Format;
use crate::io::{display_name, read_sealed_input, render, write_output};

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A SIP message, a MIME entity or CMS in DER/PEM (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Certificates to name recipients with: a file, or a directory
    /// searched for *.pem, *.crt, *.cer, *.der (e.g. keys/); repeatable.
    /// No private key is read.
    #[arg(long, value_name = "FILE|DIR")]
    pub certs: Vec<PathBuf>,
    /// Keys to check: with --identity, --key/--cert or --psk, the report
    /// says whether each can open the sealed body.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Write the report here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Run `inspect`.
pub fn run(args: InspectArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let ring = args.keys.load()?;
    let mut certs = Vec::new();
    for c in &args.certs {
        certs.extend(Cert::load_tree(c)?);
    }
    let mut known = Known {
        certs: certs.iter().collect(),
        psks: ring.psks.iter().collect(),
        keys: ring.recipient_keys(),
    };
    known.certs.extend(ring.identities.iter().map(|i| &i.cert));
    let input = read_sealed_input(&args.input)?;
    let report = match &input {
        SealedInput::Sip(msg) => inspect_with(msg, &known, ctx.rng()),
        SealedInput::Mime { der, .. } | SealedInput::Cms(der) => {
            inspect_cms(der, &known, ctx.rng())
        }
    };
    let text = render(args.format, &report, Report::to_text)?;
    write_output(args.output.as_ref(), text.as_bytes())?;
    // The report is written either way: it is how the defect is found.
    match report.malformed {
        Some(err) => Err(Error::Malformed {
            name: display_name(&args.input),
            err,
        }),
        None => Ok(Exit::Ok),
    }
}
