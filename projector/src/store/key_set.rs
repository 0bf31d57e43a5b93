//! A set of 64-bit keys in sorted arrays: what a rebuild remembers of the event ids it folded
//! ([`crate::store::event_ids::RebuildIds`]).
//!
//! A hash set of `u64` costs 9 bytes per bucket, and its bucket count is the next power of two
//! above 8/7 of its length: 19 MiB for a million keys, half of it empty; that was an eighth of a
//! million-event rebuild's peak memory (docs/benchmarks.md). Sorted arrays cost 8 bytes per key.
//! Keys arrive a batch at a time and are asked for a batch at a time, so both work on sorted
//! runs: a batch's keys are sorted and merged into a small array of recent keys, which is merged
//! into the large one when it has grown to an eighth of it (each key is moved a few times in
//! all); a batch's questions are sorted and answered by walking both arrays forward.

/// Sorted keys (repeats allowed: two ids may share a key).
#[derive(Debug, Default)]
pub struct KeySet {
    /// Most keys, sorted.
    merged: Vec<u64>,
    /// The keys of the latest batches, sorted; merged into `merged` when large.
    recent: Vec<u64>,
}

/// Recent keys kept apart at least up to this many (merging them sooner would move the large
/// array for every batch).
const RECENT_MIN: usize = 1 << 16;

impl KeySet {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.merged.len() + self.recent.len()
    }

    /// The set of `keys` (in any order), held in their own array.
    pub fn from_keys(mut keys: Vec<u64>) -> Self {
        keys.sort_unstable();
        Self {
            merged: keys,
            recent: Vec::new(),
        }
    }

    /// Makes room for `more` keys in one allocation (a rebuild that knows how many events it
    /// will fold does not grow the array by doubling, nor hold two copies while it grows).
    pub fn reserve(&mut self, more: usize) {
        self.merged.reserve_exact(more);
    }

    /// Adds `keys`.
    pub fn extend(&mut self, keys: impl IntoIterator<Item = u64>) {
        let mut batch: Vec<u64> = keys.into_iter().collect();
        batch.sort_unstable();
        merge_into(&mut self.recent, &batch);
        if self.recent.len() > RECENT_MIN.max(self.merged.len() / 8) {
            let recent = std::mem::take(&mut self.recent);
            merge_into(&mut self.merged, &recent);
            // Its capacity is kept for the next batches.
            self.recent = recent;
            self.recent.clear();
        }
    }

    /// The items whose key is in the set, in the order of their keys.
    pub fn known<T>(&self, mut items: Vec<(u64, T)>) -> Vec<T> {
        items.sort_unstable_by_key(|(key, _)| *key);
        let (mut in_merged, mut in_recent) = (Cursor::default(), Cursor::default());
        items
            .into_iter()
            .filter(|(key, _)| {
                in_merged.has(&self.merged, *key) || in_recent.has(&self.recent, *key)
            })
            .map(|(_, item)| item)
            .collect()
    }
}

/// A position in a sorted array, moved forward by ever larger steps (questions come in order).
#[derive(Default)]
struct Cursor(usize);

impl Cursor {
    /// Whether `sorted` holds `key`, a key no smaller than the one asked before.
    fn has(&mut self, sorted: &[u64], key: u64) -> bool {
        let rest = &sorted[self.0..];
        let mut step = 1;
        while step <= rest.len() && rest[step - 1] < key {
            step *= 2;
        }
        let from = step / 2;
        let to = step.min(rest.len());
        self.0 += from + rest[from..to].partition_point(|k| *k < key);
        sorted.get(self.0) == Some(&key)
    }
}

/// Merges the sorted `from` into the sorted `into`, in place, from the back.
fn merge_into(into: &mut Vec<u64>, from: &[u64]) {
    let (mut i, mut j) = (into.len(), from.len());
    into.resize(i + j, 0);
    let mut k = into.len();
    while j > 0 {
        k -= 1;
        if i > 0 && into[i - 1] > from[j - 1] {
            i -= 1;
            into[k] = into[i];
        } else {
            j -= 1;
            into[k] = from[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn answers_as_a_set_does(
            batches in prop::collection::vec(prop::collection::vec(0u64..5_000, 0..300), 0..40),
            asked in prop::collection::vec(0u64..5_000, 0..500),
        ) {
            let mut set = KeySet::default();
            let mut expected = BTreeSet::new();
            for batch in &batches {
                set.extend(batch.iter().copied());
                expected.extend(batch.iter().copied());
                let items: Vec<(u64, u64)> = asked.iter().map(|k| (*k, *k)).collect();
                let mut known = set.known(items);
                known.sort_unstable();
                let mut wanted: Vec<u64> =
                    asked.iter().copied().filter(|k| expected.contains(k)).collect();
                wanted.sort_unstable();
                prop_assert_eq!(known, wanted);
            }
        }
    }

    #[test]
    fn large_sets_merge_their_recent_keys_and_still_find_every_key() {
        let mut set = KeySet::default();
        set.reserve(300_000);
        let key = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for batch in 0..30u64 {
            set.extend((batch * 10_000..(batch + 1) * 10_000).map(key));
        }
        assert_eq!(set.len(), 300_000);
        assert!(
            set.merged.len() > set.recent.len(),
            "recent keys were merged"
        );
        let asked: Vec<(u64, u64)> = (0..600_000u64).map(|i| (key(i), i)).collect();
        let known = set.known(asked.clone());
        assert_eq!(known.len(), 300_000);
        assert!(known.iter().all(|i| *i < 300_000));
        // The same keys given at once, as a resumed rebuild reloads them.
        let reloaded = KeySet::from_keys((0..300_000u64).rev().map(key).collect());
        assert_eq!(reloaded.known(asked), known);
    }
}
