//! A small, fast, deterministic hasher for integer keys (order ids, account and client ids).
//! The engine's tables ([`crate::table`]) are used for lookups only: nothing iterates them into
//! output, so their order never reaches an event.

use std::hash::Hasher;

#[derive(Default, Clone, Copy)]
pub struct IdHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.hash = (self.hash.rotate_left(5) ^ i).wrapping_mul(SEED);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Fold the high bits down: a table picks its slot from the low bits.
        self.hash ^ (self.hash >> 29)
    }
}
