//! The exchange state machine: one value that owns every book (the [`Matcher`]) and the ledger,
//! and turns one sequenced [`ExchangeCommand`] into [`ExchangeEvent`]s, deterministically.
//!
//! Around matching it does what a venue that cannot be fooled must do: pre-trade reservation (a buy
//! reserves its notional at its limit plus the fee at the higher rate, a sell its base quantity; a
//! market buy reserves up to the band), settlement of every fill by double-entry postings, fees
//! into the house's fee income, obligations recorded whenever value crosses pools, and the house
//! policy per instrument. After every command, when `check_invariants` is on, every ledger
//! invariant is checked and a violation panics with the sequence number.

use std::collections::{BTreeMap, HashSet};

use ledger::amount::{buy_reservation, fee_floor, notional_floor};
use ledger::{
    AmountUnits, AssetClass, AssetId, AssetSpec, Ledger, LedgerAccount, LedgerSnapshot, Location,
    Pool, PostingKind, PostingSet, Ratio, Violation,
};
use serde::{Deserialize, Serialize};

use crate::audit::{KeyChange, OperatorCommand};
use crate::command::{Command, NewOrder, Sequenced};
use crate::custody::{
    Address, AssetHalts, CustodyConfig, CustodyEvent, CustodyState, OperatorId, Sig,
};
use crate::error::RejectReason;
use crate::event::Event;
use crate::instrument::{HousePolicy, InstrumentSpec};
use crate::matcher::{EngineConfig, Matcher, MatcherSnapshot};
use crate::table::Table;
use crate::types::*;

/// A deposit's transaction id on its chain or bank feed; credited at most once.
pub type TxId = [u8; 32];
pub type WithdrawalId = u64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeConfig {
    pub engine: EngineConfig,
    pub assets: Vec<AssetSpec>,
    pub instruments: Vec<InstrumentSpec>,
    pub withdrawals_pending_max: u32,
    pub custody: CustodyConfig,
}

/// The most a configuration may ask the engine to allocate up front, far above any real one.
/// Past these, a capacity is a configuration error: before, `orders_open_per_account_max =
/// 4294967295` (a typo in `[exchange.engine]`, or a corrupt genesis record) made `Exchange::new`
/// ask for 68 GB and abort the process (found by kinko-fuzz).
pub const ORDERS_MAX_CEILING: u32 = 1 << 24;
pub const ACCOUNTS_MAX_CEILING: u32 = 1 << 24;
pub const LEVELS_PER_SIDE_MAX_CEILING: u32 = 1 << 20;
pub const STOPS_PER_SIDE_MAX_CEILING: u32 = 1 << 20;
pub const ASSETS_MAX_CEILING: usize = 1 << 8;
pub const INSTRUMENTS_MAX_CEILING: usize = 1 << 10;
/// Levels and stops preallocated across every book (instruments × 2 sides × both kinds).
pub const BOOK_SLOTS_MAX_CEILING: u64 = 1 << 26;
/// Balance cells preallocated (accounts × assets).
pub const BALANCE_CELLS_MAX_CEILING: u64 = 1 << 28;

impl ExchangeConfig {
    /// Checks every capacity against its ceiling, and every asset's decimals against
    /// `ledger::DECIMALS_MAX` (declared, never enforced before), naming the first one past it.
    pub fn check_limits(&self) -> Result<(), String> {
        let e = &self.engine;
        let each: [(&str, u64, u64); 7] = [
            ("orders_max", e.orders_max.into(), ORDERS_MAX_CEILING.into()),
            (
                "orders_open_per_account_max",
                e.orders_open_per_account_max.into(),
                ORDERS_MAX_CEILING.into(),
            ),
            (
                "accounts_max",
                e.accounts_max.into(),
                ACCOUNTS_MAX_CEILING.into(),
            ),
            (
                "levels_per_side_max",
                e.levels_per_side_max.into(),
                LEVELS_PER_SIDE_MAX_CEILING.into(),
            ),
            (
                "stops_per_side_max",
                e.stops_per_side_max.into(),
                STOPS_PER_SIDE_MAX_CEILING.into(),
            ),
            (
                "assets",
                self.assets.len() as u64,
                ASSETS_MAX_CEILING as u64,
            ),
            (
                "instruments",
                self.instruments.len() as u64,
                INSTRUMENTS_MAX_CEILING as u64,
            ),
        ];
        for (i, (name, value, ceiling)) in each.into_iter().enumerate() {
            if value > ceiling {
                return Err(format!("{name} = {value} is past its ceiling {ceiling}"));
            }
            // The five engine capacities hold at least one of their kind: an arena of no order
            // slots was an assertion deep in Matcher::new (kinko-fuzz).
            if i < 5 && value == 0 {
                return Err(format!("{name} = 0: it must be at least 1"));
            }
        }
        let book_slots = self.instruments.len() as u64
            * 2
            * (u64::from(e.levels_per_side_max) + u64::from(e.stops_per_side_max));
        if book_slots > BOOK_SLOTS_MAX_CEILING {
            return Err(format!(
                "instruments × 2 × (levels + stops per side) = {book_slots} is past its ceiling {BOOK_SLOTS_MAX_CEILING}"
            ));
        }
        use ledger::asset::DECIMALS_MAX;
        if let Some(asset) = self.assets.iter().find(|a| a.decimals > DECIMALS_MAX) {
            return Err(format!(
                "asset {} has {} decimals, more than {DECIMALS_MAX}",
                asset.code, asset.decimals
            ));
        }
        let cells = u64::from(e.accounts_max) * self.assets.len() as u64;
        if cells > BALANCE_CELLS_MAX_CEILING {
            return Err(format!(
                "accounts_max × assets = {cells} is past its ceiling {BALANCE_CELLS_MAX_CEILING}"
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExchangeCommand {
    /// Order entry: new order, cancel, replace, mass cancel, self-trade default, halt, resume.
    Trade(Command),
    CreateAccount {
        pool: Pool,
    },
    Deposit {
        account: AccountId,
        asset: AssetId,
        amount_units: AmountUnits,
        tx: TxId,
    },
    /// Held at once; payable only to a whitelisted address past its cooldown.
    WithdrawalRequest {
        account: AccountId,
        asset: AssetId,
        amount_units: AmountUnits,
        address: Address,
    },
    /// The chain adapter sent the oldest pending withdrawal of its asset and pool.
    WithdrawalBroadcast {
        withdrawal_id: WithdrawalId,
        chain_tx: TxId,
    },
    /// The chain confirmed a broadcast withdrawal.
    WithdrawalComplete {
        withdrawal_id: WithdrawalId,
    },
    /// Only before broadcast.
    WithdrawalCancel {
        withdrawal_id: WithdrawalId,
    },
    AddWithdrawalAddress {
        account: AccountId,
        asset: AssetId,
        address: Address,
    },
    RemoveWithdrawalAddress {
        account: AccountId,
        asset: AssetId,
        address: Address,
    },
    /// The chain adapter made `address` for deposits of `asset` to `account`.
    AssignDepositAddress {
        account: AccountId,
        asset: AssetId,
        address: Address,
    },
    /// The chain adapter saw a deposit to `address`.
    ChainDeposit {
        address: Address,
        asset: AssetId,
        amount_units: AmountUnits,
        tx: TxId,
    },
    ColdToHotRequest {
        pool: Pool,
        asset: AssetId,
        amount_units: AmountUnits,
        operator: OperatorId,
    },
    /// One approver's ed25519 signature over [`crate::custody::cold_move_message`].
    ColdToHotApprove {
        request_id: u64,
        approver: [u8; 32],
        signature: Sig,
    },
    /// The chain adapter moved an approved request's coins.
    ColdToHotComplete {
        request_id: u64,
    },
    ColdToHotCancel {
        request_id: u64,
    },
    /// Reconciliation: the chain adapter's (or bank feed's) observed balance of a wallet.
    WalletObserved {
        pool: Pool,
        asset: AssetId,
        location: Location,
        observed_units: AmountUnits,
    },
    SetAssetHalts {
        asset: AssetId,
        halts: AssetHalts,
        operator: OperatorId,
    },
    /// The house replaces customer-pool losses in `asset` with its own custody at `location`.
    TopUp {
        asset: AssetId,
        location: Location,
        amount_units: AmountUnits,
        operator: OperatorId,
    },
    /// Settles what the pools owe each other in `asset` by moving the net amount physically
    /// between their operating custody (hot wallet, or bank for fiat).
    FeeSweep {
        asset: AssetId,
    },
    SetHousePolicy {
        instrument: InstrumentId,
        policy: HousePolicy,
    },
    /// Moves custody within one pool, e.g. hot to cold. Cold to hot is refused here: it needs
    /// approvals ([`ExchangeCommand::ColdToHotRequest`]).
    CustodyTransfer {
        pool: Pool,
        asset: AssetId,
        source: Location,
        target: Location,
        amount_units: AmountUnits,
    },
    /// An operator action, carrying who did it (the audit trail, [`crate::audit`]). Applied
    /// exactly as its unattributed twin; a key change is recorded only.
    Operator {
        operator: OperatorId,
        command: OperatorCommand,
    },
}

impl OperatorCommand {
    /// The unattributed command this action applies as; `None` for a key change.
    pub fn plain(self) -> Option<ExchangeCommand> {
        Some(match self {
            OperatorCommand::HaltInstrument { instrument } => {
                ExchangeCommand::Trade(Command::Halt { instrument })
            }
            OperatorCommand::ResumeInstrument { instrument } => {
                ExchangeCommand::Trade(Command::Resume { instrument })
            }
            OperatorCommand::SetHousePolicy { instrument, policy } => {
                ExchangeCommand::SetHousePolicy { instrument, policy }
            }
            OperatorCommand::CustodyTransfer {
                pool,
                asset,
                source,
                target,
                amount_units,
            } => ExchangeCommand::CustodyTransfer {
                pool,
                asset,
                source,
                target,
                amount_units,
            },
            OperatorCommand::ColdToHotCancel { request_id } => {
                ExchangeCommand::ColdToHotCancel { request_id }
            }
            OperatorCommand::ColdToHotApprove {
                request_id,
                approver,
                signature,
            } => ExchangeCommand::ColdToHotApprove {
                request_id,
                approver,
                signature,
            },
            OperatorCommand::Key(_) => return None,
        })
    }
}

/// Which sides of a fill belong to the house. Only possible on a `Disclosed` instrument, and then
/// always visible in the settlement event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HouseSide {
    None,
    Maker,
    Taker,
    Both,
}

/// The money side of one fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub instrument: InstrumentId,
    pub maker_order_id: OrderId,
    pub taker_order_id: OrderId,
    pub buyer: AccountId,
    pub seller: AccountId,
    pub base: AssetId,
    pub quote: AssetId,
    pub base_units: AmountUnits,
    pub notional_units: AmountUnits,
    pub fee_buyer_units: AmountUnits,
    pub fee_seller_units: AmountUnits,
    pub house: HouseSide,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alert {
    /// Customer coins in the hot wallet are above the cap: sweep `excess_units` to cold.
    HotWalletOverCap {
        asset: AssetId,
        hot_units: AmountUnits,
        owed_units: AmountUnits,
        excess_units: AmountUnits,
    },
    /// A wallet holds less than the ledger says and no journaled withdrawal explains it.
    WalletShortfall {
        pool: Pool,
        asset: AssetId,
        location: Location,
        missing_units: AmountUnits,
    },
    /// A wallet holds more than the ledger says (e.g. a deposit not credited): not credited.
    WalletSurplus {
        pool: Pool,
        asset: AssetId,
        location: Location,
        extra_units: AmountUnits,
    },
    /// A deposit to an address no account owns (or for another asset): not credited.
    UnknownDepositAddress {
        asset: AssetId,
        amount_units: AmountUnits,
        tx: TxId,
    },
    /// A deposit transaction seen before: not credited again.
    DuplicateDepositTx {
        asset: AssetId,
        amount_units: AmountUnits,
        tx: TxId,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExchangeEvent {
    /// An event of the matching core (order accepted, rejected, filled, cancelled...).
    Order(Event),
    /// Follows each `Order(Event::Fill)`.
    Settled(Settlement),
    AccountCreated {
        account: AccountId,
        pool: Pool,
    },
    Deposited {
        account: AccountId,
        asset: AssetId,
        amount_units: AmountUnits,
        tx: TxId,
        location: Location,
    },
    WithdrawalRequested {
        withdrawal_id: WithdrawalId,
        account: AccountId,
        asset: AssetId,
        amount_units: AmountUnits,
        address: Address,
    },
    WithdrawalCompleted {
        withdrawal_id: WithdrawalId,
        account: AccountId,
        asset: AssetId,
        amount_units: AmountUnits,
    },
    WithdrawalCancelled {
        withdrawal_id: WithdrawalId,
        account: AccountId,
        asset: AssetId,
        amount_units: AmountUnits,
    },
    /// `customer_to_house_units` moved from customer custody to house custody (negative: the
    /// other way) at `location`, settling every obligation between the pools in `asset`.
    Swept {
        asset: AssetId,
        location: Location,
        customer_to_house_units: AmountUnits,
    },
    HousePolicySet {
        instrument: InstrumentId,
        policy: HousePolicy,
    },
    CustodyMoved {
        pool: Pool,
        asset: AssetId,
        source: Location,
        target: Location,
        amount_units: AmountUnits,
    },
    /// A non-order command was refused; nothing changed.
    Rejected {
        account: Option<AccountId>,
        reason: RejectReason,
    },
    Alert(Alert),
    Custody(CustodyEvent),
    /// An operator changed an API key (recorded; the gateway enforces it).
    KeyChanged {
        operator: OperatorId,
        change: KeyChange,
    },
}

/// How an instrument's ticks and lots become asset units.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Market {
    pub(crate) base: AssetId,
    pub(crate) quote: AssetId,
    /// Base units per lot (a whole number, checked at start-up).
    lot_units: AmountUnits,
    /// Quote units per tick × lot (any positive rational).
    quote_per_tick_lot: Ratio,
    fee_maker_ppm: u32,
    fee_taker_ppm: u32,
}

impl Market {
    fn fee_ppm_max(&self) -> u32 {
        self.fee_maker_ppm.max(self.fee_taker_ppm)
    }
}

/// What an open order has reserved: quote units for a buy (at `limit_ticks`), base units for a sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    account: AccountId,
    instrument: InstrumentId,
    side: Side,
    limit_ticks: PriceTicks,
    units: AmountUnits,
}

/// What a vacant slot of the reservations' table holds; never read as a reservation.
impl Default for Reservation {
    fn default() -> Reservation {
        Reservation {
            account: 0,
            instrument: 0,
            side: Side::Buy,
            limit_ticks: 0,
            units: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub account: AccountId,
    pub asset: AssetId,
    pub amount_units: AmountUnits,
    pub address: Address,
    /// The UTC day of the request (for the daily limit).
    pub day: u64,
    /// The chain transaction, once broadcast.
    pub broadcast: Option<TxId>,
}

/// A broken invariant found by [`Exchange::check_invariants_incremental`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvariantViolation {
    Ledger(Violation),
    Book(crate::matcher::BookViolation),
    /// Open orders and reservations are not one to one.
    Reservations {
        reservations: usize,
        orders_open: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A capacity past its ceiling (the engine allocates capacities up front), or an asset with
    /// more decimals than `ledger::DECIMALS_MAX`.
    Limit(String),
    UnknownAsset {
        instrument: String,
        code: String,
    },
    LotNotWhole {
        instrument: String,
    },
    Instrument {
        instrument: String,
        error: String,
    },
    Custody(String),
}

/// The exchange's whole state in a canonical form: every collection sorted, so that equal states
/// encode to equal bytes and hash to the same state hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeSnapshot {
    pub config: ExchangeConfig,
    pub matcher: MatcherSnapshot,
    pub ledger: LedgerSnapshot,
    pub reservations: Vec<(OrderId, Reservation)>,
    pub withdrawals: Vec<(WithdrawalId, Withdrawal)>,
    pub withdrawal_id_next: WithdrawalId,
    pub deposits_seen: Vec<TxId>,
    pub custody: CustodyState,
}

pub struct Exchange {
    pub(crate) config: ExchangeConfig,
    pub(crate) matcher: Matcher,
    pub(crate) ledger: Ledger,
    pub(crate) markets: Vec<Market>,
    reservations: Table<OrderId, Reservation>,
    /// In request order: withdrawals are served first come, first served.
    pub(crate) withdrawals: BTreeMap<WithdrawalId, Withdrawal>,
    pub(crate) withdrawal_id_next: WithdrawalId,
    pub(crate) withdrawals_pending_max: usize,
    pub(crate) deposits_seen: HashSet<TxId>,
    pub(crate) custody: CustodyState,
    check_invariants: bool,
    /// The matcher's events for the command being applied (preallocated, reused).
    scratch: Vec<Event>,
}

impl Exchange {
    pub fn new(config: ExchangeConfig) -> Result<Exchange, ConfigError> {
        config.check_limits().map_err(ConfigError::Limit)?;
        let ledger = Ledger::new(config.assets.clone(), config.engine.accounts_max as usize);
        let markets = config
            .instruments
            .iter()
            .map(|spec| market(&ledger, spec))
            .collect::<Result<Vec<_>, _>>()?;
        config
            .custody
            .validate(&config.assets)
            .map_err(ConfigError::Custody)?;
        let custody = CustodyState::new(config.assets.len());
        let check_invariants = config.engine.check_invariants;
        let orders_max = config.engine.orders_max as usize;
        let withdrawals_pending_max = config.withdrawals_pending_max as usize;
        Ok(Exchange {
            matcher: Matcher::new(config.engine.clone(), config.instruments.clone()),
            config,
            ledger,
            markets,
            reservations: Table::new(orders_max),
            withdrawals: BTreeMap::new(),
            withdrawal_id_next: 1,
            withdrawals_pending_max,
            deposits_seen: HashSet::new(),
            custody,
            check_invariants,
            scratch: Vec::with_capacity(1_024),
        })
    }

    pub fn config(&self) -> &ExchangeConfig {
        &self.config
    }

    pub fn snapshot(&self) -> ExchangeSnapshot {
        let mut reservations: Vec<_> = self.reservations.iter().map(|(id, r)| (*id, *r)).collect();
        reservations.sort_unstable_by_key(|(id, _)| *id);
        let mut deposits_seen: Vec<TxId> = self.deposits_seen.iter().copied().collect();
        deposits_seen.sort_unstable();
        ExchangeSnapshot {
            config: self.config.clone(),
            matcher: self.matcher.snapshot(),
            ledger: self.ledger.snapshot(),
            reservations,
            withdrawals: self.withdrawals.iter().map(|(id, w)| (*id, *w)).collect(),
            withdrawal_id_next: self.withdrawal_id_next,
            deposits_seen,
            custody: self.custody.clone(),
        }
    }

    /// Rebuilds the exchange from a snapshot. The instruments come from the snapshot (their
    /// policies may have changed since genesis).
    pub fn restore(snapshot: &ExchangeSnapshot) -> Result<Exchange, ConfigError> {
        let mut config = snapshot.config.clone();
        config.instruments = snapshot
            .matcher
            .books
            .iter()
            .map(|b| b.spec.clone())
            .collect();
        let mut exchange = Exchange::new(config.clone())?;
        exchange.config = snapshot.config.clone();
        exchange.matcher = Matcher::restore(config.engine, &snapshot.matcher);
        exchange.ledger = Ledger::restore(&snapshot.ledger);
        exchange
            .reservations
            .extend(snapshot.reservations.iter().copied());
        exchange
            .withdrawals
            .extend(snapshot.withdrawals.iter().copied());
        exchange.withdrawal_id_next = snapshot.withdrawal_id_next;
        exchange
            .deposits_seen
            .extend(snapshot.deposits_seen.iter().copied());
        exchange.custody = snapshot.custody.clone();
        Ok(exchange)
    }

    /// Every holder balance changed since the last call (for balance feeds; not state).
    pub fn drain_touched_balances(&mut self, out: &mut Vec<(AccountId, AssetId, ledger::Balance)>) {
        self.ledger.drain_touched(out);
    }

    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Applies one sequenced command, appending its events to `out`.
    pub fn apply(&mut self, record: &Sequenced<ExchangeCommand>, out: &mut Vec<ExchangeEvent>) {
        let first = out.len();
        self.ledger.clear_changed();
        self.dispatch(record, out);
        assert!(
            out.len() > first,
            "command at seq {} produced no event",
            record.seq
        );
        if self.check_invariants {
            if let Err(violation) = self.check_invariants() {
                panic!(
                    "ledger invariant broken at seq {}: {violation:?}",
                    record.seq
                );
            }
        }
    }

    fn dispatch(&mut self, record: &Sequenced<ExchangeCommand>, out: &mut Vec<ExchangeEvent>) {
        match record.command {
            ExchangeCommand::Operator { operator, command } => match command.plain() {
                Some(plain) => {
                    let inner = Sequenced {
                        seq: record.seq,
                        ts_ns: record.ts_ns,
                        command: plain,
                    };
                    self.dispatch(&inner, out);
                }
                None => {
                    if let OperatorCommand::Key(change) = command {
                        out.push(ExchangeEvent::KeyChanged { operator, change });
                    }
                }
            },
            ExchangeCommand::Trade(command) => self.trade(record, command, out),
            ExchangeCommand::CreateAccount { pool } => self.create_account(pool, out),
            ExchangeCommand::Deposit {
                account,
                asset,
                amount_units,
                tx,
            } => self.deposit(account, asset, amount_units, tx, out),
            ExchangeCommand::FeeSweep { asset } => self.fee_sweep(asset, out),
            ExchangeCommand::SetHousePolicy { instrument, policy } => {
                self.set_house_policy(record, instrument, policy, out)
            }
            _ => self.apply_custody(record, out),
        }
    }

    // ------------------------------------------------------------------ trading

    fn trade(
        &mut self,
        record: &Sequenced<ExchangeCommand>,
        command: Command,
        out: &mut Vec<ExchangeEvent>,
    ) {
        if let Some(account) = command_account(&command) {
            if self.ledger.pool_of(account).is_none() {
                out.push(ExchangeEvent::Order(Event::Rejected {
                    account,
                    client_order_id: match command {
                        Command::NewOrder(order) => Some(order.client_order_id),
                        _ => None,
                    },
                    order: None,
                    reason: RejectReason::UnknownAccount,
                }));
                return;
            }
        }
        let checked = match command {
            Command::NewOrder(order) => self.reserve_new(&order),
            Command::Replace {
                account,
                order,
                price_ticks,
                qty_lots,
                client_order_id_new,
            } => self.reserve_replace(account, order, price_ticks, qty_lots, client_order_id_new),
            _ => Ok(()),
        };
        if let Err(reason) = checked {
            out.push(ExchangeEvent::Order(reject_of(&command, reason)));
            return;
        }
        self.run_matcher(record.seq, record.ts_ns, command, out);
    }

    pub(crate) fn run_matcher(
        &mut self,
        seq: u64,
        ts_ns: u64,
        command: Command,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let mut events = std::mem::take(&mut self.scratch);
        events.clear();
        self.matcher.apply(
            &Sequenced {
                seq,
                ts_ns,
                command,
            },
            &mut events,
        );
        for event in &events {
            out.push(ExchangeEvent::Order(*event));
            self.follow(seq, event, out);
        }
        self.scratch = events;
    }

    /// Checks a new order and reserves its funds. The reservation is keyed by the id the matcher
    /// is about to assign.
    fn reserve_new(&mut self, order: &NewOrder) -> Result<(), RejectReason> {
        self.matcher.check_new(order)?;
        let spec = self.matcher.instrument(order.instrument).expect("checked");
        if spec.house_policy == HousePolicy::Forbidden
            && self.ledger.pool_of(order.account) == Some(Pool::House)
        {
            return Err(RejectReason::HouseTradingForbidden);
        }
        let limit_ticks = match order.kind {
            OrderKind::Limit { price_ticks, .. } | OrderKind::StopLimit { price_ticks, .. } => {
                price_ticks
            }
            OrderKind::Market => self
                .matcher
                .market_limit(order.instrument, order.side, None),
            // When it triggers the last price has reached the stop, so the band around the stop is
            // the tighter edge (`Matcher::market_limit`): reserving at it covers any fill.
            OrderKind::StopMarket { stop_ticks } => {
                let (low, high) = self
                    .matcher
                    .instrument(order.instrument)
                    .expect("checked")
                    .band(stop_ticks);
                match order.side {
                    Side::Buy => high,
                    Side::Sell => low,
                }
            }
        };
        let reservation = Reservation {
            account: order.account,
            instrument: order.instrument,
            side: order.side,
            limit_ticks,
            units: 0,
        };
        let units = self.reservation_units(&reservation, order.qty_lots)?;
        self.hold(&reservation, units)?;
        let order_id = self.matcher.order_id_next();
        self.reservations.insert(
            order_id,
            Reservation {
                units,
                ..reservation
            },
        );
        Ok(())
    }

    /// Checks a replace and moves the order's reservation to what the new price and quantity need.
    fn reserve_replace(
        &mut self,
        account: AccountId,
        order: OrderRef,
        price_ticks: PriceTicks,
        qty_lots: QtyLots,
        client_order_id_new: Option<ClientOrderId>,
    ) -> Result<(), RejectReason> {
        let view = self.matcher.check_replace(
            account,
            order,
            price_ticks,
            qty_lots,
            client_order_id_new,
        )?;
        let current = *self
            .reservations
            .get(&view.order_id)
            .expect("every open order has a reservation");
        let next = Reservation {
            limit_ticks: price_ticks,
            ..current
        };
        let units = self.reservation_units(&next, qty_lots)?;
        if units > current.units {
            self.hold(&current, units - current.units)?;
        } else if units < current.units {
            self.release(&current, current.units - units);
        }
        self.reservations
            .insert(view.order_id, Reservation { units, ..next });
        Ok(())
    }

    /// What an order with `qty_lots` open needs reserved.
    fn reservation_units(
        &self,
        reservation: &Reservation,
        qty_lots: QtyLots,
    ) -> Result<AmountUnits, RejectReason> {
        let market = &self.markets[reservation.instrument as usize];
        match reservation.side {
            Side::Buy => buy_reservation(
                reservation.limit_ticks,
                qty_lots,
                market.quote_per_tick_lot,
                market.fee_ppm_max(),
            )
            .map_err(|_| RejectReason::AmountTooLarge),
            Side::Sell => qty_lots
                .checked_mul(market.lot_units)
                .ok_or(RejectReason::AmountTooLarge),
        }
    }

    fn reserved_asset(&self, reservation: &Reservation) -> AssetId {
        let market = &self.markets[reservation.instrument as usize];
        match reservation.side {
            Side::Buy => market.quote,
            Side::Sell => market.base,
        }
    }

    /// Moves `units` from available to held, or fails with `InsufficientBalance`.
    fn hold(&mut self, reservation: &Reservation, units: AmountUnits) -> Result<(), RejectReason> {
        let asset = self.reserved_asset(reservation);
        let mut set = PostingSet::new(PostingKind::Reserve);
        set.decrease(LedgerAccount::available(reservation.account), asset, units);
        set.increase(LedgerAccount::held(reservation.account), asset, units);
        self.ledger
            .apply(&set)
            .map_err(|violation| match violation {
                Violation::Negative { .. } => RejectReason::InsufficientBalance,
                _ => RejectReason::AmountTooLarge,
            })
    }

    /// Moves `units` from held back to available.
    fn release(&mut self, reservation: &Reservation, units: AmountUnits) {
        let asset = self.reserved_asset(reservation);
        let mut set = PostingSet::new(PostingKind::Release);
        set.decrease(LedgerAccount::held(reservation.account), asset, units);
        set.increase(LedgerAccount::available(reservation.account), asset, units);
        if let Err(violation) = self.ledger.apply(&set) {
            panic!("release of {units} for {reservation:?} failed: {violation:?}");
        }
    }

    /// Releases whatever an order still has reserved beyond what `qty_open` needs, and forgets
    /// the reservation when nothing is open.
    fn shrink(&mut self, order_id: OrderId, qty_open: QtyLots) {
        let Some(&current) = self.reservations.get(&order_id) else {
            return;
        };
        let needed = self
            .reservation_units(&current, qty_open)
            .expect("a smaller quantity fits");
        assert!(
            needed <= current.units,
            "reservation of order {order_id} grew: {needed} > {current:?}"
        );
        self.release(&current, current.units - needed);
        if qty_open == 0 {
            self.reservations.remove(&order_id);
        } else {
            self.reservations.insert(
                order_id,
                Reservation {
                    units: needed,
                    ..current
                },
            );
        }
    }

    /// The ledger side of one matcher event.
    fn follow(&mut self, seq: u64, event: &Event, out: &mut Vec<ExchangeEvent>) {
        match *event {
            Event::Fill { .. } => {
                let settlement = self.settle(seq, event);
                out.push(ExchangeEvent::Settled(settlement));
            }
            Event::Cancelled {
                order_id, qty_open, ..
            } => self.shrink(order_id, qty_open),
            Event::Expired { order_id, .. } => self.shrink(order_id, 0),
            Event::Rejected { .. } => {
                // Every order command was checked before it reached the matcher; a reservation made
                // for a rejected order would otherwise leak.
                let predicted = self.matcher.order_id_next();
                if let Some(reservation) = self.reservations.remove(&predicted) {
                    panic!("matcher rejected an order the exchange had checked at seq {seq}: {reservation:?}");
                }
            }
            _ => {}
        }
    }

    /// Settles one fill: base from seller to buyer, notional from buyer to seller, fees to the
    /// house, obligations wherever value crosses pools.
    fn settle(&mut self, seq: u64, fill: &Event) -> Settlement {
        let Event::Fill {
            instrument,
            maker_order_id,
            taker_order_id,
            maker_account,
            taker_account,
            price_ticks,
            qty_lots,
            aggressor,
            maker_qty_open,
            taker_qty_open,
        } = *fill
        else {
            unreachable!("settle takes fills");
        };
        let market = self.markets[instrument as usize];
        let (buyer, seller) = match aggressor {
            Side::Buy => (
                (taker_account, taker_order_id, taker_qty_open),
                (maker_account, maker_order_id, maker_qty_open),
            ),
            Side::Sell => (
                (maker_account, maker_order_id, maker_qty_open),
                (taker_account, taker_order_id, taker_qty_open),
            ),
        };
        let (rate_buyer, rate_seller) = match aggressor {
            Side::Buy => (market.fee_taker_ppm, market.fee_maker_ppm),
            Side::Sell => (market.fee_maker_ppm, market.fee_taker_ppm),
        };
        let notional_units = notional_floor(price_ticks, qty_lots, market.quote_per_tick_lot)
            .expect("covered by the buyer's reservation");
        let base_units = qty_lots * market.lot_units;
        let fee_buyer_units = fee_floor(notional_units, rate_buyer);
        let fee_seller_units = fee_floor(notional_units, rate_seller);
        let pool = |account| self.ledger.pool_of(account).expect("traders have accounts");
        let (pool_buyer, pool_seller) = (pool(buyer.0), pool(seller.0));
        let house = match (pool(maker_account), pool(taker_account)) {
            (Pool::House, Pool::House) => HouseSide::Both,
            (Pool::House, _) => HouseSide::Maker,
            (_, Pool::House) => HouseSide::Taker,
            _ => HouseSide::None,
        };

        let mut set = PostingSet::new(PostingKind::Settlement);
        let held = |account, pool| (LedgerAccount::held(account), pool);
        let available = |account, pool| (LedgerAccount::available(account), pool);
        let fees = (LedgerAccount::FeeIncome, Pool::House);
        set.transfer(
            held(seller.0, pool_seller),
            available(buyer.0, pool_buyer),
            market.base,
            base_units,
        );
        set.transfer(
            held(buyer.0, pool_buyer),
            available(seller.0, pool_seller),
            market.quote,
            notional_units,
        );
        set.transfer(
            held(buyer.0, pool_buyer),
            fees,
            market.quote,
            fee_buyer_units,
        );
        set.transfer(
            available(seller.0, pool_seller),
            fees,
            market.quote,
            fee_seller_units,
        );

        // The buyer's reservation pays for the fill; whatever it held beyond the fill and the
        // rest of the order goes back to available at once.
        let buy = *self
            .reservations
            .get(&buyer.1)
            .expect("buyer has a reservation");
        let buy_needed = self
            .reservation_units(&buy, buyer.2)
            .expect("a smaller quantity fits");
        let buy_excess = buy.units - notional_units - fee_buyer_units - buy_needed;
        assert!(
            buy_excess >= 0,
            "buyer's reservation short at seq {seq}: {buy:?} for {fill:?}"
        );
        set.transfer(
            held(buyer.0, pool_buyer),
            available(buyer.0, pool_buyer),
            market.quote,
            buy_excess,
        );
        let sell = *self
            .reservations
            .get(&seller.1)
            .expect("seller has a reservation");
        assert_eq!(
            sell.units - base_units,
            seller.2 * market.lot_units,
            "seller's reservation at seq {seq}"
        );

        if let Err(violation) = self.ledger.apply(&set) {
            panic!("settlement refused at seq {seq}: {violation:?} for {fill:?}");
        }
        self.set_reserved(buyer.1, buy, buy_needed, buyer.2);
        self.set_reserved(seller.1, sell, sell.units - base_units, seller.2);
        Settlement {
            instrument,
            maker_order_id,
            taker_order_id,
            buyer: buyer.0,
            seller: seller.0,
            base: market.base,
            quote: market.quote,
            base_units,
            notional_units,
            fee_buyer_units,
            fee_seller_units,
            house,
        }
    }

    fn set_reserved(
        &mut self,
        order_id: OrderId,
        current: Reservation,
        units: AmountUnits,
        qty_open: QtyLots,
    ) {
        if qty_open == 0 {
            assert_eq!(units, 0, "a filled order keeps nothing reserved");
            self.reservations.remove(&order_id);
        } else {
            self.reservations
                .insert(order_id, Reservation { units, ..current });
        }
    }

    fn set_house_policy(
        &mut self,
        record: &Sequenced<ExchangeCommand>,
        instrument: InstrumentId,
        policy: HousePolicy,
        out: &mut Vec<ExchangeEvent>,
    ) {
        if self.matcher.instrument(instrument).is_none() {
            return reject(out, None, RejectReason::UnknownInstrument);
        }
        self.matcher.set_house_policy(instrument, policy);
        out.push(ExchangeEvent::HousePolicySet { instrument, policy });
        if policy == HousePolicy::Forbidden {
            // A house that may no longer trade must not keep orders on the book either.
            for account in 0..self.ledger.accounts() as AccountId {
                let house = self.ledger.pool_of(account) == Some(Pool::House);
                if house && self.matcher.account_orders_open(account) > 0 {
                    let command = Command::MassCancel {
                        account,
                        instrument: Some(instrument),
                        side: None,
                    };
                    self.run_matcher(record.seq, record.ts_ns, command, out);
                }
            }
        }
    }

    // ------------------------------------------------------------------ accounts and custody

    fn create_account(&mut self, pool: Pool, out: &mut Vec<ExchangeEvent>) {
        if self.ledger.is_full() {
            return reject(out, None, RejectReason::AccountsFull);
        }
        let account = self.ledger.open_account(pool);
        out.push(ExchangeEvent::AccountCreated { account, pool });
    }

    pub(crate) fn deposit(
        &mut self,
        account: AccountId,
        asset: AssetId,
        amount_units: AmountUnits,
        tx: TxId,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let Some(pool) = self.ledger.pool_of(account) else {
            return reject(out, Some(account), RejectReason::UnknownAccount);
        };
        let Some(spec) = self.ledger.asset(asset) else {
            return reject(out, Some(account), RejectReason::UnknownAsset);
        };
        if amount_units <= 0 {
            return reject(out, Some(account), RejectReason::AmountNotPositive);
        }
        if self.deposits_halted(asset) {
            return reject(out, Some(account), RejectReason::DepositsHalted);
        }
        if self.deposits_seen.contains(&tx) {
            return reject(out, Some(account), RejectReason::DuplicateDeposit);
        }
        let location = spec.operating_location();
        let mut set = PostingSet::new(PostingKind::Deposit);
        set.increase(
            LedgerAccount::Custody { pool, location },
            asset,
            amount_units,
        );
        set.increase(LedgerAccount::available(account), asset, amount_units);
        if self.ledger.apply(&set).is_err() {
            return reject(out, Some(account), RejectReason::AmountTooLarge);
        }
        self.deposits_seen.insert(tx);
        out.push(ExchangeEvent::Deposited {
            account,
            asset,
            amount_units,
            tx,
            location,
        });
        if let Some(alert) = self.hot_cap_alert(asset) {
            out.push(ExchangeEvent::Alert(alert));
        }
    }

    pub(crate) fn hot_cap_alert(&self, asset: AssetId) -> Option<Alert> {
        if self.ledger.asset(asset)?.class != AssetClass::Coin {
            return None;
        }
        match self.ledger.check_hot_cap(asset) {
            Err(Violation::HotOverCap {
                hot, owed, cap_bps, ..
            }) => Some(Alert::HotWalletOverCap {
                asset,
                hot_units: hot as AmountUnits,
                owed_units: owed as AmountUnits,
                excess_units: (hot - owed * i128::from(cap_bps) / 10_000) as AmountUnits,
            }),
            _ => None,
        }
    }

    fn fee_sweep(&mut self, asset: AssetId, out: &mut Vec<ExchangeEvent>) {
        let Some(spec) = self.ledger.asset(asset) else {
            return reject(out, None, RejectReason::UnknownAsset);
        };
        let location = spec.operating_location();
        let customer = *self.ledger.row(Pool::Customer, asset);
        let (owed_to_house, owed_by_house) = (customer.due_to, customer.due_from);
        let net = owed_to_house - owed_by_house;
        let mut set = PostingSet::new(PostingKind::Sweep);
        set.decrease(
            LedgerAccount::Custody {
                pool: Pool::Customer,
                location,
            },
            asset,
            net,
        );
        set.increase(
            LedgerAccount::Custody {
                pool: Pool::House,
                location,
            },
            asset,
            net,
        );
        set.decrease(
            LedgerAccount::DueTo {
                pool: Pool::Customer,
            },
            asset,
            owed_to_house,
        );
        set.decrease(
            LedgerAccount::DueFrom { pool: Pool::House },
            asset,
            owed_to_house,
        );
        set.decrease(
            LedgerAccount::DueFrom {
                pool: Pool::Customer,
            },
            asset,
            owed_by_house,
        );
        set.decrease(
            LedgerAccount::DueTo { pool: Pool::House },
            asset,
            owed_by_house,
        );
        if self.ledger.apply(&set).is_err() {
            return reject(out, None, RejectReason::InsufficientCustody);
        }
        out.push(ExchangeEvent::Swept {
            asset,
            location,
            customer_to_house_units: net,
        });
    }

    // ------------------------------------------------------------------ invariants

    /// Every ledger invariant, with held checked against open-order reservations plus pending
    /// withdrawals, and every open order matched by a reservation.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        let assets = self.ledger.assets().len();
        let mut reserved = vec![0i128; self.ledger.balance_cells()];
        for r in self.reservations.values() {
            reserved[r.account as usize * assets + self.reserved_asset(r) as usize] +=
                i128::from(r.units);
        }
        for w in self.withdrawals.values() {
            reserved[w.account as usize * assets + w.asset as usize] += i128::from(w.amount_units);
        }
        assert_eq!(
            self.reservations.len(),
            self.matcher.orders_open(),
            "every open order has exactly one reservation"
        );
        self.ledger.check_all(&reserved)
    }

    /// The invariants the last command can have touched, in O(what it changed): the pools'
    /// equations from running totals (invariants 1, 2, 3), every changed holder cell (invariant 5:
    /// not negative, held equal to its open orders' reservations plus its pending withdrawals), and
    /// the matcher's changed levels and books. Given that everything held before the command, this
    /// proves everything holds after it; [`Exchange::check_invariants`] is the full, O(state) check
    /// (replay runs it at the end of every batch).
    pub fn check_invariants_incremental(
        &self,
        events: &[ExchangeEvent],
    ) -> Result<(), InvariantViolation> {
        self.ledger
            .check_pools()
            .map_err(InvariantViolation::Ledger)?;
        let reserved = |account: AccountId, asset: AssetId| -> i128 {
            let orders: i128 = self
                .matcher
                .account_order_ids(account)
                .filter_map(|id| self.reservations.get(&id))
                .filter(|r| self.reserved_asset(r) == asset)
                .map(|r| i128::from(r.units))
                .sum();
            let withdrawals: i128 = self
                .withdrawals
                .values()
                .filter(|w| w.account == account && w.asset == asset)
                .map(|w| i128::from(w.amount_units))
                .sum();
            orders + withdrawals
        };
        self.ledger
            .check_cells(self.ledger.changed(), reserved)
            .map_err(InvariantViolation::Ledger)?;
        if self.reservations.len() != self.matcher.orders_open() {
            return Err(InvariantViolation::Reservations {
                reservations: self.reservations.len(),
                orders_open: self.matcher.orders_open(),
            });
        }
        let order_events = events.iter().filter_map(|e| match e {
            ExchangeEvent::Order(event) => Some(event),
            _ => None,
        });
        self.matcher
            .check_after(order_events)
            .map_err(InvariantViolation::Book)
    }

    /// What an order still has reserved, if it is open.
    pub fn reserved_units(&self, order_id: OrderId) -> Option<AmountUnits> {
        self.reservations.get(&order_id).map(|r| r.units)
    }

    pub fn withdrawals_pending(&self) -> usize {
        self.withdrawals.len()
    }
}

fn market(ledger: &Ledger, spec: &InstrumentSpec) -> Result<Market, ConfigError> {
    let asset = |code: &str| {
        ledger
            .asset_by_code(code)
            .ok_or_else(|| ConfigError::UnknownAsset {
                instrument: spec.symbol.clone(),
                code: code.into(),
            })
    };
    let (base, quote) = (asset(&spec.base)?, asset(&spec.quote)?);
    spec.validate().map_err(|e| ConfigError::Instrument {
        instrument: spec.symbol.clone(),
        error: format!("{e:?}"),
    })?;
    let base_decimals = ledger.asset(base).expect("found").decimals;
    let quote_decimals = ledger.asset(quote).expect("found").decimals;
    let lot_units = Ratio::from_decimal(spec.lot_size, base_decimals)
        .and_then(Ratio::whole)
        .map_err(|_| ConfigError::LotNotWhole {
            instrument: spec.symbol.clone(),
        })?;
    let quote_per_tick_lot = Ratio::from_decimal(spec.tick_size, quote_decimals)
        .and_then(|tick| tick.times(Ratio::from_decimal(spec.lot_size, 0)?))
        .map_err(|e| ConfigError::Instrument {
            instrument: spec.symbol.clone(),
            error: format!("tick size × lot size: {e:?}"),
        })?;
    Ok(Market {
        base,
        quote,
        lot_units,
        quote_per_tick_lot,
        fee_maker_ppm: spec.fee_maker_ppm,
        fee_taker_ppm: spec.fee_taker_ppm,
    })
}

fn command_account(command: &Command) -> Option<AccountId> {
    match *command {
        Command::NewOrder(order) => Some(order.account),
        Command::Cancel { account, .. }
        | Command::Replace { account, .. }
        | Command::MassCancel { account, .. }
        | Command::SetSelfTradePrevention { account, .. } => Some(account),
        Command::Halt { .. } | Command::Resume { .. } => None,
    }
}

fn reject_of(command: &Command, reason: RejectReason) -> Event {
    match *command {
        Command::NewOrder(order) => Event::Rejected {
            account: order.account,
            client_order_id: Some(order.client_order_id),
            order: None,
            reason,
        },
        Command::Replace {
            account,
            order,
            client_order_id_new,
            ..
        } => Event::Rejected {
            account,
            client_order_id: client_order_id_new,
            order: Some(order),
            reason,
        },
        _ => unreachable!("only new orders and replaces are checked before matching"),
    }
}

pub(crate) fn reject(
    out: &mut Vec<ExchangeEvent>,
    account: Option<AccountId>,
    reason: RejectReason,
) {
    out.push(ExchangeEvent::Rejected { account, reason });
}
