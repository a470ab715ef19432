//! Models of publication: the visible timestamp never has holes, the publication ring, and
//! publishers asleep are always woken.

use super::*;

/// Model 3: commits that finish out of order leave no hole in the visible timestamp: a
/// snapshot at `s` sees exactly the commits `1..=s`, and once `commit` returns, new
/// snapshots see it.
#[test]
fn visibility_has_no_holes() {
    faults::inject(Fault::None);
    check_no_holes();
}

fn check_no_holes() {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let w = World::new(&[b"x", b"y"]);
        let w2 = Arc::clone(&w);
        let theirs_done = Mark::default();
        let done = theirs_done.clone();
        let t = loom::thread::spawn(move || {
            let ts = w2.commit(&[1], b"y", None, &NO_GC).unwrap();
            done.set();
            ts
        });
        let mine = w.commit(&[0], b"x", None, &NO_GC).unwrap();
        let theirs_returned = theirs_done.is_set();
        // Real-time order: my commit returned, so a new snapshot sees it.
        let (slot, s) = w.registry.register(&w.clock);
        assert!(
            s >= mine,
            "commit {mine} returned but a later snapshot reads at {s}"
        );
        let visible = (0..2).filter(|&i| w.read(i, s).is_some()).count() as u64;
        assert_eq!(visible, s, "snapshot at {s} sees {visible} commits: a hole");
        seen.saw(format!(
            "mine {mine}, theirs returned first {theirs_returned}, snapshot at {s}"
        ));
        w.registry.release(slot);
        t.join().unwrap();
    });
    outcomes.assert_explored(&[
        "mine 1, theirs returned first false, snapshot at 1",
        "mine 1, theirs returned first false, snapshot at 2",
        "mine 2, theirs returned first false, snapshot at 2",
    ]);
}

/// Negative control for model 3: publishing without waiting for predecessors must be caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_publish_without_waiting_is_caught() {
    faults::inject(Fault::PublishWithoutWaiting);
    check_no_holes();
}

/// Model 11: the publication ring, with two slots. Two committers install (a plain write to a
/// cell of their timestamp) and publish in any order and interleaving, so either may make the
/// other's timestamp visible. After its own commit, the main thread reads at the visible
/// timestamp: every install at or below it happens before the read (loom reports the race
/// otherwise) and none is missing (no holes); `publish` returns only once its own timestamp
/// is visible.
#[test]
fn publication_ring_helps_without_holes() {
    faults::inject(Fault::None);
    check_publication_ring(2);
}

/// Model 12: the publication ring with one slot, so the second commit must wait for the first
/// to become visible before reusing the slot (overwriting an unconsumed mark would leave the
/// first commit invisible forever).
#[test]
fn publication_ring_reuses_a_slot_only_once_consumed() {
    faults::inject(Fault::None);
    check_publication_ring(1);
}

fn check_publication_ring(ring: usize) {
    use loom::cell::UnsafeCell;
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(move || {
        let seen2 = seen.clone();
        let clock = Arc::new(Clock::with_ring(ring));
        let installed: Arc<[UnsafeCell<u64>; 3]> =
            Arc::new(std::array::from_fn(|_| UnsafeCell::new(0)));
        let commit = |clock: &Clock, installed: &[UnsafeCell<u64>; 3], seen: &Outcomes| {
            let p = clock.allocate();
            let ts = p.ts();
            installed[ts as usize].with_mut(|cell| {
                // SAFETY: only the committer of `ts` writes this cell, once, before publishing.
                unsafe { *cell = ts }
            });
            assert_eq!(p.publish(), ts);
            let v = clock.visible();
            assert!(v >= ts, "publish of {ts} returned before it was visible");
            seen.saw(format!("publish of {ts} returned, visible {v}"));
            ts
        };
        let other = {
            let (clock, installed) = (Arc::clone(&clock), Arc::clone(&installed));
            loom::thread::spawn(move || commit(&clock, &installed, &seen2))
        };
        let mine = commit(&clock, &installed, &seen);
        let v = clock.visible();
        seen.saw(format!("main committed {mine}, then read visible {v}"));
        for ts in 1..=v {
            let seen = installed[ts as usize].with(|cell| {
                // SAFETY: `ts <= v` was visible, so its install happened before this read;
                // loom reports a causality violation if the protocol does not guarantee that.
                unsafe { *cell }
            });
            assert_eq!(
                seen, ts,
                "visible {v}, but commit {ts} is not installed: a hole"
            );
        }
        other.join().unwrap();
        assert_eq!(clock.visible(), 2);
    });
    outcomes.assert_explored(&[
        "main committed 1, then read visible 1",
        "main committed 1, then read visible 2",
        "main committed 2, then read visible 2",
        "publish of 1 returned, visible 2",
    ]);
}

/// Negative control for model 11: a finished mark stored `Relaxed` lets a helper publish a
/// commit whose installs it has not synchronized with.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_finished_mark_without_release_is_caught() {
    faults::inject(Fault::FinishedMarkRelaxed);
    check_publication_ring(2);
}

/// Negative control for model 12: marking a reused slot before its previous timestamp is
/// visible overwrites that timestamp's mark, and nobody can ever make it visible: its committer
/// sleeps forever (loom reports the deadlock).
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_ring_reuse_without_waiting_is_caught() {
    faults::inject(Fault::RingReuseWithoutWaiting);
    check_publication_ring(1);
}

/// Negative control for model 11: advancing over allocated but unfinished timestamps makes a
/// commit visible before its installs.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_advance_over_unfinished_is_caught() {
    faults::inject(Fault::AdvanceOverUnfinished);
    check_publication_ring(2);
}

/// Model 17: three committers through a ring of four, so that a committer whose predecessor
/// has not finished sleeps (a wait is one spin under loom) and must be woken: by the thread
/// that moves the visible timestamp past it, or by a sleeper woken before it (wakes are passed
/// on one at a time). A lost wake-up leaves a thread asleep forever, which loom reports as a
/// deadlock; a premature one returns before the commit is visible, which the model asserts.
#[test]
fn publication_sleepers_are_always_woken() {
    faults::inject(Fault::None);
    check_publication_sleepers();
}

fn check_publication_sleepers() {
    // Three threads: one preemption already reaches a sleeper woken by a helper's move, and
    // the chain of wakes between two sleepers.
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model_with_bounds(0, 1, move || {
        let clock = Arc::new(Clock::with_ring(4));
        let commit = |clock: &Clock, seen: &Outcomes| {
            let p = clock.allocate();
            let ts = p.ts();
            assert_eq!(p.publish(), ts);
            let v = clock.visible();
            assert!(v >= ts, "publish of {ts} returned before it was visible");
            seen.saw(format!("publish of {ts} returned, visible {v}"));
        };
        let others: Vec<_> = (0..2)
            .map(|_| {
                let (clock, seen) = (Arc::clone(&clock), seen.clone());
                loom::thread::spawn(move || commit(&clock, &seen))
            })
            .collect();
        commit(&clock, &seen);
        for t in others {
            t.join().unwrap();
        }
        assert_eq!(clock.visible(), 3);
    });
    outcomes.assert_explored(&[
        "publish of 1 returned, visible 2",
        "publish of 2 returned, visible 3",
    ]);
}

/// Negative control for model 17: a thread that moves the visible timestamp without waking
/// the sleepers it passed leaves them asleep.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_publish_skipping_the_wake_is_caught() {
    faults::inject(Fault::SkipWake);
    check_publication_sleepers();
}
