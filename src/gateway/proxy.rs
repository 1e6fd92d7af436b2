//! The reverse proxy's pieces: the seam a byte stream to a destination's
//! service comes from ([`Dialer`]), and the data conversion (links and
//! `Location` rewritten to the gateway's path for the access).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

use super::destinations::Destination;
use super::rewrite::Rewrite;

/// A byte stream to a destination's HTTP service.
pub trait Channel: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Channel for T {}

/// Ends the call behind a channel (the real one sends BYE). Called once,
/// when the access ends: logout, `--idle`, the session's end.
pub type Hangup = Box<dyn FnOnce() + Send>;

/// What a dial gives: the stream and how to end it.
pub struct Dialed {
    /// The byte stream to the service.
    pub channel: Box<dyn Channel>,
    /// Called once when the access ends.
    pub hangup: Hangup,
}

/// Why no channel was set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// The call was refused with a SIP final response.
    #[error("the call was refused: {status} {reason}")]
    Refused {
        /// The SIP status code.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// Nothing could be reached (no route, no answer, a channel that did
    /// not come up).
    #[error("{0}")]
    Unreachable(String),
}

impl DialError {
    /// The SIP status the metrics count it under (408 for an unreachable
    /// destination, as a transaction timeout is).
    pub fn status(&self) -> u16 {
        match self {
            DialError::Refused { status, .. } => *status,
            DialError::Unreachable(_) => 408,
        }
    }
}

/// A dial in progress.
pub type Dialing<'a> = Pin<Box<dyn Future<Output = Result<Dialed, DialError>> + Send + 'a>>;

/// The seam the call plugs into: for one access, `user` calls
/// `destination` and gets a byte stream to its HTTP service.
pub trait Dialer: Send + Sync {
    /// Set up the channel for one access.
    fn dial<'a>(&'a self, user: &'a str, destination: &'a Destination) -> Dialing<'a>;
}

/// The dialer until the call is built: every access is refused 501.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCall;

impl Dialer for NoCall {
    fn dial<'a>(&'a self, _user: &'a str, _destination: &'a Destination) -> Dialing<'a> {
        Box::pin(async {
            Err(DialError::Refused {
                status: 501,
                reason: "Not Implemented (the gateway's call is not built yet)".into(),
            })
        })
    }
}

/// Plain TCP to a fixed address per destination URI, with no call and no
/// channel security: the test fixture of the rewriting proxy
/// (`gateway --direct-tcp`), never the product's path.
#[derive(Debug, Clone, Default)]
pub struct DirectTcp {
    /// SIP URI (lowercase) → the service's address.
    pub routes: Vec<(String, SocketAddr)>,
}

impl Dialer for DirectTcp {
    fn dial<'a>(&'a self, _user: &'a str, destination: &'a Destination) -> Dialing<'a> {
        Box::pin(async move {
            let uri = destination.uri.to_ascii_lowercase();
            let Some((_, addr)) = self.routes.iter().find(|(u, _)| *u == uri) else {
                return Err(DialError::Refused {
                    status: 404,
                    reason: "Not Found".into(),
                });
            };
            let stream = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            .map_err(|_| DialError::Unreachable(format!("{addr}: no answer in 10 s")))?
            .map_err(|e| DialError::Unreachable(format!("{addr}: {e}")))?;
            Ok(Dialed {
                channel: Box::new(stream),
                hangup: Box::new(|| {}),
            })
        })
    }
}

/// The elements and attributes whose URLs are rewritten.
pub const URL_ATTRIBUTES: &[(&str, &str)] = &[
    ("a[href]", "href"),
    ("area[href]", "href"),
    ("link[href]", "href"),
    ("img[src]", "src"),
    ("script[src]", "src"),
    ("iframe[src]", "src"),
    ("source[src]", "src"),
    ("video[src]", "src"),
    ("audio[src]", "src"),
    ("form[action]", "action"),
    ("button[formaction]", "formaction"),
];

/// The most the HTML rewriter buffers at once.
pub const MAX_REWRITE_MEMORY: usize = 1 << 20;

/// A streaming rewriter of HTML for `rw`: each chunk in, the rewritten
/// bytes out to `sink`.
pub fn html_rewriter<'h, F: FnMut(&[u8]) + Send + 'h>(
    rw: &Rewrite,
    sink: F,
) -> lol_html::send::HtmlRewriter<'h, F> {
    use lol_html::{element, send::Settings};
    let mut handlers = Vec::new();
    for (selector, attr) in URL_ATTRIBUTES {
        let rw = rw.clone();
        handlers.push(element!(*selector, move |el| {
            if let Some(new) = el.get_attribute(attr).and_then(|v| rw.url(&v)) {
                el.set_attribute(attr, &new)?;
            }
            Ok(())
        }));
    }
    lol_html::send::HtmlRewriter::new(
        Settings {
            element_content_handlers: handlers,
            // What the parser may buffer of one construct (a tag split
            // across chunks): a page whose tag is larger is cut off.
            memory_settings: lol_html::MemorySettings {
                max_allowed_memory_usage: MAX_REWRITE_MEMORY,
                ..lol_html::MemorySettings::default()
            },
            ..Settings::new_send()
        },
        sink,
    )
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
    fn html_links_are_rewritten_as_they_stream() {
        let mut out = Vec::new();
        {
            let mut w = html_rewriter(&rw(), |c: &[u8]| out.extend_from_slice(c));
            for chunk in [
                &b"<a href=\"/x\">x</a><img sr"[..],
                b"c=\"http://127.0.0.1:8080/i.png\"><form action=\"/f\"></form>",
                b"<a href=\"https://other/\">o</a>",
            ] {
                w.write(chunk).unwrap();
            }
            w.end().unwrap();
        }
        let html = String::from_utf8(out).unwrap();
        assert!(html.contains("href=\"/s/abc/x\""), "{html}");
        assert!(html.contains("src=\"/s/abc/i.png\""), "{html}");
        assert!(html.contains("action=\"/s/abc/f\""), "{html}");
        assert!(html.contains("href=\"https://other/\""), "{html}");
    }

    #[test]
    fn a_tag_larger_than_the_rewriters_memory_is_an_error_not_a_buffer() {
        let mut w = html_rewriter(&rw(), |_: &[u8]| {});
        let mut failed = false;
        let chunk = vec![b'a'; 64 * 1024];
        w.write(b"<a href=\"").unwrap();
        for _ in 0..(2 * MAX_REWRITE_MEMORY / chunk.len()) {
            if w.write(&chunk).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
    }
}
