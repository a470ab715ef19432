//! A commit record: the payload of one log frame, a commit's timestamp and its writes.
//!
//! Layout (little-endian, no padding; `docs/durability.md` has the tables):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | commit timestamp (u64) |
//! | 8 | 4 | number of writes `c` (u32) |
//! | 12 | … | `c` writes, in key order |
//!
//! A write: a kind byte (1 = put, 2 = delete), the key length (u32) and the key, then for a
//! put the value length (u32) and the value. The record ends exactly after its last write.
//!
//! Decoding is total: any bytes give a record or a typed [`RecordError`], lengths are checked
//! against the bytes that remain before anything is allocated, and nothing past the buffer
//! is read.

use bytes::Bytes;

const PUT: u8 = 1;
const DELETE: u8 = 2;
/// Bytes of the fixed part: timestamp and write count.
const FIXED_LEN: usize = 12;
/// The smallest encoded write (a delete of a one-byte key), which bounds how many writes
/// the remaining bytes can hold.
const MIN_WRITE_LEN: usize = 1 + 4 + 1;

/// One decoded write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordWrite {
    pub(crate) key: Bytes,
    /// `None` for a delete.
    pub(crate) value: Option<Bytes>,
}

/// A decoded commit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommitRecord {
    pub(crate) ts: u64,
    pub(crate) writes: Vec<RecordWrite>,
}

/// Why a payload is not a commit record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// The payload ends inside the named field.
    Truncated(&'static str),
    /// A write's kind byte is neither put nor delete.
    UnknownKind(u8),
    /// A write has an empty key (the engine never writes one).
    EmptyKey,
    /// The write count is more than the remaining bytes can hold.
    CountTooLarge(u32),
    /// Bytes follow the last write.
    TrailingBytes(usize),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Truncated(field) => write!(f, "commit record cut short in its {field}"),
            RecordError::UnknownKind(k) => write!(f, "commit record has unknown write kind {k}"),
            RecordError::EmptyKey => f.write_str("commit record has an empty key"),
            RecordError::CountTooLarge(c) => {
                write!(
                    f,
                    "commit record claims {c} writes, more than its bytes hold"
                )
            }
            RecordError::TrailingBytes(n) => {
                write!(f, "commit record has {n} bytes after its last write")
            }
        }
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // The durable database's limits keep keys, values and write sets far below 4 GiB.
    let len = u32::try_from(len).expect("key or value over 4 GiB in a commit record");
    out.extend_from_slice(&len.to_le_bytes());
}

/// Appends the record of a commit at `ts` writing `writes` (key, `Some(value)` for a put,
/// `None` for a delete) to `out`.
///
/// # Panics
/// If there are more than `u32::MAX` writes, or a key or value is over 4 GiB.
pub(crate) fn encode<'a>(
    ts: u64,
    writes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // the count, filled in below
    let mut count: u32 = 0;
    for (key, value) in writes {
        count = count.checked_add(1).expect("over u32::MAX writes");
        out.push(if value.is_some() { PUT } else { DELETE });
        put_len(out, key.len());
        out.extend_from_slice(key);
        if let Some(value) = value {
            put_len(out, value.len());
            out.extend_from_slice(value);
        }
    }
    out[start + 8..start + 12].copy_from_slice(&count.to_le_bytes());
}

/// Reads fields off the front of a payload, never past its end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        if n > self.0.len() {
            return Err(RecordError::Truncated(field));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(
            self.take(4, field)?.try_into().expect("4 bytes"),
        ))
    }

    /// A length-prefixed byte string.
    fn bytes(
        &mut self,
        len_field: &'static str,
        field: &'static str,
    ) -> Result<&'a [u8], RecordError> {
        let len = self.u32(len_field)?;
        let len = usize::try_from(len).map_err(|_| RecordError::Truncated(field))?;
        // `take` checks the length against what remains: nothing is allocated for a length
        // the payload cannot hold.
        self.take(len, field)
    }
}

/// Decodes a commit record, copying its keys and values. Total: see the module
/// documentation.
pub(crate) fn decode(payload: &[u8]) -> Result<CommitRecord, RecordError> {
    decode_with(payload, Bytes::copy_from_slice)
}

/// Decodes the commit record `payload`, a part of `buffer`, into keys and values that are
/// slices of `buffer`: nothing is copied or allocated per key or value (recovery, which then
/// copies each live value once, into the store). Each keeps the whole buffer alive. Total,
/// as [`decode`].
///
/// # Panics
/// If `payload` is not within `buffer`'s bytes.
pub(crate) fn decode_shared(buffer: &Bytes, payload: &[u8]) -> Result<CommitRecord, RecordError> {
    decode_with(payload, |part| buffer.slice_ref(part))
}

/// Decodes `payload`, making each key and value (a subslice of `payload`) a `Bytes` with
/// `to_bytes`.
fn decode_with(
    payload: &[u8],
    mut to_bytes: impl FnMut(&[u8]) -> Bytes,
) -> Result<CommitRecord, RecordError> {
    let mut cur = Cursor(payload);
    debug_assert_eq!(FIXED_LEN, 8 + 4);
    let ts = u64::from_le_bytes(cur.take(8, "timestamp")?.try_into().expect("8 bytes"));
    let count = cur.u32("write count")?;
    if (count as usize).saturating_mul(MIN_WRITE_LEN) > cur.0.len() {
        return Err(RecordError::CountTooLarge(count));
    }
    let mut writes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let kind = cur.take(1, "write kind")?[0];
        let key = cur.bytes("key length", "key")?;
        if key.is_empty() {
            return Err(RecordError::EmptyKey);
        }
        let key = to_bytes(key);
        let value = match kind {
            PUT => Some(to_bytes(cur.bytes("value length", "value")?)),
            DELETE => None,
            other => return Err(RecordError::UnknownKind(other)),
        };
        writes.push(RecordWrite { key, value });
    }
    if !cur.0.is_empty() {
        return Err(RecordError::TrailingBytes(cur.0.len()));
    }
    Ok(CommitRecord { ts, writes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(ts: u64, writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(
            ts,
            writes.iter().map(|(k, v)| (&k[..], v.as_deref())),
            &mut out,
        );
        out
    }

    #[test]
    fn layout_is_fixed_little_endian() {
        let bytes = encoded(
            0x0102_0304_0506_0708,
            &[(b"k".to_vec(), Some(b"vv".to_vec())), (b"d".to_vec(), None)],
        );
        #[rustfmt::skip]
        let expected: &[u8] = &[
            8, 7, 6, 5, 4, 3, 2, 1, // ts
            2, 0, 0, 0,             // count
            PUT, 1, 0, 0, 0, b'k', 2, 0, 0, 0, b'v', b'v',
            DELETE, 1, 0, 0, 0, b'd',
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn typed_errors() {
        let good = encoded(5, &[(b"key".to_vec(), Some(b"value".to_vec()))]);
        for cut in 0..good.len() {
            assert!(
                matches!(
                    decode(&good[..cut]),
                    Err(RecordError::Truncated(_) | RecordError::CountTooLarge(_))
                ),
                "cut at {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(RecordError::TrailingBytes(1)));
        let mut kind = good.clone();
        kind[12] = 9;
        assert_eq!(decode(&kind), Err(RecordError::UnknownKind(9)));
        let empty = encoded(5, &[(Vec::new(), Some(b"v".to_vec()))]);
        assert_eq!(decode(&empty), Err(RecordError::EmptyKey));
        // A count the bytes cannot hold is refused before allocating for it.
        let mut count = encoded(5, &[]);
        count[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&count), Err(RecordError::CountTooLarge(u32::MAX)));
        // A huge key length is refused by the bounds check, not by an allocation.
        let mut len = good.clone();
        len[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&len), Err(RecordError::Truncated("key")));
    }

    fn writes() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 1..20),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            ),
            0..10,
        )
    }

    #[test]
    fn shared_decoding_slices_the_buffer() {
        let mut buffer = b"before".to_vec();
        let start = buffer.len();
        let record = encoded(
            9,
            &[
                (b"k".to_vec(), Some(b"value".to_vec())),
                (b"d".to_vec(), None),
            ],
        );
        buffer.extend_from_slice(&record);
        buffer.extend_from_slice(b"after");
        let buffer = Bytes::from(buffer);
        let payload = &buffer[start..start + record.len()];
        let shared = decode_shared(&buffer, payload).unwrap();
        assert_eq!(shared, decode(payload).unwrap());
        // Every key and value points into the buffer: nothing was copied.
        let within = |b: &Bytes| buffer.as_ptr_range().contains(&b.as_ptr());
        for w in &shared.writes {
            assert!(within(&w.key), "key {:?} was copied", w.key);
            assert!(w.value.as_ref().is_none_or(within), "value was copied");
        }
        assert!(shared.writes[0].value.is_some());
    }

    proptest! {
        #[test]
        fn round_trip(ts: u64, writes in writes()) {
            let bytes = encoded(ts, &writes);
            // Shared decoding reads exactly what copying decoding does.
            let shared = Bytes::from(bytes.clone());
            prop_assert_eq!(decode_shared(&shared, &shared).unwrap(), decode(&bytes).unwrap());
            let record = decode(&bytes).unwrap();
            prop_assert_eq!(record.ts, ts);
            let got: Vec<_> = record
                .writes
                .iter()
                .map(|w| (w.key.to_vec(), w.value.as_ref().map(|v| v.to_vec())))
                .collect();
            prop_assert_eq!(got, writes);
        }

        #[test]
        // The proptest version of the `fuzz/` target: whatever decodes re-encodes to exactly
        // the same bytes (nothing invented, nothing ignored).
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            crate::durable::fuzz::record_decoder(&bytes);
        }

        #[test]
        fn decoding_arbitrary_writes_never_panics(
            ts: u64,
            writes in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..12)), 0..6),
        ) {
            // Near-valid input: a real header and writes with arbitrary kinds and lengths.
            let mut bytes = ts.to_le_bytes().to_vec();
            bytes.extend_from_slice(&(writes.len() as u32).to_le_bytes());
            for (kind, body) in &writes {
                bytes.push(kind % 4);
                bytes.extend_from_slice(body);
            }
            crate::durable::fuzz::record_decoder(&bytes);
        }

        #[test]
        fn damaged_records_never_panic(writes in writes(), at: usize, byte: u8) {
            let mut bytes = encoded(1, &writes);
            let at = at % bytes.len();
            bytes[at] = byte;
            if let Ok(record) = decode(&bytes) {
                let writes: Vec<_> = record
                    .writes
                    .iter()
                    .map(|w| (w.key.to_vec(), w.value.as_ref().map(|v| v.to_vec())))
                    .collect();
                prop_assert_eq!(encoded(record.ts, &writes), bytes);
            }
        }
    }
}
