//! A house that trades where its policy allows it, disclosed: replay shows the policy over time,
//! every fill with a house side and its share of customer volume, and verifies the journal.

mod common;

use common::*;
use engine::{Command, Event, ExchangeCommand, ExchangeEvent, HousePolicy, RejectReason, Side};
use ledger::Pool;
use replay::reports::internalization::internalization;
use replay::{verify, VerifyOptions};

fn policy(policy: HousePolicy) -> ExchangeCommand {
    ExchangeCommand::SetHousePolicy {
        instrument: XEM_JPY,
        policy,
    }
}

/// Accounts: 0 a customer who buys, 1 the house, 2 a customer who sells.
/// 09:00 the house's offer is refused (forbidden); 10:00 disclosed; the house sells the customer
/// 100 XEM, a customer sells them 300; 10:30 the house offers 50 more; 11:00 forbidden again, and
/// the house's offer is cancelled.
fn disclosed(dir: &std::path::Path) -> (u64, u64) {
    let mut x = Exchange::start(dir, &config(), "2018-09-14T09:00:00+09:00");
    for pool in [Pool::Customer, Pool::House, Pool::Customer] {
        x.run(create(pool));
    }
    x.run(deposit(0, JPY, 10_000_000, 1));
    x.run(deposit(1, XEM, 1_000 * XEM_UNITS, 2));
    x.run(deposit(2, XEM, 1_000 * XEM_UNITS, 3));
    let (_, refused) = x.run(xem_order(1, Side::Sell, 90_000, 100, 1));
    assert!(matches!(
        refused[0],
        ExchangeEvent::Order(Event::Rejected {
            reason: RejectReason::HouseTradingForbidden,
            ..
        })
    ));
    x.at("2018-09-14T10:00:00+09:00");
    let (opened, _) = x.run(policy(HousePolicy::Disclosed));
    x.run(xem_order(1, Side::Sell, 90_000, 100, 2));
    x.run(xem_order(0, Side::Buy, 90_000, 100, 1));
    x.run(xem_order(2, Side::Sell, 90_000, 300, 1));
    x.run(xem_order(0, Side::Buy, 90_000, 300, 2));
    x.at("2018-09-14T10:30:00+09:00");
    x.run(xem_order(1, Side::Sell, 91_000, 50, 3));
    x.at("2018-09-14T11:00:00+09:00");
    let (closed, events) = x.run(policy(HousePolicy::Forbidden));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ExchangeEvent::Order(Event::Cancelled { account: 1, .. }))),
        "{events:?}"
    );
    x.run(ExchangeCommand::Trade(Command::Halt {
        instrument: XEM_JPY,
    }));
    x.shutdown();
    (opened, closed)
}

#[test]
fn disclosed_house_trading_is_reported_and_verifies() {
    let dir = TempDir::new("disclosed");
    let (opened, closed) = disclosed(dir.path());
    let summary =
        verify(dir.path(), &VerifyOptions::default()).expect("disclosed trading is legal");
    assert_eq!((summary.fills, summary.fills_house_side), (2, 1));
    let read = replay::open_journal(dir.path()).unwrap();
    let report = internalization(&read).unwrap();
    let xem = report
        .instruments
        .iter()
        .find(|i| i.instrument == "XEM/JPY")
        .unwrap();
    let timeline: Vec<(Option<u64>, &str)> =
        xem.policies.iter().map(|p| (p.seq, p.policy)).collect();
    assert_eq!(
        timeline,
        vec![
            (None, "forbidden"),
            (Some(opened), "disclosed"),
            (Some(closed), "forbidden")
        ]
    );
    assert_eq!(xem.fills_house_side.len(), 1);
    let fill = &xem.fills_house_side[0];
    assert_eq!((fill.house, fill.seller, fill.buyer), ("maker", 1, 0));
    assert_eq!(xem.customer_volume, "400.000000");
    assert_eq!(xem.house_volume, "100.000000");
    assert_eq!(xem.house_share.as_deref(), Some("25.00%"));
    assert_eq!(xem.violations, 0);
    // Other instruments: the default policy, no house fills, no customer volume.
    let btc = &report.instruments[0];
    assert_eq!(btc.policies.len(), 1);
    assert!(btc.fills_house_side.is_empty());
    assert_eq!(btc.house_share, None);
}
