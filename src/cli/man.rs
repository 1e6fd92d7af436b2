//! Man pages rendered from the clap definitions (`man/` is checked against
//! this by a test; `UPDATE_GOLDEN=1 cargo test --test man` rewrites it).

use clap::CommandFactory;
use clap_mangen::Man;

use super::{Cli, EXIT_CODES};

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
    if cmd.has_subcommands() {
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
pub fn pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    render_one(&cmd, &mut pages)?;
    Ok(pages)
}
