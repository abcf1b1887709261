//! The engine benchmark workload, shaped like the one exchange-core publishes its figures on: one
//! order book, 1,000 active accounts, about 1,000 resting limit orders over about 750 price levels
//! around a stable best bid and offer, and a command mix of 9% GTC limit, 3% IOC, 6% cancel and 82%
//! move (a cancel-replace to a new price with the same quantity), about 6% of commands trading.
//!
//! The generator drives a shadow [`Matcher`] and follows its events, so it always knows which
//! orders are live, where the best prices are and how large the book is. It records the commands;
//! a timed run replays the record through a fresh matcher, and determinism guarantees the same
//! outcome (checked: the replay must reproduce [`Outcome`]).
//!
//! How the mix keeps the book steady (napkin math, per command). Passive GTC orders add
//! 0.09 × 0.9 = 0.081 orders and cancels remove 0.06. A trade that is not an IOC costs the book an
//! order: a GTC priced at the opposite best rests nothing or only what replaces the maker it took
//! (so it adds nothing), and a move that trades loses the mover or a maker. So 10% of GTCs (0.9%
//! of commands) and 2% of moves (1.64%, removing about 0.016) are priced at the opposite best,
//! which leaves about +0.005 for the controller: IOCs (3%) always trade, take from the fuller side
//! so that the sides stay balanced, and take one lot while the book is below its target (seldom
//! removing an order) and the top two levels while it is above. About 5.5% of commands trade in
//! all. Exactly 6% cannot hold a steady book under this mix: the 3% of non-IOC trades would cost
//! as many orders as the 9% − 6% surplus adds. Passive prices never cross: they are clamped one
//! tick inside the opposite best.

use std::collections::HashMap;

use engine::*;
use rust_decimal::Decimal;

use crate::rng::SplitMix64;

/// The only instrument: a BTC/JPY-like book with tick 1 and lot 1.
pub const INSTRUMENT: InstrumentId = 0;
pub const ACCOUNTS: u32 = 1_000;
pub const ORDERS_RESTING_TARGET: usize = 1_000;
/// The anchor of every passive price; the best bid and offer stay within a few ticks of it.
pub const PRICE_TICKS_MID: PriceTicks = 100_000;
/// Passive prices are drawn uniformly from this many ticks behind the mid on each side. With about
/// 500 orders a side, `D × (1 − e^(−500/D))` occupied levels gives about 375 a side at D = 820.
pub const DEPTH_TICKS: PriceTicks = 820;
/// 50% around the mid: orders live within ±1% of it, so a band reject means a generator bug.
pub const PRICE_BAND_BPS: u32 = 5_000;

pub const COMMANDS_WARMUP_DEFAULT: usize = 200_000;
pub const COMMANDS_MEASURED_DEFAULT: usize = 3_000_000;
pub const COMMANDS_MEASURED_QUICK: usize = 300_000;
pub const SEED_DEFAULT: u64 = 0x6b69_6e6b_6f00_0001;

/// The command mix, in commands per mille.
pub const GTC_PER_MILLE: u64 = 90;
pub const IOC_PER_MILLE: u64 = 30;
pub const CANCEL_PER_MILLE: u64 = 60;
pub const MOVE_PER_MILLE: u64 = 820;
/// Shares of GTC orders and moves priced at the opposite best, so that they trade.
const AGGRESSIVE_GTC_PER_MILLE: u64 = 100;
const AGGRESSIVE_MOVE_PER_MILLE: u64 = 20;
/// An IOC's limit lies this far past the opposite best, so that a self-match (which
/// cancels the resting order instead of trading) still usually ends in a trade on the next level.
const IOC_LIMIT_SLACK_TICKS: PriceTicks = 10;
/// Resting orders hold 1 to 100 lots: large enough that one-lot trades seldom finish one off.
const QTY_LOTS_MAKER_MAX: u64 = 100;
/// Book size and level count are sampled this often: counting levels walks the ladders.
const STATS_SAMPLE_EVERY_COMMANDS: u64 = 16;

/// The engine sized for this workload, with room to spare, and without the per-command invariant
/// check (it walks the whole book: it is what tests are for, not benchmarks).
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        orders_max: 1 << 14,
        levels_per_side_max: 1 << 12,
        stops_per_side_max: 16,
        accounts_max: ACCOUNTS,
        orders_open_per_account_max: 256,
        check_invariants: false,
    }
}

pub fn instrument_spec() -> InstrumentSpec {
    InstrumentSpec {
        symbol: "BTC/JPY".into(),
        base: "BTC".into(),
        quote: "JPY".into(),
        tick_size: Decimal::ONE,
        lot_size: Decimal::ONE,
        qty_lots_min: 1,
        qty_lots_max: 1_000_000,
        price_band_bps: PRICE_BAND_BPS,
        price_ticks_reference: PRICE_TICKS_MID,
        fee_maker_ppm: 0,
        fee_taker_ppm: 0,
        house_policy: HousePolicy::Forbidden,
    }
}

/// A fresh matcher with the benchmark's configuration and its one instrument.
pub fn matcher_new() -> Matcher {
    Matcher::new(engine_config(), vec![instrument_spec()])
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    Gtc,
    Ioc,
    Cancel,
    Move,
}

impl CommandKind {
    pub const ALL: [CommandKind; 4] = [
        CommandKind::Gtc,
        CommandKind::Ioc,
        CommandKind::Cancel,
        CommandKind::Move,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CommandKind::Gtc => "gtc",
            CommandKind::Ioc => "ioc",
            CommandKind::Cancel => "cancel",
            CommandKind::Move => "move",
        }
    }

    pub fn per_mille_target(self) -> u64 {
        match self {
            CommandKind::Gtc => GTC_PER_MILLE,
            CommandKind::Ioc => IOC_PER_MILLE,
            CommandKind::Cancel => CANCEL_PER_MILLE,
            CommandKind::Move => MOVE_PER_MILLE,
        }
    }
}

/// Who sends the orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accounts {
    /// Any of the [`ACCOUNTS`], drawn uniformly: now and then a taker meets a resting order of its
    /// own account, which self-trade prevention cancels instead of trading.
    Any,
    /// The same draw with its lowest bit set by the side: even accounts buy, odd accounts sell, so
    /// no order ever meets one of its own account's. Matching is then plain price-time priority,
    /// which order books without self-trade prevention agree on (the `peers` scenario's check).
    BySide,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadSpec {
    pub seed: u64,
    /// Commands of the normal mix after the book is built and before measuring, so that the book
    /// and the caches are in steady state.
    pub commands_warmup: usize,
    pub commands_measured: usize,
}

impl WorkloadSpec {
    pub fn new(commands_measured: usize) -> WorkloadSpec {
        WorkloadSpec {
            seed: SEED_DEFAULT,
            commands_warmup: COMMANDS_WARMUP_DEFAULT,
            commands_measured,
        }
    }
}

/// What the measured commands did, as seen by the shadow matcher.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadStats {
    pub commands: u64,
    pub commands_by_kind: [u64; 4],
    pub commands_with_fill: u64,
    pub fills: u64,
    pub rejects: u64,
    pub samples: u64,
    pub orders_resting_sum: u64,
    pub levels_sum: u64,
}

impl WorkloadStats {
    pub fn share(&self, kind: CommandKind) -> f64 {
        self.commands_by_kind[kind as usize] as f64 / self.commands.max(1) as f64
    }

    pub fn fill_share(&self) -> f64 {
        self.commands_with_fill as f64 / self.commands.max(1) as f64
    }

    pub fn orders_resting_mean(&self) -> f64 {
        self.orders_resting_sum as f64 / self.samples.max(1) as f64
    }

    pub fn levels_mean(&self) -> f64 {
        self.levels_sum as f64 / self.samples.max(1) as f64
    }
}

/// The end state a replay must reproduce: any difference means the replay is not the workload
/// that was generated (or the engine is not deterministic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub events_measured: u64,
    pub order_id_next: OrderId,
    pub orders_open: usize,
}

pub struct Workload {
    /// Warm-up first (building the book, then the normal mix), then the measured commands.
    pub commands: Vec<Sequenced>,
    pub commands_warmup: usize,
    pub stats: WorkloadStats,
    pub outcome: Outcome,
}

impl Workload {
    pub fn generate(spec: WorkloadSpec) -> Workload {
        Workload::generate_with(spec, Accounts::Any)
    }

    pub fn generate_with(spec: WorkloadSpec, accounts: Accounts) -> Workload {
        let mut generator = Generator::new(spec.seed, accounts);
        let capacity = ORDERS_RESTING_TARGET + spec.commands_warmup + spec.commands_measured;
        let mut commands = Vec::with_capacity(capacity);
        generator.build_book(&mut commands);
        for _ in 0..spec.commands_warmup {
            generator.step(&mut commands, None);
        }
        let commands_warmup = commands.len();
        let mut stats = WorkloadStats::default();
        for _ in 0..spec.commands_measured {
            generator.step(&mut commands, Some(&mut stats));
        }
        let outcome = Outcome {
            events_measured: generator.events_measured,
            order_id_next: generator.matcher.order_id_next(),
            orders_open: generator.matcher.orders_open(),
        };
        Workload {
            commands,
            commands_warmup,
            stats,
            outcome,
        }
    }

    pub fn warmup(&self) -> &[Sequenced] {
        &self.commands[..self.commands_warmup]
    }

    pub fn measured(&self) -> &[Sequenced] {
        &self.commands[self.commands_warmup..]
    }
}

/// A resting order as the generator knows it from the events.
#[derive(Clone, Copy, Debug)]
struct Live {
    order_id: OrderId,
    account: AccountId,
    side: Side,
    price_ticks: PriceTicks,
    qty_lots: QtyLots,
}

/// The resting orders, in a vector for uniform picking and a map for removal by id.
#[derive(Default)]
struct LiveOrders {
    orders: Vec<Live>,
    position: HashMap<OrderId, usize>,
    bids: usize,
    asks: usize,
}

impl LiveOrders {
    fn len(&self) -> usize {
        self.orders.len()
    }

    fn count(&mut self, side: Side) -> &mut usize {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn insert(&mut self, live: Live) {
        let fresh = self.position.insert(live.order_id, self.orders.len());
        assert!(fresh.is_none(), "order {} rested twice", live.order_id);
        self.orders.push(live);
        *self.count(live.side) += 1;
    }

    fn remove(&mut self, order_id: OrderId) {
        let index = self
            .position
            .remove(&order_id)
            .unwrap_or_else(|| panic!("order {order_id} left the book but was not live"));
        let live = self.orders.swap_remove(index);
        if let Some(moved) = self.orders.get(index) {
            self.position.insert(moved.order_id, index);
        }
        *self.count(live.side) -= 1;
    }

    fn set_qty(&mut self, order_id: OrderId, qty_lots: QtyLots) {
        let index = self.position[&order_id];
        self.orders[index].qty_lots = qty_lots;
    }

    /// Follows one event of the shadow matcher.
    fn track(&mut self, event: &Event) {
        match *event {
            Event::Rested {
                order_id,
                account,
                side,
                price_ticks,
                qty_lots,
                ..
            } => self.insert(Live {
                order_id,
                account,
                side,
                price_ticks,
                qty_lots,
            }),
            Event::Fill {
                maker_order_id,
                maker_qty_open,
                ..
            } => self.reduce_to(maker_order_id, maker_qty_open),
            Event::Cancelled {
                order_id,
                qty_open,
                origin: Origin::Book,
                ..
            } => self.reduce_to(order_id, qty_open),
            // A moved order leaves its level; it comes back through `Rested` if anything is left.
            Event::Replaced {
                order_id,
                priority: Priority::Lost,
                ..
            } => self.remove(order_id),
            _ => {}
        }
    }

    fn reduce_to(&mut self, order_id: OrderId, qty_open: QtyLots) {
        if qty_open == 0 {
            self.remove(order_id);
        } else {
            self.set_qty(order_id, qty_open);
        }
    }
}

/// Chooses each command from the shadow matcher's state, applies it, and records it.
struct Generator {
    rng: SplitMix64,
    accounts: Accounts,
    matcher: Matcher,
    live: LiveOrders,
    events: Vec<Event>,
    seq: u64,
    client_order_id_next: ClientOrderId,
    events_measured: u64,
}

impl Generator {
    fn new(seed: u64, accounts: Accounts) -> Generator {
        Generator {
            rng: SplitMix64::new(seed),
            accounts,
            matcher: matcher_new(),
            live: LiveOrders::default(),
            events: Vec::with_capacity(64),
            seq: 0,
            client_order_id_next: 1,
            events_measured: 0,
        }
    }

    /// Passive GTC orders only, until the book holds its target number of orders.
    fn build_book(&mut self, commands: &mut Vec<Sequenced>) {
        while self.live.len() < ORDERS_RESTING_TARGET {
            let side = self.side_random();
            let price_ticks = self.price_passive(side);
            let qty_lots = self.qty_maker();
            let command = self.new_order(side, price_ticks, TimeInForce::Gtc, qty_lots);
            commands.push(self.apply(command));
        }
    }

    /// One command of the normal mix; `stats` is `None` during warm-up.
    fn step(&mut self, commands: &mut Vec<Sequenced>, stats: Option<&mut WorkloadStats>) {
        let (kind, command) = self.choose();
        commands.push(self.apply(command));
        if let Some(stats) = stats {
            self.events_measured += self.events.len() as u64;
            self.note(kind, stats);
        }
    }

    fn choose(&mut self) -> (CommandKind, Command) {
        if self.live.len() == 0 {
            // Only reachable if trades emptied the book: refill it rather than stall.
            return (CommandKind::Gtc, self.gtc());
        }
        let roll = self.rng.below(1_000);
        if roll < GTC_PER_MILLE {
            (CommandKind::Gtc, self.gtc())
        } else if roll < GTC_PER_MILLE + IOC_PER_MILLE {
            (CommandKind::Ioc, self.ioc())
        } else if roll < GTC_PER_MILLE + IOC_PER_MILLE + CANCEL_PER_MILLE {
            (CommandKind::Cancel, self.cancel())
        } else {
            (CommandKind::Move, self.move_order())
        }
    }

    fn gtc(&mut self) -> Command {
        let side = self.side_random();
        let aggressive = self.rng.chance_per_mille(AGGRESSIVE_GTC_PER_MILLE);
        let (price_ticks, qty_lots) = match self.best(side.opposite()) {
            Some(best_ticks) if aggressive => (best_ticks, self.qty_taker(side)),
            _ => (self.price_passive(side), self.qty_maker()),
        };
        self.new_order(side, price_ticks, TimeInForce::Gtc, qty_lots)
    }

    /// An IOC against the fuller side, so that the two sides stay balanced.
    fn ioc(&mut self) -> Command {
        let side = if self.live.asks >= self.live.bids {
            Side::Buy
        } else {
            Side::Sell
        };
        let best_ticks = self
            .best(side.opposite())
            .expect("the fuller side of a non-empty book has a level");
        let qty_lots = self.qty_taker(side);
        let limit_ticks = match side {
            Side::Buy => best_ticks + IOC_LIMIT_SLACK_TICKS,
            Side::Sell => best_ticks - IOC_LIMIT_SLACK_TICKS,
        };
        self.new_order(side, limit_ticks, TimeInForce::Ioc, qty_lots)
    }

    /// The size of an order that takes on `side`: the book's size controller (see the module doc).
    /// Above the target it sweeps the top two levels; below it, it takes one lot, which removes a
    /// resting order only when that order is down to its last lot.
    fn qty_taker(&mut self, side: Side) -> QtyLots {
        let side_maker = side.opposite();
        if self.live.len() > ORDERS_RESTING_TARGET {
            return self
                .matcher
                .levels(INSTRUMENT, side_maker)
                .take(2)
                .map(|(_, qty_lots, _)| qty_lots)
                .sum::<QtyLots>()
                .max(1);
        }
        1
    }

    fn cancel(&mut self) -> Command {
        let live = self.live_random();
        Command::Cancel {
            account: live.account,
            order: OrderRef::Id(live.order_id),
        }
    }

    /// A move re-quotes a live order at a new price with the same quantity; a few are priced at the
    /// opposite best and trade.
    fn move_order(&mut self) -> Command {
        let live = self.live_random();
        let aggressive = self.rng.chance_per_mille(AGGRESSIVE_MOVE_PER_MILLE);
        let price_ticks = match self.best(live.side.opposite()) {
            Some(best_ticks) if aggressive => best_ticks,
            _ => self.price_passive_other_than(live.side, live.price_ticks),
        };
        Command::Replace {
            account: live.account,
            order: OrderRef::Id(live.order_id),
            price_ticks,
            qty_lots: live.qty_lots,
            client_order_id_new: None,
        }
    }

    fn new_order(
        &mut self,
        side: Side,
        price_ticks: PriceTicks,
        tif: TimeInForce,
        qty_lots: QtyLots,
    ) -> Command {
        let client_order_id = self.client_order_id_next;
        self.client_order_id_next += 1;
        let drawn = self.rng.below(u64::from(ACCOUNTS)) as AccountId;
        let account = match self.accounts {
            Accounts::Any => drawn,
            Accounts::BySide => (drawn & !1) | AccountId::from(side == Side::Sell),
        };
        Command::NewOrder(NewOrder {
            account,
            instrument: INSTRUMENT,
            client_order_id,
            side,
            kind: OrderKind::limit(price_ticks, tif),
            qty_lots,
            stp: None,
        })
    }

    /// A price behind the mid on `side`, one tick inside the opposite best at most, so that it
    /// never crosses.
    fn price_passive(&mut self, side: Side) -> PriceTicks {
        let offset_ticks = self.rng.below(DEPTH_TICKS as u64) as PriceTicks;
        let best_opposite = self.best(side.opposite());
        match side {
            Side::Buy => {
                let price_ticks = PRICE_TICKS_MID - 1 - offset_ticks;
                best_opposite.map_or(price_ticks, |ask| price_ticks.min(ask - 1))
            }
            Side::Sell => {
                let price_ticks = PRICE_TICKS_MID + 1 + offset_ticks;
                best_opposite.map_or(price_ticks, |bid| price_ticks.max(bid + 1))
            }
        }
    }

    /// A passive price that differs from `price_ticks_old`: a move to the same price and quantity
    /// would keep priority and change nothing, which is not the work a move stands for.
    fn price_passive_other_than(&mut self, side: Side, price_ticks_old: PriceTicks) -> PriceTicks {
        let price_ticks = self.price_passive(side);
        if price_ticks != price_ticks_old {
            return price_ticks;
        }
        // One tick further from the opposite side never crosses.
        match side {
            Side::Buy => price_ticks - 1,
            Side::Sell => price_ticks + 1,
        }
    }

    fn best(&self, side: Side) -> Option<PriceTicks> {
        match side {
            Side::Buy => self.matcher.best_bid(INSTRUMENT),
            Side::Sell => self.matcher.best_ask(INSTRUMENT),
        }
    }

    fn side_random(&mut self) -> Side {
        if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    fn qty_maker(&mut self) -> QtyLots {
        1 + self.rng.below(QTY_LOTS_MAKER_MAX) as QtyLots
    }

    fn live_random(&mut self) -> Live {
        let index = self.rng.below(self.live.len() as u64) as usize;
        self.live.orders[index]
    }

    /// Applies `command` to the shadow matcher, follows its events, and returns the record.
    fn apply(&mut self, command: Command) -> Sequenced {
        self.seq += 1;
        // The engine never reads the timestamp; a synthetic one keeps the record deterministic.
        let record = Sequenced {
            seq: self.seq,
            ts_ns: self.seq,
            command,
        };
        self.events.clear();
        self.matcher.apply(&record, &mut self.events);
        for event in &self.events {
            self.live.track(event);
        }
        debug_assert_eq!(self.live.len(), self.matcher.orders_open());
        record
    }

    fn note(&self, kind: CommandKind, stats: &mut WorkloadStats) {
        stats.commands += 1;
        stats.commands_by_kind[kind as usize] += 1;
        let fills = self
            .events
            .iter()
            .filter(|event| matches!(event, Event::Fill { .. }))
            .count() as u64;
        stats.fills += fills;
        stats.commands_with_fill += u64::from(fills > 0);
        let rejects = self
            .events
            .iter()
            .filter(|event| matches!(event, Event::Rejected { .. }))
            .count() as u64;
        stats.rejects += rejects;
        if stats.commands.is_multiple_of(STATS_SAMPLE_EVERY_COMMANDS) {
            stats.samples += 1;
            stats.orders_resting_sum += self.live.len() as u64;
            stats.levels_sum += self.levels_count() as u64;
        }
    }

    fn levels_count(&self) -> usize {
        self.matcher.levels(INSTRUMENT, Side::Buy).count()
            + self.matcher.levels(INSTRUMENT, Side::Sell).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small enough for a test build, long enough for the mix to settle within a few tenths of a
    /// percent (the standard error of a 9% share over 100,000 commands is 0.09%).
    fn spec(seed: u64) -> WorkloadSpec {
        WorkloadSpec {
            seed,
            commands_warmup: 50_000,
            commands_measured: 100_000,
        }
    }

    #[test]
    fn same_seed_same_commands_and_another_seed_other_commands() {
        let a = Workload::generate(spec(7));
        let b = Workload::generate(spec(7));
        let c = Workload::generate(spec(8));
        assert_eq!(a.commands, b.commands);
        assert_eq!(a.outcome, b.outcome);
        assert_eq!(a.stats, b.stats);
        assert_ne!(a.commands, c.commands);
    }

    #[test]
    fn mix_trades_and_book_match_the_spec() {
        let workload = Workload::generate(spec(SEED_DEFAULT));
        let stats = &workload.stats;
        assert_eq!(stats.commands, 100_000);
        assert_eq!(workload.measured().len(), 100_000);
        for kind in CommandKind::ALL {
            let target = kind.per_mille_target() as f64 / 1_000.0;
            let share = stats.share(kind);
            assert!(
                (share - target).abs() < 0.005,
                "{} is {share:.4} of commands, target {target}",
                kind.name()
            );
        }
        let fill_share = stats.fill_share();
        assert!(
            (0.03..=0.10).contains(&fill_share),
            "{fill_share:.4} of commands traded"
        );
        assert_eq!(
            stats.rejects, 0,
            "the generator sent a command the engine refused"
        );
        let orders = stats.orders_resting_mean();
        assert!(
            (850.0..=1_100.0).contains(&orders),
            "{orders:.0} resting orders"
        );
        let levels = stats.levels_mean();
        assert!((600.0..=900.0).contains(&levels), "{levels:.0} levels");
    }

    #[test]
    fn replay_through_a_fresh_matcher_reaches_the_generated_outcome() {
        let workload = Workload::generate(spec(3));
        let mut matcher = matcher_new();
        let mut out = Vec::new();
        for record in workload.warmup() {
            out.clear();
            matcher.apply(record, &mut out);
        }
        let mut events_measured = 0;
        for record in workload.measured() {
            out.clear();
            matcher.apply(record, &mut out);
            events_measured += out.len() as u64;
        }
        let outcome = Outcome {
            events_measured,
            order_id_next: matcher.order_id_next(),
            orders_open: matcher.orders_open(),
        };
        assert_eq!(outcome, workload.outcome);
    }

    #[test]
    fn the_book_is_never_crossed_and_its_invariants_hold() {
        // The benchmark turns the engine's invariant check off; here it runs after every command.
        let workload = Workload::generate(WorkloadSpec {
            seed: 11,
            commands_warmup: 0,
            commands_measured: 5_000,
        });
        let config = EngineConfig {
            check_invariants: true,
            ..engine_config()
        };
        let mut matcher = Matcher::new(config, vec![instrument_spec()]);
        let mut out = Vec::new();
        for record in &workload.commands {
            out.clear();
            matcher.apply(record, &mut out);
        }
        assert_eq!(matcher.orders_open(), workload.outcome.orders_open);
    }

    #[test]
    fn accounts_by_side_never_self_match_and_keep_the_mix() {
        let any = Workload::generate(spec(9));
        let by_side = Workload::generate_with(spec(9), Accounts::BySide);
        let self_trades = |workload: &Workload| {
            let mut matcher = matcher_new();
            let mut out = Vec::new();
            let mut cancelled = 0;
            for record in &workload.commands {
                out.clear();
                matcher.apply(record, &mut out);
                cancelled += out
                    .iter()
                    .filter(|e| {
                        matches!(
                            e,
                            Event::Cancelled {
                                reason: CancelReason::SelfTradePrevention,
                                ..
                            }
                        )
                    })
                    .count();
            }
            cancelled
        };
        assert!(
            self_trades(&any) > 0,
            "uniform accounts meet themselves now and then"
        );
        assert_eq!(self_trades(&by_side), 0);
        for record in &by_side.commands {
            if let Command::NewOrder(order) = record.command {
                assert_eq!(order.account % 2 == 1, order.side == Side::Sell);
            }
        }
        assert_eq!(by_side.stats.rejects, 0);
        for kind in CommandKind::ALL {
            let delta = by_side.stats.share(kind) - any.stats.share(kind);
            assert!(delta.abs() < 0.005, "{} differs by {delta}", kind.name());
        }
    }

    #[test]
    fn moves_keep_their_quantity_and_change_their_price() {
        let workload = Workload::generate(spec(5));
        let mut matcher = matcher_new();
        let mut out = Vec::new();
        for record in &workload.commands {
            if let Command::Replace {
                order,
                price_ticks,
                qty_lots,
                ..
            } = record.command
            {
                let OrderRef::Id(order_id) = order else {
                    panic!("moves name orders by id");
                };
                let view = matcher.order(order_id).expect("a move names a live order");
                assert_eq!(view.qty_open, qty_lots, "a move keeps the quantity");
                assert_ne!(view.price_ticks, price_ticks, "a move changes the price");
            }
            out.clear();
            matcher.apply(record, &mut out);
        }
    }
}
