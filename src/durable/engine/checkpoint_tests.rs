//! Checkpoints of a running database: what a reopen reads after one, the segments and older
//! checkpoints it removes, writers carrying on meanwhile, and the background trigger.

use std::path::PathBuf;

use super::*;
use crate::durable::storage::{Crash, SimStorage};
use crate::options::Options;
use crate::Db;

fn dir() -> PathBuf {
    PathBuf::from("/db")
}

/// A durable database over `storage` with tiny segments (a few records each).
fn open_small(storage: &SimStorage, checkpoint_log_bytes: u64) -> Db {
    let options = DurableOptions {
        segment_size: 512,
        checkpoint_log_bytes,
        ..DurableOptions::default()
    };
    Db::open_storage(Options::default(), storage.clone(), &dir(), options, None).unwrap()
}

fn files(storage: &SimStorage, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = storage
        .list(&dir())
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Every key with its value and version, read through a fresh snapshot.
fn contents(db: &Db) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
    let snap = db.snapshot();
    snap.iter()
        .map(|(k, v)| {
            let (_, ts) = db.get_versioned(&k).unwrap().unwrap();
            (k.to_vec(), v.to_vec(), ts)
        })
        .collect()
}

#[test]
fn a_checkpoint_replaces_the_log_it_covers() {
    let storage = SimStorage::new();
    let db = open_small(&storage, u64::MAX);
    for i in 0..200u32 {
        db.put(format!("k{:03}", i % 50), i.to_le_bytes()).unwrap();
        if i % 7 == 0 {
            db.delete(format!("k{:03}", (i + 3) % 50)).unwrap();
        }
    }
    let segments_before = files(&storage, ".log").len();
    assert!(segments_before > 10, "{segments_before} segments");
    let cp = db.checkpoint().unwrap();
    assert_eq!(cp.ts, db.stats().visible_ts);
    assert_eq!(cp.keys as usize, db.stats().keys);
    // Every segment but the one being appended to held only commits at or below it.
    assert_eq!(cp.segments_removed as usize, segments_before - 1);
    assert_eq!(files(&storage, ".log").len(), 1);
    assert_eq!(files(&storage, ".ckpt").len(), 1);
    // Commits after the checkpoint go to the log; a second checkpoint replaces the first.
    for i in 0..30u32 {
        db.put(format!("late{i}"), b"x").unwrap();
    }
    let second = db.checkpoint().unwrap();
    assert!(second.ts > cp.ts);
    assert_eq!(
        files(&storage, ".ckpt"),
        vec![checkpoint::file_name(second.ts)]
    );
    for i in 0..5u32 {
        db.put(format!("after{i}"), b"y").unwrap();
    }
    let expected = contents(&db);
    let visible = db.stats().visible_ts;
    db.close().unwrap();

    let db = open_small(&storage.crash(Crash::SyncedOnly), u64::MAX);
    let report = db.recovery().unwrap();
    assert_eq!(report.checkpoint_ts, Some(second.ts));
    assert_eq!(report.records_replayed, 5, "only the commits after it");
    assert_eq!(contents(&db), expected);
    assert_eq!(db.stats().visible_ts, visible);
}

#[test]
fn writers_carry_on_during_a_checkpoint_and_a_reopen_sees_all_of_them() {
    let storage = SimStorage::new();
    let db = open_small(&storage, u64::MAX);
    for i in 0..300u32 {
        db.put(format!("k{i:03}"), b"0").unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let checkpoints = std::thread::scope(|s| {
        for t in 0..2u32 {
            let (db, stop) = (&db, &stop);
            s.spawn(move || {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let k = format!("k{:03}", (i * 7 + t) % 300);
                    if i % 5 == 0 {
                        db.delete(&k).unwrap();
                    } else {
                        db.put(&k, i.to_le_bytes()).unwrap();
                    }
                    i += 1;
                }
            });
        }
        let mut checkpoints = Vec::new();
        for _ in 0..5 {
            checkpoints.push(db.checkpoint().unwrap());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        checkpoints
    });
    assert!(checkpoints.windows(2).all(|w| w[0].ts <= w[1].ts));
    let expected = contents(&db);
    db.close().unwrap();
    let db = open_small(&storage.crash(Crash::SyncedOnly), u64::MAX);
    assert_eq!(
        db.recovery().unwrap().checkpoint_ts,
        Some(checkpoints[4].ts)
    );
    assert_eq!(contents(&db), expected);
}

#[test]
fn the_log_passing_its_threshold_checkpoints_in_the_background() {
    let storage = SimStorage::new();
    let db = open_small(&storage, 4096);
    let mut i = 0u32;
    // The thread writes the checkpoint on its own time: wait for it, as long as it takes.
    while files(&storage, ".ckpt").is_empty() {
        db.put(format!("k{:03}", i % 100), i.to_le_bytes()).unwrap();
        i += 1;
        if i % 1024 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(i < 10_000_000, "no background checkpoint");
    }
    let expected = contents(&db);
    db.close().unwrap();
    let db = open_small(&storage.crash(Crash::SyncedOnly), u64::MAX);
    assert!(db.recovery().unwrap().checkpoint_ts.is_some());
    assert_eq!(contents(&db), expected);
}

/// A checkpoint is due at the configured log size or half the last image, whichever is
/// more: a database whose image is far above the threshold does not rewrite it every time
/// the log passes the threshold, and does once the log reaches half the image.
#[test]
fn the_threshold_grows_to_half_the_last_checkpoint() {
    let storage = SimStorage::new();
    let db = open_small(&storage, 4096);
    let value = [5u8; 100];
    for i in 0..2000u32 {
        db.put(format!("k{i:05}"), value).unwrap();
    }
    let image = db.checkpoint().unwrap();
    assert!(image.bytes > 16 * 4096, "{} bytes", image.bytes);
    let checkpointer = db.shared.durable.as_ref().unwrap().checkpointer();
    assert_eq!(checkpointer.due_at(), image.bytes / 2);
    let log = |db: &Db| db.stats().log.unwrap().live_bytes;
    // Past the configured threshold, well short of half the image: no checkpoint.
    let mut i = 0u32;
    while log(&db) < 4 * 4096 {
        db.put(format!("k{:05}", i % 2000), value).unwrap();
        i += 1;
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        files(&storage, ".ckpt"),
        [checkpoint::file_name(image.ts)],
        "a checkpoint below half the image"
    );
    // Past half the image: the background checkpoint comes.
    while files(&storage, ".ckpt") == [checkpoint::file_name(image.ts)] {
        db.put(format!("k{:05}", i % 2000), value).unwrap();
        i += 1;
        if i % 1024 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(i < 10_000_000, "no background checkpoint");
    }
    db.close().unwrap();
    // Reopened, the image recovery read sets when the next one is due.
    let newest = files(&storage, ".ckpt").pop().unwrap();
    let bytes = storage.len(&dir().join(newest)).unwrap();
    let db = open_small(&storage, 4096);
    let checkpointer = db.shared.durable.as_ref().unwrap().checkpointer();
    assert_eq!(checkpointer.due_at(), bytes / 2);
    db.close().unwrap();
}

#[test]
fn a_checkpoint_needs_an_open_durable_database() {
    assert!(matches!(
        Db::new().checkpoint(),
        Err(Error::InvalidConfig(_))
    ));
    let storage = SimStorage::new();
    let db = open_small(&storage, u64::MAX);
    db.put("k", "v").unwrap();
    let other = db.clone();
    db.close().unwrap();
    assert!(matches!(other.checkpoint(), Err(Error::Closed)));
    assert!(files(&storage, ".ckpt").is_empty());
}

#[test]
fn a_crash_at_any_point_of_a_checkpoint_keeps_every_commit() {
    // Fail the storage after each number of operations the checkpoint makes: whatever
    // survives (the old files, the new checkpoint, some segments removed) reopens to the
    // same state.
    let (mut failed, mut finished_count) = (0, 0);
    for fail_after in 0..40 {
        let storage = SimStorage::new();
        let db = open_small(&storage, u64::MAX);
        for i in 0..120u32 {
            db.put(format!("k{:02}", i % 40), i.to_le_bytes()).unwrap();
        }
        let expected = contents(&db);
        storage.fail_after(fail_after);
        let finished = db.checkpoint().is_ok();
        if finished {
            finished_count += 1;
        } else {
            failed += 1;
        }
        let crashed = storage.crash(Crash::SyncedOnly);
        drop(db);
        let db = open_small(&crashed, u64::MAX);
        assert_eq!(
            contents(&db),
            expected,
            "failing after {fail_after} operations"
        );
        if finished {
            assert!(db.recovery().unwrap().checkpoint_ts.is_some());
        }
    }
    // Both ends were reached: failures at every step, then a checkpoint that finished.
    assert!(
        failed > 5 && finished_count > 0,
        "{failed} failed, {finished_count} finished"
    );
}
