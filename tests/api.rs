//! The public API and its handling of bad input and faults: typed errors that write nothing,
//! panics inside `update`, bounded retries, handle semantics.

use std::error::Error as _;
use std::sync::mpsc;
use std::time::Duration;

use snapkv::{ConflictKind, Db, Error, Isolation, Snapshot, Transaction};

fn small_db() -> Db {
    Db::builder()
        .max_key_len(8)
        .max_value_len(16)
        .build()
        .expect("valid options")
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Db>();
    send_sync::<Snapshot>();
    send::<Transaction>();
    send_sync::<Error>();
}

#[test]
fn bad_keys_and_values_are_typed_errors_and_write_nothing() {
    let db = small_db();
    let long_key = [b'k'; 9];
    let long_value = [b'v'; 17];
    assert!(matches!(db.put(b"", b"v"), Err(Error::EmptyKey)));
    assert!(matches!(
        db.put(long_key, b"v"),
        Err(Error::KeyTooLarge { len: 9, max: 8 })
    ));
    assert!(matches!(
        db.put(b"k", long_value),
        Err(Error::ValueTooLarge { len: 17, max: 16 })
    ));
    assert!(matches!(db.delete(b""), Err(Error::EmptyKey)));
    assert!(matches!(db.get(long_key), Err(Error::KeyTooLarge { .. })));
    assert!(matches!(db.snapshot().get(b""), Err(Error::EmptyKey)));
    assert!(matches!(
        db.compare_and_swap(b"k", None, Some(long_value)),
        Err(Error::ValueTooLarge { .. })
    ));
    // Exactly at the limits is fine.
    db.put([b'k'; 8], [b'v'; 16]).expect("at the limits");
    assert_eq!(db.stats().keys, 1, "only the valid write landed");

    // In a transaction: the bad write is refused, the transaction stays usable, and only
    // the valid writes commit.
    let mut txn = db.begin();
    txn.put(b"good", b"1").unwrap();
    assert!(matches!(
        txn.put(long_key, b"x"),
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        txn.put(b"k2", long_value),
        Err(Error::ValueTooLarge { .. })
    ));
    assert!(matches!(txn.delete(b""), Err(Error::EmptyKey)));
    assert!(matches!(txn.get(b""), Err(Error::EmptyKey)));
    txn.commit().unwrap();
    assert_eq!(db.get(b"good").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.get(b"k2").unwrap(), None);
    assert_eq!(db.stats().keys, 2);
    for e in [Error::EmptyKey, Error::KeyTooLarge { len: 9, max: 8 }] {
        assert!(!e.is_retryable());
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn builder_rejects_invalid_options() {
    assert!(matches!(
        Db::builder().max_attempts(0).build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        Db::builder().max_key_len(0).build(),
        Err(Error::InvalidConfig(_))
    ));
    let db = Db::builder()
        .isolation(Isolation::Serializable)
        .build()
        .unwrap();
    assert_eq!(db.begin().isolation(), Isolation::Serializable);
    assert_eq!(Db::new().begin().isolation(), Isolation::Snapshot);
}

#[test]
fn a_panic_inside_update_installs_nothing_and_holds_no_lock() {
    let db = Db::new();
    db.put(b"a", b"0").unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        db.update(|txn| -> snapkv::Result<()> {
            txn.put(b"a", b"1")?;
            txn.put(b"b", b"1")?;
            panic!("the user's closure fails halfway");
        })
    }));
    assert!(result.is_err(), "the panic propagates");
    assert_eq!(
        db.get(b"a").unwrap().as_deref(),
        Some(&b"0"[..]),
        "partial write"
    );
    assert_eq!(db.get(b"b").unwrap(), None, "partial write");
    assert_eq!(
        db.stats().live_snapshots,
        0,
        "the panicking transaction's snapshot leaked"
    );

    // No lock left: another thread commits to the same keys promptly (a held lock would
    // block it; the channel timeout turns that into a failure instead of a hang).
    let (tx, rx) = mpsc::channel();
    let db2 = db.clone();
    std::thread::spawn(move || {
        let r = db2.update(|txn| {
            txn.put(b"a", b"2")?;
            txn.put(b"b", b"2")
        });
        let _ = tx.send(r.is_ok());
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(true),
        "a lock stayed held"
    );
    assert_eq!(db.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
}

#[test]
fn dropping_or_rolling_back_a_transaction_aborts_it() {
    let db = Db::new();
    {
        let mut txn = db.begin();
        txn.put(b"x", b"1").unwrap();
    }
    let mut txn = db.begin();
    txn.put(b"y", b"1").unwrap();
    txn.rollback();
    assert_eq!(db.get(b"x").unwrap(), None);
    assert_eq!(db.get(b"y").unwrap(), None);
    assert_eq!(db.stats().live_snapshots, 0);
}

#[test]
fn abort_returns_the_callers_error_and_writes_nothing() {
    let db = Db::new();
    let r: Result<(), Error> = db.update(|txn| {
        txn.put(b"k", b"v")?;
        Err(Error::abort(std::io::Error::other("no thanks")))
    });
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Aborted(_)));
    assert!(!e.is_retryable());
    assert!(e.source().is_some_and(|s| s.to_string() == "no thanks"));
    assert_eq!(db.get(b"k").unwrap(), None);
}

#[test]
fn retries_are_bounded_and_report_the_last_conflict() {
    let db = Db::builder().max_attempts(3).build().unwrap();
    let mut runs = 0;
    let r: Result<(), Error> = db.update(|txn| {
        runs += 1;
        txn.put(b"k", b"mine")?;
        // A concurrent writer commits to the same key first, every time.
        txn.db().put(b"k", b"theirs")?;
        Ok(())
    });
    assert_eq!(runs, 3);
    match r {
        Err(e @ Error::RetriesExhausted { attempts: 3, .. }) => {
            assert!(!e.is_retryable());
            let Error::RetriesExhausted { last, .. } = &e else {
                unreachable!()
            };
            assert!(matches!(
                &**last,
                Error::Conflict { kind: ConflictKind::WriteWrite, key, .. } if &key[..] == b"k"
            ));
            let source = e.source().expect("the last conflict is the source");
            assert!(source.to_string().contains("write-write"), "{source}");
            assert!(e.to_string().contains('3'), "{e}");
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"theirs"[..]));
}

#[test]
fn commit_timestamps_order_and_real_time_visibility() {
    let db = Db::new();
    let t1 = db.put(b"a", b"1").unwrap();
    let t2 = db.delete(b"a").unwrap();
    let t3 = db.put(b"a", b"3").unwrap();
    assert!(t1 < t2 && t2 < t3);
    // A commit that returned is visible to snapshots taken afterwards on any thread.
    let (tx, rx) = mpsc::channel();
    let db2 = db.clone();
    let h = std::thread::spawn(move || {
        for i in 0..1000u32 {
            let ts = db2.put(b"rt", i.to_be_bytes()).unwrap();
            tx.send((ts, i)).unwrap();
        }
    });
    for (ts, i) in rx {
        let snap = db.snapshot();
        assert!(snap.ts() >= ts);
        let v = snap.get(b"rt").unwrap().expect("written");
        assert!(u32::from_be_bytes(v[..].try_into().unwrap()) >= i);
        assert!(db.get(b"rt").unwrap().is_some());
    }
    h.join().unwrap();
}

#[test]
fn snapshots_are_stable_and_scans_ordered() {
    let db = Db::new();
    for k in ["a", "b", "ba", "bb", "c", "\u{ff}"] {
        db.put(k, k).unwrap();
    }
    db.put([0xff, 0xff], b"ff").unwrap();
    db.put([0xff, 0xff, 0x01], b"ff01").unwrap();
    let snap = db.snapshot();
    db.delete("b").unwrap();
    db.put("bc", "new").unwrap();
    let keys = |it: snapkv::Iter<'_>| it.map(|(k, _)| k.to_vec()).collect::<Vec<_>>();
    assert_eq!(
        keys(snap.scan_prefix("b")),
        [b"b".to_vec(), b"ba".to_vec(), b"bb".to_vec()]
    );
    assert_eq!(
        keys(snap.range(b"b".as_slice()..=b"c".as_slice())),
        [b"b".to_vec(), b"ba".to_vec(), b"bb".to_vec(), b"c".to_vec()]
    );
    let rev: Vec<_> = snap
        .range(..b"bb".as_slice())
        .rev()
        .map(|(k, _)| k.to_vec())
        .collect();
    assert_eq!(rev, [b"ba".to_vec(), b"b".to_vec(), b"a".to_vec()]);
    // Prefixes ending in 0xff bytes have no simple upper bound.
    assert_eq!(keys(snap.scan_prefix([0xff, 0xff])).len(), 2);
    assert_eq!(
        snap.range(b"c".as_slice()..b"a".as_slice()).count(),
        0,
        "inverted range"
    );
    // The live view moved on.
    let now = db.snapshot();
    assert_eq!(
        keys(now.scan_prefix("b")),
        [b"ba".to_vec(), b"bb".to_vec(), b"bc".to_vec()]
    );
    assert_eq!(snap.get("b").unwrap().as_deref(), Some(&b"b"[..]));
    assert!(snap.ts() < now.ts());
}

#[test]
fn read_your_writes_in_transaction_scans() {
    let db = Db::new();
    for k in ["k1", "k2", "k3"] {
        db.put(k, "old").unwrap();
    }
    let mut txn = db.begin();
    txn.delete("k2").unwrap();
    txn.put("k4", "new").unwrap();
    txn.put("k1", "mine").unwrap();
    let all: Vec<_> = txn
        .scan_prefix("k")
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    assert_eq!(
        all,
        [
            (b"k1".to_vec(), b"mine".to_vec()),
            (b"k3".to_vec(), b"old".to_vec()),
            (b"k4".to_vec(), b"new".to_vec())
        ]
    );
    let rev: Vec<_> = txn.range(..).rev().map(|(k, _)| k.to_vec()).collect();
    assert_eq!(rev, [b"k4".to_vec(), b"k3".to_vec(), b"k1".to_vec()]);
    assert!(!txn.is_read_only());
    assert!(db.begin().is_read_only());
}

#[test]
fn versions_and_conditional_writes() {
    let db = Db::new();
    assert!(matches!(
        db.compare_and_swap(b"doc", Some(1), Some(b"x")),
        Err(Error::PreconditionFailed { current: None, .. })
    ));
    let v1 = db.compare_and_swap(b"doc", None, Some(b"draft")).unwrap();
    assert_eq!(
        db.get_versioned(b"doc").unwrap(),
        Some((b"draft"[..].into(), v1))
    );
    let stale = db.compare_and_swap(b"doc", None, Some(b"again"));
    match stale {
        Err(e @ Error::PreconditionFailed { .. }) => {
            assert!(
                !e.is_retryable(),
                "a precondition failure is not a conflict"
            );
            assert!(matches!(e, Error::PreconditionFailed { current: Some(c), .. } if c == v1));
        }
        other => panic!("{other:?}"),
    }
    let v2 = db
        .compare_and_swap(b"doc", Some(v1), Some(b"final"))
        .unwrap();
    assert!(v2 > v1);
    db.compare_and_delete(b"doc", Some(v2)).unwrap();
    assert_eq!(db.get_versioned(b"doc").unwrap(), None);
    // Inside a transaction.
    let v3 = db.put(b"row", b"1").unwrap();
    let mut txn = db.begin();
    txn.compare_and_swap(b"row", Some(v3), Some(b"2")).unwrap();
    let ts = txn.commit().unwrap();
    assert_eq!(
        db.get_versioned(b"row").unwrap(),
        Some((b"2"[..].into(), ts))
    );
    // A stale expectation fails at once, with the version the transaction sees.
    let mut txn = db.begin();
    assert!(matches!(
        txn.compare_and_swap(b"row", Some(v3), Some(b"3")),
        Err(Error::PreconditionFailed { current: Some(c), .. }) if c == ts
    ));
    // A version that changes after the check is caught at commit, as a conflict.
    txn.compare_and_swap(b"row", Some(ts), Some(b"3")).unwrap();
    db.put(b"row", b"concurrent").unwrap();
    assert!(matches!(
        txn.commit(),
        Err(Error::Conflict {
            kind: ConflictKind::WriteWrite,
            ..
        })
    ));
    assert_eq!(db.get(b"row").unwrap().as_deref(), Some(&b"concurrent"[..]));
}
