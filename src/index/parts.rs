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
use crate::key::{copy_key, KeyRangeRef, MapKey};
use crate::raw::Chain;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering, StrongArc};

/// Run keys per partition: at the rebuild threshold (a delta of `1 / DELTA_FRACTION` of the
/// run) a partition holds about `PART_KEYS / DELTA_FRACTION` keys, a skip list a few levels
/// high.
pub(super) const PART_KEYS: usize = 256;
/// At most this many partitions (each an empty skip list of ~512 bytes): past ~1M run keys,
/// partitions grow instead.
const MAX_PARTS: usize = 4096;

type List = SkipList<MapKey, StrongArc<Chain>>;

/// The partitioned list: see the module documentation.
pub(crate) struct Parts {
    /// Partition `i` holds the keys `k` with `bounds.count_below(k, true) == i`: those at or
    /// above the `i`th bound (for `i > 0`) and below the next.
    bounds: Fences,
    lists: Box<[List]>,
    /// A bit per partition, set by an insert into it, cleared by [`Parts::tidy`] once the
    /// partition's list is empty. Both happen under the delta's placer lock, so no insert
    /// runs while `tidy` finds a list empty; removals only empty lists further.
    ///
    /// | bit | meaning |
    /// |---|---|
    /// | `0` | the partition holds no key inserted before this load (the insert sets the bit before the placer publishes its count, which a walk loads first; a clear comes after the partition emptied, and a later insert sets the bit again) |
    /// | `1` | the partition may hold keys |
    occupied: Box<[AtomicU64]>,
    /// A bit per partition that a removal left empty and `tidy` has not looked at: so that
    /// walks do not keep seeking emptied lists (after a burst of deletes, a walk with an
    /// open end would search every one of them).
    ///
    /// | bit | meaning |
    /// |---|---|
    /// | `0` | nothing to tidy in the partition |
    /// | `1` | the partition's list may have emptied since it was last tidied |
    emptied: Box<[AtomicU64]>,
    /// Whether `emptied` may have a bit set (a hint that spares walks a look at it).
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `false` | no removal emptied a list since the last `tidy` began |
    /// | `true` | one may have: `tidy` is due |
    untidy: AtomicBool,
    /// Inserts minus removals: the number of entries, plus one per entry an insert replaced
    /// (a key re-created while in the list; rare, and only makes a rebuild come earlier).
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `n` | at most `n` entries are in the lists (at least `n` minus the replacements) |
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
            emptied: (0..parts.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            untidy: AtomicBool::new(false),
            len: AtomicUsize::new(0),
        }
    }

    /// The partition `key` belongs to.
    fn part_of(&self, key: &[u8]) -> usize {
        self.bounds.count_below(key, true)
    }

    /// Sets partition `i`'s bit in `bits` (reading first: once set, the line every walk
    /// reads is not written again).
    fn set_bit(bits: &[AtomicU64], i: usize, order: Ordering) {
        let (word, bit) = (&bits[i / 64], 1 << (i % 64));
        if word.load(Ordering::Relaxed) & bit == 0 {
            word.fetch_or(bit, order);
        }
    }

    /// Adds `key` with `chain`, replacing the key's previous entry.
    pub(crate) fn insert(&self, key: &[u8], chain: StrongArc<Chain>, guard: &Guard) {
        let i = self.part_of(key);
        // Counted before the entry is reachable, so that a remover's decrement, which needs
        // the entry, never comes first (the count would wrap). A replaced entry stays
        // counted: the count runs high by the keys re-created while in the list.
        self.len.fetch_add(1, Ordering::Relaxed);
        self.lists[i]
            .insert(MapKey::from_slice(key), chain, guard)
            .release(guard);
        // Release: not needed for the protocol (a walk that must see this key loads the
        // delta's count, which the placer lowers with Release after this), but cheap, and a
        // walk that sees the bit then sees the key. The Relaxed load in `set_bit` may skip
        // the write: the bit is set, and only `tidy` clears bits, under the placer lock the
        // caller holds, so it stays set.
        Self::set_bit(&self.occupied, i, Ordering::Release);
    }

    /// Removes `key`'s entry if it holds `chain`; returns whether it did.
    pub(crate) fn remove_chain(&self, key: &[u8], chain: &Chain, guard: &Guard) -> bool {
        let i = self.part_of(key);
        let list = &self.lists[i];
        let removed = match list.get(key, guard) {
            Some(e) if std::ptr::eq(StrongArc::as_ptr(e.value()), chain) => e.remove(),
            _ => false,
        };
        if removed {
            self.len.fetch_sub(1, Ordering::Relaxed);
            if list.front(guard).is_none() {
                Self::set_bit(&self.emptied, i, Ordering::Relaxed);
                self.untidy.store(true, Ordering::Relaxed);
            }
        }
        removed
    }

    /// Whether removals emptied partitions that [`tidy`](Self::tidy) has not cleared.
    pub(crate) fn is_untidy(&self) -> bool {
        self.untidy.load(Ordering::Relaxed)
    }

    /// Clears the occupancy bits of the partitions removals left empty. The caller holds the
    /// delta's placer lock, so no insert runs meanwhile (see [`Parts::occupied`]).
    pub(crate) fn tidy(&self, guard: &Guard) {
        // Lowered first: a removal that empties a list from now on raises it again.
        self.untidy.store(false, Ordering::Relaxed);
        for (w, word) in self.emptied.iter().enumerate() {
            let mut bits = word.swap(0, Ordering::Relaxed);
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // Empty: no entry, and none can arrive while the placer lock is held.
                if self.lists[i].front(guard).is_none() {
                    self.occupied[w].fetch_and(!(1 << (i % 64)), Ordering::Relaxed);
                }
            }
        }
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
            .map(|e| (copy_key(e.key()), StrongArc::clone(e.value())))
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
            std::ops::Bound::Included(k) => self.part_of(k),
            // The greatest key below `k` is in a partition whose bound is below `k`.
            std::ops::Bound::Excluded(k) => self.bounds.count_below(k, false),
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
        let mut end = to;
        while end > from {
            let i = end - 1;
            // Bits `0..=i % 64` of `i`'s word.
            let word = self.occupied[i / 64].load(Ordering::Acquire) & (u64::MAX >> (63 - i % 64));
            let base = i / 64 * 64;
            if word != 0 {
                let top = base + 63 - word.leading_zeros() as usize;
                return if top >= from { top + 1 } else { from };
            }
            end = base;
        }
        from
    }

    fn walk<'g, 'r>(&'g self, i: usize, range: KeyRangeRef<'r>, guard: &'g Guard) -> Walk<'g, 'r> {
        self.lists[i].range(range, guard).fuse()
    }
}

/// Run keys sampled as partition bounds for a delta created after `keys` (the run's keys,
/// sorted): every [`PART_KEYS`]th, fewer for a long run (see [`MAX_PARTS`]). Keys whose
/// chain was removed are left out: a rebuild that drops most of the run (the keys were
/// deleted) would otherwise give the next delta a partition per 256 keys that are gone, each
/// an empty skip list kept until the rebuild after it.
pub(crate) fn sample(keys: &[RunEntry]) -> Vec<MapKey> {
    let every = PART_KEYS.max(keys.len().div_ceil(MAX_PARTS));
    keys.iter()
        .skip(every)
        .step_by(every)
        .filter(|(_, c)| !c.is_removed())
        .map(|(k, _)| copy_key(k))
        .collect()
}

/// One partition's walk. Fused: crossbeam's range restarts from its bound when called again
/// after `None`.
type Walk<'g, 'r> = Fuse<Range<'g, 'g, [u8], KeyRangeRef<'r>, MapKey, StrongArc<Chain>>>;

fn item<'g>(e: Entry<'g, 'g, MapKey, StrongArc<Chain>>) -> Item<'g> {
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
        // Under Miri: a few short rounds (it checks every access, a thousand times slower).
        let (rounds, max_span) = if cfg!(miri) { (3, 40) } else { (500, 300) };
        for round in 0..rounds {
            let span = rng.u32(1..max_span);
            let mut bounds: Vec<MapKey> =
                (0..rng.usize(0..40)).map(|_| k(rng.u32(0..span))).collect();
            bounds.sort();
            bounds.dedup();
            let parts = Parts::new(bounds.clone());
            let mut model: BTreeMap<MapKey, StrongArc<Chain>> = BTreeMap::new();
            let guard = crossbeam_epoch::pin();
            // Keys clustered in part of the span, or few keys over all of it, so that some
            // partitions stay empty (runs of them within and across bitmap words).
            let (from, to) = (rng.u32(0..span), span);
            let (from, ops) = if rng.bool() { (from, 300) } else { (0, 12) };
            // Inserts of a key the list holds: the count keeps the replaced entry.
            let mut replaced = 0;
            for _ in 0..rng.usize(0..ops) {
                let key = k(rng.u32(from..to));
                if rng.u8(..) < 40 {
                    if let Some(chain) = model.remove(&key) {
                        assert!(parts.remove_chain(&key, &chain, &guard));
                        // Removing it again, or another chain of the key, does nothing.
                        assert!(!parts.remove_chain(&key, &chain, &guard));
                    }
                    continue;
                }
                let chain = StrongArc::new(Chain::new());
                replaced += usize::from(
                    model
                        .insert(key.clone(), StrongArc::clone(&chain))
                        .is_some(),
                );
                parts.insert(&key, chain, &guard);
                if rng.u8(..) < 20 {
                    parts.tidy(&guard);
                }
            }
            assert_eq!(parts.len(), model.len() + replaced, "round {round}");
            if rng.bool() {
                parts.tidy(&guard);
                assert!(!parts.is_untidy());
                // Tidied: a clear bit means an empty list, and every list that holds a key
                // has its bit.
                for (i, list) in parts.lists.iter().enumerate() {
                    let bit = parts.occupied[i / 64].load(Ordering::Relaxed) >> (i % 64) & 1;
                    assert_eq!(
                        bit == 1,
                        list.front(&guard).is_some(),
                        "round {round}: part {i}"
                    );
                }
            }
            let all: Vec<(Vec<u8>, *const Chain)> = parts
                .entries()
                .iter()
                .map(|(k, c)| (k.to_vec(), StrongArc::as_ptr(c)))
                .collect();
            let want_all: Vec<(Vec<u8>, *const Chain)> = model
                .iter()
                .map(|(k, c)| (k.to_vec(), StrongArc::as_ptr(c)))
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
                .map(|(k, c)| (k.to_vec(), StrongArc::as_ptr(c)))
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
                into.push((key.to_vec(), StrongArc::as_ptr(chain)));
            }
            assert!(walk.next().is_none() && walk.next_back().is_none());
            front.extend(back.into_iter().rev());
            assert_eq!(
                front, want,
                "round {round}: bounds {bounds:?} range {range:?}"
            );
        }
    }

    /// Walks from both ends over runs of empty partitions that start and end mid-word in
    /// the occupancy bitmap, and over partitions that removals emptied, before and after
    /// `tidy`.
    #[test]
    fn walks_skip_empty_partitions_across_bitmap_words() {
        let k = |i: u32| MapKey::from_slice(format!("k{i:04}").as_bytes());
        // Partition `p + 1` holds the keys from `k(10 * p)` up to `k(10 * p + 10)`.
        let parts = Parts::new((0..300).map(|p| k(10 * p)).collect());
        let guard = crossbeam_epoch::pin();
        let held = [5, 75, 700, 1_290, 2_555];
        for i in held {
            parts.insert(&k(i), StrongArc::new(Chain::new()), &guard);
        }
        let doomed = StrongArc::new(Chain::new());
        parts.insert(&k(1_500), StrongArc::clone(&doomed), &guard);
        assert!(parts.remove_chain(&k(1_500), &doomed, &guard));
        for tidied in [false, true] {
            if tidied {
                assert!(parts.is_untidy());
                parts.tidy(&guard);
                assert!(!parts.is_untidy());
            }
            for (lo, hi) in [(0, 3_000), (100, 2_600), (80, 1_300), (701, 1_289), (6, 74)] {
                let range = (Bound::Included(&k(lo)[..]), Bound::Excluded(&k(hi)[..]));
                let want: Vec<Vec<u8>> = held
                    .iter()
                    .filter(|&&i| lo <= i && i < hi)
                    .map(|&i| k(i).to_vec())
                    .collect();
                let forward: Vec<Vec<u8>> = parts
                    .range(range, &guard)
                    .map(|(key, _)| key.to_vec())
                    .collect();
                let mut backward: Vec<Vec<u8>> = parts
                    .range(range, &guard)
                    .rev()
                    .map(|(key, _)| key.to_vec())
                    .collect();
                backward.reverse();
                assert_eq!(forward, want, "{lo}..{hi}, tidied: {tidied}");
                assert_eq!(backward, want, "{lo}..{hi}, tidied: {tidied}");
            }
        }
        // The emptied partition's bit is clear once tidied; the others stay set.
        let bit = |p: usize| parts.occupied[p / 64].load(Ordering::Relaxed) >> (p % 64) & 1;
        assert_eq!(bit(151), 0);
        assert_eq!(bit(71), 1);
    }

    #[test]
    #[cfg_attr(miri, ignore = "safe code only, outside raw, on two million entries")]
    fn samples_every_part_keys_th_key_up_to_the_cap() {
        let entries = |n: usize| -> Vec<RunEntry> {
            (0..n)
                .map(|i| {
                    (
                        MapKey::from_slice(format!("k{i:08}").as_bytes()),
                        StrongArc::new(Chain::new()),
                    )
                })
                .collect()
        };
        assert!(sample(&entries(PART_KEYS)).is_empty());
        // Keys whose chains were removed (deleted since the run was built) are no bounds.
        let gone = entries(3 * PART_KEYS + 1);
        gone[2 * PART_KEYS].1.lock().mark_removed();
        let s = sample(&gone);
        assert_eq!(s.len(), 2);
        assert_eq!(&s[1][..], format!("k{:08}", 3 * PART_KEYS).as_bytes());
        let s = sample(&entries(3 * PART_KEYS + 1));
        assert_eq!(s.len(), 3);
        assert_eq!(&s[0][..], format!("k{:08}", PART_KEYS).as_bytes());
        assert!(sample(&entries(PART_KEYS * MAX_PARTS * 2)).len() < MAX_PARTS);
    }
}
