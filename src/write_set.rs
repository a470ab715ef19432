//! A transaction's buffered writes, in key order.

use std::collections::btree_map;
use std::collections::BTreeMap;
use std::ops::RangeBounds;

use crate::commit::Write;
use crate::store::{borrow_range, KeyRange, MapKey};

/// Buffered writes, sorted by key (the commit locks them in this order): `Some(value)` puts,
/// `None` deletes.
///
/// Most transactions write one key. That one is kept inline, key and value (up to
/// [`INLINE_VALUE`] bytes): a single-key transaction allocates nothing to buffer its write,
/// and its commit copies the value once, into the version. From the second key on, keys go
/// into a `BTreeMap` (a leaf for these entries is ~500 bytes) and values into one growing
/// buffer (see [`Many`]). Keys are [`MapKey`]s: up to 24 bytes inline.
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
    /// Boxed: the enum stays the size of `One`, and dropping a `One` does not inline the
    /// map's and arena's drops.
    Many(Box<Many>),
}

/// The writes of a transaction of several keys: each key's value is a [`Slot`] of one shared
/// buffer, the arena.
///
/// Why an arena: values in their own allocations (`Bytes`) cost a `malloc` and a `free` per
/// written key, 12% of a ten-key write transaction's instructions. The arena grows by
/// doubling and is freed once.
///
/// A rewritten key's new value goes into its old slot when it fits, else to the arena's end;
/// the bytes left behind are counted as garbage and the arena is compacted once they are the
/// larger part of it (and over [`COMPACT_MIN`]), so a transaction that rewrites its keys again
/// and again keeps an arena of at most twice its live bytes, or its live bytes plus
/// `COMPACT_MIN` (its allocation, grown by doubling, up to twice that).
struct Many {
    map: BTreeMap<MapKey, Slot>,
    arena: Vec<u8>,
    /// Bytes of `arena` that no slot covers any more.
    garbage: usize,
}

/// The arena's first capacity.
const ARENA_START: usize = 1024;

/// Garbage below this many bytes is never compacted (compaction copies every live value).
const COMPACT_MIN: usize = 4096;

/// A buffered value: `len` bytes of the arena from `start`, or a delete ([`Slot::DELETE`]).
#[derive(Clone, Copy)]
struct Slot {
    start: usize,
    len: usize,
}

impl Slot {
    /// A delete: it covers no bytes.
    const DELETE: Slot = Slot {
        start: 0,
        len: usize::MAX,
    };

    /// The arena bytes the slot covers, or `None` for a delete.
    fn range(self) -> Option<std::ops::Range<usize>> {
        (self.len != usize::MAX).then(|| self.start..self.start + self.len)
    }

    /// Number of arena bytes the slot covers.
    fn bytes(self) -> usize {
        self.range().map_or(0, |r| r.len())
    }
}

impl Many {
    /// An empty set whose arena has room for `bytes` (and at least [`ARENA_START`]): the
    /// typical multi-key transaction's values fit without regrowing it.
    fn with_capacity(bytes: usize) -> Self {
        Self {
            map: BTreeMap::new(),
            arena: Vec::with_capacity(bytes.max(ARENA_START)),
            garbage: 0,
        }
    }

    /// The value `slot` describes (`None`: a delete).
    fn value(&self, slot: Slot) -> Option<&[u8]> {
        slot.range().map(|r| &self.arena[r])
    }

    /// Buffers `value` for `key` (`None`: a delete), replacing an earlier write of it.
    fn insert(&mut self, key: MapKey, value: Option<&[u8]>) {
        match self.map.entry(key) {
            btree_map::Entry::Occupied(mut entry) => {
                let old = *entry.get();
                // The new slot first, then the accounting: should the append unwind (capacity
                // overflow), the count still matches the arena.
                let (slot, reused) = match value {
                    None => (Slot::DELETE, 0),
                    // The new value fits where the old one was: rewrite it in place.
                    Some(v) if old.range().is_some_and(|r| v.len() <= r.len()) => {
                        self.arena[old.start..old.start + v.len()].copy_from_slice(v);
                        let slot = Slot {
                            start: old.start,
                            len: v.len(),
                        };
                        (slot, v.len())
                    }
                    Some(v) => (append(&mut self.arena, v), 0),
                };
                self.garbage += old.bytes() - reused;
                entry.insert(slot);
            }
            btree_map::Entry::Vacant(entry) => {
                entry.insert(value.map_or(Slot::DELETE, |v| append(&mut self.arena, v)));
            }
        }
        if self.garbage > COMPACT_MIN && self.garbage > self.arena.len() / 2 {
            self.compact();
        }
    }

    /// Copies the live values into a new arena, in key order.
    fn compact(&mut self) {
        debug_assert!(self.garbage <= self.arena.len());
        let mut arena = Vec::with_capacity(self.arena.len().saturating_sub(self.garbage));
        for slot in self.map.values_mut() {
            if let Some(r) = slot.range() {
                *slot = append(&mut arena, &self.arena[r]);
            }
        }
        self.arena = arena;
        self.garbage = 0;
    }
}

/// Appends `value` to `arena` and returns its slot.
fn append(arena: &mut Vec<u8>, value: &[u8]) -> Slot {
    let start = arena.len();
    arena.extend_from_slice(value);
    Slot {
        start,
        len: value.len(),
    }
}

impl WriteSet {
    /// The buffered write of `key`, if any: `Some(None)` for a delete.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        match &self.0 {
            Repr::Empty => None,
            Repr::One(k, v) => (&k[..] == key).then_some(v.as_deref()),
            Repr::Many(many) => many.map.get(key).map(|&slot| many.value(slot)),
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
            Repr::Empty => {
                let one = Repr::One(key, value.map(smallvec::SmallVec::from_slice));
                // The old value is `Empty`, which owns nothing: forgetting it spares the call
                // to the enum's drop glue that an assignment makes.
                let empty = std::mem::replace(&mut self.0, one);
                debug_assert!(matches!(empty, Repr::Empty));
                std::mem::forget(empty);
            }
            Repr::One(k, v) if *k == key => *v = value.map(smallvec::SmallVec::from_slice),
            Repr::One(..) => {
                let Repr::One(k, v) = std::mem::take(&mut self.0) else {
                    unreachable!("matched above")
                };
                let len = |v: Option<&[u8]>| v.map_or(0, <[u8]>::len);
                let mut many = Many::with_capacity(len(v.as_deref()) + len(value));
                many.insert(k, v.as_deref());
                many.insert(key, value);
                self.0 = Repr::Many(Box::new(many));
            }
            Repr::Many(many) => many.insert(key, value),
        }
    }

    /// The first written key, in key order, for which `pred` holds.
    pub(crate) fn find_key(&self, mut pred: impl FnMut(&[u8]) -> bool) -> Option<&[u8]> {
        match &self.0 {
            Repr::Empty => None,
            Repr::One(k, _) => pred(k).then_some(&k[..]),
            Repr::Many(many) => many.map.keys().map(|k| &k[..]).find(|k| pred(k)),
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
            Repr::Many(many) => many.map.len(),
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
            Repr::Many(many) => RangeRepr::Many(many, many.map.range::<[u8], _>(range)),
        })
    }

    /// Runs `f` on the writes, in key order, as the commit takes them (borrowed keys and
    /// values). A single write is handed over in place: the commit of the most common
    /// transaction builds no list.
    pub(crate) fn with_writes<R>(&self, f: impl FnOnce(&[Write<'_>]) -> R) -> R {
        match &self.0 {
            Repr::Empty => f(&[]),
            Repr::One(k, v) => f(&[(&k[..], v.as_deref())]),
            Repr::Many(many) => {
                let writes: smallvec::SmallVec<[Write<'_>; 16]> = many
                    .map
                    .iter()
                    .map(|(k, &slot)| (&k[..], many.value(slot)))
                    .collect();
                f(&writes)
            }
        }
    }

    /// Bytes the buffered values take, and the bytes their buffer holds (for tests of the
    /// compaction). Checks the garbage count (live and garbage bytes make the buffer) and the
    /// buffer's bound.
    #[cfg(all(test, not(loom)))]
    fn value_bytes(&self) -> (usize, usize) {
        match &self.0 {
            Repr::Many(many) => {
                let live: usize = many.map.values().map(|s| s.bytes()).sum();
                let arena = many.arena.len();
                assert_eq!(live + many.garbage, arena, "garbage miscounted");
                assert!(
                    arena <= (2 * live).max(live + COMPACT_MIN),
                    "{arena} for {live}"
                );
                (live, arena)
            }
            _ => (0, 0),
        }
    }
}

/// A [`WriteSet`]'s writes in a range.
pub(crate) struct OwnRange<'a>(RangeRepr<'a>);

enum RangeRepr<'a> {
    One(Option<(&'a MapKey, Option<&'a [u8]>)>),
    Many(&'a Many, btree_map::Range<'a, MapKey, Slot>),
}

impl<'a> Iterator for OwnRange<'a> {
    /// A key and its buffered value (`None`: a delete).
    type Item = (&'a MapKey, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            RangeRepr::One(one) => one.take(),
            RangeRepr::Many(many, range) => range.next().map(|(k, &v)| (k, many.value(v))),
        }
    }
}

impl DoubleEndedIterator for OwnRange<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            RangeRepr::One(one) => one.take(),
            RangeRepr::Many(many, range) => range.next_back().map(|(k, &v)| (k, many.value(v))),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::ops::Bound;

    /// Against a `BTreeMap` model: random puts (empty, short, and longer than the inline
    /// buffer; rewrites that fit the old value's place and rewrites that do not) and deletes
    /// over a few keys, with point and range lookups (from both ends) after each; the long
    /// rounds rewrite enough to compact the value buffer, whose size must stay within twice
    /// the live values (plus the compaction threshold).
    #[test]
    fn behaves_like_a_sorted_map() {
        let mut rng = fastrand::Rng::with_seed(5);
        let key = |i: u8| MapKey::from_slice(&[b'k', i]);
        let mut compacted = 0;
        for round in 0..300 {
            let mut set = WriteSet::default();
            let mut model: BTreeMap<MapKey, Option<Bytes>> = BTreeMap::new();
            let ops = if round % 10 == 0 {
                400
            } else {
                rng.usize(0..6)
            };
            for _ in 0..ops {
                let k = key(rng.u8(0..5));
                let len = match rng.u8(0..4) {
                    0 => 0,
                    1 => 1,
                    2 => rng.usize(2..INLINE_VALUE),
                    _ => INLINE_VALUE + rng.usize(1..300),
                };
                let v = (rng.u8(0..4) != 0).then(|| Bytes::from(vec![rng.u8(..); len]));
                let (_, before) = set.value_bytes();
                set.insert(k.clone(), v.as_deref());
                model.insert(k, v);
                let (_, arena) = set.value_bytes();
                compacted += usize::from(arena < before);
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
        assert!(compacted > 0, "no round compacted the value buffer");
    }

    /// Forty keys whose live values together exceed `COMPACT_MIN`, so that the half-the-
    /// buffer rule decides when to compact: every compaction keeps every live value (the
    /// one it moves to offset 0 included), and the buffer stays within its bound.
    #[test]
    fn compaction_keeps_every_live_value_of_a_large_set() {
        let mut rng = fastrand::Rng::with_seed(11);
        let key = |i: u8| MapKey::from_slice(&[b'k', i]);
        let mut set = WriteSet::default();
        let mut model: BTreeMap<MapKey, Option<Vec<u8>>> = BTreeMap::new();
        let agree = |set: &WriteSet, model: &BTreeMap<MapKey, Option<Vec<u8>>>| {
            for (k, v) in model {
                assert_eq!(set.get(k), Some(v.as_deref()));
            }
            assert_eq!(set.len(), model.len());
        };
        let mut compactions = 0;
        for _ in 0..5000 {
            let k = key(rng.u8(0..40));
            let v = (rng.u8(0..8) != 0).then(|| vec![rng.u8(..); rng.usize(0..400)]);
            let (_, before) = set.value_bytes();
            set.insert(k.clone(), v.as_deref());
            model.insert(k, v);
            let (live, arena) = set.value_bytes();
            if arena < before {
                assert!(
                    live > COMPACT_MIN,
                    "the test should compact by the half rule"
                );
                compactions += 1;
                agree(&set, &model);
            }
        }
        agree(&set, &model);
        assert!(compactions > 10, "{compactions} compactions");
    }
}
