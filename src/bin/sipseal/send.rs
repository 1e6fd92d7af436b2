//! `sipseal send`: one request on the wire as a client transaction.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use sipseal::context::Context;
use sipseal::net::client::{Client, SendError, Timers};
use sipseal::net::{Hosts, Target, Transport};
use sipseal::registrar::digest;
use sipseal::registrar::users::username_of;
use sipseal::sip::Message;

use crate::args::read_secret;
use crate::error::{Error, Exit};
use crate::io::read_message;

/// `send` arguments.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The request to send (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    /// The next hop: udp:HOST:PORT, tcp:HOST:PORT, tls:HOST:PORT, or a
    /// SIP URI with ;transport= (sip:127.0.0.1:5070;transport=tcp,
    /// sip:proxy-a.a.example.com;transport=tls). Over TLS the server must
    /// chain to --trust and be named by the URI's host (RFC 5922: a SAN
    /// URI sip:HOST or a dNSName).
    #[arg(long, value_name = "TARGET")]
    pub next: String,
    /// Names to resolve before DNS: a hosts file whose addresses may carry
    /// a port (`127.0.0.1:5071 proxy-a.a.example.com`).
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// This client's certificate and key for TLS (cert.pem + key.pem):
    /// a TLS server of sipseal's refuses a client without one.
    #[arg(long, value_name = "DIR")]
    pub identity: Option<PathBuf>,
    /// Trust anchors the TLS server's certificate must chain to.
    #[arg(long, value_name = "PEM|DIR")]
    pub trust: Vec<PathBuf>,
    /// Answer a 401/407 challenge once, with the password in this file
    /// (the Digest username is the From URI's user part).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Seconds to wait for a final response (RFC 3261 Timer B/F).
    #[arg(long, value_name = "SECONDS", default_value_t = 32)]
    pub timeout: u64,
}

#[cfg(feature = "live")]
fn connect_tls(
    args: &SendArgs,
    target: &Target,
    timers: &Timers,
    name: &str,
) -> Result<Client, Error> {
    if args.trust.is_empty() {
        return Err(Error::usage(
            "TLS needs the trust anchors the server's certificate chains to",
            "give --trust FILE (and --identity DIR: servers want a client certificate)",
        ));
    }
    let identity = args
        .identity
        .as_deref()
        .map(crate::args::identity_at)
        .transpose()?;
    let mut trust = Vec::new();
    for t in &args.trust {
        trust.extend(crate::args::load_anchors(t)?);
    }
    let tls = sipseal::net::tls::TlsSetup::new(identity.as_ref(), &trust)
        .map_err(|e| Error::usage(e.to_string(), "check --identity and --trust"))?;
    Client::connect_tls(target, timers.timeout, &tls).map_err(|e| match e {
        SendError::Tls(why) => Error::usage(
            format!("{name}: TLS with {}: {why}", target.name),
            "the server must chain to --trust and be named by the --next host; it may refuse this client's --identity",
        ),
        other => wire(name)(other),
    })
}

#[cfg(not(feature = "live"))]
fn connect_tls(_: &SendArgs, _: &Target, _: &Timers, _: &str) -> Result<Client, Error> {
    Err(Error::usage(
        "this sipseal was built without TLS",
        "build with the default features (`live`)",
    ))
}

fn wire(name: &str) -> impl Fn(SendError) -> Error + '_ {
    move |err| match err {
        SendError::Unsendable(why) => Error::usage(
            format!("{name}: {why}"),
            "give a request with a Via (and branch), as `sipseal build` makes",
        ),
        other => Error::usage(
            format!("{name}: {other}"),
            "check --next and that something listens there",
        ),
    }
}

/// Run `send`: each response goes to standard output as it arrives; exit
/// 0 for a 2xx final response, 5 for another, 4 when none came in time.
pub fn run(args: SendArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let hosts = match &args.hosts {
        Some(p) => Hosts::load(p).map_err(|why| {
            Error::usage(
                why.to_string(),
                "lines of ADDRESS[:PORT] NAME..., as /etc/hosts",
            )
        })?,
        None => Hosts::default(),
    };
    let target = Target::parse(&args.next, &hosts)
        .map_err(|why| Error::usage(why.to_string(), "e.g. --next udp:127.0.0.1:5060"))?;
    let timers = Timers {
        timeout: Duration::from_secs(args.timeout.max(1)),
        ..Default::default()
    };
    let request = read_message(&args.input)?;
    let name = args.input.display().to_string();
    let mut print = |m: &Message| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&m.to_bytes());
        let _ = out.flush();
    };
    let timed_out = |e: &SendError| matches!(e, SendError::Timeout(_));
    let mut client = match target.transport {
        Transport::Tls => connect_tls(&args, &target, &timers, &name)?,
        _ => Client::connect(&target, timers.timeout).map_err(wire(&name))?,
    };
    let mut last = match client.send(&request, &timers, &mut print) {
        Ok(r) => r,
        Err(e) if timed_out(&e) => {
            eprintln!("{name}: {e} from {}", args.next);
            return Ok(Exit::Io);
        }
        Err(e) => return Err(wire(&name)(e)),
    };
    // One authorized retry (RFC 3261 §22.2): same Call-ID and tags, CSeq
    // + 1, a new branch, the Digest answer.
    if let (Some(final_response), Some(password)) = (&last, &args.password_file)
        && matches!(final_response.status(), Some(401 | 407))
    {
        let (challenge_header, auth_header) = if final_response.status() == Some(401) {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let challenge = final_response.header(challenge_header).ok_or_else(|| {
            Error::usage(
                format!(
                    "the {} has no {challenge_header}",
                    final_response.status().unwrap_or_default()
                ),
                "the next hop's challenge is malformed",
            )
        })?;
        let from = request.aor("From").unwrap_or_default();
        let username = username_of(from).ok_or_else(|| {
            Error::usage(
                format!("the From URI {from} has no user part"),
                "give a From of sip:user@domain",
            )
        })?;
        let method = request.method().unwrap_or_default().to_owned();
        let uri = request.request_uri().unwrap_or_default().to_owned();
        let password = read_secret(password)?;
        let cnonce = hex::encode(ctx.bytes(8));
        let auth = digest::answer(
            challenge,
            username,
            &password,
            &method,
            &uri,
            request.body(),
            &cnonce,
        )
        .map_err(|e| Error::usage(e.to_string(), "the next hop's challenge is malformed"))?;
        let mut retry = request.clone();
        let seq = request
            .cseq()
            .map_err(sipseal::sip::compose::ComposeError::from)?
            .seq;
        retry.set_header("CSeq", &format!("{} {method}", seq + 1));
        let via = retry.header("Via").unwrap_or_default().to_owned();
        let branch = format!("z9hG4bK{}", ctx.token(8));
        let fresh = match via.split_once("branch=") {
            Some((head, tail)) => {
                let rest = tail.find([';', ',']).map_or("", |i| &tail[i..]);
                format!("{head}branch={branch}{rest}")
            }
            None => via,
        };
        retry.set_header("Via", &fresh);
        retry.remove_headers(auth_header);
        let at = retry.before_body_headers();
        retry.insert_header(at, auth_header, &auth);
        last = match client.send(&retry, &timers, &mut print) {
            Ok(r) => r,
            Err(e) if timed_out(&e) => {
                eprintln!("{name}: {e} from {}", args.next);
                return Ok(Exit::Io);
            }
            Err(e) => return Err(wire(&name)(e)),
        };
    }
    Ok(match last.and_then(|r| r.status()) {
        Some(200..=299) | None => Exit::Ok,
        Some(code) => {
            eprintln!("{name}: final response {code}");
            Exit::SipError
        }
    })
}
