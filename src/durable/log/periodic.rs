//! The background thread of [`SyncPolicy::Periodic`](crate::durable::policy::SyncPolicy):
//! commits are written at commit time and synced by this thread every interval.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::Log;
use crate::durable::storage::Storage;

/// Syncs a log every interval until dropped (dropping stops the thread and waits for it; a
/// sync in progress finishes first). Stops by itself once a sync fails: the log is poisoned.
pub(crate) struct PeriodicSync {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PeriodicSync {
    pub(crate) fn spawn<S: Storage + 'static>(log: Arc<Log<S>>, every: Duration) -> Self
    where
        S::File: 'static,
    {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("snapkv-log-sync".into())
            .spawn(move || loop {
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {
                        if log.sync_now().is_err() {
                            return;
                        }
                    }
                    // Stopped (the sender is dropped; nothing is ever sent).
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
            .expect("spawning the log's sync thread");
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for PeriodicSync {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panic there is a bug already reported on its thread.
            let _ = thread.join();
        }
    }
}
