//! The logical clock: commit-timestamp allocation and the visibility watermark.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, Backoff, Ordering};

/// Hands out commit timestamps and publishes them, in order, to new snapshots.
///
/// A committer takes a timestamp with [`Clock::allocate`] after it has locked its write set and
/// validated, installs its versions, then publishes. Publishing marks the timestamp *finished*
/// in a ring and moves the visible timestamp over every consecutive finished one, whoever
/// finished them: the visible timestamp never skips a commit still installing (no holes), and
/// no committer has to run again after its installs for the ones behind it to become visible.
/// `publish` returns only once its own commit is visible, so every snapshot taken after
/// `commit()` returns sees it.
///
/// Why the ring: if each committer had to wait for `visible == ts - 1` and then store `ts`
/// itself, commits would become visible only as fast as their committers are scheduled, in
/// timestamp order. With more committing threads than cores, a committer descheduled after
/// its installs would stall every later one for a time slice, and they would spin on the CPU
/// it needs: four threads on two cores made 5x fewer commits than two (see docs/status.md).
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
    ///
    /// Each word of the clock has its own cache line: every committer takes from `allocated`,
    /// every snapshot and latest read loads `visible`, and helpers compare-exchange it.
    allocated: CachePadded<AtomicU64>,
    /// The newest timestamp whose commit, and every commit before it, is fully installed.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `v` | every version with `ts <= v` is linked; versions with `ts > v` are invisible to snapshots |
    ///
    /// Invariant: `visible <= allocated`. Advanced from `v - 1` to `v` only by an `AcqRel`
    /// compare-exchange of a thread that loaded `finished[slot(v)] == v` with `Acquire` (the
    /// committer of `v` or a helper), and loaded with `Acquire` by snapshots, so a snapshot at
    /// `v` sees every node with `ts <= v`.
    visible: CachePadded<AtomicU64>,
    /// Which recent timestamps finished installing, one word per timestamp modulo the ring's
    /// length.
    ///
    /// | `finished[slot(t)]` | meaning |
    /// |---|---|
    /// | `t` | the commit of `t` finished installing; `visible` may advance to `t` once it is `t - 1` |
    /// | anything else | `t` has not finished (the word holds an older timestamp of the slot, or 0) |
    ///
    /// The committer of `t` stores `t` with `Release` after its installs. It waits first until
    /// `visible >= t - len`, so the word's previous timestamp, `t - len`, is already visible
    /// and no longer needed: a slot is never overwritten before it was consumed. The length is
    /// [`RING`] (1 or 2 in the loom models, so that they reach a slot's reuse and helping).
    finished: Box<[AtomicU64]>,
}

/// How many commit timestamps can be finished but not yet visible at once before a committer
/// waits for a slot: more than the committing threads, short of pathological counts. A power
/// of two.
#[cfg(not(loom))]
const RING: usize = 1024;
/// Under loom, every atomic is tracked: a small ring keeps the other models cheap.
#[cfg(loom)]
const RING: usize = 2;

impl Clock {
    /// A clock at timestamp 0 (the empty database); the first commit gets timestamp 1.
    pub(crate) fn new() -> Self {
        Self::with_ring(RING)
    }

    /// A clock whose ring has `len` slots (a power of two).
    pub(crate) fn with_ring(len: usize) -> Self {
        // Not a debug check: with any other length two in-flight timestamps could share a slot.
        assert!(
            len.is_power_of_two(),
            "the ring length must be a power of two"
        );
        Self {
            allocated: CachePadded::new(AtomicU64::new(0)),
            visible: CachePadded::new(AtomicU64::new(0)),
            finished: (0..len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The ring slot of timestamp `ts`. Consecutive timestamps, finished by different threads
    /// at about the same time, map to different cache lines (eight words per line, `len / 8`
    /// words apart), so committers do not contend on one line.
    #[inline]
    fn slot(&self, ts: u64) -> usize {
        let len = self.finished.len();
        // Truncation is intended: only the low bits select the slot.
        #[allow(clippy::cast_possible_truncation)]
        let i = ts as usize & (len - 1);
        if len >= 64 {
            (i & 7) * (len / 8) + (i >> 3)
        } else {
            i
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

    /// Marks `ts` finished, makes every consecutive finished timestamp visible, and returns
    /// once `ts` is visible (waiting, if need be, for smaller timestamps still installing).
    fn publish(&self, ts: u64) {
        #[cfg(loom)]
        if crate::sync::faults::active(crate::sync::faults::Fault::PublishWithoutWaiting) {
            self.visible.fetch_max(ts, Ordering::Release);
            return;
        }
        // The slot's previous timestamp, `ts - len`, must be visible before it is reused. It
        // nearly always is, long since: one load says so (`visible` only grows) before any
        // helping.
        let len = self.finished.len() as u64;
        if self.visible() + len < ts {
            let backoff = Backoff::new();
            while self.advance() + len < ts {
                #[cfg(loom)]
                if crate::sync::faults::active(crate::sync::faults::Fault::RingReuseWithoutWaiting)
                {
                    break;
                }
                backoff.snooze();
            }
        }
        #[cfg(loom)]
        let mark = if crate::sync::faults::active(crate::sync::faults::Fault::FinishedMarkRelaxed) {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        #[cfg(not(loom))]
        let mark = Ordering::Release;
        self.finished[self.slot(ts)].store(ts, mark);
        // Commits below ours may still be installing: help each that finished, wait for the rest.
        let backoff = Backoff::new();
        while self.advance() < ts {
            backoff.snooze();
        }
    }

    /// Moves `visible` over every consecutive finished timestamp and returns where it stands.
    fn advance(&self) -> u64 {
        let mut v = self.visible.load(Ordering::Acquire);
        loop {
            let next = v + 1;
            // Acquire: pairs with the finisher's Release, so its installs happen before the
            // compare-exchange below, and hence before any snapshot that reads `next`.
            let finished = self.finished[self.slot(next)].load(Ordering::Acquire) == next;
            #[cfg(loom)]
            let finished = finished
                || crate::sync::faults::active(crate::sync::faults::Fault::AdvanceOverUnfinished)
                    && next <= self.allocated.load(Ordering::Acquire);
            if !finished {
                return v;
            }
            match self
                .visible
                .compare_exchange(v, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => v = next,
                // Another helper moved it: continue from where it stands.
                Err(now) => v = now,
            }
        }
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
    fn concurrent_commits_through_a_tiny_ring_all_become_visible() {
        // Two slots for four threads: committers wait for slots, help each other, and each
        // returns only once its own timestamp is visible.
        let (threads, per_thread) = if cfg!(miri) { (3, 10) } else { (4, 2_000) };
        let c = std::sync::Arc::new(Clock::with_ring(2));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let c = std::sync::Arc::clone(&c);
                std::thread::spawn(move || {
                    for _ in 0..per_thread {
                        let ts = c.allocate().publish();
                        assert!(c.visible() >= ts, "publish of {ts} returned early");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.visible(), threads * per_thread);
    }

    #[test]
    fn slots_spread_consecutive_timestamps_over_cache_lines() {
        let c = Clock::new();
        let slots: std::collections::HashSet<_> = (0..RING as u64).map(|t| c.slot(t)).collect();
        assert_eq!(slots.len(), RING, "two timestamps of one lap share a slot");
        // Eight 8-byte words per 64-byte line: neighbours are a line or more apart.
        assert!((1..RING as u64).all(|t| c.slot(t).abs_diff(c.slot(t - 1)) >= 8));
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
