//! Instrument specifications and the exact conversions between decimals (the edge) and integer
//! ticks and lots (inside the engine). A conversion is exact or it is an error: an off-tick price
//! or an off-lot size is never rounded silently.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::RejectReason;
use crate::types::{PriceTicks, QtyLots};

/// Parts per million: fee rates are integers so that fees are exact (0.15% = 1_500 ppm).
pub type RatePpm = u32;

/// Basis points for the price band: 1_000 bps = 10%.
pub type RateBps = u32;

/// Whether the house (the operator's proprietary accounts) may trade on an instrument's book.
/// DESIGN.md, invariant 4: the default forbids it; where it is allowed, every fill with a house side
/// is flagged so that replay can report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum HousePolicy {
    #[default]
    Forbidden,
    Disclosed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstrumentSpec {
    /// The public name, `BASE/QUOTE`, e.g. `BTC/JPY`.
    pub symbol: String,
    pub base: String,
    pub quote: String,
    /// The price step, in quote currency per unit of base.
    pub tick_size: Decimal,
    /// The quantity step, in base units.
    pub lot_size: Decimal,
    pub qty_lots_min: QtyLots,
    pub qty_lots_max: QtyLots,
    /// Orders priced further than this from the reference price are rejected, and market orders
    /// execute only inside it.
    pub price_band_bps: RateBps,
    /// The reference price before the first trade; afterwards the last trade price is the reference.
    pub price_ticks_reference: PriceTicks,
    pub fee_maker_ppm: RatePpm,
    pub fee_taker_ppm: RatePpm,
    pub house_policy: HousePolicy,
}

/// Hard limits for every instrument, so that `price × qty` and level totals fit in i64 with room.
pub const PRICE_TICKS_MAX: PriceTicks = 1 << 40;
pub const QTY_LOTS_MAX: QtyLots = 1 << 40;
/// 100% band: a wider one would admit prices at or below zero.
pub const PRICE_BAND_BPS_MAX: RateBps = 10_000;
/// 10% fee: anything above is a configuration mistake.
pub const FEE_PPM_MAX: RatePpm = 100_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    TickSizeNotPositive,
    LotSizeNotPositive,
    QtyBoundsInvalid,
    ReferencePriceInvalid,
    PriceBandInvalid,
    FeeTooHigh,
    SymbolMismatch,
}

impl InstrumentSpec {
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.tick_size <= Decimal::ZERO {
            return Err(SpecError::TickSizeNotPositive);
        }
        if self.lot_size <= Decimal::ZERO {
            return Err(SpecError::LotSizeNotPositive);
        }
        if self.qty_lots_min < 1
            || self.qty_lots_max < self.qty_lots_min
            || self.qty_lots_max > QTY_LOTS_MAX
        {
            return Err(SpecError::QtyBoundsInvalid);
        }
        if self.price_ticks_reference < 1 || self.price_ticks_reference > PRICE_TICKS_MAX {
            return Err(SpecError::ReferencePriceInvalid);
        }
        if self.price_band_bps == 0 || self.price_band_bps >= PRICE_BAND_BPS_MAX {
            return Err(SpecError::PriceBandInvalid);
        }
        if self.fee_maker_ppm > FEE_PPM_MAX || self.fee_taker_ppm > FEE_PPM_MAX {
            return Err(SpecError::FeeTooHigh);
        }
        if self.symbol != format!("{}/{}", self.base, self.quote) {
            return Err(SpecError::SymbolMismatch);
        }
        Ok(())
    }

    /// Exact conversion of a decimal price into ticks; off-tick or out-of-range prices are errors.
    pub fn price_to_ticks(&self, price: Decimal) -> Result<PriceTicks, RejectReason> {
        if price <= Decimal::ZERO {
            return Err(RejectReason::PriceNotPositive);
        }
        let ticks = exact_steps(price, self.tick_size).ok_or(RejectReason::OffTick)?;
        if ticks > PRICE_TICKS_MAX {
            return Err(RejectReason::PriceTooHigh);
        }
        Ok(ticks)
    }

    /// Exact conversion of a decimal quantity into lots; off-lot or out-of-range sizes are errors.
    pub fn qty_to_lots(&self, qty: Decimal) -> Result<QtyLots, RejectReason> {
        if qty <= Decimal::ZERO {
            return Err(RejectReason::QtyNotPositive);
        }
        let lots = exact_steps(qty, self.lot_size).ok_or(RejectReason::OffLot)?;
        if lots > QTY_LOTS_MAX {
            return Err(RejectReason::QtyAboveMax);
        }
        Ok(lots)
    }

    pub fn ticks_to_price(&self, ticks: PriceTicks) -> Decimal {
        (Decimal::from(ticks) * self.tick_size).normalize()
    }

    pub fn lots_to_qty(&self, lots: QtyLots) -> Decimal {
        (Decimal::from(lots) * self.lot_size).normalize()
    }

    /// The inclusive price band `[low, high]` in ticks around `reference`.
    pub fn band(&self, reference: PriceTicks) -> (PriceTicks, PriceTicks) {
        band(reference, self.price_band_bps)
    }
}

/// The inclusive band `[low, high]` around `reference`, at least one tick wide on each side is not
/// guaranteed: a tiny reference with a narrow band admits only the reference itself.
pub fn band(reference: PriceTicks, band_bps: RateBps) -> (PriceTicks, PriceTicks) {
    debug_assert!(
        reference > 0,
        "reference price must be positive: {reference}"
    );
    // i64 is enough: references are at most 2^40 ticks and bands below 10^4 bps, so the product
    // stays under 2^54 (an i128 division is a library call on every order).
    debug_assert!(reference <= PRICE_TICKS_MAX && band_bps < PRICE_BAND_BPS_MAX);
    let width = reference * PriceTicks::from(band_bps) / 10_000;
    let low = (reference - width).max(1);
    let high = reference + width;
    (low, high)
}

/// `value / step` when it is a whole number that fits in i64, `None` otherwise.
fn exact_steps(value: Decimal, step: Decimal) -> Option<i64> {
    let steps = value.checked_div(step)?;
    if steps.fract() != Decimal::ZERO {
        return None;
    }
    // Guard against a quotient that was itself rounded by Decimal's 28-digit precision.
    if steps.checked_mul(step)? != value {
        return None;
    }
    i64::try_from(steps.trunc()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn spec() -> InstrumentSpec {
        InstrumentSpec {
            symbol: "BTC/JPY".into(),
            base: "BTC".into(),
            quote: "JPY".into(),
            tick_size: d("0.5"),
            lot_size: d("0.0001"),
            qty_lots_min: 1,
            qty_lots_max: 1_000_000,
            price_band_bps: 1_000,
            price_ticks_reference: 20_000_000,
            fee_maker_ppm: 1_000,
            fee_taker_ppm: 2_000,
            house_policy: HousePolicy::Forbidden,
        }
    }

    #[test]
    fn price_conversion_is_exact_or_rejected() {
        let s = spec();
        assert_eq!(s.price_to_ticks(d("10000000.5")), Ok(20_000_001));
        assert_eq!(s.price_to_ticks(d("10000000.50000")), Ok(20_000_001));
        assert_eq!(
            s.price_to_ticks(d("10000000.25")),
            Err(RejectReason::OffTick)
        );
        assert_eq!(
            s.price_to_ticks(d("0")),
            Err(RejectReason::PriceNotPositive)
        );
        assert_eq!(
            s.price_to_ticks(d("-1")),
            Err(RejectReason::PriceNotPositive)
        );
        assert_eq!(
            s.price_to_ticks(d("99999999999999999")),
            Err(RejectReason::PriceTooHigh)
        );
        assert_eq!(s.ticks_to_price(20_000_001), d("10000000.5"));
    }

    #[test]
    fn qty_conversion_is_exact_or_rejected() {
        let s = spec();
        assert_eq!(s.qty_to_lots(d("0.0003")), Ok(3));
        assert_eq!(s.qty_to_lots(d("1")), Ok(10_000));
        assert_eq!(s.qty_to_lots(d("0.00015")), Err(RejectReason::OffLot));
        assert_eq!(s.qty_to_lots(d("0")), Err(RejectReason::QtyNotPositive));
        assert_eq!(
            s.qty_to_lots(d("-0.0001")),
            Err(RejectReason::QtyNotPositive)
        );
        assert_eq!(s.lots_to_qty(3), d("0.0003"));
    }

    #[test]
    fn band_is_symmetric_and_floored_at_one_tick() {
        assert_eq!(band(10_000, 1_000), (9_000, 11_000));
        assert_eq!(band(10_005, 1_000), (9_005, 11_005));
        assert_eq!(band(3, 9_999), (1, 5));
    }

    #[test]
    fn validate_rejects_each_bad_field() {
        assert_eq!(spec().validate(), Ok(()));
        let mut s = spec();
        s.tick_size = Decimal::ZERO;
        assert_eq!(s.validate(), Err(SpecError::TickSizeNotPositive));
        let mut s = spec();
        s.qty_lots_max = 0;
        assert_eq!(s.validate(), Err(SpecError::QtyBoundsInvalid));
        let mut s = spec();
        s.price_band_bps = 0;
        assert_eq!(s.validate(), Err(SpecError::PriceBandInvalid));
        let mut s = spec();
        s.fee_taker_ppm = FEE_PPM_MAX + 1;
        assert_eq!(s.validate(), Err(SpecError::FeeTooHigh));
        let mut s = spec();
        s.symbol = "BTCJPY".into();
        assert_eq!(s.validate(), Err(SpecError::SymbolMismatch));
    }
}
