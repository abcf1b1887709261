//! The `ledger` scenario: the `engine` workload through the whole exchange state machine —
//! pre-trade reservation, matching, settlement of every fill with maker and taker fees, release on
//! cancel and expiry — beside the matching-only figure of the same run, so the ledger's cost shows.

use engine::{Exchange, ExchangeCommand, ExchangeConfig, ExchangeEvent, Sequenced};
use ledger::{AssetSpec, Pool};

use crate::machine::{others_share_since, CpuTimes};
use crate::measure::{ops_per_sec, run_throughput_then_latency, Percentiles, Row};
use crate::scenarios::engine::{row_at_rate, row_fastest, RATE_RUN_SECONDS_MAX};
use crate::scenarios::{Length, Options, Report};
use crate::workload::{
    engine_config, instrument_spec, Workload, WorkloadSpec, ACCOUNTS, COMMANDS_MEASURED_DEFAULT,
    COMMANDS_MEASURED_QUICK, COMMANDS_WARMUP_DEFAULT,
};

/// The offered rate of the one fixed-rate row: where exchange-core publishes its latency
/// (p50 0.5 µs, p99 4 µs at 1 M ops/s, risk and matching), which this scenario is the like of.
pub const RATE_PER_SEC: u64 = 1_000_000;
/// Enough of each asset that no order of the workload is ever short of funds.
const DEPOSIT_UNITS: i64 = 1 << 50;
const EVENTS_PER_COMMAND_MAX: usize = 1_024;

/// The exchange for the workload: its one instrument (now with 0.1% maker and 0.2% taker fees, so
/// that settlement posts fees), BTC and JPY in whole units, every account funded.
pub fn exchange_config() -> ExchangeConfig {
    let mut spec = instrument_spec();
    spec.fee_maker_ppm = 1_000;
    spec.fee_taker_ppm = 2_000;
    let assets = vec![AssetSpec::coin("BTC", 0), AssetSpec::fiat("JPY", 0)];
    ExchangeConfig {
        engine: engine_config(),
        custody: engine::defaults::custody(&assets),
        assets,
        instruments: vec![spec],
        withdrawals_pending_max: 16,
    }
}

/// The commands that open and fund every account of the workload.
pub fn setup_commands() -> Vec<ExchangeCommand> {
    let mut commands = Vec::new();
    for _ in 0..ACCOUNTS {
        commands.push(ExchangeCommand::CreateAccount {
            pool: Pool::Customer,
        });
    }
    for account in 0..ACCOUNTS {
        for asset in 0..2u16 {
            let mut tx = [0u8; 32];
            tx[..4].copy_from_slice(&account.to_le_bytes());
            tx[4..6].copy_from_slice(&asset.to_le_bytes());
            commands.push(ExchangeCommand::Deposit {
                account,
                asset,
                amount_units: DEPOSIT_UNITS,
                tx,
            });
        }
    }
    commands
}

pub fn run(options: &Options) -> Report {
    let commands_measured = options.commands_measured.unwrap_or(match options.length {
        Length::Full => COMMANDS_MEASURED_DEFAULT,
        Length::Quick => COMMANDS_MEASURED_QUICK,
    });
    let spec = WorkloadSpec {
        seed: options.seed,
        commands_warmup: COMMANDS_WARMUP_DEFAULT,
        commands_measured,
    };
    let workload = Workload::generate(spec);
    let count = workload.measured().len();

    let mut matching = row_fastest(&workload);
    matching.scenario = "ledger:matching-only".into();

    let cpu_before = CpuTimes::now();
    let mut settled = 0;
    let (elapsed, timed) = run_throughput_then_latency(
        count,
        || Replay::new(&workload),
        |replay, i| replay.step(i),
        |replay| {
            replay.check(&workload);
            settled = replay.settled;
        },
    );
    let ledger = Row {
        scenario: "ledger".into(),
        count: count as u64,
        ops_per_sec: ops_per_sec(count, elapsed),
        offered_per_sec: None,
        latency: Percentiles::from_samples(&timed.samples_ns),
        others_cpu_share: others_share_since(cpu_before),
    };
    // The whole exchange at the rate exchange-core publishes its latency at (see `engine@RATE`).
    let at_rate = row_at_rate(
        "ledger",
        &workload,
        RATE_PER_SEC,
        Replay::new(&workload),
        |replay, i| replay.step(i),
        |replay| replay.check(&workload),
    );
    let notes = vec![
        format!(
            "workload: the engine scenario's commands (seed {:#x}, {count} measured) through the whole \
             exchange: {ACCOUNTS} funded customer accounts, reservation before matching, settlement \
             of every fill with 0.1% maker and 0.2% taker fees, release on cancel and expiry",
            options.seed
        ),
        format!(
            "cost of the ledger: {:.0} ns per command with it, {:.0} ns matching only ({:.2}x)",
            1e9 / ledger.ops_per_sec,
            1e9 / matching.ops_per_sec,
            matching.ops_per_sec / ledger.ops_per_sec
        ),
        format!("settlements: {} fills settled; every open order's reservation checked at the end", settled),
        format!(
            "ledger@{RATE_PER_SEC}: at most {RATE_RUN_SECONDS_MAX} s at a fixed rate, latency from each \
             command's scheduled time, as engine@RATE"
        ),
    ];
    Report {
        notes,
        rows: vec![ledger, at_rate, matching],
    }
}

struct Replay<'a> {
    measured: &'a [Sequenced],
    exchange: Exchange,
    out: Vec<ExchangeEvent>,
    seq: u64,
    settled: u64,
}

impl<'a> Replay<'a> {
    fn new(workload: &'a Workload) -> Replay<'a> {
        let mut exchange = Exchange::new(exchange_config()).expect("valid configuration");
        let mut out = Vec::with_capacity(EVENTS_PER_COMMAND_MAX);
        let mut seq = 0;
        let setup = setup_commands().into_iter();
        let warmup = workload
            .warmup()
            .iter()
            .map(|r| ExchangeCommand::Trade(r.command));
        for command in setup.chain(warmup) {
            seq += 1;
            out.clear();
            exchange.apply(
                &Sequenced {
                    seq,
                    ts_ns: seq,
                    command,
                },
                &mut out,
            );
        }
        Replay {
            measured: workload.measured(),
            exchange,
            out,
            seq,
            settled: 0,
        }
    }

    #[inline(always)]
    fn step(&mut self, i: usize) {
        self.seq += 1;
        self.out.clear();
        let command = ExchangeCommand::Trade(self.measured[i].command);
        self.exchange.apply(
            &Sequenced {
                seq: self.seq,
                ts_ns: self.seq,
                command,
            },
            &mut self.out,
        );
        self.settled += self
            .out
            .iter()
            .filter(|e| matches!(e, ExchangeEvent::Settled(_)))
            .count() as u64;
    }

    /// The exchange must have matched exactly as the matching core did, and its ledger must hold.
    fn check(&self, workload: &Workload) {
        let matcher = self.exchange.matcher();
        assert_eq!(
            matcher.order_id_next(),
            workload.outcome.order_id_next,
            "the ledger changed the matching"
        );
        assert_eq!(
            matcher.orders_open(),
            workload.outcome.orders_open,
            "the ledger changed the matching"
        );
        self.exchange
            .check_invariants()
            .expect("ledger invariants after the run");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_ledger_run_matches_like_the_engine_and_keeps_its_invariants() {
        let workload = Workload::generate(WorkloadSpec {
            seed: 7,
            commands_warmup: 2_000,
            commands_measured: 20_000,
        });
        let mut replay = Replay::new(&workload);
        for i in 0..workload.measured().len() {
            replay.step(i);
        }
        replay.check(&workload);
        assert!(
            replay.settled > 500,
            "fills were settled: {}",
            replay.settled
        );
    }
}
