//! What the owned reads cost next to the lending ones and next to the reference points the
//! owned API is held to, measured in one process over the same 100K keys in random order:
//!
//! - owned `Snapshot::get` against a raw `DashMap::get` (the floor of a lookup in a striped
//!   map with the same hasher; it copies nothing), target: at most 1.5x; and against a
//!   `DashMap::get` that copies the value into `Bytes`, the same work as an owned read;
//! - a read-only transaction of ten owned `Transaction::get`s against surrealmx's read-only
//!   transaction of ten `get`s, target: at least 1.5x faster.
//!
//! The owned and lending forms of a 100-pair scan from random starting keys run beside them
//! (the lending one reads each value: values live in their version nodes, so reading them is
//! most of a scan's cost, which the owned one pays by copying them).
//!
//! Every contender walks the same shuffled keys once per round; the rounds alternate the order
//! in which the contenders run (the host is shared: a slow phase then lands on each of them in
//! turn), and the figures are the medians over the rounds.
//!
//! ```text
//! cargo run --release --example owned_reads            # 15 rounds
//! cargo run --release --example owned_reads -- 31      # 31 rounds
//! ```

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use snapkv::{Bytes, Db};

const KEYS: usize = 100_000;
const VALUE_LEN: usize = 100;
/// Reads per transaction in the transaction contenders.
const TXN_READS: usize = 10;
/// Pairs per scan in the scan contenders (each starts at a random key).
const SCAN_LEN: usize = 100;

/// 16-byte keys whose order is not the insertion order (a bijection of the 48-bit counter).
fn key(i: usize) -> [u8; 16] {
    let scrambled = (i as u64).wrapping_mul(0x9E37_79B9_7F4B) & ((1 << 48) - 1);
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(b"user");
    k[4..].copy_from_slice(format!("{scrambled:012x}").as_bytes());
    k
}

/// One contender: a name and a pass over `keys` (every key read once).
type Pass<'a> = Box<dyn Fn(&[[u8; 16]]) + 'a>;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);

    let db = Db::new();
    let map: DashMap<Vec<u8>, Vec<u8>, foldhash::fast::RandomState> = DashMap::default();
    let surreal = surrealmx::Database::new();
    let value = [7u8; VALUE_LEN];
    for i in 0..KEYS {
        let k = key(i);
        db.put(k, value).unwrap();
        map.insert(k.to_vec(), value.to_vec());
        surreal.set(&k[..], &value[..]).unwrap();
    }
    let mut keys: Vec<[u8; 16]> = (0..KEYS).map(key).collect();
    fastrand::Rng::with_seed(42).shuffle(&mut keys);

    let snap = db.snapshot();
    let contenders: Vec<(&str, Pass<'_>)> = vec![
        (
            "dashmap get",
            Box::new(|keys| {
                for k in keys {
                    black_box(map.get(&k[..]).expect("loaded").len());
                }
            }),
        ),
        (
            "snapshot get (owned)",
            Box::new(|keys| {
                for k in keys {
                    black_box(snap.get(k).unwrap().expect("loaded"));
                }
            }),
        ),
        (
            "snapshot get_with",
            Box::new(|keys| {
                for k in keys {
                    black_box(snap.get_with(k, |v| v.len()).unwrap().expect("loaded"));
                }
            }),
        ),
        (
            "dashmap get + copy",
            Box::new(|keys| {
                for k in keys {
                    black_box(map.get(&k[..]).map(|v| Bytes::copy_from_slice(&v)));
                }
            }),
        ),
        (
            "db get (owned)",
            Box::new(|keys| {
                for k in keys {
                    black_box(db.get(k).unwrap().expect("loaded"));
                }
            }),
        ),
        (
            "txn 10 get (owned)",
            Box::new(|keys| {
                for batch in keys.chunks(TXN_READS) {
                    let txn = db.begin();
                    for k in batch {
                        black_box(txn.get(k).unwrap().expect("loaded"));
                    }
                    black_box(txn.commit().unwrap());
                }
            }),
        ),
        (
            "txn 10 get_with",
            Box::new(|keys| {
                for batch in keys.chunks(TXN_READS) {
                    let txn = db.begin();
                    for k in batch {
                        black_box(txn.get_with(k, |v| v.len()).unwrap().expect("loaded"));
                    }
                    black_box(txn.commit().unwrap());
                }
            }),
        ),
        (
            "range 100 (owned)",
            Box::new(|keys| {
                for batch in keys.chunks(SCAN_LEN) {
                    black_box(snap.range(&batch[0][..]..).take(SCAN_LEN).count());
                }
            }),
        ),
        (
            "scan_with 100 (reads v)",
            Box::new(|keys| {
                for batch in keys.chunks(SCAN_LEN) {
                    black_box(snap.scan_with_limit(&batch[0][..].., SCAN_LEN, |k, v| {
                        // Reads the value, as a caller does (the owned scan copies it).
                        black_box((k, v.iter().fold(0u8, |a, &b| a ^ b)));
                        ControlFlow::Continue(())
                    }));
                }
            }),
        ),
        (
            "surrealmx txn 10 get",
            Box::new(|keys| {
                for batch in keys.chunks(TXN_READS) {
                    let tx = surreal.transaction(false);
                    for k in batch {
                        black_box(tx.get(&k[..]).unwrap().expect("loaded"));
                    }
                    drop(tx);
                }
            }),
        ),
    ];

    // Warm-up: one untimed pass each (faults the pages in, fills the caches' steady state).
    for (_, pass) in &contenders {
        pass(&keys);
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); contenders.len()];
    for round in 0..rounds {
        // Rotate the order every round.
        for j in 0..contenders.len() {
            let c = (j + round) % contenders.len();
            let start = Instant::now();
            (contenders[c].1)(&keys);
            times[c].push(start.elapsed());
        }
    }
    let median = |t: &mut Vec<Duration>| {
        t.sort();
        t[t.len() / 2]
    };
    let medians: Vec<Duration> = times.iter_mut().map(median).collect();
    println!("{KEYS} keys in random order, {rounds} rounds, median per pass:");
    for ((name, _), m) in contenders.iter().zip(&medians) {
        let per_read = m.as_nanos() as f64 / KEYS as f64;
        println!("  {name:<24} {m:>10.2?}  {per_read:6.1} ns/read");
    }
    let of = |name: &str| {
        let i = contenders.iter().position(|(n, _)| *n == name).unwrap();
        medians[i].as_secs_f64()
    };
    let get_vs_dashmap = of("snapshot get (owned)") / of("dashmap get");
    let get_vs_dashmap_copy = of("snapshot get (owned)") / of("dashmap get + copy");
    let txn_speedup = of("surrealmx txn 10 get") / of("txn 10 get (owned)");
    println!(
        "owned Snapshot::get / DashMap::get: {get_vs_dashmap:.2}x (target <= 1.5x)\n\
         owned Snapshot::get / DashMap::get + copy of the value: {get_vs_dashmap_copy:.2}x\n\
         surrealmx / snapkv, ten-get read-only txn (owned): {txn_speedup:.2}x (target >= 1.5x)\n\
         owned / lending: snapshot get {:.2}x, txn {:.2}x",
        of("snapshot get (owned)") / of("snapshot get_with"),
        of("txn 10 get (owned)") / of("txn 10 get_with"),
    );
    println!(
        "owned / lending: 100-pair scan {:.2}x",
        of("range 100 (owned)") / of("scan_with 100 (reads v)")
    );
}
