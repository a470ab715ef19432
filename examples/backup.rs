//! The time and heap a backup of a large store takes, quiet and while writers run.
//!
//! A backup streams a snapshot's keys into a checkpoint file: its heap does not grow with the
//! store (counted by a peak-recording global allocator), and writers keep committing. Prints
//! figures; the memory bound is asserted by `tests/backup_memory.rs`.
//!
//! ```text
//! cargo run --release --example backup -- [keys=1000000] [writers=1]
//! ```

#[path = "../tests/common/peak_alloc.rs"]
mod peak_alloc;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use peak_alloc::PeakAlloc;
use snapkv::Db;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc::new();

fn key(i: u64) -> [u8; 16] {
    let mut k = *b"user000000000000";
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("keys"));
    let writers: usize = args.next().map_or(1, |a| a.parse().expect("writers"));

    let db = Db::new();
    let before = HEAP.live();
    let load = Instant::now();
    for i in 0..keys {
        db.put(key(i), [i as u8; 100]).unwrap();
    }
    println!(
        "loaded {keys} keys (16-byte keys, 100-byte values) in {:.2} s, store {:.1} MiB",
        load.elapsed().as_secs_f64(),
        mib(HEAP.live() - before)
    );
    // The first scan after a bulk load sorts the new keys into the index's run (the index's
    // own memory and time, paid once by whichever scan comes first).
    let t = Instant::now();
    let seen = db
        .snapshot()
        .scan_with(.., |_, _| std::ops::ControlFlow::Continue(()));
    println!(
        "first scan ({seen} keys, sorts the index): {:.3} s, store now {:.1} MiB",
        t.elapsed().as_secs_f64(),
        mib(HEAP.live() - before)
    );
    let tmp = std::env::temp_dir().join(format!("snapkv-backup-example-{}", std::process::id()));
    std::fs::create_dir(&tmp).unwrap();

    // Quiet: the backup alone.
    HEAP.reset_peak();
    let start = HEAP.live();
    let t = Instant::now();
    let report = db.backup(tmp.join("quiet")).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "quiet:        {} keys, {:.1} MiB file in {secs:.3} s ({:.2} M keys/s, {:.0} MiB/s), peak heap +{:.1} KiB",
        report.keys,
        mib(report.bytes as usize),
        report.keys as f64 / secs / 1e6,
        mib(report.bytes as usize) / secs,
        (HEAP.peak() - start) as f64 / 1024.0
    );

    // With writers overwriting random keys throughout.
    let stop = AtomicBool::new(false);
    let commits = AtomicU64::new(0);
    std::thread::scope(|s| {
        for w in 0..writers {
            let (db, stop, commits) = (&db, &stop, &commits);
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(w as u64);
                while !stop.load(Ordering::Relaxed) {
                    db.put(key(rng.u64(0..keys)), [7u8; 100]).unwrap();
                    commits.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // The writers' rate before the backup, over as long as the quiet backup took.
        let c0 = commits.load(Ordering::Relaxed);
        let t0 = Instant::now();
        std::thread::sleep(std::time::Duration::from_secs_f64(secs.max(0.2)));
        let alone = (commits.load(Ordering::Relaxed) - c0) as f64 / t0.elapsed().as_secs_f64();

        HEAP.reset_peak();
        let start = HEAP.live();
        let c1 = commits.load(Ordering::Relaxed);
        let t = Instant::now();
        let report = db.backup(tmp.join("busy")).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let during = (commits.load(Ordering::Relaxed) - c1) as f64 / secs;
        stop.store(true, Ordering::Relaxed);
        println!(
            "{writers} writer(s): {} keys in {secs:.3} s ({:.2} M keys/s), peak heap +{:.1} MiB \
             (versions the writers replaced, kept for the snapshot)",
            report.keys,
            report.keys as f64 / secs / 1e6,
            mib(HEAP.peak() - start)
        );
        println!(
            "writers: {:.0} commits/s before the backup, {:.0} commits/s during it",
            alone, during
        );
    });
    std::fs::remove_dir_all(&tmp).unwrap();
}
