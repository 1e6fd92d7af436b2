//! `sipseal reply`: the next message of a sealed session (a response, or
//! an in-dialog request), its body sealed under the session key.

use std::path::PathBuf;

use clap::Args;

use sipseal::context::Context;
use sipseal::sip::ResponseParams;
use sipseal::ua::{DialogRequest, ReplyTo};

use crate::args::SealingArgs;
use crate::build::{BodyFileArgs, headers_of};
use crate::error::{Error, Exit};
use crate::io::{OutputArgs, display_name, read_message};
use crate::seal::seal_in_dialog;

/// `reply` arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["response", "request_method"])))]
pub struct ReplyArgs {
    /// The message this follows (a path, or - for standard input): the
    /// request to answer with --response; with --request-method, a
    /// message of the dialog (the 2xx at the UAC; the ACK or a later
    /// request received at the UAS).
    #[arg(value_name = "FILE|-")]
    pub input: Option<PathBuf>,
    /// Answer the request with this status code, e.g. 200.
    #[arg(long, value_name = "CODE")]
    pub response: Option<u16>,
    /// The request to answer (instead of FILE).
    #[arg(long, value_name = "FILE", conflicts_with = "input")]
    pub request: Option<PathBuf>,
    /// Send this in-dialog request: ACK, MESSAGE, INVITE (re-INVITE), UPDATE, BYE, INFO, ...
    #[arg(long, value_name = "METHOD")]
    pub request_method: Option<String>,
    /// This party's identity directory: its certificate's SAN URI names
    /// the session store and tells which side of the dialog it is
    /// (default: the To of the request answered, or the side that
    /// received FILE).
    #[arg(long, value_name = "DIR")]
    pub identity: Option<PathBuf>,
    #[command(flatten)]
    pub body: BodyFileArgs,
    /// Reason phrase of the response (default: the standard one).
    #[arg(long, value_name = "TEXT", requires = "response")]
    pub reason: Option<String>,
    /// Contact URI (default: the Request-URI on a 1xx/2xx to INVITE; the
    /// local URI on a re-INVITE or UPDATE).
    #[arg(long, value_name = "URI")]
    pub contact: Option<String>,
    /// The in-dialog request's CSeq number (default: the next of this
    /// party's sequence, remembered in the session store).
    #[arg(long, value_name = "N", requires = "request_method")]
    pub cseq: Option<u32>,
    /// The in-dialog request's Request-URI when the dialog message has no
    /// Contact of the peer (default: its Contact, else its AOR).
    #[arg(long, value_name = "URI", requires = "request_method")]
    pub request_uri: Option<String>,
    /// Via sent-by (default: the host of the local URI).
    #[arg(long, value_name = "HOST:PORT", requires = "request_method")]
    pub via: Option<String>,
    /// Extra header line, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub sealing: SealingArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Run `reply`.
pub fn run(args: ReplyArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let source = args
        .request
        .clone()
        .or_else(|| args.input.clone())
        .unwrap_or_else(|| PathBuf::from("-"));
    let name = display_name(&source);
    let dialog = read_message(&source)?;
    let me = match &args.identity {
        Some(dir) => Some(crate::args::identity_at(dir)?.cert.name()),
        None => None,
    };
    let body = args.body.load()?;
    let headers = headers_of(&args.headers)?;
    let what = match (args.response, &args.request_method) {
        (Some(code), None) => ReplyTo::Response(ResponseParams {
            code,
            reason: args.reason.clone(),
            contact: args.contact.clone(),
            to_tag: None,
            headers,
            body,
        }),
        (None, Some(method)) => ReplyTo::Request(DialogRequest {
            method: method.clone(),
            cseq: args.cseq,
            request_uri: args.request_uri.clone(),
            contact: args.contact.clone(),
            via: args.via.clone(),
            headers,
            body,
        }),
        // The argument group makes exactly one of them present.
        _ => {
            return Err(Error::usage(
                "give --response CODE or --request-method METHOD",
                "e.g. `sipseal reply invite.sip --response 200 --sdp answer.sdp`",
            ));
        }
    };
    let reply = args
        .sealing
        .state
        .user_agent()?
        .ua()
        .reply(&dialog, what, me.as_deref(), ctx)
        .map_err(|err| Error::ua(&name, err))?;
    let out = if reply.message.body().is_empty() {
        // Nothing to seal (ACK, BYE): the message goes as built.
        reply.message
    } else {
        seal_in_dialog(&reply.message, &reply.me, &args.sealing, &name, ctx)?.0
    };
    if let Some(w) = sipseal::sip::size::udp_size_warning(&out) {
        eprintln!("warning: {w}");
    }
    args.output.write(&out.to_bytes())?;
    Ok(Exit::Ok)
}
