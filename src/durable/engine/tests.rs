//! The engine over simulated storage: failed syncs, power loss, and concurrent committers
//! whose acknowledged commits a crash must keep.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex as StdMutex;

use bytes::Bytes;

use super::*;
use crate::durable::storage::{Crash, SimStorage};
use crate::isolation::Isolation;
use crate::options::Options;
use crate::Db;

fn dir() -> PathBuf {
    PathBuf::from("/db")
}

fn open(storage: &SimStorage, policy: SyncPolicy) -> Db {
    Db::open_storage(Options::default(), storage.clone(), &dir(), policy, None).unwrap()
}

/// A database whose next log sync fails, holding `k = v1` (synced).
fn about_to_fail_a_sync() -> (SimStorage, Db) {
    let storage = SimStorage::new();
    let db = open(&storage, SyncPolicy::Always);
    db.put("k", "v1").unwrap();
    storage.fail_next_sync();
    (storage, db)
}

fn assert_outcome_unknown(e: &Error) {
    assert!(matches!(e, Error::CommitOutcomeUnknown { .. }), "{e:?}");
    assert!(!e.is_retryable());
}

fn assert_poisoned(e: &Error) {
    assert!(matches!(e, Error::Poisoned { .. }), "{e:?}");
    assert!(!e.is_retryable());
}

#[test]
fn a_failed_sync_fails_the_commit_invisibly_and_refuses_later_writes() {
    let (_storage, db) = about_to_fail_a_sync();
    let keys_before = db.stats().keys;
    assert_outcome_unknown(&db.put("k", "v2").unwrap_err());
    // Not visible, by any read; the timestamp was published empty (no hole).
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(db.get_versioned("k").unwrap().unwrap().1, 1);
    assert_eq!(db.snapshot().get("k").unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(db.snapshot().ts(), 2);
    // Later writes of every kind are refused, new keys included; no empty chain lingers.
    assert_poisoned(&db.put("k", "v3").unwrap_err());
    assert_poisoned(&db.put("new", "x").unwrap_err());
    assert_poisoned(&db.delete("k").unwrap_err());
    let mut txn = db.begin_with(Isolation::Serializable);
    txn.get("k").unwrap();
    txn.put("other", "y").unwrap();
    assert_poisoned(&txn.commit().unwrap_err());
    assert_eq!(db.stats().keys, keys_before);
    assert_eq!(db.get("new").unwrap(), None);
    assert_eq!(db.snapshot().iter().count(), 1);
    // `update` reports it at once, never retries it.
    let runs = AtomicU32::new(0);
    let updated = db.update(|txn| {
        runs.fetch_add(1, Ordering::SeqCst);
        txn.put("k", "v4")
    });
    assert_poisoned(&updated.unwrap_err());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Closing reports the poisoned log.
    assert_poisoned(&db.close().unwrap_err());
}

/// Under `Never` a one-key put of an existing key takes the one-key fast path (the commit
/// waits for its record inside `ChainSource::with_locked`): a failed write there fails the
/// commit invisibly and poisons the log, as on the general path.
#[test]
fn a_failed_write_under_never_fails_a_one_key_put_invisibly_and_refuses_later_writes() {
    let storage = SimStorage::new();
    let db = open(&storage, SyncPolicy::Never);
    db.put("k", "v1").unwrap();
    db.put("k", "v2").unwrap();
    storage.fail_next_write(0);
    assert_outcome_unknown(&db.put("k", "v3").unwrap_err());
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(db.get_versioned("k").unwrap().unwrap().1, 2);
    assert_eq!(db.snapshot().ts(), 3, "the failed commit published empty");
    // (The collector may have pruned v1 meanwhile: at most the two committed versions.)
    let stats = db.stats();
    assert!(stats.keys == 1 && stats.versions <= 2, "{stats:?}");
    assert_poisoned(&db.put("k", "v4").unwrap_err());
    // The chain was unlocked: a transaction's write of it is refused by the log, not a
    // conflict.
    let mut txn = db.begin();
    txn.put("k", "v5").unwrap();
    assert_poisoned(&txn.commit().unwrap_err());
    assert_poisoned(&db.close().unwrap_err());
}

#[test]
fn update_never_retries_an_unknown_outcome() {
    let (_storage, db) = about_to_fail_a_sync();
    let runs = AtomicU32::new(0);
    let updated = db.update(|txn| {
        runs.fetch_add(1, Ordering::SeqCst);
        txn.put("k", "v2")
    });
    assert_outcome_unknown(&updated.unwrap_err());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v1"[..]));
}

#[test]
fn a_big_write_set_whose_sync_fails_leaves_nothing_behind() {
    let (_storage, db) = about_to_fail_a_sync();
    let mut txn = db.begin();
    for i in 0..100u32 {
        txn.put(format!("big{i:03}"), i.to_be_bytes()).unwrap();
    }
    txn.put("k", "v2").unwrap();
    assert_outcome_unknown(&txn.commit().unwrap_err());
    let stats = db.stats();
    assert_eq!((stats.keys, stats.versions), (1, 1), "{stats:?}");
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(db.snapshot().iter().count(), 1);
    // The chains were unlocked: a read validation over them finds them free (poisoned, but
    // not a conflict).
    let mut txn = db.begin_with(Isolation::Serializable);
    assert_eq!(txn.scan_prefix("big").count(), 0);
    txn.put("k", "v3").unwrap();
    assert_poisoned(&txn.commit().unwrap_err());
}

/// What a database reopened over `storage` after a power loss holds.
fn after_power_loss(storage: &SimStorage) -> BTreeMap<Vec<u8>, (Vec<u8>, u64)> {
    after_crash(storage, Crash::SyncedOnly)
}

/// What a database reopened over `storage` after a power loss of the kind `mode` holds.
fn after_crash(storage: &SimStorage, mode: Crash) -> BTreeMap<Vec<u8>, (Vec<u8>, u64)> {
    let crashed = storage.crash(mode);
    let db = open(&crashed, SyncPolicy::Always);
    let snap = db.snapshot();
    snap.iter()
        .map(|(k, v)| {
            let version = db.get_versioned(&k).unwrap().unwrap().1;
            (k.to_vec(), (v.to_vec(), version))
        })
        .collect()
}

#[test]
fn an_acknowledged_commit_survives_a_power_loss_under_always() {
    let storage = SimStorage::new();
    let db = open(&storage, SyncPolicy::Always);
    let t1 = db.put("a", "1").unwrap();
    let mut big = db.begin_with(Isolation::Serializable);
    for i in 0..80u32 {
        big.put(format!("big{i:03}"), i.to_be_bytes()).unwrap();
    }
    let t2 = big.commit().unwrap();
    let t3 = db.delete("a").unwrap();
    let t4 = db.put("b", "2").unwrap();
    let image = after_power_loss(&storage);
    assert_eq!(image.get(&b"b"[..]), Some(&(b"2".to_vec(), t4)));
    assert_eq!(image.get(&b"a"[..]), None, "the delete at {t3} was lost");
    assert_eq!(image.get(&b"big079"[..]).map(|v| v.1), Some(t2));
    assert_eq!(image.len(), 81);
    assert!(t1 < t2);
}

#[test]
fn never_loses_nothing_to_a_process_crash_but_may_to_a_power_loss() {
    let storage = SimStorage::new();
    let db = open(&storage, SyncPolicy::Never);
    db.put("a", "1").unwrap();
    // A process crash keeps what was written (the simulated OS holds it): reading the same
    // storage is what a restarted process sees.
    let syncs = storage.syncs();
    drop(db);
    let db = open(&storage, SyncPolicy::Never);
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    // The drop's best-effort close synced the log.
    assert!(storage.syncs() > syncs);
    db.put("b", "2").unwrap();
    let image = after_power_loss(&storage);
    assert!(image.contains_key(&b"a"[..]));
    assert!(!image.contains_key(&b"b"[..]), "Never synced at commit");
}

/// Under `Periodic`, a power loss takes only commits inside the window: every commit
/// acknowledged before a whole background sync ran (the log's sync count grew by two after its
/// acknowledgement: the second of those syncs started after it) survives, and what is lost is
/// a suffix of the commits.
#[test]
fn periodic_loses_only_the_commits_of_its_last_window() {
    let storage = SimStorage::new();
    let db = open(
        &storage,
        SyncPolicy::Periodic(std::time::Duration::from_millis(1)),
    );
    let syncs = || db.stats().log.expect("durable").syncs;
    // (key number, log syncs counted when its commit returned)
    let mut acked: Vec<(u32, u64)> = Vec::new();
    let mut i = 0u32;
    while syncs() < 20 {
        db.put(format!("k{i:06}"), b"v").unwrap();
        acked.push((i, syncs()));
        i += 1;
        if i % 64 == 0 {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        assert!(i < 5_000_000, "the periodic syncer never synced");
    }
    // Counted before the crash: every sync counted had completed by then.
    let synced_before_crash = syncs();
    let image = after_power_loss(&storage);
    let survived = |k: u32| image.contains_key(format!("k{k:06}").as_bytes());
    let must_survive: Vec<u32> = acked
        .iter()
        .filter(|(_, at)| at + 2 <= synced_before_crash)
        .map(|(k, _)| *k)
        .collect();
    assert!(
        must_survive.len() > 10,
        "{} commits inside old windows",
        must_survive.len()
    );
    for k in &must_survive {
        assert!(
            survived(*k),
            "commit {k} lost though a whole sync ran after it"
        );
    }
    // Losses form a suffix: once one commit is missing, every later one is.
    let first_lost = (0..i).find(|k| !survived(*k)).unwrap_or(i);
    assert!(
        (first_lost..i).all(|k| !survived(k)),
        "a lost commit before a kept one"
    );
    drop(db);
}

/// Several committers under `Always`, a power loss at an arbitrary moment: every commit a
/// caller saw acknowledged before it is in the image, and so is everything a snapshot taken
/// before it saw (visibility never runs ahead of durability).
#[test]
fn every_commit_acknowledged_before_a_power_loss_survives_it() {
    for mode in [
        Crash::SyncedOnly,
        Crash::UnsyncedPrefix { seed: 7 },
        Crash::UnsyncedPages { seed: 11, page: 64 },
    ] {
        acknowledged_commits_survive(mode);
    }
}

/// [`every_commit_acknowledged_before_a_power_loss_survives_it`] with one kind of power loss.
fn acknowledged_commits_survive(mode: Crash) {
    const THREADS: usize = 4;
    const COMMITS: usize = 150;
    let storage = SimStorage::new();
    storage.set_sync_delay(std::time::Duration::from_micros(200));
    let db = open(&storage, SyncPolicy::Always);
    let acked = StdMutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let (acked_before, seen_before, image) = std::thread::scope(|s| {
        for t in 0..THREADS {
            let (db, acked, stop) = (&db, &acked, &stop);
            s.spawn(move || {
                for i in 0..COMMITS {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("t{t}-{i:04}");
                    let ts = if i % 10 == 9 {
                        // Now and then a transaction of two keys (one shared by all).
                        let mut txn = db.begin();
                        txn.put(&key, "txn").unwrap();
                        txn.put(format!("shared-{i:04}"), &key).unwrap();
                        match txn.commit() {
                            Ok(ts) => ts,
                            Err(e) if e.is_retryable() => continue,
                            Err(e) => panic!("{e}"),
                        }
                    } else {
                        db.put(&key, "v").unwrap()
                    };
                    acked.lock().unwrap().push((key, ts));
                }
            });
        }
        // Let the committers get going, then take what was acknowledged and what a snapshot
        // sees, and only then crash.
        while acked.lock().unwrap().len() < THREADS * COMMITS / 3 {
            std::thread::yield_now();
        }
        let acked_before = acked.lock().unwrap().clone();
        let snap = db.snapshot();
        let seen: Vec<(Bytes, Bytes)> = snap.iter().collect();
        let image = after_crash(&storage, mode);
        stop.store(true, Ordering::Relaxed);
        (acked_before, seen, image)
    });
    assert!(!acked_before.is_empty());
    for (key, ts) in &acked_before {
        let found = image.get(key.as_bytes()).map(|v| v.1);
        assert_eq!(found, Some(*ts), "acknowledged {key} at {ts} lost");
    }
    for (key, value) in &seen_before {
        let found = image.get(&key[..]).map(|v| &v.0[..]);
        assert!(
            found.is_some(),
            "{key:?} = {value:?} was visible but is not durable"
        );
    }
    // Whole transactions only: a shared key names the transaction that wrote it last, whose
    // own key (never written again) must be there too.
    for (key, (value, _)) in image.range(b"shared-".to_vec()..b"shared.".to_vec()) {
        assert!(
            image.contains_key(value),
            "{key:?} names {value:?}, which is missing: half a transaction recovered"
        );
    }
    // Group commit: fewer syncs than commits.
    assert!(storage.syncs() < acked.lock().unwrap().len() as u64);
}

#[test]
fn close_refuses_later_writes_and_is_idempotent() {
    let storage = SimStorage::new();
    let db = open(
        &storage,
        SyncPolicy::Periodic(std::time::Duration::from_millis(1)),
    );
    db.put("k", "v").unwrap();
    let other = db.clone();
    db.close().unwrap();
    assert!(matches!(other.put("k", "w"), Err(Error::Closed)));
    assert_eq!(other.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    other.clone().close().unwrap();
    // Everything committed before the close was synced by it.
    let image = after_power_loss(&storage);
    assert_eq!(image.get(&b"k"[..]).map(|v| &v.0[..]), Some(&b"v"[..]));
}

#[test]
fn a_record_over_4_gib_is_refused_before_anything_is_queued() {
    // Counted, not built: 2^32 bytes of writes would not fit in a test's memory.
    let key = [1u8; 16];
    let value = vec![0u8; 1 << 20];
    let writes: Vec<(&[u8], Option<&[u8]>)> =
        (0..4096).map(|_| (&key[..], Some(&value[..]))).collect();
    assert!(record_len(&writes) > u64::from(u32::MAX));
    let storage = SimStorage::new();
    let log = Log::create(storage.clone(), &dir(), 1, 1, LogOptions::default()).unwrap();
    let err = CommitLog::append(&log, 1, 1, &writes).unwrap_err();
    assert!(matches!(err, Error::WriteSetTooLarge { .. }), "{err:?}");
    // The log is fine: the next record goes in.
    let lsn = CommitLog::append(&log, 1, 1, &[(&key[..], None)]).unwrap();
    CommitLog::wait(&log, lsn).unwrap();
    // And the count matches the encoder's.
    let mut encoded = Vec::new();
    crate::durable::record::encode(
        7,
        [(&key[..], Some(&b"xy"[..])), (&b"d"[..], None)],
        &mut encoded,
    );
    assert_eq!(
        record_len(&[(&key[..], Some(&b"xy"[..])), (&b"d"[..], None)]),
        encoded.len() as u64
    );
}
