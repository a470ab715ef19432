//! The public API and its handling of bad input and faults: typed errors that write nothing,
//! builder validation, panics and aborts inside `update`, bounded retries, error values and
//! messages, handle semantics, commit timestamps, snapshot stability, every form of range
//! bound, prefixes ending in `0xff`, versions and conditional writes, read-your-writes.

use std::collections::{BTreeMap, VecDeque};
use std::error::Error as _;
use std::fmt::Debug;
use std::ops::{Bound, ControlFlow};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Barrier};

#[path = "common/within.rs"]
mod within;
use within::within;

use snapkv::{
    Bytes, ConflictKind, Db, Error, Isolation, Snapshot, Transaction, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_KEY_LEN, DEFAULT_MAX_VALUE_LEN,
};

// Static assertions: the handles can cross threads.
const _: () = {
    const fn clone_send_sync<T: Clone + Send + Sync>() {}
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    clone_send_sync::<Db>();
    send_sync::<Snapshot>();
    send::<Transaction>();
    send_sync::<Error>();
};

/// A database with tiny limits: keys up to 8 bytes, values up to 16.
fn small_db() -> Db {
    Db::builder()
        .max_key_len(8)
        .max_value_len(16)
        .build()
        .expect("valid options")
}

const LONG_KEY: [u8; 9] = [b'k'; 9];
const LONG_VALUE: [u8; 17] = [b'v'; 17];

fn expect_empty_key<T: Debug>(what: &str, r: snapkv::Result<T>) {
    assert!(
        matches!(r, Err(Error::EmptyKey)),
        "{what}: expected EmptyKey, got {r:?}"
    );
}

fn expect_key_too_large<T: Debug>(what: &str, r: snapkv::Result<T>) {
    assert!(
        matches!(r, Err(Error::KeyTooLarge { len: 9, max: 8 })),
        "{what}: expected KeyTooLarge {{ len: 9, max: 8 }}, got {r:?}"
    );
}

fn expect_value_too_large<T: Debug>(what: &str, r: snapkv::Result<T>) {
    assert!(
        matches!(r, Err(Error::ValueTooLarge { len: 17, max: 16 })),
        "{what}: expected ValueTooLarge {{ len: 17, max: 16 }}, got {r:?}"
    );
}

fn keys<I: Iterator<Item = (Bytes, Bytes)>>(it: I) -> Vec<Vec<u8>> {
    it.map(|(k, _)| k.to_vec()).collect()
}

fn pairs<I: Iterator<Item = (Bytes, Bytes)>>(it: I) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

fn strs(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// A write-write conflict, as a commit reports it.
fn real_conflict(db: &Db, key: &str) -> Error {
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    t1.put(key, "1").unwrap();
    t2.put(key, "2").unwrap();
    t1.commit().unwrap();
    t2.commit().expect_err("the second committer must conflict")
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn bad_keys_and_values_are_typed_errors_and_write_nothing() {
    let db = small_db();
    db.put(b"present", b"v").unwrap();
    let before = db.stats();

    // Auto-commit writes and reads.
    expect_empty_key("put", db.put(b"", b"v"));
    expect_key_too_large("put", db.put(LONG_KEY, b"v"));
    expect_value_too_large("put", db.put(b"k", LONG_VALUE));
    expect_key_too_large(
        "put (both bad: the key is checked first)",
        db.put(LONG_KEY, LONG_VALUE),
    );
    expect_empty_key("delete", db.delete(b""));
    expect_key_too_large("delete", db.delete(LONG_KEY));
    expect_empty_key("get", db.get(b""));
    expect_key_too_large("get", db.get(LONG_KEY));
    expect_empty_key("get_versioned", db.get_versioned(b""));
    expect_key_too_large("get_versioned", db.get_versioned(LONG_KEY));

    // Conditional writes: input is validated before the precondition, and on a present key.
    expect_empty_key("cas", db.compare_and_swap(b"", None, Some(b"v")));
    expect_key_too_large("cas", db.compare_and_swap(LONG_KEY, None, Some(b"v")));
    expect_value_too_large("cas", db.compare_and_swap(b"k", None, Some(LONG_VALUE)));
    let (_, v) = db.get_versioned(b"present").unwrap().unwrap();
    expect_value_too_large(
        "cas on a matching version",
        db.compare_and_swap(b"present", Some(v), Some(LONG_VALUE)),
    );
    expect_value_too_large(
        "cas with a stale version",
        db.compare_and_swap(b"present", Some(v + 1), Some(LONG_VALUE)),
    );
    expect_empty_key("compare_and_delete", db.compare_and_delete(b"", None));
    expect_key_too_large("compare_and_delete", db.compare_and_delete(LONG_KEY, None));

    // Snapshot reads.
    let snap = db.snapshot();
    expect_empty_key("snapshot.get", snap.get(b""));
    expect_key_too_large("snapshot.get", snap.get(LONG_KEY));
    expect_empty_key("snapshot.get_versioned", snap.get_versioned(b""));
    expect_key_too_large("snapshot.get_versioned", snap.get_versioned(LONG_KEY));
    expect_empty_key("snapshot.contains_key", snap.contains_key(b""));
    expect_key_too_large("snapshot.contains_key", snap.contains_key(LONG_KEY));
    drop(snap);

    // Transaction reads and writes, at both levels.
    for iso in [Isolation::Snapshot, Isolation::Serializable] {
        let mut txn = db.begin_with(iso);
        expect_empty_key("txn.get", txn.get(b""));
        expect_key_too_large("txn.get", txn.get(LONG_KEY));
        expect_empty_key("txn.get_untracked", txn.get_untracked(b""));
        expect_key_too_large("txn.get_untracked", txn.get_untracked(LONG_KEY));
        expect_empty_key("txn.put", txn.put(b"", b"v"));
        expect_key_too_large("txn.put", txn.put(LONG_KEY, b"v"));
        expect_value_too_large("txn.put", txn.put(b"k", LONG_VALUE));
        expect_empty_key("txn.delete", txn.delete(b""));
        expect_key_too_large("txn.delete", txn.delete(LONG_KEY));
        expect_empty_key("txn.cas", txn.compare_and_swap(b"", None, Some(b"v")));
        expect_key_too_large("txn.cas", txn.compare_and_swap(LONG_KEY, None, Some(b"v")));
        expect_value_too_large(
            "txn.cas",
            txn.compare_and_swap(b"k", None, Some(LONG_VALUE)),
        );
        expect_key_too_large(
            "txn.cas delete",
            txn.compare_and_swap(LONG_KEY, None, None::<&[u8]>),
        );
        assert!(txn.is_read_only(), "a rejected write was buffered");
        assert_eq!(txn.get(b"k").unwrap(), None);
        assert_eq!(txn.scan_prefix(b"k").count(), 0);
        let snap_ts = txn.snapshot_ts();
        assert_eq!(txn.commit().unwrap(), snap_ts, "nothing to commit");
    }

    // Nothing was written: no new key, no commit at all (the clock did not move).
    let after = db.stats();
    assert_eq!(after.keys, before.keys, "a rejected write created a key");
    assert_eq!(
        after.versions, before.versions,
        "a rejected write linked a version"
    );
    assert_eq!(
        after.visible_ts, before.visible_ts,
        "a rejected write committed"
    );
    assert_eq!(keys(db.snapshot().iter()), strs(&["present"]));
    assert_eq!(db.get(b"present").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn limits_are_inclusive_and_an_empty_value_is_a_value() {
    let db = small_db();
    let k8 = [b'k'; 8];
    db.put(k8, [b'v'; 16])
        .expect("a key and a value exactly at the limits");
    assert_eq!(db.get(k8).unwrap().as_deref(), Some(&[b'v'; 16][..]));
    db.put(b"e", b"").expect("an empty value");
    assert_eq!(
        db.get(b"e").unwrap().as_deref(),
        Some(&b""[..]),
        "empty != absent"
    );
    let snap = db.snapshot();
    assert!(snap.contains_key(b"e").unwrap());
    assert!(!snap.contains_key(b"absent").unwrap());
    assert_eq!(
        pairs(snap.iter()),
        [(b"e".to_vec(), vec![]), (k8.to_vec(), vec![b'v'; 16])]
    );
    let mut txn = db.begin();
    txn.put(b"e2", b"").unwrap();
    assert_eq!(txn.get(b"e2").unwrap().as_deref(), Some(&b""[..]));
    txn.commit().unwrap();
    assert!(db.snapshot().contains_key(b"e2").unwrap());

    // max_value_len(0) is valid: only empty values.
    let db = Db::builder().max_value_len(0).build().unwrap();
    db.put(b"k", b"").unwrap();
    assert!(matches!(
        db.put(b"k", b"x"),
        Err(Error::ValueTooLarge { len: 1, max: 0 })
    ));
    // max_key_len(1): single-byte keys only.
    let db = Db::builder().max_key_len(1).build().unwrap();
    db.put(b"k", b"v").unwrap();
    assert!(matches!(
        db.put(b"kk", b"v"),
        Err(Error::KeyTooLarge { len: 2, max: 1 })
    ));
}

#[test]
fn default_limits() {
    let db = Db::new();
    let key = vec![b'k'; DEFAULT_MAX_KEY_LEN];
    db.put(&key, b"v")
        .expect("a key of the default maximum length");
    assert_eq!(db.get(&key).unwrap().as_deref(), Some(&b"v"[..]));
    let long = vec![b'k'; DEFAULT_MAX_KEY_LEN + 1];
    assert!(matches!(
        db.put(&long, b"v"),
        Err(Error::KeyTooLarge { len, max }) if len == DEFAULT_MAX_KEY_LEN + 1 && max == DEFAULT_MAX_KEY_LEN
    ));
    let value = vec![0u8; DEFAULT_MAX_VALUE_LEN + 1];
    assert!(matches!(
        db.put(b"big", &value),
        Err(Error::ValueTooLarge { len, max }) if len == DEFAULT_MAX_VALUE_LEN + 1 && max == DEFAULT_MAX_VALUE_LEN
    ));
    assert_eq!(db.get(b"big").unwrap(), None);
}

/// What the store does with a transaction that makes a valid write and then an invalid one:
/// the invalid write returns its error and buffers nothing, the transaction stays usable,
/// and committing it installs the valid writes. Inside `update`, propagating the error with
/// `?` aborts the whole transaction: nothing is installed.
#[test]
fn an_invalid_write_in_a_transaction_buffers_nothing() {
    let db = small_db();
    db.put(b"old", b"0").unwrap();

    let mut txn = db.begin();
    txn.put(b"good", b"1").unwrap();
    txn.put(b"same", b"ok").unwrap();
    expect_value_too_large("overwrite", txn.put(b"same", LONG_VALUE));
    expect_key_too_large("put", txn.put(LONG_KEY, b"x"));
    expect_empty_key("delete", txn.delete(b""));
    expect_key_too_large("delete", txn.delete(LONG_KEY));
    // The refused overwrite left the earlier buffered value in place.
    assert_eq!(txn.get(b"same").unwrap().as_deref(), Some(&b"ok"[..]));
    // A failed conditional write buffers nothing either.
    assert!(matches!(
        txn.compare_and_swap(b"old", None, Some(b"gone")),
        Err(Error::PreconditionFailed {
            current: Some(_),
            ..
        })
    ));
    assert_eq!(txn.get(b"old").unwrap().as_deref(), Some(&b"0"[..]));
    // Still usable.
    txn.put(b"later", b"2").unwrap();
    let ts = txn.commit().unwrap();
    let snap = db.snapshot();
    assert_eq!(snap.ts(), ts);
    assert_eq!(
        pairs(snap.iter()),
        [
            (b"good".to_vec(), b"1".to_vec()),
            (b"later".to_vec(), b"2".to_vec()),
            (b"old".to_vec(), b"0".to_vec()),
            (b"same".to_vec(), b"ok".to_vec()),
        ]
    );

    // In `update`, `?` turns the bad write into an abort of everything.
    let visible = db.stats().visible_ts;
    let mut runs = 0;
    let r = db.update(|txn| {
        runs += 1;
        txn.put(b"u1", b"1")?;
        txn.delete(b"good")?;
        txn.put(b"u2", LONG_VALUE)?;
        Ok(())
    });
    expect_value_too_large("update", r);
    assert_eq!(runs, 1, "a non-retryable error must not be retried");
    assert_eq!(
        db.stats().visible_ts,
        visible,
        "the aborted update committed"
    );
    assert_eq!(db.get(b"u1").unwrap(), None);
    assert_eq!(db.get(b"good").unwrap().as_deref(), Some(&b"1"[..]));
}

/// A transaction that writes many keys and rewrites them with values of changing lengths
/// (longer, shorter, empty, deleted, written again), far past the size at which the write
/// buffer reorganises itself: its own reads, its scan, and after the commit every reader see
/// exactly the last write of each key.
#[test]
fn a_large_transaction_sees_and_commits_its_last_write_of_each_key() {
    let db = Db::new();
    db.put(b"k07", b"committed before").unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    let mut txn = db.begin();
    let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for round in 0..2_000 {
        let key = format!("k{:02}", rng.u8(0..30)).into_bytes();
        let value = match rng.u8(0..5) {
            0 => None,
            1 => Some(Vec::new()),
            _ => Some(vec![(round % 251) as u8; rng.usize(1..600)]),
        };
        match &value {
            Some(v) => txn.put(&key, v).unwrap(),
            None => txn.delete(&key).unwrap(),
        }
        model.insert(key, value);
        if round % 97 == 0 {
            for (k, v) in &model {
                assert_eq!(txn.get(k).unwrap().as_deref(), v.as_deref());
            }
        }
    }
    let expected: Vec<(Vec<u8>, Vec<u8>)> = model
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
        .collect();
    assert_eq!(pairs(txn.range(..)), expected);
    let backward: Vec<_> = expected.iter().rev().cloned().collect();
    assert_eq!(pairs(txn.range(..).rev()), backward);
    txn.commit().unwrap();
    assert_eq!(pairs(db.snapshot().iter()), expected);
    for (k, v) in &model {
        assert_eq!(db.get(k).unwrap().as_deref(), v.as_deref());
    }
}

// ---------------------------------------------------------------------------------------------
// Builder

#[test]
fn builder_rejects_invalid_options() {
    match Db::builder().max_attempts(0).build() {
        Err(e @ Error::InvalidConfig(msg)) => {
            assert!(msg.contains("max_attempts"), "{msg}");
            assert!(!e.is_retryable());
            assert_eq!(e.to_string(), format!("invalid configuration: {msg}"));
        }
        other => panic!("max_attempts(0): expected InvalidConfig, got {other:?}"),
    }
    match Db::builder().max_key_len(0).build() {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains("max_key_len"), "{msg}"),
        other => panic!("max_key_len(0): expected InvalidConfig, got {other:?}"),
    }
    assert!(matches!(
        Db::builder().max_key_len(0).max_attempts(0).build(),
        Err(Error::InvalidConfig(_))
    ));
    // The smallest valid values, and a valid builder reused after clone.
    let builder = Db::builder()
        .max_key_len(1)
        .max_attempts(1)
        .max_value_len(0);
    assert!(builder.clone().build().is_ok());
    assert!(!format!("{builder:?}").is_empty());

    // max_attempts(1): one run, then RetriesExhausted.
    let db = builder.build().unwrap();
    let mut runs = 0;
    let r = db.update(|txn| {
        runs += 1;
        txn.put(b"k", b"")?;
        txn.db().put(b"k", b"")?;
        Ok(())
    });
    assert_eq!(runs, 1);
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 1, .. })),
        "{r:?}"
    );
}

#[test]
fn builder_sets_the_default_isolation_level() {
    let si = Db::new();
    assert_eq!(si.begin().isolation(), Isolation::Snapshot);
    assert_eq!(Isolation::default(), Isolation::Snapshot);
    let ser = Db::builder()
        .isolation(Isolation::Serializable)
        .build()
        .unwrap();
    assert_eq!(ser.begin().isolation(), Isolation::Serializable);
    assert_eq!(
        ser.update(|txn| Ok(txn.isolation())).unwrap(),
        Isolation::Serializable
    );
    assert_eq!(
        ser.begin_with(Isolation::Snapshot).isolation(),
        Isolation::Snapshot
    );
    assert_eq!(
        ser.update_with(Isolation::Snapshot, |txn| Ok(txn.isolation()))
            .unwrap(),
        Isolation::Snapshot
    );

    // The level is real: write skew commits under the SI default, not under the serializable one.
    for (db, skew_commits) in [(&si, true), (&ser, false)] {
        db.put(b"x", b"1").unwrap();
        db.put(b"y", b"1").unwrap();
        let mut a = db.begin();
        let mut b = db.begin();
        let _ = (a.get(b"x").unwrap(), a.get(b"y").unwrap());
        let _ = (b.get(b"x").unwrap(), b.get(b"y").unwrap());
        a.put(b"x", b"0").unwrap();
        b.put(b"y", b"0").unwrap();
        a.commit().unwrap();
        assert_eq!(
            b.commit().is_ok(),
            skew_commits,
            "{:?}",
            db.begin().isolation()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// update: panics, aborts, retries

#[test]
fn a_panic_inside_update_installs_nothing_and_holds_no_lock() {
    for iso in [Isolation::Snapshot, Isolation::Serializable] {
        let db = Db::new();
        db.put(b"a", b"0").unwrap();
        db.put(b"c", b"0").unwrap();
        // A transaction that began before the panic: if anything were installed for `a`, `b`
        // or `c` after its snapshot, its commit would conflict.
        let mut early = db.begin_with(iso);
        let before = db.stats();
        let mut runs = 0;
        let result = catch_unwind(AssertUnwindSafe(|| {
            db.update_with(iso, |txn| -> snapkv::Result<()> {
                runs += 1;
                let _ = txn.get(b"a")?;
                txn.put(b"a", b"1")?;
                txn.put(b"b", b"1")?;
                txn.delete(b"c")?;
                let _ = txn.scan_prefix(b"").count();
                panic!("the closure fails halfway");
            })
        }));
        let payload = result.expect_err("the panic propagates");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"the closure fails halfway")
        );
        assert_eq!(runs, 1, "a panic is not retried");
        let after = db.stats();
        assert_eq!(
            after.visible_ts, before.visible_ts,
            "something was committed"
        );
        assert_eq!(after.keys, before.keys, "a chain was created");
        assert_eq!(after.versions, before.versions, "a version was linked");
        assert_eq!(
            after.live_snapshots, 1,
            "the panicking transaction's snapshot leaked (only `early` is live)"
        );
        assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"0"[..]));
        assert_eq!(db.get(b"b").unwrap(), None);
        assert_eq!(db.get(b"c").unwrap().as_deref(), Some(&b"0"[..]));

        // From another thread, with a timeout: the older transaction writes the same keys and
        // commits without conflict, then a fresh `update` does too.
        let db2 = db.clone();
        let ts = within("writers after the panic", move || {
            early.put(b"a", b"2").unwrap();
            early.put(b"b", b"2").unwrap();
            early.delete(b"c").unwrap();
            let t1 = early.commit().expect("nothing was installed: no conflict");
            let t2 = db2
                .update_with(iso, |txn| {
                    txn.put(b"a", b"3")?;
                    txn.put(b"b", b"3")
                })
                .map(|()| db2.snapshot().ts())
                .unwrap();
            (t1, t2)
        });
        assert!(ts.0 < ts.1);
        assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(db.get(b"b").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(db.get(b"c").unwrap(), None);
        assert_eq!(db.stats().live_snapshots, 0);
    }
}

#[test]
fn abort_returns_the_callers_error_and_writes_nothing() {
    let db = Db::new();
    db.put(b"k", b"old").unwrap();
    let visible = db.stats().visible_ts;
    let mut runs = 0;
    let r: snapkv::Result<()> = db.update(|txn| {
        runs += 1;
        txn.put(b"k", b"new")?;
        txn.put(b"k2", b"v")?;
        Err(Error::abort(std::io::Error::other("changed my mind")))
    });
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Aborted(_)), "{e:?}");
    assert_eq!(runs, 1, "an abort is not retried");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("changed my mind"), "{e}");
    let source = e.source().expect("the caller's error is the source");
    let io = source
        .downcast_ref::<std::io::Error>()
        .expect("the caller's own error type");
    assert_eq!(io.to_string(), "changed my mind");
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"old"[..]));
    assert_eq!(db.get(b"k2").unwrap(), None);
    assert_eq!(db.stats().visible_ts, visible);

    // A plain message works too.
    let r: snapkv::Result<()> = db.update(|_| Err(Error::abort("no funds")));
    assert!(matches!(&r, Err(Error::Aborted(m)) if m.to_string() == "no funds"));
}

#[test]
fn update_retries_retryable_errors_from_the_closure_and_not_others() {
    let db = Db::new();
    // A conflict returned by the closure itself is retried.
    let mut runs = 0;
    let out = db
        .update(|txn| {
            runs += 1;
            if runs == 1 {
                return Err(real_conflict(txn.db(), "elsewhere"));
            }
            txn.put(b"k", b"v")?;
            Ok(runs)
        })
        .unwrap();
    assert_eq!(out, 2);
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));

    // A precondition failure is not a conflict: returned at once.
    let mut runs = 0;
    let r = db.update(|txn| {
        runs += 1;
        txn.compare_and_swap(b"k", None, Some(b"x"))
    });
    assert_eq!(runs, 1);
    assert!(matches!(
        r,
        Err(Error::PreconditionFailed {
            current: Some(_),
            ..
        })
    ));
}

/// An application's own error for `try_update`.
#[derive(Debug)]
enum AppError {
    NoFunds { balance: u64 },
    Db(Error),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Db(e)
    }
}

#[test]
fn try_update_returns_the_closures_own_error_as_it_is_and_writes_nothing() {
    let db = Db::new();
    db.put(b"k", b"old").unwrap();
    let visible = db.stats().visible_ts;
    let mut runs = 0;
    let r: Result<(), AppError> = db.try_update(|txn| {
        runs += 1;
        txn.put(b"k", b"new")?;
        Err(AppError::NoFunds { balance: 7 })
    });
    assert!(matches!(r, Err(AppError::NoFunds { balance: 7 })), "{r:?}");
    assert_eq!(runs, 1, "the closure's error is not retried");
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"old"[..]));
    assert_eq!(db.stats().visible_ts, visible);
    // The database's own errors reach the caller through `From`, unretried unless conflicts.
    let r: Result<(), AppError> = db.try_update_with(Isolation::Serializable, |txn| {
        txn.put(b"", b"v")?;
        Ok(())
    });
    assert!(matches!(r, Err(AppError::Db(Error::EmptyKey))), "{r:?}");
    assert_eq!(db.stats().live_snapshots, 0);
}

#[test]
fn try_update_retries_commit_conflicts_and_converts_the_last_one() {
    let db = Db::builder().max_attempts(3).build().unwrap();
    // A concurrent commit to the written key during the first attempt: retried, then done.
    let mut runs = 0;
    let out: Result<u32, AppError> = db.try_update(|txn| {
        runs += 1;
        txn.put(b"k", b"mine")?;
        if runs == 1 {
            txn.db().put(b"k", b"theirs")?;
        }
        Ok(runs)
    });
    assert_eq!(out.unwrap(), 2);
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"mine"[..]));
    // Losing every attempt: `RetriesExhausted` with the last conflict, as `AppError::Db`.
    let mut runs = 0;
    let r: Result<(), AppError> = db.try_update(|txn| {
        runs += 1;
        txn.put(b"k", b"mine")?;
        txn.db().put(b"k", b"theirs")?;
        Ok(())
    });
    assert_eq!(runs, 3);
    match r {
        Err(AppError::Db(Error::RetriesExhausted { attempts: 3, last })) => {
            assert!(last.is_retryable(), "{last:?}")
        }
        other => panic!("expected exhausted retries, got {other:?}"),
    }
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"theirs"[..]));
    // A panic in the closure installs nothing and leaves no registration.
    let r = catch_unwind(AssertUnwindSafe(|| {
        let _: Result<(), AppError> = db.try_update(|txn| {
            txn.put(b"k", b"panicked")?;
            panic!("boom");
        });
    }));
    assert!(r.is_err());
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"theirs"[..]));
    assert_eq!(db.stats().live_snapshots, 0);
}

#[test]
fn retries_are_bounded_and_report_the_last_conflict() {
    let db = Db::builder().max_attempts(3).build().unwrap();
    let mut runs = 0;
    let r: snapkv::Result<()> = db.update(|txn| {
        runs += 1;
        txn.put(b"mine-only", b"x")?;
        txn.put(b"k", b"mine")?;
        // A concurrent writer commits the same key first, every time.
        txn.db().put(b"k", format!("theirs {runs}"))?;
        Ok(())
    });
    assert_eq!(runs, 3);
    let e = r.unwrap_err();
    let Error::RetriesExhausted { attempts, last } = &e else {
        panic!("expected RetriesExhausted, got {e:?}");
    };
    assert_eq!(*attempts, 3);
    assert!(
        matches!(&**last, Error::Conflict { kind: ConflictKind::WriteWrite, key, range: None } if &key[..] == b"k"),
        "{last:?}"
    );
    assert!(!e.is_retryable(), "the retry helper already gave up");
    assert!(last.is_retryable());
    let source = e.source().expect("the last conflict is the source");
    assert_eq!(source.to_string(), last.to_string());
    assert!(source
        .to_string()
        .starts_with("write-write conflict on key b\"k\""));
    // (Downcasting the source to `Error` exactly is checked by
    // `retries_exhausted_source_downcasts_to_error`.)
    let source = source
        .downcast_ref::<Error>()
        .or_else(|| source.downcast_ref::<Box<Error>>().map(|b| &**b))
        .expect("the source is the crate's Error");
    assert!(
        matches!(source, Error::Conflict { kind: ConflictKind::WriteWrite, key, .. } if &key[..] == b"k"),
        "{source:?}"
    );
    assert_eq!(
        e.to_string(),
        "transaction still conflicted after 3 attempts"
    );
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"theirs 3"[..]));
    assert_eq!(
        db.get(b"mine-only").unwrap(),
        None,
        "a failed attempt wrote"
    );

    // Serializable: a read invalidated every time ends in a read-write conflict.
    let mut runs = 0;
    let r: snapkv::Result<()> = db.update_with(Isolation::Serializable, |txn| {
        runs += 1;
        let _ = txn.get(b"r")?;
        txn.db().put(b"r", b"changed")?;
        txn.put(b"w", b"x")
    });
    assert_eq!(runs, 3);
    match r {
        Err(Error::RetriesExhausted { attempts: 3, last }) => assert!(
            matches!(*last, Error::Conflict { kind: ConflictKind::ReadWrite, ref key, .. } if &key[..] == b"r"),
            "{last:?}"
        ),
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert_eq!(db.get(b"w").unwrap(), None);

    // The default bound.
    let db = Db::new();
    let mut runs = 0;
    let r: snapkv::Result<()> = db.update(|txn| {
        runs += 1;
        txn.put(b"k", b"mine")?;
        txn.db().put(b"k", b"theirs")?;
        Ok(())
    });
    assert_eq!(runs, DEFAULT_MAX_ATTEMPTS);
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts, .. }) if attempts == DEFAULT_MAX_ATTEMPTS)
    );
}

/// The source chain of `RetriesExhausted` leads to the last conflict *as an `Error`*, so a
/// caller walking `source()` can recognise it (not a `Box<Error>` wrapper).
#[test]
fn retries_exhausted_source_downcasts_to_error() {
    let db = Db::builder().max_attempts(1).build().unwrap();
    let e = db
        .update(|txn| {
            txn.put(b"k", b"mine")?;
            txn.db().put(b"k", b"theirs")?;
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(e, Error::RetriesExhausted { attempts: 1, .. }),
        "{e:?}"
    );
    let source = e.source().expect("a source");
    assert!(
        source.downcast_ref::<Box<Error>>().is_none(),
        "the source is the Box<Error> wrapper, not the conflict"
    );
    assert!(
        matches!(
            source.downcast_ref::<Error>(),
            Some(Error::Conflict {
                kind: ConflictKind::WriteWrite,
                ..
            })
        ),
        "RetriesExhausted's source() does not downcast to snapkv::Error"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn only_conflicts_are_retryable_and_messages_are_informative() {
    let db = small_db();

    let ww = real_conflict(&db, "k");
    assert!(
        matches!(&ww, Error::Conflict { kind: ConflictKind::WriteWrite, key, range: None } if &key[..] == b"k")
    );
    assert_eq!(ww.to_string(), "write-write conflict on key b\"k\"");

    // Read-write: a serializable transaction read a key that changed.
    let mut t = db.begin_with(Isolation::Serializable);
    let _ = t.get(b"x").unwrap();
    db.put(b"x", b"1").unwrap();
    t.put(b"y", b"1").unwrap();
    let rw = t.commit().unwrap_err();
    assert!(
        matches!(&rw, Error::Conflict { kind: ConflictKind::ReadWrite, key, .. } if &key[..] == b"x"),
        "{rw:?}"
    );
    assert!(
        rw.to_string()
            .starts_with("read-write conflict on key b\"x\""),
        "{rw}"
    );

    // Phantom: a key appeared in a scanned range; the error names the range.
    let mut t = db.begin_with(Isolation::Serializable);
    assert_eq!(t.scan_prefix(b"p/").count(), 0);
    db.put(b"p/1", b"1").unwrap();
    t.put(b"z", b"1").unwrap();
    let ph = t.commit().unwrap_err();
    match &ph {
        Error::Conflict {
            kind: ConflictKind::Phantom,
            key,
            range: Some(range),
        } => {
            assert_eq!(&key[..], b"p/1");
            assert_eq!(range.0, Bound::Included(Bytes::from_static(b"p/")));
        }
        other => panic!("expected a phantom conflict, got {other:?}"),
    }
    let msg = ph.to_string();
    assert!(
        msg.starts_with("phantom conflict on key b\"p/1\" in scanned range") && msg.contains("p/"),
        "{msg}"
    );

    let v = db.put(b"doc", b"1").unwrap();
    let pf = db.compare_and_swap(b"doc", None, Some(b"2")).unwrap_err();
    assert!(
        matches!(&pf, Error::PreconditionFailed { key, current: Some(c) } if &key[..] == b"doc" && *c == v)
    );
    assert_eq!(
        pf.to_string(),
        format!("precondition failed on key b\"doc\": current version is Some({v})")
    );

    let empty = db.put(b"", b"").unwrap_err();
    assert_eq!(empty.to_string(), "key is empty");
    let ktl = db.put(LONG_KEY, b"").unwrap_err();
    assert_eq!(
        ktl.to_string(),
        "key of 9 bytes exceeds the limit of 8 bytes"
    );
    let vtl = db.put(b"k", LONG_VALUE).unwrap_err();
    assert_eq!(
        vtl.to_string(),
        "value of 17 bytes exceeds the limit of 16 bytes"
    );
    let cfg = Db::builder().max_key_len(0).build().unwrap_err();
    let aborted = Error::abort("because");
    assert_eq!(
        aborted.to_string(),
        "transaction aborted by the caller: because"
    );
    let exhausted = Error::RetriesExhausted {
        attempts: 7,
        last: Box::new(real_conflict(&db, "q")),
    };

    for e in [&ww, &rw, &ph] {
        assert!(e.is_retryable(), "{e:?}");
        assert!(e.source().is_none());
    }
    for e in [&pf, &empty, &ktl, &vtl, &cfg, &aborted, &exhausted] {
        assert!(!e.is_retryable(), "{e:?} must not be retryable");
    }
    assert!(exhausted.source().is_some() && aborted.source().is_some());

    assert_eq!(ConflictKind::WriteWrite.to_string(), "write-write");
    assert_eq!(ConflictKind::ReadWrite.to_string(), "read-write");
    assert_eq!(ConflictKind::Phantom.to_string(), "phantom");
}

// ---------------------------------------------------------------------------------------------
// Handles and transactions

#[test]
fn clones_share_one_database() {
    let db = Db::default();
    let other = db.clone();
    other.put(b"k", b"v").unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    let from_thread = std::thread::spawn({
        let db = db.clone();
        move || db.put(b"t", b"1").unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(
        other.snapshot().get_versioned(b"t").unwrap().unwrap().1,
        from_thread
    );
    assert!(format!("{db:?}").contains("Db"));
    let txn = db.begin();
    assert_eq!(txn.db().get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(txn.snapshot().ts(), txn.snapshot_ts());
    assert!(format!("{txn:?}").contains("Transaction"));
}

#[test]
fn dropping_or_rolling_back_a_transaction_aborts_it() {
    let db = Db::new();
    db.put(b"x", b"0").unwrap();
    let before = db.stats();
    // Began before the aborted ones: an installed write to `x` or `y` would make it conflict.
    let mut observer = db.begin();
    {
        let mut txn = db.begin();
        txn.put(b"x", b"dropped").unwrap();
        txn.put(b"y", b"dropped").unwrap();
        assert_eq!(db.stats().live_snapshots, 2);
    }
    let mut txn = db.begin();
    txn.put(b"x", b"rolled back").unwrap();
    txn.delete(b"y").unwrap();
    txn.rollback();
    let after = db.stats();
    assert_eq!(after.visible_ts, before.visible_ts);
    assert_eq!(after.keys, before.keys);
    assert_eq!(after.live_snapshots, 1, "only the observer is live");
    assert_eq!(db.get(b"x").unwrap().as_deref(), Some(&b"0"[..]));
    assert_eq!(db.get(b"y").unwrap(), None);
    observer.put(b"x", b"1").unwrap();
    observer.put(b"y", b"1").unwrap();
    observer.commit().expect("no aborted write was installed");
    assert_eq!(db.stats().live_snapshots, 0);
}

#[test]
fn commit_timestamps_are_dense_and_increasing() {
    let db = Db::new();
    assert_eq!(db.snapshot().ts(), 0, "an empty database is at ts 0");
    let t1 = db.put(b"a", b"1").unwrap();
    assert_eq!(t1, 1, "timestamps start at 1");
    let t2 = db.delete(b"a").unwrap();
    let mut txn = db.begin();
    txn.put(b"b", b"1").unwrap();
    let t3 = txn.commit().unwrap();
    let t4 = db.compare_and_swap(b"c", None, Some(b"1")).unwrap();
    let t5 = db.compare_and_delete(b"c", Some(t4)).unwrap();
    assert_eq!([t1, t2, t3, t4, t5], [1, 2, 3, 4, 5], "one per commit");
    assert_eq!(db.snapshot().ts(), t5);
    assert_eq!(db.get_versioned(b"b").unwrap().unwrap().1, t3);

    // A read-only commit returns its snapshot ts and takes no timestamp.
    let ro = db.begin();
    let _ = ro.get(b"b").unwrap();
    assert_eq!(ro.commit().unwrap(), t5);
    assert_eq!(db.put(b"d", b"1").unwrap(), t5 + 1);

    // Concurrent auto-commits get unique timestamps, together exactly the next ones.
    let base = db.snapshot().ts();
    let per_thread = 500u64;
    let mut all: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let db = &db;
                s.spawn(move || {
                    (0..per_thread)
                        .map(|i| {
                            let ts = db.put(format!("t{t}/{i:04}"), i.to_be_bytes()).unwrap();
                            assert!(db.snapshot().ts() >= ts, "own commit not visible");
                            ts
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    all.sort_unstable();
    let want: Vec<u64> = (base + 1..=base + 4 * per_thread).collect();
    assert_eq!(all, want);
    assert_eq!(db.snapshot().ts(), base + 4 * per_thread);
}

#[test]
fn a_returned_commit_is_visible_to_later_snapshots_on_other_threads() {
    let db = Db::new();
    let (tx, rx) = mpsc::channel();
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for i in 0..2000u32 {
                let ts = db.put(b"rt", i.to_be_bytes()).unwrap();
                tx.send((ts, i)).unwrap();
            }
        })
    };
    let mut last_seen = 0;
    for (ts, i) in rx {
        let snap = db.snapshot();
        assert!(snap.ts() >= ts, "snapshot {} before commit {ts}", snap.ts());
        let (v, version) = snap.get_versioned(b"rt").unwrap().expect("committed");
        let seen = u32::from_be_bytes(v[..].try_into().unwrap());
        assert!(
            seen >= i && seen >= last_seen,
            "saw {seen} after commit of {i}"
        );
        assert!(version >= ts);
        last_seen = seen;
        let now = u32::from_be_bytes(db.get(b"rt").unwrap().unwrap()[..].try_into().unwrap());
        assert!(now >= seen, "Db::get went back in time: {now} < {seen}");
    }
    writer.join().unwrap();
}

#[test]
fn is_read_only_tracks_buffered_writes() {
    let db = small_db();
    db.put(b"k", b"v").unwrap();
    for iso in [Isolation::Snapshot, Isolation::Serializable] {
        let mut txn = db.begin_with(iso);
        assert!(txn.is_read_only());
        let _ = txn.get(b"k").unwrap();
        let _ = txn.range(..).count();
        let _ = txn.scan_prefix(b"k").rev().count();
        assert!(txn.is_read_only(), "reads are not writes");
        let _ = txn.put(LONG_KEY, b"v");
        let _ = txn.compare_and_swap(b"k", None, Some(b"x"));
        assert!(txn.is_read_only(), "rejected writes are not writes");
        // Read-only transactions never conflict, even when what they read changed.
        db.put(b"k", b"changed").unwrap();
        let ts = txn.snapshot_ts();
        let mut w = db.begin_with(iso);
        w.delete(b"absent").unwrap();
        assert!(
            !w.is_read_only(),
            "a delete, even of an absent key, is a write"
        );
        let mut w2 = db.begin_with(iso);
        w2.put(b"k2", b"v").unwrap();
        assert!(!w2.is_read_only());
        assert_eq!(txn.commit().unwrap(), ts);
        assert!(w.commit().unwrap() > ts);
        w2.rollback();
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

#[test]
fn a_snapshot_keeps_its_values_after_later_writes_deletes_and_collection() {
    let db = Db::new();
    db.put(b"a", b"a0").unwrap();
    db.put(b"b", b"b0").unwrap();
    db.put(b"c", b"c0").unwrap();
    let snap = db.snapshot();
    let before_insert = snap.ts();
    db.put(b"a", b"a1").unwrap();
    db.delete(b"b").unwrap();
    db.put(b"d", b"d1").unwrap();
    for i in 0..100u32 {
        db.put(b"c", i.to_be_bytes()).unwrap();
    }
    db.delete(b"c").unwrap();
    db.collect_garbage();
    db.delete(b"a").unwrap();
    db.collect_garbage();

    let expect = [
        (b"a".to_vec(), b"a0".to_vec()),
        (b"b".to_vec(), b"b0".to_vec()),
        (b"c".to_vec(), b"c0".to_vec()),
    ];
    assert_eq!(pairs(snap.iter()), expect);
    let mut rev = pairs(snap.iter().rev());
    rev.reverse();
    assert_eq!(rev, expect);
    assert_eq!(snap.get(b"b").unwrap().as_deref(), Some(&b"b0"[..]));
    assert_eq!(snap.get(b"d").unwrap(), None, "inserted after the snapshot");
    assert_eq!(
        snap.ts(),
        before_insert,
        "a snapshot's timestamp never moves"
    );
    assert_eq!(
        keys(db.snapshot().iter()),
        strs(&["d"]),
        "the present moved on"
    );
    // Readable from other threads while writers continue.
    std::thread::scope(|s| {
        let (snap, expect) = (&snap, &expect);
        for _ in 0..2 {
            s.spawn(move || {
                for _ in 0..200 {
                    assert_eq!(pairs(snap.iter()), *expect);
                    assert_eq!(snap.get(b"c").unwrap().as_deref(), Some(&b"c0"[..]));
                }
            });
        }
        s.spawn(|| {
            for i in 0..200u32 {
                db.put(b"b", i.to_be_bytes()).unwrap();
                db.delete(b"c").unwrap();
                db.put(b"c", i.to_be_bytes()).unwrap();
                if i % 50 == 0 {
                    db.collect_garbage();
                }
            }
        });
    });
    assert_eq!(pairs(snap.iter()), expect);
}

/// Snapshots at many timestamps of one key's history, dropped in random order with collection
/// in between: every live snapshot keeps seeing exactly its version (the collector unlinks
/// versions from the middle of chains).
#[test]
fn a_ladder_of_snapshots_survives_collection() {
    let db = Db::new();
    let mut rng = fastrand::Rng::with_seed(7);
    // (snapshot, the value of "k" it must see)
    let mut ladder: Vec<(Snapshot, Option<u32>)> = Vec::new();
    let mut current = None;
    for i in 0..400u32 {
        if rng.u8(0..4) == 0 {
            db.delete(b"k").unwrap();
            current = None;
        } else {
            db.put(b"k", i.to_be_bytes()).unwrap();
            current = Some(i);
        }
        if rng.bool() {
            ladder.push((db.snapshot(), current));
        }
        if rng.u8(0..8) == 0 && !ladder.is_empty() {
            ladder.swap_remove(rng.usize(0..ladder.len()));
        }
        if i % 16 == 0 {
            db.collect_garbage();
        }
        let decode = |v: Bytes| u32::from_be_bytes(v[..].try_into().unwrap());
        for (snap, want) in &ladder {
            assert_eq!(
                snap.get(b"k").unwrap().map(decode),
                *want,
                "snapshot at ts {}",
                snap.ts()
            );
            assert_eq!(snap.iter().count(), usize::from(want.is_some()));
        }
    }
    let versions_with_ladder = db.stats().versions;
    drop(ladder);
    db.collect_garbage();
    let stats = db.stats();
    assert_eq!(stats.live_snapshots, 0);
    assert!(
        stats.versions <= 1 && stats.versions < versions_with_ladder.max(2),
        "old versions are kept without snapshots: {stats:?}"
    );
    assert_eq!(
        db.get(b"k").unwrap().map(|v| v.len()),
        current.map(|_| 4),
        "the newest version survives"
    );
}

// ---------------------------------------------------------------------------------------------
// Scans

/// Whether `k` lies in the bounds.
fn in_range(k: &[u8], (lo, hi): &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> bool {
    let above = match lo {
        Bound::Included(s) => k >= s.as_slice(),
        Bound::Excluded(s) => k > s.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match hi {
        Bound::Included(e) => k <= e.as_slice(),
        Bound::Excluded(e) => k < e.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

fn borrow_bounds(r: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> (Bound<&[u8]>, Bound<&[u8]>) {
    fn b(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Included(k) => Bound::Included(k.as_slice()),
            Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    (b(&r.0), b(&r.1))
}

#[test]
fn range_accepts_every_form_of_bounds() {
    let db = Db::new();
    for k in ["a", "b", "c", "d", "e"] {
        db.put(k, k.to_uppercase()).unwrap();
    }
    let snap = db.snapshot();
    let txn = db.begin();
    let (b, bb, c, cc, d) = (
        b"b".as_slice(),
        b"bb".as_slice(),
        b"c".as_slice(),
        b"cc".as_slice(),
        b"d".as_slice(),
    );
    use Bound::{Excluded, Included, Unbounded};
    macro_rules! check {
        ($range:expr, $want:expr) => {{
            let want = strs(&$want);
            let mut rev = want.clone();
            rev.reverse();
            assert_eq!(
                keys(snap.range($range)),
                want,
                "snapshot {}",
                stringify!($range)
            );
            assert_eq!(
                keys(snap.range($range).rev()),
                rev,
                "snapshot rev {}",
                stringify!($range)
            );
            assert_eq!(keys(txn.range($range)), want, "txn {}", stringify!($range));
            assert_eq!(
                keys(txn.range($range).rev()),
                rev,
                "txn rev {}",
                stringify!($range)
            );
            assert_eq!(
                lent_keys(&snap, &txn, $range),
                [want.clone(), want],
                "lending {}",
                stringify!($range)
            );
        }};
    }
    /// The keys the lending scans of `snap` and `txn` see in `range`.
    fn lent_keys(
        snap: &Snapshot,
        txn: &Transaction,
        range: impl snapkv::KeyBounds + Clone,
    ) -> [Vec<Vec<u8>>; 2] {
        let mut out = [Vec::new(), Vec::new()];
        let [a, b] = &mut out;
        snap.scan_with(range.clone(), |k, _| {
            a.push(k.to_vec());
            ControlFlow::Continue(())
        });
        txn.scan_with(range, |k, _| {
            b.push(k.to_vec());
            ControlFlow::Continue(())
        });
        out
    }
    check!(.., ["a", "b", "c", "d", "e"]);
    check!(b.., ["b", "c", "d", "e"]);
    check!(..d, ["a", "b", "c"]);
    check!(..=d, ["a", "b", "c", "d"]);
    check!(b..d, ["b", "c"]);
    check!(b..=d, ["b", "c", "d"]);
    check!(bb..cc, ["c"]);
    check!(bb..=cc, ["c"]);
    check!((Excluded(b), Included(d)), ["c", "d"]);
    check!((Excluded(b), Excluded(d)), ["c"]);
    check!((Excluded(b), Unbounded), ["c", "d", "e"]);
    check!((Included(b), Unbounded), ["b", "c", "d", "e"]);
    check!((Unbounded, Excluded(c)), ["a", "b"]);
    check!((Unbounded::<&[u8]>, Unbounded), ["a", "b", "c", "d", "e"]);
    // Empty and inverted ranges yield nothing (no panic).
    check!(c..c, []);
    check!(d..b, []);
    #[allow(clippy::reversed_empty_ranges)]
    {
        check!(d..=b, []);
    }
    check!((Excluded(c), Excluded(c)), []);
    check!((Excluded(c), Included(c)), []);
    check!(c..=c, ["c"]);
    check!(b"f".as_slice().., []);
    check!(..b"a".as_slice(), []);
    // Any key type that is `AsRef<[u8]>`: literals, strings, vectors, `Bytes`, arrays.
    check!(b"b"..b"d", ["b", "c"]);
    check!(b"bb"..=b"cc", ["c"]);
    check!("b".."d", ["b", "c"]);
    check!(String::from("c").., ["c", "d", "e"]);
    check!(..=b"c".to_vec(), ["a", "b", "c"]);
    check!(Bytes::from_static(b"b")..Bytes::from_static(b"c"), ["b"]);
    check!([b'b']..[b'd'], ["b", "c"]);
    check!((Excluded("b"), Included("d")), ["c", "d"]);
    check!((Excluded(String::from("d")), Unbounded), ["e"]);
    assert_eq!(keys(snap.iter()), keys(snap.range(..)));
    assert_eq!(
        pairs(snap.range(c..=c)),
        [(b"c".to_vec(), b"C".to_vec())],
        "values come with their keys"
    );
}

#[test]
fn scan_prefix_handles_prefixes_ending_in_0xff() {
    let db = Db::new();
    let stored: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0x61],
        vec![0x61, 0xfe, 0xff],
        vec![0x61, 0xff],
        vec![0x61, 0xff, 0x00],
        vec![0x61, 0xff, 0xff],
        vec![0x61, 0xff, 0xff, 0xff, 0x01],
        vec![0x62],
        vec![0x62, 0x00],
        vec![0xfe, 0xff],
        vec![0xff],
        vec![0xff, 0x00],
        vec![0xff, 0xff],
        vec![0xff, 0xff, 0xff],
        vec![0xff, 0xff, 0xff, 0xff],
    ];
    for k in &stored {
        db.put(k, k).unwrap();
    }
    let snap = db.snapshot();
    let mut txn = db.begin();
    // Own writes under 0xff prefixes: an insert, a delete, an overwrite.
    txn.put([0xff, 0xff, 0x05], b"own").unwrap();
    txn.put([0x61, 0xff, 0xff, 0xff, 0xff], b"own").unwrap();
    txn.delete([0xff, 0x00]).unwrap();
    txn.put([0xff], b"mine").unwrap();
    let mut txn_view: BTreeMap<Vec<u8>, Vec<u8>> =
        stored.iter().map(|k| (k.clone(), k.clone())).collect();
    txn_view.insert(vec![0xff, 0xff, 0x05], b"own".to_vec());
    txn_view.insert(vec![0x61, 0xff, 0xff, 0xff, 0xff], b"own".to_vec());
    txn_view.remove(&vec![0xff, 0x00]);
    txn_view.insert(vec![0xff], b"mine".to_vec());

    let prefixes: [&[u8]; 10] = [
        &[],
        &[0x61],
        &[0x61, 0xff],
        &[0x61, 0xff, 0xff],
        &[0x61, 0xff, 0xff, 0xff],
        &[0xfe],
        &[0xff],
        &[0xff, 0xff],
        &[0xff, 0xff, 0xff],
        &[0xff, 0xff, 0xff, 0xff, 0xff],
    ];
    for p in prefixes {
        let want: Vec<Vec<u8>> = stored
            .iter()
            .filter(|k| k.starts_with(p))
            .cloned()
            .collect();
        let mut rev = want.clone();
        rev.reverse();
        assert_eq!(keys(snap.scan_prefix(p)), want, "snapshot prefix {p:x?}");
        assert_eq!(
            keys(snap.scan_prefix(p).rev()),
            rev,
            "snapshot rev prefix {p:x?}"
        );
        let want: Vec<(Vec<u8>, Vec<u8>)> = txn_view
            .iter()
            .filter(|(k, _)| k.starts_with(p))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut rev = want.clone();
        rev.reverse();
        assert_eq!(pairs(txn.scan_prefix(p)), want, "txn prefix {p:x?}");
        assert_eq!(
            pairs(txn.scan_prefix(p).rev()),
            rev,
            "txn rev prefix {p:x?}"
        );
    }
    // Spot checks of the interesting ones.
    assert_eq!(snap.scan_prefix([0x61, 0xff]).count(), 4);
    assert_eq!(snap.scan_prefix([0xff]).count(), 5);
    assert_eq!(snap.scan_prefix([0xff, 0xff]).count(), 3);
    assert_eq!(txn.scan_prefix([0xff, 0xff]).count(), 4);
    assert_eq!(snap.scan_prefix(b"").count(), stored.len());
}

/// Random committed states, own writes, bounds and prefixes, iterated with a random mix of
/// `next` and `next_back`, against a model; both snapshot and transaction iterators.
#[test]
fn limited_lending_scans_take_the_first_live_pairs() {
    // Enough keys that a scan renews its pin (every 128 entries) and crosses rebuilt runs and
    // fresh delta keys; a third of them deleted, which a limit does not count.
    let db = Db::new();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut rng = fastrand::Rng::with_seed(7);
    let key = |i: u32| format!("key{i:05}").into_bytes();
    for round in 0..6 {
        for _ in 0..400 {
            let i = rng.u32(0..2_000);
            if rng.u8(0..3) == 0 {
                db.delete(key(i)).unwrap();
                model.remove(&key(i));
            } else {
                let v = format!("{round}-{i}").into_bytes();
                db.put(key(i), &v).unwrap();
                model.insert(key(i), v);
            }
        }
        let snap = db.snapshot();
        for _ in 0..40 {
            let lo = key(rng.u32(0..2_100));
            let limit = match rng.u8(0..4) {
                0 => rng.usize(0..3),
                1 => rng.usize(0..2_000),
                _ => rng.usize(0..300),
            };
            let mut got = Vec::new();
            let n = snap.scan_with_limit(lo.as_slice().., limit, |k, v| {
                got.push((k.to_vec(), v.to_vec()));
                ControlFlow::Continue(())
            });
            let want: Vec<_> = model
                .range(lo.clone()..)
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(n, want.len(), "round {round} from {lo:?} limit {limit}");
            assert_eq!(got, want, "round {round} from {lo:?} limit {limit}");
            // `f` breaking first still ends the scan there.
            let stop = rng.usize(0..limit.max(1) + 1);
            let mut seen = 0;
            let n = snap.scan_with_limit(lo.as_slice().., limit, |_, _| {
                seen += 1;
                if seen >= stop {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            assert_eq!(n, want.len().min(stop.max(1)).min(limit), "stop {stop}");
        }
    }
}

#[test]
fn scans_match_a_model_from_both_ends() {
    let seed = std::env::var("SNAPKV_API_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("SNAPKV_API_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let alphabet = [0x00u8, 0x01, 0x61, 0x62, 0xfe, 0xff];
    let key = |rng: &mut fastrand::Rng, min: usize| -> Vec<u8> {
        (0..rng.usize(min..=3))
            .map(|_| alphabet[rng.usize(..alphabet.len())])
            .collect()
    };
    let bound = |rng: &mut fastrand::Rng| -> Bound<Vec<u8>> {
        match rng.u8(0..3) {
            0 => Bound::Unbounded,
            1 => Bound::Included(key(rng, 0)),
            _ => Bound::Excluded(key(rng, 0)),
        }
    };
    /// Drains `it` and `model` together from random ends.
    fn drain<I: DoubleEndedIterator<Item = (Bytes, Bytes)>>(
        rng: &mut fastrand::Rng,
        mut it: I,
        mut model: VecDeque<(Vec<u8>, Vec<u8>)>,
        what: &dyn Fn() -> String,
    ) {
        loop {
            let front = rng.bool();
            let (got, want) = if front {
                (it.next(), model.pop_front())
            } else {
                (it.next_back(), model.pop_back())
            };
            let got = got.map(|(k, v)| (k.to_vec(), v.to_vec()));
            assert_eq!(
                got,
                want,
                "{} from the {}",
                what(),
                if front { "front" } else { "back" }
            );
            if want.is_none() {
                assert_eq!(it.next(), None, "{}: resumed after the end", what());
                assert_eq!(it.next_back(), None, "{}: resumed after the end", what());
                return;
            }
        }
    }

    for case in 0..300 {
        let db = Db::new();
        let mut committed: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for _ in 0..rng.usize(0..25) {
            let k = key(&mut rng, 1);
            if rng.u8(0..4) == 0 {
                db.delete(&k).unwrap();
                committed.remove(&k);
            } else {
                let v = vec![rng.u8(..)];
                db.put(&k, &v).unwrap();
                committed.insert(k, v);
            }
        }
        if rng.bool() {
            db.collect_garbage();
        }
        let iso = if rng.bool() {
            Isolation::Snapshot
        } else {
            Isolation::Serializable
        };
        let mut txn = db.begin_with(iso);
        let mut own = committed.clone();
        for _ in 0..rng.usize(0..10) {
            let k = if rng.bool() && !committed.is_empty() {
                committed
                    .keys()
                    .nth(rng.usize(..committed.len()))
                    .unwrap()
                    .clone()
            } else {
                key(&mut rng, 1)
            };
            if rng.bool() {
                txn.delete(&k).unwrap();
                own.remove(&k);
            } else {
                let v = vec![rng.u8(..), 0xee];
                txn.put(&k, &v).unwrap();
                own.insert(k, v);
            }
        }
        // Writes after the snapshot are invisible to both.
        db.put(key(&mut rng, 1), b"later").unwrap();

        let snap = txn.snapshot();
        let range = (bound(&mut rng), bound(&mut rng));
        let select = |m: &BTreeMap<Vec<u8>, Vec<u8>>, f: &dyn Fn(&[u8]) -> bool| {
            m.iter()
                .filter(|(k, _)| f(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<VecDeque<_>>()
        };
        let in_r = |k: &[u8]| in_range(k, &range);
        let what = || format!("case {case} (seed {seed}) range {range:x?}");
        drain(
            &mut rng,
            snap.range(borrow_bounds(&range)),
            select(&committed, &in_r),
            &|| format!("snapshot {}", what()),
        );
        drain(
            &mut rng,
            txn.range(borrow_bounds(&range)),
            select(&own, &in_r),
            &|| format!("txn {}", what()),
        );
        // Lending scans, with and without a limit.
        let limit = match rng.u8(0..4) {
            0 => usize::MAX,
            _ => rng.usize(0..committed.len() + 2),
        };
        let mut lent = Vec::new();
        let n = snap.scan_with_limit(borrow_bounds(&range), limit, |k, v| {
            lent.push((k.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        });
        let want: Vec<_> = select(&committed, &in_r).into_iter().take(limit).collect();
        assert_eq!((n, &lent), (want.len(), &want), "limit {limit} {}", what());
        let mut all = Vec::new();
        snap.scan_with(borrow_bounds(&range), |k, v| {
            all.push((k.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        });
        assert_eq!(all, Vec::from(select(&committed, &in_r)), "{}", what());

        let prefix = key(&mut rng, 0);
        let in_p = |k: &[u8]| k.starts_with(&prefix);
        let what = || format!("case {case} (seed {seed}) prefix {prefix:x?}");
        drain(
            &mut rng,
            snap.scan_prefix(&prefix),
            select(&committed, &in_p),
            &|| format!("snapshot {}", what()),
        );
        drain(
            &mut rng,
            txn.scan_prefix(&prefix),
            select(&own, &in_p),
            &|| format!("txn {}", what()),
        );
    }
}

#[test]
fn transaction_scans_read_their_own_writes() {
    let db = Db::new();
    for k in ["k1", "k2", "k3", "k5", "k7", "z"] {
        db.put(k, "old").unwrap();
    }
    for iso in [Isolation::Snapshot, Isolation::Serializable] {
        let mut txn = db.begin_with(iso);
        txn.delete("k2").unwrap(); // delete of an existing key: hidden
        txn.delete("k4").unwrap(); // delete of an absent key: nothing
        txn.put("k4", "new").unwrap(); // ...then a put: it wins
        txn.put("k5", "tmp").unwrap(); // put then delete of an existing key: hidden
        txn.delete("k5").unwrap();
        txn.put("k6", "new").unwrap(); // a pure insert
        txn.put("k1", "mine").unwrap(); // an overwrite
        txn.put("a", "outside").unwrap(); // outside the scanned prefix
        let want = [
            (b"k1".to_vec(), b"mine".to_vec()),
            (b"k3".to_vec(), b"old".to_vec()),
            (b"k4".to_vec(), b"new".to_vec()),
            (b"k6".to_vec(), b"new".to_vec()),
            (b"k7".to_vec(), b"old".to_vec()),
        ];
        assert_eq!(pairs(txn.scan_prefix("k")), want);
        let mut rev = want.to_vec();
        rev.reverse();
        assert_eq!(pairs(txn.scan_prefix("k").rev()), rev);
        assert_eq!(
            keys(txn.range(b"k2".as_slice()..=b"k5".as_slice())),
            strs(&["k3", "k4"])
        );
        assert_eq!(
            keys(txn.range(..).rev()),
            strs(&["z", "k7", "k6", "k4", "k3", "k1", "a"])
        );
        assert_eq!(txn.get("k2").unwrap(), None);
        assert_eq!(txn.get("k5").unwrap(), None);
        assert_eq!(txn.get("k4").unwrap().as_deref(), Some(&b"new"[..]));
        // The transaction's snapshot ignores its own writes; other readers see nothing yet.
        assert_eq!(
            txn.snapshot().get("k2").unwrap().as_deref(),
            Some(&b"old"[..])
        );
        assert_eq!(txn.snapshot().scan_prefix("k").count(), 5);
        assert_eq!(db.get("k6").unwrap(), None);
        // Deleting everything in a range empties the scan.
        let mut wipe = db.begin_with(iso);
        let all: Vec<Bytes> = wipe.scan_prefix("k").map(|(k, _)| k).collect();
        for k in &all {
            wipe.delete(k).unwrap();
        }
        assert_eq!(wipe.scan_prefix("k").count(), 0);
        assert_eq!(wipe.scan_prefix("k").next_back(), None);
        assert_eq!(keys(wipe.range(..)), strs(&["z"]));
        wipe.rollback();
        txn.rollback();
    }
}

#[test]
fn transaction_lending_scans_merge_their_own_writes_like_the_iterator() {
    let mut rng = fastrand::Rng::with_seed(23);
    let key = |i: u8| format!("k{i:02}");
    for round in 0..200 {
        let db = Db::new();
        for i in 0..40 {
            if rng.bool() {
                db.put(key(i), format!("old{i}")).unwrap();
            }
        }
        let iso = if round % 2 == 0 {
            Isolation::Snapshot
        } else {
            Isolation::Serializable
        };
        let mut txn = db.begin_with(iso);
        for _ in 0..rng.usize(0..12) {
            let i = rng.u8(0..40);
            if rng.bool() {
                txn.put(key(i), format!("new{i}")).unwrap();
            } else {
                txn.delete(key(i)).unwrap();
            }
        }
        let (lo, hi) = (key(rng.u8(0..40)), key(rng.u8(0..41)));
        let range = (Bound::Included(lo.as_str()), Bound::Excluded(hi.as_str()));
        let want = pairs(txn.range(range));
        for limit in [0, 1, 2, 5, usize::MAX] {
            let mut got = Vec::new();
            let n = txn.scan_with_limit(range, limit, |k, v| {
                got.push((k.to_vec(), v.to_vec()));
                ControlFlow::Continue(())
            });
            let expected = &want[..want.len().min(limit)];
            assert_eq!((n, &got[..]), (expected.len(), expected), "limit {limit}");
        }
        // Stopping early: exactly as many as `f` took.
        for stop in 1..4 {
            let mut got = Vec::new();
            let n = txn.scan_with(range, |k, v| {
                got.push((k.to_vec(), v.to_vec()));
                if got.len() == stop {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            let expected = &want[..want.len().min(stop)];
            assert_eq!((n, &got[..]), (expected.len(), expected), "stop {stop}");
        }
    }
}

#[test]
fn a_serializable_lending_scan_enters_the_read_set() {
    let db = Db::new();
    db.put("item/a", "1").unwrap();
    for (iso, conflicts) in [
        (Isolation::Snapshot, false),
        (Isolation::Serializable, true),
    ] {
        let mut txn = db.begin_with(iso);
        // The scan stops at its first pair, but the whole requested range is tracked.
        let seen = txn.scan_with_limit("item/".."item0", 1, |_, _| ControlFlow::Continue(()));
        assert_eq!(seen, 1);
        txn.put("summary", "1 item").unwrap();
        db.put(format!("item/{iso:?}"), "inserted").unwrap();
        let r = txn.commit();
        assert_eq!(r.is_err(), conflicts, "{iso:?}: {r:?}");
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    Error::Conflict {
                        kind: ConflictKind::Phantom,
                        ..
                    }
                ),
                "{e:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Versions and conditional writes

#[test]
fn versions_and_conditional_writes() {
    let db = Db::new();
    assert_eq!(db.get_versioned(b"doc").unwrap(), None);
    let visible = db.stats().visible_ts;
    match db.compare_and_swap(b"doc", Some(1), Some(b"x")) {
        Err(Error::PreconditionFailed { key, current: None }) => assert_eq!(&key[..], b"doc"),
        other => panic!("expected PreconditionFailed {{ current: None }}, got {other:?}"),
    }
    assert_eq!(
        db.stats().visible_ts,
        visible,
        "a failed precondition committed"
    );

    // Create if absent.
    let v1 = db.compare_and_swap(b"doc", None, Some(b"draft")).unwrap();
    assert_eq!(
        db.get_versioned(b"doc").unwrap(),
        Some((Bytes::from_static(b"draft"), v1))
    );
    // Not absent any more: the error carries the current version.
    assert!(matches!(
        db.compare_and_swap(b"doc", None, Some(b"again")),
        Err(Error::PreconditionFailed { current: Some(c), .. }) if c == v1
    ));
    let snap = db.snapshot();
    let v2 = db
        .compare_and_swap(b"doc", Some(v1), Some(b"final"))
        .unwrap();
    assert!(v2 > v1);
    // A plain put changes the version too.
    let v3 = db.put(b"doc", b"edited").unwrap();
    assert!(matches!(
        db.compare_and_swap(b"doc", Some(v2), Some(b"lost update")),
        Err(Error::PreconditionFailed { current: Some(c), .. }) if c == v3
    ));
    assert_eq!(db.get(b"doc").unwrap().as_deref(), Some(&b"edited"[..]));
    // The snapshot still sees the version it was taken at.
    assert_eq!(
        snap.get_versioned(b"doc").unwrap(),
        Some((Bytes::from_static(b"draft"), v1))
    );

    // compare_and_delete: mismatch fails with the current version, match deletes.
    assert!(matches!(
        db.compare_and_delete(b"doc", Some(v1)),
        Err(Error::PreconditionFailed { current: Some(c), .. }) if c == v3
    ));
    let v4 = db.compare_and_delete(b"doc", Some(v3)).unwrap();
    assert!(v4 > v3);
    assert_eq!(db.get_versioned(b"doc").unwrap(), None);
    // A deleted key counts as absent.
    assert!(matches!(
        db.compare_and_swap(b"doc", Some(v3), Some(b"zombie")),
        Err(Error::PreconditionFailed { current: None, .. })
    ));
    assert!(matches!(
        db.compare_and_delete(b"doc", Some(v4)),
        Err(Error::PreconditionFailed { current: None, .. })
    ));
    let v5 = db.compare_and_swap(b"doc", None, Some(b"reborn")).unwrap();
    assert_eq!(db.get_versioned(b"doc").unwrap().unwrap().1, v5);
    // compare_and_swap with `None` as the new value deletes.
    db.compare_and_swap(b"doc", Some(v5), None::<&[u8]>)
        .unwrap();
    assert_eq!(db.get(b"doc").unwrap(), None);
    // Deleting an absent key when it is expected absent succeeds and leaves it absent.
    db.compare_and_delete(b"never", None).unwrap();
    assert_eq!(db.get(b"never").unwrap(), None);
}

#[test]
fn conditional_writes_in_transactions() {
    for iso in [Isolation::Snapshot, Isolation::Serializable] {
        let db = Db::new();
        let v = db.put(b"row", b"1").unwrap();

        let mut txn = db.begin_with(iso);
        // Own earlier writes do not change the version compared against.
        txn.put(b"row", b"own").unwrap();
        assert!(matches!(
            txn.compare_and_swap(b"row", None, Some(b"x")),
            Err(Error::PreconditionFailed { current: Some(c), .. }) if c == v
        ));
        assert_eq!(txn.get(b"row").unwrap().as_deref(), Some(&b"own"[..]));
        txn.compare_and_swap(b"row", Some(v), Some(b"2")).unwrap();
        assert_eq!(txn.get(b"row").unwrap().as_deref(), Some(&b"2"[..]));
        txn.compare_and_swap(b"new", None, Some(b"n")).unwrap();
        let ts = txn.commit().unwrap();
        assert_eq!(
            db.get_versioned(b"row").unwrap(),
            Some((Bytes::from_static(b"2"), ts))
        );
        assert_eq!(db.get_versioned(b"new").unwrap().unwrap().1, ts);

        // The check is against the snapshot; a version that changes after it is caught at
        // commit as a conflict (first committer wins), and nothing is installed.
        let mut txn = db.begin_with(iso);
        txn.compare_and_swap(b"row", Some(ts), Some(b"3")).unwrap();
        // The transactional compare-and-delete: `compare_and_swap(key, expected, None)`.
        txn.compare_and_swap(b"absent-row", None, None::<&[u8]>)
            .unwrap();
        assert_eq!(txn.get(b"absent-row").unwrap(), None);
        txn.put(b"side", b"effect").unwrap();
        let theirs = db.put(b"row", b"concurrent").unwrap();
        match txn.commit() {
            Err(Error::Conflict {
                kind: ConflictKind::WriteWrite,
                key,
                ..
            }) => assert_eq!(&key[..], b"row"),
            other => panic!("expected a write-write conflict, got {other:?}"),
        }
        assert_eq!(
            db.get_versioned(b"row").unwrap(),
            Some((Bytes::from_static(b"concurrent"), theirs))
        );
        assert_eq!(db.get(b"side").unwrap(), None);
    }
}

#[test]
fn concurrent_compare_and_swap_has_exactly_one_winner() {
    for round in 0..50 {
        let db = Db::new();
        let v0 = db.put(b"k", b"start").unwrap();
        let threads = 4;
        let barrier = Barrier::new(threads);
        let results: Vec<snapkv::Result<u64>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (db, barrier) = (&db, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        db.compare_and_swap(b"k", Some(v0), Some(format!("winner {t}")))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<(usize, u64)> = results
            .iter()
            .enumerate()
            .filter_map(|(t, r)| r.as_ref().ok().map(|&ts| (t, ts)))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let (t, ts) = winners[0];
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, Error::PreconditionFailed { current: Some(c), .. } if *c == ts),
                    "round {round}: a loser must see the winner's version {ts}: {e:?}"
                );
            }
        }
        assert_eq!(
            db.get_versioned(b"k").unwrap(),
            Some((Bytes::from(format!("winner {t}")), ts))
        );
    }
}

#[test]
fn untracked_reads_are_not_validated() {
    let db = Db::new();
    db.put(b"hint", b"1").unwrap();
    // A serializable transaction whose only read of `hint` is untracked commits although
    // `hint` changed; the same with a tracked read conflicts.
    let mut t = db.begin_with(Isolation::Serializable);
    assert_eq!(
        t.get_untracked(b"hint").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        t.snapshot().get(b"hint").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    db.put(b"hint", b"2").unwrap();
    t.put(b"out", b"x").unwrap();
    t.commit().expect("untracked reads are not validated");

    let mut t = db.begin_with(Isolation::Serializable);
    let _ = t.get(b"hint").unwrap();
    db.put(b"hint", b"3").unwrap();
    t.put(b"out", b"y").unwrap();
    assert!(matches!(
        t.commit(),
        Err(Error::Conflict {
            kind: ConflictKind::ReadWrite,
            ..
        })
    ));
    assert_eq!(db.get(b"out").unwrap().as_deref(), Some(&b"x"[..]));
}
