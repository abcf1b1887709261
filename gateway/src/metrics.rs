//! Prometheus text-format metrics: engine counters, rejects by reason, queue depth, journal bytes,
//! and a histogram of the time from receiving a request to sending its acknowledgement.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use engine::runtime::Submitter;
use parking_lot::Mutex;

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 10] =
    [10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000, 100_000];

#[derive(Default)]
pub struct Metrics {
    rejects: Mutex<BTreeMap<String, u64>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    pub connections: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub rate_limited: AtomicU64,
}

impl Metrics {
    pub fn reject(&self, reason: &str) {
        *self.rejects.lock().entry(reason.to_string()).or_insert(0) += 1;
    }

    pub fn latency(&self, us: u64) {
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, submitter: &Submitter) -> String {
        let stats = submitter.stats();
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "kinko_commands_total",
            "Commands sequenced and journaled.",
            stats.commands.load(Ordering::Relaxed),
        );
        counter(
            "kinko_batches_total",
            "Batches committed to the journal.",
            stats.batches.load(Ordering::Relaxed),
        );
        counter(
            "kinko_busy_total",
            "Commands refused because the engine queue was full.",
            stats.busy.load(Ordering::Relaxed),
        );
        counter(
            "kinko_snapshots_total",
            "Snapshots written since start (periodic and at a clean stop).",
            stats.snapshots.load(Ordering::Relaxed),
        );
        counter(
            "kinko_snapshot_failures_total",
            "Periodic snapshots that could not be written since start (trading went on).",
            stats.snapshot_failures.load(Ordering::Relaxed),
        );
        counter(
            "kinko_slow_consumers_total",
            "Connections closed for not reading.",
            self.slow_consumers.load(Ordering::Relaxed),
        );
        counter(
            "kinko_rate_limited_total",
            "Requests refused by a rate limit.",
            self.rate_limited.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP kinko_journal_bytes Bytes written to the journal since start.\n# TYPE kinko_journal_bytes gauge");
        let _ = writeln!(
            out,
            "kinko_journal_bytes {}",
            stats.journal_bytes.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP kinko_engine_up 1 while the engine thread runs; 0 once it has stopped on an error (see /health).\n# TYPE kinko_engine_up gauge");
        let _ = writeln!(
            out,
            "kinko_engine_up {}",
            u8::from(submitter.failure().is_none())
        );
        let _ = writeln!(out, "# HELP kinko_queue_depth Commands waiting in the engine's inbound queue.\n# TYPE kinko_queue_depth gauge");
        let _ = writeln!(out, "kinko_queue_depth {}", submitter.queue_depth());
        let _ = writeln!(
            out,
            "# HELP kinko_last_seq Last journaled sequence number.\n# TYPE kinko_last_seq gauge"
        );
        let _ = writeln!(
            out,
            "kinko_last_seq {}",
            stats.last_seq.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP kinko_connections Open WebSocket connections.\n# TYPE kinko_connections gauge"
        );
        let _ = writeln!(
            out,
            "kinko_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP kinko_rejects_total Rejected commands by reason.\n# TYPE kinko_rejects_total counter");
        for (reason, count) in self.rejects.lock().iter() {
            let _ = writeln!(out, "kinko_rejects_total{{reason=\"{reason}\"}} {count}");
        }
        let name = "kinko_request_latency_seconds";
        let _ = writeln!(out, "# HELP {name} From receiving a request to sending its acknowledgement.\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        cumulative += self.latency_buckets[LATENCY_BUCKETS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "{name}_count {}",
            self.latency_count.load(Ordering::Relaxed)
        );
        out
    }
}
