//! What long-lived snapshots cost the rest of the database: each benchmark runs the same work
//! with and without an idle snapshot taken before it, in the same run, so the two figures
//! give the ratio the resource bounds in docs/design.md promise.
//!
//! ```text
//! cargo bench --bench resource_bounds
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use snapkv::Db;

const KEYS: u64 = 100_000;
const WRITERS: u64 = 2;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn loaded() -> Db {
    let db = Db::new();
    for i in 0..KEYS {
        db.put(key(i), [7u8; 100]).unwrap();
    }
    db
}

/// Runs `iters` operations split over [`WRITERS`] threads, each calling `op` with a running
/// counter, and returns the wall time.
fn on_writers(iters: u64, op: impl Fn(u64) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let op = &op;
            s.spawn(move || {
                for i in 0..iters / WRITERS {
                    op(w * 1_000_003 + i);
                }
            });
        }
    });
    start.elapsed()
}

/// Two threads overwriting random keys of a loaded database, with and without an idle
/// snapshot taken before they start (it pins one old version of every key it sees).
fn writers_beside_an_old_snapshot(c: &mut Criterion) {
    let mut g = c.benchmark_group("old_snapshot_writers");
    g.throughput(Throughput::Elements(1));
    for hold in [false, true] {
        let db = loaded();
        let old = hold.then(|| db.snapshot());
        let name = if hold {
            "with_idle_snapshot"
        } else {
            "without"
        };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                on_writers(iters, |i| {
                    let k = key(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % KEYS);
                    black_box(db.put(k, [1u8; 100]).unwrap());
                })
            })
        });
        drop(old);
    }
    g.finish();
}

/// One thread inserting a fresh key and deleting it (a queue), with and without an idle
/// snapshot taken before: the snapshot sees none of the queue's keys, so it must not slow the
/// queue down or keep its keys.
fn queue_beside_an_old_snapshot(c: &mut Criterion) {
    let mut g = c.benchmark_group("old_snapshot_queue");
    g.throughput(Throughput::Elements(1));
    for hold in [false, true] {
        let db = Db::new();
        db.put(b"config", b"v1").unwrap();
        let old = hold.then(|| db.snapshot());
        let name = if hold {
            "with_idle_snapshot"
        } else {
            "without"
        };
        let mut n = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                db.put(key(n), [7u8; 100]).unwrap();
                black_box(db.delete(key(n)).unwrap())
            })
        });
        drop(old);
    }
    g.finish();
}

criterion_group!(
    benches,
    writers_beside_an_old_snapshot,
    queue_beside_an_old_snapshot
);
criterion_main!(benches);
