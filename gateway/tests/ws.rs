//! The real server on a loopback port, driven over WebSocket: login, every order type, fills seen
//! by both sides with correct balances, book updates whose checksums match a rebuilt book,
//! cancel-on-disconnect, restart with the state intact, and bad input answered with its code.
//!
//! BTC/JPY in the default configuration: tick 1 JPY, lot 0.0001 BTC, reference 15,000,000 JPY,
//! band 10%, fees 0.1% maker and 0.2% taker. Demo customers start with 100,000,000 JPY and 10 BTC.

mod common;

use std::collections::BTreeMap;

use common::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_reach_both_sides_with_correct_balances() {
    let dir = TempDir::new("fills");
    let (server, addr) = start(config(dir.path())).await;
    let mut alice = Client::connect(addr).await;
    let mut bob = Client::connect(addr).await;
    let login = alice.login_as("alice", false).await;
    assert_eq!(login["type"], "logged_in", "{login}");
    assert_eq!(login["account"], 0);
    bob.login_as("bob", false).await;
    assert_eq!(alice.balance("JPY"), Some(("100000000".into(), "0".into())));

    let ack = alice.order(json!({"side": "sell", "order_type": "limit", "price": "15000000", "qty": "0.5", "client_order_id": 1})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let ask_id = ack["order_id"].as_str().unwrap().to_string();
    alice.wait_balance("BTC", "9.5", "0.5").await;

    let ack = bob.order(json!({"side": "buy", "order_type": "limit", "price": "15000000", "qty": "0.2", "client_order_id": 1})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    // Both sides see the fill: 0.2 BTC for 3,000,000 JPY; bob pays 0.2% (6,000), alice 0.1% (3,000).
    let fill = bob
        .until(|m| m["type"] == "execution" && m["exec"] == "fill")
        .await;
    assert_eq!(
        (fill["liquidity"].as_str(), fill["fee"].as_str()),
        (Some("taker"), Some("6000"))
    );
    let fill = alice
        .until(|m| m["type"] == "execution" && m["exec"] == "fill")
        .await;
    assert_eq!(
        (
            fill["liquidity"].as_str(),
            fill["fee"].as_str(),
            fill["order_id"].as_str()
        ),
        (Some("maker"), Some("3000"), Some(ask_id.as_str()))
    );
    assert_eq!(fill["leaves_qty"], "0.3");
    bob.wait_balance("BTC", "10.2", "0").await;
    bob.wait_balance("JPY", "96994000", "0").await;
    alice.wait_balance("BTC", "9.5", "0.3").await;
    alice.wait_balance("JPY", "102997000", "0").await;

    // Market buy: fills what is there inside the band.
    let ack = bob
        .order(json!({"side": "buy", "order_type": "market", "qty": "0.1", "client_order_id": 2}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    bob.until(|m| m["exec"] == "fill" && m["order_id"] == ack["order_id"])
        .await;
    // IOC: the unfilled rest expires.
    let ack = bob.order(json!({"side": "buy", "order_type": "limit", "price": "15000000", "qty": "0.5", "tif": "ioc", "client_order_id": 3})).await;
    let expired = bob
        .until(|m| m["exec"] == "expired" && m["order_id"] == ack["order_id"])
        .await;
    assert_eq!(expired["qty"], "0.3");
    // FOK that cannot fill in full: expires whole.
    alice.order(json!({"side": "sell", "order_type": "limit", "price": "15010000", "qty": "0.1", "client_order_id": 2})).await;
    let ack = bob.order(json!({"side": "buy", "order_type": "limit", "price": "15010000", "qty": "1", "tif": "fok", "client_order_id": 4})).await;
    bob.until(|m| m["exec"] == "expired" && m["order_id"] == ack["order_id"])
        .await;
    // Post-only that would take: rejected with its code.
    let error = bob.order(json!({"side": "buy", "order_type": "limit", "price": "15010000", "qty": "0.1", "post_only": true, "client_order_id": 5})).await;
    assert_eq!(error["code"], "post_only_would_take", "{error}");
    // Stop-limit: accepted, waits, triggers when a trade prints at its stop.
    let stop = bob.order(json!({"side": "buy", "order_type": "stop_limit", "stop_price": "15010000", "price": "15020000", "qty": "0.1", "client_order_id": 6})).await;
    assert_eq!(stop["type"], "ack", "{stop}");
    let carol_buy = {
        let mut carol = Client::connect(addr).await;
        carol.login_as("carol", false).await;
        carol.order(json!({"side": "buy", "order_type": "limit", "price": "15010000", "qty": "0.1", "tif": "ioc", "client_order_id": 1})).await
    };
    assert_eq!(carol_buy["type"], "ack");
    bob.until(|m| m["exec"] == "triggered" && m["order_id"] == stop["order_id"])
        .await;
    bob.until(|m| m["exec"] == "rested" && m["order_id"] == stop["order_id"])
        .await;
    // Replace keeps the order id; cancel and mass cancel empty the book of bob's orders.
    let replaced = bob.request(json!({"type": "replace", "order_id": stop["order_id"], "price": "15000000", "qty": "0.05"})).await;
    assert_eq!(replaced["type"], "ack", "{replaced}");
    bob.until(|m| m["exec"] == "replaced" && m["priority"] == "lost")
        .await;
    let cancelled = bob
        .request(json!({"type": "cancel", "client_order_id": 6}))
        .await;
    assert_eq!(cancelled["order_id"], stop["order_id"]);
    bob.order(json!({"side": "buy", "order_type": "stop_market", "stop_price": "15500000", "qty": "0.1", "client_order_id": 7})).await;
    bob.order(json!({"side": "buy", "order_type": "limit", "price": "14000000", "qty": "0.1", "client_order_id": 8})).await;
    let mass = bob.request(json!({"type": "mass_cancel"})).await;
    assert_eq!(mass["cancelled"], 2, "{mass}");
    bob.until(|m| m["type"] == "balance" && m["asset"] == "JPY" && m["held"] == "0")
        .await;
    server.shutdown().await.unwrap();
}

/// Rebuilds a book from snapshot + updates and checks every checksum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn book_updates_checksums_match_the_rebuilt_book() {
    let dir = TempDir::new("book");
    let (server, addr) = start(config(dir.path())).await;
    let mut watcher = Client::connect(addr).await;
    let subscribed = watcher.request(json!({"type": "subscribe", "channels": ["book:BTC/JPY", "trades:BTC/JPY", "ticker:BTC/JPY"]})).await;
    assert_eq!(subscribed["type"], "subscribed");
    let snapshot = watcher.until(|m| m["type"] == "book_snapshot").await;
    let mut bids: BTreeMap<Decimal, String> = BTreeMap::new();
    let mut asks: BTreeMap<Decimal, String> = BTreeMap::new();
    let mut seq = snapshot["seq"].as_u64().unwrap();
    let mut trader = Client::connect(addr).await;
    trader.login_as("alice", false).await;
    let mut other = Client::connect(addr).await;
    other.login_as("bob", false).await;
    for i in 0..20u64 {
        let price = 15_000_000 + (i % 5) * 1_000;
        trader.order(json!({"side": "sell", "order_type": "limit", "price": price.to_string(), "qty": "0.01", "client_order_id": 100 + i})).await;
        let price = 14_990_000 - (i % 3) * 1_000;
        other.order(json!({"side": "buy", "order_type": "limit", "price": price.to_string(), "qty": "0.02", "client_order_id": 100 + i})).await;
    }
    other.order(json!({"side": "buy", "order_type": "limit", "price": "15002000", "qty": "0.1", "tif": "ioc", "client_order_id": 999})).await;
    let mut updates = 0;
    let mut trades = 0;
    while updates < 41 {
        let m = watcher.next().await.unwrap();
        if m["type"] == "trade" {
            trades += 1;
        }
        if m["type"] != "book_update" {
            continue;
        }
        assert_eq!(
            m["seq"].as_u64().unwrap(),
            seq + 1,
            "no gap in the book's sequence"
        );
        seq += 1;
        for change in m["changes"].as_array().unwrap() {
            let (side, price, qty) = (
                change[0].as_str().unwrap(),
                change[1].as_str().unwrap(),
                change[2].as_str().unwrap(),
            );
            let book = if side == "buy" { &mut bids } else { &mut asks };
            let price: Decimal = price.parse().unwrap();
            if qty == "0" {
                book.remove(&price);
            } else {
                book.insert(price, qty.to_string());
            }
        }
        let top_asks: Vec<(String, String)> = asks
            .iter()
            .take(10)
            .map(|(p, q)| (p.to_string(), q.clone()))
            .collect();
        let top_bids: Vec<(String, String)> = bids
            .iter()
            .rev()
            .take(10)
            .map(|(p, q)| (p.to_string(), q.clone()))
            .collect();
        assert_eq!(
            gateway::market::checksum_of(&top_asks, &top_bids),
            m["checksum"].as_u64().unwrap() as u32,
            "checksum after seq {seq}"
        );
        updates += 1;
    }
    if trades == 0 {
        watcher.until(|m| m["type"] == "trade").await;
    }
    // The REST snapshot agrees with the rebuilt book.
    let rest: Value = http_get_json(addr, "/api/book/BTC-JPY").await;
    assert_eq!(rest["seq"].as_u64().unwrap(), seq);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_disconnect_and_restart_keep_the_state() {
    let dir = TempDir::new("restart");
    let (server, addr) = start(config(dir.path())).await;
    let mut alice = Client::connect(addr).await;
    alice.login_as("alice", true).await;
    alice.order(json!({"side": "sell", "order_type": "limit", "price": "15100000", "qty": "1", "client_order_id": 1})).await;
    let mut bob = Client::connect(addr).await;
    bob.login_as("bob", false).await;
    let resting = bob.order(json!({"side": "buy", "order_type": "limit", "price": "14900000", "qty": "1", "client_order_id": 1})).await;
    alice.close().await;
    // Alice's order goes with her connection; bob's stays.
    let mut watcher = Client::connect(addr).await;
    let book = loop {
        let book = http_get_json(addr, "/api/book/BTC-JPY").await;
        if book["asks"].as_array().unwrap().is_empty() {
            break book;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(book["bids"], json!([["14900000", "1"]]));
    watcher.request(json!({"type": "ping"})).await;
    server.shutdown().await.unwrap();

    let (server, addr) = start(config(dir.path())).await;
    let book = http_get_json(addr, "/api/book/BTC-JPY").await;
    assert_eq!(
        book["bids"],
        json!([["14900000", "1"]]),
        "the book survived the restart"
    );
    let mut bob = Client::connect(addr).await;
    bob.login_as("bob", false).await;
    assert_eq!(
        bob.balance("JPY"),
        Some(("85070200".into(), "14929800".into())),
        "balances survived the restart"
    );
    let cancelled = bob
        .request(json!({"type": "cancel", "order_id": resting["order_id"]}))
        .await;
    assert_eq!(cancelled["type"], "ack", "{cancelled}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_code_and_the_connection_stays_usable() {
    let dir = TempDir::new("bad");
    let (server, addr) = start(config(dir.path())).await;
    let mut c = Client::connect(addr).await;
    // Before login.
    let e = c.order(json!({"side": "buy", "order_type": "limit", "price": "15000000", "qty": "0.1", "client_order_id": 1})).await;
    assert_eq!(e["code"], "not_logged_in");
    // Authentication failures.
    let ts = now_ms();
    let bad_sig = c
        .request(json!({"type": "login", "key": "demo-alice", "ts": ts, "nonce": 1, "sig": "00"}))
        .await;
    assert_eq!(bad_sig["code"], "bad_signature");
    let stale = gateway::auth::sign("demo-alice-secret", "demo-alice", ts - 120_000, 2);
    let e = c.request(json!({"type": "login", "key": "demo-alice", "ts": ts - 120_000, "nonce": 2, "sig": stale})).await;
    assert_eq!(e["code"], "stale_timestamp");
    let sig = gateway::auth::sign("demo-alice-secret", "demo-alice", ts, 5);
    assert_eq!(
        c.request(json!({"type": "login", "key": "demo-alice", "ts": ts, "nonce": 5, "sig": sig}))
            .await["type"],
        "logged_in"
    );
    let mut other = Client::connect(addr).await;
    let e = other
        .request(json!({"type": "login", "key": "demo-alice", "ts": ts, "nonce": 5, "sig": sig}))
        .await;
    assert_eq!(e["code"], "reused_nonce");

    let accepted = c.order(json!({"side": "buy", "order_type": "limit", "price": "14000000", "qty": "0.1", "client_order_id": 1})).await;
    assert_eq!(accepted["type"], "ack");
    let cases: Vec<(&str, &str)> = vec![
        ("{oops", "bad_json"),
        (r#"{"type":"warp"}"#, "unknown_type"),
        (
            r#"{"type":"new_order","instrument":"BTC/JPY","side":"buy","order_type":"limit","price":"1"}"#,
            "missing_field",
        ),
        (r#"{"type":"ping","bogus":true}"#, "unknown_field"),
        (
            r#"{"type":"new_order","instrument":"BTC/JPY","side":"up","order_type":"limit","price":"1","qty":"1","client_order_id":1}"#,
            "invalid_field",
        ),
        (
            r#"{"type":"new_order","instrument":"BTC/JPY","side":"buy","order_type":"limit","price":15000000,"qty":"1","client_order_id":2}"#,
            "invalid_field",
        ),
        (
            r#"{"type":"new_order","instrument":"BTC/JPY","side":"buy","order_type":"limit","price":"-5","qty":"0.1","client_order_id":3}"#,
            "price_not_positive",
        ),
        (
            r#"{"type":"new_order","instrument":"BTC/JPY","side":"buy","order_type":"limit","price":"15000000.5","qty":"0.1","client_order_id":4}"#,
            "off_tick",
        ),
        (
            r#"{"type":"new_order","instrument":"BTC/JPY","side":"buy","order_type":"limit","price":"15000000","qty":"0.00001","client_order_id":5}"#,
            "off_lot",
        ),
        (
            r#"{"type":"new_order","instrument":"BTC/JPY","side":"buy","order_type":"limit","price":"15000000","qty":"100000","client_order_id":6}"#,
            "qty_above_max",
        ),
        (
            r#"{"type":"new_order","instrument":"BTC/JPY","side":"buy","order_type":"limit","price":"15000000","qty":"1000","client_order_id":7}"#,
            "insufficient_balance",
        ),
        (
            r#"{"type":"new_order","instrument":"DOGE/JPY","side":"buy","order_type":"limit","price":"1","qty":"1","client_order_id":8}"#,
            "unknown_instrument",
        ),
        (
            r#"{"type":"new_order","instrument":"BTC/JPY","side":"buy","order_type":"limit","price":"20000000","qty":"0.1","client_order_id":9}"#,
            "outside_price_band",
        ),
        (
            r#"{"type":"new_order","instrument":"BTC/JPY","side":"buy","order_type":"limit","price":"14000000","qty":"0.1","client_order_id":1}"#,
            "duplicate_client_order_id",
        ),
        (
            r#"{"type":"subscribe","channels":["weather:BTC/JPY"]}"#,
            "unknown_channel",
        ),
    ];
    for (text, code) in cases {
        c.send_text(text).await;
        let reply = c.until(|m| m["type"] == "error").await;
        assert_eq!(reply["code"], code, "for {text}: {reply}");
        assert!(reply["message"].as_str().is_some_and(|s| !s.is_empty()));
    }
    // An order on another account: bob cannot cancel alice's order.
    let mut bob = Client::connect(addr).await;
    bob.login_as("bob", false).await;
    let e = bob
        .request(json!({"type": "cancel", "order_id": accepted["order_id"]}))
        .await;
    assert_eq!(e["code"], "not_your_order");
    // A customer key has no way to place a house order: the account is the key's. The house's own
    // key is refused on a forbidden instrument.
    let mut house = Client::connect(addr).await;
    house.login_as("house", false).await;
    let e = house.order(json!({"side": "buy", "order_type": "limit", "price": "14000000", "qty": "0.1", "client_order_id": 1})).await;
    assert_eq!(e["code"], "house_trading_forbidden");
    // Operator and auditor keys cannot trade.
    for role in ["operator", "auditor"] {
        let mut k = Client::connect(addr).await;
        k.login_as(role, false).await;
        let e = k.order(json!({"side": "buy", "order_type": "limit", "price": "14000000", "qty": "0.1", "client_order_id": 1})).await;
        assert_eq!(e["code"], "forbidden", "{role}");
    }
    // Nothing accepted before the bad input was lost, and the connection still works.
    let book = http_get_json(addr, "/api/book/BTC-JPY").await;
    assert_eq!(book["bids"], json!([["14000000", "0.1"]]));
    assert_eq!(c.request(json!({"type": "ping"})).await["type"], "pong");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_are_rate_limited_and_oversized_frames_close_with_1009() {
    let dir = TempDir::new("limits");
    let mut config = config(dir.path());
    config.limits.connection_rate_per_sec = 20;
    config.limits.connection_burst = 20;
    config.limits.rate_violations_max = 1_000;
    let (server, addr) = start(config).await;
    let mut c = Client::connect(addr).await;
    for _ in 0..60 {
        c.send(json!({"type": "ping"})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    while pongs + limited < 60 {
        let m = c.next().await.unwrap();
        match m["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => {
                assert_eq!(m["code"], "rate_limited");
                assert!(m["retry_after_ms"].as_u64().is_some());
                limited += 1;
            }
            _ => {}
        }
    }
    assert!(
        limited > 0 && pongs >= 20,
        "{pongs} pongs, {limited} limited"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        c.request(json!({"type": "ping"})).await["type"],
        "pong",
        "usable again after a pause"
    );

    let mut big = Client::connect(addr).await;
    big.send_text(&format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(100_000)
    ))
    .await;
    big.closed_with(1009, "message_too_big").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_is_taken_whole_or_not_at_all() {
    let dir = TempDir::new("subscribe");
    let (server, addr) = start(config(dir.path())).await;
    let mut c = Client::connect(addr).await;
    let e = c
        .request(json!({"type": "subscribe", "channels": ["book:BTC/JPY", "weather:BTC/JPY"]}))
        .await;
    assert_eq!(e["code"], "unknown_channel");
    // Nothing was subscribed: a trade now brings no book update to this connection.
    let mut alice = Client::connect(addr).await;
    alice.login_as("alice", false).await;
    alice.order(json!({"side": "sell", "order_type": "limit", "price": "15000000", "qty": "0.1", "client_order_id": 1})).await;
    assert_eq!(c.request(json!({"type": "ping"})).await["type"], "pong");
    assert!(
        c.seen.iter().all(|m| m["type"] != "book_update"),
        "{:?}",
        c.seen
    );
    let e = c
        .request(json!({"type": "halt", "instrument": "BTC/JPY"}))
        .await;
    assert_eq!(
        (e["code"].as_str(), e["req_id"].is_u64()),
        (Some("not_logged_in"), true)
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_orders_lists_price_and_remaining_quantity_also_after_a_restart() {
    let dir = TempDir::new("open-orders");
    let (server, addr) = start(config(dir.path())).await;
    let mut alice = Client::connect(addr).await;
    let refused = alice.request(json!({"type": "open_orders"})).await;
    assert_eq!(refused["code"], "not_logged_in");
    alice.login_as("alice", false).await;
    let first = alice.order(json!({"side": "buy", "order_type": "limit", "price": "14900000", "qty": "1", "client_order_id": 1})).await;
    let second = alice.order(json!({"side": "buy", "order_type": "limit", "price": "14800000", "qty": "0.5", "client_order_id": 2})).await;
    let mut bob = Client::connect(addr).await;
    bob.login_as("bob", false).await;
    // Bob takes 0.3 of the first; alice moves the second.
    bob.order(json!({"side": "sell", "order_type": "limit", "price": "14900000", "qty": "0.3", "client_order_id": 1})).await;
    let replaced = alice
        .request(
            json!({"type": "replace", "client_order_id": 2, "price": "14850000", "qty": "0.4"}),
        )
        .await;
    assert_eq!(replaced["type"], "ack", "{replaced}");
    let expected = json!([
        {"order_id": first["order_id"], "instrument": "BTC/JPY", "client_order_id": 1, "side": "buy", "price": "14900000", "qty": "0.7"},
        {"order_id": second["order_id"], "instrument": "BTC/JPY", "client_order_id": 2, "side": "buy", "price": "14850000", "qty": "0.4"},
    ]);
    let listed = alice.request(json!({"type": "open_orders"})).await;
    assert_eq!(listed["orders"], expected, "{listed}");
    // Bob's sell was filled whole: he has nothing open.
    assert_eq!(
        bob.request(json!({"type": "open_orders"})).await["orders"],
        json!([])
    );
    server.shutdown().await.unwrap();
    let (server, addr) = start(config(dir.path())).await;
    let mut alice = Client::connect(addr).await;
    alice.login_as("alice", false).await;
    let listed = alice.request(json!({"type": "open_orders"})).await;
    assert_eq!(listed["orders"], expected, "the list survived the restart");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_all_after_cancels_unless_refreshed_or_disarmed() {
    let dir = TempDir::new("dead-man");
    let (server, addr) = start(config(dir.path())).await;
    let mut alice = Client::connect(addr).await;
    alice.login_as("alice", false).await;
    let too_long = alice
        .request(json!({"type": "cancel_all_after", "timeout_ms": 600_001}))
        .await;
    assert_eq!(too_long["code"], "invalid_field");
    alice.order(json!({"side": "buy", "order_type": "limit", "price": "14900000", "qty": "1", "client_order_id": 1})).await;
    // Armed, then disarmed: the order outlives the timeout.
    let armed = alice
        .request(json!({"type": "cancel_all_after", "timeout_ms": 200}))
        .await;
    assert_eq!(armed["cancel_all_after_ms"], 200, "{armed}");
    alice
        .request(json!({"type": "cancel_all_after", "timeout_ms": 0}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let open = alice.request(json!({"type": "open_orders"})).await;
    assert_eq!(open["orders"].as_array().unwrap().len(), 1, "{open}");
    // Refreshed in time, it does not fire; left alone, it cancels everything.
    for _ in 0..4 {
        alice
            .request(json!({"type": "cancel_all_after", "timeout_ms": 300}))
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let open = alice.request(json!({"type": "open_orders"})).await;
    assert_eq!(open["orders"].as_array().unwrap().len(), 1, "{open}");
    alice.until(|m| m["type"] == "cancel_all_triggered").await;
    alice
        .until(|m| m["type"] == "execution" && m["exec"] == "cancelled" && m["leaves_qty"] == "0")
        .await;
    let open = alice.request(json!({"type": "open_orders"})).await;
    assert_eq!(open["orders"], json!([]));
    // Only a trader key has orders to protect.
    let mut operator = Client::connect(addr).await;
    operator.login_as("operator", false).await;
    let refused = operator
        .request(json!({"type": "cancel_all_after", "timeout_ms": 100}))
        .await;
    assert_eq!(refused["code"], "forbidden");
    // Nor may an operator's connection cancel the house's orders when it drops.
    let mut other = Client::connect(addr).await;
    tokio::time::sleep(std::time::Duration::from_millis(2)).await; // a fresh nonce (ms)
    assert_eq!(other.login_as("operator", true).await["code"], "forbidden");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_carry_the_remaining_rate_allowance() {
    let dir = TempDir::new("allowance");
    let mut config = config(dir.path());
    config.limits.connection_rate_per_sec = 1;
    config.limits.connection_burst = 10;
    let (server, addr) = start(config).await;
    let mut alice = Client::connect(addr).await;
    alice.login_as("alice", false).await; // one of ten taken
    let mut seen = Vec::new();
    for id in 1..=3 {
        let ack = alice.order(json!({"side": "buy", "order_type": "limit", "price": "14900000", "qty": "0.0001", "client_order_id": id})).await;
        seen.push(ack["rate_remaining"].as_u64().expect("rate_remaining"));
    }
    // 10 − login − each order, give or take a token refilled at 1 per second while the test ran.
    assert!(seen[0] <= 8 && seen[2] < seen[0], "{seen:?}");
    server.shutdown().await.unwrap();
}

/// Waits (up to a minute) until the journal file `name` in `dir` is `bytes` long.
async fn journal_file_reaches(dir: &std::path::Path, name: &str, bytes: u64) {
    let path = dir.join("journal").join(name);
    let since = std::time::Instant::now();
    loop {
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        if len == bytes {
            return;
        }
        assert!(
            since.elapsed() < std::time::Duration::from_secs(60),
            "{} is {len} bytes, not {bytes}",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Starts a server on `dir` with journal segments of `mib` MiB, and rests one bid of alice's at
/// `price` (a batch in the journal); returns the server, its address and its banner.
async fn start_with_segments_and_bid(
    dir: &std::path::Path,
    mib: u32,
    price: &str,
    client_order_id: u64,
) -> (gateway::server::Running, std::net::SocketAddr, String) {
    let mut config = config(dir);
    config.server.journal_segment_mib = mib;
    let (server, addr) = start(config.clone()).await;
    let banner = gateway::server::banner(&config, &server);
    let mut alice = Client::connect(addr).await;
    alice.login_as("alice", false).await;
    let ack = alice.order(json!({"side": "buy", "order_type": "limit", "price": price, "qty": "1", "client_order_id": client_order_id})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    (server, addr, banner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_segments_are_the_size_the_configuration_says() {
    let dir = TempDir::new("segment-size");
    let (server, _, banner) = start_with_segments_and_bid(dir.path(), 1, "14900000", 1).await;
    assert!(banner.contains("segments of 1 MiB"), "{banner}");
    journal_file_reaches(dir.path(), "segment-000000.kjl", 1 << 20).await;
    // The next segment is made ahead once the first holds a batch.
    journal_file_reaches(dir.path(), "segment-000001.kjl", 1 << 20).await;
    server.shutdown().await.unwrap();

    // A larger size from the next start on: the segment written keeps its size, the next one
    // (made ahead and still empty) is made again at the new size.
    let (server, addr, banner) = start_with_segments_and_bid(dir.path(), 2, "14800000", 2).await;
    assert!(banner.contains("segments of 2 MiB"), "{banner}");
    journal_file_reaches(dir.path(), "segment-000001.kjl", 2 << 20).await;
    journal_file_reaches(dir.path(), "segment-000000.kjl", 1 << 20).await;
    let book = http_get_json(addr, "/api/book/BTC-JPY").await;
    assert_eq!(
        book["bids"],
        json!([["14900000", "1"], ["14800000", "1"]]),
        "both orders rest, the first from the journal"
    );
    server.shutdown().await.unwrap();
}
