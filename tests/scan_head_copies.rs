//! Scans read most keys from the scan index's copies of their newest versions (taken when the
//! index's sorted run is rebuilt) instead of from the keys' version chains. These tests pin
//! down that a copy is used only while it is what the snapshot should see: after updates,
//! deletes and re-creations, at snapshots older than the copies, and while writers and
//! rebuilds race the scans.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use snapkv::{Db, Snapshot};

fn key(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

/// Every pair a lending scan of the whole key space yields at `snap`.
fn lent(snap: &Snapshot) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    snap.scan_with(.., |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        ControlFlow::Continue(())
    });
    out
}

/// Every pair the owned iterator yields at `snap` (it reads the chains).
fn owned(snap: &Snapshot) -> Vec<(Vec<u8>, Vec<u8>)> {
    snap.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

#[test]
fn lending_scans_follow_every_change_after_the_copies_were_taken() {
    const KEYS: u32 = 3_000;
    let db = Db::new();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for i in 0..KEYS {
        db.put(key(i), b"v0").unwrap();
        model.insert(key(i), b"v0".to_vec());
    }
    // The first scan builds the run (with copies of every head).
    let before = db.snapshot();
    assert_eq!(lent(&before), model.clone().into_iter().collect::<Vec<_>>());
    let mut snapshots = vec![(before, model.clone())];
    let mut rng = fastrand::Rng::with_seed(11);
    for round in 1..=6u32 {
        for _ in 0..200 {
            let i = rng.u32(0..KEYS + 500);
            match rng.u8(0..10) {
                0..=1 => {
                    db.delete(key(i)).unwrap();
                    model.remove(&key(i));
                }
                _ => {
                    let v = format!("v{round}-{i}").into_bytes();
                    db.put(key(i), &v).unwrap();
                    model.insert(key(i), v);
                }
            }
        }
        if round % 2 == 0 {
            // Removed keys leave the map and index; some come back as new chains.
            db.collect_garbage();
        }
        snapshots.push((db.snapshot(), model.clone()));
        // Every snapshot so far, old ones included (they read below the copies' timestamps).
        for (snap, want) in &snapshots {
            let want: Vec<_> = want.clone().into_iter().collect();
            assert_eq!(lent(snap), want, "lending scan at {:?}", snap.ts());
            assert_eq!(owned(snap), want, "owned scan at {:?}", snap.ts());
        }
    }
}

#[test]
fn lending_scans_agree_with_point_reads_while_writers_and_rebuilds_race() {
    const KEYS: u32 = 2_000;
    let db = Arc::new(Db::new());
    for i in 0..KEYS {
        db.put(key(i), 0u64.to_be_bytes()).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(5);
            let mut n = 0u64;
            // Updates existing keys, and creates new ones past the loaded range so that the
            // scans keep rebuilding the run (fresh copies) under the updates.
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                db.put(key(rng.u32(0..KEYS)), n.to_be_bytes()).unwrap();
                if n % 4 == 0 {
                    db.put(key(KEYS + (n / 4) as u32), n.to_be_bytes()).unwrap();
                }
            }
        })
    };
    // Scan until the race is shown to have happened: the writer changed values between
    // scans and created enough keys to make rebuilds due (more than 1/32 of the run and 256
    // keys), so later scans walked runs rebuilt under them. The deadline only bounds a
    // machine too loaded to get there; it is generous, and failing it fails the test.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut scans, mut changed_between_scans) = (0u32, 0u32);
    let mut first_len = None;
    let mut previous: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let raced = loop {
        let snap = db.snapshot();
        let pairs = lent(&snap);
        for (k, v) in &pairs {
            let got = snap.get(k).unwrap().map(|b| b.to_vec());
            assert_eq!(
                got.as_ref(),
                Some(v),
                "scan and point read disagree on {k:?} at {:?}",
                snap.ts()
            );
        }
        let first_len = *first_len.get_or_insert(pairs.len());
        changed_between_scans += previous
            .iter()
            .zip(&pairs)
            .filter(|((pk, pv), (k, v))| pk == k && pv != v)
            .count()
            .min(1) as u32;
        scans += 1;
        previous = pairs;
        let grown = previous.len() - first_len;
        if scans >= 20 && changed_between_scans >= 10 && grown > 2 * 256 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        raced,
        "the race never happened: {scans} scans, {changed_between_scans} saw values change \
         since the previous one, {} keys created under them",
        previous.len() - first_len.unwrap_or(0)
    );
}
