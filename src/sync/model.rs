//! The loom world of the synchronisation facade: the same API as `native.rs` over loom's
//! instrumented types (see `sync/mod.rs`).

pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
pub(crate) use loom::sync::Arc;
/// loom's `Arc` stands in for the native `StrongArc` (an `Arc` without a weak count).
pub(crate) use loom::sync::Arc as StrongArc;

// No critical section guarded by these locks runs user code, so poisoning can only follow a
// bug in this crate: the locks carry on with the data as the panicking thread left it.

/// loom's mutex behind `native::Mutex`'s API.
pub(crate) struct Mutex<T> {
    inner: loom::sync::Mutex<T>,
}

/// The guard returned by [`Mutex::lock`].
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// Creates an unlocked mutex holding `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: loom::sync::Mutex::new(value),
        }
    }

    /// Blocks until the lock is held.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the lock if it is free.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.inner.try_lock().ok()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// loom's mutex behind `native::FairMutex`'s API (loom explores every hand-over order anyway).
pub(crate) struct FairMutex {
    inner: loom::sync::Mutex<()>,
}

/// The guard returned by [`FairMutex::lock`].
pub(crate) type FairMutexGuard<'a> = loom::sync::MutexGuard<'a, ()>;

impl FairMutex {
    /// An unlocked lock.
    pub(crate) fn new() -> Self {
        Self {
            inner: loom::sync::Mutex::new(()),
        }
    }

    /// Blocks until the lock is held.
    pub(crate) fn lock(&self) -> FairMutexGuard<'_> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// loom's reader-writer lock behind `native::RwLock`'s API.
pub(crate) struct RwLock {
    inner: loom::sync::RwLock<()>,
}

/// The guard of a shared hold of [`RwLock`].
pub(crate) type ReadGuard<'a> = loom::sync::RwLockReadGuard<'a, ()>;
/// The guard of an exclusive hold of [`RwLock`].
pub(crate) type WriteGuard<'a> = loom::sync::RwLockWriteGuard<'a, ()>;

impl RwLock {
    /// An unheld lock.
    pub(crate) fn new() -> Self {
        Self {
            inner: loom::sync::RwLock::new(()),
        }
    }

    /// Blocks until held shared.
    pub(crate) fn read(&self) -> ReadGuard<'_> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until held exclusively.
    pub(crate) fn write(&self) -> WriteGuard<'_> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A `SeqCst` fence: see `native::order_seq_cst_accesses_for_loom` for why loom needs one
/// where production does not.
#[inline(always)]
pub(crate) fn order_seq_cst_accesses_for_loom() {
    fence(Ordering::SeqCst);
}

/// Every wait step yields to the model scheduler, which is what lets loom explore the
/// schedules in which the awaited thread runs.
pub(crate) struct Backoff;

impl Backoff {
    /// A fresh backoff.
    pub(crate) fn new() -> Self {
        Self
    }

    /// Yields to the model scheduler.
    pub(crate) fn snooze(&self) {
        loom::thread::yield_now();
    }

    /// Yields to the model scheduler.
    pub(crate) fn spin(&self) {
        loom::thread::yield_now();
    }
}

/// loom's stand-in for `raw::WaitQueue` (see there for the contract).
pub(crate) struct WaitQueue {
    /// The next sleeper's id, and the `(id, target)` of each sleeper not yet woken.
    sleepers: loom::sync::Mutex<(usize, Vec<(usize, u64)>)>,
    woken: loom::sync::Condvar,
}

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
