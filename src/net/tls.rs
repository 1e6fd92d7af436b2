//! Mutually authenticated TLS (docs/SPEC.md §7; the signaling channels of the
//! session-management design), by rustls on aws-lc-rs.
//!
//! Both ends present certificates chaining to the trust anchors, with the
//! serverAuth or clientAuth purpose. SIP certificates name their holder
//! by a SAN URI (`sip:proxy-a.a.example.com`), which the web-PKI name
//! check does not read, so the server's name is checked as RFC 5922 §7
//! says: its identities are the hosts of its `sip:`/`sips:` SAN URIs
//! without a user part and its dNSNames (the subject CN only when there
//! are neither); one must equal the SIP domain the request was routed to,
//! without wildcards. A client's certificate is checked for its chain and
//! purpose; who it names is the workflow's business (the peer's
//! certificate is handed to it).
//!
//! Key logging: with `SSLKEYLOGFILE` set, every configuration built here
//! and in `datachannel::tls` writes its TLS secrets to that file (NSS key
//! log format, rustls's [`rustls::KeyLogFile`]), so that tshark or
//! Wireshark can decrypt a capture. A debugging aid only: the file opens
//! every connection of the process to whoever reads it.

use std::ffi::OsStr;
use std::sync::{Arc, OnceLock};

use der::Encode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, KeyLog, RootCertStore, SignatureScheme};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use crate::keys::{Cert, Identity, KeyError};

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The identity's key cannot be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A certificate or key rustls refuses.
    #[error("TLS: {0}")]
    Rustls(String),
    /// A name that cannot be a TLS server name.
    #[error("TLS: {0}")]
    Name(String),
}

/// Both sides of TLS for one server or client: its certificate and key,
/// and the trust anchors its peers must chain to.
pub struct TlsSetup {
    server: Option<Arc<rustls::ServerConfig>>,
    client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("server", &self.server.is_some())
            .finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn rustls_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(e.to_string())
}

/// The environment variable that names the key log file (the convention
/// of NSS, OpenSSL, curl and browsers).
pub const KEY_LOG_VAR: &str = "SSLKEYLOGFILE";

/// Where this process's TLS secrets go: a key log when `SSLKEYLOGFILE`
/// is set and not empty, else nowhere (rustls's default). Decided once
/// per process, at the first configuration built.
pub fn key_log() -> Option<Arc<dyn KeyLog>> {
    static LOG: OnceLock<Option<Arc<dyn KeyLog>>> = OnceLock::new();
    LOG.get_or_init(|| key_log_for(std::env::var_os(KEY_LOG_VAR).as_deref()))
        .clone()
}

/// The key log for the variable's value `var`: none when unset or empty.
/// rustls's `KeyLogFile` reads the variable itself and opens the file it
/// names (appending, created 0600); when it cannot, it logs nothing.
fn key_log_for(var: Option<&OsStr>) -> Option<Arc<dyn KeyLog>> {
    let _path = logged_to(var)?;
    Some(Arc::new(rustls::KeyLogFile::new()))
}

/// The file the variable's value `var` names, when it names one.
fn logged_to(var: Option<&OsStr>) -> Option<&OsStr> {
    var.filter(|v| !v.is_empty())
}

/// The file this process logs its TLS secrets to, when [`key_log`] is
/// active: for a daemon's warning at start.
pub fn key_log_file() -> Option<std::path::PathBuf> {
    let var = std::env::var_os(KEY_LOG_VAR);
    logged_to(var.as_deref()).map(std::path::PathBuf::from)
}

/// Install `log` (when some) as the configuration's key log.
pub(crate) fn install_key_log(slot: &mut Arc<dyn KeyLog>, log: Option<Arc<dyn KeyLog>>) {
    if let Some(log) = log {
        *slot = log;
    }
}

impl TlsSetup {
    /// TLS with `identity` (needed to accept connections, and to present
    /// as a client) and the `trust` anchors for peers.
    pub fn new(identity: Option<&Identity>, trust: &[Cert]) -> Result<TlsSetup, TlsError> {
        TlsSetup::with_key_log(identity, trust, key_log())
    }

    /// [`TlsSetup::new`] logging its secrets to `log` when some.
    fn with_key_log(
        identity: Option<&Identity>,
        trust: &[Cert],
        log: Option<Arc<dyn KeyLog>>,
    ) -> Result<TlsSetup, TlsError> {
        let mut roots = RootCertStore::empty();
        for anchor in trust {
            let der = anchor.cert.to_der().map_err(rustls_err)?;
            roots.add(CertificateDer::from(der)).map_err(rustls_err)?;
        }
        let roots = Arc::new(roots);
        let provider = provider();
        let chain_key = identity.map(chain_and_key).transpose()?;
        let server = match &chain_key {
            Some((chain, key)) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::clone(&roots),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(rustls_err)?;
                let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
                    .with_safe_default_protocol_versions()
                    .map_err(rustls_err)?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(rustls_err)?;
                install_key_log(&mut config.key_log, log.clone());
                Some(Arc::new(config))
            }
            None => None,
        };
        let verifier = Arc::new(SipServerVerifier {
            roots,
            algs: provider.signature_verification_algorithms,
        });
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut client = match chain_key {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(rustls_err)?,
            None => builder.with_no_client_auth(),
        };
        install_key_log(&mut client.key_log, log);
        Ok(TlsSetup {
            server,
            client: Arc::new(client),
        })
    }

    /// Whether it can accept connections (it has an identity).
    pub fn can_serve(&self) -> bool {
        self.server.is_some()
    }

    /// The acceptor for a TLS listener.
    ///
    /// # Panics
    /// Never for a setup that [`TlsSetup::can_serve`]; the server refuses
    /// a TLS listener otherwise.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .server
            .clone()
            .unwrap_or_else(|| unreachable!("a TLS listener is refused without an identity"));
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// The client configuration (for a blocking connection).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.client)
    }

    /// A connector for a next hop that must prove it is `name`.
    pub fn connector(
        &self,
        name: &str,
    ) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), TlsError> {
        Ok((
            tokio_rustls::TlsConnector::from(Arc::clone(&self.client)),
            server_name(name)?,
        ))
    }
}

type ChainKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// `id`'s certificate chain and key as rustls takes them.
fn chain_and_key(id: &Identity) -> Result<ChainKey, TlsError> {
    let mut chain = Vec::new();
    for c in std::iter::once(&id.cert).chain(&id.chain) {
        chain.push(CertificateDer::from(c.cert.to_der().map_err(rustls_err)?));
    }
    let key = id.private_key()?.pkcs8_der().ok_or_else(|| {
        TlsError::Rustls(format!(
            "{}: this key cannot sign a TLS handshake (give an RSA or P-256 identity)",
            id.key_path.display()
        ))
    })?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec()));
    Ok((chain, key))
}

/// A server for browsers (the HTTP gateway): `identity`'s certificate,
/// no client certificate asked for, HTTP/1.1 by ALPN.
pub fn https_server(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    https_server_with(identity, key_log())
}

/// [`https_server`] logging its secrets to `log` when some.
fn https_server_with(
    identity: &Identity,
    log: Option<Arc<dyn KeyLog>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (chain, key) = chain_and_key(identity)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(rustls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    install_key_log(&mut config.key_log, log);
    Ok(Arc::new(config))
}

/// The name rustls carries to the verifier.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|e| TlsError::Name(format!("{name:?}: {e}")))
}

/// A certificate's identities as a SIP server (RFC 5922 §7.1), lower case.
pub fn sip_identities(cert: &Cert) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Some((_, san))) = cert
        .cert
        .tbs_certificate()
        .get_extension::<SubjectAltName>()
    {
        for name in &san.0 {
            match name {
                GeneralName::UniformResourceIdentifier(u) => {
                    if let Some(uri) = crate::sip::uri::HopUri::parse(u.as_str())
                        && !u.as_str().contains('@')
                    {
                        out.push(uri.host.to_ascii_lowercase());
                    }
                }
                GeneralName::DnsName(d) => out.push(d.as_str().to_ascii_lowercase()),
                _ => {}
            }
        }
        return out;
    }
    if let Ok(Some(cn)) = cert.cert.tbs_certificate().subject().common_name() {
        out.push(cn.value().to_ascii_lowercase());
    }
    out
}

/// Whether `cert` may serve the SIP domain `name` (RFC 5922 §7.2: exact,
/// case-insensitive, no wildcards).
pub fn serves(cert: &Cert, name: &str) -> bool {
    let name = name.trim_start_matches('[').trim_end_matches(']');
    sip_identities(cert).iter().any(|id| {
        id.trim_start_matches('[')
            .trim_end_matches(']')
            .eq_ignore_ascii_case(name)
    })
}

/// The server check of RFC 5922: chain and serverAuth by webpki, the name
/// by [`serves`].
#[derive(Debug)]
struct SipServerVerifier {
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SipServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        let cert = Cert::from_der(end_entity, "the TLS server")
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let name = server_name.to_str();
        if serves(&cert, &name) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext {
                    expected: server_name.to_owned(),
                    presented: sip_identities(&cert),
                },
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Test helpers shared with `datachannel::tls`: a key log that records
/// what it is given, and a handshake in memory.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    /// Records the labels it is asked to log, with the client random.
    #[derive(Debug, Default)]
    pub struct Recorder(Mutex<Vec<(String, Vec<u8>)>>);

    impl rustls::KeyLog for Recorder {
        fn log(&self, label: &str, client_random: &[u8], _secret: &[u8]) {
            self.0
                .lock()
                .unwrap()
                .push((label.to_owned(), client_random.to_vec()));
        }
    }

    impl Recorder {
        /// The labels logged so far, and whether all were for one
        /// connection (one client random).
        pub fn labels(&self) -> (Vec<String>, bool) {
            let got = self.0.lock().unwrap();
            let one = got.windows(2).all(|w| w[0].1 == w[1].1);
            (got.iter().map(|(l, _)| l.clone()).collect(), one)
        }
    }

    /// Run a handshake between the two configurations in memory.
    pub fn handshake(
        client: Arc<rustls::ClientConfig>,
        name: &str,
        server: Arc<rustls::ServerConfig>,
    ) -> Result<(), rustls::Error> {
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut c = rustls::ClientConnection::new(client, name)?;
        let mut s = rustls::ServerConnection::new(server)?;
        for _ in 0..16 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets()?;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        Err(rustls::Error::General(
            "the handshake did not finish".into(),
        ))
    }

    /// What both ends of a TLS 1.3 connection must log for tshark to
    /// decrypt it.
    pub const TLS13_LABELS: [&str; 4] = [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
    ];

    /// `rec` logged every TLS 1.3 secret of one connection.
    pub fn assert_logged(rec: &Recorder) {
        let (labels, one) = rec.labels();
        for want in TLS13_LABELS {
            assert!(labels.iter().any(|l| l == want), "{want} in {labels:?}");
        }
        assert!(one, "one connection's secrets: {labels:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Recorder, assert_logged, handshake};
    use super::*;
    use std::path::Path;

    fn cert(path: &str) -> Cert {
        Cert::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
    }

    #[test]
    fn a_server_is_named_by_its_sip_uri_or_dns_name_never_a_user() {
        let proxy = cert("keys/proxy-a/cert.pem");
        assert_eq!(sip_identities(&proxy), vec!["proxy-a.a.example.com"]);
        assert!(serves(&proxy, "PROXY-A.a.example.com"));
        assert!(!serves(&proxy, "a.example.com"));
        assert!(!serves(&proxy, "127.0.0.1"));
        let ec = cert("keys/proxy-a-ec/cert.pem");
        assert!(serves(&ec, "proxy-a.a.example.com"));
        // A user's certificate (sip:alice@...) names no server.
        let alice = cert("keys/alice/cert.pem");
        assert!(sip_identities(&alice).is_empty());
        assert!(!serves(&alice, "a.example.com"));
    }

    fn trust() -> Vec<Cert> {
        Cert::load_all(&Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/trust.pem")).unwrap()
    }

    fn identity(dir: &str) -> Identity {
        Identity::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap()
    }

    #[test]
    fn the_key_log_is_on_only_when_the_variable_names_a_file() {
        assert!(key_log_for(None).is_none());
        assert!(key_log_for(Some(OsStr::new(""))).is_none());
        assert_eq!(
            logged_to(Some(OsStr::new("/tmp/keys"))),
            Some(OsStr::new("/tmp/keys"))
        );
        // Unset: the configurations keep rustls's default, which logs nothing.
        let trust = trust();
        let setup =
            TlsSetup::with_key_log(Some(&identity("keys/proxy-a-ec")), &trust, None).unwrap();
        assert!(!setup.client.key_log.will_log("CLIENT_TRAFFIC_SECRET_0"));
        assert!(
            !setup
                .server
                .unwrap()
                .key_log
                .will_log("CLIENT_TRAFFIC_SECRET_0")
        );
        let https = https_server_with(&identity("keys/proxy-a"), None).unwrap();
        assert!(!https.key_log.will_log("CLIENT_TRAFFIC_SECRET_0"));
    }

    #[test]
    fn with_a_key_log_both_ends_of_mutual_tls_log_their_secrets() {
        let trust = trust();
        let (at_server, at_client) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let server = TlsSetup::with_key_log(
            Some(&identity("keys/proxy-a-ec")),
            &trust,
            Some(at_server.clone()),
        )
        .unwrap();
        let client = TlsSetup::with_key_log(
            Some(&identity("keys/proxy-b-ec")),
            &trust,
            Some(at_client.clone()),
        )
        .unwrap();
        handshake(
            client.client_config(),
            "proxy-a.a.example.com",
            server.server.clone().unwrap(),
        )
        .unwrap();
        assert_logged(&at_server);
        assert_logged(&at_client);
        // The HTTPS server's too.
        let at_https = Arc::new(Recorder::default());
        let https = https_server_with(&identity("keys/proxy-a"), Some(at_https.clone())).unwrap();
        let browser = TlsSetup::with_key_log(None, &trust, None).unwrap();
        handshake(browser.client_config(), "proxy-a.a.example.com", https).unwrap();
        assert_logged(&at_https);
    }
}
