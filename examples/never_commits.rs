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
//! Random keys among 100,000, 100-byte values. Prints figures; asserts nothing (the
//! target is a ratio on a shared machine, not a test).

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

/// Puts from `threads` threads for `secs`; returns the puts per second.
fn run(db: &Db, threads: u64, secs: f64) -> f64 {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let puts: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t);
                    let value = [t as u8; 100];
                    let mut n = 0u64;
                    while n % 256 != 0 || Instant::now() < deadline {
                        db.put(key(rng.u64(0..KEYS)), value).expect("put");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    puts as f64 / started.elapsed().as_secs_f64()
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

fn cell(dir: &Path, policy: Option<SyncPolicy>, threads: u64, secs: f64) -> f64 {
    let db = match policy {
        None => Db::new(),
        Some(p) => Db::builder().path(dir).sync(p).build().expect("open"),
    };
    load(&db);
    let rate = run(&db, threads, secs);
    db.close().expect("close");
    rate
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
        "{:<14} {:>3} {:>12} {:>8}",
        "store", "thr", "puts/s", "x memory"
    );
    for &t in &threads {
        let memory = if wants("memory") {
            let rate = cell(&base, None, t, secs);
            println!("{:<14} {t:>3} {rate:>12.0} {:>8.2}", "memory", 1.0);
            rate
        } else {
            f64::NAN
        };
        let policies = [
            ("never", SyncPolicy::Never),
            ("periodic", SyncPolicy::Periodic(Duration::from_millis(100))),
        ];
        for (name, policy) in policies.into_iter().filter(|(name, _)| wants(name)) {
            let dir = base.join(format!("{name}-{t}"));
            let rate = cell(&dir, Some(policy), t, secs);
            println!("{name:<14} {t:>3} {rate:>12.0} {:>8.2}", rate / memory);
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}
