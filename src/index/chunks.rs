//! Sorted chunks: the level between a delta's bag and the run.
//!
//! Inserts go to a bag in arrival order, and a scan can walk only ordered keys. After a bulk
//! of inserts with no scan (a load), ordering the whole bag on the first scan's thread costs
//! a sort of every key loaded. Instead, once a bag holds [`CHUNK_KEYS`] keys, the inserter
//! that crossed the count asks the builder thread, which sorts the bag into an immutable
//! **chunk** ([`Chunk`]: sorted keys pointing into the sorted bag, no head copies)
//! published with the index state. A scan merges the run, the chunks and the deltas; the
//! bag left for it to order stays small.
//!
//! Chunks are merged with each other like a binary counter (two neighbours are merged once
//! the older is less than twice the newer), so a load of `n` keys leaves about
//! `log2(n / CHUNK_KEYS)` chunks and each key is copied that many times, on the builder
//! thread (the key and its position only: the chains stay in the sorted bags). A rebuild of the run (due once the chunks and deltas outgrow their share of it,
//! which a scan asks for) folds every chunk into the run.
//!
//! A key appears at most once per chunk. It may appear in several chunks (and in the run and
//! the deltas) only with its chains of earlier lives, removed from the key map before its
//! newer chain was inserted; removed chains are empty. So a merge of chunks keeps, for a key
//! in several, the entry of the newest chunk, which is the only one that can be live.

use std::cmp::Ordering;
use std::ops::Bound;

use super::fences::{below, Fences};
use super::merge::Item;
use super::run::{prefetch_chain, RunEntry, PREFETCH_AHEAD};
use crate::key::{copy_key, KeyRangeRef, MapKey};
use crate::raw::Chain;
use crate::sync::{Arc, StrongArc};

/// A bag holding this many unplaced keys is due to become a chunk: the inserter that brings
/// it there asks the builder. Small enough that a scan placing the rest of a bag (up to this
/// many keys, plus what arrives while the builder sorts) waits a few milliseconds at most;
/// large enough that the chunks' merges stay few.
pub(crate) const CHUNK_KEYS: usize = if cfg!(miri) { 16 } else { 2_048 };

/// Keys per block between two fence keys (as in a run).
const FENCE_EVERY: usize = 32;

/// The chunks of an index state, oldest first. Published with the state, never changed.
pub(super) type Chunks = Vec<Arc<Chunk>>;

/// A sorted bag: the entries (and the chains' references) that chunks point into.
type Leaf = Vec<RunEntry>;

/// One key of a chunk: its bytes and where its entry is.
struct Slot {
    key: MapKey,
    /// Index into the chunk's `leaves`.
    leaf: u32,
    /// Index into that leaf.
    at: u32,
}

/// Sorted keys that point into the sorted bags (leaves) they came from.
///
/// The chains' references stay in the leaves, which a merge of two chunks shares (it copies
/// keys and positions, never touches a chain): a merge costs a sequential pass over both,
/// not a random cache miss per key for the chain's reference count (twice: the copy's
/// increment, the replaced chunk's decrement) and its removed flag. Removed chains stay
/// until the rebuild that folds the chunks into the run drops them.
pub(crate) struct Chunk {
    leaves: Vec<Arc<Leaf>>,
    slots: Vec<Slot>,
    /// Every [`FENCE_EVERY`]th key, for seeks.
    fences: Fences,
}

impl Chunk {
    /// A chunk holding `entries` (sorted, keys unique), a sorted bag.
    pub(super) fn of_bag(entries: Vec<RunEntry>) -> Self {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        let slots = entries
            .iter()
            .enumerate()
            .map(|(i, (k, _))| Slot {
                key: copy_key(k),
                leaf: 0,
                at: u32::try_from(i).expect("a bag of at most 4G keys"),
            })
            .collect();
        Self::new(vec![Arc::new(entries)], slots)
    }

    fn new(leaves: Vec<Arc<Leaf>>, slots: Vec<Slot>) -> Self {
        let fences = Fences::new(
            slots
                .iter()
                .step_by(FENCE_EVERY)
                .map(|s| copy_key(&s.key))
                .collect(),
        );
        Self {
            leaves,
            slots,
            fences,
        }
    }

    /// `older` and `newer` merged (for a key in both, `newer`'s entry: see the module
    /// documentation). Shares their leaves.
    #[cfg_attr(loom, allow(dead_code))] // the builder thread's merges: not under loom
    pub(super) fn merged(older: &Chunk, newer: &Chunk) -> Self {
        let shift = u32::try_from(older.leaves.len()).expect("few leaves");
        let mut leaves = older.leaves.clone();
        leaves.extend(newer.leaves.iter().cloned());
        let mut slots = Vec::with_capacity(older.slots.len() + newer.slots.len());
        let (mut a, mut b) = (older.slots.iter().peekable(), newer.slots.iter().peekable());
        loop {
            let (from_older, skip_older) = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => (true, false),
                (None, Some(_)) => (false, false),
                (Some(x), Some(y)) => match x.key.cmp(&y.key) {
                    Ordering::Less => (true, false),
                    Ordering::Greater => (false, false),
                    Ordering::Equal => (false, true),
                },
            };
            if skip_older {
                a.next();
            }
            let slot = if from_older {
                a.next().map(|s| (s, 0))
            } else {
                b.next().map(|s| (s, shift))
            };
            if let Some((s, shift)) = slot {
                slots.push(Slot {
                    key: copy_key(&s.key),
                    leaf: s.leaf + shift,
                    at: s.at,
                });
            }
        }
        Self::new(leaves, slots)
    }

    /// Number of keys (removed chains included).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The chain of `slot`'s entry.
    fn chain(&self, slot: &Slot) -> &StrongArc<Chain> {
        &self.leaves[slot.leaf as usize][slot.at as usize].1
    }

    /// The entry of `slot`, as the merge takes it.
    fn item<'g>(&'g self, slot: &'g Slot) -> Item<'g> {
        (&slot.key[..], self.chain(slot))
    }

    /// The keys in `range`, found through the fences.
    fn slice(&self, range: KeyRangeRef<'_>) -> &[Slot] {
        let start = match range.0 {
            Bound::Included(k) => self.count_below(k, false),
            Bound::Excluded(k) => self.count_below(k, true),
            Bound::Unbounded => 0,
        };
        let end = match range.1 {
            Bound::Included(k) => self.count_below(k, true),
            Bound::Excluded(k) => self.count_below(k, false),
            Bound::Unbounded => self.slots.len(),
        };
        &self.slots[start..end.max(start)]
    }

    /// How many keys are below `key` (`x < key`, or `x <= key` when `or_equal`).
    fn count_below(&self, key: &[u8], or_equal: bool) -> usize {
        let Some(block) = self.fences.count_below(key, or_equal).checked_sub(1) else {
            return 0;
        };
        let from = block * FENCE_EVERY;
        let to = (from + FENCE_EVERY).min(self.slots.len());
        from + self.slots[from..to].partition_point(|s| below(&s.key, key, or_equal))
    }
}

/// The neighbours `(i, i + 1)` the builder should merge next, if any: the newest pair whose
/// older chunk is less than twice the newer one (a binary counter: sizes at least double
/// from newest to oldest, so there are about `log2(total / CHUNK_KEYS)` chunks).
#[cfg_attr(loom, allow(dead_code))] // the builder thread's merges: not under loom
pub(super) fn next_merge(chunks: &[Arc<Chunk>]) -> Option<usize> {
    (0..chunks.len().saturating_sub(1))
        .rev()
        .find(|&i| chunks[i].len() < 2 * chunks[i + 1].len())
}

/// A sorted source of a fold ([`fold`]): a run's entries or a chunk's keys.
enum Source<'a> {
    Entries(&'a [RunEntry]),
    Chunk(&'a Chunk, &'a [Slot]),
}

impl<'a> Source<'a> {
    fn front(&self) -> Option<Item<'a>> {
        match self {
            Source::Entries(e) => e.first().map(|(k, c)| (&k[..], c)),
            Source::Chunk(chunk, s) => s.first().map(|slot| chunk.item(slot)),
        }
    }

    fn advance(&mut self) {
        match self {
            Source::Entries(e) => *e = &e[1..],
            Source::Chunk(_, s) => *s = &s[1..],
        }
    }

    /// Starts loading the chain a few keys ahead (its reference count and removed flag are
    /// a cache miss per key otherwise).
    fn prefetch_ahead(&self) {
        match self {
            Source::Entries(e) => prefetch_chain(e, PREFETCH_AHEAD),
            Source::Chunk(chunk, s) => {
                // Two stages: the entry in its sorted bag (where the chain's address is)
                // twice as far ahead, so that reading it for the chain's prefetch hits.
                if let Some(slot) = s.get(2 * PREFETCH_AHEAD) {
                    let entry = &chunk.leaves[slot.leaf as usize][slot.at as usize];
                    crate::raw::prefetch_line(std::ptr::from_ref(entry).cast());
                }
                if let Some(slot) = s.get(PREFETCH_AHEAD) {
                    chunk.chain(slot).prefetch();
                }
            }
        }
    }
}

/// Every entry of `run`, `chunks` (oldest first) and `delta` (each sorted, keys unique),
/// in key order, keys unique, minus chains removed from the key map: for a key several of
/// them hold, the newest one's entry (see the module documentation). The entries are
/// copied. One pass, comparing the sources' fronts (they are few).
pub(super) fn fold(run: &[RunEntry], chunks: &[Arc<Chunk>], delta: &[RunEntry]) -> Vec<RunEntry> {
    let mut sources: Vec<Source<'_>> = std::iter::once(Source::Entries(run))
        .chain(chunks.iter().map(|c| Source::Chunk(c, &c.slots)))
        .chain(std::iter::once(Source::Entries(delta)))
        .collect();
    let total = run.len() + delta.len() + chunks.iter().map(|c| c.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    loop {
        // The smallest key in front, and (on a tie) the newest source holding it.
        let mut best: Option<(usize, Item<'_>)> = None;
        for (i, s) in sources.iter().enumerate() {
            if let Some(item) = s.front() {
                if best.is_none_or(|(_, (b, _))| item.0 <= b) {
                    best = Some((i, item));
                }
            }
        }
        let Some((newest, (key, chain))) = best else {
            break;
        };
        sources[newest].prefetch_ahead();
        if !chain.is_removed() {
            out.push((copy_key(key), StrongArc::clone(chain)));
        }
        for s in &mut sources {
            if s.front().is_some_and(|(k, _)| k == key) {
                s.advance();
            }
        }
        sources.retain(|s| s.front().is_some());
    }
    // Sized for every source entry; a run of mostly removed chains would keep the rest.
    if out.len() < out.capacity() / 2 {
        out.shrink_to_fit();
    }
    out
}

/// The chunks' entries in a range, merged into one sequence in key order from either end, one
/// item per key (the newest chunk's, see the module documentation). Valid while the state
/// is.
pub(crate) struct ChunksIter<'g> {
    /// Each chunk's keys in the range not yet returned from either end, oldest chunk first.
    slices: Vec<(&'g Chunk, &'g [Slot])>,
}

impl<'g> ChunksIter<'g> {
    pub(super) fn new(chunks: &'g [Arc<Chunk>], range: KeyRangeRef<'_>) -> Self {
        Self {
            slices: chunks
                .iter()
                .map(|c| (&**c, c.slice(range)))
                .filter(|(_, s)| !s.is_empty())
                .collect(),
        }
    }

    /// Takes the next key from the front (`forward`) or the back, from every chunk holding
    /// it, and returns the newest chunk's entry.
    fn take(&mut self, forward: bool) -> Option<Item<'g>> {
        let end = |s: &'g [Slot]| if forward { s.first() } else { s.last() };
        let mut best: Option<(&'g Chunk, &'g Slot)> = None;
        for &(chunk, s) in &self.slices {
            let Some(slot) = end(s) else { continue };
            let better = best.is_none_or(|(_, b)| match slot.key.cmp(&b.key) {
                Ordering::Equal => true,
                Ordering::Less => forward,
                Ordering::Greater => !forward,
            });
            if better {
                best = Some((chunk, slot));
            }
        }
        let (chunk, best) = best?;
        for (_, s) in &mut self.slices {
            if end(s).is_some_and(|slot| slot.key == best.key) {
                *s = if forward { &s[1..] } else { &s[..s.len() - 1] };
            }
        }
        Some(chunk.item(best))
    }
}

impl<'g> Iterator for ChunksIter<'g> {
    type Item = Item<'g>;

    fn next(&mut self) -> Option<Item<'g>> {
        self.take(true)
    }
}

impl DoubleEndedIterator for ChunksIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.take(false)
    }
}

/// A chunk holding `entries` (sorted, keys unique).
pub(super) fn chunk_of(entries: Vec<RunEntry>) -> Arc<Chunk> {
    Arc::new(Chunk::of_bag(entries))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::key::MapKey;
    use crate::raw::Chain;
    use std::ops::Bound;

    fn chunk(
        keys: &[u32],
        chains: &mut Vec<(u32, usize, StrongArc<Chain>)>,
        age: usize,
    ) -> Arc<Chunk> {
        let entries: Vec<RunEntry> = keys
            .iter()
            .map(|&k| {
                let c = StrongArc::new(Chain::new());
                chains.push((k, age, StrongArc::clone(&c)));
                (MapKey::from_slice(format!("k{k:04}").as_bytes()), c)
            })
            .collect();
        chunk_of(entries)
    }

    /// Random chunks with keys in several of them: walks from both ends, interleaved, and a
    /// merge of them, give every key once, in order, with the newest chunk's chain.
    #[test]
    fn chunk_walks_and_merges_keep_the_newest_entry_per_key() {
        let mut rng = fastrand::Rng::with_seed(11);
        let rounds = if cfg!(miri) { 4 } else { 300 };
        for _ in 0..rounds {
            let mut chains = Vec::new();
            let n = rng.usize(0..5);
            let chunks: Vec<Arc<Chunk>> = (0..n)
                .map(|age| {
                    let mut keys: Vec<u32> =
                        (0..rng.usize(0..30)).map(|_| rng.u32(0..60)).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    chunk(&keys, &mut chains, age)
                })
                .collect();
            // The model: per key, the newest chunk's chain.
            let mut model = std::collections::BTreeMap::new();
            for (k, age, c) in &chains {
                let e = model.entry(*k).or_insert((*age, StrongArc::as_ptr(c)));
                if *age >= e.0 {
                    *e = (*age, StrongArc::as_ptr(c));
                }
            }
            let (lo, hi) = (rng.u32(0..61), rng.u32(0..61));
            let (lo_key, hi_key) = (format!("k{lo:04}"), format!("k{hi:04}"));
            let range = (
                Bound::Included(lo_key.as_bytes()),
                Bound::Excluded(hi_key.as_bytes()),
            );
            let want: Vec<(String, *const Chain)> = model
                .range(lo..hi.max(lo))
                .map(|(k, (_, c))| (format!("k{k:04}"), *c))
                .collect();
            let mut walk = ChunksIter::new(&chunks, range);
            let (mut front, mut back) = (Vec::new(), Vec::new());
            loop {
                let item = if rng.bool() {
                    walk.next().map(|i| (i, &mut front))
                } else {
                    walk.next_back().map(|i| (i, &mut back))
                };
                let Some(((k, c), side)) = item else { break };
                side.push((String::from_utf8(k.to_vec()).unwrap(), StrongArc::as_ptr(c)));
            }
            back.reverse();
            front.extend(back);
            assert_eq!(front, want);
            let folded: Vec<(MapKey, *const Chain)> = fold(&[], &chunks, &[])
                .into_iter()
                .map(|(k, c)| (k, StrongArc::as_ptr(&c)))
                .collect();
            let all: Vec<(MapKey, *const Chain)> = model
                .iter()
                .map(|(k, (_, c))| (MapKey::from_slice(format!("k{k:04}").as_bytes()), *c))
                .collect();
            assert_eq!(folded, all);
            // Merging the chunks pairwise, oldest first, gives one chunk with the same keys.
            if let Some((first, rest)) = chunks.split_first() {
                let one = rest
                    .iter()
                    .fold(Arc::clone(first), |acc, c| Arc::new(Chunk::merged(&acc, c)));
                let whole = (Bound::Unbounded, Bound::Unbounded);
                let walked: Vec<(MapKey, *const Chain)> = ChunksIter::new(&[one], whole)
                    .map(|(k, c)| (MapKey::from_slice(k), StrongArc::as_ptr(c)))
                    .collect();
                assert_eq!(walked, all);
            }
        }
    }

    #[test]
    fn merging_drops_removed_chains_and_the_counter_keeps_chunks_few() {
        let mut chains = Vec::new();
        let old = chunk(&[1, 2, 3], &mut chains, 0);
        old.chain(&old.slots[1]).lock().mark_removed();
        assert_eq!(fold(&[], &[old], &[]).len(), 2);
        // Binary counter: after 2^k equal chunks, one chunk; sizes double towards the oldest.
        let mut chunks: Vec<Arc<Chunk>> = Vec::new();
        for round in 0..64u32 {
            chunks.push(chunk(&[round], &mut chains, 0));
            while let Some(i) = next_merge(&chunks) {
                let m = Arc::new(Chunk::merged(&chunks[i], &chunks[i + 1]));
                chunks.splice(i..i + 2, [m]);
            }
            let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
            assert_eq!(sizes.iter().sum::<usize>(), round as usize + 1);
            assert_eq!(sizes.len() as u32, (round + 1).count_ones(), "{sizes:?}");
        }
    }
}
