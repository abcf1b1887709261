//! The engine thread: the single writer. Producers hand it commands through a bounded lock-free
//! queue; it drains a batch, stamps sequence numbers and one timestamp, journals the commands,
//! applies them, journals the events, commits the batch (msync under `Durability::Fsync`), and
//! only then publishes the batch's events on the outbound channel.
//!
//! A full inbound queue is refused at once with [`Refused::Busy`]: a producer never blocks and
//! nothing is dropped silently. If the thread stops on an error (a journal write that failed), it
//! says why in [`Submitter::failure`] before its outbound channel closes, and every submit after
//! that is refused with [`Refused::Stopped`]. When idle the thread spins, then yields, then parks, so that an idle exchange
//! does not burn a core.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam::channel::{self, Receiver, Sender};
use crossbeam::queue::ArrayQueue;

use crate::command::Sequenced;
use crate::exchange::{ConfigError, Exchange, ExchangeCommand, ExchangeConfig, ExchangeEvent};
use crate::journal::format::{decode, encode_into, Genesis, RecordKind, SEGMENT_BYTES_DEFAULT};
use crate::journal::storage::{MmapStorage, Storage};
use crate::journal::{
    read_journal, ChainHashing, Durability, JournalError, JournalRead, JournalWriter, Repair,
    SegmentPrefault, TailCut,
};
use crate::snapshot;
use crate::types::AccountId;
use ledger::{AssetId, Balance};

/// Commands taken from the queue per batch.
pub const BATCH_COMMANDS_MAX: usize = 1_024;
pub const QUEUE_CAPACITY_DEFAULT: usize = 1 << 16;
/// Published batches waiting for the consumer; when full the engine waits for it.
pub const OUTBOUND_BATCHES_MAX: usize = 1 << 12;

/// The clock seam: the sequencer stamps each batch with `now_ns`. Tests and the simulator replace
/// it; the state machine itself never reads a clock.
pub trait Clock: Send + 'static {
    fn now_ns(&mut self) -> u64;
}

/// Wall-clock nanoseconds since the Unix epoch, never going backwards.
#[derive(Default)]
pub struct SystemClock {
    last_ns: u64,
}

impl Clock for SystemClock {
    fn now_ns(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.last_ns = self.last_ns.max(now);
        self.last_ns
    }
}

/// Spin, then yield, then park: how the engine thread waits for work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleStrategy {
    pub spins: u64,
    pub yields: u64,
    pub park_us: u64,
}

impl IdleStrategy {
    /// Never yields or parks: the thread keeps its core and takes a command within a spin-loop
    /// hint of its arrival (a wake-up of a parked thread costs 10–40 µs on a virtual machine).
    pub const SPIN: IdleStrategy = IdleStrategy {
        spins: u64::MAX,
        yields: 0,
        park_us: 1_000,
    };

    /// Whether the thread ever gives up its core when idle.
    pub fn parks(&self) -> bool {
        self.spins != u64::MAX
    }
}

impl Default for IdleStrategy {
    fn default() -> IdleStrategy {
        IdleStrategy {
            spins: 10_000,
            yields: 100,
            park_us: 1_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub segment_bytes: usize,
    /// Who hashes the journal's chain: the engine thread, or a thread of its own for large batches.
    pub chain_hashing: ChainHashing,
    pub queue_capacity: usize,
    pub batch_commands_max: usize,
    /// Published batches the consumer may fall behind by before the engine waits for it.
    pub outbound_batches: usize,
    /// Write a snapshot after this many commands (0: only at shutdown).
    pub snapshot_every_commands: u64,
    pub idle: IdleStrategy,
}

impl EngineOptions {
    /// Commands between two periodic snapshots unless the options say otherwise.
    pub const SNAPSHOT_EVERY_COMMANDS_DEFAULT: u64 = 1_000_000;

    pub fn new(data_dir: &Path) -> EngineOptions {
        EngineOptions {
            data_dir: data_dir.to_path_buf(),
            durability: Durability::Process,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            chain_hashing: ChainHashing::Inline,
            queue_capacity: QUEUE_CAPACITY_DEFAULT,
            batch_commands_max: BATCH_COMMANDS_MAX,
            outbound_batches: OUTBOUND_BATCHES_MAX,
            snapshot_every_commands: Self::SNAPSHOT_EVERY_COMMANDS_DEFAULT,
            idle: IdleStrategy::default(),
        }
    }

    fn journal_dir(&self) -> PathBuf {
        self.data_dir.join("journal")
    }

    fn snapshot_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }
}

/// A command for the engine, with the producer's token to route its acknowledgement back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub token: u64,
    pub command: ExchangeCommand,
}

/// Why a command was not taken. Either way it is not in the queue and never will be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The inbound queue is full: retry.
    Busy,
    /// The engine thread has stopped on an error ([`Submitter::failure`] says which): nothing is
    /// taken until the exchange is restarted and has recovered from its journal.
    Stopped,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Busy => write!(f, "busy: the engine's inbound queue is full, retry"),
            Refused::Stopped => write!(
                f,
                "stopped: the engine thread stopped on an error; nothing is taken until a restart"
            ),
        }
    }
}

/// One command's outcome inside a published batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub token: u64,
    pub seq: u64,
    pub ts_ns: u64,
    pub events: Range<usize>,
}

/// One journaled batch: its acknowledgements, all its events, and the balances it changed (as
/// they stand after the batch; derived, not journaled).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub acks: Vec<Ack>,
    pub events: Vec<ExchangeEvent>,
    pub balances: Vec<(AccountId, AssetId, Balance)>,
}

impl Published {
    pub fn events_of(&self, ack: &Ack) -> &[ExchangeEvent] {
        &self.events[ack.events.clone()]
    }
}

/// Counters for /metrics, updated by the engine thread.
#[derive(Default, Debug)]
pub struct Stats {
    pub commands: AtomicU64,
    pub batches: AtomicU64,
    pub busy: AtomicU64,
    pub journal_bytes: AtomicU64,
    pub last_seq: AtomicU64,
    pub snapshots: AtomicU64,
    /// Periodic snapshots that could not be written (the engine went on: see
    /// [`Submitter::snapshot_failure`]).
    pub snapshot_failures: AtomicU64,
}

struct Shared {
    stop: AtomicBool,
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
    /// Why the engine thread stopped, set before its outbound channel closes; never set by a
    /// clean shutdown.
    failure: OnceLock<String>,
    /// Why the last periodic snapshot could not be written; cleared by the next one written.
    snapshot_failure: parking_lot::Mutex<Option<String>>,
    stats: Stats,
}

/// A producer's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Submitter {
    queue: Arc<ArrayQueue<Request>>,
    shared: Arc<Shared>,
}

impl Submitter {
    /// Queues a command, or says at once why not. A command queued just as the thread stops is
    /// never answered; the outbound channel's close (after [`Submitter::failure`] is set) is the
    /// consumer's signal to tell those waiting that their outcome is unknown until a restart.
    pub fn submit(&self, token: u64, command: ExchangeCommand) -> Result<(), Refused> {
        if self.shared.failure.get().is_some() {
            return Err(Refused::Stopped);
        }
        if self.queue.push(Request { token, command }).is_err() {
            self.shared.stats.busy.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Busy);
        }
        if self.shared.sleeping.load(Ordering::SeqCst) {
            if let Some(thread) = self.shared.thread.get() {
                thread.unpark();
            }
        }
        Ok(())
    }

    /// Why the engine thread stopped, once it has stopped on an error.
    pub fn failure(&self) -> Option<&str> {
        self.shared.failure.get().map(String::as_str)
    }

    pub fn queue_depth(&self) -> usize {
        self.queue.len()
    }

    /// Why the last periodic snapshot could not be written, while no later one has been. The
    /// engine keeps trading on the journal meanwhile; a restart replays more of it.
    pub fn snapshot_failure(&self) -> Option<String> {
        self.shared.snapshot_failure.lock().clone()
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}

/// What recovery found and did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub created: bool,
    pub last_seq: u64,
    pub snapshot_seq: Option<u64>,
    pub replayed: u64,
    pub tail_cut: Option<TailCut>,
    pub warnings: Vec<String>,
    pub state_hash: [u8; 32],
    /// The timestamp of the last journaled record: the sequencer never stamps an earlier one.
    pub ts_ns_last: u64,
    /// The state at start, for consumers that mirror books and balances from events.
    pub snapshot: Option<crate::exchange::ExchangeSnapshot>,
}

#[derive(Debug)]
pub enum StartError {
    Journal(JournalError),
    Config(ConfigError),
    Io(std::io::Error),
    /// Re-running a journaled command did not produce the journaled events.
    Divergence {
        seq: u64,
        detail: String,
    },
    /// The snapshot's recomputed state hash differs from the one stored with it.
    SnapshotHash {
        path: String,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Journal(e) => write!(f, "{e}"),
            StartError::Config(e) => write!(f, "configuration: {e:?}"),
            StartError::Io(e) => write!(f, "I/O: {e}"),
            StartError::Divergence { seq, detail } => {
                write!(
                    f,
                    "re-execution diverges from the journal at seq {seq}: {detail}"
                )
            }
            StartError::SnapshotHash { path } => {
                write!(f, "snapshot {path}: state hash mismatch after restore")
            }
        }
    }
}

impl std::error::Error for StartError {}

impl From<JournalError> for StartError {
    fn from(e: JournalError) -> StartError {
        StartError::Journal(e)
    }
}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> StartError {
        StartError::Io(e)
    }
}

/// Re-executes every command of a journal from genesis (or after `from`, a restored state) and
/// demands byte-identical events. Returns the state and the last sequence number.
pub fn reexecute(
    read: &JournalRead,
    from: Option<(Exchange, u64)>,
) -> Result<(Exchange, u64), StartError> {
    let (mut exchange, mut seq_done) = match from {
        Some(state) => state,
        None => (
            Exchange::new(read.genesis.config.clone()).map_err(StartError::Config)?,
            0,
        ),
    };
    let mut produced = Vec::new();
    let mut encoded = Vec::new();
    for batch in &read.batches {
        let mut records = batch.records.iter();
        while let Some(record) = records.next() {
            if record.kind != RecordKind::Command || record.seq <= seq_done {
                continue;
            }
            let command: ExchangeCommand =
                decode(&record.payload).ok_or_else(|| StartError::Divergence {
                    seq: record.seq,
                    detail: "command payload does not decode".into(),
                })?;
            produced.clear();
            exchange.apply(
                &Sequenced {
                    seq: record.seq,
                    ts_ns: record.ts_ns,
                    command,
                },
                &mut produced,
            );
            encoded.clear();
            encode_into(&produced.as_slice(), &mut encoded);
            let journaled = records
                .next()
                .filter(|r| r.kind == RecordKind::Events && r.seq == record.seq);
            match journaled {
                Some(events) if events.payload == encoded => {}
                Some(events) => {
                    let journaled: Option<Vec<ExchangeEvent>> = decode(&events.payload);
                    return Err(StartError::Divergence {
                        seq: record.seq,
                        detail: format!("journaled {journaled:?}, re-executed {produced:?}"),
                    });
                }
                None => {
                    return Err(StartError::Divergence {
                        seq: record.seq,
                        detail: "no events record follows the command".into(),
                    })
                }
            }
            seq_done = record.seq;
        }
    }
    Ok((exchange, seq_done))
}

/// Opens (or creates) the journal under `options.data_dir`, recovers the state from the newest
/// valid snapshot and the journal after it, and returns the exchange and a writer positioned after
/// the last commit.
pub fn recover(
    options: &EngineOptions,
    genesis_config: &ExchangeConfig,
    clock: &mut dyn Clock,
) -> Result<(Exchange, JournalWriter<MmapStorage>, RecoveryReport), StartError> {
    let storage = MmapStorage::open(&options.journal_dir())?;
    recover_with(storage, options, genesis_config, clock)
}

/// [`recover`] on any [`Storage`]: the simulator's seam, which wraps the real files to inject disk
/// faults. `options.data_dir` still names the snapshot folder.
pub fn recover_with<S: Storage>(
    mut storage: S,
    options: &EngineOptions,
    genesis_config: &ExchangeConfig,
    clock: &mut dyn Clock,
) -> Result<(Exchange, JournalWriter<S>, RecoveryReport), StartError> {
    let mut report = RecoveryReport::default();
    let read = match read_journal(&mut storage, Repair::CutTail) {
        Ok(read) => read,
        Err(JournalError::Empty) => {
            let genesis = Genesis {
                config: genesis_config.clone(),
            };
            let ts_ns = clock.now_ns();
            let mut writer = JournalWriter::create(
                storage,
                &genesis,
                ts_ns,
                options.segment_bytes,
                options.durability,
            )?;
            configure_writer(&mut writer, options)?;
            let exchange = Exchange::new(genesis.config).map_err(StartError::Config)?;
            report.created = true;
            report.ts_ns_last = ts_ns;
            report.state_hash = snapshot::state_hash(&exchange.snapshot());
            return Ok((exchange, writer, report));
        }
        Err(e) => return Err(e.into()),
    };
    report.tail_cut = read.tail_cut.clone();
    let last_seq = read.last_seq();
    let loaded = snapshot::load_newest(&options.snapshot_dir(), last_seq, &mut report.warnings)?;
    let from = match loaded {
        Some(loaded) => {
            let exchange = Exchange::restore(&loaded.snapshot).map_err(StartError::Config)?;
            if snapshot::state_hash(&exchange.snapshot()) != loaded.hash {
                return Err(StartError::SnapshotHash {
                    path: loaded.path.display().to_string(),
                });
            }
            report.snapshot_seq = Some(loaded.seq);
            Some((exchange, loaded.seq))
        }
        None => None,
    };
    let (exchange, seq_done) = reexecute(&read, from)?;
    report.replayed = seq_done - report.snapshot_seq.unwrap_or(0);
    report.last_seq = seq_done;
    report.ts_ns_last = read
        .batches
        .last()
        .and_then(|batch| batch.records.last())
        .map_or(0, |record| record.ts_ns);
    report.state_hash = snapshot::state_hash(&exchange.snapshot());
    let mut writer =
        JournalWriter::resume(storage, &read, options.segment_bytes, options.durability)?;
    configure_writer(&mut writer, options)?;
    Ok((exchange, writer, report))
}

/// The writer's settings that follow from the engine's options: who hashes the chain, and who
/// faults in a new segment's pages (the engine thread itself, while it waits, if it never parks:
/// its client then spins on the other core, and a thread of the segment's own would take one of
/// the two cores from them for milliseconds).
fn configure_writer<S: Storage>(
    writer: &mut JournalWriter<S>,
    options: &EngineOptions,
) -> std::io::Result<()> {
    writer.set_chain_hashing(options.chain_hashing)?;
    writer.set_segment_prefault(if options.idle.parks() {
        SegmentPrefault::Thread
    } else {
        SegmentPrefault::Idle
    });
    Ok(())
}

/// The running engine.
pub struct EngineHandle {
    submitter: Submitter,
    outbound: Receiver<Published>,
    thread: Option<JoinHandle<Result<u64, String>>>,
    pub recovery: RecoveryReport,
}

impl EngineHandle {
    pub fn submitter(&self) -> Submitter {
        self.submitter.clone()
    }

    /// Published batches, in sequence order.
    pub fn outbound(&self) -> &Receiver<Published> {
        &self.outbound
    }

    pub fn stats(&self) -> &Stats {
        self.submitter.stats()
    }

    /// Stops taking work once the queue is drained, writes a snapshot and joins the thread.
    /// Returns the last sequence number.
    pub fn shutdown(mut self) -> Result<u64, String> {
        self.submitter.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.submitter.shared.thread.get() {
            thread.unpark();
        }
        let thread = self.thread.take().expect("joined once");
        // Let go of our receiver: consumers holding clones keep reading to the end; with none left,
        // the engine's sends fail at once instead of waiting on a full channel.
        drop(std::mem::replace(&mut self.outbound, channel::never()));
        thread
            .join()
            .map_err(|_| "engine thread panicked".to_string())?
    }
}

/// Recovers and starts the engine thread.
pub fn start(
    options: EngineOptions,
    genesis_config: &ExchangeConfig,
    mut clock: Box<dyn Clock>,
) -> Result<EngineHandle, StartError> {
    let (exchange, writer, mut recovery) = recover(&options, genesis_config, clock.as_mut())?;
    recovery.snapshot = Some(exchange.snapshot());
    let sequencer = Sequencer::new(exchange, writer, clock, &recovery, options.clone());
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        sleeping: AtomicBool::new(false),
        thread: OnceLock::new(),
        failure: OnceLock::new(),
        snapshot_failure: parking_lot::Mutex::new(None),
        stats: Stats::default(),
    });
    shared
        .stats
        .last_seq
        .store(recovery.last_seq, Ordering::Relaxed);
    let queue = Arc::new(ArrayQueue::new(options.queue_capacity));
    let (sender, receiver) = channel::bounded(options.outbound_batches);
    let mut engine = EngineLoop {
        sequencer,
        queue: queue.clone(),
        shared: shared.clone(),
        outbound: sender,
        options,
    };
    let thread = thread::Builder::new()
        .name("kinko-engine".into())
        .spawn(move || {
            let result = engine.run();
            if let Err(failure) = &result {
                // Before `engine` (and with it the outbound sender) is dropped: a consumer that
                // sees the channel close can tell a failure from a shutdown.
                let _ = engine.shared.failure.set(failure.clone());
            }
            result
        })?;
    shared
        .thread
        .set(thread.thread().clone())
        .expect("set once");
    Ok(EngineHandle {
        submitter: Submitter { queue, shared },
        outbound: receiver,
        thread: Some(thread),
        recovery,
    })
}

/// The engine thread's work on one batch, without the thread: stamp, sequence, journal, apply,
/// commit. [`start`] runs it behind the queues; the simulator drives it by hand, one batch at a
/// time, so that a seed decides exactly where a crash falls.
pub struct Sequencer<S: Storage> {
    exchange: Exchange,
    writer: JournalWriter<S>,
    clock: Box<dyn Clock>,
    seq: u64,
    seq_snapshot: u64,
    /// The seq of the last snapshot tried, written or not: the next is due `snapshot_every_commands`
    /// after it, so that a snapshot that cannot be written is not retried on every batch.
    seq_snapshot_tried: u64,
    /// The last timestamp stamped or journaled: stamps never go backwards, even when the clock
    /// does (a wall clock stepped back, or a restart on a machine whose clock is behind), because
    /// daily withdrawal limits and address cooldowns are computed from them.
    ts_ns_last: u64,
    options: EngineOptions,
}

impl<S: Storage> Sequencer<S> {
    /// Continues from what [`recover_with`] returned.
    pub fn new(
        mut exchange: Exchange,
        writer: JournalWriter<S>,
        clock: Box<dyn Clock>,
        recovery: &RecoveryReport,
        options: EngineOptions,
    ) -> Sequencer<S> {
        let mut ignored = Vec::new();
        exchange.drain_touched_balances(&mut ignored);
        Sequencer {
            exchange,
            writer,
            clock,
            seq: recovery.last_seq,
            seq_snapshot: recovery.snapshot_seq.unwrap_or(0),
            seq_snapshot_tried: recovery.snapshot_seq.unwrap_or(0),
            ts_ns_last: recovery.ts_ns_last,
            options,
        }
    }

    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// The last sequence number taken.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Where the next batch will be written.
    pub fn journal_position(&self) -> crate::journal::Position {
        self.writer.position()
    }

    pub fn bytes_written(&self) -> u64 {
        self.writer.bytes_written()
    }

    /// Sequence, journal, apply and commit one batch; returns what may now be published. An error
    /// means the batch is not in the journal: nothing of it may be published, and the state in
    /// memory is ahead of the journal (the caller stops, as after a crash).
    pub fn process(&mut self, batch: &[Request]) -> std::io::Result<Published> {
        let ts_ns = self.clock.now_ns().max(self.ts_ns_last);
        self.ts_ns_last = ts_ns;
        let mut published = Published {
            acks: Vec::with_capacity(batch.len()),
            events: Vec::with_capacity(batch.len() * 4),
            balances: Vec::new(),
        };
        for request in batch {
            self.seq += 1;
            let seq = self.seq;
            self.writer.append_command(seq, ts_ns, &request.command);
            let start = published.events.len();
            let record = Sequenced {
                seq,
                ts_ns,
                command: request.command,
            };
            self.exchange.apply(&record, &mut published.events);
            self.writer
                .append_events(seq, ts_ns, &published.events[start..]);
            published.acks.push(Ack {
                token: request.token,
                seq,
                ts_ns,
                events: start..published.events.len(),
            });
        }
        self.writer.commit(ts_ns)?;
        self.exchange
            .drain_touched_balances(&mut published.balances);
        Ok(published)
    }

    /// True when `snapshot_every_commands` have been sequenced since the last snapshot tried.
    pub fn snapshot_due(&self) -> bool {
        let every = self.options.snapshot_every_commands;
        every > 0 && self.seq - self.seq_snapshot_tried >= every
    }

    /// Writes a snapshot of the state after the last sequenced command.
    pub fn snapshot(&mut self) -> Result<(), SnapshotError> {
        // The journal up to the snapshot must be on disk before the snapshot claims that seq.
        self.writer.sync_all().map_err(SnapshotError::Journal)?;
        self.seq_snapshot_tried = self.seq;
        snapshot::write(
            &self.options.snapshot_dir(),
            self.seq,
            &self.exchange.snapshot(),
        )
        .map_err(SnapshotError::Write)?;
        self.seq_snapshot = self.seq;
        Ok(())
    }

    /// A clean stop: the journal synced, and a snapshot if anything happened since the last one.
    pub fn shutdown(&mut self) -> Result<u64, SnapshotError> {
        self.writer.sync_all().map_err(SnapshotError::Journal)?;
        if self.seq > self.seq_snapshot {
            self.snapshot()?;
        }
        Ok(self.seq)
    }
}

/// Why a snapshot was not written.
#[derive(Debug)]
pub enum SnapshotError {
    /// The journal up to it could not be synced: the journal's failure, not the snapshot's.
    Journal(std::io::Error),
    /// The snapshot file could not be written (the journal is whole).
    Write(std::io::Error),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Journal(e) => write!(f, "journal write failed: {e}"),
            SnapshotError::Write(e) => write!(f, "snapshot failed: {e}"),
        }
    }
}

struct EngineLoop {
    sequencer: Sequencer<MmapStorage>,
    queue: Arc<ArrayQueue<Request>>,
    shared: Arc<Shared>,
    outbound: Sender<Published>,
    options: EngineOptions,
}

impl EngineLoop {
    fn run(&mut self) -> Result<u64, String> {
        let mut batch = Vec::with_capacity(self.options.batch_commands_max);
        let mut idle_rounds: u64 = 0;
        loop {
            batch.clear();
            while batch.len() < self.options.batch_commands_max {
                match self.queue.pop() {
                    Some(request) => batch.push(request),
                    None => break,
                }
            }
            if batch.is_empty() {
                if self.shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                self.idle(idle_rounds);
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            self.process(&batch)
                .map_err(|e| format!("journal write failed: {e}"))?;
            if self.sequencer.snapshot_due() {
                self.periodic_snapshot()?;
            }
        }
        let seq_snapshot = self.sequencer.seq_snapshot;
        let seq = self.sequencer.shutdown().map_err(|e| match e {
            SnapshotError::Write(e) => format!(
                "the closing snapshot of seq {} failed: {e}; the journal holds every command up \
                 to it, and the next start replays from the newest snapshot written",
                self.sequencer.seq()
            ),
            e => e.to_string(),
        })?;
        if seq > seq_snapshot {
            self.shared.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        }
        Ok(seq)
    }

    fn idle(&mut self, rounds: u64) {
        let idle = self.options.idle;
        if rounds < idle.spins {
            if !self.sequencer.writer.idle_work() {
                std::hint::spin_loop();
            }
        } else if rounds < idle.spins.saturating_add(idle.yields) {
            thread::yield_now();
        } else {
            self.shared.sleeping.store(true, Ordering::SeqCst);
            // Re-check after announcing the sleep, so that a push in between is not missed.
            if self.queue.is_empty() && !self.shared.stop.load(Ordering::SeqCst) {
                thread::park_timeout(Duration::from_micros(idle.park_us));
            }
            self.shared.sleeping.store(false, Ordering::SeqCst);
        }
    }

    /// Sequence, journal, apply, commit, publish one batch.
    fn process(&mut self, batch: &[Request]) -> std::io::Result<()> {
        let published = self.sequencer.process(batch)?;
        let stats = &self.shared.stats;
        stats
            .commands
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .journal_bytes
            .store(self.sequencer.bytes_written(), Ordering::Relaxed);
        stats
            .last_seq
            .store(self.sequencer.seq(), Ordering::Relaxed);
        // A consumer that went away is not the engine's failure: the journal has everything.
        let _ = self.outbound.send(published);
        Ok(())
    }

    /// A snapshot that cannot be written does not stop trading: the journal holds every command
    /// and recovery replays it from the newest snapshot written (or the genesis), so only a
    /// restart's time grows. The failure is counted, kept for `/health` until a snapshot is
    /// written, and said on stderr; the next try comes `snapshot_every_commands` later. A journal
    /// that cannot be synced first is the journal's failure, and stops the engine as in
    /// [`EngineLoop::process`].
    fn periodic_snapshot(&mut self) -> Result<(), String> {
        let stats = &self.shared.stats;
        match self.sequencer.snapshot() {
            Ok(()) => {
                stats.snapshots.fetch_add(1, Ordering::Relaxed);
                *self.shared.snapshot_failure.lock() = None;
                Ok(())
            }
            Err(SnapshotError::Write(e)) => {
                stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                let failure = format!("snapshot of seq {} failed: {e}", self.sequencer.seq());
                eprintln!(
                    "kinko: {failure}; trading goes on (the journal has every command), next try \
                     after {} more commands",
                    self.options.snapshot_every_commands
                );
                *self.shared.snapshot_failure.lock() = Some(failure);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The journal directory of a data folder, for tools that read it.
pub fn journal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("journal")
}

/// Reads a data folder's journal without changing it.
pub fn read_data_dir(data_dir: &Path) -> Result<JournalRead, JournalError> {
    let mut storage = MmapStorage::open(&journal_dir(data_dir))?;
    read_journal(&mut storage, Repair::ReadOnly)
}
