//! `trades`: every fill in a window, with its price, quantity, notional, fees, both accounts and
//! its house side, optionally for one account or one instrument.

use engine::journal::JournalRead;
use engine::{
    AccountId, Event, ExchangeEvent, InstrumentId, PriceTicks, QtyLots, Settlement, Side,
};
use serde::Serialize;

use crate::error::ReplayError;
use crate::money::format_units;
use crate::point::{format_ts, Window};
use crate::render::{left, right, Report, Table};
use crate::reports::{house_name, side_name, Catalog};
use crate::walk::{replay_until, Step};

/// One fill as the journal shows it: the matcher's `Fill` and the exchange's `Settled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    pub seq: u64,
    pub ts_ns: u64,
    pub price_ticks: PriceTicks,
    pub qty_lots: QtyLots,
    pub aggressor: Side,
    pub maker_account: AccountId,
    pub taker_account: AccountId,
    pub settlement: Settlement,
}

impl Fill {
    pub fn involves(&self, account: AccountId) -> bool {
        self.settlement.buyer == account || self.settlement.seller == account
    }
}

/// The fills of one re-executed command, in order.
pub fn fills_of(step: &Step<'_>, out: &mut Vec<Fill>) {
    let mut fill = None;
    for event in step.events {
        match *event {
            ExchangeEvent::Order(Event::Fill {
                price_ticks,
                qty_lots,
                aggressor,
                maker_account,
                taker_account,
                ..
            }) => {
                fill = Some((
                    price_ticks,
                    qty_lots,
                    aggressor,
                    maker_account,
                    taker_account,
                ))
            }
            ExchangeEvent::Settled(settlement) => {
                let (price_ticks, qty_lots, aggressor, maker_account, taker_account) = fill
                    .take()
                    .expect("the engine settles each fill right after it");
                out.push(Fill {
                    seq: step.seq,
                    ts_ns: step.ts_ns,
                    price_ticks,
                    qty_lots,
                    aggressor,
                    maker_account,
                    taker_account,
                    settlement,
                });
            }
            _ => {}
        }
    }
}

/// Every fill in `window` (re-executing only as far as its end), optionally of one instrument.
pub fn collect_fills(
    read: &JournalRead,
    window: Window,
    instrument: Option<InstrumentId>,
) -> Result<Vec<Fill>, ReplayError> {
    let mut fills = Vec::new();
    let mut command_fills = Vec::new();
    replay_until(read, window.to, &mut |step| {
        if !window.admits(step.seq, step.ts_ns) {
            return;
        }
        command_fills.clear();
        fills_of(step, &mut command_fills);
        fills.extend(
            command_fills
                .iter()
                .filter(|f| instrument.is_none_or(|i| f.settlement.instrument == i)),
        );
    })?;
    Ok(fills)
}

#[derive(Clone, Debug, Default)]
pub struct TradeQuery {
    pub account: Option<AccountId>,
    pub instrument: Option<String>,
    pub window: Window,
}

/// One fill for people and JSON: exact decimals as strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TradeRow {
    pub seq: u64,
    pub time: String,
    pub instrument: String,
    pub price: String,
    pub qty: String,
    pub notional: String,
    pub aggressor: &'static str,
    pub buyer: AccountId,
    pub seller: AccountId,
    pub maker_order_id: u64,
    pub taker_order_id: u64,
    pub fee_buyer: String,
    pub fee_seller: String,
    pub house: &'static str,
}

impl TradeRow {
    pub fn new(catalog: &Catalog<'_>, fill: &Fill) -> TradeRow {
        let s = &fill.settlement;
        let spec = catalog.instrument_spec(s.instrument);
        let base = catalog.asset_spec(s.base).decimals;
        let quote = catalog.asset_spec(s.quote).decimals;
        TradeRow {
            seq: fill.seq,
            time: format_ts(fill.ts_ns),
            instrument: spec.symbol.clone(),
            price: price_at_tick_scale(spec, fill.price_ticks),
            qty: format_units(i128::from(s.base_units), base),
            notional: format_units(i128::from(s.notional_units), quote),
            aggressor: side_name(fill.aggressor),
            buyer: s.buyer,
            seller: s.seller,
            maker_order_id: s.maker_order_id,
            taker_order_id: s.taker_order_id,
            fee_buyer: format_units(i128::from(s.fee_buyer_units), quote),
            fee_seller: format_units(i128::from(s.fee_seller_units), quote),
            house: house_name(s.house),
        }
    }

    pub fn cells(&self) -> Vec<String> {
        vec![
            self.seq.to_string(),
            self.time.clone(),
            self.instrument.clone(),
            self.price.clone(),
            self.qty.clone(),
            self.notional.clone(),
            self.aggressor.into(),
            self.buyer.to_string(),
            self.seller.to_string(),
            self.fee_buyer.clone(),
            self.fee_seller.clone(),
            self.house.into(),
        ]
    }
}

/// A price in ticks as a decimal with the tick's number of decimals (`88500` ticks of 0.001 is
/// `88.500`), so that a column of prices lines up.
pub fn price_at_tick_scale(spec: &engine::InstrumentSpec, ticks: PriceTicks) -> String {
    let (mantissa, scale) = crate::money::parts(spec.tick_size);
    rust_decimal::Decimal::try_from_i128_with_scale(i128::from(ticks) * mantissa, scale)
        .map_or_else(
            |_| spec.ticks_to_price(ticks).to_string(),
            |price| price.to_string(),
        )
}

pub fn trade_columns() -> [crate::render::Column; 12] {
    [
        right("seq"),
        left("time"),
        left("instrument"),
        right("price"),
        right("qty"),
        right("notional"),
        left("aggressor"),
        right("buyer"),
        right("seller"),
        right("fee_buyer"),
        right("fee_seller"),
        left("house"),
    ]
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TradesReport {
    pub window: String,
    pub account: Option<AccountId>,
    pub instrument: Option<String>,
    pub trades: Vec<TradeRow>,
}

pub fn trades(read: &JournalRead, query: &TradeQuery) -> Result<TradesReport, ReplayError> {
    let catalog = Catalog::new(&read.genesis.config);
    let instrument = match &query.instrument {
        Some(symbol) => Some(catalog.instrument(symbol)?.0),
        None => None,
    };
    let fills = collect_fills(read, query.window, instrument)?;
    let trades = fills
        .iter()
        .filter(|f| query.account.is_none_or(|a| f.involves(a)))
        .map(|f| TradeRow::new(&catalog, f))
        .collect();
    Ok(TradesReport {
        window: query.window.to_string(),
        account: query.account,
        instrument: instrument.map(|i| catalog.instrument_spec(i).symbol.clone()),
        trades,
    })
}

impl Report for TradesReport {
    fn tables(&self) -> Vec<Table> {
        let mut table = Table::new("Trades", &trade_columns());
        table.fact("window", &self.window);
        if let Some(account) = self.account {
            table.fact("account", account);
        }
        if let Some(instrument) = &self.instrument {
            table.fact("instrument", instrument);
        }
        table.fact("trades", self.trades.len());
        for trade in &self.trades {
            table.row(trade.cells());
        }
        vec![table]
    }
}
