//! The sorted run: an immutable, contiguous array of `(key, chain)` in key order.

use std::cmp::Ordering;
use std::ops::Bound;

use super::fences::{below, Fences};
use crate::key::{copy_key, KeyRangeRef, MapKey};
use crate::raw::{prefetch_line, prefetch_lines, Chain, HeadCopier, HeadsSlice, RunHeads};
use crate::sync::StrongArc;

/// One key of a run and the chain it had when the run was built.
pub(crate) type RunEntry = (MapKey, StrongArc<Chain>);

/// Keys in ascending order, each with its chain, in one allocation.
///
/// A scan walks it front to back (or back to front) through contiguous memory: the next key
/// is in the same or the next cache line, and each chain's address is known before its
/// predecessor's chain is read, so the processor overlaps those misses. A skip-list walk
/// instead takes one dependent miss per node.
///
/// Built once, never changed. It may hold chains that have since been removed from the key
/// map (they are empty, so readers skip them) and, for such a key, the key's newer chain may
/// sit in a delta as well: a key appears at most once per run but possibly once more in each
/// delta (see [`Group`](super::merge::Group)).
pub(crate) struct Run {
    entries: Vec<RunEntry>,
    /// Every [`FENCE_EVERY`]th key, in order: a seek binary-searches this small array (which
    /// stays in cache) and then one block of entries, instead of taking a cache miss on
    /// nearly every probe of a search over the whole run.
    fences: Fences,
    /// Each entry's chain head as the rebuild found it, so that scans need not touch the
    /// chains of keys that did not change since (see `raw::run_heads`); or no copies.
    heads: RunHeads,
}

/// A run's heap bytes by part (see [`Run::heap_bytes`]).
pub(crate) struct RunBytes {
    pub(crate) entries: usize,
    pub(crate) heads: usize,
    pub(crate) fences: usize,
}

/// The entries of a run in a key range, with their head copies.
#[derive(Clone, Copy)]
pub(crate) struct RunSlice<'a> {
    pub(crate) entries: &'a [RunEntry],
    pub(crate) heads: HeadsSlice<'a>,
}

/// Entries per block between two fence keys.
const FENCE_EVERY: usize = 32;

/// How far ahead of its position a pass over a whole run (a rebuild, a drop) prefetches
/// chains: each entry costs it one random cache miss (the chain's reference count), which
/// otherwise come one after another.
const PREFETCH_AHEAD: usize = 16;

/// Prefetches the lines of `entries[i]`'s chain that a rebuild or a drop touch: the reference
/// count in front of the chain, and the chain's state word.
fn prefetch_chain(entries: &[RunEntry], i: usize) {
    if let Some((_, c)) = entries.get(i) {
        let chain = StrongArc::as_ptr(c).cast::<u8>();
        // The reference count is the word in front of the chain (`StrongArc`).
        prefetch_line(chain.wrapping_sub(size_of::<usize>()));
        c.prefetch();
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Dropping the entries in order, prefetching ahead: releasing a chain's reference is
        // a random cache miss per key.
        let mut entries = std::mem::take(&mut self.entries).into_iter();
        while let Some(entry) = entries.next() {
            prefetch_chain(entries.as_slice(), PREFETCH_AHEAD - 1);
            drop(entry);
        }
    }
}

impl Run {
    /// A run with no keys.
    pub(crate) fn empty() -> Self {
        Self::from_entries(Vec::new(), RunHeads::none())
    }

    fn from_entries(entries: Vec<RunEntry>, heads: RunHeads) -> Self {
        let fences = Fences::new(
            entries
                .iter()
                .step_by(FENCE_EVERY)
                .map(|(k, _)| copy_key(k))
                .collect(),
        );
        Self {
            entries,
            fences,
            heads,
        }
    }

    /// Number of entries (live or removed chains).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries, in key order.
    pub(crate) fn entries(&self) -> &[RunEntry] {
        &self.entries
    }

    /// Heap bytes of the run, for memory accounting: its entries (capacity included, with the
    /// heap bytes of spilled keys; the chains are counted with the key map), its head copies,
    /// and its fences.
    pub(crate) fn heap_bytes(&self) -> RunBytes {
        RunBytes {
            entries: self.entries.capacity() * size_of::<RunEntry>()
                + self
                    .entries
                    .iter()
                    .map(|(k, _)| k.heap_bytes())
                    .sum::<usize>(),
            heads: self.heads.heap_bytes(),
            fences: self.fences.heap_bytes(),
        }
    }

    /// The run's head copies (to mark changed keys in).
    pub(crate) fn heads(&self) -> &RunHeads {
        &self.heads
    }

    /// The entries whose keys lie in `range`, found by binary search, with their copies.
    pub(crate) fn slice(&self, range: KeyRangeRef<'_>) -> RunSlice<'_> {
        let start = match range.0 {
            Bound::Included(k) => self.count_below(k, false, true),
            Bound::Excluded(k) => self.count_below(k, true, true),
            Bound::Unbounded => 0,
        };
        let end = match range.1 {
            Bound::Included(k) => self.count_below(k, true, false),
            Bound::Excluded(k) => self.count_below(k, false, false),
            Bound::Unbounded => self.entries.len(),
        };
        // An empty range (start after end) yields nothing rather than panicking.
        let range = start..end.max(start);
        // A forward walk reads the copies from `start` on: the seek prefetched its block's,
        // these reach into the next block.
        self.heads.prefetch(start..end.min(start + FENCE_EVERY));
        RunSlice {
            entries: &self.entries[range.clone()],
            heads: self.heads.slice(range),
        }
    }

    /// How many entries are below `key` (`x < key`, or `x <= key` when `or_equal`), through
    /// the fences: the first block whose fence is not below is past the point, so the point
    /// lies in the block before it. A forward walk's start (`start`) reads the block's head
    /// copies next: they are prefetched with the block.
    fn count_below(&self, key: &[u8], or_equal: bool, start: bool) -> usize {
        let blocks = self.fences.count_below(key, or_equal);
        let Some(block) = blocks.checked_sub(1) else {
            return 0;
        };
        let from = block * FENCE_EVERY;
        let to = (from + FENCE_EVERY).min(self.entries.len());
        let block = &self.entries[from..to];
        // The binary search's probes would each wait for a miss of their own: start them all
        // at once (a block is a few dozen lines, and the walk that follows reads it anyway).
        prefetch_lines(block);
        if start {
            self.heads.prefetch(from..to);
        }
        from + block.partition_point(|(x, _)| below(x, key, or_equal))
    }

    /// A new run holding this run's entries and `delta`'s (sorted by key, keys unique), minus
    /// chains removed from the key map. Both never hold a live chain for one key: a key's old
    /// chain is marked removed before its new chain enters a delta, which happens before the
    /// rebuild reads that delta (see `index`). With a `copier`, the new run holds a copy of
    /// each chain's head, taken as the entry is added.
    pub(crate) fn merged_with(&self, delta: Vec<RunEntry>, mut copier: Option<HeadCopier>) -> Run {
        debug_assert!(delta.windows(2).all(|w| w[0].0 < w[1].0));
        let live = |(_, c): &&RunEntry| !c.is_removed();
        let mut entries = Vec::with_capacity(self.entries.len() + delta.len());
        let ahead = &self.entries;
        let mut old = self
            .entries
            .iter()
            .enumerate()
            .inspect(|(i, _)| prefetch_chain(ahead, i + PREFETCH_AHEAD))
            .map(|(_, e)| e)
            .filter(live)
            .peekable();
        let mut new = delta.into_iter().filter(|e| live(&e)).peekable();
        loop {
            let take_old = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((a, _)), Some((b, _))) => {
                    debug_assert_ne!(a, b, "two live chains for one key");
                    a.cmp(b) != Ordering::Greater
                }
            };
            let entry = if take_old {
                old.next().map(|(k, c)| (copy_key(k), StrongArc::clone(c)))
            } else {
                new.next()
            };
            if let Some((key, chain)) = entry {
                if let Some(copier) = copier.as_mut() {
                    copier.push(&key, &chain);
                }
                entries.push((key, chain));
            }
        }
        let heads = copier.map_or_else(RunHeads::none, HeadCopier::finish);
        Run::from_entries(entries, heads)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::ops::RangeBounds;

    fn key(s: &str) -> MapKey {
        MapKey::from_slice(s.as_bytes())
    }

    fn run_of(keys: &[&str]) -> Run {
        Run::empty().merged_with(
            keys.iter()
                .map(|k| (key(k), StrongArc::new(Chain::new())))
                .collect(),
            None,
        )
    }

    fn keys(entries: &[RunEntry]) -> Vec<&[u8]> {
        entries.iter().map(|(k, _)| &k[..]).collect()
    }

    #[test]
    fn slices_follow_the_bounds() {
        let run = run_of(&["b", "d", "f"]);
        let b = |s: &'static str| s.as_bytes();
        let cases: [(KeyRangeRef<'_>, &[&str]); 7] = [
            ((Bound::Unbounded, Bound::Unbounded), &["b", "d", "f"]),
            (
                (Bound::Included(b("b")), Bound::Excluded(b("f"))),
                &["b", "d"],
            ),
            (
                (Bound::Excluded(b("b")), Bound::Included(b("f"))),
                &["d", "f"],
            ),
            ((Bound::Included(b("c")), Bound::Included(b("e"))), &["d"]),
            ((Bound::Included(b("g")), Bound::Unbounded), &[]),
            ((Bound::Unbounded, Bound::Excluded(b("b"))), &[]),
            // Start after end: empty, no panic.
            ((Bound::Included(b("e")), Bound::Included(b("c"))), &[]),
        ];
        for (range, want) in cases {
            let want: Vec<&[u8]> = want.iter().map(|s| s.as_bytes()).collect();
            assert_eq!(keys(run.slice(range).entries), want, "{range:?}");
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "safe code only, outside raw: nothing for Miri to find")]
    fn fenced_seeks_agree_with_a_plain_search() {
        let names: Vec<String> = (0..1_000).map(|i| format!("k{:04}", i * 2)).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let run = run_of(&refs);
        let all = keys(&run.entries);
        for probe in 0..2_002 {
            let p = format!("k{probe:04}");
            let p = p.as_bytes();
            let bounds = [Bound::Included(p), Bound::Excluded(p), Bound::Unbounded];
            for lo in bounds {
                for hi in bounds {
                    let want: Vec<&[u8]> = all
                        .iter()
                        .copied()
                        .filter(|k| RangeBounds::<[u8]>::contains(&(lo, hi), *k))
                        .collect();
                    assert_eq!(keys(run.slice((lo, hi)).entries), want, "{lo:?}..{hi:?}");
                }
            }
        }
    }

    #[test]
    fn merging_interleaves_and_drops_removed_chains() {
        let run = run_of(&["a", "c", "e"]);
        // Remove "c"'s chain, as the collector does when a key leaves the map.
        run.entries[1].1.lock().mark_removed();
        let delta = vec![
            (key("b"), StrongArc::new(Chain::new())),
            (key("c"), StrongArc::new(Chain::new())),
            (key("f"), StrongArc::new(Chain::new())),
        ];
        let mut delta = delta;
        let gone = StrongArc::new(Chain::new());
        gone.lock().mark_removed();
        delta.push((key("g"), gone));
        let merged = run.merged_with(delta, None);
        let want: Vec<&[u8]> = vec![b"a", b"b", b"c", b"e", b"f"];
        assert_eq!(keys(&merged.entries), want);
        assert!(merged.entries.iter().all(|(_, c)| !c.is_removed()));
        // The old run is untouched: readers may still be walking it.
        assert_eq!(run.len(), 3);
    }
}
