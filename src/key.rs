//! The key types the hashed map, the scan index and the write set share: the key as they
//! store it, and key ranges with owned or borrowed bounds.

use std::ops::Bound;

use bytes::Bytes;

/// The key as both maps hold it: keys up to [`INLINE`] (23) bytes live inline in the map's
/// bucket and in the index (its sorted run and delta nodes), so a lookup or a scan step
/// compares the key without another cache miss (a `Bytes` key points to a separate
/// allocation, and cloning one touches a shared reference count); longer keys are boxed.
/// Hashes and compares like `[u8]` (it is `Borrow<[u8]>`).
///
/// 24 bytes: the inline form's length is an enum of the 24 lengths it can hold, whose spare
/// values (the niche) tell the boxed form apart, and the box sits in the 16 bytes after it.
/// It held keys as a `SmallVec<[u8; 24]>` before, 32 bytes: this is 8 bytes per key fewer
/// in the map's buckets and again in the scan index's run (about 18 of ~360 bytes per key at
/// 100K keys), at the price of keys of exactly 24 bytes going to the heap.
#[derive(Clone)]
pub(crate) struct MapKey(Repr);

/// Longest key held inline.
pub(crate) const INLINE: usize = 23;

#[derive(Clone)]
enum Repr {
    Inline { len: InlineLen, bytes: [u8; INLINE] },
    Boxed(Box<[u8]>),
}

/// The length of an inline key: `0..=INLINE`, and nothing else (the niche [`Repr`] uses).
#[derive(Clone, Copy)]
#[repr(u8)]
#[rustfmt::skip]
enum InlineLen {
    L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13, L14, L15, L16, L17, L18, L19,
    L20, L21, L22, L23,
}

/// [`InlineLen`] by value.
#[rustfmt::skip]
const LENS: [InlineLen; INLINE + 1] = {
    use InlineLen::*;
    [
        L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13, L14, L15, L16, L17, L18, L19,
        L20, L21, L22, L23,
    ]
};

const _: () = assert!(size_of::<MapKey>() == 24);

impl MapKey {
    /// The empty key.
    pub(crate) const fn new() -> Self {
        Self(Repr::Inline {
            len: InlineLen::L0,
            bytes: [0; INLINE],
        })
    }

    /// A copy of `key`.
    #[inline]
    pub(crate) fn from_slice(key: &[u8]) -> Self {
        match LENS.get(key.len()) {
            Some(&len) => {
                let mut bytes = [0; INLINE];
                bytes[..key.len()].copy_from_slice(key);
                Self(Repr::Inline { len, bytes })
            }
            None => Self(Repr::Boxed(key.into())),
        }
    }

    /// Heap bytes the key holds (a boxed key's bytes), for memory accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Inline { .. } => 0,
            Repr::Boxed(b) => b.len(),
        }
    }
}

impl Default for MapKey {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for MapKey {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Boxed(b) => b,
        }
    }
}

impl AsRef<[u8]> for MapKey {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::borrow::Borrow<[u8]> for MapKey {
    fn borrow(&self) -> &[u8] {
        self
    }
}

impl std::hash::Hash for MapKey {
    // As `[u8]` hashes: the map is looked up by `&[u8]` (`Borrow`).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl PartialEq for MapKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for MapKey {}

impl PartialOrd for MapKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MapKey {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl std::fmt::Debug for MapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// A copy of `key`, for the passes that copy every key of a run.
pub(crate) fn copy_key(key: &[u8]) -> MapKey {
    MapKey::from_slice(key)
}

/// A range of keys with owned bounds, as the scans take it.
pub(crate) type KeyRange = (Bound<Bytes>, Bound<Bytes>);

/// A range of keys with borrowed bounds, as the index takes it.
pub(crate) type KeyRangeRef<'r> = (Bound<&'r [u8]>, Bound<&'r [u8]>);

/// Borrows an owned range's bounds.
pub(crate) fn borrow_range(range: &KeyRange) -> KeyRangeRef<'_> {
    fn b(bound: &Bound<Bytes>) -> Bound<&[u8]> {
        match bound {
            Bound::Included(k) => Bound::Included(k.as_ref()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    (b(&range.0), b(&range.1))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// Keys inline and boxed read back, compare, order and hash exactly as their bytes do
    /// (the map is looked up by `&[u8]`), and only boxed ones hold heap bytes.
    #[test]
    fn a_key_behaves_as_its_bytes_inline_or_boxed() {
        let lens = [0, 1, 16, INLINE - 1, INLINE, INLINE + 1, 100];
        let raw: Vec<Vec<u8>> = lens
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        let keys: Vec<MapKey> = raw.iter().map(|k| MapKey::from_slice(k)).collect();
        let hasher = foldhash::fast::FixedState::with_seed(1);
        for (k, r) in keys.iter().zip(&raw) {
            assert_eq!(&k[..], &r[..]);
            assert_eq!(k.clone(), *k);
            assert_eq!(hasher.hash_one(k), hasher.hash_one(&r[..]));
            let boxed = r.len() > INLINE;
            assert_eq!(k.heap_bytes(), if boxed { r.len() } else { 0 });
            for (k2, r2) in keys.iter().zip(&raw) {
                assert_eq!(k.cmp(k2), r.cmp(r2));
                assert_eq!(k == k2, r == r2);
            }
        }
        assert!(MapKey::new().is_empty());
    }
}
