//! A mixed workload on the in-memory default: point reads at snapshots, read-modify-write
//! transactions retried by `Db::update`, and short range scans, from several threads at once.
//! Prints throughput, the conflict rate and what the garbage collector kept.
//!
//! ```text
//! cargo run --release --example workload -- [threads=2] [seconds=3] [keys=100000]
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use snapkv::{Db, Error};

fn key(i: u64) -> [u8; 16] {
    let mut k = *b"user000000000000";
    k[4..].copy_from_slice(format!("{i:012}").as_bytes());
    k
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let mut arg = |default: u64| args.next().and_then(Result::ok).unwrap_or(default);
    let (threads, seconds, keys) = (arg(2), arg(3), arg(100_000).max(1));

    let db = Db::new();
    let load = Instant::now();
    for i in 0..keys {
        db.put(key(i), [0u8; 100])?;
    }
    println!(
        "loaded {keys} keys (16-byte keys, 100-byte values) in {:.2?}",
        load.elapsed()
    );

    let stop = AtomicBool::new(false);
    let (reads, rmws, scans, conflicts) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (db, stop) = (&db, &stop);
            let (reads, rmws, scans, conflicts) = (&reads, &rmws, &scans, &conflicts);
            s.spawn(move || -> Result<(), Error> {
                let mut rng = fastrand::Rng::with_seed(t);
                while !stop.load(Ordering::Relaxed) {
                    let k = key(rng.u64(0..keys));
                    match rng.u8(0..100) {
                        0..50 => {
                            let v = db.snapshot().get(k)?;
                            assert!(v.is_some());
                            reads.fetch_add(1, Ordering::Relaxed);
                        }
                        50..90 => {
                            let mut attempts = 0;
                            db.update(|txn| {
                                attempts += 1;
                                let mut v = txn.get(k)?.map(|b| b.to_vec()).unwrap_or_default();
                                v[0] = v[0].wrapping_add(1);
                                txn.put(k, v)
                            })?;
                            conflicts.fetch_add(attempts - 1, Ordering::Relaxed);
                            rmws.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            let snap = db.snapshot();
                            let n = snap.range(&k[..]..).take(10).count();
                            assert!(n >= 1);
                            scans.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(())
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let secs = started.elapsed().as_secs_f64();
    let (r, w, sc, c) = (
        reads.into_inner(),
        rmws.into_inner(),
        scans.into_inner(),
        conflicts.into_inner(),
    );
    let total = r + w + sc;
    println!("{threads} threads, {secs:.1} s:");
    println!("  {:>12.0} ops/s total", total as f64 / secs);
    println!("  {:>12} snapshot reads", r);
    println!(
        "  {:>12} read-modify-write transactions ({c} conflicts retried)",
        w
    );
    println!("  {:>12} scans of 10 keys", sc);
    let stats = db.stats();
    println!(
        "  {} keys, {} versions linked ({:.2} per key) before collection",
        stats.keys,
        stats.versions,
        stats.versions as f64 / stats.keys as f64
    );
    let gc = db.collect_garbage();
    let stats = db.stats();
    println!(
        "  after collect_garbage: {} versions freed, {} versions linked",
        gc.versions_freed, stats.versions
    );
    Ok(())
}
