//! A small seeded generator (SplitMix64) so that every workload is a pure function of its seed:
//! the same seed gives the same commands on every machine and every run, with no `rand` crate.

/// SplitMix64 (Steele, Lea, Flood 2014): one add and two multiply-xorshift rounds per draw. Plenty
/// for choosing commands and prices; not for anything that needs unpredictability.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A draw in `0..bound`. The multiply-shift reduction (Lemire) avoids the division of `%`; its
    /// bias is below 2^-40 for the bounds used here, far under anything a benchmark can see.
    #[inline]
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "empty range");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// True with probability `per_mille / 1000`.
    #[inline]
    pub fn chance_per_mille(&mut self, per_mille: u64) -> bool {
        debug_assert!(per_mille <= 1_000, "probability above one: {per_mille}");
        self.below(1_000) < per_mille
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_different_seed_different_stream() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let mut c = SplitMix64::new(8);
        let stream_a: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let stream_b: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let stream_c: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(stream_a, stream_b);
        assert_ne!(stream_a, stream_c);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let draw = rng.below(10);
            assert!(draw < 10, "draw {draw} out of range");
            seen[draw as usize] += 1;
        }
        // Each bucket expects 1_000; 800 is more than six standard deviations below.
        assert!(seen.iter().all(|&n| n > 800), "skewed: {seen:?}");
    }
}
