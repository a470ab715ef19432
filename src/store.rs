//! The key space: a lock-striped hash map from key to version chain for point lookups, and an
//! ordered skip-list index over the same chains for scans.

use std::ops::Bound;

use bytes::Bytes;
use crossbeam_skiplist::SkipMap;
use dashmap::DashMap;

use crate::raw::{Chain, ChainWriter};
use crate::sync::Arc;

/// Maps every key that has (or is about to receive) versions to its chain, twice: hashed for
/// O(1) point lookups, ordered for O(log n + k) scans.
///
/// Both maps hold the same `Arc<Chain>`, and both are changed for a key only while that key's
/// `DashMap` shard is write-locked (inside `entry` / `remove_if`), so they agree on which chain
/// a key has. Transient disagreement is harmless to readers: a chain being created is empty
/// (invisible) and a chain being removed holds nothing any snapshot can see.
pub(crate) struct Store {
    map: DashMap<MapKey, Arc<Chain>, foldhash::fast::RandomState>,
    index: SkipMap<Bytes, Arc<Chain>>,
}

/// The hash map's key: keys up to 24 bytes live inline in the map's bucket, so a point lookup
/// compares the key without a second cache miss (a `Bytes` key points to a separate
/// allocation). Same size as `Bytes` (32 bytes); hashes and compares like `[u8]`.
type MapKey = smallvec::SmallVec<[u8; 24]>;

/// A range of keys with owned bounds, as the scans take it.
pub(crate) type KeyRange = (Bound<Bytes>, Bound<Bytes>);

/// The ordered-index iterator a scan walks.
pub(crate) type IndexRange<'a> =
    crossbeam_skiplist::map::Range<'a, Bytes, KeyRange, Bytes, Arc<Chain>>;

impl Store {
    pub(crate) fn new() -> Self {
        Self {
            map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            index: SkipMap::new(),
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
    pub(crate) fn resolve(&self, key: &Bytes) -> Arc<Chain> {
        if let Some(c) = self.map.get(key.as_ref()) {
            return Arc::clone(&c);
        }
        let entry = self.map.entry(MapKey::from_slice(key)).or_insert_with(|| {
            let chain = Arc::new(Chain::new());
            // Under the shard's write lock: see the type's documentation.
            self.index.insert(key.clone(), Arc::clone(&chain));
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
        guard: &crossbeam_epoch::Guard,
    ) -> bool {
        if writer.is_removed() || !writer.is_empty(guard) {
            return false;
        }
        let chain: *const Chain = writer.chain();
        let removed = self
            .map
            .remove_if(key, |_, c| {
                let same = std::ptr::eq(Arc::as_ptr(c), chain);
                if same {
                    writer.mark_removed();
                    // Under the shard's write lock: see the type's documentation.
                    if let Some(e) = self.index.get(key) {
                        if std::ptr::eq(Arc::as_ptr(e.value()), chain) {
                            e.remove();
                        }
                    }
                }
                same
            })
            .is_some();
        removed
    }

    /// Ordered iteration over `range` (double-ended).
    pub(crate) fn range(&self, range: KeyRange) -> IndexRange<'_> {
        self.index.range(range)
    }

    /// Ordered iteration over every chain, for the full collector sweep and statistics.
    pub(crate) fn iter(&self) -> crossbeam_skiplist::map::Iter<'_, Bytes, Arc<Chain>> {
        self.index.iter()
    }

    /// Number of keys with a chain (including chains whose newest version is a tombstone).
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
