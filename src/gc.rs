//! Garbage collection of versions no snapshot can see and of keys that hold nothing.
//!
//! Three mechanisms, none of which stops readers or writers:
//! - **Inline pruning.** Every commit prunes the chains it writes down to the cached
//!   [`Horizon`] while it holds their locks: each chain keeps its newest versions (those above
//!   the horizon's visible timestamp) plus one version per live snapshot that reads it, so
//!   memory stays bounded under endless overwrites without any background thread, and a
//!   long-lived snapshot pins only the versions it can see.
//! - **Maintenance**, run by a committing thread every [`MAINTENANCE_INTERVAL`] of its commits
//!   into the database, or sooner when its commit left more than [`BACKLOG`] versions of a key
//!   above a horizon more than [`STALE_LAG`] timestamps old (and by
//!   [`Db::collect_garbage`](crate::Db::collect_garbage)): recomputes the horizon from the
//!   snapshot registries and removes deleted keys that no snapshot needs. A key created and
//!   deleted while an older snapshot stays open goes at the next run (the snapshot cannot see
//!   it); a key some snapshot still sees waits, in timestamp order, until the watermark passes
//!   its delete. A run costs what it looks at: the deletes since the last run and the waiting
//!   ones that came due. The early refresh keeps keys that are rewritten in quick succession
//!   from piling up versions the stale horizon cannot release, which the next writer of the
//!   key would otherwise pay for.
//! - **Full sweep** ([`Db::collect_garbage`](crate::Db::collect_garbage)): prunes every chain,
//!   for when a long-lived snapshot was dropped and the keys it pinned are not written again,
//!   and gives the key map's spare capacity back (maintenance does too, once the map is mostly
//!   empty).
//!
//! Every piece of state here belongs to one database: several databases in one process do not
//! share maintenance turns.
//!
//! Freed nodes go through crossbeam-epoch, so a reader walking a chain never touches freed
//! memory.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Deref;

use bytes::Bytes;
use crossbeam_epoch::Guard;
use crossbeam_utils::CachePadded;

use crate::clock::Clock;
use crate::commit::Committed;
use crate::horizon::Horizon;
use crate::index::Reason;
use crate::raw::EpochCell;
use crate::registry::{Registry, SlotId};
use crate::store::Store;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Mutex, Ordering};

/// How many commits a thread makes into one database between two maintenance runs.
pub(crate) const MAINTENANCE_INTERVAL: u32 = 64;

/// A chain keeping more versions than this above the horizon's visible timestamp after a
/// commit's prune means a stale horizon: that many commits wrote the key since it was computed
/// (versions kept for live snapshots do not count: a refresh would not release them).
pub(crate) const BACKLOG: usize = 3;

/// How many timestamps behind the commit a horizon must be before a backlog refreshes it
/// early: bounds early refreshes to one per this many commits, even with many writers on one
/// key.
pub(crate) const STALE_LAG: u64 = 4;

/// Countdown stripes per database: threads are spread over them, so committers on different
/// cores rarely share one.
const STRIPES: usize = 8;

/// The key map is shrunk when its capacity exceeds this many times its length...
const SPARSE_FACTOR: usize = 4;
/// ...and this many entries: small maps are not worth the rehash.
const SPARSE_MIN_CAPACITY: usize = 4096;

thread_local! {
    /// This thread's countdown stripe in every database.
    static STRIPE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Spreads threads over the stripes.
static NEXT_STRIPE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn stripe() -> usize {
    STRIPE.with(|s| {
        s.get().unwrap_or_else(|| {
            let i = NEXT_STRIPE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % STRIPES;
            s.set(Some(i));
            i
        })
    })
}

/// What a collection pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// The watermark the pass used: no snapshot reads below it.
    pub watermark: u64,
    /// Versions unlinked (freed once no reader is pinned).
    pub versions_freed: usize,
    /// Keys removed from the map and the index.
    pub keys_removed: usize,
}

impl GcReport {
    fn add(&mut self, other: GcReport) {
        self.versions_freed += other.versions_freed;
        self.keys_removed += other.keys_removed;
    }
}

/// A key whose newest version is a delete at `ts`: a candidate for removal.
type Tombstone = (u64, Bytes);

/// The collector's state. One per database: nothing here is shared between databases.
pub(crate) struct Collector {
    /// The last computed watermark; committers prune with it.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `w` | a registry watermark computed at some point: no live or future snapshot reads below `w` |
    ///
    /// Only grows (`fetch_max`). A stale value is safe (it only keeps more versions).
    watermark: AtomicU64,
    /// The last computed horizon that had live snapshots older than its visible timestamp
    /// (otherwise the watermark says everything), read without a lock or a reference count
    /// under the committer's epoch pin. A stale horizon is safe: snapshots registered since
    /// read at or above its visible timestamp, and versions above it stay.
    horizon: EpochCell<Horizon>,
    /// Whether committers should prune with `horizon` rather than the plain watermark.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `false` | the last refresh found no snapshot below its visible timestamp: prune with the watermark |
    /// | `true` | it found some: `horizon` holds that refresh's horizon (or a later one) |
    old_snapshots: AtomicBool,
    /// Commits left before the next maintenance run, one word per stripe of threads.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `n >= 1` | the stripe's threads commit `n` more times into this database before one of them maintains it |
    ///
    /// Updated with a plain load and store (`Relaxed`), not a read-modify-write: threads that
    /// share a stripe may lose a count now and then, which only shifts a run by a commit.
    countdown: Box<[CachePadded<AtomicU32>]>,
    /// Deletes noted since the last maintenance run.
    fresh: Mutex<Vec<Tombstone>>,
    /// Deletes whose key a live snapshot still reads (or a live transaction could still
    /// conflict on) below the delete: each can go once the watermark reaches its timestamp,
    /// so they wait in timestamp order and a run looks only at those that are due.
    pinned: Mutex<BinaryHeap<Reverse<Tombstone>>>,
    /// Held by the thread running maintenance; others skip it instead of queueing.
    running: Mutex<()>,
}

impl Collector {
    pub(crate) fn new() -> Self {
        Self {
            watermark: AtomicU64::new(0),
            horizon: EpochCell::new(Horizon::at(0)),
            old_snapshots: AtomicBool::new(false),
            countdown: (0..STRIPES)
                .map(|_| CachePadded::new(AtomicU32::new(MAINTENANCE_INTERVAL)))
                .collect(),
            fresh: Mutex::new(Vec::new()),
            pinned: Mutex::new(BinaryHeap::new()),
            running: Mutex::new(()),
        }
    }

    /// The cached watermark.
    #[inline]
    pub(crate) fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::Acquire)
    }

    /// The horizon committers prune with: the last computed one, or the cached watermark.
    pub(crate) fn horizon<'g>(&'g self, guard: &'g Guard) -> CachedHorizon<'g> {
        if self.old_snapshots.load(Ordering::Acquire) {
            return CachedHorizon::Shared(self.horizon.load(guard));
        }
        CachedHorizon::Plain(Horizon::at(self.watermark()))
    }

    /// Records that `key` got a tombstone at `ts`.
    pub(crate) fn note_tombstone(&self, key: Bytes, ts: u64) {
        self.fresh.lock().push((ts, key));
    }

    /// Counts one commit of this thread, `done`, made with a horizon computed when the visible
    /// timestamp was `horizon_now`, and runs maintenance
    /// when the interval is up or the commit found a backlog above a stale horizon.
    ///
    /// `own` is the committing transaction's snapshot, if any: it reads nothing more, so the
    /// refreshed horizon leaves it out (else it would look like an old snapshot and send
    /// every committer to the shared horizon until the next refresh).
    pub(crate) fn after_commit(
        &self,
        done: Committed,
        horizon_now: u64,
        own: Option<&SlotId>,
        db: Parts<'_>,
    ) {
        let countdown = &self.countdown[stripe()];
        let left = countdown.load(Ordering::Relaxed);
        let due = left <= 1;
        countdown.store(
            if due { MAINTENANCE_INTERVAL } else { left - 1 },
            Ordering::Relaxed,
        );
        if due {
            if let Some(_running) = self.running.try_lock() {
                self.maintain_locked(db, own);
            }
        } else if done.backlog > BACKLOG && horizon_now + STALE_LAG < done.ts {
            // Only the horizon: the tombstones can wait for the interval.
            if let Some(_running) = self.running.try_lock() {
                self.refresh(db, own);
            }
        }
    }

    /// One maintenance run, by the holder of `running`: refresh the horizon, then look at the
    /// deletes noted since the last run and at the pinned ones the watermark has reached.
    /// Costs O(deletes looked at), whatever else waits.
    fn maintain_locked(&self, db: Parts<'_>, own: Option<&SlotId>) -> GcReport {
        let h = self.refresh(db, own);
        let mut report = GcReport {
            watermark: h.watermark(),
            ..GcReport::default()
        };
        let fresh = std::mem::take(&mut *self.fresh.lock());
        let mut busy = Vec::new();
        let mut pinned = Vec::new();
        for (ts, key) in fresh {
            match collect_key(db.store, &key, &h) {
                Collected::Gone(r) => report.add(r),
                Collected::Kept(r, head) => {
                    report.add(r);
                    // Still ends in this delete: some snapshot needs what lies below it.
                    // A key written since was noted again if deleted again.
                    if head == Some(ts) {
                        pinned.push(Reverse((ts, key)));
                    }
                }
                Collected::Busy => busy.push((ts, key)),
            }
        }
        {
            let mut heap = self.pinned.lock();
            heap.extend(pinned);
            while heap
                .peek()
                .is_some_and(|Reverse((ts, _))| *ts <= h.watermark())
            {
                let Some(Reverse((ts, key))) = heap.pop() else {
                    break;
                };
                match collect_key(db.store, &key, &h) {
                    Collected::Gone(r) | Collected::Kept(r, _) => report.add(r),
                    Collected::Busy => busy.push((ts, key)),
                }
            }
            if heap.capacity() > SPARSE_MIN_CAPACITY && heap.len() * SPARSE_FACTOR < heap.capacity()
            {
                heap.shrink_to_fit();
            }
        }
        if !busy.is_empty() {
            // A committer held the chain: look again next run.
            self.fresh.lock().extend(busy);
        }
        if report.keys_removed > 0 {
            db.store
                .shrink_if_sparse(SPARSE_FACTOR, SPARSE_MIN_CAPACITY);
        }
        db.store.maintain_index(Reason::Maintenance);
        report
    }

    /// Prunes every chain and removes every key no snapshot needs, then gives the key map's
    /// spare capacity back. Waits for a maintenance run in progress.
    pub(crate) fn sweep(&self, db: Parts<'_>) -> GcReport {
        let _running = self.running.lock();
        let mut report = self.maintain_locked(db, None);
        let guard = crossbeam_epoch::pin();
        let h = self.horizon(&guard).clone();
        drop(guard);
        let store = db.store;
        store.for_each(|key, _| match collect_key(store, key, &h) {
            Collected::Gone(r) | Collected::Kept(r, _) => report.add(r),
            Collected::Busy => {}
        });
        store.shrink_if_sparse(SPARSE_FACTOR, 0);
        store.maintain_index(Reason::Sweep);
        crate::raw::trim_node_pool();
        report
    }

    /// Recomputes the horizon (only the maintenance lock holder calls this, so horizons are
    /// stored in the order they were computed).
    fn refresh(&self, db: Parts<'_>, own: Option<&SlotId>) -> Horizon {
        let h = Horizon::merge(
            db.registry.horizon_except(db.clock, None),
            db.writers.horizon_except(db.clock, own),
        );
        self.watermark.fetch_max(h.watermark(), Ordering::AcqRel);
        let old = h.has_old_snapshots();
        if old {
            self.horizon.replace(h.clone(), &crossbeam_epoch::pin());
        }
        self.old_snapshots.store(old, Ordering::Release);
        h
    }
}

/// The parts of the database the collector works on.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a> {
    /// Where the horizon's visible timestamp comes from.
    pub(crate) clock: &'a Clock,
    /// Where the live read-only snapshots are.
    pub(crate) registry: &'a Registry,
    /// Where the live transactions' snapshots are.
    pub(crate) writers: &'a Registry,
    /// The keys and their chains.
    pub(crate) store: &'a Store,
}

/// A horizon for one commit: a plain watermark (no allocation), or the last computed horizon,
/// borrowed under the committer's epoch pin.
pub(crate) enum CachedHorizon<'g> {
    /// No live snapshot below the horizon: the watermark is the whole story.
    Plain(Horizon),
    /// The last computed horizon with its live snapshots.
    Shared(&'g Horizon),
}

impl Deref for CachedHorizon<'_> {
    type Target = Horizon;

    fn deref(&self) -> &Horizon {
        match self {
            CachedHorizon::Plain(h) => h,
            CachedHorizon::Shared(h) => h,
        }
    }
}

/// What [`collect_key`] found.
enum Collected {
    /// The key left the map (or had already left it).
    Gone(GcReport),
    /// The key stays, with the timestamp of its head if that is a tombstone.
    Kept(GcReport, Option<u64>),
    /// A committer holds the chain.
    Busy,
}

/// Prunes `key`'s chain to `h` and removes the key if nothing is left.
fn collect_key(store: &Store, key: &[u8], h: &Horizon) -> Collected {
    // Clone the chain out: removal needs the map shard's write lock, so no map guard may be
    // held meanwhile.
    let Some(chain) = store.get(key) else {
        return Collected::Gone(GcReport::default());
    };
    let guard = crossbeam_epoch::pin();
    let Some(writer) = chain.try_lock() else {
        return Collected::Busy;
    };
    let mut report = GcReport {
        watermark: h.watermark(),
        versions_freed: writer.prune_and_retire(h, &guard).unlinked,
        keys_removed: 0,
    };
    if store.remove_if_empty(key, &writer, &guard) {
        report.keys_removed = 1;
        return Collected::Gone(report);
    }
    let head = writer
        .chain()
        .newest(&guard)
        .filter(|v| v.value.is_none())
        .map(|v| v.ts);
    Collected::Kept(report, head)
}
