//! `kinko-bench`: runs benchmark scenarios and prints a table, or JSON lines with `--json`.
//!
//! ```sh
//! cargo run --release -p benches --bin kinko-bench -- engine [--quick] [--json]
//! cargo run --release -p benches --bin kinko-bench            # every scenario
//! ```

use clap::builder::PossibleValuesParser;
use clap::Parser;

use kinko_bench::machine::Machine;
use kinko_bench::report::{json_line, table};
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

fn main() {
    let cli = Cli::parse();
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
    for scenario in selected(&cli.scenarios) {
        let report = scenario.run(&options);
        for note in &report.notes {
            say(note);
        }
        if cli.json {
            for row in &report.rows {
                println!("{}", json_line(row));
            }
        } else {
            print!("{}", table(&report.rows));
        }
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
