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

/// Keys and versions left after `pairs` commits that insert a fresh key and delete it, on a
/// database where `setup` ran first (it may open snapshots, which stay open meanwhile).
fn queue_leftovers(db: &Db, pairs: u64) -> (usize, usize) {
    for i in 0..pairs {
        let key = [b"job/".as_slice(), &i.to_be_bytes()].concat();
        db.put(&key, b"payload").unwrap();
        db.delete(&key).unwrap();
    }
    let stats = db.stats();
    (stats.keys, stats.versions)
}

#[test]
fn a_queue_under_an_old_snapshot_keeps_no_dead_keys() {
    const PAIRS: u64 = 20_000;
    let plain = Db::new();
    plain.put(b"config", b"v1").unwrap();
    let (plain_keys, plain_versions) = queue_leftovers(&plain, PAIRS);

    let db = Db::new();
    db.put(b"config", b"v1").unwrap();
    let old = db.snapshot();
    db.put(b"config", b"v2").unwrap();
    let (keys, versions) = queue_leftovers(&db, PAIRS);
    // The snapshot cannot see any job key (each was created after it and is deleted), so
    // maintenance removes them as it goes: at most one run's worth of deletes is left, as
    // without the snapshot (plus the config version the snapshot reads).
    assert!(
        keys <= plain_keys + 1 && keys < 200,
        "{keys} keys left under an old snapshot, {plain_keys} without"
    );
    assert!(
        versions <= plain_versions + 2 && versions < 300,
        "{versions} versions left under an old snapshot, {plain_versions} without"
    );
    assert_eq!(old.get(b"config").unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(old.iter().count(), 1, "the snapshot sees no job");
    db.collect_garbage();
    assert_eq!(db.stats().keys, 1);
    assert_eq!(
        db.stats().versions,
        2,
        "v1 for the snapshot, v2 for everyone else"
    );
}

#[test]
fn a_key_a_snapshot_sees_waits_for_it_then_leaves_without_a_sweep() {
    let db = Db::new();
    db.put(b"seen", b"v").unwrap();
    let old = db.snapshot();
    db.delete(b"seen").unwrap();
    let churn = |from: u64| {
        for i in from..from + 500 {
            db.put(b"other", i.to_be_bytes()).unwrap();
        }
    };
    churn(0);
    assert_eq!(old.get(b"seen").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(db.stats().keys, 2, "the snapshot pins the deleted key");
    drop(old);
    // Maintenance alone (no `collect_garbage`) removes it once the watermark passes the delete.
    churn(500);
    assert_eq!(db.stats().keys, 1);
    assert_eq!(db.get(b"seen").unwrap(), None);
}

#[test]
fn a_sweep_frees_a_key_once_the_only_snapshot_that_saw_it_is_gone() {
    let db = Db::new();
    db.put(b"a", b"1").unwrap();
    let oldest = db.snapshot(); // sees only `a`
    db.put(b"b", b"1").unwrap();
    let middle = db.snapshot(); // sees `a` and `b`
    db.delete(b"b").unwrap();
    db.collect_garbage();
    assert_eq!(db.stats().keys, 2, "`middle` sees `b`");
    assert_eq!(middle.get(b"b").unwrap().as_deref(), Some(&b"1"[..]));
    drop(middle);
    db.collect_garbage();
    // `oldest` predates `b` entirely: nothing of `b` is visible to any live snapshot.
    assert_eq!(db.stats().keys, 1);
    assert_eq!(oldest.get(b"b").unwrap(), None);
    assert_eq!(oldest.iter().count(), 1);
}

#[test]
fn an_old_transaction_keeps_its_write_conflict_with_a_delete() {
    let db = Db::new();
    let mut txn = db.begin();
    assert_eq!(txn.get(b"k").unwrap(), None);
    db.put(b"k", b"created").unwrap();
    db.delete(b"k").unwrap();
    db.collect_garbage();
    // Readers could not tell the lone delete from no key, but the transaction's snapshot
    // predates it: first committer wins must still see it.
    assert_eq!(db.stats().keys, 1, "a live transaction pins the delete");
    txn.put(b"k", b"mine").unwrap();
    let err = txn.commit().unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    db.collect_garbage();
    assert_eq!(db.stats().keys, 0);
    // A read-only snapshot as old does not pin it.
    let snap = db.snapshot();
    db.put(b"k", b"created").unwrap();
    db.delete(b"k").unwrap();
    db.collect_garbage();
    assert_eq!(db.stats().keys, 0);
    assert_eq!(snap.get(b"k").unwrap(), None);
}

#[test]
fn databases_in_one_process_each_get_their_own_maintenance() {
    // One thread commits to two databases in lockstep: a job queue and an append-only log.
    // Maintenance turns are counted per database, so the queue's deleted keys leave as they
    // would with the queue alone.
    let jobs = Db::new();
    let log = Db::new();
    for i in 0..20_000u64 {
        // Four commits a round: a maintenance turn counted per thread, not per database,
        // would land on the same one of them every time.
        let key = i.to_be_bytes();
        jobs.put(key, b"job").unwrap();
        log.put([b"put/".as_slice(), &key].concat(), b"entry")
            .unwrap();
        jobs.delete(key).unwrap();
        log.put([b"del/".as_slice(), &key].concat(), b"entry")
            .unwrap();
    }
    let alone = Db::new();
    let (alone_keys, _) = queue_leftovers(&alone, 20_000);
    let stats = jobs.stats();
    assert!(
        stats.keys <= alone_keys.max(1) * 2 && stats.keys < 200,
        "{} keys left in the queue, {alone_keys} without the log",
        stats.keys
    );
    assert!(stats.watermark > 0);
    assert_eq!(log.stats().keys, 40_000);
}
