//! The key space: a lock-striped hash map from key to version chain for point lookups, and an
//! ordered index over the same chains for scans (a sorted run plus a delta: see `index`).

use std::ops::Bound;

use bytes::Bytes;
use crossbeam_epoch::Guard;
use dashmap::DashMap;

use crate::commit::{ChainSource, Write};
use crate::index::{Entries, Index, Reads, Reason, ScanNeeds};
use crate::key::{KeyRange, KeyRangeRef, MapKey};
use crate::raw::{
    prefetch_line, prefetch_lines, Chain, ChainWriter, HeadCache, MirroredChain, Unlinked,
};
use crate::sync::StrongArc;

/// Maps every key that has (or is about to receive) versions to its chain, twice: hashed for
/// O(1) point lookups, ordered for O(log n + k) scans.
///
/// Both hold the same `StrongArc<Chain>`, and a key's chain is pushed into or dropped from the index
/// only while that key's `DashMap` shard is write-locked (inside `entry` / `remove_if`), so a
/// key's old chain is marked removed before its new one is pushed; scans later place pushed
/// chains into an ordered list in push order, one placer at a time, so the new chain ends up
/// there, never the old one. The map is the truth about which chain a key has; the index may
/// also still hold chains the key had before (removed while empty, they hold nothing any
/// snapshot can see, and scans skip them). A chain being created is empty (invisible) until its first commit.
///
/// The index is walked under a caller's epoch guard: its entries are borrowed for the guard's
/// lifetime instead of reference-counted per step, which is what makes scans cheap. Scans
/// therefore read in short batches, each under one guard (see `iter.rs`).
pub(crate) struct Store {
    map: DashMap<MapKey, MapEntry, foldhash::fast::RandomState>,
    /// Shared (std's `Arc`, not the loom facade's: loom never sees a `Store`) with the
    /// builder thread, which holds it weakly.
    index: std::sync::Arc<Index>,
    /// Rebuilds the index off the scans' threads (see `index::builder`).
    #[cfg(not(loom))]
    builder: crate::index::Builder,
}

/// A key's entry in the hashed map: its chain, and a mirror of the chain's head cache.
///
/// A point read whose answer is the newest version (nearly all of them) finds it in the
/// mirror, in the map's bucket, without touching the chain: one dependent cache miss fewer.
/// The committer installing a version rewrites the mirror under the chain's lock, right after
/// the chain's own cache ([`ChainWriter::install_node`], which checks it is handed this
/// entry). The entry lives exactly as long as the key maps to this chain.
pub(crate) type MapEntry = MirroredChain;

/// How many entries ahead [`Store::loaded`] asks for the keys and values it will copy: enough
/// misses in flight to overlap, few enough that the lines are still cached when used.
const LOAD_PREFETCH_DISTANCE: usize = 8;

impl Store {
    pub(crate) fn new() -> Self {
        Self {
            map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            index: std::sync::Arc::new(Index::new()),
            #[cfg(not(loom))]
            builder: crate::index::Builder::new(),
        }
    }

    /// Runs `f` on the chain of `key` and its head mirror (see [`MapEntry`]), if it has one
    /// (holding the shard's read lock, so the chain stays in the map meanwhile).
    #[inline]
    pub(crate) fn with_mirrored_chain<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&Chain, &HeadCache) -> R,
    ) -> Option<R> {
        self.map.get(key).map(|e| f(e.chain(), e.mirror()))
    }

    /// Runs `f` with the head mirror of `key` if `key` maps to `chain` (always the case while
    /// the caller holds `chain`'s lock and it is not marked removed), else with `None`.
    pub(crate) fn with_mirror<R>(
        &self,
        key: &[u8],
        chain: &Chain,
        f: impl FnOnce(Option<&MapEntry>) -> R,
    ) -> R {
        let entry = self.map.get(key);
        let mirror = entry
            .as_deref()
            .filter(|e| std::ptr::eq(StrongArc::as_ptr(e.chain()), chain));
        debug_assert!(mirror.is_some(), "a locked live chain left the map");
        f(mirror)
    }

    /// Runs `f` with `key`'s chain locked and its head mirror, if `key` has a chain whose lock
    /// is free; `None` (at once) otherwise. The shard's read lock is held across `f`, so `f`
    /// must not wait for anything that may need it or a chain lock (see
    /// `ChainSource::with_locked`): the shard's lock is reader-preferring, but a thread
    /// waiting for its write lock may hold a chain lock.
    pub(crate) fn with_locked<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&ChainWriter<'_>, &MapEntry) -> R,
    ) -> Option<R> {
        let entry = self.map.get(key)?;
        let writer = entry.chain().try_lock()?;
        // A chain is marked removed only under its shard's write lock, as it leaves the map.
        debug_assert!(!writer.is_removed(), "a chain in the map is live");
        let out = f(&writer, &entry);
        // Unlock before the shard lock is released (the order the locals would drop in too).
        drop(writer);
        Some(out)
    }

    /// Whether the write lock of `key`'s map shard could be taken right now (nobody holds the
    /// shard locked): for tests of lock release.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn shard_write_lock_is_free(&self, key: &[u8]) -> bool {
        !matches!(
            self.map.try_get_mut(key),
            dashmap::try_result::TryResult::Locked
        )
    }

    /// A store holding one version per key (`(key, value, ts)`, keys unique), as recovery
    /// found them: each key's newest value and the timestamp that wrote it.
    ///
    /// Built before the store is shared (no reader or committer can see it yet), so each key
    /// takes one map operation, not a committer's lookup, insertion and mirror lookup; and
    /// the map is sized for every key at once instead of growing (rehashing) as they arrive.
    pub(crate) fn loaded(entries: Vec<(Bytes, Bytes, u64)>) -> Self {
        let store = Self {
            map: DashMap::with_capacity_and_hasher(
                entries.len(),
                foldhash::fast::RandomState::default(),
            ),
            ..Self::new()
        };
        let guard = crossbeam_epoch::pin();
        for (at, (key, value, ts)) in entries.iter().enumerate() {
            // Recovered keys and values lie in the log's segments in log order, not key
            // order: ask for the ones a few entries ahead now, so that their cache misses
            // overlap instead of each stalling the copy into the store.
            if let Some((key, value, _)) = entries.get(at + LOAD_PREFETCH_DISTANCE) {
                prefetch_lines(key);
                prefetch_lines(value);
                prefetch_line(value.as_ptr_range().end.wrapping_sub(1));
            }
            let entry = store.entry_or_insert(key);
            let writer = entry.chain().lock();
            writer.install_node(*ts, Unlinked::new(Some(value)), Some(&entry), &guard);
        }
        drop(guard);
        store
    }

    /// The chain of `key`, if it has one.
    pub(crate) fn get(&self, key: &[u8]) -> Option<StrongArc<Chain>> {
        self.map.get(key).map(|e| StrongArc::clone(e.chain()))
    }

    /// The chain of `key`, created empty (in both maps) if the key has none.
    pub(crate) fn resolve(&self, key: &[u8]) -> StrongArc<Chain> {
        if let Some(e) = self.map.get(key) {
            return StrongArc::clone(e.chain());
        }
        StrongArc::clone(self.entry_or_insert(key).chain())
    }

    /// `key`'s entry, created with an empty chain (pushed into the index too) if it has none.
    fn entry_or_insert(&self, key: &[u8]) -> dashmap::mapref::one::RefMut<'_, MapKey, MapEntry> {
        self.map.entry(MapKey::from_slice(key)).or_insert_with(|| {
            let entry = MapEntry::new();
            // Under the shard's write lock: see the type's documentation.
            self.index.insert(key, StrongArc::clone(entry.chain()));
            entry
        })
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
            .remove_if(key, |_, e| {
                let same = std::ptr::eq(StrongArc::as_ptr(e.chain()), chain);
                if same {
                    writer.mark_removed();
                    // Under the shard's write lock: see the type's documentation.
                    self.index.remove(key, e.chain(), guard);
                }
                same
            })
            .is_some()
    }

    /// Ordered iteration over `range` (double-ended) while `guard` is pinned, one [`Group`]
    /// per key. The range must not be empty (see `iter::is_empty_range`).
    ///
    /// [`Group`]: crate::index::merge::Group
    pub(crate) fn range<'g, 'r>(
        &'g self,
        range: KeyRangeRef<'r>,
        reads: Reads,
        guard: &'g Guard,
    ) -> Entries<'g, 'r> {
        self.index.range(range, reads, guard)
    }

    /// Marks `keys` changed for the index's copies of chain heads: a committer calls this
    /// after installing versions of them, before retiring or publishing (see
    /// `raw::run_heads`).
    pub(crate) fn note_changed<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>, guard: &Guard) {
        self.index.note_changed(keys, guard);
    }

    /// Lets the index rebuild its sorted run if `reason` calls for it (see [`Reason`]). For
    /// a scan about to walk the index, the rebuild (and freeing the runs it replaces) goes to
    /// the background builder: the scan walks the index as it is. Only after a bulk of
    /// inserts that no scan placed does the scan sort them into a run itself (see
    /// [`ScanNeeds::BuildHere`]).
    pub(crate) fn maintain_index(&self, reason: Reason) {
        match reason {
            Reason::Sweep => {
                self.index.rebuild_if_due(reason);
            }
            // Once a scan started the builder thread, it rebuilds and frees for the collector
            // too: the collector runs on a committer's thread.
            Reason::Maintenance => {
                let handed_over =
                    self.has_builder() && (!self.index.has_work(reason) || self.request_build());
                if !handed_over {
                    self.index.rebuild_if_due(reason);
                }
            }
            Reason::Scan => match self.index.scan_needs() {
                ScanNeeds::Nothing => {}
                ScanNeeds::BuildHere => {
                    self.index.build_bulk();
                }
                ScanNeeds::Rebuild | ScanNeeds::Free => {
                    if !self.request_build() {
                        // No builder thread: rebuild here, as a last resort.
                        self.index.rebuild_if_due(reason);
                    }
                }
            },
        }
    }

    /// Keys in the index's run, sealed delta and active delta (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn index_sizes(&self) -> (usize, usize, usize) {
        self.index.sizes()
    }

    /// Whether the builder thread was started.
    fn has_builder(&self) -> bool {
        #[cfg(not(loom))]
        {
            self.builder.is_started()
        }
        #[cfg(loom)]
        {
            false
        }
    }

    /// Asks the builder thread to rebuild if due and free replaced runs (starting it if need
    /// be); `false` if there is none.
    fn request_build(&self) -> bool {
        #[cfg(not(loom))]
        {
            self.builder.request(&self.index)
        }
        #[cfg(loom)]
        {
            false
        }
    }

    /// Calls `f` on every key in the index with its live chain (a key may still have an old,
    /// removed chain in the index as well; those are empty and skipped), in key order, pinning
    /// one guard per batch of keys (so a long walk never holds back memory reclamation for
    /// long, and `f` runs unpinned, free to lock shards and remove keys).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &StrongArc<Chain>)) {
        const BATCH: usize = 256;
        // A walk of every key after a load sorts the bulk rather than place it.
        if self.index.scan_needs() == ScanNeeds::BuildHere {
            self.index.build_bulk();
        }
        let mut from: Option<MapKey> = None;
        let mut batch: Vec<(MapKey, StrongArc<Chain>)> = Vec::with_capacity(BATCH);
        loop {
            let mut last = None;
            {
                let guard = crossbeam_epoch::pin();
                let start = from
                    .as_ref()
                    .map_or(Bound::Unbounded, |k| Bound::Excluded(&k[..]));
                for g in self
                    .range((start, Bound::Unbounded), Reads::Versions, &guard)
                    .take(BATCH)
                {
                    let key = MapKey::from_slice(g.key());
                    let live = g.chains().filter(|c| !c.is_removed());
                    batch.extend(live.map(|c| (key.clone(), StrongArc::clone(c))));
                    last = Some(key);
                }
            }
            for (k, c) in batch.drain(..) {
                f(&k, &c);
            }
            match last {
                Some(key) => from = Some(key),
                None => return,
            }
        }
    }

    /// Number of keys with a chain (including chains whose newest version is a tombstone).
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Heap bytes of each structure, for memory accounting (see [`Db::memory_breakdown`]).
    /// Read with the map's shards read-locked one at a time; O(keys + versions).
    ///
    /// [`Db::memory_breakdown`]: crate::Db::memory_breakdown
    pub(crate) fn memory_breakdown(&self) -> Vec<(&'static str, usize)> {
        let guard = crossbeam_epoch::pin();
        // A hash table is one allocation per shard: buckets of (key, entry) and their
        // control bytes, empty buckets included.
        let tables: usize = self
            .map
            .shards()
            .iter()
            .map(|shard| shard.read().allocation_info().1.size())
            .sum();
        let (mut spilled, mut nodes) = (0, 0);
        for entry in self.map.iter() {
            spilled += entry.key().heap_bytes();
            nodes += entry.value().chain().node_bytes(&guard);
        }
        // A `StrongArc`'s allocation: its count, then the chain.
        let chains = self.map.len() * (size_of::<usize>() + size_of::<Chain>());
        let run = self.index.run_bytes();
        vec![
            (
                "map: buckets (key + chain pointer + head mirror), control bytes, empty slots",
                tables + spilled,
            ),
            (
                "chains (reference count + Chain with its head cache)",
                chains,
            ),
            ("version nodes (header + value, padded)", nodes),
            ("scan index: run entries (key + chain pointer)", run.entries),
            ("scan index: head copies + changed-key bits", run.heads),
            ("scan index: fences", run.fences),
        ]
    }

    /// Gives the key map's spare capacity back when it holds more than `factor` times its
    /// length in slots (and more than `min_capacity`): a hash map never shrinks by itself, so
    /// after a peak of keys it would keep the peak's memory. Each shard is rehashed under its
    /// write lock in turn, so lookups in other shards go on.
    pub(crate) fn shrink_if_sparse(&self, factor: usize, min_capacity: usize) {
        let capacity = self.map.capacity();
        if capacity > min_capacity && self.map.len().saturating_mul(factor) < capacity {
            self.map.shrink_to_fit();
        }
    }
}

impl ChainSource for Store {
    fn resolve(&self, key: &[u8]) -> StrongArc<Chain> {
        Store::resolve(self, key)
    }

    fn lookup(&self, key: &[u8]) -> Option<StrongArc<Chain>> {
        self.get(key)
    }

    fn find_in_range(
        &self,
        range: &KeyRange,
        hit: &mut dyn FnMut(&[u8], &Chain) -> bool,
    ) -> Option<Bytes> {
        if crate::iter::is_empty_range(range) {
            return None;
        }
        let guard = crossbeam_epoch::pin();
        self.range(
            crate::key::borrow_range(range),
            crate::index::Reads::Versions,
            &guard,
        )
        .find(|g| {
            // A removed chain is empty for good (the key's new chain, if any, is in the
            // group too); it may still be briefly locked by a committer about to
            // re-resolve it, which is no conflict.
            g.chains().any(|c| !c.is_removed() && hit(g.key(), c))
        })
        .map(|g| Bytes::copy_from_slice(g.key()))
    }

    fn discard_if_empty(
        &self,
        key: &[u8],
        writer: &ChainWriter<'_>,
        guard: &crossbeam_epoch::Guard,
    ) {
        self.remove_if_empty(key, writer, guard);
    }

    fn with_mirror<R>(
        &self,
        key: &[u8],
        chain: &Chain,
        f: impl FnOnce(Option<&MirroredChain>) -> R,
    ) -> R {
        Store::with_mirror(self, key, chain, f)
    }

    fn with_locked<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&ChainWriter<'_>, Option<&MirroredChain>) -> R,
    ) -> Option<R> {
        Store::with_locked(self, key, |writer, mirror| f(writer, Some(mirror)))
    }

    fn note_installed(&self, writes: &[Write<'_>], guard: &crossbeam_epoch::Guard) {
        self.note_changed(writes.iter().map(|w| w.key), guard);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Retries `done` (sleeping between tries) until it holds; returns whether it did within
    /// a generous bound. Waits for the builder thread's progress, asserts nothing about time.
    fn eventually(mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..20_000 {
            if done() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn only_a_scan_needing_a_rebuild_starts_the_builder_and_dropping_the_store_ends_it() {
        let store = Store::new();
        let key = |i: u32| format!("k{i:05}").into_bytes();
        let whole = (Bound::Unbounded, Bound::Unbounded);
        let walk = |store: &Store| {
            let guard = crossbeam_epoch::pin();
            store.range(whole, Reads::Versions, &guard).count()
        };
        for i in 0..2_000 {
            store.resolve(&key(i));
        }
        store.maintain_index(Reason::Maintenance);
        let watch = store.builder.watch();
        // The first scan sorts the bulk itself.
        store.maintain_index(Reason::Scan);
        assert_eq!(store.index.sizes(), (2_000, 0, 0));
        assert!(
            !store.builder.is_started(),
            "no thread without a due rebuild"
        );
        for i in 2_000..2_300 {
            store.resolve(&key(i));
        }
        assert_eq!(walk(&store), 2_300);
        // Placed by the walk, but past the delta's share of the run: the builder's job.
        store.maintain_index(Reason::Scan);
        assert!(store.builder.is_started());
        assert!(
            eventually(|| store.index.sizes() == (2_300, 0, 0)),
            "the builder never rebuilt"
        );
        assert_eq!(walk(&store), 2_300);
        assert_eq!(watch.strong_count(), 2);
        drop(store);
        assert!(
            eventually(|| watch.strong_count() == 0),
            "the builder thread outlived its store"
        );
    }
}
