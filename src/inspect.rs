//! `inspect`: what a message is made of, with no key needed.

use std::fmt::Write as _;

use rand::CryptoRng;
use serde::Serialize;

use cms::enveloped_data::RecipientInfo;

use crate::envelope::kari;
use crate::envelope::recipient::{addressed_to_cert, addressed_to_kek};
use crate::envelope::{Envelope, EnvelopeInfo, RecipientKey};
use crate::keys::{Cert, Psk};
use crate::mime::{self, Part};
use crate::sdp::{Sdp, Stream};
use crate::sip::conformance::Malformed;
use crate::sip::disclosure::{Access, designations};
use crate::sip::headers::strip_angle;
use crate::sip::{Message, StartLine};

/// One header line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderLine {
    /// As written (compact forms stay compact).
    pub name: String,
    /// Unfolded value.
    pub value: String,
}

/// One media stream of an SDP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MediaSummary {
    /// `audio`, `video`, ...
    pub media: String,
    /// The `m=` port.
    pub port: u16,
    /// The `m=` transport (`RTP/AVP`, ...).
    pub protocol: String,
    /// The effective connection address (media-level, else session-level).
    pub address: Option<String>,
    /// Whether RTP and RTCP share the port (`a=rtcp-mux`).
    pub rtcp_mux: bool,
    /// SRTP crypto suites offered (`a=crypto`); keys are not shown here.
    pub crypto_suites: Vec<String>,
}

/// What an SDP body says about the media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SdpSummary {
    /// Every distinct connection address, in order of appearance.
    pub connection_addresses: Vec<String>,
    /// Each media stream, in `m=` order.
    pub media: Vec<MediaSummary>,
}

impl From<&Sdp> for SdpSummary {
    fn from(sdp: &Sdp) -> Self {
        // In first-seen order, each once; linear (a set beside the list).
        let mut connection_addresses: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let all = sdp
            .connection
            .iter()
            .chain(sdp.media.iter().filter_map(|m| m.connection.as_ref()));
        for c in all {
            if seen.insert(c.address.as_str()) {
                connection_addresses.push(c.address.clone());
            }
        }
        let media = sdp
            .media
            .iter()
            .map(|m| {
                let s = Stream::from(m);
                MediaSummary {
                    media: s.media,
                    port: s.port,
                    protocol: s.transport,
                    address: s.address,
                    rtcp_mux: s.rtcp_mux,
                    crypto_suites: m.crypto.iter().map(|c| c.suite.clone()).collect(),
                }
            })
            .collect();
        SdpSummary {
            connection_addresses,
            media,
        }
    }
}

/// One body part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartReport {
    /// The Content-Type, as written.
    pub content_type: Option<String>,
    /// Its header lines.
    pub headers: Vec<HeaderLine>,
    /// Content bytes (0 for a multipart; see `parts`).
    pub length: usize,
    /// What an `application/sdp` part says about the media.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp: Option<SdpSummary>,
    /// Why an `application/sdp` part could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp_error: Option<String>,
    /// The CMS envelope of an `application/pkcs7-mime` part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cms: Option<EnvelopeInfo>,
    /// Why a pkcs7-mime part could not be read as an envelope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cms_error: Option<String>,
    /// The SignedData of a signature part or a signed-data body (not
    /// verified here: that is `sipseal verify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed: Option<SignedSummary>,
    /// The parts of a multipart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartReport>,
}

/// What a SignedData says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedSummary {
    /// Whether the content is left out (multipart/signed).
    pub detached: bool,
    /// The type of what is signed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content_type: String,
    /// Each SignerInfo: who, with which algorithms, which attributes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signers: Vec<crate::envelope::signed::SignerSummary>,
    /// The certificates it carries, by SAN URI or subject.
    pub certificates: Vec<String>,
    /// The revocation information it carries (CRLs: version, issuer,
    /// updates, how many revoked), one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub crls: Vec<String>,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn signed_summary(der: &[u8]) -> SignedSummary {
    match crate::envelope::signed::Signed::parse(der) {
        Ok(s) => SignedSummary {
            detached: s.is_detached(),
            content_type: s.content_type_name(),
            signers: s.signers(),
            certificates: s.certs.iter().map(Cert::name).collect(),
            crls: s.revocation.iter().map(|r| r.describe()).collect(),
            error: None,
        },
        Err(e) => SignedSummary {
            detached: false,
            content_type: String::new(),
            signers: Vec::new(),
            certificates: Vec::new(),
            crls: Vec::new(),
            error: Some(e.to_string()),
        },
    }
}

/// One `Proxy-Inspect-Body` entry checked against the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesignationReport {
    /// The relay's URI.
    pub uri: String,
    /// The Content-ID of the part it may open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// What it may do.
    pub access: Access,
    /// The RecipientInfo of a known certificate or PSK with this URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<usize>,
}

/// Whether a given key can open the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyCheck {
    /// Who the key is.
    pub key: String,
    /// The RecipientInfo addressed to it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<usize>,
    /// Whether it opened (decrypted and authenticated) the content.
    pub opens: bool,
}

/// What `inspect` knows beyond the message: certificates and PSKs to name
/// recipients with, and keys to try.
#[derive(Default)]
pub struct Known<'a> {
    /// Certificates (recipients are matched by rid, no key needed).
    pub certs: Vec<&'a Cert>,
    /// PSKs (matched by kekid).
    pub psks: Vec<&'a Psk>,
    /// Keys to try opening with (`--identity`, `--psk`).
    pub keys: Vec<RecipientKey<'a>>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `request` or `response`.
    pub kind: &'static str,
    /// The start line as written.
    pub start_line: String,
    /// The method of a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The Request-URI of a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_uri: Option<String>,
    /// The status code of a response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Every header line, in order.
    pub headers: Vec<HeaderLine>,
    /// Content-Length as carried (the body's byte count).
    pub body_length: usize,
    /// The body, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<PartReport>,
    /// `Proxy-Inspect-Body` entries, checked against the recipients.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disclosure: Vec<DesignationReport>,
    /// For each key given: can it open the sealed body?
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyCheck>,
    /// Headers that are present but do not parse, and body problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Things that parse but look wrong (e.g. a designated relay without a RecipientInfo).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The first defect that makes the message malformed (RFC 3261 /
    /// RFC 4475): a relay answers such a request 400 and drops such a response.
    #[serde(skip)]
    pub malformed: Option<Malformed>,
    /// The whole message's size, against UDP's (RFC 3261 §18.1.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<SizeReport>,
}

/// A message's size against the 1,300 bytes RFC 3261 §18.1.1 allows on
/// UDP when the path MTU is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SizeReport {
    /// Bytes on the wire.
    pub bytes: usize,
    /// The limit ([`crate::sip::size::UDP_LIMIT`]).
    pub udp_limit: usize,
    /// Whether the top Via is UDP.
    pub udp: bool,
}

fn part_report(p: &Part) -> PartReport {
    let (sdp, sdp_error) = if p.is("application/sdp") {
        match std::str::from_utf8(&p.body)
            .map_err(|e| e.to_string())
            .and_then(|t| Sdp::parse(t).map_err(|e| e.to_string()))
        {
            Ok(sdp) => (Some(SdpSummary::from(&sdp)), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let signed_data = p
        .content_type
        .as_ref()
        .and_then(|c| c.param("smime-type"))
        .is_some_and(|t| t.eq_ignore_ascii_case("signed-data"));
    let signed = (p.is("application/pkcs7-signature")
        || p.is("application/x-pkcs7-signature")
        || signed_data)
        .then(|| signed_summary(&p.body));
    let (cms, cms_error) = if signed_data {
        (None, None)
    } else if p.is("application/pkcs7-mime") || p.is("application/x-pkcs7-mime") {
        match Envelope::parse(&p.body) {
            Ok(env) => (Some(env.describe()), None),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    PartReport {
        content_type: p.content_type.as_ref().map(|c| c.mime.clone()),
        headers: p
            .headers
            .iter()
            .map(|(n, v)| HeaderLine {
                name: n.clone(),
                value: v.clone(),
            })
            .collect(),
        length: p.body.len(),
        sdp,
        sdp_error,
        cms,
        cms_error,
        signed,
        parts: p.parts.iter().map(part_report).collect(),
    }
}

/// Inspect a parsed message. Never fails: what does not parse is listed
/// under `problems`.
pub fn inspect(msg: &Message) -> Report {
    let conformance = crate::sip::conformance::check(msg);
    let malformed = conformance.first().cloned();
    let mut problems: Vec<String> = conformance
        .errors
        .iter()
        .map(|e| e.detail.clone())
        .collect();
    problems.extend(conformance.remarks);
    let body = match mime::body_of(msg) {
        Ok(b) => b.as_ref().map(part_report),
        Err(e) => {
            problems.push(format!("body: {e}"));
            None
        }
    };
    let (kind, method, request_uri, status) = match msg.start_line() {
        StartLine::Request { method, uri } => {
            ("request", Some(method.clone()), Some(uri.clone()), None)
        }
        StartLine::Response { code, .. } => ("response", None, None, Some(*code)),
    };
    Report {
        kind,
        start_line: msg.start_line().to_string(),
        method,
        request_uri,
        status,
        headers: msg
            .headers()
            .iter()
            .map(|h| HeaderLine {
                name: h.name().to_owned(),
                value: h.value().to_owned(),
            })
            .collect(),
        body_length: msg.body().len(),
        body,
        disclosure: Vec::new(),
        keys: Vec::new(),
        problems,
        warnings: crate::sip::size::udp_size_warning(msg)
            .into_iter()
            .collect(),
        malformed,
        size: Some(SizeReport {
            bytes: msg.to_bytes().len(),
            udp_limit: crate::sip::size::UDP_LIMIT,
            udp: crate::sip::size::top_via_is_udp(msg),
        }),
    }
}

/// The sealed parts of a body tree, in order.
fn sealed_parts<'p>(p: &'p Part, out: &mut Vec<&'p Part>) {
    if p.is("application/pkcs7-mime") || p.is("application/x-pkcs7-mime") {
        out.push(p);
    }
    for sub in &p.parts {
        sealed_parts(sub, out);
    }
}

/// A sealed part: its Content-ID and its envelope, when it parses.
struct Sealed {
    content_id: Option<String>,
    envelope: Option<Envelope>,
}

/// Inspect a message and check its envelope against what is known: name
/// each RecipientInfo, match `Proxy-Inspect-Body` targets to recipients,
/// and try each given key.
pub fn inspect_with<R: CryptoRng + ?Sized>(
    msg: &Message,
    known: &Known<'_>,
    rng: &mut R,
) -> Report {
    let mut report = inspect(msg);
    let tree = mime::body_of(msg).ok().flatten();
    let mut found = Vec::new();
    if let Some(tree) = &tree {
        sealed_parts(tree, &mut found);
    }
    // A multipart body may hold several sealed parts (item 10): each
    // designation is checked against the part its cid names.
    let sealed: Vec<Sealed> = found
        .iter()
        .map(|p| Sealed {
            content_id: p.header("Content-ID").map(|v| strip_angle(v).to_owned()),
            envelope: Envelope::parse(&p.body).ok(),
        })
        .collect();
    if let Some(env) = sealed.first().and_then(|s| s.envelope.as_ref()) {
        check(&mut report, env, known, rng);
    }
    let part_for = |cid: &Option<String>| {
        sealed
            .iter()
            .find(|s| cid.is_some() && s.content_id == *cid)
            .or(sealed.first())
    };
    let parties = [msg.aor("To"), msg.aor("From")];
    let mut per_part = vec![0usize; sealed.len()];
    for d in designations(msg) {
        let d = match d {
            Ok(d) => d,
            Err(e) => {
                report.problems.push(format!("Proxy-Inspect-Body: {e}"));
                continue;
            }
        };
        if d.cid.is_some() && !sealed.iter().any(|s| s.content_id == d.cid) {
            let ids: Vec<&str> = sealed
                .iter()
                .map(|s| s.content_id.as_deref().unwrap_or("(none)"))
                .collect();
            report.warnings.push(format!(
                "Proxy-Inspect-Body for {} names cid {:?}, but the sealed part's Content-ID is {:?}",
                d.uri,
                d.cid.as_deref().unwrap_or_default(),
                if ids.is_empty() { "(none)".to_owned() } else { ids.join(", ") }
            ));
        }
        let target = part_for(&d.cid);
        if let Some(i) = target.and_then(|t| sealed.iter().position(|s| std::ptr::eq(s, t))) {
            per_part[i] += 1;
        }
        let envelope = target.and_then(|t| t.envelope.as_ref());
        let recipient = envelope.and_then(|env| recipient_with_uri(env, known, &d.uri));
        if let (Some(env), None) = (envelope, recipient)
            && named(env, known).iter().all(|(_, p)| p.is_some())
        {
            report.warnings.push(format!(
                "designated relay {} has no RecipientInfo: it cannot open the body (it would answer 496)",
                d.uri
            ));
        }
        report.disclosure.push(DesignationReport {
            uri: d.uri,
            cid: d.cid,
            access: d.access,
            recipient,
        });
    }
    for (s, designated) in sealed.iter().zip(per_part) {
        let Some(env) = &s.envelope else {
            continue;
        };
        // Which part the warning is about, when there are several.
        let which = match (&s.content_id, sealed.len()) {
            (Some(cid), 2..) => format!(" <{cid}>"),
            _ => String::new(),
        };
        let addressees = named(env, known);
        let keys = addressees.len();
        for (i, party) in addressees {
            let Some(uri) = party.and_then(|p| p.uri) else {
                continue;
            };
            let designated = report.disclosure.iter().any(|d| d.uri == uri);
            let party = parties.iter().flatten().any(|p| *p == uri);
            if !designated && !party {
                report.warnings.push(format!(
                    "recipient #{i} ({uri}) can open the body{which} but is neither designated by Proxy-Inspect-Body nor the From/To party"
                ));
            }
        }
        if keys < designated + 1 {
            report.warnings.push(format!(
                "{keys} recipient key(s) for {designated} designated relay(s) plus the peer{which}: someone cannot open it"
            ));
        }
    }
    report
}

/// A known party a RecipientInfo is addressed to.
struct Party {
    /// For reports: the certificate's URI or subject, or `PSK id (uri)`.
    label: String,
    /// Its SIP URI, when known.
    uri: Option<String>,
}

/// For each RecipientInfo, the known certificate or PSK it is addressed to.
/// One entry per key the RecipientInfos carry (a KeyAgreeRecipientInfo
/// carries one per RecipientEncryptedKey): the RecipientInfo's index and,
/// when known, whose key it is.
fn named(env: &Envelope, known: &Known<'_>) -> Vec<(usize, Option<Party>)> {
    let of_cert = |c: &Cert| Party {
        label: c.name(),
        uri: c.uri(),
    };
    let mut out = Vec::new();
    for (i, ri) in env.recipients.iter().enumerate() {
        if let RecipientInfo::Kari(k) = ri {
            for rek in &k.recipient_enc_keys {
                let cert = known.certs.iter().find(|c| kari::rid_names(&rek.rid, c));
                out.push((i, cert.map(|c| of_cert(c))));
            }
            continue;
        }
        if let Some(c) = known.certs.iter().find(|c| addressed_to_cert(ri, c)) {
            out.push((i, Some(of_cert(c))));
            continue;
        }
        let psk = known
            .psks
            .iter()
            .find(|p| addressed_to_kek(ri, &p.id_bytes()));
        out.push((
            i,
            psk.map(|p| Party {
                label: match &p.uri {
                    Some(u) => format!("PSK {} ({u})", p.id),
                    None => format!("PSK {}", p.id),
                },
                uri: p.uri.clone(),
            }),
        ));
    }
    out
}

fn recipient_with_uri(env: &Envelope, known: &Known<'_>, uri: &str) -> Option<usize> {
    named(env, known)
        .into_iter()
        .find(|(_, n)| n.as_ref().and_then(|p| p.uri.as_deref()) == Some(uri))
        .map(|(i, _)| i)
}

fn check<R: CryptoRng + ?Sized>(
    report: &mut Report,
    env: &Envelope,
    known: &Known<'_>,
    rng: &mut R,
) {
    if let Some(cms) = report.body.as_mut().and_then(first_cms) {
        let addressees = named(env, known);
        for (i, r) in cms.recipients.iter_mut().enumerate() {
            let labels: Vec<String> = addressees
                .iter()
                .filter(|(at, _)| *at == i)
                .filter_map(|(_, p)| p.as_ref().map(|p| p.label.clone()))
                .collect();
            r.matches = (!labels.is_empty()).then(|| labels.join(", "));
        }
    }
    for key in &known.keys {
        let one = std::slice::from_ref(key);
        let recipient = env.find(one).map(|(_, r)| r);
        let opens = recipient.is_some() && env.open(one, rng).is_ok();
        report.keys.push(KeyCheck {
            key: key.describe(),
            recipient,
            opens,
        });
    }
}

fn first_cms(p: &mut PartReport) -> Option<&mut EnvelopeInfo> {
    if p.cms.is_some() {
        return p.cms.as_mut();
    }
    p.parts.iter_mut().find_map(first_cms)
}

/// Inspect a bare CMS object (DER).
pub fn inspect_cms<R: CryptoRng + ?Sized>(der: &[u8], known: &Known<'_>, rng: &mut R) -> Report {
    let mut report = Report {
        kind: "cms",
        start_line: String::new(),
        method: None,
        request_uri: None,
        status: None,
        headers: Vec::new(),
        body_length: der.len(),
        body: None,
        disclosure: Vec::new(),
        keys: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
        malformed: None,
        size: None,
    };
    let (cms, mut cms_error, env) = match Envelope::parse(der) {
        Ok(env) => (Some(env.describe()), None, Some(env)),
        Err(e) => (None, Some(e.to_string()), None),
    };
    // Not an envelope, but a SignedData: say what it is instead.
    let signed = (env.is_none() && crate::envelope::signed::Signed::parse(der).is_ok())
        .then(|| signed_summary(der));
    if signed.is_some() {
        cms_error = None;
    }
    report.body = Some(PartReport {
        content_type: Some("application/pkcs7-mime".into()),
        headers: Vec::new(),
        length: der.len(),
        sdp: None,
        sdp_error: None,
        cms,
        cms_error,
        signed,
        parts: Vec::new(),
    });
    if let Some(env) = &env {
        check(&mut report, env, known, rng);
    }
    report
}

fn part_text(out: &mut String, p: &PartReport, indent: usize) {
    let pad = " ".repeat(indent);
    let ct = p.content_type.as_deref().unwrap_or("(no Content-Type)");
    if p.parts.is_empty() {
        let _ = writeln!(out, "{pad}part: {ct}, {} bytes", p.length);
    } else {
        let _ = writeln!(out, "{pad}part: {ct}, {} parts", p.parts.len());
    }
    for h in &p.headers {
        let _ = writeln!(out, "{pad}  {}: {}", h.name, h.value);
    }
    if let Some(sdp) = &p.sdp {
        let addrs = match sdp.connection_addresses.as_slice() {
            [] => "none".to_owned(),
            all => all.join(", "),
        };
        let _ = writeln!(out, "{pad}  sdp: connection {addrs}");
        for m in &sdp.media {
            let _ = write!(out, "{pad}    {} port {} {}", m.media, m.port, m.protocol);
            if let Some(a) = &m.address {
                let _ = write!(out, " at {a}");
            }
            if m.rtcp_mux {
                out.push_str(", rtcp-mux");
            }
            if !m.crypto_suites.is_empty() {
                let _ = write!(out, ", crypto {}", m.crypto_suites.join(" "));
            }
            out.push('\n');
        }
    }
    if let Some(e) = &p.sdp_error {
        let _ = writeln!(out, "{pad}  sdp: unreadable ({e})");
    }
    if let Some(c) = &p.cms {
        let kind = match c.content_type {
            crate::envelope::EnvelopeKind::AuthEnvelopedData => "authEnvelopedData",
            crate::envelope::EnvelopeKind::EnvelopedData => "envelopedData",
        };
        let _ = write!(out, "{pad}  cms: {kind} v{}, {}, ", c.version, c.cipher);
        match c.tag_length {
            Some(t) => {
                let _ = write!(out, "nonce {} bytes, tag {t} bytes", c.iv_length);
            }
            None => {
                let _ = write!(out, "IV {} bytes", c.iv_length);
            }
        }
        let _ = writeln!(
            out,
            ", {} bytes encrypted ({}), attributes {}/{}",
            c.encrypted_length, c.encrypted_content_type, c.auth_attributes, c.unauth_attributes
        );
        for r in &c.recipients {
            let id = r
                .rid
                .as_deref()
                .map(|x| format!(" rid {x},"))
                .or_else(|| r.kekid.as_deref().map(|k| format!(" kekid {k},")))
                .unwrap_or_default();
            let _ = write!(
                out,
                "{pad}    recipient #{}: {} v{}{id} {}",
                r.index, r.kind, r.version, r.algorithm
            );
            if let Some(m) = &r.matches {
                let _ = write!(out, " = {m}");
            }
            out.push('\n');
        }
    }
    if let Some(e) = &p.cms_error {
        let _ = writeln!(out, "{pad}  cms: unreadable ({e})");
    }
    if let Some(sd) = &p.signed {
        match &sd.error {
            Some(e) => {
                let _ = writeln!(out, "{pad}  signedData: unreadable ({e})");
            }
            None => {
                let _ = writeln!(
                    out,
                    "{pad}  signedData: {}, content {} (not verified: `sipseal verify`)",
                    if sd.detached { "detached" } else { "opaque" },
                    sd.content_type
                );
                for (i, si) in sd.signers.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{pad}    signer #{i}: {}{}",
                        si.sid,
                        si.certificate
                            .as_deref()
                            .map(|c| format!(" ({c})"))
                            .unwrap_or_default()
                    );
                    let _ = writeln!(
                        out,
                        "{pad}      digest {}, signature {}",
                        si.digest, si.signature
                    );
                    if !si.signed_attributes.is_empty() {
                        let _ = writeln!(
                            out,
                            "{pad}      signed attributes: {}",
                            si.signed_attributes.join(", ")
                        );
                    }
                    if !si.unsigned_attributes.is_empty() {
                        let _ = writeln!(
                            out,
                            "{pad}      unsigned attributes: {}",
                            si.unsigned_attributes.join(", ")
                        );
                    }
                }
                let _ = writeln!(
                    out,
                    "{pad}    certificates: {}",
                    if sd.certificates.is_empty() {
                        "none".to_owned()
                    } else {
                        sd.certificates.join(", ")
                    }
                );
                for crl in &sd.crls {
                    let _ = writeln!(out, "{pad}    crl: {crl}");
                }
            }
        }
    }
    for sub in &p.parts {
        part_text(out, sub, indent + 2);
    }
}

impl Report {
    /// The human-readable form.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if self.kind == "cms" {
            let _ = writeln!(out, "cms: {} bytes", self.body_length);
        } else {
            let _ = writeln!(out, "{}: {}", self.kind, self.start_line);
            let _ = writeln!(out, "headers:");
            for h in &self.headers {
                let _ = writeln!(out, "  {}: {}", h.name, h.value);
            }
            if let Some(size) = &self.size {
                let against = match (size.udp, size.bytes > size.udp_limit) {
                    (true, false) => format!("fits UDP's {}", size.udp_limit),
                    (true, true) => format!("over UDP's {}: send it over TCP", size.udp_limit),
                    (false, _) => format!("top Via not UDP; UDP allows {}", size.udp_limit),
                };
                let _ = writeln!(
                    out,
                    "size: {} bytes ({against}, RFC 3261 §18.1.1)",
                    size.bytes
                );
            }
        }
        match &self.body {
            Some(b) => {
                if self.kind != "cms" {
                    let _ = writeln!(out, "body: {} bytes", self.body_length);
                }
                part_text(&mut out, b, 2);
            }
            None => out.push_str("body: none\n"),
        }
        if !self.disclosure.is_empty() {
            out.push_str("disclosure:\n");
            for d in &self.disclosure {
                let to = d.recipient.map_or_else(
                    || "no known RecipientInfo".to_owned(),
                    |r| format!("RecipientInfo #{r}"),
                );
                let _ = writeln!(out, "  {} access={}: {to}", d.uri, d.access.as_str());
            }
        }
        for k in &self.keys {
            let _ = match (k.recipient, k.opens) {
                (Some(r), true) => writeln!(out, "key {}: RecipientInfo #{r}, opens", k.key),
                (Some(r), false) => writeln!(
                    out,
                    "key {}: RecipientInfo #{r}, does NOT open (decryption failed)",
                    k.key
                ),
                (None, _) => writeln!(out, "key {}: not a recipient", k.key),
            };
        }
        for p in &self.problems {
            let _ = writeln!(out, "problem: {p}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        escape_controls(&out)
    }
}

/// `text` with every control character but the line breaks written as
/// `\xNN` (`\u{NNNN}` above U+00FF): what a message carries must not
/// drive the terminal it is shown on.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push(c),
            c if c.is_control() && (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_in_text() {
        let raw =
            b"OPTIONS sip:u@example.com SIP/2.0\r\nSubject: \x1b]0;pwned\x07 \x7f\r\nl: 0\r\n\r\n";
        let text = inspect(&Message::parse(raw).unwrap()).to_text();
        assert!(text.contains("Subject: \\x1b]0;pwned\\x07 \\x7f"), "{text}");
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'));
    }

    #[test]
    fn reports_sdp_streams_and_problems() {
        let sdp = include_bytes!("../samples/offer.sdp");
        let mut raw = b"INVITE sip:bob@b.example.com SIP/2.0\r\nCSeq: x INVITE\r\nContent-Type: application/sdp\r\n\r\n".to_vec();
        raw.extend_from_slice(sdp);
        let r = inspect(&Message::parse(&raw).unwrap());
        assert_eq!(r.method.as_deref(), Some("INVITE"));
        let s = r.body.as_ref().unwrap().sdp.as_ref().unwrap();
        assert_eq!(s.connection_addresses, ["192.0.2.10", "192.0.2.11"]);
        assert_eq!(s.media[1].crypto_suites, ["AES_CM_128_HMAC_SHA1_80"]);
        assert!(r.problems.iter().any(|p| p.contains("CSeq")));
        assert!(r.problems.iter().any(|p| p.contains("missing Call-ID")));
        assert!(r.malformed.is_some());
        assert!(
            r.to_text()
                .contains("audio port 49170 RTP/SAVP at 192.0.2.10, rtcp-mux")
        );
    }
}
