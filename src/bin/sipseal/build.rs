//! `sipseal build`: compose requests and responses from flags or a YAML spec.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Deserialize;

use sipseal::context::Context;
use sipseal::sip::compose::parse_header_arg;
use sipseal::sip::{
    Body, Message, RequestParams, ResponseParams, Transport, build_request, build_response,
};

use crate::args::{RecipientArgs, StateArgs};
use crate::error::{Error, Exit};
use crate::io::{read_input, read_message, write_output};

const SPEC_HELP: &str = "\
Message spec (YAML) for --spec; keys mirror the flags, file paths are relative to the spec file:

  # a request
  method: INVITE
  from: sip:alice@a.example.com
  to: sip:bob@b.example.com
  request-uri: sip:bob@b.example.com     # optional, default: the To URI
  call-id: a84b4c76e66710@a.example.com  # optional, generated
  cseq: 1                                # optional
  contact: sip:alice@192.0.2.10          # optional
  via: a.example.com:5060                # optional, default: the From host
  transport: udp                         # udp | tcp | tls
  sdp: offer.sdp                         # or body: FILE + content-type: TYPE
  headers: [\"Subject: hello\"]

  # a response
  response: 200
  request: invite.sip
  reason: OK                             # optional
  sdp: answer.sdp";

/// `build` arguments.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, after_long_help = SPEC_HELP)]
pub struct BuildArgs {
    #[command(subcommand)]
    pub what: Option<BuildWhat>,
    /// Build from a YAML message spec instead of flags.
    #[arg(long, value_name = "FILE.yaml")]
    pub spec: Option<PathBuf>,
    /// Write the message here (atomically) instead of standard output.
    #[arg(short, long, value_name = "FILE", global = true)]
    pub output: Option<PathBuf>,
    /// Seal the body in the same step (as `sipseal seal`), for --peer and
    /// the --disclose relays.
    #[arg(long, global = true)]
    pub seal: bool,
    #[command(flatten)]
    pub recipients: RecipientArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

/// What to build.
#[derive(Debug, Subcommand)]
pub enum BuildWhat {
    /// An INVITE (offer SDP with --sdp).
    Invite(RequestArgs),
    /// A MESSAGE.
    Message(RequestArgs),
    /// An UPDATE.
    Update(RequestArgs),
    /// An OPTIONS.
    Options(RequestArgs),
    /// A REGISTER (Request-URI: the AOR's domain).
    Register(RequestArgs),
    /// A BYE.
    Bye(RequestArgs),
    /// An ACK.
    Ack(RequestArgs),
    /// A response to a request (RFC 3261 §8.2.6).
    Response(ResponseArgs),
}

/// A body from a file: `--sdp`, or `--body` with `--content-type`.
#[derive(Debug, Args)]
pub struct BodyFileArgs {
    /// Body from an SDP file (Content-Type: application/sdp).
    #[arg(long, value_name = "FILE", conflicts_with = "body")]
    pub sdp: Option<PathBuf>,
    /// Body from any file, with --content-type.
    #[arg(long, value_name = "FILE", requires = "content_type")]
    pub body: Option<PathBuf>,
    /// Content-Type of --body.
    #[arg(long, value_name = "TYPE", requires = "body")]
    pub content_type: Option<String>,
}

impl BodyFileArgs {
    /// The body named, if any.
    pub fn load(&self) -> Result<Option<Body>, Error> {
        load_body(
            self.sdp.as_deref(),
            self.body.as_deref(),
            self.content_type.as_deref(),
        )
    }
}

/// The body options shared by requests and responses.
#[derive(Debug, Args)]
pub struct BodyArgs {
    #[command(flatten)]
    pub file: BodyFileArgs,
    /// Extra header line, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
}

/// Request flags.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// From: a URI or `Name <URI>;params` (a tag is added when absent).
    #[arg(long, value_name = "URI")]
    pub from: String,
    /// To: a URI or `Name <URI>;params`.
    #[arg(long, value_name = "URI")]
    pub to: String,
    /// Request-URI (default: the To URI; for REGISTER the To domain).
    #[arg(long, value_name = "URI")]
    pub request_uri: Option<String>,
    /// Call-ID (default: generated).
    #[arg(long, value_name = "ID")]
    pub call_id: Option<String>,
    /// CSeq number (default: 1).
    #[arg(long, value_name = "N")]
    pub cseq: Option<u32>,
    /// Contact URI (default for INVITE, REGISTER, UPDATE, SUBSCRIBE, REFER: the From URI).
    #[arg(long, value_name = "URI")]
    pub contact: Option<String>,
    /// Via sent-by (default: the From host).
    #[arg(long, value_name = "HOST:PORT")]
    pub via: Option<String>,
    /// Transport named in the Via.
    #[arg(long, value_enum, default_value_t = Transport::Udp)]
    pub transport: Transport,
    #[command(flatten)]
    pub body: BodyArgs,
}

/// Response flags.
#[derive(Debug, Args)]
pub struct ResponseArgs {
    /// Status code, e.g. 200.
    pub code: u16,
    /// The request this answers.
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
    /// Reason phrase (default: the standard one).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Contact URI (default on 1xx/2xx to INVITE: the Request-URI).
    #[arg(long, value_name = "URI")]
    pub contact: Option<String>,
    /// To tag (default: generated).
    #[arg(long, value_name = "TAG")]
    pub to_tag: Option<String>,
    #[command(flatten)]
    pub body: BodyArgs,
}

/// The YAML message spec; see [`SPEC_HELP`].
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct MessageSpec {
    method: Option<String>,
    from: Option<String>,
    to: Option<String>,
    request_uri: Option<String>,
    call_id: Option<String>,
    cseq: Option<u32>,
    contact: Option<String>,
    via: Option<String>,
    #[serde(default)]
    transport: Transport,
    response: Option<u16>,
    request: Option<PathBuf>,
    reason: Option<String>,
    to_tag: Option<String>,
    sdp: Option<PathBuf>,
    body: Option<PathBuf>,
    content_type: Option<String>,
    #[serde(default)]
    headers: Vec<String>,
}

/// A body from `--sdp`, or `--body` with `--content-type`.
pub fn load_body(
    sdp: Option<&Path>,
    body: Option<&Path>,
    content_type: Option<&str>,
) -> Result<Option<Body>, Error> {
    match (sdp, body, content_type) {
        (Some(sdp), None, None) => Ok(Some(Body {
            content_type: "application/sdp".into(),
            bytes: read_input(sdp)?,
        })),
        (None, Some(body), Some(ct)) => Ok(Some(Body {
            content_type: ct.to_owned(),
            bytes: read_input(body)?,
        })),
        (None, None, None) => Ok(None),
        _ => Err(Error::usage(
            "give either an SDP file, or a body file with its content type",
            "use --sdp FILE, or --body FILE --content-type TYPE",
        )),
    }
}

/// `--header` values as (name, value).
pub fn headers_of(args: &[String]) -> Result<Vec<(String, String)>, Error> {
    args.iter()
        .map(|h| parse_header_arg(h).map_err(Error::from))
        .collect()
}

fn request_from_args(method: &str, a: &RequestArgs) -> Result<RequestParams, Error> {
    Ok(RequestParams {
        method: method.to_owned(),
        from: a.from.clone(),
        to: a.to.clone(),
        request_uri: a.request_uri.clone(),
        call_id: a.call_id.clone(),
        cseq: a.cseq,
        contact: a.contact.clone(),
        via: a.via.clone(),
        transport: a.transport,
        headers: headers_of(&a.body.headers)?,
        body: a.body.file.load()?,
    })
}

fn response(a: &ResponseArgs, ctx: &mut Context) -> Result<Message, Error> {
    let request = read_message(&a.request)?;
    let params = ResponseParams {
        code: a.code,
        reason: a.reason.clone(),
        contact: a.contact.clone(),
        to_tag: a.to_tag.clone(),
        headers: headers_of(&a.body.headers)?,
        body: a.body.file.load()?,
    };
    Ok(build_response(&request, &params, ctx)?)
}

/// Build the message a spec file describes.
fn from_spec(path: &Path, ctx: &mut Context) -> Result<Message, Error> {
    let text = String::from_utf8(read_input(path)?).map_err(|_| Error::Spec {
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })?;
    let spec: MessageSpec = sipseal::yaml::from_str(&text).map_err(|e| Error::Spec {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let rel = |p: &Option<PathBuf>| p.as_ref().map(|p| dir.join(p));
    let spec_err = |reason: &str| Error::Spec {
        path: path.to_owned(),
        reason: reason.into(),
    };
    let body = load_body(
        rel(&spec.sdp).as_deref(),
        rel(&spec.body).as_deref(),
        spec.content_type.as_deref(),
    )?;
    let headers = headers_of(&spec.headers)?;
    match (spec.method, spec.response) {
        (Some(method), None) => {
            if spec.request.is_some() || spec.reason.is_some() || spec.to_tag.is_some() {
                return Err(spec_err(
                    "request, reason and to-tag belong to a response spec",
                ));
            }
            let params = RequestParams {
                method,
                from: spec
                    .from
                    .ok_or_else(|| spec_err("a request spec needs `from`"))?,
                to: spec
                    .to
                    .ok_or_else(|| spec_err("a request spec needs `to`"))?,
                request_uri: spec.request_uri,
                call_id: spec.call_id,
                cseq: spec.cseq,
                contact: spec.contact,
                via: spec.via,
                transport: spec.transport,
                headers,
                body,
            };
            Ok(build_request(&params, ctx)?)
        }
        (None, Some(code)) => {
            if spec.from.is_some()
                || spec.to.is_some()
                || spec.request_uri.is_some()
                || spec.call_id.is_some()
            {
                return Err(spec_err(
                    "a response copies from, to, call-id from its request; remove them",
                ));
            }
            let request =
                rel(&spec.request).ok_or_else(|| spec_err("a response spec needs `request`"))?;
            let request = read_message(&request)?;
            let params = ResponseParams {
                code,
                reason: spec.reason,
                contact: spec.contact,
                to_tag: spec.to_tag,
                headers,
                body,
            };
            Ok(build_response(&request, &params, ctx)?)
        }
        _ => Err(spec_err(
            "give exactly one of `method` (a request) or `response` (a status code)",
        )),
    }
}

/// Run `build`.
pub fn run(args: BuildArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let msg = match (&args.what, &args.spec) {
        (Some(what), None) => match what {
            BuildWhat::Invite(a) => build_request(&request_from_args("INVITE", a)?, ctx)?,
            BuildWhat::Message(a) => build_request(&request_from_args("MESSAGE", a)?, ctx)?,
            BuildWhat::Update(a) => build_request(&request_from_args("UPDATE", a)?, ctx)?,
            BuildWhat::Options(a) => build_request(&request_from_args("OPTIONS", a)?, ctx)?,
            BuildWhat::Register(a) => build_request(&request_from_args("REGISTER", a)?, ctx)?,
            BuildWhat::Bye(a) => build_request(&request_from_args("BYE", a)?, ctx)?,
            BuildWhat::Ack(a) => build_request(&request_from_args("ACK", a)?, ctx)?,
            BuildWhat::Response(a) => response(a, ctx)?,
        },
        (None, Some(spec)) => from_spec(spec, ctx)?,
        _ => {
            return Err(Error::usage(
                "nothing to build",
                "name a method (sipseal build invite --from URI --to URI), `response CODE --request FILE`, or --spec FILE.yaml",
            ));
        }
    };
    let msg = match (args.seal, args.recipients.any()) {
        (false, false) => msg,
        (true, true) => {
            let spec = args.recipients.spec(ctx.now())?;
            let ua = args.state.user_agent()?;
            ua.seal(&msg, &spec, "the built message", ctx)?.message
        }
        (true, false) => {
            return Err(Error::usage(
                "--seal without recipients",
                "add --peer CERT (and --disclose CERT|psk:FILE for relays)",
            ));
        }
        (false, true) => {
            return Err(Error::usage(
                "--peer/--disclose given without --seal",
                "add --seal to seal the body, or use `sipseal seal` on the built message",
            ));
        }
    };
    if let Some(w) = sipseal::sip::size::udp_size_warning(&msg) {
        eprintln!("warning: {w}");
    }
    write_output(args.output.as_ref(), &msg.to_bytes())?;
    Ok(Exit::Ok)
}
