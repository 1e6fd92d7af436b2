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

use std::sync::Arc;

use der::Encode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
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

impl TlsSetup {
    /// TLS with `identity` (needed to accept connections, and to present
    /// as a client) and the `trust` anchors for peers.
    pub fn new(identity: Option<&Identity>, trust: &[Cert]) -> Result<TlsSetup, TlsError> {
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
                let config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
                    .with_safe_default_protocol_versions()
                    .map_err(rustls_err)?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(rustls_err)?;
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
        let client = match chain_key {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(rustls_err)?,
            None => builder.with_no_client_auth(),
        };
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
    let (chain, key) = chain_and_key(identity)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(rustls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
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

#[cfg(test)]
mod tests {
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
}
