//! `kinko-bench`: runs benchmark scenarios, prints each one's notes as it goes and one summary
//! table at the end (or JSON lines on stdout with `--json`), and writes the rows as JSON lines and
//! an HdrHistogram percentile distribution per row under `target/bench/`. Then the guard judges
//! each figure against a reference point of the same run; the exit status is 1 if one fails.
//!
//! ```sh
//! cargo run --release -p benches --bin kinko-bench -- engine [--quick] [--json]
//! cargo run --release -p benches --bin kinko-bench            # every scenario
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::builder::PossibleValuesParser;
use clap::Parser;

use kinko_bench::guard::{self, RULES};
use kinko_bench::machine::Machine;
use kinko_bench::measure::Row;
use kinko_bench::report::{json_line, output_dir, table, write_files};
use kinko_bench::scenarios::{Length, Options, Scenario};
use kinko_bench::workload::SEED_DEFAULT;

const ALL: &str = "all";

#[derive(Parser, Debug)]
#[command(
    name = "kinko-bench",
    about = "Kinko's throughput and latency benchmarks"
)]
struct Cli {
    /// Scenarios to run, in order; `all` (the default) runs every one.
    #[arg(value_parser = scenario_names())]
    scenarios: Vec<String>,
    /// A short run (a tenth of the commands), for CI and a first look.
    #[arg(long)]
    quick: bool,
    /// One JSON object per row on stdout; the context lines go to stderr.
    #[arg(long)]
    json: bool,
    /// The workload's seed (decimal or 0x-prefixed hex).
    #[arg(long, value_parser = parse_u64, default_value_t = SEED_DEFAULT)]
    seed: u64,
    /// Measured commands per run, overriding the default of the chosen length.
    #[arg(long)]
    commands: Option<usize>,
    /// Where the JSON lines and `.hgrm` files go (default: `bench/` in the target directory).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn scenario_names() -> PossibleValuesParser {
    let names = Scenario::ALL.iter().map(|s| s.name()).chain([ALL]);
    PossibleValuesParser::new(names)
}

fn parse_u64(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| format!("not a number: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let started = Instant::now();
    let options = Options {
        length: if cli.quick {
            Length::Quick
        } else {
            Length::Full
        },
        seed: cli.seed,
        commands_measured: cli.commands,
    };
    let say = |line: &str| {
        // With --json, stdout carries only the rows, so that it can be piped into a tool.
        if cli.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(&Machine::detect().describe());
    let out = cli.out.clone().unwrap_or_else(output_dir);
    let mut rows = Vec::new();
    for scenario in selected(&cli.scenarios) {
        say(&format!("\n== {}", scenario.name()));
        let report = scenario.run(&options);
        for note in &report.notes {
            say(note);
        }
        keep(&report.rows, scenario.name(), &out, cli.json, &say);
        rows.extend(report.rows);
    }
    say("\n== summary");
    say(table(&rows).trim_end());
    say(&format!(
        "{} rows in {:.0} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    ));
    say("\n== guard (each figure against a reference point of this run; docs/PERFORMANCE.md)");
    let verdicts = guard::check(RULES, &rows);
    say(guard::table(&verdicts, &guard::unguarded(RULES, &rows)).trim_end());
    if guard::passed(&verdicts) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints the rows as JSON lines (with `--json`) and writes their files.
fn keep(rows: &[Row], scenario: &str, out: &Path, json: bool, say: &impl Fn(&str)) {
    if json {
        for row in rows {
            println!("{}", json_line(row));
        }
    }
    match write_files(out, scenario, rows) {
        Ok(written) => say(&format!(
            "files: {} and {} .hgrm in {}",
            written[0].display(),
            written.len() - 1,
            out.join(scenario).display()
        )),
        Err(error) => say(&format!("files: not written to {}: {error}", out.display())),
    }
}

/// The scenarios named on the command line, in order and without repeats; none or `all` is all.
fn selected(names: &[String]) -> Vec<Scenario> {
    if names.is_empty() || names.iter().any(|name| name == ALL) {
        return Scenario::ALL.to_vec();
    }
    let mut scenarios: Vec<Scenario> = Vec::new();
    for name in names {
        let scenario = Scenario::from_name(name).expect("clap admits known names only");
        if !scenarios.contains(&scenario) {
            scenarios.push(scenario);
        }
    }
    scenarios
}
