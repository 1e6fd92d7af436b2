//! Reading inputs (a path or `-`) and writing outputs (stdout or `-o FILE`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::ValueEnum;

use sipseal::fsio::write_atomic;
use sipseal::sealing::{DetectError, SealedInput, detect};
use sipseal::sip::Message;

use crate::error::Error;

/// Report formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// For programs.
    Json,
    /// For people and programs.
    Yaml,
}

/// `-o FILE`: where a command's message goes.
#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Write here (atomically) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl OutputArgs {
    /// Write `bytes` to `-o FILE` or standard output.
    pub fn write(&self, bytes: &[u8]) -> Result<(), Error> {
        write_output(self.output.as_ref(), bytes)
    }

    /// Write plaintext to `-o FILE` (a new file is 0600) or standard output.
    pub fn write_private(&self, bytes: &[u8]) -> Result<(), Error> {
        match &self.output {
            Some(path) if path != Path::new("-") => write_file(path, bytes, true),
            _ => write_output(None, bytes),
        }
    }
}

/// `--max-message-size`, set once by `main`.
static MAX_MESSAGE_SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// The default `--max-message-size`: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1024 * 1024;

/// Set `--max-message-size` (once, from `main`).
pub fn set_max_message_size(limit: u64) {
    let _ = MAX_MESSAGE_SIZE.set(limit);
}

/// `--max-message-size` (or its default).
#[cfg_attr(not(feature = "live"), allow(dead_code))]
pub fn max_message_size() -> u64 {
    *MAX_MESSAGE_SIZE.get().unwrap_or(&DEFAULT_MAX_MESSAGE_SIZE)
}

/// An input named on the command line: a path, or `-` for standard input.
/// At most `--max-message-size` bytes are read: a larger input is
/// refused before anything is parsed, and never held whole in memory.
pub fn read_input(input: &Path) -> Result<Vec<u8>, Error> {
    let name = display_name(input);
    let limit = *MAX_MESSAGE_SIZE.get().unwrap_or(&DEFAULT_MAX_MESSAGE_SIZE);
    let read = |r: &mut dyn Read| -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        r.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
        Ok(buf)
    };
    let buf = if input == Path::new("-") {
        read(&mut std::io::stdin().lock())
    } else {
        std::fs::File::open(input).and_then(|mut f| read(&mut f))
    }
    .map_err(|source| Error::Read {
        name: name.clone(),
        source,
    })?;
    if buf.len() as u64 > limit {
        return Err(Error::TooLarge { name, limit });
    }
    Ok(buf)
}

/// How an input is named in messages.
pub fn display_name(input: &Path) -> String {
    if input == Path::new("-") {
        "standard input".into()
    } else {
        input.display().to_string()
    }
}

/// Read and parse a SIP message: a file or standard input is framed like
/// a datagram, so octets after Content-Length are discarded, with a warning.
pub fn read_message(input: &Path) -> Result<Message, Error> {
    let bytes = read_input(input)?;
    let name = display_name(input);
    let msg = Message::parse(&bytes).map_err(|err| Error::Parse {
        name: name.clone(),
        err,
    })?;
    warn_discarded(&name, &msg);
    Ok(msg)
}

/// Say that octets after the body were discarded (RFC 3261 §18.3).
pub fn warn_discarded(name: &str, msg: &Message) {
    if msg.discarded() > 0 {
        eprintln!(
            "warning: {name}: {} bytes after the body (Content-Length: {}) ignored, as RFC 3261 §18.3 says for a datagram",
            msg.discarded(),
            msg.body().len()
        );
    }
}

/// Read a SIP message that must be well formed (RFC 3261 / RFC 4475)
/// before it is sealed or signed: a malformed one fails, exit 1.
pub fn read_well_formed(input: &Path) -> Result<(String, Message), Error> {
    let (name, msg) = read_named_message(input)?;
    match sipseal::sip::conformance::check(&msg)
        .errors
        .into_iter()
        .next()
    {
        Some(err) => Err(Error::Malformed { name, err }),
        None => Ok((name, msg)),
    }
}

/// Read and parse a SIP message; with the name errors give it.
pub fn read_named_message(input: &Path) -> Result<(String, Message), Error> {
    Ok((display_name(input), read_message(input)?))
}

/// Read a SIP message, MIME entity or CMS object (DER or PEM).
pub fn read_sealed_input(input: &Path) -> Result<SealedInput, Error> {
    let name = display_name(input);
    let bytes = read_input(input)?;
    let sealed = detect(&bytes).map_err(|e| match e {
        DetectError::Sip(err) => Error::Parse {
            name: name.clone(),
            err,
        },
        DetectError::Other(err) => Error::Seal {
            name: name.clone(),
            err,
        },
    })?;
    if let SealedInput::Sip(msg) = &sealed {
        warn_discarded(&name, msg);
    }
    Ok(sealed)
}

/// Write the result to `-o FILE` (atomically) or to standard output.
pub fn write_output(output: Option<&PathBuf>, bytes: &[u8]) -> Result<(), Error> {
    match output {
        Some(path) if path != Path::new("-") => {
            write_atomic(path, bytes, false).map_err(|source| Error::Write {
                name: path.display().to_string(),
                source,
            })
        }
        _ => {
            let mut out = std::io::stdout().lock();
            match out.write_all(bytes).and_then(|()| out.flush()) {
                // A closed pipe (`| head`) is the reader's choice, not our failure.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.map_err(|source| Error::Write {
                    name: "standard output".into(),
                    source,
                }),
            }
        }
    }
}

/// Write a file other than the main output (a report, pinholes)
/// atomically; `private` makes it mode 0600.
pub fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), Error> {
    write_atomic(path, bytes, private).map_err(|source| Error::Write {
        name: path.display().to_string(),
        source,
    })
}

/// Render a serializable report in the chosen format.
pub fn render<T: serde::Serialize>(
    format: Format,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> Result<String, Error> {
    let internal = |e: String| {
        Error::usage(
            format!("cannot render the report: {e}"),
            "this is a bug; please report it",
        )
    };
    match format {
        Format::Text => Ok(text(value)),
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| internal(e.to_string())),
        Format::Yaml => sipseal::yaml::to_string(value).map_err(|e| internal(e.to_string())),
    }
}
