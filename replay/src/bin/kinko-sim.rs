//! `kinko-sim --seed N` reproduces one run; `kinko-sim --seeds N [--from S]` runs many and stops
//! at the first failing seed with its trace. Exit status 1 on any failure.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Parser;
use replay::sim::{run_seed, Counters, Outcome, SimOptions};

#[derive(Parser)]
#[command(
    name = "kinko-sim",
    about = "Deterministic simulation of the Kinko exchange"
)]
struct Args {
    /// Run this one seed and print its digest.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run this many seeds.
    #[arg(long)]
    seeds: Option<u64>,
    /// The first seed of `--seeds`.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Steps per run (default: the seed decides, 300 to 1,500).
    #[arg(long)]
    steps: Option<u64>,
    /// Keep a failed run's folder.
    #[arg(long)]
    keep: bool,
    /// Print every step as it happens (stderr).
    #[arg(long)]
    verbose: bool,
}

/// The seed being run, for the panic hook: a panic aborts a release build.
static SEED_RUNNING: AtomicU64 = AtomicU64::new(u64::MAX);

fn main() -> ExitCode {
    let args = Args::parse();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!(
            "kinko-sim: PANIC in seed {}: reproduce with `kinko-sim --seed {0}`",
            SEED_RUNNING.load(Ordering::Relaxed)
        );
        default_hook(info);
    }));
    let options = SimOptions {
        steps: args.steps,
        keep_failed: args.keep,
        verbose: args.verbose,
        ..SimOptions::default()
    };
    let (from, count) = match (args.seed, args.seeds) {
        (Some(seed), _) => (seed, 1),
        (None, Some(count)) => (args.from, count),
        (None, None) => (args.from, 100),
    };
    let started = Instant::now();
    let mut total = Counters::default();
    for seed in from..from.saturating_add(count) {
        SEED_RUNNING.store(seed, Ordering::Relaxed);
        let outcome = run_seed(seed, &options);
        total.add(&outcome.counters);
        if args.seed.is_some() {
            println!("seed {seed}: digest {}", hex(&outcome.digest));
        }
        if outcome.failure.is_some() {
            report_failure(&outcome, args.keep);
            summary(&total, started);
            return ExitCode::FAILURE;
        }
        if args.seed.is_none() && (seed - from + 1).is_multiple_of(100) {
            eprintln!(
                "kinko-sim: {} seeds, {} commands, {:.0} s",
                seed - from + 1,
                total.commands,
                started.elapsed().as_secs_f64()
            );
        }
    }
    summary(&total, started);
    ExitCode::SUCCESS
}

fn report_failure(outcome: &Outcome, kept: bool) {
    let failure = outcome.failure.as_ref().expect("failed");
    println!(
        "FAILED seed {} at step {}: {}",
        outcome.seed, failure.step, failure.message
    );
    println!("last steps:");
    for line in &failure.trace {
        let short: String = line.chars().take(400).collect();
        println!("  {short}");
    }
    println!("reproduce: kinko-sim --seed {} --keep", outcome.seed);
    if kept {
        println!("files kept in {}", outcome.dir.display());
    }
}

fn summary(c: &Counters, started: Instant) {
    println!("seeds run                          {}", c.seeds);
    println!(
        "simulated commands                 {} in {} batches ({} acknowledged)",
        c.commands, c.batches, c.acks
    );
    println!(
        "crashes injected / recovered       {} / {} (mid-batch {}, tails cut {}; committed but never published acks {})",
        c.crashes, c.recoveries, c.crashes_mid_batch, c.tails_cut, c.acks_unpublished
    );
    println!(
        "snapshots written / crashed        {} / {} (torn files {}, partial temporary files {})",
        c.snapshots, c.snapshot_crashes, c.snapshot_torn, c.snapshot_partial_tmp
    );
    println!(
        "corruptions injected / detected    journal bit flips {} / {}, snapshots torn or flipped {} / {}",
        c.journal_flips,
        c.journal_flips_detected,
        c.snapshot_torn + c.snapshot_flips,
        c.snapshot_damage_detected
    );
    println!("full disk at segment rotation      {}", c.disk_full);
    println!("crashes leaving a half-made segment {}", c.rotation_debris);
    println!(
        "busy (full inbound queue)          {} (submitted again {})",
        c.busy, c.retried
    );
    println!(
        "thefts injected / detected         {} / {} in {} reconciliations ({} cut short by a bit flip)",
        c.thefts, c.thefts_detected, c.reconciliations, c.thefts_unreconciled
    );
    println!(
        "theft to detection, longest        {} steps (reconciliations every 20 to 120; {} ran late, right after a restart)",
        c.theft_detection_steps_max, c.reconciliations_delayed
    );
    println!("clock jumps back                   {}", c.clock_jumps_back);
    println!("clean restarts                     {}", c.restarts_clean);
    println!("journals verified by replay        {}", c.verified);
    println!("acknowledged commands lost         {}", c.acked_lost);
    println!(
        "invariant violations               {}",
        c.invariant_violations
    );
    println!(
        "elapsed                            {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
