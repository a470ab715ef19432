//! A delta's ordered list: skip lists partitioned by keys sampled from the run.
//!
//! One skip list over every key of a delta makes each scan's seek a search from the top of a
//! tall tower: a dozen levels and ~18 key comparisons at a few thousand keys, each level a
//! dependent load. The keys a delta receives are spread like the run's (they are the keys
//! created since the run was built), so the list is split at keys sampled from the run, every
//! [`PART_KEYS`]th: a seek finds its partition with integer compares in a small sorted array
//! ([`Fences`]) and searches a skip list of a few keys. Walks cross into the next partition
//! when one runs out, skipping partitions that never held a key through an occupancy bitmap.
//!
//! A workload that creates keys in one place (appending at the end of the key space, say)
//! fills one partition: it is then an ordinary skip list, no worse than an unpartitioned one.

use std::iter::Fuse;

use crossbeam_epoch::Guard;
use crossbeam_skiplist::base::{Entry, Range, SkipList};

use super::fences::Fences;
use super::merge::Item;
use super::run::RunEntry;
use crate::raw::Chain;
use crate::store::{copy_key, KeyRangeRef, MapKey};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Ordering};

/// Run keys per partition: at the rebuild threshold (a delta of `1 / DELTA_FRACTION` of the
/// run) a partition holds about `PART_KEYS / DELTA_FRACTION` keys, a skip list a few levels
/// high.
pub(super) const PART_KEYS: usize = 256;
/// At most this many partitions (each an empty skip list of ~512 bytes): past ~1M run keys,
/// partitions grow instead.
const MAX_PARTS: usize = 4096;

type List = SkipList<MapKey, Arc<Chain>>;

/// The partitioned list: see the module documentation.
pub(crate) struct Parts {
    /// Partition `i` holds the keys `k` with `bounds.count_below(k, true) == i`: those at or
    /// above the `i`th bound (for `i > 0`) and below the next.
    bounds: Fences,
    lists: Box<[List]>,
    /// A bit per partition, set once the partition received a key (never cleared: a walk
    /// that meets a set bit over an emptied list only searches an empty list).
    ///
    /// | bit | meaning |
    /// |---|---|
    /// | `0` | the partition never held a key (inserted before this load: the insert sets the bit before the placer publishes its count, which a walk loads first) |
    /// | `1` | the partition may hold keys |
    occupied: Box<[AtomicU64]>,
    /// Entries inserted minus entries removed (approximate while writers run, like
    /// crossbeam's own count).
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `n` | about `n` keys are in the lists |
    len: AtomicUsize,
}

impl Parts {
    /// A list split at `bounds` (sorted, unique), as sampled by [`sample`].
    pub(crate) fn new(bounds: Vec<MapKey>) -> Self {
        let parts = bounds.len() + 1;
        let collector = crossbeam_epoch::default_collector();
        Self {
            bounds: Fences::new(bounds),
            lists: (0..parts).map(|_| List::new(collector.clone())).collect(),
            occupied: (0..parts.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            len: AtomicUsize::new(0),
        }
    }

    /// The partition `key` belongs to.
    fn part_of(&self, key: &[u8]) -> usize {
        self.bounds.count_below(key, true)
    }

    /// Adds `key` with `chain`, replacing the key's previous entry.
    pub(crate) fn insert(&self, key: &[u8], chain: Arc<Chain>, guard: &Guard) {
        let i = self.part_of(key);
        let list = &self.lists[i];
        let before = list.len();
        list.insert(MapKey::from_slice(key), chain, guard)
            .release(guard);
        if list.len() > before {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        // Release: not needed for the protocol (a walk that must see this key loads the
        // delta's count, which the placer lowers with Release after this), but cheap, and a
        // walk that sees the bit then sees the key.
        self.occupied[i / 64].fetch_or(1 << (i % 64), Ordering::Release);
    }

    /// Removes `key`'s entry if it holds `chain`; returns whether it did.
    pub(crate) fn remove_chain(&self, key: &[u8], chain: &Chain, guard: &Guard) -> bool {
        let removed = match self.lists[self.part_of(key)].get(key, guard) {
            Some(e) if std::ptr::eq(Arc::as_ptr(e.value()), chain) => e.remove(),
            _ => false,
        };
        if removed {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// About how many keys the lists hold.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Every entry, in key order.
    pub(crate) fn entries(&self) -> Vec<RunEntry> {
        let guard = crossbeam_epoch::pin();
        self.lists
            .iter()
            .flat_map(|l| l.iter(&guard))
            .map(|e| (copy_key(e.key()), Arc::clone(e.value())))
            .collect()
    }

    /// The entries in `range`, in order from either end, while `guard` is pinned.
    pub(crate) fn range<'g, 'r>(
        &'g self,
        range: KeyRangeRef<'r>,
        guard: &'g Guard,
    ) -> PartsIter<'g, 'r> {
        let first = match range.0 {
            std::ops::Bound::Included(k) | std::ops::Bound::Excluded(k) => self.part_of(k),
            std::ops::Bound::Unbounded => 0,
        };
        let last = match range.1 {
            std::ops::Bound::Included(k) | std::ops::Bound::Excluded(k) => self.part_of(k),
            std::ops::Bound::Unbounded => self.lists.len() - 1,
        };
        // The seek starts at the first partition's head: start loading it (a partition's
        // skip list is a few lines, seldom all in cache).
        crate::raw::prefetch_lines(std::slice::from_ref(&self.lists[first]));
        PartsIter {
            parts: self,
            range,
            guard,
            lo: first,
            hi: (last + 1).max(first),
            front: None,
            back: None,
        }
    }

    fn is_occupied(&self, i: usize) -> bool {
        self.occupied[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }

    /// The first occupied partition in `from..to`, or `to`.
    fn first_occupied(&self, from: usize, to: usize) -> usize {
        let mut i = from;
        while i < to {
            let word = self.occupied[i / 64].load(Ordering::Acquire) >> (i % 64);
            if word != 0 {
                return (i + word.trailing_zeros() as usize).min(to);
            }
            i = (i / 64 + 1) * 64;
        }
        to
    }

    /// One past the last occupied partition in `from..to`, or `from`.
    fn end_of_occupied(&self, from: usize, to: usize) -> usize {
        (from..to)
            .rev()
            .find(|&i| self.is_occupied(i))
            .map_or(from, |i| i + 1)
    }

    fn walk<'g, 'r>(&'g self, i: usize, range: KeyRangeRef<'r>, guard: &'g Guard) -> Walk<'g, 'r> {
        self.lists[i].range(range, guard).fuse()
    }
}

/// Run keys sampled as partition bounds for a delta created after `keys` (the run's keys,
/// sorted): every [`PART_KEYS`]th, fewer for a long run (see [`MAX_PARTS`]).
pub(crate) fn sample(keys: &[RunEntry]) -> Vec<MapKey> {
    let every = PART_KEYS.max(keys.len().div_ceil(MAX_PARTS));
    keys.iter()
        .skip(every)
        .step_by(every)
        .map(|(k, _)| copy_key(k))
        .collect()
}

/// One partition's walk. Fused: crossbeam's range restarts from its bound when called again
/// after `None`.
type Walk<'g, 'r> = Fuse<Range<'g, 'g, [u8], KeyRangeRef<'r>, MapKey, Arc<Chain>>>;

fn item<'g>(e: Entry<'g, 'g, MapKey, Arc<Chain>>) -> Item<'g> {
    (&e.key()[..], e.value())
}

/// A partitioned list's entries in a range, in order from either end.
pub(crate) struct PartsIter<'g, 'r> {
    parts: &'g Parts,
    range: KeyRangeRef<'r>,
    guard: &'g Guard,
    /// The partitions not yet walked to their end from either side: `lo..hi`.
    lo: usize,
    hi: usize,
    /// The walk of partition `lo` from the front, and of `hi - 1` from the back. Once one
    /// partition is left, one walk (whichever exists) serves both ends.
    front: Option<Walk<'g, 'r>>,
    back: Option<Walk<'g, 'r>>,
}

impl<'g, 'r> PartsIter<'g, 'r> {
    /// The walk of the last partition left, shared by both ends.
    fn last_walk(&mut self) -> &mut Walk<'g, 'r> {
        if self.front.is_none() {
            self.front = self.back.take();
        }
        let (parts, i, range, guard) = (self.parts, self.lo, self.range, self.guard);
        self.front
            .get_or_insert_with(|| parts.walk(i, range, guard))
    }
}

impl<'g> Iterator for PartsIter<'g, '_> {
    type Item = Item<'g>;

    fn next(&mut self) -> Option<Item<'g>> {
        while self.lo < self.hi {
            if self.hi - self.lo == 1 {
                return self.last_walk().next().map(item);
            }
            if self.front.is_none() {
                // Skip partitions that never held a key (not the last: the back may walk it).
                let next = self.parts.first_occupied(self.lo, self.hi - 1);
                if next > self.lo {
                    self.lo = next;
                    continue;
                }
                self.front = Some(self.parts.walk(self.lo, self.range, self.guard));
            }
            if let Some(e) = self.front.as_mut().and_then(Iterator::next) {
                return Some(item(e));
            }
            self.front = None;
            self.lo += 1;
        }
        None
    }
}

impl<'g> DoubleEndedIterator for PartsIter<'g, '_> {
    fn next_back(&mut self) -> Option<Item<'g>> {
        while self.lo < self.hi {
            if self.hi - self.lo == 1 {
                return self.last_walk().next_back().map(item);
            }
            if self.back.is_none() {
                let end = self.parts.end_of_occupied(self.lo + 1, self.hi);
                if end < self.hi {
                    self.hi = end.max(self.lo + 1);
                    continue;
                }
                self.back = Some(self.parts.walk(self.hi - 1, self.range, self.guard));
            }
            if let Some(e) = self.back.as_mut().and_then(DoubleEndedIterator::next_back) {
                return Some(item(e));
            }
            self.back = None;
            self.hi -= 1;
        }
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::BTreeMap;
    use std::ops::Bound;

    use super::*;

    /// Against a model: random partition bounds (none, few, many; some partitions left
    /// empty), random inserts, replacements and removals, random ranges, and a random
    /// interleaving of steps from both ends. Every entry in the range comes out once, in
    /// order, with its current chain.
    #[test]
    fn walks_match_a_model_from_both_ends() {
        let mut rng = fastrand::Rng::with_seed(5);
        let k = |i: u32| MapKey::from_slice(format!("k{i:03}").as_bytes());
        for round in 0..500 {
            let span = rng.u32(1..300);
            let mut bounds: Vec<MapKey> =
                (0..rng.usize(0..40)).map(|_| k(rng.u32(0..span))).collect();
            bounds.sort();
            bounds.dedup();
            let parts = Parts::new(bounds.clone());
            let mut model: BTreeMap<MapKey, Arc<Chain>> = BTreeMap::new();
            let guard = crossbeam_epoch::pin();
            // Keys clustered in part of the span, so that some partitions stay empty.
            let (from, to) = (rng.u32(0..span), span);
            for _ in 0..rng.usize(0..120) {
                let key = k(rng.u32(from..to));
                if rng.u8(..) < 40 {
                    if let Some(chain) = model.remove(&key) {
                        assert!(parts.remove_chain(&key, &chain, &guard));
                        // Removing it again, or another chain of the key, does nothing.
                        assert!(!parts.remove_chain(&key, &chain, &guard));
                    }
                    continue;
                }
                let chain = Arc::new(Chain::new());
                model.insert(key.clone(), Arc::clone(&chain));
                parts.insert(&key, chain, &guard);
            }
            assert_eq!(parts.len(), model.len(), "round {round}");
            let all: Vec<(Vec<u8>, *const Chain)> = parts
                .entries()
                .iter()
                .map(|(k, c)| (k.to_vec(), Arc::as_ptr(c)))
                .collect();
            let want_all: Vec<(Vec<u8>, *const Chain)> = model
                .iter()
                .map(|(k, c)| (k.to_vec(), Arc::as_ptr(c)))
                .collect();
            assert_eq!(all, want_all, "round {round}: entries");
            let (lo, hi) = (k(rng.u32(0..span + 1)), k(rng.u32(0..span + 1)));
            let bound = |kind: usize, key| match kind {
                0 => Bound::Included(key),
                1 => Bound::Excluded(key),
                _ => Bound::Unbounded,
            };
            let range = (
                bound(rng.usize(..3), &lo[..]),
                bound(rng.usize(..3), &hi[..]),
            );
            if crate::iter::is_empty_range(&range) {
                continue;
            }
            let want: Vec<(Vec<u8>, *const Chain)> = model
                .range::<[u8], _>(range)
                .map(|(k, c)| (k.to_vec(), Arc::as_ptr(c)))
                .collect();
            let mut walk = parts.range(range, &guard);
            let (mut front, mut back) = (Vec::new(), Vec::new());
            loop {
                let (item, into) = if rng.bool() {
                    (walk.next(), &mut front)
                } else {
                    (walk.next_back(), &mut back)
                };
                let Some((key, chain)) = item else { break };
                into.push((key.to_vec(), Arc::as_ptr(chain)));
            }
            assert!(walk.next().is_none() && walk.next_back().is_none());
            front.extend(back.into_iter().rev());
            assert_eq!(
                front, want,
                "round {round}: bounds {bounds:?} range {range:?}"
            );
        }
    }

    #[test]
    fn samples_every_part_keys_th_key_up_to_the_cap() {
        let entries = |n: usize| -> Vec<RunEntry> {
            (0..n)
                .map(|i| {
                    (
                        MapKey::from_slice(format!("k{i:08}").as_bytes()),
                        Arc::new(Chain::new()),
                    )
                })
                .collect()
        };
        assert!(sample(&entries(PART_KEYS)).is_empty());
        let s = sample(&entries(3 * PART_KEYS + 1));
        assert_eq!(s.len(), 3);
        assert_eq!(&s[0][..], format!("k{:08}", PART_KEYS).as_bytes());
        assert!(sample(&entries(PART_KEYS * MAX_PARTS * 2)).len() < MAX_PARTS);
    }
}
