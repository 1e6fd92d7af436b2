//! `sipseal session`: the stored session keys (docs/SPEC.md §5), for people and
//! scripts: list them, show one, forget one, export one for openssl.

use clap::{Args, Subcommand};
use serde::Serialize;

use sipseal::context::rfc3339;
use sipseal::session::{Entry, Role, Sessions};
use sipseal::state::SessionStore;

use crate::args::StateArgs;
use crate::error::{Error, Exit};
use crate::io::Format;
use crate::io::{render, write_output};

/// `session` subcommands.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// One line per session: Call-ID, session reference, role, uses, expiry, identity.
    List(ListArgs),
    /// One session in full (the KEK left out), by Call-ID or reference.
    Show(PickArgs),
    /// Delete a session's keys, by Call-ID or reference.
    Forget(PickArgs),
    /// Print a session key for openssl: `-secretkey HEX -secretkeyid HEX`,
    /// so `openssl cms -decrypt $(sipseal session export ID) ...` opens a
    /// session message.
    Export(PickArgs),
}

/// Which stores, and how to print.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the store of this identity (its certificate SAN URI or AOR,
    /// e.g. sip:bob@b.example.com); default: every identity in the state directory.
    #[arg(long = "as", value_name = "URI")]
    pub owner: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub state: StateArgs,
}

/// One session.
#[derive(Debug, Args)]
pub struct PickArgs {
    /// The session's Call-ID, or its session reference (hex).
    #[arg(value_name = "CALL-ID|REFERENCE")]
    pub which: String,
    #[command(flatten)]
    pub list: ListArgs,
}

/// A session as listed and shown: the entry without its keys.
#[derive(Debug, Serialize)]
struct Listed<'a> {
    identity: &'a str,
    call_id: &'a str,
    reference: String,
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<&'a str>,
    created: String,
    uses: u64,
    max_uses: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_until: Option<String>,
    /// A translating relay's other side (`reencrypt` with a fresh CEK).
    #[serde(skip_serializing_if = "Option::is_none")]
    onward_reference: Option<String>,
}

impl<'a> Listed<'a> {
    fn of(identity: &'a str, e: &'a Entry) -> Listed<'a> {
        Listed {
            identity,
            call_id: &e.call_id,
            reference: hex::encode(&e.reference),
            role: e.role,
            peer: e.peer.as_deref(),
            created: rfc3339(e.created),
            uses: e.uses,
            max_uses: e.max_uses,
            expiry: e.expiry.map(rfc3339),
            previous_reference: e.previous.as_ref().map(|p| hex::encode(&p.reference)),
            previous_until: e.previous.as_ref().map(|p| rfc3339(p.until)),
            onward_reference: e.onward.as_ref().map(|o| hex::encode(&o.reference)),
        }
    }

    fn line(&self) -> String {
        format!(
            "{} {} {} {} {} {}\n",
            self.call_id,
            self.reference,
            self.role.as_str(),
            self.uses,
            self.expiry.as_deref().unwrap_or("-"),
            self.identity
        )
    }
}

/// What `export` prints.
#[derive(Debug, Serialize)]
struct Exported<'a> {
    identity: &'a str,
    call_id: &'a str,
    /// The KEKRecipientInfo's kekid (`-secretkeyid`).
    reference: String,
    /// The AES-256 key-wrap key (`-secretkey`).
    kek: &'a str,
}

/// The stores to look at: the one named, or every identity with sessions.
fn stores(args: &ListArgs) -> Result<Vec<(String, Sessions)>, Error> {
    let store = args.state.store()?;
    match &args.owner {
        Some(owner) => Ok(vec![(owner.clone(), store.load(owner)?)]),
        None => Ok(store.all()?),
    }
}

/// The one session `which` names across the stores.
fn pick<'a>(all: &'a [(String, Sessions)], which: &str) -> Result<(&'a str, &'a Entry), Error> {
    let found: Vec<(&str, &Entry)> = all
        .iter()
        .flat_map(|(id, s)| {
            s.sessions
                .iter()
                .filter(|e| e.call_id == which || e.has_reference(which))
                .map(move |e| (id.as_str(), e))
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::usage(
            format!("no stored session {which}"),
            "`sipseal session list` shows the stored sessions (check --state and --as)",
        )),
        many => Err(Error::usage(
            format!(
                "{which} is stored by {} identities: {}",
                many.len(),
                many.iter()
                    .map(|(id, _)| *id)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "name whose store with --as URI",
        )),
    }
}

/// Run a `session` subcommand.
pub fn run(cmd: SessionCommand) -> Result<Exit, Error> {
    match cmd {
        SessionCommand::List(args) => {
            let all = stores(&args)?;
            let listed: Vec<Listed<'_>> = all
                .iter()
                .flat_map(|(id, s)| s.sessions.iter().map(move |e| Listed::of(id, e)))
                .collect();
            let text = render(args.format, &listed, |l| {
                l.iter().map(Listed::line).collect()
            })?;
            write_output(None, text.as_bytes())?;
        }
        SessionCommand::Show(args) => {
            let all = stores(&args.list)?;
            let (id, e) = pick(&all, &args.which)?;
            let listed = Listed::of(id, e);
            let text = render(args.list.format, &listed, |l| {
                // YAML reads well for people too.
                sipseal::yaml::to_string(l).unwrap_or_else(|_| l.line())
            })?;
            write_output(None, text.as_bytes())?;
        }
        SessionCommand::Forget(args) => {
            let all = stores(&args.list)?;
            let (id, e) = pick(&all, &args.which)?;
            let store = args.list.state.store()?;
            if store.forget(id, &e.call_id)? {
                eprintln!("forgot the session {} of {id}", e.call_id);
            }
        }
        SessionCommand::Export(args) => {
            let all = stores(&args.list)?;
            let (id, e) = pick(&all, &args.which)?;
            // A reference names a previous or onward key too: export that one.
            let (reference, kek) = e.key_named(&args.which).unwrap_or((&e.reference, &e.kek));
            let kek = kek.to_hex();
            let exported = Exported {
                identity: id,
                call_id: &e.call_id,
                reference: hex::encode(reference),
                kek: &kek,
            };
            let text = render(args.list.format, &exported, |x| {
                format!("-secretkey {} -secretkeyid {}\n", x.kek, x.reference)
            })?;
            write_output(None, text.as_bytes())?;
        }
    }
    Ok(Exit::Ok)
}
