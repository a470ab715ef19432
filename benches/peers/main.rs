//! The peer comparison suite: the same workloads, in the same run, against snapkv (SI and
//! serializable), skipdb (optimistic and serializable), surrealmx (SI and SSI), a global-lock
//! `RwLock<BTreeMap>` and a copy-on-write `imbl::OrdMap`, with raw `dashmap` as the floor of a
//! point read. Every store is driven through `snapkv::workload::Engine`.
//!
//! ```text
//! cargo bench --features workload --bench peers                  # everything, 100K records
//! cargo bench --features workload --bench peers -- micro/        # micro workloads only
//! cargo bench --features workload --bench peers -- 'ycsb/A'      # one YCSB mix
//! SNAPKV_BENCH_RECORDS=1000000 cargo bench --features workload --bench peers -- ycsb
//! ```
//!
//! Figures: docs/benchmarks.md. Read ratios between stores in one run, not absolute times.

mod engines;
mod micro;
mod ycsb;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use snapkv::workload::{Engine, SnapkvEngine};
use snapkv::{Db, Isolation};

use engines::{CowImbl, LockedBTree, SkipdbOptimistic, SkipdbSerializable, Surrealmx};

/// Something to do with each store in turn (the stores have different types).
pub trait Visit {
    fn visit<E: Engine>(&mut self, engine: E);
}

/// Hands a fresh instance of every store to `v`, one at a time.
pub fn each_engine(v: &mut impl Visit) {
    v.visit(SnapkvEngine::new(Db::new(), Isolation::Snapshot));
    let ser = Db::builder().isolation(Isolation::Serializable).build();
    v.visit(SnapkvEngine::new(
        ser.expect("default options are valid"),
        Isolation::Serializable,
    ));
    v.visit(SkipdbOptimistic::new());
    v.visit(SkipdbSerializable::new());
    v.visit(Surrealmx::new(false));
    v.visit(Surrealmx::new(true));
    v.visit(LockedBTree::default());
    v.visit(CowImbl::new());
}

/// Records for the YCSB runs and the point workloads (`SNAPKV_BENCH_RECORDS`, default 100K).
pub fn records() -> u64 {
    std::env::var("SNAPKV_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = micro::bench, ycsb::bench
}
criterion_main!(benches);
