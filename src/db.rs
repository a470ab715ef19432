//! The database handle.

use bytes::Bytes;

use crate::clock::Clock;
use crate::commit::{self, Checks, Write};
use crate::contention::{Contention, Turn, QUEUE_AFTER};
use crate::durable::engine::{self, Durability, DurableOptions};
use crate::durable::report::{CheckpointReport, LogStats, RecoveryReport};
use crate::durable::storage::Storage;
use crate::error::ConflictKind;
use crate::error::{Error, Result};
use crate::gc::{Collector, GcReport, Parts};
use crate::isolation::Isolation;
use crate::key::MapKey;
use crate::options::{DbBuilder, Options};
use crate::raw::{Chain, HeadCache, Lent};
use crate::registry::{Registry, SlotId};
use crate::snapshot::Snapshot;
use crate::store::Store;
use crate::sync::Arc;
use crate::txn::Transaction;

/// A commit timestamp. Timestamps are logical, start at 1 and grow by one per commit; a
/// snapshot at `ts` sees exactly the commits with timestamps `<= ts`.
pub type Ts = u64;

/// An MVCC key-value store, in memory ([`Db::new`]) or kept in a directory ([`Db::open`]).
///
/// `Db` is a cheap handle (`Clone + Send + Sync`): clones share one database. Reads go through
/// [`Snapshot`]s, writes through [`Transaction`]s or the auto-commit [`Db::put`] /
/// [`Db::delete`].
///
/// ```
/// use snapkv::Db;
///
/// let db = Db::new();
/// let t1 = db.put(b"k", b"v1")?;
/// let snap = db.snapshot();              // sees v1 for as long as it lives
/// let t2 = db.put(b"k", b"v2")?;
/// assert!(t2 > t1);
/// assert_eq!(snap.get(b"k")?.as_deref(), Some(&b"v1"[..]));
/// assert_eq!(db.get(b"k")?.as_deref(), Some(&b"v2"[..]));
/// # Ok::<(), snapkv::Error>(())
/// ```
#[derive(Clone)]
pub struct Db {
    pub(crate) shared: Arc<Shared>,
}

/// Everything the handles share.
pub(crate) struct Shared {
    pub(crate) opts: Options,
    pub(crate) clock: Clock,
    /// Read-only snapshots.
    pub(crate) registry: Registry,
    /// Transactions' snapshots: kept apart because only they can still write, so only they
    /// keep a deleted key's last tombstone from leaving the map (see `Horizon::writer_floor`).
    pub(crate) writers: Registry,
    pub(crate) store: Store,
    pub(crate) gc: Collector,
    /// Turns for calls of `update` that keep losing on a hot key.
    pub(crate) contention: Contention,
    /// The write-ahead log and directory of a durable database; `None` in memory.
    pub(crate) durable: Option<Durability>,
}

impl Shared {
    /// What the collector works on.
    pub(crate) fn gc_parts(&self) -> Parts<'_> {
        Parts {
            clock: &self.clock,
            registry: &self.registry,
            writers: &self.writers,
            store: &self.store,
        }
    }
}

impl Default for Db {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("visible_ts", &self.shared.clock.visible())
            .field("keys", &self.shared.store.len())
            .finish_non_exhaustive()
    }
}

/// How an attempt of [`Db::retry`] went, beyond its result.
#[derive(Default)]
struct Attempt {
    /// The timestamp its snapshot read at.
    snapshot_ts: Ts,
    /// The key it stood aside for (a turn holder was being served on its stripe), if it did.
    stood_aside_for: Option<Bytes>,
}

/// Why an attempt of [`Db::retry`] failed: its closure's error, or the database's.
enum Failed<E> {
    Closure(E),
    Db(Error),
}

/// A point-in-time summary of the database, for monitoring and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Keys in the map (including keys whose newest version is a not yet collected delete).
    pub keys: usize,
    /// Versions linked in all chains, tombstones included.
    pub versions: usize,
    /// Snapshots and transactions currently registered.
    pub live_snapshots: usize,
    /// The oldest timestamp a live snapshot reads at, if any.
    pub oldest_snapshot: Option<Ts>,
    /// The newest timestamp visible to new snapshots.
    pub visible_ts: Ts,
    /// The collector's current watermark.
    pub watermark: Ts,
    /// The write-ahead log's counters; `None` in memory.
    pub log: Option<LogStats>,
}

impl Db {
    /// An empty in-memory database with default options.
    pub fn new() -> Self {
        Self::with_options(Options::default())
    }

    /// A builder to configure limits and defaults.
    pub fn builder() -> DbBuilder {
        DbBuilder::default()
    }

    pub(crate) fn with_options(opts: Options) -> Self {
        Self::with_parts(opts, Clock::new(), Store::new(), None)
    }

    fn with_parts(opts: Options, clock: Clock, store: Store, durable: Option<Durability>) -> Self {
        Self {
            shared: Arc::new(Shared {
                opts,
                clock,
                registry: Registry::new(),
                writers: Registry::new(),
                store,
                gc: Collector::new(),
                contention: Contention::new(),
                durable,
            }),
        }
    }

    /// Opens (creating it if missing) the database in directory `dir`, with default options
    /// and [`SyncPolicy::Always`](crate::SyncPolicy::Always): the same as
    /// `Db::builder().path(dir).build()`.
    ///
    /// The directory is locked while the database is open: a second open, in this process or
    /// another, fails with [`Error::Locked`]. Opening recovers what the directory's log holds
    /// (see [`recovery`](Self::recovery)); every commit acknowledged before is there, as its
    /// sync policy promised (`docs/durability.md`).
    ///
    /// ```
    /// use snapkv::Db;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = Db::open(dir.path())?;
    /// let ts = db.put(b"k", b"v")?;
    /// db.close()?;
    ///
    /// let db = Db::open(dir.path())?;
    /// assert_eq!(db.get_versioned(b"k")?, Some((b"v"[..].into(), ts)));
    /// assert_eq!(db.recovery().unwrap().records_replayed, 1);
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn open(dir: impl AsRef<std::path::Path>) -> Result<Db> {
        Self::builder().path(dir.as_ref()).build()
    }

    /// Locks `dir` (creating it if missing), recovers it and starts its log.
    pub(crate) fn open_dir(
        opts: Options,
        dir: &std::path::Path,
        durable: DurableOptions,
    ) -> Result<Db> {
        let lock = crate::durable::dir_lock::DirLock::acquire(dir)?;
        Self::open_storage(
            opts,
            crate::durable::storage::FileStorage,
            dir,
            durable,
            Some(lock),
        )
    }

    /// A durable database over `storage` (tests pass a `SimStorage`): recovers `dir`, loads
    /// what it holds (each key one version, at the timestamp that wrote it), and starts the
    /// clock at the highest recovered timestamp.
    pub(crate) fn open_storage<S: Storage + 'static>(
        opts: Options,
        storage: S,
        dir: &std::path::Path,
        durable: impl Into<DurableOptions>,
        lock: Option<crate::durable::dir_lock::DirLock>,
    ) -> Result<Db> {
        let engine::Opened {
            durability,
            recovered,
        } = engine::open(storage, dir, &durable.into(), lock)?;
        let store = Store::loaded(recovered.entries);
        let clock = Clock::starting_at(recovered.max_ts);
        Ok(Self::with_parts(opts, clock, store, Some(durability)))
    }

    /// Closes a durable database: later writes through any handle fail with
    /// [`Error::Closed`] (reads of what it holds keep working), everything committed is
    /// written and synced, and the directory is released (another `open` may take it).
    /// Dropping the last handle (with every snapshot and transaction) does the same, on a
    /// best-effort basis: `close` is how to learn that the final sync succeeded.
    ///
    /// Fails if the final sync does (the directory is released anyway), or with the error
    /// that poisoned the log. For an in-memory database, does nothing.
    pub fn close(self) -> Result<()> {
        match &self.shared.durable {
            Some(durable) => durable.close(),
            None => Ok(()),
        }
    }

    /// What opening the directory recovered; `None` for an in-memory database.
    pub fn recovery(&self) -> Option<&RecoveryReport> {
        self.shared.durable.as_ref().map(Durability::report)
    }

    /// Writes a checkpoint of a durable database: the state at a fresh snapshot, with each
    /// key's version, installed atomically beside the log (temporary file, sync, rename,
    /// directory sync); then removes older checkpoints and the log segments it covers, so a
    /// reopen reads the checkpoint and only the log after it. Writers and readers carry on
    /// meanwhile (the snapshot keeps the versions it reads until the checkpoint is written).
    ///
    /// The database also checkpoints itself in the background once its log passes
    /// [`DbBuilder::checkpoint_log_bytes`](crate::DbBuilder::checkpoint_log_bytes).
    ///
    /// ```
    /// use snapkv::Db;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = Db::open(dir.path())?;
    /// db.put(b"k", b"v")?;
    /// let cp = db.checkpoint()?;
    /// assert_eq!(cp.keys, 1);
    /// db.close()?;
    /// let db = Db::open(dir.path())?;
    /// assert_eq!(db.recovery().unwrap().checkpoint_ts, Some(cp.ts));
    /// assert_eq!(db.recovery().unwrap().records_replayed, 0);
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    ///
    /// An in-memory database has nowhere to write one: [`Error::InvalidConfig`] (see
    /// [`backup`](Self::backup) for an image of it). After [`close`](Self::close):
    /// [`Error::Closed`].
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        let Some(durable) = &self.shared.durable else {
            return Err(Error::InvalidConfig(
                "an in-memory database has no directory to checkpoint into",
            ));
        };
        durable.checkpoint(&self.snapshot())
    }

    /// Writes `key = value` as its own transaction and returns its commit timestamp. A blind
    /// write never conflicts.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<Ts> {
        let key = key.as_ref();
        self.check_key(key)?;
        let value = value.as_ref();
        self.check_value(value)?;
        self.commit_writes(&mut [Write::new(key, Some(value))], Checks::default(), None)
    }

    /// Deletes `key` as its own transaction and returns the commit timestamp (deleting an
    /// absent key is not an error).
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<Ts> {
        let key = key.as_ref();
        self.check_key(key)?;
        self.commit_writes(&mut [Write::new(key, None)], Checks::default(), None)
    }

    /// Writes `new` (`None` deletes) only if `key`'s current version — the commit timestamp of
    /// its newest committed value, `None` if absent — equals `expected`; returns the new commit
    /// timestamp. Otherwise fails with [`Error::PreconditionFailed`] carrying the current
    /// version, and writes nothing. This is the ETag / `WHERE version = ?` pattern.
    ///
    /// ```
    /// use snapkv::{Db, Error};
    ///
    /// let db = Db::new();
    /// let v1 = db.compare_and_swap(b"doc", None, Some(b"draft"))?;   // create if absent
    /// let (_, version) = db.get_versioned(b"doc")?.unwrap();
    /// assert_eq!(version, v1);
    /// db.compare_and_swap(b"doc", Some(version), Some(b"final"))?;  // still at v1: ok
    /// let stale = db.compare_and_swap(b"doc", Some(version), Some(b"oops"));
    /// assert!(matches!(stale, Err(Error::PreconditionFailed { current: Some(_), .. })));
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn compare_and_swap<V: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<Ts>,
        new: Option<V>,
    ) -> Result<Ts> {
        let key = key.as_ref();
        self.check_key(key)?;
        let value = self.checked_new_value(new.as_ref().map(AsRef::as_ref))?;
        let checks = Checks {
            expect: Some(expected),
            ..Checks::default()
        };
        self.commit_writes(&mut [Write::new(key, value)], checks, None)
    }

    /// [`compare_and_swap`](Self::compare_and_swap) that deletes.
    pub fn compare_and_delete(&self, key: impl AsRef<[u8]>, expected: Option<Ts>) -> Result<Ts> {
        self.compare_and_swap(key, expected, None::<&[u8]>)
    }

    /// The newest committed value of `key` with its version (the commit timestamp that wrote
    /// it), for use with [`compare_and_swap`](Self::compare_and_swap).
    pub fn get_versioned(&self, key: impl AsRef<[u8]>) -> Result<Option<(Bytes, Ts)>> {
        self.with_latest(key.as_ref(), |v| {
            v.value.map(|val| (Bytes::copy_from_slice(val), v.ts))
        })
    }

    /// The newest committed value of `key`, as an owned copy ([`get_with`](Self::get_with)
    /// lends it instead).
    ///
    /// Linearizable: it returns the value of the last commit visible at some instant during
    /// the call. Cheaper than [`snapshot`](Self::snapshot)`.get()`: it usually needs no
    /// snapshot registration at all. It reads like [`get_with`](Self::get_with) and costs one
    /// copy of the value more.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.with_latest(key.as_ref(), |v| v.value.map(Bytes::copy_from_slice))
    }

    /// Calls `f` with the newest committed value of `key`, *lending* it instead of returning
    /// an owned [`Bytes`]; `None` if the key is absent. Linearizable like [`get`](Self::get).
    ///
    /// The cheapest read: usually no snapshot registration, no copy, and no reference count
    /// touched, so readers on many threads never write to a shared cache line. `f` runs after every
    /// lock is released (it may read and write the database), but while the thread is pinned
    /// for memory reclamation, so keep it short: a long `f` delays the freeing of old versions
    /// meanwhile (never correctness).
    ///
    /// ```
    /// use snapkv::Db;
    ///
    /// let db = Db::new();
    /// db.put(b"greeting", b"hello")?;
    /// assert_eq!(db.get_with(b"greeting", |v| v.len())?, Some(5));
    /// assert_eq!(db.get_with(b"absent", |v| v.to_vec())?, None);
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn get_with<R>(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>> {
        self.with_latest(key.as_ref(), |v| v.value.map(f))
    }

    /// Checks `key` and runs `f` on its newest visible version, lent (`None` if it has none):
    /// the one read path of [`get`](Self::get), [`get_with`](Self::get_with) and
    /// [`get_versioned`](Self::get_versioned).
    #[inline]
    fn with_latest<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Lent<'_>) -> Option<R>,
    ) -> Result<Option<R>> {
        self.check_key(key)?;
        let guard = crossbeam_epoch::pin();
        let found = self.read_latest(
            key,
            |chain, mirror, visible| chain.lend_head_if_visible_mirrored(mirror, visible, &guard),
            |snap| snap.lent_version(key, &guard),
        );
        Ok(found.and_then(f))
    }

    /// The newest visible version of `key` (a tombstone included; `None` if the key has no
    /// chain), as read by `head` from the chain's head (or its mirror in the map entry, which
    /// describes the head under the same rules) when that can be done without a
    /// registered snapshot, else by `at_snapshot` at a fresh snapshot. Owned and lending
    /// reads share this; the caller's epoch pin keeps what they return allocated.
    ///
    /// With `s` the visible timestamp loaded first: a head version with `ts <= s` is the
    /// newest version at or below `s` (every version at or below `s` was installed before `s`
    /// became visible, and the head is the newest installed), so it is the answer at the
    /// instant `s` was loaded. The head is never pruned. A key without a chain was absent at
    /// some instant of the call (a chain leaves the map only when its last version is a delete
    /// every snapshot sees). A head newer than `s` (a commit in flight) or an empty chain
    /// (being created or removed) is inconclusive (`head` returns `None`): without a
    /// registered snapshot, versions below the head may be unlinked under us. One exception,
    /// through the mirror: it may still describe a head tombstone `t` that pruning unlinked
    /// from an emptied chain. Reading it as absent when `t <= s` is right: pruning empties a
    /// chain only when everything it held reads as absent (tombstones, nothing below them),
    /// so the key was absent at `s`, and any later install would have rewritten the mirror.
    fn read_latest<V>(
        &self,
        key: &[u8],
        head: impl FnOnce(&Chain, &HeadCache, u64) -> Option<V>,
        at_snapshot: impl FnOnce(&Snapshot) -> Option<V>,
    ) -> Option<V> {
        let s = &self.shared;
        let visible = s.clock.visible();
        match s
            .store
            .with_mirrored_chain(key, |chain, mirror| head(chain, mirror, visible))
        {
            None => None,
            Some(Some(found)) => Some(found),
            Some(None) => at_snapshot(&self.snapshot()),
        }
    }

    /// A consistent read-only view of the database as of now. O(1): one slot claim, no lock,
    /// while the process holds few snapshots at a time; beyond the registry's fixed slots (64),
    /// a short lock and an entry per distinct timestamp, freed with its last snapshot.
    /// The snapshot keeps what it can see alive until it is dropped.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.clone())
    }

    /// Starts a transaction at the database's default isolation level (see
    /// [`DbBuilder::isolation`]; snapshot isolation unless configured).
    pub fn begin(&self) -> Transaction {
        self.begin_with(self.shared.opts.isolation)
    }

    /// Starts a transaction at the given isolation level.
    pub fn begin_with(&self, isolation: Isolation) -> Transaction {
        Transaction::new(Snapshot::for_transaction(self.clone()), isolation)
    }

    /// Runs `f` in a transaction and commits it, retrying on conflicts.
    ///
    /// Each attempt gets a fresh transaction. A conflict (at commit, or an
    /// [`is_retryable`](Error::is_retryable) error returned by `f`) leads to another attempt
    /// after the thread yields the CPU; any other error from `f` aborts and is returned. If `f`
    /// panics, the transaction is dropped (nothing is installed, no lock is held) and the
    /// panic continues. For a closure that fails with an error type of its own, see
    /// [`try_update`](Self::try_update).
    ///
    /// Hot keys are served fairly: a call that has lost a few attempts waits its turn on the
    /// key it conflicted on (first come, first served), then retries while other calls of
    /// `update` writing that key stand aside (and wait for its attempt), so it does not keep
    /// losing to threads that commit in a tight loop. An attempt that stands aside counts as
    /// lost to a [`ConflictKind::WriteWrite`] conflict on the key it wanted to write. After
    /// `max_attempts` attempts (see [`DbBuilder::max_attempts`]) the call returns
    /// [`Error::RetriesExhausted`] carrying the last conflict; once it has its turn, that takes
    /// writers that bypass `update` (such as [`put`](Self::put) or a hand-driven
    /// [`Transaction`]), or about as many threads on the key as `max_attempts`.
    ///
    /// `f` may run several times, so it should have no side effects outside the transaction.
    ///
    /// ```
    /// use snapkv::Db;
    ///
    /// let db = Db::new();
    /// db.put(b"counter", 0u64.to_be_bytes())?;
    /// let new = db.update(|txn| {
    ///     let cur = txn.get(b"counter")?.map_or(0, |v| u64::from_be_bytes(v[..].try_into().unwrap()));
    ///     txn.put(b"counter", (cur + 1).to_be_bytes())?;
    ///     Ok(cur + 1)
    /// })?;
    /// assert_eq!(new, 1);
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn update<T>(&self, f: impl FnMut(&mut Transaction) -> Result<T>) -> Result<T> {
        self.update_with(self.shared.opts.isolation, f)
    }

    /// [`update`](Self::update) at the given isolation level.
    ///
    /// ```
    /// use snapkv::{Db, Isolation};
    ///
    /// let db = Db::new();
    /// // Insert a booking only if the day has none: safe under concurrency when serializable.
    /// let booked = db.update_with(Isolation::Serializable, |txn| {
    ///     if txn.scan_prefix(b"booking/2026-11-22/").next().is_some() {
    ///         return Ok(false);
    ///     }
    ///     txn.put(b"booking/2026-11-22/alice", b"room 1")?;
    ///     Ok(true)
    /// })?;
    /// assert!(booked);
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn update_with<T>(
        &self,
        isolation: Isolation,
        mut f: impl FnMut(&mut Transaction) -> Result<T>,
    ) -> Result<T> {
        self.retry(isolation, &mut f, |e: Error| {
            if e.is_retryable() {
                Ok(e)
            } else {
                Err(e)
            }
        })
    }

    /// [`update`](Self::update) for a closure that fails with an error type of its own, `E`:
    /// an error from `f` ends the call and comes back as it is (not boxed into
    /// [`Error::Aborted`]). The database's own errors reach the caller as `E` through
    /// `From<Error>` (which the closure's `?` on transaction calls needs too): a commit's
    /// conflicts are retried as in `update`, and the last one comes back as
    /// [`Error::RetriesExhausted`] converted to `E`.
    ///
    /// ```
    /// use snapkv::Db;
    ///
    /// #[derive(Debug)]
    /// enum TransferError {
    ///     InsufficientFunds { balance: u64 },
    ///     Db(snapkv::Error),
    /// }
    /// impl From<snapkv::Error> for TransferError {
    ///     fn from(e: snapkv::Error) -> Self {
    ///         TransferError::Db(e)
    ///     }
    /// }
    ///
    /// let db = Db::new();
    /// db.put("alice", 30u64.to_be_bytes())?;
    /// let res = db.try_update(|txn| {
    ///     let balance = txn
    ///         .get_with("alice", |v| u64::from_be_bytes(v.try_into().unwrap()))?
    ///         .unwrap_or(0);
    ///     if balance < 50 {
    ///         return Err(TransferError::InsufficientFunds { balance });
    ///     }
    ///     txn.put("alice", (balance - 50).to_be_bytes())?;
    ///     Ok(balance - 50)
    /// });
    /// assert!(matches!(res, Err(TransferError::InsufficientFunds { balance: 30 })));
    /// # Ok::<(), snapkv::Error>(())
    /// ```
    pub fn try_update<T, E: From<Error>>(
        &self,
        f: impl FnMut(&mut Transaction) -> Result<T, E>,
    ) -> Result<T, E> {
        self.try_update_with(self.shared.opts.isolation, f)
    }

    /// [`try_update`](Self::try_update) at the given isolation level.
    pub fn try_update_with<T, E: From<Error>>(
        &self,
        isolation: Isolation,
        mut f: impl FnMut(&mut Transaction) -> Result<T, E>,
    ) -> Result<T, E> {
        self.retry(isolation, &mut f, Err)
    }

    /// The retry loop of [`update_with`](Self::update_with) and
    /// [`try_update_with`](Self::try_update_with). The conflicts it retries are the
    /// database's own, seen before they become `E`: those of the commit (and of standing
    /// aside), and those `closure_conflict` finds in an error of `f` (`Ok`: retry on that
    /// conflict; `Err`: return the error as it is).
    fn retry<T, E: From<Error>>(
        &self,
        isolation: Isolation,
        f: &mut impl FnMut(&mut Transaction) -> Result<T, E>,
        closure_conflict: impl Fn(E) -> Result<Error, E>,
    ) -> Result<T, E> {
        let attempts = self.shared.opts.max_attempts;
        let contention = &self.shared.contention;
        // Attempts in all, and attempts lost before getting a turn (racing or standing aside).
        let (mut attempt, mut lost) = (0, 0);
        let mut turn: Option<Turn<'_>> = None;
        let mut last = Attempt::default();
        loop {
            attempt += 1;
            let e = match self.attempt(isolation, f, turn.is_some(), &mut last) {
                Ok(out) => return Ok(out),
                Err(Failed::Db(e)) if e.is_retryable() => e,
                Err(Failed::Db(e)) => return Err(e.into()),
                Err(Failed::Closure(e)) => closure_conflict(e)?,
            };
            if attempt >= attempts {
                return Err(Error::RetriesExhausted {
                    attempts: attempt,
                    last: Box::new(e),
                }
                .into());
            }
            if turn.is_none() {
                lost += 1;
                if lost >= QUEUE_AFTER {
                    if let Error::Conflict { key, .. } = &e {
                        turn = contention.wait_turn(key);
                        if turn.is_some() {
                            continue;
                        }
                    }
                }
                match &last.stood_aside_for {
                    // The holder needs one attempt; then the key is open to a fresh race.
                    Some(key) => contention.await_served(key),
                    None => self.after_lost_race(),
                }
                continue;
            }
            // Others stand aside, so the holder retries as soon as it can win.
            let clock = &self.shared.clock;
            crate::contention::await_visible_past(|| clock.visible(), last.snapshot_ts);
        }
    }

    /// Before the next attempt of a call that lost a race: the version that beat it has a
    /// timestamp no larger than the last allocated one. Until that is visible, every new
    /// snapshot reads below it and loses against it again: when its committer was descheduled
    /// before publishing (many more threads than cores), retrying at once would spend every
    /// remaining attempt on that one stall. So wait for it, asleep if need be; else just let
    /// the winner run.
    fn after_lost_race(&self) {
        let clock = &self.shared.clock;
        let beaten_by = clock.allocated();
        if clock.visible() < beaten_by {
            clock.wait_visible(beaten_by);
        } else {
            crate::retry::after_lost_race();
        }
    }

    /// One attempt of [`retry`](Self::retry): runs `f` in a fresh transaction and commits it,
    /// unless (for a call without a turn, `my_turn` false) a turn holder is being served on
    /// the stripe of a key it writes: then it stands aside, reporting a write-write conflict
    /// on that key. The transaction (and its snapshot) is gone when this returns, so a call
    /// never holds a snapshot while it backs off or waits for its turn. `last` says how the
    /// attempt went.
    fn attempt<T, E>(
        &self,
        isolation: Isolation,
        f: &mut impl FnMut(&mut Transaction) -> Result<T, E>,
        my_turn: bool,
        last: &mut Attempt,
    ) -> Result<T, Failed<E>> {
        let mut txn = self.begin_with(isolation);
        last.snapshot_ts = txn.snapshot_ts();
        last.stood_aside_for = None;
        let out = f(&mut txn).map_err(Failed::Closure)?;
        if !my_turn {
            if let Some(key) = self
                .shared
                .contention
                .stand_aside(|hot| txn.find_written_key(hot))
            {
                let key = Bytes::copy_from_slice(key);
                last.stood_aside_for = Some(key.clone());
                return Err(Failed::Db(Error::Conflict {
                    key,
                    kind: ConflictKind::WriteWrite,
                    range: None,
                }));
            }
        }
        txn.commit().map(|_| out).map_err(Failed::Db)
    }

    /// Runs a full collection now: recomputes the watermark, prunes every chain down to what
    /// live snapshots can see, and removes keys that hold nothing visible. Normal operation
    /// does this incrementally; call it after dropping a long-lived snapshot to give memory
    /// back at once.
    pub fn collect_garbage(&self) -> GcReport {
        self.shared.gc.sweep(self.shared.gc_parts())
    }

    /// Counts keys, versions and snapshots. O(number of versions): for monitoring and tests,
    /// not for hot paths.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let mut versions = 0;
        s.store.for_each(|_, chain| {
            versions += chain.version_count(&crossbeam_epoch::pin());
        });
        Stats {
            keys: s.store.len(),
            versions,
            live_snapshots: s.registry.live() + s.writers.live(),
            oldest_snapshot: s
                .registry
                .oldest()
                .into_iter()
                .chain(s.writers.oldest())
                .min(),
            visible_ts: s.clock.visible(),
            watermark: s.gc.watermark(),
            log: s.durable.as_ref().map(Durability::log_stats),
        }
    }

    /// Heap bytes held by each in-memory structure (the key map, the chains, the version
    /// nodes, the scan index's current run), as `(structure, bytes)`: for
    /// `examples/memory.rs`, not a stable interface. Bytes are as requested from the
    /// allocator (its own rounding is not included); what it does not list (the registry,
    /// the clock, deltas of the scan index, pooled or epoch-deferred frees) is the rest of a
    /// counting allocator's total. O(keys + versions).
    #[doc(hidden)]
    pub fn memory_breakdown(&self) -> Vec<(&'static str, usize)> {
        self.shared.store.memory_breakdown()
    }

    /// Commits sorted, validated writes with the given checks (linking each write's node).
    /// `own` is the committing transaction's snapshot slot, if any.
    pub(crate) fn commit_writes(
        &self,
        writes: &mut [Write<'_>],
        checks: Checks<'_>,
        own: Option<&SlotId>,
    ) -> Result<Ts> {
        let s = &self.shared;
        // One pin for the commit and the cached horizon it borrows (instead of cloning it).
        let guard = crossbeam_epoch::pin();
        let horizon = s.gc.horizon(&guard);
        let log = s.durable.as_ref().map(Durability::commit_log);
        let done =
            commit::commit_pinned(&s.clock, &s.store, writes, checks, &horizon, log, &guard)?;
        let horizon_now = horizon.now();
        // Unpinned before maintenance, which may run for a while.
        drop(guard);
        if let Some(durable) = &s.durable {
            durable
                .checkpointer()
                .after_commit(self, || durable.log_stats().live_bytes);
        }
        for write in writes.iter().filter(|w| w.is_delete()) {
            s.gc.note_tombstone(Bytes::copy_from_slice(write.key), done.ts);
        }
        s.gc.after_commit(done, horizon_now, own, s.gc_parts());
        Ok(done.ts)
    }

    /// The largest write set a transaction may buffer (see `DbBuilder::max_write_set_bytes`).
    pub(crate) fn max_write_set_bytes(&self) -> usize {
        self.shared.opts.max_write_set_bytes
    }

    /// A valid key, copied inline (no allocation up to 24 bytes).
    pub(crate) fn checked_map_key(&self, key: &[u8]) -> Result<MapKey> {
        self.check_key(key)?;
        Ok(MapKey::from_slice(key))
    }

    pub(crate) fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = self.shared.opts.max_key_len;
        if key.is_empty() {
            Err(Error::EmptyKey)
        } else if key.len() > max {
            Err(Error::KeyTooLarge {
                len: key.len(),
                max,
            })
        } else {
            Ok(())
        }
    }

    /// `new` (a value to write, `None` for a delete) if it is not over the configured maximum
    /// length.
    pub(crate) fn checked_new_value<'v>(&self, new: Option<&'v [u8]>) -> Result<Option<&'v [u8]>> {
        if let Some(value) = new {
            self.check_value(value)?;
        }
        Ok(new)
    }

    /// Fails for a value over the configured maximum length.
    pub(crate) fn check_value(&self, value: &[u8]) -> Result<()> {
        let max = self.shared.opts.max_value_len;
        if value.len() > max {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max,
            });
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod update_after_losing_to_an_unpublished_commit {
    //! A committer descheduled between installing a version and publishing it keeps every
    //! new snapshot below that version, so an `update` of the key loses against it on every
    //! attempt until it is published. The update must wait for it rather than spend its
    //! attempts: with 64 threads on 2 cores, calls returned `RetriesExhausted`.
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn an_update_beaten_by_an_unpublished_version_waits_for_it_then_commits() {
        let db = Db::new();
        db.put(b"k", b"1").unwrap();
        let shared = &db.shared;
        // Stands for the descheduled committer: timestamp 2 allocated, k's version installed,
        // not published.
        let held = shared.clock.allocate();
        assert_eq!(held.ts(), 2);
        {
            let guard = crossbeam_epoch::pin();
            let chain = shared.store.get(b"k").unwrap();
            let w = chain.lock();
            shared.store.with_mirror(b"k", &chain, |m| {
                w.install(held.ts(), Some(b"2"), m, &guard);
            });
        }
        let attempts = AtomicU32::new(0);
        let committed = std::thread::scope(|s| {
            let updater = s.spawn(|| {
                db.update(|txn| {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    txn.put(b"k", b"3")
                })
            });
            // Its first attempt reads at 1 and loses against 2; then it waits for 2 to be
            // visible, asleep in the clock after a few spins. Without the wait it would retry
            // at 1 until its attempts ran out.
            while shared.clock.sleepers() == 0 && !updater.is_finished() {
                std::thread::yield_now();
            }
            assert!(
                !updater.is_finished(),
                "the update returned while the version that beat it was unpublished: {:?}",
                updater.join().unwrap()
            );
            assert_eq!(
                attempts.load(Ordering::SeqCst),
                1,
                "it retried below the version"
            );
            assert_eq!(held.publish(), 2);
            updater.join().unwrap()
        });
        committed.unwrap();
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(db.get_versioned(b"k").unwrap().map(|(_, ts)| ts), Some(3));
    }

    /// A conflict from a commit into another database, made by the closure, is waited out on
    /// this database's clock only: the other one's timestamps may be far ahead of it.
    #[test]
    fn a_conflict_the_closure_met_elsewhere_is_not_waited_for() {
        let (here, elsewhere) = (Db::new(), Db::new());
        for i in 0..10u8 {
            elsewhere.put(b"k", [i]).unwrap();
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let attempts = std::sync::Arc::new(AtomicU32::new(0));
        {
            let (here, attempts) = (here.clone(), attempts.clone());
            // Detached, with a deadline: a wait for the other database's timestamp would
            // never end.
            std::thread::spawn(move || {
                let out = here.update(|txn| {
                    if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                        let mut lost = elsewhere.begin();
                        lost.put(b"k", b"mine")?;
                        elsewhere.put(b"k", b"theirs")?;
                        return lost.commit().map(|_| ());
                    }
                    txn.put(b"k", b"v")
                });
                let _ = done_tx.send(out);
            });
        }
        let out = done_rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the update waited for another database's timestamp");
        out.unwrap();
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(here.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
