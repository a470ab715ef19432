//! The write-ahead log that committers share, with group commit.
//!
//! A committer [`append`](Log::append)s its record after it took its timestamp and before it
//! publishes it: the frame is encoded into a shared buffer under a short lock (no I/O under
//! it), and the position just past it (its [`Lsn`]) is returned. The committer then waits
//! ([`Log::wait_committed`]) until the log has written, and under [`SyncPolicy::Always`]
//! synced, up to that position, and only then publishes its timestamp: so no snapshot can see
//! a commit that a crash could take back.
//!
//! **Group commit.** The first waiter that finds the log behind its position becomes the
//! *leader*: it takes the writer lock (only leaders take it, with `try_lock`), takes the whole
//! buffer, writes it with one write and syncs it with one sync, outside the buffer lock, so
//! that new appends queue for the next batch meanwhile. It then publishes the new written and
//! durable positions and wakes every sleeping waiter. A waiter whose position the batch
//! covered returns; one whose frame came too late for it competes to lead the next batch.
//! Followers sleep on a count of finished leader turns, never on a lock held across I/O.
//!
//! **Syncing outside the writer lock.** A sync runs under its own lock, through a handle of
//! the segment's file ([`SyncHandle`]), not under the writer lock: while the periodic syncer
//! (or [`Log::sync_now`]) waits for the disk, committers go on writing. That lock serializes
//! syncs, and a failed sync poisons the log before it is released: a later sync, which the
//! operating system may report a success after dropping the failed one's pages, never
//! publishes a position the failed one covered. Under `Always` the leader syncs its batch
//! right after writing it, with the writer lock still held: the next batch waits for this
//! sync anyway.
//!
//! **Writing without a leader.** Under a policy that does not sync at commit, an append that
//! finds nothing queued and no leader at work writes its own frame, under the buffer lock,
//! and ends a turn like a leader ([`Log::append_directly`]): its wait returns at once.
//!
//! **Poisoning.** A failed write or sync poisons the log: after a failed sync the operating
//! system may have dropped the unsynced pages and report the next sync as a success
//! ("fsyncgate"), so the log never retries and carries on. The failed batch's waiters get
//! [`Error::CommitOutcomeUnknown`] (their records may be on the disk); every later append and
//! every waiter whose frame was not in that batch get [`Error::Poisoned`]. A position is
//! reported written or durable only when a batch that contained it succeeded.
//!
//! **Segments.** When the segment being appended to passes the configured size, the next
//! frame starts a new segment (its number and salt are chosen at append time, so frames for
//! it can be encoded before it exists). The leader that meets the change syncs the old
//! segment completely, then creates the new one (header and name synced) before writing to
//! it: a segment followed by another was durable to its end (`docs/durability.md` §2). It
//! holds the sync lock for all of it, so that a sync never meets a segment half switched.
//!
//! **Retirement.** Once a checkpoint at `S` is installed, a segment whose every record has a
//! timestamp at most `S` is no longer needed ([`Log::remove_segments_covered_by`]). Log order
//! is not timestamp order, so a segment's header timestamp bounds its records from below
//! only: the buffer, which sees every append, keeps each live segment's largest record
//! timestamp in memory. Only a prefix of the segments goes (recovery requires contiguous
//! numbers), never the one being appended to nor one the leader may still write or sync.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::path::{Path, PathBuf};

use super::frame;
use super::policy::SyncPolicy;
use super::record;
use super::segment::{self, SegmentWriter, HEADER_LEN};
use super::storage::{Storage, StorageFile, SyncHandle};
use crate::error::{Error, Result};
use crate::sync::faults::{self, Fault};
use crate::sync::{
    order_seq_cst_accesses_for_loom, AtomicBool, AtomicU64, AtomicUsize, Backoff, Mutex, Ordering,
    WaitQueue,
};

#[cfg(not(loom))]
mod flusher;
#[cfg(not(loom))]
pub(crate) use flusher::LogFlusher;

/// The segment size past which the log starts a new segment, unless configured.
pub(crate) const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// How many growing spins (`Backoff::spin`: 1 to 64 pauses each, a few microseconds in all)
/// a waiter for a write-only batch makes before it sleeps.
#[cfg(not(loom))]
const WRITE_WAIT_SPINS: usize = 8;
/// Under loom a spin is a yield: one lets the models reach both spinning and sleeping.
#[cfg(loom)]
const WRITE_WAIT_SPINS: usize = 1;

/// [`Log::start_writeback`] starts writeback in blocks of this many bytes of a segment.
const WRITEBACK_ALIGN: u64 = 64 << 10;

/// The largest frame buffer kept for reuse from one batch to the next.
const SPARE_BUFFER_MAX: usize = 1 << 20;

/// A position in the log: the byte just past a frame, counting every segment's bytes (header
/// included) after the previous segment's, from the first segment this [`Log`] wrote. Only
/// compared within one `Log`: positions are not stored on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Lsn(pub(crate) u64);

/// How a [`Log`] writes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogOptions {
    pub(crate) policy: SyncPolicy,
    /// A segment that reached this many bytes takes no more frames (a frame bigger than
    /// this gets a segment of its own).
    pub(crate) segment_size: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            policy: SyncPolicy::default(),
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// Encoded frames waiting to be written, all for one segment.
struct Chunk {
    segment: u64,
    salt: u64,
    /// The header's first timestamp, if the leader must create the segment.
    first_ts: u64,
    /// The position of the segment's first byte.
    base: u64,
    frames: Vec<u8>,
}

/// Why the log is poisoned.
struct Failure {
    cause: std::sync::Arc<io::Error>,
    /// Positions above the durable (or written) one and up to this were in the batch whose
    /// write or sync failed: their outcome is unknown. Later ones were never written.
    unknown_up_to: u64,
}

/// A segment file of the log that has not been retired, as the buffer accounts for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LiveSegment {
    pub(crate) number: u64,
    /// Its bytes, header included (for the segment appends go to: so far).
    pub(crate) bytes: u64,
    /// The largest timestamp of a record in it; `None` while it holds none.
    pub(crate) max_ts: Option<u64>,
}

/// What appends share, under [`Log::buffer`].
struct Buffer {
    /// Frames appended and not yet taken by a leader, in log order.
    chunks: Vec<Chunk>,
    /// The position just past the last appended frame.
    end: u64,
    /// The segment appends go to: its number, salt, header timestamp and first position.
    tail: u64,
    tail_salt: u64,
    tail_first_ts: u64,
    tail_base: u64,
    /// Every later append has a timestamp at least this (see [`Log::raise_ts_floor`]).
    ts_floor: u64,
    failure: Option<Failure>,
    /// Set by [`Log::close`]: every later append fails with [`Error::Closed`].
    closed: bool,
    /// An emptied frame buffer of an earlier batch, which the next chunk reuses instead of
    /// growing a new one (the leader hands it back when it takes a batch).
    spare: Vec<u8>,
    /// The segments not yet retired, oldest first; the last is `tail` (its `bytes` kept up
    /// to date at every append).
    live: VecDeque<LiveSegment>,
    /// The segment the leader writes to: every segment numbered below it was synced to its
    /// end and is never written or synced again, so it may be removed. (A segment appends
    /// moved past may not even exist yet: the leader creates it when it meets its frames.)
    writing: u64,
}

/// The file being written, under [`Log::writer`] (held by one leader at a time).
struct Writer<F> {
    segment: SegmentWriter<F>,
    /// The position of the segment's first byte.
    base: u64,
    /// The last batch's frame buffer, emptied, for [`Buffer::spare`].
    spare: Vec<u8>,
    /// The frame a direct write encodes ([`Log::append_directly`]), reused.
    direct: Vec<u8>,
}

/// The sync handle of a log's segment, shared so that writeback can be started outside the
/// sync lock (and, in the loom models' negative control, a sync run outside it).
type SharedHandle<S> = std::sync::Arc<<<S as Storage>::File as StorageFile>::SyncHandle>;

/// The segment being written, as syncs see it, under [`Log::syncing`].
struct Syncing<S: Storage> {
    handle: SharedHandle<S>,
    /// The position of the segment's first byte.
    base: u64,
    /// Writeback was started (or the segment synced) below this position.
    writeback_from: u64,
}

/// The write-ahead log: many committers append, one leader at a time writes and syncs.
pub(crate) struct Log<S: Storage> {
    storage: S,
    dir: PathBuf,
    policy: SyncPolicy,
    segment_size: u64,
    buffer: Mutex<Buffer>,
    /// Taken only by a leader (with `try_lock`), by a direct write and by [`Log::sync_now`]
    /// to write what is queued, each ending a turn after it; held across writes (and a
    /// rollover's sync, or an `Always` batch's), so no waiter ever blocks on it. Nothing else may take it,
    /// not even briefly: a waiter whose `try_lock` fails sleeps until a turn ends, and a
    /// holder that ends none (a statistics read) could leave every committer asleep.
    writer: Mutex<Writer<S::File>>,
    /// The sync handle of the segment being written. Its lock serializes syncs and is held
    /// across each (lock order: `writer`, then this, then `buffer`): a sync that fails
    /// poisons the log before releasing it ([`Log::sync_written`]).
    syncing: Mutex<Syncing<S>>,
    /// Successful file syncs of frames (the segment headers' syncs are not counted). Counted
    /// outside the writer lock so that reading it never takes that lock.
    syncs: AtomicU64,
    /// Everything below this position was handed to the operating system.
    written: AtomicU64,
    /// Everything below this position is durable.
    durable: AtomicU64,
    /// Set (after [`Buffer::failure`]) when a write or sync failed.
    poisoned: AtomicBool,
    /// Held while segments are being removed: concurrent retirements would remove in no
    /// particular order, and a crash could then leave a gap in the numbering.
    retiring: Mutex<()>,
    /// Leader turns finished: what waiters sleep on.
    turns: AtomicU64,
    /// Waiters asleep or about to sleep on `turns`: a leader wakes them only if there are.
    sleepers: AtomicUsize,
    queue: WaitQueue,
}

impl<S: Storage> Log<S> {
    /// Creates segment `first_segment` in `dir` (its header and name durable) and a log
    /// appending to it. `first_ts`: every commit appended has a timestamp at least this.
    pub(crate) fn create(
        storage: S,
        dir: &Path,
        first_segment: u64,
        first_ts: u64,
        options: LogOptions,
    ) -> Result<Self> {
        let salt = fastrand::u64(..);
        let segment = SegmentWriter::create_salted(
            &storage,
            dir,
            first_segment,
            first_ts,
            salt,
            options.segment_size,
        )?;
        let start = HEADER_LEN as u64;
        let handle = std::sync::Arc::new(segment.sync_handle()?);
        Ok(Self {
            storage,
            dir: dir.to_path_buf(),
            policy: options.policy,
            segment_size: options.segment_size,
            buffer: Mutex::new(Buffer {
                chunks: Vec::new(),
                end: start,
                tail: first_segment,
                tail_salt: salt,
                tail_first_ts: first_ts,
                tail_base: 0,
                ts_floor: first_ts,
                failure: None,
                closed: false,
                spare: Vec::new(),
                live: VecDeque::from([LiveSegment {
                    number: first_segment,
                    bytes: start,
                    max_ts: None,
                }]),
                writing: first_segment,
            }),
            writer: Mutex::new(Writer {
                segment,
                base: 0,
                spare: Vec::new(),
                direct: Vec::new(),
            }),
            syncing: Mutex::new(Syncing {
                handle,
                base: 0,
                writeback_from: start,
            }),
            syncs: AtomicU64::new(0),
            written: AtomicU64::new(start),
            durable: AtomicU64::new(start),
            poisoned: AtomicBool::new(false),
            retiring: Mutex::new(()),
            turns: AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
            queue: WaitQueue::new(),
        })
    }

    /// Promises that every later append has a timestamp at least `ts`: the next segment's
    /// header records it as its first timestamp. Committers raise it with each append
    /// ([`append_above`](Self::append_above)), to their visible timestamp plus one (every
    /// commit at or below it was appended before it became visible).
    pub(crate) fn raise_ts_floor(&self, ts: u64) {
        let mut buffer = self.buffer.lock();
        buffer.ts_floor = buffer.ts_floor.max(ts);
    }

    /// Queues the record of a commit at `ts` writing `writes` (key, `Some(value)` for a put,
    /// `None` for a delete), and returns the position just past its frame. Nothing is
    /// written yet: see [`wait_committed`](Self::wait_committed).
    ///
    /// Fails with [`Error::Poisoned`] once a write or sync failed.
    pub(crate) fn append<'a>(
        &self,
        ts: u64,
        writes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Result<Lsn> {
        self.append_above(ts, 0, writes)
    }

    /// [`append`](Self::append), raising the timestamp floor to `floor` first (as
    /// [`raise_ts_floor`](Self::raise_ts_floor) does) under the same lock: what a committer
    /// does on every commit, so one lock round trip instead of two.
    pub(crate) fn append_above<'a>(
        &self,
        ts: u64,
        floor: u64,
        writes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Result<Lsn> {
        // The record does not depend on the log's state: encoded before the lock. (Room for
        // a small record up front: growing from empty took several reallocations a commit.)
        let mut payload = Vec::with_capacity(256);
        record::encode(ts, writes, &mut payload);
        let frame_len = frame::encoded_len(payload.len()) as u64;
        let mut b = self.buffer.lock();
        b.ts_floor = b.ts_floor.max(floor);
        if let Some(failure) = &b.failure {
            return Err(Error::Poisoned {
                cause: std::sync::Arc::clone(&failure.cause),
            });
        }
        if b.closed {
            return Err(Error::Closed);
        }
        // A full segment takes no more frames (an empty one takes one, however big).
        if b.end - b.tail_base >= self.segment_size && b.end - b.tail_base > HEADER_LEN as u64 {
            b.tail += 1;
            b.tail_salt = fastrand::u64(..);
            b.tail_first_ts = b.ts_floor;
            b.tail_base = b.end;
            b.end += HEADER_LEN as u64;
            let number = b.tail;
            b.live.push_back(LiveSegment {
                number,
                bytes: HEADER_LEN as u64,
                max_ts: None,
            });
        }
        if let Some(lsn) = self.append_directly(&mut b, ts, &payload, frame_len) {
            return Ok(lsn);
        }
        let synced_to = self.synced_to(&b);
        let (tail, salt, first_ts, base) = (b.tail, b.tail_salt, b.tail_first_ts, b.tail_base);
        let chunk = match b.chunks.last_mut() {
            Some(chunk) if chunk.segment == tail => chunk,
            _ => {
                let frames = mem::take(&mut b.spare);
                b.chunks.push(Chunk {
                    segment: tail,
                    salt,
                    first_ts,
                    base,
                    frames,
                });
                b.chunks.last_mut().expect("just pushed")
            }
        };
        frame::encode(salt, synced_to, &payload, &mut chunk.frames);
        Ok(Self::account_frame(&mut b, ts, frame_len))
    }

    /// The `synced_to` mark of a frame appended now to the tail segment: how far that
    /// segment is durable. Read under the buffer lock, so that it never decreases along a
    /// segment. The durable position is the end of a synced batch or write: a frame boundary
    /// of the tail segment, or (while the tail's header is not yet synced or the tail is not
    /// yet created) before it, when the header is all a frame can count on.
    fn synced_to(&self, b: &Buffer) -> u64 {
        let durable = self.durable.load(Ordering::Acquire);
        durable.saturating_sub(b.tail_base).max(HEADER_LEN as u64)
    }

    /// Moves the buffer's end past a frame of `frame_len` bytes at `ts` appended to the tail
    /// segment; its position.
    fn account_frame(b: &mut Buffer, ts: u64, frame_len: u64) -> Lsn {
        b.end += frame_len;
        let tail = b.live.back_mut().expect("the tail segment is live");
        tail.bytes += frame_len;
        tail.max_ts = Some(tail.max_ts.map_or(ts, |max| max.max(ts)));
        Lsn(b.end)
    }

    /// Under a policy that does not sync at commit, writes the frame of `payload` (a commit
    /// at `ts`, `frame_len` bytes framed) to the segment at once, when nothing is queued before it and no leader is at
    /// work: the write (a copy into the mapped segment) costs less than handing the frame to
    /// a leader and waiting for its turn. Returns its position, written, or `None` for the
    /// queue. A failed write poisons the log as a leader's would, and the position it
    /// returns then waits to [`Error::CommitOutcomeUnknown`].
    fn append_directly(
        &self,
        b: &mut Buffer,
        ts: u64,
        payload: &[u8],
        frame_len: u64,
    ) -> Option<Lsn> {
        if self.policy.syncs_at_commit() || !b.chunks.is_empty() {
            return None;
        }
        let mut guard = self.writer.try_lock()?;
        let w = &mut *guard;
        // A segment that appends just moved to is the leader's to create.
        if w.segment.header().number != b.tail {
            drop(guard);
            self.end_turn();
            return None;
        }
        w.direct.clear();
        frame::encode(b.tail_salt, self.synced_to(b), payload, &mut w.direct);
        let written = w.segment.append_encoded(&w.direct);
        let lsn = Self::account_frame(b, ts, frame_len);
        match written {
            Ok(_) => self.written.store(lsn.0, Ordering::Release),
            Err(e) => {
                self.record_failure(b, e, lsn.0);
            }
        }
        drop(guard);
        // Whoever holds the writer lock ends a turn: a waiter that failed to take it sleeps
        // until one ends.
        self.end_turn();
        Some(lsn)
    }

    /// Poisons the log after a write or sync failed with `e`: positions up to `unknown_up_to`
    /// not yet reached may be on the disk. Returns `e` as an [`Error::Io`]. The first
    /// failure's cause is the one reported; a later one only widens the unknown range: a
    /// leader whose batch was being written when a sync outside the writer lock failed may
    /// have put frames past that sync's range in the file before it saw the failure, and
    /// their waiters must hear "unknown", never "not written".
    fn record_failure(&self, b: &mut Buffer, e: Error, unknown_up_to: u64) -> Error {
        let cause = match e {
            Error::Io(cause) | Error::Poisoned { cause } => cause,
            other => std::sync::Arc::new(io::Error::other(other.to_string())),
        };
        b.chunks.clear();
        let failure = b.failure.get_or_insert(Failure {
            cause: std::sync::Arc::clone(&cause),
            unknown_up_to,
        });
        failure.unknown_up_to = failure.unknown_up_to.max(unknown_up_to);
        self.poisoned.store(true, Ordering::Release);
        Error::Io(cause)
    }

    /// The sync policy the log was created with.
    pub(crate) fn policy(&self) -> SyncPolicy {
        self.policy
    }

    /// Waits until the frame ending at `lsn` is what the policy promises at commit: synced
    /// under [`SyncPolicy::Always`], written (to the operating system) otherwise.
    pub(crate) fn wait_committed(&self, lsn: Lsn) -> Result<()> {
        if self.policy.syncs_at_commit() {
            self.wait_durable(lsn)
        } else {
            self.wait_written(lsn)
        }
    }

    /// Waits until the frame ending at `lsn` is durable, leading a batch (write and sync)
    /// when no leader is at work.
    ///
    /// [`Error::CommitOutcomeUnknown`] if the batch holding the frame failed to be written
    /// or synced, [`Error::Poisoned`] if an earlier failure left it unwritten.
    pub(crate) fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        self.wait(lsn, &self.durable, true)
    }

    /// Waits until the frame ending at `lsn` was written to the operating system (a crash of
    /// the process does not lose it; a power loss may), leading a batch (a write, no sync)
    /// when no leader is at work. Errors as [`wait_durable`](Self::wait_durable).
    pub(crate) fn wait_written(&self, lsn: Lsn) -> Result<()> {
        self.wait(lsn, &self.written, false)
    }

    /// Writes and syncs everything appended so far (the periodic syncer's step).
    pub(crate) fn sync_now(&self) -> Result<()> {
        self.sync_to_end(false)
    }

    /// [`sync_now`](Self::sync_now); with `finish`, then gives back the segment's unused
    /// reservation (the last segment, at close).
    ///
    /// What is queued is written in a turn under the writer lock (a copy into the map,
    /// unless the batch meets a new segment); the sync runs after it, outside that lock, so
    /// committers go on writing while the disk works.
    fn sync_to_end(&self, finish: bool) -> Result<()> {
        let end = self.buffer.lock().end;
        if self.written.load(Ordering::Acquire) < end {
            let mut writer = self.writer.lock();
            self.lead(&mut writer, end, &self.written, false);
            drop(writer);
            self.end_turn();
        }
        // A failure (or an earlier one) poisons the log: reported just below.
        let _ = self.sync_written();
        let synced = self
            .check_reached(Lsn(end), &self.durable)
            .unwrap_or(Ok(()));
        if !(finish && synced.is_ok()) {
            return synced;
        }
        let mut writer = self.writer.lock();
        let finished = writer.segment.finish();
        drop(writer);
        self.end_turn();
        finished
    }

    /// Syncs the segment being written up to what was written when the sync began, and
    /// publishes that position as durable; nothing if it is durable already. Holds only the
    /// sync lock across the sync (a caller may hold the writer lock too: an `Always` leader).
    ///
    /// Every segment before the one being written was synced to its end when it was left
    /// (under this lock too), and `written` reaches into a new segment only after the
    /// rollover installed its handle: so the handle's file holds every byte between the
    /// durable position and `written`.
    ///
    /// A failed sync poisons the log before the lock is released: the next sync, which
    /// waited for the lock, then sees the log poisoned and publishes nothing, even if the
    /// operating system (having dropped the failed pages) reports it a success.
    fn sync_written(&self) -> Result<()> {
        let syncing = self.syncing.lock();
        self.refuse_if_poisoned()?;
        let upto = self.written.load(Ordering::Acquire);
        // (The negative control that publishes early still syncs: only the order is wrong.)
        if self.durable.load(Ordering::Acquire) >= upto && !faults::active(Fault::DurableBeforeSync)
        {
            return Ok(());
        }
        let synced = if faults::active(Fault::SyncOutsideItsLock) {
            let unlocked = std::sync::Arc::clone(&syncing.handle);
            drop(syncing);
            unlocked.sync()
        } else {
            syncing.handle.sync()
        };
        match synced {
            Ok(()) => {
                self.syncs.fetch_add(1, Ordering::Relaxed);
                self.durable.fetch_max(upto, Ordering::Release);
                Ok(())
            }
            Err(e) => Err(self.record_failure(&mut self.buffer.lock(), Error::io(e), upto)),
        }
    }

    /// [`Error::Poisoned`] once a write or sync failed. A sync checks it under the sync lock
    /// before it starts: see [`sync_written`](Self::sync_written).
    fn refuse_if_poisoned(&self) -> Result<()> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        let b = self.buffer.lock();
        let failure = b.failure.as_ref().expect("poisoned without a failure");
        Err(Error::Poisoned {
            cause: std::sync::Arc::clone(&failure.cause),
        })
    }

    /// Starts writing back (to the disk, without waiting and without a sync) what the
    /// segment being written holds past where the last call or sync got to, in whole
    /// [`WRITEBACK_ALIGN`] blocks: so that the next sync, a periodic one or the rollover's,
    /// finds little left to write. The flusher thread calls it ([`LogFlusher`]); under
    /// `Never` nothing else syncs, and the sync of a full segment at rollover kept committers
    /// waiting ~40 ms. Nothing is promised by it, and nothing fails.
    pub(crate) fn start_writeback(&self) {
        let (handle, range) = {
            let mut syncing = self.syncing.lock();
            // (Below the base right after a rollover, until its batch's end is published.)
            let Some(in_segment) = self
                .written
                .load(Ordering::Acquire)
                .checked_sub(syncing.base)
            else {
                return;
            };
            // Whole blocks only: a page still being filled would be written twice.
            let to = syncing.base + in_segment - in_segment % WRITEBACK_ALIGN;
            let from = syncing
                .writeback_from
                .max(self.durable.load(Ordering::Acquire));
            if to <= from {
                return;
            }
            syncing.writeback_from = to;
            let handle = std::sync::Arc::clone(&syncing.handle);
            (handle, (from - syncing.base, to - from))
        };
        // Outside the sync lock: the call can block on a busy device, and a rollover (which
        // holds the writer lock) may be waiting for that lock.
        handle.start_writeback(range.0, range.1);
    }

    /// Refuses every later append ([`Error::Closed`]), then writes and syncs everything
    /// appended before and cuts the segment's unused reservation: once this returns, the log
    /// does no more I/O, so the directory can be handed to another owner. Fails if the log is
    /// poisoned (what was synced stays synced).
    pub(crate) fn close(&self) -> Result<()> {
        self.buffer.lock().closed = true;
        // The outcome of the frames in a failed batch is their committers' to report: the
        // log is simply poisoned.
        self.sync_to_end(true).map_err(|e| match e {
            Error::CommitOutcomeUnknown { cause } => Error::Poisoned { cause },
            e => e,
        })
    }

    /// Syncs of frames so far (not counting segment headers): one per batch under
    /// [`SyncPolicy::Always`].
    pub(crate) fn syncs(&self) -> u64 {
        if faults::active(Fault::SyncCountUnderWriterLock) {
            let _writer = self.writer.lock();
            return self.syncs.load(Ordering::Relaxed);
        }
        self.syncs.load(Ordering::Relaxed)
    }

    /// Bytes handed to the operating system since this log was created, segment headers
    /// included.
    pub(crate) fn written_bytes(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.buffer.lock().closed
    }

    /// The storage and directory the log writes to (checkpoints go beside its segments).
    pub(crate) fn place(&self) -> (&S, &Path) {
        (&self.storage, &self.dir)
    }

    /// Bytes in the segments not yet retired, headers included, counting every frame
    /// appended (written or not): what a restart would read, and what the engine compares
    /// with its checkpoint threshold.
    pub(crate) fn live_bytes(&self) -> u64 {
        self.buffer.lock().live.iter().map(|s| s.bytes).sum()
    }

    /// Accounts for segments that an earlier run left in the directory (recovery read them:
    /// their sizes and largest record timestamps), so that they are retired like this log's
    /// own. `older` must number the segments just below this log's first, in order.
    ///
    /// # Panics
    /// If the numbers do not lead up to the oldest live segment one by one.
    pub(crate) fn adopt_segments(&self, older: impl IntoIterator<Item = LiveSegment>) {
        let older: Vec<LiveSegment> = older.into_iter().collect();
        let mut b = self.buffer.lock();
        let mut next = b.live.front().expect("the tail segment is live").number;
        for s in older.iter().rev() {
            assert_eq!(
                s.number + 1,
                next,
                "adopted segments must precede the log's"
            );
            next = s.number;
        }
        for s in older.into_iter().rev() {
            b.live.push_front(s);
        }
    }

    /// Removes the segments whose every record has a timestamp at most `ts`, once a
    /// checkpoint at `ts` is installed (durable): oldest first, only a contiguous prefix of
    /// the log (recovery requires contiguous numbers), and never the segment appends go to
    /// nor one the leader may still write or sync. Returns how many it removed.
    ///
    /// Each removal is made durable (directory sync) before the next: without the syncs a
    /// crash could keep a later removal and lose an earlier one, leaving a gap. Segments are
    /// large, so this costs a few directory syncs per checkpoint. A failed removal leaves the
    /// segment accounted for (a retry removes it); nothing here poisons the log.
    pub(crate) fn remove_segments_covered_by(&self, ts: u64) -> Result<u64> {
        let _one_at_a_time = self.retiring.lock();
        let covered: Vec<u64> = {
            let b = self.buffer.lock();
            b.live
                .iter()
                .take_while(|s| {
                    s.number != b.tail
                        && s.number < b.writing
                        && (s.max_ts.is_none_or(|max| max <= ts)
                            || faults::active(Fault::RetireIgnoringMaxTs))
                })
                .map(|s| s.number)
                .collect()
        };
        let mut removed = 0;
        for number in covered {
            match self
                .storage
                .remove(&self.dir.join(segment::file_name(number)))
            {
                // Gone already: an earlier attempt removed it and then failed to sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other.map_err(Error::io)?,
            }
            self.storage.sync_dir(&self.dir).map_err(Error::io)?;
            let mut b = self.buffer.lock();
            let oldest = b.live.pop_front().expect("a covered segment is live");
            debug_assert_eq!(oldest.number, number);
            removed += 1;
        }
        Ok(removed)
    }

    /// `Some(result)` if `lsn` was reached or can no longer be.
    fn check_reached(&self, lsn: Lsn, reached: &AtomicU64) -> Option<Result<()>> {
        if reached.load(Ordering::Acquire) >= lsn.0 {
            return Some(Ok(()));
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Some(Err(self.failure_for(lsn, reached)));
        }
        None
    }

    fn wait(&self, lsn: Lsn, reached: &AtomicU64, sync: bool) -> Result<()> {
        loop {
            if let Some(result) = self.check_reached(lsn, reached) {
                return result;
            }
            // Loaded before trying the writer lock: if a leader holds it, that leader's turn
            // ends after this load, so the sleep below cannot miss its wake.
            let turn = self.turns.load(Ordering::SeqCst);
            if let Some(mut writer) = self.writer.try_lock() {
                self.lead(&mut writer, lsn.0, reached, sync);
                drop(writer);
                self.end_turn();
                continue;
            }
            // A leader that only writes (no sync) finishes in well under a microsecond: spin
            // on its turn a little before sleeping, as a sleep and its wake would cost ten
            // times the write. A leader that syncs takes milliseconds: sleep at once.
            if !sync && self.turn_ends_soon(turn) {
                continue;
            }
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            order_seq_cst_accesses_for_loom();
            self.queue.sleep_until(&self.turns, turn + 1);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            if faults::active(Fault::WaitTrustsAnyTurn) {
                return Ok(());
            }
        }
    }

    /// Spins a few microseconds at most (growing pauses) until the leader turn after `turn`
    /// ends; whether it did.
    fn turn_ends_soon(&self, turn: u64) -> bool {
        let backoff = Backoff::new();
        for _ in 0..WRITE_WAIT_SPINS {
            backoff.spin();
            if self.turns.load(Ordering::Acquire) != turn {
                return true;
            }
        }
        false
    }

    /// Ends a leader turn (after the writer lock was released): wakes every sleeping waiter,
    /// to return if the batch covered it, or to compete to lead the next.
    fn end_turn(&self) {
        let reached = self.turns.fetch_add(1, Ordering::SeqCst) + 1;
        order_seq_cst_accesses_for_loom();
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            while self.queue.wake_one_up_to(&self.turns, reached) {}
        }
    }

    /// One batch, under the writer lock: takes every buffered frame, writes them and, with
    /// `sync`, syncs them; publishes the new written and durable positions. Does nothing if
    /// `reached` is at `target` already (a leader that just finished covered it) or the log
    /// is poisoned. A failure poisons the log.
    fn lead(&self, w: &mut Writer<S::File>, target: u64, reached: &AtomicU64, sync: bool) {
        if reached.load(Ordering::Acquire) >= target {
            return;
        }
        let (chunks, end) = {
            let mut b = self.buffer.lock();
            if b.failure.is_some() {
                return;
            }
            if b.spare.capacity() == 0 {
                b.spare = mem::take(&mut w.spare);
            }
            (mem::take(&mut b.chunks), b.end)
        };
        if let Err(e) = self.write_batch(w, chunks, end, sync) {
            self.record_failure(&mut self.buffer.lock(), e, end);
        }
    }

    fn write_batch(
        &self,
        w: &mut Writer<S::File>,
        chunks: Vec<Chunk>,
        end: u64,
        sync: bool,
    ) -> Result<()> {
        for chunk in chunks {
            if chunk.segment != w.segment.header().number {
                let mut syncing = self.syncing.lock();
                if let Err(e) = self.roll_over(w, &chunk, &mut syncing) {
                    // Poisoned before the sync lock is released (see `sync_written`).
                    return Err(self.record_failure(&mut self.buffer.lock(), e, end));
                }
            }
            w.segment.append_encoded(&chunk.frames)?;
            // Kept for reuse unless a big commit grew it: a buffer's size follows a batch's.
            if chunk.frames.capacity() <= SPARE_BUFFER_MAX {
                w.spare = chunk.frames;
                w.spare.clear();
            }
        }
        debug_assert_eq!(w.base + w.segment.written(), end);
        if sync && faults::active(Fault::DurableBeforeSync) {
            self.durable.fetch_max(end, Ordering::Release);
        }
        self.written.store(end, Ordering::Release);
        if sync {
            self.sync_written()?;
        }
        Ok(())
    }

    /// Leaves the segment being written for `next`'s, under the writer and sync locks: syncs
    /// the old one to its end, whatever the policy (a reader trusts a segment that another
    /// one follows to its end), gives its unused reservation back, durably (a segment that
    /// another follows ends at its last frame), and only then creates the new one and
    /// installs its sync handle.
    fn roll_over(
        &self,
        w: &mut Writer<S::File>,
        next: &Chunk,
        syncing: &mut Syncing<S>,
    ) -> Result<()> {
        // A sync outside the writer lock may have failed since this batch was taken: the old
        // segment's sync could then succeed without the pages the failed one dropped, and the
        // new segment would vouch for it to its end. (Checked under the sync lock, which the
        // failed sync released only after poisoning.)
        if !faults::active(Fault::RollOverPastFailure) {
            self.refuse_if_poisoned()?;
        }
        w.segment.sync()?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.durable
            .fetch_max(w.base + w.segment.synced(), Ordering::Release);
        w.segment.finish()?;
        w.segment = SegmentWriter::create_salted(
            &self.storage,
            &self.dir,
            next.segment,
            next.first_ts,
            next.salt,
            self.segment_size,
        )?;
        w.base = next.base;
        *syncing = Syncing {
            handle: std::sync::Arc::new(w.segment.sync_handle()?),
            base: w.base,
            writeback_from: w.base + HEADER_LEN as u64,
        };
        // The old segment is done with: from now on it may be retired.
        self.buffer.lock().writing = next.segment;
        Ok(())
    }

    /// The error for a waiter at `lsn` that the poisoned log did not reach.
    fn failure_for(&self, lsn: Lsn, reached: &AtomicU64) -> Error {
        let b = self.buffer.lock();
        let failure = b.failure.as_ref().expect("poisoned without a failure");
        let cause = std::sync::Arc::clone(&failure.cause);
        // Loaded after the failure was seen: the failed leader published what it reached
        // before it recorded the failure.
        if reached.load(Ordering::Acquire) < lsn.0 && lsn.0 <= failure.unknown_up_to {
            Error::CommitOutcomeUnknown { cause }
        } else {
            Error::Poisoned { cause }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
