//! A transaction's buffered writes, in key order, and their size against the write-set limit.

use std::collections::btree_map;
use std::collections::BTreeMap;
use std::ops::RangeBounds;

use smallvec::SmallVec;

use crate::commit::Write;
use crate::key::{KeyRangeRef, MapKey};
use crate::raw::Unlinked;

/// Buffered writes, sorted by key (the commit locks them in this order), each already in the
/// version node the commit will link (see [`Unlinked`]): a put's value is copied once, from
/// the caller's slice into its node, and the commit copies nothing.
///
/// Most transactions write one key: that one is kept inline, without a map. From the second
/// key on, the writes go into a `BTreeMap` (keys are [`MapKey`]s: up to 24 bytes inline).
///
/// The set counts its size as the caller wrote it (see [`WriteSet::bytes`]), so that a
/// transaction can be stopped before its buffer (and the commit that installs it) outgrows
/// memory.
#[derive(Default)]
pub(crate) struct WriteSet {
    repr: Repr,
    /// The sum of [`cost`] over the buffered writes.
    bytes: usize,
}

#[derive(Default)]
enum Repr {
    #[default]
    Empty,
    One(MapKey, Unlinked),
    /// Every node is `Some`: the commit takes them out ([`WriteSet::commit_with`]) where it
    /// consumes the set, so that its writes can borrow their keys from the map.
    Many(BTreeMap<MapKey, Option<Unlinked>>),
}

/// A node of [`Repr::Many`], which is there until the commit takes it.
fn buffered(node: &Option<Unlinked>) -> &Unlinked {
    node.as_ref()
        .expect("taken only by the commit, which consumes the set")
}

/// What a write counts against the write-set limit: its key's length plus its value's (a
/// delete: its key's). The payload, not the heap it takes: the limit is the caller's to
/// predict.
fn cost(key: &[u8], value: Option<&[u8]>) -> usize {
    key.len().saturating_add(value.map_or(0, <[u8]>::len))
}

/// Writes handed to a commit inline (no list allocated) up to this many.
const INLINE_WRITES: usize = 16;

impl WriteSet {
    /// The buffered write of `key`, if any: `Some(None)` for a delete.
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        match &self.repr {
            Repr::Empty => None,
            Repr::One(k, node) => (&k[..] == key).then(|| node.value()),
            Repr::Many(map) => map.get(key).map(|node| buffered(node).value()),
        }
    }

    /// Whether `key` has a buffered write.
    pub(crate) fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// The size the set counts (see [`cost`]): at most the `max_bytes` of every `insert`.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Buffers a copy of `value` for `key` (`None`: a delete), replacing an earlier write of
    /// it, unless the set would then count more than `max_bytes`: then it buffers nothing,
    /// keeps the earlier write, and returns the size the set would have had.
    pub(crate) fn insert(
        &mut self,
        key: MapKey,
        value: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<(), usize> {
        let key_len = key.len();
        let new = cost(&key, value);
        // The size with this write in place of `old`'s, checked before anything is copied.
        let admit = |bytes: usize, old: Option<Option<&[u8]>>| {
            let old = old.map_or(0, |v| key_len + v.map_or(0, <[u8]>::len));
            let after = (bytes - old).saturating_add(new);
            if after > max_bytes {
                Err(after)
            } else {
                Ok(after)
            }
        };
        match &mut self.repr {
            Repr::Empty => {
                self.bytes = admit(self.bytes, None)?;
                self.repr = Repr::One(key, Unlinked::new(value));
            }
            Repr::One(k, node) if *k == key => {
                self.bytes = admit(self.bytes, Some(node.value()))?;
                *node = Unlinked::new(value);
            }
            Repr::One(..) => {
                self.bytes = admit(self.bytes, None)?;
                let Repr::One(k, node) = std::mem::take(&mut self.repr) else {
                    unreachable!("matched above")
                };
                let map = BTreeMap::from([(k, Some(node)), (key, Some(Unlinked::new(value)))]);
                self.repr = Repr::Many(map);
            }
            Repr::Many(map) => match map.entry(key) {
                btree_map::Entry::Occupied(mut entry) => {
                    self.bytes = admit(self.bytes, Some(buffered(entry.get()).value()))?;
                    entry.insert(Some(Unlinked::new(value)));
                }
                btree_map::Entry::Vacant(entry) => {
                    self.bytes = admit(self.bytes, None)?;
                    entry.insert(Some(Unlinked::new(value)));
                }
            },
        }
        Ok(())
    }

    /// The first written key, in key order, for which `pred` holds.
    pub(crate) fn find_key(&self, mut pred: impl FnMut(&[u8]) -> bool) -> Option<&[u8]> {
        match &self.repr {
            Repr::Empty => None,
            Repr::One(k, _) => pred(k).then_some(&k[..]),
            Repr::Many(many) => many.keys().map(|k| &k[..]).find(|k| pred(k)),
        }
    }

    /// Whether nothing is buffered.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of keys written.
    pub(crate) fn len(&self) -> usize {
        match &self.repr {
            Repr::Empty => 0,
            Repr::One(..) => 1,
            Repr::Many(map) => map.len(),
        }
    }

    /// The writes in `range`, in key order from either end.
    pub(crate) fn range(&self, range: KeyRangeRef<'_>) -> OwnRange<'_> {
        OwnRange(match &self.repr {
            Repr::Empty => RangeRepr::One(None),
            Repr::One(k, node) => RangeRepr::One(
                RangeBounds::<[u8]>::contains(&range, &k[..]).then_some((k, node.value())),
            ),
            Repr::Many(map) => RangeRepr::Many(map.range::<[u8], _>(range)),
        })
    }

    /// Runs `f` on the writes, in key order, as the commit takes them: borrowed keys, and the
    /// nodes handed over (the commit links them). A single write is handed over in place, and
    /// up to [`INLINE_WRITES`] writes without allocating a list.
    pub(crate) fn commit_with<R>(self, f: impl FnOnce(&mut [Write<'_>]) -> R) -> R {
        match self.repr {
            Repr::Empty => f(&mut []),
            Repr::One(k, node) => f(&mut [Write::of(&k, node)]),
            Repr::Many(mut map) => {
                // The writes borrow their keys from the map, and take its nodes.
                let mut writes: SmallVec<[Write<'_>; INLINE_WRITES]> =
                    SmallVec::with_capacity(map.len());
                for (k, node) in map.iter_mut() {
                    let node = node.take().expect("the set is committed once");
                    writes.push(Write::of(k, node));
                }
                f(&mut writes)
            }
        }
    }
}

/// A [`WriteSet`]'s writes in a range.
pub(crate) struct OwnRange<'a>(RangeRepr<'a>);

enum RangeRepr<'a> {
    One(Option<(&'a MapKey, Option<&'a [u8]>)>),
    Many(btree_map::Range<'a, MapKey, Option<Unlinked>>),
}

impl<'a> Iterator for OwnRange<'a> {
    /// A key and its buffered value (`None`: a delete).
    type Item = (&'a MapKey, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            RangeRepr::One(one) => one.take(),
            RangeRepr::Many(range) => range.next().map(|(k, node)| (k, buffered(node).value())),
        }
    }
}

impl DoubleEndedIterator for OwnRange<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            RangeRepr::One(one) => one.take(),
            RangeRepr::Many(range) => range
                .next_back()
                .map(|(k, node)| (k, buffered(node).value())),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::ops::Bound;

    use crate::key::{borrow_range, KeyRange};

    /// Against a `BTreeMap` model: random puts (empty, short and longer) and deletes over a
    /// few keys, under a random write-set limit, with point and range lookups (from both
    /// ends) after each. A write is rejected exactly when the model's size with it in place
    /// exceeds the limit, with that size, and a rejected write changes nothing.
    #[test]
    fn behaves_like_a_sorted_map_under_a_size_limit() {
        let mut rng = fastrand::Rng::with_seed(5);
        let key = |i: u8| MapKey::from_slice(&[b'k', i]);
        let model_bytes = |model: &BTreeMap<MapKey, Option<Bytes>>| -> usize {
            model.iter().map(|(k, v)| cost(k, v.as_deref())).sum()
        };
        let (mut rejected, mut admitted) = (0, 0);
        for round in 0..300 {
            let mut set = WriteSet::default();
            let mut model: BTreeMap<MapKey, Option<Bytes>> = BTreeMap::new();
            let max = if round % 2 == 0 {
                usize::MAX
            } else {
                rng.usize(0..1500)
            };
            let ops = if round % 5 == 0 { 400 } else { rng.usize(0..6) };
            for _ in 0..ops {
                let k = key(rng.u8(0..5));
                let len = match rng.u8(0..4) {
                    0 => 0,
                    1 => 1,
                    2 => rng.usize(2..128),
                    _ => 128 + rng.usize(1..300),
                };
                let v = (rng.u8(0..4) != 0).then(|| Bytes::from(vec![rng.u8(..); len]));
                let mut with = model.clone();
                with.insert(k.clone(), v.clone());
                let want = model_bytes(&with);
                match set.insert(k, v.as_deref(), max) {
                    Ok(()) => {
                        assert!(want <= max);
                        model = with;
                        admitted += 1;
                    }
                    Err(bytes) => {
                        assert_eq!(bytes, want);
                        assert!(want > max);
                        rejected += 1;
                    }
                }
                assert_eq!(set.bytes(), model_bytes(&model));
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
                assert_eq!(set.range(borrow_range(&range)).collect::<Vec<_>>(), want);
                let back: Vec<_> = want.iter().rev().copied().collect();
                assert_eq!(
                    set.range(borrow_range(&range)).rev().collect::<Vec<_>>(),
                    back
                );
            }
            let all: Vec<(MapKey, Option<Bytes>)> = model.into_iter().collect();
            let handed: Vec<(MapKey, Option<Bytes>)> = set.commit_with(|writes| {
                writes
                    .iter()
                    .map(|w| {
                        assert_eq!(w.is_delete(), w.value().is_none());
                        (
                            MapKey::from_slice(w.key),
                            w.value().map(Bytes::copy_from_slice),
                        )
                    })
                    .collect()
            });
            assert_eq!(handed, all);
        }
        assert!(rejected > 100 && admitted > 1000, "{rejected} {admitted}");
    }

    /// More writes than are handed over inline, in key order whatever the order buffered.
    #[test]
    fn hands_many_writes_over_in_key_order() {
        let mut set = WriteSet::default();
        let n = 3 * INLINE_WRITES as u32;
        for i in (0..n).rev() {
            let value = i.to_le_bytes();
            let value = (i % 3 != 0).then_some(&value[..]);
            set.insert(MapKey::from_slice(&i.to_be_bytes()), value, usize::MAX)
                .unwrap();
        }
        set.commit_with(|writes| {
            assert_eq!(writes.len(), n as usize);
            for (i, w) in (0..n).zip(writes.iter()) {
                assert_eq!(w.key, i.to_be_bytes());
                assert_eq!(w.is_delete(), i % 3 == 0);
                assert_eq!(w.value(), (i % 3 != 0).then_some(&i.to_le_bytes()[..]));
            }
        });
    }
}
