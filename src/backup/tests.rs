use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use bytes::Bytes;

use super::*;
use crate::durable::checkpoint::{self, Entry};
use crate::durable::storage::{Crash, SimStorage, StorageFile};

/// `(key, value or None for a delete, commit ts)` of every write, in any order.
type History = Vec<(Bytes, Option<Bytes>, Ts)>;

/// The live state at `ts` that `history` implies: each key's newest write at or below it.
fn state_at(history: &History, ts: Ts) -> Vec<Entry> {
    let mut newest: BTreeMap<&Bytes, (Ts, &Option<Bytes>)> = BTreeMap::new();
    for (key, value, at) in history {
        if *at <= ts && newest.get(key).is_none_or(|(t, _)| t < at) {
            newest.insert(key, (*at, value));
        }
    }
    newest
        .into_iter()
        .filter_map(|(key, (ts, value))| {
            Some(Entry {
                key: key.clone(),
                value: value.clone()?,
                ts,
            })
        })
        .collect()
}

fn key(i: u32) -> Bytes {
    Bytes::from(format!("acct{i:05}"))
}

#[test]
fn a_backup_taken_while_writers_run_is_the_state_at_its_timestamp() {
    let db = Db::new();
    let keys = 3_000u32;
    let mut history: History = Vec::new();
    for i in 0..keys {
        let value = Bytes::from(vec![0u8; 24]);
        let ts = db.put(key(i), &value).unwrap();
        history.push((key(i), Some(value), ts));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("backup");
    let stop = AtomicBool::new(false);
    let started = AtomicU32::new(0);
    let (report, writes) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..2u32)
            .map(|t| {
                let (db, stop, started) = (&db, &stop, &started);
                s.spawn(move || {
                    let mut mine: History = Vec::new();
                    let mut round = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        round += 1;
                        for i in (t..keys).step_by(7) {
                            let k = key(i);
                            if (i + round) % 4 == 0 {
                                mine.push((k.clone(), None, db.delete(&k).unwrap()));
                            } else {
                                let v = Bytes::from(format!("{t}/{round}/{i}"));
                                mine.push((k.clone(), Some(v.clone()), db.put(&k, &v).unwrap()));
                            }
                            if mine.len() == 1 {
                                started.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        db.collect_garbage();
                    }
                    mine
                })
            })
            .collect();
        while started.load(Ordering::Relaxed) < 2 {
            std::thread::yield_now();
        }
        let report = db.backup(&dest);
        // Let the writers commit after the backup's snapshot too (on a loaded host they may
        // not have run at all while it was written).
        if let Ok(r) = &report {
            while db.stats().visible_ts <= r.ts + 10 {
                std::thread::yield_now();
            }
        }
        stop.store(true, Ordering::Relaxed);
        let writes: Vec<History> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        (report.unwrap(), writes)
    });
    for w in writes {
        history.extend(w);
    }
    assert!(
        history.iter().any(|(_, _, ts)| *ts > report.ts),
        "writers committed after the backup's snapshot"
    );
    let want = state_at(&history, report.ts);
    assert!(want.iter().any(|e| e.value.len() != 24), "{}", want.len());

    assert_eq!(
        FileStorage.list(&dest).unwrap(),
        [checkpoint::file_name(report.ts)]
    );
    assert_eq!(report.file, dest.join(checkpoint::file_name(report.ts)));
    let bytes = FileStorage.read(&report.file).unwrap();
    assert_eq!(bytes.len() as u64, report.bytes);
    let cp = checkpoint::read(&report.file, &bytes).unwrap();
    assert_eq!(cp.ts, report.ts);
    assert_eq!(report.keys, want.len() as u64);
    assert_eq!(cp.entries, want);
}

#[test]
fn a_backup_is_durable_when_it_returns() {
    let db = Db::new();
    for i in 0..100 {
        db.put(key(i), [i as u8; 3]).unwrap();
    }
    let storage = SimStorage::new();
    let dest = Path::new("/backups/one");
    let report = backup_snapshot(&storage, dest, &db.snapshot()).unwrap();
    let after = storage.crash(Crash::SyncedOnly);
    let cp = checkpoint::read(&report.file, &after.read(&report.file).unwrap()).unwrap();
    assert_eq!((cp.ts, cp.entries.len()), (report.ts, 100));
}

#[test]
fn every_failure_point_leaves_no_backup_or_a_whole_one() {
    let db = Db::new();
    for i in 0..50 {
        db.put(key(i), [1u8; 10]).unwrap();
    }
    let snap = db.snapshot();
    let mut outcomes = [0; 2];
    for n in 0..20 {
        let storage = SimStorage::new();
        storage.fail_after(n);
        let dest = Path::new("/backups/one");
        let result = backup_snapshot(&storage, dest, &snap);
        let after = storage.crash(Crash::UnsyncedPrefix { seed: n });
        let file = dest.join(checkpoint::file_name(snap.ts()));
        match after.read(&file) {
            Ok(bytes) => {
                assert_eq!(checkpoint::read(&file, &bytes).unwrap().entries.len(), 50);
                outcomes[1] += 1;
            }
            Err(_) => {
                assert!(matches!(result, Err(Error::Io(_))), "n {n}: {result:?}");
                outcomes[0] += 1;
            }
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

#[test]
fn the_destination_must_be_new_or_an_empty_directory() {
    let db = Db::new();
    db.put("k", "v").unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // An empty directory is accepted.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(db.backup(&empty).unwrap().keys, 1);
    // Now it holds a backup: refused, and left as it was.
    let before = FileStorage.list(&empty).unwrap();
    match db.backup(&empty) {
        Err(Error::DestinationNotEmpty { path }) => assert_eq!(path, empty),
        other => panic!("{other:?}"),
    }
    assert_eq!(FileStorage.list(&empty).unwrap(), before);
    // A file is refused.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"mine").unwrap();
    let err = db.backup(&file).unwrap_err();
    assert!(matches!(err, Error::DestinationNotEmpty { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    // A destination whose parent does not exist is an I/O error.
    let orphan = tmp.path().join("no/such/parent");
    assert!(matches!(db.backup(&orphan), Err(Error::Io(_))));
    // A new directory is created for the owner only.
    let fresh = tmp.path().join("fresh");
    db.backup(&fresh).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[test]
fn a_sim_destination_holding_a_file_is_refused() {
    let storage = SimStorage::new();
    let mut f = storage.create(Path::new("/backups/one/other")).unwrap();
    f.append(b"x").unwrap();
    let db = Db::new();
    assert!(matches!(
        backup_snapshot(&storage, Path::new("/backups/one"), &db.snapshot()),
        Err(Error::DestinationNotEmpty { .. })
    ));
}
