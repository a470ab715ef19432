//! Commit latency with more threads than cores: auto-commit `put`s, `update`s with one put,
//! and a `Mutex<BTreeMap>` doing the same inserts, to random keys of a 100K-key set, with
//! 1, 2, 16 and 64 threads in the same run. Prints throughput and the p50, p99, p99.9 and
//! max latency of one operation.
//!
//! The mutex B-tree is the yardstick: it serializes every insert, and its waiters sleep in
//! the kernel after a short spin. A committer descheduled while others wait for it to
//! publish must not cost the waiters much more than a descheduled mutex holder costs theirs
//! (see `Clock` in `src/clock.rs`).
//!
//! ```text
//! cargo run --release --features workload --example oversubscribed_latency -- [seconds=2] [threads=1,2,16,64]
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use snapkv::{Db, Error};

const KEYS: u64 = 100_000;
const VALUE: [u8; 100] = [1; 100];

fn key(i: u64) -> [u8; 16] {
    let mut k = *b"user000000000000";
    k[4..].copy_from_slice(format!("{i:012}").as_bytes());
    k
}

/// One of the compared ways to insert a key.
#[derive(Clone, Copy)]
enum Engine {
    Put,
    Update,
    MutexBTree,
}

impl Engine {
    /// The mutex runs first at each thread count, so that each snapkv row can be set
    /// against it.
    const IN_ORDER: [Self; 3] = [Self::MutexBTree, Self::Put, Self::Update];

    fn name(self) -> &'static str {
        match self {
            Self::Put => "snapkv put",
            Self::Update => "snapkv update(put)",
            Self::MutexBTree => "Mutex<BTreeMap>",
        }
    }
}

type Tree = Mutex<BTreeMap<Vec<u8>, Vec<u8>>>;

/// Runs `threads` workers inserting through `engine` for `seconds`; returns the operations per
/// second and the merged latency histogram (nanoseconds).
fn run(
    engine: Engine,
    db: &Db,
    tree: &Tree,
    threads: u64,
    seconds: u64,
) -> Result<(f64, Histogram<u64>), Error> {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let histograms = std::thread::scope(|s| -> Result<Vec<Histogram<u64>>, Error> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let stop = &stop;
                s.spawn(move || -> Result<Histogram<u64>, Error> {
                    let mut rng = fastrand::Rng::with_seed(t + 1);
                    let mut latencies = latency_histogram();
                    while !stop.load(Ordering::Relaxed) {
                        let k = key(rng.u64(0..KEYS));
                        let op = Instant::now();
                        match engine {
                            Engine::Put => {
                                db.put(k, VALUE)?;
                            }
                            Engine::Update => db.update(|txn| txn.put(k, VALUE))?,
                            Engine::MutexBTree => {
                                let mut map = tree.lock().expect("no worker panics");
                                map.insert(k.to_vec(), VALUE.to_vec());
                            }
                        }
                        let nanos = u64::try_from(op.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        latencies.saturating_record(nanos);
                    }
                    Ok(latencies)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().expect("a worker panicked"))
            .collect()
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = latency_histogram();
    for h in &histograms {
        all.add(h).expect("same bounds");
    }
    Ok((all.len() as f64 / elapsed, all))
}

/// Nanoseconds from 1 to a minute, to 3 significant figures.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1_000.0
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let seconds = args
        .next()
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(2)
        .max(1);
    let thread_counts: Vec<u64> = args
        .next()
        .map(|a| a.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 16, 64]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{cores} cores; inserts of 100-byte values to random keys of {KEYS}, {seconds} s per row"
    );

    let db = Db::new();
    let tree: Tree = Mutex::new(BTreeMap::new());
    for i in 0..KEYS {
        db.put(key(i), [0u8; 100])?;
        tree.lock()
            .expect("no worker panics")
            .insert(key(i).to_vec(), vec![0u8; 100]);
    }
    println!(
        "{:>7}  {:<20} {:>12} {:>9} {:>9} {:>9} {:>9}  p99.9 vs mutex",
        "threads", "engine", "ops/s", "p50 us", "p99 us", "p99.9 us", "max us"
    );
    for &threads in &thread_counts {
        let mut mutex_p999 = None;
        let mut rows = Vec::new();
        for engine in Engine::IN_ORDER {
            let (rate, h) = run(engine, &db, &tree, threads, seconds)?;
            let p999 = h.value_at_quantile(0.999);
            let base = *mutex_p999.get_or_insert(p999);
            rows.push((engine, rate, h, p999 as f64 / base.max(1) as f64));
        }
        for (engine, rate, h, vs) in rows {
            println!(
                "{threads:>7}  {:<20} {rate:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.0}  {vs:.2}x",
                engine.name(),
                micros(h.value_at_quantile(0.5)),
                micros(h.value_at_quantile(0.99)),
                micros(h.value_at_quantile(0.999)),
                micros(h.max()),
            );
        }
    }
    Ok(())
}
