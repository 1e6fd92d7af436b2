//! The gateway's own pages: plain server-rendered HTML that works without
//! JavaScript and on a small screen. Every value from a file or a request
//! is escaped ([`escape`]).

use super::destinations::Destination;

/// `text` safe inside an element or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;max-width:40em;margin:0 auto;padding:1em}\
input,button{font-size:1em;padding:.4em;margin:.2em 0;max-width:100%}\
ul{list-style:none;padding:0}li{border-bottom:1px solid #ccc;padding:.6em 0}\
img{max-width:4em;max-height:4em;float:right}.msg{color:#a00}small{color:#555}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n",
        escape(title)
    )
}

/// The login form, with `message` above it (the same words for a wrong
/// password and an unknown user).
pub fn login(message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("<p class=\"msg\">{}</p>", escape(m)))
        .unwrap_or_default();
    page(
        "Log in",
        &format!(
            "<h1>Log in</h1>{msg}<form method=\"post\" action=\"/login\">\
<p><label>ID<br><input name=\"id\" autocomplete=\"username\" required></label></p>\
<p><label>Password<br><input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
<p><button type=\"submit\">Log in</button></p></form>"
        ),
    )
}

/// The portal: `user`'s destinations, one button each, and the form to
/// type one when the user may. `csrf` goes in every form.
pub fn portal(
    user: &str,
    destinations: &[Destination],
    may_type: bool,
    csrf: &str,
    message: Option<&str>,
) -> String {
    let csrf = escape(csrf);
    let mut list = String::new();
    for (i, d) in destinations.iter().enumerate() {
        let picture = d
            .picture
            .as_deref()
            .map(|p| format!("<img src=\"{}\" alt=\"\">", escape(p)))
            .unwrap_or_default();
        list.push_str(&format!(
            "<li>{picture}<form method=\"post\" action=\"/open\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"dest\" value=\"{i}\">\
<button type=\"submit\">{}</button></form><small>{}</small><br>{}</li>\n",
            escape(&d.name),
            escape(&d.uri),
            escape(&d.description)
        ));
    }
    if destinations.is_empty() {
        list.push_str("<li>No destinations.</li>");
    }
    let typed = if may_type {
        format!(
            "<h2>Another destination</h2><form method=\"post\" action=\"/open\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<p><label>SIP URI<br><input name=\"uri\" placeholder=\"sip:service@example.com\" required></label></p>\
<p><button type=\"submit\">Open</button></p></form>"
        )
    } else {
        String::new()
    };
    let msg = message
        .map(|m| format!("<p class=\"msg\">{}</p>", escape(m)))
        .unwrap_or_default();
    page(
        "Destinations",
        &format!(
            "<h1>Destinations</h1><p>Logged in as {}.</p>{msg}<ul>\n{list}</ul>{typed}\
<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button type=\"submit\">Log out</button></form>",
            escape(user)
        ),
    )
}

/// A page that says `message` with a link back to the portal.
pub fn notice(title: &str, message: &str) -> String {
    page(
        title,
        &format!(
            "<h1>{}</h1><p>{}</p><p><a href=\"/\">Back</a></p>",
            escape(title),
            escape(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_escaped_everywhere() {
        let d = Destination {
            name: "<script>alert(1)</script>".into(),
            uri: "sip:a@b".into(),
            description: "\"><img src=x onerror=alert(1)>".into(),
            picture: Some("https://x/\"onerror=\"alert(1)".into()),
            origin: None,
            cert: None,
        };
        let html = portal("<b>", &[d], true, "t\"", None);
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("<img src=x"));
        assert!(!html.contains("\"onerror"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("Logged in as &lt;b&gt;"));
    }
}
