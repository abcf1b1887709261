//! Assets and their precision.

use serde::{Deserialize, Serialize};

/// Dense from zero in the order of the configuration.
pub type AssetId = u16;

/// Coins sit in hot and cold wallets; fiat sits in a segregated bank account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AssetClass {
    Coin,
    Fiat,
}

/// Every amount of an asset is an integer count of its smallest unit, `10^-decimals`.
///
/// Precision is a choice, documented per asset in docs/ARCHITECTURE.md: BTC, BCH, MONA 8 (the
/// chain's own); ETH 9 (gwei: the chain's 18 would overflow i64 at 9.2 ETH); XEM 6 (the chain's
/// own); JPY 0 (the bank's own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetSpec {
    pub code: String,
    pub decimals: u8,
    pub class: AssetClass,
    /// Customer coins in the hot wallet may be at most this share of what is owed to customers
    /// (500 bps = 5%: Japanese practice since 2019 keeps at least 95% cold).
    pub hot_cap_bps: u32,
}

/// The most decimals an asset may have: 10^18 is the largest power of ten in i64.
pub const DECIMALS_MAX: u8 = 18;

impl AssetSpec {
    pub fn coin(code: &str, decimals: u8) -> AssetSpec {
        AssetSpec {
            code: code.into(),
            decimals,
            class: AssetClass::Coin,
            hot_cap_bps: 500,
        }
    }

    pub fn fiat(code: &str, decimals: u8) -> AssetSpec {
        AssetSpec {
            code: code.into(),
            decimals,
            class: AssetClass::Fiat,
            hot_cap_bps: 10_000,
        }
    }

    /// The custody location where deposits arrive and withdrawals leave.
    pub fn operating_location(&self) -> crate::Location {
        match self.class {
            AssetClass::Coin => crate::Location::Hot,
            AssetClass::Fiat => crate::Location::Bank,
        }
    }

    /// Whether this asset can be held at `location`: coins in wallets, fiat in the bank (never
    /// `Lost`: that is a write-down, not a place to move funds to).
    pub fn holds_at(&self, location: crate::Location) -> bool {
        if location == crate::Location::Lost {
            return false;
        }
        match self.class {
            AssetClass::Coin => location != crate::Location::Bank,
            AssetClass::Fiat => location == crate::Location::Bank,
        }
    }
}
