//! The snapshot registry at the API level: a peak of 100,000 live snapshots reads correctly,
//! and once they are dropped the registry holds neither their registrations nor their memory.
//!
//! One test in this file: the heap is counted by an instrumented global allocator, which
//! another test running at the same time would disturb.

use std::alloc::System;

use snapkv::{Db, Snapshot};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Live snapshots at the peak.
const PEAK: usize = 100_000;

/// Snapshots taken between two commits: the peak spreads over `PEAK / PER_ROUND` timestamps.
const PER_ROUND: usize = 1_000;

/// How far above its size before the peak the heap may stay once the peak is dropped and
/// collected. The fixed registry of the past kept 12 MiB of slots after such a peak.
const HEAP_SLACK: i64 = 64 * 1024;

/// Heap bytes currently allocated (`stats_alloc` counts a reallocation's change in
/// `bytes_allocated` / `bytes_deallocated` already).
fn live_bytes() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

fn round_of(v: Option<bytes::Bytes>) -> u64 {
    u64::from_be_bytes(v.expect("round is set")[..].try_into().expect("8 bytes"))
}

/// Takes `n` snapshots, committing (through `update`, whose own snapshot registers too) the
/// next round number before each group of [`PER_ROUND`]; each snapshot is checked as it is
/// taken. Returns them with the round each must see.
fn take_snapshots(db: &Db, n: usize) -> Vec<(u64, Snapshot)> {
    let mut snaps = Vec::with_capacity(n);
    let mut round = 0;
    for i in 0..n {
        if i % PER_ROUND == 0 {
            round = db
                .update(|t| {
                    let next = round_of(t.get(b"round")?) + 1;
                    t.put(b"round", next.to_be_bytes())?;
                    Ok(next)
                })
                .unwrap();
        }
        let snap = db.snapshot();
        assert_eq!(round_of(snap.get(b"round").unwrap()), round);
        snaps.push((round, snap));
    }
    snaps
}

/// A full collection, once epoch garbage has been flushed (see `examples/memory.rs`).
fn settle(db: &Db) {
    db.collect_garbage();
    for _ in 0..8 {
        crossbeam_epoch::pin().flush();
    }
    db.collect_garbage();
}

#[test]
fn a_peak_of_live_snapshots_leaves_neither_registrations_nor_memory_behind() {
    let db = Db::new();
    db.put(b"round", 0u64.to_be_bytes()).unwrap();
    // Warm-up: the same work at a small scale, so that what is allocated once (the epoch's
    // thread state, the map's shards, the scan index) exists before the baseline.
    drop(take_snapshots(&db, 3 * PER_ROUND));
    settle(&db);
    let before = live_bytes();

    let snaps = take_snapshots(&db, PEAK);
    let stats = db.stats();
    assert_eq!(stats.live_snapshots, PEAK);
    assert_eq!(stats.oldest_snapshot, Some(snaps[0].1.ts()));
    // Every snapshot still reads its own round after the commits that followed it.
    for (round, snap) in &snaps {
        assert_eq!(round_of(snap.get(b"round").unwrap()), *round);
    }
    let last_round = snaps.last().map(|(r, _)| *r).expect("snapshots were taken");
    let during = live_bytes();
    drop(snaps);

    let stats = db.stats();
    assert_eq!(stats.live_snapshots, 0);
    assert_eq!(stats.oldest_snapshot, None);
    // Snapshots and updates work as before the peak.
    let snap = db.snapshot();
    assert_eq!(round_of(snap.get(b"round").unwrap()), last_round);
    for _ in 0..200 {
        db.update(|t| {
            let next = round_of(t.get(b"round")?) + 1;
            t.put(b"round", next.to_be_bytes())
        })
        .unwrap();
    }
    assert_eq!(round_of(snap.get(b"round").unwrap()), last_round);
    assert_eq!(round_of(db.get(b"round").unwrap()), last_round + 200);
    assert_eq!(db.stats().live_snapshots, 1);
    drop(snap);
    assert_eq!(db.stats().live_snapshots, 0);

    settle(&db);
    assert_eq!(db.stats().versions, 1, "only the newest round is left");
    let after = live_bytes();
    println!(
        "heap: {before} B before the peak, {during} B at it, {after} B after ({:+} B)",
        after - before
    );
    assert!(
        after - before <= HEAP_SLACK,
        "the peak left {} bytes behind (before {before}, at the peak {during}, after {after})",
        after - before
    );
}
