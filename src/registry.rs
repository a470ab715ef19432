//! The snapshot registry: which timestamps live snapshots read at, and the low watermark
//! below which no snapshot will ever read again.

use std::cell::Cell;
use std::collections::BTreeMap;

use crossbeam_utils::CachePadded;

use crate::clock::Clock;
use crate::horizon::Horizon;
use crate::sync::{fence, AtomicU64, AtomicUsize, Mutex, Ordering};

/// Fixed announcement slots. Enough for one snapshot per thread of a busy process; more live
/// snapshots than this go to the overflow, whatever their number. Small under loom so models
/// stay within few scheduling points.
#[cfg(not(loom))]
const SLOTS: usize = 64;
#[cfg(loom)]
const SLOTS: usize = 4;

/// Fixed slots a registration tries (its hint first) before it goes to the overflow: bounds
/// registration at any peak, and finds a free slot when a thread holds a few snapshots.
const PROBES: usize = 4;

/// Value of a slot no snapshot holds.
const FREE: u64 = u64::MAX;

/// Identifies a registration; released with [`Registry::release`]. One word, so that
/// [`Registry::register`] returns it with the timestamp in two registers.
///
/// | value | meaning |
/// |---|---|
/// | `i` (below `OVERFLOW`) | the fixed slot `i` |
/// | `OVERFLOW \| ts` | one of the overflow's registrations at `ts` |
#[derive(PartialEq, Eq)]
pub(crate) struct SlotId(u64);

/// The tag bit of an overflow registration's [`SlotId`] (timestamps stay far below it).
const OVERFLOW: u64 = 1 << 63;

impl SlotId {
    fn fixed(index: usize) -> Self {
        Self(index as u64)
    }

    fn overflow(ts: u64) -> Self {
        assert!(
            ts < OVERFLOW,
            "timestamp {ts} collides with the overflow tag"
        );
        Self(OVERFLOW | ts)
    }

    /// The fixed slot's index, if this is a fixed registration.
    fn fixed_index(&self) -> Option<usize> {
        (self.0 & OVERFLOW == 0).then_some(self.0 as usize)
    }

    /// The timestamp, if this is an overflow registration.
    fn overflow_ts(&self) -> Option<u64> {
        (self.0 & OVERFLOW != 0).then_some(self.0 & !OVERFLOW)
    }
}

impl std::fmt::Debug for SlotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.fixed_index(), self.overflow_ts()) {
            (Some(i), _) => write!(f, "Fixed({i})"),
            (_, Some(ts)) => write!(f, "Overflow({ts})"),
            (None, None) => unreachable!("a registration is fixed or in the overflow"),
        }
    }
}

/// Snapshots that found no free fixed slot, counted per distinct timestamp: their memory and
/// the horizon's work follow the distinct timestamps live now, not the peak.
struct Overflow {
    /// The overflow's announcement word in the floor handshake (see [`Registry`]).
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `0` | no overflow registration (a collector may skip `by_ts`) |
    /// | `n > 0` | `n` registrations are in `by_ts` or entering it |
    ///
    /// Changed only under `by_ts`'s lock.
    snapshots: AtomicUsize,
    /// Timestamp → number of snapshots registered at it (never 0: an entry goes with its last
    /// snapshot, so the map is empty, not large, after a peak).
    by_ts: Mutex<BTreeMap<u64, usize>>,
}

/// Announcement slots for live snapshots plus the watermark handshake.
///
/// Registration (reader) and watermark computation (collector) form a store → `fence(SeqCst)`
/// → load handshake (Dekker / hazard-pointer style):
///
/// ```text
/// reader:    s = visible; slot := s; fence; f = floor;  if f > s { s = visible; slot := s; repeat }
/// collector: c = visible; floor := max(floor, c); fence; w = min(c, all slots, overflow)
/// ```
///
/// Either the collector's scan sees the reader's slot (so `w <= s`), or the reader's load
/// sees the collector's `floor` (so it retries with `s >= c >= w`). Hence no snapshot ever
/// reads below a watermark that a collector computed while it was registering or alive.
/// (loom treats SeqCst loads and stores as AcqRel, hence explicit fences.)
///
/// A registration that finds none of its [`PROBES`] fixed slots free goes to the overflow,
/// under its lock:
///
/// ```text
/// reader:    lock; snapshots += 1; fence; f = floor; s = visible; by_ts[s] += 1; unlock
/// collector: ... fence; (after the slots) if snapshots > 0 { lock; read by_ts; unlock }
/// ```
///
/// `snapshots` plays the slot's part: if the collector reads it before the reader's
/// increment, the fences make the reader's `floor` load see the collector's `fetch_max`, and
/// `s = visible`, read after that `Acquire` load, is at least the `c` the collector read
/// before writing `floor`; so `s >= c` and no retry is needed. Otherwise the collector takes
/// the lock: if it gets it after the reader, it reads the reader's entry; if before, its
/// `fetch_max` happens before the reader's critical section, so again `s >= c`. The timestamp
/// is chosen once the reader holds the lock, so an overflow registration never moves.
pub(crate) struct Registry {
    /// One word per slot, each on its own cache line so that threads registering snapshots
    /// concurrently do not share lines. A fixed number: the registry never grows.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `FREE` (`u64::MAX`) | unused; claimable with a CAS |
    /// | `s` | a snapshot reads at `s` (or, while it registers, at most `s`) |
    slots: Box<[CachePadded<AtomicU64>]>,
    /// The highest visible timestamp a collector has started a watermark computation with.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `f` | some collector may compute a watermark up to `f`; registering snapshots must read at `>= f` |
    ///
    /// Only grows (`fetch_max`).
    floor: AtomicU64,
    /// Registrations beyond the fixed slots; on its own line, since only they write it.
    overflow: CachePadded<Overflow>,
}

thread_local! {
    /// The slot this thread used last: usually free again, so registration is one CAS.
    static HINT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Forgets this thread's hint, so that each loom iteration starts from the same state (the
/// hint lives in a real thread-local, which outlives an iteration).
#[cfg(all(test, loom))]
pub(crate) fn reset_hint() {
    HINT.with(|h| h.set(Some(0)));
}

/// Whether the negative-control fault that skips the floor check is injected (never outside
/// loom).
fn skips_floor_check() -> bool {
    crate::sync::faults::active(crate::sync::faults::Fault::RegisterWithoutFloorCheck)
}

/// Claims `slot` for a snapshot at `s` (a CAS from `FREE`), if it is free.
#[inline]
fn try_claim(slot: &AtomicU64, s: u64) -> bool {
    slot.load(Ordering::Relaxed) == FREE
        && slot
            .compare_exchange(FREE, s, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Spreads threads' first probes over the slots.
static NEXT_HINT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Registry {
    pub(crate) fn new() -> Self {
        Self::with_slots(SLOTS)
    }

    /// A registry with `n` fixed slots (tests and models use few, to reach the overflow).
    pub(crate) fn with_slots(n: usize) -> Self {
        Self {
            slots: (0..n)
                .map(|_| CachePadded::new(AtomicU64::new(FREE)))
                .collect(),
            floor: AtomicU64::new(0),
            overflow: CachePadded::new(Overflow {
                snapshots: AtomicUsize::new(0),
                by_ts: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Registers a snapshot and returns its registration and timestamp. O(1) in the common
    /// case, this thread's last slot free again: one CAS, one fence, two loads. Otherwise at
    /// most [`PROBES`] slot loads and, if they are all taken, one overflow insertion.
    #[inline]
    pub(crate) fn register(&self, clock: &Clock) -> (SlotId, u64) {
        let s = clock.visible();
        if let Some(h) = HINT.with(Cell::get) {
            // The hint may come from another database's registry, of another size.
            if let Some(slot) = self.slots.get(h) {
                if try_claim(slot, s) {
                    return (SlotId::fixed(h), self.confirm(slot, s, clock));
                }
            }
        }
        self.register_elsewhere(s, clock)
    }

    /// [`register`](Self::register) when the hint slot is taken (or there is no hint): the
    /// next few fixed slots, else the overflow. Out of line, to keep the common case small.
    #[inline(never)]
    fn register_elsewhere(&self, s: u64, clock: &Clock) -> (SlotId, u64) {
        match self.claim_near_hint(s) {
            Some(id) => (SlotId::fixed(id), self.confirm(&self.slots[id], s, clock)),
            None => self.register_overflow(s, clock),
        }
    }

    /// Claims a fixed slot holding `s` among the [`PROBES`] from the hint on (the hint itself
    /// already tried), and makes it the hint. `None` if all of them are taken.
    fn claim_near_hint(&self, s: u64) -> Option<usize> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let (start, probes) = match HINT.with(Cell::get) {
            Some(h) if h < n => (h + 1, (PROBES - 1).min(n - 1)),
            _ => (
                NEXT_HINT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n,
                PROBES.min(n),
            ),
        };
        let id = (0..probes)
            .map(|k| (start + k) % n)
            .find(|&i| try_claim(&self.slots[i], s))?;
        HINT.with(|h| h.set(Some(id)));
        Some(id)
    }

    /// Completes the registration of the fixed `slot` claimed at `s`: the floor check.
    /// Returns the timestamp the snapshot reads at.
    #[inline]
    fn confirm(&self, slot: &AtomicU64, mut s: u64, clock: &Clock) -> u64 {
        if skips_floor_check() {
            return s;
        }
        loop {
            // Store (the claim, or the retry's store) → fence → load: see `Registry`.
            fence(Ordering::SeqCst);
            if self.floor.load(Ordering::Acquire) <= s {
                return s;
            }
            // A collector may be computing a watermark above `s`: move up to a timestamp it
            // cannot exceed. `visible >= floor` because the collector read `floor` from it.
            s = clock.visible();
            slot.store(s, Ordering::Relaxed);
        }
    }

    /// Registers a snapshot in the overflow (see `Registry` for the handshake). `early` is
    /// the visible timestamp read before: only the fault that skips the floor check uses it.
    fn register_overflow(&self, early: u64, clock: &Clock) -> (SlotId, u64) {
        let overflow = &*self.overflow;
        let mut by_ts = overflow.by_ts.lock();
        overflow.snapshots.fetch_add(1, Ordering::Relaxed);
        let s = if skips_floor_check() {
            early
        } else {
            // The announcement (`snapshots`) → fence → load of `floor`; `visible`, read after
            // it, is at least every `c` a collector wrote to `floor` before.
            fence(Ordering::SeqCst);
            let floor = self.floor.load(Ordering::Acquire);
            let s = clock.visible();
            debug_assert!(s >= floor, "visible {s} below the floor {floor}");
            s
        };
        *by_ts.entry(s).or_insert(0) += 1;
        (SlotId::overflow(s), s)
    }

    /// Ends a snapshot's registration. `Release` (or the overflow's lock): the snapshot's
    /// reads happen before a collector that sees it gone prunes what they read.
    #[inline]
    pub(crate) fn release(&self, id: SlotId) {
        match id.fixed_index() {
            Some(i) => self.slots[i].store(FREE, Ordering::Release),
            None => self.release_overflow(id.0 & !OVERFLOW),
        }
    }

    /// Ends one of the overflow's registrations at `ts`.
    #[inline(never)]
    fn release_overflow(&self, ts: u64) {
        let overflow = &*self.overflow;
        let mut by_ts = overflow.by_ts.lock();
        let count = by_ts
            .get_mut(&ts)
            .expect("an overflow registration has its timestamp's entry");
        *count -= 1;
        if *count == 0 {
            by_ts.remove(&ts);
        }
        overflow.snapshots.fetch_sub(1, Ordering::Release);
    }

    /// The collection horizon: the visible timestamp `c` plus every live snapshot's timestamp
    /// below it. Same handshake as the watermark: no snapshot registered from now on reads
    /// below `c`, and every snapshot registered before is in the scan.
    #[cfg(test)]
    pub(crate) fn horizon(&self, clock: &Clock) -> Horizon {
        self.horizon_except(clock, None)
    }

    /// [`horizon`](Self::horizon) ignoring the registration `except`: a committing
    /// transaction's own snapshot, which reads nothing after its commit installed and is
    /// released right after. O(fixed slots + distinct overflow timestamps below `c`).
    pub(crate) fn horizon_except(&self, clock: &Clock, except: Option<&SlotId>) -> Horizon {
        let c = clock.visible();
        self.floor.fetch_max(c, Ordering::AcqRel);
        fence(Ordering::SeqCst);
        let except_fixed = except.and_then(SlotId::fixed_index);
        let except_ts = except.and_then(SlotId::overflow_ts);
        let mut live = Vec::new();
        for (id, slot) in self.slots.iter().enumerate() {
            let s = slot.load(Ordering::Acquire);
            if s < c && except_fixed != Some(id) {
                live.push(s);
            }
        }
        let overflow = &*self.overflow;
        if overflow.snapshots.load(Ordering::Acquire) > 0 {
            let by_ts = overflow.by_ts.lock();
            for (&ts, &count) in by_ts.range(..c) {
                // `except` is one of the `count` registrations at `ts`.
                if count > 1 || except_ts != Some(ts) {
                    live.push(ts);
                }
            }
        }
        Horizon::new(c, live)
    }

    /// Number of registered snapshots (racy; for statistics).
    pub(crate) fn live(&self) -> usize {
        let fixed = self
            .slots
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) != FREE)
            .count();
        fixed + self.overflow.snapshots.load(Ordering::Relaxed)
    }

    /// The oldest timestamp a registered snapshot reads at, if any (racy; for statistics).
    pub(crate) fn oldest(&self) -> Option<u64> {
        let fixed = self
            .slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&v| v != FREE)
            .min();
        let overflow = if self.overflow.snapshots.load(Ordering::Relaxed) > 0 {
            self.overflow.by_ts.lock().keys().next().copied()
        } else {
            None
        };
        fixed.into_iter().chain(overflow).min()
    }

    /// Distinct timestamps in the overflow (what its memory follows).
    #[cfg(all(test, not(loom)))]
    fn overflow_timestamps(&self) -> usize {
        self.overflow.by_ts.lock().len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_min_of_visible_and_live_snapshots() {
        let clock = Clock::new();
        let reg = Registry::new();
        assert_eq!(reg.horizon(&clock).watermark(), 0);
        clock.allocate().publish();
        clock.allocate().publish();
        let (a, ts_a) = reg.register(&clock);
        assert_eq!(ts_a, 2);
        for _ in 0..3 {
            clock.allocate().publish();
        }
        assert_eq!(reg.horizon(&clock).watermark(), 2);
        let (b, ts_b) = reg.register(&clock);
        assert_eq!(ts_b, 5);
        clock.allocate().publish();
        // Both snapshots are below the visible timestamp 6: the horizon lists them.
        assert_eq!(reg.horizon(&clock), Horizon::new(6, vec![5, 2]));
        reg.release(a);
        assert_eq!(reg.horizon(&clock).watermark(), 5);
        reg.release(b);
        assert_eq!(reg.horizon(&clock).watermark(), 6);
        assert!(!reg.horizon(&clock).has_old_snapshots());
        // A committer's own snapshot can be left out.
        let (own, s) = reg.register(&clock);
        let (other, t) = reg.register(&clock);
        assert_eq!((s, t), (6, 6));
        clock.allocate().publish();
        assert_eq!(reg.horizon(&clock), Horizon::new(7, vec![6]));
        assert_eq!(
            reg.horizon_except(&clock, Some(&own)),
            Horizon::new(7, vec![6])
        );
        reg.release(other);
        assert_eq!(
            reg.horizon_except(&clock, Some(&own)),
            Horizon::new(7, vec![])
        );
        assert_eq!(reg.horizon(&clock), Horizon::new(7, vec![6]));
        reg.release(own);
        assert_eq!(reg.live(), 0);
    }

    /// Registers `n` snapshots at the current visible timestamp.
    fn register_n(reg: &Registry, clock: &Clock, n: usize) -> Vec<SlotId> {
        (0..n).map(|_| reg.register(clock).0).collect()
    }

    #[test]
    fn a_thread_with_a_few_snapshots_stays_in_fixed_slots() {
        let clock = Clock::new();
        let reg = Registry::new();
        let ids = register_n(&reg, &clock, PROBES);
        assert!(ids.iter().all(|id| id.fixed_index().is_some()), "{ids:?}");
        let distinct: std::collections::HashSet<_> = ids.iter().map(|i| format!("{i:?}")).collect();
        assert_eq!(distinct.len(), PROBES);
        for id in ids {
            reg.release(id);
        }
        assert_eq!(reg.live(), 0);
    }

    #[test]
    fn overflow_registers_and_releases_per_timestamp() {
        let clock = Clock::new();
        let reg = Registry::with_slots(2);
        let ids = register_n(&reg, &clock, 5);
        let fixed = ids.iter().filter(|id| id.fixed_index().is_some()).count();
        assert_eq!(fixed, 2, "{ids:?}");
        assert_eq!(
            ids.iter().filter(|id| **id == SlotId::overflow(0)).count(),
            3
        );
        assert_eq!(reg.live(), 5);
        assert_eq!(
            reg.overflow_timestamps(),
            1,
            "one entry per distinct timestamp"
        );
        assert_eq!(reg.oldest(), Some(0));
        for id in ids {
            reg.release(id);
        }
        assert_eq!(reg.live(), 0);
        assert_eq!(reg.oldest(), None);
        assert_eq!(reg.overflow_timestamps(), 0);
        assert_eq!(reg.overflow.snapshots.load(Ordering::Relaxed), 0);
        let (id, _) = reg.register(&clock);
        assert!(id.fixed_index().is_some(), "freed fixed slots come first");
        reg.release(id);
    }

    #[test]
    fn overflow_registration_reads_at_or_above_the_floor() {
        let clock = Clock::new();
        let reg = Registry::with_slots(0);
        clock.allocate().publish();
        clock.allocate().publish();
        assert_eq!(reg.horizon(&clock).watermark(), 2);
        let (id, s) = reg.register(&clock);
        assert_eq!((&id, s), (&SlotId::overflow(2), 2));
        assert_eq!(reg.live(), 1);
        reg.release(id);
        assert_eq!(reg.live(), 0);
    }

    #[test]
    fn horizon_lists_overflow_timestamps_once_and_leaves_out_the_committer() {
        let clock = Clock::new();
        let reg = Registry::with_slots(1);
        let (a, _) = reg.register(&clock);
        assert_eq!(a, SlotId::fixed(0));
        clock.allocate().publish();
        let (b, _) = reg.register(&clock);
        let (c, _) = reg.register(&clock);
        assert_eq!((&b, &c), (&SlotId::overflow(1), &SlotId::overflow(1)));
        clock.allocate().publish();
        let (d, _) = reg.register(&clock);
        assert_eq!(d, SlotId::overflow(2));
        // At the visible timestamp: not an old snapshot, and not listed.
        let (e, _) = reg.register(&clock);
        assert_eq!(reg.overflow_timestamps(), 2);
        assert_eq!(reg.horizon(&clock), Horizon::new(2, vec![0, 1]));
        clock.allocate().publish();
        assert_eq!(reg.horizon(&clock), Horizon::new(3, vec![0, 1, 2]));
        // `b` is one of two registrations at 1: leaving it out keeps 1.
        assert_eq!(
            reg.horizon_except(&clock, Some(&b)),
            Horizon::new(3, vec![0, 1, 2])
        );
        assert_eq!(
            reg.horizon_except(&clock, Some(&a)),
            Horizon::new(3, vec![1, 2])
        );
        reg.release(c);
        assert_eq!(reg.overflow_timestamps(), 2);
        assert_eq!(
            reg.horizon_except(&clock, Some(&b)),
            Horizon::new(3, vec![0, 2])
        );
        assert_eq!(reg.horizon(&clock), Horizon::new(3, vec![0, 1, 2]));
        for id in [a, b, d, e] {
            reg.release(id);
        }
        assert_eq!(reg.overflow_timestamps(), 0);
        assert_eq!(reg.horizon(&clock), Horizon::new(3, vec![]));
    }

    /// After a peak of live snapshots over many timestamps, the registry holds what it held
    /// before: its fixed slots, all free, and an empty overflow.
    #[test]
    fn a_peak_leaves_nothing_behind() {
        const PEAK: usize = 2_000;
        let clock = Clock::new();
        let reg = Registry::new();
        let mut ids = Vec::with_capacity(PEAK);
        for i in 0..PEAK {
            if i % 10 == 0 {
                clock.allocate().publish();
            }
            ids.push(reg.register(&clock).0);
        }
        assert_eq!(reg.live(), PEAK);
        let overflowed = ids.iter().filter(|id| id.overflow_ts().is_some()).count();
        // The hint follows the last slot claimed, so one thread's probes walk over all slots.
        assert_eq!(overflowed, PEAK - SLOTS);
        let overflow_ts: std::collections::BTreeSet<_> =
            ids.iter().filter_map(SlotId::overflow_ts).collect();
        // The first `SLOTS` registrations, `SLOTS / 10` whole timestamps, took the fixed slots.
        assert_eq!(overflow_ts.len(), PEAK / 10 - SLOTS / 10);
        assert_eq!(reg.overflow_timestamps(), overflow_ts.len());
        assert_eq!(reg.oldest(), Some(1));
        clock.allocate().publish();
        let horizon = reg.horizon(&clock);
        assert_eq!(horizon.watermark(), 1);
        assert!(horizon.needs(PEAK as u64 / 10, PEAK as u64 / 10 + 1));
        // Release in an order that is neither registration order nor its reverse.
        let mut ids: Vec<_> = ids.into_iter().enumerate().collect();
        ids.sort_by_key(|(i, _)| (i % 7, *i));
        for (_, id) in ids {
            reg.release(id);
        }
        assert_eq!(reg.live(), 0);
        assert_eq!(reg.oldest(), None);
        assert_eq!(reg.overflow_timestamps(), 0);
        assert_eq!(reg.slots.len(), SLOTS, "the fixed slots never grow");
        assert_eq!(
            reg.horizon(&clock),
            Horizon::new(PEAK as u64 / 10 + 1, vec![])
        );
    }
}
