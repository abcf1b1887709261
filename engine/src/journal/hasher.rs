//! The chain hasher: a thread that hashes a large batch's records in the segment's mapping while
//! the journal writer is still staging the rest, so that BLAKE3 — 40% of the writer's work on a
//! batch of 256 commands (docs/PERFORMANCE.md) — runs mostly on another core. The chain is the
//! same value as [`super::format::chain_next`]: the on-disk format does not know who hashed it.
//!
//! BLAKE3 is a tree: the hash of `previous chain ‖ batch` is put together from the hashes
//! ("chaining values") of its subtrees, and every block of a power of two of 1 KiB chunks that
//! starts at a multiple of its size and ends inside the stream is one of them (`blake3::hazmat`).
//! The writer publishes the batch 16 KiB at a time as it stages it, and the thread claims each
//! such piece (BLAKE3's widest SIMD path takes 16 chunks at once). At commit the writer offers the
//! thread the first quarter of the tail in 4 KiB blocks ([`ChainHasher::share_last`]), hashes the
//! rest itself from its cache while the thread finishes, closes the batch, and joins the two
//! ([`chain_from_nodes`]). Neither waits for the other much longer than one piece.
//!
//! One word carries the batch: its generation, whether it is closed, and the first block nobody
//! has claimed; the thread claims a run by moving that word on with a compare-and-swap, and the
//! writer's closing `fetch_or` takes every block left. The writer copies the batch's bytes below
//! `published` into the mapping before it releases `published` and never writes them again until
//! it has closed the batch and seen `done` reach the blocks the thread claimed. The thread reads
//! the mapping, not the writer's staging buffer: the staging buffer is reused by every batch, and
//! its cache lines held by this thread's core made each of the writer's stores into it a
//! cross-core miss (staging took 40% longer).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};

use super::format::chain_next;

/// The unit the stream is shared out in: four chunks, the smallest run BLAKE3 still hashes
/// several chunks of at once.
pub const BLOCK_BYTES: usize = 4 << 10;
/// The longest run the thread claims: 16 chunks, what BLAKE3's widest SIMD path takes at once.
const RUN_BLOCKS: usize = 4;
/// The writer hands a batch over once it is this long (below it, hashing inline costs less than
/// waking the thread) and publishes it this much at a time: each publication fences the
/// non-temporal stores before it, and a fence every 4 KiB cost the writer more (staging 4 µs
/// slower per 63 KB batch) than the thread's shorter runs saved.
pub const PIECE_BYTES: usize = RUN_BLOCKS * BLOCK_BYTES;
/// The most blocks of one batch the thread claims (4 MiB of it); the writer hashes any beyond.
const MAX_BLOCKS: usize = 1024;
/// The previous chain, the first bytes of the hashed stream.
const PREVIOUS: usize = 32;
/// How long an idle hasher spins for the next batch before it parks: batches under load follow
/// each other within microseconds, and waking a parked thread costs tens of them.
const SPIN_IDLE: Duration = Duration::from_micros(200);
/// Pauses between two looks at `published` (a pause is ~40 ns on this machine's cores).
const POLL_PAUSES: usize = 8;

/// `word`: the batch's generation in the high 32 bits, then this bit, then the first unclaimed
/// block. Generation 0, closed, is "no batch yet".
const CLOSED: u64 = 1 << 31;
const BLOCK_MASK: u64 = CLOSED - 1;

/// A subtree of the hashed stream (`previous ‖ batch`) with its chaining value: bytes
/// `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    pub start: usize,
    pub end: usize,
    pub cv: ChainingValue,
}

struct Job {
    base: *const u8,
    previous: [u8; 32],
}

/// A value on cache lines of its own (two: the adjacent-line prefetcher pulls pairs).
#[repr(align(128))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

struct Shared {
    /// Stored to by the writer, polled by the thread: alone on its line, so that the thread's own
    /// stores (its claims, `done`) do not take the line from the writer between publications.
    published: Line<AtomicUsize>,
    word: AtomicU64,
    /// Blocks of the current batch the thread has hashed (its runs, in order).
    done: AtomicUsize,
    sleeping: AtomicBool,
    stop: AtomicBool,
    /// Written by the writer before it opens a batch (nobody holds a block), read by the thread
    /// after it claimed a run of that batch.
    job: UnsafeCell<Job>,
    /// For the run the thread claimed at block `b`: its length in blocks and its chaining value.
    /// Written by the thread that claimed it, read by the writer after it acquired `done`.
    runs: [UnsafeCell<(usize, ChainingValue)>; MAX_BLOCKS],
}

// SAFETY: `job` is written only while the thread holds no run of an open batch (before `start`
// opens it; `take_nodes` waits for every claimed run), and read only after a claim; each
// `runs[b]` is written by the one thread that claimed the run at `b` and read by the writer only
// after the release and acquire of `done`. `job.base` points into the writer's segment mapping,
// which outlives every batch (the writer closes each batch before it rotates the segment, and
// `ChainHasher`'s drop joins the thread).
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

pub struct ChainHasher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    generation: u32,
    open: bool,
    /// Closed, its runs not yet taken back: how many blocks the thread claimed.
    claimed: Option<usize>,
    /// The last length published.
    published: usize,
}

impl ChainHasher {
    pub fn spawn() -> std::io::Result<ChainHasher> {
        let shared = Arc::new(Shared {
            word: AtomicU64::new(CLOSED),
            published: Line(AtomicUsize::new(0)),
            done: AtomicUsize::new(0),
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            job: UnsafeCell::new(Job {
                base: std::ptr::null(),
                previous: [0; 32],
            }),
            runs: std::array::from_fn(|_| UnsafeCell::new((0, [0; 32]))),
        });
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("kinko-chain".into())
            .spawn(move || run(&theirs))?;
        Ok(ChainHasher {
            shared,
            thread: Some(thread),
            generation: 0,
            open: false,
            claimed: None,
            published: 0,
        })
    }

    /// Hands the hasher a batch that starts at `base` and extends the chain `previous`.
    ///
    /// # Safety
    /// Until this batch's runs are taken back ([`Self::take_nodes`]) the bytes from `base` up to
    /// each published length must stay where they are, unchanged and alive.
    pub unsafe fn start(&mut self, base: *const u8, previous: [u8; 32]) {
        assert!(
            !self.open && self.claimed.is_none(),
            "the last batch is still open"
        );
        // SAFETY: no batch is open: the thread holds no run and reads no job.
        unsafe { *self.shared.job.get() = Job { base, previous } };
        self.shared.published.store(0, Ordering::Relaxed);
        self.published = 0;
        self.shared.done.store(0, Ordering::Relaxed);
        self.generation = self.generation.wrapping_add(1).max(1);
        self.open = true;
        self.shared
            .word
            .store(u64::from(self.generation) << 32, Ordering::SeqCst);
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
        self.published = len;
        self.shared.published.store(len, Ordering::Release);
    }

    /// The whole batch, `len` bytes, is written and final: shares out what is left of it. The
    /// thread is offered the first part of what it has not been offered yet, a block at a time
    /// if need be; returns where in the hashed stream the writer's part begins (the writer hashes
    /// from there to the end while the thread works, then closes the batch).
    pub fn share_last(&mut self, len: usize) -> usize {
        let offered = (PREVIOUS + self.published) / BLOCK_BYTES * BLOCK_BYTES;
        let rest = (PREVIOUS + len).saturating_sub(offered);
        // The thread reads the batch from memory, the writer from its cache: the thread's share
        // is the smaller (a quarter or none, as good as each other in A/B runs on the Intel host;
        // two fifths and more, slower).
        let split = offered + rest / 4 / BLOCK_BYTES * BLOCK_BYTES;
        if split > offered {
            self.publish(split - PREVIOUS);
        }
        split
    }

    /// Closes the batch: the thread claims no more. Returns where its claims end in the hashed
    /// stream: bytes before it come back with [`Self::take_nodes`], the rest is the caller's.
    pub fn close(&mut self) -> usize {
        assert!(self.open, "no batch is open");
        self.open = false;
        let word = self.shared.word.fetch_or(CLOSED, Ordering::AcqRel);
        debug_assert_eq!(word >> 32, u64::from(self.generation));
        let claimed = (word & BLOCK_MASK) as usize;
        self.claimed = Some(claimed);
        claimed * BLOCK_BYTES
    }

    /// Waits for the runs the thread claimed from the batch just closed and appends them to
    /// `nodes`, in order. After it the thread reads nothing of the batch.
    pub fn take_nodes(&mut self, nodes: &mut Vec<Node>) {
        let claimed = self.claimed.take().expect("a closed batch");
        let mut spins = 0u32;
        while self.shared.done.load(Ordering::Acquire) != claimed {
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
        let mut block = 0;
        while block < claimed {
            // SAFETY: `done` acquired: the thread wrote this run and touches it no more.
            let (blocks, cv) = unsafe { *self.shared.runs[block].get() };
            assert!(blocks > 0, "a run of no blocks at block {block}");
            nodes.push(Node {
                start: block * BLOCK_BYTES,
                end: (block + blocks) * BLOCK_BYTES,
                cv,
            });
            block += blocks;
        }
    }

    /// The whole batch (`batch`, after the chain `previous`) is written and final: shares out the
    /// rest of its hashing, closes it, and leaves in `nodes` (empty before) the subtrees hashed,
    /// for [`chain_from_nodes`]. `scratch` holds the writer's share meanwhile.
    pub fn finish(
        &mut self,
        previous: &[u8; 32],
        batch: &[u8],
        nodes: &mut Vec<Node>,
        scratch: &mut Vec<Node>,
    ) {
        assert!(nodes.is_empty() && scratch.is_empty());
        let split = self.share_last(batch.len());
        hash_range(previous, batch, split, stream_len(batch.len()), scratch);
        // What of its share the thread had not claimed by the close (seldom anything) is left
        // uncovered: the join hashes it.
        self.close_and_take(nodes);
        nodes.append(scratch);
    }

    /// Closes the batch and appends the runs the thread hashed to `nodes`.
    pub fn close_and_take(&mut self, nodes: &mut Vec<Node>) {
        self.close();
        self.take_nodes(nodes);
    }
}

impl Drop for ChainHasher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The run the thread claims at `block` with `ready` whole blocks published: the longest run of
/// a power of two of blocks, up to [`RUN_BLOCKS`], that starts at a multiple of its length.
fn run_at(block: usize, ready: usize) -> usize {
    let mut blocks = RUN_BLOCKS;
    while blocks > 1 && (!block.is_multiple_of(blocks) || block + blocks > ready) {
        blocks /= 2;
    }
    if block < ready && block + blocks <= MAX_BLOCKS {
        blocks
    } else {
        0
    }
}

fn run(shared: &Shared) {
    while let Some(mut word) = wait_for_batch(shared) {
        while word & CLOSED == 0 {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            let block = (word & BLOCK_MASK) as usize;
            let ready = (PREVIOUS + shared.published.load(Ordering::Acquire)) / BLOCK_BYTES;
            let blocks = run_at(block, ready);
            if blocks == 0 {
                // Polling less often leaves the writer's line alone between publications.
                for _ in 0..POLL_PAUSES {
                    std::hint::spin_loop();
                }
                word = shared.word.load(Ordering::Acquire);
                continue;
            }
            if let Err(now) = shared.word.compare_exchange(
                word,
                word + blocks as u64,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                word = now;
                continue;
            }
            let (start, end) = (block * BLOCK_BYTES, (block + blocks) * BLOCK_BYTES);
            // SAFETY: the run is claimed: the writer wrote the job before it opened this batch,
            // and does not take the batch back (or write it again) before `done` counts this
            // run; the bytes below the published length acquired above are final and stay put
            // until then (`ChainHasher::start`'s contract).
            let cv = unsafe {
                let job = &*shared.job.get();
                let batch = std::slice::from_raw_parts(job.base, end - PREVIOUS);
                subtree_cv(&job.previous, batch, start, end)
            };
            // SAFETY: this thread claimed the run at `block`; the writer reads it after `done`.
            unsafe { *shared.runs[block].get() = (blocks, cv) };
            shared.done.fetch_add(blocks, Ordering::Release);
            word = shared.word.load(Ordering::Acquire);
        }
    }
}

/// Spins, then parks, until the writer has opened a batch (its word; by the time the thread
/// looks, the writer may already have closed it) or stops the thread (None).
fn wait_for_batch(shared: &Shared) -> Option<u64> {
    let idle_since = Instant::now();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        let word = shared.word.load(Ordering::Acquire);
        if word & CLOSED == 0 {
            return Some(word);
        }
        if idle_since.elapsed() < SPIN_IDLE {
            std::hint::spin_loop();
            continue;
        }
        shared.sleeping.store(true, Ordering::SeqCst);
        if shared.word.load(Ordering::SeqCst) & CLOSED == 0 || shared.stop.load(Ordering::SeqCst) {
            shared.sleeping.store(false, Ordering::SeqCst);
            continue;
        }
        std::thread::park();
    }
}

/// The chaining value of the subtree over bytes `start..end` of the stream `previous ‖ batch`
/// (a subtree of BLAKE3's tree over the whole stream, not its root).
fn subtree_cv(previous: &[u8; 32], batch: &[u8], start: usize, end: usize) -> ChainingValue {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(start as u64);
    if start == 0 {
        hasher.update(previous);
        hasher.update(&batch[..end - PREVIOUS]);
    } else {
        hasher.update(&batch[start - PREVIOUS..end - PREVIOUS]);
    }
    hasher.finalize_non_root()
}

/// The length of the hashed stream of a batch of `len` bytes.
pub fn stream_len(len: usize) -> usize {
    PREVIOUS + len
}

/// Hashes the 16 KiB pieces of a batch still being staged (`staged`, its bytes so far) from
/// `*hashed` (where the pieces hashed before end, in the stream) up to the last piece that ends
/// before the stream's current end, and appends one node per piece to `nodes`: the writer's inline
/// hashing, while the pieces are in its cache. Each is an aligned 16 KiB block strictly inside any
/// stream the batch can grow into, so a subtree of its final tree; a piece ending exactly at the
/// current end waits (the batch may end there, the piece then its whole stream), and so does any
/// larger tile of this prefix's tree, which a longer batch can reshape.
pub fn hash_staged_pieces(
    previous: &[u8; 32],
    staged: &[u8],
    hashed: &mut usize,
    nodes: &mut Vec<Node>,
) {
    let before_end = (stream_len(staged.len()) - 1) / PIECE_BYTES * PIECE_BYTES;
    while *hashed < before_end {
        let (start, end) = (*hashed, *hashed + PIECE_BYTES);
        let cv = subtree_cv(previous, staged, start, end);
        nodes.push(Node { start, end, cv });
        *hashed = end;
    }
}

/// Hashes bytes `from..to` of the stream `previous ‖ batch` (multiples of [`BLOCK_BYTES`], or
/// the stream's end) in the fewest subtrees that tile them, and appends those to `nodes` in
/// order: the writer's share of a batch.
pub fn hash_range(
    previous: &[u8; 32],
    batch: &[u8],
    from: usize,
    to: usize,
    nodes: &mut Vec<Node>,
) {
    let total = PREVIOUS + batch.len();
    assert!(from <= to && to <= total);
    assert!(from.is_multiple_of(BLOCK_BYTES) && (to.is_multiple_of(BLOCK_BYTES) || to == total));
    if from < to && (from, to) != (0, total) {
        // (All of it is the root, hashed at the join.)
        tile(previous, batch, (from, to), 0, total, nodes);
    }
}

/// Tiles the part inside `range` of the tree's node `start..end`.
fn tile(
    previous: &[u8; 32],
    batch: &[u8],
    range: (usize, usize),
    start: usize,
    end: usize,
    nodes: &mut Vec<Node>,
) {
    if range.0 <= start && end <= range.1 {
        let cv = subtree_cv(previous, batch, start, end);
        nodes.push(Node { start, end, cv });
    } else if range.0 < end && start < range.1 {
        let mid = start + left_subtree_len((end - start) as u64) as usize;
        tile(previous, batch, range, start, mid, nodes);
        tile(previous, batch, range, mid, end, nodes);
    }
}

/// The batch's chain, BLAKE3(previous ‖ batch), from the chaining values of some of its
/// subtrees (`nodes`, in order, not overlapping): the rest of the tree is hashed here.
pub fn chain_from_nodes(previous: &[u8; 32], batch: &[u8], nodes: &[Node]) -> [u8; 32] {
    let total = PREVIOUS + batch.len();
    if nodes.is_empty() || (nodes[0].start, nodes[0].end) == (0, total) {
        // No subtree known, or the one known is the whole stream: its root, hashed apart.
        return chain_next(previous, batch);
    }
    assert!(
        nodes.windows(2).all(|w| w[0].end <= w[1].start) && nodes[nodes.len() - 1].end <= total,
        "nodes in order, inside the stream"
    );
    assert!(
        total > blake3::CHUNK_LEN,
        "a stream of one chunk has no subtrees"
    );
    let left = left_subtree_len(total as u64) as usize;
    let node = |start, end| subtree(previous, batch, nodes, start, end);
    *merge_subtrees_root(&node(0, left), &node(left, total), Mode::Hash).as_bytes()
}

/// The chaining value of the subtree over `start..end` of the stream, from the nodes' values
/// where they cover it and by hashing the bytes where none does.
fn subtree(
    previous: &[u8; 32],
    batch: &[u8],
    nodes: &[Node],
    start: usize,
    end: usize,
) -> ChainingValue {
    let first = nodes.partition_point(|n| n.end <= start);
    match nodes.get(first) {
        None => return subtree_cv(previous, batch, start, end),
        Some(n) if n.start >= end => return subtree_cv(previous, batch, start, end),
        Some(n) if (n.start, n.end) == (start, end) => return n.cv,
        Some(n) => assert!(
            end - start > blake3::CHUNK_LEN && n.start >= start && n.end <= end,
            "node {}..{} is not a subtree of the stream ({start}..{end} is)",
            n.start,
            n.end
        ),
    }
    let mid = start + left_subtree_len((end - start) as u64) as usize;
    merge_subtrees_non_root(
        &subtree(previous, batch, nodes, start, mid),
        &subtree(previous, batch, nodes, mid, end),
        Mode::Hash,
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const PIECE: usize = RUN_BLOCKS * BLOCK_BYTES;

    fn bytes(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
            .collect()
    }

    /// Waits (up to a minute, for a loaded machine) until the thread has hashed `blocks` blocks.
    fn wait_until_done(hasher: &ChainHasher, blocks: usize) {
        let since = Instant::now();
        while hasher.shared.done.load(Ordering::Acquire) < blocks {
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "the thread stalled"
            );
            std::thread::yield_now();
        }
    }

    /// A new journal in a scratch directory of its own, its chain hashed as `hashing` says.
    pub(in crate::journal) fn scratch_writer(
        name: &str,
        hashing: crate::journal::ChainHashing,
        segment_bytes: usize,
    ) -> (
        std::path::PathBuf,
        crate::journal::JournalWriter<crate::journal::storage::MmapStorage>,
    ) {
        use crate::journal::{format::Genesis, storage::MmapStorage, Durability, JournalWriter};
        let dir = std::env::temp_dir().join(format!(
            "kinko-hasher-{name}-{hashing:?}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let genesis = Genesis {
            config: crate::defaults::config(),
        };
        let storage = MmapStorage::open(&dir).unwrap();
        let mut writer =
            JournalWriter::create(storage, &genesis, 1, segment_bytes, Durability::Process)
                .unwrap();
        writer.set_chain_hashing(hashing).unwrap();
        (dir, writer)
    }

    /// The runs a thread would claim of the first `blocks` blocks, with `step` more published
    /// each time it looks.
    fn runs(previous: &[u8; 32], batch: &[u8], blocks: usize, step: usize) -> Vec<Node> {
        let (mut nodes, mut block, mut ready) = (Vec::new(), 0, 0);
        while block < blocks {
            ready = (ready + step).min(blocks);
            let run = run_at(block, ready);
            if run > 0 {
                let (start, end) = (block * BLOCK_BYTES, (block + run) * BLOCK_BYTES);
                let cv = subtree_cv(previous, batch, start, end);
                nodes.push(Node { start, end, cv });
                block += run;
            }
        }
        nodes
    }

    #[test]
    fn a_run_is_the_longest_aligned_power_of_two_of_blocks_published() {
        // (first block, blocks published) -> run claimed
        for ((block, ready), run) in [
            ((0, 0), 0),
            ((0, 1), 1),
            ((0, 3), 2),
            ((0, 4), 4),
            ((0, 9), 4),
            ((1, 9), 1),
            ((2, 9), 2),
            ((2, 3), 1),
            ((4, 8), 4),
            ((6, 8), 2),
            ((7, 7), 0),
            ((MAX_BLOCKS - 1, MAX_BLOCKS + 5), 1),
            ((MAX_BLOCKS, MAX_BLOCKS + 5), 0),
        ] {
            assert_eq!(
                run_at(block, ready),
                run,
                "at block {block} with {ready} ready"
            );
        }
    }

    #[test]
    fn a_chain_put_together_from_subtrees_is_blake3_over_the_whole_stream() {
        let previous = [9u8; 32];
        // Around one piece of 16 KiB, two, a block, and lengths whose trees are lopsided.
        for len in [
            PIECE - PREVIOUS - 1,
            PIECE - PREVIOUS,
            PIECE - PREVIOUS + 1,
            PIECE + BLOCK_BYTES - PREVIOUS,
            2 * PIECE - PREVIOUS,
            2 * PIECE + 1024,
            3 * PIECE + 5,
            5 * PIECE + 123,
            63_000,
            300_001,
        ] {
            let batch = bytes(len, len as u32);
            let whole = (PREVIOUS + len) / BLOCK_BYTES;
            let expected = chain_next(&previous, &batch);
            for blocks in 0..=whole {
                for step in [1, 3, whole.max(1)] {
                    let theirs = runs(&previous, &batch, blocks, step);
                    // The writer hashing what was left on demand.
                    assert_eq!(
                        chain_from_nodes(&previous, &batch, &theirs),
                        expected,
                        "batch of {len} bytes, {blocks} blocks theirs by {step}"
                    );
                    // The writer hashing its tiles first, then joining.
                    let mut nodes = theirs.clone();
                    let total = stream_len(len);
                    hash_range(&previous, &batch, blocks * BLOCK_BYTES, total, &mut nodes);
                    assert_eq!(
                        chain_from_nodes(&previous, &batch, &nodes),
                        expected,
                        "batch of {len} bytes, {blocks} blocks theirs by {step}, tiles after"
                    );
                }
            }
        }
    }

    #[test]
    fn pieces_hashed_while_a_batch_grows_are_subtrees_of_its_final_tree() {
        // (A review found this: tiling a prefix whose length was a multiple of 16 KiB gave a
        // 48 KiB node of that prefix's tree, which the longer final batch's tree does not have.)
        let previous = [3u8; 32];
        let batch = bytes(400_000, 11);
        let mut growths = vec![
            (vec![70_080, 114_656], 114_792),
            (vec![PIECE - PREVIOUS], PIECE - PREVIOUS),
            (vec![PIECE - PREVIOUS], PIECE - PREVIOUS + 1),
            (
                vec![2 * PIECE - PREVIOUS, 4 * PIECE - PREVIOUS],
                4 * PIECE - PREVIOUS,
            ),
            (
                vec![2 * PIECE - PREVIOUS, 4 * PIECE - PREVIOUS],
                7 * PIECE - PREVIOUS + 9,
            ),
        ];
        // And a sweep: grown by steps of every size from a few bytes to 40 KiB.
        let mut seed = 0x9e37_79b9_u64;
        for _ in 0..200 {
            let (mut at, mut steps) = (0, Vec::new());
            while at < 300_000 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                at += 8 + (seed >> 33) as usize % 40_000;
                steps.push(at.min(300_000));
            }
            let last = *steps.last().unwrap();
            growths.push((steps, last + (seed >> 40) as usize % 100));
        }
        for (steps, len) in growths {
            let (mut hashed, mut nodes) = (0, Vec::new());
            for &staged in &steps {
                hash_staged_pieces(&previous, &batch[..staged], &mut hashed, &mut nodes);
            }
            let batch = &batch[..len];
            assert_eq!(
                chain_from_nodes(&previous, batch, &nodes),
                chain_next(&previous, batch),
                "grown through {steps:?} to {len}"
            );
        }
    }

    #[test]
    fn a_batch_whose_staged_bytes_once_ended_on_a_piece_commits_and_reads_back() {
        use crate::journal::format::RecordKind;
        use crate::journal::storage::MmapStorage;
        use crate::journal::{read_journal, ChainHashing, Repair};
        // A record of 16 KiB or more is sealed (and its pieces hashed) as soon as it is staged:
        // after the first three the stream is 70,112 bytes long, after the fourth exactly 112 KiB,
        // and one more record follows before the commit (the review's case, where the old tiling
        // panicked in `commit`).
        let sizes = [23_328, 23_328, 23_328, 44_544, 100];
        for hashing in [ChainHashing::Inline, ChainHashing::Thread] {
            let (dir, mut writer) = scratch_writer("edge", hashing, 2 << 20);
            for (i, size) in sizes.into_iter().enumerate() {
                let seq = i as u64 + 1;
                writer.append_encoded(RecordKind::Command, seq, seq, &vec![seq as u8; size]);
            }
            writer.commit(6).unwrap();
            drop(writer);
            let read = read_journal(&mut MmapStorage::open(&dir).unwrap(), Repair::ReadOnly)
                .expect("the batch reads back with its chain intact");
            assert_eq!(read.last_seq(), 5, "{hashing:?}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn a_batch_that_stops_fitting_only_at_its_commit_is_written_whole_into_the_next_segment() {
        use crate::journal::format::*;
        use crate::journal::storage::MmapStorage;
        use crate::journal::{read_journal, ChainHashing, Repair};
        const SEGMENT: usize = 2 << 20;
        let record = |payload: usize| {
            (RECORD_HEADER_BYTES + payload + RECORD_TRAILER_BYTES).div_ceil(RECORD_ALIGN)
                * RECORD_ALIGN
        };
        for hashing in [ChainHashing::Inline, ChainHashing::Thread] {
            let (dir, mut writer) = scratch_writer("late", hashing, SEGMENT);
            let mut seq = 0;
            let mut append = |writer: &mut crate::journal::JournalWriter<MmapStorage>,
                              payload: usize| {
                seq += 1;
                writer.append_encoded(RecordKind::Command, seq, seq, &vec![seq as u8; payload]);
                seq
            };
            while SEGMENT - writer.position().offset > 200_000 {
                let mut last = 0;
                for _ in 0..3 {
                    last = append(&mut writer, 10_000);
                }
                writer.commit(last).unwrap();
            }
            // Thirty records (sealed in threes, every piece in the mapping, the last seal still
            // fitting with under 300 bytes to spare), then one more that does not fit: the batch
            // moves to the next segment only at its commit.
            let room = SEGMENT - writer.position().offset - COMMIT_RECORD_BYTES;
            let payload = (room - 50) / 30 - RECORD_HEADER_BYTES - RECORD_TRAILER_BYTES - 8;
            assert!(
                room - 30 * record(payload) < record(1_000),
                "the last record does not fit"
            );
            for _ in 0..30 {
                append(&mut writer, payload);
            }
            let last = append(&mut writer, 1_000);
            writer.commit(last).unwrap();
            assert_eq!(
                writer.position().index,
                1,
                "{hashing:?}: the batch went to segment 1"
            );
            drop(writer);
            // Segment 0's copies were zeroed again (else its end would read as corruption).
            let read = read_journal(&mut MmapStorage::open(&dir).unwrap(), Repair::ReadOnly)
                .expect("both segments read back with the chain intact");
            // Segment 2 was begun by the batch's arrival in segment 1 and holds only its header.
            assert_eq!(
                (read.last_seq(), read.segments.len()),
                (last, 3),
                "{hashing:?}"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn the_thread_computes_the_same_chain_as_the_writer_would() {
        let mut hasher = ChainHasher::spawn().unwrap();
        let mut previous = [7u8; 32];
        let mut nodes = Vec::new();
        // Below one block, exactly one piece, many and not a multiple; published unevenly.
        for (round, len) in [0, 100, PIECE, 5 * PIECE + 123, 300_001]
            .into_iter()
            .enumerate()
        {
            let batch = bytes(len, round as u32);
            unsafe { hasher.start(batch.as_ptr(), previous) };
            for published in (0..=len).step_by(7_001).chain([len]) {
                hasher.publish(published);
            }
            // Let the thread take every whole block, so that the chain is put together from its.
            let blocks = (PREVIOUS + len) / BLOCK_BYTES;
            wait_until_done(&hasher, blocks);
            nodes.clear();
            let from = hasher.close();
            assert_eq!(from, blocks * BLOCK_BYTES, "the thread claimed every block");
            hash_range(&previous, &batch, from, stream_len(len), &mut nodes);
            let mine = std::mem::take(&mut nodes);
            hasher.take_nodes(&mut nodes);
            assert_eq!(
                nodes.last().map_or(0, |n| n.end),
                from,
                "the thread's runs end where its claims do"
            );
            nodes.extend(mine);
            let chain = chain_from_nodes(&previous, &batch, &nodes);
            assert_eq!(chain, chain_next(&previous, &batch), "batch of {len} bytes");
            previous = chain;
        }
    }

    /// Writes the same batches with the chain hashed inline and on the thread; returns each
    /// journal's segment files.
    fn journal_files(hashing: crate::journal::ChainHashing) -> Vec<Vec<u8>> {
        use crate::journal::format::RecordKind;
        use crate::journal::storage::MmapStorage;
        let (dir, mut writer) = scratch_writer("files", hashing, 2 << 20);
        let mut seq = 0;
        // Small batches (inline either way), batches of hundreds of KiB that fill segments (their
        // pieces go into the mapping, then the batch no longer fits: closed, zeroed, written
        // whole into the next segment), and one of ~1.2 MB, past the staging buffer's first MiB.
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
        use crate::journal::format::RecordKind;
        use crate::journal::storage::{MmapStorage, Segment, Storage};
        use crate::journal::{read_journal, ChainHashing, Repair};
        // Either way the pieces go into the mapping as they are staged.
        for hashing in [ChainHashing::Inline, ChainHashing::Thread] {
            let (dir, mut writer) = scratch_writer("torn", hashing, 2 << 20);
            writer.append_encoded(RecordKind::Command, 1, 1, &[1; 40]);
            writer.commit(1).unwrap();
            let end = writer.position();
            // A batch of ~200 KiB, its pieces copied into the mapping for the hasher, never committed:
            // the process dies here.
            for seq in 2..1_000 {
                writer.append_encoded(RecordKind::Command, seq, seq, &[seq as u8; 200]);
            }
            assert_ne!(
                &MmapStorage::open(&dir).unwrap().open(0).unwrap().bytes()
                    [end.offset..end.offset + 8],
                &[0; 8],
                "the batch's first piece is in the mapping before its commit ({hashing:?})"
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
    }

    #[test]
    fn the_end_of_a_batch_is_hashed_by_whoever_gets_it() {
        let mut hasher = ChainHasher::spawn().unwrap();
        let (mut nodes, mut scratch) = (Vec::new(), Vec::new());
        let mut previous = [5u8; 32];
        for round in 0..200 {
            let len = 2 * PIECE + round * 331;
            let batch = bytes(len, round as u32);
            unsafe { hasher.start(batch.as_ptr(), previous) };
            hasher.publish(2 * PIECE - PREVIOUS);
            let expected = chain_next(&previous, &batch);
            if round % 2 == 0 {
                // As the writer does it.
                hasher.finish(&previous, &batch, &mut nodes, &mut scratch);
            } else {
                // Closed at once after the offer: the thread has often not claimed it yet, and
                // the join hashes what nobody did.
                let split = hasher.share_last(len);
                hasher.close_and_take(&mut nodes);
                hash_range(&previous, &batch, split, stream_len(len), &mut nodes);
            }
            assert_eq!(
                chain_from_nodes(&previous, &batch, &nodes),
                expected,
                "round {round}"
            );
            nodes.clear();
            previous = expected;
        }
    }

    #[test]
    fn a_batch_closed_early_is_finished_by_the_writer_with_the_same_result() {
        let mut hasher = ChainHasher::spawn().unwrap();
        let previous = [1u8; 32];
        let batch = bytes(4 * PIECE + 999, 3);
        unsafe { hasher.start(batch.as_ptr(), previous) };
        hasher.publish(2 * PIECE);
        // However far the thread got, the writer finishes.
        let mut nodes = Vec::new();
        hasher.close_and_take(&mut nodes);
        assert!(nodes.last().map_or(0, |n| n.end) <= 2 * PIECE);
        assert_eq!(
            chain_from_nodes(&previous, &batch, &nodes),
            chain_next(&previous, &batch)
        );
        // And the thread takes the next batch after a close, also after parking.
        std::thread::sleep(SPIN_IDLE * 5);
        let next = bytes(2 * PIECE, 4);
        unsafe { hasher.start(next.as_ptr(), [2; 32]) };
        hasher.publish(next.len());
        wait_until_done(&hasher, 2 * PIECE / BLOCK_BYTES);
        nodes.clear();
        hasher.close_and_take(&mut nodes);
        assert_eq!(
            nodes.len(),
            2,
            "the woken thread took both pieces, 16 KiB at a time"
        );
        assert_eq!(
            chain_from_nodes(&[2; 32], &next, &nodes),
            chain_next(&[2; 32], &next)
        );
    }
}
