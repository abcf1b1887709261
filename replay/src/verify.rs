//! `verify`: everything an auditor can check from the journal files alone, stopping at the first
//! failure and saying exactly where it is.
//!
//! Batch by batch, in journal order: every record's CRC32C, the segment headers, the hash chain at
//! the batch's commit and the sequence without gaps (the engine's own streaming reader, read-only,
//! on a second thread: `stream.rs`); then for every command of the batch, in sequence: the batch's
//! shape (command then its events, one timestamp), timestamps that never go backwards,
//! re-execution through the engine's state machine with byte-identical events, every fill with a
//! house side against the instrument's house policy in force (read from the journaled events,
//! independently of re-execution), the house side of every settlement against the pools of the two
//! accounts, and every ledger and book invariant. The failure reported is the first in journal
//! order: a damaged record is reported after every batch before it verified. A torn tail is a
//! failure unless allowed.

use std::fmt;
use std::path::Path;

use engine::journal::format::{decode, Genesis};
use engine::journal::{JournalEnd, JournalError, JournalRead, TailCut};
use engine::snapshot::hex;
use engine::{BookViolation, Event, ExchangeEvent, HousePolicy, HouseSide, InstrumentId};
use ledger::{Ledger, Pool, Violation};
use serde::Serialize;

use crate::error::ReplayError;
use crate::point::format_ts;
use crate::progress::{Progress, Reporter};
use crate::stream::{JournalStart, JournalStream};
use crate::walk::{pairs, segment_name, Divergence, Pair, Records, Replayer, StepError, Structure};

/// How often the ledger and book invariants are checked. Each check is O(accounts × assets +
/// open orders), so on a long journal with many accounts it dominates the cost of verification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InvariantCheck {
    /// After every command: DESIGN.md's "at every sequence number". The default.
    #[default]
    EveryCommand,
    /// After the last command of every batch.
    EveryBatch,
    /// Once, after the last command.
    Final,
}

/// What to do with a torn tail (an incomplete last batch that was never acknowledged).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TornTail {
    /// A failure: the journal does not end on a commit. The default.
    #[default]
    Refuse,
    /// Verify everything before it and mention it in the summary (the engine cuts such a tail at
    /// its next start, and nothing in it was ever acknowledged).
    Allow,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    pub invariants: InvariantCheck,
    pub torn_tail: TornTail,
    pub progress: Progress,
}

/// What a verified journal holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifySummary {
    pub segments: Vec<String>,
    /// Every record: genesis, commands, events and commits.
    pub records: u64,
    /// Committed batches after the genesis batch.
    pub batches: u64,
    pub commands: u64,
    pub seq_first: Option<u64>,
    pub seq_last: u64,
    pub ts_ns_first: Option<u64>,
    pub ts_ns_last: Option<u64>,
    pub instruments: Vec<String>,
    pub assets: Vec<String>,
    pub accounts_customer: u64,
    pub accounts_house: u64,
    pub fills: u64,
    pub fills_house_side: u64,
    pub invariants: InvariantCheck,
    /// BLAKE3 of the canonical snapshot of the final state (the engine's state hash), hex.
    pub state_hash: String,
    /// The hash chain after the last commit, hex.
    pub chain: String,
    /// BLAKE3 of the genesis payload, hex: the same in every segment header.
    pub config_hash: String,
    /// A torn tail that was allowed, described.
    pub tail_cut: Option<String>,
}

/// Where a failure is: the segment file, the byte offset of the record, its sequence number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    pub segment: Option<String>,
    pub offset: Option<usize>,
    pub seq: Option<u64>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(seq) = self.seq {
            parts.push(format!("seq {seq}"));
        }
        if let Some(segment) = &self.segment {
            parts.push(segment.clone());
        }
        if let Some(offset) = self.offset {
            parts.push(format!("byte offset {offset}"));
        }
        if parts.is_empty() {
            return write!(f, "the journal");
        }
        write!(f, "{}", parts.join(", "))
    }
}

/// One thing that is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The engine's reader refused the journal: a bad checksum, a broken hash chain, a gap in the
    /// sequence, a bad segment header, an I/O error.
    Journal(JournalError),
    NoJournal(String),
    /// The last batch is incomplete.
    TornTail(TailCut),
    /// The genesis configuration does not build an exchange.
    Genesis(String),
    Structure(Structure),
    TimeBackwards {
        ts_ns: u64,
        ts_ns_previous: u64,
    },
    CommandUndecodable,
    EventsUndecodable,
    /// Re-execution produced other events than the journaled ones.
    Diverged(Divergence),
    /// A journaled fill with a house side on an instrument whose policy forbids house trading.
    Internalization {
        instrument: InstrumentId,
        symbol: String,
        house: HouseSide,
    },
    /// A settlement's house side does not match the pools of the fill's maker and taker.
    HouseSideMislabelled {
        instrument: InstrumentId,
        recorded: HouseSide,
        from_accounts: HouseSide,
    },
    Ledger(Violation),
    /// Open orders and their reservations are not one to one.
    Reservations {
        reservations: usize,
        orders_open: usize,
    },
    Book(BookViolation),
}

impl Finding {
    /// A stable machine name, for `--json`.
    pub fn code(&self) -> &'static str {
        match self {
            Finding::Journal(JournalError::Corrupt { .. }) => "corrupt_record",
            Finding::Journal(JournalError::ChainBroken { .. }) => "chain_broken",
            Finding::Journal(JournalError::BadSegment { .. }) => "bad_segment",
            Finding::Journal(JournalError::Io(_)) => "io",
            Finding::Journal(JournalError::Empty) | Finding::NoJournal(_) => "no_journal",
            Finding::TornTail(_) => "torn_tail",
            Finding::Genesis(_) => "genesis",
            Finding::Structure(_) => "batch_structure",
            Finding::TimeBackwards { .. } => "time_backwards",
            Finding::CommandUndecodable => "command_undecodable",
            Finding::EventsUndecodable => "events_undecodable",
            Finding::Diverged(_) => "divergence",
            Finding::Internalization { .. } => "internalization",
            Finding::HouseSideMislabelled { .. } => "house_side_mislabelled",
            Finding::Ledger(_) => "ledger_invariant",
            Finding::Book(_) => "book_invariant",
            Finding::Reservations { .. } => "reservations",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Journal(e) => write!(f, "{e}"),
            Finding::NoJournal(dir) => write!(f, "no journal segments in {dir}"),
            Finding::TornTail(cut) => write!(
                f,
                "the journal ends in a torn batch ({cut}); nothing in it was acknowledged \
                 (--allow-torn-tail accepts it)"
            ),
            Finding::Genesis(e) => write!(f, "the genesis configuration is invalid: {e}"),
            Finding::Structure(s) => write!(f, "malformed batch: {s}"),
            Finding::TimeBackwards {
                ts_ns,
                ts_ns_previous,
            } => write!(
                f,
                "time goes backwards: stamped {}, after a command stamped {}",
                format_ts(*ts_ns),
                format_ts(*ts_ns_previous)
            ),
            Finding::CommandUndecodable => write!(f, "the command payload does not decode"),
            Finding::EventsUndecodable => write!(f, "the events payload does not decode"),
            Finding::Diverged(d) => write!(f, "re-execution diverges from the journal: {d}"),
            Finding::Internalization {
                instrument,
                symbol,
                house,
            } => write!(
                f,
                "internalization: a fill with house side {house:?} on {symbol} (instrument \
                 {instrument}), whose house policy forbids house trading"
            ),
            Finding::HouseSideMislabelled {
                instrument,
                recorded,
                from_accounts,
            } => write!(
                f,
                "a settlement on instrument {instrument} records house side {recorded:?}, but \
                 the fill's accounts make it {from_accounts:?}"
            ),
            Finding::Ledger(v) => write!(f, "ledger invariant broken: {v:?}"),
            Finding::Book(v) => write!(f, "book invariant broken: {v:?}"),
            Finding::Reservations {
                reservations,
                orders_open,
            } => write!(
                f,
                "{reservations} reservations for {orders_open} open orders: they must be one to one"
            ),
        }
    }
}

/// The first failure: where, and everything found wrong there (at least one finding; the first
/// is the primary one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyFailure {
    pub location: Location,
    pub findings: Vec<Finding>,
    /// Commands verified before the failing one.
    pub commands_verified: u64,
}

impl VerifyFailure {
    fn new(location: Location, findings: Vec<Finding>, commands_verified: u64) -> VerifyFailure {
        assert!(!findings.is_empty(), "a failure without a finding");
        VerifyFailure {
            location,
            findings,
            commands_verified,
        }
    }

    /// True when any finding has this code.
    pub fn has(&self, code: &str) -> bool {
        self.findings.iter().any(|f| f.code() == code)
    }
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "verification failed at {}", self.location)?;
        for finding in &self.findings {
            write!(f, "\n  {}: {finding}", finding.code())?;
        }
        Ok(())
    }
}

impl std::error::Error for VerifyFailure {}

/// Verifies the journal of a data folder (or a folder of segments) as a stream: a reader thread
/// checks checksums, chain and sequence batch by batch while this one re-executes, and memory
/// holds a few batches, not the journal. Quiet unless `options.progress` asks otherwise.
pub fn verify(dir: &Path, options: &VerifyOptions) -> Result<VerifySummary, VerifyFailure> {
    let mut reporter = Reporter::new(options.progress);
    reporter.phase("reading the genesis batch");
    let mut stream = JournalStream::open(dir).map_err(|e| open_failure(e, 0))?;
    let summary = verify_stream(&mut stream, options, &mut reporter);
    reporter.finish();
    summary
}

/// Verifies a journal already read (and so already checked for checksums and chain) by the
/// engine's reader.
pub fn verify_journal(
    read: &JournalRead,
    options: &VerifyOptions,
) -> Result<VerifySummary, VerifyFailure> {
    let mut reporter = Reporter::new(options.progress);
    let start = JournalStart {
        genesis: read.genesis.clone(),
        config_hash: read.config_hash,
        segments: read.segments.clone(),
    };
    let mut checker = Checker::new(&start, options)?;
    reporter.start(&start.segments, "re-executing");
    for batch in &read.batches {
        let records = batch.records.as_slice();
        checker.verify_batch(records, batch.segment, batch.offset, &mut reporter)?;
    }
    let summary = checker.finish(&read.journal_end(), options);
    reporter.finish();
    summary
}

fn verify_stream(
    stream: &mut JournalStream,
    options: &VerifyOptions,
    reporter: &mut Reporter,
) -> Result<VerifySummary, VerifyFailure> {
    let mut checker = Checker::new(stream.start(), options)?;
    reporter.start(&stream.start().segments, "re-executing");
    loop {
        match stream.next_batch() {
            Ok(Some(batch)) => {
                checker.verify_batch(batch, batch.segment, batch.offset, reporter)?
            }
            Ok(None) => break,
            Err(e) => return Err(open_failure(ReplayError::Journal(e), checker.commands)),
        }
    }
    let end = stream.end().expect("the stream ended");
    checker.finish(end, options)
}

/// A failure of the journal's reader, after `commands_verified` commands were verified.
fn open_failure(e: ReplayError, commands_verified: u64) -> VerifyFailure {
    let (location, finding) = match e {
        ReplayError::Journal(e) => (journal_location(&e), Finding::Journal(e)),
        ReplayError::NoJournal(dir) => (Location::default(), Finding::NoJournal(dir)),
        other => (
            Location::default(),
            Finding::Journal(JournalError::Io(other.to_string())),
        ),
    };
    VerifyFailure::new(location, vec![finding], commands_verified)
}

fn journal_location(e: &JournalError) -> Location {
    match e {
        JournalError::Corrupt {
            segment,
            offset,
            seq,
            ..
        } => Location {
            segment: Some(segment.clone()),
            offset: Some(*offset),
            seq: *seq,
        },
        JournalError::ChainBroken {
            segment,
            offset,
            seq,
        } => Location {
            segment: Some(segment.clone()),
            offset: Some(*offset),
            seq: Some(*seq),
        },
        JournalError::BadSegment { segment, .. } => Location {
            segment: Some(segment.clone()),
            ..Location::default()
        },
        JournalError::Io(_) | JournalError::Empty => Location::default(),
    }
}

/// The state of one verification run.
struct Checker {
    segments: Vec<String>,
    assets: Vec<String>,
    config_hash: [u8; 32],
    replayer: Replayer,
    /// The house policy in force per instrument, from genesis and the journaled
    /// `HousePolicySet` events.
    policies: Vec<HousePolicy>,
    symbols: Vec<String>,
    invariants_mode: InvariantCheck,
    /// The last command checked (segment, offset, seq), for invariant failures found after it.
    last: Option<(u64, usize, u64)>,
    ts_ns_first: Option<u64>,
    ts_ns_last: Option<u64>,
    seq_first: Option<u64>,
    commands: u64,
    fills: u64,
    fills_house_side: u64,
}

impl Checker {
    fn new(start: &JournalStart, options: &VerifyOptions) -> Result<Checker, VerifyFailure> {
        let Genesis { config } = &start.genesis;
        let replayer = Replayer::new(config).map_err(|e| {
            let location = Location {
                segment: start.segments.first().cloned(),
                offset: Some(engine::journal::format::SEGMENT_HEADER_BYTES),
                seq: Some(0),
            };
            VerifyFailure::new(location, vec![Finding::Genesis(e.to_string())], 0)
        })?;
        Ok(Checker {
            segments: start.segments.clone(),
            assets: config.assets.iter().map(|a| a.code.clone()).collect(),
            config_hash: start.config_hash,
            replayer,
            policies: config.instruments.iter().map(|i| i.house_policy).collect(),
            symbols: config
                .instruments
                .iter()
                .map(|i| i.symbol.clone())
                .collect(),
            invariants_mode: options.invariants,
            last: None,
            ts_ns_first: None,
            ts_ns_last: None,
            seq_first: None,
            commands: 0,
            fills: 0,
            fills_house_side: 0,
        })
    }

    fn location(&self, segment: u64, offset: usize, seq: u64) -> Location {
        Location {
            segment: Some(segment_name(&self.segments, segment)),
            offset: Some(offset),
            seq: Some(seq),
        }
    }

    /// Every command of a batch (its commit at `offset` of segment `segment`), then the full
    /// invariant check unless only the final state is checked.
    fn verify_batch<R: Records + ?Sized>(
        &mut self,
        records: &R,
        segment: u64,
        offset: usize,
        reporter: &mut Reporter,
    ) -> Result<(), VerifyFailure> {
        let before = self.commands;
        self.batch(records)?;
        reporter.advance(segment, offset, self.commands - before);
        if self.invariants_mode != InvariantCheck::Final {
            self.invariants()?;
        }
        Ok(())
    }

    /// After the last batch: the final invariant check when only that was asked, the tail, the
    /// summary.
    fn finish(
        self,
        end: &JournalEnd,
        options: &VerifyOptions,
    ) -> Result<VerifySummary, VerifyFailure> {
        if self.invariants_mode == InvariantCheck::Final {
            self.invariants()?;
        }
        if let Some(cut) = &end.tail_cut {
            if options.torn_tail == TornTail::Refuse {
                let location = Location {
                    segment: Some(cut.segment.clone()),
                    offset: Some(cut.offset),
                    seq: cut.seq,
                };
                let finding = Finding::TornTail(cut.clone());
                return Err(VerifyFailure::new(location, vec![finding], self.commands));
            }
        }
        Ok(self.summary(end))
    }

    fn batch<R: Records + ?Sized>(&mut self, records: &R) -> Result<(), VerifyFailure> {
        for pair in pairs(records) {
            match pair {
                Ok(pair) => self.command(&pair)?,
                Err((record, problem)) => {
                    let location = self.location(record.segment, record.offset, record.seq);
                    let finding = Finding::Structure(problem);
                    return Err(VerifyFailure::new(location, vec![finding], self.commands));
                }
            }
        }
        Ok(())
    }

    /// Every check of one command; all findings at the first failing command are reported.
    fn command(&mut self, pair: &Pair<'_>) -> Result<(), VerifyFailure> {
        let record = pair.command;
        let mut findings = Vec::new();
        if let Some(previous) = self.ts_ns_last.filter(|&p| record.ts_ns < p) {
            findings.push(Finding::TimeBackwards {
                ts_ns: record.ts_ns,
                ts_ns_previous: previous,
            });
        }
        let reexecuted = match self.replayer.apply(pair) {
            Ok(_) => true,
            Err(StepError::CommandUndecodable) => {
                findings.push(Finding::CommandUndecodable);
                false
            }
            Err(StepError::Diverged(d)) => {
                findings.push(Finding::Diverged(d));
                false
            }
        };
        // The house checks judge the journaled events. When re-execution reproduced them byte for
        // byte they are the re-executed ones, and decoding them again would only cost time.
        let journaled = if reexecuted {
            None
        } else {
            decode::<Vec<ExchangeEvent>>(pair.events.payload)
        };
        let events = match (&journaled, reexecuted) {
            (_, true) => Some(self.replayer.events()),
            (Some(events), false) => Some(events.as_slice()),
            (None, false) => None,
        };
        if let Some(events) = events {
            if reexecuted {
                count_fills(events, &mut self.fills, &mut self.fills_house_side);
            }
            let ledger = self.replayer.exchange().ledger();
            house_trading(
                &mut self.policies,
                &self.symbols,
                ledger,
                events,
                &mut findings,
            );
        }
        if findings.is_empty() {
            self.last = Some((record.segment, record.offset, record.seq));
            if let Err(finding) = self.invariants_now() {
                findings.push(finding);
            }
        }
        if !findings.is_empty() {
            let location = self.location(record.segment, record.offset, record.seq);
            return Err(VerifyFailure::new(location, findings, self.commands));
        }
        self.commands += 1;
        self.seq_first.get_or_insert(record.seq);
        self.ts_ns_first.get_or_insert(record.ts_ns);
        self.ts_ns_last = Some(record.ts_ns);
        Ok(())
    }

    /// After every command, what the command can have touched (the engine's incremental check);
    /// the full check follows at the end of every batch, so the running totals the incremental
    /// check relies on are confirmed against every holder that often.
    fn invariants_now(&self) -> Result<(), Finding> {
        if !self.checks_every_command() {
            return Ok(());
        }
        let exchange = self.replayer.exchange();
        exchange
            .check_invariants_incremental(self.replayer.events())
            .map_err(|violation| match violation {
                engine::InvariantViolation::Ledger(v) => Finding::Ledger(v),
                engine::InvariantViolation::Book(v) => Finding::Book(v),
                engine::InvariantViolation::Reservations {
                    reservations,
                    orders_open,
                } => Finding::Reservations {
                    reservations,
                    orders_open,
                },
            })
    }

    fn checks_every_command(&self) -> bool {
        self.invariants_mode == InvariantCheck::EveryCommand
    }

    fn check_state(&self) -> Result<(), Finding> {
        let exchange = self.replayer.exchange();
        exchange.check_invariants().map_err(Finding::Ledger)?;
        exchange.matcher().check_invariants().map_err(Finding::Book)
    }

    /// The invariants now, reported at the last command checked.
    fn invariants(&self) -> Result<(), VerifyFailure> {
        self.check_state().map_err(|finding| {
            let location = match self.last {
                Some((segment, offset, seq)) => self.location(segment, offset, seq),
                None => Location {
                    seq: Some(0),
                    ..Location::default()
                },
            };
            VerifyFailure::new(location, vec![finding], self.commands)
        })
    }

    fn summary(&self, end: &JournalEnd) -> VerifySummary {
        let exchange = self.replayer.exchange();
        let ledger = exchange.ledger();
        let pools: Vec<Pool> = (0..ledger.accounts() as u32)
            .filter_map(|a| ledger.pool_of(a))
            .collect();
        VerifySummary {
            segments: self.segments.clone(),
            records: end.records,
            batches: end.batches,
            commands: self.commands,
            seq_first: self.seq_first,
            seq_last: end.last_seq,
            ts_ns_first: self.ts_ns_first,
            ts_ns_last: self.ts_ns_last,
            instruments: self.symbols.clone(),
            assets: self.assets.clone(),
            accounts_customer: pools.iter().filter(|&&p| p == Pool::Customer).count() as u64,
            accounts_house: pools.iter().filter(|&&p| p == Pool::House).count() as u64,
            fills: self.fills,
            fills_house_side: self.fills_house_side,
            invariants: self.invariants_mode,
            state_hash: hex(&self.replayer.state_hash()),
            chain: hex(&end.chain),
            config_hash: hex(&self.config_hash),
            tail_cut: end.tail_cut.as_ref().map(|c| c.to_string()),
        }
    }
}

/// Counts the fills of re-executed events.
fn count_fills(events: &[ExchangeEvent], fills: &mut u64, fills_house_side: &mut u64) {
    for event in events {
        if let ExchangeEvent::Settled(s) = event {
            *fills += 1;
            *fills_house_side += u64::from(s.house != HouseSide::None);
        }
    }
}

/// Checks journaled events against the house policy in force (updated by the `HousePolicySet`
/// events among them) and every settlement's house side against the pools of the fill's accounts.
/// Independent of re-execution: a forged journal is judged on what it says.
fn house_trading(
    policies: &mut [HousePolicy],
    symbols: &[String],
    ledger: &Ledger,
    events: &[ExchangeEvent],
    findings: &mut Vec<Finding>,
) {
    let pool = |account| ledger.pool_of(account).unwrap_or(Pool::Customer);
    let mut fill_accounts = None;
    for event in events {
        match *event {
            ExchangeEvent::HousePolicySet { instrument, policy } => {
                if let Some(slot) = policies.get_mut(instrument as usize) {
                    *slot = policy;
                }
            }
            ExchangeEvent::Order(Event::Fill {
                maker_account,
                taker_account,
                ..
            }) => fill_accounts = Some((maker_account, taker_account)),
            ExchangeEvent::Settled(s) => {
                let policy = policies.get(s.instrument as usize).copied();
                if s.house != HouseSide::None && policy != Some(HousePolicy::Disclosed) {
                    findings.push(Finding::Internalization {
                        instrument: s.instrument,
                        symbol: symbols
                            .get(s.instrument as usize)
                            .cloned()
                            .unwrap_or_default(),
                        house: s.house,
                    });
                }
                let from_accounts = fill_accounts
                    .take()
                    .map(|(maker, taker)| house_side(pool(maker), pool(taker)));
                if let Some(from_accounts) = from_accounts.filter(|&h| h != s.house) {
                    findings.push(Finding::HouseSideMislabelled {
                        instrument: s.instrument,
                        recorded: s.house,
                        from_accounts,
                    });
                }
            }
            _ => {}
        }
    }
}

/// Which sides of a fill belong to the house, from the pools of its maker and taker.
pub fn house_side(maker: Pool, taker: Pool) -> HouseSide {
    match (maker, taker) {
        (Pool::House, Pool::House) => HouseSide::Both,
        (Pool::House, Pool::Customer) => HouseSide::Maker,
        (Pool::Customer, Pool::House) => HouseSide::Taker,
        (Pool::Customer, Pool::Customer) => HouseSide::None,
    }
}

/// A finding for JSON: its stable code and its sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FindingReport {
    pub code: &'static str,
    pub detail: String,
}

/// The outcome of `verify` as a report: `ok` first, then the summary or the failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<VerifySummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureReport>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailureReport {
    pub location: Location,
    pub findings: Vec<FindingReport>,
    pub commands_verified: u64,
}

impl VerifyReport {
    pub fn new(outcome: &Result<VerifySummary, VerifyFailure>) -> VerifyReport {
        match outcome {
            Ok(summary) => VerifyReport {
                ok: true,
                summary: Some(summary.clone()),
                failure: None,
            },
            Err(failure) => VerifyReport {
                ok: false,
                summary: None,
                failure: Some(FailureReport {
                    location: failure.location.clone(),
                    findings: failure
                        .findings
                        .iter()
                        .map(|f| FindingReport {
                            code: f.code(),
                            detail: f.to_string(),
                        })
                        .collect(),
                    commands_verified: failure.commands_verified,
                }),
            },
        }
    }
}

impl crate::render::Report for VerifyReport {
    fn tables(&self) -> Vec<crate::render::Table> {
        use crate::render::Table;
        if let Some(failure) = &self.failure {
            let mut table = Table::new(
                format!("Journal verification FAILED at {}", failure.location),
                &[],
            );
            table.fact("seq", opt(failure.location.seq));
            table.fact(
                "segment",
                failure.location.segment.clone().unwrap_or_default(),
            );
            table.fact("byte offset", opt(failure.location.offset));
            if failure.commands_verified > 0 {
                let verified = format!("{} commands", failure.commands_verified);
                table.fact("verified before it", verified);
            }
            for (i, finding) in failure.findings.iter().enumerate() {
                table.fact(
                    &format!("finding {}", i + 1),
                    format!("{}: {}", finding.code, finding.detail),
                );
            }
            return vec![table];
        }
        let s = self.summary.as_ref().expect("a summary or a failure");
        let mut table = Table::new("Journal verified", &[]);
        table.fact("segments", s.segments.join(", "));
        table.fact("records", format!("{} in {} batches", s.records, s.batches));
        table.fact("commands", s.commands);
        table.fact(
            "sequence",
            format!("{} .. {}", opt(s.seq_first), s.seq_last),
        );
        table.fact(
            "time",
            format!(
                "{} .. {}",
                s.ts_ns_first.map(format_ts).unwrap_or_default(),
                s.ts_ns_last.map(format_ts).unwrap_or_default()
            ),
        );
        table.fact("instruments", s.instruments.join(", "));
        table.fact("assets", s.assets.join(", "));
        table.fact(
            "accounts",
            format!(
                "{} customer, {} house",
                s.accounts_customer, s.accounts_house
            ),
        );
        table.fact(
            "fills",
            format!("{} ({} with a house side)", s.fills, s.fills_house_side),
        );
        let invariants = match s.invariants {
            InvariantCheck::EveryCommand => "checked after every command",
            InvariantCheck::EveryBatch => "checked after every batch",
            InvariantCheck::Final => "checked after the last command",
        };
        table.fact("invariants", invariants);
        table.fact("final state hash", &s.state_hash);
        table.fact("hash chain head", &s.chain);
        table.fact("configuration hash", &s.config_hash);
        if let Some(cut) = &s.tail_cut {
            table.fact("torn tail (allowed)", cut);
        }
        vec![table]
    }
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}
