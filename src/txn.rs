//! Transactions: snapshot isolation, or serializable with read-set and range validation.

use std::cell::RefCell;
use std::ops::ControlFlow;

use bytes::Bytes;

use crate::bounds::KeyBounds;
use crate::commit::{Checks, ReadSet};
use crate::db::{Db, Ts};
use crate::error::{Error, Result};
use crate::isolation::Isolation;
use crate::iter::{borrowed_range, is_empty_range, owned_range, prefix_range, TxnIter};
use crate::key::{borrow_range, KeyRange, MapKey};
use crate::snapshot::Snapshot;
use crate::write_set::{OwnRange, WriteSet};

/// A read-write transaction.
///
/// It reads from the snapshot taken at [`Db::begin`] plus its own writes (in point reads and
/// in scans), buffers its writes, and installs them atomically at [`commit`](Self::commit)
/// under one commit timestamp. Commit fails with a retryable
/// [`Error::Conflict`](crate::Error::Conflict), installing nothing, if another transaction
/// committed after this one's snapshot a write to a key this one writes (both levels), or —
/// under [`Isolation::Serializable`] — to a key this one read or into a range it scanned.
/// Dropping a transaction without committing aborts it.
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
    isolation: Isolation,
    /// Buffered writes, sorted by key: the commit locks them in this order.
    writes: WriteSet,
    /// Serializable only: what to validate at commit. A `RefCell` so that reads take `&self`
    /// and a scan can stay open while other reads happen.
    reads: RefCell<ReadSet>,
}

impl Transaction {
    pub(crate) fn new(snapshot: Snapshot, isolation: Isolation) -> Self {
        Self {
            snapshot,
            isolation,
            writes: WriteSet::default(),
            reads: RefCell::new(ReadSet::default()),
        }
    }

    /// The timestamp of the snapshot this transaction reads from.
    pub fn snapshot_ts(&self) -> Ts {
        self.snapshot.ts()
    }

    /// The snapshot this transaction reads from. Reads through it ignore the transaction's own
    /// writes and are never validated (untracked), also under serializable isolation.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The isolation level of this transaction.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// The database this transaction belongs to.
    pub fn db(&self) -> &Db {
        self.snapshot.db()
    }

    fn tracking(&self) -> bool {
        self.isolation == Isolation::Serializable
    }

    /// The value of `key`: this transaction's own write if it made one, else the snapshot's.
    /// Under serializable isolation the key enters the read set (present or absent).
    ///
    /// It reads like [`get_with`](Self::get_with) and costs one copy of the value more.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.get_with(key, Bytes::copy_from_slice)
    }

    /// Like [`get`](Self::get) (read set included), but *lends* the value to `f` instead of
    /// returning an owned [`Bytes`]: see [`Snapshot::get_with`].
    ///
    /// ```
    /// use snapkv::Db;
    ///
    /// let db = Db::new();
    /// db.put(b"stock", 3u32.to_le_bytes())?;
    /// let mut txn = db.begin();
    /// let left = txn.get_with(b"stock", |v| u32::from_le_bytes(v.try_into().unwrap()))?;
    /// txn.put(b"stock", (left.unwrap_or(0) - 1).to_le_bytes())?;
    /// txn.commit()?;
    /// assert_eq!(db.get(b"stock")?.as_deref(), Some(&2u32.to_le_bytes()[..]));
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    #[inline]
    pub fn get_with<R>(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>> {
        let key = key.as_ref();
        self.db().check_key(key)?;
        self.track(key);
        Ok(match self.writes.get(key) {
            Some(own) => own.map(f),
            None => self.snapshot.lend(key, f),
        })
    }

    /// Adds `key` to the read set if this transaction validates reads and has not written it.
    #[inline]
    fn track(&self, key: &[u8]) {
        if self.tracking() && !self.writes.contains_key(key) {
            self.reads.borrow_mut().keys.push(MapKey::from_slice(key));
        }
    }

    /// Like [`get`](Self::get), but the read never enters the read set, so a concurrent write
    /// to `key` cannot make this transaction abort. For callers who know the read need not be
    /// validated (a hint, a cache, a value re-checked by a conditional write).
    pub fn get_untracked(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        self.db().check_key(key)?;
        Ok(match self.writes.get(key) {
            Some(own) => own.map(Bytes::copy_from_slice),
            None => self.snapshot.read(key),
        })
    }

    /// Buffers `key = value`; visible to this transaction now, to others after commit.
    ///
    /// The value is copied once, into the version the commit will install. Fails with
    /// [`Error::WriteSetTooLarge`], buffering nothing, if the transaction's writes would then
    /// exceed the database's [`max_write_set_bytes`](crate::DbBuilder::max_write_set_bytes).
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let key = self.db().checked_map_key(key.as_ref())?;
        let value = value.as_ref();
        self.db().check_value(value)?;
        self.buffer(key, Some(value))
    }

    /// Buffers a delete of `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> Result<()> {
        let key = self.db().checked_map_key(key.as_ref())?;
        self.buffer(key, None)
    }

    /// Buffers a write (`None`: a delete) unless the write set would outgrow the database's
    /// `max_write_set_bytes`: then fails with [`Error::WriteSetTooLarge`] and buffers nothing
    /// (an earlier write of `key` stays).
    fn buffer(&mut self, key: MapKey, value: Option<&[u8]>) -> Result<()> {
        let max = self.db().max_write_set_bytes();
        self.writes
            .insert(key, value, max)
            .map_err(|bytes| Error::WriteSetTooLarge { bytes, max })
    }

    /// Buffers a write of `new` (`None` deletes) if `key`'s committed version in this
    /// transaction's snapshot equals `expected` (`None`: absent); otherwise returns
    /// [`Error::PreconditionFailed`] with the snapshot's version and buffers nothing. The
    /// version must still be current at commit: a newer committed version of `key` makes the
    /// commit fail with a conflict (first committer wins), at every isolation level. Own
    /// earlier writes do not change the version compared against.
    ///
    /// ```
    /// use snapkv::{Db, Error};
    ///
    /// let db = Db::new();
    /// let v = db.put(b"k", b"1")?;
    /// let mut txn = db.begin();
    /// assert!(matches!(
    ///     txn.compare_and_swap(b"k", Some(v + 100), Some(b"x")),
    ///     Err(Error::PreconditionFailed { current: Some(c), .. }) if c == v
    /// ));
    /// txn.compare_and_swap(b"k", Some(v), Some(b"2"))?;
    /// txn.commit()?;
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn compare_and_swap<V: AsRef<[u8]>>(
        &mut self,
        key: impl AsRef<[u8]>,
        expected: Option<Ts>,
        new: Option<V>,
    ) -> Result<()> {
        let key = key.as_ref();
        self.db().check_key(key)?;
        let value = self
            .db()
            .checked_new_value(new.as_ref().map(AsRef::as_ref))?;
        let current = self.snapshot.read_versioned(key).map(|(_, ts)| ts);
        if current != expected {
            return Err(Error::PreconditionFailed {
                key: Bytes::copy_from_slice(key),
                current,
            });
        }
        self.buffer(MapKey::from_slice(key), value)
    }

    /// The live pairs in `range` as this transaction sees them, in key order (`.rev()` for
    /// descending). See [`Snapshot::range`] for the bounds. Under serializable isolation the
    /// whole requested range enters the read set, however much of it is consumed: a commit by
    /// another transaction into it fails this one's commit (no phantoms).
    pub fn range(&self, range: impl KeyBounds) -> TxnIter<'_> {
        self.iter_range(owned_range(&range))
    }

    /// The live pairs whose keys start with `prefix` as this transaction sees them (tracked
    /// like [`range`](Self::range)).
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> TxnIter<'_> {
        self.iter_range(prefix_range(prefix.as_ref()))
    }

    fn iter_range(&self, range: KeyRange) -> TxnIter<'_> {
        let empty = is_empty_range(&range);
        if self.tracking() && !empty {
            self.reads.borrow_mut().ranges.push(range.clone());
        }
        let own = (!empty).then(|| self.writes.range(borrow_range(&range)));
        TxnIter::new(self.snapshot.iter_range(range), own)
    }

    /// Calls `f` with each live pair in `range` as this transaction sees them (its snapshot
    /// with its own writes laid over it), in key order, *lending* them: see
    /// [`Snapshot::scan_with`]. Tracked like [`range`](Self::range): under serializable
    /// isolation the whole requested range enters the read set, wherever `f` stops. Returns
    /// how many pairs `f` saw.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use snapkv::Db;
    ///
    /// let db = Db::new();
    /// db.put("item/a", "1")?;
    /// db.put("item/b", "2")?;
    /// let mut txn = db.begin();
    /// txn.delete("item/a")?;
    /// txn.put("item/c", "3")?;
    /// let mut seen = Vec::new();
    /// txn.scan_with("item/"..="item/z", |k, v| {
    ///     seen.push((k.to_vec(), v.to_vec()));
    ///     ControlFlow::Continue(())
    /// });
    /// assert_eq!(seen, [(b"item/b".to_vec(), b"2".to_vec()), (b"item/c".to_vec(), b"3".to_vec())]);
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn scan_with(
        &self,
        range: impl KeyBounds,
        f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> usize {
        self.scan_with_limit(range, usize::MAX, f)
    }

    /// Like [`scan_with`](Self::scan_with), but lends at most `limit` pairs (see
    /// [`Snapshot::scan_with_limit`]). The read set gets the whole requested range, as with
    /// `scan_with`.
    pub fn scan_with_limit(
        &self,
        range: impl KeyBounds,
        limit: usize,
        mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> usize {
        let bounds = borrowed_range(&range);
        if is_empty_range(&bounds) {
            return 0;
        }
        if self.tracking() {
            self.reads.borrow_mut().ranges.push(owned_range(&range));
        }
        let mut own = self.writes.range(bounds).peekable();
        if own.peek().is_none() {
            // No own write in the range: the snapshot's scan as it is.
            return self.snapshot.scan_with_limit(bounds, limit, f);
        }
        if limit == 0 {
            return 0;
        }
        let mut lent = 0;
        // Lends one pair; breaks once `f` did or `limit` pairs were lent.
        let mut lend = |key: &[u8], value: &[u8]| {
            lent += 1;
            let flow = f(key, value);
            if lent == limit {
                ControlFlow::Break(())
            } else {
                flow
            }
        };
        let mut broken = false;
        // Own deletes may hide snapshot pairs, so the snapshot's scan is not limited.
        self.snapshot.scan_with(bounds, |key, value| {
            let flow = merge_own(&mut own, key, value, &mut lend);
            broken = flow.is_break();
            flow
        });
        if !broken {
            for (key, value) in own {
                if let Some(value) = value {
                    if lend(key, value).is_break() {
                        break;
                    }
                }
            }
        }
        lent
    }

    /// Whether the transaction has buffered no writes.
    pub fn is_read_only(&self) -> bool {
        self.writes.is_empty()
    }

    /// Validates and installs the buffered writes atomically; returns the commit timestamp
    /// (for a transaction without writes, its snapshot timestamp: read-only transactions never
    /// fail and cost no validation). Once it returns, every snapshot taken afterwards, on any
    /// thread, sees the writes.
    ///
    /// Fails with a retryable [`Error::Conflict`](crate::Error::Conflict) — and installs
    /// nothing — if another transaction committed after this one's snapshot a write to a key
    /// this one writes, or (serializable) to a key it read or into a range it scanned.
    pub fn commit(self) -> Result<Ts> {
        if self.writes.is_empty() {
            return Ok(self.snapshot.ts());
        }
        let reads = self.reads.into_inner();
        let checks = Checks {
            snapshot: Some(self.snapshot.ts()),
            reads: (self.isolation == Isolation::Serializable && !reads.is_empty())
                .then_some(&reads),
            expect: None,
        };
        let own = self.snapshot.slot();
        let db = self.snapshot.db();
        self.writes
            .commit_with(|writes| db.commit_writes(writes, checks, own))
    }

    /// The first key this transaction writes for which `pred` holds.
    pub(crate) fn find_written_key(&self, pred: impl FnMut(&[u8]) -> bool) -> Option<&[u8]> {
        self.writes.find_key(pred)
    }

    /// Discards the buffered writes (what dropping the transaction does too).
    pub fn rollback(self) {}
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("snapshot_ts", &self.snapshot.ts())
            .field("isolation", &self.isolation)
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

/// Lends the snapshot's pair `(key, value)` merged with a transaction's own writes `own` (in
/// key order): first every own put before `key`, then `key`'s own write if there is one (a
/// delete hides the pair), else the snapshot's pair. Stops at the first `lend` that breaks.
fn merge_own<'a>(
    own: &mut std::iter::Peekable<OwnRange<'a>>,
    key: &[u8],
    value: &[u8],
    lend: &mut impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) -> ControlFlow<()> {
    while let Some(&(own_key, own_value)) = own.peek() {
        match own_key[..].cmp(key) {
            std::cmp::Ordering::Less => {
                own.next();
                if let Some(v) = own_value {
                    lend(own_key, v)?;
                }
            }
            std::cmp::Ordering::Equal => {
                own.next();
                return match own_value {
                    Some(v) => lend(own_key, v),
                    None => ControlFlow::Continue(()),
                };
            }
            std::cmp::Ordering::Greater => break,
        }
    }
    lend(key, value)
}
