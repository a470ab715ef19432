//! Ordered scans: over a snapshot, and over a snapshot merged with a transaction's own writes.

use std::cmp::Ordering;
use std::collections::btree_map;
use std::ops::{Bound, RangeBounds};

use bytes::Bytes;

use crate::store::{IndexRange, KeyRange};

/// Converts user bounds into owned ones.
pub(crate) fn owned_range<'k>(range: impl RangeBounds<&'k [u8]>) -> KeyRange {
    fn own(b: Bound<&&[u8]>) -> Bound<Bytes> {
        match b {
            Bound::Included(k) => Bound::Included(Bytes::copy_from_slice(k)),
            Bound::Excluded(k) => Bound::Excluded(Bytes::copy_from_slice(k)),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    (own(range.start_bound()), own(range.end_bound()))
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
pub(crate) fn is_empty_range(range: &KeyRange) -> bool {
    match (&range.0, &range.1) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        _ => false,
    }
}

/// An ordered iterator over the live `(key, value)` pairs of a snapshot in a key range.
///
/// Returned by [`Snapshot::range`](crate::Snapshot::range) and
/// [`Snapshot::scan_prefix`](crate::Snapshot::scan_prefix); iterate backwards with `.rev()`.
/// It borrows the snapshot, and never blocks writers or the collector.
pub struct Iter<'a> {
    inner: Option<IndexRange<'a>>,
    ts: u64,
}

impl<'a> Iter<'a> {
    pub(crate) fn new(inner: Option<IndexRange<'a>>, ts: u64) -> Self {
        Self { inner, ts }
    }

    fn visible(
        &self,
        e: &crossbeam_skiplist::map::Entry<'a, Bytes, crate::sync::Arc<crate::raw::Chain>>,
        guard: &crossbeam_epoch::Guard,
    ) -> Option<(Bytes, Bytes)> {
        let v = e.value().read_at(self.ts, guard)?;
        v.value.map(|val| (e.key().clone(), val.clone()))
    }
}

impl Iterator for Iter<'_> {
    type Item = (Bytes, Bytes);

    fn next(&mut self) -> Option<Self::Item> {
        // One pin per call: the skip list pins internally on every step, and a nested pin is
        // a counter increment, while a first pin costs a fence. The guard ends with the call,
        // so a paused iterator never holds back memory reclamation.
        let guard = crossbeam_epoch::pin();
        loop {
            let e = self.inner.as_mut()?.next()?;
            if let Some(kv) = self.visible(&e, &guard) {
                return Some(kv);
            }
        }
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let guard = crossbeam_epoch::pin();
        loop {
            let e = self.inner.as_mut()?.next_back()?;
            if let Some(kv) = self.visible(&e, &guard) {
                return Some(kv);
            }
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

/// A double-ended iterator with one look-ahead slot at each end.
struct Ends<I: DoubleEndedIterator> {
    iter: I,
    front: Option<I::Item>,
    back: Option<I::Item>,
}

impl<I: DoubleEndedIterator> Ends<I> {
    fn new(iter: I) -> Self {
        Self {
            iter,
            front: None,
            back: None,
        }
    }

    fn peek_front(&mut self) -> Option<&I::Item> {
        if self.front.is_none() {
            // When the middle is exhausted, the back look-ahead is the next item from the front.
            self.front = self.iter.next().or_else(|| self.back.take());
        }
        self.front.as_ref()
    }

    fn peek_back(&mut self) -> Option<&I::Item> {
        if self.back.is_none() {
            self.back = self.iter.next_back().or_else(|| self.front.take());
        }
        self.back.as_ref()
    }
}

/// Which side supplies the next item of a merge.
enum Pick {
    Snapshot,
    Own,
    Both,
}

type OwnRange<'a> = btree_map::Range<'a, Bytes, Option<Bytes>>;

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
    type Item = (&'a Bytes, &'a Option<Bytes>);
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

    fn pick(a: Option<&Bytes>, b: Option<&Bytes>, forward: bool) -> Option<Pick> {
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
fn own_item((k, v): (&Bytes, &Option<Bytes>)) -> Option<(Bytes, Bytes)> {
    v.as_ref().map(|v| (k.clone(), v.clone()))
}

impl Iterator for TxnIter<'_> {
    type Item = (Bytes, Bytes);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let a = self.snap.peek_front().map(|(k, _)| k);
            let b = self.own.peek_front().map(|(k, _)| *k);
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
            let a = self.snap.peek_back().map(|(k, _)| k);
            let b = self.own.peek_back().map(|(k, _)| *k);
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
        let r = |a: &[u8], b: &[u8]| owned_range(a..b);
        assert!(is_empty_range(&r(b"b", b"a")));
        assert!(is_empty_range(&r(b"a", b"a")));
        assert!(!is_empty_range(&r(b"a", b"b")));
        assert!(!is_empty_range(&owned_range(..)));
        assert!(is_empty_range(&owned_range((
            Bound::Excluded(&b"a"[..]),
            Bound::Included(&b"a"[..])
        ))));
    }
}
