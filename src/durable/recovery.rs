//! Recovery of a database directory on open: the newest checkpoint, then every log record
//! after it, applied in log order; a crash's torn tail cut off, damage to synced data refused
//! (or, on request, cut off with everything after it).
//!
//! The procedure, step by step, is in `docs/durability.md` ("Recovery"). In short:
//! 1. leftovers of an interrupted checkpoint (`*.ckpt.tmp`) are removed, unknown files ignored;
//! 2. the newest checkpoint is read and verified whole: damage there is corruption, never a
//!    reason to fall back to an older one (the segments it covered may be gone);
//! 3. the segments are read in number order; they must be contiguous. Every segment but the
//!    last was synced to its end before the next one was created, so any damage in it is
//!    corruption; the last one's frames say how far it was synced, which tells a torn tail
//!    (cut off here) from damage (corruption);
//! 4. each record newer than the checkpoint is applied, per key the write with the largest
//!    timestamp winning.
//!
//! Nothing is changed on disk until the whole directory has been read and judged, except the
//! removal of checkpoint leftovers: a directory that recovery refuses is left as it was.
//! With [`RecoveryOptions::read_only`] nothing is changed at all: the same reading and
//! judging, reported as if the changes had been made (what `snapkv::inspect` shows).

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::checkpoint::{self, Checkpoint};
use super::log::LiveSegment;
use super::record::{self, CommitRecord};
use super::segment::{self, SegmentEnd, SegmentRead};
use super::storage::{Storage, StorageFile};
use crate::error::{Error, Result};
use crate::raw::prefetch_lines;

/// The state a directory holds, as recovery rebuilt it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// The timestamp of the checkpoint recovery started from, if any.
    pub(crate) checkpoint_ts: Option<u64>,
    /// Live keys with their newest value and the timestamp that wrote it, sorted by key, unique.
    pub(crate) entries: Vec<(Bytes, Bytes, u64)>,
    /// The highest timestamp in the checkpoint or any replayed record (0 if none).
    pub(crate) max_ts: u64,
    /// The number the next new segment must get (above every segment file present, >= 1).
    pub(crate) next_segment: u64,
    /// Records applied (those newer than the checkpoint; older ones are in its image).
    pub(crate) records_replayed: u64,
    /// The crash's cut-off tail of the last segment, which recovery truncated (or, for a
    /// segment holding only part of its header, removed).
    pub(crate) torn_tail: Option<TornTail>,
    /// What [`RecoveryOptions::repair`] cut off at damaged data, if it had to.
    pub(crate) repaired: Option<Repaired>,
    /// The segments left, oldest first, with their sizes and largest record timestamps:
    /// the log retires them once a checkpoint covers them (`Log::adopt_segments`).
    pub(crate) segments: Vec<LiveSegment>,
}

/// A torn tail recovery cut off: the bytes of `file` from `offset` on (`dropped` of them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TornTail {
    pub(crate) file: PathBuf,
    pub(crate) offset: u64,
    pub(crate) dropped: u64,
}

/// What a repair dropped: `file` cut at `offset` (`dropped` bytes; at offset 0 the file was
/// removed), and every later segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Repaired {
    /// The segment the damage is in; for a gap in the numbering, the missing segment's name
    /// (then `offset` and `dropped` are 0).
    pub(crate) file: PathBuf,
    pub(crate) offset: u64,
    pub(crate) dropped: u64,
    /// The later segments removed, in log order, with their lengths in bytes.
    pub(crate) removed: Vec<(PathBuf, u64)>,
    /// The corruption that was repaired, as the error without repair would have said it.
    pub(crate) what: String,
}

/// How to recover.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RecoveryOptions {
    /// At damage in the log (which is otherwise `Error::Corruption`), keep the log up to it
    /// and drop the rest: truncate the damaged segment there and remove every later one,
    /// reporting exactly that in [`Recovered::repaired`]. A damaged checkpoint cannot be
    /// repaired (the log it replaced may be gone) and stays an error.
    pub(crate) repair: bool,
    /// Judge and report only: never write, truncate, remove or sync anything. A torn tail
    /// and checkpoint leftovers are reported but stay on disk; damage is
    /// `Error::Corruption` even with `repair` (a repair that writes nothing repairs nothing).
    pub(crate) read_only: bool,
}

/// Recovers the database in `dir`: see the module documentation and `docs/durability.md`.
///
/// Errors: [`Error::Corruption`] naming the file and offset of damage to data that was
/// synced (unless `opts.repair`, for the log), [`Error::Io`] if the storage fails. Total over
/// any directory content: never a panic.
pub(crate) fn recover<S: Storage>(
    storage: &S,
    dir: &Path,
    opts: RecoveryOptions,
) -> Result<Recovered> {
    let files = list(storage, dir, opts.read_only)?;

    let checkpoint = match files.newest_checkpoint {
        Some(ts) => Some(read_checkpoint(storage, dir, ts)?),
        None => None,
    };
    let checkpoint_ts = checkpoint.as_ref().map(|c| c.ts);
    let mut replay = Replay::new(checkpoint_ts);

    // Read every segment in log order, up to the end or the first damage.
    let segments = &files.segments;
    let mut end = LogEnd::Clean;
    // Without a checkpoint nothing may have been deleted: the log starts at segment 1.
    let mut expected = match (&checkpoint, segments.first()) {
        (Some(_), Some(&first)) => first,
        _ => 1,
    };
    // What is read of each segment, for the log to retire it once a checkpoint covers it.
    let mut live: Vec<LiveSegment> = Vec::with_capacity(segments.len());
    for (index, &number) in segments.iter().enumerate() {
        if number != expected {
            end = LogEnd::Cut(Cut {
                index,
                file: dir.join(segment::file_name(expected)),
                offset: 0,
                missing: true,
                what: if index == 0 {
                    format!(
                        "log segment {expected} is missing: the log starts at segment {number} \
                         and no checkpoint covers the segments before it"
                    )
                } else {
                    format!("log segment {expected} is missing: segment {number} follows it")
                },
            });
            break;
        }
        expected = number.saturating_add(1);
        let path = dir.join(segment::file_name(number));
        // One buffer per segment: the records' keys and values are slices of it (see
        // `Replay`), not copies.
        let bytes = Bytes::from(storage.read(&path).map_err(Error::io)?);
        let last = index + 1 == segments.len();
        replay.segment_max_ts = None;
        let outcome = replay_segment(&mut replay, &path, number, &bytes, last)?;
        replay.held(bytes.len() as u64);
        let kept_bytes = match &outcome {
            SegmentOutcome::Whole => bytes.len() as u64,
            SegmentOutcome::Reserved { offset }
            | SegmentOutcome::TornTail { offset, .. }
            | SegmentOutcome::Damaged { offset, .. } => *offset,
        };
        live.push(LiveSegment {
            number,
            bytes: kept_bytes,
            max_ts: replay.segment_max_ts,
        });
        match outcome {
            SegmentOutcome::Whole => {}
            SegmentOutcome::Reserved { offset } => {
                debug_assert!(last, "only the last segment can end in reserved zeros");
                end = LogEnd::Reserved { file: path, offset };
            }
            SegmentOutcome::TornTail { offset, dropped } => {
                debug_assert!(last, "only the last segment can have a torn tail");
                end = LogEnd::Torn(TornTail {
                    file: path,
                    offset,
                    dropped,
                });
            }
            SegmentOutcome::Damaged { offset, what } => {
                end = LogEnd::Cut(Cut {
                    index,
                    file: path,
                    offset,
                    missing: false,
                    what,
                });
                break;
            }
        }
    }

    // The directory was judged: now make what is on disk match what was recovered.
    let mut kept = segments.len();
    let mut torn_tail = None;
    let mut repaired = None;
    match end {
        LogEnd::Clean if opts.read_only => {}
        LogEnd::Clean => {
            // A segment that is about to be followed by another must be durable to its end
            // (that is what lets a later recovery call any damage in it corruption), and
            // frames read from the page cache may not be: sync it.
            if let Some(&number) = segments.last() {
                let path = dir.join(segment::file_name(number));
                let mut file = storage.open_append(&path).map_err(Error::io)?;
                file.sync().map_err(Error::io)?;
            }
        }
        LogEnd::Reserved { .. } if opts.read_only => {}
        LogEnd::Reserved { file, offset } => {
            // The unused room a crash left reserved is cut, as the writer would have at
            // close, before a new segment follows this one (which makes it a segment read as
            // synced to its end). `truncate` syncs, which a last segment needs anyway (see
            // `Clean`).
            storage.truncate(&file, offset).map_err(Error::io)?;
        }
        LogEnd::Torn(tail) => {
            if tail.offset == 0 {
                kept -= 1;
            }
            // Read-only: reported as recovery would cut it; the bytes stay where they are.
            if !opts.read_only {
                if tail.offset == 0 {
                    // Only part of a header: the segment was being created when the crash
                    // came.
                    storage.remove(&tail.file).map_err(Error::io)?;
                    storage.sync_dir(dir).map_err(Error::io)?;
                } else {
                    // `truncate` syncs: the cut segment is durable to its new end.
                    storage
                        .truncate(&tail.file, tail.offset)
                        .map_err(Error::io)?;
                }
            }
            torn_tail = Some(tail);
        }
        LogEnd::Cut(cut) => {
            if !opts.repair || opts.read_only {
                return Err(Error::Corruption {
                    file: cut.file,
                    offset: cut.offset,
                    what: cut.what,
                });
            }
            let report = repair(storage, dir, segments, cut)?;
            // `removed` includes the damaged segment itself if its header was the damage.
            kept = segments.len() - report.removed.len();
            repaired = Some(report);
        }
    }

    let next_segment = segments[..kept].last().map_or(1, |&n| n.saturating_add(1));
    live.truncate(kept);
    let (entries, max_ts, records_replayed) = replay.finish(checkpoint);
    Ok(Recovered {
        checkpoint_ts,
        entries,
        max_ts,
        next_segment,
        records_replayed,
        torn_tail,
        repaired,
        segments: live,
    })
}

/// The files of a database directory that recovery reads.
struct DirFiles {
    newest_checkpoint: Option<u64>,
    /// Segment numbers, ascending.
    segments: Vec<u64>,
}

/// Lists `dir`, removing the temporary files of checkpoints that were never installed
/// (unless `read_only`: they are never read either way).
fn list<S: Storage>(storage: &S, dir: &Path, read_only: bool) -> Result<DirFiles> {
    let mut files = DirFiles {
        newest_checkpoint: None,
        segments: Vec::new(),
    };
    let mut removed = false;
    for name in storage.list(dir).map_err(Error::io)? {
        if let Some(ts) = checkpoint::parse_file_name(&name) {
            files.newest_checkpoint = files.newest_checkpoint.max(Some(ts));
        } else if let Some(number) = segment::parse_file_name(&name) {
            files.segments.push(number);
        } else if name
            .strip_suffix(".tmp")
            .and_then(checkpoint::parse_file_name)
            .is_some()
            && !read_only
        {
            // A checkpoint interrupted before its rename: not a checkpoint, never read.
            storage.remove(&dir.join(&name)).map_err(Error::io)?;
            removed = true;
        }
        // Anything else (the lock file, a user's stray file) is not ours to judge.
    }
    if removed {
        storage.sync_dir(dir).map_err(Error::io)?;
    }
    files.segments.sort_unstable();
    Ok(files)
}

fn read_checkpoint<S: Storage>(storage: &S, dir: &Path, ts: u64) -> Result<Checkpoint> {
    let path = dir.join(checkpoint::file_name(ts));
    let bytes = storage.read(&path).map_err(Error::io)?;
    let checkpoint = checkpoint::read(&path, &bytes)?;
    if checkpoint.ts != ts {
        return Err(Error::Corruption {
            file: path,
            offset: 0,
            what: format!(
                "checkpoint header says timestamp {}, its name {ts}",
                checkpoint.ts
            ),
        });
    }
    Ok(checkpoint)
}

/// A checkpoint's entries as recovered entries: `(key, value, the timestamp that wrote it)`,
/// sorted by key.
fn checkpoint_entries(checkpoint: Checkpoint) -> impl Iterator<Item = (Bytes, Bytes, u64)> {
    checkpoint
        .entries
        .into_iter()
        .map(|e| (e.key, e.value, e.ts))
}

/// How the log ends, as the read found it.
enum LogEnd {
    Clean,
    /// The last segment's frames end at `offset`, followed by zeros only: the room its
    /// writer had reserved (see `segment::SegmentEnd::Reserved`). Not data: cut, unreported.
    Reserved {
        file: PathBuf,
        offset: u64,
    },
    /// The last segment has a torn tail.
    Torn(TornTail),
    /// Damage (or a missing segment): the log is kept up to here only under repair.
    Cut(Cut),
}

/// Where the readable log ends because of damage.
struct Cut {
    /// The index (in the directory's segment list) of the damaged segment, or of the first
    /// segment after a missing one.
    index: usize,
    file: PathBuf,
    offset: u64,
    /// The segment at `file` does not exist (a gap in the numbering).
    missing: bool,
    what: String,
}

/// What reading one segment found.
enum SegmentOutcome {
    /// Every byte of it is a valid frame holding a valid record.
    Whole,
    /// Valid frames up to `offset`, zeros after it: reserved room, never data.
    Reserved { offset: u64 },
    /// Valid up to `offset`; the `dropped` bytes after it were never known durable.
    TornTail { offset: u64, dropped: u64 },
    /// Damage at `offset`; the records before it were applied (what a repair keeps).
    Damaged { offset: u64, what: String },
}

/// Reads segment `number` (content `bytes`) and applies its records. `last`: no segment
/// follows it, so its frames' synced marks, not its length, say what was durable.
fn replay_segment(
    replay: &mut Replay,
    path: &Path,
    number: u64,
    bytes: &Bytes,
    last: bool,
) -> Result<SegmentOutcome> {
    // A segment that another follows was synced to its end before that one was created.
    let known_synced = if last { 0 } else { u64::MAX };
    let read = match segment::parse(path, bytes, known_synced) {
        Ok(read) => read,
        Err(Error::Corruption { offset, what, .. }) => {
            // The frames before the damage are what a repair keeps of the segment (applied
            // without repair too: the caller then discards the state and reports the error).
            let at = usize::try_from(offset).map_or(bytes.len(), |at| at.min(bytes.len()));
            let prefix = segment::parse(path, &bytes[..at], 0)?;
            if let Some(damage) = wrong_number(&prefix, number) {
                return Ok(damage);
            }
            if let Err(damage) = apply_frames(replay, bytes, &prefix) {
                return Ok(damage);
            }
            return Ok(SegmentOutcome::Damaged { offset, what });
        }
        Err(other) => return Err(other),
    };
    if let Some(damage) = wrong_number(&read, number) {
        return Ok(damage);
    }
    if let Err(damage) = apply_frames(replay, bytes, &read) {
        return Ok(damage);
    }
    Ok(match read.end {
        SegmentEnd::Clean => SegmentOutcome::Whole,
        SegmentEnd::Reserved { offset, .. } => SegmentOutcome::Reserved { offset },
        SegmentEnd::TornTail {
            offset, dropped, ..
        } => SegmentOutcome::TornTail { offset, dropped },
    })
}

/// Damage at offset 0 if the segment's header names another segment than its file name: a
/// file copied or renamed by hand, whose records are not this place's in the log.
fn wrong_number(read: &SegmentRead<'_>, number: u64) -> Option<SegmentOutcome> {
    let header = read.header?;
    (header.number != number).then(|| SegmentOutcome::Damaged {
        offset: 0,
        what: format!(
            "segment header says number {}, its file name {number}",
            header.number
        ),
    })
}

/// Applies every frame's record, in order; a frame whose checksum holds but whose payload is
/// not a record is damage at that frame (the frames before it stay applied). `read` is of
/// `segment`'s bytes, which the records' keys and values are slices of.
fn apply_frames(
    replay: &mut Replay,
    segment: &Bytes,
    read: &SegmentRead<'_>,
) -> Result<(), SegmentOutcome> {
    for f in &read.frames {
        match record::decode_shared(segment, f.frame.payload) {
            Ok(rec) => replay.apply(rec),
            Err(e) => {
                return Err(SegmentOutcome::Damaged {
                    offset: f.offset,
                    what: format!("frame checks out but {e}"),
                })
            }
        }
    }
    Ok(())
}

/// Cuts the log at `cut`: removes every segment after it (newest first, so that a crash
/// during the repair leaves a contiguous log that the next repair continues), makes that
/// durable, then truncates the damaged segment (removes it if its header is the damage).
fn repair<S: Storage>(storage: &S, dir: &Path, segments: &[u64], cut: Cut) -> Result<Repaired> {
    let first_removed = if cut.missing {
        cut.index
    } else {
        cut.index + 1
    };
    let mut removed = Vec::new();
    for &number in segments[first_removed..].iter().rev() {
        let path = dir.join(segment::file_name(number));
        let len = storage.len(&path).map_err(Error::io)?;
        storage.remove(&path).map_err(Error::io)?;
        removed.push((path, len));
    }
    removed.reverse();
    if !removed.is_empty() {
        storage.sync_dir(dir).map_err(Error::io)?;
    }
    let mut dropped = 0;
    if !cut.missing {
        let len = storage.len(&cut.file).map_err(Error::io)?;
        dropped = len.saturating_sub(cut.offset);
        if cut.offset == 0 {
            storage.remove(&cut.file).map_err(Error::io)?;
            storage.sync_dir(dir).map_err(Error::io)?;
            removed.insert(0, (cut.file.clone(), len));
        } else {
            storage.truncate(&cut.file, cut.offset).map_err(Error::io)?;
        }
    }
    Ok(Repaired {
        file: cut.file,
        offset: cut.offset,
        dropped,
        removed,
        what: cut.what,
    })
}

/// The records applied so far, over the checkpoint: every write of a record newer than the
/// checkpoint, in log order, its key and value slices of the segment it was read from. Per
/// key the write with the largest timestamp wins (a delete as `None`, kept until the merge so
/// that it still wins over the checkpoint's entry), decided once, at the end, by one sort
/// ([`newest_per_key`]): most keys are written once, and a map probed per write cost more
/// than the rest of the replay. The checkpoint's entries are never sorted or hashed: they are
/// merged in, already sorted, at the end.
///
/// Memory: the segments stay in memory until the store is loaded from the recovered entries
/// (each copied once, there), instead of one segment at a time plus a copy of every key and
/// value. The log a reopen reads is bounded by the checkpoints its size triggers
/// (`DbBuilder::checkpoint_log_bytes`); without them, once the segments held pass
/// [`COMPACT_HELD_BYTES`] and twice what the last compaction kept, the writes are compacted
/// ([`Replay::compact`]), which bounds what is held to about twice the live data.
struct Replay {
    checkpoint_ts: Option<u64>,
    writes: Vec<LogWrite>,
    max_ts: u64,
    replayed: u64,
    /// The largest timestamp of a record in the segment being read.
    segment_max_ts: Option<u64>,
    /// Bytes of the buffers `writes` may point into: the segments read since the last
    /// compaction, and the buffer it copied the writes it kept into.
    held_bytes: u64,
    /// A compaction is due once `held_bytes` passes this.
    compact_above: u64,
    /// The least `compact_above` may be ([`COMPACT_HELD_BYTES`]; small in tests).
    compact_floor: u64,
}

/// Segment bytes that recovery holds before it compacts its writes (see [`Replay`]): above
/// the log the default checkpoints leave (`DEFAULT_CHECKPOINT_LOG_BYTES` plus a segment), so
/// that a reopen of a database that checkpoints never compacts.
const COMPACT_HELD_BYTES: u64 = 256 << 20;

/// One write of a replayed record.
struct LogWrite {
    key: Bytes,
    /// `None` for a delete.
    value: Option<Bytes>,
    /// The timestamp of the commit that wrote it.
    ts: u64,
}

impl Replay {
    fn new(checkpoint_ts: Option<u64>) -> Self {
        Self::compacting_above(checkpoint_ts, COMPACT_HELD_BYTES)
    }

    /// A replay that compacts once it holds more than `floor` bytes (and twice what the last
    /// compaction kept).
    fn compacting_above(checkpoint_ts: Option<u64>, floor: u64) -> Self {
        Self {
            checkpoint_ts,
            writes: Vec::new(),
            max_ts: checkpoint_ts.unwrap_or(0),
            replayed: 0,
            segment_max_ts: None,
            held_bytes: 0,
            compact_above: floor,
            compact_floor: floor,
        }
    }

    /// Counts a segment of `len` bytes whose records were applied (their writes point into
    /// it), and compacts if that makes too many held.
    fn held(&mut self, len: u64) {
        self.held_bytes = self.held_bytes.saturating_add(len);
        if self.held_bytes > self.compact_above {
            self.compact();
        }
    }

    /// Keeps only each key's winning write so far (deletes too: they must still win over
    /// the checkpoint's entry), its key and value copied into one new buffer, so that the
    /// segments' buffers are freed. The order of the writes kept (by key) does not matter:
    /// later writes of a key come after them and win as before, since the winner is picked
    /// by timestamp, then position. The next compaction waits until as many bytes again
    /// were read as this one kept, which keeps the copying proportional to the log.
    fn compact(&mut self) {
        let kept = newest_per_key(std::mem::take(&mut self.writes));
        let len: usize = kept
            .iter()
            .map(|w| w.key.len() + w.value.as_ref().map_or(0, Bytes::len))
            .sum();
        let mut buffer = Vec::with_capacity(len);
        for w in &kept {
            buffer.extend_from_slice(&w.key);
            buffer.extend_from_slice(w.value.as_deref().unwrap_or_default());
        }
        let buffer = Bytes::from(buffer);
        let mut at = 0;
        let mut next = |n: usize| {
            at += n;
            buffer.slice(at - n..at)
        };
        self.writes = kept
            .into_iter()
            .map(|w| LogWrite {
                key: next(w.key.len()),
                value: w.value.map(|v| next(v.len())),
                ts: w.ts,
            })
            .collect();
        self.held_bytes = len as u64;
        self.compact_above = self.compact_floor.max(self.held_bytes.saturating_mul(2));
    }

    /// Applies one record, in log order. Log order is timestamp order per key (commits to one
    /// key append under that key's lock) but not across keys (`docs/durability.md`, "log
    /// order is not timestamp order"), so the largest timestamp wins, not the last record.
    fn apply(&mut self, rec: CommitRecord) {
        self.max_ts = self.max_ts.max(rec.ts);
        self.segment_max_ts = self.segment_max_ts.max(Some(rec.ts));
        if self.checkpoint_ts.is_some_and(|cp| rec.ts <= cp) {
            return; // in the checkpoint's image already
        }
        self.replayed += 1;
        let ts = rec.ts;
        self.writes.extend(rec.writes.into_iter().map(|w| LogWrite {
            key: w.key,
            value: w.value,
            ts,
        }));
    }

    /// The live entries sorted by key (the log's writes merged over the checkpoint's
    /// entries), the highest timestamp seen, and the records applied.
    fn finish(self, checkpoint: Option<Checkpoint>) -> (Vec<(Bytes, Bytes, u64)>, u64, u64) {
        let log = newest_per_key(self.writes);
        let Some(checkpoint) = checkpoint else {
            // Nothing to merge: the puts, in place (the vector's memory reused, not a second
            // one beside it).
            let entries = log
                .into_iter()
                .filter_map(|LogWrite { key, value, ts }| Some((key, value?, ts)))
                .collect();
            return (entries, self.max_ts, self.replayed);
        };
        let base_len = checkpoint.entries.len();
        let mut entries = Vec::with_capacity(base_len + log.len());
        let mut base = checkpoint_entries(checkpoint).peekable();
        for LogWrite { key, value, ts } in log {
            while let Some(older) = base.next_if(|(k, _, _)| *k < key) {
                entries.push(older);
            }
            // The log's write replaces the checkpoint's entry (it is newer than the
            // checkpoint); a delete removes it.
            base.next_if(|(k, _, _)| *k == key);
            if let Some(value) = value {
                entries.push((key, value, ts));
            }
        }
        entries.extend(base);
        (entries, self.max_ts, self.replayed)
    }
}

/// The winning write of each key, sorted by key: the one with the largest timestamp, and of
/// those (a valid log never has two) the last in log order.
///
/// Sorts `(key prefix, position)` pairs rather than the writes: most comparisons are decided
/// by the in-line prefix, without touching the keys, which lie all over the segments.
fn newest_per_key(mut writes: Vec<LogWrite>) -> Vec<LogWrite> {
    let mut order: Vec<(u64, u64, usize)> = writes
        .iter()
        .enumerate()
        .map(|(at, w)| {
            let (high, low) = key_prefix(&w.key);
            (high, low, at)
        })
        .collect();
    order.sort_unstable_by(|a, b| {
        (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| {
            let (x, y) = (&writes[a.2], &writes[b.2]);
            x.key.cmp(&y.key).then(x.ts.cmp(&y.ts)).then(a.2.cmp(&b.2))
        })
    });
    let mut newest = Vec::with_capacity(order.len());
    for (i, &(high, low, at)) in order.iter().enumerate() {
        // The writes are visited in key order, all over the vector: ask for the ones a few
        // steps ahead now, so that their cache misses overlap.
        if let Some(&(_, _, ahead)) = order.get(i + GATHER_PREFETCH_DISTANCE) {
            prefetch_lines(std::slice::from_ref(&writes[ahead]));
        }
        // The last of its key's run in the order is its newest write.
        let next_same_key = order.get(i + 1).is_some_and(|&(h, l, next)| {
            (h, l) == (high, low) && writes[next].key == writes[at].key
        });
        if !next_same_key {
            let w = &mut writes[at];
            newest.push(LogWrite {
                key: std::mem::take(&mut w.key),
                value: w.value.take(),
                ts: w.ts,
            });
        }
    }
    newest
}

/// How many writes ahead [`newest_per_key`] asks for the ones it will move.
const GATHER_PREFETCH_DISTANCE: usize = 8;

/// The first 16 bytes of `key` (zero-padded) as two big-endian numbers. Where two keys'
/// prefixes differ, they order the keys as the keys' bytes do: at the first difference
/// either both keys have a byte, or one has ended (a padding zero) and the other's byte is
/// above zero, so the shorter key is a prefix of the longer. Equal prefixes decide nothing
/// (`b"a"` and `b"a\0"` have the same one): the keys are compared whole.
fn key_prefix(key: &[u8]) -> (u64, u64) {
    let mut head = [0u8; 16];
    let n = key.len().min(16);
    head[..n].copy_from_slice(&key[..n]);
    let (high, low) = head.split_at(8);
    (
        u64::from_be_bytes(high.try_into().expect("8 bytes")),
        u64::from_be_bytes(low.try_into().expect("8 bytes")),
    )
}

#[cfg(all(test, not(loom)))]
mod tests;
