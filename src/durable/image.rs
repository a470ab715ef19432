//! A checkpoint written from a snapshot, while writers carry on.
//!
//! The snapshot's registration keeps every version it can see: the collector frees no version
//! a registered snapshot reads, however long it lives, and frees them once it is dropped. So
//! writers never stop for a checkpoint; what it costs them is that the versions they replace
//! meanwhile stay until it is done.
//!
//! **Memory.** The scan lends each pair straight from the store into the pending frame's
//! payload ([`checkpoint::Writer`]), and the frame is written out once it reaches its size:
//! what this holds besides the store is one frame's payload and its encoded copy (each about
//! [`checkpoint::FRAME_BYTES`], plus one entry), the previous key, and where the scan resumes
//! — independent of the number of keys. No copy of the store, nor of its keys, is made
//! (`tests/backup_memory.rs` measures the peak heap of a backup against the store's size).
//!
//! **Pinning.** The scan runs under an epoch pin (renewed every 128 entries), which delays
//! the freeing of old versions while it lasts; no I/O happens under it: the scan stops when
//! the frame is full, and the frame is written after the pin is released.

use std::ops::{Bound, ControlFlow};
use std::path::Path;

use super::checkpoint::{self, Written};
use super::storage::Storage;
use crate::error::Result;
use crate::snapshot::Snapshot;

/// Writes the checkpoint of `snapshot` (every live key at its timestamp, with the version
/// timestamp of each) into `dir`, and installs it: durable under
/// [`checkpoint::file_name`]`(snapshot.ts())` when this returns `Ok`.
pub(crate) fn write_snapshot<S: Storage>(
    storage: &S,
    dir: &Path,
    snapshot: &Snapshot,
) -> Result<Written> {
    write_snapshot_framed(storage, dir, snapshot, checkpoint::FRAME_BYTES)
}

/// [`write_snapshot`] with entry frames cut at `frame_bytes` (small in tests, for many
/// frames and many resumed scans).
pub(crate) fn write_snapshot_framed<S: Storage>(
    storage: &S,
    dir: &Path,
    snapshot: &Snapshot,
    frame_bytes: usize,
) -> Result<Written> {
    let mut out = checkpoint::Writer::create(storage, dir, snapshot.ts(), frame_bytes)?;
    // The last key of the frame written last: the next scan starts after it.
    let mut resume: Option<Vec<u8>> = None;
    loop {
        let start = match &resume {
            Some(key) => Bound::Excluded(&key[..]),
            None => Bound::Unbounded,
        };
        snapshot.scan_versioned((start, Bound::Unbounded), |key, value, version_ts| {
            out.push(key, value, version_ts);
            if out.frame_full() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if !out.frame_full() {
            // The scan ran to the end of the keys.
            break;
        }
        out.write_frame()?;
        let last = resume.get_or_insert_with(Vec::new);
        last.clear();
        last.extend_from_slice(out.last_key().expect("a full frame holds an entry"));
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use super::*;
    use crate::durable::checkpoint::Entry;
    use crate::durable::storage::{Crash, SimStorage};
    use crate::Db;

    fn dir() -> PathBuf {
        PathBuf::from("/db")
    }

    /// Every live pair of `snap` with its version, read key by key through the public reads.
    fn expected(snap: &Snapshot) -> Vec<Entry> {
        snap.iter()
            .map(|(key, value)| {
                let (v, ts) = snap.get_versioned(&key).unwrap().unwrap();
                assert_eq!(v, value);
                Entry { key, value, ts }
            })
            .collect()
    }

    fn read_back(storage: &SimStorage, w: &Written) -> checkpoint::Checkpoint {
        checkpoint::read(&w.path, &storage.read(&w.path).unwrap()).unwrap()
    }

    #[test]
    fn a_snapshot_checkpoint_holds_every_live_key_with_its_version() {
        let db = Db::new();
        for i in 0..500u32 {
            db.put(format!("key{i:04}"), i.to_le_bytes()).unwrap();
        }
        for i in (0..500u32).step_by(3) {
            db.delete(format!("key{i:04}")).unwrap();
        }
        for i in (0..500u32).step_by(7) {
            db.put(format!("key{i:04}"), [9u8; 40]).unwrap();
        }
        let snap = db.snapshot();
        // Later writes are not in it.
        db.put("key0001", "later").unwrap();
        db.put("zzz", "later").unwrap();
        let want = expected(&snap);
        assert!(want.len() > 300 && want.iter().any(|e| e.ts > 500));
        for frame_bytes in [1, 64, checkpoint::FRAME_BYTES] {
            let storage = SimStorage::new();
            let w = write_snapshot_framed(&storage, &dir(), &snap, frame_bytes).unwrap();
            assert_eq!(w.entries, want.len() as u64);
            let cp = read_back(&storage.crash(Crash::SyncedOnly), &w);
            assert_eq!(cp.ts, snap.ts());
            assert_eq!(cp.entries, want, "frames of {frame_bytes} bytes");
        }
    }

    #[test]
    fn an_empty_store_gives_an_empty_checkpoint() {
        let db = Db::new();
        let storage = SimStorage::new();
        let w = write_snapshot(&storage, &dir(), &db.snapshot()).unwrap();
        let cp = read_back(&storage, &w);
        assert_eq!((cp.ts, cp.entries.len()), (db.snapshot().ts(), 0));
    }

    #[test]
    fn writers_carry_on_and_the_checkpoint_is_the_snapshot_s_state() {
        // Writers overwrite and delete the keys the scan is walking over; the versions the
        // snapshot reads stay (collection runs meanwhile) and the image is exactly its view.
        let db = Db::new();
        let keys = 2_000u32;
        for i in 0..keys {
            db.put(format!("key{i:05}"), [0u8; 16]).unwrap();
        }
        let snap = db.snapshot();
        let want = expected(&snap);
        let storage = SimStorage::new();
        let stop = AtomicBool::new(false);
        let started = AtomicU32::new(0);
        let written = std::thread::scope(|s| {
            for t in 0..2u32 {
                let (db, stop, started) = (&db, &stop, &started);
                s.spawn(move || {
                    let mut round = 1u8;
                    while !stop.load(Ordering::Relaxed) {
                        for i in (t..keys).step_by(2) {
                            let key = format!("key{i:05}");
                            if i % 5 == 0 {
                                db.delete(&key).unwrap();
                            } else {
                                db.put(&key, [round; 16]).unwrap();
                            }
                            if i == t && round == 1 {
                                started.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        db.collect_garbage();
                        round = round % 255 + 1;
                    }
                });
            }
            // The scan starts once both writers have written.
            while started.load(Ordering::Relaxed) < 2 {
                std::thread::yield_now();
            }
            // Small frames: the scan stops and resumes often while the writers run.
            let w = write_snapshot_framed(&storage, &dir(), &snap, 256);
            stop.store(true, Ordering::Relaxed);
            w.unwrap()
        });
        let cp = read_back(&storage, &written);
        assert_eq!(cp.entries.len(), keys as usize);
        assert_eq!(cp.entries, want);
        assert!(cp.entries.iter().all(|e| e.value[..] == [0u8; 16]));
        assert!(db.get("key00001").unwrap().is_some_and(|v| v[0] != 0));
    }
}
