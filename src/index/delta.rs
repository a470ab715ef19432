//! A delta: the keys created since the run was built, in a concurrent ordered map.

use crossbeam_epoch::Guard;

#[cfg(not(loom))]
use super::merge::Item;
use super::run::RunEntry;
use crate::raw::Chain;
use crate::store::KeyRangeRef;
use crate::sync::Arc;

/// Keys created since the run was built, each with its chain (one entry per key: a re-created
/// key replaces its removed chain). Inserts and removals run concurrently with walks.
///
/// In production a crossbeam skip list. Under loom a copy-on-write sorted array published in
/// an [`EpochCell`](crate::raw::EpochCell): crossbeam-skiplist zero-fills its towers, which
/// loom's atomics do not allow. Both are linearizable ordered maps, which is all the index
/// protocol relies on (model 13 checks the protocol, not the map).
pub(crate) struct Delta {
    #[cfg(not(loom))]
    list: crossbeam_skiplist::base::SkipList<crate::store::MapKey, Arc<Chain>>,
    #[cfg(loom)]
    cow: crate::raw::EpochCell<super::run::Run>,
    #[cfg(loom)]
    writer: crate::sync::Mutex<()>,
}

/// A delta's entries in a range, in order from either end.
#[cfg(not(loom))]
pub(crate) type DeltaIter<'g, 'r> = std::iter::Map<
    // Fused: crossbeam's range restarts from its bound when called again after `None`.
    std::iter::Fuse<
        crossbeam_skiplist::base::Range<
            'g,
            'g,
            [u8],
            KeyRangeRef<'r>,
            crate::store::MapKey,
            Arc<Chain>,
        >,
    >,
    fn(SkipEntry<'g>) -> Item<'g>,
>;
/// A delta's entries in a range, in order from either end.
#[cfg(loom)]
pub(crate) type DeltaIter<'g, 'r> = super::merge::RunIter<'g>;

#[cfg(not(loom))]
type SkipEntry<'g> = crossbeam_skiplist::base::Entry<'g, 'g, crate::store::MapKey, Arc<Chain>>;

#[cfg(not(loom))]
fn skip_item(e: SkipEntry<'_>) -> Item<'_> {
    (&e.key()[..], e.value())
}

#[cfg(not(loom))]
impl Delta {
    pub(crate) fn new() -> Self {
        Self {
            list: crossbeam_skiplist::base::SkipList::new(
                crossbeam_epoch::default_collector().clone(),
            ),
        }
    }

    /// Adds `key` with `chain`, replacing the key's previous entry.
    pub(crate) fn insert(&self, key: &[u8], chain: Arc<Chain>, guard: &Guard) {
        self.list
            .insert(crate::store::MapKey::from_slice(key), chain, guard)
            .release(guard);
    }

    /// Removes `key`'s entry if it holds `chain`; returns whether it did.
    pub(crate) fn remove_chain(&self, key: &[u8], chain: &Chain, guard: &Guard) -> bool {
        match self.list.get(key, guard) {
            Some(e) if std::ptr::eq(Arc::as_ptr(e.value()), chain) => e.remove(),
            _ => false,
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// The entries in `range`, while `guard` is pinned.
    pub(crate) fn range<'g, 'r>(
        &'g self,
        range: KeyRangeRef<'r>,
        guard: &'g Guard,
    ) -> DeltaIter<'g, 'r> {
        self.list
            .range(range, guard)
            .fuse()
            .map(skip_item as fn(SkipEntry<'g>) -> Item<'g>)
    }

    /// A copy of every entry, in key order.
    pub(crate) fn to_vec(&self) -> Vec<RunEntry> {
        let guard = crossbeam_epoch::pin();
        self.list
            .iter(&guard)
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect()
    }
}

#[cfg(loom)]
impl Delta {
    pub(crate) fn new() -> Self {
        Self {
            cow: crate::raw::EpochCell::new(super::run::Run::empty()),
            writer: crate::sync::Mutex::new(()),
        }
    }

    pub(crate) fn insert(&self, key: &[u8], chain: Arc<Chain>, guard: &Guard) {
        self.rewrite(guard, |all| {
            all.retain(|(k, _)| &k[..] != key);
            let at = all.partition_point(|(k, _)| &k[..] < key);
            all.insert(at, (crate::store::MapKey::from_slice(key), chain));
        });
    }

    pub(crate) fn remove_chain(&self, key: &[u8], chain: &Chain, guard: &Guard) -> bool {
        self.rewrite(guard, |all| {
            let before = all.len();
            all.retain(|(k, c)| !(&k[..] == key && std::ptr::eq(Arc::as_ptr(c), chain)));
            all.len() < before
        })
    }

    /// Copies the entries, applies `f`, and publishes the result (writers one at a time).
    fn rewrite<R>(&self, guard: &Guard, f: impl FnOnce(&mut Vec<RunEntry>) -> R) -> R {
        let _writer = self.writer.lock();
        let mut all = self.to_vec_pinned(guard);
        let result = f(&mut all);
        self.cow
            .replace(super::run::Run::empty().merged_with(all), guard);
        result
    }

    pub(crate) fn len(&self) -> usize {
        self.cow.load(&crossbeam_epoch::pin()).len()
    }

    pub(crate) fn range<'g, 'r>(
        &'g self,
        range: KeyRangeRef<'r>,
        guard: &'g Guard,
    ) -> DeltaIter<'g, 'r> {
        super::merge::run_iter(self.cow.load(guard).slice(range))
    }

    pub(crate) fn to_vec(&self) -> Vec<RunEntry> {
        self.to_vec_pinned(&crossbeam_epoch::pin())
    }

    fn to_vec_pinned(&self, guard: &Guard) -> Vec<RunEntry> {
        let whole = (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
        self.cow
            .load(guard)
            .slice(whole)
            .iter()
            .map(|(k, c)| (k.clone(), Arc::clone(c)))
            .collect()
    }
}
