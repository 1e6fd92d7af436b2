//! CMS objects as the real `openssl cms` sees them.

use std::path::Path;
use std::process::Command;

use super::Succeeds;

/// The subject key identifiers of a CMS object's recipients, as
/// `openssl cms -cmsout -print` shows them (sorted, lower-case hex).
pub fn recipient_skis(der: &Path) -> Vec<String> {
    let out = Command::new("openssl")
        .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
        .arg(der)
        .succeeds();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut skis = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.trim_end().ends_with("subjectKeyIdentifier:") {
            continue;
        }
        // Hex dump lines: "      0000 - 96 05 df ...-... 46   ascii".
        let mut hex = String::new();
        while let Some(next) = lines.peek() {
            let Some((_, rest)) = next.split_once(" - ") else {
                break;
            };
            if !next
                .trim_start()
                .starts_with(|c: char| c.is_ascii_hexdigit())
            {
                break;
            }
            let bytes: String = rest.chars().take(48).collect();
            hex.extend(
                bytes
                    .split([' ', '-'])
                    .filter(|t| t.len() == 2)
                    .flat_map(str::chars),
            );
            lines.next();
        }
        skis.push(hex.to_ascii_lowercase());
    }
    skis.sort();
    skis
}

/// A certificate's subject key identifier (lower-case hex), by openssl.
pub fn ski(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectKeyIdentifier", "-in"])
        .arg(cert)
        .succeeds();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .last()
        .unwrap()
        .trim()
        .replace(':', "")
        .to_ascii_lowercase()
}
