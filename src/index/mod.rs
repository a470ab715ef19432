//! The ordered index scans walk: a sorted run plus the keys created since it was built.
//!
//! ## Shape
//!
//! The index's state is one immutable [`State`], published in an [`EpochCell`]:
//! - `run`: an immutable sorted array of `(key, chain)` ([`Run`]), where scans spend their
//!   time: contiguous memory, walked at the speed of a B-tree leaf;
//! - `active`: the *delta* that receives every key created since the run was built: pushed
//!   unordered into its bag, placed into its ordered list when a scan needs it (see
//!   [`Delta`]);
//! - `sealed`: during a rebuild, the previous active delta, which receives nothing more and is
//!   being merged into the next run.
//!
//! A scan merges the three ([`Entries`]). A key created while the index is published as
//! `(run, sealed, active)` goes into `active`; a rebuild seals `active`, merges `run` with the
//! sealed delta into a new run off to the side, and publishes `(new run, -, active)`.
//!
//! ## The race, and the gate
//!
//! An inserter loads the state, then inserts into its `active`. If a rebuild sealed that
//! delta and read it between the two steps, the key would reach a delta that no future state
//! lists and a run that does not hold it: scans would miss a live key. So inserters hold the
//! `gate` shared from before loading the state until after inserting, and the rebuild seals
//! (publishes the state with a fresh `active`) while holding it exclusively. Once the rebuild
//! has held the gate, every insert into the sealed delta has finished (it held the gate
//! before), and every later insert loads a state published after the seal, whose `active` is
//! the fresh delta. The rebuild reads the sealed delta only after that, so it reads all of it.
//!
//! ## The bag, and placing it
//!
//! Inserters push into the active delta's bag; a scan walks only lists. So a scan first
//! places any bag of its state that is not placed ([`Delta::place`]): once that returns,
//! every entry pushed before the placer took the bag is in the list (placers take turns, so
//! an earlier one has finished). A placer lowers the delta's `unplaced` count (Release) only
//! after its list inserts, and a scan that reads zero (Acquire) walks the list as it is
//! (model 14 and its negative controls).
//!
//! A rebuild reads a sealed delta holding the delta's placer lock, so no entry is in a
//! placer's hands meanwhile (model 13, negative control
//! `broken_rebuild_reading_while_placing_is_caught`), but only briefly ([`Delta::to_vec`]):
//! it places a small bag itself (scans keep bags small), releases the lock, and reads the
//! list, now complete and no longer changing; so a scan or validation placing that delta
//! meanwhile waits only for that placing, not for the list's copy. A bulk bag it copies with
//! the list under the lock instead, leaving the count up (the list still lacks those keys);
//! a scan that meets that sealed delta places the bag itself (harmless: the rebuild has its
//! copy).
//!
//! ## Who rebuilds
//!
//! Never a walk ([`Index::range`]): scans and serializable validation (which walks holding
//! chain locks) neither rebuild nor wait for a rebuild. A scan asks first
//! ([`Index::scan_needs`]); a due rebuild, and freeing the runs it replaces, goes to the
//! database's background thread ([`Builder`], started by the first scan that needs it), and
//! the scan walks the run and deltas as they are, placing the small bag. Only a bulk of keys
//! that no scan placed (a load with no scan since: more than half the run) is sorted into a
//! run by the scan itself, since inserting them one by one into a skip list would take longer
//! ([`Index::build_bulk`]). The collector's rebuilds (to drop removed keys) go to that thread
//! too once it runs; an explicit sweep rebuilds on its own thread.
//!
//! ## Head copies
//!
//! A rebuild also copies each chain's head into the new run, and committers mark the keys
//! they write in the run's changed-key set, so that a lending scan reads unchanged keys from
//! the run without touching their chains (`raw::run_heads`, I18 in docs/design.md). The index
//! keeps the newest set (`changes`), which a rebuild publishes before it copies.
//!
//! ## What a scan is promised (I17 in docs/design.md)
//!
//! A scan that starts after a key's insertion *happened before* it (a committed version of
//! the key is visible to its snapshot, or the validator's timestamp was allocated after the
//! key's committer locked it) finds the key's chain: the state it loads is the one the
//! inserter wrote into or a later one, and every later state lists that delta or holds a run
//! built from it.
//!
//! Keys leave the index lazily: a chain removed from the key map is dropped from the active
//! delta's list at once, but stays in a run, a sealed delta or a bag until the next rebuild
//! (placing skips it). Removed chains are empty, so scans skip them.

#[cfg(not(loom))]
mod builder;
#[cfg(loom)]
mod cow_list;
mod delta;
mod fences;
mod merge;
mod order;
#[cfg(not(loom))]
mod parts;
mod run;

use crossbeam_epoch::Guard;

use crate::key::KeyRangeRef;
use crate::raw::{Chain, Changes, EpochCell};
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering, RwLock, StrongArc};

use delta::Delta;

#[cfg(not(loom))]
pub(crate) use builder::Builder;
#[cfg(all(test, not(loom)))]
use merge::Group;
pub(crate) use merge::{Ends, Entries, Lending, Reads};
use run::Run;

/// Rebuild once the deltas hold more keys than this fraction of the run (`1 / DELTA_FRACTION`).
/// A delta key costs a scan a skip-list node visit; rebuilding costs a pass over the whole
/// run, so the share is a trade between the two.
const DELTA_FRACTION: usize = 32;
/// ... but never for fewer delta keys than this: tiny runs are rebuilt rarely. (Lower under
/// Miri, so that its tests reach the thresholds with few keys.)
const MIN_DELTA: usize = if cfg!(miri) { 16 } else { 256 };
/// A scan builds the run itself, rather than place the bags key by key, once they hold more
/// unplaced keys than this fraction of the run (or [`MIN_DELTA`]): only after a bulk of
/// inserts with no scan between (a load), since scans place the bags as they go. Sorting
/// keys into a run costs a fraction of inserting them one by one into a skip list, so past
/// about half the run the build is the shorter wait.
const BULK_FRACTION: usize = 2;
/// Rebuild (to drop them) once removed keys left in the run exceed this fraction of it.
const DEAD_FRACTION: usize = 4;
/// Rebuild (to copy the heads afresh) once committers marked more than this fraction of the
/// run's keys changed: scans read those keys from their chains, a cache miss each. Between two
/// such rebuilds committers rewrite that share of the run in distinct keys, so the rebuild
/// (a pass over the run) costs each of those writes about `STALE_FRACTION` entries' worth of
/// work. Only scans rebuild for this: a workload that never scans never pays for copies.
const STALE_FRACTION: usize = 4;

/// What a scan should do before it walks the index ([`Index::scan_needs`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ScanNeeds {
    /// Nothing: the walk places the few unplaced keys itself.
    Nothing,
    /// A rebuild (the deltas outgrew their share, or the head copies went stale): to be
    /// done off the scan's thread, the scan walks the index as it is meanwhile.
    Rebuild,
    /// Replaced runs wait to be freed (a pass over each): off the scan's thread too.
    Free,
    /// A build here, now ([`Index::build_bulk`]): a bulk of keys arrived unplaced, and
    /// placing them one by one would take longer than sorting them into a run.
    BuildHere,
}

/// One published configuration of the index. Immutable once published.
struct State {
    run: Arc<Run>,
    sealed: Option<Arc<Delta>>,
    active: Arc<Delta>,
}

/// The ordered index: see the module documentation.
pub(crate) struct Index {
    state: EpochCell<State>,
    /// Held shared by an inserter (or a remover) around its use of the active delta, and
    /// exclusively by a rebuild while it seals the active delta. Orders, it guards no data.
    gate: RwLock,
    /// Held by the thread rebuilding; others skip the rebuild instead of queueing. Holds the
    /// runs and sealed deltas replaced by earlier rebuilds until no state references them
    /// (see [`Index::free_unreferenced`]).
    builder: Mutex<Vec<(Arc<Run>, Arc<Delta>)>>,
    /// How many replaced runs `builder` holds, so that scans look at the builder's lock only
    /// when there is something to free.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `0` | nothing retired |
    /// | `n > 0` | `n` replaced runs wait for their last state to be dropped |
    retired: AtomicUsize,
    /// Keys removed from the map since the last seal whose chain was not in the active list
    /// (so a run, the sealed delta or a bag keeps an empty chain for them; a create/delete
    /// churn with no scans fills the bag with those, and maintenance rebuilds drop them). A
    /// statistic: it only decides when to rebuild.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `n` | about `n` removed chains wait in the run for the next rebuild to drop them |
    dead: AtomicUsize,
    /// The newest changed-key set, for committers to mark (see `raw::run_heads`).
    changes: Changes,
}

/// Why a rebuild is being considered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Reason {
    /// A scan is about to walk the index (or the builder thread was asked to look): rebuild
    /// if the deltas have grown past their share, or if committers changed so many keys that
    /// the run's head copies mostly went stale (or to drop many removed keys).
    Scan,
    /// Periodic maintenance: rebuild only to drop many removed keys (a workload that never
    /// scans pays for no run, except to drop the chains of keys it deleted).
    Maintenance,
    /// An explicit full collection: rebuild if anything would change.
    Sweep,
}

impl Index {
    pub(crate) fn new() -> Self {
        Self {
            state: EpochCell::new(State {
                run: Arc::new(Run::empty()),
                sealed: None,
                active: Arc::new(Delta::new()),
            }),
            gate: RwLock::new(),
            builder: Mutex::new(Vec::new()),
            retired: AtomicUsize::new(0),
            dead: AtomicUsize::new(0),
            changes: Changes::new(),
        }
    }

    /// Marks `keys` changed in the runs whose head copies a reader could still take for them:
    /// a committer calls this after installing versions of them, before it retires anything
    /// or publishes its timestamp (see `raw::run_heads`).
    pub(crate) fn note_changed<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>, guard: &Guard) {
        self.changes
            .note(|| self.state.load(guard).run.heads(), keys, guard);
    }

    /// Adds `key` with its new chain. The caller holds the key's map shard write-locked, so
    /// no other chain of `key` is being inserted or removed meanwhile.
    pub(crate) fn insert(&self, key: &[u8], chain: StrongArc<Chain>) {
        let _gate = self.gate.read();
        let guard = crossbeam_epoch::pin();
        self.state.load(&guard).active.push(key, chain);
    }

    /// Forgets `chain` (just removed from the key map, empty) for `key`: at once if it is in
    /// the active delta's list, else at the next rebuild (a chain still in a bag is skipped
    /// when placed). The caller holds the key's map shard write-locked.
    pub(crate) fn remove(&self, key: &[u8], chain: &Chain, guard: &Guard) {
        let _gate = self.gate.read();
        if !self
            .state
            .load(guard)
            .active
            .remove_chain(key, chain, guard)
        {
            self.dead.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The keys in `range` (not empty: see `iter::is_empty_range`), in order from either end,
    /// while `guard` is pinned.
    ///
    /// Walks only deltas whose lists hold every key inserted before the walk started: places
    /// a bag that is not empty first. Never rebuilds and never waits for a rebuild (scans
    /// and serializable validation call this, the latter holding chain locks): a sealed
    /// delta's bag is placed even while a rebuild sorts its copy into the next run (the
    /// placed list is dropped with the delta), and an active bag however large is placed.
    /// Scans keep bags small by asking for a rebuild before they walk
    /// ([`Index::scan_needs`]).
    pub(crate) fn range<'g, 'r>(
        &'g self,
        range: KeyRangeRef<'r>,
        reads: Reads,
        guard: &'g Guard,
    ) -> Entries<'g, 'r> {
        let state = self.state.load(guard);
        if let Some(sealed) = state.sealed.as_deref().filter(|d| !d.is_placed()) {
            // The rebuild copies the bag, so placing it meanwhile is harmless.
            sealed.place(guard);
        }
        if !state.active.is_placed() {
            // Keys pushed after `place` took the bag were inserted after this walk started:
            // it need not see them, so it never waits for a quiet bag (inserters could keep
            // it from ever being empty).
            state.active.place(guard);
        }
        if state.active.is_untidy() {
            state.active.tidy(guard);
        }
        Entries::new(
            &state.run,
            [state.sealed.as_deref(), Some(&*state.active)],
            range,
            reads,
            guard,
        )
    }

    /// What a scan about to walk the index should have done first (cheap: a few loads).
    pub(crate) fn scan_needs(&self) -> ScanNeeds {
        let guard = crossbeam_epoch::pin();
        let state = self.state.load(&guard);
        let unplaced = state.active.unplaced() + state.sealed.as_ref().map_or(0, |d| d.unplaced());
        if unplaced > MIN_DELTA.max(state.run.len() / BULK_FRACTION) {
            ScanNeeds::BuildHere
        } else if self.is_due(state, Reason::Scan) {
            ScanNeeds::Rebuild
        } else if self.retired.load(Ordering::Relaxed) > 0 {
            ScanNeeds::Free
        } else {
            ScanNeeds::Nothing
        }
    }

    /// Sorts the unplaced keys into a new run now if they are still more than a scan should
    /// place one by one ([`ScanNeeds::BuildHere`]); waits for a rebuild in progress first
    /// (which may have sorted them already). Returns whether it rebuilt.
    pub(crate) fn build_bulk(&self) -> bool {
        let mut retired = self.builder.lock();
        if self.scan_needs() != ScanNeeds::BuildHere {
            return false;
        }
        self.rebuild_locked(&mut retired);
        true
    }

    /// Whether `reason` calls for a rebuild now, or replaced runs wait to be freed.
    pub(crate) fn has_work(&self, reason: Reason) -> bool {
        let guard = crossbeam_epoch::pin();
        self.retired.load(Ordering::Relaxed) > 0 || self.is_due(self.state.load(&guard), reason)
    }

    /// Rebuilds the run if `reason` calls for it now; returns whether it did. Cheap when not
    /// due (a few loads), so maintenance and the background builder call it freely.
    pub(crate) fn rebuild_if_due(&self, reason: Reason) -> bool {
        self.free_retired();
        let due = {
            let guard = crossbeam_epoch::pin();
            self.is_due(self.state.load(&guard), reason)
        };
        due && self.rebuild(reason == Reason::Sweep)
    }

    /// Frees the replaced runs no state references any more, unless a rebuild holds them;
    /// returns how many replaced runs still wait.
    pub(crate) fn free_retired(&self) -> usize {
        if self.retired.load(Ordering::Relaxed) > 0 {
            if let Some(mut retired) = self.builder.try_lock() {
                self.free_unreferenced(&mut retired);
            }
        }
        self.retired.load(Ordering::Relaxed)
    }

    /// Whether `reason` calls for a rebuild of `state` now.
    fn is_due(&self, state: &State, reason: Reason) -> bool {
        let run = state.run.len();
        let delta = state.active.len() + state.sealed.as_ref().map_or(0, |d| d.len());
        let dead = self.dead.load(Ordering::Relaxed);
        let too_many_dead = dead > MIN_DELTA.max(run / DEAD_FRACTION);
        let big_delta = delta > MIN_DELTA.max(run / DELTA_FRACTION);
        // Committers changed so many keys that scans mostly read chains, not copies.
        let stale_copies = state.run.heads().changed_keys() > MIN_DELTA.max(run / STALE_FRACTION);
        match reason {
            Reason::Scan => big_delta || too_many_dead || stale_copies,
            Reason::Maintenance => too_many_dead,
            Reason::Sweep => delta > 0 || dead > 0 || stale_copies,
        }
    }

    /// Seals the active delta and merges it with the run into a new run. If another thread
    /// is rebuilding, waits for it and rebuilds after it when `wait`, else returns `false`.
    pub(crate) fn rebuild(&self, wait: bool) -> bool {
        let mut retired = match self.builder.try_lock() {
            Some(r) => r,
            None if wait => self.builder.lock(),
            None => return false,
        };
        self.rebuild_locked(&mut retired);
        true
    }

    /// [`Index::rebuild`], holding the builder's lock (`retired`).
    fn rebuild_locked(&self, retired: &mut Vec<(Arc<Run>, Arc<Delta>)>) {
        self.free_unreferenced(retired);
        let (run, sealed, active) = {
            let guard = crossbeam_epoch::pin();
            // Built before the gate: inserters wait while it is held. Its list is split at
            // the run's keys (the run being replaced: the delta receives the keys created
            // after it, which the next run merges in).
            let fresh = Arc::new(Delta::after(&self.state.load(&guard).run));
            let _gate = (!seal_without_gate()).then(|| self.gate.write());
            let old = self.state.load(&guard);
            match &old.sealed {
                // A rebuild that panicked after sealing left its delta sealed: finish it
                // (sealing again would drop that delta from every later state).
                Some(sealed) => (
                    Arc::clone(&old.run),
                    Arc::clone(sealed),
                    Arc::clone(&old.active),
                ),
                None => {
                    let active = fresh;
                    self.state.replace(
                        State {
                            run: Arc::clone(&old.run),
                            sealed: Some(Arc::clone(&old.active)),
                            active: Arc::clone(&active),
                        },
                        &guard,
                    );
                    self.dead.store(0, Ordering::Relaxed);
                    (Arc::clone(&old.run), Arc::clone(&old.active), active)
                }
            }
        };
        // The gate is released: every insert into `sealed` has finished (each held the gate
        // before we did) and no new one can start (inserters load the state after taking the
        // gate, and see the fresh delta). Read it whole.
        // Copies of the heads go into the new run: published as the newest set first, so
        // that committers racing the copies mark it (see `raw::run_heads`).
        let delta = sealed.to_vec();
        let copier = self.changes.copier(run.len() + delta.len());
        let merged = Arc::new(run.merged_with(delta, Some(copier)));
        {
            let guard = crossbeam_epoch::pin();
            // Inserters may be adding to `active` right now: it stays the active delta.
            self.state.replace(
                State {
                    run: merged,
                    sealed: None,
                    active,
                },
                &guard,
            );
            // Hand the replaced states to the global queue now: a thread-local bag holds 64
            // deferred calls before passing them on, and until their states are dropped the
            // retired runs below cannot be freed.
            guard.flush();
        }
        retired.push((run, sealed));
        self.retired.store(retired.len(), Ordering::Relaxed);
    }

    /// Frees the retired runs and deltas no published state references any more (their last
    /// reader unpinned and the epoch dropped the states holding them), here rather than in
    /// an epoch callback some reader or committer would run: each costs a pass over its keys.
    fn free_unreferenced(&self, retired: &mut Vec<(Arc<Run>, Arc<Delta>)>) {
        retired.retain(|(run, delta)| Arc::strong_count(run) > 1 || Arc::strong_count(delta) > 1);
        self.retired.store(retired.len(), Ordering::Relaxed);
    }

    /// Heap bytes of the current run by part (deltas and replaced runs not included), for
    /// memory accounting.
    pub(crate) fn run_bytes(&self) -> run::RunBytes {
        let guard = crossbeam_epoch::pin();
        self.state.load(&guard).run.heap_bytes()
    }

    /// Number of entries in the run, the sealed and the active delta (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn sizes(&self) -> (usize, usize, usize) {
        let guard = crossbeam_epoch::pin();
        let s = self.state.load(&guard);
        (
            s.run.len(),
            s.sealed.as_ref().map_or(0, |d| d.len()),
            s.active.len(),
        )
    }
}

/// Whether the rebuild seals without the gate: only as an injected fault in a loom negative
/// control.
fn seal_without_gate() -> bool {
    crate::sync::faults::active(crate::sync::faults::Fault::SealWithoutGate)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::ops::Bound;

    use super::*;
    use crate::key::MapKey;

    /// An empty delta split at up to `max_bounds` random keys `k{i:03}` with `i < span` (the
    /// keys the model tests below use).
    fn split_delta(rng: &mut fastrand::Rng, span: u32, max_bounds: usize) -> Delta {
        let mut bounds: Vec<MapKey> = (0..rng.usize(0..max_bounds))
            .map(|_| MapKey::from_slice(format!("k{:03}", rng.u32(0..span)).as_bytes()))
            .collect();
        bounds.sort();
        bounds.dedup();
        Delta::split_at(bounds)
    }

    fn keys_in(index: &Index, range: KeyRangeRef<'_>, forward: bool) -> Vec<Vec<u8>> {
        let guard = crossbeam_epoch::pin();
        let entries = index.range(range, Reads::Versions, &guard);
        let mut keys: Vec<Vec<u8>> = if forward {
            entries.map(|g| g.key().to_vec()).collect()
        } else {
            entries.rev().map(|g| g.key().to_vec()).collect()
        };
        if !forward {
            keys.reverse();
        }
        keys
    }

    #[test]
    fn scans_merge_the_run_and_both_deltas_from_either_end() {
        let index = Index::new();
        let k = |i: u32| format!("k{i:04}").into_bytes();
        for i in (0..100).step_by(3) {
            index.insert(&k(i), StrongArc::new(Chain::new()));
        }
        assert!(index.rebuild(false));
        for i in (1..100).step_by(3) {
            index.insert(&k(i), StrongArc::new(Chain::new()));
        }
        assert_eq!(index.sizes(), (34, 0, 33));
        let all: Vec<Vec<u8>> = (0..100).filter(|i| i % 3 != 2).map(k).collect();
        let full = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(keys_in(&index, full, true), all);
        assert_eq!(keys_in(&index, full, false), all);
        let (lo, hi) = (k(10), k(20));
        let part = (Bound::Excluded(&lo[..]), Bound::Included(&hi[..]));
        let want: Vec<Vec<u8>> = (11..=20).filter(|i| i % 3 != 2).map(k).collect();
        assert_eq!(keys_in(&index, part, true), want);
        assert_eq!(keys_in(&index, part, false), want);
    }

    /// The merge against a model: random keys in a run and two deltas (a key may be in
    /// several), random bounds, and a random interleaving of steps from both ends. Every key
    /// comes out exactly once, in order, with all of its chains.
    #[test]
    fn merged_walks_match_a_model_from_both_ends() {
        use std::collections::BTreeMap;
        let mut rng = fastrand::Rng::with_seed(7);
        let k = |i: u32| format!("k{i:03}").into_bytes();
        // Under Miri: a few short rounds (it checks every access, a thousand times slower).
        let (rounds, max_span) = if cfg!(miri) { (3, 40) } else { (300, 200) };
        for _ in 0..rounds {
            let span = rng.u32(1..max_span);
            let mut model: BTreeMap<Vec<u8>, Vec<*const Chain>> = BTreeMap::new();
            let mut run = Vec::new();
            // Deltas split at random keys, as a rebuild splits them.
            let deltas = [0, 1].map(|_| split_delta(&mut rng, span, 60));
            let guard = crossbeam_epoch::pin();
            for i in 0..span {
                // Each source holds a key with its own probability, so long stretches of
                // run-only keys alternate with dense runs of delta keys.
                let sources = [rng.u8(..) < 200, rng.u8(..) < 40, rng.u8(..) < 20];
                for (s, held) in sources.into_iter().enumerate() {
                    if !held {
                        continue;
                    }
                    let chain = StrongArc::new(Chain::new());
                    model
                        .entry(k(i))
                        .or_default()
                        .push(StrongArc::as_ptr(&chain));
                    match s {
                        0 => run.push((MapKey::from_slice(&k(i)), chain)),
                        _ => deltas[s - 1].insert(&k(i), chain, &guard),
                    }
                }
            }
            let run = Run::empty().merged_with(run, None);
            let (lo, hi) = (k(rng.u32(0..span + 1)), k(rng.u32(0..span + 1)));
            let bound = |b: &'static str, key| match b {
                "in" => Bound::Included(key),
                "ex" => Bound::Excluded(key),
                _ => Bound::Unbounded,
            };
            let kinds = ["in", "ex", "un"];
            let range = (
                bound(kinds[rng.usize(..3)], &lo[..]),
                bound(kinds[rng.usize(..3)], &hi[..]),
            );
            if crate::iter::is_empty_range(&range) {
                continue;
            }
            let want: Vec<(Vec<u8>, Vec<*const Chain>)> = model
                .range::<[u8], _>(range)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut walk = Entries::new(
                &run,
                [Some(&deltas[0]), Some(&deltas[1])],
                range,
                Reads::Versions,
                &guard,
            );
            let (mut front, mut back) = (Vec::new(), Vec::new());
            loop {
                let (g, into) = if rng.bool() {
                    (walk.next(), &mut front)
                } else {
                    (walk.next_back(), &mut back)
                };
                let Some(g) = g else { break };
                into.push((
                    g.key().to_vec(),
                    g.chains().map(StrongArc::as_ptr).collect(),
                ));
            }
            assert!(walk.next().is_none() && walk.next_back().is_none());
            front.extend(back.into_iter().rev());
            assert_eq!(front, want, "range {range:?}");
        }
    }

    /// The tight lending walk against the group walk it stands in for: random keys in a run
    /// (with head copies, some of them stale and marked changed) and two deltas, versions at
    /// random timestamps (some tombstones, some chains empty), random bounds and snapshots,
    /// and a caller that may stop early or a limit that pauses the walk. Both yield the same
    /// keys with the same versions, and a paused walk names the next key.
    #[test]
    fn lending_walks_match_the_group_walk() {
        use std::ops::ControlFlow;
        let mut rng = fastrand::Rng::with_seed(11);
        let k = |i: u32| format!("k{i:03}").into_bytes();
        type Seen = Vec<(Vec<u8>, Option<(u64, Option<Vec<u8>>)>)>;
        let seen = |key: &[u8], v: Option<crate::raw::Lent<'_>>| {
            (key.to_vec(), v.map(|v| (v.ts, v.value.map(<[u8]>::to_vec))))
        };
        // Under Miri: one round of each shape, shorter (it checks every access, a thousand
        // times slower); still more than one 32-entry stretch.
        let (rounds, max_span) = if cfg!(miri) { (3, 80) } else { (600, 400) };
        for round in 0..rounds {
            // Short spans with dense deltas exercise the merge; long spans with sparse or no
            // delta keys, whole 32-entry stretches and the walk past the last delta key.
            let (span, delta_odds) = match round % 3 {
                0 => (rng.u32(1..150.min(max_span)), [40, 20]),
                1 => (rng.u32(1..max_span), [2, 1]),
                _ => (rng.u32(1..max_span), [0, 0]),
            };
            let guard = crossbeam_epoch::pin();
            let version = |rng: &mut fastrand::Rng, chain: &Chain, ts, tag: &str| {
                let ts = rng.u64(ts);
                let value = (rng.u8(..) > 40).then_some(tag.as_bytes());
                chain.lock().install(ts, value, None, &guard);
            };
            let deltas = [0, 1].map(|_| split_delta(&mut rng, span, 40));
            let mut run = Vec::new();
            for i in 0..span {
                let sources = [
                    rng.u8(..) < 200,
                    rng.u8(..) < delta_odds[0],
                    rng.u8(..) < delta_odds[1],
                ];
                for (s, held) in sources.into_iter().enumerate() {
                    if !held {
                        continue;
                    }
                    let chain = StrongArc::new(Chain::new());
                    if rng.u8(..) > 30 {
                        version(&mut rng, &chain, 1..20, &format!("{i}-{s}"));
                    }
                    match s {
                        0 => run.push((MapKey::from_slice(&k(i)), chain)),
                        _ => deltas[s - 1].insert(&k(i), chain, &guard),
                    }
                }
            }
            let changes = crate::raw::Changes::new();
            let copier = changes.copier(run.len());
            let run = Run::empty().merged_with(run, Some(copier));
            // Some run keys change after the copies: newer versions, noted as committers do.
            let mut changed = Vec::new();
            for (key, chain) in run.slice((Bound::Unbounded, Bound::Unbounded)).entries {
                if rng.u8(..) < 50 {
                    version(&mut rng, chain, 20..30, "newer");
                    changed.push(key.clone());
                }
            }
            changes.note(|| run.heads(), changed.iter().map(|k| &k[..]), &guard);
            let (lo, hi) = (k(rng.u32(0..span + 1)), k(rng.u32(0..span + 1)));
            let range = (Bound::Included(&lo[..]), Bound::Excluded(&hi[..]));
            if crate::iter::is_empty_range(&range) {
                continue;
            }
            let at = rng.u64(0..32);
            let walk = || {
                Entries::new(
                    &run,
                    [Some(&deltas[0]), Some(&deltas[1])],
                    range,
                    Reads::Heads,
                    &guard,
                )
            };
            let want: Seen = walk()
                .map(|g| seen(g.key(), g.lend_at(at, &guard)))
                .collect();
            // `f` breaks at `stop`, the walk pauses after `limit` keys: whichever comes first.
            let stop = rng.usize(0..want.len() + 2);
            let limit = match rng.u8(..3) {
                0 => usize::MAX,
                _ => rng.usize(0..want.len() + 2),
            };
            // A hint of how many keys the caller takes changes nothing the walk returns:
            // right, short (the walk goes on past it) or none.
            let hint = match rng.u8(..3) {
                0 => None,
                1 => Some(stop.max(1)),
                _ => Some(rng.usize(1..want.len() + 2)),
            };
            let hinted = || match hint {
                Some(h) => walk().expecting(h),
                None => walk(),
            };
            let mut got: Seen = Vec::new();
            let lending = hinted().lend_forward(at, &guard, limit, |key, v| {
                if got.len() == stop {
                    return ControlFlow::Break(());
                }
                got.push(seen(key, v));
                ControlFlow::Continue(())
            });
            let expected = if limit <= stop && limit < want.len() {
                Lending::Paused(&want[limit].0[..])
            } else if stop < want.len() {
                Lending::Broken
            } else {
                Lending::Exhausted
            };
            let why = format!("range {range:?} at {at}, stop {stop}, limit {limit}, hint {hint:?}");
            assert_eq!(lending, expected, "{why}");
            let lent = stop.min(limit).min(want.len());
            assert_eq!(got, want[..lent], "{why}");
        }
    }

    /// An update-only workload creates no delta keys, yet its commits make the run's head
    /// copies stale: past a share of changed keys, a scan rebuilds to copy them afresh.
    #[test]
    fn scans_rebuild_once_the_copies_went_mostly_stale() {
        let index = Index::new();
        let guard = crossbeam_epoch::pin();
        // Noting `changed` keys sets most of the run's `4 * keys` bits (rounded up to a power
        // of two), more than `MIN_DELTA` and a `1 / STALE_FRACTION` share of the run.
        let (keys, few, changed) = if cfg!(miri) {
            (40, 10, 300)
        } else {
            (1_000u32, 100, 4_000u32)
        };
        for i in 0..keys {
            let chain = StrongArc::new(Chain::new());
            let value = i.to_string();
            chain
                .lock()
                .install(1, Some(value.as_bytes()), None, &guard);
            index.insert(format!("k{i:04}").as_bytes(), chain);
        }
        assert!(index.rebuild(false));
        assert!(!index.rebuild_if_due(Reason::Scan));
        let changed: Vec<Vec<u8>> = (0..changed).map(|i| format!("u{i}").into_bytes()).collect();
        index.note_changed(changed[..few].iter().map(|k| &k[..]), &guard);
        assert!(
            !index.rebuild_if_due(Reason::Scan),
            "a few changes: keep the run"
        );
        index.note_changed(changed.iter().map(|k| &k[..]), &guard);
        assert!(
            !index.rebuild_if_due(Reason::Maintenance),
            "only scans pay for copies"
        );
        assert!(index.rebuild_if_due(Reason::Scan));
        assert_eq!(index.sizes(), (keys as usize, 0, 0));
        assert!(
            !index.rebuild_if_due(Reason::Scan),
            "the new run's copies are fresh"
        );
    }

    #[test]
    fn a_recreated_key_groups_its_old_and_new_chain() {
        let index = Index::new();
        let old = StrongArc::new(Chain::new());
        index.insert(b"a", StrongArc::clone(&old));
        index.insert(b"b", StrongArc::new(Chain::new()));
        assert!(index.rebuild(false));
        // "a" leaves the map (its chain stays in the run until the next rebuild) and comes
        // back with a new chain in the active delta.
        old.lock().mark_removed();
        index.remove(b"a", &old, &crossbeam_epoch::pin());
        let new = StrongArc::new(Chain::new());
        index.insert(b"a", StrongArc::clone(&new));
        let guard = crossbeam_epoch::pin();
        let groups: Vec<Group<'_>> = index
            .range(
                (Bound::Unbounded, Bound::Unbounded),
                Reads::Versions,
                &guard,
            )
            .collect();
        assert_eq!(groups.len(), 2);
        let chains: Vec<*const Chain> = groups[0].chains().map(StrongArc::as_ptr).collect();
        assert_eq!(chains, [StrongArc::as_ptr(&old), StrongArc::as_ptr(&new)]);
        drop(guard);
        // The next rebuild drops the removed chain.
        assert!(index.rebuild_if_due(Reason::Sweep));
        assert_eq!(index.sizes(), (2, 0, 0));
    }

    #[test]
    fn replaced_runs_are_freed_once_unreferenced_without_another_rebuild() {
        let index = Index::new();
        let retired = |index: &Index| index.retired.load(Ordering::Relaxed);
        // Lets the epoch drop the replaced states (collecting on another thread: the
        // rebuild must have handed them to the global queue itself), then lets the index
        // free what they held, as a scan or maintenance would.
        let collect_elsewhere = || {
            std::thread::scope(|s| {
                s.spawn(|| crossbeam_epoch::pin().flush());
            });
        };
        let settle = |index: &Index| {
            for _ in 0..2_000 {
                collect_elsewhere();
                index.rebuild_if_due(Reason::Maintenance);
                if retired(index) == 0 {
                    return true;
                }
                std::thread::yield_now();
            }
            false
        };
        let (rounds, keys) = if cfg!(miri) {
            (2, 20)
        } else {
            (40u32, 1_000u32)
        };
        for round in 0..rounds {
            for i in 0..keys {
                let key = format!("{round:02}-{i:04}").into_bytes();
                index.insert(&key, StrongArc::new(Chain::new()));
            }
            assert!(index.rebuild(false));
            assert!(
                settle(&index),
                "round {round}: a replaced run was never freed"
            );
        }
        // A reader still on an old state keeps its run alive, and it is freed after.
        let reader = crossbeam_epoch::pin();
        let old = index.range(
            (Bound::Unbounded, Bound::Unbounded),
            Reads::Versions,
            &reader,
        );
        index.insert(b"late", StrongArc::new(Chain::new()));
        assert!(index.rebuild(false));
        for _ in 0..100 {
            collect_elsewhere();
            index.rebuild_if_due(Reason::Maintenance);
        }
        assert_eq!(retired(&index), 1, "freed while a reader was pinned");
        assert_eq!(old.count(), (rounds * keys) as usize);
        drop(reader);
        assert!(settle(&index));
    }

    #[test]
    fn removal_from_the_active_list_is_immediate() {
        let index = Index::new();
        let chain = StrongArc::new(Chain::new());
        index.insert(b"x", StrongArc::clone(&chain));
        // A scan places the bag into the list.
        let whole = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(keys_in(&index, whole, true), [b"x".to_vec()]);
        chain.lock().mark_removed();
        index.remove(b"x", &chain, &crossbeam_epoch::pin());
        assert_eq!(index.sizes(), (0, 0, 0));
        assert_eq!(index.dead.load(Ordering::Relaxed), 0);
        assert!(!index.rebuild_if_due(Reason::Sweep));
    }

    #[test]
    fn new_keys_wait_in_the_bag_until_a_scan_places_them() {
        let index = Index::new();
        let k = |i: u32| format!("k{:04}", (i * 7919) % 1000).into_bytes();
        let n = if cfg!(miri) { 40 } else { 100 };
        for i in 0..n {
            index.insert(&k(i), StrongArc::new(Chain::new()));
        }
        let active = |index: &Index| {
            let guard = crossbeam_epoch::pin();
            let s = index.state.load(&guard);
            (s.active.list_len(), s.active.is_placed())
        };
        assert_eq!(active(&index), (0, false));
        assert_eq!(index.sizes(), (0, 0, n as usize));
        let mut want: Vec<Vec<u8>> = (0..n).map(k).collect();
        want.sort();
        let whole = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(keys_in(&index, whole, false), want);
        assert_eq!(active(&index), (n as usize, true));
        assert_eq!(keys_in(&index, whole, true), want);
    }

    #[test]
    fn a_rebuild_sorts_the_bag_into_the_run_without_placing_it() {
        let index = Index::new();
        let k = |i: u32| format!("k{:05}", (i * 7919) % 10_007).into_bytes();
        // Past `MIN_DELTA`, so that a scan's rebuild is due.
        let n = if cfg!(miri) { 40 } else { 2_000 };
        for i in 0..n {
            index.insert(&k(i), StrongArc::new(Chain::new()));
        }
        assert!(index.rebuild_if_due(Reason::Scan));
        assert_eq!(index.sizes(), (n as usize, 0, 0));
        let mut want: Vec<Vec<u8>> = (0..n).map(k).collect();
        want.sort();
        let whole = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(keys_in(&index, whole, true), want);
    }

    /// A walk never rebuilds, however large the bag (validation walks holding chain locks):
    /// it places the bag. A scan asks first, and sorts a bulk into a run itself.
    #[test]
    fn a_walk_never_rebuilds_a_scan_sorts_a_bulk_into_a_run() {
        let k = |i: u32| format!("k{:05}", (i * 7919) % 10_007).into_bytes();
        let whole = (Bound::Unbounded, Bound::Unbounded);
        // A bulk: more unplaced keys than `MIN_DELTA`.
        let n = if cfg!(miri) { 40 } else { 5_000 };
        let loaded = || {
            let index = Index::new();
            for i in 0..n {
                index.insert(&k(i), StrongArc::new(Chain::new()));
            }
            index
        };
        let index = loaded();
        assert_eq!(index.scan_needs(), ScanNeeds::BuildHere);
        let guard = crossbeam_epoch::pin();
        assert_eq!(
            index.range(whole, Reads::Versions, &guard).take(3).count(),
            3
        );
        drop(guard);
        assert_eq!(index.sizes(), (0, 0, n as usize), "the walk rebuilt");
        assert_eq!(index.scan_needs(), ScanNeeds::Rebuild, "placed, still due");
        assert!(!index.build_bulk());
        assert_eq!(keys_in(&index, whole, true).len(), n as usize);

        let index = loaded();
        assert!(index.build_bulk());
        assert_eq!(index.sizes(), (n as usize, 0, 0));
        assert_eq!(
            index.scan_needs(),
            ScanNeeds::Free,
            "the empty run waits to be freed"
        );
        // A small bag is placed, and asks for nothing.
        index.insert(b"zz", StrongArc::new(Chain::new()));
        assert_eq!(keys_in(&index, whole, true).len(), n as usize + 1);
        assert_eq!(index.sizes(), (n as usize, 0, 1));
    }

    /// A sealed delta whose rebuild has not published yet is walked (its bag placed) by
    /// scans, which do not wait for that rebuild.
    #[test]
    fn a_walk_places_a_sealed_bag_instead_of_waiting_for_its_rebuild() {
        let index = Index::new();
        let k = |i: u32| format!("k{:05}", (i * 7919) % 10_007).into_bytes();
        let (sealed, more) = if cfg!(miri) { (40, 8) } else { (1_000, 100) };
        for i in 0..sealed {
            index.insert(&k(i), StrongArc::new(Chain::new()));
        }
        // Seal as a rebuild does, and hold the builder's lock as if it were still sorting.
        let retired = index.builder.lock();
        {
            let guard = crossbeam_epoch::pin();
            let old = index.state.load(&guard);
            index.state.replace(
                State {
                    run: Arc::clone(&old.run),
                    sealed: Some(Arc::clone(&old.active)),
                    active: Arc::new(Delta::new()),
                },
                &guard,
            );
        }
        for i in sealed..sealed + more {
            index.insert(&k(i), StrongArc::new(Chain::new()));
        }
        let mut want: Vec<Vec<u8>> = (0..sealed + more).map(k).collect();
        want.sort();
        let whole = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(keys_in(&index, whole, true), want);
        assert_eq!(keys_in(&index, whole, false), want);
        assert_eq!(index.sizes(), (0, sealed as usize, more as usize));
        drop(retired);
        // The rebuild finishes the sealed delta.
        assert!(index.rebuild(false));
        assert_eq!(index.sizes(), (sealed as usize, 0, more as usize));
        assert_eq!(keys_in(&index, whole, true), want);
    }

    #[test]
    fn a_key_removed_and_recreated_in_the_bag_keeps_only_its_new_chain() {
        let index = Index::new();
        let old = StrongArc::new(Chain::new());
        index.insert(b"a", StrongArc::clone(&old));
        old.lock().mark_removed();
        index.remove(b"a", &old, &crossbeam_epoch::pin());
        let new = StrongArc::new(Chain::new());
        index.insert(b"a", StrongArc::clone(&new));
        let chains = |index: &Index| {
            let guard = crossbeam_epoch::pin();
            let whole = (Bound::Unbounded, Bound::Unbounded);
            index
                .range(whole, Reads::Versions, &guard)
                .map(|g| g.chains().map(StrongArc::as_ptr).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        assert_eq!(chains(&index), [vec![StrongArc::as_ptr(&new)]]);
        // The same through a rebuild that sorts the bag (pushed again, not yet placed).
        let index = Index::new();
        index.insert(b"a", StrongArc::clone(&old));
        index.insert(b"a", StrongArc::clone(&new));
        assert!(index.rebuild(false));
        assert_eq!(index.sizes(), (1, 0, 0));
        assert_eq!(chains(&index), [vec![StrongArc::as_ptr(&new)]]);
    }

    /// Scans racing inserters and rebuilds: each scan finds every key whose insert finished
    /// before it started, whether that key still waits in a bag, is being placed by another
    /// scan, or is being sorted into a run.
    #[test]
    fn scans_find_every_key_inserted_before_they_start() {
        use std::sync::atomic::AtomicU32;
        let index = Index::new();
        let k = |t: u32, i: u32| format!("{t}-{:06}", (i * 7919) % 1_000_003).into_bytes();
        let per_thread = if cfg!(miri) { 16 } else { 20_000u32 };
        let done = [AtomicU32::new(0), AtomicU32::new(0)];
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let (index, done) = (&index, &done);
                s.spawn(move || {
                    for i in 0..per_thread {
                        index.insert(&k(t, i), StrongArc::new(Chain::new()));
                        done[t as usize].store(i + 1, std::sync::atomic::Ordering::Release);
                    }
                });
            }
            for scanner in 0..2u32 {
                let (index, done) = (&index, &done);
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(u64::from(scanner));
                    while done[0].load(std::sync::atomic::Ordering::Acquire) < per_thread
                        || done[1].load(std::sync::atomic::Ordering::Acquire) < per_thread
                    {
                        let t = rng.u32(0..2);
                        let before = done[t as usize].load(std::sync::atomic::Ordering::Acquire);
                        if rng.u8(..) < 40 {
                            index.rebuild_if_due(Reason::Scan);
                        }
                        let prefix = format!("{t}-").into_bytes();
                        let end = format!("{t}.").into_bytes();
                        let range = (Bound::Included(&prefix[..]), Bound::Excluded(&end[..]));
                        let found: std::collections::HashSet<Vec<u8>> =
                            keys_in(index, range, rng.bool()).into_iter().collect();
                        for i in 0..before {
                            assert!(found.contains(&k(t, i)), "scan missed key {i} of {t}");
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn concurrent_inserts_during_rebuilds_are_never_lost() {
        let index = Index::new();
        let per_thread = if cfg!(miri) { 40 } else { 3_000u32 };
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let index = &index;
                s.spawn(move || {
                    for i in 0..per_thread {
                        let key = format!("{t}-{i:06}").into_bytes();
                        index.insert(&key, StrongArc::new(Chain::new()));
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..if cfg!(miri) { 5 } else { 50 } {
                    index.rebuild(false);
                    std::thread::yield_now();
                }
            });
        });
        index.rebuild(false);
        let guard = crossbeam_epoch::pin();
        let n = index
            .range(
                (Bound::Unbounded, Bound::Unbounded),
                Reads::Versions,
                &guard,
            )
            .count();
        assert_eq!(n, 2 * per_thread as usize);
        assert_eq!(index.sizes(), (n, 0, 0));
    }
}
