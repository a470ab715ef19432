//! Entry points for the fuzz targets in `fuzz/` (compiled under `--cfg fuzzing`), also run
//! by the proptest versions of the targets in `cargo test`.

use std::path::Path;

use super::{record, segment};

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
