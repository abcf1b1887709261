//! The journal on real files: round trip, corruption reported with its position, torn tails cut,
//! removed records caught by the hash chain, snapshots, and back-pressure without loss.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::dirs::TempDir;
use engine::journal::format::{decode, RecordKind};
use engine::journal::{Durability, JournalError};
use engine::runtime::{self, EngineOptions, Published, StartError, SystemClock};
use engine::*;
use ledger::Pool;

fn options(dir: &Path) -> EngineOptions {
    let mut o = EngineOptions::new(dir);
    o.segment_bytes = 1 << 20;
    o.snapshot_every_commands = 0;
    o
}

/// A stream of commands: accounts, deposits, then crossing orders.
fn commands(n: usize) -> Vec<ExchangeCommand> {
    let mut out = vec![
        ExchangeCommand::CreateAccount {
            pool: Pool::Customer,
        },
        ExchangeCommand::CreateAccount {
            pool: Pool::Customer,
        },
        ExchangeCommand::Deposit {
            account: 0,
            asset: 5,
            amount_units: 1_000_000_000_000,
            tx: [1; 32],
        },
        ExchangeCommand::Deposit {
            account: 1,
            asset: 0,
            amount_units: 1_000_000_000_000,
            tx: [2; 32],
        },
    ];
    for i in 0..n {
        let side = if i % 2 == 0 { Side::Sell } else { Side::Buy };
        out.push(ExchangeCommand::Trade(Command::NewOrder(NewOrder {
            account: if side == Side::Sell { 1 } else { 0 },
            instrument: 0,
            client_order_id: i as u64,
            side,
            kind: OrderKind::limit(15_000_000 + (i % 7) as i64, TimeInForce::Gtc),
            qty_lots: 1 + (i % 5) as i64,
            stp: None,
        })));
    }
    out
}

/// Runs `commands` through a real engine in `dir` and returns every published batch.
fn run(options: EngineOptions, commands: &[ExchangeCommand]) -> (Vec<Published>, u64) {
    let engine = runtime::start(
        options,
        &defaults::config(),
        Box::new(SystemClock::default()),
    )
    .expect("start");
    let published = send(&engine, commands);
    let last = engine.shutdown().expect("clean shutdown");
    (published, last)
}

/// Submits `commands` to a running engine in chunks of 40, waiting for each chunk's
/// acknowledgements (so that the journal holds many batches), and returns the published batches.
fn send(engine: &runtime::EngineHandle, commands: &[ExchangeCommand]) -> Vec<Published> {
    let submitter = engine.submitter();
    let mut published = Vec::new();
    for (chunk_index, chunk) in commands.chunks(40).enumerate() {
        for (i, command) in chunk.iter().enumerate() {
            let token = (chunk_index * 40 + i) as u64;
            while submitter.submit(token, *command).is_err() {
                std::thread::yield_now();
            }
        }
        let mut acked = 0;
        while acked < chunk.len() {
            let batch = engine
                .outbound()
                .recv_timeout(Duration::from_secs(10))
                .expect("acks arrive");
            acked += batch.acks.len();
            published.push(batch);
        }
    }
    published
}

fn segment(dir: &Path, index: u64) -> PathBuf {
    dir.join("journal").join(format!("segment-{index:06}.kjl"))
}

fn start_error(dir: &Path) -> StartError {
    match runtime::start(
        options(dir),
        &defaults::config(),
        Box::new(SystemClock::default()),
    ) {
        Ok(_) => panic!("the engine started on a damaged journal"),
        Err(e) => e,
    }
}

#[test]
fn journal_round_trips_commands_and_events() {
    let dir = TempDir::new("roundtrip");
    let sent = commands(500);
    let (published, last) = run(options(dir.path()), &sent);
    assert_eq!(last, sent.len() as u64);
    let read = runtime::read_data_dir(dir.path()).expect("read");
    assert!(read.tail_cut.is_none());
    assert_eq!(read.last_seq(), last);
    let journaled: Vec<ExchangeCommand> = read
        .batches
        .iter()
        .flat_map(|b| b.records.iter())
        .filter(|r| r.kind == RecordKind::Command)
        .map(|r| decode(&r.payload).expect("decodes"))
        .collect();
    assert_eq!(journaled, sent);
    // The journaled events are the published ones, byte for byte.
    let events: Vec<ExchangeEvent> = read
        .batches
        .iter()
        .flat_map(|b| b.records.iter())
        .filter(|r| r.kind == RecordKind::Events)
        .flat_map(|r| decode::<Vec<ExchangeEvent>>(&r.payload).expect("decodes"))
        .collect();
    let published_events: Vec<ExchangeEvent> = published
        .iter()
        .flat_map(|b| b.events.iter().copied())
        .collect();
    assert_eq!(events, published_events);
    assert!(events
        .iter()
        .any(|e| matches!(e, ExchangeEvent::Settled(_))));
    // Replay from genesis reproduces the state.
    let (exchange, seq) = runtime::reexecute(&read, None).expect("re-executes");
    assert_eq!(seq, last);
    exchange.check_invariants().expect("invariants");
}

#[test]
fn restart_recovers_from_snapshot_and_journal_with_the_same_state() {
    let dir = TempDir::new("restart");
    let mut o = options(dir.path());
    o.snapshot_every_commands = 100;
    let sent = commands(450);
    run(o.clone(), &sent[..300]);
    let engine = runtime::start(
        o.clone(),
        &defaults::config(),
        Box::new(SystemClock::default()),
    )
    .expect("restart");
    assert_eq!(engine.recovery.last_seq, 300);
    assert!(engine.recovery.snapshot_seq.is_some());
    let recovered_hash = engine.recovery.state_hash;
    engine.shutdown().unwrap();
    let read = runtime::read_data_dir(dir.path()).unwrap();
    let (exchange, _) = runtime::reexecute(&read, None).unwrap();
    assert_eq!(
        snapshot::state_hash(&exchange.snapshot()),
        recovered_hash,
        "snapshot + replay = full re-execution"
    );
    run(o, &sent[300..]);
    assert_eq!(
        runtime::read_data_dir(dir.path()).unwrap().last_seq(),
        sent.len() as u64
    );
}

#[test]
fn fsync_durability_writes_the_same_journal() {
    let dir = TempDir::new("fsync");
    let mut o = options(dir.path());
    o.durability = Durability::Fsync;
    let (_, last) = run(o, &commands(100));
    assert_eq!(runtime::read_data_dir(dir.path()).unwrap().last_seq(), last);
}

#[test]
fn a_byte_flipped_in_the_middle_is_reported_with_its_position() {
    let dir = TempDir::new("flip");
    run(options(dir.path()), &commands(300));
    let read = runtime::read_data_dir(dir.path()).unwrap();
    let victim = &read.batches[3].records[0];
    let offset = victim.offset + 30;
    flip(&segment(dir.path(), 0), offset);
    match start_error(dir.path()) {
        StartError::Journal(JournalError::Corrupt {
            segment,
            offset: at,
            seq,
            detail,
        }) => {
            assert!(segment.ends_with("segment-000000.kjl"), "{segment}");
            assert_eq!(at, victim.offset, "the damaged record's offset");
            assert_eq!(seq, Some(victim.seq));
            assert!(
                detail.starts_with("checksum mismatch: CRC32C stored 0x"),
                "{detail}"
            );
        }
        other => panic!("expected corruption, got {other}"),
    }
    // The message names segment, offset and seq for a human.
    let text = start_error(dir.path()).to_string();
    assert!(
        text.contains(&format!("offset {}", victim.offset))
            && text.contains(&format!("seq {}", victim.seq)),
        "{text}"
    );
}

#[test]
fn a_torn_tail_is_cut_off_with_a_warning_and_the_engine_continues() {
    let dir = TempDir::new("torn");
    let sent = commands(200);
    run(options(dir.path()), &sent);
    let read = runtime::read_data_dir(dir.path()).unwrap();
    let last = read.batches.last().unwrap();
    let (first_seq_lost, cut_at) = (last.commit.first_seq, last.records[0].offset);
    // Tear the last batch: its commit record is half written.
    let end = read.end.offset;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment(dir.path(), 0))
        .unwrap();
    file.seek(SeekFrom::Start((end - 20) as u64)).unwrap();
    file.write_all(&[0xee; 20]).unwrap();
    drop(file);
    let engine = runtime::start(
        options(dir.path()),
        &defaults::config(),
        Box::new(SystemClock::default()),
    )
    .expect("starts");
    let cut = engine.recovery.tail_cut.clone().expect("a tail was cut");
    assert_eq!(cut.offset, cut_at);
    assert_eq!(cut.seq, Some(first_seq_lost));
    assert!(cut.to_string().contains("segment-000000.kjl"), "{cut}");
    assert_eq!(engine.recovery.last_seq, first_seq_lost - 1);
    engine.shutdown().unwrap();
    // Appends continue after the cut and the journal reads clean.
    run(options(dir.path()), &sent[..10]);
    let read = runtime::read_data_dir(dir.path()).unwrap();
    assert!(read.tail_cut.is_none());
    assert_eq!(read.last_seq(), first_seq_lost - 1 + 10);
}

#[test]
fn a_record_removed_from_the_middle_breaks_the_hash_chain() {
    let dir = TempDir::new("removed");
    run(options(dir.path()), &commands(300));
    let read = runtime::read_data_dir(dir.path()).unwrap();
    // Remove one whole record (a command's events) from the middle, shifting the rest back.
    let batch = &read.batches[2];
    let victim = batch
        .records
        .iter()
        .find(|r| r.kind == RecordKind::Events)
        .unwrap();
    let next = batch
        .records
        .iter()
        .find(|r| r.offset > victim.offset)
        .map_or(batch.offset, |r| r.offset);
    let path = segment(dir.path(), 0);
    let mut bytes = Vec::new();
    fs::File::open(&path)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let removed = next - victim.offset;
    bytes.copy_within(next.., victim.offset);
    let len = bytes.len();
    bytes[len - removed..].fill(0);
    fs::write(&path, &bytes).unwrap();
    match start_error(dir.path()) {
        StartError::Journal(JournalError::ChainBroken {
            segment,
            offset,
            seq,
        }) => {
            assert!(segment.ends_with("segment-000000.kjl"));
            assert_eq!(
                offset,
                batch.offset - removed,
                "the commit of the damaged batch"
            );
            assert_eq!(seq, batch.commit.last_seq);
        }
        other => panic!("expected a broken chain, got {other}"),
    }
}

#[test]
fn a_corrupt_snapshot_falls_back_to_the_journal() {
    let dir = TempDir::new("badsnap");
    let sent = commands(100);
    run(options(dir.path()), &sent);
    let snapshots: Vec<_> = fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(snapshots.len(), 1, "a snapshot at shutdown");
    flip(&snapshots[0], 100);
    let engine = runtime::start(
        options(dir.path()),
        &defaults::config(),
        Box::new(SystemClock::default()),
    )
    .unwrap();
    assert_eq!(engine.recovery.snapshot_seq, None);
    assert!(
        engine
            .recovery
            .warnings
            .iter()
            .any(|w| w.contains("invalid")),
        "{:?}",
        engine.recovery.warnings
    );
    assert_eq!(engine.recovery.last_seq, sent.len() as u64);
    engine.shutdown().unwrap();
}

#[test]
fn a_snapshot_that_cannot_be_written_is_said_and_trading_goes_on() {
    let dir = TempDir::new("snapblocked");
    let mut o = options(dir.path());
    o.snapshot_every_commands = 100;
    let engine = runtime::start(
        o.clone(),
        &defaults::config(),
        Box::new(SystemClock::default()),
    )
    .unwrap();
    // A file where the snapshot folder goes: every snapshot write fails, as on a broken disk.
    let folder = dir.path().join("snapshots");
    let _ = fs::remove_dir_all(&folder);
    fs::write(&folder, b"not a folder").unwrap();
    let sent = commands(400);
    let (blocked, later) = sent.split_at(250);
    let acked: usize = send(&engine, blocked).iter().map(|b| b.acks.len()).sum();
    assert_eq!(
        acked,
        blocked.len(),
        "every command past the failed snapshots acknowledged"
    );
    let stats = engine.stats();
    let failures = stats.snapshot_failures.load(Ordering::Relaxed);
    // Due at seq 100 and 200 (tried once each, not on every batch after).
    assert_eq!(failures, 2, "tries while the folder is blocked");
    assert_eq!(stats.snapshots.load(Ordering::Relaxed), 0);
    let failure = engine
        .submitter()
        .snapshot_failure()
        .expect("the failure is kept");
    assert!(
        failure.starts_with("snapshot of seq ")
            && failure.contains(&format!("failed: {}: ", folder.display())),
        "{failure}"
    );
    assert_eq!(
        engine.submitter().failure(),
        None,
        "the engine did not stop"
    );
    // The folder comes back: the next due snapshot is written and the failure is cleared.
    fs::remove_file(&folder).unwrap();
    let acked: usize = send(&engine, later).iter().map(|b| b.acks.len()).sum();
    assert_eq!(acked, later.len());
    assert_eq!(stats.snapshot_failures.load(Ordering::Relaxed), failures);
    assert!(
        stats.snapshots.load(Ordering::Relaxed) >= 1,
        "written again"
    );
    assert_eq!(engine.submitter().snapshot_failure(), None);
    // Blocked again at the stop: the closing snapshot's failure is the stop's error, and it says
    // that nothing is lost.
    let sent_more = commands(450);
    let acked: usize = send(&engine, &sent_more[sent.len()..])
        .iter()
        .map(|b| b.acks.len())
        .sum();
    assert_eq!(acked, 50);
    let last = sent_more.len() as u64;
    let aside = dir.path().join("snapshots-aside");
    fs::rename(&folder, &aside).unwrap();
    fs::write(&folder, b"not a folder").unwrap();
    let error = engine
        .shutdown()
        .expect_err("the closing snapshot cannot be written");
    assert!(
        error.starts_with(&format!("the closing snapshot of seq {last} failed: "))
            && error.contains("the journal holds every command"),
        "{error}"
    );
    fs::remove_file(&folder).unwrap();
    fs::rename(&aside, &folder).unwrap();
    // A restart finds a snapshot and every command.
    let engine = runtime::start(o, &defaults::config(), Box::new(SystemClock::default())).unwrap();
    assert_eq!(
        engine.recovery.last_seq, last,
        "every command, from the journal"
    );
    assert!(engine.recovery.snapshot_seq.is_some_and(|seq| seq < last));
    engine.shutdown().unwrap();
}

#[test]
fn a_flood_beyond_the_queue_gets_busy_and_loses_nothing() {
    let dir = TempDir::new("flood");
    let mut o = options(dir.path());
    o.queue_capacity = 16;
    o.outbound_batches = 1;
    let engine = runtime::start(o, &defaults::config(), Box::new(SystemClock::default())).unwrap();
    let submitter = engine.submitter();
    let sent = commands(5_000);
    // Nobody reads the outbound side yet: the engine stalls on it and the queue fills up.
    let mut accepted = Vec::new();
    let mut busy = 0;
    for (token, command) in sent.iter().enumerate() {
        match submitter.submit(token as u64, *command) {
            Ok(()) => accepted.push(token as u64),
            Err(runtime::Refused::Busy) => busy += 1,
            Err(refused) => panic!("{refused}"),
        }
    }
    assert!(busy > 0, "the flood overran the queue");
    assert!(
        engine
            .stats()
            .busy
            .load(std::sync::atomic::Ordering::Relaxed)
            >= busy
    );
    let mut acked = Vec::new();
    while acked.len() < accepted.len() {
        let batch = engine
            .outbound()
            .recv_timeout(Duration::from_secs(10))
            .expect("every accepted command is acknowledged");
        acked.extend(batch.acks.iter().map(|a| a.token));
    }
    assert_eq!(
        acked, accepted,
        "acknowledged exactly the accepted commands, in order"
    );
    let last = engine.shutdown().unwrap();
    assert_eq!(
        last,
        accepted.len() as u64,
        "the journal holds exactly the accepted commands"
    );
}

/// Waits (up to 10 s) until a file of the journal exists: a segment made ahead appears shortly
/// after the batch that begins it.
fn wait_for_file(path: &Path) {
    let since = std::time::Instant::now();
    while !path.is_file() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_engine_whose_journal_cannot_grow_stops_says_why_and_refuses_what_follows() {
    let dir = TempDir::new("stops");
    let engine = runtime::start(
        options(dir.path()),
        &defaults::config(),
        Box::new(SystemClock::default()),
    )
    .unwrap();
    let submitter = engine.submitter();
    let sent = commands(200_000);
    submitter.submit(0, sent[0]).unwrap();
    let first = engine
        .outbound()
        .recv_timeout(Duration::from_secs(10))
        .unwrap();
    assert_eq!(first.acks[0].seq, 1);
    // Segment 1 is made ahead after the first batch, segment 2 after the first batch into
    // segment 1. A directory where segment 2's file goes makes that fail, as a full disk would;
    // the rotation into segment 2 then fails its commit and the engine thread stops.
    let journal = runtime::journal_dir(dir.path());
    wait_for_file(&journal.join("segment-000001.kjl"));
    let blocker = journal.join("segment-000002.kjl");
    fs::create_dir(&blocker).unwrap();
    assert_eq!(
        submitter.failure(),
        None,
        "running until it needs segment 2"
    );

    let mut acked_last = 1;
    let mut stopped_at = None;
    'flood: for (chunk_index, chunk) in sent[1..].chunks(64).enumerate() {
        for (i, command) in chunk.iter().enumerate() {
            let since = std::time::Instant::now();
            loop {
                match submitter.submit((chunk_index * 64 + i + 1) as u64, *command) {
                    Ok(()) => break,
                    Err(runtime::Refused::Busy) => {
                        assert!(
                            since.elapsed() < Duration::from_secs(10),
                            "busy for 10 s: a stopped engine is refused as busy"
                        );
                        std::thread::yield_now()
                    }
                    Err(runtime::Refused::Stopped) => {
                        stopped_at = Some(chunk_index * 64 + i + 1);
                        break 'flood;
                    }
                }
            }
        }
        // Every batch published until the channel closes: no answer may come after the stop.
        while let Ok(batch) = engine.outbound().recv_timeout(Duration::from_millis(20)) {
            for ack in &batch.acks {
                assert_eq!(ack.seq, acked_last + 1, "acknowledged in sequence");
                acked_last = ack.seq;
            }
        }
    }
    let stopped_at = stopped_at.expect("the engine stopped before 200,000 commands");
    assert!(
        acked_last > 4_000,
        "acknowledged up to seq {acked_last}, segments 0 and 1, before the stop"
    );
    while let Ok(batch) = engine.outbound().recv_timeout(Duration::from_secs(10)) {
        acked_last = batch.acks.last().map_or(acked_last, |ack| ack.seq);
    }
    assert!(
        engine
            .outbound()
            .recv_timeout(Duration::from_millis(1))
            .unwrap_err()
            .is_disconnected(),
        "the outbound channel closed"
    );
    let failure = submitter
        .failure()
        .expect("the failure is said")
        .to_string();
    assert!(failure.starts_with("journal write failed: "), "{failure}");
    assert!(
        failure.contains("File exists"),
        "the disk's own error: {failure}"
    );
    assert_eq!(
        submitter.submit(u64::MAX, sent[stopped_at]),
        Err(runtime::Refused::Stopped),
        "refused at once, not queued to wait forever"
    );
    let error = engine
        .shutdown()
        .expect_err("a failed engine does not shut down cleanly");
    assert_eq!(error, failure);

    // With the disk mended, a restart recovers exactly what was acknowledged and goes on.
    fs::remove_dir(&blocker).unwrap();
    let engine = runtime::start(
        options(dir.path()),
        &defaults::config(),
        Box::new(SystemClock::default()),
    )
    .unwrap();
    assert_eq!(
        engine.recovery.last_seq, acked_last,
        "every acknowledged command, and not the batch whose commit failed"
    );
    engine.submitter().submit(1, sent[stopped_at]).unwrap();
    let batch = engine
        .outbound()
        .recv_timeout(Duration::from_secs(10))
        .unwrap();
    assert_eq!(batch.acks[0].seq, acked_last + 1);
    engine.shutdown().unwrap();
}

fn flip(path: &Path, offset: usize) {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(offset as u64)).unwrap();
    file.read_exact(&mut byte).unwrap();
    byte[0] ^= 0x40;
    file.seek(SeekFrom::Start(offset as u64)).unwrap();
    file.write_all(&byte).unwrap();
}

#[test]
fn a_full_segment_rotates_and_the_journal_reads_across_segments() {
    let dir = TempDir::new("rotate");
    let sent = commands(12_000);
    let (_, last) = run(options(dir.path()), &sent);
    let read = runtime::read_data_dir(dir.path()).unwrap();
    assert!(read.segments.len() >= 2, "{} segments", read.segments.len());
    assert_eq!(read.last_seq(), last);
    let (_, seq) = runtime::reexecute(&read, None).unwrap();
    assert_eq!(seq, last);
    // And recovery across segments, with appends continuing in the last one.
    run(options(dir.path()), &sent[..5]);
    assert_eq!(
        runtime::read_data_dir(dir.path()).unwrap().last_seq(),
        last + 5
    );
}

#[test]
fn a_rotation_killed_before_its_header_leaves_a_zero_segment_that_recovery_removes() {
    let dir = TempDir::new("rotation-killed");
    let sent = commands(100);
    let (_, last) = run(options(dir.path()), &sent);
    // The next segment was created (zero-filled, preallocated) but the process died before the
    // header was written.
    let empty = segment(dir.path(), 1);
    fs::write(&empty, vec![0u8; 1 << 20]).unwrap();
    let read = runtime::read_data_dir(dir.path()).expect("a zero last segment is not corruption");
    assert_eq!(read.last_seq(), last);
    run(options(dir.path()), &sent[..3]);
    assert_eq!(
        runtime::read_data_dir(dir.path()).unwrap().last_seq(),
        last + 3
    );
    // A last segment with garbage instead of a header is still refused.
    fs::write(segment(dir.path(), 7), vec![0x5au8; 1 << 20]).unwrap();
    assert!(matches!(
        start_error(dir.path()),
        StartError::Journal(JournalError::BadSegment { .. })
    ));
}

/// A process killed inside the copy of a batch may leave later records of that batch written and
/// earlier ones not (a copy stores in any order), but never the commit: that is a torn tail.
#[test]
fn an_unfinished_batch_with_a_hole_before_whole_records_is_a_torn_tail() {
    let dir = TempDir::new("hole");
    run(options(dir.path()), &commands(200));
    let read = runtime::read_data_dir(dir.path()).unwrap();
    let last = read.batches.last().unwrap().clone();
    assert!(last.records.len() >= 4, "a batch of several records");
    let mut bytes = fs::read(segment(dir.path(), 0)).unwrap();
    // Erase the batch's first record and its commit; the records between stay whole.
    let first = &last.records[0];
    let second = last.records[1].offset;
    bytes[first.offset..second].fill(0);
    bytes[last.offset..read.end.offset].fill(0);
    fs::write(segment(dir.path(), 0), &bytes).unwrap();
    let engine = runtime::start(
        options(dir.path()),
        &defaults::config(),
        Box::new(SystemClock::default()),
    )
    .expect("starts");
    let cut = engine
        .recovery
        .tail_cut
        .clone()
        .expect("the unfinished batch is cut");
    assert_eq!((cut.offset, cut.seq), (first.offset, None));
    assert_eq!(engine.recovery.last_seq, last.commit.first_seq - 1);
    engine.shutdown().unwrap();
}

/// A clock the test sets.
struct SetClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl runtime::Clock for SetClock {
    fn now_ns(&mut self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn set(now: &std::sync::atomic::AtomicU64, ns: u64) {
    now.store(ns, std::sync::atomic::Ordering::SeqCst);
}

/// The wall clock steps back (and a restart comes up on a machine whose clock is behind): the
/// sequencer still never stamps a batch earlier than the last one, because replay refuses time
/// going backwards and daily withdrawal limits count UTC days from the stamps (kinko-sim seed 0).
#[test]
fn stamps_never_go_backwards_when_the_clock_does() {
    let dir = TempDir::new("clockback");
    let o = options(dir.path());
    let now = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1_000_000_000_000));
    let mut clock = SetClock(now.clone());
    let (exchange, writer, report) =
        runtime::recover(&o, &defaults::config(), &mut clock).expect("a new journal");
    let mut sequencer = runtime::Sequencer::new(
        exchange,
        writer,
        Box::new(SetClock(now.clone())),
        &report,
        o.clone(),
    );
    let mut stamps = Vec::new();
    let sent = commands(4);
    for (i, (command, clock_ns)) in sent
        .iter()
        .zip([5_000, 4_000, 9_000, 1_000, 9_500, 9_400, 10_000, 2_000])
        .enumerate()
    {
        set(&now, 1_000_000_000_000 + clock_ns);
        let request = runtime::Request {
            token: i as u64,
            command: *command,
        };
        let published = sequencer.process(&[request]).expect("journaled");
        stamps.push(published.acks[0].ts_ns - 1_000_000_000_000);
    }
    assert_eq!(
        stamps,
        [5_000, 5_000, 9_000, 9_000, 9_500, 9_500, 10_000, 10_000]
    );
    sequencer.shutdown().expect("clean stop");
    // A restart with the clock far behind: the first stamp is the last one journaled.
    set(&now, 1_000_000_000_000);
    let mut clock = SetClock(now.clone());
    let (exchange, writer, report) =
        runtime::recover(&o, &defaults::config(), &mut clock).expect("recovered");
    assert_eq!(report.ts_ns_last, 1_000_000_010_000);
    let mut sequencer =
        runtime::Sequencer::new(exchange, writer, Box::new(SetClock(now)), &report, o);
    let request = runtime::Request {
        token: 99,
        command: ExchangeCommand::CreateAccount {
            pool: Pool::Customer,
        },
    };
    let published = sequencer.process(&[request]).expect("journaled");
    assert_eq!(published.acks[0].ts_ns, 1_000_000_010_000);
    sequencer.shutdown().expect("clean stop");
    let read = runtime::read_data_dir(dir.path()).expect("reads back");
    let stamps: Vec<u64> = read.batches.iter().map(|b| b.records[0].ts_ns).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
}
