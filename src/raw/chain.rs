//! A per-key version chain: a singly linked list of committed versions, newest first.

use bytes::Bytes;
use crossbeam_epoch::{Atomic, Guard, Owned, Shared};

use crate::sync::{AtomicU32, Backoff, Ordering};

/// One committed version of a key.
struct Version {
    /// The commit timestamp of the transaction that wrote it. Immutable.
    ts: u64,
    /// The value, or `None` for a tombstone (a delete). Immutable.
    value: Option<Bytes>,
    /// The next older version, or null. Written only by the chain's lock holder.
    next: Atomic<Version>,
}

/// A borrowed view of one version, valid while the epoch guard it came from is pinned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VersionRef<'g> {
    /// Commit timestamp of the version.
    pub(crate) ts: u64,
    /// The value, `None` for a tombstone.
    pub(crate) value: Option<&'g Bytes>,
}

/// Bit of [`Chain::state`]: a committer or the collector holds the chain's write lock.
const LOCKED: u32 = 1;
/// Bit of [`Chain::state`]: the chain has left the key map and must not receive versions.
const REMOVED: u32 = 2;

/// The version chain of one key.
pub(crate) struct Chain {
    /// The chain's control word.
    ///
    /// | value                | meaning                                                         |
    /// |----------------------|-----------------------------------------------------------------|
    /// | `0`                  | live, unlocked: readers walk freely, a writer may lock          |
    /// | `LOCKED`             | a committer or the collector is installing / pruning            |
    /// | `LOCKED \| REMOVED`  | the collector is unlinking the key from the map and index       |
    /// | `REMOVED`            | dead: the key left the map; a committer that locks it re-resolves the key |
    ///
    /// `LOCKED` is taken with an `Acquire` CAS and released with a `Release` store, so each
    /// lock holder sees the previous holder's `head`/`next` writes. `REMOVED` is set only by the
    /// lock holder and never cleared.
    state: AtomicU32,
    /// The newest version, or null for a chain with no versions.
    ///
    /// Published with `Release` by the lock holder, read with `Acquire` by everyone, so a reader
    /// that sees a node sees its initialised `ts`, `value` and `next`.
    head: Atomic<Version>,
}

impl Chain {
    /// An empty, live, unlocked chain.
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU32::new(0),
            head: Atomic::null(),
        }
    }

    /// The newest version with `ts <= at`, if any (a tombstone is returned as such).
    pub(crate) fn read_at<'g>(&self, at: u64, guard: &'g Guard) -> Option<VersionRef<'g>> {
        let mut cur = self.head.load(Ordering::Acquire, guard);
        // SAFETY: `cur` was loaded from `head` or a `next` link while `guard` is pinned. Nodes
        // are freed only by `defer_destroy` after being unlinked (see `ChainWriter::prune`) or
        // by `Drop for Chain` (which needs `&mut self`, impossible while `&self` is borrowed),
        // so the node outlives `'g`.
        while let Some(node) = unsafe { cur.as_ref() } {
            if node.ts <= at {
                return Some(VersionRef {
                    ts: node.ts,
                    value: node.value.as_ref(),
                });
            }
            cur = node.next.load(Ordering::Acquire, guard);
        }
        None
    }

    /// The newest installed version, whatever its timestamp.
    pub(crate) fn newest<'g>(&self, guard: &'g Guard) -> Option<VersionRef<'g>> {
        self.read_at(u64::MAX, guard)
    }

    /// Number of versions currently linked (tombstones included). O(chain length).
    pub(crate) fn version_count(&self, guard: &Guard) -> usize {
        let mut n = 0;
        let mut cur = self.head.load(Ordering::Acquire, guard);
        // SAFETY: as in `read_at`: pinned, and nodes are only freed after unlinking.
        while let Some(node) = unsafe { cur.as_ref() } {
            n += 1;
            cur = node.next.load(Ordering::Acquire, guard);
        }
        n
    }

    /// Whether the collector has removed this chain from the key map.
    pub(crate) fn is_removed(&self) -> bool {
        self.state.load(Ordering::Acquire) & REMOVED != 0
    }

    /// Whether a committer or the collector holds the write lock (`Acquire`: when it is free,
    /// the last holder's links are visible to the caller's following loads).
    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Ordering::Acquire) & LOCKED != 0
    }

    /// Takes the write lock, waiting for the current holder (lock holders run no user code and
    /// hold the lock for an install or a prune, so the wait is short).
    pub(crate) fn lock(&self) -> ChainWriter<'_> {
        let backoff = Backoff::new();
        loop {
            if let Some(w) = self.try_lock() {
                return w;
            }
            backoff.snooze();
        }
    }

    /// Takes the write lock if it is free.
    pub(crate) fn try_lock(&self) -> Option<ChainWriter<'_>> {
        let cur = self.state.load(Ordering::Relaxed);
        if cur & LOCKED != 0 {
            return None;
        }
        self.state
            .compare_exchange(cur, cur | LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| ChainWriter { chain: self })
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        // SAFETY: `&mut self` means no thread can be reading this chain through a shared
        // reference, and readers only reach nodes through the chain, so no pinned reader can
        // hold a node either: the list can be freed immediately without deferral.
        unsafe {
            let guard = crossbeam_epoch::unprotected();
            let mut cur = self.head.load(Ordering::Relaxed, guard);
            while !cur.is_null() {
                let next = cur.deref().next.load(Ordering::Relaxed, guard);
                drop(cur.into_owned());
                cur = next;
            }
        }
    }
}

/// Exclusive write access to a chain: the only way to link or unlink versions.
///
/// Dropping it releases the lock, also when a panic unwinds through the holder.
pub(crate) struct ChainWriter<'a> {
    chain: &'a Chain,
}

impl<'a> ChainWriter<'a> {
    /// The chain this writer holds.
    pub(crate) fn chain(&self) -> &'a Chain {
        self.chain
    }

    /// Whether the collector removed the chain from the key map (then nothing may be installed).
    pub(crate) fn is_removed(&self) -> bool {
        self.chain.is_removed()
    }

    /// Marks the chain dead; a committer that locks it afterwards re-resolves its key.
    pub(crate) fn mark_removed(&self) {
        self.chain.state.fetch_or(REMOVED, Ordering::Relaxed);
    }

    /// Timestamp of the newest installed version, whether or not it is visible yet.
    pub(crate) fn newest_ts(&self, guard: &Guard) -> Option<u64> {
        self.chain.newest(guard).map(|v| v.ts)
    }

    /// Whether the chain holds no version at all (it can leave the map).
    pub(crate) fn is_empty(&self, guard: &Guard) -> bool {
        self.chain.head.load(Ordering::Acquire, guard).is_null()
    }

    /// Links a new newest version. `ts` must exceed every timestamp in the chain (commit
    /// timestamps are allocated after the lock is taken, so this holds for committers).
    pub(crate) fn install(&self, ts: u64, value: Option<Bytes>, guard: &Guard) {
        let head = self.chain.head.load(Ordering::Relaxed, guard);
        debug_assert!(
            // SAFETY: `head` is pinned by `guard` and only the lock holder (us) unlinks nodes.
            unsafe { head.as_ref() }.is_none_or(|h| h.ts < ts),
            "versions must be installed in timestamp order"
        );
        let node = Owned::new(Version {
            ts,
            value,
            next: Atomic::null(),
        });
        node.next.store(head, Ordering::Relaxed);
        // Release: a reader that loads the new head sees the node's fields and its `next`.
        self.chain.head.store(node, Ordering::Release);
    }

    /// Unlinks every version no snapshot at or above `watermark` can see: all versions older
    /// than the newest one with `ts <= watermark`, and that one too when it is a tombstone
    /// (a reader at `s >= watermark` then finds nothing, which also means absent). Unlinked
    /// nodes are freed once every thread pinned now has unpinned. Returns how many it unlinked.
    ///
    /// The caller guarantees that no live or future snapshot reads below `watermark`
    /// (the registry's watermark contract); memory safety does not depend on it.
    pub(crate) fn prune(&self, watermark: u64, guard: &Guard) -> usize {
        // Find the newest version at or below the watermark and the link that points to it.
        let mut link = &self.chain.head;
        let mut cur = link.load(Ordering::Relaxed, guard);
        // SAFETY: pinned by `guard`; we are the only thread that unlinks nodes of this chain.
        while let Some(node) = unsafe { cur.as_ref() } {
            if node.ts <= watermark {
                break;
            }
            link = &node.next;
            cur = link.load(Ordering::Relaxed, guard);
        }
        // SAFETY: as above.
        let Some(keep) = (unsafe { cur.as_ref() }) else {
            return 0;
        };
        // Cut at `keep.next`, or at `keep` itself when it is a tombstone.
        let cut_link = if keep.value.is_none() {
            link
        } else {
            &keep.next
        };
        // Release pairs with readers' Acquire loads: a reader that sees null stops there.
        let mut tail = cut_link.swap(Shared::null(), Ordering::AcqRel, guard);
        let mut unlinked = 0;
        while !tail.is_null() {
            // SAFETY: `tail` was unlinked by the swap above (or is reachable only from a node
            // that was), so no new reader can reach it; readers already holding it are pinned,
            // and `defer_destroy` frees it only after they unpin. We read `next` before
            // deferring, and nobody writes the `next` of an unlinked node.
            unsafe {
                let next = tail.deref().next.load(Ordering::Relaxed, guard);
                guard.defer_destroy(tail);
                tail = next;
            }
            unlinked += 1;
        }
        unlinked
    }
}

impl Drop for ChainWriter<'_> {
    fn drop(&mut self) {
        // Release: the next lock holder and `is_removed` readers see our links and flags.
        self.chain.state.fetch_and(!LOCKED, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Single- and multi-threaded checks of the chain, sized to run under Miri.

    use super::*;
    use crossbeam_epoch as epoch;
    use std::sync::Arc;

    fn b(s: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn value_at(c: &Chain, ts: u64) -> Option<Option<Bytes>> {
        let g = epoch::pin();
        c.read_at(ts, &g).map(|v| v.value.cloned())
    }

    #[test]
    fn reads_newest_version_at_or_below_timestamp() {
        let c = Chain::new();
        let g = epoch::pin();
        {
            let w = c.lock();
            w.install(2, b("a"), &g);
            w.install(5, None, &g);
            w.install(7, b("c"), &g);
        }
        assert_eq!(value_at(&c, 1), None);
        assert_eq!(value_at(&c, 2), Some(b("a")));
        assert_eq!(value_at(&c, 4), Some(b("a")));
        assert_eq!(value_at(&c, 5), Some(None));
        assert_eq!(value_at(&c, 6), Some(None));
        assert_eq!(value_at(&c, 7), Some(b("c")));
        assert_eq!(value_at(&c, u64::MAX), Some(b("c")));
        assert_eq!(c.version_count(&g), 3);
    }

    #[test]
    fn prune_keeps_what_the_watermark_can_see() {
        let c = Chain::new();
        let g = epoch::pin();
        let w = c.lock();
        for ts in 1..=5 {
            w.install(ts * 10, b(&ts.to_string()), &g);
        }
        // Watermark 35: versions 50 and 40 are newer, 30 is what a reader at 35 sees.
        assert_eq!(w.prune(35, &g), 2);
        assert_eq!(c.version_count(&g), 3);
        assert_eq!(value_at(&c, 35), Some(b("3")));
        assert_eq!(value_at(&c, 45), Some(b("4")));
        // Pruning again at the same watermark is a no-op.
        assert_eq!(w.prune(35, &g), 0);
        // Watermark above everything keeps only the newest.
        assert_eq!(w.prune(100, &g), 2);
        assert_eq!(c.version_count(&g), 1);
        assert_eq!(value_at(&c, 100), Some(b("5")));
    }

    #[test]
    fn prune_drops_a_tombstone_that_nothing_needs() {
        let c = Chain::new();
        let g = epoch::pin();
        let w = c.lock();
        w.install(1, b("x"), &g);
        w.install(2, None, &g);
        assert_eq!(w.prune(1, &g), 0);
        assert!(!w.is_empty(&g));
        assert_eq!(w.prune(2, &g), 2);
        assert!(w.is_empty(&g));
        assert_eq!(value_at(&c, 10), None);
        // A tombstone newer than the watermark stays: readers below it still see "x".
        w.install(3, b("y"), &g);
        w.install(4, None, &g);
        assert_eq!(w.prune(3, &g), 0);
        assert_eq!(value_at(&c, 3), Some(b("y")));
        assert_eq!(value_at(&c, 4), Some(None));
    }

    #[test]
    fn lock_is_exclusive_and_removed_flag_sticks() {
        let c = Chain::new();
        let w = c.lock();
        assert!(c.try_lock().is_none());
        w.mark_removed();
        drop(w);
        assert!(c.is_removed());
        let w2 = c.try_lock().expect("free after drop");
        assert!(w2.is_removed());
    }

    #[test]
    fn readers_race_writer_and_pruner() {
        // Small enough for Miri. The writer installs and prunes down to its newest version
        // while a reader walks the chain: every walk must find a fully initialised version
        // whose value matches its timestamp, and timestamps never go backwards.
        let rounds: u64 = if cfg!(miri) { 40 } else { 5_000 };
        let c = Arc::new(Chain::new());
        {
            let g = epoch::pin();
            c.lock().install(1, b("1"), &g);
        }
        let writer = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for ts in 2..=rounds {
                    let g = epoch::pin();
                    let w = c.lock();
                    w.install(ts, b(&ts.to_string()), &g);
                    w.prune(ts, &g);
                }
            })
        };
        let reader = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                let mut last = 0;
                while last < rounds {
                    let g = epoch::pin();
                    let v = c.newest(&g).expect("the chain is never empty");
                    assert_eq!(v.value, Some(&Bytes::from(v.ts.to_string())));
                    assert!(v.ts >= last);
                    last = v.ts;
                }
            })
        };
        writer.join().unwrap();
        reader.join().unwrap();
        let g = epoch::pin();
        assert_eq!(c.version_count(&g), 1);
    }
}
