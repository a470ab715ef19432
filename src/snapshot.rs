//! Read-only snapshots.

use std::ops::ControlFlow;

use bytes::Bytes;
use crossbeam_epoch::Guard;

use crate::bounds::KeyBounds;
use crate::db::{Db, Ts};
use crate::error::Result;
use crate::iter::{borrowed_range, owned_range, prefix_range, Iter};
use crate::key::{KeyRange, KeyRangeRef};
use crate::raw::Lent;
use crate::registry::SlotId;

/// A consistent, read-only view of the database at one timestamp.
///
/// A snapshot at `ts` sees, for every key, the newest version committed at or before `ts`, and
/// nothing committed later. Taking one is O(1) (no lock, no waiting); it is `Send + Sync`, can
/// be shared between threads, and keeps the versions it can see alive until it is dropped, so
/// drop long-lived snapshots when done.
///
/// ```
/// use snapkv::Db;
///
/// let db = Db::new();
/// db.put(b"user/1", b"ada")?;
/// db.put(b"user/2", b"grace")?;
/// let snap = db.snapshot();
/// db.delete(b"user/1")?;
///
/// // The snapshot still sees both users, in key order, forwards and backwards.
/// let names: Vec<_> = snap.scan_prefix(b"user/").map(|(_, v)| v).collect();
/// assert_eq!(names, [&b"ada"[..], &b"grace"[..]]);
/// let last = snap.range("user/"..).next_back().unwrap();
/// assert_eq!(&last.0[..], b"user/2");
/// assert_eq!(db.snapshot().scan_prefix(b"user/").count(), 1);
/// # Ok::<(), snapkv::Error>(())
/// ```
pub struct Snapshot {
    db: Db,
    ts: Ts,
    slot: Option<SlotId>,
    /// Whether a transaction reads from it (registered with the database's writers).
    writer: bool,
}

impl Snapshot {
    /// A read-only snapshot.
    pub(crate) fn new(db: Db) -> Self {
        Self::register(db, false)
    }

    /// The snapshot of a transaction, which may still write.
    pub(crate) fn for_transaction(db: Db) -> Self {
        Self::register(db, true)
    }

    fn register(db: Db, writer: bool) -> Self {
        let (slot, ts) = Self::registry_of(&db, writer).register(&db.shared.clock);
        Self {
            db,
            ts,
            slot: Some(slot),
            writer,
        }
    }

    fn registry_of(db: &Db, writer: bool) -> &crate::registry::Registry {
        if writer {
            &db.shared.writers
        } else {
            &db.shared.registry
        }
    }

    /// The timestamp this snapshot reads at: it sees exactly the commits with `ts <= self.ts()`.
    pub fn ts(&self) -> Ts {
        self.ts
    }

    /// The database this snapshot reads.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The value of `key` at this snapshot, as an owned copy ([`get_with`](Self::get_with)
    /// lends it instead).
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        self.db.check_key(key)?;
        Ok(self.read(key))
    }

    /// Calls `f` with the value of `key` at this snapshot, *lending* it instead of returning
    /// an owned [`Bytes`]; `None` if the key has no value here.
    ///
    /// The cheapest read: no copy and no reference count touched, so readers on many threads
    /// never write to a shared cache line. `f` runs after every lock is released (it may read and
    /// write the database), but while the thread is pinned for memory reclamation, so keep it
    /// short: a long `f` delays the freeing of old versions meanwhile (never correctness).
    ///
    /// ```
    /// use snapkv::Db;
    ///
    /// let db = Db::new();
    /// db.put(b"counter", 41u64.to_le_bytes())?;
    /// let snap = db.snapshot();
    /// let n = snap.get_with(b"counter", |v| u64::from_le_bytes(v.try_into().unwrap()))?;
    /// assert_eq!(n, Some(41));
    /// assert_eq!(snap.get_with(b"absent", |v| v.len())?, None);
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn get_with<R>(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>> {
        let key = key.as_ref();
        self.db.check_key(key)?;
        Ok(self.lend(key, f))
    }

    /// The value of `key` at this snapshot with its version: the commit timestamp that wrote it.
    pub fn get_versioned(&self, key: impl AsRef<[u8]>) -> Result<Option<(Bytes, Ts)>> {
        let key = key.as_ref();
        self.db.check_key(key)?;
        Ok(self.read_versioned(key))
    }

    /// Whether `key` has a value at this snapshot.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.get_with(key, |_| ())?.is_some())
    }

    /// The live key-value pairs with keys in `range`, in key order (`.rev()` for descending).
    ///
    /// Any standard range of byte-string keys: `snap.range(b"a"..b"m")`, `snap.range("user/"..)`,
    /// `snap.range(..)` (see [`KeyBounds`]). A range whose start lies after its end is empty.
    ///
    /// Each pair is read the way [`scan_with`](Self::scan_with) reads it, then copied: the
    /// iterator costs the lending scan plus the copies of the keys and values it returns.
    pub fn range(&self, range: impl KeyBounds) -> Iter<'_> {
        self.iter_range(owned_range(&range))
    }

    /// The live key-value pairs whose keys start with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter<'_> {
        self.iter_range(prefix_range(prefix.as_ref()))
    }

    /// Every live key-value pair, in key order.
    pub fn iter(&self) -> Iter<'_> {
        self.range(..)
    }

    /// Calls `f` with each live key-value pair in `range`, in key order, *lending* them
    /// instead of returning owned copies; `f` stops the scan by returning
    /// [`ControlFlow::Break`]. Returns how many pairs `f` saw.
    ///
    /// The fastest way to read many pairs: no allocation or reference count per pair. The
    /// price is that `f` runs while the thread is pinned for memory reclamation (renewed every
    /// 128 keys), so keep it short: a callback that blocks delays the freeing of old versions
    /// meanwhile (never correctness). `f` may read and write the database; the scan still
    /// sees exactly this snapshot.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use snapkv::Db;
    ///
    /// let db = Db::new();
    /// for (k, v) in [("temp/a", "21"), ("temp/b", "19"), ("temp/c", "23"), ("zone/a", "x")] {
    ///     db.put(k, v)?;
    /// }
    /// let snap = db.snapshot();
    /// // Sum the first two readings under `temp/` without copying keys or values.
    /// let mut sum = 0;
    /// let seen = snap.scan_with("temp/".."temp0", |_key, value| {
    ///     sum += std::str::from_utf8(value).unwrap().parse::<i32>().unwrap();
    ///     if sum > 30 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    /// });
    /// assert_eq!((seen, sum), (2, 40));
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn scan_with(
        &self,
        range: impl KeyBounds,
        f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> usize {
        self.scan_with_limit(range, usize::MAX, f)
    }

    /// Like [`scan_with`](Self::scan_with), but lends at most `limit` pairs: the first
    /// `limit` live pairs in `range` (a page of results). Returns how many pairs `f` saw.
    ///
    /// Prefer it to counting in `f` when the count is known up front: the scan then knows
    /// where it will likely stop, and does not prefetch the entries far past that point.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use snapkv::Db;
    ///
    /// let db = Db::new();
    /// for k in ["page/1", "page/2", "page/3", "page/4"] {
    ///     db.put(k, "x")?;
    /// }
    /// db.delete("page/2")?;
    /// let mut keys = Vec::new();
    /// let seen = db.snapshot().scan_with_limit("page/".., 2, |key, _| {
    ///     keys.push(key.to_vec());
    ///     ControlFlow::Continue(())
    /// });
    /// // Deleted keys do not count: the first two live pairs.
    /// assert_eq!(seen, 2);
    /// assert_eq!(keys, [b"page/1".to_vec(), b"page/3".to_vec()]);
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn scan_with_limit(
        &self,
        range: impl KeyBounds,
        limit: usize,
        f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> usize {
        crate::iter::lend(
            &self.db.shared.store,
            borrowed_range(&range),
            self.ts,
            limit,
            f,
        )
    }

    /// Calls `f` with each live pair in `range` and the timestamp of the version it reads,
    /// in key order, lending them as [`scan_with`](Self::scan_with) does (same pinning, same
    /// stopping). Returns how many pairs `f` saw.
    pub(crate) fn scan_versioned(
        &self,
        range: KeyRangeRef<'_>,
        f: impl FnMut(&[u8], &[u8], Ts) -> ControlFlow<()>,
    ) -> usize {
        crate::iter::lend_versioned(&self.db.shared.store, range, self.ts, usize::MAX, f)
    }

    /// The registry slot this snapshot holds (`None` once released).
    pub(crate) fn slot(&self) -> Option<&SlotId> {
        self.slot.as_ref()
    }

    pub(crate) fn iter_range(&self, range: KeyRange) -> Iter<'_> {
        Iter::new(&self.db.shared.store, range, self.ts)
    }

    /// Unchecked point read: the lending read, copied once.
    pub(crate) fn read(&self, key: &[u8]) -> Option<Bytes> {
        self.lend(key, Bytes::copy_from_slice)
    }

    /// Unchecked point read with the version's commit timestamp (lent, then copied).
    pub(crate) fn read_versioned(&self, key: &[u8]) -> Option<(Bytes, Ts)> {
        let guard = crossbeam_epoch::pin();
        let v = self.lent_version(key, &guard)?;
        v.value.map(|val| (Bytes::copy_from_slice(val), v.ts))
    }

    /// Unchecked lending point read.
    #[inline]
    pub(crate) fn lend<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let guard = crossbeam_epoch::pin();
        self.lent_version(key, &guard).and_then(|v| v.value).map(f)
    }

    /// The version of `key` this snapshot sees (a tombstone included), lent (from the head
    /// mirror in the key's map entry, or the chain's head cache, when it is the head); valid
    /// while `guard` is pinned. The map's shard lock is released before this returns: the
    /// version borrows from the guard, not from the chain (see `raw`).
    #[inline]
    pub(crate) fn lent_version<'g>(&self, key: &[u8], guard: &'g Guard) -> Option<Lent<'g>> {
        self.db
            .shared
            .store
            .with_mirrored_chain(key, |chain, mirror| {
                chain.lend_at_mirrored(mirror, self.ts, guard)
            })
            .flatten()
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            Self::registry_of(&self.db, self.writer).release(slot);
        }
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("ts", &self.ts).finish()
    }
}
