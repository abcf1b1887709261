//! Order entry over FIX against the real server: every supported message and its report, fills
//! against a WebSocket trader in the same book (both ways), exact decimals (off-tick is a
//! rejection, never a rounding), roles, and executions that happen while the FIX client is away,
//! recovered by resend at its next logon.
//!
//! BTC/JPY in the default configuration: tick 1 JPY, lot 0.0001 BTC, reference 15,000,000 JPY,
//! fees 0.1% maker and 0.2% taker.

mod common;
mod fixclient;

use common::*;
use fixclient::*;
use serde_json::json;

async fn wait_next_sender(data: &std::path::Path, comp_id: &str, next: u64) {
    let path = data.join("fix").join(comp_id).join("seqnums");
    for _ in 0..500 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains(&format!("next_sender={next:020}")) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{comp_id} never reached next_sender={next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_and_websocket_traders_fill_each_other() {
    let dir = TempDir::new("fix-cross");
    let (server, http) = start(config(dir.path())).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    let mut bob = Client::connect(http).await;
    bob.login_as("bob", false).await;

    // FIX maker, WebSocket taker.
    alice.send("D", &limit("1", "2", "0.5", "15000000")).await;
    let new = report(&mut alice, "1", "0").await;
    assert_fields(
        &new,
        &[
            (39, "0"),
            (38, "0.5"),
            (151, "0.5"),
            (14, "0"),
            (6, "0"),
            (40, "2"),
            (44, "15000000"),
            (59, "1"),
        ],
    );
    let order_id = new.get(37).unwrap().to_string();
    let ack = bob.order(json!({"side": "buy", "order_type": "limit", "price": "15000000", "qty": "0.2", "client_order_id": 1})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let fill = report(&mut alice, "1", "F").await;
    assert_fields(
        &fill,
        &[
            (37, &order_id),
            (39, "1"),
            (31, "15000000"),
            (32, "0.2"),
            (14, "0.2"),
            (151, "0.3"),
            (6, "15000000"),
            (12, "3000"),
            (13, "3"),
            (851, "1"),
        ],
    );
    // Replace: OrderQty is the new total; 0.2 is done, so 0.3 more becomes 0.1 open.
    alice
        .send(
            "G",
            &[
                (41, "1"),
                (11, "2"),
                (55, "BTC/JPY"),
                (54, "2"),
                (60, T),
                (38, "0.3"),
                (40, "2"),
                (44, "15000100"),
            ],
        )
        .await;
    let replaced = report(&mut alice, "2", "5").await;
    assert_fields(
        &replaced,
        &[
            (41, "1"),
            (37, &order_id),
            (39, "1"),
            (38, "0.3"),
            (14, "0.2"),
            (151, "0.1"),
            (44, "15000100"),
        ],
    );
    // WebSocket maker, FIX taker: alice buys from bob's ask.
    bob.order(json!({"side": "sell", "order_type": "limit", "price": "14999000", "qty": "0.05", "client_order_id": 2})).await;
    alice.send("D", &limit("3", "1", "0.05", "15000000")).await;
    let taken = report(&mut alice, "3", "F").await;
    assert_fields(
        &taken,
        &[
            (39, "2"),
            (31, "14999000"),
            (32, "0.05"),
            (151, "0"),
            (14, "0.05"),
            (6, "14999000"),
            (851, "2"),
            (12, "1499"),
        ],
    );
    let ws_fill = bob
        .until(|m| {
            m["type"] == "execution"
                && m["exec"] == "fill"
                && m["client_order_id"].is_null()
                && m["liquidity"] == "maker"
        })
        .await;
    assert_eq!(ws_fill["qty"], "0.05");
    // Cancel by OrigClOrdID: the cancel's own ClOrdID is echoed.
    alice
        .send(
            "F",
            &[
                (41, "2"),
                (11, "cxl-1"),
                (55, "BTC/JPY"),
                (54, "2"),
                (60, T),
            ],
        )
        .await;
    let cancelled = report(&mut alice, "cxl-1", "4").await;
    assert_fields(
        &cancelled,
        &[
            (41, "2"),
            (39, "4"),
            (151, "0"),
            (14, "0.2"),
            (37, &order_id),
        ],
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_are_business_messages_with_reasons() {
    let dir = TempDir::new("fix-order-rejects");
    let (server, _) = start(config(dir.path())).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    // (ClOrdID, quantity, price, OrdRejReason, text fragment)
    let cases = [
        ("10", "0.01", "15000000.5", "99", "off_tick"),
        ("11", "0.00015", "15000000", "13", "off_lot"),
        ("12", "0.01", "99000000", "99", "outside_price_band"),
        ("ABC", "0.01", "15000000", "99", "ClOrdID"),
    ];
    for (cl, qty, price, reason, text) in cases {
        alice.send("D", &limit(cl, "1", qty, price)).await;
        let rejected = report(&mut alice, cl, "8").await;
        assert_fields(
            &rejected,
            &[
                (39, "8"),
                (103, reason),
                (37, "NONE"),
                (151, "0"),
                (14, "0"),
            ],
        );
        assert!(
            rejected.get(58).unwrap().contains(text),
            "{}",
            rejected.text()
        );
    }
    let mut unknown = limit("13", "1", "0.01", "1");
    unknown[1] = (55, "DOGE/JPY");
    alice.send("D", &unknown).await;
    assert_fields(&report(&mut alice, "13", "8").await, &[(103, "1")]);
    let mut day = limit("14", "1", "0.01", "15000000");
    day.push((59, "0"));
    alice.send("D", &day).await;
    assert_fields(&report(&mut alice, "14", "8").await, &[(103, "11")]);
    // A limit order without a price: conditionally required, a BusinessMessageReject.
    alice
        .send(
            "D",
            &[
                (11, "15"),
                (55, "BTC/JPY"),
                (54, "1"),
                (60, T),
                (38, "0.01"),
                (40, "2"),
            ],
        )
        .await;
    let rejected = report(&mut alice, "15", "8").await;
    assert!(rejected.get(58).unwrap().contains("Price(44)"));
    alice
        .send(
            "D",
            &[(11, "16"), (54, "1"), (60, T), (38, "0.01"), (40, "1")],
        )
        .await;
    let business = alice.until_type("j").await;
    assert_fields(&business, &[(380, "5"), (372, "D"), (379, "16")]);
    // Cancel and replace of an unknown order: OrderCancelReject.
    alice
        .send(
            "F",
            &[(41, "999"), (11, "c1"), (55, "BTC/JPY"), (54, "1"), (60, T)],
        )
        .await;
    let reject = alice.until_type("9").await;
    assert_fields(
        &reject,
        &[
            (11, "c1"),
            (41, "999"),
            (434, "1"),
            (102, "1"),
            (37, "NONE"),
        ],
    );
    alice
        .send(
            "G",
            &[
                (41, "999"),
                (11, "20"),
                (55, "BTC/JPY"),
                (54, "1"),
                (60, T),
                (38, "1"),
                (40, "2"),
                (44, "15000000"),
            ],
        )
        .await;
    let reject = alice.until_type("9").await;
    assert_fields(&reject, &[(11, "20"), (434, "2")]);
    alice.ping("still-in-sequence").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_mass_cancel_market_and_ioc() {
    let dir = TempDir::new("fix-status");
    let (server, _) = start(config(dir.path())).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    alice.send("D", &limit("1", "1", "0.01", "14000000")).await;
    report(&mut alice, "1", "0").await;
    alice.send("D", &limit("2", "1", "0.02", "14100000")).await;
    report(&mut alice, "2", "0").await;
    alice
        .send("H", &[(11, "1"), (55, "BTC/JPY"), (54, "1")])
        .await;
    let status = report(&mut alice, "1", "I").await;
    assert_fields(&status, &[(39, "0"), (151, "0.01"), (44, "14000000")]);
    alice
        .send("H", &[(11, "77"), (55, "BTC/JPY"), (54, "1")])
        .await;
    let unknown = report(&mut alice, "77", "I").await;
    assert_fields(&unknown, &[(39, "8")]);
    // Mass cancel by symbol: one report with the count, one cancel report per order.
    alice
        .send("q", &[(11, "m1"), (530, "1"), (55, "BTC/JPY"), (60, T)])
        .await;
    let mass = alice.until_type("r").await;
    assert_fields(&mass, &[(11, "m1"), (530, "1"), (531, "1"), (533, "2")]);
    report(&mut alice, "1", "4").await;
    report(&mut alice, "2", "4").await;
    alice.send("q", &[(11, "m2"), (530, "5"), (60, T)]).await;
    let refused = alice.until_type("r").await;
    assert_fields(&refused, &[(531, "0"), (532, "0")]);
    // Market and IOC orders with nothing to meet expire.
    alice
        .send(
            "D",
            &[
                (11, "3"),
                (55, "BTC/JPY"),
                (54, "1"),
                (60, T),
                (38, "0.01"),
                (40, "1"),
            ],
        )
        .await;
    assert_fields(
        &report(&mut alice, "3", "C").await,
        &[(39, "C"), (151, "0")],
    );
    let mut ioc = limit("4", "1", "0.01", "15000000");
    ioc.push((59, "3"));
    alice.send("D", &ioc).await;
    assert_fields(&report(&mut alice, "4", "C").await, &[(39, "C"), (59, "3")]);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_key_cannot_trade() {
    let dir = TempDir::new("fix-operator");
    let (server, _) = start(config(dir.path())).await;
    let mut operator = FixClient::connect(server.fix, "operator").await;
    operator.logon(30, false).await;
    operator
        .send("D", &limit("1", "1", "0.01", "15000000"))
        .await;
    let business = operator.until_type("j").await;
    assert_fields(&business, &[(380, "6"), (372, "D")]);
    operator.ping("ok").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_while_away_are_recovered_by_resend_at_the_next_logon() {
    let dir = TempDir::new("fix-away");
    let (server, http) = start(config(dir.path())).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await; // 1
    alice.send("D", &limit("1", "2", "0.3", "15000000")).await;
    report(&mut alice, "1", "0").await; // 2
    alice.send("5", &[]).await;
    alice.until_type("5").await; // 3
    alice.until_closed().await;

    // While alice is away, bob's WebSocket order fills hers: reports 4 and 5 wait in the store.
    let mut bob = Client::connect(http).await;
    bob.login_as("bob", false).await;
    bob.order(json!({"side": "buy", "order_type": "limit", "price": "15000000", "qty": "0.1", "client_order_id": 1})).await;
    bob.order(json!({"side": "buy", "order_type": "limit", "price": "15000000", "qty": "0.2", "client_order_id": 2})).await;
    bob.until(|m| m["exec"] == "fill" && m["qty"] == "0.2")
        .await;
    // The hub hands alice's session the events concurrently with bob's: wait for them to be
    // numbered and stored, so that they are before her next Logon and not after it.
    wait_next_sender(dir.path(), "demo-alice", 6).await;

    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.seq_out = 4;
    let logon = alice.logon(30, false).await;
    assert_eq!(
        logon.get(34),
        Some("6"),
        "two reports were numbered while away"
    );
    alice.send("2", &[(7, "4"), (16, "0")]).await;
    let first = alice.next().await.unwrap();
    assert_fields(
        &first,
        &[
            (35, "8"),
            (34, "4"),
            (43, "Y"),
            (150, "F"),
            (39, "1"),
            (32, "0.1"),
            (14, "0.1"),
        ],
    );
    let second = alice.next().await.unwrap();
    assert_fields(
        &second,
        &[
            (35, "8"),
            (34, "5"),
            (43, "Y"),
            (150, "F"),
            (39, "2"),
            (14, "0.3"),
            (151, "0"),
        ],
    );
    let logon_fill = alice.next().await.unwrap();
    assert_fields(&logon_fill, &[(35, "4"), (34, "6"), (36, "7"), (123, "Y")]);
    alice.ping("recovered").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_report_of_an_own_order_comes_once_and_in_order() {
    let dir = TempDir::new("fix-once");
    let (server, http) = start(config(dir.path())).await;
    let mut bob = Client::connect(http).await;
    bob.login_as("bob", false).await;
    bob.order(json!({"side": "sell", "order_type": "limit", "price": "15000000", "qty": "0.1", "client_order_id": 1})).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    // Accepted, then a fill against bob's order, then the rest of it resting.
    alice.send("D", &limit("1", "1", "0.3", "15000000")).await;
    report(&mut alice, "1", "F").await;
    alice.ping("after").await;
    let reports: Vec<(Option<&str>, Option<&str>, Option<&str>)> = alice
        .seen
        .iter()
        .filter(|m| m.msg_type() == "8")
        .map(|m| (m.get(150), m.get(39), m.get(17)))
        .collect();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!((reports[0].0, reports[0].1), (Some("0"), Some("0")));
    assert_eq!((reports[1].0, reports[1].1), (Some("F"), Some("1")));
    assert_ne!(reports[0].2, reports[1].2, "distinct ExecIDs");
    let numbers: Vec<Option<&str>> = alice.seen.iter().map(|m| m.get(34)).collect();
    assert_eq!(
        numbers,
        vec![Some("1"), Some("2"), Some("3"), Some("4")],
        "Logon, two reports, Heartbeat: nothing in between"
    );
    server.shutdown().await.unwrap();
}
