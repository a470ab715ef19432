//! Copies of the chains' heads kept in the scan index's sorted run, so that a scan reads each
//! key's newest version from the run it walks sequentially, without a cache miss on the
//! key's chain.
//!
//! ## The idea
//!
//! A rebuild copies each chain's head `(ts, value pointer, value length)` next to the key in
//! the new run ([`RunHeads`]). A run is immutable, so the copies go stale as committers
//! install newer versions. Each run therefore has a set of *changed* keys ([`ChangedKeys`]):
//! one bit per key hash, set by every committer for every key it writes. A scan at snapshot
//! `s` takes the copy when its bit is clear and its `ts <= s`, and reads the chain otherwise
//! (a bit shared with another key by hash only costs a chain read).
//!
//! ## The race, and the fences
//!
//! A committer cannot know which runs copy its key's old head: a rebuild may be copying it
//! right now into a run not yet published. So the index keeps the *newest* changed-key set
//! ([`Changes`]), the one of the run being built or of the current run, and:
//!
//! - a rebuild publishes its run's fresh set as the newest, issues a `SeqCst` fence, and only
//!   then copies heads ([`Changes::copier`]);
//! - a committer, after linking its versions (and rewriting the head caches), issues a
//!   `SeqCst` fence, then loads the newest set and the current run's set and marks its keys
//!   in both ([`Changes::note`]), before it retires anything it unlinked and before its
//!   timestamp is published.
//!
//! The two fences make a store-buffering (Dekker) pair: for a key's install and a rebuild's
//! copy of that key, either the copy reads the installed head, or the committer's load of the
//! newest set returns the rebuild's set (or a later one, published after the rebuild's run,
//! in which case its load of the current run returns that run or a later one, and marks it).
//! A scan whose snapshot includes the commit loads the index state after it took the snapshot,
//! so it walks a run the committer marked, or one built from heads that include the install.
//!
//! ## Why the copied pointer stays valid
//!
//! A copy points into the value of the version that was the head when it was copied. That
//! version is freed only after it stopped being the head (the head is never unlinked while a
//! value) and was retired through the epoch, by a later prune: never by the commit that
//! superseded it, whose horizon is below its own timestamp, but by a later committer or the
//! collector. The superseding commit marks the key (above) before it unlocks the chain and
//! before it publishes, so the mark happens before that prune (through the chain lock, or
//! through the publication any horizon that allows the prune has seen), hence before the
//! retirement. A reader pinned before the retirement is protected by the epoch; one that
//! pins after it loads the index state after it and sees the bit set (the mark happens before
//! the retirement, which precedes the epoch's `SeqCst` synchronisation, which precedes the
//! reader's pin), so it never dereferences the copy. (On x86 crossbeam-epoch pins with a
//! `SeqCst` read-modify-write rather than a fence, so the last step holds on the hardware
//! rather than in the abstract model, as for every crossbeam user.) A commit that unwinds
//! mid-install still notes its keys, since it still publishes. Removed runs are read only by
//! readers pinned since before they were replaced; the index frees them through the epoch.
//!
//! Readers must load the index state *after* taking their snapshot (every scan does: the
//! snapshot's timestamp is fixed before its walk loads the state). A reader that loaded the
//! state first and a newer timestamp later could pair an old run, which a committer that saw
//! a newer run did not mark, with a timestamp that includes that commit.
//!
//! Tombstones are copied without a pointer; a copy is never taken of a head whose value is
//! longer than [`u32::MAX`] - 1 bytes (such a key is read from its chain).
//!
//! Checked by loom models 15 (no stale copy for a snapshot that includes the superseding
//! commit) and 21 (no lent copy freed under its reader) and their negative controls
//! (`loom_models/index.rs`).

use std::hash::BuildHasher;

use crossbeam_epoch::Guard;
use crossbeam_utils::CachePadded;

use super::chain::Chain;
use super::head_cache::Lent;
use super::EpochCell;
use crate::sync::{fence, Arc, AtomicU64, AtomicUsize, Ordering};

/// `len` of a copied tombstone.
const TOMBSTONE: u32 = u32::MAX;

/// Bits of a run's changed-key set per key of the run (rounded up to a power of two): few
/// enough to stay in cache, enough that the keys created between two rebuilds (a
/// `1 / DELTA_FRACTION` share of the run) leave most bits clear.
const BITS_PER_KEY: usize = 4;

/// The hash a key's bit is chosen by: the same for every committer and every rebuild.
fn key_hash(key: &[u8]) -> u32 {
    // Truncation intended: the set uses the low bits.
    foldhash::fast::FixedState::with_seed(0x736e_6170_6b76).hash_one(key) as u32
}

/// A chain's head as a rebuild found it: see the module documentation.
#[derive(Clone, Copy)]
pub(crate) struct HeadCopy {
    /// Commit timestamp of the copied head, or `0`: no copy (the chain was empty, its cache
    /// was being rewritten, or the value is too long to copy).
    ts: u64,
    /// Start of the head's value (owned by its version node; never null, even for an empty
    /// value); null for a tombstone (and for no copy).
    ptr: *const u8,
    /// Length of the value, or [`TOMBSTONE`] (for a reader of the copy; a lend tells a
    /// tombstone by its null `ptr`).
    len: u32,
    /// [`key_hash`] of the key.
    hash: u32,
}

// SAFETY: `ptr` is dereferenced only by `lend_unmarked`, under the module's protocol, and
// points to immutable bytes every thread may read (a version node's inline value), so the
// copy may move across threads.
unsafe impl Send for HeadCopy {}
// SAFETY: as above: a `HeadCopy` is immutable once built.
unsafe impl Sync for HeadCopy {}

/// The set of keys changed since a run was built, as one bit per key hash.
///
/// Each word's bits:
///
/// | bit | meaning |
/// |---|---|
/// | `0` | no committer noted a key with this hash since the set was published as the newest: the run's copy of such a key is its head (or a newer install is not yet visible) |
/// | `1` | some key with this hash may have changed: read its chain |
///
/// Bits are only ever set (`Release`) and read (`Acquire`, or `Relaxed` loads closed by an
/// `Acquire` fence); a set lives as long as its run.
pub(crate) struct ChangedKeys {
    /// A power of two of words (at least one): bit `hash mod (64 * words.len())` stands for
    /// the keys with hash `hash`.
    words: Box<[AtomicU64]>,
    /// How many bits are set, counted by the committer whose `fetch_or` set each. A
    /// statistic (`Relaxed`): it only decides when the run is worth rebuilding
    /// ([`RunHeads::changed_keys`]).
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `n` | `n` bits are set (or are being set): about that many keys are read from their chains |
    ///
    /// On its own line: scans read `words` for every key they lend.
    marked: CachePadded<AtomicUsize>,
}

impl ChangedKeys {
    /// A clear set sized for a run of `keys` keys.
    fn for_keys(keys: usize) -> Self {
        let bits = (keys.saturating_mul(BITS_PER_KEY))
            .clamp(64, 1 << 31)
            .next_power_of_two();
        Self {
            words: (0..bits / 64).map(|_| AtomicU64::new(0)).collect(),
            marked: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// The word holding `hash`'s bit, and that bit. Unchecked: scans ask for every key they
    /// lend.
    #[inline]
    fn word_and_bit(&self, hash: u32) -> (&AtomicU64, u64) {
        // The word of bit `hash mod (64 * words.len())`, since `words.len()` is a power of two.
        let w = (hash as usize / 64) & (self.words.len() - 1);
        // SAFETY: `w <= words.len() - 1`, and `words` is never empty: `for_keys` makes at
        // least one word, and the field is private and never replaced.
        let word = unsafe { self.words.get_unchecked(w) };
        (word, 1 << (hash % 64))
    }

    /// Marks `hash`'s bit. Reads it first: a set bit (the common case once a set fills) is
    /// left alone, so committers on two cores do not pull the word's line back and forth.
    fn mark(&self, hash: u32) {
        let (word, bit) = self.word_and_bit(hash);
        // Acquire, and load-bearing: when another committer set the bit, its `fetch_or`
        // then happens before our unlock and publication, so before any retirement of the
        // head we superseded, as the memory-safety argument needs (a Relaxed load would
        // leave only coherence, which the epoch's fence rule does not carry).
        if word.load(Ordering::Acquire) & bit == 0
            && word.fetch_or(bit, Ordering::Release) & bit == 0
        {
            self.marked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many bits are set (about how many distinct keys were marked).
    fn marked(&self) -> usize {
        self.marked.load(Ordering::Relaxed)
    }

    #[inline]
    fn is_marked(&self, hash: u32) -> bool {
        let (word, bit) = self.word_and_bit(hash);
        word.load(Ordering::Acquire) & bit != 0
    }
}

/// The copies of a run's heads, with the run's changed-key set.
pub(crate) struct RunHeads {
    /// One per run entry, in the run's order; empty for a run built without copies (then
    /// every key is read from its chain).
    copies: Vec<HeadCopy>,
    changed: Arc<ChangedKeys>,
}

impl RunHeads {
    /// No copies: scans read every key's chain.
    pub(crate) fn none() -> Self {
        Self {
            copies: Vec::new(),
            changed: Arc::new(ChangedKeys::for_keys(0)),
        }
    }

    /// About how many keys committers marked changed since the copies were taken (bits set
    /// in the run's changed-key set; keys that share a bit count once): the keys scans read
    /// from their chains instead. Zero for a run without copies, which nothing would renew.
    pub(crate) fn changed_keys(&self) -> usize {
        if self.copies.is_empty() {
            0
        } else {
            self.changed.marked()
        }
    }

    /// Heap bytes of the copies (capacity included) and of the changed-key set (with its
    /// `Arc`'s counts), for memory accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.copies.capacity() * size_of::<HeadCopy>()
            + 2 * size_of::<usize>()
            + size_of::<ChangedKeys>()
            + self.changed.words.len() * size_of::<AtomicU64>()
    }

    /// Starts loading the copies of entries `range` (those of them the run has).
    pub(crate) fn prefetch(&self, range: std::ops::Range<usize>) {
        super::chain::prefetch_lines(self.copies.get(range).unwrap_or(&[]));
    }

    /// The copies of entries `range` (of a run with copies) or none.
    pub(crate) fn slice(&self, range: std::ops::Range<usize>) -> HeadsSlice<'_> {
        HeadsSlice {
            copies: self.copies.get(range).unwrap_or(&[]),
            changed: &self.changed,
        }
    }
}

/// A run's copies for a slice of its entries (or none), in the entries' order.
#[derive(Clone, Copy)]
pub(crate) struct HeadsSlice<'a> {
    copies: &'a [HeadCopy],
    changed: &'a ChangedKeys,
}

impl<'a> HeadsSlice<'a> {
    /// The copy of the slice's `i`th entry, if the run has copies.
    pub(crate) fn get(&self, i: usize) -> Option<CopiedHead<'a>> {
        let copy = self.copies.get(i)?;
        Some(CopiedHead {
            copy,
            changed: self.changed,
        })
    }

    /// Starts loading the copy of the slice's `i`th entry, if the run has copies.
    #[inline]
    pub(crate) fn prefetch(&self, i: usize) {
        if let Some(copy) = self.copies.get(i) {
            super::chain::prefetch_line(std::ptr::from_ref(copy).cast());
        }
    }

    /// Starts loading the copies of the slice's entries `range` (those it has).
    #[inline]
    pub(crate) fn prefetch_range(&self, range: std::ops::Range<usize>) {
        let end = range.end.min(self.copies.len());
        super::chain::prefetch_lines(self.copies.get(range.start..end).unwrap_or(&[]));
    }

    /// Which of the slice's first `n` copies (`n <= 32`) no committer marked changed: one
    /// pass over the copies and the changed-key set, for a walk that lends a stretch of
    /// entries (none for a slice without copies; the walk prefetches the chains of the
    /// others). The mask lends those copies itself ([`CurrentMask::lend`]), so a copy is
    /// dereferenced only after this check, read under the caller's pin. It leaves timestamps
    /// out: checking them here cost a lending scan 3.5% more instructions, to prefetch the
    /// chains of those two rare cases (a snapshot older than the run's last rebuild reads
    /// them unprefetched); `lend` turns them down.
    #[inline]
    pub(crate) fn current_mask(&self, n: usize) -> CurrentMask<'a> {
        let copies = &self.copies[..n.min(self.copies.len()).min(u32::BITS as usize)];
        let mut current = 0;
        for (i, c) in copies.iter().enumerate() {
            let (word, bit) = self.changed.word_and_bit(c.hash);
            // Relaxed, then one `Acquire` fence for the stretch: the lends after the fence get
            // at least what an `Acquire` load of each bit (`is_marked`) gives them. (The
            // memory-safety argument needs only coherence after the pin; see the module
            // documentation.)
            let unmarked = word.load(Ordering::Relaxed) & bit == 0;
            current |= u32::from(unmarked || lend_skips_changed_check()) << i;
        }
        fence(Ordering::Acquire);
        CurrentMask { current, copies }
    }

    /// The slice without its first `n` entries.
    pub(crate) fn skip(&self, n: usize) -> Self {
        Self {
            copies: self.copies.get(n..).unwrap_or(&[]),
            changed: self.changed,
        }
    }

    /// The slice's first `n` entries.
    pub(crate) fn take(&self, n: usize) -> Self {
        Self {
            copies: &self.copies[..n.min(self.copies.len())],
            changed: self.changed,
        }
    }
}

/// One key's copied head, with its run's changed-key set.
#[derive(Clone, Copy)]
pub(crate) struct CopiedHead<'a> {
    copy: &'a HeadCopy,
    changed: &'a ChangedKeys,
}

impl<'a> CopiedHead<'a> {
    /// Whether a reader of the latest versions can use the copy (not marked changed): a scan
    /// prefetches the chain only of keys where it cannot.
    pub(crate) fn is_current(&self) -> bool {
        self.copy.ts != 0 && !self.changed.is_marked(self.copy.hash)
    }

    /// The key's version visible at `at`, if the copy is it; `None` when the chain must be
    /// read instead (no copy, the copy is newer than `at`, or the key changed since).
    ///
    /// The caller holds `guard` pinned since before it loaded the index state that holds
    /// this run (every reader reaches a run that way, see `index`), and took `at` (its
    /// snapshot) before loading that state (see the module documentation).
    pub(crate) fn lend<'g>(&self, at: u64, guard: &'g Guard) -> Option<Lent<'g>> {
        if self.changed.is_marked(self.copy.hash) && !lend_skips_changed_check() {
            return None;
        }
        lend_unmarked(self.copy, at, guard)
    }
}

/// The copies of a stretch of a run's entries that no committer had marked changed when
/// [`HeadsSlice::current_mask`] read their bits, as bit `i` for copy `i`. Only that method
/// makes one, so holding one proves the check happened (after the caller's pin, which the
/// caller's guard borrow of the slice stands for).
#[derive(Clone, Copy)]
pub(crate) struct CurrentMask<'a> {
    /// Bit `i`: copy `i` was found unmarked (slots without a copy included).
    current: u32,
    /// The stretch's copies (at most 32).
    copies: &'a [HeadCopy],
}

impl<'a> CurrentMask<'a> {
    /// A mask of nothing: every entry is read from its chain.
    pub(crate) fn none() -> Self {
        Self {
            current: 0,
            copies: &[],
        }
    }

    /// Bit `i` set: entry `i`'s copy was found unmarked (a walk prefetches the others'
    /// chains).
    #[inline]
    pub(crate) fn bits(&self) -> u32 {
        self.current
    }

    /// [`CopiedHead::lend`] of the stretch's `i`th copy, on the bit this mask read instead of
    /// reading it again: `None` when the bit was set, there is no copy, or the copy is newer
    /// than `at`. A bit read clear at any point after the pin proves what `lend`'s own check
    /// proves: whatever superseded the copied head retires it only after this reader pinned
    /// (see the module documentation); the preconditions of `lend` on `guard` and `at` apply.
    #[inline]
    pub(crate) fn lend<'g>(&self, i: usize, at: u64, guard: &'g Guard) -> Option<Lent<'g>> {
        // `i % 32` keeps the shift in range; an `i` past the stretch (at most 32 copies) then
        // finds no copy below.
        if self.current & (1 << (i % u32::BITS as usize)) == 0 {
            return None;
        }
        lend_unmarked(self.copies.get(i)?, at, guard)
    }
}

/// The copy `c` as the version visible at `at`, if it is that version. The caller found the
/// copy's bit clear while `_guard` was pinned, after it loaded the index state holding its
/// run (see [`CopiedHead::lend`]); private, so that only the checks in this module can vouch
/// for that.
#[inline]
fn lend_unmarked<'g>(c: &HeadCopy, at: u64, _guard: &'g Guard) -> Option<Lent<'g>> {
    if c.ts == 0 || c.ts > at {
        return None;
    }
    #[cfg(loom)]
    loom_lends::count();
    // A tombstone is the one copy with a null pointer (a value's start is never null,
    // even an empty one's): one test tells them apart.
    let value = if c.ptr.is_null() {
        None
    } else {
        // The bit is clear, so no install superseded the copied head before this read
        // in a way this reader could miss: the head is still the head, or was superseded
        // and retired only after we pinned (see the module documentation, and model 15).
        // SAFETY: by the above, the head's value buffer (`len` bytes at `ptr`, non-null,
        // immutable) stays allocated while `guard` is pinned, so for `'g`.
        Some(unsafe { std::slice::from_raw_parts(c.ptr, c.len as usize) })
    };
    Some(Lent { ts: c.ts, value })
}

/// The index's newest changed-key set: see the module documentation.
pub(crate) struct Changes {
    newest: EpochCell<Arc<ChangedKeys>>,
}

impl Changes {
    pub(crate) fn new() -> Self {
        Self {
            newest: EpochCell::new(Arc::new(ChangedKeys::for_keys(0))),
        }
    }

    /// Marks `keys` changed, for a committer that has linked versions of them and not yet
    /// retired anything it unlinked (nor published its timestamp). `current` loads the
    /// index's current run (after the newest set, which is what the protocol needs).
    pub(crate) fn note<'g, 'k>(
        &'g self,
        current: impl FnOnce() -> &'g RunHeads,
        keys: impl IntoIterator<Item = &'k [u8]>,
        guard: &'g Guard,
    ) {
        if crate::sync::faults::active(crate::sync::faults::Fault::NoteSkipped) {
            return;
        }
        if !note_without_fence() {
            // Pairs with the fence in `copier`: either that rebuild's copies see our
            // installs, or we see its set below.
            fence(Ordering::SeqCst);
        }
        let newest: &ChangedKeys = self.newest.load(guard);
        let current: &ChangedKeys = &current().changed;
        let both = !std::ptr::eq(newest, current);
        let only_current = note_only_current_run();
        for key in keys {
            let hash = key_hash(key);
            if !only_current {
                newest.mark(hash);
            }
            if both || only_current {
                current.mark(hash);
            }
        }
    }

    /// Publishes a fresh set as the newest and returns a copier that copies heads under it,
    /// for a rebuild building a run of about `keys` keys. Rebuilds take turns (the caller
    /// holds the index's builder lock).
    pub(crate) fn copier(&self, keys: usize) -> HeadCopier {
        let changed = Arc::new(ChangedKeys::for_keys(keys));
        let guard = crossbeam_epoch::pin();
        self.newest.replace(Arc::clone(&changed), &guard);
        // Pairs with the fence in `note`: a committer that installed before it is seen by
        // our copies, one after it marks `changed`.
        fence(Ordering::SeqCst);
        HeadCopier {
            copies: Vec::with_capacity(keys),
            changed,
            guard,
        }
    }
}

/// Copies heads for a run being built, in the run's order (see [`Changes::copier`]).
pub(crate) struct HeadCopier {
    copies: Vec<HeadCopy>,
    changed: Arc<ChangedKeys>,
    /// Pinned while reading head caches; renewed every [`REPIN_EVERY`] copies so a long
    /// rebuild does not hold back memory reclamation.
    guard: Guard,
}

/// Copies between two renewals of a [`HeadCopier`]'s pin.
const REPIN_EVERY: usize = 1024;

impl HeadCopier {
    /// Copies `chain`'s head for the run's next entry, `key`.
    pub(crate) fn push(&mut self, key: &[u8], chain: &Chain) {
        if self.copies.len() % REPIN_EVERY == REPIN_EVERY - 1 {
            self.guard.repin();
        }
        let hash = key_hash(key);
        let copy = match chain.cache().get(&self.guard) {
            Some(Lent { ts, value: None }) => HeadCopy {
                ts,
                ptr: std::ptr::null(),
                len: TOMBSTONE,
                hash,
            },
            Some(Lent { ts, value: Some(v) }) if v.len() < TOMBSTONE as usize => HeadCopy {
                ts,
                ptr: v.as_ptr(),
                // Checked just above.
                len: v.len() as u32,
                hash,
            },
            _ => HeadCopy {
                ts: 0,
                ptr: std::ptr::null(),
                len: 0,
                hash,
            },
        };
        self.copies.push(copy);
    }

    /// The copies, for the run they were pushed for.
    pub(crate) fn finish(self) -> RunHeads {
        RunHeads {
            copies: self.copies,
            changed: self.changed,
        }
    }
}

/// Whether scans lend copies without checking their keys' changed bits: only as an injected
/// fault in a loom negative control.
#[inline]
fn lend_skips_changed_check() -> bool {
    crate::sync::faults::active(crate::sync::faults::Fault::LendSkipsChangedCheck)
}

/// How many copies this model lent (see `version::loom_watch` for why a thread-local): for a
/// loom model to tell a value lent from a copy from one read from the chain.
#[cfg(loom)]
#[cfg_attr(not(test), allow(dead_code))] // read only by the model tests
pub(crate) mod loom_lends {
    use std::cell::Cell;

    thread_local! {
        static LENT: Cell<usize> = const { Cell::new(0) };
    }

    /// Copies lent so far on this thread (by any model thread of a loom model).
    pub(crate) fn lent() -> usize {
        LENT.with(Cell::get)
    }

    pub(super) fn count() {
        let _ = LENT.try_with(|n| n.set(n.get() + 1));
    }
}

/// Whether committers skip the fence before marking: only as an injected fault in a loom
/// negative control.
fn note_without_fence() -> bool {
    crate::sync::faults::active(crate::sync::faults::Fault::NoteWithoutFence)
}

/// Whether committers mark only the current run's set: only as an injected fault in a loom
/// negative control.
fn note_only_current_run() -> bool {
    crate::sync::faults::active(crate::sync::faults::Fault::NoteOnlyCurrentRun)
}

#[cfg(all(test, not(loom)))]
mod tests {

    use super::*;

    /// `chain`'s versions as `(ts, value)`; installs `values` at timestamps 1, 2, ...
    fn chain_with(values: &[Option<&'static [u8]>]) -> Chain {
        let chain = Chain::new();
        let guard = crossbeam_epoch::pin();
        for (i, v) in values.iter().enumerate() {
            chain.lock().install(i as u64 + 1, *v, None, &guard);
        }
        chain
    }

    fn lent(v: Option<Lent<'_>>) -> Option<(u64, Option<Vec<u8>>)> {
        v.map(|l| (l.ts, l.value.map(<[u8]>::to_vec)))
    }

    /// Copies the heads of `chains` (keys `k0`, `k1`, ...) for a run.
    fn copy_all(changes: &Changes, chains: &[&Chain]) -> RunHeads {
        let mut copier = changes.copier(chains.len());
        for (i, chain) in chains.iter().enumerate() {
            copier.push(format!("k{i}").as_bytes(), chain);
        }
        copier.finish()
    }

    #[test]
    fn copies_serve_the_head_at_or_after_its_timestamp() {
        let changes = Changes::new();
        let (a, tomb, empty) = (
            chain_with(&[Some(b"old"), Some(b"new")]),
            chain_with(&[Some(b"x"), None]),
            Chain::new(),
        );
        let heads = copy_all(&changes, &[&a, &tomb, &empty]);
        let all = heads.slice(0..3);
        let guard = crossbeam_epoch::pin();
        let copy = |i: usize, at: u64| lent(all.get(i).and_then(|c| c.lend(at, &guard)));
        assert_eq!(copy(0, 2), Some((2, Some(b"new".to_vec()))));
        assert_eq!(copy(0, 9), Some((2, Some(b"new".to_vec()))));
        // Older snapshots read the chain.
        assert_eq!(copy(0, 1), None);
        // A tombstone is copied as one.
        assert_eq!(copy(1, 2), Some((2, None)));
        // An empty chain has no copy.
        assert_eq!(copy(2, 9), None);
        assert!(all.get(0).is_some_and(|c| c.is_current()));
        assert!(!all.get(2).is_some_and(|c| c.is_current()));
        // Slices keep entries and copies aligned.
        assert_eq!(
            lent(all.skip(1).get(0).and_then(|c| c.lend(9, &guard))),
            Some((2, None))
        );
        assert!(all.take(1).get(1).is_none());
        assert!(RunHeads::none().slice(0..3).get(0).is_none());
    }

    #[test]
    fn a_noted_install_makes_the_copy_stale_in_the_current_and_newest_sets() {
        let changes = Changes::new();
        let a = chain_with(&[Some(b"v1")]);
        let b = chain_with(&[Some(b"b")]);
        let current = copy_all(&changes, &[&a, &b]);
        let guard = crossbeam_epoch::pin();
        a.lock().install(2, Some(&b"v2"[..]), None, &guard);
        // Unnoted, the copy still claims v1 is the head: this is why every commit notes its
        // keys before publishing.
        let copy = |heads: &RunHeads, i: usize| {
            lent(heads.slice(0..2).get(i).and_then(|c| c.lend(9, &guard)))
        };
        assert_eq!(copy(&current, 0), Some((1, Some(b"v1".to_vec()))));
        // A rebuild has published its set but not its run yet: the note marks both.
        let building = changes.copier(2);
        changes.note(|| &current, [&b"k0"[..]], &guard);
        let built = building.finish();
        for heads in [&current, &built] {
            let marked = heads.changed.is_marked(key_hash(b"k0"));
            assert!(marked, "the note reached every set a reader could use");
        }
        assert_eq!(
            copy(&current, 0),
            None,
            "a noted key is read from its chain"
        );
        assert_eq!(copy(&current, 1), Some((1, Some(b"b".to_vec()))));
    }

    /// The stretch-at-a-time path of a lending walk: the mask has a bit for every copy no
    /// committer marked (slots without a copy included), and the mask lends each such
    /// copy the snapshot sees, turning down the others. Under Miri this covers the unchecked
    /// word reads and the tombstone's null pointer.
    #[test]
    fn stretch_masks_pick_the_unmarked_copies() {
        let changes = Changes::new();
        let chains = [
            chain_with(&[Some(b"old"), Some(b"new")]),
            chain_with(&[Some(b"x"), None]),
            Chain::new(),
            chain_with(&[Some(b"")]),
            chain_with(&[Some(b"v1")]),
        ];
        let heads = copy_all(&changes, &chains.iter().collect::<Vec<_>>());
        let guard = crossbeam_epoch::pin();
        changes.note(|| &heads, [&b"k4"[..]], &guard);
        let all = heads.slice(0..5);
        // Not the marked key.
        assert_eq!(all.current_mask(5).bits(), 0b01111);
        assert_eq!(all.current_mask(2).bits(), 0b11);
        assert_eq!(all.skip(3).current_mask(2).bits(), 0b01);
        assert_eq!(RunHeads::none().slice(0..5).current_mask(5).bits(), 0);
        let mask = all.current_mask(5);
        let copy = |i: usize, at| lent(mask.lend(i, at, &guard));
        assert_eq!(copy(4, 9), None, "the marked key is read from its chain");
        assert_eq!(copy(5, 9), None, "past the stretch");
        assert_eq!(
            lent(all.current_mask(2).lend(3, 9, &guard)),
            None,
            "past the mask"
        );
        assert_eq!(copy(0, 9), Some((2, Some(b"new".to_vec()))));
        assert_eq!(copy(1, 9), Some((2, None)));
        assert_eq!(copy(2, 9), None, "no copy of an empty chain");
        assert_eq!(copy(3, 9), Some((1, Some(Vec::new()))));
        // A snapshot older than the copy reads the chain.
        assert_eq!(copy(0, 1), None);
        // A run big enough for a changed-key set of many words: every stretch's mask agrees
        // with the copies' one-by-one checks.
        let many: Vec<Chain> = (0..300).map(|_| chain_with(&[Some(b"v")])).collect();
        let heads = copy_all(&changes, &many.iter().collect::<Vec<_>>());
        assert!(heads.changed.words.len() > 8);
        let marked: Vec<String> = (0..300).step_by(7).map(|i| format!("k{i}")).collect();
        changes.note(|| &heads, marked.iter().map(|k| k.as_bytes()), &guard);
        for start in (0..300).step_by(13) {
            let stretch = heads.slice(start..300);
            let n = (300 - start).min(32);
            let want = (0..n).fold(0, |m, i| {
                m | u32::from(stretch.get(i).is_some_and(|c| c.is_current())) << i
            });
            assert_eq!(stretch.current_mask(n).bits(), want, "stretch at {start}");
            assert_ne!(want, 0);
        }
    }

    #[test]
    fn changed_sets_are_sized_for_their_run() {
        assert_eq!(ChangedKeys::for_keys(0).words.len(), 1);
        let set = ChangedKeys::for_keys(100_000);
        assert_eq!(
            set.words.len() * 64,
            (100_000 * BITS_PER_KEY).next_power_of_two()
        );
        for h in [0, 1, 63, 64, u32::MAX] {
            assert!(!set.is_marked(h));
            set.mark(h);
            assert!(set.is_marked(h));
        }
    }

    #[test]
    fn changed_keys_count_each_bit_once() {
        let changes = Changes::new();
        let chains: Vec<Chain> = (0..100).map(|_| chain_with(&[Some(b"v")])).collect();
        let heads = copy_all(&changes, &chains.iter().collect::<Vec<_>>());
        for _ in 0..3 {
            heads.changed.mark(7);
        }
        assert_eq!(heads.changed_keys(), 1);
        let bits = heads.changed.words.len() as u32 * 64;
        for h in 0..3 * bits {
            heads.changed.mark(h);
        }
        assert_eq!(heads.changed_keys(), bits as usize);
        // A run without copies counts none: nothing would renew them.
        let none = RunHeads::none();
        none.changed.mark(1);
        assert_eq!(none.changed_keys(), 0);
    }
}
