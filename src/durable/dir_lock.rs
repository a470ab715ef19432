//! One owner per database directory: an exclusive lock on its `LOCK` file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The name of the lock file in a database directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Holds the directory's lock until dropped (closing the file releases it).
///
/// An advisory `flock`-style lock on an open file: another `open` of the directory, in this
/// process (a separate open file) or another, fails to take it; a process that dies releases
/// it with its files, so a crash never leaves the directory locked.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Creates `dir` if it is missing and locks it: [`Error::Locked`] if it is locked.
    pub(crate) fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io)?;
        let path: PathBuf = dir.join(LOCK_FILE);
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(Error::io)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Self { _file: file }),
            Err(fs4::TryLockError::WouldBlock) => Err(Error::Locked {
                path: dir.to_path_buf(),
            }),
            Err(fs4::TryLockError::Error(e)) => Err(Error::io(e)),
        }
    }
}
