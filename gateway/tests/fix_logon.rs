//! The Logon's options against the real server: cancel-on-disconnect (CancelOrdersOnDisconnect
//! 8013, and its per-session default in `[fix.sessions]`) and the signature logon (an HMAC of the
//! Logon's header in RawData(96) instead of Password(554)).
//!
//! BTC/JPY in the default configuration: tick 1 JPY, lot 0.0001 BTC, reference 15,000,000 JPY.

mod common;
mod fixclient;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use fixclient::*;
use gateway::config::{FixSessionSettings, ServeConfig};
use gateway::fix::codec::Message;
use gateway::fix::time::{format_timestamp, now_ns};
use serde_json::{json, Value};

/// The Logon of demo key `name` with Username/Password and `extra` fields after them.
fn logon_with(name: &str, extra: &[(u32, &str)]) -> Vec<(u32, String)> {
    let mut fields = logon_fields(name, 30, false);
    fields.extend(extra.iter().map(|(t, v)| (*t, v.to_string())));
    fields
}

async fn send_logon(client: &mut FixClient, fields: &[(u32, String)]) {
    let borrowed: Vec<(u32, &str)> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
    client.send("A", &borrowed).await;
}

/// Connects and logs on with `fields` at MsgSeqNum `seq`. Until the session has seen its previous
/// connection end, a new one is a duplicate logon, dropped without a word: then it tries again.
async fn log_on(
    addr: SocketAddr,
    name: &str,
    seq: u64,
    fields: &[(u32, String)],
) -> (FixClient, Message) {
    for _ in 0..100 {
        let mut client = FixClient::connect(addr, name).await;
        client.seq_out = seq;
        send_logon(&mut client, fields).await;
        match client.next_within(2_000).await {
            Some(Some(reply)) => {
                assert_eq!(reply.msg_type(), "A", "logon refused: {}", reply.text());
                return (client, reply);
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("demo-{name} could not log on again");
}

async fn book(http: SocketAddr) -> Value {
    http_get_json(http, "/api/book/BTC-JPY").await
}

/// Polls the REST book until `done` holds for it (10 s at most).
async fn book_until(http: SocketAddr, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..500 {
        let book = book(http).await;
        if done(&book) {
            return book;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the book never got there: {}", book(http).await);
}

fn has_level(book: &Value, side: &str, price: &str) -> bool {
    book[side]
        .as_array()
        .unwrap()
        .iter()
        .any(|level| level[0] == price)
}

/// A new order after a reconnect goes through the engine after anything the disconnect
/// submitted: when its acknowledgement comes with no cancellation before it, none was submitted.
async fn assert_nothing_cancelled(client: &mut FixClient, cl: &str) {
    client
        .send("D", &limit(cl, "1", "0.0001", "14000000"))
        .await;
    report(client, cl, "0").await;
    let cancelled: Vec<String> = client
        .seen
        .iter()
        .filter(|m| m.msg_type() == "8" && m.get(150) == Some("4"))
        .map(Message::text)
        .collect();
    assert!(cancelled.is_empty(), "cancelled: {cancelled:#?}");
}

/// The ExecutionReports a ResendRequest from `begin` brings, up to the acceptor's gap fill of
/// the last Logon.
async fn resent_reports(client: &mut FixClient, begin: u64) -> Vec<Message> {
    let begin = begin.to_string();
    client.send("2", &[(7, &begin), (16, "0")]).await;
    let mut reports = Vec::new();
    loop {
        let message = client.next().await.expect("connection open");
        match message.msg_type() {
            "8" => reports.push(message),
            "4" => return reports,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_disconnect_cancels_the_open_orders_when_the_connection_drops() {
    let dir = TempDir::new("fix-cod");
    let (server, http) = start(config(dir.path())).await;
    let (mut alice, _) = log_on(server.fix, "alice", 1, &logon_with("alice", &[(8013, "Y")])).await;
    alice.send("D", &limit("1", "2", "0.1", "15100000")).await;
    let ask = report(&mut alice, "1", "0").await;
    alice.send("D", &limit("2", "1", "0.1", "14900000")).await;
    let bid = report(&mut alice, "2", "0").await;
    let (mut bob, _) = log_on(server.fix, "bob", 1, &logon_with("bob", &[])).await;
    bob.send("D", &limit("1", "1", "0.2", "14800000")).await;
    report(&mut bob, "1", "0").await;
    let before = book(http).await;
    assert_eq!(before["asks"], json!([["15100000", "0.1"]]), "{before}");
    assert_eq!(
        before["bids"],
        json!([["14900000", "0.1"], ["14800000", "0.2"]]),
        "{before}"
    );

    // Both drop their TCP connections without a Logout.
    drop(bob);
    drop(alice);
    let after = book_until(http, |b| {
        !has_level(b, "asks", "15100000") && !has_level(b, "bids", "14900000")
    })
    .await;
    assert_eq!(after["asks"], json!([]), "{after}");
    assert_eq!(after["bids"], json!([["14800000", "0.2"]]), "{after}");

    // Alice finds the cancellations numbered while she was away: 4 and 5, before our Logon (6).
    let (mut alice, logon) = log_on(server.fix, "alice", 4, &logon_with("alice", &[])).await;
    assert_eq!(logon.get(34), Some("6"), "{}", logon.text());
    let reports = resent_reports(&mut alice, 4).await;
    let cancelled: Vec<(Option<&str>, Option<&str>, Option<&str>)> = reports
        .iter()
        .map(|m| (m.get(37), m.get(150), m.get(39)))
        .collect();
    assert_eq!(
        cancelled,
        vec![
            (ask.get(37), Some("4"), Some("4")),
            (bid.get(37), Some("4"), Some("4")),
        ],
        "{reports:#?}"
    );
    assert!(reports.iter().all(|m| m.get(43) == Some("Y")));

    // Bob logged on without 8013: his order stays, and no cancel was ever submitted for him.
    let (mut bob, _) = log_on(server.fix, "bob", 3, &logon_with("bob", &[])).await;
    assert_nothing_cancelled(&mut bob, "2").await;
    let last = book(http).await;
    assert!(has_level(&last, "bids", "14800000"), "{last}");
    server.shutdown().await.unwrap();
}

fn with_session_defaults(mut config: ServeConfig, keys: &[&str]) -> ServeConfig {
    for key in keys {
        config.fix.sessions.insert(
            key.to_string(),
            FixSessionSettings {
                cancel_on_disconnect: true,
            },
        );
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_default_applies_a_logout_counts_and_8013_n_overrides_it() {
    let dir = TempDir::new("fix-cod-default");
    let config = with_session_defaults(config(dir.path()), &["demo-alice", "demo-carol"]);
    let (server, http) = start(config).await;
    // Carol's Logon says nothing: the configured default (Y) applies, and a Logout ends it.
    let (mut carol, _) = log_on(server.fix, "carol", 1, &logon_with("carol", &[])).await;
    carol.send("D", &limit("1", "2", "0.1", "15200000")).await;
    report(&mut carol, "1", "0").await;
    // Alice's says N: her order stays whatever the default.
    let (mut alice, _) = log_on(server.fix, "alice", 1, &logon_with("alice", &[(8013, "N")])).await;
    alice.send("D", &limit("1", "2", "0.1", "15300000")).await;
    report(&mut alice, "1", "0").await;

    carol.send("5", &[]).await;
    carol.until_type("5").await;
    assert!(carol.until_closed().await.is_empty());
    drop(alice);
    let after = book_until(http, |b| !has_level(b, "asks", "15200000")).await;
    assert!(has_level(&after, "asks", "15300000"), "{after}");

    let (mut alice, _) = log_on(server.fix, "alice", 3, &logon_with("alice", &[])).await;
    assert_nothing_cancelled(&mut alice, "2").await;
    let (mut carol, logon) = log_on(server.fix, "carol", 4, &logon_with("carol", &[])).await;
    assert_eq!(logon.get(34), Some("5"), "{}", logon.text());
    let reports = resent_reports(&mut carol, 4).await;
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_fields(&reports[0], &[(11, "1"), (150, "4"), (39, "4"), (151, "0")]);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_is_a_disconnect_and_its_cancellations_are_recovered_after_the_restart() {
    let dir = TempDir::new("fix-cod-restart");
    let (server, _) = start(config(dir.path())).await;
    let (mut alice, _) = log_on(server.fix, "alice", 1, &logon_with("alice", &[(8013, "Y")])).await;
    alice.send("D", &limit("1", "2", "0.1", "15100000")).await;
    report(&mut alice, "1", "0").await;
    let shutdown = tokio::spawn(server.shutdown());
    let logout = alice.until_type("5").await;
    assert_eq!(logout.get(58), Some("server shutdown"));
    shutdown.await.unwrap().unwrap();

    let (server, http) = start(config(dir.path())).await;
    let restarted = book(http).await;
    assert_eq!(restarted["asks"], json!([]), "{restarted}");
    // Ours: 1 Logon, 2 the order, 3 the Logout, 4 the cancellation, 5 the new Logon.
    let (mut alice, logon) = log_on(server.fix, "alice", 3, &logon_with("alice", &[])).await;
    assert_eq!(logon.get(34), Some("5"), "{}", logon.text());
    let reports = resent_reports(&mut alice, 4).await;
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_fields(&reports[0], &[(11, "1"), (150, "4"), (39, "4")]);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_disconnect_needs_a_trader_key() {
    let dir = TempDir::new("fix-cod-role");
    let (server, _) = start(config(dir.path())).await;
    let mut operator = FixClient::connect(server.fix, "operator").await;
    send_logon(&mut operator, &logon_with("operator", &[(8013, "Y")])).await;
    let logout = operator.until_type("5").await;
    assert!(
        logout.get(58).unwrap().contains("trader key"),
        "{}",
        logout.text()
    );
    assert!(operator.until_closed().await.is_empty());
    let mut bad = FixClient::connect(server.fix, "alice").await;
    send_logon(&mut bad, &logon_with("alice", &[(8013, "S")])).await;
    let logout = bad.until_type("5").await;
    assert!(
        logout
            .get(58)
            .unwrap()
            .contains("CancelOrdersOnDisconnect(8013)"),
        "{}",
        logout.text()
    );
    assert!(bad.until_closed().await.is_empty());
    server.shutdown().await.unwrap();
}

// ---- The signature logon ----

/// `hex(HMAC-SHA256(secret, 52|35|34|49|56))`, as docs/API.md tells a client to compute it.
fn signature(secret: &str, sending_time: &str, seq: u64, sender: &str, target: &str) -> String {
    let prehash =
        gateway::auth::fix_logon_prehash(sending_time, "A", &seq.to_string(), sender, target);
    gateway::auth::sign_message(secret, prehash.as_bytes())
}

/// A Logon from `sender` at MsgSeqNum `seq` sent at `sending_time`, with `credentials` after
/// EncryptMethod and HeartBtInt.
fn logon_message(
    sender: &str,
    seq: u64,
    sending_time: &str,
    credentials: &[(u32, &str)],
) -> Vec<u8> {
    let seq = seq.to_string();
    let mut fields = vec![
        (35, "A"),
        (34, seq.as_str()),
        (49, sender),
        (52, sending_time),
        (56, ACCEPTOR),
        (98, "0"),
        (108, "30"),
    ];
    fields.extend_from_slice(credentials);
    gateway::fix::codec::message(&fields)
}

/// A Logon with Username(553) = `username` and `signature` in RawData(96).
fn signed_logon(
    sender: &str,
    seq: u64,
    sending_time: &str,
    username: &str,
    signature: &str,
) -> Vec<u8> {
    let length = signature.len().to_string();
    let credentials = [(553, username), (95, length.as_str()), (96, signature)];
    logon_message(sender, seq, sending_time, &credentials)
}

/// A well-signed Logon of demo key `name` at MsgSeqNum `seq`, sent now.
fn good_logon(name: &str, seq: u64) -> Vec<u8> {
    let key = format!("demo-{name}");
    let sent = now();
    let sig = signature(&format!("{key}-secret"), &sent, seq, &key, ACCEPTOR);
    signed_logon(&key, seq, &sent, &key, &sig)
}

/// Sends `bytes` as the first message of a new connection and expects a Logout whose Text holds
/// `why`, then the end of the connection.
async fn refused(addr: SocketAddr, name: &str, bytes: &[u8], why: &str) {
    let mut client = FixClient::connect(addr, name).await;
    client.send_raw(bytes).await;
    let logout = client.next().await.expect("a Logout");
    assert_eq!(logout.msg_type(), "5", "{}", logout.text());
    let text = logout.get(58).unwrap_or("");
    assert!(text.contains(why), "expected {why:?} in {}", logout.text());
    assert!(client.until_closed().await.is_empty(), "closed after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_logon_is_bound_to_the_keys_account_and_role() {
    let dir = TempDir::new("fix-signed");
    let (server, http) = start(config(dir.path())).await;
    let mut watcher = Client::connect(http).await;
    watcher.login_as("alice", false).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.send_raw(&good_logon("alice", 1)).await;
    let logon = alice.next().await.expect("a Logon answer");
    assert_fields(&logon, &[(35, "A"), (34, "1"), (108, "30")]);
    alice.seq_out = 2;
    alice.send("D", &limit("77", "2", "0.1", "15100000")).await;
    report(&mut alice, "77", "0").await;
    // The order is alice's: her WebSocket connection hears of it.
    let accepted = watcher
        .until(|m| m["type"] == "execution" && m["exec"] == "accepted")
        .await;
    assert_eq!(accepted["client_order_id"], json!(77), "{accepted}");
    assert_eq!(accepted["account"], json!(0), "{accepted}");

    // An operator key signs on too, and still cannot trade.
    let mut operator = FixClient::connect(server.fix, "operator").await;
    operator.send_raw(&good_logon("operator", 1)).await;
    assert_eq!(operator.next().await.unwrap().msg_type(), "A");
    operator.seq_out = 2;
    operator
        .send("D", &limit("1", "2", "0.1", "15100000"))
        .await;
    let reject = operator.until_type("j").await;
    assert_fields(&reject, &[(380, "6"), (372, "D")]);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_logons_that_are_refused_and_the_session_after_them() {
    let dir = TempDir::new("fix-signed-refused");
    let (server, http) = start(config(dir.path())).await;
    let addr = server.fix;
    let (key, secret) = ("demo-alice", "demo-alice-secret");
    let sent = now();

    // Signed with another secret.
    let sig = signature("demo-bob-secret", &sent, 1, key, ACCEPTOR);
    let wrong_secret = signed_logon(key, 1, &sent, key, &sig);
    refused(
        addr,
        "alice",
        &wrong_secret,
        "RawData(96) is not the signature",
    )
    .await;
    // Another key named in Username, with that key's own good signature.
    let sig = signature("demo-bob-secret", &sent, 1, "demo-bob", ACCEPTOR);
    let wrong_key = signed_logon(key, 1, &sent, "demo-bob", &sig);
    refused(
        addr,
        "alice",
        &wrong_key,
        "Username(553) must be the API key",
    )
    .await;
    // Signed over other values than the ones sent: MsgSeqNum, TargetCompID, SendingTime.
    let sig = signature(secret, &sent, 2, key, ACCEPTOR);
    let other_seq = signed_logon(key, 1, &sent, key, &sig);
    refused(
        addr,
        "alice",
        &other_seq,
        "RawData(96) is not the signature",
    )
    .await;
    let sig = signature(secret, &sent, 1, key, "OTHER");
    let other_target = signed_logon(key, 1, &sent, key, &sig);
    refused(
        addr,
        "alice",
        &other_target,
        "RawData(96) is not the signature",
    )
    .await;
    let earlier = format_timestamp(now_ns() - 1_000_000_000);
    let sig = signature(secret, &earlier, 1, key, ACCEPTOR);
    let other_time = signed_logon(key, 1, &sent, key, &sig);
    refused(
        addr,
        "alice",
        &other_time,
        "RawData(96) is not the signature",
    )
    .await;
    // Not hex at all.
    let garbage = signed_logon(key, 1, &sent, key, &"zz".repeat(32));
    refused(addr, "alice", &garbage, "RawData(96) is not the signature").await;
    // Well signed, but 40 s old: inside the SendingTime accuracy (120 s), outside the login
    // window (30 s).
    let stale = format_timestamp(now_ns() - 40_000_000_000);
    let sig = signature(secret, &stale, 1, key, ACCEPTOR);
    let stale = signed_logon(key, 1, &stale, key, &sig);
    refused(addr, "alice", &stale, "outside the signature window").await;
    // Password and signature at once; a signature without RawDataLength.
    let sig = signature(secret, &sent, 1, key, ACCEPTOR);
    let both = [(553, key), (554, secret), (95, "64"), (96, &sig)];
    let both = logon_message(key, 1, &sent, &both);
    refused(addr, "alice", &both, "not both").await;
    let unmeasured = logon_message(key, 1, &sent, &[(553, key), (96, &sig)]);
    refused(addr, "alice", &unmeasured, "RawDataLength(95)").await;

    // None of that touched the session: a good signature logs on at MsgSeqNum 1, and trades.
    let mut alice = FixClient::connect(addr, "alice").await;
    let good = good_logon("alice", 1);
    alice.send_raw(&good).await;
    let logon = alice.next().await.expect("a Logon answer");
    assert_eq!(logon.msg_type(), "A", "{}", logon.text());
    alice.seq_out = 2;
    alice.send("D", &limit("1", "2", "0.1", "15100000")).await;
    report(&mut alice, "1", "0").await;
    alice.send("5", &[]).await;
    alice.until_type("5").await;
    assert!(alice.until_closed().await.is_empty());
    // The same signed Logon played again is refused, even though it is still in the window.
    refused(addr, "alice", &good, "not later than the last signed Logon").await;
    // The server goes on for everyone: bob logs on with a password, a WebSocket client pings.
    let mut bob = FixClient::connect(addr, "bob").await;
    bob.logon(30, false).await;
    bob.ping("still-here").await;
    let mut ws = Client::connect(http).await;
    assert_eq!(ws.request(json!({"type": "ping"})).await["type"], "pong");
    server.shutdown().await.unwrap();
}
