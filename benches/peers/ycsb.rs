//! YCSB A–F at 1 and 2 threads against every store. One criterion iteration is one operation
//! (summed over the threads), so the reported throughput is the store's aggregate ops/s.

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

pub fn bench(c: &mut Criterion) {
    each_engine(&mut Ycsb {
        c,
        records: records(),
    });
}
