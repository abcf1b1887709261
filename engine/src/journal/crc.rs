//! CRC32C (Castagnoli, the checksum every record ends with), as the `crc32c` crate computes it,
//! fast for records of a hundred bytes or so.
//!
//! The `crc32` instruction takes eight bytes at a time in a chain of dependent steps (three cycles
//! each), and one issues per cycle on Intel but only about one per two on AMD Zen 4: a 120-byte
//! record costs 15 dependent steps whichever way they are interleaved. Where the CPU has AVX-512
//! with carry-less multiplication (`vpclmulqdq`), a record is folded 64 bytes at a time instead:
//! CRC32C is linear, so the remainder of a 64-byte block moved 512 bits on is the XOR of two
//! carry-less products by constants (`x^(512±32) mod P`), and a record of 120 bytes takes one
//! fold, one reduction of the four 128-bit lanes to one, and two `crc32` steps for the last 16
//! bytes: a third of the time on Zen 4 (docs/PERFORMANCE.md). Elsewhere the three-way `crc32`
//! version, or the crate.

/// The CRC32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if fold::available() {
        // SAFETY: the CPU has every feature `fold::crc32c` enables, checked on the line above.
        return unsafe { fold::crc32c(bytes) };
    }
    crc32c::crc32c(bytes)
}

/// The CRC32C of three byte strings (the journal writer seals its records three at a time).
pub fn crc32c_three(parts: [&[u8]; 3]) -> [u32; 3] {
    #[cfg(target_arch = "x86_64")]
    {
        if fold::available() {
            // SAFETY: as in `crc32c`.
            return unsafe { fold::crc32c_three(parts) };
        }
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE4.2, checked on the line above.
            return unsafe { crc32c_three_sse42(parts) };
        }
    }
    parts.map(crc32c::crc32c)
}

/// Three `crc32` chains interleaved, so that one issues every cycle where the CPU can.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_three_sse42(parts: [&[u8]; 3]) -> [u32; 3] {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let word = |bytes: &[u8], at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let mut crcs = [!0u64; 3];
    // In lockstep while all three have whole words; each alone after that.
    let lockstep = parts.iter().map(|p| p.len() / 8).min().unwrap_or(0) * 8;
    for at in (0..lockstep).step_by(8) {
        crcs[0] = _mm_crc32_u64(crcs[0], word(parts[0], at));
        crcs[1] = _mm_crc32_u64(crcs[1], word(parts[1], at));
        crcs[2] = _mm_crc32_u64(crcs[2], word(parts[2], at));
    }
    for (crc, part) in crcs.iter_mut().zip(parts) {
        let words = part[lockstep..].chunks_exact(8);
        let tail = words.remainder();
        for w in words {
            *crc = _mm_crc32_u64(*crc, word(w, 0));
        }
        for &byte in tail {
            *crc = _mm_crc32_u8(*crc as u32, byte) as u64;
        }
    }
    crcs.map(|crc| !(crc as u32))
}

#[cfg(target_arch = "x86_64")]
mod fold {
    use std::arch::x86_64::*;

    /// CRC32C's polynomial without its `x^32` term, most significant bit first.
    const POLY: u32 = 0x1EDC_6F41;

    /// `x^bits mod POLY`, bit-reflected and shifted left by one: the form a fold constant takes
    /// for a reflected CRC (`pclmulqdq` of two reflected 64-bit values is the reflected 127-bit
    /// product, one bit short).
    const fn constant(bits: u32) -> u64 {
        let mut r: u32 = 1;
        let mut i = 0;
        while i < bits {
            r = (r << 1) ^ if r & 0x8000_0000 != 0 { POLY } else { 0 };
            i += 1;
        }
        (r.reverse_bits() as u64) << 1
    }

    /// The pair that moves a 128-bit lane `bits` further on: its low (earlier) 64 bits by
    /// `bits + 32`, its high 64 by `bits - 32`.
    const fn pair(bits: u32) -> [u64; 2] {
        [constant(bits + 32), constant(bits - 32)]
    }

    const BY_512: [u64; 2] = pair(512);
    const BY_384: [u64; 2] = pair(384);
    const BY_256: [u64; 2] = pair(256);
    const BY_128: [u64; 2] = pair(128);

    /// Bytes 64..68 are the CRC's initial value (all ones); a 64-byte load at `64 - pad` puts it
    /// at byte `pad`, over a record's first four bytes.
    static INITIAL: [u8; 128] = {
        let mut bytes = [0u8; 128];
        let mut i = 64;
        while i < 68 {
            bytes[i] = 0xff;
            i += 1;
        }
        bytes
    };

    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("vpclmulqdq")
            && is_x86_feature_detected!("sse4.2")
    }

    #[target_feature(enable = "avx512f,avx512bw,vpclmulqdq,sse4.2")]
    pub unsafe fn crc32c_three(parts: [&[u8]; 3]) -> [u32; 3] {
        // Three independent folds: the core overlaps them on its own.
        [crc32c(parts[0]), crc32c(parts[1]), crc32c(parts[2])]
    }

    #[target_feature(enable = "avx512f,avx512bw,vpclmulqdq,sse4.2")]
    pub unsafe fn crc32c(bytes: &[u8]) -> u32 {
        let len = bytes.len();
        // The first block holds `len % 64` bytes after `pad` zeros (leading zeros leave a CRC
        // started from zero unchanged, and the initial value is XORed into the first four bytes
        // instead); the initial value must fit inside it.
        let head = len % 64;
        if len < 4 || (1..4).contains(&head) {
            return crc32c::crc32c(bytes);
        }
        let pad = (64 - head) % 64;
        let p = bytes.as_ptr();
        let first = if (p as usize) % 4096 >= pad {
            // SAFETY (of the read): the `pad` bytes before `p` are masked off, so never read
            // (AVX-512 masked loads suppress faults too, but a suppressed fault costs an assist:
            // the address stays on `p`'s page so that there is none).
            _mm512_maskz_loadu_epi8(!0u64 << pad, p.wrapping_sub(pad) as *const i8)
        } else {
            // Near the start of a page: the block put together on the stack.
            let mut block = [0u8; 128];
            let low = _mm512_maskz_loadu_epi8(!0u64 >> pad, p as *const i8);
            _mm512_storeu_si512(block.as_mut_ptr().add(pad) as *mut _, low);
            _mm512_loadu_si512(block.as_ptr() as *const _)
        };
        let initial = _mm512_loadu_si512(INITIAL.as_ptr().add(64 - pad) as *const _);
        let by_512 = _mm512_broadcast_i32x4(_mm_set_epi64x(BY_512[1] as i64, BY_512[0] as i64));
        let mut x = _mm512_xor_si512(first, initial);
        let mut at = 64 - pad;
        while at < len {
            // `at + 64 <= len`: everything after the first block is whole blocks.
            let next = _mm512_loadu_si512(p.add(at) as *const _);
            let low = _mm512_clmulepi64_epi128(x, by_512, 0x00);
            let high = _mm512_clmulepi64_epi128(x, by_512, 0x11);
            x = _mm512_ternarylogic_epi64(low, high, next, 0x96);
            at += 64;
        }
        // Lanes 0, 1 and 2 moved onto lane 3 (whose constants are unused), then the last 16
        // bytes' CRC by two `crc32` steps.
        let lanes = _mm512_set_epi64(
            0,
            0,
            BY_128[1] as i64,
            BY_128[0] as i64,
            BY_256[1] as i64,
            BY_256[0] as i64,
            BY_384[1] as i64,
            BY_384[0] as i64,
        );
        let moved = _mm512_xor_si512(
            _mm512_clmulepi64_epi128(x, lanes, 0x00),
            _mm512_clmulepi64_epi128(x, lanes, 0x11),
        );
        let last = _mm_xor_si128(
            _mm_xor_si128(
                _mm512_castsi512_si128(moved),
                _mm512_extracti32x4_epi32(moved, 1),
            ),
            _mm_xor_si128(
                _mm512_extracti32x4_epi32(moved, 2),
                _mm512_extracti32x4_epi32(x, 3),
            ),
        );
        let crc = _mm_crc32_u64(0, _mm_cvtsi128_si64(last) as u64);
        let crc = _mm_crc32_u64(crc, _mm_extract_epi64(last, 1) as u64);
        !(crc as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that are not a short cycle, so that a wrong fold shows.
    fn bytes(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn every_length_and_alignment_equals_the_crate() {
        let data = bytes(1_000);
        for len in 0..=700 {
            for offset in [0, 1, 4, 7, 60, 63, 64, 200] {
                let part = &data[offset..offset + len];
                assert_eq!(
                    crc32c(part),
                    crc32c::crc32c(part),
                    "length {len} at {offset}"
                );
            }
        }
    }

    #[test]
    fn records_starting_near_a_page_boundary_equal_the_crate() {
        // The first block is put together on the stack when the bytes before a record's start
        // lie on another page; every distance from the boundary up to a whole block.
        let data = bytes(3 * 4096);
        let boundary = data.as_ptr().align_offset(4096) + 4096;
        for from in boundary - 8..boundary + 66 {
            for len in [4, 28, 60, 64, 68, 100, 124, 127, 191, 260] {
                let part = &data[from..from + len];
                assert_eq!(
                    crc32c(part),
                    crc32c::crc32c(part),
                    "length {len}, {from} - {boundary}"
                );
            }
        }
    }

    #[test]
    fn the_fold_itself_equals_the_crate_where_the_cpu_has_it() {
        // On a CPU with AVX-512 and vpclmulqdq the tests above go through the fold; this one
        // calls it directly, so that a dispatch that never chose it would not hide it.
        #[cfg(target_arch = "x86_64")]
        if fold::available() {
            let data = bytes(300);
            for len in [28, 100, 124, 300] {
                // SAFETY: `available` said the CPU has the features.
                let folded = unsafe { fold::crc32c(&data[..len]) };
                assert_eq!(folded, crc32c::crc32c(&data[..len]), "length {len}");
            }
            return;
        }
        eprintln!("no AVX-512 with vpclmulqdq here: the crate's CRC (or three-way crc32) is used");
    }

    #[test]
    fn three_checksums_at_once_equal_one_at_a_time() {
        // Lengths around the word size and unequal, so that every path (lockstep, one alone,
        // trailing bytes) is taken.
        let bytes = bytes(300);
        for (la, lb, lc) in [
            (0, 0, 0),
            (1, 8, 9),
            (84, 156, 28),
            (300, 7, 64),
            (15, 300, 16),
        ] {
            let parts = [&bytes[..la], &bytes[3..3 + lb.min(297)], &bytes[300 - lc..]];
            let expected = parts.map(crc32c::crc32c);
            assert_eq!(crc32c_three(parts), expected, "lengths {la} {lb} {lc}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("sse4.2") {
                // SAFETY: the CPU has SSE4.2.
                let interleaved = unsafe { crc32c_three_sse42(parts) };
                assert_eq!(
                    interleaved, expected,
                    "three-way crc32, lengths {la} {lb} {lc}"
                );
            }
        }
    }
}
