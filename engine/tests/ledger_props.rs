//! Property test of the whole exchange state machine: random sequences of thousands of commands
//! (deposits, orders of every type, cancels, replaces, mass cancels, fee sweeps, withdrawals, house
//! policy changes, halts, custody moves) across many customer and house accounts and two
//! instruments. Every ledger and book invariant is checked after every command (the exchange's
//! `check_invariants` is on), and at the end every balance equals an independent recomputation
//! from the deposits, withdrawals and settlements in the events.

mod common;

use std::collections::BTreeMap;

use common::market::*;
use common::workload::Rng;
use engine::custody::{Address, CustodyEvent};
use engine::*;
use ledger::{AmountUnits, AssetId, Location, Pool};
use proptest::prelude::*;

const CUSTOMERS: u32 = 8;
const HOUSES: u32 = 2;

struct Model {
    v: Venue,
    rng: Rng,
    accounts: Vec<AccountId>,
    events: Vec<ExchangeEvent>,
    /// Requested and not broadcast, then broadcast and not confirmed.
    withdrawal_ids: Vec<WithdrawalId>,
    broadcast_ids: Vec<WithdrawalId>,
    last_tx: Option<TxId>,
}

impl Model {
    fn new(seed: u64) -> Model {
        let mut v = Venue::new();
        let mut accounts = Vec::new();
        for i in 0..CUSTOMERS + HOUSES {
            let pool = if i < CUSTOMERS {
                Pool::Customer
            } else {
                Pool::House
            };
            accounts.push(v.account(pool));
        }
        let mut m = Model {
            v,
            rng: Rng(seed),
            accounts,
            events: Vec::new(),
            withdrawal_ids: Vec::new(),
            broadcast_ids: Vec::new(),
            last_tx: None,
        };
        for i in 0..m.accounts.len() {
            for asset in [BTC, ETH, JPY] {
                m.v.whitelist(m.accounts[i], asset, &address_text(m.accounts[i], asset));
            }
        }
        for i in 0..m.accounts.len() {
            let a = m.accounts[i];
            m.record_deposit(a, JPY, 5_000_000);
            m.record_deposit(a, BTC, 500 * BTC_LOT_UNITS);
            m.record_deposit(a, ETH, 5_000_000_000);
        }
        m
    }

    fn record_deposit(&mut self, account: AccountId, asset: AssetId, amount_units: AmountUnits) {
        let tx = self.v.tx();
        self.last_tx = Some(tx);
        self.run(ExchangeCommand::Deposit {
            account,
            asset,
            amount_units,
            tx,
        });
    }

    fn run(&mut self, command: ExchangeCommand) {
        let events = self.v.apply(command);
        // The incremental check agrees with the full one (which `apply` runs in tests) every time.
        self.v
            .exchange
            .check_invariants_incremental(&events)
            .expect("incremental invariants");
        for e in &events {
            match *e {
                ExchangeEvent::WithdrawalRequested { withdrawal_id, .. } => {
                    self.withdrawal_ids.push(withdrawal_id)
                }
                ExchangeEvent::Custody(CustodyEvent::WithdrawalBroadcast {
                    withdrawal_id, ..
                }) => {
                    self.withdrawal_ids.retain(|&id| id != withdrawal_id);
                    self.broadcast_ids.push(withdrawal_id);
                }
                ExchangeEvent::WithdrawalCancelled { withdrawal_id, .. } => {
                    self.withdrawal_ids.retain(|&id| id != withdrawal_id)
                }
                ExchangeEvent::WithdrawalCompleted { withdrawal_id, .. } => {
                    self.broadcast_ids.retain(|&id| id != withdrawal_id)
                }
                _ => {}
            }
        }
        self.events.extend(events);
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    fn account(&mut self) -> AccountId {
        let i = self.below(self.accounts.len() as u64) as usize;
        self.accounts[i]
    }

    fn side(&mut self) -> Side {
        if self.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    fn order_kind(&mut self, side: Side, instrument: InstrumentId) -> OrderKind {
        let reference = self.v.exchange.matcher().reference_price(instrument);
        let offset = self.below(60) as PriceTicks - 20;
        let price = match side {
            Side::Buy => reference - offset,
            Side::Sell => reference + offset,
        };
        match self.below(20) {
            0..=9 => OrderKind::limit(price, TimeInForce::Gtc),
            10..=11 => OrderKind::limit(price, TimeInForce::Ioc),
            12 => OrderKind::limit(price, TimeInForce::Fok),
            13..=14 => OrderKind::post_only(price),
            15..=16 => OrderKind::Market,
            17 => {
                let stop_ticks = match side {
                    Side::Buy => reference + 1 + self.below(30) as PriceTicks,
                    Side::Sell => reference - 1 - self.below(30) as PriceTicks,
                };
                OrderKind::StopMarket { stop_ticks }
            }
            18 => {
                let stop_ticks = match side {
                    Side::Buy => reference + 1 + self.below(30) as PriceTicks,
                    Side::Sell => reference - 1 - self.below(30) as PriceTicks,
                };
                OrderKind::StopLimit {
                    stop_ticks,
                    price_ticks: stop_ticks,
                    tif: TimeInForce::Gtc,
                }
            }
            // Out of the band: rejected.
            _ => OrderKind::limit(reference * 2, TimeInForce::Gtc),
        }
    }

    fn recent_order(&mut self) -> (AccountId, OrderId) {
        let next = self.v.exchange.matcher().order_id_next();
        let id = next.saturating_sub(1 + self.below(100)).max(1);
        let owner = self.v.exchange.matcher().order(id).map(|o| o.account);
        let account = match owner {
            Some(a) if self.below(10) > 0 => a,
            _ => self.account(),
        };
        (account, id)
    }

    fn step(&mut self) {
        let command = self.next_command();
        self.run(command);
    }

    fn next_command(&mut self) -> ExchangeCommand {
        let roll = self.below(100);
        let command = match roll {
            0..=44 => {
                let (account, side) = (self.account(), self.side());
                let instrument = self.below(2) as InstrumentId;
                let kind = self.order_kind(side, instrument);
                self.v.client_order_id_next += 1;
                ExchangeCommand::Trade(Command::NewOrder(NewOrder {
                    account,
                    instrument,
                    client_order_id: self.v.client_order_id_next,
                    side,
                    kind,
                    qty_lots: 1 + self.below(30) as QtyLots,
                    stp: None,
                }))
            }
            45..=59 => {
                let (account, id) = self.recent_order();
                ExchangeCommand::Trade(Command::Cancel {
                    account,
                    order: OrderRef::Id(id),
                })
            }
            60..=74 => {
                let (account, id) = self.recent_order();
                let price_ticks = match self.v.exchange.matcher().order(id) {
                    Some(o) => o.price_ticks + self.below(9) as PriceTicks - 4,
                    None => 1_000,
                };
                ExchangeCommand::Trade(Command::Replace {
                    account,
                    order: OrderRef::Id(id),
                    price_ticks,
                    qty_lots: 1 + self.below(40) as QtyLots,
                    client_order_id_new: None,
                })
            }
            75..=76 => {
                let account = self.account();
                ExchangeCommand::Trade(Command::MassCancel {
                    account,
                    instrument: None,
                    side: None,
                })
            }
            77..=81 => {
                let account = self.account();
                let asset = self.below(3) as AssetId;
                let amount = 1 + self.below(1_000_000) as AmountUnits;
                // Now and then the chain reports the same transaction twice.
                let repeat = self.below(5) == 0;
                let tx = match self.last_tx {
                    Some(tx) if repeat => tx,
                    _ => self.v.tx(),
                };
                self.last_tx = Some(tx);
                ExchangeCommand::Deposit {
                    account,
                    asset,
                    amount_units: amount,
                    tx,
                }
            }
            82..=85 => {
                let account = self.account();
                let asset = self.below(3) as AssetId;
                let amount_units = self.below(2_000_000) as AmountUnits - 10;
                // Now and then to an address that is not on the whitelist.
                let text = match self.below(10) {
                    0 => "not-whitelisted".to_string(),
                    _ => address_text(account, asset),
                };
                ExchangeCommand::WithdrawalRequest {
                    account,
                    asset,
                    amount_units,
                    address: Address::parse(&text).unwrap(),
                }
            }
            86..=87 if !self.withdrawal_ids.is_empty() => {
                let i = self.below(self.withdrawal_ids.len() as u64) as usize;
                let withdrawal_id = self.withdrawal_ids[i];
                if self.below(3) == 0 {
                    ExchangeCommand::WithdrawalCancel { withdrawal_id }
                } else {
                    let chain_tx = self.v.tx();
                    ExchangeCommand::WithdrawalBroadcast {
                        withdrawal_id,
                        chain_tx,
                    }
                }
            }
            88 if !self.broadcast_ids.is_empty() => ExchangeCommand::WithdrawalComplete {
                withdrawal_id: self.broadcast_ids[0],
            },
            89 => {
                // Reconciliation: usually the wallet matches; now and then something is missing
                // (an incident), and the house tops up.
                let pool = if self.below(2) == 0 {
                    Pool::Customer
                } else {
                    Pool::House
                };
                let asset = self.below(3) as AssetId;
                let location = if asset == JPY {
                    Location::Bank
                } else {
                    Location::Hot
                };
                let ledger = self
                    .v
                    .exchange
                    .ledger()
                    .get(ledger::LedgerAccount::Custody { pool, location }, asset);
                match self.below(5) {
                    0 => ExchangeCommand::WalletObserved {
                        pool,
                        asset,
                        location,
                        observed_units: ledger - ledger.min(1 + self.below(1_000) as AmountUnits),
                    },
                    1 => {
                        // Usually an asset with a customer loss and just that (so that top-ups
                        // happen), now and then one unit more than is lost.
                        let lost = |asset| {
                            self.v.exchange.ledger().get(
                                ledger::LedgerAccount::Custody {
                                    pool: Pool::Customer,
                                    location: Location::Lost,
                                },
                                asset,
                            )
                        };
                        let asset = [BTC, ETH, JPY]
                            .into_iter()
                            .find(|&a| lost(a) > 0)
                            .unwrap_or(asset);
                        ExchangeCommand::TopUp {
                            asset,
                            location: if asset == JPY {
                                Location::Bank
                            } else {
                                Location::Hot
                            },
                            amount_units: lost(asset) + self.below(2) as AmountUnits,
                            operator: 0,
                        }
                    }
                    2 => ExchangeCommand::SetAssetHalts {
                        asset,
                        halts: Default::default(),
                        operator: 0,
                    },
                    _ => ExchangeCommand::WalletObserved {
                        pool,
                        asset,
                        location,
                        observed_units: ledger,
                    },
                }
            }
            90..=92 => ExchangeCommand::FeeSweep {
                asset: self.below(3) as AssetId,
            },
            93..=94 => {
                let policy = if self.below(2) == 0 {
                    HousePolicy::Disclosed
                } else {
                    HousePolicy::Forbidden
                };
                ExchangeCommand::SetHousePolicy {
                    instrument: self.below(2) as InstrumentId,
                    policy,
                }
            }
            95 => {
                let instrument = self.below(2) as InstrumentId;
                // Halts are rarer than resumes, so the books mostly trade.
                ExchangeCommand::Trade(if self.below(4) == 0 {
                    Command::Halt { instrument }
                } else {
                    Command::Resume { instrument }
                })
            }
            96..=97 => {
                let pool = if self.below(2) == 0 {
                    Pool::Customer
                } else {
                    Pool::House
                };
                let (source, target) = if self.below(2) == 0 {
                    (Location::Hot, Location::Cold)
                } else {
                    (Location::Cold, Location::Hot)
                };
                ExchangeCommand::CustodyTransfer {
                    pool,
                    asset: self.below(2) as AssetId,
                    source,
                    target,
                    amount_units: 1 + self.below(100_000_000) as AmountUnits,
                }
            }
            _ => {
                // Bad input: an unknown account.
                ExchangeCommand::Deposit {
                    account: 999,
                    asset: JPY,
                    amount_units: 5,
                    tx: self.v.tx(),
                }
            }
        };
        command
    }

    /// Every holder's total per asset, recomputed from the events alone.
    fn recomputed(
        &self,
    ) -> (
        BTreeMap<(AccountId, AssetId), i128>,
        BTreeMap<AssetId, i128>,
    ) {
        let mut totals: BTreeMap<(AccountId, AssetId), i128> = BTreeMap::new();
        let mut fees: BTreeMap<AssetId, i128> = BTreeMap::new();
        let mut add =
            |account, asset, amount: i128| *totals.entry((account, asset)).or_insert(0) += amount;
        for e in &self.events {
            match *e {
                ExchangeEvent::Deposited {
                    account,
                    asset,
                    amount_units,
                    ..
                } => add(account, asset, amount_units.into()),
                ExchangeEvent::WithdrawalCompleted {
                    account,
                    asset,
                    amount_units,
                    ..
                } => add(account, asset, -i128::from(amount_units)),
                ExchangeEvent::Settled(s) => {
                    add(s.buyer, s.base, s.base_units.into());
                    add(s.seller, s.base, -i128::from(s.base_units));
                    add(
                        s.buyer,
                        s.quote,
                        -i128::from(s.notional_units + s.fee_buyer_units),
                    );
                    add(
                        s.seller,
                        s.quote,
                        i128::from(s.notional_units - s.fee_seller_units),
                    );
                    *fees.entry(s.quote).or_insert(0) +=
                        i128::from(s.fee_buyer_units + s.fee_seller_units);
                }
                _ => {}
            }
        }
        (totals, fees)
    }
}

/// Runs the workload, checks it, and returns the number of incidents and of top-ups it made
/// (a short run may have none; the fixed long run must have both).
/// Returns what the run did of the rarer paths: incidents opened, top-ups, withdrawals paid (a
/// short run may do none of them; the fixed long run must do all three).
fn run_case(seed: u64, commands: usize) -> (usize, usize, usize) {
    let mut m = Model::new(seed);
    for _ in 0..commands {
        m.step();
    }
    let fills = m
        .events
        .iter()
        .filter(|e| matches!(e, ExchangeEvent::Settled(_)))
        .count();
    let house_fills = m
        .events
        .iter()
        .filter(|e| matches!(e, ExchangeEvent::Settled(s) if s.house != HouseSide::None))
        .count();
    // That the run traded at all, not how much: over 300 seeds of 3,000 commands the fills ran
    // from 159 to 524 (median 358), and a random seed gave 148 once, under the old floor of 5%.
    assert!(
        fills > commands / 60,
        "seed {seed}: the workload traded: {fills} fills"
    );
    let (totals, fees) = m.recomputed();
    let ledger = m.v.exchange.ledger();
    for &account in &m.accounts {
        for asset in [BTC, ETH, JPY] {
            let b = ledger.balance(account, asset);
            let expected = totals.get(&(account, asset)).copied().unwrap_or(0);
            assert_eq!(
                b.total(),
                expected,
                "seed {seed}: account {account} asset {asset}"
            );
        }
    }
    for asset in [BTC, ETH, JPY] {
        let fee_income = ledger.row(Pool::House, asset).fee_income;
        assert_eq!(
            i128::from(fee_income),
            fees.get(&asset).copied().unwrap_or(0),
            "seed {seed}: fees in {asset}"
        );
    }
    // Every flagged fill has a house side, and every fill with a house side is flagged.
    for e in &m.events {
        if let ExchangeEvent::Settled(s) = e {
            let house = |a| ledger.pool_of(a) == Some(Pool::House);
            let flagged = s.house != HouseSide::None;
            assert_eq!(
                flagged,
                house(s.buyer) || house(s.seller),
                "seed {seed}: {s:?}"
            );
        }
    }
    assert!(
        house_fills > 0,
        "seed {seed}: the house traded on a disclosed book"
    );
    let count = |f: fn(&ExchangeEvent) -> bool| m.events.iter().filter(|e| f(e)).count();
    let paid = count(|e| matches!(e, ExchangeEvent::WithdrawalCompleted { .. }));
    let incidents = count(|e| matches!(e, ExchangeEvent::Custody(CustodyEvent::IncidentOpened(_))));
    let top_ups = count(|e| matches!(e, ExchangeEvent::Custody(CustodyEvent::ToppedUp { .. })));
    (incidents, top_ups, paid)
}

fn address_text(account: AccountId, asset: AssetId) -> String {
    format!("addr-{account}-{asset}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_command_and_balances_recompute(seed in any::<u64>()) {
        run_case(seed, 3_000);
    }
}

/// A seed whose 3,000 commands pay no withdrawal (found by CI, when a short run still had to):
/// its invariants must hold all the same.
#[test]
fn a_short_run_that_pays_no_withdrawal_still_keeps_every_invariant() {
    let (_, _, paid) = run_case(3_092_007_860_121_187_532, 3_000);
    assert_eq!(paid, 0, "the seed still exercises the case it was kept for");
}

/// A fixed long run, so that a regression shows with a stable seed.
#[test]
fn fixed_seed_long_run() {
    let (incidents, top_ups, paid) = run_case(42, 10_000);
    assert!(incidents > 0, "the long run opened incidents");
    assert!(top_ups > 0, "the long run topped up customer losses");
    assert!(paid > 0, "the long run paid withdrawals");
}

/// A snapshot restores to an exchange that continues exactly as the original: same events for the
/// same commands, same final state.
#[test]
fn snapshot_restore_continues_identically() {
    let mut m = Model::new(7);
    for _ in 0..2_000 {
        m.step();
    }
    let snapshot = m.v.exchange.snapshot();
    let mut restored = Exchange::restore(&snapshot).expect("valid snapshot");
    assert_eq!(
        restored.snapshot(),
        snapshot,
        "restore then snapshot is the identity"
    );
    assert!(
        !snapshot.matcher.books[0].orders.is_empty(),
        "the snapshot holds resting orders"
    );
    let mut seq = m.v.seq;
    for _ in 0..2_000 {
        let command = m.next_command();
        seq += 1;
        let mut expected = Vec::new();
        let mut actual = Vec::new();
        let record = Sequenced {
            seq,
            ts_ns: seq,
            command,
        };
        m.v.exchange.apply(&record, &mut expected);
        restored.apply(&record, &mut actual);
        assert_eq!(actual, expected, "seq {seq}");
        m.v.seq = seq;
    }
    assert_eq!(restored.snapshot(), m.v.exchange.snapshot());
}
