//! Addresses of record compared as RFC 3261 §19.1.4 has it: the scheme
//! and host without case, the user part exactly.

/// An address of record as it was given and as it is compared, worked out
/// once (what the registrar's stages and its store key it by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aor {
    /// As the request wrote it.
    pub text: String,
    /// As it is compared and stored: [`aor_key`].
    pub key: String,
}

impl Aor {
    /// `text`, with its key.
    pub fn new(text: &str) -> Aor {
        Aor {
            text: text.to_owned(),
            key: aor_key(text),
        }
    }
}

impl std::fmt::Display for Aor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// An AOR as it is compared: scheme and host in lower case.
pub fn aor_key(aor: &str) -> String {
    match aor.split_once(':').and_then(|(scheme, rest)| {
        rest.rsplit_once('@').map(|(user, host)| {
            format!(
                "{}:{user}@{}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase()
            )
        })
    }) {
        Some(k) => k,
        None => aor.to_ascii_lowercase(),
    }
}

/// Two AORs are the same when their URIs are, with the scheme and host
/// compared case-insensitively (RFC 3261 §19.1.4).
pub fn same_aor(a: &str, b: &str) -> bool {
    let split = |u: &str| -> Option<(String, String, String)> {
        let (scheme, rest) = u.split_once(':')?;
        let (user, host) = rest.rsplit_once('@')?;
        Some((
            scheme.to_ascii_lowercase(),
            user.to_owned(),
            host.to_ascii_lowercase(),
        ))
    };
    match (split(a), split(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_and_host_compare_without_case_the_user_exactly() {
        assert!(same_aor("sip:alice@Example.COM", "SIP:alice@example.com"));
        assert!(!same_aor("sip:Alice@example.com", "sip:alice@example.com"));
        assert!(!same_aor("sip:alice@example.com", "sips:alice@example.com"));
        assert!(
            !same_aor("sip:example.com", "sip:example.com"),
            "no user: not an AOR"
        );
        assert_eq!(aor_key("SIP:alice@Example.com"), "sip:alice@example.com");
        let aor = Aor::new("SIP:alice@Example.com");
        assert_eq!(aor.key, "sip:alice@example.com");
        assert_eq!(aor.to_string(), "SIP:alice@Example.com", "shown as given");
    }
}
