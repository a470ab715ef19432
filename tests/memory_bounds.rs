//! Heap use under the patterns that used to keep memory at its peak: a queue of short-lived
//! keys under an old snapshot, and a peak of keys that were then all deleted. Heap bytes are
//! counted by an instrumented global allocator; the tests run one at a time (they share it).

use std::alloc::System;
use std::sync::Mutex;

use snapkv::Db;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The tests share the allocator's counters: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn live_bytes() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// Lets crossbeam-epoch run the frees deferred so far (they wait for every pinned thread to
/// move on), so that the heap shows what the database still holds.
fn settle() {
    for _ in 0..256 {
        crossbeam_epoch::pin().flush();
    }
}

fn key(i: u64) -> [u8; 16] {
    let mut k = *b"user000000000000";
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// Inserts a fresh key and deletes it, `pairs` times.
fn queue(db: &Db, pairs: u64) {
    for i in 0..pairs {
        db.put(key(i), [7u8; 100]).unwrap();
        db.delete(key(i)).unwrap();
    }
}

#[test]
fn a_queue_under_an_old_snapshot_uses_the_heap_it_would_without() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const PAIRS: u64 = 100_000;
    let measure = |hold_snapshot: bool| {
        settle();
        let before = live_bytes();
        let db = Db::new();
        db.put(b"config", b"v1").unwrap();
        let old = hold_snapshot.then(|| db.snapshot());
        queue(&db, PAIRS);
        settle();
        let used = live_bytes() - before;
        drop(old);
        (used, db.stats())
    };
    let (plain, plain_stats) = measure(false);
    let (pinned, pinned_stats) = measure(true);
    eprintln!("queue heap: {plain} B without a snapshot, {pinned} B with one ({plain_stats:?} / {pinned_stats:?})");
    assert!(
        pinned as f64 <= plain as f64 * 1.2 + 64.0 * 1024.0,
        "{pinned} B under an old snapshot, {plain} B without"
    );
}

#[test]
fn the_heap_returns_after_a_peak_of_deleted_keys() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const KEYS: u64 = 200_000;
    settle();
    let before = live_bytes();
    let db = Db::new();
    let empty = live_bytes() - before;
    for i in 0..KEYS {
        db.put(key(i), [7u8; 100]).unwrap();
    }
    settle();
    let peak = live_bytes() - before;
    for i in 0..KEYS {
        db.delete(key(i)).unwrap();
    }
    // Maintenance alone removes the deleted keys and shrinks the key map once it is sparse.
    for i in 0..1_000u64 {
        db.put(b"other", i.to_be_bytes()).unwrap();
    }
    settle();
    let maintained = live_bytes() - before;
    assert!(db.stats().keys <= 1);
    assert!(
        maintained < peak / 8,
        "{maintained} B held after maintenance removed every deleted key (peak {peak} B)"
    );
    db.collect_garbage();
    settle();
    db.collect_garbage();
    settle();
    let after = live_bytes() - before;
    eprintln!("empty database {empty} B, peak {peak} B, after maintenance {maintained} B, after collect_garbage {after} B");
    assert_eq!(db.stats().keys, 1, "only the key written since");
    assert!(
        after <= 2 * empty,
        "{after} B held after deleting every key (empty database: {empty} B, peak {peak} B)"
    );
}
