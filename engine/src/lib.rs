//! Kinko's matching core: order books, order types and price-time priority, as a pure,
//! deterministic state machine.
//!
//! [`Matcher::apply`] takes one sequenced command and appends its events. It never reads a clock,
//! never does I/O, never iterates a hash map into its output and, in steady state, never allocates:
//! its arenas, ladders and indices are sized at start-up from [`EngineConfig`]. Prices and
//! quantities are integer ticks and lots; decimals exist only at the edge
//! ([`InstrumentSpec::price_to_ticks`], [`InstrumentSpec::qty_to_lots`]).
//!
//! It must never: read the time, touch a file or a socket, round a price or a quantity, or print a
//! trade that did not come out of matching on the public book.

pub mod audit;
mod book;
pub mod command;
pub mod custody;
pub mod defaults;
pub mod error;
pub mod event;
pub mod exchange;
mod hash;
pub mod instrument;
pub mod journal;
pub mod matcher;
pub mod node;
pub mod runtime;
pub mod snapshot;
mod table;
pub mod types;

pub use command::{Command, NewOrder, Sequenced};
pub use error::RejectReason;
pub use event::{CancelReason, Event, LevelDelta, Origin, Priority};
pub use exchange::{
    Alert, Exchange, ExchangeCommand, ExchangeConfig, ExchangeEvent, ExchangeSnapshot, HouseSide,
    InvariantViolation, Settlement, TxId, Withdrawal, WithdrawalId,
};
pub use instrument::{HousePolicy, InstrumentSpec};
pub use matcher::{
    BookSnapshot, BookViolation, EngineConfig, Matcher, MatcherSnapshot, OrderSnapshot, OrderView,
    Trading, Waiting,
};
pub use types::*;
