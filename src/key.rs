//! The key types the hashed map, the scan index and the write set share: the key as they
//! store it, and key ranges with owned or borrowed bounds.

use std::ops::Bound;

use bytes::Bytes;

/// The key as both maps hold it: keys up to 24 bytes live inline in the map's bucket and in
/// the index (its sorted run and delta nodes), so a lookup or a scan step compares the key
/// without another cache miss
/// (a `Bytes` key points to a separate allocation, and cloning one touches a shared
/// reference count). Same size as `Bytes` (32 bytes); hashes and compares like `[u8]`.
pub(crate) type MapKey = smallvec::SmallVec<[u8; 24]>;

/// A copy of `key`: `SmallVec::clone` extends byte by byte (~180 instructions for a 16-byte
/// key), `from_slice` copies in one go. For the passes that copy every key of a run.
pub(crate) fn copy_key(key: &[u8]) -> MapKey {
    MapKey::from_slice(key)
}

/// Heap bytes a key holds outside its inline buffer: its capacity once it spilled (over 24
/// bytes), else nothing. For memory accounting.
pub(crate) fn spilled_bytes(key: &MapKey) -> usize {
    if key.spilled() {
        key.capacity()
    } else {
        0
    }
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
