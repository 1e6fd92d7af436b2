//! What the user sees when a command fails: the error, a hint that says
//! what to do next (naming the flags to use), and the exit code (docs/SPEC.md §9).
//! The library's errors know their class; this maps classes onto exit
//! codes and errors onto advice.

use std::path::PathBuf;

use sipseal::envelope::EnvelopeError;
use sipseal::envelope::signed::SignatureError;
use sipseal::error::ErrorClass;
use sipseal::keys::KeyError;
use sipseal::relay::RelayError;
use sipseal::sealing::SealError;
use sipseal::signing::SigningError;
use sipseal::sip::conformance::Malformed;
use sipseal::sip::message::ParseErrorKind;
use sipseal::sip::{ComposeError, HeaderError, ParseError};
use sipseal::state::StoreError;
use sipseal::ua::{RelayCertError, UaError};

/// Process exit codes (docs/SPEC.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The message failed verification or decryption, or is malformed.
    Failed = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// Nothing here for me (not a recipient).
    NotForMe = 3,
    /// I/O error.
    Io = 4,
    /// A relay or the registrar answered with a SIP error or challenge (written to stdout).
    SipError = 5,
}

impl From<ErrorClass> for Exit {
    fn from(class: ErrorClass) -> Exit {
        match class {
            ErrorClass::Failed => Exit::Failed,
            ErrorClass::Config => Exit::Usage,
            ErrorClass::NotForMe => Exit::NotForMe,
            ErrorClass::Io => Exit::Io,
        }
    }
}

/// The exit codes as the man pages and `--help` print them.
pub const EXIT_CODES: &[(u8, &str)] = &[
    (0, "success"),
    (
        1,
        "the message failed verification or decryption, or is malformed",
    ),
    (2, "usage or configuration error"),
    (3, "nothing here for me (not a recipient)"),
    (4, "I/O error"),
    (
        5,
        "a relay or the registrar answered with a SIP error or challenge (written to stdout)",
    ),
];

/// Every way a command can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or an input that does not make sense.
    #[error("{message}")]
    Usage { message: String, hint: String },
    /// An input that cannot be read.
    #[error("cannot read {name}: {source}")]
    Read {
        name: String,
        source: std::io::Error,
    },
    /// An output that cannot be written.
    #[error("cannot write {name}: {source}")]
    Write {
        name: String,
        source: std::io::Error,
    },
    /// An input over `--max-message-size`.
    #[error("{name} is larger than {limit} bytes (--max-message-size)")]
    TooLarge { name: String, limit: u64 },
    /// A SIP message that does not parse.
    #[error("{name}: {err}")]
    Parse { name: String, err: ParseError },
    /// A message that frames but is malformed (RFC 3261 / RFC 4475).
    #[error("{name}: malformed: {err}")]
    Malformed { name: String, err: Malformed },
    /// A message that cannot be composed.
    #[error("{}", compose_message(.0))]
    Compose(#[from] ComposeError),
    /// Key material that cannot be used.
    #[error("{0}")]
    Keys(#[from] KeyError),
    /// A message spec that cannot be used.
    #[error("{path}: {reason}")]
    Spec { path: PathBuf, reason: String },
    /// Sealing or opening.
    #[error("{name}: {err}")]
    Seal { name: String, err: SealError },
    /// A relay step.
    #[error("{name}: {err}")]
    Relay { name: String, err: RelayError },
    /// Signing, or reading a signature.
    #[error("{name}: {err}")]
    Signing { name: String, err: SigningError },
    /// A user agent workflow.
    #[error("{name}: {err}")]
    Ua { name: String, err: UaError },
    /// A recipient certificate that may not be sealed to.
    #[error("recipient {name}: {err}")]
    Recipient {
        name: String,
        err: sipseal::keys::trust::TrustError,
    },
    /// A 496 that does not give a relay certificate to trust.
    #[error("{name}: {err}")]
    RelayCert { name: String, err: RelayCertError },
    /// The session or pinhole store.
    #[error("state: {0}")]
    State(#[from] StoreError),
    /// The registrar could not answer (store, signing, issuing).
    #[error("registrar: {0}")]
    Registrar(#[from] sipseal::registrar::RegistrarError),
    /// The next hop could not be reached, or did not answer in time.
    #[error("{message}")]
    Unreachable { message: String, hint: &'static str },
    /// Recording (`sipseal record`).
    #[cfg(feature = "record")]
    #[error("{name}: {err}")]
    Record {
        name: String,
        err: sipseal::record::RecordError,
    },
    /// The recorder's packet socket (`record --interface`).
    #[cfg(all(feature = "record", feature = "live", target_os = "linux"))]
    #[error("--interface: {0}")]
    Packet(sipseal::net::packet::PacketError),
    /// No state directory to default to.
    #[error("state: no state directory: neither --state, SIPSEAL_STATE nor a home directory")]
    NoStateDir,
}

/// `--request` names the request a response answers.
fn compose_message(e: &ComposeError) -> String {
    match e {
        ComposeError::NotARequest => "--request must be a SIP request, not a response".into(),
        other => other.to_string(),
    }
}

impl Error {
    /// A usage error with its hint.
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::Usage {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A user agent workflow's error on input `name`: sealing, composing
    /// and store errors read as they always have.
    pub fn ua(name: &str, err: UaError) -> Error {
        match err {
            UaError::Seal(err) => Error::Seal {
                name: name.to_owned(),
                err,
            },
            UaError::Compose(e) => Error::Compose(e),
            UaError::Store(e) => Error::State(e),
            err => Error::Ua {
                name: name.to_owned(),
                err,
            },
        }
    }

    /// What to do next.
    pub fn hint(&self) -> String {
        match self {
            Error::Usage { hint, .. } => hint.clone(),
            Error::Read { .. } => {
                "check the path exists and is readable, or pass - for standard input".into()
            }
            Error::Write { .. } => "check the directory exists and is writable".into(),
            Error::Parse { err, .. } => parse_hint(err).into(),
            Error::TooLarge { .. } => {
                "no SIP message comes close; if this one is genuine, raise --max-message-size (e.g. 4MiB)".into()
            }
            Error::Malformed { .. } => {
                "a relay answers such a request 400 and drops such a response; fix the value named (RFC 3261 §20, §25)".into()
            }
            Error::Compose(e) => compose_hint(e),
            Error::Keys(e) => key_hint(e).into(),
            Error::Spec { .. } => "see `man sipseal-build` for the message spec keys".into(),
            Error::Seal { err, .. } => seal_hint(err),
            Error::Relay { err, .. } => relay_hint(err),
            Error::Signing { err, .. } => signing_hint(err),
            Error::Ua { err, .. } => ua_hint(err),
            Error::RelayCert { err, .. } => match err {
                RelayCertError::Untrusted(_) => {
                    "seal only to a relay certificate your --trust anchors vouch for; check --trust and the clock (--now)".into()
                }
                _ => "give the 496 Proxy Undecipherable response a relay answered with (`sipseal proxy` writes it on exit 5)".into(),
            },
            Error::Recipient { .. } => {
                "seal only to a certificate valid now (check --now), whose key usage allows key encipherment, and that chains to a --trust anchor".into()
            }
            Error::State(e) => store_hint(e).into(),
            Error::Registrar(e) => match e {
                sipseal::registrar::RegistrarError::Store(e) => store_hint(e).into(),
                sipseal::registrar::RegistrarError::Key(e) => key_hint(e).into(),
                sipseal::registrar::RegistrarError::Compose(e) => compose_hint(e),
                sipseal::registrar::RegistrarError::Sign(e) => signing_hint(e),
                sipseal::registrar::RegistrarError::Ack => {
                    "give the registrar a REGISTER, OPTIONS or PUBLISH".into()
                }
            },
            Error::NoStateDir => "give --state DIR or set SIPSEAL_STATE".into(),
            #[cfg(feature = "record")]
            Error::Record { err, .. } => record_hint(err).into(),
            #[cfg(all(feature = "record", feature = "live", target_os = "linux"))]
            Error::Packet(e) => packet_hint(e).into(),
            Error::Unreachable { hint, .. } => (*hint).into(),
        }
    }

    /// The process exit code.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Usage { .. } | Error::Spec { .. } | Error::NoStateDir => Exit::Usage,
            Error::Read { .. } | Error::Write { .. } | Error::Unreachable { .. } => Exit::Io,
            Error::Parse { err, .. } => err.class().into(),
            Error::TooLarge { .. } => Exit::Failed,
            Error::Malformed { err, .. } => err.class().into(),
            Error::Compose(e) => e.class().into(),
            Error::Keys(e) => e.class().into(),
            Error::Seal { err, .. } => err.class().into(),
            Error::Relay { err, .. } => err.class().into(),
            Error::Signing { err, .. } => err.class().into(),
            Error::Ua { err, .. } => err.class().into(),
            Error::RelayCert { err, .. } => err.class().into(),
            Error::Recipient { err, .. } => err.class().into(),
            Error::State(e) => e.class().into(),
            Error::Registrar(e) => e.class().into(),
            #[cfg(feature = "record")]
            Error::Record { err, .. } => err.class().into(),
            #[cfg(all(feature = "record", feature = "live", target_os = "linux"))]
            Error::Packet(e) => match e {
                sipseal::net::packet::PacketError::NoSuchInterface(_) => Exit::Usage,
                _ => Exit::Io,
            },
        }
    }
}

fn parse_hint(e: &ParseError) -> &'static str {
    match e.kind {
        ParseErrorKind::Empty | ParseErrorKind::MissingStartLine(_) => {
            "pass a whole SIP message: a request line (`INVITE sip:bob@b.example.com SIP/2.0`) or a status line, then headers"
        }
        ParseErrorKind::BadStartLine(_) | ParseErrorKind::BadVersion(_) => {
            "the first line must be `METHOD REQUEST-URI SIP/2.0` or `SIP/2.0 CODE REASON`"
        }
        ParseErrorKind::HeaderWithoutColon(_) | ParseErrorKind::BadHeaderName(_) => {
            "every header line is `Name: value`; continuation lines start with a space or tab"
        }
        ParseErrorKind::NonUtf8 => "header values must be UTF-8; binary data belongs in the body",
        ParseErrorKind::TooManyHeaders => {
            "no SIP message needs that many header fields: this one is refused, not parsed"
        }
        ParseErrorKind::FoldWithoutHeader => {
            "remove the leading white space from the first header line"
        }
        ParseErrorKind::Truncated => {
            "the message was cut off: headers must be followed by an empty line (CRLF CRLF)"
        }
        ParseErrorKind::BadContentLength(_) | ParseErrorKind::ConflictingContentLength => {
            "Content-Length must be one decimal number of body bytes"
        }
        ParseErrorKind::BodyTooShort { .. } => {
            "fix Content-Length to the body's byte count, or remove the header to take the body as the rest of the input"
        }
    }
}

pub fn header_hint(e: &HeaderError) -> String {
    match e {
        HeaderError::Missing(name) => format!("add a {name} header to the message"),
        HeaderError::Malformed { name, .. } => {
            format!("fix the {name} value; see RFC 3261 §20 for its syntax")
        }
    }
}

fn compose_hint(e: &ComposeError) -> String {
    match e {
        ComposeError::BadUri { .. } => {
            "give a SIP URI such as sip:alice@a.example.com, optionally as `Name <URI>;tag=x`"
                .into()
        }
        ComposeError::BadMethod(_) => {
            "use INVITE, ACK, BYE, MESSAGE, UPDATE, OPTIONS, REGISTER, ...".into()
        }
        ComposeError::BadStatus(_) => "use a three-digit SIP status such as 200 or 486".into(),
        ComposeError::BadHeader(_) => "write extra headers as --header 'Subject: hello'".into(),
        ComposeError::NotARequest => "pass the request the response answers".into(),
        ComposeError::Request(e) => header_hint(e),
        ComposeError::NoDialog(_) => {
            "give a message of the established dialog: the 2xx response (UAC), or the ACK or a later request received (UAS)".into()
        }
    }
}

fn key_hint(e: &KeyError) -> &'static str {
    match e {
        KeyError::Read { .. } => "check the path and its permissions",
        KeyError::Write { .. } => "check that the output directory exists and is writable",
        KeyError::BadPsk { .. } => {
            "a PSK file is YAML with `id: TEXT`, `key: HEX` (16, 24 or 32 bytes) and optionally `uri: sip:...`"
        }
        KeyError::BadCert { .. } => {
            "give an X.509 certificate with an RSA, EC P-256 or ML-KEM key, PEM (-----BEGIN CERTIFICATE-----) or DER"
        }
        KeyError::BadCrl { .. } => {
            "give an X.509 CRL, PEM (-----BEGIN X509 CRL-----, e.g. from `openssl ca -gencrl`) or DER"
        }
        KeyError::BadIdentity { .. } => {
            "an identity is a directory with cert.pem and key.pem (PKCS#8, also passphrase-protected, or PKCS#1; PEM or DER), a PKCS#12 bundle (.p12/.pfx), or, where the command takes them, --key KEY --cert CERT"
        }
        KeyError::NeedKeyPassword { .. } => {
            "give --key-password-file FILE (the passphrase alone in a mode-0600 file), or run on a terminal to be asked"
        }
        KeyError::Generate(_) => "this is a bug; please report it with the command line",
        KeyError::Input(_) => "see `sipseal keys --help` for what each command takes",
        KeyError::BadPassword { .. } => {
            "a password file holds the password alone, or YAML with `password: TEXT` and optionally `uri: sip:...`"
        }
        KeyError::BadCsr { .. } => {
            "give a PKCS#10 request, PEM (-----BEGIN CERTIFICATE REQUEST-----, e.g. from `openssl req -new` or `sipseal keys generate --csr`) or DER"
        }
    }
}

fn envelope_hint(e: &EnvelopeError) -> &'static str {
    match e {
        EnvelopeError::NotRecipient => {
            "this key is not among the recipients; `sipseal inspect` lists them"
        }
        EnvelopeError::Decrypt => {
            "the message was altered in transit, or sealed with a different key of the same id; ask the sender to re-send"
        }
        EnvelopeError::Malformed(_) => {
            "the body must be a DER CMS ContentInfo (AuthEnvelopedData or EnvelopedData)"
        }
        EnvelopeError::Unsupported(_) => {
            "sipseal reads AES-GCM/AES-CBC content, RSA (OAEP, PKCS#1 v1.5), EC P-256 (ECDH, RFC 5753), ML-KEM (RFC 9629), password and AES key-wrap recipients"
        }
        EnvelopeError::Recipient(_) => {
            "name each recipient with --peer CERT|password:FILE or --disclose CERT|psk:FILE|password:FILE: an RSA, EC P-256 or ML-KEM certificate, a PSK file, or a password file"
        }
        EnvelopeError::Key(_) => {
            "check the identity's key file: PKCS#8 or PKCS#1, PEM or DER, matching its certificate"
        }
        EnvelopeError::Encode(_) => "this is a bug; please report it with the command line",
    }
}

pub fn signature_hint(e: &SignatureError) -> &'static str {
    match e {
        SignatureError::Malformed(_) => {
            "the signature part must be a DER CMS ContentInfo holding SignedData"
        }
        SignatureError::Unsupported(_) => {
            "sipseal verifies SHA-256/384/512 with RSA PKCS#1 v1.5 or RSASSA-PSS"
        }
        SignatureError::NoSignerCert => {
            "SIP signatures must include the signer's certificate (RFC 3261 §23.2); sign with `openssl cms -sign` without -nocerts"
        }
        SignatureError::NoContent => {
            "give the signed content (for a SIP message, verify the whole multipart/signed body)"
        }
        SignatureError::Invalid(_) => {
            "the content or the signature was changed after signing; ask the sender to re-send"
        }
        SignatureError::Key(_) => {
            "check the identity's key file: an RSA key matching its certificate"
        }
    }
}

fn seal_hint(e: &SealError) -> String {
    match e {
        SealError::NoBody | SealError::NoContentType => {
            "build the message with a body, e.g. `sipseal build invite --sdp offer.sdp`".into()
        }
        SealError::AlreadySealed(_) => {
            "open it first (`sipseal open`), or seal the original message".into()
        }
        SealError::NotSealed(_) => "nothing to open; `sipseal inspect` shows the body".into(),
        SealError::SignedNotSealed(_) => {
            "nothing to open: `sipseal verify --trust DIR` checks the signature, `sipseal inspect` shows the body".into()
        }
        SealError::NoUri(_) => {
            "a relay needs a certificate with a SAN URI, or a PSK file with `uri: sip:...`".into()
        }
        SealError::Duplicate(_) => "name each recipient once".into(),
        SealError::Header(e) => header_hint(e),
        SealError::Unrecognised(_) => {
            "give a SIP message, a MIME entity (Content-Type: application/pkcs7-mime), or DER/PEM CMS".into()
        }
        SealError::TransferEncoding { .. } => {
            "SIP bodies are binary; check the Content-Transfer-Encoding header".into()
        }
        SealError::Envelope(e) => envelope_hint(e).into(),
        SealError::Signature(e) => signature_hint(e).into(),
        SealError::Signing(e) => signing_hint(e),
        SealError::NotMultipart(_) => {
            "--disclose-part picks parts of a multipart body by Content-ID; seal a single body without it".into()
        }
        SealError::NoSuchPart { .. } => {
            "give the Content-ID of one of the parts, without angle brackets (`sipseal inspect` lists them)".into()
        }
    }
}

fn signing_hint(e: &SigningError) -> String {
    match e {
        SigningError::NoBody => "build the message with a body (and seal it) before signing".into(),
        SigningError::AlreadySigned => {
            "sign the message once; a relay that re-seals re-signs with `sipseal reencrypt`".into()
        }
        SigningError::Missing(_) => "build the message with `sipseal build`".into(),
        SigningError::Header(e) => header_hint(e),
        SigningError::Mime(_) | SigningError::Malformed(_) => {
            "the body must be multipart/signed with two parts: the signed entity and an application/pkcs7-signature".into()
        }
        SigningError::Signature(e) => signature_hint(e).into(),
    }
}

fn relay_hint(e: &RelayError) -> String {
    match e {
        RelayError::Header(e) => header_hint(e),
        RelayError::Compose(e) => compose_hint(e),
        RelayError::Open(e) | RelayError::Seal(e) => seal_hint(e),
        RelayError::NoVia => "a response must carry the Via of the request it answers".into(),
        RelayError::NoIdentity => {
            "give this relay's --identity DIR: it signs what it re-seals under an outer signature".into()
        }
        RelayError::NotOurs(_) => {
            "a relay forwards only responses to requests it forwarded: give the response as it came back, with this relay's Via on top, and the same --via and --state as for the request".into()
        }
        RelayError::MalformedResponse(_) => {
            "nothing was forwarded: a relay drops a malformed response (RFC 4475); `sipseal inspect` shows what is wrong with it".into()
        }
        RelayError::EditRefused(_) => {
            "only a relay designated with access=modify (or sealed to as the next hop) may edit or re-seal; forward it with `sipseal proxy` and no edit options".into()
        }
        RelayError::Edit(_) | RelayError::NotUtf8 => {
            "check --set-connection ADDR and --set-port STREAM=PORT against the SDP".into()
        }
        RelayError::Reseal(_) => {
            "re-sealing needs every recipient's certificate (--certs DIR) or PSK (--psk FILE)".into()
        }
        RelayError::Signature(_) => {
            "the body was changed after it was signed; do not forward it, ask the sender to re-send".into()
        }
        RelayError::Signing(e) => signing_hint(e),
        RelayError::NoCallId(_) => {
            "pinholes are kept per call: the message needs a Call-ID".into()
        }
        RelayError::Store(e) => store_hint(e).into(),
        RelayError::Firewall(_) => {
            "check that nft runs here as root (CAP_NET_ADMIN) and that table inet sipseal and its sets are sipseal's (`nft list table inet sipseal`)".into()
        }
    }
}

fn ua_hint(e: &UaError) -> String {
    match e {
        UaError::Seal(e) => seal_hint(e),
        UaError::Store(e) => store_hint(e).into(),
        UaError::Compose(e) => compose_hint(e),
        UaError::UnknownSessionKey(_) => {
            "open the session's first message (or the last rekey) with this --state first; `sipseal session list` shows the stored keys. A UAS answers such a request with 493 Undecipherable".into()
        }
        UaError::NoSession(_) => {
            "seal the session's first message with `sipseal seal --peer CERT` (or open the one you received) with the same --state".into()
        }
        UaError::Dialog(e) => header_hint(e),
        UaError::NotInDialog(_) => {
            "give a message of a dialog this --identity takes part in".into()
        }
        UaError::AckWithoutInvite { .. } => "give the 2xx response to the INVITE".into(),
        UaError::InnerSignature(e) => signature_hint(e).into(),
        UaError::InnerUntrusted { .. } => {
            "see `sipseal verify --identity` for the whole report; check --trust and the clock (--now)".into()
        }
    }
}

fn store_hint(e: &StoreError) -> &'static str {
    match e {
        StoreError::Io { .. } => "check that the state directory exists and is writable by you",
        StoreError::Corrupt { .. } => {
            "nothing was changed; move the file aside (or repair it) and run again"
        }
    }
}

#[cfg(all(feature = "record", feature = "live", target_os = "linux"))]
fn packet_hint(e: &sipseal::net::packet::PacketError) -> &'static str {
    use sipseal::net::packet::PacketError;
    match e {
        PacketError::NoSuchInterface(_) => {
            "give an interface `ip -brief link` lists (the one the copies arrive on: the nftables `dup to ... device`, the mirror port)"
        }
        PacketError::Permission(_) => {
            "run as root, or give the binary the capability: setcap cap_net_raw+ep \"$(command -v sipseal)\""
        }
        PacketError::Io { .. } => "check the interface is up (`ip link set IFACE up`)",
    }
}

#[cfg(feature = "record")]
fn record_hint(e: &sipseal::record::RecordError) -> &'static str {
    use sipseal::record::RecordError;
    use sipseal::record::srtp::KeyError;
    match e {
        RecordError::Report { .. } => {
            "give the JSON-lines report of `relay --report FILE` (or `proxy --report FILE --report-format json`), one JSON object a line"
        }
        RecordError::Key { err, .. } => match err {
            KeyError::UnknownSuite(_) => {
                "sipseal records AES_CM_128_HMAC_SHA1_80/_32, AES_256_CM_HMAC_SHA1_80/_32, AEAD_AES_128_GCM and AEAD_AES_256_GCM; this call used another suite"
            }
            KeyError::Mki(_) => {
                "keys with an MKI (`|1:4`) cannot be recorded yet; leave --call of this call out to record the others"
            }
            KeyError::BadParams { .. } => {
                "the report's a=crypto key is damaged: it must be inline:BASE64 of the suite's key and salt, then |LIFETIME"
            }
        },
        RecordError::NoSuchCall(_) => {
            "give a Call-ID that the report has (each line's call_id), or leave --call out to record every call"
        }
        RecordError::Capture(_) => {
            "give a pcap or pcapng file as tcpdump -w, dumpcap or tshark -w write it"
        }
    }
}
