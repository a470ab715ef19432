//! Ordered scans: over a snapshot, and over a snapshot merged with a transaction's own writes.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::ops::{Bound, ControlFlow};

use bytes::Bytes;

use crate::bounds::KeyBounds;
use crate::index::{Ends, Lending, Reads, Reason};
use crate::key::{borrow_range, KeyRange, KeyRangeRef, MapKey};
use crate::raw::{prefetch_line, prefetch_lines};
use crate::store::Store;
use crate::write_set::OwnRange;

/// Converts user bounds into owned ones.
pub(crate) fn owned_range(range: &impl KeyBounds) -> KeyRange {
    fn own(b: Bound<&[u8]>) -> Bound<Bytes> {
        b.map(Bytes::copy_from_slice)
    }
    (own(range.start_key()), own(range.end_key()))
}

/// The range of keys starting with `prefix`.
pub(crate) fn prefix_range(prefix: &[u8]) -> KeyRange {
    let start = Bound::Included(Bytes::copy_from_slice(prefix));
    // The smallest key greater than every key with the prefix: increment the last byte that
    // is not 0xff and drop what follows; a prefix of only 0xff bytes has no upper bound.
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (start, Bound::Excluded(Bytes::from(end)));
        }
    }
    (start, Bound::Unbounded)
}

/// Whether no key can lie in `range` (start after end, or equal with an exclusive end).
/// `BTreeMap::range` panics on such ranges; scans return nothing instead.
pub(crate) fn is_empty_range<K: AsRef<[u8]>>(range: &(Bound<K>, Bound<K>)) -> bool {
    match (&range.0, &range.1) {
        (Bound::Included(s), Bound::Included(e)) => s.as_ref() > e.as_ref(),
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s.as_ref() >= e.as_ref(),
        _ => false,
    }
}

/// A range of byte-string keys with its bounds borrowed (no copy, unlike [`owned_range`]).
pub(crate) fn borrowed_range(range: &impl KeyBounds) -> KeyRangeRef<'_> {
    (range.start_key(), range.end_key())
}

/// An ordered iterator over the live `(key, value)` pairs of a snapshot in a key range.
///
/// Returned by [`Snapshot::range`](crate::Snapshot::range) and
/// [`Snapshot::scan_prefix`](crate::Snapshot::scan_prefix); iterate backwards with `.rev()`
/// (or mix `next` and `next_back`). It borrows the snapshot, and never blocks writers or the
/// collector.
///
/// It reads ahead in small batches, each under one epoch pin: a batch costs one index seek,
/// and between calls the iterator holds no pin, so a paused scan never holds back memory
/// reclamation. Batches start small (a scan that stops at its first item reads little) and
/// grow to 128 items. A snapshot's view never changes, so reading ahead cannot return
/// anything a step-by-step walk would not.
///
/// A batch is read the way [`Snapshot::scan_with`](crate::Snapshot::scan_with) reads, then
/// copied into one buffer that its pairs share (keys, and values up to 512 bytes; longer
/// values are copied on their own): one allocation per batch, not two per pair. So a pair
/// kept after the others are dropped holds its batch's buffer, at most a few tens of KiB
/// for small keys, alive; copy it (`Bytes::copy_from_slice`) to keep only its bytes.
pub struct Iter<'a> {
    store: &'a Store,
    ts: u64,
    /// The keys not yet read into either buffer; `None` once the index walk has met in the
    /// middle (or the range was empty to begin with).
    rest: Option<KeyRange>,
    /// Items read from the front end, in ascending order.
    front: VecDeque<(Bytes, Bytes)>,
    /// Items read from the back end, in descending order.
    back: VecDeque<(Bytes, Bytes)>,
    /// How many live items the next refill of each end aims for: `[front, back]` (a forward
    /// scan that peeks once at the back end should not read a grown batch there).
    batch: [usize; 2],
}

/// First refill size: enough for "is there any key with this prefix" and short scans.
const FIRST_BATCH: usize = 8;
/// How much each refill grows over the last: every refill pays one index seek (a walk down
/// the fence keys and one block of the sorted run), so few, quickly growing batches.
const BATCH_GROWTH: usize = 2;
/// Largest refill: bounds both the read-ahead and how long one pin lasts.
const MAX_BATCH: usize = 128;

impl<'a> Iter<'a> {
    pub(crate) fn new(store: &'a Store, range: KeyRange, ts: u64) -> Self {
        store.maintain_index(Reason::Scan);
        Self {
            store,
            ts,
            rest: (!is_empty_range(&range)).then_some(range),
            front: VecDeque::new(),
            back: VecDeque::new(),
            batch: [FIRST_BATCH; 2],
        }
    }

    /// Reads the next batch from the front (`forward`) or back end of `rest` into the matching
    /// buffer, and shrinks `rest` past what it examined.
    ///
    /// It reads the way the lending scans do ([`lend`]): each key's visible version from the
    /// run's copy of the head or the chain's head cache when that is the version, walking
    /// forward in the index's tight lending loop; an owned pair costs the lending read plus
    /// the copy of its bytes.
    fn refill(&mut self, forward: bool) {
        let Some(rest) = &self.rest else { return };
        let end = usize::from(!forward);
        let want = self.batch[end];
        self.batch[end] = (want * BATCH_GROWTH).min(MAX_BATCH);
        // Tombstoned or not-yet-visible keys are skipped; cap the keys examined too, so one
        // refill over a long run of dead keys still ends (the next refill resumes after it).
        let max_examined = want * 4;
        let ts = self.ts;
        let guard = crossbeam_epoch::pin();
        let entries = self.store.range(borrow_range(rest), Reads::Heads, &guard);
        // The batch's pairs, borrowed while `guard` is pinned, and copied once the walk is
        // done: each value is usually a cache miss (its bytes live in the version node), and
        // prefetching them all before the first copy lets those misses overlap instead of
        // each copy waiting for its own.
        let mut lent: Vec<(&[u8], &[u8])> = Vec::with_capacity(want);
        let mut take = |key, value| {
            prefetch_value(value);
            lent.push((key, value));
            lent.len() >= want
        };
        // Where the rest of the range starts (or ends) after this batch; `None`: nothing left.
        let edge = if forward {
            let walk =
                entries
                    .expecting(want)
                    .lend_forward(ts, &guard, max_examined, |key, version| {
                        match version.and_then(|v| v.value) {
                            Some(value) if take(key, value) => ControlFlow::Break(()),
                            _ => ControlFlow::Continue(()),
                        }
                    });
            match walk {
                // Not yet examined: the rest starts at it.
                Lending::Paused(key) => Some(Bound::Included(Bytes::copy_from_slice(key))),
                // Broke right after taking a pair: the rest starts after it.
                Lending::Broken => lent
                    .last()
                    .map(|(k, _)| Bound::Excluded(Bytes::copy_from_slice(k))),
                Lending::Exhausted => None,
            }
        } else {
            let mut entries = entries;
            let mut examined = 0;
            let mut last: Option<&[u8]> = None;
            let mut exhausted = true;
            while let Some(g) = entries.next_back() {
                examined += 1;
                last = Some(g.key());
                let full = match g.lend_at(ts, &guard).and_then(|v| v.value) {
                    Some(value) => take(g.key(), value),
                    None => false,
                };
                if full || examined >= max_examined {
                    exhausted = false;
                    break;
                }
            }
            match (exhausted, last) {
                (false, Some(last)) => Some(Bound::Excluded(Bytes::copy_from_slice(last))),
                _ => None,
            }
        };
        let buf = if forward {
            &mut self.front
        } else {
            &mut self.back
        };
        copy_batch(&lent, buf);
        let next_rest = edge.and_then(|edge| {
            let mut r = rest.clone();
            if forward {
                r.0 = edge;
            } else {
                r.1 = edge;
            }
            (!is_empty_range(&r)).then_some(r)
        });
        drop(guard);
        self.rest = next_rest;
    }
}

impl Iterator for Iter<'_> {
    type Item = (Bytes, Bytes);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(kv) = self.front.pop_front() {
                return Some(kv);
            }
            if self.rest.is_none() {
                // The walk met in the middle: what is left was read from the back.
                return self.back.pop_back();
            }
            self.refill(true);
        }
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(kv) = self.back.pop_front() {
                return Some(kv);
            }
            if self.rest.is_none() {
                return self.front.pop_back();
            }
            self.refill(false);
        }
    }
}

impl std::fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("ts", &self.ts)
            .finish_non_exhaustive()
    }
}

/// Values up to this long are copied into their batch's shared buffer; longer ones get an
/// allocation of their own, so that a pair the caller keeps holds at most
/// `MAX_BATCH * (max key length + SHARED_VALUE_MAX)` bytes of other pairs alive.
const SHARED_VALUE_MAX: usize = 512;

/// Copies a batch of lent pairs into `buf` as owned ones: the keys and the values up to
/// [`SHARED_VALUE_MAX`] bytes into one buffer, which the pairs share (each a slice of it).
/// One allocation per batch instead of two per pair: besides the allocator's own cost, a
/// batch's worth of live small allocations drives the allocator off its per-thread cache
/// into its slow paths, which cost an owned scan several times what it spends reading.
fn copy_batch(lent: &[(&[u8], &[u8])], buf: &mut VecDeque<(Bytes, Bytes)>) {
    let shared = |v: &[u8]| v.len() <= SHARED_VALUE_MAX;
    let size = lent
        .iter()
        .map(|(k, v)| k.len() + if shared(v) { v.len() } else { 0 })
        .sum();
    let mut bytes = Vec::with_capacity(size);
    for (k, v) in lent {
        bytes.extend_from_slice(k);
        if shared(v) {
            bytes.extend_from_slice(v);
        }
    }
    let bytes = Bytes::from(bytes);
    let mut at = 0;
    let mut next = |len: usize| {
        at += len;
        bytes.slice(at - len..at)
    };
    for (k, v) in lent {
        let key = next(k.len());
        let value = if shared(v) {
            next(v.len())
        } else {
            Bytes::copy_from_slice(v)
        };
        buf.push_back((key, value));
    }
}

/// Hints the processor to load the start of `value` (up to four cache lines): for a batch of
/// values about to be copied.
fn prefetch_value(value: &[u8]) {
    let head = &value[..value.len().min(256)];
    prefetch_lines(head);
    if let Some(last) = head.last() {
        // `prefetch_lines` steps from the first byte, which may leave the last line out.
        prefetch_line(last);
    }
}

/// How many index entries a lending scan examines under one pin before renewing it.
const REPIN_EVERY: usize = 128;

/// Calls `f` on each live pair of `range` at `ts`, in key order, lending the key and value,
/// until `f` breaks or it lent `limit` pairs; returns how many pairs it lent. The walk renews
/// its epoch pin every [`REPIN_EVERY`] entries (re-seeking from the next key), so even an
/// unbounded scan holds back memory reclamation only briefly.
pub(crate) fn lend(
    store: &Store,
    range: KeyRangeRef<'_>,
    ts: u64,
    limit: usize,
    mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) -> usize {
    lend_versioned(store, range, ts, limit, |key, value, _| f(key, value))
}

/// [`lend`], also lending each pair's version: the commit timestamp that wrote the value (a
/// checkpoint records it, so that versions survive a restart).
#[inline]
pub(crate) fn lend_versioned(
    store: &Store,
    range: KeyRangeRef<'_>,
    ts: u64,
    limit: usize,
    mut f: impl FnMut(&[u8], &[u8], u64) -> ControlFlow<()>,
) -> usize {
    if limit == 0 {
        return 0;
    }
    store.maintain_index(Reason::Scan);
    // Where the walk goes on after a repin: owned, since the walk that reached it has ended
    // (copied only then: a scan shorter than `REPIN_EVERY` copies no bound).
    let mut resume: Option<Bytes> = None;
    let mut lent = 0;
    loop {
        let rest = match &resume {
            Some(key) => (Bound::Included(&key[..]), range.1),
            None => range,
        };
        if is_empty_range(&rest) {
            break;
        }
        let guard = crossbeam_epoch::pin();
        let walk = store
            .range(rest, Reads::Heads, &guard)
            .expecting(limit - lent)
            .lend_forward(ts, &guard, REPIN_EVERY, |key, version| {
                match version.and_then(|v| Some((v.value?, v.ts))) {
                    Some((value, version_ts)) => {
                        lent += 1;
                        let flow = f(key, value, version_ts);
                        if lent == limit {
                            ControlFlow::Break(())
                        } else {
                            flow
                        }
                    }
                    None => ControlFlow::Continue(()),
                }
            });
        match walk {
            // Not yet examined: resume at it.
            Lending::Paused(key) => resume = Some(Bytes::copy_from_slice(key)),
            Lending::Broken => return lent,
            Lending::Exhausted => break,
        }
    }
    lent
}

/// Which side supplies the next item of a merge.
enum Pick {
    Snapshot,
    Own,
    Both,
}

/// An ordered iterator over a transaction's view of a key range: its snapshot with its own
/// buffered writes laid over it (own puts replace or add keys, own deletes hide them).
///
/// Returned by [`Transaction::range`](crate::Transaction::range) and
/// [`Transaction::scan_prefix`](crate::Transaction::scan_prefix); iterate backwards with
/// `.rev()`.
pub struct TxnIter<'a> {
    snap: Ends<Iter<'a>>,
    own: Ends<OwnIter<'a>>,
}

/// A transaction's buffered writes in a range (empty for an empty range).
struct OwnIter<'a>(Option<OwnRange<'a>>);

impl<'a> Iterator for OwnIter<'a> {
    type Item = (&'a MapKey, Option<&'a [u8]>);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.as_mut()?.next()
    }
}

impl DoubleEndedIterator for OwnIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.as_mut()?.next_back()
    }
}

impl<'a> TxnIter<'a> {
    pub(crate) fn new(snap: Iter<'a>, own: Option<OwnRange<'a>>) -> Self {
        Self {
            snap: Ends::new(snap),
            own: Ends::new(OwnIter(own)),
        }
    }

    fn pick(a: Option<&[u8]>, b: Option<&[u8]>, forward: bool) -> Option<Pick> {
        Some(match (a, b) {
            (None, None) => return None,
            (Some(_), None) => Pick::Snapshot,
            (None, Some(_)) => Pick::Own,
            (Some(a), Some(b)) => match (a.cmp(b), forward) {
                (Ordering::Equal, _) => Pick::Both,
                (Ordering::Less, true) | (Ordering::Greater, false) => Pick::Snapshot,
                _ => Pick::Own,
            },
        })
    }
}

/// The item of an own write, if it is a put.
fn own_item((k, v): (&MapKey, Option<&[u8]>)) -> Option<(Bytes, Bytes)> {
    v.map(|v| (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)))
}

impl Iterator for TxnIter<'_> {
    type Item = (Bytes, Bytes);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let a = self.snap.peek_front().map(|(k, _)| &k[..]);
            let b = self.own.peek_front().map(|(k, _)| &k[..]);
            match Self::pick(a, b, true)? {
                Pick::Snapshot => return self.snap.front.take(),
                Pick::Own => {
                    if let Some(kv) = self.own.front.take().and_then(own_item) {
                        return Some(kv);
                    }
                }
                Pick::Both => {
                    self.snap.front.take();
                    if let Some(kv) = self.own.front.take().and_then(own_item) {
                        return Some(kv);
                    }
                }
            }
        }
    }
}

impl DoubleEndedIterator for TxnIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        loop {
            let a = self.snap.peek_back().map(|(k, _)| &k[..]);
            let b = self.own.peek_back().map(|(k, _)| &k[..]);
            match Self::pick(a, b, false)? {
                Pick::Snapshot => return self.snap.back.take(),
                Pick::Own => {
                    if let Some(kv) = self.own.back.take().and_then(own_item) {
                        return Some(kv);
                    }
                }
                Pick::Both => {
                    self.snap.back.take();
                    if let Some(kv) = self.own.back.take().and_then(own_item) {
                        return Some(kv);
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for TxnIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnIter").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks `iter` from both ends in a seeded random interleaving; returns the items in key
    /// order (front items, then back items reversed).
    fn walk_both_ends(mut iter: Iter<'_>, seed: u64) -> Vec<Bytes> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut front, mut back) = (Vec::new(), Vec::new());
        loop {
            let item = if rng.bool() {
                iter.next().map(|kv| front.push(kv.0))
            } else {
                iter.next_back().map(|kv| back.push(kv.0))
            };
            if item.is_none() {
                // Both ends agree that nothing is left.
                assert!(iter.next().is_none() && iter.next_back().is_none());
                break;
            }
        }
        front.extend(back.into_iter().rev());
        front
    }

    #[test]
    fn batched_reads_match_a_sorted_model_from_both_ends() {
        let db = crate::Db::new();
        let key = |i: u32| Bytes::from(format!("k{i:05}"));
        // `n` keys, `dead` of them in a row from `n / 4`.
        let (n, dead) = if cfg!(miri) { (120, 40) } else { (2_000, 900) };
        let dead_run = n / 4..n / 4 + dead;
        for i in 0..n {
            db.put(key(i), b"v").unwrap();
        }
        let before = db.snapshot();
        // Every third key deleted, plus a run of 900 dead keys: longer than one refill may
        // examine, so refills that find nothing live must resume where they stopped (not
        // under Miri, where every commit costs a tenth of a second).
        for i in (0..n).filter(|i| i % 3 == 0 || dead_run.contains(i)) {
            db.delete(key(i)).unwrap();
        }
        let after = db.snapshot();
        let live = |i: &u32| !(i % 3 == 0 || dead_run.contains(i));
        let (lo, hi) = (dead_run.start, dead_run.end);
        let ranges: [(u32, u32); 4] = [(0, n), (lo - 1, hi + 1), (hi - 1, hi + 2), (7, 8)];
        for (lo, hi) in ranges {
            let range = || (Bound::Included(key(lo)), Bound::Excluded(key(hi)));
            let all: Vec<Bytes> = (lo..hi).map(key).collect();
            let alive: Vec<Bytes> = (lo..hi).filter(live).map(key).collect();
            for seed in 0..if cfg!(miri) { 2 } else { 20 } {
                assert_eq!(walk_both_ends(before.iter_range(range()), seed), all);
                assert_eq!(walk_both_ends(after.iter_range(range()), seed), alive);
            }
            assert_eq!(after.iter_range(range()).count(), alive.len());
            assert!(after.iter_range(range()).rev().eq(alive
                .iter()
                .rev()
                .map(|k| { (k.clone(), Bytes::from_static(b"v")) })));
        }
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a thousand commits, too slow under Miri: its lending path runs in the tests \
                  around it"
    )]
    fn lending_scans_match_the_iterator_and_stop_when_told() {
        let db = crate::Db::new();
        let key = |i: u32| format!("k{i:05}");
        for i in 0..1_000 {
            db.put(key(i), format!("v{i}")).unwrap();
        }
        // Dead keys across several re-pins (every 128 entries).
        for i in (0..1_000).filter(|i| i % 4 == 0 || (300..700).contains(i)) {
            db.delete(key(i)).unwrap();
        }
        let snap = db.snapshot();
        let bounds = [(0, 1_000), (1, 999), (299, 701), (500, 600), (5, 5), (7, 3)];
        for (lo, hi) in bounds {
            let (lo, hi) = (key(lo), key(hi));
            let range = (
                Bound::Excluded(lo.as_bytes()),
                Bound::Included(hi.as_bytes()),
            );
            let want: Vec<(Bytes, Bytes)> = snap.range(range).collect();
            let mut got = Vec::new();
            let n = snap.scan_with(range, |k, v| {
                got.push((Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)));
                // Writes during the scan are not seen by it.
                db.put(format!("{}~", String::from_utf8_lossy(k)), "new")
                    .unwrap();
                ControlFlow::Continue(())
            });
            assert_eq!((n, &got), (want.len(), &want));
            // Stopping early: exactly as many as asked for.
            for stop in [1, 2, 129, 1_000] {
                let mut seen = 0;
                let n = snap.scan_with(range, |_, _| {
                    seen += 1;
                    if seen == stop {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                assert_eq!((n, seen), (want.len().min(stop), want.len().min(stop)));
            }
        }
    }

    #[test]
    fn a_batch_shares_one_buffer_for_small_pairs_only() {
        let db = crate::Db::new();
        let big = vec![b'x'; SHARED_VALUE_MAX + 1];
        let n = if cfg!(miri) { 30 } else { 300u32 };
        for i in 0..n {
            let value: &[u8] = if i % 7 == 0 { &big } else { b"small" };
            db.put(format!("k{i:03}"), value).unwrap();
        }
        let snap = db.snapshot();
        for pairs in [
            snap.iter().collect::<Vec<_>>(),
            snap.iter().rev().collect::<Vec<_>>(),
        ] {
            assert_eq!(pairs.len(), n as usize);
            for (k, v) in &pairs {
                let i: u32 = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
                // A small value sits right after its key in the batch's buffer; a large one
                // has its own allocation.
                let adjacent = v.as_ptr() == k.as_ptr().wrapping_add(k.len());
                if i % 7 == 0 {
                    assert_eq!((&v[..], adjacent), (&big[..], false), "{i}");
                } else {
                    assert_eq!((&v[..], adjacent), (&b"small"[..], true), "{i}");
                }
            }
        }
    }

    #[test]
    fn prefix_bounds() {
        let b = |s: &[u8]| Bytes::copy_from_slice(s);
        assert_eq!(
            prefix_range(b"ab"),
            (Bound::Included(b(b"ab")), Bound::Excluded(b(b"ac")))
        );
        assert_eq!(
            prefix_range(b"a\xff"),
            (Bound::Included(b(b"a\xff")), Bound::Excluded(b(b"b")))
        );
        assert_eq!(
            prefix_range(b"\xff\xff"),
            (Bound::Included(b(b"\xff\xff")), Bound::Unbounded)
        );
        assert_eq!(
            prefix_range(b""),
            (Bound::Included(b(b"")), Bound::Unbounded)
        );
    }

    #[test]
    fn empty_ranges() {
        let r = |a: &[u8], b: &[u8]| owned_range(&(a..b));
        assert!(is_empty_range(&r(b"b", b"a")));
        assert!(is_empty_range(&r(b"a", b"a")));
        assert!(!is_empty_range(&r(b"a", b"b")));
        assert!(!is_empty_range(&owned_range(&..)));
        assert!(is_empty_range(&owned_range(&(
            Bound::Excluded(&b"a"[..]),
            Bound::Included(&b"a"[..])
        ))));
    }

    /// The unsafe paths of a lending scan under a race (small enough for Miri, which checks
    /// every access): a committer overwrites every key round after round (superseding the
    /// heads the run copied; its commits prune and retire the versions no snapshot reads, so
    /// the epoch frees them meanwhile) and adds a key per round, another thread rebuilds the
    /// index whenever that leaves work (as maintenance does; a scan hands its own requests
    /// to the background builder), and scans lend and copy at fresh snapshots. Every scan
    /// sees each key once, in order, with the value of one round or, for a snapshot taken
    /// mid-round, of the round before for the keys the committer had not reached yet; the
    /// owned iterator at the same snapshot agrees.
    #[test]
    #[cfg(not(loom))]
    fn a_lending_scan_races_a_committer_and_a_rebuild() {
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        let (keys, rounds) = if cfg!(miri) { (8, 3) } else { (200, 60) };
        let key = |i: u32| format!("k{i:03}");
        let db = crate::Db::new();
        for i in 0..keys {
            db.put(key(i), "0000").unwrap();
        }
        let done = AtomicBool::new(false);
        let rebuilt = AtomicUsize::new(0);
        // The run's size before any new key: read before the threads start, so that a rebuild
        // merging new keys before the rebuilding thread first looks still counts (read in
        // that thread, it could miss every rebuild and loop forever).
        db.shared.store.maintain_index(Reason::Sweep);
        let initial_run = db.shared.store.index_sizes().0;
        let scans = std::thread::scope(|s| {
            s.spawn(|| {
                for r in 1..=rounds {
                    for i in 0..keys {
                        db.put(key(i), format!("{r:04}")).unwrap();
                    }
                    db.put(format!("n{r:03}"), "new").unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::Release);
            });
            s.spawn(|| {
                // Until the committer is done, and at least one rebuild merged new keys.
                let mut run = initial_run;
                while !done.load(std::sync::atomic::Ordering::Acquire)
                    || rebuilt.load(std::sync::atomic::Ordering::Relaxed) == 0
                {
                    db.shared.store.maintain_index(Reason::Sweep);
                    let now = db.shared.store.index_sizes().0;
                    if now != run {
                        rebuilt.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        run = now;
                    }
                    std::thread::yield_now();
                }
            });
            let mut scans = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) || scans < 2 {
                let snap = db.snapshot();
                let range = (Bound::Included(&b"k"[..]), Bound::Excluded(&b"l"[..]));
                let mut lent: Vec<(Bytes, Bytes)> = Vec::new();
                snap.scan_with(range, |k, v| {
                    lent.push((Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)));
                    ControlFlow::Continue(())
                });
                let names: Vec<Bytes> = lent.iter().map(|(k, _)| k.clone()).collect();
                let want: Vec<Bytes> = (0..keys).map(|i| Bytes::from(key(i))).collect();
                assert_eq!(names, want, "a scan lost, repeated or reordered keys");
                let round = |v: &Bytes| -> u32 { std::str::from_utf8(v).unwrap().parse().unwrap() };
                let seen: Vec<u32> = lent.iter().map(|(_, v)| round(v)).collect();
                assert!(
                    seen.windows(2).all(|w| w[0] >= w[1]) && seen[0] - seen[seen.len() - 1] <= 1,
                    "a scan mixed rounds: {seen:?}"
                );
                let owned: Vec<(Bytes, Bytes)> = snap.range(range).collect();
                assert_eq!(
                    owned, lent,
                    "the owned iterator disagrees with the lending scan"
                );
                scans += 1;
            }
            scans
        });
        assert!(scans >= 2);
        assert!(rebuilt.load(std::sync::atomic::Ordering::Relaxed) > 0);
    }
}
