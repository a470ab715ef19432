//! YCSB's request distributions, ported faithfully so that our mixes mean what YCSB's mean.
//!
//! - [`Zipfian`]: Gray et al.'s generator ("Quickly generating billion-record synthetic
//!   databases", SIGMOD 1994), as in YCSB's `ZipfianGenerator`, including its incremental
//!   recomputation of zeta when the item count grows.
//! - [`ScrambledZipfian`]: YCSB's default `requestdistribution=zipfian`: draws from a zipfian
//!   over 10^10 items and hashes the draw (FNV-1a 64) onto the key space, so that the popular
//!   items are spread over the key space instead of clustered at its start.
//! - [`Latest`]: YCSB's `SkewedLatestGenerator` (workload D): the most recently inserted items
//!   are the most popular.

/// YCSB's zipfian constant.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// zeta(n, theta) accumulated from item `from` (exclusive of earlier terms) up to `n`.
fn zeta(from: u64, n: u64, theta: f64, initial: f64) -> f64 {
    (from..n).fold(initial, |sum, i| sum + 1.0 / ((i + 1) as f64).powf(theta))
}

/// Zipfian over `0..items` with constant `theta` (item 0 the most popular).
#[derive(Clone, Debug)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zeta2: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// A zipfian over `0..items` (`items >= 1`) with YCSB's constant 0.99.
    pub fn new(items: u64) -> Self {
        Self::with_theta(items, ZIPFIAN_CONSTANT)
    }

    /// A zipfian over `0..items` with constant `theta` in `(0, 1)`.
    pub fn with_theta(items: u64, theta: f64) -> Self {
        let items = items.max(1);
        Self::with_zeta(items, theta, zeta(0, items, theta, 0.0))
    }

    /// A zipfian whose zeta(items) is already known (YCSB precomputes it for 10^10 items).
    fn with_zeta(items: u64, theta: f64, zetan: f64) -> Self {
        let zeta2 = zeta(0, 2, theta, 0.0);
        let mut z = Self {
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta2,
            zetan,
            eta: 0.0,
        };
        z.eta = z.eta_for(items);
        z
    }

    fn eta_for(&self, items: u64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    /// How many items the distribution currently covers.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Grows (or shrinks) the item count; growing is incremental, O(new - old).
    pub fn set_items(&mut self, items: u64) {
        let items = items.max(1);
        if items == self.items {
            return;
        }
        self.zetan = if items > self.items {
            zeta(self.items, items, self.theta, self.zetan)
        } else {
            zeta(0, items, self.theta, 0.0)
        };
        self.items = items;
        self.eta = self.eta_for(items);
    }

    /// The next draw in `0..items`, from a uniform sample `u` in `[0, 1)`.
    pub fn sample(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let v = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.items - 1)
    }
}

/// YCSB's FNV-1a 64 hash of a `u64`, byte by byte, least significant first.
pub fn fnv_hash64(mut value: u64) -> u64 {
    const OFFSET_BASIS: u64 = 0xCBF2_9CE4_8422_2325;
    const PRIME: u64 = 1_099_511_628_211;
    let mut hash = OFFSET_BASIS;
    for _ in 0..8 {
        hash ^= value & 0xff;
        hash = hash.wrapping_mul(PRIME);
        value >>= 8;
    }
    hash
}

/// YCSB's scrambled zipfian over `0..items`.
#[derive(Clone, Debug)]
pub struct ScrambledZipfian {
    items: u64,
    inner: Zipfian,
}

impl ScrambledZipfian {
    /// YCSB draws from a zipfian over this many items before hashing.
    const ITEM_COUNT: u64 = 10_000_000_000;
    /// zeta(10^10, 0.99), precomputed by YCSB (computing it takes minutes).
    const ZETAN: f64 = 26.469_028_201_783_02;

    /// A scrambled zipfian over `0..items` (constant 0.99).
    pub fn new(items: u64) -> Self {
        Self {
            items: items.max(1),
            inner: Zipfian::with_zeta(Self::ITEM_COUNT, ZIPFIAN_CONSTANT, Self::ZETAN),
        }
    }

    /// Covers `0..items` from now on (inserts grow the key space); O(1).
    pub fn set_items(&mut self, items: u64) {
        self.items = items.max(1);
    }

    /// The next draw in `0..items`, from a uniform sample `u` in `[0, 1)` (any source of
    /// randomness will do: the distribution does not tie its callers to a generator).
    pub fn sample(&self, u: f64) -> u64 {
        // YCSB takes Math.abs of the signed hash; clearing the sign bit does the same job.
        (fnv_hash64(self.inner.sample(u)) & (u64::MAX >> 1)) % self.items
    }
}

/// YCSB's skewed-latest distribution: item `items - 1` (the newest) is the most popular.
#[derive(Clone, Debug)]
pub struct Latest {
    inner: Zipfian,
}

impl Latest {
    /// Skewed towards the end of `0..items`.
    pub fn new(items: u64) -> Self {
        Self {
            inner: Zipfian::new(items),
        }
    }

    /// Covers `0..items` from now on; growing is incremental.
    pub fn set_items(&mut self, items: u64) {
        self.inner.set_items(items);
    }

    /// The next draw in `0..items`, from a uniform sample `u` in `[0, 1)`.
    pub fn sample(&self, u: f64) -> u64 {
        self.inner.items() - 1 - self.inner.sample(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(items: u64, draws: usize, mut draw: impl FnMut() -> u64) -> Vec<usize> {
        let mut h = vec![0; items as usize];
        for _ in 0..draws {
            let v = draw();
            assert!(v < items, "draw {v} out of 0..{items}");
            h[v as usize] += 1;
        }
        h
    }

    #[test]
    fn zipfian_matches_the_theoretical_head() {
        // P(0) = 1 / zeta(n, theta). For n = 1000, theta = 0.99, that is about 0.134.
        let n = 1000;
        let z = Zipfian::new(n);
        let mut rng = fastrand::Rng::with_seed(7);
        let draws = 200_000;
        let h = histogram(n, draws, || z.sample(rng.f64()));
        let p0 = 1.0 / zeta(0, n, ZIPFIAN_CONSTANT, 0.0);
        let observed = h[0] as f64 / draws as f64;
        assert!(
            (observed - p0).abs() < 0.01,
            "P(0): observed {observed}, expected {p0}"
        );
        // Monotone head: item 0 more popular than 1, more than 10, more than 100.
        assert!(
            h[0] > h[1] && h[1] > h[10] && h[10] > h[100],
            "{:?}",
            &h[..12]
        );
    }

    #[test]
    fn growing_incrementally_equals_computing_from_scratch() {
        let mut grown = Zipfian::new(100);
        grown.set_items(5000);
        let fresh = Zipfian::new(5000);
        assert!((grown.zetan - fresh.zetan).abs() < 1e-9);
        assert!((grown.eta - fresh.eta).abs() < 1e-9);
        for u in [0.0, 0.1, 0.5, 0.9, 0.999_999] {
            assert_eq!(grown.sample(u), fresh.sample(u));
        }
    }

    #[test]
    fn scrambled_spreads_the_hot_items() {
        let n = 1000;
        let z = ScrambledZipfian::new(n);
        let mut rng = fastrand::Rng::with_seed(11);
        let h = histogram(n, 100_000, || z.sample(rng.f64()));
        let hottest = (0..n as usize).max_by_key(|&i| h[i]).unwrap_or(0);
        // Still skewed: the hottest item gets far more than a uniform share (100)...
        assert!(h[hottest] > 1000, "hottest item got {}", h[hottest]);
        // ...but the head is not simply item 0 and its neighbours.
        let first_ten: usize = h[..10].iter().sum();
        assert!(first_ten < 20_000, "first ten items got {first_ten} draws");
    }

    #[test]
    fn latest_prefers_the_newest() {
        let mut l = Latest::new(100);
        let mut rng = fastrand::Rng::with_seed(3);
        let h = histogram(100, 50_000, || l.sample(rng.f64()));
        assert!(
            h[99] > h[98] && h[98] > h[50] && h[50] >= h[0],
            "{:?}",
            &h[90..]
        );
        l.set_items(200);
        let h = histogram(200, 50_000, || l.sample(rng.f64()));
        assert!(h[199] > h[99], "after growth the newest item must lead");
    }

    #[test]
    fn fnv_matches_ycsb() {
        // FNV-1a 64 of eight zero bytes.
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        for _ in 0..8 {
            h = h.wrapping_mul(1_099_511_628_211);
        }
        assert_eq!(fnv_hash64(0), h);
        assert_ne!(fnv_hash64(1), fnv_hash64(256));
    }
}
