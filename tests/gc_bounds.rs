//! Garbage collection at the API level: memory stays bounded under endless overwrites, a
//! long-lived snapshot pins only the versions it can see, deleted keys leave the map and the
//! index, and collection racing readers and writers never loses what a snapshot sees.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use snapkv::Db;

fn n(v: Option<bytes::Bytes>) -> u64 {
    u64::from_be_bytes(v.expect("present")[..].try_into().expect("8 bytes"))
}

#[test]
fn versions_stay_bounded_under_endless_overwrites() {
    let db = Db::new();
    let keys = 8u64;
    let mut peak = 0;
    for i in 0..200_000u64 {
        db.put((i % keys).to_be_bytes(), i.to_be_bytes()).unwrap();
        if i % 1_000 == 0 {
            peak = peak.max(db.stats().versions);
        }
    }
    // Inline pruning keeps a handful of versions per key (the cached horizon lags by at most
    // one maintenance interval), never a number that grows with the writes.
    assert!(
        peak <= (keys as usize) * 70,
        "peak {peak} versions for {keys} keys"
    );
    db.collect_garbage();
    assert_eq!(db.stats().versions, keys as usize);
}

#[test]
fn keys_rewritten_in_quick_succession_keep_short_chains() {
    // A key written by many consecutive commits piles up versions above the cached horizon;
    // a commit that leaves a long chain under a horizon that is many timestamps old refreshes
    // it early (instead of waiting for the 64-commit maintenance interval), so the chain
    // stays within a handful of versions (64 without the early refresh).
    let db = Db::new();
    let mut peak = 0;
    for i in 0..5_000u64 {
        db.put(b"hot", i.to_be_bytes()).unwrap();
        peak = peak.max(db.stats().versions);
    }
    assert!(
        peak <= 12,
        "one key rewritten back to back kept {peak} versions"
    );

    // A sliding window of ten keys written together, each key in ten consecutive commits
    // (transactions, so every commit also has its own snapshot registered).
    let db = Db::new();
    let mut peak = 0;
    for start in 0..2_000u64 {
        let mut txn = db.begin();
        for k in start..start + 10 {
            txn.put(k.to_be_bytes(), start.to_be_bytes()).unwrap();
        }
        txn.commit().unwrap();
        if start % 10 == 0 {
            peak = peak.max(db.stats().versions);
        }
    }
    // Keys that left the window keep what their last commit's prune left: about five each
    // (the horizon it pruned with may be a few commits old). Refreshing only every 64 commits
    // would leave about ten.
    let keys = db.stats().keys;
    assert!(
        peak <= keys * 6,
        "{peak} versions for {keys} keys in a sliding window of ten"
    );
}

#[test]
fn a_long_lived_snapshot_pins_only_what_it_sees() {
    let db = Db::new();
    for k in 0..100u64 {
        db.put(k.to_be_bytes(), 0u64.to_be_bytes()).unwrap();
    }
    let old = db.snapshot();
    for i in 1..=5_000u64 {
        db.put((i % 100).to_be_bytes(), i.to_be_bytes()).unwrap();
    }
    let middle = db.snapshot();
    for i in 5_001..=10_000u64 {
        db.put((i % 100).to_be_bytes(), i.to_be_bytes()).unwrap();
    }
    db.collect_garbage();
    // Per key: the version `old` sees, the one `middle` sees, the newest.
    assert_eq!(
        db.stats().versions,
        300,
        "versions between the snapshots must go"
    );
    for k in 0..100u64 {
        assert_eq!(n(old.get(k.to_be_bytes()).unwrap()), 0);
        let expected_middle = if k == 0 { 5_000 } else { 4_900 + k };
        assert_eq!(n(middle.get(k.to_be_bytes()).unwrap()), expected_middle);
    }
    drop(old);
    db.collect_garbage();
    assert_eq!(db.stats().versions, 200);
    drop(middle);
    db.collect_garbage();
    assert_eq!(db.stats().versions, 100);
}

#[test]
fn deleted_keys_leave_the_map_and_the_index() {
    let db = Db::new();
    for k in 0..1_000u64 {
        db.put(k.to_be_bytes(), b"v").unwrap();
    }
    let before = db.snapshot();
    for k in 0..1_000u64 {
        db.delete(k.to_be_bytes()).unwrap();
    }
    db.collect_garbage();
    // The old snapshot still sees every key, by point read and by scan.
    assert_eq!(before.iter().count(), 1_000);
    assert!(before.get(7u64.to_be_bytes()).unwrap().is_some());
    assert_eq!(db.stats().keys, 1_000, "the snapshot pins the deleted keys");
    drop(before);
    db.collect_garbage();
    assert_eq!(db.stats().keys, 0);
    assert_eq!(db.stats().versions, 0);
    assert_eq!(db.snapshot().iter().count(), 0);
    // Keys come back after removal, in point reads and scans.
    db.put(5u64.to_be_bytes(), b"again").unwrap();
    assert_eq!(
        db.get(5u64.to_be_bytes()).unwrap().as_deref(),
        Some(&b"again"[..])
    );
    assert_eq!(db.snapshot().iter().count(), 1);
}

// Writers replace groups of keys in one transaction (every key of a group holds the group's
// generation) or delete a whole group; readers check every snapshot sees each group whole;
// a collector thread runs full sweeps meanwhile.
#[test]
fn collection_racing_readers_and_writers_loses_nothing() {
    let db = Db::new();
    let groups = 8u64;
    let per_group = 4u64;
    let key = |g: u64, i: u64| format!("g{g}/{i}");
    let stop = AtomicBool::new(false);
    let secs = std::env::var("SNAPKV_GC_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.5);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let (db, stop) = (&db, &stop);
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(w);
                let mut generation = w * 1_000_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let g = rng.u64(0..groups);
                    generation += 1;
                    let delete = rng.u8(0..10) == 0;
                    let _ = db.update(|txn| {
                        for i in 0..per_group {
                            if delete {
                                txn.delete(key(g, i))?;
                            } else {
                                txn.put(key(g, i), generation.to_be_bytes())?;
                            }
                        }
                        Ok(())
                    });
                }
            });
        }
        for r in 0..2 {
            let (db, stop) = (&db, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let snap = db.snapshot();
                    for g in 0..groups {
                        let seen: Vec<Option<u64>> = (0..per_group)
                            .map(|i| snap.get(key(g, i)).unwrap().map(|v| n(Some(v))))
                            .collect();
                        assert!(
                            seen.windows(2).all(|w| w[0] == w[1]),
                            "reader {r}: group {g} is torn at {}: {seen:?}",
                            snap.ts()
                        );
                        let scanned = snap.scan_prefix(format!("g{g}/")).count() as u64;
                        let present = seen.iter().filter(|v| v.is_some()).count() as u64;
                        assert_eq!(scanned, present, "scan and point reads disagree");
                    }
                }
            });
        }
        let (db, stop) = (&db, &stop);
        s.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                db.collect_garbage();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
    });
    db.collect_garbage();
    let stats = db.stats();
    assert!(stats.versions <= (groups * per_group) as usize);
    assert_eq!(stats.live_snapshots, 0);
}
