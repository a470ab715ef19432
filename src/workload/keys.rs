//! Record keys and values: 16-byte keys, 100-byte values, as the benchmark suite specifies.

/// Key length in bytes: `"user"` plus 12 lowercase hex digits.
pub const KEY_LEN: usize = 16;
/// Value length in bytes.
pub const VALUE_LEN: usize = 100;

const MASK48: u64 = (1 << 48) - 1;

/// A bijection on 48-bit integers that scatters consecutive record numbers over the key space
/// (like YCSB's hashed insert order), so that key order is not insertion order. Each step
/// (multiplication by an odd constant, xor with a right shift) is invertible modulo 2^48, so
/// distinct records never share a key.
fn scatter(mut x: u64) -> u64 {
    x &= MASK48;
    x = x.wrapping_mul(0x9E37_79B9_7F4B) & MASK48;
    x ^= x >> 24;
    x = x.wrapping_mul(0xC2B2_AE3D_27D5) & MASK48;
    x ^= x >> 21;
    x
}

/// The key of record number `i` (`i < 2^48`): `user` followed by 12 hex digits.
///
/// ```
/// let k = snapkv::workload::key(42);
/// assert_eq!(k.len(), 16);
/// assert!(k.starts_with(b"user"));
/// assert_ne!(snapkv::workload::key(42), snapkv::workload::key(43));
/// ```
pub fn key(i: u64) -> [u8; KEY_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut k = *b"user000000000000";
    let x = scatter(i);
    for (n, byte) in k[4..].iter_mut().enumerate() {
        *byte = HEX[((x >> (44 - 4 * n)) & 0xf) as usize];
    }
    k
}

/// A 100-byte value determined by `seed` (printable, so CSV dumps and debuggers stay sane);
/// different seeds give different values.
pub fn value(seed: u64) -> [u8; VALUE_LEN] {
    // The generator is an implementation detail, not part of the signature.
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = [0u8; VALUE_LEN];
    for b in &mut v {
        *b = rng.u8(b'a'..=b'z');
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_printable_and_follow_their_seed() {
        assert_eq!(value(7), value(7));
        assert_ne!(value(7), value(8));
        assert!(value(9).iter().all(u8::is_ascii_lowercase));
    }

    #[test]
    fn keys_are_distinct_and_scattered() {
        let n = 200_000u64;
        let mut keys: Vec<_> = (0..n).map(key).collect();
        let in_insert_order = keys.windows(2).filter(|w| w[0] < w[1]).count();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len() as u64, n, "two records share a key");
        // Scattered: about half of consecutive pairs ascend, not nearly all.
        let ascending = in_insert_order as f64 / (n - 1) as f64;
        assert!(
            (0.4..0.6).contains(&ascending),
            "ascending fraction {ascending}"
        );
    }
}
