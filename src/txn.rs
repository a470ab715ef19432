//! Snapshot-isolation transactions.

use std::collections::BTreeMap;
use std::ops::RangeBounds;

use bytes::Bytes;

use crate::db::{Db, Ts};
use crate::error::Result;
use crate::iter::{is_empty_range, owned_range, prefix_range, TxnIter};
use crate::snapshot::Snapshot;
use crate::store::KeyRange;

/// A read-write transaction under snapshot isolation.
///
/// It reads from the snapshot taken at [`Db::begin`] plus its own writes (in point reads and
/// in scans), buffers its writes, and installs them atomically at [`commit`](Self::commit)
/// under one commit timestamp, unless another transaction committed a write to one of the
/// same keys after this transaction's snapshot (first committer wins): then commit returns a
/// retryable [`Error::Conflict`](crate::Error::Conflict) and installs nothing. Dropping a
/// transaction without committing aborts it.
///
/// ```
/// use snapkv::Db;
///
/// let db = Db::new();
/// db.put(b"a", b"1")?;
/// let mut txn = db.begin();
/// txn.put(b"b", b"2")?;
/// txn.delete(b"a")?;
/// // Own writes are visible inside the transaction, not outside it.
/// assert_eq!(txn.get(b"a")?, None);
/// let keys: Vec<_> = txn.range(..).map(|(k, _)| k).collect();
/// assert_eq!(keys, [&b"b"[..]]);
/// assert_eq!(db.get(b"a")?.as_deref(), Some(&b"1"[..]));
/// let ts = txn.commit()?;
/// assert_eq!(db.snapshot().ts(), ts);
/// assert_eq!(db.get(b"a")?, None);
/// # Ok::<(), snapkv::Error>(())
/// ```
pub struct Transaction {
    snapshot: Snapshot,
    /// Buffered writes, sorted by key: the commit locks them in this order.
    writes: BTreeMap<Bytes, Option<Bytes>>,
}

impl Transaction {
    pub(crate) fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot,
            writes: BTreeMap::new(),
        }
    }

    /// The timestamp of the snapshot this transaction reads from.
    pub fn snapshot_ts(&self) -> Ts {
        self.snapshot.ts()
    }

    /// The database this transaction belongs to.
    pub fn db(&self) -> &Db {
        self.snapshot.db()
    }

    /// The value of `key`: this transaction's own write if it made one, else the snapshot's.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        self.db().check_key(key)?;
        Ok(match self.writes.get(key) {
            Some(own) => own.clone(),
            None => self.snapshot.read(key),
        })
    }

    /// Buffers `key = value`; visible to this transaction now, to others after commit.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let key = self.db().checked_key(key.as_ref())?;
        let value = self.db().checked_value(value.as_ref())?;
        self.writes.insert(key, Some(value));
        Ok(())
    }

    /// Buffers a delete of `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> Result<()> {
        let key = self.db().checked_key(key.as_ref())?;
        self.writes.insert(key, None);
        Ok(())
    }

    /// The live pairs in `range` as this transaction sees them, in key order (`.rev()` for
    /// descending). See [`Snapshot::range`] for the bounds.
    pub fn range<'k>(&self, range: impl RangeBounds<&'k [u8]>) -> TxnIter<'_> {
        self.iter_range(owned_range(range))
    }

    /// The live pairs whose keys start with `prefix` as this transaction sees them.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> TxnIter<'_> {
        self.iter_range(prefix_range(prefix.as_ref()))
    }

    fn iter_range(&self, range: KeyRange) -> TxnIter<'_> {
        let own = (!is_empty_range(&range)).then(|| self.writes.range(range.clone()));
        TxnIter::new(self.snapshot.iter_range(range), own)
    }

    /// Whether the transaction has buffered no writes.
    pub fn is_read_only(&self) -> bool {
        self.writes.is_empty()
    }

    /// Validates and installs the buffered writes atomically; returns the commit timestamp
    /// (for a transaction without writes, its snapshot timestamp). Once it returns, every
    /// snapshot taken afterwards, on any thread, sees the writes.
    ///
    /// Fails with a retryable [`Error::Conflict`](crate::Error::Conflict) if another
    /// transaction committed one of the written keys after this transaction's snapshot; then
    /// nothing was installed.
    pub fn commit(self) -> Result<Ts> {
        if self.writes.is_empty() {
            return Ok(self.snapshot.ts());
        }
        let writes: Vec<_> = self.writes.iter().collect();
        self.db().commit_writes(&writes, Some(self.snapshot.ts()))
    }

    /// Discards the buffered writes (what dropping the transaction does too).
    pub fn rollback(self) {}
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("snapshot_ts", &self.snapshot.ts())
            .field("writes", &self.writes.len())
            .finish()
    }
}
