//! The commit of a big write set: link every version as pending, take the timestamp, stamp,
//! publish, then rewrite the head caches and prune (see `raw::pending` for why and for the
//! invariants).
//!
//! The steps, with every chain of the write set locked in key order (as for any commit):
//! 1. validate the write set (first committer wins; expected version);
//! 2. link each write's node as pending (its chain's head cache and the key's head mirror say
//!    so), then note the keys changed for the scan index's head copies;
//! 3. take the commit timestamp;
//! 4. serializable only: validate the reads and scanned ranges, as any commit does after its
//!    timestamp; on a conflict, unlink the pending nodes, publish the timestamp with nothing
//!    installed, and fail. Then, for a durable database only: append the commit's record and
//!    wait for the log's promise (`super::log_and_wait`); on a failure, as on a conflict;
//! 5. stamp every pending node with the timestamp: the only work later committers wait for;
//! 6. publish, still holding the locks: a committer with a smaller timestamp holds all its
//!    locks already, so it cannot be waiting for ours;
//! 7. rewrite each head cache and mirror to describe the stamped node, prune, unlock.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crossbeam_epoch::Guard;

use super::{
    log_and_wait, validate_reads, validate_writes, ChainSource, Checks, CommitLog, Committed, Write,
};
use crate::clock::Clock;
use crate::error::Error;
use crate::horizon::Horizon;
use crate::raw::{ChainWriter, Pending, Retired};

/// Write sets of at least this many keys commit as pending. Below it the plain protocol's
/// install after the timestamp is short (a few microseconds per dozen keys) and touches each
/// head cache and mirror once rather than twice. Under loom every multi-key commit is
/// pending, so the models cover this protocol; under Miri a few keys suffice, so that its
/// tests of big commits stay small.
pub(super) const MIN_KEYS: usize = if cfg!(loom) {
    2
} else if cfg!(miri) {
    4
} else {
    64
};

/// How many nodes ahead the stamping prefetches: enough misses in flight to cover a memory
/// access's latency with the few instructions each stamp takes.
const STAMP_PREFETCH: usize = 8;

/// Commits `writes` (sorted by key) with `writers` holding their chains' locks, by the steps
/// in the module's documentation. The locks are released by the caller, after this returns.
#[allow(clippy::too_many_arguments)]
pub(super) fn commit_pending(
    clock: &Clock,
    source: &impl ChainSource,
    writes: &mut [Write<'_>],
    writers: &[ChainWriter<'_>],
    checks: Checks<'_>,
    horizon: &Horizon,
    log: Option<&dyn CommitLog>,
    guard: &Guard,
) -> Result<Committed, Error> {
    if let Err(e) = validate_writes(writes, writers, checks, guard) {
        return Err(abandon(source, writes, writers, e, guard));
    }
    let linked = link_all(source, writes, writers, guard);
    let publication = clock.allocate();
    let reads = checks.snapshot.zip(checks.reads);
    if reads.is_some() || log.is_some() {
        // Caught: should the validation unwind (it walks the scan index, which allocates) or
        // the log's append (it allocates the record), the pending nodes must not outlive the
        // commit unstamped (their chains would conflict with every later writer).
        let validated = catch_unwind(AssertUnwindSafe(|| {
            if let Some((s, reads)) = reads {
                validate_reads(source, writes, reads, s, guard)?;
            }
            if let Some(log) = log {
                // The values moved into the pending nodes: the record reads them there.
                let record = writes.iter().zip(&linked).map(|(w, p)| (w.key, p.value()));
                log_and_wait(log, clock, publication.ts(), record)?;
            }
            Ok(())
        }));
        match validated {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                take_back(source, writes, writers, linked, publication, guard);
                return Err(abandon(source, writes, writers, e, guard));
            }
            Err(panic) => {
                take_back(source, writes, writers, linked, publication, guard);
                resume_unwind(panic);
            }
        }
    }
    let ts = if publish_before_stamp() {
        let ts = publication.publish();
        stamp_all(&linked, ts);
        ts
    } else {
        stamp_all(&linked, publication.ts());
        publication.publish()
    };
    for ((w, write), pending) in writers.iter().zip(writes.iter()).zip(linked) {
        source.with_mirror(write.key, w.chain(), |mirror| {
            w.finish_pending(pending, mirror, guard);
        });
    }
    let mut retired = Retired::expecting(writers.len());
    let mut backlog = 0;
    for w in writers {
        backlog = backlog.max(w.prune(horizon, &mut retired, guard).above_horizon);
    }
    retired.retire(guard);
    Ok(Committed { ts, backlog })
}

/// Step 2: links every write's node as pending and notes the keys. Should it unwind (nothing
/// here runs user code, but an allocation can fail), the nodes linked so far are unlinked
/// again before the panic goes on: the commit installs nothing, and no pending node is left
/// behind a released lock.
fn link_all<'g>(
    source: &impl ChainSource,
    writes: &mut [Write<'_>],
    writers: &[ChainWriter<'_>],
    guard: &'g Guard,
) -> Vec<Pending<'g>> {
    let mut linked = Vec::with_capacity(writes.len());
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        for (w, write) in writers.iter().zip(writes.iter_mut()) {
            let node = write.take_node();
            let pending = source.with_mirror(write.key, w.chain(), |mirror| {
                w.link_pending(node, mirror, guard)
            });
            linked.push(pending);
        }
        // Before the timestamp, so before the publication, as any commit notes (see
        // `raw::run_heads`); a scan that finds a key noted reads its chain, which is right
        // whether or not the commit happens.
        source.note_installed(writes, guard);
    }));
    if let Err(panic) = outcome {
        unlink_all(source, writes, writers, linked, guard);
        resume_unwind(panic);
    }
    linked
}

/// A commit that failed after it took its timestamp: its pending nodes are unlinked, then
/// the timestamp is published with nothing installed (timestamps have no holes).
fn take_back(
    source: &impl ChainSource,
    writes: &[Write<'_>],
    writers: &[ChainWriter<'_>],
    linked: Vec<Pending<'_>>,
    publication: crate::clock::Publication<'_>,
    guard: &Guard,
) {
    unlink_all(source, writes, writers, linked, guard);
    drop(publication);
}

/// Takes back every pending node of a commit that failed (the first `linked.len()` writes).
fn unlink_all(
    source: &impl ChainSource,
    writes: &[Write<'_>],
    writers: &[ChainWriter<'_>],
    linked: Vec<Pending<'_>>,
    guard: &Guard,
) {
    let mut retired = Retired::expecting(linked.len());
    for ((w, write), pending) in writers.iter().zip(writes).zip(linked) {
        source.with_mirror(write.key, w.chain(), |mirror| {
            w.unlink_pending(pending, mirror, &mut retired, guard);
        });
    }
    retired.retire(guard);
}

/// Step 5: one store per node, prefetching ahead (the nodes were linked a while ago and the
/// walk is what every later committer waits for).
fn stamp_all(linked: &[Pending<'_>], ts: u64) {
    for pending in linked.iter().take(STAMP_PREFETCH) {
        pending.prefetch();
    }
    for (i, pending) in linked.iter().enumerate() {
        if let Some(ahead) = linked.get(i + STAMP_PREFETCH) {
            ahead.prefetch();
        }
        pending.stamp(ts);
    }
}

/// A failed commit leaves no chain it created empty in the map (as `validate_and_install`
/// does); returns `err`.
fn abandon(
    source: &impl ChainSource,
    writes: &[Write<'_>],
    writers: &[ChainWriter<'_>],
    err: Error,
    guard: &Guard,
) -> Error {
    for (w, write) in writers.iter().zip(writes) {
        source.discard_if_empty(write.key, w, guard);
    }
    err
}

/// Whether the commit publishes before it stamps: only as an injected fault in a loom
/// negative control (a snapshot that includes the commit could read a node still pending).
fn publish_before_stamp() -> bool {
    crate::sync::faults::active(crate::sync::faults::Fault::PublishBeforeStamp)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;
    use crate::commit::{commit, Poisoned, ReadSet};
    use crate::store::Store;

    fn keys() -> Vec<Vec<u8>> {
        (0..MIN_KEYS + 6)
            .map(|i| format!("k{i:04}").into_bytes())
            .collect()
    }

    fn commit_all(clock: &Clock, source: &impl ChainSource, value: &[u8]) -> Option<u64> {
        let keys = keys();
        let mut writes: Vec<_> = keys.iter().map(|k| Write::new(k, Some(value))).collect();
        commit(
            clock,
            source,
            &mut writes,
            Checks::default(),
            &Horizon::at(0),
        )
        .map(|c| c.ts)
        .ok()
    }

    /// What every key reads at `at`, through its mirror (then cache, then chain).
    fn read_all(store: &Store, at: u64) -> Vec<Option<Vec<u8>>> {
        let guard = &crossbeam_epoch::pin();
        keys()
            .iter()
            .map(|k| {
                store
                    .with_mirrored_chain(k, |c, m| c.lend_at_mirrored(m, at, guard))
                    .flatten()
                    .and_then(|v| v.value.map(<[u8]>::to_vec))
            })
            .collect()
    }

    #[test]
    fn a_big_commit_unwinding_while_linking_installs_nothing_and_takes_no_timestamp() {
        let (store, clock) = (Store::new(), Clock::new());
        assert_eq!(commit_all(&clock, &store, b"v1"), Some(1));
        let poison = keys()[MIN_KEYS / 2 + 1].clone();
        let poisoned = Poisoned {
            store: &store,
            poison: &poison,
        };
        let unwound = catch_unwind(AssertUnwindSafe(|| commit_all(&clock, &poisoned, b"v2")));
        assert!(unwound.is_err());
        assert_eq!(clock.visible(), 1);
        let v1 = Some(b"v1".to_vec());
        assert_eq!(read_all(&store, u64::MAX - 1), vec![v1; keys().len()]);
        assert_nothing_left_behind(&store);
        // The keys take the next commit, at the next timestamp.
        assert_eq!(commit_all(&clock, &store, b"v3"), Some(2));
        assert_eq!(
            read_all(&store, 2),
            vec![Some(b"v3".to_vec()); keys().len()]
        );
    }

    /// Every key holds only its version at timestamp 1, and no lock.
    fn assert_nothing_left_behind(store: &Store) {
        let guard = &crossbeam_epoch::pin();
        for k in keys() {
            let chain = store.get(&k).unwrap();
            assert_eq!(chain.version_count(guard), 1, "a pending version stayed");
            assert_eq!(chain.newest_ts(guard), Some(1));
            assert!(!chain.is_locked(), "a lock stayed held");
        }
    }

    #[test]
    fn a_big_commit_unwinding_in_read_validation_takes_its_versions_back() {
        let (store, clock) = (Store::new(), Clock::new());
        assert_eq!(commit_all(&clock, &store, b"v1"), Some(1));
        let poisoned = Poisoned {
            store: &store,
            poison: b"read",
        };
        let reads = ReadSet {
            keys: vec![crate::key::MapKey::from_slice(b"read")],
            ranges: Vec::new(),
        };
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            let keys = keys();
            let mut writes: Vec<_> = keys.iter().map(|k| Write::new(k, Some(b"v2"))).collect();
            let checks = Checks {
                snapshot: Some(1),
                reads: Some(&reads),
                expect: None,
            };
            commit(&clock, &poisoned, &mut writes, checks, &Horizon::at(0))
        }));
        assert!(unwound.is_err());
        // Its timestamp was published with nothing installed.
        assert_eq!(clock.visible(), 2);
        assert_eq!(
            read_all(&store, 2),
            vec![Some(b"v1".to_vec()); keys().len()]
        );
        assert_nothing_left_behind(&store);
        assert_eq!(commit_all(&clock, &store, b"v3"), Some(3));
    }

    #[test]
    fn a_big_commit_finishes_every_cache_and_mirror() {
        let (store, clock) = (Store::new(), Clock::new());
        assert_eq!(commit_all(&clock, &store, b"v1"), Some(1));
        assert_eq!(commit_all(&clock, &store, b"v2"), Some(2));
        let guard = &crossbeam_epoch::pin();
        for k in keys() {
            let (cached, mirrored) = store
                .with_mirrored_chain(&k, |c, m| {
                    (
                        c.newest_ts(guard),
                        m.get(guard).map(|v| (v.ts, v.value.map(<[u8]>::to_vec))),
                    )
                })
                .unwrap();
            assert_eq!(cached, Some(2));
            assert_eq!(mirrored, Some((2, Some(b"v2".to_vec()))));
        }
    }
}
