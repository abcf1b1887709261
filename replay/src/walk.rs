//! Re-execution: every journaled command goes back through the engine's own state machine
//! (`engine::Exchange`), and the events it produces must be byte-identical to the journaled ones.
//! Replay has no matching or settlement code of its own (ARCHITECTURE.md: "replay has no matching
//! code of its own"); it only compares.

use std::fmt;

use engine::journal::format::{decode, encode_into, RecordKind};
use engine::journal::{JournalRead, RecordRead, RecordRef};
use engine::{Exchange, ExchangeCommand, ExchangeConfig, ExchangeEvent, Sequenced};

use crate::error::ReplayError;
use crate::point::{Point, Reached};

/// A command record and the events record that must follow it.
#[derive(Clone, Copy, Debug)]
pub struct Pair<'a> {
    pub command: RecordRef<'a>,
    pub events: RecordRef<'a>,
}

/// The records of one batch, by position: the engine's records read into memory, or a batch
/// handed over by the journal stream.
pub trait Records {
    fn count(&self) -> usize;
    fn record(&self, i: usize) -> RecordRef<'_>;
}

impl Records for [RecordRead] {
    fn count(&self) -> usize {
        self.len()
    }

    fn record(&self, i: usize) -> RecordRef<'_> {
        self[i].view()
    }
}

/// A batch whose records are not command, events, command, events, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Structure {
    /// A command record with no events record of the same seq right after it.
    EventsMissing,
    /// An events record that does not follow its command.
    EventsWithoutCommand,
    /// A genesis or commit record among a batch's records.
    OutOfPlace(RecordKind),
    /// The events record carries another timestamp than its command.
    EventsStampedDifferently {
        command_ts_ns: u64,
        events_ts_ns: u64,
    },
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Structure::EventsMissing => write!(f, "no events record follows the command"),
            Structure::EventsWithoutCommand => write!(f, "events record without its command"),
            Structure::OutOfPlace(kind) => write!(f, "{kind:?} record inside a batch"),
            Structure::EventsStampedDifferently {
                command_ts_ns,
                events_ts_ns,
            } => write!(
                f,
                "events stamped {events_ts_ns} ns, their command {command_ts_ns} ns"
            ),
        }
    }
}

/// The (command, events) pairs of a batch, in order; a structural problem ends the iteration.
pub struct Pairs<'a, R: Records + ?Sized> {
    records: &'a R,
    next: usize,
}

pub fn pairs<R: Records + ?Sized>(records: &R) -> Pairs<'_, R> {
    Pairs { records, next: 0 }
}

impl<'a, R: Records + ?Sized> Iterator for Pairs<'a, R> {
    type Item = Result<Pair<'a>, (RecordRef<'a>, Structure)>;

    fn next(&mut self) -> Option<Self::Item> {
        let i = self.next;
        let count = self.records.count();
        if i >= count {
            return None;
        }
        let command = self.records.record(i);
        self.next = count; // Any error ends the iteration.
        match command.kind {
            RecordKind::Command => {}
            RecordKind::Events => return Some(Err((command, Structure::EventsWithoutCommand))),
            kind => return Some(Err((command, Structure::OutOfPlace(kind)))),
        }
        let events = (i + 1 < count)
            .then(|| self.records.record(i + 1))
            .filter(|r| r.kind == RecordKind::Events && r.seq == command.seq);
        let Some(events) = events else {
            return Some(Err((command, Structure::EventsMissing)));
        };
        if events.ts_ns != command.ts_ns {
            let problem = Structure::EventsStampedDifferently {
                command_ts_ns: command.ts_ns,
                events_ts_ns: events.ts_ns,
            };
            return Some(Err((events, problem)));
        }
        self.next = i + 2;
        Some(Ok(Pair { command, events }))
    }
}

/// The first difference between journaled and re-executed events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub event_index: usize,
    /// `None`: the journal has no event at that index.
    pub journaled: Option<String>,
    /// `None`: re-execution produced no event at that index.
    pub reexecuted: Option<String>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |e: &Option<String>| e.clone().unwrap_or_else(|| "nothing".into());
        write!(
            f,
            "event {}: journaled {}, re-executed {}",
            self.event_index,
            show(&self.journaled),
            show(&self.reexecuted)
        )
    }
}

/// Why one command could not be re-executed to the journaled events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepError {
    CommandUndecodable,
    Diverged(Divergence),
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::CommandUndecodable => write!(f, "the command payload does not decode"),
            StepError::Diverged(d) => write!(f, "re-execution diverges: {d}"),
        }
    }
}

/// One re-executed command, with the events it produced (equal to the journaled ones).
#[derive(Clone, Copy, Debug)]
pub struct Step<'a> {
    pub seq: u64,
    pub ts_ns: u64,
    pub command: &'a ExchangeCommand,
    pub events: &'a [ExchangeEvent],
}

/// The engine's state machine, fed from a journal.
pub struct Replayer {
    exchange: Exchange,
    /// The genesis configuration's flag, turned off here: part of the state the hash covers.
    check_invariants_genesis: bool,
    command: Option<ExchangeCommand>,
    produced: Vec<ExchangeEvent>,
    encoded: Vec<u8>,
}

impl Replayer {
    /// The exchange at genesis. Invariants are never checked inside `apply` (that panics); the
    /// caller checks them and reports what broke.
    pub fn new(config: &ExchangeConfig) -> Result<Replayer, ReplayError> {
        let mut config = config.clone();
        let check_invariants_genesis = config.engine.check_invariants;
        config.engine.check_invariants = false;
        let exchange = Exchange::new(config).map_err(|e| ReplayError::Config(format!("{e:?}")))?;
        Ok(Replayer {
            exchange,
            check_invariants_genesis,
            command: None,
            produced: Vec::with_capacity(1_024),
            encoded: Vec::with_capacity(1 << 16),
        })
    }

    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// The engine's state hash of the state now: the snapshot as the engine would take it, with
    /// the genesis configuration's invariant flag (which the replayer turns off for itself), so
    /// that it equals the hash the engine records for the same journal.
    pub fn state_hash(&self) -> [u8; 32] {
        let mut snapshot = self.exchange.snapshot();
        snapshot.config.engine.check_invariants = self.check_invariants_genesis;
        engine::snapshot::state_hash(&snapshot)
    }

    /// The events of the last command applied.
    pub fn events(&self) -> &[ExchangeEvent] {
        &self.produced
    }

    pub fn into_exchange(self) -> Exchange {
        self.exchange
    }

    /// Re-executes one command and compares its events with the journaled bytes.
    pub fn apply(&mut self, pair: &Pair<'_>) -> Result<Step<'_>, StepError> {
        let command: ExchangeCommand =
            decode(pair.command.payload).ok_or(StepError::CommandUndecodable)?;
        self.produced.clear();
        let record = Sequenced {
            seq: pair.command.seq,
            ts_ns: pair.command.ts_ns,
            command,
        };
        self.exchange.apply(&record, &mut self.produced);
        self.encoded.clear();
        encode_into(&self.produced.as_slice(), &mut self.encoded);
        if self.encoded != pair.events.payload {
            return Err(StepError::Diverged(divergence(
                pair.events.payload,
                &self.produced,
            )));
        }
        self.command = Some(command);
        Ok(Step {
            seq: pair.command.seq,
            ts_ns: pair.command.ts_ns,
            command: self.command.as_ref().expect("just set"),
            events: &self.produced,
        })
    }
}

/// Locates the first event that differs.
pub fn divergence(journaled_payload: &[u8], reexecuted: &[ExchangeEvent]) -> Divergence {
    let Some(journaled) = decode::<Vec<ExchangeEvent>>(journaled_payload) else {
        return Divergence {
            event_index: 0,
            journaled: Some("an events payload that does not decode".into()),
            reexecuted: reexecuted.first().map(|e| format!("{e:?}")),
        };
    };
    let index = journaled
        .iter()
        .zip(reexecuted)
        .position(|(j, r)| j != r)
        .unwrap_or(journaled.len().min(reexecuted.len()));
    Divergence {
        event_index: index,
        journaled: journaled.get(index).map(|e| format!("{e:?}")),
        reexecuted: reexecuted.get(index).map(|e| format!("{e:?}")),
    }
}

/// Re-executes the journal from genesis up to `until` (the whole journal when `None`), calling
/// `visit` for every command, and returns the state there. A divergence or a malformed batch
/// stops it: a report is never built on events the state machine does not reproduce.
pub fn replay_until(
    read: &JournalRead,
    until: Option<Point>,
    visit: &mut dyn FnMut(&Step<'_>),
) -> Result<(Exchange, Reached), ReplayError> {
    let mut replayer = Replayer::new(&read.genesis.config)?;
    let mut reached = Reached::default();
    for batch in &read.batches {
        for pair in pairs(batch.records.as_slice()) {
            let pair =
                pair.map_err(|(record, problem)| diverged(read, record, problem.to_string()))?;
            if until.is_some_and(|p| !p.admits_until(pair.command.seq, pair.command.ts_ns)) {
                return Ok((replayer.into_exchange(), reached));
            }
            let step = replayer
                .apply(&pair)
                .map_err(|e| diverged(read, pair.command, e.to_string()))?;
            visit(&step);
            reached = Reached {
                seq: step.seq,
                ts_ns: Some(step.ts_ns),
            };
        }
    }
    Ok((replayer.into_exchange(), reached))
}

fn diverged(read: &JournalRead, record: RecordRef<'_>, detail: String) -> ReplayError {
    ReplayError::Diverged {
        seq: record.seq,
        segment: segment_name(&read.segments, record.segment),
        offset: record.offset,
        detail,
    }
}

/// The file name of segment `index`, as the reader named it (`segments` in index order).
pub fn segment_name(segments: &[String], index: u64) -> String {
    let suffix = format!("segment-{index:06}.kjl");
    segments
        .iter()
        .find(|name| name.ends_with(&suffix))
        .cloned()
        .unwrap_or(suffix)
}
