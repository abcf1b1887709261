//! The journal: sequenced commands and the events they produced, in memory-mapped segment files,
//! checksummed per record and hash-chained per batch. docs/JOURNAL.md documents every byte.
//!
//! A batch is staged in memory (records, then a commit record carrying the hash chain) and copied
//! into the mapping, a large one 16 KiB at a time as it is staged, the commit record last; a batch
//! never straddles two segments. On recovery, a torn or
//! corrupt tail after the last commit of the last segment is cut off with a warning; corruption
//! anywhere else refuses to start, naming the segment, the byte offset and the sequence number.

pub mod crc;
pub mod format;
mod hasher;
mod scan;
pub mod storage;

use std::fmt;
use std::io;

use serde::Serialize;

use crate::exchange::{ExchangeCommand, ExchangeEvent};
use format::*;
use hasher::ChainHasher;
pub use scan::{read_journal, BatchRef, JournalEnd, JournalScan, RecordRef};
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

/// Who computes a batch's hash chain.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ChainHashing {
    #[default]
    /// The writer: each 16 KiB piece of a large batch as soon as it is staged (from its cache),
    /// the rest at commit.
    Inline,
    /// A thread of its own, for a batch of at least 16 KiB: the writer copies the batch into the
    /// mapping a piece at a time as it stages it, the thread hashes each piece there, and at
    /// commit the two share the rest (smaller batches stay inline: handing them over would cost
    /// more than it saves).
    Thread,
}

/// Who faults in the pages of a segment made ahead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SegmentPrefault {
    /// The thread that makes it, all at once: ~15–30 ms of a core per 64 MiB, taken from whatever
    /// else runs on the machine's cores.
    #[default]
    Thread,
    /// The engine thread, [`IDLE_PREFAULT_BYTES`] at a time, from [`JournalWriter::idle_work`]
    /// while it waits for commands: for an engine that never parks, whose client spins on the other
    /// core, so that the segment's making does not take either core from them for milliseconds
    /// at a time (docs/PERFORMANCE.md). Pages not faulted in by the rotation fault on first write.
    Idle,
}

/// The piece of a made-ahead segment the engine thread faults in per idle round with
/// [`SegmentPrefault::Idle`]: two pages, 3.4 µs here (at most 0.13 ms in a run of 8,192), about
/// what a command arriving meanwhile waits.
pub const IDLE_PREFAULT_BYTES: usize = 8 << 10;

/// The piece of a full segment the engine thread releases per idle round with
/// [`SegmentPrefault::Idle`] ([`storage::Segment::release`]).
pub const IDLE_RELEASE_BYTES: usize = 64 << 10;

/// The segment made ahead once its thread has finished, and how far its pages are faulted in.
struct Made<G> {
    segment: G,
    faulted: usize,
}

/// Who is hashing the batch being staged.
enum BatchHash {
    /// The writer: its pieces as they are staged (in `chain_nodes`), the rest at commit.
    Inline,
    /// The chain hasher thread, following the pieces copied into the mapping; the writer hashes
    /// what it has not taken by the commit.
    Thread,
    /// Closed early (the batch will not fit the rest of the segment): the thread's runs are in
    /// `chain_nodes`, the writer hashes the rest at commit.
    Closed,
}

pub struct JournalWriter<S: Storage> {
    /// Declared first so that it is dropped (its thread joined) before `segment`, which it reads.
    chain_hasher: Option<ChainHasher>,
    batch_hash: BatchHash,
    /// Subtrees of the batch's hash with their values: the hasher thread's runs, then the
    /// writer's own (in `own_nodes` while the thread finishes, `ChainHasher::finish`).
    chain_nodes: Vec<hasher::Node>,
    own_nodes: Vec<hasher::Node>,
    /// Bytes of the staged batch already copied into the mapping at `offset` (for the hasher).
    flushed: usize,
    /// Where in the batch's hashed stream (the previous chain, then the batch) the pieces the
    /// writer has hashed as it staged them end (inline hashing; their values in `chain_nodes`).
    hashed: usize,
    storage: S,
    segment: S::Segment,
    index: u64,
    offset: usize,
    /// The size of the segment being written.
    segment_bytes: usize,
    /// The size of the segments made from now on: the configured one (a journal resumed with a
    /// new size keeps its segments as they are and makes the next ones at the new size).
    new_segment_bytes: usize,
    chain: [u8; 32],
    config_hash: [u8; 32],
    durability: Durability,
    staging: Vec<u8>,
    /// Where in `staging` the records not yet checksummed start. They are sealed in one pass once
    /// a piece's worth of them is staged (and at the commit), just before that piece is hashed or
    /// copied: checksumming each record as it was staged cost ~2 µs more per 63 KB batch on Zen 4
    /// than a pass over 16 KiB of them from the cache (docs/PERFORMANCE.md).
    unsealed: Vec<usize>,
    batch_first_seq: Option<u64>,
    batch_last_seq: u64,
    batch_records: u32,
    bytes_written: u64,
    /// The next segment, being created on another thread once this one holds a batch and has
    /// no more than `ahead_lead` bytes of room left.
    ahead: Option<std::thread::JoinHandle<io::Result<S::Segment>>>,
    ahead_lead: usize,
    /// The made-ahead segment taken from its finished thread by [`Self::idle_work`] (or the
    /// error that thread or a prefault met, returned at the rotation that needed the segment).
    made: Option<io::Result<Made<S::Segment>>>,
    prefault: SegmentPrefault,
    /// With [`SegmentPrefault::Idle`], the full segment left at the last rotation, released a
    /// piece at a time by [`Self::idle_work`] (the offset released so far) and then dropped.
    retiring: Option<(S::Segment, usize)>,
}

/// How much room may be left in a segment when its successor is begun. A 64 MiB segment (the
/// default) is always within it, so its successor is begun after its first batch. A larger one
/// waits until it is nearly full: making a segment of 1 GiB fills 1 GiB of page cache and takes a
/// core for ~0.4 s, which a writer that may never reach its end should not pay; 256 MiB is still
/// ~130 ms of lead at the fastest rate the journal benchmark writes (~2 GB/s), against 25–110 ms
/// to make a 64 MiB segment on these machines.
pub const MAKE_AHEAD_LEAD_BYTES: usize = 256 << 20;

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
        let start = Position {
            index: 0,
            offset: SEGMENT_HEADER_BYTES,
        };
        let mut writer =
            JournalWriter::at(storage, segment, start, CHAIN_ZERO, config_hash, durability);
        assert_eq!(
            writer.segment_bytes, segment_bytes,
            "a segment of the size asked for"
        );
        writer.stage(RecordKind::Genesis, 0, ts_ns, |out| {
            out.extend_from_slice(&payload)
        });
        // Segment 1 is begun by the first batch after the genesis, not by it: by then the owner
        // has chosen who faults its pages in (`set_segment_prefault`).
        writer.ahead_lead = 0;
        writer.commit(ts_ns)?;
        writer.ahead_lead = MAKE_AHEAD_LEAD_BYTES;
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
        segment.prepare_appends(read.end.offset)?;
        assert!(
            segment_bytes >= SEGMENT_BYTES_MIN,
            "segment of {segment_bytes} bytes"
        );
        // Segments keep the size they were created with; new ones take the configured size.
        let mut writer = JournalWriter::at(
            storage,
            segment,
            read.end,
            read.chain,
            read.config_hash,
            durability,
        );
        writer.new_segment_bytes = segment_bytes;
        Ok(writer)
    }

    /// A writer appending to `segment` at `end`, after the chain `chain`, nothing staged. New
    /// segments take this one's size unless the caller says otherwise.
    fn at(
        storage: S,
        segment: S::Segment,
        end: Position,
        chain: [u8; 32],
        config_hash: [u8; 32],
        durability: Durability,
    ) -> JournalWriter<S> {
        JournalWriter {
            chain_hasher: None,
            batch_hash: BatchHash::Inline,
            chain_nodes: Vec::new(),
            own_nodes: Vec::new(),
            flushed: 0,
            hashed: 0,
            storage,
            segment_bytes: segment.bytes().len(),
            new_segment_bytes: segment.bytes().len(),
            segment,
            index: end.index,
            offset: end.offset,
            chain,
            config_hash,
            durability,
            staging: Vec::with_capacity(1 << 20),
            unsealed: Vec::with_capacity(1024),
            batch_first_seq: None,
            batch_last_seq: 0,
            batch_records: 0,
            bytes_written: 0,
            ahead: None,
            ahead_lead: MAKE_AHEAD_LEAD_BYTES,
            made: None,
            prefault: SegmentPrefault::Thread,
            retiring: None,
        }
    }

    /// Chooses who hashes the chain from the next batch on (a new writer hashes inline).
    pub fn set_chain_hashing(&mut self, hashing: ChainHashing) -> io::Result<()> {
        assert!(
            self.batch_first_seq.is_none(),
            "chain hashing changed inside a batch"
        );
        self.chain_hasher = match hashing {
            ChainHashing::Inline => None,
            ChainHashing::Thread => Some(ChainHasher::spawn()?),
        };
        Ok(())
    }

    /// Chooses who faults in the segments made from now on (a new writer: their thread).
    pub fn set_segment_prefault(&mut self, prefault: SegmentPrefault) {
        self.prefault = prefault;
    }

    /// What the engine thread does between polls of an empty queue: with
    /// [`SegmentPrefault::Idle`], faults in the next [`IDLE_PREFAULT_BYTES`] of the segment made
    /// ahead, once its thread has finished, or else releases the next [`IDLE_RELEASE_BYTES`] of
    /// the segment left at the last rotation. Returns whether there was anything to do.
    pub fn idle_work(&mut self) -> bool {
        if self.prefault != SegmentPrefault::Idle {
            return false;
        }
        self.prefault_step() || self.release_step()
    }

    fn release_step(&mut self) -> bool {
        let Some((segment, released)) = &mut self.retiring else {
            return false;
        };
        let bytes = segment.bytes().len();
        if *released >= bytes {
            self.retiring = None;
        } else {
            let len = IDLE_RELEASE_BYTES.min(bytes - *released);
            segment.release(*released, len);
            *released += len;
        }
        true
    }

    fn prefault_step(&mut self) -> bool {
        if self.made.is_none() {
            match &self.ahead {
                Some(handle) if handle.is_finished() => {}
                _ => return false,
            }
            let handle = self.ahead.take().expect("checked above");
            let made = handle.join().expect("segment thread");
            self.made = Some(made.map(|segment| Made {
                segment,
                // The header's page was written when the segment was made; the fallback for a
                // kernel without MADV_POPULATE_WRITE stores zeros, which must not touch it.
                faulted: SEGMENT_HEADER_BYTES.next_multiple_of(4096),
            }));
        }
        let Some(Ok(made)) = &mut self.made else {
            return false;
        };
        let bytes = made.segment.bytes().len();
        if made.faulted >= bytes {
            return false;
        }
        let len = IDLE_PREFAULT_BYTES.min(bytes - made.faulted);
        match made.segment.prefault(made.faulted, len) {
            Ok(()) => made.faulted += len,
            Err(e) => self.made = Some(Err(e)),
        }
        true
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
        self.unsealed.push(self.staging.len());
        append_record_unsealed(&mut self.staging, kind, seq, ts_ns, payload);
        if self.staging.len() - self.unsealed[0] >= hasher::PIECE_BYTES {
            self.seal_staged();
            self.sealed_to(self.staging.len());
        }
    }

    /// Every record below `len` is sealed: once there is a piece of it, copy it into the mapping
    /// and hash it here while it is in this core's cache, or hand it to the hasher thread
    /// (handing the batch over with its first piece).
    fn sealed_to(&mut self, len: usize) {
        let fits = self.offset + len + COMMIT_RECORD_BYTES <= self.segment_bytes;
        let Some(hasher) = self.chain_hasher.as_mut() else {
            // Hashed from the staging buffer right after staging, 16 KiB at a time, BLAKE3 runs
            // at 7 GB/s; over the whole batch at commit, from the L2 cache, at 4.7.
            let staged = &self.staging[..len];
            hasher::hash_staged_pieces(
                &self.chain,
                staged,
                &mut self.hashed,
                &mut self.chain_nodes,
            );
            if fits && len >= self.flushed + hasher::PIECE_BYTES {
                let from = self.flushed;
                self.segment
                    .write_streaming(self.offset + from, &self.staging[from..len]);
                self.flushed = len;
            }
            return;
        };
        if len < self.flushed + hasher::PIECE_BYTES {
            return;
        }
        match self.batch_hash {
            BatchHash::Inline if fits => {
                let Some(base) = self.segment.stable_base() else {
                    return;
                };
                self.segment
                    .write_streaming(self.offset, &self.staging[..len]);
                // SAFETY: the hasher reads the mapping from `offset` up to each published
                // length; the writer writes there only past it until the batch's runs are taken
                // back (`commit` and `unflush` close it and take them before they rotate, zero or
                // write the commit record), and the hasher is dropped before the segment (field
                // order).
                unsafe { hasher.start(base.add(self.offset), self.chain) };
                hasher.publish(len);
                self.batch_hash = BatchHash::Thread;
            }
            BatchHash::Thread if fits => {
                let from = self.flushed;
                self.segment
                    .write_streaming(self.offset + from, &self.staging[from..len]);
                hasher.publish(len);
            }
            BatchHash::Thread => {
                // The batch goes to the next segment whole: the writer hashes the rest.
                hasher.close_and_take(&mut self.chain_nodes);
                self.batch_hash = BatchHash::Closed;
                return;
            }
            BatchHash::Inline | BatchHash::Closed => return,
        }
        self.flushed = len;
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

    /// Checksums the staged records not yet sealed, three at a time (where the CPU has no
    /// AVX-512 fold, three `crc32` chains interleaved keep the unit busy).
    fn seal_staged(&mut self) {
        let staged = self.staging.len();
        let starts = &self.unsealed;
        let end = |i: usize| starts.get(i).copied().unwrap_or(staged);
        let whole = starts.len() / 3 * 3;
        for i in (0..whole).step_by(3) {
            let [first, second, third] = [starts[i], starts[i + 1], starts[i + 2]];
            let (head, tail) = self.staging[first..end(i + 3)].split_at_mut(second - first);
            let (middle, last) = tail.split_at_mut(third - second);
            seal_records([head, middle, last]);
        }
        for (i, &start) in starts.iter().enumerate().skip(whole) {
            seal_record(&mut self.staging[start..end(i + 1)]);
        }
        self.unsealed.clear();
    }

    /// Closes the staged batch with its commit record and writes it into the mapping; with
    /// `Durability::Fsync` also msyncs it. Only after this returns may its acknowledgements go out.
    pub fn commit(&mut self, ts_ns: u64) -> io::Result<()> {
        let Some(first_seq) = self.batch_first_seq.take() else {
            return Ok(());
        };
        self.seal_staged();
        let body_len = self.staging.len();
        let len = body_len + COMMIT_RECORD_BYTES;
        if self.offset + len > self.segment_bytes {
            assert!(
                SEGMENT_HEADER_BYTES + len <= self.new_segment_bytes,
                "batch of {len} bytes does not fit a segment of {}",
                self.new_segment_bytes
            );
            self.unflush();
            self.rotate()?;
        }
        // The body first, the commit record after it: a memcpy may store its bytes in any order,
        // so a process killed inside one copy could otherwise leave a commit record without all of
        // its batch. x86 retires stores in program order; the fence keeps the compiler from
        // merging or reordering the two copies. Pieces of a large batch may be in already.
        let flushed = std::mem::take(&mut self.flushed);
        self.hashed = 0;
        let tail = &self.staging[flushed..body_len];
        match self.batch_hash {
            // The hasher thread may read the tail too: its share goes in with fenced stores.
            BatchHash::Thread => self.segment.write_streaming(self.offset + flushed, tail),
            _ => self.segment.write(self.offset + flushed, tail),
        }
        let chain = self.batch_chain(body_len);
        let commit = Commit {
            first_seq,
            last_seq: self.batch_last_seq,
            records: self.batch_records,
            chain,
        };
        let last_seq = self.batch_last_seq;
        append_record(
            &mut self.staging,
            RecordKind::Commit,
            last_seq,
            ts_ns,
            |out| {
                encode_into(&commit, out);
            },
        );
        assert_eq!(self.staging.len(), len, "commit record of a fixed size");
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

    /// Takes back the pieces of the staged batch copied into the mapping (it does not fit the rest
    /// of the segment): the writer hashes the rest, and the copies become zero again, as the end of
    /// a segment must be. A crash before that leaves a batch without its commit at the end of the
    /// segment, which recovery cuts off like any torn tail.
    fn unflush(&mut self) {
        if let BatchHash::Thread = self.batch_hash {
            let hasher = self.chain_hasher.as_mut().expect("a batch on the hasher");
            hasher.close_and_take(&mut self.chain_nodes);
            self.batch_hash = BatchHash::Closed;
        }
        let zeros = [0u8; 4096];
        let mut at = 0;
        while at < self.flushed {
            let n = zeros.len().min(self.flushed - at);
            self.segment.write(self.offset + at, &zeros[..n]);
            at += n;
        }
        self.flushed = 0;
    }

    /// The chain over the staged batch's first `body_len` bytes: hashed here, or put together
    /// from the pieces the hasher thread took and the rest, hashed here while the thread finishes
    /// its last piece.
    fn batch_chain(&mut self, body_len: usize) -> [u8; 32] {
        let batch = &self.staging[..body_len];
        match std::mem::replace(&mut self.batch_hash, BatchHash::Inline) {
            // The pieces hashed as they were staged are in `chain_nodes`; the join hashes the rest.
            BatchHash::Inline => {}
            BatchHash::Thread => {
                let hasher = self.chain_hasher.as_mut().expect("a batch on the hasher");
                hasher.finish(
                    &self.chain,
                    batch,
                    &mut self.chain_nodes,
                    &mut self.own_nodes,
                );
            }
            BatchHash::Closed => {}
        }
        let chain = hasher::chain_from_nodes(&self.chain, batch, &self.chain_nodes);
        self.chain_nodes.clear();
        chain
    }

    /// After the first batch into a segment within `ahead_lead` of its end, its successor is
    /// made on another thread: creating, syncing and pre-faulting 64 MiB takes 25–110 ms here
    /// (the fsyncs wait for the disk, and the thread shares two busy cores), which the engine
    /// thread must not wait for. Begun when the segment was half full, it was still running at
    /// one rotation in three under the journal benchmark's rate (a segment filled in ~160 ms),
    /// and the writer waited 20–50 ms.
    fn prepare_next(&mut self) {
        let pending = self.ahead.is_some() || self.made.is_some();
        if !pending && self.segment_bytes - self.offset <= self.ahead_lead {
            let index = self.index + 1;
            let header = segment_header(index, self.new_segment_bytes, &self.config_hash);
            let prefault = self.prefault == SegmentPrefault::Thread;
            self.ahead = self
                .storage
                .create_ahead(index, self.new_segment_bytes, header, prefault);
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        // The end of the old segment stays zero: readers take a zero length as its end. Under
        // `Process` durability nothing is flushed here: the page cache survives a crash of the
        // process, and flushing 64 MiB stalled the engine thread for ~100 ms per segment.
        if self.durability == Durability::Fsync {
            self.segment.sync(0, self.segment_bytes)?;
        }
        let index = self.index + 1;
        let made_ahead = match self.made.take() {
            Some(made) => Some(made.map(|made| made.segment)),
            None => self
                .ahead
                .take()
                .map(|handle| handle.join().expect("segment thread")),
        };
        let segment = match made_ahead {
            Some(segment) => segment?,
            None => {
                let mut segment = self.storage.create(index, self.new_segment_bytes)?;
                segment.write(
                    0,
                    &segment_header(index, self.new_segment_bytes, &self.config_hash),
                );
                segment.sync(0, SEGMENT_HEADER_BYTES)?;
                segment
            }
        };
        let full = std::mem::replace(&mut self.segment, segment);
        match self.prefault {
            SegmentPrefault::Thread => self.storage.retire(full),
            SegmentPrefault::Idle => {
                // One left unreleased since the last rotation (an engine never idle) goes the
                // usual way.
                if let Some((earlier, _)) = self.retiring.replace((full, 0)) {
                    self.storage.retire(earlier);
                }
            }
        }
        self.index = index;
        self.offset = SEGMENT_HEADER_BYTES;
        self.segment_bytes = self.segment.bytes().len();
        Ok(())
    }

    /// msync everything written so far (before a snapshot, and at shutdown).
    pub fn sync_all(&mut self) -> io::Result<()> {
        self.segment.sync(0, self.offset)
    }
}

impl<S: Storage> Drop for JournalWriter<S> {
    /// Waits for a segment being made ahead, so that no file of this journal appears after its
    /// writer is gone (a restart in the same process would otherwise list the folder while one
    /// did). The segment holds only its header: a reader finds it empty.
    fn drop(&mut self) {
        if let Some(handle) = self.ahead.take() {
            let _ = handle.join();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use format::{parse_segment_header, SEGMENT_BYTES_MIN};
    use storage::MmapStorage;

    /// Waits for the segment being made ahead and returns its index, read from its header; the
    /// writer gets it back as if just made.
    fn ahead_index(writer: &mut JournalWriter<MmapStorage>) -> Option<u64> {
        let segment = writer
            .ahead
            .take()?
            .join()
            .expect("segment thread")
            .unwrap();
        let index = parse_segment_header(segment.bytes()).unwrap().index;
        writer.ahead = Some(std::thread::spawn(move || Ok(segment)));
        Some(index)
    }

    #[test]
    fn the_next_segment_is_begun_as_soon_as_a_segment_holds_a_batch() {
        let (dir, mut writer) =
            hasher::tests::scratch_writer("ahead", ChainHashing::Inline, SEGMENT_BYTES_MIN);
        // The genesis batch is a few KiB of a 1 MiB segment, and begins nothing.
        assert!(writer.offset < SEGMENT_BYTES_MIN / 8, "{}", writer.offset);
        assert_eq!(ahead_index(&mut writer), None, "made by the genesis");
        let filler = [7u8; 4000];
        writer.append_encoded(RecordKind::Command, 1, 1, &filler);
        writer.commit(1).unwrap();
        assert_eq!(
            ahead_index(&mut writer),
            Some(1),
            "made after the first batch"
        );
        // Filled to its end, the writer moves into segment 1; its first batch begins segment 2.
        let mut seq = 1;
        while writer.index == 0 {
            seq += 1;
            writer.append_encoded(RecordKind::Command, seq, seq, &filler);
            writer.commit(seq).unwrap();
        }
        assert!(writer.offset < SEGMENT_BYTES_MIN / 8, "{}", writer.offset);
        assert_eq!(ahead_index(&mut writer), Some(2));
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_segment_larger_than_the_lead_begins_its_successor_only_within_the_lead() {
        let (dir, mut writer) =
            hasher::tests::scratch_writer("lead", ChainHashing::Inline, SEGMENT_BYTES_MIN);
        let lead = SEGMENT_BYTES_MIN / 4;
        writer.ahead_lead = lead;
        let filler = [7u8; 4000];
        let mut seq = 0;
        while writer.index == 0 {
            seq += 1;
            writer.append_encoded(RecordKind::Command, seq, seq, &filler);
            writer.commit(seq).unwrap();
        }
        // In segment 1, batch after batch: nothing is begun until the room left is within the lead.
        while SEGMENT_BYTES_MIN - writer.offset > lead {
            assert!(writer.ahead.is_none(), "begun at offset {}", writer.offset);
            seq += 1;
            writer.append_encoded(RecordKind::Command, seq, seq, &filler);
            writer.commit(seq).unwrap();
        }
        assert_eq!(ahead_index(&mut writer), Some(2), "begun within the lead");
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Fills `writer` with `batches` batches of one 4000-byte record, calling `idle_work` up to
    /// `idle_rounds` times after each (stopping when it has nothing to do).
    fn fill_idling(writer: &mut JournalWriter<MmapStorage>, batches: u64, idle_rounds: usize) {
        let filler = [7u8; 4000];
        for seq in 1..=batches {
            writer.append_encoded(RecordKind::Command, seq, seq, &filler);
            writer.commit(seq).unwrap();
            for _ in 0..idle_rounds {
                if !writer.idle_work() {
                    break;
                }
            }
        }
    }

    /// A writer of 1 MiB segments in `SegmentPrefault::Idle` after `batches` batches of ~4 KB
    /// (~256 to a segment), idling up to `idle_rounds` rounds after each.
    fn idle_writer_filled(
        name: &str,
        batches: u64,
        idle_rounds: usize,
    ) -> (std::path::PathBuf, JournalWriter<MmapStorage>) {
        let (dir, mut writer) =
            hasher::tests::scratch_writer(name, ChainHashing::Inline, SEGMENT_BYTES_MIN);
        assert!(
            !writer.idle_work(),
            "nothing to do with the thread faulting"
        );
        writer.set_segment_prefault(SegmentPrefault::Idle);
        fill_idling(&mut writer, batches, idle_rounds);
        assert!(writer.index >= 3, "rotated into segment {}", writer.index);
        (dir, writer)
    }

    #[test]
    fn an_idle_engine_faults_in_the_next_segment_and_releases_the_last_and_loses_nothing() {
        let (dir, mut writer) = idle_writer_filled("idle", 1000, 1000);
        // The last segment begun may still be in its thread's hands: idle until there is nothing
        // left to do.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while writer.idle_work() || writer.ahead.is_some() {
            assert!(std::time::Instant::now() < deadline, "idle work never ends");
            std::thread::yield_now();
        }
        match &writer.made {
            Some(Ok(made)) => assert_eq!(made.faulted, SEGMENT_BYTES_MIN, "faulted in"),
            other => panic!("the next segment made and taken: {}", other.is_some()),
        }
        assert!(
            writer.retiring.is_none(),
            "the last segment released and dropped"
        );
        drop(writer);
        let read = read_journal(&mut MmapStorage::open(&dir).unwrap(), Repair::ReadOnly).unwrap();
        assert_eq!(read.last_seq(), 1000);
        assert_eq!(read.batches.len(), 1000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_journal_resumed_with_another_segment_size_makes_its_new_segments_at_that_size() {
        let (dir, mut writer) =
            hasher::tests::scratch_writer("resize", ChainHashing::Inline, SEGMENT_BYTES_MIN);
        fill_idling(&mut writer, 300, 0);
        drop(writer);
        let sizes = |dir: &std::path::Path| -> Vec<(u64, u64)> {
            storage::segment_indices(dir)
                .unwrap()
                .into_iter()
                .map(|index| {
                    let path = storage::segment_path(dir, index);
                    let bytes = std::fs::read(&path).unwrap();
                    let header = parse_segment_header(&bytes).unwrap();
                    assert_eq!(header.segment_bytes, bytes.len() as u64, "{path:?}");
                    (index, header.segment_bytes)
                })
                .collect()
        };
        let before = sizes(&dir);
        assert!(before.len() >= 2, "the first writer rotated: {before:?}");
        assert!(before
            .iter()
            .all(|&(_, bytes)| bytes == SEGMENT_BYTES_MIN as u64));
        let mut storage = MmapStorage::open(&dir).unwrap();
        let read = read_journal(&mut storage, Repair::CutTail).unwrap();
        let bigger = 2 * SEGMENT_BYTES_MIN;
        let mut writer =
            JournalWriter::resume(storage, &read, bigger, Durability::Process).unwrap();
        let filler = [9u8; 4000];
        for seq in 301..=900 {
            writer.append_encoded(RecordKind::Command, seq, seq, &filler);
            writer.commit(seq).unwrap();
        }
        drop(writer);
        // Segments that hold records keep their size; one made ahead and still empty (the first
        // writer's next) is made again at the new size.
        let after = sizes(&dir);
        let kept = read.end.index as usize + 1;
        assert_eq!(
            &after[..kept],
            &before[..kept],
            "old segments keep their size"
        );
        let made = &after[kept..];
        assert!(made.len() >= 2, "the resumed writer rotated: {after:?}");
        assert!(
            made.iter().all(|&(_, bytes)| bytes == bigger as u64),
            "new segments take the new size: {after:?}"
        );
        let read = read_journal(&mut MmapStorage::open(&dir).unwrap(), Repair::ReadOnly).unwrap();
        assert_eq!(read.last_seq(), 900);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// What the test's disk refuses: nothing, making a segment (ahead, its thread failing as
    /// `fallocate` would, or in line), or faulting a segment's pages in.
    type Full = std::sync::Arc<std::sync::atomic::AtomicU8>;
    const REFUSES_NOTHING: u8 = 0;
    const REFUSES_MAKING: u8 = 1;
    const REFUSES_FAULTING: u8 = 2;

    /// The real disk, until it is full.
    struct FillingDisk {
        inner: MmapStorage,
        full: Full,
    }

    struct FillingSegment {
        inner: storage::MmapSegment,
        full: Full,
    }

    fn disk_full(doing: &str) -> io::Error {
        let message = format!("No space left on device (the test's, {doing})");
        io::Error::new(io::ErrorKind::StorageFull, message)
    }

    fn refuses(full: &Full, what: u8) -> bool {
        full.load(std::sync::atomic::Ordering::SeqCst) == what
    }

    impl Segment for FillingSegment {
        fn bytes(&self) -> &[u8] {
            self.inner.bytes()
        }
        fn write(&mut self, offset: usize, data: &[u8]) {
            self.inner.write(offset, data)
        }
        fn write_streaming(&mut self, offset: usize, data: &[u8]) {
            self.inner.write_streaming(offset, data)
        }
        fn stable_base(&self) -> Option<*const u8> {
            self.inner.stable_base()
        }
        fn sync(&mut self, offset: usize, len: usize) -> io::Result<()> {
            self.inner.sync(offset, len)
        }
        fn prepare_appends(&mut self, offset: usize) -> io::Result<()> {
            self.inner.prepare_appends(offset)
        }
        fn prefault(&mut self, offset: usize, len: usize) -> io::Result<()> {
            if refuses(&self.full, REFUSES_FAULTING) {
                return Err(disk_full("faulting a segment in"));
            }
            self.inner.prefault(offset, len)
        }
        fn release(&mut self, offset: usize, len: usize) {
            self.inner.release(offset, len)
        }
    }

    impl FillingDisk {
        fn wrap(&self, inner: storage::MmapSegment) -> FillingSegment {
            let full = self.full.clone();
            FillingSegment { inner, full }
        }
    }

    impl Storage for FillingDisk {
        type Segment = FillingSegment;
        fn list(&self) -> io::Result<Vec<u64>> {
            self.inner.list()
        }
        fn create(&mut self, index: u64, bytes: usize) -> io::Result<Self::Segment> {
            if refuses(&self.full, REFUSES_MAKING) {
                return Err(disk_full("making a segment in line"));
            }
            let inner = self.inner.create(index, bytes)?;
            Ok(self.wrap(inner))
        }
        fn create_ahead(
            &self,
            index: u64,
            bytes: usize,
            header: [u8; 64],
            prefault: bool,
        ) -> Option<std::thread::JoinHandle<io::Result<Self::Segment>>> {
            if refuses(&self.full, REFUSES_MAKING) {
                return Some(std::thread::spawn(|| {
                    Err(disk_full("making a segment ahead"))
                }));
            }
            let making = self.inner.create_ahead(index, bytes, header, prefault)?;
            let full = self.full.clone();
            Some(std::thread::spawn(move || {
                let inner = making.join().expect("segment thread")?;
                Ok(FillingSegment { inner, full })
            }))
        }
        fn open(&mut self, index: u64) -> io::Result<Self::Segment> {
            let inner = self.inner.open(index)?;
            Ok(self.wrap(inner))
        }
        fn remove(&mut self, index: u64) -> io::Result<()> {
            self.inner.remove(index)
        }
        fn name(&self, index: u64) -> String {
            self.inner.name(index)
        }
    }

    /// Fills 1 MiB segments with batches of one ~4 KB record until the disk refuses what
    /// `refusal` says (making: from before segment 3 is begun; faulting: once it is begun and
    /// made) and a rotation needs a segment: the commit that needed it fails with the disk's error
    /// (the one that says `expected`), and every batch committed before it reads back.
    fn fill_until_the_disk_is_full(
        name: &str,
        prefault: SegmentPrefault,
        refusal: u8,
        expected: &str,
    ) {
        let dir = std::env::temp_dir().join(format!("kinko-full-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let full = Full::new(std::sync::atomic::AtomicU8::new(REFUSES_NOTHING));
        let storage = FillingDisk {
            inner: MmapStorage::open(&dir).unwrap(),
            full: full.clone(),
        };
        let genesis = Genesis {
            config: crate::defaults::config(),
        };
        let mut writer =
            JournalWriter::create(storage, &genesis, 1, SEGMENT_BYTES_MIN, Durability::Process)
                .unwrap();
        writer.set_segment_prefault(prefault);
        let filler = [5u8; 4000];
        let mut committed = 0;
        let error = loop {
            let seq = committed + 1;
            if refusal == REFUSES_MAKING && writer.index == 1 {
                // In segment 1, whose successor the batch that rotated into it has begun: the disk
                // fills now, and segment 3 cannot be made.
                full.store(REFUSES_MAKING, std::sync::atomic::Ordering::SeqCst);
            }
            writer.append_encoded(RecordKind::Command, seq, seq, &filler);
            match writer.commit(seq) {
                Ok(()) => committed = seq,
                Err(e) => break e,
            }
            if refusal == REFUSES_FAULTING && writer.index == 2 {
                // The batch that rotated into segment 2 has begun segment 3 on a thread, before
                // the engine idles: its pages cannot be faulted in now.
                full.store(REFUSES_FAULTING, std::sync::atomic::Ordering::SeqCst);
            }
            if prefault == SegmentPrefault::Idle {
                // Idle as an engine between batches would, until the segment made ahead is taken
                // from its thread and faulted in (or its error kept).
                while writer.idle_work() || writer.ahead.is_some() {
                    std::thread::yield_now();
                }
            }
            assert!(seq < 10_000, "the disk never filled");
        };
        assert_eq!(error.kind(), io::ErrorKind::StorageFull, "{error}");
        assert!(
            error.to_string().contains(expected),
            "the error of {expected}, not a second try's: {error}"
        );
        assert_eq!(
            writer.index, 2,
            "the failed rotation left the writer in segment 2"
        );
        drop(writer);
        let read = read_journal(&mut MmapStorage::open(&dir).unwrap(), Repair::ReadOnly).unwrap();
        assert_eq!(read.last_seq(), committed, "every committed batch is there");
        assert!(read.tail_cut.is_none());
        // About 254 batches fill a segment.
        assert!(
            committed > 3 * 250,
            "three segments filled first ({committed} batches)"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_segment_that_cannot_be_made_fails_the_commit_that_needs_it_and_loses_nothing_before() {
        let ahead = "making a segment ahead";
        fill_until_the_disk_is_full("thread", SegmentPrefault::Thread, REFUSES_MAKING, ahead);
    }

    #[test]
    fn an_idle_engine_keeps_the_made_ahead_threads_error_for_the_rotation_that_needs_it() {
        let ahead = "making a segment ahead";
        fill_until_the_disk_is_full("idle", SegmentPrefault::Idle, REFUSES_MAKING, ahead);
    }

    #[test]
    fn an_idle_engine_keeps_a_failed_prefault_for_the_rotation_that_needs_the_segment() {
        let faulting = "faulting a segment in";
        fill_until_the_disk_is_full("fault", SegmentPrefault::Idle, REFUSES_FAULTING, faulting);
    }

    #[test]
    fn an_engine_never_idle_still_rotates_through_segments_left_to_fault() {
        let (dir, writer) = idle_writer_filled("busy", 1000, 0);
        assert!(
            writer.retiring.is_some(),
            "the last full segment waits for idle time"
        );
        drop(writer);
        let read = read_journal(&mut MmapStorage::open(&dir).unwrap(), Repair::ReadOnly).unwrap();
        assert_eq!(read.last_seq(), 1000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
