//! What the `ws` and `fix` scenarios share: the real `kinko serve` stack (engine thread, journal,
//! hub, sessions) started in this process on loopback with the rate limits out of the way, a fresh
//! data folder for every row, and the rows of a run at each offered rate in both durability modes.

use std::net::SocketAddr;

use gateway::config::{default_config, DurabilityName, IdleMode, ServeConfig, Transport};
use tokio::runtime::Runtime;

use crate::measure::{probe_stalls, Percentiles, Row, Stalls};
use crate::scenarios::journal::scratch_dir;

/// How long each row offers its rate.
pub const RUN_SECONDS: u64 = 2;

/// How long the two-core stall probe spins.
pub fn stall_probe(length: crate::scenarios::Length) -> std::time::Duration {
    match length {
        crate::scenarios::Length::Full => std::time::Duration::from_secs(2),
        crate::scenarios::Length::Quick => std::time::Duration::from_millis(500),
    }
}

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

/// How a row's server runs: the journal's durability and how the server's threads wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `durability = "process"`, `idle = "park"`: the default configuration (in plain TCP).
    Process,
    /// `durability = "fsync"`, `idle = "park"`.
    Fsync,
    /// `durability = "process"`, `idle = "spin"`: the engine thread spins on one core and the
    /// gateway polls on one runtime thread, which the load generator's tasks share.
    Spin,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Process, Mode::Fsync, Mode::Spin];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Process => "process",
            Mode::Fsync => "fsync",
            Mode::Spin => "spin",
        }
    }

    fn durability(self) -> DurabilityName {
        match self {
            Mode::Process | Mode::Spin => DurabilityName::Process,
            Mode::Fsync => DurabilityName::Fsync,
        }
    }

    fn idle(self) -> IdleMode {
        match self {
            Mode::Process | Mode::Fsync => IdleMode::Park,
            Mode::Spin => IdleMode::Spin,
        }
    }
}

/// The default configuration on ephemeral loopback ports, with limits no load here reaches, in
/// plain TCP: the figures of docs/PERFORMANCE.md were measured without TLS and stay comparable.
pub fn config(dir: &std::path::Path, mode: Mode) -> ServeConfig {
    let mut config = default_config();
    config.server.data = dir.to_path_buf();
    config.server.http = "127.0.0.1:0".parse().unwrap();
    config.server.fix = "127.0.0.1:0".parse().unwrap();
    config.server.transport = Transport::Plaintext;
    config.server.durability = mode.durability();
    config.server.idle = mode.idle();
    config.limits.connection_rate_per_sec = 1_000_000;
    config.limits.connection_burst = 1_000_000;
    config.limits.account_rate_per_sec = 1_000_000;
    config.limits.account_burst = 1_000_000;
    config
}

/// For each mode and rate, a fresh server and `measure(runtime, server, rate, mode)`; rows named
/// `{scenario}:{mode}:{series}@{rate}`. The server runs on as many tokio workers as `kinko serve`
/// gives it on this machine in that mode (both cores parking, one spinning); `measure` may use
/// the runtime for its own tasks.
pub fn run_rates(
    scenario: &str,
    rates: &[u64],
    mut measure: impl FnMut(&Runtime, Served, u64, Mode) -> Sampled,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for mode in Mode::ALL {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(
                mode.idle()
                    .gateway_workers(gateway::config::machine_cores()),
            )
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mode_name = mode.name();
        for &rate in rates {
            let dir = scratch_dir(&format!("{scenario}-{mode_name}-{rate}"));
            let running = runtime
                .block_on(gateway::server::start(config(&dir, mode)))
                .expect("server starts");
            let served = Served {
                http: running.http,
                fix: running.fix,
            };
            let sampled = measure(&runtime, served, rate, mode);
            let _ = runtime.block_on(running.shutdown());
            let _ = std::fs::remove_dir_all(&dir);
            // The master key of API-key secrets lives beside the data folder, never in it.
            let _ = std::fs::remove_file(format!("{}.master-key", dir.display()));
            let count = sampled.series.first().map_or(0, |(_, s)| s.len()) as u64;
            for (suffix, samples) in &sampled.series {
                rows.push(Row {
                    scenario: format!("{scenario}:{mode_name}:{suffix}@{rate}"),
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

/// A latency bar of an issue at one offered rate, judged on the `ack` rows of the `process` and
/// `spin` modes (both `process` durability, which is what the bars name): one line per row found.
pub fn bar_notes(
    scenario: &str,
    issue: &str,
    rate: u64,
    p50_ns: u64,
    p99_ns: u64,
    rows: &[Row],
) -> Vec<String> {
    let verdict = |ns: u64, bar_ns: u64| if ns < bar_ns { "met" } else { "MISSED" };
    [Mode::Process, Mode::Spin]
        .iter()
        .filter_map(|mode| {
            let name = format!("{scenario}:{}:ack@{rate}", mode.name());
            let row = rows.iter().find(|row| row.scenario == name)?;
            let (p50, p99) = (row.latency.p50_ns, row.latency.p99_ns);
            Some(format!(
                "bar ({issue}) at {rate}/s: {name} p50 {:.1} µs < {} µs {}; p99 {:.1} µs < {} µs {}",
                p50 as f64 / 1_000.0,
                p50_ns / 1_000,
                verdict(p50, p50_ns),
                p99 as f64 / 1_000.0,
                p99_ns / 1_000,
                verdict(p99, p99_ns),
            ))
        })
        .collect()
}

/// A rate is sustained when its row acknowledged at least this share of the offered rate...
const SUSTAINED_SHARE: f64 = 0.95;
/// ...and its p99 stayed under this: a queue that grows for the whole run has a p99 of its length.
const SUSTAINED_P99_NS: u64 = 10_000_000;

/// Per mode, the highest rate of this run whose `ack` row was sustained (see above), and the
/// first rate tried that was not: the answer to "how fast can it go" at the resolution of the
/// rates tried.
pub fn sustained_note(scenario: &str, rows: &[Row]) -> String {
    let per_mode: Vec<String> = Mode::ALL
        .iter()
        .map(|mode| {
            let prefix = format!("{scenario}:{}:ack@", mode.name());
            let mut tried: Vec<(u64, bool)> = rows
                .iter()
                .filter(|row| row.scenario.starts_with(&prefix))
                .filter_map(|row| {
                    let offered = row.offered_per_sec?;
                    let held = row.ops_per_sec >= SUSTAINED_SHARE * offered as f64
                        && row.latency.p99_ns < SUSTAINED_P99_NS;
                    Some((offered, held))
                })
                .collect();
            tried.sort_unstable();
            let highest = tried.iter().take_while(|(_, held)| *held).last();
            let failed = tried.iter().find(|(_, held)| !held);
            let highest = highest.map_or("none".to_string(), |(rate, _)| format!("{rate}/s"));
            match failed {
                Some((rate, _)) => format!("{} {highest} (not {rate}/s)", mode.name()),
                None => format!("{} {highest} (the highest tried)", mode.name()),
            }
        })
        .collect();
    format!(
        "highest sustained rate of the rates tried (acknowledged >= {:.0}% of offered, p99 < {} ms): {}",
        SUSTAINED_SHARE * 100.0,
        SUSTAINED_P99_NS / 1_000_000,
        per_mode.join("; ")
    )
}

/// What the platform takes from two threads spinning at once, one per core, as the `spin` rows'
/// engine thread and runtime thread do: the floor under their tails.
pub fn two_core_stalls(duration: std::time::Duration) -> String {
    let [a, b]: [Stalls; 2] = std::thread::scope(|scope| {
        let probes = [(); 2].map(|()| scope.spawn(move || probe_stalls(duration)));
        probes.map(|probe| probe.join().expect("stall probe"))
    });
    let one = |s: Stalls| {
        format!(
            "{:.0} stalls/s over {} µs, {:.2}% of the time, longest {:.2} ms",
            s.per_sec,
            crate::measure::STALL_NS_MIN / 1_000,
            100.0 * s.time_share,
            s.max_ns as f64 / 1e6
        )
    };
    format!(
        "platform, two threads spinning at once for {:.1} s (the `spin` rows' floor): {}; {}",
        duration.as_secs_f64(),
        one(a),
        one(b)
    )
}

/// Bytes of one echo: about an order's JSON.
const ECHO_BYTES: usize = 200;

/// The floor under the `ws` and `fix` round trips: one thread echoing 200-byte messages back on a
/// loopback TCP connection to another, which sends one every `1/rate` s (spinning until it is due)
/// and times each from its scheduled send to its echo. With `spin` both ends poll non-blocking
/// sockets and never sleep (the `spin` rows' setting); without, both block in `read` between
/// messages, as a parking server and its client do. No Kinko code runs: what this costs is the
/// kernel's and the machine's.
pub fn echo_floor(rate: u64, duration: std::time::Duration, spin: bool) -> Percentiles {
    use std::io::{ErrorKind, Read, Write};
    fn read_some(stream: &mut std::net::TcpStream, buffer: &mut [u8], spin: bool) -> usize {
        loop {
            match stream.read(buffer) {
                Ok(read) => return read,
                Err(e) if spin && e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(e) => panic!("echo: {e}"),
            }
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        stream.set_nonblocking(spin).expect("blocking mode");
        let mut buffer = [0u8; ECHO_BYTES];
        loop {
            let read = read_some(&mut stream, &mut buffer, spin);
            if read == 0 {
                return;
            }
            stream.write_all(&buffer[..read]).expect("echo");
        }
    });
    let mut client = std::net::TcpStream::connect(addr).expect("connect");
    client.set_nodelay(true).expect("nodelay");
    client.set_nonblocking(spin).expect("blocking mode");
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let message = [7u8; ECHO_BYTES];
    let mut buffer = [0u8; ECHO_BYTES];
    let mut samples = Vec::with_capacity(total as usize);
    let start = std::time::Instant::now();
    for step in 0..total {
        let due_ns = crate::measure::scheduled_ns(step, rate);
        while (start.elapsed().as_nanos() as u64) < due_ns {
            std::hint::spin_loop();
        }
        client.write_all(&message).expect("send");
        let mut got = 0;
        while got < ECHO_BYTES {
            got += read_some(&mut client, &mut buffer[got..], spin);
        }
        samples.push((start.elapsed().as_nanos() as u64).saturating_sub(due_ns));
    }
    drop(client);
    echo.join().expect("echo thread");
    Percentiles::from_samples(&samples)
}

/// [`echo_floor`] both ways at `rate`, as a note.
pub fn echo_floor_note(rate: u64, duration: std::time::Duration) -> String {
    let us = |ns: u64| ns as f64 / 1_000.0;
    let [blocking, spinning] = [false, true].map(|spin| echo_floor(rate, duration, spin));
    format!(
        "floor: a bare loopback TCP echo of {ECHO_BYTES} bytes between two threads at {rate}/s, no Kinko \
         code: p50 {:.1} µs, p99 {:.1} µs with both ends blocking in read (the process and fsync \
         rows' floor); p50 {:.1} µs, p99 {:.1} µs with both ends spinning (the spin rows')",
        us(blocking.p50_ns),
        us(blocking.p99_ns),
        us(spinning.p50_ns),
        us(spinning.p99_ns)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, offered: u64, achieved: f64, p99_ns: u64) -> Row {
        Row {
            scenario: name.into(),
            count: 100,
            ops_per_sec: achieved,
            offered_per_sec: Some(offered),
            latency: Percentiles::from_samples(&[p99_ns; 100]),
            others_cpu_share: None,
        }
    }

    #[test]
    fn the_sustained_rate_is_the_last_held_before_the_first_not_held() {
        let rows = [
            row("ws:process:ack@1000", 1_000, 1_000.0, 200_000),
            row("ws:process:fill@40000", 40_000, 10.0, 900_000_000),
            row("ws:process:ack@20000", 20_000, 19_990.0, 9_000_000),
            row("ws:process:ack@10000", 10_000, 9_999.0, 300_000),
            row("ws:process:ack@40000", 40_000, 39_000.0, 20_000_000),
            row("ws:fsync:ack@1000", 1_000, 900.0, 100_000),
            row("ws:fsync:ack@10000", 10_000, 9_990.0, 100_000),
            row("ws:spin:ack@1000", 1_000, 1_000.0, 50_000),
            row("ws:spin:ack@10000", 10_000, 10_000.0, 60_000),
        ];
        let note = sustained_note("ws", &rows);
        assert!(note.contains("process 20000/s (not 40000/s)"), "{note}");
        assert!(note.contains("fsync none (not 1000/s)"), "{note}");
        assert!(note.contains("spin 10000/s (the highest tried)"), "{note}");
    }
}
