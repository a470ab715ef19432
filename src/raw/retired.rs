//! Version nodes unlinked by one writer, handed to the epoch together.

use crossbeam_epoch::{Guard, Owned, Pointer, Shared};

use crate::sync::Ordering;
use smallvec::SmallVec;

use super::version::Version;

/// Nodes a writer unlinked and has not yet handed to the epoch for freeing.
///
/// Why batch: crossbeam-epoch runs deferred frees a bounded number at a time (a few hundred
/// per hundred-odd pins), so a thread that defers more than a handful of nodes per pin builds
/// a backlog that later operations, on any thread, pay for. A commit that unlinks versions
/// from ten chains hands them over as one deferred call instead of ten.
pub(crate) struct Retired {
    /// Unlinked, not yet retired, each exactly once. Two inline: the closure that frees them
    /// then fits in the epoch's inline storage (no allocation for the common one-node case).
    /// Addresses as `Pointer::into_usize` gives them (`Version` is unsized: its raw pointers
    /// are wide, its epoch pointers one word), tagged:
    ///
    /// | low bit | entry |
    /// |---|---|
    /// | `0` | one node; its `next` may still point into the chain |
    /// | [`LIST`] | the first node of a cut-off tail: it and every node behind it |
    nodes: SmallVec<[usize; 2]>,
    /// How many entries the batch expects in all (a hint): the first entry past the inline
    /// storage makes room for the rest at once.
    expected: usize,
}

/// Entries one deferred free takes at most. Whichever thread pins when the epoch lets it run
/// runs it, inside that thread's operation: a big commit's batch handed over whole (a million
/// nodes) stalled a one-key commit on another thread for ~80 ms.
const MAX_PER_DEFERRAL: usize = 256;

/// Tag of a [`Retired`] entry that stands for a whole list (nodes are 8-byte aligned, so the
/// low bit of an address is free).
const LIST: usize = 1;

impl Retired {
    /// An empty batch.
    pub(crate) fn new() -> Self {
        Self::expecting(0)
    }

    /// An empty batch that expects about `n` entries: a commit of `n` keys usually retires
    /// one entry per key. Should it outgrow the inline storage, it grows once to `n` instead
    /// of doubling its way there; a batch that stays inline allocates nothing.
    pub(crate) fn expecting(n: usize) -> Self {
        Self {
            nodes: SmallVec::new(),
            expected: n,
        }
    }

    fn add(&mut self, entry: usize) {
        if self.nodes.len() == self.nodes.capacity() {
            let more = self.expected.saturating_sub(self.nodes.len()).max(1);
            self.nodes.reserve(more);
        }
        self.nodes.push(entry);
    }

    /// Adds a node the caller just unlinked.
    ///
    /// # Safety
    ///
    /// `node` is non-null, was allocated by `Version::alloc`, has been unlinked from its chain
    /// (no thread that pins from now on can reach it) and is added to no other batch.
    pub(super) unsafe fn push(&mut self, node: Shared<'_, Version>) {
        self.add(node.into_usize());
    }

    /// Adds a list the caller just cut off: `first` and every node behind it. The list is
    /// not read now (a prune cuts a tail without loading it); it is walked when freed.
    ///
    /// # Safety
    ///
    /// `first` is non-null and every node reachable from it through `next` was allocated by
    /// `Version::alloc`, has been unlinked (no thread that pins from now on can reach it),
    /// will have its `next` written by nobody, and is added to no other batch.
    pub(super) unsafe fn push_list(&mut self, first: Shared<'_, Version>) {
        let addr = first.into_usize();
        debug_assert_eq!(addr & LIST, 0, "version nodes are 8-byte aligned");
        self.add(addr | LIST);
    }

    /// Hands every node to the epoch: they are freed once every thread pinned now has unpinned.
    ///
    /// A run of the scan index may hold a copy of a head that was superseded: the commit
    /// that superseded it noted its key (`Changes::note`) before unlocking and publishing,
    /// so before any prune can retire that head, and a reader that pins after the retirement
    /// sees the copy marked stale.
    pub(crate) fn retire(&mut self, guard: &Guard) {
        match self.nodes.as_slice() {
            [] => {}
            &[node] if node & LIST == 0 => {
                self.nodes.clear();
                // SAFETY: by `push`'s contract the node is unlinked and retired only here
                // (its address converted back once); readers that still hold it are pinned
                // and it is freed after they unpin.
                unsafe { guard.defer_destroy(Shared::<Version>::from_usize(node)) };
            }
            &[list] => {
                self.nodes.clear();
                // SAFETY: by `push_list`'s contract the list is unlinked and retired only
                // here; the closure owns it and runs after every current reader unpinned.
                unsafe { guard.defer_unchecked(move || free_entry(list)) };
            }
            nodes if nodes.len() <= MAX_PER_DEFERRAL => {
                let nodes = std::mem::take(&mut self.nodes);
                // SAFETY: as above, for each entry of the batch (a list entry by
                // `push_list`'s contract); the closure owns the batch, so each node is freed
                // exactly once, after every current reader unpinned.
                unsafe { guard.defer_unchecked(move || free_entries(nodes)) };
            }
            nodes => {
                for chunk in nodes.chunks(MAX_PER_DEFERRAL) {
                    let chunk: Vec<usize> = chunk.to_vec();
                    // SAFETY: as above; the chunks split the batch, so each entry is in one
                    // closure only, and the batch is cleared below without freeing anything.
                    unsafe { guard.defer_unchecked(move || free_entries(chunk)) };
                }
                self.nodes.clear();
            }
        }
    }
}

/// Frees every entry of `entries`.
///
/// # Safety
///
/// As for [`free_entry`], for each entry.
unsafe fn free_entries(entries: impl IntoIterator<Item = usize>) {
    for entry in entries {
        // SAFETY: by this function's contract.
        unsafe { free_entry(entry) };
    }
}

/// Frees one entry of a [`Retired`] batch: a node, or a list (see [`Retired::nodes`]).
///
/// # Safety
///
/// The entry came from `push` or `push_list`, is freed only here, and no thread can reach any
/// of its nodes any more (no pinned reader left).
unsafe fn free_entry(entry: usize) {
    if entry & LIST == 0 {
        // SAFETY: a single node, exclusively ours (contract), converted back once.
        drop(unsafe { Owned::<Version>::from_usize(entry) });
        return;
    }
    // SAFETY: by the contract, nobody else can observe these nodes.
    let guard = unsafe { crossbeam_epoch::unprotected() };
    // SAFETY: the address of the list's first node (`push_list`), converted back once.
    let mut cur: Shared<'_, Version> = unsafe { Shared::from_usize(entry & !LIST) };
    while !cur.is_null() {
        // SAFETY: `cur` is non-null, allocated by `Version::alloc`, and exclusively ours
        // (contract); its `next` is read before it is freed.
        unsafe {
            let next = cur.deref().next().load(Ordering::Relaxed, guard);
            drop(cur.into_owned());
            cur = next;
        }
    }
}

impl Drop for Retired {
    fn drop(&mut self) {
        // A writer that unwound between unlinking and retiring: free through the epoch anyway.
        if !self.nodes.is_empty() {
            self.retire(&crossbeam_epoch::pin());
        }
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    //! Sized to run under Miri, which checks that no node is freed early or twice; versions
    //! of watched values count their frees, so a node that is never freed fails the tests
    //! too.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use crossbeam_epoch as epoch;

    use crate::horizon::Horizon;
    use crate::raw::{Chain, Retired};

    /// A value whose versions add one to `drops` when freed.
    pub(crate) use crate::raw::version::test_support::watched_value as counted;

    /// Asserts that nothing was freed although the epoch was given every chance to advance (a
    /// reader is pinned).
    pub(crate) fn assert_nothing_freed(drops: &AtomicUsize) {
        for _ in 0..64 {
            epoch::pin().flush();
        }
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "freed while a reader is pinned"
        );
    }

    /// Advances the epoch until `drops` reaches `n`; fails if it does not within 30 seconds.
    /// Other tests' threads, pinned meanwhile, hold the epoch back: on a loaded machine (a
    /// build running beside the tests) a fixed number of attempts ran out before they
    /// unpinned, so the budget is time.
    pub(crate) fn wait_for_drops(drops: &AtomicUsize, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while drops.load(Ordering::SeqCst) < n && std::time::Instant::now() < deadline {
            epoch::pin().flush();
            std::thread::yield_now();
        }
        assert_eq!(drops.load(Ordering::SeqCst), n, "versions freed");
    }

    #[test]
    fn one_batch_frees_nodes_of_several_chains_and_a_dropped_batch_frees_too() {
        let drops = Arc::new(AtomicUsize::new(0));
        let chains: Vec<Chain> = (0..3).map(|_| Chain::new()).collect();
        let g = epoch::pin();
        let values: Vec<Vec<u8>> = (1..=4).map(|ts| counted(&drops, ts)).collect();
        for c in &chains {
            let w = c.lock();
            for ts in 1..=4 {
                w.install(ts, Some(&values[ts as usize - 1]), None, &g);
            }
        }
        // A reader holds the oldest version of the first chain across the prune.
        let held = chains[0].read_at(1, &g).expect("version 1");
        let mut batch = Retired::new();
        for c in &chains[..2] {
            assert_eq!(c.lock().prune(&Horizon::at(4), &mut batch, &g).unlinked, 3);
        }
        batch.retire(&g);
        // A batch dropped without `retire` (a writer unwinding) still goes through the epoch.
        let mut dropped = Retired::new();
        assert_eq!(
            chains[2]
                .lock()
                .prune(&Horizon::at(4), &mut dropped, &g)
                .unlinked,
            3
        );
        drop(dropped);
        assert_nothing_freed(&drops);
        assert_eq!(held.value, Some(&values[0][..]));
        for c in &chains {
            assert_eq!(c.version_count(&g), 1);
            assert_eq!(c.newest(&g).map(|v| v.ts), Some(4));
        }
        drop(g);
        wait_for_drops(&drops, 9);
        drop(chains);
        wait_for_drops(&drops, 12);
    }

    /// A batch bigger than one deferral is split: every node is still freed once, and none
    /// while a reader that pinned before the retirement is still pinned (Miri checks the
    /// frees).
    #[test]
    fn a_batch_of_many_chains_is_freed_whole_in_bounded_deferrals() {
        let drops = Arc::new(AtomicUsize::new(0));
        let n = super::MAX_PER_DEFERRAL * 2 + 3;
        let chains: Vec<Chain> = (0..n).map(|_| Chain::new()).collect();
        let old = counted(&drops, 1);
        let g = epoch::pin();
        let mut batch = Retired::expecting(n);
        for c in &chains {
            let w = c.lock();
            w.install(1, Some(&old), None, &g);
            w.install(2, Some(b"new"), None, &g);
            assert_eq!(w.prune(&Horizon::at(2), &mut batch, &g).unlinked, 1);
        }
        batch.retire(&g);
        assert!(batch.nodes.is_empty());
        assert_nothing_freed(&drops);
        drop(g);
        wait_for_drops(&drops, n);
    }
}
