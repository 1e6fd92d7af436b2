//! `sipseal sign`: the outer signature (multipart/signed over the
//! protected headers and the body).

use std::path::PathBuf;

use clap::Args;
use sipseal::context::Context;
use sipseal::keys::crl::Crl;
use sipseal::signing::sign_message;

use crate::args::{load_identity, scheme};
use crate::error::{Error, Exit};
use crate::io::{OutputArgs, read_named_message};

/// `sign` arguments.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The SIP message to sign, sealed or not (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    /// Sign with this identity (cert.pem + key.pem): the From party, or a
    /// relay designated with access=modify.
    #[arg(long, value_name = "DIR")]
    pub identity: PathBuf,
    /// Sign with RSASSA-PSS instead of PKCS#1 v1.5.
    #[arg(long)]
    pub pss: bool,
    /// Carry this CRL (PEM or DER; repeatable) in the SignedData, so that
    /// verifiers can check revocation without fetching it (RFC 5652 §10.2.1).
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Run `sign`.
pub fn run(args: SignArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let (name, msg) = read_named_message(&args.input)?;
    let mut identity = load_identity(&args.identity)?;
    for path in &args.crl {
        identity.crls.extend(Crl::load(path)?);
    }
    ctx.mix("sign", &msg.to_bytes());
    let signed = sign_message(&msg, &identity, scheme(args.pss), &[], ctx)
        .map_err(|err| Error::Signing { name, err })?;
    args.output.write(&signed.to_bytes())?;
    Ok(Exit::Ok)
}
