//! The SIP message layer: byte-exact framing, typed header values, and
//! composing new requests and responses.

pub mod answer;
pub mod aor;
pub mod body;
pub mod compose;
pub mod conformance;
pub mod dialog;
pub mod disclosure;
pub mod headers;
pub mod message;
pub mod names;
pub mod route_security;
pub mod routing;
pub mod size;
pub mod status;
pub mod syntax;
pub mod transaction;
pub mod uri;

pub use answer::{Answer, IntoAnswer, respond};
pub use compose::{
    Body, ComposeError, RequestParams, ResponseParams, Transport, build_request, build_response,
};
pub use headers::{CSeq, ContentDisposition, ContentType, HeaderError};
pub use message::{Header, Message, ParseError, ParseErrorKind, StartLine};
pub use status::Status;
