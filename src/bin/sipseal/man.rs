//! Man pages rendered from the clap definitions: `sipseal man --out DIR`
//! (a hidden command) writes them; `man/` is checked against its output by
//! a test (`UPDATE_GOLDEN=1 cargo test --test man` rewrites it).

use std::path::Path;

use clap::CommandFactory;
use clap_mangen::Man;

use crate::cli::Cli;
use crate::error::{EXIT_CODES, Error, Exit};
use crate::io::write_file;

fn exit_status_section() -> String {
    let mut s = String::from(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in EXIT_CODES {
        s.push_str(&format!(".TP\n{code}\n{meaning}\n"));
    }
    s
}

fn render_one(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
    let man = Man::new(cmd.clone());
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut buf)?;
    }
    if cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some() {
        man.render_extra_section(&mut buf)?;
    }
    buf.extend_from_slice(exit_status_section().as_bytes());
    if cmd.get_version().is_some() {
        man.render_version_section(&mut buf)?;
    }
    pages.push((man.get_filename(), buf));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        render_one(sub, pages)?;
    }
    Ok(())
}

/// Every man page as (file name, roff bytes): `sipseal.1` and one page per
/// subcommand (`sipseal-build.1`, `sipseal-build-invite.1`, ...).
fn pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    render_one(&cmd, &mut pages)?;
    Ok(pages)
}

/// Write every page into `dir` (created if missing); pages of commands
/// that no longer exist are removed.
pub fn write(dir: &Path) -> Result<Exit, Error> {
    let pages = pages().map_err(|source| Error::Write {
        name: dir.display().to_string(),
        source,
    })?;
    let write_err = |source| Error::Write {
        name: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(write_err)?;
    for entry in std::fs::read_dir(dir).map_err(write_err)? {
        let path = entry.map_err(write_err)?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let stale = name.is_some_and(|n| {
            n.starts_with("sipseal") && n.ends_with(".1") && !pages.iter().any(|(p, _)| *p == n)
        });
        if stale {
            std::fs::remove_file(&path).map_err(write_err)?;
        }
    }
    for (name, bytes) in &pages {
        write_file(&dir.join(name), bytes, false)?;
    }
    Ok(Exit::Ok)
}
