//! The key ranges scans accept: any standard range whose keys are byte strings.

use std::ops::{Bound, Range, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};

/// The bounds of a range of keys, as scans take them ([`Snapshot::range`],
/// [`Snapshot::scan_with`], [`Transaction::range`], ...).
///
/// Implemented for every standard range (`a..b`, `a..`, `..b`, `a..=b`, `..=b`, `..`) and for
/// a pair of [`Bound`]s, over any key type that is [`AsRef<[u8]>`]: byte slices, byte-string
/// literals (`b"a"..b"m"`; both ends of a range have one type, so literals of different
/// lengths need `.as_slice()`), `&str`, `String`, `Vec<u8>`, [`Bytes`](crate::Bytes) and byte
/// arrays. Sealed: the list is the one above.
///
/// ```
/// use std::ops::Bound;
/// use snapkv::Db;
///
/// let db = Db::new();
/// for k in ["apple", "kiwi", "melon", "plum"] {
///     db.put(k, "fruit")?;
/// }
/// let snap = db.snapshot();
/// assert_eq!(snap.range("b".."n").count(), 2);
/// assert_eq!(snap.range(b"a"..b"l").count(), 2);
/// assert_eq!(snap.range(String::from("kiwi")..).count(), 3);
/// assert_eq!(snap.range(..=b"kiwi".to_vec()).count(), 2);
/// assert_eq!(snap.range((Bound::Excluded("kiwi"), Bound::Unbounded)).count(), 2);
/// assert_eq!(snap.range(..).count(), 4);
/// # Ok::<(), snapkv::Error>(())
/// ```
pub trait KeyBounds: sealed::Sealed {
    /// The start bound, borrowed.
    fn start_key(&self) -> Bound<&[u8]>;
    /// The end bound, borrowed.
    fn end_key(&self) -> Bound<&[u8]>;
}

mod sealed {
    pub trait Sealed {}
}

fn borrow<K: AsRef<[u8]>>(bound: &Bound<K>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(k.as_ref()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl sealed::Sealed for RangeFull {}
impl KeyBounds for RangeFull {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Unbounded
    }
    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Unbounded
    }
}

impl<K: AsRef<[u8]>> sealed::Sealed for Range<K> {}
impl<K: AsRef<[u8]>> KeyBounds for Range<K> {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Included(self.start.as_ref())
    }
    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Excluded(self.end.as_ref())
    }
}

impl<K: AsRef<[u8]>> sealed::Sealed for RangeFrom<K> {}
impl<K: AsRef<[u8]>> KeyBounds for RangeFrom<K> {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Included(self.start.as_ref())
    }
    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Unbounded
    }
}

impl<K: AsRef<[u8]>> sealed::Sealed for RangeTo<K> {}
impl<K: AsRef<[u8]>> KeyBounds for RangeTo<K> {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Unbounded
    }
    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Excluded(self.end.as_ref())
    }
}

impl<K: AsRef<[u8]>> sealed::Sealed for RangeInclusive<K> {}
impl<K: AsRef<[u8]>> KeyBounds for RangeInclusive<K> {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Included(self.start().as_ref())
    }
    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Included(self.end().as_ref())
    }
}

impl<K: AsRef<[u8]>> sealed::Sealed for RangeToInclusive<K> {}
impl<K: AsRef<[u8]>> KeyBounds for RangeToInclusive<K> {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Unbounded
    }
    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Included(self.end.as_ref())
    }
}

impl<K: AsRef<[u8]>> sealed::Sealed for (Bound<K>, Bound<K>) {}
impl<K: AsRef<[u8]>> KeyBounds for (Bound<K>, Bound<K>) {
    fn start_key(&self) -> Bound<&[u8]> {
        borrow(&self.0)
    }
    fn end_key(&self) -> Bound<&[u8]> {
        borrow(&self.1)
    }
}
