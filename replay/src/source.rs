//! Reading a journal as an auditor does: read-only. The engine's `MmapStorage` opens segments for
//! writing and creates missing directories, which an auditor working on a read-only copy of the
//! evidence must not need; [`ReadOnlyStorage`] implements the engine's `Storage` seam with
//! read-only mappings, so that the engine's own reader (checksums, chain, torn tails: `JournalScan`
//! and `read_journal`) runs unchanged on files that may not be written.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions};

use engine::journal::storage::{Segment, Storage};
use engine::journal::{read_journal, JournalError, JournalRead, Repair};

use crate::error::ReplayError;

/// Segment files `segment-NNNNNN.kjl` in a directory, mapped read-only one at a time.
pub struct ReadOnlyStorage {
    dir: PathBuf,
}

/// One segment's bytes, mapped read-only; writing to it is a bug (the reader never repairs).
pub struct ReadOnlySegment {
    map: Option<Mmap>,
}

impl ReadOnlyStorage {
    pub fn new(dir: &Path) -> ReadOnlyStorage {
        ReadOnlyStorage {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, index: u64) -> PathBuf {
        engine::journal::storage::segment_path(&self.dir, index)
    }
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the auditor's reader never writes to a journal",
    )
}

impl Storage for ReadOnlyStorage {
    type Segment = ReadOnlySegment;

    fn list(&self) -> io::Result<Vec<u64>> {
        engine::journal::storage::segment_indices(&self.dir)
    }

    fn create(&mut self, _index: u64, _bytes: usize) -> io::Result<ReadOnlySegment> {
        Err(read_only())
    }

    fn open(&mut self, index: u64) -> io::Result<ReadOnlySegment> {
        let file = File::open(self.path(index))?;
        if file.metadata()?.len() == 0 {
            // An empty file cannot be mapped; it reads as a segment too short for its header.
            return Ok(ReadOnlySegment { map: None });
        }
        // SAFETY: segment files are never truncated (they are made at their full size; recovery
        // zeroes bytes and removes whole files, which a mapping survives). An engine appending to
        // the journal while it is read writes only past its last commit, where the reader finds
        // either whole checked records or a torn tail; an auditor verifies a copy of the evidence.
        let map = unsafe { MmapOptions::new().populate().map(&file)? };
        Ok(ReadOnlySegment { map: Some(map) })
    }

    fn remove(&mut self, _index: u64) -> io::Result<()> {
        Err(read_only())
    }

    fn name(&self, index: u64) -> String {
        self.path(index).display().to_string()
    }
}

impl Segment for ReadOnlySegment {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }

    fn write(&mut self, offset: usize, data: &[u8]) {
        panic!(
            "read-only journal segment written at offset {offset} ({} bytes): the auditor's \
             reader reads with Repair::ReadOnly",
            data.len()
        );
    }

    fn sync(&mut self, _offset: usize, _len: usize) -> io::Result<()> {
        Err(read_only())
    }
}

/// The segment directory of `dir`: its `journal/` folder when it is a data folder, else `dir`
/// itself when it holds segments.
pub fn journal_dir(dir: &Path) -> Result<PathBuf, ReplayError> {
    let nested = dir.join("journal");
    if nested.is_dir() {
        return Ok(nested);
    }
    let holds_segments = fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("segment-") && name.ends_with(".kjl")
            })
        })
        .unwrap_or(false);
    if holds_segments {
        Ok(dir.to_path_buf())
    } else {
        Err(ReplayError::NoJournal(dir.display().to_string()))
    }
}

/// Reads and checks a whole journal (every checksum, the sequence, the hash chain) without
/// changing a byte. A torn tail is reported in `JournalRead::tail_cut`, not cut.
pub fn open_journal(dir: &Path) -> Result<JournalRead, ReplayError> {
    let mut storage = ReadOnlyStorage::new(&journal_dir(dir)?);
    match read_journal(&mut storage, Repair::ReadOnly) {
        Ok(read) => Ok(read),
        Err(JournalError::Empty) => Err(ReplayError::NoJournal(dir.display().to_string())),
        Err(e) => Err(ReplayError::Journal(e)),
    }
}
