//! The logical clock: commit-timestamp allocation and the visibility watermark.

use crossbeam_utils::CachePadded;

use crate::sync::{
    order_seq_cst_accesses_for_loom, AtomicU32, AtomicU64, Backoff, Ordering, WaitQueue,
};

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
/// Waiting spins briefly, then sleeps: the commit waited for is either running and about to
/// finish, or its committer was descheduled, and then the waiters must leave it the CPU (with
/// four times more committers than cores, spinning and yielding waiters made p99.9 commit
/// latency thousands of times a mutex's). Whoever moves `visible` wakes the sleepers it
/// passed; counting sleepers keeps that to one load when there are none.
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
    /// Invariant: `visible <= allocated`. Advanced from `v - 1` to `v` only by a `SeqCst`
    /// compare-exchange of a thread that loaded `finished[slot(v)] == v` with `Acquire` (the
    /// committer of `v` or a helper), and loaded with `Acquire` by snapshots, so a snapshot at
    /// `v` sees every node with `ts <= v`. (`SeqCst` rather than `AcqRel` for the handshake
    /// with `sleepers`; the same instruction on x86 and AArch64.)
    visible: CachePadded<AtomicU64>,
    /// How many threads are about to sleep or asleep in `queue` until `visible` reaches their
    /// target.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `0` | nobody sleeps: moving `visible` wakes no one |
    /// | `n` | up to `n` threads sleep or are about to; whoever moves `visible` must wake the ones it passed |
    ///
    /// A sleeper increments it (`SeqCst`) before loading `visible` (`SeqCst`) a last time; a
    /// thread that moved `visible` (`SeqCst`) loads it (`SeqCst`) after. In the single total
    /// order of these, either the sleeper sees the move or the mover sees the sleeper, and the
    /// mover that sees it also sees its finished mark (the increment releases it).
    sleepers: CachePadded<AtomicU32>,
    /// Where waiters sleep, keyed by `visible`.
    queue: WaitQueue,
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

/// How many growing spins (`Backoff::spin`, 1 to 64 pauses each: about 190 pauses, a few
/// microseconds) a waiter makes before it sleeps: several times what a running committer
/// takes to finish its installs and publish, far below a time slice.
#[cfg(not(loom))]
const SPINS: usize = 8;
/// Under loom a spin is a yield: one lets the models reach both helping and sleeping.
#[cfg(loom)]
const SPINS: usize = 1;

impl Clock {
    /// A clock at timestamp 0 (the empty database); the first commit gets timestamp 1.
    pub(crate) fn new() -> Self {
        Self::with_ring(RING)
    }

    /// A clock at timestamp `ts`, every timestamp up to it visible: a reopened database's,
    /// whose recovered versions carry timestamps up to `ts`. The first commit gets `ts + 1`.
    pub(crate) fn starting_at(ts: u64) -> Self {
        let clock = Self::new();
        clock.allocated.store(ts, Ordering::Relaxed);
        clock.visible.store(ts, Ordering::Relaxed);
        clock
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
            sleepers: CachePadded::new(AtomicU32::new(0)),
            queue: WaitQueue::new(),
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

    /// Returns once `visible >= target`, helping and sleeping meanwhile as committers do.
    /// `target` must be an allocated timestamp (its committer publishes it), and the caller
    /// must hold no chain lock and no timestamp.
    pub(crate) fn wait_visible(&self, target: u64) {
        if self.visible() < target {
            self.wait_until_visible(target);
        }
    }

    /// The last allocated timestamp: every commit that has locked its write set and validated
    /// has one at or below it.
    pub(crate) fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Acquire)
    }

    /// How many threads sleep or are about to, waiting for `visible` to move (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn sleepers(&self) -> u32 {
        self.sleepers.load(Ordering::SeqCst)
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
        if crate::sync::faults::active(crate::sync::faults::Fault::PublishWithoutWaiting) {
            self.visible.fetch_max(ts, Ordering::Release);
            return;
        }
        // The slot's previous timestamp, `ts - len`, must be visible before it is reused. It
        // nearly always is, long since: one load says so (`visible` only grows) before any
        // helping.
        let len = self.finished.len() as u64;
        let reuse_at_once =
            crate::sync::faults::active(crate::sync::faults::Fault::RingReuseWithoutWaiting);
        if self.visible() + len < ts && !reuse_at_once {
            self.wait_until_visible(ts - len);
        }
        let mark = if crate::sync::faults::active(crate::sync::faults::Fault::FinishedMarkRelaxed) {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        self.finished[self.slot(ts)].store(ts, mark);
        // Commits below ours may still be installing: help each that finished, wait for the rest.
        if self.advance() < ts {
            self.wait_until_visible(ts);
        }
    }

    /// Returns once `visible >= target`, helping meanwhile: spins a little, then sleeps until
    /// a thread that moves `visible` to `target` or beyond wakes it.
    #[cold]
    fn wait_until_visible(&self, target: u64) {
        let backoff = Backoff::new();
        for _ in 0..SPINS {
            backoff.spin();
            if self.advance() >= target {
                return;
            }
        }
        loop {
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            order_seq_cst_accesses_for_loom();
            // After announcing ourselves: a mover that did not see us moved `visible` before
            // this `SeqCst` load, which sees its move; help from there (our own finished mark
            // may be next) instead of sleeping through it.
            let v = self.advance_from(self.visible.load(Ordering::SeqCst));
            if v < target && self.queue.sleep_until(&self.visible, target) {
                // Woken, and no longer counted (the waker did that): pass the wake on.
                self.wake_sleepers();
            } else {
                self.sleepers.fetch_sub(1, Ordering::Release);
            }
            if self.advance() >= target {
                return;
            }
        }
    }

    /// Moves `visible` over every consecutive finished timestamp, wakes the sleepers it
    /// passed, and returns where it stands.
    #[inline]
    fn advance(&self) -> u64 {
        self.advance_from(self.visible.load(Ordering::Acquire))
    }

    /// [`advance`](Self::advance) from `v`, a value `visible` held.
    #[inline]
    fn advance_from(&self, v: u64) -> u64 {
        let (v, moved) = self.step_over_finished(v);
        if moved {
            // The count's first load inline: nearly always nobody sleeps.
            order_seq_cst_accesses_for_loom();
            if self.sleepers.load(Ordering::SeqCst) != 0 {
                self.wake_sleepers();
            }
        }
        v
    }

    /// After this thread moved `visible`, or was woken: if anyone sleeps, helps over the
    /// finished marks of the sleepers (the `SeqCst` load of `sleepers` sees their increments,
    /// which followed their marks) and wakes one sleeper whose target is reached, which does
    /// the same in turn; else goes on until helping moves `visible` no further. The last count
    /// load comes after this thread's last move of `visible` (a woken thread's after its
    /// waker's), so a sleeper that announced itself later sees that move (see `sleepers`).
    ///
    /// One wake per thread, in a chain, rather than all at once: a woken thread often takes
    /// its waker's CPU at once, and the waker, descheduled in the middle of a batch of wakes,
    /// would leave the rest asleep for a time slice or more.
    #[cold]
    fn wake_sleepers(&self) {
        if crate::sync::faults::active(crate::sync::faults::Fault::SkipWake) {
            return;
        }
        loop {
            order_seq_cst_accesses_for_loom();
            if self.sleepers.load(Ordering::SeqCst) == 0 {
                return;
            }
            let (v, moved) = self.step_over_finished(self.visible.load(Ordering::Acquire));
            if self.queue.wake_one_up_to(&self.visible, v) {
                // Uncounted here rather than by the woken thread, which may wait for a CPU
                // meanwhile: committers would take the queue's lock for nothing until then.
                self.sleepers.fetch_sub(1, Ordering::Release);
                return;
            }
            if !moved {
                return;
            }
        }
    }

    /// Moves `visible` from `v` (a value it held) over every consecutive finished timestamp;
    /// returns where it stands and whether this call moved it.
    #[inline]
    fn step_over_finished(&self, mut v: u64) -> (u64, bool) {
        let mut moved = false;
        loop {
            let next = v + 1;
            // Acquire: pairs with the finisher's Release, so its installs happen before the
            // compare-exchange below, and hence before any snapshot that reads `next`.
            let finished = self.finished[self.slot(next)].load(Ordering::Acquire) == next;
            let finished = finished
                || crate::sync::faults::active(crate::sync::faults::Fault::AdvanceOverUnfinished)
                    && next <= self.allocated.load(Ordering::Acquire);
            if !finished {
                return (v, moved);
            }
            match self
                .visible
                .compare_exchange(v, next, Ordering::SeqCst, Ordering::Acquire)
            {
                Ok(_) => {
                    v = next;
                    moved = true;
                }
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
    fn committers_waiting_on_an_unfinished_predecessor_sleep_and_are_all_woken() {
        let c = std::sync::Arc::new(Clock::new());
        let first = c.allocate();
        let waiters: u32 = 3;
        let handles: Vec<_> = (0..waiters)
            .map(|_| {
                let c = std::sync::Arc::clone(&c);
                std::thread::spawn(move || c.allocate().publish())
            })
            .collect();
        // Each spins a few microseconds, then announces itself and sleeps.
        while c.sleepers.load(Ordering::SeqCst) < waiters {
            std::thread::yield_now();
        }
        assert_eq!(
            c.visible(),
            0,
            "a commit became visible before its predecessor"
        );
        // Publishing the first moves `visible` past all of them (they finished): one wake,
        // passed on from sleeper to sleeper.
        assert_eq!(first.publish(), 1);
        let mut published: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        published.sort_unstable();
        assert_eq!(published, [2, 3, 4]);
        assert_eq!(c.visible(), 4);
        assert_eq!(
            c.sleepers.load(Ordering::SeqCst),
            0,
            "every sleeper was uncounted once woken"
        );
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
