use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64 as StdU64, Ordering as StdOrdering};

use bytes::Bytes;
use parking_lot::Mutex as PlMutex;
use proptest::prelude::*;

use super::*;
use crate::durable::log::{Log, LogOptions};
use crate::durable::policy::SyncPolicy;
use crate::durable::segment::{SegmentWriter, HEADER_LEN};
use crate::durable::storage::{Crash, FileStorage, SimStorage};

fn dir() -> PathBuf {
    PathBuf::from("/db")
}

fn seg(number: u64) -> PathBuf {
    dir().join(segment::file_name(number))
}

/// One commit of a test history: its timestamp and writes (`None`: a delete).
#[derive(Clone, Debug)]
struct Commit {
    ts: u64,
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// `n` commits at timestamps 1..=n, each writing 1 to 3 distinct keys out of 12 (a quarter
/// of the writes deletes), values of 0 to 19 bytes.
fn history(n: u64, seed: u64) -> Vec<Commit> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (1..=n)
        .map(|ts| {
            let mut keys: Vec<u8> = (0..12).collect();
            rng.shuffle(&mut keys);
            let mut chosen = keys[..rng.usize(1..=3)].to_vec();
            chosen.sort_unstable();
            let writes = chosen
                .into_iter()
                .map(|k| {
                    let key = format!("key{k:02}").into_bytes();
                    let value = (rng.u8(..4) != 0).then(|| {
                        let mut v = vec![0; rng.usize(..20)];
                        rng.fill(&mut v);
                        v
                    });
                    (key, value)
                })
                .collect();
            Commit { ts, writes }
        })
        .collect()
}

type Model = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

/// The state after `commits`, applied in timestamp order.
fn model(commits: &[Commit]) -> Model {
    let mut sorted: Vec<&Commit> = commits.iter().collect();
    sorted.sort_by_key(|c| c.ts);
    let mut state = Model::new();
    for c in sorted {
        for (k, v) in &c.writes {
            match v {
                Some(v) => state.insert(k.clone(), (v.clone(), c.ts)),
                None => state.remove(k),
            };
        }
    }
    state
}

fn entries(model: &Model) -> Vec<(Bytes, Bytes, u64)> {
    model
        .iter()
        .map(|(k, (v, ts))| (Bytes::from(k.clone()), Bytes::from(v.clone()), *ts))
        .collect()
}

/// Writes `commits` in order through a real [`Log`] (`Always`, waiting for each), with
/// segments of about `segment_size` bytes; returns how many segments it wrote.
fn write_log(storage: &SimStorage, commits: &[Commit], segment_size: u64) -> u64 {
    let log = Log::create(
        storage.clone(),
        &dir(),
        1,
        1,
        LogOptions {
            policy: SyncPolicy::Always,
            segment_size,
        },
    )
    .unwrap();
    for c in commits {
        let lsn = log
            .append(c.ts, c.writes.iter().map(|(k, v)| (&k[..], v.as_deref())))
            .unwrap();
        log.wait_committed(lsn).unwrap();
    }
    segment_numbers(storage).len() as u64
}

fn segment_numbers(storage: &impl Storage) -> Vec<u64> {
    storage
        .list(&dir())
        .unwrap()
        .iter()
        .filter_map(|n| segment::parse_file_name(n))
        .collect()
}

/// The start offsets and commit timestamps of a segment's frames.
fn frames_of(storage: &impl Storage, number: u64) -> Vec<(u64, u64)> {
    let bytes = storage.read(&seg(number)).unwrap();
    let read = segment::parse(&seg(number), &bytes, 0).unwrap();
    read.frames
        .iter()
        .map(|f| (f.offset, record::decode(f.frame.payload).unwrap().ts))
        .collect()
}

/// Replaces the file at `path` with `bytes`, durably.
fn put_file(storage: &SimStorage, path: &Path, bytes: &[u8]) {
    if storage.len(path).is_ok() {
        storage.remove(path).unwrap();
    }
    let mut f = storage.create(path).unwrap();
    f.append(bytes).unwrap();
    f.sync().unwrap();
    storage.sync_dir(path.parent().unwrap()).unwrap();
}

/// A copy of `storage`'s durable state with byte `at` of `path` xor-ed with `x`.
fn with_flipped(storage: &SimStorage, path: &Path, at: usize, x: u8) -> SimStorage {
    let copy = storage.crash(Crash::SyncedOnly);
    let mut bytes = copy.read(path).unwrap();
    bytes[at] ^= x;
    put_file(&copy, path, &bytes);
    copy
}

fn recover_plain(storage: &impl Storage) -> Result<Recovered> {
    recover(storage, &dir(), RecoveryOptions::default())
}

fn recover_repair(storage: &impl Storage) -> Result<Recovered> {
    recover(
        storage,
        &dir(),
        RecoveryOptions {
            repair: true,
            read_only: false,
        },
    )
}

fn entry(key: &str, value: &str, ts: u64) -> (Bytes, Bytes, u64) {
    (
        Bytes::copy_from_slice(key.as_bytes()),
        Bytes::copy_from_slice(value.as_bytes()),
        ts,
    )
}

#[track_caller]
fn corruption(r: Result<Recovered>) -> (PathBuf, u64, String) {
    match r {
        Err(Error::Corruption { file, offset, what }) => (file, offset, what),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn an_empty_directory_recovers_to_nothing() {
    let r = recover_plain(&SimStorage::new()).unwrap();
    assert_eq!(
        r,
        Recovered {
            checkpoint_ts: None,
            entries: Vec::new(),
            max_ts: 0,
            next_segment: 1,
            records_replayed: 0,
            torn_tail: None,
            repaired: None,
            segments: Vec::new(),
        }
    );
}

#[test]
fn the_log_replays_to_the_models_state() {
    let storage = SimStorage::new();
    let commits = history(60, 1);
    let segments = write_log(&storage, &commits, 256);
    assert!(segments >= 3, "{segments} segments");
    for s in [storage.clone(), storage.crash(Crash::SyncedOnly)] {
        let r = recover_plain(&s).unwrap();
        assert_eq!(r.entries, entries(&model(&commits)));
        assert_eq!(r.max_ts, 60);
        assert_eq!(r.records_replayed, 60);
        assert_eq!(r.checkpoint_ts, None);
        assert_eq!(r.next_segment, segments + 1);
        assert_eq!((r.torn_tail, r.repaired), (None, None));
    }
}

#[test]
fn a_checkpoint_and_the_log_after_it() {
    let storage = SimStorage::new();
    let commits = history(80, 2);
    let segments = write_log(&storage, &commits, 256);
    let image = model(&commits[..40]);
    checkpoint::write(
        &storage,
        &dir(),
        40,
        image.iter().map(|(k, (v, ts))| (k, v, *ts)),
        64,
    )
    .unwrap();
    // An older checkpoint, damaged: never read, the newest one decides.
    put_file(&storage, &dir().join(checkpoint::file_name(20)), b"junk");
    // Delete the segments the checkpoint covers whole, oldest first, but keep the one that
    // holds ts 30..=40: its records at or below the checkpoint must be skipped.
    let numbers = segment_numbers(&storage);
    let mut removed = 0;
    for &n in &numbers {
        let max = frames_of(&storage, n)
            .iter()
            .map(|f| f.1)
            .max()
            .unwrap_or(0);
        if max >= 30 {
            break;
        }
        storage.remove(&seg(n)).unwrap();
        removed += 1;
    }
    storage.sync_dir(&dir()).unwrap();
    assert!(removed >= 1);
    let first_kept = numbers[removed];
    assert!(frames_of(&storage, first_kept).iter().any(|f| f.1 <= 40));

    let r = recover_plain(&storage.crash(Crash::SyncedOnly)).unwrap();
    assert_eq!(r.checkpoint_ts, Some(40));
    let mut expected = entries(&model(&commits));
    // Today's checkpoints carry no per-entry timestamp: their entries get the checkpoint's.
    for e in &mut expected {
        if e.2 <= 40 {
            e.2 = 40;
        }
    }
    assert_eq!(r.entries, expected);
    assert_eq!(r.max_ts, 80);
    assert_eq!(r.records_replayed, 40);
    assert_eq!(r.next_segment, segments + 1);
}

#[test]
fn log_order_is_not_timestamp_order_across_keys() {
    // Concurrent committers reach the log in either order: ts 7 before ts 5, on other keys.
    let storage = SimStorage::new();
    type Write<'a> = (u64, &'a [u8], Option<&'a [u8]>);
    let commits: [Write<'_>; 6] = [
        (7, b"a", Some(b"a7")),
        (5, b"b", Some(b"b5")),
        (9, b"a", Some(b"a9")),
        (6, b"b", None),
        (8, b"c", Some(b"c8")),
        (3, b"d", Some(b"d3")),
    ];
    let log = Log::create(storage.clone(), &dir(), 1, 1, LogOptions::default()).unwrap();
    for (ts, k, v) in commits {
        let lsn = log.append(ts, [(k, v)]).unwrap();
        log.wait_committed(lsn).unwrap();
    }
    let r = recover_plain(&storage).unwrap();
    assert_eq!(
        r.entries,
        [
            entry("a", "a9", 9),
            entry("c", "c8", 8),
            entry("d", "d3", 3)
        ]
    );
    assert_eq!((r.max_ts, r.records_replayed), (9, 6));

    // Over a checkpoint at 6: every record at or below it is skipped wherever it sits in the
    // log (ts 3 comes after ts 8), yet still counts for `max_ts`.
    checkpoint::write(&storage, &dir(), 6, [(&b"b"[..], &b"cp"[..], 6)], 64).unwrap();
    let r = recover_plain(&storage).unwrap();
    assert_eq!(
        r.entries,
        [
            entry("a", "a9", 9),
            entry("b", "cp", 6),
            entry("c", "c8", 8)
        ]
    );
    assert_eq!((r.max_ts, r.records_replayed), (9, 3));
}

#[test]
fn every_cut_of_the_last_segment_recovers_a_prefix() {
    let storage = SimStorage::new();
    let commits = history(30, 3);
    let segments = write_log(&storage, &commits, 512);
    assert!(segments >= 2);
    let last = seg(segments);
    let frames = frames_of(&storage, segments);
    assert!(frames.len() >= 4);
    let len = storage.len(&last).unwrap();
    // Every record in earlier segments is kept whatever the cut.
    let before = commits.len() - frames.len();
    for cut in frames[frames.len() - 4].0..=len {
        let copy = storage.crash(Crash::SyncedOnly);
        copy.truncate(&last, cut).unwrap();
        let r = recover_plain(&copy).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let whole = frames.iter().filter(|f| f.0 < cut).count();
        // A frame is kept only if it ends by the cut: the next frame's start, or the end.
        let kept = (0..whole)
            .filter(|&i| frames.get(i + 1).map_or(len, |f| f.0) <= cut)
            .count();
        let k = before + kept;
        assert_eq!(r.entries, entries(&model(&commits[..k])), "cut at {cut}");
        assert_eq!(r.max_ts, k as u64);
        let boundary = frames.get(kept).map_or(len, |f| f.0);
        if boundary == cut {
            assert_eq!(r.torn_tail, None, "cut at {cut}");
        } else {
            assert_eq!(
                r.torn_tail,
                Some(TornTail {
                    file: last.clone(),
                    offset: boundary,
                    dropped: cut - boundary,
                }),
                "cut at {cut}"
            );
        }
        // The tail is cut off durably, and the next recovery finds nothing to cut.
        let after = copy.crash(Crash::SyncedOnly);
        assert_eq!(after.len(&last).unwrap(), boundary);
        let again = recover_plain(&after).unwrap();
        assert_eq!((again.entries, again.torn_tail), (r.entries, None));
        assert_eq!(r.next_segment, segments + 1);
    }
}

#[test]
fn a_segment_holding_part_of_its_header_is_removed() {
    let storage = SimStorage::new();
    let commits = history(20, 4);
    let segments = write_log(&storage, &commits, 256);
    // The crash came while the next segment was being created.
    let header = storage.read_range(&seg(1), 0, HEADER_LEN).unwrap();
    let torn = seg(segments + 1);
    put_file(&storage, &torn, &header[..20]);
    let r = recover_plain(&storage).unwrap();
    assert_eq!(
        r.torn_tail,
        Some(TornTail {
            file: torn.clone(),
            offset: 0,
            dropped: 20,
        })
    );
    assert_eq!(r.entries, entries(&model(&commits)));
    // The number is free again: the log stays contiguous.
    assert_eq!(r.next_segment, segments + 1);
    let after = storage.crash(Crash::SyncedOnly);
    assert!(!segment_numbers(&after).contains(&(segments + 1)));
    assert_eq!(recover_plain(&after).unwrap().entries, r.entries);
}

#[test]
fn damage_in_a_segment_that_another_follows_is_corruption_and_repair_cuts_there() {
    let storage = SimStorage::new();
    let commits = history(30, 5);
    let segments = write_log(&storage, &commits, 512);
    assert!(segments >= 3);
    let damaged = seg(2);
    let frames = frames_of(&storage, 2);
    let len = storage.len(&damaged).unwrap() as usize;
    let before = frames_of(&storage, 1).len();
    let later: Vec<(PathBuf, u64)> = (3..=segments)
        .map(|n| (seg(n), storage.len(&seg(n)).unwrap()))
        .collect();
    for at in 0..len {
        for x in [0x01, 0x80] {
            let copy = with_flipped(&storage, &damaged, at, x);
            // The damage is reported at the header or the frame that holds the byte.
            let expected = if at < HEADER_LEN {
                0
            } else {
                frames.iter().rev().find(|f| f.0 as usize <= at).unwrap().0
            };
            let (file, offset, _) = corruption(recover_plain(&copy));
            assert_eq!((file, offset), (damaged.clone(), expected), "byte {at}");
            // Nothing was changed by the refusal.
            assert_eq!(copy.len(&damaged).unwrap() as usize, len);

            let r = recover_repair(&copy).unwrap();
            let kept = frames.iter().filter(|f| f.0 < expected).count();
            let k = before + kept;
            assert_eq!(r.entries, entries(&model(&commits[..k])), "byte {at}");
            let repaired = r.repaired.expect("a repair");
            let mut removed = later.clone();
            if expected == 0 {
                removed.insert(0, (damaged.clone(), len as u64));
            }
            assert_eq!(
                (
                    repaired.file,
                    repaired.offset,
                    repaired.dropped,
                    repaired.removed
                ),
                (damaged.clone(), expected, len as u64 - expected, removed),
                "byte {at}"
            );
            let left = if expected == 0 { 1 } else { 2 };
            assert_eq!(r.next_segment, left + 1);
            let after = copy.crash(Crash::SyncedOnly);
            assert_eq!(segment_numbers(&after), (1..=left).collect::<Vec<_>>());
            let again = recover_plain(&after).unwrap();
            assert_eq!((again.entries, again.repaired), (r.entries, None));
        }
    }
}

#[test]
fn damage_below_a_later_synced_mark_in_the_last_segment_is_corruption() {
    let storage = SimStorage::new();
    let commits = history(10, 6);
    assert_eq!(write_log(&storage, &commits, 1 << 20), 1);
    let frames = frames_of(&storage, 1);
    let len = storage.len(&seg(1)).unwrap();
    // Frame 3 was synced before frame 4 was written (`Always`): frame 4 says so.
    let copy = with_flipped(&storage, &seg(1), frames[3].0 as usize + 30, 0x04);
    let (file, offset, what) = corruption(recover_plain(&copy));
    assert_eq!((file, offset), (seg(1), frames[3].0));
    assert!(what.contains("synced mark"), "{what}");
    let r = recover_repair(&copy).unwrap();
    assert_eq!(r.entries, entries(&model(&commits[..3])));
    let repaired = r.repaired.unwrap();
    assert_eq!(
        (repaired.offset, repaired.dropped, repaired.removed),
        (frames[3].0, len - frames[3].0, Vec::new())
    );
    assert_eq!(copy.len(&seg(1)).unwrap(), frames[3].0);

    // Damage in the last frame has no later witness: it reads as a torn tail (the limit of
    // what the log can tell, `docs/durability.md` §2).
    let copy = with_flipped(&storage, &seg(1), frames[9].0 as usize + 30, 0x04);
    let r = recover_plain(&copy).unwrap();
    assert_eq!(r.entries, entries(&model(&commits[..9])));
    assert_eq!(r.torn_tail.unwrap().offset, frames[9].0);
}

#[test]
fn a_damaged_checkpoint_is_corruption_even_under_repair() {
    let storage = SimStorage::new();
    let commits = history(20, 7);
    write_log(&storage, &commits, 256);
    let image = model(&commits[..10]);
    let w = checkpoint::write(
        &storage,
        &dir(),
        10,
        image.iter().map(|(k, (v, ts))| (k, v, *ts)),
        40,
    )
    .unwrap();
    // An older, valid checkpoint is no fallback: the segments it needs may be gone.
    checkpoint::write(&storage, &dir(), 5, [(&b"k"[..], &b"v"[..], 5)], 40).unwrap();
    let len = storage.len(&w.path).unwrap() as usize;
    for at in 0..len {
        let copy = with_flipped(&storage, &w.path, at, 0x10);
        let (file, offset, _) = corruption(recover_plain(&copy));
        assert_eq!(file, w.path);
        assert!(offset <= at as u64, "byte {at} reported at {offset}");
        let (file, repaired_offset, _) = corruption(recover_repair(&copy));
        assert_eq!((file, repaired_offset), (w.path.clone(), offset));
    }
    // A checkpoint under another timestamp's name.
    let copy = storage.crash(Crash::SyncedOnly);
    let renamed = dir().join(checkpoint::file_name(11));
    copy.rename(&w.path, &renamed).unwrap();
    let (file, offset, what) = corruption(recover_plain(&copy));
    assert_eq!((file, offset), (renamed, 0));
    assert!(what.contains("timestamp 10"), "{what}");
}

#[test]
fn a_gap_in_the_segment_numbers_is_corruption() {
    let storage = SimStorage::new();
    let commits = history(30, 8);
    let segments = write_log(&storage, &commits, 256);
    assert!(segments >= 3);
    let in_first = frames_of(&storage, 1).len();

    let copy = storage.crash(Crash::SyncedOnly);
    copy.remove(&seg(2)).unwrap();
    assert_eq!(corruption(recover_plain(&copy)).0, seg(2));
    let r = recover_repair(&copy).unwrap();
    assert_eq!(r.entries, entries(&model(&commits[..in_first])));
    let repaired = r.repaired.unwrap();
    assert_eq!((repaired.file, repaired.offset), (seg(2), 0));
    let removed: Vec<_> = repaired.removed.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(removed, (3..=segments).map(seg).collect::<Vec<_>>());
    assert_eq!(r.next_segment, 2);
    assert_eq!(segment_numbers(&copy.crash(Crash::SyncedOnly)), [1]);

    // Without a checkpoint the log starts at segment 1: anything before it was lost.
    let copy = storage.crash(Crash::SyncedOnly);
    copy.remove(&seg(1)).unwrap();
    let (file, offset, what) = corruption(recover_plain(&copy));
    assert_eq!((file, offset), (seg(1), 0));
    assert!(what.contains("no checkpoint"), "{what}");
}

#[test]
fn a_frame_that_is_not_a_record_is_corruption() {
    let storage = SimStorage::new();
    let mut w = SegmentWriter::create(&storage, &dir(), 1, 1).unwrap();
    let mut good = Vec::new();
    record::encode(1, [(&b"k"[..], Some(&b"v"[..]))], &mut good);
    w.append([&good[..]]).unwrap();
    let bad = w.append([&b"not a record"[..]]).unwrap();
    w.append([&good[..]]).unwrap();
    w.sync().unwrap();
    let (file, offset, what) = corruption(recover_plain(&storage));
    assert_eq!((file, offset), (seg(1), bad.start));
    assert!(what.contains("frame checks out"), "{what}");
    let r = recover_repair(&storage).unwrap();
    assert_eq!(r.entries.len(), 1);
    assert_eq!(storage.len(&seg(1)).unwrap(), bad.start);
}

#[test]
fn a_segment_under_another_segments_name_is_corruption() {
    let storage = SimStorage::new();
    let commits = history(20, 9);
    let segments = write_log(&storage, &commits, 256);
    let copied = storage.read(&seg(segments - 1)).unwrap();
    put_file(&storage, &seg(segments + 1), &copied);
    let (file, offset, what) = corruption(recover_plain(&storage));
    assert_eq!((file, offset), (seg(segments + 1), 0));
    assert!(what.contains("file name"), "{what}");
}

#[test]
fn checkpoint_leftovers_are_removed_and_unknown_files_kept() {
    let storage = SimStorage::new();
    let commits = history(10, 10);
    write_log(&storage, &commits, 256);
    let tmp = dir().join(format!("{}.tmp", checkpoint::file_name(10)));
    put_file(&storage, &tmp, b"half a checkpoint");
    put_file(&storage, &dir().join("LOCK"), b"");
    put_file(&storage, &dir().join("notes.txt"), b"mine");
    let r = recover_plain(&storage).unwrap();
    assert_eq!(r.checkpoint_ts, None);
    assert_eq!(r.entries, entries(&model(&commits)));
    let names = storage.crash(Crash::SyncedOnly).list(&dir()).unwrap();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    assert!(names.contains(&"LOCK".to_owned()) && names.contains(&"notes.txt".to_owned()));
}

#[test]
fn power_loss_keeps_every_acknowledged_commit() {
    let modes = [
        Crash::SyncedOnly,
        Crash::UnsyncedPrefix { seed: 1 },
        Crash::UnsyncedPrefix { seed: 2 },
        Crash::UnsyncedPages { seed: 3, page: 64 },
        Crash::UnsyncedPages { seed: 4, page: 512 },
    ];
    let (threads, each) = (4u64, 150u64);
    let mut torn_tails = 0;
    for (m, mode) in modes.into_iter().enumerate() {
        let storage = SimStorage::new();
        // A sync takes time, as on a disk: a crash can come between a batch's write and its
        // sync, when unsynced frames are in the file.
        storage.set_sync_delay(std::time::Duration::from_micros(100));
        let log = Log::create(
            storage.clone(),
            &dir(),
            1,
            1,
            LogOptions {
                policy: SyncPolicy::Always,
                segment_size: 2048,
            },
        )
        .unwrap();
        let next_ts = StdU64::new(1);
        let acked = PlMutex::new(Vec::new());
        let mut crashes = Vec::new();
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (log, next_ts, acked) = (&log, &next_ts, &acked);
                scope.spawn(move || {
                    for i in 0..each {
                        let ts = next_ts.fetch_add(1, StdOrdering::Relaxed);
                        let key = format!("t{t}-{i:03}");
                        let lsn = log
                            .append(ts, [(key.as_bytes(), Some(&ts.to_le_bytes()[..]))])
                            .unwrap();
                        log.wait_committed(lsn).unwrap();
                        acked.lock().push((key, ts));
                    }
                });
            }
            // Power losses while the committers run: what was acknowledged before each.
            for target in [20, 150, 400] {
                while (acked.lock().len() as u64) < target.min(threads * each) {
                    std::thread::yield_now();
                }
                let before = acked.lock().clone();
                crashes.push((before, storage.crash(mode)));
            }
        });
        crashes.push((acked.into_inner(), storage.crash(mode)));
        for (before, crashed) in crashes {
            let r = recover_plain(&crashed)
                .unwrap_or_else(|e| panic!("mode {m}: recovery failed: {e}"));
            torn_tails += usize::from(r.torn_tail.is_some());
            let got: BTreeMap<&[u8], (&[u8], u64)> = r
                .entries
                .iter()
                .map(|(k, v, ts)| (&k[..], (&v[..], *ts)))
                .collect();
            for (key, ts) in &before {
                assert_eq!(
                    got.get(key.as_bytes()),
                    Some(&(&ts.to_le_bytes()[..], *ts)),
                    "mode {m}: acknowledged {key} at {ts} lost"
                );
            }
            // Nothing invented: every value is its writer's timestamp.
            for (_, v, ts) in &r.entries {
                assert_eq!(&v[..], &ts.to_le_bytes()[..]);
            }
            assert!(r.max_ts >= before.iter().map(|b| b.1).max().unwrap_or(0));
            let again = recover_plain(&crashed).unwrap();
            assert_eq!((again.entries, again.torn_tail), (r.entries, None));
        }
    }
    println!("power loss: {torn_tails} recoveries cut a torn tail");
}

/// Writes `commits` to a log over `storage` under `SyncPolicy::Never`: written, not synced
/// (what a process crash leaves in the page cache).
fn write_unsynced_log(storage: &SimStorage, commits: &[Commit]) {
    let options = LogOptions {
        policy: SyncPolicy::Never,
        segment_size: 1 << 20,
    };
    let log = Log::create(storage.clone(), &dir(), 1, 1, options).unwrap();
    for c in commits {
        let lsn = log
            .append(c.ts, c.writes.iter().map(|(k, v)| (&k[..], v.as_deref())))
            .unwrap();
        log.wait_committed(lsn).unwrap();
    }
}

#[test]
fn recovery_makes_the_last_segment_durable_before_another_can_follow() {
    // Under `Never` the frames are written, not synced: a process crash keeps them (the page
    // cache), and recovery reads them. It must sync them: the engine then starts the next
    // segment, and a later recovery trusts every segment but the last to its end.
    let storage = SimStorage::new();
    let commits = history(20, 12);
    write_unsynced_log(&storage, &commits);
    let r = recover_plain(&storage).unwrap();
    assert_eq!(r.entries, entries(&model(&commits)));
    let after = recover_plain(&storage.crash(Crash::SyncedOnly)).unwrap();
    assert_eq!(after.entries, r.entries);
}

#[test]
fn recovery_on_the_file_system() {
    let tmp = tempfile::tempdir().unwrap();
    let commits = history(40, 11);
    let log = Log::create(
        FileStorage,
        tmp.path(),
        1,
        1,
        LogOptions {
            policy: SyncPolicy::Always,
            segment_size: 512,
        },
    )
    .unwrap();
    for c in &commits {
        let lsn = log
            .append(c.ts, c.writes.iter().map(|(k, v)| (&k[..], v.as_deref())))
            .unwrap();
        log.wait_committed(lsn).unwrap();
    }
    drop(log);
    let numbers: Vec<u64> = FileStorage
        .list(tmp.path())
        .unwrap()
        .iter()
        .filter_map(|n| segment::parse_file_name(n))
        .collect();
    let last = tmp
        .path()
        .join(segment::file_name(*numbers.last().unwrap()));
    let len = FileStorage.len(&last).unwrap();
    // A frame cut short after its header: a torn tail.
    let mut f = FileStorage.open_append(&last).unwrap();
    f.append(&[7; 30]).unwrap();
    drop(f);
    let r = recover(&FileStorage, tmp.path(), RecoveryOptions::default()).unwrap();
    assert_eq!(r.entries, entries(&model(&commits)));
    assert_eq!(
        r.torn_tail,
        Some(TornTail {
            file: last.clone(),
            offset: len,
            dropped: 30,
        })
    );
    assert_eq!(FileStorage.len(&last).unwrap(), len);
    assert_eq!(r.next_segment, numbers.len() as u64 + 1);
}

/// A log of `commits` in `segment_size` segments, damaged: `flips` are (segment, byte, xor)
/// with the segment and byte taken modulo what exists; `cut` shortens the last segment.
fn damaged_log(commits: &[Commit], flips: &[(u64, usize, u8)], cut: Option<usize>) -> SimStorage {
    let storage = SimStorage::new();
    let segments = write_log(&storage, commits, 300);
    for &(s, at, x) in flips {
        let path = seg(s % segments + 1);
        let mut bytes = storage.read(&path).unwrap();
        let at = at % bytes.len();
        bytes[at] ^= x.max(1);
        put_file(&storage, &path, &bytes);
    }
    if let Some(cut) = cut {
        let last = seg(segments);
        let len = storage.len(&last).unwrap() as usize;
        storage.truncate(&last, (cut % (len + 1)) as u64).unwrap();
    }
    storage
}

proptest! {
    // The proptest version of the `fuzz/` target `recovery`: arbitrary directory contents
    // (files with segment, checkpoint and other names; raw, valid or damaged bytes).
    #[test]
    fn recovery_over_arbitrary_directory_contents(
        bytes in proptest::collection::vec(any::<u8>(), 0..800),
    ) {
        crate::durable::fuzz::recovery(&bytes);
    }

    // Damage to a real log: recovery gives the state after a prefix of the history (whole
    // commits only) or a corruption error; a repair always gives a prefix.
    #[test]
    fn damaged_logs_recover_a_prefix_of_the_history_or_fail_typed(
        seed in 0u64..1000,
        flips in proptest::collection::vec((any::<u64>(), any::<usize>(), any::<u8>()), 0..3),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let commits = history(25, seed);
        let storage = damaged_log(&commits, &flips, cut);
        match recover_plain(&storage) {
            Ok(r) => {
                let k = r.max_ts as usize;
                prop_assert_eq!(r.entries, entries(&model(&commits[..k])));
            }
            Err(Error::Corruption { .. }) => prop_assert!(!flips.is_empty()),
            Err(e) => prop_assert!(false, "{e:?}"),
        }
        let r = recover_repair(&storage).unwrap();
        let k = r.max_ts as usize;
        prop_assert_eq!(r.entries, entries(&model(&commits[..k])));
    }
}

/// A field of `/proc/self/status` in KiB (0 where there is none): the resident set now
/// (`VmRSS`) or its peak so far (`VmHWM`).
fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Recovery of a million keys, from a log and from a checkpoint, on the file system, beside
/// loading the same keys into an in-memory `Db` (the target: reopening takes at most
/// twice the load), with the peak memory recovery from the log adds. Prints figures, asserts
/// only the outcome; run with
/// `cargo test --release --all-features --lib recovering_a_million_keys -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints timings"]
fn recovering_a_million_keys() {
    use std::time::Instant;
    const KEYS: u64 = 1_000_000;
    let key = |i: u64| format!("key{:012}", i * 7919 % KEYS); // a permutation: 7919 is prime
    let value = |i: u64| format!("value-{i:026}");

    // The log: one commit per key, as a million single-key commits leave it.
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::create(&FileStorage, tmp.path(), 1, 1).unwrap();
    let mut payload = Vec::new();
    for i in 0..KEYS {
        payload.clear();
        let (k, v) = (key(i), value(i));
        record::encode(i + 1, [(k.as_bytes(), Some(v.as_bytes()))], &mut payload);
        w.append([&payload[..]]).unwrap();
    }
    w.sync().unwrap();
    let log_bytes = w.written();
    drop(w);
    let rss_before = proc_status_kib("VmRSS:");
    let started = Instant::now();
    let r = recover(&FileStorage, tmp.path(), RecoveryOptions::default()).unwrap();
    let from_log = started.elapsed();
    let peak = proc_status_kib("VmHWM:").saturating_sub(rss_before);
    assert_eq!(r.entries.len() as u64, KEYS);
    assert_eq!(r.records_replayed, KEYS);
    // What the result holds: keys and values, and the entry vector.
    let payload_bytes: usize = r.entries.iter().map(|(k, v, _)| k.len() + v.len()).sum();
    let vector_bytes = r.entries.len() * std::mem::size_of::<(Bytes, Bytes, u64)>();

    // The checkpoint of those keys, with the log removed.
    let tmp2 = tempfile::tempdir().unwrap();
    checkpoint::write(
        &FileStorage,
        tmp2.path(),
        KEYS,
        r.entries.iter().map(|(k, v, ts)| (k, v, *ts)),
        checkpoint::FRAME_BYTES,
    )
    .unwrap();
    drop(r);
    let started = Instant::now();
    let c = recover(&FileStorage, tmp2.path(), RecoveryOptions::default()).unwrap();
    let from_checkpoint = started.elapsed();
    assert_eq!(c.entries.len() as u64, KEYS);
    assert_eq!(c.checkpoint_ts, Some(KEYS));
    drop(c);

    let started = Instant::now();
    let db = crate::Db::new();
    for i in 0..KEYS {
        db.put(key(i), value(i)).unwrap();
    }
    let load = started.elapsed();
    drop(db);

    println!(
        "1M keys: in-memory load {load:.2?}; recovery from a log of {} MiB {from_log:.2?} \
         ({:.2}x the load), peak memory added {} MiB for entries of {} MiB (keys and values) \
         + {} MiB (vector); from a checkpoint {from_checkpoint:.2?} ({:.2}x the load)",
        log_bytes >> 20,
        from_log.as_secs_f64() / load.as_secs_f64(),
        peak >> 10,
        payload_bytes >> 20,
        vector_bytes >> 20,
        from_checkpoint.as_secs_f64() / load.as_secs_f64(),
    );
}

/// Everything a recovery could change in `storage`: each file's bytes as a running program
/// reads them, the state a power loss would leave, and the number of syncs.
type OnDisk = (Vec<(String, Vec<u8>)>, Vec<(String, Vec<u8>)>, u64);

fn on_disk(storage: &SimStorage) -> OnDisk {
    let files = |s: &SimStorage| {
        let mut names = s.list(&dir()).unwrap();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let bytes = s.read(&dir().join(&n)).unwrap();
                (n, bytes)
            })
            .collect::<Vec<_>>()
    };
    (
        files(storage),
        files(&storage.crash(Crash::SyncedOnly)),
        storage.syncs(),
    )
}

fn recover_read_only(storage: &impl Storage, repair: bool) -> Result<Recovered> {
    recover(
        storage,
        &dir(),
        RecoveryOptions {
            repair,
            read_only: true,
        },
    )
}

/// Read-only recovery reports what recovery would (the same state, the same torn tail) and
/// leaves every byte, name and sync as it was; then the writing recovery, on the same
/// storage, does change it (so the comparison could fail).
fn assert_read_only_matches(storage: &SimStorage, expect_changes: bool) -> Recovered {
    let before = on_disk(storage);
    let looked = recover_read_only(storage, false).unwrap();
    assert_eq!(
        on_disk(storage),
        before,
        "read-only recovery changed the storage"
    );
    let recovered = recover_plain(storage).unwrap();
    assert_eq!(
        (&looked.entries, looked.max_ts, looked.checkpoint_ts),
        (
            &recovered.entries,
            recovered.max_ts,
            recovered.checkpoint_ts
        )
    );
    assert_eq!(looked.torn_tail, recovered.torn_tail);
    assert_eq!(looked.records_replayed, recovered.records_replayed);
    assert_eq!(looked.next_segment, recovered.next_segment);
    assert_eq!(looked.segments.len(), recovered.segments.len());
    if expect_changes {
        assert_ne!(on_disk(storage), before, "the writing recovery changes it");
    }
    looked
}

#[test]
fn read_only_recovery_reports_a_torn_tail_and_leaves_it() {
    let storage = SimStorage::new();
    let commits = history(20, 20);
    let segments = write_log(&storage, &commits, 512);
    let last = seg(segments);
    let len = storage.len(&last).unwrap();
    let bytes = storage.read(&last).unwrap();
    let mut torn = bytes.clone();
    torn.extend_from_slice(&bytes[HEADER_LEN..HEADER_LEN + 7]);
    put_file(&storage, &last, &torn);
    let r = assert_read_only_matches(&storage, true);
    assert_eq!(
        r.torn_tail,
        Some(TornTail {
            file: last,
            offset: len,
            dropped: 7,
        })
    );
    assert_eq!(r.entries, entries(&model(&commits)));
}

#[test]
fn read_only_recovery_leaves_a_segment_holding_part_of_its_header() {
    let storage = SimStorage::new();
    let commits = history(20, 21);
    let segments = write_log(&storage, &commits, 256);
    let header = storage.read_range(&seg(1), 0, HEADER_LEN).unwrap();
    put_file(&storage, &seg(segments + 1), &header[..20]);
    let r = assert_read_only_matches(&storage, true);
    assert_eq!(r.torn_tail.map(|t| (t.offset, t.dropped)), Some((0, 20)));
    // Reported as a reopen sees it: the partial segment is not part of the log.
    assert_eq!(r.segments.len() as u64, segments);
}

#[test]
fn read_only_recovery_leaves_checkpoint_leftovers() {
    let storage = SimStorage::new();
    let commits = history(10, 22);
    write_log(&storage, &commits, 256);
    let tmp = dir().join(format!("{}.tmp", checkpoint::file_name(10)));
    put_file(&storage, &tmp, b"half a checkpoint");
    assert_read_only_matches(&storage, true);
}

#[test]
fn read_only_recovery_does_not_sync_unsynced_frames() {
    // Under `Never` the frames are written, not synced: recovery syncs them, a read-only
    // one must not.
    let storage = SimStorage::new();
    let commits = history(20, 23);
    write_unsynced_log(&storage, &commits);
    let r = assert_read_only_matches(&storage, true);
    assert_eq!(r.entries, entries(&model(&commits)));
}

#[test]
fn read_only_recovery_refuses_damage_even_with_repair_and_changes_nothing() {
    let storage = SimStorage::new();
    let commits = history(30, 24);
    let segments = write_log(&storage, &commits, 512);
    assert!(segments >= 3);
    let frames = frames_of(&storage, 2);
    let copy = with_flipped(&storage, &seg(2), frames[1].0 as usize + 3, 0x10);
    let before = on_disk(&copy);
    let (file, offset, _) = corruption(recover_read_only(&copy, true));
    assert_eq!((file, offset), (seg(2), frames[1].0));
    assert_eq!(on_disk(&copy), before);
    // Repair proper cuts there: the read-only refusal was not for want of a repair.
    assert!(recover_repair(&copy).unwrap().repaired.is_some());
    assert_ne!(on_disk(&copy), before);
}

/// A key written at every timestamp across many small segments, deleted every third time:
/// it recovers to its last write, with that write's timestamp; a key whose last write is a
/// delete is absent, and a key written once keeps its only write.
#[test]
fn a_key_written_many_times_across_segments_recovers_its_last_write() {
    let write =
        |key: &str, value: Option<String>| (key.as_bytes().to_vec(), value.map(String::into_bytes));
    let mut commits: Vec<Commit> = (1..=200u64)
        .map(|ts| {
            let hot = (ts % 3 != 0).then(|| format!("hot at {ts}"));
            let mut writes = vec![write("hot", hot)];
            if ts == 7 {
                writes.insert(0, write("alone", Some("once".into())));
            }
            if ts % 50 == 0 {
                writes.push(write("last-deleted", (ts != 200).then(|| format!("{ts}"))));
            }
            Commit { ts, writes }
        })
        .collect();
    commits.push(Commit {
        ts: 201,
        writes: vec![write("hot", Some("final".into()))],
    });
    let storage = SimStorage::new();
    let segments = write_log(&storage, &commits, 512);
    assert!(segments >= 10, "{segments} segments");
    let r = recover_plain(&storage.crash(Crash::SyncedOnly)).unwrap();
    assert_eq!(
        r.entries,
        vec![entry("alone", "once", 7), entry("hot", "final", 201)]
    );
    assert_eq!(r.entries, entries(&model(&commits)));
    assert_eq!((r.max_ts, r.records_replayed), (201, 201));
}

/// Records encoded into segment-like buffers of `per_segment` commits each (no frames: the
/// replay sees records only), replayed into `replay`, counting each buffer as held as
/// `recover` does. Returns the buffers (one more handle each, to see whether the replay
/// still holds them).
fn replay_buffers(replay: &mut Replay, commits: &[Commit], per_segment: usize) -> Vec<Bytes> {
    let mut held = Vec::new();
    for chunk in commits.chunks(per_segment) {
        let mut buffer = Vec::new();
        let mut ranges = Vec::new();
        for c in chunk {
            let start = buffer.len();
            record::encode(
                c.ts,
                c.writes.iter().map(|(k, v)| (&k[..], v.as_deref())),
                &mut buffer,
            );
            ranges.push(start..buffer.len());
        }
        let buffer = Bytes::from(buffer);
        for range in ranges {
            replay.apply(record::decode_shared(&buffer, &buffer[range]).unwrap());
        }
        replay.held(buffer.len() as u64);
        held.push(buffer);
    }
    held
}

/// A replay that compacts often keeps each key's winning write (deletes included, which must
/// still win over the checkpoint's entries) and lets go of the segments' buffers.
#[test]
fn compaction_keeps_each_keys_newest_write_and_frees_the_segments() {
    let commits = history(400, 8);
    // Without a checkpoint.
    let mut replay = Replay::compacting_above(None, 64);
    let buffers = replay_buffers(&mut replay, &commits, 10);
    // Each buffer holds more than the live data: compactions came every buffer or two, and
    // a compacted buffer is held by this test alone.
    let freed = buffers.iter().filter(|b| b.is_unique()).count();
    assert!(
        freed >= buffers.len() / 2,
        "{freed} of {} freed",
        buffers.len()
    );
    assert!(replay.held_bytes <= replay.compact_above);
    let (got, max_ts, replayed) = replay.finish(None);
    assert_eq!(got, entries(&model(&commits)));
    assert_eq!((max_ts, replayed), (400, 400));

    // Over a checkpoint at 100: the log's deletes after it remove its entries.
    let image = model(&commits[..100]);
    let checkpoint = Checkpoint {
        ts: 100,
        entries: image
            .iter()
            .map(|(k, (v, _))| checkpoint::Entry {
                key: Bytes::from(k.clone()),
                value: Bytes::from(v.clone()),
                ts: 100,
            })
            .collect(),
    };
    let mut replay = Replay::compacting_above(Some(100), 64);
    let buffers = replay_buffers(&mut replay, &commits, 10);
    replay.compact();
    assert!(
        buffers.iter().all(Bytes::is_unique),
        "a compaction frees every segment"
    );
    let (got, _, replayed) = replay.finish(Some(checkpoint));
    let mut expected = entries(&model(&commits));
    for e in &mut expected {
        e.2 = e.2.max(100);
    }
    assert_eq!(got, expected);
    assert_eq!(replayed, 300);
}

/// One write per `(key, ts)`, in the given (log) order.
fn log_writes(writes: &[(Vec<u8>, u64, Option<u8>)]) -> Vec<LogWrite> {
    writes
        .iter()
        .map(|(k, ts, v)| LogWrite {
            key: Bytes::from(k.clone()),
            value: v.map(|v| Bytes::from(vec![v])),
            ts: *ts,
        })
        .collect()
}

proptest! {
    /// The sort by key prefix orders keys as their bytes do (keys sharing long prefixes,
    /// zeros, keys that are prefixes of others) and picks per key the largest timestamp,
    /// the last in log order among equal ones.
    #[test]
    fn newest_per_key_is_the_largest_timestamp_per_key_in_key_order(
        writes in proptest::collection::vec(
            (
                proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xff)], 0..20),
                0u64..6,
                proptest::option::of(any::<u8>()),
            ),
            0..60,
        ),
    ) {
        let writes: Vec<_> = writes
            .into_iter()
            // Keys share a 15-byte prefix half the time, to reach the full comparison.
            .map(|(k, ts, v)| {
                let mut key = if k.len() % 2 == 0 { vec![7u8; 15] } else { Vec::new() };
                key.extend(k);
                (key, ts, v)
            })
            .collect();
        let mut want: BTreeMap<Vec<u8>, (u64, Option<u8>)> = BTreeMap::new();
        for (k, ts, v) in &writes {
            if want.get(k).is_none_or(|(t, _)| t <= ts) {
                want.insert(k.clone(), (*ts, *v));
            }
        }
        let got: Vec<_> = newest_per_key(log_writes(&writes))
            .into_iter()
            .map(|w| (w.key.to_vec(), (w.ts, w.value.map(|v| v[0]))))
            .collect();
        prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    }
}

// ---------------------------------------------------------------------------------------
// Reserved tails: a crash leaves the newest segment at the length its writer reserved.

/// `storage`'s durable state with `zeros` zeros after the last segment's frames (`poke`:
/// one of them made non-zero).
fn with_zero_tail(storage: &SimStorage, zeros: usize, poke: Option<usize>) -> SimStorage {
    let copy = storage.crash(Crash::SyncedOnly);
    let last = seg(*segment_numbers(&copy).last().unwrap());
    let mut bytes = copy.read(&last).unwrap();
    let end = bytes.len();
    bytes.resize(end + zeros, 0);
    if let Some(at) = poke {
        bytes[end + at] = 0x77;
    }
    put_file(&copy, &last, &bytes);
    copy
}

#[test]
fn a_last_segment_ending_in_zeros_recovers_every_frame_and_is_cut_to_them() {
    let storage = SimStorage::new();
    let commits = history(30, 21);
    let segments = write_log(&storage, &commits, 300);
    let last = seg(segments);
    let frames_end = storage.len(&last).unwrap();
    let copy = with_zero_tail(&storage, 5000, None);
    // Read-only: judged the same, left as it is.
    let r = recover_read_only(&copy, false).unwrap();
    assert_eq!(r.entries, entries(&model(&commits)));
    assert_eq!(r.records_replayed, 30);
    assert_eq!(r.torn_tail, None);
    assert_eq!(copy.len(&last).unwrap(), frames_end + 5000);
    let r = recover_plain(&copy).unwrap();
    assert_eq!(r.entries, entries(&model(&commits)));
    assert_eq!(r.records_replayed, 30);
    assert_eq!(r.torn_tail, None);
    assert_eq!(r.next_segment, segments + 1);
    assert_eq!(r.segments.last().unwrap().bytes, frames_end);
    // Cut to its frames, durably: after a power loss too, a segment may follow it.
    let after = copy.crash(Crash::SyncedOnly);
    assert_eq!(after.len(&last).unwrap(), frames_end);
    assert_eq!(recover_plain(&after).unwrap().entries, r.entries);
}

#[test]
fn damage_inside_the_zero_tail_is_a_torn_tail_and_keeps_every_frame() {
    let storage = SimStorage::new();
    let commits = history(30, 22);
    let segments = write_log(&storage, &commits, 300);
    let last = seg(segments);
    let frames_end = storage.len(&last).unwrap();
    for at in [0, 1, 23, 24, 999] {
        let copy = with_zero_tail(&storage, 1000, Some(at));
        let r = recover_plain(&copy).unwrap();
        assert_eq!(r.entries, entries(&model(&commits)), "byte {at}");
        assert_eq!(
            r.torn_tail,
            Some(TornTail {
                file: last.clone(),
                offset: frames_end,
                dropped: 1000,
            })
        );
        assert_eq!(copy.len(&last).unwrap(), frames_end);
    }
}

#[test]
fn zeros_after_the_frames_of_a_segment_that_another_follows_are_corruption() {
    // The writer cuts a segment's reservation (durably) before it creates the next one.
    let storage = SimStorage::new();
    let commits = history(30, 23);
    let segments = write_log(&storage, &commits, 300);
    assert!(segments >= 2);
    let copy = storage.crash(Crash::SyncedOnly);
    let mut bytes = copy.read(&seg(1)).unwrap();
    let end = bytes.len() as u64;
    bytes.resize(bytes.len() + 64, 0);
    put_file(&copy, &seg(1), &bytes);
    assert_eq!(corruption(recover_plain(&copy)).1, end);
}

#[test]
#[cfg_attr(miri, ignore)] // a file system, and on Linux a memory map: foreign calls
fn a_crash_between_reserving_a_segment_and_cutting_it_loses_no_commit() {
    const SEGMENT: u64 = 2048;
    let tmp = tempfile::tempdir().unwrap();
    let commits = history(120, 24);
    let log = Log::create(
        FileStorage,
        tmp.path(),
        1,
        1,
        LogOptions {
            policy: SyncPolicy::Never,
            segment_size: SEGMENT,
        },
    )
    .unwrap();
    for c in &commits {
        let lsn = log
            .append(c.ts, c.writes.iter().map(|(k, v)| (&k[..], v.as_deref())))
            .unwrap();
        log.wait_committed(lsn).unwrap();
    }
    let names = FileStorage.list(tmp.path()).unwrap();
    assert!(names.len() >= 3, "{names:?}");
    let (older, newest) = names.split_at(names.len() - 1);
    // A segment another follows was cut to its frames; the newest keeps its reservation.
    for name in older {
        let bytes = FileStorage.read(&tmp.path().join(name)).unwrap();
        let read = segment::parse(Path::new(name), &bytes, u64::MAX).unwrap();
        assert_eq!(read.end, segment::SegmentEnd::Clean, "{name}");
    }
    let newest = tmp.path().join(&newest[0]);
    if cfg!(target_os = "linux") {
        assert!(FileStorage.len(&newest).unwrap() >= SEGMENT);
    }
    // A crash of the process now: the files as the page cache holds them.
    let crashed = tempfile::tempdir().unwrap();
    for name in &names {
        std::fs::copy(tmp.path().join(name), crashed.path().join(name)).unwrap();
    }
    let r = recover(&FileStorage, crashed.path(), RecoveryOptions::default()).unwrap();
    assert_eq!(r.entries, entries(&model(&commits)));
    assert_eq!(r.records_replayed, 120);
    assert_eq!(r.torn_tail, None);
    let cut = crashed.path().join(newest.file_name().unwrap());
    let kept = FileStorage.len(&cut).unwrap();
    assert_eq!(kept, r.segments.last().unwrap().bytes);
    // Closing cuts the reservation the same way.
    log.close().unwrap();
    assert_eq!(FileStorage.len(&newest).unwrap(), kept);
    let r = recover(&FileStorage, tmp.path(), RecoveryOptions::default()).unwrap();
    assert_eq!(r.entries, entries(&model(&commits)));
}
