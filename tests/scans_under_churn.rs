//! Scans while the ordered index changes shape around them.
//!
//! Keys that are created and then removed (written, deleted, collected) make the index insert
//! and remove entries, which splits and merges its leaves. A scan must still return every key
//! that was live at its snapshot, in every direction: forwards, backwards, and from both ends.
//! A B+-tree walked backwards while a neighbouring leaf splits or empties can step over
//! entries (the index this store uses does), so this test races exactly that.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use snapkv::Db;

/// Stable keys are every `STRIDE`-th id; the ids between them churn.
const STRIDE: u64 = 50;
const IDS: u64 = 5_000;

fn key(id: u64) -> Vec<u8> {
    format!("k{id:08}").into_bytes()
}

fn id_of(key: &[u8]) -> u64 {
    std::str::from_utf8(&key[1..])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a test key: {key:?}"))
}

#[derive(Clone, Copy, Debug)]
enum Direction {
    Forward,
    Backward,
    BothEnds,
}

/// The ids of the stable keys a scan of `lo..hi` returned, in ascending order.
fn scan(db: &Db, lo: u64, hi: u64, direction: Direction) -> Vec<u64> {
    let snap = db.snapshot();
    let (a, b) = (key(lo), key(hi));
    let range = (Bound::Included(a.as_slice()), Bound::Excluded(b.as_slice()));
    let mut ids: Vec<u64> = match direction {
        Direction::Forward => snap.range(range).map(|(k, _)| id_of(&k)).collect(),
        Direction::Backward => snap.range(range).rev().map(|(k, _)| id_of(&k)).collect(),
        Direction::BothEnds => {
            let mut it = snap.range(range);
            let (mut front, mut back) = (Vec::new(), Vec::new());
            loop {
                let Some((k, _)) = it.next() else { break };
                front.push(id_of(&k));
                let Some((k, _)) = it.next_back() else { break };
                back.push(id_of(&k));
            }
            front.extend(back.into_iter().rev());
            front
        }
    };
    let in_order = match direction {
        Direction::Backward => ids.windows(2).all(|w| w[0] > w[1]),
        _ => ids.windows(2).all(|w| w[0] < w[1]),
    };
    assert!(
        in_order,
        "{direction:?} scan of {lo}..{hi} out of order: {ids:?}"
    );
    ids.sort_unstable();
    ids.retain(|id| id % STRIDE == 0);
    ids
}

#[test]
fn scans_see_every_stable_key_while_neighbours_come_and_go() {
    let db = Db::new();
    for id in (0..IDS).step_by(STRIDE as usize) {
        db.put(key(id), b"stable").unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicU64::new(0));
    let churners: Vec<_> = (0..2u64)
        .map(|t| {
            let (db, stop, churned) = (db.clone(), stop.clone(), churned.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                while !stop.load(Ordering::Relaxed) {
                    // Fill part of the gap after a stable key (a leaf splits), then empty it
                    // again (the keys leave the index, leaves merge).
                    let base = rng.u64(0..IDS / STRIDE) * STRIDE;
                    let ids: Vec<u64> = (1..rng.u64(2..STRIDE))
                        .map(|j| base + j)
                        .filter(|id| id % 2 == t)
                        .collect();
                    for &id in &ids {
                        db.put(key(id), b"churn").unwrap();
                    }
                    for &id in &ids {
                        db.delete(key(id)).unwrap();
                    }
                    db.collect_garbage();
                    churned.fetch_add(ids.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut rng = fastrand::Rng::with_seed(7);
    let started = Instant::now();
    let mut scans = 0u64;
    let mut missed = Vec::new();
    while started.elapsed() < Duration::from_secs(2) || scans < 2_000 {
        let lo = rng.u64(0..IDS - 200);
        let hi = lo + rng.u64(1..200);
        let direction =
            [Direction::Forward, Direction::Backward, Direction::BothEnds][scans as usize % 3];
        let want: Vec<u64> = (lo..hi).filter(|id| id % STRIDE == 0).collect();
        let got = scan(&db, lo, hi, direction);
        if got != want && missed.len() < 5 {
            missed.push(format!(
                "{direction:?} {lo}..{hi}: got {got:?}, want {want:?}"
            ));
        }
        scans += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().unwrap();
    }
    assert!(missed.is_empty(), "scans missed stable keys: {missed:#?}");
    // Meaningful only if the index really changed under the scans.
    let churned = churned.load(Ordering::Relaxed);
    assert!(
        churned > 10_000,
        "too little churn to be meaningful: {churned} keys"
    );
}
