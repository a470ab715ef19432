//! Models of one chain: pruning and freeing racing readers (registered and unregistered),
//! the head cache, and the tombstone strip.

use super::*;

/// Model 4: the collector unlinking and freeing versions races a registered reader walking
/// the chain (and an unregistered walk over every node): the reader finds its version and
/// never touches freed memory.
#[test]
fn gc_unlink_races_reader() {
    faults::inject(Fault::None);
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let w = World::new(&[b"x"]);
        w.commit(&[0], b"v1", None, &NO_GC).unwrap();
        w.commit(&[0], b"v2", None, &NO_GC).unwrap();
        let (t, progress) = spawn_pruning_writer(&w);
        let (slot, s) = w.registry.register(&w.clock);
        let expected: &[u8] = if s == 2 { b"v2" } else { b"v3" };
        let before = progress.describe();
        assert_eq!(w.read(0, s), Some((s, Bytes::from_static(expected))));
        seen.saw(format!("snapshot at {s} read {before}"));
        {
            let guard = crossbeam_epoch::pin();
            let n = w.chains[0].version_count(&guard);
            assert!((1..=3).contains(&n));
        }
        w.registry.release(slot);
        t.join().unwrap();
    });
    outcomes.assert_explored(&[
        "snapshot at 2 read before the commit returned",
        "snapshot at 2 read after the prune",
        "snapshot at 3 read after the commit, before the prune",
        "snapshot at 3 read after the prune",
    ]);
}

/// The writer of models 4, 8 and 9: commits v3 to `x` pruning with a fresh horizon, then
/// prunes again and flushes its garbage, marking its progress.
fn spawn_pruning_writer(w: &Arc<World>) -> (loom::thread::JoinHandle<()>, Progress) {
    let w2 = Arc::clone(w);
    let progress = Progress::default();
    let p2 = progress.clone();
    let t = loom::thread::spawn(move || {
        let h = w2.registry.horizon(&w2.clock);
        w2.commit(&[0], b"v3", None, &h).unwrap();
        p2.committed.set();
        let h = w2.registry.horizon(&w2.clock);
        let guard = crossbeam_epoch::pin();
        w2.chains[0].lock().prune_and_retire(&h, &guard);
        p2.pruned.set();
        drop(guard);
        crossbeam_epoch::pin().flush();
    });
    (t, progress)
}

/// The race of models 8 and 9: `x` holds v1 (ts 1, seen by a registered old snapshot) and v2;
/// a spawned thread commits v3 pruning with a fresh horizon, then prunes again and flushes its
/// garbage. Returns the world, the old snapshot's slot and timestamp, and the thread.
fn old_snapshot_and_pruning_writer() -> (
    Arc<World>,
    SlotId,
    u64,
    loom::thread::JoinHandle<()>,
    Progress,
) {
    let w = World::new(&[b"x"]);
    w.commit(&[0], b"v1", None, &NO_GC).unwrap();
    let (old_slot, old) = w.registry.register(&w.clock);
    w.commit(&[0], b"v2", None, &NO_GC).unwrap();
    let (t, progress) = spawn_pruning_writer(&w);
    (w, old_slot, old, t, progress)
}

/// Model 8: pruning with a live old snapshot unlinks a version from the *middle* of a chain
/// while the old snapshot and a new one read it: each finds exactly its version, and the old
/// snapshot pins only the version it sees.
#[test]
fn interval_prune_races_old_and_new_readers() {
    faults::inject(Fault::None);
    let outcomes = Outcomes::default();
    // Without letting the writer run first, no explored old read starts after the commit
    // returned, let alone while the prune unlinks v2 from under it; with it, no new snapshot
    // at 2 reads between the commit and the prune. The model explores both.
    for writer_first in [false, true] {
        let seen = outcomes.clone();
        model(move || {
            let (w, old_slot, old, t, progress) = old_snapshot_and_pruning_writer();
            if writer_first {
                loom::thread::yield_now();
            }
            let v1 = Some((1, Bytes::from_static(b"v1")));
            let old_read = progress.describe();
            assert_eq!(w.read(0, old), v1, "the old snapshot lost its version");
            let (slot, s) = w.registry.register(&w.clock);
            let expected: &[u8] = if s == 2 { b"v2" } else { b"v3" };
            let new_read = progress.describe();
            assert_eq!(w.read(0, s), Some((s, Bytes::from_static(expected))));
            seen.saw(format!(
                "old snapshot read {old_read}; snapshot at {s} read {new_read}"
            ));
            w.registry.release(slot);
            t.join().unwrap();
            // Only the old snapshot is left: it pins v1, new snapshots see v3, v2 goes.
            let guard = crossbeam_epoch::pin();
            w.chains[0]
                .lock()
                .prune_and_retire(&w.registry.horizon(&w.clock), &guard);
            assert_eq!(w.chains[0].version_count(&guard), 2);
            drop(guard);
            assert_eq!(w.read(0, old), v1);
            w.registry.release(old_slot);
        });
    }
    outcomes.assert_explored(&[
        "old snapshot read after the commit, before the prune",
        "old snapshot read after the prune",
        "snapshot at 2 read after the commit, before the prune",
        "snapshot at 2 read after the prune",
        "snapshot at 3 read after the prune",
    ]);
}

/// Model 27: the prune that unlinks without loading a version (`ChainWriter::prune_known`)
/// races the readers it unlinks from under: `x` holds v3, v2 and v1 (settled: an old
/// snapshot at 1 reads it), and a spawned thread commits v4, whose prune relinks v3 past v2
/// with one store and retires v2 unread, then flushes its garbage. The old snapshot (on v2
/// as it goes, or past it) and a new snapshot each find exactly their version, and the
/// commit's prune loaded no version (the shortcut ran).
#[test]
fn prune_without_loading_races_old_and_new_readers() {
    faults::inject(Fault::None);
    let outcomes = Outcomes::default();
    for writer_first in [false, true] {
        let seen = outcomes.clone();
        model(move || {
            let w = World::new(&[b"x"]);
            w.commit(&[0], b"v1", None, &NO_GC).unwrap();
            let (old_slot, old) = w.registry.register(&w.clock);
            // Each commit prunes with a fresh horizon, as the store's do: v1 settles under
            // the old snapshot, v2 stays while the visible timestamp reads it.
            for v in [&b"v2"[..], b"v3"] {
                let h = w.registry.horizon(&w.clock);
                w.commit(&[0], v, None, &h).unwrap();
            }
            let committed = Mark::default();
            let t = {
                let (w2, committed) = (Arc::clone(&w), committed.clone());
                loom::thread::spawn(move || {
                    let h = w2.registry.horizon(&w2.clock);
                    // loom runs the model's threads on one thread: the count is the model's,
                    // and no other thread prunes meanwhile.
                    let walked = crate::raw::walk_reads::count();
                    w2.commit(&[0], b"v4", None, &h).unwrap();
                    assert_eq!(
                        crate::raw::walk_reads::count(),
                        walked,
                        "the commit's prune walked the chain"
                    );
                    committed.set();
                    crossbeam_epoch::pin().flush();
                })
            };
            if writer_first {
                loom::thread::yield_now();
            }
            let describe = |m: &Mark| {
                if m.is_set() {
                    "after the commit"
                } else {
                    "before the commit returned"
                }
            };
            let v1 = Some((1, Bytes::from_static(b"v1")));
            let old_read = describe(&committed);
            assert_eq!(w.read(0, old), v1, "the old snapshot lost its version");
            let (slot, s) = w.registry.register(&w.clock);
            let expected: &[u8] = if s == 3 { b"v3" } else { b"v4" };
            let new_read = describe(&committed);
            assert_eq!(w.read(0, s), Some((s, Bytes::from_static(expected))));
            seen.saw(format!(
                "old snapshot read {old_read}; snapshot at {s} read {new_read}"
            ));
            w.registry.release(slot);
            t.join().unwrap();
            let guard = crossbeam_epoch::pin();
            assert_eq!(w.chains[0].version_count(&guard), 3, "v2 was not unlinked");
            drop(guard);
            assert_eq!(w.read(0, old), v1);
            w.registry.release(old_slot);
        });
    }
    outcomes.assert_explored(&[
        "old snapshot read before the commit returned",
        "old snapshot read after the commit",
        "snapshot at 3 read before the commit returned",
        "snapshot at 4 read after the commit",
    ]);
}

/// Model 9: an unregistered latest read (`Db::get`'s fast path: load the visible timestamp,
/// then take the head if it is at or below it) races a commit that prunes the middle of the
/// chain for an old snapshot: it returns the last visible value at some instant of the call,
/// never a version that was already overwritten.
#[test]
fn unregistered_latest_read_races_interval_prune() {
    faults::inject(Fault::None);
    check_latest_read(LatestRead::Owned);
}

/// Model 9, lending: the same read from the head cache.
#[test]
fn unregistered_lending_read_races_interval_prune() {
    faults::inject(Fault::None);
    check_latest_read(LatestRead::Lent);
}

/// Negative control for model 9: a latest read that walks past the head must be caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_latest_read_walking_past_head_is_caught() {
    faults::inject(Fault::LatestReadWalksPastHead);
    check_latest_read(LatestRead::Owned);
}

/// Negative control for model 9, lending.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_lending_read_walking_past_head_is_caught() {
    faults::inject(Fault::LatestReadWalksPastHead);
    check_latest_read(LatestRead::Lent);
}

/// How model 9 reads the head: owned (`Db::get`) or lent from the head cache (`Db::get_with`).
#[derive(Clone, Copy)]
enum LatestRead {
    Owned,
    Lent,
}

fn check_latest_read(how: LatestRead) {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    // The stale read needs the reader preempted between its two loads while the writer
    // commits, publishes and prunes: three preemptions.
    model_with_preemptions(3, move || {
        let (w, old_slot, _, t, progress) = old_snapshot_and_pruning_writer();
        let before = w.clock.visible();
        let at_start = progress.describe();
        let guard = crossbeam_epoch::pin();
        let visible = w.clock.visible();
        let chain = &w.chains[0];
        let got = match how {
            LatestRead::Owned => chain
                .read_head_if_visible(visible, &guard)
                .map(|found| found.value.map(|_| found.ts)),
            LatestRead::Lent => chain
                .lend_head_if_visible(visible, &guard)
                .map(|found| found.value.map(|_| found.ts)),
        }
        .map(|ts| ts.expect("x always has a value"));
        drop(guard);
        let after = w.clock.visible();
        seen.saw(format!(
            "read {got:?} in {before}..={after}, started {at_start}, ended {}",
            progress.describe()
        ));
        if let Some(ts) = got {
            // Linearizable: the version is the newest at some instant in [before, after].
            assert!(
                ts >= before && ts <= after,
                "stale read: ts {ts} outside {before}..={after}"
            );
        }
        t.join().unwrap();
        w.registry.release(old_slot);
    });
    outcomes.assert_explored(&["read None", "read Some(2) in 2..=3", "read Some(3)"]);
}

/// Model 10: a lending reader racing a commit (and the prune that retires the old head) reads
/// the head cache as one version: a timestamp with that version's own value, never a mix.
#[test]
fn head_cache_is_never_torn() {
    faults::inject(Fault::None);
    check_head_cache();
}

/// Negative control for model 10: rewriting the head cache without its sequence word must be
/// caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_head_cache_without_seqlock_is_caught() {
    faults::inject(Fault::HeadCacheWithoutSeqlock);
    check_head_cache();
}

fn check_head_cache() {
    // Values of different lengths, so a torn read shows in the length too.
    const V1: &[u8] = b"one";
    const V2: &[u8] = b"version two";
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let w = World::new(&[b"x"]);
        w.commit(&[0], V1, None, &NO_GC).unwrap();
        let w2 = Arc::clone(&w);
        let progress = Progress::default();
        let p2 = progress.clone();
        let t = loom::thread::spawn(move || {
            w2.commit(&[0], V2, None, &NO_GC).unwrap();
            p2.committed.set();
            let h = w2.registry.horizon(&w2.clock);
            let guard = crossbeam_epoch::pin();
            w2.chains[0].lock().prune_and_retire(&h, &guard);
            p2.pruned.set();
        });
        let at_start = progress.describe();
        let guard = crossbeam_epoch::pin();
        let got = w.chains[0]
            .lend_at(u64::MAX, &guard)
            .map(|v| (v.ts, v.value.map(<[u8]>::to_vec)));
        drop(guard);
        seen.saw(format!(
            "read ts {:?}, started {at_start}, ended {}",
            got.as_ref().map(|g| g.0),
            progress.describe()
        ));
        let expected = |ts| match ts {
            1 => V1,
            _ => V2,
        };
        match got {
            Some((ts, Some(value))) => assert!(
                value == expected(ts),
                "torn head: timestamp {ts} with value {:?}",
                String::from_utf8_lossy(&value)
            ),
            other => panic!("the head always has a value: {other:?}"),
        }
        t.join().unwrap();
    });
    outcomes.assert_explored(&[
        "read ts Some(1), started before the commit returned, ended after the prune",
        "read ts Some(2), started before the commit returned, ended before the commit returned",
    ]);
}

/// Model 18: pruning strips a deleted key's tombstone once no transaction reads below it,
/// racing a transaction whose snapshot predates the delete (it must still conflict: the
/// tombstone stays for it) and a read-only snapshot as old (it reads the key as absent
/// throughout, then the chain empties under it).
#[test]
fn tombstone_strip_keeps_conflicts_and_views() {
    faults::inject(Fault::None);
    let outcomes = Outcomes::default();
    for pruner_first in [false, true] {
        let seen = outcomes.clone();
        model(move || check_tombstone_strip(&seen, pruner_first));
    }
    outcomes.assert_explored(&[
        "pruned before the read true",
        "pruned before the read false, before the commit true",
        "pruned before the read false, before the commit false",
    ]);
}

/// Negative control for model 18: stripping up to the visible timestamp, ignoring the
/// transaction, loses its write-write conflict.
#[test]
#[ignore = "negative control: run alone, must fail"]
fn broken_strip_ignoring_writer_floor_is_caught() {
    faults::inject(Fault::StripIgnoringWriterFloor);
    for pruner_first in [false, true] {
        model(move || check_tombstone_strip(&Outcomes::default(), pruner_first));
    }
}

/// Model 18's race; `pruner_first` yields to the pruner after spawning it: without that, no
/// explored read comes after the prune, and with it fewer commits race the prune, so the
/// model explores both.
fn check_tombstone_strip(seen: &Outcomes, pruner_first: bool) {
    let w = World::new(&[b"x"]);
    // Read-only snapshots in `w.registry`, transactions in their own (as `Db` keeps them).
    let writers = Arc::new(Registry::new());
    let (reader_slot, r) = w.registry.register(&w.clock);
    let (writer_slot, t) = writers.register(&w.clock);
    w.commit(&[0], b"v1", None, &NO_GC).unwrap();
    let mut delete = [Write::new(b"x", None)];
    commit(&w.clock, &*w, &mut delete, Checks::default(), &NO_GC).unwrap();
    let (w2, writers2) = (Arc::clone(&w), Arc::clone(&writers));
    let pruned = Mark::default();
    let pruned2 = pruned.clone();
    let pruner = loom::thread::spawn(move || {
        let h = Horizon::merge(w2.registry.horizon(&w2.clock), writers2.horizon(&w2.clock));
        let guard = crossbeam_epoch::pin();
        let p = w2.chains[0].lock().prune_and_retire(&h, &guard);
        pruned2.set();
        drop(guard);
        crossbeam_epoch::pin().flush();
        p.unlinked
    });
    if pruner_first {
        loom::thread::yield_now();
    }
    let pruned_before_read = pruned.is_set();
    assert_eq!(w.read(0, r), None, "the old reader saw a key it predates");
    let pruned_before_commit = pruned.is_set();
    let mine = w.commit(&[0], b"mine", Some(t), &NO_GC);
    assert!(
        matches!(mine, Err(Error::Conflict { .. })),
        "lost a write-write conflict with the delete: {mine:?}"
    );
    writers.release(writer_slot);
    let unlinked = pruner.join().unwrap();
    seen.saw(format!(
        "pruned before the read {pruned_before_read}, before the commit {pruned_before_commit}, \
         unlinked {unlinked}"
    ));
    // No transaction left: the lone tombstone goes, and the chain reads as absent to all.
    let h = Horizon::merge(w.registry.horizon(&w.clock), writers.horizon(&w.clock));
    let guard = crossbeam_epoch::pin();
    w.chains[0].lock().prune_and_retire(&h, &guard);
    assert_eq!(
        w.chains[0].version_count(&guard),
        0,
        "the lone tombstone stayed"
    );
    drop(guard);
    assert_eq!(w.read(0, r), None);
    assert_eq!(w.read(0, w.clock.visible()), None);
    w.registry.release(reader_slot);
}
