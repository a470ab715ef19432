//! The durable database's side of the engine: the log its commits write through
//! ([`CommitLog`]), and opening (lock, recover, start the log) and closing a directory
//! ([`Durability`]).
//!
//! The commit protocol itself (where the append and the wait sit among the locks, the
//! timestamp and the publication) is in `commit`; this module only hands it a log.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use super::checkpoint;
use super::checkpointer::Checkpointer;
use super::dir_lock::DirLock;
use super::image;
use super::log::{Log, LogOptions, Lsn};
use super::policy::SyncPolicy;
use super::recovery::{self, Recovered, RecoveryOptions};
use super::report::{CheckpointReport, DroppedTail, LogStats, RecoveryReport, RepairReport};
use super::storage::Storage;
use crate::error::{Error, Result};
use crate::snapshot::Snapshot;

/// The write-ahead log as a commit sees it. A trait so that the engine does not depend on
/// the file layer: production logs over the file system, tests over `SimStorage`.
pub(crate) trait CommitLog: Send + Sync {
    /// Queues the record of the commit at `ts` writing `writes` (key, `Some(value)` for a
    /// put, `None` for a delete, sorted by key), and returns its position. `floor` is a
    /// timestamp every commit appended from now on has at least (see
    /// [`Log::raise_ts_floor`]). Writes nothing yet.
    ///
    /// [`Error::Closed`] after [`close`](Self::close), [`Error::Poisoned`] after a failed
    /// write or sync, [`Error::WriteSetTooLarge`] for a record over the format's 4 GiB.
    fn append(&self, ts: u64, floor: u64, writes: &[(&[u8], Option<&[u8]>)]) -> Result<Lsn>;
    /// Returns once the record ending at `lsn` is what the sync policy promises at commit
    /// (synced under [`SyncPolicy::Always`], written otherwise).
    fn wait(&self, lsn: Lsn) -> Result<()>;
    /// Whether [`wait`](Self::wait) may last as long as a sync of the policy's (see
    /// [`SyncPolicy::waits_for_sync`]): a one-key commit waits under its map shard's lock
    /// only if not.
    fn waits_for_sync(&self) -> bool;
    /// Refuses later appends, and writes and syncs the earlier ones.
    fn close(&self) -> Result<()>;
    /// Writes the checkpoint of `snapshot` beside the log and installs it, then removes
    /// older checkpoints and the segments it covers. [`Error::Closed`] after close (the
    /// directory may belong to someone else by then).
    fn checkpoint(&self, snapshot: &Snapshot) -> Result<CheckpointReport>;
    /// The log's counters.
    fn stats(&self) -> LogStats;
}

/// The payload length of a commit record (`record::encode`'s layout).
fn record_len(writes: &[(&[u8], Option<&[u8]>)]) -> u64 {
    let fixed = 12;
    writes.iter().fold(fixed, |n, (key, value)| {
        n + 5 + key.len() as u64 + value.map_or(0, |v| 4 + v.len() as u64)
    })
}

impl<S: Storage> CommitLog for Log<S> {
    fn append(&self, ts: u64, floor: u64, writes: &[(&[u8], Option<&[u8]>)]) -> Result<Lsn> {
        // Frames and records count lengths in u32. The builder keeps keys and values below
        // 4 GiB, but a write set's per-write overhead could still take its record over:
        // refused before anything is queued, so the commit fails whole.
        let len = record_len(writes);
        if len > u64::from(u32::MAX) {
            return Err(Error::WriteSetTooLarge {
                bytes: usize::try_from(len).unwrap_or(usize::MAX),
                max: u32::MAX as usize,
            });
        }
        self.append_above(ts, floor, writes.iter().copied())
    }

    fn wait(&self, lsn: Lsn) -> Result<()> {
        self.wait_committed(lsn)
    }

    fn waits_for_sync(&self) -> bool {
        self.policy().waits_for_sync()
    }

    fn close(&self) -> Result<()> {
        Log::close(self)
    }

    fn checkpoint(&self, snapshot: &Snapshot) -> Result<CheckpointReport> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let (storage, dir) = self.place();
        let written = image::write_snapshot(storage, dir, snapshot)?;
        // Recovery reads only the newest checkpoint: older ones are dead weight. Removed
        // before the segments, so that a crash in between leaves the new checkpoint and
        // every segment (the log after it still starts where the checkpoint needs it).
        let mut removed_any = false;
        for name in storage.list(dir).map_err(Error::io)? {
            if checkpoint::parse_file_name(&name).is_some_and(|ts| ts < snapshot.ts()) {
                storage.remove(&dir.join(&name)).map_err(Error::io)?;
                removed_any = true;
            }
        }
        if removed_any {
            storage.sync_dir(dir).map_err(Error::io)?;
        }
        let segments_removed = self.remove_segments_covered_by(snapshot.ts())?;
        Ok(CheckpointReport {
            ts: snapshot.ts(),
            keys: written.entries,
            bytes: written.bytes,
            segments_removed,
        })
    }

    fn stats(&self) -> LogStats {
        LogStats {
            bytes_written: self.written_bytes(),
            syncs: self.syncs(),
            live_bytes: self.live_bytes(),
        }
    }
}

/// A durable database's log, background syncer and directory lock, shared by its handles.
pub(crate) struct Durability {
    log: Arc<dyn CommitLog>,
    /// The log's background flusher under [`SyncPolicy::Periodic`] (its syncs) and `Never`
    /// (writeback only), stopped on close.
    #[cfg(not(loom))]
    flusher: Mutex<Option<super::log::LogFlusher>>,
    /// Released on close, once the log does no more I/O.
    lock: Mutex<Option<DirLock>>,
    report: RecoveryReport,
    /// Takes the checkpoints the log's size calls for, in the background.
    checkpointer: Checkpointer,
    /// One checkpoint at a time (explicit or background): each removes what the previous
    /// ones covered.
    checkpointing: Mutex<()>,
}

impl Durability {
    /// The log commits write their records through.
    pub(crate) fn commit_log(&self) -> &dyn CommitLog {
        &*self.log
    }

    /// What opening the directory recovered.
    pub(crate) fn report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Writes a checkpoint of `snapshot` (see [`CommitLog::checkpoint`]), one at a time.
    pub(crate) fn checkpoint(&self, snapshot: &Snapshot) -> Result<CheckpointReport> {
        let _one_at_a_time = self.checkpointing.lock();
        let report = self.log.checkpoint(snapshot)?;
        self.checkpointer.checkpointed(report.bytes);
        Ok(report)
    }

    /// The log's counters.
    pub(crate) fn log_stats(&self) -> LogStats {
        self.log.stats()
    }

    /// The background checkpointer, which a commit asks for a checkpoint.
    pub(crate) fn checkpointer(&self) -> &Checkpointer {
        &self.checkpointer
    }

    /// Stops the background syncer, closes the log (later commits fail with
    /// [`Error::Closed`]; earlier ones are written and synced) and releases the directory.
    /// The directory is released even if the final sync failed (the error is returned):
    /// the log does no more I/O either way.
    pub(crate) fn close(&self) -> Result<()> {
        self.checkpointer.stop();
        #[cfg(not(loom))]
        drop(self.flusher.lock().take());
        let closed = self.log.close();
        drop(self.lock.lock().take());
        closed
    }
}

impl Drop for Durability {
    /// The last handle is gone without [`close`](Durability::close): the same, best effort
    /// (a failure has nobody to report to; what was acknowledged was already durable as its
    /// policy promised).
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// How a durable database is opened and kept (the builder's durable options).
#[derive(Clone, Debug)]
pub(crate) struct DurableOptions {
    pub(crate) sync: SyncPolicy,
    /// Cut the log at damaged data instead of refusing to open (see `DbBuilder::repair`).
    pub(crate) repair: bool,
    /// A checkpoint is taken in the background once the log a reopen would read passes this
    /// many bytes (`u64::MAX`: never).
    pub(crate) checkpoint_log_bytes: u64,
    /// Where the log starts a new segment (small in tests, for many segments).
    pub(crate) segment_size: u64,
}

impl Default for DurableOptions {
    fn default() -> Self {
        Self {
            sync: SyncPolicy::default(),
            repair: false,
            checkpoint_log_bytes: crate::options::DEFAULT_CHECKPOINT_LOG_BYTES,
            segment_size: super::log::DEFAULT_SEGMENT_SIZE,
        }
    }
}

impl From<SyncPolicy> for DurableOptions {
    fn from(sync: SyncPolicy) -> Self {
        Self {
            sync,
            ..Self::default()
        }
    }
}

/// A directory opened: its log started after the recovered state.
pub(crate) struct Opened {
    pub(crate) durability: Durability,
    pub(crate) recovered: Recovered,
}

/// Recovers `dir` and starts a log after what it holds: the next segment number, first
/// timestamp one above the highest recovered. `lock` is the directory's lock (`None` over
/// simulated storage), released on close.
pub(crate) fn open<S: Storage + 'static>(
    storage: S,
    dir: &Path,
    options: &DurableOptions,
    lock: Option<DirLock>,
) -> Result<Opened> {
    let policy = options.sync;
    let mut recovered = recovery::recover(
        &storage,
        dir,
        RecoveryOptions {
            repair: options.repair,
            read_only: false,
        },
    )?;
    let checkpointer = Checkpointer::new(options.checkpoint_log_bytes);
    // The image recovery read sets when the next checkpoint is due, as one just taken would.
    if let Some(ts) = recovered.checkpoint_ts {
        if let Ok(bytes) = storage.len(&dir.join(checkpoint::file_name(ts))) {
            checkpointer.checkpointed(bytes);
        }
    }
    let log_options = LogOptions {
        policy,
        segment_size: options.segment_size,
    };
    let log = Arc::new(Log::create(
        storage,
        dir,
        recovered.next_segment,
        recovered.max_ts + 1,
        log_options,
    )?);
    // The segments recovery read precede the new one: retired like its own once a
    // checkpoint covers them.
    log.adopt_segments(std::mem::take(&mut recovered.segments));
    #[cfg(not(loom))]
    let flusher = match policy {
        SyncPolicy::Always => None,
        SyncPolicy::Periodic(every) => Some(Some(every)),
        SyncPolicy::Never => Some(None),
    }
    .map(|sync_every| super::log::LogFlusher::spawn(Arc::clone(&log), sync_every));
    let report = RecoveryReport {
        checkpoint_ts: recovered.checkpoint_ts,
        records_replayed: recovered.records_replayed,
        keys: recovered.entries.len(),
        visible_ts: recovered.max_ts,
        torn_tail: recovered.torn_tail.as_ref().map(|t| DroppedTail {
            file: t.file.clone(),
            offset: t.offset,
            bytes: t.dropped,
        }),
        repaired: recovered.repaired.as_ref().map(|r| RepairReport {
            file: r.file.clone(),
            offset: r.offset,
            bytes: r.dropped,
            removed: r.removed.iter().map(|(file, _)| file.clone()).collect(),
            what: r.what.clone(),
        }),
    };
    Ok(Opened {
        durability: Durability {
            log,
            #[cfg(not(loom))]
            flusher: Mutex::new(flusher),
            lock: Mutex::new(lock),
            report,
            checkpointer,
            checkpointing: Mutex::new(()),
        },
        recovered,
    })
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, not(loom)))]
mod checkpoint_tests;
