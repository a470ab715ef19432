//! What background checkpoints cost a big store: `KEYS` keys of 100-byte values put one per
//! commit under `SyncPolicy::Never` with the default checkpoint threshold, then as many
//! overwrites of random keys. Prints the time, the log's bytes, the bytes the process caused
//! to be written to the storage device (`write_bytes` of `/proc/self/io`: log and
//! checkpoints), their ratio, and the checkpoints taken (files seen).
//!
//! ```text
//! cargo run --release --example checkpoint_amplification -- [KEYS=3000000] [DIR]
//! ```
//!
//! A checkpoint rewrites the whole store; the threshold at which one is due decides how
//! often. Prints figures; asserts nothing.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use snapkv::{Db, SyncPolicy};

/// Bytes this process caused to be written to the storage device so far.
fn disk_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The checkpoint files in `dir` now.
fn checkpoints(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".ckpt"))
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(3_000_000);
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let dir = args
        .next()
        .map_or_else(|| scratch.path().join("db"), Into::into);
    let db = Db::builder()
        .path(&dir)
        .sync(SyncPolicy::Never)
        .build()
        .expect("open");
    let value = [9u8; 100];
    let (disk_before, started) = (disk_bytes(), Instant::now());
    let mut seen = BTreeSet::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..2 * keys {
        let k = if i < keys { i } else { rng.u64(0..keys) };
        db.put(k.to_be_bytes(), value).expect("put");
        if i % 65_536 == 0 {
            seen.extend(checkpoints(&dir));
        }
    }
    let log = db.stats().log.expect("a durable database").bytes_written;
    db.close().expect("close");
    seen.extend(checkpoints(&dir));
    let disk = disk_bytes() - disk_before;
    println!(
        "{keys} keys put, then {keys} overwrites: {:.2?}; log {} MB, written to the device {} MB \
         ({:.2}x the log), {} checkpoints seen",
        started.elapsed(),
        log >> 20,
        disk >> 20,
        disk as f64 / log as f64,
        seen.len()
    );
}
