//! The isolation anomaly matrix, Hermitage style: one scripted interleaving per anomaly, each
//! run under both isolation levels, asserting what each level must prevent and documenting
//! what snapshot isolation allows. Transactions are optimistic, so where Hermitage's
//! PostgreSQL would block a writer, here the writer proceeds and the conflict surfaces at
//! commit (first committer wins).
//!
//! | anomaly                                   | Snapshot  | Serializable | test |
//! |-------------------------------------------|-----------|--------------|------|
//! | G0 dirty write                            | prevented | prevented    | `g0_dirty_write` |
//! | G1a aborted read                          | prevented | prevented    | `g1a_aborted_read` |
//! | G1b intermediate read                     | prevented | prevented    | `g1b_intermediate_read` |
//! | G1c circular information flow             | prevented | prevented    | `g1c_circular_information_flow` |
//! | OTV observed transaction vanishes         | prevented | prevented    | `otv_observed_transaction_vanishes` |
//! | PMP predicate many preceders (read)       | prevented | prevented    | `pmp_predicate_many_preceders` |
//! | PMP predicate many preceders (write)      | prevented | prevented    | `pmp_write_predicate_many_preceders` |
//! | P4 lost update                            | prevented | prevented    | `p4_lost_update` |
//! | G-single read skew                        | prevented | prevented    | `g_single_read_skew`, `g_single_read_skew_predicate`, `g_single_write_skew_on_read_key` |
//! | G2-item write skew                        | **allowed** | prevented  | `g2_item_write_skew` |
//! | G2 anti-dependency cycle with predicates  | **allowed** | prevented  | `g2_predicate_anti_dependency_cycle` |
//! | Fekete/O'Neil/O'Neil read-only anomaly    | **allowed** | prevented (the read-only transaction commits) | `read_only_transaction_anomaly` |
//! | long fork                                 | prevented | prevented    | `long_fork_scripted`, `long_fork_concurrent` |
//! | unique insert race ("insert if absent")   | **allowed** | prevented  | `unique_insert_scripted`, `unique_insert_concurrent` |

use std::sync::{Arc, Barrier};

use snapkv::{ConflictKind, Db, Error, Isolation, Transaction};

const LEVELS: [Isolation; 2] = [Isolation::Snapshot, Isolation::Serializable];

fn db_with(pairs: &[(&str, &str)]) -> Db {
    let db = Db::new();
    for (k, v) in pairs {
        db.put(k, v).expect("setup write");
    }
    db
}

fn text(v: Option<bytes::Bytes>) -> Option<String> {
    v.map(|b| String::from_utf8(b.to_vec()).expect("utf-8 test value"))
}

fn get(t: &Transaction, k: &str) -> Option<String> {
    text(t.get(k).expect("read"))
}

fn latest(db: &Db, k: &str) -> Option<String> {
    text(db.get(k).expect("read"))
}

fn scan(t: &Transaction, prefix: &str) -> Vec<(String, String)> {
    t.scan_prefix(prefix)
        .map(|(k, v)| (text(Some(k)).unwrap(), text(Some(v)).unwrap()))
        .collect()
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

/// Asserts `r` is a conflict of `kind` and returns the key it names.
fn conflict(r: Result<u64, Error>, kind: ConflictKind, what: &str) -> Error {
    match r {
        Err(e @ Error::Conflict { .. }) => {
            let Error::Conflict { kind: got, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*got, kind, "{what}: wrong conflict kind: {e}");
            assert!(e.is_retryable());
            e
        }
        other => panic!("{what}: expected a {kind} conflict, got {other:?}"),
    }
}

fn conflict_key(e: &Error) -> &[u8] {
    match e {
        Error::Conflict { key, .. } => key,
        _ => unreachable!("checked by `conflict`"),
    }
}

// T1 w(x) T2 w(x) T1 w(y) T1 c T2 w(y) T2 c -> T2 aborts; x and y both from T1.
#[test]
fn g0_dirty_write() {
    for iso in LEVELS {
        let db = db_with(&[("x", "10"), ("y", "20")]);
        let mut t1 = db.begin_with(iso);
        let mut t2 = db.begin_with(iso);
        t1.put("x", "11").unwrap();
        t2.put("x", "12").unwrap();
        t1.put("y", "21").unwrap();
        t1.commit().expect("first committer wins");
        t2.put("y", "22").unwrap();
        let e = conflict(t2.commit(), ConflictKind::WriteWrite, "G0");
        assert_eq!(conflict_key(&e), b"x");
        assert_eq!(
            (latest(&db, "x"), latest(&db, "y")),
            (some("11"), some("21")),
            "{iso:?}"
        );
    }
}

// T1 w(x=101) T2 r(x) T1 abort T2 r(x) T2 c -> T2 never reads 101.
#[test]
fn g1a_aborted_read() {
    for iso in LEVELS {
        let db = db_with(&[("x", "10")]);
        let mut t1 = db.begin_with(iso);
        let t2 = db.begin_with(iso);
        t1.put("x", "101").unwrap();
        assert_eq!(get(&t2, "x"), some("10"));
        assert_eq!(
            latest(&db, "x"),
            some("10"),
            "uncommitted write visible outside"
        );
        t1.rollback();
        assert_eq!(get(&t2, "x"), some("10"));
        t2.commit().expect("read-only commit");
        assert_eq!(latest(&db, "x"), some("10"), "{iso:?}");
    }
}

// T1 w(x=101) T2 r(x) T1 w(x=11) T1 c T2 r(x) -> T2 never reads the intermediate 101.
#[test]
fn g1b_intermediate_read() {
    for iso in LEVELS {
        let db = db_with(&[("x", "10")]);
        let mut t1 = db.begin_with(iso);
        let t2 = db.begin_with(iso);
        t1.put("x", "101").unwrap();
        assert_eq!(get(&t2, "x"), some("10"));
        t1.put("x", "11").unwrap();
        t1.commit().unwrap();
        assert_eq!(get(&t2, "x"), some("10"), "{iso:?}: snapshot moved");
        t2.commit().unwrap();
        let t3 = db.begin_with(iso);
        assert_eq!(
            get(&t3, "x"),
            some("11"),
            "{iso:?}: the intermediate value survived"
        );
    }
}

// T1 w(x) T2 w(y) T1 r(y) T2 r(x) T1 c T2 c -> neither reads the other's write (no cycle of
// write-read dependencies). Under SI both commit (their writes are disjoint); under
// Serializable the second committer aborts (T1 -rw-> T2 -rw-> T1 is a G2 cycle too).
#[test]
fn g1c_circular_information_flow() {
    for iso in LEVELS {
        let db = db_with(&[("x", "10"), ("y", "20")]);
        let mut t1 = db.begin_with(iso);
        let mut t2 = db.begin_with(iso);
        t1.put("x", "11").unwrap();
        t2.put("y", "22").unwrap();
        assert_eq!(get(&t1, "y"), some("20"), "T1 saw T2's uncommitted write");
        assert_eq!(get(&t2, "x"), some("10"), "T2 saw T1's uncommitted write");
        t1.commit().unwrap();
        match iso {
            Isolation::Serializable => {
                let e = conflict(t2.commit(), ConflictKind::ReadWrite, "G1c/ser");
                assert_eq!(conflict_key(&e), b"x");
            }
            _ => {
                t2.commit().expect("SI: disjoint writes commit");
            }
        }
    }
}

// T1 w(x) w(y) T2 w(x) w(y) T1 c T3 r(x) T2 c T3 r(y) -> T3 sees all of T1 and nothing of T2.
#[test]
fn otv_observed_transaction_vanishes() {
    for iso in LEVELS {
        let db = db_with(&[("x", "10"), ("y", "20")]);
        let mut t1 = db.begin_with(iso);
        let mut t2 = db.begin_with(iso);
        t1.put("x", "11").unwrap();
        t1.put("y", "19").unwrap();
        t2.put("x", "12").unwrap();
        t2.put("y", "18").unwrap();
        t1.commit().unwrap();
        let t3 = db.begin_with(iso);
        assert_eq!(get(&t3, "x"), some("11"));
        conflict(t2.commit(), ConflictKind::WriteWrite, "OTV");
        assert_eq!(
            get(&t3, "y"),
            some("19"),
            "{iso:?}: T1's write vanished from T3's view"
        );
        t3.commit().unwrap();
    }
}

// T1 scan(p) T2 insert into p T2 c T1 scan(p) -> T1 sees the same set twice.
#[test]
fn pmp_predicate_many_preceders() {
    for iso in LEVELS {
        let db = db_with(&[("item/1", "10"), ("item/2", "20")]);
        let t1 = db.begin_with(iso);
        let first = scan(&t1, "item/");
        let mut t2 = db.begin_with(iso);
        t2.put("item/3", "30").unwrap();
        t2.commit().unwrap();
        assert_eq!(
            scan(&t1, "item/"),
            first,
            "{iso:?}: predicate result changed"
        );
        assert_eq!(first.len(), 2);
        assert_eq!(t1.range(..).rev().count(), 2, "reverse scan changed too");
        t1.commit().expect("read-only commit");
    }
}

// T1 updates every item (scan + write) T2 deletes item/2 T1 c T2 c -> T2 aborts: it would
// delete a row whose new version it never saw.
#[test]
fn pmp_write_predicate_many_preceders() {
    for iso in LEVELS {
        let db = db_with(&[("item/1", "10"), ("item/2", "20")]);
        let mut t1 = db.begin_with(iso);
        let mut t2 = db.begin_with(iso);
        for (k, v) in scan(&t1, "item/") {
            let bumped = v.parse::<u32>().unwrap() + 10;
            t1.put(k, bumped.to_string()).unwrap();
        }
        assert!(t2.scan_prefix("item/").any(|(k, _)| &k[..] == b"item/2"));
        t2.delete("item/2").unwrap();
        t1.commit().unwrap();
        let e = conflict(t2.commit(), ConflictKind::WriteWrite, "PMP-write");
        assert_eq!(conflict_key(&e), b"item/2");
        assert_eq!(latest(&db, "item/2"), some("30"), "{iso:?}");
    }
}

// T1 r(x) T2 r(x) T1 w(x) T2 w(x) T1 c T2 c -> T2 aborts: no update is lost.
#[test]
fn p4_lost_update() {
    for iso in LEVELS {
        let db = db_with(&[("x", "10")]);
        let mut t1 = db.begin_with(iso);
        let mut t2 = db.begin_with(iso);
        let a: u32 = get(&t1, "x").unwrap().parse().unwrap();
        let b: u32 = get(&t2, "x").unwrap().parse().unwrap();
        t1.put("x", (a + 1).to_string()).unwrap();
        t2.put("x", (b + 1).to_string()).unwrap();
        t1.commit().unwrap();
        conflict(t2.commit(), ConflictKind::WriteWrite, "P4");
        assert_eq!(latest(&db, "x"), some("11"), "{iso:?}");
    }
}

// T1 r(x) T2 w(x) w(y) T2 c T1 r(y) -> T1 reads y as of its snapshot (no read skew).
#[test]
fn g_single_read_skew() {
    for iso in LEVELS {
        let db = db_with(&[("x", "10"), ("y", "20")]);
        let t1 = db.begin_with(iso);
        assert_eq!(get(&t1, "x"), some("10"));
        let mut t2 = db.begin_with(iso);
        t2.put("x", "12").unwrap();
        t2.put("y", "18").unwrap();
        t2.commit().unwrap();
        assert_eq!(get(&t1, "y"), some("20"), "{iso:?}: read skew");
        t1.commit().expect("read-only commit");
    }
}

// Predicate read skew: T1 scan T2 moves value between keys T2 c T1 scan -> same sum.
#[test]
fn g_single_read_skew_predicate() {
    for iso in LEVELS {
        let db = db_with(&[("acct/a", "10"), ("acct/b", "20")]);
        let t1 = db.begin_with(iso);
        let sum = |t: &Transaction| -> u32 {
            scan(t, "acct/")
                .iter()
                .map(|(_, v)| v.parse::<u32>().unwrap())
                .sum()
        };
        assert_eq!(get(&t1, "acct/a"), some("10"));
        let mut t2 = db.begin_with(iso);
        t2.put("acct/a", "5").unwrap();
        t2.put("acct/b", "25").unwrap();
        t2.commit().unwrap();
        assert_eq!(sum(&t1), 30, "{iso:?}: predicate read skew");
        t1.commit().unwrap();
    }
}

// T1 r(x) T2 w(x) w(y) T2 c T1 w(y) T1 c -> T1 aborts (it would overwrite y based on a stale x).
#[test]
fn g_single_write_skew_on_read_key() {
    for iso in LEVELS {
        let db = db_with(&[("x", "10"), ("y", "20")]);
        let mut t1 = db.begin_with(iso);
        assert_eq!(get(&t1, "x"), some("10"));
        let mut t2 = db.begin_with(iso);
        t2.put("x", "12").unwrap();
        t2.put("y", "18").unwrap();
        t2.commit().unwrap();
        t1.put("y", "30").unwrap();
        conflict(t1.commit(), ConflictKind::WriteWrite, "G-single write");
        assert_eq!(latest(&db, "y"), some("18"), "{iso:?}");
    }
}

// Two doctors on call. T1 r(x) r(y) T2 r(x) r(y) T1 w(x) T2 w(y) T1 c T2 c.
// SI: both commit and nobody is on call (write skew allowed). Serializable: T2 aborts.
#[test]
fn g2_item_write_skew() {
    for iso in LEVELS {
        let db = db_with(&[("oncall/alice", "yes"), ("oncall/bob", "yes")]);
        let on_call = |t: &Transaction| {
            ["oncall/alice", "oncall/bob"]
                .iter()
                .filter(|k| get(t, k).as_deref() == Some("yes"))
                .count()
        };
        let mut t1 = db.begin_with(iso);
        let mut t2 = db.begin_with(iso);
        assert_eq!(on_call(&t1), 2);
        assert_eq!(on_call(&t2), 2);
        t1.put("oncall/alice", "no").unwrap();
        t2.put("oncall/bob", "no").unwrap();
        t1.commit().unwrap();
        let second = t2.commit();
        let after = on_call(&db.begin());
        match iso {
            Isolation::Serializable => {
                let e = conflict(second, ConflictKind::ReadWrite, "G2-item/ser");
                assert_eq!(conflict_key(&e), b"oncall/alice");
                assert_eq!(after, 1, "serializable kept the invariant");
            }
            _ => {
                second.expect("SI allows write skew");
                assert_eq!(
                    after, 0,
                    "SI: write skew broke the invariant, as documented"
                );
            }
        }
    }
}

// T1 scan(p) T2 scan(p) T1 insert p/3 T2 insert p/4 T1 c T2 c: each inserts on the premise of
// the other's absence. SI: both commit. Serializable: T2 aborts with a phantom on the range.
#[test]
fn g2_predicate_anti_dependency_cycle() {
    for iso in LEVELS {
        let db = db_with(&[("shift/1", "10"), ("shift/2", "20")]);
        let total = |t: &Transaction| -> u32 {
            scan(t, "shift/")
                .iter()
                .map(|(_, v)| v.parse::<u32>().unwrap())
                .sum()
        };
        let mut t1 = db.begin_with(iso);
        let mut t2 = db.begin_with(iso);
        assert_eq!(total(&t1), 30);
        assert_eq!(total(&t2), 30);
        t1.put("shift/3", "30").unwrap();
        t2.put("shift/4", "42").unwrap();
        t1.commit().unwrap();
        let second = t2.commit();
        match iso {
            Isolation::Serializable => {
                let e = conflict(second, ConflictKind::Phantom, "G2/ser");
                assert_eq!(conflict_key(&e), b"shift/3");
                let Error::Conflict { range, .. } = &e else {
                    unreachable!()
                };
                assert!(range.is_some(), "a phantom names the scanned range: {e}");
                assert!(e.to_string().contains("shift/"), "{e}");
            }
            _ => {
                second.expect("SI allows the predicate anti-dependency cycle");
                assert_eq!(total(&db.begin()), 102);
            }
        }
    }
}

// Fekete, O'Neil & O'Neil, "A read-only transaction anomaly under snapshot isolation" (2004).
// Checking X = 0, savings Y = 0. T2 (withdraw 10 from X, penalty 1 if X + Y would go
// negative) reads X, Y; T1 deposits 20 into Y and commits; T3 (read-only report) reads X = 0,
// Y = 20 and commits; T2 writes X = -11 and commits. T3's view puts T1 before T3 before T2,
// but T2 did not see T1's deposit: a cycle that exists only because of the read-only T3.
// SI: all commit. Serializable: T2 aborts, and T3 — read-only — still commits.
#[test]
fn read_only_transaction_anomaly() {
    for iso in LEVELS {
        let db = db_with(&[("X", "0"), ("Y", "0")]);
        let num = |t: &Transaction, k| get(t, k).unwrap().parse::<i64>().unwrap();
        let mut t2 = db.begin_with(iso);
        let (x, y) = (num(&t2, "X"), num(&t2, "Y"));
        let mut t1 = db.begin_with(iso);
        let y1 = num(&t1, "Y");
        t1.put("Y", (y1 + 20).to_string()).unwrap();
        t1.commit().unwrap();
        let t3 = db.begin_with(iso);
        assert_eq!((num(&t3, "X"), num(&t3, "Y")), (0, 20));
        assert!(t3.is_read_only());
        t3.commit().expect("a read-only transaction never aborts");
        let penalty = if x + y - 10 < 0 { 1 } else { 0 };
        t2.put("X", (x - 10 - penalty).to_string()).unwrap();
        let last = t2.commit();
        match iso {
            Isolation::Serializable => {
                let e = conflict(last, ConflictKind::ReadWrite, "read-only anomaly/ser");
                assert_eq!(conflict_key(&e), b"Y");
                assert_eq!(latest(&db, "X"), some("0"));
            }
            _ => {
                last.expect("SI allows the read-only anomaly");
                assert_eq!(latest(&db, "X"), some("-11"), "the penalty was charged");
            }
        }
    }
}

// Two independent writers (x, y) and readers between their commits: every pair of readers
// observes the writes in the same order (one's view contains the other's).
#[test]
fn long_fork_scripted() {
    for iso in LEVELS {
        let db = db_with(&[("x", "0"), ("y", "0")]);
        let view = |t: &Transaction| (get(t, "x"), get(t, "y"));
        let mut w1 = db.begin_with(iso);
        let mut w2 = db.begin_with(iso);
        w1.put("x", "1").unwrap();
        w2.put("y", "1").unwrap();
        let r0 = db.begin_with(iso);
        w1.commit().unwrap();
        let r1 = db.begin_with(iso);
        w2.commit().unwrap();
        let r2 = db.begin_with(iso);
        assert_eq!(view(&r0), (some("0"), some("0")));
        assert_eq!(view(&r1), (some("1"), some("0")));
        assert_eq!(view(&r2), (some("1"), some("1")), "{iso:?}");
    }
}

// Concurrent long fork: two writers bump x and y independently; readers record (x, y). All
// observations must be totally ordered componentwise: two readers seeing (x1 < x2, y1 > y2)
// would have observed the two writers' commits in opposite orders.
#[test]
fn long_fork_concurrent() {
    for iso in LEVELS {
        let db = db_with(&[("x", "0"), ("y", "0")]);
        let rounds = 2_000u32;
        let start = Barrier::new(4);
        let seen: Vec<Vec<(u32, u32)>> = std::thread::scope(|s| {
            for key in ["x", "y"] {
                let (db, start) = (&db, &start);
                s.spawn(move || {
                    start.wait();
                    for i in 1..=rounds {
                        db.update_with(iso, |t| t.put(key, i.to_string())).unwrap();
                    }
                });
            }
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let (db, start) = (&db, &start);
                    s.spawn(move || {
                        start.wait();
                        let mut seen = Vec::new();
                        for _ in 0..rounds {
                            let t = db.begin_with(iso);
                            let n = |k| get(&t, k).unwrap().parse::<u32>().unwrap();
                            seen.push((n("x"), n("y")));
                            t.commit().unwrap();
                        }
                        seen
                    })
                })
                .collect();
            readers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let mut all: Vec<(u32, u32)> = seen.concat();
        all.sort_unstable();
        for w in all.windows(2) {
            assert!(
                w[0].1 <= w[1].1,
                "{iso:?}: long fork: {:?} and {:?} order the writers differently",
                w[0],
                w[1]
            );
        }
    }
}

// "Insert if no key with this prefix exists", scripted: T1 and T2 both see the prefix empty
// and insert different keys. SI: both commit (two rows where one was meant); Serializable: the
// empty scan registered its range, so T2 aborts with a phantom.
#[test]
fn unique_insert_scripted() {
    for iso in LEVELS {
        let db = Db::new();
        let mut t1 = db.begin_with(iso);
        let mut t2 = db.begin_with(iso);
        assert_eq!(t1.scan_prefix("email/ada@x/").count(), 0);
        assert_eq!(t2.scan_prefix("email/ada@x/").count(), 0);
        t1.put("email/ada@x/user1", "").unwrap();
        t2.put("email/ada@x/user2", "").unwrap();
        t1.commit().unwrap();
        let second = t2.commit();
        let rows = db.snapshot().scan_prefix("email/ada@x/").count();
        match iso {
            Isolation::Serializable => {
                conflict(second, ConflictKind::Phantom, "unique insert/ser");
                assert_eq!(rows, 1);
            }
            _ => {
                second.expect("SI lets both inserts through");
                assert_eq!(rows, 2, "SI: the uniqueness invariant broke, as documented");
            }
        }
    }
}

// The same with 8 threads racing per round: under Serializable exactly one insert per
// prefix succeeds, every round.
#[test]
fn unique_insert_concurrent() {
    let db = Db::new();
    let threads = 8;
    let rounds = 40;
    let barrier = Arc::new(Barrier::new(threads));
    std::thread::scope(|s| {
        for t in 0..threads {
            let (db, barrier) = (&db, Arc::clone(&barrier));
            s.spawn(move || {
                for r in 0..rounds {
                    let prefix = format!("email/user{r}@x/");
                    barrier.wait();
                    db.update_with(Isolation::Serializable, |txn| {
                        if txn.scan_prefix(&prefix).next().is_some() {
                            return Ok(false);
                        }
                        txn.put(format!("{prefix}{t}"), "")?;
                        Ok(true)
                    })
                    .expect("update");
                }
            });
        }
    });
    let snap = db.snapshot();
    for r in 0..rounds {
        let n = snap.scan_prefix(format!("email/user{r}@x/")).count();
        assert_eq!(n, 1, "round {r}: {n} inserts succeeded");
    }
}

// A serializable read-only transaction never aborts, however much of what it read changed.
#[test]
fn serializable_read_only_never_aborts() {
    let db = db_with(&[("a", "1"), ("b", "2")]);
    let t = db.begin_with(Isolation::Serializable);
    assert_eq!(get(&t, "a"), some("1"));
    assert_eq!(get(&t, "missing"), None);
    assert_eq!(t.range(..).count(), 2);
    db.put("a", "9").unwrap();
    db.put("missing", "now here").unwrap();
    db.put("c", "3").unwrap();
    assert!(t.is_read_only());
    t.commit()
        .expect("read-only transactions cost no validation and never abort");
}

// Reads of absent keys are tracked: T reads "k" (absent), another commit creates it, T's
// write elsewhere then fails to commit.
#[test]
fn serializable_tracks_absent_keys() {
    let db = Db::new();
    let mut t = db.begin_with(Isolation::Serializable);
    assert_eq!(get(&t, "k"), None);
    db.put("k", "v").unwrap();
    t.put("other", "x").unwrap();
    let e = conflict(t.commit(), ConflictKind::ReadWrite, "absent key");
    assert_eq!(conflict_key(&e), b"k");
}

// An empty scan still registers its range: an insert into it makes the scanner abort.
#[test]
fn serializable_empty_scan_registers_its_range() {
    let db = db_with(&[("a", "1"), ("z", "26")]);
    let mut t = db.begin_with(Isolation::Serializable);
    assert_eq!(t.range(b"m".as_slice()..b"n".as_slice()).count(), 0);
    db.put("mm", "new").unwrap();
    t.put("a", "2").unwrap();
    let e = conflict(t.commit(), ConflictKind::Phantom, "empty scan");
    assert_eq!(conflict_key(&e), b"mm");
    // A write outside the scanned range does not conflict.
    let mut t = db.begin_with(Isolation::Serializable);
    assert_eq!(t.range(b"m".as_slice()..b"n".as_slice()).count(), 1);
    db.put("q", "outside").unwrap();
    t.put("a", "3").unwrap();
    t.commit().expect("no write inside the scanned range");
}

// Untracked reads (get_untracked, or the snapshot inside the transaction) do not conflict.
#[test]
fn untracked_reads_do_not_conflict() {
    let db = db_with(&[("hint", "1"), ("cache", "1")]);
    let mut t = db.begin_with(Isolation::Serializable);
    assert_eq!(text(t.get_untracked("hint").unwrap()), some("1"));
    assert_eq!(text(t.snapshot().get("cache").unwrap()), some("1"));
    db.put("hint", "2").unwrap();
    db.put("cache", "2").unwrap();
    t.put("out", "x").unwrap();
    t.commit().expect("untracked reads are not validated");
    // The same read, tracked, does conflict.
    let mut t = db.begin_with(Isolation::Serializable);
    assert_eq!(get(&t, "hint"), some("2"));
    db.put("hint", "3").unwrap();
    t.put("out", "y").unwrap();
    conflict(t.commit(), ConflictKind::ReadWrite, "tracked read");
}

// Snapshot-isolation transactions do not validate reads at all.
#[test]
fn snapshot_isolation_ignores_read_sets() {
    let db = db_with(&[("r", "1")]);
    let mut t = db.begin_with(Isolation::Snapshot);
    assert_eq!(get(&t, "r"), some("1"));
    assert_eq!(t.scan_prefix("p").count(), 0);
    db.put("r", "2").unwrap();
    db.put("p1", "x").unwrap();
    t.put("w", "x").unwrap();
    t.commit().expect("SI validates only the write set");
}
