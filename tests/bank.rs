//! The concurrent bank invariant: transfer threads move money between accounts in
//! transactions (retrying conflicts) while auditors sum all balances from snapshots and from
//! read-only transactions. The total never changes, no balance goes negative, and every
//! account ends at its initial balance plus the net of the transfers that committed.
//!
//! Runs ~2 s per test; `SNAPKV_BANK_SECS` sets the duration (CI's long mode uses 20).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use snapkv::{Db, Error, Isolation};

const INITIAL: i64 = 1_000;

fn duration() -> Duration {
    let secs = std::env::var("SNAPKV_BANK_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn account(i: usize) -> String {
    format!("acct/{i:03}")
}

fn balance(v: Option<bytes::Bytes>) -> i64 {
    let v = v.expect("every account exists");
    i64::from_be_bytes(v[..].try_into().expect("8-byte balance"))
}

/// One committed transfer: (from, to, amount).
type Transfer = (usize, usize, i64);

struct Outcome {
    transfers: Vec<Transfer>,
    conflicts: u64,
    audits: u64,
}

fn run_bank(accounts: usize, isolation: Isolation, transfer_threads: usize) -> Outcome {
    let db = Db::builder()
        .isolation(isolation)
        .max_attempts(1_000)
        .build()
        .expect("valid options");
    for i in 0..accounts {
        db.put(account(i), INITIAL.to_be_bytes()).unwrap();
    }
    let total = INITIAL * accounts as i64;
    let stop = AtomicBool::new(false);
    let conflicts = AtomicU64::new(0);
    let audits = AtomicU64::new(0);
    let deadline = Instant::now() + duration();

    let transfers = std::thread::scope(|s| {
        let workers: Vec<_> = (0..transfer_threads)
            .map(|t| {
                let (db, stop, conflicts) = (&db, &stop, &conflicts);
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t as u64 + 1);
                    let mut done: Vec<Transfer> = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let from = rng.usize(0..accounts);
                        let to = (from + rng.usize(1..accounts)) % accounts;
                        let amount = rng.i64(1..=150);
                        // Manual retry loop, to count conflicts.
                        loop {
                            let mut txn = db.begin();
                            let a = balance(txn.get(account(from)).unwrap());
                            let b = balance(txn.get(account(to)).unwrap());
                            if a < amount {
                                break; // insufficient funds: nothing to do
                            }
                            txn.put(account(from), (a - amount).to_be_bytes()).unwrap();
                            txn.put(account(to), (b + amount).to_be_bytes()).unwrap();
                            match txn.commit() {
                                Ok(_) => {
                                    done.push((from, to, amount));
                                    break;
                                }
                                Err(e) if e.is_retryable() => {
                                    conflicts.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => panic!("transfer failed: {e}"),
                            }
                        }
                    }
                    done
                })
            })
            .collect();
        for kind in 0..2 {
            let (db, stop, audits) = (&db, &stop, &audits);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (sum, min) = if kind == 0 {
                        // A snapshot, summed by a range scan and by point reads.
                        let snap = db.snapshot();
                        let by_scan: Vec<i64> = snap
                            .scan_prefix("acct/")
                            .map(|(_, v)| balance(Some(v)))
                            .collect();
                        assert_eq!(by_scan.len(), accounts, "an account vanished");
                        let by_get: i64 = (0..accounts)
                            .map(|i| balance(snap.get(account(i)).unwrap()))
                            .sum();
                        assert_eq!(
                            by_get,
                            by_scan.iter().sum::<i64>(),
                            "scan and gets disagree"
                        );
                        (by_get, by_scan.iter().copied().min().unwrap_or(0))
                    } else {
                        // A read-only transaction at the database's level: never aborts.
                        let txn = db.begin();
                        let bal: Vec<i64> = (0..accounts)
                            .map(|i| balance(txn.get(account(i)).unwrap()))
                            .collect();
                        txn.commit().expect("read-only transactions never abort");
                        (bal.iter().sum(), bal.iter().copied().min().unwrap_or(0))
                    };
                    assert_eq!(sum, total, "an audit saw money appear or vanish");
                    assert!(min >= 0, "an audit saw a negative balance {min}");
                    audits.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("transfer thread"))
            .collect::<Vec<_>>()
    });

    // Final state: the committed transfers, replayed, give every balance.
    let mut expected = vec![INITIAL; accounts];
    for &(from, to, amount) in &transfers {
        expected[from] -= amount;
        expected[to] += amount;
    }
    let snap = db.snapshot();
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(balance(snap.get(account(i)).unwrap()), *want, "account {i}");
    }
    Outcome {
        transfers,
        conflicts: conflicts.into_inner(),
        audits: audits.into_inner(),
    }
}

fn check(accounts: usize, isolation: Isolation, threads: usize) {
    let out = run_bank(accounts, isolation, threads);
    println!(
        "{accounts} accounts, {isolation:?}, {threads} transfer threads: {} transfers, {} conflicts, {} audits",
        out.transfers.len(),
        out.conflicts,
        out.audits
    );
    assert!(!out.transfers.is_empty(), "no transfer committed");
    assert!(out.audits > 0, "no audit ran");
}

#[test]
fn bank_snapshot_isolation() {
    check(16, Isolation::Snapshot, 3);
}

#[test]
fn bank_serializable() {
    check(16, Isolation::Serializable, 3);
}

// Two accounts: every transfer conflicts with every concurrent one.
#[test]
fn bank_hot_accounts() {
    let out = run_bank(2, Isolation::Snapshot, 4);
    assert!(!out.transfers.is_empty());
    println!(
        "hot: {} transfers, {} conflicts",
        out.transfers.len(),
        out.conflicts
    );
}

// `update` retries conflicts by itself and keeps the invariant too.
#[test]
fn bank_with_update_helper() {
    let db = Db::new();
    for i in 0..4 {
        db.put(account(i), INITIAL.to_be_bytes()).unwrap();
    }
    let done = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (db, done) = (&db, &done);
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                for _ in 0..500 {
                    let (from, to) = (rng.usize(0..4), rng.usize(0..4));
                    if from == to {
                        continue;
                    }
                    let r: Result<(), Error> = db.update(|txn| {
                        let a = balance(txn.get(account(from))?);
                        let b = balance(txn.get(account(to))?);
                        txn.put(account(from), (a - 1).to_be_bytes())?;
                        txn.put(account(to), (b + 1).to_be_bytes())?;
                        Ok(())
                    });
                    match r {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::RetriesExhausted { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let snap = db.snapshot();
    let sum: i64 = snap
        .scan_prefix("acct/")
        .map(|(_, v)| balance(Some(v)))
        .sum();
    assert_eq!(sum, 4 * INITIAL);
    assert!(done.into_inner() > 0);
}
