//! The journal reader, as a stream: segments in index order, records in offset order, one
//! committed batch at a time, borrowed from the segment's mapping. Every record's CRC32C, the
//! segment headers, the hash chain at every commit and the sequence without gaps are checked as
//! it goes; damage is told apart from a torn tail by looking for a valid commit after it.
//!
//! Memory holds one segment mapping and one batch's record positions, whatever the length of the
//! journal: [`JournalScan`] is what a verifier of ten million records walks. [`read_journal`]
//! collects the same stream into a [`JournalRead`] for recovery and reports.

use super::format::*;
use super::storage::{Segment, Storage};
use super::{BatchRead, JournalError, JournalRead, Position, RecordRead, Repair, TailCut};

/// A record of a committed batch, borrowed from the segment it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub kind: RecordKind,
    pub seq: u64,
    pub ts_ns: u64,
    pub payload: &'a [u8],
    pub segment: u64,
    pub offset: usize,
}

impl RecordRef<'_> {
    pub fn to_read(&self) -> RecordRead {
        RecordRead {
            kind: self.kind,
            seq: self.seq,
            ts_ns: self.ts_ns,
            payload: self.payload.to_vec(),
            segment: self.segment,
            offset: self.offset,
        }
    }

    /// Overwrites `out` with this record, reusing its payload's allocation.
    pub fn copy_into(&self, out: &mut RecordRead) {
        out.kind = self.kind;
        out.seq = self.seq;
        out.ts_ns = self.ts_ns;
        out.payload.clear();
        out.payload.extend_from_slice(self.payload);
        out.segment = self.segment;
        out.offset = self.offset;
    }
}

impl RecordRead {
    pub fn view(&self) -> RecordRef<'_> {
        RecordRef {
            kind: self.kind,
            seq: self.seq,
            ts_ns: self.ts_ns,
            payload: &self.payload,
            segment: self.segment,
            offset: self.offset,
        }
    }
}

/// A checked record of the segment being read, not yet committed: where it is, not its bytes.
#[derive(Clone, Copy, Debug)]
struct Span {
    kind: RecordKind,
    seq: u64,
    ts_ns: u64,
    offset: usize,
    payload_len: usize,
}

impl Span {
    fn view<'a>(&self, segment: u64, bytes: &'a [u8]) -> RecordRef<'a> {
        let payload = self.offset + RECORD_HEADER_BYTES;
        RecordRef {
            kind: self.kind,
            seq: self.seq,
            ts_ns: self.ts_ns,
            payload: &bytes[payload..payload + self.payload_len],
            segment,
            offset: self.offset,
        }
    }
}

/// A committed batch as [`JournalScan::next_batch`] hands it over, valid until the next call.
#[derive(Clone, Copy, Debug)]
pub struct BatchRef<'a> {
    pub commit: Commit,
    /// Where its commit record is.
    pub segment: u64,
    pub offset: usize,
    /// Records read in earlier segments. The writer never splits a batch, but a reader takes one
    /// whose chain holds; such records are copied when their segment is left.
    carried: &'a [RecordRead],
    /// Records in this segment.
    spans: &'a [Span],
    bytes: &'a [u8],
}

impl<'a> BatchRef<'a> {
    /// Records in the batch, not counting its commit.
    pub fn len(&self) -> usize {
        self.carried.len() + self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch's records in journal order, without its commit.
    pub fn records(&self) -> impl Iterator<Item = RecordRef<'a>> + Clone + 'a {
        let (segment, bytes) = (self.segment, self.bytes);
        let carried = self.carried.iter().map(RecordRead::view);
        carried.chain(self.spans.iter().map(move |s| s.view(segment, bytes)))
    }

    pub fn to_read(&self) -> BatchRead {
        BatchRead {
            records: self.records().map(|r| r.to_read()).collect(),
            commit: self.commit,
            segment: self.segment,
            offset: self.offset,
        }
    }
}

/// What a scan learned once it reached the end of the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEnd {
    /// Where the next record goes: right after the last commit.
    pub end: Position,
    /// The chain after the last commit.
    pub chain: [u8; 32],
    pub tail_cut: Option<TailCut>,
    /// Committed batches after the genesis batch.
    pub batches: u64,
    /// Every record of every committed batch, commits and the genesis batch included.
    pub records: u64,
    /// The last committed command's seq (0 when there is none).
    pub last_seq: u64,
}

impl JournalRead {
    /// The same facts a [`JournalScan`] reports at its end.
    pub fn journal_end(&self) -> JournalEnd {
        let records: usize = self.batches.iter().map(|b| b.records.len() + 1).sum();
        JournalEnd {
            end: self.end,
            chain: self.chain,
            tail_cut: self.tail_cut.clone(),
            batches: self.batches.len() as u64,
            // The genesis batch is its genesis record and its commit.
            records: records as u64 + 2,
            last_seq: self.last_seq(),
        }
    }
}

/// A journal being read, batch by batch. [`JournalScan::open`] reads the genesis batch;
/// [`JournalScan::next_batch`] returns every committed batch after it, in order;
/// [`JournalScan::finish`] reports the end (and with [`Repair::CutTail`] cuts a torn tail).
pub struct JournalScan<'s, S: Storage> {
    storage: &'s mut S,
    repair: Repair,
    indices: Vec<u64>,
    names: Vec<String>,
    /// The segment being read: its position in `indices`, its bytes, the next record's offset.
    current: Option<(usize, S::Segment)>,
    offset: usize,
    /// The next position in `indices` to open.
    next: usize,
    config_hash: Option<[u8; 32]>,
    genesis: Option<(Genesis, [u8; 32])>,
    carried: Vec<RecordRead>,
    pending: Vec<Span>,
    /// The commit that closed `carried` and `pending`, which were handed over as a batch and are
    /// cleared on the next call.
    delivered: Option<Commit>,
    hasher: blake3::Hasher,
    chain: [u8; 32],
    seq_last: Option<u64>,
    end: Position,
    /// Committed batches, the genesis batch included, and their records with the commits.
    batches: u64,
    records: u64,
    tail_cut: Option<TailCut>,
    /// The end was reached, or a torn tail.
    done: bool,
}

/// Why reading stopped at a record.
enum Problem {
    Bad { seq: Option<u64>, detail: String },
    Chain { seq: u64 },
}

/// What reading the current segment came to.
enum Stop {
    /// A commit record at this offset closed a batch.
    Commit(usize),
    /// The segment holds nothing more.
    SegmentEnd,
    Problem(usize, Problem),
}

impl<'s, S: Storage> JournalScan<'s, S> {
    /// Starts reading a journal and reads its genesis batch.
    pub fn open(storage: &'s mut S, repair: Repair) -> Result<JournalScan<'s, S>, JournalError> {
        let indices = storage.list()?;
        if indices.is_empty() {
            return Err(JournalError::Empty);
        }
        let names = indices.iter().map(|&i| storage.name(i)).collect();
        let first = indices[0];
        let mut scan = JournalScan {
            storage,
            repair,
            indices,
            names,
            current: None,
            offset: SEGMENT_HEADER_BYTES,
            next: 0,
            config_hash: None,
            genesis: None,
            carried: Vec::new(),
            pending: Vec::new(),
            delivered: None,
            hasher: chain_hasher(&CHAIN_ZERO),
            chain: CHAIN_ZERO,
            seq_last: None,
            end: Position {
                index: first,
                offset: SEGMENT_HEADER_BYTES,
            },
            batches: 0,
            records: 0,
            tail_cut: None,
            done: false,
        };
        if scan.advance()?.is_none() {
            // No committed batch at all: recovery still cuts what is there, then refuses.
            let name = scan.names[0].clone();
            scan.finish()?;
            return Err(JournalError::Corrupt {
                segment: name,
                offset: SEGMENT_HEADER_BYTES,
                seq: None,
                detail: "no committed genesis record".into(),
            });
        }
        scan.genesis.as_ref().expect("the first batch is genesis");
        Ok(scan)
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis.as_ref().expect("read by open").0
    }

    /// BLAKE3 of the genesis payload: the same in every segment header.
    pub fn config_hash(&self) -> [u8; 32] {
        self.genesis.as_ref().expect("read by open").1
    }

    /// Every segment file, named by the storage, in index order.
    pub fn segments(&self) -> &[String] {
        &self.names
    }

    /// The next committed batch, or `None` at the end of the journal (or at a torn tail, which
    /// [`JournalScan::finish`] reports).
    pub fn next_batch(&mut self) -> Result<Option<BatchRef<'_>>, JournalError> {
        let Some(commit_offset) = self.advance()? else {
            return Ok(None);
        };
        let (k, segment) = self.current.as_ref().expect("a commit was read in it");
        Ok(Some(BatchRef {
            commit: self.delivered.expect("set by the commit"),
            segment: self.indices[*k],
            offset: commit_offset,
            carried: &self.carried,
            spans: &self.pending,
            bytes: segment.bytes(),
        }))
    }

    /// Reads on to the end, then reports it. A batch without its commit at the end is a torn
    /// tail; with [`Repair::CutTail`] everything after the last commit is zeroed and later
    /// segments removed.
    pub fn finish(mut self) -> Result<JournalEnd, JournalError> {
        while self.advance()?.is_some() {}
        if self.tail_cut.is_none() {
            // Whole records after the last commit but no commit: the batch never completed.
            let first = self.carried.first().map(|r| (r.segment, r.offset, r.seq));
            let first = first.or_else(|| self.pending_first());
            if let Some((segment, offset, seq)) = first {
                self.tail_cut = Some(TailCut {
                    segment: self.storage.name(segment),
                    offset,
                    seq: Some(seq),
                    detail: "batch without a commit record".into(),
                });
            }
        }
        if self.repair == Repair::CutTail {
            cut_tail(self.storage, self.end, &self.indices)?;
        }
        Ok(JournalEnd {
            end: self.end,
            chain: self.chain,
            tail_cut: self.tail_cut,
            batches: self.batches.saturating_sub(1),
            records: self.records,
            last_seq: self.seq_last.unwrap_or(0),
        })
    }

    /// The segment, offset and seq of the first uncommitted record of the current segment.
    fn pending_first(&self) -> Option<(u64, usize, u64)> {
        let (k, _) = self.current.as_ref()?;
        let span = self.pending.first()?;
        Some((self.indices[*k], span.offset, span.seq))
    }

    /// Reads up to the next commit; returns its offset in the current segment, or `None` at the
    /// end.
    fn advance(&mut self) -> Result<Option<usize>, JournalError> {
        if self.delivered.take().is_some() {
            self.carried.clear();
            self.pending.clear();
        }
        while !self.done {
            if self.current.is_none() && !self.open_next()? {
                self.done = true;
                break;
            }
            // Out of `self` while its records are taken in, back before anything else reads it.
            let (k, segment) = self.current.take().expect("opened");
            let stop = self.walk(k, segment.bytes());
            self.current = Some((k, segment));
            match stop {
                Stop::Commit(offset) => return Ok(Some(offset)),
                Stop::SegmentEnd => self.leave_segment(),
                Stop::Problem(offset, problem) => {
                    let cut = self.problem(k, offset, problem)?;
                    self.tail_cut = Some(cut);
                    self.done = true;
                }
            }
        }
        Ok(None)
    }

    /// Opens the next segment and checks its header; false when there is none (or the last one
    /// is all zeros: a segment killed while being made, before or while its header was written,
    /// holds nothing, and recovery removes it).
    fn open_next(&mut self) -> Result<bool, JournalError> {
        let k = self.next;
        let Some(&index) = self.indices.get(k) else {
            return Ok(false);
        };
        self.next += 1;
        let segment = self.storage.open(index)?;
        let last = k + 1 == self.indices.len();
        let header = parse_segment_header(segment.bytes());
        let body = segment
            .bytes()
            .get(SEGMENT_HEADER_BYTES..)
            .unwrap_or_default();
        if last && header.is_err() && all_zero(body) {
            return Ok(false);
        }
        let bad = |detail: String| JournalError::BadSegment {
            segment: self.names[k].clone(),
            detail,
        };
        let header = header.map_err(bad)?;
        if header.index != index {
            return Err(bad(format!("header says segment {}", header.index)));
        }
        if *self.config_hash.get_or_insert(header.config_hash) != header.config_hash {
            return Err(bad(
                "configuration hash differs from the first segment's".into()
            ));
        }
        self.current = Some((k, segment));
        self.offset = SEGMENT_HEADER_BYTES;
        Ok(true)
    }

    /// Leaves the current segment: records of an unfinished batch in it are hashed and copied,
    /// since its mapping goes.
    fn leave_segment(&mut self) {
        let (k, segment) = self.current.take().expect("reading a segment");
        if let (Some(first), Some(last)) = (self.pending.first(), self.pending.last()) {
            let bytes = segment.bytes();
            let last_end = self.offset;
            debug_assert!(last.offset < last_end);
            self.hasher.update(&bytes[first.offset..last_end]);
            let index = self.indices[k];
            let copied = self.pending.iter().map(|s| s.view(index, bytes).to_read());
            self.carried.extend(copied);
            self.pending.clear();
        }
    }

    /// Reads records of the current segment from `self.offset` until a commit, the end of the
    /// segment or a problem.
    fn walk(&mut self, k: usize, bytes: &[u8]) -> Stop {
        loop {
            let offset = self.offset;
            let record = match parse_record(&bytes[offset..]) {
                Ok(record) => record,
                Err(RecordError::End) if all_zero(&bytes[offset..]) => {
                    return Stop::SegmentEnd;
                }
                Err(RecordError::End) => {
                    let problem = Problem::Bad {
                        seq: None,
                        detail: "zero record length followed by non-zero bytes".into(),
                    };
                    return Stop::Problem(offset, problem);
                }
                Err(e) => {
                    let problem = Problem::Bad {
                        seq: header_seq(&bytes[offset..]),
                        detail: e.to_string(),
                    };
                    return Stop::Problem(offset, problem);
                }
            };
            let taken = match record.kind {
                RecordKind::Commit => self.commit(k, offset, bytes, &record),
                _ => self.record(offset, &record),
            };
            if let Err(problem) = taken {
                return Stop::Problem(offset, problem);
            }
            self.offset = offset + record.len;
            if record.kind == RecordKind::Commit {
                return Stop::Commit(offset);
            }
        }
    }

    /// Takes one checked record (not a commit) into the batch being read.
    fn record(&mut self, offset: usize, r: &RecordView<'_>) -> Result<(), Problem> {
        let bad = |detail: String| Problem::Bad {
            seq: Some(r.seq),
            detail,
        };
        match r.kind {
            RecordKind::Genesis => {
                if self.genesis.is_some()
                    || self.batches > 0
                    || self.uncommitted() > 0
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
                    .last_uncommitted()
                    .is_some_and(|(kind, seq)| kind == RecordKind::Command && seq == r.seq);
                if !follows {
                    return Err(bad(format!(
                        "events of seq {} without their command",
                        r.seq
                    )));
                }
            }
            RecordKind::Commit => unreachable!("commits are taken by `commit`"),
        }
        self.pending.push(Span {
            kind: r.kind,
            seq: r.seq,
            ts_ns: r.ts_ns,
            offset,
            payload_len: r.payload.len(),
        });
        Ok(())
    }

    fn uncommitted(&self) -> usize {
        self.carried.len() + self.pending.len()
    }

    fn last_uncommitted(&self) -> Option<(RecordKind, u64)> {
        match self.pending.last() {
            Some(span) => Some((span.kind, span.seq)),
            None => self.carried.last().map(|r| (r.kind, r.seq)),
        }
    }

    /// Closes a batch: its chain, its record count, the sequence of its commands.
    fn commit(
        &mut self,
        k: usize,
        offset: usize,
        bytes: &[u8],
        r: &RecordView<'_>,
    ) -> Result<(), Problem> {
        let commit: Commit = decode(r.payload).ok_or(Problem::Bad {
            seq: Some(r.seq),
            detail: "commit payload does not decode".into(),
        })?;
        // The batch's records in this segment are contiguous: one update hashes them all (and
        // lets BLAKE3 take many chunks at once). On a mismatch the scan stops, so the hasher
        // needs no saving.
        if let Some(first) = self.pending.first() {
            self.hasher.update(&bytes[first.offset..offset]);
        }
        let chain = *self.hasher.finalize().as_bytes();
        let count = self.uncommitted();
        if commit.chain != chain || commit.records as usize != count || count == 0 {
            return Err(Problem::Chain { seq: r.seq });
        }
        self.check_commit_seqs(&commit, r.seq)?;
        self.check_sequence()?;
        if self.genesis.is_none() {
            self.take_genesis(bytes, r.seq)?;
        }
        self.chain = chain;
        self.hasher = chain_hasher(&chain);
        self.end = Position {
            index: self.indices[k],
            offset: offset + r.len,
        };
        self.batches += 1;
        self.records += count as u64 + 1;
        self.delivered = Some(commit);
        Ok(())
    }

    /// The commit names the seqs of the records it closes (the chain covers the records, not the
    /// commit).
    fn check_commit_seqs(&self, commit: &Commit, commit_seq: u64) -> Result<(), Problem> {
        let first = self
            .carried
            .first()
            .map_or_else(|| self.pending.first().map(|s| s.seq), |r| Some(r.seq));
        let last = self.last_uncommitted().map(|(_, seq)| seq);
        let (Some(first), Some(last)) = (first, last) else {
            unreachable!("an empty batch fails the chain check");
        };
        if commit.first_seq != first || commit.last_seq != last || commit_seq != last {
            return Err(Problem::Bad {
                seq: Some(commit_seq),
                detail: format!(
                    "commit of seqs {}..{} closes records of seqs {first}..{last}",
                    commit.first_seq, commit.last_seq
                ),
            });
        }
        Ok(())
    }

    /// Command seqs run 1, 2, 3… across batches, without gaps.
    fn check_sequence(&mut self) -> Result<(), Problem> {
        let carried = self.carried.iter().map(|r| (r.kind, r.seq));
        let spans = self.pending.iter().map(|s| (s.kind, s.seq));
        for (kind, seq) in carried.chain(spans) {
            if kind != RecordKind::Command {
                continue;
            }
            let expected = self.seq_last.map_or(1, |s| s + 1);
            if seq != expected {
                return Err(Problem::Bad {
                    seq: Some(seq),
                    detail: format!("command seq {seq} where {expected} was expected"),
                });
            }
            self.seq_last = Some(seq);
        }
        Ok(())
    }

    /// The first batch is the genesis record alone: a command in it would never be re-executed.
    fn take_genesis(&mut self, bytes: &[u8], commit_seq: u64) -> Result<(), Problem> {
        let alone = self.carried.is_empty()
            && self.pending.len() == 1
            && self.pending[0].kind == RecordKind::Genesis;
        if !alone {
            return Err(Problem::Bad {
                seq: Some(commit_seq),
                detail: "the first batch is not the genesis record alone".into(),
            });
        }
        let payload = self.pending[0].view(0, bytes).payload;
        let genesis = decode::<Genesis>(payload).expect("checked when read");
        self.genesis = Some((genesis, *blake3::hash(payload).as_bytes()));
        Ok(())
    }

    /// Turns a problem at `offset` of segment `k` into an error, or into a torn tail when no
    /// valid commit follows it anywhere.
    fn problem(
        &mut self,
        k: usize,
        offset: usize,
        problem: Problem,
    ) -> Result<TailCut, JournalError> {
        let (seq, detail) = match problem {
            Problem::Chain { seq } => {
                return Err(JournalError::ChainBroken {
                    segment: self.names[k].clone(),
                    offset,
                    seq,
                })
            }
            Problem::Bad { seq, detail } => (seq, detail),
        };
        if let Some(later) = self.valid_commit_after(k, offset)? {
            return Err(JournalError::Corrupt {
                segment: self.names[k].clone(),
                offset,
                seq: seq.or(self.seq_last.map(|s| s + 1)),
                detail: format!(
                    "{detail}; a committed batch follows ({later}), so this is not a torn tail"
                ),
            });
        }
        let index = self.indices[k];
        let first = self.carried.first().map(|r| (r.segment, r.offset, r.seq));
        let (segment, offset, seq) = match first.or_else(|| self.pending_first()) {
            Some((segment, offset, first_seq)) => (segment, offset, Some(first_seq)),
            None => (index, offset, seq),
        };
        Ok(TailCut {
            segment: self.storage.name(segment),
            offset,
            seq,
            detail,
        })
    }

    /// Looks for a valid commit after a bad record: if there is one, the damage is not a torn
    /// tail.
    fn valid_commit_after(
        &mut self,
        k: usize,
        offset: usize,
    ) -> Result<Option<String>, JournalError> {
        let (_, segment) = self.current.as_ref().expect("reading a segment");
        if let Some(at) = find_valid_commit(segment.bytes(), offset + RECORD_ALIGN) {
            return Ok(Some(format!("{} offset {at}", self.names[k])));
        }
        for j in k + 1..self.indices.len() {
            let later = self.storage.open(self.indices[j])?;
            if let Some(at) = find_valid_commit(later.bytes(), SEGMENT_HEADER_BYTES) {
                return Ok(Some(format!("{} offset {at}", self.names[j])));
            }
        }
        Ok(None)
    }
}

/// Reads and checks a whole journal into memory: every record's checksum, the sequence, and the
/// hash chain. [`JournalScan`] reads the same without holding it.
pub fn read_journal<S: Storage>(
    storage: &mut S,
    repair: Repair,
) -> Result<JournalRead, JournalError> {
    let mut scan = JournalScan::open(storage, repair)?;
    let (genesis, config_hash) = (scan.genesis().clone(), scan.config_hash());
    let segments = scan.segments().to_vec();
    let mut batches = Vec::new();
    while let Some(batch) = scan.next_batch()? {
        batches.push(batch.to_read());
    }
    let end = scan.finish()?;
    Ok(JournalRead {
        genesis,
        config_hash,
        batches,
        end: end.end,
        chain: end.chain,
        tail_cut: end.tail_cut,
        segments,
    })
}

fn chain_hasher(previous: &[u8; 32]) -> blake3::Hasher {
    let mut hasher = blake3::Hasher::new();
    hasher.update(previous);
    hasher
}

/// True when every byte is zero. The unwritten end of a segment is most of the last one (tens or
/// hundreds of MiB), so it is checked a block at a time, which the compiler vectorizes, rather
/// than a byte at a time.
fn all_zero(bytes: &[u8]) -> bool {
    const BLOCK_BYTES: usize = 4096;
    bytes
        .chunks(BLOCK_BYTES)
        .all(|block| block.iter().fold(0u8, |any, &b| any | b) == 0)
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
fn find_valid_commit(bytes: &[u8], from: usize) -> Option<usize> {
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
fn cut_tail<S: Storage>(
    storage: &mut S,
    end: Position,
    indices: &[u64],
) -> Result<(), JournalError> {
    let mut segment = storage.open(end.index)?;
    let len = segment.bytes().len();
    let dirty = segment.bytes()[end.offset..].iter().rposition(|&b| b != 0);
    if let Some(last) = dirty {
        let zeros = vec![0u8; last + 1];
        segment.write(end.offset, &zeros);
        segment.sync(end.offset, (last + 1).min(len - end.offset))?;
    }
    for &index in indices.iter().filter(|&&i| i > end.index) {
        storage.remove(index)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::journal::storage::MmapStorage;
    use crate::journal::{Durability, JournalWriter};

    const SEGMENT_BYTES: usize = SEGMENT_BYTES_MIN;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("kinko-scan-{name}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The real storage, counting the segments open at once.
    struct Counting {
        inner: MmapStorage,
        open: Arc<AtomicUsize>,
        open_max: Arc<AtomicUsize>,
    }

    struct CountedSegment {
        inner: <MmapStorage as Storage>::Segment,
        open: Arc<AtomicUsize>,
    }

    impl Drop for CountedSegment {
        fn drop(&mut self) {
            self.open.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Segment for CountedSegment {
        fn bytes(&self) -> &[u8] {
            self.inner.bytes()
        }
        fn write(&mut self, offset: usize, data: &[u8]) {
            self.inner.write(offset, data)
        }
        fn sync(&mut self, offset: usize, len: usize) -> std::io::Result<()> {
            self.inner.sync(offset, len)
        }
    }

    impl Storage for Counting {
        type Segment = CountedSegment;
        fn list(&self) -> std::io::Result<Vec<u64>> {
            self.inner.list()
        }
        fn create(&mut self, _index: u64, _bytes: usize) -> std::io::Result<CountedSegment> {
            unreachable!("the tests read")
        }
        fn open(&mut self, index: u64) -> std::io::Result<CountedSegment> {
            let inner = self.inner.open(index)?;
            let now = self.open.fetch_add(1, Ordering::SeqCst) + 1;
            self.open_max.fetch_max(now, Ordering::SeqCst);
            let open = self.open.clone();
            Ok(CountedSegment { inner, open })
        }
        fn remove(&mut self, index: u64) -> std::io::Result<()> {
            self.inner.remove(index)
        }
        fn name(&self, index: u64) -> String {
            self.inner.name(index)
        }
    }

    fn genesis() -> Genesis {
        Genesis {
            config: crate::defaults::config(),
        }
    }

    /// `batches` batches of `pairs` command and events records with filler payloads (the reader
    /// decodes only genesis and commits), in segments of 1 MiB.
    fn write(dir: &Path, batches: u64, pairs: u64) {
        let storage = MmapStorage::open(dir).unwrap();
        let mut writer =
            JournalWriter::create(storage, &genesis(), 1, SEGMENT_BYTES, Durability::Process)
                .unwrap();
        let mut seq = 0;
        for _ in 0..batches {
            for _ in 0..pairs {
                seq += 1;
                let filler = [seq as u8; 300];
                writer.append_encoded(RecordKind::Command, seq, seq, &filler[..40]);
                writer.append_encoded(RecordKind::Events, seq, seq, &filler);
            }
            writer.commit(seq).unwrap();
        }
        writer.sync_all().unwrap();
    }

    fn counting(dir: &Path) -> Counting {
        Counting {
            inner: MmapStorage::open(dir).unwrap(),
            open: Arc::default(),
            open_max: Arc::default(),
        }
    }

    #[test]
    fn the_stream_reads_what_read_journal_reads_one_segment_at_a_time() {
        let dir = TempDir::new("stream");
        write(&dir.0, 800, 10);
        let read = read_journal(&mut MmapStorage::open(&dir.0).unwrap(), Repair::ReadOnly).unwrap();
        assert!(read.segments.len() >= 4, "{} segments", read.segments.len());
        assert!(read.tail_cut.is_none());
        let mut storage = counting(&dir.0);
        let mut scan = JournalScan::open(&mut storage, Repair::ReadOnly).unwrap();
        assert_eq!(scan.genesis(), &read.genesis);
        assert_eq!(scan.config_hash(), read.config_hash);
        let mut batches = 0;
        while let Some(batch) = scan.next_batch().unwrap() {
            assert_eq!(batch.to_read(), read.batches[batches]);
            assert_eq!(batch.len(), 20);
            batches += 1;
        }
        assert_eq!(scan.finish().unwrap(), read.journal_end());
        assert_eq!(batches, 800);
        assert_eq!(read.journal_end().records, 800 * 21 + 2);
        assert_eq!(read.last_seq(), 8_000);
        assert_eq!(storage.open.load(Ordering::SeqCst), 0);
        assert_eq!(
            storage.open_max.load(Ordering::SeqCst),
            1,
            "one mapping at a time"
        );
    }

    /// Segment files made by hand from their bodies (the bytes after the header).
    fn hand_made(dir: &Path, segments: &[Vec<u8>]) {
        let config_hash = {
            let mut payload = Vec::new();
            encode_into(&genesis(), &mut payload);
            *blake3::hash(&payload).as_bytes()
        };
        for (index, body) in segments.iter().enumerate() {
            let mut bytes = segment_header(index as u64, SEGMENT_BYTES, &config_hash).to_vec();
            bytes.extend_from_slice(body);
            bytes.resize(SEGMENT_BYTES, 0);
            std::fs::write(
                super::super::storage::segment_path(dir, index as u64),
                bytes,
            )
            .unwrap();
        }
    }

    /// A command record (56 bytes) and its events record (96 bytes) per seq, with filler
    /// payloads.
    fn records(out: &mut Vec<u8>, seqs: std::ops::RangeInclusive<u64>) {
        for seq in seqs {
            append_record(out, RecordKind::Command, seq, seq, |o| o.extend([1; 20]));
            append_record(out, RecordKind::Events, seq, seq, |o| o.extend([2; 60]));
        }
    }

    fn commit(out: &mut Vec<u8>, chain: &mut [u8; 32], body: &[u8], seqs: (u64, u64), count: u32) {
        *chain = chain_next(chain, body);
        let commit = Commit {
            first_seq: seqs.0,
            last_seq: seqs.1,
            records: count,
            chain: *chain,
        };
        append_record(out, RecordKind::Commit, seqs.1, seqs.1, |o| {
            encode_into(&commit, o);
        });
    }

    /// The chain after the genesis batch, and a segment body holding it.
    fn after_genesis() -> ([u8; 32], Vec<u8>) {
        let (mut chain, mut body, mut out) = (CHAIN_ZERO, Vec::new(), Vec::new());
        append_record(&mut body, RecordKind::Genesis, 0, 1, |o| {
            encode_into(&genesis(), o);
        });
        out.extend_from_slice(&body);
        commit(&mut out, &mut chain, &body, (0, 0), 1);
        (chain, out)
    }

    /// The seq and detail of the corruption the reader must report.
    fn corruption(dir: &Path) -> (Option<u64>, String) {
        match read_journal(&mut counting(dir), Repair::ReadOnly) {
            Err(JournalError::Corrupt { seq, detail, .. }) => (seq, detail),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn a_batch_split_across_segments_reads_as_one() {
        let dir = TempDir::new("split");
        let (mut chain, mut first) = after_genesis();
        let mut second = Vec::new();
        let mut body = Vec::new();
        records(&mut body, 1..=3);
        // After the first command and its events: records are cut whole.
        let split = 56 + 96;
        first.extend_from_slice(&body[..split]);
        second.extend_from_slice(&body[split..]);
        commit(&mut second, &mut chain, &body, (1, 3), 6);
        hand_made(&dir.0, &[first, second]);
        let mut storage = counting(&dir.0);
        let read = read_journal(&mut storage, Repair::ReadOnly).unwrap();
        assert_eq!(read.batches.len(), 1);
        let records = &read.batches[0].records;
        assert_eq!(records.len(), 6);
        assert_eq!((records[0].segment, records[5].segment), (0, 1));
        assert_eq!(read.chain, chain);
        assert_eq!(read.tail_cut, None);
    }

    #[test]
    fn an_unfinished_batch_at_the_end_of_a_segment_is_a_torn_tail_where_it_starts() {
        let dir = TempDir::new("split-torn");
        let (_, mut first) = after_genesis();
        let start = SEGMENT_HEADER_BYTES + first.len();
        records(&mut first, 1..=2);
        // The next segment was made ahead and holds nothing.
        hand_made(&dir.0, &[first, Vec::new()]);
        let read = read_journal(&mut counting(&dir.0), Repair::ReadOnly).unwrap();
        let cut = read.tail_cut.expect("a torn tail");
        assert!(cut.segment.ends_with("segment-000000.kjl"), "{cut}");
        assert_eq!((cut.offset, cut.seq), (start, Some(1)));
        assert_eq!(read.end.offset, start);
    }

    #[test]
    fn a_command_in_the_genesis_batch_is_refused_not_skipped() {
        let dir = TempDir::new("genesis-batch");
        let mut chain = CHAIN_ZERO;
        let mut first = Vec::new();
        let mut body = Vec::new();
        append_record(&mut body, RecordKind::Genesis, 0, 1, |o| {
            encode_into(&genesis(), o);
        });
        records(&mut body, 1..=1);
        first.extend_from_slice(&body);
        commit(&mut first, &mut chain, &body, (0, 1), 3);
        let mut later = Vec::new();
        records(&mut later, 2..=2);
        let later_body = later.clone();
        commit(&mut later, &mut chain, &later_body, (2, 2), 2);
        first.extend_from_slice(&later);
        hand_made(&dir.0, &[first]);
        let (seq, detail) = corruption(&dir.0);
        assert_eq!(seq, Some(1));
        assert!(detail.contains("genesis record alone"), "{detail}");
    }

    #[test]
    fn a_commit_naming_other_seqs_than_its_records_is_refused() {
        let dir = TempDir::new("commit-seqs");
        let (mut chain, mut first) = after_genesis();
        for (seqs, claimed) in [((1, 2), (1, 2)), ((3, 4), (3, 9)), ((5, 5), (5, 5))] {
            let mut body = Vec::new();
            records(&mut body, seqs.0..=seqs.1);
            first.extend_from_slice(&body);
            let count = 2 * (seqs.1 - seqs.0 + 1) as u32;
            commit(&mut first, &mut chain, &body, claimed, count);
        }
        hand_made(&dir.0, &[first]);
        let (seq, detail) = corruption(&dir.0);
        assert_eq!(seq, Some(9));
        assert!(detail.contains("commit of seqs 3..9"), "{detail}");
    }
}
