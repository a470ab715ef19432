use std::path::{Path, PathBuf};

use proptest::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

use super::*;
use crate::durable::storage::{Crash, SimFile, SimStorage};

fn dir() -> PathBuf {
    PathBuf::from("/db")
}

/// The payload of the `i`-th test frame: distinct, of varying length (empty included).
fn payload(i: usize) -> Vec<u8> {
    (0..(i * 7) % 23).map(|j| (i * 31 + j) as u8).collect()
}

/// A segment with `n` frames in `storage`, synced after every frame whose index is in
/// `sync_after`; returns the writer and the frame offsets.
fn write_segment(
    storage: &SimStorage,
    n: usize,
    sync_after: &[usize],
) -> (SegmentWriter<SimFile>, Vec<u64>) {
    let mut w = SegmentWriter::create(storage, &dir(), 1, 100).unwrap();
    let mut offsets = Vec::new();
    for i in 0..n {
        let range = w.append([&payload(i)[..]]).unwrap();
        offsets.push(range.start);
        if sync_after.contains(&i) {
            w.sync().unwrap();
        }
    }
    (w, offsets)
}

fn payloads(read: &SegmentRead<'_>) -> Vec<Vec<u8>> {
    read.frames
        .iter()
        .map(|f| f.frame.payload.to_vec())
        .collect()
}

fn expected(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(payload).collect()
}

fn corruption_offset(r: Result<SegmentRead<'_>>) -> u64 {
    match r {
        Err(Error::Corruption { offset, file, .. }) => {
            assert_eq!(file, Path::new("/db/00000000000000000001.log"));
            offset
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn frames_read_back_in_order_with_their_synced_marks() {
    let s = SimStorage::new();
    let (mut w, offsets) = write_segment(&s, 6, &[1, 3]);
    w.sync().unwrap();
    let bytes = s.read(w.path()).unwrap();
    assert_eq!(bytes.len() as u64, w.written());
    assert_eq!(w.synced(), w.written());
    let read = parse(w.path(), &bytes, 0).unwrap();
    assert_eq!(read.header, Some(w.header()));
    assert_eq!(read.header.unwrap().first_ts, 100);
    assert_eq!(read.end, SegmentEnd::Clean);
    assert_eq!(payloads(&read), expected(6));
    let marks: Vec<u64> = read.frames.iter().map(|f| f.frame.synced_to).collect();
    let h = HEADER_LEN as u64;
    // Synced after frames 1 and 3: frames 2-3 carry frame 2's offset, frames 4-5 frame 4's.
    assert_eq!(
        marks,
        [h, h, offsets[2], offsets[2], offsets[4], offsets[4]]
    );
}

#[test]
fn a_cut_at_every_byte_reads_back_a_prefix_of_whole_frames_and_a_torn_tail() {
    let s = SimStorage::new();
    let (w, offsets) = write_segment(&s, 5, &[0, 2]);
    let bytes = s.read(w.path()).unwrap();
    let frame_ends: Vec<u64> = offsets[1..]
        .iter()
        .copied()
        .chain([bytes.len() as u64])
        .collect();
    for cut in 0..=bytes.len() {
        let read = parse(w.path(), &bytes[..cut], 0).unwrap();
        let cut = cut as u64;
        if cut < HEADER_LEN as u64 {
            assert_eq!(read.header, None);
            assert!(read.frames.is_empty());
            assert!(
                matches!(read.end, SegmentEnd::TornTail { offset: 0, dropped, .. } if dropped == cut)
            );
            continue;
        }
        let whole = frame_ends.iter().filter(|&&end| end <= cut).count();
        assert_eq!(payloads(&read), expected(whole), "cut at {cut}");
        let last_end = if whole == 0 {
            HEADER_LEN as u64
        } else {
            frame_ends[whole - 1]
        };
        if last_end == cut {
            assert_eq!(read.end, SegmentEnd::Clean, "cut at {cut}");
        } else if bytes[last_end as usize..cut as usize]
            .iter()
            .all(|&b| b == 0)
        {
            // A cut that kept only zeros of the next frame (its length's low byte, say)
            // holds nothing: it reads as a reserved tail, cut off just the same.
            assert_eq!(
                read.end,
                SegmentEnd::Reserved {
                    offset: last_end,
                    zeros: cut - last_end
                },
                "cut at {cut}"
            );
        } else {
            assert!(
                matches!(read.end, SegmentEnd::TornTail { offset, dropped, .. }
                    if offset == last_end && dropped == cut - last_end),
                "cut at {cut}: {:?}",
                read.end
            );
        }
    }
}

#[test]
fn every_damaged_byte_gives_corruption_below_the_synced_mark_and_a_prefix_above_it() {
    let s = SimStorage::new();
    // Synced after frames 1 and 4: frames 0-1 and 2-4 are below marks that later frames
    // record (frames 2 and 5 say so); frame 5 and 6's sync is recorded nowhere.
    let (w, offsets) = write_segment(&s, 7, &[1, 4]);
    let bytes = s.read(w.path()).unwrap();
    let read = parse(w.path(), &bytes, 0).unwrap();
    let marks: Vec<u64> = read.frames.iter().map(|f| f.frame.synced_to).collect();
    let mut outcomes = [0usize; 2];
    for at in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[at] ^= flip;
            let result = parse(w.path(), &damaged, 0);
            if at < HEADER_LEN {
                assert_eq!(corruption_offset(result), 0, "byte {at}");
                continue;
            }
            let k = offsets.iter().rposition(|&o| o <= at as u64).unwrap();
            let start = offsets[k];
            // Whether a later frame proves that frame k had been synced.
            if marks[k + 1..].iter().any(|&m| m > start) {
                assert_eq!(corruption_offset(result), start, "byte {at}");
                outcomes[0] += 1;
            } else {
                let read = result.unwrap();
                assert_eq!(payloads(&read), expected(k), "byte {at}");
                assert!(matches!(read.end, SegmentEnd::TornTail { offset, .. } if offset == start));
                outcomes[1] += 1;
            }
            // A caller that knows the segment was synced whole gets corruption every time.
            let whole = parse(w.path(), &damaged, u64::MAX);
            assert_eq!(
                corruption_offset(whole),
                if at < HEADER_LEN { 0 } else { start }
            );
        }
    }
    // Both cases were exercised.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

#[test]
fn a_lost_page_below_the_synced_mark_is_corruption_even_with_pages_kept_after_it() {
    let s = SimStorage::new();
    let (mut w, offsets) = write_segment(&s, 40, &[30]);
    w.sync().unwrap();
    let mut bytes = s.read(w.path()).unwrap();
    // Zero a stretch inside frame 10, well below the mark frame 31 records.
    let start = offsets[10] as usize + 3;
    bytes[start..start + 16].fill(0);
    assert_eq!(corruption_offset(parse(w.path(), &bytes, 0)), offsets[10]);
}

#[test]
fn a_power_loss_never_reads_as_corruption_and_keeps_every_synced_frame() {
    let mut holes = 0;
    for seed in 0..200u64 {
        let s = SimStorage::new();
        let synced_frames = (seed % 5) as usize * 3;
        let (_w, _) = write_segment(&s, synced_frames + 8, &[synced_frames.wrapping_sub(1)]);
        let modes = [
            Crash::SyncedOnly,
            Crash::UnsyncedPrefix { seed },
            Crash::UnsyncedPages {
                seed,
                page: 8 + (seed % 40) as usize,
            },
        ];
        for mode in modes {
            let after = s.crash(mode);
            let path = dir().join(file_name(1));
            let bytes = after.read(&path).unwrap();
            let read =
                parse(&path, &bytes, 0).unwrap_or_else(|e| panic!("seed {seed} {mode:?}: {e}"));
            let got = payloads(&read);
            // A prefix of what was written, holding at least everything synced.
            assert!(got.len() >= synced_frames, "seed {seed} {mode:?}");
            assert_eq!(got, expected(got.len()), "seed {seed} {mode:?}");
            // A lost page in front of a kept one: data that differs from what was written,
            // then (non-zero) data that matches it again.
            let written = s.read(&path).unwrap();
            if let Some(lost) = (0..bytes.len()).find(|&i| bytes[i] != written[i]) {
                if (lost..bytes.len()).any(|i| bytes[i] == written[i] && written[i] != 0) {
                    holes += 1;
                    assert!(
                        matches!(read.end, SegmentEnd::TornTail { offset, .. } if offset <= lost as u64),
                        "seed {seed} {mode:?}: {:?}",
                        read.end
                    );
                }
            }
        }
    }
    assert!(holes > 0, "no crash left a hole in front of a kept page");
}

#[test]
fn a_failed_sync_is_reported_and_poisons_the_writer() {
    let s = SimStorage::new();
    let (mut w, _) = write_segment(&s, 2, &[0]);
    s.fail_next_sync();
    assert!(matches!(w.sync(), Err(Error::Io(_))));
    // fsyncgate: retrying the sync would "succeed" on the simulated OS, which has dropped the
    // pages; the writer refuses instead, and keeps refusing.
    assert!(matches!(w.sync(), Err(Error::Poisoned { .. })));
    assert!(matches!(
        w.append([&b"more"[..]]),
        Err(Error::Poisoned { .. })
    ));
    assert!(!w.sync().unwrap_err().is_retryable());
    // What was acknowledged (synced) before the failure survives a crash.
    let after = s.crash(Crash::SyncedOnly);
    let bytes = after.read(w.path()).unwrap();
    let read = parse(w.path(), &bytes, 0).unwrap();
    assert_eq!(payloads(&read), expected(1));
}

#[test]
fn a_failed_or_short_write_poisons_the_writer_and_reads_back_as_a_torn_tail() {
    for keep in [0, 1, 7, 20, 25] {
        let s = SimStorage::new();
        let (mut w, _) = write_segment(&s, 3, &[2]);
        s.fail_next_write(keep);
        let err = w.append([&payload(3)[..], &payload(4)[..]]).unwrap_err();
        match &err {
            Error::Io(e) => assert_eq!(e.kind(), io::ErrorKind::StorageFull),
            other => panic!("{other:?}"),
        }
        assert!(!err.is_retryable());
        assert!(matches!(w.append([&b"x"[..]]), Err(Error::Poisoned { .. })));
        assert!(matches!(w.sync(), Err(Error::Poisoned { .. })));
        let bytes = s.read(w.path()).unwrap();
        let read = parse(w.path(), &bytes, 0).unwrap();
        assert_eq!(payloads(&read), expected(3), "keep {keep}");
        if keep == 0 {
            assert_eq!(read.end, SegmentEnd::Clean);
        } else {
            assert!(
                matches!(read.end, SegmentEnd::TornTail { offset, dropped, .. }
                    if offset == w.written() && dropped == keep as u64),
                "keep {keep}: {:?}",
                read.end
            );
        }
    }
}

#[test]
fn every_failure_point_keeps_every_acknowledged_frame() {
    // Fail every operation after the n-th, for every n: the frames whose sync returned Ok
    // survive a power loss, and what reads back is a prefix of what was appended.
    for n in 0..40 {
        let s = SimStorage::new();
        s.fail_after(n);
        let mut acked = 0;
        let mut appended = 0;
        if let Ok(mut w) = SegmentWriter::create(&s, &dir(), 1, 0) {
            for i in 0..12 {
                if w.append([&payload(i)[..]]).is_err() {
                    break;
                }
                appended += 1;
                if i % 3 == 2 {
                    if w.sync().is_err() {
                        break;
                    }
                    acked = appended;
                }
            }
        }
        let after = s.crash(Crash::SyncedOnly);
        let path = dir().join(file_name(1));
        match after.read(&path) {
            Ok(bytes) => {
                let read = parse(&path, &bytes, 0).unwrap();
                let got = payloads(&read);
                assert!(got.len() >= acked && got.len() <= appended, "n {n}");
                assert_eq!(got, expected(got.len()));
            }
            Err(_) => assert_eq!(acked, 0, "n {n}: the segment vanished with acked frames"),
        }
    }
}

#[test]
fn bad_headers_are_typed_errors_and_a_cut_header_is_torn() {
    let s = SimStorage::new();
    let (w, _) = write_segment(&s, 2, &[]);
    let bytes = s.read(w.path()).unwrap();
    let mut magic = bytes.clone();
    magic[0] = b'X';
    let mut version = bytes.clone();
    version[8] = 2;
    let mut reserved = bytes.clone();
    reserved[12] = 1;
    let fixed = xxh3_64(&reserved[0..40]).to_le_bytes();
    reserved[40..48].copy_from_slice(&fixed);
    for (damaged, what) in [
        (magic, "magic"),
        (version, "version"),
        (reserved, "reserved"),
    ] {
        match parse(w.path(), &damaged, 0) {
            Err(Error::Corruption {
                offset: 0, what: w, ..
            }) => assert!(w.contains(what), "{w}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // A header-sized file of zeros (the creation's page never reached the disk) is torn...
    let read = parse(w.path(), &[0; HEADER_LEN], 0).unwrap();
    assert_eq!(read.header, None);
    // ...but not when the caller knows it was synced, nor with frames after it.
    assert!(parse(w.path(), &[0; HEADER_LEN], u64::MAX).is_err());
    assert!(parse(w.path(), &[0; HEADER_LEN + 1], 0).is_err());
}

#[test]
fn segment_file_names_sort_in_log_order() {
    assert_eq!(file_name(42), "00000000000000000042.log");
    assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
    assert_eq!(parse_file_name("42.log"), None);
    assert_eq!(parse_file_name("0000000000000000004x.log"), None);
    assert!(file_name(9) < file_name(10));
}

/// A valid segment with `n` frames and syncs after the frames in `sync_after`.
fn segment_bytes(n: usize, sync_after: &[usize]) -> Vec<u8> {
    let s = SimStorage::new();
    let (w, _) = write_segment(&s, n, sync_after);
    s.read(w.path()).unwrap()
}

proptest! {
    // The proptest version of the `fuzz/` target: arbitrary bytes, and valid segments with
    // arbitrary damage, never panic and never break the reader's contract.
    #[test]
    fn reading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        crate::durable::fuzz::segment_reader(&bytes);
    }

    #[test]
    fn fuzz_segment_damage_as_a_proptest(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        crate::durable::fuzz::segment_damage(&data);
    }

    #[test]
    fn reading_a_damaged_segment_never_panics_nor_invents_frames(
        n in 0usize..8,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut: Option<usize>,
    ) {
        let mut bytes = segment_bytes(n, &[1, 4]);
        for (at, b) in edits {
            let at = at % bytes.len();
            bytes[at] = b;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        crate::durable::fuzz::segment_reader(&bytes);
        if let Ok(read) = parse(Path::new("x"), &bytes, 0) {
            let got = payloads(&read);
            // Every frame read back is one that was written, in its place.
            prop_assert!(got.len() <= n);
            prop_assert_eq!(got.clone(), expected(got.len()));
        }
    }
}

#[test]
fn a_checksummed_frame_with_an_impossible_synced_mark_is_corruption() {
    let s = SimStorage::new();
    let (w, offsets) = write_segment(&s, 3, &[0]);
    let bytes = s.read(w.path()).unwrap();
    let salt = w.header().salt;
    let at = offsets[2] as usize;
    // Frame 2 re-encoded (valid checksum) with synced marks the writer could not have had.
    for (synced_to, why) in [
        (offsets[2] + 1, "beyond the frame's own offset"),
        (HEADER_LEN as u64 - 1, "below the header"),
        (offsets[1] + 1, "not a frame boundary"),
        (HEADER_LEN as u64, "below the previous frame's mark"),
    ] {
        let mut damaged = bytes[..at].to_vec();
        frame::encode(salt, synced_to, &payload(2), &mut damaged);
        assert_eq!(
            corruption_offset(parse(w.path(), &damaged, 0)),
            offsets[2],
            "{why}"
        );
    }
}

#[test]
fn a_segment_on_the_file_system_reads_back_and_a_cut_reads_as_a_torn_tail() {
    use crate::durable::storage::FileStorage;
    let tmp = tempfile::tempdir().unwrap();
    let s = FileStorage;
    let mut w = SegmentWriter::create(&s, tmp.path(), 3, 10).unwrap();
    for i in 0..5 {
        w.append([&payload(i)[..]]).unwrap();
        w.sync().unwrap();
    }
    assert_eq!(s.list(tmp.path()).unwrap(), [file_name(3)]);
    let bytes = s.read(w.path()).unwrap();
    let read = parse(w.path(), &bytes, 0).unwrap();
    assert_eq!(read.header.unwrap().number, 3);
    assert_eq!(payloads(&read), expected(5));
    assert_eq!(read.end, SegmentEnd::Clean);
    // Cut inside the last frame: a torn tail, which recovery truncates away.
    let last = read.frames[4].offset;
    s.truncate(w.path(), last + 3).unwrap();
    let bytes = s.read(w.path()).unwrap();
    let read = parse(w.path(), &bytes, 0).unwrap();
    assert_eq!(payloads(&read), expected(4));
    assert!(matches!(read.end, SegmentEnd::TornTail { offset, dropped: 3, .. } if offset == last));
}

#[test]
fn offsets_that_are_not_frames_are_rejected_by_the_header_check_alone() {
    // What keeps the scan past damage linear: at any offset that is not a frame start,
    // decoding stops at the header (12 bytes hashed) and never hashes a payload, even where
    // the bytes look like a plausible header (here values that hold a small length and a
    // small `synced_to`, as timestamps and user data can).
    let s = SimStorage::new();
    let mut w = SegmentWriter::create(&s, &dir(), 1, 1).unwrap();
    let mut starts = Vec::new();
    for ts in 0..300u64 {
        let mut value = 1u32.to_le_bytes().to_vec();
        value.extend_from_slice(&100u64.to_le_bytes());
        value.extend_from_slice(&[0; 12]);
        let mut rec = Vec::new();
        crate::durable::record::encode(ts, [(&b"key"[..], Some(&value[..]))], &mut rec);
        starts.push(w.append([&rec[..]]).unwrap().start);
        if ts % 10 == 0 {
            w.sync().unwrap();
        }
    }
    let bytes = s.read(w.path()).unwrap();
    let salt = w.header().salt;
    let mut plausible = 0;
    for pos in HEADER_LEN..bytes.len() {
        if starts.binary_search(&(pos as u64)).is_ok() {
            continue;
        }
        if let Some((len, synced_to)) = frame::peek(&bytes[pos..]) {
            if synced_to > HEADER_LEN as u64
                && synced_to <= pos as u64
                && u64::from(len) <= (bytes.len() - pos) as u64
            {
                plausible += 1;
            }
        }
        let result = frame::decode(salt, &bytes[pos..]);
        assert!(
            matches!(
                result,
                Err(frame::FrameError::HeaderChecksum | frame::FrameError::HeaderCut { .. })
            ),
            "offset {pos}: {result:?}"
        );
    }
    // The data does hold offsets whose header fields look plausible.
    assert!(plausible > 0);
}

// ---------------------------------------------------------------------------------------
// The reserved tail: a segment left at its reserved length ends in zeros.

/// The bytes of a segment of `n` frames (synced after frame 1) followed by `zeros` zeros,
/// with the frames' end.
fn with_zero_tail(n: usize, zeros: usize) -> (PathBuf, Vec<u8>, u64) {
    let s = SimStorage::new();
    let (w, _) = write_segment(&s, n, &[1]);
    let mut bytes = s.read(w.path()).unwrap();
    let end = bytes.len() as u64;
    bytes.resize(bytes.len() + zeros, 0);
    (w.path().to_path_buf(), bytes, end)
}

#[test]
fn a_zero_tail_after_n_frames_reads_exactly_the_n_frames() {
    for n in [0, 1, 2, 7] {
        for zeros in [1, 23, 24, 25, 4096] {
            let (path, bytes, end) = with_zero_tail(n, zeros);
            let read = parse(&path, &bytes, 0).unwrap();
            assert_eq!(payloads(&read), expected(n), "{n} frames, {zeros} zeros");
            assert_eq!(
                read.end,
                SegmentEnd::Reserved {
                    offset: end,
                    zeros: zeros as u64
                }
            );
            // A segment that another follows was cut to its frames before that one existed:
            // zeros there are damage to synced data.
            assert_eq!(corruption_offset(parse(&path, &bytes, u64::MAX)), end);
        }
    }
}

#[test]
fn damage_inside_the_zero_tail_is_a_torn_tail_after_the_same_frames() {
    let (path, bytes, end) = with_zero_tail(5, 200);
    for at in end as usize..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] = 0x5a;
        let read = parse(&path, &damaged, 0).unwrap();
        assert_eq!(payloads(&read), expected(5), "byte {at}");
        assert!(
            matches!(read.end, SegmentEnd::TornTail { offset, dropped, .. }
                if offset == end && dropped == 200),
            "byte {at}: {:?}",
            read.end
        );
    }
}

#[test]
fn a_frame_in_the_zero_tail_that_records_a_sync_past_the_data_is_corruption() {
    // Frames written after a hole of zeros, one of them saying the bytes at the hole were
    // synced: the zeros are lost synced data, not reserved room.
    let (path, mut bytes, end) = with_zero_tail(5, 100);
    let salt = SegmentHeader::decode(&bytes).unwrap().salt;
    let at = bytes.len() as u64;
    frame::encode(salt, at, b"late", &mut bytes);
    assert_eq!(corruption_offset(parse(&path, &bytes, 0)), end);
    // The same frame recording a sync below the hole only: a torn tail.
    let (path, mut bytes, end) = with_zero_tail(5, 100);
    let salt = SegmentHeader::decode(&bytes).unwrap().salt;
    frame::encode(salt, HEADER_LEN as u64, b"late", &mut bytes);
    let read = parse(&path, &bytes, 0).unwrap();
    assert_eq!(payloads(&read), expected(5));
    assert!(matches!(read.end, SegmentEnd::TornTail { offset, .. } if offset == end));
}

#[test]
#[cfg_attr(miri, ignore)] // a file system, and on Linux a memory map: foreign calls
fn a_reserved_segment_on_the_file_system_reads_its_frames_then_zeros_until_finished() {
    use crate::durable::storage::FileStorage;
    let tmp = tempfile::tempdir().unwrap();
    let s = FileStorage;
    let mut w = SegmentWriter::create_salted(&s, tmp.path(), 1, 10, 99, 64 << 10).unwrap();
    for i in 0..50 {
        w.append([&payload(i)[..]]).unwrap();
    }
    let written = w.written();
    // Written but not synced: what a crash of the process leaves (the page cache).
    let bytes = s.read(w.path()).unwrap();
    #[cfg(target_os = "linux")]
    assert_eq!(bytes.len(), 64 << 10, "the room is reserved up front");
    let read = parse(w.path(), &bytes, 0).unwrap();
    assert_eq!(payloads(&read), expected(50));
    if cfg!(target_os = "linux") {
        assert_eq!(
            read.end,
            SegmentEnd::Reserved {
                offset: written,
                zeros: (64 << 10) - written
            }
        );
    }
    // Past the reservation appends go on (the map's end splits this one).
    let big = vec![0xab; 70 << 10];
    w.append([&big[..]]).unwrap();
    w.sync().unwrap();
    w.finish().unwrap();
    let bytes = s.read(w.path()).unwrap();
    assert_eq!(bytes.len() as u64, w.written());
    let read = parse(w.path(), &bytes, u64::MAX).unwrap();
    assert_eq!(read.end, SegmentEnd::Clean);
    assert_eq!(read.frames.len(), 51);
    assert_eq!(read.frames[50].frame.payload, &big[..]);
    // Finishing twice changes nothing.
    w.finish().unwrap();
    assert_eq!(s.len(w.path()).unwrap(), w.written());
}

#[test]
#[cfg_attr(miri, ignore)] // a file system: foreign calls
fn a_reservation_the_file_system_refuses_fails_the_creation_and_leaves_only_the_header() {
    use crate::durable::storage::FileStorage;
    // More than any file system holds (EFBIG, as a full disk gives ENOSPC): an error here,
    // at creation, never a fault at a later store into the map.
    let tmp = tempfile::tempdir().unwrap();
    let result = SegmentWriter::create_salted(&FileStorage, tmp.path(), 1, 1, 7, 1 << 62);
    if cfg!(target_os = "linux") {
        assert!(
            matches!(result, Err(Error::Io(_))),
            "{:?}",
            result.map(|_| ())
        );
        let path = tmp.path().join(file_name(1));
        assert_eq!(FileStorage.len(&path).unwrap(), HEADER_LEN as u64);
        // What is left reads as a segment without frames.
        let bytes = FileStorage.read(&path).unwrap();
        let read = parse(&path, &bytes, u64::MAX).unwrap();
        assert!(read.frames.is_empty());
        assert_eq!(read.end, SegmentEnd::Clean);
    }
}
