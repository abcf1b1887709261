//! `journal` and `journal-burst`: the journal reader fed damaged segments. An input is the
//! segment files one after the other (split where the segment magic `KINKOJNL` starts); they are
//! read through the engine's own reader over an in-memory disk ([`super::mem::MemStorage`]).
//!
//! `journal` checks, on every input: nothing panics; each record that passes its CRC and decodes
//! encodes back to a payload that decodes to the same value; recovery (`Repair::CutTail`) reads what a
//! read-only reader reads, and after it the journal reads clean (no torn tail) to the same end; a
//! journal that reads is re-executed through the engine (when its configuration is small enough to
//! build a thousand times a second), which may refuse it but never panic. Its repair recomputes
//! segment headers, sequence numbers, hash chains and CRCs, so that mutated payloads get past the
//! checksums to the decoders and the state machine behind them.
//!
//! `journal-burst` holds the format to its guarantee: CRC32C detects every burst of up to 32 bits,
//! so a valid journal with up to four consecutive bytes changed never reads as a different
//! journal: the reader fails, or stops at the damage and returns exactly the batches before it.

use std::sync::OnceLock;

use engine::journal::format::*;
use engine::journal::{read_journal, Durability, JournalRead, JournalWriter, Repair};
use engine::{
    Command, Exchange, ExchangeCommand, ExchangeConfig, ExchangeEvent, ExchangeSnapshot, NewOrder,
    OrderKind, OrderRef, Sequenced, Side, TimeInForce,
};
use ledger::Pool;

use super::class;
use super::mem::MemStorage;

const VERSION_BYTES: [u8; 4] = FORMAT_VERSION.to_le_bytes();
const HEADER_BYTES: [u8; 4] = (SEGMENT_HEADER_BYTES as u32).to_le_bytes();

pub const DICTIONARY: &[&[u8]] = &[
    &SEGMENT_MAGIC,
    &VERSION_BYTES,
    &HEADER_BYTES,
    &[0; 8],
    &[1, 0, 0, 0],
    &[2, 0, 0, 0],
    &[3, 0, 0, 0],
    &[4, 0, 0, 0],
    &[0xff; 8],
];

/// Segments per input: more are read as part of the last one.
const SEGMENTS_MAX: usize = 8;
/// Zeros after the last record of a seed segment: the unwritten rest of a real segment.
const TAIL_ZERO_BYTES: usize = 64;
/// Configurations up to these capacities are re-executed (the engine allocates them up front).
const REEXECUTE_CAPACITY_MAX: u32 = 1 << 12;
const REEXECUTE_INSTRUMENTS_MAX: usize = 16;
const TS_NS_START: u64 = 1_700_000_000_000_000_000;

/// A journal written by the real engine, its segments, and snapshots taken along the way.
pub struct Fixture {
    pub config: ExchangeConfig,
    pub segments: Vec<Vec<u8>>,
    pub read: JournalRead,
    pub snapshots: Vec<(u64, ExchangeSnapshot)>,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}

/// The default exchange with capacities small enough to build per input.
pub fn small_config() -> ExchangeConfig {
    let mut config = engine::defaults::config();
    config.engine.orders_max = 256;
    config.engine.levels_per_side_max = 64;
    config.engine.stops_per_side_max = 64;
    config.engine.accounts_max = 16;
    config.engine.orders_open_per_account_max = 64;
    config.engine.check_invariants = true;
    config.withdrawals_pending_max = 16;
    config
}

/// Accounts, deposits, crossing orders, a stop, a cancel, a replace, a halt and a resume.
fn commands(config: &ExchangeConfig) -> Vec<ExchangeCommand> {
    let btc_jpy = 0;
    let spec = &config.instruments[btc_jpy as usize];
    let at = |offset: i64| spec.price_ticks_reference + offset;
    let btc = config
        .assets
        .iter()
        .position(|a| a.code == "BTC")
        .expect("BTC") as u16;
    let jpy = config
        .assets
        .iter()
        .position(|a| a.code == "JPY")
        .expect("JPY") as u16;
    let order = |account, coid, side, kind, qty_lots| {
        ExchangeCommand::Trade(Command::NewOrder(NewOrder {
            account,
            instrument: btc_jpy,
            client_order_id: coid,
            side,
            kind,
            qty_lots,
            stp: None,
        }))
    };
    let deposit = |account, asset, amount_units, tx| ExchangeCommand::Deposit {
        account,
        asset,
        amount_units,
        tx: [tx; 32],
    };
    vec![
        ExchangeCommand::CreateAccount {
            pool: Pool::Customer,
        },
        ExchangeCommand::CreateAccount {
            pool: Pool::Customer,
        },
        ExchangeCommand::CreateAccount { pool: Pool::House },
        deposit(0, jpy, 1_000_000_000_000, 1),
        deposit(1, btc, 10_000_000_000, 2),
        deposit(2, btc, 10_000_000_000, 3),
        deposit(2, jpy, 1_000_000_000_000, 4),
        order(
            1,
            1,
            Side::Sell,
            OrderKind::limit(at(10), TimeInForce::Gtc),
            30,
        ),
        order(
            1,
            2,
            Side::Sell,
            OrderKind::limit(at(20), TimeInForce::Gtc),
            30,
        ),
        order(
            0,
            1,
            Side::Buy,
            OrderKind::limit(at(10), TimeInForce::Gtc),
            10,
        ),
        order(0, 2, Side::Buy, OrderKind::post_only(at(-10)), 5),
        order(
            0,
            3,
            Side::Buy,
            OrderKind::StopMarket { stop_ticks: at(30) },
            5,
        ),
        ExchangeCommand::Trade(Command::Cancel {
            account: 0,
            order: OrderRef::Client(2),
        }),
        ExchangeCommand::Trade(Command::Replace {
            account: 1,
            order: OrderRef::Client(2),
            price_ticks: at(15),
            qty_lots: 20,
            client_order_id_new: Some(3),
        }),
        order(
            2,
            1,
            Side::Buy,
            OrderKind::limit(at(20), TimeInForce::Ioc),
            25,
        ),
        ExchangeCommand::Trade(Command::Halt {
            instrument: btc_jpy,
        }),
        order(0, 4, Side::Buy, OrderKind::Market, 1),
        ExchangeCommand::Trade(Command::Resume {
            instrument: btc_jpy,
        }),
        ExchangeCommand::Trade(Command::MassCancel {
            account: 1,
            instrument: None,
            side: None,
        }),
    ]
}

fn build() -> Fixture {
    let config = small_config();
    let genesis = Genesis {
        config: config.clone(),
    };
    let storage = MemStorage::default();
    let mut writer = JournalWriter::create(
        storage.clone(),
        &genesis,
        TS_NS_START,
        SEGMENT_BYTES_MIN,
        Durability::Process,
    )
    .expect("an in-memory journal");
    let mut exchange = Exchange::new(config.clone()).expect("the small configuration is valid");
    let mut snapshots = Vec::new();
    let mut events = Vec::new();
    let mut seq = 0;
    for batch in commands(&config).chunks(3) {
        for command in batch {
            seq += 1;
            let ts_ns = TS_NS_START + seq * 1_000;
            writer.append_command(seq, ts_ns, command);
            events.clear();
            let record = Sequenced {
                seq,
                ts_ns,
                command: *command,
            };
            exchange.apply(&record, &mut events);
            writer.append_events(seq, ts_ns, &events);
        }
        writer.commit(TS_NS_START + seq * 1_000).expect("in memory");
        snapshots.push((seq, exchange.snapshot()));
    }
    let end = writer.position();
    assert_eq!(end.index, 0, "the seed journal fits one segment");
    let written = storage.segments().remove(0);
    let segments = split_at_middle_commit(&written[..end.offset]);
    let read = read_journal(&mut MemStorage::new(segments.clone()), Repair::ReadOnly)
        .expect("the seed journal reads");
    assert!(read.tail_cut.is_none());
    Fixture {
        config,
        segments,
        read,
        snapshots,
    }
}

/// Moves the batches after the middle commit into a second segment, as the writer does when a
/// segment fills up, and leaves some unwritten zeros at the end of each.
fn split_at_middle_commit(bytes: &[u8]) -> Vec<Vec<u8>> {
    let header = parse_segment_header(bytes).expect("a segment header");
    let mut commit_ends = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while let Ok(record) = parse_record(&bytes[at..]) {
        at += record.len;
        if record.kind == RecordKind::Commit {
            commit_ends.push(at);
        }
    }
    let middle = commit_ends[commit_ends.len() / 2];
    let mut first = bytes[..middle].to_vec();
    first.resize(middle + TAIL_ZERO_BYTES, 0);
    let mut second = segment_header(1, SEGMENT_BYTES_MIN, &header.config_hash).to_vec();
    second.extend_from_slice(&bytes[middle..]);
    second.resize(second.len() + TAIL_ZERO_BYTES, 0);
    vec![first, second]
}

pub fn seeds() -> Vec<Vec<u8>> {
    let f = fixture();
    let whole: Vec<u8> = f.segments.concat();
    let first = f.segments[0].clone();
    // A torn tail: the last batch cut in the middle of a record.
    let torn = whole[..whole.len() - TAIL_ZERO_BYTES - 40].to_vec();
    vec![whole, first, torn]
}

/// Splits an input into segment files at each segment magic.
pub fn split(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut starts: Vec<usize> = bytes
        .windows(SEGMENT_MAGIC.len())
        .enumerate()
        .filter(|(_, w)| *w == SEGMENT_MAGIC)
        .map(|(i, _)| i)
        .filter(|&i| i > 0)
        .take(SEGMENTS_MAX - 1)
        .collect();
    starts.insert(0, 0);
    starts.push(bytes.len());
    starts
        .windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

pub fn run(bytes: &[u8]) -> u64 {
    let segments = split(bytes);
    let mut outcome = segments
        .iter()
        .fold(0u64, |o, s| o.wrapping_mul(7) + walk_records(s));
    let storage = MemStorage::new(segments);
    let read = match read_journal(&mut storage.clone(), Repair::ReadOnly) {
        Ok(read) => read,
        Err(e) => {
            return class(
                outcome ^ super::fnv(format!("{e:?}").split(' ').next().unwrap_or("").as_bytes()),
            )
        }
    };
    assert_recovery_reads_clean(&storage, &read);
    outcome = outcome.wrapping_add(read.batches.len() as u64 * 1_000);
    if let Some(cut) = &read.tail_cut {
        outcome ^= super::fnv(cut.detail.split(' ').next().unwrap_or("").as_bytes());
    }
    if small(&read.genesis.config) {
        outcome ^= match engine::runtime::reexecute(&read, None) {
            Ok((_, seq)) => seq << 8,
            Err(e) => super::fnv(format!("{e:?}").split(' ').next().unwrap_or("").as_bytes()),
        };
    }
    class(outcome)
}

/// The record layer alone: the header, then each record that passes its checks, with its payload
/// decoded by kind and encoded back.
fn walk_records(segment: &[u8]) -> u64 {
    if parse_segment_header(segment).is_err() {
        return 1;
    }
    let mut at = SEGMENT_HEADER_BYTES;
    let mut kinds = 0u64;
    while at < segment.len() {
        let record = match parse_record(&segment[at..]) {
            Ok(record) => record,
            Err(e) => return kinds * 16 + 2 + super::fnv(format!("{e:?}").as_bytes()) % 8,
        };
        assert!(record.len >= RECORD_BYTES_MIN && record.len.is_multiple_of(RECORD_ALIGN));
        assert!(record.payload.len() + RECORD_HEADER_BYTES + RECORD_TRAILER_BYTES <= record.len);
        match record.kind {
            RecordKind::Genesis => round_trip::<Genesis>(record.payload),
            RecordKind::Command => round_trip::<ExchangeCommand>(record.payload),
            RecordKind::Events => round_trip::<Vec<ExchangeEvent>>(record.payload),
            RecordKind::Commit => round_trip::<Commit>(record.payload),
        }
        kinds |= 1 << (record.kind as u64);
        at += record.len;
    }
    kinds * 16
}

/// A payload that decodes encodes to bytes that decode to the same value. (Not always to the
/// same bytes: decimals travel as strings, and "+.001" reads as 0.001; a journal's bytes are
/// bound by its hash chain, and re-execution compares events byte for byte, so such a payload
/// is caught there when it matters.)
fn round_trip<T>(payload: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Some(value) = decode::<T>(payload) {
        let mut encoded = Vec::new();
        encode_into(&value, &mut encoded);
        let again = decode::<T>(&encoded).unwrap_or_else(|| {
            panic!(
                "a {} encodes to bytes that do not decode",
                std::any::type_name::<T>()
            )
        });
        assert_eq!(
            again,
            value,
            "a {} changes on re-encoding",
            std::any::type_name::<T>()
        );
    }
}

/// Recovery cuts what a read-only reader reports as torn, and the journal then reads clean.
fn assert_recovery_reads_clean(storage: &MemStorage, read: &JournalRead) {
    let mut recovering = storage.clone();
    let recovered = read_journal(&mut recovering, Repair::CutTail)
        .unwrap_or_else(|e| panic!("read-only reads the journal but recovery fails: {e}"));
    assert_same(
        read,
        &recovered,
        "recovery reads another journal than the reader",
    );
    assert_eq!(recovered.tail_cut, read.tail_cut);
    let again = read_journal(&mut recovering, Repair::ReadOnly)
        .unwrap_or_else(|e| panic!("the journal does not read after recovery: {e}"));
    assert_same(read, &again, "after recovery the journal reads differently");
    assert!(
        again.tail_cut.is_none(),
        "a torn tail remains after recovery: {:?} (first: {:?})",
        again.tail_cut,
        read.tail_cut
    );
}

fn assert_same(a: &JournalRead, b: &JournalRead, what: &str) {
    assert!(a.genesis == b.genesis, "{what}: genesis");
    assert!(a.batches == b.batches, "{what}: batches");
    assert_eq!(a.end, b.end, "{what}: end");
    assert_eq!(a.chain, b.chain, "{what}: chain");
}

fn small(config: &ExchangeConfig) -> bool {
    let e = &config.engine;
    [
        e.orders_max,
        e.levels_per_side_max,
        e.stops_per_side_max,
        e.accounts_max,
        e.orders_open_per_account_max,
        config.withdrawals_pending_max,
    ]
    .iter()
    .all(|&n| n <= REEXECUTE_CAPACITY_MAX)
        && config.instruments.len() <= REEXECUTE_INSTRUMENTS_MAX
        && config.assets.len() <= REEXECUTE_INSTRUMENTS_MAX
}

/// Makes a mutated input consistent again wherever it can: each segment's header (magic, version,
/// index, the genesis hash), each command's seq (1, 2, 3…, its events the same), each commit's
/// seqs, count and chain, and every record's CRC32C. What cannot be parsed as records is left.
pub fn repair(bytes: &mut Vec<u8>) {
    let mut segments = split(bytes);
    let mut state = Chain {
        chain: CHAIN_ZERO,
        batch: Vec::new(),
        seqs: None,
        seq_last: 0,
        records: 0,
        config_hash: None,
    };
    for (index, segment) in segments.iter_mut().enumerate() {
        repair_segment(segment, index as u64, &mut state);
    }
    *bytes = segments.concat();
}

struct Chain {
    chain: [u8; 32],
    /// The records of the batch being repaired, as they will be written.
    batch: Vec<u8>,
    seqs: Option<(u64, u64)>,
    seq_last: u64,
    records: u32,
    config_hash: Option<[u8; 32]>,
}

fn repair_segment(segment: &mut [u8], index: u64, state: &mut Chain) {
    if segment.len() < SEGMENT_HEADER_BYTES {
        return;
    }
    let mut at = SEGMENT_HEADER_BYTES;
    while at + RECORD_BYTES_MIN <= segment.len() {
        let len = u32::from_le_bytes(segment[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len < RECORD_BYTES_MIN || !len.is_multiple_of(RECORD_ALIGN) || at + len > segment.len() {
            break;
        }
        let Some(kind) = RecordKind::from_u8(segment[at + 4]) else {
            break;
        };
        let record = &mut segment[at..at + len];
        let payload_len = (len - RECORD_HEADER_BYTES - RECORD_TRAILER_BYTES) as u32;
        let stated = u32::from_le_bytes(record[24..28].try_into().expect("4 bytes"));
        record[24..28].copy_from_slice(&stated.min(payload_len).to_le_bytes());
        repair_record(record, kind, state);
        at += len;
    }
    let hash = state.config_hash.unwrap_or([0; 32]);
    let header = segment_header(index, SEGMENT_BYTES_MIN, &hash);
    segment[..SEGMENT_HEADER_BYTES].copy_from_slice(&header);
}

fn repair_record(record: &mut [u8], kind: RecordKind, state: &mut Chain) {
    let seq = match kind {
        RecordKind::Genesis => 0,
        RecordKind::Command => state.seq_last + 1,
        RecordKind::Events | RecordKind::Commit => state.seqs.map_or(0, |(_, last)| last),
    };
    record[8..16].copy_from_slice(&seq.to_le_bytes());
    let payload_len = u32::from_le_bytes(record[24..28].try_into().expect("4 bytes")) as usize;
    let payload = RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + payload_len;
    match kind {
        RecordKind::Commit => {
            let (first_seq, last_seq) = state.seqs.unwrap_or((0, 0));
            let commit = Commit {
                first_seq,
                last_seq,
                records: state.records,
                chain: chain_next(&state.chain, &state.batch),
            };
            let mut encoded = Vec::new();
            encode_into(&commit, &mut encoded);
            if encoded.len() == payload_len {
                record[payload].copy_from_slice(&encoded);
                state.chain = commit.chain;
            }
            seal(record);
            state.batch.clear();
            state.seqs = None;
            state.records = 0;
            return;
        }
        RecordKind::Genesis => {
            state.config_hash = Some(*blake3::hash(&record[payload]).as_bytes());
        }
        RecordKind::Command => state.seq_last = seq,
        RecordKind::Events => {}
    }
    let (first, _) = state.seqs.unwrap_or((seq, seq));
    state.seqs = Some((first, seq));
    state.records += 1;
    seal(record);
    state.batch.extend_from_slice(record);
}

/// Recomputes a record's CRC32C trailer.
fn seal(record: &mut [u8]) {
    let len = record.len();
    let crc = crc32c::crc32c(&record[..len - RECORD_TRAILER_BYTES]);
    record[len - RECORD_TRAILER_BYTES..].copy_from_slice(&crc.to_le_bytes());
}

pub fn burst_seeds() -> Vec<Vec<u8>> {
    // Offsets in the first header, in the genesis record, in a command, in the second header.
    [0u32, 40, 200, 1_000, 2_000, 4_000]
        .iter()
        .map(|offset| {
            let mut input = offset.to_le_bytes().to_vec();
            input.push(0x01);
            input
        })
        .collect()
}

/// Input: a byte offset (u32, little-endian, taken modulo the journal's length) and up to four
/// masks XOR-ed into the bytes from there.
pub fn burst_run(input: &[u8]) -> u64 {
    let f = fixture();
    let Some(burst) = Burst::parse(input, f.segments.iter().map(Vec::len).sum()) else {
        return 0;
    };
    let mut segments = f.segments.clone();
    let mut protected = false;
    let mut base = 0;
    for segment in &mut segments {
        for (i, mask) in burst.masks.iter().enumerate() {
            let at = burst.offset + i;
            if (base..base + segment.len()).contains(&at) && *mask != 0 {
                segment[at - base] ^= mask;
                protected |= is_protected(segment, at - base);
            }
        }
        base += segment.len();
    }
    let result = read_journal(&mut MemStorage::new(segments), Repair::ReadOnly);
    let Ok(read) = result else {
        return 1;
    };
    let kept = read.batches.len();
    assert!(
        read.genesis == f.read.genesis,
        "a burst at {burst:?} changed the genesis record"
    );
    assert!(kept <= f.read.batches.len());
    assert!(
        read.batches[..] == f.read.batches[..kept],
        "a burst at {burst:?} was read as a different batch"
    );
    if protected {
        assert!(
            kept < f.read.batches.len(),
            "a burst at {burst:?} in a committed record went unnoticed"
        );
    }
    2 + u64::from(read.tail_cut.is_some()) + kept as u64 * 4
}

/// True when a byte of a segment is covered by a check: the header but the segment size (which
/// the reader never uses: a segment is as long as its file), and every written record.
fn is_protected(segment: &[u8], at: usize) -> bool {
    let written_end = segment.len() - TAIL_ZERO_BYTES;
    !(24..32).contains(&at) && at < written_end
}

#[derive(Debug)]
pub struct Burst {
    pub offset: usize,
    pub masks: Vec<u8>,
}

impl Burst {
    pub fn parse(input: &[u8], len: usize) -> Option<Burst> {
        let offset = u32::from_le_bytes(input.get(..4)?.try_into().ok()?) as usize % len;
        let masks: Vec<u8> = input[4..].iter().take(4).copied().collect();
        masks
            .iter()
            .any(|&m| m != 0)
            .then_some(Burst { offset, masks })
    }
}
