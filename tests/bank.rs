//! The concurrent bank invariant.
//!
//! Transfer threads move money between accounts in transactions while auditor threads sum
//! every balance, concurrently, from snapshots (by a forward scan, a reverse scan and point
//! reads) and from read-only transactions. Checked:
//!
//! * every audit sees exactly the initial total, no account missing and no negative balance;
//! * every transfer's reads (committed or declined) and a reservoir sample of the audits (up to
//!   4096 per auditor) saw *exactly* the state produced by the committed transfers with commit
//!   timestamps `<=` their snapshot timestamp (the log of committed transfers, replayed in
//!   commit-timestamp order, is the oracle);
//! * each committed transfer read, at its snapshot, the same balances that the replay holds just
//!   before its commit timestamp (no lost update: nothing else wrote those accounts in between);
//! * no balance ever goes negative, in the replay or in the store;
//! * at the end, every balance is its initial balance plus the net of the committed transfers.
//!
//! Why no balance goes negative, also under snapshot isolation: a transfer reads `from` at its
//! snapshot `s`, withdraws only if `balance(from) >= amount`, and *writes* `from`. `from` is
//! therefore in its write set, and first-committer-wins aborts it if any transaction
//! committed a write to `from` after `s`. So when it commits, `from` still holds the balance it
//! checked. (Write skew could only break a constraint over keys the transaction reads but does
//! not write, e.g. "the sum of two accounts stays non-negative" with a withdrawal from one;
//! this workload has no such constraint.)
//!
//! Half of the transfer threads use [`Db::update`] (which retries conflicts itself), the other
//! half manual `begin`/`commit` with their own retry loop. `update` does not return the commit
//! timestamp, so every transfer also writes a per-thread receipt key that only its thread
//! writes; right after `update` returns, `get_versioned` on the receipt yields the commit
//! timestamp (for the manual threads it must equal what `commit` returned).
//!
//! Runs ~2 s per test; `SNAPKV_BANK_SECS` overrides the duration (CI's long mode sets 20).

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use snapkv::{ConflictKind, Db, Error, Isolation, Snapshot, Transaction, Ts};

const PREFIX: &str = "acct/";
/// Audit samples kept per auditor for the replay check (reservoir sampled).
const SAMPLES: usize = 4096;

fn duration() -> Duration {
    match std::env::var("SNAPKV_BANK_SECS") {
        Ok(v) => Duration::from_secs_f64(
            v.parse()
                .expect("SNAPKV_BANK_SECS must be a number of seconds"),
        ),
        Err(_) => Duration::from_secs(2),
    }
}

fn account(i: usize) -> String {
    format!("{PREFIX}{i:03}")
}

fn receipt(thread: usize) -> String {
    format!("receipt/{thread}")
}

fn decode(v: &[u8]) -> i64 {
    i64::from_be_bytes(v.try_into().expect("a balance is 8 bytes"))
}

fn read(txn: &Transaction, i: usize) -> snapkv::Result<i64> {
    Ok(decode(&txn.get(account(i))?.expect("every account exists")))
}

/// One transfer as its thread saw it.
#[derive(Clone, Copy, Debug)]
struct Rec {
    /// The snapshot timestamp of the attempt that decided.
    snap: Ts,
    /// The commit timestamp; `None` for a declined transfer (insufficient funds, read-only).
    /// (`NonZeroU64` keeps the record small: the long mode logs millions.)
    ts: Option<NonZeroU64>,
    amount: i64,
    /// The balances of `from` and `to` the deciding attempt read.
    from_before: i64,
    to_before: i64,
    from: u16,
    to: u16,
}

impl Rec {
    fn commit_ts(&self) -> Option<Ts> {
        self.ts.map(NonZeroU64::get)
    }

    fn accounts(&self) -> (usize, usize) {
        (usize::from(self.from), usize::from(self.to))
    }
}

/// What one audit saw.
struct Sample {
    ts: Ts,
    balances: Vec<i64>,
}

#[derive(Default)]
struct Counters {
    conflicts: AtomicU64,
    exhausted: AtomicU64,
    snapshot_audits: AtomicU64,
    txn_audits: AtomicU64,
}

struct Config {
    name: &'static str,
    isolation: Isolation,
    /// Initial balance of each account.
    balances: Vec<i64>,
    transfer_threads: usize,
    auditors: usize,
    /// Transfer amounts are drawn from `1..=max_amount`; larger than most balances, so that
    /// some transfers are declined.
    max_amount: i64,
    /// Whether the run must see conflicts (hot accounts).
    expect_conflicts: bool,
}

/// What one transfer attempt decided.
#[derive(Clone, Copy, Debug)]
struct Attempt {
    snap: Ts,
    /// Whether it transferred (else declined: insufficient funds, read-only).
    moved: bool,
    /// The balances of `from` and `to` it read.
    a: i64,
    b: i64,
}

/// The body of one transfer attempt, shared by the `update` and the manual path. A declined
/// transfer leaves the transaction read-only.
fn attempt(
    txn: &mut Transaction,
    thread: usize,
    seq: u64,
    (from, to, amount): (usize, usize, i64),
) -> snapkv::Result<Attempt> {
    let a = read(txn, from)?;
    let b = read(txn, to)?;
    let snap = txn.snapshot_ts();
    if a < amount {
        assert!(txn.is_read_only());
        return Ok(Attempt {
            snap,
            moved: false,
            a,
            b,
        });
    }
    txn.put(account(from), (a - amount).to_be_bytes())?;
    txn.put(account(to), (b + amount).to_be_bytes())?;
    txn.put(receipt(thread), seq.to_be_bytes())?;
    assert!(!txn.is_read_only());
    // Read-your-writes inside the transaction.
    assert_eq!(read(txn, from)?, a - amount);
    Ok(Attempt {
        snap,
        moved: true,
        a,
        b,
    })
}

/// Runs transfers until `stop`; returns the thread's log (committed and declined).
fn transfer_thread(
    db: &Db,
    cfg: &Config,
    thread: usize,
    stop: &AtomicBool,
    counters: &Counters,
) -> Vec<Rec> {
    let n = cfg.balances.len();
    let mut rng = fastrand::Rng::new();
    let mut log = Vec::new();
    let mut seq = 0u64; // committed transfers of this thread
    let use_update = thread % 2 == 0;
    while !stop.load(Ordering::Relaxed) {
        let from = rng.usize(0..n);
        let to = (from + rng.usize(1..n)) % n;
        let amount = rng.i64(1..=cfg.max_amount);
        let op = (from, to, amount);
        let next = seq + 1;
        let (at, ts) = if use_update {
            let mut runs = 0u64;
            let r = db.update(|txn| {
                runs += 1;
                assert_eq!(txn.isolation(), cfg.isolation, "builder's default level");
                attempt(txn, thread, next, op)
            });
            match r {
                Ok(at) => {
                    counters.conflicts.fetch_add(runs - 1, Ordering::Relaxed);
                    let ts = at.moved.then(|| {
                        // Only this thread writes its receipt: its newest version is the
                        // commit that just returned.
                        let (v, ts) = db
                            .get_versioned(receipt(thread))
                            .unwrap()
                            .expect("the receipt of a committed transfer");
                        assert_eq!(u64::from_be_bytes(v[..].try_into().unwrap()), next);
                        ts
                    });
                    (at, ts)
                }
                Err(Error::RetriesExhausted { attempts, last }) => {
                    assert_eq!(u64::from(attempts), runs);
                    assert!(last.is_retryable(), "last error {last} is not a conflict");
                    if cfg.isolation == Isolation::Snapshot {
                        assert!(
                            matches!(
                                *last,
                                Error::Conflict {
                                    kind: ConflictKind::WriteWrite,
                                    ..
                                }
                            ),
                            "SI conflict: {last}"
                        );
                    }
                    counters
                        .conflicts
                        .fetch_add(u64::from(attempts), Ordering::Relaxed);
                    counters.exhausted.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => panic!("transfer failed: {e}"),
            }
        } else {
            loop {
                let mut txn = db.begin();
                assert_eq!(txn.isolation(), cfg.isolation, "builder's default level");
                let at = attempt(&mut txn, thread, next, op).unwrap();
                match txn.commit() {
                    Ok(ts) => {
                        if at.moved {
                            let (_, version) = db.get_versioned(receipt(thread)).unwrap().unwrap();
                            assert_eq!(version, ts, "receipt version != commit timestamp");
                            assert!(ts > at.snap);
                        } else {
                            assert_eq!(ts, at.snap, "a read-only commit returns its snapshot ts");
                        }
                        break (at, at.moved.then_some(ts));
                    }
                    Err(e @ Error::Conflict { kind, .. }) => {
                        assert!(at.moved, "a read-only transaction conflicted: {e}");
                        if cfg.isolation == Isolation::Snapshot {
                            assert_eq!(kind, ConflictKind::WriteWrite, "SI conflict: {e}");
                        }
                        counters.conflicts.fetch_add(1, Ordering::Relaxed);
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("transfer failed: {e}"),
                }
            }
        };
        if ts.is_some() {
            seq = next;
        }
        log.push(Rec {
            snap: at.snap,
            ts: ts.map(|ts| NonZeroU64::new(ts).expect("commit timestamps start at 1")),
            from: from as u16,
            to: to as u16,
            amount,
            from_before: at.a,
            to_before: at.b,
        });
    }
    log
}

/// Sums every balance of `snap` three ways; returns the balances.
fn audit_snapshot(snap: &Snapshot, n: usize, total: i64) -> Vec<i64> {
    let scanned: Vec<(Vec<u8>, i64)> = snap
        .scan_prefix(PREFIX)
        .map(|(k, v)| (k.to_vec(), decode(&v)))
        .collect();
    let keys: Vec<Vec<u8>> = scanned.iter().map(|(k, _)| k.clone()).collect();
    let want: Vec<Vec<u8>> = (0..n).map(|i| account(i).into_bytes()).collect();
    assert_eq!(
        keys,
        want,
        "the scan at ts {} lost or reordered accounts",
        snap.ts()
    );
    let balances: Vec<i64> = scanned.iter().map(|&(_, b)| b).collect();
    assert_eq!(
        balances.iter().sum::<i64>(),
        total,
        "scan at ts {}: {balances:?}",
        snap.ts()
    );
    assert!(
        balances.iter().all(|&b| b >= 0),
        "negative balance at ts {}: {balances:?}",
        snap.ts()
    );
    let by_get: Vec<i64> = (0..n)
        .map(|i| decode(&snap.get(account(i)).unwrap().expect("account exists")))
        .collect();
    assert_eq!(
        by_get, balances,
        "point reads disagree with the scan of one snapshot"
    );
    let (lo, hi) = (account(0), account(n - 1));
    let mut reversed: Vec<i64> = snap
        .range(lo.as_bytes()..=hi.as_bytes())
        .rev()
        .map(|(_, v)| decode(&v))
        .collect();
    reversed.reverse();
    assert_eq!(
        reversed, balances,
        "the reverse scan disagrees with the forward scan"
    );
    balances
}

/// A read-only transaction that sums by scan and by point reads, then commits.
fn audit_transaction(db: &Db, n: usize, total: i64) -> (Ts, Vec<i64>) {
    let txn = db.begin();
    let balances: Vec<i64> = txn.scan_prefix(PREFIX).map(|(_, v)| decode(&v)).collect();
    assert_eq!(balances.len(), n);
    assert_eq!(
        balances.iter().sum::<i64>(),
        total,
        "transaction audit: {balances:?}"
    );
    assert!(balances.iter().all(|&b| b >= 0), "{balances:?}");
    let by_get: Vec<i64> = (0..n).map(|i| read(&txn, i).unwrap()).collect();
    assert_eq!(by_get, balances);
    assert!(txn.is_read_only());
    let ts = txn.snapshot_ts();
    assert_eq!(
        txn.commit().expect("a read-only transaction never aborts"),
        ts
    );
    (ts, balances)
}

fn auditor(db: &Db, n: usize, total: i64, stop: &AtomicBool, counters: &Counters) -> Vec<Sample> {
    let mut rng = fastrand::Rng::new();
    let mut samples = Vec::new();
    let mut seen = 0usize;
    let mut keep = |sample: Sample| {
        seen += 1;
        if samples.len() < SAMPLES {
            samples.push(sample);
        } else {
            let slot = rng.usize(0..seen);
            if slot < SAMPLES {
                samples[slot] = sample;
            }
        }
    };
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let snap = db.snapshot();
        let balances = audit_snapshot(&snap, n, total);
        keep(Sample {
            ts: snap.ts(),
            balances,
        });
        counters.snapshot_audits.fetch_add(1, Ordering::Relaxed);
        drop(snap);
        if round % 2 == 0 {
            let (ts, balances) = audit_transaction(db, n, total);
            keep(Sample { ts, balances });
            counters.txn_audits.fetch_add(1, Ordering::Relaxed);
        }
    }
    samples
}

/// Merges streams that are each sorted by timestamp into one stream sorted by timestamp. (An
/// unsorted input shows up as an inversion in the output.)
fn merge_sorted<'a, T: 'a>(
    streams: Vec<Box<dyn Iterator<Item = (Ts, T)> + 'a>>,
) -> impl Iterator<Item = (Ts, T)> + 'a {
    let mut streams: Vec<_> = streams.into_iter().map(Iterator::peekable).collect();
    std::iter::from_fn(move || {
        let (_, i) = (0..streams.len())
            .filter_map(|i| streams[i].peek().map(|&(ts, _)| (ts, i)))
            .min()?;
        streams[i].next()
    })
}

/// Replays the committed transfers in commit-timestamp order and checks every observation
/// against the state at its snapshot timestamp. Returns the final balances.
///
/// Each thread's log is in its own order, which is also timestamp order: a thread's commits
/// get increasing timestamps, and its successive snapshots never go back in time (both are
/// checked here, as the merged streams must come out sorted).
fn replay(initial: &[i64], init_ts: Ts, logs: &[Vec<Rec>], samples: &[Sample]) -> Vec<i64> {
    let mut commits = merge_sorted(
        logs.iter()
            .map(|log| {
                Box::new(log.iter().filter_map(|r| r.commit_ts().map(|ts| (ts, r))))
                    as Box<dyn Iterator<Item = (Ts, &Rec)>>
            })
            .collect(),
    )
    .peekable();
    // Observations, by snapshot timestamp: transfers' reads and audits.
    enum Obs<'a> {
        Transfer(&'a Rec),
        Audit(&'a Sample),
    }
    let mut samples: Vec<&Sample> = samples.iter().collect();
    samples.sort_by_key(|s| s.ts);
    let mut streams: Vec<Box<dyn Iterator<Item = (Ts, Obs<'_>)>>> = logs
        .iter()
        .map(|log| {
            Box::new(log.iter().map(|r| (r.snap, Obs::Transfer(r))))
                as Box<dyn Iterator<Item = (Ts, Obs<'_>)>>
        })
        .collect();
    streams.push(Box::new(samples.into_iter().map(|s| (s.ts, Obs::Audit(s)))));
    let observations = merge_sorted(streams);

    let mut state = initial.to_vec();
    let mut last_commit = init_ts;
    let mut apply_through = |state: &mut Vec<i64>, upto: Ts| {
        while let Some((ts, r)) = commits.next_if(|&(ts, _)| ts <= upto) {
            assert!(
                ts > last_commit,
                "commit timestamps out of order or shared: {ts} after {last_commit}"
            );
            last_commit = ts;
            let (from, to) = r.accounts();
            assert_eq!(
                (state[from], state[to]),
                (r.from_before, r.to_before),
                "transfer {r:?} read balances that were not current at its commit: lost update"
            );
            state[from] -= r.amount;
            state[to] += r.amount;
            assert!(state[from] >= 0, "transfer {r:?} overdrew account {from}");
        }
    };
    let mut last_obs = init_ts;
    for (ts, o) in observations {
        assert!(
            ts >= last_obs,
            "a thread's snapshots went back in time: {ts} after {last_obs}"
        );
        last_obs = ts;
        apply_through(&mut state, ts);
        match o {
            Obs::Transfer(r) => {
                let (from, to) = r.accounts();
                assert_eq!(
                    (state[from], state[to]),
                    (r.from_before, r.to_before),
                    "transfer {r:?} did not read its snapshot's state"
                );
                match r.commit_ts() {
                    None => assert!(r.from_before < r.amount, "declined without cause: {r:?}"),
                    Some(ts) => assert!(r.from_before >= r.amount && ts > r.snap, "{r:?}"),
                }
            }
            Obs::Audit(s) => assert_eq!(
                s.balances, state,
                "the audit at ts {} does not match the committed transfers up to it",
                s.ts
            ),
        }
    }
    apply_through(&mut state, Ts::MAX);
    state
}

fn run(cfg: Config) {
    let started = Instant::now();
    let db = Db::builder()
        .isolation(cfg.isolation)
        .build()
        .expect("valid options");
    let n = cfg.balances.len();
    let total: i64 = cfg.balances.iter().sum();
    let mut txn = db.begin();
    for (i, b) in cfg.balances.iter().enumerate() {
        txn.put(account(i), b.to_be_bytes()).unwrap();
    }
    let init_ts = txn.commit().unwrap();
    let stop = AtomicBool::new(false);
    let counters = Counters::default();
    let deadline = Instant::now() + duration();

    let (logs, samples) = std::thread::scope(|s| {
        let transfers: Vec<_> = (0..cfg.transfer_threads)
            .map(|t| {
                let (db, cfg, stop, counters) = (&db, &cfg, &stop, &counters);
                s.spawn(move || transfer_thread(db, cfg, t, stop, counters))
            })
            .collect();
        let auditors: Vec<_> = (0..cfg.auditors)
            .map(|_| {
                let (db, stop, counters) = (&db, &stop, &counters);
                s.spawn(move || auditor(db, n, total, stop, counters))
            })
            .collect();
        // Stop early if a thread died, so that its panic surfaces promptly.
        while Instant::now() < deadline
            && !transfers.iter().any(|h| h.is_finished())
            && !auditors.iter().any(|h| h.is_finished())
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        let logs: Vec<Vec<Rec>> = transfers
            .into_iter()
            .map(|h| h.join().expect("transfer thread panicked"))
            .collect();
        let samples: Vec<Sample> = auditors
            .into_iter()
            .flat_map(|h| h.join().expect("auditor panicked"))
            .collect();
        (logs, samples)
    });

    let committed: usize = logs
        .iter()
        .map(|log| log.iter().filter(|r| r.ts.is_some()).count())
        .sum();
    let declined = logs.iter().map(Vec::len).sum::<usize>() - committed;

    // The store's final state.
    let snap = db.snapshot();
    let last = audit_snapshot(&snap, n, total);
    assert!(last.iter().all(|&b| b >= 0));

    // Initial balances plus the net of the recorded committed transfers.
    let mut net = cfg.balances.clone();
    for r in logs.iter().flatten().filter(|r| r.ts.is_some()) {
        let (from, to) = r.accounts();
        net[from] -= r.amount;
        net[to] += r.amount;
    }
    assert_eq!(last, net, "final balances != initial + committed transfers");

    // Each thread's receipt holds its number of committed transfers.
    for (t, log) in logs.iter().enumerate() {
        let count = log.iter().filter(|r| r.ts.is_some()).count() as u64;
        let got = snap
            .get(receipt(t))
            .unwrap()
            .map(|v| u64::from_be_bytes(v[..].try_into().unwrap()));
        assert_eq!(got, (count > 0).then_some(count), "receipt of thread {t}");
    }

    // Every observation against the replay, and the replay against the store.
    let replayed = replay(&cfg.balances, init_ts, &logs, &samples);
    assert_eq!(replayed, last, "replay in commit order != final state");
    drop(snap);
    assert_eq!(db.stats().live_snapshots, 0, "a snapshot slot leaked");

    let conflicts = counters.conflicts.load(Ordering::Relaxed);
    let exhausted = counters.exhausted.load(Ordering::Relaxed);
    let snapshot_audits = counters.snapshot_audits.load(Ordering::Relaxed);
    let txn_audits = counters.txn_audits.load(Ordering::Relaxed);
    println!(
        "{}: {:?}, {n} accounts, {} transfer threads, {} auditors, {:.2?}: {} committed, \
         {declined} declined, {conflicts} conflicts ({exhausted} updates exhausted their \
         attempts), {snapshot_audits} snapshot audits, {txn_audits} transaction audits, {} \
         audits replay-checked",
        cfg.name,
        cfg.isolation,
        cfg.transfer_threads,
        cfg.auditors,
        started.elapsed(),
        committed,
        samples.len(),
    );
    assert!(committed > 0, "no transfer committed");
    if cfg.expect_conflicts {
        assert!(
            conflicts > 0,
            "no conflict at all: the run had too little contention to be meaningful"
        );
    }
    assert!(snapshot_audits > 0 && txn_audits > 0, "no audit ran");
}

fn spread(isolation: Isolation, name: &'static str) -> Config {
    Config {
        name,
        isolation,
        balances: (0..16).map(|i| 50 + 10 * i).collect(),
        transfer_threads: 4,
        auditors: 2,
        max_amount: 150,
        expect_conflicts: false,
    }
}

fn hot(isolation: Isolation, name: &'static str) -> Config {
    Config {
        name,
        isolation,
        balances: vec![100, 100],
        transfer_threads: 4,
        auditors: 1,
        max_amount: 120,
        expect_conflicts: true,
    }
}

#[test]
fn bank_snapshot_isolation() {
    run(spread(Isolation::Snapshot, "bank_snapshot_isolation"));
}

#[test]
fn bank_serializable() {
    run(spread(Isolation::Serializable, "bank_serializable"));
}

/// Two accounts: every transfer writes both, so every pair of concurrent transfers conflicts.
#[test]
fn bank_hot_snapshot_isolation() {
    run(hot(Isolation::Snapshot, "bank_hot_snapshot_isolation"));
}

#[test]
fn bank_hot_serializable() {
    run(hot(Isolation::Serializable, "bank_hot_serializable"));
}
