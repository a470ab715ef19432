//! Backoff between attempts of a conflicting transaction.

use std::time::Duration;

/// Shortest sleep cap; below it retries only yield.
const BASE: Duration = Duration::from_micros(2);
/// Longest sleep cap.
const CAP: Duration = Duration::from_millis(2);

/// Waits before attempt `attempt + 1` (attempt counts from 1): the first retry only yields
/// the CPU, later ones sleep a random time in `0..min(CAP, BASE * 2^attempt)` ("full
/// jitter"), so that transactions that collided once do not collide again in lockstep.
pub(crate) fn backoff(attempt: u32) {
    if attempt <= 1 {
        std::thread::yield_now();
        return;
    }
    let cap = BASE
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(CAP);
    let nanos = fastrand::u64(0..=cap.as_nanos() as u64);
    if nanos < 1_000 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_nanos(nanos));
    }
}
