//! `snapshot` and `snapshot-burst`: the snapshot reader (`engine::snapshot::decode_file`, what
//! recovery reads from `snapshots/`) fed damaged files.
//!
//! `snapshot` checks: nothing panics; a file that is accepted holds a state whose encoding is the
//! payload itself (the encoding is canonical, so the state hash names one state). Its repair
//! restores the header (magic, version, seq of the file's name) and recomputes the length and the
//! state hash, so that mutated payloads reach the decoder.
//!
//! `snapshot-burst` holds the format to its guarantee: the payload is covered by its BLAKE3 hash,
//! so a valid file with up to four consecutive bytes changed is refused, or read as the very same
//! sequence number and state.

use engine::snapshot::{decode_file, encode, file_bytes, HEADER_BYTES};

use super::class;
use super::journal::{fixture, Burst};

pub fn seeds() -> Vec<Vec<u8>> {
    let snapshots = &fixture().snapshots;
    let (seq_named, _) = snapshots.last().expect("snapshots");
    // The first state (accounts only), a middle one (resting orders, a stop) and the last, each in
    // a file of the name `run` reads.
    [0, snapshots.len() / 2, snapshots.len() - 1]
        .iter()
        .map(|&i| file_bytes(*seq_named, &snapshots[i].1).0)
        .collect()
}

/// Inputs are read as the file of the seed snapshot's name: its header must say the same seq.
pub fn run(bytes: &[u8]) -> u64 {
    let seq_named = fixture().snapshots.last().expect("snapshots").0;
    match decode_file(bytes, seq_named) {
        Ok((seq, snapshot, hash)) => {
            let (payload, again) = encode(&snapshot);
            let read = &bytes[HEADER_BYTES..];
            if payload != read {
                let at = payload.iter().zip(read).position(|(a, b)| a != b);
                let at = at.unwrap_or(payload.len().min(read.len()));
                let around = |b: &[u8]| b[at.saturating_sub(8)..(at + 24).min(b.len())].to_vec();
                panic!(
                    "an accepted snapshot's state encodes to other bytes: from payload byte {at}, \
                     read {:?}, encoded {:?}",
                    around(read),
                    around(&payload)
                );
            }
            assert_eq!(again, hash);
            1 + class(seq) % 16
        }
        Err(e) => 100 + super::fnv(e.split(' ').take(2).collect::<String>().as_bytes()) % 16,
    }
}

/// Restores the header (magic, version, the seq of the file's name), and recomputes the payload
/// length and the state hash.
// `&mut Vec` is the signature of every target's repair (`Target::repair`); this one happens to
// change bytes only in place.
#[allow(clippy::ptr_arg)]
pub fn repair(bytes: &mut Vec<u8>) {
    if bytes.len() < HEADER_BYTES {
        return;
    }
    let (seq, state) = fixture().snapshots.last().expect("snapshots");
    let reference = file_bytes(*seq, state).0;
    bytes[..24].copy_from_slice(&reference[..24]);
    let len = (bytes.len() - HEADER_BYTES) as u64;
    bytes[56..64].copy_from_slice(&len.to_le_bytes());
    let hash = *blake3::hash(&bytes[HEADER_BYTES..]).as_bytes();
    bytes[24..56].copy_from_slice(&hash);
}

pub fn burst_seeds() -> Vec<Vec<u8>> {
    [0u32, 12, 16, 30, 60, 100, 500]
        .iter()
        .map(|offset| {
            let mut input = offset.to_le_bytes().to_vec();
            input.push(0x80);
            input
        })
        .collect()
}

/// Input: an offset and up to four masks, as for `journal-burst`, into the last seed snapshot.
pub fn burst_run(input: &[u8]) -> u64 {
    let (seq, state) = fixture().snapshots.last().expect("snapshots");
    let original = file_bytes(*seq, state).0;
    let Some(burst) = Burst::parse(input, original.len()) else {
        return 0;
    };
    let mut bytes = original.clone();
    for (i, mask) in burst.masks.iter().enumerate() {
        if let Some(byte) = bytes.get_mut(burst.offset + i) {
            *byte ^= mask;
        }
    }
    match decode_file(&bytes, *seq) {
        Err(_) => 1,
        Ok((seq_read, state_read, _)) => {
            assert_eq!(
                seq_read, *seq,
                "a burst at {burst:?} changed the snapshot's seq"
            );
            assert!(
                state_read == *state,
                "a burst at {burst:?} changed the state"
            );
            2
        }
    }
}
