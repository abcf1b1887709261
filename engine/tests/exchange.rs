//! The exchange state machine: reservations, settlement, fees, pools and policies, by hand.

mod common;

use common::market::*;
use engine::*;
use ledger::{AmountUnits, Location, Pool};

/// A seller with 2 BTC and a buyer with 10_000 JPY.
fn two_customers(v: &mut Venue) -> (AccountId, AccountId) {
    let seller = v.account(Pool::Customer);
    let buyer = v.account(Pool::Customer);
    v.deposit(seller, BTC, 200_000_000);
    v.deposit(buyer, JPY, 10_000);
    (seller, buyer)
}

#[test]
fn buy_reserves_notional_plus_taker_fee_and_cancel_releases_exactly() {
    let mut v = Venue::new();
    let (_, buyer) = two_customers(&mut v);
    // 100 lots at 1000: 1000 JPY, plus 0.2% = 2 JPY.
    v.limit(buyer, Side::Buy, 1_000, 100);
    assert_eq!(v.balance(buyer, JPY), (8_998, 1_002));
    assert_eq!(v.exchange.reserved_units(1), Some(1_002));
    v.apply(ExchangeCommand::Trade(Command::Cancel {
        account: buyer,
        order: OrderRef::Id(1),
    }));
    assert_eq!(v.balance(buyer, JPY), (10_000, 0));
    assert_eq!(v.exchange.reserved_units(1), None);
}

#[test]
fn sell_reserves_base_quantity() {
    let mut v = Venue::new();
    let (seller, _) = two_customers(&mut v);
    v.limit(seller, Side::Sell, 1_000, 150);
    assert_eq!(v.balance(seller, BTC), (50_000_000, 150_000_000));
}

#[test]
fn fill_settles_both_sides_and_fees_go_to_the_house() {
    let mut v = Venue::new();
    let (seller, buyer) = two_customers(&mut v);
    v.limit(seller, Side::Sell, 1_000, 100);
    let events = v.limit(buyer, Side::Buy, 1_010, 100);
    let s = settlements(&events);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].notional_units, 1_000);
    assert_eq!(s[0].fee_buyer_units, 2, "buyer is the taker: 0.2%");
    assert_eq!(s[0].fee_seller_units, 1, "seller is the maker: 0.1%");
    assert_eq!(s[0].house, HouseSide::None);
    // The buyer reserved 1010 + 3 at its limit and paid 1000 + 2: the rest is back at once.
    assert_eq!(v.balance(buyer, JPY), (10_000 - 1_002, 0));
    assert_eq!(v.balance(buyer, BTC), (100_000_000, 0));
    assert_eq!(v.balance(seller, JPY), (999, 0));
    assert_eq!(v.balance(seller, BTC), (100_000_000, 0));
    let ledger = v.exchange.ledger();
    assert_eq!(ledger.row(Pool::House, JPY).fee_income, 3);
}

#[test]
fn customer_pool_surplus_equals_fees_until_swept() {
    let mut v = Venue::new();
    let (seller, buyer) = two_customers(&mut v);
    v.limit(seller, Side::Sell, 1_000, 100);
    v.limit(buyer, Side::Buy, 1_000, 100);
    let customer = v.exchange.ledger().totals(Pool::Customer, JPY);
    assert_eq!(
        customer.custody, 10_000,
        "the fees are still in the customer bank account"
    );
    assert_eq!(customer.owed, 10_000 - 3);
    assert_eq!(customer.surplus(), 3);
    assert_eq!(customer.due_to, 3, "recorded as owed to the house");
    assert_eq!(v.exchange.ledger().row(Pool::House, JPY).due_from, 3);
    let events = v.apply(ExchangeCommand::FeeSweep { asset: JPY });
    assert_eq!(
        events,
        [ExchangeEvent::Swept {
            asset: JPY,
            location: Location::Bank,
            customer_to_house_units: 3
        }]
    );
    let customer = v.exchange.ledger().totals(Pool::Customer, JPY);
    assert_eq!(customer.surplus(), 0);
    assert_eq!(customer.due_to, 0);
    assert_eq!(v.exchange.ledger().totals(Pool::House, JPY).custody, 3);
}

#[test]
fn held_funds_cannot_be_spent() {
    let mut v = Venue::new();
    let (_, buyer) = two_customers(&mut v);
    v.limit(buyer, Side::Buy, 1_000, 800); // reserves 8_016
    assert_eq!(v.balance(buyer, JPY), (1_984, 8_016));
    let events = v.limit(buyer, Side::Buy, 1_000, 200); // needs 2_004
    assert_eq!(rejected(&events), Some(RejectReason::InsufficientBalance));
    let address = v.whitelist(buyer, JPY, "bank-0001");
    let events = v.withdraw(buyer, JPY, 2_000, address);
    assert_eq!(rejected(&events), Some(RejectReason::InsufficientBalance));
    assert_eq!(v.balance(buyer, JPY), (1_984, 8_016));
}

#[test]
fn house_order_on_forbidden_instrument_is_rejected() {
    let mut v = Venue::new();
    let house = v.account(Pool::House);
    v.deposit(house, JPY, 1_000_000);
    let events = v.limit(house, Side::Buy, 1_000, 1);
    assert_eq!(rejected(&events), Some(RejectReason::HouseTradingForbidden));
    assert_eq!(v.exchange.matcher().orders_open(), 0);
    assert_eq!(v.balance(house, JPY), (1_000_000, 0));
}

#[test]
fn disclosed_mode_flags_exactly_the_fills_with_a_house_side() {
    let mut v = Venue::new();
    let (seller, buyer) = two_customers(&mut v);
    let house = v.account(Pool::House);
    v.deposit(house, BTC, 100_000_000);
    v.apply(ExchangeCommand::SetHousePolicy {
        instrument: BTC_JPY,
        policy: HousePolicy::Disclosed,
    });
    v.limit(house, Side::Sell, 1_000, 10); // #1, first in time
    v.limit(seller, Side::Sell, 1_000, 10); // #2
    let events = v.limit(buyer, Side::Buy, 1_000, 20);
    let s = settlements(&events);
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].seller, s[0].house), (house, HouseSide::Maker));
    assert_eq!((s[1].seller, s[1].house), (seller, HouseSide::None));
    // The house's side crossed pools: the house's 0.1 BTC sits in house custody, owed to the
    // customer pool; the buyer's yen sit in the customer bank, owed to the house.
    let ledger = v.exchange.ledger();
    assert_eq!(ledger.row(Pool::House, BTC).due_to, 10 * BTC_LOT_UNITS);
    assert_eq!(ledger.row(Pool::Customer, BTC).due_from, 10 * BTC_LOT_UNITS);
    assert!(ledger.check_segregation().is_ok());
}

#[test]
fn forbidding_the_house_again_cancels_its_resting_orders() {
    let mut v = Venue::new();
    let house = v.account(Pool::House);
    v.deposit(house, BTC, 100_000_000);
    v.apply(ExchangeCommand::SetHousePolicy {
        instrument: BTC_JPY,
        policy: HousePolicy::Disclosed,
    });
    v.limit(house, Side::Sell, 1_000, 10);
    let events = v.apply(ExchangeCommand::SetHousePolicy {
        instrument: BTC_JPY,
        policy: HousePolicy::Forbidden,
    });
    assert!(events.iter().any(|e| matches!(
        e,
        ExchangeEvent::Order(Event::Cancelled { order_id: 1, .. })
    )));
    assert_eq!(v.balance(house, BTC), (100_000_000, 0));
}

#[test]
fn duplicate_deposit_transaction_is_rejected_not_double_credited() {
    let mut v = Venue::new();
    let a = v.account(Pool::Customer);
    let tx = v.tx();
    let deposit = ExchangeCommand::Deposit {
        account: a,
        asset: JPY,
        amount_units: 500,
        tx,
    };
    assert!(matches!(
        v.apply(deposit)[0],
        ExchangeEvent::Deposited { .. }
    ));
    assert_eq!(
        rejected(&v.apply(deposit)),
        Some(RejectReason::DuplicateDeposit)
    );
    assert_eq!(v.balance(a, JPY), (500, 0));
}

#[test]
fn amounts_at_the_edges_of_i64_are_rejected_cleanly() {
    let mut v = Venue::new();
    let a = v.account(Pool::Customer);
    v.deposit(a, JPY, i64::MAX);
    assert_eq!(
        rejected(&v.deposit(a, JPY, 1)),
        Some(RejectReason::AmountTooLarge)
    );
    assert_eq!(v.balance(a, JPY), (i64::MAX, 0));
    // 2^40 lots at 1_100 ticks: 1.2e13 JPY, fits; the reservation is checked exactly.
    let events = v.limit(a, Side::Buy, 1_100, 1 << 40);
    assert!(rejected(&events).is_none(), "{events:?}");
    // The seller side: 2^40 lots of 10^7 ETH units overflows i64 and is rejected, not wrapped.
    let b = v.account(Pool::Customer);
    v.deposit(b, ETH, i64::MAX);
    let events = v.order(
        b,
        ETH_JPY,
        Side::Sell,
        OrderKind::limit(1_000, TimeInForce::Gtc),
        1 << 40,
    );
    assert_eq!(rejected(&events), Some(RejectReason::AmountTooLarge));
    assert_eq!(
        rejected(&v.deposit(a, JPY, -5)),
        Some(RejectReason::AmountNotPositive)
    );
    assert_eq!(
        rejected(&v.deposit(a, JPY, 0)),
        Some(RejectReason::AmountNotPositive)
    );
}

#[test]
fn market_buy_reserves_up_to_the_band_and_releases_the_rest() {
    let mut v = Venue::new();
    let (seller, buyer) = two_customers(&mut v);
    v.limit(seller, Side::Sell, 1_000, 50);
    // Band high is 1100: reservation 100 lots × 1100 × 0.01 = 1100 + 3 fee (ceil of 2.2).
    let events = v.order(buyer, BTC_JPY, Side::Buy, OrderKind::Market, 100);
    let s = settlements(&events);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].notional_units, 500);
    assert!(events
        .iter()
        .any(|e| matches!(e, ExchangeEvent::Order(Event::Expired { qty_lots: 50, .. }))));
    assert_eq!(v.balance(buyer, JPY), (10_000 - 500 - 1, 0));
}

#[test]
fn stop_market_buy_is_covered_even_when_the_price_gaps_through_the_stop() {
    let mut v = Venue::new();
    let (seller, buyer) = two_customers(&mut v);
    let other = v.account(Pool::Customer);
    v.deposit(other, JPY, 100_000);
    // A buy stop at 1010 reserves at the band around the stop: 10 lots at 1111 is 111.1 JPY,
    // rounded up to 112, plus a fee of 0.224 rounded up to 1.
    v.order(
        buyer,
        BTC_JPY,
        Side::Buy,
        OrderKind::StopMarket { stop_ticks: 1_010 },
        10,
    );
    assert_eq!(v.balance(buyer, JPY).1, 113);
    // The price jumps straight to 1090, then asks sit up to 1200 (the band around 1090 allows them).
    v.limit(seller, Side::Sell, 1_090, 1);
    v.limit(seller, Side::Sell, 1_100, 5);
    v.limit(seller, Side::Sell, 1_150, 20);
    let events = v.order(
        other,
        BTC_JPY,
        Side::Buy,
        OrderKind::limit(1_090, TimeInForce::Ioc),
        1,
    );
    // Triggered at last 1090: it may buy at 1100 (inside the stop's band, ≤ 1111) but not at 1150.
    let s = settlements(&events);
    assert_eq!(s.len(), 2, "{events:?}");
    assert_eq!((s[1].buyer, s[1].notional_units), (buyer, 55));
    assert_eq!(v.balance(buyer, JPY), (10_000 - 55, 0));
}

#[test]
fn hot_wallet_cap_alerts_on_deposit_and_cold_to_hot_needs_approvals() {
    let mut v = Venue::new();
    let a = v.account(Pool::Customer);
    let events = v.deposit(a, BTC, 1_000);
    assert!(matches!(
        events[1],
        ExchangeEvent::Alert(Alert::HotWalletOverCap {
            asset: BTC,
            hot_units: 1_000,
            owed_units: 1_000,
            excess_units: 950
        })
    ));
    let sweep = ExchangeCommand::CustodyTransfer {
        pool: Pool::Customer,
        asset: BTC,
        source: Location::Hot,
        target: Location::Cold,
        amount_units: 950,
    };
    assert!(matches!(
        v.apply(sweep)[0],
        ExchangeEvent::CustodyMoved { .. }
    ));
    assert!(v.exchange.ledger().check_hot_cap(BTC).is_ok());
    let back = ExchangeCommand::CustodyTransfer {
        pool: Pool::Customer,
        asset: BTC,
        source: Location::Cold,
        target: Location::Hot,
        amount_units: 1,
    };
    assert_eq!(
        rejected(&v.apply(back)),
        Some(RejectReason::ApprovalsRequired)
    );
    let bank = ExchangeCommand::CustodyTransfer {
        pool: Pool::Customer,
        asset: BTC,
        source: Location::Cold,
        target: Location::Bank,
        amount_units: 1,
    };
    assert_eq!(
        rejected(&v.apply(bank)),
        Some(RejectReason::InvalidLocation)
    );
}

#[test]
fn unknown_accounts_and_assets_are_rejected() {
    let mut v = Venue::new();
    assert_eq!(
        rejected(&v.limit(9, Side::Buy, 1_000, 1)),
        Some(RejectReason::UnknownAccount)
    );
    assert_eq!(
        rejected(&v.deposit(9, JPY, 1)),
        Some(RejectReason::UnknownAccount)
    );
    let a = v.account(Pool::Customer);
    assert_eq!(
        rejected(&v.deposit(a, 7, 1)),
        Some(RejectReason::UnknownAsset)
    );
    assert_eq!(
        rejected(&v.apply(ExchangeCommand::FeeSweep { asset: 7 })),
        Some(RejectReason::UnknownAsset)
    );
}

#[test]
fn a_capacity_or_precision_past_its_limit_is_a_configuration_error_not_an_abort() {
    // orders_open_per_account_max = u32::MAX made Exchange::new ask for 68 GB and abort
    // (kinko-fuzz, target journal: a re-sealed genesis record).
    let mut config = defaults::config();
    config.engine.orders_open_per_account_max = u32::MAX;
    assert!(matches!(
        Exchange::new(config),
        Err(engine::exchange::ConfigError::Limit(_))
    ));
    let mut config = defaults::config();
    config.engine.accounts_max = u32::MAX;
    let Err(engine::exchange::ConfigError::Limit(text)) = Exchange::new(config) else {
        panic!("accepted")
    };
    assert!(text.contains("accounts_max"), "{text}");
    let mut config = defaults::config();
    config.engine.levels_per_side_max = engine::exchange::LEVELS_PER_SIDE_MAX_CEILING;
    config.engine.stops_per_side_max = engine::exchange::STOPS_PER_SIDE_MAX_CEILING;
    let instruments = config.instruments.clone();
    for _ in 0..3 {
        config.instruments.extend(instruments.iter().cloned());
    }
    assert!(
        matches!(
            Exchange::new(config),
            Err(engine::exchange::ConfigError::Limit(_))
        ),
        "the product too"
    );
    // An asset with 40 decimals: 10^40 overflowed i128 in the lot's conversion (a panic in
    // debug builds); DECIMALS_MAX was declared but not enforced.
    let mut config = defaults::config();
    config.assets[0].decimals = 40;
    let Err(engine::exchange::ConfigError::Limit(text)) = Exchange::new(config) else {
        panic!("accepted")
    };
    assert!(text.contains("decimals"), "{text}");
    // A capacity of zero, which Arena::new asserted against.
    let mut config = defaults::config();
    config.engine.orders_max = 0;
    assert!(matches!(
        Exchange::new(config),
        Err(engine::exchange::ConfigError::Limit(_))
    ));
    // At the ceilings' side of the line, the default and a generous configuration still build.
    assert!(defaults::config().check_limits().is_ok());
    assert!(Exchange::new(defaults::config()).is_ok());
}

#[test]
fn four_thousand_open_orders_are_found_by_id_and_client_id_as_the_indices_grow() {
    // The engine's lookup tables start with room for 1,280 entries and double in place; 4,000
    // resting orders make the id, client id and reservation tables double twice while full.
    let mut v = Venue::new();
    let accounts: Vec<AccountId> = (0..4).map(|_| v.account(Pool::Customer)).collect();
    for &account in &accounts {
        v.deposit(account, JPY, 100_000_000);
    }
    let mut open = Vec::new(); // (order id, account, client order id)
    for i in 0..4_000u64 {
        let account = accounts[(i % 4) as usize];
        let events = v.limit(
            account,
            Side::Buy,
            950 + (i % 50) as i64,
            100 + (i % 7) as i64,
        );
        let order_id = events
            .iter()
            .find_map(|e| match e {
                ExchangeEvent::Order(Event::Accepted { order_id, .. }) => Some(*order_id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("order {i} not accepted: {events:?}"));
        open.push((order_id, account, v.client_order_id_next));
    }
    assert_eq!(v.exchange.matcher().orders_open(), 4_000);
    for &(order_id, account, client_order_id) in &open {
        assert!(v.exchange.reserved_units(order_id).is_some(), "#{order_id}");
        let by_client = v
            .exchange
            .matcher()
            .order_by_client(account, client_order_id);
        assert_eq!(by_client.map(|o| o.order_id), Some(order_id));
    }
    for &account in &accounts {
        let reserved: AmountUnits = open
            .iter()
            .filter(|o| o.1 == account)
            .map(|o| v.exchange.reserved_units(o.0).unwrap())
            .sum();
        assert_eq!(v.balance(account, JPY).1, reserved);
    }
    // Every order leaves: a fifth moved first (by client id), then all cancelled, by id and by
    // client id in turn, from the middle outwards so that the runs behind removed entries shift.
    for &(_, account, client_order_id) in open.iter().step_by(5) {
        let events = v.apply(ExchangeCommand::Trade(Command::Replace {
            account,
            order: OrderRef::Client(client_order_id),
            price_ticks: 940,
            qty_lots: 50,
            client_order_id_new: None,
        }));
        assert_eq!(rejected(&events), None, "{events:?}");
    }
    let (low, high) = open.split_at(2_000);
    let order: Vec<_> = low
        .iter()
        .rev()
        .zip(high)
        .flat_map(|(a, b)| [*a, *b])
        .collect();
    for (n, &(order_id, account, client_order_id)) in order.iter().enumerate() {
        let order = if n % 2 == 0 {
            OrderRef::Id(order_id)
        } else {
            OrderRef::Client(client_order_id)
        };
        let events = v.apply(ExchangeCommand::Trade(Command::Cancel { account, order }));
        assert_eq!(rejected(&events), None, "#{order_id}: {events:?}");
        assert_eq!(v.exchange.reserved_units(order_id), None);
    }
    assert_eq!(v.exchange.matcher().orders_open(), 0);
    for &account in &accounts {
        assert_eq!(v.balance(account, JPY), (100_000_000, 0));
    }
}
