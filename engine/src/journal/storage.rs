//! The disk seam: the journal reads and writes segments through [`Storage`], so that a simulator
//! can replace the disk. [`MmapStorage`] is the real one: preallocated files mapped with memmap2.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::{MmapMut, MmapOptions};

/// One segment: a fixed-size byte array that survives the process once written.
pub trait Segment {
    fn bytes(&self) -> &[u8];
    /// Copies `data` in at `offset`: after this returns the bytes survive a crash of the process.
    fn write(&mut self, offset: usize, data: &[u8]);
    /// As [`Self::write`], for bytes this thread will not read again soon (a piece of a batch for
    /// the chain hasher thread): the mapping may take them around this core's caches.
    fn write_streaming(&mut self, offset: usize, data: &[u8]) {
        self.write(offset, data);
    }
    /// A pointer to byte 0 that stays valid, and through which (or with [`Self::write`], which
    /// must use it) every byte is written, for as long as the segment lives: only then may the
    /// writer hand a batch to the chain hasher thread, which reads the segment while the writer
    /// writes further on. `None` (the default) keeps the chain inline.
    fn stable_base(&self) -> Option<*const u8> {
        None
    }
    /// Makes `offset..offset + len` survive power loss (msync).
    fn sync(&mut self, offset: usize, len: usize) -> io::Result<()>;
    /// Gets the bytes from `offset` on ready to take appends without faults (the writer calls it
    /// on the segment it resumes); nothing by default.
    fn prepare_appends(&mut self, _offset: usize) -> io::Result<()> {
        Ok(())
    }
    /// Faults `offset..offset + len` in writable, as [`Self::prepare_appends`] does the rest of a
    /// segment: for a segment made ahead without its pages, a piece at a time while the engine
    /// thread waits for commands. Nothing by default.
    fn prefault(&mut self, _offset: usize, _len: usize) -> io::Result<()> {
        Ok(())
    }
    /// Lets go of `offset..offset + len` of this process's view of a full segment, the bytes
    /// staying in the file: a segment released a piece at a time while the engine waits is then
    /// dropped in microseconds, where unmapping 64 MiB of written pages at once took 1–4 ms of
    /// a core. Nothing by default.
    fn release(&mut self, _offset: usize, _len: usize) {}
}

pub trait Storage {
    type Segment: Segment + Send + 'static;
    /// Indices of the existing segments, ascending.
    fn list(&self) -> io::Result<Vec<u64>>;
    /// Creates a zero-filled segment of `bytes` bytes.
    fn create(&mut self, index: u64, bytes: usize) -> io::Result<Self::Segment>;
    fn open(&mut self, index: u64) -> io::Result<Self::Segment>;
    fn remove(&mut self, index: u64) -> io::Result<()>;
    /// Starts creating segment `index` (zero-filled, `header` written and synced) on another
    /// thread, so that the append path never waits for a file to be made; `None` when this storage
    /// cannot (the writer then creates it in line when it needs it). With `prefault` false the
    /// thread leaves the pages for [`Segment::prefault`].
    fn create_ahead(
        &self,
        _index: u64,
        _bytes: usize,
        _header: [u8; 64],
        _prefault: bool,
    ) -> Option<std::thread::JoinHandle<io::Result<Self::Segment>>> {
        None
    }
    /// Lets go of a full segment the writer has left (unmapping it, for one).
    fn retire(&self, segment: Self::Segment) {
        drop(segment);
    }
    /// A name for messages: the file path.
    fn name(&self, index: u64) -> String;
}

/// Segments as files `segment-NNNNNN.kjl` in a directory, memory-mapped.
pub struct MmapStorage {
    dir: PathBuf,
}

pub struct MmapSegment {
    /// The mapping's first byte, taken once: every write and the chain hasher's reads go through
    /// it, never through a `&mut` of the whole mapping (which would alias the hasher's reads).
    base: *mut u8,
    map: MmapMut,
    _file: File,
}

impl MmapStorage {
    pub fn open(dir: &Path) -> io::Result<MmapStorage> {
        fs::create_dir_all(dir)?;
        Ok(MmapStorage {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, index: u64) -> PathBuf {
        segment_path(&self.dir, index)
    }
}

/// The file of segment `index` in a journal directory: `segment-NNNNNN.kjl`.
pub fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("segment-{index:06}.kjl"))
}

/// The indices of the segment files in a journal directory, ascending (other files are ignored).
pub fn segment_indices(dir: &Path) -> io::Result<Vec<u64>> {
    let mut indices = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let index = name
            .strip_prefix("segment-")
            .and_then(|rest| rest.strip_suffix(".kjl"))
            .and_then(|digits| digits.parse().ok());
        if let Some(index) = index {
            indices.push(index);
        }
    }
    indices.sort_unstable();
    Ok(indices)
}

impl Storage for MmapStorage {
    type Segment = MmapSegment;

    fn list(&self) -> io::Result<Vec<u64>> {
        segment_indices(&self.dir)
    }

    fn create(&mut self, index: u64, bytes: usize) -> io::Result<MmapSegment> {
        create_segment(&self.path(index), bytes)
    }

    fn create_ahead(
        &self,
        index: u64,
        bytes: usize,
        header: [u8; 64],
        prefault: bool,
    ) -> Option<std::thread::JoinHandle<io::Result<MmapSegment>>> {
        let path = self.path(index);
        let spawned = std::thread::Builder::new()
            .name("kinko-segment".into())
            .spawn(move || {
                let mut segment = create_unfaulted(&path, bytes)?;
                if prefault {
                    segment.prepare_appends(0)?;
                } else {
                    // Left to `Segment::prefault` a few pages at a time: without readahead, each
                    // call faults in its own pages only. With it, most calls found their pages
                    // there and some filled a large folio or a readahead window at once: 8 KiB
                    // calls took 0.35 µs at the median and up to 1.2–18 ms here, against 3.4 µs
                    // and at most 0.13 ms without (29 against 12 ms for the whole 64 MiB).
                    segment.map.advise(memmap2::Advice::Random)?;
                }
                segment.write(0, &header);
                segment.sync(0, header.len())?;
                Ok(segment)
            });
        spawned.ok()
    }

    fn open(&mut self, index: u64) -> io::Result<MmapSegment> {
        open_segment(&self.path(index))
    }

    /// Unmaps a full segment on another thread: tearing down 64 MiB of written pages took the
    /// engine thread 1.1–1.4 ms (measured here), a stall of every command behind it.
    /// If no thread can be started, the closure and the segment in it are dropped here.
    fn retire(&self, segment: MmapSegment) {
        let _ = std::thread::Builder::new()
            .name("kinko-segment".into())
            .spawn(move || drop(segment));
    }

    fn remove(&mut self, index: u64) -> io::Result<()> {
        fs::remove_file(self.path(index))
    }

    fn name(&self, index: u64) -> String {
        self.path(index).display().to_string()
    }
}

/// Creates a zero-filled, pre-faulted segment file of `bytes` bytes.
fn create_segment(path: &Path, bytes: usize) -> io::Result<MmapSegment> {
    let mut segment = create_unfaulted(path, bytes)?;
    segment.prepare_appends(0)?;
    Ok(segment)
}

/// Creates a zero-filled segment file of `bytes` bytes, its blocks allocated and its pages left
/// to fault in; see [`create_segment`] for when to fault them.
fn create_unfaulted(path: &Path, bytes: usize) -> io::Result<MmapSegment> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    allocate(&file, bytes)?;
    file.sync_all()?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    // Its pages are faulted in writable (by the caller) so that appends never take a page fault
    // on the hot path. After the sync, not before it: writing pages back makes them clean, and
    // the first store to a clean page of a shared mapping faults again (the kernel tracks
    // dirtiness), so dirtying before the sync left every append page to fault (and wrote the
    // zeros to disk for nothing).
    // SAFETY: the file was just created by this process, which alone maps and sizes it.
    let map = unsafe { MmapOptions::new().map_mut(&file)? };
    Ok(MmapSegment::new(map, file))
}

/// Gives a new, empty file `bytes` bytes of allocated (unwritten, reading as zero) blocks. A
/// sparse file (`set_len`) would do for correctness, but faulting its holes in read them through
/// the page cache's readahead, which zeroed large folios over and over: a 64 MiB segment took
/// 230–300 ms to fault in on this project's machines (kernel 6.18, ext4) against 21–30 ms
/// allocated, and a writer that reached the end of its segment first stalled for the difference.
/// It also reserves the space: a full disk is an error here, at creation. Filesystems without
/// `fallocate` get the sparse file.
fn allocate(file: &File, bytes: usize) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let len = libc::off_t::try_from(bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment size past off_t"))?;
        // SAFETY: a system call on a descriptor this function borrows for its duration.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {}
            _ => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("cannot allocate a journal segment of {bytes} bytes: {error}"),
                ))
            }
        }
    }
    file.set_len(bytes as u64)
}

fn open_segment(path: &Path) -> io::Result<MmapSegment> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    // SAFETY: the journal directory belongs to this process (one engine per data folder); no
    // one else truncates the file while it is mapped.
    let map = unsafe { MmapOptions::new().populate().map_mut(&file)? };
    Ok(MmapSegment::new(map, file))
}

impl MmapSegment {
    fn new(mut map: MmapMut, file: File) -> MmapSegment {
        MmapSegment {
            base: map.as_mut_ptr(),
            map,
            _file: file,
        }
    }
}

// SAFETY: `base` points into `map`, which the segment owns and which does not move with it; the
// segment is used by one thread at a time (the writer, or the thread that retires it).
unsafe impl Send for MmapSegment {}

/// Makes every page from `from` up to `end` present and writable, so that no store to it faults:
/// on Linux with MADV_POPULATE_WRITE (5.14 on), half the time of touching each page from user space
/// (measured here: 14.7 against 28.5 ms for 64 MiB, the CPU a segment made ahead takes from a
/// machine whose two cores are busy). A kernel without it (EINVAL) gets a store of zero into every
/// page (the unwritten part of a segment is zero). Any other failure, such as a full disk that
/// cannot back the pages, is returned: touching the pages would turn it into a SIGBUS.
fn prefault_writable(map: &mut MmapMut, from: usize, end: usize) -> io::Result<()> {
    const PAGE_BYTES: usize = 4096;
    let end = end.min(map.len());
    let from = from.next_multiple_of(PAGE_BYTES).min(end);
    // In pieces: the kernel holds the process's memory-map lock while it populates, and any
    // thread that maps or unmaps meanwhile (a thread's stack, a large allocation) waits for it.
    #[cfg(target_os = "linux")]
    let from = {
        const PIECE_BYTES: usize = 1 << 20;
        let mut at = from;
        while at < end {
            let piece = PIECE_BYTES.min(end - at);
            match map.advise_range(memmap2::Advice::PopulateWrite, at, piece) {
                Ok(()) => at += piece,
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => break,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot back journal pages at byte {at} (is the disk full?): {e}"),
                    ))
                }
            }
        }
        at
    };
    for offset in (from..end).step_by(PAGE_BYTES) {
        // SAFETY: `offset` is inside the mapping; volatile so the store of a zero onto what the
        // compiler cannot see is already zero is not elided.
        unsafe { std::ptr::write_volatile(map.as_mut_ptr().add(offset), 0) };
    }
    Ok(())
}

impl Segment for MmapSegment {
    fn bytes(&self) -> &[u8] {
        &self.map
    }

    fn write(&mut self, offset: usize, data: &[u8]) {
        assert!(
            offset + data.len() <= self.map.len(),
            "write of {} bytes at {offset} past a segment of {}",
            data.len(),
            self.map.len()
        );
        // Through a raw pointer, not a `&mut` of the whole mapping: the chain hasher thread may be
        // reading the batch's earlier bytes (journal/hasher.rs).
        // SAFETY: the range is inside the mapping (asserted) and does not overlap `data`, which
        // is the writer's own memory.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(offset), data.len()) };
    }

    fn write_streaming(&mut self, offset: usize, data: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        {
            assert!(
                offset + data.len() <= self.map.len(),
                "streaming write past the segment"
            );
            // SAFETY: the range is inside the mapping (asserted), which `data` does not overlap.
            unsafe { stream_copy(self.base.add(offset), data) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.write(offset, data);
    }

    fn sync(&mut self, offset: usize, len: usize) -> io::Result<()> {
        self.map.flush_range(offset, len)
    }

    fn stable_base(&self) -> Option<*const u8> {
        Some(self.base)
    }

    fn prepare_appends(&mut self, offset: usize) -> io::Result<()> {
        // The unwritten rest is zero: faulting it in writable changes nothing but the page state.
        prefault_writable(&mut self.map, offset, usize::MAX)
    }

    fn prefault(&mut self, offset: usize, len: usize) -> io::Result<()> {
        prefault_writable(&mut self.map, offset, offset.saturating_add(len))
    }

    fn release(&mut self, offset: usize, len: usize) {
        let len = len.min(self.map.len().saturating_sub(offset));
        // MADV_DONTNEED on a shared file mapping drops the page-table entries and moves their
        // dirty bits to the page cache, which writes the bytes back as before; a later read
        // faults them in again from the file. A failure leaves the pages mapped: the unmapping
        // then does the work.
        // SAFETY: no reference into the range is alive (the writer has left this segment and the
        // chain hasher finished with it at the last commit), and what is read there afterwards is
        // the file's bytes, the same as before.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len)
        };
    }
}

/// Copies `data` to `target` with non-temporal stores for its aligned middle, then fences them
/// (they are weakly ordered: the fence keeps them before any later store, such as the
/// publication of the length to the hasher or the commit record). A line at a time where the
/// CPU has AVX-512 (a quarter of the stores of the SSE2 copy), 16 bytes at a time otherwise.
#[cfg(target_arch = "x86_64")]
unsafe fn stream_copy(target: *mut u8, data: &[u8]) {
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked on the line above; the caller's contract.
        unsafe { stream_copy_avx512(target, data) }
    } else {
        // SAFETY: x86_64 always has SSE2; the caller's contract.
        unsafe { stream_copy_sse2(target, data) }
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn stream_copy_sse2(target: *mut u8, data: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    let head = target.align_offset(16).min(data.len());
    std::ptr::copy_nonoverlapping(data.as_ptr(), target, head);
    let blocks = (data.len() - head) / 16;
    for i in 0..blocks {
        let at = head + i * 16;
        let block = _mm_loadu_si128(data.as_ptr().add(at) as *const __m128i);
        _mm_stream_si128(target.add(at) as *mut __m128i, block);
    }
    let tail = head + blocks * 16;
    std::ptr::copy_nonoverlapping(data.as_ptr().add(tail), target.add(tail), data.len() - tail);
    _mm_sfence();
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn stream_copy_avx512(target: *mut u8, data: &[u8]) {
    use std::arch::x86_64::{__m512i, _mm512_loadu_si512, _mm512_stream_si512, _mm_sfence};
    let head = target.align_offset(64).min(data.len());
    std::ptr::copy_nonoverlapping(data.as_ptr(), target, head);
    let lines = (data.len() - head) / 64;
    for i in 0..lines {
        let at = head + i * 64;
        let line = _mm512_loadu_si512(data.as_ptr().add(at) as *const __m512i);
        _mm512_stream_si512(target.add(at) as *mut __m512i, line);
    }
    let tail = head + lines * 64;
    std::ptr::copy_nonoverlapping(data.as_ptr().add(tail), target.add(tail), data.len() - tail);
    _mm_sfence();
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_streaming_copies_write_exactly_the_bytes_given() {
        let source: Vec<u8> = (0..5_000u32).map(|i| (i * 7 + 1) as u8).collect();
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        // Every alignment of the target within a line, lengths around the line and the word.
        for offset in 0..64 {
            for len in [0, 1, 15, 16, 17, 63, 64, 65, 127, 200, 4_096, 4_999] {
                let mut copies = vec![("sse2", vec![0xeeu8; 5_200])];
                if avx512 {
                    copies.push(("avx512", vec![0xeeu8; 5_200]));
                }
                for (name, target) in &mut copies {
                    // SAFETY: the target range is inside the vector, which `source` is not.
                    unsafe {
                        let at = target.as_mut_ptr().add(offset);
                        if *name == "sse2" {
                            stream_copy_sse2(at, &source[..len]);
                        } else {
                            stream_copy_avx512(at, &source[..len]);
                        }
                    }
                    assert_eq!(
                        &target[offset..offset + len],
                        &source[..len],
                        "{name} {offset}+{len}"
                    );
                    assert!(
                        target[..offset]
                            .iter()
                            .chain(&target[offset + len..])
                            .all(|&b| b == 0xee),
                        "{name} {offset}+{len} wrote outside its range"
                    );
                }
            }
        }
    }

    /// This thread's page faults so far, minor and major (fields 10 and 12 of
    /// `/proc/thread-self/stat`).
    fn page_faults() -> u64 {
        let stat = fs::read_to_string("/proc/thread-self/stat").expect("proc stat");
        // The command name in field 2 is parenthesised and may hold spaces: count after it.
        let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = after_name.split(' ').collect();
        // minflt and majflt: a first touch of a page not yet in the page cache counts as major
        // even when, as in a new segment, nothing is read from the disk.
        let count = |i: usize| fields[i].parse::<u64>().unwrap();
        count(7) + count(9)
    }

    /// Page faults of this thread while writing `segment` from `from` to its end.
    fn faults_writing(segment: &mut MmapSegment, from: usize) -> u64 {
        let source = vec![7u8; 64 << 10];
        let before = page_faults();
        let end = segment.bytes().len();
        for offset in (from..end).step_by(source.len()) {
            segment.write(offset, &source[..source.len().min(end - offset)]);
        }
        page_faults() - before
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_new_segment_has_its_blocks_allocated_not_a_hole() {
        use std::os::unix::fs::MetadataExt;
        const BYTES: usize = 8 << 20;
        let dir = std::env::temp_dir().join(format!("kinko-storage-alloc-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("segment");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        allocate(&file, BYTES).unwrap();
        let meta = file.metadata().unwrap();
        assert_eq!(meta.len(), BYTES as u64);
        // st_blocks counts 512-byte units; a sparse file of this size has none.
        assert!(
            meta.blocks() * 512 >= BYTES as u64,
            "{} bytes allocated of {BYTES}",
            meta.blocks() * 512
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn appending_into_a_new_segment_takes_no_page_faults() {
        const BYTES: usize = 4 << 20;
        let dir = std::env::temp_dir().join(format!("kinko-storage-faults-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // One per page (1,024) when the pages were left clean by a sync after they were dirtied,
        // or not faulted in writable at all.
        let mut segment = create_segment(&dir.join("inline"), BYTES).unwrap();
        let faults = faults_writing(&mut segment, 0);
        assert!(faults < 16, "{faults} page faults writing {BYTES} bytes");
        // Made ahead on another thread, as the writer does.
        let path = dir.join("ahead");
        let made = std::thread::spawn(move || create_segment(&path, BYTES).unwrap());
        let mut segment = made.join().unwrap();
        let faults = faults_writing(&mut segment, 0);
        assert!(
            faults < 16,
            "made ahead: {faults} page faults writing {BYTES} bytes"
        );
        // Reopened half-written, as recovery does: the rest prepared for appends.
        drop(segment);
        let mut segment = open_segment(&dir.join("ahead")).unwrap();
        segment.sync(0, BYTES).unwrap();
        segment.prepare_appends(BYTES / 2 + 100).unwrap();
        let faults = faults_writing(&mut segment, BYTES / 2 + 4096);
        assert!(
            faults < 16,
            "reopened: {faults} page faults writing its second half"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_segment_made_ahead_without_its_pages_is_ready_once_prefaulted_a_piece_at_a_time() {
        const BYTES: usize = 4 << 20;
        let dir = std::env::temp_dir().join(format!("kinko-storage-idle-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let storage = MmapStorage::open(&dir).unwrap();
        let header = [9u8; 64];
        let made = |index| {
            let handle = storage.create_ahead(index, BYTES, header, false).unwrap();
            handle.join().unwrap().unwrap()
        };
        // Left alone, every page faults on its first write: the thread did not fault them in.
        let mut bare = made(1);
        let faults = faults_writing(&mut bare, 4096);
        assert!(
            faults >= 512,
            "{faults} page faults: faulted in by its thread?"
        );
        let mut segment = made(2);
        for offset in (4096..BYTES).step_by(crate::journal::IDLE_PREFAULT_BYTES) {
            segment
                .prefault(offset, crate::journal::IDLE_PREFAULT_BYTES)
                .unwrap();
        }
        let faults = faults_writing(&mut segment, 4096);
        assert!(faults < 16, "{faults} page faults after the prefault");
        assert_eq!(&segment.bytes()[..64], &header, "the header is kept");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_released_segment_keeps_its_bytes_in_view_and_in_the_file() {
        const BYTES: usize = 2 << 20;
        let dir =
            std::env::temp_dir().join(format!("kinko-storage-release-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("segment");
        let mut segment = create_segment(&path, BYTES).unwrap();
        let pattern: Vec<u8> = (0..BYTES).map(|i| (i * 131 % 251) as u8).collect();
        segment.write(0, &pattern);
        // Released before any sync: the dirty pages must reach the file all the same.
        for offset in (0..BYTES).step_by(crate::journal::IDLE_RELEASE_BYTES) {
            segment.release(offset, crate::journal::IDLE_RELEASE_BYTES);
        }
        assert!(segment.bytes() == &pattern[..], "read back after release");
        drop(segment);
        assert!(
            fs::read(&path).unwrap() == pattern,
            "the file after release"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
