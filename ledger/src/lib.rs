//! Kinko's segregated-custody ledger.
//!
//! Every change is a [`PostingSet`] of double-entry postings; a set that does not sum to zero per
//! asset, or that moves value between the customer and the house pool without recording the
//! obligation, cannot be applied. The six invariants of DESIGN.md ("The ledger") are functions
//! that return typed [`Violation`]s.
//!
//! It must never: use floating point, apply half a posting set, let a balance go below zero, or
//! let customer custody pay for anything of the house.

pub mod amount;
pub mod asset;
pub mod books;
pub mod posting;

pub use amount::{AmountError, Ratio};
pub use asset::{AssetClass, AssetId, AssetSpec};
pub use books::{AccountId, Balance, Ledger, LedgerSnapshot, PoolRow, PoolTotals, Violation};
pub use posting::{Bucket, LedgerAccount, Location, Pool, Posting, PostingKind, PostingSet};

/// An amount in an asset's smallest unit (satoshi for BTC, yen for JPY).
pub type AmountUnits = i64;
