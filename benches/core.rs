//! Core operation benchmarks of snapkv alone (the comparison with the peers is
//! `benches/peers`).
//!
//! ```text
//! cargo bench --bench core
//! ```

use std::hint::black_box;
use std::ops::ControlFlow;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion};
use snapkv::Db;

const KEYS: u64 = 100_000;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn loaded(n: u64) -> Db {
    let db = Db::new();
    for i in 0..n {
        db.put(key(i), [7u8; 100]).unwrap();
    }
    db
}

/// Point reads and writes over 100K keys. Each read comes in its two forms side by side: the
/// owned one (`get`, `range`: a copy of the bytes) and the lending one (`get_with`,
/// `scan_with`: borrowed), with a raw `DashMap::get` (borrowed, same hasher) as the floor of a
/// lookup. The owned forms read through the lending paths, so the gap between the two is the
/// copy; `examples/owned_reads` puts both next to the floor and surrealmx in random key order.
fn point_ops(c: &mut Criterion) {
    let db = loaded(KEYS);
    let map: dashmap::DashMap<Vec<u8>, Vec<u8>, foldhash::fast::RandomState> =
        dashmap::DashMap::default();
    for i in 0..KEYS {
        map.insert(key(i).to_vec(), vec![7u8; 100]);
    }
    let mut g = c.benchmark_group("point_100k");
    let snap = db.snapshot();
    let mut i = 0u64;
    let mut next = move || {
        i = (i + 7919) % KEYS;
        i
    };
    g.bench_function("dashmap_get", |b| {
        b.iter(|| black_box(map.get(&key(next())[..]).map(|v| v.len())))
    });
    g.bench_function("snapshot_get", |b| {
        b.iter(|| black_box(snap.get(key(next())).unwrap()))
    });
    g.bench_function("snapshot_get_with", |b| {
        b.iter(|| black_box(snap.get_with(key(next()), |v| v.len()).unwrap()))
    });
    drop(snap);
    drop(map);
    g.bench_function("db_get", |b| {
        b.iter(|| black_box(db.get(key(next())).unwrap()))
    });
    g.bench_function("db_get_with", |b| {
        b.iter(|| black_box(db.get_with(key(next()), |v| v.len()).unwrap()))
    });
    g.bench_function("txn_read_10", |b| {
        b.iter(|| {
            let t = db.begin();
            for _ in 0..10 {
                black_box(t.get(key(next())).unwrap());
            }
            black_box(t.commit().unwrap())
        })
    });
    g.bench_function("txn_read_10_with", |b| {
        b.iter(|| {
            let t = db.begin();
            for _ in 0..10 {
                black_box(t.get_with(key(next()), |v| v.len()).unwrap());
            }
            black_box(t.commit().unwrap())
        })
    });
    g.bench_function("put", |b| {
        b.iter(|| black_box(db.put(key(next()), [1u8; 100]).unwrap()))
    });
    g.bench_function("txn_put_commit", |b| {
        b.iter(|| {
            let mut t = db.begin();
            t.put(key(next()), [2u8; 100]).unwrap();
            black_box(t.commit().unwrap())
        })
    });
    g.bench_function("txn_read_modify_write", |b| {
        b.iter(|| {
            let k = key(next());
            let mut t = db.begin();
            let v = t.get(k).unwrap().unwrap();
            t.put(k, &v[..]).unwrap();
            black_box(t.commit().unwrap())
        })
    });
    let snap = db.snapshot();
    let mut start = 0u64;
    let mut next_start = move || {
        start = (start + 7919) % (KEYS - 100);
        key(start)
    };
    g.bench_function("scan_100", |b| {
        b.iter(|| black_box(snap.range(next_start()..).take(100).count()))
    });
    g.bench_function("scan_with_100", |b| {
        b.iter(|| {
            black_box(snap.scan_with_limit(next_start().., 100, |k, v| {
                black_box((k, v));
                ControlFlow::Continue(())
            }))
        })
    });
    g.finish();
}

fn snapshot_creation(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot_create");
    for n in [1_000u64, 1_000_000] {
        let db = loaded(n);
        g.bench_function(format!("{n}_keys"), |b| {
            b.iter_batched(|| (), |_| black_box(db.snapshot()), BatchSize::SmallInput)
        });
    }
    g.finish();
}

/// Single-key write transactions over working sets of different sizes, drawn from the same
/// 100K loaded keys: 16 keys stay in the first-level cache, so that run costs what the
/// commit's instructions and atomics cost; 16K keys (the peer suite's `write_txn_1`) add the
/// commit's cache misses. A raw `DashMap::insert` over the same keys is the floor of one
/// striped-map write. See docs/benchmarks.md (conclusions: what a single-key commit costs).
fn write_working_set(c: &mut Criterion) {
    let db = loaded(KEYS);
    let map: dashmap::DashMap<Vec<u8>, Vec<u8>, foldhash::fast::RandomState> =
        dashmap::DashMap::default();
    for i in 0..KEYS {
        map.insert(key(i).to_vec(), vec![7u8; 100]);
    }
    let mut g = c.benchmark_group("write_working_set");
    g.throughput(criterion::Throughput::Elements(1));
    for n in [16usize, 1 << 14] {
        let mut rng = fastrand::Rng::with_seed(7);
        let keys: Vec<[u8; 16]> = (0..n).map(|_| key(rng.u64(0..KEYS))).collect();
        let mut i = 0;
        g.bench_function(format!("txn_put_commit/{n}_keys"), |b| {
            b.iter(|| {
                i = (i + 1) % n;
                let mut t = db.begin();
                t.put(keys[i], [2u8; 100]).unwrap();
                black_box(t.commit().unwrap())
            })
        });
        g.bench_function(format!("dashmap_insert/{n}_keys"), |b| {
            b.iter(|| {
                i = (i + 1) % n;
                black_box(map.insert(keys[i].to_vec(), vec![2u8; 100]))
            })
        });
    }
    g.finish();
}

/// What the machine charges for the synchronisation a commit does several times: an
/// uncontended atomic read-modify-write (lock words, the clock) and a store followed by a
/// `SeqCst` fence (snapshot registration, the epoch's pin). A plain store is the reference.
fn atomics(c: &mut Criterion) {
    use std::sync::atomic::{fence, AtomicU64, Ordering};
    let word = AtomicU64::new(0);
    let mut g = c.benchmark_group("atomics");
    g.bench_function("plain_store", |b| {
        b.iter(|| black_box(&word).store(1, Ordering::Relaxed))
    });
    g.bench_function("uncontended_fetch_add", |b| {
        b.iter(|| black_box(&word).fetch_add(1, Ordering::AcqRel))
    });
    g.bench_function("store_then_seqcst_fence", |b| {
        b.iter(|| {
            black_box(&word).store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
        })
    });
    g.finish();
}

/// Live snapshots at the peak of [`registry_peak`].
const PEAK_SNAPSHOTS: usize = 100_000;

/// Snapshot creation + drop and a one-key `update`, before and after a peak of
/// [`PEAK_SNAPSHOTS`] live snapshots in the same run: once the peak is dropped, the snapshot
/// registry must cost what it cost before (it neither keeps nor scans the peak's slots).
/// During the peak a commit every 100 snapshots spreads them over 1,000 timestamps.
fn registry_peak(c: &mut Criterion) {
    let db = loaded(1_000);
    let mut g = c.benchmark_group("registry_peak");
    let mut i = 0u64;
    let mut measure = |g: &mut BenchmarkGroup<'_, WallTime>, phase: &str| {
        g.bench_function(format!("snapshot_drop/{phase}"), |b| {
            b.iter(|| drop(black_box(db.snapshot())))
        });
        g.bench_function(format!("update/{phase}"), |b| {
            b.iter(|| {
                i = (i + 7) % 1_000;
                db.update(|t| t.put(key(i), [3u8; 100])).unwrap()
            })
        });
    };
    measure(&mut g, "before_peak");
    let peak: Vec<_> = (0..PEAK_SNAPSHOTS)
        .map(|n| {
            if n % 100 == 0 {
                db.put(key(0), [4u8; 100]).unwrap();
            }
            db.snapshot()
        })
        .collect();
    assert_eq!(db.stats().live_snapshots, PEAK_SNAPSHOTS);
    drop(peak);
    measure(&mut g, "after_peak");
    g.finish();
}

criterion_group!(
    benches,
    point_ops,
    snapshot_creation,
    registry_peak,
    write_working_set,
    atomics
);
criterion_main!(benches);
