//! `compensation`: the schedule Coincheck had to compute after losing its customers' XEM — for
//! every customer holding the asset at an instant, the holding, the price and what is owed in the
//! quote asset; the totals; and how the asset (so the loss) splits between the customer pool and
//! the house pool.
//!
//! Rounding: each customer's amount is `holding × price` **rounded up** to the quote asset's
//! smallest unit, in the customer's favour. The house pool's value uses the same rule on its
//! total. A holding is available plus held (reserved for open orders and pending withdrawals): a
//! customer's coins are theirs whether or not an order reserves them.

use engine::journal::JournalRead;
use engine::AccountId;
use ledger::{AssetId, Pool};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::error::ReplayError;
use crate::money::{div_ceil, div_round_half_up, format_bps, format_units, mul, parts, pow10};
use crate::point::{Point, Reached, Window};
use crate::render::{left, right, Report, Table};
use crate::reports::vwap::vwap;
use crate::reports::{pool_name, Catalog};
use crate::walk::replay_until;

pub const COMPENSATION_ROUNDING: &str =
    "holding × price, rounded up to the quote asset's unit (in the customer's favour)";

/// Where the price comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PriceSource {
    /// `vwap:SYM:FROM..TO`: the VWAP of an instrument of this journal over a window.
    Vwap { instrument: String, window: Window },
    /// `fixed:QUOTE:PRICE`: a price decided elsewhere (Coincheck's came from another exchange).
    Fixed { quote: String, price: Decimal },
}

impl PriceSource {
    /// Parses `vwap:XEM/JPY:2018-01-26T12:09:00+09:00..2018-01-27T23:00:00+09:00` or
    /// `fixed:JPY:88.549`. Window ends are sequence numbers or RFC 3339 instants.
    pub fn parse(text: &str) -> Result<PriceSource, ReplayError> {
        let bad = || ReplayError::BadPrice(text.into());
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        let (name, value) = rest.split_once(':').ok_or_else(bad)?;
        match kind {
            "vwap" => {
                let (from, to) = value.split_once("..").ok_or_else(bad)?;
                Ok(PriceSource::Vwap {
                    instrument: name.into(),
                    window: Window {
                        from: Some(Point::parse(from)?),
                        to: Some(Point::parse(to)?),
                    },
                })
            }
            "fixed" => {
                let price: Decimal = value.trim().parse().map_err(|_| bad())?;
                if price <= Decimal::ZERO {
                    return Err(bad());
                }
                Ok(PriceSource::Fixed {
                    quote: name.into(),
                    price,
                })
            }
            _ => Err(bad()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CompensationQuery {
    pub asset: String,
    pub at: Point,
    pub price: PriceSource,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CompensationRow {
    pub account: AccountId,
    pub holding: String,
    pub owed: String,
}

/// One pool's share of the asset at the instant, valued at the price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolShare {
    pub pool: &'static str,
    pub holding: String,
    pub value: String,
    pub share: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CompensationReport {
    pub asset: String,
    pub quote: String,
    /// The instant (or seq) asked for.
    pub requested: String,
    /// The last command applied at that point.
    pub at: Reached,
    pub time: Option<String>,
    pub price: Decimal,
    pub price_source: String,
    pub rounding: &'static str,
    pub customers: Vec<CompensationRow>,
    pub holding_total: String,
    pub owed_total: String,
    pub pools: Vec<PoolShare>,
}

/// The price, its quote asset and a description of where it came from.
fn price_of(
    read: &JournalRead,
    asset: AssetId,
    source: &PriceSource,
) -> Result<(Decimal, AssetId, String), ReplayError> {
    let catalog = Catalog::new(&read.genesis.config);
    match source {
        PriceSource::Fixed { quote, price } => {
            let (quote, spec) = catalog.asset(quote)?;
            Ok((*price, quote, format!("fixed {price} {}", spec.code)))
        }
        PriceSource::Vwap { instrument, window } => {
            let (_, spec) = catalog.instrument(instrument)?;
            let base = catalog.asset(&spec.base)?.0;
            if base != asset {
                return Err(ReplayError::PriceMismatch(format!(
                    "{} prices {}, not {}",
                    spec.symbol,
                    spec.base,
                    catalog.asset_spec(asset).code
                )));
            }
            let report = vwap(read, instrument, *window)?;
            let quote = catalog.asset(&spec.quote)?.0;
            let source = format!(
                "VWAP of {} over {}: {} trades, {} {} for {} {} ({})",
                report.instrument,
                report.window,
                report.trades,
                report.notional,
                spec.quote,
                report.volume,
                spec.base,
                report.rounding
            );
            Ok((report.vwap, quote, source))
        }
    }
}

/// `holding_units × price` in quote units, rounded up.
pub fn value_ceil(
    holding_units: i128,
    holding_decimals: u8,
    price: Decimal,
    quote_decimals: u8,
) -> Result<i128, ReplayError> {
    let (mantissa, scale) = parts(price);
    let what = "a compensation amount";
    let num = mul(
        mul(holding_units, mantissa, what)?,
        pow10(u32::from(quote_decimals))?,
        what,
    )?;
    let den = mul(pow10(u32::from(holding_decimals))?, pow10(scale)?, what)?;
    Ok(div_ceil(num, den))
}

pub fn compensation(
    read: &JournalRead,
    query: &CompensationQuery,
) -> Result<CompensationReport, ReplayError> {
    let catalog = Catalog::new(&read.genesis.config);
    let (asset, spec) = catalog.asset(&query.asset)?;
    let (price, quote, price_source) = price_of(read, asset, &query.price)?;
    let quote_spec = catalog.asset_spec(quote);
    let (exchange, reached) = replay_until(read, Some(query.at), &mut |_| {})?;
    let ledger = exchange.ledger();
    let value = |units: i128| value_ceil(units, spec.decimals, price, quote_spec.decimals);
    let mut customers = Vec::new();
    let (mut holding_total, mut owed_total) = (0i128, 0i128);
    for account in 0..ledger.accounts() as AccountId {
        let holding = ledger.balance(account, asset).total();
        if ledger.pool_of(account) != Some(Pool::Customer) || holding == 0 {
            continue;
        }
        let owed = value(holding)?;
        holding_total += holding;
        owed_total += owed;
        customers.push(CompensationRow {
            account,
            holding: format_units(holding, spec.decimals),
            owed: format_units(owed, quote_spec.decimals),
        });
    }
    let customer_owed = ledger.totals(Pool::Customer, asset).owed;
    assert_eq!(
        customer_owed, holding_total,
        "customer holdings of {} add up to the pool's total",
        spec.code
    );
    let house_holding = ledger.totals(Pool::House, asset).owed;
    let all = holding_total + house_holding;
    let mut pools = Vec::new();
    for (pool, holding, value) in [
        (Pool::Customer, holding_total, owed_total),
        (Pool::House, house_holding, value(house_holding)?),
    ] {
        pools.push(PoolShare {
            pool: pool_name(pool),
            holding: format_units(holding, spec.decimals),
            value: format_units(value, quote_spec.decimals),
            // A split is descriptive, not a cap: nearest basis point, so the shares add to 100%.
            share: if all > 0 {
                format_bps(div_round_half_up(holding * 10_000, all))
            } else {
                "-".into()
            },
        });
    }
    Ok(CompensationReport {
        asset: spec.code.clone(),
        quote: quote_spec.code.clone(),
        requested: query.at.to_string(),
        at: reached,
        time: reached.time(),
        price,
        price_source,
        rounding: COMPENSATION_ROUNDING,
        customers,
        holding_total: format_units(holding_total, spec.decimals),
        owed_total: format_units(owed_total, quote_spec.decimals),
        pools,
    })
}

impl Report for CompensationReport {
    fn tables(&self) -> Vec<Table> {
        let holding = format!("holding_{}", self.asset);
        let owed = format!("owed_{}", self.quote);
        let columns = [
            right("account"),
            right(holding),
            right("price"),
            right(owed),
        ];
        let mut table = Table::new(
            format!("Compensation schedule for {}", self.asset),
            &columns,
        );
        table.fact("requested", &self.requested);
        table.fact("at", self.at);
        table.fact(
            "price",
            format!("{} {} per {}", self.price, self.quote, self.asset),
        );
        table.fact("price source", &self.price_source);
        table.fact("rounding", self.rounding);
        table.fact("customers", self.customers.len());
        for row in &self.customers {
            table.row(vec![
                row.account.to_string(),
                row.holding.clone(),
                self.price.to_string(),
                row.owed.clone(),
            ]);
        }
        table.total(vec![
            "total".into(),
            self.holding_total.clone(),
            String::new(),
            self.owed_total.clone(),
        ]);
        let mut pools = Table::new(
            format!("Split of {} between the pools", self.asset),
            &[
                left("pool"),
                right("holding"),
                right("value"),
                right("share"),
            ],
        );
        for share in &self.pools {
            pools.row(vec![
                share.pool.into(),
                share.holding.clone(),
                share.value.clone(),
                share.share.clone(),
            ]);
        }
        vec![table, pools]
    }
}
