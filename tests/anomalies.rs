//! The isolation anomaly matrix, Hermitage style.
//!
//! Every anomaly is one scripted, deterministic interleaving of several open transactions on
//! one thread (plus a few threaded tests where concurrency is the point), and every one runs
//! under both levels: `both_levels!` turns `fn anomaly(iso: Isolation)` into the tests
//! `anomaly::snapshot` and `anomaly::serializable`. Each test asserts what every read returns
//! and which commit fails with which [`ConflictKind`] on which key (and, for a scan, which
//! range), so a store that let the anomaly through would fail it.
//!
//! Transactions are optimistic: where Hermitage's PostgreSQL blocks a writer, here the writer
//! proceeds and the loser is told at commit (first committer wins). Serializable validation is
//! backward validation against commit-timestamp order, so it may abort a transaction that a
//! precise SSI would let through (noted where a test shows it).
//!
//! Notation: `T1 r(x)` read, `w(x)` write, `scan(p/)` prefix scan, `c` commit, `a` rollback.
//!
//! | anomaly | Snapshot | Serializable | test |
//! |---|---|---|---|
//! | G0 dirty write | prevented (WriteWrite) | prevented (WriteWrite) | `g0_dirty_write` |
//! | G1a aborted read | prevented | prevented | `g1a_aborted_read`, `g1a_failed_commit_leaves_no_trace` |
//! | G1b intermediate read | prevented | prevented | `g1b_intermediate_read` |
//! | G1c circular information flow | prevented (both commit, neither sees the other) | prevented (second committer aborts, ReadWrite) | `g1c_circular_information_flow` |
//! | OTV observed transaction vanishes | prevented | prevented | `otv_observed_transaction_vanishes` |
//! | PMP predicate many preceders (read predicate, prefix scan) | prevented | prevented (a later write by the scanner aborts, Phantom) | `pmp_predicate_many_preceders` |
//! | PMP for write predicates | prevented (WriteWrite) | prevented (WriteWrite) | `pmp_write_predicate` |
//! | P4 lost update | prevented (WriteWrite) | prevented (WriteWrite) | `p4_lost_update`, `p4_lost_update_compare_and_swap` |
//! | G-single read skew | prevented | prevented | `g_single_read_skew`, `g_single_read_skew_predicate`, `g_single_write_on_skewed_read` |
//! | G2-item write skew | **allowed** (invariant breaks) | prevented (ReadWrite) | `g2_item_write_skew`, `write_skew_invariant` |
//! | G2 anti-dependency cycle over predicates | **allowed** | prevented (Phantom, range reported) | `g2_predicate_same_prefix`, `g2_predicate_cross_prefix`, `phantom_invariant` |
//! | read-only transaction anomaly (Fekete, O'Neil, O'Neil) | **allowed** | prevented: an updater aborts, the read-only transaction commits | `read_only_transaction_anomaly`, `read_only_transaction_anomaly_batch` |
//! | long fork | prevented | prevented | `long_fork_scripted`, `long_fork_concurrent` |
//! | "insert if no key with prefix P exists" race (unique index) | **allowed** (8 of 8 threads insert) | prevented (exactly 1 insert per prefix) | `unique_insert_scripted`, `unique_insert_forced_overlap`, `unique_insert_update_with` |
//!
//! Serializable read tracking, in detail (each run under both levels; under Snapshot the same
//! script commits, documenting that SI validates only the write set):
//!
//! | property | test |
//! |---|---|
//! | a read-only transaction never aborts, however much of what it read changed | `read_only_never_aborts` |
//! | an empty scan (even one never iterated) registers its requested bounds | `empty_scan_registers_its_range` |
//! | range bounds are validated exactly (inclusive/exclusive ends, `0xff` prefixes, partly consumed and reverse scans) | `scan_bounds_are_validated_exactly` |
//! | a changed or deleted key in a scanned range is ReadWrite, a new one Phantom | `scan_conflict_kinds` |
//! | reads of absent (and later deleted) keys are tracked | `absent_and_deleted_key_reads_are_tracked` |
//! | `get_untracked` and reads through `txn.snapshot()` never conflict | `untracked_reads_do_not_conflict` |
//! | own writes: no self-phantom, own key conflicts are WriteWrite, read-your-writes | `own_writes_behave_sensibly` |

use std::ops::Bound;
use std::sync::Barrier;

use snapkv::{Bytes, ConflictKind, Db, Error, Isolation, Transaction, Ts};

type KeyRange = (Bound<Bytes>, Bound<Bytes>);

/// `both_levels!(f)` for `fn f(iso: Isolation)` defines the tests `f::snapshot` and
/// `f::serializable` (a module and a function may share a name).
macro_rules! both_levels {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn snapshot() {
                super::$name(snapkv::Isolation::Snapshot)
            }
            #[test]
            fn serializable() {
                super::$name(snapkv::Isolation::Serializable)
            }
        }
    )*};
}

both_levels!(
    g0_dirty_write,
    g1a_aborted_read,
    g1a_failed_commit_leaves_no_trace,
    g1b_intermediate_read,
    g1c_circular_information_flow,
    otv_observed_transaction_vanishes,
    pmp_predicate_many_preceders,
    pmp_write_predicate,
    p4_lost_update,
    p4_lost_update_compare_and_swap,
    g_single_read_skew,
    g_single_read_skew_predicate,
    g_single_write_on_skewed_read,
    g2_item_write_skew,
    g2_predicate_same_prefix,
    g2_predicate_cross_prefix,
    read_only_transaction_anomaly,
    read_only_transaction_anomaly_batch,
    long_fork_scripted,
    long_fork_concurrent,
    write_skew_invariant,
    phantom_invariant,
    unique_insert_scripted,
    unique_insert_forced_overlap,
    read_only_never_aborts,
    empty_scan_registers_its_range,
    scan_bounds_are_validated_exactly,
    scan_conflict_kinds,
    absent_and_deleted_key_reads_are_tracked,
    untracked_reads_do_not_conflict,
    own_writes_behave_sensibly,
);

// ---------------------------------------------------------------------------------------------
// Helpers. All `#[track_caller]`, so a failure points at the step of the script that failed.

fn is_ser(iso: Isolation) -> bool {
    iso == Isolation::Serializable
}

#[track_caller]
fn db_with(pairs: &[(&str, &str)]) -> Db {
    let db = Db::new();
    for (k, v) in pairs {
        if let Err(e) = db.put(k, v) {
            panic!("setup write {k}={v} failed: {e}");
        }
    }
    db
}

#[track_caller]
fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(e) => panic!("test keys and values are UTF-8: {b:?}: {e}"),
    }
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

/// A tracked read (`Transaction::get`).
#[track_caller]
fn get(t: &Transaction, k: &str) -> Option<String> {
    match t.get(k) {
        Ok(v) => v.map(|v| text(&v)),
        Err(e) => panic!("get({k}) failed: {e}"),
    }
}

/// A tracked read of a key that must hold an integer.
#[track_caller]
fn num(t: &Transaction, k: &str) -> i64 {
    match get(t, k).map(|v| v.parse::<i64>()) {
        Some(Ok(n)) => n,
        other => panic!("{k} should hold an integer, got {other:?}"),
    }
}

/// The newest committed value, outside any transaction.
#[track_caller]
fn latest(db: &Db, k: &str) -> Option<String> {
    match db.get(k) {
        Ok(v) => v.map(|v| text(&v)),
        Err(e) => panic!("db.get({k}) failed: {e}"),
    }
}

/// A tracked prefix scan, collected.
fn scan(t: &Transaction, prefix: &str) -> Vec<(String, String)> {
    t.scan_prefix(prefix)
        .map(|(k, v)| (text(&k), text(&v)))
        .collect()
}

/// The keys a tracked prefix scan yields.
fn scan_keys(t: &Transaction, prefix: &str) -> Vec<String> {
    scan(t, prefix).into_iter().map(|(k, _)| k).collect()
}

/// The sum of the integer values under `prefix` (a tracked scan).
#[track_caller]
fn scan_sum(t: &Transaction, prefix: &str) -> i64 {
    scan(t, prefix)
        .iter()
        .map(|(k, v)| match v.parse::<i64>() {
            Ok(n) => n,
            Err(e) => panic!("{k} should hold an integer, got {v:?}: {e}"),
        })
        .sum()
}

/// Keys under `prefix` in the newest committed state.
fn latest_keys(db: &Db, prefix: &str) -> Vec<String> {
    db.snapshot()
        .scan_prefix(prefix)
        .map(|(k, _)| text(&k))
        .collect()
}

#[track_caller]
fn put(t: &mut Transaction, k: impl AsRef<[u8]>, v: impl AsRef<[u8]>) {
    if let Err(e) = t.put(k.as_ref(), v) {
        panic!("put({:?}) failed: {e}", Bytes::copy_from_slice(k.as_ref()));
    }
}

#[track_caller]
fn del(t: &mut Transaction, k: &str) {
    if let Err(e) = t.delete(k) {
        panic!("delete({k}) failed: {e}");
    }
}

/// An auto-commit write from "another client".
#[track_caller]
fn db_put(db: &Db, k: impl AsRef<[u8]>, v: &str) -> Ts {
    match db.put(k.as_ref(), v) {
        Ok(ts) => ts,
        Err(e) => panic!("db.put failed: {e}"),
    }
}

#[track_caller]
fn db_del(db: &Db, k: &str) -> Ts {
    match db.delete(k) {
        Ok(ts) => ts,
        Err(e) => panic!("db.delete({k}) failed: {e}"),
    }
}

/// Asserts that a commit succeeded and returns its timestamp.
#[track_caller]
fn committed(r: snapkv::Result<Ts>, what: &str) -> Ts {
    match r {
        Ok(ts) => ts,
        Err(e) => panic!("{what}: the commit should succeed, got {e:?}"),
    }
}

/// Asserts that a commit failed with a conflict of `kind` on `key`, reporting `range` (`None`
/// for a point conflict, the requested bounds for a conflict found in a scan).
#[track_caller]
fn conflict(
    r: snapkv::Result<Ts>,
    kind: ConflictKind,
    key: impl AsRef<[u8]>,
    range: Option<KeyRange>,
    what: &str,
) {
    let key = Bytes::copy_from_slice(key.as_ref());
    let e = match r {
        Err(e) => e,
        Ok(ts) => panic!("{what}: expected a {kind} conflict on {key:?}, committed at {ts}"),
    };
    match &e {
        Error::Conflict {
            key: got_key,
            kind: got_kind,
            range: got_range,
        } => {
            assert!(e.is_retryable(), "{what}: a conflict is retryable");
            assert_eq!(*got_kind, kind, "{what}: conflict kind ({e})");
            assert_eq!(*got_key, key, "{what}: conflict key ({e})");
            assert_eq!(
                got_range.as_deref().cloned(),
                range,
                "{what}: reported range ({e})"
            );
        }
        _ => panic!("{what}: expected a {kind} conflict on {key:?}, got {e:?}"),
    }
}

/// The half-open range `[lo, hi)` as a conflict reports it.
fn half_open(lo: &[u8], hi: &[u8]) -> KeyRange {
    (
        Bound::Included(Bytes::copy_from_slice(lo)),
        Bound::Excluded(Bytes::copy_from_slice(hi)),
    )
}

// ---------------------------------------------------------------------------------------------
// G0, G1: no dirty writes, no dirty / aborted / intermediate reads, no circular information flow.

// T1 w(x=11) T2 w(x=12) T1 w(y=21) T1 c T2 w(y=22) T2 c -> T2 aborts (WriteWrite on x); x=11, y=21.
fn g0_dirty_write(iso: Isolation) {
    let db = db_with(&[("x", "10"), ("y", "20")]);
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    put(&mut t1, "x", "11");
    put(&mut t2, "x", "12");
    put(&mut t1, "y", "21");
    assert_eq!(get(&t2, "x"), some("12"), "T2 reads its own write");
    assert_eq!(get(&t2, "y"), some("20"), "T2 must not see T1's y=21");
    committed(t1.commit(), "T1");
    put(&mut t2, "y", "22");
    conflict(t2.commit(), ConflictKind::WriteWrite, "x", None, "T2");
    assert_eq!(latest(&db, "x"), some("11"));
    assert_eq!(
        latest(&db, "y"),
        some("21"),
        "T2's y=22 must not be installed"
    );
}

// T1 w(x=101) T2 r(x) T1 a T2 r(x) T2 w(y) T2 c -> T2 reads 10 twice and commits.
fn g1a_aborted_read(iso: Isolation) {
    let db = db_with(&[("x", "10"), ("y", "20")]);
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    put(&mut t1, "x", "101");
    assert_eq!(get(&t2, "x"), some("10"), "T2 read T1's uncommitted write");
    assert_eq!(scan(&t2, "x"), [("x".into(), "10".into())]);
    assert_eq!(latest(&db, "x"), some("10"), "uncommitted write visible");
    t1.rollback();
    assert_eq!(get(&t2, "x"), some("10"), "T2 read T1's aborted write");
    // The aborted writer left nothing for T2 to conflict with, at either level.
    put(&mut t2, "y", "21");
    committed(t2.commit(), "T2");
    assert_eq!(latest(&db, "x"), some("10"));
    assert_eq!(latest(&db, "y"), some("21"));
}

// T0 w(x) T1 w(x) w(p/new) T2 r(p/new) scan(p/) T0 c T1 c (aborts) T2 r(p/new) w(z) T2 c ->
// T1's p/new is never visible, and T2, whose reads saw it absent, commits at both levels.
fn g1a_failed_commit_leaves_no_trace(iso: Isolation) {
    let db = db_with(&[("x", "10"), ("p/old", "1")]);
    let mut t0 = db.begin_with(iso);
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    put(&mut t0, "x", "11");
    put(&mut t1, "x", "12");
    put(&mut t1, "p/new", "2");
    assert_eq!(get(&t2, "p/new"), None);
    assert_eq!(scan_keys(&t2, "p/"), ["p/old"]);
    committed(t0.commit(), "T0");
    conflict(t1.commit(), ConflictKind::WriteWrite, "x", None, "T1");
    assert_eq!(
        latest(&db, "p/new"),
        None,
        "a failed commit installed a write"
    );
    assert_eq!(latest_keys(&db, "p/"), ["p/old"]);
    let t3 = db.begin_with(iso);
    assert_eq!(get(&t3, "p/new"), None);
    assert_eq!(scan_keys(&t3, "p/"), ["p/old"]);
    assert_eq!(get(&t2, "p/new"), None);
    put(&mut t2, "z", "1");
    committed(
        t2.commit(),
        "T2: the failed commit changed nothing T2 read or scanned",
    );
}

// T1 w(x=101) T2 r(x) T1 w(x=11) T1 c T2 r(x) T2 c T3 r(x) -> T2 reads 10 twice, never 101;
// T3 reads 11.
fn g1b_intermediate_read(iso: Isolation) {
    let db = db_with(&[("x", "10")]);
    let mut t1 = db.begin_with(iso);
    let t2 = db.begin_with(iso);
    put(&mut t1, "x", "101");
    assert_eq!(get(&t1, "x"), some("101"), "T1 reads its own write");
    assert_eq!(get(&t2, "x"), some("10"));
    put(&mut t1, "x", "11");
    assert_eq!(get(&t1, "x"), some("11"), "T1 reads its newest own write");
    committed(t1.commit(), "T1");
    assert_eq!(get(&t2, "x"), some("10"), "T2's snapshot moved");
    committed(t2.commit(), "T2 (read-only)");
    let t3 = db.begin_with(iso);
    assert_eq!(get(&t3, "x"), some("11"), "the intermediate 101 survived");
}

// T1 w(x=11) T2 w(y=22) T1 r(y) T2 r(x) T1 c T2 c -> T1 reads 20, T2 reads 10 (no wr cycle).
// SI: both commit. Serializable: T2 aborts (ReadWrite on x; T1 -rw-> T2 -rw-> T1 is a G2 cycle).
fn g1c_circular_information_flow(iso: Isolation) {
    let db = db_with(&[("x", "10"), ("y", "20")]);
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    put(&mut t1, "x", "11");
    put(&mut t2, "y", "22");
    assert_eq!(get(&t1, "y"), some("20"), "T1 saw T2's uncommitted write");
    assert_eq!(get(&t2, "x"), some("10"), "T2 saw T1's uncommitted write");
    committed(t1.commit(), "T1");
    if is_ser(iso) {
        conflict(t2.commit(), ConflictKind::ReadWrite, "x", None, "T2");
        assert_eq!(latest(&db, "y"), some("20"));
    } else {
        committed(t2.commit(), "T2 (SI: disjoint writes)");
        assert_eq!(latest(&db, "y"), some("22"));
    }
    assert_eq!(latest(&db, "x"), some("11"));
}

// T1 w(x=11) w(y=19) T2 w(x=12) w(y=18) T1 c T3 r(x) T2 c (aborts) T3 r(y) T3 c -> T3 reads 11
// and 19: once it saw part of T1, T1 does not vanish, and nothing of T2 appears.
fn otv_observed_transaction_vanishes(iso: Isolation) {
    let db = db_with(&[("x", "10"), ("y", "20")]);
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    put(&mut t1, "x", "11");
    put(&mut t1, "y", "19");
    put(&mut t2, "x", "12");
    put(&mut t2, "y", "18");
    committed(t1.commit(), "T1");
    let t3 = db.begin_with(iso);
    assert_eq!(get(&t3, "x"), some("11"));
    conflict(t2.commit(), ConflictKind::WriteWrite, "x", None, "T2");
    assert_eq!(
        get(&t3, "y"),
        some("19"),
        "T1's write vanished from T3's view"
    );
    assert_eq!(
        scan(&t3, ""),
        [("x".into(), "11".into()), ("y".into(), "19".into())]
    );
    committed(t3.commit(), "T3 (read-only)");
}

// ---------------------------------------------------------------------------------------------
// Predicates.

// T1 scan(item/ where v%3==0) T2 w(item/3=30) T2 c T1 scan(item/ where v%3==0) T1 c -> T1 sees
// nothing both times. If T1 then writes, Serializable aborts it (Phantom on item/3, range item/):
// its predicate is stale at its commit timestamp.
fn pmp_predicate_many_preceders(iso: Isolation) {
    let db = db_with(&[("item/1", "10"), ("item/2", "20")]);
    let div3 = |t: &Transaction| -> Vec<String> {
        scan(t, "item/")
            .into_iter()
            .filter(|(_, v)| v.parse::<u32>().is_ok_and(|n| n % 3 == 0))
            .map(|(k, _)| k)
            .collect()
    };
    let mut t1 = db.begin_with(iso);
    assert_eq!(div3(&t1), Vec::<String>::new());
    let mut t2 = db.begin_with(iso);
    put(&mut t2, "item/3", "30");
    committed(t2.commit(), "T2");
    assert_eq!(div3(&t1), Vec::<String>::new(), "predicate result changed");
    assert_eq!(scan_keys(&t1, "item/"), ["item/1", "item/2"]);
    assert_eq!(
        t1.scan_prefix("item/").rev().count(),
        2,
        "reverse scan moved"
    );
    assert_eq!(latest_keys(&db, "item/"), ["item/1", "item/2", "item/3"]);
    put(&mut t1, "report", "0 items divisible by 3");
    if is_ser(iso) {
        conflict(
            t1.commit(),
            ConflictKind::Phantom,
            "item/3",
            Some(half_open(b"item/", b"item0")),
            "T1",
        );
    } else {
        committed(t1.commit(), "T1 (SI does not validate scans)");
    }
}

// T1 scan(item/) w(item/1=20) w(item/2=30) T2 scan(item/ where v==20) w(delete item/2) T1 c T2 c
// -> T2 aborts (WriteWrite on item/2): it would delete a row whose new version it never saw.
fn pmp_write_predicate(iso: Isolation) {
    let db = db_with(&[("item/1", "10"), ("item/2", "20")]);
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    for (k, v) in scan(&t1, "item/") {
        let bumped = v.parse::<u32>().map(|n| n + 10);
        assert!(bumped.is_ok(), "{k}={v} is not a number");
        put(&mut t1, k, bumped.unwrap_or_default().to_string());
    }
    let doomed: Vec<String> = scan(&t2, "item/")
        .into_iter()
        .filter(|(_, v)| v == "20")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(doomed, ["item/2"]);
    for k in &doomed {
        del(&mut t2, k);
    }
    committed(t1.commit(), "T1");
    conflict(t2.commit(), ConflictKind::WriteWrite, "item/2", None, "T2");
    assert_eq!(latest(&db, "item/1"), some("20"));
    assert_eq!(
        latest(&db, "item/2"),
        some("30"),
        "T2's delete was installed"
    );
}

// ---------------------------------------------------------------------------------------------
// Lost update, read skew.

// T1 r(x) T2 r(x) T1 w(x=r+1) T2 w(x=r+1) T1 c T2 c -> T2 aborts (WriteWrite on x); x=11; T2's
// retry reads 11 and writes 12.
fn p4_lost_update(iso: Isolation) {
    let db = db_with(&[("x", "10")]);
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    let a = num(&t1, "x");
    let b = num(&t2, "x");
    assert_eq!((a, b), (10, 10));
    put(&mut t1, "x", (a + 1).to_string());
    put(&mut t2, "x", (b + 1).to_string());
    committed(t1.commit(), "T1");
    conflict(t2.commit(), ConflictKind::WriteWrite, "x", None, "T2");
    assert_eq!(latest(&db, "x"), some("11"), "an update was lost");
    let retried = db.update_with(iso, |t| {
        let n: i64 = t.get("x")?.map_or(0, |v| text(&v).parse().unwrap_or(-1000));
        t.put("x", (n + 1).to_string())?;
        Ok(n + 1)
    });
    assert!(matches!(retried, Ok(12)), "T2's retry: {retried:?}");
    assert_eq!(latest(&db, "x"), some("12"));
}

// T1 cas(x, v0) T2 cas(x, v0) T1 c T2 c -> T2 aborts (WriteWrite on x). T3 (after T1)
// cas(x, v0) -> PreconditionFailed { current: T1's version }, nothing buffered.
fn p4_lost_update_compare_and_swap(iso: Isolation) {
    let db = Db::new();
    let v0 = db_put(&db, "x", "10");
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    let r1 = t1.compare_and_swap("x", Some(v0), Some("11"));
    let r2 = t2.compare_and_swap("x", Some(v0), Some("12"));
    assert!(r1.is_ok() && r2.is_ok(), "both see v0: {r1:?} {r2:?}");
    let v1 = committed(t1.commit(), "T1");
    conflict(t2.commit(), ConflictKind::WriteWrite, "x", None, "T2");
    let mut t3 = db.begin_with(iso);
    match t3.compare_and_swap("x", Some(v0), Some("13")) {
        Err(Error::PreconditionFailed { key, current }) => {
            assert_eq!(&key[..], b"x");
            assert_eq!(current, Some(v1), "the current version is T1's");
            assert!(
                !Error::PreconditionFailed { key, current }.is_retryable(),
                "a failed precondition is not a conflict"
            );
        }
        other => panic!("T3: expected PreconditionFailed, got {other:?}"),
    }
    assert!(
        t3.is_read_only(),
        "a failed compare_and_swap buffered a write"
    );
    committed(t3.commit(), "T3 (nothing buffered)");
    assert_eq!(latest(&db, "x"), some("11"));
}

// T1 r(x)=10 T2 r(x) r(y) w(x=12) w(y=18) T2 c T1 r(y) T1 c -> T1 reads y=20 (x+y stays 30).
fn g_single_read_skew(iso: Isolation) {
    let db = db_with(&[("x", "10"), ("y", "20")]);
    let t1 = db.begin_with(iso);
    assert_eq!(num(&t1, "x"), 10);
    let mut t2 = db.begin_with(iso);
    assert_eq!((num(&t2, "x"), num(&t2, "y")), (10, 20));
    put(&mut t2, "x", "12");
    put(&mut t2, "y", "18");
    committed(t2.commit(), "T2");
    assert_eq!(num(&t1, "y"), 20, "read skew: T1 saw half of T2");
    assert_eq!(num(&t1, "x") + num(&t1, "y"), 30);
    committed(t1.commit(), "T1 (read-only)");
    assert_eq!(
        (latest(&db, "x"), latest(&db, "y")),
        (some("12"), some("18"))
    );
}

// T1 scan(acct/ where v%5==0) -> a=10, b=20; T2 w(acct/b=12) T2 c;
// T1 scan(acct/ where v%3==0) -> nothing (T1 must not see b=12); T1 c.
fn g_single_read_skew_predicate(iso: Isolation) {
    let db = db_with(&[("acct/a", "10"), ("acct/b", "20")]);
    let matching = |t: &Transaction, m: u32| -> Vec<String> {
        scan(t, "acct/")
            .into_iter()
            .filter(|(_, v)| v.parse::<u32>().is_ok_and(|n| n % m == 0))
            .map(|(k, _)| k)
            .collect()
    };
    let t1 = db.begin_with(iso);
    assert_eq!(matching(&t1, 5), ["acct/a", "acct/b"]);
    let mut t2 = db.begin_with(iso);
    put(&mut t2, "acct/b", "12");
    committed(t2.commit(), "T2");
    assert_eq!(
        matching(&t1, 3),
        Vec::<String>::new(),
        "predicate read skew"
    );
    assert_eq!(scan_sum(&t1, "acct/"), 30);
    committed(t1.commit(), "T1 (read-only)");
}

// T1 r(x) T2 w(x=12) w(y=18) T2 c T1 w(y=30) T1 c -> T1 aborts (WriteWrite on y): it would
// overwrite y based on a stale x.
fn g_single_write_on_skewed_read(iso: Isolation) {
    let db = db_with(&[("x", "10"), ("y", "20")]);
    let mut t1 = db.begin_with(iso);
    assert_eq!(num(&t1, "x"), 10);
    let mut t2 = db.begin_with(iso);
    put(&mut t2, "x", "12");
    put(&mut t2, "y", "18");
    committed(t2.commit(), "T2");
    put(&mut t1, "y", "30");
    conflict(t1.commit(), ConflictKind::WriteWrite, "y", None, "T1");
    assert_eq!(latest(&db, "y"), some("18"));
}

// ---------------------------------------------------------------------------------------------
// G2: write skew and predicate anti-dependency cycles. Allowed by SI, prevented by Serializable.

// Two doctors on call, "at least one stays on call":
// T1 r(alice) r(bob) T2 r(alice) r(bob) T1 w(alice=no) T2 w(bob=no) T1 c T2 c.
// SI: both commit, nobody is on call. Serializable: T2 aborts (ReadWrite on oncall/alice).
fn g2_item_write_skew(iso: Isolation) {
    let db = db_with(&[("oncall/alice", "yes"), ("oncall/bob", "yes")]);
    let on_call = |t: &Transaction| {
        ["oncall/alice", "oncall/bob"]
            .into_iter()
            .filter(|k| get(t, k).as_deref() == Some("yes"))
            .count()
    };
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    assert_eq!(on_call(&t1), 2);
    assert_eq!(on_call(&t2), 2);
    put(&mut t1, "oncall/alice", "no");
    put(&mut t2, "oncall/bob", "no");
    committed(t1.commit(), "T1");
    let second = t2.commit();
    let after = on_call(&db.begin());
    if is_ser(iso) {
        conflict(second, ConflictKind::ReadWrite, "oncall/alice", None, "T2");
        assert_eq!(after, 1, "the invariant holds");
    } else {
        committed(second, "T2 (SI allows write skew)");
        assert_eq!(after, 0, "SI: write skew broke the invariant");
    }
}

// Hermitage G2: T1 scan(p/ where v%3==0) -> none; T2 the same; T1 w(p/3=30) T2 w(p/4=42)
// T1 c T2 c. Each inserts on the premise that the other's insert does not exist.
// SI: both commit. Serializable: T2 aborts (Phantom on p/3, range p/).
fn g2_predicate_same_prefix(iso: Isolation) {
    let db = db_with(&[("p/1", "10"), ("p/2", "20")]);
    let div3 = |t: &Transaction| {
        scan(t, "p/")
            .into_iter()
            .filter(|(_, v)| v.parse::<u32>().is_ok_and(|n| n % 3 == 0))
            .count()
    };
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    assert_eq!(div3(&t1), 0);
    assert_eq!(div3(&t2), 0);
    put(&mut t1, "p/3", "30");
    put(&mut t2, "p/4", "42");
    assert_eq!(div3(&t1), 1, "T1 sees its own insert");
    assert_eq!(div3(&t2), 1, "T2 sees its own insert, not T1's");
    committed(t1.commit(), "T1");
    let second = t2.commit();
    let after = db.begin();
    if is_ser(iso) {
        conflict(
            second,
            ConflictKind::Phantom,
            "p/3",
            Some(half_open(b"p/", b"p0")),
            "T2",
        );
        assert_eq!(div3(&after), 1);
    } else {
        committed(second, "T2 (SI allows the predicate cycle)");
        assert_eq!(div3(&after), 2, "SI: two multiples of 3 were inserted");
    }
}

// T1 scan(a/) -> empty, T2 scan(b/) -> empty, T1 w(b/1) T2 w(a/1) T1 c T2 c: "insert into b/
// only if a/ is empty" and vice versa (invariant: not both non-empty).
// SI: both commit, both non-empty. Serializable: T2 aborts (Phantom on b/1, range b/).
fn g2_predicate_cross_prefix(iso: Isolation) {
    let db = Db::new();
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    assert_eq!(scan_keys(&t1, "a/"), Vec::<String>::new());
    assert_eq!(scan_keys(&t2, "b/"), Vec::<String>::new());
    put(&mut t1, "b/1", "x");
    put(&mut t2, "a/1", "x");
    committed(t1.commit(), "T1");
    let second = t2.commit();
    if is_ser(iso) {
        conflict(
            second,
            ConflictKind::Phantom,
            "b/1",
            Some(half_open(b"b/", b"b0")),
            "T2",
        );
        assert_eq!(latest_keys(&db, "a/"), Vec::<String>::new());
    } else {
        committed(second, "T2 (SI allows the predicate cycle)");
        assert_eq!(
            latest_keys(&db, "a/"),
            ["a/1"],
            "SI: both prefixes non-empty"
        );
    }
    assert_eq!(latest_keys(&db, "b/"), ["b/1"]);
}

// Fekete, O'Neil & O'Neil, "A read-only transaction anomaly under snapshot isolation" (SIGMOD
// Record 2004), numbered as T1 = read-only report, T2 = withdrawal, T3 = deposit (the paper
// numbers the deposit T1 and the report T3). Checking = savings = 0. A withdrawal of 10 is
// charged a penalty of 1 if checking + savings would go negative.
// T2 r(checking)=0 r(savings)=0 | T3 r(savings) w(savings=20) c | T1 r(checking)=0
// r(savings)=20 c | T2 w(checking=-11) c.
// SI: all commit; T1 reported (0, 20), which puts T3 < T1 < T2, yet T2 did not see T3's deposit
// (penalty charged): the cycle exists only because of the read-only T1.
// Serializable: T1 commits; T2 aborts (ReadWrite on savings); its retry pays no penalty (-10).
fn read_only_transaction_anomaly(iso: Isolation) {
    let db = db_with(&[("checking", "0"), ("savings", "0")]);
    let withdrawal = |checking: i64, savings: i64| {
        let penalty = if checking + savings - 10 < 0 { 1 } else { 0 };
        checking - 10 - penalty
    };
    let mut t2 = db.begin_with(iso);
    let (x, y) = (num(&t2, "checking"), num(&t2, "savings"));
    assert_eq!((x, y), (0, 0));

    let mut t3 = db.begin_with(iso);
    let s = num(&t3, "savings");
    put(&mut t3, "savings", (s + 20).to_string());
    committed(t3.commit(), "T3 (deposit)");

    let t1 = db.begin_with(iso);
    let report = (num(&t1, "checking"), num(&t1, "savings"));
    assert_eq!(report, (0, 20), "T1 sees the deposit, not the withdrawal");
    assert!(t1.is_read_only());

    put(&mut t2, "checking", withdrawal(x, y).to_string());
    let t2_result = t2.commit();
    // The report commits after the withdrawal's attempt, i.e. after a value it read may have
    // changed: a read-only transaction still never aborts.
    let t1_snapshot = t1.snapshot_ts();
    let t1_ts = committed(t1.commit(), "T1 (read-only report)");
    assert_eq!(
        t1_ts, t1_snapshot,
        "a read-only commit returns its snapshot"
    );

    if is_ser(iso) {
        conflict(t2_result, ConflictKind::ReadWrite, "savings", None, "T2");
        assert_eq!(latest(&db, "checking"), some("0"));
        let retried = db.update_with(iso, |t| {
            let read = |k: &str| -> snapkv::Result<i64> {
                Ok(t.get(k)?.map_or(0, |v| text(&v).parse().unwrap_or(-1000)))
            };
            let new = withdrawal(read("checking")?, read("savings")?);
            t.put("checking", new.to_string())?;
            Ok(new)
        });
        assert!(matches!(retried, Ok(-10)), "T2's retry: {retried:?}");
        assert_eq!(latest(&db, "checking"), some("-10"), "no penalty");
    } else {
        committed(t2_result, "T2 (SI allows the read-only anomaly)");
        assert_eq!(
            latest(&db, "checking"),
            some("-11"),
            "SI: the penalty was charged although the report showed funds"
        );
    }
    assert_eq!(latest(&db, "savings"), some("20"));
}

// The batch formulation of the same anomaly (Fekete et al.): a control key holds the current
// batch; receipts go under receipt/<batch>/; closing a batch increments the control key; a
// report totals the previous (closed) batch. Batch 1 holds r1=100.
// T2 (new receipt) r(batch)=1 | T3 (close) r(batch) w(batch=2) c | T1 (report) r(batch)=2
// scan(receipt/1/) -> 100 c | T2 w(receipt/1/r2=50) c.
// SI: all commit; batch 1 was reported closed at 100 and now totals 150.
// Serializable: T1 commits; T2 aborts (ReadWrite on batch); its retry files into batch 2.
fn read_only_transaction_anomaly_batch(iso: Isolation) {
    let db = db_with(&[("batch", "1"), ("receipt/1/r1", "100")]);
    let mut t2 = db.begin_with(iso);
    let b = num(&t2, "batch");
    assert_eq!(b, 1);

    let mut t3 = db.begin_with(iso);
    let current = num(&t3, "batch");
    put(&mut t3, "batch", (current + 1).to_string());
    committed(t3.commit(), "T3 (close batch)");

    let t1 = db.begin_with(iso);
    let closed = num(&t1, "batch") - 1;
    assert_eq!(closed, 1);
    let total = scan_sum(&t1, &format!("receipt/{closed}/"));
    assert_eq!(total, 100, "the report of closed batch 1");
    committed(t1.commit(), "T1 (read-only report)");

    put(&mut t2, format!("receipt/{b}/r2"), "50");
    let t2_result = t2.commit();
    let batch1 = scan_sum(&db.begin(), "receipt/1/");
    if is_ser(iso) {
        conflict(t2_result, ConflictKind::ReadWrite, "batch", None, "T2");
        assert_eq!(batch1, 100, "the closed batch is unchanged");
        let retried = db.update_with(iso, |t| {
            let b = t
                .get("batch")?
                .map_or(0, |v| text(&v).parse().unwrap_or(-1000));
            t.put(format!("receipt/{b}/r2"), "50")?;
            Ok(b)
        });
        assert!(matches!(retried, Ok(2)), "T2's retry: {retried:?}");
        assert_eq!(latest_keys(&db, "receipt/2/"), ["receipt/2/r2"]);
    } else {
        committed(t2_result, "T2 (SI allows the read-only anomaly)");
        assert_eq!(
            batch1, 150,
            "SI: a receipt landed in the reported, closed batch"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Long fork.

// W1 w(x=1) W2 w(y=1) R1 r(x) R2 r(y) W1 c R3 begins W2 c R4 begins R1 r(y) R2 r(x) R3 r(x,y)
// R4 r(x,y). A store that read the newest committed value instead of the snapshot would let
// R1 see (x=0, y=1) and R2 see (x=1, y=0): W2 before W1 and W1 before W2, a long fork.
// Both levels: every view is a prefix of the commit order W1, W2.
fn long_fork_scripted(iso: Isolation) {
    let db = db_with(&[("x", "0"), ("y", "0")]);
    let mut w1 = db.begin_with(iso);
    let mut w2 = db.begin_with(iso);
    put(&mut w1, "x", "1");
    put(&mut w2, "y", "1");
    let r1 = db.begin_with(iso);
    let r2 = db.begin_with(iso);
    let r1_x = num(&r1, "x");
    let r2_y = num(&r2, "y");
    committed(w1.commit(), "W1");
    let r3 = db.begin_with(iso);
    committed(w2.commit(), "W2");
    let r4 = db.begin_with(iso);
    let r1_view = (r1_x, num(&r1, "y"));
    let r2_view = (num(&r2, "x"), r2_y);
    let r3_view = (num(&r3, "x"), num(&r3, "y"));
    let r4_view = (num(&r4, "x"), num(&r4, "y"));
    assert_eq!(r1_view, (0, 0), "R1 saw a later commit");
    assert_eq!(r2_view, (0, 0), "R2 saw a later commit");
    assert_eq!(r3_view, (1, 0), "R3 sees W1 only");
    assert_eq!(r4_view, (1, 1), "R4 sees both");
    let views = [r1_view, r2_view, r3_view, r4_view];
    for a in views {
        for b in views {
            let a_first = a.0 <= b.0 && a.1 <= b.1;
            let b_first = b.0 <= a.0 && b.1 <= a.1;
            assert!(a_first || b_first, "long fork between {a:?} and {b:?}");
        }
    }
    for r in [r1, r2, r3, r4] {
        committed(r.commit(), "reader (read-only)");
    }
}

// Two writers bump x and y independently (1..=N) while two readers record (x, y) in fresh
// transactions: all observations must be totally ordered componentwise; two readers seeing
// (x1 < x2, y1 > y2) would have observed the writers' commits in opposite orders.
fn long_fork_concurrent(iso: Isolation) {
    const ROUNDS: i64 = 2_000;
    let db = db_with(&[("x", "0"), ("y", "0")]);
    let start = Barrier::new(4);
    let seen: Vec<Vec<(i64, i64)>> = std::thread::scope(|s| {
        for key in ["x", "y"] {
            let (db, start) = (&db, &start);
            s.spawn(move || {
                start.wait();
                for i in 1..=ROUNDS {
                    let r = db.update_with(iso, |t| t.put(key, i.to_string()));
                    assert!(r.is_ok(), "writer {key}: {r:?}");
                }
            });
        }
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (db, start) = (&db, &start);
                s.spawn(move || {
                    start.wait();
                    (0..ROUNDS)
                        .map(|_| {
                            let t = db.begin_with(iso);
                            let view = (num(&t, "x"), num(&t, "y"));
                            committed(t.commit(), "reader");
                            view
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|r| match r.join() {
                Ok(seen) => seen,
                Err(_) => panic!("a reader panicked"),
            })
            .collect()
    });
    let mut all: Vec<(i64, i64)> = seen.concat();
    assert_eq!(all.len(), 2 * ROUNDS as usize);
    all.sort_unstable();
    for w in all.windows(2) {
        assert!(
            w[0].1 <= w[1].1,
            "long fork: {:?} and {:?} order the writers differently",
            w[0],
            w[1]
        );
    }
    assert_eq!(
        (latest(&db, "x"), latest(&db, "y")),
        (Some(ROUNDS.to_string()), Some(ROUNDS.to_string()))
    );
}

// ---------------------------------------------------------------------------------------------
// Invariants that SI breaks and Serializable keeps.

/// Withdraws `amount` from `from` if checking + savings stays non-negative; whether it did.
fn withdraw(t: &mut Transaction, from: &str, amount: i64) -> snapkv::Result<bool> {
    let read = |t: &Transaction, k: &str| -> snapkv::Result<i64> {
        Ok(t.get(k)?.map_or(0, |v| text(&v).parse().unwrap_or(-1000)))
    };
    let (x, y) = (read(t, "x")?, read(t, "y")?);
    if x + y < amount {
        return Ok(false);
    }
    let balance = read(t, from)?;
    t.put(from, (balance - amount).to_string())?;
    Ok(true)
}

// Invariant x + y >= 0, x = y = 50. T1 r(x) r(y) T2 r(x) r(y) T1 w(x=-50) T2 w(y=-50) T1 c T2 c
// and the loser retries. SI: both commit, x + y = -100. Serializable: T2 aborts (ReadWrite on
// x); its retry sees x + y = 50 and withdraws nothing; x + y = 0.
fn write_skew_invariant(iso: Isolation) {
    let db = db_with(&[("x", "50"), ("y", "50")]);
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    assert!(matches!(withdraw(&mut t1, "x", 100), Ok(true)));
    assert!(matches!(withdraw(&mut t2, "y", 100), Ok(true)));
    committed(t1.commit(), "T1");
    let second = t2.commit();
    if is_ser(iso) {
        conflict(second, ConflictKind::ReadWrite, "x", None, "T2");
        let retry = db.update_with(iso, |t| withdraw(t, "y", 100));
        assert!(
            matches!(retry, Ok(false)),
            "T2's retry must refuse: {retry:?}"
        );
    } else {
        committed(second, "T2 (SI allows write skew)");
    }
    let t = db.begin_with(iso);
    let total = num(&t, "x") + num(&t, "y");
    if is_ser(iso) {
        assert_eq!(total, 0, "the invariant x + y >= 0 holds");
    } else {
        assert_eq!(total, -100, "SI: write skew broke x + y >= 0");
    }
}

/// Adds a `hours`-hour shift `name` for alice if her total stays at most 8; whether it did.
fn add_shift(t: &mut Transaction, name: &str, hours: i64) -> snapkv::Result<bool> {
    let total: i64 = t
        .scan_prefix("shift/alice/")
        .map(|(_, v)| text(&v).parse::<i64>().unwrap_or(1000))
        .sum();
    if total + hours > 8 {
        return Ok(false);
    }
    t.put(format!("shift/alice/{name}"), hours.to_string())?;
    Ok(true)
}

// Invariant: alice works at most 8 hours (sum over the prefix shift/alice/), she has mon=4.
// T1 scan(shift/alice/)=4 T2 scan(shift/alice/)=4 T1 w(tue=4) T2 w(wed=4) T1 c T2 c, loser
// retries. SI: both insert, 12 hours. Serializable: T2 aborts (Phantom on shift/alice/tue,
// range shift/alice/); its retry sees 8 hours and refuses.
fn phantom_invariant(iso: Isolation) {
    let db = db_with(&[("shift/alice/mon", "4"), ("shift/bob/mon", "8")]);
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    assert!(matches!(add_shift(&mut t1, "tue", 4), Ok(true)));
    assert!(matches!(add_shift(&mut t2, "wed", 4), Ok(true)));
    committed(t1.commit(), "T1");
    let second = t2.commit();
    if is_ser(iso) {
        conflict(
            second,
            ConflictKind::Phantom,
            "shift/alice/tue",
            Some(half_open(b"shift/alice/", b"shift/alice0")),
            "T2",
        );
        let retry = db.update_with(iso, |t| add_shift(t, "wed", 4));
        assert!(
            matches!(retry, Ok(false)),
            "T2's retry must refuse: {retry:?}"
        );
    } else {
        committed(second, "T2 (SI allows the phantom)");
    }
    let hours = scan_sum(&db.begin(), "shift/alice/");
    if is_ser(iso) {
        assert_eq!(hours, 8, "the invariant holds");
    } else {
        assert_eq!(hours, 12, "SI: a phantom broke the 8-hour invariant");
    }
}

// ---------------------------------------------------------------------------------------------
// Unique index: "insert if no key with prefix P exists".

// T1 scan(email/ada/) -> empty, T2 the same, T1 w(email/ada/user1) T2 w(email/ada/user2) T1 c
// T2 c. SI: both commit (two rows). Serializable: T2 aborts (Phantom on email/ada/user1; the
// empty scan registered its range).
fn unique_insert_scripted(iso: Isolation) {
    let db = db_with(&[("email/ad/x", "x"), ("email/ada0", "x")]); // neighbours, outside P
    let mut t1 = db.begin_with(iso);
    let mut t2 = db.begin_with(iso);
    assert_eq!(t1.scan_prefix("email/ada/").count(), 0);
    assert_eq!(t2.scan_prefix("email/ada/").count(), 0);
    put(&mut t1, "email/ada/user1", "");
    put(&mut t2, "email/ada/user2", "");
    committed(t1.commit(), "T1");
    let second = t2.commit();
    if is_ser(iso) {
        conflict(
            second,
            ConflictKind::Phantom,
            "email/ada/user1",
            Some(half_open(b"email/ada/", b"email/ada0")),
            "T2",
        );
        assert_eq!(latest_keys(&db, "email/ada/"), ["email/ada/user1"]);
    } else {
        committed(second, "T2 (SI lets both inserts through)");
        assert_eq!(
            latest_keys(&db, "email/ada/"),
            ["email/ada/user1", "email/ada/user2"],
            "SI: the uniqueness invariant broke"
        );
    }
}

/// What one thread did in one round of a unique-insert race.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// The first attempt committed this thread's insert.
    Inserted,
    /// The first attempt conflicted (kind, key); the retry inserted (`true`) or found a row.
    Retried(ConflictKind, String, bool),
    /// Anything else (reported, not panicked, so the other threads never hang on a barrier).
    Failed(String),
}

// Per round, 8 threads on a fresh prefix P: begin, scan(P) -> empty, barrier (all have
// scanned, none has committed), w(P/<thread>), c; a conflict is retried with update_with.
// SI: all 8 first attempts commit, every round (8 rows per prefix). Serializable: exactly one
// row and one inserting thread per prefix; every failed first attempt is a Phantom in P.
fn unique_insert_forced_overlap(iso: Isolation) {
    const THREADS: usize = 8;
    const ROUNDS: usize = 40;
    let db = match Db::builder().max_attempts(10_000).build() {
        Ok(db) => db,
        Err(e) => panic!("builder: {e}"),
    };
    let barrier = Barrier::new(THREADS);
    let prefix = |r: usize| format!("unique/{r:03}/");
    let insert_if_absent = |t: &mut Transaction, p: &str, me: usize| -> snapkv::Result<bool> {
        if t.scan_prefix(p).next().is_some() {
            return Ok(false);
        }
        t.put(format!("{p}{me}"), "")?;
        Ok(true)
    };
    let per_thread: Vec<Vec<Attempt>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|me| {
                let (db, barrier) = (&db, &barrier);
                s.spawn(move || {
                    (0..ROUNDS)
                        .map(|r| {
                            let p = prefix(r);
                            let mut t = db.begin_with(iso);
                            let empty = t.scan_prefix(&p).next().is_none();
                            barrier.wait();
                            if !empty {
                                return Attempt::Failed("prefix not empty at first scan".into());
                            }
                            if let Err(e) = t.put(format!("{p}{me}"), "") {
                                return Attempt::Failed(e.to_string());
                            }
                            match t.commit() {
                                Ok(_) => Attempt::Inserted,
                                Err(Error::Conflict { kind, key, .. }) => {
                                    let key = String::from_utf8_lossy(&key).into_owned();
                                    match db.update_with(iso, |t| insert_if_absent(t, &p, me)) {
                                        Ok(ins) => Attempt::Retried(kind, key, ins),
                                        Err(e) => Attempt::Failed(format!("retry: {e}")),
                                    }
                                }
                                Err(e) => Attempt::Failed(e.to_string()),
                            }
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(v) => v,
                Err(_) => panic!("a racing thread panicked"),
            })
            .collect()
    });
    for r in 0..ROUNDS {
        let round: Vec<&Attempt> = per_thread.iter().map(|v| &v[r]).collect();
        let rows = latest_keys(&db, &prefix(r)).len();
        let inserters = round
            .iter()
            .filter(|a| matches!(a, Attempt::Inserted | Attempt::Retried(_, _, true)))
            .count();
        assert!(
            !round.iter().any(|a| matches!(a, Attempt::Failed(_))),
            "round {r}: {round:?}"
        );
        if is_ser(iso) {
            assert_eq!(rows, 1, "round {r}: {rows} rows: {round:?}");
            assert_eq!(inserters, 1, "round {r}: {round:?}");
            for a in &round {
                if let Attempt::Retried(kind, key, _) = a {
                    assert_eq!(*kind, ConflictKind::Phantom, "round {r}: {round:?}");
                    assert!(key.starts_with(&prefix(r)), "round {r}: {round:?}");
                }
            }
        } else {
            assert_eq!(rows, THREADS, "round {r}: SI lets every insert through");
            assert!(
                round.iter().all(|a| **a == Attempt::Inserted),
                "round {r}: {round:?}"
            );
        }
    }
}

// Per round, 8 threads released by a barrier each run update_with(Serializable, insert if no
// key with prefix P exists) on a fresh P: exactly one insert per prefix, every round.
#[test]
fn unique_insert_update_with() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 200;
    let db = Db::new();
    let barrier = Barrier::new(THREADS);
    let prefix = |r: usize| format!("email/user{r:03}@x/");
    let results: Vec<Vec<Result<bool, String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|me| {
                let (db, barrier) = (&db, &barrier);
                s.spawn(move || {
                    (0..ROUNDS)
                        .map(|r| {
                            let p = prefix(r);
                            barrier.wait();
                            db.update_with(Isolation::Serializable, |t| {
                                if t.scan_prefix(&p).next().is_some() {
                                    return Ok(false);
                                }
                                t.put(format!("{p}{me}"), "")?;
                                Ok(true)
                            })
                            .map_err(|e| e.to_string())
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(v) => v,
                Err(_) => panic!("a racing thread panicked"),
            })
            .collect()
    });
    for r in 0..ROUNDS {
        let round: Vec<&Result<bool, String>> = results.iter().map(|v| &v[r]).collect();
        assert!(round.iter().all(|x| x.is_ok()), "round {r}: {round:?}");
        let winners = round.iter().filter(|x| matches!(x, Ok(true))).count();
        assert_eq!(winners, 1, "round {r}: {round:?}");
        assert_eq!(latest_keys(&db, &prefix(r)).len(), 1, "round {r}");
    }
}

// ---------------------------------------------------------------------------------------------
// Serializable read tracking in detail.

// T r(a) r(missing) scan(..) scan(p/) | others w(a) w(missing) delete(b) w(p/1) | T c -> a
// read-only T commits at both levels (returning its snapshot timestamp); the same reads plus
// one write abort under Serializable (ReadWrite on a, the first read key).
fn read_only_never_aborts(iso: Isolation) {
    let db = db_with(&[("a", "1"), ("b", "2")]);
    let reader = db.begin_with(iso);
    let mut writer = db.begin_with(iso);
    for t in [&reader, &writer] {
        assert_eq!(get(t, "a"), some("1"));
        assert_eq!(get(t, "missing"), None);
        assert_eq!(t.range(..).count(), 2);
        assert_eq!(t.scan_prefix("p/").count(), 0);
    }
    db_put(&db, "a", "9");
    db_put(&db, "missing", "now here");
    db_del(&db, "b");
    db_put(&db, "p/1", "new");
    assert!(reader.is_read_only());
    let snap = reader.snapshot_ts();
    let ts = committed(reader.commit(), "read-only T");
    assert_eq!(
        ts, snap,
        "a read-only commit returns its snapshot timestamp"
    );
    put(&mut writer, "out", "x");
    if is_ser(iso) {
        conflict(
            writer.commit(),
            ConflictKind::ReadWrite,
            "a",
            None,
            "writer",
        );
        assert_eq!(latest(&db, "out"), None);
    } else {
        committed(writer.commit(), "writer (SI)");
    }
}

// T scan(m/) -> empty | other w(m/1) c | T w(a) c -> Serializable: Phantom on m/1, range m/.
// Also when the scan iterator was created and dropped without being advanced.
fn empty_scan_registers_its_range(iso: Isolation) {
    let db = db_with(&[("a", "1"), ("z", "26")]);
    for advanced in [true, false] {
        let mut t = db.begin_with(iso);
        let key = if advanced { "m/1" } else { "m/2" };
        if advanced {
            assert_eq!(t.scan_prefix("m/").next(), None);
        } else {
            drop(t.scan_prefix("m/"));
        }
        db_put(&db, key, "new");
        put(&mut t, "a", "2");
        let what = format!("T (scan advanced: {advanced})");
        if is_ser(iso) {
            conflict(
                t.commit(),
                ConflictKind::Phantom,
                key,
                Some(half_open(b"m/", b"m0")),
                &what,
            );
        } else {
            committed(t.commit(), &what);
        }
    }
    // An empty scan whose range stays empty (writes land just outside it) does not conflict.
    let mut t = db.begin_with(iso);
    assert_eq!(t.scan_prefix("q/").count(), 0);
    db_put(&db, "q", "outside, below");
    db_put(&db, "q0", "outside, above");
    db_put(&db, "q.", "outside, below '/'");
    put(&mut t, "a", "3");
    committed(t.commit(), "T (nothing landed in q/)");
}

/// Opens a transaction, lets `read` read through it, commits `other` (auto-commit puts), then
/// commits the transaction with one unrelated write.
fn read_then_commit(
    db: &Db,
    iso: Isolation,
    read: impl FnOnce(&Transaction),
    others: &[&[u8]],
) -> snapkv::Result<Ts> {
    let mut t = db.begin_with(iso);
    read(&t);
    for k in others {
        db_put(db, k, "other");
    }
    put(&mut t, "unrelated", "w");
    t.commit()
}

// Range bounds are validated exactly: T scan(range) | other w(k) | T w(unrelated) c, for k on
// and just outside each bound. Serializable aborts exactly when k lies in the requested range
// (reporting that range), however little of the scan was consumed; SI never aborts.
fn scan_bounds_are_validated_exactly(iso: Isolation) {
    let ser = is_ser(iso);
    let inc = |s: &[u8]| Bound::Included(Bytes::copy_from_slice(s));
    let exc = |s: &[u8]| Bound::Excluded(Bytes::copy_from_slice(s));
    let check = |r: snapkv::Result<Ts>, hit: Option<(&[u8], KeyRange)>, what: &str| match hit {
        Some((key, range)) if ser => conflict(r, ConflictKind::Phantom, key, Some(range), what),
        _ => {
            committed(r, what);
        }
    };
    // [m, n): "m" and "m\xff" are in, "n" and "l\xff" are out.
    for (k, inside) in [
        (&b"n"[..], false),
        (&b"l\xff"[..], false),
        (&b"m"[..], true),
        (&b"m\xff\xff"[..], true),
    ] {
        let db = db_with(&[("a", "1")]);
        let r = read_then_commit(
            &db,
            iso,
            |t| assert_eq!(t.range(b"m".as_slice()..b"n".as_slice()).count(), 0),
            &[k],
        );
        let hit = inside.then(|| (k, (inc(b"m"), exc(b"n"))));
        check(r, hit, &format!("[m, n) vs {k:?}"));
    }
    // [m, n]: "n" is in.
    let db = db_with(&[("a", "1")]);
    let r = read_then_commit(
        &db,
        iso,
        |t| assert_eq!(t.range(b"m".as_slice()..=b"n".as_slice()).count(), 0),
        &[b"n".as_slice()],
    );
    check(r, Some((&b"n"[..], (inc(b"m"), inc(b"n")))), "[m, n] vs n");
    // (m, n) via explicit bounds: "m" is out.
    let db = db_with(&[("a", "1")]);
    let r = read_then_commit(
        &db,
        iso,
        |t| {
            let range = (Bound::Excluded(&b"m"[..]), Bound::Excluded(&b"n"[..]));
            assert_eq!(t.range(range).count(), 0);
        },
        &[b"m".as_slice()],
    );
    check(r, None, "(m, n) vs m");
    // A prefix of 0xff bytes has no upper bound: inserting [ff ff 01] is a phantom,
    // [fe ff] is not.
    for (k, inside) in [(&b"\xfe\xff"[..], false), (&b"\xff\xff\x01"[..], true)] {
        let db = db_with(&[("a", "1")]);
        let r = read_then_commit(
            &db,
            iso,
            |t| assert_eq!(t.scan_prefix(b"\xff").count(), 0),
            &[k],
        );
        let hit = inside.then(|| (k, (inc(b"\xff"), Bound::Unbounded)));
        check(r, hit, &format!("prefix ff vs {k:?}"));
    }
    // A scan consumed only one item still covers its whole range, at the far end too.
    let db = db_with(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let r = read_then_commit(
        &db,
        iso,
        |t| {
            let first = t.range(b"a".as_slice()..).next();
            assert!(
                matches!(first, Some((ref k, _)) if &k[..] == b"a"),
                "{first:?}"
            );
        },
        &[b"zzz".as_slice()],
    );
    check(
        r,
        Some((&b"zzz"[..], (inc(b"a"), Bound::Unbounded))),
        "partly consumed",
    );
    // A reverse scan that consumed only the last item covers its whole range, too.
    let db = db_with(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let r = read_then_commit(
        &db,
        iso,
        |t| {
            let last = t.range(..).next_back();
            assert!(
                matches!(last, Some((ref k, _)) if &k[..] == b"c"),
                "{last:?}"
            );
        },
        &[b"0".as_slice()],
    );
    check(
        r,
        Some((&b"0"[..], (Bound::Unbounded, Bound::Unbounded))),
        "reverse",
    );
    // A range whose start lies after its end holds no key and registers nothing.
    let db = db_with(&[("a", "1")]);
    let r = read_then_commit(
        &db,
        iso,
        |t| {
            let backwards = (Bound::Included(&b"n"[..]), Bound::Excluded(&b"m"[..]));
            assert_eq!(t.range(backwards).count(), 0);
        },
        &[b"m".as_slice(), b"m5", b"n"],
    );
    check(r, None, "empty range [n, m)");
}

// T scan(p/) -> p/a, p/b | other w(p/a=2) or delete(p/b) or w(p/c) | T w(unrelated) c ->
// Serializable: ReadWrite on p/a, ReadWrite on p/b, Phantom on p/c, each reporting range p/.
fn scan_conflict_kinds(iso: Isolation) {
    let cases: [(&str, Option<&str>, ConflictKind); 3] = [
        ("p/a", Some("2"), ConflictKind::ReadWrite),
        ("p/b", None, ConflictKind::ReadWrite),
        ("p/c", Some("3"), ConflictKind::Phantom),
    ];
    for (key, value, kind) in cases {
        let db = db_with(&[("p/a", "1"), ("p/b", "1")]);
        let mut t = db.begin_with(iso);
        assert_eq!(scan_keys(&t, "p/"), ["p/a", "p/b"]);
        match value {
            Some(v) => db_put(&db, key, v),
            None => db_del(&db, key),
        };
        put(&mut t, "unrelated", "w");
        let what = format!("{key} -> {value:?}");
        if is_ser(iso) {
            conflict(t.commit(), kind, key, Some(half_open(b"p/", b"p0")), &what);
        } else {
            committed(t.commit(), &what);
        }
    }
}

// T r(k) -> absent | other w(k) c | T w(out) c -> Serializable: ReadWrite on k.
// T r(d) -> present | other delete(d) c | T w(out) c -> Serializable: ReadWrite on d.
// T r(u) -> absent | other w(v) c (a different key) | T w(out) c -> commits at both levels.
fn absent_and_deleted_key_reads_are_tracked(iso: Isolation) {
    let db = db_with(&[("d", "1")]);
    let mut t = db.begin_with(iso);
    assert_eq!(get(&t, "k"), None);
    db_put(&db, "k", "v");
    put(&mut t, "out", "x");
    if is_ser(iso) {
        conflict(
            t.commit(),
            ConflictKind::ReadWrite,
            "k",
            None,
            "absent read",
        );
    } else {
        committed(t.commit(), "absent read (SI)");
    }

    let mut t = db.begin_with(iso);
    assert_eq!(get(&t, "d"), some("1"));
    db_del(&db, "d");
    put(&mut t, "out", "y");
    if is_ser(iso) {
        conflict(
            t.commit(),
            ConflictKind::ReadWrite,
            "d",
            None,
            "deleted read",
        );
    } else {
        committed(t.commit(), "deleted read (SI)");
    }

    let mut t = db.begin_with(iso);
    assert_eq!(get(&t, "u"), None);
    db_put(&db, "v", "neighbour");
    db_put(&db, "uu", "neighbour");
    put(&mut t, "out", "z");
    committed(t.commit(), "a write to another key is no conflict");
}

// T get_untracked(hint) snapshot().get(cache) snapshot().scan_prefix(s/) | other w(hint)
// w(cache) w(s/1) | T w(out) c -> commits at both levels. The same reads tracked: Serializable
// aborts (ReadWrite on hint).
fn untracked_reads_do_not_conflict(iso: Isolation) {
    let db = db_with(&[("hint", "1"), ("cache", "1")]);
    let mut t = db.begin_with(iso);
    assert!(matches!(t.get_untracked("hint"), Ok(Some(v)) if &v[..] == b"1"));
    assert!(matches!(t.snapshot().get("cache"), Ok(Some(v)) if &v[..] == b"1"));
    assert_eq!(t.snapshot().scan_prefix("s/").count(), 0);
    db_put(&db, "hint", "2");
    db_put(&db, "cache", "2");
    db_put(&db, "s/1", "new");
    put(&mut t, "out", "x");
    committed(t.commit(), "untracked reads are not validated");

    let mut t = db.begin_with(iso);
    assert_eq!(get(&t, "hint"), some("2"));
    assert_eq!(get(&t, "cache"), some("2"));
    db_put(&db, "hint", "3");
    put(&mut t, "out", "y");
    if is_ser(iso) {
        conflict(t.commit(), ConflictKind::ReadWrite, "hint", None, "tracked");
        assert_eq!(latest(&db, "out"), some("x"));
    } else {
        committed(t.commit(), "tracked read (SI)");
    }
}

// Own writes:
// (a) T scan(p/) -> empty, w(p/1) c -> commits: an own insert into a scanned range is no phantom.
// (b) T r(x) w(x) | other w(x) c | T c -> WriteWrite on x (the write check comes first).
// (c) T scan(p/) w(p/2) | other w(p/2) c | T c -> WriteWrite on p/2, not Phantom.
// (d) T scan(p/) w(p/3) | other w(p/4) c | T c -> Serializable: Phantom on p/4 (own keys do
//     not mask others' inserts).
// (e) T w(k) r(k) delete(k) r(k) scan -> read-your-writes, before commit, at both levels.
fn own_writes_behave_sensibly(iso: Isolation) {
    let db = db_with(&[("x", "10")]);
    let p_range = || Some(half_open(b"p/", b"p0"));

    let mut t = db.begin_with(iso);
    assert_eq!(scan_keys(&t, "p/"), Vec::<String>::new());
    put(&mut t, "p/1", "mine");
    assert_eq!(scan_keys(&t, "p/"), ["p/1"]);
    assert_eq!(get(&t, "p/1"), some("mine"));
    committed(t.commit(), "(a) own insert into the scanned range");

    let mut t = db.begin_with(iso);
    let x = num(&t, "x");
    put(&mut t, "x", (x + 1).to_string());
    db_put(&db, "x", "100");
    conflict(t.commit(), ConflictKind::WriteWrite, "x", None, "(b)");
    assert_eq!(latest(&db, "x"), some("100"));

    let mut t = db.begin_with(iso);
    assert_eq!(scan_keys(&t, "p/"), ["p/1"]);
    put(&mut t, "p/2", "mine");
    db_put(&db, "p/2", "theirs");
    conflict(t.commit(), ConflictKind::WriteWrite, "p/2", None, "(c)");
    assert_eq!(latest(&db, "p/2"), some("theirs"));

    let mut t = db.begin_with(iso);
    assert_eq!(scan_keys(&t, "p/"), ["p/1", "p/2"]);
    put(&mut t, "p/3", "mine");
    db_put(&db, "p/4", "theirs");
    if is_ser(iso) {
        conflict(t.commit(), ConflictKind::Phantom, "p/4", p_range(), "(d)");
        assert_eq!(latest(&db, "p/3"), None);
    } else {
        committed(t.commit(), "(d) SI");
        assert_eq!(latest(&db, "p/3"), some("mine"));
    }

    let mut t = db.begin_with(iso);
    put(&mut t, "k", "v");
    assert_eq!(get(&t, "k"), some("v"));
    del(&mut t, "k");
    assert_eq!(get(&t, "k"), None);
    del(&mut t, "p/1");
    assert!(!scan_keys(&t, "p/").contains(&"p/1".to_owned()));
    assert_eq!(
        latest(&db, "p/1"),
        some("mine"),
        "own delete visible outside"
    );
    committed(t.commit(), "(e)");
    assert_eq!((latest(&db, "k"), latest(&db, "p/1")), (None, None));
}
