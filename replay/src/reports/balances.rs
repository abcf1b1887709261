//! `balances`: every account's balances (available, held for open orders and pending withdrawals,
//! total) at a sequence number or an instant.

use engine::journal::JournalRead;
use engine::AccountId;
use ledger::Pool;
use serde::Serialize;

use crate::error::ReplayError;
use crate::money::format_units;
use crate::point::{Point, Reached};
use crate::render::{left, right, Report, Table};
use crate::reports::{pool_name, Catalog};
use crate::walk::replay_until;

#[derive(Clone, Debug, Default)]
pub struct BalanceQuery {
    /// `None`: the end of the journal.
    pub at: Option<Point>,
    pub account: Option<AccountId>,
    pub pool: Option<Pool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BalanceRow {
    pub account: AccountId,
    pub pool: &'static str,
    pub asset: String,
    pub available: String,
    pub held: String,
    pub total: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BalancesReport {
    /// The point asked for (`None`: the end).
    pub requested: Option<String>,
    /// The last command applied at that point.
    pub at: Reached,
    pub time: Option<String>,
    pub accounts: u64,
    pub balances: Vec<BalanceRow>,
}

/// Every account's balances at `query.at`. Without `--account`, zero balances are left out; with
/// it, every asset of that account is listed.
pub fn balances(read: &JournalRead, query: &BalanceQuery) -> Result<BalancesReport, ReplayError> {
    let catalog = Catalog::new(&read.genesis.config);
    let (exchange, reached) = replay_until(read, query.at, &mut |_| {})?;
    let ledger = exchange.ledger();
    if let Some(account) = query.account {
        ledger
            .pool_of(account)
            .ok_or(ReplayError::UnknownAccount(account))?;
    }
    let mut rows = Vec::new();
    let mut accounts = 0;
    for account in 0..ledger.accounts() as AccountId {
        let pool = ledger.pool_of(account).expect("dense account ids");
        if query.account.is_some_and(|a| a != account) || query.pool.is_some_and(|p| p != pool) {
            continue;
        }
        accounts += 1;
        for (asset, spec) in catalog.assets() {
            let balance = ledger.balance(account, asset);
            if balance.total() == 0 && query.account.is_none() {
                continue;
            }
            rows.push(BalanceRow {
                account,
                pool: pool_name(pool),
                asset: spec.code.clone(),
                available: format_units(i128::from(balance.available), spec.decimals),
                held: format_units(i128::from(balance.held), spec.decimals),
                total: format_units(balance.total(), spec.decimals),
            });
        }
    }
    Ok(BalancesReport {
        requested: query.at.map(|p| p.to_string()),
        at: reached,
        time: reached.time(),
        accounts,
        balances: rows,
    })
}

impl Report for BalancesReport {
    fn tables(&self) -> Vec<Table> {
        let columns = [
            right("account"),
            left("pool"),
            left("asset"),
            right("available"),
            right("held"),
            right("total"),
        ];
        let mut table = Table::new("Balances", &columns);
        table.fact(
            "requested",
            self.requested.as_deref().unwrap_or("end of journal"),
        );
        table.fact("at", self.at);
        table.fact("accounts", self.accounts);
        for row in &self.balances {
            table.row(vec![
                row.account.to_string(),
                row.pool.into(),
                row.asset.clone(),
                row.available.clone(),
                row.held.clone(),
                row.total.clone(),
            ]);
        }
        vec![table]
    }
}
