//! A log segment: one file of the write-ahead log, a header then frames
//! ([`frame`](super::frame)), and the reader that tells how a segment ends.
//!
//! Header layout (little-endian, 48 bytes; `docs/durability.md` has the table):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `SNAPKVLG` |
//! | 8 | 2 | format version (u16), [`FORMAT_VERSION`] |
//! | 10 | 6 | reserved, zero |
//! | 16 | 8 | segment number (u64), also in the file name |
//! | 24 | 8 | first timestamp (u64): every commit in the segment has a timestamp at least this |
//! | 32 | 8 | salt (u64): random, seeds the frame checksums |
//! | 40 | 8 | header checksum (u64): xxh3-64 of bytes 0..40 |
//!
//! ## Torn tail or corruption
//!
//! A crash can leave the end of a segment cut short or, since the disk writes pages in any
//! order, with holes (zeros) in front of pages it kept, but only in bytes written *after* the
//! last sync that completed. Every frame records in `synced_to` how far the segment was known
//! synced when the frame was written. So when the reader meets a frame that does not check
//! out at offset `p`:
//! - if a valid frame anywhere in the segment (the frames after `p` are searched for by
//!   scanning past the damage) says `synced_to > p`, or the caller knows the segment was
//!   synced past `p` (an older segment, synced before the next one was started), the bytes at
//!   `p` were durable and are now damaged: [`Error::Corruption`] naming the file and `p`;
//! - otherwise everything from `p` on was never known durable: a torn tail, reported with
//!   its offset and length, and the frames before `p` are the segment's content.
//!
//! "The first bad frame is the end of the log" is thus only concluded above the synced mark.
//!
//! ## Reserved tail
//!
//! The writer reserves room for a whole segment when it creates one (the file grows to the
//! segment size at once, see `storage::OsFile`) and gives back what no frame took before the
//! next segment exists. A crash in between leaves the newest segment ending in zeros: when
//! every byte from the first frame that does not check out to the end of the file is zero,
//! that is the end of the data ([`SegmentEnd::Reserved`]), not a torn tail. Zeros where the
//! caller knows the segment was synced are still corruption.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::file_header;
use super::frame::{self, Frame};
use super::storage::{Storage, StorageFile};
use crate::error::{Error, Result};

/// The segment file magic.
pub(crate) const MAGIC: [u8; 8] = *b"SNAPKVLG";
/// The format version this code writes and reads.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// Bytes of the segment header.
pub(crate) const HEADER_LEN: usize = file_header::LEN;

/// The segment's file header (see `file_header`): fields number, first timestamp, salt.
const KIND: file_header::Kind = file_header::Kind {
    magic: MAGIC,
    version: FORMAT_VERSION,
};

/// What a segment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The segment's place in the log (also in its file name).
    pub(crate) number: u64,
    /// A lower bound of the commit timestamps in the segment.
    pub(crate) first_ts: u64,
    /// Seeds the frame checksums (see [`frame`](super::frame)).
    pub(crate) salt: u64,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        KIND.encode([self.number, self.first_ts, self.salt])
    }

    /// Decodes a header; the error says what is wrong with it.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        let [number, first_ts, salt] = KIND.decode(bytes).map_err(file_header::Fault::describe)?;
        Ok(SegmentHeader {
            number,
            first_ts,
            salt,
        })
    }
}

/// The file name of segment `number` (sorted names are log order).
pub(crate) fn file_name(number: u64) -> String {
    format!("{number:020}.log")
}

/// The segment number in a segment's file name, `None` if it is not one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Writing.

/// Appends frames to a new segment, tracking how much is written and how much synced.
///
/// After any failed append or sync the writer is *poisoned*: every later call fails with
/// [`Error::Poisoned`]. After a failed sync the operating system may have dropped the
/// unsynced pages and report the next sync as a success (the "fsyncgate" behaviour), and
/// after a failed append an unknown part of the frame is in the file; carrying on could lose
/// or garble acknowledged commits without a word.
pub(crate) struct SegmentWriter<F> {
    file: F,
    path: PathBuf,
    header: SegmentHeader,
    /// Bytes appended (header included).
    written: u64,
    /// Bytes known durable: `written` at the last successful sync.
    synced: u64,
    poisoned: Option<Arc<io::Error>>,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

impl<F: StorageFile> SegmentWriter<F> {
    /// Creates segment `number` in `dir` and makes its header and name durable (file sync,
    /// then directory sync) before any frame can be appended: a segment whose header does not
    /// check out therefore never held an acknowledged commit unless it was damaged.
    pub(crate) fn create<S: Storage<File = F>>(
        storage: &S,
        dir: &Path,
        number: u64,
        first_ts: u64,
    ) -> Result<Self> {
        Self::create_salted(storage, dir, number, first_ts, fastrand::u64(..), 0)
    }

    /// [`create`](Self::create) with a given salt: for a writer that encodes frames for the
    /// segment before it exists (the log's buffer, see `durable::log`). With `reserve` above
    /// the header's length, room for the file to grow to that many bytes is reserved
    /// ([`StorageFile::reserve`]: a full disk fails here), after the header is synced: a
    /// crash can then leave the segment longer than its frames, ending in zeros, but never
    /// with a header that was not synced. [`finish`](Self::finish) gives the rest back.
    pub(crate) fn create_salted<S: Storage<File = F>>(
        storage: &S,
        dir: &Path,
        number: u64,
        first_ts: u64,
        salt: u64,
        reserve: u64,
    ) -> Result<Self> {
        let header = SegmentHeader {
            number,
            first_ts,
            salt,
        };
        let path = dir.join(file_name(number));
        let mut file = storage.create(&path).map_err(Error::io)?;
        file.append(&header.encode()).map_err(Error::io)?;
        file.sync().map_err(Error::io)?;
        if reserve > HEADER_LEN as u64 {
            file.reserve(reserve).map_err(Error::io)?;
        }
        storage.sync_dir(dir).map_err(Error::io)?;
        Ok(SegmentWriter {
            file,
            path,
            header,
            written: HEADER_LEN as u64,
            synced: HEADER_LEN as u64,
            poisoned: None,
            buf: Vec::new(),
        })
    }

    pub(crate) fn header(&self) -> SegmentHeader {
        self.header
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes appended so far, header included.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Bytes known durable through [`sync`](Self::sync) (a sync through a
    /// [`sync_handle`](Self::sync_handle) does not count here).
    pub(crate) fn synced(&self) -> u64 {
        self.synced
    }

    /// A handle that syncs the segment's file from another thread while this writer appends
    /// ([`StorageFile::sync_handle`]).
    pub(crate) fn sync_handle(&self) -> Result<F::SyncHandle> {
        self.check()?;
        self.file.sync_handle().map_err(Error::io)
    }

    fn check(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(Error::Poisoned {
                cause: Arc::clone(cause),
            }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, e: io::Error) -> Error {
        let cause = Arc::new(e);
        self.poisoned = Some(Arc::clone(&cause));
        Error::Io(cause)
    }

    /// Appends one frame per payload, with a single write; returns the byte range they
    /// occupy. They are not durable until [`sync`](Self::sync).
    pub(crate) fn append<'p>(
        &mut self,
        payloads: impl IntoIterator<Item = &'p [u8]>,
    ) -> Result<Range<u64>> {
        self.check()?;
        self.buf.clear();
        for payload in payloads {
            frame::encode(self.header.salt, self.synced, payload, &mut self.buf);
        }
        let start = self.written;
        if let Err(e) = self.file.append(&self.buf) {
            return Err(self.poison(e));
        }
        self.written += self.buf.len() as u64;
        Ok(start..self.written)
    }

    /// Appends frames already encoded (with this segment's salt, and each `synced_to` a
    /// frame boundary at most what of the segment was durable when it was encoded: synced by
    /// [`sync`](Self::sync) or through a [`sync_handle`](Self::sync_handle)), with a single
    /// write; returns the byte range they occupy. For the log, which encodes frames while an
    /// earlier batch is being written and synced.
    pub(crate) fn append_encoded(&mut self, frames: &[u8]) -> Result<Range<u64>> {
        self.check()?;
        if let Err(e) = self.file.append(frames) {
            return Err(self.poison(e));
        }
        let start = self.written;
        self.written += frames.len() as u64;
        Ok(start..self.written)
    }

    /// Makes every appended frame durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.check()?;
        if let Err(e) = self.file.sync() {
            return Err(self.poison(e));
        }
        self.synced = self.written;
        Ok(())
    }

    /// Gives back the room reserved at creation that no frame took: the file's length is its
    /// frames', durably. Called once the segment takes no more frames (before the next
    /// segment is created, and at close), after a [`sync`](Self::sync): a segment that another
    /// follows therefore never ends in reserved zeros, and any damage in it stays corruption.
    pub(crate) fn finish(&mut self) -> Result<()> {
        self.check()?;
        if let Err(e) = self.file.finish() {
            return Err(self.poison(e));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Reading.

/// A frame read back, with where it starts in the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadFrame<'a> {
    pub(crate) offset: u64,
    pub(crate) frame: Frame<'a>,
}

/// How a segment ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SegmentEnd {
    /// The last frame ends at the end of the file.
    Clean,
    /// The last frame ends at `offset`, and every byte after it (`zeros` of them) is zero:
    /// room the writer had reserved and not yet used or given back (a crash left the segment
    /// at its reserved length), or frames written after the last sync whose pages never
    /// reached the disk, which read back as zeros. Either way never known durable: the
    /// segment's content is its frames, and recovery cuts the file at `offset`.
    Reserved { offset: u64, zeros: u64 },
    /// The bytes from `offset` on (`dropped` of them) do not hold a whole valid frame and
    /// were never known durable: a crash's cut-off tail. Recovery truncates the file there.
    TornTail {
        offset: u64,
        dropped: u64,
        /// Why the first dropped frame did not check out.
        why: String,
    },
}

/// A segment as read back: its header (`None` if a crash cut it before the header was
/// synced), its valid frames in order, and how it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentRead<'a> {
    pub(crate) header: Option<SegmentHeader>,
    pub(crate) frames: Vec<ReadFrame<'a>>,
    pub(crate) end: SegmentEnd,
}

fn corruption(file: &Path, offset: u64, what: impl Into<String>) -> Error {
    Error::Corruption {
        file: file.to_path_buf(),
        offset,
        what: what.into(),
    }
}

/// Reads the segment `file` whose content is `bytes`.
///
/// `known_synced` is how far the caller knows the file was durable whatever its frames say:
/// 0 for the newest segment, `u64::MAX` for one that a later segment followed (the writer
/// syncs a segment completely before starting the next).
///
/// Total: any bytes give a result or a typed error, never a panic, and every frame returned
/// checked out (checksum, and a `synced_to` that is plausible).
pub(crate) fn parse<'a>(
    file: &Path,
    bytes: &'a [u8],
    known_synced: u64,
) -> Result<SegmentRead<'a>> {
    let len = bytes.len() as u64;
    let header = match SegmentHeader::decode(bytes) {
        Ok(header) => header,
        // The writer syncs the header before it appends anything: a bad header in a file no
        // longer than a header was cut by a crash during the segment's creation, while one
        // with bytes after it had been synced, and is damaged.
        Err(what) if known_synced == 0 && bytes.len() <= HEADER_LEN => {
            return Ok(SegmentRead {
                header: None,
                frames: Vec::new(),
                end: SegmentEnd::TornTail {
                    offset: 0,
                    dropped: len,
                    why: what.to_owned(),
                },
            });
        }
        Err(what) => return Err(corruption(file, 0, what)),
    };

    let mut frames = Vec::new();
    let mut pos = HEADER_LEN;
    // The highest `synced_to` seen so far: `synced_to` never decreases along a segment.
    let mut mark = HEADER_LEN as u64;
    while pos < bytes.len() {
        let offset = pos as u64;
        match frame::decode(header.salt, &bytes[pos..]) {
            Ok((frame, used)) => {
                // The writer syncs whole appends, so its synced mark is always where a
                // frame starts (or the end of the header, or the end of the frame before).
                let at_boundary = frame.synced_to == HEADER_LEN as u64
                    || frame.synced_to == offset
                    || frames
                        .binary_search_by_key(&frame.synced_to, |f: &ReadFrame<'_>| f.offset)
                        .is_ok();
                if frame.synced_to < mark || frame.synced_to > offset || !at_boundary {
                    return Err(corruption(
                        file,
                        offset,
                        format!(
                            "frame's synced_to {} is not a frame boundary in [{mark}, {offset}]",
                            frame.synced_to
                        ),
                    ));
                }
                mark = frame.synced_to;
                frames.push(ReadFrame { offset, frame });
                pos += used;
            }
            Err(why) => {
                if known_synced > offset {
                    return Err(corruption(
                        file,
                        offset,
                        format!("{why}, in a part of the segment that was synced"),
                    ));
                }
                // Zeros to the end of the file hold no frame (a stretch of zeros never passes
                // as one), so no synced mark can be found there either: the end of the data.
                if bytes[pos..].iter().all(|&b| b == 0) {
                    return Ok(SegmentRead {
                        header: Some(header),
                        frames,
                        end: SegmentEnd::Reserved {
                            offset,
                            zeros: len - offset,
                        },
                    });
                }
                if let Some(witness) = later_synced_mark(bytes, header.salt, pos) {
                    return Err(corruption(
                        file,
                        offset,
                        format!(
                            "{why}, below the synced mark {} recorded by the frame at {}",
                            witness.frame.synced_to, witness.offset
                        ),
                    ));
                }
                return Ok(SegmentRead {
                    header: Some(header),
                    frames,
                    end: SegmentEnd::TornTail {
                        offset,
                        dropped: len - offset,
                        why: why.to_string(),
                    },
                });
            }
        }
    }
    Ok(SegmentRead {
        header: Some(header),
        frames,
        end: SegmentEnd::Clean,
    })
}

/// A valid frame after the bad one at `bad` whose `synced_to` says `bad` was synced: the
/// proof that the bad frame is damage, not a torn tail. Scans every offset after `bad` (the
/// bad frame's length cannot be trusted). At each it filters on the header fields
/// (`bad < synced_to <= offset`, payload within the file), then [`frame::decode`] checks the
/// 12-byte header check before it hashes any payload: linear in the file's size, except on
/// input crafted with the segment's salt. (Without the header check, every offset where a
/// record's timestamp happens to read as a plausible `synced_to` would hash up to the rest
/// of the file: quadratic.)
fn later_synced_mark(bytes: &[u8], salt: u64, bad: usize) -> Option<ReadFrame<'_>> {
    (bad + 1..bytes.len()).find_map(|pos| {
        let offset = pos as u64;
        let (len, synced_to) = frame::peek(&bytes[pos..])?;
        let plausible = synced_to > bad as u64
            && synced_to <= offset
            && (frame::HEADER_LEN as u64 + u64::from(len)) <= (bytes.len() - pos) as u64;
        if !plausible {
            return None;
        }
        let (frame, _) = frame::decode(salt, &bytes[pos..]).ok()?;
        Some(ReadFrame { offset, frame })
    })
}

#[cfg(test)]
mod tests;
