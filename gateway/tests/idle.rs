//! `idle = "spin"`: the engine thread spins and the gateway runs on one polling runtime thread,
//! the hub a task on it instead of a thread of its own. The exchange must behave exactly as with
//! the default `park`: a FIX maker and a WebSocket taker fill each other, a subscriber's book
//! updates check out and its ticker counts the trade, the server stops cleanly (the hub's task
//! ends with the engine's output) and starts again with its state.
//!
//! One test in this file, on purpose: it reads the process's thread names, which another test's
//! server running alongside would change.

mod common;
mod fixclient;

use std::time::Duration;

use std::collections::BTreeMap;

use common::*;
use fixclient::*;
use gateway::config::IdleMode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// A level-2 book rebuilt from a snapshot and the updates after it.
struct Book {
    seq: u64,
    bids: BTreeMap<Decimal, String>,
    asks: BTreeMap<Decimal, String>,
}

impl Book {
    fn from_snapshot(snapshot: &Value) -> Book {
        let side = |levels: &Value| -> BTreeMap<Decimal, String> {
            levels
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        l[0].as_str().unwrap().parse().unwrap(),
                        l[1].as_str().unwrap().into(),
                    )
                })
                .collect()
        };
        Book {
            seq: snapshot["seq"].as_u64().unwrap(),
            bids: side(&snapshot["bids"]),
            asks: side(&snapshot["asks"]),
        }
    }

    /// Applies an update that must be the next in sequence, and checks its checksum.
    fn apply(&mut self, update: &Value) {
        assert_eq!(update["seq"].as_u64(), Some(self.seq + 1), "{update}");
        self.seq += 1;
        for change in update["changes"].as_array().unwrap() {
            let side = if change[0] == "buy" {
                &mut self.bids
            } else {
                &mut self.asks
            };
            let price: Decimal = change[1].as_str().unwrap().parse().unwrap();
            match change[2].as_str().unwrap() {
                "0" => side.remove(&price),
                qty => side.insert(price, qty.into()),
            };
        }
        let top =
            |levels: Box<dyn Iterator<Item = (&Decimal, &String)> + '_>| -> Vec<(String, String)> {
                levels
                    .take(10)
                    .map(|(p, q)| (p.to_string(), q.clone()))
                    .collect()
            };
        let asks = top(Box::new(self.asks.iter()));
        let bids = top(Box::new(self.bids.iter().rev()));
        assert_eq!(
            Some(u64::from(gateway::market::checksum_of(&asks, &bids))),
            update["checksum"].as_u64(),
            "{update}"
        );
    }
}

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let comm = task.expect("a task").path().join("comm");
        if let Ok(name) = std::fs::read_to_string(comm) {
            names.push(name.trim_end().to_string());
        }
    }
    names
}

fn has_thread(name: &str) -> bool {
    thread_names().iter().any(|n| n == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_spinning_server_trades_stops_and_restarts_like_a_parking_one() {
    // Parking (the default): the hub is a thread of its own, gone with the server.
    let dir = TempDir::new("idle-park");
    let (server, _) = start(config(dir.path())).await;
    assert!(has_thread("kinko-hub"), "{:?}", thread_names());
    server.shutdown().await.unwrap();
    assert!(!has_thread("kinko-hub"), "{:?}", thread_names());

    let dir = TempDir::new("idle-spin");
    let mut spinning = config(dir.path());
    spinning.server.idle = IdleMode::Spin;
    let (server, http) = start(spinning.clone()).await;
    let names = thread_names();
    assert!(names.iter().any(|n| n == "kinko-engine"), "{names:?}");
    assert!(
        !names.iter().any(|n| n == "kinko-hub"),
        "a spinning server runs its hub as a task: {names:?}"
    );

    let mut carol = Client::connect(http).await;
    let subscribed = carol
        .request(json!({"type": "subscribe", "channels": ["book:BTC/JPY", "ticker:BTC/JPY"]}))
        .await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    let mut bob = Client::connect(http).await;
    bob.login_as("bob", false).await;

    alice.send("D", &limit("1", "2", "0.5", "15000000")).await;
    report(&mut alice, "1", "0").await;
    let ack = bob.order(json!({"side": "buy", "order_type": "limit", "price": "15000000", "qty": "0.2", "client_order_id": 1})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let fill = report(&mut alice, "1", "F").await;
    assert_fields(&fill, &[(39, "1"), (32, "0.2"), (151, "0.3"), (12, "3000")]);
    let taker = bob
        .until(|m| m["type"] == "execution" && m["exec"] == "fill")
        .await;
    assert_eq!(taker["fee"], "6000", "{taker}");
    bob.wait_balance("BTC", "10.2", "0").await;

    // The subscriber: the snapshot, the resting ask, then what is left of it, each update next in
    // the book's sequence and its checksum that of the book rebuilt from them.
    let snapshot = carol.until(|m| m["type"] == "book_snapshot").await;
    let mut book = Book::from_snapshot(&snapshot);
    let rested = carol.until(|m| m["type"] == "book_update").await;
    book.apply(&rested);
    assert_eq!(rested["changes"], json!([["sell", "15000000", "0.5"]]));
    let filled = carol.until(|m| m["type"] == "book_update").await;
    book.apply(&filled);
    assert_eq!(filled["changes"], json!([["sell", "15000000", "0.3"]]));
    let ticker = carol
        .until(|m| m["type"] == "ticker" && m["volume_24h"] == "0.2")
        .await;
    assert_eq!(ticker["last"], "15000000", "{ticker}");
    assert_eq!(ticker["best_ask"], "15000000", "{ticker}");

    // A burst: ten buys sent before any answer is read, so that batches hold several commands;
    // the spinning hub publishes each batch in two halves, and bob's private messages must still
    // come in sequence order, each acknowledgement before its order's executions.
    let mut req_ids = Vec::new();
    for i in 0..10 {
        req_ids.push(bob.send(json!({"type": "new_order", "instrument": "BTC/JPY", "side": "buy", "order_type": "limit", "price": "15000000", "qty": "0.01", "client_order_id": 10 + i})).await);
    }
    for &req_id in &req_ids {
        let ack = bob.reply(req_id).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    bob.wait_balance("BTC", "10.3", "0").await;
    let private: Vec<&Value> = bob
        .seen
        .iter()
        .filter(|m| m["type"] == "ack" || m["type"] == "execution")
        .collect();
    let seqs: Vec<u64> = private.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(
        seqs.len(),
        private.len(),
        "every ack and execution has a seq"
    );
    assert!(
        seqs.windows(2).all(|w| w[0] <= w[1]),
        "in sequence order: {seqs:?}"
    );
    let fills = private
        .iter()
        .filter(|m| m["exec"] == "fill" && m["liquidity"] == "taker")
        .count();
    assert_eq!(
        fills, 11,
        "the first buy and the ten of the burst, each filled once"
    );
    // Bob only takes (nothing of his rests), so each of his executions answers one of his orders.
    for (at, execution) in private.iter().enumerate() {
        if execution["type"] != "execution" {
            continue;
        }
        let acked_before = private[..at]
            .iter()
            .any(|m| m["type"] == "ack" && m["seq"] == execution["seq"]);
        assert!(
            acked_before,
            "an execution before its acknowledgement: {execution}"
        );
    }

    let stopped = tokio::time::timeout(Duration::from_secs(20), server.shutdown()).await;
    stopped.expect("a spinning server stops").unwrap();
    drop((alice, bob, carol));
    assert!(!has_thread("kinko-engine"), "{:?}", thread_names());

    // Started again, spinning: the fill is in the state.
    let (server, http) = start(spinning).await;
    let mut bob = Client::connect(http).await;
    bob.login_as("bob", false).await;
    assert_eq!(bob.balance("BTC"), Some(("10.3".into(), "0".into())));
    server.shutdown().await.unwrap();
}
