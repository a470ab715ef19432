//! A delta: the keys created since the run was built, in arrival order until a scan needs
//! them in key order.

use crossbeam_epoch::Guard;

use super::run::RunEntry;
use crate::key::{copy_key, KeyRangeRef};
use crate::raw::Chain;
use crate::sync::{AtomicUsize, Mutex, Ordering, StrongArc};

/// Keys created since the run was built, each with its chain.
///
/// A delta has two parts:
/// - the **bag**, where inserters append `(key, chain)` in arrival order: one push under a
///   short lock, however many keys the delta holds. A workload that creates keys but never
///   scans (YCSB D, a bulk load) pays nothing for order;
/// - the **list**, an ordered map (one entry per key: a re-created key replaces its removed
///   chain) that scans walk. Inserts and removals run concurrently with walks.
///
/// A scan first *places* the bag into the list ([`Delta::place`]), or lets a rebuild sort it
/// straight into the next run. Only a delta whose bag is placed may be walked
/// ([`Delta::is_placed`]); see `index` for the protocol.
///
/// The list is crossbeam skip lists in production, partitioned at keys sampled from the run
/// the delta follows ([`Parts`](super::parts::Parts)). Under loom it is a copy-on-write sorted
/// array published in an [`EpochCell`](crate::raw::EpochCell): crossbeam-skiplist zero-fills
/// its towers, which loom's atomics do not allow. Both are linearizable ordered maps, which
/// is all the index protocol relies on (model 13 checks the protocol, not the map).
pub(crate) struct Delta {
    list: List,
    /// Keys inserted but not yet placed in the list, oldest first. A key's removed chain is
    /// always ahead of its new one (both pushes happen under the key's shard lock, in order),
    /// so placing in order leaves the new chain in the list.
    bag: Mutex<Vec<RunEntry>>,
    /// How many pushed entries are not yet in the list: counts up under the bag's lock before
    /// the push, down after a placer has put the entries it took into the list.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `0` | every entry ever pushed is in the list: a walk of the list sees every key whose insert happened before this load (Acquire, pairing with the placer's Release decrement) |
    /// | `n > 0` | `n` entries wait in the bag or in a placer's hands: the list is incomplete |
    ///
    /// A rebuild that merges a sealed delta's bag into the next run leaves the count as it is:
    /// the list still lacks those keys.
    unplaced: AtomicUsize,
    /// Held while placing, and by a rebuild while it reads the delta, so that it never reads
    /// the list while a placer holds entries taken from the bag but not yet in the list.
    placer: Mutex<()>,
}

#[cfg(loom)]
use super::cow_list::{sample, CowList as List, CowListIter as ListIter};
/// The delta's ordered list: partitioned skip lists, or under loom a copy-on-write sorted
/// array (see [`Delta`]). The one place the index chooses between the two worlds.
#[cfg(not(loom))]
use super::parts::{sample, Parts as List, PartsIter as ListIter};

/// A delta's entries in a range, in order from either end.
pub(crate) type DeltaIter<'g, 'r> = ListIter<'g, 'r>;

impl Delta {
    /// An empty delta whose list is one partition.
    pub(crate) fn new() -> Self {
        Self::split_at(Vec::new())
    }

    /// An empty delta for the keys created after `run` was built: its list is partitioned at
    /// keys sampled from the run, where the new keys are likely to spread like the run's.
    pub(crate) fn after(run: &super::run::Run) -> Self {
        Self::split_at(sample(run.entries()))
    }

    /// An empty delta whose list is split at `bounds` (sorted, unique; one partition under
    /// loom).
    pub(super) fn split_at(bounds: Vec<crate::key::MapKey>) -> Self {
        Self {
            list: List::new(bounds),
            bag: Mutex::new(Vec::new()),
            unplaced: AtomicUsize::new(0),
            placer: Mutex::new(()),
        }
    }

    /// Appends `key` with its new `chain` to the bag.
    pub(crate) fn push(&self, key: &[u8], chain: StrongArc<Chain>) {
        let mut bag = self.bag.lock();
        // Counted before the entry becomes takeable, so no placer's decrement can precede it.
        self.unplaced.fetch_add(1, Ordering::Relaxed);
        bag.push((crate::key::MapKey::from_slice(key), chain));
    }

    /// Whether the list holds every entry pushed before this call (of those whose push
    /// happened before it): only then may the list be walked as the delta.
    pub(crate) fn is_placed(&self) -> bool {
        // Acquire pairs with `place`'s Release decrement: the list inserts before it are seen.
        self.unplaced.load(unplaced_load_ordering()) == 0
    }

    /// How many pushed entries are not in the list yet (a hint: it may change at once).
    pub(crate) fn unplaced(&self) -> usize {
        self.unplaced.load(Ordering::Relaxed)
    }

    /// Moves the bag's entries into the list, in arrival order. Chains removed meanwhile are
    /// left out (those left in the list are dropped at the next rebuild; scans skip them).
    /// Once it returns, every entry pushed before it took the bag is in the list: placers
    /// take turns, so an entry an earlier placer took is in the list before this one starts.
    pub(crate) fn place(&self, guard: &Guard) {
        let _placer = self.placer.lock();
        self.place_holding_placer(guard);
    }

    /// [`Delta::place`], the caller holding the placer lock (or, under an injected fault,
    /// not).
    fn place_holding_placer(&self, guard: &Guard) {
        let taken = std::mem::take(&mut *self.bag.lock());
        if taken.is_empty() {
            return;
        }
        let counted = count_before_placing();
        if counted {
            self.unplaced.fetch_sub(taken.len(), Ordering::Release);
        }
        let mut placing = Placing {
            delta: self,
            rest: taken.into_iter(),
            placed: 0,
            counted,
        };
        while let Some((key, chain)) = placing.rest.as_slice().first() {
            if !chain.is_removed() {
                self.insert(key, StrongArc::clone(chain), guard);
            }
            placing.rest.next();
            placing.placed += 1;
        }
    }

    /// Whether removals emptied parts of the list that walks still look into (see
    /// [`Delta::tidy`]).
    pub(crate) fn is_untidy(&self) -> bool {
        self.list.is_untidy()
    }

    /// Lets walks skip the parts of the list that removals emptied. Takes the placer lock:
    /// no insert into the list runs meanwhile.
    pub(crate) fn tidy(&self, guard: &Guard) {
        let _placer = self.placer.lock();
        self.list.tidy(guard);
    }

    /// Number of entries (placed or not, removed chains included).
    pub(crate) fn len(&self) -> usize {
        self.list_len() + self.unplaced.load(Ordering::Relaxed)
    }

    /// A copy of every entry, placed or not, whose chain is not removed, in key order (keys
    /// unique: a key has at most one chain not removed). For a rebuild, once the delta is
    /// sealed (nothing is pushed any more).
    ///
    /// Holds the placer lock only briefly, so that a scan (or a validation) placing the
    /// sealed delta meanwhile waits for no rebuild: a bag of at most [`PLACE_BEFORE_READING`]
    /// entries (scans place bags as they go, so that is the usual case) is placed under the
    /// lock, after which the list holds every entry and is read without it; a larger bag (a
    /// bulk no scan placed) is copied under the lock with the list, since placing it would
    /// take longer than the copy.
    pub(crate) fn to_vec(&self) -> Vec<RunEntry> {
        // No placer holds entries taken from the bag and not yet in the list while we read.
        let placer = (!read_while_placing()).then(|| self.placer.lock());
        let guard = crossbeam_epoch::pin();
        let mut all = if self.bag.lock().len() <= PLACE_BEFORE_READING {
            self.place_holding_placer(&guard);
            // Every entry is in the list now, and none is pushed or taken any more.
            drop(placer);
            self.list_entries()
        } else {
            let mut all = self.list_entries();
            // Copied, not taken: a scan may still place them (harmlessly, into this sealed
            // list), and nothing is lost if this rebuild does not finish.
            all.extend(
                self.bag
                    .lock()
                    .iter()
                    .map(|(k, c)| (copy_key(k), StrongArc::clone(c))),
            );
            drop(placer);
            all
        };
        drop(guard);
        all.retain(|(_, c)| !c.is_removed());
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        debug_assert!(
            all.windows(2).all(|w| w[0].0 < w[1].0),
            "two live chains for one key"
        );
        all
    }
}

/// The largest bag a rebuild places into a sealed delta's list before reading the list (a
/// larger one it copies, holding the placer lock meanwhile).
const PLACE_BEFORE_READING: usize = 4_096;

/// The entries a placer took from the bag. On drop, whatever is not yet in the list (only
/// after a panic mid-way) goes back to the front of the bag, ahead of later pushes as
/// arrival order requires, and the count drops by what was placed, after the list inserts.
struct Placing<'d> {
    delta: &'d Delta,
    rest: std::vec::IntoIter<RunEntry>,
    placed: usize,
    /// The count was already lowered (only under an injected fault).
    counted: bool,
}

impl Drop for Placing<'_> {
    fn drop(&mut self) {
        let rest: Vec<RunEntry> = self.rest.by_ref().collect();
        if !rest.is_empty() {
            self.delta.bag.lock().splice(0..0, rest);
        }
        if !self.counted && self.placed > 0 {
            // Release: a scan that reads the lower count sees the list inserts before it.
            self.delta
                .unplaced
                .fetch_sub(self.placed, Ordering::Release);
        }
    }
}

/// Whether a placer lowers the count before its list inserts: only as an injected fault in a
/// loom negative control.
fn count_before_placing() -> bool {
    crate::sync::faults::active(crate::sync::faults::Fault::PlaceCountsFirst)
}

/// How scans load the count: Acquire, or Relaxed only as an injected fault in a loom negative
/// control.
fn unplaced_load_ordering() -> Ordering {
    if crate::sync::faults::active(crate::sync::faults::Fault::PlacedCheckRelaxed) {
        return Ordering::Relaxed;
    }
    Ordering::Acquire
}

/// Whether a rebuild reads a delta without its placer lock: only as an injected fault in a
/// loom negative control.
fn read_while_placing() -> bool {
    crate::sync::faults::active(crate::sync::faults::Fault::RebuildReadsWhilePlacing)
}

impl Delta {
    /// Adds `key` with `chain` to the list, replacing the key's previous entry.
    pub(crate) fn insert(&self, key: &[u8], chain: StrongArc<Chain>, guard: &Guard) {
        self.list.insert(key, chain, guard);
    }

    /// Removes `key`'s entry from the list if it holds `chain`; returns whether it did. (A
    /// chain still in the bag stays there: placing skips it, a rebuild drops it.)
    pub(crate) fn remove_chain(&self, key: &[u8], chain: &Chain, guard: &Guard) -> bool {
        self.list.remove_chain(key, chain, guard)
    }

    pub(super) fn list_len(&self) -> usize {
        self.list.len()
    }

    /// The entries in `range`, while `guard` is pinned.
    pub(crate) fn range<'g, 'r>(
        &'g self,
        range: KeyRangeRef<'r>,
        guard: &'g Guard,
    ) -> DeltaIter<'g, 'r> {
        self.list.range(range, guard)
    }

    fn list_entries(&self) -> Vec<RunEntry> {
        self.list.entries()
    }
}
