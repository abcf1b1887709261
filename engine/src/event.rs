//! Events: the only output of the matching core. Each command yields at least one event. Level-2
//! book changes are derivable from events alone, see [`Event::level_delta`].

use serde::{Deserialize, Serialize};

use crate::error::RejectReason;
use crate::types::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CancelReason {
    /// The owner asked (cancel or mass cancel).
    Requested,
    /// Self-trade prevention removed (part of) the order instead of printing a trade.
    SelfTradePrevention,
    /// A triggered stop-limit's price fell outside the band at the moment of triggering.
    OutsidePriceBand,
    /// A triggered stop-limit found no room on the book for its rest.
    BookFull,
}

/// Where the quantity removed by a cancel was: on the book (a level shrinks), in the incoming
/// order (nothing on the book changes), or in the stop list (not on the public book either).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Origin {
    Book,
    Incoming,
    Stops,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Priority {
    Kept,
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Accepted {
        order_id: OrderId,
        account: AccountId,
        instrument: InstrumentId,
        client_order_id: ClientOrderId,
        side: Side,
        kind: OrderKind,
        qty_lots: QtyLots,
        stp: SelfTradePrevention,
    },
    Rejected {
        account: AccountId,
        /// The client order id of a new order or of a replace's new id, when there is one.
        client_order_id: Option<ClientOrderId>,
        /// The order the command was about, for cancels and replaces.
        order: Option<OrderRef>,
        reason: RejectReason,
    },
    Fill {
        instrument: InstrumentId,
        maker_order_id: OrderId,
        taker_order_id: OrderId,
        maker_account: AccountId,
        taker_account: AccountId,
        price_ticks: PriceTicks,
        qty_lots: QtyLots,
        /// The taker's side.
        aggressor: Side,
        maker_qty_open: QtyLots,
        taker_qty_open: QtyLots,
    },
    /// The rest of an order went onto the book.
    Rested {
        order_id: OrderId,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        price_ticks: PriceTicks,
        qty_lots: QtyLots,
    },
    /// `qty_lots` were removed from the order; `qty_open` remain (zero: the order is gone).
    Cancelled {
        order_id: OrderId,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        price_ticks: PriceTicks,
        qty_lots: QtyLots,
        qty_open: QtyLots,
        reason: CancelReason,
        origin: Origin,
    },
    Replaced {
        order_id: OrderId,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        client_order_id: ClientOrderId,
        price_ticks_old: PriceTicks,
        qty_lots_old: QtyLots,
        price_ticks_new: PriceTicks,
        qty_lots_new: QtyLots,
        priority: Priority,
    },
    /// The unfilled rest of an IOC, FOK or market order, which never rested.
    Expired {
        order_id: OrderId,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        qty_lots: QtyLots,
    },
    /// A stop order reached its stop price and now executes as a market or limit order.
    Triggered {
        order_id: OrderId,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        stop_ticks: PriceTicks,
        last_ticks: PriceTicks,
    },
    Halted {
        instrument: InstrumentId,
    },
    Resumed {
        instrument: InstrumentId,
    },
    /// Closes a mass cancel: the `Cancelled` events before it are its work.
    MassCancelled {
        account: AccountId,
        instrument: Option<InstrumentId>,
        side: Option<Side>,
        count: u32,
    },
    SelfTradePreventionSet {
        account: AccountId,
        stp: SelfTradePrevention,
    },
}

/// A change of one level of the public book: the total at `price_ticks` on `side` moves by
/// `delta_lots`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelDelta {
    pub instrument: InstrumentId,
    pub side: Side,
    pub price_ticks: PriceTicks,
    pub delta_lots: QtyLots,
}

impl Event {
    /// The level-2 change this event implies, if any. Applying the deltas of every event, in order,
    /// to an empty ladder reproduces the book's levels exactly (tested in `tests/level2.rs`).
    pub fn level_delta(&self) -> Option<LevelDelta> {
        match *self {
            Event::Fill {
                instrument,
                price_ticks,
                qty_lots,
                aggressor,
                ..
            } => Some(LevelDelta {
                instrument,
                side: aggressor.opposite(),
                price_ticks,
                delta_lots: -qty_lots,
            }),
            Event::Rested {
                instrument,
                side,
                price_ticks,
                qty_lots,
                ..
            } => Some(LevelDelta {
                instrument,
                side,
                price_ticks,
                delta_lots: qty_lots,
            }),
            Event::Cancelled {
                instrument,
                side,
                price_ticks,
                qty_lots,
                origin: Origin::Book,
                ..
            } => Some(LevelDelta {
                instrument,
                side,
                price_ticks,
                delta_lots: -qty_lots,
            }),
            Event::Replaced {
                instrument,
                side,
                price_ticks_old,
                qty_lots_old,
                qty_lots_new,
                priority,
                ..
            } => {
                let delta_lots = match priority {
                    Priority::Kept => qty_lots_new - qty_lots_old,
                    // The order left its level; it re-enters through fills and `Rested`.
                    Priority::Lost => -qty_lots_old,
                };
                Some(LevelDelta {
                    instrument,
                    side,
                    price_ticks: price_ticks_old,
                    delta_lots,
                })
            }
            _ => None,
        }
    }
}
