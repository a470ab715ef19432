//! Memory per key, counted by an instrumented global allocator (this test binary's own):
//! snapkv holds at most surrealmx's live bytes per key after the same churn, each structure
//! takes the share the layout promises, and `Db::memory_breakdown` accounts for what the
//! allocator counts.
//!
//! One test function: the counter is process-wide, so nothing else may allocate meanwhile.

// surrealmx is not a dependency under loom (its crossbeam does not build with loom's cfgs).
#![cfg(not(loom))]

use std::alloc::System;

use snapkv::Db;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live_bytes() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

const KEYS: u64 = 100_000;
const ROUNDS: u64 = 10;

/// 16-byte keys in an order unrelated to their bytes (as the workload's), 100-byte values.
fn key(i: u64) -> [u8; 16] {
    let mut k = *b"user000000000000";
    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16;
    for (j, b) in k[4..].iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((x >> (4 * j)) & 15) as usize];
    }
    k
}

fn value(round: u64) -> [u8; 100] {
    let mut v = [7u8; 100];
    v[..8].copy_from_slice(&round.to_le_bytes());
    v
}

/// A full collection, settled (the replaced run is freed by the next collection).
fn collect(db: &Db) {
    db.collect_garbage();
    for _ in 0..8 {
        crossbeam_epoch::pin().flush();
    }
    db.collect_garbage();
}

/// Live bytes per key of a store loaded with [`KEYS`] keys, each overwritten [`ROUNDS`]
/// times, then collected by `gc`; `inspect` sees the store and its live bytes before the
/// drop.
fn churned<S>(
    build: impl FnOnce() -> S,
    put: impl Fn(&S, &[u8], &[u8]),
    gc: impl Fn(&S),
    inspect: impl FnOnce(&S, i64),
) -> f64 {
    let base = live_bytes();
    let store = build();
    for round in 0..=ROUNDS {
        let v = value(round);
        for i in 0..KEYS {
            put(&store, &key(i), &v);
        }
    }
    gc(&store);
    let bytes = live_bytes() - base;
    inspect(&store, bytes);
    drop(store);
    bytes as f64 / KEYS as f64
}

#[test]
fn snapkv_holds_at_most_surrealmx_bytes_per_key_and_accounts_for_them() {
    let mut parts = Vec::new();
    let snapkv = churned(
        Db::new,
        |db, k, v| {
            db.put(k, v).unwrap();
        },
        collect,
        |db, bytes| {
            assert_eq!(
                db.stats().versions,
                KEYS as usize,
                "one version per key left"
            );
            parts = db.memory_breakdown();
            let listed: usize = parts.iter().map(|(_, b)| b).sum();
            // The breakdown accounts for all but a sliver (registry, clock, empty deltas).
            let rest = bytes - listed as i64;
            assert!(
                (0..=(bytes / 50)).contains(&rest),
                "unaccounted {rest} of {bytes} bytes: {parts:?}"
            );
        },
    );
    let share = |prefix: &str| {
        let (_, bytes) = parts
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {parts:?}"));
        *bytes as f64 / KEYS as f64
    };
    // A 100-byte value's node: a 20-byte header and the value, no padding.
    assert_eq!(share("version nodes"), 120.0);
    // A chain and its count (no weak count).
    assert_eq!(share("chains"), 80.0);
    // A run entry: a 24-byte key (16 bytes inline) and the chain's pointer.
    assert_eq!(share("scan index: run entries"), 32.0);

    let surrealmx = churned(
        surrealmx::Database::new,
        |db, k, v| db.set(k, v).unwrap(),
        |db| {
            db.run_cleanup();
            db.run_gc();
            for _ in 0..8 {
                crossbeam_epoch::pin().flush();
            }
        },
        |_, _| {},
    );
    assert!(
        snapkv <= surrealmx,
        "snapkv {snapkv:.1} B/key, surrealmx {surrealmx:.1} B/key"
    );
}
