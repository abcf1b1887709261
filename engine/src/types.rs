//! The engine's vocabulary: identifiers, sides, order kinds and self-trade prevention modes.
//!
//! Prices and quantities are integers in the instrument's ticks and lots. Decimals exist only at the
//! edge (see [`crate::instrument::InstrumentSpec`]).

use serde::{Deserialize, Serialize};

/// An account, dense from zero; the ledger owns what it holds.
pub type AccountId = u32;
/// An instrument, dense from zero in the order of the configuration.
pub type InstrumentId = u32;
/// Assigned by the engine to every accepted order: dense and monotonic from 1.
pub type OrderId = u64;
/// Chosen by the client; unique per account among its open orders.
pub type ClientOrderId = u64;
/// A price in ticks of the instrument (price = ticks × tick size).
pub type PriceTicks = i64;
/// A quantity in lots of the instrument (quantity = lots × lot size).
pub type QtyLots = i64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// True when an order on `self` limited at `limit` may trade against a resting price `resting`.
    #[inline]
    pub fn crosses(self, limit: PriceTicks, resting: PriceTicks) -> bool {
        match self {
            Side::Buy => limit >= resting,
            Side::Sell => limit <= resting,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeInForce {
    /// Good till cancelled: the remainder rests on the book.
    Gtc,
    /// Immediate or cancel: whatever does not trade at once expires.
    Ioc,
    /// Fill or kill: trades in full at once or not at all.
    Fok,
}

/// What an order asks for. Market orders never sweep the whole book: they are limited to the
/// instrument's price band around the reference price, and whatever remains expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderKind {
    Limit {
        price_ticks: PriceTicks,
        tif: TimeInForce,
        post_only: PostOnly,
    },
    Market,
    /// Becomes a market order when the last trade price reaches `stop_ticks`.
    StopMarket {
        stop_ticks: PriceTicks,
    },
    /// Becomes a limit order when the last trade price reaches `stop_ticks`.
    StopLimit {
        stop_ticks: PriceTicks,
        price_ticks: PriceTicks,
        tif: TimeInForce,
    },
}

impl OrderKind {
    pub fn limit(price_ticks: PriceTicks, tif: TimeInForce) -> OrderKind {
        OrderKind::Limit {
            price_ticks,
            tif,
            post_only: PostOnly::No,
        }
    }

    pub fn post_only(price_ticks: PriceTicks) -> OrderKind {
        OrderKind::Limit {
            price_ticks,
            tif: TimeInForce::Gtc,
            post_only: PostOnly::Yes,
        }
    }

    pub fn is_stop(&self) -> bool {
        matches!(
            self,
            OrderKind::StopMarket { .. } | OrderKind::StopLimit { .. }
        )
    }
}

/// Post-only: the order must add liquidity; one that would take is rejected whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PostOnly {
    No,
    Yes,
}

/// What happens when an incoming order would trade with a resting order of the same account.
/// A self-match never prints a trade. The incoming (taker) order's mode decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum SelfTradePrevention {
    /// Cancel the resting order and keep matching the incoming one.
    #[default]
    CancelResting,
    /// Cancel the rest of the incoming order; the resting one stays.
    CancelIncoming,
    /// Cancel both.
    CancelBoth,
    /// Decrement both by the smaller open quantity; whichever reaches zero is cancelled
    /// (both when equal), and the incoming order keeps matching if something is left of it.
    DecrementAndCancel,
}

/// How a command names an existing order: by the engine's id or by the client's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderRef {
    Id(OrderId),
    Client(ClientOrderId),
}
