//! The delta's ordered list under loom: a copy-on-write sorted array published in an
//! [`EpochCell`], with the API of the production list ([`Parts`](super::parts::Parts)).
//!
//! crossbeam-skiplist zero-fills its towers, which loom's atomics do not allow. Both are
//! linearizable ordered maps, which is all the index protocol relies on (model 13 checks the
//! protocol, not the map).

use std::ops::Bound;

use crossbeam_epoch::Guard;

use super::merge::{run_iter, Reads, RunIter};
use super::run::{Run, RunEntry};
use crate::key::{KeyRangeRef, MapKey};
use crate::raw::{Chain, EpochCell};
use crate::sync::{Arc, Mutex, StrongArc};

/// A sorted array of `(key, chain)`, rewritten whole by each change (writers one at a time).
pub(crate) struct CowList {
    current: EpochCell<Run>,
    writer: Mutex<()>,
}

/// The list's entries in a range, in order from either end.
pub(crate) type CowListIter<'g, 'r> = RunIter<'g>;

/// No partition bounds: the list is one array.
pub(crate) fn sample(_keys: &[RunEntry]) -> Vec<MapKey> {
    Vec::new()
}

impl CowList {
    /// An empty list (the bounds production partitions at do not apply).
    pub(crate) fn new(_bounds: Vec<MapKey>) -> Self {
        Self {
            current: EpochCell::new(Run::empty()),
            writer: Mutex::new(()),
        }
    }

    /// Adds `key` with `chain`, replacing the key's previous entry.
    pub(crate) fn insert(&self, key: &[u8], chain: StrongArc<Chain>, guard: &Guard) {
        self.rewrite(guard, |all| {
            all.retain(|(k, _)| &k[..] != key);
            let at = all.partition_point(|(k, _)| &k[..] < key);
            all.insert(at, (MapKey::from_slice(key), chain));
        });
    }

    /// Removes `key`'s entry if it holds `chain`; returns whether it did.
    pub(crate) fn remove_chain(&self, key: &[u8], chain: &Chain, guard: &Guard) -> bool {
        self.rewrite(guard, |all| {
            let before = all.len();
            all.retain(|(k, c)| !(&k[..] == key && std::ptr::eq(Arc::as_ptr(c), chain)));
            all.len() < before
        })
    }

    /// Never: removals leave no empty parts behind in one array.
    pub(crate) fn is_untidy(&self) -> bool {
        false
    }

    /// Nothing to tidy.
    pub(crate) fn tidy(&self, _guard: &Guard) {}

    pub(crate) fn len(&self) -> usize {
        self.current.load(&crossbeam_epoch::pin()).len()
    }

    /// A copy of every entry, in key order.
    pub(crate) fn entries(&self) -> Vec<RunEntry> {
        self.entries_pinned(&crossbeam_epoch::pin())
    }

    /// The entries in `range`, while `guard` is pinned.
    pub(crate) fn range<'g, 'r>(
        &'g self,
        range: KeyRangeRef<'r>,
        guard: &'g Guard,
    ) -> CowListIter<'g, 'r> {
        run_iter(self.current.load(guard).slice(range), Reads::Versions)
    }

    /// Copies the entries, applies `f`, and publishes the result.
    fn rewrite<R>(&self, guard: &Guard, f: impl FnOnce(&mut Vec<RunEntry>) -> R) -> R {
        let _writer = self.writer.lock();
        let mut all = self.entries_pinned(guard);
        let result = f(&mut all);
        self.current
            .replace(Run::empty().merged_with(all, None), guard);
        result
    }

    fn entries_pinned(&self, guard: &Guard) -> Vec<RunEntry> {
        self.current
            .load(guard)
            .slice((Bound::Unbounded, Bound::Unbounded))
            .entries
            .iter()
            .map(|(k, c)| (k.clone(), Arc::clone(c)))
            .collect()
    }
}
