//! The data conversion of the gateway's reverse proxy: a service's URLs
//! and cookies put under the access's path on the gateway.

use std::sync::Arc;

/// Where a destination's links are rewritten to: the access's path on
/// the gateway (`/s/ACCESS`), and the service's own origin as its pages
/// write it.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// `/s/ACCESS`, without a trailing slash.
    pub prefix: Arc<str>,
    /// `http://host:port` (lowercase, no trailing slash), when known.
    pub origin: Option<Arc<str>>,
}

impl Rewrite {
    /// `url` as the browser must ask the gateway for it; `None` when it
    /// stays as it is (a relative path, another site, a fragment).
    pub fn url(&self, url: &str) -> Option<String> {
        let trimmed = url.trim_start();
        if let Some(origin) = &self.origin {
            // http://origin/x, and //authority/x of the same authority.
            let auth = origin.split_once("//").map_or("", |(_, a)| a);
            let rest = strip_prefix_ci(trimmed, origin)
                .or_else(|| strip_prefix_ci(trimmed, &format!("//{auth}")));
            if let Some(rest) = rest
                && (rest.is_empty() || rest.starts_with(['/', '?', '#']))
            {
                let rest = if rest.starts_with('/') {
                    rest.to_owned()
                } else {
                    format!("/{rest}")
                };
                return Some(format!("{}{rest}", self.prefix));
            }
        }
        if trimmed.starts_with('/') && !trimmed.starts_with("//") && !trimmed.starts_with("/\\") {
            if trimmed.starts_with(&*self.prefix)
                && trimmed[self.prefix.len()..].starts_with(['/', '?', '#'])
            {
                return None;
            }
            return Some(format!("{}{trimmed}", self.prefix));
        }
        None
    }

    /// A `Set-Cookie` of the service, confined to the access's path: its
    /// `Path` prefixed, its `Domain` dropped.
    pub fn set_cookie(&self, value: &str) -> String {
        let mut parts = Vec::new();
        let mut path = false;
        for (i, attr) in value.split(';').enumerate() {
            let a = attr.trim();
            let name = a
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if i > 0 && name == "domain" {
                continue;
            }
            if i > 0 && name == "path" {
                let p = a.split_once('=').map_or("/", |(_, v)| v.trim());
                let p = if p.starts_with('/') { p } else { "/" };
                parts.push(format!("Path={}{p}", self.prefix));
                path = true;
                continue;
            }
            parts.push(a.to_owned());
        }
        if !path {
            parts.push(format!("Path={}/", self.prefix));
        }
        parts.join("; ")
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

    fn rw() -> Rewrite {
        Rewrite {
            prefix: "/s/abc".into(),
            origin: Some("http://127.0.0.1:8080".into()),
        }
    }

    #[test]
    fn absolute_and_root_relative_links_go_under_the_access() {
        let r = rw();
        assert_eq!(r.url("/a/b?c").as_deref(), Some("/s/abc/a/b?c"));
        assert_eq!(
            r.url("http://127.0.0.1:8080/x").as_deref(),
            Some("/s/abc/x")
        );
        assert_eq!(r.url("HTTP://127.0.0.1:8080").as_deref(), Some("/s/abc/"));
        assert_eq!(r.url("//127.0.0.1:8080/y").as_deref(), Some("/s/abc/y"));
        assert_eq!(r.url("http://127.0.0.1:80800/x"), None);
        assert_eq!(r.url("https://elsewhere.example/x"), None);
        assert_eq!(r.url("//elsewhere.example/x"), None);
        assert_eq!(r.url("rel/path"), None);
        assert_eq!(r.url("#frag"), None);
        assert_eq!(r.url("/s/abc/already"), None);
    }

    #[test]
    fn cookies_stay_under_the_access_path() {
        let r = rw();
        assert_eq!(
            r.set_cookie("sid=1; Path=/app; Domain=example.com; HttpOnly"),
            "sid=1; Path=/s/abc/app; HttpOnly"
        );
        assert_eq!(r.set_cookie("sid=1"), "sid=1; Path=/s/abc/");
    }
}
