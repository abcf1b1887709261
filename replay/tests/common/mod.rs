//! Journals made by the real engine in a temp directory, with a clock the test sets, so that every
//! timestamp (and so every `--at TIME`) is known in advance; and the forger's tools: rewrite a
//! journal with fresh checksums and chain, or patch bytes in place.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine::journal::format::{append_record, decode, Genesis, RecordKind};
use engine::journal::storage::MmapStorage;
use engine::journal::{Durability, JournalRead, JournalWriter, RecordRead};
use engine::runtime::{self, Clock, EngineHandle, EngineOptions};
use engine::*;
use ledger::{AssetId, Location, Pool};
use rust_decimal::Decimal;

pub const BTC: AssetId = 0;
pub const XEM: AssetId = 2;
pub const JPY: AssetId = 5;
pub const XEM_JPY: InstrumentId = 2;
/// XEM has 6 decimals.
pub const XEM_UNITS: i64 = 1_000_000;

/// Scratch directories for tests that write real files; removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("kinko-replay-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The clock seam, set by the test before each command.
struct ManualClock(Arc<AtomicU64>);

impl Clock for ManualClock {
    fn now_ns(&mut self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn ns(rfc3339: &str) -> u64 {
    replay::point::parse_rfc3339_ns(rfc3339).expect("test times are RFC 3339")
}

/// A real engine writing a real journal; one command per batch, so that every commit's seq is
/// its command's seq.
pub struct Exchange {
    engine: Option<EngineHandle>,
    now_ns: Arc<AtomicU64>,
    seq: u64,
}

impl Exchange {
    pub fn start(dir: &Path, config: &ExchangeConfig, start: &str) -> Exchange {
        let now_ns = Arc::new(AtomicU64::new(ns(start)));
        let mut options = EngineOptions::new(dir);
        options.segment_bytes = 1 << 20;
        options.snapshot_every_commands = 0;
        let engine = runtime::start(options, config, Box::new(ManualClock(now_ns.clone())))
            .expect("engine starts");
        Exchange {
            engine: Some(engine),
            now_ns,
            seq: 0,
        }
    }

    /// Commands from now on are stamped `rfc3339`.
    pub fn at(&mut self, rfc3339: &str) -> &mut Exchange {
        self.now_ns.store(ns(rfc3339), Ordering::SeqCst);
        self
    }

    /// Runs one command, waits for its acknowledgement and returns its seq and events.
    pub fn run(&mut self, command: ExchangeCommand) -> (u64, Vec<ExchangeEvent>) {
        let engine = self.engine.as_ref().expect("running");
        engine
            .submitter()
            .submit(self.seq, command)
            .expect("queue has room");
        let batch = engine
            .outbound()
            .recv_timeout(Duration::from_secs(10))
            .expect("acknowledged");
        assert_eq!(batch.acks.len(), 1, "one command per batch");
        let ack = &batch.acks[0];
        self.seq = ack.seq;
        (ack.seq, batch.events_of(ack).to_vec())
    }

    pub fn shutdown(mut self) -> u64 {
        self.engine
            .take()
            .expect("running")
            .shutdown()
            .expect("clean shutdown")
    }
}

pub fn create(pool: Pool) -> ExchangeCommand {
    ExchangeCommand::CreateAccount { pool }
}

pub fn deposit(account: AccountId, asset: AssetId, amount_units: i64, tx: u8) -> ExchangeCommand {
    ExchangeCommand::Deposit {
        account,
        asset,
        amount_units,
        tx: [tx; 32],
    }
}

/// A GTC limit order on XEM/JPY: price in ticks of 0.001 JPY, quantity in whole XEM.
pub fn xem_order(
    account: AccountId,
    side: Side,
    price_ticks: i64,
    xem: i64,
    coid: u64,
) -> ExchangeCommand {
    ExchangeCommand::Trade(Command::NewOrder(NewOrder {
        account,
        instrument: XEM_JPY,
        client_order_id: coid,
        side,
        kind: OrderKind::limit(price_ticks, TimeInForce::Gtc),
        qty_lots: xem,
        stp: None,
    }))
}

/// The default configuration with XEM/JPY referenced at 90.000 JPY (the default 5 JPY would put
/// Coincheck's prices outside the 10% band).
pub fn config() -> ExchangeConfig {
    let mut config = defaults::config();
    let xem = &mut config.instruments[XEM_JPY as usize];
    assert_eq!(xem.symbol, "XEM/JPY");
    xem.price_ticks_reference = xem.price_to_ticks(Decimal::new(90, 0)).expect("on tick");
    config.engine.check_invariants = true;
    config
}

/// The seqs of the Coincheck-like scenario, for tamper tests.
pub struct Coincheck {
    pub deposit_alice_jpy: u64,
    pub bob_sells_3000: u64,
    pub alice_buys_3000: u64,
    pub bob_rests_500: u64,
    pub halt: u64,
    pub last: u64,
}

/// Accounts: 0 Alice, 1 Bob, 2 Carol (customers), 3 the house, 4 Dave (customer, JPY only).
///
/// 09:00 JST deposits: Alice 1,000,000 JPY; Bob 10,000 XEM; Carol 2,500 XEM; the house 1,000 XEM;
/// Dave 500,000 JPY; 11,875 of the customers' 12,500 XEM go cold (hot = 625 = 5%, the cap).
/// 10:00 Bob sells Alice 1,000 XEM at 90.000; 11:00 Bob sells Alice 3,000 at 88.500; 12:00 Carol
/// sells Alice 1,000 at 88.697; 12:05 Bob offers 500 at 95.000 (rests); 12:09 XEM/JPY halts.
/// Fees (maker 0.1%, taker 0.2%, rounded down): 90 + 180, 265 + 531, 88 + 177 = 1,331 JPY.
pub fn coincheck(dir: &Path) -> Coincheck {
    let mut x = Exchange::start(dir, &config(), "2018-01-26T09:00:00+09:00");
    for pool in [
        Pool::Customer,
        Pool::Customer,
        Pool::Customer,
        Pool::House,
        Pool::Customer,
    ] {
        x.run(create(pool));
    }
    let (deposit_alice_jpy, _) = x.run(deposit(0, JPY, 1_000_000, 1));
    x.run(deposit(1, XEM, 10_000 * XEM_UNITS, 2));
    x.run(deposit(2, XEM, 2_500 * XEM_UNITS, 3));
    x.run(deposit(3, XEM, 1_000 * XEM_UNITS, 4));
    x.run(deposit(4, JPY, 500_000, 5));
    let (_, moved) = x.run(ExchangeCommand::CustodyTransfer {
        pool: Pool::Customer,
        asset: XEM,
        source: Location::Hot,
        target: Location::Cold,
        amount_units: 11_875 * XEM_UNITS,
    });
    assert!(
        matches!(moved[0], ExchangeEvent::CustodyMoved { .. }),
        "{moved:?}"
    );
    x.at("2018-01-26T10:00:00+09:00");
    x.run(xem_order(1, Side::Sell, 90_000, 1_000, 1));
    assert_fills(&x.run(xem_order(0, Side::Buy, 90_000, 1_000, 1)).1, 1);
    x.at("2018-01-26T11:00:00+09:00");
    let (bob_sells_3000, _) = x.run(xem_order(1, Side::Sell, 88_500, 3_000, 2));
    let (alice_buys_3000, events) = x.run(xem_order(0, Side::Buy, 88_500, 3_000, 2));
    assert_fills(&events, 1);
    x.at("2018-01-26T12:00:00+09:00");
    x.run(xem_order(2, Side::Sell, 88_697, 1_000, 1));
    assert_fills(&x.run(xem_order(0, Side::Buy, 88_697, 1_000, 3)).1, 1);
    x.at("2018-01-26T12:05:00+09:00");
    let (bob_rests_500, events) = x.run(xem_order(1, Side::Sell, 95_000, 500, 3));
    assert_fills(&events, 0);
    x.at("2018-01-26T12:09:00+09:00");
    let (halt, _) = x.run(ExchangeCommand::Trade(Command::Halt {
        instrument: XEM_JPY,
    }));
    let last = x.shutdown();
    Coincheck {
        deposit_alice_jpy,
        bob_sells_3000,
        alice_buys_3000,
        bob_rests_500,
        halt,
        last,
    }
}

fn assert_fills(events: &[ExchangeEvent], fills: usize) {
    let settled = events
        .iter()
        .filter(|e| matches!(e, ExchangeEvent::Settled(_)))
        .count();
    assert_eq!(settled, fills, "{events:?}");
}

// ------------------------------------------------------------------ the forger's tools

/// A record decoded, as a forger edits it.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Command(ExchangeCommand),
    Events(Vec<ExchangeEvent>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub ts_ns: u64,
    pub payload: Payload,
}

/// Every batch after genesis, decoded.
pub fn decoded(read: &JournalRead) -> Vec<Vec<Record>> {
    read.batches
        .iter()
        .map(|batch| {
            batch
                .records
                .iter()
                .map(|r| Record {
                    seq: r.seq,
                    ts_ns: r.ts_ns,
                    payload: match r.kind {
                        RecordKind::Command => {
                            Payload::Command(decode(&r.payload).expect("command"))
                        }
                        RecordKind::Events => Payload::Events(decode(&r.payload).expect("events")),
                        kind => panic!("{kind:?} inside a batch"),
                    },
                })
                .collect()
        })
        .collect()
}

/// Writes a whole new journal into `dir/journal` with the engine's own writer: every CRC and the
/// whole hash chain are right, as a forger with the format documentation would make them.
pub fn write_journal(dir: &Path, genesis: &Genesis, batches: &[Vec<Record>]) {
    let storage = MmapStorage::open(&dir.join("journal")).expect("journal dir");
    let ts_ns = batches
        .first()
        .and_then(|b| b.first())
        .map_or(0, |r| r.ts_ns);
    let mut writer = JournalWriter::create(storage, genesis, ts_ns, 1 << 20, Durability::Process)
        .expect("create journal");
    for batch in batches {
        for record in batch {
            match &record.payload {
                Payload::Command(c) => writer.append_command(record.seq, record.ts_ns, c),
                Payload::Events(e) => writer.append_events(record.seq, record.ts_ns, e),
            }
        }
        let ts_ns = batch.last().map_or(0, |r| r.ts_ns);
        writer.commit(ts_ns).expect("commit");
    }
    writer.sync_all().expect("sync");
}

/// Reads `source`, lets `edit` change the decoded batches, and writes a forged journal (with
/// correct checksums and chain) into `target`.
pub fn forge(source: &Path, target: &Path, edit: impl FnOnce(&mut Vec<Vec<Record>>)) {
    let read = replay::open_journal(source).expect("read the original");
    let mut batches = decoded(&read);
    edit(&mut batches);
    write_journal(target, &read.genesis, &batches);
}

/// The command record of `seq`.
pub fn command_record(dir: &Path, seq: u64) -> RecordRead {
    let read = replay::open_journal(dir).expect("read");
    read.batches
        .iter()
        .flat_map(|b| b.records.iter())
        .find(|r| r.kind == RecordKind::Command && r.seq == seq)
        .cloned()
        .expect("seq present")
}

/// Overwrites a record in place with `payload` (same length), with its CRC recomputed when
/// `fix_crc`, else keeping the old CRC. The chain is never fixed this way.
pub fn patch_record(dir: &Path, record: &RecordRead, payload: &[u8], fix_crc: bool) {
    assert_eq!(
        payload.len(),
        record.payload.len(),
        "a patch keeps the length"
    );
    let mut bytes = Vec::new();
    append_record(&mut bytes, record.kind, record.seq, record.ts_ns, |out| {
        out.extend_from_slice(payload)
    });
    if !fix_crc {
        let mut original = Vec::new();
        append_record(
            &mut original,
            record.kind,
            record.seq,
            record.ts_ns,
            |out| out.extend_from_slice(&record.payload),
        );
        let len = bytes.len();
        bytes[len - 4..].copy_from_slice(&original[len - 4..]);
    }
    let path = dir
        .join("journal")
        .join(format!("segment-{:06}.kjl", record.segment));
    let mut file = OpenOptions::new().write(true).open(path).expect("segment");
    file.seek(SeekFrom::Start(record.offset as u64))
        .expect("seek");
    file.write_all(&bytes).expect("write");
}
