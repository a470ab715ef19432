//! One hot key: eight threads increment one counter for N seconds through `Db::update`
//! (snapshot isolation, then serializable), and, for reference, through a `Mutex<u64>`, in the
//! same run. Prints increments per second, per-call latency (p50 to p99.99, max) and how many
//! calls ended in `RetriesExhausted`; then the uncontended `update` (one thread, no
//! conflicts) in nanoseconds per call.
//!
//! The fairness figure is the max: a call that keeps losing the race shows up there (and,
//! if it loses `max_attempts` times, as an exhausted call).
//!
//! ```text
//! cargo run --release --features workload --example hot_key -- [seconds=10] [threads=8]
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use snapkv::{Db, Error, Isolation};

const KEY: &[u8] = b"hot/counter";

fn read(v: Option<snapkv::Bytes>) -> u64 {
    v.map_or(0, |b| u64::from_le_bytes(b[..].try_into().unwrap()))
}

struct Row {
    ops: u64,
    exhausted: u64,
    hist: Histogram<u64>,
    secs: f64,
}

/// Runs `op` on `threads` threads until `secs` have passed; `op` returns whether the call
/// committed (false: it ran out of attempts).
fn run(threads: usize, secs: u64, op: &(dyn Fn() -> bool + Sync)) -> Row {
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let rows: Vec<(u64, u64, Histogram<u64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
                    let (mut ops, mut exhausted) = (0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let ok = op();
                        hist.saturating_record(t.elapsed().as_nanos() as u64);
                        if ok {
                            ops += 1;
                        } else {
                            exhausted += 1;
                        }
                    }
                    (ops, exhausted, hist)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let (mut ops, mut exhausted) = (0, 0);
    for (o, e, h) in rows {
        ops += o;
        exhausted += e;
        hist.add(h).unwrap();
    }
    Row {
        ops,
        exhausted,
        hist,
        secs,
    }
}

fn print(name: &str, r: &Row) {
    let us = |ns: u64| ns as f64 / 1000.0;
    println!(
        "{name:<22} {:>12.0} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.1} {:>10}",
        r.ops as f64 / r.secs,
        us(r.hist.value_at_quantile(0.5)),
        us(r.hist.value_at_quantile(0.99)),
        us(r.hist.value_at_quantile(0.999)),
        us(r.hist.value_at_quantile(0.9999)),
        us(r.hist.max()),
        r.exhausted
    );
}

fn increment(db: &Db) -> bool {
    let res = db.update(|txn| {
        let cur = read(txn.get(KEY)?);
        txn.put(KEY, (cur + 1).to_le_bytes())
    });
    match res {
        Ok(()) => true,
        Err(Error::RetriesExhausted { .. }) => false,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let mut arg = |default: u64| args.next().and_then(Result::ok).unwrap_or(default);
    let (secs, threads) = (arg(10).max(1), arg(8).max(1) as usize);
    println!("{threads} threads incrementing one key for {secs} s each");
    println!(
        "{:<22} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "", "incr/s", "p50 us", "p99 us", "p99.9 us", "p99.99 us", "max us", "exhausted"
    );
    for (name, isolation) in [
        ("snapkv SI", Isolation::Snapshot),
        ("snapkv Serializable", Isolation::Serializable),
    ] {
        let db = Db::builder().isolation(isolation).build().unwrap();
        let row = run(threads, secs, &|| increment(&db));
        let value = read(db.get(KEY).unwrap());
        assert_eq!(value, row.ops, "{name}: lost increments");
        print(name, &row);
    }
    let counter = Mutex::new(0u64);
    let row = run(threads, secs, &|| {
        *counter.lock().unwrap() += 1;
        true
    });
    assert_eq!(*counter.lock().unwrap(), row.ops);
    print("Mutex<u64>", &row);

    // The uncontended path: one thread, no conflicts.
    let db = Db::new();
    let n = 2_000_000u64;
    for _ in 0..n / 10 {
        increment(&db);
    }
    let t = Instant::now();
    for _ in 0..n {
        increment(&db);
    }
    println!(
        "uncontended update (1 thread): {:.1} ns/call",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
