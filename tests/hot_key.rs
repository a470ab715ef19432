//! A hot key never makes `Db::update` give up.
//!
//! Eight threads increment one counter key through `Db::update` with default options, a fixed
//! number of times each (bounded by work, not time), under snapshot isolation and serializable.
//! Every call must commit (no `RetriesExhausted`) and no increment may be lost: the final value
//! is the number of calls. Two shapes of increment: a tight read-modify-write, and one whose
//! thread gives up its time slice between the read and the write (a transaction descheduled
//! mid-flight, as on an oversubscribed host), which makes every attempt race longer.
//!
//! Without a way for a call that keeps losing to get its turn, a retry cap must fail some
//! calls: with eight racers and a random winner a call loses 32 rounds in a row with
//! probability (7/8)^32, about 1.4%, and in practice losses are correlated (a thread that slept
//! in backoff runs its closure cold, or is descheduled, and loses again to a thread committing
//! in a tight loop). Against the plain jittered-backoff loop these tests failed with up to
//! dozens of exhausted calls per run.

use std::sync::atomic::{AtomicU64, Ordering};

use snapkv::{Db, Error, Isolation};

const THREADS: u64 = 8;
const KEY: &[u8] = b"hot/counter";

#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Read, add one, write.
    Tight,
    /// Read, yield the CPU, add one, write.
    Descheduled,
}

fn read(v: Option<snapkv::Bytes>) -> u64 {
    v.map_or(0, |b| u64::from_le_bytes(b[..].try_into().unwrap()))
}

/// Runs `per_thread` increments on each thread; returns (calls that exhausted their retries,
/// final counter value).
fn hammer(isolation: Isolation, shape: Shape, per_thread: u64) -> (u64, u64) {
    let db = Db::builder().isolation(isolation).build().unwrap();
    let exhausted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..per_thread {
                    let res = db.update(|txn| {
                        let cur = read(txn.get(KEY)?);
                        if let Shape::Descheduled = shape {
                            std::thread::yield_now();
                        }
                        txn.put(KEY, (cur + 1).to_le_bytes())
                    });
                    match res {
                        Ok(()) => {}
                        Err(Error::RetriesExhausted { .. }) => {
                            exhausted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            });
        }
    });
    (exhausted.into_inner(), read(db.get(KEY).unwrap()))
}

fn check(isolation: Isolation, shape: Shape, per_thread: u64) {
    let calls = THREADS * per_thread;
    let (exhausted, value) = hammer(isolation, shape, per_thread);
    assert_eq!(
        exhausted, 0,
        "{isolation:?}, {shape:?}: {exhausted} of {calls} calls ran out of attempts"
    );
    assert_eq!(value, calls, "{isolation:?}, {shape:?}: lost increments");
}

#[test]
fn tight_increments_under_snapshot_isolation_all_commit() {
    check(Isolation::Snapshot, Shape::Tight, 100_000);
}

#[test]
fn tight_increments_serializable_all_commit() {
    check(Isolation::Serializable, Shape::Tight, 100_000);
}

#[test]
fn descheduled_increments_under_snapshot_isolation_all_commit() {
    check(Isolation::Snapshot, Shape::Descheduled, 50_000);
}

#[test]
fn descheduled_increments_serializable_all_commit() {
    check(Isolation::Serializable, Shape::Descheduled, 50_000);
}
