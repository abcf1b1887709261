//! `kinko-fuzz`: a mutation fuzzer for every decoder that reads outside input (issue #12,
//! "Fuzzing"). The toolchain the project builds with is stable, where libFuzzer's coverage
//! instrumentation is not available, so this fuzzer is coverage-less: it starts from a seed corpus
//! of valid inputs per target, applies stacked random edits (bit flips, byte sets, inserts,
//! deletes, duplications, splices with other corpus entries, boundary numbers, format tokens),
//! optionally repairs what a checksum would otherwise reject ([`Target::repair`]), and keeps an
//! input in the corpus when it produced an outcome not seen before (a cheap behavioural feedback
//! in place of coverage). Everything is a pure function of `--seed`.
//!
//! A target panics when a property breaks (an `assert!` in the target, or any panic or overflow in
//! the decoder behind it); the runner catches it per input, saves the input under
//! `target/fuzz/crashes/TARGET-HASH.bin` and counts it. The property tests in
//! `benches/tests/fuzz_targets.rs` drive the same targets in every `cargo test`.
//!
//! It lives in the benches crate because that crate already depends on the engine, the gateway
//! and replay, and is never shipped: the fuzzer adds no dependency to the crates it tests.

pub mod mutate;
pub mod targets;

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::rng::SplitMix64;
pub use mutate::Mutator;

/// Inputs kept beside the seeds for producing new outcomes; a bound, so a long run's memory stays flat.
pub const CORPUS_ENTRIES_MAX: usize = 512;
/// Crashing inputs written per target; later ones with a panic location already seen are counted
/// but not written.
pub const CRASH_FILES_MAX: usize = 32;

/// One decoder under test.
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    /// Valid inputs to mutate (built once per run; may run the real engine to write a journal).
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Runs the decoder on one input and checks its properties, panicking when one breaks.
    /// Returns a class of outcome (which error, which message type): a new class keeps the input.
    pub run: fn(&[u8]) -> u64,
    /// Tokens of the format that the mutator inserts (`8=FIX.4.4`, `"req_id":`, `[[accounts]]`).
    pub dictionary: &'static [&'static [u8]],
    /// After mutation, half of the inputs are repaired (checksums, lengths, hash chains
    /// recomputed) so that the edits reach the decoder behind the integrity check.
    pub repair: Option<fn(&mut Vec<u8>)>,
    /// Inputs are cut to this length.
    pub input_bytes_max: usize,
}

/// When a run stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    Execs(u64),
    Duration(Duration),
}

/// What one target's run came to.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub target: &'static str,
    pub execs: u64,
    pub seconds: f64,
    pub crashes: u64,
    /// Distinct panic messages (with their location), in the order found.
    pub panics: Vec<String>,
    pub crash_files: Vec<PathBuf>,
    pub corpus: usize,
    pub classes: usize,
    pub slowest_us: u64,
}

impl Report {
    pub fn execs_per_sec(&self) -> f64 {
        self.execs as f64 / self.seconds.max(1e-9)
    }
}

thread_local! {
    /// The message and location of the last panic on this thread, set by the hook.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// True while [`execute`] runs a target on this thread.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Set by `kinko-fuzz --input`: panics record their backtrace.
pub static BACKTRACES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Wraps the panic hook, once per process: a panic inside [`execute`] is recorded instead of
/// printed (a run may see thousands); any other panic goes to the previous hook as before.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(Cell::get) {
                return previous(info);
            }
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            // When reproducing one input, the backtrace too (not in runs: a bug found a thousand
            // times would cost a thousand captures).
            let backtrace = match BACKTRACES.load(std::sync::atomic::Ordering::Relaxed) {
                true => format!("\n{}", std::backtrace::Backtrace::force_capture()),
                false => String::new(),
            };
            PANIC.with(|p| *p.borrow_mut() = Some(format!("{location}: {message}{backtrace}")));
        }));
    });
}

/// Runs `target` on one input; `Err` holds the panic's location and message.
pub fn execute(target: &Target, input: &[u8]) -> Result<u64, String> {
    install_panic_hook();
    CATCHING.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    CATCHING.with(|c| c.set(false));
    match result {
        Ok(class) => Ok(class),
        Err(_) => Err(PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "panic without a message".into())),
    }
}

/// Fuzzes one target until the budget is spent. Crashing inputs go to `crash_dir`.
pub fn run(target: &Target, seed: u64, budget: Budget, crash_dir: &Path) -> Report {
    let started = Instant::now();
    let seeds = (target.seeds)();
    assert!(!seeds.is_empty(), "target {} has no seed", target.name);
    let mut report = Report {
        target: target.name,
        ..Report::default()
    };
    let mut classes = std::collections::HashSet::new();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    // The seeds themselves must pass: a target that fails on valid input checks nothing.
    for input in &seeds {
        record(target, input, &mut report, &mut classes, crash_dir);
    }
    let mut mutator = Mutator::new(seed ^ fnv1a(target.name.as_bytes()), target.dictionary);
    let mut rng = SplitMix64::new(seed.rotate_left(17) ^ 0x5eed);
    let mut input = Vec::with_capacity(target.input_bytes_max);
    loop {
        if report.execs.is_multiple_of(128) && spent(budget, report.execs, started) {
            break;
        }
        let from_corpus = !corpus.is_empty() && rng.chance_per_mille(500);
        let parent = if from_corpus {
            &corpus[rng.below(corpus.len() as u64) as usize]
        } else {
            &seeds[rng.below(seeds.len() as u64) as usize]
        };
        input.clear();
        input.extend_from_slice(parent);
        let other = &seeds[rng.below(seeds.len() as u64) as usize];
        mutator.mutate(&mut input, other, target.input_bytes_max);
        if let Some(repair) = target.repair {
            if rng.chance_per_mille(500) {
                repair(&mut input);
            }
        }
        let before = Instant::now();
        let new_class = record(target, &input, &mut report, &mut classes, crash_dir);
        report.slowest_us = report.slowest_us.max(before.elapsed().as_micros() as u64);
        if new_class {
            if corpus.len() < CORPUS_ENTRIES_MAX {
                corpus.push(input.clone());
            } else {
                let slot = rng.below(CORPUS_ENTRIES_MAX as u64) as usize;
                corpus[slot].clone_from(&input);
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.corpus = corpus.len();
    report.classes = classes.len();
    report
}

fn spent(budget: Budget, execs: u64, started: Instant) -> bool {
    match budget {
        Budget::Execs(n) => execs >= n,
        Budget::Duration(d) => started.elapsed() >= d,
    }
}

/// Executes one input and books the result; true when its outcome class is new.
fn record(
    target: &Target,
    input: &[u8],
    report: &mut Report,
    classes: &mut std::collections::HashSet<u64>,
    crash_dir: &Path,
) -> bool {
    report.execs += 1;
    match execute(target, input) {
        Ok(class) => classes.insert(class),
        Err(message) => {
            report.crashes += 1;
            // One file per distinct panic location and message: a bug found a million times is
            // still one bug.
            if !report.panics.contains(&message) {
                report.panics.push(message);
                if report.crash_files.len() < CRASH_FILES_MAX {
                    match save_crash(crash_dir, target.name, input) {
                        Ok(path) => report.crash_files.push(path),
                        Err(e) => eprintln!("kinko-fuzz: cannot save a crash: {e}"),
                    }
                }
            }
            false
        }
    }
}

/// Writes a crashing input to `DIR/TARGET-HASH.bin` (the hash of its bytes: the same input is
/// one file).
pub fn save_crash(dir: &Path, target: &str, input: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{target}-{:016x}.bin", fnv1a(input)));
    std::fs::write(&path, input)?;
    Ok(path)
}

/// FNV-1a, 64 bits: names crash files and mixes target names into the seed. Not for security.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where crashing inputs go: `target/fuzz/crashes`, under CARGO_TARGET_DIR when it is set.
pub fn crash_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("fuzz").join("crashes")
}

/// Every target, in the order `--target all` runs them.
pub fn all() -> &'static [Target] {
    targets::ALL
}

pub fn find(name: &str) -> Option<&'static Target> {
    all().iter().find(|t| t.name == name)
}
