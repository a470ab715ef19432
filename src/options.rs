//! Database configuration and its builder.

use std::path::PathBuf;

use crate::db::Db;
use crate::durable::engine::DurableOptions;
use crate::durable::policy::SyncPolicy;
use crate::error::{Error, Result};
use crate::isolation::Isolation;

/// Default limit on key length: 64 KiB.
pub const DEFAULT_MAX_KEY_LEN: usize = 64 * 1024;
/// Default limit on value length: 64 MiB.
pub const DEFAULT_MAX_VALUE_LEN: usize = 64 * 1024 * 1024;
/// Default limit on a transaction's write set: 256 MiB, counted as the sum of its written
/// keys' and values' lengths (see [`DbBuilder::max_write_set_bytes`]).
pub const DEFAULT_MAX_WRITE_SET_BYTES: usize = 256 * 1024 * 1024;
/// Default size of the log past which a durable database checkpoints itself: 64 MiB (see
/// [`DbBuilder::checkpoint_log_bytes`]).
pub const DEFAULT_CHECKPOINT_LOG_BYTES: u64 = 64 << 20;
/// Default number of attempts [`Db::update`] makes before giving up on conflicts.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 32;

/// Validated configuration of a [`Db`].
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) max_key_len: usize,
    pub(crate) max_value_len: usize,
    pub(crate) max_write_set_bytes: usize,
    pub(crate) max_attempts: u32,
    pub(crate) isolation: Isolation,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_key_len: DEFAULT_MAX_KEY_LEN,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            max_write_set_bytes: DEFAULT_MAX_WRITE_SET_BYTES,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            isolation: Isolation::default(),
        }
    }
}

/// Configures and creates a [`Db`].
///
/// ```
/// use snapkv::Db;
///
/// let db = Db::builder()
///     .max_key_len(1024)
///     .max_value_len(1 << 20)
///     .max_attempts(10)
///     .build()?;
/// assert!(db.put(vec![0u8; 1025], b"v").is_err());
/// # Ok::<(), snapkv::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct DbBuilder {
    opts: Options,
    /// The directory of a durable database; `None`: in memory.
    path: Option<PathBuf>,
    durable: DurableOptions,
}

impl DbBuilder {
    /// Longest accepted key in bytes (default [`DEFAULT_MAX_KEY_LEN`]); at least 1.
    pub fn max_key_len(mut self, len: usize) -> Self {
        self.opts.max_key_len = len;
        self
    }

    /// Longest accepted value in bytes (default [`DEFAULT_MAX_VALUE_LEN`]).
    pub fn max_value_len(mut self, len: usize) -> Self {
        self.opts.max_value_len = len;
        self
    }

    /// Largest write set a transaction may buffer, in bytes (default
    /// [`DEFAULT_MAX_WRITE_SET_BYTES`]); at least 1. A write set counts the lengths of its
    /// keys and values (a delete counts its key; a key written twice counts its last write):
    /// the payload, so that a caller can predict it. Its heap is larger by a few dozen bytes
    /// per key (the version node's header and the sorted map's entry), and a commit takes
    /// about as much again while it installs. A [`Transaction`](crate::Transaction)'s `put`,
    /// `delete` or `compare_and_swap` that would go over it fails with
    /// [`Error::WriteSetTooLarge`] and buffers nothing; the transaction stays usable. One
    /// bound in bytes rather than a key count too: every write costs at least its key's
    /// byte, and a count would not bound a set of large values. Writes outside transactions
    /// ([`Db::put`] and the like) write one key and are bounded by `max_value_len` alone.
    ///
    /// ```
    /// use snapkv::{Db, Error};
    ///
    /// let db = Db::builder().max_write_set_bytes(1024).build()?;
    /// let mut txn = db.begin();
    /// txn.put(b"a", [0u8; 1000])?;
    /// let err = txn.put(b"b", [0u8; 100]).unwrap_err();
    /// assert!(matches!(err, Error::WriteSetTooLarge { bytes: 1102, max: 1024 }));
    /// txn.commit()?; // with `a` alone
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn max_write_set_bytes(mut self, bytes: usize) -> Self {
        self.opts.max_write_set_bytes = bytes;
        self
    }

    /// How many times [`Db::update`] runs its closure before reporting
    /// [`Error::RetriesExhausted`] (default [`DEFAULT_MAX_ATTEMPTS`]); at least 1.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.opts.max_attempts = attempts;
        self
    }

    /// The isolation level of [`Db::begin`] and [`Db::update`] (default
    /// [`Isolation::Snapshot`]); [`Db::begin_with`] and [`Db::update_with`] choose per
    /// transaction.
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.opts.isolation = isolation;
        self
    }

    /// Keeps the database in directory `dir` (created if missing), as [`Db::open`] does;
    /// without it the database lives in memory only.
    pub fn path(mut self, dir: impl Into<PathBuf>) -> Self {
        self.path = Some(dir.into());
        self
    }

    /// When a durable database's log syncs (default [`SyncPolicy::Always`]: a commit
    /// returns once its record is on the disk). Ignored in memory. `build` refuses a
    /// [`SyncPolicy::Periodic`] interval of zero.
    pub fn sync(mut self, policy: SyncPolicy) -> Self {
        self.durable.sync = policy;
        self
    }

    /// Opens a durable database whose log is damaged where it had been synced (which is
    /// otherwise refused with [`Error::Corruption`]) by cutting the log there: the damaged
    /// segment is truncated at the damage and every later one removed. What was dropped is
    /// in [`RecoveryReport::repaired`](crate::RecoveryReport::repaired); commits in it are
    /// lost. Default `false`. A damaged checkpoint is never repaired (the log it summarized
    /// may be gone): it stays an error.
    pub fn repair(mut self, repair: bool) -> Self {
        self.durable.repair = repair;
        self
    }

    /// Takes a checkpoint in the background (see [`Db::checkpoint`]) once the log a reopen
    /// would read holds this many bytes (default [`DEFAULT_CHECKPOINT_LOG_BYTES`];
    /// `u64::MAX`: never, only explicit checkpoints), or half the last checkpoint's size if
    /// that is more (a checkpoint rewrites the whole store: a big one is not rewritten for
    /// every few megabytes of log). Keeps reopening proportional to the data, not to its
    /// history. Ignored in memory.
    pub fn checkpoint_log_bytes(mut self, bytes: u64) -> Self {
        self.durable.checkpoint_log_bytes = bytes;
        self
    }

    /// Creates the database (opens and recovers its directory, for a durable one), or
    /// reports the first invalid option.
    ///
    /// A durable database's files record lengths in 32 bits: its `max_key_len`,
    /// `max_value_len` and `max_write_set_bytes` must be below 4 GiB.
    pub fn build(self) -> Result<Db> {
        if self.opts.max_key_len == 0 {
            return Err(Error::InvalidConfig("max_key_len must be at least 1"));
        }
        if self.opts.max_write_set_bytes == 0 {
            return Err(Error::InvalidConfig(
                "max_write_set_bytes must be at least 1",
            ));
        }
        if self.opts.max_attempts == 0 {
            return Err(Error::InvalidConfig("max_attempts must be at least 1"));
        }
        let Some(dir) = self.path else {
            return Ok(Db::with_options(self.opts));
        };
        if self.durable.sync == SyncPolicy::Periodic(std::time::Duration::ZERO) {
            return Err(Error::InvalidConfig(
                "a periodic sync needs an interval above zero",
            ));
        }
        let below_4_gib = |n: usize| u64::try_from(n).is_ok_and(|n| n <= u64::from(u32::MAX));
        if !below_4_gib(self.opts.max_key_len) {
            return Err(Error::InvalidConfig(
                "max_key_len must be below 4 GiB for a durable database",
            ));
        }
        if !below_4_gib(self.opts.max_value_len) {
            return Err(Error::InvalidConfig(
                "max_value_len must be below 4 GiB for a durable database",
            ));
        }
        if !below_4_gib(self.opts.max_write_set_bytes) {
            return Err(Error::InvalidConfig(
                "max_write_set_bytes must be below 4 GiB for a durable database",
            ));
        }
        Db::open_dir(self.opts, &dir, self.durable)
    }
}
