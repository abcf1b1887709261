//! What the `ws` and `fix` scenarios share: the real `kinko serve` stack (engine thread, journal,
//! hub, sessions) started in this process on loopback with the rate limits out of the way, a fresh
//! data folder for every row, and the rows of a run at each offered rate in both durability modes.

use std::net::SocketAddr;

use gateway::config::{default_config, DurabilityName, ServeConfig, Transport};
use tokio::runtime::Runtime;

use crate::measure::{Percentiles, Row};
use crate::scenarios::journal::scratch_dir;

/// How long each row offers its rate.
pub const RUN_SECONDS: u64 = 2;

/// The server of one row.
#[derive(Clone, Copy, Debug)]
pub struct Served {
    /// HTTP and the WebSocket at `/ws`.
    pub http: SocketAddr,
    /// The FIX 4.4 acceptor.
    pub fix: SocketAddr,
}

/// What a load generator measured in one row.
pub struct Sampled {
    /// Latencies in ns, by the name that ends the row's scenario (`ack`, `fill`); the first
    /// series counts the orders.
    pub series: Vec<(&'static str, Vec<u64>)>,
    pub achieved_per_sec: f64,
}

/// The default configuration on ephemeral loopback ports, with limits no load here reaches, in
/// plain TCP: the figures of docs/PERFORMANCE.md were measured without TLS and stay comparable.
pub fn config(dir: &std::path::Path, durability: DurabilityName) -> ServeConfig {
    let mut config = default_config();
    config.server.data = dir.to_path_buf();
    config.server.http = "127.0.0.1:0".parse().unwrap();
    config.server.fix = "127.0.0.1:0".parse().unwrap();
    config.server.transport = Transport::Plaintext;
    config.server.durability = durability;
    config.limits.connection_rate_per_sec = 1_000_000;
    config.limits.connection_burst = 1_000_000;
    config.limits.account_rate_per_sec = 1_000_000;
    config.limits.account_burst = 1_000_000;
    config
}

/// For each durability mode and rate, a fresh server and `measure(runtime, server, rate)`; rows
/// named `{scenario}:{mode}:{series}@{rate}`. The server runs on two tokio workers, as
/// `kinko serve` does on this machine; `measure` may use the runtime for its own tasks.
pub fn run_rates(
    scenario: &str,
    rates: &[u64],
    mut measure: impl FnMut(&Runtime, Served, u64) -> Sampled,
) -> Vec<Row> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    for durability in [DurabilityName::Process, DurabilityName::Fsync] {
        let mode = format!("{durability:?}").to_lowercase();
        for &rate in rates {
            let dir = scratch_dir(&format!("{scenario}-{mode}-{rate}"));
            let running = runtime
                .block_on(gateway::server::start(config(&dir, durability)))
                .expect("server starts");
            let served = Served {
                http: running.http,
                fix: running.fix,
            };
            let sampled = measure(&runtime, served, rate);
            let _ = runtime.block_on(running.shutdown());
            let _ = std::fs::remove_dir_all(&dir);
            // The master key of API-key secrets lives beside the data folder, never in it.
            let _ = std::fs::remove_file(format!("{}.master-key", dir.display()));
            let count = sampled.series.first().map_or(0, |(_, s)| s.len()) as u64;
            for (suffix, samples) in &sampled.series {
                rows.push(Row {
                    scenario: format!("{scenario}:{mode}:{suffix}@{rate}"),
                    count,
                    ops_per_sec: sampled.achieved_per_sec,
                    offered_per_sec: Some(rate),
                    latency: Percentiles::from_samples(samples),
                    others_cpu_share: None,
                });
            }
        }
    }
    rows
}
