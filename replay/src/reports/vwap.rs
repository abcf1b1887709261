//! `vwap`: the volume-weighted average price of an instrument over a window, the figure Coincheck
//! compensated XEM holders at (88.549 JPY per XEM, from the halt to the announcement).
//!
//! Exact: `VWAP = Σ notional / Σ base quantity` in integers, converted to quote per whole base
//! unit, then **rounded to the nearest tick of the instrument, halves up** (the only rounding).
//! The sums are reported too, so anyone can recompute it.

use engine::journal::JournalRead;
use engine::InstrumentId;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::error::ReplayError;
use crate::money::{div_round_half_up, format_units, mul, parts, pow10};
use crate::point::{format_ts, Window};
use crate::render::{Report, Table};
use crate::reports::trades::collect_fills;
use crate::reports::Catalog;

pub const VWAP_ROUNDING: &str = "nearest tick of the instrument, halves up";

/// A VWAP with everything needed to recompute it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VwapReport {
    pub instrument: String,
    pub window: String,
    pub trades: u64,
    /// Σ base quantity, in the base asset.
    pub volume: String,
    /// Σ notional, in the quote asset.
    pub notional: String,
    /// Quote per one whole base unit, rounded as `rounding` says.
    pub vwap: Decimal,
    pub rounding: &'static str,
    pub first_trade: Option<String>,
    pub last_trade: Option<String>,
    #[serde(skip)]
    pub instrument_id: InstrumentId,
}

pub fn vwap(read: &JournalRead, symbol: &str, window: Window) -> Result<VwapReport, ReplayError> {
    let catalog = Catalog::new(&read.genesis.config);
    let (instrument, spec) = catalog.instrument(symbol)?;
    let fills = collect_fills(read, window, Some(instrument))?;
    if fills.is_empty() {
        return Err(ReplayError::NoTrades {
            instrument: spec.symbol.clone(),
            window: window.to_string(),
        });
    }
    let base_units: i128 = fills
        .iter()
        .map(|f| i128::from(f.settlement.base_units))
        .sum();
    let notional_units: i128 = fills
        .iter()
        .map(|f| i128::from(f.settlement.notional_units))
        .sum();
    let first = fills.first().expect("not empty");
    let base = catalog.asset_spec(first.settlement.base).decimals;
    let quote = catalog.asset_spec(first.settlement.quote).decimals;
    Ok(VwapReport {
        instrument: spec.symbol.clone(),
        window: window.to_string(),
        trades: fills.len() as u64,
        volume: format_units(base_units, base),
        notional: format_units(notional_units, quote),
        vwap: price_on_tick(notional_units, base_units, base, quote, spec.tick_size)?,
        rounding: VWAP_ROUNDING,
        first_trade: fills.first().map(|f| format_ts(f.ts_ns)),
        last_trade: fills.last().map(|f| format_ts(f.ts_ns)),
        instrument_id: instrument,
    })
}

/// `notional / base` as quote per whole base unit, rounded to the nearest `tick`, halves up.
///
/// With `tick = m / 10^s`: price = (notional / 10^quote) / (base / 10^base_decimals), and
/// ticks = price / tick = notional × 10^base_decimals × 10^s / (base × 10^quote × m).
pub fn price_on_tick(
    notional_units: i128,
    base_units: i128,
    base_decimals: u8,
    quote_decimals: u8,
    tick: Decimal,
) -> Result<Decimal, ReplayError> {
    assert!(base_units > 0, "a price of no quantity");
    assert!(notional_units >= 0, "a negative notional {notional_units}");
    let (tick_mantissa, tick_scale) = parts(tick);
    assert!(tick_mantissa > 0, "tick {tick} not positive");
    let what = "the VWAP";
    let num = mul(
        mul(notional_units, pow10(u32::from(base_decimals))?, what)?,
        pow10(tick_scale)?,
        what,
    )?;
    let den = mul(
        mul(base_units, pow10(u32::from(quote_decimals))?, what)?,
        tick_mantissa,
        what,
    )?;
    let ticks = div_round_half_up(num, den);
    Decimal::try_from_i128_with_scale(mul(ticks, tick_mantissa, what)?, tick_scale)
        .map_err(|_| ReplayError::Overflow(what))
}

impl Report for VwapReport {
    fn tables(&self) -> Vec<Table> {
        let mut table = Table::new(format!("VWAP of {}", self.instrument), &[]);
        table.fact("window", &self.window);
        table.fact("trades", self.trades);
        table.fact("first trade", self.first_trade.clone().unwrap_or_default());
        table.fact("last trade", self.last_trade.clone().unwrap_or_default());
        table.fact("volume", &self.volume);
        table.fact("notional", &self.notional);
        table.fact("vwap", self.vwap);
        table.fact("rounding", self.rounding);
        vec![table]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coincheck_figure_rounds_to_the_tick() {
        // 4000 XEM (6 decimals) for 354,197 JPY: 88.54925 JPY per XEM, tick 0.001.
        let tick: Decimal = "0.001".parse().unwrap();
        let price = price_on_tick(354_197, 4_000_000_000, 6, 0, tick).unwrap();
        assert_eq!(price.to_string(), "88.549");
        // 1 JPY for 2000 XEM is 0.0005 JPY per XEM: exactly half a tick, rounded up.
        let price = price_on_tick(1, 2_000_000_000, 6, 0, tick).unwrap();
        assert_eq!(price.to_string(), "0.001");
        // 1 JPY for 3000 XEM is a third of a tick: rounded down.
        let price = price_on_tick(1, 3_000_000_000, 6, 0, tick).unwrap();
        assert_eq!(price.to_string(), "0.000");
        let price = price_on_tick(1_000, 2_000_000, 6, 0, tick).unwrap();
        assert_eq!(price.to_string(), "500.000");
    }
}
