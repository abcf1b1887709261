//! The message store of one FIX session, under `<data>/fix/<SenderCompID>/`:
//!
//! * `seqnums` — the next outgoing and the next expected incoming MsgSeqNum, in two fixed-width
//!   text slots of a memory-mapped file, written alternately at every change: a store into the
//!   mapping, no system call on the path of a message. Each slot carries a generation and a
//!   CRC32 of the rest of its line; a crash of the process in the middle of a write tears only the
//!   slot being written, and the other still holds the state before it. On open the valid slot
//!   of the higher generation wins (msync at logout and shutdown for power loss).
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

use memmap2::MmapMut;

use super::codec::{decode, Message, Step};

/// One slot of `seqnums`:
/// `gen=G next_sender=S next_target=T crc=CCCCCCCC\n`, G, S and T in 20 decimal digits, C the
/// CRC32 (IEEE) of the line before ` crc=`, in 8 lowercase hex digits.
const SLOT_BYTES: usize = 4 + 20 + 13 + 20 + 13 + 20 + 5 + 8 + 1;
/// The bytes of a slot covered by its CRC.
const SLOT_CHECKED_BYTES: usize = 4 + 20 + 13 + 20 + 13 + 20;
/// The file of an earlier version: one line, `next_sender=S next_target=T\n`, rewritten in place.
const OLD_LINE_BYTES: usize = 12 + 20 + 13 + 20 + 1;
/// Messages one resend step reads from the file, so that a resend of a long range never holds
/// the whole range in memory.
pub const RESEND_CHUNK_MESSAGES: usize = 256;

/// MsgSeqNum → (offset, length) of a stored message.
type Index = BTreeMap<u64, (u64, u32)>;

pub struct Store {
    dir: PathBuf,
    /// The two slots of `seqnums`, mapped.
    seqnums: MmapMut,
    /// The generation of the newest slot; the next write goes to slot `(generation + 1) % 2`.
    generation: u64,
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
        let path = dir.join("seqnums");
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let (mut generation, next_sender, next_target) = parse_seqnums(&bytes)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        if bytes.len() != 2 * SLOT_BYTES {
            // New, or the one line of an earlier version: replaced whole, so that a crash here
            // leaves either the old file or the new one.
            let temporary = dir.join("seqnums.tmp");
            let mut file = File::create(&temporary)?;
            file.write_all(&encode_slot(generation + 2, next_sender, next_target))?;
            file.write_all(&encode_slot(generation + 1, next_sender, next_target))?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            File::open(&dir)?.sync_all()?;
            generation += 2;
        }
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        // SAFETY: the file is this session's own, opened by its one store and never resized while
        // mapped; nothing else writes it while the server runs.
        let seqnums = unsafe { MmapMut::map_mut(&file)? };
        assert_eq!(seqnums.len(), 2 * SLOT_BYTES, "{}", path.display());
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
            generation,
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
        self.seqnums.flush()
    }

    /// Writes the state into the older slot. Kept as `io::Result` for its callers: a store into
    /// the mapping cannot fail short of the machine losing the page (SIGBUS).
    fn write_seqnums(&mut self) -> io::Result<()> {
        self.generation += 1;
        let slot = encode_slot(self.generation, self.next_sender, self.next_target);
        let at = (self.generation % 2) as usize * SLOT_BYTES;
        self.seqnums[at..at + SLOT_BYTES].copy_from_slice(&slot);
        Ok(())
    }
}

/// One slot, formatted on the stack: no allocation on the path of a message.
fn encode_slot(generation: u64, next_sender: u64, next_target: u64) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        slot[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(b"gen=");
    put(&digits(generation));
    put(b" next_sender=");
    put(&digits(next_sender));
    put(b" next_target=");
    put(&digits(next_target));
    let crc = crc32fast::hash(&slot[..SLOT_CHECKED_BYTES]);
    slot[SLOT_CHECKED_BYTES..SLOT_CHECKED_BYTES + 5].copy_from_slice(b" crc=");
    for (i, b) in slot[SLOT_CHECKED_BYTES + 5..SLOT_BYTES - 1]
        .iter_mut()
        .enumerate()
    {
        *b = b"0123456789abcdef"[(crc >> (28 - 4 * i)) as usize & 0xf];
    }
    slot[SLOT_BYTES - 1] = b'\n';
    slot
}

/// `value` in 20 decimal digits, zero-padded (u64::MAX has 20).
fn digits(mut value: u64) -> [u8; 20] {
    let mut out = [b'0'; 20];
    for b in out.iter_mut().rev() {
        *b = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out
}

/// `(generation, next_sender, next_target)` from the file's bytes: the valid slot of the higher
/// generation, (0, 1, 1) for a session without a file yet (no bytes: the file is only ever
/// written whole, by a rename), the line of an earlier version as generation 0. Anything else is an
/// error, zeros included: the sequence numbers are lost, and starting again from 1 would be a
/// silent reset.
fn parse_seqnums(bytes: &[u8]) -> Result<(u64, u64, u64), String> {
    if bytes.is_empty() {
        return Ok((0, 1, 1));
    }
    if bytes.len() == OLD_LINE_BYTES {
        let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
        let mut parts = text.split_whitespace();
        let sender = parts.next().and_then(|p| p.strip_prefix("next_sender="));
        let target = parts.next().and_then(|p| p.strip_prefix("next_target="));
        return match (sender.map(str::parse), target.map(str::parse)) {
            (Some(Ok(s @ 1..)), Some(Ok(t @ 1..))) => Ok((0, s, t)),
            _ => Err(format!("unreadable sequence numbers: {text:?}")),
        };
    }
    if bytes.len() != 2 * SLOT_BYTES {
        return Err(format!(
            "{} bytes where sequence numbers take {}",
            bytes.len(),
            2 * SLOT_BYTES
        ));
    }
    let best = bytes
        .chunks(SLOT_BYTES)
        .enumerate()
        .filter_map(|(index, slot)| parse_slot(slot).filter(|&(g, ..)| g % 2 == index as u64))
        .max_by_key(|&(generation, ..)| generation);
    best.ok_or_else(|| "neither sequence-number slot is valid".to_string())
}

/// A slot whose CRC and numbers check out (its generation's parity must also match its place:
/// generation G lives in slot G % 2, which the caller checks).
fn parse_slot(slot: &[u8]) -> Option<(u64, u64, u64)> {
    let (checked, tail) = slot.split_at(SLOT_CHECKED_BYTES);
    let crc = std::str::from_utf8(tail.strip_prefix(b" crc=")?.strip_suffix(b"\n")?).ok()?;
    if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(checked) || crc.len() != 8 {
        return None;
    }
    let text = std::str::from_utf8(checked).ok()?;
    let mut parts = text.split(' ');
    let mut number = |prefix: &str| -> Option<u64> {
        let digits = parts.next()?.strip_prefix(prefix)?;
        (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    };
    let generation = number("gen=")?;
    let sender = number("next_sender=")?;
    let target = number("next_target=")?;
    (sender >= 1 && target >= 1).then_some((generation, sender, target))
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

    fn seqnums_file(root: &Path) -> PathBuf {
        root.join("C").join("seqnums")
    }

    #[test]
    fn every_change_is_in_the_file_at_once_in_alternate_slots() {
        let root = temp("slots");
        let mut store = Store::open(&root, "C").unwrap();
        let read = || std::fs::read(seqnums_file(&root)).unwrap();
        let (_, sender, target) = parse_seqnums(&read()).unwrap();
        assert_eq!((sender, target), (1, 1));
        store.sent(1, b"admin", false).unwrap();
        let first = read();
        store.incr_next_target().unwrap();
        let second = read();
        let (g1, s1, t1) = parse_seqnums(&first).unwrap();
        let (g2, s2, t2) = parse_seqnums(&second).unwrap();
        assert_eq!(
            (s1, t1, s2, t2),
            (2, 1, 2, 2),
            "read back without a sync or a close"
        );
        assert_eq!(g2, g1 + 1);
        let changed: Vec<usize> = (0..2)
            .filter(|&i| {
                first[i * SLOT_BYTES..][..SLOT_BYTES] != second[i * SLOT_BYTES..][..SLOT_BYTES]
            })
            .collect();
        assert_eq!(
            changed,
            vec![(g2 % 2) as usize],
            "one slot written, the other kept"
        );
        let text = String::from_utf8(second).unwrap();
        assert!(
            text.contains("next_sender=00000000000000000002 next_target=00000000000000000002"),
            "{text}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_torn_slot_falls_back_to_the_state_before_it() {
        let root = temp("torn-slot");
        {
            let mut store = Store::open(&root, "C").unwrap();
            for seq in 1..=5 {
                store.sent(seq, b"admin", false).unwrap();
            }
            store.incr_next_target().unwrap();
        }
        let path = seqnums_file(&root);
        let mut bytes = std::fs::read(&path).unwrap();
        let (generation, ..) = parse_seqnums(&bytes).unwrap();
        // The newest slot half-written: its tail still the older contents, so its CRC fails.
        let newest = (generation % 2) as usize * SLOT_BYTES;
        bytes[newest + 40] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let store = Store::open(&root, "C").unwrap();
        assert_eq!(
            (store.next_sender(), store.next_target()),
            (6, 1),
            "the slot before the last write: next_target's increment lost, nothing invented"
        );
        drop(store);
        // Both slots damaged: refused, with the file named, rather than restarted from 1.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 0x01;
        bytes[SLOT_BYTES + 10] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let error = Store::open(&root, "C").err().expect("refused").to_string();
        assert!(
            error.contains("seqnums") && error.contains("neither"),
            "{error}"
        );
        std::fs::write(&path, vec![0u8; 2 * SLOT_BYTES]).unwrap();
        let error = Store::open(&root, "C")
            .err()
            .expect("zeros refused")
            .to_string();
        assert!(error.contains("neither"), "{error}");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        assert!(
            Store::open(&root, "C").is_err(),
            "zeros of another size refused"
        );
        // A valid slot in the place of the other generation's parity is not taken.
        let mut bytes = encode_slot(9, 40, 30).to_vec();
        bytes.extend_from_slice(&encode_slot(7, 20, 10));
        std::fs::write(&path, &bytes).unwrap();
        let store = Store::open(&root, "C").unwrap();
        assert_eq!((store.next_sender(), store.next_target()), (20, 10));
        drop(store);
        std::fs::write(&path, b"next_sender=7").unwrap();
        let error = Store::open(&root, "C").err().expect("refused").to_string();
        assert!(error.contains("13 bytes"), "{error}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_line_of_an_earlier_version_is_converted() {
        let root = temp("old-line");
        std::fs::create_dir_all(root.join("C")).unwrap();
        let line = format!("next_sender={:020} next_target={:020}\n", 41, 17);
        assert_eq!(line.len(), OLD_LINE_BYTES);
        std::fs::write(seqnums_file(&root), line).unwrap();
        let store = Store::open(&root, "C").unwrap();
        assert_eq!((store.next_sender(), store.next_target()), (41, 17));
        drop(store);
        assert_eq!(
            std::fs::metadata(seqnums_file(&root)).unwrap().len(),
            2 * SLOT_BYTES as u64
        );
        assert!(!root.join("C").join("seqnums.tmp").exists());
        let store = Store::open(&root, "C").unwrap();
        assert_eq!((store.next_sender(), store.next_target()), (41, 17));
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
