//! A per-thread pool of freed version nodes' memory, handed to the next nodes of the same size
//! that thread allocates.
//!
//! Why: a key rewritten again and again allocates one node per commit and frees one per
//! commit, but the frees come in bursts. crossbeam-epoch runs deferred frees when a thread's
//! pin count reaches a multiple of 128, hundreds of nodes at a time, so glibc's per-thread
//! cache (seven chunks per size) overflows on every burst: the rest of the burst goes through
//! `_int_free`'s bin handling, and the allocations until the next burst through `_int_malloc`'s
//! (about 250 instructions per commit together, an eighth of a single-key transaction). Here a
//! burst lands in a plain stack of addresses, and the next allocations pop it, last freed
//! first: the most recently freed node, whose header the free read, is the first reused.
//!
//! Each bin holds blocks of one node size (node sizes are multiples of 8, the header's
//! alignment). Sizes are not padded further for the pool's sake: a coarser rounding would
//! cost memory with allocators whose size classes are not glibc's.
//!
//! The pool is bounded: at most [`BIN_CAP`] nodes per size and [`MAX_BYTES`] of nodes per
//! thread, plus the bins' address stacks (8 bytes per pooled node, at most doubled by
//! growth). It is returned to the allocator when its thread exits. Nodes larger than
//! [`MAX_NODE`] bypass it. A thread that only frees nodes (a reader whose epoch pin ran a
//! collection) has a pool too; one that frees while its thread-locals are being destroyed,
//! after the pool's, frees straight to the allocator.
//!
//! A node freed on one thread may be reused on another: the global allocator allows that, and
//! a pooled address is only ever a whole block this module obtained with the layout of its
//! bin.
//!
//! Under Miri, and in the AddressSanitizer job (built with `--cfg snapkv_sanitize`), the
//! version nodes bypass the pool ([`alloc`] and [`free`] go straight to the allocator), so that
//! the checker sees every node's free and reports any later access to it: a pooled block stays
//! allocated, which would hide a use after free. The pool's own tests call the pooling
//! functions directly.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::ptr::NonNull;

/// The alignment of every node (`version::layout`'s, checked there): the header's fields are
/// a `u64` and two words.
pub(super) const ALIGN: usize = if align_of::<u64>() > align_of::<usize>() {
    align_of::<u64>()
} else {
    align_of::<usize>()
};

/// The largest node size the pool keeps.
const MAX_NODE: usize = 504;

/// Nodes of each size kept at most. A thread's epoch collection comes every 128 pins, so a
/// burst holds about as many nodes as 128 commits allocate: 1,280 for commits of ten keys.
const BIN_CAP: usize = 2048;

/// Bytes of nodes kept at most per thread, over all bins: 2,048 nodes of a 100-byte value.
const MAX_BYTES: usize = 256 * 1024;

/// Number of bins: one per node size up to [`MAX_NODE`].
const BINS: usize = bin_index(MAX_NODE) + 1;

/// Node sizes are multiples of this.
const STEP: usize = 8;

/// The smallest node size (a header with no value bytes).
const MIN_NODE: usize = 24;

/// The bin of node size `size` (a multiple of [`STEP`], at least [`MIN_NODE`]).
const fn bin_index(size: usize) -> usize {
    (size - MIN_NODE) / STEP
}

/// The bins of one thread.
struct Pool {
    /// Bin `i` holds blocks of [`bin_layout`]`(i)`; each allocated by the global allocator
    /// with that layout, owned by the pool alone (in no bin twice, referenced by nothing
    /// else).
    bins: [Vec<NonNull<u8>>; BINS],
    /// Total size of the blocks in `bins`.
    bytes: usize,
    /// This thread keeps no blocks (see [`bypass`]).
    bypassed: bool,
}

impl Pool {
    const fn new() -> Self {
        Self {
            bins: [const { Vec::new() }; BINS],
            bytes: 0,
            bypassed: false,
        }
    }
}

impl Pool {
    /// Returns every pooled block (and the bins' address stacks) to the allocator.
    fn release_all(&mut self) {
        for (i, bin) in self.bins.iter_mut().enumerate() {
            for block in bin.drain(..) {
                // SAFETY: the bin's invariant: allocated with this layout, owned by the pool
                // alone, and drained (so freed) once.
                unsafe { alloc::dealloc(block.as_ptr(), bin_layout(i)) };
            }
            *bin = Vec::new();
        }
        self.bytes = 0;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.release_all();
    }
}

/// Returns the calling thread's pooled blocks to the allocator (a full collection does, so
/// that it gives back all the memory it can reach; the pool refills on the next bursts).
pub(crate) fn trim() {
    // A thread whose pool is already destroyed has nothing to give back.
    let _ = POOL.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            pool.release_all();
        }
    });
}

/// Makes the calling thread free nodes straight to the allocator from now on, keeping none:
/// for a thread that never allocates nodes but may run other threads' deferred frees (the
/// index's builder thread, whose epoch pins collect garbage), so that the memory of those
/// nodes is given back rather than held for reuse that never comes.
#[cfg_attr(loom, allow(dead_code))] // used by the builder thread, which loom builds lack
pub(crate) fn bypass() {
    let _ = POOL.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            pool.release_all();
            pool.bypassed = true;
        }
    });
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool::new()) };
}

/// The layout of bin `i`'s blocks.
fn bin_layout(i: usize) -> Layout {
    // `MIN_NODE + i * STEP <= MAX_NODE` and `ALIGN` is a power of two: always valid.
    Layout::from_size_align(MIN_NODE + i * STEP, ALIGN).unwrap_or_else(|_| unreachable!())
}

/// The bin for `layout`, if the pool keeps nodes of its size.
fn bin_of(layout: Layout) -> Option<usize> {
    let size = layout.size();
    (layout.align() == ALIGN && size % STEP == 0 && (MIN_NODE..=MAX_NODE).contains(&size))
        .then(|| bin_index(size))
}

/// Whether nodes bypass the pool: under a memory checker (see the module documentation).
const BYPASS: bool = cfg!(any(miri, snapkv_sanitize));

/// A block for a node of `layout` (non-zero size): from this thread's pool if it holds one
/// of that size, else from the global allocator (always, under a checker: [`BYPASS`]). Aborts through
/// [`alloc::handle_alloc_error`] if the allocator fails.
pub(super) fn alloc(layout: Layout) -> NonNull<u8> {
    if BYPASS {
        global_alloc(layout)
    } else {
        pooled_alloc(layout)
    }
}

/// Returns a node's block to this thread's pool, or to the global allocator if the pool is
/// full or does not keep its size (always, under a checker: [`BYPASS`]).
///
/// # Safety
///
/// `block` came from [`alloc`] with this `layout`, is returned once, and nothing refers to it
/// any more.
pub(super) unsafe fn free(block: NonNull<u8>, layout: Layout) {
    if BYPASS {
        // SAFETY: `alloc` took it from the allocator with `layout` (`BYPASS`); the caller's
        // contract does the rest.
        unsafe { alloc::dealloc(block.as_ptr(), layout) }
    } else {
        // SAFETY: the caller's contract.
        unsafe { pooled_free(block, layout) }
    }
}

/// A block of `layout` (non-zero size) from the global allocator.
fn global_alloc(layout: Layout) -> NonNull<u8> {
    debug_assert!(layout.size() > 0);
    // SAFETY: the callers' layouts have a non-zero size.
    let block = unsafe { alloc::alloc(layout) };
    NonNull::new(block).unwrap_or_else(|| alloc::handle_alloc_error(layout))
}

/// [`alloc`] through the pool.
fn pooled_alloc(layout: Layout) -> NonNull<u8> {
    if let Some(i) = bin_of(layout) {
        // `try_with`: a node allocated while this thread's locals are being destroyed comes
        // from the allocator instead.
        let pooled = POOL
            .try_with(|pool| {
                let mut pool = pool.try_borrow_mut().ok()?;
                let block = pool.bins[i].pop()?;
                pool.bytes -= layout.size();
                Some(block)
            })
            .ok()
            .flatten();
        if let Some(block) = pooled {
            return block;
        }
    }
    global_alloc(layout)
}

/// [`free`] through the pool.
///
/// # Safety
///
/// As for [`free`]; `block` came from [`pooled_alloc`] (or from the allocator with `layout`).
unsafe fn pooled_free(block: NonNull<u8>, layout: Layout) {
    if let Some(i) = bin_of(layout) {
        let kept = POOL
            .try_with(|pool| {
                let Ok(mut pool) = pool.try_borrow_mut() else {
                    return false;
                };
                let pool = &mut *pool;
                let bin = &mut pool.bins[i];
                // A failed growth of the bin is not an error: the block goes to the allocator.
                if pool.bypassed
                    || bin.len() >= BIN_CAP
                    || pool.bytes + layout.size() > MAX_BYTES
                    || bin.try_reserve(1).is_err()
                {
                    return false;
                }
                bin.push(block);
                pool.bytes += layout.size();
                true
            })
            // The pool was destroyed already (thread exit): free to the allocator.
            .unwrap_or(false);
        if kept {
            return;
        }
    }
    #[cfg(all(test, not(loom)))]
    tests::DIRECT_FREES.with(|n| n.set(n.get() + 1));
    // SAFETY: by the contract, a live block of `layout` from the allocator (a pooled one was
    // allocated with its bin's layout, equal to `layout`: same size), used by nobody now.
    unsafe { alloc::dealloc(block.as_ptr(), layout) };
}

/// Number of blocks this thread's pool holds (for tests).
#[cfg(all(test, not(loom)))]
pub(super) fn pooled() -> usize {
    POOL.with(|pool| pool.borrow().bins.iter().map(Vec::len).sum())
}

#[cfg(all(test, not(loom)))]
pub(super) mod tests {
    //! Sized to run under Miri, which checks that every block is freed once, with its layout,
    //! and never used after its free (the pooling functions are called directly: version
    //! nodes bypass the pool under Miri).

    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Blocks this thread freed straight to the allocator.
        pub(in crate::raw) static DIRECT_FREES: Cell<usize> = const { Cell::new(0) };
    }

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, ALIGN).unwrap()
    }

    #[test]
    fn every_node_size_has_its_own_bin() {
        for size in (MIN_NODE..=MAX_NODE + 40).step_by(STEP) {
            match bin_of(layout(size)) {
                Some(i) => {
                    assert!(size <= MAX_NODE);
                    assert_eq!(bin_layout(i), layout(size));
                }
                None => assert!(size > MAX_NODE),
            }
        }
        assert_eq!(
            bin_of(layout(MIN_NODE - STEP)),
            None,
            "smaller than a header"
        );
        assert_eq!(
            bin_of(layout(MIN_NODE + 4)),
            None,
            "not a multiple of the step"
        );
        assert_eq!(
            bin_of(Layout::from_size_align(40, 2 * ALIGN).unwrap()),
            None
        );
    }

    /// A freed block is handed to the next allocation of its size, last freed first, and to
    /// none of another size; oversized and odd-sized blocks bypass the pool.
    #[test]
    fn blocks_are_reused_by_size_last_freed_first() {
        std::thread::spawn(|| {
            let a = pooled_alloc(layout(120));
            let b = pooled_alloc(layout(120));
            // SAFETY: from `pooled_alloc` with these layouts, freed once.
            unsafe {
                pooled_free(a, layout(120));
                pooled_free(b, layout(120));
            }
            assert_eq!(pooled(), 2);
            let c = pooled_alloc(layout(128));
            assert!(c != a && c != b, "a block of another size was reused");
            assert_eq!(pooled_alloc(layout(120)), b);
            assert_eq!(pooled_alloc(layout(120)), a);
            assert_eq!(pooled(), 0);
            let big = pooled_alloc(layout(MAX_NODE + 8));
            let odd = pooled_alloc(layout(44));
            // SAFETY: as above.
            unsafe {
                pooled_free(big, layout(MAX_NODE + 8));
                pooled_free(odd, layout(44));
                pooled_free(a, layout(120));
                pooled_free(b, layout(120));
                pooled_free(c, layout(128));
            }
            assert_eq!(pooled(), 3, "only the pooled sizes are kept");
            assert_eq!(DIRECT_FREES.with(Cell::get), 2);
        })
        .join()
        .unwrap();
    }

    /// A thread that bypasses the pool gives back what it held and keeps nothing it frees
    /// afterwards.
    #[test]
    fn a_bypassing_thread_keeps_no_blocks() {
        std::thread::spawn(|| {
            let a = pooled_alloc(layout(120));
            let b = pooled_alloc(layout(120));
            // SAFETY: from `pooled_alloc` with this layout, freed once.
            unsafe { pooled_free(a, layout(120)) };
            assert_eq!(pooled(), 1);
            bypass();
            assert_eq!(pooled(), 0, "the pooled block was given back");
            // SAFETY: as above.
            unsafe { pooled_free(b, layout(120)) };
            assert_eq!(pooled(), 0, "a block freed after the bypass was kept");
            assert_eq!(DIRECT_FREES.with(Cell::get), 1);
        })
        .join()
        .unwrap();
    }

    /// A block allocated on one thread and freed on another is reused by the freeing thread.
    #[test]
    fn a_block_freed_on_another_thread_is_reused_there() {
        let block = std::thread::spawn(|| pooled_alloc(layout(56)).as_ptr().expose_provenance())
            .join()
            .unwrap();
        std::thread::spawn(move || {
            let block = NonNull::new(std::ptr::with_exposed_provenance_mut(block)).unwrap();
            // SAFETY: allocated above with this layout, not used since, freed once.
            unsafe { pooled_free(block, layout(56)) };
            assert_eq!(pooled(), 1);
            let again = pooled_alloc(layout(56));
            assert_eq!(again, block);
            // SAFETY: as above.
            unsafe { pooled_free(again, layout(56)) };
        })
        .join()
        .unwrap();
    }

    /// The pool keeps at most `BIN_CAP` blocks of a size and `MAX_BYTES` in all, and counts
    /// what it keeps exactly; the rest go back to the allocator.
    #[test]
    fn the_pool_is_bounded() {
        std::thread::spawn(|| {
            let n = if cfg!(miri) { 64 } else { BIN_CAP + 64 };
            let cap = n.min(BIN_CAP);
            let blocks: Vec<_> = (0..n).map(|_| pooled_alloc(layout(24))).collect();
            for block in blocks {
                // SAFETY: from `pooled_alloc` with this layout, freed once.
                unsafe { pooled_free(block, layout(24)) };
            }
            assert_eq!(pooled(), cap);
            assert_eq!(DIRECT_FREES.with(Cell::get), n - cap);
            let big = (MAX_BYTES - cap * 24) / MAX_NODE;
            let m = if cfg!(miri) { big + 8 } else { 2 * big };
            let blocks: Vec<_> = (0..m).map(|_| pooled_alloc(layout(MAX_NODE))).collect();
            for block in blocks {
                // SAFETY: as above.
                unsafe { pooled_free(block, layout(MAX_NODE)) };
            }
            POOL.with(|pool| {
                let pool = pool.borrow();
                assert!(pool.bytes <= MAX_BYTES);
                let counted: usize = (0..BINS)
                    .map(|i| pool.bins[i].len() * bin_layout(i).size())
                    .sum();
                assert_eq!(counted, pool.bytes);
                assert_eq!(pool.bins[bin_index(MAX_NODE)].len(), big);
            });
        })
        .join()
        .unwrap();
    }

    /// A block freed by a thread-local destructor that runs after the pool's own goes to the
    /// allocator (not into a destroyed pool, and not leaked).
    #[test]
    fn a_free_after_the_pool_is_destroyed_goes_to_the_allocator() {
        struct FreesOnExit(Cell<Option<NonNull<u8>>>);
        impl Drop for FreesOnExit {
            fn drop(&mut self) {
                if let Some(block) = self.0.take() {
                    let before = DIRECT_FREES.with(Cell::get);
                    // SAFETY: allocated below with this layout, freed once.
                    unsafe { pooled_free(block, layout(88)) };
                    assert_eq!(DIRECT_FREES.with(Cell::get), before + 1);
                    FREED_DIRECTLY.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
        thread_local! {
            static LATE: FreesOnExit = const { FreesOnExit(Cell::new(None)) };
        }
        static FREED_DIRECTLY: std::sync::atomic::AtomicBool =
            std::sync::atomic::AtomicBool::new(false);
        std::thread::spawn(|| {
            // Counters first, then `LATE`, then the pool: destructors run in reverse order of
            // registration, so `LATE`'s runs after the pool's and before the counters'.
            DIRECT_FREES.with(|_| {});
            LATE.with(|late| late.0.set(Some(pooled_alloc(layout(88)))));
            // SAFETY: a fresh block of this layout, freed once.
            unsafe { pooled_free(pooled_alloc(layout(88)), layout(88)) };
            assert_eq!(pooled(), 1);
        })
        .join()
        .unwrap();
        assert!(FREED_DIRECTLY.load(std::sync::atomic::Ordering::SeqCst));
    }
}
