//! The log's background thread under the policies that do not sync at commit. Under
//! [`SyncPolicy::Periodic`](crate::durable::policy::SyncPolicy) it syncs the log every
//! interval; under `Periodic` and `Never` alike it starts the writeback of what committers
//! wrote every [`WRITEBACK_EVERY`] ([`Log::start_writeback`]), so that a sync, the periodic
//! one or the one that closes a full segment while committers wait, finds little to write.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Log;
use crate::durable::storage::Storage;

/// How often the flusher starts writeback: at ~150 MB/s of log, ~6 MB a time (every 10 ms
/// made no difference to the stalls and woke the thread four times as often).
const WRITEBACK_EVERY: Duration = Duration::from_millis(40);

/// Flushes a log in the background until dropped (dropping stops the thread and waits for
/// it; a sync in progress finishes first). Stops by itself once a sync fails: the log is
/// poisoned.
pub(crate) struct LogFlusher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl LogFlusher {
    /// Starts the thread: it syncs `log` every `sync_every` (if given) and starts writeback
    /// in between.
    pub(crate) fn spawn<S: Storage + 'static>(
        log: Arc<Log<S>>,
        sync_every: Option<Duration>,
    ) -> Self
    where
        S::File: 'static,
    {
        let tick = sync_every.map_or(WRITEBACK_EVERY, |every| every.min(WRITEBACK_EVERY));
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("snapkv-log-flush".into())
            .spawn(move || {
                // (`None` past the clock's range: an interval too long ever to come.)
                let after = |every: Duration| Instant::now().checked_add(every);
                let mut next_sync = sync_every.and_then(after);
                loop {
                    match stopped.recv_timeout(tick) {
                        Err(RecvTimeoutError::Timeout) => {}
                        // Stopped (the sender is dropped; nothing is ever sent).
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    match next_sync {
                        Some(at) if Instant::now() >= at => {
                            if log.sync_now().is_err() {
                                return;
                            }
                            next_sync = sync_every.and_then(after);
                        }
                        _ => log.start_writeback(),
                    }
                }
            })
            .expect("spawning the log's flusher thread");
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for LogFlusher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panic there is a bug already reported on its thread.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::durable::log::LogOptions;
    use crate::durable::policy::SyncPolicy;
    use crate::durable::storage::SimStorage;

    /// An interval past the clock's range is one that never comes: the thread lives on,
    /// starting writeback, and never syncs (adding it to the clock must not overflow).
    #[test]
    fn an_interval_too_long_to_come_keeps_the_thread_and_never_syncs() {
        let every = Duration::MAX;
        let options = LogOptions {
            policy: SyncPolicy::Periodic(every),
            ..LogOptions::default()
        };
        let log =
            Arc::new(Log::create(SimStorage::new(), Path::new("/db"), 1, 1, options).unwrap());
        let flusher = LogFlusher::spawn(Arc::clone(&log), Some(every));
        let lsn = log.append(1, [(&b"k"[..], Some(&b"v"[..]))]).unwrap();
        log.wait_committed(lsn).unwrap();
        // A few of its turns.
        std::thread::sleep(3 * WRITEBACK_EVERY);
        let thread = flusher.thread.as_ref().expect("running");
        assert!(!thread.is_finished(), "the flusher thread died");
        assert_eq!(log.syncs(), 0);
    }
}
