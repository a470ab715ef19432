//! Micro workloads: point read at a snapshot, read-only transactions of 1 and 10 reads,
//! single-key and 10-key write transactions, read-modify-write, a 100-key scan, and snapshot
//! creation at 1K and 1M keys. The reads come in their lending forms (the engines'), and for
//! snapkv in their owned forms too (`snapkv-si-owned`).

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput};
use dashmap::DashMap;
use snapkv::workload::{key, load, Engine, Outcome, ReadView, KEY_LEN, VALUE_LEN};

use crate::{records, Stores, Visit};

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

/// Loads every store with `records` records (one loader thread: a multi-threaded load spreads a
/// store over fresh malloc arenas, and which store lands there first skews point-read timings
/// by up to 2.5x).
struct Load(u64);

impl Visit for Load {
    fn visit<E: Engine>(&mut self, _: usize, engine: &E) {
        load(engine, self.0, 1, &|_| {});
    }
}

/// The micro workloads, each a group in which every store runs in turn.
#[derive(Clone, Copy)]
enum Workload {
    PointRead,
    ReadTxn(usize),
    WriteTxn(usize),
    ReadModifyWrite,
    Scan100,
    SnapshotCreate,
}

impl Workload {
    fn name(self) -> String {
        match self {
            Self::PointRead => "point_read_snapshot".into(),
            Self::ReadTxn(n) => format!("read_txn_{n}"),
            Self::WriteTxn(n) => format!("write_txn_{n}"),
            Self::ReadModifyWrite => "read_modify_write".into(),
            Self::Scan100 => "scan_100".into(),
            Self::SnapshotCreate => "snapshot_create".into(),
        }
    }

    fn elements(self) -> Option<u64> {
        match self {
            Self::Scan100 => Some(100),
            Self::SnapshotCreate => None,
            _ => Some(1),
        }
    }
}

/// One workload, every store in turn.
struct Micro<'g, 'c> {
    group: &'g mut BenchmarkGroup<'c, WallTime>,
    workload: Workload,
    keys: &'g [[u8; KEY_LEN]],
}

impl Visit for Micro<'_, '_> {
    fn visit<E: Engine>(&mut self, _: usize, engine: &E) {
        let keys = self.keys;
        let value = [7u8; VALUE_LEN];
        let n = keys.len();
        let mut i = 0usize;
        let mut next = move || {
            i = (i + 1) % n;
            i
        };
        let name = engine.name();
        let g = &mut *self.group;
        match self.workload {
            Workload::PointRead => {
                let view = engine.view();
                g.bench_function(&name, |b| {
                    b.iter(|| expect(black_box(view.read(&keys[next()])), "read"))
                });
            }
            Workload::ReadTxn(reads) => {
                g.bench_function(&name, |b| {
                    b.iter(|| {
                        let start = next();
                        let batch: Vec<&[u8]> =
                            (0..reads).map(|j| &keys[(start + j) % n][..]).collect();
                        expect(black_box(engine.read_many(&batch)), "read_many")
                    })
                });
            }
            Workload::WriteTxn(writes) => {
                g.bench_function(&name, |b| {
                    b.iter(|| {
                        let start = next();
                        let batch: Vec<&[u8]> =
                            (0..writes).map(|j| &keys[(start + j) % n][..]).collect();
                        assert_eq!(engine.write_many(&batch, &value), Outcome::Done);
                    })
                });
            }
            Workload::ReadModifyWrite => {
                g.bench_function(&name, |b| {
                    b.iter(|| {
                        assert_eq!(
                            engine.read_modify_write(&keys[next()], &value),
                            Outcome::Done
                        )
                    })
                });
            }
            Workload::Scan100 => {
                g.bench_function(&name, |b| {
                    b.iter(|| expect(black_box(engine.scan(&keys[next()], 100)), "scan"))
                });
            }
            Workload::SnapshotCreate => {
                g.bench_function(&name, |b| {
                    b.iter_batched(
                        || (),
                        |()| drop(black_box(engine.view())),
                        BatchSize::SmallInput,
                    )
                });
            }
        }
    }
}

/// Runs `workload` against every store in `stores` as one group, after `floor`'s benchmarks.
fn group(
    c: &mut Criterion,
    stores: &Stores,
    (workload, records, keys): (Workload, u64, &[[u8; KEY_LEN]]),
    floor: impl FnOnce(&mut BenchmarkGroup<'_, WallTime>),
) {
    let mut g = c.benchmark_group(format!("micro/{}/{}k", workload.name(), records / 1000));
    if let Some(n) = workload.elements() {
        g.throughput(Throughput::Elements(n));
    }
    floor(&mut g);
    stores.each(&mut Micro {
        group: &mut g,
        workload,
        keys,
    });
    g.finish();
}

/// No floor in this group.
fn none(_: &mut BenchmarkGroup<'_, WallTime>) {}

pub fn bench(c: &mut Criterion) {
    let records = records();
    let keys = sample_keys(records, 1 << 14);
    let keys = &keys[..];

    // The floor: one raw striped-map lookup, same hasher as snapkv's map, measured in the
    // point-read and single-write groups.
    let map: DashMap<Vec<u8>, Vec<u8>, foldhash::fast::RandomState> = DashMap::default();
    for i in 0..records {
        map.insert(key(i).to_vec(), vec![7u8; VALUE_LEN]);
    }
    let mut i = 0;
    let mut next = move || {
        i = (i + 1) % keys.len();
        i
    };
    let stores = Stores::selected();
    stores.each(&mut Load(records));
    // The engines read with the lending forms (`get_with`); the owned forms (`get`, a copy
    // of the value) run beside them on snapkv-si's database, as `snapkv-si-owned`.
    let owned = stores.snapkv_si.as_ref().map(|e| e.db().clone());
    group(c, &stores, (Workload::PointRead, records, keys), |g| {
        g.bench_function("dashmap-raw", |b| {
            b.iter(|| assert!(black_box(map.get(&keys[next()][..])).is_some()))
        });
        if let Some(db) = &owned {
            let snap = db.snapshot();
            g.bench_function("snapkv-si-owned", |b| {
                b.iter(|| assert!(black_box(snap.get(keys[next()]).unwrap()).is_some()))
            });
        }
    });
    for reads in [1, 10] {
        group(c, &stores, (Workload::ReadTxn(reads), records, keys), |g| {
            let Some(db) = &owned else { return };
            g.bench_function("snapkv-si-owned", |b| {
                b.iter(|| {
                    let txn = db.begin();
                    let start = next();
                    for j in 0..reads {
                        let k = &keys[(start + j) % keys.len()];
                        assert!(black_box(txn.get(k).unwrap()).is_some());
                    }
                    black_box(txn.commit().unwrap())
                })
            });
        });
    }
    group(c, &stores, (Workload::WriteTxn(1), records, keys), |g| {
        g.bench_function("dashmap-raw", |b| {
            b.iter(|| black_box(map.insert(keys[next()].to_vec(), vec![8u8; VALUE_LEN])))
        });
    });
    for workload in [
        Workload::WriteTxn(10),
        Workload::ReadModifyWrite,
        Workload::Scan100,
    ] {
        group(c, &stores, (workload, records, keys), none);
    }
    drop((stores, map));

    for records in [1_000, 1_000_000] {
        let stores = Stores::selected();
        stores.each(&mut Load(records));
        group(c, &stores, (Workload::SnapshotCreate, records, keys), none);
    }
}
