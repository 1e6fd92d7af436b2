//! `sipseal sign`: the outer signature (multipart/signed over the
//! protected headers and the body); and `--sign`, the inner signature
//! flags `seal` shares.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::error::{Error, Exit};
use super::io::{display_name, read_message, write_output};
use crate::context::Context;
use crate::envelope::signed::SignatureScheme;
use crate::keys::Identity;
use crate::signing::sign_message;

/// The inner signature (sign-then-encrypt) of `seal`.
#[derive(Debug, Args, Default)]
pub struct InnerSignArgs {
    /// Sign the plaintext with this identity (cert.pem + key.pem) before
    /// sealing: an opaque SignedData inside the envelope, so relays can read
    /// the body but not change it undetected (access=read enforced).
    #[arg(long, value_name = "DIR")]
    pub sign: Option<PathBuf>,
    /// Sign with RSASSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) instead of PKCS#1 v1.5.
    #[arg(long, requires = "sign")]
    pub pss: bool,
}

impl InnerSignArgs {
    /// The identity to sign with, when --sign was given.
    pub fn signer(&self) -> Result<Option<Arc<Identity>>, Error> {
        match &self.sign {
            None => Ok(None),
            Some(dir) => Ok(Some(Arc::new(load_signer(dir)?))),
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> SignatureScheme {
        scheme(self.pss)
    }
}

fn scheme(pss: bool) -> SignatureScheme {
    if pss {
        SignatureScheme::Pss
    } else {
        SignatureScheme::Pkcs1v15
    }
}

/// Load a signing identity, warnings to stderr.
pub fn load_signer(dir: &std::path::Path) -> Result<Identity, Error> {
    let id = Identity::load_dir(dir)?;
    for w in &id.warnings {
        eprintln!("warning: {w}");
    }
    Ok(id)
}

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
    /// Write here (atomically) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Run `sign`.
pub fn run(args: SignArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let name = display_name(&args.input);
    let msg = read_message(&args.input)?;
    let identity = load_signer(&args.identity)?;
    ctx.mix("sign", &msg.to_bytes());
    let signed = sign_message(&msg, &identity, scheme(args.pss), &[], ctx)
        .map_err(|err| Error::Signing { name, err })?;
    write_output(args.output.as_ref(), &signed.to_bytes())?;
    Ok(Exit::Ok)
}
