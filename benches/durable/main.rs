//! Durable stores side by side, in one run: snapkv on a directory under `SyncPolicy::Always`
//! and `Never`, fjall (optimistic transactions, journal synced per commit or only written) and
//! redb (durable at each commit), with in-memory snapkv as the baseline `Never` is held to.
//!
//! ```text
//! cargo bench --features workload --bench durable                       # everything
//! cargo bench --features workload --bench durable -- write_txn_1        # single-key commits
//! cargo bench --features workload --bench durable -- 'ycsb/A'           # one YCSB mix
//! SNAPKV_BENCH_DIR=/mnt/disk cargo bench --features workload --bench durable
//! ```
//!
//! The databases live in temporary directories under `SNAPKV_BENCH_DIR` (default: the system
//! temporary directory): put it on the disk you want to measure. Bytes written and syncs per
//! commit at each thread count come from `cargo run --release --features workload --example
//! durable_writes`. Figures: docs/benchmarks.md.

#[path = "engines.rs"]
mod engines;

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use snapkv::workload::{key, run, value, Engine, Keyspace, Mix, Outcome, RunConfig, Stop};
use snapkv::workload::{SnapkvEngine, KEY_LEN};
use snapkv::{Db, Isolation, SyncPolicy};

use engines::{Fjall, Redb};

/// Something to do with each store in turn (the stores have different types).
trait Visit {
    /// `name`: the store's column (snapkv's engine names its isolation level, not its policy).
    fn visit<E: Engine>(&mut self, name: &str, engine: &E);
}

/// The stores of one group, alive together in their own directories.
struct Stores {
    _dir: tempfile::TempDir,
    snapkv: Vec<(&'static str, SnapkvEngine)>,
    fjall: Vec<Fjall>,
    redb: Option<Redb>,
}

/// A fresh durable snapkv engine in `dir` with `policy`.
pub fn snapkv_durable(dir: &Path, policy: SyncPolicy) -> SnapkvEngine {
    let db = Db::builder()
        .path(dir)
        .sync(policy)
        .build()
        .expect("open a snapkv directory");
    SnapkvEngine::new(db, Isolation::Snapshot)
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("SNAPKV_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    }
    .expect("a temporary directory for the databases")
}

impl Stores {
    /// `with_unsynced`: also the stores' write-but-do-not-sync modes and in-memory snapkv.
    fn new(with_unsynced: bool) -> Self {
        let dir = bench_dir();
        let sub = |name: &str| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(&p).expect("store directory");
            p
        };
        let mut snapkv = vec![(
            "snapkv-always",
            snapkv_durable(&sub("snapkv-always"), SyncPolicy::Always),
        )];
        let mut fjall = vec![Fjall::open(&sub("fjall-sync"), true)];
        if with_unsynced {
            snapkv.push((
                "snapkv-never",
                snapkv_durable(&sub("snapkv-never"), SyncPolicy::Never),
            ));
            snapkv.push((
                "snapkv-mem",
                SnapkvEngine::new(Db::new(), Isolation::Snapshot),
            ));
            fjall.push(Fjall::open(&sub("fjall-nosync"), false));
        }
        let redb = (!with_unsynced).then(|| Redb::open(&sub("redb")));
        Self {
            _dir: dir,
            snapkv,
            fjall,
            redb,
        }
    }

    fn each(&self, v: &mut impl Visit) {
        for (name, e) in &self.snapkv {
            v.visit(name, e);
        }
        for e in &self.fjall {
            v.visit(&e.name(), e);
        }
        if let Some(e) = &self.redb {
            v.visit(&e.name(), e);
        }
    }
}

/// Single-key write transactions from `threads` threads on random keys of `KEYS`.
struct WriteTxn1<'g, 'c> {
    group: &'g mut criterion::BenchmarkGroup<'c, criterion::measurement::WallTime>,
    threads: u64,
}

const KEYS: u64 = 100_000;

impl Visit for WriteTxn1<'_, '_> {
    fn visit<E: Engine>(&mut self, name: &str, engine: &E) {
        let threads = self.threads;
        self.group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        s.spawn(move || {
                            let mut rng = fastrand::Rng::with_seed(iters ^ t);
                            let v = value(t);
                            for _ in 0..per_thread {
                                let k = key(rng.u64(0..KEYS));
                                while engine.update(&k, &v) == Outcome::Conflict {}
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
}

/// Loads `records` records in write transactions of 1,000 keys (a durable store syncs once a
/// transaction: a load of one record per commit would time the disk, not the mix).
fn load_batched<E: Engine>(engine: &E, records: u64) -> Keyspace {
    let v = value(1);
    let mut keys: Vec<[u8; KEY_LEN]> = Vec::with_capacity(1000);
    for chunk in (0..records).collect::<Vec<_>>().chunks(1000) {
        keys.clear();
        keys.extend(chunk.iter().map(|&i| key(i)));
        let batch: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        while engine.write_many(&batch, &v) == Outcome::Conflict {}
    }
    Keyspace::loaded(records)
}

fn records() -> u64 {
    std::env::var("SNAPKV_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// One YCSB cell, every store in turn.
struct Ycsb<'g, 'c> {
    group: &'g mut criterion::BenchmarkGroup<'c, criterion::measurement::WallTime>,
    mix: Mix,
    threads: usize,
    records: u64,
}

impl Visit for Ycsb<'_, '_> {
    fn visit<E: Engine>(&mut self, name: &str, engine: &E) {
        let keys = load_batched(engine, self.records);
        let (mix, threads) = (self.mix, self.threads);
        self.group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let cfg = RunConfig {
                    mix,
                    threads,
                    stop: Stop::Ops(iters),
                    latency: false,
                    seed: iters,
                };
                let report = run(engine, &keys, &cfg, &|_| {});
                assert_eq!(report.not_found(), 0, "{name} {mix}: records went missing");
                report.elapsed
            })
        });
    }
}

fn write_txn_1(c: &mut Criterion) {
    for threads in [1u64, 2, 4, 8, 16] {
        let stores = Stores::new(false);
        let mut group = c.benchmark_group(format!("durable/write_txn_1/t{threads}"));
        group.throughput(Throughput::Elements(1));
        stores.each(&mut WriteTxn1 {
            group: &mut group,
            threads,
        });
        group.finish();
    }
}

fn ycsb(c: &mut Criterion) {
    let records = records();
    for mix in Mix::ALL {
        for threads in [1usize, 2] {
            let stores = Stores::new(true);
            let mut group =
                c.benchmark_group(format!("durable/ycsb/{mix}/{}k/t{threads}", records / 1000));
            group.throughput(Throughput::Elements(1));
            stores.each(&mut Ycsb {
                group: &mut group,
                mix,
                threads,
                records,
            });
            group.finish();
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = write_txn_1, ycsb
}
criterion_main!(benches);
