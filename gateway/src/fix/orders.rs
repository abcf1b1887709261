//! Order entry over FIX: NewOrderSingle (D), OrderCancelRequest (F), OrderCancelReplaceRequest (G),
//! OrderStatusRequest (H) and OrderMassCancelRequest (q) become engine commands; the engine's
//! events become ExecutionReports (8), OrderCancelRejects (9) and OrderMassCancelReports (r).
//!
//! The engine knows an order's open quantity; FIX also wants CumQty, AvgPx and the total OrderQty.
//! Those are kept here, per order of the session's account, from the events the hub hands over.
//! Orders the session never saw (entered before it existed, or while the server was down after a
//! crash) are adopted from their first event with what that event tells.
//!
//! ClOrdID: Kinko's client order id is a u64, unique among an account's open orders, shared with
//! the WebSocket API. A ClOrdID that names an order (D, and G's new one) must be a decimal number;
//! one that only names a request (F, H, q) may be any text and is echoed.
//!
//! OrderQty in a replace is the new *total*; the engine takes the new *open* quantity, so the
//! command carries OrderQty − CumQty.

use std::collections::{HashMap, VecDeque};

use engine::{
    AccountId, CancelReason, Command, Event, ExchangeConfig, ExchangeEvent, InstrumentId,
    InstrumentSpec, NewOrder, OrderId, OrderKind, OrderRef, PostOnly, PriceTicks, QtyLots,
    RejectReason, Side, TimeInForce,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::codec::{Body, Message};
use super::tag;
use super::time::format_timestamp;
use crate::market::amount_text;

/// Closed orders kept for OrderStatusRequest.
pub const ORDERS_CLOSED_KEPT_MAX: usize = 10_000;
/// AvgPx decimals: an average of prices need not terminate.
const AVG_PX_DECIMALS: u32 = 10;

/// What the session does with an application message.
pub enum Outcome {
    /// Submit the command; the acknowledgement is matched with `pending`.
    Submit { command: Command, pending: Pending },
    /// Answer at once (a refusal, a status).
    Reply(Body),
    /// A BusinessMessageReject(j) with this reason and text.
    BusinessReject { reason: u32, text: String },
}

/// A request waiting for its acknowledgement, with what its replies must echo.
#[derive(Clone, Debug)]
pub enum Pending {
    New(NewRequest),
    Cancel(ChangeRequest),
    Replace(ChangeRequest),
    Mass(MassRequest),
}

#[derive(Clone, Debug)]
pub struct NewRequest {
    pub cl_ord_id: String,
    pub symbol: String,
    pub side: String,
    pub qty: String,
    pub ord_type: String,
    pub price: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ChangeRequest {
    pub cl_ord_id: String,
    pub orig_cl_ord_id: String,
    pub order_id: Option<OrderId>,
}

#[derive(Clone, Debug)]
pub struct MassRequest {
    pub cl_ord_id: String,
    pub request_type: String,
    pub symbol: Option<String>,
    pub side: Option<String>,
}

/// What FIX reports about one order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    pub order_id: OrderId,
    pub instrument: InstrumentId,
    pub side: Side,
    pub cl_ord_id: Option<u64>,
    pub ord_type: char,
    pub price_ticks: Option<PriceTicks>,
    pub stop_ticks: Option<PriceTicks>,
    pub tif: Option<char>,
    /// OrderQty: CumQty + LeavesQty while open.
    pub qty_lots: QtyLots,
    pub cum_lots: QtyLots,
    pub leaves_lots: QtyLots,
    /// Σ price × qty of the fills, for AvgPx.
    pub notional_ticks_lots: i128,
    pub status: char,
}

impl OrderState {
    fn from_accepted(order_id: OrderId, instrument: InstrumentId, side: Side, cl: u64) -> Self {
        OrderState {
            order_id,
            instrument,
            side,
            cl_ord_id: Some(cl),
            ord_type: '2',
            price_ticks: None,
            stop_ticks: None,
            tif: None,
            qty_lots: 0,
            cum_lots: 0,
            leaves_lots: 0,
            notional_ticks_lots: 0,
            status: '0',
        }
    }

    fn set_kind(&mut self, kind: &OrderKind) {
        let tif_char = |tif: TimeInForce| match tif {
            TimeInForce::Gtc => '1',
            TimeInForce::Ioc => '3',
            TimeInForce::Fok => '4',
        };
        match *kind {
            OrderKind::Limit {
                price_ticks, tif, ..
            } => {
                self.ord_type = '2';
                self.price_ticks = Some(price_ticks);
                self.tif = Some(tif_char(tif));
            }
            OrderKind::Market => self.ord_type = '1',
            OrderKind::StopMarket { stop_ticks } => {
                self.ord_type = '3';
                self.stop_ticks = Some(stop_ticks);
            }
            OrderKind::StopLimit {
                stop_ticks,
                price_ticks,
                tif,
            } => {
                self.ord_type = '4';
                self.stop_ticks = Some(stop_ticks);
                self.price_ticks = Some(price_ticks);
                self.tif = Some(tif_char(tif));
            }
        }
    }

    fn is_open(&self) -> bool {
        self.leaves_lots > 0 && matches!(self.status, '0' | '1')
    }

    /// OrdStatus while open: partially filled once anything traded.
    fn open_status(&self) -> char {
        if self.cum_lots > 0 {
            '1'
        } else {
            '0'
        }
    }
}

/// One ExecutionReport in the making.
struct Report<'a> {
    exec_id: String,
    exec_type: char,
    order: &'a OrderState,
    orig_cl_ord_id: Option<String>,
    cl_ord_id: Option<String>,
    fill: Option<(PriceTicks, QtyLots, String, char)>,
    text: Option<String>,
    ts_ns: u64,
}

/// Per-session order state and the requests in flight.
#[derive(Default)]
pub struct OrderEntry {
    orders: HashMap<OrderId, OrderState>,
    closed: VecDeque<OrderId>,
    pending: HashMap<u64, Pending>,
    /// The ClOrdIDs of accepted cancel requests, echoed on the cancel's report.
    cancels: HashMap<OrderId, ChangeRequest>,
    replaces: HashMap<OrderId, ChangeRequest>,
    local_exec_next: u64,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    orders: Vec<OrderState>,
}

impl OrderEntry {
    /// The open orders, for saving at shutdown (closed ones are not worth a restart).
    pub fn save(&self) -> String {
        let mut orders: Vec<OrderState> = self
            .orders
            .values()
            .filter(|o| o.is_open())
            .cloned()
            .collect();
        orders.sort_by_key(|o| o.order_id);
        serde_json::to_string(&Saved { orders }).expect("order state serializes")
    }

    pub fn load(text: &str) -> OrderEntry {
        let mut entry = OrderEntry::default();
        if let Ok(saved) = serde_json::from_str::<Saved>(text) {
            for order in saved.orders {
                entry.orders.insert(order.order_id, order);
            }
        }
        entry
    }

    pub fn remember(&mut self, token: u64, pending: Pending) {
        self.pending.insert(token, pending);
    }

    pub fn forget(&mut self, token: u64) -> Option<Pending> {
        self.pending.remove(&token)
    }

    pub fn order(&self, order_id: OrderId) -> Option<&OrderState> {
        self.orders.get(&order_id)
    }

    fn by_client(&self, cl: u64) -> Option<&OrderState> {
        // Open orders first: a client id is unique among open orders only.
        let open = self
            .orders
            .values()
            .find(|o| o.cl_ord_id == Some(cl) && o.is_open());
        open.or_else(|| {
            self.closed
                .iter()
                .rev()
                .filter_map(|id| self.orders.get(id))
                .find(|o| o.cl_ord_id == Some(cl))
        })
    }

    fn local_exec_id(&mut self, now_ns: u64) -> String {
        self.local_exec_next += 1;
        format!("K{now_ns}-{}", self.local_exec_next)
    }

    fn close(&mut self, order_id: OrderId) {
        self.closed.push_back(order_id);
        while self.closed.len() > ORDERS_CLOSED_KEPT_MAX {
            if let Some(old) = self.closed.pop_front() {
                if self.orders.get(&old).is_some_and(|o| !o.is_open()) {
                    self.orders.remove(&old);
                }
            }
        }
    }
}

/// Decimal text of a FIX field as an exact quantity or price.
fn decimal(text: &str) -> Result<Decimal, String> {
    text.parse::<Decimal>()
        .map_err(|_| format!("{text:?} is not a decimal"))
}

/// ClOrdID that names an order: a decimal u64.
pub fn numeric_cl_ord_id(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn instrument(exchange: &ExchangeConfig, symbol: &str) -> Option<(InstrumentId, InstrumentSpec)> {
    crate::protocol::instrument(exchange, symbol).ok()
}

/// OrdRejReason(103) of FIX 4.4 for an engine reason.
pub fn ord_rej_reason(reason: RejectReason) -> u32 {
    match reason {
        RejectReason::UnknownInstrument => 1,
        RejectReason::InstrumentHalted => 2,
        RejectReason::InsufficientBalance | RejectReason::TooManyOpenOrders => 3,
        RejectReason::UnknownOrder => 5,
        RejectReason::DuplicateClientOrderId => 6,
        RejectReason::QtyNotPositive
        | RejectReason::QtyBelowMin
        | RejectReason::QtyAboveMax
        | RejectReason::OffLot => 13,
        _ => 99,
    }
}

/// CxlRejReason(102) of FIX 4.4 for an engine reason.
pub fn cxl_rej_reason(reason: RejectReason) -> u32 {
    match reason {
        RejectReason::UnknownOrder | RejectReason::NotYourOrder => 1,
        RejectReason::DuplicateClientOrderId => 6,
        _ => 99,
    }
}

fn reason_text(reason: RejectReason) -> String {
    format!(
        "{} ({}): {}",
        crate::protocol::snake(reason.name()),
        reason.code(),
        reason.message()
    )
}

fn get(message: &Message, tag: u32) -> Option<String> {
    message.get(tag).map(str::to_string)
}

/// A field FIX 4.4 leaves optional that Kinko needs: when missing, a BusinessMessageReject
/// "conditionally required field missing", as QuickFIX answers a missing field in the application.
fn missing(message: &Message, tag: u32) -> Option<Outcome> {
    message.get(tag).is_none().then(|| Outcome::BusinessReject {
        reason: 5,
        text: format!(
            "Conditionally required field missing: {}({tag})",
            super::dictionary::field_name(tag)
        ),
    })
}

impl OrderEntry {
    /// NewOrderSingle → a `NewOrder` command, or an ExecutionReport rejecting it.
    pub fn new_order(
        &mut self,
        exchange: &ExchangeConfig,
        account: AccountId,
        message: &Message,
        now_ns: u64,
    ) -> Outcome {
        let request = NewRequest {
            cl_ord_id: get(message, tag::CL_ORD_ID).unwrap_or_default(),
            symbol: get(message, tag::SYMBOL).unwrap_or_default(),
            side: get(message, tag::SIDE).unwrap_or_default(),
            qty: get(message, tag::ORDER_QTY).unwrap_or_default(),
            ord_type: get(message, tag::ORD_TYPE).unwrap_or_default(),
            price: get(message, tag::PRICE),
        };
        for tag in [tag::SYMBOL, tag::ORDER_QTY] {
            if let Some(outcome) = missing(message, tag) {
                return outcome;
            }
        }
        match self.new_order_command(exchange, account, message, &request) {
            Ok(order) => Outcome::Submit {
                command: Command::NewOrder(order),
                pending: Pending::New(request),
            },
            Err((reason, text)) => {
                let exec_id = self.local_exec_id(now_ns);
                Outcome::Reply(new_rejected(&request, exec_id, reason, &text, now_ns))
            }
        }
    }

    fn new_order_command(
        &self,
        exchange: &ExchangeConfig,
        account: AccountId,
        message: &Message,
        request: &NewRequest,
    ) -> Result<NewOrder, (u32, String)> {
        let client_order_id = numeric_cl_ord_id(&request.cl_ord_id).ok_or_else(|| {
            (
                99,
                "ClOrdID(11) must be a decimal number below 2^64 (Kinko client order ids are u64)"
                    .to_string(),
            )
        })?;
        let (instrument, spec) = instrument(exchange, &request.symbol)
            .ok_or_else(|| (1, reason_text(RejectReason::UnknownInstrument)))?;
        let side = side(&request.side)?;
        let qty_lots = spec
            .qty_to_lots(decimal(&request.qty).map_err(|e| (13, e))?)
            .map_err(|r| (ord_rej_reason(r), reason_text(r)))?;
        let kind = order_kind(&spec, message, &request.ord_type)?;
        Ok(NewOrder {
            account,
            instrument,
            client_order_id,
            side,
            kind,
            qty_lots,
            stp: None,
        })
    }

    /// OrderCancelRequest → `Cancel`.
    pub fn cancel(&mut self, account: AccountId, message: &Message, now_ns: u64) -> Outcome {
        let request = change_request(message);
        match order_ref(message) {
            Ok(order) => {
                let _ = now_ns;
                Outcome::Submit {
                    command: Command::Cancel { account, order },
                    pending: Pending::Cancel(request),
                }
            }
            Err(text) => Outcome::Reply(self.cancel_rejected(&request, '1', 99, &text, None)),
        }
    }

    /// OrderCancelReplaceRequest → `Replace` with the new open quantity.
    pub fn replace(
        &mut self,
        exchange: &ExchangeConfig,
        account: AccountId,
        message: &Message,
        order_instrument: Option<InstrumentId>,
    ) -> Outcome {
        let request = change_request(message);
        for tag in [tag::PRICE, tag::ORDER_QTY] {
            if let Some(outcome) = missing(message, tag) {
                return outcome;
            }
        }
        match self.replace_command(exchange, account, message, &request, order_instrument) {
            Ok(command) => Outcome::Submit {
                command,
                pending: Pending::Replace(request),
            },
            Err((reason, text)) => {
                Outcome::Reply(self.cancel_rejected(&request, '2', reason, &text, None))
            }
        }
    }

    fn replace_command(
        &self,
        exchange: &ExchangeConfig,
        account: AccountId,
        message: &Message,
        request: &ChangeRequest,
        order_instrument: Option<InstrumentId>,
    ) -> Result<Command, (u32, String)> {
        let order = order_ref(message).map_err(|t| (99, t))?;
        let new_cl = numeric_cl_ord_id(&request.cl_ord_id).ok_or_else(|| {
            (
                99,
                "ClOrdID(11) must be a decimal number below 2^64 (Kinko client order ids are u64)"
                    .to_string(),
            )
        })?;
        let known = match order {
            OrderRef::Id(id) => self.orders.get(&id).filter(|o| o.is_open()),
            OrderRef::Client(cl) => self.by_client(cl).filter(|o| o.is_open()),
        };
        let instrument = known
            .map(|o| o.instrument)
            .or(order_instrument)
            .ok_or_else(|| (1, reason_text(RejectReason::UnknownOrder)))?;
        let spec = &exchange.instruments[instrument as usize];
        if let Some(symbol) = message.get(tag::SYMBOL) {
            if instrument_of(exchange, symbol) != Some(instrument) {
                return Err((
                    99,
                    format!("Symbol(55) {symbol} is not the order's instrument"),
                ));
            }
        }
        let price = message
            .get(tag::PRICE)
            .ok_or((99, "Price(44) required".to_string()))?;
        let price_ticks = spec
            .price_to_ticks(decimal(price).map_err(|e| (99, e))?)
            .map_err(|r| (99, reason_text(r)))?;
        let qty = message
            .get(tag::ORDER_QTY)
            .ok_or((99, "OrderQty(38) required".to_string()))?;
        let qty_total = spec
            .qty_to_lots(decimal(qty).map_err(|e| (99, e))?)
            .map_err(|r| (99, reason_text(r)))?;
        let cum_lots = known.map_or(0, |o| o.cum_lots);
        let qty_lots = qty_total - cum_lots;
        if qty_lots <= 0 {
            return Err((99, format!("OrderQty(38) {qty} does not exceed CumQty")));
        }
        let old_cl = known.and_then(|o| o.cl_ord_id);
        Ok(Command::Replace {
            account,
            order,
            price_ticks,
            qty_lots,
            client_order_id_new: (old_cl != Some(new_cl)).then_some(new_cl),
        })
    }

    /// OrderMassCancelRequest → `MassCancel`, or a rejecting report.
    pub fn mass_cancel(
        &mut self,
        exchange: &ExchangeConfig,
        account: AccountId,
        message: &Message,
    ) -> Outcome {
        let request = MassRequest {
            cl_ord_id: get(message, tag::CL_ORD_ID).unwrap_or_default(),
            request_type: get(message, tag::MASS_CANCEL_REQUEST_TYPE).unwrap_or_default(),
            symbol: get(message, tag::SYMBOL),
            side: get(message, tag::SIDE),
        };
        let side = match request.side.as_deref().map(side).transpose() {
            Ok(side) => side,
            Err((_, text)) => return Outcome::Reply(mass_rejected(&request, 99, &text)),
        };
        let instrument = match (request.request_type.as_str(), request.symbol.as_deref()) {
            ("7", _) => None,
            ("1", Some(symbol)) => match instrument_of(exchange, symbol) {
                Some(id) => Some(id),
                None => {
                    let text = reason_text(RejectReason::UnknownInstrument);
                    return Outcome::Reply(mass_rejected(&request, 1, &text));
                }
            },
            ("1", None) => return missing(message, tag::SYMBOL).expect("Symbol is absent"),
            _ => {
                let text = "MassCancelRequestType(530) must be 1 (by Symbol) or 7 (all orders)";
                return Outcome::Reply(mass_rejected(&request, 0, text));
            }
        };
        Outcome::Submit {
            command: Command::MassCancel {
                account,
                instrument,
                side,
            },
            pending: Pending::Mass(request),
        }
    }

    /// OrderStatusRequest → an ExecutionReport with ExecType=I (Order Status).
    pub fn status(&mut self, exchange: &ExchangeConfig, message: &Message, now_ns: u64) -> Body {
        let cl_ord_id = get(message, tag::CL_ORD_ID).unwrap_or_default();
        let exec_id = self.local_exec_id(now_ns);
        let by_id = message
            .get(tag::ORDER_ID)
            .and_then(|id| id.parse::<u64>().ok())
            .and_then(|id| self.orders.get(&id));
        let by_cl = numeric_cl_ord_id(&cl_ord_id).and_then(|cl| self.by_client(cl));
        match by_id.or(by_cl) {
            Some(order) => {
                let report = Report {
                    exec_id,
                    exec_type: 'I',
                    order,
                    orig_cl_ord_id: None,
                    cl_ord_id: None,
                    fill: None,
                    text: None,
                    ts_ns: now_ns,
                };
                execution_report(exchange, &report)
            }
            None => {
                let mut body = Body::new("8");
                body.field(tag::ORDER_ID, message.get(tag::ORDER_ID).unwrap_or("NONE"))
                    .field(tag::CL_ORD_ID, &cl_ord_id)
                    .field(tag::EXEC_ID, exec_id)
                    .field(tag::EXEC_TYPE, 'I')
                    .field(tag::ORD_STATUS, '8')
                    .field(tag::SYMBOL, message.get(tag::SYMBOL).unwrap_or(""))
                    .field(tag::SIDE, message.get(tag::SIDE).unwrap_or("1"))
                    .field(tag::LEAVES_QTY, 0)
                    .field(tag::CUM_QTY, 0)
                    .field(tag::AVG_PX, 0)
                    .field(tag::ORD_REJ_REASON, 5)
                    .field(tag::TEXT, "unknown order");
                body
            }
        }
    }

    /// The refusal of a request the engine never saw (busy, rate limited).
    pub fn refused(&mut self, pending: &Pending, text: &str, now_ns: u64) -> Body {
        match pending {
            Pending::New(request) => {
                let exec_id = self.local_exec_id(now_ns);
                new_rejected(request, exec_id, 99, text, now_ns)
            }
            Pending::Cancel(request) => self.cancel_rejected(request, '1', 99, text, None),
            Pending::Replace(request) => self.cancel_rejected(request, '2', 99, text, None),
            Pending::Mass(request) => mass_rejected(request, 99, text),
        }
    }

    fn cancel_rejected(
        &self,
        request: &ChangeRequest,
        response_to: char,
        reason: u32,
        text: &str,
        order_id: Option<OrderId>,
    ) -> Body {
        let known = order_id
            .or(request.order_id)
            .and_then(|id| self.orders.get(&id))
            .or_else(|| {
                numeric_cl_ord_id(&request.orig_cl_ord_id).and_then(|cl| self.by_client(cl))
            });
        let mut body = Body::new("9");
        body.field(
            tag::ORDER_ID,
            known.map_or("NONE".to_string(), |o| o.order_id.to_string()),
        )
        .field(tag::CL_ORD_ID, &request.cl_ord_id)
        .field(tag::ORIG_CL_ORD_ID, &request.orig_cl_ord_id)
        .field(tag::ORD_STATUS, known.map_or('8', |o| o.status))
        .field(tag::CXL_REJ_RESPONSE_TO, response_to)
        .field(tag::CXL_REJ_REASON, reason)
        .field(tag::TEXT, text);
        body
    }

    /// The replies an acknowledgement calls for: rejections and the mass cancel report. Accepted
    /// orders, fills and cancels are reported from the account's events, which follow.
    pub fn on_ack(
        &mut self,
        token: u64,
        seq: u64,
        events: &[ExchangeEvent],
        now_ns: u64,
    ) -> Vec<Body> {
        let Some(pending) = self.pending.remove(&token) else {
            return Vec::new();
        };
        let rejected = events.iter().find_map(|e| match e {
            ExchangeEvent::Order(Event::Rejected { reason, .. })
            | ExchangeEvent::Rejected { reason, .. } => Some(*reason),
            _ => None,
        });
        if let Some(reason) = rejected {
            let text = reason_text(reason);
            let body = match &pending {
                Pending::New(request) => new_rejected(
                    request,
                    format!("{seq}-0"),
                    ord_rej_reason(reason),
                    &text,
                    now_ns,
                ),
                Pending::Cancel(r) => {
                    self.cancel_rejected(r, '1', cxl_rej_reason(reason), &text, None)
                }
                Pending::Replace(r) => {
                    self.cancel_rejected(r, '2', cxl_rej_reason(reason), &text, None)
                }
                Pending::Mass(r) => mass_rejected(r, 99, &text),
            };
            return vec![body];
        }
        let mut out = Vec::new();
        for event in events {
            match (event, &pending) {
                (ExchangeEvent::Order(Event::Cancelled { order_id, .. }), Pending::Cancel(r)) => {
                    self.cancels.insert(*order_id, r.clone());
                }
                (ExchangeEvent::Order(Event::Replaced { order_id, .. }), Pending::Replace(r)) => {
                    self.replaces.insert(*order_id, r.clone());
                }
                (ExchangeEvent::Order(Event::MassCancelled { count, .. }), Pending::Mass(r)) => {
                    out.push(mass_report(r, seq, *count));
                }
                _ => {}
            }
        }
        out
    }

    /// The ExecutionReports of one event of the account's orders. `client_of` finds the client
    /// order id of an order this session has not seen (from the hub's mirror).
    pub fn on_event(
        &mut self,
        exchange: &ExchangeConfig,
        account: AccountId,
        (seq, index, ts_ns): (u64, usize, u64),
        event: &Event,
        fee: Option<(i64, i64, u8)>,
        client_of: &dyn Fn(OrderId) -> Option<u64>,
    ) -> Vec<Body> {
        let exec_id = format!("{seq}-{index}");
        let mut out = Vec::new();
        match *event {
            Event::Accepted {
                order_id,
                account: owner,
                instrument,
                client_order_id,
                side,
                kind,
                qty_lots,
                ..
            } if owner == account => {
                let mut order =
                    OrderState::from_accepted(order_id, instrument, side, client_order_id);
                order.set_kind(&kind);
                order.qty_lots = qty_lots;
                order.leaves_lots = qty_lots;
                self.orders.insert(order_id, order);
                out.push(self.report(exchange, exec_id, '0', order_id, None, ts_ns));
            }
            Event::Fill {
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
            } => {
                let (fee_maker, fee_taker, decimals) = fee.unwrap_or((0, 0, 0));
                let sides = [
                    (
                        maker_account,
                        maker_order_id,
                        aggressor.opposite(),
                        maker_qty_open,
                        fee_maker,
                        '1',
                    ),
                    (
                        taker_account,
                        taker_order_id,
                        aggressor,
                        taker_qty_open,
                        fee_taker,
                        '2',
                    ),
                ];
                for (owner, order_id, side, open, fee_units, liquidity) in sides {
                    if owner != account {
                        continue;
                    }
                    let order = self.adopt(order_id, instrument, side, open + qty_lots, client_of);
                    order.cum_lots += qty_lots;
                    order.leaves_lots = open;
                    order.notional_ticks_lots += i128::from(price_ticks) * i128::from(qty_lots);
                    order.qty_lots = order.qty_lots.max(order.cum_lots + open);
                    order.status = if open == 0 { '2' } else { '1' };
                    let fee_text = amount_text(fee_units, decimals);
                    let fill = Some((price_ticks, qty_lots, fee_text, liquidity));
                    out.push(self.fill_report(
                        exchange,
                        format!("{exec_id}-{liquidity}"),
                        order_id,
                        fill,
                        ts_ns,
                    ));
                    if open == 0 {
                        self.close(order_id);
                    }
                }
            }
            Event::Cancelled {
                order_id,
                account: owner,
                instrument,
                side,
                qty_lots,
                qty_open,
                reason,
                ..
            } if owner == account => {
                let order = self.adopt(order_id, instrument, side, qty_lots + qty_open, client_of);
                order.leaves_lots = qty_open;
                let restated = qty_open > 0;
                if restated {
                    order.qty_lots = order.cum_lots + qty_open;
                } else {
                    order.status = '4';
                }
                let text = (reason != CancelReason::Requested)
                    .then(|| crate::protocol::snake(&format!("{reason:?}")));
                let request = (!restated)
                    .then(|| self.cancels.remove(&order_id))
                    .flatten();
                let exec_type = if restated { 'D' } else { '4' };
                let mut report =
                    self.report(exchange, exec_id, exec_type, order_id, request, ts_ns);
                if restated {
                    report.field(tag::EXEC_RESTATEMENT_REASON, 99);
                }
                report.field_opt(tag::TEXT, text);
                out.push(report);
                if !restated {
                    self.close(order_id);
                }
            }
            Event::Replaced {
                order_id,
                account: owner,
                instrument,
                side,
                client_order_id,
                price_ticks_new,
                qty_lots_new,
                ..
            } if owner == account => {
                let order = self.adopt(order_id, instrument, side, qty_lots_new, client_of);
                let old_cl = order.cl_ord_id.replace(client_order_id);
                order.price_ticks = Some(price_ticks_new);
                order.leaves_lots = qty_lots_new;
                order.qty_lots = order.cum_lots + qty_lots_new;
                order.status = order.open_status();
                let request = self.replaces.remove(&order_id).unwrap_or(ChangeRequest {
                    cl_ord_id: client_order_id.to_string(),
                    orig_cl_ord_id: old_cl.map(|c| c.to_string()).unwrap_or_default(),
                    order_id: Some(order_id),
                });
                out.push(self.report(exchange, exec_id, '5', order_id, Some(request), ts_ns));
            }
            Event::Expired {
                order_id,
                account: owner,
                instrument,
                side,
                qty_lots,
            } if owner == account => {
                let order = self.adopt(order_id, instrument, side, qty_lots, client_of);
                order.leaves_lots = 0;
                order.status = 'C';
                out.push(self.report(exchange, exec_id, 'C', order_id, None, ts_ns));
                self.close(order_id);
            }
            _ => {}
        }
        out
    }

    /// The state of an order, adopting one never seen with the quantity `open_lots` still open.
    fn adopt(
        &mut self,
        order_id: OrderId,
        instrument: InstrumentId,
        side: Side,
        open_lots: QtyLots,
        client_of: &dyn Fn(OrderId) -> Option<u64>,
    ) -> &mut OrderState {
        self.orders.entry(order_id).or_insert_with(|| OrderState {
            order_id,
            instrument,
            side,
            cl_ord_id: client_of(order_id),
            ord_type: '2',
            price_ticks: None,
            stop_ticks: None,
            tif: None,
            qty_lots: open_lots,
            cum_lots: 0,
            leaves_lots: open_lots,
            notional_ticks_lots: 0,
            status: '0',
        })
    }

    fn report(
        &self,
        exchange: &ExchangeConfig,
        exec_id: String,
        exec_type: char,
        order_id: OrderId,
        request: Option<ChangeRequest>,
        ts_ns: u64,
    ) -> Body {
        let order = &self.orders[&order_id];
        let (cl_ord_id, orig_cl_ord_id) = match request {
            Some(r) => (Some(r.cl_ord_id), Some(r.orig_cl_ord_id)),
            None => (None, None),
        };
        execution_report(
            exchange,
            &Report {
                exec_id,
                exec_type,
                order,
                orig_cl_ord_id,
                cl_ord_id,
                fill: None,
                text: None,
                ts_ns,
            },
        )
    }

    fn fill_report(
        &self,
        exchange: &ExchangeConfig,
        exec_id: String,
        order_id: OrderId,
        fill: Option<(PriceTicks, QtyLots, String, char)>,
        ts_ns: u64,
    ) -> Body {
        let order = &self.orders[&order_id];
        execution_report(
            exchange,
            &Report {
                exec_id,
                exec_type: 'F',
                order,
                orig_cl_ord_id: None,
                cl_ord_id: None,
                fill,
                text: None,
                ts_ns,
            },
        )
    }
}

fn instrument_of(exchange: &ExchangeConfig, symbol: &str) -> Option<InstrumentId> {
    instrument(exchange, symbol).map(|(id, _)| id)
}

fn side(text: &str) -> Result<Side, (u32, String)> {
    match text {
        "1" => Ok(Side::Buy),
        "2" => Ok(Side::Sell),
        other => Err((
            11,
            format!("Side(54)={other} is not supported: 1 (buy) or 2 (sell)"),
        )),
    }
}

fn side_char(side: Side) -> char {
    match side {
        Side::Buy => '1',
        Side::Sell => '2',
    }
}

/// OrdType, Price, StopPx, TimeInForce and ExecInst into an engine order kind.
fn order_kind(
    spec: &InstrumentSpec,
    message: &Message,
    ord_type: &str,
) -> Result<OrderKind, (u32, String)> {
    let price_of = |tag: u32| -> Result<PriceTicks, (u32, String)> {
        let text = message.get(tag).ok_or_else(|| {
            (
                99,
                format!(
                    "{}({tag}) is required for OrdType(40)={ord_type}",
                    super::dictionary::field_name(tag)
                ),
            )
        })?;
        spec.price_to_ticks(decimal(text).map_err(|e| (99, e))?)
            .map_err(|r| (ord_rej_reason(r), reason_text(r)))
    };
    let tif = match message.get(tag::TIME_IN_FORCE) {
        None | Some("1") => TimeInForce::Gtc,
        Some("3") => TimeInForce::Ioc,
        Some("4") => TimeInForce::Fok,
        Some(other) => {
            return Err((
                11,
                format!("TimeInForce(59)={other} is not supported: 1 (GTC), 3 (IOC) or 4 (FOK)"),
            ))
        }
    };
    let post_only = match message.get(tag::EXEC_INST) {
        None => PostOnly::No,
        Some("6") => PostOnly::Yes,
        Some(other) => {
            return Err((
                11,
                format!("ExecInst(18)={other} is not supported: only 6 (post-only)"),
            ))
        }
    };
    let no_price = |tag: u32| -> Result<(), (u32, String)> {
        match message.get(tag) {
            Some(_) => Err((
                99,
                format!(
                    "{}({tag}) does not apply to OrdType(40)={ord_type}",
                    super::dictionary::field_name(tag)
                ),
            )),
            None => Ok(()),
        }
    };
    if post_only == PostOnly::Yes && ord_type != "2" {
        return Err((
            11,
            "ExecInst(18)=6 (post-only) applies to limit orders".into(),
        ));
    }
    match ord_type {
        "1" => {
            no_price(tag::PRICE)?;
            no_price(tag::STOP_PX)?;
            Ok(OrderKind::Market)
        }
        "2" => {
            no_price(tag::STOP_PX)?;
            Ok(OrderKind::Limit {
                price_ticks: price_of(tag::PRICE)?,
                tif,
                post_only,
            })
        }
        "3" => {
            no_price(tag::PRICE)?;
            Ok(OrderKind::StopMarket {
                stop_ticks: price_of(tag::STOP_PX)?,
            })
        }
        "4" => Ok(OrderKind::StopLimit {
            stop_ticks: price_of(tag::STOP_PX)?,
            price_ticks: price_of(tag::PRICE)?,
            tif,
        }),
        other => Err((
            11,
            format!("OrdType(40)={other} is not supported: 1, 2, 3 or 4"),
        )),
    }
}

fn change_request(message: &Message) -> ChangeRequest {
    ChangeRequest {
        cl_ord_id: get(message, tag::CL_ORD_ID).unwrap_or_default(),
        orig_cl_ord_id: get(message, tag::ORIG_CL_ORD_ID).unwrap_or_default(),
        order_id: message.get(tag::ORDER_ID).and_then(|id| id.parse().ok()),
    }
}

/// The order a cancel or replace names: OrderID(37) when given, else OrigClOrdID(41).
fn order_ref(message: &Message) -> Result<OrderRef, String> {
    if let Some(id) = message.get(tag::ORDER_ID) {
        return id
            .parse()
            .map(OrderRef::Id)
            .map_err(|_| format!("OrderID(37) {id:?} is not a Kinko order id"));
    }
    let orig = message.get(tag::ORIG_CL_ORD_ID).unwrap_or("");
    numeric_cl_ord_id(orig)
        .map(OrderRef::Client)
        .ok_or_else(|| format!("OrigClOrdID(41) {orig:?} names no Kinko order (a decimal u64)"))
}

fn execution_report(exchange: &ExchangeConfig, report: &Report) -> Body {
    let order = report.order;
    let spec = &exchange.instruments[order.instrument as usize];
    let qty = |lots: QtyLots| spec.lots_to_qty(lots);
    let price = |ticks: PriceTicks| spec.ticks_to_price(ticks);
    let cl_ord_id = report
        .cl_ord_id
        .clone()
        .or_else(|| order.cl_ord_id.map(|c| c.to_string()));
    let mut body = Body::new("8");
    body.field(tag::ORDER_ID, order.order_id)
        .field_opt(tag::CL_ORD_ID, cl_ord_id)
        .field_opt(tag::ORIG_CL_ORD_ID, report.orig_cl_ord_id.clone())
        .field(tag::EXEC_ID, &report.exec_id)
        .field(tag::EXEC_TYPE, report.exec_type)
        .field(tag::ORD_STATUS, order.status)
        .field(tag::SYMBOL, &spec.symbol)
        .field(tag::SIDE, side_char(order.side))
        .field(tag::ORDER_QTY, qty(order.qty_lots))
        .field(tag::ORD_TYPE, order.ord_type)
        .field_opt(tag::PRICE, order.price_ticks.map(price))
        .field_opt(tag::STOP_PX, order.stop_ticks.map(price))
        .field_opt(tag::TIME_IN_FORCE, order.tif);
    if let Some((price_ticks, qty_lots, fee, liquidity)) = &report.fill {
        body.field(tag::LAST_QTY, qty(*qty_lots))
            .field(tag::LAST_PX, price(*price_ticks))
            .field(tag::COMMISSION, fee)
            .field(tag::COMM_TYPE, 3)
            .field(tag::LAST_LIQUIDITY_IND, liquidity);
    }
    body.field(tag::LEAVES_QTY, qty(order.leaves_lots))
        .field(tag::CUM_QTY, qty(order.cum_lots))
        .field(tag::AVG_PX, avg_px(spec, order))
        .field(tag::TRANSACT_TIME, format_timestamp(report.ts_ns))
        .field_opt(tag::TEXT, report.text.clone());
    body
}

/// Σ(price × qty) / Σ qty, in price units, rounded to [`AVG_PX_DECIMALS`].
pub fn avg_px(spec: &InstrumentSpec, order: &OrderState) -> Decimal {
    if order.cum_lots == 0 {
        return Decimal::ZERO;
    }
    // Σ price × qty stays below 2^80 (both below 2^40): well inside Decimal's 96 bits.
    let notional = Decimal::from_i128_with_scale(order.notional_ticks_lots, 0);
    notional
        .checked_mul(spec.tick_size)
        .and_then(|n| n.checked_div(Decimal::from(order.cum_lots)))
        .expect("AvgPx fits a Decimal")
        .round_dp(AVG_PX_DECIMALS)
        .normalize()
}

fn new_rejected(
    request: &NewRequest,
    exec_id: String,
    reason: u32,
    text: &str,
    ts_ns: u64,
) -> Body {
    let mut body = Body::new("8");
    body.field(tag::ORDER_ID, "NONE")
        .field(tag::CL_ORD_ID, &request.cl_ord_id)
        .field(tag::EXEC_ID, exec_id)
        .field(tag::EXEC_TYPE, '8')
        .field(tag::ORD_STATUS, '8')
        .field(tag::SYMBOL, &request.symbol)
        .field(tag::SIDE, &request.side)
        .field_opt(
            tag::ORDER_QTY,
            (!request.qty.is_empty()).then_some(&request.qty),
        )
        .field_opt(
            tag::ORD_TYPE,
            (!request.ord_type.is_empty()).then_some(&request.ord_type),
        )
        .field_opt(tag::PRICE, request.price.as_ref())
        .field(tag::LEAVES_QTY, 0)
        .field(tag::CUM_QTY, 0)
        .field(tag::AVG_PX, 0)
        .field(tag::ORD_REJ_REASON, reason)
        .field(tag::TRANSACT_TIME, format_timestamp(ts_ns))
        .field(tag::TEXT, text);
    body
}

fn mass_rejected(request: &MassRequest, reason: u32, text: &str) -> Body {
    let mut body = Body::new("r");
    body.field(tag::CL_ORD_ID, &request.cl_ord_id)
        .field(tag::ORDER_ID, "NONE")
        .field(tag::MASS_CANCEL_REQUEST_TYPE, &request.request_type)
        .field(tag::MASS_CANCEL_RESPONSE, 0)
        .field(tag::MASS_CANCEL_REJECT_REASON, reason)
        .field_opt(tag::SYMBOL, request.symbol.as_ref())
        .field_opt(tag::SIDE, request.side.as_ref())
        .field(tag::TEXT, text);
    body
}

fn mass_report(request: &MassRequest, seq: u64, count: u32) -> Body {
    let mut body = Body::new("r");
    body.field(tag::CL_ORD_ID, &request.cl_ord_id)
        .field(tag::ORDER_ID, format!("MASS-{seq}"))
        .field(tag::MASS_CANCEL_REQUEST_TYPE, &request.request_type)
        .field(tag::MASS_CANCEL_RESPONSE, &request.request_type)
        .field(tag::TOTAL_AFFECTED_ORDERS, count)
        .field_opt(tag::SYMBOL, request.symbol.as_ref())
        .field_opt(tag::SIDE, request.side.as_ref());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InstrumentSpec {
        engine::defaults::config().instruments[0].clone()
    }

    #[test]
    fn avg_px_is_exact_then_rounded() {
        let mut order = OrderState::from_accepted(1, 0, Side::Buy, 1);
        order.cum_lots = 3;
        order.notional_ticks_lots = 15_000_000 + 15_000_001 + 15_000_001;
        assert_eq!(avg_px(&spec(), &order).to_string(), "15000000.6666666667");
        order.cum_lots = 0;
        assert_eq!(avg_px(&spec(), &order), Decimal::ZERO);
    }

    #[test]
    fn numeric_client_ids_only() {
        assert_eq!(numeric_cl_ord_id("42"), Some(42));
        assert_eq!(numeric_cl_ord_id("18446744073709551615"), Some(u64::MAX));
        assert_eq!(numeric_cl_ord_id("18446744073709551616"), None);
        assert_eq!(numeric_cl_ord_id("ABC"), None);
        assert_eq!(numeric_cl_ord_id("-1"), None);
        assert_eq!(numeric_cl_ord_id(""), None);
    }
}
