//! Big transactions: the write-set size limit (a typed error that leaves the transaction as it
//! was), and what a big commit costs in memory, counted by an instrumented global allocator:
//! a large value is copied once on its way in (into its version node, when it is buffered),
//! and a commit allocates at most about its write set again on top of it.

use std::alloc::System;
use std::sync::{Mutex, MutexGuard};

use snapkv::{Db, Error, DEFAULT_MAX_WRITE_SET_BYTES};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocator's counters are global: the tests of this file run one at a time, so that a
/// measurement counts only its own allocations.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alone() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Heap bytes currently allocated (realloc growth is already in `bytes_allocated`).
fn live_bytes() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

const MIB: usize = 1024 * 1024;

/// Runs the epoch's deferred frees left by earlier tests (freeing lets the freeing thread's
/// node pool grow), so that they do not land in a measurement.
fn quiesce() {
    for _ in 0..16 {
        crossbeam_epoch::pin().flush();
    }
}

fn db_with_limit(max: usize) -> Db {
    Db::builder().max_write_set_bytes(max).build().unwrap()
}

#[test]
fn a_write_over_the_limit_is_rejected_with_its_size_and_the_limit() {
    let _alone = alone();
    let db = db_with_limit(1000);
    let mut txn = db.begin();
    // Counted: key length plus value length.
    txn.put(b"k1", [1u8; 498]).unwrap(); // 500
    txn.put(b"k2", [2u8; 400]).unwrap(); // 902
    let err = txn.put(b"k3", [3u8; 98]).unwrap_err(); // would be 1002
    assert!(
        matches!(
            err,
            Error::WriteSetTooLarge {
                bytes: 1002,
                max: 1000
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable(), "retrying the same writes fails again");
    let message = err.to_string();
    assert!(
        message.contains("1002") && message.contains("1000"),
        "{message}"
    );
    // The rejected write was not buffered; the others are intact.
    assert_eq!(txn.get(b"k3").unwrap(), None);
    assert_eq!(txn.get(b"k1").unwrap().as_deref(), Some(&[1u8; 498][..]));
    assert_eq!(txn.get(b"k2").unwrap().as_deref(), Some(&[2u8; 400][..]));
    // A write that fits still does (exactly at the limit).
    txn.put(b"k3", [3u8; 96]).unwrap(); // 1000
    assert!(matches!(
        txn.delete(b"k4"),
        Err(Error::WriteSetTooLarge {
            bytes: 1002,
            max: 1000
        })
    ));
    txn.commit().unwrap();
    assert_eq!(db.get(b"k3").unwrap().as_deref(), Some(&[3u8; 96][..]));
    assert_eq!(db.get(b"k4").unwrap(), None);
}

#[test]
fn a_rewrite_counts_the_new_write_instead_of_the_old_one() {
    let _alone = alone();
    let db = db_with_limit(1000);
    let mut txn = db.begin();
    for round in 0..1000u32 {
        // 2 + 900 bytes, again and again: never more than one of them counts.
        txn.put(b"k1", [round as u8; 900]).unwrap();
    }
    // A rewrite that grows the key's write over the limit is rejected and keeps the old one.
    let err = txn.put(b"k1", [0u8; 999]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WriteSetTooLarge {
                bytes: 1001,
                max: 1000
            }
        ),
        "{err:?}"
    );
    assert_eq!(txn.get(b"k1").unwrap().as_deref(), Some(&[231u8; 900][..]));
    // Replacing the value by a delete frees its bytes for other keys.
    txn.delete(b"k1").unwrap();
    txn.put(b"k2", [2u8; 900]).unwrap();
    // A conditional write is buffered under the same limit.
    let err = txn
        .compare_and_swap(b"k3", None, Some([3u8; 200]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::WriteSetTooLarge {
                bytes: 1106,
                max: 1000
            }
        ),
        "{err:?}"
    );
    txn.commit().unwrap();
    assert_eq!(db.get(b"k1").unwrap(), None);
    assert_eq!(db.get(b"k2").unwrap().as_deref(), Some(&[2u8; 900][..]));
    assert_eq!(db.get(b"k3").unwrap(), None);
}

#[test]
fn the_limit_is_configurable_and_defaults_to_a_generous_size() {
    let _alone = alone();
    assert_eq!(DEFAULT_MAX_WRITE_SET_BYTES, 256 * MIB);
    assert!(matches!(
        Db::builder().max_write_set_bytes(0).build(),
        Err(Error::InvalidConfig(_))
    ));
    // The default lets a transaction buffer more than one maximal value.
    let db = Db::builder().max_value_len(1000).build().unwrap();
    let mut txn = db.begin();
    for i in 0..100u32 {
        txn.put(i.to_be_bytes(), [0u8; 1000]).unwrap();
    }
    txn.commit().unwrap();
    // One-key writes outside transactions are not transactions' write sets: only
    // `max_value_len` applies to them.
    let db = Db::builder()
        .max_write_set_bytes(10)
        .max_value_len(100)
        .build()
        .unwrap();
    db.put(b"key", [0u8; 100]).unwrap();
    assert!(db.begin().put(b"key", [0u8; 100]).is_err());
}

/// A 64 MiB value through a transaction: `put` copies it into its version node and `commit`
/// links that node, so the two together allocate the value's size once (they used to copy it
/// into the write set, then into the node: twice).
#[test]
fn a_large_value_is_copied_once_on_its_way_in() {
    let _alone = alone();
    let len = 64 * MIB;
    let db = Db::builder().max_value_len(len).build().unwrap();
    let value = vec![7u8; len];
    quiesce();
    let region = Region::new(GLOBAL);
    let before = live_bytes();
    let mut txn = db.begin();
    txn.put(b"big", &value).unwrap();
    let write_set = live_bytes() - before;
    let at_commit = live_bytes();
    let commit_region = Region::new(GLOBAL);
    txn.commit().unwrap();
    let during_commit = commit_region.change().bytes_allocated as i64;
    let total = region.change().bytes_allocated;
    println!("write set {write_set} B, commit allocated {during_commit} B, in total {total} B");
    // One copy, with room for noise (a second copy would be `len` more).
    assert!(
        total < len + len / 8,
        "put and commit allocated {total} bytes for a value of {len}"
    );
    // The commit's peak: what was live when it started plus all it allocated.
    let peak = at_commit - before + during_commit;
    assert!(
        peak <= 2 * write_set,
        "commit peak {peak} for a write set of {write_set}"
    );
    assert_eq!(
        db.get_with(b"big", |v| v == &value[..]).unwrap(),
        Some(true)
    );
}

fn key(i: u32) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(b"key:");
    k[12..].copy_from_slice(&i.to_be_bytes());
    k
}

/// 200,000 small writes, created, then overwritten. The commit's peak is at most what was live
/// when it started plus what it allocates. Overwriting, it allocates at most the write set's
/// own size again (its per-key lists: chains, locks, the writes handed to the install; the
/// versions are the write set's nodes): a peak of at most twice the write set. Creating the
/// keys, it also grows the store (a chain and a map entry per key, and the map's table
/// doubling, as one-key puts of new keys would): then at most twice the write set again.
#[test]
fn a_commit_of_many_keys_takes_at_most_its_write_set_again() {
    let _alone = alone();
    const KEYS: u32 = 200_000;
    let db = Db::new();
    for round in 0..2u8 {
        quiesce();
        let before = live_bytes();
        let mut txn = db.begin();
        for i in 0..KEYS {
            txn.put(key(i), [round; 100]).unwrap();
        }
        let write_set = live_bytes() - before;
        let region = Region::new(GLOBAL);
        txn.commit().unwrap();
        let change = region.change();
        let (allocated, freed) = (
            change.bytes_allocated as i64,
            change.bytes_deallocated as i64,
        );
        let per_key = |b: i64| b / i64::from(KEYS);
        println!(
            "round {round}: write set {write_set} B ({} B/key), commit allocated {allocated} B \
             ({} B/key), freed {freed} B ({} B/key)",
            per_key(write_set),
            per_key(allocated),
            per_key(freed),
        );
        let bound = if round == 0 { 2 * write_set } else { write_set };
        assert!(
            allocated <= bound,
            "round {round}: the commit allocated {allocated} bytes for a write set of {write_set}"
        );
        db.collect_garbage();
    }
    assert_eq!(
        db.get(key(KEYS - 1)).unwrap().as_deref(),
        Some(&[1u8; 100][..])
    );
    drop(db);
    quiesce();
}

/// Keys of the concurrent big-commit tests: enough for a write set that installs as pending
/// before its timestamp (see `commit::pending`).
const BIG: u32 = 300;

/// Readers racing big commits (each rewrites all `BIG` keys with its round number) see, in
/// every snapshot, all keys at one round, through point reads and a scan alike. The writer
/// goes on until the readers have seen the round change several times (the race happened),
/// or a deadline.
#[test]
fn a_snapshot_never_sees_part_of_a_big_commit() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    let _alone = alone();
    const CHANGES: usize = 6;
    let db = Db::new();
    let writing = AtomicBool::new(true);
    let (checked, changes) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut last = None;
                while writing.load(Ordering::Acquire) {
                    let snap = db.snapshot();
                    let scanned: Vec<_> = snap.iter().map(|(_, v)| v).collect();
                    assert!(
                        scanned.is_empty() || scanned.len() == BIG as usize,
                        "a scan at {:?} saw {} of {BIG} keys",
                        snap.ts(),
                        scanned.len()
                    );
                    let mut got: Vec<_> = (0..BIG).map(|i| snap.get(key(i)).unwrap()).collect();
                    got.extend(scanned.into_iter().map(Some));
                    assert!(
                        got.windows(2).all(|w| w[0] == w[1]),
                        "a snapshot at {:?} saw part of a big commit",
                        snap.ts()
                    );
                    let round = got[0].as_ref().map(|v| v[0]);
                    if round.is_some() && round != last {
                        changes.fetch_add(1, Ordering::Relaxed);
                        last = round;
                    }
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut round = 0u8;
        while changes.load(Ordering::Relaxed) < CHANGES && Instant::now() < deadline {
            let mut txn = db.begin();
            for i in 0..BIG {
                txn.put(key(i), [round; 8]).unwrap();
            }
            txn.commit().unwrap();
            round = round.wrapping_add(1);
        }
        writing.store(false, Ordering::Release);
    });
    let (checked, changes) = (checked.into_inner(), changes.into_inner());
    println!("{checked} snapshots checked, {changes} round changes seen");
    assert!(
        changes >= CHANGES,
        "the readers saw {changes} round changes in {checked} snapshots: the race did not happen"
    );
}

/// A big serializable transaction whose read changed after its snapshot fails at commit,
/// after it linked its versions: none of them is ever visible, the keys keep their values,
/// and the next commit to them succeeds.
#[test]
fn a_failed_big_serializable_commit_leaves_its_keys_as_they_were() {
    let _alone = alone();
    let db = Db::new();
    let mut init = db.begin();
    for i in 0..BIG {
        init.put(key(i), b"init").unwrap();
    }
    init.commit().unwrap();
    db.put(b"read", b"r1").unwrap();
    let mut txn = db.begin_with(snapkv::Isolation::Serializable);
    assert_eq!(txn.get(b"read").unwrap().as_deref(), Some(&b"r1"[..]));
    for i in 0..BIG {
        txn.put(key(i), b"lost").unwrap();
    }
    db.put(b"read", b"r2").unwrap();
    let err = txn.commit().unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let snap = db.snapshot();
    for i in 0..BIG {
        assert_eq!(snap.get(key(i)).unwrap().as_deref(), Some(&b"init"[..]));
    }
    assert_eq!(snap.iter().count(), BIG as usize + 1);
    let mut again = db.begin();
    for i in 0..BIG {
        again.put(key(i), b"again").unwrap();
    }
    again.commit().unwrap();
    assert_eq!(
        db.get(key(BIG - 1)).unwrap().as_deref(),
        Some(&b"again"[..])
    );
}

/// Two big transactions from one snapshot writing overlapping keys: the second to commit
/// loses (first committer wins), and installs nothing.
#[test]
fn big_commits_from_one_snapshot_first_committer_wins() {
    let _alone = alone();
    let db = Db::new();
    let (mut first, mut second) = (db.begin(), db.begin());
    for i in 0..BIG {
        first.put(key(i), b"first").unwrap();
        second.put(key(i + BIG / 2), b"second").unwrap();
    }
    first.commit().unwrap();
    let err = second.commit().unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert_eq!(
        db.get(key(BIG - 1)).unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(db.get(key(BIG + 1)).unwrap(), None);
    assert_eq!(db.snapshot().iter().count(), BIG as usize);
}
