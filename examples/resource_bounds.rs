//! The resource-bound scenarios of docs/design.md ("Resource bounds"), run through the public
//! API as a user would, each printing its figures: what is left, how much heap it holds, and
//! how fast it went. Heap bytes come from an instrumented global allocator.
//!
//! ```text
//! cargo run --release --example resource_bounds -- [scenario] [scale=1]
//! ```
//!
//! Scenarios (all by default): `queue` (insert and delete fresh keys with and without an old
//! snapshot open), `two-dbs` (a queue database and a log database written in lockstep),
//! `snapshot-peak` (snapshot and update costs before and after 100,000 live snapshots),
//! `old-snapshot` (two writers with and without an idle old snapshot), `peak-keys` (heap after
//! 500,000 keys were added and deleted).

use std::alloc::System;
use std::hint::black_box;
use std::time::Instant;

use snapkv::Db;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live_bytes() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

fn settle() {
    for _ in 0..256 {
        crossbeam_epoch::pin().flush();
    }
}

fn mib(b: i64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn key(i: u64) -> [u8; 16] {
    let mut k = *b"user000000000000";
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// Inserts a fresh key and deletes it `pairs` times; returns commits per second.
fn queue(db: &Db, pairs: u64) -> f64 {
    let start = Instant::now();
    for i in 0..pairs {
        db.put(key(i), [7u8; 100]).unwrap();
        db.delete(key(i)).unwrap();
    }
    (2 * pairs) as f64 / start.elapsed().as_secs_f64()
}

fn scenario_queue(scale: u64) {
    let pairs = 300_000 * scale;
    println!("queue: {pairs} insert+delete pairs, one thread");
    for hold in [false, true] {
        settle();
        let before = live_bytes();
        let db = Db::new();
        db.put(b"config", b"v1").unwrap();
        let old = hold.then(|| db.snapshot());
        let rate = queue(&db, pairs);
        settle();
        let s = db.stats();
        println!(
            "  {:<22} {:>9.0} commits/s {:>8} keys {:>8} versions {:>8.2} MiB",
            if hold {
                "old snapshot open"
            } else {
                "no snapshot"
            },
            rate,
            s.keys,
            s.versions,
            mib(live_bytes() - before)
        );
        drop(old);
    }
}

fn scenario_two_dbs(scale: u64) {
    let rounds = 300_000 * scale;
    println!("two-dbs: {rounds} rounds of jobs.put, log.put, jobs.delete, log.put on one thread");
    settle();
    let before = live_bytes();
    let jobs = Db::new();
    let log = Db::new();
    let start = Instant::now();
    for i in 0..rounds {
        let k = key(i);
        jobs.put(k, [7u8; 100]).unwrap();
        log.put(key(2 * i), b"entry").unwrap();
        jobs.delete(k).unwrap();
        log.put(key(2 * i + 1), b"entry").unwrap();
    }
    let rate = (4 * rounds) as f64 / start.elapsed().as_secs_f64();
    drop(log);
    settle();
    let s = jobs.stats();
    println!(
        "  jobs: {} keys {} versions watermark {} ({:.2} MiB with the log dropped), {rate:.0} commits/s",
        s.keys,
        s.versions,
        s.watermark,
        mib(live_bytes() - before)
    );
}

/// Mean nanoseconds per call of `f` over `n` calls.
fn ns_per(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn scenario_snapshot_peak(_scale: u64) {
    const PEAK: usize = 100_000;
    println!(
        "snapshot-peak: snapshot+drop and a one-key update before and after {PEAK} live snapshots"
    );
    let db = Db::new();
    db.put(b"counter", 0u64.to_be_bytes()).unwrap();
    // Few calls: before the registry kept 64 slots, each call after the peak took ~0.1 ms.
    let measure = |label: &str| {
        let snap = ns_per(20_000, |_| drop(black_box(db.snapshot())));
        let update = ns_per(20_000, |i| {
            db.update(|t| t.put(b"counter", i.to_be_bytes())).unwrap();
        });
        println!("  {label:<28} snapshot+drop {snap:>8.1} ns   update {update:>8.1} ns");
    };
    measure("before the peak");
    settle();
    let base = live_bytes();
    let start = Instant::now();
    let mut held = Vec::with_capacity(PEAK);
    held.extend((0..PEAK - 1).map(|_| db.snapshot()));
    let t = Instant::now();
    held.push(db.snapshot());
    let last = t.elapsed();
    println!(
        "  taking {PEAK} snapshots: {:.1} ms in all, the last one {:.1} us; {:.2} MiB held",
        start.elapsed().as_secs_f64() * 1e3,
        last.as_secs_f64() * 1e6,
        mib(live_bytes() - base)
    );
    drop(held);
    settle();
    println!(
        "  after dropping them: {:.3} MiB still held by the database",
        mib(live_bytes() - base)
    );
    measure("after the peak");
}

fn scenario_old_snapshot(scale: u64) {
    // The key count sets the working set (the snapshot pins one extra version per key):
    // `SNAPKV_OLD_SNAPSHOT_KEYS=10000` measures the cost with every chain in the cache.
    let keys: u64 = std::env::var("SNAPKV_OLD_SNAPSHOT_KEYS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(100_000);
    let per_thread = 2_000_000 * scale;
    println!(
        "old-snapshot: 2 threads x {per_thread} puts to random keys of {keys}, alternating runs"
    );
    let db = Db::new();
    for i in 0..keys {
        db.put(key(i), [7u8; 100]).unwrap();
    }
    let run = |db: &Db, cpu: &mut Vec<f64>| {
        let (start, cpu_start) = (Instant::now(), cpu_seconds());
        std::thread::scope(|s| {
            for t in 0..2u64 {
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t);
                    for _ in 0..per_thread {
                        db.put(key(rng.u64(0..keys)), [1u8; 100]).unwrap();
                    }
                });
            }
        });
        let commits = (2 * per_thread) as f64;
        if let (Some(a), Some(b)) = (cpu_start, cpu_seconds()) {
            cpu.push(commits / (b - a));
        }
        commits / start.elapsed().as_secs_f64()
    };
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let (mut cpu_without, mut cpu_with) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        without.push(run(&db, &mut cpu_without));
        let old = db.snapshot();
        with.push(run(&db, &mut cpu_with));
        drop(old);
        db.collect_garbage();
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "  best of 3: {:.0} commits/s without, {:.0} with an idle old snapshot: {:.3}x",
        best(&without),
        best(&with),
        best(&with) / best(&without)
    );
    // On a host shared with other work the wall-clock rate follows the neighbours' load; the
    // rate per CPU second of the process follows it less (it still counts spinning waits).
    if cpu_with.len() == 3 && cpu_without.len() == 3 {
        println!(
            "  per CPU second, best of 3: {:.0} without, {:.0} with: {:.3}x",
            best(&cpu_without),
            best(&cpu_with),
            best(&cpu_with) / best(&cpu_without)
        );
    }
}

/// User plus system CPU time of the whole process so far, in seconds (Linux: from
/// `/proc/self/stat`, in clock ticks of 10 ms); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is the 3rd field, utime the 14th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn scenario_peak_keys(scale: u64) {
    let keys = 500_000 * scale;
    println!("peak-keys: {keys} keys added, then all deleted");
    settle();
    let before = live_bytes();
    let db = Db::new();
    let empty = live_bytes() - before;
    for i in 0..keys {
        db.put(key(i), [7u8; 100]).unwrap();
    }
    settle();
    let peak = live_bytes() - before;
    for i in 0..keys {
        db.delete(key(i)).unwrap();
    }
    settle();
    let deleted = live_bytes() - before;
    db.collect_garbage();
    settle();
    let collected = live_bytes() - before;
    println!(
        "  empty {:.3} MiB, peak {:.1} MiB, after the deletes {:.2} MiB, after collect_garbage {:.3} MiB ({} keys)",
        mib(empty),
        mib(peak),
        mib(deleted),
        mib(collected),
        db.stats().keys
    );
}

/// A scenario's name on the command line, and the function that runs it at a scale.
type Scenario = (&'static str, fn(u64));

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "all".into());
    let scale = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1u64)
        .max(1);
    let scenarios: [Scenario; 5] = [
        ("queue", scenario_queue),
        ("two-dbs", scenario_two_dbs),
        ("snapshot-peak", scenario_snapshot_peak),
        ("old-snapshot", scenario_old_snapshot),
        ("peak-keys", scenario_peak_keys),
    ];
    let mut ran = false;
    for (name, run) in scenarios {
        if which == "all" || which == name {
            run(scale);
            ran = true;
        }
    }
    if !ran {
        eprintln!("unknown scenario {which}");
        std::process::exit(2);
    }
}
