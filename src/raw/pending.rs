//! Versions linked before their commit has a timestamp: how a big commit stays out of the
//! way of the committers after it.
//!
//! Timestamps become visible in order (see `clock`): a committer that takes a timestamp
//! waits, before it returns, for every smaller one to be published. A commit that installs
//! after taking its timestamp therefore holds up every commit that starts meanwhile, for as
//! long as its install runs: a million keys kept unrelated one-key commits waiting ~250 ms.
//!
//! So a big commit (see `commit::pending`) links its versions while it holds the chains'
//! locks but no timestamp yet, each marked [`PENDING`]: a timestamp above every snapshot and
//! every visible timestamp, so every reader skips the node exactly as it skips a version
//! newer than its snapshot. Then it takes its timestamp, [stamps](Pending::stamp) the nodes
//! (one store each), and publishes; the head caches are rewritten and the chains pruned after
//! the publication, still under the locks. Later committers wait only for the stamping.
//!
//! ## Invariants
//!
//! - A pending node is stamped before its commit publishes its timestamp (the stamp is a
//!   `Relaxed` store sequenced before the publication's `Release`): a reader whose snapshot
//!   includes the commit took its snapshot from the clock after the publication, so it reads
//!   the stamp and sees the version; a reader whose snapshot predates the commit skips the
//!   node whether it reads `PENDING` or the stamp. Checked by loom model 19 and its negative
//!   control (`PublishBeforeStamp`).
//! - While a node is pending, the chain's head cache and the key's head mirror say
//!   `(PENDING, no value)`: a reader falls back to the chain, where the node's own timestamp
//!   decides. No pointer into a pending node's value is copied anywhere (a scan index rebuild
//!   copies the chain's cache, so it copies no pointer), which is what lets a commit that
//!   fails after linking (a serializable read validation, after the timestamp) unlink its
//!   pending nodes and retire them like any unlinked version.
//! - Only the chain's lock holder links, stamps, finishes or unlinks a pending node, and it
//!   holds the lock from the link until the caches describe the stamped node (or the node is
//!   unlinked): no other committer installs on top of a pending node, and the collector's
//!   prune (`try_lock`) never sees one.

use crossbeam_epoch::{Guard, Pointer, Shared};

use super::chain::{prefetch_line, ChainWriter};
use super::mirrored_chain::MirroredChain;
use super::version::{Unlinked, Version, PENDING};
use super::Retired;
use crate::sync::Ordering;

/// A version [linked as pending](ChainWriter::link_pending): the handle its commit stamps it
/// through, then [finishes](ChainWriter::finish_pending) or
/// [unlinks](ChainWriter::unlink_pending) it with.
#[must_use = "a pending version must be finished or unlinked by its chain's lock holder"]
pub(crate) struct Pending<'g> {
    node: Shared<'g, Version>,
}

impl Pending<'_> {
    /// The node, linked while the guard `'g` is pinned.
    fn node(&self) -> &Version {
        // SAFETY: `link_pending` linked the node under the guard the handle borrows; nodes are
        // freed only through the epoch after being unlinked, so the node stays allocated
        // while that guard is pinned, linked or not.
        unsafe { self.node.deref() }
    }

    /// Gives the version its commit timestamp. The commit stamps every pending version after
    /// taking `ts` and before publishing it (see the module's invariants).
    pub(crate) fn stamp(&self, ts: u64) {
        self.node().stamp_pending(ts);
    }

    /// The version's value (`None`: a tombstone), for the commit's log record.
    pub(crate) fn value(&self) -> Option<&[u8]> {
        self.node().value()
    }

    /// Starts loading the node's header, which [`stamp`](Self::stamp) writes: the stamping
    /// walks many cold nodes while later committers wait, so it prefetches a few ahead.
    pub(crate) fn prefetch(&self) {
        prefetch_line(std::ptr::with_exposed_provenance(self.node.into_usize()));
    }
}

impl ChainWriter<'_> {
    /// Links `node` as the chain's new head, [`PENDING`]: invisible to every reader until
    /// stamped and published. The chain's head cache and `mirror` (the key's head mirror, as
    /// for `install_node`) say `(PENDING, no value)` until
    /// [`finish_pending`](Self::finish_pending) or [`unlink_pending`](Self::unlink_pending).
    pub(crate) fn link_pending<'g>(
        &self,
        node: Unlinked,
        mirror: Option<&MirroredChain>,
        guard: &'g Guard,
    ) -> Pending<'g> {
        let mirror = self.own_mirror(mirror);
        let chain = self.chain();
        let head = chain.head.load(Ordering::Relaxed, guard);
        let node = node.pending();
        node.next().store(head, Ordering::Relaxed);
        let head_ts = chain.cache.value_ts_locked();
        // Release: a reader that loads the new head sees the node's fields and its `next`.
        let node = node.into_shared(guard);
        chain.head.store(node, Ordering::Release);
        self.forget_displaced();
        chain.second.store(head.into_usize(), Ordering::Relaxed);
        chain.second_ts.store(head_ts, Ordering::Relaxed);
        // One more version; the oldest, and so its settled mark, stay as they were.
        let shape = chain.shape.load(Ordering::Relaxed);
        chain.shape.store(shape + 1, Ordering::Relaxed);
        // No value pointer: see the module's invariants.
        chain.cache.set(PENDING, None);
        if let Some(mirror) = mirror {
            mirror.set(PENDING, None);
        }
        Pending { node }
    }

    /// After the commit published the stamped `pending` (still the head): the caches describe
    /// it, as an install's would.
    pub(crate) fn finish_pending(
        &self,
        pending: Pending<'_>,
        mirror: Option<&MirroredChain>,
        guard: &Guard,
    ) {
        let mirror = self.own_mirror(mirror);
        let chain = self.chain();
        debug_assert!(
            chain.head.load(Ordering::Relaxed, guard).into_usize() == pending.node.into_usize(),
            "a pending version is the head until finished"
        );
        let node = pending.node();
        let ts = node.ts();
        debug_assert!(ts != PENDING, "finished before it was stamped");
        chain.cache.set(ts, node.value());
        if let Some(mirror) = mirror {
            mirror.set(ts, node.value());
        }
    }

    /// Takes back `pending` (the head, never stamped: its commit failed): the previous head
    /// is the head again, the caches describe it, and the node goes to `retired` (a reader
    /// may still be looking at it).
    pub(crate) fn unlink_pending(
        &self,
        pending: Pending<'_>,
        mirror: Option<&MirroredChain>,
        retired: &mut Retired,
        guard: &Guard,
    ) {
        let mirror = self.own_mirror(mirror);
        let chain = self.chain();
        let node = pending.node();
        debug_assert!(
            chain.head.load(Ordering::Relaxed, guard).into_usize() == pending.node.into_usize(),
            "a pending version is the head until unlinked"
        );
        debug_assert_eq!(node.ts(), PENDING, "unlinked after it was stamped");
        let next = node.next().load(Ordering::Relaxed, guard);
        // Release, as for any head: a reader that loads it sees the node behind it.
        chain.head.store(next, Ordering::Release);
        // One version fewer; the oldest, and so its settled mark, stay as they were (a chain
        // left empty had none: the pending node was its only version).
        let shape = chain.shape.load(Ordering::Relaxed);
        chain.shape.store(shape - 1, Ordering::Relaxed);
        // SAFETY: `next` was linked behind the pending node, so it was the head before, and
        // only the lock holder (us) unlinks nodes: it is allocated while `guard` is pinned.
        let (ts, value, second) = unsafe { next.as_ref() }.map_or((0, None, 0), |v| {
            let second = v.next().load(Ordering::Relaxed, guard).into_usize();
            (v.ts(), v.value(), second)
        });
        self.forget_displaced();
        chain.second.store(second, Ordering::Relaxed);
        // Behind `next`, not read here.
        chain.second_ts.store(0, Ordering::Relaxed);
        chain.cache.set(ts, value);
        if let Some(mirror) = mirror {
            mirror.set(ts, value);
        }
        // SAFETY: the node is non-null, from `Version::alloc` (through `Unlinked`), unlinked
        // by the head store above (it was the head, so nothing else links to it), and pushed
        // once: `unlink_pending` consumes its only handle.
        unsafe { retired.push(pending.node) };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The pending operations on one chain, sized to run under Miri.

    use super::*;
    use crate::raw::test_values::{counted, wait_for_drops};
    use crate::raw::{Chain, HeadCache, Lent};
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    fn seen(v: Option<Lent<'_>>) -> Option<(u64, Option<Vec<u8>>)> {
        v.map(|v| (v.ts, v.value.map(<[u8]>::to_vec)))
    }

    fn head(ts: u64, value: &[u8]) -> Option<(u64, Option<Vec<u8>>)> {
        Some((ts, Some(value.to_vec())))
    }

    /// Every way a reader reads the chain, at `at`: through the mirror, the chain's cache,
    /// the walk, and the unregistered latest read. They must agree.
    fn reads(chain: &Chain, mirror: &HeadCache, at: u64) -> Option<(u64, Option<Vec<u8>>)> {
        let guard = &crossbeam_epoch::pin();
        let through_mirror = seen(chain.lend_at_mirrored(mirror, at, guard));
        assert_eq!(seen(chain.lend_at(at, guard)), through_mirror);
        assert_eq!(
            chain
                .read_at(at, guard)
                .map(|v| (v.ts, v.value.map(<[u8]>::to_vec))),
            through_mirror
        );
        if let Some(latest) = chain.lend_head_if_visible_mirrored(mirror, at, guard) {
            assert_eq!(seen(Some(latest)), through_mirror);
        }
        through_mirror
    }

    #[test]
    fn a_pending_version_is_seen_once_stamped_and_cached_once_finished() {
        let entry = MirroredChain::new();
        let (chain, mirror) = (&**entry.chain(), entry.mirror());
        let guard = &crossbeam_epoch::pin();
        let w = chain.lock();
        w.install(1, Some(b"v1"), Some(&entry), guard);
        let pending = w.link_pending(Unlinked::new(Some(b"v2")), Some(&entry), guard);
        assert!(chain.second_is_exact(guard), "behind the pending head");
        for at in [1, 5, PENDING - 1] {
            assert_eq!(reads(chain, mirror, at), head(1, b"v1"), "pending, at {at}");
        }
        assert_eq!(
            w.newest_ts(guard),
            Some(PENDING),
            "the lock holder sees its own node"
        );
        pending.stamp(7);
        assert_eq!(reads(chain, mirror, 6), head(1, b"v1"));
        assert_eq!(reads(chain, mirror, 7), head(7, b"v2"));
        assert_eq!(w.newest_ts(guard), Some(7));
        // The caches still send readers to the chain until finished.
        assert!(mirror.get(guard).is_some_and(|v| v.ts == PENDING));
        w.finish_pending(pending, Some(&entry), guard);
        assert_eq!(seen(mirror.get(guard)), head(7, b"v2"));
        assert_eq!(seen(chain.cache.get(guard)), head(7, b"v2"));
        assert_eq!(reads(chain, mirror, 7), head(7, b"v2"));
        assert_eq!(chain.version_count(guard), 2);
        assert_eq!(chain.shape.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn an_unlinked_pending_version_restores_the_head_and_is_freed() {
        let drops = Arc::new(AtomicUsize::new(0));
        let value = counted(&drops, 9);
        let entry = MirroredChain::new();
        let (chain, mirror) = (&**entry.chain(), entry.mirror());
        {
            let guard = &crossbeam_epoch::pin();
            let w = chain.lock();
            w.install(1, Some(b"v0"), Some(&entry), guard);
            w.install(2, Some(b"v1"), Some(&entry), guard);
            let pending = w.link_pending(Unlinked::new(Some(&value)), Some(&entry), guard);
            let mut retired = Retired::new();
            w.unlink_pending(pending, Some(&entry), &mut retired, guard);
            retired.retire(guard);
            assert!(
                chain.second_is_exact(guard),
                "the version behind the restored head"
            );
            assert_ne!(chain.second.load(Ordering::Relaxed), 0);
            assert_eq!(seen(mirror.get(guard)), head(2, b"v1"));
            assert_eq!(seen(chain.cache.get(guard)), head(2, b"v1"));
            assert_eq!(w.newest_ts(guard), Some(2));
            assert_eq!(chain.version_count(guard), 2);
            assert_eq!(chain.shape.load(Ordering::Relaxed), 2);
        }
        for at in [2, PENDING - 1, PENDING] {
            assert_eq!(reads(chain, mirror, at), head(2, b"v1"));
        }
        wait_for_drops(&drops, 1);
    }

    #[test]
    fn a_pending_version_of_a_new_key_taken_back_leaves_the_chain_empty() {
        let entry = MirroredChain::new();
        let (chain, mirror) = (&**entry.chain(), entry.mirror());
        let guard = &crossbeam_epoch::pin();
        let w = chain.lock();
        let pending = w.link_pending(Unlinked::new(None), Some(&entry), guard);
        assert_eq!(reads(chain, mirror, 3), None);
        let mut retired = Retired::new();
        w.unlink_pending(pending, Some(&entry), &mut retired, guard);
        retired.retire(guard);
        assert!(w.is_empty(guard));
        assert!(chain.second_is_exact(guard));
        assert_eq!(w.newest_ts(guard), None);
        assert!(mirror.get(guard).is_none() && chain.cache.get(guard).is_none());
        assert_eq!(reads(chain, mirror, PENDING), None);
    }
}
