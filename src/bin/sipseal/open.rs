//! `sipseal open`: decrypt a body addressed to me.

use std::path::PathBuf;

use clap::Args;
use sipseal::context::Context;
use sipseal::envelope::EnvelopeKind;
use sipseal::ua::InnerCheck;

use crate::args::load_anchors;
use crate::args::{KeyArgs, StateArgs, say_stored};
use crate::error::{Error, Exit};
use crate::io::{OutputArgs, display_name, read_sealed_input};

/// `open` arguments.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// A SIP message with a pkcs7-mime body, a MIME entity, or CMS in DER
    /// or PEM (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Trust anchors (PEM/DER file or directory) for the inner signature:
    /// with them the signer's chain, validity, key usage and SAN URI (the
    /// From AOR) are checked too, not just the signature.
    #[arg(long, value_name = "PEM|DIR")]
    pub trust: Option<PathBuf>,
    /// Write only the plaintext content (the SDP), not the message.
    #[arg(long)]
    pub body_only: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Run `open`.
pub fn run(args: OpenArgs, ctx: &mut Context) -> Result<Exit, Error> {
    if !args.keys.any() {
        return Err(Error::usage(
            "no key to open with",
            "give --identity DIR, --key KEY --cert CERT, or --psk FILE",
        ));
    }
    let ring = args.keys.load()?;
    let name = display_name(&args.input);
    let input = read_sealed_input(&args.input)?;
    let anchors = args.trust.as_deref().map(load_anchors).transpose()?;
    let opened = args
        .state
        .user_agent()?
        .ua()
        .open(input, &ring.recipient_keys(), anchors.as_deref(), ctx)
        .map_err(|err| Error::ua(&name, err))?;
    match &opened.inner {
        Some(InnerCheck::Verifies { signer }) => eprintln!(
            "inner signature by {signer}: the signature verifies (certificate not checked: give --trust)"
        ),
        Some(InnerCheck::Verified { signer }) => {
            eprintln!("inner signature by {signer}: verified (chain, validity, key usage, signer)")
        }
        None => {}
    }
    for part in &opened.parts {
        let cid = part.content_id.as_deref().unwrap_or("(no Content-ID)");
        if part.opened {
            eprintln!("part <{cid}>: opened in place");
        } else {
            eprintln!("part <{cid}>: not for this key, left sealed");
        }
    }
    let content = &opened.content;
    if let Some(note) = content
        .backend
        .as_ref()
        .and_then(|b| b.note("the private-key operation"))
    {
        eprintln!("note: {note}");
    }
    if content.kind == EnvelopeKind::EnvelopedData {
        eprintln!(
            "warning: EnvelopedData ({}) has no integrity protection: alterations in transit go undetected; prefer AuthEnvelopedData (AES-GCM)",
            content.cipher.name()
        );
    }
    if content.cipher.is_legacy() {
        eprintln!(
            "warning: {} is a legacy cipher (64-bit blocks, RFC 8551 no longer asks for it): opened, but sipseal never seals with it",
            content.cipher.name()
        );
    }
    say_stored(opened.stored.as_ref(), &args.state.limits());
    // Without a SIP message around it, the whole decrypted content (the
    // MIME entity) is the natural output; --body-only strips its headers.
    let out = match (&content.message, args.body_only, &content.entity) {
        (Some(msg), false, _) => msg.to_bytes(),
        (_, true, Some(e)) => e.body.clone(),
        _ => content.content.to_vec(),
    };
    // Plaintext (SRTP keys included): a new file is 0600.
    args.output.write_private(&out)?;
    Ok(Exit::Ok)
}
