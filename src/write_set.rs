//! A transaction's buffered writes, in key order.

use std::collections::btree_map;
use std::collections::BTreeMap;
use std::ops::RangeBounds;

use bytes::Bytes;

use crate::commit::Write;
use crate::store::{borrow_range, KeyRange, MapKey};

/// Buffered writes, sorted by key (the commit locks them in this order): `Some(value)` puts,
/// `None` deletes.
///
/// Most transactions write one key. That one is kept inline, key and value (up to
/// [`INLINE_VALUE`] bytes): a single-key transaction allocates nothing to buffer its write,
/// and its commit copies the value once, into the version. A map is allocated from the second
/// key on (a `BTreeMap` leaf for these entries is ~700 bytes), its values in `Bytes`. Keys
/// are [`MapKey`]s: up to 24 bytes inline.
#[derive(Default)]
pub(crate) struct WriteSet(Repr);

/// Values up to this many bytes are buffered inline by a one-key transaction.
const INLINE_VALUE: usize = 128;

/// A one-key transaction's value (`None` deletes).
type OneValue = Option<smallvec::SmallVec<[u8; INLINE_VALUE]>>;

#[derive(Default)]
enum Repr {
    #[default]
    Empty,
    One(MapKey, OneValue),
    Many(BTreeMap<MapKey, Option<Bytes>>),
}

impl WriteSet {
    /// The buffered write of `key`, if any: `Some(None)` for a delete.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        match &self.0 {
            Repr::Empty => None,
            Repr::One(k, v) => (&k[..] == key).then_some(v.as_deref()),
            Repr::Many(map) => map.get(key).map(Option::as_deref),
        }
    }

    /// Whether `key` has a buffered write.
    pub(crate) fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Buffers a copy of `value` for `key` (`None`: a delete), replacing an earlier write of
    /// it.
    pub(crate) fn insert(&mut self, key: MapKey, value: Option<&[u8]>) {
        match &mut self.0 {
            Repr::Empty => self.0 = Repr::One(key, value.map(smallvec::SmallVec::from_slice)),
            Repr::One(k, v) if *k == key => *v = value.map(smallvec::SmallVec::from_slice),
            Repr::One(..) => {
                let Repr::One(k, v) = std::mem::take(&mut self.0) else {
                    unreachable!("matched above")
                };
                let owned = |v: Option<&[u8]>| v.map(Bytes::copy_from_slice);
                self.0 = Repr::Many(BTreeMap::from([
                    (k, owned(v.as_deref())),
                    (key, owned(value)),
                ]));
            }
            Repr::Many(map) => {
                map.insert(key, value.map(Bytes::copy_from_slice));
            }
        }
    }

    /// Whether nothing is buffered.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of keys written.
    pub(crate) fn len(&self) -> usize {
        match &self.0 {
            Repr::Empty => 0,
            Repr::One(..) => 1,
            Repr::Many(map) => map.len(),
        }
    }

    /// The writes in `range`, in key order from either end.
    pub(crate) fn range(&self, range: &KeyRange) -> OwnRange<'_> {
        let range = borrow_range(range);
        OwnRange(match &self.0 {
            Repr::Empty => RangeRepr::One(None),
            Repr::One(k, v) => RangeRepr::One(
                RangeBounds::<[u8]>::contains(&range, &k[..]).then_some((k, v.as_deref())),
            ),
            Repr::Many(map) => RangeRepr::Many(map.range::<[u8], _>(range)),
        })
    }

    /// Runs `f` on the writes, in key order, as the commit takes them (borrowed keys and
    /// values). A single write is handed over in place: the commit of the most common
    /// transaction builds no list.
    pub(crate) fn with_writes<R>(&self, f: impl FnOnce(&[Write<'_>]) -> R) -> R {
        match &self.0 {
            Repr::Empty => f(&[]),
            Repr::One(k, v) => f(&[(&k[..], v.as_deref())]),
            Repr::Many(map) => {
                let writes: smallvec::SmallVec<[Write<'_>; 4]> =
                    map.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
                f(&writes)
            }
        }
    }
}

/// A [`WriteSet`]'s writes in a range.
pub(crate) struct OwnRange<'a>(RangeRepr<'a>);

enum RangeRepr<'a> {
    One(Option<(&'a MapKey, Option<&'a [u8]>)>),
    Many(btree_map::Range<'a, MapKey, Option<Bytes>>),
}

impl<'a> Iterator for OwnRange<'a> {
    /// A key and its buffered value (`None`: a delete).
    type Item = (&'a MapKey, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            RangeRepr::One(one) => one.take(),
            RangeRepr::Many(range) => range.next().map(|(k, v)| (k, v.as_deref())),
        }
    }
}

impl DoubleEndedIterator for OwnRange<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            RangeRepr::One(one) => one.take(),
            RangeRepr::Many(range) => range.next_back().map(|(k, v)| (k, v.as_deref())),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::ops::Bound;

    /// Against a `BTreeMap` model: random puts (short values and values longer than the
    /// inline buffer) and deletes over a few keys, with point and range lookups (from both
    /// ends) after each.
    #[test]
    fn behaves_like_a_sorted_map() {
        let mut rng = fastrand::Rng::with_seed(5);
        let key = |i: u8| MapKey::from_slice(&[b'k', i]);
        for _ in 0..300 {
            let mut set = WriteSet::default();
            let mut model: BTreeMap<MapKey, Option<Bytes>> = BTreeMap::new();
            for _ in 0..rng.usize(0..6) {
                let k = key(rng.u8(0..5));
                let len = if rng.bool() { 1 } else { INLINE_VALUE + 1 };
                let v = rng.bool().then(|| Bytes::from(vec![rng.u8(..); len]));
                set.insert(k.clone(), v.as_deref());
                model.insert(k, v);
                assert_eq!(set.len(), model.len());
                assert_eq!(set.is_empty(), model.is_empty());
                for i in 0..6 {
                    assert_eq!(set.get(&key(i)), model.get(&key(i)).map(Option::as_deref));
                    assert_eq!(set.contains_key(&key(i)), model.contains_key(&key(i)));
                }
                let (lo, hi) = (key(rng.u8(0..3)), key(rng.u8(2..6)));
                let range: KeyRange = (
                    Bound::Included(Bytes::copy_from_slice(&lo)),
                    Bound::Excluded(Bytes::copy_from_slice(&hi)),
                );
                let want: Vec<_> = model
                    .range(lo.clone()..hi.clone())
                    .map(|(k, v)| (k, v.as_deref()))
                    .collect();
                assert_eq!(set.range(&range).collect::<Vec<_>>(), want);
                let back: Vec<_> = want.iter().rev().copied().collect();
                assert_eq!(set.range(&range).rev().collect::<Vec<_>>(), back);
            }
            let all: Vec<(MapKey, Option<Bytes>)> = model.into_iter().collect();
            let handed: Vec<(MapKey, Option<Bytes>)> = set.with_writes(|writes| {
                writes
                    .iter()
                    .map(|&(k, v)| (MapKey::from_slice(k), v.map(Bytes::copy_from_slice)))
                    .collect()
            });
            assert_eq!(handed, all);
        }
    }
}
