//! Does a big transaction stall other committers? One thread commits a transaction of many
//! keys while another commits one-key `put`s to other keys, timing each; prints the latency of
//! the one-key commits that ran while the big commit was in flight (p50, p99.9, p99.99, max,
//! and how many took over 10 ms), and how long the big commit took.
//!
//! A committer whose timestamp is taken after the big transaction's cannot publish before the
//! big one finished installing (timestamps become visible in order), so the window between
//! the big commit taking its timestamp and publishing it bounds the one-key commits' tail.
//!
//! ```text
//! cargo run --release --example big_commit -- [keys=1000000] [rounds=3]
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use snapkv::{Db, Error};

/// Bytes of each value in the big transaction (the workload's value size).
const VALUE_LEN: usize = 100;

fn big_key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(b"big:");
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn small_key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(b"one:");
    k[8..].copy_from_slice(&(i % 1024).to_be_bytes());
    k
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One round: buffers `keys` writes, then commits them while the other thread `put`s.
/// Returns the big commit's duration and the latencies of the one-key commits that started
/// while it ran.
fn round(db: &Db, keys: u64, round: u64) -> Result<(Duration, Vec<Duration>), Error> {
    let mut txn = db.begin();
    let value = [round as u8; VALUE_LEN];
    for i in 0..keys {
        txn.put(big_key(i), value)?;
    }
    let committing = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        let small = s.spawn(|| -> Result<Vec<Duration>, Error> {
            let mut during = Vec::new();
            start.wait();
            let mut i = 0u64;
            while !done.load(Ordering::Acquire) {
                let in_flight = committing.load(Ordering::Acquire);
                let t = Instant::now();
                db.put(small_key(i), i.to_le_bytes())?;
                let took = t.elapsed();
                // Counted if the big commit was in flight when this put started or ended.
                if in_flight
                    || (committing.load(Ordering::Acquire) && !done.load(Ordering::Acquire))
                {
                    during.push(took);
                }
                i += 1;
            }
            Ok(during)
        });
        start.wait();
        // Let the small committer reach its steady state first.
        std::thread::sleep(Duration::from_millis(20));
        committing.store(true, Ordering::Release);
        let t = Instant::now();
        let committed = txn.commit();
        let took = t.elapsed();
        done.store(true, Ordering::Release);
        let during = small.join().expect("the small committer panicked")?;
        committed?;
        Ok((took, during))
    })
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let mut arg = |default: u64| args.next().and_then(Result::ok).unwrap_or(default);
    let (keys, rounds) = (arg(1_000_000).max(1), arg(3).max(1));
    let db = Db::new();
    println!("{keys} keys of 16 bytes, values of {VALUE_LEN} bytes, {rounds} rounds");
    println!(
        "{:>5} {:>12} {:>8} {:>10} {:>11} {:>11} {:>11} {:>7}",
        "round", "big commit", "puts", "p50", "p99.9", "p99.99", "max", ">10ms"
    );
    for r in 0..rounds {
        // The first round creates the keys, the next ones overwrite them.
        let (took, mut during) = round(&db, keys, r)?;
        during.sort_unstable();
        println!(
            "{r:>5} {:>9.1} ms {:>8} {:>7.3} ms {:>8.3} ms {:>8.3} ms {:>8.1} ms {:>7}",
            ms(took),
            during.len(),
            ms(percentile(&during, 0.5)),
            ms(percentile(&during, 0.999)),
            ms(percentile(&during, 0.9999)),
            ms(during.last().copied().unwrap_or_default()),
            during
                .iter()
                .filter(|d| **d > Duration::from_millis(10))
                .count(),
        );
        db.collect_garbage();
    }
    Ok(())
}
