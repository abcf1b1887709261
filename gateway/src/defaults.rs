//! The embedded default configuration: what `kinko` runs on when given no configuration file.

use engine::{HousePolicy, InstrumentSpec};
use rust_decimal::Decimal;

/// `(symbol, tick size, lot size, reference price)` of the default instruments. JPY prices with
/// sensible ticks: 1 JPY for BTC and ETH, fractions of a yen for the cheap coins, as Japanese venues quote them.
const INSTRUMENTS: &[(&str, &str, &str, &str)] = &[
    ("BTC/JPY", "1", "0.0001", "15000000"),
    ("ETH/JPY", "1", "0.001", "500000"),
    ("XEM/JPY", "0.001", "1", "5"),
    ("MONA/JPY", "0.01", "0.1", "50"),
    ("BCH/JPY", "1", "0.001", "70000"),
];

pub fn instruments() -> Vec<InstrumentSpec> {
    INSTRUMENTS
        .iter()
        .map(|&(symbol, tick, lot, reference)| {
            let (base, quote) = symbol.split_once('/').expect("BASE/QUOTE");
            let tick_size: Decimal = tick.parse().expect("tick size");
            let reference: Decimal = reference.parse().expect("reference price");
            let spec = InstrumentSpec {
                symbol: symbol.into(),
                base: base.into(),
                quote: quote.into(),
                tick_size,
                lot_size: lot.parse().expect("lot size"),
                qty_lots_min: 1,
                qty_lots_max: 100_000_000,
                price_band_bps: 1_000,
                price_ticks_reference: 0,
                fee_maker_ppm: 1_000,
                fee_taker_ppm: 2_000,
                house_policy: HousePolicy::Forbidden,
            };
            let price_ticks_reference = spec
                .price_to_ticks(reference)
                .expect("reference price on tick");
            InstrumentSpec {
                price_ticks_reference,
                ..spec
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_instruments_are_valid() {
        let specs = super::instruments();
        assert_eq!(specs.len(), 5);
        for spec in &specs {
            assert_eq!(spec.validate(), Ok(()), "{}", spec.symbol);
        }
    }
}
