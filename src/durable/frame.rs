//! The log's frame: one length-prefixed, checksummed payload, carrying how far its log
//! segment was known synced when the frame was written.
//!
//! Layout (little-endian, no padding; `docs/durability.md` has the table):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | payload length `n` (u32) |
//! | 4 | 8 | `synced_to` (u64): bytes of the segment known durable before this frame was written |
//! | 12 | 4 | header check (u32): the low half of xxh3-64, seeded with `salt`, of bytes 0..12 |
//! | 16 | 8 | checksum (u64): xxh3-64, seeded with `n XOR salt`, over bytes 0..16 then the payload |
//! | 24 | n | payload |
//!
//! Seeding the checksum with the length means a damaged length field cannot make another
//! stretch of bytes pass as a frame: the length chooses both where the frame ends and which
//! hash function checks it. The segment's random salt (in its header) goes into the seeds
//! too, so that a frame's bytes copied elsewhere (a value that holds a log image, a stale
//! file) do not check out as a frame of this segment. A stretch of zeros (a lost page reads
//! back as zeros) does not pass either.
//!
//! The header check lets a reader reject a damaged or random header for the price of hashing
//! 12 bytes, before it trusts the length: a reader that scans past damage for later frames
//! (see [`segment`](super::segment)) tries every offset, and without it each offset whose
//! bytes happen to look like a plausible header would cost a hash of up to `n` bytes. It also
//! tells a frame cut short by a crash (its header checks out, its payload is missing) from a
//! damaged header.

use xxhash_rust::xxh3::{xxh3_64_with_seed, Xxh3};

/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 24;

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
    /// The buffer ends inside the frame's header (`have` bytes there).
    HeaderCut { have: usize },
    /// The header does not check out: damaged, or not a frame.
    HeaderChecksum,
    /// The header checks out but the buffer ends before the payload does (`need` bytes in
    /// all, `have` there): a write cut short.
    PayloadCut { have: usize, need: u64 },
    /// The checksum does not match the header and payload.
    Checksum,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::HeaderCut { have } => {
                write!(f, "frame header cut short: {have} of {HEADER_LEN} bytes")
            }
            FrameError::HeaderChecksum => f.write_str("frame header check mismatch"),
            FrameError::PayloadCut { have, need } => {
                write!(f, "frame cut short: {have} of {need} bytes")
            }
            FrameError::Checksum => f.write_str("frame checksum mismatch"),
        }
    }
}

/// The header check of a frame's first 12 bytes.
fn header_check(salt: u64, fields: &[u8]) -> u32 {
    xxh3_64_with_seed(fields, salt) as u32
}

fn checksum(salt: u64, header: &[u8], payload: &[u8]) -> u64 {
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let mut hasher = Xxh3::with_seed(u64::from(len) ^ salt);
    hasher.update(header);
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
    let mut header = [0u8; 16];
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[4..12].copy_from_slice(&synced_to.to_le_bytes());
    let check = header_check(salt, &header[0..12]);
    header[12..16].copy_from_slice(&check.to_le_bytes());
    out.reserve(encoded_len(payload.len()));
    out.extend_from_slice(&header);
    out.extend_from_slice(&checksum(salt, &header, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The header fields of the frame `buf` starts with, `(payload length, synced_to)`,
/// unchecked, or `None` if `buf` is shorter than a header. For scanning past damage: a
/// scanner filters on these before it pays for [`decode`]'s checks.
pub(crate) fn peek(buf: &[u8]) -> Option<(u32, u64)> {
    let header = buf.get(..HEADER_LEN)?;
    Some((
        u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")),
        u64::from_le_bytes(header[4..12].try_into().expect("8 bytes")),
    ))
}

/// Decodes the frame `buf` starts with, for a segment with `salt`: the frame and its encoded
/// length. Total: any bytes give a frame or an error, and nothing past `buf` is read. The
/// header is checked (12 bytes hashed) before the length is trusted, so bytes that are not a
/// frame cost no more than that.
pub(crate) fn decode(salt: u64, buf: &[u8]) -> Result<(Frame<'_>, usize), FrameError> {
    let Some((len, synced_to)) = peek(buf) else {
        return Err(FrameError::HeaderCut { have: buf.len() });
    };
    let stored_check = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes"));
    if header_check(salt, &buf[..12]) != stored_check {
        return Err(FrameError::HeaderChecksum);
    }
    let need = HEADER_LEN as u64 + u64::from(len);
    let Some(payload) = usize::try_from(need)
        .ok()
        .and_then(|end| buf.get(HEADER_LEN..end))
    else {
        return Err(FrameError::PayloadCut {
            have: buf.len(),
            need,
        });
    };
    let stored = u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes"));
    if checksum(salt, &buf[..16], payload) != stored {
        return Err(FrameError::Checksum);
    }
    Ok((Frame { synced_to, payload }, HEADER_LEN + payload.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use xxhash_rust::xxh3::xxh3_64_with_seed;

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
        let check = xxh3_64_with_seed(&bytes[0..12], SALT) as u32;
        assert_eq!(bytes[12..16], check.to_le_bytes());
        let expected = xxh3_64_with_seed(
            &[&bytes[0..16], b"xyz"].concat(),
            3 ^ SALT, // seeded with the payload length and the segment's salt
        );
        assert_eq!(bytes[16..24], expected.to_le_bytes());
        assert_eq!(&bytes[24..], b"xyz");
    }

    #[test]
    fn zeros_are_not_a_frame() {
        for n in [HEADER_LEN, 64, 4096] {
            assert!(decode(SALT, &vec![0; n]).is_err());
        }
    }

    #[test]
    fn a_frame_does_not_check_out_under_another_salt() {
        let bytes = encoded(7, b"payload");
        assert_eq!(decode(SALT ^ 1, &bytes), Err(FrameError::HeaderChecksum));
    }

    #[test]
    fn every_cut_of_a_frame_is_truncated() {
        let bytes = encoded(7, b"payload");
        for cut in 0..bytes.len() {
            let expected = if cut < HEADER_LEN {
                FrameError::HeaderCut { have: cut }
            } else {
                FrameError::PayloadCut {
                    have: cut,
                    need: bytes.len() as u64,
                }
            };
            assert_eq!(decode(SALT, &bytes[..cut]), Err(expected), "cut at {cut}");
        }
    }

    #[test]
    fn a_damaged_length_fails_the_header_check_not_as_a_cut() {
        let mut bytes = encoded(7, b"payload");
        bytes[0] ^= 0x40;
        assert_eq!(decode(SALT, &bytes), Err(FrameError::HeaderChecksum));
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
