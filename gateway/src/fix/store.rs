//! The message store of one FIX session, under `<data>/fix/<SenderCompID>/`:
//!
//! * `seqnums` — the next outgoing and the next expected incoming MsgSeqNum, one fixed-width line
//!   overwritten in place at every change (a single small write: a crash of the process cannot
//!   tear it; fsync at logout and shutdown for power loss).
//! * `messages` — every outgoing application message, appended exactly as sent (each one is its own
//!   frame, with BodyLength and CheckSum). On open the file is scanned with the FIX decoder; a torn
//!   tail is cut. Administrative messages are not kept: a resend gap-fills them.
//!
//! Like QuickFIX's FileStore. A Logon with ResetSeqNumFlag=Y empties both.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::codec::{decode, Message, Step};

/// `next_sender=NNNNNNNNNNNNNNNNNNNN next_target=NNNNNNNNNNNNNNNNNNNN\n`
const SEQNUMS_LINE_BYTES: usize = 12 + 20 + 13 + 20 + 1;
/// Messages one resend step reads from the file, so that a resend of a long range never holds
/// the whole range in memory.
pub const RESEND_CHUNK_MESSAGES: usize = 256;

/// MsgSeqNum → (offset, length) of a stored message.
type Index = BTreeMap<u64, (u64, u32)>;

pub struct Store {
    dir: PathBuf,
    seqnums: File,
    messages: File,
    messages_bytes: u64,
    index: Index,
    next_sender: u64,
    next_target: u64,
}

/// The directory name of a session: the SenderCompID, with anything but `[A-Za-z0-9_-]`
/// hex-escaped so that no CompID can leave the store folder.
pub fn dir_name(comp_id: &str) -> String {
    let mut name = String::new();
    for b in comp_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name
}

/// The inverse of [`dir_name`], for finding the sessions of earlier runs.
pub fn comp_id_of(dir_name: &str) -> Option<String> {
    let mut out = Vec::new();
    let bytes = dir_name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = dir_name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Store {
    /// Opens (or creates) the store of `comp_id` under `root`.
    pub fn open(root: &Path, comp_id: &str) -> io::Result<Store> {
        let dir = root.join(dir_name(comp_id));
        std::fs::create_dir_all(&dir)?;
        let mut seqnums = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("seqnums"))?;
        let mut text = String::new();
        seqnums.read_to_string(&mut text)?;
        let (next_sender, next_target) = parse_seqnums(&text).unwrap_or((1, 1));
        let mut messages = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(dir.join("messages"))?;
        let (index, valid_bytes) = scan(&mut messages)?;
        if valid_bytes < messages.metadata()?.len() {
            tracing::warn!(
                "fix store {}: cutting a torn tail after byte {valid_bytes}",
                dir.display()
            );
            messages.set_len(valid_bytes)?;
        }
        // A crash between appending a message and writing `seqnums` leaves the file ahead.
        let stored_next = index.keys().next_back().map_or(1, |last| last + 1);
        let mut store = Store {
            dir,
            seqnums,
            messages,
            messages_bytes: valid_bytes,
            index,
            next_sender: next_sender.max(stored_next),
            next_target,
        };
        store.write_seqnums()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn next_sender(&self) -> u64 {
        self.next_sender
    }

    pub fn next_target(&self) -> u64 {
        self.next_target
    }

    pub fn set_next_target(&mut self, seq: u64) -> io::Result<()> {
        assert!(seq >= 1, "sequence numbers start at 1");
        self.next_target = seq;
        self.write_seqnums()
    }

    pub fn incr_next_target(&mut self) -> io::Result<()> {
        self.set_next_target(self.next_target + 1)
    }

    /// Records a message sent with MsgSeqNum `seq`; application messages are kept for resends.
    pub fn sent(&mut self, seq: u64, bytes: &[u8], application: bool) -> io::Result<()> {
        assert_eq!(seq, self.next_sender, "messages are stored in sequence");
        if application {
            self.messages.write_all(bytes)?;
            self.index
                .insert(seq, (self.messages_bytes, bytes.len() as u32));
            self.messages_bytes += bytes.len() as u64;
        }
        self.next_sender = seq + 1;
        self.write_seqnums()
    }

    /// Stored application messages with `begin <= seq <= end`, at most [`RESEND_CHUNK_MESSAGES`].
    pub fn stored(&self, begin: u64, end: u64) -> io::Result<Vec<(u64, Message)>> {
        let mut out = Vec::new();
        if begin > end {
            return Ok(out);
        }
        for (&seq, &(offset, length)) in self.index.range(begin..=end).take(RESEND_CHUNK_MESSAGES) {
            let mut bytes = vec![0; length as usize];
            self.messages.read_exact_at(&mut bytes, offset)?;
            match decode(&bytes) {
                Ok(Step::Message { message, .. }) => out.push((seq, message)),
                other => {
                    return Err(io::Error::other(format!(
                        "stored message {seq} does not decode: {other:?}"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Both sequence numbers back to 1 and no stored messages (ResetSeqNumFlag=Y).
    pub fn reset(&mut self) -> io::Result<()> {
        self.messages.set_len(0)?;
        self.messages_bytes = 0;
        self.index.clear();
        self.next_sender = 1;
        self.next_target = 1;
        self.write_seqnums()
    }

    /// Makes everything so far survive a power loss.
    pub fn sync(&mut self) -> io::Result<()> {
        self.messages.sync_data()?;
        self.seqnums.sync_data()
    }

    fn write_seqnums(&mut self) -> io::Result<()> {
        let line = format!(
            "next_sender={:020} next_target={:020}\n",
            self.next_sender, self.next_target
        );
        debug_assert_eq!(line.len(), SEQNUMS_LINE_BYTES);
        self.seqnums.write_all_at(line.as_bytes(), 0)
    }
}

fn parse_seqnums(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split_whitespace();
    let sender = parts.next()?.strip_prefix("next_sender=")?.parse().ok()?;
    let target = parts.next()?.strip_prefix("next_target=")?.parse().ok()?;
    (sender >= 1 && target >= 1).then_some((sender, target))
}

/// Indexes the messages file; returns the index and the length of its valid prefix.
fn scan(file: &mut File) -> io::Result<(Index, u64)> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut index = BTreeMap::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let Ok(Step::Message { consumed, message }) = decode(&bytes[at..]) else {
            break;
        };
        let Some(seq) = message.seq_num() else {
            break;
        };
        index.insert(seq, (at as u64, consumed as u32));
        at += consumed;
    }
    Ok((index, at as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fix::codec::message;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kinko-fix-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn report(seq: u64) -> Vec<u8> {
        message(&[(35, "8"), (34, &seq.to_string()), (49, "KINKO"), (56, "C")])
    }

    #[test]
    fn survives_reopen_and_cuts_a_torn_tail() {
        let root = temp("reopen");
        {
            let mut store = Store::open(&root, "C").unwrap();
            store.sent(1, b"admin", false).unwrap();
            store.sent(2, &report(2), true).unwrap();
            store.sent(3, &report(3), true).unwrap();
            store.incr_next_target().unwrap();
        }
        // A torn append: half a message at the end.
        let path = root.join("C").join("messages");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&report(4)[..20]).unwrap();
        let store = Store::open(&root, "C").unwrap();
        assert_eq!((store.next_sender(), store.next_target()), (4, 2));
        let stored = store.stored(1, 10).unwrap();
        assert_eq!(stored.iter().map(|s| s.0).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            2 * report(2).len() as u64
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn reset_empties_the_store() {
        let root = temp("reset");
        let mut store = Store::open(&root, "C").unwrap();
        store.sent(1, &report(1), true).unwrap();
        store.reset().unwrap();
        assert_eq!((store.next_sender(), store.next_target()), (1, 1));
        assert!(store.stored(1, 10).unwrap().is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn comp_ids_cannot_escape_the_folder() {
        assert_eq!(dir_name("demo-alice"), "demo-alice");
        assert_eq!(dir_name("../x"), "%2E%2E%2Fx");
        assert_eq!(dir_name(".hidden"), "%2Ehidden");
        for id in ["demo-alice", "../x", "a b/c", ".hidden"] {
            assert_eq!(comp_id_of(&dir_name(id)).as_deref(), Some(id));
        }
    }
}
