//! Entry points for the fuzz targets in `fuzz/` (compiled under `--cfg fuzzing`), also run
//! by the proptest versions of the targets in `cargo test`.

use std::path::Path;

use super::storage::{SimStorage, Storage, StorageFile};
use super::{checkpoint, frame, record, recovery, segment};

/// Builds a valid segment from the input, damages it as the input says, and reads it back:
/// every frame read back must be one that was written, in its place. Arbitrary bytes rarely
/// pass a header or frame checksum, so this is what reaches the reader's frame loop.
///
/// Input: a frame count byte; per frame a byte (payload length in the low 6 bits, "sync
/// after this frame" in the top bit); then damage, as pairs (position byte pairs, xor byte),
/// the first pair's xor byte choosing instead a cut when it is zero.
pub fn segment_damage(data: &[u8]) {
    let (&count, rest) = data.split_first().unwrap_or((&0, &[]));
    let count = usize::from(count % 16).min(rest.len());
    let (shape, damage) = rest.split_at(count);
    let salt = 0x5eed;
    let header = segment::SegmentHeader {
        number: 1,
        first_ts: 1,
        salt,
    };
    let mut bytes = header.encode().to_vec();
    let mut synced = bytes.len() as u64;
    let mut payloads = Vec::new();
    for (i, &b) in shape.iter().enumerate() {
        let payload: Vec<u8> = (0..usize::from(b & 0x3f))
            .map(|j| (i * 7 + j) as u8)
            .collect();
        frame::encode(salt, synced, &payload, &mut bytes);
        payloads.push(payload);
        if b & 0x80 != 0 {
            synced = bytes.len() as u64;
        }
    }
    let clean = segment::parse(Path::new("fuzz.log"), &bytes, 0).expect("a valid segment");
    assert_eq!(clean.frames.len(), payloads.len());
    for chunk in damage.chunks_exact(3) {
        if bytes.is_empty() {
            break;
        }
        let at = usize::from(u16::from_le_bytes([chunk[0], chunk[1]])) % bytes.len();
        match chunk[2] {
            0 => bytes.truncate(at),
            x => bytes[at] ^= x,
        }
    }
    segment_reader(&bytes);
    if let Ok(read) = segment::parse(Path::new("fuzz.log"), &bytes, 0) {
        assert!(read.frames.len() <= payloads.len());
        for (got, want) in read.frames.iter().zip(&payloads) {
            assert_eq!(got.frame.payload, &want[..], "a frame that was not written");
        }
    }
}

/// Reads arbitrary bytes as a checkpoint: a typed result, never a panic, and whatever reads
/// back has strictly increasing keys and no version newer than the checkpoint.
pub fn checkpoint_reader(bytes: &[u8]) {
    match checkpoint::read(Path::new("fuzz.ckpt"), bytes) {
        Ok(cp) => {
            assert!(cp.entries.windows(2).all(|w| w[0].key < w[1].key));
            assert!(cp.entries.iter().all(|e| e.ts <= cp.ts));
        }
        Err(e) => assert!(matches!(e, crate::Error::Corruption { .. }), "{e:?}"),
    }
}

/// Reads arbitrary bytes as a log segment, as the newest segment (`known_synced` 0) and as
/// an older one (fully synced), and decodes every frame's payload as a commit record. Panics
/// (which the fuzzer reports) only if the reader breaks its own contract.
pub fn segment_reader(bytes: &[u8]) {
    for known_synced in [0, u64::MAX] {
        let Ok(read) = segment::parse(Path::new("fuzz.log"), bytes, known_synced) else {
            continue;
        };
        let mut end = segment::HEADER_LEN as u64;
        for f in &read.frames {
            assert_eq!(f.offset, end, "frames are contiguous");
            end = f.offset + (super::frame::HEADER_LEN + f.frame.payload.len()) as u64;
            let _ = record::decode(f.frame.payload);
        }
        match read.end {
            segment::SegmentEnd::Clean => {
                assert!(read.header.is_some() && end == bytes.len() as u64)
            }
            segment::SegmentEnd::TornTail {
                offset, dropped, ..
            } => {
                if read.header.is_some() {
                    assert_eq!(offset, end, "the torn tail starts after the last frame");
                }
                assert_eq!(offset + dropped, bytes.len() as u64);
                assert_eq!(known_synced, 0, "a synced segment has no torn tail");
            }
            segment::SegmentEnd::Reserved { offset, zeros } => {
                assert!(read.header.is_some());
                assert_eq!(offset, end, "the reserved tail starts after the last frame");
                assert_eq!(offset + zeros, bytes.len() as u64);
                assert!(bytes[end as usize..].iter().all(|&b| b == 0));
                assert_eq!(known_synced, 0, "a synced segment has no reserved tail");
            }
        }
    }
}

/// Decodes arbitrary bytes as a commit record; whatever decodes must re-encode to exactly
/// the same bytes (nothing invented, nothing ignored).
pub fn record_decoder(bytes: &[u8]) {
    if let Ok(rec) = record::decode(bytes) {
        let mut again = Vec::new();
        record::encode(
            rec.ts,
            rec.writes.iter().map(|w| (&w.key[..], w.value.as_deref())),
            &mut again,
        );
        assert_eq!(again, bytes, "a decoded record re-encodes to its bytes");
    }
}

/// Takes bytes off the front of a fuzz input; an exhausted input reads as zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// The keys the generated files write (few, so that records and checkpoints overlap).
const FUZZ_KEYS: [&[u8]; 8] = [b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"];

/// A valid segment `number` built from the input: up to 7 frames whose records write the
/// keys a mask byte selects (a put or a delete each). The timestamps grow with the segment
/// number and along the segment, as the engine's would per key.
fn fuzz_segment(input: &mut Input<'_>, number: u64) -> Vec<u8> {
    let salt = u64::from(input.byte()) << 8 | 0x5a;
    let header = segment::SegmentHeader {
        number,
        first_ts: number << 12,
        salt,
    };
    let mut bytes = header.encode().to_vec();
    let mut synced = bytes.len() as u64;
    for i in 0..input.byte() % 8 {
        let mask = input.byte();
        let values: Vec<(&[u8], Vec<u8>)> = FUZZ_KEYS
            .iter()
            .enumerate()
            .filter(|(k, _)| mask & (1 << k) != 0)
            .map(|(_, &key)| (key, vec![input.byte(); usize::from(input.byte() % 6)]))
            .collect();
        let mut payload = Vec::new();
        record::encode(
            (number << 12) | (u64::from(i) + 1),
            values
                .iter()
                .map(|(k, v)| (*k, (v.len() != 1).then_some(&v[..]))),
            &mut payload,
        );
        frame::encode(salt, synced, &payload, &mut bytes);
        if input.byte() & 1 != 0 {
            synced = bytes.len() as u64;
        }
    }
    bytes
}

/// A valid checkpoint at `ts` built from the input: the keys a mask byte selects.
fn fuzz_checkpoint(input: &mut Input<'_>, ts: u64) -> Vec<u8> {
    let mask = input.byte();
    let entries: Vec<(&[u8], Vec<u8>, u64)> = FUZZ_KEYS
        .iter()
        .enumerate()
        .filter(|(k, _)| mask & (1 << k) != 0)
        .map(|(_, &key)| {
            let value = vec![input.byte(); usize::from(input.byte() % 6)];
            (key, value, ts.min(u64::from(input.byte())))
        })
        .collect();
    let scratch = SimStorage::new();
    let dir = Path::new("/scratch");
    let written = checkpoint::write(&scratch, dir, ts, entries, 16).expect("in memory");
    scratch.read(&written.path).expect("just written")
}

/// Flips or cuts bytes of `bytes` as the input says.
fn fuzz_damage(input: &mut Input<'_>, bytes: &mut Vec<u8>) {
    for _ in 0..input.byte() % 4 {
        if bytes.is_empty() {
            return;
        }
        let at = usize::from(u16::from_le_bytes([input.byte(), input.byte()])) % bytes.len();
        match input.byte() {
            0 => bytes.truncate(at),
            x => bytes[at] ^= x,
        }
    }
}

/// Recovers a directory whose files the input describes (segments, checkpoints, a temporary
/// checkpoint, unknown files; each raw bytes, a valid file, or a valid file damaged), with
/// and without repair. Checks: a typed result, never a panic; entries sorted and unique,
/// no timestamp above `max_ts`, `next_segment` above every segment left; a recovered
/// directory recovers again to the same state with nothing left to cut; a repair fails only
/// on a damaged checkpoint.
pub fn recovery(data: &[u8]) {
    let mut input = Input(data);
    let storage = SimStorage::new();
    let dir = Path::new("/db");
    // Segments mostly come in order, so that whole logs are common, not only gaps.
    let mut next_number = 1;
    for _ in 0..input.byte() % 8 {
        let kind = input.byte();
        let (name, content) = match kind % 8 {
            0..=3 => {
                let number = if kind & 0x80 == 0 {
                    next_number += 1;
                    next_number - 1
                } else {
                    u64::from(input.byte() % 5) + 1
                };
                let content = match (kind >> 3) % 8 {
                    0 => {
                        let n = usize::from(input.byte()) * 2;
                        input.bytes(n).to_vec()
                    }
                    1..=5 => fuzz_segment(&mut input, number),
                    _ => {
                        let mut bytes = fuzz_segment(&mut input, number);
                        fuzz_damage(&mut input, &mut bytes);
                        bytes
                    }
                };
                (segment::file_name(number), content)
            }
            4 | 5 => {
                // Among the first segments' timestamps: some records are older, some newer.
                let ts = u64::from(input.byte() % 32) << 9;
                let content = match (kind >> 3) % 8 {
                    0 => {
                        let n = usize::from(input.byte()) * 2;
                        input.bytes(n).to_vec()
                    }
                    1..=5 => fuzz_checkpoint(&mut input, ts),
                    _ => {
                        let mut bytes = fuzz_checkpoint(&mut input, ts);
                        fuzz_damage(&mut input, &mut bytes);
                        bytes
                    }
                };
                (checkpoint::file_name(ts), content)
            }
            6 => {
                let n = usize::from(input.byte());
                (
                    format!("{}.tmp", checkpoint::file_name(1)),
                    input.bytes(n).to_vec(),
                )
            }
            _ => {
                let n = usize::from(input.byte());
                ("LOCK".to_owned(), input.bytes(n).to_vec())
            }
        };
        let path = dir.join(name);
        let _ = storage.remove(&path);
        let mut file = storage.create(&path).expect("in memory");
        file.append(&content).expect("in memory");
        file.sync().expect("in memory");
    }
    storage.sync_dir(dir).expect("in memory");

    for repair in [false, true] {
        let opts = recovery::RecoveryOptions {
            repair,
            read_only: false,
        };
        match recovery::recover(&storage, dir, opts) {
            Ok(first) => {
                check_recovered(&storage, dir, &first);
                let again = recovery::recover(&storage, dir, recovery::RecoveryOptions::default())
                    .expect("a recovered directory recovers again");
                assert_eq!(again.entries, first.entries);
                assert_eq!(again.max_ts, first.max_ts);
                assert_eq!(again.checkpoint_ts, first.checkpoint_ts);
                assert_eq!(again.next_segment, first.next_segment);
                assert_eq!(again.torn_tail, None, "a torn tail left after recovery");
                assert_eq!(again.repaired, None, "damage left after recovery");
            }
            Err(crate::Error::Corruption { file, .. }) => {
                let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                assert!(
                    !repair || checkpoint::parse_file_name(name).is_some(),
                    "a repair refused {name}"
                );
            }
            Err(e) => panic!("recovery failed other than with corruption: {e:?}"),
        }
    }
}

fn check_recovered(storage: &SimStorage, dir: &Path, r: &recovery::Recovered) {
    assert!(
        r.entries.windows(2).all(|w| w[0].0 < w[1].0),
        "entries sorted and unique"
    );
    assert!(r.entries.iter().all(|(_, _, ts)| *ts <= r.max_ts));
    assert!(r.checkpoint_ts.is_none_or(|ts| ts <= r.max_ts));
    assert!(r.next_segment >= 1);
    for name in storage.list(dir).expect("in memory") {
        assert!(!name.ends_with(".ckpt.tmp"), "{name} left behind");
        if let Some(number) = segment::parse_file_name(&name) {
            assert!(number < r.next_segment, "{name} at or above next_segment");
        }
    }
}
