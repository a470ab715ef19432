//! Models of the snapshot registry: a registration racing the watermark.

use super::*;

/// Model 5: a snapshot registering while the collector computes the watermark never loses
/// the version it can see.
#[test]
fn registration_races_watermark() {
    faults::inject(Fault::None);
    check_registration(Registry::new);
}

/// Negative control for model 5: registering without the floor check must be caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_register_without_floor_check_is_caught() {
    faults::inject(Fault::RegisterWithoutFloorCheck);
    check_registration(Registry::new);
}

/// Model 5, overflow: the same race with a registry without fixed slots, so the snapshot
/// registers in the overflow (its count, the fence and the floor load under the overflow's
/// lock) while the collector reads the count and, if it is set, the overflow's timestamps.
#[test]
fn overflow_registration_races_watermark() {
    faults::inject(Fault::None);
    check_registration(|| Registry::with_slots(0));
}

/// Negative control for model 5, overflow: an overflow registration at the timestamp read
/// before its announcement, without the floor check, must be caught.
#[test]
#[ignore = "negative control: must fail; run by .ci/run"]
fn broken_overflow_register_without_floor_check_is_caught() {
    faults::inject(Fault::RegisterWithoutFloorCheck);
    check_registration(|| Registry::with_slots(0));
}

fn check_registration(registry: fn() -> Registry) {
    let outcomes = Outcomes::default();
    // Without a yield between the registration and the read, an overflow registration at 1
    // never has the prune run before its read; with it, fewer prunes race the registration
    // itself. The model explores both.
    for writer_between in [false, true] {
        let seen = outcomes.clone();
        model(move || {
            let w = World::with_registry(&[b"x"], registry());
            w.commit(&[0], b"v1", None, &NO_GC).unwrap();
            let w2 = Arc::clone(&w);
            let pruned = Mark::default();
            let pruned2 = pruned.clone();
            let t = loom::thread::spawn(move || {
                w2.commit(&[0], b"v2", None, &NO_GC).unwrap();
                let h = w2.registry.horizon(&w2.clock);
                let guard = crossbeam_epoch::pin();
                let p = w2.chains[0].lock().prune_and_retire(&h, &guard);
                pruned2.set();
                p.unlinked
            });
            let (slot, s) = w.registry.register(&w.clock);
            if writer_between {
                loom::thread::yield_now();
            }
            let pruned_first = pruned.is_set();
            assert!(
                w.read(0, s).is_some(),
                "snapshot at {s} lost its version to a concurrent watermark"
            );
            w.registry.release(slot);
            let unlinked = t.join().unwrap();
            seen.saw(format!(
                "snapshot at {s}, pruned before it read {pruned_first}, unlinked {unlinked}"
            ));
        });
    }
    outcomes.assert_explored(&[
        "snapshot at 1, pruned before it read true",
        "snapshot at 1, pruned before it read false",
        "snapshot at 2",
    ]);
}
