//! A checkpoint file: the whole store's newest values at one timestamp, sorted by key, in
//! frames, closed by a trailer that counts and checksums the entries.
//!
//! Layout (little-endian; `docs/durability.md` has the tables):
//!
//! - a 48-byte header: magic `SNAPKVCP`, format version (u16), 6 reserved zero bytes, the
//!   checkpoint's timestamp (u64), the salt that seeds the frame checksums (u64), 8 reserved
//!   zero bytes, and an xxh3-64 checksum of bytes 0..40;
//! - entry frames ([`frame`](super::frame) with `synced_to` 0): a kind byte `1`, then entries,
//!   each the timestamp of the version it holds (u64, at most the checkpoint's), a key length
//!   (u32), the key, a value length (u32) and the value; keys strictly increasing across the
//!   whole file;
//! - one trailer frame: a kind byte `2`, the entry count (u64) and an xxh3-64 (seed 0) of the
//!   entry frames' payloads in order;
//! - nothing after the trailer.
//!
//! A checkpoint is installed atomically (written to a temporary name, synced, renamed, the
//! directory synced) and is never appended to, so unlike a log segment it has no torn tail:
//! any file under a checkpoint's name that does not verify completely is corruption.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

use super::file_header;
use super::frame;
use super::storage::{Storage, StorageFile};
use crate::error::{Error, Result};

/// The checkpoint file magic.
pub(crate) const MAGIC: [u8; 8] = *b"SNAPKVCP";
/// The format version this code writes and reads.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// Bytes of the header.
pub(crate) const HEADER_LEN: usize = file_header::LEN;

/// The checkpoint's file header (see `file_header`): fields timestamp, salt, reserved (zero).
const KIND: file_header::Kind = file_header::Kind {
    magic: MAGIC,
    version: FORMAT_VERSION,
};
/// An entry frame's kind byte.
const ENTRIES: u8 = 1;
/// The trailer frame's kind byte.
const TRAILER: u8 = 2;
/// Bytes of the trailer frame's payload: kind, count, checksum.
const TRAILER_LEN: usize = 1 + 8 + 8;
/// Entry frames are cut once their payload reaches this many bytes.
pub(crate) const FRAME_BYTES: usize = 64 * 1024;

/// The file name of the checkpoint at `ts` (sorted names are timestamp order).
pub(crate) fn file_name(ts: u64) -> String {
    format!("{ts:020}.ckpt")
}

/// The name a checkpoint is written under before it is installed.
fn temp_name(ts: u64) -> String {
    format!("{ts:020}.ckpt.tmp")
}

/// The timestamp in a checkpoint's file name, `None` if it is not one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".ckpt")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode_header(ts: u64, salt: u64) -> [u8; HEADER_LEN] {
    KIND.encode([ts, salt, 0])
}

/// The header's `(ts, salt)`, or what is wrong with it.
fn decode_header(bytes: &[u8]) -> Result<(u64, u64), &'static str> {
    match KIND.decode(bytes).map_err(file_header::Fault::describe)? {
        [ts, salt, 0] => Ok((ts, salt)),
        _ => Err("header has reserved bytes set"),
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("key or value over 4 GiB in a checkpoint");
    out.extend_from_slice(&len.to_le_bytes());
}

/// Appends a checkpoint's header and frames to its temporary file, counting bytes.
struct FrameWriter<F> {
    file: F,
    salt: u64,
    bytes: u64,
    /// Reused encoding buffer.
    framed: Vec<u8>,
}

impl<F: StorageFile> FrameWriter<F> {
    fn append_raw(&mut self, data: &[u8]) -> Result<()> {
        self.file.append(data).map_err(Error::io)?;
        self.bytes += data.len() as u64;
        Ok(())
    }

    fn append_frame(&mut self, payload: &[u8]) -> Result<()> {
        self.framed.clear();
        // Checkpoints are synced whole before they are installed: no synced mark.
        frame::encode(self.salt, 0, payload, &mut self.framed);
        self.file.append(&self.framed).map_err(Error::io)?;
        self.bytes += self.framed.len() as u64;
        Ok(())
    }
}

/// What [`write`] installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) path: PathBuf,
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

/// A checkpoint being written: entries are pushed in key order (encoded into the pending
/// frame's payload, in memory), the caller writes the frame out whenever
/// [`frame_full`](Self::frame_full) says so, and [`finish`](Self::finish) writes the trailer
/// and installs the file. Push and write are apart so that a caller reading entries under
/// an epoch pin can leave the pin before any I/O. Memory: one frame's payload and the
/// previous key, whatever the number of entries.
pub(crate) struct Writer<'s, S: Storage> {
    storage: &'s S,
    dir: PathBuf,
    ts: u64,
    out: FrameWriter<S::File>,
    frame_bytes: usize,
    /// Hashes the entry frames' payloads in order, for the trailer.
    digest: Xxh3,
    count: u64,
    /// The pending entry frame's payload: the kind byte, then entries.
    payload: Vec<u8>,
    /// The last pushed key (valid when `count > 0`), reused to check the order.
    previous: Vec<u8>,
}

impl<'s, S: Storage> Writer<'s, S> {
    /// Starts the checkpoint at `ts` in `dir` under its temporary name (replacing one an
    /// earlier failed attempt left), with entry frames cut at `frame_bytes` of payload.
    pub(crate) fn create(storage: &'s S, dir: &Path, ts: u64, frame_bytes: usize) -> Result<Self> {
        let temp = dir.join(temp_name(ts));
        // A temporary file left by an earlier failed attempt.
        if storage
            .list(dir)
            .map_err(Error::io)?
            .contains(&temp_name(ts))
        {
            storage.remove(&temp).map_err(Error::io)?;
        }
        let salt = fastrand::u64(..);
        let mut out = FrameWriter {
            file: storage.create(&temp).map_err(Error::io)?,
            salt,
            bytes: 0,
            framed: Vec::new(),
        };
        out.append_raw(&encode_header(ts, salt))?;
        Ok(Self {
            storage,
            dir: dir.to_path_buf(),
            ts,
            out,
            frame_bytes,
            digest: Xxh3::with_seed(0),
            count: 0,
            payload: vec![ENTRIES],
            previous: Vec::new(),
        })
    }

    /// Adds the entry `key` = `value`, written by the commit at `version_ts`, to the pending
    /// frame (no I/O).
    ///
    /// # Panics
    /// If `key` is empty or not greater than the previous key, if `version_ts` is above the
    /// checkpoint's timestamp (the caller scans a snapshot at that timestamp, which yields
    /// neither), or if a key or value is over 4 GiB.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8], version_ts: u64) {
        assert!(!key.is_empty(), "checkpoint entry with an empty key");
        assert!(
            self.count == 0 || self.previous[..] < *key,
            "checkpoint entries must be strictly increasing"
        );
        assert!(
            version_ts <= self.ts,
            "checkpoint entry at ts {version_ts} in a checkpoint at {}",
            self.ts
        );
        self.previous.clear();
        self.previous.extend_from_slice(key);
        self.payload.extend_from_slice(&version_ts.to_le_bytes());
        put_len(&mut self.payload, key.len());
        self.payload.extend_from_slice(key);
        put_len(&mut self.payload, value.len());
        self.payload.extend_from_slice(value);
        self.count += 1;
    }

    /// The last key pushed, `None` before the first.
    pub(crate) fn last_key(&self) -> Option<&[u8]> {
        (self.count > 0).then_some(&self.previous[..])
    }

    /// Whether the pending frame holds an entry and reached its size: time for
    /// [`write_frame`](Self::write_frame).
    pub(crate) fn frame_full(&self) -> bool {
        self.payload.len() > 1 && self.payload.len() >= self.frame_bytes
    }

    /// Writes the pending frame, if it holds an entry.
    pub(crate) fn write_frame(&mut self) -> Result<()> {
        if self.payload.len() > 1 {
            self.digest.update(&self.payload);
            self.out.append_frame(&self.payload)?;
            self.payload.truncate(1);
        }
        Ok(())
    }

    /// Writes the pending frame and the trailer, and installs the file: sync, rename,
    /// directory sync. When this returns `Ok` the checkpoint is durable under
    /// [`file_name`]`(ts)`; on an error no file of that name was made durable by this writer
    /// (its temporary file may be left behind, and is replaced by the next attempt).
    pub(crate) fn finish(mut self) -> Result<Written> {
        self.write_frame()?;
        let mut trailer = Vec::with_capacity(TRAILER_LEN);
        trailer.push(TRAILER);
        trailer.extend_from_slice(&self.count.to_le_bytes());
        trailer.extend_from_slice(&self.digest.digest().to_le_bytes());
        self.out.append_frame(&trailer)?;
        let (mut file, bytes) = (self.out.file, self.out.bytes);
        file.sync().map_err(Error::io)?;
        let path = self.dir.join(file_name(self.ts));
        self.storage
            .rename(&self.dir.join(temp_name(self.ts)), &path)
            .map_err(Error::io)?;
        self.storage.sync_dir(&self.dir).map_err(Error::io)?;
        Ok(Written {
            path,
            entries: self.count,
            bytes,
        })
    }
}

/// Writes the checkpoint at `ts` of `entries` (`(key, value, version ts)`, strictly
/// increasing non-empty keys, each version at most `ts`) into `dir` and installs it: see
/// [`Writer`], whose panics and outcomes this shares.
pub(crate) fn write<S, K, V>(
    storage: &S,
    dir: &Path,
    ts: u64,
    entries: impl IntoIterator<Item = (K, V, u64)>,
    frame_bytes: usize,
) -> Result<Written>
where
    S: Storage,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut out = Writer::create(storage, dir, ts, frame_bytes)?;
    for (key, value, version_ts) in entries {
        out.push(key.as_ref(), value.as_ref(), version_ts);
        if out.frame_full() {
            out.write_frame()?;
        }
    }
    out.finish()
}

/// One entry of a checkpoint: a key, its value, and the commit timestamp that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: Bytes,
    pub(crate) value: Bytes,
    pub(crate) ts: u64,
}

/// A verified checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) ts: u64,
    pub(crate) entries: Vec<Entry>,
}

fn corruption(file: &Path, offset: usize, what: impl Into<String>) -> Error {
    Error::Corruption {
        file: file.to_path_buf(),
        offset: offset as u64,
        what: what.into(),
    }
}

/// Reads a version timestamp off the front of an entry frame's payload, never past its end.
fn take_ts(rest: &mut &[u8]) -> Option<u64> {
    let ts = u64::from_le_bytes(rest.get(..8)?.try_into().expect("8 bytes"));
    *rest = &rest[8..];
    Some(ts)
}

/// Reads a length-prefixed field off the front of an entry frame's payload, never past its
/// end.
fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().expect("4 bytes")) as usize;
    let field = rest.get(4..4usize.checked_add(len)?)?;
    *rest = &rest[4 + len..];
    Some(field)
}

/// Verifies and reads the checkpoint `file` whose content is `bytes`: every frame's checksum,
/// key order, the trailer's count and checksum, and that nothing follows the trailer. Any
/// failure is [`Error::Corruption`] naming the file and the offset. Total: never panics, and
/// never returns an entry that was not written.
pub(crate) fn read(file: &Path, bytes: &[u8]) -> Result<Checkpoint> {
    let (ts, salt) = decode_header(bytes).map_err(|what| corruption(file, 0, what))?;
    let mut pos = HEADER_LEN;
    let mut entries: Vec<Entry> = Vec::new();
    let mut digest = Xxh3::with_seed(0);
    loop {
        let (f, used) =
            frame::decode(salt, &bytes[pos..]).map_err(|e| corruption(file, pos, e.to_string()))?;
        if f.synced_to != 0 {
            return Err(corruption(file, pos, "checkpoint frame with a synced mark"));
        }
        match f.payload.split_first() {
            Some((&ENTRIES, mut rest)) if !rest.is_empty() => {
                digest.update(f.payload);
                while !rest.is_empty() {
                    let (Some(version_ts), Some(key), Some(value)) =
                        (take_ts(&mut rest), take(&mut rest), take(&mut rest))
                    else {
                        return Err(corruption(file, pos, "checkpoint entry cut short"));
                    };
                    if key.is_empty() {
                        return Err(corruption(file, pos, "checkpoint entry with an empty key"));
                    }
                    if entries.last().is_some_and(|prev| prev.key[..] >= *key) {
                        return Err(corruption(file, pos, "checkpoint keys out of order"));
                    }
                    // A snapshot at `ts` sees no later version: such an entry was not written
                    // by this checkpoint's writer.
                    if version_ts > ts {
                        return Err(corruption(
                            file,
                            pos,
                            format!(
                                "checkpoint entry at ts {version_ts} above the checkpoint's {ts}"
                            ),
                        ));
                    }
                    entries.push(Entry {
                        key: Bytes::copy_from_slice(key),
                        value: Bytes::copy_from_slice(value),
                        ts: version_ts,
                    });
                }
            }
            Some((&TRAILER, rest)) if rest.len() == TRAILER_LEN - 1 => {
                let count = u64::from_le_bytes(rest[0..8].try_into().expect("8 bytes"));
                let checksum = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
                if count != entries.len() as u64 {
                    return Err(corruption(
                        file,
                        pos,
                        format!(
                            "trailer counts {count} entries, the file holds {}",
                            entries.len()
                        ),
                    ));
                }
                if checksum != digest.digest() {
                    return Err(corruption(file, pos, "trailer checksum mismatch"));
                }
                if pos + used != bytes.len() {
                    return Err(corruption(file, pos + used, "bytes after the trailer"));
                }
                return Ok(Checkpoint { ts, entries });
            }
            _ => return Err(corruption(file, pos, "unknown checkpoint frame")),
        }
        pos += used;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::storage::{Crash, SimStorage};
    use proptest::prelude::*;

    fn dir() -> PathBuf {
        PathBuf::from("/db")
    }

    /// `n` entries whose versions have timestamps 1 to 7 (the test checkpoints are at 7 or
    /// later).
    fn entries(n: usize) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
        (0..n)
            .map(|i| {
                let key = format!("key{i:05}").into_bytes();
                let value = vec![i as u8; i % 13];
                (key, value, 1 + (i as u64 * 5) % 7)
            })
            .collect()
    }

    fn as_bytes(e: &[(Vec<u8>, Vec<u8>, u64)]) -> Vec<Entry> {
        e.iter()
            .map(|(k, v, ts)| Entry {
                key: Bytes::from(k.clone()),
                value: Bytes::from(v.clone()),
                ts: *ts,
            })
            .collect()
    }

    /// A checkpoint at `ts` holding one entry frame with `payload` (kind byte included) and
    /// a matching trailer, assembled by hand: for contents the writer refuses to produce.
    fn forged(ts: u64, payload: &[u8], count: u64) -> Vec<u8> {
        let salt = 99;
        let mut out = encode_header(ts, salt).to_vec();
        frame::encode(salt, 0, payload, &mut out);
        let mut trailer = vec![TRAILER];
        trailer.extend_from_slice(&count.to_le_bytes());
        trailer.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(payload).to_le_bytes());
        frame::encode(salt, 0, &trailer, &mut out);
        out
    }

    fn entry_payload(version_ts: u64, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut p = vec![ENTRIES];
        p.extend_from_slice(&version_ts.to_le_bytes());
        put_len(&mut p, key.len());
        p.extend_from_slice(key);
        put_len(&mut p, value.len());
        p.extend_from_slice(value);
        p
    }

    #[test]
    fn an_entry_newer_than_its_checkpoint_is_corruption() {
        let path = Path::new("/db/x.ckpt");
        // The forgery is otherwise valid: at the checkpoint's own timestamp it reads back.
        let cp = read(path, &forged(7, &entry_payload(7, b"k", b"v"), 1)).unwrap();
        assert_eq!(
            cp.entries,
            [Entry {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                ts: 7
            }]
        );
        let bytes = forged(7, &entry_payload(8, b"k", b"v"), 1);
        assert_eq!(
            corruption_offset(read(path, &bytes)),
            HEADER_LEN as u64,
            "the entry frame's offset"
        );
    }

    #[test]
    #[should_panic(expected = "in a checkpoint at 7")]
    fn the_writer_refuses_an_entry_newer_than_its_checkpoint() {
        let s = SimStorage::new();
        let _ = write(&s, &dir(), 7, [(b"k", b"v", 8)], FRAME_BYTES);
    }

    /// A written checkpoint of `n` entries with small frames (several per file).
    fn written(n: usize) -> (SimStorage, Written) {
        let s = SimStorage::new();
        let w = write(&s, &dir(), 7, entries(n), 40).unwrap();
        (s, w)
    }

    fn corruption_offset(r: Result<Checkpoint>) -> u64 {
        match r {
            Err(Error::Corruption { offset, .. }) => offset,
            other => panic!("expected a corruption error, got {other:?}"),
        }
    }

    #[test]
    fn round_trip() {
        for n in [0, 1, 2, 10, 100] {
            let (s, w) = written(n);
            assert_eq!(w.path, dir().join("00000000000000000007.ckpt"));
            assert_eq!(w.entries, n as u64);
            let bytes = s.read(&w.path).unwrap();
            assert_eq!(bytes.len() as u64, w.bytes);
            let cp = read(&w.path, &bytes).unwrap();
            assert_eq!(cp.ts, 7);
            assert_eq!(cp.entries, as_bytes(&entries(n)));
            // The temporary name is gone, the installed one durable.
            let after = s.crash(Crash::SyncedOnly);
            assert_eq!(after.list(&dir()).unwrap(), ["00000000000000000007.ckpt"]);
            assert_eq!(read(&w.path, &after.read(&w.path).unwrap()).unwrap(), cp);
        }
    }

    #[test]
    fn a_checkpoint_on_the_file_system_round_trips() {
        use crate::durable::storage::FileStorage;
        let tmp = tempfile::tempdir().unwrap();
        let w = write(&FileStorage, tmp.path(), 9, entries(500), FRAME_BYTES).unwrap();
        assert_eq!(FileStorage.list(tmp.path()).unwrap(), [file_name(9)]);
        let cp = read(&w.path, &FileStorage.read(&w.path).unwrap()).unwrap();
        assert_eq!((cp.ts, cp.entries), (9, as_bytes(&entries(500))));
    }

    #[test]
    fn every_cut_is_corruption_never_a_smaller_checkpoint() {
        let (s, w) = written(20);
        let bytes = s.read(&w.path).unwrap();
        for cut in 0..bytes.len() {
            corruption_offset(read(&w.path, &bytes[..cut]));
        }
    }

    #[test]
    fn every_damaged_byte_is_corruption() {
        let (s, w) = written(20);
        let bytes = s.read(&w.path).unwrap();
        for at in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] ^= flip;
                let offset = corruption_offset(read(&w.path, &damaged));
                assert!(offset <= at as u64, "byte {at}: reported at {offset}");
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            corruption_offset(read(&w.path, &longer)),
            bytes.len() as u64
        );
    }

    #[test]
    fn a_dropped_or_reordered_frame_is_corruption() {
        // Frames that each check out, reassembled wrongly: the trailer's count and checksum,
        // and the key order, catch what per-frame checksums cannot.
        let (s, w) = written(30);
        let bytes = s.read(&w.path).unwrap();
        let salt = u64::from_le_bytes(bytes[24..32].try_into().unwrap());
        let mut frames = Vec::new();
        let mut pos = HEADER_LEN;
        while pos < bytes.len() {
            let (_, used) = frame::decode(salt, &bytes[pos..]).unwrap();
            frames.push(&bytes[pos..pos + used]);
            pos += used;
        }
        assert!(frames.len() > 3, "several entry frames and a trailer");
        let assemble = |order: &[usize]| {
            let mut out = bytes[..HEADER_LEN].to_vec();
            for &i in order {
                out.extend_from_slice(frames[i]);
            }
            out
        };
        let last = frames.len() - 1;
        let dropped: Vec<usize> = (1..=last).collect();
        let mut swapped: Vec<usize> = (0..=last).collect();
        swapped.swap(0, 1);
        let no_trailer: Vec<usize> = (0..last).collect();
        for order in [dropped, swapped, no_trailer] {
            corruption_offset(read(&w.path, &assemble(&order)));
        }
    }

    #[test]
    fn every_failure_point_leaves_the_old_state_or_the_whole_checkpoint() {
        let mut outcomes = [0usize; 2];
        for n in 0..30 {
            let s = SimStorage::new();
            s.fail_after(n);
            let result = write(&s, &dir(), 7, entries(10), 40);
            let after = s.crash(Crash::UnsyncedPrefix { seed: n });
            let path = dir().join(file_name(7));
            match after.read(&path) {
                Ok(bytes) => {
                    let cp = read(&path, &bytes).unwrap();
                    assert_eq!(cp.entries, as_bytes(&entries(10)));
                    outcomes[1] += 1;
                }
                Err(_) => {
                    assert!(result.is_err(), "n {n}: installed but not durable");
                    outcomes[0] += 1;
                }
            }
        }
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    }

    #[test]
    fn a_leftover_temporary_file_is_replaced() {
        let s = SimStorage::new();
        let mut stale = s.create(&dir().join(temp_name(7))).unwrap();
        stale.append(b"half a checkpoint").unwrap();
        let w = write(&s, &dir(), 7, entries(3), FRAME_BYTES).unwrap();
        assert_eq!(s.list(&dir()).unwrap(), [file_name(7)]);
        assert_eq!(
            read(&w.path, &s.read(&w.path).unwrap())
                .unwrap()
                .entries
                .len(),
            3
        );
    }

    #[test]
    #[should_panic(expected = "strictly increasing")]
    fn unsorted_entries_are_refused() {
        let s = SimStorage::new();
        let _ = write(
            &s,
            &dir(),
            7,
            [(b"b", b"1", 1), (b"a", b"2", 1)],
            FRAME_BYTES,
        );
    }

    #[test]
    fn file_names() {
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name(&temp_name(42)), None);
    }

    proptest! {
        #[test]
        fn reading_damaged_checkpoints_never_panics_nor_invents_entries(
            n in 0usize..30,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut: Option<usize>,
        ) {
            let (s, w) = written(n);
            let mut bytes = s.read(&w.path).unwrap();
            let original = bytes.clone();
            for (at, b) in edits {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            match read(&w.path, &bytes) {
                Ok(cp) => {
                    prop_assert_eq!(&bytes, &original);
                    prop_assert_eq!(cp.entries, as_bytes(&entries(n)));
                }
                Err(e) => {
                    let typed = matches!(e, Error::Corruption { .. });
                    prop_assert!(typed, "{:?}", e);
                }
            }
        }

        #[test]
        fn reading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            // Arbitrary bytes do not pass the header checksum: always a typed error.
            let result = read(Path::new("x"), &bytes);
            let typed = matches!(result, Err(Error::Corruption { .. }));
            prop_assert!(typed, "{:?}", result);
            crate::durable::fuzz::checkpoint_reader(&bytes);
        }
    }
}
