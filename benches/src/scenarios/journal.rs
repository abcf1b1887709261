//! The `journal` scenario: appending the records of the `ledger` workload — each command and the
//! events it produced, bincode-encoded, checksummed, hash-chained per batch of 256 commands — into
//! a memory-mapped segment, beside a plain memcpy of the same bytes, in the same batch sizes, in
//! the same run. The ratio is the journal's cost over the copy it cannot avoid.
//!
//! The segment is sized to hold the whole run (no rotation inside the measurement): a rotation
//! creates and pre-faults a new file, which is a start-up cost, not an append cost.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engine::journal::format::{encode_into, Genesis, RecordKind};
use engine::journal::storage::MmapStorage;
use engine::journal::{ChainHashing, Durability, JournalWriter};
use engine::{Exchange, ExchangeCommand, ExchangeEvent, Sequenced};

use crate::measure::{Percentiles, Row};
use crate::scenarios::ledger::{exchange_config, setup_commands};
use crate::scenarios::{Length, Options, Report};
use crate::workload::{Workload, WorkloadSpec};

/// Commands per committed batch: what the engine thread drains at once under load.
pub const BATCH_COMMANDS: usize = 256;
const COMMANDS_FULL: usize = 1_000_000;
const COMMANDS_QUICK: usize = 200_000;
/// Batches committed with msync in the `fsync` row: each waits for the disk.
const FSYNC_BATCHES: usize = 200;
/// Issue #4's bar: appending in `process` durability at at least this share of the bandwidth of
/// a memcpy of the same bytes.
const BAR_MEMCPY_SHARE: f64 = 0.5;

/// One command and what it produced, ready to journal.
struct Entry {
    command: ExchangeCommand,
    events: Vec<ExchangeEvent>,
}

/// The same commands and events already encoded, back to back in one buffer as the memcpy row
/// reads its bytes: `spans[i]` is where entry i's command and events payloads lie. (Each payload
/// in a heap allocation of its own made the append row read scattered memory that the memcpy row
/// does not, and charged the difference to the journal.)
struct Encoded {
    payloads: Vec<u8>,
    spans: Vec<[u32; 3]>,
}

impl Encoded {
    fn of(entries: &[Entry]) -> Encoded {
        let mut payloads = Vec::new();
        let mut spans = Vec::with_capacity(entries.len());
        for entry in entries {
            let start = payloads.len() as u32;
            encode_into(&entry.command, &mut payloads);
            let middle = payloads.len() as u32;
            encode_into(&entry.events.as_slice(), &mut payloads);
            spans.push([start, middle, payloads.len() as u32]);
        }
        Encoded { payloads, spans }
    }

    fn command(&self, i: usize) -> &[u8] {
        let [start, middle, _] = self.spans[i];
        &self.payloads[start as usize..middle as usize]
    }

    fn events(&self, i: usize) -> &[u8] {
        let [_, middle, end] = self.spans[i];
        &self.payloads[middle as usize..end as usize]
    }
}

pub fn run(options: &Options) -> Report {
    let commands = options.commands_measured.unwrap_or(match options.length {
        Length::Full => COMMANDS_FULL,
        Length::Quick => COMMANDS_QUICK,
    });
    let entries = entries(options.seed, commands);
    let dir = scratch_dir("journal");
    // Each run's files go as soon as it is measured: a full run's segment is 1 GiB of dirty page
    // cache, and three of them left in place passed the kernel's background writeback threshold
    // (10% of memory here), whose flusher then took a core from the next row.
    let done = |name: &str| {
        let _ = std::fs::remove_dir_all(dir.join(name));
    };
    let process = append_run(
        &dir.join("process"),
        &entries,
        Durability::Process,
        Payloads::Encode,
    );
    done("process");
    let payloads = Encoded::of(&entries);
    let encoded = append_run(
        &dir.join("encoded"),
        &entries,
        Durability::Process,
        Payloads::Encoded(&payloads),
    );
    done("encoded");
    let threaded = append_run_with(
        &dir.join("threaded"),
        &entries,
        Durability::Process,
        Payloads::Encoded(&payloads),
        ChainHashing::Thread,
    );
    done("threaded");
    let fsync_entries = &entries[..(FSYNC_BATCHES * BATCH_COMMANDS).min(entries.len())];
    let fsync = append_run(
        &dir.join("fsync"),
        fsync_entries,
        Durability::Fsync,
        Payloads::Encode,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let (memcpy, memcpy_batch_ns) = memcpy_run(&process.batch_bytes);
    let bytes: u64 = process.batch_bytes.iter().map(|&b| b as u64).sum();
    let journal_bw = bytes as f64 / process.elapsed.as_secs_f64();
    let append_bw = bytes as f64 / encoded.elapsed.as_secs_f64();
    let threaded_bw = bytes as f64 / threaded.elapsed.as_secs_f64();
    let memcpy_bw = bytes as f64 / memcpy.as_secs_f64();
    let mib = |bw: f64| bw / (1 << 20) as f64;
    let records = process.records as f64;
    let notes = vec![
        format!(
            "records: {} commands of the ledger workload and their events, {} records, {:.1} MiB, \
             {:.0} bytes per command, batches of {BATCH_COMMANDS} commands",
            entries.len(),
            process.records,
            bytes as f64 / (1 << 20) as f64,
            bytes as f64 / entries.len() as f64
        ),
        format!("memcpy of the same bytes in the same batches: {:.0} MiB/s", mib(memcpy_bw)),
        format!(
            "append of encoded records (frame, CRC32C, BLAKE3 chain, copy into the mapping): {:.2} M \
             records/s, {:.0} MiB/s = {:.1}% of memcpy",
            records / encoded.elapsed.as_secs_f64() / 1e6,
            mib(append_bw),
            100.0 * append_bw / memcpy_bw
        ),
        format!(
            "the same with the chain hashed on a thread of its own (`[server] chain_hashing = \"thread\"`, \
             two cores): {:.2} M records/s, {:.0} MiB/s = {:.1}% of memcpy",
            records / threaded.elapsed.as_secs_f64() / 1e6,
            mib(threaded_bw),
            100.0 * threaded_bw / memcpy_bw
        ),
        format!(
            "end to end with bincode encoding of each command and its events: {:.2} M records/s, {:.0} \
             MiB/s = {:.1}% of memcpy",
            records / process.elapsed.as_secs_f64() / 1e6,
            mib(journal_bw),
            100.0 * journal_bw / memcpy_bw
        ),
        format!(
            "fsync durability ({} batches, msync each): {:.0} commands/s, {:.0} µs per batch commit",
            fsync.batch_bytes.len(),
            fsync_entries.len() as f64 / fsync.elapsed.as_secs_f64(),
            fsync.elapsed.as_secs_f64() * 1e6 / fsync.batch_bytes.len() as f64
        ),
        "per-row latency is per batch commit (encode, checksum, chain, copy, and msync in fsync mode); \
         for memcpy, per batch copied"
            .into(),
        bar_note(&[
            ("journal:append", append_bw / memcpy_bw),
            ("journal:append:thread", threaded_bw / memcpy_bw),
            ("journal:process (with the encoding)", journal_bw / memcpy_bw),
        ]),
    ];
    let row = |name: &str, run: &AppendRun, count: usize| Row {
        scenario: name.into(),
        count: count as u64,
        ops_per_sec: count as f64 / run.elapsed.as_secs_f64(),
        offered_per_sec: None,
        latency: Percentiles::from_samples(&run.batch_ns),
        others_cpu_share: None,
    };
    Report {
        notes,
        rows: vec![
            row("journal:append", &encoded, entries.len()),
            row("journal:append:thread", &threaded, entries.len()),
            row("journal:process", &process, entries.len()),
            row("journal:fsync", &fsync, fsync_entries.len()),
            Row {
                scenario: "journal:memcpy".into(),
                count: entries.len() as u64,
                ops_per_sec: entries.len() as f64 / memcpy.as_secs_f64(),
                offered_per_sec: None,
                latency: Percentiles::from_samples(&memcpy_batch_ns),
                others_cpu_share: None,
            },
        ],
    }
}

/// Issue #4's bar judged on each `process` row: its bandwidth as a share of memcpy's.
fn bar_note(shares: &[(&str, f64)]) -> String {
    let judged: Vec<String> = shares
        .iter()
        .map(|&(row, share)| {
            let verdict = if share >= BAR_MEMCPY_SHARE {
                "met"
            } else {
                "MISSED"
            };
            format!("{row} {:.1}% {verdict}", share * 100.0)
        })
        .collect();
    format!(
        "bar (issue #4): appends at {:.0}% of memcpy's bandwidth or more in `process` durability: {}",
        BAR_MEMCPY_SHARE * 100.0,
        judged.join("; ")
    )
}

/// The engine thread's work on one batch, on the calling thread and without its queue: each
/// command journaled, applied, and its events journaled, then one commit and the drain of the
/// balances the batch changed (`runtime`'s `process` less the publishing). `seq` is the last
/// sequence number used; each record's timestamp is its sequence number, as the engine never
/// reads it.
pub fn apply_and_journal(
    exchange: &mut Exchange,
    writer: &mut JournalWriter<MmapStorage>,
    batch: &[ExchangeCommand],
    seq: &mut u64,
    events: &mut Vec<ExchangeEvent>,
) {
    for &command in batch {
        *seq += 1;
        writer.append_command(*seq, *seq, &command);
        events.clear();
        exchange.apply(
            &Sequenced {
                seq: *seq,
                ts_ns: *seq,
                command,
            },
            events,
        );
        writer.append_events(*seq, *seq, events);
    }
    writer.commit(*seq).expect("commit");
    let mut balances = Vec::new();
    exchange.drain_touched_balances(&mut balances);
}

/// A journal writer on a fresh `journal/` folder in `dir`, for the ledger workload's exchange.
pub fn writer_new(dir: &Path, segment_bytes: usize) -> JournalWriter<MmapStorage> {
    let storage = MmapStorage::open(&dir.join("journal")).expect("journal directory");
    let genesis = Genesis {
        config: exchange_config(),
    };
    JournalWriter::create(storage, &genesis, 0, segment_bytes, Durability::Process)
        .expect("create journal")
}

/// A fresh directory under the system's temporary folder.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kinko-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Runs the workload through an exchange and keeps every measured command with its events.
fn entries(seed: u64, commands: usize) -> Vec<Entry> {
    let workload = Workload::generate(WorkloadSpec {
        seed,
        commands_warmup: 20_000,
        commands_measured: commands,
    });
    let mut exchange = Exchange::new(exchange_config()).expect("valid configuration");
    let mut out = Vec::new();
    let mut seq = 0;
    for command in setup_commands() {
        seq += 1;
        exchange.apply(
            &Sequenced {
                seq,
                ts_ns: seq,
                command,
            },
            &mut out,
        );
    }
    let mut entries = Vec::with_capacity(commands);
    let trade = |r: &Sequenced| ExchangeCommand::Trade(r.command);
    for (i, command) in workload.commands.iter().map(trade).enumerate() {
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
        if i >= workload.commands_warmup {
            entries.push(Entry {
                command,
                events: out.clone(),
            });
        }
    }
    entries
}

struct AppendRun {
    elapsed: Duration,
    records: u64,
    batch_bytes: Vec<usize>,
    batch_ns: Vec<u64>,
}

/// Whether the run encodes each command and its events (as the engine thread does) or appends
/// payloads encoded beforehand (the journal's own work: framing, checksum, chain, copy).
#[derive(Clone, Copy)]
enum Payloads<'a> {
    Encode,
    Encoded(&'a Encoded),
}

fn append_run(
    dir: &std::path::Path,
    entries: &[Entry],
    durability: Durability,
    payloads: Payloads<'_>,
) -> AppendRun {
    append_run_with(dir, entries, durability, payloads, ChainHashing::Inline)
}

fn append_run_with(
    dir: &std::path::Path,
    entries: &[Entry],
    durability: Durability,
    payloads: Payloads<'_>,
    hashing: ChainHashing,
) -> AppendRun {
    // Room for the whole run plus a margin: ~400 bytes a command is generous for this workload.
    let segment_bytes = (entries.len() * 512 + (64 << 20)).next_power_of_two();
    let storage = MmapStorage::open(&dir.join("journal")).expect("journal directory");
    let genesis = Genesis {
        config: exchange_config(),
    };
    let mut writer = JournalWriter::create(storage, &genesis, 0, segment_bytes, durability)
        .expect("create journal");
    writer
        .set_chain_hashing(hashing)
        .expect("chain hasher thread");
    let (mut batch_bytes, mut batch_ns) = (Vec::new(), Vec::new());
    let mut written = writer.bytes_written();
    let start = Instant::now();
    let mut seq = 0;
    for (b, batch) in entries.chunks(BATCH_COMMANDS).enumerate() {
        let batch_start = Instant::now();
        for (j, entry) in batch.iter().enumerate() {
            seq += 1;
            match payloads {
                Payloads::Encode => {
                    writer.append_command(seq, seq, &entry.command);
                    writer.append_events(seq, seq, &entry.events);
                }
                Payloads::Encoded(encoded) => {
                    let i = b * BATCH_COMMANDS + j;
                    writer.append_encoded(RecordKind::Command, seq, seq, encoded.command(i));
                    writer.append_encoded(RecordKind::Events, seq, seq, encoded.events(i));
                }
            }
        }
        writer.commit(seq).expect("commit");
        batch_ns.push(batch_start.elapsed().as_nanos() as u64);
        batch_bytes.push((writer.bytes_written() - written) as usize);
        written = writer.bytes_written();
    }
    let elapsed = start.elapsed();
    AppendRun {
        elapsed,
        records: (entries.len() * 2 + batch_bytes.len()) as u64,
        batch_bytes,
        batch_ns,
    }
}

/// Copies batches of the given sizes from one pre-touched buffer to another, back to back, and
/// times each batch as the append runs time theirs.
fn memcpy_run(batch_bytes: &[usize]) -> (Duration, Vec<u64>) {
    let total: usize = batch_bytes.iter().sum();
    let source: Vec<u8> = (0..total).map(|i| (i * 31 % 251) as u8).collect();
    let mut target = vec![1u8; total];
    let mut batch_ns = Vec::with_capacity(batch_bytes.len());
    let start = Instant::now();
    let mut offset = 0;
    for &len in batch_bytes {
        let batch_start = Instant::now();
        target[offset..offset + len].copy_from_slice(&source[offset..offset + len]);
        batch_ns.push(batch_start.elapsed().as_nanos() as u64);
        offset += len;
    }
    let elapsed = start.elapsed();
    std::hint::black_box(&target);
    (elapsed, batch_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_is_half_of_memcpys_bandwidth_per_row() {
        let note = bar_note(&[("journal:append", 0.5), ("journal:append:thread", 0.4994)]);
        assert!(note.contains("journal:append 50.0% met"), "{note}");
        assert!(
            note.contains("journal:append:thread 49.9% MISSED"),
            "{note}"
        );
    }

    #[test]
    fn a_short_journal_run_reads_back() {
        let entries = entries(3, 2_000);
        let dir = scratch_dir("journal-test");
        let run = append_run(&dir, &entries, Durability::Process, Payloads::Encode);
        assert_eq!(run.records, (2_000 * 2 + run.batch_bytes.len()) as u64);
        let read = engine::runtime::read_data_dir(&dir).expect("the bench's journal reads back");
        assert_eq!(read.last_seq(), 2_000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
