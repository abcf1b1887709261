//! The `engine` scenario: the matching core alone, on one thread, replaying the exchange-core
//! shaped workload of [`crate::workload`].
//!
//! One row as fast as possible (`engine`), then one row per offered rate (`engine@RATE`). Every
//! run starts from a fresh matcher with the warm-up applied untimed, replays the same recorded
//! commands, and must end in the outcome the generator saw; otherwise the run panics rather than
//! print figures for a different workload.

use std::time::{Duration, Instant};

use engine::{Event, Matcher, Sequenced};

use crate::machine::{others_share_since, CpuTimes};
use crate::measure::{
    clock_read_ns, ops_per_sec, probe_stalls, run_fixed_rate, run_throughput_then_latency,
    Percentiles, Row, Stalls, Timed, STALL_NS_MIN,
};
use crate::scenarios::{Length, Options, Report};
use crate::workload::{
    matcher_new, CommandKind, Outcome, Workload, WorkloadSpec, COMMANDS_MEASURED_DEFAULT,
    COMMANDS_MEASURED_QUICK, COMMANDS_WARMUP_DEFAULT,
};

/// Offered rates, in commands per second: from a busy day to beyond what one core can take.
pub const RATES_PER_SEC: [u64; 4] = [125_000, 1_000_000, 5_000_000, 10_000_000];
/// A fixed-rate run measures at most this long: 3,000,000 commands at 125,000/s would take 24 s,
/// and half a million samples already pin the p99.99.
pub const RATE_RUN_SECONDS_MAX: u64 = 4;
/// Room for the events of one command, reserved once: a sweep of the top two levels with
/// self-trade cancels stays far below it, and the hot loop then never grows the vector.
const EVENTS_PER_COMMAND_MAX: usize = 1_024;
/// Long enough to see a few hundred of the platform's stalls, short next to the runs.
const STALL_PROBE: Duration = Duration::from_secs(1);

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
    let started = Instant::now();
    let workload = Workload::generate(spec);
    let mut report = Report {
        notes: workload_notes(&spec, &workload, started.elapsed()),
        rows: Vec::new(),
    };
    report.notes.push(method_note(clock_read_ns()));
    let cpu_before = CpuTimes::now();
    let stalls = probe_stalls(STALL_PROBE);
    report
        .notes
        .push(stalls_note(stalls, others_share_since(cpu_before)));
    report.rows.push(row_fastest(&workload));
    for rate_per_sec in RATES_PER_SEC {
        report.rows.push(row_at_rate(
            "engine",
            &workload,
            rate_per_sec,
            Replay::new(&workload),
            |replay, i| replay.step(i),
            |replay| replay.check_complete(),
        ));
    }
    report.notes.push(
        "replay: every run through all measured commands reproduced the generated outcome \
         (events, order ids, open orders)"
            .into(),
    );
    report
}

/// Ops/s from a run with no clock in the loop; percentiles from a second run that reads the clock
/// once per command, so that the clock's cost does not lower the throughput figure.
pub fn row_fastest(workload: &Workload) -> Row {
    let cpu_before = CpuTimes::now();
    let count = workload.measured().len();
    let (elapsed, timed) = run_throughput_then_latency(
        count,
        || Replay::new(workload),
        |replay, i| replay.step(i),
        |replay| replay.check_complete(),
    );
    Row {
        scenario: "engine".into(),
        count: count as u64,
        ops_per_sec: ops_per_sec(count, elapsed),
        offered_per_sec: None,
        latency: Percentiles::from_samples(&timed.samples_ns),
        others_cpu_share: others_share_since(cpu_before),
    }
}

/// A row at a fixed offered rate over a warmed-up `replay` of the workload's measured commands
/// (at most [`RATE_RUN_SECONDS_MAX`] of them), named `NAME@RATE`; `check` runs on the replay when
/// it went through every measured command. `engine@RATE` and `ledger@RATE` are made here.
pub(crate) fn row_at_rate<R>(
    name: &str,
    workload: &Workload,
    rate_per_sec: u64,
    mut replay: R,
    mut step: impl FnMut(&mut R, usize),
    check: impl FnOnce(&R),
) -> Row {
    let count_cap = (rate_per_sec * RATE_RUN_SECONDS_MAX) as usize;
    let count = workload.measured().len().min(count_cap);
    let cpu_before = CpuTimes::now();
    let timed: Timed = run_fixed_rate(count, rate_per_sec, |i| step(&mut replay, i));
    let others_cpu_share = others_share_since(cpu_before);
    if count == workload.measured().len() {
        check(&replay);
    }
    Row {
        scenario: format!("{name}@{rate_per_sec}"),
        count: count as u64,
        ops_per_sec: timed.ops_per_sec(),
        offered_per_sec: Some(rate_per_sec),
        latency: Percentiles::from_samples(&timed.samples_ns),
        others_cpu_share,
    }
}

/// A fresh matcher in the warmed-up state, and the measured commands to feed it.
pub(crate) struct Replay<'a> {
    workload: &'a Workload,
    measured: &'a [Sequenced],
    matcher: Matcher,
    out: Vec<Event>,
    events: u64,
}

impl<'a> Replay<'a> {
    pub(crate) fn new(workload: &'a Workload) -> Replay<'a> {
        let mut matcher = matcher_new();
        let mut out = Vec::with_capacity(EVENTS_PER_COMMAND_MAX);
        for record in workload.warmup() {
            out.clear();
            matcher.apply(record, &mut out);
        }
        Replay {
            workload,
            measured: workload.measured(),
            matcher,
            out,
            events: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn step(&mut self, i: usize) {
        self.out.clear();
        self.matcher.apply(&self.measured[i], &mut self.out);
        self.events += self.out.len() as u64;
    }

    /// After all measured commands: the engine must be where the generator's shadow ended.
    pub(crate) fn check_complete(&self) {
        let outcome = Outcome {
            events_measured: self.events,
            order_id_next: self.matcher.order_id_next(),
            orders_open: self.matcher.orders_open(),
        };
        assert_eq!(
            outcome, self.workload.outcome,
            "the replay diverged from the generated workload"
        );
    }
}

fn workload_notes(spec: &WorkloadSpec, workload: &Workload, generated: Duration) -> Vec<String> {
    let stats = &workload.stats;
    let mix: Vec<String> = CommandKind::ALL
        .iter()
        .map(|&kind| {
            format!(
                "{} {:.2}% (target {}%)",
                kind.name(),
                100.0 * stats.share(kind),
                kind.per_mille_target() as f64 / 10.0
            )
        })
        .collect();
    vec![
        format!(
            "workload: one book, 1,000 accounts, seed {:#x}; {} warm-up + {} measured commands, \
             generated through a shadow matcher in {:.2} s",
            spec.seed,
            workload.commands_warmup,
            workload.measured().len(),
            generated.as_secs_f64()
        ),
        format!("mix: {}", mix.join(", ")),
        format!(
            "trades: {:.2}% of commands produced a fill (target about 6%), {:.3} fills per \
             command, {} rejects",
            100.0 * stats.fill_share(),
            stats.fills as f64 / stats.commands.max(1) as f64,
            stats.rejects
        ),
        format!(
            "book: {:.0} resting orders over {:.0} price levels on average (target ~1,000 over ~750)",
            stats.orders_resting_mean(),
            stats.levels_mean()
        ),
    ]
}

fn method_note(clock_ns: f64) -> String {
    format!(
        "method: 'engine' ops/s with no clock in the loop; its percentiles from a second run \
         reading the clock once per command (Instant::now() costs {clock_ns:.0} ns here and is \
         included). 'engine@RATE': from each command's scheduled time (start + i/rate) to its \
         completion, so a stall delays every later command (no coordinated omission); at most \
         {RATE_RUN_SECONDS_MAX} s per rate"
    )
}

fn stalls_note(stalls: Stalls, others_cpu_share: Option<f64>) -> String {
    let others = others_cpu_share.map_or_else(
        || "unknown".into(),
        |share| format!("{:.1}%", 100.0 * share),
    );
    format!(
        "platform: a thread spinning alone lost the CPU for more than {} µs {:.0} times a second \
         ({:.2}% of the time, longest {} µs; other processes took {others} of the machine \
         meanwhile). At an offered rate R a stall of S delays about R × S commands: a floor under \
         the fixed-rate tails that no engine change can lower",
        STALL_NS_MIN / 1_000,
        stalls.per_sec,
        100.0 * stalls.time_share,
        stalls.max_ns / 1_000,
    )
}
