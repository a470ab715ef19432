//! The collection horizon: which timestamps any live or future snapshot can read at.

/// What the collector may discard, computed from the snapshot registry at one instant.
///
/// Every live snapshot reads at a timestamp in `live`, or at `now` or above (a snapshot
/// reading at `s >= now` is treated like one reading at `now`: both see the newest version at
/// or below `now` unless a newer one is visible to them, and newer versions are always kept).
/// Every snapshot registered later reads at `now` or above (the registry's floor handshake).
///
/// A version is needed exactly when some such timestamp falls in `[its ts, the ts of the next
/// newer version)`: a long-lived snapshot pins only the versions it can see, not everything
/// written after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Horizon {
    /// The visible timestamp when the horizon was computed.
    now: u64,
    /// Timestamps of live snapshots below `now`: ascending, no duplicates.
    live: Vec<u64>,
}

impl Horizon {
    /// A horizon that keeps everything (for tests and models that do not collect).
    #[cfg(all(test, loom))]
    pub(crate) const NOTHING: Horizon = Horizon {
        now: 0,
        live: Vec::new(),
    };

    /// A horizon from the visible timestamp and the live snapshots' timestamps (any order).
    pub(crate) fn new(now: u64, mut live: Vec<u64>) -> Self {
        live.retain(|&s| s < now);
        live.sort_unstable();
        live.dedup();
        Self { now, live }
    }

    /// The horizon of a plain low watermark: nothing reads below `watermark`.
    pub(crate) fn at(watermark: u64) -> Self {
        Self {
            now: watermark,
            live: Vec::new(),
        }
    }

    /// The low watermark: no snapshot reads below it.
    pub(crate) fn watermark(&self) -> u64 {
        self.live.first().copied().unwrap_or(self.now)
    }

    /// The visible timestamp at computation: versions newer than it are always kept.
    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    /// Whether live snapshots below `now` exist (otherwise the horizon is its watermark).
    pub(crate) fn has_old_snapshots(&self) -> bool {
        !self.live.is_empty()
    }

    /// Whether some snapshot may read at a timestamp in `[from, to)`.
    pub(crate) fn needs(&self, from: u64, to: u64) -> bool {
        if from <= self.now && self.now < to {
            return true;
        }
        let i = self.live.partition_point(|&s| s < from);
        self.live.get(i).is_some_and(|&s| s < to)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn needs_finds_snapshots_in_half_open_intervals() {
        let h = Horizon::new(100, vec![40, 10, 40, 150, 70]);
        assert_eq!(h.watermark(), 10);
        assert!(h.has_old_snapshots());
        assert!(h.needs(10, 11) && h.needs(5, 11) && !h.needs(11, 40) && h.needs(11, 41));
        assert!(!h.needs(71, 100) && h.needs(71, 101) && h.needs(100, u64::MAX));
        assert!(
            !h.needs(101, u64::MAX),
            "above now only newer versions, kept anyway"
        );
        let plain = Horizon::at(30);
        assert_eq!(plain.watermark(), 30);
        assert!(plain.needs(20, 31) && !plain.needs(20, 30) && !plain.has_old_snapshots());
    }
}
