//! Single-key puts in memory and on a durable database under `SyncPolicy::Never` (and
//! `Periodic`), one after the other in one run, with the durable rate as a fraction of the
//! in-memory one: what a commit pays for writing its record to the operating system.
//!
//! ```text
//! cargo run --release --example never_commits -- [seconds per cell=2] [threads=1,2] [stores=memory,never,periodic] [DIR]
//! ```
//!
//! `stores` picks the cells (a profile of one of them runs it alone); the ratio column needs
//! `memory` among them.
//!
//! Random keys among 100,000, 100-byte values; every put is timed (the slowest, and how many
//! took over a millisecond). `periodic` syncs every 10 ms. Prints figures; asserts nothing
//! (the target is a ratio on a shared machine, not a test).

use std::path::Path;
use std::time::{Duration, Instant};

use snapkv::{Db, SyncPolicy};

const KEYS: u64 = 100_000;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(b"user0000");
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// What a cell measured.
struct Measured {
    /// Puts per second.
    rate: f64,
    /// The slowest put.
    max: Duration,
    /// Puts that took more than a millisecond.
    over_1ms: u64,
}

/// Puts from `threads` threads for `secs`, each one timed.
fn run(db: &Db, threads: u64, secs: f64) -> Measured {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let puts: (u64, Duration, u64) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t);
                    let value = [t as u8; 100];
                    let (mut n, mut max, mut over_1ms) = (0u64, Duration::ZERO, 0u64);
                    let mut now = Instant::now();
                    while now < deadline {
                        db.put(key(rng.u64(0..KEYS)), value).expect("put");
                        let after = Instant::now();
                        let took = after - now;
                        max = max.max(took);
                        over_1ms += u64::from(took > Duration::from_millis(1));
                        now = after;
                        n += 1;
                    }
                    (n, max, over_1ms)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, Duration::ZERO, 0), |a, b| {
                (a.0 + b.0, a.1.max(b.1), a.2 + b.2)
            })
    });
    Measured {
        rate: puts.0 as f64 / started.elapsed().as_secs_f64(),
        max: puts.1,
        over_1ms: puts.2,
    }
}

fn load(db: &Db) {
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        db.update(|t| {
            for &i in chunk {
                t.put(key(i), [0u8; 100])?;
            }
            Ok(())
        })
        .expect("load");
    }
}

fn cell(dir: &Path, policy: Option<SyncPolicy>, threads: u64, secs: f64) -> Measured {
    let db = match policy {
        None => Db::new(),
        Some(p) => Db::builder().path(dir).sync(p).build().expect("open"),
    };
    load(&db);
    let measured = run(&db, threads, secs);
    db.close().expect("close");
    measured
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2.0);
    let threads: Vec<u64> = args
        .next()
        .unwrap_or_else(|| "1,2".into())
        .split(',')
        .filter_map(|t| t.parse().ok())
        .collect();
    let stores = args
        .next()
        .unwrap_or_else(|| "memory,never,periodic".into());
    let wants = |name: &str| stores.split(',').any(|s| s == name);
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let base = args
        .next()
        .map_or_else(|| scratch.path().to_path_buf(), Into::into);
    println!("single-key puts, {secs} s a cell, in {}", base.display());
    println!(
        "{:<14} {:>3} {:>12} {:>8} {:>10} {:>8}",
        "store", "thr", "puts/s", "x memory", "max", ">1 ms"
    );
    let row = |name: &str, t: u64, m: &Measured, memory: f64| {
        println!(
            "{name:<14} {t:>3} {:>12.0} {:>8.2} {:>10.2?} {:>8}",
            m.rate,
            m.rate / memory,
            m.max,
            m.over_1ms
        );
    };
    for &t in &threads {
        let memory = if wants("memory") {
            let m = cell(&base, None, t, secs);
            row("memory", t, &m, m.rate);
            m.rate
        } else {
            f64::NAN
        };
        let policies = [
            ("never", SyncPolicy::Never),
            ("periodic", SyncPolicy::Periodic(Duration::from_millis(10))),
        ];
        for (name, policy) in policies.into_iter().filter(|(name, _)| wants(name)) {
            let dir = base.join(format!("{name}-{t}"));
            let m = cell(&dir, Some(policy), t, secs);
            row(name, t, &m, memory);
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}
