//! The peer comparison suite: the same workloads, in the same run, against snapkv (SI and
//! serializable), skipdb (optimistic and serializable), surrealmx (SI and SSI), a global-lock
//! `RwLock<BTreeMap>` and a copy-on-write `imbl::OrdMap`, with raw `dashmap` as the floor of a
//! point read. Every store is driven through `snapkv::workload::Engine`, which reads with the
//! lending forms; `snapkv-si-owned` runs the owned forms (`get`, a copy per value) beside them
//! in the point-read and read-transaction groups.
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
//! The project's targets (`targets.txt`) are checked against a run's results by
//! `cargo run --release --features cli -- report --targets benches/peers/targets.txt`.

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
    /// Called once per selected store; `slot` numbers the stores in visiting order, the same
    /// on every [`Stores::each`] call, so a visitor can keep per-store state in a `Vec`.
    fn visit<E: Engine>(&mut self, slot: usize, engine: &E);
}

/// Every selected store, alive together: a workload measures them back to back, so a change
/// in the host's speed (this is a shared machine) moves a cell's stores together instead of
/// landing between them, as it could when each store ran all its workloads in turn.
///
/// `SNAPKV_BENCH_ENGINES` selects stores by column name (comma-separated, e.g.
/// `snapkv-si,surrealmx-si,rwlock-btree`; all when unset). Criterion's name filter cannot do
/// this: a store is loaded before its benchmarks are filtered, and loading 1M records into
/// every store takes most of a long run.
pub struct Stores {
    snapkv_si: Option<SnapkvEngine>,
    snapkv_ser: Option<SnapkvEngine>,
    skipdb_opt: Option<SkipdbOptimistic>,
    skipdb_ser: Option<SkipdbSerializable>,
    surrealmx_si: Option<Surrealmx>,
    surrealmx_ssi: Option<Surrealmx>,
    rwlock_btree: Option<LockedBTree>,
    cow_imbl: Option<CowImbl>,
}

impl Stores {
    /// Fresh, empty instances of the selected stores.
    pub fn selected() -> Self {
        let only: Option<Vec<String>> = std::env::var("SNAPKV_BENCH_ENGINES")
            .ok()
            .map(|s| s.split(',').map(|n| n.trim().to_string()).collect());
        // Created only when selected (surrealmx starts background threads), under the name
        // that selects it.
        fn make<E: Engine>(
            only: &Option<Vec<String>>,
            name: &str,
            new: impl FnOnce() -> E,
        ) -> Option<E> {
            let selected = only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));
            selected.then(|| {
                let store = new();
                assert_eq!(store.name(), name, "a store is selected by its column name");
                store
            })
        }
        Self {
            snapkv_si: make(&only, "snapkv-si", || {
                SnapkvEngine::new(Db::new(), Isolation::Snapshot)
            }),
            snapkv_ser: make(&only, "snapkv-ser", || {
                let db = Db::builder().isolation(Isolation::Serializable).build();
                SnapkvEngine::new(
                    db.expect("default options are valid"),
                    Isolation::Serializable,
                )
            }),
            skipdb_opt: make(&only, "skipdb-opt", SkipdbOptimistic::new),
            skipdb_ser: make(&only, "skipdb-ser", SkipdbSerializable::new),
            surrealmx_si: make(&only, "surrealmx-si", || Surrealmx::new(false)),
            surrealmx_ssi: make(&only, "surrealmx-ssi", || Surrealmx::new(true)),
            rwlock_btree: make(&only, "rwlock-btree", LockedBTree::default),
            cow_imbl: make(&only, "cow-imbl", CowImbl::new),
        }
    }

    /// Hands every selected store to `v`, in column order.
    pub fn each(&self, v: &mut impl Visit) {
        fn one<E: Engine>(v: &mut impl Visit, slot: &mut usize, engine: &Option<E>) {
            if let Some(e) = engine {
                v.visit(*slot, e);
                *slot += 1;
            }
        }
        let slot = &mut 0;
        one(v, slot, &self.snapkv_si);
        one(v, slot, &self.snapkv_ser);
        one(v, slot, &self.skipdb_opt);
        one(v, slot, &self.skipdb_ser);
        one(v, slot, &self.surrealmx_si);
        one(v, slot, &self.surrealmx_ssi);
        one(v, slot, &self.rwlock_btree);
        one(v, slot, &self.cow_imbl);
    }
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
