//! Double-entry postings. A posting's `delta` is signed the accountant's way: a debit is positive,
//! a credit negative. Custody and amounts due *from* the other pool are debit-normal (assets);
//! balances owed to account holders, fee income and amounts due *to* the other pool are
//! credit-normal (liabilities). A posting set must sum to zero per asset.

use serde::{Deserialize, Serialize};

use crate::asset::AssetId;
use crate::books::AccountId;
use crate::AmountUnits;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Pool {
    Customer,
    House,
}

impl Pool {
    pub const ALL: [Pool; 2] = [Pool::Customer, Pool::House];

    pub fn other(self) -> Pool {
        match self {
            Pool::Customer => Pool::House,
            Pool::House => Pool::Customer,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Where the assets behind a pool physically sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Location {
    Hot,
    Cold,
    Bank,
    /// Not a place: what reconciliation found missing from a wallet (a theft, a loss). The ledger
    /// writes the wallet down and records the missing amount here, as the pool's claim against
    /// whoever took it, so that the books still balance and the shortfall is a recorded state
    /// (an open incident), never a silent one. Nothing can be paid from it; a top-up replaces it
    /// with real custody.
    Lost,
}

impl Location {
    pub const ALL: [Location; 4] = [
        Location::Hot,
        Location::Cold,
        Location::Bank,
        Location::Lost,
    ];

    pub fn index(self) -> usize {
        self as usize
    }
}

/// An account holder's balance is split: what they may spend, and what is reserved for open
/// orders and pending withdrawals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Bucket {
    Available,
    Held,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LedgerAccount {
    /// A customer's or a house account's balance (credit-normal).
    Holder { account: AccountId, bucket: Bucket },
    /// The assets behind `pool` at `location` (debit-normal).
    Custody { pool: Pool, location: Location },
    /// What `pool` owes the other pool, earmarked in its custody and unspendable there
    /// (credit-normal).
    DueTo { pool: Pool },
    /// What the other pool owes `pool` (debit-normal).
    DueFrom { pool: Pool },
    /// The house's fee income (credit-normal, house pool).
    FeeIncome,
}

impl LedgerAccount {
    pub fn available(account: AccountId) -> LedgerAccount {
        LedgerAccount::Holder {
            account,
            bucket: Bucket::Available,
        }
    }

    pub fn held(account: AccountId) -> LedgerAccount {
        LedgerAccount::Holder {
            account,
            bucket: Bucket::Held,
        }
    }

    /// Debit-normal accounts grow with debits (positive deltas).
    pub fn debit_normal(self) -> bool {
        matches!(
            self,
            LedgerAccount::Custody { .. } | LedgerAccount::DueFrom { .. }
        )
    }
}

/// What a posting set is for; cross-pool value moves are allowed only for some kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PostingKind {
    Deposit,
    Reserve,
    Release,
    Settlement,
    WithdrawalComplete,
    Sweep,
    CustodyMove,
    /// An explicit, journaled transfer of house funds into the customer pool (a top-up, a
    /// compensation): the only kind allowed to move value between pools without an obligation.
    TopUp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: LedgerAccount,
    pub asset: AssetId,
    /// Debit positive, credit negative.
    pub delta: AmountUnits,
}

/// The most postings in one set: a disclosed house-versus-customer fill with fees on both sides
/// needs 16, and releasing a buyer's excess reservation 2 more.
pub const POSTINGS_MAX: usize = 24;

/// A fixed-capacity set of postings applied all or nothing. Building one allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostingSet {
    pub kind: PostingKind,
    postings: [Posting; POSTINGS_MAX],
    len: usize,
}

impl PostingSet {
    pub fn new(kind: PostingKind) -> PostingSet {
        PostingSet {
            kind,
            postings: [Posting {
                account: LedgerAccount::FeeIncome,
                asset: 0,
                delta: 0,
            }; POSTINGS_MAX],
            len: 0,
        }
    }

    pub fn postings(&self) -> &[Posting] {
        &self.postings[..self.len]
    }

    /// Adds a raw posting (debit positive).
    pub fn post(&mut self, account: LedgerAccount, asset: AssetId, delta: AmountUnits) {
        assert!(self.len < POSTINGS_MAX, "posting set full: {self:?}");
        if delta == 0 {
            return;
        }
        self.postings[self.len] = Posting {
            account,
            asset,
            delta,
        };
        self.len += 1;
    }

    /// Raises the balance of `account` by `amount` (a debit for debit-normal accounts, a credit
    /// otherwise).
    pub fn increase(&mut self, account: LedgerAccount, asset: AssetId, amount: AmountUnits) {
        let delta = if account.debit_normal() {
            amount
        } else {
            -amount
        };
        self.post(account, asset, delta);
    }

    pub fn decrease(&mut self, account: LedgerAccount, asset: AssetId, amount: AmountUnits) {
        self.increase(account, asset, -amount);
    }

    /// Moves `amount` between two credit-normal balances. When they belong to different pools the
    /// value stays where it physically is, and the obligation is recorded on both sides: the
    /// paying pool owes it (earmarked in its custody), the receiving pool is owed it.
    pub fn transfer(
        &mut self,
        source: (LedgerAccount, Pool),
        target: (LedgerAccount, Pool),
        asset: AssetId,
        amount: AmountUnits,
    ) {
        debug_assert!(amount >= 0, "negative transfer {amount}");
        if amount == 0 {
            return;
        }
        self.decrease(source.0, asset, amount);
        self.increase(target.0, asset, amount);
        if source.1 != target.1 {
            self.increase(LedgerAccount::DueTo { pool: source.1 }, asset, amount);
            self.increase(LedgerAccount::DueFrom { pool: target.1 }, asset, amount);
        }
    }

    /// The sum of deltas for `asset` (zero in a valid set).
    pub fn sum(&self, asset: AssetId) -> AmountUnits {
        self.postings()
            .iter()
            .filter(|p| p.asset == asset)
            .map(|p| p.delta)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_pool_transfer_records_the_obligation_and_balances_each_pool() {
        let mut set = PostingSet::new(PostingKind::Settlement);
        let customer = (LedgerAccount::held(1), Pool::Customer);
        let fees = (LedgerAccount::FeeIncome, Pool::House);
        set.transfer(customer, fees, 0, 30);
        assert_eq!(set.postings().len(), 4);
        assert_eq!(set.sum(0), 0);
        assert!(set.postings().contains(&Posting {
            account: LedgerAccount::DueTo {
                pool: Pool::Customer
            },
            asset: 0,
            delta: -30,
        }));
        assert!(set.postings().contains(&Posting {
            account: LedgerAccount::DueFrom { pool: Pool::House },
            asset: 0,
            delta: 30,
        }));
    }

    #[test]
    fn same_pool_transfer_is_two_postings() {
        let mut set = PostingSet::new(PostingKind::Settlement);
        set.transfer(
            (LedgerAccount::held(1), Pool::Customer),
            (LedgerAccount::available(2), Pool::Customer),
            0,
            5,
        );
        assert_eq!(set.postings().len(), 2);
        assert_eq!(set.sum(0), 0);
    }
}
