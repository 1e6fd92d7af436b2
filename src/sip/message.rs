//! SIP message framing that keeps every byte (RFC 3261 §7).
//!
//! ```text
//! generic-message  =  start-line
//!                     *message-header
//!                     CRLF
//!                     [ message-body ]
//! ```
//!
//! rsip reformats headers and pushes bodies through UTF-8, so the framing is
//! ours: each header line is kept as the bytes it arrived as (folded
//! continuation lines included), the body is exactly `Content-Length` bytes,
//! and an unmodified message serializes to its input byte for byte. Header
//! *values* are parsed with rsip in [`super::headers`].

use std::fmt;

use super::names::{self, is_token};

/// Where a parse error was found and what it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} (byte {offset}): {kind}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 0-based byte offset into the input.
    pub offset: usize,
    /// What is wrong there.
    pub kind: ParseErrorKind,
}

/// The kinds of malformed SIP framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("empty input: no SIP message")]
    /// No bytes at all.
    Empty,
    #[error("missing start line: the first line is a header ({0:?}), not a request or status line")]
    /// The first line is a header.
    MissingStartLine(String),
    #[error("malformed start line {0:?}: expected `METHOD URI SIP/2.0` or `SIP/2.0 CODE REASON`")]
    /// A start line that is neither a request nor a status line.
    BadStartLine(String),
    #[error("unsupported SIP version {0:?}: only SIP/2.0 is understood")]
    /// A SIP version other than 2.0.
    BadVersion(String),
    #[error("header line without a colon: {0:?}")]
    /// A header line without `:`.
    HeaderWithoutColon(String),
    #[error("invalid header name {0:?}")]
    /// A header name that is not a token.
    BadHeaderName(String),
    #[error("bytes that are not UTF-8 in the start line or a header")]
    /// Bytes that are not UTF-8 before the body.
    NonUtf8,
    #[error("continuation line (starting with white space) before any header")]
    /// A continuation line before the first header.
    FoldWithoutHeader,
    #[error(
        "the header section does not end with an empty line (CRLF CRLF): the message is cut off, or its last line lacks its CRLF"
    )]
    /// No empty line ends the header section.
    Truncated,
    #[error("more than {MAX_HEADERS} header fields")]
    /// More header fields than any SIP message needs: refused before
    /// they are held in memory.
    TooManyHeaders,
    #[error("invalid Content-Length {0:?}")]
    /// A Content-Length that is not a number.
    BadContentLength(String),
    #[error("Content-Length given more than once: the body's length is ambiguous")]
    /// Several Content-Length headers (RFC 4475 §3.3.9).
    ConflictingContentLength,
    #[error("truncated body: Content-Length is {declared} but only {present} bytes follow")]
    /// Fewer body bytes than Content-Length says.
    BodyTooShort {
        /// The Content-Length.
        declared: usize,
        /// The bytes that follow.
        present: usize,
    },
}

impl ParseError {
    /// A message that does not parse failed (exit class).
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Failed
    }

    /// The status a server answers it with: 505 for a SIP version it does
    /// not speak, else 400 Bad Request.
    pub fn sip_status(&self) -> super::status::Status {
        match self.kind {
            ParseErrorKind::BadVersion(_) => super::status::Status::VersionNotSupported,
            _ => super::status::Status::BadRequest,
        }
    }

    /// A short reason phrase for the answer (no input bytes in it).
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ParseErrorKind::BadVersion(_) => "Version Not Supported",
            ParseErrorKind::BadStartLine(_) | ParseErrorKind::MissingStartLine(_) => {
                "Bad Request Line"
            }
            ParseErrorKind::BadContentLength(_)
            | ParseErrorKind::ConflictingContentLength
            | ParseErrorKind::BodyTooShort { .. } => "Bad Content-Length",
            _ => "Malformed Header Section",
        }
    }
}

/// Header fields a message may carry at most (RFC 4475's longest has 46;
/// the limit bounds the memory a hostile message costs).
pub const MAX_HEADERS: usize = 1000;

/// How many bytes of a message's header section [`Message::parse`]
/// checks as UTF-8 in one go (the rest a line at a time).
const HEAD_WINDOW: usize = 4096;

/// Content-Length's number in [`names::KNOWN`].
const CONTENT_LENGTH: u8 = names::known_const("Content-Length");

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP-Version`
    Request {
        /// The method.
        method: String,
        /// The Request-URI.
        uri: String,
    },
    /// `SIP-Version SP Status-Code SP Reason-Phrase`
    Response {
        /// The status code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
}

impl fmt::Display for StartLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartLine::Request { method, uri } => write!(f, "{method} {uri} SIP/2.0"),
            StartLine::Response { code, reason } => write!(f, "SIP/2.0 {code} {reason}"),
        }
    }
}

/// One header field: its original bytes plus its name and unfolded value,
/// in one allocation: the name is the start of the bytes, and the value a
/// range of them unless folding made it a string of its own (a relay
/// parses a dozen headers a message: three allocations each were a tenth
/// of a designated relay's time, with the allocator's cache misses).
#[derive(Debug, Clone)]
pub struct Header {
    /// The bytes as they arrived (valid UTF-8: the parser checked each line).
    raw: Raw,
    name_len: usize,
    /// The name's number in [`names::KNOWN`] (0: another name).
    known: u8,
    value: Value,
}

/// How many bytes of a header line are kept in the [`Header`] itself:
/// most lines are shorter, so parsing, cloning and dropping a message
/// allocates nothing per header (a designated relay does all three for
/// every message).
const INLINE: usize = 80;

/// A header line's bytes: in place up to [`INLINE`] bytes, else on the
/// heap.
#[derive(Debug, Clone)]
enum Raw {
    Inline(arrayvec::ArrayString<INLINE>),
    Heap(String),
}

impl Raw {
    /// The concatenation of `parts`.
    fn of(parts: &[&str]) -> Raw {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len <= INLINE {
            let mut a = arrayvec::ArrayString::new();
            for p in parts {
                a.push_str(p);
            }
            Raw::Inline(a)
        } else {
            Raw::Heap(parts.concat())
        }
    }

    fn push_str(&mut self, more: &str) {
        match self {
            Raw::Inline(a) => {
                if a.try_push_str(more).is_err() {
                    *self = Raw::Heap([a.as_str(), more].concat());
                }
            }
            Raw::Heap(h) => h.push_str(more),
        }
    }
}

impl std::ops::Deref for Raw {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Raw::Inline(a) => a,
            Raw::Heap(h) => h,
        }
    }
}

impl PartialEq for Raw {
    fn eq(&self, other: &Raw) -> bool {
        **self == **other
    }
}

#[derive(Debug, Clone)]
enum Value {
    /// `raw[start..end]`.
    Within(usize, usize),
    /// Unfolded from several lines.
    Unfolded(String),
}

impl PartialEq for Header {
    fn eq(&self, other: &Header) -> bool {
        self.raw == other.raw && self.name() == other.name() && self.value() == other.value()
    }
}

impl Eq for Header {}

impl Header {
    /// A new header line `Name: value` with CRLF.
    pub fn new(name: &str, value: &str) -> Self {
        let raw = Raw::of(&[name, ": ", value, "\r\n"]);
        let at = name.len() + 2;
        Header {
            raw,
            name_len: name.len(),
            known: names::known(name),
            value: Value::Within(at, at + value.len()),
        }
    }

    /// The name as written (compact forms stay compact).
    pub fn name(&self) -> &str {
        &self.raw[..self.name_len]
    }

    /// The value with folding replaced by single spaces and outer white space trimmed.
    pub fn value(&self) -> &str {
        match &self.value {
            Value::Within(start, end) => &self.raw[*start..*end],
            Value::Unfolded(v) => v,
        }
    }

    /// The full name: compact forms expanded, registered capitalisation.
    pub fn full_name(&self) -> &str {
        names::full_name(self.name())
    }

    /// Whether this header is `name` (case-insensitive, compact forms
    /// matched). Inlined: a literal name's number folds to a constant.
    #[inline(always)]
    pub fn is(&self, name: &str) -> bool {
        self.is_named(name, names::known(name))
    }

    /// [`Header::is`] for a `name` whose [`names::known`] number is
    /// `known`: a search over many headers works it out once.
    #[inline]
    pub fn is_named(&self, name: &str, known: u8) -> bool {
        match known {
            0 => self.known == 0 && names::same(self.name(), name),
            k => self.known == k,
        }
    }

    /// The number of this header's name in [`names::KNOWN`], 0 for
    /// another name.
    pub fn known(&self) -> u8 {
        self.known
    }

    /// The bytes of this header as they arrived, line terminators included.
    pub fn raw(&self) -> &[u8] {
        self.raw.as_bytes()
    }

    /// This header with another value, written as it was: the name, the
    /// white space around the colon and the line end kept
    /// (`Content-Length   : 150` → `Content-Length   : 1521`); a folded
    /// line becomes one line.
    pub fn with_value(&self, value: &str) -> Header {
        let first = self.raw.split('\n').next().unwrap_or_default();
        let prefix = first.find(':').map(|colon| {
            let after = first[colon + 1..]
                .bytes()
                .take_while(|&b| b == b' ' || b == b'\t')
                .count();
            &first[..colon + 1 + after]
        });
        let crlf = if self.raw.ends_with("\r\n") || !self.raw.ends_with('\n') {
            "\r\n"
        } else {
            "\n"
        };
        match prefix {
            Some(p) => {
                let raw = Raw::of(&[p, value, crlf]);
                Header {
                    raw,
                    name_len: self.name_len,
                    known: self.known,
                    value: Value::Within(p.len(), p.len() + value.len()),
                }
            }
            None => Header::new(self.name(), value),
        }
    }

    /// The header a parsed line makes: `line` with its line end, its
    /// name `name_len` bytes long, `value` a slice of it.
    fn parsed(line: &str, name_len: usize, value: &str) -> Header {
        let at = value.as_ptr() as usize - line.as_ptr() as usize;
        Header {
            known: names::known(&line[..name_len]),
            raw: Raw::of(&[line]),
            name_len,
            value: Value::Within(at, at + value.len()),
        }
    }

    /// A folded continuation `line` (with its `ending`): its bytes
    /// appended, its text (trimmed) added to the value after one space.
    fn fold(&mut self, line: &str, ending: &str) {
        let mut value = self.value().to_owned();
        self.raw.push_str(line);
        self.raw.push_str(ending);
        let more = line.trim();
        if !more.is_empty() {
            if !value.is_empty() {
                value.push(' ');
            }
            value.push_str(more);
        }
        self.value = Value::Unfolded(value);
    }
}

/// How [`Message::parse`] finds the end of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A datagram (and a file, read like one): the body is Content-Length
    /// bytes and octets after it are discarded (RFC 3261 §18.3); without
    /// Content-Length, the rest of the input.
    Whole,
    /// A stream: the message ends after Content-Length bytes; more may follow.
    Prefix,
}

/// A SIP request or response that keeps its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Empty lines before the start line (keep-alives on a stream).
    preamble: Vec<u8>,
    start_raw: Vec<u8>,
    start: StartLine,
    headers: Vec<Header>,
    /// The empty line ending the header section (`\r\n`, or `\n` in hand-written files).
    separator: &'static [u8],
    body: Vec<u8>,
    /// Bytes after the body that were discarded (datagram framing).
    discarded: usize,
    /// The top Via, parsed once: a relay asks for it several times a
    /// message. Emptied by every change of the headers.
    top_via: TopVia,
}

/// The parsed top Via of a [`Message`], when asked for; not part of what
/// a message is (two equal messages are equal whether parsed or not).
#[derive(Default)]
#[allow(clippy::type_complexity)]
pub(super) struct TopVia(std::sync::OnceLock<Box<Result<super::syntax::Via, super::HeaderError>>>);

/// A copy starts without it: most copies are made to be changed (a
/// relay's outgoing message), which would forget it at once.
impl Clone for TopVia {
    fn clone(&self) -> TopVia {
        TopVia::default()
    }
}

impl PartialEq for TopVia {
    fn eq(&self, _: &TopVia) -> bool {
        true
    }
}

impl Eq for TopVia {}

impl fmt::Debug for TopVia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TopVia")
    }
}

struct Line<'a> {
    /// The line without its terminator.
    text: &'a [u8],
    /// Offset of the first byte after the terminator.
    next: usize,
    /// Whether the line ended with `\n` (otherwise the input ended).
    terminated: bool,
}

fn next_line(input: &[u8], pos: usize) -> Option<Line<'_>> {
    let rest = input.get(pos..)?;
    if rest.is_empty() {
        return None;
    }
    match memchr::memchr(b'\n', rest) {
        Some(nl) => {
            let mut text = &rest[..nl];
            if let [head @ .., b'\r'] = text {
                text = head;
            }
            Some(Line {
                text,
                next: pos + nl + 1,
                terminated: true,
            })
        }
        None => Some(Line {
            text: rest,
            next: input.len(),
            terminated: false,
        }),
    }
}

fn utf8(bytes: &[u8], line: usize, offset: usize) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| ParseError {
        line,
        offset: offset + e.valid_up_to(),
        kind: ParseErrorKind::NonUtf8,
    })
}

fn parse_start_line(text: &str) -> Result<StartLine, ParseErrorKind> {
    if let Some(rest) = text.strip_prefix("SIP/") {
        let (version, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if version != "2.0" {
            return Err(ParseErrorKind::BadVersion(format!("SIP/{version}")));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = match code.parse() {
            Ok(c) if (100..=699).contains(&c) && code.len() == 3 => c,
            _ => return Err(ParseErrorKind::BadStartLine(text.to_owned())),
        };
        return Ok(StartLine::Response {
            code,
            reason: reason.to_owned(),
        });
    }
    let mut parts = text.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(uri), Some(version), None) if is_token(method) && !uri.is_empty() => {
            if version != "SIP/2.0" {
                return Err(ParseErrorKind::BadVersion(version.to_owned()));
            }
            Ok(StartLine::Request {
                method: method.to_owned(),
                uri: uri.to_owned(),
            })
        }
        _ => {
            // A first line shaped like `Name: value` means the start line is missing.
            if let Some((name, _)) = text.split_once(':')
                && is_token(name.trim_end())
            {
                return Err(ParseErrorKind::MissingStartLine(text.to_owned()));
            }
            Err(ParseErrorKind::BadStartLine(text.to_owned()))
        }
    }
}

impl Message {
    /// Parse a whole message from a file or datagram.
    ///
    /// Without `Content-Length` the body is the rest of the input; with it,
    /// the body is that many bytes, fewer is an error, and bytes after it
    /// are discarded as RFC 3261 §18.3 says for a datagram (see
    /// [`Message::discarded`]).
    pub fn parse(input: &[u8]) -> Result<Message, ParseError> {
        Self::parse_framed(input, Framing::Whole).map(|(m, _)| m)
    }

    /// Parse one message from the front of a stream buffer (TCP framing):
    /// `Content-Length` is required to delimit the body (absent means 0) and
    /// bytes after the body are left for the next message. Returns the
    /// message and how many bytes it used.
    pub fn parse_prefix(input: &[u8]) -> Result<(Message, usize), ParseError> {
        Self::parse_framed(input, Framing::Prefix)
    }

    fn parse_framed(input: &[u8], framing: Framing) -> Result<(Message, usize), ParseError> {
        let mut pos = 0;
        let mut line_no = 1;
        let err = |line, offset, kind| ParseError { line, offset, kind };

        // RFC 3261 §7.5: empty lines before the start line are ignored.
        while let Some(l) = next_line(input, pos) {
            if !l.text.is_empty() || !l.terminated {
                break;
            }
            pos = l.next;
            line_no += 1;
        }
        let preamble = input[..pos].to_vec();
        let Some(first) = next_line(input, pos) else {
            return Err(err(line_no, pos, ParseErrorKind::Empty));
        };
        let text = utf8(first.text, line_no, pos)?;
        let start = parse_start_line(text).map_err(|k| err(line_no, pos, k))?;
        if !first.terminated {
            return Err(err(line_no, input.len(), ParseErrorKind::Truncated));
        }
        let start_raw = input[pos..first.next].to_vec();
        pos = first.next;
        line_no += 1;

        // The header lines as text, checked as UTF-8 once (not line by
        // line): up to the first byte that is not (in a sealed message,
        // the binary body's first), within HEAD_WINDOW bytes (a stream
        // buffer may hold more messages: each parse looks at a bounded
        // part of it). Lines beyond are checked one by one.
        let head_at = pos;
        let window = &input[pos..input.len().min(pos + HEAD_WINDOW)];
        let head = match std::str::from_utf8(window) {
            Ok(all) => all,
            Err(e) => std::str::from_utf8(&window[..e.valid_up_to()]).unwrap_or_default(),
        };
        // Room for a usual request's headers without growing.
        let mut headers: Vec<Header> = Vec::with_capacity(16);
        let separator;
        loop {
            let Some(l) = next_line(input, pos) else {
                return Err(err(line_no, pos, ParseErrorKind::Truncated));
            };
            if !l.terminated {
                return Err(err(line_no, input.len(), ParseErrorKind::Truncated));
            }
            if l.text.is_empty() {
                separator = if l.next - pos == 2 {
                    &b"\r\n"[..]
                } else {
                    &b"\n"[..]
                };
                pos = l.next;
                break;
            }
            // The line with its end, `\r\n` or `\n` (next_line takes one
            // `\r` before the `\n` off the text).
            let whole = match head.get(pos - head_at..l.next - head_at) {
                Some(w) => w,
                None => utf8(&input[pos..l.next], line_no, pos)?,
            };
            let (text, ending) = whole.split_at(l.text.len());
            if text.starts_with([' ', '\t']) {
                // Folding (RFC 3261 §7.3.1): the line continues the previous header.
                let Some(prev) = headers.last_mut() else {
                    return Err(err(line_no, pos, ParseErrorKind::FoldWithoutHeader));
                };
                prev.fold(text, ending);
            } else {
                if headers.len() >= MAX_HEADERS {
                    return Err(err(line_no, pos, ParseErrorKind::TooManyHeaders));
                }
                let colon = memchr::memchr(b':', text.as_bytes());
                let Some((name, value)) = colon.map(|i| (&text[..i], &text[i + 1..])) else {
                    return Err(err(
                        line_no,
                        pos,
                        ParseErrorKind::HeaderWithoutColon(text.to_owned()),
                    ));
                };
                let name = name.trim_end_matches([' ', '\t']);
                if !is_token(name) {
                    return Err(err(
                        line_no,
                        pos,
                        ParseErrorKind::BadHeaderName(name.to_owned()),
                    ));
                }
                headers.push(Header::parsed(whole, name.len(), value.trim()));
            }
            pos = l.next;
            line_no += 1;
        }

        let mut declared: Option<usize> = None;
        for h in headers.iter().filter(|h| h.known == CONTENT_LENGTH) {
            let n = h.value().parse::<usize>().map_err(|_| {
                err(
                    line_no,
                    pos,
                    ParseErrorKind::BadContentLength(h.value().to_owned()),
                )
            })?;
            if declared.is_some() {
                return Err(err(line_no, pos, ParseErrorKind::ConflictingContentLength));
            }
            declared = Some(n);
        }
        let present = input.len() - pos;
        let body_len = match (framing, declared) {
            (_, Some(n)) if n > present => {
                return Err(err(
                    line_no,
                    pos,
                    ParseErrorKind::BodyTooShort {
                        declared: n,
                        present,
                    },
                ));
            }
            (_, Some(n)) => n,
            (Framing::Whole, None) => present,
            (Framing::Prefix, None) => 0,
        };
        let body = input[pos..pos + body_len].to_vec();
        let used = pos + body_len;
        Ok((
            Message {
                preamble,
                start_raw,
                start,
                headers,
                separator,
                body,
                discarded: match framing {
                    Framing::Whole => input.len() - used,
                    Framing::Prefix => 0,
                },
                top_via: TopVia::default(),
            },
            used,
        ))
    }

    /// The header section of a request that [`Message::parse`] refused,
    /// under a stand-in request line (`METHOD sip:invalid SIP/2.0`) and
    /// without its Content-Length or body: enough to address a 400/505
    /// answer. `None` for a response (dropped, never answered) or when
    /// not even the method and header lines can be read.
    pub fn salvage_request(input: &[u8]) -> Option<Message> {
        let mut pos = 0;
        while let Some(l) = next_line(input, pos) {
            if !l.text.is_empty() || !l.terminated {
                break;
            }
            pos = l.next;
        }
        let first = next_line(input, pos)?;
        let text = std::str::from_utf8(first.text).ok()?;
        if text.starts_with("SIP/") {
            return None;
        }
        let method = text.split(' ').next().filter(|m| is_token(m))?;
        let mut out = format!("{method} sip:invalid SIP/2.0\r\n").into_bytes();
        let (mut at, mut keep) = (first.next, true);
        while let Some(l) = next_line(input, at) {
            if l.text.is_empty() {
                break;
            }
            if !l.text.starts_with(b" ") && !l.text.starts_with(b"\t") {
                let name = l.text.split(|&b| b == b':').next().unwrap_or_default();
                let name = String::from_utf8_lossy(name);
                keep = !names::same(name.trim_end(), "Content-Length");
            }
            if keep {
                out.extend_from_slice(l.text);
                out.extend_from_slice(b"\r\n");
            }
            at = l.next;
        }
        out.extend_from_slice(b"\r\n");
        Message::parse(&out).ok()
    }

    /// A new message with a start line, no headers and no body.
    pub fn new(start: StartLine) -> Message {
        Message {
            preamble: Vec::new(),
            start_raw: format!("{start}\r\n").into_bytes(),
            start,
            headers: Vec::new(),
            separator: b"\r\n",
            body: Vec::new(),
            discarded: 0,
            top_via: TopVia::default(),
        }
    }

    /// The top Via as parsed by `parse` the first time it is asked for.
    pub(super) fn top_via_with(
        &self,
        parse: impl FnOnce() -> Result<super::syntax::Via, super::HeaderError>,
    ) -> Result<&super::syntax::Via, super::HeaderError> {
        match &**self.top_via.0.get_or_init(|| Box::new(parse())) {
            Ok(via) => Ok(via),
            Err(e) => Err(e.clone()),
        }
    }

    /// The headers, to change: what was parsed of them is forgotten.
    fn headers_mut(&mut self) -> &mut Vec<Header> {
        self.top_via.0.take();
        &mut self.headers
    }

    /// How many bytes after the body [`Message::parse`] discarded (a
    /// datagram's extra octets, RFC 3261 §18.3); 0 for a built message.
    pub fn discarded(&self) -> usize {
        self.discarded
    }

    /// The message as bytes: unmodified parts exactly as they were parsed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.preamble.len()
                + self.start_raw.len()
                + self.headers.iter().map(|h| h.raw.len()).sum::<usize>()
                + self.separator.len()
                + self.body.len(),
        );
        out.extend_from_slice(&self.preamble);
        out.extend_from_slice(&self.start_raw);
        for h in &self.headers {
            out.extend_from_slice(h.raw());
        }
        out.extend_from_slice(self.separator);
        out.extend_from_slice(&self.body);
        out
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }

    /// The request method, for requests.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, for responses.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Replace the start line.
    pub fn set_start_line(&mut self, start: StartLine) {
        self.start_raw = format!("{start}\r\n").into_bytes();
        self.start = start;
    }

    /// All header fields in order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The body, byte-exact.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Append an existing header (its bytes kept) after the existing ones.
    pub fn push_raw(&mut self, header: Header) {
        self.headers_mut().push(header);
    }

    /// Append a header line after the existing ones.
    pub fn push_header(&mut self, name: &str, value: &str) {
        self.headers_mut().push(Header::new(name, value));
    }

    /// Insert a header line at `index` (clamped to the end).
    pub fn insert_header(&mut self, index: usize, name: &str, value: &str) {
        let index = index.min(self.headers.len());
        self.headers_mut().insert(index, Header::new(name, value));
    }

    /// Insert a header above the first one of the same name (a new top Via),
    /// or at the top when there is none.
    pub fn prepend_header(&mut self, name: &str, value: &str) {
        let k = names::known(name);
        let index = self
            .headers
            .iter()
            .position(|h| h.is_named(name, k))
            .unwrap_or(0);
        self.insert_header(index, name, value);
    }

    /// Remove every header line of this name; returns how many went.
    pub fn remove_headers(&mut self, name: &str) -> usize {
        let before = self.headers.len();
        let k = names::known(name);
        self.headers_mut().retain(|h| !h.is_named(name, k));
        before - self.headers.len()
    }

    /// Rewrite the header list in one pass: each line is kept, replaced or
    /// (`None`) dropped by `f`. Linear, however many lines change.
    pub fn rewrite_headers(&mut self, f: impl FnMut(Header) -> Option<Header>) {
        *self.headers_mut() = std::mem::take(&mut self.headers)
            .into_iter()
            .filter_map(f)
            .collect();
    }

    /// Keep only the header lines for which `keep` is true.
    pub fn retain_headers(&mut self, keep: impl FnMut(&Header) -> bool) {
        self.headers_mut().retain(keep);
    }

    /// Remove the header line at `index`, if there is one.
    pub fn remove_header_at(&mut self, index: usize) -> Option<Header> {
        (index < self.headers.len()).then(|| self.headers_mut().remove(index))
    }

    /// Set a header: the first line of that name is replaced in place (its
    /// name kept as written, so `l:` stays compact), later ones removed;
    /// appended when absent.
    pub fn set_header(&mut self, name: &str, value: &str) {
        let k = names::known(name);
        match self.headers.iter().position(|h| h.is_named(name, k)) {
            Some(i) => {
                let headers = self.headers_mut();
                headers[i] = headers[i].with_value(value);
                let mut seen = 0;
                headers.retain(|h| {
                    if h.is_named(name, k) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.push_header(name, value),
        }
    }

    /// Replace the body, leaving the headers as they are (the caller
    /// keeps Content-Length right).
    pub(super) fn set_body_only(&mut self, body: Vec<u8>) {
        self.body = body;
    }

    /// Replace the body; `Content-Length` follows.
    pub fn set_body(&mut self, body: Vec<u8>) {
        self.body = body;
        self.set_header("Content-Length", &self.body.len().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@b.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example.com:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    /// The top Via is parsed once and kept, and every change of the
    /// headers forgets it: a relay that prepends its own Via reads that.
    #[test]
    fn the_top_via_follows_every_change_of_the_headers() {
        let mut m = Message::parse(INVITE).unwrap();
        assert_eq!(m.top_via().unwrap().host, "a.example.com");
        m.prepend_header("Via", "SIP/2.0/TCP relay.example.com;branch=z9hG4bKr");
        assert_eq!(m.top_via().unwrap().host, "relay.example.com");
        m.remove_header_at(0);
        assert_eq!(m.top_via().unwrap().host, "a.example.com");
        m.set_header("Via", "SIP/2.0/UDP b.example.com;branch=z9hG4bKb");
        assert_eq!(m.top_via().unwrap().host, "b.example.com");
        m.rewrite_headers(|h| match h.is("Via") {
            true => Some(h.with_value("SIP/2.0/UDP c.example.com;branch=z9hG4bKc")),
            false => Some(h),
        });
        assert_eq!(m.top_via().unwrap().host, "c.example.com");
        m.retain_headers(|h| !h.is("Via"));
        assert!(m.top_via().is_err());
        m.push_header("v", "SIP/2.0/UDP d.example.com;branch=z9hG4bKd");
        assert_eq!(m.top_via().unwrap().host, "d.example.com");
        m.remove_headers("Via");
        assert!(m.top_via().is_err());
        let copy = m.clone();
        m.insert_header(0, "Via", "SIP/2.0/UDP e.example.com;branch=z9hG4bKe");
        assert_eq!(m.top_via().unwrap().host, "e.example.com");
        assert!(copy.top_via().is_err());
        // A copy is not handed the parse, and reads the same.
        assert_eq!(m.clone().top_via().unwrap().host, "e.example.com");
    }

    #[test]
    fn round_trips_bytes() {
        let m = Message::parse(INVITE).unwrap();
        assert_eq!(m.to_bytes(), INVITE);
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.body(), b"v=0\n");
    }

    #[test]
    fn folding_joins_values_and_keeps_bytes() {
        let input = b"SIP/2.0 200 OK\r\nSubject: one\r\n  two\r\n\tthree\r\nl: 0\r\n\r\n";
        let m = Message::parse(input).unwrap();
        assert_eq!(m.headers()[0].value(), "one two three");
        assert_eq!(m.to_bytes(), input);
        assert_eq!(m.status(), Some(200));
    }

    #[test]
    fn missing_content_length_takes_rest() {
        let m = Message::parse(b"OPTIONS sip:x SIP/2.0\nCall-ID: a\n\nbody bytes").unwrap();
        assert_eq!(m.body(), b"body bytes");
    }

    #[test]
    fn prefix_framing_leaves_the_rest() {
        let mut two = INVITE.to_vec();
        two.extend_from_slice(INVITE);
        let (m, used) = Message::parse_prefix(&two).unwrap();
        assert_eq!(used, INVITE.len());
        assert_eq!(m.to_bytes(), INVITE);
        // A datagram's extra octets are discarded (RFC 3261 §18.3).
        let first = Message::parse(&two).unwrap();
        assert_eq!(first.to_bytes(), INVITE);
        assert_eq!(first.discarded(), INVITE.len());
    }

    /// The sip_message fuzz target's finding (fuzz/seeds/sip_message/
    /// excess-octets.sip): a response with NULs in its reason phrase and
    /// octets after `Content-Length: 0` keeps every byte up to the body's
    /// end and discards the rest, as RFC 3261 §18.3 says for a datagram.
    #[test]
    fn octets_after_the_body_are_discarded_and_the_rest_is_kept() {
        let input: &[u8] = b"SIP/2.0 180 Rin\x00\x00\x003d3060;branch=z9hG028e3cbfcb7e713d3e@.com>\r\x01e\nContent-Length: 0\r\n\r\n\x00\x00\x00\x00\x00\x00\x027";
        let m = Message::parse(input).unwrap();
        assert_eq!(m.discarded(), 8);
        assert_eq!(m.to_bytes(), &input[..input.len() - 8]);
        assert_eq!(
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fuzz/seeds/sip_message/excess-octets.sip"
            ))
            .unwrap(),
            input
        );
    }

    #[test]
    fn errors_name_line_and_offset() {
        let e = Message::parse(b"INVITE sip:x SIP/2.0\r\nVia SIP/2.0/UDP h\r\n\r\n").unwrap_err();
        assert_eq!((e.line, e.offset), (2, 22));
        assert!(matches!(e.kind, ParseErrorKind::HeaderWithoutColon(_)));

        let e = Message::parse(b"Via: SIP/2.0/UDP h\r\n\r\n").unwrap_err();
        assert!(matches!(e.kind, ParseErrorKind::MissingStartLine(_)));

        let e = Message::parse(b"INVITE sip:x SIP/2.0\r\nSubject: caf\xe9\r\n\r\n").unwrap_err();
        assert_eq!((e.line, e.offset, e.kind), (2, 34, ParseErrorKind::NonUtf8));

        // The header lines are checked as one text up to the first byte
        // that is not UTF-8: a bad byte lines later is still that line's,
        // and a binary body after good lines is no error.
        let e = Message::parse(
            b"INVITE sip:x SIP/2.0\r\nTo: <sip:b@h>\r\nl: 2\r\nSubject: \xff\r\n\r\nab",
        )
        .unwrap_err();
        assert_eq!((e.line, e.offset, e.kind), (4, 52, ParseErrorKind::NonUtf8));
        let m = Message::parse(b"INVITE sip:x SIP/2.0\r\nTo: <sip:b@h>\r\nl: 2\r\n\r\n\x30\x82")
            .unwrap();
        assert_eq!(
            (m.header("To"), m.body()),
            (Some("<sip:b@h>"), &b"\x30\x82"[..])
        );

        // Past the window checked in one go, lines are checked one by one:
        // a long section parses, and a bad byte there is still found.
        let long = format!(
            "INVITE sip:x SIP/2.0\r\nSubject: {}\r\nTo: <sip:b@h>\r\nl: 0\r\n\r\n",
            "é".repeat(HEAD_WINDOW)
        );
        let m = Message::parse(long.as_bytes()).unwrap();
        assert_eq!(m.header("Subject").map(str::len), Some(2 * HEAD_WINDOW));
        assert_eq!(m.header("To"), Some("<sip:b@h>"));
        let mut bad = long.into_bytes();
        let at = bad.len() - 10;
        bad[at] = 0xff;
        let e = Message::parse(&bad).unwrap_err();
        assert_eq!((e.line, e.kind), (3, ParseErrorKind::NonUtf8));

        let e = Message::parse(b"INVITE sip:x SIP/2.0\r\nCall-ID: a").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::Truncated);

        let e = Message::parse(b"INVITE sip:x SIP/2.0\r\nl: 9\r\n\r\nabc").unwrap_err();
        assert_eq!(
            e.kind,
            ParseErrorKind::BodyTooShort {
                declared: 9,
                present: 3
            }
        );

        let e = Message::parse(b"").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::Empty);
    }

    #[test]
    fn a_refused_request_is_salvaged_for_its_answer() {
        let input = b"INVITE  sip:x  SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nl: 99\r\nCSeq: 1\r\n INVITE\r\n\r\nv=0";
        let e = Message::parse(input).unwrap_err();
        assert!(matches!(e.kind, ParseErrorKind::BadStartLine(_)));
        let m = Message::salvage_request(input).unwrap();
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.header("CSeq"), Some("1 INVITE"));
        assert_eq!(m.header("Content-Length"), None);
        assert_eq!(
            Message::salvage_request(b"SIP/2.0 4294967301 x\r\nVia: a\r\n\r\n"),
            None
        );
    }

    #[test]
    fn editing_keeps_other_lines_and_fixes_length() {
        let mut m = Message::parse(INVITE).unwrap();
        m.prepend_header("Via", "SIP/2.0/UDP p.example.com;branch=z9hG4bKnew");
        m.set_header("max-forwards", "69");
        m.set_body(b"v=0\r\no=x\r\n".to_vec());
        let text = String::from_utf8(m.to_bytes()).unwrap();
        assert!(text.starts_with(
            "INVITE sip:bob@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP p.example.com;branch=z9hG4bKnew\r\nVia: SIP/2.0/UDP a.example.com:5060;branch=z9hG4bK776asdhds\r\nMax-Forwards: 69\r\nContent-Length: 10\r\n\r\n"
        ));
        assert_eq!(Message::parse(&m.to_bytes()).unwrap(), m);
        assert_eq!(m.remove_headers("v"), 2);
    }
}
