//! The simulator under `cargo test`: a handful of seeds end to end, determinism, and every seed
//! that once found a bug.

use replay::sim::{run_seed, Counters, Outcome, Sabotage, SimOptions};

fn passes(seed: u64, options: &SimOptions) -> Outcome {
    let outcome = run_seed(seed, options);
    if let Some(failure) = &outcome.failure {
        panic!(
            "seed {seed} failed at step {}: {}\n{}",
            failure.step,
            failure.message,
            failure.trace.join("\n")
        );
    }
    outcome
}

/// Options whose runs live in a folder of their own: tests run in parallel in one process, and
/// a run's folder is named by process and seed.
fn own_folder(name: &str) -> SimOptions {
    let work_dir = std::env::temp_dir().join(format!("kinko-sim-test-{name}"));
    std::fs::create_dir_all(&work_dir).expect("a folder for the runs");
    SimOptions {
        work_dir,
        ..SimOptions::default()
    }
}

/// Seeds run by `cargo test`; `kinko-sim --seeds N` runs as many as wanted.
const SEEDS_IN_TEST: u64 = 30;

/// The seeds pass, and between them every kind of fault fired and every kind of check had
/// something to check: a fault that silently stopped firing would leave the checks idle.
#[test]
fn a_few_seeds_pass_every_check_with_every_fault_injected() {
    let options = SimOptions::default();
    let mut total = Counters::default();
    for seed in 1_000..1_000 + SEEDS_IN_TEST {
        total.add(&passes(seed, &options).counters);
    }
    let fired = [
        ("crashes between steps", total.crashes_between_steps),
        ("crashes in the middle of a batch", total.crashes_mid_batch),
        ("torn tails cut", total.tails_cut),
        ("acks committed but never published", total.acks_unpublished),
        ("crashes while writing a snapshot", total.snapshot_crashes),
        ("damaged snapshots reported", total.snapshot_damage_detected),
        (
            "journal bit flips found at their position",
            total.journal_flips_detected,
        ),
        ("snapshot bit flips", total.snapshot_flips),
        ("half-made segments left by a crash", total.rotation_debris),
        ("full inbound queues", total.busy),
        ("thefts detected", total.thefts_detected),
        ("clock jumps back", total.clock_jumps_back),
        ("journals verified by replay", total.verified),
    ];
    for (what, count) in fired {
        assert!(count > 0, "no {what} in {SEEDS_IN_TEST} seeds: {total:?}");
    }
    assert_eq!(
        total.thefts,
        total.thefts_detected + total.thefts_unreconciled
    );
    assert_eq!(total.journal_flips, total.journal_flips_detected);
}

/// A full disk fires only when a segment rotates, which only the long runs (one in ten) reach:
/// this seed is one of them, with a full disk at a rotation, survived with nothing lost.
#[test]
fn a_full_disk_at_a_segment_rotation_loses_nothing() {
    let outcome = passes(1_043, &own_folder("disk-full"));
    assert!(outcome.counters.disk_full > 0, "{:?}", outcome.counters);
    assert_eq!(outcome.counters.verified, 1);
}

/// The checks catch a misbehaving engine: acknowledgements published before their batch was
/// journaled are found missing after the crash that tore the batch.
#[test]
fn an_ack_published_before_its_commit_is_caught() {
    let options = SimOptions {
        sabotage: Sabotage::PublishBeforeCommit,
        ..own_folder("sabotage-publish")
    };
    let caught = (1_000..1_000 + SEEDS_IN_TEST)
        .map(|seed| run_seed(seed, &options))
        .find_map(|outcome| outcome.failure)
        .expect("a seed with a mid-batch crash fails");
    assert!(
        caught.message.contains("missing from the journal"),
        "{}",
        caught.message
    );
}

/// ... and events published that the journal does not hold are found at the next recovery
/// (in this seed's run at the latest the clean restart at its end).
#[test]
fn an_event_published_but_not_journaled_is_caught() {
    let options = SimOptions {
        sabotage: Sabotage::PublishUnjournaledEvent,
        ..own_folder("sabotage-events")
    };
    let outcome = run_seed(1_000, &options);
    let caught = outcome.failure.expect("the audit fails the run");
    assert!(
        caught
            .message
            .contains("journaled with other events than published"),
        "{}",
        caught.message
    );
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let options = SimOptions::default();
    let first = passes(42, &options);
    let second = passes(42, &options);
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.counters, second.counters);
    assert!(first.counters.commands > 0);
    let other = passes(43, &options);
    assert_ne!(first.digest, other.digest, "another seed, another run");
}

// ---------------------------------------------------------------------- seeds that found bugs

/// The clock jumped back (and a restart came up with a clock behind): the sequencer stamped
/// batches earlier than journaled ones, which replay refuses (`time_backwards`) and which would let
/// a daily withdrawal limit count a past day again. Stamps are now never earlier than the last.
/// The same seed found replay's final state hash differing from the engine's whenever the genesis
/// configuration checks invariants (replay turned the flag off in the state it hashed).
#[test]
fn seed_0_clock_jumps_back_and_replay_agrees_on_the_state_hash() {
    let outcome = passes(0, &SimOptions::default());
    assert!(outcome.counters.clock_jumps_back > 0);
    assert_eq!(outcome.counters.verified, 1);
}

/// A flipped bit in a snapshot header's seq field (not covered by the state hash) made recovery
/// believe the state was at seq 134,217,993: it skipped every journaled command after the real
/// seq (265), losing 115 acknowledged commands from the state. The header's seq must now match the
/// file name, and the reserved bytes must be zero.
#[test]
fn seed_27_snapshot_header_seq_flip_is_refused() {
    let outcome = passes(27, &SimOptions::default());
    assert!(outcome.counters.snapshot_damage_detected > 0);
}

/// The simulator's own bug: its operator swept to cold, twice before seeing either sweep, more
/// coins than a drained hot wallet held, so the chain went negative and a theft was missed. Custody
/// moves now wait until the previous one is seen.
#[test]
fn seed_249_theft_detected_with_sweeps_in_flight() {
    // The simulator's draws have changed since (45c8177, 02d7397): this seed no longer steals
    // or sweeps as it did; it stays as a passing run, and the aggregate test above demands thefts.
    let outcome = passes(249, &SimOptions::default());
    assert_eq!(outcome.counters.thefts, outcome.counters.thefts_detected);
}

/// The simulator's own, again: a fee sweep's amount comes from the ledger, so after an
/// undetected theft it moved (on the simulated chain) house coins the thief had taken, the wallet
/// went negative and the theft was missed. Sweeps now wait until thefts are reconciled, since the
/// simulated chain does not model a chain move that fails.
#[test]
fn seed_608_theft_detected_with_fee_sweeps() {
    let outcome = passes(608, &SimOptions::default());
    assert!(outcome.counters.thefts > 0, "{:?}", outcome.counters);
    assert_eq!(outcome.counters.thefts, outcome.counters.thefts_detected);
}
