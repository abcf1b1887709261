//! The WebSocket API's messages (docs/API.md): parsing of requests with a specific error for each
//! way they can be wrong, and the JSON of replies, executions and balances. Numbers that are money
//! travel as strings; order ids as strings (they exceed JavaScript's safe integers in time).

use engine::{
    AccountId, CancelReason, ClientOrderId, Event, ExchangeConfig, InstrumentId, InstrumentSpec,
    OrderKind, PostOnly, RejectReason, SelfTradePrevention, Side, TimeInForce,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::market::{amount_text, side_name};

/// A request error: a stable code, a message, and the request id when one was readable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub req_id: Option<u64>,
    /// When trying again makes sense (throttled logins).
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: code.into(),
            message: message.into(),
            req_id: None,
            retry_after_ms: None,
        }
    }

    pub fn reject(reason: RejectReason) -> ApiError {
        ApiError {
            code: snake(reason.name()),
            message: reason.message().into(),
            req_id: None,
            retry_after_ms: None,
        }
    }

    pub fn json(&self) -> Value {
        let mut error = json!({ "type": "error", "req_id": self.req_id, "code": self.code, "message": self.message });
        if let Some(ms) = self.retry_after_ms {
            error["retry_after_ms"] = json!(ms);
        }
        error
    }
}

/// `OffTick` → `off_tick`.
pub fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SideName {
    Buy,
    Sell,
}

impl SideName {
    pub fn side(self) -> Side {
        match self {
            SideName::Buy => Side::Buy,
            SideName::Sell => Side::Sell,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderTypeName {
    Limit,
    Market,
    StopMarket,
    StopLimit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TifName {
    Gtc,
    Ioc,
    Fok,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StpName {
    CancelResting,
    CancelIncoming,
    CancelBoth,
    DecrementAndCancel,
}

impl StpName {
    fn stp(self) -> SelfTradePrevention {
        match self {
            StpName::CancelResting => SelfTradePrevention::CancelResting,
            StpName::CancelIncoming => SelfTradePrevention::CancelIncoming,
            StpName::CancelBoth => SelfTradePrevention::CancelBoth,
            StpName::DecrementAndCancel => SelfTradePrevention::DecrementAndCancel,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelAllAfterMsg {
    pub req_id: Option<u64>,
    /// Milliseconds from now; 0 disarms the switch.
    pub timeout_ms: u64,
}

/// The longest dead-man's switch timeout: ten minutes.
pub const CANCEL_ALL_AFTER_MAX_MS: u64 = 600_000;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    pub req_id: Option<u64>,
    pub channels: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub req_id: Option<u64>,
    pub key: String,
    pub ts: u64,
    pub nonce: u64,
    pub sig: String,
    #[serde(default)]
    pub cancel_on_disconnect: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrderMsg {
    pub req_id: Option<u64>,
    pub instrument: String,
    pub side: SideName,
    pub order_type: OrderTypeName,
    pub qty: String,
    pub client_order_id: ClientOrderId,
    #[serde(default)]
    pub price: Option<String>,
    #[serde(default)]
    pub stop_price: Option<String>,
    #[serde(default)]
    pub tif: Option<TifName>,
    #[serde(default)]
    pub post_only: bool,
    #[serde(default)]
    pub stp: Option<StpName>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelMsg {
    pub req_id: Option<u64>,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub client_order_id: Option<ClientOrderId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceMsg {
    pub req_id: Option<u64>,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub client_order_id: Option<ClientOrderId>,
    pub price: String,
    pub qty: String,
    #[serde(default)]
    pub new_client_order_id: Option<ClientOrderId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MassCancelMsg {
    pub req_id: Option<u64>,
    #[serde(default)]
    pub instrument: Option<String>,
    #[serde(default)]
    pub side: Option<SideName>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentMsg {
    pub req_id: Option<u64>,
    pub instrument: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plain {
    pub req_id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Subscribe(Subscribe),
    Unsubscribe(Subscribe),
    Login(Login),
    NewOrder(NewOrderMsg),
    Cancel(CancelMsg),
    Replace(ReplaceMsg),
    MassCancel(MassCancelMsg),
    Halt(InstrumentMsg),
    Resume(InstrumentMsg),
    Ping(Plain),
    /// The logged-in account's open orders.
    OpenOrders(Plain),
    /// The dead-man's switch: cancel every open order of the account unless refreshed in time.
    CancelAllAfter(CancelAllAfterMsg),
    /// Deposits, withdrawals, halts, cold → hot approvals, top-ups (gateway::custody).
    Custody(crate::custody::CustodyRequest),
    /// Keys, the security status, house policy, cancelling a cold → hot move (gateway::operator).
    Operator(crate::operator::OperatorRequest),
}

/// Parses one text frame, naming precisely what is wrong with it.
pub fn parse(text: &str) -> Result<Request, ApiError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::new("bad_json", format!("not valid JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(ApiError::new("bad_json", "a request is a JSON object"));
    };
    let req_id = object.get("req_id").and_then(Value::as_u64);
    let with_id = |mut e: ApiError| {
        e.req_id = req_id;
        e
    };
    let kind = match object.remove("type") {
        Some(Value::String(kind)) => kind,
        Some(_) => {
            return Err(with_id(ApiError::new(
                "invalid_field",
                "field `type` must be a string",
            )))
        }
        None => {
            return Err(with_id(ApiError::new(
                "missing_field",
                "missing field `type`",
            )))
        }
    };
    let body = |object: Map<String, Value>| Value::Object(object);
    let request = match kind.as_str() {
        "subscribe" => typed(body(object)).map(Request::Subscribe),
        "unsubscribe" => typed(body(object)).map(Request::Unsubscribe),
        "login" => typed(body(object)).map(Request::Login),
        "new_order" => typed(body(object)).map(Request::NewOrder),
        "cancel" => typed(body(object)).map(Request::Cancel),
        "replace" => typed(body(object)).map(Request::Replace),
        "mass_cancel" => typed(body(object)).map(Request::MassCancel),
        "halt" => typed(body(object)).map(Request::Halt),
        "resume" => typed(body(object)).map(Request::Resume),
        "ping" => typed(body(object)).map(Request::Ping),
        "open_orders" => typed(body(object)).map(Request::OpenOrders),
        "cancel_all_after" => typed(body(object)).map(Request::CancelAllAfter),
        other => match crate::custody::CustodyRequest::parse(other, body(object.clone())) {
            Some(request) => request.map(Request::Custody),
            None => match crate::operator::OperatorRequest::parse(other, body(object)) {
                Some(request) => request.map(Request::Operator),
                None => Err(ApiError::new(
                    "unknown_type",
                    format!("unknown message type `{other}`"),
                )),
            },
        },
    };
    request.map_err(with_id)
}

pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        let code = if text.starts_with("missing field") {
            "missing_field"
        } else if text.starts_with("unknown field") {
            "unknown_field"
        } else {
            "invalid_field"
        };
        ApiError::new(code, text)
    })
}

/// Instrument lookup by symbol (`BTC/JPY`; `BTC-JPY` and `BTC_JPY` are accepted too).
pub fn instrument(
    config: &ExchangeConfig,
    symbol: &str,
) -> Result<(InstrumentId, InstrumentSpec), ApiError> {
    let wanted = symbol.replace(['-', '_'], "/").to_ascii_uppercase();
    config
        .instruments
        .iter()
        .position(|i| i.symbol == wanted)
        .map(|i| (i as InstrumentId, config.instruments[i].clone()))
        .ok_or_else(|| ApiError::reject(RejectReason::UnknownInstrument))
}

fn decimal(field: &str, text: &str) -> Result<rust_decimal::Decimal, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            "invalid_field",
            format!("field `{field}` must be a decimal string, got {text:?}"),
        )
    })
}

pub fn price(spec: &InstrumentSpec, field: &str, text: &str) -> Result<i64, ApiError> {
    spec.price_to_ticks(decimal(field, text)?)
        .map_err(ApiError::reject)
}

pub fn qty(spec: &InstrumentSpec, text: &str) -> Result<i64, ApiError> {
    spec.qty_to_lots(decimal("qty", text)?)
        .map_err(ApiError::reject)
}

/// The engine order of a `new_order` message.
pub fn order_kind(spec: &InstrumentSpec, m: &NewOrderMsg) -> Result<OrderKind, ApiError> {
    let need = |field: &str, v: &Option<String>| -> Result<String, ApiError> {
        v.clone().ok_or_else(|| {
            ApiError::new(
                "missing_field",
                format!("field `{field}` is required for {:?} orders", m.order_type),
            )
        })
    };
    let forbid = |field: &str, present: bool| -> Result<(), ApiError> {
        if present {
            return Err(ApiError::new(
                "invalid_field",
                format!(
                    "field `{field}` does not apply to {:?} orders",
                    m.order_type
                ),
            ));
        }
        Ok(())
    };
    let tif = match m.tif.unwrap_or(TifName::Gtc) {
        TifName::Gtc => TimeInForce::Gtc,
        TifName::Ioc => TimeInForce::Ioc,
        TifName::Fok => TimeInForce::Fok,
    };
    match m.order_type {
        OrderTypeName::Limit => {
            forbid("stop_price", m.stop_price.is_some())?;
            let price_ticks = price(spec, "price", &need("price", &m.price)?)?;
            let post_only = if m.post_only {
                PostOnly::Yes
            } else {
                PostOnly::No
            };
            Ok(OrderKind::Limit {
                price_ticks,
                tif,
                post_only,
            })
        }
        OrderTypeName::Market => {
            forbid("price", m.price.is_some())?;
            forbid("stop_price", m.stop_price.is_some())?;
            forbid("tif", m.tif.is_some())?;
            forbid("post_only", m.post_only)?;
            Ok(OrderKind::Market)
        }
        OrderTypeName::StopMarket => {
            forbid("price", m.price.is_some())?;
            forbid("post_only", m.post_only)?;
            let stop_ticks = price(spec, "stop_price", &need("stop_price", &m.stop_price)?)?;
            Ok(OrderKind::StopMarket { stop_ticks })
        }
        OrderTypeName::StopLimit => {
            forbid("post_only", m.post_only)?;
            let stop_ticks = price(spec, "stop_price", &need("stop_price", &m.stop_price)?)?;
            let price_ticks = price(spec, "price", &need("price", &m.price)?)?;
            Ok(OrderKind::StopLimit {
                stop_ticks,
                price_ticks,
                tif,
            })
        }
    }
}

pub fn stp(m: &NewOrderMsg) -> Option<SelfTradePrevention> {
    m.stp.map(StpName::stp)
}

pub fn order_id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            "invalid_field",
            format!("`order_id` must be a decimal string, got {text:?}"),
        )
    })
}

fn kind_json(spec: &InstrumentSpec, kind: &OrderKind) -> Value {
    let p = |t| spec.ticks_to_price(t).to_string();
    let tif = |t: TimeInForce| format!("{t:?}").to_lowercase();
    match *kind {
        OrderKind::Limit {
            price_ticks,
            tif: t,
            post_only,
        } => {
            json!({"order_type": "limit", "price": p(price_ticks), "tif": tif(t), "post_only": post_only == PostOnly::Yes})
        }
        OrderKind::Market => json!({"order_type": "market"}),
        OrderKind::StopMarket { stop_ticks } => {
            json!({"order_type": "stop_market", "stop_price": p(stop_ticks)})
        }
        OrderKind::StopLimit {
            stop_ticks,
            price_ticks,
            tif: t,
        } => {
            json!({"order_type": "stop_limit", "stop_price": p(stop_ticks), "price": p(price_ticks), "tif": tif(t)})
        }
    }
}

fn cancel_reason(reason: CancelReason) -> String {
    snake(&format!("{reason:?}"))
}

/// The execution reports an order event yields, one per account it concerns: `(account, json)`,
/// the JSON only for the accounts `wanted` accepts (formatting it is most of the cost, and an
/// account with no WebSocket session has no use for it). `exec_id` is `"{seq}-{index}"`, unique
/// across the exchange's life.
pub fn executions(
    config: &ExchangeConfig,
    seq: u64,
    index: usize,
    event: &Event,
    fee: Option<(i64, i64, u8)>,
    wanted: impl Fn(AccountId) -> bool,
) -> Vec<(AccountId, Option<Value>)> {
    let spec = |i: InstrumentId| &config.instruments[i as usize];
    let exec_id = format!("{seq}-{index}");
    let base = |account: AccountId,
                instrument: InstrumentId,
                order_id: u64,
                side: Side,
                exec: &str| {
        json!({
            "type": "execution", "exec": exec, "exec_id": exec_id, "seq": seq, "account": account,
            "instrument": spec(instrument).symbol, "order_id": order_id.to_string(), "side": side_name(side),
        })
    };
    let merge = |mut a: Value, b: Value| {
        if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
            a.extend(b);
        }
        a
    };
    match *event {
        Event::Accepted {
            order_id,
            account,
            instrument,
            client_order_id,
            side,
            kind,
            qty_lots,
            ..
        } => {
            let s = spec(instrument);
            let extra = merge(
                json!({"client_order_id": client_order_id, "qty": s.lots_to_qty(qty_lots).to_string()}),
                kind_json(s, &kind),
            );
            vec![(
                account,
                wanted(account)
                    .then(|| merge(base(account, instrument, order_id, side, "accepted"), extra)),
            )]
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
            let s = spec(instrument);
            let (fee_maker, fee_taker, decimals) = fee.unwrap_or((0, 0, 0));
            let fill = |account, order_id, side, liquidity: &str, leaves, fee_units| {
                merge(
                    base(account, instrument, order_id, side, "fill"),
                    json!({
                        "price": s.ticks_to_price(price_ticks).to_string(), "qty": s.lots_to_qty(qty_lots).to_string(),
                        "leaves_qty": s.lots_to_qty(leaves).to_string(), "liquidity": liquidity,
                        "fee": amount_text(fee_units, decimals), "fee_asset": s.quote,
                    }),
                )
            };
            vec![
                (
                    maker_account,
                    wanted(maker_account).then(|| {
                        fill(
                            maker_account,
                            maker_order_id,
                            aggressor.opposite(),
                            "maker",
                            maker_qty_open,
                            fee_maker,
                        )
                    }),
                ),
                (
                    taker_account,
                    wanted(taker_account).then(|| {
                        fill(
                            taker_account,
                            taker_order_id,
                            aggressor,
                            "taker",
                            taker_qty_open,
                            fee_taker,
                        )
                    }),
                ),
            ]
        }
        Event::Rested {
            order_id,
            account,
            instrument,
            side,
            price_ticks,
            qty_lots,
        } => {
            let s = spec(instrument);
            let extra = json!({"price": s.ticks_to_price(price_ticks).to_string(), "qty": s.lots_to_qty(qty_lots).to_string()});
            vec![(
                account,
                wanted(account)
                    .then(|| merge(base(account, instrument, order_id, side, "rested"), extra)),
            )]
        }
        Event::Cancelled {
            order_id,
            account,
            instrument,
            side,
            qty_lots,
            qty_open,
            reason,
            ..
        } => {
            let s = spec(instrument);
            let extra = json!({"qty": s.lots_to_qty(qty_lots).to_string(), "leaves_qty": s.lots_to_qty(qty_open).to_string(), "reason": cancel_reason(reason)});
            vec![(
                account,
                wanted(account).then(|| {
                    merge(
                        base(account, instrument, order_id, side, "cancelled"),
                        extra,
                    )
                }),
            )]
        }
        Event::Replaced {
            order_id,
            account,
            instrument,
            side,
            client_order_id,
            price_ticks_new,
            qty_lots_new,
            priority,
            ..
        } => {
            let s = spec(instrument);
            let extra = json!({
                "client_order_id": client_order_id, "price": s.ticks_to_price(price_ticks_new).to_string(),
                "qty": s.lots_to_qty(qty_lots_new).to_string(), "priority": snake(&format!("{priority:?}")),
            });
            vec![(
                account,
                wanted(account)
                    .then(|| merge(base(account, instrument, order_id, side, "replaced"), extra)),
            )]
        }
        Event::Expired {
            order_id,
            account,
            instrument,
            side,
            qty_lots,
        } => {
            let extra = json!({"qty": spec(instrument).lots_to_qty(qty_lots).to_string()});
            vec![(
                account,
                wanted(account)
                    .then(|| merge(base(account, instrument, order_id, side, "expired"), extra)),
            )]
        }
        Event::Triggered {
            order_id,
            account,
            instrument,
            side,
            stop_ticks,
            last_ticks,
        } => {
            let s = spec(instrument);
            let extra = json!({"stop_price": s.ticks_to_price(stop_ticks).to_string(), "last_price": s.ticks_to_price(last_ticks).to_string()});
            vec![(
                account,
                wanted(account).then(|| {
                    merge(
                        base(account, instrument, order_id, side, "triggered"),
                        extra,
                    )
                }),
            )]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_malformed_request_gets_its_own_code() {
        let code = |text: &str| parse(text).unwrap_err().code;
        assert_eq!(code("{not json"), "bad_json");
        assert_eq!(code("[1,2]"), "bad_json");
        assert_eq!(code(r#"{"req_id":1}"#), "missing_field");
        assert_eq!(code(r#"{"type":"teleport"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"ping","extra":1}"#), "unknown_field");
        assert_eq!(
            code(r#"{"type":"subscribe","channels":"book"}"#),
            "invalid_field"
        );
        assert_eq!(code(r#"{"type":"login","key":"k"}"#), "missing_field");
        assert_eq!(
            parse(r#"{"type":"ping","req_id":9,"x":1}"#)
                .unwrap_err()
                .req_id,
            Some(9)
        );
        assert!(matches!(
            parse(r#"{"type":"ping","req_id":9}"#),
            Ok(Request::Ping(_))
        ));
    }

    #[test]
    fn executions_are_formatted_only_for_the_accounts_wanted() {
        let config = engine::defaults::config();
        let fill = Event::Fill {
            instrument: 0,
            maker_order_id: 7,
            taker_order_id: 8,
            maker_account: 1,
            taker_account: 2,
            price_ticks: 15_000_000,
            qty_lots: 2_000,
            aggressor: Side::Buy,
            maker_qty_open: 3_000,
            taker_qty_open: 0,
        };
        let all = executions(&config, 5, 0, &fill, None, |_| true);
        let taker_only = executions(&config, 5, 0, &fill, None, |account| account == 2);
        let accounts = |reports: &[(AccountId, Option<Value>)]| -> Vec<AccountId> {
            reports.iter().map(|(account, _)| *account).collect()
        };
        // The same accounts either way (a FIX session is found by them), the JSON only if wanted.
        assert_eq!(accounts(&all), vec![1, 2]);
        assert_eq!(accounts(&taker_only), vec![1, 2]);
        assert!(taker_only[0].1.is_none());
        assert_eq!(taker_only[1].1, all[1].1);
        let taker = all[1].1.as_ref().unwrap();
        assert_eq!(
            (taker["exec"].as_str(), taker["liquidity"].as_str()),
            (Some("fill"), Some("taker"))
        );
        assert_eq!(all[0].1.as_ref().unwrap()["leaves_qty"], "0.3");
    }

    #[test]
    fn reject_reasons_become_snake_case_codes() {
        assert_eq!(snake("OffTick"), "off_tick");
        assert_eq!(
            ApiError::reject(RejectReason::InsufficientBalance).code,
            "insufficient_balance"
        );
    }
}
