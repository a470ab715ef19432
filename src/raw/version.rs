//! A version node: one allocation holding a committed version's timestamp, its link to the
//! next older version, and its value bytes inline.
//!
//! Why inline: a version used to own its value as a separately allocated `Bytes`, so every
//! write allocated twice and every retired version was freed twice, both frees touching memory
//! gone cold while the version waited for the epoch. With the value behind the header, a
//! write allocates once, a retired version is one free, and a read of a version that is not
//! the cached head finds its value on the node's own cache lines.
//!
//! The node is a dynamically sized type (a header followed by `[u8]`), handed to
//! crossbeam-epoch through its [`Pointable`] trait: an `Atomic<Version>` holds the node's
//! address as a thin word, and [`Pointable::deref`] rebuilds the wide reference from the
//! length stored in the header.

use std::alloc::Layout;
use std::ptr::{self, NonNull};

use crossbeam_epoch::{Atomic, Owned, Pointable};

use super::node_pool;
use crate::sync::{AtomicU64, Ordering};

/// [`Header::len`] of a tombstone (a delete): it has no value, which differs from an empty
/// one.
const TOMBSTONE: usize = usize::MAX;

/// [`Header::ts`] of a version linked before its commit took a timestamp (see
/// `raw::pending`): above every timestamp the clock hands out, so every reader, at any
/// snapshot or visible timestamp, skips it.
pub(super) const PENDING: u64 = u64::MAX;

/// The fixed part of a version node. The value's bytes follow it in the same allocation.
#[repr(C)]
struct Header {
    /// The commit timestamp of the transaction that wrote the version.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `0` | an [`Unlinked`] node, not yet stamped (no reader can reach it) |
    /// | `1..PENDING` | the commit timestamp; immutable from then on |
    /// | [`PENDING`] | linked by a big commit before it took its timestamp: invisible to every reader |
    ///
    /// A node gets its timestamp before it is linked, or, linked as [`PENDING`], once (a
    /// `Relaxed` store by the chain's lock holder) before its commit publishes the timestamp:
    /// a reader whose snapshot includes the commit took it from the clock after that
    /// publication, so it reads the stamped value. Readers load it `Relaxed`: a reader that
    /// reads `PENDING` or the stamp alike skips the node when its snapshot predates the commit.
    ts: AtomicU64,
    /// The next older version, or null. Written only by the chain's lock holder.
    next: Atomic<Version>,
    /// The value's length, or [`TOMBSTONE`]. Immutable.
    len: usize,
}

/// One committed version of a key: a [`Header`] and, right behind it, the value's bytes.
///
/// Only [`Version::alloc`] makes one; it is freed through [`Owned`]'s drop, which calls the
/// [`Pointable::drop`] below.
#[repr(C)]
pub(super) struct Version {
    /// Private (and the header's fields with it): safe code holding an `Owned<Version>`
    /// (which derefs mutably) must not be able to make a node's `len` disagree with its
    /// allocation. Read through the accessors below.
    header: Header,
    /// The value (empty for a tombstone, see [`Header::len`]). Immutable.
    bytes: [u8],
}

/// [`Pointable::Init`] of [`Version`]: the timestamp and the value to copy into the node.
///
/// It borrows the value through a raw pointer (the trait's `Init` cannot carry a lifetime),
/// so its fields are private and [`Version::alloc`] is the only code that makes one: it
/// builds it from a live slice and hands it straight to `Owned::init`, which copies the bytes
/// before `alloc` returns.
pub(super) struct VersionInit {
    ts: u64,
    /// `len` as the header stores it ([`TOMBSTONE`] for a delete).
    len: usize,
    /// The value's first byte (dangling for a tombstone or an empty value: nothing is read).
    value: *const u8,
}

// `Pointable::drop` frees the node without dropping the header in place.
const _: () = assert!(!std::mem::needs_drop::<Header>());

impl Version {
    /// A new, unlinked node for `value` (`None`: a tombstone) at `ts`, with a null `next`.
    pub(super) fn alloc(ts: u64, value: Option<&[u8]>) -> Owned<Version> {
        Owned::init(VersionInit {
            ts,
            len: value.map_or(TOMBSTONE, <[u8]>::len),
            value: value.map_or(ptr::null(), <[u8]>::as_ptr),
        })
    }

    /// The commit timestamp.
    #[inline]
    pub(super) fn ts(&self) -> u64 {
        self.header.ts.load(Ordering::Relaxed)
    }

    /// Gives a [`PENDING`] node its commit timestamp (see [`Header::ts`]).
    pub(super) fn stamp_pending(&self, ts: u64) {
        debug_assert_eq!(self.ts(), PENDING, "a node is stamped once");
        debug_assert!(ts < PENDING);
        self.header.ts.store(ts, Ordering::Relaxed);
    }

    /// The next older version's link.
    #[inline]
    pub(super) fn next(&self) -> &Atomic<Version> {
        &self.header.next
    }

    /// The value, or `None` for a tombstone.
    #[inline]
    pub(super) fn value(&self) -> Option<&[u8]> {
        (self.header.len != TOMBSTONE).then_some(&self.bytes)
    }

    /// Whether the version is a tombstone.
    #[inline]
    pub(super) fn is_tombstone(&self) -> bool {
        self.header.len == TOMBSTONE
    }

    /// Bytes of the node's allocation (header, value, padding), for memory accounting.
    pub(super) fn alloc_size(&self) -> usize {
        layout(self.bytes.len()).size()
    }
}

/// A version node built ahead of its commit: it holds its value (or is a tombstone) but no
/// timestamp yet, and is linked into no chain, so its holder owns it alone.
///
/// Why: a transaction builds the node when it buffers the write, so the value is copied once
/// on its way in (from the caller's slice into its final node), and the commit, which holds
/// locks and then a timestamp that later committers wait for, only stamps and links it
/// ([`ChainWriter::install_node`](super::ChainWriter::install_node)). Dropped unlinked (an
/// aborted or conflicting transaction), the node is freed at once: no reader ever saw it.
pub(crate) struct Unlinked(Owned<Version>);

impl Unlinked {
    /// A node holding a copy of `value` (`None`: a tombstone).
    pub(crate) fn new(value: Option<&[u8]>) -> Self {
        // Timestamp 0 stands until `stamp`: nobody reads the node before it is linked.
        Self(Version::alloc(0, value))
    }

    /// The value, or `None` for a tombstone.
    #[inline]
    pub(crate) fn value(&self) -> Option<&[u8]> {
        self.0.value()
    }

    /// The node with its commit timestamp, ready to link.
    pub(super) fn stamp(self, ts: u64) -> Owned<Version> {
        debug_assert!(ts < PENDING);
        // The node is ours alone (`Owned`, never shared): no reader to order against.
        self.0.header.ts.store(ts, Ordering::Relaxed);
        self.0
    }

    /// The node marked [`PENDING`], ready to link before its commit has a timestamp.
    pub(super) fn pending(self) -> Owned<Version> {
        self.0.header.ts.store(PENDING, Ordering::Relaxed);
        self.0
    }
}

/// The `next` link of the node at `addr`, reached without loading anything from the node (a
/// reference through [`Pointable::deref`] would read its length first): a prune that knows
/// what is behind a node can relink it with one store, which does not wait for the line.
///
/// # Safety
///
/// `addr` came from [`Version::alloc`] and the node stays allocated for `'a`.
#[inline]
pub(super) unsafe fn next_link<'a>(addr: usize) -> &'a Atomic<Version> {
    let header = ptr::with_exposed_provenance::<Header>(addr);
    // SAFETY: by the contract `header` points to a live node, whose header `init` wrote in
    // full; the reference covers only the atomic `next` field (a place projection, no load),
    // which every thread accesses only through atomics.
    unsafe { &(*header).next }
}

/// Number of value bytes behind a header whose `len` is `len`.
fn byte_len(len: usize) -> usize {
    if len == TOMBSTONE {
        0
    } else {
        len
    }
}

// The pool's bins hold blocks of the header's alignment.
const _: () = assert!(align_of::<Header>() == node_pool::ALIGN);

/// The allocation of a node with `bytes` value bytes: the header, then the bytes (at
/// `size_of::<Header>()`, where `repr(C)` places `Version::bytes`), padded to the header's
/// alignment (as the size of a `Version` with that many bytes is).
fn layout(bytes: usize) -> Layout {
    size_of::<Header>()
        .checked_add(bytes)
        .and_then(|size| Layout::from_size_align(size, align_of::<Header>()).ok())
        .map(|layout| layout.pad_to_align())
        // A value is a slice that exists in memory, so its length plus a header cannot
        // overflow `isize`: unreachable.
        .unwrap_or_else(|| panic!("a version of {bytes} value bytes does not fit in memory"))
}

/// The wide pointer to the node at `addr`, from the length in its header.
///
/// # Safety
///
/// `addr` came from [`Version::alloc`] and the node has not been freed.
unsafe fn wide(addr: usize) -> *mut Version {
    let node = ptr::with_exposed_provenance_mut::<u8>(addr);
    // SAFETY: by the contract, `node` points to a live, initialised node: its header can be
    // read (`len` is immutable, so the read races with no write).
    let len = unsafe { (*node.cast::<Header>()).len };
    // A slice pointer with the value's length, cast to `Version`: the same metadata (the
    // length of the trailing `[u8]`), so the cast keeps address and length.
    ptr::slice_from_raw_parts_mut(node, byte_len(len)) as *mut Version
}

// Every address an `Atomic<Version>`, `Shared<Version>` or `Owned<Version>` holds comes from
// `init` (through `Version::alloc`, the only maker of a `VersionInit`), is aligned to `ALIGN`
// (the header's alignment, which the layout uses), and stays valid until `drop` runs once for
// it.
impl Pointable for Version {
    const ALIGN: usize = align_of::<Header>();

    type Init = VersionInit;

    unsafe fn init(init: VersionInit) -> usize {
        let layout = layout(byte_len(init.len));
        let node = node_pool::alloc(layout).as_ptr();
        // The two writes below fill the whole node (header, then the value's bytes), so it is
        // fully initialised before anyone can see it.
        let header = Header {
            ts: AtomicU64::new(init.ts),
            next: Atomic::null(),
            len: init.len,
        };
        // SAFETY: `node` is a fresh allocation of `layout`, aligned for `Header` and at least
        // as large as it.
        unsafe { node.cast::<Header>().write(header) };
        if init.len != TOMBSTONE {
            // SAFETY: `init.value` points to `init.len` readable bytes (`Version::alloc` made
            // it from a live slice); they fit behind the header (`layout`) and cannot overlap.
            unsafe {
                ptr::copy_nonoverlapping(init.value, node.add(size_of::<Header>()), init.len)
            };
        }
        node.expose_provenance()
    }

    unsafe fn deref<'a>(ptr: usize) -> &'a Self {
        // SAFETY: the caller passes the address of a live node (trait contract), which
        // `Version::alloc` initialised entirely; nobody mutates it concurrently (the header's
        // `next` is atomic, the rest immutable).
        unsafe { &*wide(ptr) }
    }

    unsafe fn deref_mut<'a>(ptr: usize) -> &'a mut Self {
        // SAFETY: as in `deref`; the caller guarantees exclusive access.
        unsafe { &mut *wide(ptr) }
    }

    unsafe fn drop(ptr: usize) {
        // SAFETY: the caller passes a live node, dropped once, with no reference left (trait
        // contract): read its length, then free its (non-null) block with the layout `init`
        // allocated it with (`layout` of the same immutable length).
        unsafe {
            let node = wide(ptr);
            #[cfg(all(test, not(loom)))]
            if let Some(value) = (*node).value() {
                test_support::freed(value);
            }
            #[cfg(loom)]
            if let Some(value) = (*node).value() {
                loom_watch::freed(value);
            }
            let layout = layout(byte_len((*node).header.len));
            node_pool::free(NonNull::new_unchecked(node.cast::<u8>()), layout);
        }
    }
}

/// Counts frees of version nodes whose value a test chose to watch (a version now owns its
/// value bytes, so a value's drop cannot be observed any other way).
#[cfg(all(test, not(loom)))]
pub(crate) mod test_support {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// Watched values, each with the counter of its frees.
    static WATCHED: Mutex<Vec<(Vec<u8>, Arc<AtomicUsize>)>> = Mutex::new(Vec::new());
    /// Whether any value is watched (spares the lock in tests that watch nothing).
    static ANY: AtomicBool = AtomicBool::new(false);
    /// Makes every watched value unique, so tests running in parallel never count each
    /// other's frees.
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);

    /// A value of eight `byte`s followed by a unique id, whose versions add one to `drops`
    /// each time one of them is freed.
    pub(crate) fn watched_value(drops: &Arc<AtomicUsize>, byte: u8) -> Vec<u8> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut value = vec![byte; 8];
        value.extend_from_slice(&id.to_le_bytes());
        let mut watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
        watched.push((value.clone(), Arc::clone(drops)));
        ANY.store(true, Ordering::SeqCst);
        value
    }

    /// Called by a node's drop with its value.
    pub(super) fn freed(value: &[u8]) {
        if !ANY.load(Ordering::SeqCst) {
            return;
        }
        let watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, drops)) = watched.iter().find(|(v, _)| v == value) {
            drops.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Tells a loom model whether a version it watches was freed: loom schedules atomics, not
/// plain memory, so a read through a dangling value pointer would go unnoticed (or read the
/// reused block) unless the model asks, before it reads, whether the version behind the
/// pointer was freed. loom runs a model's threads as coroutines on the test's own thread, so
/// a thread-local is per model and shared by its threads; recording is a plain write, which
/// adds no interleavings.
#[cfg(loom)]
#[cfg_attr(not(test), allow(dead_code))] // watched only by the model tests
pub(crate) mod loom_watch {
    use std::cell::RefCell;

    thread_local! {
        /// The watched value's start address, and whether its version was freed since.
        static WATCHED: RefCell<Option<(usize, bool)>> = const { RefCell::new(None) };
    }

    /// Watches the version whose value `value` is (forgetting any watched before).
    pub(crate) fn watch(value: &[u8]) {
        WATCHED.with(|w| *w.borrow_mut() = Some((value.as_ptr().addr(), false)));
    }

    /// Whether the watched version, whose value starts at `value`, was freed. `false` for an
    /// address not watched.
    pub(crate) fn is_freed(value: *const u8) -> bool {
        WATCHED.with(|w| matches!(*w.borrow(), Some((a, true)) if a == value.addr()))
    }

    /// Whether the watched version was freed.
    pub(crate) fn watched_was_freed() -> bool {
        WATCHED.with(|w| matches!(*w.borrow(), Some((_, true))))
    }

    /// Called by a node's drop with its value.
    pub(super) fn freed(value: &[u8]) {
        // `try_with`: a node freed while the thread's locals are being destroyed.
        let _ = WATCHED.try_with(|w| {
            if let Some((a, freed)) = w.borrow_mut().as_mut() {
                *freed |= *a == value.as_ptr().addr();
            }
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Every shape of node round-trips through the epoch's pointer types and is freed with
    /// the layout it was allocated with (Miri checks the layouts and the frees).
    #[test]
    fn nodes_hold_their_value_inline() {
        let guard = &crossbeam_epoch::pin();
        for (ts, value) in [
            (1, Some(&b"value"[..])),
            (2, Some(&b""[..])),
            (3, None),
            (4, Some(&[7u8; 300][..])),
        ] {
            let node = Version::alloc(ts, value);
            assert_eq!(node.ts(), ts);
            assert_eq!(node.value(), value);
            assert_eq!(node.is_tombstone(), value.is_none());
            assert!(node
                .next()
                .load(std::sync::atomic::Ordering::Relaxed, guard)
                .is_null());
            let shared = node.into_shared(guard);
            // SAFETY: just made, never shared with another thread.
            let back = unsafe { shared.into_owned() };
            assert_eq!(back.value(), value);
        }
    }

    /// A node built ahead keeps its value, takes its timestamp when stamped, and is freed
    /// whole when dropped unlinked (Miri checks the frees).
    #[test]
    fn an_unlinked_node_is_stamped_or_freed() {
        for value in [Some(&b"value"[..]), Some(&b""[..]), None] {
            let dropped = Unlinked::new(value);
            assert_eq!(dropped.value(), value);
            drop(dropped);
            let node = Unlinked::new(value).stamp(42);
            assert_eq!((node.ts(), node.value()), (42, value));
        }
    }

    /// A freed node's block goes to the next node of its size (and not to one of another
    /// size), which holds its own timestamp and value.
    #[test]
    #[cfg_attr(
        any(miri, snapkv_sanitize),
        ignore = "version nodes bypass the pool under Miri and the sanitizer"
    )]
    fn a_freed_node_is_reused_by_the_next_node_of_its_size() {
        std::thread::spawn(|| {
            let addr = |node: &Owned<Version>| (&raw const **node).cast::<u8>() as usize;
            let first = Version::alloc(1, Some(&[1u8; 100]));
            let freed = addr(&first);
            drop(first);
            let other = Version::alloc(2, Some(&[2u8; 60]));
            assert_ne!(addr(&other), freed, "a node of another size took the block");
            let second = Version::alloc(3, Some(&[3u8; 97]));
            assert_eq!(addr(&second), freed, "the block was not reused");
            assert_eq!((second.ts(), second.value()), (3, Some(&[3u8; 97][..])));
        })
        .join()
        .unwrap();
    }
}
