//! Model-based test: random single-threaded sequences of puts, deletes, conditional writes,
//! snapshots, transactions (both levels) and scans, compared step by step against a simple
//! sequential model — a `BTreeMap<(key, ts), Option<value>>` of committed versions. The model
//! answers every read at every snapshot and *predicts* every commit's outcome (success,
//! write-write conflict, read-write/phantom conflict, precondition failure); the store's
//! timestamps are only recorded.
//!
//! `PROPTEST_CASES` sets the number of sequences (default 2048; CI's long mode uses more).

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use snapkv::{ConflictKind, Db, Error, Isolation, Snapshot, Transaction};

const KEYS: [&[u8]; 6] = [b"a", b"ab", b"abc", b"b", b"ba", b"c"];

type Key = Vec<u8>;
type Val = Vec<u8>;
type Range = (Bound<Key>, Bound<Key>);

#[derive(Clone, Debug)]
enum Op {
    Put(usize, u8),
    Delete(usize),
    Cas(usize, bool, Option<u8>),
    Snap,
    DropSnap(usize),
    SnapGet(usize, usize),
    SnapScan(usize, usize, usize, bool),
    SnapPrefix(usize, usize),
    Begin(bool),
    TGet(usize, usize),
    TPut(usize, usize, u8),
    TDelete(usize, usize),
    TScan(usize, usize, usize, bool),
    TPrefix(usize, usize),
    Commit(usize),
    Abort(usize),
    Gc,
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS.len();
    let i = 0..4usize;
    let b = 0..=KEYS.len() * 2;
    prop_oneof![
        3 => (k.clone(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => k.clone().prop_map(Op::Delete),
        1 => (k.clone(), any::<bool>(), proptest::option::of(any::<u8>())).prop_map(|(k, c, v)| Op::Cas(k, c, v)),
        1 => Just(Op::Snap),
        1 => i.clone().prop_map(Op::DropSnap),
        2 => (i.clone(), k.clone()).prop_map(|(s, k)| Op::SnapGet(s, k)),
        1 => (i.clone(), b.clone(), b.clone(), any::<bool>()).prop_map(|(s, a, z, r)| Op::SnapScan(s, a, z, r)),
        1 => (i.clone(), k.clone()).prop_map(|(s, k)| Op::SnapPrefix(s, k)),
        2 => any::<bool>().prop_map(Op::Begin),
        3 => (i.clone(), k.clone()).prop_map(|(t, k)| Op::TGet(t, k)),
        3 => (i.clone(), k.clone(), any::<u8>()).prop_map(|(t, k, v)| Op::TPut(t, k, v)),
        1 => (i.clone(), k.clone()).prop_map(|(t, k)| Op::TDelete(t, k)),
        1 => (i.clone(), b.clone(), b.clone(), any::<bool>()).prop_map(|(t, a, z, r)| Op::TScan(t, a, z, r)),
        1 => (i.clone(), k.clone()).prop_map(|(t, k)| Op::TPrefix(t, k)),
        2 => i.clone().prop_map(Op::Commit),
        1 => i.clone().prop_map(Op::Abort),
        1 => Just(Op::Gc),
    ]
}

/// Bounds from two indexes: 0 unbounded, odd n included KEYS[n/2], even n excluded.
fn range(a: usize, z: usize) -> Range {
    let bound = |n: usize| match n {
        0 => Bound::Unbounded,
        n if n % 2 == 1 => Bound::Included(KEYS[(n - 1) / 2].to_vec()),
        n => Bound::Excluded(KEYS[(n - 2) / 2].to_vec()),
    };
    (bound(a), bound(z))
}

fn prefix_range(p: &[u8]) -> Range {
    let mut end = p.to_vec();
    // KEYS contain no 0xff bytes, so incrementing the last byte gives the prefix's end.
    *end.last_mut().expect("non-empty") += 1;
    (Bound::Included(p.to_vec()), Bound::Excluded(end))
}

fn in_range(r: &Range, k: &[u8]) -> bool {
    let above = match &r.0 {
        Bound::Included(a) => k >= a.as_slice(),
        Bound::Excluded(a) => k > a.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match &r.1 {
        Bound::Included(z) => k <= z.as_slice(),
        Bound::Excluded(z) => k < z.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

#[derive(Default)]
struct Model {
    versions: BTreeMap<(Key, u64), Option<Val>>,
    last_ts: u64,
}

impl Model {
    fn read(&self, k: &[u8], at: u64) -> Option<Val> {
        self.versions
            .range((k.to_vec(), 0)..=(k.to_vec(), at))
            .next_back()
            .and_then(|(_, v)| v.clone())
    }

    fn version(&self, k: &[u8]) -> Option<u64> {
        self.versions
            .range((k.to_vec(), 0)..=(k.to_vec(), u64::MAX))
            .next_back()
            .and_then(|((_, ts), v)| v.as_ref().map(|_| *ts))
    }

    fn written_after(&self, k: &[u8], s: u64) -> bool {
        self.versions
            .range((k.to_vec(), s + 1)..=(k.to_vec(), u64::MAX))
            .next()
            .is_some()
    }

    fn scan(&self, r: &Range, at: u64, own: &BTreeMap<Key, Option<Val>>) -> Vec<(Key, Val)> {
        let mut keys: Vec<&[u8]> = KEYS.to_vec();
        keys.sort();
        keys.into_iter()
            .filter(|k| in_range(r, k))
            .filter_map(|k| {
                let v = match own.get(k) {
                    Some(v) => v.clone(),
                    None => self.read(k, at),
                };
                v.map(|v| (k.to_vec(), v))
            })
            .collect()
    }

    fn commit(&mut self, ts: u64, writes: &BTreeMap<Key, Option<Val>>) {
        assert!(
            ts > self.last_ts,
            "commit timestamps must increase: {ts} after {}",
            self.last_ts
        );
        self.last_ts = ts;
        for (k, v) in writes {
            self.versions.insert((k.clone(), ts), v.clone());
        }
    }
}

struct OpenTxn {
    txn: Transaction,
    iso: Isolation,
    s: u64,
    writes: BTreeMap<Key, Option<Val>>,
    reads: Vec<Key>,
    ranges: Vec<Range>,
}

fn pairs(it: impl Iterator<Item = (bytes::Bytes, bytes::Bytes)>) -> Vec<(Key, Val)> {
    it.map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

fn borrowed(r: &Range) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (
        r.0.as_ref().map(|b| b.as_slice()),
        r.1.as_ref().map(|b| b.as_slice()),
    )
}

fn run(ops: Vec<Op>) {
    let db = Db::new();
    let mut m = Model::default();
    let mut snaps: Vec<(Snapshot, u64)> = Vec::new();
    let mut txns: Vec<OpenTxn> = Vec::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                let ts = db.put(KEYS[k], [v]).expect("put");
                m.commit(ts, &BTreeMap::from([(KEYS[k].to_vec(), Some(vec![v]))]));
            }
            Op::Delete(k) => {
                let ts = db.delete(KEYS[k]).expect("delete");
                m.commit(ts, &BTreeMap::from([(KEYS[k].to_vec(), None)]));
            }
            Op::Cas(k, current, new) => {
                let actual = m.version(KEYS[k]);
                let expected = if current {
                    actual
                } else {
                    Some(actual.map_or(1, |t| t + 1))
                };
                let r = db.compare_and_swap(KEYS[k], expected, new.map(|v| [v]));
                if expected == actual {
                    let ts = r.expect("matching compare_and_swap");
                    m.commit(
                        ts,
                        &BTreeMap::from([(KEYS[k].to_vec(), new.map(|v| vec![v]))]),
                    );
                } else {
                    match r {
                        Err(Error::PreconditionFailed { current, .. }) => {
                            assert_eq!(current, actual)
                        }
                        other => panic!("stale compare_and_swap: {other:?}"),
                    }
                }
            }
            Op::Snap => {
                let s = db.snapshot();
                assert_eq!(
                    s.ts(),
                    m.last_ts,
                    "a new snapshot sees every returned commit"
                );
                let ts = s.ts();
                snaps.push((s, ts));
            }
            Op::DropSnap(i) => {
                if i < snaps.len() {
                    snaps.remove(i);
                }
            }
            Op::SnapGet(i, k) => {
                if let Some((s, ts)) = snaps.get(i) {
                    let got = s.get(KEYS[k]).expect("get").map(|b| b.to_vec());
                    assert_eq!(got, m.read(KEYS[k], *ts), "snapshot {ts} key {:?}", KEYS[k]);
                    let versioned = s.get_versioned(KEYS[k]).expect("get_versioned");
                    if let Some((_, vts)) = versioned {
                        assert!(vts <= *ts);
                        assert_eq!(
                            m.versions.get(&(KEYS[k].to_vec(), vts)).cloned().flatten(),
                            got
                        );
                    }
                }
            }
            Op::SnapScan(i, a, z, rev) => {
                if let Some((s, ts)) = snaps.get(i) {
                    let r = range(a, z);
                    let mut want = m.scan(&r, *ts, &BTreeMap::new());
                    let got = if rev {
                        want.reverse();
                        pairs(s.range(borrowed(&r)).rev())
                    } else {
                        pairs(s.range(borrowed(&r)))
                    };
                    assert_eq!(got, want, "snapshot {ts} range {r:?}");
                }
            }
            Op::SnapPrefix(i, k) => {
                if let Some((s, ts)) = snaps.get(i) {
                    let want = m.scan(&prefix_range(KEYS[k]), *ts, &BTreeMap::new());
                    assert_eq!(pairs(s.scan_prefix(KEYS[k])), want);
                }
            }
            Op::Begin(ser) => {
                if txns.len() < 4 {
                    let iso = if ser {
                        Isolation::Serializable
                    } else {
                        Isolation::Snapshot
                    };
                    let txn = db.begin_with(iso);
                    assert_eq!(txn.snapshot_ts(), m.last_ts);
                    let s = txn.snapshot_ts();
                    txns.push(OpenTxn {
                        txn,
                        iso,
                        s,
                        writes: BTreeMap::new(),
                        reads: Vec::new(),
                        ranges: Vec::new(),
                    });
                }
            }
            Op::TGet(t, k) => {
                if let Some(o) = txns.get_mut(t) {
                    let key = KEYS[k].to_vec();
                    let want = match o.writes.get(&key) {
                        Some(v) => v.clone(),
                        None => {
                            o.reads.push(key.clone());
                            m.read(&key, o.s)
                        }
                    };
                    assert_eq!(o.txn.get(&key).expect("txn get").map(|b| b.to_vec()), want);
                }
            }
            Op::TPut(t, k, v) => {
                if let Some(o) = txns.get_mut(t) {
                    o.txn.put(KEYS[k], [v]).expect("txn put");
                    o.writes.insert(KEYS[k].to_vec(), Some(vec![v]));
                }
            }
            Op::TDelete(t, k) => {
                if let Some(o) = txns.get_mut(t) {
                    o.txn.delete(KEYS[k]).expect("txn delete");
                    o.writes.insert(KEYS[k].to_vec(), None);
                }
            }
            Op::TScan(t, a, z, rev) => {
                if let Some(o) = txns.get_mut(t) {
                    let r = range(a, z);
                    let mut want = m.scan(&r, o.s, &o.writes);
                    let got = if rev {
                        want.reverse();
                        pairs(o.txn.range(borrowed(&r)).rev())
                    } else {
                        pairs(o.txn.range(borrowed(&r)))
                    };
                    assert_eq!(got, want, "txn at {} range {r:?}", o.s);
                    o.ranges.push(r);
                }
            }
            Op::TPrefix(t, k) => {
                if let Some(o) = txns.get_mut(t) {
                    let r = prefix_range(KEYS[k]);
                    let want = m.scan(&r, o.s, &o.writes);
                    assert_eq!(pairs(o.txn.scan_prefix(KEYS[k])), want);
                    o.ranges.push(r);
                }
            }
            Op::Commit(t) => {
                if t < txns.len() {
                    let o = txns.remove(t);
                    let result = o.txn.commit();
                    if o.writes.is_empty() {
                        assert_eq!(result.expect("read-only commits never fail"), o.s);
                        continue;
                    }
                    let ww = o.writes.keys().any(|k| m.written_after(k, o.s));
                    let serializable = o.iso == Isolation::Serializable;
                    let rw = serializable
                        && (o
                            .reads
                            .iter()
                            .any(|k| !o.writes.contains_key(k) && m.written_after(k, o.s))
                            || o.ranges.iter().any(|r| {
                                KEYS.iter().any(|k| {
                                    in_range(r, k)
                                        && !o.writes.contains_key(*k)
                                        && m.written_after(k, o.s)
                                })
                            }));
                    match result {
                        Ok(ts) => {
                            assert!(!ww && !rw, "commit succeeded but the model predicts a conflict (ww {ww}, rw {rw})");
                            m.commit(ts, &o.writes);
                        }
                        Err(Error::Conflict {
                            kind: ConflictKind::WriteWrite,
                            ..
                        }) => {
                            assert!(ww, "unexpected write-write conflict");
                        }
                        Err(Error::Conflict { kind, .. }) => {
                            assert!(!ww, "write-write should be reported first, got {kind}");
                            assert!(rw, "unexpected {kind} conflict");
                            // Read validation runs after the commit timestamp is taken: the
                            // failed commit publishes its timestamp with nothing installed.
                            let visible = db.snapshot().ts();
                            assert_eq!(visible, m.last_ts + 1, "the empty timestamp is published");
                            m.last_ts = visible;
                        }
                        Err(e) => panic!("commit failed: {e}"),
                    }
                    // A failed commit leaves no trace; a successful one is visible now.
                    assert_eq!(db.snapshot().ts(), m.last_ts);
                }
            }
            Op::Abort(t) => {
                if t < txns.len() {
                    txns.remove(t);
                }
            }
            Op::Gc => {
                db.collect_garbage();
            }
        }
        // Latest state always agrees, through the unregistered read path too.
        for k in KEYS {
            assert_eq!(
                db.get(k).expect("get").map(|b| b.to_vec()),
                m.read(k, m.last_ts)
            );
        }
    }
    drop(txns);
    drop(snaps);
    db.collect_garbage();
    let s = db.stats();
    assert_eq!(s.live_snapshots, 0);
    let live = KEYS
        .iter()
        .filter(|k| m.read(k, m.last_ts).is_some())
        .count();
    assert_eq!(db.snapshot().iter().count(), live);
    assert_eq!(
        s.versions, live,
        "after collection only each live key's newest version is left"
    );
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn store_matches_the_sequential_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
