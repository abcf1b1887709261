//! The `replay` scenario: `kinko-replay verify` on a journal the harness writes itself from the
//! ledger workload (at least 10 million records in the full run): checksums, chain, sequence,
//! re-execution with byte-identical events, the house policy of every fill, and the invariants —
//! after every command, and, for comparison, after every batch. Verify streams the journal: its
//! reader thread checks the bytes while the calling thread re-executes, so the CPU time noted is
//! both threads'.

use std::time::{Duration, Instant};

use engine::{Exchange, ExchangeCommand};
use replay::{InvariantCheck, Progress, TornTail, VerifyOptions};

use crate::machine::{others_share_since, CpuTimes};
use crate::measure::{Percentiles, Row};
use crate::scenarios::journal::{apply_and_journal, scratch_dir, writer_new, BATCH_COMMANDS};
use crate::scenarios::ledger::{exchange_config, setup_commands};
use crate::scenarios::{Length, Options, Report};
use crate::workload::{Workload, WorkloadSpec};

/// Commands journaled: each is a command record and an events record, plus one commit per batch,
/// so 5,000,000 commands make 10,039,000 records.
const COMMANDS_FULL: usize = 5_000_000;
const COMMANDS_QUICK: usize = 250_000;
/// The bar is set on a journal of at least this many records (the full run).
const RECORDS_FULL_MIN: u64 = 10_000_000;
/// Larger than the engine's default (64 MiB): the full run's 1.2 GiB fit in five files. Verify's
/// work per record does not depend on it.
const SEGMENT_BYTES: usize = 256 << 20;

pub fn run(options: &Options) -> Report {
    let commands = options.commands_measured.unwrap_or(match options.length {
        Length::Full => COMMANDS_FULL,
        Length::Quick => COMMANDS_QUICK,
    });
    let dir = scratch_dir("replay");
    let (journal_bytes, written) = write_journal(&dir, options.seed, commands);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for (name, invariants) in [
        ("replay:every-command", InvariantCheck::EveryCommand),
        ("replay:every-batch", InvariantCheck::EveryBatch),
    ] {
        let verify_options = VerifyOptions {
            invariants,
            torn_tail: TornTail::Refuse,
            progress: Progress::Quiet,
        };
        let cpu_before = CpuTimes::now();
        let started = Instant::now();
        let summary =
            replay::verify(&dir, &verify_options).expect("the harness's journal verifies");
        let elapsed = started.elapsed();
        let cpu_secs = CpuTimes::now()
            .zip(cpu_before)
            .map_or(0.0, |(after, before)| before.own_secs_until(&after));
        if options.length == Length::Full && options.commands_measured.is_none() {
            assert!(
                summary.records >= RECORDS_FULL_MIN,
                "the full run verifies at least {RECORDS_FULL_MIN} records, not {}",
                summary.records
            );
        }
        notes.push(format!(
            "{name}: {} records ({} commands, {} fills) verified in {:.2} s: {:.2} M records/s \
             ({cpu_secs:.2} s of CPU on its two threads)",
            summary.records,
            summary.commands,
            summary.fills,
            elapsed.as_secs_f64(),
            summary.records as f64 / elapsed.as_secs_f64() / 1e6
        ));
        rows.push(Row {
            scenario: name.into(),
            count: summary.records,
            ops_per_sec: summary.records as f64 / elapsed.as_secs_f64(),
            offered_per_sec: None,
            latency: Percentiles::from_samples(&[elapsed.as_nanos() as u64]),
            others_cpu_share: others_share_since(cpu_before),
        });
    }
    // Writing is the same work forwards (apply, encode, checksum, chain): the reference the
    // guard holds verify to. Both runs read the one journal, so they count the same records.
    let records = rows[0].count;
    rows.push(Row {
        scenario: "replay:write".into(),
        count: records,
        ops_per_sec: records as f64 / written.as_secs_f64(),
        offered_per_sec: None,
        latency: Percentiles::from_samples(&[written.as_nanos() as u64]),
        others_cpu_share: None,
    });
    notes.insert(
        0,
        format!(
            "journal: {commands} commands of the ledger workload (plus account set-up), {:.0} MiB in \
             segments of {} MiB, written by the harness in {:.2} s (replay:write: apply, journal, \
             commit every {BATCH_COMMANDS} commands, on one thread); ops/s below is records per \
             second; the latency columns hold the whole run",
            journal_bytes as f64 / (1 << 20) as f64,
            SEGMENT_BYTES >> 20,
            written.as_secs_f64()
        ),
    );
    let _ = std::fs::remove_dir_all(&dir);
    Report { notes, rows }
}

/// Writes the journal the way the engine thread does: apply, journal the command and its events,
/// commit every batch. Returns the bytes written and the time writing took.
fn write_journal(dir: &std::path::Path, seed: u64, commands: usize) -> (u64, Duration) {
    let workload = Workload::generate(WorkloadSpec {
        seed,
        commands_warmup: 20_000,
        commands_measured: commands,
    });
    let trades = workload
        .commands
        .iter()
        .map(|r| ExchangeCommand::Trade(r.command));
    let all: Vec<ExchangeCommand> = setup_commands().into_iter().chain(trades).collect();
    let mut writer = writer_new(dir, SEGMENT_BYTES);
    let mut exchange = Exchange::new(exchange_config()).expect("valid configuration");
    let (mut seq, mut events) = (0, Vec::new());
    let started = Instant::now();
    for batch in all.chunks(BATCH_COMMANDS) {
        apply_and_journal(&mut exchange, &mut writer, batch, &mut seq, &mut events);
    }
    (writer.bytes_written(), started.elapsed())
}
