//! A real server on an ephemeral loopback port and a WebSocket client for it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use gateway::config::{default_config, ServeConfig, Transport};
use gateway::server::{self, Running};
use gateway::transport::Stream;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("kinko-gw-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // The master key that seals API-key secrets lives beside a data folder, never in it.
        let mut master = self.0.clone().into_os_string();
        master.push(".master-key");
        let _ = std::fs::remove_file(master);
    }
}

/// The default configuration on ephemeral loopback ports, in plain TCP: these tests are about
/// the API, not the transport (tests/tls.rs and tests/admin.rs run TLS).
pub fn config(dir: &Path) -> ServeConfig {
    let mut config = default_config();
    config.server.data = dir.to_path_buf();
    config.server.http = "127.0.0.1:0".parse().unwrap();
    config.server.fix = "127.0.0.1:0".parse().unwrap();
    config.server.transport = Transport::Plaintext;
    // Bad-input tests refuse many logins from 127.0.0.1 on purpose; the throttling of repeated
    // failures has its own tests (tests/security.rs) with the production limit or a lower one.
    config.security.auth_failures_max = 1_000;
    config
}

/// The custody driver's interval in the custody tests.
pub const INTERVAL_MS: u64 = 100;

/// The default demo exchange, with a fast reconciliation, no address cooldown (the cooldown has
/// its own tests in the engine) and house coins to top up with.
pub fn custody_config(dir: &std::path::Path) -> ServeConfig {
    let mut config = config(dir);
    config.custody.reconcile_interval_ms = INTERVAL_MS;
    let mut exchange = engine::defaults::config();
    exchange.custody.address_cooldown_ns = 0;
    config.exchange = Some(exchange);
    let house = config
        .accounts
        .iter_mut()
        .find(|a| a.name == "house")
        .unwrap();
    for (code, amount) in [("XEM", "500000"), ("MONA", "20000"), ("BCH", "40")] {
        house.deposits.insert(code.into(), amount.into());
    }
    config
}

/// A plain HTTP/1.1 request on a fresh connection; returns the status code and the JSON body.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("reads");
    let text = String::from_utf8(response).expect("utf-8");
    let status: u16 = text[9..12].parse().expect("status code");
    let (_, body) = text.split_once("\r\n\r\n").expect("a body");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

pub async fn start(config: ServeConfig) -> (Running, SocketAddr) {
    let running = server::start(config).await.expect("server starts");
    let addr = running.http;
    (running, addr)
}

/// A GET on a fresh connection: the whole response, headers and all, as text.
pub async fn http_text(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// A GET over a raw socket (no HTTP client dependency needed for one call); its JSON body.
pub async fn http_get_json(addr: SocketAddr, path: &str) -> Value {
    let response = http_text(addr, path).await;
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON body: {response}"))
}

pub struct Client {
    ws: WebSocketStream<Stream>,
    pub seen: Vec<Value>,
    /// The code of the server's close frame, once `next` has read one.
    pub close_frame: Option<u16>,
    req_id: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Client {
    /// A plain `ws://` client of a plaintext server.
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::connect_url(&format!("ws://{addr}/ws"), None)
            .await
            .expect("connects")
    }

    /// A client of `url` (`ws://` or `wss://` trusting the PEM file `ca`).
    pub async fn connect_url(url: &str, ca: Option<&Path>) -> Result<Client, String> {
        let ws = gateway::transport::connect_ws(url, ca).await?;
        Ok(Client {
            ws,
            seen: Vec::new(),
            close_frame: None,
            req_id: 0,
        })
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Sends `request` with a fresh `req_id` and returns that id.
    pub async fn send(&mut self, mut request: Value) -> u64 {
        self.req_id += 1;
        request["req_id"] = json!(self.req_id);
        self.send_text(&request.to_string()).await;
        self.req_id
    }

    /// The next JSON message, or `None` when the connection is closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let Ok(message) = tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await
            else {
                let recent: Vec<&Value> = self.seen.iter().rev().take(6).collect();
                panic!("no message within 10 s; the last ones seen, newest first: {recent:#?}");
            };
            let message = message?;
            match message.ok()? {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).expect("server sends JSON");
                    self.seen.push(value.clone());
                    return Some(value);
                }
                Message::Close(frame) => {
                    self.close_frame = frame.map(|f| u16::from(f.code));
                    return None;
                }
                _ => {}
            }
        }
    }

    /// Reads until a message satisfies `wanted`, and returns it.
    pub async fn until(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let message = self.next().await.expect("connection open");
            if wanted(&message) {
                return message;
            }
        }
    }

    /// The reply (ack or error) to request `req_id`.
    pub async fn reply(&mut self, req_id: u64) -> Value {
        self.until(|m| {
            m["req_id"] == json!(req_id)
                && (m["type"] == "ack"
                    || m["type"] == "error"
                    || m["type"] == "logged_in"
                    || m["type"] == "subscribed"
                    || m["type"] == "pong"
                    || m["type"] == "deposit_address"
                    || m["type"] == "custody_status"
                    || m["type"] == "open_orders")
        })
        .await
    }

    pub async fn request(&mut self, request: Value) -> Value {
        let req_id = self.send(request).await;
        self.reply(req_id).await
    }

    pub async fn login_as(&mut self, name: &str, cancel_on_disconnect: bool) -> Value {
        let key = format!("demo-{name}");
        let secret = format!("demo-{name}-secret");
        let ts = now_ms();
        let nonce = ts;
        let sig = gateway::auth::sign(&secret, &key, ts, nonce);
        self.request(json!({"type": "login", "key": key, "ts": ts, "nonce": nonce, "sig": sig, "cancel_on_disconnect": cancel_on_disconnect}))
            .await
    }

    pub async fn order(&mut self, fields: Value) -> Value {
        let mut request = json!({"type": "new_order", "instrument": "BTC/JPY"});
        for (k, v) in fields.as_object().unwrap() {
            request[k] = v.clone();
        }
        self.request(request).await
    }

    /// The latest balance message seen for `asset`.
    pub fn balance(&self, asset: &str) -> Option<(String, String)> {
        let pair = |m: &Value| {
            (
                m["available"].as_str().unwrap().to_string(),
                m["held"].as_str().unwrap().to_string(),
            )
        };
        self.seen
            .iter()
            .rev()
            .find_map(|m| match m["type"].as_str() {
                Some("balance") if m["asset"] == asset => Some(pair(m)),
                Some("logged_in") => m["balances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|b| b["asset"] == asset)
                    .map(pair),
                _ => None,
            })
    }

    /// Waits until the latest known balance of `asset` is `(available, held)`.
    pub async fn wait_balance(&mut self, asset: &str, available: &str, held: &str) {
        while self.balance(asset) != Some((available.to_string(), held.to_string())) {
            self.next().await.expect("connection open");
        }
    }

    /// Waits for the server's close and checks its code, and the error it sent just before it.
    pub async fn closed_with(&mut self, close: u16, code: &str) {
        assert_eq!(self.close_code().await, Some(close), "closed with {close}");
        assert!(
            self.seen.iter().any(|m| m["code"] == code),
            "no {code} before the close: {:?}",
            self.seen
        );
    }

    /// Reads until the server's close frame and returns its code (`None`: closed without one).
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .ok()?;
            match next? {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(Message::Text(text)) => self
                    .seen
                    .push(serde_json::from_str(&text).unwrap_or(Value::Null)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
