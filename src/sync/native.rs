//! The production world of the synchronisation facade: std atomics, `parking_lot` locks,
//! crossbeam's backoff and `raw::WaitQueue` (see `sync/mod.rs`; `model.rs` is the same API
//! over loom).

pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
pub(crate) use std::sync::Arc;
/// An `Arc` with a strong count only (no weak count, no `Weak`): what a key's chain is shared
/// through, 8 bytes smaller per key than std's.
pub(crate) use triomphe::Arc as StrongArc;

/// Threads asleep until a counter reaches their target: `parking_lot_core`'s queues keyed by
/// the counter's address.
pub(crate) use crate::raw::WaitQueue;

/// A mutex: `parking_lot`'s.
pub(crate) struct Mutex<T> {
    inner: parking_lot::Mutex<T>,
}

/// The guard returned by [`Mutex::lock`].
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// Creates an unlocked mutex holding `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: parking_lot::Mutex::new(value),
        }
    }

    /// Blocks until the lock is held.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.inner.lock()
    }

    /// Takes the lock if it is free.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.inner.try_lock()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// A lock handed over in arrival order: `parking_lot`'s `FairMutex` (every unlock passes the
/// lock to the longest waiter, if any). Guards only `()`: it orders turns, the data lives
/// elsewhere.
pub(crate) struct FairMutex {
    inner: parking_lot::FairMutex<()>,
}

/// The guard returned by [`FairMutex::lock`].
pub(crate) type FairMutexGuard<'a> = parking_lot::FairMutexGuard<'a, ()>;

impl FairMutex {
    /// An unlocked lock.
    pub(crate) fn new() -> Self {
        Self {
            inner: parking_lot::FairMutex::new(()),
        }
    }

    /// Blocks until the lock is held, after every thread that was already waiting for it.
    pub(crate) fn lock(&self) -> FairMutexGuard<'_> {
        self.inner.lock()
    }
}

/// A reader-writer lock: `parking_lot`'s. Guards only `()`: it orders critical sections, the
/// data lives elsewhere.
pub(crate) struct RwLock {
    inner: parking_lot::RwLock<()>,
}

/// The guard of a shared hold of [`RwLock`].
pub(crate) type ReadGuard<'a> = parking_lot::RwLockReadGuard<'a, ()>;
/// The guard of an exclusive hold of [`RwLock`].
pub(crate) type WriteGuard<'a> = parking_lot::RwLockWriteGuard<'a, ()>;

impl RwLock {
    /// An unheld lock.
    pub(crate) fn new() -> Self {
        Self {
            inner: parking_lot::RwLock::new(()),
        }
    }

    /// Blocks until held shared.
    #[inline]
    pub(crate) fn read(&self) -> ReadGuard<'_> {
        self.inner.read()
    }

    /// Blocks until held exclusively.
    pub(crate) fn write(&self) -> WriteGuard<'_> {
        self.inner.write()
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
pub(crate) fn order_seq_cst_accesses_for_loom() {}

/// Waits politely for another thread to make progress: exponential spinning, then yielding
/// the time slice (crossbeam's `Backoff`).
pub(crate) struct Backoff {
    inner: crossbeam_utils::Backoff,
}

impl Backoff {
    /// A fresh backoff at its shortest wait.
    pub(crate) fn new() -> Self {
        Self {
            inner: crossbeam_utils::Backoff::new(),
        }
    }

    /// Waits a little longer than last time.
    pub(crate) fn snooze(&self) {
        self.inner.snooze();
    }

    /// Spins a little longer than last time, up to a cap, never giving up the time slice: for
    /// waits that sleep (see [`WaitQueue`]) once spinning did not do.
    pub(crate) fn spin(&self) {
        self.inner.spin();
    }
}
