//! `kinko-sim`: a deterministic simulation of the whole exchange, in the manner of TigerBeetle's
//! VOPR. One `u64` seed decides the workload (traders, the house, operators, the chain and a
//! thief), the faults (crashes between steps, in the middle of a batch, after a commit before its
//! publication and while writing a snapshot; torn writes; bit flips in the journal and in
//! snapshots; a full disk; a slow consumer; a full inbound queue; a clock that jumps both ways),
//! and so the whole run, bit for bit.
//!
//! It runs the real state machine (`engine::Exchange`), the real journal writer and reader, the
//! real recovery (`engine::runtime::recover_with`, snapshots included) and the engine thread's own
//! batch code (`engine::runtime::Sequencer`), driven by hand one batch at a time; the journal and
//! snapshots are real files in a folder per run. It lives in the `replay` crate (binary
//! `kinko-sim`) because every run ends with replay's `verify`, and replay depends on the engine:
//! the engine cannot depend on replay, and the workspace keeps to its five crates.
//!
//! It must never: read the wall clock, iterate a hash map, or let thread timing decide anything —
//! a seed that fails once must fail again.

mod disk;
mod rng;
mod run;
mod workload;
mod world;

use std::path::PathBuf;

pub use run::sim_config;

/// What a run (or many) injected and checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub seeds: u64,
    /// Commands sequenced and journaled by the engine (including those torn off again).
    pub commands: u64,
    pub batches: u64,
    /// Acknowledgements seen by clients.
    pub acks: u64,
    /// Committed to the journal, never published (the process died first).
    pub acks_unpublished: u64,
    pub crashes: u64,
    /// Of `crashes`: the process killed between two steps (the others: mid-batch, full disk).
    pub crashes_between_steps: u64,
    pub crashes_mid_batch: u64,
    pub tails_cut: u64,
    /// Recoveries after a crash.
    pub recoveries: u64,
    /// Restarts after a clean shutdown (the end of every run).
    pub restarts_clean: u64,
    pub snapshots: u64,
    pub snapshot_crashes: u64,
    /// Crashes while writing a snapshot that left a truncated snapshot file (must be reported).
    pub snapshot_torn: u64,
    /// ... that left a partial temporary file (never read, by design).
    pub snapshot_partial_tmp: u64,
    pub snapshot_flips: u64,
    /// Torn or flipped snapshots that recovery reported by name and skipped.
    pub snapshot_damage_detected: u64,
    pub journal_flips: u64,
    pub journal_flips_detected: u64,
    pub disk_full: u64,
    /// Crashes that left the next segment half made (empty, zeros, or a header only).
    pub rotation_debris: u64,
    pub busy: u64,
    pub retried: u64,
    pub thefts: u64,
    pub thefts_detected: u64,
    /// Thefts in runs that a journal bit flip ended before the next reconciliation.
    pub thefts_unreconciled: u64,
    pub reconciliations: u64,
    /// Reconciliations that fell due while the process was down and ran right after its restart.
    pub reconciliations_delayed: u64,
    /// The longest time from a theft to the reconciliation that found it, in steps.
    pub theft_detection_steps_max: u64,
    pub clock_jumps_back: u64,
    pub acked_lost: u64,
    pub invariant_violations: u64,
    /// Runs whose journal replay's `verify` passed at the end.
    pub verified: u64,
}

macro_rules! add_fields {
    ($self:ident, $other:ident, $($field:ident),*) => {
        $( $self.$field += $other.$field; )*
    };
}

impl Counters {
    pub fn add(&mut self, other: &Counters) {
        self.theft_detection_steps_max = self
            .theft_detection_steps_max
            .max(other.theft_detection_steps_max);
        add_fields!(
            self,
            other,
            seeds,
            commands,
            batches,
            acks,
            acks_unpublished,
            crashes,
            crashes_between_steps,
            crashes_mid_batch,
            tails_cut,
            recoveries,
            restarts_clean,
            snapshots,
            snapshot_crashes,
            snapshot_torn,
            snapshot_partial_tmp,
            snapshot_flips,
            snapshot_damage_detected,
            journal_flips,
            journal_flips_detected,
            disk_full,
            rotation_debris,
            busy,
            retried,
            thefts,
            thefts_detected,
            thefts_unreconciled,
            reconciliations,
            reconciliations_delayed,
            clock_jumps_back,
            acked_lost,
            invariant_violations,
            verified
        );
    }
}

/// Where a run failed and the last steps before it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub step: u64,
    pub message: String,
    pub trace: Vec<String>,
}

pub struct Outcome {
    pub seed: u64,
    /// BLAKE3 of every acknowledged command's seq and events, every recovery's outcome and the
    /// counters: equal digests mean equal runs.
    pub digest: [u8; 32],
    pub counters: Counters,
    pub failure: Option<Failure>,
    /// The run's folder (removed unless it failed and `keep_failed` is set).
    pub dir: PathBuf,
}

#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Where each run's folder is made.
    pub work_dir: PathBuf,
    /// Steps per run; `None`: the seed decides (300 to 1,500).
    pub steps: Option<u64>,
    /// Keep a failed run's journal and snapshots for inspection.
    pub keep_failed: bool,
    /// Print every step of the trace as it happens (stderr).
    pub verbose: bool,
    /// A planted bug, for the tests that show the checks catch one (never set by `kinko-sim`).
    pub sabotage: Sabotage,
}

/// A bug the simulator can plant in its own model of the engine's edge, so that a test can show
/// that the checks fail when the engine misbehaves: a checker that cannot fail proves nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sabotage {
    #[default]
    None,
    /// Publish a batch's acknowledgements before its journal write completes: the batch torn by a
    /// mid-batch crash is acknowledged to clients (as an engine that published before its
    /// commit would). Recovery's audit must find acknowledged commands missing from the journal.
    PublishBeforeCommit,
    /// Publish other events than those journaled: each acknowledgement's events, as the clients
    /// keep them, gain an event the engine never wrote. The audit must find them unjournaled.
    PublishUnjournaledEvent,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            work_dir: std::env::temp_dir(),
            steps: None,
            keep_failed: false,
            verbose: false,
            sabotage: Sabotage::None,
        }
    }
}

/// Runs one seed.
///
/// Its folder is `work_dir/kinko-sim-PID-SEED`, removed at the end unless the run failed and
/// `keep_failed` is set.
pub fn run_seed(seed: u64, options: &SimOptions) -> Outcome {
    run::Sim::new(seed, options).run()
}
