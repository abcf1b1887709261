//! `verify` streams the journal (a reader thread checks the bytes batch by batch while re-execution
//! runs): on a journal of several segments it must come to the same summary as verifying the
//! journal read whole into memory, and locate a failure in a later segment exactly as the reader
//! and the record positions say.

mod common;

use std::path::Path;

use common::*;
use engine::journal::format::{Genesis, RecordKind};
use engine::journal::storage::MmapStorage;
use engine::journal::{Durability, JournalError, JournalRead, JournalWriter};
use engine::{ExchangeCommand, ExchangeEvent, RejectReason, Sequenced, Side};
use ledger::Pool;
use replay::{verify, verify_journal, ReplayError, VerifyFailure, VerifyOptions};

const ACCOUNTS: u32 = 10;
const COMMANDS: usize = 12_000;
const BATCH_COMMANDS: usize = 50;

/// A journal of several 1 MiB segments, written as the engine thread writes one: apply, journal
/// the command and its events, commit each batch. Orders cross around 90.000 JPY, so the books
/// stay small and many commands fill.
fn long_journal(dir: &Path) {
    let mut config = config();
    // The generator trusts the engine; verify checks every invariant on the way back.
    config.engine.check_invariants = false;
    let genesis = Genesis {
        config: config.clone(),
    };
    let ts_ns_start = ns("2018-01-26T09:00:00+09:00");
    let storage = MmapStorage::open(&dir.join("journal")).expect("journal directory");
    let mut writer =
        JournalWriter::create(storage, &genesis, ts_ns_start, 1 << 20, Durability::Process)
            .expect("journal");
    let mut exchange = engine::Exchange::new(config).expect("valid configuration");
    let mut commands: Vec<ExchangeCommand> =
        (0..ACCOUNTS).map(|_| create(Pool::Customer)).collect();
    for account in 0..ACCOUNTS {
        commands.push(deposit(account, JPY, 1_000_000_000_000, account as u8));
        commands.push(deposit(
            account,
            XEM,
            1_000_000 * XEM_UNITS,
            100 + account as u8,
        ));
    }
    for i in 0..COMMANDS {
        let side = if i % 2 == 0 { Side::Sell } else { Side::Buy };
        let price_ticks = 89_900 + (i as i64 * 37) % 200;
        let xem = 1 + (i as i64 % 5);
        commands.push(xem_order(
            i as u32 % ACCOUNTS,
            side,
            price_ticks,
            xem,
            i as u64,
        ));
    }
    let mut events = Vec::new();
    let mut seq = 0;
    for batch in commands.chunks(BATCH_COMMANDS) {
        for &command in batch {
            seq += 1;
            let ts_ns = ts_ns_start + seq;
            events.clear();
            exchange.apply(
                &Sequenced {
                    seq,
                    ts_ns,
                    command,
                },
                &mut events,
            );
            writer.append_command(seq, ts_ns, &command);
            writer.append_events(seq, ts_ns, &events);
        }
        writer.commit(ts_ns_start + seq).expect("commit");
    }
    writer.sync_all().expect("sync");
}

fn read(dir: &Path) -> JournalRead {
    replay::open_journal(dir).expect("the journal reads")
}

/// The first batch of segment `segment`, and the commands before it.
fn first_batch_in(read: &JournalRead, segment: u64) -> (&engine::journal::BatchRead, u64) {
    let i = read
        .batches
        .iter()
        .position(|b| b.records[0].segment == segment)
        .expect("a batch starts in that segment");
    let before = read.batches[..i]
        .iter()
        .map(|b| b.records.len() as u64 / 2)
        .sum();
    (&read.batches[i], before)
}

fn failure(dir: &Path) -> VerifyFailure {
    verify(dir, &VerifyOptions::default()).expect_err("a damaged journal fails")
}

#[test]
fn a_multi_segment_journal_streams_to_the_summary_of_the_whole_read() {
    let dir = TempDir::new("stream-summary");
    long_journal(dir.path());
    let whole = read(dir.path());
    assert!(
        whole.segments.len() >= 3,
        "{} segments",
        whole.segments.len()
    );
    let streamed = verify(dir.path(), &VerifyOptions::default()).expect("verifies");
    let in_memory = verify_journal(&whole, &VerifyOptions::default()).expect("verifies");
    assert_eq!(streamed, in_memory);
    let commands = (ACCOUNTS * 3) as u64 + COMMANDS as u64;
    assert_eq!(streamed.commands, commands);
    let batches = commands.div_ceil(BATCH_COMMANDS as u64);
    assert_eq!(streamed.records, 2 * commands + batches + 2);
    assert_eq!(streamed.segments.len(), whole.segments.len());
    assert!(streamed.fills > 1_000, "{} fills", streamed.fills);
}

#[test]
fn a_bad_checksum_in_a_later_segment_is_where_the_reader_says_after_everything_before_it() {
    let dir = TempDir::new("stream-crc");
    long_journal(dir.path());
    let whole = read(dir.path());
    let (batch, commands_before) = first_batch_in(&whole, 2);
    let victim = batch.records[1].clone();
    let path = dir.path().join("journal").join("segment-000002.kjl");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[victim.offset + 30] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let failure = failure(dir.path());
    assert_eq!(failure.findings[0].code(), "corrupt_record", "{failure}");
    assert_eq!(failure.location.seq, Some(victim.seq));
    assert_eq!(failure.location.offset, Some(victim.offset));
    let segment = failure.location.segment.clone().unwrap();
    assert!(segment.ends_with("segment-000002.kjl"), "{segment}");
    // Streamed: every command before the damaged batch was verified first.
    assert_eq!(failure.commands_verified, commands_before);
    // The engine's reader, reading it whole, puts it at the same place.
    match replay::open_journal(dir.path()) {
        Err(ReplayError::Journal(JournalError::Corrupt {
            segment: at,
            offset,
            seq,
            ..
        })) => {
            assert_eq!(
                (Some(at), Some(offset), seq),
                (
                    failure.location.segment,
                    failure.location.offset,
                    failure.location.seq
                )
            );
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_divergence_in_a_later_segment_is_located_at_its_command_record() {
    let (source, forged) = (
        TempDir::new("stream-diverge-src"),
        TempDir::new("stream-diverge"),
    );
    long_journal(source.path());
    let original = read(source.path());
    let (batch, _) = first_batch_in(&original, 2);
    let target = batch.records[2].seq;
    forge(source.path(), forged.path(), |batches| {
        for record in batches.iter_mut().flatten() {
            if let (true, Payload::Events(events)) = (record.seq == target, &mut record.payload) {
                events.push(ExchangeEvent::Rejected {
                    account: None,
                    reason: RejectReason::ALL[0],
                });
            }
        }
    });
    let failure = failure(forged.path());
    assert_eq!(failure.findings[0].code(), "divergence", "{failure}");
    assert_eq!(failure.location.seq, Some(target));
    let record = command_record(forged.path(), target);
    assert_eq!(record.kind, RecordKind::Command);
    assert!(
        record.segment >= 2,
        "the forged copy keeps it in a later segment"
    );
    assert_eq!(failure.location.offset, Some(record.offset));
    let suffix = format!("segment-{:06}.kjl", record.segment);
    assert!(
        failure
            .location
            .segment
            .as_ref()
            .unwrap()
            .ends_with(&suffix),
        "{failure}"
    );
}

#[test]
fn a_torn_tail_in_the_last_segment_is_reported_after_everything_before_it() {
    let dir = TempDir::new("stream-torn");
    long_journal(dir.path());
    let whole = read(dir.path());
    let last = whole.batches.last().unwrap();
    let path = dir
        .path()
        .join("journal")
        .join(format!("segment-{:06}.kjl", last.segment));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[last.offset..whole.end.offset].fill(0);
    std::fs::write(&path, bytes).unwrap();
    let torn = read(dir.path()).tail_cut.expect("a torn tail");
    let failure = failure(dir.path());
    assert_eq!(failure.findings[0].code(), "torn_tail", "{failure}");
    assert_eq!(failure.location.segment.as_ref(), Some(&torn.segment));
    assert_eq!(failure.location.offset, Some(torn.offset));
    assert_eq!(failure.location.seq, Some(last.commit.first_seq));
    let commands = (ACCOUNTS * 3) as u64 + COMMANDS as u64;
    assert_eq!(
        failure.commands_verified,
        commands - last.records.len() as u64 / 2
    );
}
