//! Durable single-key write transactions from 1 to 16 threads: snapkv under each sync policy
//! beside fjall (optimistic transactions, journal synced per commit or only written) and redb
//! (durable at each commit), all on the file system of one scratch directory (or `DIR`), in
//! one run; with the bytes each commit wrote and, for snapkv, the syncs it took. Then how long
//! reopening a snapkv database of `KEYS` keys takes, against loading them into memory.
//!
//! ```text
//! cargo run --release --features workload --example durable_writes -- [seconds per cell=2] [KEYS=1000000] [DIR]
//! ```
//!
//! Random keys of 100,000, 100-byte values. Bytes per commit: what the process wrote to the
//! kernel (`wchar` of `/proc/self/io`, plus, for snapkv, the log's bytes: it copies them into
//! memory-mapped segments, which no system call counts) and what it caused to be written to
//! the storage device (`write_bytes`, counted in pages), over the commits of the cell.

#[path = "../benches/durable/engines.rs"]
mod engines;

use std::path::Path;
use std::time::{Duration, Instant};

use snapkv::workload::{key, value, Engine, Outcome, SnapkvEngine};
use snapkv::{Db, Isolation, SyncPolicy};

use engines::{Fjall, Redb};

const KEYS: u64 = 100_000;

/// `(wchar, write_bytes)` of this process so far.
fn io_counters() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("wchar:"), field("write_bytes:"))
}

/// Runs single-key writes from `threads` threads for `secs`; returns commits.
fn run<E: Engine>(engine: &E, threads: u64, secs: f64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t);
                    let v = value(t);
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let k = key(rng.u64(0..KEYS));
                        while engine.update(&k, &v) == Outcome::Conflict {}
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// One row: the store's rate and bytes per commit at `threads`, plus syncs per commit if known.
/// `log`: snapkv's log counters (syncs, bytes written), `None` for the peers.
fn row<E: Engine>(
    name: &str,
    engine: &E,
    threads: u64,
    secs: f64,
    log: impl Fn() -> Option<(u64, u64)>,
) {
    let (w0, b0) = io_counters();
    let l0 = log();
    let started = Instant::now();
    let commits = run(engine, threads, secs).max(1);
    let rate = commits as f64 / started.elapsed().as_secs_f64();
    let (mut w1, b1) = io_counters();
    let per = |d: u64| d as f64 / commits as f64;
    let syncs = match (l0, log()) {
        (Some((s0, l0)), Some((s1, l1))) => {
            w1 += l1 - l0;
            format!("{:>8.3}", per(s1 - s0))
        }
        _ => format!("{:>8}", "-"),
    };
    println!(
        "{name:<15} {threads:>3} {rate:>12.0} {:>10.0} {:>12.0} {syncs}",
        per(w1 - w0),
        per(b1 - b0)
    );
}

fn snapkv(dir: &Path, policy: Option<SyncPolicy>) -> SnapkvEngine {
    let db = match policy {
        None => Db::new(),
        Some(p) => Db::builder().path(dir).sync(p).build().expect("open"),
    };
    SnapkvEngine::new(db, Isolation::Snapshot)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2.0);
    let reopen_keys: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let base = args
        .next()
        .map_or_else(|| scratch.path().to_path_buf(), Into::into);
    println!(
        "single-key write transactions, {secs} s a cell, in {}",
        base.display()
    );
    println!(
        "{:<15} {:>3} {:>12} {:>10} {:>12} {:>8}",
        "store", "thr", "commits/s", "wchar/c", "disk B/c", "syncs/c"
    );
    let policies = [
        ("snapkv-memory", None),
        ("snapkv-always", Some(SyncPolicy::Always)),
        (
            "snapkv-10ms",
            Some(SyncPolicy::Periodic(Duration::from_millis(10))),
        ),
        ("snapkv-never", Some(SyncPolicy::Never)),
    ];
    for threads in [1u64, 2, 4, 8, 16] {
        let cell = base.join(format!("t{threads}"));
        for (name, policy) in policies {
            let e = snapkv(&cell.join(name), policy);
            let log = || e.db().stats().log.map(|l| (l.syncs, l.bytes_written));
            row(name, &e, threads, secs, log);
            e.db().clone().close().expect("close");
        }
        for sync in [true, false] {
            let dir = cell.join(format!("fjall-{sync}"));
            std::fs::create_dir_all(&dir).expect("directory");
            let e = Fjall::open(&dir, sync);
            row(&e.name(), &e, threads, secs, || None);
        }
        let dir = cell.join("redb");
        std::fs::create_dir_all(&dir).expect("directory");
        let e = Redb::open(&dir);
        row("redb", &e, threads, secs, || None);
        std::fs::remove_dir_all(&cell).expect("removing a cell's databases");
    }

    // Reopening `reopen_keys` keys written one per commit, against loading them into an
    // in-memory database: with the default background checkpoints (the log a reopen reads
    // stays under `DEFAULT_CHECKPOINT_LOG_BYTES`), from the whole log (checkpoints off), and
    // from a checkpoint alone.
    let dir = base.join("reopen");
    let v = value(1);
    let started = Instant::now();
    let memory = Db::new();
    for i in 0..reopen_keys {
        memory.put(key(i), v).expect("put");
    }
    let load = started.elapsed();
    drop(memory);
    let reopen = |dir: &Path| {
        let started = Instant::now();
        let db = Db::open(dir).expect("reopen");
        let took = started.elapsed();
        assert_eq!(db.stats().keys as u64, reopen_keys);
        (db, took)
    };
    let write_all = |dir: &Path, checkpoint_log_bytes: u64| {
        let db = Db::builder()
            .path(dir)
            .sync(SyncPolicy::Never)
            .checkpoint_log_bytes(checkpoint_log_bytes)
            .build()
            .expect("open");
        for i in 0..reopen_keys {
            db.put(key(i), v).expect("put");
        }
        db.close().expect("close");
    };
    write_all(&base.join("defaults"), snapkv::DEFAULT_CHECKPOINT_LOG_BYTES);
    let (db, with_checkpoints) = reopen(&base.join("defaults"));
    db.close().expect("close");
    write_all(&dir, u64::MAX);
    let (db, from_log) = reopen(&dir);
    db.checkpoint().expect("checkpoint");
    db.close().expect("close");
    let (db, from_checkpoint) = reopen(&dir);
    db.close().expect("close");
    let ratio = |d: Duration| d.as_secs_f64() / load.as_secs_f64();
    println!(
        "{reopen_keys} keys: load into memory {load:.2?}; reopen with default checkpoints \
         {with_checkpoints:.2?} ({:.2}x), from the whole log {from_log:.2?} ({:.2}x), from a \
         checkpoint alone {from_checkpoint:.2?} ({:.2}x)",
        ratio(with_checkpoints),
        ratio(from_log),
        ratio(from_checkpoint)
    );
}
