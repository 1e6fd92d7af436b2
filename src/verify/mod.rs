//! `verify` as a pure function: every signature on a message, and its
//! Route-Security chain, checked into a report (docs/SPEC.md §3.3, §3.4).
//!
//! Per signature: the signature itself, the certificate chain to the trust
//! anchors, validity at the given time, key usage, whether the signer may
//! sign this message (its SAN URI is the From AOR, or a relay the UA-signed
//! original designated with `access=modify`), and for an outer signature
//! whether the signed sipfrag matches the outer headers.

mod route;

use rand::CryptoRng;
use serde::Serialize;

pub use route::verify_route;
use time::OffsetDateTime;

use crate::context::rfc3339;
use crate::envelope::signed::{SignatureError, Signer};
use crate::envelope::{Envelope, RecipientKey};
use crate::keys::Cert;
use crate::keys::crl::{Crl, check_revocation};
use crate::keys::trust::{
    TrustError, check_chain, check_signing_usage, check_validity, describe_usage,
};
use crate::mime::Entity;
use crate::sealing::{SealError, SealedInput, open_parsed, sealed_body};
use crate::signing::{
    InnerSignature, ORIGINAL_DESIGNATION, OuterSignature, PROTECTED, outer_signature, unwrap_inner,
    verify_signed,
};
use crate::sip::Message;
use crate::sip::disclosure::{Access, Designation, PROXY_INSPECT_BODY};
use crate::sip::route_security::RouteEntry;

/// What to verify against.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions<'a> {
    /// Trust anchors.
    pub anchors: &'a [Cert],
    /// When the certificates must be valid.
    pub at: OffsetDateTime,
    /// Fail when a link of the Route-Security chain is below this level.
    pub min_route_level: Option<u8>,
    /// The hop the message came from: the top Route-Security entry must name it.
    pub received_from: Option<&'a str>,
    /// CRLs given by the user (`verify --crl`): when `Some`, every
    /// certificate of a signer's path but the anchor must be checked
    /// against a current CRL of its issuer. CRLs a SignedData carries are
    /// consulted either way.
    pub crls: Option<&'a [Crl]>,
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`signature`, `chain`, `validity`, ...).
    pub check: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// Why.
    pub detail: String,
}

impl Check {
    pub(crate) fn pass(check: &'static str, detail: impl Into<String>) -> Check {
        Check {
            check,
            ok: true,
            detail: detail.into(),
        }
    }

    pub(crate) fn fail(check: &'static str, detail: impl Into<String>) -> Check {
        Check {
            check,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The checks of one signature.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureReport {
    /// `outer` (multipart/signed), `opaque` (a signed-data body) or `inner`
    /// (inside the envelope).
    pub kind: &'static str,
    /// The signer's SAN URI (or subject), once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// `ua` (the From party) or `relay` (a re-signature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// `rsa-pkcs1v15` or `rsa-pss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<&'static str>,
    /// The signing-time attribute (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_time: Option<String>,
    /// The checks, in the order run.
    pub checks: Vec<Check>,
}

impl SignatureReport {
    fn new(kind: &'static str) -> SignatureReport {
        SignatureReport {
            kind,
            signer: None,
            role: None,
            scheme: None,
            signing_time: None,
            checks: Vec::new(),
        }
    }

    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// The Route-Security chain and its checks.
#[derive(Debug, Clone, Serialize)]
pub struct RouteReport {
    /// The entries, top (newest) first, as on the wire.
    pub entries: Vec<RouteEntry>,
    /// The checks run on them.
    pub checks: Vec<Check>,
}

/// Everything `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Whether every check passed (exit 0).
    pub verified: bool,
    /// One report per signature found.
    pub signatures: Vec<SignatureReport>,
    /// The Route-Security chain, when present or asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_security: Option<RouteReport>,
    /// Checks about the message as a whole (e.g. that it is signed at all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

impl VerifyReport {
    /// A report from its parts; `verified` when every check passed.
    pub fn new(
        signatures: Vec<SignatureReport>,
        route_security: Option<RouteReport>,
        mut checks: Vec<Check>,
    ) -> VerifyReport {
        if signatures.is_empty() {
            checks.push(Check::fail(
                "signed",
                "the message carries no signature (no multipart/signed, signed-data body or inner signature)",
            ));
        }
        let verified = signatures.iter().all(SignatureReport::ok)
            && route_security
                .as_ref()
                .is_none_or(|r| r.checks.iter().all(|c| c.ok))
            && checks.iter().all(|c| c.ok);
        VerifyReport {
            verified,
            signatures,
            route_security,
            checks,
        }
    }

    /// The human-readable form.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let line = |out: &mut String, c: &Check| {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                if c.ok { "pass" } else { "FAIL" },
                c.check,
                c.detail
            );
        };
        for s in &self.signatures {
            let _ = write!(out, "{} signature", s.kind);
            if let Some(who) = &s.signer {
                let _ = write!(out, " by {who}");
            }
            if let Some(role) = s.role {
                let _ = write!(out, " ({role})");
            }
            out.push('\n');
            match (s.scheme, &s.signing_time) {
                (Some(scheme), Some(t)) => {
                    let _ = writeln!(out, "  {scheme}, signed {t}");
                }
                (Some(scheme), None) => {
                    let _ = writeln!(out, "  {scheme}, no signing time");
                }
                _ => {}
            }
            for c in &s.checks {
                line(&mut out, c);
            }
        }
        if let Some(r) = &self.route_security {
            // The path in the order it was taken: the caller's entry first.
            let chain: Vec<String> = r.entries.iter().rev().map(RouteEntry::describe).collect();
            let _ = writeln!(out, "route-security: {}", chain.join(" -> "));
            for c in &r.checks {
                line(&mut out, c);
            }
        }
        for c in &self.checks {
            line(&mut out, c);
        }
        let failed = self
            .signatures
            .iter()
            .flat_map(|s| &s.checks)
            .chain(self.route_security.iter().flat_map(|r| &r.checks))
            .chain(&self.checks)
            .filter(|c| !c.ok)
            .count();
        if self.verified {
            out.push_str("verified\n");
        } else {
            let _ = writeln!(out, "NOT verified: {failed} check(s) failed");
        }
        out
    }
}

/// The certificate checks shared by every signature kind: chain to the
/// anchors, revocation (with `--crl`, or CRLs the SignedData carries),
/// validity at `at`, key usage.
pub fn certificate_checks(
    signer: &Signer,
    carried: &[Cert],
    carried_crls: &[&Crl],
    opts: &VerifyOptions<'_>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let cert = &signer.cert;
    let path = match check_chain(cert, carried, opts.anchors) {
        Ok(path) => {
            let names: Vec<String> = path.iter().map(Cert::name).collect();
            checks.push(Check::pass(
                "chain",
                format!("{} (trust anchor)", names.join(" <- issued by ")),
            ));
            if opts.crls.is_some() || !carried_crls.is_empty() {
                let crls: Vec<&Crl> = opts
                    .crls
                    .into_iter()
                    .flatten()
                    .chain(carried_crls.iter().copied())
                    .collect();
                checks.push(
                    match check_revocation(&path, &crls, opts.at, opts.crls.is_some()) {
                        Ok(detail) => Check::pass("revocation", detail),
                        Err(e) => Check::fail("revocation", e.to_string()),
                    },
                );
            }
            path
        }
        Err(e) => {
            let why = match &e {
                TrustError::UnknownIssuer { .. } => format!("{e}: wrong trust anchor?"),
                _ => e.to_string(),
            };
            checks.push(Check::fail("chain", why));
            vec![cert.clone()]
        }
    };
    let expired: Vec<String> = path
        .iter()
        .filter_map(|c| check_validity(c, opts.at).err())
        .map(|e| e.to_string())
        .collect();
    if expired.is_empty() {
        checks.push(Check::pass(
            "validity",
            format!("valid at {}", rfc3339(opts.at)),
        ));
    } else {
        checks.push(Check::fail("validity", expired.join("; ")));
    }
    // What the certificate has, not what is wanted of it.
    let usage = describe_usage(cert);
    match check_signing_usage(cert) {
        Ok(()) => checks.push(Check::pass("key usage", usage)),
        Err(e) => checks.push(Check::fail("key usage", format!("{e} (it has: {usage})"))),
    }
    checks
}

fn describe_signer(report: &mut SignatureReport, signer: &Signer) {
    report.signer = Some(signer.cert.name());
    report.scheme = Some(signer.scheme.name());
    report.signing_time = signer.signing_time.map(rfc3339);
}

/// Whether two SIP URIs name the same party (scheme and host without case).
fn same_uri(a: &str, b: &str) -> bool {
    let split = |u: &str| {
        let (scheme, rest) = u.split_once(':').unwrap_or(("", u));
        let rest = rest.split([';', '?']).next().unwrap_or(rest);
        let (user, host) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_owned()), h.to_ascii_lowercase()),
            None => (None, rest.to_ascii_lowercase()),
        };
        (scheme.to_ascii_lowercase(), user, host)
    };
    split(a) == split(b)
}

/// Who may sign: the From party, or a relay the original designated with
/// `access=modify` (`designations` are the UA-signed original's).
fn signer_check(
    report: &mut SignatureReport,
    signer: &Signer,
    msg: &Message,
    designations: &[String],
) -> Check {
    let Some(uri) = signer.cert.uri() else {
        return Check::fail(
            "signer",
            format!(
                "the certificate of {} has no SAN URI",
                signer.cert.subject()
            ),
        );
    };
    // The sender: From for a request, To for a response (its UAS).
    let sender = msg.sender_header();
    let from = msg.aor(sender).unwrap_or_default();
    if same_uri(&uri, from) {
        report.role = Some("ua");
        return Check::pass("signer", format!("the SAN URI {uri} is the {sender} AOR"));
    }
    let named: Vec<Designation> = designations
        .iter()
        .filter_map(|d| Designation::parse(d).ok())
        .filter(|d| same_uri(&d.uri, &uri))
        .collect();
    match named
        .iter()
        .map(|d| d.access)
        .max_by_key(|a| *a == Access::Modify)
    {
        Some(Access::Modify) => {
            report.role = Some("relay");
            Check::pass(
                "signer",
                format!("{uri} is a relay the UA-signed original designated with access=modify"),
            )
        }
        Some(Access::Read) => {
            report.role = Some("relay");
            Check::fail(
                "signer",
                format!(
                    "{uri} re-signed, but the original designated it access=read only: it may not modify"
                ),
            )
        }
        None => Check::fail(
            "signer",
            format!(
                "the signer {uri} is neither the {sender} AOR {from} nor a relay designated with access=modify"
            ),
        ),
    }
}

/// The checks of an outer signature.
pub fn verify_outer(
    msg: &Message,
    outer: &OuterSignature,
    opts: &VerifyOptions<'_>,
) -> SignatureReport {
    let mut report = SignatureReport::new("outer");
    let signer = match outer.verify() {
        Ok(mut signers) => signers.pop(),
        Err(e) => {
            report.checks.push(signature_failure(&e));
            None
        }
    };
    if let Some(signer) = &signer {
        describe_signer(&mut report, signer);
        report.checks.push(Check::pass(
            "signature",
            "the detached SignedData verifies over the signed part",
        ));
        let carried = crate::envelope::signed::Signed::parse(&outer.signature).ok();
        let certs = carried.as_ref().map_or(&[][..], |s| &s.certs[..]);
        let crls = carried.as_ref().map(|s| s.crls()).unwrap_or_default();
        report
            .checks
            .extend(certificate_checks(signer, certs, &crls, opts));
        let designations = outer.original_designations();
        let check = signer_check(&mut report, signer, msg, &designations);
        report.checks.push(check);
    }
    report.checks.push(headers_check(msg, outer));
    report
}

fn signature_failure(e: &SignatureError) -> Check {
    Check::fail("signature", e.to_string())
}

/// The sipfrag against the outer headers: each protected header equal, and
/// the same `Proxy-Inspect-Body` entries (none added, removed or changed).
pub fn headers_check(msg: &Message, outer: &OuterSignature) -> Check {
    if outer.sipfrag.is_none() {
        let designated = !msg.header_list(PROXY_INSPECT_BODY).is_empty();
        return if designated {
            Check::fail(
                "headers",
                "no message/sipfrag: the Proxy-Inspect-Body headers are not protected",
            )
        } else {
            Check::pass("headers", "no message/sipfrag: only the body is signed")
        };
    }
    let mut problems = Vec::new();
    for name in PROTECTED {
        match (msg.header(name), outer.sipfrag_header(name)) {
            (Some(a), Some(b)) if a.trim() == b.trim() => {}
            (Some(a), Some(b)) => problems.push(format!("{name} is {a:?}, signed {b:?}")),
            (None, Some(_)) => problems.push(format!("{name} is missing (it was signed)")),
            (_, None) => problems.push(format!("{name} is not in the sipfrag")),
        }
    }
    let norm = |v: &str| {
        Designation::parse(v)
            .map(|d| d.to_value())
            .unwrap_or_else(|_| v.trim().to_owned())
    };
    let outside: Vec<String> = msg
        .header_list(PROXY_INSPECT_BODY)
        .into_iter()
        .map(norm)
        .collect();
    let signed: Vec<String> = outer
        .sipfrag_list(PROXY_INSPECT_BODY)
        .iter()
        .map(|v| norm(v))
        .collect();
    for d in &outside {
        if !signed.contains(d) {
            problems.push(format!(
                "Proxy-Inspect-Body {d} was not signed (added or changed)"
            ));
        }
    }
    for d in &signed {
        if !outside.contains(d) {
            problems.push(format!(
                "Proxy-Inspect-Body {d} was signed but is missing (removed or changed)"
            ));
        }
    }
    if problems.is_empty() {
        let n = outside.len();
        let originals = outer.sipfrag_list(ORIGINAL_DESIGNATION).len();
        let mut detail = format!(
            "From, To, Call-ID, CSeq, Date and {n} Proxy-Inspect-Body match the signed sipfrag"
        );
        if originals > 0 {
            detail.push_str(&format!(" ({originals} original designation(s) carried)"));
        }
        Check::pass("headers", detail)
    } else {
        Check::fail("headers", problems.join("; "))
    }
}

/// The checks of an inner (or opaque) signature: it is always the UA's.
pub fn verify_inner(
    kind: &'static str,
    msg: Option<&Message>,
    inner: &Result<InnerSignature, SignatureError>,
    opts: &VerifyOptions<'_>,
) -> SignatureReport {
    let mut report = SignatureReport::new(kind);
    match inner {
        Err(e) => report.checks.push(signature_failure(e)),
        Ok(inner) => {
            describe_signer(&mut report, &inner.signer);
            report.checks.push(Check::pass(
                "signature",
                "the SignedData verifies over its content",
            ));
            report.checks.extend(certificate_checks(
                &inner.signer,
                &inner.certs,
                &inner.crls.iter().collect::<Vec<_>>(),
                opts,
            ));
            if let Some(msg) = msg {
                let check = signer_check(&mut report, &inner.signer, msg, &[]);
                report.checks.push(check);
            }
        }
    }
    report
}

/// Verify everything `msg` carries (docs/SPEC.md §3.3, §3.4): the outer
/// signature, an opaque signed-data body, and, when `keys` can open the
/// sealed body, the inner signature; and the Route-Security chain.
pub fn verify_message<R: CryptoRng + ?Sized>(
    msg: &Message,
    keys: &[RecipientKey<'_>],
    opts: &VerifyOptions<'_>,
    rng: &mut R,
) -> VerifyReport {
    let mut signatures = Vec::new();
    let mut checks = Vec::new();
    let signed = match outer_signature(msg) {
        Ok(Some(outer)) => {
            signatures.push(verify_outer(msg, &outer, opts));
            let mut m = msg.clone();
            m.replace_body(&outer.payload.headers, outer.payload.body);
            m
        }
        Ok(None) => msg.clone(),
        Err(e) => {
            checks.push(Check::fail("structure", e.to_string()));
            msg.clone()
        }
    };
    // An opaque signed-data body (signed, not sealed).
    let opaque = signed
        .header("Content-Type")
        .map(|ct| Entity {
            headers: vec![("Content-Type".into(), ct.to_owned())],
            body: signed.body().to_vec(),
        })
        .and_then(|e| unwrap_inner(&e));
    if let Some(result) = opaque {
        signatures.push(verify_inner("opaque", Some(msg), &result, opts));
    } else if !keys.is_empty()
        && let Ok(der) = sealed_body(&signed)
    {
        let opened = Envelope::parse(&der)
            .map_err(SealError::from)
            .and_then(|env| open_parsed(SealedInput::Cms(der.to_vec()), &env, keys, rng));
        match opened {
            Ok(opened) => match &opened.inner {
                Some(result) => signatures.push(verify_inner("inner", Some(msg), result, opts)),
                None => checks.push(Check::pass(
                    "inner",
                    "the sealed content carries no inner signature",
                )),
            },
            Err(e) => checks.push(Check::fail(
                "inner",
                format!("cannot open the sealed body to check an inner signature: {e}"),
            )),
        }
    }
    VerifyReport::new(signatures, verify_route(msg, opts), checks)
}

/// A bare SignedData (opaque, or detached over `content`): the signature
/// and the signer's certificate.
pub fn verify_cms(der: &[u8], content: Option<&[u8]>, opts: &VerifyOptions<'_>) -> VerifyReport {
    let report = verify_inner("cms", None, &verify_signed(der, content), opts);
    VerifyReport::new(vec![report], None, Vec::new())
}
