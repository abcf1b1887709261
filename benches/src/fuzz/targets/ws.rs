//! `ws`: the WebSocket API's requests (`gateway::protocol::parse`), then what a session does with
//! a parsed order request before the engine sees it: the instrument lookup, the exact conversion
//! of price and quantity strings into ticks and lots, the order kind, the order id, and a
//! custody request's withdrawal address.
//!
//! Properties: nothing panics; every error carries a stable snake_case code; the request id of an
//! error is the one the request carried, when it carried one.

use std::sync::OnceLock;

use engine::custody::Address;
use engine::ExchangeConfig;
use gateway::auth::IpRule;
use gateway::config::Permission;
use gateway::custody::CustodyRequest;
use gateway::operator::OperatorRequest;
use gateway::protocol::{self, ApiError, Request};

use super::class;

pub const DICTIONARY: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"null",
    b"true",
    b"\\u0000",
    b"\\ud800",
    b"\"type\":",
    b"\"req_id\":",
    b"\"price\":",
    b"\"qty\":",
    b"\"new_order\"",
    b"\"replace\"",
    b"\"cancel\"",
    b"\"withdraw\"",
    b"\"order_id\":",
    b"\"client_order_id\":",
    b"\"stop_limit\"",
    b"\"BTC/JPY\"",
    b"\"create_key\"",
    b"\"rotate_key\"",
    b"\"revoke_key\"",
    b"\"allow_ips\":",
    b"\"expires_at\":",
    b"\"permissions\":",
    b"\"set_house_policy\"",
    b"\"cancel_cold_to_hot\"",
];

pub fn seeds() -> Vec<Vec<u8>> {
    [
        r#"{"type":"ping","req_id":1}"#,
        r#"{"type":"login","req_id":2,"key":"demo-alice","ts":1700000000000,"nonce":7,"sig":"00ff","cancel_on_disconnect":true}"#,
        r#"{"type":"subscribe","req_id":3,"channels":["book:BTC/JPY","trades:BTC/JPY","executions","balances"]}"#,
        r#"{"type":"new_order","req_id":4,"instrument":"BTC/JPY","side":"buy","order_type":"limit","qty":"0.01","price":"15000000","client_order_id":42,"tif":"gtc","post_only":true,"stp":"cancel_both"}"#,
        r#"{"type":"new_order","req_id":5,"instrument":"ETH-JPY","side":"sell","order_type":"stop_limit","qty":"1.5","price":"399000","stop_price":"400000","client_order_id":43,"tif":"ioc"}"#,
        r#"{"type":"new_order","req_id":6,"instrument":"btc_jpy","side":"sell","order_type":"market","qty":"0.5","client_order_id":44}"#,
        r#"{"type":"new_order","req_id":7,"instrument":"BTC/JPY","side":"buy","order_type":"stop_market","qty":"0.5","stop_price":"16000000","client_order_id":45}"#,
        r#"{"type":"cancel","req_id":8,"order_id":"18446744073709551615"}"#,
        r#"{"type":"cancel","req_id":9,"client_order_id":42}"#,
        r#"{"type":"replace","req_id":10,"order_id":"12","price":"15001000","qty":"0.02","new_client_order_id":46}"#,
        r#"{"type":"mass_cancel","req_id":11,"instrument":"BTC/JPY","side":"buy"}"#,
        r#"{"type":"halt","req_id":12,"instrument":"BTC/JPY"}"#,
        r#"{"type":"resume","req_id":13,"instrument":"XEM/JPY"}"#,
        r#"{"type":"open_orders","req_id":14}"#,
        r#"{"type":"cancel_all_after","req_id":15,"timeout_ms":60000}"#,
        r#"{"type":"withdraw","req_id":16,"asset":"BTC","amount":"0.5","address":"bc1qexampleaddress000000000000000000000"}"#,
        r#"{"type":"add_withdrawal_address","req_id":17,"asset":"ETH","address":"0x00000000000000000000000000000000000000ff"}"#,
        r#"{"type":"set_asset_halts","req_id":18,"asset":"XEM","deposits":true,"withdrawals":true,"trading":false}"#,
        r#"{"type":"approve_cold_to_hot","req_id":19,"request_id":"3","approver":"00","signature":"ff"}"#,
        r#"{"type":"top_up","req_id":20,"asset":"JPY","amount":"1000000","pool":"customer"}"#,
        r#"{"type":"custody_status","req_id":21}"#,
        r#"{"type":"create_key","req_id":22,"account":"alice","role":"trader","permissions":["read","trade"],"allow_ips":["203.0.113.0/24","::1"],"expires_at":"2027-01-01T00:00:00Z","key":"alice-bot"}"#,
        r#"{"type":"list_keys","req_id":23}"#,
        r#"{"type":"rotate_key","req_id":24,"key":"alice-bot"}"#,
        r#"{"type":"revoke_key","req_id":25,"key":"alice-bot"}"#,
        r#"{"type":"security_status","req_id":26}"#,
        r#"{"type":"set_house_policy","req_id":27,"instrument":"ETH/JPY","policy":"disclosed"}"#,
        r#"{"type":"cancel_cold_to_hot","req_id":28,"request_id":"4"}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn exchange() -> &'static ExchangeConfig {
    static CONFIG: OnceLock<ExchangeConfig> = OnceLock::new();
    CONFIG.get_or_init(engine::defaults::config)
}

pub fn run(bytes: &[u8]) -> u64 {
    // A WebSocket text frame is UTF-8 (the transport refuses other frames); the lossy decoding
    // keeps every mutation useful.
    let text = String::from_utf8_lossy(bytes);
    match protocol::parse(&text) {
        Ok(request) => match convert(&request) {
            Ok(kind) => kind,
            Err(e) => 1_000 + error_class(&text, e),
        },
        Err(e) => error_class(&text, e),
    }
}

/// What the session computes from a request before it becomes a command.
fn convert(request: &Request) -> Result<u64, ApiError> {
    let exchange = exchange();
    match request {
        Request::NewOrder(m) => {
            let (_, spec) = protocol::instrument(exchange, &m.instrument)?;
            let kind = protocol::order_kind(&spec, m)?;
            let qty_lots = protocol::qty(&spec, &m.qty)?;
            assert!(qty_lots > 0, "a quantity of {qty_lots} lots passed");
            let _ = protocol::stp(m);
            Ok(class(format!("{kind:?}").len() as u64))
        }
        Request::Cancel(m) => {
            if let Some(id) = &m.order_id {
                protocol::order_id(id)?;
            }
            Ok(2)
        }
        Request::Replace(m) => {
            if let Some(id) = &m.order_id {
                protocol::order_id(id)?;
            }
            // The session takes the instrument of the order; any instrument checks the strings.
            let spec = &exchange.instruments[0];
            let price_ticks = protocol::price(spec, "price", &m.price)?;
            assert!(price_ticks > 0, "a price of {price_ticks} ticks passed");
            protocol::qty(spec, &m.qty)?;
            Ok(3)
        }
        Request::Halt(m) | Request::Resume(m) => {
            protocol::instrument(exchange, &m.instrument).map(|_| 4)
        }
        Request::MassCancel(m) => match &m.instrument {
            Some(symbol) => protocol::instrument(exchange, symbol).map(|_| 5),
            None => Ok(5),
        },
        Request::Custody(CustodyRequest::Withdraw(m)) => match &m.address {
            Some(address) => Address::parse(address).map(|_| 6).map_err(ApiError::reject),
            None => Ok(6),
        },
        Request::Custody(c) => Ok(7 + class(format!("{c:?}").len() as u64) % 16),
        // What an operator's key request is checked against before it reaches the key store:
        // permission names, allowlist entries, the expiry's time text.
        Request::Operator(OperatorRequest::CreateKey(m)) => {
            for name in m.permissions.iter().flatten() {
                Permission::parse(name)
                    .ok_or_else(|| ApiError::new("invalid_field", "permission"))?;
            }
            for rule in &m.allow_ips {
                IpRule::parse(rule).map_err(|e| ApiError::new("invalid_key_request", e))?;
            }
            if let Some(at) = &m.expires_at {
                gateway::config::parse_time_ms(at)
                    .map_err(|e| ApiError::new("invalid_field", e))?;
            }
            Ok(24)
        }
        Request::Operator(o) => Ok(25 + class(format!("{o:?}").len() as u64) % 4),
        other => Ok(30 + class(format!("{other:?}").len() as u64) % 16),
    }
}

fn error_class(text: &str, e: ApiError) -> u64 {
    assert!(!e.code.is_empty(), "an error without a code: {e:?}");
    assert!(
        e.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "error code {:?} is not snake_case",
        e.code
    );
    if let (Some(req_id), Ok(serde_json::Value::Object(o))) =
        (e.req_id, serde_json::from_str::<serde_json::Value>(text))
    {
        assert_eq!(
            o.get("req_id").and_then(serde_json::Value::as_u64),
            Some(req_id),
            "the error names another request id"
        );
    }
    class(super::fnv(e.code.as_bytes()))
}
