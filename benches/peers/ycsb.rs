//! YCSB A–F at 1 and 2 threads against every store. One criterion iteration is one operation
//! (summed over the threads), so the reported throughput is the store's aggregate ops/s. The
//! stores of a cell are measured back to back (see [`Stores`]).

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use snapkv::workload::{load, run, Engine, Keyspace, Mix, RunConfig, Stop};

use crate::{records, Stores, Visit};

/// Reloads every store before a mix (one loader thread, as in the micro workloads): every
/// mix starts with all records present, overwritten once more. Records that D and E inserted
/// stay, outside the key space the next mix draws from.
struct Reload {
    records: u64,
    /// Each store's key space for the current mix, by slot.
    keys: Vec<Keyspace>,
}

impl Visit for Reload {
    fn visit<E: Engine>(&mut self, slot: usize, engine: &E) {
        let keys = load(engine, self.records, 1, &|_| {});
        match self.keys.get_mut(slot) {
            Some(k) => *k = keys,
            None => self.keys.push(keys),
        }
    }
}

/// One cell (a mix at a thread count), every store in turn.
struct Cell<'g, 'c> {
    group: &'g mut BenchmarkGroup<'c, WallTime>,
    keys: &'g [Keyspace],
    mix: Mix,
    threads: usize,
}

impl Visit for Cell<'_, '_> {
    fn visit<E: Engine>(&mut self, slot: usize, engine: &E) {
        let (mix, threads, keys) = (self.mix, self.threads, &self.keys[slot]);
        let name = engine.name();
        if threads == 1 {
            // Right before the store's first cell of this mix, so what the reload left behind
            // is gone and not another store's to pay for.
            settle(engine, keys, mix);
        }
        self.group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let cfg = RunConfig {
                    mix,
                    threads,
                    stop: Stop::Ops(iters),
                    latency: false,
                    seed: iters,
                };
                let report = run(engine, keys, &cfg, &|_| {});
                assert_eq!(report.not_found(), 0, "{name} {mix}: records went missing");
                report.elapsed
            })
        });
    }
}

/// Runs `mix` unmeasured for a second after a load. The reload overwrites every record, and
/// what that leaves behind (old versions waiting to be freed, cold caches) would otherwise be
/// paid by the first timed operations; at 1M records that made criterion's warm-up estimate
/// absurdly slow and sample single operations, timing mostly thread start-up.
fn settle<E: Engine>(engine: &E, keys: &Keyspace, mix: Mix) {
    let cfg = RunConfig {
        mix,
        threads: 2,
        stop: Stop::After(SETTLE),
        latency: false,
        seed: 0,
    };
    run(engine, keys, &cfg, &|_| {});
}

/// How long [`settle`] runs a mix before it is measured.
const SETTLE: Duration = Duration::from_secs(1);

pub fn bench(c: &mut Criterion) {
    let stores = Stores::selected();
    let mut reload = Reload {
        records: records(),
        keys: Vec::new(),
    };
    for mix in Mix::ALL {
        stores.each(&mut reload);
        for threads in [1usize, 2] {
            let mut group =
                c.benchmark_group(format!("ycsb/{mix}/{}k/t{threads}", reload.records / 1000));
            group.throughput(Throughput::Elements(1));
            stores.each(&mut Cell {
                group: &mut group,
                keys: &reload.keys,
                mix,
                threads,
            });
            group.finish();
        }
    }
}
