//! The engine's lookup tables (order id → slot, client order id → slot, order id → reservation):
//! open addressing with linear probing, its memory reserved at start-up for the most entries the
//! engine allows, and only as much of it in use as the entries need.
//!
//! Why not a `HashMap` with that capacity: a map sized for `orders_max` (2^18 by default) spreads a
//! thousand open orders over megabytes, so every lookup is a cache miss, and the journal's
//! streaming evicts what little stays. This table starts at [`SLOTS_MIN`] slots and doubles when it
//! is more than five eighths full, so its entries lie on as few cache lines as their count needs.
//! Doubling never allocates: the slots and the scratch it rehashes through are reserved up front
//! (`Vec::with_capacity`, touched only as they come into use). It costs one pass over the entries,
//! on the engine thread, each time the open orders reach a new high that is a power of two above
//! 1,280; a table never shrinks. Removal shifts the entries behind the removed one back (no
//! tombstones), so a table that has seen any history probes as one freshly filled.
//!
//! Nothing iterates a table into output: [`Table::iter`] serves sorted snapshots and sums.

use std::hash::{Hash, Hasher};

use crate::hash::IdHasher;

/// A key with one value that is never a real key, marking a vacant slot.
pub trait TableKey: Copy + Eq + Hash {
    const VACANT: Self;
}

/// Order ids count up from 1.
impl TableKey for u64 {
    const VACANT: u64 = 0;
}

/// (account, client order id): accounts are numbered below `accounts_max`, never `u32::MAX`.
impl TableKey for (u32, u64) {
    const VACANT: (u32, u64) = (u32::MAX, u64::MAX);
}

/// The fewest slots a table uses: 2,048, a few dozen KiB for the entries here.
pub const SLOTS_MIN: usize = 1 << 11;

/// Load factor past which a table doubles, as a fraction.
const LOAD_NUM: usize = 5;
const LOAD_DEN: usize = 8;

pub struct Table<K: TableKey, V: Copy + Default> {
    /// `slots.len()` is the size in use (a power of two); its capacity is the most ever used.
    slots: Vec<(K, V)>,
    /// The most slots it may use (reserved): a power of two.
    slots_max: usize,
    len: usize,
    /// Where the entries wait while the slots double.
    scratch: Vec<(K, V)>,
}

impl<K: TableKey, V: Copy + Default> Table<K, V> {
    /// A table that holds `len_max` entries without allocating again.
    pub fn new(len_max: usize) -> Table<K, V> {
        let slots_max = slots_for(len_max);
        let mut slots = Vec::with_capacity(slots_max);
        slots.resize(SLOTS_MIN.min(slots_max), (K::VACANT, V::default()));
        Table {
            slots,
            slots_max,
            len: 0,
            scratch: Vec::with_capacity(slots_max * LOAD_NUM / LOAD_DEN + 1),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Slots in use now.
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Slots reserved: the most this table will ever use.
    #[cfg(test)]
    pub fn slots_max(&self) -> usize {
        self.slots_max
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.find(key).map(|i| &self.slots[i].1)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_some()
    }

    /// Inserts or replaces; returns the value replaced.
    ///
    /// # Panics
    /// If the key is the vacant marker, or if the table is full (more entries than it was made
    /// for: the engine refuses an order before that).
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        assert!(key != K::VACANT, "the vacant key cannot be stored");
        if let Some(i) = self.find(&key) {
            return Some(std::mem::replace(&mut self.slots[i].1, value));
        }
        if (self.len + 1) * LOAD_DEN > self.slots.len() * LOAD_NUM
            && self.slots.len() < self.slots_max
        {
            self.double();
        }
        assert!(
            self.len + 1 < self.slots.len(),
            "table full: {} entries in {} slots",
            self.len,
            self.slots.len()
        );
        self.place(key, value);
        self.len += 1;
        None
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let found = self.find(key)?;
        let value = self.slots[found].1;
        let mask = self.slots.len() - 1;
        // Shift back every entry of the run behind the hole whose home is not between the hole
        // and where it sits, so that no probe ever has to step over a vacant slot.
        let mut hole = found;
        let mut i = (found + 1) & mask;
        loop {
            let key = self.slots[i].0;
            if key == K::VACANT {
                break;
            }
            let home = home(&key, mask);
            if i.wrapping_sub(home) & mask >= i.wrapping_sub(hole) & mask {
                self.slots[hole] = self.slots[i];
                hole = i;
            }
            i = (i + 1) & mask;
        }
        self.slots[hole] = (K::VACANT, V::default());
        self.len -= 1;
        Some(value)
    }

    /// The entries, in no meaningful order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots
            .iter()
            .filter(|(k, _)| *k != K::VACANT)
            .map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    fn find(&self, key: &K) -> Option<usize> {
        if *key == K::VACANT {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = home(key, mask);
        loop {
            let k = self.slots[i].0;
            if k == *key {
                return Some(i);
            }
            if k == K::VACANT {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// Puts a key known to be absent in the first vacant slot from its home.
    fn place(&mut self, key: K, value: V) {
        let mask = self.slots.len() - 1;
        let mut i = home(&key, mask);
        while self.slots[i].0 != K::VACANT {
            i = (i + 1) & mask;
        }
        self.slots[i] = (key, value);
    }

    /// Twice the slots, within the reserved capacity: the entries go through the scratch.
    fn double(&mut self) {
        let slots_new = self.slots.len() * 2;
        debug_assert!(slots_new <= self.slots_max);
        self.scratch.clear();
        self.scratch
            .extend(self.slots.iter().filter(|(k, _)| *k != K::VACANT));
        debug_assert_eq!(self.scratch.len(), self.len);
        self.slots.clear();
        self.slots.resize(slots_new, (K::VACANT, V::default()));
        for i in 0..self.scratch.len() {
            let (key, value) = self.scratch[i];
            self.place(key, value);
        }
    }
}

impl<K: TableKey, V: Copy + Default> Extend<(K, V)> for Table<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        for (key, value) in entries {
            self.insert(key, value);
        }
    }
}

/// The slots a table needs to hold `len_max` entries at most five eighths full.
fn slots_for(len_max: usize) -> usize {
    (len_max * LOAD_DEN / LOAD_NUM + 2)
        .next_power_of_two()
        .max(SLOTS_MIN)
}

#[inline]
fn home<K: Hash>(key: &K, mask: usize) -> usize {
    let mut hasher = IdHasher::default();
    key.hash(&mut hasher);
    hasher.finish() as usize & mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// SplitMix64: the tests' own deterministic sequence.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Every entry is found from its home without crossing a vacant slot, and none twice.
    fn check<
        K: TableKey + Ord + std::fmt::Debug,
        V: Copy + Default + PartialEq + std::fmt::Debug,
    >(
        table: &Table<K, V>,
        model: &BTreeMap<K, V>,
    ) {
        assert_eq!(table.len(), model.len());
        assert_eq!(table.iter().count(), model.len());
        for (k, v) in model {
            assert_eq!(table.get(k), Some(v), "key {k:?}");
        }
        let mask = table.slots.len() - 1;
        for (i, (k, _)) in table.slots.iter().enumerate() {
            if *k == K::VACANT {
                continue;
            }
            let mut j = home(k, mask);
            while j != i {
                assert!(
                    table.slots[j].0 != K::VACANT,
                    "{k:?} sits past a vacant slot"
                );
                j = (j + 1) & mask;
            }
        }
    }

    fn absent(model: &BTreeMap<u64, u32>, from: u64) -> u64 {
        (from..).find(|k| !model.contains_key(k)).unwrap()
    }

    /// Random inserts, replacements and removals against a `BTreeMap`, with keys drawn from a
    /// window that slides like order ids do and from a narrow range that collides often.
    fn random_history(seed: u64, len_max: usize, ops: usize) {
        let mut rng = Rng(seed);
        let mut table: Table<u64, u32> = Table::new(len_max);
        let mut model = BTreeMap::new();
        let (capacity, base) = (table.slots.capacity(), table.slots.as_ptr());
        let mut keys: Vec<u64> = Vec::new();
        let mut id_next = 1u64;
        for op in 0..ops {
            let r = rng.below(10);
            if r < 5 && model.len() < len_max {
                let key = if rng.below(4) == 0 {
                    1 + rng.below(3 * len_max as u64)
                } else {
                    id_next += 1;
                    id_next
                };
                let value = rng.next() as u32;
                let replaced = model.insert(key, value);
                assert_eq!(table.insert(key, value), replaced);
                if replaced.is_none() {
                    keys.push(key);
                }
            } else if r < 9 {
                let pick = rng.below(keys.len() as u64 + 1) as usize;
                let key = if pick < keys.len() {
                    keys.swap_remove(pick)
                } else {
                    absent(&model, id_next)
                };
                assert_eq!(table.remove(&key), model.remove(&key));
            } else {
                let key = 1 + rng.below(id_next + 1);
                assert_eq!(table.get(&key), model.get(&key));
                assert_eq!(table.remove(&absent(&model, id_next)), None);
            }
            if op % 97 == 0 {
                check(&table, &model);
            }
        }
        check(&table, &model);
        assert_eq!(table.slots.capacity(), capacity, "the table reallocated");
        assert_eq!(table.slots.as_ptr(), base, "the table moved");
    }

    #[test]
    fn a_random_history_matches_a_btree_map() {
        for seed in 0..12 {
            random_history(seed, 5_000, 40_000);
        }
    }

    #[test]
    fn a_small_table_full_to_its_limit_matches_a_btree_map() {
        // Two thousand slots at most: the load reaches five eighths and the runs wrap around.
        for seed in 100..140 {
            random_history(seed, 1_200, 20_000);
        }
    }

    #[test]
    fn it_doubles_as_it_fills_and_never_past_what_it_reserved() {
        let mut table: Table<u64, u32> = Table::new(100_000);
        assert_eq!(table.slots(), SLOTS_MIN);
        let slots_max = table.slots_max();
        assert!(slots_max * LOAD_NUM / LOAD_DEN >= 100_000);
        for id in 1..=100_000u64 {
            table.insert(id, id as u32);
            assert!(table.len() * LOAD_DEN <= table.slots() * LOAD_NUM);
        }
        assert_eq!(table.slots(), slots_max);
        assert_eq!(table.slots_max(), slots_max);
        for id in (1..=100_000u64).step_by(2) {
            assert_eq!(table.remove(&id), Some(id as u32));
        }
        assert_eq!(table.len(), 50_000);
        assert_eq!(table.get(&2), Some(&2));
        assert_eq!(table.get(&3), None);
        assert_eq!(table.slots(), slots_max, "a table never shrinks");
    }

    #[test]
    fn the_vacant_key_is_never_found_and_cannot_be_stored() {
        let mut table: Table<(u32, u64), u32> = Table::new(10);
        table.insert((1, u64::MAX), 5);
        assert_eq!(table.get(&(u32::MAX, u64::MAX)), None);
        assert_eq!(table.get(&(1, u64::MAX)), Some(&5));
        assert!(std::panic::catch_unwind(move || {
            let mut t: Table<(u32, u64), u32> = Table::new(10);
            t.insert((u32::MAX, u64::MAX), 1);
        })
        .is_err());
    }

    #[test]
    fn a_table_past_what_it_was_made_for_says_so() {
        let result = std::panic::catch_unwind(|| {
            let mut t: Table<u64, u32> = Table::new(1);
            for id in 1..=SLOTS_MIN as u64 {
                t.insert(id, 0);
            }
        });
        let message = result.unwrap_err();
        let text = message
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        assert!(text.starts_with("table full"), "{text}");
    }
}
