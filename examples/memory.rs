//! Memory per key and per version, and what garbage collection does with it: live heap bytes
//! (counted by an instrumented global allocator) while loading, during a long overwrite churn
//! with no long reader (flat), and while a long-lived snapshot is held (it pins one old
//! version per key it can see, not every version written after it).
//!
//! ```text
//! cargo run --release --example memory -- [keys=100000] [churn=2000000]
//! ```

use std::alloc::System;

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
    Ok(())
}
