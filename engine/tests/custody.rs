//! Custody in the state machine: whitelists and cooldowns (the address-change attack), daily
//! limits, the withdrawal queue, M-of-N approvals of cold → hot moves, reconciliation with
//! incidents and halts, top-ups, deposits by address, and per-asset halts. Every command runs with
//! the invariants checked after it (the test configuration turns them on).

mod common;

use common::market::*;
use ed25519_dalek::{Signer, SigningKey};
use engine::custody::{
    cold_move_message, Address, AssetHalts, CustodyEvent, Incident, Sig, OPERATOR_SYSTEM,
};
use engine::defaults::demo_approver_seed;
use engine::*;
use ledger::{AccountId, AmountUnits, AssetId, LedgerAccount, Location, Pool};

const HOUR_NS: u64 = 3_600_000_000_000;

fn custody(v: &Venue, pool: Pool, location: Location, asset: AssetId) -> AmountUnits {
    v.exchange
        .ledger()
        .get(LedgerAccount::Custody { pool, location }, asset)
}

fn funded(v: &mut Venue, pool: Pool, asset: AssetId, units: AmountUnits) -> AccountId {
    let a = v.account(pool);
    v.deposit(a, asset, units);
    a
}

fn requested(events: &[ExchangeEvent]) -> WithdrawalId {
    match events[..] {
        [ExchangeEvent::WithdrawalRequested { withdrawal_id, .. }] => withdrawal_id,
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn withdrawal_is_held_broadcast_then_completed_and_cancel_only_before_broadcast() {
    let mut v = Venue::new();
    let a = funded(&mut v, Pool::Customer, JPY, 1_000);
    let to = v.whitelist(a, JPY, "bank:0001-234");
    let id = requested(&v.withdraw(a, JPY, 400, to));
    assert_eq!(v.balance(a, JPY), (600, 400));
    let complete = ExchangeCommand::WithdrawalComplete { withdrawal_id: id };
    assert_eq!(
        rejected(&v.apply(complete)),
        Some(RejectReason::WithdrawalNotBroadcast)
    );
    let events = v.apply(ExchangeCommand::WithdrawalBroadcast {
        withdrawal_id: id,
        chain_tx: [7; 32],
    });
    assert!(matches!(
        events[0],
        ExchangeEvent::Custody(CustodyEvent::WithdrawalBroadcast {
            amount_units: 400,
            ..
        })
    ));
    let cancel = ExchangeCommand::WithdrawalCancel { withdrawal_id: id };
    assert_eq!(
        rejected(&v.apply(cancel)),
        Some(RejectReason::WithdrawalAlreadyBroadcast)
    );
    assert!(matches!(
        v.apply(complete)[0],
        ExchangeEvent::WithdrawalCompleted {
            amount_units: 400,
            ..
        }
    ));
    assert_eq!(v.balance(a, JPY), (600, 0));
    assert_eq!(custody(&v, Pool::Customer, Location::Bank, JPY), 600);

    let id = requested(&v.withdraw(a, JPY, 100, to));
    let events = v.apply(ExchangeCommand::WithdrawalCancel { withdrawal_id: id });
    assert!(matches!(
        events[0],
        ExchangeEvent::WithdrawalCancelled { .. }
    ));
    assert_eq!(v.balance(a, JPY), (600, 0));
}

#[test]
fn address_change_attack_fails_during_the_cooldown() {
    let mut v = Venue::new();
    let victim = funded(&mut v, Pool::Customer, BTC, 50_000_000);
    let own = v.whitelist(victim, BTC, "bc1-victim-own-address");
    // The thief, holding the victim's credentials, adds an address and withdraws at once.
    let thief = Address::parse("bc1-thief").unwrap();
    let events = v.apply(ExchangeCommand::AddWithdrawalAddress {
        account: victim,
        asset: BTC,
        address: thief,
    });
    let usable_from = match events[0] {
        ExchangeEvent::Custody(CustodyEvent::AddressAdded { usable_from_ns, .. }) => usable_from_ns,
        ref other => panic!("{other:?}"),
    };
    assert_eq!(
        rejected(&v.withdraw(victim, BTC, 10_000_000, thief)),
        Some(RejectReason::AddressCoolingDown)
    );
    // 23 hours later: still refused; the victim, alerted, removes the address.
    v.advance(23 * HOUR_NS);
    assert_eq!(
        rejected(&v.withdraw(victim, BTC, 10_000_000, thief)),
        Some(RejectReason::AddressCoolingDown)
    );
    v.apply(ExchangeCommand::RemoveWithdrawalAddress {
        account: victim,
        asset: BTC,
        address: thief,
    });
    v.advance(2 * HOUR_NS);
    assert!(v.clock_ns > usable_from);
    assert_eq!(
        rejected(&v.withdraw(victim, BTC, 10_000_000, thief)),
        Some(RejectReason::AddressNotWhitelisted)
    );
    assert_eq!(v.balance(victim, BTC), (50_000_000, 0));
    // The victim's own, long-standing address works; an address never added never does.
    requested(&v.withdraw(victim, BTC, 10_000_000, own));
    let stranger = Address::parse("bc1-stranger").unwrap();
    assert_eq!(
        rejected(&v.withdraw(victim, BTC, 1, stranger)),
        Some(RejectReason::AddressNotWhitelisted)
    );
    // Whitelists are per asset: the BTC address is no ETH address.
    v.deposit(victim, ETH, 1_000);
    assert_eq!(
        rejected(&v.withdraw(victim, ETH, 1, own)),
        Some(RejectReason::AddressNotWhitelisted)
    );
    let bad = ExchangeCommand::AddWithdrawalAddress {
        account: victim,
        asset: BTC,
        address: own,
    };
    assert_eq!(
        rejected(&v.apply(bad)),
        Some(RejectReason::AddressAlreadyWhitelisted)
    );
}

#[test]
fn daily_limit_counts_the_utc_day_and_cancels_give_it_back() {
    let mut v = Venue::new();
    let limit = v.exchange.config().custody.assets[BTC as usize].daily_withdrawal_limit_units;
    let a = funded(&mut v, Pool::Customer, BTC, 3 * limit);
    let to = v.whitelist(a, BTC, "bc1-a");
    // Start of a UTC day.
    let day = 86_400_000_000_000;
    v.clock_ns = (v.clock_ns / day + 1) * day;
    let first = requested(&v.withdraw(a, BTC, limit - 10, to));
    assert_eq!(
        rejected(&v.withdraw(a, BTC, 11, to)),
        Some(RejectReason::DailyLimitExceeded)
    );
    requested(&v.withdraw(a, BTC, 10, to));
    v.apply(ExchangeCommand::WithdrawalCancel {
        withdrawal_id: first,
    });
    requested(&v.withdraw(a, BTC, limit - 10, to));
    assert_eq!(
        rejected(&v.withdraw(a, BTC, 1, to)),
        Some(RejectReason::DailyLimitExceeded)
    );
    v.advance(day);
    requested(&v.withdraw(a, BTC, 1, to));
}

#[test]
fn withdrawals_are_paid_in_request_order_per_asset_and_pool() {
    let mut v = Venue::new();
    let a = funded(&mut v, Pool::Customer, BTC, 1_000_000);
    let b = funded(&mut v, Pool::Customer, BTC, 1_000_000);
    v.deposit(b, ETH, 1_000);
    let house = funded(&mut v, Pool::House, BTC, 1_000_000);
    let (ta, tb, th) = (
        v.whitelist(a, BTC, "a"),
        v.whitelist(b, BTC, "b"),
        v.whitelist(house, BTC, "h"),
    );
    let te = v.whitelist(b, ETH, "b-eth");
    let first = requested(&v.withdraw(a, BTC, 100, ta));
    let second = requested(&v.withdraw(b, BTC, 200, tb));
    let eth = requested(&v.withdraw(b, ETH, 5, te));
    let house_w = requested(&v.withdraw(house, BTC, 300, th));
    let broadcast = |withdrawal_id| ExchangeCommand::WithdrawalBroadcast {
        withdrawal_id,
        chain_tx: [withdrawal_id as u8; 32],
    };
    assert_eq!(
        rejected(&v.apply(broadcast(second))),
        Some(RejectReason::WithdrawalNotNext)
    );
    // Another asset and the other pool have queues of their own.
    assert!(rejected(&v.apply(broadcast(eth))).is_none());
    assert!(rejected(&v.apply(broadcast(house_w))).is_none());
    assert!(rejected(&v.apply(broadcast(first))).is_none());
    assert!(rejected(&v.apply(broadcast(second))).is_none());
}

#[test]
fn no_withdrawal_is_ever_paid_from_the_other_pools_wallet() {
    let mut v = Venue::new();
    let customer = funded(&mut v, Pool::Customer, BTC, 10_000_000);
    let house = v.account(Pool::House);
    let th = v.whitelist(house, BTC, "h");
    let tc = v.whitelist(customer, BTC, "c");
    // The house's books say it has 5 BTC units more than its wallet holds: a deposit credited
    // and then (below) its hot coins swept to cold.
    v.deposit(house, BTC, 500);
    v.apply(ExchangeCommand::CustodyTransfer {
        pool: Pool::House,
        asset: BTC,
        source: Location::Hot,
        target: Location::Cold,
        amount_units: 500,
    });
    let w = requested(&v.withdraw(house, BTC, 500, th));
    assert_eq!(
        rejected(&v.pay(w)),
        Some(RejectReason::InsufficientCustody),
        "the customer hot wallet holds 10 M units, the house's none"
    );
    assert_eq!(custody(&v, Pool::Customer, Location::Hot, BTC), 10_000_000);
    // The same for a customer withdrawal when the customer hot wallet is empty but the house's
    // is full.
    v.apply(ExchangeCommand::CustodyTransfer {
        pool: Pool::Customer,
        asset: BTC,
        source: Location::Hot,
        target: Location::Cold,
        amount_units: 10_000_000,
    });
    v.deposit(house, BTC, 20_000_000);
    let w2 = requested(&v.withdraw(customer, BTC, 1_000, tc));
    assert_eq!(
        rejected(&v.pay(w2)),
        Some(RejectReason::InsufficientCustody)
    );
    assert_eq!(custody(&v, Pool::House, Location::Hot, BTC), 20_000_000);
}

fn approver(i: usize) -> SigningKey {
    SigningKey::from_bytes(&demo_approver_seed(i))
}

fn approve(v: &mut Venue, request_id: u64, key: &SigningKey, message: &[u8]) -> Vec<ExchangeEvent> {
    v.apply(ExchangeCommand::ColdToHotApprove {
        request_id,
        approver: key.verifying_key().to_bytes(),
        signature: Sig::from_bytes(&key.sign(message).to_bytes()),
    })
}

#[test]
fn cold_to_hot_needs_m_of_n_valid_distinct_signatures() {
    let mut v = Venue::new();
    let a = funded(&mut v, Pool::Customer, BTC, 1_000_000);
    let _ = a;
    v.apply(ExchangeCommand::CustodyTransfer {
        pool: Pool::Customer,
        asset: BTC,
        source: Location::Hot,
        target: Location::Cold,
        amount_units: 1_000_000,
    });
    // Over the 5% cap: refused at request.
    let request = |amount_units| ExchangeCommand::ColdToHotRequest {
        pool: Pool::Customer,
        asset: BTC,
        amount_units,
        operator: 3,
    };
    assert_eq!(
        rejected(&v.apply(request(50_001))),
        Some(RejectReason::HotWalletCapExceeded)
    );
    let id = match v.apply(request(40_000))[..] {
        [ExchangeEvent::Custody(CustodyEvent::ColdMoveRequested { request_id, .. })] => request_id,
        ref other => panic!("{other:?}"),
    };
    let message = cold_move_message(id, Pool::Customer, BTC, 40_000);
    let complete = ExchangeCommand::ColdToHotComplete { request_id: id };
    assert_eq!(
        rejected(&v.apply(complete)),
        Some(RejectReason::NotApproved)
    );
    // A key not in the set.
    let outsider = SigningKey::from_bytes(&[9; 32]);
    assert_eq!(
        rejected(&approve(&mut v, id, &outsider, &message)),
        Some(RejectReason::ApproverNotInSet)
    );
    // A signature over different bytes (another amount).
    let other = cold_move_message(id, Pool::Customer, BTC, 400_000);
    assert_eq!(
        rejected(&approve(&mut v, id, &approver(0), &other)),
        Some(RejectReason::BadSignature)
    );
    // Another approver's signature presented under this key.
    let forged = ExchangeCommand::ColdToHotApprove {
        request_id: id,
        approver: approver(0).verifying_key().to_bytes(),
        signature: Sig::from_bytes(&approver(1).sign(&message).to_bytes()),
    };
    assert_eq!(rejected(&v.apply(forged)), Some(RejectReason::BadSignature));
    let events = approve(&mut v, id, &approver(0), &message);
    assert!(matches!(
        events[..],
        [ExchangeEvent::Custody(CustodyEvent::ColdMoveApproval {
            approvals: 1,
            required: 2,
            ..
        })]
    ));
    assert_eq!(
        rejected(&approve(&mut v, id, &approver(0), &message)),
        Some(RejectReason::DuplicateApproval)
    );
    assert_eq!(
        rejected(&v.apply(complete)),
        Some(RejectReason::NotApproved),
        "one of two is not enough"
    );
    assert_eq!(custody(&v, Pool::Customer, Location::Hot, BTC), 0);
    let events = approve(&mut v, id, &approver(2), &message);
    assert!(matches!(
        events[1],
        ExchangeEvent::Custody(CustodyEvent::ColdMoveApproved { request_id }) if request_id == id
    ));
    assert_eq!(
        rejected(&approve(&mut v, id, &approver(1), &message)),
        Some(RejectReason::AlreadyApproved)
    );
    let events = v.apply(complete);
    assert!(matches!(
        events[0],
        ExchangeEvent::Custody(CustodyEvent::ColdMoveCompleted { request_id }) if request_id == id
    ));
    assert!(matches!(
        events[1],
        ExchangeEvent::CustodyMoved {
            source: Location::Cold,
            target: Location::Hot,
            amount_units: 40_000,
            ..
        }
    ));
    assert_eq!(custody(&v, Pool::Customer, Location::Hot, BTC), 40_000);
    assert_eq!(custody(&v, Pool::Customer, Location::Cold, BTC), 960_000);
    assert_eq!(
        rejected(&v.apply(complete)),
        Some(RejectReason::UnknownColdMove)
    );
}

fn observe(
    v: &mut Venue,
    pool: Pool,
    asset: AssetId,
    location: Location,
    observed: AmountUnits,
) -> Vec<ExchangeEvent> {
    v.apply(ExchangeCommand::WalletObserved {
        pool,
        asset,
        location,
        observed_units: observed,
    })
}

fn incident(events: &[ExchangeEvent]) -> Option<Incident> {
    events.iter().find_map(|e| match e {
        ExchangeEvent::Custody(CustodyEvent::IncidentOpened(i)) => Some(*i),
        _ => None,
    })
}

#[test]
fn a_drained_hot_wallet_halts_withdrawals_and_opens_an_incident() {
    let mut v = Venue::new();
    let a = funded(&mut v, Pool::Customer, BTC, 1_000_000);
    let to = v.whitelist(a, BTC, "a");
    v.apply(ExchangeCommand::CustodyTransfer {
        pool: Pool::Customer,
        asset: BTC,
        source: Location::Hot,
        target: Location::Cold,
        amount_units: 960_000,
    });
    // A broadcast withdrawal explains its own amount: no incident.
    let w = requested(&v.withdraw(a, BTC, 10_000, to));
    v.apply(ExchangeCommand::WithdrawalBroadcast {
        withdrawal_id: w,
        chain_tx: [1; 32],
    });
    let events = observe(&mut v, Pool::Customer, BTC, Location::Hot, 30_000);
    assert!(incident(&events).is_none(), "{events:?}");
    assert!(matches!(
        events[0],
        ExchangeEvent::Custody(CustodyEvent::Reconciled {
            ledger_units: 40_000,
            in_flight_units: 10_000,
            observed_units: 30_000,
            ..
        })
    ));
    // More is there than the ledger says: an alert, no credit.
    let events = observe(&mut v, Pool::Customer, BTC, Location::Hot, 30_500);
    assert!(matches!(
        events[1],
        ExchangeEvent::Alert(Alert::WalletSurplus {
            extra_units: 500,
            ..
        })
    ));
    // The thief takes 25_000 from the hot wallet.
    let events = observe(&mut v, Pool::Customer, BTC, Location::Hot, 5_000);
    let found = incident(&events).expect("an incident");
    assert_eq!(
        (found.pool, found.asset, found.location, found.missing_units),
        (Pool::Customer, BTC, Location::Hot, 25_000)
    );
    assert_eq!(found.uncovered_units, 25_000);
    assert!(events.iter().any(|e| matches!(
        e,
        ExchangeEvent::Custody(CustodyEvent::HaltsSet {
            halts: AssetHalts {
                withdrawals: true,
                ..
            },
            operator: OPERATOR_SYSTEM,
            ..
        })
    )));
    assert_eq!(custody(&v, Pool::Customer, Location::Hot, BTC), 15_000);
    assert_eq!(custody(&v, Pool::Customer, Location::Lost, BTC), 25_000);
    assert_eq!(custody(&v, Pool::Customer, Location::Cold, BTC), 960_000);
    // Withdrawals of BTC stop: no new request, and the queue does not move; cancel still works.
    assert_eq!(
        rejected(&v.withdraw(a, BTC, 1, to)),
        Some(RejectReason::WithdrawalsHalted)
    );
    v.apply(ExchangeCommand::WithdrawalComplete { withdrawal_id: w });
    let totals = v.exchange.ledger().totals(Pool::Customer, BTC);
    assert_eq!(totals.uncovered(), 25_000);
    // Nothing can be paid from, or moved out of, the write-down.
    let from_lost = ExchangeCommand::CustodyTransfer {
        pool: Pool::Customer,
        asset: BTC,
        source: Location::Lost,
        target: Location::Cold,
        amount_units: 1,
    };
    assert_eq!(
        rejected(&v.apply(from_lost)),
        Some(RejectReason::InvalidLocation)
    );

    // The house tops up from its cold wallet and takes over the claim.
    let house = funded(&mut v, Pool::House, BTC, 100_000);
    v.apply(ExchangeCommand::CustodyTransfer {
        pool: Pool::House,
        asset: BTC,
        source: Location::Hot,
        target: Location::Cold,
        amount_units: 100_000,
    });
    let _ = house;
    let top_up = |amount_units| ExchangeCommand::TopUp {
        asset: BTC,
        location: Location::Cold,
        amount_units,
        operator: 1,
    };
    assert_eq!(
        rejected(&v.apply(top_up(25_001))),
        Some(RejectReason::TopUpExceedsLoss)
    );
    let events = v.apply(top_up(25_000));
    assert!(matches!(
        events[0],
        ExchangeEvent::Custody(CustodyEvent::ToppedUp {
            customer_lost_units: 0,
            ..
        })
    ));
    let customer = v.exchange.ledger().totals(Pool::Customer, BTC);
    assert_eq!(customer.uncovered(), 0);
    assert_eq!(customer.lost, 0);
    assert_eq!(custody(&v, Pool::House, Location::Lost, BTC), 25_000);
    assert_eq!(custody(&v, Pool::House, Location::Cold, BTC), 75_000);
    // An operator resumes withdrawals.
    let resume = ExchangeCommand::SetAssetHalts {
        asset: BTC,
        halts: AssetHalts::default(),
        operator: 1,
    };
    v.apply(resume);
    requested(&v.withdraw(a, BTC, 1, to));
}

/// Zaif, September 2018: hot wallets of BTC, MONA and BCH drained, customer and house coins both;
/// the loss per pool is exact. Here BTC and ETH stand in for the three coins.
#[test]
fn zaif_split_between_customer_and_house_losses_is_exact() {
    let mut v = Venue::new();
    let c = funded(&mut v, Pool::Customer, BTC, 1_000_000);
    v.deposit(c, ETH, 2_000_000);
    let h = funded(&mut v, Pool::House, BTC, 600_000);
    v.deposit(h, ETH, 300_000);
    let customer_stolen = [(BTC, 700_000), (ETH, 1_500_000)];
    let house_stolen = [(BTC, 550_000), (ETH, 300_000)];
    let mut incidents = Vec::new();
    for (pool, stolen) in [
        (Pool::Customer, customer_stolen),
        (Pool::House, house_stolen),
    ] {
        for (asset, units) in stolen {
            let hot = custody(&v, pool, Location::Hot, asset);
            incidents.extend(incident(&observe(
                &mut v,
                pool,
                asset,
                Location::Hot,
                hot - units,
            )));
        }
    }
    assert_eq!(incidents.len(), 4);
    for (asset, units) in customer_stolen {
        assert_eq!(custody(&v, Pool::Customer, Location::Lost, asset), units);
        let t = v.exchange.ledger().totals(Pool::Customer, asset);
        assert_eq!(t.uncovered(), i128::from(units));
    }
    for (asset, units) in house_stolen {
        assert_eq!(custody(&v, Pool::House, Location::Lost, asset), units);
    }
    let customer_incidents: AmountUnits = incidents
        .iter()
        .filter(|i| i.pool == Pool::Customer && i.asset == BTC)
        .map(|i| i.missing_units)
        .sum();
    assert_eq!(customer_incidents, 700_000);
    assert!(v.exchange.custody_state().halts[BTC as usize].withdrawals);
    assert!(v.exchange.custody_state().halts[ETH as usize].withdrawals);
}

#[test]
fn deposits_are_credited_by_address_once_per_transaction() {
    let mut v = Venue::new();
    let a = v.account(Pool::Customer);
    let address = Address::parse("sim-btc-a").unwrap();
    v.apply(ExchangeCommand::AssignDepositAddress {
        account: a,
        asset: BTC,
        address,
    });
    let deposit = |address, tx| ExchangeCommand::ChainDeposit {
        address,
        asset: BTC,
        amount_units: 5_000,
        tx,
    };
    let events = v.apply(deposit(address, [1; 32]));
    assert!(matches!(
        events[0],
        ExchangeEvent::Deposited {
            amount_units: 5_000,
            ..
        }
    ));
    let events = v.apply(deposit(address, [1; 32]));
    assert!(matches!(
        events[0],
        ExchangeEvent::Alert(Alert::DuplicateDepositTx { .. })
    ));
    let nobody = Address::parse("sim-btc-nobody").unwrap();
    let events = v.apply(deposit(nobody, [2; 32]));
    assert!(matches!(
        events[0],
        ExchangeEvent::Alert(Alert::UnknownDepositAddress { .. })
    ));
    assert_eq!(v.balance(a, BTC), (5_000, 0));
    // The address is for BTC only.
    let eth = ExchangeCommand::ChainDeposit {
        address,
        asset: ETH,
        amount_units: 1,
        tx: [3; 32],
    };
    assert!(matches!(
        v.apply(eth)[0],
        ExchangeEvent::Alert(Alert::UnknownDepositAddress { .. })
    ));
    let taken = ExchangeCommand::AssignDepositAddress {
        account: a,
        asset: BTC,
        address,
    };
    assert_eq!(rejected(&v.apply(taken)), Some(RejectReason::AddressInUse));
    // Halted deposits are refused, not credited, and the transaction may come again later.
    v.apply(ExchangeCommand::SetAssetHalts {
        asset: BTC,
        halts: AssetHalts {
            deposits: true,
            ..AssetHalts::default()
        },
        operator: 2,
    });
    assert_eq!(
        rejected(&v.apply(deposit(address, [4; 32]))),
        Some(RejectReason::DepositsHalted)
    );
    v.apply(ExchangeCommand::SetAssetHalts {
        asset: BTC,
        halts: AssetHalts::default(),
        operator: 2,
    });
    assert!(rejected(&v.apply(deposit(address, [4; 32]))).is_none());
    assert_eq!(v.balance(a, BTC), (10_000, 0));
}

#[test]
fn an_asset_trading_halt_halts_its_instruments_and_resume_reopens_them() {
    let mut v = Venue::new();
    let a = funded(&mut v, Pool::Customer, JPY, 1_000_000);
    let halt = |trading| ExchangeCommand::SetAssetHalts {
        asset: BTC,
        halts: AssetHalts {
            trading,
            ..AssetHalts::default()
        },
        operator: 0,
    };
    let events = v.apply(halt(true));
    assert!(events.iter().any(|e| matches!(
        e,
        ExchangeEvent::Order(Event::Halted {
            instrument: BTC_JPY
        })
    )));
    assert_eq!(
        rejected(&v.limit(a, Side::Buy, 1_000, 1)),
        Some(RejectReason::InstrumentHalted)
    );
    // ETH/JPY does not use BTC and still trades.
    let eth = v.order(
        a,
        ETH_JPY,
        Side::Buy,
        OrderKind::limit(1_000, TimeInForce::Gtc),
        1,
    );
    assert!(rejected(&eth).is_none());
    v.apply(halt(false));
    assert!(rejected(&v.limit(a, Side::Buy, 1_000, 1)).is_none());
}

#[test]
fn malformed_addresses_are_refused() {
    for bad in ["", "has space", "tab\t", &"x".repeat(65), "ünïcode"] {
        assert_eq!(
            Address::parse(bad),
            Err(RejectReason::InvalidAddress),
            "{bad:?}"
        );
    }
    let ok = Address::parse(&"x".repeat(64)).unwrap();
    assert_eq!(ok.to_string(), "x".repeat(64));
}

/// Operator actions in the envelope that names who did them apply exactly as their unattributed
/// twins (same events, same state), and key changes are recorded as events without changing any
/// state: the audit trail costs nothing to the state machine's meaning.
#[test]
fn attributed_operator_actions_apply_as_their_plain_twins() {
    use engine::audit::{permission, KeyChange, KeyGrant, KeyLabel, KeyRole, OperatorCommand};
    let run = |attributed: bool| {
        let mut v = Venue::new();
        funded(&mut v, Pool::Customer, BTC, 1_000_000);
        let actions = [
            OperatorCommand::CustodyTransfer {
                pool: Pool::Customer,
                asset: BTC,
                source: Location::Hot,
                target: Location::Cold,
                amount_units: 600_000,
            },
            OperatorCommand::HaltInstrument { instrument: 0 },
            OperatorCommand::ResumeInstrument { instrument: 0 },
            OperatorCommand::SetHousePolicy {
                instrument: 0,
                policy: HousePolicy::Disclosed,
            },
            OperatorCommand::ColdToHotCancel { request_id: 77 },
        ];
        let mut events = Vec::new();
        for action in actions {
            let command = if attributed {
                ExchangeCommand::Operator {
                    operator: 4,
                    command: action,
                }
            } else {
                action.plain().expect("not a key change")
            };
            events.push(v.apply(command));
        }
        (events, v.exchange.snapshot())
    };
    let (plain_events, plain_state) = run(false);
    let (events, state) = run(true);
    assert_eq!(events, plain_events);
    assert_eq!(state, plain_state);
    assert!(matches!(
        events[1][..],
        [ExchangeEvent::Order(Event::Halted { instrument: 0 })]
    ));
    assert_eq!(
        rejected(&events[4]),
        Some(RejectReason::UnknownColdMove),
        "a refused action is refused the same way"
    );

    let mut v = Venue::new();
    let before = v.exchange.snapshot();
    let change = KeyChange::Created {
        key: engine::audit::KEY_ID_CREATED_FIRST,
        label: KeyLabel::new("k-bot-1").unwrap(),
        grant: KeyGrant {
            account: 0,
            role: KeyRole::Trader,
            permissions: permission::READ | permission::TRADE,
            expires_ms: 0,
            ip_rules: 1,
        },
    };
    let events = v.apply(ExchangeCommand::Operator {
        operator: 4,
        command: OperatorCommand::Key(change),
    });
    assert_eq!(
        events,
        vec![ExchangeEvent::KeyChanged {
            operator: 4,
            change
        }]
    );
    assert_eq!(v.exchange.snapshot(), before);
}

#[test]
fn key_labels_are_short_printable_names() {
    use engine::audit::KeyLabel;
    assert_eq!(KeyLabel::new("demo-alice").unwrap().as_str(), "demo-alice");
    assert_eq!(KeyLabel::new(&"k".repeat(32)).unwrap().as_str().len(), 32);
    assert!(KeyLabel::new(&"k".repeat(33)).is_none());
    assert!(KeyLabel::new("").is_none());
    assert!(KeyLabel::new("two words").is_none());
    assert!(KeyLabel::new("a\u{1}b").is_none());
    assert!(KeyLabel::new("clé").is_none());
}
