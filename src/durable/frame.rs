//! The log's frame: one length-prefixed, checksummed payload, carrying how far its log
//! segment was known synced when the frame was written.
//!
//! Layout (little-endian, no padding; `docs/durability.md` has the table):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | payload length `n` (u32) |
//! | 4 | 8 | `synced_to` (u64): bytes of the segment known durable before this frame was written |
//! | 12 | 8 | checksum (u64): xxh3-64, seeded with `n XOR salt`, over bytes 0..12 then the payload |
//! | 20 | n | payload |
//!
//! Seeding the checksum with the length means a damaged length field cannot make another
//! stretch of bytes pass as a frame: the length chooses both where the frame ends and which
//! hash function checks it. The segment's random salt (in its header) goes into the seed too,
//! so that a frame's bytes copied elsewhere (a value that holds a log image, a stale file)
//! do not check out as a frame of this segment. A stretch of zeros (a lost page reads back
//! as zeros) does not pass either.

use xxhash_rust::xxh3::Xxh3;

/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 20;

/// A decoded frame, borrowing its payload from the buffer it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    /// Bytes of the segment (from its start, header included) that were durable when this
    /// frame was written: never more than the frame's own offset.
    pub(crate) synced_to: u64,
    pub(crate) payload: &'a [u8],
}

/// Why bytes do not decode as a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The buffer ends before the frame does (`need` bytes, `have` there). Either a write cut
    /// short, or a damaged length.
    Truncated { have: usize, need: u64 },
    /// The checksum does not match the header and payload.
    Checksum,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated { have, need } => {
                write!(f, "frame cut short: {have} of {need} bytes")
            }
            FrameError::Checksum => f.write_str("frame checksum mismatch"),
        }
    }
}

fn checksum(salt: u64, fields: &[u8], payload: &[u8]) -> u64 {
    let len = u32::from_le_bytes(fields[0..4].try_into().expect("4 bytes"));
    let mut hasher = Xxh3::with_seed(u64::from(len) ^ salt);
    hasher.update(fields);
    hasher.update(payload);
    hasher.digest()
}

/// The encoded length of a frame holding `payload_len` bytes.
pub(crate) fn encoded_len(payload_len: usize) -> usize {
    HEADER_LEN + payload_len
}

/// Appends the frame of `payload` to `out`, for a segment with `salt`.
///
/// # Panics
/// If `payload` is longer than `u32::MAX` bytes: callers bound their payloads well below
/// (the write-set limit), so a longer one is a bug.
pub(crate) fn encode(salt: u64, synced_to: u64, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("frame payload over 4 GiB");
    let mut fields = [0u8; 12];
    fields[0..4].copy_from_slice(&len.to_le_bytes());
    fields[4..12].copy_from_slice(&synced_to.to_le_bytes());
    out.reserve(encoded_len(payload.len()));
    out.extend_from_slice(&fields);
    out.extend_from_slice(&checksum(salt, &fields, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The header fields of the frame `buf` starts with, unchecked: `(payload length,
/// synced_to)`, or `None` if `buf` is shorter than a header. For scanning past damage
/// cheaply before paying for a checksum.
pub(crate) fn peek(buf: &[u8]) -> Option<(u32, u64)> {
    let header = buf.get(..HEADER_LEN)?;
    Some((
        u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")),
        u64::from_le_bytes(header[4..12].try_into().expect("8 bytes")),
    ))
}

/// Decodes the frame `buf` starts with, for a segment with `salt`: the frame and its encoded
/// length. Total: any bytes give a frame or an error, and nothing past `buf` is read.
pub(crate) fn decode(salt: u64, buf: &[u8]) -> Result<(Frame<'_>, usize), FrameError> {
    let Some((len, synced_to)) = peek(buf) else {
        return Err(FrameError::Truncated {
            have: buf.len(),
            need: HEADER_LEN as u64,
        });
    };
    let need = HEADER_LEN as u64 + u64::from(len);
    let Some(payload) = usize::try_from(need)
        .ok()
        .and_then(|end| buf.get(HEADER_LEN..end))
    else {
        return Err(FrameError::Truncated {
            have: buf.len(),
            need,
        });
    };
    let stored = u64::from_le_bytes(buf[12..20].try_into().expect("8 bytes"));
    if checksum(salt, &buf[..12], payload) != stored {
        return Err(FrameError::Checksum);
    }
    Ok((Frame { synced_to, payload }, HEADER_LEN + payload.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SALT: u64 = 0x5eed_5a17;

    fn encoded(synced_to: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(SALT, synced_to, payload, &mut out);
        out
    }

    #[test]
    fn layout_is_fixed_little_endian() {
        let bytes = encoded(0x0102_0304_0506_0708, b"xyz");
        assert_eq!(bytes.len(), HEADER_LEN + 3);
        assert_eq!(bytes[0..4], [3, 0, 0, 0]);
        assert_eq!(bytes[4..12], [8, 7, 6, 5, 4, 3, 2, 1]);
        let expected = xxhash_rust::xxh3::xxh3_64_with_seed(
            &[&bytes[0..12], b"xyz"].concat(),
            3 ^ SALT, // seeded with the payload length and the segment's salt
        );
        assert_eq!(bytes[12..20], expected.to_le_bytes());
        assert_eq!(&bytes[20..], b"xyz");
    }

    #[test]
    fn zeros_are_not_a_frame() {
        for n in [HEADER_LEN, 64, 4096] {
            assert_eq!(decode(SALT, &vec![0; n]), Err(FrameError::Checksum));
        }
    }

    #[test]
    fn a_frame_does_not_check_out_under_another_salt() {
        let bytes = encoded(7, b"payload");
        assert_eq!(decode(SALT ^ 1, &bytes), Err(FrameError::Checksum));
    }

    #[test]
    fn every_cut_of_a_frame_is_truncated() {
        let bytes = encoded(7, b"payload");
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    decode(SALT, &bytes[..cut]),
                    Err(FrameError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let bytes = encoded(1234, b"some payload bytes");
        for i in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(decode(SALT, &damaged).is_err(), "bit {i}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(
            synced_to: u64,
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            trailing in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut bytes = encoded(synced_to, &payload);
            let len = bytes.len();
            bytes.extend_from_slice(&trailing);
            let (frame, used) = decode(SALT, &bytes).unwrap();
            prop_assert_eq!(used, len);
            prop_assert_eq!(frame.synced_to, synced_to);
            prop_assert_eq!(frame.payload, &payload[..]);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok((frame, used)) = decode(SALT, &bytes) {
                prop_assert!(used <= bytes.len());
                prop_assert_eq!(used, HEADER_LEN + frame.payload.len());
            }
        }
    }
}
