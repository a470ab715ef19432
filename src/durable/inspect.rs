//! Reading a database directory without opening it: what a reopen would recover, judged by
//! recovery itself in its read-only mode, so that looking never changes what is looked at.

use std::path::Path;

use super::checkpoint;
use super::dir_lock::DirLock;
use super::recovery::{self, RecoveryOptions};
use super::report::DroppedTail;
use super::storage::{FileStorage, Storage};
use crate::error::{Error, Result};

/// What a database directory holds, as [`inspect`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirInfo {
    /// The timestamp of the newest checkpoint (the one a reopen starts from), if any.
    pub checkpoint_ts: Option<u64>,
    /// That checkpoint's size in bytes (0 without one).
    pub checkpoint_bytes: u64,
    /// Log segments a reopen would read.
    pub log_segments: u64,
    /// Their bytes up to where the log validly ends (a torn tail not included).
    pub log_bytes: u64,
    /// Commit records in the log newer than the checkpoint: what a reopen replays.
    pub records_to_replay: u64,
    /// Keys the database holds.
    pub keys: usize,
    /// The highest commit timestamp it holds: the visible timestamp on reopen.
    pub visible_ts: u64,
    /// The end of the newest segment that a crash cut short, which a reopen would drop. It
    /// is still on disk: `inspect` changes nothing.
    pub torn_tail: Option<DroppedTail>,
}

/// Reads the database directory `dir` as [`Db::open`](crate::Db::open) would recover it,
/// verifying every checksum it reads (the newest checkpoint whole, every frame of every log
/// segment), and reports what it holds, without writing, truncating, removing or syncing
/// anything: a torn tail is reported and left in place.
///
/// Holds the directory's lock while it reads, so it never sees a database that is being
/// written: [`Error::Locked`] if the directory is open. A directory that was never opened
/// (a backup) gets the empty `LOCK` file any open would create; nothing else is created.
///
/// Errors: [`Error::Corruption`] naming the file and offset of damage to data that was
/// synced (a torn tail is not damage), [`Error::Locked`], [`Error::Io`] (for instance if
/// `dir` does not exist).
///
/// ```
/// let dir = std::env::temp_dir().join(format!("snapkv-inspect-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let db = snapkv::Db::open(&dir)?;
/// db.put("k", "v")?;
/// db.close()?;
/// let info = snapkv::inspect(&dir)?;
/// assert_eq!((info.keys, info.visible_ts, info.torn_tail), (1, 1, None));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), snapkv::Error>(())
/// ```
pub fn inspect(dir: impl AsRef<Path>) -> Result<DirInfo> {
    let dir = dir.as_ref();
    let _lock = DirLock::acquire_existing(dir)?;
    inspect_storage(&FileStorage, dir)
}

/// [`inspect`] over any storage, without the lock (tests pass a `SimStorage`).
pub(crate) fn inspect_storage<S: Storage>(storage: &S, dir: &Path) -> Result<DirInfo> {
    let recovered = recovery::recover(
        storage,
        dir,
        RecoveryOptions {
            repair: false,
            read_only: true,
        },
    )?;
    let checkpoint_bytes = match recovered.checkpoint_ts {
        Some(ts) => storage
            .len(&dir.join(checkpoint::file_name(ts)))
            .map_err(Error::io)?,
        None => 0,
    };
    Ok(DirInfo {
        checkpoint_ts: recovered.checkpoint_ts,
        checkpoint_bytes,
        log_segments: recovered.segments.len() as u64,
        log_bytes: recovered.segments.iter().map(|s| s.bytes).sum(),
        records_to_replay: recovered.records_replayed,
        keys: recovered.entries.len(),
        visible_ts: recovered.max_ts,
        torn_tail: recovered.torn_tail.map(|t| DroppedTail {
            file: t.file,
            offset: t.offset,
            bytes: t.dropped,
        }),
    })
}
