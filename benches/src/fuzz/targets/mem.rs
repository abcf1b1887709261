//! Journal segments in memory behind the engine's disk seam (`engine::journal::storage`), so that
//! the fuzzer feeds the real reader and the real recovery millions of journals without a file.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use engine::journal::storage::{Segment, Storage};

type Segments = Arc<Mutex<BTreeMap<u64, Vec<u8>>>>;

/// Segments by index; an opened segment is a copy whose writes go to the store too.
#[derive(Clone, Default)]
pub struct MemStorage {
    segments: Segments,
}

pub struct MemSegment {
    index: u64,
    bytes: Vec<u8>,
    store: Segments,
}

impl MemStorage {
    pub fn new(segments: impl IntoIterator<Item = Vec<u8>>) -> MemStorage {
        let map = segments
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| (i as u64, bytes))
            .collect();
        MemStorage {
            segments: Arc::new(Mutex::new(map)),
        }
    }

    /// Every segment's bytes, in index order.
    pub fn segments(&self) -> Vec<Vec<u8>> {
        self.segments
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }
}

impl Segment for MemSegment {
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn write(&mut self, offset: usize, data: &[u8]) {
        self.bytes[offset..offset + data.len()].copy_from_slice(data);
        let mut store = self.store.lock().expect("not poisoned");
        if let Some(stored) = store.get_mut(&self.index) {
            stored[offset..offset + data.len()].copy_from_slice(data);
        }
    }

    fn sync(&mut self, _offset: usize, _len: usize) -> io::Result<()> {
        Ok(())
    }
}

impl Storage for MemStorage {
    type Segment = MemSegment;

    fn list(&self) -> io::Result<Vec<u64>> {
        Ok(self
            .segments
            .lock()
            .expect("not poisoned")
            .keys()
            .copied()
            .collect())
    }

    fn create(&mut self, index: u64, bytes: usize) -> io::Result<MemSegment> {
        let zeros = vec![0u8; bytes];
        self.segments
            .lock()
            .expect("not poisoned")
            .insert(index, zeros.clone());
        Ok(MemSegment {
            index,
            bytes: zeros,
            store: self.segments.clone(),
        })
    }

    fn open(&mut self, index: u64) -> io::Result<MemSegment> {
        let bytes = self
            .segments
            .lock()
            .expect("not poisoned")
            .get(&index)
            .cloned();
        let bytes = bytes.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no segment"))?;
        Ok(MemSegment {
            index,
            bytes,
            store: self.segments.clone(),
        })
    }

    fn remove(&mut self, index: u64) -> io::Result<()> {
        self.segments.lock().expect("not poisoned").remove(&index);
        Ok(())
    }

    fn name(&self, index: u64) -> String {
        format!("mem-segment-{index}")
    }
}
