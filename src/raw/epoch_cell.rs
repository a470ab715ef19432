//! A value replaced as a whole and read without locks: an epoch-protected pointer.

use crossbeam_epoch::{Atomic, Guard, Owned};

use crate::sync::Ordering;

/// Holds one `T` that readers borrow for as long as their epoch guard is pinned, and that a
/// writer replaces as a whole (read-copy-update). A replaced value is dropped by the epoch once
/// every thread pinned at the time of the replacement has unpinned.
///
/// The pointer word:
///
/// | value         | meaning                                                             |
/// |---------------|---------------------------------------------------------------------|
/// | non-null `p`  | the current value, fully initialised before it was stored (Release) |
///
/// It is never null: [`new`](Self::new) stores a value and [`replace`](Self::replace) swaps
/// one in. Readers load it with `Acquire`, so they see the value's contents as written.
pub(crate) struct EpochCell<T: Send + Sync + 'static> {
    ptr: Atomic<T>,
}

impl<T: Send + Sync + 'static> EpochCell<T> {
    /// A cell holding `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            ptr: Atomic::new(value),
        }
    }

    /// The current value, borrowed while `guard` is pinned and the cell lives (dropping the
    /// cell frees its current value at once).
    pub(crate) fn load<'g>(&'g self, guard: &'g Guard) -> &'g T {
        let p = self.ptr.load(Ordering::Acquire, guard);
        // Never null, initialised before its Release store, freed only through the epoch
        // after a swap (see `replace`) or with the cell (`Drop`, which needs `&mut self`).
        // SAFETY: `guard` is pinned and the borrow ends with it and with `&self` (see above).
        unsafe { p.deref() }
    }

    /// Makes `value` the current value. The old one is dropped once no pinned reader can
    /// still borrow it, by whichever thread collects that epoch: keep its drop cheap.
    pub(crate) fn replace(&self, value: T, guard: &Guard) {
        let old = self.ptr.swap(Owned::new(value), Ordering::AcqRel, guard);
        // `old` is unreachable for threads that pin from now on, and swapped out (so
        // deferred) exactly once; threads still borrowing it are pinned.
        // SAFETY: freed only after every thread pinned now has unpinned (see above).
        unsafe { guard.defer_destroy(old) };
    }
}

impl<T: Send + Sync + 'static> Drop for EpochCell<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader can hold a borrow from this cell (borrows come from
        // `&self` and end before the cell can be dropped), so the current value is freed now.
        // Values replaced earlier were handed to the epoch and are not touched here.
        unsafe {
            let p = self
                .ptr
                .load(Ordering::Relaxed, crossbeam_epoch::unprotected());
            drop(p.into_owned());
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_a_replaced_value_until_they_unpin() {
        let cell = EpochCell::new(vec![1u64; 64]);
        let reader = crossbeam_epoch::pin();
        let old = cell.load(&reader);
        for i in 0..100 {
            let writer = crossbeam_epoch::pin();
            cell.replace(vec![i; 64], &writer);
            writer.flush();
        }
        // Miri reports a use after free here if the epoch freed `old` early.
        assert!(old.iter().all(|&x| x == 1));
        drop(reader);
        let guard = crossbeam_epoch::pin();
        assert_eq!(cell.load(&guard)[0], 99);
    }

    #[test]
    fn concurrent_readers_see_whole_values() {
        let cell = std::sync::Arc::new(EpochCell::new((0u64, 0u64)));
        let writer = {
            let cell = std::sync::Arc::clone(&cell);
            std::thread::spawn(move || {
                for i in 1..200u64 {
                    cell.replace((i, i * 2), &crossbeam_epoch::pin());
                }
            })
        };
        for _ in 0..200 {
            let guard = crossbeam_epoch::pin();
            let &(a, b) = cell.load(&guard);
            assert_eq!(b, a * 2);
        }
        writer.join().unwrap();
    }
}
