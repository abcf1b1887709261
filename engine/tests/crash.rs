//! Crash test: the engine runs as a child process (`kinko-node`) under load and is killed with
//! SIGKILL at random moments, then restarted. After every kill: every command whose
//! acknowledgement the client received is in the journal at its sequence number; the recovered
//! state equals a full re-execution of the journal; every ledger invariant holds.
//!
//! 20 cycles by default; set `KINKO_CRASH_CYCLES` for more.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::dirs::TempDir;
use engine::journal::format::{decode, RecordKind};
use engine::node::parse_command;
use engine::runtime;
use engine::snapshot::{hex, state_hash};
use engine::ExchangeCommand;

/// A small deterministic generator (xorshift64*), seeded per run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn spawn(dir: &Path) -> (Child, BufReader<ChildStdout>, u64, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinko-node"))
        .args([
            "--data",
            dir.to_str().unwrap(),
            "--snapshot-every",
            "300",
            "--segment-bytes",
            "1048576",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kinko-node");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).expect("ready line");
    let words: Vec<&str> = ready.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"ready"), "{ready:?}");
    (
        child,
        stdout,
        words[1].parse().unwrap(),
        words[2].to_string(),
    )
}

/// The load: accounts and deposits first, then orders and cancels among four accounts.
fn line(rng: &mut Rng, token: u64) -> String {
    let command = match token {
        0..=3 => "account customer".to_string(),
        4..=7 => format!("deposit {} JPY 100000000000 {token}", token - 4),
        8..=11 => format!("deposit {} BTC 100000000000 {token}", token - 8),
        _ => {
            let account = rng.below(4);
            match rng.below(10) {
                0..=1 => format!("cancel {account} {}", 1 + rng.below(token)),
                _ => {
                    let side = if rng.below(2) == 0 { "buy" } else { "sell" };
                    let price = 15_000_000 + rng.below(200) as i64 - 100;
                    format!(
                        "order {account} BTC/JPY {side} {price} {} {token}",
                        1 + rng.below(50)
                    )
                }
            }
        }
    };
    format!("{token} {command}")
}

#[test]
fn acknowledged_commands_survive_sigkill_and_recovery_equals_reexecution() {
    let cycles: usize = std::env::var("KINKO_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = TempDir::new("crash");
    let config = engine::defaults::config();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut sent: BTreeMap<u64, String> = BTreeMap::new();
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new(); // token → seq
    let mut expected: Option<(u64, String)> = None;
    let mut token_next = 0u64;
    let mut kills_with_unacked = 0;

    for cycle in 0..cycles {
        let (mut child, mut stdout, ready_seq, ready_hash) = spawn(dir.path());
        if let Some((seq, hash)) = &expected {
            assert_eq!(
                ready_seq, *seq,
                "cycle {cycle}: recovered to the journal's last seq"
            );
            assert_eq!(
                &ready_hash, hash,
                "cycle {cycle}: recovered state equals a full re-execution"
            );
        }
        // A client that reads acknowledgements while the load is written.
        let acks = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let acks = acks.clone();
            thread::spawn(move || {
                let mut text = String::new();
                while stdout.read_line(&mut text).map(|n| n > 0).unwrap_or(false) {
                    let words: Vec<&str> = text.split_whitespace().collect();
                    if words.len() == 3 && words[0] == "ack" {
                        acks.lock().unwrap().push((
                            words[1].parse::<u64>().unwrap(),
                            words[2].parse::<u64>().unwrap(),
                        ));
                    }
                    text.clear();
                }
            })
        };
        let mut stdin = child.stdin.take().unwrap();
        let lines: Vec<String> = (0..2_000).map(|i| line(&mut rng, token_next + i)).collect();
        for (i, text) in lines.iter().enumerate() {
            sent.insert(
                token_next + i as u64,
                text.split_once(' ').unwrap().1.to_string(),
            );
        }
        token_next += lines.len() as u64;
        let writer = thread::spawn(move || {
            for chunk in lines.chunks(50) {
                let mut block = String::new();
                for text in chunk {
                    block.push_str(text);
                    block.push('\n');
                }
                if stdin
                    .write_all(block.as_bytes())
                    .and_then(|_| stdin.flush())
                    .is_err()
                {
                    return;
                }
                thread::sleep(Duration::from_millis(2));
            }
            // Keep stdin open: the node must be killed, not shut down.
            thread::sleep(Duration::from_secs(30));
        });
        thread::sleep(Duration::from_millis(5 + rng.below(60)));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        reader.join().unwrap();
        drop(writer);
        let received = acks.lock().unwrap().clone();
        if (received.len() as u64) < 2_000 {
            kills_with_unacked += 1;
        }
        acked.extend(received);

        // Every acknowledged command is in the journal, at its seq, unchanged.
        let read = runtime::read_data_dir(dir.path()).expect("the journal reads after a kill");
        let journaled: BTreeMap<u64, ExchangeCommand> = read
            .batches
            .iter()
            .flat_map(|b| b.records.iter())
            .filter(|r| r.kind == RecordKind::Command)
            .map(|r| (r.seq, decode(&r.payload).unwrap()))
            .collect();
        for (token, seq) in &acked {
            let command = parse_command(&config, &sent[token]).unwrap();
            assert_eq!(
                journaled.get(seq),
                Some(&command),
                "cycle {cycle}: acknowledged token {token} at seq {seq}"
            );
        }
        // The state a restart must reach: a full re-execution, with every invariant.
        let (exchange, seq) =
            runtime::reexecute(&read, None).expect("re-execution matches the journaled events");
        exchange
            .check_invariants()
            .expect("ledger invariants after re-execution");
        expected = Some((seq, hex(&state_hash(&exchange.snapshot()))));
    }
    assert!(
        acked.len() > 100,
        "the load was acknowledged: {}",
        acked.len()
    );
    assert!(
        kills_with_unacked > cycles / 2,
        "most kills landed mid-load: {kills_with_unacked} of {cycles}"
    );
    let (mut child, _, ready_seq, ready_hash) = spawn(dir.path());
    let (seq, hash) = expected.unwrap();
    assert_eq!((ready_seq, ready_hash), (seq, hash));
    child.kill().unwrap();
    child.wait().unwrap();
}
