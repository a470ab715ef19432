//! Sleeping until a counter reaches a value, on `parking_lot_core`'s address-keyed queues.
//!
//! The publication ring's waiters (see `Clock`) wait for the visible timestamp to reach their
//! own. Spinning for it is fine while the commit they wait for is running; when its committer
//! was descheduled, spinners burn the CPU it needs to finish. This queue lets them sleep on the
//! counter's address and be woken by whoever moves the counter past them, one at a time and
//! selected by the value each waits for, so a wake does not stir the ones still behind.

use parking_lot_core::{FilterOp, ParkResult, ParkToken, DEFAULT_UNPARK_TOKEN};

use crate::sync::{AtomicU64, Ordering};

/// Threads asleep until a counter (an `AtomicU64` that only grows) reaches their target.
///
/// Sleepers are kept in `parking_lot_core`'s global table under the counter's address: only
/// this queue parks on a counter it is given, so nothing else's waiters share the key. The
/// queue itself holds no state in production (loom's stand-in in `sync` does).
pub(crate) struct WaitQueue;

impl WaitQueue {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        Self
    }

    /// Sleeps until woken by [`wake_one_up_to`](Self::wake_one_up_to) with a value
    /// `>= target`, unless `counter` (loaded `SeqCst` under the queue's lock, so that a wake
    /// issued after the counter moved cannot slip in before the sleep) already reached
    /// `target`. Returns whether it slept (and was woken).
    ///
    /// The caller announces itself before (a count the wakers read) so that a waker that moved
    /// the counter knows to call `wake_one_up_to`; the `SeqCst` load pairs with the waker's
    /// `SeqCst` move and count load, so one of the two sees the other.
    pub(crate) fn sleep_until(&self, counter: &AtomicU64, target: u64) -> bool {
        let key = std::ptr::from_ref(counter) as usize;
        let token = ParkToken(saturate(target));
        // `key` is the counter's address, which only this queue parks on (the counter is a
        // plain atomic, not another primitive's lock word).
        // SAFETY: as above; `validate` only loads an atomic (it cannot panic or call into
        // parking_lot while the bucket is locked); the other callbacks do nothing.
        let slept = unsafe {
            parking_lot_core::park(
                key,
                || counter.load(Ordering::SeqCst) < target,
                || {},
                |_, _| {},
                token,
                None,
            )
        };
        // Without a timeout, only an unpark ends a sleep.
        matches!(slept, ParkResult::Unparked(_))
    }

    /// Wakes one sleeper on `counter` whose target is `<= reached` (the counter's value the
    /// caller saw after moving it), the longest asleep; returns whether there was one.
    pub(crate) fn wake_one_up_to(&self, counter: &AtomicU64, reached: u64) -> bool {
        let key = std::ptr::from_ref(counter) as usize;
        let reached = saturate(reached);
        let mut found = false;
        // SAFETY: the key is the counter's address, as in `sleep_until`; the filter and the
        // callback only compare integers and return tokens: they cannot panic or call into
        // parking_lot while the bucket is locked.
        let woken = unsafe {
            parking_lot_core::unpark_filter(
                key,
                |ParkToken(target)| {
                    if found {
                        FilterOp::Stop
                    } else if target <= reached {
                        found = true;
                        FilterOp::Unpark
                    } else {
                        FilterOp::Skip
                    }
                },
                |_| DEFAULT_UNPARK_TOKEN,
            )
        };
        woken.unparked_threads != 0
    }
}

/// A counter value as a park token. Saturating keeps the order between a sleeper's target
/// and a waker's value (`a <= b` implies `saturate(a) <= saturate(b)`), so no sleeper whose
/// target was reached is skipped; on 32-bit targets, past `u32::MAX`, sleepers may be woken
/// early and go back to sleep.
fn saturate(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}
