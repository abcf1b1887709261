//! Keys and permissions against the real server: keys made by an operator, each permission
//! enforced on the WebSocket, the private HTTP API and FIX; revocation and rotation closing open
//! sessions; expiry; the IP allowlist; no secret in clear in the data folder (and keys kept across a
//! restart); throttling of repeated failures with an alert an operator can read; the audit trail of
//! operator actions from the journal alone.

mod common;
mod fixclient;

use std::net::SocketAddr;
use std::path::Path;

use common::*;
use fixclient::*;
use serde_json::{json, Value};

async fn operator(addr: SocketAddr) -> Client {
    let mut op = Client::connect(addr).await;
    assert_eq!(op.login_as("operator", false).await["type"], "logged_in");
    op
}

/// Creates a key on alice's account; returns (key, secret).
async fn create_key(op: &mut Client, fields: Value) -> (String, String) {
    let mut request = json!({"type": "create_key", "account": "alice"});
    for (k, v) in fields.as_object().unwrap() {
        request[k] = v.clone();
    }
    let req_id = op.send(request).await;
    let reply = op
        .until(|m| m["req_id"] == json!(req_id) && m["type"] != "ack")
        .await;
    assert_eq!(reply["type"], "key_created", "{reply}");
    (
        reply["key"].as_str().unwrap().to_string(),
        reply["secret"].as_str().unwrap().to_string(),
    )
}

/// The reply to a key request (create, rotate, revoke): its own type, or an error.
async fn key_request(op: &mut Client, request: Value) -> Value {
    let req_id = op.send(request).await;
    op.until(|m| m["req_id"] == json!(req_id)).await
}

async fn login(addr: SocketAddr, key: &str, secret: &str) -> (Client, Value) {
    let mut client = Client::connect(addr).await;
    let ts = now_ms();
    let sig = gateway::auth::sign(secret, key, ts, ts);
    let reply = client
        .request(json!({"type": "login", "key": key, "ts": ts, "nonce": ts, "sig": sig}))
        .await;
    (client, reply)
}

/// A private HTTP request signed with `key`/`secret`: (status, body).
async fn private(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    secret: &str,
    body: Option<Value>,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let ts = now_ms();
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nonce = ts * 1_000 + NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1_000;
    let sig = gateway::auth::sign_message(
        secret,
        gateway::auth::http_message(ts, nonce, method, path, &body).as_bytes(),
    );
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         KINKO-KEY: {key}\r\nKINKO-TS: {ts}\r\nKINKO-NONCE: {nonce}\r\nKINKO-SIGN: {sig}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let status: u16 = text[9..12].parse().unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn buy() -> Value {
    json!({"type": "new_order", "instrument": "BTC/JPY", "side": "buy", "order_type": "limit",
        "price": "14000000", "qty": "0.001", "client_order_id": 1})
}

/// A FIX connection logged on with `key`/`secret` (a Logon with Username/Password).
async fn fix_logon(fix: SocketAddr, key: &str, secret: &str) -> (FixClient, Option<Message>) {
    let mut client = FixClient::connect(fix, "x").await;
    client.sender = key.to_string();
    let fields = [
        (98, "0"),
        (108, "30"),
        (141, "Y"),
        (553, key),
        (554, secret),
    ];
    client.send("A", &fields).await;
    let reply = client.next().await;
    (client, reply)
}

use gateway::fix::codec::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_permission_is_enforced_on_the_websocket_http_and_fix() {
    let dir = TempDir::new("perm");
    let (server, addr) = start(config(dir.path())).await;
    let mut op = operator(addr).await;
    let (reader, reader_secret) = create_key(
        &mut op,
        json!({"permissions": ["read"], "key": "alice-reader"}),
    )
    .await;
    let (trader, trader_secret) =
        create_key(&mut op, json!({"permissions": ["read", "trade"]})).await;
    let (payer, payer_secret) =
        create_key(&mut op, json!({"permissions": ["read", "withdraw"]})).await;
    assert_eq!(reader, "alice-reader");
    assert!(trader.starts_with("k-") && trader_secret.len() == 64);

    // The secret is shown once: the list never has it.
    let list = key_request(&mut op, json!({"type": "list_keys"})).await;
    assert_eq!(list["type"], "keys");
    assert_eq!(list["keys"].as_array().unwrap().len(), 6 + 3);
    let list = list.to_string();
    assert!(!list.contains(&trader_secret) && !list.contains("secret"));

    // WebSocket.
    let (mut ws, reply) = login(addr, &reader, &reader_secret).await;
    assert_eq!(reply["permissions"], json!(["read"]));
    let refused = ws.request(buy()).await;
    assert_eq!(refused["code"], "permission_denied", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("`trade`"));
    assert_eq!(
        ws.request(json!({"type": "open_orders"})).await["type"],
        "open_orders"
    );
    let (mut ws, _) = login(addr, &trader, &trader_secret).await;
    assert_eq!(ws.request(buy()).await["type"], "ack");
    let address =
        json!({"type": "add_withdrawal_address", "asset": "BTC", "address": "bc1-attacker"});
    assert_eq!(
        ws.request(address.clone()).await["code"],
        "permission_denied",
        "a trading key cannot change the withdrawal whitelist"
    );
    let withdraw =
        json!({"type": "withdraw", "asset": "BTC", "amount": "0.1", "address": "bc1-attacker"});
    assert_eq!(
        ws.request(withdraw.clone()).await["code"],
        "permission_denied"
    );
    let remove =
        json!({"type": "remove_withdrawal_address", "asset": "BTC", "address": "bc1-attacker"});
    assert_eq!(
        ws.request(remove).await["code"],
        "permission_denied",
        "nor take an address off it"
    );
    let (mut ws, _) = login(addr, &payer, &payer_secret).await;
    assert_eq!(ws.request(buy()).await["code"], "permission_denied");
    assert_eq!(ws.request(address).await["type"], "ack");

    // The private HTTP API.
    let (status, account) = private(
        addr,
        "GET",
        "/api/v1/account",
        &reader,
        &reader_secret,
        None,
    )
    .await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(
        account["orders"].as_array().unwrap().len(),
        1,
        "the trader's order"
    );
    let (status, body) = private(
        addr,
        "POST",
        "/api/v1/orders",
        &reader,
        &reader_secret,
        Some(buy()),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("permission_denied"))
    );
    let mut second = buy();
    second["client_order_id"] = json!(2);
    let (status, body) = private(
        addr,
        "POST",
        "/api/v1/orders",
        &trader,
        &trader_secret,
        Some(second),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "ack");
    let (status, body) = private(
        addr,
        "POST",
        "/api/v1/withdrawals",
        &trader,
        &trader_secret,
        Some(withdraw.clone()),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("permission_denied"))
    );
    let (status, body) = private(
        addr,
        "GET",
        "/api/v1/account",
        &trader,
        "not-the-secret",
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("bad_signature"))
    );

    // The withdrawal key passes the permission check over HTTP; the address it just added
    // still waits out its cooldown.
    let mut withdrawal = withdraw.clone();
    withdrawal["amount"] = json!("0.001");
    let (status, body) = private(
        addr,
        "POST",
        "/api/v1/withdrawals",
        &payer,
        &payer_secret,
        Some(withdrawal),
    )
    .await;
    assert_ne!(status, 403, "{body}");
    assert_eq!(body["code"], "address_cooling_down", "{body}");

    // Without `read`: no private reads on any channel.
    let (blind, blind_secret) = create_key(&mut op, json!({"permissions": ["trade"]})).await;
    let (mut ws, reply) = login(addr, &blind, &blind_secret).await;
    assert_eq!(reply["permissions"], json!(["trade"]), "{reply}");
    let refused = ws.request(json!({"type": "open_orders"})).await;
    assert_eq!(refused["code"], "permission_denied", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("`read`"));
    let (status, body) = private(addr, "GET", "/api/v1/account", &blind, &blind_secret, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("permission_denied"))
    );
    let (mut fix, logon) = fix_logon(server.fix, &blind, &blind_secret).await;
    assert_eq!(logon.expect("a Logon answer").msg_type(), "A");
    fix.send("H", &[(37, "1"), (11, "21"), (55, "BTC/JPY"), (54, "1")])
        .await;
    let reject = fix.until_type("j").await;
    assert_fields(&reject, &[(380, "6"), (372, "H")]);
    assert!(
        reject.get(58).unwrap().contains("`read`"),
        "{}",
        reject.text()
    );

    // FIX: a read-only key logs on and may ask for status, not trade.
    let (mut fix, logon) = fix_logon(server.fix, &reader, &reader_secret).await;
    assert_eq!(logon.expect("a Logon answer").msg_type(), "A");
    fix.send("D", &limit("21", "1", "0.001", "14000000")).await;
    let reject = fix.until_type("j").await;
    assert_fields(&reject, &[(380, "6"), (372, "D")]);
    assert!(reject.get(58).unwrap().contains("`trade`"));
    let (mut fix, logon) = fix_logon(server.fix, &trader, &trader_secret).await;
    assert_eq!(logon.expect("a Logon answer").msg_type(), "A");
    fix.send("D", &limit("31", "1", "0.001", "14000000")).await;
    report(&mut fix, "31", "0").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_or_rotating_a_key_closes_its_open_sessions_at_once() {
    let dir = TempDir::new("revoke");
    let (server, addr) = start(config(dir.path())).await;
    let mut op = operator(addr).await;
    let (key, secret) = create_key(&mut op, json!({})).await;
    let (mut ws, reply) = login(addr, &key, &secret).await;
    assert_eq!(reply["type"], "logged_in");
    let (mut fix, logon) = fix_logon(server.fix, &key, &secret).await;
    assert_eq!(logon.unwrap().msg_type(), "A");

    let reply = key_request(&mut op, json!({"type": "revoke_key", "key": key})).await;
    assert_eq!(reply["type"], "key_revoked", "{reply}");
    ws.closed_with(1008, "key_revoked").await;
    let logout = fix.until_type("5").await;
    assert_eq!(logout.get(58), Some("key_revoked"));
    let (_, refused) = login(addr, &key, &secret).await;
    assert_eq!(refused["code"], "key_revoked");
    let (_, answer) = fix_logon(server.fix, &key, &secret).await;
    let answer = answer.expect("a Logout");
    assert_eq!(answer.msg_type(), "5");
    assert!(
        answer.get(58).unwrap().contains("revoked"),
        "{}",
        answer.text()
    );
    // Revoking twice, or an unknown key, is an error; a trader cannot revoke.
    let again = key_request(&mut op, json!({"type": "revoke_key", "key": key})).await;
    assert_eq!(again["code"], "invalid_key_request");
    let (mut alice, _) = login(addr, "demo-alice", "demo-alice-secret").await;
    let forbidden = key_request(&mut alice, json!({"type": "revoke_key", "key": "demo-bob"})).await;
    assert_eq!(forbidden["code"], "forbidden");

    // Rotation: the session is closed, the old secret is refused, the new one works.
    let (key, secret) = create_key(&mut op, json!({})).await;
    let (mut ws, _) = login(addr, &key, &secret).await;
    let rotated = key_request(&mut op, json!({"type": "rotate_key", "key": key})).await;
    assert_eq!(rotated["type"], "key_rotated", "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert_eq!(ws.close_code().await, Some(1008));
    assert_eq!(login(addr, &key, &secret).await.1["code"], "bad_signature");
    assert_eq!(login(addr, &key, &new_secret).await.1["type"], "logged_in");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_expiry_log_out_an_open_fix_session_too() {
    let dir = TempDir::new("fixcut");
    let (server, addr) = start(config(dir.path())).await;
    let mut op = operator(addr).await;
    let (key, secret) = create_key(&mut op, json!({})).await;
    let (mut fix, logon) = fix_logon(server.fix, &key, &secret).await;
    assert_eq!(logon.unwrap().msg_type(), "A");
    let rotated = key_request(&mut op, json!({"type": "rotate_key", "key": key})).await;
    assert_eq!(rotated["type"], "key_rotated", "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    let logout = fix.until_type("5").await;
    assert_eq!(logout.get(58), Some("key_rotated"));
    let (_, refused) = fix_logon(server.fix, &key, &secret).await;
    assert_eq!(refused.expect("a Logout").msg_type(), "5", "the old secret");
    let (mut fix, logon) = fix_logon(server.fix, &key, &new_secret).await;
    assert_eq!(logon.unwrap().msg_type(), "A", "the new secret");
    fix.send("D", &limit("41", "1", "0.001", "14000000")).await;
    report(&mut fix, "41", "0").await;

    // Room for the creation and the Logon on a loaded machine before it expires.
    let expires = now_ms() + 3_000;
    let (key, secret) = create_key(&mut op, json!({"expires_at": expires.to_string()})).await;
    let (mut fix, logon) = fix_logon(server.fix, &key, &secret).await;
    assert_eq!(logon.unwrap().msg_type(), "A");
    let logout = fix.until_type("5").await;
    assert_eq!(logout.get(58), Some("key_expired"));
    assert!(now_ms() >= expires);
    let (_, refused) = fix_logon(server.fix, &key, &secret).await;
    let refused = refused.expect("a Logout");
    assert!(
        refused.get(58).unwrap().contains("expired"),
        "{}",
        refused.text()
    );
    let (status, body) = private(addr, "GET", "/api/v1/account", &key, &secret, None).await;
    assert_eq!(body["code"], "key_expired", "{status} {body}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_change_takes_effect_even_if_the_operator_leaves_before_its_answer() {
    let dir = TempDir::new("leave");
    let (server, addr) = start(config(dir.path())).await;
    let mut op = operator(addr).await;
    let (key, secret) = create_key(&mut op, json!({})).await;
    let (mut ws, reply) = login(addr, &key, &secret).await;
    assert_eq!(reply["type"], "logged_in");
    // The operator asks for a rotation and is gone before the journal answers.
    let mut leaving = operator(addr).await;
    leaving
        .send(json!({"type": "rotate_key", "key": key}))
        .await;
    drop(leaving);
    ws.closed_with(1008, "key_rotated").await;
    assert_eq!(login(addr, &key, &secret).await.1["code"], "bad_signature");
    server.shutdown().await.unwrap();
    let read = replay::open_journal(dir.path()).unwrap();
    let report = replay::reports::actions::actions(&read).unwrap();
    assert!(report
        .actions
        .iter()
        .any(|a| a.action == "key_rotated" && a.actor == "demo-operator"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_the_ip_allowlist_are_enforced() {
    let dir = TempDir::new("expiry");
    let (server, addr) = start(config(dir.path())).await;
    let mut op = operator(addr).await;
    let expires = now_ms() + 1_500;
    let (key, secret) = create_key(&mut op, json!({"expires_at": expires.to_string()})).await;
    let (mut ws, reply) = login(addr, &key, &secret).await;
    assert_eq!(reply["type"], "logged_in");
    ws.closed_with(1008, "key_expired").await;
    assert!(now_ms() >= expires);
    assert_eq!(login(addr, &key, &secret).await.1["code"], "key_expired");
    let past = key_request(
        &mut op,
        json!({"type": "create_key", "account": "alice", "expires_at": "2001-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(past["code"], "invalid_key_request");

    let (elsewhere, secret) = create_key(&mut op, json!({"allow_ips": ["10.9.9.0/24"]})).await;
    assert_eq!(
        login(addr, &elsewhere, &secret).await.1["code"],
        "address_not_allowed"
    );
    let (status, _) = private(addr, "GET", "/api/v1/account", &elsewhere, &secret, None).await;
    assert_eq!(status, 403);
    let (_, logout) = fix_logon(server.fix, &elsewhere, &secret).await;
    assert!(logout.unwrap().get(58).unwrap().contains("allowlist"));
    let (here, secret) = create_key(&mut op, json!({"allow_ips": ["127.0.0.0/8", "::1"]})).await;
    assert_eq!(login(addr, &here, &secret).await.1["type"], "logged_in");
    let bad = key_request(
        &mut op,
        json!({"type": "create_key", "account": "alice", "allow_ips": ["10.0.0.0/99"]}),
    )
    .await;
    assert_eq!(bad["code"], "invalid_key_request");
    server.shutdown().await.unwrap();
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_holds_no_secret_in_clear_and_keys_survive_a_restart() {
    let dir = TempDir::new("at-rest");
    let data = dir.path().join("data");
    let mut config = config(&data);
    config.server.data = data.clone();
    let (server, addr) = start(config.clone()).await;
    let mut op = operator(addr).await;
    let (key, first) = create_key(&mut op, json!({"key": "bot-1"})).await;
    let rotated = key_request(&mut op, json!({"type": "rotate_key", "key": key})).await;
    let secret = rotated["secret"].as_str().unwrap().to_string();
    let (revoked, _) = create_key(&mut op, json!({"key": "bot-2"})).await;
    key_request(&mut op, json!({"type": "revoke_key", "key": revoked})).await;
    // Sessions that put secrets on the wire: a WebSocket login and FIX Logons with Password(554).
    let (mut ws, _) = login(addr, &key, &secret).await;
    assert_eq!(ws.request(buy()).await["type"], "ack");
    let (_fix, logon) = fix_logon(server.fix, &key, &secret).await;
    assert_eq!(logon.unwrap().msg_type(), "A");
    let (_fix, logon) = fix_logon(server.fix, "demo-alice", "demo-alice-secret").await;
    assert_eq!(logon.unwrap().msg_type(), "A");
    server.shutdown().await.unwrap();

    let all = files(&data);
    assert!(all.iter().any(|f| f.ends_with("keys.json")));
    for file in &all {
        let bytes = std::fs::read(file).unwrap();
        for needle in [
            secret.as_str(),
            first.as_str(),
            "demo-alice-secret",
            "demo-operator-secret",
        ] {
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{} holds a secret in clear",
                file.display()
            );
        }
    }
    let master = dir.path().join("data.master-key");
    assert!(
        master.exists(),
        "the master key lives beside the data folder"
    );

    // After a restart: the rotated secret works, the first one does not, the revoked key stays revoked.
    let (server, addr) = start(config).await;
    assert_eq!(login(addr, &key, &secret).await.1["type"], "logged_in");
    assert_eq!(login(addr, &key, &first).await.1["code"], "bad_signature");
    assert_eq!(login(addr, "bot-2", "x").await.1["code"], "key_revoked");
    server.shutdown().await.unwrap();
    // Without the master key the sealed secrets cannot be opened: the server says so and stops.
    std::fs::remove_file(&master).unwrap();
    let mut config = common::config(&data);
    config.server.data = data.clone();
    let error = gateway::server::start(config).await.err().expect("refused");
    assert!(error.contains("does not unseal"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_throttled_and_operators_see_the_alert() {
    let dir = TempDir::new("throttle");
    let mut config = config(dir.path());
    config.security.auth_failures_max = 3;
    let (server, addr) = start(config).await;
    let mut op = operator(addr).await;
    let (mut trader_ws, _) = login(addr, "demo-alice", "demo-alice-secret").await;
    for i in 0..3 {
        let (_, reply) = login(addr, "demo-bob", &format!("guess-{i}")).await;
        assert_eq!(reply["code"], "bad_signature");
    }
    let (_, reply) = login(addr, "demo-bob", "demo-bob-secret").await;
    assert_eq!(reply["code"], "too_many_failures", "{reply}");
    assert!(reply["retry_after_ms"].as_u64().unwrap() > 50_000);
    // The FIX port and the HTTP API are throttled by the same count.
    let (_, logout) = fix_logon(server.fix, "demo-bob", "demo-bob-secret").await;
    assert!(logout.unwrap().get(58).unwrap().contains("too many failed"));
    let (status, _) = private(
        addr,
        "GET",
        "/api/v1/account",
        "demo-carol",
        "demo-carol-secret",
        None,
    )
    .await;
    assert_eq!(status, 429, "the address is throttled for every key");

    let status = key_request(&mut op, json!({"type": "security_status"})).await;
    assert_eq!(status["type"], "security_status", "{status}");
    let subjects: Vec<&str> = status["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["address 127.0.0.1", "key demo-bob"]);
    assert_eq!(status["failures_total"], 3);
    assert!(status["throttled_total"].as_u64().unwrap() >= 3);
    let metrics = http_text(addr, "/metrics").await;
    assert!(metrics.contains("kinko_auth_failures_total 3"), "{metrics}");
    // A trader key may not read it (its session was open before the failures began).
    let trader = key_request(&mut trader_ws, json!({"type": "security_status"})).await;
    assert_eq!(trader["code"], "forbidden");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_key_names_over_fix_is_throttled_like_any_failed_login() {
    let dir = TempDir::new("fixguess");
    let mut config = config(dir.path());
    config.security.auth_failures_max = 2;
    let (server, addr) = start(config).await;
    let mut op = operator(addr).await;
    for guess in ["desk-1", "desk-2"] {
        // An unknown SenderCompID gets no answer at all, as from a QuickFIX acceptor.
        let (_, answer) = fix_logon(server.fix, guess, "whatever").await;
        assert!(answer.is_none(), "{:?}", answer.map(|m| m.text()));
    }
    let (_, reply) = login(addr, "demo-alice", "demo-alice-secret").await;
    assert_eq!(reply["code"], "too_many_failures", "{reply}");
    let status = key_request(&mut op, json!({"type": "security_status"})).await;
    assert_eq!(status["failures_total"], 2, "{status}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_lists_every_operator_action_with_its_actor_from_the_journal() {
    let dir = TempDir::new("audit");
    let (server, addr) = start(custody_config(dir.path())).await;
    let mut op = operator(addr).await;
    let ack = |reply: Value| {
        assert!(reply["type"] != "error", "{reply}");
        reply
    };
    ack(op
        .request(json!({"type": "halt", "instrument": "BTC/JPY"}))
        .await);
    ack(op
        .request(json!({"type": "resume", "instrument": "BTC/JPY"}))
        .await);
    ack(op.request(json!({"type": "set_asset_halts", "asset": "XEM", "deposits": false, "withdrawals": true, "trading": false})).await);
    ack(op
        .request(
            json!({"type": "set_house_policy", "instrument": "ETH/JPY", "policy": "disclosed"}),
        )
        .await);
    let (key, _) = create_key(&mut op, json!({"key": "bot-9", "permissions": ["read"]})).await;
    ack(key_request(&mut op, json!({"type": "rotate_key", "key": key})).await);
    ack(key_request(&mut op, json!({"type": "revoke_key", "key": key})).await);
    let req_id = op
        .send(json!({"type": "sweep_to_cold", "asset": "BTC", "amount": "0.01"}))
        .await;
    ack(op.until(|m| m["req_id"] == json!(req_id)).await);
    let request = ack(op
        .request(json!({"type": "cold_to_hot", "asset": "BTC", "amount": "0.01"}))
        .await);
    let request_id = request["request_id"].as_str().unwrap().to_string();
    ack(op
        .request(json!({"type": "cancel_cold_to_hot", "request_id": request_id}))
        .await);
    // A refused action is in the trail too, with its reason.
    let req_id = op
        .send(json!({"type": "top_up", "asset": "XEM", "amount": "1"}))
        .await;
    op.until(|m| m["req_id"] == json!(req_id)).await;
    server.shutdown().await.unwrap();

    let read = replay::open_journal(dir.path()).unwrap();
    let report = replay::reports::actions::actions(&read).unwrap();
    let of_operator: Vec<(&str, &str)> = report
        .actions
        .iter()
        .filter(|a| a.actor == "demo-operator")
        .map(|a| (a.action, a.outcome.as_str()))
        .collect();
    assert_eq!(
        of_operator,
        [
            ("halt_instrument", "applied"),
            ("resume_instrument", "applied"),
            ("set_asset_halts", "applied"),
            ("set_house_policy", "applied"),
            ("key_created", "applied"),
            ("key_rotated", "applied"),
            ("key_revoked", "applied"),
            ("custody_transfer", "applied"),
            ("cold_to_hot_request", "applied"),
            ("cancel_cold_to_hot", "applied"),
            ("top_up", of_operator.last().map_or("", |a| a.1)),
        ]
    );
    assert!(of_operator.last().unwrap().1.starts_with("refused: "));
    let created = report
        .actions
        .iter()
        .find(|a| a.action == "key_created")
        .unwrap();
    assert!(
        created
            .detail
            .starts_with("bot-9 (account 0, trader, read)"),
        "{}",
        created.detail
    );
    let registered: Vec<&str> = report
        .actions
        .iter()
        .filter(|a| a.action == "key_registered")
        .map(|a| a.actor.as_str())
        .collect();
    assert_eq!(
        registered, ["system"; 6],
        "the configuration's six keys, at first start"
    );
    assert!(
        report.actions.iter().all(|a| a.actor != "unattributed"),
        "the opening sweeps are the system's"
    );
    assert!(report
        .actions
        .iter()
        .any(|a| a.actor == "system" && a.action == "custody_transfer"));
    // What `kinko-replay actions DIR` prints: the same rows as a table.
    let table = replay::render::render(&report, replay::render::Format::Table);
    assert!(table.contains("Operator actions (audit trail)"));
    assert!(table.contains("demo-operator") && table.contains("key_revoked"));
}
