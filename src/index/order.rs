//! The order of keys, compared a word at a time: for the index's searches, which compare
//! short keys many times per scan.

use std::cmp::Ordering;

/// The order of `[u8]` (bytewise, a proper prefix first), as `a.cmp(b)` gives it.
///
/// `a.cmp(b)` calls `memcmp` (a call and a length dispatch per comparison, some thirty
/// instructions for a 16-byte key); most keys the index compares differ within their first
/// 16 bytes, which two big-endian word compares settle inline. Longer ties fall back to
/// `memcmp` for the rest.
#[inline]
pub(crate) fn cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut a, mut b) = (a, b);
    for _ in 0..2 {
        let (Some(x), Some(y)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) else {
            break;
        };
        // Big-endian words order like their bytes.
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
        (a, b) = (&a[8..], &b[8..]);
    }
    a.cmp(b)
}

/// `a < b` in the order of [`cmp`].
#[inline]
pub(crate) fn lt(a: &[u8], b: &[u8]) -> bool {
    cmp(a, b) == Ordering::Less
}

#[cfg(all(test, not(loom)))]
mod tests {
    /// Against `[u8]::cmp` on keys built to tie for 0, 8 and 16 bytes and beyond, differ in
    /// length, and be prefixes of each other.
    #[test]
    #[cfg_attr(miri, ignore = "safe code only, outside raw: nothing for Miri to find")]
    fn orders_like_byte_slices() {
        let mut rng = fastrand::Rng::with_seed(3);
        let key = |rng: &mut fastrand::Rng| -> Vec<u8> {
            let shared = [0, 7, 8, 9, 15, 16, 17, 24][rng.usize(..8)];
            let mut k = vec![5u8; shared];
            k.extend((0..rng.usize(0..12)).map(|_| rng.u8(3..7)));
            k
        };
        for _ in 0..20_000 {
            let (a, b) = (key(&mut rng), key(&mut rng));
            assert_eq!(super::cmp(&a, &b), a.cmp(&b), "{a:?} {b:?}");
            assert_eq!(super::lt(&a, &b), a < b, "{a:?} {b:?}");
        }
    }
}
