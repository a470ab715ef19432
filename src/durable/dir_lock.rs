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
        Self::lock(dir, file)
    }

    /// Locks the existing directory `dir` to read it, changing nothing in it that a database
    /// opened there would not have made already: the `LOCK` file is opened read-only, and
    /// created (empty) only in a directory that was never opened (a backup).
    /// [`Error::Locked`] if it is locked; an I/O error if `dir` is not a directory.
    pub(crate) fn acquire_existing(dir: &Path) -> Result<Self> {
        if !std::fs::metadata(dir).map_err(Error::io)?.is_dir() {
            return Err(Error::io(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            )));
        }
        let path: PathBuf = dir.join(LOCK_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::acquire(dir),
            Err(e) => return Err(Error::io(e)),
        };
        Self::lock(dir, file)
    }

    fn lock(dir: &Path, file: std::fs::File) -> Result<Self> {
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Self { _file: file }),
            Err(fs4::TryLockError::WouldBlock) => Err(Error::Locked {
                path: dir.to_path_buf(),
            }),
            Err(fs4::TryLockError::Error(e)) => Err(Error::io(e)),
        }
    }
}
