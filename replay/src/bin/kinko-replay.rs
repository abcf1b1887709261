//! `kinko-replay`: the auditor's tool. Parses arguments and prints; the `replay` library does the
//! work. Exit status: 0 success, 1 the journal failed verification (or a proof did not verify),
//! 2 the tool could not run (bad arguments, no journal, a report that cannot be built).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ledger::Pool;
use replay::reports::{
    actions, balances, compensation, internalization, liabilities, segregation, trades, vwap,
};
use replay::verify::VerifyReport;
use replay::{
    render, Format, InvariantCheck, Point, Progress, ReplayError, Report, TornTail, VerifyOptions,
    Window,
};

#[derive(Parser)]
#[command(
    name = "kinko-replay",
    version,
    about = "Verify a Kinko journal and report from it, trusting nothing but the journal files.",
    after_help = "Points (--at, --from, --to) are sequence numbers or RFC 3339 instants."
)]
struct Cli {
    /// Print JSON instead of a table.
    #[arg(long, global = true, conflicts_with = "csv")]
    json: bool,
    /// Print CSV instead of a table.
    #[arg(long, global = true)]
    csv: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checksums, hash chain, re-execution with byte-identical events, every invariant.
    Verify {
        /// A data folder (with journal/) or a folder of segment files.
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "every-command")]
        invariants: Invariants,
        /// Accept a torn last batch (never acknowledged) instead of failing.
        #[arg(long)]
        allow_torn_tail: bool,
        /// No progress on standard error.
        #[arg(long)]
        quiet: bool,
    },
    /// Every account's balances at a point.
    Balances {
        dir: PathBuf,
        #[arg(long, value_parser = point)]
        at: Option<Point>,
        #[arg(long)]
        account: Option<u32>,
        #[arg(long, value_enum)]
        pool: Option<PoolArg>,
    },
    /// Fills, optionally of one account or instrument, in a window.
    Trades {
        dir: PathBuf,
        #[arg(long)]
        account: Option<u32>,
        #[arg(long)]
        instrument: Option<String>,
        #[arg(long, value_parser = point)]
        from: Option<Point>,
        #[arg(long, value_parser = point)]
        to: Option<Point>,
    },
    /// Volume-weighted average price and volume over a window.
    Vwap {
        dir: PathBuf,
        #[arg(long)]
        instrument: String,
        #[arg(long, value_parser = point)]
        from: Point,
        #[arg(long, value_parser = point)]
        to: Point,
    },
    /// What every customer holding an asset at an instant is owed at a price.
    Compensation {
        dir: PathBuf,
        #[arg(long)]
        asset: String,
        #[arg(long, value_parser = point)]
        at: Point,
        /// vwap:SYM:FROM..TO or fixed:QUOTE:PRICE
        #[arg(long)]
        price: String,
    },
    /// Custody, obligations and hot-wallet share per asset and pool, violations flagged.
    Segregation {
        dir: PathBuf,
        #[arg(long, value_parser = point)]
        at: Option<Point>,
    },
    /// House policy over time and fills with a house side, per instrument.
    Internalization { dir: PathBuf },
    /// The audit trail: every operator action with its actor, time and outcome.
    Actions { dir: PathBuf },
    /// Merkle sum tree roots over customer balances, and one proof file per customer.
    Liabilities {
        dir: PathBuf,
        #[arg(long, value_parser = point)]
        at: Option<Point>,
        /// Directory for roots.json and account-NNNNNNNNNN.json.
        #[arg(long)]
        out: PathBuf,
        /// 64 hex digits; the leaves' nonces derive from it (random when absent).
        #[arg(long)]
        secret: Option<String>,
    },
    /// Check a customer's proof file against a published root.
    VerifyInclusion {
        proof: PathBuf,
        /// The published root hash, 64 hex digits.
        #[arg(long)]
        root: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Invariants {
    EveryCommand,
    EveryBatch,
    Final,
}

#[derive(Clone, Copy, ValueEnum)]
enum PoolArg {
    Customer,
    House,
}

fn point(text: &str) -> Result<Point, String> {
    Point::parse(text).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match (cli.json, cli.csv) {
        (true, _) => Format::Json,
        (_, true) => Format::Csv,
        _ => Format::Table,
    };
    match run(cli.command, format) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kinko-replay: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn print(report: &impl Report, format: Format) {
    print!("{}", render(report, format));
}

fn run(command: Command, format: Format) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        Command::Verify {
            dir,
            invariants,
            allow_torn_tail,
            quiet,
        } => {
            let options = VerifyOptions {
                invariants: match invariants {
                    Invariants::EveryCommand => InvariantCheck::EveryCommand,
                    Invariants::EveryBatch => InvariantCheck::EveryBatch,
                    Invariants::Final => InvariantCheck::Final,
                },
                torn_tail: if allow_torn_tail {
                    TornTail::Allow
                } else {
                    TornTail::Refuse
                },
                progress: if quiet {
                    Progress::Quiet
                } else {
                    Progress::for_stderr()
                },
            };
            let outcome = replay::verify(&dir, &options);
            print(&VerifyReport::new(&outcome), format);
            return Ok(if outcome.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::VerifyInclusion { proof, root } => {
            let text = std::fs::read_to_string(&proof).map_err(ReplayError::from)?;
            let document = liabilities::parse_proof(&text)?;
            match liabilities::verify_inclusion(&document, &root) {
                Ok(report) => print(&report, format),
                Err(e) => {
                    eprintln!("kinko-replay: inclusion NOT verified: {e}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Command::Liabilities {
            dir,
            at,
            out,
            secret,
        } => {
            let secret = match secret {
                Some(hex) => {
                    replay::merkle::from_hex(&hex).ok_or("--secret must be 64 hex digits")?
                }
                None => replay::merkle::random_secret()?,
            };
            let read = replay::open_journal(&dir)?;
            let report = liabilities::liabilities(&read, at, &secret)?;
            let written = liabilities::write_proofs(&report, &out)?;
            print(&report, format);
            eprintln!(
                "kinko-replay: wrote {} and {written} proof files to {}",
                liabilities::ROOTS_FILE,
                out.display()
            );
        }
        other => report(other, format)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The reports that only read a journal and print.
fn report(command: Command, format: Format) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Balances {
            dir,
            at,
            account,
            pool,
        } => {
            let read = replay::open_journal(&dir)?;
            let query = balances::BalanceQuery {
                at,
                account,
                pool: pool.map(|p| match p {
                    PoolArg::Customer => Pool::Customer,
                    PoolArg::House => Pool::House,
                }),
            };
            print(&balances::balances(&read, &query)?, format);
        }
        Command::Trades {
            dir,
            account,
            instrument,
            from,
            to,
        } => {
            let read = replay::open_journal(&dir)?;
            let query = trades::TradeQuery {
                account,
                instrument,
                window: Window { from, to },
            };
            print(&trades::trades(&read, &query)?, format);
        }
        Command::Vwap {
            dir,
            instrument,
            from,
            to,
        } => {
            let read = replay::open_journal(&dir)?;
            let window = Window {
                from: Some(from),
                to: Some(to),
            };
            print(&vwap::vwap(&read, &instrument, window)?, format);
        }
        Command::Compensation {
            dir,
            asset,
            at,
            price,
        } => {
            let read = replay::open_journal(&dir)?;
            let query = compensation::CompensationQuery {
                asset,
                at,
                price: compensation::PriceSource::parse(&price)?,
            };
            print(&compensation::compensation(&read, &query)?, format);
        }
        Command::Segregation { dir, at } => {
            let read = replay::open_journal(&dir)?;
            print(&segregation::segregation(&read, at)?, format);
        }
        Command::Internalization { dir } => {
            let read = replay::open_journal(&dir)?;
            print(&internalization::internalization(&read)?, format);
        }
        Command::Actions { dir } => {
            let read = replay::open_journal(&dir)?;
            print(&actions::actions(&read)?, format);
        }
        Command::Verify { .. } | Command::VerifyInclusion { .. } | Command::Liabilities { .. } => {
            unreachable!("handled by run")
        }
    }
    Ok(())
}
