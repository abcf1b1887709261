//! The fuzz targets: one per decoder that reads outside input. Each module says what it feeds,
//! what it checks beyond "does not panic", and why.

pub mod config;
pub mod fix;
pub mod journal;
pub mod mem;
pub mod replay;
pub mod snapshot;
pub mod ws;

use super::Target;

/// Every target, in the order `--target all` runs them.
pub static ALL: &[Target] = &[
    Target {
        name: "fix",
        about: "FIX 4.4 stream decoder, dictionary validation, order translation",
        seeds: fix::seeds,
        run: fix::run,
        dictionary: fix::DICTIONARY,
        repair: Some(fix::repair),
        input_bytes_max: 4_096,
    },
    Target {
        name: "ws",
        about: "WebSocket JSON requests and their price, quantity and id conversions",
        seeds: ws::seeds,
        run: ws::run,
        dictionary: ws::DICTIONARY,
        repair: None,
        input_bytes_max: 2_048,
    },
    Target {
        name: "config",
        about: "the server's TOML configuration (ServeConfig::from_toml)",
        seeds: config::seeds,
        run: config::run,
        dictionary: config::DICTIONARY,
        repair: None,
        input_bytes_max: 8_192,
    },
    Target {
        name: "journal",
        about: "journal segments: records, scan, recovery's tail cut, re-execution",
        seeds: journal::seeds,
        run: journal::run,
        dictionary: journal::DICTIONARY,
        repair: Some(journal::repair),
        input_bytes_max: 64 * 1024,
    },
    Target {
        name: "journal-burst",
        about: "a burst of up to 32 flipped bits in a valid journal is never a different record",
        seeds: journal::burst_seeds,
        run: journal::burst_run,
        dictionary: &[],
        repair: None,
        input_bytes_max: 8,
    },
    Target {
        name: "snapshot",
        about: "snapshot files: header, state hash, payload decoding",
        seeds: snapshot::seeds,
        run: snapshot::run,
        dictionary: &[],
        repair: Some(snapshot::repair),
        input_bytes_max: 64 * 1024,
    },
    Target {
        name: "snapshot-burst",
        about: "a burst of flipped bits in a valid snapshot file is never a different state",
        seeds: snapshot::burst_seeds,
        run: snapshot::burst_run,
        dictionary: &[],
        repair: None,
        input_bytes_max: 8,
    },
    Target {
        name: "replay-time",
        about: "kinko-replay's --at/--from/--to arguments (seq or RFC 3339 instant)",
        seeds: replay::time_seeds,
        run: replay::time_run,
        dictionary: replay::TIME_DICTIONARY,
        repair: None,
        input_bytes_max: 256,
    },
    Target {
        name: "replay-price",
        about: "kinko-replay's --price argument (vwap:SYM:FROM..TO or fixed:QUOTE:PRICE)",
        seeds: replay::price_seeds,
        run: replay::price_run,
        dictionary: replay::PRICE_DICTIONARY,
        repair: None,
        input_bytes_max: 256,
    },
    Target {
        name: "replay-proof",
        about: "kinko-replay verify-inclusion: a customer's proof file and the root it is checked against",
        seeds: replay::proof_seeds,
        run: replay::proof_run,
        dictionary: replay::PROOF_DICTIONARY,
        repair: None,
        input_bytes_max: 16 * 1024,
    },
];

/// Spreads an outcome number over the class space (so that nearby numbers are distinct classes).
pub fn class(outcome: u64) -> u64 {
    crate::rng::SplitMix64::new(outcome).next_u64()
}

pub fn fnv(bytes: &[u8]) -> u64 {
    super::fnv1a(bytes)
}
