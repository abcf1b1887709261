//! A journal as a stream of checked batches, for `verify`: a reader thread walks the segments with
//! the engine's own streaming reader (`JournalScan`: every CRC32C, the segment headers, the hash
//! chain, the sequence), copies each committed batch into a recycled buffer and hands it over. The
//! checks of the bytes run on the second core beside re-execution, and memory holds a segment
//! mapping and a few batches, never the whole journal.
//!
//! A batch's payloads are copied into one buffer, in journal order: the consumer then reads them
//! front to back, which the other core's caches and the prefetcher serve far better than one
//! allocation per record.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use engine::journal::format::{Commit, Genesis, RecordKind};
use engine::journal::{BatchRef, JournalEnd, JournalError, JournalScan, RecordRef, Repair};

use crate::error::ReplayError;
use crate::source::{journal_dir, ReadOnlyStorage};
use crate::walk::Records;

/// Batches read ahead of the consumer. A few are enough to keep both cores busy; each holds one
/// batch's records (a batch fits in a segment).
pub const BATCHES_AHEAD_MAX: usize = 8;

/// What the reader learned before the first batch.
#[derive(Clone, Debug)]
pub struct JournalStart {
    pub genesis: Genesis,
    /// BLAKE3 of the genesis payload: the same in every segment header.
    pub config_hash: [u8; 32],
    /// Every segment file, in index order.
    pub segments: Vec<String>,
}

/// A committed batch as the stream hands it over.
#[derive(Clone, Debug)]
pub struct Batch {
    pub commit: Commit,
    /// Where its commit record is.
    pub segment: u64,
    pub offset: usize,
    records: Vec<Slot>,
    /// Every record's payload, in order.
    payloads: Vec<u8>,
}

/// A record of a [`Batch`], its payload in the batch's buffer.
#[derive(Clone, Copy, Debug)]
struct Slot {
    kind: RecordKind,
    seq: u64,
    ts_ns: u64,
    segment: u64,
    offset: usize,
    payload_start: usize,
    payload_len: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            commit: Commit {
                first_seq: 0,
                last_seq: 0,
                records: 0,
                chain: [0; 32],
            },
            segment: 0,
            offset: 0,
            records: Vec::new(),
            payloads: Vec::new(),
        }
    }

    /// Copies `batch` in, reusing the buffers: the steady state allocates nothing.
    fn fill(&mut self, batch: &BatchRef<'_>) {
        self.commit = batch.commit;
        self.segment = batch.segment;
        self.offset = batch.offset;
        self.records.clear();
        self.payloads.clear();
        for record in batch.records() {
            self.records.push(Slot {
                kind: record.kind,
                seq: record.seq,
                ts_ns: record.ts_ns,
                segment: record.segment,
                offset: record.offset,
                payload_start: self.payloads.len(),
                payload_len: record.payload.len(),
            });
            self.payloads.extend_from_slice(record.payload);
        }
    }
}

impl Records for Batch {
    fn count(&self) -> usize {
        self.records.len()
    }

    fn record(&self, i: usize) -> RecordRef<'_> {
        let slot = &self.records[i];
        let payload = slot.payload_start..slot.payload_start + slot.payload_len;
        RecordRef {
            kind: slot.kind,
            seq: slot.seq,
            ts_ns: slot.ts_ns,
            payload: &self.payloads[payload],
            segment: slot.segment,
            offset: slot.offset,
        }
    }
}

enum Message {
    Start(Box<JournalStart>),
    Batch(Batch),
    End(JournalEnd),
    Failed(JournalError),
}

/// The committed batches of a journal, in order, read and checked on another thread.
pub struct JournalStream {
    start: JournalStart,
    received: Option<Receiver<Message>>,
    recycle: Sender<Batch>,
    /// The batch last handed out, returned to the reader on the next call.
    current: Option<Batch>,
    end: Option<JournalEnd>,
    reader: Option<JoinHandle<()>>,
}

impl JournalStream {
    /// Starts reading the journal of `dir` (a data folder or a folder of segments) and waits for
    /// its genesis batch.
    pub fn open(dir: &Path) -> Result<JournalStream, ReplayError> {
        let segments_dir = journal_dir(dir)?;
        let (sender, received) = mpsc::sync_channel(BATCHES_AHEAD_MAX);
        let (recycle, recycled) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("kinko-replay-reader".into())
            .spawn(move || read(&segments_dir, &sender, &recycled))
            .map_err(|e| ReplayError::Journal(JournalError::Io(e.to_string())))?;
        let start = match received.recv() {
            Ok(Message::Start(start)) => *start,
            Ok(Message::Failed(JournalError::Empty)) => {
                return Err(ReplayError::NoJournal(dir.display().to_string()))
            }
            Ok(Message::Failed(e)) => return Err(ReplayError::Journal(e)),
            Ok(_) | Err(_) => return Err(ReplayError::Journal(reader_stopped())),
        };
        Ok(JournalStream {
            start,
            received: Some(received),
            recycle,
            current: None,
            end: None,
            reader: Some(reader),
        })
    }

    pub fn start(&self) -> &JournalStart {
        &self.start
    }

    /// The next committed batch after genesis, or `None` after the last one (then
    /// [`JournalStream::end`] says how the journal ends). An error is the reader's first finding:
    /// every batch before it was handed out.
    pub fn next_batch(&mut self) -> Result<Option<&Batch>, JournalError> {
        if let Some(done) = self.current.take() {
            // The reader may have stopped already; then the buffer is simply dropped.
            let _ = self.recycle.send(done);
        }
        if self.end.is_some() {
            return Ok(None);
        }
        let received = self.received.as_ref().expect("present until dropped");
        match received.recv() {
            Ok(Message::Batch(batch)) => Ok(Some(self.current.insert(batch))),
            Ok(Message::End(end)) => {
                self.end = Some(end);
                Ok(None)
            }
            Ok(Message::Failed(e)) => Err(e),
            Ok(Message::Start(_)) | Err(_) => Err(reader_stopped()),
        }
    }

    /// How the journal ends, once [`JournalStream::next_batch`] has returned `None`.
    pub fn end(&self) -> Option<&JournalEnd> {
        self.end.as_ref()
    }
}

impl Drop for JournalStream {
    fn drop(&mut self) {
        // Without a receiver the reader's next send fails and it stops.
        self.received = None;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn reader_stopped() -> JournalError {
    JournalError::Io("the journal reader thread stopped".into())
}

/// The reader thread: the engine's scan, each batch copied into a buffer the consumer gave back
/// (or a new one when none has come back: at most `BATCHES_AHEAD_MAX` + 2 exist, those queued and
/// one on each side), until the end, the first problem, or a consumer that stopped listening.
fn read(dir: &Path, sender: &SyncSender<Message>, recycled: &Receiver<Batch>) {
    let mut storage = ReadOnlyStorage::new(dir);
    let mut scan = match JournalScan::open(&mut storage, Repair::ReadOnly) {
        Ok(scan) => scan,
        Err(e) => {
            let _ = sender.send(Message::Failed(e));
            return;
        }
    };
    let start = JournalStart {
        genesis: scan.genesis().clone(),
        config_hash: scan.config_hash(),
        segments: scan.segments().to_vec(),
    };
    if sender.send(Message::Start(Box::new(start))).is_err() {
        return;
    }
    loop {
        let batch = match scan.next_batch() {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(e) => {
                let _ = sender.send(Message::Failed(e));
                return;
            }
        };
        let mut buffer = match recycled.try_recv() {
            Ok(buffer) => buffer,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Batch::new(),
        };
        buffer.fill(&batch);
        if sender.send(Message::Batch(buffer)).is_err() {
            return;
        }
    }
    let _ = sender.send(match scan.finish() {
        Ok(end) => Message::End(end),
        Err(e) => Message::Failed(e),
    });
}
