//! `sipseal open`: decrypt a body addressed to me.

use std::path::{Path, PathBuf};

use clap::Args;

use super::error::{Error, Exit};
use super::io::{display_name, read_sealed_input, write_output};
use super::keyargs::KeyArgs;
use super::state::{StateArgs, aor, sender_header};
use crate::context::Context;
use crate::envelope::signed::SignatureError;
use crate::envelope::{Envelope, EnvelopeKind, RecipientKey};
use crate::keys::Cert;
use crate::sealing::{SealError, SealedInput, envelope_der, open_parsed};
use crate::session::Role;
use crate::signing::InnerSignature;
use crate::sip::Message;
use crate::verify::{VerifyOptions, verify_inner};

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
    /// Write here (atomically) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
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
    let seal_err = |err: SealError| Error::Seal {
        name: name.clone(),
        err,
    };
    let env = Envelope::parse(&envelope_der(&input).map_err(seal_err)?)
        .map_err(|e| seal_err(e.into()))?;
    let mut keys = ring.recipient_keys();
    let sip = match &input {
        SealedInput::Sip(msg) => Some(msg),
        _ => None,
    };
    // A session message (one KEKRecipientInfo under a 16-byte reference)
    // opens with the key stored when the session's full envelope was
    // opened, unless one of the PSKs given has that id.
    let session = if env.find(&keys).is_none() {
        let owners: Vec<String> = keys.iter().map(RecipientKey::owner).collect();
        let key = args.state.session_key(&owners, &env, sip, ctx)?;
        if let (None, Some(reference)) = (&key, env.session_reference()) {
            return Err(Error::UnknownSessionKey {
                name,
                reference: hex::encode(reference),
            });
        }
        key
    } else {
        None
    };
    if let Some(key) = &session {
        keys.insert(0, key.recipient_key());
    }
    let opened = open_parsed(input, &env, &keys, ctx.rng()).map_err(seal_err)?;
    if let Some(inner) = &opened.inner {
        // The restored message has the sealed one's From.
        let msg = opened.message.as_ref();
        check_inner(inner, msg, args.trust.as_deref(), &name, ctx)?;
    }
    if opened.kind == EnvelopeKind::EnvelopedData {
        eprintln!(
            "warning: EnvelopedData (AES-CBC) has no integrity protection: alterations in transit go undetected; prefer AuthEnvelopedData (AES-GCM)"
        );
    }
    // The restored message has the sealed one's From, To and Call-ID.
    if let (Some(msg), Some(key), None) = (&opened.message, keys.get(opened.key_index), &session) {
        let sender = aor(msg, sender_header(msg));
        args.state.record_session(
            &key.owner(),
            msg,
            &opened.cek,
            Role::Ua,
            sender.as_deref(),
            ctx,
        )?;
    }
    // Without a SIP message around it, the whole decrypted content (the
    // MIME entity) is the natural output; --body-only strips its headers.
    let out = match (&opened.message, args.body_only, &opened.entity) {
        (Some(msg), false, _) => msg.to_bytes(),
        (_, true, Some(e)) => e.body.clone(),
        _ => opened.content.to_vec(),
    };
    write_output(args.output.as_ref(), &out)?;
    Ok(Exit::Ok)
}

/// The inner signature: a bad one is exit 1; a good one names its signer
/// on stderr, and with `--trust` must pass every certificate check.
pub fn check_inner(
    inner: &Result<InnerSignature, SignatureError>,
    msg: Option<&Message>,
    trust: Option<&Path>,
    name: &str,
    ctx: &Context,
) -> Result<(), Error> {
    let signed = match inner {
        Ok(s) => s,
        Err(e) => {
            return Err(Error::Signature {
                name: name.to_owned(),
                reason: format!("the inner signature: {e}"),
                hint: e.hint(),
            });
        }
    };
    let signer = signed.signer.cert.name();
    let Some(trust) = trust else {
        eprintln!(
            "inner signature by {signer}: the signature verifies (certificate not checked: give --trust)"
        );
        return Ok(());
    };
    let anchors = Cert::load_tree(trust)?;
    let opts = VerifyOptions {
        anchors: &anchors,
        at: ctx.now(),
        min_route_level: None,
        received_from: None,
    };
    let report = verify_inner("inner", msg, inner, &opts);
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.check, c.detail))
        .collect();
    if failed.is_empty() {
        eprintln!("inner signature by {signer}: verified (chain, validity, key usage, signer)");
        Ok(())
    } else {
        Err(Error::Signature {
            name: name.to_owned(),
            reason: format!("the inner signature by {signer} does not check: {}", failed.join("; ")),
            hint: "see `sipseal verify --identity` for the whole report; check --trust and the clock (--now)".into(),
        })
    }
}
