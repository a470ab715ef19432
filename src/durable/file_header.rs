//! The 48-byte header every snapkv file starts with (log segments and checkpoints): a magic
//! naming the kind of file, a format version, three little-endian `u64` fields whose meaning
//! the file kind defines, and an xxh3-64 of the 40 bytes before it.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic |
//! | 8 | 2 | format version (u16) |
//! | 10 | 6 | reserved, zero |
//! | 16 | 24 | three u64 fields |
//! | 40 | 8 | xxh3-64 (seed 0) of bytes 0..40 |

use xxhash_rust::xxh3::xxh3_64;

/// Length of the header in bytes.
pub(crate) const LEN: usize = 48;

/// A header's layout for one kind of file.
pub(crate) struct Kind {
    pub(crate) magic: [u8; 8],
    pub(crate) version: u16,
}

/// What is wrong with a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    CutShort,
    BadMagic,
    UnsupportedVersion,
    ChecksumMismatch,
    ReservedBytesSet,
}

impl Fault {
    /// A description for an error that also names the file.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Fault::CutShort => "header cut short",
            Fault::BadMagic => "bad magic: not this kind of snapkv file",
            Fault::UnsupportedVersion => "unsupported format version",
            Fault::ChecksumMismatch => "header checksum mismatch",
            Fault::ReservedBytesSet => "header has reserved bytes set",
        }
    }
}

impl Kind {
    /// The header holding `fields`.
    pub(crate) fn encode(&self, fields: [u64; 3]) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0..8].copy_from_slice(&self.magic);
        out[8..10].copy_from_slice(&self.version.to_le_bytes());
        for (i, field) in fields.iter().enumerate() {
            out[16 + 8 * i..24 + 8 * i].copy_from_slice(&field.to_le_bytes());
        }
        let checksum = xxh3_64(&out[0..40]);
        out[40..48].copy_from_slice(&checksum.to_le_bytes());
        out
    }

    /// The fields of the header `bytes` starts with. Checked in this order: length, magic,
    /// version (a later version may lay out and checksum its header differently, so nothing
    /// else is read of a version this code does not know), checksum, reserved bytes.
    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<[u64; 3], Fault> {
        let h = bytes.get(..LEN).ok_or(Fault::CutShort)?;
        let u64_at = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        if h[0..8] != self.magic {
            return Err(Fault::BadMagic);
        }
        if u16::from_le_bytes([h[8], h[9]]) != self.version {
            return Err(Fault::UnsupportedVersion);
        }
        if xxh3_64(&h[0..40]) != u64_at(40) {
            return Err(Fault::ChecksumMismatch);
        }
        if h[10..16] != [0; 6] {
            return Err(Fault::ReservedBytesSet);
        }
        Ok([u64_at(16), u64_at(24), u64_at(32)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: Kind = Kind {
        magic: *b"SNAPKVXX",
        version: 1,
    };

    #[test]
    fn round_trips_and_names_each_fault() {
        let bytes = KIND.encode([1, u64::MAX, 3]);
        assert_eq!(KIND.decode(&bytes), Ok([1, u64::MAX, 3]));
        assert_eq!(KIND.decode(&bytes[..LEN - 1]), Err(Fault::CutShort));
        let mut b = bytes;
        b[0] ^= 1;
        assert_eq!(KIND.decode(&b), Err(Fault::BadMagic));
        let mut b = bytes;
        b[8] = 2;
        assert_eq!(KIND.decode(&b), Err(Fault::UnsupportedVersion));
        for at in (10..16).chain(16..48) {
            let mut b = bytes;
            b[at] ^= 0x40;
            assert_eq!(KIND.decode(&b), Err(Fault::ChecksumMismatch), "byte {at}");
        }
        // Reserved bytes set under a matching checksum.
        let mut b = bytes;
        b[12] = 7;
        let checksum = xxh3_64(&b[0..40]);
        b[40..48].copy_from_slice(&checksum.to_le_bytes());
        assert_eq!(KIND.decode(&b), Err(Fault::ReservedBytesSet));
    }
}
