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
use sipseal::sip::StartLine;

use crate::args::read_password_file;
use crate::error::{Error, Exit};
use crate::io::read_message;

/// The hints `send` gives when a request did not succeed (the README's
/// "When `send` fails" table holds the same text; a test keeps them so).
pub mod hints {
    /// 401/407 and no `--password-file`.
    pub const CHALLENGED: &str = "the next hop wants credentials: give --password-file FILE with the account's password (the Digest username is the From URI's user part)";
    /// 401/407 again after the authorized retry.
    pub const CHALLENGED_AGAIN: &str = "the next hop did not take the answer to its challenge: check the password in --password-file and that the From URI's user is the account's (`sipseal registrar passwd --user`)";
    /// 403.
    pub const FORBIDDEN: &str = "refused: wrong credentials, an AOR this account may not use, or (at a relay) a From AOR not registered from this address; the next hop's log says which";
    /// 404 and 480.
    pub const NOBODY: &str = "nobody by that name (404) or not registered now (480): check the Request-URI's user and domain, and that the callee registered";
    /// A provisional response, then no final one in time.
    pub const NO_FINAL: &str = "the next hop answered (a provisional response) but no final response came in time: the callee did not answer (a phone ringing), or a hop lost the final one; --timeout waits longer";
    /// No final response in time.
    pub const TIMEOUT: &str = "nothing answered in time: check the transport (udp:, tcp:, tls:) and port of --next, that the relay or registrar runs there, and any firewall between; --timeout waits longer";
    /// Nothing listens there (every transport, exit 4).
    pub const UNREACHABLE: &str = "nothing listens at --next: check the transport (udp:, tcp:, tls:) and the port, and that the relay or registrar is running";
}

/// The hint for a final response `code`, if it has one; `authorized`
/// when the request was retried with credentials.
fn hint_for(code: u16, authorized: bool) -> Option<&'static str> {
    match code {
        401 | 407 if authorized => Some(hints::CHALLENGED_AGAIN),
        401 | 407 => Some(hints::CHALLENGED),
        403 => Some(hints::FORBIDDEN),
        404 | 480 => Some(hints::NOBODY),
        _ => None,
    }
}

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
    move |err| match &err {
        SendError::Unsendable(why) => Error::usage(
            format!("{name}: {why}"),
            "give a request with a Via (and branch), as `sipseal build` makes",
        ),
        SendError::Unreachable(_) => Error::Unreachable {
            message: format!("{name}: {err}"),
            hint: hints::UNREACHABLE,
        },
        SendError::Timeout(_) => Error::Unreachable {
            message: format!("{name}: {err}"),
            hint: hints::TIMEOUT,
        },
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
    // The last provisional response, if one came: a timeout after it is
    // not a next hop that cannot be reached.
    let provisional = std::cell::Cell::new(None::<u16>);
    let mut print = |m: &Message| {
        if let Some(code @ 100..=199) = m.status() {
            provisional.set(Some(code));
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&m.to_bytes());
        let _ = out.flush();
    };
    let mut client = match target.transport {
        Transport::Tls => connect_tls(&args, &target, &timers, &name)?,
        _ => Client::connect(&target, timers.timeout).map_err(wire(&name))?,
    };
    let from_next = format!("{name} (--next {})", args.next);
    let failed = |e: SendError| match (&e, provisional.get()) {
        (SendError::Timeout(_), Some(code)) => Error::Unreachable {
            message: format!("{from_next}: {e} (after a {code})"),
            hint: hints::NO_FINAL,
        },
        _ => wire(&from_next)(e),
    };
    let mut last = client.send(&request, &timers, &mut print).map_err(failed)?;
    let mut authorized = false;
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
        let password = read_password_file(password)?;
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
        last = client.send(&retry, &timers, &mut print).map_err(failed)?;
        authorized = true;
    }
    let Some(last) = last else {
        return Ok(Exit::Ok);
    };
    Ok(match last.start_line() {
        StartLine::Response { code, .. } if (200..=299).contains(code) => Exit::Ok,
        StartLine::Response { code, reason } => {
            let warning = last
                .header("Warning")
                .map(|w| format!(" (Warning: {w})"))
                .unwrap_or_default();
            eprintln!("{name}: final response {code} {reason}{warning}");
            if let Some(hint) = hint_for(*code, authorized) {
                eprintln!("hint: {hint}");
            }
            Exit::SipError
        }
        StartLine::Request { .. } => Exit::Ok,
    })
}
