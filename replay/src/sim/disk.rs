//! The seams the simulator controls: the clock, and the disk under the journal. The journal's
//! segments stay real memory-mapped files in a folder per run; faults are applied to those files
//! between process lifetimes (a torn last batch, a flipped bit, a mangled snapshot), or through
//! [`SimStorage`] while the engine runs (a disk too full for the next segment).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use engine::journal::format::{RecordKind, SEGMENT_HEADER_BYTES};
use engine::journal::storage::{segment_indices, segment_path, MmapSegment, MmapStorage, Storage};
use engine::runtime::Clock;

/// Simulated time: whatever the simulator last set, forwards or backwards.
#[derive(Clone, Default)]
pub struct SimClock(Arc<AtomicU64>);

impl SimClock {
    pub fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Clock for SimClock {
    fn now_ns(&mut self) -> u64 {
        self.get()
    }
}

/// The real mmap storage, with a switch that makes creating the next segment fail as a full disk
/// would. It never creates segments ahead on another thread: a run must not depend on timing.
pub struct SimStorage {
    inner: MmapStorage,
    full: Arc<AtomicBool>,
    hit: Arc<AtomicBool>,
}

/// The simulator's side of [`SimStorage`]'s switch.
#[derive(Clone, Default)]
pub struct DiskSwitch {
    full: Arc<AtomicBool>,
    hit: Arc<AtomicBool>,
}

impl DiskSwitch {
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::Relaxed);
    }

    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// True once a segment creation was refused since the last call.
    pub fn take_hit(&self) -> bool {
        self.hit.swap(false, Ordering::Relaxed)
    }
}

impl SimStorage {
    pub fn open(dir: &Path, switch: &DiskSwitch) -> io::Result<SimStorage> {
        Ok(SimStorage {
            inner: MmapStorage::open(dir)?,
            full: switch.full.clone(),
            hit: switch.hit.clone(),
        })
    }
}

impl Storage for SimStorage {
    type Segment = MmapSegment;

    fn list(&self) -> io::Result<Vec<u64>> {
        self.inner.list()
    }

    fn create(&mut self, index: u64, bytes: usize) -> io::Result<MmapSegment> {
        if self.full.load(Ordering::Relaxed) {
            self.hit.store(true, Ordering::Relaxed);
            return Err(io::Error::other(
                "no space left on device (simulated full disk)",
            ));
        }
        self.inner.create(index, bytes)
    }

    fn open(&mut self, index: u64) -> io::Result<MmapSegment> {
        self.inner.open(index)
    }

    fn remove(&mut self, index: u64) -> io::Result<()> {
        self.inner.remove(index)
    }

    fn name(&self, index: u64) -> String {
        self.inner.name(index)
    }
}

/// One record as it lies in a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSpan {
    pub segment: u64,
    pub offset: usize,
    pub len: usize,
    pub kind: u8,
}

/// Every record of a journal folder, in order, by walking the length fields (docs/JOURNAL.md):
/// the simulator's own map of the bytes, to aim its faults and to know what a reader must report.
pub fn record_spans(journal_dir: &Path) -> io::Result<Vec<RecordSpan>> {
    let mut spans = Vec::new();
    for index in segment_indices(journal_dir)? {
        let bytes = fs::read(segment_path(journal_dir, index))?;
        let mut offset = SEGMENT_HEADER_BYTES;
        while offset + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
            if len == 0 || offset + len > bytes.len() {
                break;
            }
            spans.push(RecordSpan {
                segment: index,
                offset,
                len,
                kind: bytes[offset + 4],
            });
            offset += len;
        }
    }
    Ok(spans)
}

pub fn is_commit(span: &RecordSpan) -> bool {
    span.kind == RecordKind::Commit as u8
}

/// Overwrites `len` bytes at `offset` of a file with zeros.
pub fn zero_range(path: &Path, offset: usize, len: usize) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    file.seek(SeekFrom::Start(offset as u64))?;
    file.write_all(&vec![0u8; len])?;
    file.sync_all()
}

/// Flips one bit of one byte of a file.
pub fn flip_bit(path: &Path, offset: usize, bit: u8) -> io::Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    file.seek(SeekFrom::Start(offset as u64))?;
    let mut byte = [0u8; 1];
    file.read_exact(&mut byte)?;
    byte[0] ^= 1 << (bit % 8);
    file.seek(SeekFrom::Start(offset as u64))?;
    file.write_all(&byte)?;
    file.sync_all()
}

/// Cuts a file down to `len` bytes.
pub fn truncate(path: &Path, len: usize) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len as u64)?;
    file.sync_all()
}

/// The snapshot files of a folder, newest first.
pub fn snapshots(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if !dir.exists() {
        return Ok(found);
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().to_string());
        if name.is_some_and(|n| n.starts_with("snapshot-") && n.ends_with(".ksn")) {
            found.push(path);
        }
    }
    found.sort();
    found.reverse();
    Ok(found)
}
