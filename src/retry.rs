//! The pause between attempts of a [`Db::update`](crate::Db::update) call that lost a race.

/// Gives the CPU to another thread before the next attempt, and nothing more: no sleep.
///
/// Random, exponentially growing sleeps ("full jitter") are the usual way to decorrelate
/// optimistic retries, and `update` used them. Two reasons it does not: a call that keeps
/// losing now queues for its turn on the key after a few races
/// ([`QUEUE_AFTER`](crate::contention::QUEUE_AFTER)), which serves it where a random pause
/// only made it likelier to win; and a sleep costs at least the timer slack (about 50 µs on
/// Linux) however short it is asked to be, so the sleeps were the latency tail (see
/// `examples/hot_key.rs`: with eight threads on one key, p99.9 of an increment fell from
/// hundreds of microseconds to tens when the sleeps gave way to turns).
pub(crate) fn after_lost_race() {
    std::thread::yield_now();
}
