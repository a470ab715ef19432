//! The key space: a lock-striped hash map from key to version chain for point lookups, and an
//! ordered B+-tree index over the same chains for scans.

use std::ops::{Bound, ControlFlow, RangeBounds};

use bytes::Bytes;
use crossbeam_epoch::Guard;
use dashmap::DashMap;
use scc::TreeIndex;
use smallvec::SmallVec;

use crate::raw::{Chain, ChainWriter};
use crate::sync::Arc;

/// Maps every key that has (or is about to receive) versions to its chain, twice: hashed for
/// O(1) point lookups, ordered for O(log n + k) scans.
///
/// Both maps hold the same `Arc<Chain>`, and both are changed for a key only while that key's
/// `DashMap` shard is write-locked (inside `entry` / `remove_if`), so they agree on which chain
/// a key has. Transient disagreement is harmless to readers: a chain being created is empty
/// (invisible) and a chain being removed holds nothing any snapshot can see.
///
/// The index is `scc`'s [`TreeIndex`], a B+-tree whose leaves hold up to 14 `(key, chain)`
/// entries side by side, read without locks under its own epoch guard ([`IndexGuard`]). A
/// scan step is then the next slot of a leaf, not a pointer chase to another node: walking 50
/// keys costs a few cache misses for the leaves instead of 50 (a skip list, which this index
/// replaced, walked 5x slower). What remains per key is the chain's head cache, one miss that
/// scans overlap by prefetching a batch of chains before reading them (see `iter.rs`).
///
/// The index guarantees what scans need: an entry inserted before a walk begins is visited
/// unless removed, and entries are immutable while reachable. A chain is in the index before
/// its first version is installed, so every version a snapshot can see is reached (see
/// docs/design.md, I13).
pub(crate) struct Store {
    map: DashMap<MapKey, Arc<Chain>, foldhash::fast::RandomState>,
    index: TreeIndex<MapKey, Arc<Chain>>,
}

/// The index's epoch guard: entries borrowed from the index stay valid while it lives. Chain
/// *versions* are protected by a crossbeam-epoch guard, so a scan holds one of each.
pub(crate) type IndexGuard = scc::Guard;

/// The key as both maps hold it: keys up to 24 bytes live inline in the map's bucket and in
/// the index leaf, so a lookup or a scan step compares the key without another cache miss
/// (a `Bytes` key points to a separate allocation, and cloning one touches a shared
/// reference count). Same size as `Bytes` (32 bytes); hashes and compares like `[u8]`.
pub(crate) type MapKey = smallvec::SmallVec<[u8; 24]>;

/// A range of keys with owned bounds, as the scans take it.
pub(crate) type KeyRange = (Bound<Bytes>, Bound<Bytes>);

/// A range of keys with borrowed bounds, as the index takes it.
pub(crate) type KeyRangeRef<'r> = (Bound<&'r [u8]>, Bound<&'r [u8]>);

/// The ordered-index iterator a scan walks (double-ended), valid while the guard `'g` lives.
pub(crate) type IndexRange<'g, 'r> =
    scc::tree_index::Range<'g, MapKey, Arc<Chain>, [u8], KeyRangeRef<'r>>;

/// Borrows an owned range's bounds.
pub(crate) fn borrow_range(range: &KeyRange) -> KeyRangeRef<'_> {
    fn b(bound: &Bound<Bytes>) -> Bound<&[u8]> {
        match bound {
            Bound::Included(k) => Bound::Included(k.as_ref()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    (b(&range.0), b(&range.1))
}

impl Store {
    pub(crate) fn new() -> Self {
        Self {
            map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            index: TreeIndex::new(),
        }
    }

    /// Runs `f` on the chain of `key` if it has one (holding the shard's read lock, so the
    /// chain stays in the map meanwhile).
    #[inline]
    pub(crate) fn with_chain<R>(&self, key: &[u8], f: impl FnOnce(&Chain) -> R) -> Option<R> {
        self.map.get(key).map(|c| f(&c))
    }

    /// The chain of `key`, if it has one.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<Chain>> {
        self.map.get(key).map(|c| Arc::clone(&c))
    }

    /// The chain of `key`, created empty (in both maps) if the key has none.
    pub(crate) fn resolve(&self, key: &[u8]) -> Arc<Chain> {
        if let Some(c) = self.map.get(key) {
            return Arc::clone(&c);
        }
        let entry = self.map.entry(MapKey::from_slice(key)).or_insert_with(|| {
            let chain = Arc::new(Chain::new());
            // Under the shard's write lock: see the type's documentation. The key is in neither
            // map (a removal takes it out of both under this same lock), so the insert succeeds.
            let inserted = self
                .index
                .insert_sync(MapKey::from_slice(key), Arc::clone(&chain));
            debug_assert!(inserted.is_ok(), "the index had a key the map did not");
            chain
        });
        Arc::clone(&entry)
    }

    /// Removes `key` from both maps if `writer` holds its current chain and that chain is
    /// empty. The chain is marked removed first, so a committer that locks it afterwards
    /// re-resolves the key and creates a fresh chain. Returns whether the key left.
    pub(crate) fn remove_if_empty(
        &self,
        key: &[u8],
        writer: &ChainWriter<'_>,
        guard: &Guard,
    ) -> bool {
        if writer.is_removed() || !writer.is_empty(guard) {
            return false;
        }
        let chain: *const Chain = writer.chain();
        self.map
            .remove_if(key, |_, c| {
                let same = std::ptr::eq(Arc::as_ptr(c), chain);
                if same {
                    writer.mark_removed();
                    // Under the shard's write lock: see the type's documentation.
                    self.index
                        .remove_if_sync(key, |c| std::ptr::eq(Arc::as_ptr(c), chain));
                }
                same
            })
            .is_some()
    }

    /// Ordered iteration over `range` (double-ended) while `guard` lives. The range must not
    /// be empty (see `iter::is_empty_range`).
    pub(crate) fn range<'g, 'r>(
        &'g self,
        range: KeyRangeRef<'r>,
        guard: &'g IndexGuard,
    ) -> IndexRange<'g, 'r> {
        self.index.range(range, guard)
    }

    /// Calls `f` on each key and chain of `range` in ascending key order until `f` breaks.
    /// The range must not be empty (see `iter::is_empty_range`).
    ///
    /// Forward only, on purpose: the index's forward walk visits every entry that was in it
    /// when the walk began and was not removed, whatever splits and merges happen meanwhile,
    /// but its backward walk can step over entries while a neighbouring leaf splits or empties
    /// (`tests/scans_under_churn.rs` catches it). Descending scans find their batch's lower
    /// edge with [`back_edge`](Self::back_edge) and then read the batch through this.
    ///
    /// Chains are read in batches: the walk first collects a batch of entries from the leaves
    /// and prefetches each one's chain, then hands them to `f`, so the chains' cache misses
    /// overlap. Batches start small, so a scan that stops at its first keys prefetches little
    /// it does not read.
    pub(crate) fn walk<'g>(
        &'g self,
        range: KeyRangeRef<'_>,
        guard: &'g IndexGuard,
        mut f: impl FnMut(&'g [u8], &'g Chain) -> ControlFlow<()>,
    ) {
        /// First batch, and how many chains a batch prefetches at most: enough misses in
        /// flight to hide one's latency.
        const FIRST: usize = 4;
        const MAX: usize = 16;
        let mut entries = self.range(range, guard);
        let mut batch: SmallVec<[(&'g [u8], &'g Chain); MAX]> = SmallVec::new();
        let mut size = FIRST;
        loop {
            batch.extend(entries.by_ref().take(size).map(|(key, chain)| {
                chain.prefetch();
                (&key[..], &**chain)
            }));
            let last_batch = batch.len() < size;
            for (key, chain) in batch.drain(..) {
                if f(key, chain).is_break() {
                    return;
                }
            }
            if last_batch {
                return;
            }
            size = MAX;
        }
    }

    /// The `count`-th largest key of `range`: the lower edge of a descending batch of `count`
    /// entries, or `None` if the range holds fewer (the batch reaches the range's start).
    ///
    /// A hint, not a read: the backward walk may step over entries under concurrent change
    /// (see [`walk`](Self::walk)), which only makes the edge lower or `None`. Any edge inside
    /// the range is correct for the caller, who reads the batch from the edge to the range's
    /// end forwards (missing nothing) and continues below the edge.
    pub(crate) fn back_edge<'g>(
        &'g self,
        range: KeyRangeRef<'_>,
        count: usize,
        guard: &'g IndexGuard,
    ) -> Option<&'g [u8]> {
        debug_assert!(count > 0);
        let edge: &[u8] = self.range(range, guard).rev().nth(count - 1)?.0;
        // Belt and braces: an edge outside the range would make the caller read outside it.
        RangeBounds::<[u8]>::contains(&range, edge).then_some(edge)
    }

    /// Calls `f` on every key and chain in key order, pinning one guard per batch of keys (so
    /// a long walk never holds back memory reclamation for long, and `f` runs unpinned, free
    /// to lock shards and remove keys).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &Arc<Chain>)) {
        const BATCH: usize = 256;
        let mut from: Bound<MapKey> = Bound::Unbounded;
        let mut batch: Vec<(MapKey, Arc<Chain>)> = Vec::with_capacity(BATCH);
        loop {
            {
                let guard = IndexGuard::new();
                let start = match &from {
                    Bound::Excluded(k) => Bound::Excluded(&k[..]),
                    _ => Bound::Unbounded,
                };
                batch.extend(
                    self.range((start, Bound::Unbounded), &guard)
                        .take(BATCH)
                        .map(|(k, c)| (k.clone(), Arc::clone(c))),
                );
            }
            for (k, c) in &batch {
                f(k, c);
            }
            match batch.pop() {
                Some((last, _)) if batch.len() + 1 == BATCH => from = Bound::Excluded(last),
                _ => return,
            }
            batch.clear();
        }
    }

    /// Number of keys with a chain (including chains whose newest version is a tombstone).
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
