//! The snapshot registry: which timestamps live snapshots read at, and the low watermark
//! below which no snapshot will ever read again.

use std::cell::Cell;
use std::sync::OnceLock;

use crossbeam_utils::CachePadded;

use crate::clock::Clock;
use crate::horizon::Horizon;
use crate::sync::{fence, AtomicU64, Ordering};

/// Slots per page. Small under loom so models stay within one page and few scheduling points.
#[cfg(not(loom))]
const PAGE_SLOTS: usize = 64;
#[cfg(loom)]
const PAGE_SLOTS: usize = 4;

/// Value of a slot no snapshot holds.
const FREE: u64 = u64::MAX;

/// A fixed page of announcement slots; pages are appended, never removed, until the registry
/// drops.
struct Page {
    /// One word per slot, each on its own cache line so that threads registering snapshots
    /// concurrently do not share lines.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `FREE` (`u64::MAX`) | unused; claimable with a CAS |
    /// | `s` | a snapshot reads at `s` (or, while it registers, at most `s`) |
    slots: Box<[CachePadded<AtomicU64>]>,
    next: OnceLock<Box<Page>>,
}

impl Page {
    fn new() -> Self {
        Self {
            slots: (0..PAGE_SLOTS)
                .map(|_| CachePadded::new(AtomicU64::new(FREE)))
                .collect(),
            next: OnceLock::new(),
        }
    }
}

/// Identifies a claimed slot; released with [`Registry::release`].
#[derive(Debug)]
pub(crate) struct SlotId(usize);

/// Announcement slots for live snapshots plus the watermark handshake.
///
/// Registration (reader) and watermark computation (collector) form a store → `fence(SeqCst)`
/// → load handshake (Dekker / hazard-pointer style):
///
/// ```text
/// reader:    s = visible; slot := s; fence; f = floor;  if f > s { s = visible; slot := s; repeat }
/// collector: c = visible; floor := max(floor, c); fence; w = min(c, all slots)
/// ```
///
/// Either the collector's scan sees the reader's slot (so `w <= s`), or the reader's load
/// sees the collector's `floor` (so it retries with `s >= c >= w`). Hence no snapshot ever
/// reads below a watermark that a collector computed while it was registering or alive.
/// (loom treats SeqCst loads and stores as AcqRel, hence explicit fences.)
pub(crate) struct Registry {
    first: Page,
    /// The highest visible timestamp a collector has started a watermark computation with.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `f` | some collector may compute a watermark up to `f`; registering snapshots must read at `>= f` |
    ///
    /// Only grows (`fetch_max`).
    floor: AtomicU64,
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

/// Spreads threads' first probes over the first page.
static NEXT_HINT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            first: Page::new(),
            floor: AtomicU64::new(0),
        }
    }

    fn pages(&self) -> impl Iterator<Item = &Page> {
        std::iter::successors(Some(&self.first), |p| p.next.get().map(|b| &**b))
    }

    /// The slot `id` names, if its page exists.
    fn existing_slot(&self, id: usize) -> Option<&AtomicU64> {
        let page = self.pages().nth(id / PAGE_SLOTS)?;
        Some(&page.slots[id % PAGE_SLOTS])
    }

    /// The slot of a claimed id (whose page exists by construction).
    fn slot(&self, id: usize) -> &AtomicU64 {
        let mut page = &self.first;
        for _ in 0..id / PAGE_SLOTS {
            // Never initialises: a claimed id names a page that already exists.
            page = page.next.get_or_init(|| Box::new(Page::new()));
        }
        &page.slots[id % PAGE_SLOTS]
    }

    /// Claims a slot holding `s` (a CAS from `FREE`), growing the registry if all are taken.
    fn claim(&self, s: u64) -> usize {
        let hint = HINT.with(|h| h.get()).unwrap_or_else(|| {
            NEXT_HINT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % PAGE_SLOTS
        });
        let try_claim = |slot: &AtomicU64| {
            slot.load(Ordering::Relaxed) == FREE
                && slot
                    .compare_exchange(FREE, s, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
        };
        // The hint may come from another database's registry: use it only if it exists here.
        let found = if self.existing_slot(hint).is_some_and(try_claim) {
            Some(hint)
        } else {
            self.find_free(&try_claim)
        };
        let id = found.unwrap_or_else(|| self.grow_and_claim(&try_claim));
        HINT.with(|h| h.set(Some(id)));
        id
    }

    fn find_free(&self, try_claim: &impl Fn(&AtomicU64) -> bool) -> Option<usize> {
        for (p, page) in self.pages().enumerate() {
            for (i, slot) in page.slots.iter().enumerate() {
                if try_claim(slot) {
                    return Some(p * PAGE_SLOTS + i);
                }
            }
        }
        None
    }

    fn grow_and_claim(&self, try_claim: &impl Fn(&AtomicU64) -> bool) -> usize {
        let mut page = &self.first;
        let mut p = 0;
        loop {
            for (i, slot) in page.slots.iter().enumerate() {
                if try_claim(slot) {
                    return p * PAGE_SLOTS + i;
                }
            }
            page = page.next.get_or_init(|| Box::new(Page::new()));
            p += 1;
        }
    }

    /// Registers a snapshot and returns its slot and timestamp. O(1) in the common case:
    /// one CAS, one fence, two loads.
    pub(crate) fn register(&self, clock: &Clock) -> (SlotId, u64) {
        let mut s = clock.visible();
        let id = self.claim(s);
        let slot = self.slot(id);
        #[cfg(loom)]
        if crate::sync::faults::active(crate::sync::faults::Fault::RegisterWithoutFloorCheck) {
            return (SlotId(id), s);
        }
        loop {
            // Store (the claim, or the retry's store) → fence → load: see `Registry`.
            fence(Ordering::SeqCst);
            if self.floor.load(Ordering::Acquire) <= s {
                return (SlotId(id), s);
            }
            // A collector may be computing a watermark above `s`: move up to a timestamp it
            // cannot exceed. `visible >= floor` because the collector read `floor` from it.
            s = clock.visible();
            slot.store(s, Ordering::Relaxed);
        }
    }

    /// Frees a snapshot's slot. `Release`: the snapshot's reads happen before a collector
    /// that sees the slot free prunes what they read.
    pub(crate) fn release(&self, id: SlotId) {
        self.slot(id.0).store(FREE, Ordering::Release);
    }

    /// The collection horizon: the visible timestamp `c` plus every live snapshot's timestamp
    /// below it. Same handshake as the watermark: no snapshot registered from now on reads
    /// below `c`, and every snapshot registered before is in the scan.
    #[cfg(test)]
    pub(crate) fn horizon(&self, clock: &Clock) -> Horizon {
        self.horizon_except(clock, None)
    }

    /// [`horizon`](Self::horizon) ignoring the slot `except`: a committing transaction's own
    /// snapshot, which reads nothing after its commit installed and is released right after.
    pub(crate) fn horizon_except(&self, clock: &Clock, except: Option<&SlotId>) -> Horizon {
        let c = clock.visible();
        self.floor.fetch_max(c, Ordering::AcqRel);
        fence(Ordering::SeqCst);
        let mut live = Vec::new();
        let slots = self.pages().flat_map(|page| page.slots.iter());
        for (id, slot) in slots.enumerate() {
            let s = slot.load(Ordering::Acquire);
            if s < c && except.is_none_or(|e| e.0 != id) {
                live.push(s);
            }
        }
        Horizon::new(c, live)
    }

    /// Number of registered snapshots (racy; for statistics).
    pub(crate) fn live(&self) -> usize {
        self.pages()
            .flat_map(|p| p.slots.iter())
            .filter(|s| s.load(Ordering::Relaxed) != FREE)
            .count()
    }

    /// The oldest timestamp a registered snapshot reads at, if any (racy; for statistics).
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.pages()
            .flat_map(|p| p.slots.iter())
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&v| v != FREE)
            .min()
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

    #[test]
    fn grows_beyond_one_page_and_reuses_slots() {
        let clock = Clock::new();
        let reg = Registry::new();
        let n = PAGE_SLOTS * 2 + 3;
        let ids: Vec<_> = (0..n).map(|_| reg.register(&clock).0).collect();
        assert_eq!(reg.live(), n);
        let distinct: std::collections::HashSet<_> = ids.iter().map(|i| i.0).collect();
        assert_eq!(distinct.len(), n);
        for id in ids {
            reg.release(id);
        }
        assert_eq!(reg.live(), 0);
        let (id, _) = reg.register(&clock);
        assert!(id.0 < n, "a freed slot is reused");
        reg.release(id);
    }
}
