//! The commit protocol: lock the write set in key order, validate, take a timestamp, install,
//! publish. This is the code the loom models run.

use bytes::Bytes;
use crossbeam_epoch::Guard;

use crate::clock::{Clock, Publication};
use crate::error::{ConflictKind, Error};
use crate::raw::{Chain, ChainWriter};
use crate::sync::Arc;

/// Where the commit finds the chain of each key it writes.
pub(crate) trait ChainSource {
    /// The current chain of `key`, created empty if the key has none.
    fn resolve(&self, key: &Bytes) -> Arc<Chain>;
    /// Called under the chain's lock when a commit abandons a chain that is empty (it created
    /// it and then lost a conflict), so that it does not linger.
    fn discard_if_empty(&self, key: &Bytes, writer: &ChainWriter<'_>, guard: &Guard);
}

/// One buffered write: a value, or `None` for a delete.
pub(crate) type Write<'a> = (&'a Bytes, &'a Option<Bytes>);

/// Commits `writes` (sorted by key, no duplicates) atomically at a fresh timestamp.
///
/// With `snapshot = Some(s)` it first validates first-committer-wins: if any written key has a
/// version newer than `s` (committed or still being installed), it installs nothing and
/// returns [`Error::Conflict`]. With `None` (a blind single-operation write) nothing can
/// conflict. `watermark` is the collector's cached low watermark, used to prune each chain
/// it touches. Returns the commit timestamp once the commit is visible to new snapshots.
///
/// Protocol (see docs/design.md):
/// 1. resolve each key's chain and lock the chains in key order (no deadlock between
///    committers; the collector only `try_lock`s); a chain found removed is re-resolved;
/// 2. validate under the locks;
/// 3. allocate the commit timestamp (after locking, so it exceeds every version in the chains);
/// 4. link the new versions, prune, unlock;
/// 5. publish: wait until all smaller timestamps are visible, then make this one visible.
pub(crate) fn commit(
    clock: &Clock,
    source: &impl ChainSource,
    writes: &[Write<'_>],
    snapshot: Option<u64>,
    watermark: u64,
) -> Result<u64, Error> {
    debug_assert!(writes.windows(2).all(|w| w[0].0 < w[1].0));
    let guard = crossbeam_epoch::pin();
    let mut chains: Vec<Arc<Chain>> = writes.iter().map(|(k, _)| source.resolve(k)).collect();
    loop {
        let stale = match lock_all(&chains) {
            Ok(writers) => {
                let publication = validate_and_install(
                    clock, source, writes, &writers, snapshot, watermark, &guard,
                );
                // Unlock before waiting for our turn to publish: a committer that locks a key
                // now sees our version (newer than its snapshot) and conflicts as it should.
                drop(writers);
                return publication.map(Publication::publish);
            }
            Err(stale) => stale,
        };
        // The collector removed this chain after we resolved it: get the new one.
        chains[stale] = source.resolve(writes[stale].0);
    }
}

/// Steps 2–5 of [`commit`], with every chain of the write set locked.
fn validate_and_install<'c>(
    clock: &'c Clock,
    source: &impl ChainSource,
    writes: &[Write<'_>],
    writers: &[ChainWriter<'_>],
    snapshot: Option<u64>,
    watermark: u64,
    guard: &Guard,
) -> Result<Publication<'c>, Error> {
    if let Some(s) = snapshot {
        if let Some(i) = first_conflict(writers, s, guard) {
            for (w, (key, _)) in writers.iter().zip(writes) {
                source.discard_if_empty(key, w, guard);
            }
            return Err(Error::Conflict {
                key: writes[i].0.clone(),
                kind: ConflictKind::WriteWrite,
            });
        }
    }
    let publication = clock.allocate();
    let ts = publication.ts();
    for (w, (_, value)) in writers.iter().zip(writes) {
        w.install(ts, (*value).clone(), guard);
        w.prune(watermark, guard);
    }
    Ok(publication)
}

/// Locks every chain in order; on finding one the collector removed, unlocks all and returns
/// its index.
fn lock_all(chains: &[Arc<Chain>]) -> Result<Vec<ChainWriter<'_>>, usize> {
    let mut writers = Vec::with_capacity(chains.len());
    for (i, chain) in chains.iter().enumerate() {
        let w = chain.lock();
        if w.is_removed() {
            return Err(i);
        }
        writers.push(w);
    }
    Ok(writers)
}

/// The first locked chain holding a version newer than the snapshot.
fn first_conflict(writers: &[ChainWriter<'_>], snapshot: u64, guard: &Guard) -> Option<usize> {
    writers
        .iter()
        .position(|w| w.newest_ts(guard).is_some_and(|ts| ts > snapshot))
}
