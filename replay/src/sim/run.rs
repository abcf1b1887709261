//! One simulated run: the exchange's lifetimes, the workload, the faults and the checks, all
//! decided by one seed.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use engine::custody::Address;
use engine::journal::format::{decode, encode_into, RecordKind};
use engine::journal::storage::segment_path;
use engine::journal::{JournalError, JournalRead};
use engine::runtime::{
    journal_dir, read_data_dir, recover_with, reexecute, EngineOptions, Published, Request,
    Sequencer, StartError,
};
use engine::snapshot::{hex, state_hash};
use engine::{ExchangeCommand, ExchangeConfig, ExchangeEvent, HousePolicy};
use ledger::{Location, Pool};

use crate::sim::disk::{self, DiskSwitch, RecordSpan, SimClock, SimStorage};
use crate::sim::rng::Rng;
use crate::sim::workload::{Market, Workload, COINS, INSTRUMENTS, INSTRUMENT_DISCLOSED, JPY};
use crate::sim::world::{Theft, World};
use crate::sim::{Counters, Failure, Outcome, Sabotage, SimOptions};

/// Steps of the trace kept for a failure report.
const TRACE_STEPS_MAX: usize = 20;
/// 2026-01-01T00:00:00Z: where simulated time starts.
const EPOCH_NS: u64 = 1_767_225_600_000_000_000;
const SEGMENT_BYTES: usize = 1 << 20;

/// Fault rates of one run, per thousand steps, drawn from the seed so that some runs are calm and
/// some are stormy.
#[derive(Clone, Copy, Debug)]
struct Faults {
    crash: u64,
    crash_mid_batch: u64,
    snapshot_crash: u64,
    snapshot_flip: u64,
    clock_back: u64,
    theft: u64,
    disk_full: u64,
    /// The step at which a bit is flipped in the journal (silent corruption), ending the run.
    journal_flip_step: Option<u64>,
}

impl Faults {
    fn draw(rng: &mut Rng, steps: u64) -> Faults {
        Faults {
            crash: rng.range(0, 8) as u64,
            crash_mid_batch: rng.range(0, 6) as u64,
            snapshot_crash: rng.range(0, 300) as u64,
            snapshot_flip: rng.range(0, 4) as u64,
            clock_back: rng.range(0, 3) as u64,
            theft: rng.range(0, 4) as u64,
            disk_full: rng.range(0, 3) as u64,
            journal_flip_step: rng.chance(150).then(|| rng.below(steps)),
        }
    }
}

/// What the next recovery must find.
#[derive(Default)]
struct Expect {
    /// The last seq the journal must hold.
    seq_last: u64,
    /// A mid-batch tear: a tail must have been cut (unless the tear left only zeros).
    tail_cut: bool,
    /// A snapshot the recovery must warn about and skip.
    snapshot_warning: Option<PathBuf>,
    /// A flipped journal bit: recovery must refuse, naming this segment and record offset.
    corruption: Option<RecordSpan>,
}

pub struct Sim<'o> {
    seed: u64,
    rng: Rng,
    dir: PathBuf,
    options: EngineOptions,
    config: ExchangeConfig,
    markets: Vec<Market>,
    clock: SimClock,
    disk: DiskSwitch,
    engine: Option<Sequencer<SimStorage>>,
    inbound: VecDeque<Request>,
    inbound_max: usize,
    batch_max: usize,
    burst_max: u64,
    outbound: VecDeque<Published>,
    outbound_max: usize,
    /// Refused `Busy`: submitted again before anything new.
    retry: VecDeque<ExchangeCommand>,
    submitted: BTreeMap<u64, ExchangeCommand>,
    token_next: u64,
    /// Every acknowledgement a client saw: seq → (command, events).
    acked: BTreeMap<u64, (ExchangeCommand, Vec<ExchangeEvent>)>,
    world: World,
    counter: u64,
    faults: Faults,
    expect: Expect,
    step: u64,
    /// The step a reconciliation fell due at, until it has run.
    recon_due_since: Option<u64>,
    /// While a scheduled reconciliation runs: the step it fell due at.
    recon_last_due: Option<u64>,
    steps: u64,
    /// The last lifetime ended in a crash.
    crashed: bool,
    recon_interval: u64,
    pub counters: Counters,
    trace: VecDeque<String>,
    digest: blake3::Hasher,
    sim_options: &'o SimOptions,
}

type Checked<T = ()> = Result<T, Failure>;

impl<'o> Sim<'o> {
    pub fn new(seed: u64, sim_options: &'o SimOptions) -> Sim<'o> {
        let mut rng = Rng::new(seed);
        let dir = sim_options
            .work_dir
            .join(format!("kinko-sim-{}-{seed}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut options = EngineOptions::new(&dir);
        options.segment_bytes = SEGMENT_BYTES;
        options.snapshot_every_commands = rng.range(50, 600) as u64;
        let config = sim_config();
        let markets = INSTRUMENTS
            .iter()
            .map(|&i| Market {
                instrument: i,
                reference_ticks: config.instruments[i as usize].price_ticks_reference,
            })
            .collect();
        // One run in ten is long enough for its journal to rotate segments (and meet a full disk).
        let steps = sim_options.steps.unwrap_or_else(|| {
            if rng.chance(100) {
                rng.range(4_000, 8_000) as u64
            } else {
                rng.range(300, 1_500) as u64
            }
        });
        let operating = config
            .assets
            .iter()
            .map(|a| a.operating_location())
            .collect();
        let faults = Faults::draw(&mut rng, steps);
        Sim {
            seed,
            inbound_max: rng.range(2, 64) as usize,
            batch_max: rng.range(1, 32) as usize,
            burst_max: rng.range(1, 6) as u64,
            outbound_max: rng.range(1, 8) as usize,
            recon_interval: rng.range(20, 120) as u64,
            rng,
            dir,
            options,
            config,
            markets,
            clock: SimClock::default(),
            disk: DiskSwitch::default(),
            engine: None,
            inbound: VecDeque::new(),
            outbound: VecDeque::new(),
            retry: VecDeque::new(),
            submitted: BTreeMap::new(),
            token_next: 1,
            acked: BTreeMap::new(),
            world: World::new(operating),
            counter: 0,
            faults,
            expect: Expect::default(),
            step: 0,
            recon_due_since: None,
            recon_last_due: None,
            steps,
            crashed: false,
            counters: Counters::default(),
            trace: VecDeque::new(),
            digest: blake3::Hasher::new(),
            sim_options,
        }
    }

    pub fn run(mut self) -> Outcome {
        self.note(format!(
            "seed {}: {} steps, faults {:?}, queue {}, batch {}, outbound {}, snapshot every {}",
            self.seed,
            self.steps,
            self.faults,
            self.inbound_max,
            self.batch_max,
            self.outbound_max,
            self.options.snapshot_every_commands
        ));
        let result = self.run_checked();
        let failure = result.err();
        if failure.is_none() || !self.sim_options.keep_failed {
            let _ = fs::remove_dir_all(&self.dir);
        }
        self.counters.seeds = 1;
        let counts = format!("{:?}", self.counters);
        self.digest.update(counts.as_bytes());
        Outcome {
            seed: self.seed,
            digest: *self.digest.finalize().as_bytes(),
            counters: self.counters,
            failure,
            dir: self.dir,
        }
    }

    fn run_checked(&mut self) -> Checked {
        self.clock.set(EPOCH_NS);
        self.restart()?;
        self.setup()?;
        while self.step < self.steps {
            self.step += 1;
            self.advance_clock();
            if self.engine.is_none() {
                self.restart()?;
                if self.expect.corruption.is_some() {
                    break;
                }
            }
            // A reconciliation falls due on schedule; one due while the process was down runs
            // as soon as it is up again, so that a crash never stretches the time to detection
            // past one interval and a step.
            if self.step.is_multiple_of(self.recon_interval) {
                self.recon_due_since = Some(self.recon_due_since.unwrap_or(self.step));
            }
            self.between_steps()?;
            if self.engine.is_none() {
                continue;
            }
            self.workload();
            self.engine_step(true)?;
            self.consume(false);
            self.check_invariants()?;
            if let Some(due) = self.recon_due_since.take() {
                if self.step > due {
                    self.counters.reconciliations_delayed += 1;
                }
                self.recon_last_due = Some(due);
                self.reconcile()?;
                self.recon_last_due = None;
            }
        }
        if self.expect.corruption.is_some() && self.counters.journal_flips_detected == 0 {
            // The flip came at the last step: the next start must refuse.
            self.restart()?;
        }
        if self.expect.corruption.is_some() {
            self.counters.thefts_unreconciled += self.world.thefts.len() as u64;
            return Ok(());
        }
        self.finish()
    }

    // ------------------------------------------------------------------ trace and failures

    fn note(&mut self, line: String) {
        if self.sim_options.verbose {
            eprintln!("[{}] {line}", self.step);
        }
        if self.trace.len() >= TRACE_STEPS_MAX {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    fn fail(&self, message: String) -> Failure {
        Failure {
            step: self.step,
            message,
            trace: self.trace.iter().cloned().collect(),
        }
    }

    // ------------------------------------------------------------------ lifetimes

    /// Starts a process lifetime: recovery from the files as they are, then every check.
    fn restart(&mut self) -> Checked {
        // A restarted machine's clock may be behind the last one's.
        if self.step > 0 && self.rng.chance(200) {
            let back = self.rng.range(1, 600_000_000_000) as u64;
            self.clock.set(self.clock.get() - back);
            self.counters.clock_jumps_back += 1;
            self.note(format!("clock set back {} ms at restart", back / 1_000_000));
        }
        let storage = SimStorage::open(&journal_dir(&self.dir), &self.disk)
            .map_err(|e| self.fail(format!("open storage: {e}")))?;
        let mut clock = self.clock.clone();
        match recover_with(storage, &self.options, &self.config, &mut clock) {
            Ok((exchange, writer, report)) => {
                if let Some(span) = self.expect.corruption {
                    return Err(self.fail(format!(
                        "recovery accepted a journal with a flipped bit at segment {} offset {} \
                         (last seq {})",
                        span.segment, span.offset, report.last_seq
                    )));
                }
                let expected_tail = self.expect.tail_cut;
                let recovered = Sequencer::new(
                    exchange,
                    writer,
                    Box::new(self.clock.clone()),
                    &report,
                    self.options.clone(),
                );
                self.after_recovery(&report, recovered.exchange())?;
                if expected_tail && report.tail_cut.is_some() {
                    self.counters.tails_cut += 1;
                }
                self.engine = Some(recovered);
                if self.crashed {
                    self.counters.recoveries += 1;
                } else if self.step > 0 {
                    self.counters.restarts_clean += 1;
                }
                self.crashed = false;
                Ok(())
            }
            Err(error) => match self.expect.corruption {
                Some(span) => self.corruption_reported(span, &error),
                None => Err(self.fail(format!("recovery failed: {error}"))),
            },
        }
    }

    /// Every check a recovery must pass.
    fn after_recovery(
        &mut self,
        report: &engine::runtime::RecoveryReport,
        exchange: &engine::Exchange,
    ) -> Checked {
        if report.last_seq != self.expect.seq_last {
            return Err(self.fail(format!(
                "recovered to seq {}, expected {} (acked up to {:?})",
                report.last_seq,
                self.expect.seq_last,
                self.acked.keys().next_back()
            )));
        }
        if self.expect.tail_cut && report.tail_cut.is_none() {
            // Only a tear that left nothing but zeros has nothing to cut; the seq check holds.
            self.note("tear left only zeros: nothing to cut".into());
        }
        if let Some(path) = self.expect.snapshot_warning.take() {
            let name = path.display().to_string();
            if !report.warnings.iter().any(|w| w.contains(&name)) {
                return Err(self.fail(format!(
                    "a damaged snapshot {name} was not reported: warnings {:?}",
                    report.warnings
                )));
            }
            self.counters.snapshot_damage_detected += 1;
        }
        self.expect.tail_cut = false;
        let read = read_data_dir(&self.dir)
            .map_err(|e| self.fail(format!("read the recovered journal: {e}")))?;
        self.audit_journal(&read)?;
        let (fresh, seq) = reexecute(&read, None)
            .map_err(|e| self.fail(format!("fresh re-execution of the journal: {e}")))?;
        let fresh_hash = state_hash(&fresh.snapshot());
        if seq != report.last_seq || fresh_hash != report.state_hash {
            return Err(self.fail(format!(
                "recovered state {} at seq {} (snapshot {:?}) differs from a fresh re-execution \
                 of the journal: {} at seq {seq}",
                hex(&report.state_hash),
                report.last_seq,
                report.snapshot_seq,
                hex(&fresh_hash)
            )));
        }
        let live_hash = state_hash(&exchange.snapshot());
        if live_hash != report.state_hash {
            return Err(self.fail("the recovered exchange differs from its report".into()));
        }
        exchange
            .check_invariants()
            .map_err(|v| self.fail(format!("invariant after recovery: {v:?}")))?;
        self.digest.update(&report.last_seq.to_le_bytes());
        self.digest.update(&report.state_hash);
        self.note(format!(
            "recovered: seq {}, snapshot {:?}, replayed {}, tail cut {}, warnings {}",
            report.last_seq,
            report.snapshot_seq,
            report.replayed,
            report.tail_cut.is_some(),
            report.warnings.len()
        ));
        Ok(())
    }

    /// Every acknowledged command is in the journal with the same events; and the world learns
    /// what the journal holds beyond what it was told (committed, never published).
    fn audit_journal(&mut self, read: &JournalRead) -> Checked {
        let mut seen = 0u64;
        for batch in &read.batches {
            let mut records = batch.records.iter();
            while let Some(record) = records.next() {
                if record.kind != RecordKind::Command {
                    continue;
                }
                let events = records.next().filter(|r| r.kind == RecordKind::Events);
                let Some(events) = events else {
                    return Err(self.fail(format!("seq {}: no events record", record.seq)));
                };
                seen = record.seq;
                if let Some((command, acked_events)) = self.acked.get(&record.seq) {
                    let mut encoded = Vec::new();
                    encode_into(command, &mut encoded);
                    if encoded != record.payload {
                        return Err(self.fail(format!(
                            "acknowledged seq {} journaled with another command",
                            record.seq
                        )));
                    }
                    encoded.clear();
                    encode_into(&acked_events.as_slice(), &mut encoded);
                    if encoded != events.payload {
                        return Err(self.fail(format!(
                            "acknowledged seq {} journaled with other events than published",
                            record.seq
                        )));
                    }
                }
                if record.seq > self.world.seq {
                    let events: Vec<ExchangeEvent> = decode(&events.payload)
                        .ok_or_else(|| self.fail("events do not decode".into()))?;
                    self.world.absorb(record.seq, &events);
                }
            }
        }
        if let Some((&seq, _)) = self.acked.range(seen + 1..).next() {
            self.counters.acked_lost += 1;
            return Err(self.fail(format!(
                "acknowledged seq {seq} is missing from the journal (it ends at {seen})"
            )));
        }
        Ok(())
    }

    /// The process dies: nothing in memory survives, the files stay as they are.
    fn crash(&mut self, why: &str) {
        let engine = self.engine.take().expect("crash of a running engine");
        self.expect.seq_last = engine.seq();
        drop(engine);
        let unpublished: usize = self.outbound.iter().map(|p| p.acks.len()).sum();
        self.counters.acks_unpublished += unpublished as u64;
        self.outbound.clear();
        self.inbound.clear();
        self.submitted.clear();
        self.counters.crashes += 1;
        self.crashed = true;
        self.note(format!(
            "CRASH ({why}) at seq {}: {unpublished} committed acks never published",
            self.expect.seq_last
        ));
    }

    // ------------------------------------------------------------------ the engine

    fn submit(&mut self, command: ExchangeCommand) {
        if self.inbound.len() >= self.inbound_max {
            // `Busy`: the producer keeps it and tries again; nothing is dropped silently.
            self.counters.busy += 1;
            self.retry.push_back(command);
            return;
        }
        let token = self.token_next;
        self.token_next += 1;
        self.submitted.insert(token, command);
        self.inbound.push_back(Request { token, command });
    }

    /// The engine thread's turn: one batch, unless the consumer is too far behind (the real
    /// engine then waits on its outbound channel).
    fn engine_step(&mut self, faults: bool) -> Checked {
        if self.inbound.is_empty() || self.outbound.len() >= self.outbound_max {
            return Ok(());
        }
        let n = self
            .inbound
            .len()
            .min(1 + self.rng.below(self.batch_max as u64) as usize);
        let batch: Vec<Request> = self.inbound.drain(..n).collect();
        let engine = self.engine.as_mut().expect("running");
        let seq_before = engine.seq();
        let before = engine.journal_position();
        match engine.process(&batch) {
            Ok(published) => {
                let after = engine.journal_position();
                self.counters.commands += batch.len() as u64;
                self.counters.batches += 1;
                if faults && self.rng.chance(self.faults.crash_mid_batch) {
                    if self.sim_options.sabotage == Sabotage::PublishBeforeCommit {
                        self.deliver(&published);
                    }
                    return self.crash_mid_batch(seq_before, before, after);
                }
                self.outbound.push_back(published);
                Ok(())
            }
            Err(error) => {
                if !self.disk.take_hit() {
                    return Err(self.fail(format!("journal write failed: {error}")));
                }
                // A full disk: the batch never reached the journal and nothing of it is
                // published; the process stops and is restarted once space is freed.
                self.counters.disk_full += 1;
                self.disk.set_full(false);
                self.crash("disk full at segment rotation");
                self.expect.seq_last = seq_before;
                Ok(())
            }
        }
    }

    /// A kill in the middle of copying the batch just processed: the copy stored some of its
    /// bytes (any of the body, in any order) and not its commit record. Nothing was published.
    fn crash_mid_batch(
        &mut self,
        seq_before: u64,
        before: engine::journal::Position,
        after: engine::journal::Position,
    ) -> Checked {
        self.crash("mid-batch");
        self.counters.crashes_mid_batch += 1;
        self.expect.seq_last = seq_before;
        self.expect.tail_cut = true;
        let start = if after.index == before.index {
            before.offset
        } else {
            engine::journal::format::SEGMENT_HEADER_BYTES
        };
        let end = after.offset;
        let path = segment_path(&journal_dir(&self.dir), after.index);
        // The commit record is the last record: at least its last 8 bytes are lost.
        let cut = start + self.rng.below((end - 8 - start) as u64 + 1) as usize;
        let result = disk::zero_range(&path, cut, end - cut).and_then(|()| {
            // Stores of one copy land in any order: some body bytes before the cut are lost too.
            for _ in 0..self.rng.below(3) {
                if cut > start {
                    let at = start + self.rng.below((cut - start) as u64) as usize;
                    let len = (8 + self.rng.below(64) as usize).min(cut - at);
                    disk::zero_range(&path, at, len)?;
                }
            }
            Ok(())
        });
        result.map_err(|e| self.fail(format!("tear: {e}")))?;
        self.note(format!(
            "tore the batch after seq {seq_before}: segment {} bytes {start}..{end} cut at {cut}",
            after.index
        ));
        Ok(())
    }

    /// The consumer of the outbound queue: slow, sometimes stuck for a while, sometimes quick.
    fn consume(&mut self, all: bool) {
        let n = if all {
            usize::MAX
        } else {
            self.rng.below(3) as usize
        };
        for _ in 0..n {
            let Some(published) = self.outbound.pop_front() else {
                break;
            };
            self.deliver(&published);
        }
    }

    fn deliver(&mut self, published: &Published) {
        for ack in &published.acks {
            let command = self
                .submitted
                .remove(&ack.token)
                .expect("an ack for a submitted command");
            let mut events = published.events_of(ack).to_vec();
            let mut encoded = Vec::new();
            encode_into(&events.as_slice(), &mut encoded);
            self.digest.update(&ack.seq.to_le_bytes());
            self.digest.update(&encoded);
            if ack.seq > self.world.seq {
                self.world.absorb(ack.seq, &events);
            }
            self.note(format!("ack seq {}: {command:?} -> {events:?}", ack.seq));
            self.counters.acks += 1;
            if self.sim_options.sabotage == Sabotage::PublishUnjournaledEvent {
                events.push(ExchangeEvent::KeyChanged {
                    operator: 0,
                    change: engine::audit::KeyChange::Revoked { key: 0 },
                });
            }
            self.acked.insert(ack.seq, (command, events));
        }
    }

    fn check_invariants(&mut self) -> Checked {
        let Some(engine) = &self.engine else {
            return Ok(());
        };
        if let Err(violation) = engine.exchange().check_invariants() {
            self.counters.invariant_violations += 1;
            return Err(self.fail(format!(
                "invariant broken at seq {}: {violation:?}",
                engine.seq()
            )));
        }
        Ok(())
    }

    /// Until every submitted command is journaled and every published batch consumed.
    fn drain(&mut self) -> Checked {
        loop {
            if self.engine.is_none() {
                self.restart()?;
            }
            if self.retry.is_empty() && self.inbound.is_empty() && self.outbound.is_empty() {
                return Ok(());
            }
            while let Some(command) = self.retry.pop_front() {
                if self.inbound.len() >= self.inbound_max {
                    self.retry.push_front(command);
                    break;
                }
                self.submit(command);
            }
            self.engine_step(false)?;
            self.consume(true);
        }
    }

    // ------------------------------------------------------------------ the workload

    fn setup(&mut self) -> Checked {
        let customers = self.rng.range(3, 16);
        let houses = self.rng.range(1, 2);
        for _ in 0..customers {
            self.submit_drained(ExchangeCommand::CreateAccount {
                pool: Pool::Customer,
            })?;
        }
        for _ in 0..houses {
            self.submit_drained(ExchangeCommand::CreateAccount { pool: Pool::House })?;
        }
        self.submit_drained(ExchangeCommand::SetHousePolicy {
            instrument: INSTRUMENT_DISCLOSED,
            policy: HousePolicy::Disclosed,
        })?;
        let accounts: Vec<_> = self.world.accounts.iter().map(|(a, _)| *a).collect();
        for account in accounts {
            for (asset, units) in [
                (JPY, 200_000_000),
                (0, 500_000_000),
                (1, 200_000_000_000),
                (2, 20_000_000_000_000),
            ] {
                let tx = *blake3::hash(
                    &[account.to_le_bytes(), u32::from(asset).to_le_bytes()].concat(),
                )
                .as_bytes();
                self.submit_drained(ExchangeCommand::Deposit {
                    account,
                    asset,
                    amount_units: units,
                    tx,
                })?;
            }
            for asset in COINS {
                let address = Address::parse(&format!("dep-{account}-{asset}")).expect("valid");
                self.submit_drained(ExchangeCommand::AssignDepositAddress {
                    account,
                    asset,
                    address,
                })?;
            }
        }
        // Most coins to cold, as the hot-wallet cap asks.
        for pool in [Pool::Customer, Pool::House] {
            for asset in COINS {
                let hot = self.world.wallet((pool, asset, Location::Hot));
                if hot > 0 {
                    self.submit_drained(ExchangeCommand::CustodyTransfer {
                        pool,
                        asset,
                        source: Location::Hot,
                        target: Location::Cold,
                        amount_units: hot * 96 / 100,
                    })?;
                }
            }
        }
        Ok(())
    }

    fn submit_drained(&mut self, command: ExchangeCommand) -> Checked {
        self.submit(command);
        self.drain()
    }

    fn workload(&mut self) {
        let retries = self.retry.len();
        for _ in 0..retries {
            let command = self.retry.pop_front().expect("counted");
            self.counters.retried += 1;
            self.submit(command);
        }
        let burst = self.rng.below(self.burst_max + 1);
        for _ in 0..burst {
            let custody_in_flight = self.custody_in_flight();
            let command = Workload {
                rng: &mut self.rng,
                world: &self.world,
                markets: &self.markets,
                now_ns: self.clock.get(),
                counter: &mut self.counter,
                custody_in_flight,
                theft_pending: !self.world.thefts.is_empty(),
            }
            .next();
            if let Some(command) = command {
                self.submit(command);
            }
        }
    }

    /// A custody move or a broadcast submitted and not yet seen (or retried after `Busy`).
    fn custody_in_flight(&self) -> bool {
        self.submitted.values().chain(self.retry.iter()).any(|c| {
            matches!(
                c,
                ExchangeCommand::CustodyTransfer { .. }
                    | ExchangeCommand::WithdrawalBroadcast { .. }
                    | ExchangeCommand::FeeSweep { .. }
            )
        })
    }

    fn advance_clock(&mut self) {
        let mut now = self.clock.get() + self.rng.range(1, 200_000_000) as u64;
        if self.rng.chance(3) {
            // Hours or days pass: cooldowns end, the UTC day turns.
            now += self.rng.range(1, 30) as u64 * 3_600_000_000_000;
        }
        if self.rng.chance(self.faults.clock_back) {
            let back = self.rng.range(1, 3 * 3_600) as u64 * 1_000_000_000;
            now -= back;
            self.counters.clock_jumps_back += 1;
            self.note(format!("clock jumps back {} s", back / 1_000_000_000));
        }
        self.clock.set(now);
    }

    // ------------------------------------------------------------------ faults

    fn between_steps(&mut self) -> Checked {
        if self.faults.journal_flip_step == Some(self.step) {
            return self.flip_journal_bit();
        }
        if self.rng.chance(self.faults.disk_full) && !self.disk.is_full() {
            self.disk.set_full(true);
            self.note("disk full from now until a segment creation fails".into());
        }
        if self.rng.chance(self.faults.theft) && !self.custody_in_flight() {
            self.theft();
        }
        if self.rng.chance(self.faults.crash) {
            self.crash("between steps");
            self.counters.crashes_between_steps += 1;
            if self.rng.chance(self.faults.snapshot_flip * 100) {
                self.flip_snapshot_bit()?;
            }
            if self.rng.chance(100) {
                self.rotation_debris()?;
            }
            return Ok(());
        }
        self.snapshot_step()
    }

    /// A snapshot when one is due, sometimes with a crash in the middle of writing it.
    fn snapshot_step(&mut self) -> Checked {
        let engine = self.engine.as_mut().expect("running");
        if !engine.snapshot_due() {
            return Ok(());
        }
        let seq = engine.seq();
        engine
            .snapshot()
            .map_err(|e| self.fail(format!("snapshot: {e}")))?;
        self.counters.snapshots += 1;
        if !self.rng.chance(self.faults.snapshot_crash) {
            return Ok(());
        }
        let dir = self.dir.join("snapshots");
        let newest = disk::snapshots(&dir)
            .map_err(|e| self.fail(format!("list snapshots: {e}")))?
            .into_iter()
            .next()
            .expect("just written");
        let len = fs::metadata(&newest).map(|m| m.len()).unwrap_or(0) as usize;
        let keep = self.rng.below(len as u64) as usize;
        let result = if self.rng.chance(500) {
            // Killed before the rename: a partial temporary file, which readers never look at.
            self.counters.snapshot_partial_tmp += 1;
            let tmp = newest.with_extension("ksn.tmp");
            fs::rename(&newest, &tmp).and_then(|()| disk::truncate(&tmp, keep))
        } else {
            // A torn snapshot file (a file system that does not order data before the rename).
            self.counters.snapshot_torn += 1;
            self.expect.snapshot_warning = Some(newest.clone());
            disk::truncate(&newest, keep)
        };
        result.map_err(|e| self.fail(format!("mangle snapshot: {e}")))?;
        self.counters.snapshot_crashes += 1;
        self.crash(&format!("while writing the snapshot of seq {seq}"));
        Ok(())
    }

    /// A kill while the next segment was being made: an empty file (before `fallocate`), a file of
    /// zeros (before its header), or a header and nothing else. It holds nothing committed:
    /// recovery must start as if it were not there, and the next rotation must still work.
    fn rotation_debris(&mut self) -> Checked {
        let dir = journal_dir(&self.dir);
        let last = engine::journal::storage::segment_indices(&dir)
            .map_err(|e| self.fail(format!("{e}")))?
            .last()
            .copied()
            .unwrap_or(0);
        let next = segment_path(&dir, last + 1);
        let kind = self.rng.below(3);
        let result = match kind {
            0 => fs::write(&next, []),
            1 => fs::write(&next, vec![0u8; SEGMENT_BYTES]),
            _ => fs::read(segment_path(&dir, last)).and_then(|bytes| {
                let mut made = vec![0u8; SEGMENT_BYTES];
                made[..64].copy_from_slice(&bytes[..64]);
                made[16..24].copy_from_slice(&(last + 1).to_le_bytes());
                fs::write(&next, made)
            }),
        };
        result.map_err(|e| self.fail(format!("rotation debris: {e}")))?;
        self.counters.rotation_debris += 1;
        self.note(format!(
            "left segment {} half made ({})",
            last + 1,
            ["empty", "zeros", "header only"][kind as usize]
        ));
        Ok(())
    }

    /// Silent corruption of the newest snapshot: a bit flipped. Recovery must notice, say which
    /// file, and fall back to an older snapshot or the journal alone.
    fn flip_snapshot_bit(&mut self) -> Checked {
        let dir = self.dir.join("snapshots");
        let snapshots = disk::snapshots(&dir).map_err(|e| self.fail(format!("{e}")))?;
        let Some(newest) = snapshots.first().cloned() else {
            return Ok(());
        };
        let len = fs::metadata(&newest).map(|m| m.len()).unwrap_or(0);
        if len == 0 {
            return Ok(());
        }
        // Half the flips hit the 64-byte header, whose every field matters.
        let at = if self.rng.chance(500) {
            self.rng.below(len.min(64))
        } else {
            self.rng.below(len)
        } as usize;
        let bit = self.rng.below(8) as u8;
        disk::flip_bit(&newest, at, bit).map_err(|e| self.fail(format!("{e}")))?;
        self.counters.snapshot_flips += 1;
        self.expect.snapshot_warning = Some(newest.clone());
        self.note(format!(
            "flipped bit {bit} of byte {at} of {}",
            newest.display()
        ));
        Ok(())
    }

    /// Silent corruption in the journal: one bit of a record that a later commit follows. The
    /// engine must refuse to start, naming the segment and the record's offset; so must replay.
    fn flip_journal_bit(&mut self) -> Checked {
        if self.engine.is_some() {
            self.crash("before a bit flip");
        }
        let spans = disk::record_spans(&journal_dir(&self.dir))
            .map_err(|e| self.fail(format!("walk the journal: {e}")))?;
        // Only records before the last commit have a commit after them.
        let last_commit = spans.iter().rposition(disk::is_commit);
        let Some(last_commit) = last_commit.filter(|&i| i > 1) else {
            return Ok(());
        };
        let span = spans[self.rng.below(last_commit as u64) as usize];
        let at = span.offset + self.rng.below(span.len as u64) as usize;
        let bit = self.rng.below(8) as u8;
        let path = segment_path(&journal_dir(&self.dir), span.segment);
        disk::flip_bit(&path, at, bit).map_err(|e| self.fail(format!("flip: {e}")))?;
        self.counters.journal_flips += 1;
        self.expect.corruption = Some(span);
        self.note(format!(
            "flipped bit {bit} at byte {at} of segment {} (record at {}, kind {})",
            span.segment, span.offset, span.kind
        ));
        Ok(())
    }

    /// Recovery refused a corrupted journal: it must name the right place, and so must replay.
    fn corruption_reported(&mut self, span: RecordSpan, error: &StartError) -> Checked {
        let file = segment_path(&journal_dir(&self.dir), span.segment)
            .display()
            .to_string();
        let named = match error {
            StartError::Journal(JournalError::Corrupt {
                segment, offset, ..
            }) => *segment == file && *offset == span.offset,
            _ => false,
        };
        if !named {
            return Err(self.fail(format!(
                "bit flip in the record at {file} offset {}: recovery said {error}",
                span.offset
            )));
        }
        let verified = crate::verify::verify(&self.dir, &crate::verify::VerifyOptions::default());
        let located = match &verified {
            Err(failure) => {
                failure
                    .location
                    .segment
                    .as_deref()
                    .is_some_and(|s| s.ends_with(&segment_file(&file)))
                    && failure.location.offset == Some(span.offset)
            }
            Ok(_) => false,
        };
        if !located {
            return Err(self.fail(format!(
                "bit flip in the record at {file} offset {}: replay verify said {verified:?}",
                span.offset
            )));
        }
        self.counters.journal_flips_detected += 1;
        self.digest.update(&(span.offset as u64).to_le_bytes());
        self.note(format!(
            "corruption reported at {file} offset {}",
            span.offset
        ));
        Ok(())
    }

    /// A thief drains part of a hot wallet on chain; no command tells the exchange.
    fn theft(&mut self) {
        let pool = if self.rng.chance(700) {
            Pool::Customer
        } else {
            Pool::House
        };
        let Some(&asset) = self.rng.pick(&COINS) else {
            return;
        };
        let wallet = (pool, asset, Location::Hot);
        let balance = self.world.wallet(wallet);
        if balance <= 0 {
            return;
        }
        let amount_units = self.rng.range(1, balance);
        *self.world.wallets.get_mut(&wallet).expect("positive") -= amount_units;
        self.world.thefts.push(Theft {
            wallet,
            amount_units,
            step: self.step,
        });
        self.counters.thefts += 1;
        self.note(format!("THEFT of {amount_units} from {wallet:?}"));
    }

    // ------------------------------------------------------------------ reconciliation

    /// The chain adapter reports every wallet's observed balance, once everything submitted is
    /// journaled and seen (no observation between a custody move and the chain move it stands
    /// for). Every wallet must reconcile exactly, except one a thief drained: that one must be
    /// found short by exactly what was taken, an incident opened and its withdrawals halted.
    fn reconcile(&mut self) -> Checked {
        // No full disk in the middle of it: a lost observation is not what is under test here.
        let full = self.disk.is_full();
        self.disk.set_full(false);
        let result = self.reconcile_all();
        self.disk.set_full(full);
        result
    }

    fn reconcile_all(&mut self) -> Checked {
        self.drain()?;
        let mut wallets = Vec::new();
        for pool in [Pool::Customer, Pool::House] {
            for asset in [0, 1, 2, JPY] {
                wallets.push((pool, asset, self.world.operating[asset as usize]));
                if asset != JPY {
                    wallets.push((pool, asset, Location::Cold));
                }
            }
        }
        let incidents_before = self.world.incidents;
        self.world.shortfalls.clear();
        self.world.surpluses.clear();
        for wallet in wallets {
            let (pool, asset, location) = wallet;
            self.submit(ExchangeCommand::WalletObserved {
                pool,
                asset,
                location,
                observed_units: self.world.wallet(wallet),
            });
            self.drain()?;
        }
        self.counters.reconciliations += 1;
        let mut stolen: BTreeMap<_, i64> = BTreeMap::new();
        let thefts = self.world.thefts.len() as u64;
        let mut detection_steps_max = 0;
        for theft in self.world.thefts.drain(..) {
            *stolen.entry(theft.wallet).or_default() += theft.amount_units;
            detection_steps_max = detection_steps_max.max(self.step - theft.step);
        }
        // Found at the first reconciliation after it: within one interval of the theft, plus
        // the steps this reconciliation waited for a crashed process to come back.
        let waited = self.step - self.recon_last_due.unwrap_or(self.step);
        if detection_steps_max > self.recon_interval + waited {
            return Err(self.fail(format!(
                "a theft {detection_steps_max} steps old was found only now: the interval is {} \
                 steps (and this reconciliation waited {waited})",
                self.recon_interval
            )));
        }
        self.counters.theft_detection_steps_max = self
            .counters
            .theft_detection_steps_max
            .max(detection_steps_max);
        let found: BTreeMap<_, i64> = self.world.shortfalls.iter().copied().collect();
        if !self.world.surpluses.is_empty() || found != stolen {
            return Err(self.fail(format!(
                "reconciliation found shortfalls {found:?} and surpluses {:?}; the thief took {stolen:?}",
                self.world.surpluses
            )));
        }
        let incidents = self.world.incidents - incidents_before;
        if incidents != stolen.len() as u64 {
            return Err(self.fail(format!(
                "{incidents} incidents opened for {} thefts",
                stolen.len()
            )));
        }
        for (pool, asset, _) in stolen.keys() {
            let halted = self.world.halts.get(asset).is_some_and(|h| h.withdrawals);
            if !halted {
                return Err(self.fail(format!(
                    "theft from {pool:?} asset {asset} detected but withdrawals not halted"
                )));
            }
        }
        self.counters.thefts_detected += thefts;
        Ok(())
    }

    // ------------------------------------------------------------------ the end

    /// A clean stop, one more recovery, and replay's verify over the whole journal.
    fn finish(&mut self) -> Checked {
        if self.engine.is_none() {
            self.restart()?;
        }
        self.drain()?;
        // The last reconciliation: one still due (the process was down at its step) is it.
        self.recon_last_due = self.recon_due_since.take();
        self.reconcile()?;
        self.recon_last_due = None;
        let mut engine = self.engine.take().expect("running");
        let seq = engine
            .shutdown()
            .map_err(|e| self.fail(format!("clean shutdown: {e}")))?;
        let final_hash = state_hash(&engine.exchange().snapshot());
        drop(engine);
        self.expect.seq_last = seq;
        self.restart()?;
        self.engine = None;
        let summary = crate::verify::verify(&self.dir, &crate::verify::VerifyOptions::default())
            .map_err(|failure| self.fail(format!("replay verify: {failure}")))?;
        if summary.seq_last != seq || summary.state_hash != hex(&final_hash) {
            return Err(self.fail(format!(
                "replay verify ends at seq {} with state {}, the engine at seq {seq} with {}",
                summary.seq_last,
                summary.state_hash,
                hex(&final_hash)
            )));
        }
        self.counters.verified += 1;
        self.digest.update(&final_hash);
        let mut line = String::new();
        let _ = write!(line, "verified: seq {seq}, state {}", hex(&final_hash));
        self.note(line);
        Ok(())
    }
}

fn segment_file(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// The default configuration, with capacities for a simulation and every invariant checked after
/// every command.
pub fn sim_config() -> ExchangeConfig {
    let mut config = engine::defaults::config();
    config.engine.orders_max = 1 << 12;
    config.engine.levels_per_side_max = 1 << 10;
    config.engine.stops_per_side_max = 1 << 9;
    config.engine.accounts_max = 64;
    config.engine.orders_open_per_account_max = 1 << 9;
    config.engine.check_invariants = true;
    config.withdrawals_pending_max = 1 << 10;
    config
}
