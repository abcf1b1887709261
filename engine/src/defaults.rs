//! The embedded default configuration: what `kinko` runs on when given no configuration file.

use ledger::{AssetClass, AssetSpec};
use rust_decimal::Decimal;

use crate::custody::{AssetCustody, CustodyConfig};
use crate::exchange::ExchangeConfig;
use crate::instrument::{HousePolicy, InstrumentSpec};
use crate::matcher::EngineConfig;

/// `(symbol, tick size, lot size, reference price)` of the default instruments: 1 JPY ticks for
/// BTC and ETH, fractions of a yen for the cheap coins, as Japanese venues quote them.
const INSTRUMENTS: &[(&str, &str, &str, &str)] = &[
    ("BTC/JPY", "1", "0.0001", "15000000"),
    ("ETH/JPY", "1", "0.001", "500000"),
    ("XEM/JPY", "0.001", "1", "5"),
    ("MONA/JPY", "0.01", "0.1", "50"),
    ("BCH/JPY", "1", "0.001", "70000"),
];

/// Asset precision: see docs/ARCHITECTURE.md, "Amounts, precision and rounding".
pub fn assets() -> Vec<AssetSpec> {
    vec![
        AssetSpec::coin("BTC", 8),
        AssetSpec::coin("ETH", 9),
        AssetSpec::coin("XEM", 6),
        AssetSpec::coin("MONA", 8),
        AssetSpec::coin("BCH", 8),
        AssetSpec::fiat("JPY", 0),
    ]
}

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
                price_ticks_reference: 1,
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

/// The whole default configuration, with engine capacities for a single machine.
pub fn config() -> ExchangeConfig {
    ExchangeConfig {
        engine: EngineConfig {
            orders_max: 1 << 18,
            levels_per_side_max: 1 << 14,
            stops_per_side_max: 1 << 12,
            accounts_max: 1 << 14,
            orders_open_per_account_max: 1 << 10,
            check_invariants: cfg!(debug_assertions),
        },
        assets: assets(),
        instruments: instruments(),
        withdrawals_pending_max: 1 << 14,
        custody: custody(&assets()),
    }
}

/// The demo approvers' secret seeds: for the default configuration and tests only. A real
/// configuration lists the public keys of approvers whose secrets never touch the server.
pub fn demo_approver_seed(index: usize) -> [u8; 32] {
    *blake3::hash(format!("kinko demo approver {index}").as_bytes()).as_bytes()
}

/// Demo custody: 24-hour address cooldown, 2 of 3 demo approvers for every coin, and daily
/// withdrawal limits per account of 10 BTC, 100 ETH, 10 M XEM, 1 M MONA, 100 BCH, 100 M JPY.
pub fn custody(assets: &[AssetSpec]) -> CustodyConfig {
    let approvers: Vec<[u8; 32]> = (0..3)
        .map(|i| {
            ed25519_dalek::SigningKey::from_bytes(&demo_approver_seed(i))
                .verifying_key()
                .to_bytes()
        })
        .collect();
    let limit_whole = |code: &str| -> i64 {
        match code {
            "BTC" | "BCH" => 10,
            "ETH" => 100,
            "XEM" => 10_000_000,
            "MONA" => 1_000_000,
            "JPY" => 100_000_000,
            _ => 1_000,
        }
    };
    CustodyConfig {
        address_cooldown_ns: CustodyConfig::COOLDOWN_DEFAULT_NS,
        addresses_per_account_max: 16,
        assets: assets
            .iter()
            .map(|spec| AssetCustody {
                daily_withdrawal_limit_units: limit_whole(&spec.code)
                    .saturating_mul(10i64.saturating_pow(u32::from(spec.decimals))),
                approvals_required: if spec.class == AssetClass::Coin { 2 } else { 0 },
                approvers: if spec.class == AssetClass::Coin {
                    approvers.clone()
                } else {
                    Vec::new()
                },
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_configuration_starts() {
        let config = super::config();
        assert_eq!(config.instruments.len(), 5);
        for spec in &config.instruments {
            assert_eq!(spec.validate(), Ok(()), "{}", spec.symbol);
        }
        crate::Exchange::new(config).expect("the default configuration is valid");
    }
}
