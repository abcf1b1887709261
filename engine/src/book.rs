//! The data structures of one order book: an arena of orders with intrusive FIFO lists per price
//! level, a ladder of levels per side, and the stop lists. Everything is sized at start-up; in
//! steady state nothing here allocates.

use std::cmp::Ordering;

use crate::types::*;

/// The null link of the intrusive lists.
pub(crate) const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    Free,
    /// On a price level of the public book.
    Resting,
    /// Waiting in a stop list for its trigger.
    Stop,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Order {
    pub id: OrderId,
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub client_order_id: ClientOrderId,
    pub side: Side,
    /// The limit price; for a stop-market order, zero.
    pub price_ticks: PriceTicks,
    pub qty_open: QtyLots,
    pub kind: OrderKind,
    pub stp: SelfTradePrevention,
    pub state: SlotState,
    /// Level FIFO links (and the free list through `next`).
    pub prev: u32,
    pub next: u32,
    /// The account's list of open orders, for mass cancel.
    pub account_prev: u32,
    pub account_next: u32,
}

impl Order {
    const FREE: Order = Order {
        id: 0,
        account: 0,
        instrument: 0,
        client_order_id: 0,
        side: Side::Buy,
        price_ticks: 0,
        qty_open: 0,
        kind: OrderKind::Market,
        stp: SelfTradePrevention::CancelResting,
        state: SlotState::Free,
        prev: NIL,
        next: NIL,
        account_prev: NIL,
        account_next: NIL,
    };
}

/// Fixed-capacity storage for open orders, addressed by slot.
pub(crate) struct Arena {
    pub slots: Vec<Order>,
    free_head: u32,
    pub used: u32,
}

impl Arena {
    pub fn new(capacity: u32) -> Arena {
        assert!(capacity > 0 && capacity < NIL, "arena capacity {capacity}");
        let mut slots = vec![Order::FREE; capacity as usize];
        for (i, slot) in slots.iter_mut().enumerate() {
            slot.next = if i + 1 < capacity as usize {
                i as u32 + 1
            } else {
                NIL
            };
        }
        Arena {
            slots,
            free_head: 0,
            used: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.free_head == NIL
    }

    pub fn alloc(&mut self, order: Order) -> u32 {
        let slot = self.free_head;
        assert!(
            slot != NIL,
            "arena full: callers check capacity before accepting"
        );
        let cell = &mut self.slots[slot as usize];
        debug_assert_eq!(cell.state, SlotState::Free);
        self.free_head = cell.next;
        *cell = order;
        self.used += 1;
        slot
    }

    pub fn release(&mut self, slot: u32) {
        let cell = &mut self.slots[slot as usize];
        debug_assert_ne!(cell.state, SlotState::Free, "double free of slot {slot}");
        *cell = Order::FREE;
        cell.next = self.free_head;
        self.free_head = slot;
        self.used -= 1;
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &Order {
        &self.slots[slot as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut Order {
        &mut self.slots[slot as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub price_ticks: PriceTicks,
    pub qty_lots: QtyLots,
    pub count: u32,
    pub(crate) head: u32,
    pub(crate) tail: u32,
}

impl Level {
    fn empty(price_ticks: PriceTicks) -> Level {
        Level {
            price_ticks,
            qty_lots: 0,
            count: 0,
            head: NIL,
            tail: NIL,
        }
    }
}

/// One side of a book: levels sorted from worst to best, so that the best level is the last one
/// and the busy end of the book is where a Vec is cheapest to change.
///
/// A level that empties behind the best stays in place, empty (`count == 0`), until an order
/// comes to its price again: taking it out of the middle, or putting it back, would shift every
/// level above it (kilobytes of memmove per command on a deep book). The best level is never
/// empty: when it empties, it and the empty levels under it go at once. The empty levels are
/// dropped together when they outnumber the live ones (and more than [`EMPTY_LEVELS_KEPT`] wait)
/// or when the vector is full, so a book that moves away from its old prices does not drag them
/// along. Readers skip empty levels (`live_levels`); nothing they see depends on where they are.
pub(crate) struct Ladder {
    pub side: Side,
    pub levels: Vec<Level>,
    /// The levels with orders on them (`levels` holds these and the empty ones).
    pub live: usize,
    pub levels_max: usize,
}

/// How many empty levels a ladder may keep before it drops them, whatever the live count.
pub(crate) const EMPTY_LEVELS_KEPT: usize = 1_024;

impl Ladder {
    pub fn new(side: Side, levels_max: usize) -> Ladder {
        Ladder {
            side,
            levels: Vec::with_capacity(levels_max),
            live: 0,
            levels_max,
        }
    }

    /// Ascending key: bids by price, asks by negated price, so the best is always last.
    #[inline]
    fn key(&self, price_ticks: PriceTicks) -> PriceTicks {
        match self.side {
            Side::Buy => price_ticks,
            Side::Sell => -price_ticks,
        }
    }

    /// Index of the level at `price_ticks`, or where it would be inserted.
    #[inline]
    pub fn find(&self, price_ticks: PriceTicks) -> Result<usize, usize> {
        let key = self.key(price_ticks);
        // Search from the best end first: most activity is near the top of the book.
        let len = self.levels.len();
        if len > 0 {
            let best = self.key(self.levels[len - 1].price_ticks);
            match key.cmp(&best) {
                Ordering::Equal => return Ok(len - 1),
                Ordering::Greater => return Err(len),
                Ordering::Less => {}
            }
        }
        self.levels
            .binary_search_by(|level| self.key(level.price_ticks).cmp(&key))
    }

    pub fn has_room_for(&self, price_ticks: PriceTicks) -> bool {
        self.live < self.levels_max
            || self
                .find(price_ticks)
                .is_ok_and(|index| self.levels[index].count > 0)
    }

    /// The levels with orders on them, worst to best.
    pub fn live_levels(&self) -> impl DoubleEndedIterator<Item = &Level> + '_ {
        self.levels.iter().filter(|level| level.count > 0)
    }

    /// Drops every empty level.
    fn compact(&mut self) {
        self.levels.retain(|level| level.count > 0);
        debug_assert_eq!(self.levels.len(), self.live);
    }

    #[inline]
    pub fn best(&self) -> Option<&Level> {
        self.levels.last()
    }

    #[inline]
    pub fn best_mut(&mut self) -> Option<&mut Level> {
        self.levels.last_mut()
    }

    /// Appends `slot` to the FIFO of the level at its price, creating the level if needed.
    pub fn push(&mut self, arena: &mut Arena, slot: u32) {
        let (price_ticks, qty_lots) = {
            let order = arena.get(slot);
            debug_assert_eq!(order.side, self.side);
            (order.price_ticks, order.qty_open)
        };
        let index = self.find(price_ticks);
        let fresh = index.map_or(true, |index| self.levels[index].count == 0);
        assert!(
            !fresh || self.live < self.levels_max,
            "ladder full: callers check has_room_for"
        );
        let index = match index {
            Ok(index) => index,
            Err(index) => {
                let index = if self.levels.len() >= self.levels_max {
                    // Never grow the vector: make room by dropping the empty levels.
                    self.compact();
                    self.find(price_ticks).expect_err("the level is absent")
                } else {
                    index
                };
                self.levels.insert(index, Level::empty(price_ticks));
                index
            }
        };
        if fresh {
            self.live += 1;
        }
        let level = &mut self.levels[index];
        let tail = level.tail;
        {
            let order = arena.get_mut(slot);
            order.prev = tail;
            order.next = NIL;
        }
        if tail == NIL {
            level.head = slot;
        } else {
            arena.get_mut(tail).next = slot;
        }
        level.tail = slot;
        level.count += 1;
        level.qty_lots += qty_lots;
    }

    /// Unlinks `slot` from its level; a level it empties stays, empty, unless it was the best
    /// (see [`Ladder`]). The order's open quantity is taken off the level's total.
    pub fn unlink(&mut self, arena: &mut Arena, slot: u32) {
        let (price_ticks, qty_lots, prev, next) = {
            let order = arena.get(slot);
            (order.price_ticks, order.qty_open, order.prev, order.next)
        };
        let index = self
            .find(price_ticks)
            .expect("a resting order's level exists");
        if prev == NIL {
            self.levels[index].head = next;
        } else {
            arena.get_mut(prev).next = next;
        }
        if next == NIL {
            self.levels[index].tail = prev;
        } else {
            arena.get_mut(next).prev = prev;
        }
        let level = &mut self.levels[index];
        level.count -= 1;
        level.qty_lots -= qty_lots;
        if level.count == 0 {
            debug_assert_eq!(level.qty_lots, 0, "empty level with quantity: {level:?}");
            self.live -= 1;
            if index + 1 == self.levels.len() {
                while self.levels.last().is_some_and(|level| level.count == 0) {
                    self.levels.pop();
                }
            } else if self.levels.len() - self.live > self.live.max(EMPTY_LEVELS_KEPT) {
                self.compact();
            }
        }
    }

    /// Changes the open quantity of a resting order in place (keeps its time priority).
    pub fn reduce(&mut self, arena: &mut Arena, slot: u32, qty_lots: QtyLots) {
        let order = arena.get_mut(slot);
        debug_assert!(qty_lots > 0 && qty_lots < order.qty_open);
        order.qty_open -= qty_lots;
        let index = self
            .find(order.price_ticks)
            .expect("a resting order's level exists");
        self.levels[index].qty_lots -= qty_lots;
    }
}

/// A waiting stop order, sorted in trigger order within its side's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StopEntry {
    pub stop_ticks: PriceTicks,
    pub order_id: OrderId,
    pub slot: u32,
}

/// Stop orders of one side, in trigger order: buy stops by ascending stop price (the price rises
/// through the lowest first), sell stops by descending stop price, then by order id (time).
pub(crate) struct StopList {
    pub side: Side,
    pub entries: Vec<StopEntry>,
    pub entries_max: usize,
}

impl StopList {
    pub fn new(side: Side, entries_max: usize) -> StopList {
        StopList {
            side,
            entries: Vec::with_capacity(entries_max),
            entries_max,
        }
    }

    fn key(&self, stop_ticks: PriceTicks, order_id: OrderId) -> (PriceTicks, OrderId) {
        match self.side {
            Side::Buy => (stop_ticks, order_id),
            Side::Sell => (-stop_ticks, order_id),
        }
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.entries_max
    }

    pub fn insert(&mut self, entry: StopEntry) {
        assert!(!self.is_full(), "stop list full: callers check is_full");
        let key = self.key(entry.stop_ticks, entry.order_id);
        let index = self
            .entries
            .binary_search_by(|e| self.key(e.stop_ticks, e.order_id).cmp(&key))
            .expect_err("order ids are unique");
        self.entries.insert(index, entry);
    }

    pub fn remove(&mut self, stop_ticks: PriceTicks, order_id: OrderId) -> StopEntry {
        let key = self.key(stop_ticks, order_id);
        let index = self
            .entries
            .binary_search_by(|e| self.key(e.stop_ticks, e.order_id).cmp(&key))
            .expect("a waiting stop is in its list");
        self.entries.remove(index)
    }

    /// The first stop triggered by a last trade at `last_ticks`, if any.
    pub fn first_triggered(&self, last_ticks: PriceTicks) -> Option<StopEntry> {
        let first = *self.entries.first()?;
        let triggered = match self.side {
            Side::Buy => last_ticks >= first.stop_ticks,
            Side::Sell => last_ticks <= first.stop_ticks,
        };
        triggered.then_some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_at(price_ticks: PriceTicks) -> Order {
        Order {
            id: price_ticks as OrderId,
            price_ticks,
            qty_open: 1,
            state: SlotState::Resting,
            ..Order::FREE
        }
    }

    /// A bid ladder with one order at each of `prices`, and the slots in the same order.
    fn ladder_with(
        levels_max: usize,
        prices: impl Iterator<Item = PriceTicks>,
    ) -> (Ladder, Arena, Vec<u32>) {
        let mut ladder = Ladder::new(Side::Buy, levels_max);
        let mut arena = Arena::new(1 << 14);
        let slots = prices
            .map(|price| {
                let slot = arena.alloc(order_at(price));
                ladder.push(&mut arena, slot);
                slot
            })
            .collect();
        (ladder, arena, slots)
    }

    #[test]
    fn empty_levels_are_dropped_once_they_outnumber_the_live_ones_and_the_floor() {
        let (mut ladder, mut arena, slots) = ladder_with(1 << 13, 1..=3_000);
        let capacity = ladder.levels.capacity();
        // Empty every level but the best ten (2991..=3000), worst first.
        for &slot in &slots[..2_990] {
            ladder.unlink(&mut arena, slot);
            let empty = ladder.levels.len() - ladder.live;
            assert!(
                empty <= ladder.live.max(EMPTY_LEVELS_KEPT),
                "{empty} empty levels kept"
            );
        }
        assert_eq!(ladder.live, 10);
        assert!(ladder.levels.len() <= 10 + EMPTY_LEVELS_KEPT + 1);
        assert_eq!(ladder.live_levels().count(), 10);
        assert_eq!(ladder.levels.capacity(), capacity, "no reallocation");
    }

    #[test]
    fn a_full_vector_drops_its_empty_levels_instead_of_growing() {
        let (mut ladder, mut arena, slots) = ladder_with(8, 1..=8);
        let capacity = ladder.levels.capacity();
        for &slot in &slots[1..7] {
            ladder.unlink(&mut arena, slot);
        }
        assert_eq!(
            (ladder.live, ladder.levels.len()),
            (2, 8),
            "empty levels wait in place"
        );
        let slot = arena.alloc(order_at(100));
        assert!(ladder.has_room_for(100));
        ladder.push(&mut arena, slot);
        assert_eq!((ladder.live, ladder.levels.len()), (3, 3));
        assert_eq!(ladder.best().map(|level| level.price_ticks), Some(100));
        assert_eq!(ladder.levels.capacity(), capacity);
    }

    #[test]
    fn emptying_the_best_takes_the_empty_levels_under_it_too() {
        let (mut ladder, mut arena, slots) = ladder_with(16, 1..=5);
        for &slot in &slots[1..4] {
            ladder.unlink(&mut arena, slot); // 2, 3, 4 wait empty under the best (5)
        }
        ladder.unlink(&mut arena, slots[4]);
        assert_eq!(ladder.levels.len(), 1);
        assert_eq!(
            ladder.best().map(|level| (level.price_ticks, level.count)),
            Some((1, 1))
        );
    }

    #[test]
    fn an_empty_level_takes_orders_again_in_place() {
        let (mut ladder, mut arena, slots) = ladder_with(16, 1..=3);
        ladder.unlink(&mut arena, slots[1]);
        assert_eq!((ladder.live, ladder.levels.len()), (2, 3));
        let slot = arena.alloc(order_at(2));
        ladder.push(&mut arena, slot);
        assert_eq!((ladder.live, ladder.levels.len()), (3, 3));
        let level = ladder.levels[ladder.find(2).unwrap()];
        assert_eq!(
            (level.count, level.qty_lots, level.head, level.tail),
            (1, 1, slot, slot)
        );
    }
}
