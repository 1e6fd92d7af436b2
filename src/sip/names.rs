//! Header names: compact forms (RFC 3261 §7.3.3 and later RFCs) and
//! case-insensitive comparison.

/// Compact form → full name, as registered with IANA.
const COMPACT: &[(&str, &str)] = &[
    ("a", "Accept-Contact"),
    ("b", "Referred-By"),
    ("c", "Content-Type"),
    ("d", "Request-Disposition"),
    ("e", "Content-Encoding"),
    ("f", "From"),
    ("i", "Call-ID"),
    ("j", "Reject-Contact"),
    ("k", "Supported"),
    ("l", "Content-Length"),
    ("m", "Contact"),
    ("n", "Identity-Info"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("s", "Subject"),
    ("t", "To"),
    ("u", "Allow-Events"),
    ("v", "Via"),
    ("x", "Session-Expires"),
    ("y", "Identity"),
];

/// Headers whose registered spelling is not plain Title-Case.
const SPELLING: &[&str] = &[
    "Call-ID",
    "CSeq",
    "WWW-Authenticate",
    "MIME-Version",
    "Content-ID",
    "RAck",
    "RSeq",
    "SIP-ETag",
    "SIP-If-Match",
];

/// Whether `s` is an RFC 3261 §25.1 `token` (header names, methods).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| TOKEN[usize::from(b)])
}

/// Which bytes a `token` is made of: letters, digits and `-.!%*_+`'~`.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    t
};

/// The full name for a compact form; other names are returned as given.
pub fn full_name(name: &str) -> &str {
    // Every compact form is one letter: longer names need no lookup (this
    // sits on the path of every header comparison).
    if name.len() != 1 {
        return name;
    }
    COMPACT
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(name))
        .map_or(name, |(_, full)| full)
}

/// Whether two header names denote the same header.
pub fn same(a: &str, b: &str) -> bool {
    // Only a one-letter name can be a compact form: two longer names are
    // the same only when they are equal (every header lookup asks this).
    if a.len() > 1 && b.len() > 1 {
        return a.eq_ignore_ascii_case(b);
    }
    full_name(a).eq_ignore_ascii_case(full_name(b))
}

/// The registered spelling of a header name (`call-id` → `Call-ID`,
/// `v` → `Via`, `x-foo` → `X-Foo`).
pub fn canonical(name: &str) -> String {
    let full = full_name(name);
    if let Some(s) = SPELLING.iter().find(|s| s.eq_ignore_ascii_case(full)) {
        return (*s).to_owned();
    }
    full.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case() {
        assert!(same("v", "VIA"));
        assert!(same("i", "call-id"));
        assert!(!same("t", "From"));
        assert_eq!(canonical("i"), "Call-ID");
        assert_eq!(canonical("proxy-inspect-body"), "Proxy-Inspect-Body");
        assert_eq!(canonical("cseq"), "CSeq");
    }
}
