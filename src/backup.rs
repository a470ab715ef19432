//! Backups: a consistent image of the database, written from a snapshot into a directory of
//! its own while the database keeps serving reads and writes.

use std::io;
use std::path::{Path, PathBuf};

use crate::db::{Db, Ts};
use crate::durable::image;
use crate::durable::storage::{FileStorage, Storage};
use crate::error::{Error, Result};
use crate::snapshot::Snapshot;

/// What [`Db::backup`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// The timestamp of the snapshot the backup holds: every commit at or before it, and
    /// none after.
    pub ts: Ts,
    /// The live keys in the backup.
    pub keys: u64,
    /// The bytes of the checkpoint file written.
    pub bytes: u64,
    /// The checkpoint file, inside the destination directory.
    pub file: PathBuf,
}

impl Db {
    /// Writes a consistent image of the database, as a snapshot taken now sees it, into the
    /// new directory `dest`, while the database keeps serving reads and writes.
    ///
    /// `dest` must not exist (it is created, readable by the owner only) or must be an empty
    /// directory; anything else is [`Error::DestinationNotEmpty`]. The image is one
    /// checkpoint file, written, synced and installed atomically; when this returns `Ok` it
    /// and `dest`'s name are durable. An error leaves no checkpoint under its name (a
    /// temporary file may be left behind in `dest`).
    ///
    /// This works on an in-memory database too: the backup of a [`Db::new`] database is a
    /// directory that `Db::open` can open later, restoring every key with its value and its
    /// version ([`get_versioned`](Db::get_versioned)) as of [`BackupReport::ts`].
    ///
    /// Writers never wait for a backup. While it runs, the versions that writers replace are
    /// kept for its snapshot, and freed when it is done; besides those, a backup holds about
    /// 128 KiB (two checkpoint frames) and its largest key and value, whatever the size of
    /// the database.
    ///
    /// ```
    /// use snapkv::Db;
    ///
    /// let db = Db::new();
    /// db.put(b"user/1", b"ada")?;
    /// let dest = std::env::temp_dir().join(format!("snapkv-doc-backup-{}", std::process::id()));
    /// let report = db.backup(&dest)?;
    /// assert_eq!(report.keys, 1);
    /// // A destination that is not empty is refused.
    /// assert!(matches!(db.backup(&dest), Err(snapkv::Error::DestinationNotEmpty { .. })));
    /// # std::fs::remove_dir_all(&dest).unwrap();
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        backup_snapshot(&FileStorage, dest.as_ref(), &self.snapshot())
    }
}

/// Writes the backup of `snapshot` into `dest` on `storage` (see [`Db::backup`]).
pub(crate) fn backup_snapshot<S: Storage>(
    storage: &S,
    dest: &Path,
    snapshot: &Snapshot,
) -> Result<BackupReport> {
    prepare_destination(storage, dest)?;
    let written = image::write_snapshot(storage, dest, snapshot)?;
    Ok(BackupReport {
        ts: snapshot.ts(),
        keys: written.entries,
        bytes: written.bytes,
        file: written.path,
    })
}

/// Creates `dest` and makes its name durable, or accepts it if it is an empty directory.
fn prepare_destination<S: Storage>(storage: &S, dest: &Path) -> Result<()> {
    let not_empty = || Error::DestinationNotEmpty {
        path: dest.to_path_buf(),
    };
    match storage.create_dir(dest) {
        Ok(()) => {}
        // Exists: fine if it is an empty directory (a file there does not list).
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match storage.list(dest) {
            Ok(names) if names.is_empty() => {}
            _ => return Err(not_empty()),
        },
        Err(e) => return Err(Error::io(e)),
    }
    // The directory's name lives in its parent: durable once the parent is synced (an
    // existing one too, which its creator may not have synced).
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    storage.sync_dir(parent).map_err(Error::io)
}

#[cfg(test)]
mod tests;
