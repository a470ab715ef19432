//! Fence keys: every 32nd key of a run, searched with integer compares.

use std::cmp::Ordering;

use super::order;
use crate::key::MapKey;

/// A sorted sample of a run's keys, for seeks.
///
/// A seek into a run binary-searches its fences and then one block of entries. Comparing
/// byte strings on every probe costs a call and a loop each; instead each fence keeps its
/// **head**: the 8 bytes after the prefix all fences share, big-endian and zero-padded, so
/// that most probes are one integer compare in a small, cache-resident array. The full key
/// decides only between fences whose heads tie with the probe's (the normalized-key prefix
/// trick of B-tree pages).
///
/// Heads order like keys where they differ: at the first byte where two padded heads
/// differ, either both keys have a byte there (which orders them), or the one with the
/// padding ended earlier, so it is a proper prefix of the other and orders first. Equal heads
/// say nothing, hence the full compare on ties.
pub(crate) struct Fences {
    /// The bytes every fence key starts with (the common prefix of the first and last).
    common: MapKey,
    /// Each fence's head: its 8 bytes after `common`, big-endian, zero-padded.
    heads: Vec<u64>,
    /// The fence keys themselves, for ties.
    keys: Vec<MapKey>,
}

/// Whether `x` is below `key`: `x < key`, or `x <= key` when `or_equal` (the two predicates a
/// seek partitions sorted keys by).
pub(crate) fn below(x: &[u8], key: &[u8], or_equal: bool) -> bool {
    if or_equal {
        !order::lt(key, x)
    } else {
        order::lt(x, key)
    }
}

/// How many of the indices `0..n` satisfy `holds`, which is true for a prefix of them: an
/// exponential search from 0, then a binary search in the window found. For answers that are
/// usually small (fences tying with a probe's head):
/// it probes only near the start, where a binary search of all `n` would probe far away.
pub(super) fn gallop(n: usize, holds: impl Fn(usize) -> bool) -> usize {
    // Every index below `lo` holds; `hi` is `n` or an index that does not.
    let (mut lo, mut step) = (0, 1);
    let hi = loop {
        let probe = lo + step - 1;
        if probe >= n {
            break n;
        }
        if !holds(probe) {
            break probe;
        }
        lo = probe + 1;
        step *= 2;
    };
    bisect(lo, hi, holds)
}

/// The first index in `lo..hi` where `holds` (true for a prefix) fails, or `hi`, given that
/// it holds below `lo`: a binary search.
pub(super) fn bisect(mut lo: usize, mut hi: usize, holds: impl Fn(usize) -> bool) -> usize {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// `bytes[..8]`, zero-padded, as a big-endian integer.
fn head(bytes: &[u8]) -> u64 {
    // Most keys have 8 bytes past the common prefix: one load (the padded copy below goes
    // through a `memcpy` call of variable length).
    if let Some(first) = bytes.first_chunk::<8>() {
        return u64::from_be_bytes(*first);
    }
    let mut word = [0u8; 8];
    let n = bytes.len().min(8);
    word[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(word)
}

impl Fences {
    /// Fences over `keys` (sorted).
    pub(crate) fn new(keys: Vec<MapKey>) -> Self {
        debug_assert!(keys.windows(2).all(|w| w[0] <= w[1]));
        let common = match (keys.first(), keys.last()) {
            (Some(first), Some(last)) => {
                let n = first
                    .iter()
                    .zip(last.iter())
                    .take_while(|(a, b)| a == b)
                    .count();
                MapKey::from_slice(&first[..n])
            }
            _ => MapKey::new(),
        };
        let heads = keys.iter().map(|k| head(&k[common.len()..])).collect();
        Self {
            common,
            heads,
            keys,
        }
    }

    /// Heap bytes of the fences (capacity included), for memory accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.heads.capacity() * size_of::<u64>()
            + self.keys.capacity() * size_of::<MapKey>()
            + self.keys.iter().map(MapKey::heap_bytes).sum::<usize>()
            + self.common.heap_bytes()
    }

    /// How many fences are below `key` (`f < key`, or `f <= key` when `or_equal`): the
    /// fences' `partition_point` for that predicate.
    pub(crate) fn count_below(&self, key: &[u8], or_equal: bool) -> usize {
        let p = self.common.len();
        let shared = key.len().min(p);
        match key[..shared].cmp(&self.common[..shared]) {
            Ordering::Less => return 0,
            Ordering::Greater => return self.keys.len(),
            // `key` is a proper prefix of every fence: below all of them.
            Ordering::Equal if key.len() < p => return 0,
            Ordering::Equal => {}
        }
        let h = head(&key[p..]);
        let lo = self.heads.partition_point(|&x| x < h);
        // Usually none or one: count them from `lo` rather than search the rest of the run.
        let rest = &self.heads[lo..];
        let ties = gallop(rest.len(), |i| rest[i] == h);
        lo + self.keys[lo..lo + ties].partition_point(|f| below(f, key, or_equal))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "safe code only, outside raw: nothing for Miri to find")]
    fn gallop_finds_the_end_of_the_prefix() {
        for n in 0..70 {
            for cut in 0..=n {
                assert_eq!(gallop(n, |i| i < cut), cut, "n {n} cut {cut}");
            }
        }
    }

    /// Against a plain search, on keys built to hit every branch: shared prefixes longer
    /// than a head, zero bytes (which padding imitates), keys shorter than the common
    /// prefix, and probes outside the fences' prefix on both sides.
    #[test]
    #[cfg_attr(miri, ignore = "safe code only, outside raw: nothing for Miri to find")]
    fn counts_agree_with_a_plain_search() {
        let mut rng = fastrand::Rng::with_seed(11);
        for round in 0..400 {
            let prefix: Vec<u8> = (0..rng.usize(0..4)).map(|_| rng.u8(0..3)).collect();
            let random_key = |rng: &mut fastrand::Rng| {
                let mut k = prefix.clone();
                // A few long ties: keys equal for 8+ bytes after the prefix.
                if rng.bool() {
                    k.extend_from_slice(&[1, 0, 2, 0, 1, 1, 0, 2]);
                }
                k.extend((0..rng.usize(0..6)).map(|_| rng.u8(0..3)));
                MapKey::from_slice(&k)
            };
            let mut keys: Vec<MapKey> = (0..rng.usize(0..40))
                .map(|_| random_key(&mut rng))
                .collect();
            keys.sort();
            keys.dedup();
            let fences = Fences::new(keys.clone());
            for _ in 0..60 {
                let probe: Vec<u8> = if rng.u8(..) < 40 {
                    (0..rng.usize(0..6)).map(|_| rng.u8(0..4)).collect()
                } else {
                    random_key(&mut rng).to_vec()
                };
                for or_equal in [false, true] {
                    let want = keys.partition_point(|f| {
                        if or_equal {
                            f[..] <= probe[..]
                        } else {
                            f[..] < probe[..]
                        }
                    });
                    assert_eq!(
                        fences.count_below(&probe, or_equal),
                        want,
                        "round {round}: {keys:?} probe {probe:?} or_equal {or_equal}"
                    );
                }
            }
        }
    }
}
