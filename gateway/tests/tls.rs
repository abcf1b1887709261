//! Transport security against the real server (issue #11): HTTPS, wss and FIX over TLS with the
//! certificate `kinko serve` generates at its first start, refused handshakes for clients that do
//! not trust it, nothing at all for plaintext clients on a TLS port, the certificate's reuse across
//! restarts, a configured certificate, and plain TCP only when asked for, with its warning.

mod common;
mod fixclient;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use fixclient::*;
use gateway::config::{ServeConfig, Transport};
use gateway::server::{self, Running};
use gateway::transport::{self, fingerprint_sha256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The test configuration (ephemeral loopback ports) with TLS, as `kinko serve` runs by default.
fn tls_config(dir: &Path) -> ServeConfig {
    let mut config = config(dir);
    config.server.transport = Transport::Tls;
    config
}

fn cert_path(data: &Path) -> PathBuf {
    data.join("tls").join("cert.pem")
}

/// A client configuration trusting the certificate the server generated in `data`.
fn trusting(data: &Path) -> Arc<rustls::ClientConfig> {
    transport::client_config(&cert_path(data)).expect("the generated certificate loads")
}

/// A client configuration that trusts no one (as a client with the public CAs sees a
/// self-signed certificate).
fn trusting_no_one() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Arc::new(config)
}

async fn tls_to(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    transport::connect_tls(config, "127.0.0.1", tcp).await
}

/// `GET path` over TLS; the status code and the body.
async fn https_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> (u16, String) {
    let mut stream = tls_to(addr, config).await.expect("handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let mut response = Vec::new();
    // A server that closes without close_notify ends the read with an error: what came counts.
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8(response).expect("utf-8");
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

/// A FIX client of demo key `name` over TLS.
async fn fix_over_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> FixClient {
    let stream = tls_to(addr, config).await.expect("FIX handshake");
    FixClient::over(Box::new(stream), name)
}

/// What a plaintext client reads back after sending `request` to a TLS port: `Ok(0)` (closed) or
/// an error (reset), never bytes.
async fn plaintext_reply(addr: SocketAddr, request: &[u8]) -> io::Result<usize> {
    let mut stream = TcpStream::connect(addr).await?;
    // The server may close before the request is all in: a failed write is an answer too.
    stream.write_all(request).await?;
    let mut buffer = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buffer)).await;
    read.expect("the server closes the connection")
}

fn fix_logon_bytes() -> Vec<u8> {
    let client_fields = logon_fields("alice", 30, true);
    let mut body = gateway::fix::codec::Body::new("A");
    body.field(34, 1)
        .field(49, "demo-alice")
        .field(52, now())
        .field(56, ACCEPTOR);
    for (tag, value) in &client_fields {
        body.field(*tag, value);
    }
    gateway::fix::codec::frame(body.as_bytes())
}

async fn start_tls(dir: &Path) -> Running {
    server::start(tls_config(dir)).await.expect("server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trusts_the_generated_certificate_logs_in_over_wss_and_reads_https() {
    let dir = TempDir::new("tls-trusted");
    let running = start_tls(dir.path()).await;
    let certificate = running.certificate.clone().expect("TLS by default");
    assert_eq!(certificate.cert_path, cert_path(dir.path()));
    assert!(certificate.generated);
    let der = CertificateDer::from_pem_file(&certificate.cert_path).unwrap();
    assert_eq!(certificate.fingerprint_sha256, fingerprint_sha256(&der));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("tls").join("key.pem");
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key is its owner's alone");
    }

    let ca = cert_path(dir.path());
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("wss://{host}:{}/ws", running.http.port());
        let mut client = Client::connect_url(&url, Some(&ca)).await.expect("wss");
        let reply = client.login_as("alice", false).await;
        assert_eq!(reply["type"], "logged_in", "{url}: {reply}");
        client.close().await;
    }
    let (status, body) = https_get(running.http, trusting(dir.path()), "/health").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    // The certificate names localhost and the loopback addresses, nothing else.
    let tcp = TcpStream::connect(running.http).await.unwrap();
    let wrong_name = transport::connect_tls(trusting(dir.path()), "example.com", tcp).await;
    let error = wrong_name.expect_err("a name the certificate does not carry");
    let error = error.to_string();
    assert!(
        error.contains("not valid for name") || error.contains("NotValidForName"),
        "{error}"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_over_tls_logs_on_and_trades_its_session() {
    let dir = TempDir::new("tls-fix");
    let running = start_tls(dir.path()).await;
    let mut client = fix_over_tls(running.fix, trusting(dir.path()), "alice").await;
    let reply = client.logon(30, true).await;
    assert!(
        has(&reply, &[(49, ACCEPTOR), (56, "demo-alice")]),
        "{}",
        reply.text()
    );
    client.ping("over-tls").await;
    client.send("5", &[]).await;
    let logout = client.until_type("5").await;
    assert_eq!(logout.msg_type(), "5");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_certificate_is_refused_on_both_ports() {
    let dir = TempDir::new("tls-untrusted");
    let running = start_tls(dir.path()).await;
    // Another self-signed certificate for the same names: trusting it is trusting someone else.
    let other_dir = TempDir::new("tls-other");
    let other = tls_config(other_dir.path());
    let other_transport = gateway::transport::Transport::prepare(&other).unwrap();
    let other_cert = other_transport.certificate().unwrap().cert_path.clone();
    let strangers = [
        trusting_no_one(),
        transport::client_config(&other_cert).unwrap(),
    ];
    for (port, addr) in [("http", running.http), ("fix", running.fix)] {
        for config in &strangers {
            let refused = tls_to(addr, config.clone()).await;
            let error = refused.expect_err("an unknown certificate");
            assert!(
                error.to_string().contains("invalid peer certificate"),
                "{port}: {error}"
            );
        }
    }
    let url = format!("wss://{}/ws", running.http);
    let refused = Client::connect_url(&url, Some(&other_cert)).await;
    assert!(refused.is_err(), "wss trusting another certificate");

    // The server goes on serving the clients that trust it.
    let mut client = Client::connect_url(&url, Some(&cert_path(dir.path())))
        .await
        .expect("wss");
    assert_eq!(client.login_as("bob", false).await["type"], "logged_in");
    let mut fix = fix_over_tls(running.fix, trusting(dir.path()), "carol").await;
    fix.logon(30, true).await;
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_on_a_tls_port_gets_nothing_but_a_closed_connection() {
    let dir = TempDir::new("tls-plaintext-client");
    let running = start_tls(dir.path()).await;
    let http_request = format!(
        "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        running.http
    );
    let ws_upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        running.http
    );
    let cases: [(&str, SocketAddr, Vec<u8>); 4] = [
        ("GET /health", running.http, http_request.into_bytes()),
        ("a WebSocket upgrade", running.http, ws_upgrade.into_bytes()),
        ("a FIX Logon", running.fix, fix_logon_bytes()),
        ("garbage", running.fix, vec![0xff; 64]),
    ];
    for (what, addr, request) in cases {
        match plaintext_reply(addr, &request).await {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("{what} in plaintext on a TLS port got {n} bytes back"),
        }
    }
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_half_handshake_does_not_hold_up_the_other_clients() {
    let dir = TempDir::new("tls-silent");
    let running = start_tls(dir.path()).await;
    let mut silent = Vec::new();
    for addr in [running.http, running.fix] {
        silent.push(TcpStream::connect(addr).await.unwrap());
        // The first byte of a ClientHello, and then nothing.
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        silent.push(half);
    }
    let trusted = tokio::time::timeout(Duration::from_secs(5), async {
        let (status, _) = https_get(running.http, trusting(dir.path()), "/health").await;
        assert_eq!(status, 200);
        let mut fix = fix_over_tls(running.fix, trusting(dir.path()), "alice").await;
        fix.logon(30, true).await;
    });
    trusted
        .await
        .expect("handshakes run in their own tasks, not the accept loops");
    drop(silent);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_handshake_is_refused_and_the_server_goes_on() {
    let dir = TempDir::new("tls-garbled");
    let running = start_tls(dir.path()).await;
    // A handshake record's first byte, then bytes of a small xorshift generator: rustls refuses
    // them (perhaps with an alert: this client did start TLS), and nothing else happens.
    let mut state = 0x6b69_6e6b_6f00_0011_u64;
    for round in 0..32 {
        let addr = [running.http, running.fix][round % 2];
        let mut bytes = vec![0x16];
        for _ in 0..(16 + round * 37) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(state as u8);
        }
        if round % 4 == 0 {
            // A plausible record header with an absurd length.
            bytes[1..5].copy_from_slice(&[0x03, 0x01, 0xff, 0xff]);
        }
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut sink));
        read.await
            .expect("the server closes a garbled handshake")
            .ok();
    }
    let (status, _) = https_get(running.http, trusting(dir.path()), "/health").await;
    assert_eq!(status, 200);
    let mut fix = fix_over_tls(running.fix, trusting(dir.path()), "bob").await;
    fix.logon(30, true).await;
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_handshake_is_closed_after_the_timeout() {
    let dir = TempDir::new("tls-timeout");
    let running = start_tls(dir.path()).await;
    let started = tokio::time::Instant::now();
    let mut waits = Vec::new();
    for (addr, first) in [
        (running.http, &[][..]),
        (running.fix, &[0x16, 0x03, 0x01][..]),
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(first).await.unwrap();
        waits.push(tokio::spawn(async move {
            let mut buffer = [0u8; 64];
            let limit = Duration::from_millis(transport::HANDSHAKE_TIMEOUT_MS + 5_000);
            let read = tokio::time::timeout(limit, stream.read(&mut buffer)).await;
            match read.expect("closed within the handshake timeout") {
                Ok(0) | Err(_) => {}
                Ok(n) => panic!("{n} bytes to a client that never said hello"),
            }
        }));
    }
    for wait in waits {
        wait.await.unwrap();
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(transport::HANDSHAKE_TIMEOUT_MS - 500),
        "closed after {waited:?}, before the timeout"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_generated_once_and_reused_on_restart() {
    let dir = TempDir::new("tls-restart");
    let running = start_tls(dir.path()).await;
    let first = running.certificate.clone().unwrap();
    assert!(first.generated);
    let pem = std::fs::read(&first.cert_path).unwrap();
    running.shutdown().await.unwrap();

    let running = start_tls(dir.path()).await;
    let again = running.certificate.clone().unwrap();
    assert!(!again.generated, "the first start's certificate is reused");
    assert_eq!(again.fingerprint_sha256, first.fingerprint_sha256);
    assert_eq!(std::fs::read(&again.cert_path).unwrap(), pem);
    // A client that pinned the first start's certificate still connects.
    let (status, _) = https_get(running.http, trusting(dir.path()), "/health").await;
    assert_eq!(status, 200);
    let banner = server::banner(&tls_config(dir.path()), &running);
    assert!(banner.contains(&again.fingerprint_sha256), "{banner}");
    assert!(banner.contains("reused"), "{banner}");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_certificate_is_used_and_a_missing_one_stops_the_start() {
    // The files of another data folder's generated certificate stand for an operator's own.
    let source = TempDir::new("tls-source");
    let made = gateway::transport::Transport::prepare(&tls_config(source.path())).unwrap();
    let made = made.certificate().unwrap().clone();
    let dir = TempDir::new("tls-configured");
    let mut config = tls_config(dir.path());
    config.tls.cert = Some(made.cert_path.clone());
    config.tls.key = Some(source.path().join("tls").join("key.pem"));
    let running = server::start(config.clone()).await.expect("starts");
    let certificate = running.certificate.clone().unwrap();
    assert_eq!(certificate.fingerprint_sha256, made.fingerprint_sha256);
    assert!(!certificate.generated);
    assert!(!dir.path().join("tls").exists(), "nothing generated");
    let (status, _) = https_get(running.http, trusting(source.path()), "/health").await;
    assert_eq!(status, 200);
    running.shutdown().await.unwrap();

    let missing = dir.path().join("no-such-cert.pem");
    config.tls.cert = Some(missing.clone());
    let error = server::start(config.clone())
        .await
        .err()
        .expect("a missing certificate is an error");
    assert!(error.contains("no-such-cert.pem"), "{error}");
    config.tls.cert = Some(made.cert_path.clone());
    config.tls.key = Some(made.cert_path.clone());
    let error = server::start(config)
        .await
        .err()
        .expect("a certificate is not a key");
    assert!(error.contains("private key"), "{error}");
}

/// Everything the server logs while `run` runs on this thread. Only for callsites no other test
/// of this file reaches concurrently: tracing caches a callsite's interest when first hit.
async fn logs_of<T>(run: impl std::future::Future<Output = T>) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let out = run.await;
    drop(guard);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_must_be_asked_for_and_is_announced_loudly() {
    let dir = TempDir::new("tls-plaintext");
    let config = config(dir.path());
    assert_eq!(config.server.transport, Transport::Plaintext);
    let (running, logs) = logs_of(server::start(config.clone())).await;
    let running = running.expect("starts");
    assert!(running.certificate.is_none());
    assert!(
        !dir.path().join("tls").exists(),
        "no certificate in plaintext"
    );
    let warning = logs
        .lines()
        .find(|line| line.contains("PLAINTEXT"))
        .unwrap_or_else(|| panic!("no PLAINTEXT warning in the logs: {logs}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("NOT ENCRYPTED"), "{warning}");
    let banner = server::banner(&config, &running);
    assert!(banner.contains("PLAINTEXT"), "{banner}");
    assert!(banner.contains("NOT ENCRYPTED"), "{banner}");
    assert!(
        banner.contains(&format!("ws://{}/ws", running.http)),
        "{banner}"
    );
    assert!(!banner.contains("wss://"), "{banner}");
    assert!(!banner.contains("https://"), "{banner}");
    let mut client = Client::connect(running.http).await;
    assert_eq!(client.login_as("alice", false).await["type"], "logged_in");
    running.shutdown().await.unwrap();

    // The TLS start says where the certificate is, its fingerprint and how to trust it.
    let dir = TempDir::new("tls-banner");
    let config = tls_config(dir.path());
    let (running, logs) = logs_of(server::start(config.clone())).await;
    let running = running.expect("starts");
    assert!(!logs.contains("PLAINTEXT"), "{logs}");
    // Its log line is not checked: the other tests hit the same callsite at the same time, and
    // tracing may cache it as uninteresting before this thread's subscriber is seen.
    let fingerprint = running.certificate.clone().unwrap().fingerprint_sha256;
    let banner = server::banner(&config, &running);
    for wanted in [
        format!("https://{}/health", running.http),
        format!("wss://{}/ws", running.http),
        format!("{} over TLS", running.fix),
        fingerprint,
        format!("curl --cacert {}", cert_path(dir.path()).display()),
    ] {
        assert!(banner.contains(&wanted), "{wanted} in {banner}");
    }
    assert!(!banner.contains("PLAINTEXT"), "{banner}");
    running.shutdown().await.unwrap();
}
