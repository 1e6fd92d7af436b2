//! Framing a SIP stream (RFC 3261 §18.3): a message ends after its
//! headers and `Content-Length` bytes of body; the header is mandatory on
//! a stream. CRLFs between messages are keep-alives (RFC 5626 §4.4.1: a
//! double CRLF "ping" wants a single CRLF "pong").
//!
//! The framer sees each byte once while looking for the end of the
//! headers (a peer that trickles bytes costs linear time), and a message
//! over the limit is refused before it is parsed.

use memchr::memmem;

/// Why a stream cannot be framed: the connection closes (after a 400,
/// when the headers can be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message (or its headers so far) is over the limit.
    #[error("message over the {0}-byte limit")]
    TooBig(usize),
    /// A message on a stream without Content-Length.
    #[error("no Content-Length, which a stream requires (RFC 3261 §18.3)")]
    NoContentLength,
    /// A Content-Length that is not one number.
    #[error("Content-Length is not a single number")]
    BadContentLength,
}

/// What the front of the buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Not a whole message yet: read more.
    Partial,
    /// A keep-alive; send a CRLF back when `pong`.
    KeepAlive {
        /// Answer with a CRLF.
        pong: bool,
    },
    /// A whole message (taken off the buffer).
    Message(Vec<u8>),
}

/// Bytes from a stream, cut into messages.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// How far the search for the end of the headers has looked.
    scanned: usize,
    /// Once the headers are whole: the size of the message they begin.
    total: Option<usize>,
    limit: usize,
}

impl Framer {
    /// A framer that refuses messages over `limit` bytes.
    pub fn new(limit: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            scanned: 0,
            total: None,
            limit,
        }
    }

    /// Add what was read.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// What is waiting (the bytes a refused message began with).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The next thing in the buffer.
    pub fn next_frame(&mut self) -> Result<Frame, FrameError> {
        if self.total.is_none() {
            let crlfs = self.buf.chunks(2).take_while(|c| *c == b"\r\n").count();
            // A lone CRLF may be the first half of a ping: wait for what follows.
            let rest = &self.buf[crlfs * 2..];
            if crlfs == 1 && (rest.is_empty() || rest == b"\r") {
                return Ok(Frame::Partial);
            }
            if crlfs > 0 {
                self.buf.drain(..crlfs * 2);
                self.scanned = 0;
                return Ok(Frame::KeepAlive { pong: crlfs >= 2 });
            }
            if self.buf.first() == Some(&b'\r') && self.buf.len() == 1 {
                return Ok(Frame::Partial);
            }
            let from = self.scanned.saturating_sub(3);
            let Some(i) = memmem::find(&self.buf[from..], b"\r\n\r\n") else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.limit {
                    return Err(FrameError::TooBig(self.limit));
                }
                return Ok(Frame::Partial);
            };
            let end = from + i + 4;
            let length = content_length(&self.buf[..end])?;
            let total = end
                .checked_add(length)
                .filter(|t| *t <= self.limit)
                .ok_or(FrameError::TooBig(self.limit))?;
            self.total = Some(total);
        }
        let total = self.total.unwrap_or_default();
        if self.buf.len() < total {
            return Ok(Frame::Partial);
        }
        let rest = self.buf.split_off(total);
        let message = std::mem::replace(&mut self.buf, rest);
        self.scanned = 0;
        self.total = None;
        Ok(Frame::Message(message))
    }
}

/// The Content-Length (or compact `l`) of a header block; every one
/// given must agree.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    let mut found: Option<usize> = None;
    for line in head.split(|b| *b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FrameError::BadContentLength);
        }
        let n = value
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(FrameError::BadContentLength);
        }
        found = Some(n);
    }
    found.ok_or(FrameError::NoContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:b@example.com SIP/2.0\r\nl: 4\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\nbody";

    #[test]
    fn messages_come_out_whole_whatever_the_reads() {
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(MSG);
        for chunk in [1, 3, 7, stream.len()] {
            let mut f = Framer::new(1000);
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                f.push(piece);
                loop {
                    match f.next_frame().unwrap() {
                        Frame::Partial => break,
                        other => out.push(other),
                    }
                }
            }
            assert_eq!(
                out,
                vec![
                    Frame::KeepAlive { pong: true },
                    Frame::Message(MSG.to_vec()),
                    Frame::KeepAlive { pong: false },
                    Frame::Message(MSG.to_vec()),
                ],
                "chunks of {chunk}"
            );
            assert!(f.is_empty());
        }
    }

    #[test]
    fn what_cannot_be_framed_is_refused_before_it_is_parsed() {
        let mut f = Framer::new(20);
        f.push(&[b'A'; 21]);
        assert_eq!(f.next_frame(), Err(FrameError::TooBig(20)));
        let mut f = Framer::new(100);
        f.push(b"OPTIONS sip:b SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::TooBig(100)));
        let mut f = Framer::new(100);
        f.push(b"OPTIONS sip:b SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::NoContentLength));
        for bad in ["-1", "1 2", "", "99999999999"] {
            let mut f = Framer::new(100);
            f.push(format!("OPTIONS sip:b SIP/2.0\r\nContent-Length: {bad}\r\n\r\n").as_bytes());
            assert_eq!(f.next_frame(), Err(FrameError::BadContentLength), "{bad}");
        }
        let mut f = Framer::new(100);
        f.push(b"OPTIONS sip:b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::BadContentLength));
    }
}
