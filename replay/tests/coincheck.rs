//! The Coincheck scenario end to end: customers deposit JPY and XEM, trade XEM/JPY, trading
//! halts, a VWAP window is taken and the compensation schedule computed — every figure worked out
//! by hand in `common::coincheck`'s comment and below.

mod common;

use common::*;
use replay::reports::balances::{balances, BalanceQuery, BalanceRow};
use replay::reports::compensation::{compensation, CompensationQuery, PriceSource};
use replay::reports::liabilities::{liabilities, verify_inclusion};
use replay::reports::segregation::segregation;
use replay::reports::trades::{trades, TradeQuery};
use replay::reports::vwap::vwap;
use replay::{open_journal, verify, Point, VerifyOptions, Window};
use rust_decimal::Decimal;

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn t(rfc3339: &str) -> Point {
    Point::parse(rfc3339).unwrap()
}

fn row<'a>(rows: &'a [BalanceRow], account: u32, asset: &str) -> &'a BalanceRow {
    rows.iter()
        .find(|r| r.account == account && r.asset == asset)
        .unwrap_or_else(|| panic!("no {asset} row for account {account}: {rows:?}"))
}

#[test]
fn the_scenario_verifies_with_its_summary() {
    let dir = TempDir::new("cc-verify");
    let seqs = coincheck(dir.path());
    let summary =
        verify(dir.path(), &VerifyOptions::default()).expect("an honest journal verifies");
    assert_eq!(summary.commands, seqs.last);
    assert_eq!(summary.seq_first, Some(1));
    assert_eq!(summary.seq_last, seqs.last);
    // Genesis + commit, then one command, its events and a commit per batch.
    assert_eq!(summary.records, 2 + 3 * seqs.last);
    assert_eq!(summary.ts_ns_first, Some(ns("2018-01-26T09:00:00+09:00")));
    assert_eq!(summary.ts_ns_last, Some(ns("2018-01-26T12:09:00+09:00")));
    assert_eq!((summary.accounts_customer, summary.accounts_house), (4, 1));
    assert_eq!((summary.fills, summary.fills_house_side), (3, 0));
    assert!(summary.instruments.contains(&"XEM/JPY".to_string()));
    assert_eq!(summary.state_hash.len(), 64);
}

#[test]
fn balances_at_a_time_and_at_the_end() {
    let dir = TempDir::new("cc-balances");
    coincheck(dir.path());
    let read = open_journal(dir.path()).unwrap();
    // 11:30 JST: after the 11:00 trade. Alice paid 90,000 + 180 and 265,500 + 531.
    let query = BalanceQuery {
        at: Some(t("2018-01-26T11:30:00+09:00")),
        ..BalanceQuery::default()
    };
    let report = balances(&read, &query).unwrap();
    assert_eq!(report.at.seq, 15);
    let rows = &report.balances;
    assert_eq!(d(&row(rows, 0, "JPY").total), d("643789"));
    assert_eq!(d(&row(rows, 0, "XEM").total), d("4000"));
    assert_eq!(d(&row(rows, 1, "XEM").available), d("6000"));
    assert_eq!(d(&row(rows, 1, "JPY").total), d("355145"));
    // At the end Bob's 500 XEM offer is held, and Dave never traded.
    let report = balances(&read, &BalanceQuery::default()).unwrap();
    let rows = &report.balances;
    assert_eq!(d(&row(rows, 0, "JPY").total), d("554915"));
    assert_eq!(d(&row(rows, 1, "XEM").available), d("5500"));
    assert_eq!(d(&row(rows, 1, "XEM").held), d("500"));
    assert_eq!(d(&row(rows, 2, "JPY").total), d("88609"));
    assert_eq!(d(&row(rows, 2, "XEM").total), d("1500"));
    assert_eq!(d(&row(rows, 3, "XEM").total), d("1000"));
    assert_eq!(row(rows, 3, "XEM").pool, "house");
    assert_eq!(d(&row(rows, 4, "JPY").total), d("500000"));
    // One account, every asset; one pool.
    let query = BalanceQuery {
        account: Some(4),
        ..BalanceQuery::default()
    };
    assert_eq!(balances(&read, &query).unwrap().balances.len(), 6);
    let query = BalanceQuery {
        pool: Some(ledger::Pool::House),
        ..BalanceQuery::default()
    };
    let house = balances(&read, &query).unwrap();
    assert_eq!(house.balances.len(), 1);
    // A sequence number is a point too: after seq 6 only Alice's deposit is there.
    let query = BalanceQuery {
        at: Some(Point::Seq(6)),
        ..BalanceQuery::default()
    };
    let rows = balances(&read, &query).unwrap().balances;
    assert_eq!(rows.len(), 1);
    assert_eq!(d(&rows[0].available), d("1000000"));
}

#[test]
fn trades_by_account_instrument_and_window() {
    let dir = TempDir::new("cc-trades");
    coincheck(dir.path());
    let read = open_journal(dir.path()).unwrap();
    let all = trades(&read, &TradeQuery::default()).unwrap().trades;
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].price, "88.500");
    assert_eq!(d(&all[1].qty), d("3000"));
    assert_eq!(d(&all[1].notional), d("265500"));
    assert_eq!(d(&all[1].fee_buyer), d("531"));
    assert_eq!(d(&all[1].fee_seller), d("265"));
    assert_eq!((all[1].buyer, all[1].seller, all[1].house), (0, 1, "none"));
    let carol = TradeQuery {
        account: Some(2),
        ..TradeQuery::default()
    };
    let carol = trades(&read, &carol).unwrap().trades;
    assert_eq!(carol.len(), 1);
    assert_eq!(carol[0].price, "88.697");
    let window = TradeQuery {
        instrument: Some("xem/jpy".into()),
        window: Window {
            from: Some(t("2018-01-26T10:30:00+09:00")),
            to: Some(Point::Seq(15)),
        },
        ..TradeQuery::default()
    };
    assert_eq!(trades(&read, &window).unwrap().trades.len(), 1);
    let btc = TradeQuery {
        instrument: Some("BTC/JPY".into()),
        ..TradeQuery::default()
    };
    assert!(trades(&read, &btc).unwrap().trades.is_empty());
}

#[test]
fn vwap_over_the_window_is_coincheck_s_figure() {
    let dir = TempDir::new("cc-vwap");
    coincheck(dir.path());
    let read = open_journal(dir.path()).unwrap();
    // 3,000 XEM at 88.500 (265,500 JPY) and 1,000 at 88.697 (88,697 JPY): 354,197 JPY for 4,000
    // XEM is 88.54925 JPY per XEM, rounded to the 0.001 tick: 88.549.
    let window = Window {
        from: Some(t("2018-01-26T10:30:00+09:00")),
        to: Some(t("2018-01-26T12:09:00+09:00")),
    };
    let report = vwap(&read, "XEM/JPY", window).unwrap();
    assert_eq!(report.trades, 2);
    assert_eq!(d(&report.volume), d("4000"));
    assert_eq!(d(&report.notional), d("354197"));
    assert_eq!(report.vwap.to_string(), "88.549");
    // The same window by sequence numbers.
    let by_seq = Window {
        from: Some(Point::Seq(14)),
        to: Some(Point::Seq(17)),
    };
    assert_eq!(vwap(&read, "XEM/JPY", by_seq).unwrap().vwap, d("88.549"));
    // All three trades: (90,000 + 354,197) / 5,000 = 88.8394 → 88.839.
    assert_eq!(
        vwap(&read, "XEM/JPY", Window::ALL).unwrap().vwap,
        d("88.839")
    );
    // A window without trades is an error, not a price.
    let empty = Window {
        from: Some(t("2018-01-26T12:10:00+09:00")),
        to: None,
    };
    assert!(vwap(&read, "XEM/JPY", empty).is_err());
}

#[test]
fn compensation_schedule_by_hand() {
    let dir = TempDir::new("cc-compensation");
    coincheck(dir.path());
    let read = open_journal(dir.path()).unwrap();
    let query = CompensationQuery {
        asset: "XEM".into(),
        at: t("2018-01-26T12:30:00+09:00"),
        price: PriceSource::parse(
            "vwap:XEM/JPY:2018-01-26T10:30:00+09:00..2018-01-26T12:09:00+09:00",
        )
        .unwrap(),
    };
    let report = compensation(&read, &query).unwrap();
    assert_eq!(report.price, d("88.549"));
    assert_eq!(report.quote, "JPY");
    let owed: Vec<(u32, Decimal, Decimal)> = report
        .customers
        .iter()
        .map(|r| (r.account, d(&r.holding), d(&r.owed)))
        .collect();
    // Alice 5,000 × 88.549 = 442,745; Bob 6,000 (500 of them held by his open offer) = 531,294;
    // Carol 1,500 × 88.549 = 132,823.5, rounded up to 132,824. Dave holds no XEM.
    assert_eq!(
        owed,
        vec![
            (0, d("5000"), d("442745")),
            (1, d("6000"), d("531294")),
            (2, d("1500"), d("132824")),
        ]
    );
    assert_eq!(d(&report.holding_total), d("12500"));
    assert_eq!(d(&report.owed_total), d("1106863"));
    // The house's own 1,000 XEM are not the customers' loss: 88,549 JPY on the house pool.
    let house = report.pools.iter().find(|p| p.pool == "house").unwrap();
    assert_eq!(
        (d(&house.holding), d(&house.value)),
        (d("1000"), d("88549"))
    );
    assert_eq!(house.share, "7.41%");
    let customer = report.pools.iter().find(|p| p.pool == "customer").unwrap();
    assert_eq!(customer.share, "92.59%");
    // A price decided elsewhere gives the same schedule.
    let fixed = CompensationQuery {
        price: PriceSource::parse("fixed:JPY:88.549").unwrap(),
        ..query.clone()
    };
    let fixed = compensation(&read, &fixed).unwrap();
    assert_eq!(fixed.owed_total, report.owed_total);
    // A VWAP of another asset does not price XEM.
    let wrong = CompensationQuery {
        price: PriceSource::parse("vwap:BTC/JPY:1..5").unwrap(),
        ..query
    };
    assert!(compensation(&read, &wrong).is_err());
}

#[test]
fn segregation_statement_by_hand() {
    let dir = TempDir::new("cc-segregation");
    coincheck(dir.path());
    let read = open_journal(dir.path()).unwrap();
    let report = segregation(&read, None).unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    let find = |asset: &str, pool: &str| {
        report
            .rows
            .iter()
            .find(|r| r.asset == asset && r.pool == pool)
            .unwrap()
    };
    let xem = find("XEM", "customer");
    assert_eq!((d(&xem.hot), d(&xem.cold)), (d("625"), d("11875")));
    assert_eq!(d(&xem.owed_to_holders), d("12500"));
    assert_eq!(d(&xem.surplus), d("0"));
    assert_eq!(xem.hot_share.as_deref(), Some("5.00%"));
    assert_eq!(xem.hot_cap.as_deref(), Some("5.00%"));
    let jpy = find("JPY", "customer");
    assert_eq!(d(&jpy.bank), d("1500000"));
    assert_eq!(d(&jpy.owed_to_holders), d("1498669"));
    assert_eq!(d(&jpy.surplus), d("1331"));
    assert_eq!(d(&jpy.owed_to_other_pool), d("1331"));
    let house = find("JPY", "house");
    assert_eq!(d(&house.owed_by_other_pool), d("1331"));
    assert_eq!(d(&house.owed_to_holders), d("1331"));
    assert_eq!(d(&find("XEM", "house").hot), d("1000"));
    // At 09:00, before the custody move, the deposits sat hot: over the cap, flagged.
    let early = segregation(&read, Some(Point::Seq(10))).unwrap();
    assert_eq!(
        early.violations,
        vec!["XEM customer pool: hot_over_cap".to_string()]
    );
}

#[test]
fn every_customer_proves_inclusion_in_the_liabilities_roots() {
    let dir = TempDir::new("cc-liabilities");
    coincheck(dir.path());
    let read = open_journal(dir.path()).unwrap();
    let report = liabilities(&read, None, &[9; 32]).unwrap();
    let xem = report.roots.iter().find(|r| r.asset == "XEM").unwrap();
    assert_eq!((d(&xem.sum), xem.leaves), (d("12500"), 3));
    let jpy = report.roots.iter().find(|r| r.asset == "JPY").unwrap();
    assert_eq!((d(&jpy.sum), jpy.leaves), (d("1498669"), 4));
    // Customers 0, 1, 2 and 4; never the house.
    let accounts: Vec<u32> = report.documents.iter().map(|d| d.account).collect();
    assert_eq!(accounts, vec![0, 1, 2, 4]);
    for document in &report.documents {
        for root in [xem, jpy] {
            let holds = document.proofs.iter().any(|p| p.asset == root.asset);
            let verified = verify_inclusion(document, &root.hash);
            assert_eq!(
                verified.is_ok(),
                holds,
                "account {} in {}",
                document.account,
                root.asset
            );
        }
    }
    // The same secret and journal give the same roots: an auditor can reproduce them.
    let again = liabilities(&read, None, &[9; 32]).unwrap();
    assert_eq!(again.roots, report.roots);
}
