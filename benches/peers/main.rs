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
//! SNAPKV_BENCH_ENGINES=snapkv-si,surrealmx-si cargo bench --features workload --bench peers
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

/// Passes only the stores named in `SNAPKV_BENCH_ENGINES` (comma-separated column names, e.g.
/// `snapkv-si,surrealmx-si,rwlock-btree`; all when unset) on to the visitor. Criterion's name
/// filter cannot do this: a store is loaded before its benchmarks are filtered, and loading
/// 1M records into every store takes most of a long run.
struct Selected<'v, V: Visit> {
    v: &'v mut V,
    only: Option<Vec<String>>,
}

impl<V: Visit> Selected<'_, V> {
    fn visit<E: Engine>(&mut self, engine: E) {
        let name = engine.name();
        if self.only.as_ref().is_none_or(|o| o.contains(&name)) {
            self.v.visit(engine);
        }
    }
}

/// Hands a fresh instance of every (selected) store to `v`, one at a time.
pub fn each_engine(v: &mut impl Visit) {
    let only = std::env::var("SNAPKV_BENCH_ENGINES")
        .ok()
        .map(|s| s.split(',').map(|n| n.trim().to_string()).collect());
    let mut v = Selected { v, only };
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
