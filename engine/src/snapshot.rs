//! Snapshot files: the whole exchange state at a sequence number, written atomically (temporary
//! file, fsync, rename, fsync of the directory) and checked by its state hash when read back.
//!
//! Layout: magic `KINKOSNP` (8 bytes), format version u32, reserved u32, seq u64, state hash
//! (32 bytes, BLAKE3 of the payload), payload length u64, then the payload: the bincode encoding of
//! [`ExchangeSnapshot`]. All integers little-endian.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::exchange::ExchangeSnapshot;
use crate::journal::format::{decode, encode_into};

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"KINKOSNP";
pub const SNAPSHOT_VERSION: u32 = 2;
const HEADER_BYTES: usize = 64;
/// Snapshots kept on disk; older ones are removed after a new one is written.
pub const SNAPSHOTS_KEPT: usize = 3;

/// The canonical encoding of a state and its hash.
pub fn encode(snapshot: &ExchangeSnapshot) -> (Vec<u8>, [u8; 32]) {
    let mut payload = Vec::new();
    encode_into(snapshot, &mut payload);
    let hash = *blake3::hash(&payload).as_bytes();
    (payload, hash)
}

pub fn state_hash(snapshot: &ExchangeSnapshot) -> [u8; 32] {
    encode(snapshot).1
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_name(seq: u64) -> String {
    format!("snapshot-{seq:020}.ksn")
}

/// Writes a snapshot taken after `seq` and returns its path and state hash.
pub fn write(dir: &Path, seq: u64, snapshot: &ExchangeSnapshot) -> io::Result<(PathBuf, [u8; 32])> {
    fs::create_dir_all(dir)?;
    let (payload, hash) = encode(snapshot);
    let mut header = [0u8; HEADER_BYTES];
    header[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&seq.to_le_bytes());
    header[24..56].copy_from_slice(&hash);
    header[56..64].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let path = dir.join(file_name(seq));
    let tmp = dir.join(format!("{}.tmp", file_name(seq)));
    {
        let mut file = File::create(&tmp)?;
        file.write_all(&header)?;
        file.write_all(&payload)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    prune(dir)?;
    Ok((path, hash))
}

fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    if !dir.exists() {
        return Ok(found);
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let seq = name
            .strip_prefix("snapshot-")
            .and_then(|rest| rest.strip_suffix(".ksn"))
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(seq) = seq {
            found.push((seq, path));
        }
    }
    found.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found)
}

fn prune(dir: &Path) -> io::Result<()> {
    for (_, path) in list(dir)?.into_iter().skip(SNAPSHOTS_KEPT) {
        fs::remove_file(path)?;
    }
    Ok(())
}

pub struct Loaded {
    pub seq: u64,
    pub snapshot: ExchangeSnapshot,
    pub hash: [u8; 32],
    pub path: PathBuf,
}

/// Reads one snapshot file and checks it.
pub fn read(path: &Path) -> Result<Loaded, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < HEADER_BYTES || bytes[0..8] != SNAPSHOT_MAGIC {
        return Err("not a Kinko snapshot".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != SNAPSHOT_VERSION {
        return Err(format!("snapshot version {version}"));
    }
    if bytes[12..16] != [0; 4] {
        return Err("reserved header bytes are not zero".into());
    }
    let seq = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    // The state hash covers the payload only: the seq is checked against the file's name, or a
    // flipped bit there would have recovery skip (or re-run) journaled commands.
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("snapshot-"))
        .and_then(|n| n.strip_suffix(".ksn"))
        .and_then(|digits| digits.parse::<u64>().ok());
    if named != Some(seq) {
        return Err(format!(
            "the header says seq {seq}, the file name {named:?}"
        ));
    }
    let hash: [u8; 32] = bytes[24..56].try_into().unwrap();
    let len = u64::from_le_bytes(bytes[56..64].try_into().unwrap()) as usize;
    let payload = bytes
        .get(HEADER_BYTES..)
        .filter(|p| p.len() == len)
        .ok_or("truncated snapshot")?;
    if *blake3::hash(payload).as_bytes() != hash {
        return Err("state hash does not match the payload".into());
    }
    let snapshot = decode(payload).ok_or("payload does not decode")?;
    Ok(Loaded {
        seq,
        snapshot,
        hash,
        path: path.to_path_buf(),
    })
}

/// The newest valid snapshot at or before `seq_max`; invalid ones are reported in `warnings` and
/// skipped.
pub fn load_newest(
    dir: &Path,
    seq_max: u64,
    warnings: &mut Vec<String>,
) -> io::Result<Option<Loaded>> {
    for (seq, path) in list(dir)? {
        if seq > seq_max {
            warnings.push(format!(
                "snapshot {} is past the journal's end (seq {seq_max}); ignored",
                path.display()
            ));
            continue;
        }
        match read(&path) {
            Ok(loaded) => return Ok(Some(loaded)),
            Err(e) => warnings.push(format!(
                "snapshot {} is invalid ({e}); trying an older one",
                path.display()
            )),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(name: &str) -> (PathBuf, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("kinko-snapshot-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let exchange = crate::Exchange::new(crate::defaults::config()).expect("default config");
        let (path, _) = write(&dir, 12, &exchange.snapshot()).expect("written");
        (dir, path)
    }

    fn flipped(path: &Path, offset: usize) -> Result<Loaded, String> {
        let mut bytes = fs::read(path).expect("read");
        bytes[offset] ^= 1;
        fs::write(path, &bytes).expect("write");
        read(path)
    }

    /// Found by kinko-sim, seed 27: the state hash covers the payload only, so a flipped bit in
    /// the header's seq was accepted and recovery skipped journaled commands.
    #[test]
    fn a_header_seq_that_disagrees_with_the_file_name_is_refused() {
        let (dir, path) = written("seq");
        assert_eq!(read(&path).expect("valid").seq, 12);
        let error = flipped(&path, 16).err().expect("refused");
        assert!(error.contains("seq 13"), "{error}");
        fs::remove_dir_all(dir).expect("cleaned");
    }

    #[test]
    fn reserved_header_bytes_must_be_zero() {
        let (dir, path) = written("reserved");
        let error = flipped(&path, 13).err().expect("refused");
        assert!(error.contains("reserved"), "{error}");
        fs::remove_dir_all(dir).expect("cleaned");
    }
}
