//! Scan latency tails under inserts: loads `records` keys, then runs 95% short scans (at most
//! 100 pairs, through the owned `Snapshot::range` iterator) and 5% inserts of new keys on
//! `threads` threads for `seconds`, and prints p50 / p99 / p99.9 / max of the scans, the
//! slowest insert, and the scan throughput. Keys are hashed (as YCSB's), so new keys land all
//! over the key space, between the keys of the index's sorted run. Also times the first scan
//! after the load (the index has not been built yet then).
//!
//! On a shared host, a scan's latency is mostly the time its thread waited for a CPU. With
//! `net=1` (Linux), each scan also reads its thread's run-queue wait from
//! `/proc/thread-self/schedstat` before and after, and the figures are printed a second time
//! with that wait subtracted: what remains is the scan's own work and any wait for a lock
//! (a thread blocked on a lock is not on the run queue). The two reads cost some µs a scan.
//!
//! ```text
//! cargo run --release --example scan_tails -- [records=1000000] [seconds=10] [threads=2] [net=0]
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use snapkv::{Db, Error};

/// Longest scan, in pairs.
const MAX_SCAN: usize = 100;

/// The `i`-th key: 20 bytes, spread over the key space by a 64-bit mix of `i`.
fn key(i: u64) -> [u8; 20] {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mut k = *b"user0000000000000000";
    k[4..].copy_from_slice(format!("{z:016x}").as_bytes());
    k
}

/// What a worker thread measured: each scan's latency, pairs read, the slowest insert, and
/// when each scan over 20 ms started (since the run began) with its latency.
/// With `net`, also each scan's latency less its run-queue wait.
type Thread = (Vec<u64>, u64, u64, Vec<(Duration, u64)>, Vec<u64>);

/// The calling thread's total wait on the run queue so far (runnable, not running), if the
/// kernel reports it.
fn run_queue_wait() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The latency at quantile `q` of sorted `ns`.
fn quantile(ns: &[u64], q: f64) -> Duration {
    if ns.is_empty() {
        return Duration::ZERO;
    }
    let at = ((ns.len() as f64 * q).ceil() as usize).clamp(1, ns.len()) - 1;
    Duration::from_nanos(ns[at])
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let mut arg = |default: u64| args.next().and_then(Result::ok).unwrap_or(default);
    let (records, seconds, threads) = (arg(1_000_000).max(1), arg(10), arg(2).max(1));
    let net = arg(0) == 1 && run_queue_wait().is_some();

    let db = Db::new();
    let load = Instant::now();
    for i in 0..records {
        db.put(key(i), [7u8; 100])?;
    }
    let loaded = load.elapsed();
    let first = Instant::now();
    let n = db.snapshot().range(&key(0)[..]..).take(MAX_SCAN).count();
    let first = first.elapsed();
    println!(
        "loaded {records} records in {loaded:.2?}; first scan after the load ({n} pairs): {first:.2?}"
    );

    // Keys `0..next` exist (inserts take the next number; a scan may start past the newest
    // key whose insert has not finished, which only shortens it).
    let next = AtomicU64::new(records);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let per_thread: Vec<Thread> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (db, next, stop) = (&db, &next, &stop);
                s.spawn(move || -> Result<Thread, Error> {
                    let mut rng = fastrand::Rng::with_seed(t);
                    let mut scans = Vec::with_capacity(1 << 20);
                    let mut slow = Vec::new();
                    let mut nets = Vec::new();
                    let (mut pairs, mut slowest_insert) = (0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        if rng.u8(0..100) < 5 {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let t0 = Instant::now();
                            db.put(key(i), [7u8; 100])?;
                            slowest_insert = slowest_insert.max(t0.elapsed().as_nanos() as u64);
                        } else {
                            let start = key(rng.u64(0..next.load(Ordering::Relaxed)));
                            let len = rng.usize(1..=MAX_SCAN);
                            let waited = net.then(run_queue_wait).flatten();
                            let t0 = Instant::now();
                            let got = db.snapshot().range(&start[..]..).take(len).count();
                            let ns = t0.elapsed().as_nanos() as u64;
                            if let Some(w0) = waited {
                                let w = run_queue_wait().map_or(Duration::ZERO, |w1| w1 - w0);
                                nets.push(ns.saturating_sub(w.as_nanos() as u64));
                            }
                            scans.push(ns);
                            if ns > 20_000_000 {
                                slow.push((t0.duration_since(started), ns));
                            }
                            pairs += got as u64;
                        }
                    }
                    Ok((scans, pairs, slowest_insert, slow, nets))
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().expect("worker panicked"))
            .collect::<Result<_, Error>>()
    })?;
    let elapsed = started.elapsed();

    let mut all: Vec<u64> = per_thread.iter().flat_map(|t| &t.0).copied().collect();
    all.sort_unstable();
    let pairs: u64 = per_thread.iter().map(|t| t.1).sum();
    let slowest_insert = per_thread.iter().map(|t| t.2).max().unwrap_or(0);
    let inserted = next.load(Ordering::Relaxed) - records;
    println!(
        "{threads} threads, {:.1}s: {} scans ({:.0}/s, {pairs} pairs), {inserted} inserts (slowest {:.2?})",
        elapsed.as_secs_f64(),
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        Duration::from_nanos(slowest_insert),
    );
    println!(
        "scan latency: p50 {:.1?}  p99 {:.1?}  p99.9 {:.1?}  max {:.2?}  (over 20 ms: {}, over 100 ms: {})",
        quantile(&all, 0.5),
        quantile(&all, 0.99),
        quantile(&all, 0.999),
        quantile(&all, 1.0),
        all.iter().filter(|&&ns| ns > 20_000_000).count(),
        all.iter().filter(|&&ns| ns > 100_000_000).count(),
    );
    if net {
        let mut nets: Vec<u64> = per_thread.iter().flat_map(|t| &t.4).copied().collect();
        nets.sort_unstable();
        println!(
            "less run-queue wait: p50 {:.1?}  p99 {:.1?}  p99.9 {:.1?}  max {:.2?}  (over 20 ms: {}, over 100 ms: {})",
            quantile(&nets, 0.5),
            quantile(&nets, 0.99),
            quantile(&nets, 0.999),
            quantile(&nets, 1.0),
            nets.iter().filter(|&&ns| ns > 20_000_000).count(),
            nets.iter().filter(|&&ns| ns > 100_000_000).count(),
        );
    }
    let mut slow: Vec<(Duration, u64)> = per_thread.iter().flat_map(|t| t.3.clone()).collect();
    // The slowest first.
    slow.sort_unstable_by_key(|&(_, ns)| std::cmp::Reverse(ns));
    if !slow.is_empty() {
        let shown: Vec<String> = slow
            .iter()
            .take(12)
            .map(|(at, ns)| format!("{:.2}s:{:.0}ms", at.as_secs_f64(), *ns as f64 / 1e6))
            .collect();
        println!("slowest scans (start: latency): {}", shown.join(" "));
    }
    Ok(())
}
