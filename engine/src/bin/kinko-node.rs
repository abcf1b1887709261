//! `kinko-node --data DIR [--durability process|fsync] [--snapshot-every N]`: see `engine::node`.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use engine::journal::Durability;
use engine::node::parse_command;
use engine::runtime::{self, EngineOptions, SystemClock};
use engine::snapshot::hex;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(data) = value("--data") else {
        eprintln!("usage: kinko-node --data DIR [--durability process|fsync] [--snapshot-every N]");
        return ExitCode::from(2);
    };
    let mut options = EngineOptions::new(&PathBuf::from(data));
    options.durability = match value("--durability").as_deref() {
        None | Some("process") => Durability::Process,
        Some("fsync") => Durability::Fsync,
        Some(other) => {
            eprintln!("kinko-node: unknown durability {other}");
            return ExitCode::from(2);
        }
    };
    if let Some(every) = value("--snapshot-every") {
        options.snapshot_every_commands = every.parse().unwrap_or(0);
    }
    options.segment_bytes = value("--segment-bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(options.segment_bytes);
    let config = engine::defaults::config();
    let engine = match runtime::start(options, &config, Box::new(SystemClock::default())) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("kinko-node: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(cut) = &engine.recovery.tail_cut {
        eprintln!("kinko-node: warning: {cut}");
    }
    for warning in &engine.recovery.warnings {
        eprintln!("kinko-node: warning: {warning}");
    }
    println!(
        "ready {} {}",
        engine.recovery.last_seq,
        hex(&engine.recovery.state_hash)
    );
    let outbound = engine.outbound().clone();
    let printer = thread::spawn(move || {
        let stdout = io::stdout();
        while let Ok(batch) = outbound.recv() {
            let mut out = stdout.lock();
            for ack in &batch.acks {
                let _ = writeln!(out, "ack {} {}", ack.token, ack.seq);
            }
            let _ = out.flush();
        }
    });
    let submitter = engine.submitter();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Some((token, text)) = line.split_once(' ') else {
            continue;
        };
        let Ok(token) = token.parse::<u64>() else {
            eprintln!("kinko-node: bad token in {line:?}");
            continue;
        };
        let command = match parse_command(&config, text) {
            Ok(command) => command,
            Err(e) => {
                eprintln!("kinko-node: token {token}: {e}");
                continue;
            }
        };
        let taken = loop {
            match submitter.submit(token, command) {
                Ok(()) => break true,
                Err(runtime::Refused::Busy) => thread::sleep(Duration::from_micros(50)),
                // Said by `shutdown` below, with the reason, and in the exit status.
                Err(runtime::Refused::Stopped) => break false,
            }
        };
        if !taken {
            break;
        }
    }
    let result = engine.shutdown();
    let _ = printer.join();
    match result {
        Ok(seq) => {
            eprintln!("kinko-node: stopped at seq {seq}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kinko-node: {e}");
            ExitCode::FAILURE
        }
    }
}
