//! The audit reports of DESIGN.md ("Audit reports"), each built by re-executing the journal from
//! genesis through the engine's state machine (events demanded byte-identical, as in `verify`),
//! never from a snapshot and never from a second implementation of the rules.

pub mod actions;
pub mod balances;
pub mod compensation;
pub mod internalization;
pub mod liabilities;
pub mod segregation;
pub mod trades;
pub mod vwap;

use engine::{ExchangeConfig, HousePolicy, HouseSide, InstrumentId, InstrumentSpec, Side};
use ledger::{AssetId, AssetSpec, Pool};

use crate::error::ReplayError;

/// Names in the journal's genesis configuration: assets by code, instruments by symbol.
#[derive(Clone, Copy)]
pub struct Catalog<'a> {
    config: &'a ExchangeConfig,
}

impl<'a> Catalog<'a> {
    pub fn new(config: &'a ExchangeConfig) -> Catalog<'a> {
        Catalog { config }
    }

    /// An asset by its code, ignoring case (`xem` is XEM).
    pub fn asset(&self, code: &str) -> Result<(AssetId, &'a AssetSpec), ReplayError> {
        self.config
            .assets
            .iter()
            .enumerate()
            .find(|(_, a)| a.code.eq_ignore_ascii_case(code))
            .map(|(i, a)| (i as AssetId, a))
            .ok_or_else(|| ReplayError::UnknownAsset(code.into()))
    }

    pub fn asset_spec(&self, asset: AssetId) -> &'a AssetSpec {
        &self.config.assets[asset as usize]
    }

    pub fn assets(&self) -> impl Iterator<Item = (AssetId, &'a AssetSpec)> {
        self.config
            .assets
            .iter()
            .enumerate()
            .map(|(i, a)| (i as AssetId, a))
    }

    /// An instrument by its symbol, ignoring case (`xem/jpy` is XEM/JPY).
    pub fn instrument(
        &self,
        symbol: &str,
    ) -> Result<(InstrumentId, &'a InstrumentSpec), ReplayError> {
        self.config
            .instruments
            .iter()
            .enumerate()
            .find(|(_, i)| i.symbol.eq_ignore_ascii_case(symbol))
            .map(|(i, spec)| (i as InstrumentId, spec))
            .ok_or_else(|| ReplayError::UnknownInstrument(symbol.into()))
    }

    /// `None` for a number the configuration does not have (a refused command can carry one).
    pub fn instrument_get(&self, instrument: InstrumentId) -> Option<&'a InstrumentSpec> {
        self.config.instruments.get(instrument as usize)
    }

    pub fn asset_get(&self, asset: AssetId) -> Option<&'a AssetSpec> {
        self.config.assets.get(asset as usize)
    }

    pub fn instrument_spec(&self, instrument: InstrumentId) -> &'a InstrumentSpec {
        &self.config.instruments[instrument as usize]
    }

    pub fn instruments(&self) -> impl Iterator<Item = (InstrumentId, &'a InstrumentSpec)> {
        self.config
            .instruments
            .iter()
            .enumerate()
            .map(|(i, spec)| (i as InstrumentId, spec))
    }
}

pub fn pool_name(pool: Pool) -> &'static str {
    match pool {
        Pool::Customer => "customer",
        Pool::House => "house",
    }
}

pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

pub fn house_name(house: HouseSide) -> &'static str {
    match house {
        HouseSide::None => "none",
        HouseSide::Maker => "maker",
        HouseSide::Taker => "taker",
        HouseSide::Both => "both",
    }
}

pub fn policy_name(policy: HousePolicy) -> &'static str {
    match policy {
        HousePolicy::Forbidden => "forbidden",
        HousePolicy::Disclosed => "disclosed",
    }
}
