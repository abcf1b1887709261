//! Custody end to end through `kinko serve` and the simulated chain: the Coincheck scenario
//! (a drained XEM hot wallet halts XEM withdrawals by itself within one reconciliation interval,
//! the cold wallet is untouched, the incident states the uncovered amount, the replay tool
//! computes the compensation schedule, the house tops up, segregation is restored) and the Zaif
//! scenario (hot wallets of both pools drained; the split between customer and house losses is
//! exact). Every figure is worked out in the comments.

mod common;

use std::time::{Duration, Instant};

use common::*;
use replay::reports::compensation::{compensation, CompensationQuery, PriceSource};
use replay::reports::segregation::segregation;
use replay::{open_journal, verify, Point, VerifyOptions, Window};
use serde_json::{json, Value};

async fn status(operator: &mut Client) -> Value {
    let status = operator.request(json!({"type": "custody_status"})).await;
    assert_eq!(status["type"], "custody_status", "{status}");
    status
}

fn asset<'a>(status: &'a Value, code: &str) -> &'a Value {
    status["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["asset"] == code)
        .unwrap()
}

fn wallet<'a>(status: &'a Value, code: &str, pool: &str, wallet: &str) -> &'a Value {
    asset(status, code)["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["pool"] == pool && w["wallet"] == wallet)
        .unwrap_or_else(|| panic!("no {pool} {wallet} wallet for {code} in {status}"))
}

/// Polls the operator's status until `ready` holds (the driver works on its own interval).
async fn wait_status(operator: &mut Client, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(operator).await;
        if ready(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "custody status never got there: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(INTERVAL_MS / 2)).await;
    }
}

fn seq(reply: &Value) -> u64 {
    reply["seq"].as_u64().unwrap_or_else(|| panic!("{reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coincheck_a_drained_xem_hot_wallet_halts_withdrawals_and_is_made_good() {
    let dir = TempDir::new("coincheck");
    let (running, addr) = start(custody_config(dir.path())).await;
    let mut alice = Client::connect(addr).await;
    alice.login_as("alice", false).await;
    let mut bob = Client::connect(addr).await;
    bob.login_as("bob", false).await;
    let mut operator = Client::connect(addr).await;
    operator.login_as("operator", false).await;

    // Start: 3 customers × 1,000,000 XEM, 5% hot (150,000), the rest cold (2,850,000). The
    // house's 500,000 XEM: 25,000 hot, 475,000 cold.
    // Every wallet reconciled once: 5 coins × (hot, cold) × 2 pools, and JPY's bank × 2.
    let s = wait_status(&mut operator, |s| {
        let wallets: usize = s["assets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["wallets"].as_array().map_or(0, Vec::len))
            .sum();
        wallets == 22
    })
    .await;
    assert_eq!(wallet(&s, "XEM", "customer", "hot")["ledger"], "150000");
    assert_eq!(wallet(&s, "XEM", "customer", "cold")["ledger"], "2850000");
    assert_eq!(wallet(&s, "XEM", "house", "cold")["ledger"], "475000");

    // Alice deposits 20,000 XEM at her address: credited once, into the customer hot wallet.
    let reply = alice
        .request(json!({"type": "deposit_address", "asset": "XEM"}))
        .await;
    let address = reply["address"].as_str().unwrap().to_string();
    let (code, body) = http(
        addr,
        "POST",
        "/sim/deposit",
        Some(json!({"address": address, "asset": "XEM", "amount": "20000"})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["known_address"], true);
    alice.wait_balance("XEM", "1020000", "0").await;
    // Hot is now 170,000 of 3,020,000 owed: over the 5% cap (151,000). The alert suggests the
    // 19,000 sweep; the operator makes it.
    let s = wait_status(&mut operator, |s| {
        s["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["alert"] == "hot_wallet_over_cap" && a["asset"] == "XEM")
    })
    .await;
    let alert = s["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"] == "hot_wallet_over_cap")
        .unwrap();
    assert_eq!(alert["suggested_sweep_to_cold"], "19000");
    let reply = operator
        .request(json!({"type": "sweep_to_cold", "asset": "XEM", "amount": "19000"}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    wait_status(&mut operator, |s| {
        wallet(s, "XEM", "customer", "cold")["observed"] == "2869000"
            && wallet(s, "XEM", "customer", "hot")["observed"] == "151000"
    })
    .await;

    // A withdrawal before the theft is queued, broadcast and confirmed by the driver.
    let reply = alice
        .request(json!({"type": "add_withdrawal_address", "asset": "XEM", "address": "NALICE-OWN-WALLET"}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    let reply = alice
        .request(json!({"type": "withdraw", "asset": "XEM", "amount": "1000", "address": "NALICE-OWN-WALLET"}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    assert_eq!(reply["withdrawal_id"], "1");
    alice.wait_balance("XEM", "1019000", "0").await;

    // Trading: alice sells 10,000 XEM at 5.000 and 10,000 at 5.200 to bob: VWAP 5.1.
    let mut trade_seqs = Vec::new();
    for (price, cid) in [("5.000", 1), ("5.200", 2)] {
        let sell = json!({"instrument": "XEM/JPY", "side": "sell", "order_type": "limit", "price": price, "qty": "10000", "client_order_id": cid});
        assert_eq!(alice.order(sell).await["type"], "ack");
        let buy = json!({"instrument": "XEM/JPY", "side": "buy", "order_type": "limit", "price": price, "qty": "10000", "client_order_id": cid});
        let reply = bob.order(buy).await;
        assert_eq!(reply["type"], "ack", "{reply}");
        trade_seqs.push(seq(&reply));
    }
    bob.wait_balance("XEM", "1020000", "0").await;

    // The theft: the customer XEM hot wallet is emptied outside Kinko.
    let before = status(&mut operator).await;
    let cold_before = wallet(&before, "XEM", "customer", "cold").clone();
    let (code, body) = http(
        addr,
        "POST",
        "/sim/drain",
        Some(json!({"pool": "customer", "asset": "XEM", "wallet": "hot", "amount": "100000000"})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // 151,000 − 1,000 withdrawn = 150,000 taken.
    assert_eq!(body["taken"], "150000");
    // Within one reconciliation interval, XEM withdrawals stop by themselves.
    let s = wait_status(&mut operator, |s| {
        asset(s, "XEM")["halted"]["withdrawals"] == true
    })
    .await;
    let incidents = s["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{s:#}");
    let incident = &incidents[0];
    assert_eq!(incident["pool"], "customer");
    assert_eq!(incident["asset"], "XEM");
    assert_eq!(incident["wallet"], "hot");
    assert_eq!(incident["missing"], "150000");
    assert_eq!(incident["uncovered"], "150000");
    let incident_seq = incident["seq"].as_u64().unwrap();
    assert_eq!(asset(&s, "XEM")["stolen_from_customer_pool"], "150000");
    assert_eq!(asset(&s, "XEM")["stolen_from_house_pool"], "0");
    // The cold wallet is untouched, and only XEM halted.
    let cold_after = wallet(&s, "XEM", "customer", "cold");
    assert_eq!(cold_after["observed"], cold_before["observed"]);
    assert_eq!(cold_after["ledger"], "2869000");
    assert_eq!(asset(&s, "BTC")["halted"]["withdrawals"], false);
    let reply = alice
        .request(json!({"type": "withdraw", "asset": "XEM", "amount": "1", "address": "NALICE-OWN-WALLET"}))
        .await;
    assert_eq!(reply["code"], "withdrawals_halted", "{reply}");

    // As Coincheck did: the operator halts XEM deposits and trading too.
    let reply = operator
        .request(json!({"type": "set_asset_halts", "asset": "XEM", "deposits": true, "withdrawals": true, "trading": true}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    let sell = json!({"instrument": "XEM/JPY", "side": "sell", "order_type": "limit", "price": "5", "qty": "1", "client_order_id": 9});
    assert_eq!(alice.order(sell).await["code"], "instrument_halted");
    // A trader cannot top up, nor an operator withdraw.
    let reply = alice
        .request(json!({"type": "top_up", "asset": "XEM", "amount": "1"}))
        .await;
    assert_eq!(reply["code"], "forbidden");

    // The house tops up the customer pool from its cold wallet: 150,000 of its 475,000.
    let reply = operator
        .request(json!({"type": "top_up", "asset": "XEM", "amount": "150001"}))
        .await;
    assert_eq!(reply["code"], "top_up_exceeds_loss", "{reply}");
    let reply = operator
        .request(json!({"type": "top_up", "asset": "XEM", "amount": "150000"}))
        .await;
    assert_eq!(reply["customer_lost"], "0", "{reply}");
    let top_up_seq = seq(&reply);
    let s = status(&mut operator).await;
    assert_eq!(
        asset(&s, "XEM")["lost"],
        json!({"customer": "0", "house": "150000"})
    );
    // Reconciliation still agrees with the chain: the top-up moved coins there too.
    let s = wait_status(&mut operator, |s| {
        ["customer", "house"]
            .iter()
            .all(|pool| wallet(s, "XEM", pool, "cold")["seq"].as_u64() > Some(top_up_seq))
    })
    .await;
    assert_eq!(wallet(&s, "XEM", "customer", "cold")["observed"], "3019000");
    assert_eq!(wallet(&s, "XEM", "house", "cold")["observed"], "325000");
    assert_eq!(s["incidents"].as_array().unwrap().len(), 1);

    // The hot wallet is empty: refilling it from cold takes 2 of the 3 approvers' signatures.
    let reply = operator
        .request(json!({"type": "cold_to_hot", "asset": "XEM", "amount": "100000"}))
        .await;
    let request_id: u64 = reply["request_id"].as_str().unwrap().parse().unwrap();
    let message =
        engine::custody::cold_move_message(request_id, ledger::Pool::Customer, 2, 100_000_000_000);
    for (i, approvals) in [(0, 1), (2, 2)] {
        let key = ed25519_dalek::SigningKey::from_bytes(&engine::defaults::demo_approver_seed(i));
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        use ed25519_dalek::Signer;
        let reply = operator
            .request(json!({"type": "approve_cold_to_hot", "request_id": request_id.to_string(),
                "approver": hex(&key.verifying_key().to_bytes()), "signature": hex(&key.sign(&message).to_bytes())}))
            .await;
        assert_eq!(reply["approvals"], approvals, "{reply}");
    }
    wait_status(&mut operator, |s| {
        wallet(s, "XEM", "customer", "hot")["observed"] == "100000"
            && wallet(s, "XEM", "customer", "hot")["ledger"] == "100000"
    })
    .await;
    let reply = operator
        .request(json!({"type": "set_asset_halts", "asset": "XEM", "deposits": false, "withdrawals": false, "trading": false}))
        .await;
    assert_eq!(reply["type"], "ack");
    let reply = alice
        .request(json!({"type": "withdraw", "asset": "XEM", "amount": "1", "address": "NALICE-OWN-WALLET"}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    alice.wait_balance("XEM", "998999", "0").await;
    running.shutdown().await.expect("clean shutdown");

    // The auditor: the journal verifies (every signature, incident and invariant re-checked).
    let summary = verify(dir.path(), &VerifyOptions::default()).expect("the journal verifies");
    assert!(summary.commands > top_up_seq);
    let read = open_journal(dir.path()).unwrap();
    // At the incident: 150,000 XEM of customer custody lost and uncovered, flagged.
    let at_incident = segregation(&read, Some(Point::Seq(incident_seq))).unwrap();
    let xem_customer = at_incident
        .rows
        .iter()
        .find(|r| r.asset == "XEM" && r.pool == "customer")
        .unwrap();
    assert_eq!(
        (xem_customer.lost.as_str(), xem_customer.uncovered.as_str()),
        ("150000.000000", "150000.000000")
    );
    assert!(xem_customer.flags.contains(&"uncovered"));
    assert_eq!(
        at_incident.violations,
        vec!["XEM customer pool: uncovered".to_string()]
    );
    assert_eq!(at_incident.incidents.len(), 1);
    // The audit trail from the journal alone: the top-up, both approvals (each with the operator
    // who brought it and the approver who signed), and the move that followed them.
    let trail = replay::reports::actions::actions(&read).unwrap();
    let custody_rows: Vec<(&str, &str, &str)> = trail
        .actions
        .iter()
        .filter(|a| a.seq >= top_up_seq)
        .map(|a| (a.actor.as_str(), a.action, a.outcome.as_str()))
        .collect();
    assert_eq!(
        custody_rows,
        [
            ("demo-operator", "top_up", "applied"),
            ("demo-operator", "cold_to_hot_request", "applied"),
            ("demo-operator", "cold_to_hot_approve", "applied"),
            ("demo-operator", "cold_to_hot_approve", "applied"),
            ("system", "cold_to_hot_complete", "applied"),
            ("demo-operator", "set_asset_halts", "applied"),
        ]
    );
    let approvals: Vec<&str> = trail
        .actions
        .iter()
        .filter(|a| a.action == "cold_to_hot_approve")
        .map(|a| a.detail.as_str())
        .collect();
    for (detail, approver) in approvals.iter().zip([0, 2]) {
        let key =
            ed25519_dalek::SigningKey::from_bytes(&engine::defaults::demo_approver_seed(approver));
        let hex16: String = key.verifying_key().to_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            *detail,
            format!("request {request_id}, signed by approver {hex16}…")
        );
    }
    // After the top-up: customers covered again; the house holds the claim.
    let after = segregation(&read, Some(Point::Seq(top_up_seq))).unwrap();
    let row = |pool: &str| {
        after
            .rows
            .iter()
            .find(|r| r.asset == "XEM" && r.pool == pool)
            .unwrap()
            .clone()
    };
    let zero = "0.000000".to_string();
    assert_eq!(
        (row("customer").lost, row("customer").uncovered),
        (zero.clone(), zero)
    );
    assert!(!row("customer").flags.contains(&"uncovered"));
    // The house's loss is shown, and is not a segregation violation.
    assert!(row("house").flags.contains(&"house_loss"));
    assert!(after.violations.is_empty(), "{:?}", after.violations);
    assert_eq!(row("house").lost, "150000.000000");
    assert_eq!(row("house").cold, "325000.000000");

    // The compensation schedule at the incident, at the VWAP of the two trades (5.1 JPY):
    // alice 999,000 (1,000,000 + 20,000 − 1,000 − 20,000 sold) → 5,094,900 JPY; bob 1,020,000
    // → 5,202,000; carol 1,000,000 → 5,100,000; total 3,019,000 XEM → 15,396,900 JPY.
    let query = CompensationQuery {
        asset: "XEM".into(),
        at: Point::Seq(incident_seq),
        price: PriceSource::Vwap {
            instrument: "XEM/JPY".into(),
            window: Window {
                from: Some(Point::Seq(trade_seqs[0])),
                to: Some(Point::Seq(trade_seqs[1])),
            },
        },
    };
    let report = compensation(&read, &query).unwrap();
    assert_eq!(report.price.normalize().to_string(), "5.1");
    let owed: Vec<(u32, &str, &str)> = report
        .customers
        .iter()
        .map(|r| (r.account, r.holding.as_str(), r.owed.as_str()))
        .collect();
    assert_eq!(
        owed,
        vec![
            (0, "999000.000000", "5094900"),
            (1, "1020000.000000", "5202000"),
            (2, "1000000.000000", "5100000"),
        ]
    );
    assert_eq!(report.holding_total, "3019000.000000");
    assert_eq!(report.owed_total, "15396900");
}

/// Zaif, September 2018: the BTC, MONA and BCH hot wallets were emptied, customer and house coins
/// alike. Start (5% hot): customers 3 × 10 BTC → 1.5 hot; 3 × 100,000 MONA → 15,000 hot;
/// 3 × 100 BCH → 15 hot. House: 100 BTC → 5 hot; 20,000 MONA → 1,000 hot; 40 BCH → 2 hot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zaif_both_pools_drained_and_the_split_is_exact() {
    let dir = TempDir::new("zaif");
    let (running, addr) = start(custody_config(dir.path())).await;
    let mut operator = Client::connect(addr).await;
    operator.login_as("operator", false).await;
    wait_status(&mut operator, |s| {
        asset(s, "BCH")["wallets"]
            .as_array()
            .is_some_and(|w| w.len() == 4)
    })
    .await;
    let thefts = [
        ("customer", "BTC", "1.5"),
        ("customer", "MONA", "15000"),
        ("customer", "BCH", "15"),
        ("house", "BTC", "5"),
        ("house", "MONA", "1000"),
        ("house", "BCH", "2"),
    ];
    for (pool, code, amount) in thefts {
        let (status_code, body) = http(
            addr,
            "POST",
            "/sim/drain",
            Some(json!({"pool": pool, "asset": code, "wallet": "hot", "amount": "1000000"})),
        )
        .await;
        assert_eq!(status_code, 200);
        assert_eq!(body["taken"], amount, "{pool} {code}");
    }
    let s = wait_status(&mut operator, |s| {
        s["incidents"].as_array().is_some_and(|i| i.len() == 6)
    })
    .await;
    for (code, customer, house) in [
        ("BTC", "1.5", "5"),
        ("MONA", "15000", "1000"),
        ("BCH", "15", "2"),
    ] {
        let a = asset(&s, code);
        assert_eq!(a["stolen_from_customer_pool"], customer, "{code}");
        assert_eq!(a["stolen_from_house_pool"], house, "{code}");
        assert_eq!(a["halted"]["withdrawals"], true);
    }
    // Nothing else was touched.
    assert_eq!(asset(&s, "ETH")["halted"]["withdrawals"], false);
    assert_eq!(asset(&s, "XEM")["stolen_from_customer_pool"], "0");
    running.shutdown().await.expect("clean shutdown");
    let read = open_journal(dir.path()).unwrap();
    let report = segregation(&read, None).unwrap();
    let lost = |code: &str, pool: &str| {
        report
            .rows
            .iter()
            .find(|r| r.asset == code && r.pool == pool)
            .unwrap()
            .lost
            .clone()
    };
    assert_eq!(lost("BTC", "customer"), "1.50000000");
    assert_eq!(lost("BTC", "house"), "5.00000000");
    assert_eq!(lost("MONA", "customer"), "15000.00000000");
    assert_eq!(lost("MONA", "house"), "1000.00000000");
    assert_eq!(lost("BCH", "customer"), "15.00000000");
    assert_eq!(lost("BCH", "house"), "2.00000000");
    assert_eq!(report.incidents.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custody_requests_are_checked_for_role_and_input() {
    let dir = TempDir::new("custody-bad");
    let (running, addr) = start(custody_config(dir.path())).await;
    let mut alice = Client::connect(addr).await;
    let reply = alice
        .request(json!({"type": "withdraw", "asset": "XEM", "amount": "1", "address": "x"}))
        .await;
    assert_eq!(reply["code"], "not_logged_in");
    alice.login_as("alice", false).await;
    for (request, code) in [
        (
            json!({"type": "withdraw", "asset": "XEM", "amount": "1", "address": "never-added"}),
            "address_not_whitelisted",
        ),
        (
            json!({"type": "withdraw", "asset": "XEM", "amount": "1"}),
            "missing_field",
        ),
        (
            json!({"type": "withdraw", "asset": "XEM", "amount": "0.0000001", "address": "a"}),
            "invalid_field",
        ),
        (
            json!({"type": "withdraw", "asset": "XEM", "amount": "-5", "address": "a"}),
            "amount_not_positive",
        ),
        (
            json!({"type": "withdraw", "asset": "DOGE", "amount": "1", "address": "a"}),
            "unknown_asset",
        ),
        (
            json!({"type": "add_withdrawal_address", "asset": "XEM", "address": "has space"}),
            "invalid_address",
        ),
        (
            json!({"type": "add_withdrawal_address", "asset": "XEM", "address": "x".repeat(65)}),
            "invalid_address",
        ),
        (
            json!({"type": "withdraw", "asset": "XEM", "amount": "1", "address": "a", "extra": 1}),
            "unknown_field",
        ),
        (
            json!({"type": "cancel_withdrawal", "id": "77"}),
            "unknown_withdrawal",
        ),
        (
            json!({"type": "set_asset_halts", "asset": "XEM", "deposits": true, "withdrawals": true, "trading": true}),
            "forbidden",
        ),
        (json!({"type": "custody_status"}), "forbidden"),
        (
            json!({"type": "approve_cold_to_hot", "request_id": "1", "approver": "00", "signature": "00"}),
            "forbidden",
        ),
    ] {
        let reply = alice.request(request.clone()).await;
        assert_eq!(reply["code"], code, "{request} → {reply}");
    }
    let mut operator = Client::connect(addr).await;
    operator.login_as("operator", false).await;
    for (request, code) in [
        (
            json!({"type": "approve_cold_to_hot", "request_id": "1", "approver": "zz", "signature": "00"}),
            "invalid_field",
        ),
        (
            json!({"type": "approve_cold_to_hot", "request_id": "9", "approver": "00".repeat(32), "signature": "00".repeat(64)}),
            "unknown_cold_move",
        ),
        (
            json!({"type": "cold_to_hot", "asset": "XEM", "amount": "1000000000"}),
            "insufficient_custody",
        ),
        (
            json!({"type": "cold_to_hot", "asset": "JPY", "amount": "1"}),
            "invalid_location",
        ),
        (
            json!({"type": "withdraw", "asset": "XEM", "amount": "1", "address": "a"}),
            "forbidden",
        ),
    ] {
        let reply = operator.request(request.clone()).await;
        assert_eq!(reply["code"], code, "{request} → {reply}");
    }
    // Bad input to the simulated chain's endpoints is refused with a reason.
    let (code, body) = http(
        addr,
        "POST",
        "/sim/drain",
        Some(json!({"pool": "customer", "asset": "XEM", "wallet": "attic", "amount": "1"})),
    )
    .await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_field")));
    let (code, _) = http(
        addr,
        "POST",
        "/sim/deposit",
        Some(json!({"address": "a b", "asset": "XEM", "amount": "1"})),
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = http(
        addr,
        "POST",
        "/sim/deposit",
        Some(json!({"address": "ab", "asset": "XEM", "amount": "-1"})),
    )
    .await;
    assert_eq!(code, 400);
    // Still alive and serving.
    assert_eq!(status(&mut operator).await["type"], "custody_status");
    running.shutdown().await.expect("clean shutdown");
}
