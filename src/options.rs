//! Database configuration and its builder.

use crate::db::Db;
use crate::error::{Error, Result};
use crate::isolation::Isolation;

/// Default limit on key length: 64 KiB.
pub const DEFAULT_MAX_KEY_LEN: usize = 64 * 1024;
/// Default limit on value length: 64 MiB.
pub const DEFAULT_MAX_VALUE_LEN: usize = 64 * 1024 * 1024;
/// Default number of attempts [`Db::update`] makes before giving up on conflicts.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 32;

/// Validated configuration of a [`Db`].
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) max_key_len: usize,
    pub(crate) max_value_len: usize,
    pub(crate) max_attempts: u32,
    pub(crate) isolation: Isolation,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_key_len: DEFAULT_MAX_KEY_LEN,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
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

    /// Creates the database, or reports the first invalid option.
    pub fn build(self) -> Result<Db> {
        if self.opts.max_key_len == 0 {
            return Err(Error::InvalidConfig("max_key_len must be at least 1"));
        }
        if self.opts.max_attempts == 0 {
            return Err(Error::InvalidConfig("max_attempts must be at least 1"));
        }
        Ok(Db::with_options(self.opts))
    }
}
