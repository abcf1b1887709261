//! `internalization`: per instrument, the house policy over time and every fill with a house side,
//! with its share of customer volume — the question *nomi* (ノミ行為) raised against Coincheck:
//! did the operator trade against its own customers?
//!
//! Customer volume is the base quantity of every fill with at least one customer side (a house
//! against house fill is not customer volume and is listed apart); the house share is the base
//! quantity of fills with a house side against a customer divided by customer volume, rounded up.
//! A fill with a house side while the policy was `forbidden` is flagged.

use engine::journal::JournalRead;
use engine::{ExchangeEvent, HousePolicy, HouseSide, InstrumentId};
use serde::Serialize;

use crate::error::ReplayError;
use crate::money::{format_bps, format_units, share_bps_ceil};
use crate::point::{format_ts, Window};
use crate::render::{left, right, Report, Table};
use crate::reports::trades::{fills_of, trade_columns, Fill, TradeRow};
use crate::reports::{policy_name, Catalog};
use crate::walk::replay_until;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyChange {
    /// `None`: from genesis.
    pub seq: Option<u64>,
    pub time: Option<String>,
    pub policy: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstrumentInternalization {
    pub instrument: String,
    pub policies: Vec<PolicyChange>,
    pub fills_house_side: Vec<TradeRow>,
    pub customer_volume: String,
    /// Fills with one house side and one customer side.
    pub house_volume: String,
    pub house_share: Option<String>,
    /// House against house: not customer volume.
    pub house_only_volume: String,
    /// Fills with a house side while the policy forbade it.
    pub violations: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InternalizationReport {
    pub instruments: Vec<InstrumentInternalization>,
}

/// Running totals for one instrument.
#[derive(Default)]
struct Tally {
    policy: Option<HousePolicy>,
    policies: Vec<PolicyChange>,
    fills: Vec<Fill>,
    customer_units: i128,
    house_units: i128,
    house_only_units: i128,
    violations: u64,
}

pub fn internalization(read: &JournalRead) -> Result<InternalizationReport, ReplayError> {
    let catalog = Catalog::new(&read.genesis.config);
    let mut tallies: Vec<Tally> = catalog
        .instruments()
        .map(|(_, spec)| Tally {
            policy: Some(spec.house_policy),
            policies: vec![PolicyChange {
                seq: None,
                time: None,
                policy: policy_name(spec.house_policy),
            }],
            ..Tally::default()
        })
        .collect();
    let mut fills = Vec::new();
    replay_until(read, Window::ALL.to, &mut |step| {
        for event in step.events {
            if let ExchangeEvent::HousePolicySet { instrument, policy } = *event {
                let tally = &mut tallies[instrument as usize];
                tally.policy = Some(policy);
                tally.policies.push(PolicyChange {
                    seq: Some(step.seq),
                    time: Some(format_ts(step.ts_ns)),
                    policy: policy_name(policy),
                });
            }
        }
        fills.clear();
        fills_of(step, &mut fills);
        for fill in &fills {
            tallies[fill.settlement.instrument as usize].add(fill);
        }
    })?;
    let instruments = tallies
        .iter()
        .enumerate()
        .map(|(i, tally)| tally.report(&catalog, i as InstrumentId))
        .collect();
    Ok(InternalizationReport { instruments })
}

impl Tally {
    fn add(&mut self, fill: &Fill) {
        let units = i128::from(fill.settlement.base_units);
        match fill.settlement.house {
            HouseSide::None => self.customer_units += units,
            HouseSide::Maker | HouseSide::Taker => {
                self.customer_units += units;
                self.house_units += units;
            }
            HouseSide::Both => self.house_only_units += units,
        }
        if fill.settlement.house != HouseSide::None {
            if self.policy != Some(HousePolicy::Disclosed) {
                self.violations += 1;
            }
            self.fills.push(*fill);
        }
    }

    fn report(&self, catalog: &Catalog<'_>, instrument: InstrumentId) -> InstrumentInternalization {
        let spec = catalog.instrument_spec(instrument);
        let decimals = catalog
            .asset(&spec.base)
            .map(|(_, a)| a.decimals)
            .unwrap_or(0);
        InstrumentInternalization {
            instrument: spec.symbol.clone(),
            policies: self.policies.clone(),
            fills_house_side: self
                .fills
                .iter()
                .map(|f| TradeRow::new(catalog, f))
                .collect(),
            customer_volume: format_units(self.customer_units, decimals),
            house_volume: format_units(self.house_units, decimals),
            house_share: share_bps_ceil(self.house_units, self.customer_units).map(format_bps),
            house_only_volume: format_units(self.house_only_units, decimals),
            violations: self.violations,
        }
    }
}

impl Report for InternalizationReport {
    fn tables(&self) -> Vec<Table> {
        let mut summary = Table::new(
            "Internalization: house trading per instrument",
            &[
                left("instrument"),
                left("policy_now"),
                right("customer_volume"),
                right("house_volume"),
                right("house_share"),
                right("house_only_volume"),
                right("fills_house_side"),
                right("violations"),
            ],
        );
        let mut policies = Table::new(
            "House policy over time",
            &[
                left("instrument"),
                right("from_seq"),
                left("from_time"),
                left("policy"),
            ],
        );
        let mut fills = Table::new("Fills with a house side", &trade_columns());
        for i in &self.instruments {
            summary.row(vec![
                i.instrument.clone(),
                i.policies.last().map_or("", |p| p.policy).into(),
                i.customer_volume.clone(),
                i.house_volume.clone(),
                i.house_share.clone().unwrap_or_else(|| "-".into()),
                i.house_only_volume.clone(),
                i.fills_house_side.len().to_string(),
                i.violations.to_string(),
            ]);
            for p in &i.policies {
                policies.row(vec![
                    i.instrument.clone(),
                    p.seq.map_or("genesis".into(), |s| s.to_string()),
                    p.time.clone().unwrap_or_default(),
                    p.policy.into(),
                ]);
            }
            for f in &i.fills_house_side {
                fills.row(f.cells());
            }
        }
        let violations: u64 = self.instruments.iter().map(|i| i.violations).sum();
        if violations > 0 {
            summary.notes.push(format!(
                "VIOLATION: {violations} fill(s) with a house side under a forbidding policy"
            ));
        }
        vec![summary, policies, fills]
    }
}
