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

/// Header names messages are searched by most, numbered from 1 by their
/// place here (0: any other name). A [`super::message::Header`] keeps
/// the number of its own name, so a search compares a byte per header
/// instead of a name (a designated relay searches a message a dozen
/// times). The first [`BODY`] are the body headers
/// ([`super::body::BODY_HEADERS`]).
pub const KNOWN: [&str; 36] = [
    "Content-Type",
    "Content-ID",
    "Content-Disposition",
    "Content-Transfer-Encoding",
    "Content-Encoding",
    "Content-Language",
    "Content-Description",
    "Content-Length",
    "MIME-Version",
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Route",
    "Record-Route",
    "Max-Forwards",
    "Path",
    "Proxy-Inspect-Body",
    "Route-Security",
    "Subject",
    "Supported",
    "Require",
    "Expires",
    "Authorization",
    "Proxy-Authorization",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Event",
    "Allow",
    "Date",
    "Warning",
    "Session-Expires",
    "User-Agent",
    "Identity",
];

/// How many of [`KNOWN`] come first as the body headers.
pub const BODY: usize = 7;

/// The number of `name` in [`KNOWN`], spelled as there; for constants
/// (it fails to compile for a name not in the list).
pub const fn known_const(name: &str) -> u8 {
    let mut i = 0;
    while i < KNOWN.len() {
        let (a, b) = (KNOWN[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return (i + 1) as u8;
            }
        }
        i += 1;
    }
    panic!("not a known header name")
}

/// [`KNOWN`]'s numbers by name length: up to eight names a length.
static BY_LEN: [[u8; 8]; 32] = {
    let mut t = [[0u8; 8]; 32];
    let mut i = 0;
    while i < KNOWN.len() {
        let row = &mut t[KNOWN[i].len()];
        let mut j = 0;
        while row[j] != 0 {
            j += 1;
        }
        row[j] = (i + 1) as u8;
        i += 1;
    }
    t
};

/// The number in [`KNOWN`] of the header `name` (any case, a compact
/// form as its full name), 0 for another: two names with the same
/// non-zero number are the same header, and a name numbered 0 is none
/// of the known ones. Inlined: on a literal name (most searches) it
/// folds to a constant.
#[inline(always)]
pub fn known(name: &str) -> u8 {
    let full = full_name(name);
    let b = full.as_bytes();
    let (Some(row), Some(&first), Some(&last)) = (BY_LEN.get(b.len()), b.first(), b.last()) else {
        return 0;
    };
    // The first and last letters, in either case, rule out all but one
    // candidate of a length before any whole comparison.
    let (first, last) = (first | 0x20, last | 0x20);
    for &k in row {
        if k == 0 {
            break;
        }
        let n = KNOWN[usize::from(k) - 1].as_bytes();
        // Mostly written as registered: one memcmp. Else a byte at a time
        // (`<[u8]>::eq_ignore_ascii_case` works in chunks, several times
        // slower on names this short).
        if n[0] | 0x20 == first
            && n[n.len() - 1] | 0x20 == last
            && (n == b || n.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y)))
        {
            return k;
        }
    }
    0
}

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
#[inline]
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

    /// The numbers agree with [`same`]: over every known name, its compact
    /// form and spellings in other cases, and names that are not known.
    #[test]
    fn known_numbers_name_the_same_headers_as_same_does() {
        let mut names: Vec<String> = KNOWN.iter().map(|n| (*n).to_owned()).collect();
        names.extend(KNOWN.iter().map(|n| n.to_ascii_lowercase()));
        names.extend(KNOWN.iter().map(|n| n.to_ascii_uppercase()));
        names.extend(COMPACT.iter().map(|(c, _)| (*c).to_owned()));
        names.extend(COMPACT.iter().map(|(c, _)| c.to_ascii_uppercase()));
        for other in [
            "X-Via",
            "Vias",
            "Content-",
            "Content-Typo",
            "q",
            "",
            "Reason",
        ] {
            names.push(other.to_owned());
        }
        for a in &names {
            for b in &names {
                let (ka, kb) = (known(a), known(b));
                if ka != 0 || kb != 0 {
                    assert_eq!(ka == kb, same(a, b), "{a} / {b}");
                }
            }
        }
        assert_eq!(known("l"), known_const("Content-Length"));
        assert_eq!(known("content-TYPE"), 1);
        assert_eq!(known("X-Via"), 0);
        assert_eq!(known(&"a".repeat(40)), 0);
    }

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
