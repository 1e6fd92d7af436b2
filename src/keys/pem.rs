//! PEM text as other tools write it: bundles with text between the
//! blocks, base64 at any line width.

use base64::Engine as _;

/// Whether `bytes` holds a PEM block anywhere (a bundle may start with
/// text, as `openssl pkcs7 -print_certs` writes `subject=` lines).
pub(crate) fn contains_pem(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"-----BEGIN ").is_some()
}

/// The DER of every `label` block of a PEM bundle, in order; text between
/// the blocks and blocks of other kinds are passed over. The base64 is read
/// whatever its line length (RFC 7468 asks for 64; OpenSSL and older tools
/// write other widths).
pub(crate) fn pem_blocks(bytes: &[u8], label: &str) -> Result<Vec<Vec<u8>>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let what = label.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = memchr::memmem::find(&bytes[at..], begin.as_bytes()).map(|i| at + i) {
        let body = start + begin.len();
        let Some(stop) = memchr::memmem::find(&bytes[body..], end.as_bytes()).map(|i| body + i)
        else {
            return Err(format!("{what} {} has no {end} line", out.len() + 1));
        };
        let text: Vec<u8> = bytes[body..stop]
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|e| format!("{what} {} is not base64 ({e})", out.len() + 1))?;
        out.push(der);
        at = stop + end.len();
    }
    if out.is_empty() {
        return Err(format!("no {begin} block in the file"));
    }
    Ok(out)
}
