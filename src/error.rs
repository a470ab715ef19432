//! The crate's one error type.

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

/// Why a commit lost against a concurrent transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConflictKind {
    /// Another transaction committed a version of a key this transaction writes after this
    /// transaction's snapshot (first-committer-wins).
    WriteWrite,
    /// A serializable transaction read a key (present or absent) that another transaction
    /// wrote after this transaction's snapshot, or scanned a range in which an existing key
    /// changed.
    ReadWrite,
    /// A serializable transaction scanned a range into which another transaction inserted a
    /// key after this transaction's snapshot.
    Phantom,
}

impl std::fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConflictKind::WriteWrite => f.write_str("write-write"),
            ConflictKind::ReadWrite => f.write_str("read-write"),
            ConflictKind::Phantom => f.write_str("phantom"),
        }
    }
}

/// Everything that can go wrong in snapkv.
///
/// Conflicts are distinguishable from real failures: [`Error::is_retryable`] is `true` exactly
/// for errors that a fresh attempt of the same transaction may not hit.
///
/// ```
/// use snapkv::{Db, Error};
///
/// let db = Db::new();
/// let mut t1 = db.begin();
/// let mut t2 = db.begin();
/// t1.put(b"k", b"1")?;
/// t2.put(b"k", b"2")?;
/// t1.commit()?;
/// let err = t2.commit().unwrap_err();
/// assert!(err.is_retryable());
/// assert!(matches!(err, Error::Conflict { .. }));
/// # Ok::<(), snapkv::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A concurrent transaction committed first; nothing of this transaction was installed.
    /// Retrying the whole transaction (on a fresh snapshot) may succeed.
    Conflict {
        /// The key the conflict was detected on.
        key: Bytes,
        /// What kind of conflict it was.
        kind: ConflictKind,
        /// For a conflict found in a scanned range: that range, as it was requested.
        range: Option<Box<(Bound<Bytes>, Bound<Bytes>)>>,
    },
    /// A conditional write found a different version than expected. Not a conflict: retrying
    /// the same condition fails again; re-read and decide.
    PreconditionFailed {
        /// The key whose version did not match.
        key: Bytes,
        /// Its current version (commit timestamp), `None` if absent.
        current: Option<u64>,
    },
    /// Keys must not be empty.
    EmptyKey,
    /// The key is longer than the database's `max_key_len`.
    KeyTooLarge {
        /// Length of the rejected key.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The value is longer than the database's `max_value_len`.
    ValueTooLarge {
        /// Length of the rejected value.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A transaction's write set would exceed the database's `max_write_set_bytes` with this
    /// write (counted as its keys' and values' lengths); the write was not buffered and the
    /// transaction is as it was before it. Not retryable: the same writes exceed it again.
    WriteSetTooLarge {
        /// Bytes the write set would count with the rejected write.
        bytes: usize,
        /// The configured limit.
        max: usize,
    },
    /// A builder option is out of range.
    InvalidConfig(&'static str),
    /// [`Db::update`](crate::Db::update) ran out of attempts; `last` is the final conflict.
    RetriesExhausted {
        /// How many times the closure ran.
        attempts: u32,
        /// The conflict that ended the last attempt.
        last: Box<Error>,
    },
    /// The caller's transaction closure chose to abort with its own error, boxed
    /// ([`Db::try_update`](crate::Db::try_update) returns a closure's error as it is instead).
    Aborted(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Reading or writing a database file failed. Not retryable: the same operation on the
    /// same files is expected to fail again. The cause is shared (`Arc`) because one failure
    /// can end several callers' operations at once (every commit of a failed log write).
    Io(Arc<std::io::Error>),
    /// A file holds data that was once written and made durable but now does not read back
    /// as written: a bad checksum or an impossible field below the point the file was known
    /// to be synced, or a damaged header. Never the cut-off tail of a crash (that is truncated
    /// and reported, not an error). Nothing is dropped silently: the file is left as it is.
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset in `file` of the damaged header or frame.
        offset: u64,
        /// What did not check out.
        what: String,
    },
    /// An earlier write or sync of the log failed, so the log refuses every later write:
    /// after a failed sync the operating system may have dropped the unsynced data while
    /// reporting later syncs as successful, so carrying on could lose acknowledged commits
    /// silently. Reads keep working. Not retryable; reopening the database recovers from
    /// what is on disk.
    Poisoned {
        /// The failure that poisoned the log.
        cause: Arc<std::io::Error>,
    },
    /// A commit's record may have reached the disk before its write or sync failed: the
    /// commit was not acknowledged and is not visible, but it may reappear after the
    /// database is reopened. It is neither committed nor aborted, so it is **not
    /// retryable** (a blind retry could apply it twice) and
    /// [`Db::update`](crate::Db::update) never retries it: reopen, read, and decide.
    CommitOutcomeUnknown {
        /// The failure after which the outcome cannot be known.
        cause: Arc<std::io::Error>,
    },
    /// The database was closed ([`Db::close`](crate::Db::close)) through another handle: it
    /// refuses writes (reads of what it holds keep working). Not retryable.
    Closed,
    /// The database directory is open already, in this process or another (its `LOCK` file
    /// is locked). Not retryable while that database stays open.
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A backup's destination exists and is not an empty directory: a backup never writes
    /// over or beside other files.
    DestinationNotEmpty {
        /// The destination given.
        path: PathBuf,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Conflict { key, kind, range } => {
                write!(f, "{kind} conflict on key {key:?}")?;
                if let Some(r) = range {
                    write!(f, " in scanned range {r:?}")?;
                }
                Ok(())
            }
            Error::PreconditionFailed { key, current } => write!(
                f,
                "precondition failed on key {key:?}: current version is {current:?}"
            ),
            Error::EmptyKey => f.write_str("key is empty"),
            Error::KeyTooLarge { len, max } => {
                write!(f, "key of {len} bytes exceeds the limit of {max} bytes")
            }
            Error::ValueTooLarge { len, max } => {
                write!(f, "value of {len} bytes exceeds the limit of {max} bytes")
            }
            Error::WriteSetTooLarge { bytes, max } => write!(
                f,
                "transaction write set of {bytes} bytes exceeds the limit of {max} bytes"
            ),
            Error::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            Error::RetriesExhausted { attempts, .. } => {
                write!(f, "transaction still conflicted after {attempts} attempts")
            }
            Error::Aborted(e) => write!(f, "transaction aborted by the caller: {e}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Corruption { file, offset, what } => write!(
                f,
                "corruption in {} at byte {offset}: {what}",
                file.display()
            ),
            Error::Poisoned { cause } => write!(
                f,
                "the log refuses writes after an earlier failure: {cause}"
            ),
            Error::CommitOutcomeUnknown { cause } => write!(
                f,
                "commit outcome unknown (it may reappear after reopening): {cause}"
            ),
            Error::Closed => f.write_str("the database is closed"),
            Error::Locked { path } => write!(
                f,
                "the database directory {} is open already (its LOCK file is locked)",
                path.display()
            ),
            Error::DestinationNotEmpty { path } => {
                write!(f, "{} exists and is not an empty directory", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    /// The last conflict for [`Error::RetriesExhausted`] (as an `Error`, so callers can
    /// `downcast_ref::<snapkv::Error>()` it), the caller's error for [`Error::Aborted`].
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::RetriesExhausted { last, .. } => Some(&**last),
            Error::Aborted(e) => Some(&**e),
            Error::Io(e) => Some(&**e),
            Error::Poisoned { cause } | Error::CommitOutcomeUnknown { cause } => Some(&**cause),
            _ => None,
        }
    }
}

impl Error {
    /// Whether retrying the transaction from the start may succeed: `true` for conflicts only.
    ///
    /// [`Error::RetriesExhausted`] is not retryable: the retry helper already gave up.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// An I/O failure as an [`Error::Io`]. Not a `From` impl: an application's own I/O error
    /// inside a transaction closure is an abort ([`Error::abort`]), not a database failure.
    pub(crate) fn io(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }

    /// Wraps an application error to abort a transaction closure with it.
    ///
    /// ```
    /// use snapkv::{Db, Error};
    ///
    /// let db = Db::new();
    /// let res: Result<(), Error> = db.update(|txn| {
    ///     txn.put(b"k", b"v")?;
    ///     Err(Error::abort(std::io::Error::other("changed my mind")))
    /// });
    /// assert!(matches!(res, Err(Error::Aborted(_))));
    /// assert_eq!(db.get(b"k")?, None); // nothing was written
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn abort(err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Error::Aborted(err.into())
    }
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_failures_are_not_retryable_and_keep_their_cause() {
        let cause = || Arc::new(std::io::Error::other("disk on fire"));
        let errors = [
            Error::Io(cause()),
            Error::Corruption {
                file: PathBuf::from("/db/00000000000000000001.log"),
                offset: 4096,
                what: "frame checksum mismatch".into(),
            },
            Error::Poisoned { cause: cause() },
            Error::CommitOutcomeUnknown { cause: cause() },
            Error::Closed,
            Error::Locked {
                path: PathBuf::from("/db"),
            },
        ];
        for e in &errors {
            assert!(!e.is_retryable(), "{e:?}");
        }
        use std::error::Error as _;
        for e in [&errors[0], &errors[2], &errors[3]] {
            assert_eq!(e.source().unwrap().to_string(), "disk on fire");
            assert!(e.to_string().contains("disk on fire"));
        }
        let shown = errors[1].to_string();
        assert!(
            shown.contains("00000000000000000001.log") && shown.contains("4096"),
            "{shown}"
        );
        assert!(errors[3].to_string().contains("unknown"));
        // Errors cross threads (a group-commit leader hands one failure to every follower).
        fn send_sync<T: Send + Sync>(_: &T) {}
        send_sync(&errors[0]);
    }
}
