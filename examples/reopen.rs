//! How long reopening a database of `KEYS` keys takes, against loading the same keys into an
//! in-memory database: from the whole log (no checkpoint) and from a checkpoint alone, `RUNS`
//! times each in one run, with the median ratios.
//!
//! ```text
//! cargo run --release --features workload --example reopen -- [KEYS=1000000] [RUNS=3] [DIR] [log]
//! ```
//!
//! The keys are written one per commit (16-byte keys, 100-byte values, as
//! `examples/durable_writes.rs` does), under `SyncPolicy::Never`, with background
//! checkpoints off. With a fourth argument `log`, only the reopen from the whole log is run
//! (`RUNS` times), over `DIR/log` written once and kept: what a profiler should look at; it
//! ends with the process's peak resident memory (the store and what recovery held).
//!
//! Each figure is wall time, with the process's CPU time (user + system, all threads) beside
//! it: on a shared machine the CPU time is the steadier of the two.

use std::path::Path;
use std::time::{Duration, Instant};

use snapkv::workload::{key, value};
use snapkv::{Db, SyncPolicy};

/// This process's CPU time so far (user + system, all threads), from `/proc/self/stat`
/// (zero where there is none).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses and may hold spaces):
    // utime and stime are the 12th and 13th of them, in clock ticks (100 a second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// The process's peak resident memory so far, in KiB (`VmHWM` of `/proc/self/status`; zero
/// where there is none).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Wall and CPU time of `f`.
fn timed(f: impl FnOnce()) -> (Duration, Duration) {
    let (started, cpu) = (Instant::now(), cpu_time());
    f();
    (started.elapsed(), cpu_time().saturating_sub(cpu))
}

fn write_all(dir: &Path, keys: u64) {
    let v = value(1);
    let db = Db::builder()
        .path(dir)
        .sync(SyncPolicy::Never)
        .checkpoint_log_bytes(u64::MAX)
        .build()
        .expect("open");
    for i in 0..keys {
        db.put(key(i), v).expect("put");
    }
    db.close().expect("close");
}

/// Opens `dir`, checks it holds `keys` keys; returns how long the open took (wall, CPU).
fn reopen(dir: &Path, keys: u64) -> (Duration, Duration) {
    let mut db = None;
    let took = timed(|| db = Some(Db::open(dir).expect("reopen")));
    let db = db.expect("opened");
    assert_eq!(db.stats().keys as u64, keys);
    db.close().expect("close");
    took
}

/// Puts `keys` keys into a new in-memory database; returns how long that took (wall, CPU).
fn load(keys: u64) -> (Duration, Duration) {
    let v = value(1);
    let memory = Db::new();
    let took = timed(|| {
        for i in 0..keys {
            memory.put(key(i), v).expect("put");
        }
    });
    drop(memory);
    took
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// `(wall, CPU)` medians.
fn medians(d: &[(Duration, Duration)]) -> (Duration, Duration) {
    (
        median(d.iter().map(|t| t.0).collect()),
        median(d.iter().map(|t| t.1).collect()),
    )
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let base = args
        .next()
        .map_or_else(|| scratch.path().to_path_buf(), Into::into);
    let log_only = args.next().as_deref() == Some("log");

    let from_log_dir = base.join("log");
    if log_only {
        if !from_log_dir.exists() {
            write_all(&from_log_dir, keys);
        }
        for _ in 0..runs {
            let (wall, cpu) = reopen(&from_log_dir, keys);
            println!("reopen from the whole log: {wall:.2?} (CPU {cpu:.2?})");
        }
        // The store and what recovery held at once, at the worst moment.
        println!("peak resident memory: {} MiB", peak_rss_kib() >> 10);
        return;
    }

    let _ = std::fs::remove_dir_all(&from_log_dir);
    write_all(&from_log_dir, keys);
    let from_checkpoint_dir = base.join("checkpoint");
    let _ = std::fs::remove_dir_all(&from_checkpoint_dir);
    write_all(&from_checkpoint_dir, keys);
    let db = Db::open(&from_checkpoint_dir).expect("open");
    db.checkpoint().expect("checkpoint");
    db.close().expect("close");

    let (mut loads, mut logs, mut checkpoints) = (Vec::new(), Vec::new(), Vec::new());
    println!(
        "{keys} keys: load into memory, reopen from the whole log, from a checkpoint \
         (wall time, CPU time in parentheses; ratios to the load's)"
    );
    for _ in 0..runs {
        let l = load(keys);
        let r = reopen(&from_log_dir, keys);
        let c = reopen(&from_checkpoint_dir, keys);
        println!(
            "load {:>9.2?} ({:>6.2?})   log {:>9.2?} ({:>6.2?}) {:.2}x ({:.2}x)   \
             checkpoint {:>9.2?} ({:>6.2?}) {:.2}x ({:.2}x)",
            l.0,
            l.1,
            r.0,
            r.1,
            ratio(r.0, l.0),
            ratio(r.1, l.1),
            c.0,
            c.1,
            ratio(c.0, l.0),
            ratio(c.1, l.1)
        );
        loads.push(l);
        logs.push(r);
        checkpoints.push(c);
    }
    let (l, r, c) = (medians(&loads), medians(&logs), medians(&checkpoints));
    println!(
        "median: load {:.2?} (CPU {:.2?}); from the whole log {:.2?} ({:.2}x; CPU {:.2?}, \
         {:.2}x); from a checkpoint {:.2?} ({:.2}x; CPU {:.2?}, {:.2}x)",
        l.0,
        l.1,
        r.0,
        ratio(r.0, l.0),
        r.1,
        ratio(r.1, l.1),
        c.0,
        ratio(c.0, l.0),
        c.1,
        ratio(c.1, l.1)
    );
}
