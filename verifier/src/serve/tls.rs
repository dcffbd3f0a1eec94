//! HTTPS for `serve`: loading `tls_cert` and `tls_key` into a rustls server configuration
//! ([`server_config`]: ring provider, TLS 1.3, client certificates as `client_auth` says),
//! and [`TlsListener`], the axum [`Listener`] that hands axum finished TLS streams, each
//! with the client's certificate chain ([`PeerCertificates`]).
//!
//! Client certificates (mutual TLS, `client_auth`): `off` asks for none; `optional` asks, and
//! takes whatever chain the client proves it holds the key of (the handshake signature is
//! checked here), leaving the chain's judgement to the request's authentication (a chain
//! that does not verify to the operator CA gets 401 there); `required` refuses, at the
//! handshake, a client without a chain that verifies as a node certificate
//! ([`TrustAnchors::verify_node`], the operator roots and CRLs of trust.toml).
//!
//! The listener owns the TCP socket, the handshakes in progress and the queue of finished
//! ones. Every accepted TCP connection gets its own task for the handshake, under
//! [`HANDSHAKE_TIMEOUT`], so a slow or silent peer never holds up the next accept; finished
//! streams come back through a bounded channel to [`Listener::accept`]. At most
//! [`MAX_HANDSHAKES`] run at once. A failed handshake is logged at debug level and the
//! connection dropped: a peer that does not speak TLS gets an alert, never an HTTP answer.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::config::{ClientAuth, TlsFiles};
use crate::chain::TrustAnchors;
use crate::error::Error;

/// Longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; past it, new connections wait in the kernel's accept
/// queue, so a flood of idle connections costs at most this many tasks and buffers.
pub const MAX_HANDSHAKES: usize = 1024;
/// Finished handshakes waiting for axum to take them (it takes them as fast as they come).
const READY_QUEUE: usize = 64;
/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The hint for an unusable `tls_cert`.
const CERT_HINT: &str = "give the server's PEM certificate chain (-----BEGIN CERTIFICATE-----), \
                         leaf first, then any intermediate CAs (docs/serve.md, TLS)";
/// The hint for an unusable `tls_key`.
const KEY_HINT: &str = "give the leaf certificate's PEM private key: PKCS#8 (BEGIN PRIVATE \
                        KEY), SEC1 (BEGIN EC PRIVATE KEY) or PKCS#1 (BEGIN RSA PRIVATE KEY); \
                        ECDSA P-256/P-384, Ed25519 or RSA (docs/serve.md, TLS)";

/// Reads `files` and builds the server configuration: TLS 1.3 only (every client of this
/// service speaks it; fixing the version keeps the build's features from changing it), HTTP/1.1
/// offered by ALPN, client certificates as `client_auth` says (checked against `trust`).
/// Errors are [`Error::Config`] naming the file at fault.
pub fn server_config(
    config: &Path,
    files: &TlsFiles,
    client_auth: ClientAuth,
    trust: &TrustAnchors,
) -> Result<Arc<ServerConfig>, Error> {
    let err = |key: &'static str, reason: String, hint: &str| Error::Config {
        path: config.to_owned(),
        key,
        reason,
        hint: hint.to_owned(),
    };
    let cert_pem = read_pem(&files.cert).map_err(|e| err("tls_cert", e, CERT_HINT))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            err(
                "tls_cert",
                format!("{}: not PEM ({e})", files.cert.display()),
                CERT_HINT,
            )
        })?;
    if certs.is_empty() {
        return Err(err(
            "tls_cert",
            format!("{}: holds no certificate", files.cert.display()),
            CERT_HINT,
        ));
    }
    let key_pem = read_pem(&files.key).map_err(|e| err("tls_key", e, KEY_HINT))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let why = match e {
            rustls_pki_types::pem::Error::NoItemsFound => "holds no private key".to_owned(),
            other => format!("not a PEM private key ({other})"),
        };
        err(
            "tls_key",
            format!("{}: {why}", files.key.display()),
            KEY_HINT,
        )
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| {
            err(
                "tls_cert",
                format!("the TLS library refused TLS 1.3 ({e})"),
                "this is a bug; please report it",
            )
        })?;
    let builder = match client_auth {
        ClientAuth::Off => builder.with_no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            builder.with_client_cert_verifier(Arc::new(NodeCertVerifier {
                trust: trust.clone(),
                required: client_auth == ClientAuth::Required,
                algorithms: provider.signature_verification_algorithms,
            }))
        }
    };
    let mut server = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => err(
            "tls_key",
            format!(
                "{} does not match the certificate in {} (the first certificate's public key \
                 differs)",
                files.key.display(),
                files.cert.display()
            ),
            "give the private key the leaf certificate was issued for, and put that leaf \
             first in tls_cert",
        ),
        rustls::Error::InvalidCertificate(e) => err(
            "tls_cert",
            format!(
                "{}: the first certificate cannot be read ({e:?})",
                files.cert.display()
            ),
            CERT_HINT,
        ),
        other => err(
            "tls_key",
            format!("{}: the key cannot be used ({other})", files.key.display()),
            KEY_HINT,
        ),
    })?;
    // The router speaks HTTP/1.1 only; saying so stops a client from assuming HTTP/2.
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

/// `path`'s bytes, at most [`MAX_PEM_BYTES`]; the error names the file.
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let named = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(named)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(named)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_PEM_BYTES {
        return Err(format!(
            "{}: larger than {MAX_PEM_BYTES} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Checks client certificates for `client_auth` (see the module documentation).
#[derive(Debug)]
struct NodeCertVerifier {
    trust: TrustAnchors,
    /// `required`: a chain must verify as a node's at the handshake.
    required: bool,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for NodeCertVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a node presents the one certificate it has.
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.required {
            let chain: Vec<Vec<u8>> = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.as_ref().to_vec())
                .collect();
            let at = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            self.trust.verify_node(&chain, at).map_err(|e| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                    rustls::OtherError(Arc::new(e)),
                ))
            })?;
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The certificate chain a TLS client presented (leaf first, DER; empty when none), handed
/// to every request of its connection as `ConnectInfo` for authentication.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(Arc<Vec<Vec<u8>>>);

impl PeerCertificates {
    /// No certificate was presented.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.0
    }
}

impl PeerCertificates {
    /// The chain the client of `stream` presented at its handshake.
    pub(super) fn of(stream: &TlsStream<TcpStream>) -> Self {
        let chain = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
            .unwrap_or_default();
        Self(Arc::new(chain))
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for PeerCertificates {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        Self::of(stream.io())
    }
}

/// A finished handshake and the peer's address.
type Ready = (TlsStream<TcpStream>, SocketAddr);

/// A TCP listener whose connections reach axum only once their TLS handshake has finished.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    /// One permit per handshake in progress.
    slots: Arc<Semaphore>,
    /// Cloned into every handshake task; kept here so the channel never closes.
    ready_tx: mpsc::Sender<Ready>,
    ready_rx: mpsc::Receiver<Ready>,
    /// Longest handshake (`handshake_timeout_s`; default [`HANDSHAKE_TIMEOUT`]).
    handshake_timeout: Duration,
}

impl TlsListener {
    /// Serves TLS with `config` on the bound `tcp`.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel(READY_QUEUE);
        Self {
            tcp,
            acceptor: TlsAcceptor::from(config),
            slots: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
            ready_tx,
            ready_rx,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// Handshakes time out after `timeout` instead of [`HANDSHAKE_TIMEOUT`].
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let Self {
            tcp,
            acceptor,
            slots,
            ready_tx,
            ready_rx,
            handshake_timeout,
        } = self;
        loop {
            // Both branches are cancel-safe: axum drops this future at shutdown, and a
            // connection accepted here is already in its own task.
            tokio::select! {
                biased;
                ready = ready_rx.recv() => {
                    // `None` cannot happen (this listener holds a sender); wait on.
                    if let Some(ready) = ready {
                        return ready;
                    }
                }
                (stream, peer, slot) = accept_tcp(tcp, slots) => {
                    let ready = ready_tx.clone();
                    tokio::spawn(handshake(acceptor.clone(), stream, peer, slot, ready, *handshake_timeout));
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Waits for a free handshake slot, then for a TCP connection.
async fn accept_tcp(
    tcp: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    let Ok(slot) = Arc::clone(slots).acquire_owned().await else {
        // The semaphore is never closed; were it, accepting no more is the safe outcome.
        return std::future::pending().await;
    };
    loop {
        match tcp.accept().await {
            Ok((stream, peer)) => return (stream, peer, slot),
            Err(e) => accept_failed(e).await,
        }
    }
}

/// As axum's own TCP listener: a connection that went away before it was accepted is
/// skipped; anything else (out of file descriptors, mostly) is logged and retried after a
/// second rather than in a busy loop.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a TCP connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One connection's handshake, under [`HANDSHAKE_TIMEOUT`]; a finished stream goes to the
/// queue, a failed one is dropped (closing the connection).
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    ready: mpsc::Sender<Ready>,
    timeout: Duration,
) {
    // Held until the stream is queued, so the slots also bound finished streams waiting for
    // room in the queue.
    let _slot = slot;
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // An error means the listener is gone (shutting down): the connection closes.
            let _ = ready.send((tls, peer)).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(
            %peer,
            timeout_s = timeout.as_secs(),
            "TLS handshake timed out"
        ),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A test PKI in a temporary folder: `cert.pem` (a leaf for 127.0.0.1, then its CA) and
    /// `key.pem`, plus the CA certificate to trust.
    struct Pki {
        dir: tempfile::TempDir,
        files: TlsFiles,
        ca: CertificateDer<'static>,
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        std::fs::write(&files.cert, leaf.pem() + &ca.pem()).unwrap();
        std::fs::write(&files.key, leaf_key.serialize_pem()).unwrap();
        Pki {
            dir,
            files,
            ca: ca.der().clone(),
        }
    }

    fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, Error> {
        server_config(
            Path::new("verifier.toml"),
            files,
            ClientAuth::Off,
            &TrustAnchors::default(),
        )
    }

    /// The key, the reason and the hint of a configuration error.
    fn fault(e: Error) -> (&'static str, String, String) {
        let Error::Config {
            key, reason, hint, ..
        } = e
        else {
            panic!("not a configuration error: {e:?}");
        };
        (key, reason, hint)
    }

    #[test]
    fn a_matching_chain_and_key_load() {
        let p = pki();
        let config = load(&p.files).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }

    #[test]
    fn bad_files_name_the_file_and_the_fix() {
        let p = pki();
        let other = |name: &str, text: &str| {
            let path = p.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };

        let missing = TlsFiles {
            cert: p.dir.path().join("nope.pem"),
            ..p.files.clone()
        };
        let (key, reason, hint) = fault(load(&missing).unwrap_err());
        assert_eq!(key, "tls_cert");
        assert!(reason.contains("nope.pem"), "{reason}");
        assert!(hint.contains("leaf first"), "{hint}");

        // The key file given as the certificate: PEM, but no certificate in it.
        let swapped = TlsFiles {
            cert: p.files.key.clone(),
            ..p.files.clone()
        };
        let (key, reason, _) = fault(load(&swapped).unwrap_err());
        assert_eq!(key, "tls_cert");
        assert!(
            reason.ends_with("key.pem: holds no certificate"),
            "{reason}"
        );

        let broken = TlsFiles {
            cert: other("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n"),
            ..p.files.clone()
        };
        let (key, reason, _) = fault(load(&broken).unwrap_err());
        assert_eq!(key, "tls_cert");
        assert!(reason.contains("broken.pem: not PEM"), "{reason}");

        let no_key = TlsFiles {
            key: p.files.cert.clone(),
            ..p.files.clone()
        };
        let (key, reason, hint) = fault(load(&no_key).unwrap_err());
        assert_eq!(key, "tls_key");
        assert!(
            reason.ends_with("cert.pem: holds no private key"),
            "{reason}"
        );
        assert!(hint.contains("PKCS#8"), "{hint}");

        let not_a_key = TlsFiles {
            key: other(
                "junk.key",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ),
            ..p.files.clone()
        };
        let (key, reason, _) = fault(load(&not_a_key).unwrap_err());
        assert_eq!(key, "tls_key");
        assert!(
            reason.contains("junk.key: the key cannot be used"),
            "{reason}"
        );

        let stranger = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let mismatched = TlsFiles {
            key: other("stranger.key", &stranger),
            ..p.files.clone()
        };
        let (key, reason, hint) = fault(load(&mismatched).unwrap_err());
        assert_eq!(key, "tls_key");
        assert!(
            reason.contains("stranger.key does not match the certificate in")
                && reason.contains("cert.pem"),
            "{reason}"
        );
        assert!(hint.contains("issued for"), "{hint}");
    }

    #[tokio::test]
    async fn stalled_and_plain_http_peers_do_not_hold_up_a_client() {
        let p = pki();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = TlsListener::new(tcp, load(&p.files).unwrap());

        // First in the queue: a peer that never says hello, and one speaking plain HTTP.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET /v1/fleet HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(p.ca.clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let client = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            connector.connect(name, tcp).await
        });

        // Well inside HANDSHAKE_TIMEOUT: the silent peer's handshake is still pending.
        let (_stream, peer) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the trusting client's handshake finishes first");
        assert_eq!(peer.ip(), addr.ip());
        client.await.unwrap().unwrap();

        // The plain-HTTP peer got a TLS alert and the close, never an HTTP answer.
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer))
            .await
            .unwrap()
            .ok();
        assert!(!answer.starts_with(b"HTTP"), "{answer:?}");
        assert_eq!(
            answer.first(),
            Some(&0x15),
            "a TLS alert record: {answer:?}"
        );
    }
}
