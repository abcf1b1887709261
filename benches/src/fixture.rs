//! A fixed book for the criterion micro-benchmarks: 1,000 resting orders over about 750 levels,
//! with an empty band of [`GAP_TICKS`] on each side of the mid. A bench puts its own makers inside
//! that band, takes them, and leaves the book as it found it, so every iteration meets the same
//! book.

use engine::*;

use crate::rng::SplitMix64;
use crate::workload::{matcher_new, ACCOUNTS, INSTRUMENT, PRICE_TICKS_MID};

pub const ORDERS_PER_SIDE: usize = 500;
/// No resting order is priced within this many ticks of the mid: room for 199 bench levels.
pub const GAP_TICKS: PriceTicks = 100;
/// Prices are uniform over this many ticks behind the gap: 500 orders over 800 ticks occupy
/// `800 × (1 − e^(−500/800))` ≈ 372 levels a side.
pub const DEPTH_TICKS: PriceTicks = 800;
const QTY_LOTS_MAX: u64 = 100;
/// The benches' own orders: makers and takers on accounts the book's orders never use, so that a
/// bench's taker never meets its own maker (a self-match cancels instead of trading).
pub const ACCOUNT_MAKER: AccountId = 0;
pub const ACCOUNT_TAKER: AccountId = 1;
const ACCOUNT_BOOK_FIRST: AccountId = 2;
/// Enough for the largest batch a bench reads back (a sweep of a few levels).
const EVENTS_CAPACITY: usize = 1_024;

/// One of the book's own resting orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resting {
    pub order_id: OrderId,
    pub account: AccountId,
    pub side: Side,
    pub price_ticks: PriceTicks,
    pub qty_lots: QtyLots,
}

pub struct BookFixture {
    matcher: Matcher,
    /// The book's orders as placed (benches move them and put them back).
    pub resting: Vec<Resting>,
    rng: SplitMix64,
    out: Vec<Event>,
    seq: u64,
    client_order_id_next: ClientOrderId,
}

impl BookFixture {
    pub fn new(seed: u64) -> BookFixture {
        let mut fixture = BookFixture {
            matcher: matcher_new(),
            resting: Vec::with_capacity(2 * ORDERS_PER_SIDE),
            rng: SplitMix64::new(seed),
            out: Vec::with_capacity(EVENTS_CAPACITY),
            seq: 0,
            client_order_id_next: 1,
        };
        for _ in 0..ORDERS_PER_SIDE {
            for side in [Side::Buy, Side::Sell] {
                fixture.place_book_order(side);
            }
        }
        fixture
    }

    fn place_book_order(&mut self, side: Side) {
        let accounts_book = u64::from(ACCOUNTS - ACCOUNT_BOOK_FIRST);
        let account = ACCOUNT_BOOK_FIRST + self.rng.below(accounts_book) as AccountId;
        let price_ticks = self.price_behind_gap(side);
        let qty_lots = 1 + self.rng.below(QTY_LOTS_MAX) as QtyLots;
        let order_id = self.matcher.order_id_next();
        let record = self.limit(account, side, price_ticks, qty_lots, TimeInForce::Gtc);
        self.apply(&record);
        assert!(
            matches!(self.out.last(), Some(Event::Rested { .. })),
            "a fixture order did not rest: {:?}",
            self.out
        );
        self.resting.push(Resting {
            order_id,
            account,
            side,
            price_ticks,
            qty_lots,
        });
    }

    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// The events of the last command applied.
    pub fn events(&self) -> &[Event] {
        &self.out
    }

    /// Applies one record and returns how many events it produced.
    #[inline]
    pub fn apply(&mut self, record: &Sequenced) -> usize {
        self.out.clear();
        self.matcher.apply(record, &mut self.out);
        self.out.len()
    }

    /// A uniform price in the book's own region of `side`, behind the gap.
    pub fn price_behind_gap(&mut self, side: Side) -> PriceTicks {
        let offset_ticks = GAP_TICKS + self.rng.below(DEPTH_TICKS as u64) as PriceTicks;
        match side {
            Side::Buy => PRICE_TICKS_MID - offset_ticks,
            Side::Sell => PRICE_TICKS_MID + offset_ticks,
        }
    }

    pub fn best_ask(&self) -> PriceTicks {
        self.matcher
            .best_ask(INSTRUMENT)
            .expect("the fixture has asks")
    }

    pub fn best_bid(&self) -> PriceTicks {
        self.matcher
            .best_bid(INSTRUMENT)
            .expect("the fixture has bids")
    }

    pub fn levels_count(&self) -> usize {
        self.matcher.levels(INSTRUMENT, Side::Buy).count()
            + self.matcher.levels(INSTRUMENT, Side::Sell).count()
    }

    /// A limit order with a fresh client order id.
    pub fn limit(
        &mut self,
        account: AccountId,
        side: Side,
        price_ticks: PriceTicks,
        qty_lots: QtyLots,
        tif: TimeInForce,
    ) -> Sequenced {
        let client_order_id = self.client_order_id_next;
        self.client_order_id_next += 1;
        self.sequence(Command::NewOrder(NewOrder {
            account,
            instrument: INSTRUMENT,
            client_order_id,
            side,
            kind: OrderKind::limit(price_ticks, tif),
            qty_lots,
            stp: None,
        }))
    }

    pub fn cancel(&mut self, account: AccountId, order_id: OrderId) -> Sequenced {
        self.sequence(Command::Cancel {
            account,
            order: OrderRef::Id(order_id),
        })
    }

    /// A move: the same quantity at a new price.
    pub fn replace(&mut self, order: &Resting, price_ticks: PriceTicks) -> Sequenced {
        self.sequence(Command::Replace {
            account: order.account,
            order: OrderRef::Id(order.order_id),
            price_ticks,
            qty_lots: order.qty_lots,
            client_order_id_new: None,
        })
    }

    fn sequence(&mut self, command: Command) -> Sequenced {
        self.seq += 1;
        Sequenced {
            seq: self.seq,
            ts_ns: self.seq,
            command,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_book_has_the_documented_shape() {
        let fixture = BookFixture::new(1);
        assert_eq!(fixture.matcher().orders_open(), 2 * ORDERS_PER_SIDE);
        let levels = fixture.levels_count();
        assert!((700..=800).contains(&levels), "{levels} levels");
        assert!(fixture.best_bid() <= PRICE_TICKS_MID - GAP_TICKS);
        assert!(fixture.best_ask() >= PRICE_TICKS_MID + GAP_TICKS);
    }

    #[test]
    fn a_maker_inside_the_gap_is_taken_by_one_ioc_and_the_book_is_restored() {
        let mut fixture = BookFixture::new(2);
        let levels_before = fixture.levels_count();
        let price_ticks = fixture.best_ask() - 1;
        let maker = fixture.limit(ACCOUNT_MAKER, Side::Sell, price_ticks, 5, TimeInForce::Gtc);
        fixture.apply(&maker);
        assert_eq!(fixture.best_ask(), price_ticks);
        let taker = fixture.limit(ACCOUNT_TAKER, Side::Buy, price_ticks, 5, TimeInForce::Ioc);
        fixture.apply(&taker);
        let fills = fixture
            .events()
            .iter()
            .filter(|e| matches!(e, Event::Fill { .. }))
            .count();
        assert_eq!(fills, 1);
        assert_eq!(fixture.levels_count(), levels_before);
        assert_eq!(fixture.matcher().orders_open(), 2 * ORDERS_PER_SIDE);
        assert_eq!(fixture.matcher().check_invariants(), Ok(()));
    }
}
