//! A per-thread pool of freed version nodes' memory, handed to the next nodes of the same size
//! that thread allocates.
//!
//! Why: a key rewritten again and again allocates one node per commit and frees one per
//! commit, but the frees come in bursts. crossbeam-epoch runs deferred frees when a thread's
//! pin count reaches a multiple of 128, a few hundred at a time, so glibc's per-thread cache
//! (seven chunks per size) overflows on every burst: the rest of the burst goes through
//! `_int_free`'s bin handling, and the allocations until the next burst through `_int_malloc`'s
//! (about 250 instructions per commit together, an eighth of a single-key transaction). Here a
//! burst lands in a plain stack of addresses, and the next allocations pop it, last freed
//! first: the node whose header the free just read is still in the cache when it is reused.
//!
//! The pool is bounded ([`BIN_CAP`] nodes per size, [`MAX_BYTES`] in all per thread) and
//! returned to the allocator when its thread exits. Nodes larger than [`MAX_NODE`] bypass it.
//! A node freed on one thread may be reused on another: the global allocator allows that, and
//! a pooled address is only ever a whole block this module's [`alloc`] obtained with the
//! layout of its bin.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::ptr::NonNull;

/// Granularity of node sizes: every node's size is a multiple of it (see
/// `version::layout`), so a bin holds blocks of exactly one size.
pub(super) const GRANULE: usize = 16;

/// The largest node size the pool keeps.
const MAX_NODE: usize = 512;

/// Nodes of each size kept at most: enough for one burst of deferred frees.
const BIN_CAP: usize = 256;

/// Bytes kept at most per thread, over all bins.
const MAX_BYTES: usize = 64 * 1024;

/// Number of bins: one per multiple of [`GRANULE`] up to [`MAX_NODE`].
const BINS: usize = MAX_NODE / GRANULE;

/// The bins of one thread.
struct Pool {
    /// Bin `i` holds blocks of `(i + 1) * GRANULE` bytes, aligned as `version::layout`
    /// aligns nodes; each allocated by the global allocator with that layout, owned by the
    /// pool alone (in no bin twice, referenced by nothing else).
    bins: [Vec<NonNull<u8>>; BINS],
    /// Total size of the blocks in `bins`.
    bytes: usize,
}

impl Pool {
    const fn new() -> Self {
        Self {
            bins: [const { Vec::new() }; BINS],
            bytes: 0,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (i, bin) in self.bins.iter_mut().enumerate() {
            for block in bin.drain(..) {
                let layout = bin_layout(i);
                // SAFETY: the bin's invariant: allocated with this layout, owned by the pool
                // alone, and drained (so freed) once.
                unsafe { alloc::dealloc(block.as_ptr(), layout) };
            }
        }
    }
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool::new()) };
}

/// The alignment of every node (`version::layout`'s, checked there).
pub(super) const ALIGN: usize = 8;

/// The layout of bin `i`'s blocks.
fn bin_layout(i: usize) -> Layout {
    // `(i + 1) * GRANULE <= MAX_NODE` and `ALIGN` is a power of two: always valid.
    Layout::from_size_align((i + 1) * GRANULE, ALIGN).unwrap_or_else(|_| unreachable!())
}

/// The bin for `layout`, if the pool keeps nodes of its size.
fn bin_of(layout: Layout) -> Option<usize> {
    let size = layout.size();
    (layout.align() == ALIGN && size % GRANULE == 0 && (GRANULE..=MAX_NODE).contains(&size))
        .then(|| size / GRANULE - 1)
}

/// A block for `layout` (non-zero size): a pooled one of the same size if this thread has
/// one, else a fresh one from the global allocator. Aborts through
/// [`alloc::handle_alloc_error`] if the allocator fails.
pub(super) fn alloc(layout: Layout) -> NonNull<u8> {
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
    debug_assert!(layout.size() > 0);
    // SAFETY: the caller's layouts have a non-zero size.
    let block = unsafe { alloc::alloc(layout) };
    NonNull::new(block).unwrap_or_else(|| alloc::handle_alloc_error(layout))
}

/// Returns `block` to this thread's pool, or to the global allocator if the pool is full or
/// does not keep its size.
///
/// # Safety
///
/// `block` came from [`alloc`] with this `layout`, is returned once, and nothing refers to it
/// any more.
pub(super) unsafe fn free(block: NonNull<u8>, layout: Layout) {
    if let Some(i) = bin_of(layout) {
        let rejected = POOL
            .try_with(|pool| {
                let Ok(mut pool) = pool.try_borrow_mut() else {
                    return Some(block);
                };
                let pool = &mut *pool;
                let bin = &mut pool.bins[i];
                if bin.len() >= BIN_CAP || pool.bytes + layout.size() > MAX_BYTES {
                    return Some(block);
                }
                if bin.capacity() == 0 {
                    // One allocation per bin and thread, never grown afterwards.
                    bin.reserve_exact(BIN_CAP);
                }
                bin.push(block);
                pool.bytes += layout.size();
                None
            })
            .unwrap_or(Some(block));
        if rejected.is_none() {
            return;
        }
    }
    // SAFETY: by the contract, `block` is a live allocation of `layout` (from the global
    // allocator: `alloc` hands out its own blocks or pooled ones, which it allocated with
    // their bin's layout, equal to `layout` since the sizes match) that nobody uses any more.
    unsafe { alloc::dealloc(block.as_ptr(), layout) };
}

/// Number of blocks this thread's pool holds (for tests).
#[cfg(all(test, not(loom)))]
pub(super) fn pooled() -> usize {
    POOL.with(|pool| pool.borrow().bins.iter().map(Vec::len).sum())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, ALIGN).unwrap()
    }

    /// A freed block is handed to the next allocation of its size, last freed first, and to
    /// none of another size; oversized and odd-sized blocks bypass the pool. Under Miri this
    /// also checks that every block is freed once, with its layout.
    #[test]
    fn blocks_are_reused_by_size_last_freed_first() {
        std::thread::spawn(|| {
            let a = alloc(layout(128));
            let b = alloc(layout(128));
            // SAFETY: from `alloc` with these layouts, freed once.
            unsafe {
                free(a, layout(128));
                free(b, layout(128));
            }
            assert_eq!(pooled(), 2);
            let c = alloc(layout(144));
            assert!(c != a && c != b, "a block of another size was reused");
            assert_eq!(alloc(layout(128)), b);
            assert_eq!(alloc(layout(128)), a);
            assert_eq!(pooled(), 0);
            let big = alloc(layout(MAX_NODE + GRANULE));
            let odd = alloc(layout(40));
            // SAFETY: as above.
            unsafe {
                free(big, layout(MAX_NODE + GRANULE));
                free(odd, layout(40));
                free(a, layout(128));
                free(b, layout(128));
                free(c, layout(144));
            }
            assert_eq!(pooled(), 3, "only the pooled sizes are kept");
        })
        .join()
        .unwrap();
    }

    /// The pool keeps at most `BIN_CAP` blocks of a size and `MAX_BYTES` in all, and counts
    /// what it keeps exactly; the rest go back to the allocator (under Miri, a block freed
    /// twice or with the wrong layout fails the test).
    #[test]
    fn the_pool_is_bounded() {
        std::thread::spawn(|| {
            let n = if cfg!(miri) { BIN_CAP + 8 } else { 4 * BIN_CAP };
            let blocks: Vec<_> = (0..n).map(|_| alloc(layout(64))).collect();
            for block in blocks {
                // SAFETY: from `alloc` with this layout, freed once.
                unsafe { free(block, layout(64)) };
            }
            assert_eq!(pooled(), BIN_CAP);
            let blocks: Vec<_> = (0..n).map(|_| alloc(layout(MAX_NODE))).collect();
            for block in blocks {
                // SAFETY: as above.
                unsafe { free(block, layout(MAX_NODE)) };
            }
            POOL.with(|pool| {
                let pool = pool.borrow();
                assert!(pool.bytes <= MAX_BYTES);
                let counted: usize = (0..BINS)
                    .map(|i| pool.bins[i].len() * (i + 1) * GRANULE)
                    .sum();
                assert_eq!(counted, pool.bytes);
                assert_eq!(
                    pool.bins[MAX_NODE / GRANULE - 1].len(),
                    (MAX_BYTES - BIN_CAP * 64) / MAX_NODE
                );
            });
        })
        .join()
        .unwrap();
    }
}
