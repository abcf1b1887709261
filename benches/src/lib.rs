//! Kinko's benchmarks: the workload generator, the measurement loops and the scenarios behind the
//! `kinko-bench` binary, and the fixed book the criterion micro-benchmarks run on. Also the
//! `kinko-fuzz` mutation fuzzer ([`fuzz`]), here because this crate already depends on every crate
//! whose decoders it feeds and is never shipped.
//!
//! Benchmarks print figures; no unit test times anything. What can fail a build is the guard
//! ([`guard`]): a ratio between two figures of the same run falling far below its floor. They drive the engine through its public API only: nothing here re-implements
//! matching, and a replay that ends anywhere but where the generator's shadow matcher ended is a
//! bug, not a figure.

pub mod fixture;
pub mod fuzz;
pub mod guard;
pub mod machine;
pub mod measure;
pub mod report;
pub mod rng;
pub mod scenarios;
pub mod workload;
