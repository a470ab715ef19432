//! The synchronisation facade.
//!
//! Every atomic, lock, `Arc` and spin-wait on a path the loom models exercise is imported from
//! here, never from `std`, `parking_lot` or `crossbeam_utils` directly. Under `cfg(loom)` the
//! names resolve to loom's instrumented types, so the code the models check is the code that
//! runs in production (the pattern of tokio's `loom` module and crossbeam's `primitive`).
//!
//! crossbeam-epoch swaps itself to loom only with `--cfg crossbeam_loom` *and* its `loom`
//! feature (enabled in `Cargo.toml` under `[target.'cfg(loom)'.dependencies]`), so the model
//! runner sets `RUSTFLAGS="--cfg loom --cfg crossbeam_loom"`.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

/// A mutex with one API in both worlds: `parking_lot` in production, loom's under `cfg(loom)`.
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard returned by [`Mutex::lock`].
#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
/// The guard returned by [`Mutex::lock`].
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// Creates an unlocked mutex holding `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(loom))]
            inner: parking_lot::Mutex::new(value),
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    /// Blocks until the lock is held.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            self.inner.lock()
        }
        #[cfg(loom)]
        {
            // No critical section guarded by these mutexes runs user code, so poisoning can only
            // follow a bug in this crate; carry on with the data as the panicking thread left it.
            self.inner.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    /// Takes the lock if it is free.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        #[cfg(not(loom))]
        {
            self.inner.try_lock()
        }
        #[cfg(loom)]
        {
            self.inner.try_lock().ok()
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// A lock that is handed over in arrival order: `parking_lot`'s `FairMutex` in production
/// (every unlock passes the lock to the longest waiter, if any), loom's mutex under
/// `cfg(loom)`. Guards only `()`: it orders turns, the data lives elsewhere.
pub(crate) struct FairMutex {
    #[cfg(not(loom))]
    inner: parking_lot::FairMutex<()>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<()>,
}

/// The guard returned by [`FairMutex::lock`].
#[cfg(not(loom))]
pub(crate) type FairMutexGuard<'a> = parking_lot::FairMutexGuard<'a, ()>;
/// The guard returned by [`FairMutex::lock`].
#[cfg(loom)]
pub(crate) type FairMutexGuard<'a> = loom::sync::MutexGuard<'a, ()>;

impl FairMutex {
    /// An unlocked lock.
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            inner: parking_lot::FairMutex::new(()),
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(()),
        }
    }

    /// Blocks until the lock is held, after every thread that was already waiting for it.
    pub(crate) fn lock(&self) -> FairMutexGuard<'_> {
        #[cfg(not(loom))]
        {
            self.inner.lock()
        }
        #[cfg(loom)]
        {
            self.inner.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

/// A reader-writer lock with one API in both worlds: `parking_lot` in production, loom's under
/// `cfg(loom)`. Guards only `()`: it orders critical sections, the data lives elsewhere.
pub(crate) struct RwLock {
    #[cfg(not(loom))]
    inner: parking_lot::RwLock<()>,
    #[cfg(loom)]
    inner: loom::sync::RwLock<()>,
}

/// The guard of a shared hold of [`RwLock`].
#[cfg(not(loom))]
pub(crate) type ReadGuard<'a> = parking_lot::RwLockReadGuard<'a, ()>;
/// The guard of a shared hold of [`RwLock`].
#[cfg(loom)]
pub(crate) type ReadGuard<'a> = loom::sync::RwLockReadGuard<'a, ()>;
/// The guard of an exclusive hold of [`RwLock`].
#[cfg(not(loom))]
pub(crate) type WriteGuard<'a> = parking_lot::RwLockWriteGuard<'a, ()>;
/// The guard of an exclusive hold of [`RwLock`].
#[cfg(loom)]
pub(crate) type WriteGuard<'a> = loom::sync::RwLockWriteGuard<'a, ()>;

impl RwLock {
    /// An unheld lock.
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            inner: parking_lot::RwLock::new(()),
            #[cfg(loom)]
            inner: loom::sync::RwLock::new(()),
        }
    }

    /// Blocks until held shared.
    pub(crate) fn read(&self) -> ReadGuard<'_> {
        #[cfg(not(loom))]
        {
            self.inner.read()
        }
        #[cfg(loom)]
        {
            self.inner.read().unwrap_or_else(|e| e.into_inner())
        }
    }

    /// Blocks until held exclusively.
    pub(crate) fn write(&self) -> WriteGuard<'_> {
        #[cfg(not(loom))]
        {
            self.inner.write()
        }
        #[cfg(loom)]
        {
            self.inner.write().unwrap_or_else(|e| e.into_inner())
        }
    }
}

/// Makes loom order the `SeqCst` accesses around it as the memory model does: nothing in
/// production, a `SeqCst` fence under loom.
///
/// A store-buffering handshake of `SeqCst` accesses (on each side, a `SeqCst` read-modify-write
/// of one word, then a `SeqCst` load of the other) is sound: both sides' accesses are in the
/// single total order, so one side's load sees the other's write. loom, though, treats
/// `SeqCst` accesses as `AcqRel` (its README, "Unsupported features") and would explore lost
/// wake-ups that cannot happen; it does model `SeqCst` fences, which give the handshake the
/// same guarantee. In production a fence would add an `mfence` to every commit on x86, where
/// the `lock`ed instruction before it already orders.
#[inline(always)]
pub(crate) fn order_seq_cst_accesses_for_loom() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}

/// Waits politely for another thread to make progress: exponential spinning, then yielding
/// the time slice (crossbeam's `Backoff`). Under loom every step yields to the model scheduler,
/// which is what lets loom explore the schedules in which the awaited thread runs.
pub(crate) struct Backoff {
    #[cfg(not(loom))]
    inner: crossbeam_utils::Backoff,
}

impl Backoff {
    /// A fresh backoff at its shortest wait.
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            inner: crossbeam_utils::Backoff::new(),
        }
    }

    /// Waits a little longer than last time.
    pub(crate) fn snooze(&self) {
        #[cfg(not(loom))]
        self.inner.snooze();
        #[cfg(loom)]
        loom::thread::yield_now();
    }

    /// Spins a little longer than last time, up to a cap, never giving up the time slice: for
    /// waits that sleep (see [`WaitQueue`]) once spinning did not do.
    pub(crate) fn spin(&self) {
        #[cfg(not(loom))]
        self.inner.spin();
        #[cfg(loom)]
        loom::thread::yield_now();
    }
}

/// Threads asleep until a counter reaches their target: `parking_lot_core`'s queues keyed by
/// the counter's address in production (`raw::wait_queue`), a loom mutex and condition
/// variable here, with the same wake-by-target semantics, so a lost wake-up is a deadlock loom
/// reports.
#[cfg(not(loom))]
pub(crate) use crate::raw::WaitQueue;

/// loom's stand-in for `raw::WaitQueue` (see there for the contract).
#[cfg(loom)]
pub(crate) struct WaitQueue {
    /// The next sleeper's id, and the `(id, target)` of each sleeper not yet woken.
    sleepers: loom::sync::Mutex<(usize, Vec<(usize, u64)>)>,
    woken: loom::sync::Condvar,
}

#[cfg(loom)]
impl WaitQueue {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        Self {
            sleepers: loom::sync::Mutex::new((0, Vec::new())),
            woken: loom::sync::Condvar::new(),
        }
    }

    /// Sleeps until woken with a value `>= target`, unless `counter` (loaded `SeqCst` under
    /// the queue's lock) already reached `target`; returns whether it slept.
    pub(crate) fn sleep_until(&self, counter: &AtomicU64, target: u64) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap();
        if counter.load(Ordering::SeqCst) >= target {
            return false;
        }
        let id = sleepers.0;
        sleepers.0 += 1;
        sleepers.1.push((id, target));
        while sleepers.1.iter().any(|&(sleeper, _)| sleeper == id) {
            sleepers = self.woken.wait(sleepers).unwrap();
        }
        true
    }

    /// Wakes the longest-asleep sleeper whose target is `<= reached`; returns whether there
    /// was one.
    pub(crate) fn wake_one_up_to(&self, _counter: &AtomicU64, reached: u64) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap();
        let Some(i) = sleepers.1.iter().position(|&(_, target)| target <= reached) else {
            return false;
        };
        sleepers.1.remove(i);
        // Every sleeper wakes and looks for itself in the list; only the removed one leaves.
        self.woken.notify_all();
        true
    }
}

/// Deliberate protocol faults, injectable only in loom builds, so that each negative-control
/// model runs the production code with exactly one step broken and loom must reject it.
#[cfg(loom)]
#[cfg_attr(not(test), allow(dead_code))] // injected only by the model tests
pub(crate) mod faults {
    use std::sync::atomic::{AtomicU8, Ordering};

    /// A protocol step that a negative-control model breaks.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(u8)]
    pub(crate) enum Fault {
        /// No fault: the production protocol.
        None = 0,
        /// Snapshot registration trusts the timestamp it read before announcing itself
        /// (skips the `floor` check), so a concurrent watermark can pass it.
        RegisterWithoutFloorCheck = 1,
        /// A committer publishes its timestamp without waiting for smaller ones (holes).
        PublishWithoutWaiting = 2,
        /// A serializable commit validates its reads before taking its timestamp.
        ValidateReadsBeforeTimestamp = 3,
        /// An unregistered latest read walks past a head newer than its visible timestamp
        /// (as a registered snapshot may), into versions pruning can unlink under it.
        LatestReadWalksPastHead = 4,
        /// The head cache is rewritten without its sequence word, so a reader can combine one
        /// version's timestamp with another's value.
        HeadCacheWithoutSeqlock = 5,
        /// A committer marks its timestamp finished with a `Relaxed` store, so a helper that
        /// makes it visible does not carry the committer's installs to snapshots.
        FinishedMarkRelaxed = 6,
        /// A committer marks its timestamp finished without waiting for its ring slot to be
        /// consumed, overwriting a smaller timestamp's mark.
        RingReuseWithoutWaiting = 7,
        /// Advancing the visible timestamp trusts allocation, not the finished marks.
        AdvanceOverUnfinished = 8,
        /// The index rebuild seals the active delta without holding the gate exclusively, so
        /// an inserter that loaded the old state can insert into a delta already merged.
        SealWithoutGate = 9,
        /// The index rebuild reads a sealed delta without holding its placer lock, so entries
        /// a scan took from the bag but has not yet put in the list reach neither the run nor
        /// any later state.
        RebuildReadsWhilePlacing = 10,
        /// A placer lowers a delta's unplaced count before putting the entries in the list,
        /// so a scan can read zero and walk a list that lacks them.
        PlaceCountsFirst = 11,
        /// Scans read a delta's unplaced count Relaxed, so reading zero does not make the
        /// placer's list inserts visible.
        PlacedCheckRelaxed = 12,
        /// A committer marks its keys changed without the `SeqCst` fence after its installs,
        /// so neither it nor a rebuild copying heads need see the other's step.
        NoteWithoutFence = 13,
        /// A committer marks its keys changed only in the current run's set, not in the
        /// newest set (of a run being built).
        NoteOnlyCurrentRun = 14,
        /// Pruning strips a chain's oldest tombstones up to the horizon's visible timestamp,
        /// ignoring the transactions that read below them (the writer floor).
        StripIgnoringWriterFloor = 15,
        /// A committer that moved the visible timestamp does not wake the publishers asleep
        /// waiting for it to reach theirs.
        SkipWake = 16,
        /// A big commit publishes its timestamp before stamping its pending versions, so a
        /// snapshot that includes the commit can read a version still marked pending.
        PublishBeforeStamp = 18,
        /// Scans lend the scan index's copies of chain heads without checking their keys'
        /// changed bits, so a scan can lend a head that a commit superseded and a prune
        /// retired before the scan pinned.
        LendSkipsChangedCheck = 19,
        /// Committers do not mark their keys changed in the scan index, so the copies of the
        /// heads they superseded stay current while those heads are pruned and freed.
        NoteSkipped = 20,
    }

    static ACTIVE: AtomicU8 = AtomicU8::new(0);

    /// Selects the fault for the models that follow.
    pub(crate) fn inject(f: Fault) {
        ACTIVE.store(f as u8, Ordering::SeqCst);
    }

    /// Whether `f` is injected.
    pub(crate) fn active(f: Fault) -> bool {
        ACTIVE.load(Ordering::SeqCst) == f as u8
    }
}
