//! History checking, Elle style: many concurrent random list-append transactions under each
//! isolation level, recorded as a history of invocations and completions and written to
//! `target/histories/{si,serializable,si_skew}.jsonl` in Elle's list-append format, for the
//! `adya` checker (`.ci/history.sh` checks them). This test also checks what it can on its
//! own: see `check_sanity` in `tests/common/history.rs`.
//!
//! `SNAPKV_HISTORY_TXNS` sets the transaction attempts per history (default 10000; the write
//! skew run uses half), `SNAPKV_HISTORY_SEED` the workload seed (default: random, printed).

#[path = "common/history.rs"]
mod common;

use std::time::Instant;

use common::{check_sanity, histories_dir, run, to_jsonl, write_skews, Config, History, Workload};
use snapkv::Isolation;

fn txns() -> usize {
    std::env::var("SNAPKV_HISTORY_TXNS").map_or(10_000, |v| {
        v.parse()
            .expect("SNAPKV_HISTORY_TXNS must be a number of transactions")
    })
}

fn seed() -> u64 {
    std::env::var("SNAPKV_HISTORY_SEED").map_or_else(
        |_| fastrand::u64(..),
        |v| v.parse().expect("SNAPKV_HISTORY_SEED must be a number"),
    )
}

fn write(name: &str, h: &History) {
    let path = histories_dir().join(format!("{name}.jsonl"));
    std::fs::write(&path, to_jsonl(h)).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    eprintln!("{name}: wrote {}", path.display());
}

fn run_random(name: &str, isolation: Isolation) -> History {
    let mut cfg = Config::new(isolation, Workload::Random { scan_pct: 10 });
    cfg.txns = txns();
    cfg.seed = seed();
    // 4 to 10 threads over 5 to 8 hot keys, varying with the seed.
    cfg.threads = 4 + (cfg.seed % 7) as usize;
    cfg.slots = 5 + (cfg.seed / 7 % 4) as usize;
    let started = Instant::now();
    let h = run(&cfg);
    let elapsed = started.elapsed();
    let s = check_sanity(&h);
    write(name, &h);
    eprintln!(
        "{name}: {} attempts ({} ok, {} read-only, {} failed) from {} threads over {} keys \
         ({} at a time) in {elapsed:.2?}; seed {}",
        s.txns, s.ok, s.ok_read_only, s.fail, cfg.threads, s.keys, cfg.slots, cfg.seed
    );
    assert!(s.ok > s.txns / 10, "too few commits: {s:?}");
    assert!(s.ok_appends > 0 && s.ok_read_only > 0, "{s:?}");
    assert!(
        s.fail > 0,
        "no conflicts at all: the run had too little contention to be meaningful ({s:?})"
    );
    h
}

#[test]
fn si_history() {
    let h = run_random("si", Isolation::Snapshot);
    // Allowed under snapshot isolation; reported for information only.
    eprintln!("si: {} write-skew pairs", write_skews(&h).len());
}

#[test]
fn serializable_history() {
    let h = run_random("serializable", Isolation::Serializable);
    let skews = write_skews(&h);
    assert!(
        skews.is_empty(),
        "write skew under Serializable: {:?}",
        skews
            .iter()
            .take(3)
            .map(|&(a, b)| (&h.txns[a], &h.txns[b]))
            .collect::<Vec<_>>()
    );
}

/// A run built to produce write skew under snapshot isolation: every transaction reads both
/// keys of a pair and appends to one of them. The history must still be snapshot isolation
/// (adya checks), must contain write skew (checked here, so that adya rejecting it as
/// serializable is a meaningful negative control), and is written as `si_skew`.
#[test]
fn si_write_skew_history() {
    let mut cfg = Config::new(Isolation::Snapshot, Workload::Skew { pairs: 2 });
    cfg.slots = 4;
    cfg.txns = (txns() / 2).max(200);
    cfg.yield_pct = 50;
    cfg.seed = seed();
    let started = Instant::now();
    let h = run(&cfg);
    let elapsed = started.elapsed();
    let s = check_sanity(&h);
    write("si_skew", &h);
    let skews = write_skews(&h);
    eprintln!(
        "si_skew: {} attempts ({} ok, {} failed) in {elapsed:.2?}: {} write-skew pairs; seed {}",
        s.txns,
        s.ok,
        s.fail,
        skews.len(),
        cfg.seed
    );
    assert!(s.fail > 0, "no conflicts at all: {s:?}");
    assert!(
        !skews.is_empty(),
        "the write skew run produced no write skew ({s:?}): the negative check is meaningless"
    );
}
