//! The `pipeline` scenario: the engine thread end to end — a producer thread submits to the
//! bounded lock-free queue, the engine thread sequences, applies, journals and commits each batch,
//! publishes it, and a consumer thread receives the acknowledgements. Throughput as fast as the
//! producer can go, then latency from enqueue to acknowledgement received at fixed offered rates,
//! measured from each command's scheduled time (no coordinated omission), in both durability modes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use engine::journal::format::SEGMENT_BYTES_DEFAULT;
use engine::journal::Durability;
use engine::runtime::{self, EngineHandle, EngineOptions, IdleStrategy, SystemClock};
use engine::{Exchange, ExchangeCommand};

use crate::machine::Pauses;
use crate::measure::{Percentiles, Row};
use crate::report::duration_text;
use crate::scenarios::journal::{apply_and_journal, scratch_dir, writer_new};
use crate::scenarios::ledger::{exchange_config, setup_commands};
use crate::scenarios::{Length, Options, Report};
use crate::workload::{Workload, WorkloadSpec};

const COMMANDS_FULL: usize = 2_000_000;
const COMMANDS_QUICK: usize = 300_000;
/// A fixed-rate row runs at most this long.
const RATE_RUN_SECONDS_MAX: u64 = 2;
const RATES_PROCESS: [u64; 2] = [100_000, 1_000_000];
const RATES_FSYNC: [u64; 1] = [10_000];
const RATES_SPIN: [u64; 2] = [100_000, 1_000_000];
/// How long the pause probe spins before the spin rows, and the pause it counts: the bar's p99.
const PAUSE_PROBE: Duration = Duration::from_secs(1);
const PAUSE_THRESHOLD: Duration = Duration::from_micros(20);
/// Issue #4's bar in `process` durability: this many commands a second...
const BAR_COMMANDS_PER_SEC: f64 = 2_000_000.0;
/// ...and a p99 from enqueue to event received under this.
const BAR_P99_NS: u64 = 20_000;

pub fn run(options: &Options) -> Report {
    let commands = options.commands_measured.unwrap_or(match options.length {
        Length::Full => COMMANDS_FULL,
        Length::Quick => COMMANDS_QUICK,
    });
    let workload = Workload::generate(WorkloadSpec {
        seed: options.seed,
        commands_warmup: 20_000,
        commands_measured: commands,
    });
    let mut rows = vec![in_process_row(&workload, commands)];
    for (durability, rates) in [
        (Durability::Process, &RATES_PROCESS[..]),
        (Durability::Fsync, &RATES_FSYNC[..]),
    ] {
        let mode = format!("{durability:?}").to_lowercase();
        // Throughput in fsync mode is bounded by msync per batch: a shorter run says as much.
        let count = match durability {
            Durability::Process => commands,
            Durability::Fsync => commands.min(200_000),
        };
        rows.push(run_row(
            &workload,
            durability,
            None,
            count,
            &format!("pipeline:{mode}"),
        ));
        for &rate in rates {
            let count = commands.min((rate * RATE_RUN_SECONDS_MAX) as usize);
            rows.push(run_row(
                &workload,
                durability,
                Some(rate),
                count,
                &format!("pipeline:{mode}@{rate}"),
            ));
        }
    }
    let pauses = Pauses::measure(PAUSE_PROBE, PAUSE_THRESHOLD);
    rows.push(spin_row(&workload, None, commands, "pipeline:spin"));
    for &rate in &RATES_SPIN {
        let count = commands.min((rate * RATE_RUN_SECONDS_MAX) as usize);
        rows.push(spin_row(
            &workload,
            Some(rate),
            count,
            &format!("pipeline:spin@{rate}"),
        ));
    }
    let notes = vec![
        format!(
            "workload: the ledger scenario's commands through the engine thread (queue capacity {}, \
             batches of up to {}), journal in a temporary folder",
            runtime::QUEUE_CAPACITY_DEFAULT,
            runtime::BATCH_COMMANDS_MAX
        ),
        format!(
            "pipeline:in-process: the engine thread's work without its threads and queues: the same \
             commands journaled, applied and committed in batches of {} on one thread (latency per \
             batch); the reference the guard holds pipeline:process to",
            runtime::BATCH_COMMANDS_MAX
        ),
        "latency: from the command's scheduled send time (fixed rate) or its enqueue (fastest row) \
         to the consumer thread receiving its acknowledgement, which is published only after the \
         batch is journaled"
            .into(),
        "pipeline:spin: process durability, the engine thread never parks (`idle = \"spin\"`), and \
         one client thread both produces and consumes, polling the outbound queue between \
         submissions, as the gateway's one runtime thread does against a spinning engine: two \
         threads for two cores, where the rows above put three (producer, engine, consumer) on them"
            .into(),
        format!(
            "the platform's pauses: a thread spinning alone on the clock for {:.0} s just before the \
             spin rows was off its core for more than {} µs {} times ({:.0} a second), {:.2}% of the \
             time, the longest {:.2} ms; a command waits out any pause of the threads it crosses, \
             so where two threads' pauses add up to 1% of the time or more, a p99 under {} µs is \
             out of the engine's reach (docs/PERFORMANCE.md)",
            PAUSE_PROBE.as_secs_f64(),
            PAUSE_THRESHOLD.as_micros(),
            pauses.count,
            pauses.per_sec(),
            pauses.lost_share() * 100.0,
            pauses.longest_ns as f64 / 1e6,
            PAUSE_THRESHOLD.as_micros()
        ),
    ];
    let mut notes = notes;
    notes.extend(bar_notes(&rows));
    Report { notes, rows }
}

/// Issue #4's bar judged on the rows in `process` durability (the `spin` rows are too): the
/// fastest rows' rate, and every row's p99 (a fastest row's is the queue its producer builds).
fn bar_notes(rows: &[Row]) -> Vec<String> {
    let process = |row: &&Row| {
        row.scenario.starts_with("pipeline:process") || row.scenario.starts_with("pipeline:spin")
    };
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let rates: Vec<String> = rows
        .iter()
        .filter(process)
        .filter(|row| row.offered_per_sec.is_none())
        .map(|row| {
            format!(
                "{} {:.2} M/s {}",
                row.scenario,
                row.ops_per_sec / 1e6,
                verdict(row.ops_per_sec >= BAR_COMMANDS_PER_SEC)
            )
        })
        .collect();
    let p99s: Vec<String> = rows
        .iter()
        .filter(process)
        .map(|row| {
            let p99 = row.latency.p99_ns;
            format!(
                "{} {} {}",
                row.scenario,
                duration_text(p99),
                verdict(p99 < BAR_P99_NS)
            )
        })
        .collect();
    vec![
        format!(
            "bar (issue #4), {:.0} M commands/s or more in `process` durability: {}",
            BAR_COMMANDS_PER_SEC / 1e6,
            rates.join("; ")
        ),
        format!(
            "bar (issue #4), p99 from enqueue to event received under {}: {}",
            duration_text(BAR_P99_NS),
            p99s.join("; ")
        ),
    ]
}

/// The `process` durability's work on one thread, in full batches: what `pipeline:process` would
/// do if the producer, the queue, the consumer and the hand-offs between threads cost nothing.
fn in_process_row(workload: &Workload, count: usize) -> Row {
    let dir = scratch_dir("pipeline-in-process");
    let mut writer = writer_new(&dir, SEGMENT_BYTES_DEFAULT);
    let mut exchange = Exchange::new(exchange_config()).expect("valid configuration");
    let (mut seq, mut events) = (0, Vec::new());
    let setup = setup_commands().into_iter();
    let warmup = workload
        .warmup()
        .iter()
        .map(|r| ExchangeCommand::Trade(r.command));
    let ready: Vec<ExchangeCommand> = setup.chain(warmup).collect();
    for batch in ready.chunks(runtime::BATCH_COMMANDS_MAX) {
        apply_and_journal(&mut exchange, &mut writer, batch, &mut seq, &mut events);
    }
    let commands = measured_commands(workload, count);
    let mut batch_ns = Vec::new();
    let start = Instant::now();
    for batch in commands.chunks(runtime::BATCH_COMMANDS_MAX) {
        let batch_start = Instant::now();
        apply_and_journal(&mut exchange, &mut writer, batch, &mut seq, &mut events);
        batch_ns.push(batch_start.elapsed().as_nanos() as u64);
    }
    let elapsed = start.elapsed();
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        scenario: "pipeline:in-process".into(),
        count: count as u64,
        ops_per_sec: count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        offered_per_sec: None,
        latency: Percentiles::from_samples(&batch_ns),
        others_cpu_share: None,
    }
}

/// A fresh engine with the accounts funded and the book warmed up.
fn engine_ready(
    workload: &Workload,
    durability: Durability,
    idle: IdleStrategy,
) -> (EngineHandle, std::path::PathBuf) {
    let dir = scratch_dir(&format!("pipeline-{durability:?}"));
    let mut options = EngineOptions::new(&dir);
    options.durability = durability;
    options.idle = idle;
    options.snapshot_every_commands = 0;
    let engine = runtime::start(
        options,
        &exchange_config(),
        Box::new(SystemClock::default()),
    )
    .expect("engine starts");
    let setup = setup_commands().into_iter();
    let warmup = workload
        .warmup()
        .iter()
        .map(|r| ExchangeCommand::Trade(r.command));
    let submitter = engine.submitter();
    let mut sent = 0u64;
    for command in setup.chain(warmup) {
        while busy(submitter.submit(u64::MAX, command), &submitter) {
            std::hint::spin_loop();
        }
        sent += 1;
    }
    let mut acked = 0u64;
    while acked < sent {
        acked += engine.outbound().recv().expect("engine running").acks.len() as u64;
    }
    (engine, dir)
}

fn run_row(
    workload: &Workload,
    durability: Durability,
    rate: Option<u64>,
    count: usize,
    name: &str,
) -> Row {
    let (engine, dir) = engine_ready(workload, durability, IdleStrategy::default());
    let commands = measured_commands(workload, count);
    let sent_ns: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let start = Instant::now();
    let outbound = engine.outbound().clone();
    let consumer = {
        let sent_ns = sent_ns.clone();
        thread::spawn(move || {
            let mut samples = Vec::with_capacity(count);
            while samples.len() < count {
                let batch = outbound.recv().expect("engine running");
                let now_ns = start.elapsed().as_nanos() as u64;
                for ack in &batch.acks {
                    let sent = sent_ns[ack.token as usize].load(Ordering::Acquire);
                    samples.push(now_ns.saturating_sub(sent));
                }
            }
            (samples, start.elapsed())
        })
    };
    let submitter = engine.submitter();
    let period_ns = rate.map(|r| 1_000_000_000 / r);
    for (i, command) in commands.into_iter().enumerate() {
        let scheduled_ns = match period_ns {
            Some(period) => {
                let at = i as u64 * period;
                // Yield while waiting: on two cores the engine and the consumer need the CPU too.
                while (start.elapsed().as_nanos() as u64) < at {
                    thread::yield_now();
                }
                at
            }
            None => start.elapsed().as_nanos() as u64,
        };
        sent_ns[i].store(scheduled_ns, Ordering::Release);
        while busy(submitter.submit(i as u64, command), &submitter) {
            thread::yield_now();
        }
    }
    let (samples, elapsed) = consumer.join().expect("consumer");
    finished_row(engine, &dir, name, rate, elapsed, &samples)
}

/// One client thread against a spinning engine: it submits each command at its scheduled time (or
/// as fast as the queue takes them) and, whenever it is not submitting, takes what the engine
/// published, timing each acknowledgement from its command's scheduled time (or enqueue).
fn spin_row(workload: &Workload, rate: Option<u64>, count: usize, name: &str) -> Row {
    let (engine, dir) = engine_ready(workload, Durability::Process, IdleStrategy::SPIN);
    let commands = measured_commands(workload, count);
    let mut sent_ns = vec![0u64; count];
    let mut samples = Vec::with_capacity(count);
    let outbound = engine.outbound();
    let submitter = engine.submitter();
    let period_ns = rate.map(|r| 1_000_000_000 / r);
    let start = Instant::now();
    let take = |samples: &mut Vec<u64>, sent_ns: &[u64]| {
        while let Ok(batch) = outbound.try_recv() {
            let now_ns = start.elapsed().as_nanos() as u64;
            for ack in &batch.acks {
                samples.push(now_ns.saturating_sub(sent_ns[ack.token as usize]));
            }
        }
    };
    for (i, command) in commands.into_iter().enumerate() {
        sent_ns[i] = match period_ns {
            Some(period) => {
                let at = i as u64 * period;
                while (start.elapsed().as_nanos() as u64) < at {
                    take(&mut samples, &sent_ns);
                }
                at
            }
            None => start.elapsed().as_nanos() as u64,
        };
        while busy(submitter.submit(i as u64, command), &submitter) {
            take(&mut samples, &sent_ns);
        }
    }
    while samples.len() < count {
        take(&mut samples, &sent_ns);
        std::hint::spin_loop();
    }
    finished_row(engine, &dir, name, rate, start.elapsed(), &samples)
}

/// The first `count` measured commands of the workload, as the engine takes them.
fn measured_commands(workload: &Workload, count: usize) -> Vec<ExchangeCommand> {
    workload.measured()[..count]
        .iter()
        .map(|r| ExchangeCommand::Trade(r.command))
        .collect()
}

/// Stops the engine, removes its folder, and makes the row of one sample per command.
fn finished_row(
    engine: EngineHandle,
    dir: &std::path::Path,
    name: &str,
    rate: Option<u64>,
    elapsed: std::time::Duration,
    samples: &[u64],
) -> Row {
    engine.shutdown().expect("clean shutdown");
    let _ = std::fs::remove_dir_all(dir);
    Row {
        scenario: name.into(),
        count: samples.len() as u64,
        ops_per_sec: samples.len() as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        offered_per_sec: rate,
        latency: Percentiles::from_samples(samples),
        others_cpu_share: None,
    }
}

/// True while the engine's queue is full. A stopped engine (its journal could not be written)
/// ends the run with its reason instead of a producer spinning forever.
fn busy(submitted: Result<(), runtime::Refused>, submitter: &runtime::Submitter) -> bool {
    match submitted {
        Ok(()) => false,
        Err(runtime::Refused::Busy) => true,
        Err(runtime::Refused::Stopped) => panic!(
            "the engine stopped: {}",
            submitter.failure().unwrap_or("no reason given")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &str, ops_per_sec: f64, offered: Option<u64>, p99_ns: u64) -> Row {
        Row {
            scenario: scenario.into(),
            count: 1,
            ops_per_sec,
            offered_per_sec: offered,
            latency: Percentiles {
                p99_ns,
                ..Percentiles::default()
            },
            others_cpu_share: None,
        }
    }

    #[test]
    fn the_bar_judges_the_fastest_rows_rate_and_every_process_rows_p99() {
        let notes = bar_notes(&[
            row("pipeline:in-process", 9e6, None, 1),
            row("pipeline:process", 2e6, None, 50_000_000),
            row("pipeline:process@100000", 1e5, Some(100_000), 19_000),
            row("pipeline:fsync", 1e5, None, 1),
            row("pipeline:spin", 1.99e6, None, 20_000),
        ]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        let (rates, p99s) = (&notes[0], &notes[1]);
        assert!(rates.contains("pipeline:process 2.00 M/s met"), "{rates}");
        assert!(rates.contains("pipeline:spin 1.99 M/s MISSED"), "{rates}");
        assert!(!rates.contains("@100000"), "{rates}");
        assert!(p99s.contains("pipeline:process 50.0 ms MISSED"), "{p99s}");
        assert!(
            p99s.contains("pipeline:process@100000 19.0 µs met"),
            "{p99s}"
        );
        assert!(p99s.contains("pipeline:spin 20.0 µs MISSED"), "{p99s}");
        for other in ["in-process", "fsync"] {
            assert!(!rates.contains(other) && !p99s.contains(other), "{notes:?}");
        }
    }
}
