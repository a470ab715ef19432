//! Models of the write-ahead log's group commit: a commit's wait returns only once its frame
//! is durable, and a committer that publishes its timestamp after that wait never lets a
//! snapshot see a commit that a power loss would take back.
//!
//! The storage is `SimStorage`, whose calls loom sees as single steps (its lock is a plain
//! `parking_lot` one, never held across a loom step); "durable" means what
//! `SimStorage::crash(Crash::SyncedOnly)` keeps.

use std::path::{Path, PathBuf};

use super::*;
use crate::durable::log::{Log, LogOptions, Lsn};
use crate::durable::policy::SyncPolicy;
use crate::durable::storage::{Crash, SimStorage, Storage};
use crate::durable::{record, segment};

fn dir() -> PathBuf {
    PathBuf::from("/db")
}

/// The commit timestamps whose frames a power loss at this moment would keep.
fn durable_ts(storage: &SimStorage, dir: &Path) -> Vec<u64> {
    logged_ts(&storage.crash(Crash::SyncedOnly), dir)
}

/// The commit timestamps whose frames recovery reads back from `after`'s files (a crash of
/// the process alone keeps every written byte: `after` is then the storage itself).
fn logged_ts(after: &SimStorage, dir: &Path) -> Vec<u64> {
    let names = after.list(dir).unwrap();
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let path = dir.join(name);
        let bytes = after.read(&path).unwrap();
        let known_synced = if i + 1 < names.len() { u64::MAX } else { 0 };
        let read = segment::parse(&path, &bytes, known_synced).unwrap();
        out.extend(
            read.frames
                .iter()
                .map(|f| record::decode(f.frame.payload).unwrap().ts),
        );
    }
    out
}

struct Durable {
    clock: Clock,
    storage: SimStorage,
    log: Log<SimStorage>,
    policy: SyncPolicy,
}

impl Durable {
    fn new() -> Arc<Self> {
        Self::with_policy(SyncPolicy::Always)
    }

    fn with_policy(policy: SyncPolicy) -> Arc<Self> {
        Self::with_options(LogOptions {
            policy,
            ..LogOptions::default()
        })
    }

    fn with_options(options: LogOptions) -> Arc<Self> {
        let storage = SimStorage::new();
        let log = Log::create(storage.clone(), &dir(), 1, 1, options).unwrap();
        Arc::new(Self {
            clock: Clock::new(),
            storage,
            log,
            policy: options.policy,
        })
    }

    /// The commit timestamps whose frames survive what the policy promises a commit
    /// survives: a power loss under `Always`, a crash of the process otherwise.
    fn kept_ts(&self) -> Vec<u64> {
        if self.policy.syncs_at_commit() {
            durable_ts(&self.storage, &dir())
        } else {
            logged_ts(&self.storage, &dir())
        }
    }

    /// A committer as the engine will run one: takes a timestamp, appends its record, waits
    /// for it to be what the policy promises (durable under `Always`, written otherwise),
    /// and only then publishes the timestamp.
    fn commit(&self, key: &'static [u8]) -> u64 {
        self.commit_with(key, |_| {})
    }

    /// [`commit`](Self::commit), calling `appended` with the record's position between the
    /// append and the wait.
    fn commit_with(&self, key: &'static [u8], appended: impl FnOnce(Lsn)) -> u64 {
        let publication = self.clock.allocate();
        let ts = publication.ts();
        let lsn = self.log.append(ts, [(key, Some(&b"v"[..]))]).unwrap();
        appended(lsn);
        self.log.wait_committed(lsn).unwrap();
        let promise = if self.policy.syncs_at_commit() {
            "durable"
        } else {
            "written"
        };
        assert!(
            self.kept_ts().contains(&ts),
            "commit {ts} acknowledged but not {promise}"
        );
        publication.publish()
    }
}

/// Model 22: two committers share the log under `SyncPolicy::Always` while a reader takes
/// the visible timestamp (once something is visible). Each wait returns only once its own frame is durable (one leader
/// may sync both frames, or each its own batch; a frame appended while a batch is being
/// synced waits for the next), and every timestamp at or below what the reader sees visible
/// is durable.
#[test]
fn group_commit_acknowledges_only_durable_frames() {
    faults::inject(Fault::None);
    check_group_commit();
}

fn check_group_commit() {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let d = Durable::new();
        let committers: Vec<_> = [&b"x"[..], &b"y"[..]]
            .into_iter()
            .map(|key| {
                let d = Arc::clone(&d);
                loom::thread::spawn(move || d.commit(key))
            })
            .collect();
        // Once a commit is visible (a reader that looked earlier checks nothing), while
        // the other may still be in flight.
        d.clock.wait_visible(1);
        let visible = d.clock.visible();
        let kept = durable_ts(&d.storage, &dir());
        for ts in 1..=visible {
            assert!(
                kept.contains(&ts),
                "timestamp {ts} visible but not durable (durable: {kept:?})"
            );
        }
        for c in committers {
            c.join().unwrap();
        }
        let batches = match d.log.syncs() {
            1 => "one leader synced both frames",
            2 => "two batches",
            n => panic!("{n} syncs for two commits"),
        };
        seen.saw(format!("{batches}, reader saw {visible} visible"));
    });
    outcomes.assert_explored(&[
        "one leader synced both frames",
        "two batches",
        "reader saw 1 visible",
        "reader saw 2 visible",
    ]);
}

/// Model 23: model 22's committers without the reader (a smaller state space, in which the
/// negative controls' schedules fit the preemption bound): each wait returns only once its
/// own frame is durable.
#[test]
fn a_wait_returns_only_once_its_frame_is_durable() {
    faults::inject(Fault::None);
    check_waits();
}

fn check_waits() {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    // A follower that reads a durable mark published early must run between the leader's
    // write and its sync: a schedule of three preemptions (loom's bounded search meets it
    // no sooner), cheap in this two-thread model.
    model_with_preemptions(3, move || {
        let d = Durable::new();
        let d2 = Arc::clone(&d);
        let theirs = loom::thread::spawn(move || d2.commit(b"y"));
        d.commit(b"x");
        theirs.join().unwrap();
        seen.saw(match d.log.syncs() {
            1 => "one leader synced both frames",
            2 => "two batches",
            n => panic!("{n} syncs for two commits"),
        });
    });
    outcomes.assert_explored(&["one leader synced both frames", "two batches"]);
}

/// Negative control for model 23: a leader that publishes its batch as durable once it is
/// written, before the sync, lets a follower return with its frame not yet on the disk.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_durable_before_sync_is_caught() {
    faults::inject(Fault::DurableBeforeSync);
    check_waits();
}

/// Negative control for model 23: a follower that returns when a leader's turn ended,
/// without checking its own position, returns with a frame appended after the batch was
/// taken.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_wait_trusting_any_turn_is_caught() {
    faults::inject(Fault::WaitTrustsAnyTurn);
    check_waits();
}

/// Model 31: two committers share the log under `SyncPolicy::Never` with a periodic sync
/// (a leader turn) before one of them, in segments of one frame. A committer that finds no
/// frame queued, no leader at work and its segment created writes its own frame at once; one
/// that does not queues it for a leader. Each wait returns only once its frame is written (a
/// crash of the process would keep it), and both frames are in the log once. (A direct
/// write that ended no turn could strand a waiter only after a third party led the waiter's
/// batch, a schedule past this model's size, so the model has no negative control:
/// `Log::append_directly` ends a turn like every holder of the writer lock.)
#[test]
fn a_never_commit_returns_once_its_frame_is_written() {
    faults::inject(Fault::None);
    check_never_waits();
}

fn check_never_waits() {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        // Segments of one frame each: the second append starts a segment, which only a
        // leader creates, so it queues whatever the schedule.
        let d = Durable::with_options(LogOptions {
            policy: SyncPolicy::Never,
            segment_size: segment::HEADER_LEN as u64 + 1,
        });
        let commit = |d: &Durable, key: &'static [u8]| {
            let mut path = "";
            d.commit_with(key, |lsn| {
                path = if d.log.written_bytes() >= lsn.0 {
                    "written at append"
                } else {
                    "queued for a leader"
                };
            });
            path
        };
        let d2 = Arc::clone(&d);
        let theirs = loom::thread::spawn(move || commit(&d2, b"y"));
        // The periodic syncer's step: a leader turn that writes what is queued, then a sync
        // outside the writer lock.
        d.log.sync_now().unwrap();
        let mine = commit(&d, b"x");
        let theirs = theirs.join().unwrap();
        let mut logged = logged_ts(&d.storage, &dir());
        logged.sort_unstable();
        assert_eq!(logged, [1, 2], "both frames written, each once");
        assert_eq!(
            d.storage.list(&dir()).unwrap().len(),
            2,
            "one segment a frame"
        );
        seen.saw(mine);
        seen.saw(theirs);
    });
    outcomes.assert_explored(&["written at append", "queued for a leader"]);
}

/// Model 32: two syncs outside the writer lock (the periodic syncer's and `close`'s, say)
/// after a frame was written, and the first to reach the disk fails. The operating system
/// then drops the frame's pages (fsyncgate) and may report the other sync a success: that
/// sync must not publish the frame as durable. (The sync lock, held across each sync, and
/// the poisoning before it is released, see to it.)
#[test]
fn a_sync_after_a_failed_one_publishes_nothing() {
    faults::inject(Fault::None);
    check_syncs_after_a_failure();
}

fn check_syncs_after_a_failure() {
    model(|| {
        let d = Durable::with_policy(SyncPolicy::Never);
        let lsn = d.log.append(1, [(&b"k"[..], Some(&b"v"[..]))]).unwrap();
        d.log.wait_written(lsn).unwrap();
        d.storage.fail_next_sync();
        let d2 = Arc::clone(&d);
        let theirs = loom::thread::spawn(move || d2.log.sync_now().is_ok());
        let mine = d.log.sync_now().is_ok();
        let theirs = theirs.join().unwrap();
        assert!(
            !mine && !theirs,
            "a sync after a failed one reported success"
        );
        assert!(
            durable_ts(&d.storage, &dir()).is_empty(),
            "the failed sync's pages survived"
        );
        assert!(
            d.log.wait_durable(lsn).is_err(),
            "a frame whose pages the failed sync dropped is reported durable"
        );
    });
}

/// Negative control for model 32: the sync lock released before the sync lets the second
/// sync publish the dropped frame.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_sync_outside_its_lock_is_caught() {
    faults::inject(Fault::SyncOutsideItsLock);
    check_syncs_after_a_failure();
}

/// Model 33: a sync outside the writer lock fails while a committer's frame starts a new
/// segment (segments of one frame), so the committer's leader turn syncs the old segment and
/// creates the next one. If the failed sync dropped the old segment's frame, the rollover
/// must not go on: a segment that another follows is trusted to its end, and a power loss
/// would leave the old one damaged below that promise (recovery would report corruption,
/// never a torn tail). Whatever the order, every segment that a later one follows holds its
/// frames after a power loss.
#[test]
fn a_rollover_after_a_failed_sync_stops() {
    faults::inject(Fault::None);
    check_rollover_after_a_failure();
}

fn check_rollover_after_a_failure() {
    model(|| {
        let d = Durable::with_options(LogOptions {
            policy: SyncPolicy::Never,
            segment_size: segment::HEADER_LEN as u64 + 1,
        });
        let first = d.log.append(1, [(&b"x"[..], Some(&b"v"[..]))]).unwrap();
        d.log.wait_written(first).unwrap();
        d.storage.fail_next_sync();
        let d2 = Arc::clone(&d);
        let syncer = loom::thread::spawn(move || {
            let _ = d2.log.sync_now();
        });
        // Starts segment 2: its wait leads the rollover (the queued path: a new segment is
        // a leader's to create).
        let _ = d
            .log
            .append(2, [(&b"y"[..], Some(&b"v"[..]))])
            .and_then(|lsn| d.log.wait_written(lsn));
        syncer.join().unwrap();
        // A power loss now: if segment 2 survives, segment 1 must hold its frame.
        let after = d.storage.crash(Crash::SyncedOnly);
        let names = after.list(&dir()).unwrap();
        if let [first, _second, ..] = names.as_slice() {
            let path = dir().join(first);
            let bytes = after.read(&path).unwrap();
            let frames = segment::parse(&path, &bytes, u64::MAX).map(|read| read.frames.len());
            assert!(
                matches!(frames, Ok(1)),
                "{first} is followed by a segment but lost frames a failed sync dropped \
                 ({frames:?})"
            );
        }
    });
}

/// Negative control for model 33: the rollover that does not check for a failed sync syncs
/// the old segment without its dropped frame and creates the next one.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_rollover_past_a_failed_sync_is_caught() {
    faults::inject(Fault::RollOverPastFailure);
    check_rollover_after_a_failure();
}

/// Model 28: a statistics read of the log (`Log::syncs`, which every commit's background
/// checkpoint check and `Db::stats` make) racing a committer's wait. The writer lock is the
/// leader's: a waiter that fails to take it sleeps until a turn ends, so a reader holding it
/// even briefly (and ending no turn) could leave the committer asleep for good. The read
/// must not take it; the commit returns, durable.
#[test]
fn a_statistics_read_never_strands_a_waiter() {
    faults::inject(Fault::None);
    check_stats_read();
}

fn check_stats_read() {
    model(|| {
        let d = Durable::new();
        let d2 = Arc::clone(&d);
        let committer = loom::thread::spawn(move || d2.commit(b"x"));
        let syncs = d.log.syncs();
        assert!(syncs <= 1, "{syncs} syncs for one commit");
        committer.join().unwrap();
        assert_eq!(d.log.syncs(), 1);
    });
}

/// Negative control for model 28: the sync count read under the writer lock strands the
/// committer whose `try_lock` met the reader.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_sync_count_under_writer_lock_is_caught() {
    faults::inject(Fault::SyncCountUnderWriterLock);
    check_stats_read();
}

/// Model 24: the log's only sync fails while two committers share it. No wait returns `Ok`
/// (nothing is durable); the failed batch's waiters get `CommitOutcomeUnknown`, a committer
/// whose frame was not in it (appended later, or refused) gets `Poisoned`.
#[test]
fn a_failed_sync_acknowledges_nothing() {
    faults::inject(Fault::None);
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let d = Durable::new();
        d.storage.fail_next_sync();
        let commit = |d: &Durable, ts: u64| {
            let result = d
                .log
                .append(ts, [(&b"k"[..], None)])
                .and_then(|lsn| d.log.wait_durable(lsn));
            match result {
                Ok(()) => panic!("commit {ts} acknowledged after the only sync failed"),
                Err(Error::CommitOutcomeUnknown { .. }) => "unknown",
                Err(Error::Poisoned { .. }) => "poisoned",
                Err(e) => panic!("unexpected {e:?}"),
            }
        };
        let d2 = Arc::clone(&d);
        let theirs = loom::thread::spawn(move || commit(&d2, 2));
        let mine = commit(&d, 1);
        let theirs = theirs.join().unwrap();
        assert!(durable_ts(&d.storage, &dir()).is_empty());
        let mut both = [mine, theirs];
        both.sort_unstable();
        seen.saw(format!("{} and {}", both[0], both[1]));
    });
    outcomes.assert_explored(&["poisoned and unknown", "unknown and unknown"]);
}

/// Model 25: the real commit path of a durable database. A one-key commit runs `commit`
/// with a log over `SimStorage`, while a reader waits for it to become visible and reads its
/// chain: by then its record must be what the policy promises (the commit appends and waits
/// under its chain lock, before it installs and publishes). Under `SyncPolicy::Always` it
/// takes the general path and its record must be durable (synced); under `Never` it takes
/// the one-key fast path, appending and waiting inside `with_locked`, and its record must be
/// written (kept by a crash of the process). One committer: with two, the state space of the
/// whole commit path (chain locks, epoch pins, clock, log) does not fit the CI budget; model
/// 22 covers two committers sharing a batch.
#[test]
fn a_durable_commit_is_visible_only_once_durable() {
    faults::inject(Fault::None);
    check_durable_commit(SyncPolicy::Always);
    check_durable_commit(SyncPolicy::Never);
}

/// Negative control for model 25: a commit that installs and publishes first and writes its
/// record afterwards (write-behind) lets the reader see a commit a power loss takes back.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_log_after_publish_is_caught() {
    faults::inject(Fault::LogAfterPublish);
    check_durable_commit(SyncPolicy::Always);
}

/// Negative control for model 25 on the one-key fast path (`SyncPolicy::Never`): the same
/// write-behind lets the reader see a commit whose record was not even written.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_log_after_publish_on_the_fast_path_is_caught() {
    faults::inject(Fault::LogAfterPublish);
    check_durable_commit(SyncPolicy::Never);
}

fn check_durable_commit(policy: SyncPolicy) {
    model(move || {
        let world = World::new(&[b"x"]);
        let d = Durable::with_policy(policy);
        let committer = {
            let (world, d) = (Arc::clone(&world), Arc::clone(&d));
            loom::thread::spawn(move || {
                let mut writes = [Write::new(b"x", Some(&b"v"[..]))];
                let log: &dyn crate::commit::CommitLog = &d.log;
                let guard = crossbeam_epoch::pin();
                crate::commit::commit_pinned(
                    &world.clock,
                    &*world,
                    &mut writes,
                    Checks::default(),
                    &NO_GC,
                    Some(log),
                    &guard,
                )
                .unwrap()
                .ts
            })
        };
        world.clock.wait_visible(1);
        let kept = d.kept_ts();
        let guard = crossbeam_epoch::pin();
        let seen = world.chains[0]
            .read_at(world.clock.visible(), &guard)
            .map(|v| v.ts);
        assert_eq!(seen, Some(1), "the visible commit is not in its chain");
        assert!(
            kept.contains(&1),
            "read a version at 1 that is not durable under {policy:?} (kept: {kept:?})"
        );
        drop(guard);
        assert_eq!(committer.join().unwrap(), 1);
        // The general path resolves the key's chain; the fast path finds it in `with_locked`.
        let fast = world.resolves.load(StdOrdering::Relaxed) == 0;
        assert_eq!(fast, policy == SyncPolicy::Never, "fast path taken: {fast}");
    });
}

/// Model 26: two commits roll the log over (one frame per segment) while the committer of
/// the first then takes the visible timestamp `S` and retires the segments covered by it, as
/// the engine does after installing a checkpoint at `S`. Log order is not timestamp order
/// (the commit at 2 can reach the first segment before the commit at 1 reaches the second),
/// so retirement goes by each segment's largest record timestamp: every commit above `S`
/// stays durable, and the segments left are numbered without a gap, while the other
/// committer's leader may still be moving to the next segment.
#[test]
fn retirement_keeps_every_record_above_the_checkpoint() {
    faults::inject(Fault::None);
    check_retirement();
}

/// Negative control for model 26: retirement that ignores the records' timestamps removes
/// the first segment, holding the commit at 2, after a checkpoint at 1.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_retirement_ignoring_max_ts_is_caught() {
    faults::inject(Fault::RetireIgnoringMaxTs);
    check_retirement();
}

fn check_retirement() {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let d = Durable::with_options(LogOptions {
            policy: SyncPolicy::Always,
            segment_size: 1,
        });
        // Timestamp 1 is taken before the other committer takes 2, and appended in either
        // order with it.
        let first = d.clock.allocate();
        let other = {
            let d = Arc::clone(&d);
            loom::thread::spawn(move || d.commit(b"y"))
        };
        let lsn = d
            .log
            .append(first.ts(), [(&b"x"[..], Some(&b"v"[..]))])
            .unwrap();
        d.log.wait_durable(lsn).unwrap();
        first.publish();
        let covered = d.clock.visible();
        let removed = d.log.remove_segments_covered_by(covered).unwrap();
        other.join().unwrap();

        let kept = durable_ts(&d.storage, &dir());
        for ts in covered + 1..=2 {
            assert!(
                kept.contains(&ts),
                "commit {ts} above the checkpoint at {covered} lost (kept: {kept:?})"
            );
        }
        let after = d.storage.crash(Crash::SyncedOnly);
        let numbers: Vec<u64> = after
            .list(&dir())
            .unwrap()
            .iter()
            .filter_map(|n| segment::parse_file_name(n))
            .collect();
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "a gap in the segments: {numbers:?}"
        );
        let holds = match numbers.first() {
            Some(1) => format!(", the first segment holds {}", kept[0]),
            _ => String::new(),
        };
        seen.saw(format!("checkpoint at {covered}, {removed} removed{holds}"));
    });
    outcomes.assert_explored(&[
        "checkpoint at 1, 0 removed, the first segment holds 2",
        "checkpoint at 1, 1 removed",
        "checkpoint at 2, 1 removed",
    ]);
}
