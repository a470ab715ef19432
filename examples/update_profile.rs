//! Single-threaded inserts for instruction profiles: `db.update(|t| t.put(k, v))`, `db.put`
//! and a `Mutex<BTreeMap>` insert, each its own never-inlined function, to random keys of a
//! 100K-key set (prefilled), so that `callgrind_annotate --inclusive=yes` sets the three side
//! by side.
//!
//! ```text
//! cargo build --release --example update_profile
//! valgrind --tool=callgrind --callgrind-out-file=target/update.cg \
//!     target/release/examples/update_profile 200000
//! callgrind_annotate --inclusive=yes target/update.cg | grep -E 'update_profile::|snapkv::'
//! ```
//!
//! A second argument `old-snapshot` keeps a snapshot taken after the prefill open throughout,
//! so that every chain keeps the version it reads (the writers' cost of an idle old snapshot).

use std::collections::BTreeMap;
use std::sync::Mutex;

use snapkv::{Db, Error};

const KEYS: u64 = 100_000;
const VALUE: [u8; 100] = [1; 100];

fn key(i: u64) -> [u8; 16] {
    let mut k = *b"user000000000000";
    k[4..].copy_from_slice(format!("{i:012}").as_bytes());
    k
}

#[inline(never)]
fn updates(db: &Db, keys: &[[u8; 16]]) -> Result<(), Error> {
    for k in keys {
        db.update(|txn| txn.put(k, VALUE))?;
    }
    Ok(())
}

#[inline(never)]
fn puts(db: &Db, keys: &[[u8; 16]]) -> Result<(), Error> {
    for k in keys {
        db.put(k, VALUE)?;
    }
    Ok(())
}

#[inline(never)]
fn mutex_inserts(tree: &Mutex<BTreeMap<Vec<u8>, Vec<u8>>>, keys: &[[u8; 16]]) {
    for k in keys {
        let mut map = tree.lock().expect("single-threaded");
        map.insert(k.to_vec(), VALUE.to_vec());
    }
}

fn main() -> Result<(), Error> {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let db = Db::new();
    let tree = Mutex::new(BTreeMap::new());
    for i in 0..KEYS {
        db.put(key(i), [0u8; 100])?;
        tree.lock()
            .expect("single-threaded")
            .insert(key(i).to_vec(), vec![0u8; 100]);
    }
    let old_snapshot = std::env::args().nth(2).as_deref() == Some("old-snapshot");
    let _old = old_snapshot.then(|| db.snapshot());
    let mut rng = fastrand::Rng::with_seed(1);
    let keys: Vec<[u8; 16]> = (0..n).map(|_| key(rng.u64(0..KEYS))).collect();
    let time = |name: &str, run: &mut dyn FnMut() -> Result<(), Error>| -> Result<(), Error> {
        let started = std::time::Instant::now();
        run()?;
        let rate = n as f64 / started.elapsed().as_secs_f64();
        println!("{name:<16} {rate:>10.0} ops/s");
        Ok(())
    };
    time("update(put)", &mut || updates(&db, &keys))?;
    time("put", &mut || puts(&db, &keys))?;
    time("Mutex<BTreeMap>", &mut || {
        mutex_inserts(&tree, &keys);
        Ok(())
    })?;
    Ok(())
}
