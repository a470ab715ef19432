//! What opening a database directory found: the public account of its recovery.

use std::path::PathBuf;

/// What [`Db::open`](crate::Db::open) recovered from the directory
/// ([`Db::recovery`](crate::Db::recovery)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The timestamp of the checkpoint recovery started from, `None` if it replayed the log
    /// from its beginning.
    pub checkpoint_ts: Option<u64>,
    /// Commit records replayed from the log.
    pub records_replayed: u64,
    /// Keys the database holds after recovery.
    pub keys: usize,
    /// The highest commit timestamp recovered (0 for an empty directory): the database's
    /// visible timestamp on open, and the next commit gets the one after it.
    pub visible_ts: u64,
    /// The cut-off end of the newest log segment that a crash left (a record only partly
    /// written, never known durable), which recovery dropped, if there was one.
    pub torn_tail: Option<DroppedTail>,
    /// What [`DbBuilder::repair`](crate::DbBuilder::repair) cut off at damaged data, if the
    /// log had any (without repair, such damage fails the open with `Error::Corruption`).
    pub repaired: Option<RepairReport>,
}

/// What a repair dropped: the log from the damage on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// The segment the damage is in (for a gap in the numbering: the missing segment).
    pub file: PathBuf,
    /// Where the damage starts: the segment now ends there (at 0 it was removed).
    pub offset: u64,
    /// Bytes of `file` dropped.
    pub bytes: u64,
    /// The later segments removed whole, in log order.
    pub removed: Vec<PathBuf>,
    /// The damage, as `Error::Corruption` would have described it.
    pub what: String,
}

/// The part of a log segment that recovery cut off as a crash's torn tail.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DroppedTail {
    /// The segment file.
    pub file: PathBuf,
    /// Where the dropped bytes started: the file now ends there (or, if not even the
    /// segment's header had been written, the file was removed).
    pub offset: u64,
    /// How many bytes were dropped.
    pub bytes: u64,
}

/// What [`Db::checkpoint`](crate::Db::checkpoint) wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointReport {
    /// The timestamp of the snapshot it holds: a reopen replays only commits above it.
    pub ts: u64,
    /// Keys it holds.
    pub keys: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Log segments it covered, removed (with any older checkpoint).
    pub segments_removed: u64,
}

/// The write-ahead log of a durable database, for monitoring ([`Stats::log`](crate::Stats)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// Bytes written to the log since the database was opened, segment headers included.
    pub bytes_written: u64,
    /// Syncs of the log since it was opened: under `SyncPolicy::Always` one per group of
    /// commits that shared it.
    pub syncs: u64,
    /// Bytes in the log segments a reopen would read (not yet covered by a checkpoint).
    pub live_bytes: u64,
}
