//! The engine thread stops when its journal cannot be written: here a segment that cannot be
//! made (a directory stands where its file goes, and `create` fails as it would on a full disk).
//! Every session hears of it at once with `engine_stopped`, later requests are refused with it,
//! `/health` answers 503, `kinko serve` exits non-zero, and a restart recovers every command that
//! was acknowledged. A snapshot that cannot be written, on the other hand, does not stop it: the
//! journal has every command, and `/health` says `degraded` until a snapshot is written again.

mod common;
mod fixclient;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use fixclient::*;
use gateway::config::ServeConfig;
use serde_json::json;

/// Orders in flight at a time in the flood.
const IN_FLIGHT: usize = 200;

/// 1 MiB segments, and rate limits that let one connection write them full in seconds.
fn small_segments(dir: &Path) -> ServeConfig {
    let mut config = config(dir);
    config.server.journal_segment_mib = 1;
    let limits = &mut config.limits;
    limits.connection_rate_per_sec = 1_000_000;
    limits.connection_burst = 1_000_000;
    limits.account_rate_per_sec = 1_000_000;
    limits.account_burst = 1_000_000;
    config
}

/// Segment 1 is made ahead after the first batch and segment 2 after the first batch into
/// segment 1: a directory in segment 2's place fails that, and the rotation into segment 2 then
/// fails its commit. Returns the directory, to be removed before a restart.
async fn block_segment_2(data: &Path) -> PathBuf {
    let journal = data.join("journal");
    let since = Instant::now();
    while !journal.join("segment-000001.kjl").is_file() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "segment 1 never made"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let blocker = journal.join("segment-000002.kjl");
    std::fs::create_dir(&blocker).unwrap();
    blocker
}

/// What a flood of orders saw before its connection closed.
struct Flood {
    /// The sequence number of the last order acknowledged.
    acked_last: u64,
    acked: usize,
    /// Orders refused with `engine_stopped` before the close.
    refused: usize,
}

/// Sends alice's IOC bids (they rest nowhere: the book is empty), `IN_FLIGHT` at a time, until
/// the server closes the connection.
async fn flood_until_closed(alice: &mut Client) -> Flood {
    let mut flood = Flood {
        acked_last: 0,
        acked: 0,
        refused: 0,
    };
    for round in 0.. {
        assert!(
            round < 1_000,
            "the engine never stopped: {} acked",
            flood.acked
        );
        for i in 0..IN_FLIGHT {
            let client_order_id = round * IN_FLIGHT + i + 1;
            alice
                .send(
                    json!({"type": "new_order", "instrument": "BTC/JPY", "side": "buy",
                    "order_type": "limit", "tif": "ioc", "price": "14900000", "qty": "0.0001",
                    "client_order_id": client_order_id}),
                )
                .await;
        }
        let mut replies = 0;
        while replies < IN_FLIGHT {
            let Some(message) = alice.next().await else {
                return flood;
            };
            match message["type"].as_str() {
                Some("ack") => {
                    let seq = message["seq"].as_u64().unwrap();
                    assert!(
                        seq > flood.acked_last,
                        "acknowledged in sequence: {message}"
                    );
                    flood.acked_last = seq;
                    flood.acked += 1;
                    replies += 1;
                }
                Some("error") if message["req_id"].is_null() => {
                    // The notice just before the close.
                    assert_eq!(message["code"], "engine_stopped", "{message}");
                }
                Some("error") => {
                    assert_eq!(message["code"], "engine_stopped", "{message}");
                    flood.refused += 1;
                    replies += 1;
                }
                _ => {}
            }
        }
    }
    unreachable!()
}

/// The connection ended with the `engine_stopped` notice and a 1008 close frame.
fn assert_closed_as_engine_stopped(alice: &Client) {
    let notice = alice
        .seen
        .iter()
        .find(|m| m["type"] == "error" && m["req_id"].is_null())
        .expect("an engine_stopped notice before the close");
    assert_eq!(notice["code"], "engine_stopped");
    assert_eq!(
        alice.close_frame,
        Some(1008),
        "a close frame, not a dropped socket"
    );
}

fn assert_names_the_failure(text: &str) {
    assert!(
        text.contains("journal write failed") && text.contains("File exists"),
        "the engine's own reason, with the disk's error: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_closes_every_session_refuses_what_follows_and_loses_nothing_acked() {
    let dir = TempDir::new("engine-stopped");
    let config = small_segments(dir.path());
    let (server, addr) = start(config.clone()).await;
    let blocker = block_segment_2(dir.path()).await;
    let (status, health) = http(addr, "GET", "/health", None).await;
    assert_eq!((status, &health["status"]), (200, &json!("ok")), "{health}");
    let mut bob = FixClient::connect(server.fix, "bob").await;
    bob.logon(30, false).await;
    let mut alice = Client::connect(addr).await;
    alice.login_as("alice", false).await;

    let flood = flood_until_closed(&mut alice).await;
    assert!(
        flood.acked > 4_000,
        "{} orders acknowledged: segments 0 and 1 full before the stop",
        flood.acked
    );
    assert_closed_as_engine_stopped(&alice);
    // The FIX session is logged out with the same reason.
    let logout = bob.until_type("5").await;
    assert_fields(&logout, &[(58, "engine_stopped")]);
    let failure = tokio::time::timeout(Duration::from_secs(10), server.engine_stopped())
        .await
        .expect("the server is told the engine stopped");
    assert_names_the_failure(&failure);

    // The server says so, to monitoring and to whoever comes next.
    let (status, health) = http(addr, "GET", "/health", None).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "engine_stopped");
    assert_names_the_failure(health["reason"].as_str().unwrap());
    let committed = health["last_seq"].as_u64().unwrap();
    assert!(committed >= flood.acked_last, "{health}");
    let metrics = http_text(addr, "/metrics").await;
    assert!(metrics.contains("\nkinko_engine_up 0\n"), "{metrics}");
    let mut carol = Client::connect(addr).await;
    carol.login_as("alice", false).await;
    let refused = carol
        .order(
            json!({"side": "buy", "order_type": "limit", "price": "14900000", "qty": "1",
            "client_order_id": 1}),
        )
        .await;
    assert_eq!(refused["code"], "engine_stopped", "{refused}");
    assert_names_the_failure(refused["message"].as_str().unwrap());
    let mut bob = FixClient::connect(server.fix, "bob").await;
    bob.logon(30, true).await;
    bob.send("D", &limit("9", "1", "1", "14900000")).await;
    let rejected = report(&mut bob, "9", "8").await;
    assert_names_the_failure(rejected.get(58).unwrap());
    let error = server.shutdown().await.expect_err("not a clean stop");
    assert_names_the_failure(&error);

    // The disk mended, a restart has everything that was committed, every acknowledgement in it.
    std::fs::remove_dir(&blocker).unwrap();
    let (server, _) = start(config).await;
    let recovery = &server.shared.submitter.stats().last_seq;
    let recovered = recovery.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        recovered >= committed,
        "recovered to seq {recovered}, committed {committed}"
    );
    let read = engine::runtime::read_data_dir(dir.path()).unwrap();
    let acked = read
        .batches
        .iter()
        .flat_map(|batch| &batch.records)
        .any(|record| record.seq == flood.acked_last);
    assert!(
        acked,
        "the last acknowledged order, seq {}, is in the journal",
        flood.acked_last
    );
    server.shutdown().await.unwrap();
}

/// Sends `count` of alice's IOC bids (they rest nowhere: the book is empty), one at a time, and
/// asserts that each is acknowledged.
async fn orders_acknowledged(alice: &mut Client, first_id: u64, count: u64) {
    for client_order_id in first_id..first_id + count {
        let ack = alice
            .order(json!({"side": "buy", "order_type": "limit", "tif": "ioc",
                "price": "14900000", "qty": "0.0001", "client_order_id": client_order_id}))
            .await;
        assert_eq!(ack["type"], "ack", "order {client_order_id}: {ack}");
    }
}

/// The value of an unlabelled metric in `/metrics`.
async fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    let text = http_text(addr, "/metrics").await;
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in /metrics: {text}"));
    line.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_cannot_be_written_degrades_health_and_trading_goes_on() {
    let dir = TempDir::new("snapshot-blocked");
    let mut config = config(dir.path());
    config.server.snapshot_every_commands = 50;
    let (server, addr) = start(config.clone()).await;
    assert_eq!(metric(addr, "kinko_snapshot_failures_total").await, 0);
    // A file where the snapshot folder goes: every snapshot write fails, as on a broken disk.
    let folder = dir.path().join("snapshots");
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::write(&folder, b"not a folder").unwrap();
    let mut alice = Client::connect(addr).await;
    alice.login_as("alice", false).await;
    orders_acknowledged(&mut alice, 1, 120).await;

    let (status, health) = http(addr, "GET", "/health", None).await;
    assert_eq!(
        (status, &health["status"]),
        (200, &json!("degraded")),
        "{health}"
    );
    let failure = health["snapshot_failure"].as_str().unwrap();
    assert!(
        failure.starts_with("snapshot of seq ")
            && failure.contains(&format!("failed: {}: ", folder.display())),
        "{health}"
    );
    let failures = metric(addr, "kinko_snapshot_failures_total").await;
    assert!(failures >= 2, "a try every 50 commands: {failures}");
    assert_eq!(metric(addr, "kinko_engine_up").await, 1);

    // The folder back, the next snapshot due is written and health is whole again.
    std::fs::remove_file(&folder).unwrap();
    orders_acknowledged(&mut alice, 121, 60).await;
    let (status, health) = http(addr, "GET", "/health", None).await;
    assert_eq!((status, &health["status"]), (200, &json!("ok")), "{health}");
    assert!(health.get("snapshot_failure").is_none(), "{health}");
    assert!(metric(addr, "kinko_snapshots_total").await >= 1);
    assert_eq!(
        metric(addr, "kinko_snapshot_failures_total").await,
        failures
    );
    let last_seq = health["last_seq"].as_u64().unwrap();
    server.shutdown().await.expect("a clean stop");
    let (server, _) = start(config).await;
    let recovered = server
        .shared
        .submitter
        .stats()
        .last_seq
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        recovered >= last_seq,
        "recovered to {recovered}, was {last_seq}"
    );
    server.shutdown().await.unwrap();
}

/// `kinko serve` as a child process, killed if the test ends before it exits.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinko_serve_exits_non_zero_when_its_engine_stops() {
    use std::io::{BufRead, Read};
    let dir = TempDir::new("engine-stopped-exit");
    let path = dir.path().join("kinko.toml");
    // TLS, as `kinko serve` runs by default (and as the by-hand full-disk run that lost a
    // close frame did).
    let mut config = small_segments(dir.path());
    config.server.transport = gateway::config::Transport::Tls;
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let mut serve = Serve(
        std::process::Command::new(env!("CARGO_BIN_EXE_kinko"))
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The banner's WebSocket line names the port; the rest of stdout is drained.
    let stdout = serve.0.stdout.take().unwrap();
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.trim().strip_prefix("WebSocket") {
                let _ = url_tx.send(url.trim().to_string());
            }
        }
    });
    let ws = tokio::task::spawn_blocking(move || url_rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("kinko serve starts and prints its banner");
    let blocker = block_segment_2(dir.path()).await;
    let ca = dir.path().join("tls").join("cert.pem");
    let mut alice = Client::connect_url(&ws, Some(&ca)).await.unwrap();
    alice.login_as("alice", false).await;
    let flood = flood_until_closed(&mut alice).await;
    // The process exits on its own, but only after its sessions have said why they close.
    assert_closed_as_engine_stopped(&alice);

    let since = Instant::now();
    let exit = loop {
        if let Some(exit) = serve.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "kinko serve did not exit by itself"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!exit.success(), "exit status {exit}");
    let mut stderr = String::new();
    serve
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("kinko: the engine stopped: "), "{stderr}");
    assert_names_the_failure(&stderr);
    std::fs::remove_dir(&blocker).unwrap();
    let read = engine::runtime::read_data_dir(dir.path()).unwrap();
    assert!(read.last_seq() >= flood.acked_last);
}
