use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64 as StdU64, Ordering as StdOrdering};
use std::sync::Arc as StdArc;
use std::time::{Duration, Instant};

use super::*;
use crate::durable::segment::{self, SegmentEnd};
use crate::durable::storage::{Crash, FileStorage, SimStorage};

fn dir() -> PathBuf {
    PathBuf::from("/db")
}

/// What one segment holds: its number, header timestamp, and commit timestamps in order.
#[derive(Debug)]
struct ReadSegment {
    number: u64,
    first_ts: u64,
    ts: Vec<u64>,
    end: SegmentEnd,
}

/// Every segment in `dir`, read in log order (all but the last known synced to their end).
fn read_log(storage: &impl Storage, dir: &Path) -> Vec<ReadSegment> {
    let names: Vec<String> = storage
        .list(dir)
        .unwrap()
        .into_iter()
        .filter(|n| segment::parse_file_name(n).is_some())
        .collect();
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let path = dir.join(name);
        let bytes = storage.read(&path).unwrap();
        let known_synced = if i + 1 < names.len() { u64::MAX } else { 0 };
        let read = segment::parse(&path, &bytes, known_synced).unwrap();
        let header = read.header.expect("segment header");
        out.push(ReadSegment {
            number: header.number,
            first_ts: header.first_ts,
            ts: read
                .frames
                .iter()
                .map(|f| record::decode(f.frame.payload).unwrap().ts)
                .collect(),
            end: read.end,
        });
    }
    out
}

fn all_ts(segments: &[ReadSegment]) -> BTreeSet<u64> {
    segments.iter().flat_map(|s| s.ts.iter().copied()).collect()
}

fn options(policy: SyncPolicy) -> LogOptions {
    LogOptions {
        policy,
        ..LogOptions::default()
    }
}

/// `threads` committers, `each` commits apiece: timestamp from a shared counter, append,
/// wait as the policy says. Returns the acknowledged timestamps.
fn commit_concurrently<S: Storage>(log: &Log<S>, threads: usize, each: usize) -> BTreeSet<u64> {
    let next_ts = StdU64::new(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let next_ts = &next_ts;
                scope.spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..each {
                        let ts = next_ts.fetch_add(1, StdOrdering::Relaxed);
                        let key = format!("key-{t}-{i}");
                        let lsn = log
                            .append(ts, [(key.as_bytes(), Some(&b"value"[..]))])
                            .unwrap();
                        log.wait_committed(lsn).unwrap();
                        acked.push(ts);
                    }
                    acked
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Holds `storage`'s syncs and starts `log.sync_now()` on a thread; returns once that sync
/// waits at the disk (holding the log's sync lock) until `storage.release_syncs()`.
fn sync_held_at_the_disk(
    log: &StdArc<Log<SimStorage>>,
    storage: &SimStorage,
) -> std::thread::JoinHandle<Result<()>> {
    storage.hold_syncs();
    let syncer = {
        let log = StdArc::clone(log);
        std::thread::spawn(move || log.sync_now())
    };
    while storage.syncs_waiting() == 0 {
        std::thread::yield_now();
    }
    syncer
}

#[test]
fn group_commit_keeps_every_acknowledged_commit_and_shares_syncs() {
    let storage = SimStorage::new();
    // A sync takes time, as on a disk: committers arriving meanwhile join the next batch.
    storage.set_sync_delay(Duration::from_micros(200));
    let log = Log::create(storage.clone(), &dir(), 1, 1, options(SyncPolicy::Always)).unwrap();
    let (threads, each) = (8, 200);
    let acked = commit_concurrently(&log, threads, each);
    assert_eq!(acked.len(), threads * each);

    let after = read_log(&storage.crash(Crash::SyncedOnly), &dir());
    let kept = all_ts(&after);
    assert!(acked.is_subset(&kept), "an acknowledged commit was lost");

    let syncs = log.syncs();
    // The header's sync is the storage's only other one.
    assert_eq!(storage.syncs(), syncs + 1);
    println!(
        "{} commits, {syncs} syncs ({:.2} commits per sync)",
        acked.len(),
        acked.len() as f64 / syncs as f64
    );
    assert!(
        syncs * 2 <= acked.len() as u64,
        "{syncs} syncs for {} commits: no group commit",
        acked.len()
    );
}

#[test]
fn a_failed_sync_gives_its_batch_an_unknown_outcome_and_poisons_the_log() {
    let storage = SimStorage::new();
    let log = Log::create(storage.clone(), &dir(), 1, 1, options(SyncPolicy::Always)).unwrap();
    let first = log.append(1, [(&b"a"[..], Some(&b"1"[..]))]).unwrap();
    log.wait_durable(first).unwrap();

    let second = log.append(2, [(&b"b"[..], Some(&b"2"[..]))]).unwrap();
    storage.fail_next_sync();
    let err = log.wait_durable(second).unwrap_err();
    assert!(matches!(err, Error::CommitOutcomeUnknown { .. }), "{err:?}");
    assert!(!err.is_retryable());
    // Asking again gives the same answer: never a success after the failure.
    assert!(matches!(
        log.wait_durable(second),
        Err(Error::CommitOutcomeUnknown { .. })
    ));
    // The earlier batch stays durable.
    log.wait_durable(first).unwrap();
    let err = log.append(3, [(&b"c"[..], None)]).unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err:?}");
    // The sync is never retried.
    let syncs = storage.syncs();
    assert!(log.sync_now().is_err());
    assert_eq!(storage.syncs(), syncs);
    assert_eq!(
        all_ts(&read_log(&storage.crash(Crash::SyncedOnly), &dir())),
        BTreeSet::from([1])
    );
}

/// A sync outside the writer lock fails while a leader writes a batch that meets a new
/// segment: the leader has put the old segment's frames in the file before it sees the
/// failure (at the rollover, which then stops). Those frames' waiters must hear that the
/// outcome is unknown, not that their records were never written: a reopen after the
/// poisoning reads them back.
#[test]
fn a_batch_written_while_a_sync_fails_has_an_unknown_outcome() {
    let storage = SimStorage::new();
    let record = |ts: u64| {
        let mut payload = Vec::new();
        record::encode(ts, [(&b"k"[..], Some(&b"v"[..]))], &mut payload);
        payload
    };
    let frame_len = frame::encoded_len(record(1).len()) as u64;
    // Two frames to a segment: the third starts the next one.
    let options = LogOptions {
        policy: SyncPolicy::Always,
        segment_size: HEADER_LEN as u64 + frame_len + 1,
    };
    let log = StdArc::new(Log::create(storage.clone(), &dir(), 1, 1, options).unwrap());
    let append = |ts: u64| log.append(ts, [(&b"k"[..], Some(&b"v"[..]))]).unwrap();
    let first = append(1);
    storage.fail_next_sync();
    // The sync that will fail: it writes frame 1, then waits at the disk holding the sync
    // lock.
    let syncer = sync_held_at_the_disk(&log, &storage);
    assert_eq!(log.written_bytes(), first.0);
    let second = append(2);
    let third = append(3);
    // The leader writes frame 2 into segment 1, then waits for the sync lock to roll over.
    let leader = {
        let log = StdArc::clone(&log);
        std::thread::spawn(move || log.wait_durable(third))
    };
    std::thread::sleep(Duration::from_millis(100));
    storage.release_syncs();
    assert!(syncer.join().unwrap().is_err());
    assert!(leader.join().unwrap().is_err());
    let in_file = all_ts(&read_log(&storage, &dir()));
    assert!(in_file.contains(&1));
    let outcome = log.wait_durable(second);
    if in_file.contains(&2) {
        assert!(
            matches!(outcome, Err(Error::CommitOutcomeUnknown { .. })),
            "frame 2 is in the file, its waiter got {outcome:?}"
        );
    } else {
        // The leader saw the failure before it wrote anything (a slow schedule).
        assert!(
            matches!(outcome, Err(Error::Poisoned { .. })),
            "{outcome:?}"
        );
    }
    assert!(
        !in_file.contains(&3),
        "the rollover went on past the failed sync"
    );
}

#[test]
fn a_failed_write_gives_its_batch_an_unknown_outcome_and_poisons_the_log() {
    let storage = SimStorage::new();
    let log = Log::create(storage.clone(), &dir(), 1, 1, options(SyncPolicy::Never)).unwrap();
    // Under Never, an append with no leader at work writes its own frame: the write fails
    // there, and the append's position waits to the unknown outcome.
    storage.fail_next_write(5);
    let lsn = log.append(1, [(&b"a"[..], Some(&b"1"[..]))]).unwrap();
    assert!(matches!(
        log.wait_written(lsn),
        Err(Error::CommitOutcomeUnknown { .. })
    ));
    assert!(matches!(
        log.append(2, [(&b"b"[..], None)]),
        Err(Error::Poisoned { .. })
    ));
    // The short write reads back as a torn tail.
    let segments = read_log(&storage, &dir());
    assert!(matches!(segments[0].end, SegmentEnd::TornTail { .. }));
    assert!(segments[0].ts.is_empty());
}

#[test]
fn under_never_an_append_with_no_leader_at_work_is_written_when_it_returns() {
    let storage = SimStorage::new();
    let log = Log::create(storage.clone(), &dir(), 1, 1, options(SyncPolicy::Never)).unwrap();
    for ts in 1..=3 {
        let lsn = log.append(ts, [(&b"a"[..], Some(&b"1"[..]))]).unwrap();
        assert_eq!(
            log.written_bytes(),
            lsn.0,
            "frame {ts} not written at append"
        );
    }
    // Nothing synced, everything in the files a crash of the process leaves.
    assert_eq!(log.syncs(), 0);
    assert_eq!(
        all_ts(&read_log(&storage, &dir())),
        BTreeSet::from([1, 2, 3])
    );
    assert!(all_ts(&read_log(&storage.crash(Crash::SyncedOnly), &dir())).is_empty());
}

#[test]
fn waiters_whose_frames_were_never_written_get_poisoned_not_unknown() {
    let storage = SimStorage::new();
    let log = Log::create(storage.clone(), &dir(), 1, 1, options(SyncPolicy::Always)).unwrap();
    let first = log.append(1, [(&b"a"[..], None)]).unwrap();
    storage.fail_next_sync();
    assert!(matches!(
        log.wait_durable(first),
        Err(Error::CommitOutcomeUnknown { .. })
    ));
    // A position past the failed batch: a frame appended while the batch was being synced,
    // which no leader will ever write.
    let past = Lsn(first.0 + 1);
    assert!(matches!(
        log.wait_durable(past),
        Err(Error::Poisoned { .. })
    ));
}

#[test]
fn never_syncs_no_frame_and_a_process_crash_keeps_everything() {
    let storage = SimStorage::new();
    let log = Log::create(storage.clone(), &dir(), 1, 1, options(SyncPolicy::Never)).unwrap();
    let headers_only = storage.syncs();
    let acked = commit_concurrently(&log, 4, 100);
    assert_eq!(storage.syncs(), headers_only, "Never synced a frame");
    assert_eq!(log.syncs(), 0);
    // A process crash: the operating system keeps every written byte.
    let segments = read_log(&storage, &dir());
    assert_eq!(segments[0].end, SegmentEnd::Clean);
    assert_eq!(all_ts(&segments), acked);
    // A power loss keeps none of them: nothing was synced.
    assert!(all_ts(&read_log(&storage.crash(Crash::SyncedOnly), &dir())).is_empty());
}

#[test]
fn periodic_syncs_in_the_background() {
    let storage = SimStorage::new();
    let every = Duration::from_millis(1);
    let log = StdArc::new(
        Log::create(
            storage.clone(),
            &dir(),
            1,
            1,
            options(SyncPolicy::Periodic(every)),
        )
        .unwrap(),
    );
    let syncer = LogFlusher::spawn(StdArc::clone(&log), Some(every));
    let acked = commit_concurrently(&log, 2, 50);
    // Written at commit: a process crash keeps them at once.
    assert_eq!(all_ts(&read_log(&storage, &dir())), acked);
    // Synced by the background thread, eventually (bounded so that a broken syncer fails).
    let mut polls = 0;
    while all_ts(&read_log(&storage.crash(Crash::SyncedOnly), &dir())) != acked {
        polls += 1;
        assert!(
            polls < 20_000,
            "the periodic syncer never synced the commits"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(syncer);
    assert!(log.syncs() > 0);
}

/// The periodic syncer's sync runs outside the writer lock: while it waits for the disk,
/// commits are written and acknowledged (under `Periodic`, written is what a commit waits
/// for), and the sync then makes durable what was written before it began.
#[test]
fn commits_go_on_while_a_periodic_sync_waits_for_the_disk() {
    let storage = SimStorage::new();
    let policy = SyncPolicy::Periodic(Duration::from_secs(3600));
    let log = StdArc::new(Log::create(storage.clone(), &dir(), 1, 1, options(policy)).unwrap());
    let before = log.append(1, [(&b"a"[..], Some(&b"1"[..]))]).unwrap();
    log.wait_committed(before).unwrap();
    let syncer = sync_held_at_the_disk(&log, &storage);
    // Bounded: a sync that held the writer lock would keep these waiting for good.
    let (done, finished) = std::sync::mpsc::channel();
    let committer = {
        let log = StdArc::clone(&log);
        std::thread::spawn(move || {
            for ts in 2..=100 {
                let lsn = log.append(ts, [(&b"b"[..], Some(&b"2"[..]))]).unwrap();
                log.wait_committed(lsn).unwrap();
            }
            done.send(()).unwrap();
        })
    };
    let waited = finished.recv_timeout(Duration::from_secs(60));
    storage.release_syncs();
    assert!(waited.is_ok(), "commits waited for a periodic sync");
    committer.join().unwrap();
    syncer.join().unwrap().unwrap();
    assert!(
        all_ts(&read_log(&storage.crash(Crash::SyncedOnly), &dir())).contains(&1),
        "the sync did not make durable what was written before it began"
    );
    assert_eq!(
        all_ts(&read_log(&storage, &dir())),
        (1..=100).collect::<BTreeSet<u64>>()
    );
    log.sync_now().unwrap();
    assert_eq!(
        all_ts(&read_log(&storage.crash(Crash::SyncedOnly), &dir())),
        (1..=100).collect::<BTreeSet<u64>>()
    );
}

/// The flusher's writeback covers what was written since its last call or the last sync, in
/// whole blocks (never the block still being filled), each byte once.
#[test]
fn writeback_starts_behind_the_appends_in_whole_blocks() {
    let storage = SimStorage::new();
    let log = Log::create(storage.clone(), &dir(), 1, 1, options(SyncPolicy::Never)).unwrap();
    let value = [7u8; 1000];
    let append = |range: std::ops::Range<u64>| {
        for ts in range {
            let lsn = log.append(ts, [(&b"k"[..], Some(&value[..]))]).unwrap();
            log.wait_committed(lsn).unwrap();
        }
    };
    append(1..200);
    log.start_writeback();
    log.start_writeback();
    let header = HEADER_LEN as u64;
    let first_end = log.written_bytes() / WRITEBACK_ALIGN * WRITEBACK_ALIGN;
    assert_eq!(storage.writebacks(), [(header, first_end - header)]);
    append(200..300);
    log.sync_now().unwrap();
    // Synced: nothing left to start.
    log.start_writeback();
    assert_eq!(storage.writebacks().len(), 1);
    append(300..400);
    log.start_writeback();
    let synced = log.durable.load(Ordering::Acquire);
    let second_end = log.written_bytes() / WRITEBACK_ALIGN * WRITEBACK_ALIGN;
    assert_eq!(
        storage.writebacks()[1],
        (synced, second_end - synced),
        "the second writeback starts where the sync ended"
    );
}

#[test]
fn rollover_segments_read_back_in_order_with_every_frame() {
    let storage = SimStorage::new();
    let size = 600;
    let log = Log::create(
        storage.clone(),
        &dir(),
        1,
        1,
        LogOptions {
            policy: SyncPolicy::Always,
            segment_size: size,
        },
    )
    .unwrap();
    let acked = commit_concurrently(&log, 4, 60);
    let segments = read_log(&storage.crash(Crash::SyncedOnly), &dir());
    assert!(segments.len() > 5, "{} segments", segments.len());
    for (i, s) in segments.iter().enumerate() {
        assert_eq!(s.number, i as u64 + 1, "segment numbers follow each other");
        assert_eq!(s.end, SegmentEnd::Clean);
        assert!(!s.ts.is_empty(), "segment {} holds no frame", s.number);
    }
    // A segment takes frames until it reaches the size, then the next one starts.
    for s in &segments[..segments.len() - 1] {
        let len = storage
            .len(&dir().join(segment::file_name(s.number)))
            .unwrap();
        assert!(len >= size, "segment {} closed at {len} bytes", s.number);
    }
    let kept: Vec<u64> = segments.iter().flat_map(|s| s.ts.clone()).collect();
    assert_eq!(kept.len(), acked.len(), "a frame is missing or doubled");
    assert_eq!(kept.iter().copied().collect::<BTreeSet<_>>(), acked);
}

#[test]
fn a_new_segment_records_the_timestamp_floor_in_its_header() {
    let storage = SimStorage::new();
    let log = Log::create(
        storage.clone(),
        &dir(),
        7,
        1,
        LogOptions {
            policy: SyncPolicy::Always,
            segment_size: 200,
        },
    )
    .unwrap();
    for ts in 1..=40 {
        log.raise_ts_floor(ts);
        let lsn = log
            .append(ts, [(&b"key"[..], Some(&[0u8; 30][..]))])
            .unwrap();
        log.wait_durable(lsn).unwrap();
    }
    let segments = read_log(&storage, &dir());
    assert!(segments.len() > 3);
    assert_eq!(segments[0].number, 7);
    for s in &segments {
        assert_eq!(s.first_ts, s.ts[0], "segment {}", s.number);
        assert!(s.ts.windows(2).all(|w| w[0] < w[1]));
    }
}

/// Commits per second and syncs per commit on the file system, `Always` against `Never`, at
/// 1 to 16 committer threads. Prints figures; asserts nothing about time.
///
/// ```text
/// cargo test --release --lib durable::log::tests::throughput_on_files -- --ignored --nocapture
/// ```
#[test]
#[ignore = "benchmark: prints figures"]
fn throughput_on_files() {
    for policy in [SyncPolicy::Always, SyncPolicy::Never] {
        for threads in [1, 2, 4, 8, 16] {
            let tmp = tempfile::tempdir().unwrap();
            let log = Log::create(FileStorage, tmp.path(), 1, 1, options(policy)).unwrap();
            let total = if policy == SyncPolicy::Always {
                2_000
            } else {
                200_000
            };
            let each = total / threads;
            let start = Instant::now();
            let acked = commit_concurrently(&log, threads, each);
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(acked.len(), each * threads);
            println!(
                "{policy:?} threads {threads:>2}: {:>9.0} commits/s, {:.3} syncs/commit",
                acked.len() as f64 / secs,
                log.syncs() as f64 / acked.len() as f64
            );
        }
    }
}

/// A log on `storage` whose segments take one small frame each (a 60-byte limit).
fn small_segment_log(storage: &SimStorage) -> Log<SimStorage> {
    Log::create(
        storage.clone(),
        &dir(),
        1,
        1,
        LogOptions {
            policy: SyncPolicy::Always,
            segment_size: 60,
        },
    )
    .unwrap()
}

/// Appends one commit at each of `ts` and waits for it.
fn commit_each(log: &Log<SimStorage>, ts: &[u64]) {
    for &t in ts {
        let lsn = log.append(t, [(&b"k"[..], Some(&b"v"[..]))]).unwrap();
        log.wait_durable(lsn).unwrap();
    }
}

fn segment_numbers(storage: &impl Storage) -> Vec<u64> {
    storage
        .list(&dir())
        .unwrap()
        .iter()
        .filter_map(|n| segment::parse_file_name(n))
        .collect()
}

fn file_bytes(storage: &impl Storage) -> u64 {
    segment_numbers(storage)
        .iter()
        .map(|&n| storage.len(&dir().join(segment::file_name(n))).unwrap())
        .sum()
}

#[test]
fn covered_segments_are_removed_durably_and_the_tail_never() {
    let storage = SimStorage::new();
    let log = small_segment_log(&storage);
    commit_each(&log, &[1, 2, 3, 4, 5]);
    assert_eq!(segment_numbers(&storage), [1, 2, 3, 4, 5]);
    assert_eq!(log.live_bytes(), file_bytes(&storage));

    assert_eq!(log.remove_segments_covered_by(2).unwrap(), 2);
    assert_eq!(segment_numbers(&storage), [3, 4, 5]);
    assert_eq!(log.live_bytes(), file_bytes(&storage));
    // Every record is covered: all but the segment appends go to.
    assert_eq!(log.remove_segments_covered_by(u64::MAX).unwrap(), 2);
    assert_eq!(segment_numbers(&storage), [5]);
    assert_eq!(log.remove_segments_covered_by(u64::MAX).unwrap(), 0);
    // The removals were made durable.
    assert_eq!(segment_numbers(&storage.crash(Crash::SyncedOnly)), [5]);
    assert_eq!(log.live_bytes(), file_bytes(&storage));
    // The log carries on, and what is left reads back.
    commit_each(&log, &[6]);
    let left = read_log(&storage, &dir());
    assert_eq!(left.iter().map(|s| s.number).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(all_ts(&left), BTreeSet::from([5, 6]));
    assert_eq!(log.live_bytes(), file_bytes(&storage));
}

#[test]
fn a_segment_with_one_record_above_the_checkpoint_stays() {
    // Log order is not timestamp order: ts 9 reaches the log before ts 7.
    let storage = SimStorage::new();
    let log = Log::create(
        storage.clone(),
        &dir(),
        1,
        1,
        LogOptions {
            policy: SyncPolicy::Always,
            segment_size: 120,
        },
    )
    .unwrap();
    commit_each(&log, &[9, 7, 10]);
    let segments = read_log(&storage, &dir());
    assert_eq!(
        segments[0].ts,
        [9, 7],
        "ts 9 then ts 7 in the first segment"
    );
    assert_eq!(
        segments[0].first_ts, 1,
        "its header does not bound 9 from above"
    );
    assert_eq!(segments.len(), 2);
    assert_eq!(log.remove_segments_covered_by(8).unwrap(), 0);
    assert_eq!(segment_numbers(&storage), [1, 2]);
    assert_eq!(log.remove_segments_covered_by(9).unwrap(), 1);
    assert_eq!(segment_numbers(&storage), [2]);
}

#[test]
fn only_a_contiguous_prefix_goes() {
    let storage = SimStorage::new();
    let log = small_segment_log(&storage);
    commit_each(&log, &[5, 20, 6, 7]);
    // Segment 3 (ts 6) is covered by a checkpoint at 10, but segment 2 (ts 20) is not and
    // recovery needs contiguous numbers: only segment 1 goes.
    assert_eq!(log.remove_segments_covered_by(10).unwrap(), 1);
    assert_eq!(segment_numbers(&storage), [2, 3, 4]);
    assert_eq!(log.remove_segments_covered_by(20).unwrap(), 2);
    assert_eq!(segment_numbers(&storage), [4]);
}

#[test]
fn a_segment_the_leader_has_not_moved_past_stays() {
    let storage = SimStorage::new();
    let log = small_segment_log(&storage);
    commit_each(&log, &[1]);
    // Two more frames, each starting a segment, and not yet written: the leader still
    // holds segment 1 (it syncs it to its end before creating segment 2), and segment 2
    // does not exist yet.
    let _ = log.append(2, [(&b"k"[..], Some(&b"v"[..]))]).unwrap();
    let last = log.append(3, [(&b"k"[..], Some(&b"v"[..]))]).unwrap();
    assert_eq!(log.remove_segments_covered_by(u64::MAX).unwrap(), 0);
    assert_eq!(segment_numbers(&storage), [1]);
    log.wait_durable(last).unwrap();
    assert_eq!(log.remove_segments_covered_by(u64::MAX).unwrap(), 2);
    assert_eq!(segment_numbers(&storage), [3]);
    assert_eq!(all_ts(&read_log(&storage, &dir())), BTreeSet::from([3]));
}

#[test]
fn a_failed_removal_is_an_error_and_a_retry_finishes_it() {
    let storage = SimStorage::new();
    let log = small_segment_log(&storage);
    commit_each(&log, &[1, 2, 3]);
    // The removal of segment 1 succeeds, its directory sync fails.
    storage.fail_after(1);
    assert!(matches!(
        log.remove_segments_covered_by(u64::MAX),
        Err(Error::Io(_))
    ));
    storage.fail_after(u64::MAX);
    assert_eq!(log.remove_segments_covered_by(u64::MAX).unwrap(), 2);
    assert_eq!(segment_numbers(&storage.crash(Crash::SyncedOnly)), [3]);
    assert_eq!(log.live_bytes(), file_bytes(&storage));
}

#[test]
fn adopted_segments_are_retired_like_the_logs_own() {
    let storage = SimStorage::new();
    // An earlier run's segments 1 and 2, with records up to ts 4 and 8.
    let mut older = Vec::new();
    for (number, ts) in [(1, 4), (2, 8)] {
        let mut w = SegmentWriter::create(&storage, &dir(), number, 1).unwrap();
        let mut payload = Vec::new();
        record::encode(ts, [(&b"k"[..], Some(&b"v"[..]))], &mut payload);
        w.append([&payload[..]]).unwrap();
        w.sync().unwrap();
        older.push(LiveSegment {
            number,
            bytes: w.written(),
            max_ts: Some(ts),
        });
    }
    let log = Log::create(storage.clone(), &dir(), 3, 9, options(SyncPolicy::Always)).unwrap();
    log.adopt_segments(older);
    commit_each(&log, &[9]);
    assert_eq!(log.live_bytes(), file_bytes(&storage));
    assert_eq!(log.remove_segments_covered_by(5).unwrap(), 1);
    assert_eq!(segment_numbers(&storage), [2, 3]);
    assert_eq!(log.remove_segments_covered_by(100).unwrap(), 1);
    assert_eq!(segment_numbers(&storage), [3]);
    assert_eq!(log.live_bytes(), file_bytes(&storage));
}
