//! Commands: everything that can change the matching core's state. A command arrives sequenced:
//! its sequence number and timestamp live in the record, stamped by the sequencer, never read from
//! a clock by the engine.

use serde::{Deserialize, Serialize};

use crate::types::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub client_order_id: ClientOrderId,
    pub side: Side,
    pub kind: OrderKind,
    pub qty_lots: QtyLots,
    /// `None` takes the account's default mode.
    pub stp: Option<SelfTradePrevention>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    NewOrder(NewOrder),
    Cancel {
        account: AccountId,
        order: OrderRef,
    },
    /// Cancel-replace. `qty_lots` is the new open quantity. Reducing the quantity at the same price
    /// keeps time priority; a price change or a quantity increase loses it.
    Replace {
        account: AccountId,
        order: OrderRef,
        price_ticks: PriceTicks,
        qty_lots: QtyLots,
        client_order_id_new: Option<ClientOrderId>,
    },
    /// Cancel every open order (resting and stop) of the account, optionally only on one
    /// instrument and one side. Orders are cancelled in order id order.
    MassCancel {
        account: AccountId,
        instrument: Option<InstrumentId>,
        side: Option<Side>,
    },
    SetSelfTradePrevention {
        account: AccountId,
        stp: SelfTradePrevention,
    },
    Halt {
        instrument: InstrumentId,
    },
    Resume {
        instrument: InstrumentId,
    },
}

/// A command as the sequencer hands it to the engine: the sequence number and the timestamp are
/// part of the record, never read from a clock by the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequenced<C = Command> {
    pub seq: u64,
    pub ts_ns: u64,
    pub command: C,
}
