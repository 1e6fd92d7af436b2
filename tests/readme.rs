//! Item 21, issue 26: the documentation runs as written. The guide's
//! tutorial (every `sh` block of its chapters 1 to 4 and 6, in order) and
//! the README's five-minute tour each run in one shell, in a scratch
//! directory that holds `keys/`, `samples/` and `man/`; a line ending in
//! `# exit N` must exit N, every other line must succeed. And the README's
//! command list is `sipseal --help`'s. (Chapter 5's live walkthrough is
//! typed into a pseudo-terminal by tests/live_walkthrough.rs.)

mod common;

use std::path::Path;

/// The guide's chapters whose `sh` blocks are the tutorial, in the order
/// they run (one shell, one directory: later chapters use earlier files).
const TUTORIAL: &[&str] = &[
    "01-tutorial.md",
    "02-relays.md",
    "03-signatures.md",
    "04-registrar.md",
    "06-keys.md",
];

/// The chapter whose commands tests/live_walkthrough.rs types instead.
const LIVE: &str = "05-live.md";

fn guide(chapter: &str) -> String {
    let path = common::repo().join("docs/guide").join(chapter);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn readme() -> String {
    std::fs::read_to_string(common::repo().join("README.md")).unwrap()
}

/// The `sh` blocks of `text`, in order, as shell lines (continuations
/// joined).
fn sh_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        lines.push(std::mem::take(&mut pending));
    }
    lines
}

/// The README's section under `heading` (to the next `## `).
fn readme_section(heading: &str) -> String {
    let readme = readme();
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("the README has no section {heading:?}"));
    let body = &readme[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |e| e + 3);
    body[..end].to_owned()
}

/// One line as the script runs it: an expected exit code checked.
fn step(line: &str) -> String {
    let quoted = line.replace('\'', r"'\''");
    let expected = line.rsplit_once("# exit ").and_then(|(cmd, rest)| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u8>().ok().map(|c| (cmd, c))
    });
    match expected {
        Some((cmd, code)) => {
            format!(
                "set +e; {cmd}\nrc=$?; set -e\n[ \"$rc\" = {code} ] || {{ echo 'expected exit {code}, got '\"$rc\"': {quoted}' >&2; exit 99; }}\n"
            )
        }
        _ => format!("echo '+ {quoted}' >&2\n{line}\n"),
    }
}

fn have(tool: &str) {
    assert!(
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap()
            .status
            .success(),
        "{tool} not found: install it (.ci/run does)"
    );
}

/// Run `lines` in one bash, in a scratch directory with `keys/`,
/// `samples/` and `man/`, the built `sipseal` first on the PATH; its
/// standard output, or a panic naming `what` with the end of its log.
fn run_as_written(what: &str, lines: &[String]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for d in ["keys", "samples", "man"] {
        std::os::unix::fs::symlink(common::repo().join(d), dir.join(d)).unwrap();
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_sipseal")).parent().unwrap();
    let mut script = String::from("set -euo pipefail\n");
    for l in lines {
        script.push_str(&step(l));
    }
    let sbin = "/usr/sbin:/sbin";
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env(
            "PATH",
            format!(
                "{}:{}:{sbin}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("SIPSEAL_STATE", dir.join("state"))
        .env_remove("SIPSEAL_SEED")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what} stopped (exit {:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(25)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_tutorial_runs_as_written() {
    for tool in ["jq", "openssl"] {
        have(tool);
    }
    let lines: Vec<String> = TUTORIAL.iter().flat_map(|c| sh_lines(&guide(c))).collect();
    assert!(
        lines.len() > 40,
        "{} lines: the blocks were not found",
        lines.len()
    );
    let stdout = run_as_written("the tutorial", &lines);
    // What the tutorial says it shows, it shows.
    assert!(
        stdout.contains("see you at eight"),
        "openssl opened the session message"
    );
    assert!(stdout.contains("pki/alice/cert.pem: OK"), "{stdout}");
}

/// A chapter with commands is run: by the tutorial, or (the live one) by
/// tests/live_walkthrough.rs.
#[test]
fn every_guide_chapter_with_commands_is_run() {
    let dir = common::repo().join("docs/guide");
    let mut with_commands = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && guide(&name).contains("```sh\n") {
            with_commands.push(name);
        }
    }
    for name in &with_commands {
        assert!(
            TUTORIAL.contains(&name.as_str()) || name == LIVE,
            "docs/guide/{name} has sh blocks that no test runs: add it to TUTORIAL in tests/readme.rs"
        );
    }
    assert!(with_commands.iter().any(|n| n == LIVE), "{with_commands:?}");
}

#[test]
fn the_readme_tour_runs_as_written() {
    let lines = sh_lines(&readme_section("A five-minute tour"));
    assert!(lines.len() >= 5, "{lines:?}");
    let stdout = run_as_written("the README's tour", &lines);
    // bob reads the SDP; proxy-a's report has the SRTP keys.
    assert!(stdout.contains("m=audio 49170"), "{stdout}");
    assert!(stdout.contains("AES_CM_128_HMAC_SHA1_80"), "{stdout}");
}

/// Issue 26: the README's claims match the binary. Its command list is
/// every subcommand `sipseal --help` lists (but `help`), nothing more.
#[test]
fn the_readme_lists_every_command() {
    let help = common::sipseal().arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let mut from_help: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .expect("--help lists the commands")
        .lines()
        .take_while(|l| !l.trim().is_empty())
        // A command's line is indented by two spaces; its wrapped
        // description, by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    let section = readme_section("Commands");
    let mut from_readme: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert!(from_help.len() > 15, "{from_help:?}");
    from_help.sort_unstable();
    from_readme.sort_unstable();
    assert_eq!(
        from_readme, from_help,
        "the README's command list and `sipseal --help` differ"
    );
}

/// Every relative link of the README and the guide names a file that is
/// there (an anchor after `#` is not checked).
#[test]
fn the_documentation_links_resolve() {
    let repo = common::repo();
    let mut docs = vec![repo.join("README.md")];
    for entry in std::fs::read_dir(repo.join("docs/guide")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let mut broken = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for link in text.split("](").skip(1) {
            let Some(target) = link.split(')').next() else {
                continue;
            };
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() || file.contains("://") {
                continue;
            }
            let path = doc.parent().unwrap().join(file);
            // docs/SPEC.md comes with its own change of issue 26 (item 2);
            // until it is in the tree its links are not counted.
            if file.ends_with("SPEC.md") && !common::repo().join("docs/SPEC.md").exists() {
                continue;
            }
            if !path.exists() {
                broken.push(format!("{}: {target}", doc.display()));
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing: {broken:#?}");
}
