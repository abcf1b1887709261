//! The on-disk format, byte by byte (docs/JOURNAL.md is the prose version of this file).

use serde::{Deserialize, Serialize};

use super::crc;
use crate::exchange::ExchangeConfig;

/// The first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"KINKOJNL";
/// Bumped on any incompatible change of the layout below.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes before the first record of a segment.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Record header: len u32, kind u8, reserved [u8; 3], seq u64, ts_ns u64, payload_len u32.
pub const RECORD_HEADER_BYTES: usize = 28;
/// The CRC32C trailer.
pub const RECORD_TRAILER_BYTES: usize = 4;
/// Records start and end on 8-byte boundaries.
pub const RECORD_ALIGN: usize = 8;
/// The smallest record: header and trailer, padded.
pub const RECORD_BYTES_MIN: usize = 32;
/// Default segment size.
pub const SEGMENT_BYTES_DEFAULT: usize = 64 << 20;
/// A whole batch must fit in one segment with room to spare.
pub const SEGMENT_BYTES_MIN: usize = 1 << 20;
/// A commit record: header, a bincode `Commit` (u64, u64, u32, [u8; 32]: 52 bytes), trailer, padded.
pub const COMMIT_RECORD_BYTES: usize = 88;
/// The hash chain before genesis.
pub const CHAIN_ZERO: [u8; 32] = [0; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// The full configuration; the first record of a journal (seq 0).
    Genesis = 1,
    /// One sequenced `ExchangeCommand`.
    Command = 2,
    /// The `Vec<ExchangeEvent>` that the command with the same seq produced.
    Events = 3,
    /// Closes a batch: the hash chain over every record of the batch.
    Commit = 4,
}

impl RecordKind {
    pub fn from_u8(byte: u8) -> Option<RecordKind> {
        match byte {
            1 => Some(RecordKind::Genesis),
            2 => Some(RecordKind::Command),
            3 => Some(RecordKind::Events),
            4 => Some(RecordKind::Commit),
            _ => None,
        }
    }
}

/// The payload of the genesis record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub config: ExchangeConfig,
}

/// The payload of a commit record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub first_seq: u64,
    pub last_seq: u64,
    /// Records in the batch, not counting this commit.
    pub records: u32,
    /// BLAKE3(previous chain ‖ the bytes of every record of the batch, in order).
    pub chain: [u8; 32],
}

/// bincode 2, "legacy" configuration: little-endian fixed-width integers, so that the layout is
/// easy to read by hand (docs/JOURNAL.md).
pub fn bincode_config(
) -> bincode::config::Configuration<bincode::config::LittleEndian, bincode::config::Fixint> {
    bincode::config::legacy()
}

pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> usize {
    bincode::serde::encode_into_std_write(value, out, bincode_config())
        .expect("encoding into a Vec cannot fail")
}

/// The most a payload's decoding may claim: a length prefix that asks for more (a string, a vector)
/// is an error, not an allocation. Without a limit, bincode allocates what a length prefix says
/// before it reads a byte, and a corrupt or forged one (2^62 bytes) aborted the process instead
/// of failing the read (found by kinko-fuzz). A snapshot of the largest configuration is far below.
pub const DECODE_BYTES_MAX: usize = 1 << 30;

/// [`bincode_config`] with the decoding limit: the same bytes, read with a bound.
fn decode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<DECODE_BYTES_MAX>,
> {
    bincode_config().with_limit::<DECODE_BYTES_MAX>()
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, decode_config()).ok()?;
    (used == bytes.len()).then_some(value)
}

/// The segment header: magic, version, header length, segment index, segment bytes, config hash.
pub fn segment_header(
    index: u64,
    segment_bytes: usize,
    config_hash: &[u8; 32],
) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
    h[16..24].copy_from_slice(&index.to_le_bytes());
    h[24..32].copy_from_slice(&(segment_bytes as u64).to_le_bytes());
    h[32..64].copy_from_slice(config_hash);
    h
}

/// A parsed segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub index: u64,
    pub segment_bytes: u64,
    pub config_hash: [u8; 32],
}

pub fn parse_segment_header(bytes: &[u8]) -> Result<SegmentHeader, String> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(format!(
            "segment shorter than its header ({} bytes)",
            bytes.len()
        ));
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err("bad magic: not a Kinko journal segment".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    if header_len != SEGMENT_HEADER_BYTES {
        return Err(format!("header length {header_len}"));
    }
    Ok(SegmentHeader {
        index: u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
        segment_bytes: u64::from_le_bytes(bytes[24..32].try_into().unwrap()),
        config_hash: bytes[32..64].try_into().unwrap(),
    })
}

/// Appends one record (header, payload written by `payload`, padding, CRC32C) to `out` and
/// returns its length.
pub fn append_record(
    out: &mut Vec<u8>,
    kind: RecordKind,
    seq: u64,
    ts_ns: u64,
    payload: impl FnOnce(&mut Vec<u8>),
) -> usize {
    let start = out.len();
    let len = append_record_unsealed(out, kind, seq, ts_ns, payload);
    seal_record(&mut out[start..start + len]);
    len
}

/// Appends one record as [`append_record`] does but leaves its CRC32C trailer zero, for
/// [`seal_records`] to fill in: the journal writer checksums its records three at a time.
pub fn append_record_unsealed(
    out: &mut Vec<u8>,
    kind: RecordKind,
    seq: u64,
    ts_ns: u64,
    payload: impl FnOnce(&mut Vec<u8>),
) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    payload(out);
    let payload_len = out.len() - start - RECORD_HEADER_BYTES;
    let unpadded = RECORD_HEADER_BYTES + payload_len + RECORD_TRAILER_BYTES;
    let len = unpadded.div_ceil(RECORD_ALIGN) * RECORD_ALIGN;
    out.resize(start + len, 0);
    let header = &mut out[start..start + RECORD_HEADER_BYTES];
    header[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4] = kind as u8;
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16..24].copy_from_slice(&ts_ns.to_le_bytes());
    header[24..28].copy_from_slice(&(payload_len as u32).to_le_bytes());
    len
}

/// Writes the CRC32C trailer of one whole record (its last four bytes).
pub fn seal_record(record: &mut [u8]) {
    let body = record.len() - RECORD_TRAILER_BYTES;
    let crc = crc::crc32c(&record[..body]);
    record[body..].copy_from_slice(&crc.to_le_bytes());
}

/// Writes the CRC32C trailers of three whole records at once: where the CPU has no AVX-512 fold,
/// a record's checksum is a chain of dependent `crc32` instructions, and three chains interleaved
/// keep the unit busy (`crc::crc32c_three`, docs/PERFORMANCE.md).
pub fn seal_records(records: [&mut [u8]; 3]) {
    let [a, b, c] = records;
    let body = |r: &[u8]| r.len() - RECORD_TRAILER_BYTES;
    let crcs = crc::crc32c_three([&a[..body(a)], &b[..body(b)], &c[..body(c)]]);
    for (record, crc) in [a, b, c].into_iter().zip(crcs) {
        let body = body(record);
        record[body..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A record read back from bytes, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub len: usize,
    pub kind: RecordKind,
    pub seq: u64,
    pub ts_ns: u64,
    pub payload: &'a [u8],
    /// All `len` bytes of the record, for the hash chain.
    pub bytes: &'a [u8],
}

/// Why bytes at a position are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Zero length: the end of the written part of a segment.
    End,
    BadLength(u32),
    BadKind(u8),
    BadChecksum {
        stored: u32,
        computed: u32,
    },
    BadPayloadLength(u32),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::End => write!(f, "zero record length"),
            RecordError::BadLength(len) => write!(
                f,
                "record length {len} is not a multiple of {RECORD_ALIGN} from \
                 {RECORD_BYTES_MIN} up to the end of the segment"
            ),
            RecordError::BadKind(kind) => write!(f, "unknown record type {kind}"),
            RecordError::BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch: CRC32C stored {stored:#010x}, computed {computed:#010x} over \
                 the record's bytes"
            ),
            RecordError::BadPayloadLength(len) => {
                write!(f, "payload length {len} does not fit in the record")
            }
        }
    }
}

/// Parses and checks the record at the start of `bytes`.
pub fn parse_record(bytes: &[u8]) -> Result<RecordView<'_>, RecordError> {
    if bytes.len() < RECORD_BYTES_MIN {
        return Err(RecordError::End);
    }
    let len_field = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    if len_field == 0 {
        return Err(RecordError::End);
    }
    let len = len_field as usize;
    if len < RECORD_BYTES_MIN || !len.is_multiple_of(RECORD_ALIGN) || len > bytes.len() {
        return Err(RecordError::BadLength(len_field));
    }
    let record = &bytes[..len];
    let stored = u32::from_le_bytes(record[len - 4..].try_into().unwrap());
    let computed = crc::crc32c(&record[..len - 4]);
    if stored != computed {
        return Err(RecordError::BadChecksum { stored, computed });
    }
    let kind = RecordKind::from_u8(record[4]).ok_or(RecordError::BadKind(record[4]))?;
    let payload_len = u32::from_le_bytes(record[24..28].try_into().unwrap());
    if RECORD_HEADER_BYTES + payload_len as usize + RECORD_TRAILER_BYTES > len {
        return Err(RecordError::BadPayloadLength(payload_len));
    }
    Ok(RecordView {
        len,
        kind,
        seq: u64::from_le_bytes(record[8..16].try_into().unwrap()),
        ts_ns: u64::from_le_bytes(record[16..24].try_into().unwrap()),
        payload: &record[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + payload_len as usize],
        bytes: record,
    })
}

/// Extends the chain over the bytes of one batch.
pub fn chain_next(previous: &[u8; 32], batch_bytes: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(previous);
    hasher.update(batch_bytes);
    *hasher.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_record_is_said_in_words_with_its_numbers() {
        let mut out = Vec::new();
        append_record(&mut out, RecordKind::Command, 7, 9, |o| {
            o.extend_from_slice(b"payload")
        });
        let len = out.len();
        let mut bad = out.clone();
        bad[RECORD_HEADER_BYTES] ^= 1;
        let stored = u32::from_le_bytes(out[len - 4..].try_into().unwrap());
        let error = parse_record(&bad).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "checksum mismatch: CRC32C stored {stored:#010x}, "
            )),
            "{error}"
        );
        let mut bad = out.clone();
        bad[0] = 33;
        let error = parse_record(&bad).unwrap_err().to_string();
        assert!(
            error.starts_with("record length 33 is not a multiple of 8"),
            "{error}"
        );
        assert_eq!(
            RecordError::BadKind(200).to_string(),
            "unknown record type 200"
        );
    }

    #[test]
    fn record_round_trips_and_is_aligned() {
        let mut out = Vec::new();
        let len = append_record(&mut out, RecordKind::Command, 7, 99, |o| {
            o.extend_from_slice(b"hello")
        });
        assert_eq!(len, 40); // 28 + 5 + 4 = 37, padded to 40
        let r = parse_record(&out).unwrap();
        assert_eq!(
            (r.kind, r.seq, r.ts_ns, r.payload),
            (RecordKind::Command, 7, 99, &b"hello"[..])
        );
    }

    #[test]
    fn a_length_prefix_past_the_limit_is_an_error_not_an_allocation() {
        // A string of 2^62 bytes, then a vector of 2^61 u64s: both aborted the process before
        // the limit (kinko-fuzz, target journal, a repaired genesis record).
        let huge = (1u64 << 62).to_le_bytes();
        assert_eq!(decode::<String>(&huge), None);
        assert_eq!(decode::<Vec<u64>>(&(1u64 << 61).to_le_bytes()), None);
        assert_eq!(decode::<Genesis>(&huge), None);
        // Within the limit, what is there still decodes.
        let mut out = Vec::new();
        encode_into(&"kinko".to_string(), &mut out);
        assert_eq!(decode::<String>(&out).as_deref(), Some("kinko"));
    }

    #[test]
    fn sealing_three_records_equals_sealing_each() {
        let mut one = Vec::new();
        let mut three = Vec::new();
        let mut starts = Vec::new();
        for (seq, size) in [(1u64, 5usize), (2, 60), (3, 131)] {
            append_record(&mut one, RecordKind::Events, seq, seq, |o| {
                o.resize(o.len() + size, 7)
            });
            starts.push(three.len());
            append_record_unsealed(&mut three, RecordKind::Events, seq, seq, |o| {
                o.resize(o.len() + size, 7)
            });
        }
        let (first, rest) = three.split_at_mut(starts[1]);
        let (second, third) = rest.split_at_mut(starts[2] - starts[1]);
        seal_records([first, second, third]);
        assert_eq!(three, one);
        assert!(parse_record(&three[starts[2]..]).is_ok());
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut out = Vec::new();
        append_record(&mut out, RecordKind::Events, 1, 2, |o| {
            o.extend_from_slice(&[0xab; 50])
        });
        for byte in 0..out.len() {
            for bit in 0..8 {
                let mut copy = out.clone();
                copy[byte] ^= 1 << bit;
                let parsed = parse_record(&copy);
                assert!(
                    parsed.is_err() || parsed.unwrap().bytes != out.as_slice(),
                    "flip at {byte}:{bit} undetected"
                );
            }
        }
    }
}
