//! SIP Digest authentication (RFC 3261 §22, RFC 8760): the registrar's
//! challenge and check, and the user agent's answer.
//!
//! ```text
//! HA1      = H(username ":" realm ":" password)        -- stored, never the password
//! HA2      = H(method ":" digest-uri)                  -- qop=auth
//! response = H(HA1 ":" nonce ":" nc ":" cnonce ":" "auth" ":" HA2)
//! ```
//!
//! H is SHA-512-256 or SHA-256 (RFC 8760), or MD5 for old clients when the
//! registrar allows it. Header parsing and the hashes come from the
//! `digest_auth` crate. A nonce is the time it was made and an HMAC over
//! that time, 8 random bytes and the realm, keyed by the registrar's secret
//! (two challenges in one second get different nonces): the registrar
//! recognises its own nonces without storing them, and one older than the
//! nonce lifetime is stale (`401` with `stale=true`). The nonce counts a
//! client has used are kept until the nonce expires, so a replayed
//! (nonce, nc) pair is refused.

use base64::Engine as _;
use digest_auth::{Algorithm, AlgorithmType};
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

/// A Digest algorithm the registrar offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    /// SHA-512/256 (RFC 8760), offered first.
    Sha512_256,
    /// SHA-256 (RFC 8760).
    Sha256,
    /// MD5 (RFC 3261), only with `--allow-md5`.
    Md5,
}

impl DigestAlgorithm {
    /// Every algorithm, strongest first (the order challenges are sent in).
    pub const ALL: [DigestAlgorithm; 3] = [
        DigestAlgorithm::Sha512_256,
        DigestAlgorithm::Sha256,
        DigestAlgorithm::Md5,
    ];

    /// What a registrar challenges with unless told otherwise: SHA-512-256,
    /// then SHA-256 (RFC 8760); MD5 only when an operator lists it.
    pub const DEFAULT: [DigestAlgorithm; 2] =
        [DigestAlgorithm::Sha512_256, DigestAlgorithm::Sha256];

    /// The token in WWW-Authenticate and Authorization.
    pub fn token(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha512_256 => "SHA-512-256",
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Md5 => "MD5",
        }
    }

    /// The algorithm a token names (case-insensitive; absent means MD5).
    pub fn from_token(token: &str) -> Option<DigestAlgorithm> {
        DigestAlgorithm::ALL
            .into_iter()
            .find(|a| a.token().eq_ignore_ascii_case(token))
    }

    fn crate_algorithm(self) -> Algorithm {
        let kind = match self {
            DigestAlgorithm::Sha512_256 => AlgorithmType::SHA2_512_256,
            DigestAlgorithm::Sha256 => AlgorithmType::SHA2_256,
            DigestAlgorithm::Md5 => AlgorithmType::MD5,
        };
        Algorithm::new(kind, false)
    }

    /// H(data) in lowercase hex.
    pub fn hash(self, data: &str) -> String {
        self.crate_algorithm().hash_str(data)
    }

    /// H(bytes), as hex: the body hash of auth-int.
    pub fn hash_bytes(self, data: &[u8]) -> String {
        self.crate_algorithm().hash(data)
    }

    /// HA1 = H(username:realm:password), what the credential file keeps.
    pub fn ha1(self, username: &str, realm: &str, password: &str) -> String {
        self.hash(&format!("{username}:{realm}:{password}"))
    }
}

/// The fields of an Authorization header the check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The Digest username.
    pub username: String,
    /// The realm.
    pub realm: String,
    /// The nonce the client answers.
    pub nonce: String,
    /// The digest-uri.
    pub uri: String,
    /// The algorithm.
    pub algorithm: DigestAlgorithm,
    /// The nonce count.
    pub nc: u32,
    /// `auth`, or `auth-int` (the body is covered too).
    pub qop: Qop,
    /// The client nonce.
    pub cnonce: String,
    /// The response digest (hex).
    pub response: String,
}

/// The quality of protection of a Digest response (RFC 2617 §3.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// The method and digest-uri.
    Auth,
    /// Those and the body (`auth-int`): a captured Authorization cannot
    /// carry another body (another CSR).
    AuthInt,
}

impl Qop {
    fn token(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// Why an Authorization header is not one the registrar can check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// It does not parse as Digest credentials.
    #[error("the Authorization header is not Digest credentials: {0}")]
    Malformed(String),
    /// It parses, but uses what the registrar does not accept.
    #[error("{0}")]
    Unsupported(String),
}

/// digest_auth's parser takes a character's position for its byte offset
/// and panics on a multi-byte character: only ASCII reaches it (sipseal
/// reads no `username*`, RFC 7616 §3.4.4, which is what would need more).
fn ascii(value: &str, what: &str) -> Result<(), DigestError> {
    if value.is_ascii() {
        Ok(())
    } else {
        Err(DigestError::Malformed(format!(
            "{what}: not ASCII (sipseal reads usernames as they are, not username*)"
        )))
    }
}

/// Read the Digest credentials of an Authorization header value.
pub fn parse_authorization(value: &str) -> Result<Credentials, DigestError> {
    ascii(value, "Authorization")?;
    let header = digest_auth::AuthorizationHeader::parse(value)
        .map_err(|e| DigestError::Malformed(e.to_string()))?;
    if header.algorithm.sess {
        return Err(DigestError::Unsupported(
            "a -sess Digest algorithm (give SHA-256 or SHA-512-256)".into(),
        ));
    }
    if header.userhash {
        return Err(DigestError::Unsupported(
            "userhash=true (send the username itself)".into(),
        ));
    }
    let algorithm = match header.algorithm.algo {
        AlgorithmType::SHA2_512_256 => DigestAlgorithm::Sha512_256,
        AlgorithmType::SHA2_256 => DigestAlgorithm::Sha256,
        AlgorithmType::MD5 => DigestAlgorithm::Md5,
    };
    // RFC 8760 and sipseal's challenges always ask for a qop.
    let qop = match header.qop {
        Some(digest_auth::Qop::AUTH) => Qop::Auth,
        Some(digest_auth::Qop::AUTH_INT) => Qop::AuthInt,
        None => {
            return Err(DigestError::Unsupported(
                "Digest without qop (the registrar asks for qop=auth or auth-int)".into(),
            ));
        }
    };
    let cnonce = header
        .cnonce
        .ok_or_else(|| DigestError::Malformed("a qop without a cnonce".into()))?;
    if header.nc == 0 {
        return Err(DigestError::Malformed(
            "nc=00000000: a nonce count starts at 1".into(),
        ));
    }
    Ok(Credentials {
        username: header.username,
        realm: header.realm,
        nonce: header.nonce,
        uri: header.uri,
        algorithm,
        nc: header.nc,
        qop,
        cnonce,
        response: header.response,
    })
}

/// The AOR `creds` authenticate as: `aor` and `ha1` are what the users
/// file holds for their username (its AOR, and its HA1 of their
/// algorithm), when it does. An unknown user, or one without an HA1 of
/// that algorithm, is checked against a made-up HA1 (from the
/// registrar's `secret`), so that the work and the answer are those of a
/// wrong password.
pub fn user_of(
    aor: Option<&str>,
    ha1: Option<&str>,
    creds: &Credentials,
    method: &str,
    body: &[u8],
    secret: &[u8],
) -> Option<String> {
    let decoy = creds
        .algorithm
        .hash(&format!("{}:{}", hex::encode(secret), creds.username));
    let matches = response_matches(creds, method, body, ha1.unwrap_or(decoy.as_str()));
    match (aor, ha1) {
        (Some(aor), Some(_)) if matches => Some(aor.to_owned()),
        _ => None,
    }
}

/// Whether `creds` answer the challenge for `method` (and, with
/// auth-int, `body`) with `ha1`, the stored HA1 of their algorithm; the
/// digests are compared in constant time.
pub fn response_matches(creds: &Credentials, method: &str, body: &[u8], ha1: &str) -> bool {
    let expected = expected_response(creds.algorithm, ha1, creds, method, body);
    let given = creds.response.to_ascii_lowercase();
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

fn expected_response(
    alg: DigestAlgorithm,
    ha1: &str,
    c: &Credentials,
    method: &str,
    body: &[u8],
) -> String {
    let ha2 = match c.qop {
        Qop::Auth => alg.hash(&format!("{method}:{}", c.uri)),
        Qop::AuthInt => alg.hash(&format!("{method}:{}:{}", c.uri, alg.hash_bytes(body))),
    };
    alg.hash(&format!(
        "{ha1}:{}:{:08x}:{}:{}:{ha2}",
        c.nonce,
        c.nc,
        c.cnonce,
        c.qop.token()
    ))
}

/// A WWW-Authenticate value challenging for `realm` with `nonce`; for a
/// request with a body (`integrity`), `qop="auth-int,auth"`: the body is
/// to be covered, and a response that does not cover it is challenged
/// again.
pub fn challenge(
    realm: &str,
    nonce: &str,
    alg: DigestAlgorithm,
    stale: bool,
    integrity: bool,
) -> String {
    format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"{}\"{}",
        alg.token(),
        if integrity { "auth-int,auth" } else { "auth" },
        if stale { ", stale=true" } else { "" }
    )
}

/// What a nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// The registrar's, and fresh: made at this Unix time.
    Fresh(i64),
    /// The registrar's, but older than the lifetime: challenge again
    /// with `stale=true` (the password was right).
    Stale,
    /// Not one of the registrar's.
    Foreign,
}

const NONCE_LABEL: &[u8] = b"sipseal registrar nonce v1";

fn nonce_mac(secret: &[u8], realm: &str, made: i64, salt: &[u8]) -> [u8; 16] {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC takes a key of any length");
    mac.update(NONCE_LABEL);
    mac.update(&made.to_be_bytes());
    mac.update(salt);
    mac.update(realm.as_bytes());
    let tag = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag[..16]);
    out
}

/// A nonce made now (Unix time `now`) for `realm`, under `secret`, with
/// 8 bytes of `salt` from the caller's RNG.
pub fn make_nonce(secret: &[u8], realm: &str, now: i64, salt: [u8; 8]) -> String {
    let mut bytes = now.to_be_bytes().to_vec();
    bytes.extend_from_slice(&salt);
    bytes.extend_from_slice(&nonce_mac(secret, realm, now, &salt));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Check a nonce: the registrar's own for `realm`, and younger than
/// `lifetime` seconds at `now`.
pub fn check_nonce(secret: &[u8], realm: &str, nonce: &str, now: i64, lifetime: i64) -> NonceState {
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(nonce) else {
        return NonceState::Foreign;
    };
    let Ok(bytes) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        return NonceState::Foreign;
    };
    let mut made = [0u8; 8];
    made.copy_from_slice(&bytes[..8]);
    let made = i64::from_be_bytes(made);
    let expected = nonce_mac(secret, realm, made, &bytes[8..16]);
    if !bool::from(expected.ct_eq(&bytes[16..])) {
        return NonceState::Foreign;
    }
    // Stale from the second its record may be forgotten (`expires <=
    // now`), never accepted in between.
    if made > now || now - made >= lifetime {
        NonceState::Stale
    } else {
        NonceState::Fresh(made)
    }
}

/// The user agent's side: the Authorization value answering the
/// WWW-Authenticate `challenge` for `method`, `uri` and `body` (covered
/// when the challenge offers auth-int and there is one), with `cnonce`
/// (from the caller's RNG, so that deterministic mode is reproducible).
pub fn answer(
    challenge: &str,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    body: &[u8],
    cnonce: &str,
) -> Result<String, DigestError> {
    ascii(challenge, "WWW-Authenticate")?;
    let mut prompt = digest_auth::WwwAuthenticateHeader::parse(challenge)
        .map_err(|e| DigestError::Malformed(format!("WWW-Authenticate: {e}")))?;
    let mut context = digest_auth::AuthContext::new(username, password, uri);
    if !body.is_empty() {
        context.body = Some(std::borrow::Cow::Borrowed(body));
    }
    context.method = digest_auth::HttpMethod::from(method.to_owned());
    context.set_custom_cnonce(cnonce);
    let header = prompt
        .respond(&context)
        .map_err(|e| DigestError::Malformed(format!("WWW-Authenticate: {e}")))?;
    Ok(header.to_header_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_8760_style_responses_match_an_independent_computation() {
        // Worked by hand with sha2 (not digest_auth): SHA-256 of the RFC 3261
        // §22.4 formula for known inputs.
        use sha2::Digest;
        let hex = |s: &str| hex::encode(sha2::Sha256::digest(s.as_bytes()));
        let ha1 = hex("alice:example.com:secret");
        let ha2 = hex("REGISTER:sip:example.com");
        let response = hex(&format!("{ha1}:n0nce:00000001:c0ffee:auth:{ha2}"));
        let creds = Credentials {
            username: "alice".into(),
            realm: "example.com".into(),
            nonce: "n0nce".into(),
            uri: "sip:example.com".into(),
            algorithm: DigestAlgorithm::Sha256,
            nc: 1,
            qop: Qop::Auth,
            cnonce: "c0ffee".into(),
            response: response.to_uppercase(),
        };
        assert_eq!(
            DigestAlgorithm::Sha256.ha1("alice", "example.com", "secret"),
            ha1
        );
        assert!(response_matches(&creds, "REGISTER", b"", &ha1));
        assert!(!response_matches(&creds, "INVITE", b"", &ha1));
        let wrong = DigestAlgorithm::Sha256.ha1("alice", "example.com", "Secret");
        assert!(!response_matches(&creds, "REGISTER", b"", &wrong));
    }

    #[test]
    fn rfc_7616_section_3_9_1_sha_256_example() {
        // The published example (an HTTP request; the computation is the
        // one SIP uses, RFC 8760 §2).
        let alg = DigestAlgorithm::Sha256;
        let ha1 = alg.ha1("Mufasa", "http-auth@example.org", "Circle of Life");
        let creds = Credentials {
            username: "Mufasa".into(),
            realm: "http-auth@example.org".into(),
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            uri: "/dir/index.html".into(),
            algorithm: alg,
            nc: 1,
            qop: Qop::Auth,
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ".into(),
            response: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1".into(),
        };
        assert!(response_matches(&creds, "GET", b"", &ha1));
        // Its Authorization header, as the RFC prints it, parses to the same.
        let header = "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        assert_eq!(parse_authorization(header).unwrap(), creds);
    }

    #[test]
    fn the_client_answer_is_what_the_check_accepts() {
        for alg in DigestAlgorithm::ALL {
            let c = challenge("example.com", "abc", alg, false, false);
            let auth = answer(
                &c,
                "bob",
                "pw",
                "REGISTER",
                "sip:example.com",
                b"",
                "0a1b2c3d",
            )
            .unwrap();
            let creds = parse_authorization(&auth).unwrap();
            assert_eq!(creds.algorithm, alg);
            assert_eq!((creds.nc, creds.cnonce.as_str()), (1, "0a1b2c3d"));
            let ha1 = alg.ha1("bob", "example.com", "pw");
            assert!(response_matches(&creds, "REGISTER", b"", &ha1), "{auth}");
        }
    }

    /// L1: with a body, the challenge offers auth-int, the client covers
    /// the body, and the check holds for that body only (worked by hand
    /// with sha2, as RFC 2617 §3.2.2.3 has it).
    #[test]
    fn auth_int_covers_the_body() {
        use sha2::Digest;
        let hex = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
        let alg = DigestAlgorithm::Sha256;
        let c = challenge("example.com", "abc", alg, false, true);
        assert!(c.contains("qop=\"auth-int,auth\""), "{c}");
        let csr = b"a CSR";
        let auth = answer(&c, "bob", "pw", "REGISTER", "sip:example.com", csr, "0a").unwrap();
        let creds = parse_authorization(&auth).unwrap();
        assert_eq!(creds.qop, Qop::AuthInt, "{auth}");
        let ha1 = alg.ha1("bob", "example.com", "pw");
        let ha2 = hex(format!("REGISTER:sip:example.com:{}", hex(csr)).as_bytes());
        let by_hand = hex(format!("{ha1}:abc:00000001:0a:auth-int:{ha2}").as_bytes());
        assert_eq!(creds.response, by_hand);
        assert!(response_matches(&creds, "REGISTER", csr, &ha1));
        assert!(!response_matches(&creds, "REGISTER", b"another CSR", &ha1));
        // nc=0 is no count.
        let zero = auth.replace("nc=00000001", "nc=00000000");
        assert!(matches!(
            parse_authorization(&zero),
            Err(DigestError::Malformed(_))
        ));
    }

    #[test]
    fn a_non_ascii_header_is_refused_not_a_panic() {
        // Fuzzing found it: digest_auth indexes bytes by char position, so
        // a multi-byte character before a `=` panicked, on the registrar
        // (Authorization) and on the client (WWW-Authenticate) alike.
        let value = "Digest usernameХ=\"a\", realm=\"example.com\", nonce=\"n\", uri=\"sip:example.com\", response=\"00\", qop=auth, nc=00000001, cnonce=\"c\"";
        assert!(matches!(
            parse_authorization(value),
            Err(DigestError::Malformed(_))
        ));
        let challenge = "Digest realmХ=\"example.com\", nonce=\"abc\", qop=\"auth\"";
        assert!(answer(challenge, "u", "p", "REGISTER", "sip:example.com", b"", "c").is_err());
    }

    #[test]
    fn nonces_are_recognised_expire_and_cannot_be_forged() {
        let secret = [7u8; 32];
        let n = make_nonce(&secret, "example.com", 1_000, [1; 8]);
        assert_ne!(n, make_nonce(&secret, "example.com", 1_000, [2; 8]));
        assert_eq!(
            check_nonce(&secret, "example.com", &n, 1_100, 300),
            NonceState::Fresh(1_000)
        );
        assert_eq!(
            check_nonce(&secret, "example.com", &n, 1_301, 300),
            NonceState::Stale
        );
        // Stale from the second its counts may be forgotten (the review
        // of issue 25: one second of replays).
        assert_eq!(
            check_nonce(&secret, "example.com", &n, 1_300, 300),
            NonceState::Stale
        );
        assert_eq!(
            check_nonce(&secret, "example.com", &n, 1_299, 300),
            NonceState::Fresh(1_000)
        );
        assert_eq!(
            check_nonce(&secret, "other.example", &n, 1_100, 300),
            NonceState::Foreign
        );
        assert_eq!(
            check_nonce(&[8u8; 32], "example.com", &n, 1_100, 300),
            NonceState::Foreign
        );
        // A nonce made "later" with the time bytes changed: the MAC fails.
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&n)
            .unwrap();
        raw[7] ^= 1;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(
            check_nonce(&secret, "example.com", &forged, 1_100, 300),
            NonceState::Foreign
        );
        assert_eq!(
            check_nonce(&secret, "example.com", "!!", 1_100, 300),
            NonceState::Foreign
        );
    }
}
