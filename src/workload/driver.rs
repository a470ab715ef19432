//! Loads a store and runs a YCSB mix against it from several threads.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::workload::engine::{Engine, Outcome};
use crate::workload::keys::{key, value, VALUE_LEN};
use crate::workload::mix::{Distribution, Mix, Op};
use crate::workload::report::Report;
use crate::workload::zipf::{Latest, ScrambledZipfian};

/// Longest scan, as in YCSB's `maxscanlength`; lengths are uniform in `1..=MAX_SCAN_LEN`.
pub const MAX_SCAN_LEN: usize = 100;

/// The records that exist: `0..count()`. Inserts claim the next record number, so the key
/// space grows during workloads D and E, and request distributions follow it.
///
/// Like YCSB's acknowledged counter, requests only go to records whose insert has finished:
/// `count` advances past record `i` once every record below `i` is in, so a read never picks
/// a record another thread has claimed but not written yet.
#[derive(Debug)]
pub struct Keyspace {
    claimed: AtomicU64,
    acknowledged: AtomicU64,
    /// Inserts that finished out of order, waiting for the records below them.
    finished_early: parking_lot::Mutex<BTreeSet<u64>>,
}

impl Keyspace {
    /// A key space whose records `0..records` have been loaded.
    pub fn loaded(records: u64) -> Self {
        Self {
            claimed: AtomicU64::new(records),
            acknowledged: AtomicU64::new(records),
            finished_early: parking_lot::Mutex::new(BTreeSet::new()),
        }
    }

    /// How many records exist: `0..count()` are all inserted.
    pub fn count(&self) -> u64 {
        self.acknowledged.load(Ordering::Acquire)
    }

    fn claim(&self) -> u64 {
        self.claimed.fetch_add(1, Ordering::Relaxed)
    }

    /// Records that the insert of record `i` finished.
    fn acknowledge(&self, i: u64) {
        let mut early = self.finished_early.lock();
        early.insert(i);
        let mut next = self.acknowledged.load(Ordering::Relaxed);
        while early.remove(&next) {
            next += 1;
        }
        self.acknowledged.store(next, Ordering::Release);
    }
}

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this many operations in total, split evenly over the threads.
    Ops(u64),
    /// After this much time.
    After(Duration),
}

/// One run: which mix, how many threads, for how long.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The YCSB workload.
    pub mix: Mix,
    /// Client threads.
    pub threads: usize,
    /// When to stop.
    pub stop: Stop,
    /// Whether to time every operation (for p50/p99); off for criterion, which times batches.
    pub latency: bool,
    /// Seed of the per-thread random generators (thread `t` uses `seed + t`).
    pub seed: u64,
}

/// Inserts records `0..records` with `threads` threads; `progress` receives record counts as
/// they complete. Returns the key space to run mixes on.
pub fn load<E: Engine>(
    engine: &E,
    records: u64,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Keyspace {
    let threads = threads.max(1) as u64;
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(0x10AD + t);
                let mut done = 0;
                let mut i = t;
                while i < records {
                    let v = value(rng.u64(..));
                    while engine.insert(&key(i), &v) == Outcome::Conflict {}
                    done += 1;
                    if done % 1024 == 0 {
                        progress(1024);
                    }
                    i += threads;
                }
                progress(done % 1024);
            });
        }
    });
    Keyspace::loaded(records)
}

/// Per-thread request generator: picks operations, keys, scan lengths and values.
struct Requests<'k> {
    mix: Mix,
    keys: &'k Keyspace,
    rng: fastrand::Rng,
    zipfian: ScrambledZipfian,
    latest: Latest,
    items: u64,
    value: [u8; VALUE_LEN],
    writes: u64,
}

impl<'k> Requests<'k> {
    fn new(mix: Mix, keys: &'k Keyspace, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let items = keys.count().max(1);
        let value = value(rng.u64(..));
        Self {
            mix,
            keys,
            rng,
            zipfian: ScrambledZipfian::new(items),
            latest: Latest::new(items),
            items,
            value,
            writes: 0,
        }
    }

    fn op(&mut self) -> Op {
        self.mix.pick(self.rng.u32(0..100))
    }

    /// The record number of the next request, over the records that exist now.
    fn record(&mut self) -> u64 {
        let items = self.keys.count().max(1);
        if items != self.items {
            self.items = items;
            match self.mix.distribution() {
                Distribution::Latest => self.latest.set_items(items),
                _ => self.zipfian.set_items(items),
            }
        }
        match self.mix.distribution() {
            Distribution::Zipfian => self.zipfian.sample(self.rng.f64()),
            Distribution::Latest => self.latest.sample(self.rng.f64()),
            Distribution::Uniform => self.rng.u64(0..items),
        }
    }

    /// A value for the next write: the thread's random value stamped with a write counter, so
    /// that consecutive writes differ without paying for 100 random bytes each time.
    fn value(&mut self) -> &[u8] {
        self.writes += 1;
        self.value[..8].copy_from_slice(&self.writes.to_le_bytes());
        &self.value
    }

    fn scan_len(&mut self) -> usize {
        self.rng.usize(1..=MAX_SCAN_LEN)
    }
}

/// Runs one operation to completion, retrying conflicts; returns (outcome, conflicts).
fn execute<E: Engine>(engine: &E, req: &mut Requests<'_>, op: Op) -> (Outcome, u64) {
    let mut inserted = None;
    let (k, scan_len) = match op {
        Op::Insert => {
            let i = req.keys.claim();
            inserted = Some(i);
            (key(i), 0)
        }
        Op::Scan => {
            let r = req.record();
            (key(r), req.scan_len())
        }
        _ => (key(req.record()), 0),
    };
    let mut conflicts = 0;
    loop {
        let outcome = match op {
            Op::Read => engine.read(&k),
            Op::Update => engine.update(&k, req.value()),
            Op::Insert => engine.insert(&k, req.value()),
            Op::Scan => engine.scan(&k, scan_len),
            Op::ReadModifyWrite => engine.read_modify_write(&k, req.value()),
        };
        if outcome != Outcome::Conflict {
            if let Some(i) = inserted {
                req.keys.acknowledge(i);
            }
            return (outcome, conflicts);
        }
        conflicts += 1;
        // Let the winner finish before trying again.
        std::thread::yield_now();
    }
}

/// Per-thread tallies, merged into the [`Report`].
pub(crate) struct Tally {
    pub(crate) ops: [u64; 5],
    pub(crate) conflicts: [u64; 5],
    pub(crate) not_found: [u64; 5],
    pub(crate) latency: Option<[Histogram<u64>; 5]>,
}

impl Tally {
    fn new(latency: bool) -> Self {
        Self {
            ops: [0; 5],
            conflicts: [0; 5],
            not_found: [0; 5],
            latency: latency.then(|| std::array::from_fn(|_| new_histogram())),
        }
    }
}

/// Nanosecond latencies from 1 ns to 100 s at 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 100_000_000_000, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e}"),
    }
}

/// Runs `cfg.mix` against `engine` over `keys`; `progress` receives operation counts as they
/// complete (in batches, so it may be slow).
pub fn run<E: Engine>(
    engine: &E,
    keys: &Keyspace,
    cfg: &RunConfig,
    progress: &(dyn Fn(u64) + Sync),
) -> Report {
    let threads = cfg.threads.max(1);
    let start_line = Barrier::new(threads + 1);
    let stop = AtomicBool::new(false);
    let per_thread = match cfg.stop {
        Stop::Ops(n) => Some(n.div_ceil(threads as u64)),
        Stop::After(_) => None,
    };
    let (tallies, elapsed) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (start_line, stop) = (&start_line, &stop);
                s.spawn(move || {
                    let mut req = Requests::new(cfg.mix, keys, cfg.seed.wrapping_add(t as u64));
                    let mut tally = Tally::new(cfg.latency);
                    start_line.wait();
                    let mut done = 0u64;
                    loop {
                        if per_thread.is_some_and(|n| done >= n)
                            || (done % 64 == 0 && stop.load(Ordering::Relaxed))
                        {
                            break;
                        }
                        let op = req.op();
                        let began = tally.latency.is_some().then(Instant::now);
                        let (outcome, conflicts) = execute(engine, &mut req, op);
                        if let (Some(h), Some(began)) = (&mut tally.latency, began) {
                            let ns = began.elapsed().as_nanos().max(1) as u64;
                            h[op.index()].saturating_record(ns);
                        }
                        let i = op.index();
                        tally.ops[i] += 1;
                        tally.conflicts[i] += conflicts;
                        tally.not_found[i] += u64::from(outcome == Outcome::NotFound);
                        done += 1;
                        if done % 4096 == 0 {
                            progress(4096);
                        }
                    }
                    progress(done % 4096);
                    tally
                })
            })
            .collect();
        start_line.wait();
        let began = Instant::now();
        if let Stop::After(d) = cfg.stop {
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        }
        let tallies: Vec<Tally> = workers
            .into_iter()
            .map(|w| match w.join() {
                Ok(t) => t,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect();
        (tallies, began.elapsed())
    });
    Report::merge(engine.name(), cfg, keys.count(), tallies, elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::SnapkvEngine;
    use crate::{Db, Isolation};

    #[test]
    fn every_mix_runs_and_counts_its_operations() {
        let engine = SnapkvEngine::new(Db::new(), Isolation::Snapshot);
        let keys = load(&engine, 2_000, 2, &|_| {});
        assert_eq!(engine.db().stats().keys, 2_000);
        for mix in Mix::ALL {
            let cfg = RunConfig {
                mix,
                threads: 2,
                stop: Stop::Ops(4_000),
                latency: true,
                seed: 1,
            };
            let done = AtomicU64::new(0);
            let report = run(&engine, &keys, &cfg, &|n| {
                done.fetch_add(n, Ordering::Relaxed);
            });
            assert_eq!(report.ops(), 4_000, "{mix}");
            assert_eq!(done.load(Ordering::Relaxed), 4_000, "{mix}: progress");
            for &(op, share) in mix.proportions() {
                let got = report.ops_of(op) as f64 / 4_000.0;
                let want = f64::from(share) / 100.0;
                assert!((got - want).abs() < 0.05, "{mix} {op:?}: {got} vs {want}");
            }
            // Requests only go to records whose insert finished: reads always find them.
            assert_eq!(report.not_found(), 0, "{mix}: {report:?}");
            assert!(report.latency_quantile(None, 0.5).is_some(), "{mix}");
        }
        // D and E inserted about 5% of 4000 operations each.
        assert!(
            keys.count() > 2_000 + 300,
            "inserts claimed {}",
            keys.count()
        );
        assert_eq!(engine.db().stats().keys as u64, keys.count());
    }
}
