//! A copy of a chain's newest version (timestamp and value) in the chain itself, so that the
//! common read, which wants the head, touches the chain's cache line and not the version node.
//!
//! A point read otherwise costs four dependent cache misses: map bucket, chain, version node,
//! value. On a machine where a miss costs ~200 ns, skipping the version node is a quarter of
//! the read; scans skip one miss per key the same way.

use crossbeam_epoch::Guard;

use crate::sync::{fence, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// `len` of a cached tombstone.
const TOMBSTONE: usize = usize::MAX;

/// The head version as a lending reader sees it: valid while the guard `'g` is pinned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lent<'g> {
    /// Commit timestamp of the version.
    pub(crate) ts: u64,
    /// The value, `None` for a tombstone.
    pub(crate) value: Option<&'g [u8]>,
}

/// A seqlock-protected copy of the head version's `(ts, value pointer, value length)`.
///
/// Written only by the chain's lock holder, whenever a version is installed (and before the
/// old head can be unlinked or retired), so whenever a reader finds it consistent it describes
/// the current head, whose value buffer stays allocated while the reader is pinned: the head is
/// never unlinked while it is the head, and once replaced it is retired through the epoch
/// after the cache stopped pointing at it.
///
/// Two instances exist per chain: the chain's own, also cleared when pruning unlinks a head
/// tombstone, and a *mirror* in the key's map entry, written by the same installs and never
/// cleared. A mirror can therefore still describe a head tombstone that was unlinked, but a
/// tombstone has no value pointer, so no reader dereferences anything through it.
pub(crate) struct HeadCache {
    /// The sequence word.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | even `2k` | stable: `ts`, `ptr`, `len` describe the head (or `ts == 0`: no head) |
    /// | odd `2k + 1` | the lock holder is rewriting the fields: readers fall back to the chain |
    ///
    /// Writer: store odd (Relaxed), `fence(Release)`, fields (Relaxed), store even (Release).
    /// Reader: load (Acquire), fields (Relaxed), `fence(Acquire)`, load again (Relaxed); the
    /// fields are a consistent copy iff both loads return the same even value (Boehm,
    /// "Can seqlocks get along with programming language memory models?", 2012).
    seq: AtomicU64,
    /// Commit timestamp of the head; `0` when the chain has no version (timestamps start at 1).
    ts: AtomicU64,
    /// Start of the head's value bytes (inside the head node, see `raw::version`).
    ptr: AtomicPtr<u8>,
    /// Length of the head's value, or [`TOMBSTONE`].
    len: AtomicUsize,
}

impl HeadCache {
    /// The cache of an empty chain.
    pub(crate) fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            ts: AtomicU64::new(0),
            ptr: AtomicPtr::new(std::ptr::null_mut()),
            len: AtomicUsize::new(0),
        }
    }

    /// The cached head's timestamp (`0`: no head), for the chain's lock holder, the only
    /// writer: it reads what it last wrote, so no sequence check is needed.
    #[inline]
    pub(super) fn ts_locked(&self) -> u64 {
        self.ts.load(Ordering::Relaxed)
    }

    /// [`ts_locked`](Self::ts_locked) if the head is a value, `0` otherwise (no head, a
    /// tombstone, or a pending version, which is cached without a value).
    #[inline]
    pub(super) fn value_ts_locked(&self) -> u64 {
        if self.len.load(Ordering::Relaxed) == TOMBSTONE {
            0
        } else {
            self.ts.load(Ordering::Relaxed)
        }
    }

    /// Records the new head. Only the chain's lock holder calls this, with `value` owned by
    /// the head node it just linked (or `ts == 0` after unlinking the last version).
    pub(super) fn set(&self, ts: u64, value: Option<&[u8]>) {
        let (ptr, len) = match value {
            Some(v) => (v.as_ptr().cast_mut(), v.len()),
            None => (std::ptr::null_mut(), TOMBSTONE),
        };
        if crate::sync::faults::active(crate::sync::faults::Fault::HeadCacheWithoutSeqlock) {
            self.ts.store(ts, Ordering::Relaxed);
            self.ptr.store(ptr, Ordering::Relaxed);
            self.len.store(len, Ordering::Relaxed);
            return;
        }
        // The lock holder is the only writer, so a plain load of our own last store is exact.
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq + 1, Ordering::Relaxed);
        // Orders the odd store before the field stores for readers that see a new field.
        fence(Ordering::Release);
        self.ts.store(ts, Ordering::Relaxed);
        self.ptr.store(ptr, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
    }

    /// The head version, or `None` if the chain is empty or a writer is rewriting the cache
    /// (then the caller reads the chain itself).
    pub(crate) fn get<'g>(&self, _guard: &'g Guard) -> Option<Lent<'g>> {
        let before = self.seq.load(Ordering::Acquire);
        if before & 1 == 1 {
            return None;
        }
        let ts = self.ts.load(Ordering::Relaxed);
        let ptr = self.ptr.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        // Orders the field loads before the second sequence load.
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != before || ts == 0 {
            return None;
        }
        let value = match len {
            TOMBSTONE => None,
            0 => Some(&[][..]),
            // The sequence word did not change around the loads, so `(ptr, len)` is the value
            // of the version that was the head throughout them, and not a tombstone (those are
            // stored with `len == TOMBSTONE`). The bytes are that node's own (stored inline,
            // freed with it) and immutable; a node with a value is unlinked only after every cache
            // describing it (the chain's and the mirror) was rewritten by a newer install, and
            // freed through the epoch after every thread pinned at its retirement unpinned.
            // SAFETY: by the above, and as we are pinned (`_guard`, `'g`) since before the
            // first load, the `len` bytes at `ptr` stay allocated and unchanged for `'g`.
            len => Some(unsafe { std::slice::from_raw_parts(ptr.cast_const(), len) }),
        };
        Some(Lent { ts, value })
    }
}
