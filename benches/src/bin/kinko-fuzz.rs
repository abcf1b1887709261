//! `kinko-fuzz`: the mutation fuzzer over every decoder that reads outside input
//! (`kinko_bench::fuzz`; docs/RELIABILITY.md, "Fuzzing"). Prints one line per target and a summary
//! table; exits 1 when any input made a target panic (the inputs are under
//! `target/fuzz/crashes/`).
//!
//! ```sh
//! cargo run --profile fuzz -p benches --bin kinko-fuzz -- --target all --execs 10000000
//! cargo run --profile fuzz -p benches --bin kinko-fuzz -- --target fix --seconds 60 --seed 7
//! cargo run --profile fuzz -p benches --bin kinko-fuzz -- --target journal --input crash.bin
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use kinko_bench::fuzz::{self, Budget, Report, Target};

#[derive(Parser, Debug)]
#[command(
    name = "kinko-fuzz",
    about = "Kinko's mutation fuzzer for every decoder of outside input"
)]
struct Cli {
    /// A target name, or `all` (in order). `--list` names them.
    #[arg(long, default_value = "all")]
    target: String,
    /// Executions per target.
    #[arg(long, conflicts_with = "seconds")]
    execs: Option<u64>,
    /// Seconds per target (default 10 when neither budget is given).
    #[arg(long)]
    seconds: Option<f64>,
    /// Everything the fuzzer draws follows from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs the target once on this file (a saved crash) and reports what happened.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Lists the targets.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list {
        for target in fuzz::all() {
            println!("{:<16} {}", target.name, target.about);
        }
        return ExitCode::SUCCESS;
    }
    let targets: Vec<&Target> = if cli.target == "all" {
        fuzz::all().iter().collect()
    } else {
        match fuzz::find(&cli.target) {
            Some(target) => vec![target],
            None => {
                eprintln!("kinko-fuzz: no target {:?} (see --list)", cli.target);
                return ExitCode::from(2);
            }
        }
    };
    if let Some(path) = &cli.input {
        return reproduce(&targets, path);
    }
    let budget = match (cli.execs, cli.seconds) {
        (Some(n), _) => Budget::Execs(n),
        (None, Some(s)) => Budget::Duration(Duration::from_secs_f64(s)),
        (None, None) => Budget::Duration(Duration::from_secs(10)),
    };
    let crash_dir = fuzz::crash_dir();
    let mut reports = Vec::new();
    for target in targets {
        let report = fuzz::run(target, cli.seed, budget, &crash_dir);
        println!(
            "{:<16} {:>12} execs {:>10.0}/s {:>4} crashes  {} outcome classes, corpus {}, slowest {} µs",
            report.target,
            report.execs,
            report.execs_per_sec(),
            report.crashes,
            report.classes,
            report.corpus,
            report.slowest_us
        );
        for (panic, file) in report.panics.iter().zip(&report.crash_files) {
            println!("  panic: {panic}\n    input: {}", file.display());
        }
        reports.push(report);
    }
    print_summary(&reports, cli.seed);
    if reports.iter().any(|r| r.crashes > 0) {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn print_summary(reports: &[Report], seed: u64) {
    println!();
    println!("seed {seed}");
    println!(
        "{:<16} {:>14} {:>12} {:>9} {:>8}",
        "target", "executions", "execs/s", "seconds", "crashes"
    );
    for r in reports {
        println!(
            "{:<16} {:>14} {:>12.0} {:>9.1} {:>8}",
            r.target,
            r.execs,
            r.execs_per_sec(),
            r.seconds,
            r.crashes
        );
    }
    let execs: u64 = reports.iter().map(|r| r.execs).sum();
    let crashes: u64 = reports.iter().map(|r| r.crashes).sum();
    println!(
        "{:<16} {:>14} {:>12} {:>9} {:>8}",
        "total", execs, "", "", crashes
    );
}

fn reproduce(targets: &[&Target], path: &PathBuf) -> ExitCode {
    let input = match std::fs::read(path) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("kinko-fuzz: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    fuzz::BACKTRACES.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failed = false;
    for target in targets {
        match fuzz::execute(target, &input) {
            Ok(class) => println!("{}: no panic (outcome class {class:016x})", target.name),
            Err(panic) => {
                println!("{}: panic: {panic}", target.name);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
