//! The fuzz targets of `kinko-fuzz` (`kinko_bench::fuzz`) as bounded property tests that run in
//! every `cargo test`: arbitrary bytes, valid inputs with random edits (and the target's repair of
//! checksums), a short deterministic mutation run per target, and every single-byte damage of the
//! seed journal and snapshot. The long runs are `kinko-fuzz` (docs/RELIABILITY.md, "Fuzzing").

use kinko_bench::fuzz::{self, targets, Budget, Target};
use proptest::prelude::*;

/// Cases per property unless PROPTEST_CASES says otherwise (CI keeps the default: bounded).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn target(name: &str) -> &'static Target {
    fuzz::find(name).unwrap_or_else(|| panic!("no target {name}"))
}

/// Runs a target on one input; a panic becomes a test failure that shows the input.
fn check(name: &str, input: &[u8]) -> Result<(), TestCaseError> {
    match fuzz::execute(target(name), input) {
        Ok(_) => Ok(()),
        Err(panic) => Err(TestCaseError::fail(format!(
            "{name} panicked: {panic}\ninput: {:?}",
            String::from_utf8_lossy(input)
        ))),
    }
}

/// A seed of the target with edits: (where, byte, kind) as in the fuzzer's simplest mutations.
fn edited(
    name: &str,
    seed: usize,
    edits: &[(prop::sample::Index, u8, u8)],
    repair: bool,
) -> Vec<u8> {
    let t = target(name);
    let seeds = (t.seeds)();
    let mut bytes = seeds[seed % seeds.len()].clone();
    for (at, byte, kind) in edits {
        let len = bytes.len();
        let i = at.index(len.max(1));
        match kind % 3 {
            0 if len > 0 => bytes[i.min(len - 1)] = *byte,
            1 => bytes.insert(i.min(len), *byte),
            _ if len > 1 => {
                bytes.remove(i.min(len - 1));
            }
            _ => {}
        }
    }
    if let (true, Some(repair)) = (repair, t.repair) {
        repair(&mut bytes);
    }
    bytes
}

macro_rules! properties {
    ($($module:ident => $name:literal, $bytes_max:expr;)*) => {$(
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(cases()))]

                #[test]
                fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..$bytes_max)) {
                    check($name, &bytes)?;
                }

                #[test]
                fn edited_seeds(
                    seed in 0usize..64,
                    edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<u8>()), 1..8),
                    repair in any::<bool>(),
                ) {
                    check($name, &edited($name, seed, &edits, repair))?;
                }
            }
        }
    )*};
}

properties! {
    fix => "fix", 2_048;
    ws => "ws", 512;
    config => "config", 1_024;
    journal => "journal", 4_096;
    journal_burst => "journal-burst", 8;
    snapshot => "snapshot", 4_096;
    snapshot_burst => "snapshot-burst", 8;
    replay_time => "replay-time", 64;
    replay_price => "replay-price", 96;
    replay_proof => "replay-proof", 1_024;
}

#[test]
fn every_target_survives_a_short_mutation_run() {
    let dir = std::env::temp_dir().join(format!("kinko-fuzz-test-{}", std::process::id()));
    for t in fuzz::all() {
        // A few thousand executions each: under a second per target in the test profile.
        let execs = if t.name.starts_with("journal") || t.name.starts_with("snapshot") {
            500
        } else {
            3_000
        };
        let report = fuzz::run(t, 12, Budget::Execs(execs), &dir);
        assert_eq!(
            report.crashes,
            0,
            "{}: {:?} (inputs in {})",
            t.name,
            report.panics,
            dir.display()
        );
        assert!(report.execs >= execs);
        assert!(
            report.classes > 1,
            "{} saw one outcome only: the mutations reach nothing",
            t.name
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_single_byte_damage_of_the_seed_journal_is_caught_or_harmless() {
    let len: usize = targets::journal::fixture()
        .segments
        .iter()
        .map(Vec::len)
        .sum();
    for offset in 0..len as u32 {
        for mask in [0x01u8, 0xff] {
            let mut input = offset.to_le_bytes().to_vec();
            input.push(mask);
            check("journal-burst", &input).unwrap();
        }
    }
}

#[test]
fn every_single_byte_damage_of_a_snapshot_is_caught_or_harmless() {
    let (seq, state) = targets::journal::fixture().snapshots.last().unwrap();
    let len = engine::snapshot::file_bytes(*seq, state).0.len();
    for offset in 0..len as u32 {
        let mut input = offset.to_le_bytes().to_vec();
        input.push(0x10);
        check("snapshot-burst", &input).unwrap();
    }
}

#[test]
fn the_seeds_pass_their_own_checks() {
    for t in fuzz::all() {
        for (i, seed) in (t.seeds)().iter().enumerate() {
            if let Err(panic) = fuzz::execute(t, seed) {
                panic!("{} seed {i}: {panic}", t.name);
            }
        }
    }
}
