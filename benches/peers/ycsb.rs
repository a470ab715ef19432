//! YCSB A–F at 1 and 2 threads against every store. One criterion iteration is one operation
//! (summed over the threads), so the reported throughput is the store's aggregate ops/s.

use std::time::Duration;

use criterion::{Criterion, Throughput};
use snapkv::workload::{load, run, Engine, Mix, RunConfig, Stop};

use crate::{each_engine, records, Visit};

struct Ycsb<'c> {
    c: &'c mut Criterion,
    records: u64,
}

impl Visit for Ycsb<'_> {
    fn visit<E: Engine>(&mut self, engine: E) {
        let name = engine.name();
        for mix in Mix::ALL {
            // Reload before each mix (one loader thread, as in the micro workloads): every mix
            // starts with all records present, overwritten once more. Records that D and E
            // inserted stay, outside the key space the next mix draws from.
            let fresh = &engine;
            let keys = load(fresh, self.records, 1, &|_| {});
            settle(fresh, &keys, mix);
            for threads in [1usize, 2] {
                let mut g = self
                    .c
                    .benchmark_group(format!("ycsb/{mix}/{}k/t{threads}", self.records / 1000));
                g.throughput(Throughput::Elements(1));
                g.bench_function(&name, |b| {
                    b.iter_custom(|iters| {
                        let cfg = RunConfig {
                            mix,
                            threads,
                            stop: Stop::Ops(iters),
                            latency: false,
                            seed: iters,
                        };
                        let report = run(fresh, &keys, &cfg, &|_| {});
                        assert_eq!(report.not_found(), 0, "{name} {mix}: records went missing");
                        report.elapsed
                    })
                });
                g.finish();
            }
        }
    }
}

/// Runs `mix` unmeasured for a second after a load. The reload overwrites every record, and
/// what that leaves behind (old versions waiting to be freed, cold caches) would otherwise be
/// paid by the first timed operations; at 1M records that made criterion's warm-up estimate
/// absurdly slow and sample single operations, timing mostly thread start-up.
fn settle<E: Engine>(engine: &E, keys: &snapkv::workload::Keyspace, mix: Mix) {
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
    each_engine(&mut Ycsb {
        c,
        records: records(),
    });
}
