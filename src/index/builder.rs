//! The background thread that rebuilds an index's run, so that no scan and no validation
//! ever does (or waits for) a rebuild.
//!
//! A scan that finds a rebuild due asks for one ([`Builder::request`]: a load, and once per
//! rebuild a store and an unpark) and walks the index as it is: the run plus deltas it
//! places as it goes, as between rebuilds. The thread rebuilds, then frees the runs it
//! replaced once no reader holds them (a pass over each, which scans used to pay too).
//!
//! One thread per database, started by the first request: a database that never scans
//! never starts one. It holds the index only weakly between rebuilds, and the database's
//! [`Builder`] tells it to exit when dropped, so dropping a database ends its thread (once
//! a rebuild in progress finishes; the index is freed on that thread then). The thread is
//! not joined: a drop does not wait for a rebuild.
//!
//! Not under loom: the models check the index protocol (`Index::rebuild` racing inserts
//! and scans), which is the same whichever thread rebuilds; this thread only decides when.

use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;
use std::time::Duration;

use super::{Index, Reason};
use crate::sync::{AtomicBool, Ordering};

/// The handle a database keeps to its index's builder thread.
pub(crate) struct Builder {
    /// What the handle and the thread share.
    shared: Arc<Shared>,
    /// The thread, once started; `None` if it could not be spawned (then scans rebuild on
    /// their own thread, as a fallback).
    thread: OnceLock<Option<Thread>>,
}

pub(crate) struct Shared {
    /// A rebuild was asked for and the thread has not taken the request yet. A hint between
    /// threads: the thread looks at the index itself, and park/unpark orders the wake-up.
    requested: AtomicBool,
    /// The database is gone: the thread exits.
    closed: AtomicBool,
}

/// How long the thread first waits before it looks again for replaced runs it could free
/// (readers still held them); doubled per look, up to [`FREE_POLL_MAX`].
const FREE_POLL_MIN: Duration = Duration::from_millis(1);
const FREE_POLL_MAX: Duration = Duration::from_millis(100);

impl Builder {
    pub(crate) fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                requested: AtomicBool::new(false),
                closed: AtomicBool::new(false),
            }),
            thread: OnceLock::new(),
        }
    }

    /// Asks the thread to rebuild `index` if due and free what it can, starting the thread
    /// if need be. Returns `false` if there is no thread (it could not be spawned, or it
    /// died).
    pub(crate) fn request(&self, index: &Arc<Index>) -> bool {
        let Some(thread) = self.thread.get_or_init(|| self.spawn(index)) else {
            return false;
        };
        if Arc::strong_count(&self.shared) == 1 {
            // The thread is gone (a rebuild panicked on it): the caller rebuilds instead.
            return false;
        }
        // Checked first, so that the scans arriving while a rebuild runs only read the flag.
        if !self.shared.requested.load(Ordering::Relaxed)
            && !self.shared.requested.swap(true, Ordering::Relaxed)
        {
            thread.unpark();
        }
        true
    }

    /// Whether a request started the thread.
    pub(crate) fn is_started(&self) -> bool {
        matches!(self.thread.get(), Some(Some(_)))
    }

    /// A handle whose strong count says how many of the builder and its thread are still
    /// there (for tests: the thread holds its reference until it returns).
    #[cfg(test)]
    pub(crate) fn watch(&self) -> Weak<Shared> {
        Arc::downgrade(&self.shared)
    }

    fn spawn(&self, index: &Arc<Index>) -> Option<Thread> {
        let shared = Arc::clone(&self.shared);
        let index = Arc::downgrade(index);
        std::thread::Builder::new()
            .name("snapkv-index".into())
            .spawn(move || {
                // Its pins run other threads' deferred frees of version nodes, which this
                // thread never reuses: no pool of them here.
                crate::raw::bypass_node_pool();
                run(&shared, &index)
            })
            .ok()
            .map(|handle| handle.thread().clone())
    }
}

impl Drop for Builder {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        if let Some(Some(thread)) = self.thread.get() {
            thread.unpark();
        }
    }
}

/// The thread's loop: wait for a request, rebuild if due, free replaced runs; exit once the
/// database is dropped.
fn run(shared: &Shared, index: &Weak<Index>) {
    loop {
        if shared.closed.load(Ordering::Relaxed) {
            return;
        }
        if !shared.requested.swap(false, Ordering::Relaxed) {
            // A request (or the drop) between the swap and here leaves the unpark token, so
            // this returns at once.
            std::thread::park();
            continue;
        }
        {
            let Some(index) = index.upgrade() else { return };
            index.rebuild_if_due(Reason::Scan);
        }
        free_replaced_runs(shared, index);
    }
}

/// Frees the runs rebuilds replaced once readers let go of them: the states holding them are
/// dropped by the epoch, after every reader pinned at the rebuild has unpinned, so look again
/// now and then, until none is left, the database is dropped or another request arrives.
fn free_replaced_runs(shared: &Shared, index: &Weak<Index>) {
    let mut wait = FREE_POLL_MIN;
    loop {
        {
            let Some(index) = index.upgrade() else { return };
            // Lets the epoch advance past this thread and run the deferred drops it can.
            crossbeam_epoch::pin().flush();
            if index.free_retired() == 0 {
                return;
            }
        }
        std::thread::park_timeout(wait);
        if shared.closed.load(Ordering::Relaxed) || shared.requested.load(Ordering::Relaxed) {
            return;
        }
        wait = (wait * 2).min(FREE_POLL_MAX);
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::*;
    use crate::index::{Reads, ScanNeeds};
    use crate::raw::Chain;

    /// Retries `done` (yielding and sleeping between tries) until it holds; returns whether
    /// it did within a generous bound. Waits for another thread's progress, asserts nothing
    /// about time.
    fn eventually(mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..20_000 {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    /// Keys in the run and in the active delta of the indexes below: past the rebuild
    /// threshold (the delta holds more than `MIN_DELTA` keys), smaller under Miri.
    const RUN: u32 = if cfg!(miri) { 40 } else { 1_000 };
    const DELTA: u32 = if cfg!(miri) { 20 } else { 300 };

    /// An index with `n` keys `{tag}{i}` in its run and `extra` more placed in its active
    /// delta: past the rebuild threshold when `extra` is, without a bulk for a scan to sort.
    fn index_with(tag: &str, n: u32, extra: u32) -> Arc<Index> {
        let index = Arc::new(Index::new());
        let key = |i: u32| format!("{tag}{i:06}").into_bytes();
        for i in 0..n {
            index.insert(&key(i), crate::sync::StrongArc::new(Chain::new()));
        }
        assert!(index.rebuild(false));
        for i in n..n + extra {
            index.insert(&key(i), crate::sync::StrongArc::new(Chain::new()));
        }
        let guard = crossbeam_epoch::pin();
        let whole = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(
            index.range(whole, Reads::Versions, &guard).count(),
            (n + extra) as usize
        );
        index
    }

    #[test]
    fn the_thread_rebuilds_on_request_frees_the_old_run_and_exits_when_dropped() {
        let index = index_with("k", RUN, DELTA);
        assert_eq!(index.scan_needs(), ScanNeeds::Rebuild);
        let builder = Builder::new();
        let watch = builder.watch();
        assert_eq!(watch.strong_count(), 1, "no thread before a request");
        assert!(builder.request(&index));
        assert!(
            eventually(|| index.sizes() == ((RUN + DELTA) as usize, 0, 0)),
            "the builder never rebuilt"
        );
        assert!(
            eventually(|| index.scan_needs() == ScanNeeds::Nothing),
            "the replaced runs were never freed"
        );
        assert_eq!(watch.strong_count(), 2, "the thread runs");
        drop(builder);
        assert!(
            eventually(|| watch.strong_count() == 0),
            "the thread outlived its builder"
        );
        // Eventually, as the thread's exit and its last drops are not ordered with the
        // watch (a clone can outlive it for an instant; seen once under Miri).
        assert!(
            eventually(|| Arc::strong_count(&index) == 1),
            "the thread kept the index"
        );
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "thread lifecycle only: the rebuild it runs is checked by the test above"
    )]
    fn the_thread_exits_once_its_index_is_gone() {
        let index = index_with("k", RUN, DELTA);
        let builder = Builder::new();
        let watch = builder.watch();
        assert!(builder.request(&index));
        assert!(eventually(
            || index.sizes() == ((RUN + DELTA) as usize, 0, 0)
        ));
        drop(index);
        // A request for a dropped index (as a late scan of a dying store cannot make, but a
        // thread must survive) ends the thread too.
        let other = index_with("o", 10, 0);
        assert!(builder.request(&other));
        assert!(
            eventually(|| watch.strong_count() == 1),
            "the thread outlived its index"
        );
    }

    /// Several indexes (databases) each get their own thread, which rebuild independently.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "thread lifecycle only: the rebuild it runs is checked by the test above"
    )]
    fn each_index_has_its_own_thread() {
        let indexes: Vec<Arc<Index>> = (0..3)
            .map(|t| index_with(&format!("t{t}-"), 2 * RUN, DELTA + 100))
            .collect();
        let builders: Vec<Builder> = indexes.iter().map(|_| Builder::new()).collect();
        let watches: Vec<_> = builders.iter().map(Builder::watch).collect();
        for (builder, index) in builders.iter().zip(&indexes) {
            assert!(builder.request(index));
        }
        for index in &indexes {
            assert!(eventually(
                || index.sizes() == ((2 * RUN + DELTA + 100) as usize, 0, 0)
            ));
        }
        assert!(watches.iter().all(|w| w.strong_count() == 2));
        drop(builders);
        assert!(eventually(|| watches.iter().all(|w| w.strong_count() == 0)));
    }
}
