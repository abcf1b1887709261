//! The matching core: every book, the order arena and the indices, and the rules that turn one
//! command into events.
//!
//! Validation of a new order runs in this order, and the first failing check decides the reason:
//! instrument, account, halt, quantity (positive, minimum, maximum), prices (for a stop-limit the
//! stop price first — positive, not too high, not already reached — then the limit price; a limit
//! price must be positive, not too high and inside the band), time in force (post-only needs GTC),
//! duplicate client order id, post-only crossing, capacity (arena, account, stop list, level).
//!
//! Room for a replace is judged before the order moves: when its side already has its maximum
//! number of levels, a replace to a price with no level is refused `BookFull`, even if the order
//! is alone on its old level. Cautious, and simple to reason about.
//!
//! Stops: after a command's own matching, while the last trade price reaches a waiting stop, the
//! first such stop is triggered and executed in full (with whatever it trades) before looking again.
//! Buy stops are looked at before sell stops; among buy stops the lowest stop price goes first,
//! among sell stops the highest, and equal stop prices go by order id. A triggered stop-market
//! executes inside both the band around the reference and the band around its own stop price, so
//! that a gap through the stop cannot fill it further away than the band (and a buyer's funds,
//! reserved at placement, always cover it).

use crate::book::*;
use crate::command::*;
use crate::error::RejectReason;
use crate::event::*;
use crate::instrument::{InstrumentSpec, PRICE_TICKS_MAX};
use crate::table::Table;
use crate::types::*;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineConfig {
    /// Open orders (resting and stop) across all books.
    pub orders_max: u32,
    pub levels_per_side_max: u32,
    pub stops_per_side_max: u32,
    /// Account ids are `0..accounts_max`.
    pub accounts_max: u32,
    pub orders_open_per_account_max: u32,
    /// Check every book invariant after every command (on in debug builds and tests).
    pub check_invariants: bool,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            orders_max: 1 << 20,
            levels_per_side_max: 1 << 16,
            stops_per_side_max: 1 << 14,
            accounts_max: 1 << 16,
            orders_open_per_account_max: 1 << 12,
            check_invariants: cfg!(debug_assertions),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Trading {
    Open,
    Halted,
}

pub(crate) struct Book {
    pub spec: InstrumentSpec,
    pub bids: Ladder,
    pub asks: Ladder,
    pub stops_buy: StopList,
    pub stops_sell: StopList,
    pub last_ticks: Option<PriceTicks>,
    pub trading: Trading,
}

impl Book {
    fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn ladder_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn stops_mut(&mut self, side: Side) -> &mut StopList {
        match side {
            Side::Buy => &mut self.stops_buy,
            Side::Sell => &mut self.stops_sell,
        }
    }

    /// The last trade price, or the configured reference before the first trade.
    pub fn reference_ticks(&self) -> PriceTicks {
        self.last_ticks.unwrap_or(self.spec.price_ticks_reference)
    }

    fn in_band(&self, price_ticks: PriceTicks) -> bool {
        let (low, high) = self.spec.band(self.reference_ticks());
        price_ticks >= low && price_ticks <= high
    }

    /// True when a limit at `price_ticks` on `side` would trade against the opposite best.
    fn would_take(&self, side: Side, price_ticks: PriceTicks) -> bool {
        self.ladder(side.opposite())
            .best()
            .is_some_and(|best| side.crosses(price_ticks, best.price_ticks))
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct AccountOrders {
    head: u32,
    count: u32,
    stp: SelfTradePrevention,
}

/// An order while it executes against the book.
#[derive(Clone, Copy, Debug)]
struct Taker {
    order_id: OrderId,
    account: AccountId,
    instrument: InstrumentId,
    client_order_id: ClientOrderId,
    side: Side,
    kind: OrderKind,
    limit_ticks: PriceTicks,
    qty_open: QtyLots,
    tif: TimeInForce,
    stp: SelfTradePrevention,
    /// The arena slot a replaced order keeps while it executes (it stays in the indices and its
    /// account's list, off any level); `None` for a new or triggered order.
    slot: Option<u32>,
}

/// A read-only view of an open order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderView {
    pub order_id: OrderId,
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub client_order_id: ClientOrderId,
    pub side: Side,
    pub kind: OrderKind,
    pub price_ticks: PriceTicks,
    pub qty_open: QtyLots,
    pub stp: SelfTradePrevention,
    pub waiting: Waiting,
}

/// Where an open order waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    Book,
    Stop,
}

/// A broken book invariant, found by [`Matcher::check_invariants`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BookViolation {
    Crossed {
        instrument: InstrumentId,
        bid_ticks: PriceTicks,
        ask_ticks: PriceTicks,
    },
    LevelsNotSorted {
        instrument: InstrumentId,
        side: Side,
    },
    LevelTotal {
        instrument: InstrumentId,
        side: Side,
        price_ticks: PriceTicks,
        recorded: QtyLots,
        summed: QtyLots,
    },
    LevelCount {
        instrument: InstrumentId,
        side: Side,
        price_ticks: PriceTicks,
        recorded: u32,
        counted: u32,
    },
    OrderMisplaced {
        order_id: OrderId,
    },
    OrderNotPositive {
        order_id: OrderId,
    },
    IndexMismatch {
        indexed: usize,
        open: usize,
    },
    StopsNotSorted {
        instrument: InstrumentId,
        side: Side,
    },
    /// The ladder's count of levels with orders disagrees with its levels.
    LiveLevels {
        instrument: InstrumentId,
        side: Side,
        recorded: usize,
        counted: usize,
    },
    /// The best level (the last of its ladder) has no orders.
    BestLevelEmpty {
        instrument: InstrumentId,
        side: Side,
    },
}

pub struct Matcher {
    config: EngineConfig,
    books: Vec<Book>,
    arena: Arena,
    by_id: Table<OrderId, u32>,
    by_client: Table<(AccountId, ClientOrderId), u32>,
    accounts: Vec<AccountOrders>,
    order_id_next: OrderId,
    /// Preallocated room for mass cancel's sorted id list.
    scratch: Vec<(OrderId, u32)>,
}

impl Matcher {
    pub fn new(config: EngineConfig, instruments: Vec<InstrumentSpec>) -> Matcher {
        for spec in &instruments {
            spec.validate()
                .unwrap_or_else(|e| panic!("instrument {}: {e:?}", spec.symbol));
        }
        let levels_max = config.levels_per_side_max as usize;
        let stops_max = config.stops_per_side_max as usize;
        let books = instruments
            .into_iter()
            .map(|spec| Book {
                spec,
                bids: Ladder::new(Side::Buy, levels_max),
                asks: Ladder::new(Side::Sell, levels_max),
                stops_buy: StopList::new(Side::Buy, stops_max),
                stops_sell: StopList::new(Side::Sell, stops_max),
                last_ticks: None,
                trading: Trading::Open,
            })
            .collect();
        let orders_max = config.orders_max as usize;
        let account = AccountOrders {
            head: NIL,
            ..AccountOrders::default()
        };
        Matcher {
            arena: Arena::new(config.orders_max),
            by_id: Table::new(orders_max),
            by_client: Table::new(orders_max),
            accounts: vec![account; config.accounts_max as usize],
            order_id_next: 1,
            scratch: Vec::with_capacity(config.orders_open_per_account_max as usize),
            books,
            config,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Applies one sequenced command, appending its events to `out`. Deterministic: the events
    /// depend only on the state and the command.
    pub fn apply(&mut self, record: &Sequenced, out: &mut Vec<Event>) {
        let first = out.len();
        match record.command {
            Command::NewOrder(order) => self.new_order(&order, out),
            Command::Cancel { account, order } => self.cancel(account, order, out),
            Command::Replace {
                account,
                order,
                price_ticks,
                qty_lots,
                client_order_id_new,
            } => self.replace(
                account,
                order,
                price_ticks,
                qty_lots,
                client_order_id_new,
                out,
            ),
            Command::MassCancel {
                account,
                instrument,
                side,
            } => self.mass_cancel(account, instrument, side, out),
            Command::SetSelfTradePrevention { account, stp } => self.set_stp(account, stp, out),
            Command::Halt { instrument } => self.set_trading(instrument, Trading::Halted, out),
            Command::Resume { instrument } => self.set_trading(instrument, Trading::Open, out),
        }
        assert!(
            out.len() > first,
            "command at seq {} produced no event",
            record.seq
        );
        if self.config.check_invariants {
            if let Err(violation) = self.check_invariants() {
                panic!("book invariant broken at seq {}: {violation:?}", record.seq);
            }
        }
    }

    // ---------------------------------------------------------------- new orders

    fn new_order(&mut self, order: &NewOrder, out: &mut Vec<Event>) {
        let reject = |reason| Event::Rejected {
            account: order.account,
            client_order_id: Some(order.client_order_id),
            order: None,
            reason,
        };
        if let Err(reason) = self.validate_new(order) {
            out.push(reject(reason));
            return;
        }
        let order_id = self.order_id_next;
        self.order_id_next += 1;
        let stp = order
            .stp
            .unwrap_or(self.accounts[order.account as usize].stp);
        out.push(Event::Accepted {
            order_id,
            account: order.account,
            instrument: order.instrument,
            client_order_id: order.client_order_id,
            side: order.side,
            kind: order.kind,
            qty_lots: order.qty_lots,
            stp,
        });
        let (limit_ticks, tif) = match order.kind {
            OrderKind::Limit {
                price_ticks, tif, ..
            } => (price_ticks, tif),
            OrderKind::Market => (0, TimeInForce::Ioc),
            OrderKind::StopMarket { stop_ticks } | OrderKind::StopLimit { stop_ticks, .. } => {
                self.park_stop(order, order_id, stop_ticks, stp);
                return;
            }
        };
        let taker = Taker {
            order_id,
            account: order.account,
            instrument: order.instrument,
            client_order_id: order.client_order_id,
            side: order.side,
            kind: order.kind,
            limit_ticks,
            qty_open: order.qty_lots,
            tif,
            stp,
            slot: None,
        };
        self.execute(taker, out);
        self.run_stops(order.instrument, out);
    }

    /// Whether `order` would be accepted now, without changing anything (the exchange asks before
    /// it reserves funds).
    pub fn check_new(&self, order: &NewOrder) -> Result<(), RejectReason> {
        self.validate_new(order)
    }

    /// Whether a replace would be accepted now; on success, the order it would change.
    pub fn check_replace(
        &self,
        account: AccountId,
        order: OrderRef,
        price_ticks: PriceTicks,
        qty_lots: QtyLots,
        client_order_id_new: Option<ClientOrderId>,
    ) -> Result<OrderView, RejectReason> {
        let slot = self.lookup(account, order)?;
        self.validate_replace(slot, price_ticks, qty_lots, client_order_id_new)?;
        Ok(self.view(slot))
    }

    /// The price limit a market order (`stop_ticks: None`) or a stop-market order gets: the band
    /// edge around the reference, and for a stop-market also within the band around its stop, so
    /// that a gap through the stop cannot fill it further away than the band.
    pub fn market_limit(
        &self,
        instrument: InstrumentId,
        side: Side,
        stop_ticks: Option<PriceTicks>,
    ) -> PriceTicks {
        let book = &self.books[instrument as usize];
        let (low, high) = book.spec.band(book.reference_ticks());
        let (stop_low, stop_high) = stop_ticks.map_or((low, high), |stop| book.spec.band(stop));
        match side {
            Side::Buy => high.min(stop_high),
            Side::Sell => low.max(stop_low),
        }
    }

    /// Journaled like any other command by the exchange; the matcher only keeps the spec true.
    pub fn set_house_policy(
        &mut self,
        instrument: InstrumentId,
        policy: crate::instrument::HousePolicy,
    ) {
        self.books[instrument as usize].spec.house_policy = policy;
    }

    fn validate_new(&self, order: &NewOrder) -> Result<(), RejectReason> {
        let book = self
            .books
            .get(order.instrument as usize)
            .ok_or(RejectReason::UnknownInstrument)?;
        if order.account >= self.config.accounts_max {
            return Err(RejectReason::UnknownAccount);
        }
        if book.trading == Trading::Halted {
            return Err(RejectReason::InstrumentHalted);
        }
        validate_qty(&book.spec, order.qty_lots)?;
        match order.kind {
            OrderKind::Limit {
                price_ticks,
                tif,
                post_only,
            } => {
                validate_price(book, price_ticks)?;
                if post_only == PostOnly::Yes && tif != TimeInForce::Gtc {
                    return Err(RejectReason::InvalidTimeInForce);
                }
            }
            OrderKind::Market => {}
            OrderKind::StopMarket { stop_ticks } => {
                validate_stop(book, order.side, stop_ticks)?;
            }
            OrderKind::StopLimit {
                stop_ticks,
                price_ticks,
                ..
            } => {
                validate_stop(book, order.side, stop_ticks)?;
                validate_price(book, price_ticks)?;
            }
        }
        if self
            .by_client
            .contains_key(&(order.account, order.client_order_id))
        {
            return Err(RejectReason::DuplicateClientOrderId);
        }
        if let OrderKind::Limit {
            price_ticks,
            post_only: PostOnly::Yes,
            ..
        } = order.kind
        {
            if book.would_take(order.side, price_ticks) {
                return Err(RejectReason::PostOnlyWouldTake);
            }
        }
        self.validate_capacity(book, order)
    }

    fn validate_capacity(&self, book: &Book, order: &NewOrder) -> Result<(), RejectReason> {
        let may_rest = match order.kind {
            OrderKind::Limit { tif, .. } => tif == TimeInForce::Gtc,
            OrderKind::Market => false,
            OrderKind::StopMarket { .. } | OrderKind::StopLimit { .. } => true,
        };
        if !may_rest {
            return Ok(());
        }
        if self.arena.is_full() {
            return Err(RejectReason::OrdersFull);
        }
        if self.accounts[order.account as usize].count >= self.config.orders_open_per_account_max {
            return Err(RejectReason::TooManyOpenOrders);
        }
        match order.kind {
            OrderKind::Limit { price_ticks, .. } => {
                if !book.ladder(order.side).has_room_for(price_ticks) {
                    return Err(RejectReason::BookFull);
                }
            }
            _ => {
                let stops = match order.side {
                    Side::Buy => &book.stops_buy,
                    Side::Sell => &book.stops_sell,
                };
                if stops.is_full() {
                    return Err(RejectReason::StopsFull);
                }
            }
        }
        Ok(())
    }

    fn park_stop(
        &mut self,
        order: &NewOrder,
        order_id: OrderId,
        stop_ticks: PriceTicks,
        stp: SelfTradePrevention,
    ) {
        let price_ticks = match order.kind {
            OrderKind::StopLimit { price_ticks, .. } => price_ticks,
            _ => 0,
        };
        let slot = self.open_order(Order {
            id: order_id,
            account: order.account,
            instrument: order.instrument,
            client_order_id: order.client_order_id,
            side: order.side,
            price_ticks,
            qty_open: order.qty_lots,
            kind: order.kind,
            stp,
            state: SlotState::Stop,
            prev: NIL,
            next: NIL,
            account_prev: NIL,
            account_next: NIL,
        });
        self.books[order.instrument as usize]
            .stops_mut(order.side)
            .insert(StopEntry {
                stop_ticks,
                order_id,
                slot,
            });
    }

    // ---------------------------------------------------------------- execution

    /// Matches `taker` against the book, then rests or expires what is left.
    fn execute(&mut self, mut taker: Taker, out: &mut Vec<Event>) {
        // Market orders never sweep the book: they are limited to the band.
        match taker.kind {
            OrderKind::Market => {
                taker.limit_ticks = self.market_limit(taker.instrument, taker.side, None);
            }
            OrderKind::StopMarket { stop_ticks } => {
                taker.limit_ticks =
                    self.market_limit(taker.instrument, taker.side, Some(stop_ticks));
            }
            _ => {}
        }
        if taker.tif == TimeInForce::Fok && !self.fok_fillable(&taker) {
            out.push(expired(&taker));
            self.release_detached(&taker);
            return;
        }
        self.match_taker(&mut taker, out);
        if taker.qty_open == 0 {
            self.release_detached(&taker);
            return;
        }
        match taker.tif {
            TimeInForce::Gtc => self.rest(&taker, out),
            TimeInForce::Ioc | TimeInForce::Fok => {
                out.push(expired(&taker));
                self.release_detached(&taker);
            }
        }
    }

    /// A replaced order that ends without resting gives its slot back.
    fn release_detached(&mut self, taker: &Taker) {
        if let Some(slot) = taker.slot {
            self.close_order(slot);
        }
    }

    /// Whether a FOK order can trade in full now. Resting orders of the same account count as
    /// nothing: under cancel-resting they are skipped (and cancelled when it executes), under every
    /// other mode reaching one ends the taker's fill.
    fn fok_fillable(&self, taker: &Taker) -> bool {
        let ladder = self.books[taker.instrument as usize].ladder(taker.side.opposite());
        let mut available: QtyLots = 0;
        for level in ladder.levels.iter().rev() {
            if !taker.side.crosses(taker.limit_ticks, level.price_ticks) {
                break;
            }
            let mut slot = level.head;
            while slot != NIL {
                let maker = self.arena.get(slot);
                if maker.account != taker.account {
                    available += maker.qty_open;
                } else if taker.stp != SelfTradePrevention::CancelResting {
                    return false;
                }
                if available >= taker.qty_open {
                    return true;
                }
                slot = maker.next;
            }
        }
        false
    }

    fn match_taker(&mut self, taker: &mut Taker, out: &mut Vec<Event>) {
        let side_maker = taker.side.opposite();
        while taker.qty_open > 0 {
            let book = &mut self.books[taker.instrument as usize];
            let Some(level) = book.ladder(side_maker).best() else {
                break;
            };
            if !taker.side.crosses(taker.limit_ticks, level.price_ticks) {
                break;
            }
            let slot = level.head;
            let maker = *self.arena.get(slot);
            if maker.account == taker.account {
                if self.prevent_self_trade(taker, slot, out) == Flow::Stop {
                    break;
                }
                continue;
            }
            self.fill(taker, slot, out);
        }
    }

    fn fill(&mut self, taker: &mut Taker, slot: u32, out: &mut Vec<Event>) {
        let maker = *self.arena.get(slot);
        let qty_lots = taker.qty_open.min(maker.qty_open);
        debug_assert!(qty_lots > 0);
        taker.qty_open -= qty_lots;
        let maker_qty_open = maker.qty_open - qty_lots;
        out.push(Event::Fill {
            instrument: taker.instrument,
            maker_order_id: maker.id,
            taker_order_id: taker.order_id,
            maker_account: maker.account,
            taker_account: taker.account,
            price_ticks: maker.price_ticks,
            qty_lots,
            aggressor: taker.side,
            maker_qty_open,
            taker_qty_open: taker.qty_open,
        });
        let book = &mut self.books[taker.instrument as usize];
        book.last_ticks = Some(maker.price_ticks);
        if maker_qty_open == 0 {
            book.ladder_mut(maker.side).unlink(&mut self.arena, slot);
            self.close_order(slot);
        } else {
            let level = book
                .ladder_mut(maker.side)
                .best_mut()
                .expect("maker's level is the best");
            level.qty_lots -= qty_lots;
            self.arena.get_mut(slot).qty_open = maker_qty_open;
        }
    }

    /// The incoming order met a resting order of its own account: apply the taker's mode.
    fn prevent_self_trade(&mut self, taker: &mut Taker, slot: u32, out: &mut Vec<Event>) -> Flow {
        let maker_qty = self.arena.get(slot).qty_open;
        match taker.stp {
            SelfTradePrevention::CancelResting => {
                self.cancel_resting(slot, maker_qty, CancelReason::SelfTradePrevention, out);
                Flow::Continue
            }
            SelfTradePrevention::CancelIncoming => {
                cancel_incoming(taker, taker.qty_open, out);
                Flow::Stop
            }
            SelfTradePrevention::CancelBoth => {
                self.cancel_resting(slot, maker_qty, CancelReason::SelfTradePrevention, out);
                cancel_incoming(taker, taker.qty_open, out);
                Flow::Stop
            }
            SelfTradePrevention::DecrementAndCancel => {
                let qty_lots = maker_qty.min(taker.qty_open);
                self.cancel_resting(slot, qty_lots, CancelReason::SelfTradePrevention, out);
                cancel_incoming(taker, qty_lots, out);
                if taker.qty_open == 0 {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            }
        }
    }

    /// Puts the rest of `taker` on the book.
    fn rest(&mut self, taker: &Taker, out: &mut Vec<Event>) {
        let book = &self.books[taker.instrument as usize];
        let no_slot = taker.slot.is_none() && self.arena.is_full();
        if !book.ladder(taker.side).has_room_for(taker.limit_ticks) || no_slot {
            // Only a triggered stop-limit can get here: new orders and replaces check capacity
            // before they execute.
            out.push(Event::Cancelled {
                order_id: taker.order_id,
                account: taker.account,
                instrument: taker.instrument,
                side: taker.side,
                price_ticks: taker.limit_ticks,
                qty_lots: taker.qty_open,
                qty_open: 0,
                reason: CancelReason::BookFull,
                origin: Origin::Incoming,
            });
            self.release_detached(taker);
            return;
        }
        let slot = match taker.slot {
            Some(slot) => {
                let order = self.arena.get_mut(slot);
                debug_assert_eq!(order.id, taker.order_id);
                order.price_ticks = taker.limit_ticks;
                order.qty_open = taker.qty_open;
                order.kind = taker.kind;
                order.state = SlotState::Resting;
                slot
            }
            None => self.open_order(Order {
                id: taker.order_id,
                account: taker.account,
                instrument: taker.instrument,
                client_order_id: taker.client_order_id,
                side: taker.side,
                price_ticks: taker.limit_ticks,
                qty_open: taker.qty_open,
                kind: taker.kind,
                stp: taker.stp,
                state: SlotState::Resting,
                prev: NIL,
                next: NIL,
                account_prev: NIL,
                account_next: NIL,
            }),
        };
        let book = &mut self.books[taker.instrument as usize];
        book.ladder_mut(taker.side).push(&mut self.arena, slot);
        out.push(Event::Rested {
            order_id: taker.order_id,
            account: taker.account,
            instrument: taker.instrument,
            side: taker.side,
            price_ticks: taker.limit_ticks,
            qty_lots: taker.qty_open,
        });
    }

    /// Triggers waiting stops while the last trade price reaches one (see the module doc).
    fn run_stops(&mut self, instrument: InstrumentId, out: &mut Vec<Event>) {
        loop {
            let book = &self.books[instrument as usize];
            let Some(last_ticks) = book.last_ticks else {
                return;
            };
            let entry = match book.stops_buy.first_triggered(last_ticks) {
                Some(entry) => entry,
                None => match book.stops_sell.first_triggered(last_ticks) {
                    Some(entry) => entry,
                    None => return,
                },
            };
            self.trigger(entry, last_ticks, out);
        }
    }

    fn trigger(&mut self, entry: StopEntry, last_ticks: PriceTicks, out: &mut Vec<Event>) {
        let order = *self.arena.get(entry.slot);
        debug_assert_eq!(order.state, SlotState::Stop);
        let book = &mut self.books[order.instrument as usize];
        book.stops_mut(order.side)
            .remove(entry.stop_ticks, entry.order_id);
        self.close_order(entry.slot);
        out.push(Event::Triggered {
            order_id: order.id,
            account: order.account,
            instrument: order.instrument,
            side: order.side,
            stop_ticks: entry.stop_ticks,
            last_ticks,
        });
        let (kind, tif) = match order.kind {
            // Keeps its kind: it executes inside the band around its stop as well (`market_limit`).
            OrderKind::StopMarket { .. } => (order.kind, TimeInForce::Ioc),
            OrderKind::StopLimit {
                price_ticks, tif, ..
            } => (OrderKind::limit(price_ticks, tif), tif),
            _ => unreachable!("only stop orders wait for a trigger"),
        };
        if let OrderKind::Limit { price_ticks, .. } = kind {
            if !self.books[order.instrument as usize].in_band(price_ticks) {
                out.push(Event::Cancelled {
                    order_id: order.id,
                    account: order.account,
                    instrument: order.instrument,
                    side: order.side,
                    price_ticks,
                    qty_lots: order.qty_open,
                    qty_open: 0,
                    reason: CancelReason::OutsidePriceBand,
                    origin: Origin::Incoming,
                });
                return;
            }
        }
        let taker = Taker {
            order_id: order.id,
            account: order.account,
            instrument: order.instrument,
            client_order_id: order.client_order_id,
            side: order.side,
            kind,
            limit_ticks: order.price_ticks,
            qty_open: order.qty_open,
            tif,
            stp: order.stp,
            slot: None,
        };
        self.execute(taker, out);
    }

    // ---------------------------------------------------------------- cancel and replace

    fn cancel(&mut self, account: AccountId, order: OrderRef, out: &mut Vec<Event>) {
        let slot = match self.lookup(account, order) {
            Ok(slot) => slot,
            Err(reason) => {
                out.push(Event::Rejected {
                    account,
                    client_order_id: None,
                    order: Some(order),
                    reason,
                });
                return;
            }
        };
        self.cancel_open(slot, out);
    }

    /// Cancels an open order, resting or waiting for its stop, in full.
    fn cancel_open(&mut self, slot: u32, out: &mut Vec<Event>) {
        let order = *self.arena.get(slot);
        match order.state {
            SlotState::Resting => {
                self.cancel_resting(slot, order.qty_open, CancelReason::Requested, out)
            }
            SlotState::Stop => {
                let stop_ticks = match order.kind {
                    OrderKind::StopMarket { stop_ticks }
                    | OrderKind::StopLimit { stop_ticks, .. } => stop_ticks,
                    _ => unreachable!("a waiting stop has a stop kind"),
                };
                self.books[order.instrument as usize]
                    .stops_mut(order.side)
                    .remove(stop_ticks, order.id);
                self.close_order(slot);
                out.push(Event::Cancelled {
                    order_id: order.id,
                    account: order.account,
                    instrument: order.instrument,
                    side: order.side,
                    price_ticks: order.price_ticks,
                    qty_lots: order.qty_open,
                    qty_open: 0,
                    reason: CancelReason::Requested,
                    origin: Origin::Stops,
                });
            }
            SlotState::Free => unreachable!("lookup returns open orders only"),
        }
    }

    /// Removes `qty_lots` from a resting order; the order leaves the book when nothing remains.
    fn cancel_resting(
        &mut self,
        slot: u32,
        qty_lots: QtyLots,
        reason: CancelReason,
        out: &mut Vec<Event>,
    ) {
        let order = *self.arena.get(slot);
        debug_assert_eq!(order.state, SlotState::Resting);
        debug_assert!(qty_lots > 0 && qty_lots <= order.qty_open);
        let qty_open = order.qty_open - qty_lots;
        let ladder = self.books[order.instrument as usize].ladder_mut(order.side);
        if qty_open == 0 {
            ladder.unlink(&mut self.arena, slot);
            self.close_order(slot);
        } else {
            ladder.reduce(&mut self.arena, slot, qty_lots);
        }
        out.push(Event::Cancelled {
            order_id: order.id,
            account: order.account,
            instrument: order.instrument,
            side: order.side,
            price_ticks: order.price_ticks,
            qty_lots,
            qty_open,
            reason,
            origin: Origin::Book,
        });
    }

    fn replace(
        &mut self,
        account: AccountId,
        order_ref: OrderRef,
        price_ticks: PriceTicks,
        qty_lots: QtyLots,
        client_order_id_new: Option<ClientOrderId>,
        out: &mut Vec<Event>,
    ) {
        let checked = self.lookup(account, order_ref).and_then(|slot| {
            self.validate_replace(slot, price_ticks, qty_lots, client_order_id_new)
                .map(|()| slot)
        });
        let slot = match checked {
            Ok(slot) => slot,
            Err(reason) => {
                out.push(Event::Rejected {
                    account,
                    client_order_id: client_order_id_new,
                    order: Some(order_ref),
                    reason,
                });
                return;
            }
        };
        let order = *self.arena.get(slot);
        let client_order_id = client_order_id_new.unwrap_or(order.client_order_id);
        let priority = if price_ticks == order.price_ticks && qty_lots <= order.qty_open {
            Priority::Kept
        } else {
            Priority::Lost
        };
        out.push(Event::Replaced {
            order_id: order.id,
            account,
            instrument: order.instrument,
            side: order.side,
            client_order_id,
            price_ticks_old: order.price_ticks,
            qty_lots_old: order.qty_open,
            price_ticks_new: price_ticks,
            qty_lots_new: qty_lots,
            priority,
        });
        if priority == Priority::Kept {
            if qty_lots < order.qty_open {
                self.books[order.instrument as usize]
                    .ladder_mut(order.side)
                    .reduce(&mut self.arena, slot, order.qty_open - qty_lots);
            }
            if client_order_id != order.client_order_id {
                self.by_client.remove(&(account, order.client_order_id));
                self.by_client.insert((account, client_order_id), slot);
                self.arena.get_mut(slot).client_order_id = client_order_id;
            }
            return;
        }
        // The order keeps its slot, its ids and its place in its account's list while it executes
        // at the new price: only its level changes. Moves are most of a busy book's traffic.
        self.books[order.instrument as usize]
            .ladder_mut(order.side)
            .unlink(&mut self.arena, slot);
        if client_order_id != order.client_order_id {
            self.by_client.remove(&(account, order.client_order_id));
            self.by_client.insert((account, client_order_id), slot);
            self.arena.get_mut(slot).client_order_id = client_order_id;
        }
        let (tif, kind) = match order.kind {
            OrderKind::Limit { tif, post_only, .. } => (
                tif,
                OrderKind::Limit {
                    price_ticks,
                    tif,
                    post_only,
                },
            ),
            _ => unreachable!("only limit orders rest"),
        };
        let taker = Taker {
            order_id: order.id,
            account,
            instrument: order.instrument,
            client_order_id,
            side: order.side,
            kind,
            limit_ticks: price_ticks,
            qty_open: qty_lots,
            tif,
            stp: order.stp,
            slot: Some(slot),
        };
        self.execute(taker, out);
        self.run_stops(order.instrument, out);
    }

    fn validate_replace(
        &self,
        slot: u32,
        price_ticks: PriceTicks,
        qty_lots: QtyLots,
        client_order_id_new: Option<ClientOrderId>,
    ) -> Result<(), RejectReason> {
        let order = self.arena.get(slot);
        if order.state != SlotState::Resting {
            return Err(RejectReason::NotReplaceable);
        }
        let book = &self.books[order.instrument as usize];
        if book.trading == Trading::Halted {
            return Err(RejectReason::InstrumentHalted);
        }
        validate_qty(&book.spec, qty_lots)?;
        validate_price(book, price_ticks)?;
        if let Some(client_order_id) = client_order_id_new {
            if client_order_id != order.client_order_id
                && self
                    .by_client
                    .contains_key(&(order.account, client_order_id))
            {
                return Err(RejectReason::DuplicateClientOrderId);
            }
        }
        let post_only = matches!(
            order.kind,
            OrderKind::Limit {
                post_only: PostOnly::Yes,
                ..
            }
        );
        if post_only && book.would_take(order.side, price_ticks) {
            return Err(RejectReason::PostOnlyWouldTake);
        }
        if !book.ladder(order.side).has_room_for(price_ticks) {
            return Err(RejectReason::BookFull);
        }
        Ok(())
    }

    fn mass_cancel(
        &mut self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        side: Option<Side>,
        out: &mut Vec<Event>,
    ) {
        let unknown = instrument.is_some_and(|i| i as usize >= self.books.len());
        let reason = if account >= self.config.accounts_max {
            Some(RejectReason::UnknownAccount)
        } else if unknown {
            Some(RejectReason::UnknownInstrument)
        } else {
            None
        };
        if let Some(reason) = reason {
            out.push(Event::Rejected {
                account,
                client_order_id: None,
                order: None,
                reason,
            });
            return;
        }
        self.scratch.clear();
        let mut slot = self.accounts[account as usize].head;
        while slot != NIL {
            let order = self.arena.get(slot);
            let instrument_matches = instrument.is_none_or(|i| i == order.instrument);
            let side_matches = side.is_none_or(|s| s == order.side);
            if instrument_matches && side_matches {
                self.scratch.push((order.id, slot));
            }
            slot = order.account_next;
        }
        // The account list is in no useful order; events go by order id.
        self.scratch.sort_unstable();
        for i in 0..self.scratch.len() {
            let (_, slot) = self.scratch[i];
            self.cancel_open(slot, out);
        }
        out.push(Event::MassCancelled {
            account,
            instrument,
            side,
            count: self.scratch.len() as u32,
        });
    }

    fn set_stp(&mut self, account: AccountId, stp: SelfTradePrevention, out: &mut Vec<Event>) {
        if account >= self.config.accounts_max {
            out.push(Event::Rejected {
                account,
                client_order_id: None,
                order: None,
                reason: RejectReason::UnknownAccount,
            });
            return;
        }
        self.accounts[account as usize].stp = stp;
        out.push(Event::SelfTradePreventionSet { account, stp });
    }

    fn set_trading(&mut self, instrument: InstrumentId, trading: Trading, out: &mut Vec<Event>) {
        let Some(book) = self.books.get_mut(instrument as usize) else {
            out.push(Event::Rejected {
                account: AccountId::MAX,
                client_order_id: None,
                order: None,
                reason: RejectReason::UnknownInstrument,
            });
            return;
        };
        book.trading = trading;
        out.push(match trading {
            Trading::Halted => Event::Halted { instrument },
            Trading::Open => Event::Resumed { instrument },
        });
    }

    // ---------------------------------------------------------------- bookkeeping

    fn lookup(&self, account: AccountId, order: OrderRef) -> Result<u32, RejectReason> {
        match order {
            OrderRef::Id(order_id) => {
                let slot = *self
                    .by_id
                    .get(&order_id)
                    .ok_or(RejectReason::UnknownOrder)?;
                if self.arena.get(slot).account != account {
                    return Err(RejectReason::NotYourOrder);
                }
                Ok(slot)
            }
            OrderRef::Client(client_order_id) => self
                .by_client
                .get(&(account, client_order_id))
                .copied()
                .ok_or(RejectReason::UnknownOrder),
        }
    }

    /// Stores a new open order and links it into the indices and its account's list.
    fn open_order(&mut self, order: Order) -> u32 {
        let (id, account, client_order_id) = (order.id, order.account, order.client_order_id);
        let slot = self.arena.alloc(order);
        let head = self.accounts[account as usize].head;
        {
            let cell = self.arena.get_mut(slot);
            cell.account_prev = NIL;
            cell.account_next = head;
        }
        if head != NIL {
            self.arena.get_mut(head).account_prev = slot;
        }
        let entry = &mut self.accounts[account as usize];
        entry.head = slot;
        entry.count += 1;
        let fresh_id = self.by_id.insert(id, slot).is_none();
        let fresh_client = self
            .by_client
            .insert((account, client_order_id), slot)
            .is_none();
        debug_assert!(fresh_id, "order id {id} opened twice");
        debug_assert!(
            fresh_client,
            "client order id {client_order_id} opened twice"
        );
        slot
    }

    /// Removes a closed order from the indices and its account's list and frees its slot. The
    /// caller has already taken it off its level or stop list.
    fn close_order(&mut self, slot: u32) {
        let order = *self.arena.get(slot);
        if order.account_prev == NIL {
            self.accounts[order.account as usize].head = order.account_next;
        } else {
            self.arena.get_mut(order.account_prev).account_next = order.account_next;
        }
        if order.account_next != NIL {
            self.arena.get_mut(order.account_next).account_prev = order.account_prev;
        }
        self.accounts[order.account as usize].count -= 1;
        self.by_id.remove(&order.id);
        self.by_client
            .remove(&(order.account, order.client_order_id));
        self.arena.release(slot);
    }

    // ---------------------------------------------------------------- views

    pub fn instruments(&self) -> impl Iterator<Item = &InstrumentSpec> {
        self.books.iter().map(|book| &book.spec)
    }

    pub fn instrument(&self, instrument: InstrumentId) -> Option<&InstrumentSpec> {
        self.books.get(instrument as usize).map(|book| &book.spec)
    }

    /// Levels of one side, best first: `(price, total quantity, order count)`.
    pub fn levels(
        &self,
        instrument: InstrumentId,
        side: Side,
    ) -> impl Iterator<Item = (PriceTicks, QtyLots, u32)> + '_ {
        self.books[instrument as usize]
            .ladder(side)
            .live_levels()
            .rev()
            .map(|level| (level.price_ticks, level.qty_lots, level.count))
    }

    /// The orders of one level in time priority.
    pub fn level_orders(
        &self,
        instrument: InstrumentId,
        side: Side,
        price_ticks: PriceTicks,
    ) -> Vec<OrderView> {
        let ladder = self.books[instrument as usize].ladder(side);
        let Ok(index) = ladder.find(price_ticks) else {
            return Vec::new();
        };
        let mut views = Vec::new();
        let mut slot = ladder.levels[index].head;
        while slot != NIL {
            views.push(self.view(slot));
            slot = self.arena.get(slot).next;
        }
        views
    }

    pub fn best_bid(&self, instrument: InstrumentId) -> Option<PriceTicks> {
        self.books[instrument as usize]
            .bids
            .best()
            .map(|l| l.price_ticks)
    }

    pub fn best_ask(&self, instrument: InstrumentId) -> Option<PriceTicks> {
        self.books[instrument as usize]
            .asks
            .best()
            .map(|l| l.price_ticks)
    }

    pub fn last_price(&self, instrument: InstrumentId) -> Option<PriceTicks> {
        self.books[instrument as usize].last_ticks
    }

    pub fn reference_price(&self, instrument: InstrumentId) -> PriceTicks {
        self.books[instrument as usize].reference_ticks()
    }

    pub fn trading(&self, instrument: InstrumentId) -> Trading {
        self.books[instrument as usize].trading
    }

    pub fn order(&self, order_id: OrderId) -> Option<OrderView> {
        self.by_id.get(&order_id).map(|&slot| self.view(slot))
    }

    pub fn order_by_client(
        &self,
        account: AccountId,
        client_order_id: ClientOrderId,
    ) -> Option<OrderView> {
        self.by_client
            .get(&(account, client_order_id))
            .map(|&slot| self.view(slot))
    }

    /// Open orders (resting and stop) across all books.
    pub fn orders_open(&self) -> usize {
        self.arena.used as usize
    }

    pub fn account_orders_open(&self, account: AccountId) -> u32 {
        self.accounts.get(account as usize).map_or(0, |a| a.count)
    }

    /// The next order id the engine will assign.
    pub fn order_id_next(&self) -> OrderId {
        self.order_id_next
    }

    fn view(&self, slot: u32) -> OrderView {
        let order = self.arena.get(slot);
        OrderView {
            order_id: order.id,
            account: order.account,
            instrument: order.instrument,
            client_order_id: order.client_order_id,
            side: order.side,
            kind: order.kind,
            price_ticks: order.price_ticks,
            qty_open: order.qty_open,
            stp: order.stp,
            waiting: match order.state {
                SlotState::Resting => Waiting::Book,
                _ => Waiting::Stop,
            },
        }
    }

    // ---------------------------------------------------------------- snapshots

    /// The whole state in a canonical order: books in instrument order, each book's resting orders
    /// bids then asks, best level first and in time priority within a level, then its stops in
    /// trigger order. Restoring replays them in that order, which reproduces every priority.
    pub fn snapshot(&self) -> MatcherSnapshot {
        let books = self
            .books
            .iter()
            .map(|book| {
                let mut orders = Vec::new();
                for ladder in [&book.bids, &book.asks] {
                    for level in ladder.levels.iter().rev() {
                        let mut slot = level.head;
                        while slot != NIL {
                            orders.push(self.order_snapshot(slot));
                            slot = self.arena.get(slot).next;
                        }
                    }
                }
                let stops = book
                    .stops_buy
                    .entries
                    .iter()
                    .chain(book.stops_sell.entries.iter())
                    .map(|entry| self.order_snapshot(entry.slot))
                    .collect();
                BookSnapshot {
                    spec: book.spec.clone(),
                    last_ticks: book.last_ticks,
                    trading: book.trading,
                    orders,
                    stops,
                }
            })
            .collect();
        let stp_defaults = self
            .accounts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.stp != SelfTradePrevention::default())
            .map(|(i, a)| (i as AccountId, a.stp))
            .collect();
        MatcherSnapshot {
            order_id_next: self.order_id_next,
            books,
            stp_defaults,
        }
    }

    fn order_snapshot(&self, slot: u32) -> OrderSnapshot {
        let o = self.arena.get(slot);
        OrderSnapshot {
            order_id: o.id,
            account: o.account,
            client_order_id: o.client_order_id,
            side: o.side,
            price_ticks: o.price_ticks,
            qty_open: o.qty_open,
            kind: o.kind,
            stp: o.stp,
        }
    }

    /// Rebuilds a matcher from a snapshot taken by [`Matcher::snapshot`].
    pub fn restore(config: EngineConfig, snapshot: &MatcherSnapshot) -> Matcher {
        let specs = snapshot.books.iter().map(|b| b.spec.clone()).collect();
        let mut matcher = Matcher::new(config, specs);
        for (instrument, book) in snapshot.books.iter().enumerate() {
            for o in book.orders.iter().chain(book.stops.iter()) {
                let state = if o.kind.is_stop() {
                    SlotState::Stop
                } else {
                    SlotState::Resting
                };
                let slot = matcher.open_order(Order {
                    id: o.order_id,
                    account: o.account,
                    instrument: instrument as InstrumentId,
                    client_order_id: o.client_order_id,
                    side: o.side,
                    price_ticks: o.price_ticks,
                    qty_open: o.qty_open,
                    kind: o.kind,
                    stp: o.stp,
                    state,
                    prev: NIL,
                    next: NIL,
                    account_prev: NIL,
                    account_next: NIL,
                });
                let target = &mut matcher.books[instrument];
                match o.kind {
                    OrderKind::StopMarket { stop_ticks }
                    | OrderKind::StopLimit { stop_ticks, .. } => {
                        target.stops_mut(o.side).insert(StopEntry {
                            stop_ticks,
                            order_id: o.order_id,
                            slot,
                        })
                    }
                    _ => target.ladder_mut(o.side).push(&mut matcher.arena, slot),
                }
            }
            let target = &mut matcher.books[instrument];
            target.last_ticks = book.last_ticks;
            target.trading = book.trading;
        }
        for &(account, stp) in &snapshot.stp_defaults {
            matcher.accounts[account as usize].stp = stp;
        }
        matcher.order_id_next = snapshot.order_id_next;
        matcher
    }

    /// The ids of an account's open orders, in no particular order.
    pub fn account_order_ids(&self, account: AccountId) -> impl Iterator<Item = OrderId> + '_ {
        let mut slot = self.accounts.get(account as usize).map_or(NIL, |a| a.head);
        std::iter::from_fn(move || {
            if slot == NIL {
                return None;
            }
            let order = self.arena.get(slot);
            slot = order.account_next;
            Some(order.id)
        })
    }

    // ---------------------------------------------------------------- invariants

    /// The invariants a command's events can have touched: each changed level (total, count,
    /// links, sort order around it), each touched book not crossed, its stop lists, and the
    /// indices agreeing on the number of open orders. Given that they all held before the
    /// command, they all hold after it; O(changed levels), where the full check is O(book).
    pub fn check_after<'a>(
        &self,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<(), BookViolation> {
        let open = self.arena.used as usize;
        if self.by_id.len() != open || self.by_client.len() != open {
            return Err(BookViolation::IndexMismatch {
                indexed: self.by_id.len(),
                open,
            });
        }
        let mut instruments: [Option<InstrumentId>; 4] = [None; 4];
        let mut many = false;
        for event in events {
            let instrument = match *event {
                Event::Accepted { instrument, .. }
                | Event::Fill { instrument, .. }
                | Event::Rested { instrument, .. }
                | Event::Cancelled { instrument, .. }
                | Event::Replaced { instrument, .. }
                | Event::Expired { instrument, .. }
                | Event::Triggered { instrument, .. } => instrument,
                _ => continue,
            };
            if !instruments.contains(&Some(instrument)) {
                match instruments.iter_mut().find(|i| i.is_none()) {
                    Some(free) => *free = Some(instrument),
                    None => many = true,
                }
            }
            if let Some(delta) = event.level_delta() {
                self.check_level(delta.instrument, delta.side, delta.price_ticks)?;
            }
            if let Event::Replaced {
                instrument,
                side,
                price_ticks_new,
                ..
            } = *event
            {
                self.check_level(instrument, side, price_ticks_new)?;
            }
        }
        if many {
            return self.check_invariants();
        }
        for instrument in instruments.into_iter().flatten() {
            self.check_book_edges(instrument)?;
        }
        Ok(())
    }

    /// One level, if it exists: its neighbours in order, its orders summed, counted and linked.
    fn check_level(
        &self,
        instrument: InstrumentId,
        side: Side,
        price_ticks: PriceTicks,
    ) -> Result<(), BookViolation> {
        let ladder = self.books[instrument as usize].ladder(side);
        let Ok(index) = ladder.find(price_ticks) else {
            return Ok(());
        };
        let lo = index.saturating_sub(1);
        let hi = (index + 2).min(ladder.levels.len());
        let sorted = ladder.levels[lo..hi].windows(2).all(|w| {
            side.crosses(w[1].price_ticks, w[0].price_ticks) && w[0].price_ticks != w[1].price_ticks
        });
        if !sorted {
            return Err(BookViolation::LevelsNotSorted { instrument, side });
        }
        self.check_level_orders(instrument, side, &ladder.levels[index])
            .map(|_| ())
    }

    fn check_book_edges(&self, instrument: InstrumentId) -> Result<(), BookViolation> {
        let book = &self.books[instrument as usize];
        if let (Some(bid), Some(ask)) = (book.bids.best(), book.asks.best()) {
            if bid.price_ticks >= ask.price_ticks {
                return Err(BookViolation::Crossed {
                    instrument,
                    bid_ticks: bid.price_ticks,
                    ask_ticks: ask.price_ticks,
                });
            }
        }
        for ladder in [&book.bids, &book.asks] {
            check_best(instrument, ladder)?;
        }
        for stops in [&book.stops_buy, &book.stops_sell] {
            self.check_stops(instrument, stops)?;
        }
        Ok(())
    }

    /// Checks every structural invariant of every book; O(open orders).
    pub fn check_invariants(&self) -> Result<(), BookViolation> {
        let mut counted = 0usize;
        for (instrument, book) in self.books.iter().enumerate() {
            let instrument = instrument as InstrumentId;
            if let (Some(bid), Some(ask)) = (book.bids.best(), book.asks.best()) {
                if bid.price_ticks >= ask.price_ticks {
                    return Err(BookViolation::Crossed {
                        instrument,
                        bid_ticks: bid.price_ticks,
                        ask_ticks: ask.price_ticks,
                    });
                }
            }
            for ladder in [&book.bids, &book.asks] {
                check_best(instrument, ladder)?;
                counted += self.check_ladder(instrument, ladder)?;
            }
            for stops in [&book.stops_buy, &book.stops_sell] {
                counted += self.check_stops(instrument, stops)?;
            }
        }
        let open = self.arena.used as usize;
        if counted != open || self.by_id.len() != open || self.by_client.len() != open {
            return Err(BookViolation::IndexMismatch {
                indexed: self.by_id.len(),
                open,
            });
        }
        Ok(())
    }

    fn check_ladder(
        &self,
        instrument: InstrumentId,
        ladder: &Ladder,
    ) -> Result<usize, BookViolation> {
        let side = ladder.side;
        let sorted = ladder.levels.windows(2).all(|w| {
            side.crosses(w[1].price_ticks, w[0].price_ticks) && w[0].price_ticks != w[1].price_ticks
        });
        if !sorted {
            return Err(BookViolation::LevelsNotSorted { instrument, side });
        }
        let counted = ladder.live_levels().count();
        if counted != ladder.live {
            return Err(BookViolation::LiveLevels {
                instrument,
                side,
                recorded: ladder.live,
                counted,
            });
        }
        let mut orders = 0;
        for level in &ladder.levels {
            orders += self.check_level_orders(instrument, side, level)? as usize;
        }
        Ok(orders)
    }

    /// One level's orders: placed on it, positive, linked both ways, summing to its total and
    /// counting to its count (an empty level has none, no links and no quantity).
    fn check_level_orders(
        &self,
        instrument: InstrumentId,
        side: Side,
        level: &Level,
    ) -> Result<u32, BookViolation> {
        let (mut summed, mut counted) = (0, 0u32);
        let mut slot = level.head;
        let mut prev = NIL;
        while slot != NIL {
            let order = self.arena.get(slot);
            let placed = order.state == SlotState::Resting
                && order.side == side
                && order.instrument == instrument
                && order.price_ticks == level.price_ticks
                && order.prev == prev
                && self.by_id.get(&order.id) == Some(&slot);
            if !placed {
                return Err(BookViolation::OrderMisplaced { order_id: order.id });
            }
            if order.qty_open <= 0 {
                return Err(BookViolation::OrderNotPositive { order_id: order.id });
            }
            summed += order.qty_open;
            counted += 1;
            prev = slot;
            slot = order.next;
        }
        if summed != level.qty_lots {
            return Err(BookViolation::LevelTotal {
                instrument,
                side,
                price_ticks: level.price_ticks,
                recorded: level.qty_lots,
                summed,
            });
        }
        // An empty level (count 0, no links) may wait behind the best; `check_best` and
        // `check_ladder` hold the rest of that rule.
        if counted != level.count || level.tail != prev {
            return Err(BookViolation::LevelCount {
                instrument,
                side,
                price_ticks: level.price_ticks,
                recorded: level.count,
                counted,
            });
        }
        Ok(counted)
    }

    fn check_stops(
        &self,
        instrument: InstrumentId,
        stops: &StopList,
    ) -> Result<usize, BookViolation> {
        let side = stops.side;
        let in_order = stops.entries.windows(2).all(|w| {
            let (a, b) = (w[0], w[1]);
            match side {
                Side::Buy => (a.stop_ticks, a.order_id) < (b.stop_ticks, b.order_id),
                Side::Sell => (-a.stop_ticks, a.order_id) < (-b.stop_ticks, b.order_id),
            }
        });
        if !in_order {
            return Err(BookViolation::StopsNotSorted { instrument, side });
        }
        for entry in &stops.entries {
            let order = self.arena.get(entry.slot);
            if order.state != SlotState::Stop || order.id != entry.order_id || order.side != side {
                return Err(BookViolation::OrderMisplaced {
                    order_id: entry.order_id,
                });
            }
        }
        Ok(stops.entries.len())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MatcherSnapshot {
    pub order_id_next: OrderId,
    pub books: Vec<BookSnapshot>,
    /// Accounts whose self-trade prevention default is not the default, ascending.
    pub stp_defaults: Vec<(AccountId, SelfTradePrevention)>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BookSnapshot {
    pub spec: InstrumentSpec,
    pub last_ticks: Option<PriceTicks>,
    pub trading: Trading,
    /// Resting orders: bids then asks, best level first, time priority within a level.
    pub orders: Vec<OrderSnapshot>,
    /// Waiting stops: buy stops then sell stops, each in trigger order.
    pub stops: Vec<OrderSnapshot>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderSnapshot {
    pub order_id: OrderId,
    pub account: AccountId,
    pub client_order_id: ClientOrderId,
    pub side: Side,
    pub price_ticks: PriceTicks,
    pub qty_open: QtyLots,
    pub kind: OrderKind,
    pub stp: SelfTradePrevention,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

fn validate_qty(spec: &InstrumentSpec, qty_lots: QtyLots) -> Result<(), RejectReason> {
    if qty_lots <= 0 {
        return Err(RejectReason::QtyNotPositive);
    }
    if qty_lots < spec.qty_lots_min {
        return Err(RejectReason::QtyBelowMin);
    }
    if qty_lots > spec.qty_lots_max {
        return Err(RejectReason::QtyAboveMax);
    }
    Ok(())
}

fn validate_price(book: &Book, price_ticks: PriceTicks) -> Result<(), RejectReason> {
    if price_ticks <= 0 {
        return Err(RejectReason::PriceNotPositive);
    }
    if price_ticks > PRICE_TICKS_MAX {
        return Err(RejectReason::PriceTooHigh);
    }
    if !book.in_band(price_ticks) {
        return Err(RejectReason::OutsidePriceBand);
    }
    Ok(())
}

fn validate_stop(book: &Book, side: Side, stop_ticks: PriceTicks) -> Result<(), RejectReason> {
    if stop_ticks <= 0 {
        return Err(RejectReason::PriceNotPositive);
    }
    if stop_ticks > PRICE_TICKS_MAX {
        return Err(RejectReason::PriceTooHigh);
    }
    let last = book.reference_ticks();
    let reached = match side {
        Side::Buy => last >= stop_ticks,
        Side::Sell => last <= stop_ticks,
    };
    if reached {
        return Err(RejectReason::StopWouldTriggerImmediately);
    }
    Ok(())
}

fn expired(taker: &Taker) -> Event {
    Event::Expired {
        order_id: taker.order_id,
        account: taker.account,
        instrument: taker.instrument,
        side: taker.side,
        qty_lots: taker.qty_open,
    }
}

fn cancel_incoming(taker: &mut Taker, qty_lots: QtyLots, out: &mut Vec<Event>) {
    debug_assert!(qty_lots > 0 && qty_lots <= taker.qty_open);
    taker.qty_open -= qty_lots;
    out.push(Event::Cancelled {
        order_id: taker.order_id,
        account: taker.account,
        instrument: taker.instrument,
        side: taker.side,
        price_ticks: taker.limit_ticks,
        qty_lots,
        qty_open: taker.qty_open,
        reason: CancelReason::SelfTradePrevention,
        origin: Origin::Incoming,
    });
}

/// The best level of a ladder has orders on it (empty levels wait only behind it).
fn check_best(instrument: InstrumentId, ladder: &Ladder) -> Result<(), BookViolation> {
    if ladder.best().is_some_and(|level| level.count == 0) {
        return Err(BookViolation::BestLevelEmpty {
            instrument,
            side: ladder.side,
        });
    }
    Ok(())
}
