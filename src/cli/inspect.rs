//! `sipseal inspect`: the message's structure, no key needed.

use std::path::PathBuf;

use clap::Args;

use super::error::{Error, Exit};
use super::io::{read_message, write_output};
use super::{Format, render};
use crate::inspect::{Report, inspect};

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The SIP message (a path, or - for standard input).
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub input: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Run `inspect`.
pub fn run(args: InspectArgs) -> Result<Exit, Error> {
    let msg = read_message(&args.input)?;
    let report = inspect(&msg);
    let text = render(args.format, &report, Report::to_text)?;
    write_output(args.output.as_ref(), text.as_bytes())?;
    Ok(Exit::Ok)
}
