//! Turns on hot keys: how [`Db::update`](crate::Db::update) keeps a call that keeps losing
//! from giving up.
//!
//! Optimistic retries alone cannot be fair. When several threads update one key, each
//! attempt races the others' commits and the loser tries again. A cap on attempts
//! without any priority must then fail some calls: with eight racers and a random winner a call
//! loses 32 rounds in a row with probability (7/8)^32, about 1.4%, and the real odds are worse,
//! because losses are correlated (a thread that slept between attempts runs its closure with
//! cold caches, or is descheduled mid-attempt, and loses again to a thread committing in a
//! tight loop).
//!
//! So a call that has lost [`QUEUE_AFTER`] attempts (races, or standing aside as below) stops
//! racing and *waits its turn* on the key
//! it conflicted on: the key hashes to one of [`STRIPES`] stripes, each a lock handed over in
//! arrival order ([`FairMutex`]), so waiting calls are served first come, first served. While
//! served, the turn holder marks its stripe, and every other attempt in `update` that is about
//! to commit a write to a key of a marked stripe stands aside instead: it commits nothing and
//! counts as an attempt lost to the holder's write (which it would have conflicted with),
//! and waits for the holder's attempt to end ([`Contention::await_served`]). The
//! holder so runs practically alone on the key: it can lose only to attempts that had already
//! passed their check when it took its turn (at most one per other thread), to writers
//! outside `update` (`put`, a hand-driven [`Transaction`](crate::Transaction)), or, when
//! serializable, to a conflict on some other key. So with default settings (32 attempts, of
//! which [`QUEUE_AFTER`] are spent racing) `RetriesExhausted` needs writers that bypass
//! `update` or dozens of threads on one key.
//!
//! After a loss the holder does not back off at random: it retries as soon as the visible
//! timestamp has passed its failed snapshot's ([`await_visible_past`]). What beat it is a
//! version newer than its snapshot, and a snapshot taken before that version is visible
//! meets it again: its committer may have taken its timestamp and then been descheduled
//! before publishing, which stalls every writer of the key for a time slice. Retrying in a
//! tight loop would spend every remaining attempt on that stall (more calls then fail than
//! with no turns at all); a random pause would leave the key idle after it.
//!
//! Why a call races [`QUEUE_AFTER`] times before it queues, and why the mark is set only while
//! the holder runs (not while it waits for the lock, nor while the lock is being handed to a
//! parked waiter): queueing every loser would turn the key into a lock handed from thread to
//! thread, one wake-up per increment (a convoy), and the common case — a race lost once and won
//! on the next attempt — would pay a wake-up. Racing stays the fast path; turns serve only calls
//! that are losing repeatedly, and stop the others only for the holder's one attempt.
//!
//! Cost when nothing is hot: the stripes are allocated at the first turn, and an attempt checks
//! one word, [`Contention::serving`], before it commits.
//!
//! A call holds at most one turn, on the stripe of the conflict that made it queue; a thread
//! that holds a turn neither stands aside nor queues in an `update` nested in its closure
//! (the turn it would wait for may be its own).
//!
//! None of this touches the commit protocol: standing aside only makes an attempt give up
//! before it commits, and a turn only orders attempts, which still validate as before.

use std::cell::Cell;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicBool, AtomicUsize, FairMutex, FairMutexGuard, Ordering};

/// Attempts a call of `update` loses (racing, or standing aside for a turn holder) before it
/// waits for its turn. Fewer queue calls that would have won the next race, and each turn
/// makes the others stand aside; more leave calls yielding in a losing streak. Measured with
/// `examples/hot_key.rs` for 2, 3, 4 and 6: p99.9 within noise of each other (30-80 µs on a
/// loaded 2-core host), 4 the lowest.
pub(crate) const QUEUE_AFTER: u32 = 4;

/// How many turn queues a database has; keys share one when their hashes do.
const STRIPES: usize = 64;

/// The turn queues of one database.
pub(crate) struct Contention {
    /// How many stripes have a turn holder running: the one word an attempt reads before it
    /// commits, so that nothing else is read while no key is hot.
    ///
    /// | value | meaning                                  | set by                              |
    /// |-------|------------------------------------------|-------------------------------------|
    /// | 0     | no turn is served: attempts just commit  | initial; the last [`Turn`] dropped  |
    /// | n > 0 | n stripes are marked: attempts check the stripes of the keys they write | [`Contention::wait_turn`] +1, [`Turn`]'s drop -1 |
    ///
    /// `SeqCst` like the marks: a heuristic for fairness, never for safety, but this keeps
    /// "marked, then took its snapshot" and "checked, then committed" in one order.
    serving: CachePadded<AtomicUsize>,
    /// The stripes, allocated by the first call that queues.
    stripes: OnceLock<Box<[CachePadded<Stripe>]>>,
}

/// One turn queue.
struct Stripe {
    /// Held by the call whose turn it is; waiters are handed it in arrival order.
    turn: FairMutex,
    /// Whether the turn holder is running.
    ///
    /// | value | meaning                                                   | set by |
    /// |-------|-----------------------------------------------------------|--------|
    /// | false | no holder, or the lock is being handed to a parked waiter | initial; [`Turn`]'s drop, before unlocking |
    /// | true  | the holder runs: other attempts writing here stand aside  | [`Contention::wait_turn`], after locking |
    serving: AtomicBool,
}

/// The longest [`await_visible_past`] waits: a conflict returned by the closure itself need
/// not come from any commit, and then the visible timestamp may not move.
const STALL_CAP: Duration = Duration::from_millis(10);

/// Waits until `visible()` is past `ts` (or [`STALL_CAP`] has passed).
pub(crate) fn await_visible_past(visible: impl Fn() -> u64, ts: u64) {
    wait_until(|| visible() > ts);
}

/// Waits until `done()` (or [`STALL_CAP`] has passed): yielding first, as what is awaited is
/// usually a few instructions away, then sleeping briefly, as the thread that will do it may
/// be waiting for a core.
fn wait_until(done: impl Fn() -> bool) {
    const YIELDS: u32 = 16;
    let start = Instant::now();
    let mut round = 0u32;
    while !done() && start.elapsed() < STALL_CAP {
        if round < YIELDS {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(20));
        }
        round += 1;
    }
}

thread_local! {
    /// Whether this thread holds a turn (of any database): it must not wait for one again.
    static HOLDS_TURN: Cell<bool> = const { Cell::new(false) };
}

fn stripe_of(key: &[u8]) -> usize {
    foldhash::fast::FixedState::with_seed(0x7475_726e).hash_one(key) as usize % STRIPES
}

impl Contention {
    pub(crate) fn new() -> Self {
        Self {
            serving: CachePadded::new(AtomicUsize::new(0)),
            stripes: OnceLock::new(),
        }
    }

    fn stripes(&self) -> &[CachePadded<Stripe>] {
        self.stripes.get_or_init(|| {
            (0..STRIPES)
                .map(|_| {
                    CachePadded::new(Stripe {
                        turn: FairMutex::new(),
                        serving: AtomicBool::new(false),
                    })
                })
                .collect()
        })
    }

    /// Whether an attempt should stand aside rather than commit: `true` if one of its written
    /// keys (`find` searches them) is on a stripe whose turn holder is running, and this
    /// thread holds no turn itself. Returns that key.
    pub(crate) fn stand_aside<'k>(
        &self,
        find: impl FnOnce(&mut dyn FnMut(&[u8]) -> bool) -> Option<&'k [u8]>,
    ) -> Option<&'k [u8]> {
        if self.serving.load(Ordering::SeqCst) == 0 || HOLDS_TURN.with(Cell::get) {
            return None;
        }
        let stripes = self.stripes.get()?;
        find(&mut |key| stripes[stripe_of(key)].serving.load(Ordering::SeqCst))
    }

    /// After standing aside for `key`: waits until the turn holder on its stripe is done (or
    /// [`STALL_CAP`] has passed). Its attempt takes about as long as this one's, so waiting
    /// for it beats a random pause.
    pub(crate) fn await_served(&self, key: &[u8]) {
        if let Some(stripes) = self.stripes.get() {
            let stripe = &stripes[stripe_of(key)];
            wait_until(|| !stripe.serving.load(Ordering::SeqCst));
        }
    }

    /// Blocks until it is this call's turn on `key`'s stripe, and marks the stripe served.
    /// `None` if this thread already holds a turn (an `update` nested in a turn holder's
    /// closure): it keeps racing instead.
    pub(crate) fn wait_turn(&self, key: &[u8]) -> Option<Turn<'_>> {
        if HOLDS_TURN.with(Cell::get) {
            return None;
        }
        let stripe = &self.stripes()[stripe_of(key)];
        let held = stripe.turn.lock();
        HOLDS_TURN.with(|h| h.set(true));
        stripe.serving.store(true, Ordering::SeqCst);
        self.serving.fetch_add(1, Ordering::SeqCst);
        Some(Turn {
            contention: self,
            stripe,
            _held: held,
        })
    }
}

/// A call's turn on a stripe: while it lives, other attempts writing keys of the stripe
/// stand aside. Dropping it unmarks the stripe and hands the lock to the next waiter.
pub(crate) struct Turn<'a> {
    contention: &'a Contention,
    stripe: &'a Stripe,
    /// Dropped after `drop` has unmarked the stripe (fields drop after the body).
    _held: FairMutexGuard<'a>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.contention.serving.fetch_sub(1, Ordering::SeqCst);
        self.stripe.serving.store(false, Ordering::SeqCst);
        HOLDS_TURN.with(|h| h.set(false));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The key among `keys` that an attempt writing them would stand aside for.
    fn stands_aside_for(c: &Contention, keys: &[&[u8]]) -> Option<Vec<u8>> {
        c.stand_aside(|pred| keys.iter().copied().find(|k| pred(k)))
            .map(<[u8]>::to_vec)
    }

    /// Asked from a thread that holds no turn.
    fn elsewhere(c: &Contention, keys: &[&[u8]]) -> Option<Vec<u8>> {
        std::thread::scope(|s| s.spawn(|| stands_aside_for(c, keys)).join().unwrap())
    }

    #[test]
    fn a_turn_marks_its_stripe_until_dropped() {
        let c = Contention::new();
        let hot: &[u8] = b"hot";
        let cold_key = (0u32..)
            .map(u32::to_le_bytes)
            .find(|k| stripe_of(k) != stripe_of(hot))
            .unwrap();
        let cold: &[u8] = &cold_key;
        assert_eq!(stands_aside_for(&c, &[hot]), None);
        let turn = c.wait_turn(hot).unwrap();
        // The holder itself never stands aside, nor queues again.
        assert_eq!(stands_aside_for(&c, &[hot]), None);
        assert!(c.wait_turn(hot).is_none());
        assert_eq!(elsewhere(&c, &[cold, hot]), Some(hot.to_vec()));
        assert_eq!(elsewhere(&c, &[cold]), None);
        drop(turn);
        assert_eq!(elsewhere(&c, &[cold, hot]), None);
        assert_eq!(c.serving.load(Ordering::SeqCst), 0);
        // The turn is free again, also for this thread.
        assert!(c.wait_turn(hot).is_some());
    }
}
