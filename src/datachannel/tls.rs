//! The data channel's TLS (RFC 8122): TLS 1.3 by rustls on aws-lc-rs,
//! both ends presenting a certificate, each accepting the other's only
//! if its SHA-256 fingerprint is the one the sealed SDP carried. The
//! handshake signature is verified as rustls always does; the
//! certificate chain is not (the fingerprint pins the certificate, and
//! the SDP that carried it was sealed and integrity-protected).
//!
//! Each end presents a fresh self-signed P-256 certificate per call
//! ([`ChannelCert::generate`]): nothing links two calls of one party, a
//! key never outlives its call, and the party's identity key (which may
//! be RSA, or an ML-KEM key that cannot sign at all) is never used for
//! the channel. Who the peer is was established by the sealed, signed
//! signaling; the fingerprint binds the channel to it.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, KeyLog, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use zeroize::Zeroizing;

use super::sdp::Fingerprint;
use crate::context::Context;
use crate::keys::KeyError;

/// The TLS stream of a data channel, at the end that connected.
pub type ClientChannel = tokio_rustls::client::TlsStream<TcpStream>;
/// The TLS stream of a data channel, at the end that listened.
pub type ServerChannel = tokio_rustls::server::TlsStream<TcpStream>;

/// Why a data channel did not come up.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The certificate could not be made.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// rustls refused the configuration.
    #[error("data channel TLS: {0}")]
    Config(String),
    /// The TCP connection failed.
    #[error("data channel to {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The handshake failed (a wrong fingerprint among the reasons).
    #[error("data channel TLS handshake with {addr}: {source}")]
    Handshake {
        /// The peer.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing came in time.
    #[error("data channel: no {0} in time")]
    Timeout(&'static str),
}

/// A certificate and key one end presents on one channel.
pub struct ChannelCert {
    cert: CertificateDer<'static>,
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ChannelCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelCert({:?})", self.fingerprint())
    }
}

impl ChannelCert {
    /// A fresh self-signed P-256 certificate naming `uri` (the party's
    /// AOR), valid for a day.
    pub fn generate(uri: &str, ctx: &mut Context) -> Result<ChannelCert, ChannelError> {
        let (der, key) = crate::keys::generate::self_signed_p256(uri, 1, ctx)?;
        Ok(ChannelCert {
            cert: CertificateDer::from(der),
            key,
        })
    }

    /// What the SDP carries.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(self.cert.as_ref())
    }

    fn chain_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.to_vec())),
        )
    }

    /// The configuration of the end that connects: it presents this
    /// certificate and accepts only a server whose certificate has
    /// `peer` as its fingerprint.
    /// Its secrets go to `SSLKEYLOGFILE` when that is set
    /// ([`crate::net::tls::key_log`]).
    pub fn client_config(&self, peer: Fingerprint) -> Result<rustls::ClientConfig, ChannelError> {
        self.client_config_with(peer, crate::net::tls::key_log())
    }

    fn client_config_with(
        &self,
        peer: Fingerprint,
        log: Option<Arc<dyn KeyLog>>,
    ) -> Result<rustls::ClientConfig, ChannelError> {
        let provider = provider();
        let (chain, key) = self.chain_key();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned::new(peer, &provider)))
            .with_client_auth_cert(chain, key)
            .map_err(config_err)?;
        crate::net::tls::install_key_log(&mut config.key_log, log);
        Ok(config)
    }

    /// The configuration of the end that listens: it presents this
    /// certificate and requires a client certificate whose fingerprint
    /// is `peer`.
    /// Its secrets go to `SSLKEYLOGFILE` when that is set.
    pub fn server_config(&self, peer: Fingerprint) -> Result<rustls::ServerConfig, ChannelError> {
        self.server_config_with(peer, crate::net::tls::key_log())
    }

    fn server_config_with(
        &self,
        peer: Fingerprint,
        log: Option<Arc<dyn KeyLog>>,
    ) -> Result<rustls::ServerConfig, ChannelError> {
        let provider = provider();
        let (chain, key) = self.chain_key();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_client_cert_verifier(Arc::new(Pinned::new(peer, &provider)))
            .with_single_cert(chain, key)
            .map_err(config_err)?;
        crate::net::tls::install_key_log(&mut config.key_log, log);
        Ok(config)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn config_err(e: rustls::Error) -> ChannelError {
    ChannelError::Config(e.to_string())
}

/// Connect to the passive end at `addr` and complete the handshake, in
/// `wait` at most: `mine` presented, the server's certificate accepted
/// only with fingerprint `peer`.
pub async fn connect(
    addr: SocketAddr,
    mine: &ChannelCert,
    peer: Fingerprint,
    wait: std::time::Duration,
) -> Result<ClientChannel, ChannelError> {
    let config = Arc::new(mine.client_config(peer)?);
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ChannelError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        // The name is not checked (the fingerprint pins the certificate);
        // the address goes as the name so that no SNI is sent.
        let name = ServerName::IpAddress(addr.ip().into());
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|source| ChannelError::Handshake { addr, source })
    };
    tokio::time::timeout(wait, work)
        .await
        .map_err(|_| ChannelError::Timeout("handshake"))?
}

/// The longest one connection's handshake may take on a channel's
/// listener.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Handshakes on a channel's listener at once, at most: a connection past
/// it is closed unheard.
const MAX_HANDSHAKES: usize = 32;
/// Refused connections kept for the log, at most (the first ones).
pub const MAX_REFUSED: usize = 16;

/// Accept on `listener` until a client completes the handshake with the
/// fingerprint `peer`, in `wait` at most; a connection that fails the
/// handshake (a wrong certificate) is dropped and the next one taken.
/// The handshakes run side by side, 32 at most, each in 5 s at most: a
/// connection that stalls never holds the caller's. The addresses of
/// the first refused ones ([`MAX_REFUSED`]) come back too.
pub async fn accept(
    listener: &TcpListener,
    mine: &ChannelCert,
    peer: Fingerprint,
    wait: std::time::Duration,
) -> Result<(ServerChannel, Vec<(SocketAddr, String)>), ChannelError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(mine.server_config(peer)?));
    let handshake = wait.min(HANDSHAKE_TIMEOUT);
    let mut refused = Vec::new();
    let work = async {
        // Each handshake runs on its own, under its own timeout: one that
        // stalls never holds the caller's.
        let mut pending = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, from)) = accepted else {
                        // Out of descriptors, say: wait a little rather
                        // than spin on the error.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    };
                    if pending.len() >= MAX_HANDSHAKES {
                        note(&mut refused, from, "too many handshakes at once".to_owned());
                        continue;
                    }
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    pending.spawn(async move {
                        let done = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => Ok(tls),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("no handshake in time".to_owned()),
                        };
                        (from, done)
                    });
                }
                Some(Ok((from, done))) = pending.join_next(), if !pending.is_empty() => match done {
                    Ok(tls) => return tls,
                    Err(why) => note(&mut refused, from, why),
                },
            }
        }
    };
    match tokio::time::timeout(wait, work).await {
        Ok(tls) => Ok((tls, refused)),
        Err(_) => Err(ChannelError::Timeout("connection from the caller")),
    }
}

/// Keep a refusal for the log, while fewer than [`MAX_REFUSED`] are kept:
/// a flood of wrong certificates cannot grow memory.
fn note(refused: &mut Vec<(SocketAddr, String)>, from: SocketAddr, why: String) {
    if refused.len() < MAX_REFUSED {
        refused.push((from, why));
    }
}

#[derive(Debug)]
struct Pinned {
    expected: Fingerprint,
    algs: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn new(expected: Fingerprint, provider: &CryptoProvider) -> Pinned {
        Pinned {
            expected,
            algs: provider.signature_verification_algorithms,
        }
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let got = Fingerprint::of_der(end_entity.as_ref());
        // Not secret, but compared in constant time all the same.
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            &got.0[..],
            &self.expected.0[..],
        )) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // TLS 1.3 only (the configurations allow nothing else).
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
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

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

    fn cert(uri: &str) -> ChannelCert {
        ChannelCert::generate(uri, &mut Context::new(None, None)).unwrap()
    }

    #[tokio::test]
    async fn both_ends_check_the_fingerprints_and_bytes_flow() {
        let (alice, bob) = (
            cert("sip:alice@a.example.com"),
            cert("sip:bob@b.example.com"),
        );
        let (a_fp, b_fp) = (alice.fingerprint(), bob.fingerprint());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut tls, refused) = accept(&listener, &bob, a_fp, WAIT).await.unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(b"pong").await.unwrap();
            tls.flush().await.unwrap();
            (buf, refused.len())
        });
        let mut tls = connect(addr, &alice, b_fp, WAIT).await.unwrap();
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        tls.write_all(b"ping").await.unwrap();
        tls.flush().await.unwrap();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        assert_eq!(server.await.unwrap(), (*b"ping", 0));
    }

    #[tokio::test]
    async fn a_silent_connection_does_not_hold_the_callers_handshake() {
        let (alice, bob) = (
            cert("sip:alice@a.example.com"),
            cert("sip:bob@b.example.com"),
        );
        let (a_fp, b_fp) = (alice.fingerprint(), bob.fingerprint());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let wait = std::time::Duration::from_secs(4);
        let server = tokio::spawn(async move { accept(&listener, &bob, a_fp, wait).await });
        // Connections that send nothing, or half a ClientHello, and stay
        // open: the caller who comes after them still gets through.
        let mut silent = Vec::new();
        for i in 0..3 {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            if i == 1 {
                tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                    .await
                    .unwrap();
            }
            silent.push(tcp);
        }
        let client = connect(addr, &alice, b_fp, WAIT).await;
        let got = server.await.unwrap();
        assert!(
            client.is_ok() && got.is_ok(),
            "the caller was held out: {:?} {:?}",
            client.err(),
            got.err()
        );
        drop(silent);
    }

    #[tokio::test]
    async fn the_refused_connections_kept_for_the_log_are_bounded() {
        let (alice, bob, mallory) = (
            cert("sip:alice@a.example.com"),
            cert("sip:bob@b.example.com"),
            cert("sip:mallory@b.example.com"),
        );
        let (a_fp, b_fp) = (alice.fingerprint(), bob.fingerprint());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { accept(&listener, &bob, a_fp, WAIT).await });
        let tries = MAX_REFUSED * 3;
        for _ in 0..tries {
            if let Ok(mut tls) = connect(addr, &mallory, b_fp, WAIT).await {
                let mut buf = [0u8; 1];
                let _ = tls.read(&mut buf).await;
            }
        }
        let _tls = connect(addr, &alice, b_fp, WAIT).await.unwrap();
        let (_, refused) = server.await.unwrap().unwrap();
        assert!(
            !refused.is_empty() && refused.len() <= MAX_REFUSED,
            "{} of {tries} refusals kept",
            refused.len()
        );
    }

    #[tokio::test]
    async fn a_wrong_fingerprint_is_refused_at_the_handshake_by_either_end() {
        let alice = cert("sip:alice@a.example.com");
        let bob = cert("sip:bob@b.example.com");
        let mallory = cert("sip:mallory@b.example.com");
        let (a_fp, b_fp, m_fp) = (
            alice.fingerprint(),
            bob.fingerprint(),
            mallory.fingerprint(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let got = accept(&listener, &bob, a_fp, WAIT).await;
            let (_, refused) = got.unwrap();
            refused
        });
        // mallory connects with her own certificate: bob refuses her.
        let err = connect(addr, &mallory, b_fp, WAIT).await;
        let refused_by_server = match err {
            Err(ChannelError::Handshake { .. }) => true,
            // TLS 1.3: the client may finish before the server's alert.
            Ok(mut tls) => {
                let mut buf = [0u8; 1];
                tls.read(&mut buf).await.is_err()
            }
            Err(other) => panic!("{other}"),
        };
        assert!(refused_by_server);
        // alice expects mallory's fingerprint: bob's certificate is refused.
        let err = connect(addr, &alice, m_fp, WAIT).await.unwrap_err();
        assert!(
            matches!(&err, ChannelError::Handshake { source, .. } if source.to_string().contains("ApplicationVerificationFailure")),
            "{err}"
        );
        // alice with bob's fingerprint gets through; the two refusals are told.
        let _ok = connect(addr, &alice, b_fp, WAIT).await.unwrap();
        let refused = server.await.unwrap();
        assert!(!refused.is_empty(), "mallory's connection was refused");
    }

    #[test]
    fn with_a_key_log_both_ends_of_a_channel_log_their_secrets() {
        use crate::net::tls::testing::{Recorder, assert_logged, handshake};
        let (alice, bob) = (
            cert("sip:alice@a.example.com"),
            cert("sip:bob@b.example.com"),
        );
        let (at_alice, at_bob) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let client = alice
            .client_config_with(bob.fingerprint(), Some(at_alice.clone()))
            .unwrap();
        let server = bob
            .server_config_with(alice.fingerprint(), Some(at_bob.clone()))
            .unwrap();
        handshake(Arc::new(client), "127.0.0.1", Arc::new(server)).unwrap();
        assert_logged(&at_alice);
        assert_logged(&at_bob);
        // Without one, rustls's default: nothing is logged.
        let quiet = alice.client_config_with(bob.fingerprint(), None).unwrap();
        assert!(!quiet.key_log.will_log("CLIENT_TRAFFIC_SECRET_0"));
        let quiet = bob.server_config_with(alice.fingerprint(), None).unwrap();
        assert!(!quiet.key_log.will_log("CLIENT_TRAFFIC_SECRET_0"));
    }
}
