//! Hand-computed expected events for every order type, self-trade prevention mode and command.
//! Instruments i0 and i1 have reference price 1000 and a 10% band: prices 900..=1100.

mod common;

use common::Harness;
use engine::*;

// ------------------------------------------------------------------ limit orders

#[test]
fn gtc_limit_rests_when_nothing_crosses() {
    let mut h = Harness::new();
    h.check(
        "a1 buy 10 @1000 gtc",
        &["accepted #1 a1 buy 10 @1000 gtc", "rested #1 buy 10@1000"],
    );
    h.check(
        "a2 sell 5 @1001 gtc",
        &["accepted #2 a2 sell 5 @1001 gtc", "rested #2 sell 5@1001"],
    );
    assert_eq!(h.ladder(0, Side::Buy), ["10@1000"]);
    assert_eq!(h.ladder(0, Side::Sell), ["5@1001"]);
    assert_eq!(h.matcher.best_bid(0), Some(1000));
    assert_eq!(h.matcher.best_ask(0), Some(1001));
}

#[test]
fn gtc_limit_trades_at_maker_price_then_rests_the_rest() {
    let mut h = Harness::new();
    h.run("a1 sell 4 @1001 gtc");
    h.run("a2 sell 3 @1002 gtc");
    h.check(
        "a3 buy 10 @1002 gtc",
        &[
            "accepted #3 a3 buy 10 @1002 gtc",
            "fill #1<-#3 4@1001 left 0/6",
            "fill #2<-#3 3@1002 left 0/3",
            "rested #3 buy 3@1002",
        ],
    );
    assert_eq!(h.ladder(0, Side::Sell), Vec::<String>::new());
    assert_eq!(h.ladder(0, Side::Buy), ["3@1002"]);
    assert_eq!(h.matcher.last_price(0), Some(1002));
}

#[test]
fn price_time_priority_within_a_level() {
    let mut h = Harness::new();
    h.run("a1 sell 2 @1000 gtc");
    h.run("a2 sell 2 @1000 gtc");
    h.run("a3 sell 2 @999 gtc");
    h.check(
        "a4 buy 5 @1000 ioc",
        &[
            "accepted #4 a4 buy 5 @1000 ioc",
            "fill #3<-#4 2@999 left 0/3",
            "fill #1<-#4 2@1000 left 0/1",
            "fill #2<-#4 1@1000 left 1/0",
        ],
    );
    assert_eq!(h.ladder(0, Side::Sell), ["1@1000"]);
}

#[test]
fn ioc_expires_what_does_not_trade() {
    let mut h = Harness::new();
    h.run("a1 sell 3 @1000 gtc");
    h.check(
        "a2 buy 5 @1000 ioc",
        &[
            "accepted #2 a2 buy 5 @1000 ioc",
            "fill #1<-#2 3@1000 left 0/2",
            "expired #2 2",
        ],
    );
    h.check(
        "a2 buy 5 @1000 ioc",
        &["accepted #3 a2 buy 5 @1000 ioc", "expired #3 5"],
    );
    assert!(h.ladder(0, Side::Buy).is_empty());
}

#[test]
fn fok_trades_in_full_or_not_at_all() {
    let mut h = Harness::new();
    h.run("a1 sell 3 @1000 gtc");
    h.run("a1 sell 3 @1001 gtc");
    h.check(
        "a2 buy 7 @1001 fok",
        &["accepted #3 a2 buy 7 @1001 fok", "expired #3 7"],
    );
    assert_eq!(h.ladder(0, Side::Sell), ["3@1000", "3@1001"]);
    h.check(
        "a2 buy 6 @1000 fok",
        &["accepted #4 a2 buy 6 @1000 fok", "expired #4 6"],
    );
    h.check(
        "a2 buy 6 @1001 fok",
        &[
            "accepted #5 a2 buy 6 @1001 fok",
            "fill #1<-#5 3@1000 left 0/3",
            "fill #2<-#5 3@1001 left 0/0",
        ],
    );
}

#[test]
fn fok_does_not_count_own_orders_unless_they_would_be_cancelled_away() {
    let mut h = Harness::new();
    h.run("a1 sell 3 @1000 gtc");
    h.run("a2 sell 3 @1000 gtc");
    // Under cancel-incoming, reaching a2's own order first ends the fill: not fillable.
    h.check(
        "a1 buy 3 @1000 fok stp:ci",
        &["accepted #3 a1 buy 3 @1000 fok", "expired #3 3"],
    );
    // Under cancel-resting the own order is removed and a2's fills it in full.
    h.check(
        "a1 buy 3 @1000 fok stp:cr",
        &[
            "accepted #4 a1 buy 3 @1000 fok",
            "cancelled #1 3 left 0 SelfTradePrevention Book",
            "fill #2<-#4 3@1000 left 0/0",
        ],
    );
}

#[test]
fn post_only_rests_or_is_rejected_whole() {
    let mut h = Harness::new();
    h.run("a1 sell 3 @1001 gtc");
    h.check(
        "a2 buy 5 @1000 post",
        &["accepted #2 a2 buy 5 @1000 post", "rested #2 buy 5@1000"],
    );
    h.check("a2 buy 5 @1001 post", &["rejected PostOnlyWouldTake"]);
    h.check("a2 buy 5 @999 ioc-post", &["rejected InvalidTimeInForce"]);
    assert_eq!(h.ladder(0, Side::Buy), ["5@1000"]);
    assert_eq!(h.ladder(0, Side::Sell), ["3@1001"]);
}

// ------------------------------------------------------------------ market orders

#[test]
fn market_order_executes_only_inside_the_band_and_expires_the_rest() {
    let mut h = Harness::new();
    h.run("a1 sell 2 @1050 gtc");
    h.run("a1 sell 2 @1100 gtc");
    // 1101 is outside the band and cannot even rest; the market order must stop at 1100.
    h.check("a1 sell 2 @1101 gtc", &["rejected OutsidePriceBand"]);
    h.check(
        "a2 buy 10 market",
        &[
            "accepted #3 a2 buy 10 market",
            "fill #1<-#3 2@1050 left 0/8",
            "fill #2<-#3 2@1100 left 0/6",
            "expired #3 6",
        ],
    );
}

#[test]
fn market_order_band_moves_with_the_last_trade() {
    let mut h = Harness::new();
    h.run("a1 sell 1 @1100 gtc");
    h.run("a2 buy 1 market");
    assert_eq!(h.matcher.reference_price(0), 1100);
    // Now the band is [990, 1210]: an ask at 1200 is reachable.
    h.run("a1 sell 1 @1200 gtc");
    h.check(
        "a2 buy 2 market",
        &[
            "accepted #4 a2 buy 2 market",
            "fill #3<-#4 1@1200 left 0/1",
            "expired #4 1",
        ],
    );
}

#[test]
fn market_order_on_an_empty_book_expires() {
    let mut h = Harness::new();
    h.check(
        "a2 sell 3 market",
        &["accepted #1 a2 sell 3 market", "expired #1 3"],
    );
    assert_eq!(h.matcher.last_price(0), None);
}

// ------------------------------------------------------------------ stop orders

#[test]
fn stop_market_waits_off_book_then_triggers_on_last_trade() {
    let mut h = Harness::new();
    h.check("a1 buy 2 stop 1005", &["accepted #1 a1 buy 2 stop 1005"]);
    assert!(
        h.ladder(0, Side::Buy).is_empty(),
        "a stop is not on the public book"
    );
    h.run("a2 sell 1 @1005 gtc");
    h.run("a2 sell 5 @1006 gtc");
    h.check(
        "a3 buy 1 @1005 gtc",
        &[
            "accepted #4 a3 buy 1 @1005 gtc",
            "fill #2<-#4 1@1005 left 0/0",
            "triggered #1 stop 1005 last 1005",
            "fill #3<-#1 2@1006 left 3/0",
        ],
    );
    assert!(h.matcher.order(1).is_none());
}

#[test]
fn stop_limit_triggers_into_a_limit_that_rests() {
    let mut h = Harness::new();
    h.check(
        "a1 sell 4 stop 995 @990 gtc",
        &["accepted #1 a1 sell 4 stop 995 @990 gtc"],
    );
    h.run("a2 buy 1 @995 gtc");
    h.check(
        "a3 sell 1 @995 ioc",
        &[
            "accepted #3 a3 sell 1 @995 ioc",
            "fill #2<-#3 1@995 left 0/0",
            "triggered #1 stop 995 last 995",
            "rested #1 sell 4@990",
        ],
    );
    assert_eq!(h.ladder(0, Side::Sell), ["4@990"]);
    // Once it rests it is an ordinary limit order: it can be replaced.
    h.check("a1 replace #1 2@990", &["replaced #1 4@990 -> 2@990 Kept"]);
}

#[test]
fn stops_trigger_in_documented_order_and_cascade() {
    let mut h = Harness::new();
    // Three buy stops; the lower stop price triggers first, equal stops by order id.
    h.run("a1 buy 1 stop 1003"); // #1
    h.run("a2 buy 1 stop 1002"); // #2
    h.run("a3 buy 1 stop 1002"); // #3
    h.run("a4 sell 1 @1002 gtc"); // #4
    h.run("a4 sell 1 @1003 gtc"); // #5
    h.run("a4 sell 1 @1004 gtc"); // #6
    h.run("a4 sell 1 @1005 gtc"); // #7
    h.check(
        "a5 buy 1 @1002 ioc",
        &[
            "accepted #8 a5 buy 1 @1002 ioc",
            "fill #4<-#8 1@1002 left 0/0",
            "triggered #2 stop 1002 last 1002",
            "fill #5<-#2 1@1003 left 0/0",
            "triggered #3 stop 1002 last 1003",
            "fill #6<-#3 1@1004 left 0/0",
            "triggered #1 stop 1003 last 1004",
            "fill #7<-#1 1@1005 left 0/0",
        ],
    );
}

#[test]
fn stop_already_reached_is_rejected() {
    let mut h = Harness::new();
    h.check(
        "a1 buy 1 stop 1000",
        &["rejected StopWouldTriggerImmediately"],
    );
    h.check(
        "a1 sell 1 stop 1000",
        &["rejected StopWouldTriggerImmediately"],
    );
    h.check("a1 sell 1 stop 0", &["rejected PriceNotPositive"]);
}

#[test]
fn stop_can_be_cancelled_but_not_replaced() {
    let mut h = Harness::new();
    h.run("a1 buy 2 stop 1010 c7");
    h.check("a1 replace c7 2@1000", &["rejected NotReplaceable"]);
    h.check("a1 cancel c7", &["cancelled #1 2 left 0 Requested Stops"]);
    h.check("a1 cancel c7", &["rejected UnknownOrder"]);
}

// ------------------------------------------------------------------ self-trade prevention

fn stp_book() -> Harness {
    let mut h = Harness::new();
    h.run("a1 sell 2 @1000 gtc"); // #1, a1's own
    h.run("a2 sell 2 @1000 gtc"); // #2, behind it
    h
}

#[test]
fn stp_cancel_resting_removes_own_order_and_keeps_matching() {
    let mut h = stp_book();
    h.check(
        "a1 buy 3 @1000 gtc stp:cr",
        &[
            "accepted #3 a1 buy 3 @1000 gtc",
            "cancelled #1 2 left 0 SelfTradePrevention Book",
            "fill #2<-#3 2@1000 left 0/1",
            "rested #3 buy 1@1000",
        ],
    );
}

#[test]
fn stp_cancel_incoming_keeps_resting_order() {
    let mut h = stp_book();
    h.check(
        "a1 buy 3 @1000 gtc stp:ci",
        &[
            "accepted #3 a1 buy 3 @1000 gtc",
            "cancelled #3 3 left 0 SelfTradePrevention Incoming",
        ],
    );
    assert_eq!(h.ladder(0, Side::Sell), ["4@1000"]);
    assert!(h.ladder(0, Side::Buy).is_empty());
}

#[test]
fn stp_cancel_both() {
    let mut h = stp_book();
    h.check(
        "a1 buy 3 @1000 gtc stp:cb",
        &[
            "accepted #3 a1 buy 3 @1000 gtc",
            "cancelled #1 2 left 0 SelfTradePrevention Book",
            "cancelled #3 3 left 0 SelfTradePrevention Incoming",
        ],
    );
    assert_eq!(h.ladder(0, Side::Sell), ["2@1000"]);
}

#[test]
fn stp_decrement_and_cancel_larger_incoming() {
    let mut h = stp_book();
    h.check(
        "a1 buy 3 @1000 gtc stp:dc",
        &[
            "accepted #3 a1 buy 3 @1000 gtc",
            "cancelled #1 2 left 0 SelfTradePrevention Book",
            "cancelled #3 2 left 1 SelfTradePrevention Incoming",
            "fill #2<-#3 1@1000 left 1/0",
        ],
    );
}

#[test]
fn stp_decrement_and_cancel_larger_resting() {
    let mut h = stp_book();
    h.check(
        "a1 buy 1 @1000 gtc stp:dc",
        &[
            "accepted #3 a1 buy 1 @1000 gtc",
            "cancelled #1 1 left 1 SelfTradePrevention Book",
            "cancelled #3 1 left 0 SelfTradePrevention Incoming",
        ],
    );
    assert_eq!(h.ladder(0, Side::Sell), ["3@1000"]);
    // The decremented order kept its place at the head of the level.
    let orders = h.matcher.level_orders(0, Side::Sell, 1000);
    assert_eq!(orders[0].order_id, 1);
    assert_eq!(orders[0].qty_open, 1);
}

#[test]
fn stp_account_default_applies_when_order_names_none() {
    let mut h = stp_book();
    h.check("a1 stp ci", &["stp a1 CancelIncoming"]);
    h.check(
        "a1 buy 1 @1000 ioc",
        &[
            "accepted #3 a1 buy 1 @1000 ioc",
            "cancelled #3 1 left 0 SelfTradePrevention Incoming",
        ],
    );
}

#[test]
fn self_match_never_prints_a_trade() {
    for mode in ["cr", "ci", "cb", "dc"] {
        let mut h = Harness::new();
        h.run("a1 sell 5 @1000 gtc");
        let events = h.run(&format!("a1 buy 5 @1000 gtc stp:{mode}"));
        assert!(
            events.iter().all(|e| !e.starts_with("fill")),
            "{mode}: {events:?}"
        );
    }
}

// ------------------------------------------------------------------ cancel, replace, mass cancel

#[test]
fn cancel_by_id_and_by_client_id() {
    let mut h = Harness::new();
    h.run("a1 buy 2 @1000 gtc c1");
    h.run("a1 buy 3 @999 gtc c2");
    h.check("a1 cancel #1", &["cancelled #1 2 left 0 Requested Book"]);
    h.check("a1 cancel c2", &["cancelled #2 3 left 0 Requested Book"]);
    assert!(h.ladder(0, Side::Buy).is_empty());
    // The client order id is free again once its order is closed.
    h.check(
        "a1 buy 1 @1000 gtc c1",
        &["accepted #3 a1 buy 1 @1000 gtc", "rested #3 buy 1@1000"],
    );
}

#[test]
fn replace_reducing_quantity_keeps_priority() {
    let mut h = Harness::new();
    h.run("a1 sell 5 @1000 gtc");
    h.run("a2 sell 5 @1000 gtc");
    h.check(
        "a1 replace #1 3@1000",
        &["replaced #1 5@1000 -> 3@1000 Kept"],
    );
    h.check(
        "a3 buy 1 @1000 ioc",
        &[
            "accepted #3 a3 buy 1 @1000 ioc",
            "fill #1<-#3 1@1000 left 2/0",
        ],
    );
}

#[test]
fn replace_increasing_quantity_loses_priority() {
    let mut h = Harness::new();
    h.run("a1 sell 5 @1000 gtc");
    h.run("a2 sell 5 @1000 gtc");
    h.check(
        "a1 replace #1 6@1000",
        &["replaced #1 5@1000 -> 6@1000 Lost", "rested #1 sell 6@1000"],
    );
    h.check(
        "a3 buy 1 @1000 ioc",
        &[
            "accepted #3 a3 buy 1 @1000 ioc",
            "fill #2<-#3 1@1000 left 4/0",
        ],
    );
}

#[test]
fn replace_to_a_crossing_price_trades_as_taker() {
    let mut h = Harness::new();
    h.run("a1 sell 5 @1002 gtc");
    h.run("a2 buy 2 @1001 gtc");
    h.check(
        "a1 replace #1 5@1001 c9",
        &[
            "replaced #1 5@1002 -> 5@1001 Lost",
            "fill #2<-#1 2@1001 left 0/3",
            "rested #1 sell 3@1001",
        ],
    );
    assert_eq!(h.matcher.order(1).unwrap().client_order_id, 9);
}

#[test]
fn replace_of_post_only_to_a_crossing_price_is_rejected_and_order_kept() {
    let mut h = Harness::new();
    h.run("a1 sell 5 @1002 post");
    h.run("a2 buy 2 @1001 gtc");
    h.check("a1 replace #1 5@1001", &["rejected PostOnlyWouldTake"]);
    assert_eq!(h.ladder(0, Side::Sell), ["5@1002"]);
}

#[test]
fn mass_cancel_by_account_instrument_and_side_in_order_id_order() {
    let mut h = Harness::new();
    h.run("a1 buy 1 @999 gtc"); // #1
    h.run("a1 sell 1 @1001 gtc"); // #2
    h.run("a1 buy 1 @998 gtc i1"); // #3
    h.run("a2 buy 1 @997 gtc"); // #4, another account
    h.run("a1 buy 1 stop 1010"); // #5
    h.check(
        "a1 masscancel i0 buy",
        &[
            "cancelled #1 1 left 0 Requested Book",
            "cancelled #5 1 left 0 Requested Stops",
            "masscancelled a1 2",
        ],
    );
    h.check(
        "a1 masscancel",
        &[
            "cancelled #2 1 left 0 Requested Book",
            "cancelled #3 1 left 0 Requested Book",
            "masscancelled a1 2",
        ],
    );
    assert_eq!(h.matcher.orders_open(), 1);
    assert_eq!(h.ladder(0, Side::Buy), ["1@997"]);
}

// ------------------------------------------------------------------ halts

#[test]
fn halt_rejects_orders_but_accepts_cancels_then_resume() {
    let mut h = Harness::new();
    h.run("a1 buy 2 @1000 gtc");
    h.check("halt i0", &["halted i0"]);
    h.check("a2 sell 1 @1000 gtc", &["rejected InstrumentHalted"]);
    h.check("a1 replace #1 1@1000", &["rejected InstrumentHalted"]);
    // The other instrument keeps trading.
    h.check(
        "a2 sell 1 @1000 gtc i1",
        &["accepted #2 a2 sell 1 @1000 gtc", "rested #2 sell 1@1000"],
    );
    h.check("a1 cancel #1", &["cancelled #1 2 left 0 Requested Book"]);
    h.check("resume i0", &["resumed i0"]);
    h.check(
        "a2 sell 1 @1000 gtc",
        &["accepted #3 a2 sell 1 @1000 gtc", "rested #3 sell 1@1000"],
    );
    assert_eq!(h.matcher.trading(0), Trading::Open);
}

// ------------------------------------------------------------------ bad input

/// Each bad command is rejected with its own reason and leaves the book exactly as it was.
#[test]
fn bad_input_is_rejected_specifically_and_book_unchanged() {
    let mut h = Harness::new();
    h.run("a1 buy 2 @1000 gtc c5");
    h.run("a2 sell 2 @1001 gtc c6");
    let before = (
        h.ladder(0, Side::Buy),
        h.ladder(0, Side::Sell),
        h.matcher.order_id_next(),
    );
    let cases = [
        ("a1 buy 0 @1000 gtc", "QtyNotPositive"),
        ("a1 buy -3 @1000 gtc", "QtyNotPositive"),
        ("a1 buy 1001 @1000 gtc", "QtyAboveMax"),
        ("a1 buy 1 @0 gtc", "PriceNotPositive"),
        ("a1 buy 1 @-5 gtc", "PriceNotPositive"),
        ("a1 buy 1 @899 gtc", "OutsidePriceBand"),
        ("a1 sell 1 @1101 gtc", "OutsidePriceBand"),
        ("a1 buy 1 @1000 gtc i9", "UnknownInstrument"),
        ("a99 buy 1 @1000 gtc", "UnknownAccount"),
        ("a1 buy 1 @999 gtc c5", "DuplicateClientOrderId"),
        ("a1 cancel #77", "UnknownOrder"),
        ("a1 cancel c77", "UnknownOrder"),
        ("a1 cancel #2", "NotYourOrder"),
        ("a1 replace #2 1@1001", "NotYourOrder"),
        ("a1 replace #1 0@1000", "QtyNotPositive"),
        ("a1 replace #1 1@2000", "OutsidePriceBand"),
        ("a1 replace #1 1@1000 c5", "Replaced"),
        ("a1 masscancel i9", "UnknownInstrument"),
        ("halt i9", "UnknownInstrument"),
    ];
    for (command, reason) in cases {
        let events = h.run(command);
        if reason == "Replaced" {
            // Keeping one's own client id on a replace is not a duplicate.
            assert_eq!(events, ["replaced #1 2@1000 -> 1@1000 Kept"]);
            h.run("a1 replace #1 2@1000");
            h.run("a3 buy 1 @900 gtc");
            h.run("a3 cancel #3");
            continue;
        }
        assert_eq!(events, [format!("rejected {reason}")], "command: {command}");
    }
    let after = (
        h.ladder(0, Side::Buy),
        h.ladder(0, Side::Sell),
        h.matcher.order_id_next() - 1,
    );
    assert_eq!(before.0, after.0);
    assert_eq!(before.1, after.1);
    assert_eq!(
        before.2, after.2,
        "only the one valid probe order took an id"
    );
}

#[test]
fn off_tick_and_off_lot_are_rejected_at_the_edge() {
    let spec = common::spec("BTC/JPY");
    let mut spec = spec;
    spec.tick_size = "0.5".parse().unwrap();
    spec.lot_size = "0.01".parse().unwrap();
    assert_eq!(
        spec.price_to_ticks("1000.25".parse().unwrap()),
        Err(RejectReason::OffTick)
    );
    assert_eq!(
        spec.qty_to_lots("0.015".parse().unwrap()),
        Err(RejectReason::OffLot)
    );
    assert_eq!(spec.price_to_ticks("1000.5".parse().unwrap()), Ok(2001));
}

#[test]
fn quantity_below_minimum_is_rejected() {
    let mut config = common::config();
    config.accounts_max = 4;
    let mut spec = common::spec("BTC/JPY");
    spec.qty_lots_min = 5;
    let mut m = Matcher::new(config, vec![spec]);
    let mut out = Vec::new();
    let order = NewOrder {
        account: 1,
        instrument: 0,
        client_order_id: 1,
        side: Side::Buy,
        kind: OrderKind::limit(1000, TimeInForce::Gtc),
        qty_lots: 4,
        stp: None,
    };
    m.apply(
        &Sequenced {
            seq: 1,
            ts_ns: 0,
            command: Command::NewOrder(order),
        },
        &mut out,
    );
    assert!(matches!(
        out[..],
        [Event::Rejected {
            reason: RejectReason::QtyBelowMin,
            ..
        }]
    ));
}

// ------------------------------------------------------------------ limits

#[test]
fn every_capacity_limit_is_a_clear_rejection() {
    let mut h = Harness::new(); // 8 levels per side, 4 stops per side, 16 orders per account
    for p in 0..8 {
        h.run(&format!("a1 buy 1 @{} gtc", 990 + p));
    }
    h.check("a1 buy 1 @980 gtc", &["rejected BookFull"]);
    // Joining an existing level still works.
    assert_eq!(h.run("a1 buy 1 @990 gtc")[1], "rested #9 buy 1@990");
    for s in 0..4 {
        h.run(&format!("a2 buy 1 stop {}", 1010 + s));
    }
    h.check("a2 buy 1 stop 1020", &["rejected StopsFull"]);
    for _ in 0..7 {
        h.run("a1 buy 1 @995 gtc");
    }
    h.check("a1 buy 1 @995 gtc", &["rejected TooManyOpenOrders"]);
    // IOC orders never rest, so they need no room.
    assert_eq!(h.run("a1 buy 1 @980 ioc")[1], "expired #21 1");
}

#[test]
fn a_level_emptied_behind_the_best_leaves_the_depth_and_never_takes_room() {
    let mut h = Harness::new(); // 8 levels per side
    for p in 0..8 {
        h.run(&format!("a1 buy 1 @{} gtc", 990 + p)); // orders #1..#8 at 990..997
    }
    // Empty six levels behind the best (997): none of them is in the depth any more.
    for id in 2..=7 {
        h.run(&format!("a1 cancel #{id}"));
    }
    assert_eq!(h.ladder(0, Side::Buy), ["1@997", "1@990"]);
    // Their room is free again: six new prices rest, at the old prices and new ones alike.
    for p in [993, 980, 981, 982, 983, 984] {
        let events = h.run(&format!("a1 buy 1 @{p} gtc"));
        assert!(events[1].starts_with("rested"), "@{p}: {events:?}");
    }
    assert_eq!(
        h.ladder(0, Side::Buy),
        ["1@997", "1@993", "1@990", "1@984", "1@983", "1@982", "1@981", "1@980"]
    );
    h.check("a1 buy 1 @985 gtc", &["rejected BookFull"]);
    // The best emptying takes it out at once: the next best is what a seller meets.
    h.run("a1 cancel #1");
    h.run("a1 cancel #8");
    assert_eq!(h.ladder(0, Side::Buy)[0], "1@993");
    let events = h.run("a2 sell 1 @900 ioc");
    assert!(
        events[1].starts_with("fill") && events[1].contains("@993"),
        "{events:?}"
    );
    assert_eq!(h.ladder(0, Side::Buy)[0], "1@984");
    assert_eq!(h.matcher.check_invariants(), Ok(()));
}
