//! Hostile input over TCP: a 1 MiB message, a megabyte of binary garbage, a flood of messages and
//! a flood of orders past the rate limit. The server never panics, answers as the specification
//! says, keeps its sequence numbers, and another session on the same server is unaffected
//! throughout.

mod common;
mod fixclient;

use std::time::{Duration, Instant};

use common::*;
use fixclient::*;
use gateway::fix::codec::MESSAGE_BYTES_MAX;
use tokio::io::AsyncWriteExt;

/// Deterministic noise without "8=FIX" in it (no '8' at all).
fn noise(bytes: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state as u8 {
                b'8' => b'9',
                b => b,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mebibyte_message_ends_the_connection_but_not_the_session() {
    let dir = TempDir::new("fix-huge");
    let (server, _) = start(config(dir.path())).await;
    let mut bob = FixClient::connect(server.fix, "bob").await;
    bob.logon(30, false).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    let mut huge = format!("8=FIX.4.4\u{1}9={}\u{1}35=D\u{1}58=", 1 << 20).into_bytes();
    huge.extend(std::iter::repeat_n(b'x', 1 << 20));
    assert!(huge.len() > MESSAGE_BYTES_MAX);
    // The server stops reading at the header: the write may fail once it has closed.
    let _ = alice.try_send_raw(&huge).await;
    let rest = alice.until_closed_or_reset().await;
    assert!(
        rest.iter().all(|m| m.msg_type() == "5"),
        "only a Logout, if anything: {:?}",
        rest.iter().map(|m| m.text()).collect::<Vec<_>>()
    );
    bob.ping("unaffected").await;
    // The session and its numbers are intact: log on again where it stopped.
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.seq_out = 2;
    alice.logon(30, false).await;
    alice.ping("back").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_garbage_is_skipped() {
    let dir = TempDir::new("fix-noise");
    let (server, _) = start(config(dir.path())).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    for piece in noise(1 << 20).chunks(64 * 1024) {
        alice.send_raw(piece).await;
    }
    alice.ping("after-noise").await;
    // Garbage before a Logon: still nothing but a Logon opens a session.
    let mut bob = FixClient::connect(server.fix, "bob").await;
    bob.send_raw(&noise(100_000)).await;
    bob.logon(30, false).await;
    bob.ping("ok").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_answered_in_order_and_others_are_unaffected() {
    let dir = TempDir::new("fix-flood");
    let (server, _) = start(config(dir.path())).await;
    let mut bob = FixClient::connect(server.fix, "bob").await;
    bob.logon(30, false).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    const FLOOD: u64 = 20_000;
    let mut burst = Vec::new();
    for i in 0..FLOOD {
        burst.extend(alice.build("1", 2 + i, &[], &[(112, i.to_string())]));
    }
    alice.seq_out = 2 + FLOOD;
    let writer = tokio::spawn(async move {
        alice.send_raw(&burst).await;
        alice
    });
    // Bob is answered promptly while alice's flood is being worked through.
    let started = Instant::now();
    bob.ping("during-flood").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut alice = writer.await.unwrap();
    for i in 0..FLOOD {
        let heartbeat = alice.next().await.expect("open");
        assert_eq!(heartbeat.get(112), Some(i.to_string().as_str()));
    }
    alice.ping("after-flood").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_flood_past_the_rate_limit_is_refused_order_by_order() {
    let dir = TempDir::new("fix-order-flood");
    let mut cfg = config(dir.path());
    cfg.limits.connection_burst = 50;
    cfg.limits.connection_rate_per_sec = 10;
    let (server, _) = start(cfg).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    let mut burst = Vec::new();
    const ORDERS: u64 = 300;
    for i in 0..ORDERS {
        let cl = (i + 1).to_string();
        let fields: Vec<(u32, String)> = [
            (11, cl.as_str()),
            (55, "BTC/JPY"),
            (54, "1"),
            (60, "20240101-00:00:00"),
            (38, "0.0001"),
            (40, "2"),
            (44, "14000000"),
        ]
        .iter()
        .map(|(t, v)| (*t, v.to_string()))
        .collect();
        burst.extend(alice.build("D", 2 + i, &[], &fields));
    }
    alice.seq_out = 2 + ORDERS;
    alice.send_raw(&burst).await;
    let (mut accepted, mut limited) = (0, 0);
    while accepted + limited < ORDERS {
        let report = alice.until_type("8").await;
        match report.get(150) {
            Some("0") => accepted += 1,
            Some("8") if report.get(58).unwrap().contains("rate limit") => limited += 1,
            other => panic!("unexpected {other:?}: {}", report.text()),
        }
    }
    assert!(
        (50..60).contains(&accepted),
        "the burst and a little refill: {accepted}"
    );
    alice.ping("in-sequence").await;
    server.shutdown().await.unwrap();
}

impl FixClient {
    async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream_mut().write_all(bytes).await
    }

    /// Messages until the connection ends, by a close or a reset.
    async fn until_closed_or_reset(&mut self) -> Vec<gateway::fix::codec::Message> {
        let mut out = Vec::new();
        while let Some(message) = self.next().await {
            out.push(message);
        }
        out
    }
}
