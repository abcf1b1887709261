//! The server's transport (issue #11): TLS on the HTTP/WebSocket port and on the FIX port, with
//! rustls and its `ring` provider, or plain TCP when the configuration asks for it in so many
//! words (`[server] transport = "plaintext"`, for benchmarks and local tests).
//!
//! The certificate is the configuration's (`[tls] cert`, `key`), or a self-signed one for
//! localhost, 127.0.0.1 and ::1 that `kinko serve` generates at its first start and keeps in
//! `DATA/tls/` (the key readable by its owner only), so that clients can pin it across restarts.
//!
//! A connection's TLS handshake runs in the connection's own task, under a timeout, never in an
//! accept loop: a client that connects and says nothing costs a task, not the port. A client that
//! speaks plain HTTP or FIX to a TLS port gets the connection closed and not one byte back.
//!
//! The clients (`kinko admin`, the tests) trust one certificate file, the server's own or its CA.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::WebSocketStream;

use crate::config::{ServeConfig, Transport as TransportName};

/// A TLS handshake (or the first byte of one) must be done within this, or the connection closes.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Handshakes in progress at once, both ports together; a connection beyond is closed at once.
pub const HANDSHAKES_MAX: usize = 1_024;
/// HTTP connections handshaken and waiting for the HTTP server to take them.
const ACCEPTED_MAX: usize = 64;
/// The first byte of every TLS connection: a handshake record (RFC 8446, section 5.1).
const RECORD_HANDSHAKE: u8 = 0x16;
/// The names the generated certificate is valid for.
pub const GENERATED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A connection's byte stream, TLS or plain: the sessions do not care which.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}
pub type Stream = Box<dyn Io>;

/// The certificate the server presents, as the start banner shows it.
#[derive(Clone, Debug)]
pub struct Certificate {
    /// SHA-256 of the leaf's DER, as `openssl x509 -noout -fingerprint -sha256` prints it.
    pub fingerprint_sha256: String,
    /// The PEM file clients can trust (`curl --cacert`, `kinko admin --ca`).
    pub cert_path: PathBuf,
    /// Generated at this start (false: read from the files of an earlier start or `[tls]`).
    pub generated: bool,
}

/// How both ports accept a connection.
pub enum Transport {
    Tls {
        acceptor: TlsAcceptor,
        certificate: Certificate,
        handshakes: Semaphore,
    },
    Plaintext,
}

impl Transport {
    /// TLS with the configured or generated certificate, or plain TCP if configured so.
    pub fn prepare(config: &ServeConfig) -> Result<Transport, String> {
        if config.server.transport == TransportName::Plaintext {
            return Ok(Transport::Plaintext);
        }
        let (chain, key, cert_path, generated) = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => {
                let (chain, key) = load(cert, key)?;
                (chain, key, cert.clone(), false)
            }
            (None, None) => load_or_generate(&config.server.data.join("tls"))?,
            _ => return Err("tls: give both cert and key, or neither".into()),
        };
        assert!(
            !chain.is_empty(),
            "certificates() returns a leaf or an error"
        );
        let certificate = Certificate {
            fingerprint_sha256: fingerprint_sha256(&chain[0]),
            cert_path,
            generated,
        };
        let tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("tls: {}: {e}", certificate.cert_path.display()))?;
        Ok(Transport::Tls {
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            certificate,
            handshakes: Semaphore::new(HANDSHAKES_MAX),
        })
    }

    pub fn certificate(&self) -> Option<&Certificate> {
        match self {
            Transport::Tls { certificate, .. } => Some(certificate),
            Transport::Plaintext => None,
        }
    }

    /// The connection's stream once its handshake is done; `None` closes it without a word
    /// (not TLS, a failed or slow handshake, too many handshakes at once). Call it in the
    /// connection's own task.
    pub async fn accept(&self, tcp: TcpStream, peer: SocketAddr) -> Option<Stream> {
        // Small messages must leave at once: Nagle's algorithm would hold an acknowledgement back
        // until the previous one is acked by the peer.
        let _ = tcp.set_nodelay(true);
        let Transport::Tls {
            acceptor,
            handshakes,
            ..
        } = self
        else {
            return Some(Box::new(tcp));
        };
        let Ok(_permit) = handshakes.try_acquire() else {
            tracing::warn!("tls {peer}: {HANDSHAKES_MAX} handshakes in progress; closed");
            return None;
        };
        let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        match tokio::time::timeout(timeout, handshake(acceptor, tcp, peer)).await {
            Ok(stream) => stream,
            Err(_) => {
                tracing::debug!("tls {peer}: no handshake within {HANDSHAKE_TIMEOUT_MS} ms");
                None
            }
        }
    }
}

async fn handshake(acceptor: &TlsAcceptor, tcp: TcpStream, peer: SocketAddr) -> Option<Stream> {
    // rustls answers a record it cannot parse with an alert: a plaintext client would read bytes
    // back. Looking at the first byte first keeps the answer to plain HTTP or FIX to nothing.
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(1) if first[0] == RECORD_HANDSHAKE => {}
        Ok(1) => {
            tracing::info!(
                "tls {peer}: not a TLS client (plain HTTP or FIX on a TLS port?); closed"
            );
            return None;
        }
        _ => return None,
    }
    match acceptor.accept(tcp).await {
        Ok(stream) => Some(Box::new(stream)),
        Err(e) => {
            tracing::debug!("tls {peer}: handshake failed: {e}");
            None
        }
    }
}

/// The warning `kinko serve` logs when it serves plain TCP.
pub fn plaintext_warning(http: SocketAddr, fix: SocketAddr) -> String {
    format!(
        "PLAINTEXT: TLS IS OFF (transport = \"plaintext\" or --plaintext). HTTP, WEBSOCKET ({http}) AND FIX ({fix}) \
         ARE NOT ENCRYPTED: API keys, passwords and orders cross the network readable by anyone \
         on the path. For benchmarks and local tests only."
    )
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain, leaf first, and the leaf's key.
type Chain = Vec<CertificateDer<'static>>;
type Key = PrivateKeyDer<'static>;

/// `DATA/tls/cert.pem` and `key.pem`: the generated certificate's files.
pub fn generated_paths(tls_dir: &Path) -> (PathBuf, PathBuf) {
    (tls_dir.join("cert.pem"), tls_dir.join("key.pem"))
}

/// The certificate of an earlier start, or a new one. The certificate file is written last, so
/// its presence says the pair is whole.
fn load_or_generate(tls_dir: &Path) -> Result<(Chain, Key, PathBuf, bool), String> {
    let (cert_path, key_path) = generated_paths(tls_dir);
    let generated = !cert_path.exists();
    if generated {
        generate(tls_dir, &cert_path, &key_path)?;
    } else {
        warn_if_readable_by_others(&key_path);
    }
    let (chain, key) = load(&cert_path, &key_path)?;
    Ok((chain, key, cert_path, generated))
}

fn generate(tls_dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), String> {
    let context = |e: &dyn std::fmt::Display| format!("tls: {}: {e}", tls_dir.display());
    create_private_dir(tls_dir).map_err(|e| context(&e))?;
    let names: Vec<String> = GENERATED_NAMES.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| context(&e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Kinko localhost (self-signed)");
    // ECDSA P-256. The validity is rcgen's default (1975 to 4096): the certificate lives as long
    // as the data folder, and clients pin it by its file or fingerprint, not by a CA's schedule.
    let key = rcgen::KeyPair::generate().map_err(|e| context(&e))?;
    let cert = params.self_signed(&key).map_err(|e| context(&e))?;
    let key_new = key_path.with_extension("pem.new");
    let cert_new = cert_path.with_extension("pem.new");
    write_private(&key_new, key.serialize_pem().as_bytes()).map_err(|e| context(&e))?;
    std::fs::write(&cert_new, cert.pem()).map_err(|e| context(&e))?;
    std::fs::rename(&key_new, key_path).map_err(|e| context(&e))?;
    std::fs::rename(&cert_new, cert_path).map_err(|e| context(&e))?;
    tracing::info!(
        "tls: generated a self-signed certificate for {} in {}",
        GENERATED_NAMES.join(", "),
        cert_path.display()
    );
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Writes a file that only its owner can read (0600), whatever the umask.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn warn_if_readable_by_others(key_path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(key_path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "tls: {} is readable by others (mode {mode:o}); chmod 600 it",
                    key_path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = key_path;
}

/// A PEM certificate chain (leaf first) and its private key.
fn load(cert_path: &Path, key_path: &Path) -> Result<(Chain, Key), String> {
    let chain = certificates(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("tls: {}: no private key: {e}", key_path.display()))?;
    Ok((chain, key))
}

/// Every certificate of a PEM file; at least one.
fn certificates(path: &Path) -> Result<Chain, String> {
    let bad = |e: &dyn std::fmt::Display| format!("tls: {}: {e}", path.display());
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if chain.is_empty() {
        return Err(bad(&"no certificate in the file"));
    }
    Ok(chain)
}

/// `AB:CD:…`, 32 bytes in upper-case hex.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

// ------------------------------------------------------------------------- the HTTP listener

/// The HTTP port as `axum::serve` sees it: connections whose handshake is done. The TCP accept
/// loop runs in its own task and hands each connection to a task of its own for the handshake.
pub struct Incoming {
    local: SocketAddr,
    accepted: mpsc::Receiver<(Stream, SocketAddr)>,
}

/// The client's address, for the WebSocket handler (`ConnectInfo<Peer>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl Incoming {
    /// Starts accepting on `listener`; the accept loop ends when the `Incoming` is dropped.
    pub fn start(
        listener: TcpListener,
        transport: Arc<Transport>,
    ) -> io::Result<(Incoming, JoinHandle<()>)> {
        let local = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(ACCEPTED_MAX);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    _ = sender.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            tracing::warn!("http accept: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let (transport, sender) = (transport.clone(), sender.clone());
                tokio::spawn(async move {
                    if let Some(stream) = transport.accept(tcp, peer).await {
                        let _ = sender.send((stream, peer)).await;
                    }
                });
            }
        });
        Ok((Incoming { local, accepted }, task))
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Stream, SocketAddr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop has ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, Incoming>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Incoming>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

// ------------------------------------------------------------------------------- the clients

/// A client configuration that trusts exactly the certificates of one PEM file.
pub fn client_config(ca_path: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_path)? {
        roots
            .add(cert)
            .map_err(|e| format!("tls: {}: {e}", ca_path.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TLS connection to `host` (a name or an IP address) over `tcp`.
pub async fn connect_tls(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        .to_owned();
    TlsConnector::from(config).connect(name, tcp).await
}

/// A WebSocket client connection: `ws://` in plain TCP, `wss://` trusting the PEM file `ca_path`
/// (a server's own certificate or its CA's) and nothing else.
pub async fn connect_ws(
    url: &str,
    ca_path: Option<&Path>,
) -> Result<WebSocketStream<Stream>, String> {
    let request = url
        .into_client_request()
        .map_err(|e| format!("{url}: {e}"))?;
    let uri = request.uri().clone();
    let secure = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => return Err(format!("{url}: not a ws:// or wss:// URL")),
    };
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let address = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((address, port))
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream: Stream = if secure {
        let ca_path =
            ca_path.ok_or_else(|| format!("{url}: wss:// needs a certificate to trust"))?;
        let config = client_config(ca_path)?;
        let tls = connect_tls(config, host, tcp)
            .await
            .map_err(|e| format!("{url}: TLS (trusting {}): {e}", ca_path.display()))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_colon_separated_upper_case_sha256() {
        let print = fingerprint_sha256(b"abc");
        assert_eq!(
            print,
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    /// A fresh folder under the system's temporary folder, removed at the end of the test.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let path =
                std::env::temp_dir().join(format!("kinko-tls-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fingerprint_of(loaded: &(Chain, Key, PathBuf, bool)) -> String {
        fingerprint_sha256(&loaded.0[0])
    }

    #[test]
    fn the_generated_pair_is_kept_reused_and_never_half_trusted() {
        let scratch = Scratch::new("pair");
        let dir = scratch.0.join("tls");
        let (cert_path, key_path) = generated_paths(&dir);
        let first = load_or_generate(&dir).unwrap();
        assert!(first.3, "generated at the first start");
        assert_eq!(first.2, cert_path);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&key_path), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        assert!(!dir.join("key.pem.new").exists());
        assert!(!dir.join("cert.pem.new").exists());

        let again = load_or_generate(&dir).unwrap();
        assert!(!again.3, "reused");
        assert_eq!(fingerprint_of(&again), fingerprint_of(&first));

        // A key without its certificate (a start cut between the two renames): a new pair.
        std::fs::remove_file(&cert_path).unwrap();
        let fresh = load_or_generate(&dir).unwrap();
        assert!(fresh.3);
        assert_ne!(fingerprint_of(&fresh), fingerprint_of(&first));

        // A certificate without its key is an error, not a silent new certificate that every
        // client pinning the old one would refuse.
        std::fs::remove_file(&key_path).unwrap();
        let error = load_or_generate(&dir).unwrap_err();
        assert!(error.contains("key.pem"), "{error}");
        std::fs::write(&key_path, "not a key").unwrap();
        let error = load_or_generate(&dir).unwrap_err();
        assert!(error.contains("no private key"), "{error}");
    }

    #[test]
    fn the_plaintext_warning_shouts_and_names_both_ports() {
        let warning = plaintext_warning(
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:9878".parse().unwrap(),
        );
        assert!(warning.starts_with("PLAINTEXT:"), "{warning}");
        assert!(warning.contains("NOT ENCRYPTED"), "{warning}");
        assert!(warning.contains("127.0.0.1:8080"), "{warning}");
        assert!(warning.contains("127.0.0.1:9878"), "{warning}");
    }
}
