//! The background checkpointer: once the log a reopen would read passes its threshold, a
//! thread of the database's own writes a checkpoint, so that reopening stays proportional to
//! the data rather than to its history, and no committer pays for it.
//!
//! Committers only look: every [`CHECK_EVERY`] durable commits one reads the log's size and,
//! past the threshold, wakes the thread (spawned on the first request). The thread holds a
//! weak reference to the database, so it never keeps one alive; it stops on close and when
//! the last handle goes.
//!
//! The threshold grows with the data: a checkpoint is due once the log holds the configured
//! bytes *or half the last checkpoint's size*, whichever is more. A checkpoint rewrites the
//! whole store, so at a fixed 64 MiB a database of gigabytes would write its image over and
//! over (and checkpoint without pause: the log passes 64 MiB again while a big image is
//! written). With the half, a checkpoint's bytes stay within twice the log's, and a reopen
//! reads at most half an image's worth of log after the image.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::db::Db;
#[cfg(not(loom))]
use crate::db::Shared;

/// Durable commits between two looks at the log's size: a look takes the log's buffer lock.
const CHECK_EVERY: u64 = 256;

/// What the thread is asked to do.
#[derive(Default)]
struct Requests {
    checkpoint: bool,
    stop: bool,
}

#[derive(Default)]
struct Signal {
    requests: Mutex<Requests>,
    wake: Condvar,
}

/// A database's background checkpointer.
pub(crate) struct Checkpointer {
    /// Log bytes past which a checkpoint is due (`u64::MAX`: never), at least.
    threshold: u64,
    /// The size of the last checkpoint taken: half of it is due too ([`Self::due_at`]).
    image_bytes: AtomicU64,
    commits: AtomicU64,
    signal: Arc<Signal>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    pub(crate) fn new(threshold: u64) -> Self {
        Self {
            threshold,
            image_bytes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            signal: Arc::default(),
            thread: Mutex::new(None),
        }
    }

    /// Records the size of a checkpoint just taken (in the background or not), which sets
    /// when the next one is due.
    pub(crate) fn checkpointed(&self, bytes: u64) {
        self.image_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The log bytes at which a checkpoint is due: the configured threshold, or half the
    /// last checkpoint if that is more (see the module documentation).
    pub(crate) fn due_at(&self) -> u64 {
        self.threshold
            .max(self.image_bytes.load(Ordering::Relaxed) / 2)
    }

    /// Called after each durable commit of `db`: now and then, looks at `live_bytes` (read
    /// only then) and asks for a checkpoint once it is due.
    pub(crate) fn after_commit(&self, db: &Db, live_bytes: impl FnOnce() -> u64) {
        if self.threshold == u64::MAX
            || self.commits.fetch_add(1, Ordering::Relaxed) % CHECK_EVERY != 0
            || live_bytes() < self.due_at()
        {
            return;
        }
        self.request(db);
    }

    /// Asks the thread for a checkpoint, starting it if need be.
    fn request(&self, db: &Db) {
        {
            let mut r = lock(&self.signal.requests);
            if r.stop {
                return;
            }
            r.checkpoint = true;
        }
        self.signal.wake.notify_one();
        // The loom models never reach the threshold, and loom's `Arc` has no weak form.
        #[cfg(not(loom))]
        self.spawn_once(db);
        #[cfg(loom)]
        let _ = db;
    }

    /// Starts the thread unless it runs.
    #[cfg(not(loom))]
    fn spawn_once(&self, db: &Db) {
        let mut thread = lock(&self.thread);
        if thread.is_none() {
            let signal = Arc::clone(&self.signal);
            let weak = Arc::downgrade(&db.shared);
            *thread = std::thread::Builder::new()
                .name("snapkv-checkpoint".into())
                .spawn(move || run(&signal, &weak))
                .ok();
        }
    }

    /// Stops the thread (waiting for a checkpoint in progress) unless this is the thread
    /// itself (its database's last handle went away on it).
    pub(crate) fn stop(&self) {
        lock(&self.signal.requests).stop = true;
        self.signal.wake.notify_one();
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The thread: waits for requests, checkpoints the database while it exists.
#[cfg(not(loom))]
fn run(signal: &Signal, db: &std::sync::Weak<Shared>) {
    loop {
        {
            let mut r = lock(&signal.requests);
            while !r.checkpoint && !r.stop {
                r = signal
                    .wake
                    .wait(r)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if r.stop {
                return;
            }
            r.checkpoint = false;
        }
        let Some(shared) = db.upgrade() else { return };
        // A failure (a full disk, say) leaves the log as it was: the next request retries.
        let _ = Db { shared }.checkpoint();
    }
}
