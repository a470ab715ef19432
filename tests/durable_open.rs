//! A database kept in a directory: what it holds after close and reopen (or drop and
//! reopen), the directory lock, closing, and the options a durable database refuses.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use snapkv::{Bytes, Db, Error, Isolation, SyncPolicy};

/// Every key's value and version (the commit timestamp that wrote it), read through
/// `get_versioned`, plus what a full scan returns: the two must agree.
fn contents(db: &Db) -> BTreeMap<Bytes, (Bytes, u64)> {
    let snap = db.snapshot();
    let mut out = BTreeMap::new();
    for (key, value) in snap.iter() {
        let (latest, version) = db
            .get_versioned(&key)
            .unwrap()
            .expect("scanned key is live");
        assert_eq!(latest, value, "scan and get disagree on {key:?}");
        out.insert(key, (value, version));
    }
    out
}

/// Puts, deletes, transactions at both isolation levels, a big write set (the pending
/// commit path), conditional writes and an `update`.
fn write_history(db: &Db) {
    for i in 0..20u32 {
        db.put(format!("k{i:02}"), format!("v{i}")).unwrap();
    }
    db.delete("k03").unwrap();
    db.delete("never-existed").unwrap();
    db.put("k05", "overwritten").unwrap();

    let mut txn = db.begin_with(Isolation::Snapshot);
    txn.put("t-si", "1").unwrap();
    txn.delete("k06").unwrap();
    txn.commit().unwrap();

    let mut txn = db.begin_with(Isolation::Serializable);
    let seen = txn.get("k07").unwrap();
    txn.put("t-ser", seen.unwrap()).unwrap();
    assert_eq!(txn.scan_prefix("k1").count(), 10);
    txn.put("t-ser-2", "2").unwrap();
    txn.commit().unwrap();

    let mut big = db.begin();
    for i in 0..100u32 {
        big.put(format!("big{i:03}"), i.to_be_bytes()).unwrap();
    }
    big.delete("k08").unwrap();
    big.commit().unwrap();

    let v1 = db.compare_and_swap("cas", None, Some("a")).unwrap();
    db.compare_and_swap("cas", Some(v1), Some("b")).unwrap();
    assert!(matches!(
        db.compare_and_swap("cas", Some(v1), Some("c")),
        Err(Error::PreconditionFailed { .. })
    ));
    let v = db.put("cas-del", "x").unwrap();
    db.compare_and_delete("cas-del", Some(v)).unwrap();

    db.update(|txn| {
        let n = txn.get("counter")?.map_or(0, |v| v.len());
        txn.put("counter", vec![b'+'; n + 1])
    })
    .unwrap();
}

#[test]
fn close_and_reopen_gives_back_every_key_with_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.recovery().unwrap().records_replayed, 0);
    write_history(&db);
    let before = contents(&db);
    let visible = db.snapshot().ts();
    assert!(before.len() > 100, "{}", before.len());
    db.close().unwrap();

    let db = Db::open(dir.path()).unwrap();
    assert_eq!(contents(&db), before);
    let report = db.recovery().unwrap().clone();
    assert_eq!(report.visible_ts, visible);
    assert_eq!(report.keys, before.len());
    assert_eq!(report.torn_tail, None);
    assert_eq!(report.checkpoint_ts, None);
    // One record per commit that wrote something (conflicting or failed ones wrote none).
    assert_eq!(report.records_replayed, visible);
    assert_eq!(
        db.snapshot().ts(),
        visible,
        "the clock resumes where it was"
    );
    for gone in ["k03", "k06", "k08", "cas-del", "never-existed"] {
        assert_eq!(db.get(gone).unwrap(), None, "{gone}");
    }
    // CAS against the recovered version works, and new commits go above it.
    let (_, version) = db.get_versioned("cas").unwrap().unwrap();
    let next = db
        .compare_and_swap("cas", Some(version), Some("c"))
        .unwrap();
    assert_eq!(next, visible + 1);
    db.close().unwrap();

    // A second round: the records of both sessions replay.
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get("cas").unwrap().as_deref(), Some(&b"c"[..]));
    assert_eq!(db.recovery().unwrap().records_replayed, visible + 1);
}

#[test]
fn dropping_without_close_keeps_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    for policy in [
        SyncPolicy::Always,
        SyncPolicy::Never,
        SyncPolicy::Periodic(Duration::from_millis(5)),
    ] {
        let db = Db::builder().path(dir.path()).sync(policy).build().unwrap();
        write_history(&db);
        let before = contents(&db);
        // A snapshot keeps the database alive; dropping it last releases the directory.
        let snap = db.snapshot();
        drop(db);
        drop(snap);
        let db = Db::builder().path(dir.path()).sync(policy).build().unwrap();
        assert_eq!(contents(&db), before, "{policy:?}");
        // Start the next policy on an empty directory's worth of history.
        db.close().unwrap();
        std::fs::remove_dir_all(dir.path()).unwrap();
    }
}

#[test]
fn a_locked_directory_refuses_a_second_open_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let second = Db::open(dir.path());
    match second {
        Err(ref e @ Error::Locked { ref path }) => {
            assert_eq!(path, dir.path());
            assert!(!e.is_retryable());
        }
        other => panic!("expected Error::Locked, got {other:?}"),
    }
    db.put("k", "v").unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    drop(db);
    // Dropping the last handle releases it too.
    Db::open(dir.path()).unwrap().close().unwrap();
}

#[cfg(unix)]
#[test]
fn files_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put("k", "v").unwrap();
    db.close().unwrap();
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{:?}", entry.file_name());
        files += 1;
    }
    assert!(files >= 2, "a segment and the LOCK file: {files}");
}

#[test]
fn after_close_other_handles_cannot_write_but_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put("k", "v").unwrap();
    let other = db.clone();
    let mut txn = other.begin();
    txn.put("t", "1").unwrap();
    db.close().unwrap();
    assert!(matches!(other.put("k", "w"), Err(Error::Closed)));
    let closed = txn.commit().unwrap_err();
    assert!(matches!(closed, Error::Closed));
    assert!(!closed.is_retryable());
    let mut runs = 0;
    let updated = other.update(|txn| {
        runs += 1;
        txn.put("u", "1")
    });
    assert!(matches!(updated, Err(Error::Closed)));
    assert_eq!(runs, 1, "update retried a closed database");
    // Nothing of the refused writes became visible; reads keep working.
    assert_eq!(other.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(other.get("t").unwrap(), None);
    assert_eq!(other.get("u").unwrap(), None);
    // The directory was released although a handle is still alive.
    let reopened = Db::open(dir.path()).unwrap();
    assert_eq!(reopened.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(reopened.get("t").unwrap(), None);
}

#[test]
fn a_durable_database_refuses_limits_of_4_gib_or_more_and_a_zero_sync_interval() {
    let dir = tempfile::tempdir().unwrap();
    let four_gib = 1usize << 32;
    let builders = [
        Db::builder().max_key_len(four_gib),
        Db::builder().max_value_len(four_gib),
        Db::builder().max_write_set_bytes(four_gib),
    ];
    for builder in builders {
        // In memory the same limits are fine.
        builder.clone().build().unwrap();
        let err = builder.path(dir.path()).build().unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
    }
    let err = Db::builder()
        .path(dir.path())
        .sync(SyncPolicy::Periodic(Duration::ZERO))
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
    // Just below is accepted.
    let db = Db::builder()
        .max_value_len(four_gib - 1)
        .path(dir.path())
        .build()
        .unwrap();
    db.close().unwrap();
}

#[test]
fn a_torn_tail_is_cut_off_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put("a", "1").unwrap();
    db.put("b", "2").unwrap();
    db.close().unwrap();
    let segment = newest_segment(dir.path());
    let len = std::fs::metadata(&segment).unwrap().len();
    // Bytes after the last frame that do not make a frame: what a crash in the middle of
    // writing one leaves.
    let mut garbage = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut garbage, &[0xAB; 37]).unwrap();
    drop(garbage);

    let db = Db::open(dir.path()).unwrap();
    let report = db.recovery().unwrap();
    let torn = report.torn_tail.as_ref().expect("a torn tail");
    assert_eq!(
        (torn.file.as_path(), torn.offset, torn.bytes),
        (segment.as_path(), len, 37)
    );
    assert_eq!(report.records_replayed, 2);
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        len,
        "cut at the torn tail"
    );
    assert_eq!(db.get("b").unwrap().as_deref(), Some(&b"2"[..]));
    db.close().unwrap();
    // Cut off for good: the next open finds nothing to drop.
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.recovery().unwrap().torn_tail, None);
    assert_eq!(db.recovery().unwrap().records_replayed, 2);
}

/// The segment with the highest number in `dir` (one with frames: each open starts a new one).
fn newest_segment(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

/// Concurrent transfers (serializable and snapshot `update`s, so conflicts and retries) on a
/// durable database, then close and reopen: every account as it was, the total kept.
#[test]
fn concurrent_transfers_reopen_to_the_same_balances() {
    const ACCOUNTS: u64 = 8;
    const START: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    for a in 0..ACCOUNTS {
        db.put(format!("acct{a}"), START.to_be_bytes()).unwrap();
    }
    let balance = |v: Option<Bytes>| u64::from_be_bytes(v.unwrap()[..].try_into().unwrap());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let db = &db;
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                let isolation = if t % 2 == 0 {
                    Isolation::Serializable
                } else {
                    Isolation::Snapshot
                };
                for _ in 0..100 {
                    let (from, to) = (rng.u64(0..ACCOUNTS), rng.u64(0..ACCOUNTS));
                    if from == to {
                        continue;
                    }
                    db.update_with(isolation, |txn| {
                        let a = balance(txn.get(format!("acct{from}"))?);
                        let b = balance(txn.get(format!("acct{to}"))?);
                        let amount = a.min(7);
                        txn.put(format!("acct{from}"), (a - amount).to_be_bytes())?;
                        txn.put(format!("acct{to}"), (b + amount).to_be_bytes())
                    })
                    .unwrap();
                }
            });
        }
    });
    let before = contents(&db);
    let total: u64 = before.values().map(|(v, _)| balance(Some(v.clone()))).sum();
    assert_eq!(total, ACCOUNTS * START);
    db.close().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(contents(&db), before);
}

#[test]
fn a_backup_opens_as_the_database_it_was_taken_from() {
    let tmp = tempfile::tempdir().unwrap();
    // From memory and from a directory, with later writes the backup must not hold.
    let memory = Db::new();
    write_history(&memory);
    let durable = Db::open(tmp.path().join("db")).unwrap();
    write_history(&durable);
    for (name, db) in [("memory", memory), ("durable", durable)] {
        let dest = tmp.path().join(format!("backup-{name}"));
        let expected = contents(&db);
        let report = db.backup(&dest).unwrap();
        db.put("after-the-backup", "x").unwrap();
        let restored = Db::open(&dest).unwrap();
        assert_eq!(contents(&restored), expected, "{name}");
        assert_eq!(restored.recovery().unwrap().checkpoint_ts, Some(report.ts));
        assert_eq!(restored.stats().visible_ts, report.ts);
        // The restored database takes writes and reopens with them.
        let ts = restored.put("restored", "y").unwrap();
        assert!(ts > report.ts);
        restored.close().unwrap();
        let again = Db::open(&dest).unwrap();
        assert_eq!(
            again.get_versioned("restored").unwrap(),
            Some((Bytes::from_static(b"y"), ts))
        );
    }
}

#[test]
fn a_checkpoint_on_a_directory_is_what_a_reopen_starts_from() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path()).unwrap();
    write_history(&db);
    let cp = db.checkpoint().unwrap();
    db.put("after", "1").unwrap();
    let expected = contents(&db);
    db.close().unwrap();
    let db = Db::open(tmp.path()).unwrap();
    let report = db.recovery().unwrap();
    assert_eq!(report.checkpoint_ts, Some(cp.ts));
    assert_eq!(report.records_replayed, 1);
    assert_eq!(contents(&db), expected);
}

#[test]
fn damage_to_synced_records_is_refused_and_repair_cuts_the_log_there() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path()).unwrap();
    for i in 0..10u32 {
        db.put(format!("k{i}"), [7u8; 40]).unwrap();
    }
    db.close().unwrap();
    // Flip a byte inside the fourth record's value: the later records' synced marks prove
    // it had been synced, so this is damage, not a torn tail.
    let segment = newest_segment(tmp.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    let frame = (bytes.len() - 48) / 10;
    let at = 48 + 3 * frame + frame - 5;
    bytes[at] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();

    match Db::open(tmp.path()) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, segment),
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
    // Nothing was changed by the refused open.
    assert_eq!(std::fs::read(&segment).unwrap(), bytes);

    let db = Db::builder().path(tmp.path()).repair(true).build().unwrap();
    let repaired = db.recovery().unwrap().repaired.clone().expect("a repair");
    assert_eq!(repaired.file, segment);
    assert_eq!(repaired.offset, (48 + 3 * frame) as u64);
    let keys: Vec<Bytes> = db.snapshot().iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        ["k0", "k1", "k2"].map(|k| Bytes::from_static(k.as_bytes()))
    );
    db.close().unwrap();
    // The repaired directory opens without repair.
    assert!(Db::open(tmp.path())
        .unwrap()
        .recovery()
        .unwrap()
        .repaired
        .is_none());
}

/// The log's newest segment keeps its reserved room (zeros after its frames, written through
/// a memory map on Linux) while the database is open. A copy of the directory taken then is
/// what a crash of the process leaves: it opens to every acknowledged commit, its zeros cut
/// off without a torn tail. Concurrent committers share the map (group commit).
#[test]
fn a_copy_taken_while_open_reopens_to_every_acknowledged_commit() {
    for policy in [SyncPolicy::Never, SyncPolicy::Always] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::builder().path(dir.path()).sync(policy).build().unwrap();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let db = &db;
                s.spawn(move || {
                    for i in 0..300u64 {
                        db.put(format!("t{t}-{:03}", i % 100), i.to_be_bytes())
                            .unwrap();
                    }
                });
            }
        });
        let acknowledged = contents(&db);
        let segment = newest_segment(dir.path());
        let reserved = std::fs::metadata(&segment).unwrap().len();
        if cfg!(target_os = "linux") {
            assert_eq!(
                reserved,
                64 << 20,
                "{policy:?}: the segment's room is reserved"
            );
        }
        let copy = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
        }
        let reopened = Db::builder()
            .path(copy.path())
            .sync(policy)
            .build()
            .unwrap();
        assert_eq!(contents(&reopened), acknowledged, "{policy:?}");
        let report = reopened.recovery().unwrap();
        assert_eq!(report.torn_tail, None, "{policy:?}");
        assert_eq!(report.records_replayed, 1200, "{policy:?}");
        let copied = copy.path().join(segment.file_name().unwrap());
        let cut = std::fs::metadata(&copied).unwrap().len();
        assert!(
            cut < reserved || cfg!(not(target_os = "linux")),
            "{policy:?}"
        );
        reopened.close().unwrap();
        // Closing gives the room back: the segment ends at its last frame.
        db.close().unwrap();
        assert_eq!(
            std::fs::metadata(&segment).unwrap().len(),
            cut,
            "{policy:?}"
        );
    }
}

/// Past a segment's size under the policies that do not sync at commit, on the file system:
/// the flusher starts writeback behind the writes (and `Periodic` syncs outside the writer
/// lock) while two committers fill the memory map, whose pages leave the page tables behind
/// the writes, and the segment rolls over. A copy of the directory taken while open (what a
/// crash of the process leaves) reopens to every acknowledged commit, and so does the
/// directory after close.
#[test]
fn past_a_rollover_a_copy_taken_while_open_reopens_to_every_acknowledged_commit() {
    let value = [7u8; 1000];
    for policy in [
        SyncPolicy::Never,
        SyncPolicy::Periodic(Duration::from_millis(5)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        // No checkpoint, so that no file comes or goes while the copy is taken.
        let open = |path: &Path| {
            Db::builder()
                .path(path)
                .sync(policy)
                .checkpoint_log_bytes(u64::MAX)
                .build()
                .unwrap()
        };
        let db = open(dir.path());
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let db = &db;
                s.spawn(move || {
                    // ~36 MiB of log a thread: one rollover of the 64 MiB segments.
                    for i in 0..36_000u64 {
                        let mut v = value;
                        v[..8].copy_from_slice(&i.to_be_bytes());
                        db.put(format!("t{t}-{:03}", i % 500), v).unwrap();
                    }
                });
            }
        });
        let acknowledged = contents(&db);
        let segments = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count();
        assert!(
            segments >= 2,
            "{policy:?}: no rollover ({segments} segment)"
        );
        let copy = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
        }
        let reopened = open(copy.path());
        assert_eq!(contents(&reopened), acknowledged, "{policy:?}: the copy");
        assert_eq!(reopened.recovery().unwrap().torn_tail, None, "{policy:?}");
        reopened.close().unwrap();
        db.close().unwrap();
        let reopened = open(dir.path());
        assert_eq!(contents(&reopened), acknowledged, "{policy:?}: after close");
        reopened.close().unwrap();
    }
}
