//! The chain hasher: a thread that hashes a large batch's records in the segment's mapping while
//! the journal writer is still staging the rest, so that BLAKE3 — 40% of the writer's work on a
//! batch of 256 commands (docs/PERFORMANCE.md) — runs on another core. The chain it computes is
//! the same value as [`super::format::chain_next`]: the on-disk format does not know who hashed it.
//!
//! One batch at a time, driven by the writer through `phase`:
//!
//! ```text
//!   writer: IDLE --start--> OPEN --publish(len)*--> CLOSED --(hasher: DONE)--> take → IDLE
//!                             \--recall--> RECALL --(hasher: RECALLED)--> take → IDLE
//! ```
//!
//! The writer copies the batch's bytes below `published` into the mapping before it releases
//! `published` and never writes them again until the batch is taken back; the hasher reads only
//! up to the `published` it acquired. It reads the mapping, not the writer's staging buffer: the
//! staging buffer is reused by every batch, and its cache lines held by this thread's core made
//! each of the writer's stores into it a cross-core miss (staging took 40% longer).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes the hasher waits for before it hashes: BLAKE3's widest SIMD path takes 16 chunks of
/// 1 KiB at once; smaller pieces hash at a fraction of the speed.
pub const PIECE_BYTES: usize = 16 << 10;
/// How long an idle hasher spins for the next batch before it parks: batches under load follow
/// each other within microseconds, and waking a parked thread costs tens of them.
const SPIN_IDLE: Duration = Duration::from_micros(200);

const IDLE: u8 = 0;
const OPEN: u8 = 1;
const CLOSED: u8 = 2;
const DONE: u8 = 3;
const RECALL: u8 = 4;
const RECALLED: u8 = 5;
const STOP: u8 = 6;

/// What the hasher hands back at the end of a batch.
pub enum Handback {
    /// The batch's chain: BLAKE3(previous chain ‖ every byte of the batch).
    Chain([u8; 32]),
    /// Recalled: the hash state over the previous chain and the first `usize` bytes.
    Partial(Box<blake3::Hasher>, usize),
}

struct Job {
    base: *const u8,
    previous: [u8; 32],
}

/// Aligned to its own cache lines: the hasher polls `phase` and `published`, and a neighbour the
/// writer stores to would make every one of those stores a miss.
#[repr(align(128))]
struct Shared {
    phase: AtomicU8,
    published: AtomicUsize,
    closed_len: AtomicUsize,
    sleeping: AtomicBool,
    /// Written by the writer while `phase` is IDLE, read by the hasher after it acquired OPEN.
    job: UnsafeCell<Job>,
    /// Written by the hasher before it releases DONE or RECALLED, taken by the writer after.
    handback: UnsafeCell<Option<Handback>>,
}

// SAFETY: `job` and `handback` are each accessed by one thread at a time, handed over by the
// release and acquire of `phase` (the protocol in the module comment); `job.base` points into the
// writer's segment mapping, which outlives every batch (the writer recalls or takes each batch
// before it rotates the segment, and `ChainHasher`'s drop joins the thread).
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

pub struct ChainHasher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ChainHasher {
    pub fn spawn() -> std::io::Result<ChainHasher> {
        let shared = Arc::new(Shared {
            phase: AtomicU8::new(IDLE),
            published: AtomicUsize::new(0),
            closed_len: AtomicUsize::new(0),
            sleeping: AtomicBool::new(false),
            job: UnsafeCell::new(Job {
                base: std::ptr::null(),
                previous: [0; 32],
            }),
            handback: UnsafeCell::new(None),
        });
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("kinko-chain".into())
            .spawn(move || run(&theirs))?;
        Ok(ChainHasher {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands the hasher a batch that starts at `base` and extends the chain `previous`.
    ///
    /// # Safety
    /// Until this batch is taken back ([`Self::finish`] or [`Self::recall`]) the bytes from `base`
    /// up to each published length must stay where they are, unchanged and alive.
    pub unsafe fn start(&mut self, base: *const u8, previous: [u8; 32]) {
        assert_eq!(self.shared.phase.load(Ordering::Acquire), IDLE);
        // SAFETY: phase is IDLE: the hasher does not touch the job.
        unsafe { *self.shared.job.get() = Job { base, previous } };
        self.shared.published.store(0, Ordering::Relaxed);
        self.shared.phase.store(OPEN, Ordering::SeqCst);
        if self.shared.sleeping.swap(false, Ordering::SeqCst) {
            self.thread
                .as_ref()
                .expect("hasher thread")
                .thread()
                .unpark();
        }
    }

    /// The first `len` bytes of the batch are written and final.
    pub fn publish(&mut self, len: usize) {
        self.shared.published.store(len, Ordering::Release);
    }

    /// The batch is `len` bytes long: waits for its chain.
    pub fn finish(&mut self, len: usize) -> [u8; 32] {
        self.shared.closed_len.store(len, Ordering::Relaxed);
        self.shared.phase.store(CLOSED, Ordering::Release);
        match self.take(DONE) {
            Handback::Chain(chain) => chain,
            Handback::Partial(..) => unreachable!("a closed batch is hashed to its end"),
        }
    }

    /// Takes the batch back before its end: the hash state so far and how many bytes it covers.
    pub fn recall(&mut self) -> (Box<blake3::Hasher>, usize) {
        self.shared.phase.store(RECALL, Ordering::Release);
        match self.take(RECALLED) {
            Handback::Partial(state, hashed) => (state, hashed),
            Handback::Chain(_) => unreachable!("a recalled batch is handed back unfinished"),
        }
    }

    fn take(&mut self, phase: u8) -> Handback {
        let mut spins = 0u32;
        while self.shared.phase.load(Ordering::Acquire) != phase {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096) {
                let thread = self.thread.as_ref().expect("hasher thread");
                assert!(
                    !thread.is_finished(),
                    "the journal's chain hasher thread died"
                );
            }
        }
        // SAFETY: the hasher released `phase` after writing the handback and touches it no more.
        let handback = unsafe { (*self.shared.handback.get()).take() };
        self.shared.phase.store(IDLE, Ordering::Release);
        handback.expect("the hasher hands back every batch")
    }
}

impl Drop for ChainHasher {
    fn drop(&mut self) {
        self.shared.phase.store(STOP, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared) {
    loop {
        if !wait_for_batch(shared) {
            return;
        }
        // SAFETY: acquired OPEN: the writer wrote the job before releasing it.
        let (base, previous) = unsafe {
            let job = &*shared.job.get();
            (job.base, job.previous)
        };
        let mut state = Box::new(blake3::Hasher::new());
        state.update(&previous);
        let mut hashed = 0;
        let hash_to = |state: &mut blake3::Hasher, from: usize, to: usize| {
            // SAFETY: bytes below a published (or closed) length are final and stay put until
            // the batch is handed back (`ChainHasher::start`'s contract).
            let bytes = unsafe { std::slice::from_raw_parts(base.add(from), to - from) };
            state.update(bytes);
        };
        let handback = loop {
            match shared.phase.load(Ordering::Acquire) {
                OPEN => {
                    // Whole pieces of the hashed stream (the previous chain, then the batch):
                    // BLAKE3 hashes 16 chunks at once only where they start at a multiple of 16
                    // chunks, and an update ending elsewhere leaves the next one misaligned
                    // (unaligned pieces hashed at half the speed).
                    let published = shared.published.load(Ordering::Acquire);
                    let stream = (previous.len() + published) / PIECE_BYTES * PIECE_BYTES;
                    let upto = stream.saturating_sub(previous.len());
                    if upto > hashed {
                        hash_to(&mut state, hashed, upto);
                        hashed = upto;
                    } else {
                        std::hint::spin_loop();
                    }
                }
                CLOSED => {
                    let len = shared.closed_len.load(Ordering::Relaxed);
                    hash_to(&mut state, hashed, len);
                    break (Handback::Chain(*state.finalize().as_bytes()), DONE);
                }
                RECALL => break (Handback::Partial(state, hashed), RECALLED),
                STOP => return,
                phase => unreachable!("hasher in phase {phase} with a batch open"),
            }
        };
        // SAFETY: the writer reads the handback only after it acquires the phase released below.
        unsafe { *shared.handback.get() = Some(handback.0) };
        shared.phase.store(handback.1, Ordering::Release);
    }
}

/// Spins, then parks, until the writer has handed over a batch (true; by the time the hasher
/// looks, the writer may already have closed or recalled it) or stops the hasher (false).
fn wait_for_batch(shared: &Shared) -> bool {
    let idle_since = Instant::now();
    loop {
        match shared.phase.load(Ordering::Acquire) {
            OPEN | CLOSED | RECALL => return true,
            STOP => return false,
            _ if idle_since.elapsed() < SPIN_IDLE => std::hint::spin_loop(),
            _ => {
                shared.sleeping.store(true, Ordering::SeqCst);
                if matches!(
                    shared.phase.load(Ordering::SeqCst),
                    OPEN | CLOSED | RECALL | STOP
                ) {
                    shared.sleeping.store(false, Ordering::SeqCst);
                    continue;
                }
                std::thread::park();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::format::chain_next;

    fn bytes(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
            .collect()
    }

    #[test]
    fn the_thread_computes_the_same_chain_as_the_writer_would() {
        let mut hasher = ChainHasher::spawn().unwrap();
        let mut previous = [7u8; 32];
        // Below one piece, exactly one, many and not a multiple; published in uneven steps.
        for (round, len) in [0, 100, PIECE_BYTES, 5 * PIECE_BYTES + 123, 300_001]
            .into_iter()
            .enumerate()
        {
            let batch = bytes(len, round as u32);
            unsafe { hasher.start(batch.as_ptr(), previous) };
            for published in (0..len).step_by(7_001) {
                hasher.publish(published);
            }
            let chain = hasher.finish(len);
            assert_eq!(chain, chain_next(&previous, &batch), "batch of {len} bytes");
            previous = chain;
        }
    }

    /// Writes the same batches with the chain hashed inline and on the thread; returns each
    /// journal's segment files.
    fn journal_files(hashing: crate::journal::ChainHashing) -> Vec<Vec<u8>> {
        use crate::journal::format::{Genesis, RecordKind};
        use crate::journal::storage::MmapStorage;
        use crate::journal::{Durability, JournalWriter};
        let dir =
            std::env::temp_dir().join(format!("kinko-hasher-{hashing:?}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let storage = MmapStorage::open(&dir).unwrap();
        let genesis = Genesis {
            config: crate::defaults::config(),
        };
        let mut writer =
            JournalWriter::create(storage, &genesis, 1, 2 << 20, Durability::Process).unwrap();
        writer.set_chain_hashing(hashing).unwrap();
        let mut seq = 0;
        // Small batches (inline either way), batches of hundreds of KiB that fill segments (their
        // pieces go into the mapping, then the batch no longer fits: recalled, zeroed, written
        // whole into the next segment), and one of 1.5 MiB, past the staging buffer's first MiB.
        for (batch, pairs) in [1, 3, 700, 2_000, 1, 5_000, 900, 2_000, 2]
            .into_iter()
            .enumerate()
        {
            for _ in 0..pairs {
                seq += 1;
                let filler = vec![seq as u8; 40 + (seq % 250) as usize];
                writer.append_encoded(RecordKind::Command, seq, seq, &filler);
                writer.append_events(seq, seq, &[]);
            }
            writer.commit(seq + batch as u64).unwrap();
        }
        drop(writer);
        let read = crate::journal::read_journal(
            &mut MmapStorage::open(&dir).unwrap(),
            crate::journal::Repair::ReadOnly,
        )
        .expect("the journal reads back with its chain intact");
        assert_eq!(read.last_seq(), seq);
        assert!(
            read.segments.len() > 1,
            "the batches fill more than one segment"
        );
        let files = read
            .segments
            .iter()
            .map(|name| std::fs::read(dir.join(name)).unwrap())
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        files
    }

    #[test]
    fn a_journal_hashed_on_the_thread_is_byte_for_byte_the_inline_one() {
        let inline = journal_files(crate::journal::ChainHashing::Inline);
        let thread = journal_files(crate::journal::ChainHashing::Thread);
        assert_eq!(inline.len(), thread.len());
        for (i, (a, b)) in inline.iter().zip(&thread).enumerate() {
            assert!(a == b, "segment {i} differs");
        }
    }

    #[test]
    fn a_batch_cut_short_after_its_pieces_reached_the_mapping_is_a_torn_tail() {
        use crate::journal::format::{Genesis, RecordKind};
        use crate::journal::storage::{MmapStorage, Segment, Storage};
        use crate::journal::{read_journal, ChainHashing, Durability, JournalWriter, Repair};
        let dir = std::env::temp_dir().join(format!("kinko-hasher-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let genesis = Genesis {
            config: crate::defaults::config(),
        };
        let storage = MmapStorage::open(&dir).unwrap();
        let mut writer =
            JournalWriter::create(storage, &genesis, 1, 2 << 20, Durability::Process).unwrap();
        writer.set_chain_hashing(ChainHashing::Thread).unwrap();
        writer.append_encoded(RecordKind::Command, 1, 1, &[1; 40]);
        writer.commit(1).unwrap();
        let end = writer.position();
        // A batch of ~200 KiB, its pieces copied into the mapping for the hasher, never committed:
        // the process dies here.
        for seq in 2..1_000 {
            writer.append_encoded(RecordKind::Command, seq, seq, &[seq as u8; 200]);
        }
        assert_ne!(
            &MmapStorage::open(&dir).unwrap().open(0).unwrap().bytes()[end.offset..end.offset + 8],
            &[0; 8],
            "the batch's first piece is in the mapping before its commit"
        );
        drop(writer);
        let mut storage = MmapStorage::open(&dir).unwrap();
        let read =
            read_journal(&mut storage, Repair::CutTail).expect("a torn tail, not corruption");
        let cut = read
            .tail_cut
            .clone()
            .expect("the uncommitted batch is cut off");
        assert_eq!((cut.offset, cut.seq), (end.offset, Some(2)));
        assert_eq!((read.last_seq(), read.end), (1, end));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_recalled_batch_is_finished_by_the_caller_with_the_same_result() {
        let mut hasher = ChainHasher::spawn().unwrap();
        let previous = [1u8; 32];
        let batch = bytes(4 * PIECE_BYTES + 999, 3);
        unsafe { hasher.start(batch.as_ptr(), previous) };
        hasher.publish(3 * PIECE_BYTES);
        // Give the hasher time to take the published pieces, so that the state comes back
        // partly hashed (the result must not depend on how far it got).
        std::thread::sleep(Duration::from_millis(20));
        let (mut state, hashed) = hasher.recall();
        assert!(hashed <= 3 * PIECE_BYTES);
        state.update(&batch[hashed..]);
        assert_eq!(*state.finalize().as_bytes(), chain_next(&previous, &batch));
        // And the hasher takes the next batch after a recall, also after parking.
        std::thread::sleep(SPIN_IDLE * 5);
        let next = bytes(2 * PIECE_BYTES, 4);
        unsafe { hasher.start(next.as_ptr(), [2; 32]) };
        hasher.publish(next.len());
        assert_eq!(hasher.finish(next.len()), chain_next(&[2; 32], &next));
    }
}
