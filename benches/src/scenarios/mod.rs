//! The scenarios `kinko-bench` can run. Each is a function from [`Options`] to a [`Report`]: rows
//! for the table (or the JSON lines) and notes that tell the reader what was measured.
//!
//! Adding one: a module here, a variant of [`Scenario`] with its name, and an arm in
//! [`Scenario::run`]. The command line lists the variants by themselves.

pub mod engine;
pub mod fix;
pub mod journal;
pub mod ledger;
pub mod loopback;
pub mod peers;
pub mod pipeline;
pub mod replay;
pub mod ws;

use crate::measure::Row;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// The matching core alone, single thread: throughput, then fixed offered rates.
    Engine,
    /// The same workload through the whole state machine: reservations, settlement, fees.
    Ledger,
    /// Journal appends beside a memcpy of the same bytes.
    Journal,
    /// The engine thread end to end: producer, queue, apply, journal, publish, consumer.
    Pipeline,
    /// WebSocket order entry against the real server on loopback.
    Ws,
    /// FIX 4.4 order entry against the real server on loopback.
    Fix,
    /// `kinko-replay verify` on a journal of millions of records.
    Replay,
    /// The `engine` stream through Kinko's matching core and published order-book crates.
    Peers,
}

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: &'static [Scenario] = &[
        Scenario::Engine,
        Scenario::Ledger,
        Scenario::Journal,
        Scenario::Pipeline,
        Scenario::Ws,
        Scenario::Fix,
        Scenario::Replay,
        Scenario::Peers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Engine => "engine",
            Scenario::Ledger => "ledger",
            Scenario::Journal => "journal",
            Scenario::Pipeline => "pipeline",
            Scenario::Ws => "ws",
            Scenario::Fix => "fix",
            Scenario::Replay => "replay",
            Scenario::Peers => "peers",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.iter().copied().find(|s| s.name() == name)
    }

    pub fn run(self, options: &Options) -> Report {
        match self {
            Scenario::Engine => engine::run(options),
            Scenario::Ledger => ledger::run(options),
            Scenario::Journal => journal::run(options),
            Scenario::Pipeline => pipeline::run(options),
            Scenario::Ws => ws::run(options),
            Scenario::Fix => fix::run(options),
            Scenario::Replay => replay::run(options),
            Scenario::Peers => peers::run(options),
        }
    }
}

/// How much to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// The published figures: millions of commands.
    Full,
    /// A tenth of that, for CI and a first look.
    Quick,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub length: Length,
    pub seed: u64,
    /// Overrides the measured command count that `length` implies.
    pub commands_measured: Option<usize>,
}

/// What a scenario hands back: the rows, and lines of context (what the workload looked like,
/// how latency was measured) for a human.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &scenario in Scenario::ALL {
            assert_eq!(Scenario::from_name(scenario.name()), Some(scenario));
        }
        assert_eq!(Scenario::from_name("nonsense"), None);
    }
}
