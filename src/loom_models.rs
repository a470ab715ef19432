//! loom models of the protocol races. Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test --lib --release loom_models
//! ```
//!
//! Each model runs the production code (the clock, the registry, the chains and
//! [`commit`](crate::commit::commit)) through the `sync` facade. Every model asserts that loom
//! explored more than one interleaving, so a build without loom instrumentation fails instead
//! of passing vacuously. The `broken_*` models inject one protocol fault
//! ([`Fault`]) and must be *rejected* by loom; they are `#[ignore]`d and run one per process by
//! `.ci/run`, which expects them to fail with the assertion message they name.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool as StdBool, AtomicUsize, Ordering as StdOrdering};
use std::sync::Mutex as StdMutex;

use bytes::Bytes;
use crossbeam_epoch::Guard;

use crate::clock::Clock;
use crate::commit::{commit, ChainSource, Checks, ReadSet, Write};
use crate::error::Error;
use crate::horizon::Horizon;
use crate::index::{Index, Reads};
use crate::raw::{Chain, ChainWriter, MirroredChain};
use crate::registry::{Registry, SlotId};
use crate::store::KeyRange;
use crate::sync::faults::{self, Fault};
use crate::sync::Arc;

/// A horizon that prunes nothing (timestamp 0 is below every commit).
static NO_GC: Horizon = Horizon::NOTHING;

/// A fixed key space: the models need no map, only chains.
struct World {
    clock: Clock,
    registry: Registry,
    keys: Vec<Bytes>,
    chains: Vec<Arc<Chain>>,
    /// A scan index over the keys, for the models of its head copies (the others have none:
    /// noting changes would only add steps to explore).
    index: Option<Index>,
}

impl ChainSource for World {
    fn resolve(&self, key: &[u8]) -> Arc<Chain> {
        let i = self.keys.iter().position(|k| k == key).expect("model key");
        Arc::clone(&self.chains[i])
    }

    fn lookup(&self, key: &[u8]) -> Option<Arc<Chain>> {
        let i = self.keys.iter().position(|k| k == key)?;
        Some(Arc::clone(&self.chains[i]))
    }

    fn find_in_range(
        &self,
        range: &KeyRange,
        hit: &mut dyn FnMut(&[u8], &Chain) -> bool,
    ) -> Option<Bytes> {
        use std::ops::RangeBounds;
        self.keys
            .iter()
            .zip(&self.chains)
            .find(|(k, c)| range.contains(*k) && hit(k, c))
            .map(|(k, _)| k.clone())
    }

    fn discard_if_empty(&self, _: &[u8], _: &ChainWriter<'_>, _: &Guard) {}

    /// The model world keeps no head mirrors: its readers read the chains.
    fn with_mirror<R>(
        &self,
        _: &[u8],
        _: &Chain,
        f: impl FnOnce(Option<&MirroredChain>) -> R,
    ) -> R {
        f(None)
    }

    fn with_locked<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&ChainWriter<'_>, Option<&MirroredChain>) -> R,
    ) -> Option<R> {
        let i = self.keys.iter().position(|k| k == key)?;
        let writer = self.chains[i].try_lock()?;
        Some(f(&writer, None))
    }

    fn note_installed(&self, writes: &[crate::commit::Write<'_>], guard: &Guard) {
        if let Some(index) = &self.index {
            index.note_changed(writes.iter().map(|w| w.key), guard);
        }
    }
}

impl World {
    fn new(keys: &[&'static [u8]]) -> Arc<Self> {
        Arc::new(Self::build(keys, false))
    }

    /// A world like [`World::new`]'s whose snapshots register in `registry`.
    fn with_registry(keys: &[&'static [u8]], registry: Registry) -> Arc<Self> {
        Arc::new(Self {
            registry,
            ..Self::build(keys, false)
        })
    }

    /// A world whose keys are in a scan index, committed to as [`World::new`]'s.
    fn with_index(keys: &[&'static [u8]]) -> Self {
        Self::build(keys, true)
    }

    fn build(keys: &[&'static [u8]], indexed: bool) -> Self {
        let chains: Vec<Arc<Chain>> = keys.iter().map(|_| Arc::new(Chain::new())).collect();
        let index = indexed.then(|| {
            let index = Index::new();
            for (k, c) in keys.iter().zip(&chains) {
                index.insert(k, Arc::clone(c));
            }
            index
        });
        Self {
            clock: Clock::new(),
            registry: Registry::new(),
            keys: keys.iter().map(|k| Bytes::from_static(k)).collect(),
            chains,
            index,
        }
    }

    /// Commits `value` to every key in `keys` at one timestamp (snapshot isolation, or a
    /// blind write with `snapshot = None`).
    fn commit(
        &self,
        keys: &[usize],
        value: &'static [u8],
        snapshot: Option<u64>,
        horizon: &Horizon,
    ) -> Result<u64, Error> {
        let checks = Checks {
            snapshot,
            ..Checks::default()
        };
        self.commit_checked(keys, value, checks, horizon)
    }

    fn commit_checked(
        &self,
        keys: &[usize],
        value: &'static [u8],
        checks: Checks<'_>,
        horizon: &Horizon,
    ) -> Result<u64, Error> {
        let mut writes: Vec<_> = keys
            .iter()
            .map(|&i| Write::new(&self.keys[i], Some(value)))
            .collect();
        commit(&self.clock, self, &mut writes, checks, horizon).map(|done| done.ts)
    }

    /// A serializable commit of `value` to `writes` having read `reads` at snapshot `s`.
    fn commit_serializable(&self, reads: &[usize], writes: &[usize], s: u64) -> Result<u64, Error> {
        let read_set = ReadSet {
            keys: reads
                .iter()
                .map(|&i| crate::store::MapKey::from_slice(&self.keys[i]))
                .collect(),
            ranges: Vec::new(),
        };
        let checks = Checks {
            snapshot: Some(s),
            reads: Some(&read_set),
            expect: None,
        };
        self.commit_checked(writes, b"s", checks, &NO_GC)
    }

    /// Value of key `i` at `ts` (`None` if absent).
    fn read(&self, i: usize, ts: u64) -> Option<(u64, Bytes)> {
        let guard = crossbeam_epoch::pin();
        let v = self.chains[i].read_at(ts, &guard)?;
        v.value.map(|b| (v.ts, Bytes::copy_from_slice(b)))
    }
}

/// The outcomes a model's interleavings reached (which winner, whether a snapshot includes the
/// racing commit, whether a prune ran before a read, ...), so the model can check that loom
/// explored every outcome its assertions are meant for: a bounded search may never run a
/// spawned thread far enough, and a model that never reaches the race passes vacuously. Only
/// std locks and atomics record them, which loom does not schedule on: recording adds no
/// interleavings.
#[derive(Clone, Default)]
struct Outcomes(std::sync::Arc<StdMutex<BTreeMap<String, usize>>>);

impl Outcomes {
    fn saw(&self, outcome: impl Into<String>) {
        *self.0.lock().unwrap().entry(outcome.into()).or_default() += 1;
    }

    /// Prints how often each outcome was reached and fails unless each of `expected` is part
    /// of an outcome reached.
    fn assert_explored(&self, expected: &[&str]) {
        let seen = self.0.lock().unwrap();
        for (outcome, n) in seen.iter() {
            println!("{n:>8} {outcome}");
        }
        for wanted in expected {
            assert!(
                seen.keys().any(|outcome| outcome.contains(wanted)),
                "loom never explored an outcome with `{wanted}`: the model misses its race"
            );
        }
    }
}

/// A progress mark one model thread sets (std, unscheduled: see [`Outcomes`]) and another
/// reads to label its outcome with what had happened by then.
#[derive(Clone, Default)]
struct Mark(std::sync::Arc<StdBool>);

impl Mark {
    fn set(&self) {
        self.0.store(true, StdOrdering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(StdOrdering::Relaxed)
    }
}

/// Runs `f` under loom and fails if loom explored a single interleaving (uninstrumented).
fn model(f: impl Fn() + Sync + Send + 'static) {
    model_with_preemptions(0, f);
}

/// [`model`] exploring at least `min_preemptions` preemptions whatever
/// `LOOM_MAX_PREEMPTIONS` says: for races that need a longer schedule to show.
fn model_with_preemptions(min_preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    model_with_bounds(min_preemptions, usize::MAX, f);
}

/// [`model`] exploring between `min` and `max` preemptions, within what
/// `LOOM_MAX_PREEMPTIONS` says: `max` for models whose state space is too large for CI at
/// the suite's bound.
fn model_with_bounds(min: usize, max: usize, f: impl Fn() + Sync + Send + 'static) {
    let iterations = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&iterations);
    let mut builder = loom::model::Builder::new();
    if let Some(bound) = builder.preemption_bound {
        builder.preemption_bound = Some(bound.max(min).min(max));
    }
    builder.check(move || {
        counter.fetch_add(1, StdOrdering::Relaxed);
        crate::registry::reset_hint();
        f();
    });
    let n = iterations.load(StdOrdering::Relaxed);
    println!("explored {n} interleavings");
    assert!(
        n > 1,
        "loom explored only {n} interleaving: build with RUSTFLAGS=\"--cfg loom --cfg crossbeam_loom\""
    );
}

/// Model 1: a snapshot racing a two-key commit sees both writes or neither.
#[test]
fn snapshot_never_sees_half_a_commit() {
    faults::inject(Fault::None);
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let w = World::new(&[b"x", b"y"]);
        w.commit(&[0, 1], b"old", None, &NO_GC).unwrap();
        let w2 = Arc::clone(&w);
        let t = loom::thread::spawn(move || w2.commit(&[0, 1], b"new", Some(1), &NO_GC).unwrap());
        // Lets the committer run first (see model 19): without it, no explored snapshot
        // includes the commit.
        loom::thread::yield_now();
        let (slot, s) = w.registry.register(&w.clock);
        let (x, y) = (w.read(0, s), w.read(1, s));
        assert_eq!(x, y, "snapshot at {s} saw half a commit");
        assert_eq!(x.map(|(ts, _)| ts), Some(s));
        seen.saw(format!("snapshot at {s}"));
        w.registry.release(slot);
        assert_eq!(t.join().unwrap(), 2);
    });
    outcomes.assert_explored(&["snapshot at 1", "snapshot at 2"]);
}

/// Model 2: two transactions from the same snapshot writing the same key: exactly one wins,
/// and the loser installs nothing.
#[test]
fn same_key_commits_exactly_one_wins() {
    faults::inject(Fault::None);
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let w = World::new(&[b"x"]);
        w.commit(&[0], b"v0", None, &NO_GC).unwrap();
        let w2 = Arc::clone(&w);
        let t = loom::thread::spawn(move || w2.commit(&[0], b"a", Some(1), &NO_GC));
        let mine = w.commit(&[0], b"b", Some(1), &NO_GC);
        let theirs = t.join().unwrap();
        let (winner, loser) = match (mine, theirs) {
            (Ok(_), Err(e)) => (&b"b"[..], e),
            (Err(e), Ok(_)) => (&b"a"[..], e),
            other => panic!("exactly one commit must win: {other:?}"),
        };
        seen.saw(format!(
            "{} won",
            if winner == b"b" { "main" } else { "spawned" }
        ));
        assert!(matches!(loser, Error::Conflict { .. }));
        assert_eq!(w.read(0, u64::MAX), Some((2, Bytes::from_static(winner))));
        let guard = crossbeam_epoch::pin();
        assert_eq!(
            w.chains[0].version_count(&guard),
            2,
            "the loser installed nothing"
        );
    });
    outcomes.assert_explored(&["main won", "spawned won"]);
}

/// Model 3: commits that finish out of order leave no hole in the visible timestamp: a
/// snapshot at `s` sees exactly the commits `1..=s`, and once `commit` returns, new
/// snapshots see it.
#[test]
fn visibility_has_no_holes() {
    faults::inject(Fault::None);
    check_no_holes();
}

fn check_no_holes() {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let w = World::new(&[b"x", b"y"]);
        let w2 = Arc::clone(&w);
        let theirs_done = Mark::default();
        let done = theirs_done.clone();
        let t = loom::thread::spawn(move || {
            let ts = w2.commit(&[1], b"y", None, &NO_GC).unwrap();
            done.set();
            ts
        });
        let mine = w.commit(&[0], b"x", None, &NO_GC).unwrap();
        let theirs_returned = theirs_done.is_set();
        // Real-time order: my commit returned, so a new snapshot sees it.
        let (slot, s) = w.registry.register(&w.clock);
        assert!(
            s >= mine,
            "commit {mine} returned but a later snapshot reads at {s}"
        );
        let visible = (0..2).filter(|&i| w.read(i, s).is_some()).count() as u64;
        assert_eq!(visible, s, "snapshot at {s} sees {visible} commits: a hole");
        seen.saw(format!(
            "mine {mine}, theirs returned first {theirs_returned}, snapshot at {s}"
        ));
        w.registry.release(slot);
        t.join().unwrap();
    });
    outcomes.assert_explored(&[
        "mine 1, theirs returned first false, snapshot at 1",
        "mine 1, theirs returned first false, snapshot at 2",
        "mine 2, theirs returned first false, snapshot at 2",
    ]);
}

/// Negative control for model 3: publishing without waiting for predecessors must be caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_publish_without_waiting_is_caught() {
    faults::inject(Fault::PublishWithoutWaiting);
    check_no_holes();
}

/// Model 11: the publication ring, with two slots. Two committers install (a plain write to a
/// cell of their timestamp) and publish in any order and interleaving, so either may make the
/// other's timestamp visible. After its own commit, the main thread reads at the visible
/// timestamp: every install at or below it happens before the read (loom reports the race
/// otherwise) and none is missing (no holes); `publish` returns only once its own timestamp
/// is visible.
#[test]
fn publication_ring_helps_without_holes() {
    faults::inject(Fault::None);
    check_publication_ring(2);
}

/// Model 12: the publication ring with one slot, so the second commit must wait for the first
/// to become visible before reusing the slot (overwriting an unconsumed mark would leave the
/// first commit invisible forever).
#[test]
fn publication_ring_reuses_a_slot_only_once_consumed() {
    faults::inject(Fault::None);
    check_publication_ring(1);
}

fn check_publication_ring(ring: usize) {
    use loom::cell::UnsafeCell;
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let seen2 = seen.clone();
        let clock = Arc::new(Clock::with_ring(ring));
        let installed: Arc<[UnsafeCell<u64>; 3]> =
            Arc::new(std::array::from_fn(|_| UnsafeCell::new(0)));
        let commit = |clock: &Clock, installed: &[UnsafeCell<u64>; 3], seen: &Outcomes| {
            let p = clock.allocate();
            let ts = p.ts();
            installed[ts as usize].with_mut(|cell| {
                // SAFETY: only the committer of `ts` writes this cell, once, before publishing.
                unsafe { *cell = ts }
            });
            assert_eq!(p.publish(), ts);
            let v = clock.visible();
            assert!(v >= ts, "publish of {ts} returned before it was visible");
            seen.saw(format!("publish of {ts} returned, visible {v}"));
            ts
        };
        let other = {
            let (clock, installed) = (Arc::clone(&clock), Arc::clone(&installed));
            loom::thread::spawn(move || commit(&clock, &installed, &seen2))
        };
        let mine = commit(&clock, &installed, &seen);
        let v = clock.visible();
        seen.saw(format!("main committed {mine}, then read visible {v}"));
        for ts in 1..=v {
            let seen = installed[ts as usize].with(|cell| {
                // SAFETY: `ts <= v` was visible, so its install happened before this read;
                // loom reports a causality violation if the protocol does not guarantee that.
                unsafe { *cell }
            });
            assert_eq!(
                seen, ts,
                "visible {v}, but commit {ts} is not installed: a hole"
            );
        }
        other.join().unwrap();
        assert_eq!(clock.visible(), 2);
    });
    outcomes.assert_explored(&[
        "main committed 1, then read visible 1",
        "main committed 1, then read visible 2",
        "main committed 2, then read visible 2",
        "publish of 1 returned, visible 2",
    ]);
}

/// Negative control for model 11: a finished mark stored `Relaxed` lets a helper publish a
/// commit whose installs it has not synchronized with.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_finished_mark_without_release_is_caught() {
    faults::inject(Fault::FinishedMarkRelaxed);
    check_publication_ring(2);
}

/// Negative control for model 12: marking a reused slot before its previous timestamp is
/// visible overwrites that timestamp's mark, and nobody can ever make it visible: its committer
/// sleeps forever (loom reports the deadlock).
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_ring_reuse_without_waiting_is_caught() {
    faults::inject(Fault::RingReuseWithoutWaiting);
    check_publication_ring(1);
}

/// Negative control for model 11: advancing over allocated but unfinished timestamps makes a
/// commit visible before its installs.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_advance_over_unfinished_is_caught() {
    faults::inject(Fault::AdvanceOverUnfinished);
    check_publication_ring(2);
}

/// Model 17: three committers through a ring of four, so that a committer whose predecessor
/// has not finished sleeps (a wait is one spin under loom) and must be woken: by the thread
/// that moves the visible timestamp past it, or by a sleeper woken before it (wakes are passed
/// on one at a time). A lost wake-up leaves a thread asleep forever, which loom reports as a
/// deadlock; a premature one returns before the commit is visible, which the model asserts.
#[test]
fn publication_sleepers_are_always_woken() {
    faults::inject(Fault::None);
    check_publication_sleepers();
}

fn check_publication_sleepers() {
    // Three threads: one preemption already reaches a sleeper woken by a helper's move, and
    // the chain of wakes between two sleepers.
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model_with_bounds(0, 1, move || {
        let clock = Arc::new(Clock::with_ring(4));
        let commit = |clock: &Clock, seen: &Outcomes| {
            let p = clock.allocate();
            let ts = p.ts();
            assert_eq!(p.publish(), ts);
            let v = clock.visible();
            assert!(v >= ts, "publish of {ts} returned before it was visible");
            seen.saw(format!("publish of {ts} returned, visible {v}"));
        };
        let others: Vec<_> = (0..2)
            .map(|_| {
                let (clock, seen) = (Arc::clone(&clock), seen.clone());
                loom::thread::spawn(move || commit(&clock, &seen))
            })
            .collect();
        commit(&clock, &seen);
        for t in others {
            t.join().unwrap();
        }
        assert_eq!(clock.visible(), 3);
    });
    outcomes.assert_explored(&[
        "publish of 1 returned, visible 2",
        "publish of 2 returned, visible 3",
    ]);
}

/// Negative control for model 17: a thread that moves the visible timestamp without waking
/// the sleepers it passed leaves them asleep.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_publish_skipping_the_wake_is_caught() {
    faults::inject(Fault::SkipWake);
    check_publication_sleepers();
}

/// Model 4: the collector unlinking and freeing versions races a registered reader walking
/// the chain (and an unregistered walk over every node): the reader finds its version and
/// never touches freed memory.
#[test]
fn gc_unlink_races_reader() {
    faults::inject(Fault::None);
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let w = World::new(&[b"x"]);
        w.commit(&[0], b"v1", None, &NO_GC).unwrap();
        w.commit(&[0], b"v2", None, &NO_GC).unwrap();
        let w2 = Arc::clone(&w);
        let progress = Progress::default();
        let p2 = progress.clone();
        let t = loom::thread::spawn(move || {
            let h = w2.registry.horizon(&w2.clock);
            w2.commit(&[0], b"v3", None, &h).unwrap();
            p2.committed.set();
            let h = w2.registry.horizon(&w2.clock);
            let guard = crossbeam_epoch::pin();
            w2.chains[0].lock().prune_and_retire(&h, &guard);
            p2.pruned.set();
            drop(guard);
            crossbeam_epoch::pin().flush();
        });
        let (slot, s) = w.registry.register(&w.clock);
        let expected: &[u8] = if s == 2 { b"v2" } else { b"v3" };
        let before = progress.describe();
        assert_eq!(w.read(0, s), Some((s, Bytes::from_static(expected))));
        seen.saw(format!("snapshot at {s} read {before}"));
        {
            let guard = crossbeam_epoch::pin();
            let n = w.chains[0].version_count(&guard);
            assert!((1..=3).contains(&n));
        }
        w.registry.release(slot);
        t.join().unwrap();
    });
    outcomes.assert_explored(&[
        "snapshot at 2 read before the commit returned",
        "snapshot at 2 read after the prune",
        "snapshot at 3 read after the commit, before the prune",
        "snapshot at 3 read after the prune",
    ]);
}

/// How far the writer of models 4, 8 and 9 got (see [`Mark`]).
#[derive(Clone, Default)]
struct Progress {
    committed: Mark,
    pruned: Mark,
}

impl Progress {
    fn describe(&self) -> &'static str {
        match (self.committed.is_set(), self.pruned.is_set()) {
            (false, _) => "before the commit returned",
            (true, false) => "after the commit, before the prune",
            (true, true) => "after the prune",
        }
    }
}

/// The race of models 8 and 9: `x` holds v1 (ts 1, seen by a registered old snapshot) and v2;
/// a spawned thread commits v3 pruning with a fresh horizon, then prunes again and flushes its
/// garbage. Returns the world, the old snapshot's slot and timestamp, and the thread.
fn old_snapshot_and_pruning_writer() -> (
    Arc<World>,
    SlotId,
    u64,
    loom::thread::JoinHandle<()>,
    Progress,
) {
    let w = World::new(&[b"x"]);
    w.commit(&[0], b"v1", None, &NO_GC).unwrap();
    let (old_slot, old) = w.registry.register(&w.clock);
    w.commit(&[0], b"v2", None, &NO_GC).unwrap();
    let w2 = Arc::clone(&w);
    let progress = Progress::default();
    let p2 = progress.clone();
    let t = loom::thread::spawn(move || {
        let h = w2.registry.horizon(&w2.clock);
        w2.commit(&[0], b"v3", None, &h).unwrap();
        p2.committed.set();
        let h = w2.registry.horizon(&w2.clock);
        let guard = crossbeam_epoch::pin();
        w2.chains[0].lock().prune_and_retire(&h, &guard);
        p2.pruned.set();
        drop(guard);
        crossbeam_epoch::pin().flush();
    });
    (w, old_slot, old, t, progress)
}

/// Model 8: pruning with a live old snapshot unlinks a version from the *middle* of a chain
/// while the old snapshot and a new one read it: each finds exactly its version, and the old
/// snapshot pins only the version it sees.
#[test]
fn interval_prune_races_old_and_new_readers() {
    faults::inject(Fault::None);
    let outcomes = Outcomes::default();
    // Without letting the writer run first, no explored old read starts after the commit
    // returned, let alone while the prune unlinks v2 from under it; with it, no new snapshot
    // at 2 reads between the commit and the prune. The model explores both.
    for writer_first in [false, true] {
        let seen = outcomes.clone();
        model(move || {
            let (w, old_slot, old, t, progress) = old_snapshot_and_pruning_writer();
            if writer_first {
                loom::thread::yield_now();
            }
            let v1 = Some((1, Bytes::from_static(b"v1")));
            let old_read = progress.describe();
            assert_eq!(w.read(0, old), v1, "the old snapshot lost its version");
            let (slot, s) = w.registry.register(&w.clock);
            let expected: &[u8] = if s == 2 { b"v2" } else { b"v3" };
            let new_read = progress.describe();
            assert_eq!(w.read(0, s), Some((s, Bytes::from_static(expected))));
            seen.saw(format!(
                "old snapshot read {old_read}; snapshot at {s} read {new_read}"
            ));
            w.registry.release(slot);
            t.join().unwrap();
            // Only the old snapshot is left: it pins v1, new snapshots see v3, v2 goes.
            let guard = crossbeam_epoch::pin();
            w.chains[0]
                .lock()
                .prune_and_retire(&w.registry.horizon(&w.clock), &guard);
            assert_eq!(w.chains[0].version_count(&guard), 2);
            drop(guard);
            assert_eq!(w.read(0, old), v1);
            w.registry.release(old_slot);
        });
    }
    outcomes.assert_explored(&[
        "old snapshot read after the commit, before the prune",
        "old snapshot read after the prune",
        "snapshot at 2 read after the commit, before the prune",
        "snapshot at 2 read after the prune",
        "snapshot at 3 read after the prune",
    ]);
}

/// Model 9: an unregistered latest read (`Db::get`'s fast path: load the visible timestamp,
/// then take the head if it is at or below it) races a commit that prunes the middle of the
/// chain for an old snapshot: it returns the last visible value at some instant of the call,
/// never a version that was already overwritten.
#[test]
fn unregistered_latest_read_races_interval_prune() {
    faults::inject(Fault::None);
    check_latest_read(LatestRead::Owned);
}

/// Model 9, lending: the same read from the head cache.
#[test]
fn unregistered_lending_read_races_interval_prune() {
    faults::inject(Fault::None);
    check_latest_read(LatestRead::Lent);
}

/// Negative control for model 9: a latest read that walks past the head must be caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_latest_read_walking_past_head_is_caught() {
    faults::inject(Fault::LatestReadWalksPastHead);
    check_latest_read(LatestRead::Owned);
}

/// Negative control for model 9, lending.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_lending_read_walking_past_head_is_caught() {
    faults::inject(Fault::LatestReadWalksPastHead);
    check_latest_read(LatestRead::Lent);
}

/// How model 9 reads the head: owned (`Db::get`) or lent from the head cache (`Db::get_with`).
#[derive(Clone, Copy)]
enum LatestRead {
    Owned,
    Lent,
}

fn check_latest_read(how: LatestRead) {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    // The stale read needs the reader preempted between its two loads while the writer
    // commits, publishes and prunes: three preemptions.
    model_with_preemptions(3, move || {
        let (w, old_slot, _, t, progress) = old_snapshot_and_pruning_writer();
        let before = w.clock.visible();
        let at_start = progress.describe();
        let guard = crossbeam_epoch::pin();
        let visible = w.clock.visible();
        let chain = &w.chains[0];
        let got = match how {
            LatestRead::Owned => chain
                .read_head_if_visible(visible, &guard)
                .map(|found| found.value.map(|_| found.ts)),
            LatestRead::Lent => chain
                .lend_head_if_visible(visible, &guard)
                .map(|found| found.value.map(|_| found.ts)),
        }
        .map(|ts| ts.expect("x always has a value"));
        drop(guard);
        let after = w.clock.visible();
        seen.saw(format!(
            "read {got:?} in {before}..={after}, started {at_start}, ended {}",
            progress.describe()
        ));
        if let Some(ts) = got {
            // Linearizable: the version is the newest at some instant in [before, after].
            assert!(
                ts >= before && ts <= after,
                "stale read: ts {ts} outside {before}..={after}"
            );
        }
        t.join().unwrap();
        w.registry.release(old_slot);
    });
    outcomes.assert_explored(&["read None", "read Some(2) in 2..=3", "read Some(3)"]);
}

/// Model 5: a snapshot registering while the collector computes the watermark never loses
/// the version it can see.
#[test]
fn registration_races_watermark() {
    faults::inject(Fault::None);
    check_registration(Registry::new);
}

/// Negative control for model 5: registering without the floor check must be caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_register_without_floor_check_is_caught() {
    faults::inject(Fault::RegisterWithoutFloorCheck);
    check_registration(Registry::new);
}

/// Model 5, overflow: the same race with a registry without fixed slots, so the snapshot
/// registers in the overflow (its count, the fence and the floor load under the overflow's
/// lock) while the collector reads the count and, if it is set, the overflow's timestamps.
#[test]
fn overflow_registration_races_watermark() {
    faults::inject(Fault::None);
    check_registration(|| Registry::with_slots(0));
}

/// Negative control for model 5, overflow: an overflow registration at the timestamp read
/// before its announcement, without the floor check, must be caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_overflow_register_without_floor_check_is_caught() {
    faults::inject(Fault::RegisterWithoutFloorCheck);
    check_registration(|| Registry::with_slots(0));
}

fn check_registration(registry: fn() -> Registry) {
    let outcomes = Outcomes::default();
    // Without a yield between the registration and the read, an overflow registration at 1
    // never has the prune run before its read; with it, fewer prunes race the registration
    // itself. The model explores both.
    for writer_between in [false, true] {
        let seen = outcomes.clone();
        model(move || {
            let w = World::with_registry(&[b"x"], registry());
            w.commit(&[0], b"v1", None, &NO_GC).unwrap();
            let w2 = Arc::clone(&w);
            let pruned = Mark::default();
            let pruned2 = pruned.clone();
            let t = loom::thread::spawn(move || {
                w2.commit(&[0], b"v2", None, &NO_GC).unwrap();
                let h = w2.registry.horizon(&w2.clock);
                let guard = crossbeam_epoch::pin();
                let p = w2.chains[0].lock().prune_and_retire(&h, &guard);
                pruned2.set();
                p.unlinked
            });
            let (slot, s) = w.registry.register(&w.clock);
            if writer_between {
                loom::thread::yield_now();
            }
            let pruned_first = pruned.is_set();
            assert!(
                w.read(0, s).is_some(),
                "snapshot at {s} lost its version to a concurrent watermark"
            );
            w.registry.release(slot);
            let unlinked = t.join().unwrap();
            seen.saw(format!(
                "snapshot at {s}, pruned before it read {pruned_first}, unlinked {unlinked}"
            ));
        });
    }
    outcomes.assert_explored(&[
        "snapshot at 1, pruned before it read true",
        "snapshot at 1, pruned before it read false",
        "snapshot at 2",
    ]);
}

/// Model 6 (serializable): write skew from one snapshot — each transaction reads both keys
/// and writes a different one: they cannot both commit.
#[test]
fn serializable_write_skew_cannot_both_commit() {
    faults::inject(Fault::None);
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let w = World::new(&[b"x", b"y"]);
        w.commit(&[0, 1], b"init", None, &NO_GC).unwrap();
        let w2 = Arc::clone(&w);
        let t = loom::thread::spawn(move || w2.commit_serializable(&[0, 1], &[1], 1));
        let mine = w.commit_serializable(&[0, 1], &[0], 1);
        let theirs = t.join().unwrap();
        seen.saw(format!(
            "main {:?}, spawned {:?}",
            mine.is_ok(),
            theirs.is_ok()
        ));
        assert!(
            mine.is_err() || theirs.is_err(),
            "write skew: both serializable transactions committed"
        );
    });
    outcomes.assert_explored(&["main false, spawned true", "main true, spawned false"]);
}

/// Model 7 (serializable): the validate/install race. A serializable transaction that read
/// `k` at its snapshot commits at `ts` only if no commit with a smaller timestamp wrote `k`:
/// its reads are current at its commit timestamp, so commit order is a serial order.
#[test]
fn serializable_reads_are_current_at_commit_timestamp() {
    faults::inject(Fault::None);
    check_reads_current();
}

fn check_reads_current() {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let w = World::new(&[b"k", b"w"]);
        w.commit(&[0, 1], b"init", None, &NO_GC).unwrap();
        let w2 = Arc::clone(&w);
        let writer = loom::thread::spawn(move || w2.commit(&[0], b"new", None, &NO_GC).unwrap());
        let mine = w.commit_serializable(&[0], &[1], 1);
        let theirs = writer.join().unwrap();
        seen.saw(format!(
            "serializable {:?}, writer {theirs}",
            mine.as_ref().map_err(|_| ())
        ));
        if let Ok(ts) = mine {
            assert!(
                theirs > ts,
                "stale read committed: read k at 1, committed at {ts}, but k was written at {theirs}"
            );
        }
    });
    outcomes.assert_explored(&[
        "serializable Ok(2), writer 3",
        "serializable Err(()), writer 2",
    ]);
}

/// Negative control for model 7: validating reads before taking the timestamp must be caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_validate_reads_before_timestamp_is_caught() {
    faults::inject(Fault::ValidateReadsBeforeTimestamp);
    check_reads_current();
}

/// Model 10: a lending reader racing a commit (and the prune that retires the old head) reads
/// the head cache as one version: a timestamp with that version's own value, never a mix.
#[test]
fn head_cache_is_never_torn() {
    faults::inject(Fault::None);
    check_head_cache();
}

/// Negative control for model 10: rewriting the head cache without its sequence word must be
/// caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_head_cache_without_seqlock_is_caught() {
    faults::inject(Fault::HeadCacheWithoutSeqlock);
    check_head_cache();
}

fn check_head_cache() {
    // Values of different lengths, so a torn read shows in the length too.
    const V1: &[u8] = b"one";
    const V2: &[u8] = b"version two";
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let w = World::new(&[b"x"]);
        w.commit(&[0], V1, None, &NO_GC).unwrap();
        let w2 = Arc::clone(&w);
        let progress = Progress::default();
        let p2 = progress.clone();
        let t = loom::thread::spawn(move || {
            w2.commit(&[0], V2, None, &NO_GC).unwrap();
            p2.committed.set();
            let h = w2.registry.horizon(&w2.clock);
            let guard = crossbeam_epoch::pin();
            w2.chains[0].lock().prune_and_retire(&h, &guard);
            p2.pruned.set();
        });
        let at_start = progress.describe();
        let guard = crossbeam_epoch::pin();
        let got = w.chains[0]
            .lend_at(u64::MAX, &guard)
            .map(|v| (v.ts, v.value.map(<[u8]>::to_vec)));
        drop(guard);
        seen.saw(format!(
            "read ts {:?}, started {at_start}, ended {}",
            got.as_ref().map(|g| g.0),
            progress.describe()
        ));
        let expected = |ts| match ts {
            1 => V1,
            _ => V2,
        };
        match got {
            Some((ts, Some(value))) => assert!(
                value == expected(ts),
                "torn head: timestamp {ts} with value {:?}",
                String::from_utf8_lossy(&value)
            ),
            other => panic!("the head always has a value: {other:?}"),
        }
        t.join().unwrap();
    });
    outcomes.assert_explored(&[
        "read ts Some(1), started before the commit returned, ended after the prune",
        "read ts Some(2), started before the commit returned, ended before the commit returned",
    ]);
}

/// Model 13: a key inserted into the scan index while a rebuild seals and merges the delta it
/// went into is found by every scan that starts after the insert (here: after a flag the
/// inserter sets once done, as a commit's publication would) and by every scan after both
/// finish.
#[test]
fn index_rebuild_never_loses_a_concurrent_insert() {
    faults::inject(Fault::None);
    check_index_rebuild();
}

/// Negative control for model 13: sealing the active delta without holding the gate
/// exclusively must be caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_seal_without_gate_is_caught() {
    faults::inject(Fault::SealWithoutGate);
    check_index_rebuild();
}

/// Negative control for model 13: a rebuild that reads a sealed delta while a scan is
/// placing its bag must be caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_rebuild_reading_while_placing_is_caught() {
    faults::inject(Fault::RebuildReadsWhilePlacing);
    check_index_rebuild();
}

fn check_index_rebuild() {
    /// Whether walks from both ends find `key` (they must agree).
    fn finds_from_both_ends(index: &Index, key: &[u8]) -> bool {
        let guard = crossbeam_epoch::pin();
        let whole = (Bound::Unbounded, Bound::Unbounded);
        let forward = index
            .range(whole, Reads::Versions, &guard)
            .any(|g| g.key() == key);
        let backward = index
            .range(whole, Reads::Versions, &guard)
            .rev()
            .any(|g| g.key() == key);
        assert_eq!(forward, backward, "walks from the two ends disagree");
        forward
    }

    check_insert_race(
        || {
            let index = Index::new();
            // A key already in the run, so the rebuild has something to merge.
            index.insert(b"a", Arc::new(Chain::new()));
            index.rebuild(false);
            index
        },
        |index| {
            index.rebuild(false);
        },
        finds_from_both_ends,
        |index| assert!(finds_from_both_ends(index, b"a"), "the run lost a key"),
    );
}

/// Whether a forward walk of the whole index finds `key`.
fn finds(index: &Index, key: &[u8]) -> bool {
    let guard = crossbeam_epoch::pin();
    let whole = (Bound::Unbounded, Bound::Unbounded);
    let found = index
        .range(whole, Reads::Versions, &guard)
        .any(|g| g.key() == key);
    found
}

/// The race models 13 and 14 share: one thread inserts `k` into the index `setup` builds and
/// then sets a flag (as a commit's publication would), `second` runs on another thread, and
/// the model thread scans once it sees the flag and again after both finish (then runs
/// `after`): both scans must find `k`.
fn check_insert_race(
    setup: fn() -> Index,
    second: fn(&Index),
    finds: fn(&Index, &[u8]) -> bool,
    after: fn(&Index),
) {
    use crate::sync::AtomicBool;

    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let index = Arc::new(setup());
        let inserted = Arc::new(AtomicBool::new(false));
        let second_done = Mark::default();
        let done = second_done.clone();
        let inserter = {
            let (index, inserted) = (Arc::clone(&index), Arc::clone(&inserted));
            loom::thread::spawn(move || {
                index.insert(b"k", Arc::new(Chain::new()));
                inserted.store(true, crate::sync::Ordering::Release);
            })
        };
        let other = {
            let index = Arc::clone(&index);
            loom::thread::spawn(move || {
                second(&index);
                done.set();
            })
        };
        let saw_insert = inserted.load(crate::sync::Ordering::Acquire);
        let second_ran = second_done.is_set();
        if saw_insert {
            assert!(
                finds(&index, b"k"),
                "lost insert: a scan after it missed the key"
            );
        }
        seen.saw(format!(
            "saw the insert {saw_insert}, second done before {second_ran}, after {}",
            second_done.is_set()
        ));
        inserter.join().unwrap();
        other.join().unwrap();
        assert!(finds(&index, b"k"), "lost insert: the key left the index");
        after(&index);
    });
    outcomes.assert_explored(&[
        "saw the insert true, second done before false",
        "saw the insert false",
    ]);
}

/// Model 14: two scans racing to place a delta's bag. A scan that starts after an insert
/// finds the key even while another scan has taken the bag and is still putting it into the
/// list: it waits for that placer (the placer lock), and reading the unplaced count as zero
/// shows it the placer's list inserts (Release decrement after them, Acquire load).
#[test]
fn placing_scans_never_miss_an_insert() {
    faults::inject(Fault::None);
    check_two_placers();
}

/// Negative control for model 14: a placer that lowers the count before its list inserts.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_place_counting_first_is_caught() {
    faults::inject(Fault::PlaceCountsFirst);
    check_two_placers();
}

/// Negative control for model 14: scans that read the count Relaxed.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_placed_check_relaxed_is_caught() {
    faults::inject(Fault::PlacedCheckRelaxed);
    check_two_placers();
}

fn check_two_placers() {
    check_insert_race(
        Index::new,
        // The other placer: its result may go either way.
        |index| {
            finds(index, b"k");
        },
        finds,
        |_| {},
    );
}

/// Model 15: the scan index's copies of chain heads. `x` holds v1 in a run that copied it; a
/// committer installs v2 while a rebuild copies `x`'s head into a new run. A scan whose
/// snapshot includes v2 (here: taken after the commit's publication) never takes the stale
/// copy of v1: the committer's `SeqCst` fence after its install and the rebuild's after
/// publishing its changed-key set make one of them see the other (the rebuild copies v2, or
/// the committer marks `x` in the new run's set), and the committer also marks the current
/// run. After both threads finish, a scan reads v2. With `SNAPKV_MODEL15_RACING_SCAN` set,
/// the model thread also scans while they run, at the visible timestamp it reads (v1 at 1,
/// v2 at 2): about 15 minutes instead of 4, so CI runs the shorter model.
#[test]
fn head_copies_never_hide_a_visible_install() {
    faults::inject(Fault::None);
    check_head_copies(1);
}

/// Model 16: model 15 with the rebuilder rebuilding twice, back to back (as scans do when
/// committers made the copies stale): the committer's loads may return the first new run's
/// set as the newest while the second rebuild publishes its own and copies `x`. At most one
/// preemption (the state space at two is too large for CI); the second rebuild's set and
/// copies are what the model adds to model 15.
#[test]
fn head_copies_survive_back_to_back_rebuilds() {
    faults::inject(Fault::None);
    check_head_copies(2);
}

/// Negative control for model 15: a committer that marks its keys without the fence.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_note_without_fence_is_caught() {
    faults::inject(Fault::NoteWithoutFence);
    check_head_copies(1);
}

/// Negative control for model 15: a committer that marks only the current run's set, not the
/// newest (of the run being built).
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_note_only_in_current_run_is_caught() {
    faults::inject(Fault::NoteOnlyCurrentRun);
    check_head_copies(1);
}

/// Models 15 (`rebuilds == 1`) and 16 (`2`): see their documentation.
fn check_head_copies(rebuilds: usize) {
    /// `x`'s value visible at `s` as a lending scan reads it (through the copy when it is
    /// current), on the scan's own path (`Entries::lend_forward`).
    fn scan_x(w: &World, s: u64) -> Option<(u64, Vec<u8>)> {
        let index = w.index.as_ref().expect("models 15 and 16 have an index");
        let guard = crossbeam_epoch::pin();
        let whole = (Bound::Unbounded, Bound::Unbounded);
        let mut seen = None;
        let _ =
            index
                .range(whole, Reads::Heads, &guard)
                .lend_forward(s, &guard, usize::MAX, |_, v| {
                    seen = Some(v.and_then(|v| Some((v.ts, v.value?.to_vec()))));
                    std::ops::ControlFlow::Break(())
                });
        seen.expect("x is in the index")
    }

    let racing_scan = rebuilds == 1 && std::env::var_os("SNAPKV_MODEL15_RACING_SCAN").is_some();
    let max_preemptions = if rebuilds == 1 { usize::MAX } else { 1 };
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model_with_bounds(0, max_preemptions, move || {
        // Rebuilds started and finished (std, unscheduled: see `Outcomes`), for the
        // committer to label how its commit overlapped them.
        let progress = std::sync::Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let rebuilding = move |p: &[AtomicUsize; 2]| {
            let (started, finished) = (
                p[0].load(StdOrdering::Relaxed),
                p[1].load(StdOrdering::Relaxed),
            );
            format!("{started} rebuilds started, {finished} finished")
        };
        let w = Arc::new(World::with_index(&[b"x"]));
        w.commit(&[0], b"v1", None, &NO_GC).unwrap();
        let index = w.index.as_ref().expect("models 15 and 16 have an index");
        // The run now holds `x` with a copy of v1.
        index.rebuild(false);
        let committer = {
            let (w, progress, seen) = (Arc::clone(&w), progress.clone(), seen.clone());
            loom::thread::spawn(move || {
                let at_start = rebuilding(&progress);
                let ts = w.commit(&[0], b"v2", None, &NO_GC).unwrap();
                seen.saw(format!(
                    "commit from {at_start} to {}",
                    rebuilding(&progress)
                ));
                ts
            })
        };
        let rebuilder = {
            let (w, progress) = (Arc::clone(&w), progress.clone());
            loom::thread::spawn(move || {
                let index = w.index.as_ref().expect("models 15 and 16 have an index");
                for _ in 0..rebuilds {
                    progress[0].fetch_add(1, StdOrdering::Relaxed);
                    index.rebuild(false);
                    progress[1].fetch_add(1, StdOrdering::Relaxed);
                }
            })
        };
        let want = |s: u64| match s {
            1 => Some((1, b"v1".to_vec())),
            _ => Some((2, b"v2".to_vec())),
        };
        if racing_scan {
            let s = w.clock.visible();
            assert_eq!(scan_x(&w, s), want(s), "a scan at {s} read a stale copy");
        }
        assert_eq!(committer.join().unwrap(), 2);
        rebuilder.join().unwrap();
        assert_eq!(
            scan_x(&w, 2),
            want(2),
            "a scan after both read a stale copy"
        );
        // The replaced runs, freed through the epoch, hold the chain: empty it now (delete
        // `x` and prune), so that its drop, which may run during loom's shutdown, needs no
        // pin.
        let mut delete = [Write::new(b"x", None)];
        commit(&w.clock, &*w, &mut delete, Checks::default(), &NO_GC).unwrap();
        let horizon = w.registry.horizon(&w.clock);
        let guard = crossbeam_epoch::pin();
        w.chains[0].lock().prune_and_retire(&horizon, &guard);
    });
    // The commit inside the last rebuild (for model 16: after the first new run's set was
    // published), and every rebuild inside the commit.
    let last = format!("{rebuilds} rebuilds started");
    let inside_rebuild = format!(
        "commit from {last}, {0} finished to {last}, {0} finished",
        rebuilds - 1
    );
    let rebuilds_inside =
        format!("commit from 0 rebuilds started, 0 finished to {last}, {rebuilds} finished");
    outcomes.assert_explored(&[&inside_rebuild, &rebuilds_inside]);
}

/// Model 18: pruning strips a deleted key's tombstone once no transaction reads below it,
/// racing a transaction whose snapshot predates the delete (it must still conflict: the
/// tombstone stays for it) and a read-only snapshot as old (it reads the key as absent
/// throughout, then the chain empties under it).
#[test]
fn tombstone_strip_keeps_conflicts_and_views() {
    faults::inject(Fault::None);
    let outcomes = Outcomes::default();
    for pruner_first in [false, true] {
        let seen = outcomes.clone();
        model(move || check_tombstone_strip(&seen, pruner_first));
    }
    outcomes.assert_explored(&[
        "pruned before the read true",
        "pruned before the read false, before the commit true",
        "pruned before the read false, before the commit false",
    ]);
}

/// Negative control for model 18: stripping up to the visible timestamp, ignoring the
/// transaction, loses its write-write conflict.
#[test]
#[ignore = "negative control: run alone, must fail"]
fn broken_strip_ignoring_writer_floor_is_caught() {
    faults::inject(Fault::StripIgnoringWriterFloor);
    for pruner_first in [false, true] {
        model(move || check_tombstone_strip(&Outcomes::default(), pruner_first));
    }
}

/// Model 18's race; `pruner_first` yields to the pruner after spawning it: without that, no
/// explored read comes after the prune, and with it fewer commits race the prune, so the
/// model explores both.
fn check_tombstone_strip(seen: &Outcomes, pruner_first: bool) {
    let w = World::new(&[b"x"]);
    // Read-only snapshots in `w.registry`, transactions in their own (as `Db` keeps them).
    let writers = Arc::new(Registry::new());
    let (reader_slot, r) = w.registry.register(&w.clock);
    let (writer_slot, t) = writers.register(&w.clock);
    w.commit(&[0], b"v1", None, &NO_GC).unwrap();
    let mut delete = [Write::new(b"x", None)];
    commit(&w.clock, &*w, &mut delete, Checks::default(), &NO_GC).unwrap();
    let (w2, writers2) = (Arc::clone(&w), Arc::clone(&writers));
    let pruned = Mark::default();
    let pruned2 = pruned.clone();
    let pruner = loom::thread::spawn(move || {
        let h = Horizon::merge(w2.registry.horizon(&w2.clock), writers2.horizon(&w2.clock));
        let guard = crossbeam_epoch::pin();
        let p = w2.chains[0].lock().prune_and_retire(&h, &guard);
        pruned2.set();
        drop(guard);
        crossbeam_epoch::pin().flush();
        p.unlinked
    });
    if pruner_first {
        loom::thread::yield_now();
    }
    let pruned_before_read = pruned.is_set();
    assert_eq!(w.read(0, r), None, "the old reader saw a key it predates");
    let pruned_before_commit = pruned.is_set();
    let mine = w.commit(&[0], b"mine", Some(t), &NO_GC);
    assert!(
        matches!(mine, Err(Error::Conflict { .. })),
        "lost a write-write conflict with the delete: {mine:?}"
    );
    writers.release(writer_slot);
    let unlinked = pruner.join().unwrap();
    seen.saw(format!(
        "pruned before the read {pruned_before_read}, before the commit {pruned_before_commit}, \
         unlinked {unlinked}"
    ));
    // No transaction left: the lone tombstone goes, and the chain reads as absent to all.
    let h = Horizon::merge(w.registry.horizon(&w.clock), writers.horizon(&w.clock));
    let guard = crossbeam_epoch::pin();
    w.chains[0].lock().prune_and_retire(&h, &guard);
    assert_eq!(
        w.chains[0].version_count(&guard),
        0,
        "the lone tombstone stayed"
    );
    drop(guard);
    assert_eq!(w.read(0, r), None);
    assert_eq!(w.read(0, w.clock.visible()), None);
    w.registry.release(reader_slot);
}

/// Model 19: a big commit (linked as pending before its timestamp, stamped, published, then
/// its head caches finished) racing a snapshot that reads one key through the chain's head
/// cache and the other by walking the chain: the snapshot sees both writes or neither, all of
/// them once it includes the commit; afterwards the caches describe the new heads. (The
/// world keeps no mirrors: they are rewritten by the same calls as the chain's cache, and
/// their rewrites multiply the interleavings; `raw::pending::tests` reads through them.)
#[test]
fn pending_commit_is_stamped_before_it_is_visible() {
    faults::inject(Fault::None);
    check_pending_commit();
}

/// Negative control for model 19: publishing before stamping lets a snapshot that includes
/// the commit skip a version still marked pending.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_publish_before_stamp_is_caught() {
    faults::inject(Fault::PublishBeforeStamp);
    check_pending_commit();
}

fn check_pending_commit() {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let w = World::new(&[b"x", b"y"]);
        w.commit(&[0, 1], b"old", None, &NO_GC).unwrap();
        let w2 = Arc::clone(&w);
        let t = loom::thread::spawn(move || w2.commit(&[0, 1], b"new", Some(1), &NO_GC).unwrap());
        // Lets the committer run first: otherwise loom's bounded search never has it publish
        // before the snapshot is taken (it has many steps to take before it publishes).
        loom::thread::yield_now();
        let (slot, s) = w.registry.register(&w.clock);
        let guard = crossbeam_epoch::pin();
        let x = w.chains[0]
            .lend_at(s, &guard)
            .map(|v| (v.ts, v.value.map(<[u8]>::to_vec)));
        drop(guard);
        let y = w.read(1, s);
        let (ts, value): (u64, &[u8]) = if s >= 2 { (2, b"new") } else { (1, b"old") };
        assert_eq!(
            x,
            Some((ts, Some(value.to_vec()))),
            "snapshot at {s} read x wrong"
        );
        assert_eq!(
            y,
            Some((ts, Bytes::from_static(value))),
            "snapshot at {s} read y wrong"
        );
        seen.saw(format!("snapshot at {s}"));
        w.registry.release(slot);
        assert_eq!(t.join().unwrap(), 2);
        let guard = crossbeam_epoch::pin();
        for chain in &w.chains {
            let head = chain
                .lend_at(2, &guard)
                .map(|v| (v.ts, v.value.map(<[u8]>::to_vec)));
            assert_eq!(head, Some((2, Some(b"new".to_vec()))));
            assert_eq!(chain.newest_ts(&guard), Some(2), "a cache was left pending");
        }
    });
    outcomes.assert_explored(&["snapshot at 1", "snapshot at 2"]);
}

/// Model 20: a big serializable commit whose read validation fails after it linked its
/// versions as pending takes them back, racing a snapshot reading one of the keys through its
/// head cache: nobody ever sees them, and the keys and their caches are as before (a later
/// commit to them succeeds).
#[test]
fn failed_pending_commit_installs_nothing() {
    faults::inject(Fault::None);
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let w = World::new(&[b"x", b"y", b"z"]);
        w.commit(&[0, 1, 2], b"init", None, &NO_GC).unwrap();
        // `z` changes after the snapshot (1) the serializable transaction reads it at.
        w.commit(&[2], b"z2", None, &NO_GC).unwrap();
        let w2 = Arc::clone(&w);
        let done = Mark::default();
        let done2 = done.clone();
        let t = loom::thread::spawn(move || {
            let r = w2.commit_serializable(&[2], &[0, 1], 1);
            done2.set();
            r
        });
        // Lets the committer run first (see model 19).
        loom::thread::yield_now();
        let (slot, s) = w.registry.register(&w.clock);
        let done_first = done.is_set();
        let guard = crossbeam_epoch::pin();
        let x = w.chains[0].lend_at(s, &guard).map(|v| v.ts);
        drop(guard);
        assert_eq!(x, Some(1), "snapshot at {s} saw a failed commit");
        seen.saw(format!(
            "snapshot at {s}, commit returned before {done_first}"
        ));
        w.registry.release(slot);
        assert!(
            matches!(t.join().unwrap(), Err(Error::Conflict { .. })),
            "the stale read committed"
        );
        let guard = crossbeam_epoch::pin();
        for chain in &w.chains[..2] {
            assert_eq!(
                chain.version_count(&guard),
                1,
                "a pending version stayed linked"
            );
            assert_eq!(chain.newest_ts(&guard), Some(1), "a cache was left pending");
        }
        drop(guard);
        let visible = w.clock.visible();
        assert_eq!(
            w.commit(&[0, 1], b"after", Some(visible), &NO_GC).unwrap(),
            visible + 1
        );
    });
    outcomes.assert_explored(&[
        "snapshot at 2, commit returned before false",
        "snapshot at 3",
    ]);
}

/// Model 21: the reader side of the scan index's head copies (model 15 checks that a copy is
/// never stale for a snapshot that includes the superseding commit; this one that a lent copy
/// is never freed under its reader). `x` holds v1 in a run that copied it. A writer commits
/// v2, prunes v1 (unlinking and retiring it) and flushes its garbage, so the epoch frees v1
/// as soon as no reader pinned before the retirement is left; meanwhile a scan at the visible
/// timestamp it loaded first lends `x` on the scan's own path (`Entries::lend_forward`),
/// checking before it reads a value's bytes that the version behind them was not freed
/// (`raw::loom_watch`). The scan registers no snapshot: the API's scans do, and then the prune
/// keeps v1 while they read; here nothing but the changed bit and the epoch keeps the copy
/// valid, which is exactly the contract of `CopiedHead::lend` and `CurrentMask::lend`. The
/// model requires a scan that lent the copy of v1 after v1 was retired, and one that started
/// after v1 was freed.
#[test]
fn lent_head_copies_are_never_freed_under_the_scan() {
    faults::inject(Fault::None);
    check_lent_copies();
}

/// Negative control for model 21: scans that lend copies without checking the changed bit.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_lend_skipping_the_changed_check_is_caught() {
    faults::inject(Fault::LendSkipsChangedCheck);
    check_lent_copies();
}

/// Negative control for model 21: committers that never mark their keys changed, so the
/// superseded head is retired while its copy still reads as current.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_retire_without_note_is_caught() {
    faults::inject(Fault::NoteSkipped);
    check_lent_copies();
}

fn check_lent_copies() {
    use crate::raw::{loom_lends, loom_watch};

    let outcomes = Outcomes::default();
    // Without letting the writer run first, no explored scan starts after v1 was freed; with
    // it, none lends the copy before the retirement. The model explores both.
    for writer_first in [false, true] {
        let seen = outcomes.clone();
        model(move || {
            let w = Arc::new(World::with_index(&[b"x"]));
            w.commit(&[0], b"v1", None, &NO_GC).unwrap();
            let index = w.index.as_ref().expect("model 21 has an index");
            // The run now holds `x` with a copy of v1.
            index.rebuild(false);
            {
                let guard = crossbeam_epoch::pin();
                let v1 = w.chains[0].newest(&guard).and_then(|v| v.value);
                loom_watch::watch(v1.expect("v1 has a value"));
            }
            let progress = Progress::default();
            let writer = {
                let (w, progress) = (Arc::clone(&w), progress.clone());
                loom::thread::spawn(move || {
                    w.commit(&[0], b"v2", None, &NO_GC).unwrap();
                    progress.committed.set();
                    // No snapshot is registered: the horizon is the visible timestamp, 2.
                    let horizon = w.registry.horizon(&w.clock);
                    let guard = crossbeam_epoch::pin();
                    let pruned = w.chains[0].lock().prune_and_retire(&horizon, &guard);
                    assert_eq!(pruned.unlinked, 1, "the prune kept v1");
                    progress.pruned.set();
                    drop(guard);
                    // Two epoch advances free what was retired, once no pinned reader holds
                    // them back.
                    crossbeam_epoch::pin().flush();
                    crossbeam_epoch::pin().flush();
                })
            };
            if writer_first {
                loom::thread::yield_now();
            }
            let started = progress.describe();
            let freed_first = loom_watch::watched_was_freed();
            let s = w.clock.visible();
            let lent_before = loom_lends::lent();
            let mut got = None;
            {
                let guard = crossbeam_epoch::pin();
                let whole = (Bound::Unbounded, Bound::Unbounded);
                let _ = index.range(whole, Reads::Heads, &guard).lend_forward(
                    s,
                    &guard,
                    usize::MAX,
                    |_, v| {
                        if let Some(v) = v {
                            let value = v.value.expect("x has no tombstone");
                            // A lending callback is the caller's code and may run for as long
                            // as it likes before it reads the value: let the writer run (loom
                            // has no scheduling point between the copy's check and this call).
                            loom::thread::yield_now();
                            // Asked before the bytes are touched: reading a freed block would
                            // be the fault itself, not a check of it.
                            assert!(
                                !loom_watch::is_freed(value.as_ptr()),
                                "a scan at {s} read a freed value (ts {})",
                                v.ts
                            );
                            got = Some((v.ts, value.to_vec(), progress.describe()));
                        }
                        std::ops::ControlFlow::Break(())
                    },
                );
            }
            let from = if loom_lends::lent() > lent_before {
                "the copy"
            } else {
                "the chain"
            };
            match &got {
                Some((ts, value, read)) => {
                    let want: &[u8] = if *ts == 1 { b"v1" } else { b"v2" };
                    assert_eq!(value, want, "a scan at {s} read ts {ts} with another value");
                    seen.saw(format!(
                        "scan at {s} read ts {ts} from {from} {read}, started {started}, \
                         v1 freed first {freed_first}"
                    ));
                }
                // A scan at 1 that reads the chain after the prune finds nothing (it registered
                // no snapshot to keep v1).
                None => seen.saw(format!(
                    "scan at {s} read nothing, started {started}, v1 freed first {freed_first}"
                )),
            }
            writer.join().unwrap();
            // The replaced run, freed through the epoch, holds the chain: empty it now (see
            // model 15).
            let mut delete = [Write::new(b"x", None)];
            commit(&w.clock, &*w, &mut delete, Checks::default(), &NO_GC).unwrap();
            let horizon = w.registry.horizon(&w.clock);
            let guard = crossbeam_epoch::pin();
            w.chains[0].lock().prune_and_retire(&horizon, &guard);
        });
    }
    outcomes.assert_explored(&[
        "read ts 1 from the copy after the prune",
        "v1 freed first true",
    ]);
}
