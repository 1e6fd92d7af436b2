//! `sipseal proxy`: one relay step (SPEC §4): decide, open if designated,
//! report, forward, or answer with a SIP error response.

use std::path::PathBuf;

use clap::Args;

use super::error::{Error, Exit};
use super::io::{display_name, read_message, write_output};
use super::{Format, render};
use crate::context::Context;
use crate::fsio::write_atomic;
use crate::keys::{Cert, Identity, Psk};
use crate::relay::{Outcome, RelayKeys, RelayOptions, RelayReport, relay};
use crate::sdp::SdpEdit;

/// `proxy` arguments.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The SIP request or response arriving at this relay (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    /// This relay's identity directory (cert.pem + key.pem). The key is
    /// read only when a RecipientInfo is addressed to it.
    #[arg(long, value_name = "DIR")]
    pub identity: PathBuf,
    /// A PSK this relay shares with a user agent (YAML: id, key, uri); repeatable.
    #[arg(long, value_name = "FILE")]
    pub psk: Vec<PathBuf>,
    /// This relay's Via sent-by (default: the host of its certificate's SAN URI).
    #[arg(long, value_name = "HOST:PORT")]
    pub via: Option<String>,
    /// Also open when not designated, if a RecipientInfo is addressed to this relay.
    #[arg(long)]
    pub trial: bool,
    /// Answer 496 to a request whose sealed body this relay cannot open, designated or not.
    #[arg(long)]
    pub require_disclosure: bool,
    /// Keep this relay's own Proxy-Inspect-Body entry when forwarding.
    #[arg(long)]
    pub keep_designation: bool,
    /// Edit the SDP (media relay): rewrite every c= address. Only with access=modify;
    /// the body is then re-sealed for the same recipients with a fresh CEK.
    #[arg(long, value_name = "ADDR")]
    pub set_connection: Option<String>,
    /// Edit the SDP: set the port of a media stream, by index or type
    /// (e.g. audio=40000 or 1=40002); repeatable. Only with access=modify.
    #[arg(long, value_name = "STREAM=PORT", value_parser = SdpEdit::port_arg)]
    pub set_port: Vec<SdpEdit>,
    /// Certificates of the recipients to re-seal for after an edit: a file,
    /// or a directory searched for *.pem, *.crt, *.cer, *.der; repeatable.
    #[arg(long, value_name = "FILE|DIR")]
    pub certs: Vec<PathBuf>,
    /// Write the disclosure report here (mode 0600: it may hold SRTP keys).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Format of --report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub report_format: Format,
    /// Write the forwarded message (or the error response) here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Run `proxy`.
pub fn run(args: ProxyArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let identity = Identity::load_dir(&args.identity)?;
    for w in &identity.warnings {
        eprintln!("warning: {w}");
    }
    let psks = args
        .psk
        .iter()
        .map(|p| Psk::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut certs = Vec::new();
    for c in &args.certs {
        certs.extend(Cert::load_tree(c)?);
    }
    let msg = read_message(&args.input)?;
    let keys = RelayKeys {
        identity: &identity,
        psks: &psks,
        certs: &certs,
    };
    let mut edits: Vec<SdpEdit> = args
        .set_connection
        .iter()
        .cloned()
        .map(SdpEdit::Connection)
        .collect();
    edits.extend(args.set_port.iter().cloned());
    let opts = RelayOptions {
        via: args.via.clone(),
        trial: args.trial,
        require_disclosure: args.require_disclosure,
        keep_designation: args.keep_designation,
        edits,
    };
    let (outcome, report) = relay(&msg, &keys, &opts, ctx).map_err(|err| Error::Relay {
        name: display_name(&args.input),
        err,
    })?;
    if let Some(path) = &args.report {
        let text = render(args.report_format, &report, RelayReport::to_text)?;
        write_atomic(path, text.as_bytes(), true).map_err(|source| Error::Write {
            name: path.display().to_string(),
            source,
        })?;
    }
    match outcome {
        Outcome::Forward(m) => {
            write_output(args.output.as_ref(), &m.to_bytes())?;
            Ok(Exit::Ok)
        }
        Outcome::Respond(m) => {
            eprintln!("proxy: answered {} instead of forwarding", m.start_line());
            write_output(args.output.as_ref(), &m.to_bytes())?;
            Ok(Exit::SipError)
        }
    }
}
