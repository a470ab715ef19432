//! loom models of the protocol races, one file per subsystem (`clock`, `registry`, `chain`,
//! `index`, `commit`, `durable`) over the shared harness here. Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test --lib --release loom_models
//! ```
//!
//! Each model runs the production code (the clock, the registry, the chains,
//! [`commit`](crate::commit::commit) and the log writer) through the `sync` facade. Every model asserts that loom
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
use crate::key::KeyRange;
use crate::raw::{Chain, ChainWriter, MirroredChain};
use crate::registry::{Registry, SlotId};
use crate::sync::faults::{self, Fault};
use crate::sync::{Arc, StrongArc};

/// A horizon that prunes nothing (timestamp 0 is below every commit).
static NO_GC: Horizon = Horizon::NOTHING;

/// A fixed key space: the models need no map, only chains.
struct World {
    clock: Clock,
    registry: Registry,
    keys: Vec<Bytes>,
    chains: Vec<StrongArc<Chain>>,
    /// A scan index over the keys, for the models of its head copies (the others have none:
    /// noting changes would only add steps to explore).
    index: Option<Index>,
    /// Calls of `resolve`: only the general commit path makes them (the one-key fast path
    /// finds its chain in `with_locked`).
    resolves: AtomicUsize,
}

impl ChainSource for World {
    fn resolve(&self, key: &[u8]) -> StrongArc<Chain> {
        self.resolves.fetch_add(1, StdOrdering::Relaxed);
        let i = self.keys.iter().position(|k| k == key).expect("model key");
        Arc::clone(&self.chains[i])
    }

    fn lookup(&self, key: &[u8]) -> Option<StrongArc<Chain>> {
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
        let chains: Vec<StrongArc<Chain>> =
            keys.iter().map(|_| StrongArc::new(Chain::new())).collect();
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
            resolves: AtomicUsize::new(0),
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
                .map(|&i| crate::key::MapKey::from_slice(&self.keys[i]))
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

/// How far the writer of models 4, 8, 9 and 21 got (see [`Mark`]).
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

mod chain;
mod clock;
mod commit;
mod durable;
mod index;
mod registry;
