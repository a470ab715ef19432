//! Entry points for the fuzz targets in `fuzz/` (compiled under `--cfg fuzzing`), also run
//! by the proptest versions of the targets in `cargo test`.

use std::path::Path;

use super::{checkpoint, frame, record, segment};

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
