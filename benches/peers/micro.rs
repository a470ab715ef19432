//! Micro workloads: point read at a snapshot, read-only transactions of 1 and 10 reads,
//! single-key and 10-key write transactions, read-modify-write, a 100-key scan, and snapshot
//! creation at 1K and 1M keys.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput};
use dashmap::DashMap;
use snapkv::workload::{key, load, Engine, Outcome, ReadView, KEY_LEN, VALUE_LEN};

use crate::{each_engine, records, Visit};

/// Random record numbers, precomputed so the timed loop only looks keys up.
fn sample_keys(records: u64, n: usize) -> Vec<[u8; KEY_LEN]> {
    let mut rng = fastrand::Rng::with_seed(99);
    (0..n).map(|_| key(rng.u64(0..records))).collect()
}

fn expect(o: Outcome, what: &str) {
    assert_ne!(
        o,
        Outcome::NotFound,
        "{what}: a loaded record was not found"
    );
}

struct Micro<'c> {
    c: &'c mut Criterion,
    records: u64,
    keys: Vec<[u8; KEY_LEN]>,
}

impl Visit for Micro<'_> {
    fn visit<E: Engine>(&mut self, engine: E) {
        let name = engine.name();
        // One loader thread: a multi-threaded load spreads a store over fresh malloc arenas,
        // and which store lands there first skews point-read timings by up to 2.5x.
        load(&engine, self.records, 1, &|_| {});
        let keys = &self.keys;
        let value = [7u8; VALUE_LEN];
        let n = keys.len();
        let mut i = 0usize;
        let mut next = move || {
            i = (i + 1) % n;
            i
        };
        let id = |w: &str| format!("micro/{w}/{}k", self.records / 1000);

        let mut g = self.c.benchmark_group(id("point_read_snapshot"));
        g.throughput(Throughput::Elements(1));
        let view = engine.view();
        g.bench_function(&name, |b| {
            b.iter(|| expect(black_box(view.read(&keys[next()])), "read"))
        });
        drop(view);
        g.finish();

        for reads in [1usize, 10] {
            let mut g = self.c.benchmark_group(id(&format!("read_txn_{reads}")));
            g.throughput(Throughput::Elements(1));
            g.bench_function(&name, |b| {
                b.iter(|| {
                    let start = next();
                    let batch: Vec<&[u8]> =
                        (0..reads).map(|j| &keys[(start + j) % n][..]).collect();
                    expect(black_box(engine.read_many(&batch)), "read_many")
                })
            });
            g.finish();
        }

        for writes in [1usize, 10] {
            let mut g = self.c.benchmark_group(id(&format!("write_txn_{writes}")));
            g.throughput(Throughput::Elements(1));
            g.bench_function(&name, |b| {
                b.iter(|| {
                    let start = next();
                    let batch: Vec<&[u8]> =
                        (0..writes).map(|j| &keys[(start + j) % n][..]).collect();
                    assert_eq!(engine.write_many(&batch, &value), Outcome::Done);
                })
            });
            g.finish();
        }

        let mut g = self.c.benchmark_group(id("read_modify_write"));
        g.throughput(Throughput::Elements(1));
        g.bench_function(&name, |b| {
            b.iter(|| {
                assert_eq!(
                    engine.read_modify_write(&keys[next()], &value),
                    Outcome::Done
                )
            })
        });
        g.finish();

        let mut g = self.c.benchmark_group(id("scan_100"));
        g.throughput(Throughput::Elements(100));
        g.bench_function(&name, |b| {
            b.iter(|| expect(black_box(engine.scan(&keys[next()], 100)), "scan"))
        });
        g.finish();
        drop(engine);
    }
}

/// Snapshot creation cost at a given store size.
struct SnapshotCreation<'c> {
    c: &'c mut Criterion,
    records: u64,
}

impl Visit for SnapshotCreation<'_> {
    fn visit<E: Engine>(&mut self, engine: E) {
        load(&engine, self.records, 1, &|_| {});
        let mut g = self
            .c
            .benchmark_group(format!("micro/snapshot_create/{}k", self.records / 1000));
        g.bench_function(engine.name(), |b| {
            b.iter_batched(
                || (),
                |()| drop(black_box(engine.view())),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

pub fn bench(c: &mut Criterion) {
    let records = records();
    let keys = sample_keys(records, 1 << 14);

    // The floor: one raw striped-map lookup, same hasher as snapkv's map.
    let map: DashMap<Vec<u8>, Vec<u8>, foldhash::fast::RandomState> = DashMap::default();
    for i in 0..records {
        map.insert(key(i).to_vec(), vec![7u8; VALUE_LEN]);
    }
    let mut g = c.benchmark_group(format!("micro/point_read_snapshot/{}k", records / 1000));
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("dashmap-raw", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            assert!(black_box(map.get(&keys[i][..])).is_some());
        })
    });
    g.finish();
    let mut g = c.benchmark_group(format!("micro/write_txn_1/{}k", records / 1000));
    g.throughput(Throughput::Elements(1));
    g.bench_function("dashmap-raw", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(map.insert(keys[i].to_vec(), vec![8u8; VALUE_LEN]));
        })
    });
    g.finish();
    drop(map);

    each_engine(&mut Micro { c, records, keys });
    for records in [1_000, 1_000_000] {
        each_engine(&mut SnapshotCreation { c, records });
    }
}
