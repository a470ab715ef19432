//! Deliberate protocol faults, so that each negative-control model runs the production code
//! with exactly one step broken and loom must reject it.
//!
//! Compiled in every build, so the code that asks needs no `cfg(loom)`: outside loom,
//! [`active`] is constant `false` and the branch it guards is compiled out.

use std::sync::atomic::{AtomicU8, Ordering};

/// A protocol step that a negative-control model breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[cfg_attr(not(all(loom, test)), allow(dead_code))] // the variants only a model test injects
pub(crate) enum Fault {
    /// No fault: the production protocol.
    None = 0,
    /// Snapshot registration trusts the timestamp it read before announcing itself
    /// (skips the `floor` check), so a concurrent watermark can pass it.
    RegisterWithoutFloorCheck = 1,
    /// A committer publishes its timestamp without waiting for smaller ones (holes).
    PublishWithoutWaiting = 2,
    /// A serializable commit validates its reads before taking its timestamp.
    ValidateReadsBeforeTimestamp = 3,
    /// An unregistered latest read walks past a head newer than its visible timestamp
    /// (as a registered snapshot may), into versions pruning can unlink under it.
    LatestReadWalksPastHead = 4,
    /// The head cache is rewritten without its sequence word, so a reader can combine one
    /// version's timestamp with another's value.
    HeadCacheWithoutSeqlock = 5,
    /// A committer marks its timestamp finished with a `Relaxed` store, so a helper that
    /// makes it visible does not carry the committer's installs to snapshots.
    FinishedMarkRelaxed = 6,
    /// A committer marks its timestamp finished without waiting for its ring slot to be
    /// consumed, overwriting a smaller timestamp's mark.
    RingReuseWithoutWaiting = 7,
    /// Advancing the visible timestamp trusts allocation, not the finished marks.
    AdvanceOverUnfinished = 8,
    /// The index rebuild seals the active delta without holding the gate exclusively, so
    /// an inserter that loaded the old state can insert into a delta already merged.
    SealWithoutGate = 9,
    /// The index rebuild reads a sealed delta without holding its placer lock, so entries
    /// a scan took from the bag but has not yet put in the list reach neither the run nor
    /// any later state.
    RebuildReadsWhilePlacing = 10,
    /// A placer lowers a delta's unplaced count before putting the entries in the list,
    /// so a scan can read zero and walk a list that lacks them.
    PlaceCountsFirst = 11,
    /// Scans read a delta's unplaced count Relaxed, so reading zero does not make the
    /// placer's list inserts visible.
    PlacedCheckRelaxed = 12,
    /// A committer marks its keys changed without the `SeqCst` fence after its installs,
    /// so neither it nor a rebuild copying heads need see the other's step.
    NoteWithoutFence = 13,
    /// A committer marks its keys changed only in the current run's set, not in the
    /// newest set (of a run being built).
    NoteOnlyCurrentRun = 14,
    /// Pruning strips a chain's oldest tombstones up to the horizon's visible timestamp,
    /// ignoring the transactions that read below them (the writer floor).
    StripIgnoringWriterFloor = 15,
    /// A committer that moved the visible timestamp does not wake the publishers asleep
    /// waiting for it to reach theirs.
    SkipWake = 16,
    /// A big commit publishes its timestamp before stamping its pending versions, so a
    /// snapshot that includes the commit can read a version still marked pending.
    PublishBeforeStamp = 18,
    /// Scans lend the scan index's copies of chain heads without checking their keys'
    /// changed bits, so a scan can lend a head that a commit superseded and a prune
    /// retired before the scan pinned.
    LendSkipsChangedCheck = 19,
    /// Committers do not mark their keys changed in the scan index, so the copies of the
    /// heads they superseded stay current while those heads are pruned and freed.
    NoteSkipped = 20,
    /// The log's leader publishes its batch as durable once it wrote it, before the sync,
    /// so a follower can return (and publish its commit) with its frame not yet on the disk.
    DurableBeforeSync = 21,
    /// A waiter for the log returns when a leader's turn ended without checking that the
    /// batch held its own frame (it may have been appended after the batch was taken).
    WaitTrustsAnyTurn = 22,
    /// A durable commit installs, unlocks and publishes first, and appends its record and
    /// waits for the log only then (write-behind), so a snapshot can see a commit that a
    /// power loss would take back.
    LogAfterPublish = 23,
    /// Segment retirement takes every segment the leader has moved past for covered,
    /// without looking at its records' largest timestamp (as if log order were timestamp
    /// order), so it can remove a record newer than the checkpoint.
    RetireIgnoringMaxTs = 24,
    /// Reading the log's sync count takes the writer lock (which only leaders may take), so
    /// a committer whose `try_lock` meets that reader sleeps for a turn nobody ends.
    SyncCountUnderWriterLock = 25,
    /// The log's sync releases its lock before syncing (holding it only to read what to
    /// sync), so a sync that runs after a failed one can publish as durable the positions
    /// whose pages the failed one dropped.
    SyncOutsideItsLock = 26,
    /// A segment rollover syncs the old segment without checking, under the sync lock,
    /// whether a sync outside the writer lock failed meanwhile: the new segment then vouches
    /// for an old one whose pages the failed sync dropped.
    RollOverPastFailure = 27,
}

static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// Selects the fault for the models that follow.
#[cfg_attr(not(all(loom, test)), allow(dead_code))] // injected only by the model tests
pub(crate) fn inject(f: Fault) {
    ACTIVE.store(f as u8, Ordering::SeqCst);
}

/// Whether `f` is injected: never outside loom builds.
#[inline(always)]
pub(crate) fn active(f: Fault) -> bool {
    cfg!(loom) && ACTIVE.load(Ordering::SeqCst) == f as u8
}
