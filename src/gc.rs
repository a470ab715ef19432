//! Garbage collection of versions no snapshot can see and of keys that hold nothing.
//!
//! Three mechanisms, none of which stops readers or writers:
//! - **Inline pruning.** Every commit prunes the chains it writes down to the cached
//!   [`Horizon`] while it holds their locks: each chain keeps its newest versions (those above
//!   the horizon's visible timestamp) plus one version per live snapshot that reads it, so
//!   memory stays bounded under endless overwrites without any background thread, and a
//!   long-lived snapshot pins only the versions it can see.
//! - **Maintenance**, run by a committing thread every [`MAINTENANCE_INTERVAL`] of its commits,
//!   or sooner when its commit left more than [`BACKLOG`] versions of a key above a horizon
//!   more than [`STALE_LAG`] timestamps old (and by [`Db::collect_garbage`](crate::Db::collect_garbage)):
//!   recomputes the horizon from the snapshot registry and removes keys whose delete every
//!   snapshot can see. The early refresh keeps keys that are rewritten in quick succession
//!   from piling up versions the stale horizon cannot release, which the next writer of the
//!   key would otherwise pay for.
//! - **Full sweep** ([`Db::collect_garbage`](crate::Db::collect_garbage)): prunes every chain,
//!   for when a long-lived snapshot was dropped and the keys it pinned are not written again.
//!
//! Freed nodes go through crossbeam-epoch, so a reader walking a chain never touches freed
//! memory.

use std::cell::Cell;

use bytes::Bytes;

use std::ops::Deref;

use crate::clock::Clock;
use crate::commit::Committed;
use crate::horizon::Horizon;
use crate::index::Reason;
use crate::registry::{Registry, SlotId};
use crate::store::Store;
use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, Ordering};

/// How many of its own commits a thread makes between two maintenance runs.
pub(crate) const MAINTENANCE_INTERVAL: u32 = 64;

/// A chain keeping more versions than this above the horizon's visible timestamp after a
/// commit's prune means a stale horizon: that many commits wrote the key since it was computed
/// (versions kept for live snapshots do not count: a refresh would not release them).
pub(crate) const BACKLOG: usize = 3;

/// How many timestamps behind the commit a horizon must be before a backlog refreshes it
/// early: bounds early refreshes to one per this many commits, even with many writers on one
/// key.
pub(crate) const STALE_LAG: u64 = 4;

thread_local! {
    static UNTIL_MAINTENANCE: Cell<u32> = const { Cell::new(MAINTENANCE_INTERVAL) };
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

/// The collector's state.
pub(crate) struct Collector {
    /// The last computed watermark; committers prune with it.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `w` | a registry watermark computed at some point: no live or future snapshot reads below `w` |
    ///
    /// Only grows (`fetch_max`). A stale value is safe (it only keeps more versions).
    watermark: AtomicU64,
    /// The last computed horizon, when live snapshots older than its visible timestamp
    /// existed (otherwise the watermark says everything). A stale horizon is safe: snapshots
    /// registered since read at or above its visible timestamp, and versions above it stay.
    horizon: Mutex<Option<Arc<Horizon>>>,
    /// Whether `horizon` is set: lets committers skip its lock in the common case.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `false` | prune with the plain watermark |
    /// | `true` | `horizon` was set recently; prune with it if it still is |
    old_snapshots: AtomicBool,
    /// Keys whose newest version is a tombstone, with its timestamp: candidates for removal
    /// once the watermark passes it.
    tombstones: Mutex<Vec<(u64, Bytes)>>,
    /// Held by the thread running maintenance; others skip it instead of queueing.
    running: Mutex<()>,
}

impl Collector {
    pub(crate) fn new() -> Self {
        Self {
            watermark: AtomicU64::new(0),
            horizon: Mutex::new(None),
            old_snapshots: AtomicBool::new(false),
            tombstones: Mutex::new(Vec::new()),
            running: Mutex::new(()),
        }
    }

    /// The cached watermark.
    #[inline]
    pub(crate) fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::Acquire)
    }

    /// The horizon committers prune with: the last computed one, or the cached watermark.
    pub(crate) fn horizon(&self) -> CachedHorizon {
        if self.old_snapshots.load(Ordering::Acquire) {
            if let Some(h) = self.horizon.lock().clone() {
                return CachedHorizon::Shared(h);
            }
        }
        CachedHorizon::Plain(Horizon::at(self.watermark()))
    }

    /// Records that `key` got a tombstone at `ts`.
    pub(crate) fn note_tombstone(&self, key: Bytes, ts: u64) {
        self.tombstones.lock().push((ts, key));
    }

    /// Counts one commit of this thread, `done`, made with `horizon`, and runs maintenance
    /// when the interval is up or the commit found a backlog above a stale horizon.
    ///
    /// `own` is the committing transaction's snapshot, if any: it reads nothing more, so the
    /// refreshed horizon leaves it out (else it would look like an old snapshot and send
    /// every committer to the shared horizon until the next refresh).
    pub(crate) fn after_commit(
        &self,
        done: Committed,
        horizon: &Horizon,
        own: Option<&SlotId>,
        db: Parts<'_>,
    ) {
        let due = UNTIL_MAINTENANCE.with(|c| {
            let left = c.get().saturating_sub(1);
            c.set(if left == 0 {
                MAINTENANCE_INTERVAL
            } else {
                left
            });
            left == 0
        });
        if due {
            self.maintain_except(db, own);
        } else if done.backlog > BACKLOG && horizon.now() + STALE_LAG < done.ts {
            // Only the horizon: the tombstone queue can wait for the interval.
            if let Some(_running) = self.running.try_lock() {
                self.refresh(db.clock, db.registry, own);
            }
        }
    }

    /// Refreshes the watermark and removes keys whose tombstone it passed. Skips if another
    /// thread is already at it.
    pub(crate) fn maintain(&self, clock: &Clock, registry: &Registry, store: &Store) -> GcReport {
        let db = Parts {
            clock,
            registry,
            store,
        };
        self.maintain_except(db, None)
    }

    /// [`maintain`](Self::maintain), leaving the snapshot slot `own` out of the horizon.
    fn maintain_except(&self, db: Parts<'_>, own: Option<&SlotId>) -> GcReport {
        let Parts {
            clock,
            registry,
            store,
        } = db;
        let Some(_running) = self.running.try_lock() else {
            return GcReport {
                watermark: self.watermark(),
                ..GcReport::default()
            };
        };
        let h = self.refresh(clock, registry, own);
        let w = h.watermark();
        let ready: Vec<(u64, Bytes)> = {
            let mut queue = self.tombstones.lock();
            let (ready, waiting) = std::mem::take(&mut *queue)
                .into_iter()
                .partition(|(ts, _)| *ts <= w);
            *queue = waiting;
            ready
        };
        let mut report = GcReport {
            watermark: w,
            ..GcReport::default()
        };
        for (ts, key) in ready {
            match collect_key(store, &key, &h) {
                Some(r) => {
                    report.versions_freed += r.versions_freed;
                    report.keys_removed += r.keys_removed;
                }
                // A committer holds the chain: look again next time.
                None => self.note_tombstone(key, ts),
            }
        }
        store.maintain_index(Reason::Maintenance);
        report
    }

    /// Prunes every chain and removes every empty key.
    pub(crate) fn sweep(&self, clock: &Clock, registry: &Registry, store: &Store) -> GcReport {
        let mut report = self.maintain(clock, registry, store);
        let h = self.horizon();
        report.watermark = h.watermark();
        store.for_each(|key, _| {
            if let Some(r) = collect_key(store, key, &h) {
                report.versions_freed += r.versions_freed;
                report.keys_removed += r.keys_removed;
            }
        });
        store.maintain_index(Reason::Sweep);
        report
    }

    /// Recomputes the horizon (only the maintenance lock holder calls this, so horizons are
    /// stored in the order they were computed).
    fn refresh(&self, clock: &Clock, registry: &Registry, own: Option<&SlotId>) -> Horizon {
        let h = registry.horizon_except(clock, own);
        self.watermark.fetch_max(h.watermark(), Ordering::AcqRel);
        let old = h.has_old_snapshots();
        *self.horizon.lock() = old.then(|| Arc::new(h.clone()));
        self.old_snapshots.store(old, Ordering::Release);
        h
    }
}

/// The parts of the database the collector works on.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a> {
    /// Where the horizon's visible timestamp comes from.
    pub(crate) clock: &'a Clock,
    /// Where the live snapshots are.
    pub(crate) registry: &'a Registry,
    /// The keys and their chains.
    pub(crate) store: &'a Store,
}

/// A horizon for one commit: a plain watermark (no allocation), or the shared last horizon.
pub(crate) enum CachedHorizon {
    /// No live snapshot below the horizon: the watermark is the whole story.
    Plain(Horizon),
    /// The last computed horizon with its live snapshots.
    Shared(Arc<Horizon>),
}

impl Deref for CachedHorizon {
    type Target = Horizon;

    fn deref(&self) -> &Horizon {
        match self {
            CachedHorizon::Plain(h) => h,
            CachedHorizon::Shared(h) => h,
        }
    }
}

/// Prunes `key`'s chain to `h` and removes the key if nothing is left. `None` if the chain was
/// locked by someone else.
fn collect_key(store: &Store, key: &[u8], h: &Horizon) -> Option<GcReport> {
    // Clone the chain out: removal needs the map shard's write lock, so no map guard may be
    // held meanwhile.
    let Some(chain) = store.get(key) else {
        return Some(GcReport::default());
    };
    let guard = crossbeam_epoch::pin();
    let writer = chain.try_lock()?;
    Some(GcReport {
        watermark: h.watermark(),
        versions_freed: writer.prune_and_retire(h, &guard).unlinked,
        keys_removed: usize::from(store.remove_if_empty(key, &writer, &guard)),
    })
}
