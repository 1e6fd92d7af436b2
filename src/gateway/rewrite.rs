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

impl Rewrite {
    /// CSS (a `style` attribute, a `<style>` element, a `text/css`
    /// response) with the URLs of its `url(...)` and `@import "..."`
    /// rewritten as [`Rewrite::url`] does; `None` when nothing changes.
    /// One pass, no backtracking: linear in the text.
    pub fn css(&self, css: &str) -> Option<String> {
        let lower = css.to_ascii_lowercase();
        let mut out = String::with_capacity(css.len());
        let mut copied = 0;
        let mut at = 0;
        let mut changed = false;
        // The next of each, searched again only once passed (each search
        // starts where the last ended: linear overall).
        let search = |what: &str, from: usize| lower[from..].find(what).map(|n| from + n);
        let mut next_url = search("url(", 0);
        let mut next_import = search("@import", 0);
        while at < css.len() {
            if next_url.is_some_and(|n| n < at) {
                next_url = search("url(", at);
            }
            if next_import.is_some_and(|n| n < at) {
                next_import = search("@import", at);
            }
            let Some(found) = [next_url, next_import].into_iter().flatten().min() else {
                break;
            };
            let is_url = lower[found..].starts_with("url(");
            // `url(` as its own token, not the tail of another name.
            let own = !is_url
                || !lower[..found]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            let start = found + if is_url { 4 } else { 7 };
            at = start;
            if !own {
                continue;
            }
            let Some((from, to)) = css_value(css, start, is_url) else {
                continue;
            };
            at = to;
            if let Some(new) = self.url(&css[from..to]) {
                out.push_str(&css[copied..from]);
                out.push_str(&new);
                copied = to;
                changed = true;
            }
        }
        changed.then(|| {
            out.push_str(&css[copied..]);
            out
        })
    }

    /// A `srcset` (candidates `URL [descriptor]`, comma-separated) with
    /// each URL rewritten; `None` when nothing changes.
    pub fn srcset(&self, srcset: &str) -> Option<String> {
        let mut out = String::with_capacity(srcset.len());
        let mut changed = false;
        let mut rest = srcset;
        while !rest.is_empty() {
            // Separators first (HTML: whitespace and commas).
            let lead = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',')
                    .len();
            out.push_str(&rest[..lead]);
            rest = &rest[lead..];
            let end = rest
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            // A URL's trailing commas end its candidate.
            let url = rest[..end].trim_end_matches(',');
            match self.url(url) {
                Some(new) => {
                    out.push_str(&new);
                    changed = true;
                }
                None => out.push_str(url),
            }
            rest = &rest[url.len()..];
            // The descriptor, up to the next comma.
            let end = rest.find(',').unwrap_or(rest.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        }
        changed.then_some(out)
    }

    /// A refresh (`<meta http-equiv=refresh content=...>`, the `Refresh`
    /// header): `5; url=/next` with its URL rewritten; `None` when
    /// nothing changes.
    pub fn refresh(&self, content: &str) -> Option<String> {
        let sep = content.find([';', ','])?;
        let after = &content[sep + 1..];
        let mut from = sep + 1 + (after.len() - after.trim_start().len());
        let tail = &content[from..];
        if let Some(rest) = tail
            .get(..3)
            .filter(|h| h.eq_ignore_ascii_case("url"))
            .and_then(|_| tail.get(3..))
        {
            let eq = rest.trim_start();
            if let Some(value) = eq.strip_prefix('=') {
                from = content.len() - value.trim_start().len();
            }
        }
        let mut to = content.len();
        if let Some(q) = content[from..]
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\''))
        {
            from += 1;
            to = content[from..].find(q).map_or(content.len(), |n| from + n);
        }
        let url = content[from..to].trim_end();
        let new = self.url(url)?;
        Some(format!(
            "{}{new}{}",
            &content[..from],
            &content[from + url.len()..]
        ))
    }
}

/// Where the URL of a CSS `url(` (`is_url`) or `@import` starting at
/// `start` lies: quoted (either quote) or, after `url(`, bare up to `)`
/// or whitespace.
fn css_value(css: &str, start: usize, is_url: bool) -> Option<(usize, usize)> {
    let rest = &css[start..];
    let from = start + (rest.len() - rest.trim_start().len());
    let quote = css[from..].chars().next()?;
    if matches!(quote, '"' | '\'') {
        let body = from + 1;
        // A backslash escapes the next character (it stays as it is).
        let mut escaped = false;
        for (i, c) in css[body..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                c if c == quote => return Some((body, body + i)),
                '\n' => return None,
                _ => {}
            }
        }
        return None;
    }
    if !is_url {
        return None;
    }
    let end = css[from..]
        .find(|c: char| c == ')' || c.is_ascii_whitespace())
        .map(|n| from + n)?;
    (end > from).then_some((from, end))
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

    #[test]
    fn css_urls_and_imports_go_under_the_access() {
        let r = rw();
        assert_eq!(
            r.css(
                "a{background:url(/i.png)} b{background: URL( \"http://127.0.0.1:8080/j.png\" )}"
            )
            .as_deref(),
            Some("a{background:url(/s/abc/i.png)} b{background: URL( \"/s/abc/j.png\" )}")
        );
        assert_eq!(
            r.css("@import '/base.css'; @import url('//127.0.0.1:8080/x.css');")
                .as_deref(),
            Some("@import '/s/abc/base.css'; @import url('/s/abc/x.css');")
        );
        assert_eq!(r.css("a{background:url(rel.png)}"), None);
        assert_eq!(r.css("a{background:url(https://cdn.example/x.png)}"), None);
        assert_eq!(r.css("a{b:myurl(/x)}"), None);
        assert_eq!(r.css("a{b:url(\"/unterminated"), None);
        assert_eq!(r.css("url("), None);
    }

    #[test]
    fn srcset_candidates_go_under_the_access() {
        let r = rw();
        assert_eq!(
            r.srcset("/a.png 1x, http://127.0.0.1:8080/b.png 2x,rel.png 3x")
                .as_deref(),
            Some("/s/abc/a.png 1x, /s/abc/b.png 2x,rel.png 3x")
        );
        assert_eq!(
            r.srcset("/a.png 100w,/b.png 200w").as_deref(),
            Some("/s/abc/a.png 100w,/s/abc/b.png 200w")
        );
        // HTML: a comma inside a URL is part of it (only trailing ones end it).
        assert_eq!(
            r.srcset("/a.png,/b.png 2x").as_deref(),
            Some("/s/abc/a.png,/b.png 2x")
        );
        assert_eq!(r.srcset("https://cdn.example/a.png 1x"), None);
        assert_eq!(r.srcset(" , ,"), None);
    }

    #[test]
    fn a_refresh_goes_under_the_access() {
        let r = rw();
        assert_eq!(
            r.refresh("0;url=/next").as_deref(),
            Some("0;url=/s/abc/next")
        );
        assert_eq!(
            r.refresh("5; URL = 'http://127.0.0.1:8080/x?y' ")
                .as_deref(),
            Some("5; URL = '/s/abc/x?y' ")
        );
        assert_eq!(r.refresh("3, /other").as_deref(), Some("3, /s/abc/other"));
        assert_eq!(r.refresh("5"), None);
        // Not ASCII where a keyword or a URL is looked for: no panic.
        assert_eq!(r.refresh("0;é€x"), None);
        assert_eq!(r.refresh("0;ur€=/x"), None);
        assert_eq!(r.css("url(é€) @import é url(\"€"), None);
        assert_eq!(r.srcset("é 1x, € 2x,"), None);
        assert_eq!(r.refresh("0;url=/é").as_deref(), Some("0;url=/s/abc/é"));
        assert_eq!(r.refresh("0;url=https://elsewhere.example/"), None);
    }
}
