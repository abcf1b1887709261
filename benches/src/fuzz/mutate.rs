//! The mutator: stacked random edits of an input, deterministic from a seed. The edits are the
//! classic ones of AFL and libFuzzer's mutators, without their coverage feedback: bit flips, byte
//! sets and arithmetic, inserts, deletes, duplications, splices from another input, boundary
//! numbers (as text where the input has digits, as little-endian integers elsewhere) and tokens
//! of the target's format.

use crate::rng::SplitMix64;

/// Numbers at the edges of the integer and decimal types a decoder converts into.
pub const BOUNDARY_TEXT: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "00",
    "0.0",
    "1e9",
    "1e308",
    "NaN",
    "inf",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "79228162514264337593543950335",
    "79228162514264337593543950336",
    "0.0000000000000000000000000001",
    "0.00000000000000000000000000001",
    "99999999999999999999999999999999999999",
    "1.5",
    "0.001",
];

/// Little-endian integers at the edges of u8..u64 and i8..i64.
const BOUNDARY_INTS: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// Edits per input: at most this many, fewer more often.
const EDITS_MAX_LOG2: u64 = 3;

pub struct Mutator<'d> {
    rng: SplitMix64,
    dictionary: &'d [&'d [u8]],
}

impl<'d> Mutator<'d> {
    pub fn new(seed: u64, dictionary: &'d [&'d [u8]]) -> Mutator<'d> {
        Mutator {
            rng: SplitMix64::new(seed),
            dictionary,
        }
    }

    pub fn below(&mut self, bound: usize) -> usize {
        self.rng.below(bound.max(1) as u64) as usize
    }

    /// Applies 1, 2, 4 or 8 edits to `input` (`other` is the splice partner), then cuts it to
    /// `bytes_max`.
    pub fn mutate(&mut self, input: &mut Vec<u8>, other: &[u8], bytes_max: usize) {
        let edits = 1usize << self.rng.below(EDITS_MAX_LOG2 + 1);
        for _ in 0..edits {
            self.edit(input, other);
        }
        input.truncate(bytes_max);
    }

    fn edit(&mut self, input: &mut Vec<u8>, other: &[u8]) {
        if input.is_empty() {
            input.push(self.rng.next_u64() as u8);
            return;
        }
        let len = input.len();
        let at = self.below(len);
        match self.rng.below(12) {
            0 => input[at] ^= 1 << self.rng.below(8),
            1 => input[at] = self.rng.next_u64() as u8,
            2 => {
                input[at] = input[at]
                    .wrapping_add(self.rng.below(33) as u8)
                    .wrapping_sub(16)
            }
            3 => {
                let count = 1 + self.below(4);
                for _ in 0..count {
                    input.insert(at, self.rng.next_u64() as u8);
                }
            }
            4 => {
                let count = (1 + self.below(16)).min(len - at);
                input.drain(at..at + count);
            }
            5 => {
                // Duplicate a range somewhere else: repeated fields, repeated records.
                let count = (1 + self.below(64)).min(len - at);
                let copy = input[at..at + count].to_vec();
                let to = self.below(input.len() + 1);
                input.splice(to..to, copy);
            }
            6 => self.splice(input, other, at),
            7 => self.boundary_text(input, at),
            8 => self.boundary_int(input, at),
            9 | 10 if !self.dictionary.is_empty() => {
                let token = self.dictionary[self.below(self.dictionary.len())];
                if self.rng.chance_per_mille(500) {
                    input.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(len);
                    input.splice(at..end, token.iter().copied());
                }
            }
            _ => input.truncate(at.max(1)),
        }
    }

    /// Replaces a range of `input` with a range of `other` (the same position more often than
    /// not, so that two valid inputs cross over at a field boundary).
    fn splice(&mut self, input: &mut Vec<u8>, other: &[u8], at: usize) {
        if other.is_empty() {
            return;
        }
        let from = if self.rng.chance_per_mille(500) && at < other.len() {
            at
        } else {
            self.below(other.len())
        };
        let count = (1 + self.below(256)).min(other.len() - from);
        let end = (at + self.below(count + 1)).min(input.len());
        input.splice(at..end, other[from..from + count].iter().copied());
    }

    /// Replaces the digit run around `at` (or inserts at `at`) with a boundary number as text.
    fn boundary_text(&mut self, input: &mut Vec<u8>, at: usize) {
        let number = BOUNDARY_TEXT[self.below(BOUNDARY_TEXT.len())].as_bytes();
        let is_digit = |b: &u8| b.is_ascii_digit() || *b == b'.' || *b == b'-';
        if !is_digit(&input[at]) {
            input.splice(at..at, number.iter().copied());
            return;
        }
        let start = input[..at]
            .iter()
            .rposition(|b| !is_digit(b))
            .map_or(0, |p| p + 1);
        let end = input[at..]
            .iter()
            .position(|b| !is_digit(b))
            .map_or(input.len(), |p| at + p);
        input.splice(start..end, number.iter().copied());
    }

    /// Overwrites 1, 2, 4 or 8 bytes at `at` with a boundary integer, little-endian.
    fn boundary_int(&mut self, input: &mut [u8], at: usize) {
        let value = BOUNDARY_INTS[self.below(BOUNDARY_INTS.len())];
        let value = if self.rng.chance_per_mille(250) {
            value.wrapping_neg()
        } else {
            value
        };
        let width = (1usize << self.rng.below(4)).min(input.len() - at);
        input[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_mutations() {
        let run = |seed| {
            let mut m = Mutator::new(seed, &[b"8=FIX.4.4"]);
            (0..200)
                .map(|_| {
                    let mut input = b"35=D|11=42|44=15000000|".to_vec();
                    m.mutate(&mut input, b"other input 123", 64);
                    input
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn mutations_respect_the_length_bound_and_change_the_input() {
        let mut m = Mutator::new(7, &[]);
        let mut changed = 0;
        for _ in 0..1_000 {
            let mut input = vec![b'7'; 40];
            m.mutate(&mut input, &[0xff; 300], 48);
            assert!(input.len() <= 48, "{} bytes", input.len());
            changed += usize::from(input != vec![b'7'; 40]);
        }
        assert!(changed > 900, "only {changed} of 1000 inputs changed");
    }
}
