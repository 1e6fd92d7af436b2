//! The parts of a SIP URI that route a request (RFC 3261 §19.1.1, RFC
//! 3263 §4): scheme, host, port and the `transport` parameter. Only what
//! routing needs; user parts and other parameters stay in the header.

/// Where a SIP or SIPS URI points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopUri {
    /// `sips:` (TLS all the way).
    pub secure: bool,
    /// The host as written: a name, an IPv4 address, or `[IPv6]`.
    pub host: String,
    /// The port, when the URI gives one.
    pub port: Option<u16>,
    /// The `transport` parameter, lower-case.
    pub transport: Option<String>,
}

impl HopUri {
    /// Read a URI or a name-addr (`<sip:host:port;lr>`); `None` when it
    /// is not a SIP URI with a host.
    pub fn parse(value: &str) -> Option<HopUri> {
        let v = value.trim();
        let v = match (v.find('<'), v.find('>')) {
            (Some(a), Some(b)) if a < b => &v[a + 1..b],
            _ => v,
        };
        let v = v.trim();
        let (secure, rest) = if let Some(r) = strip_prefix_ci(v, "sips:") {
            (true, r)
        } else {
            (false, strip_prefix_ci(v, "sip:")?)
        };
        let rest = rest.split('?').next().unwrap_or(rest);
        let mut parts = rest.split(';');
        let userhost = parts.next()?;
        let hostport = userhost.rsplit('@').next()?;
        let (host, port) = if let Some(after) = hostport.strip_prefix('[') {
            let (h, tail) = after.split_once(']')?;
            let port = match tail.strip_prefix(':') {
                Some(p) => Some(p.parse().ok()?),
                None if tail.is_empty() => None,
                None => return None,
            };
            (format!("[{h}]"), port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p.parse().ok()?)),
                None => (hostport.to_owned(), None),
            }
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':');
        if host.is_empty() || !host.chars().all(valid) {
            return None;
        }
        let transport = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("transport"))
            .map(|(_, v)| v.trim().to_ascii_lowercase());
        Some(HopUri {
            secure,
            host,
            port,
            transport,
        })
    }

    /// The host without IPv6 brackets, as an address when it is one.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_give_their_routing_parts() {
        let u = HopUri::parse("<sip:proxy-b.b.example.com:5081;transport=TLS;lr>").unwrap();
        assert_eq!(
            u,
            HopUri {
                secure: false,
                host: "proxy-b.b.example.com".into(),
                port: Some(5081),
                transport: Some("tls".into()),
            }
        );
        let u = HopUri::parse("SIPS:bob@[2001:db8::1]:5061?subject=x").unwrap();
        assert!(u.secure);
        assert_eq!((u.host.as_str(), u.port), ("[2001:db8::1]", Some(5061)));
        assert_eq!(u.ip(), "2001:db8::1".parse().ok());
        let u = HopUri::parse("sip:bob@127.0.0.1").unwrap();
        assert_eq!((u.port, u.ip()), (None, "127.0.0.1".parse().ok()));
        for bad in [
            "tel:+1",
            "sip:",
            "sip:h:port",
            "sip:[::1",
            "sip:a b",
            "sip:h:99999",
        ] {
            assert_eq!(HopUri::parse(bad), None, "{bad}");
        }
    }
}
