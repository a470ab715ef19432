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
