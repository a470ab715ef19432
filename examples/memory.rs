//! Memory per key and per version, and what garbage collection does with it: live heap bytes
//! (counted by an instrumented global allocator) while loading, during a long overwrite churn
//! with no long reader (flat), and while a long-lived snapshot is held (it pins one old
//! version per key it can see, not every version written after it).
//!
//! Then the bytes per key of each structure (the key map with its head mirrors, the chains,
//! the version nodes, the scan index's run), and snapkv beside surrealmx, a
//! `DashMap<Vec<u8>, Vec<u8>>` and a `BTreeMap<Vec<u8>, Vec<u8>>` in the same process: the
//! same keys and values, ten overwrites of every key, then each store's own collection.
//!
//! ```text
//! cargo run --release --example memory -- [keys=100000] [churn=2000000]
//! ```

use std::alloc::System;
use std::collections::BTreeMap;

use snapkv::workload::{key, KEY_LEN, VALUE_LEN};
use snapkv::{Db, Error};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes currently allocated (including freed versions still waiting for their epoch).
/// `stats_alloc` already counts a reallocation's growth in `bytes_allocated` (and its
/// shrinking in `bytes_deallocated`); `bytes_reallocated` is the same change again.
fn live_bytes() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

fn mib(b: i64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn churn(db: &Db, keys: u64, ops: u64, rng: &mut fastrand::Rng) -> Result<(), Error> {
    for i in 0..ops {
        let mut v = [0u8; VALUE_LEN];
        v[..8].copy_from_slice(&i.to_le_bytes());
        db.put(key(rng.u64(0..keys)), v)?;
    }
    Ok(())
}

/// A full collection, measured once it has settled: the sweep's index rebuild replaces the
/// sorted run, and the replaced one is freed only after every thread pinned at the time has
/// moved on (the next collection frees it; see `index` in docs/design.md).
fn collect(db: &Db) {
    db.collect_garbage();
    for _ in 0..8 {
        crossbeam_epoch::pin().flush();
    }
    db.collect_garbage();
}

fn report(db: &Db, label: &str, base: i64, keys: u64) {
    let s = db.stats();
    let bytes = live_bytes() - base;
    println!(
        "{label:<34} {:>9.1} MiB {:>10} versions {:>8.1} B/key",
        mib(bytes),
        s.versions,
        bytes as f64 / keys as f64
    );
}

/// The request size glibc's malloc turns `n` into (its chunk: `n` plus its 8-byte size
/// word, rounded up to 16, at least 32): what a per-key allocation costs beyond the counted
/// bytes with the system allocator.
fn glibc_chunk(n: usize) -> usize {
    ((n + 8 + 15) & !15).max(32)
}

/// Each structure's bytes per key (from `Db::memory_breakdown`), and what the counting
/// allocator sees beyond them.
fn breakdown(db: &Db, total: i64, keys: u64) {
    let parts = db.memory_breakdown();
    let per_key = |b: i64| b as f64 / keys as f64;
    let versions = db.stats().versions.max(1);
    println!("  {:<80} {:>8}", "structure", "B/key");
    let mut listed = 0i64;
    for (name, bytes) in &parts {
        listed += *bytes as i64;
        println!("  {name:<80} {:>8.1}", per_key(*bytes as i64));
    }
    println!(
        "  {:<80} {:>8.1}",
        "other (registry, clock, index deltas, node pool, epoch bags)",
        per_key(total - listed)
    );
    println!(
        "  {:<80} {:>8.1}",
        "total (counting allocator)",
        per_key(total)
    );
    // The per-key allocations, and what glibc makes of them.
    for (name, bytes) in &parts {
        let (count, what) = if name.starts_with("chains") {
            (keys as usize, "chain")
        } else if name.starts_with("version") {
            (versions, "version node")
        } else {
            continue;
        };
        let size = bytes / count.max(1);
        println!(
            "  one {what}: {size} B requested, {} B as a glibc chunk",
            glibc_chunk(size)
        );
    }
}

/// Rounds of overwriting every key in the side-by-side comparison.
const ROUNDS: u64 = 10;

/// A value for round `round` (distinct per round, so every overwrite writes new bytes).
fn value(round: u64) -> [u8; VALUE_LEN] {
    let mut v = [7u8; VALUE_LEN];
    v[..8].copy_from_slice(&round.to_le_bytes());
    v
}

/// Live bytes per key of a store built by `build`: loaded with `keys` keys, then every key
/// overwritten [`ROUNDS`] times by `put`, then `gc` run; the store is measured before it is
/// dropped.
fn side_by_side<S>(
    keys: u64,
    build: impl FnOnce() -> S,
    put: impl Fn(&mut S, &[u8], &[u8]),
    gc: impl Fn(&S),
) -> f64 {
    let base = live_bytes();
    let mut store = build();
    for round in 0..=ROUNDS {
        let v = value(round);
        for i in 0..keys {
            put(&mut store, &key(i), &v);
        }
    }
    gc(&store);
    let bytes = live_bytes() - base;
    drop(store);
    bytes as f64 / keys as f64
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let mut arg = |default: u64| args.next().and_then(Result::ok).unwrap_or(default);
    let (keys, ops) = (arg(100_000).max(1), arg(2_000_000));
    let mut rng = fastrand::Rng::with_seed(7);
    println!(
        "{keys} keys of {KEY_LEN} bytes, values of {VALUE_LEN} bytes (payload {} B/key)",
        KEY_LEN + VALUE_LEN
    );

    let base = live_bytes();
    let db = Db::new();
    for i in 0..keys {
        db.put(key(i), [7u8; VALUE_LEN])?;
    }
    collect(&db);
    report(&db, "loaded", base, keys);
    let loaded = live_bytes() - base;
    breakdown(&db, loaded, keys);

    println!("\nchurn: {ops} random overwrites, no long reader");
    for phase in 1..=5 {
        churn(&db, keys, ops / 5, &mut rng)?;
        report(
            &db,
            &format!("  after {} overwrites", phase * ops / 5),
            base,
            keys,
        );
    }
    collect(&db);
    report(&db, "  after collect_garbage", base, keys);
    let settled = live_bytes() - base;
    breakdown(&db, settled, keys);

    println!("\nthe same churn with one long-lived snapshot held");
    let snap = db.snapshot();
    for phase in 1..=5 {
        churn(&db, keys, ops / 5, &mut rng)?;
        report(
            &db,
            &format!("  after {} overwrites", phase * ops / 5),
            base,
            keys,
        );
    }
    collect(&db);
    report(&db, "  snapshot held, after collect", base, keys);
    let pinned = live_bytes() - base;
    let pinned_versions = db.stats().versions as i64 - keys as i64;
    drop(snap);
    collect(&db);
    report(&db, "  snapshot dropped, after collect", base, keys);

    println!();
    println!(
        "bytes per key (loaded, 1 version each): {:.0}",
        loaded as f64 / keys as f64
    );
    println!(
        "growth under churn without readers:     {:+.1}%",
        100.0 * (settled - loaded) as f64 / loaded as f64
    );
    if pinned_versions > 0 {
        println!(
            "bytes per extra version pinned by the snapshot: {:.0} ({} versions pinned, at most one per key)",
            (pinned - settled) as f64 / pinned_versions as f64,
            pinned_versions
        );
    }
    drop(db);

    println!(
        "\nside by side: {keys} keys loaded, every key overwritten {ROUNDS} times, then each \
         store's own collection (live B/key; payload {} B/key)",
        KEY_LEN + VALUE_LEN
    );
    let snapkv = side_by_side(
        keys,
        Db::new,
        |db, k, v| {
            db.put(k, v).expect("an in-memory put");
        },
        collect,
    );
    println!(
        "  {:<40} {snapkv:>8.1}",
        "snapkv (Db::put, collect_garbage)"
    );
    let surreal = side_by_side(
        keys,
        surrealmx::Database::new,
        |db, k, v| db.set(k, v).expect("a surrealmx set"),
        |db| {
            db.run_cleanup();
            db.run_gc();
            for _ in 0..8 {
                crossbeam_epoch::pin().flush();
            }
        },
    );
    println!(
        "  {:<40} {surreal:>8.1}",
        "surrealmx (set, run_cleanup + run_gc)"
    );
    let dashmap = side_by_side(
        keys,
        dashmap::DashMap::<Vec<u8>, Vec<u8>>::new,
        |m, k, v| {
            m.insert(k.to_vec(), v.to_vec());
        },
        |_| {},
    );
    println!(
        "  {:<40} {dashmap:>8.1}",
        "DashMap<Vec<u8>, Vec<u8>> (insert)"
    );
    let btree = side_by_side(
        keys,
        BTreeMap::<Vec<u8>, Vec<u8>>::new,
        |m, k, v| {
            m.insert(k.to_vec(), v.to_vec());
        },
        |_| {},
    );
    println!(
        "  {:<40} {btree:>8.1}",
        "BTreeMap<Vec<u8>, Vec<u8>> (insert)"
    );
    println!(
        "snapkv / surrealmx: {:.2}, snapkv / DashMap: {:.2}",
        snapkv / surreal,
        snapkv / dashmap
    );
    Ok(())
}
