//! The commit protocol: lock the write set in key order, validate, take a timestamp, install,
//! publish. This is the code the loom models run.

use bytes::Bytes;
use crossbeam_epoch::Guard;

use crate::clock::{Clock, Publication};
pub(crate) use crate::durable::engine::CommitLog;
use crate::error::{ConflictKind, Error};
use crate::horizon::Horizon;
use crate::key::KeyRange;
use crate::raw::{Chain, ChainWriter, MirroredChain, Retired, Unlinked};
use crate::sync::StrongArc;

mod pending;

/// Where the commit finds the chain of each key it writes, reads or scanned.
pub(crate) trait ChainSource {
    /// The current chain of `key`, created empty if the key has none.
    fn resolve(&self, key: &[u8]) -> StrongArc<Chain>;
    /// The current chain of `key`, if it has one.
    fn lookup(&self, key: &[u8]) -> Option<StrongArc<Chain>>;
    /// Calls `hit` on each chain in `range`, in key order, until it returns `true`; returns
    /// that key.
    fn find_in_range(
        &self,
        range: &KeyRange,
        hit: &mut dyn FnMut(&[u8], &Chain) -> bool,
    ) -> Option<Bytes>;
    /// Called under the chain's lock when a commit abandons a chain that is empty (it created
    /// it and then lost a conflict), so that it does not linger.
    fn discard_if_empty(&self, key: &[u8], writer: &ChainWriter<'_>, guard: &Guard);
    /// Runs `f` with the head mirror kept for `key`'s chain `chain` (locked by the caller).
    /// A source that keeps mirrors must hand over the one of `chain`: the install rewrites it,
    /// and a mirror left out would keep pointing at a head that is then pruned and freed (see
    /// `ChainWriter::install`). Deliberately no default.
    fn with_mirror<R>(
        &self,
        key: &[u8],
        chain: &Chain,
        f: impl FnOnce(Option<&MirroredChain>) -> R,
    ) -> R;
    /// Runs `f` with `key`'s chain locked and its head mirror (as `with_mirror` would hand
    /// it over), if the key has a chain and its lock is free right now; `None` otherwise,
    /// without waiting. This is the one-key commit's fast path: one lookup finds the chain
    /// and the mirror, and whatever keeps them in place (a map shard's read lock) is held
    /// across `f`. So `f` must wait for nothing that may need that lock or a chain's (the
    /// only wait it makes is a durable commit's for a log turn under `SyncPolicy::Never`:
    /// see `commit_pinned`), and must not remove the key: the commit then allocates a
    /// timestamp but neither publishes it (which may wait for other committers) nor
    /// discards an empty chain (which takes the shard's write lock) before this returns.
    /// Deliberately no default.
    fn with_locked<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&ChainWriter<'_>, Option<&MirroredChain>) -> R,
    ) -> Option<R>;
    /// Called once a commit has installed versions of `writes`' keys, before it retires
    /// anything or publishes: a source whose scan index copies heads marks those keys changed
    /// (see `raw::run_heads`). Deliberately no default.
    fn note_installed(&self, writes: &[Write<'_>], guard: &Guard);
}

/// One write: a key (borrowed) and where its version node comes from.
pub(crate) struct Write<'k> {
    pub(crate) key: &'k [u8],
    source: Source<'k>,
    /// Whether the write is a delete (kept apart from `source`, whose node the install takes).
    delete: bool,
}

/// Where a write's version node comes from.
enum Source<'k> {
    /// Built when a transaction buffered the write (see [`Unlinked`]): the value was copied
    /// once on its way in, and the install, which runs while later committers wait for this
    /// commit's timestamp, only stamps and links the node. Taken by the install.
    Built(Option<Unlinked>),
    /// A value borrowed from an auto-commit call (`None`: a delete), copied into its node by
    /// the install. Building the node inside the commit lets the allocation overlap the
    /// superseded head's prefetch (`ChainWriter::prefetch_head_and_second`): building it first made
    /// single-key `put`s ~20% slower (alternating runs of 300K puts into 100K keys).
    Borrowed(Option<&'k [u8]>),
}

impl<'k> Write<'k> {
    /// A write of `value` (`None`: a delete) to `key`, copied into its node at install.
    pub(crate) fn new(key: &'k [u8], value: Option<&'k [u8]>) -> Self {
        Self {
            key,
            source: Source::Borrowed(value),
            delete: value.is_none(),
        }
    }

    /// A write of the node `node` (built when the write was buffered) to `key`.
    pub(crate) fn of(key: &'k [u8], node: Unlinked) -> Self {
        let delete = node.value().is_none();
        Self {
            key,
            source: Source::Built(Some(node)),
            delete,
        }
    }

    /// Whether the write deletes its key.
    pub(crate) fn is_delete(&self) -> bool {
        self.delete
    }

    /// The write's node, for the install (once).
    fn take_node(&mut self) -> Unlinked {
        match &mut self.source {
            Source::Built(node) => node.take().expect("each write is installed once"),
            Source::Borrowed(value) => Unlinked::new(*value),
        }
    }

    /// The value written (`None`: a delete, or a built write already installed): what the
    /// commit's log record holds.
    pub(crate) fn value(&self) -> Option<&[u8]> {
        match &self.source {
            Source::Built(node) => node.as_ref().and_then(Unlinked::value),
            Source::Borrowed(value) => *value,
        }
    }
}

/// A successful commit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Committed {
    /// The commit timestamp, visible to new snapshots.
    pub(crate) ts: u64,
    /// The most versions any written chain kept above the given horizon's visible timestamp
    /// (see `Pruned::above_horizon`): a backlog tells the caller to refresh the horizon.
    pub(crate) backlog: usize,
}

/// What a serializable transaction read: validated at commit.
#[derive(Debug, Default)]
pub(crate) struct ReadSet {
    /// Keys read with a tracked point read, present or absent (duplicates allowed), inline
    /// up to 24 bytes (a tracked read allocates nothing but the vector's growth).
    pub(crate) keys: Vec<crate::key::MapKey>,
    /// Ranges scanned, as requested (not just the keys the scan yielded).
    pub(crate) ranges: Vec<KeyRange>,
}

impl ReadSet {
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.ranges.is_empty()
    }
}

/// What a commit checks before it installs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Checks<'a> {
    /// First-committer-wins against this snapshot; `None` for a blind write.
    pub(crate) snapshot: Option<u64>,
    /// Serializable: the reads and scans made at `snapshot`, validated after the commit
    /// timestamp is allocated.
    pub(crate) reads: Option<&'a ReadSet>,
    /// Conditional write (single key): the version the key must have now (`None`: absent).
    pub(crate) expect: Option<Option<u64>>,
}

/// Per-commit lists (chains, lock guards): inline for small write sets, so a typical commit
/// allocates nothing for them.
type Small<T> = smallvec::SmallVec<[T; 4]>;

/// Commits `writes` (sorted by key, no duplicates) atomically at a fresh timestamp.
///
/// `checks` says what to validate: first-committer-wins on the write set against a snapshot,
/// the read set of a serializable transaction, or the expected version of a conditional
/// write. A failed check installs nothing. `horizon` is the collector's cached horizon, used
/// to prune each chain the commit touches. Returns the commit timestamp once the commit is
/// visible to new snapshots, with the backlog it found.
///
/// Protocol (see docs/design.md):
/// 1. resolve each key's chain and lock the chains in key order (no deadlock between
///    committers; the collector only `try_lock`s); a chain found removed is re-resolved;
/// 2. validate the write set under the locks (first committer wins; expected version);
/// 3. allocate the commit timestamp (after locking, so it exceeds every version in the chains);
/// 4. serializable only: validate every read key and scanned range — no version newer than the
///    snapshot and no lock held by another committer. This runs *after* step 3: a committer
///    with a smaller timestamp took its locks (and created its chains) before allocating, so
///    it is seen here. Then, for a durable database only (`log` is `Some`): append the
///    commit's record and wait until the sync policy's promise holds, still holding the locks
///    (see [`log_and_wait`]); on a failure install nothing, publish the timestamp empty and
///    return the log's error;
/// 5. link the new versions (rewriting each key's head mirror in its map entry, under that
///    entry's shard read lock), note the keys changed for the scan index's head copies
///    (`raw::run_heads`), prune and retire (after the note), unlock;
/// 6. publish: mark the timestamp finished and return once it is visible, which needs every
///    smaller one finished (a failed step 4 publishes too, with nothing installed: timestamps
///    have no holes). Any committer makes finished timestamps visible, not only their own.
///
/// Write sets of [`pending::MIN_KEYS`] keys or more link their versions before step 3 and
/// publish before unlocking, so that later committers do not wait for their install (see
/// `pending`).
#[cfg(test)]
pub(crate) fn commit(
    clock: &Clock,
    source: &impl ChainSource,
    writes: &mut [Write<'_>],
    checks: Checks<'_>,
    horizon: &Horizon,
) -> Result<Committed, Error> {
    commit_pinned(
        clock,
        source,
        writes,
        checks,
        horizon,
        None,
        &crossbeam_epoch::pin(),
    )
}

/// [`commit`] under the caller's epoch pin (which may also be what keeps `horizon` alive: a
/// second pin would cost a thread-local lookup per commit), writing its record to `log`
/// first if the database is durable.
#[allow(clippy::too_many_arguments)]
pub(crate) fn commit_pinned(
    clock: &Clock,
    source: &impl ChainSource,
    writes: &mut [Write<'_>],
    checks: Checks<'_>,
    horizon: &Horizon,
    log: Option<&dyn CommitLog>,
    guard: &Guard,
) -> Result<Committed, Error> {
    debug_assert!(writes.windows(2).all(|w| w[0].key < w[1].key));
    // The fast path of the most common commit: one key, already in the map, its lock free, and
    // no reads to validate (read validation looks other keys up, which must not happen while
    // the map's shard lock is held). Same steps, minus the second lookup of the mirror and the
    // chain's reference count.
    //
    // A durable commit takes it too when its log never syncs at commit (`SyncPolicy::Never`):
    // it then appends and waits for its record inside `with_locked`, under the chain lock and
    // the map shard's read lock, in `log_and_wait`'s order (nothing installed before the
    // record is written; on a failure nothing installed, and the timestamp published empty
    // once both locks are released: see `Refused`).
    // That wait cannot deadlock: it waits only for a leader turn of the log's to end (its own,
    // or the one in progress when its `try_lock` of the writer lock failed), and a turn takes
    // no shard or chain lock (only the log's writer and buffer locks); nor does anything else
    // that holds the writer lock (close's final sync). Under `Never` a turn is a copy into
    // the mapped segment, and at a segment rollover a sync of the old segment to its end and
    // the creation of the next: bounded. What it costs: the shard's write lock (inserts of
    // new keys into that shard, and discards of empty chains) waits for the turn meanwhile,
    // so a rollover, whose sync writes out a whole segment that `Never` left unsynced, stalls
    // those for its length (reads do not wait: the shard lock is reader-preferring). Not under
    // `Always` or `Periodic`, where every wait may include a sync.
    if writes.len() == 1 && log.is_none_or(|log| !log.waits_for_sync()) {
        let key = writes[0].key;
        if checks.reads.is_none_or(ReadSet::is_empty) {
            let fast = source.with_locked(key, |writer, mirror| {
                // As `lock_all` does: the prune reads the superseded head's node.
                writer.prefetch_head_and_second(guard);
                let writers = std::slice::from_ref(writer);
                let mirrors = Mirrors::Found(mirror);
                validate_and_install(
                    clock, source, writes, writers, mirrors, checks, horizon, log, guard,
                )
            });
            // Unlocked (and the shard lock released) before publishing.
            if let Some(installed) = fast {
                return publish(installed, clock, writes, log);
            }
        }
    }
    let mut chains: Small<StrongArc<Chain>> = Small::with_capacity(writes.len());
    for write in writes.iter() {
        chains.push(source.resolve(write.key));
    }
    loop {
        let stale = match lock_all(&chains, guard) {
            Ok(writers) if writes.len() >= pending::MIN_KEYS => {
                // A big write set installs before its timestamp, so later committers do not
                // wait for its install; it keeps the locks until it has published.
                return pending::commit_pending(
                    clock, source, writes, &writers, checks, horizon, log, guard,
                );
            }
            Ok(writers) => {
                let installed = validate_and_install(
                    clock,
                    source,
                    writes,
                    &writers,
                    Mirrors::Lookup,
                    checks,
                    horizon,
                    log,
                    guard,
                );
                // Unlock before publishing (which may wait for smaller timestamps): a committer
                // that locks a key now sees our version (newer than its snapshot) and
                // conflicts as it should.
                drop(writers);
                return publish(installed, clock, writes, log);
            }
            Err(stale) => stale,
        };
        // The collector removed this chain after we resolved it: get the new one.
        chains[stale] = source.resolve(writes[stale].key);
    }
}

/// Step 6 of [`commit`], once everything is unlocked: publishes an installed commit, or the
/// timestamp of a refused one empty (returning its error).
fn publish(
    installed: Result<Installed<'_>, Refused<'_>>,
    clock: &Clock,
    writes: &[Write<'_>],
    log: Option<&dyn CommitLog>,
) -> Result<Committed, Error> {
    // A refused commit's timestamp is published (dropped) at the end of the closure.
    let committed = installed
        .map(Installed::publish)
        .map_err(|refused| refused.error);
    if let (Some(log), Ok(done), true) = (log, &committed, log_after_publish()) {
        let record = writes.iter().map(|w| (w.key, w.value()));
        log_and_wait(log, clock, done.ts, record)?;
    }
    committed
}

/// Where the install finds each written key's head mirror.
#[derive(Clone, Copy)]
enum Mirrors<'m> {
    /// Through [`ChainSource::with_mirror`], key by key.
    Lookup,
    /// Already found by [`ChainSource::with_locked`], with the one chain of the write set.
    Found(Option<&'m MirroredChain>),
}

/// A commit that installed its versions (or unwound while installing) and holds its
/// timestamp, not yet published.
struct Installed<'c> {
    publication: Publication<'c>,
    /// The backlog the prune found, or the panic that unwound the install.
    outcome: Result<usize, Box<dyn std::any::Any + Send>>,
}

impl Installed<'_> {
    /// Publishes the timestamp (the caller has unlocked everything), then resumes the install's
    /// unwinding if it panicked: its timestamp must not stay a hole, and publishing while
    /// locks are held could wait on a committer that waits for them.
    fn publish(self) -> Committed {
        let ts = self.publication.publish();
        match self.outcome {
            Ok(backlog) => Committed { ts, backlog },
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// A commit refused before it installed anything: the error, and the timestamp if it took
/// one, published empty when this drops. Handed back to the caller so that the drop happens
/// once every lock is released: publishing waits for every smaller timestamp, and a
/// committer holding one may wait for those locks (one that abandons a chain it created
/// takes its map shard's write lock, which the fast path holds shared while its log write
/// fails).
struct Refused<'c> {
    error: Error,
    _empty: Option<Publication<'c>>,
}

/// Steps 2–5 of [`commit`], with every chain of the write set locked.
#[allow(clippy::too_many_arguments)]
fn validate_and_install<'c>(
    clock: &'c Clock,
    source: &impl ChainSource,
    writes: &mut [Write<'_>],
    writers: &[ChainWriter<'_>],
    mirrors: Mirrors<'_>,
    checks: Checks<'_>,
    horizon: &Horizon,
    log: Option<&dyn CommitLog>,
    guard: &Guard,
) -> Result<Installed<'c>, Refused<'c>> {
    let abandon = |writes: &[Write<'_>], error: Error, empty: Option<Publication<'c>>| {
        // The fast path found the chain in the map, so did not create it, and holds the
        // map's shard lock, which discarding would take. An empty chain it found was created
        // by a general-path committer still in flight, which installs into it or discards
        // it itself.
        if let Mirrors::Lookup = mirrors {
            for (w, write) in writers.iter().zip(writes.iter()) {
                source.discard_if_empty(write.key, w, guard);
            }
        }
        Err(Refused {
            error,
            _empty: empty,
        })
    };
    if let Err(e) = validate_writes(writes, writers, checks, guard) {
        return abandon(writes, e, None);
    }
    let serializable = checks.snapshot.zip(checks.reads);
    let validate =
        |writes: &[Write<'_>], (s, reads)| validate_reads(source, writes, reads, s, guard);
    if reads_before_timestamp() {
        if let Some(Err(e)) = serializable.map(|sr| validate(writes, sr)) {
            return abandon(writes, e, None);
        }
    }
    if horizon.has_old_snapshots() {
        // An old snapshot keeps a version deep in each chain, and the prune reads down to it
        // (the superseded versions between are cold): take those misses now, not while later
        // committers wait for our timestamp. Without one, the prune stops at the superseded
        // head, whose prefetch (at lock time) overlaps the install.
        for w in writers {
            w.warm_for_prune(horizon, guard);
        }
    }
    let publication = clock.allocate();
    if !reads_before_timestamp() {
        if let Some(Err(e)) = serializable.map(|sr| validate(writes, sr)) {
            // Nothing installed: the timestamp is published empty, by the caller.
            return abandon(writes, e, Some(publication));
        }
    }
    if let Some(log) = log.filter(|_| !log_after_publish()) {
        let record = writes.iter().map(|w| (w.key, w.value()));
        if let Err(e) = log_and_wait(log, clock, publication.ts(), record) {
            // As for a failed read validation: nothing installed, the timestamp published
            // empty by the caller.
            return abandon(writes, e, Some(publication));
        }
    }
    let outcome = install(
        source,
        writes,
        writers,
        mirrors,
        publication.ts(),
        horizon,
        guard,
    );
    Ok(Installed {
        publication,
        outcome,
    })
}

/// The durable step of [`commit`] (after step 4): appends the record of the commit at `ts`
/// and waits until the log's sync policy promise holds (under `Always`: synced).
///
/// The caller holds every chain of the write set locked and its timestamp allocated, not
/// published, and installs only after this returns `Ok`:
/// - visibility never runs ahead of durability: the timestamp is published after the wait,
///   so no snapshot sees a commit a crash could take away; and on a failure there is nothing
///   to undo: the timestamp is published empty, as after a failed read validation.
///   (Installing first and waiting after unlocking would be cheaper for same-key committers,
///   but a failed sync would then leave installed versions that the clock makes visible
///   once the timestamp is published, as it must be: the clock would need a way to seal a
///   timestamp as failed.)
/// - Same-key commits are serialized by the chain locks and append under them, so per key
///   the log holds records in timestamp order; recovery relies on it.
pub(crate) fn log_and_wait<'a>(
    log: &dyn CommitLog,
    clock: &Clock,
    ts: u64,
    writes: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> Result<(), Error> {
    let record: Small<(&[u8], Option<&[u8]>)> = writes.collect();
    // Every commit at or below the visible timestamp appended its record before it became
    // visible (or never will: it published empty), so later appends are all above it.
    let floor = clock.visible() + 1;
    let lsn = log.append(ts, floor, &record)?;
    log.wait(lsn)
}

/// Whether a durable commit appends and waits for its record only after it published: only
/// as an injected fault in a loom negative control (a snapshot could see a commit that is
/// not durable).
fn log_after_publish() -> bool {
    crate::sync::faults::active(crate::sync::faults::Fault::LogAfterPublish)
}

/// Whether read validation runs before the timestamp is taken: only as an injected fault in a
/// loom negative control (it lets a committer with a smaller timestamp slip in unseen).
fn reads_before_timestamp() -> bool {
    crate::sync::faults::active(crate::sync::faults::Fault::ValidateReadsBeforeTimestamp)
}

/// Step 5 of [`commit`]: links the versions, notes the keys, prunes. Returns the backlog, or
/// the panic that unwound an install (after noting the keys: see below).
fn install(
    source: &impl ChainSource,
    writes: &mut [Write<'_>],
    writers: &[ChainWriter<'_>],
    mirrors: Mirrors<'_>,
    ts: u64,
    horizon: &Horizon,
    guard: &Guard,
) -> Result<usize, Box<dyn std::any::Any + Send>> {
    // Nothing here runs user code, but should an install unwind (an allocation failure, a
    // debug assertion), the versions linked before it still become visible (the timestamp is
    // published anyway): they must be noted like any others, so catch, note, and hand the
    // panic to the caller, which resumes it once unlocked and published. The note and the
    // prune are caught too, for the same hand-over: publishing while the locks are held could
    // wait on a committer that waits for them.
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let installed = catch_unwind(AssertUnwindSafe(|| {
        for (w, write) in writers.iter().zip(writes.iter_mut()) {
            let node = write.take_node();
            match mirrors {
                Mirrors::Lookup => source.with_mirror(write.key, w.chain(), |mirror| {
                    w.install_node(ts, node, mirror, guard);
                }),
                Mirrors::Found(mirror) => w.install_node(ts, node, mirror, guard),
            }
        }
    }));
    // After the installs, before the chains are unlocked and the timestamp is published: the
    // scan index's copies of the heads we just superseded must read as stale from then on
    // (for whoever later prunes and retires those heads, and for every snapshot that can see
    // this commit). Noting a key whose install did not happen is harmless.
    let noted = catch_unwind(AssertUnwindSafe(|| source.note_installed(&*writes, guard)));
    installed?;
    noted?;
    catch_unwind(AssertUnwindSafe(|| {
        let mut backlog = 0;
        // One batch for the whole commit: see `Retired` for why. Should a prune unwind, the
        // batch retires what it holds on drop.
        let mut retired = Retired::expecting(writers.len());
        for w in writers {
            backlog = backlog.max(w.prune(horizon, &mut retired, guard).above_horizon);
        }
        retired.retire(guard);
        backlog
    }))
}

/// First committer wins, and the expected version of a conditional write.
fn validate_writes(
    writes: &[Write<'_>],
    writers: &[ChainWriter<'_>],
    checks: Checks<'_>,
    guard: &Guard,
) -> Result<(), Error> {
    if let Some(expected) = checks.expect {
        for (w, Write { key, .. }) in writers.iter().zip(writes) {
            let current = w
                .chain()
                .lend_at(u64::MAX, guard)
                .and_then(|v| v.value.map(|_| v.ts));
            if current != expected {
                return Err(Error::PreconditionFailed {
                    key: Bytes::copy_from_slice(key),
                    current,
                });
            }
        }
    }
    if let Some(s) = checks.snapshot {
        if let Some(i) = writers
            .iter()
            .position(|w| w.newest_ts(guard).is_some_and(|ts| ts > s))
        {
            return Err(Error::Conflict {
                key: Bytes::copy_from_slice(writes[i].key),
                kind: ConflictKind::WriteWrite,
                range: None,
            });
        }
    }
    Ok(())
}

/// Whether another transaction wrote `chain` after `s`, or may be about to (holds its lock).
fn changed_since(chain: &Chain, s: u64, guard: &Guard) -> bool {
    // Lock first (Acquire): if it is free, its last holder's versions are visible to the
    // head load that follows.
    chain.is_locked() || chain.newest_ts(guard).is_some_and(|ts| ts > s)
}

/// Serializable validation: nothing this transaction read or scanned at `s` changed.
/// Keys in the write set are skipped: their chains are locked by us and validated as writes.
fn validate_reads(
    source: &impl ChainSource,
    writes: &[Write<'_>],
    reads: &ReadSet,
    s: u64,
    guard: &Guard,
) -> Result<(), Error> {
    let own = |key: &[u8]| writes.binary_search_by(|w| w.key.cmp(key)).is_ok();
    for key in &reads.keys {
        if own(key) {
            continue;
        }
        if let Some(chain) = source.lookup(key) {
            if changed_since(&chain, s, guard) {
                return Err(Error::Conflict {
                    key: Bytes::copy_from_slice(key),
                    kind: ConflictKind::ReadWrite,
                    range: None,
                });
            }
        }
    }
    for range in &reads.ranges {
        let mut phantom = false;
        let hit = source.find_in_range(range, &mut |key, chain| {
            if own(key) || !changed_since(chain, s, guard) {
                return false;
            }
            phantom = chain.lend_at(s, guard).is_none_or(|v| v.value.is_none());
            true
        });
        if let Some(key) = hit {
            return Err(Error::Conflict {
                key,
                kind: if phantom {
                    ConflictKind::Phantom
                } else {
                    ConflictKind::ReadWrite
                },
                range: Some(Box::new(range.clone())),
            });
        }
    }
    Ok(())
}

/// Locks every chain in order; on finding one the collector removed, unlocks all and returns
/// its index.
fn lock_all<'c>(
    chains: &'c [StrongArc<Chain>],
    guard: &Guard,
) -> Result<Small<ChainWriter<'c>>, usize> {
    let mut writers = Small::with_capacity(chains.len());
    for (i, chain) in chains.iter().enumerate() {
        let w = chain.lock();
        if w.is_removed() {
            return Err(i);
        }
        w.prefetch_head_and_second(guard);
        writers.push(w);
    }
    Ok(writers)
}

/// `Store`, except that looking up `poison` (its head mirror, or its chain for read
/// validation) unwinds: stands for any panic while a commit installs, links or validates (an
/// allocation failure with `panic` OOM handling, a tripped debug assertion such as
/// `with_mirror`'s).
#[cfg(all(test, not(loom)))]
pub(crate) struct Poisoned<'a> {
    pub(crate) store: &'a crate::store::Store,
    pub(crate) poison: &'a [u8],
}

#[cfg(all(test, not(loom)))]
impl ChainSource for Poisoned<'_> {
    fn resolve(&self, key: &[u8]) -> StrongArc<Chain> {
        self.store.resolve(key)
    }
    fn lookup(&self, key: &[u8]) -> Option<StrongArc<Chain>> {
        assert_ne!(key, self.poison, "injected panic mid-validation");
        self.store.get(key)
    }
    fn find_in_range(
        &self,
        range: &KeyRange,
        hit: &mut dyn FnMut(&[u8], &Chain) -> bool,
    ) -> Option<Bytes> {
        ChainSource::find_in_range(self.store, range, hit)
    }
    fn discard_if_empty(&self, key: &[u8], writer: &ChainWriter<'_>, guard: &Guard) {
        ChainSource::discard_if_empty(self.store, key, writer, guard)
    }
    fn with_mirror<R>(
        &self,
        key: &[u8],
        chain: &Chain,
        f: impl FnOnce(Option<&MirroredChain>) -> R,
    ) -> R {
        assert_ne!(key, self.poison, "injected panic mid-install");
        self.store.with_mirror(key, chain, f)
    }
    fn with_locked<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&ChainWriter<'_>, Option<&MirroredChain>) -> R,
    ) -> Option<R> {
        ChainSource::with_locked(self.store, key, f)
    }
    fn note_installed(&self, writes: &[Write<'_>], guard: &Guard) {
        ChainSource::note_installed(self.store, writes, guard)
    }
}

#[cfg(all(test, not(loom)))]
mod panic_mid_install {
    //! A commit that unwinds in the middle of its installs still publishes (`Publication`
    //! publishes on drop), so it must still note its keys: otherwise the scan index's copy of
    //! a superseded head would stay "current", so scans would read it (stale) and, once it is
    //! pruned and freed, through a dangling pointer. Both tests failed before the install
    //! loop noted its keys on unwind too.
    use std::ops::{Bound, ControlFlow};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::clock::Clock;
    use crate::index::Reason;
    use crate::raw::test_values::{counted, wait_for_drops};

    use crate::store::Store;

    fn scan(store: &Store, at: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        crate::iter::lend(
            store,
            (Bound::Unbounded, Bound::Unbounded),
            at,
            usize::MAX,
            |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                ControlFlow::Continue(())
            },
        );
        out
    }

    /// Commits a = [1; 8]… (the free of its version counted in `drops`) and b = "b1" at 1,
    /// lets a rebuild copy a's head into the run, then commits a = "a2", b = "b2" at 2
    /// through a source whose install of b unwinds after a's install.
    fn unwound_second_commit(drops: &std::sync::Arc<AtomicUsize>) -> (Store, Clock) {
        let store = Store::new();
        let clock = Clock::new();
        let keep_all = Horizon::at(0);
        let a1 = counted(drops, 1);
        let mut w1 = [Write::new(b"a", Some(&a1)), Write::new(b"b", Some(b"b1"))];
        commit(&clock, &store, &mut w1, Checks::default(), &keep_all).unwrap();
        store.maintain_index(Reason::Sweep);
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            let mut w2 = [Write::new(b"a", Some(b"a2")), Write::new(b"b", Some(b"b2"))];
            let source = Poisoned {
                store: &store,
                poison: b"b",
            };
            commit(&clock, &source, &mut w2, Checks::default(), &keep_all)
        }));
        assert!(unwound.is_err());
        assert_eq!(clock.visible(), 2, "the unwinding commit published");
        (store, clock)
    }

    #[test]
    fn a_commit_unwinding_mid_install_still_notes_its_keys() {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let (store, _clock) = unwound_second_commit(&drops);
        let guard = crossbeam_epoch::pin();
        let chain_says = store
            .get(b"a")
            .unwrap()
            .read_at(2, &guard)
            .and_then(|v| v.value.map(<[u8]>::to_vec));
        drop(guard);
        assert_eq!(chain_says.as_deref(), Some(&b"a2"[..]));
        let at2 = scan(&store, 2);
        assert_eq!(
            at2.first(),
            Some(&(b"a".to_vec(), b"a2".to_vec())),
            "stale copy: the scan at 2 returned a's version 1 though the chain's head is a2"
        );
    }

    #[test]
    fn a_superseded_value_freed_after_an_unwound_commit_is_never_read_through_a_copy() {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let (store, _clock) = unwound_second_commit(&drops);
        // The collector (nothing reads below 2) prunes a's version 1 and frees it.
        {
            let guard = crossbeam_epoch::pin();
            let chain = store.get(b"a").unwrap();
            assert_eq!(
                chain
                    .lock()
                    .prune_and_retire(&Horizon::at(2), &guard)
                    .unlinked,
                1
            );
        }
        wait_for_drops(&drops, 1);
        // The copy is marked stale, so the scan reads the chain (a copy served here would
        // point at the freed value: Miri reports a use after free).
        let mut seen_len = None;
        crate::iter::lend(
            &store,
            (Bound::Included(&b"a"[..]), Bound::Included(&b"a"[..])),
            2,
            usize::MAX,
            |_, v| {
                seen_len = Some(v.len());
                ControlFlow::Continue(())
            },
        );
        assert_eq!(seen_len, Some(2), "read a freed value through the copy");
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}

#[cfg(all(test, not(loom)))]
mod one_key_fast_path {
    //! The one-key commit finds its chain and mirror with one lookup and holds the map's
    //! shard lock meanwhile, so it must never wait there: on a busy chain it takes the
    //! general path, which waits for the lock like any multi-key commit.
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::clock::Clock;
    use crate::durable::log::{Log, LogOptions, Lsn};
    use crate::durable::policy::SyncPolicy;
    use crate::durable::report::{CheckpointReport, LogStats};
    use crate::durable::storage::SimStorage;
    use crate::error::Result;
    use crate::snapshot::Snapshot;
    use crate::store::Store;

    fn put<'a>(key: &'a [u8], value: &'a [u8]) -> [Write<'a>; 1] {
        [Write::new(key, Some(value))]
    }

    /// Commits `key = value` blindly, keeping every version.
    fn put_blind(
        store: &Store,
        clock: &Clock,
        key: &[u8],
        value: &[u8],
    ) -> Result<Committed, Error> {
        commit(
            clock,
            store,
            &mut put(key, value),
            Checks::default(),
            &Horizon::at(0),
        )
    }

    #[test]
    fn a_one_key_commit_on_a_locked_chain_waits_for_the_lock() {
        let (store, clock) = (Store::new(), Clock::new());
        put_blind(&store, &clock, b"k", b"1").unwrap();
        let chain = store.get(b"k").unwrap();
        let held = chain.lock();
        let held = std::thread::scope(|s| {
            // On a thread, with a deadline: a fast path that waited would hang, not fail.
            let tried = s.spawn(|| store.with_locked(b"k", |_, _| ()).is_none());
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !tried.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if !tried.is_finished() {
                // Let the waiting thread through, so that the scope can join it and the
                // failure is reported.
                drop(held);
                panic!("the fast path waited for a busy chain");
            }
            assert!(tried.join().unwrap(), "the fast path locked a busy chain");
            held
        });
        std::thread::scope(|s| {
            let second = s.spawn(|| put_blind(&store, &clock, b"k", b"2"));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!second.is_finished(), "committed past a held chain lock");
            drop(held);
            assert_eq!(second.join().unwrap().unwrap().ts, 2);
        });
        let guard = crossbeam_epoch::pin();
        let head = chain
            .newest(&guard)
            .and_then(|v| v.value.map(<[u8]>::to_vec));
        assert_eq!(head.as_deref(), Some(&b"2"[..]));
        // The mirror the fast path rewrote agrees with the chain.
        let mirrored = store
            .with_mirrored_chain(b"k", |_, mirror| mirror.get(&guard).map(|l| l.ts))
            .flatten();
        assert_eq!(mirrored, Some(2));
    }

    /// An install that unwinds on the fast path (here the timestamp-order debug assertion,
    /// standing for an allocation failure) still publishes its timestamp, after releasing the
    /// chain lock and the shard lock, and then unwinds.
    #[cfg(debug_assertions)]
    #[test]
    fn a_one_key_commit_unwinding_in_its_install_publishes_and_unlocks() {
        let (store, clock) = (Store::new(), Clock::new());
        put_blind(&store, &clock, b"k", b"1").unwrap();
        let chain = store.get(b"k").unwrap();
        {
            // A version from the future: the next commit's install trips the order check.
            let guard = crossbeam_epoch::pin();
            let w = chain.lock();
            store.with_mirror(b"k", &chain, |m| w.install(100, Some(b"future"), m, &guard));
        }
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            put_blind(&store, &clock, b"k", b"2")
        }));
        assert!(unwound.is_err(), "the install did not unwind");
        assert_eq!(
            clock.visible(),
            2,
            "the unwinding commit published its timestamp"
        );
        assert!(!chain.is_locked(), "the chain was left locked");
        // The shard's read lock was released: its write lock can be taken.
        assert!(
            store.shard_write_lock_is_free(b"k"),
            "the map shard was left read-locked"
        );
    }

    /// `Store`, except that the general path's lookup of a key's chain panics: a commit
    /// through it must take the fast path.
    struct FastPathOnly<'a>(&'a Store);

    impl ChainSource for FastPathOnly<'_> {
        fn resolve(&self, _: &[u8]) -> StrongArc<Chain> {
            panic!("the commit took the general path");
        }
        fn lookup(&self, key: &[u8]) -> Option<StrongArc<Chain>> {
            self.0.get(key)
        }
        fn find_in_range(
            &self,
            range: &KeyRange,
            hit: &mut dyn FnMut(&[u8], &Chain) -> bool,
        ) -> Option<Bytes> {
            ChainSource::find_in_range(self.0, range, hit)
        }
        fn discard_if_empty(&self, key: &[u8], writer: &ChainWriter<'_>, guard: &Guard) {
            ChainSource::discard_if_empty(self.0, key, writer, guard)
        }
        fn with_mirror<R>(
            &self,
            key: &[u8],
            chain: &Chain,
            f: impl FnOnce(Option<&MirroredChain>) -> R,
        ) -> R {
            self.0.with_mirror(key, chain, f)
        }
        fn with_locked<R>(
            &self,
            key: &[u8],
            f: impl FnOnce(&ChainWriter<'_>, Option<&MirroredChain>) -> R,
        ) -> Option<R> {
            ChainSource::with_locked(self.0, key, f)
        }
        fn note_installed(&self, writes: &[Write<'_>], guard: &Guard) {
            ChainSource::note_installed(self.0, writes, guard)
        }
    }

    /// A log under `SyncPolicy::Never` over `storage`.
    fn never_log(storage: &SimStorage) -> Log<SimStorage> {
        let options = LogOptions {
            policy: SyncPolicy::Never,
            ..LogOptions::default()
        };
        let dir = std::path::Path::new("/db");
        Log::create(storage.clone(), dir, 1, 1, options).unwrap()
    }

    /// A log that says when a wait failed.
    struct FlaggingLog {
        log: Log<SimStorage>,
        failed: AtomicBool,
    }

    impl CommitLog for FlaggingLog {
        fn append(&self, ts: u64, floor: u64, writes: &[(&[u8], Option<&[u8]>)]) -> Result<Lsn> {
            CommitLog::append(&self.log, ts, floor, writes)
        }
        fn wait(&self, lsn: Lsn) -> Result<()> {
            let waited = CommitLog::wait(&self.log, lsn);
            self.failed.store(waited.is_err(), Ordering::SeqCst);
            waited
        }
        fn waits_for_sync(&self) -> bool {
            CommitLog::waits_for_sync(&self.log)
        }
        fn close(&self) -> Result<()> {
            CommitLog::close(&self.log)
        }
        fn checkpoint(&self, snapshot: &Snapshot) -> Result<CheckpointReport> {
            CommitLog::checkpoint(&self.log, snapshot)
        }
        fn stats(&self) -> LogStats {
            CommitLog::stats(&self.log)
        }
    }

    /// A fast-path commit whose log write fails publishes its timestamp (empty) only once it
    /// has released the chain lock and the shard lock: publishing waits for every smaller
    /// timestamp, and the committer holding one may be waiting for that shard's write lock
    /// (to discard a chain it created and abandons).
    #[test]
    fn a_failed_durable_fast_path_commit_publishes_after_releasing_its_locks() {
        let storage = SimStorage::new();
        let log = FlaggingLog {
            log: never_log(&storage),
            failed: AtomicBool::new(false),
        };
        let (store, clock, keep_all) = (Store::new(), Clock::new(), Horizon::at(0));
        put_blind(&store, &clock, b"k", b"1").unwrap();
        let chain = store.get(b"k").unwrap();
        // A committer with a smaller timestamp, still in flight.
        let smaller = clock.allocate();
        storage.fail_next_write(0);
        std::thread::scope(|s| {
            let failing = s.spawn(|| {
                commit_pinned(
                    &clock,
                    &FastPathOnly(&store),
                    &mut put(b"k", b"2"),
                    Checks::default(),
                    &keep_all,
                    Some(&log),
                    &crossbeam_epoch::pin(),
                )
            });
            // A deadline, not a timing target: the old behaviour held the locks until the
            // smaller timestamp was published, which happens only after this loop.
            let released = || {
                log.failed.load(Ordering::SeqCst)
                    && !chain.is_locked()
                    && store.shard_write_lock_is_free(b"k")
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !released() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let (released, returned_early) = (released(), failing.is_finished());
            drop(smaller);
            let err = failing.join().unwrap().unwrap_err();
            assert!(
                !returned_early,
                "returned before a smaller timestamp was visible"
            );
            assert!(
                released,
                "the failed commit held its locks while it waited to publish"
            );
            assert!(matches!(err, Error::CommitOutcomeUnknown { .. }), "{err:?}");
        });
        assert_eq!(clock.visible(), 3, "the failed commit published empty");
        let guard = crossbeam_epoch::pin();
        assert_eq!(
            chain.version_count(&guard),
            1,
            "the failed commit installed"
        );
    }

    /// A durable one-key commit under `SyncPolicy::Never` takes the fast path, appending and
    /// waiting for its record under the chain lock and the shard's read lock. A failed
    /// write there installs nothing, publishes its timestamp empty, poisons the log and
    /// leaves both locks free, as on the general path.
    #[test]
    fn a_failed_write_on_the_durable_fast_path_installs_nothing_and_poisons() {
        let storage = SimStorage::new();
        let log = never_log(&storage);
        let (store, clock, keep_all) = (Store::new(), Clock::new(), Horizon::at(0));
        // The first write of the key creates its chain (general path).
        put_blind(&store, &clock, b"k", b"1").unwrap();
        let durable_put = |value: &[u8]| {
            commit_pinned(
                &clock,
                &FastPathOnly(&store),
                &mut put(b"k", value),
                Checks::default(),
                &keep_all,
                Some(&log),
                &crossbeam_epoch::pin(),
            )
        };
        assert_eq!(durable_put(b"2").unwrap().ts, 2);
        storage.fail_next_write(0);
        let err = durable_put(b"3").unwrap_err();
        assert!(matches!(err, Error::CommitOutcomeUnknown { .. }), "{err:?}");
        assert!(!err.is_retryable());
        assert_eq!(clock.visible(), 3, "the failed commit published empty");
        let chain = store.get(b"k").unwrap();
        assert!(!chain.is_locked(), "the chain was left locked");
        assert!(
            store.shard_write_lock_is_free(b"k"),
            "the map shard was left read-locked"
        );
        let guard = crossbeam_epoch::pin();
        assert_eq!(
            chain.version_count(&guard),
            2,
            "the failed commit installed"
        );
        let head = chain
            .newest(&guard)
            .map(|v| (v.ts, v.value.map(<[u8]>::to_vec)));
        assert_eq!(head, Some((2, Some(b"2".to_vec()))));
        let mirrored = store
            .with_mirrored_chain(b"k", |_, mirror| mirror.get(&guard).map(|l| l.ts))
            .flatten();
        assert_eq!(mirrored, Some(2), "the mirror moved past the chain");
        drop(guard);
        let err = durable_put(b"4").unwrap_err();
        assert!(matches!(err, Error::Poisoned { .. }), "{err:?}");
        assert_eq!(clock.visible(), 4, "the refused commit published empty");
    }

    #[test]
    fn a_conflicting_one_key_commit_installs_nothing_and_unlocks() {
        let (store, clock, keep_all) = (Store::new(), Clock::new(), Horizon::at(0));
        put_blind(&store, &clock, b"k", b"1").unwrap();
        let stale = Checks {
            snapshot: Some(0),
            ..Checks::default()
        };
        let err = commit(&clock, &store, &mut put(b"k", b"2"), stale, &keep_all).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(
            clock.visible(),
            1,
            "a failed write check takes no timestamp"
        );
        let chain = store.get(b"k").unwrap();
        assert!(!chain.is_locked(), "the fast path left the chain locked");
        let guard = crossbeam_epoch::pin();
        assert_eq!(chain.version_count(&guard), 1);
    }
}
