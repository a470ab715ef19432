//! Model-based test of the whole single-threaded API surface.
//!
//! Random sequences of up to ~60 operations — blind puts and deletes, conditional writes,
//! snapshots taken and dropped, point reads and scans at any live snapshot (bounded, unbounded,
//! excluded bounds, prefixes; forward, reverse and interleaved `next`/`next_back`),
//! transactions at both isolation levels with their own reads, scans, writes and conditional
//! writes, commits, aborts and garbage collection — run against a [`Db`] and, step by step,
//! against a plain sequential model:
//!
//! * committed versions: `BTreeMap<(key, model ts), Option<value>>`, with the model's own
//!   commit counter (model ts `m` is the `m`-th successful commit);
//! * the store's commit timestamps are *mapped* (`store_ts[m]`), not predicted, since a
//!   serializable commit that fails read validation may consume one; the mapping is checked
//!   to be strictly increasing and to equal the visible timestamp right after each commit;
//! * every read result (values, versions, scans) comes from the model;
//! * every commit outcome is *predicted* by the model: success, a write-write conflict (SI,
//!   both levels), a read-write/phantom conflict (serializable), or a failed precondition —
//!   and the reported key/range must be one that really conflicts;
//! * after every explicit `collect_garbage` the exact number of keys and versions left (and
//!   the watermark and the report's counts) is predicted from the live snapshots.
//!
//! `PROPTEST_CASES` sets the number of sequences (default 8192, a few seconds).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use snapkv::{Bytes, ConflictKind, Db, Error, Isolation, Snapshot, SyncPolicy, Transaction};

/// The key space: shared prefixes, and a `0xff` byte to exercise the prefix upper bound.
const KEYS: [&[u8]; 6] = [b"a", b"ab", b"abc", b"a\xff", b"b", b"ba"];
/// Range bounds: every key plus points between, before and after them.
const BOUNDS: [&[u8]; 13] = [
    b"",
    b"a",
    b"a\x00",
    b"ab",
    b"abc",
    b"abd",
    b"a\xff",
    b"a\xff\x00",
    b"b",
    b"ba",
    b"bz",
    b"c",
    b"\xff",
];
/// Scan prefixes (the empty prefix is the whole key space).
const PREFIXES: [&[u8]; 7] = [b"", b"a", b"ab", b"abc", b"a\xff", b"b", b"c"];

type Key = Vec<u8>;
type Val = Vec<u8>;
type Writes = BTreeMap<Key, Option<Val>>;

#[derive(Clone, Debug)]
enum B {
    Unbounded,
    Included(usize),
    Excluded(usize),
}

#[derive(Clone, Debug)]
enum Scan {
    Range(B, B),
    Prefix(usize),
}

#[derive(Clone, Debug)]
enum Order {
    Forward,
    Reverse,
    /// Cycles through the pattern: `true` takes from the front, `false` from the back.
    Mixed(Vec<bool>),
}

/// Which version a conditional write expects.
#[derive(Clone, Debug)]
enum Expect {
    /// The one the model says is current (at the snapshot, for a transaction).
    Current,
    /// Absent.
    Absent,
    /// Some version the key had at some time (any write, tombstones included), if any.
    Old(usize),
    /// A version that never existed.
    Bogus,
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize, Val),
    Delete(usize),
    Cas(usize, Expect, Option<Val>),
    ReadLatest(usize),
    TakeSnapshot,
    DropSnapshot(usize),
    ReadAtSnapshot(usize, usize),
    /// `None`: a fresh snapshot.
    ScanAtSnapshot(Option<usize>, Scan, Order),
    /// `None`: `Db::begin` (the database's default level).
    Begin(Option<Isolation>),
    TxnPut(usize, usize, Val),
    TxnDelete(usize, usize),
    TxnGet(usize, usize),
    TxnScan(usize, Scan, Order),
    TxnCas(usize, usize, Expect, Option<Val>),
    Commit(usize),
    /// `true`: `rollback()`, `false`: drop.
    Abort(usize, bool),
    CollectGarbage,
    /// Durable runs only: every snapshot and transaction is dropped (transactions abort) and
    /// the directory is reopened; `true`: after `close`, `false`: after dropping the handle
    /// without it, as a crashed process leaves the directory (under `SyncPolicy::Never` every
    /// acknowledged commit was written to the operating system, which keeps it).
    Reopen(bool),
}

fn bound() -> impl Strategy<Value = B> {
    prop_oneof![
        1 => Just(B::Unbounded),
        2 => (0..BOUNDS.len()).prop_map(B::Included),
        2 => (0..BOUNDS.len()).prop_map(B::Excluded),
    ]
}

fn scan() -> impl Strategy<Value = Scan> {
    prop_oneof![
        3 => (bound(), bound()).prop_map(|(a, z)| Scan::Range(a, z)),
        2 => (0..PREFIXES.len()).prop_map(Scan::Prefix),
    ]
}

fn order() -> impl Strategy<Value = Order> {
    prop_oneof![
        2 => Just(Order::Forward),
        2 => Just(Order::Reverse),
        1 => proptest::collection::vec(any::<bool>(), 1..5).prop_map(Order::Mixed),
    ]
}

fn value() -> impl Strategy<Value = Val> {
    // Includes the empty value, which must not be confused with absence.
    proptest::collection::vec(0u8..4, 0..3)
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        3 => Just(Expect::Current),
        1 => Just(Expect::Absent),
        1 => (0..8usize).prop_map(Expect::Old),
        1 => Just(Expect::Bogus),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let k = || 0..KEYS.len();
    let i = || 0..6usize;
    let iso = prop_oneof![
        Just(None),
        Just(Some(Isolation::Snapshot)),
        Just(Some(Isolation::Serializable)),
    ];
    let db_ops = prop_oneof![
        4 => (k(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => k().prop_map(Op::Delete),
        2 => (k(), expect(), proptest::option::of(value())).prop_map(|(k, e, v)| Op::Cas(k, e, v)),
        1 => k().prop_map(Op::ReadLatest),
        3 => Just(Op::TakeSnapshot),
        1 => i().prop_map(Op::DropSnapshot),
        2 => (i(), k()).prop_map(|(s, k)| Op::ReadAtSnapshot(s, k)),
        2 => (proptest::option::of(i()), scan(), order())
            .prop_map(|(s, r, o)| Op::ScanAtSnapshot(s, r, o)),
        1 => Just(Op::CollectGarbage),
    ];
    let txn_ops = prop_oneof![
        3 => iso.prop_map(Op::Begin),
        4 => (i(), k(), value()).prop_map(|(t, k, v)| Op::TxnPut(t, k, v)),
        1 => (i(), k()).prop_map(|(t, k)| Op::TxnDelete(t, k)),
        3 => (i(), k()).prop_map(|(t, k)| Op::TxnGet(t, k)),
        3 => (i(), scan(), order()).prop_map(|(t, r, o)| Op::TxnScan(t, r, o)),
        1 => (i(), k(), expect(), proptest::option::of(value()))
            .prop_map(|(t, k, e, v)| Op::TxnCas(t, k, e, v)),
        3 => i().prop_map(Op::Commit),
        1 => (i(), any::<bool>()).prop_map(|(t, r)| Op::Abort(t, r)),
    ];
    prop_oneof![17 => db_ops, 19 => txn_ops]
}

/// The operations of a durable run: every operation, plus reopening the directory.
fn durable_op() -> impl Strategy<Value = Op> {
    prop_oneof![36 => op(), 2 => any::<bool>().prop_map(Op::Reopen)]
}

// ---------------------------------------------------------------------------------------------
// Ranges

fn bound_of(b: &B) -> Bound<&'static [u8]> {
    match *b {
        B::Unbounded => Bound::Unbounded,
        B::Included(i) => Bound::Included(BOUNDS[i]),
        B::Excluded(i) => Bound::Excluded(BOUNDS[i]),
    }
}

/// Whether `key` lies in the scan's key set (the specification, not the store's bounds).
fn in_scan(scan: &Scan, key: &[u8]) -> bool {
    match scan {
        Scan::Prefix(p) => key.starts_with(PREFIXES[*p]),
        Scan::Range(a, z) => {
            let lo = match bound_of(a) {
                Bound::Unbounded => true,
                Bound::Included(s) => key >= s,
                Bound::Excluded(s) => key > s,
            };
            let hi = match bound_of(z) {
                Bound::Unbounded => true,
                Bound::Included(e) => key <= e,
                Bound::Excluded(e) => key < e,
            };
            lo && hi
        }
    }
}

/// Whether an error's range is the scan as requested. For a prefix scan the store reports its
/// equivalent key range, which must start at the prefix and contain exactly the keys with it
/// (checked over the key space and the bound points).
fn same_range(scan: &Scan, got: &(Bound<Bytes>, Bound<Bytes>)) -> bool {
    let own = |b: Bound<&[u8]>| match b {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(k) => Bound::Included(Bytes::copy_from_slice(k)),
        Bound::Excluded(k) => Bound::Excluded(Bytes::copy_from_slice(k)),
    };
    match scan {
        Scan::Range(a, z) => *got == (own(bound_of(a)), own(bound_of(z))),
        Scan::Prefix(p) => {
            let contains = |k: &[u8]| {
                let lo = match &got.0 {
                    Bound::Unbounded => true,
                    Bound::Included(s) => k >= &s[..],
                    Bound::Excluded(s) => k > &s[..],
                };
                let hi = match &got.1 {
                    Bound::Unbounded => true,
                    Bound::Included(e) => k <= &e[..],
                    Bound::Excluded(e) => k < &e[..],
                };
                lo && hi
            };
            got.0 == Bound::Included(Bytes::copy_from_slice(PREFIXES[*p]))
                && KEYS
                    .iter()
                    .chain(BOUNDS.iter())
                    .all(|k| contains(k) == k.starts_with(PREFIXES[*p]))
        }
    }
}

/// Whether step `step` of a scan driven in `order` takes its item from the front end.
fn from_front(order: &Order, step: usize) -> bool {
    match order {
        Order::Forward => true,
        Order::Reverse => false,
        Order::Mixed(p) => p[step % p.len()],
    }
}

/// Consumes `it` in the given order, returning the items in the order they were yielded.
fn drive(
    mut it: impl DoubleEndedIterator<Item = (Bytes, Bytes)>,
    order: &Order,
) -> Vec<(Key, Val)> {
    let mut out = Vec::new();
    let mut step = 0usize;
    loop {
        let front = from_front(order, step);
        step += 1;
        let item = if front { it.next() } else { it.next_back() };
        match item {
            Some((k, v)) => out.push((k.to_vec(), v.to_vec())),
            None => break,
        }
        assert!(step < 1000, "an iterator over six keys yielded too much");
    }
    out
}

/// What [`drive`] must yield for a scan whose result in key order is `sorted`.
fn drive_model(sorted: Vec<(Key, Val)>, order: &Order) -> Vec<(Key, Val)> {
    let mut q: VecDeque<_> = sorted.into();
    let mut out = Vec::new();
    let mut step = 0usize;
    loop {
        let front = from_front(order, step);
        step += 1;
        match if front { q.pop_front() } else { q.pop_back() } {
            Some(kv) => out.push(kv),
            None => break,
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The model

struct Model {
    /// Every committed write: `(key, model ts) -> value` (`None`: delete).
    versions: BTreeMap<(Key, u64), Option<Val>>,
    /// Model timestamp of the last successful commit (0: none yet).
    now: u64,
    /// `store_ts[m]`: the store's commit timestamp of model commit `m` (`store_ts[0] = 0`).
    store_ts: Vec<u64>,
}

impl Model {
    fn new() -> Self {
        Self {
            versions: BTreeMap::new(),
            now: 0,
            store_ts: vec![0],
        }
    }

    /// The newest write of `key` at or before model ts `at`: `(ts, value)`.
    fn newest(&self, key: &[u8], at: u64) -> Option<(u64, Option<&Val>)> {
        self.versions
            .range((key.to_vec(), 0)..=(key.to_vec(), at))
            .next_back()
            .map(|((_, ts), v)| (*ts, v.as_ref()))
    }

    /// The visible value of `key` at `at` with its model version.
    fn read(&self, key: &[u8], at: u64) -> Option<(Val, u64)> {
        match self.newest(key, at)? {
            (ts, Some(v)) => Some((v.clone(), ts)),
            (_, None) => None,
        }
    }

    /// Whether some commit after model ts `s` wrote `key` (a delete of an absent key counts).
    fn written_after(&self, key: &[u8], s: u64) -> bool {
        self.newest(key, u64::MAX).is_some_and(|(ts, _)| ts > s)
    }

    /// The pairs of the scan at `at`, with `own` writes laid over, in key order.
    fn scan(&self, at: u64, scan: &Scan, own: &Writes) -> Vec<(Key, Val)> {
        let mut keys: Vec<&[u8]> = KEYS.to_vec();
        keys.sort();
        keys.into_iter()
            .filter(|k| in_scan(scan, k))
            .filter_map(|k| {
                let v = match own.get(k) {
                    Some(w) => w.clone(),
                    None => self.read(k, at).map(|(v, _)| v),
                };
                v.map(|v| (k.to_vec(), v))
            })
            .collect()
    }

    fn commit(&mut self, writes: &Writes, store_ts: u64) {
        self.now += 1;
        self.store_ts.push(store_ts);
        for (k, v) in writes {
            self.versions.insert((k.clone(), self.now), v.clone());
        }
    }

    /// Store-ts version of a model-ts version.
    fn version(&self, read: Option<(Val, u64)>) -> Option<(Val, u64)> {
        read.map(|(v, m)| (v, self.store_ts[m as usize]))
    }

    /// The store timestamps of every write ever made to `key`.
    fn history(&self, key: &[u8]) -> Vec<u64> {
        self.versions
            .range((key.to_vec(), 0)..=(key.to_vec(), u64::MAX))
            .map(|((_, m), _)| self.store_ts[*m as usize])
            .collect()
    }

    /// Keys and versions a full collection leaves with snapshots reading at `snapshots` and
    /// transactions at `txns`: per key, every version some reader (or a new snapshot, reading
    /// at `now`) sees, minus the oldest of those while they are deletes that no transaction
    /// reads below (they read as absent, like nothing, and no writer can conflict with them).
    /// This does not depend on when earlier collections ran: the set of readers only loses
    /// old members and gains new ones at `now`, and no transaction starts below `now`, so a
    /// version or delete that could go once can go at any later time.
    fn after_gc(&self, snapshots: &[u64], txns: &[u64]) -> (usize, usize) {
        let readers: Vec<u64> = snapshots
            .iter()
            .chain(txns)
            .copied()
            .chain([self.now])
            .collect();
        let writer_floor = txns.iter().copied().chain([self.now]).min().expect("now");
        let (mut keys, mut versions) = (0, 0);
        for key in KEYS {
            let mut kept: Vec<(u64, bool)> = Vec::new();
            let mut newer = u64::MAX;
            for ((_, ts), v) in self
                .versions
                .range((key.to_vec(), 0)..=(key.to_vec(), u64::MAX))
                .rev()
            {
                if readers.iter().any(|&s| *ts <= s && s < newer) {
                    kept.push((*ts, v.is_none()));
                }
                newer = *ts;
            }
            while kept
                .last()
                .is_some_and(|&(ts, tomb)| tomb && ts <= writer_floor)
            {
                kept.pop();
            }
            if !kept.is_empty() {
                keys += 1;
                versions += kept.len();
            }
        }
        (keys, versions)
    }
}

struct Snap {
    snap: Snapshot,
    /// Model timestamp it reads at.
    at: u64,
}

struct Txn {
    txn: Transaction,
    at: u64,
    serializable: bool,
    writes: Writes,
    /// Tracked point reads (serializable only; keys not written by the transaction then).
    reads: Vec<Key>,
    /// Tracked scans (serializable only).
    scans: Vec<Scan>,
}

fn key(k: usize) -> &'static [u8] {
    KEYS[k]
}

/// Resolves an expected version selector to a store version.
fn expected(m: &Model, k: &[u8], e: &Expect, current: Option<u64>) -> Option<u64> {
    match e {
        Expect::Current => current,
        Expect::Absent => None,
        Expect::Old(i) => {
            let h = m.history(k);
            if h.is_empty() {
                None
            } else {
                Some(h[i % h.len()])
            }
        }
        Expect::Bogus => Some(1_000_000),
    }
}

/// Checks a commit's result against the model's prediction, and applies it to the model.
fn check_commit(
    db: &Db,
    m: &mut Model,
    t: Txn,
    snaps: &[Snap],
    txns: &[Txn],
) -> Result<(), TestCaseError> {
    let Txn {
        txn,
        at,
        serializable,
        writes,
        reads,
        scans,
    } = t;
    let snapshot_ts = txn.snapshot_ts();
    let res = txn.commit();
    if writes.is_empty() {
        // Read-only: always commits, at its snapshot timestamp.
        prop_assert_eq!(res.ok(), Some(snapshot_ts), "read-only commit");
        return Ok(());
    }
    let ww: Vec<&Key> = writes.keys().filter(|k| m.written_after(k, at)).collect();
    let rw: Vec<&Key> = reads
        .iter()
        .filter(|k| !writes.contains_key(*k) && m.written_after(k, at))
        .collect();
    // Per scan, the keys in it that changed: `(key, phantom)`.
    let changed_in = |s: &Scan| -> Vec<(Key, bool)> {
        KEYS.iter()
            .filter(|k| in_scan(s, k) && !writes.contains_key(**k) && m.written_after(k, at))
            .map(|k| (k.to_vec(), m.read(k, at).is_none()))
            .collect()
    };
    let phantoms: Vec<(&Scan, Vec<(Key, bool)>)> = scans
        .iter()
        .map(|s| (s, changed_in(s)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if !ww.is_empty() {
        match res {
            Err(Error::Conflict {
                key,
                kind: ConflictKind::WriteWrite,
                range: None,
            }) => prop_assert!(
                ww.iter().any(|k| k[..] == key[..]),
                "write-write conflict on {:?}, expected one of {:?}",
                key,
                ww
            ),
            other => prop_assert!(
                false,
                "expected a write-write conflict on {ww:?}, got {other:?}"
            ),
        }
    } else if serializable && (!rw.is_empty() || !phantoms.is_empty()) {
        match res {
            Err(Error::Conflict {
                key,
                kind: ConflictKind::ReadWrite,
                range: None,
            }) => prop_assert!(
                rw.iter().any(|k| k[..] == key[..]),
                "read-write conflict on {:?}, expected one of {:?}",
                key,
                rw
            ),
            Err(Error::Conflict {
                key,
                kind: kind @ (ConflictKind::ReadWrite | ConflictKind::Phantom),
                range: Some(range),
            }) => {
                let phantom = kind == ConflictKind::Phantom;
                prop_assert!(
                    phantoms.iter().any(|(s, changed)| same_range(s, &range)
                        && changed
                            .iter()
                            .any(|(k, p)| k[..] == key[..] && *p == phantom)),
                    "{:?} conflict on {:?} in {:?}; expected one of {:?}",
                    kind,
                    key,
                    range,
                    phantoms
                );
            }
            other => prop_assert!(
                false,
                "expected a read conflict (keys {rw:?}, scans {phantoms:?}), got {other:?}"
            ),
        }
    } else {
        let ts = match res {
            Ok(ts) => ts,
            Err(e) => return Err(TestCaseError::fail(format!("expected a commit, got {e:?}"))),
        };
        check_new_ts(db, m, ts, snaps, txns)?;
        m.commit(&writes, ts);
    }
    Ok(())
}

/// A new commit timestamp: above every earlier one and every live snapshot, and visible now.
fn check_new_ts(
    db: &Db,
    m: &Model,
    ts: u64,
    snaps: &[Snap],
    txns: &[Txn],
) -> Result<(), TestCaseError> {
    prop_assert!(
        ts > *m.store_ts.last().unwrap(),
        "commit ts {} not increasing",
        ts
    );
    for s in snaps {
        prop_assert!(
            ts > s.snap.ts(),
            "commit ts {} not above a live snapshot",
            ts
        );
    }
    for t in txns {
        prop_assert!(ts > t.txn.snapshot_ts());
    }
    prop_assert_eq!(db.stats().visible_ts, ts, "a returned commit is visible");
    Ok(())
}

/// Opens the database of a run: in memory, or in `dir` (written to the operating system at
/// each commit, not synced: a run reopens its directory but never loses power).
fn open(default_serializable: bool, dir: Option<&std::path::Path>) -> Db {
    let builder = Db::builder().isolation(if default_serializable {
        Isolation::Serializable
    } else {
        Isolation::Snapshot
    });
    match dir {
        Some(dir) => builder.path(dir).sync(SyncPolicy::Never).build().unwrap(),
        None => builder.build().unwrap(),
    }
}

fn run(default_serializable: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    run_in(default_serializable, None, ops)
}

/// [`run`] on a database in `dir` (`None`: in memory), which [`Op::Reopen`] reopens.
fn run_in(
    default_serializable: bool,
    dir: Option<&std::path::Path>,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut db = open(default_serializable, dir);
    let mut m = Model::new();
    let mut snaps: Vec<Snap> = Vec::new();
    let mut txns: Vec<Txn> = Vec::new();

    for op in ops {
        match op {
            Op::Put(k, v) => {
                let ts = db.put(key(*k), v).unwrap();
                check_new_ts(&db, &m, ts, &snaps, &txns)?;
                m.commit(&[(key(*k).to_vec(), Some(v.clone()))].into(), ts);
            }
            Op::Delete(k) => {
                let ts = db.delete(key(*k)).unwrap();
                check_new_ts(&db, &m, ts, &snaps, &txns)?;
                m.commit(&[(key(*k).to_vec(), None)].into(), ts);
            }
            Op::Cas(k, e, v) => {
                let k = key(*k);
                let current = m.version(m.read(k, m.now)).map(|(_, ts)| ts);
                let exp = expected(&m, k, e, current);
                match db.compare_and_swap(k, exp, v.as_ref()) {
                    Ok(ts) => {
                        prop_assert_eq!(exp, current, "CAS succeeded against a stale version");
                        check_new_ts(&db, &m, ts, &snaps, &txns)?;
                        m.commit(&[(k.to_vec(), v.clone())].into(), ts);
                    }
                    Err(Error::PreconditionFailed {
                        key: ek,
                        current: c,
                    }) => {
                        prop_assert!(exp != current, "CAS failed at the current version");
                        prop_assert_eq!(&ek[..], k);
                        prop_assert_eq!(c, current, "reported current version");
                    }
                    Err(e) => prop_assert!(false, "CAS: unexpected {e:?}"),
                }
            }
            Op::ReadLatest(k) => {
                let k = key(*k);
                let want = m.version(m.read(k, m.now));
                let got = db.get_versioned(k).unwrap().map(|(v, ts)| (v.to_vec(), ts));
                prop_assert_eq!(&got, &want, "get_versioned latest");
                let got = db.get(k).unwrap().map(|v| v.to_vec());
                prop_assert_eq!(got, want.clone().map(|(v, _)| v), "get latest");
                let got = db.get_with(k, <[u8]>::to_vec).unwrap();
                prop_assert_eq!(got, want.clone().map(|(v, _)| v), "get_with latest");
                let fresh = db.snapshot();
                let got = fresh.get_versioned(k).unwrap();
                prop_assert_eq!(got.map(|(v, ts)| (v.to_vec(), ts)), want);
            }
            Op::TakeSnapshot => {
                let snap = db.snapshot();
                prop_assert!(snap.ts() >= *m.store_ts.last().unwrap());
                prop_assert_eq!(snap.ts(), db.stats().visible_ts);
                snaps.push(Snap { snap, at: m.now });
            }
            Op::DropSnapshot(i) => {
                if !snaps.is_empty() {
                    let n = snaps.len();
                    snaps.remove(i % n);
                }
            }
            Op::ReadAtSnapshot(i, k) => {
                if snaps.is_empty() {
                    continue;
                }
                let s = &snaps[i % snaps.len()];
                let k = key(*k);
                let want = m.version(m.read(k, s.at));
                let got = s.snap.get_versioned(k).unwrap();
                prop_assert_eq!(
                    got.map(|(v, ts)| (v.to_vec(), ts)),
                    want.clone(),
                    "get_versioned at snapshot"
                );
                let got = s.snap.get(k).unwrap().map(|v| v.to_vec());
                prop_assert_eq!(got, want.clone().map(|(v, _)| v), "get at snapshot");
                let got = s.snap.get_with(k, <[u8]>::to_vec).unwrap();
                prop_assert_eq!(got, want.clone().map(|(v, _)| v), "get_with at snapshot");
                prop_assert_eq!(s.snap.contains_key(k).unwrap(), want.is_some());
            }
            Op::ScanAtSnapshot(i, scan, order) => {
                let fresh;
                let (snap, at) = match i {
                    Some(i) if !snaps.is_empty() => {
                        let s = &snaps[i % snaps.len()];
                        (&s.snap, s.at)
                    }
                    _ => {
                        fresh = db.snapshot();
                        (&fresh, m.now)
                    }
                };
                let want = drive_model(m.scan(at, scan, &Writes::new()), order);
                let got = match scan {
                    Scan::Range(a, z) => drive(snap.range((bound_of(a), bound_of(z))), order),
                    Scan::Prefix(p) => drive(snap.scan_prefix(PREFIXES[*p]), order),
                };
                prop_assert_eq!(got, want, "scan {:?} {:?} at {}", scan, order, at);
                if matches!(scan, Scan::Range(B::Unbounded, B::Unbounded)) {
                    let all = drive(snap.iter(), order);
                    prop_assert_eq!(all, drive_model(m.scan(at, scan, &Writes::new()), order));
                }
            }
            Op::Begin(iso) => {
                let txn = match iso {
                    Some(iso) => db.begin_with(*iso),
                    None => db.begin(),
                };
                let want_iso = iso.unwrap_or(if default_serializable {
                    Isolation::Serializable
                } else {
                    Isolation::Snapshot
                });
                prop_assert_eq!(txn.isolation(), want_iso);
                prop_assert_eq!(txn.snapshot_ts(), db.stats().visible_ts);
                txns.push(Txn {
                    txn,
                    at: m.now,
                    serializable: want_iso == Isolation::Serializable,
                    writes: Writes::new(),
                    reads: Vec::new(),
                    scans: Vec::new(),
                });
            }
            Op::TxnPut(t, k, v) => {
                if txns.is_empty() {
                    continue;
                }
                let n = txns.len();
                let t = &mut txns[t % n];
                t.txn.put(key(*k), v).unwrap();
                t.writes.insert(key(*k).to_vec(), Some(v.clone()));
            }
            Op::TxnDelete(t, k) => {
                if txns.is_empty() {
                    continue;
                }
                let n = txns.len();
                let t = &mut txns[t % n];
                t.txn.delete(key(*k)).unwrap();
                t.writes.insert(key(*k).to_vec(), None);
            }
            Op::TxnGet(t, k) => {
                if txns.is_empty() {
                    continue;
                }
                let n = txns.len();
                let t = &mut txns[t % n];
                let k = key(*k);
                let want = match t.writes.get(k) {
                    Some(own) => own.clone(),
                    None => m.read(k, t.at).map(|(v, _)| v),
                };
                let got = t.txn.get(k).unwrap().map(|v| v.to_vec());
                prop_assert_eq!(&got, &want, "txn get");
                let got = t.txn.get_with(k, <[u8]>::to_vec).unwrap();
                prop_assert_eq!(got, want, "txn get_with");
                if t.serializable && !t.writes.contains_key(k) {
                    t.reads.push(k.to_vec());
                }
                // The transaction's snapshot ignores its own writes.
                let got = t.txn.snapshot().get(k).unwrap().map(|v| v.to_vec());
                prop_assert_eq!(got, m.read(k, t.at).map(|(v, _)| v), "txn snapshot get");
            }
            Op::TxnScan(t, scan, order) => {
                if txns.is_empty() {
                    continue;
                }
                let n = txns.len();
                let t = &mut txns[t % n];
                let want = drive_model(m.scan(t.at, scan, &t.writes), order);
                let got = match scan {
                    Scan::Range(a, z) => drive(t.txn.range((bound_of(a), bound_of(z))), order),
                    Scan::Prefix(p) => drive(t.txn.scan_prefix(PREFIXES[*p]), order),
                };
                prop_assert_eq!(got, want, "txn scan {:?} {:?}", scan, order);
                if t.serializable {
                    t.scans.push(scan.clone());
                }
            }
            Op::TxnCas(t, k, e, v) => {
                if txns.is_empty() {
                    continue;
                }
                let n = txns.len();
                let t = &mut txns[t % n];
                let k = key(*k);
                // Compared against the snapshot's committed version, not own writes.
                let current = m.version(m.read(k, t.at)).map(|(_, ts)| ts);
                let exp = expected(&m, k, e, current);
                match t.txn.compare_and_swap(k, exp, v.as_ref()) {
                    Ok(()) => {
                        prop_assert_eq!(exp, current, "txn CAS succeeded against a stale version");
                        t.writes.insert(k.to_vec(), v.clone());
                    }
                    Err(Error::PreconditionFailed {
                        key: ek,
                        current: c,
                    }) => {
                        prop_assert!(exp != current, "txn CAS failed at the current version");
                        prop_assert_eq!(&ek[..], k);
                        prop_assert_eq!(c, current);
                    }
                    Err(e) => prop_assert!(false, "txn CAS: unexpected {e:?}"),
                }
            }
            Op::Commit(t) => {
                if txns.is_empty() {
                    continue;
                }
                let n = txns.len();
                let t = txns.remove(t % n);
                check_commit(&db, &mut m, t, &snaps, &txns)?;
            }
            Op::Abort(t, rollback) => {
                if txns.is_empty() {
                    continue;
                }
                let n = txns.len();
                let t = txns.remove(t % n);
                if *rollback {
                    t.txn.rollback();
                }
            }
            Op::Reopen(close) => {
                let Some(dir) = dir else { continue };
                snaps.clear();
                txns.clear();
                let old = std::mem::replace(&mut db, Db::new());
                if *close {
                    old.close().unwrap();
                } else {
                    drop(old);
                }
                db = open(default_serializable, Some(dir));
                // Exactly the live keys come back, one version each, at their timestamps.
                let st = db.stats();
                let live_now = KEYS.iter().filter(|k| m.read(k, m.now).is_some()).count();
                prop_assert_eq!(
                    (st.keys, st.versions),
                    (live_now, live_now),
                    "after reopening"
                );
                for k in KEYS {
                    let want = m.version(m.read(k, m.now));
                    let got = db.get_versioned(k).unwrap().map(|(v, ts)| (v.to_vec(), ts));
                    prop_assert_eq!(got, want, "a reopened key's value and version");
                }
                prop_assert!(st.visible_ts >= *m.store_ts.last().unwrap());
            }
            Op::CollectGarbage => {
                let before = db.stats();
                let report = db.collect_garbage();
                let after = db.stats();
                let readers: Vec<u64> = snaps.iter().map(|s| s.at).collect();
                let writers: Vec<u64> = txns.iter().map(|t| t.at).collect();
                let (keys, versions) = m.after_gc(&readers, &writers);
                prop_assert_eq!(
                    (after.keys, after.versions),
                    (keys, versions),
                    "keys and versions after a full collection"
                );
                let oldest = snaps
                    .iter()
                    .map(|s| s.snap.ts())
                    .chain(txns.iter().map(|t| t.txn.snapshot_ts()))
                    .min();
                prop_assert_eq!(after.oldest_snapshot, oldest);
                let watermark = oldest.map_or(after.visible_ts, |o| o.min(after.visible_ts));
                prop_assert_eq!(report.watermark, watermark, "report watermark");
                prop_assert_eq!(after.watermark, watermark, "stats watermark");
                prop_assert_eq!(report.versions_freed, before.versions - after.versions);
                prop_assert_eq!(report.keys_removed, before.keys - after.keys);
            }
        }
        // Invariants after every step.
        let st = db.stats();
        prop_assert_eq!(
            st.live_snapshots,
            snaps.len() + txns.len(),
            "live snapshots"
        );
        prop_assert!(st.visible_ts >= *m.store_ts.last().unwrap());
        // Nothing is invented: at most one version per write, at most the keys ever written.
        prop_assert!(st.versions <= m.versions.len());
        prop_assert!(st.keys <= KEYS.len());
        // Keys that hold a value now are in the map.
        let live_now = KEYS.iter().filter(|k| m.read(k, m.now).is_some()).count();
        prop_assert!(st.keys >= live_now, "a live key left the map");
    }

    // The end state, read through a fresh snapshot, matches the model.
    let end = db.snapshot();
    let got: Vec<_> = end.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    let all = Scan::Range(B::Unbounded, B::Unbounded);
    prop_assert_eq!(got, m.scan(m.now, &all, &Writes::new()), "final state");
    drop(end);
    // With everything released, a full collection leaves exactly the live keys, one version each.
    drop(snaps);
    drop(txns);
    db.collect_garbage();
    let st = db.stats();
    let live_now = KEYS.iter().filter(|k| m.read(k, m.now).is_some()).count();
    prop_assert_eq!(
        (st.keys, st.versions),
        (live_now, live_now),
        "after releasing all"
    );
    prop_assert_eq!(st.live_snapshots, 0);
    Ok(())
}

/// `PROPTEST_CASES` if set, else enough cases for a few seconds in the test profile.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8192);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn store_matches_model(
        default_serializable in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(default_serializable, &ops)?;
    }
}

/// `PROPTEST_CASES` / 16 for the durable runs, which open files and sync directories.
fn durable_config() -> ProptestConfig {
    let cases = config().cases / 16;
    ProptestConfig::with_cases(cases.max(1))
}

proptest! {
    #![proptest_config(durable_config())]
    #[test]
    fn durable_store_matches_model_across_reopens(
        default_serializable in any::<bool>(),
        ops in proptest::collection::vec(durable_op(), 1..60),
    ) {
        let dir = tempfile::tempdir().unwrap();
        run_in(default_serializable, Some(dir.path()), &ops)?;
    }
}

/// A fixed sequence covering a conflict of each kind, so the interesting paths run even with
/// very few random cases.
fn fixed_sequence() -> Vec<Op> {
    use Op::*;
    let ser = Some(Isolation::Serializable);
    vec![
        Put(0, vec![1]),
        Put(4, vec![2]),
        // write-write
        Begin(Some(Isolation::Snapshot)),
        TxnPut(0, 0, vec![3]),
        Put(0, vec![4]),
        Commit(0),
        // read-write on a point read
        Begin(ser),
        TxnGet(0, 4),
        TxnPut(0, 1, vec![5]),
        Put(4, vec![6]),
        Commit(0),
        // phantom: an insert into a scanned range
        Begin(ser),
        TxnScan(0, Scan::Prefix(5), Order::Reverse),
        TxnPut(0, 0, vec![7]),
        Put(5, vec![8]),
        Commit(0),
        // read-write in a scanned range (an existing key changed)
        Begin(ser),
        TxnScan(
            0,
            Scan::Range(B::Included(1), B::Excluded(8)),
            Order::Forward,
        ),
        TxnPut(0, 4, vec![9]),
        Delete(0),
        Commit(0),
        // read-only serializable transaction with a stale read: still commits
        Begin(ser),
        TxnGet(0, 4),
        Put(4, vec![10]),
        Commit(0),
        TakeSnapshot,
        Delete(4),
        CollectGarbage,
        ReadAtSnapshot(0, 4),
        DropSnapshot(0),
        CollectGarbage,
    ]
}

#[test]
fn fixed_sequence_hits_every_conflict_kind() {
    run(false, &fixed_sequence()).unwrap();
}

/// The fixed sequence on a directory, reopened (after `close` and without it) between its
/// steps and at the end.
#[test]
fn fixed_sequence_survives_reopens() {
    let mut ops = Vec::new();
    for (i, op) in fixed_sequence().into_iter().enumerate() {
        ops.push(op);
        if i % 5 == 4 {
            ops.push(Op::Reopen(i % 10 == 4));
        }
    }
    ops.push(Op::Reopen(true));
    let dir = tempfile::tempdir().unwrap();
    run_in(false, Some(dir.path()), &ops).unwrap();
}
