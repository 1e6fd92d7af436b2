//! Item 21: the README's tutorial runs as written. Every `sh` block between
//! "## Tutorial" and "## Exit codes" runs, in order, in one shell, in a
//! scratch directory that holds `keys/`, `samples/` and `man/`; a line
//! ending in `# exit N` must exit N, every other line must succeed.

mod common;

use std::path::Path;

/// The tutorial's `sh` blocks, in order, as shell lines (continuations
/// joined).
fn tutorial() -> Vec<String> {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let start = readme.find("\n## Tutorial").expect("a Tutorial section");
    let end = readme[start..]
        .find("\n## Exit codes")
        .map_or(readme.len(), |e| start + e);
    let mut lines = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme[start..end].lines() {
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

#[test]
fn the_tutorial_runs_as_written() {
    for tool in ["jq", "openssl"] {
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
    let lines = tutorial();
    assert!(
        lines.len() > 40,
        "{} lines: the blocks were not found",
        lines.len()
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for d in ["keys", "samples", "man"] {
        std::os::unix::fs::symlink(common::repo().join(d), dir.join(d)).unwrap();
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_sipseal")).parent().unwrap();
    let mut script = String::from("set -euo pipefail\n");
    for l in &lines {
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
        "the tutorial stopped (exit {:?}):\n{}",
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
    // What the tutorial says it shows, it shows.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("see you at eight"),
        "openssl opened the session message"
    );
    assert!(stdout.contains("pki/alice/cert.pem: OK"), "{stdout}");
}
