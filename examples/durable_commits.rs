//! Durable single-key commits per second at 1, 2, 4 and 8 threads under each sync policy, on
//! the file system of a scratch directory (or of `DIR`), beside the in-memory rate; and how
//! long reopening (recovery of the whole log) takes. Distinct keys per thread, 100-byte values.
//!
//! Under `Always`, commits of different keys share syncs (group commit), so the rate should
//! grow with the threads; under `Never` a commit costs a write to the OS.
//!
//! ```text
//! cargo run --release --example durable_commits -- [commits per thread=2000] [DIR]
//! ```

use std::time::{Duration, Instant};

use snapkv::{Db, SyncPolicy};

const VALUE: [u8; 100] = [7; 100];

fn run(db: &Db, threads: usize, per_thread: usize) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..per_thread {
                    db.put(format!("t{t:02}-{i:08}"), VALUE).unwrap();
                }
            });
        }
    });
    (threads * per_thread) as f64 / started.elapsed().as_secs_f64()
}

fn main() -> snapkv::Result<()> {
    let mut args = std::env::args().skip(1);
    let per_thread: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let base = args
        .next()
        .map_or_else(|| scratch.path().to_path_buf(), Into::into);
    println!(
        "{per_thread} one-key commits per thread, in {}",
        base.display()
    );
    let policies = [
        ("memory", None),
        ("Always", Some(SyncPolicy::Always)),
        (
            "Periodic(10ms)",
            Some(SyncPolicy::Periodic(Duration::from_millis(10))),
        ),
        ("Never", Some(SyncPolicy::Never)),
    ];
    for (name, policy) in policies {
        for threads in [1, 2, 4, 8] {
            let dir = base.join(format!("{name}-{threads}"));
            let db = match policy {
                None => Db::new(),
                Some(p) => Db::builder().path(&dir).sync(p).build()?,
            };
            let rate = run(&db, threads, per_thread);
            db.close()?;
            println!("{name:<15} {threads} threads {rate:>12.0} commits/s");
            if policy.is_some() && threads == 8 {
                let started = Instant::now();
                let db = Db::open(&dir)?;
                let took = started.elapsed();
                let keys = db.recovery().map_or(0, |r| r.keys);
                println!("{name:<15} reopen: {keys} keys in {took:?}");
                db.close()?;
            }
            if policy.is_some() {
                std::fs::remove_dir_all(&dir).expect("removing a scratch database");
            }
        }
    }
    Ok(())
}
