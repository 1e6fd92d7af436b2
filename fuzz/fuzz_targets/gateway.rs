//! What the gateway reads from a file or a service: the destinations
//! table, a service's URLs, CSS, srcset, refresh and Set-Cookie values,
//! and text put into a page. Never a panic; rewritten URLs stay under the access's path, and
//! escaped text carries no markup.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipseal::gateway::destinations::{Destinations, is_sip_uri, origin_authority};
use sipseal::gateway::html::escape;
use sipseal::gateway::rewrite::Rewrite;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Destinations::parse(text) {
        for user in ["alice", "bob", ""] {
            for dest in d.of(user) {
                assert!(is_sip_uri(&dest.uri));
            }
            if let Some(t) = d.typed(user, "sip:x@b.example.com") {
                assert!(is_sip_uri(&t.uri));
            }
        }
        let _ = d.user_of_phone(text);
    }
    let _ = origin_authority(text);
    for origin in [Some("http://127.0.0.1:8080"), None] {
        let rw = Rewrite {
            prefix: "/s/abc".into(),
            origin: origin.map(Into::into),
        };
        if let Some(url) = rw.url(text) {
            assert!(
                url.starts_with("/s/abc/")
                    || url.starts_with("/s/abc?")
                    || url.starts_with("/s/abc#"),
                "{url}"
            );
        }
        // CSS, srcset and refresh: no panic on any text, and what changes
        // is only ever a URL put under the access.
        for rewritten in [rw.css(text), rw.srcset(text), rw.refresh(text)]
            .into_iter()
            .flatten()
        {
            assert!(rewritten.contains("/s/abc"), "{rewritten}");
        }
        let cookie = rw.set_cookie(text);
        assert!(cookie.contains("Path=/s/abc/"), "{cookie}");
    }
    let escaped = escape(text);
    assert!(!escaped.contains(['<', '>', '"', '\'']));
});
