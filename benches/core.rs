//! Core operation benchmarks (the peer comparison suite comes with the performance work).
//!
//! ```text
//! cargo bench --bench core
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
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

fn point_ops(c: &mut Criterion) {
    let db = loaded(KEYS);
    let mut g = c.benchmark_group("point_100k");
    let snap = db.snapshot();
    let mut i = 0u64;
    g.bench_function("snapshot_get", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(snap.get(key(i)).unwrap())
        })
    });
    drop(snap);
    g.bench_function("db_get", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(db.get(key(i)).unwrap())
        })
    });
    g.bench_function("put", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(db.put(key(i), [1u8; 100]).unwrap())
        })
    });
    g.bench_function("txn_put_commit", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let mut t = db.begin();
            t.put(key(i), [2u8; 100]).unwrap();
            black_box(t.commit().unwrap())
        })
    });
    g.bench_function("txn_read_modify_write", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let mut t = db.begin();
            let v = t.get(key(i)).unwrap().unwrap();
            t.put(key(i), &v[..]).unwrap();
            black_box(t.commit().unwrap())
        })
    });
    g.bench_function("scan_100", |b| {
        let snap = db.snapshot();
        b.iter(|| {
            i = (i + 7919) % (KEYS - 100);
            black_box(snap.range(&key(i)[..]..).take(100).count())
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

criterion_group!(benches, point_ops, snapshot_creation);
criterion_main!(benches);
