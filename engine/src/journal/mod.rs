//! The journal: sequenced commands and the events they produced, in memory-mapped segment files,
//! checksummed per record and hash-chained per batch. docs/JOURNAL.md documents every byte.
//!
//! A batch is staged in memory (records, then a commit record carrying the hash chain), then copied
//! into the mapping in one piece; a batch never straddles two segments. On recovery, a torn or
//! corrupt tail after the last commit of the last segment is cut off with a warning; corruption
//! anywhere else refuses to start, naming the segment, the byte offset and the sequence number.

pub mod format;
pub mod storage;

use std::fmt;
use std::io;

use serde::Serialize;

use crate::exchange::{ExchangeCommand, ExchangeEvent};
use format::*;
use storage::{Segment, Storage};

/// How far an appended batch must get before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Durability {
    /// Copied into the mapping: survives a crash of the process (the pages belong to the kernel).
    Process,
    /// Also msync'ed once per batch (group commit): survives power loss.
    Fsync,
}

/// Where the journal ends: the next record goes to `offset` of segment `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub index: u64,
    pub offset: usize,
}

pub struct JournalWriter<S: Storage> {
    storage: S,
    segment: S::Segment,
    index: u64,
    offset: usize,
    segment_bytes: usize,
    chain: [u8; 32],
    config_hash: [u8; 32],
    durability: Durability,
    staging: Vec<u8>,
    batch_first_seq: Option<u64>,
    batch_last_seq: u64,
    batch_records: u32,
    bytes_written: u64,
    /// The next segment, being created on another thread once this one is half full.
    ahead: Option<std::thread::JoinHandle<io::Result<S::Segment>>>,
}

impl<S: Storage> JournalWriter<S> {
    /// Starts a new journal: segment 0 and the genesis batch.
    pub fn create(
        mut storage: S,
        genesis: &Genesis,
        ts_ns: u64,
        segment_bytes: usize,
        durability: Durability,
    ) -> io::Result<JournalWriter<S>> {
        assert!(
            segment_bytes >= SEGMENT_BYTES_MIN,
            "segment of {segment_bytes} bytes"
        );
        let mut payload = Vec::new();
        encode_into(genesis, &mut payload);
        let config_hash = *blake3::hash(&payload).as_bytes();
        let mut segment = storage.create(0, segment_bytes)?;
        segment.write(0, &segment_header(0, segment_bytes, &config_hash));
        segment.sync(0, SEGMENT_HEADER_BYTES)?;
        let mut writer = JournalWriter {
            storage,
            segment,
            index: 0,
            offset: SEGMENT_HEADER_BYTES,
            segment_bytes,
            chain: CHAIN_ZERO,
            config_hash,
            durability,
            staging: Vec::with_capacity(1 << 20),
            batch_first_seq: None,
            batch_last_seq: 0,
            batch_records: 0,
            bytes_written: 0,
            ahead: None,
        };
        writer.stage(RecordKind::Genesis, 0, ts_ns, |out| {
            out.extend_from_slice(&payload)
        });
        writer.commit(ts_ns)?;
        Ok(writer)
    }

    /// Continues a journal read by [`read_journal`].
    pub fn resume(
        mut storage: S,
        read: &JournalRead,
        segment_bytes: usize,
        durability: Durability,
    ) -> io::Result<JournalWriter<S>> {
        let mut segment = storage.open(read.end.index)?;
        segment.prepare_appends(read.end.offset);
        // Segments keep the size they were created with; new ones take the configured size.
        let _ = segment_bytes;
        let segment_bytes = segment.bytes().len();
        Ok(JournalWriter {
            storage,
            segment,
            index: read.end.index,
            offset: read.end.offset,
            segment_bytes,
            chain: read.chain,
            config_hash: read.config_hash,
            durability,
            staging: Vec::with_capacity(1 << 20),
            batch_first_seq: None,
            batch_last_seq: 0,
            batch_records: 0,
            bytes_written: 0,
            ahead: None,
        })
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    pub fn position(&self) -> Position {
        Position {
            index: self.index,
            offset: self.offset,
        }
    }

    pub fn chain(&self) -> [u8; 32] {
        self.chain
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    fn stage(
        &mut self,
        kind: RecordKind,
        seq: u64,
        ts_ns: u64,
        payload: impl FnOnce(&mut Vec<u8>),
    ) {
        if self.batch_first_seq.is_none() {
            self.batch_first_seq = Some(seq);
        }
        self.batch_last_seq = seq;
        self.batch_records += 1;
        append_record(&mut self.staging, kind, seq, ts_ns, payload);
    }

    fn stage_value<T: Serialize + ?Sized>(
        &mut self,
        kind: RecordKind,
        seq: u64,
        ts_ns: u64,
        value: &T,
    ) {
        self.stage(kind, seq, ts_ns, |out| {
            encode_into(&value, out);
        });
    }

    /// Appends a record whose payload is already encoded (benchmarks, tools that copy journals).
    pub fn append_encoded(&mut self, kind: RecordKind, seq: u64, ts_ns: u64, payload: &[u8]) {
        self.stage(kind, seq, ts_ns, |out| out.extend_from_slice(payload));
    }

    pub fn append_command(&mut self, seq: u64, ts_ns: u64, command: &ExchangeCommand) {
        self.stage_value(RecordKind::Command, seq, ts_ns, command);
    }

    pub fn append_events(&mut self, seq: u64, ts_ns: u64, events: &[ExchangeEvent]) {
        self.stage_value(RecordKind::Events, seq, ts_ns, events);
    }

    /// Closes the staged batch with its commit record and writes it into the mapping; with
    /// `Durability::Fsync` also msyncs it. Only after this returns may its acknowledgements go out.
    pub fn commit(&mut self, ts_ns: u64) -> io::Result<()> {
        let Some(first_seq) = self.batch_first_seq.take() else {
            return Ok(());
        };
        let chain = chain_next(&self.chain, &self.staging);
        let commit = Commit {
            first_seq,
            last_seq: self.batch_last_seq,
            records: self.batch_records,
            chain,
        };
        let last_seq = self.batch_last_seq;
        let body_len = self.staging.len();
        append_record(
            &mut self.staging,
            RecordKind::Commit,
            last_seq,
            ts_ns,
            |out| {
                encode_into(&commit, out);
            },
        );
        let len = self.staging.len();
        assert!(
            SEGMENT_HEADER_BYTES + len <= self.segment_bytes,
            "batch of {len} bytes does not fit a segment of {}",
            self.segment_bytes
        );
        if self.offset + len > self.segment_bytes {
            self.rotate()?;
        }
        // The body first, the commit record after it: a memcpy may store its bytes in any order,
        // so a process killed inside one copy could otherwise leave a commit record without all of
        // its batch. x86 retires stores in program order; the fence keeps the compiler from
        // merging or reordering the two copies.
        self.segment.write(self.offset, &self.staging[..body_len]);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.segment
            .write(self.offset + body_len, &self.staging[body_len..]);
        if self.durability == Durability::Fsync {
            self.segment.sync(self.offset, len)?;
        }
        self.offset += len;
        self.bytes_written += len as u64;
        self.prepare_next();
        self.chain = chain;
        self.staging.clear();
        self.batch_records = 0;
        Ok(())
    }

    /// Once a segment is half full, its successor is made on another thread: creating and
    /// pre-faulting 64 MiB takes tens of milliseconds, which the engine thread must not wait for.
    fn prepare_next(&mut self) {
        if self.ahead.is_none() && self.offset > self.segment_bytes / 2 {
            let index = self.index + 1;
            let header = segment_header(index, self.segment_bytes, &self.config_hash);
            self.ahead = self.storage.create_ahead(index, self.segment_bytes, header);
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        // The end of the old segment stays zero: readers take a zero length as its end.
        self.segment.sync(0, self.segment_bytes)?;
        let index = self.index + 1;
        let made_ahead = self
            .ahead
            .take()
            .map(|handle| handle.join().expect("segment thread"));
        let segment = match made_ahead {
            Some(segment) => segment?,
            None => {
                let mut segment = self.storage.create(index, self.segment_bytes)?;
                segment.write(
                    0,
                    &segment_header(index, self.segment_bytes, &self.config_hash),
                );
                segment.sync(0, SEGMENT_HEADER_BYTES)?;
                segment
            }
        };
        self.segment = segment;
        self.index = index;
        self.offset = SEGMENT_HEADER_BYTES;
        Ok(())
    }

    /// msync everything written so far (before a snapshot, and at shutdown).
    pub fn sync_all(&mut self) -> io::Result<()> {
        self.segment.sync(0, self.offset)
    }
}

/// A record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordRead {
    pub kind: RecordKind,
    pub seq: u64,
    pub ts_ns: u64,
    pub payload: Vec<u8>,
    pub segment: u64,
    pub offset: usize,
}

/// A committed batch as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRead {
    pub records: Vec<RecordRead>,
    pub commit: Commit,
    pub segment: u64,
    pub offset: usize,
}

/// A torn tail that recovery cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailCut {
    pub segment: String,
    pub offset: usize,
    /// The first sequence number lost, when a record header was readable.
    pub seq: Option<u64>,
    pub detail: String,
}

impl fmt::Display for TailCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "torn tail cut off: {} at byte offset {}",
            self.segment, self.offset
        )?;
        if let Some(seq) = self.seq {
            write!(f, " (from seq {seq})")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Everything a reader learns from a journal.
#[derive(Clone, Debug)]
pub struct JournalRead {
    pub genesis: Genesis,
    pub config_hash: [u8; 32],
    /// Every committed batch after the genesis batch, in order.
    pub batches: Vec<BatchRead>,
    pub end: Position,
    pub chain: [u8; 32],
    pub tail_cut: Option<TailCut>,
    pub segments: Vec<String>,
}

impl JournalRead {
    pub fn last_seq(&self) -> u64 {
        self.batches.last().map_or(0, |b| b.commit.last_seq)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalError {
    Io(String),
    Empty,
    /// A record is bad and valid data follows it: not a torn tail but corruption.
    Corrupt {
        segment: String,
        offset: usize,
        seq: Option<u64>,
        detail: String,
    },
    /// A commit's chain does not match the records before it: something was edited, removed or
    /// reordered at or before this batch.
    ChainBroken {
        segment: String,
        offset: usize,
        seq: u64,
    },
    BadSegment {
        segment: String,
        detail: String,
    },
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io(e) => write!(f, "journal I/O error: {e}"),
            JournalError::Empty => write!(f, "journal is empty"),
            JournalError::Corrupt {
                segment,
                offset,
                seq,
                detail,
            } => {
                write!(f, "journal corrupt: {segment} at byte offset {offset}")?;
                if let Some(seq) = seq {
                    write!(f, " (seq {seq})")?;
                }
                write!(f, ": {detail}")
            }
            JournalError::ChainBroken { segment, offset, seq } => write!(
                f,
                "journal hash chain broken: {segment} at byte offset {offset} (commit of seq {seq}): \
                 a record at or before it was edited, removed or reordered"
            ),
            JournalError::BadSegment { segment, detail } => write!(f, "journal segment {segment}: {detail}"),
        }
    }
}

impl std::error::Error for JournalError {}

impl From<io::Error> for JournalError {
    fn from(e: io::Error) -> JournalError {
        JournalError::Io(e.to_string())
    }
}

/// What to do with a torn tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Report it and leave the files alone (auditors, replay).
    ReadOnly,
    /// Zero it out so that appends continue after the last commit (the engine at start).
    CutTail,
}

struct Scan {
    segments: Vec<u64>,
    names: Vec<String>,
    genesis: Option<(Genesis, [u8; 32])>,
    batches: Vec<BatchRead>,
    pending: Vec<RecordRead>,
    hasher: blake3::Hasher,
    chain: [u8; 32],
    seq_last: Option<u64>,
    end: Position,
}

/// Reads and checks a whole journal: every record's checksum, the sequence, and the hash chain.
pub fn read_journal<S: Storage>(
    storage: &mut S,
    repair: Repair,
) -> Result<JournalRead, JournalError> {
    let segments = storage.list()?;
    if segments.is_empty() {
        return Err(JournalError::Empty);
    }
    let mut scan = Scan {
        names: segments.iter().map(|&i| storage.name(i)).collect(),
        segments: segments.clone(),
        genesis: None,
        batches: Vec::new(),
        pending: Vec::new(),
        hasher: chain_hasher(&CHAIN_ZERO),
        chain: CHAIN_ZERO,
        seq_last: None,
        end: Position {
            index: segments[0],
            offset: SEGMENT_HEADER_BYTES,
        },
    };
    let mut config_hash = None;
    let mut tail_cut = None;
    for (k, &index) in segments.iter().enumerate() {
        let segment = storage.open(index)?;
        let last = k + 1 == segments.len();
        let header_ok = parse_segment_header(segment.bytes()).is_ok();
        let body = segment
            .bytes()
            .get(SEGMENT_HEADER_BYTES..)
            .unwrap_or_default();
        if last && !header_ok && body.iter().all(|&b| b == 0) {
            // A segment killed while being made, before or while its header was written: it
            // holds nothing, and recovery removes it (appends continue in the segment before).
            break;
        }
        let header =
            parse_segment_header(segment.bytes()).map_err(|detail| JournalError::BadSegment {
                segment: scan.names[k].clone(),
                detail,
            })?;
        if header.index != index {
            return Err(JournalError::BadSegment {
                segment: scan.names[k].clone(),
                detail: format!("header says segment {}", header.index),
            });
        }
        if *config_hash.get_or_insert(header.config_hash) != header.config_hash {
            return Err(JournalError::BadSegment {
                segment: scan.names[k].clone(),
                detail: "configuration hash differs from the first segment's".into(),
            });
        }
        if let Some(cut) = scan.segment(storage, k, segment.bytes())? {
            tail_cut = Some(cut);
            break;
        }
    }
    if tail_cut.is_none() && !scan.pending.is_empty() {
        // Whole records after the last commit but no commit: the batch never completed.
        let first = &scan.pending[0];
        tail_cut = Some(TailCut {
            segment: storage.name(first.segment),
            offset: first.offset,
            seq: Some(first.seq),
            detail: "batch without a commit record".into(),
        });
    }
    if repair == Repair::CutTail {
        cut_tail(storage, &scan)?;
    }
    let (genesis, config_hash) = scan.genesis.ok_or_else(|| JournalError::Corrupt {
        segment: scan.names[0].clone(),
        offset: SEGMENT_HEADER_BYTES,
        seq: None,
        detail: "no committed genesis record".into(),
    })?;
    let mut batches = scan.batches;
    batches.remove(0);
    Ok(JournalRead {
        genesis,
        config_hash,
        batches,
        end: scan.end,
        chain: scan.chain,
        tail_cut,
        segments: scan.names,
    })
}

fn chain_hasher(previous: &[u8; 32]) -> blake3::Hasher {
    let mut hasher = blake3::Hasher::new();
    hasher.update(previous);
    hasher
}

impl Scan {
    /// Reads the records of segment `k`; returns a tail cut if the segment ends in one.
    fn segment<S: Storage>(
        &mut self,
        storage: &mut S,
        k: usize,
        bytes: &[u8],
    ) -> Result<Option<TailCut>, JournalError> {
        let index = self.segments[k];
        let mut offset = SEGMENT_HEADER_BYTES;
        loop {
            let problem = match parse_record(&bytes[offset..]) {
                Ok(record) => match self.record(k, offset, &record) {
                    Ok(()) => {
                        offset += record.len;
                        continue;
                    }
                    Err(problem) => problem,
                },
                Err(RecordError::End) => {
                    if bytes[offset..].iter().all(|&b| b == 0) {
                        return Ok(None);
                    }
                    Problem::Bad {
                        seq: None,
                        detail: "zero record length followed by non-zero bytes".into(),
                    }
                }
                Err(e) => Problem::Bad {
                    seq: header_seq(&bytes[offset..]),
                    detail: format!("{e:?}"),
                },
            };
            return match problem {
                Problem::Chain { seq } => Err(JournalError::ChainBroken {
                    segment: self.names[k].clone(),
                    offset,
                    seq,
                }),
                Problem::Bad { seq, detail } => {
                    if let Some(later) = self.valid_record_after(storage, k, bytes, offset)? {
                        return Err(JournalError::Corrupt {
                            segment: self.names[k].clone(),
                            offset,
                            seq: seq.or(self.seq_last.map(|s| s + 1)),
                            detail: format!("{detail}; a committed batch follows ({later}), so this is not a torn tail"),
                        });
                    }
                    let cut_offset = self.pending.first().map_or(offset, |r| r.offset);
                    let cut_seq = self.pending.first().map(|r| r.seq).or(seq);
                    Ok(Some(TailCut {
                        segment: storage.name(index),
                        offset: cut_offset,
                        seq: cut_seq,
                        detail,
                    }))
                }
            };
        }
    }

    /// Takes one checked record into the scan.
    fn record(&mut self, k: usize, offset: usize, r: &RecordView<'_>) -> Result<(), Problem> {
        let bad = |detail: String| Problem::Bad {
            seq: Some(r.seq),
            detail,
        };
        match r.kind {
            RecordKind::Genesis => {
                if self.genesis.is_some()
                    || !self.batches.is_empty()
                    || !self.pending.is_empty()
                    || r.seq != 0
                {
                    return Err(bad("genesis record out of place".into()));
                }
                decode::<Genesis>(r.payload)
                    .ok_or_else(|| bad("genesis payload does not decode".into()))?;
            }
            // Sequence continuity is checked at the commit, after the chain: a removed or reordered
            // record is then reported as what it is, a broken chain.
            RecordKind::Command => {}
            RecordKind::Events => {
                let follows = self
                    .pending
                    .last()
                    .is_some_and(|p| p.kind == RecordKind::Command && p.seq == r.seq);
                if !follows {
                    return Err(bad(format!(
                        "events of seq {} without their command",
                        r.seq
                    )));
                }
            }
            RecordKind::Commit => return self.commit(k, offset, r),
        }
        self.hasher.update(r.bytes);
        self.pending.push(RecordRead {
            kind: r.kind,
            seq: r.seq,
            ts_ns: r.ts_ns,
            payload: r.payload.to_vec(),
            segment: self.segments[k],
            offset,
        });
        Ok(())
    }

    fn commit(&mut self, k: usize, offset: usize, r: &RecordView<'_>) -> Result<(), Problem> {
        let commit: Commit = decode(r.payload).ok_or(Problem::Bad {
            seq: Some(r.seq),
            detail: "commit payload does not decode".into(),
        })?;
        let chain = *self.hasher.finalize().as_bytes();
        if commit.chain != chain
            || commit.records as usize != self.pending.len()
            || self.pending.is_empty()
        {
            return Err(Problem::Chain { seq: r.seq });
        }
        for record in self
            .pending
            .iter()
            .filter(|p| p.kind == RecordKind::Command)
        {
            let expected = self.seq_last.map_or(1, |s| s + 1);
            if record.seq != expected {
                return Err(Problem::Bad {
                    seq: Some(record.seq),
                    detail: format!("command seq {} where {expected} was expected", record.seq),
                });
            }
            self.seq_last = Some(record.seq);
        }
        if self.genesis.is_none() {
            let genesis = decode::<Genesis>(&self.pending[0].payload).expect("checked when read");
            let hash = *blake3::hash(&self.pending[0].payload).as_bytes();
            self.genesis = Some((genesis, hash));
        }
        self.batches.push(BatchRead {
            records: std::mem::take(&mut self.pending),
            commit,
            segment: self.segments[k],
            offset,
        });
        self.chain = chain;
        self.hasher = chain_hasher(&chain);
        self.end = Position {
            index: self.segments[k],
            offset: offset + r.len,
        };
        Ok(())
    }

    /// Looks for any valid record after a bad one: if there is one, the damage is not a torn tail.
    fn valid_record_after<S: Storage>(
        &self,
        storage: &mut S,
        k: usize,
        bytes: &[u8],
        offset: usize,
    ) -> Result<Option<String>, JournalError> {
        if let Some(at) = find_valid_record(bytes, offset + RECORD_ALIGN) {
            return Ok(Some(format!("{} offset {at}", self.names[k])));
        }
        for j in k + 1..self.segments.len() {
            let later = storage.open(self.segments[j])?;
            if let Some(at) = find_valid_record(later.bytes(), SEGMENT_HEADER_BYTES) {
                return Ok(Some(format!("{} offset {at}", self.names[j])));
            }
        }
        Ok(None)
    }
}

enum Problem {
    Bad { seq: Option<u64>, detail: String },
    Chain { seq: u64 },
}

/// The seq field of a record header, if the header is at least plausible.
fn header_seq(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < RECORD_HEADER_BYTES || RecordKind::from_u8(bytes[4]).is_none() {
        return None;
    }
    Some(u64::from_le_bytes(bytes[8..16].try_into().unwrap()))
}

/// The offset of the first valid *commit* record at or after `from`. Only a commit proves data
/// was completed after a bad spot: an unfinished batch may leave whole records of its own, in any
/// order, but never its commit before its body (see `JournalWriter::commit`).
fn find_valid_record(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from.div_ceil(RECORD_ALIGN) * RECORD_ALIGN;
    while at + RECORD_BYTES_MIN <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let plausible = len >= RECORD_BYTES_MIN
            && len.is_multiple_of(RECORD_ALIGN)
            && at + len <= bytes.len()
            && RecordKind::from_u8(bytes[at + 4]).is_some()
            && bytes[at + 5..at + 8] == [0, 0, 0];
        let commit = bytes[at + 4] == RecordKind::Commit as u8;
        if plausible && commit && parse_record(&bytes[at..]).is_ok() {
            return Some(at);
        }
        at += RECORD_ALIGN;
    }
    None
}

/// Zeroes everything after the last commit and removes any later segment (they hold nothing
/// committed), so that appends continue right after the last commit.
fn cut_tail<S: Storage>(storage: &mut S, scan: &Scan) -> Result<(), JournalError> {
    let end = scan.end;
    let mut segment = storage.open(end.index)?;
    let len = segment.bytes().len();
    let dirty = segment.bytes()[end.offset..].iter().rposition(|&b| b != 0);
    if let Some(last) = dirty {
        let zeros = vec![0u8; last + 1];
        segment.write(end.offset, &zeros);
        segment.sync(end.offset, (last + 1).min(len - end.offset))?;
    }
    for &index in scan.segments.iter().filter(|&&i| i > end.index) {
        storage.remove(index)?;
    }
    Ok(())
}
