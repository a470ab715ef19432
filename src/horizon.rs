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
///
/// A key whose only remaining version is a delete reads as absent at every timestamp, so a
/// reader cannot tell it from a key without a chain. A writer can: a transaction whose
/// snapshot predates the delete must still conflict with it (first committer wins). So such
/// a key may leave the map only once no live *transaction* reads below the delete:
/// [`writer_floor`](Self::writer_floor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Horizon {
    /// The visible timestamp when the horizon was computed.
    now: u64,
    /// Timestamps of live snapshots below `now`: ascending, no duplicates.
    live: Vec<u64>,
    /// The oldest timestamp a live transaction (a snapshot that may still write) reads at, or
    /// `now` if none reads below it; at least the watermark.
    writer_floor: u64,
}

impl Horizon {
    /// A horizon that keeps everything (for tests and models that do not collect).
    #[cfg(all(test, loom))]
    pub(crate) const NOTHING: Horizon = Horizon {
        now: 0,
        live: Vec::new(),
        writer_floor: 0,
    };

    /// A horizon from the visible timestamp and the live snapshots' timestamps (any order),
    /// every one of which may belong to a transaction.
    pub(crate) fn new(now: u64, mut live: Vec<u64>) -> Self {
        live.retain(|&s| s < now);
        live.sort_unstable();
        live.dedup();
        let writer_floor = live.first().copied().unwrap_or(now);
        Self {
            now,
            live,
            writer_floor,
        }
    }

    /// One horizon from the horizons of read-only snapshots and of transactions, each
    /// computed by its own registry (a snapshot registers in exactly one). Takes the earlier
    /// visible timestamp: snapshots registered after either computation read at or above it.
    pub(crate) fn merge(readers: Horizon, writers: Horizon) -> Self {
        let now = readers.now.min(writers.now);
        let writer_floor = writers.watermark().min(now);
        let mut live = readers.live;
        live.extend(writers.live);
        let mut merged = Self::new(now, live);
        merged.writer_floor = writer_floor;
        merged
    }

    /// The horizon of a plain low watermark: nothing reads below `watermark`.
    pub(crate) fn at(watermark: u64) -> Self {
        Self {
            now: watermark,
            live: Vec::new(),
            writer_floor: watermark,
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

    /// No live transaction reads below it: a key whose only version is a delete at or below
    /// it can leave the map without a writer missing a conflict (see the type's comment).
    pub(crate) fn writer_floor(&self) -> u64 {
        self.writer_floor
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
        assert_eq!(h.writer_floor(), 10, "every snapshot may write");
        let merged = Horizon::merge(
            Horizon::new(100, vec![10, 150]),
            Horizon::new(110, vec![70, 40, 105]),
        );
        assert_eq!(merged.now(), 100, "the earlier computation");
        assert_eq!((merged.watermark(), merged.writer_floor()), (10, 40));
        assert!(merged.needs(40, 41) && merged.needs(70, 71) && !merged.needs(71, 100));
        let readers_only = Horizon::merge(Horizon::new(100, vec![10]), Horizon::new(100, vec![]));
        assert_eq!(readers_only.writer_floor(), 100);
        let late_writer = Horizon::merge(Horizon::new(100, vec![]), Horizon::new(120, vec![105]));
        assert_eq!(late_writer.writer_floor(), 100, "capped at now");
        let plain = Horizon::at(30);
        assert_eq!((plain.watermark(), plain.writer_floor()), (30, 30));
        assert!(plain.needs(20, 31) && !plain.needs(20, 30) && !plain.has_old_snapshots());
    }
}
