//! `segregation`: per asset and pool, where the assets sit (hot, cold, bank), what the pool owes
//! its holders, what the other pool owes it and it owes the other pool, the surplus, and the hot
//! wallet's share against its cap — with every breach of DESIGN.md's invariants 2, 3 and 6
//! flagged. Zaif could state that 2.2 bn JPY of the stolen 6.7 bn were its own only because
//! someone kept this count.
//!
//! Flags: `shortfall` (customer custody plus what the house owes customers is less than what
//! customers are owed), `surplus_mismatch` (the customer pool's surplus is not exactly what it
//! records as owed to the house), `obligation_mismatch` (the pools disagree on what one owes the
//! other), `commingled` (a pool's books do not balance on their own), `hot_over_cap` (customer
//! coins in the hot wallet above the cap: an alert, not a ledger failure), `uncovered` (a wallet of
//! this pool was found short by reconciliation — a theft — and what the pool owes is no longer
//! fully backed by real assets; the incident that recorded it is listed under the table),
//! `house_loss` (the same for the house pool: shown, not counted as a violation — the house's
//! own coins, or the claim it took over when it topped up customers).
//!
//! `lost` is what reconciliation wrote down from the pool's wallets (its claim against the thief;
//! after a top-up the house holds the claim). The Zaif split is the `lost` column: how much of the
//! theft fell on customer custody and how much on house custody.

use engine::journal::JournalRead;
use ledger::{AssetClass, AssetId, Ledger, Location, Pool, PoolTotals};
use serde::Serialize;

use crate::error::ReplayError;
use crate::money::{format_bps, format_units, share_bps_ceil};
use crate::point::{Point, Reached};
use crate::render::{left, right, Report, Table};
use crate::reports::{pool_name, Catalog};
use crate::walk::replay_until;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegregationRow {
    pub asset: String,
    pub pool: &'static str,
    pub hot: String,
    pub cold: String,
    pub bank: String,
    /// Written down by reconciliation: stolen or missing, a claim, not an asset.
    pub lost: String,
    /// What the pool owes (holders and the other pool) beyond its real custody and what the other
    /// pool owes it.
    pub uncovered: String,
    /// What the other pool owes this one (earmarked for it in the other pool's custody).
    pub owed_by_other_pool: String,
    /// Available plus held of every holder in the pool, plus fee income for the house.
    pub owed_to_holders: String,
    /// Custody plus what the other pool owes, minus what is owed to holders.
    pub surplus: String,
    /// What this pool owes the other (for customers: fees and the house's side of trades).
    pub owed_to_other_pool: String,
    /// Hot custody against what is owed to holders, rounded up; `None` when nothing is owed.
    pub hot_share: Option<String>,
    /// Customer coins only.
    pub hot_cap: Option<String>,
    pub flags: Vec<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegregationReport {
    /// The point asked for (`None`: the end).
    pub requested: Option<String>,
    /// The last command applied at that point.
    pub at: Reached,
    pub time: Option<String>,
    pub rows: Vec<SegregationRow>,
    /// One line per flag raised.
    pub violations: Vec<String>,
    /// Every incident reconciliation opened up to that point.
    pub incidents: Vec<IncidentRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IncidentRow {
    pub incident: u32,
    pub seq: u64,
    pub asset: String,
    pub pool: &'static str,
    pub wallet: &'static str,
    pub missing: String,
    /// Uncovered in the pool right after the write-down.
    pub uncovered: String,
}

pub fn segregation(
    read: &JournalRead,
    at: Option<Point>,
) -> Result<SegregationReport, ReplayError> {
    let catalog = Catalog::new(&read.genesis.config);
    let (exchange, reached) = replay_until(read, at, &mut |_| {})?;
    let ledger = exchange.ledger();
    let mut rows = Vec::new();
    let mut violations = Vec::new();
    for (asset, spec) in catalog.assets() {
        for pool in Pool::ALL {
            let row = row(ledger, asset, pool);
            for flag in row.flags.iter().filter(|f| **f != "house_loss") {
                violations.push(format!("{} {} pool: {flag}", spec.code, pool_name(pool)));
            }
            rows.push(row);
        }
    }
    let incidents = exchange
        .custody_state()
        .incidents
        .iter()
        .map(|x| {
            let decimals = catalog.asset_spec(x.asset).decimals;
            IncidentRow {
                incident: x.id,
                seq: x.seq,
                asset: catalog.asset_spec(x.asset).code.clone(),
                pool: pool_name(x.pool),
                wallet: match x.location {
                    Location::Hot => "hot",
                    Location::Cold => "cold",
                    Location::Bank => "bank",
                    Location::Lost => "lost",
                },
                missing: format_units(i128::from(x.missing_units), decimals),
                uncovered: format_units(i128::from(x.uncovered_units), decimals),
            }
        })
        .collect();
    Ok(SegregationReport {
        requested: at.map(|p| p.to_string()),
        at: reached,
        time: reached.time(),
        rows,
        violations,
        incidents,
    })
}

fn row(ledger: &Ledger, asset: AssetId, pool: Pool) -> SegregationRow {
    let spec = ledger.asset(asset).expect("known asset");
    let totals = ledger.totals(pool, asset);
    let other = ledger.totals(pool.other(), asset);
    let custody = ledger.row(pool, asset).custody;
    let show = |units: i128| format_units(units, spec.decimals);
    let customer_coin = pool == Pool::Customer && spec.class == AssetClass::Coin;
    SegregationRow {
        asset: spec.code.clone(),
        pool: pool_name(pool),
        hot: show(i128::from(custody[Location::Hot.index()])),
        cold: show(i128::from(custody[Location::Cold.index()])),
        bank: show(i128::from(custody[Location::Bank.index()])),
        lost: show(i128::from(custody[Location::Lost.index()])),
        uncovered: show(totals.uncovered()),
        owed_by_other_pool: show(totals.due_from),
        owed_to_holders: show(totals.owed),
        surplus: show(totals.surplus()),
        owed_to_other_pool: show(totals.due_to),
        hot_share: share_bps_ceil(totals.hot, totals.owed).map(format_bps),
        hot_cap: customer_coin.then(|| format_bps(i128::from(spec.hot_cap_bps))),
        flags: flags(
            pool,
            &totals,
            &other,
            customer_coin && ledger.check_hot_cap(asset).is_err(),
        ),
    }
}

fn flags(pool: Pool, totals: &PoolTotals, other: &PoolTotals, over_cap: bool) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if pool == Pool::Customer {
        if totals.custody + totals.due_from < totals.owed {
            flags.push("shortfall");
        }
        if totals.surplus() != totals.due_to {
            flags.push("surplus_mismatch");
        }
    }
    if totals.due_to != other.due_from {
        flags.push("obligation_mismatch");
    }
    if totals.custody + totals.due_from - totals.owed - totals.due_to != 0 {
        flags.push("commingled");
    }
    if over_cap {
        flags.push("hot_over_cap");
    }
    if totals.uncovered() > 0 {
        // Customers' money not backed by real assets is a violation; the house's own loss (its
        // wallets robbed, or a claim taken over by a top-up) is the house's business, shown but
        // not counted.
        flags.push(match pool {
            Pool::Customer => "uncovered",
            Pool::House => "house_loss",
        });
    }
    flags
}

impl Report for SegregationReport {
    fn tables(&self) -> Vec<Table> {
        let columns = [
            left("asset"),
            left("pool"),
            right("hot"),
            right("cold"),
            right("bank"),
            right("lost"),
            right("uncovered"),
            right("owed_by_other_pool"),
            right("owed_to_holders"),
            right("surplus"),
            right("owed_to_other_pool"),
            right("hot_share"),
            right("hot_cap"),
            left("flags"),
        ];
        let mut table = Table::new("Segregation statement", &columns);
        table.fact(
            "requested",
            self.requested.as_deref().unwrap_or("end of journal"),
        );
        table.fact("at", self.at);
        table.fact(
            "status",
            if self.violations.is_empty() {
                "no violation".to_string()
            } else {
                format!("{} VIOLATION(S)", self.violations.len())
            },
        );
        for row in &self.rows {
            table.row(vec![
                row.asset.clone(),
                row.pool.into(),
                row.hot.clone(),
                row.cold.clone(),
                row.bank.clone(),
                row.lost.clone(),
                row.uncovered.clone(),
                row.owed_by_other_pool.clone(),
                row.owed_to_holders.clone(),
                row.surplus.clone(),
                row.owed_to_other_pool.clone(),
                row.hot_share.clone().unwrap_or_else(|| "-".into()),
                row.hot_cap.clone().unwrap_or_else(|| "-".into()),
                row.flags.join(" "),
            ]);
        }
        table.notes = self
            .violations
            .iter()
            .map(|v| format!("VIOLATION: {v}"))
            .collect();
        let mut tables = vec![table];
        if !self.incidents.is_empty() {
            let columns = [
                right("incident"),
                right("seq"),
                left("asset"),
                left("pool"),
                left("wallet"),
                right("missing"),
                right("uncovered"),
            ];
            let mut incidents = Table::new("Incidents (reconciliation shortfalls)", &columns);
            for x in &self.incidents {
                incidents.row(vec![
                    x.incident.to_string(),
                    x.seq.to_string(),
                    x.asset.clone(),
                    x.pool.into(),
                    x.wallet.into(),
                    x.missing.clone(),
                    x.uncovered.clone(),
                ]);
            }
            tables.push(incidents);
        }
        tables
    }
}
