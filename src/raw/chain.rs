//! A per-key version chain: a singly linked list of committed versions, newest first.

use std::cell::Cell;

use crossbeam_epoch::{Atomic, Guard, Pointer, Shared};

use crate::horizon::Horizon;

use super::head_cache::{HeadCache, Lent};
use super::mirrored_chain::MirroredChain;
use super::version::{next_link, Unlinked, Version, PENDING};
use super::Retired;
use crate::sync::{AtomicU32, AtomicU64, AtomicUsize, Backoff, Ordering};

/// A borrowed view of one version, valid while the epoch guard it came from is pinned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VersionRef<'g> {
    /// Commit timestamp of the version.
    pub(crate) ts: u64,
    /// The value, `None` for a tombstone.
    pub(crate) value: Option<&'g [u8]>,
}

impl<'g> VersionRef<'g> {
    /// The same version as a lending reader sees it.
    pub(crate) fn lent(self) -> Lent<'g> {
        Lent {
            ts: self.ts,
            value: self.value,
        }
    }
}

/// Bit of [`Chain::state`]: a committer or the collector holds the chain's write lock.
const LOCKED: u32 = 1;
/// Bit of [`Chain::state`]: the chain has left the key map and must not receive versions.
const REMOVED: u32 = 2;
/// Bit of [`Chain::state`], set at creation and never changed: the chain has a head mirror
/// (see [`MirroredChain`]), which every write of its head must be handed.
const MIRRORED: u32 = 4;

/// Bit of [`Chain::shape`]: the chain's oldest version is a value at or below a watermark a
/// prune used. Watermarks only grow, so every later prune would keep it and stop there
/// (a prune with an older, stale horizon keeps it too, which only keeps more).
const SETTLED_TAIL: u32 = 1 << 31;

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
    /// [`MIRRORED`] is or-ed into each of these for the whole life of a chain made with its
    /// head mirror, and never into another chain's.
    ///
    /// `LOCKED` is taken with an `Acquire` CAS and released with a `Release` store, so each
    /// lock holder sees the previous holder's `head`/`next` writes. `REMOVED` is set only by the
    /// lock holder and never cleared.
    state: AtomicU32,
    /// How many versions are linked (the low bits), and whether the oldest of them is known to
    /// need no look from a prune ([`SETTLED_TAIL`]). Written only by the lock holder (install,
    /// prune), read only under the lock, so `Relaxed` suffices: the lock orders every access.
    /// The count lets a prune cut off a chain's tail without reading it and still say how many
    /// versions it unlinked; the flag lets it stop above the oldest version without reading
    /// it (see [`ChainWriter::prune`]). Sits in the padding after `state`.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `n` | `n` versions linked |
    /// | `n \| SETTLED_TAIL` | `n >= 1` versions linked; the oldest is a value (not a tombstone) at or below the watermark of a prune that saw it, with nothing behind it |
    pub(super) shape: AtomicU32,
    /// The newest version, or null for a chain with no versions.
    ///
    /// Published with `Release` by the lock holder, read with `Acquire` by everyone, so a reader
    /// that sees a node sees its initialised `ts`, `value` and `next`.
    pub(super) head: Atomic<Version>,
    /// A copy of the head's timestamp and value, rewritten by the lock holder whenever `head`
    /// changes, before the old head can be retired (see [`HeadCache`]).
    pub(super) cache: HeadCache,
    /// The address of the version behind the head, `0` when there is none: kept exact by the
    /// lock holder at every write of the head and every prune (memory safety relies on it:
    /// [`ChainWriter::prune_known`] writes that version's link through it), read only by the
    /// lock holder, so `Relaxed` suffices (the lock orders every access). It lets a
    /// committer start loading, when it takes the lock, the two versions its prune will touch
    /// (the superseded head and the one behind it) at once, instead of finding the second
    /// only behind the first's miss (see [`ChainWriter::prefetch_head_and_second`]), and the
    /// prune relink the second version without loading the head.
    pub(super) second: AtomicUsize,
    /// The timestamp of the version [`second`](Self::second) names if it is a value; `0`
    /// when there is none, it is a tombstone, or the lock holder that last moved `second` did
    /// not read it. Kept like `second`, under the lock (`Relaxed`). With the install's
    /// record of the version it pushed to third place and [`tail`](Self::tail), it lets the
    /// prune of a rewritten key decide and unlink without loading a version (see
    /// [`ChainWriter::prune_known`]).
    pub(super) second_ts: AtomicU64,
    /// The address of the chain's oldest version while [`shape`](Self::shape) has
    /// [`SETTLED_TAIL`] (meaningless otherwise): set by every prune that sets the flag, and
    /// exact while it stands (memory safety relies on it: [`ChainWriter::prune_known`] links
    /// a kept version to it, and readers follow that link). Read only by the lock holder
    /// (`Relaxed`, as `second`).
    pub(super) tail: AtomicUsize,
}

impl Chain {
    /// An empty, live, unlocked chain without a head mirror (the store's chains are made
    /// with theirs, by [`MirroredChain::new`]).
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::with_state(0)
    }

    /// An empty, unlocked chain with control word `state`.
    fn with_state(state: u32) -> Self {
        Self {
            state: AtomicU32::new(state),
            shape: AtomicU32::new(0),
            head: Atomic::null(),
            cache: HeadCache::new(),
            second: AtomicUsize::new(0),
            second_ts: AtomicU64::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// An empty chain with a head mirror: only [`MirroredChain::new`] makes one.
    pub(super) fn new_mirrored() -> Self {
        Self::with_state(MIRRORED)
    }

    /// The chain's head cache (for copies of the head, see `run_heads`).
    pub(super) fn cache(&self) -> &HeadCache {
        &self.cache
    }

    /// The newest version with `ts <= at`, if any (a tombstone is returned as such).
    pub(crate) fn read_at<'g>(&self, at: u64, guard: &'g Guard) -> Option<VersionRef<'g>> {
        let mut cur = self.head.load(Ordering::Acquire, guard);
        // Nodes are freed only through the epoch after being unlinked: in `Retired` batches
        // after `ChainWriter::prune`, or the whole list by `Drop for Chain`.
        // SAFETY: `cur` came from `head` or a `next` link while `guard` is pinned, so by the
        // above the node outlives `'g`, even if the chain itself is dropped meanwhile.
        while let Some(node) = unsafe { cur.as_ref() } {
            // One load: the timestamp is an atomic (see `raw::pending`).
            let ts = node.ts();
            if ts <= at {
                return Some(VersionRef {
                    ts,
                    value: node.value(),
                });
            }
            cur = node.next().load(Ordering::Acquire, guard);
        }
        None
    }

    /// The newest version with `ts <= at`, if any, lent: like [`read_at`](Self::read_at), but
    /// when that version is the head it is read from the chain's head cache without touching
    /// the version node. Without the chain lock the cache may be one install behind `head`
    /// (between the head store and the cache rewrite); that version's timestamp is then above
    /// every registered snapshot and every visible timestamp, so no reader at or below them
    /// can tell.
    pub(crate) fn lend_at<'g>(&self, at: u64, guard: &'g Guard) -> Option<Lent<'g>> {
        match self.cache.get(guard) {
            Some(head) if head.ts <= at => Some(head),
            _ => self.read_at(at, guard).map(VersionRef::lent),
        }
    }

    /// [`read_head_if_visible`](Self::read_head_if_visible), lent (from the head cache when it
    /// is consistent).
    pub(crate) fn lend_head_if_visible<'g>(
        &self,
        visible: u64,
        guard: &'g Guard,
    ) -> Option<Lent<'g>> {
        if crate::sync::faults::active(crate::sync::faults::Fault::LatestReadWalksPastHead) {
            return self.lend_at(visible, guard);
        }
        match self.cache.get(guard) {
            Some(head) => (head.ts <= visible).then_some(head),
            None => self
                .read_head_if_visible(visible, guard)
                .map(VersionRef::lent),
        }
    }

    /// [`lend_at`](Self::lend_at), trying `mirror` (this chain's head mirror, see
    /// [`ChainWriter::install`]) first: a read whose answer is the head then touches only the
    /// mirror's cache line, not the chain.
    pub(crate) fn lend_at_mirrored<'g>(
        &self,
        mirror: &HeadCache,
        at: u64,
        guard: &'g Guard,
    ) -> Option<Lent<'g>> {
        match mirror.get(guard) {
            Some(head) if head.ts <= at => Some(head),
            _ => self.lend_at(at, guard),
        }
    }

    /// [`lend_head_if_visible`](Self::lend_head_if_visible), trying `mirror` first (see
    /// [`lend_at_mirrored`](Self::lend_at_mirrored)).
    pub(crate) fn lend_head_if_visible_mirrored<'g>(
        &self,
        mirror: &HeadCache,
        visible: u64,
        guard: &'g Guard,
    ) -> Option<Lent<'g>> {
        match mirror.get(guard) {
            Some(head) => (head.ts <= visible).then_some(head),
            None => self.lend_head_if_visible(visible, guard),
        }
    }

    /// Timestamp of the newest installed version, whether or not it is visible yet (from the
    /// head cache when it is consistent). Exact under the chain lock; without it, possibly one
    /// install behind, which the validation that uses it tolerates: an installer it misses
    /// locked after the validator's `is_locked` check, so it took a larger timestamp.
    pub(crate) fn newest_ts(&self, guard: &Guard) -> Option<u64> {
        match self.cache.get(guard) {
            // A cache that says `PENDING` holds no timestamp (see `raw::pending`): the node
            // does, once stamped.
            Some(head) if head.ts != PENDING => Some(head.ts),
            _ => self.newest(guard).map(|v| v.ts),
        }
    }

    /// The head version if it is at or below `visible` (a loaded visible timestamp): then it is
    /// the newest version at or below `visible`, and readers without a registered snapshot
    /// may use it (see `Db::get`). `None` if the chain is empty or its head is newer
    /// (inconclusive).
    pub(crate) fn read_head_if_visible<'g>(
        &self,
        visible: u64,
        guard: &'g Guard,
    ) -> Option<VersionRef<'g>> {
        if crate::sync::faults::active(crate::sync::faults::Fault::LatestReadWalksPastHead) {
            return self.read_at(visible, guard);
        }
        self.newest(guard).filter(|head| head.ts <= visible)
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
            cur = node.next().load(Ordering::Acquire, guard);
        }
        n
    }

    /// Bytes of the version nodes linked in the chain (allocations as requested), for memory
    /// accounting. Walks the chain like [`version_count`](Self::version_count).
    pub(crate) fn node_bytes(&self, guard: &Guard) -> usize {
        let mut bytes = 0;
        let mut cur = self.head.load(Ordering::Acquire, guard);
        // SAFETY: as in `read_at`: pinned, and nodes are only freed after unlinking.
        while let Some(node) = unsafe { cur.as_ref() } {
            bytes += node.alloc_size();
            cur = node.next().load(Ordering::Acquire, guard);
        }
        bytes
    }

    /// Whether [`second`](Self::second) names the version behind the head (`0`: none),
    /// [`second_ts`](Self::second_ts) is its timestamp or `0` (always `0` when there is none
    /// or it is a tombstone), and [`tail`](Self::tail) names the oldest version when it is
    /// settled, as every write of the chain must leave them (for tests).
    #[cfg(all(test, not(loom)))]
    pub(super) fn second_is_exact(&self, guard: &Guard) -> bool {
        let head = self.head.load(Ordering::Acquire, guard);
        // SAFETY: as in `read_at`: pinned, and nodes are only freed after unlinking.
        let behind = unsafe { head.as_ref() }
            .map_or(Shared::null(), |h| h.next().load(Ordering::Acquire, guard));
        // SAFETY: as above.
        let behind_ts = unsafe { behind.as_ref() }
            .filter(|v| !v.is_tombstone())
            .map_or(0, Version::ts);
        let second_ts = self.second_ts.load(Ordering::Relaxed);
        let mut oldest = head;
        // SAFETY: as above.
        while let Some(node) = unsafe { oldest.as_ref() } {
            let next = node.next().load(Ordering::Acquire, guard);
            if next.is_null() {
                break;
            }
            oldest = next;
        }
        let settled = self.shape.load(Ordering::Relaxed) & SETTLED_TAIL != 0;
        self.second.load(Ordering::Relaxed) == behind.into_usize()
            && (second_ts == 0 || second_ts == behind_ts)
            && (!settled || self.tail.load(Ordering::Relaxed) == oldest.into_usize())
    }

    /// Whether [`second_ts`](Self::second_ts) is known (the steady prune can run).
    #[cfg(all(test, not(loom)))]
    pub(super) fn second_ts_is_known(&self) -> bool {
        self.second_ts.load(Ordering::Relaxed) != 0
    }

    /// Whether the collector has removed this chain from the key map.
    pub(crate) fn is_removed(&self) -> bool {
        self.state.load(Ordering::Acquire) & REMOVED != 0
    }

    /// Asks the processor to start loading the lines a read of this chain touches first (its
    /// head cache), so that a scan can overlap the misses of the next few keys' chains with
    /// the work on this one. A hint: it changes no state and never faults.
    #[inline]
    pub(crate) fn prefetch(&self) {
        let start: *const HeadCache = &self.cache;
        prefetch_line(start.cast());
        // The cache may straddle two lines.
        prefetch_line(start.cast::<u8>().wrapping_add(size_of::<HeadCache>() - 1));
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
            .map(|_| ChainWriter {
                chain: self,
                displaced: Cell::new(None),
            })
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        // The common case (the collector removed an empty chain) ends without pinning: this
        // drop may run inside an epoch-deferred function, even during thread exit, where
        // pinning would register a new participant.
        // SAFETY: `&mut self`: no thread can link or unlink nodes of this chain any more, so
        // the swap below needs no protection.
        let unprotected = unsafe { crossbeam_epoch::unprotected() };
        let head = self
            .head
            .swap(Shared::null(), Ordering::Relaxed, unprotected);
        if head.is_null() {
            return;
        }
        // A chain that still holds versions is dropped with the whole store. Even then a
        // pinned reader may still hold a `VersionRef` or a lent value from it: those borrow
        // from the reader's guard, not from the chain. So the list is freed like an unlinked
        // tail: after every thread pinned now has unpinned.
        let guard = crossbeam_epoch::pin();
        let mut retired = Retired::new();
        // Unlinked nodes that still point into the list are themselves only reachable by
        // readers pinned now; only a lock holder unlinks, and these nodes were all linked.
        // SAFETY: `head`'s list is unreachable for threads that pin from now on (the chain is
        // being dropped), nobody writes its links any more, no other batch holds its nodes.
        unsafe { retired.push_list(head) };
        retired.retire(&guard);
    }
}

/// What a [`ChainWriter::prune`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pruned {
    /// Versions unlinked (freed once no reader is pinned).
    pub(crate) unlinked: usize,
    /// Versions still linked.
    pub(crate) kept: usize,
    /// Of those, versions newer than the horizon's visible timestamp: kept because the horizon
    /// cannot tell whether a snapshot reads them. A fresh horizon would release all but the
    /// newest and those live snapshots read, so a high count means a stale horizon.
    pub(crate) above_horizon: usize,
}

/// Exclusive write access to a chain: the only way to link or unlink versions.
///
/// Dropping it releases the lock, also when a panic unwinds through the holder.
pub(crate) struct ChainWriter<'a> {
    chain: &'a Chain,
    /// What the last [`install_node`](Self::install_node) through this writer pushed from
    /// behind the head to third place: its address and timestamp (`0`: unknown), for the
    /// [`prune`](Self::prune) right after it; `None` once anything else wrote the chain.
    /// Nothing else on the chain knows the third version without loading the second.
    displaced: Cell<Option<(usize, u64)>>,
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

    /// The head mirror to rewrite with the chain's own cache: `entry`'s, which must be this
    /// chain's, or none for a chain made without one. Panics otherwise: a mirror left out,
    /// or another chain's, would go on describing a head this writer may then free.
    #[inline]
    pub(super) fn own_mirror<'m>(&self, entry: Option<&'m MirroredChain>) -> Option<&'m HeadCache> {
        match entry {
            Some(entry) => Some(entry.mirror_of(self.chain)),
            None => {
                // The lock holder reads its own locked word: no other thread writes it now.
                let state = self.chain.state.load(Ordering::Relaxed);
                assert!(
                    state & MIRRORED == 0,
                    "a mirrored chain's head written without its mirror"
                );
                None
            }
        }
    }

    /// Drops the record of what the last install displaced: a write other than an install
    /// moved the versions behind the head.
    pub(super) fn forget_displaced(&self) {
        self.displaced.set(None);
    }

    /// Marks the chain dead; a committer that locks it afterwards re-resolves its key.
    pub(crate) fn mark_removed(&self) {
        self.chain.state.fetch_or(REMOVED, Ordering::Relaxed);
    }

    /// Timestamp of the newest installed version, whether or not it is visible yet.
    pub(crate) fn newest_ts(&self, guard: &Guard) -> Option<u64> {
        self.chain.newest_ts(guard)
    }

    /// Whether the chain holds no version at all (it can leave the map).
    pub(crate) fn is_empty(&self, guard: &Guard) -> bool {
        self.chain.head.load(Ordering::Acquire, guard).is_null()
    }

    /// Links a new newest version. `ts` must exceed every timestamp in the chain (commit
    /// timestamps are allocated after the lock is taken, so this holds for committers).
    ///
    /// `mirror`, if given, is the entry holding this chain's second [`HeadCache`] (the key's
    /// map entry, so that point reads need not touch the chain); it must be given exactly for
    /// a chain made with a mirror, and be its own (checked: see [`MirroredChain`]). It is rewritten here too,
    /// right after the chain's own cache: before this returns, so before the old head can be
    /// pruned and retired, and before the commit's timestamp is published. That is all its
    /// readers rely on, exactly as for the chain's cache (see `HeadCache`). It is never
    /// cleared: a mirror left describing a head tombstone that pruning unlinked holds no
    /// value pointer and still reads as absent, which the emptied chain agrees with.
    /// (Commits install prebuilt nodes with `install_node`; this is for the unit tests.)
    #[cfg(all(test, not(loom)))]
    pub(crate) fn install(
        &self,
        ts: u64,
        value: Option<&[u8]>,
        mirror: Option<&MirroredChain>,
        guard: &Guard,
    ) {
        self.install_node(ts, Unlinked::new(value), mirror, guard);
    }

    /// [`install`](Self::install) of a node built ahead (the value already copied into it):
    /// stamps it with `ts` and links it.
    pub(crate) fn install_node(
        &self,
        ts: u64,
        node: Unlinked,
        mirror: Option<&MirroredChain>,
        guard: &Guard,
    ) {
        let mirror = self.own_mirror(mirror);
        let head = self.chain.head.load(Ordering::Relaxed, guard);
        debug_assert!(
            // SAFETY: `head` is pinned by `guard` and only the lock holder (us) unlinks nodes.
            unsafe { head.as_ref() }.is_none_or(|h| h.ts() < ts),
            "versions must be installed in timestamp order"
        );
        let node = node.stamp(ts);
        node.next().store(head, Ordering::Relaxed);
        // The old head's timestamp from the cache (the chain's own line), not its node.
        let head_ts = self.chain.cache.value_ts_locked();
        // Release: a reader that loads the new head sees the node's fields and its `next`.
        let node = node.into_shared(guard);
        self.chain.head.store(node, Ordering::Release);
        let second = &self.chain.second;
        self.displaced.set(Some((
            second.load(Ordering::Relaxed),
            self.chain.second_ts.load(Ordering::Relaxed),
        )));
        second.store(head.into_usize(), Ordering::Relaxed);
        self.chain.second_ts.store(head_ts, Ordering::Relaxed);
        // A new head leaves the oldest version, and so the flag, as it was (a chain that was
        // empty has no flag).
        let shape = self.chain.shape.load(Ordering::Relaxed);
        self.chain.shape.store(shape + 1, Ordering::Relaxed);
        // SAFETY: we just linked `node` and only the lock holder (us) unlinks nodes.
        let value = unsafe { node.deref() }.value();
        self.chain.cache.set(ts, value);
        if let Some(mirror) = mirror {
            mirror.set(ts, value);
        }
    }

    /// Unlinks every version no snapshot can see according to `horizon`: a version stays if
    /// it is newer than `horizon.now()` or some live or future snapshot reads in `[its ts, the
    /// next newer version's ts)`. Then the oldest remaining versions go too while they are
    /// tombstones at or below the horizon's writer floor: a reader of such a tombstone finds
    /// nothing, as it would below it (both mean absent), and no live transaction's snapshot
    /// predates the delete, so no write-write conflict is lost (see `Horizon`). When every
    /// remaining version is such a tombstone the chain becomes empty and may leave the map:
    /// this is what frees a key created and deleted while an older snapshot stays open. The
    /// newest version stays otherwise (a commit's own version is above `now`), so
    /// first-committer-wins checks are unaffected. Unlinked nodes go to `retired`, to be freed
    /// once every thread pinned when it is retired has unpinned. Returns how many it unlinked
    /// and how many stayed.
    ///
    /// The walk stops at the first version at or below the watermark: every snapshot reads at
    /// the watermark or above, so that version is the oldest any of them sees, and the tail
    /// behind it is cut off whole, without reading it (in the steady state of a rewritten key
    /// the tail is the one version before the superseded head: the prune does not wait for
    /// its line, only prefetches it for the free). It also stops above a chain's oldest version
    /// when an earlier prune settled it ([`SETTLED_TAIL`]), without reading it: in the steady
    /// state of a rewritten key under an old snapshot that version is the one the snapshot
    /// reads, and the walk then reads only the versions it unlinks or keeps above it.
    ///
    /// The caller guarantees that `horizon` came from the registries (no live or future
    /// snapshot reads anywhere else, no live transaction below the writer floor); memory
    /// safety does not depend on it.
    pub(crate) fn prune(&self, horizon: &Horizon, retired: &mut Retired, guard: &Guard) -> Pruned {
        if let Some(pruned) = self.prune_known(horizon, retired) {
            return pruned;
        }
        let watermark = horizon.watermark();
        let floor = strip_floor(horizon);
        // Kept tombstones above the watermark can go only when the floor is above it (old
        // read-only snapshots): otherwise the walk skips that bookkeeping.
        let strip_above = floor > watermark;
        // `link` is the link that points to the node under inspection: `head` or the `next` of
        // the nearest kept node above it.
        let mut link = &self.chain.head;
        let mut newer = u64::MAX;
        let (mut kept, mut above_horizon) = (0, 0);
        // The link to the first of the kept versions seen last that are all tombstones at or
        // below `floor`, with the count kept above it: where the chain will be cut.
        let mut strip: Option<(&Atomic<Version>, usize)> = None;
        let shape = self.chain.shape.load(Ordering::Relaxed);
        let before = shape & !SETTLED_TAIL;
        // Where the walk meets the settled oldest version (`usize::MAX`: there is none).
        let settled_at = if shape & SETTLED_TAIL != 0 {
            before as usize - 1
        } else {
            usize::MAX
        };
        // Which version the walk is at (counting those it unlinks), and whether the walk
        // ended on a value at or below the watermark, which is then the oldest one left.
        let (mut position, mut settled) = (0, false);
        // The timestamp of the version that ends up behind the head (`0`: not read).
        let mut second_ts = self.chain.second_ts.load(Ordering::Relaxed);
        let mut cur = link.load(Ordering::Relaxed, guard);
        // SAFETY: `cur` is pinned by `guard`, and we (the lock holder) are the only thread that
        // unlinks or frees nodes of this chain, so every node we reach stays allocated while
        // we look at it.
        while let Some(node) = unsafe { cur.as_ref() } {
            if position == settled_at {
                // The oldest version, a value at or below an earlier prune's watermark, so at
                // or below this one's (or this horizon is staler than that prune's, and
                // keeping the version only keeps more): kept as the branch below keeps it,
                // without loading its line.
                strip = None;
                kept += 1;
                settled = true;
                break;
            }
            position += 1;
            #[cfg(test)]
            walk_reads::note();
            let next = node.next().load(Ordering::Relaxed, guard);
            let ts = node.ts();
            if ts <= watermark {
                // The oldest version any snapshot reads (`needs` holds for it: the watermark
                // lies in `[its ts, newer)`); nothing behind it is needed.
                if node.is_tombstone() {
                    // A tombstone at or below the watermark (so the floor): cut here with its
                    // tail, unless the cut starts higher up.
                    strip.get_or_insert((link, kept));
                } else {
                    strip = None;
                    if kept == 1 {
                        second_ts = ts;
                    }
                    kept += 1;
                    settled = true;
                    self.chain.tail.store(cur.into_usize(), Ordering::Relaxed);
                    if !next.is_null() {
                        // The tail is freed when the epoch collects, up to 128 of this
                        // thread's pins later: start loading the first node's header (its
                        // length, for the free) now. The lines those pins touch in between
                        // (tens of KiB) fit the second-level cache, so the free usually finds
                        // it there (measured: +5% single-key commits over the node pool alone,
                        // alternating runs).
                        prefetch_line(std::ptr::with_exposed_provenance(next.into_usize()));
                        node.next().store(Shared::null(), Ordering::Release);
                        if kept == 1 {
                            // `node` is the head: nothing is behind it now.
                            self.chain.second.store(0, Ordering::Relaxed);
                            second_ts = 0;
                        }
                        // SAFETY: `next` (non-null, from `Version::alloc`) and its tail were
                        // linked until the store above cut them off (so in no batch yet), and
                        // nobody writes unlinked nodes' links.
                        unsafe { retired.push_list(next) };
                    }
                }
                break;
            }
            let above = ts > horizon.now();
            if above || horizon.needs(ts, newer) {
                if strip_above {
                    if node.is_tombstone() && ts <= floor {
                        strip.get_or_insert((link, kept));
                    } else {
                        strip = None;
                    }
                }
                if kept == 1 {
                    second_ts = if node.is_tombstone() { 0 } else { ts };
                }
                kept += 1;
                above_horizon += usize::from(above);
                link = node.next();
            } else {
                // The head is always kept here (the head cache describes it, see
                // `HeadCache`): its `newer` is `u64::MAX`, and `needs` holds for `[ts, MAX)` as
                // `now < MAX`. Only the strip below can unlink it, with the cache.
                debug_assert!(!std::ptr::eq(link, &self.chain.head), "pruned the head");
                // Release pairs with readers' Acquire loads of `link`: a reader that skips the
                // node still sees the initialised nodes behind it.
                link.store(next, Ordering::Release);
                if kept == 1 {
                    // `link` is the head's `next` (the head is the first version kept).
                    self.chain
                        .second
                        .store(next.into_usize(), Ordering::Relaxed);
                    // Read below if the walk reaches it before a settled version.
                    second_ts = 0;
                }
                // The store above unlinked `cur` (`link` was its only predecessor), so no reader
                // that pins from now on can reach it. Nobody writes the `next` of an unlinked
                // node, so readers already on it continue into the chain correctly.
                // SAFETY: non-null, allocated by `Version::alloc`, unlinked (above), and pushed
                // once: we move past it.
                unsafe { retired.push(cur) };
            }
            newer = ts;
            cur = next;
        }
        if let Some((cut, above_cut)) = strip {
            if std::ptr::eq(cut, &self.chain.head) {
                // Every remaining version goes: the chain becomes empty, and its cache says so
                // before any of them can be freed.
                self.chain.cache.set(0, None);
            }
            let first = cut.load(Ordering::Relaxed, guard);
            // Release pairs with readers' Acquire loads of `cut`, as above.
            cut.store(Shared::null(), Ordering::Release);
            // `first` and everything behind it (kept nodes, and the tail behind a watermark
            // tombstone) was reachable only through `cut`: the nodes unlinked one by one above
            // are behind no kept node, so none of these is in a batch yet.
            // SAFETY: non-null (the strip starts at a node), from `Version::alloc`, unlinked
            // by the store above with its tail, in no batch; nobody writes unlinked links.
            unsafe { retired.push_list(first) };
            kept = above_cut;
            if kept <= 1 {
                // The cut is at the head or right behind it.
                self.chain.second.store(0, Ordering::Relaxed);
                second_ts = 0;
            }
            // The oldest version left (if any) is a kept one above the watermark.
            settled = false;
        }
        debug_assert!(
            kept <= before as usize,
            "a version was linked without `install`"
        );
        // Truncation cannot happen: `kept` counts linked versions, at most `before`.
        #[allow(clippy::cast_possible_truncation)]
        let len = kept as u32;
        let flag = if settled { SETTLED_TAIL } else { 0 };
        self.chain.shape.store(len | flag, Ordering::Relaxed);
        self.chain.second_ts.store(second_ts, Ordering::Relaxed);
        Pruned {
            unlinked: before as usize - kept,
            kept,
            above_horizon,
        }
    }
}

impl ChainWriter<'_> {
    /// [`prune`](Self::prune) right after an install, when the chain already knows what the
    /// walk would read: the timestamps of the head (its cache), of the version behind it
    /// ([`Chain::second_ts`]) and of the one the install pushed to third place
    /// ([`displaced`](Self::displaced)), and where the settled oldest version is
    /// ([`Chain::tail`]). Then the prune loads no version: it relinks the second with one
    /// store into its `next` (whose line the lock-time prefetch fetched; a store does not
    /// wait for it) and hands what it unlinks to `retired` unread. Two shapes, the steady
    /// states of a rewritten key:
    ///
    /// - without an old snapshot, head -> superseded head at or below the watermark -> older:
    ///   the superseded head is the oldest version anyone reads, the rest is cut off;
    /// - under an old snapshot, head -> superseded head -> one to unlink -> the settled
    ///   version the snapshot reads: the third goes.
    ///
    /// Same outcome as the walk, which would keep the head (above the watermark, so above
    /// `now` or needed at `now`), stop at a second value at or below the watermark, or keep
    /// a second above it that the rule keeps, unlink a third above the watermark that the
    /// rule drops, and keep the settled value (which ends any strip of tombstones above it).
    /// `None`, with the displaced record consumed, in any other case: the walk decides.
    fn prune_known(&self, horizon: &Horizon, retired: &mut Retired) -> Option<Pruned> {
        let (third, third_ts) = self.displaced.take()?;
        let head_ts = self.chain.cache.ts_locked();
        // `0` for a tombstone or unknown: neither shortcut applies then.
        let second_ts = self.chain.second_ts.load(Ordering::Relaxed);
        let (watermark, now) = (horizon.watermark(), horizon.now());
        if head_ts <= watermark || second_ts == 0 {
            return None;
        }
        let shape = self.chain.shape.load(Ordering::Relaxed);
        let second = self.chain.second.load(Ordering::Relaxed);
        // SAFETY: `second` names the linked version behind the head (every write of the chain
        // keeps it so, under the lock we hold; non-zero as its timestamp is known), and only
        // the lock holder unlinks or frees versions, so it stays allocated while we use it.
        let link = unsafe { next_link(second) };
        if second_ts <= watermark {
            debug_assert!(
                shape & !SETTLED_TAIL >= 2,
                "a head and a second in the count"
            );
            // The superseded head is the oldest version any snapshot reads: settled, and
            // everything behind it (the displaced third on, if any) cut off.
            if third != 0 {
                // For the free, as in the walk.
                prefetch_line(std::ptr::with_exposed_provenance(third));
                // Release pairs with readers' Acquire loads of the link, as in the walk.
                link.store(Shared::null(), Ordering::Release);
                // SAFETY: `third` is the version the install pushed behind the second (from
                // `Version::alloc`; nothing wrote the chain since: the record was taken), so
                // it and its tail were linked until the store above cut them off (in no batch
                // yet), and nobody writes unlinked nodes' links.
                unsafe { retired.push_list(Shared::from_usize(third)) };
            }
            self.chain.tail.store(second, Ordering::Relaxed);
            self.chain.shape.store(2 | SETTLED_TAIL, Ordering::Relaxed);
            return Some(Pruned {
                unlinked: (shape & !SETTLED_TAIL) as usize - 2,
                kept: 2,
                above_horizon: usize::from(head_ts > now),
            });
        }
        // Four versions, the oldest settled: the displaced version is the third and the
        // settled one is right behind it.
        let keeps_second = second_ts > now || horizon.needs(second_ts, head_ts);
        let drops_third =
            third_ts > watermark && third_ts <= now && !horizon.needs(third_ts, second_ts);
        if shape != 4 | SETTLED_TAIL || !keeps_second || !drops_third {
            return None;
        }
        // SAFETY: `tail` is the address of the chain's settled oldest version (kept with
        // `SETTLED_TAIL`, checked above), linked, from `Version::alloc`.
        let tail =
            unsafe { Shared::<Version>::from_usize(self.chain.tail.load(Ordering::Relaxed)) };
        // Release pairs with readers' Acquire loads of the link, as in the walk: a reader that
        // skips the third still sees the initialised version behind it.
        link.store(tail, Ordering::Release);
        // SAFETY: `third` is the version the install pushed to third place (from
        // `Version::alloc`, non-null: its timestamp is known); its only predecessor was the
        // second, whose link the store above moved past it, so it is unlinked, and it is
        // pushed once (the displaced record was taken).
        unsafe { retired.push(Shared::from_usize(third)) };
        self.chain.shape.store(3 | SETTLED_TAIL, Ordering::Relaxed);
        Some(Pruned {
            unlinked: 1,
            kept: 3,
            above_horizon: usize::from(head_ts > now) + usize::from(second_ts > now),
        })
    }
}

/// Up to where [`ChainWriter::prune`] strips a chain's oldest tombstones.
fn strip_floor(horizon: &Horizon) -> u64 {
    if crate::sync::faults::active(crate::sync::faults::Fault::StripIgnoringWriterFloor) {
        return horizon.now();
    }
    horizon.writer_floor().min(horizon.now())
}

impl ChainWriter<'_> {
    /// Starts loading the current head's node and the one behind it into the cache: the
    /// commit's prune writes the first's `next` after the install (or reads it, when it
    /// walks), and the second is the version it unlinks under an old snapshot (read when it
    /// is freed, or by a walk), and the misses can overlap each other and the work in between
    /// (timestamp, node allocation, mirror lookup). A hint: it changes no state.
    pub(crate) fn prefetch_head_and_second(&self, guard: &Guard) {
        let head = self.chain.head.load(Ordering::Relaxed, guard);
        prefetch_line(std::ptr::with_exposed_provenance(head.into_usize()));
        let second = self.chain.second.load(Ordering::Relaxed);
        prefetch_line(std::ptr::with_exposed_provenance(second));
    }

    /// Loads the versions a [`prune`](Self::prune) with `horizon` would read, down to where
    /// its walk stops, and changes nothing. A commit with an old snapshot's horizon calls this
    /// before it takes its timestamp: the prune after the install then finds those lines in
    /// the cache instead of missing on them one after another (each `next` is behind the
    /// previous miss) while later committers wait for this commit's timestamp. The last
    /// version the prune reads above a settled oldest one is only prefetched: its miss then
    /// overlaps the timestamp and the install instead of stalling this thread (alternating
    /// resource_bounds runs: 0.82x/0.95x/1.14x against 0.80x/0.84x/0.92x reading it here,
    /// loaded host). When those are the first two, which
    /// [`prefetch_head_and_second`](Self::prefetch_head_and_second) already has on their way
    /// (the steady state of a rewritten key under an old snapshot: the snapshot's version,
    /// settled, behind the head and the version it superseded), this reads nothing.
    pub(crate) fn warm_for_prune(&self, horizon: &Horizon, guard: &Guard) {
        let watermark = horizon.watermark();
        let shape = self.chain.shape.load(Ordering::Relaxed);
        let settled_at = if shape & SETTLED_TAIL != 0 {
            (shape & !SETTLED_TAIL) as usize - 1
        } else {
            usize::MAX
        };
        if settled_at <= 2 {
            return;
        }
        let mut position = 0;
        let mut cur = self.chain.head.load(Ordering::Relaxed, guard);
        // SAFETY: as in `prune`: `cur` is pinned by `guard`, and only the lock holder (us)
        // unlinks nodes, so every node we reach stays allocated while we look at it.
        while let Some(node) = unsafe { cur.as_ref() } {
            if position + 1 == settled_at {
                // The last version the prune reads (it stops at the settled one below): its
                // line need only be on its way, the install leaves it time to arrive.
                prefetch_line(std::ptr::with_exposed_provenance(cur.into_usize()));
                break;
            }
            if position == settled_at || node.ts() <= watermark {
                break;
            }
            position += 1;
            cur = node.next().load(Ordering::Relaxed, guard);
        }
    }

    /// [`prune`](Self::prune) on its own: retires what it unlinked right away.
    pub(crate) fn prune_and_retire(&self, horizon: &Horizon, guard: &Guard) -> Pruned {
        let mut retired = Retired::new();
        let pruned = self.prune(horizon, &mut retired, guard);
        retired.retire(guard);
        pruned
    }
}

impl Drop for ChainWriter<'_> {
    fn drop(&mut self) {
        // Release: the next lock holder and `is_removed` readers see our links and flags. A
        // plain store, not a read-modify-write: while the lock is held only its holder writes
        // the word (others' compare-exchanges fail on `LOCKED`), so no update can be lost.
        let state = self.chain.state.load(Ordering::Relaxed);
        self.chain.state.store(state & !LOCKED, Ordering::Release);
    }
}

/// Counts the versions prunes' walks load, per thread (under loom, per model: its threads
/// run on the test's thread), so that tests can check that a prune loaded none (took a
/// shortcut of [`ChainWriter::prune_known`]). A plain thread-local: loom does not schedule
/// on it.
/// Hints the processor to load the cache line holding `p` into all cache levels. A hint: it
/// changes no state, never faults, and any address is allowed.
#[inline(always)]
pub(crate) fn prefetch_line(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse", not(miri)))]
    // SAFETY: the intrinsic's only requirement is the `sse` target feature, enabled here (cfg).
    // A prefetch is a hint: it reads nothing architecturally and never faults, whatever `p`.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse", not(miri))))]
    let _ = p;
}

/// Hints the processor to load every cache line of `items` (see [`prefetch_line`]): for a
/// search about to probe a small array it has not touched, so that the probes' misses overlap
/// instead of coming one after another.
#[inline]
pub(crate) fn prefetch_lines<T>(items: &[T]) {
    let std::ops::Range { start, end } = items.as_ptr_range();
    let (mut line, end) = (start.cast::<u8>(), end.cast::<u8>());
    while line < end {
        prefetch_line(line);
        line = line.wrapping_add(64);
    }
}

#[cfg(test)]
pub(crate) mod walk_reads {
    use std::cell::Cell;

    thread_local! {
        static READ: Cell<usize> = const { Cell::new(0) };
    }

    /// Counts one version a walk loaded (its timestamp and link).
    pub(super) fn note() {
        READ.with(|n| n.set(n.get() + 1));
    }

    /// How many versions this thread's prunes have loaded so far.
    pub(crate) fn count() -> usize {
        READ.with(Cell::get)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Single- and multi-threaded checks of the chain, sized to run under Miri.

    use super::*;
    use crossbeam_epoch as epoch;
    use std::sync::Arc;

    fn b(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    use super::walk_reads::count as nodes_read;

    fn prune(w: &ChainWriter<'_>, h: &Horizon, g: &epoch::Guard) -> Pruned {
        w.prune_and_retire(h, g)
    }

    fn pruned(unlinked: usize, kept: usize, above_horizon: usize) -> Pruned {
        Pruned {
            unlinked,
            kept,
            above_horizon,
        }
    }

    fn value_at(c: &Chain, ts: u64) -> Option<Option<Vec<u8>>> {
        let g = epoch::pin();
        c.read_at(ts, &g).map(|v| v.value.map(<[u8]>::to_vec))
    }

    #[test]
    fn reads_newest_version_at_or_below_timestamp() {
        let c = Chain::new();
        let g = epoch::pin();
        {
            let w = c.lock();
            w.install(2, b("a").as_deref(), None, &g);
            w.install(5, None, None, &g);
            w.install(7, b("c").as_deref(), None, &g);
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
            w.install(ts * 10, b(&ts.to_string()).as_deref(), None, &g);
        }
        // Watermark 35: versions 50 and 40 are newer, 30 is what a reader at 35 sees.
        assert_eq!(prune(&w, &Horizon::at(35), &g), pruned(2, 3, 2));
        assert_eq!(c.version_count(&g), 3);
        assert_eq!(value_at(&c, 35), Some(b("3")));
        assert_eq!(value_at(&c, 45), Some(b("4")));
        // Pruning again at the same watermark is a no-op.
        assert_eq!(prune(&w, &Horizon::at(35), &g).unlinked, 0);
        // Watermark above everything keeps only the newest.
        assert_eq!(prune(&w, &Horizon::at(100), &g).unlinked, 2);
        assert_eq!(c.version_count(&g), 1);
        assert_eq!(value_at(&c, 100), Some(b("5")));
    }

    #[test]
    fn prune_keeps_only_what_live_snapshots_see() {
        let c = Chain::new();
        let g = epoch::pin();
        let w = c.lock();
        for ts in 1..=10 {
            w.install(ts * 10, b(&ts.to_string()).as_deref(), None, &g);
        }
        // Snapshots at 25 and 62, visible 100: a reader at 25 sees 20, at 62 sees 60, new
        // readers see 100. Everything else (10, 30, 40, 50, 70, 80, 90) is invisible to all.
        let h = Horizon::new(100, vec![62, 25]);
        assert_eq!(prune(&w, &h, &g), pruned(7, 3, 0));
        assert_eq!(c.version_count(&g), 3);
        assert_eq!(value_at(&c, 25), Some(b("2")));
        assert_eq!(value_at(&c, 62), Some(b("6")));
        assert_eq!(value_at(&c, 100), Some(b("10")));
        // Versions newer than `now` stay whatever the snapshots: they may not be visible yet.
        w.install(110, b("11").as_deref(), None, &g);
        w.install(120, b("12").as_deref(), None, &g);
        assert_eq!(prune(&w, &Horizon::new(105, vec![25]), &g), pruned(1, 4, 2));
        assert_eq!(value_at(&c, 25), Some(b("2")));
        assert_eq!(value_at(&c, 105), Some(b("10")));
        assert_eq!(value_at(&c, 115), Some(b("11")));
        assert_eq!(c.version_count(&g), 4);
    }

    #[test]
    fn prune_keeps_a_tombstone_an_old_snapshot_predates() {
        let c = Chain::new();
        let g = epoch::pin();
        let w = c.lock();
        w.install(5, None, None, &g);
        // A transaction at 3 may still write this key: the delete at 5 must stay so that its
        // first-committer-wins check sees a newer version.
        assert_eq!(prune(&w, &Horizon::new(10, vec![3]), &g).unlinked, 0);
        assert_eq!(w.newest_ts(&g), Some(5));
        assert_eq!(prune(&w, &Horizon::new(10, vec![]), &g), pruned(1, 0, 0));
        assert!(w.is_empty(&g));
    }

    #[test]
    fn prune_drops_a_tombstone_that_nothing_needs() {
        let c = Chain::new();
        let g = epoch::pin();
        let w = c.lock();
        w.install(1, b("x").as_deref(), None, &g);
        w.install(2, None, None, &g);
        assert_eq!(prune(&w, &Horizon::at(1), &g).unlinked, 0);
        assert!(!w.is_empty(&g));
        assert_eq!(prune(&w, &Horizon::at(2), &g), pruned(2, 0, 0));
        assert!(w.is_empty(&g));
        assert_eq!(value_at(&c, 10), None);
        // A tombstone newer than the watermark stays: readers below it still see "x".
        w.install(3, b("y").as_deref(), None, &g);
        w.install(4, None, None, &g);
        assert_eq!(prune(&w, &Horizon::at(3), &g).unlinked, 0);
        assert_eq!(value_at(&c, 3), Some(b("y")));
        assert_eq!(value_at(&c, 4), Some(None));
    }

    #[test]
    fn prune_drops_tombstones_only_readers_see_below_the_writer_floor() {
        let c = Chain::new();
        let g = epoch::pin();
        let w = c.lock();
        // Created and deleted after a read-only snapshot at 1, which reads neither version.
        w.install(2, b("x").as_deref(), None, &g);
        w.install(3, None, None, &g);
        let readers_only = Horizon::merge(Horizon::new(10, vec![1]), Horizon::new(10, vec![]));
        // A transaction at 1 could still write the key: the delete must stay for it.
        let with_writer = Horizon::merge(Horizon::new(10, vec![]), Horizon::new(10, vec![1]));
        assert_eq!(prune(&w, &with_writer, &g), pruned(1, 1, 0));
        assert_eq!(value_at(&c, 10), Some(None));
        assert_eq!(prune(&w, &readers_only, &g), pruned(1, 0, 0));
        assert!(
            w.is_empty(&g),
            "the lone delete goes: the chain may leave the map"
        );
        assert_eq!(c.cache.get(&g).map(|l| l.ts), None);
        // Deleted twice, each delete seen by a reader, then written: both deletes sit at the
        // bottom and read as absent, like nothing; the value stays.
        w.install(4, None, None, &g);
        w.install(5, None, None, &g);
        w.install(6, b("y").as_deref(), None, &g);
        let h = Horizon::merge(Horizon::new(10, vec![4, 5]), Horizon::new(10, vec![]));
        assert_eq!(prune(&w, &h, &g), pruned(2, 1, 0));
        assert_eq!(versions(&c), [(6, false)]);
        // A delete above a value a reader sees stays: that reader must not see the value.
        w.install(7, None, None, &g);
        let h = Horizon::merge(Horizon::new(10, vec![6, 8]), Horizon::new(10, vec![]));
        assert_eq!(prune(&w, &h, &g), pruned(0, 2, 0));
        assert_eq!(value_at(&c, 8), Some(None));
    }

    /// The chain's versions, newest first, as `(ts, is_tombstone)`.
    fn versions(c: &Chain) -> Vec<(u64, bool)> {
        let g = epoch::pin();
        let mut out = Vec::new();
        let mut at = u64::MAX;
        while let Some(v) = c.read_at(at, &g) {
            out.push((v.ts, v.value.is_none()));
            match v.ts.checked_sub(1) {
                Some(below) => at = below,
                None => break,
            }
        }
        out
    }

    /// The pruning rule as documented, applied to a whole list: what `prune` must keep.
    fn expected_after_prune(versions: &[(u64, bool)], h: &Horizon) -> Vec<(u64, bool)> {
        let mut kept = Vec::new();
        let mut newer = u64::MAX;
        for &(ts, tomb) in versions {
            if ts > h.now() || h.needs(ts, newer) {
                kept.push((ts, tomb));
            }
            newer = ts;
        }
        let floor = h.writer_floor().min(h.now());
        while kept.last().is_some_and(|&(ts, tomb)| tomb && ts <= floor) {
            kept.pop();
        }
        kept
    }

    /// `prune` walks only down to the first version at or below the watermark and cuts the
    /// tail behind it off unread, or to an oldest version an earlier prune settled; it must
    /// still keep exactly what the rule says, count what it unlinked from the chain's length,
    /// and keep that length (and the settled mark) right for the next prunes, with new
    /// versions installed in between. Watermarks never go down from one horizon to the next,
    /// as the registries' horizons do not (a stale horizon is checked on its own below).
    #[test]
    fn prune_matches_the_rule_on_random_chains_and_horizons() {
        let cases = if cfg!(miri) { 12 } else { 3000 };
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |bound: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % bound
        };
        for _ in 0..cases {
            let c = Chain::new();
            let g = epoch::pin();
            let w = c.lock();
            let mut ts = 0;
            for _ in 0..=next(6) {
                ts += 1 + next(5);
                let tomb = next(3) == 0;
                w.install(ts, if tomb { None } else { Some(&b"v"[..]) }, None, &g);
            }
            // Prunes in a row: each relies on the length and mark the one before left.
            let mut low = 0;
            for _ in 0..3 {
                if next(2) == 0 {
                    ts += 1 + next(3);
                    let tomb = next(3) == 0;
                    w.install(ts, if tomb { None } else { Some(&b"v"[..]) }, None, &g);
                }
                let now = low + next(ts + 3 - low);
                let readers: Vec<u64> = (0..next(4)).map(|_| low + next(now + 1 - low)).collect();
                let writers: Vec<u64> = (0..next(3)).map(|_| low + next(now + 1 - low)).collect();
                // Every live snapshot may write, or only some: the writer floor then lies
                // above the watermark, and trailing tombstones between the two go too.
                let h = if next(2) == 0 {
                    Horizon::new(now, [readers, writers].concat())
                } else {
                    Horizon::merge(Horizon::new(now, readers), Horizon::new(now, writers))
                };
                low = h.watermark();
                let before = versions(&c);
                let want = expected_after_prune(&before, &h);
                assert!(
                    c.second_is_exact(&g),
                    "after the installs, chain {before:?}"
                );
                let got = prune(&w, &h, &g);
                assert!(c.second_is_exact(&g), "horizon {h:?}, chain {before:?}");
                let above = want.iter().filter(|&&(t, _)| t > h.now()).count();
                assert_eq!(versions(&c), want, "horizon {h:?}, chain {before:?}");
                assert_eq!(got, pruned(before.len() - want.len(), want.len(), above));
                assert_eq!(c.version_count(&g), want.len());
                // The head cache describes the head (or nothing, for an emptied chain).
                let head = c.cache.get(&g).map(|l| (l.ts, l.value.is_none()));
                assert_eq!(head, want.first().copied());
            }
        }
    }

    /// A key rewritten under old snapshots, then without any, with a horizon that lags the
    /// commits as the store's cached horizon does: the prune right after each install mostly
    /// knows what to unlink without loading a version (both shortcuts of `prune_known`), and
    /// must keep exactly what the rule says whether it takes a shortcut or walks, with
    /// tombstones, snapshots coming and going, and lags that change the shape.
    #[test]
    fn the_prune_after_an_install_matches_the_rule_under_lagging_horizons() {
        let rounds = if cfg!(miri) { 80 } else { 20_000 };
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |bound: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % bound
        };
        let c = Chain::new();
        let g = epoch::pin();
        let w = c.lock();
        let mut ts = 1;
        // Prunes that loaded no version and prunes that walked, under old snapshots and
        // without any.
        let (mut with, mut without) = ([0, 0], [0, 0]);
        w.install(ts, b("v").as_deref(), None, &g);
        // Live snapshots, ascending (the oldest is dropped only while another is live, so the
        // watermark never goes down until the last goes), and the visible timestamp, which
        // lags the commits.
        let (mut live, mut now): (Vec<u64>, u64) = (vec![1], 1);
        for round in 0..rounds {
            // Mostly further apart than the lag, as for a key among many, sometimes closer.
            ts += 1 + next(48);
            let tomb = next(32) == 0;
            w.install(ts, if tomb { None } else { Some(&b"v"[..]) }, None, &g);
            if round == rounds / 2 {
                live.clear();
            }
            match next(256) {
                // A new snapshot (at or above the visible timestamp, as the registry's floor
                // handshake ensures), or the oldest one gone: mostly one old snapshot, at
                // times two (each pins a version: the chain is not in the steady shape).
                0 if !live.is_empty() => live.push(now.max(ts.saturating_sub(1 + next(4)))),
                1..=4 if live.len() > 1 => {
                    live.remove(0);
                }
                _ => {}
            }
            now = now.max(ts.saturating_sub(1 + next(12)));
            let h = if next(4) == 0 {
                Horizon::merge(Horizon::new(now, live.clone()), Horizon::new(now, vec![]))
            } else {
                Horizon::new(now, live.clone())
            };
            let before = versions(&c);
            let want = expected_after_prune(&before, &h);
            let read_before = nodes_read();
            let got = prune(&w, &h, &g);
            let count = if live.is_empty() {
                &mut without
            } else {
                &mut with
            };
            count[usize::from(nodes_read() != read_before)] += 1;
            assert_eq!(versions(&c), want, "horizon {h:?}, chain {before:?}");
            let above = want.iter().filter(|&&(t, _)| t > h.now()).count();
            assert_eq!(got, pruned(before.len() - want.len(), want.len(), above));
            assert!(c.second_is_exact(&g), "horizon {h:?}, chain {before:?}");
        }
        for [shortcuts, walks] in [with, without] {
            assert!(
                shortcuts > walks && walks > 0,
                "{shortcuts} shortcuts, {walks} walks ({with:?} with snapshots)"
            );
        }
    }

    #[test]
    fn a_settled_oldest_version_stays_for_a_stale_horizon_and_goes_for_a_newer_one() {
        let c = Chain::new();
        let g = epoch::pin();
        let w = c.lock();
        for ts in 1..=4 {
            w.install(ts * 10, b(&ts.to_string()).as_deref(), None, &g);
        }
        // Watermark 25: 20 is the oldest anyone reads (settled), 10 goes unread.
        assert_eq!(prune(&w, &Horizon::new(35, vec![25]), &g), pruned(1, 3, 1));
        w.install(50, b("5").as_deref(), None, &g);
        // A horizon computed before that one (a snapshot at 12 since gone): by the rule 20
        // could go, but a prune with it keeps the settled version (keeping is always safe).
        assert_eq!(prune(&w, &Horizon::new(45, vec![12]), &g), pruned(1, 3, 1));
        assert_eq!(versions(&c), [(50, false), (40, false), (20, false)]);
        assert_eq!(value_at(&c, 25), Some(b("2")));
        // A newer horizon walks past it: watermark 45 keeps 40 and cuts 20 off.
        assert_eq!(prune(&w, &Horizon::at(45), &g), pruned(1, 2, 1));
        assert_eq!(versions(&c), [(50, false), (40, false)]);
        // A tombstone at the watermark is not settled: the strip takes it with the chain.
        w.install(60, None, None, &g);
        assert_eq!(prune(&w, &Horizon::at(60), &g), pruned(3, 0, 0));
        assert!(w.is_empty(&g));
        w.install(70, b("7").as_deref(), None, &g);
        assert_eq!(prune(&w, &Horizon::at(10), &g), pruned(0, 1, 1));
        assert_eq!(versions(&c), [(70, false)]);
    }

    /// The steady state of a key rewritten under an old snapshot: the snapshot's version
    /// settled at the bottom, and each commit's prune unlinks the version below the one it
    /// superseded, the second of the chain before the install. The chain's `second` names
    /// that version before each commit (what the committer prefetches with the head), and
    /// follows every install, prune and strip.
    #[test]
    fn second_names_the_version_behind_the_head_through_installs_and_prunes() {
        let c = Chain::new();
        let g = epoch::pin();
        let w = c.lock();
        assert!(c.second_is_exact(&g), "empty");
        w.install(10, b("1").as_deref(), None, &g);
        assert!(c.second_is_exact(&g), "one version");
        // Snapshot at 10; each horizon lags its commit by one timestamp.
        for ts in [20, 30, 40, 50] {
            let (head, behind) = (
                c.head.load(Ordering::Relaxed, &g),
                c.second.load(Ordering::Relaxed),
            );
            w.install(ts, b("v").as_deref(), None, &g);
            assert_eq!(c.second.load(Ordering::Relaxed), head.into_usize());
            assert!(c.second_is_exact(&g));
            let read_before = nodes_read();
            let p = prune(&w, &Horizon::new(ts - 1, vec![10]), &g);
            assert!(c.second_is_exact(&g), "after the prune at {ts}");
            if ts >= 40 {
                // Unlinked: the version that was behind the head before the install, without
                // loading a version (the chain knows every timestamp and link it needs).
                assert_eq!(p, pruned(1, 3, 1));
                assert_ne!(behind, 0);
                assert_eq!(versions(&c), [(ts, false), (ts - 10, false), (10, false)]);
                assert_eq!(nodes_read() - read_before, 0, "the prune at {ts} walked");
                assert!(c.second_ts_is_known());
            }
        }
        // The snapshot gone: the prune cuts down to the head and the version below it.
        assert_eq!(prune(&w, &Horizon::at(45), &g), pruned(1, 2, 1));
        assert!(c.second_is_exact(&g));
        assert_eq!(prune(&w, &Horizon::at(50), &g), pruned(1, 1, 0));
        assert!(c.second_is_exact(&g), "one version left");
        assert_eq!(c.second.load(Ordering::Relaxed), 0);
        // A delete the strip takes with the whole chain.
        w.install(60, None, None, &g);
        assert!(c.second_is_exact(&g));
        assert_eq!(prune(&w, &Horizon::at(60), &g), pruned(2, 0, 0));
        assert!(c.second_is_exact(&g), "emptied");
        assert_eq!(c.second.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_version_outlives_its_dropped_chain_while_the_reader_is_pinned() {
        // A point read releases the map's shard lock before it reads the version, so the chain
        // may be dropped meanwhile: under Miri an immediate free would be a use after free,
        // and the drop counts show the list is freed once the reader unpins.
        use crate::raw::retired::tests::{assert_nothing_freed, counted, wait_for_drops};
        use std::sync::atomic::AtomicUsize;

        let drops = Arc::new(AtomicUsize::new(0));
        let (v1, v2) = (counted(&drops, 1), counted(&drops, 2));
        let c = Chain::new();
        {
            let g = epoch::pin();
            let w = c.lock();
            w.install(1, Some(&v1), None, &g);
            w.install(2, Some(&v2), None, &g);
        }
        let g = epoch::pin();
        let (newest, older) = (c.newest(&g).unwrap(), c.read_at(1, &g).unwrap());
        let lent = c.lend_at(2, &g).unwrap();
        drop(c);
        assert_nothing_freed(&drops);
        assert_eq!((newest.ts, newest.value), (2, Some(&v2[..])));
        assert_eq!((older.ts, older.value), (1, Some(&v1[..])));
        assert_eq!((lent.ts, lent.value), (2, Some(&v2[..])));
        drop(g);
        wait_for_drops(&drops, 2);
    }

    #[test]
    fn unlinking_a_head_tombstone_clears_the_head_cache() {
        let c = Chain::new();
        {
            let g = epoch::pin();
            let w = c.lock();
            w.install(1, None, None, &g);
            assert_eq!(prune(&w, &Horizon::at(1), &g), pruned(1, 0, 0));
            assert!(
                c.lend_at(u64::MAX, &g).is_none(),
                "the head cache still shows a version"
            );
        }
        drop(c);
    }

    #[test]
    fn lending_reads_agree_with_the_chain_at_every_timestamp() {
        // The head cache must describe the head after every install and prune.
        let c = Chain::new();
        let g = epoch::pin();
        let agree = |c: &Chain, upto: u64| {
            for at in 0..=upto + 1 {
                let walked = c.read_at(at, &g).map(VersionRef::lent);
                let lent = c.lend_at(at, &g);
                assert_eq!(
                    walked.map(|v| (v.ts, v.value)),
                    lent.map(|v| (v.ts, v.value)),
                    "at {at}"
                );
            }
            assert_eq!(c.newest_ts(&g), c.newest(&g).map(|v| v.ts));
        };
        agree(&c, 0);
        let w = c.lock();
        for (ts, v) in [(1, b("a")), (2, Some(Vec::new())), (3, None), (4, b("d"))] {
            w.install(ts, v.as_deref(), None, &g);
            agree(&c, ts);
        }
        prune(&w, &Horizon::new(4, vec![2]), &g);
        agree(&c, 4);
        w.install(5, None, None, &g);
        prune(&w, &Horizon::at(5), &g);
        agree(&c, 5);
        assert!(w.is_empty(&g));
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
        // Small enough for Miri. The writer installs and, every third version, prunes down to
        // its newest (retiring a batch of nodes) while a reader walks the chain: every walk
        // must find fully initialised versions whose values match their timestamps, and
        // timestamps never go backwards.
        let rounds: u64 = if cfg!(miri) { 40 } else { 5_000 };
        // The chain and a head mirror kept beside it, as a map entry keeps one.
        let c = Arc::new(MirroredChain::new());
        {
            let g = epoch::pin();
            c.chain()
                .lock()
                .install(1, b("1").as_deref(), Some(&*c), &g);
        }
        let writer = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for ts in 2..=rounds {
                    let g = epoch::pin();
                    let w = c.chain().lock();
                    w.install(ts, b(&ts.to_string()).as_deref(), Some(&*c), &g);
                    if ts % 3 == 0 || ts == rounds {
                        prune(&w, &Horizon::at(ts), &g);
                    }
                }
            })
        };
        let reader = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                let mut last = 0;
                while last < rounds {
                    let (c, mirror) = (&**c.chain(), c.mirror());
                    let g = epoch::pin();
                    let v = c.newest(&g).expect("the chain is never empty");
                    assert_eq!(v.value, Some(v.ts.to_string().as_bytes()));
                    assert!(v.ts >= last);
                    last = v.ts;
                    if let Some(older) = c.read_at(v.ts - 1, &g) {
                        assert_eq!(older.value, Some(older.ts.to_string().as_bytes()));
                    }
                    // Lending reads of the head cache and of its mirror: under Miri a value
                    // freed early (or a torn copy) shows here.
                    for lent in [
                        c.lend_at(u64::MAX, &g),
                        c.lend_head_if_visible(u64::MAX, &g),
                        c.lend_at_mirrored(mirror, u64::MAX, &g),
                        c.lend_head_if_visible_mirrored(mirror, u64::MAX, &g),
                    ] {
                        let lent = lent.expect("the chain is never empty");
                        assert_eq!(lent.value, Some(lent.ts.to_string().as_bytes()));
                    }
                }
            })
        };
        writer.join().unwrap();
        reader.join().unwrap();
        let g = epoch::pin();
        assert_eq!(c.chain().version_count(&g), 1);
    }
}
