//! The logical clock: commit-timestamp allocation and the visibility watermark.

use crate::sync::{AtomicU64, Backoff, Ordering};

/// Hands out commit timestamps and publishes them, in order, to new snapshots.
///
/// A committer takes a timestamp with [`Clock::allocate`] after it has locked its write set and
/// validated, installs its versions, then calls [`Clock::publish`]. `publish` waits until every
/// smaller timestamp is published, so the visible timestamp never skips a commit still
/// installing (no holes), and it returns only once its own commit is visible: every snapshot
/// taken after `commit()` returns sees it.
///
/// Taking a snapshot timestamp is a single `Acquire` load of `visible`: no lock, no waiting.
pub(crate) struct Clock {
    /// The last allocated commit timestamp.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `n` | timestamps `1..=n` were handed out; each is published or about to be |
    ///
    /// `fetch_add` with `AcqRel`: the allocation order is a total order that serializable
    /// validation relies on (a committer that allocates later sees the write locks of one that
    /// allocated earlier).
    allocated: AtomicU64,
    /// The newest timestamp whose commit, and every commit before it, is fully installed.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `v` | every version with `ts <= v` is linked; versions with `ts > v` are invisible to snapshots |
    ///
    /// Invariant: `visible <= allocated`. Stored with `Release` by the publisher of `v` after
    /// its installs, loaded with `Acquire` by snapshots, so a snapshot at `v` sees every node
    /// with `ts <= v`.
    visible: AtomicU64,
}

impl Clock {
    /// A clock at timestamp 0 (the empty database); the first commit gets timestamp 1.
    pub(crate) fn new() -> Self {
        Self {
            allocated: AtomicU64::new(0),
            visible: AtomicU64::new(0),
        }
    }

    /// The newest visible timestamp: what a new snapshot reads at.
    #[inline]
    pub(crate) fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Allocates the next commit timestamp. The caller must call [`Clock::publish`] with it
    /// exactly once, whether or not it installs anything (see [`Publication`]).
    pub(crate) fn allocate(&self) -> Publication<'_> {
        let ts = self.allocated.fetch_add(1, Ordering::AcqRel) + 1;
        Publication { clock: self, ts }
    }

    /// Makes `ts` visible once every smaller timestamp is.
    fn publish(&self, ts: u64) {
        let backoff = Backoff::new();
        #[cfg(loom)]
        if crate::sync::faults::active(crate::sync::faults::Fault::PublishWithoutWaiting) {
            self.visible.fetch_max(ts, Ordering::Release);
            return;
        }
        while self.visible.load(Ordering::Acquire) != ts - 1 {
            backoff.snooze();
        }
        self.visible.store(ts, Ordering::Release);
    }
}

/// An allocated, not yet published commit timestamp.
///
/// Publishing happens on drop, so a committer cannot leave a hole behind even if it unwinds:
/// every later commit waits for this one.
#[must_use = "dropping a Publication publishes it immediately"]
pub(crate) struct Publication<'a> {
    clock: &'a Clock,
    ts: u64,
}

impl Publication<'_> {
    /// The allocated commit timestamp.
    pub(crate) fn ts(&self) -> u64 {
        self.ts
    }

    /// Publishes the timestamp (waits for predecessors) and returns it.
    pub(crate) fn publish(self) -> u64 {
        self.ts
        // Drop publishes.
    }
}

impl Drop for Publication<'_> {
    fn drop(&mut self) {
        self.clock.publish(self.ts);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn timestamps_publish_in_order() {
        let c = Clock::new();
        assert_eq!(c.visible(), 0);
        let a = c.allocate();
        let b = c.allocate();
        assert_eq!((a.ts(), b.ts()), (1, 2));
        assert_eq!(a.publish(), 1);
        assert_eq!(c.visible(), 1);
        assert_eq!(b.publish(), 2);
        assert_eq!(c.visible(), 2);
    }

    #[test]
    fn out_of_order_finish_waits_for_predecessor() {
        let c = std::sync::Arc::new(Clock::new());
        let first = c.allocate();
        let c2 = std::sync::Arc::clone(&c);
        let later = std::thread::spawn(move || c2.allocate().publish());
        // The second commit cannot become visible before the first.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(c.visible(), 0);
        assert_eq!(first.publish(), 1);
        assert_eq!(later.join().unwrap(), 2);
        assert_eq!(c.visible(), 2);
    }
}
