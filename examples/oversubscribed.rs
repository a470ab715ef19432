//! Commits from more threads than cores: auto-commit `put`s of 100-byte values to random keys
//! of a 100K-key database, from 1 to 32 threads, two seconds each. Prints commits per second
//! and each row's multiple of the first.
//!
//! With more committing threads than cores, some committer is always descheduled somewhere
//! between taking its commit timestamp and publishing it. Publication is built so that this
//! costs little: a finished commit is made visible by whichever committer runs next (see
//! `Clock` in `src/clock.rs`), instead of waiting for its own thread to be scheduled again.
//!
//! ```text
//! cargo run --release --example oversubscribed -- [seconds=2] [max_threads=32]
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use snapkv::{Db, Error};

const KEYS: u64 = 100_000;

fn key(i: u64) -> [u8; 16] {
    let mut k = *b"user000000000000";
    k[4..].copy_from_slice(format!("{i:012}").as_bytes());
    k
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let mut arg = |default: u64| args.next().and_then(Result::ok).unwrap_or(default);
    let (seconds, max_threads) = (arg(2).max(1), arg(32).max(1));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{cores} cores; auto-commit puts to {KEYS} keys, {seconds} s per row");

    let db = Db::new();
    for i in 0..KEYS {
        db.put(key(i), [0u8; 100])?;
    }
    let mut first = None;
    let mut threads = 1;
    while threads <= max_threads {
        let stop = AtomicBool::new(false);
        let commits = AtomicU64::new(0);
        let started = Instant::now();
        std::thread::scope(|s| -> Result<(), Error> {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (db, stop, commits) = (&db, &stop, &commits);
                    s.spawn(move || -> Result<(), Error> {
                        let mut rng = fastrand::Rng::with_seed(t);
                        let mut n = 0;
                        while !stop.load(Ordering::Relaxed) {
                            db.put(key(rng.u64(0..KEYS)), [1u8; 100])?;
                            n += 1;
                        }
                        commits.fetch_add(n, Ordering::Relaxed);
                        Ok(())
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_secs(seconds));
            stop.store(true, Ordering::Relaxed);
            for w in workers {
                w.join().expect("a worker panicked")?;
            }
            Ok(())
        })?;
        let rate = commits.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        let base = *first.get_or_insert(rate);
        println!(
            "{threads:>3} threads: {rate:>10.0} commits/s  ({:.2}x of 1 thread)",
            rate / base
        );
        threads *= 2;
    }
    Ok(())
}
