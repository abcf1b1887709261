//! The ledger's state: holder balances in dense arrays (lookups are indexing, never hashing),
//! per-pool custody and obligations, and the invariant checks.

use serde::{Deserialize, Serialize};

use crate::asset::{AssetId, AssetSpec};
use crate::posting::*;
use crate::AmountUnits;

/// The same id the matching engine uses: dense from zero.
pub type AccountId = u32;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub available: AmountUnits,
    pub held: AmountUnits,
}

impl Balance {
    pub fn total(self) -> i128 {
        i128::from(self.available) + i128::from(self.held)
    }
}

/// One pool's books for one asset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRow {
    pub custody: [AmountUnits; 4],
    pub due_to: AmountUnits,
    pub due_from: AmountUnits,
    /// Only ever non-zero in the house pool.
    pub fee_income: AmountUnits,
}

/// A pool's position in one asset, for reports and checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolTotals {
    pub custody: i128,
    pub hot: i128,
    /// Written down by reconciliation (an open incident): part of `custody` for the books to
    /// balance, but no asset. `custody - lost` is what the pool really holds.
    pub lost: i128,
    pub due_to: i128,
    pub due_from: i128,
    /// Available plus held of every holder in the pool, plus fee income for the house.
    pub owed: i128,
}

/// Invariants 1, 2 and 3 for one asset, from the two pools' positions.
fn check_pool_pair(
    asset: AssetId,
    customer: &PoolTotals,
    house: &PoolTotals,
) -> Result<(), Violation> {
    segregation_of(asset, customer, house)?;
    commingling_of(asset, customer, house)
}

/// Invariant 2 for one asset: customers covered, the surplus is what is owed to the house, the
/// pools agree on what each owes the other. Custody here includes what reconciliation wrote down
/// as lost: a shortfall is allowed only when it is recorded as such (an open incident, reported
/// as uncovered by the segregation statement); an unrecorded one is a violation.
fn segregation_of(
    asset: AssetId,
    customer: &PoolTotals,
    house: &PoolTotals,
) -> Result<(), Violation> {
    let covered = customer.custody + customer.due_from;
    if covered < customer.owed {
        return Err(Violation::Shortfall {
            asset,
            covered,
            owed: customer.owed,
        });
    }
    if customer.surplus() != customer.due_to {
        return Err(Violation::SurplusMismatch {
            asset,
            surplus: customer.surplus(),
            due_to_house: customer.due_to,
        });
    }
    for (owed_by, due_to, due_from) in [
        (Pool::Customer, customer.due_to, house.due_from),
        (Pool::House, house.due_to, customer.due_from),
    ] {
        if due_to != due_from {
            return Err(Violation::ObligationMismatch {
                asset,
                owed_by,
                due_to,
                due_from,
            });
        }
    }
    Ok(())
}

/// Invariant 3 for one asset: each pool's books balance on their own.
fn commingling_of(
    asset: AssetId,
    customer: &PoolTotals,
    house: &PoolTotals,
) -> Result<(), Violation> {
    for (pool, t) in [(Pool::Customer, customer), (Pool::House, house)] {
        let net = t.custody + t.due_from - t.owed - t.due_to;
        if net != 0 {
            return Err(Violation::Commingled {
                asset,
                pool,
                net,
                kind: PostingKind::Settlement,
            });
        }
    }
    Ok(())
}

impl PoolTotals {
    /// What is owed to the pool's holders and not backed by real custody (or by the other pool's
    /// obligation): the loss of an open incident that falls on this pool's holders.
    pub fn uncovered(&self) -> i128 {
        (self.owed + self.due_to - (self.custody - self.lost) - self.due_from).max(0)
    }

    /// What the pool holds for its own holders beyond what it owes them: custody plus what the
    /// other pool owes it, minus what it owes its holders.
    pub fn surplus(&self) -> i128 {
        self.custody + self.due_from - self.owed
    }
}

/// A broken ledger invariant (DESIGN.md, "The ledger").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Violation {
    /// Invariant 1, conservation: a posting set, or the whole ledger, does not sum to zero in an asset.
    Unbalanced { asset: AssetId, sum: i128 },
    /// Invariant 2, segregation: customer custody (with what the house owes it) does not cover what is owed
    /// to customers.
    Shortfall {
        asset: AssetId,
        covered: i128,
        owed: i128,
    },
    /// Invariant 2, segregation: the customer pool's surplus differs from what it records as owed to the
    /// house.
    SurplusMismatch {
        asset: AssetId,
        surplus: i128,
        due_to_house: i128,
    },
    /// Invariant 2: the two pools disagree about what one owes the other.
    ObligationMismatch {
        asset: AssetId,
        owed_by: Pool,
        due_to: i128,
        due_from: i128,
    },
    /// Invariant 3, no commingling: a posting set moved value between pools without recording it.
    Commingled {
        asset: AssetId,
        pool: Pool,
        net: i128,
        kind: PostingKind,
    },
    /// Invariant 5, no negative balance.
    Negative {
        account: LedgerAccount,
        asset: AssetId,
        balance: i128,
    },
    /// Invariant 5: held differs from open-order reservations plus pending withdrawals.
    HeldMismatch {
        account: AccountId,
        asset: AssetId,
        held: AmountUnits,
        reserved: i128,
    },
    /// Invariant 6: customer coins in the hot wallet above the configured share of what is owed.
    HotOverCap {
        asset: AssetId,
        hot: i128,
        owed: i128,
        cap_bps: u32,
    },
    /// A posting names an account or asset the ledger does not have.
    UnknownAccount {
        account: LedgerAccount,
        asset: AssetId,
    },
    /// A balance would leave the i64 range.
    Overflow {
        account: LedgerAccount,
        asset: AssetId,
    },
}

/// The ledger's whole state, for snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSnapshot {
    pub assets: Vec<AssetSpec>,
    pub pools: Vec<Pool>,
    pub balances: Vec<Balance>,
    pub rows: Vec<PoolRow>,
    pub accounts_max: usize,
}

pub struct Ledger {
    assets: Vec<AssetSpec>,
    pools: Vec<Pool>,
    /// `account × assets + asset`.
    balances: Vec<Balance>,
    /// `pool × assets + asset`.
    rows: Vec<PoolRow>,
    accounts_max: usize,
    /// Holder balance cells changed since the last `drain_touched`, each once (for balance feeds;
    /// not part of the state).
    touched: Vec<usize>,
    touched_flag: Vec<bool>,
    /// Holder cells changed since `clear_changed`, with repeats (for incremental checks).
    changed: Vec<(AccountId, AssetId)>,
    /// Running totals of what each pool owes its holders (plus fee income for the house), by
    /// `pool × assets + asset`: the pool-level invariants then cost O(assets), not O(accounts).
    owed: Vec<i128>,
}

impl Ledger {
    pub fn new(assets: Vec<AssetSpec>, accounts_max: usize) -> Ledger {
        let rows = vec![PoolRow::default(); 2 * assets.len()];
        let assets_len = assets.len();
        Ledger {
            balances: Vec::with_capacity(accounts_max * assets.len()),
            pools: Vec::with_capacity(accounts_max),
            rows,
            assets,
            accounts_max,
            touched: Vec::new(),
            touched_flag: Vec::new(),
            changed: Vec::new(),
            owed: vec![0; 2 * assets_len],
        }
    }

    /// Forgets the changed-cells log (the exchange calls it at the start of each command).
    pub fn clear_changed(&mut self) {
        self.changed.clear();
    }

    /// Holder cells changed since `clear_changed`.
    pub fn changed(&self) -> &[(AccountId, AssetId)] {
        &self.changed
    }

    /// Appends `(account, asset, balance)` for every holder balance changed since the last call,
    /// in the order they were first changed, and forgets them.
    pub fn drain_touched(&mut self, out: &mut Vec<(AccountId, AssetId, Balance)>) {
        let assets = self.assets.len();
        for &cell in &self.touched {
            self.touched_flag[cell] = false;
            out.push((
                (cell / assets) as AccountId,
                (cell % assets) as AssetId,
                self.balances[cell],
            ));
        }
        self.touched.clear();
    }

    fn touch(&mut self, account: AccountId, asset: AssetId) {
        let cell = account as usize * self.assets.len() + asset as usize;
        if self.touched_flag.len() < self.balances.len() {
            self.touched_flag.resize(self.balances.len(), false);
        }
        if !self.touched_flag[cell] {
            self.touched_flag[cell] = true;
            self.touched.push(cell);
        }
    }

    pub fn snapshot(&self) -> LedgerSnapshot {
        LedgerSnapshot {
            assets: self.assets.clone(),
            pools: self.pools.clone(),
            balances: self.balances.clone(),
            rows: self.rows.clone(),
            accounts_max: self.accounts_max,
        }
    }

    pub fn restore(snapshot: &LedgerSnapshot) -> Ledger {
        assert_eq!(
            snapshot.balances.len(),
            snapshot.pools.len() * snapshot.assets.len()
        );
        assert_eq!(snapshot.rows.len(), 2 * snapshot.assets.len());
        let mut ledger = Ledger::new(snapshot.assets.clone(), snapshot.accounts_max);
        ledger.pools.extend_from_slice(&snapshot.pools);
        ledger.balances.extend_from_slice(&snapshot.balances);
        ledger.rows.copy_from_slice(&snapshot.rows);
        for pool in Pool::ALL {
            for asset in 0..ledger.assets.len() as AssetId {
                ledger.owed[pool.index() * ledger.assets.len() + asset as usize] =
                    ledger.totals(pool, asset).owed;
            }
        }
        ledger
    }

    pub fn assets(&self) -> &[AssetSpec] {
        &self.assets
    }

    pub fn asset(&self, asset: AssetId) -> Option<&AssetSpec> {
        self.assets.get(asset as usize)
    }

    pub fn asset_by_code(&self, code: &str) -> Option<AssetId> {
        self.assets
            .iter()
            .position(|a| a.code == code)
            .map(|i| i as AssetId)
    }

    pub fn accounts(&self) -> usize {
        self.pools.len()
    }

    pub fn is_full(&self) -> bool {
        self.pools.len() >= self.accounts_max
    }

    /// Opens an account in `pool`; ids are dense.
    pub fn open_account(&mut self, pool: Pool) -> AccountId {
        assert!(!self.is_full(), "ledger full: callers check is_full");
        let id = self.pools.len() as AccountId;
        self.pools.push(pool);
        self.balances
            .extend(std::iter::repeat_n(Balance::default(), self.assets.len()));
        id
    }

    pub fn pool_of(&self, account: AccountId) -> Option<Pool> {
        self.pools.get(account as usize).copied()
    }

    pub fn balance(&self, account: AccountId, asset: AssetId) -> Balance {
        self.balances[account as usize * self.assets.len() + asset as usize]
    }

    pub fn row(&self, pool: Pool, asset: AssetId) -> &PoolRow {
        &self.rows[pool.index() * self.assets.len() + asset as usize]
    }

    /// The balance of any ledger account, in its normal direction (positive when it holds value).
    pub fn get(&self, account: LedgerAccount, asset: AssetId) -> AmountUnits {
        match account {
            LedgerAccount::Holder { account, bucket } => {
                let b = self.balance(account, asset);
                match bucket {
                    Bucket::Available => b.available,
                    Bucket::Held => b.held,
                }
            }
            LedgerAccount::Custody { pool, location } => {
                self.row(pool, asset).custody[location.index()]
            }
            LedgerAccount::DueTo { pool } => self.row(pool, asset).due_to,
            LedgerAccount::DueFrom { pool } => self.row(pool, asset).due_from,
            LedgerAccount::FeeIncome => self.row(Pool::House, asset).fee_income,
        }
    }

    fn cell(&mut self, account: LedgerAccount, asset: AssetId) -> Option<&mut AmountUnits> {
        let assets = self.assets.len();
        if asset as usize >= assets {
            return None;
        }
        match account {
            LedgerAccount::Holder { account, bucket } => {
                if account as usize >= self.pools.len() {
                    return None;
                }
                let b = &mut self.balances[account as usize * assets + asset as usize];
                Some(match bucket {
                    Bucket::Available => &mut b.available,
                    Bucket::Held => &mut b.held,
                })
            }
            LedgerAccount::Custody { pool, location } => Some(
                &mut self.rows[pool.index() * assets + asset as usize].custody[location.index()],
            ),
            LedgerAccount::DueTo { pool } => {
                Some(&mut self.rows[pool.index() * assets + asset as usize].due_to)
            }
            LedgerAccount::DueFrom { pool } => {
                Some(&mut self.rows[pool.index() * assets + asset as usize].due_from)
            }
            LedgerAccount::FeeIncome => {
                Some(&mut self.rows[Pool::House.index() * assets + asset as usize].fee_income)
            }
        }
    }

    /// The pool a ledger account belongs to.
    pub fn pool_of_ledger_account(&self, account: LedgerAccount) -> Option<Pool> {
        match account {
            LedgerAccount::Holder { account, .. } => self.pool_of(account),
            LedgerAccount::Custody { pool, .. }
            | LedgerAccount::DueTo { pool }
            | LedgerAccount::DueFrom { pool } => Some(pool),
            LedgerAccount::FeeIncome => Some(Pool::House),
        }
    }

    /// Checks a posting set without applying it: conservation, no commingling, known accounts,
    /// and that no balance would go negative or overflow.
    pub fn check(&self, set: &PostingSet) -> Result<(), Violation> {
        let postings = set.postings();
        for posting in postings {
            let known = (posting.asset as usize) < self.assets.len()
                && self.pool_of_ledger_account(posting.account).is_some();
            if !known {
                return Err(Violation::UnknownAccount {
                    account: posting.account,
                    asset: posting.asset,
                });
            }
        }
        for (i, posting) in postings.iter().enumerate() {
            let pool = self
                .pool_of_ledger_account(posting.account)
                .expect("checked above");
            // Check each asset and each (pool, asset) once, at its first posting.
            let first_of_asset = postings[..i].iter().all(|p| p.asset != posting.asset);
            if first_of_asset {
                let sum: i128 = postings
                    .iter()
                    .filter(|p| p.asset == posting.asset)
                    .map(|p| i128::from(p.delta))
                    .sum();
                if sum != 0 {
                    return Err(Violation::Unbalanced {
                        asset: posting.asset,
                        sum,
                    });
                }
            }
            let first_of_pool = postings[..i].iter().all(|p| {
                p.asset != posting.asset || self.pool_of_ledger_account(p.account) != Some(pool)
            });
            if first_of_pool && set.kind != PostingKind::TopUp {
                let net: i128 = postings
                    .iter()
                    .filter(|p| {
                        p.asset == posting.asset
                            && self.pool_of_ledger_account(p.account) == Some(pool)
                    })
                    .map(|p| i128::from(p.delta))
                    .sum();
                if net != 0 {
                    return Err(Violation::Commingled {
                        asset: posting.asset,
                        pool,
                        net,
                        kind: set.kind,
                    });
                }
            }
            let first_of_account = postings[..i]
                .iter()
                .all(|p| p.asset != posting.asset || p.account != posting.account);
            if first_of_account {
                let change: i128 = postings
                    .iter()
                    .filter(|p| p.asset == posting.asset && p.account == posting.account)
                    .map(|p| i128::from(p.delta))
                    .sum();
                let change = if posting.account.debit_normal() {
                    change
                } else {
                    -change
                };
                let after = i128::from(self.get(posting.account, posting.asset)) + change;
                if after < 0 {
                    return Err(Violation::Negative {
                        account: posting.account,
                        asset: posting.asset,
                        balance: after,
                    });
                }
                if after > i128::from(AmountUnits::MAX) {
                    return Err(Violation::Overflow {
                        account: posting.account,
                        asset: posting.asset,
                    });
                }
            }
        }
        if set.kind == PostingKind::TopUp {
            self.check_top_up(set)?;
        }
        Ok(())
    }

    /// A top-up may only move value from the house pool into the customer pool.
    fn check_top_up(&self, set: &PostingSet) -> Result<(), Violation> {
        for posting in set.postings() {
            let net: i128 = set
                .postings()
                .iter()
                .filter(|p| {
                    p.asset == posting.asset
                        && self.pool_of_ledger_account(p.account) == Some(Pool::Customer)
                })
                .map(|p| i128::from(p.delta))
                .sum();
            // Value entering the customer pool shows as a net debit there (custody grows).
            if net < 0 {
                return Err(Violation::Commingled {
                    asset: posting.asset,
                    pool: Pool::Customer,
                    net,
                    kind: set.kind,
                });
            }
        }
        Ok(())
    }

    /// Applies a posting set, all or nothing.
    pub fn apply(&mut self, set: &PostingSet) -> Result<(), Violation> {
        self.check(set)?;
        let assets = self.assets.len();
        for posting in set.postings() {
            let delta = if posting.account.debit_normal() {
                posting.delta
            } else {
                -posting.delta
            };
            match posting.account {
                LedgerAccount::Holder { account, .. } => {
                    self.touch(account, posting.asset);
                    self.changed.push((account, posting.asset));
                    let pool = self.pools[account as usize];
                    self.owed[pool.index() * assets + posting.asset as usize] += i128::from(delta);
                }
                LedgerAccount::FeeIncome => {
                    self.owed[Pool::House.index() * assets + posting.asset as usize] +=
                        i128::from(delta);
                }
                _ => {}
            }
            let cell = self
                .cell(posting.account, posting.asset)
                .expect("checked: the account exists");
            *cell += delta;
            debug_assert!(*cell >= 0, "checked: no negative balance");
        }
        Ok(())
    }

    // ------------------------------------------------------------------ invariants

    /// A pool's position in one asset.
    pub fn totals(&self, pool: Pool, asset: AssetId) -> PoolTotals {
        let row = self.row(pool, asset);
        let mut owed: i128 = self
            .pools
            .iter()
            .enumerate()
            .filter(|(_, p)| **p == pool)
            .map(|(account, _)| self.balance(account as AccountId, asset).total())
            .sum();
        if pool == Pool::House {
            owed += i128::from(row.fee_income);
        }
        PoolTotals {
            custody: row.custody.iter().map(|&c| i128::from(c)).sum(),
            hot: i128::from(row.custody[Location::Hot.index()]),
            lost: i128::from(row.custody[Location::Lost.index()]),
            due_to: i128::from(row.due_to),
            due_from: i128::from(row.due_from),
            owed,
        }
    }

    /// Invariant 1: the whole ledger sums to zero per asset (debits equal credits).
    pub fn check_conservation(&self) -> Result<(), Violation> {
        for asset in 0..self.assets.len() as AssetId {
            let mut sum: i128 = 0;
            for pool in Pool::ALL {
                let t = self.totals(pool, asset);
                sum += t.custody + t.due_from - t.owed - t.due_to;
            }
            if sum != 0 {
                return Err(Violation::Unbalanced { asset, sum });
            }
        }
        Ok(())
    }

    /// Invariant 2: per asset, customer custody plus what the house owes the customer pool covers what is
    /// owed to customers, and the surplus is exactly what is recorded as owed to the house. The
    /// pools agree on what each owes the other.
    pub fn check_segregation(&self) -> Result<(), Violation> {
        for asset in 0..self.assets.len() as AssetId {
            let customer = self.totals(Pool::Customer, asset);
            segregation_of(asset, &customer, &self.totals(Pool::House, asset))?;
        }
        Ok(())
    }

    /// Invariant 3, no commingling, as a state: each pool's books balance on their own, so neither pool
    /// holds value of the other that is not recorded as owed.
    pub fn check_commingling(&self) -> Result<(), Violation> {
        for asset in 0..self.assets.len() as AssetId {
            let customer = self.totals(Pool::Customer, asset);
            commingling_of(asset, &customer, &self.totals(Pool::House, asset))?;
        }
        Ok(())
    }

    /// Invariant 5: no balance anywhere is negative.
    pub fn check_no_negative(&self) -> Result<(), Violation> {
        let assets = self.assets.len();
        for (i, b) in self.balances.iter().enumerate() {
            let (account, asset) = ((i / assets) as AccountId, (i % assets) as AssetId);
            for (bucket, value) in [(Bucket::Available, b.available), (Bucket::Held, b.held)] {
                if value < 0 {
                    return Err(Violation::Negative {
                        account: LedgerAccount::Holder { account, bucket },
                        asset,
                        balance: i128::from(value),
                    });
                }
            }
        }
        for (i, row) in self.rows.iter().enumerate() {
            let (pool, asset) = (Pool::ALL[i / assets], (i % assets) as AssetId);
            let mut cells = vec![
                (LedgerAccount::DueTo { pool }, row.due_to),
                (LedgerAccount::DueFrom { pool }, row.due_from),
                (LedgerAccount::FeeIncome, row.fee_income),
            ];
            for location in Location::ALL {
                cells.push((
                    LedgerAccount::Custody { pool, location },
                    row.custody[location.index()],
                ));
            }
            if let Some((account, value)) = cells.into_iter().find(|(_, v)| *v < 0) {
                return Err(Violation::Negative {
                    account,
                    asset,
                    balance: i128::from(value),
                });
            }
        }
        Ok(())
    }

    /// Invariant 5: held equals what the caller says is reserved (`reserved[account × assets + asset]`:
    /// open-order reservations plus pending withdrawals).
    pub fn check_held(&self, reserved: &[i128]) -> Result<(), Violation> {
        assert_eq!(
            reserved.len(),
            self.balances.len(),
            "one reservation total per balance"
        );
        let assets = self.assets.len();
        for (i, (b, r)) in self.balances.iter().zip(reserved).enumerate() {
            if i128::from(b.held) != *r {
                return Err(Violation::HeldMismatch {
                    account: (i / assets) as AccountId,
                    asset: (i % assets) as AssetId,
                    held: b.held,
                    reserved: *r,
                });
            }
        }
        Ok(())
    }

    /// Invariant 6: customer coins in the hot wallet of `asset` within the cap.
    pub fn check_hot_cap(&self, asset: AssetId) -> Result<(), Violation> {
        let spec = &self.assets[asset as usize];
        let customer = self.totals(Pool::Customer, asset);
        let cap = customer.owed * i128::from(spec.hot_cap_bps);
        if customer.hot * 10_000 > cap {
            return Err(Violation::HotOverCap {
                asset,
                hot: customer.hot,
                owed: customer.owed,
                cap_bps: spec.hot_cap_bps,
            });
        }
        Ok(())
    }

    /// Invariants 1, 2, 3 and 5 (6 is an alert, not a failure: deposits arrive in the hot wallet
    /// whether or not it is over its cap).
    pub fn check_all(&self, reserved: &[i128]) -> Result<(), Violation> {
        self.check_conservation()?;
        self.check_segregation()?;
        self.check_commingling()?;
        self.check_no_negative()?;
        self.check_owed_totals()?;
        self.check_held(reserved)
    }

    /// Invariants 1, 2 and 3 from the running totals, in O(assets): valid after every posting
    /// set, given that [`Ledger::check_owed_totals`] confirms the totals from time to time.
    pub fn check_pools(&self) -> Result<(), Violation> {
        let assets = self.assets.len();
        for asset in 0..assets as AssetId {
            let totals = |pool: Pool| {
                let row = self.row(pool, asset);
                PoolTotals {
                    custody: row.custody.iter().map(|&c| i128::from(c)).sum(),
                    hot: i128::from(row.custody[Location::Hot.index()]),
                    lost: i128::from(row.custody[Location::Lost.index()]),
                    due_to: i128::from(row.due_to),
                    due_from: i128::from(row.due_from),
                    owed: self.owed[pool.index() * assets + asset as usize],
                }
            };
            let (customer, house) = (totals(Pool::Customer), totals(Pool::House));
            check_pool_pair(asset, &customer, &house)?;
        }
        Ok(())
    }

    /// The running totals equal a fresh sum over every holder: O(accounts × assets).
    pub fn check_owed_totals(&self) -> Result<(), Violation> {
        for pool in Pool::ALL {
            for asset in 0..self.assets.len() as AssetId {
                let summed = self.totals(pool, asset).owed;
                let running = self.owed[pool.index() * self.assets.len() + asset as usize];
                if summed != running {
                    return Err(Violation::Unbalanced {
                        asset,
                        sum: summed - running,
                    });
                }
            }
        }
        Ok(())
    }

    /// Invariant 5 for some holder cells: not negative, and held equal to `reserved(account, asset)`.
    pub fn check_cells(
        &self,
        cells: &[(AccountId, AssetId)],
        reserved: impl Fn(AccountId, AssetId) -> i128,
    ) -> Result<(), Violation> {
        for &(account, asset) in cells {
            let b = self.balance(account, asset);
            for (bucket, value) in [(Bucket::Available, b.available), (Bucket::Held, b.held)] {
                if value < 0 {
                    return Err(Violation::Negative {
                        account: LedgerAccount::Holder { account, bucket },
                        asset,
                        balance: i128::from(value),
                    });
                }
            }
            let expected = reserved(account, asset);
            if i128::from(b.held) != expected {
                return Err(Violation::HeldMismatch {
                    account,
                    asset,
                    held: b.held,
                    reserved: expected,
                });
            }
        }
        Ok(())
    }

    /// The number of balance cells, `accounts × assets`, for [`Ledger::check_held`].
    pub fn balance_cells(&self) -> usize {
        self.balances.len()
    }
}
